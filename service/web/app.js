// brushprint page: plain JavaScript against the /v1 API. The key lives in sessionStorage only and travels in the
// X-API-Key header; it is never put in a URL or a cookie.
"use strict";

const KEY_STORE = "brushprint.key";
const $ = (sel) => document.querySelector(sel);
const state = { scope: null, me: null, artists: [], detail: null };

// ---------------------------------------------------------------- talking to the API
class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

// the API's prefix, in this file once (the service declares its own in service/api/middleware.py API_PREFIX)
const API = "/v1";

function key() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

async function api(method, path, body) {
  const headers = { "X-API-Key": key() };
  let payload = body;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  let r;
  try {
    r = await fetch(path, { method, headers, body: payload });
  } catch (e) {
    throw new ApiError(0, "network_error", "the service could not be reached: " + e.message);
  }
  return answer(r);
}

async function answer(r) {
  if (r.ok) {
    if (r.status === 204) return null;
    const type = r.headers.get("content-type") || "";
    return type.startsWith("application/json") ? r.json() : r.blob();
  }
  let code = "http_" + r.status;
  let message = r.statusText || "request failed";
  try {
    const body = await r.json();
    if (body && body.error) ({ code, message } = body.error);
  } catch (_) { /* not our envelope: keep the status line */ }
  if (r.headers.get("Retry-After")) message += ` (retry in ${r.headers.get("Retry-After")} s)`;
  throw new ApiError(r.status, code, message);
}

function showError(e) {
  const box = $("#error");
  box.textContent = e instanceof ApiError ? `${e.message} [${e.code}]` : String(e);
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

function clearError() {
  $("#error").hidden = true;
}

async function guarded(fn) {
  clearError();
  try {
    await fn();
  } catch (e) {
    showError(e);
  }
}

// ---------------------------------------------------------------- key and tabs
const SCOPE_TEXT = {
  admin: "Admin key: you may compare, verify, enrol artists and read the audit log.",
  verify: "Verify key: you may compare and verify. Enrolment needs an admin key.",
  operator: "Operator key: you see the collections; what is inside them needs one of their own keys.",
};

async function useKey(value) {
  sessionStorage.setItem(KEY_STORE, value);
  const status = $("#key-status");
  try {
    state.me = await api("GET", `${API}/me`);
    state.scope = state.me.scope;
    state.artists = state.scope === "admin" ? (await api("GET", `${API}/artists?limit=500`)).items : [];
  } catch (e) {
    sessionStorage.removeItem(KEY_STORE);
    state.scope = state.me = null;
    status.textContent = `This key was refused: ${e.message} [${e.code}]`;
    status.className = "bad";
    $("#tabs").hidden = true;
    $("#collection-status").hidden = true;
    document.querySelectorAll(".tab-panel").forEach((p) => (p.hidden = true));
    return;
  }
  status.textContent = SCOPE_TEXT[state.scope] || `Scope ${state.scope}.`;
  status.className = "good";
  const where = $("#collection-status");
  where.textContent = state.me.collection === null
    ? "No collection: an operator key acts inside none."
    : `Collection: ${state.me.collection_name} (${state.me.collection}). Everything here is this collection's only.`;
  where.hidden = false;
  const operator = state.scope === "operator";
  $("#tabs").hidden = false;
  document.querySelectorAll(".tab").forEach((t) => (t.hidden = operator !== (t.dataset.tab === "collections")));
  $("#admin-tab").hidden = state.scope !== "admin";
  if (operator) {
    showTab("collections");
    await loadCollections();
    return;
  }
  fillArtists();
  if (state.scope === "admin") renderArtists();
  showTab(document.querySelector(".tab.active").dataset.tab);
}

function showTab(name) {
  if (name === "admin" && state.scope !== "admin") name = "compare";
  const operator = state.scope === "operator";
  if ((name === "collections") !== operator) name = operator ? "collections" : "compare";
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === name));
  document.querySelectorAll(".tab-panel").forEach((p) => (p.hidden = p.id !== "tab-" + name));
}

// ---------------------------------------------------------------- file inputs with drag and drop and previews
function setupDrop(zone) {
  const input = zone.querySelector("input[type=file]");
  const img = zone.querySelector("img");
  const show = () => {
    const file = input.files[0];
    if (img && file) {
      if (img.src) URL.revokeObjectURL(img.src);
      img.src = URL.createObjectURL(file);
      img.hidden = false;
      const canvas = zone.querySelector("canvas");
      if (canvas) canvas.hidden = true;
    }
    if (!img) zone.querySelector("label").textContent = `${input.files.length} file(s) chosen`;
  };
  input.addEventListener("change", show);
  zone.addEventListener("dragover", (ev) => { ev.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (ev) => {
    ev.preventDefault();
    zone.classList.remove("over");
    if (ev.dataTransfer.files.length) {
      input.files = ev.dataTransfer.files;
      show();
    }
  });
}

function chosen(id, what) {
  const f = $("#" + id).files[0];
  if (!f) throw new Error(`choose ${what} first`);
  return f;
}

// ---------------------------------------------------------------- strictness
const PRESETS = [
  ["default", "Recommended (equal error rates)", null],
  ["fpr1", "At most 1 % false matches", ["max_fpr", "0.01"]],
  ["fpr5", "At most 5 % false matches", ["max_fpr", "0.05"]],
  ["prec99", "At least 99 % of matches right", ["min_precision", "0.99"]],
  ["custom", "My own threshold", null],
];

function setupStrictness(box) {
  const id = box.dataset.for;
  box.innerHTML = "";
  const label = document.createElement("label");
  label.textContent = "Strictness";
  label.htmlFor = id + "-preset";
  const select = document.createElement("select");
  select.id = id + "-preset";
  for (const [value, text] of PRESETS) select.add(new Option(text, value));
  const slider = document.createElement("input");
  Object.assign(slider, { type: "range", min: "0", max: "1", step: "0.001", value: "0.5", id: id + "-threshold" });
  slider.hidden = true;
  slider.setAttribute("aria-label", "threshold");
  const readout = document.createElement("output");
  readout.id = id + "-threshold-value";
  readout.hidden = true;
  readout.textContent = "threshold 0.500";
  select.addEventListener("change", () => {
    slider.hidden = readout.hidden = select.value !== "custom";
  });
  slider.addEventListener("input", () => (readout.textContent = "threshold " + Number(slider.value).toFixed(3)));
  box.append(label, select, slider, readout);
}

function addStrictness(form, id) {
  const preset = $("#" + id + "-preset").value;
  if (preset === "custom") form.append("threshold", $("#" + id + "-threshold").value);
  const chosenPreset = PRESETS.find((p) => p[0] === preset);
  if (chosenPreset && chosenPreset[2]) form.append(...chosenPreset[2]);
}

// ---------------------------------------------------------------- results in words
// "about 1 in 20 different-artist pairs is called a match"; past one in two, a percentage reads better
function howMany(rate, things, what) {
  if (rate >= 0.5) return `about ${Math.round(rate * 100)} % of ${things} are ${what}`;
  return `about 1 in ${Math.round(1 / rate)} ${things} is ${what}`;
}

function pct(rate) {
  return (rate * 100).toFixed(rate < 0.01 ? 2 : 1) + " %";
}

// "at most 1 in 19 with 95 % confidence": what the pairs behind the table can show (rounded so that it still
// holds); nothing when the table does not record how many pairs it rests on (the bound is null then)
function atMost(upper, confidence) {
  if (upper == null) return "";
  const conf = `${Math.round((confidence ?? 0.95) * 100)} % confidence`;
  if (upper >= 0.5) return `at most ${Math.ceil(upper * 100)} % with ${conf}`;
  return `at most 1 in ${Math.floor(1 / upper)} with ${conf}`;
}

function inWords(r, unit) {
  const c = r.calibration || {};
  const fpBound = atMost(r.expected_fpr_upper, c.confidence);
  const fnBound = atMost(r.expected_fnr_upper, c.confidence);
  const negatives = c.impostor_pairs != null ? `${c.impostor_pairs} ${unit.negatives}` : unit.negatives;
  const positives = c.genuine_pairs != null ? `${c.genuine_pairs} ${unit.positives}` : unit.positives;
  const fp = r.expected_fpr <= 0
    ? `none of the ${negatives} in the calibration data was called a match${fpBound ? " (" + fpBound + ")" : ""}`
    : `${howMany(r.expected_fpr, unit.negatives, "called a match")} (false-positive rate ${pct(r.expected_fpr)}` +
      `${fpBound ? "; " + fpBound : ""})`;
  const fn = r.expected_fnr <= 0
    ? `none of the ${positives} was missed${fnBound ? " (" + fnBound + ")" : ""}`
    : `${howMany(r.expected_fnr, unit.positives, "missed")} (false-negative rate ${pct(r.expected_fnr)}` +
      `${fnBound ? "; " + fnBound : ""})`;
  return `At this strictness (threshold ${r.threshold.toFixed(3)}), ${fp}, and ${fn}.`;
}

function calibrationText(r) {
  const c = r.calibration;
  if (!c || typeof c !== "object") return "Calibration: model card.";
  const source = c.source === "gallery" ? "this gallery's enrolled works" : c.source === "model_card" ? "model card" : String(c.source);
  // without counts the reason says that the table does not record them
  const counts = c.genuine_pairs != null && c.impostor_pairs != null
    ? ` (${c.genuine_pairs} same-artist / ${c.impostor_pairs} different-artist; bounds at ${Math.round((c.confidence ?? 0.95) * 100)} % confidence)`
    : "";
  return `Calibration: ${source}${counts}.${c.reason ? " Why: " + c.reason + "." : ""}`;
}

// The photographs' measured quality in plain words: what each upload is, and which error rates it was judged by.
function qualityText(r) {
  const q = r.quality;
  if (!q || !Array.isArray(q.pictures)) return "";
  const pics = q.pictures.map((p) => {
    const jpeg = p.jpeg_quality != null ? `, JPEG quality ${p.jpeg_quality}` : "";
    const score = p.score != null ? `quality ${p.score.toFixed(2)}: ` : "";
    return `${score}${p.width}×${p.height} px${jpeg}, sharpness ${p.sharpness.toFixed(2)}`;
  });
  if (q.score == null) return `Photographs: ${pics.join("; ")}. This model measures no photo quality.`;
  const grade = q.score >= 0.9 ? "good" : q.score >= 0.75 ? "fair" : "poor";
  const band = q.band != null
    ? ` The error rates above are the ones measured on photographs of quality ${q.band} and above` +
      (q.band < 0.9 ? " — a poorer photo costs accuracy: send the sharpest, largest picture you have." : ".")
    : "";
  return `Photographs: ${grade} (${q.score.toFixed(2)}; ${pics.join("; ")}).${band}`;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function renderDecision(box, r, unit) {
  box.innerHTML = "";
  box.hidden = false;
  const verdict = el("p", "verdict " + (r.match ? "match" : "nomatch"),
    r.match ? unit.matchText : unit.noMatchText);
  const score = el("p", "score", `score ${r.score.toFixed(3)} · threshold ${r.threshold.toFixed(3)} · rule: ${r.rule}`);
  const words = el("p", "words", inWords(r, unit));
  const quality = el("p", "muted quality", qualityText(r));
  box.append(verdict, score, words, quality, el("p", "muted calibration", calibrationText(r)), el("p", "muted", "model " + r.model));
}

// ---------------------------------------------------------------- evidence maps
function drawEvidence(zone, evidence) {
  const img = zone.querySelector("img");
  const canvas = zone.querySelector("canvas");
  if (!img || !canvas) return;
  if (!evidence) {
    canvas.hidden = true;
    return;
  }
  const draw = () => {
    const w = img.clientWidth, h = img.clientHeight;
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = w + "px";
    canvas.style.height = h + "px";
    canvas.hidden = false;
    const sx = w / evidence.width, sy = h / evidence.height;
    const g = canvas.getContext("2d");
    g.clearRect(0, 0, w, h);
    g.font = `${Math.max(11, Math.round(Math.min(w, h) / (evidence.grid * 5)))}px sans-serif`;
    g.textAlign = "center";
    g.textBaseline = "middle";
    for (const region of evidence.regions) {
      const [l, t, r, b] = region.box;
      const x = l * sx, y = t * sy, rw = (r - l) * sx, rh = (b - t) * sy;
      const hue = Math.round(120 * Math.max(0, Math.min(1, region.score)));
      g.fillStyle = `hsla(${hue}, 85%, 45%, 0.38)`;
      g.fillRect(x, y, rw, rh);
      g.lineWidth = region.match ? 3 : 1;
      g.strokeStyle = region.match ? "rgba(255,255,255,0.95)" : "rgba(0,0,0,0.4)";
      g.strokeRect(x + 1, y + 1, rw - 2, rh - 2);
      g.fillStyle = "#fff";
      g.fillText(region.score.toFixed(2), x + rw / 2, y + rh / 2);
    }
  };
  if (img.complete && img.naturalWidth) draw();
  else img.addEventListener("load", draw, { once: true });
  zone._evidence = draw;
}

function evidenceLegend(evidence) {
  const matched = evidence.regions.filter((r) => r.match).length;
  const target = evidence.target === "portfolio" ? "the artist's portfolio" : "painting B";
  return el("p", "muted legend",
    `Evidence map: ${matched} of ${evidence.regions.length} regions, each scored on its own against ${target}, ` +
    "reach the threshold (outlined; green = higher score, red = lower). It shows which regions look like " +
    `${target} to the model — not proof, and the error rates above describe whole paintings, not regions.`);
}

window.addEventListener("resize", () => {
  document.querySelectorAll(".drop").forEach((z) => z._evidence && !z.querySelector("canvas").hidden && z._evidence());
});

// ---------------------------------------------------------------- compare
async function compare() {
  const form = new FormData();
  form.append("image_a", chosen("compare-a", "painting A"));
  form.append("image_b", chosen("compare-b", "painting B"));
  addStrictness(form, "compare");
  const withEvidence = $("#compare-evidence").checked;
  if (withEvidence) form.append("evidence", $("#compare-grid").value);
  const button = $("#compare-go");
  button.disabled = true;
  $("#compare-result").hidden = true; // an old answer must not stand beside a new question
  try {
    const r = await api("POST", `${API}/compare`, form);
    const box = $("#compare-result");
    renderDecision(box, r, {
      negatives: "different-artist pairs",
      positives: "same-artist pairs",
      matchText: "Match: likely the same artist",
      noMatchText: "No match: not judged the same artist",
    });
    if (r.evidence) box.append(evidenceLegend(r.evidence));
    drawEvidence($("#compare-a").closest(".drop"), r.evidence);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- verify
function fillArtists() {
  const select = $("#verify-artist");
  const text = $("#verify-artist-id");
  const note = $("#verify-artist-note");
  select.innerHTML = "";
  if (state.scope === "admin") {
    const enrolled = state.artists.filter((a) => a.works > 0);
    for (const a of enrolled) select.add(new Option(`${a.name} (${a.id}, ${a.works} works)`, a.id));
    select.hidden = false;
    text.hidden = true;
    note.hidden = enrolled.length > 0;
    note.textContent = "No artist has reference works yet: enrol some under “Portfolios & audit”.";
  } else {
    select.hidden = true;
    text.hidden = false;
    note.hidden = false;
    note.textContent = "A verify key cannot list artists: type the artist id you were given.";
  }
}

function artistChoice() {
  const id = state.scope === "admin" ? $("#verify-artist").value : $("#verify-artist-id").value.trim();
  if (!id) throw new Error("choose an artist first");
  return id;
}

async function thumbnail(artistId, workId, side) {
  const blob = await api("GET", `${API}/artists/${encodeURIComponent(artistId)}/works/${encodeURIComponent(workId)}/image?max_side=${side}`);
  return URL.createObjectURL(blob);
}

async function verify() {
  const artistId = artistChoice();
  const form = new FormData();
  form.append("image", chosen("verify-image", "a painting"));
  form.append("artist_id", artistId);
  addStrictness(form, "verify");
  if ($("#verify-evidence").checked) form.append("evidence", $("#verify-grid").value);
  const button = $("#verify-go");
  button.disabled = true;
  $("#verify-result").hidden = true;
  try {
    const r = await api("POST", `${API}/verify`, form);
    const box = $("#verify-result");
    renderDecision(box, r, {
      negatives: "paintings by other artists",
      positives: "paintings by this artist",
      matchText: `Match: consistent with ${artistId}'s portfolio`,
      noMatchText: `No match: not judged to be by ${artistId}`,
    });
    box.append(el("p", "muted", `Judged against ${r.portfolio_size} reference works.`));
    if (r.evidence) box.append(evidenceLegend(r.evidence));
    drawEvidence($("#verify-image").closest(".drop"), r.evidence);
    const thumbs = el("div", "thumbs");
    box.append(el("h3", null, "Closest reference works"), thumbs);
    for (const ref of r.top_references) {
      const fig = el("figure", "thumb");
      const img = el("img");
      img.alt = "reference work " + ref.work_id;
      fig.append(img, el("figcaption", null, `score ${ref.score.toFixed(3)}`));
      thumbs.append(fig);
      thumbnail(artistId, ref.work_id, 256).then((url) => (img.src = url)).catch(showError);
    }
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- admin: artists, works, audit
async function reloadArtists() {
  state.artists = (await api("GET", `${API}/artists?limit=500`)).items;
  renderArtists();
  fillArtists();
}

function renderArtists() {
  const body = $("#artists-table tbody");
  body.innerHTML = "";
  for (const a of state.artists) {
    const tr = el("tr");
    const open = el("button", "link", a.id);
    open.type = "button";
    open.addEventListener("click", () => guarded(() => openArtist(a)));
    const del = el("button", "danger small", "Delete");
    del.type = "button";
    del.addEventListener("click", () => guarded(async () => {
      if (!confirm(`Delete ${a.id} and all of its works?`)) return;
      await api("DELETE", `${API}/artists/${encodeURIComponent(a.id)}`);
      if (state.detail && state.detail.id === a.id) $("#artist-detail").hidden = true;
      await reloadArtists();
    }));
    const cells = [el("td"), el("td", null, a.name), el("td", null, String(a.works ?? "")), el("td")];
    cells[0].append(open);
    cells[3].append(del);
    tr.append(...cells);
    body.append(tr);
  }
}

async function openArtist(a) {
  state.detail = a;
  $("#detail-name").textContent = `${a.name} (${a.id})`;
  $("#artist-detail").hidden = false;
  $("#works-status").textContent = "";
  await renderWorks();
}

async function renderWorks() {
  const a = state.detail;
  const grid = $("#works-grid");
  grid.innerHTML = "";
  const { works } = await api("GET", `${API}/artists/${encodeURIComponent(a.id)}/works`);
  if (!works.length) grid.append(el("p", "muted", "No reference works yet."));
  for (const w of works) {
    const fig = el("figure", "thumb");
    const img = el("img");
    img.alt = w.filename || w.id;
    const del = el("button", "danger small", "Delete");
    del.type = "button";
    del.addEventListener("click", () => guarded(async () => {
      await api("DELETE", `${API}/artists/${encodeURIComponent(a.id)}/works/${encodeURIComponent(w.id)}`);
      await renderWorks();
      await reloadArtists();
    }));
    fig.append(img, el("figcaption", null, w.filename || w.id.slice(0, 8)), del);
    grid.append(fig);
    thumbnail(a.id, w.id, 160).then((url) => (img.src = url)).catch(showError);
  }
}

// One request per batch (each batch all-or-nothing on the server); progress counts the bytes sent overall.
function uploadBatch(artistId, files, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const f of files) form.append("image", f);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", `${API}/artists/${encodeURIComponent(artistId)}/works`);
    xhr.setRequestHeader("X-API-Key", key());
    xhr.upload.addEventListener("progress", (ev) => ev.lengthComputable && onProgress(ev.loaded));
    xhr.addEventListener("load", () => {
      const headers = new Headers();
      const retry = xhr.getResponseHeader("Retry-After");
      if (retry) headers.set("Retry-After", retry);
      headers.set("content-type", xhr.getResponseHeader("content-type") || "");
      answer(new Response(xhr.status === 204 ? null : xhr.responseText, { status: xhr.status, headers }))
        .then(resolve, reject);
    });
    xhr.addEventListener("error", () => reject(new ApiError(0, "network_error", "the upload was interrupted")));
    xhr.send(form);
  });
}

async function uploadWorks() {
  const a = state.detail;
  const files = Array.from($("#works-files").files);
  if (!files.length) throw new Error("choose reference works first");
  const BATCH = 8;
  const total = files.reduce((n, f) => n + f.size, 0) || 1;
  const bar = $("#works-progress");
  const status = $("#works-status");
  bar.hidden = false;
  bar.value = 0;
  let done = 0, enrolled = 0;
  try {
    for (let i = 0; i < files.length; i += BATCH) {
      const batch = files.slice(i, i + BATCH);
      const size = batch.reduce((n, f) => n + f.size, 0);
      status.textContent = `uploading ${i + 1}–${i + batch.length} of ${files.length}…`;
      const r = await uploadBatch(a.id, batch, (sent) => (bar.value = Math.min(100, (100 * (done + sent)) / total)));
      done += size;
      enrolled += r.works.length;
      bar.value = (100 * done) / total;
    }
    status.textContent = `${enrolled} works enrolled.`;
  } catch (e) {
    status.textContent = `${enrolled} works enrolled before the error; the failing batch was not enrolled.`;
    throw e;
  } finally {
    await renderWorks();
    await reloadArtists();
  }
}

async function loadAudit() {
  const page = await api("GET", `${API}/audit?limit=50`);
  const table = $("#audit-table");
  const body = table.querySelector("tbody");
  body.innerHTML = "";
  for (const e of page.items) {
    const tr = el("tr");
    const cells = [new Date(e.time).toLocaleString(), e.key_name, e.route, e.artist_id || "",
      e.score == null ? "" : e.score.toFixed(3), e.threshold == null ? "" : e.threshold.toFixed(3), e.decision];
    tr.append(...cells.map((c) => el("td", null, c)));
    body.append(tr);
  }
  table.hidden = false;
}

// ---------------------------------------------------------------- collections (operator)
async function loadCollections() {
  const listed = await api("GET", `${API}/collections`);
  const body = $("#collections-table tbody");
  body.innerHTML = "";
  const quota = (v) => (v == null ? "no limit" : String(v));
  for (const c of listed) {
    const tr = el("tr");
    const cells = [c.id, c.name, String(c.artists), `${c.works} / ${quota(c.max_works)}`,
      `${c.bytes} / ${quota(c.max_bytes)}`, String(c.keys)];
    tr.append(...cells.map((v) => el("td", null, v)));
    body.append(tr);
  }
  $("#collections-empty").hidden = listed.length > 0;
}

// ---------------------------------------------------------------- wiring
document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll(".drop").forEach(setupDrop);
  document.querySelectorAll(".strictness").forEach(setupStrictness);
  document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => showTab(t.dataset.tab)));
  $("#key-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("#key-input").value.trim();
    $("#key-input").value = "";
    if (value) guarded(() => useKey(value));
  });
  $("#key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_STORE);
    location.reload();
  });
  $("#compare-go").addEventListener("click", () => guarded(compare));
  $("#verify-go").addEventListener("click", () => guarded(verify));
  $("#works-upload").addEventListener("click", () => guarded(uploadWorks));
  $("#audit-load").addEventListener("click", () => guarded(loadAudit));
  $("#collections-load").addEventListener("click", () => guarded(loadCollections));
  $("#artist-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(async () => {
      const made = await api("POST", `${API}/artists`, { id: $("#artist-id").value.trim(), name: $("#artist-name").value.trim() });
      $("#artist-id").value = "";
      $("#artist-name").value = "";
      await reloadArtists();
      await openArtist(state.artists.find((a) => a.id === made.id) || made);
    });
  });
  if (key()) guarded(() => useKey(key()));
});
