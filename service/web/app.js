// brushprint page: plain JavaScript against the /v1 API. The key lives in sessionStorage only and travels in the
// X-API-Key header; it is never put in a URL or a cookie.
"use strict";

const KEY_STORE = "brushprint.key";
const $ = (sel) => document.querySelector(sel);
const state = { scope: null, me: null, artists: [], artistPage: 0, detail: null, auditOffset: 0, editing: null };
const ARTISTS_PER_PAGE = 50;
const ARTISTS_PER_REQUEST = 500; // the API's largest page: the page asks for as many pages as there are
const AUDIT_PER_PAGE = 50;
const AUDIT_PER_REQUEST = 1000;
const BUSY_AFTER_MS = 300; // a request that takes longer shows the progress bar

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

// Progress for slow requests: any request still running after BUSY_AFTER_MS shows the bar, with what it is doing
// and the seconds so far, until the last one ends.
const busy = { running: new Map(), next: 0, timer: null, shown: false };

function busyStart(label) {
  const id = busy.next++;
  busy.running.set(id, { label, since: performance.now() });
  if (!busy.timer) busy.timer = setInterval(busyTick, 100);
  return id;
}

function busyEnd(id) {
  busy.running.delete(id);
  if (!busy.running.size) {
    clearInterval(busy.timer);
    busy.timer = null;
    busy.shown = false;
    $("#busy").hidden = true;
  }
}

function busyTick() {
  const now = performance.now();
  const oldest = [...busy.running.values()].reduce((a, b) => (a.since <= b.since ? a : b), { since: now });
  const elapsed = now - oldest.since;
  if (elapsed < BUSY_AFTER_MS) return;
  const more = busy.running.size > 1 ? ` (+${busy.running.size - 1} more)` : "";
  $("#busy-text").textContent = `${oldest.label}… ${(elapsed / 1000).toFixed(1)} s${more}`;
  if (!busy.shown) {
    busy.shown = true;
    $("#busy").hidden = false;
  }
}

async function api(method, path, body, label = "Working") {
  const headers = { "X-API-Key": key() };
  let payload = body;
  if (body && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const id = busyStart(label);
  try {
    let r;
    try {
      r = await fetch(path, { method, headers, body: payload });
    } catch (e) {
      throw new ApiError(0, "network_error", "the service could not be reached: " + e.message);
    }
    return await answer(r);
  } finally {
    busyEnd(id);
  }
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
  box.textContent = e instanceof ApiError ? `${e.message} [${e.code}]` : String(e.message || e);
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

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

const score3 = (x) => (x == null ? "" : Number(x).toFixed(3));

// ---------------------------------------------------------------- key and tabs
const SCOPE_TEXT = {
  admin: "Admin key: you may compare, verify, identify, enrol artists and read the audit log.",
  verify: "Verify key: you may compare, verify and identify. Enrolment needs an admin key.",
  operator: "Operator key: you see the collections; what is inside them needs one of their own keys.",
};

async function useKey(value) {
  sessionStorage.setItem(KEY_STORE, value);
  const status = $("#key-status");
  try {
    state.me = await api("GET", `${API}/me`);
    state.scope = state.me.scope;
    state.artists = state.scope === "admin" ? await allArtists() : [];
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
  if (name === "compare") guarded(() => loadPresets("compare"));
  if (name === "verify") guarded(() => loadPresets("verify"));
}

// ---------------------------------------------------------------- file inputs with drag and drop and previews
function setupDrop(zone) {
  const input = zone.querySelector("input[type=file]");
  const label = zone.querySelector("label");
  const original = label.textContent;
  const show = () => {
    const img = zone.querySelector("img");
    const file = input.files[0];
    if (img) {
      if (img.src) URL.revokeObjectURL(img.src);
      img.hidden = !file;
      if (file) img.src = URL.createObjectURL(file);
      const canvas = zone.querySelector("canvas");
      if (canvas) canvas.hidden = true;
    } else {
      label.textContent = input.files.length ? `${input.files.length} file(s) chosen` : original;
    }
    input.dispatchEvent(new CustomEvent("chosen"));
  };
  zone._clear = () => {
    input.value = "";
    show();
  };
  zone._show = show;
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
// What the page offers: the default three-way verdict, the presets the current calibration can reach (asked of
// the service, GET /v1/strictness: a preset it cannot show is not offered), or the caller's own threshold.
const strictnessState = { compare: null, verify: null };

function setupStrictness(box) {
  const id = box.dataset.for;
  box.innerHTML = "";
  const label = el("label", null, "Strictness");
  label.htmlFor = id + "-preset";
  const select = el("select");
  select.id = id + "-preset";
  const slider = el("input");
  Object.assign(slider, { type: "range", min: "0", max: "1", step: "0.001", value: "0.5", id: id + "-threshold" });
  slider.hidden = true;
  slider.setAttribute("aria-label", "threshold");
  const readout = el("output", null, "threshold 0.500");
  readout.id = id + "-threshold-value";
  readout.hidden = true;
  const note = el("p", "muted presets-note");
  note.id = id + "-presets-note";
  select.addEventListener("change", () => {
    slider.hidden = readout.hidden = select.value !== "custom";
  });
  slider.addEventListener("input", () => (readout.textContent = "threshold " + Number(slider.value).toFixed(3)));
  box.append(label, select, slider, readout, note);
  fillPresets(id, null);
}

function fillPresets(id, answer) {
  const select = $("#" + id + "-preset");
  const previous = select.value;
  select.innerHTML = "";
  select.add(new Option("Default: “consistent” only at ≤ 1 % false matches", "default"));
  const offered = answer ? answer.presets.filter((p) => p.reachable) : [];
  for (const p of offered) select.add(new Option(p.label, p.id));
  select.add(new Option("My own threshold", "custom"));
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
  select.dispatchEvent(new Event("change"));
  strictnessState[id] = answer;
  const missing = answer ? answer.presets.filter((p) => !p.reachable) : [];
  $("#" + id + "-presets-note").textContent = missing.length
    ? "Not offered, because the calibration's pairs cannot show them: " +
      missing.map((p) => p.label.toLowerCase()).join("; ") + "."
    : "";
}

async function loadPresets(id) {
  let query = `route=${id}`;
  if (id === "verify") {
    const artistId = currentVerifyArtist();
    if (!artistId) return fillPresets(id, null);
    query += `&artist_id=${encodeURIComponent(artistId)}`;
  }
  try {
    fillPresets(id, await api("GET", `${API}/strictness?${query}`, undefined, "Reading the calibration"));
  } catch (e) {
    fillPresets(id, null);
    if (e.status !== 404) throw e; // an artist id typed wrong is said when verifying
  }
}

// the strictness chosen, added to the request; true when one was (not the default verdict)
function addStrictness(form, id) {
  const preset = $("#" + id + "-preset").value;
  if (preset === "custom") form.append("threshold", $("#" + id + "-threshold").value);
  const answer = strictnessState[id];
  const chosenPreset = answer && answer.presets.find((p) => p.id === preset);
  if (chosenPreset) form.append(chosenPreset.field, String(chosenPreset.value));
  return preset === "custom" || Boolean(chosenPreset);
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
  return `At this strictness (threshold ${score3(r.threshold)}), ${fp}, and ${fn}.`;
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
    const score = p.score != null ? `quality ${score3(p.score)}: ` : "";
    return `${score}${p.width}×${p.height} px${jpeg}, sharpness ${score3(p.sharpness)}`;
  });
  if (q.score == null) return `Photographs: ${pics.join("; ")}. This model measures no photo quality.`;
  const grade = q.score >= 0.9 ? "good" : q.score >= 0.75 ? "fair" : "poor";
  const band = q.band != null
    ? ` The error rates above are the ones measured on photographs of quality ${q.band} and above` +
      (q.band < 0.9 ? " — a poorer photo costs accuracy: send the sharpest, largest picture you have." : ".")
    : "";
  return `Photographs: ${grade} (${score3(q.score)}; ${pics.join("; ")}).${band}`;
}

const VERDICT_CLASS = { consistent: "consistent", inconclusive: "inconclusive", not_consistent: "not-consistent" };

// The verdict in the words the API gives (`summary`): its first clause as the headline, the rest below it.
function verdictBlock(verdict, summary) {
  const cut = summary.indexOf(": ");
  const head = cut > 0 ? summary.slice(0, cut) : summary;
  const rest = cut > 0 ? summary.slice(cut + 2) : "";
  const block = el("div", "verdict-block");
  block.append(el("p", "verdict " + (VERDICT_CLASS[verdict] || ""), head));
  if (rest) block.append(el("p", "summary", rest.charAt(0).toUpperCase() + rest.slice(1)));
  return block;
}

// The two points in words: where "consistent" starts and where "not consistent" ends, with what each costs.
// `others`: what a false match is made of ("pairs by different artists", "paintings by other artists", …)
function pointsText(points, confidence, others) {
  if (!points) return "";
  const s = points.strict, e = points.equal_error;
  let strict = "nothing can be called “consistent” on this calibration";
  if (s.reachable) {
    const rate = s.expected_fpr_upper != null
      ? `at most ${oneIn(s.expected_fpr_upper, true)} ${others} score that high, with ${Math.round((confidence ?? 0.95) * 100)} % confidence`
      : `about ${oneIn(s.expected_fpr, false)} ${others} scored that high in the calibration data`;
    strict = `“consistent” from a score of ${score3(s.threshold)} (${rate})`;
  }
  return `Read at two points: ${strict}; “not consistent” below ${score3(e.threshold)}, the equal-error point.`;
}

// "1 in 25" (a bound: N rounded down so that it still holds), a percentage past one in two, "none" for 0
function oneIn(rate, bound) {
  if (rate <= 0) return "none of the";
  if (rate >= 0.5) return `${bound ? Math.ceil(rate * 100) : Math.round(rate * 100)} % of`;
  return `1 in ${bound ? Math.floor(1 / rate) : Math.round(1 / rate)}`;
}

// `asked`: the caller chose a strictness (then `match` is read at it, and said apart from the verdict)
function renderDecision(box, r, unit, asked) {
  box.innerHTML = "";
  box.hidden = false;
  box.append(verdictBlock(r.verdict, r.summary));
  const line = `score ${score3(r.score)} · threshold ${score3(r.threshold)} · rule: ${r.rule}`;
  box.append(el("p", "score", line));
  if (asked && r.threshold != null) {
    box.append(el("p", "match-line " + (r.match ? "good" : "bad"),
      r.match ? `At the strictness you chose: ${unit.matchText}.` : `At the strictness you chose: ${unit.noMatchText}.`));
  }
  box.append(el("p", "muted points", pointsText(r.points, r.calibration && r.calibration.confidence, unit.negatives)));
  if (r.threshold != null) box.append(el("p", "words", inWords(r, unit)));
  box.append(el("p", "muted quality", qualityText(r)), el("p", "muted calibration", calibrationText(r)),
    el("p", "muted", "model " + r.model));
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
    g.font = `${Math.max(11, Math.round(Math.min(w, h) / (evidence.grid * 6)))}px sans-serif`;
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
      g.fillText(score3(region.score), x + rw / 2, y + rh / 2);
    }
  };
  if (img.complete && img.naturalWidth) draw();
  else img.addEventListener("load", draw, { once: true });
  zone._evidence = draw;
}

function evidenceLegend(evidence, target) {
  const matched = evidence.regions.filter((r) => r.match).length;
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
  const asked = addStrictness(form, "compare");
  const withEvidence = $("#compare-evidence").checked;
  if (withEvidence) form.append("evidence", $("#compare-grid").value);
  const button = $("#compare-go");
  button.disabled = true;
  $("#compare-result").hidden = true; // an old answer must not stand beside a new question
  try {
    const r = await api("POST", `${API}/compare`, form, "Comparing the two paintings");
    const box = $("#compare-result");
    renderDecision(box, r, {
      negatives: "different-artist pairs",
      positives: "same-artist pairs",
      matchText: "a match, likely the same artist",
      noMatchText: "no match",
    }, asked);
    if (r.evidence) box.append(evidenceLegend(r.evidence, "painting B"));
    drawEvidence($("#compare-a").closest(".drop"), r.evidence);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- verify
function artistLabel(a) {
  return `${a.name} (${a.works} work${a.works === 1 ? "" : "s"})`;
}

function fillArtists() {
  const select = $("#verify-artist");
  const text = $("#verify-artist-id");
  const note = $("#verify-artist-note");
  const previous = select.value;
  select.innerHTML = "";
  if (state.scope === "admin") {
    const enrolled = state.artists.filter((a) => a.works > 0);
    for (const a of enrolled) select.add(new Option(artistLabel(a), a.id));
    if (enrolled.some((a) => a.id === previous)) select.value = previous;
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

function currentVerifyArtist() {
  return state.scope === "admin" ? $("#verify-artist").value : $("#verify-artist-id").value.trim();
}

function artistChoice() {
  const id = currentVerifyArtist();
  if (!id) throw new Error("choose an artist first");
  return id;
}

// another artist: the answer about the previous one must not stay on screen, and the presets are that portfolio's
function verifyArtistChanged() {
  $("#verify-result").hidden = true;
  drawEvidence($("#verify-image").closest(".drop"), null);
  guarded(() => loadPresets("verify"));
}

async function thumbnail(artistId, workId, side) {
  const blob = await api("GET", `${API}/artists/${encodeURIComponent(artistId)}/works/${encodeURIComponent(workId)}/image?max_side=${side}`,
    undefined, "Loading pictures");
  return URL.createObjectURL(blob);
}

function workName(w) {
  return w.title || w.filename || "untitled work";
}

function caption(lines, full) {
  const cap = el("figcaption");
  for (const [cls, text] of lines) if (text) cap.append(el("span", cls, text));
  cap.title = full;
  return cap;
}

async function verify() {
  const artistId = artistChoice();
  const form = new FormData();
  form.append("image", chosen("verify-image", "a painting"));
  form.append("artist_id", artistId);
  const asked = addStrictness(form, "verify");
  if ($("#verify-evidence").checked) form.append("evidence", $("#verify-grid").value);
  const button = $("#verify-go");
  button.disabled = true;
  $("#verify-result").hidden = true;
  try {
    const r = await api("POST", `${API}/verify`, form, "Verifying against the portfolio");
    const box = $("#verify-result");
    const name = r.artist_name || artistId;
    renderDecision(box, r, {
      negatives: "paintings by other artists",
      positives: `paintings by ${name}`,
      matchText: `a match with ${name}'s portfolio`,
      noMatchText: `no match with ${name}'s portfolio`,
    }, asked);
    box.append(el("p", "muted", `Judged against ${r.portfolio_size} reference works of ${name}.`));
    if (r.evidence) box.append(evidenceLegend(r.evidence, `${name}'s portfolio`));
    drawEvidence($("#verify-image").closest(".drop"), r.evidence);
    const thumbs = el("div", "thumbs");
    box.append(el("h3", null, `Closest reference works of ${name}`), thumbs);
    for (const ref of r.top_references) {
      const fig = el("figure", "thumb");
      const img = el("img");
      const title = ref.title || "untitled work";
      img.alt = title;
      fig.append(img, caption([["title", title], ["date", ref.date || ""], ["score", `score ${score3(ref.score)}`]],
        [title, ref.date, ref.inventory_number].filter(Boolean).join(" · ")));
      thumbs.append(fig);
      thumbnail(artistId, ref.work_id, 256).then((url) => (img.src = url)).catch(showError);
    }
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- identify
async function identify() {
  const form = new FormData();
  form.append("image", chosen("identify-image", "a painting"));
  form.append("k", $("#identify-k").value);
  const button = $("#identify-go");
  button.disabled = true;
  const box = $("#identify-result");
  box.hidden = true;
  try {
    const r = await api("POST", `${API}/identify`, form, "Looking through the enrolled artists");
    box.innerHTML = "";
    box.hidden = false;
    const o = r.open_set;
    box.append(verdictBlock(o.verdict, o.summary));
      if (o.points) {
      box.append(el("p", "muted points",
        pointsText(o.points, o.calibration && o.calibration.confidence, "paintings by artists not enrolled")));
    }
    if (!r.candidates.length) {
      box.append(el("p", "muted", "No artist has reference works yet."));
    } else {
      box.append(el("h3", null, "Closest enrolled artists"));
      const table = el("table", "candidates");
      const head = el("tr");
      for (const h of ["", "artist", "score", ""]) head.append(el("th", null, h));
      table.append(el("thead"), el("tbody"));
      table.tHead.append(head);
      r.candidates.forEach((c, i) => {
        const tr = el("tr");
        const act = el("td");
        const go = el("button", "secondary small", "Verify against this artist");
        go.type = "button";
        go.addEventListener("click", () => verifyCandidate(c));
        act.append(go);
        tr.append(el("td", null, String(i + 1)), el("td", null, c.name || c.artist_id), el("td", "num", score3(c.score)), act);
        table.tBodies[0].append(tr);
      });
      box.append(table, el("p", "muted",
        "A ranking, not a verdict about any one artist: verify against a candidate to judge that attribution."));
    }
    box.append(el("p", "muted quality", qualityText(r)), el("p", "muted calibration", calibrationText(o)),
      el("p", "muted", "model " + r.model));
  } finally {
    button.disabled = false;
  }
}

function verifyCandidate(c) {
  showTab("verify");
  if (state.scope === "admin") $("#verify-artist").value = c.artist_id;
  else $("#verify-artist-id").value = c.artist_id;
  $("#verify-image").files = $("#identify-image").files;
  $("#verify-image").closest(".drop")._show();
  verifyArtistChanged();
}

// ---------------------------------------------------------------- admin: artists
async function allArtists() {
  const out = [];
  for (let offset = 0; ; offset += ARTISTS_PER_REQUEST) {
    const page = await api("GET", `${API}/artists?offset=${offset}&limit=${ARTISTS_PER_REQUEST}`, undefined, "Loading artists");
    out.push(...page.items);
    if (!page.items.length || out.length >= page.total) return out;
  }
}

async function reloadArtists() {
  state.artists = await allArtists();
  renderArtists();
  fillArtists();
}

function renderArtists() {
  const pages = Math.max(1, Math.ceil(state.artists.length / ARTISTS_PER_PAGE));
  state.artistPage = Math.min(state.artistPage, pages - 1);
  const start = state.artistPage * ARTISTS_PER_PAGE;
  const shown = state.artists.slice(start, start + ARTISTS_PER_PAGE);
  const body = $("#artists-table tbody");
  body.innerHTML = "";
  for (const a of shown) {
    const tr = el("tr");
    const open = el("button", "link", a.name);
    open.type = "button";
    open.addEventListener("click", () => guarded(() => openArtist(a)));
    const del = el("button", "danger small", "Delete");
    del.type = "button";
    del.addEventListener("click", () => guarded(async () => {
      if (!confirm(`Delete the artist ${a.name} (${a.id}) and all ${a.works ?? 0} of their reference works?`)) return;
      await api("DELETE", `${API}/artists/${encodeURIComponent(a.id)}`, undefined, "Deleting");
      if (state.detail && state.detail.id === a.id) closeArtist();
      await reloadArtists();
    }));
    const cells = [el("td"), el("td", "muted", a.id), el("td", null, String(a.works ?? "")), el("td")];
    cells[0].append(open);
    cells[3].append(del);
    tr.append(...cells);
    body.append(tr);
  }
  const total = state.artists.length;
  $("#artists-range").textContent = total
    ? `artists ${start + 1}–${start + shown.length} of ${total}`
    : "no artists yet";
  $("#artists-prev").disabled = state.artistPage === 0;
  $("#artists-next").disabled = state.artistPage >= pages - 1;
}

function pageArtists(step) {
  state.artistPage += step;
  renderArtists();
}

// Opening another artist clears everything chosen for the previous one: files, their catalogue entries, the
// upload's status and any work being edited, so nothing meant for one portfolio is sent to another.
function resetUpload() {
  $("#works-files").closest(".drop")._clear();
  $("#works-allow-duplicate").checked = false;
  $("#works-progress").hidden = true;
  $("#works-status").textContent = "";
  closeEdit();
}

function closeArtist() {
  state.detail = null;
  resetUpload();
  $("#artist-detail").hidden = true;
}

async function openArtist(a) {
  if (!state.detail || state.detail.id !== a.id) resetUpload();
  state.detail = a;
  $("#detail-name").textContent = a.name;
  $("#artist-detail").hidden = false;
  await renderWorks();
}

async function renameArtist() {
  const a = state.detail;
  const name = prompt(`New name for ${a.name} (${a.id}):`, a.name);
  if (name == null || !name.trim() || name.trim() === a.name) return;
  const updated = await api("PATCH", `${API}/artists/${encodeURIComponent(a.id)}`, { name: name.trim() }, "Renaming");
  await reloadArtists();
  state.detail = state.artists.find((x) => x.id === a.id) || updated;
  $("#detail-name").textContent = state.detail.name;
}

// ---------------------------------------------------------------- admin: works
async function renderWorks() {
  const a = state.detail;
  const grid = $("#works-grid");
  const { works } = await api("GET", `${API}/artists/${encodeURIComponent(a.id)}/works`, undefined, "Loading works");
  if (!state.detail || state.detail.id !== a.id) return; // another artist was opened meanwhile
  grid.innerHTML = "";
  if (!works.length) grid.append(el("p", "muted", "No reference works yet."));
  for (const w of works) {
    const fig = el("figure", "thumb");
    const img = el("img");
    img.alt = workName(w);
    const edit = el("button", "secondary small", "Edit");
    edit.type = "button";
    edit.addEventListener("click", () => openEdit(a, w));
    const del = el("button", "danger small", "Delete");
    del.type = "button";
    del.addEventListener("click", () => guarded(async () => {
      if (!confirm(`Delete “${workName(w)}” from the portfolio of ${a.name} (${a.id})?`)) return;
      await api("DELETE", `${API}/artists/${encodeURIComponent(a.id)}/works/${encodeURIComponent(w.id)}`, undefined, "Deleting");
      if (state.editing && state.editing.id === w.id) closeEdit();
      await renderWorks();
      await reloadArtists();
    }));
    const full = [workName(w), w.date, w.medium, w.inventory_number, w.filename].filter(Boolean).join(" · ");
    const buttons = el("div", "row small-gap");
    buttons.append(edit, del);
    fig.append(img, caption([["title", workName(w)], ["date", w.date || ""]], full), buttons);
    grid.append(fig);
    thumbnail(a.id, w.id, 160).then((url) => (img.src = url)).catch(showError);
  }
}

const CATALOGUE_FIELDS = ["title", "date", "medium", "dimensions", "inventory_number", "photo_credit", "notes"];

function openEdit(artist, w) {
  state.editing = w;
  const form = $("#work-edit");
  $("#work-edit-name").textContent = `${workName(w)} (${artist.name})`;
  for (const f of CATALOGUE_FIELDS) form.elements[f].value = w[f] || "";
  form.hidden = false;
  form.elements.title.focus();
}

function closeEdit() {
  state.editing = null;
  $("#work-edit").hidden = true;
}

async function saveEdit() {
  const a = state.detail, w = state.editing;
  if (!a || !w) return;
  const form = $("#work-edit");
  const changes = {};
  for (const f of CATALOGUE_FIELDS) if ((w[f] || "") !== form.elements[f].value.trim()) changes[f] = form.elements[f].value.trim();
  if (Object.keys(changes).length) {
    await api("PATCH", `${API}/artists/${encodeURIComponent(a.id)}/works/${encodeURIComponent(w.id)}`, changes, "Saving");
  }
  closeEdit();
  await renderWorks();
}

// The files chosen for upload, each with its title and date (the rest of a catalogue entry is edited afterwards).
function renderCatalogueRows() {
  const box = $("#works-catalogue");
  box.innerHTML = "";
  for (const f of Array.from($("#works-files").files)) {
    const row = el("div", "catalogue-row");
    const name = el("span", "file-name", f.name);
    name.title = f.name;
    const title = el("input");
    Object.assign(title, { placeholder: "title (optional)", maxLength: 256, className: "cat-title" });
    title.setAttribute("aria-label", `title of ${f.name}`);
    const date = el("input");
    Object.assign(date, { placeholder: "date", maxLength: 64, className: "cat-date" });
    date.setAttribute("aria-label", `date of ${f.name}`);
    row.append(name, title, date);
    box.append(row);
  }
}

// One request per batch (each batch all-or-nothing on the server); progress counts the bytes sent overall.
function uploadBatch(artistId, files, entries, allowDuplicate, onProgress) {
  return new Promise((resolve, reject) => {
    const form = new FormData();
    for (const f of files) form.append("image", f);
    for (const field of ["title", "date"]) {
      if (entries.some((e) => e[field])) for (const e of entries) form.append(field, e[field]);
    }
    if (allowDuplicate) form.append("allow_duplicate", "true");
    const xhr = new XMLHttpRequest();
    const id = busyStart("Enrolling works");
    xhr.open("POST", `${API}/artists/${encodeURIComponent(artistId)}/works`);
    xhr.setRequestHeader("X-API-Key", key());
    xhr.upload.addEventListener("progress", (ev) => ev.lengthComputable && onProgress(ev.loaded));
    xhr.addEventListener("load", () => {
      busyEnd(id);
      const headers = new Headers();
      const retry = xhr.getResponseHeader("Retry-After");
      if (retry) headers.set("Retry-After", retry);
      headers.set("content-type", xhr.getResponseHeader("content-type") || "");
      answer(new Response(xhr.status === 204 ? null : xhr.responseText, { status: xhr.status, headers }))
        .then(resolve, reject);
    });
    xhr.addEventListener("error", () => {
      busyEnd(id);
      reject(new ApiError(0, "network_error", "the upload was interrupted"));
    });
    xhr.send(form);
  });
}

async function uploadWorks() {
  const a = state.detail;
  const files = Array.from($("#works-files").files);
  if (!a) throw new Error("open an artist first");
  if (!files.length) throw new Error(`choose reference works for ${a.name} first`);
  const entries = [...document.querySelectorAll("#works-catalogue .catalogue-row")].map((row) => ({
    title: row.querySelector(".cat-title").value.trim(),
    date: row.querySelector(".cat-date").value.trim(),
  }));
  const allowDuplicate = $("#works-allow-duplicate").checked;
  const n = files.length;
  if (!confirm(`Enrol ${n} work${n === 1 ? "" : "s"} in the portfolio of ${a.name} (${a.id})?`)) return;
  const BATCH = 8;
  const total = files.reduce((sum, f) => sum + f.size, 0) || 1;
  const bar = $("#works-progress");
  const status = $("#works-status");
  bar.hidden = false;
  bar.value = 0;
  let done = 0, enrolled = 0;
  try {
    for (let i = 0; i < n; i += BATCH) {
      const batch = files.slice(i, i + BATCH);
      const size = batch.reduce((sum, f) => sum + f.size, 0);
      status.textContent = `uploading ${i + 1}–${i + batch.length} of ${n} to ${a.name}…`;
      const r = await uploadBatch(a.id, batch, entries.slice(i, i + BATCH), allowDuplicate,
        (sent) => (bar.value = Math.min(100, (100 * (done + sent)) / total)));
      done += size;
      enrolled += r.works.length;
      bar.value = (100 * done) / total;
    }
    status.textContent = `${enrolled} works enrolled in the portfolio of ${a.name}.`;
    $("#works-files").closest(".drop")._clear();
  } catch (e) {
    status.textContent = `${enrolled} works enrolled before the error; the failing batch was not enrolled.`;
    throw e;
  } finally {
    await renderWorks();
    await reloadArtists();
  }
}

// ---------------------------------------------------------------- admin: audit
const VERDICT_WORDS = { consistent: "consistent", inconclusive: "inconclusive", not_consistent: "not consistent" };

function auditRow(e) {
  const artist = e.artist_name || e.artist_id || "";
  const work = e.work_title || (e.work_id ? `work ${e.work_id.slice(0, 8)}` : "");
  const copy = e.same_work_as ? ` (a copy of work ${e.same_work_as.slice(0, 8)})` : "";
  return [new Date(e.time).toLocaleString(), e.key_name, e.route, artist,
    (VERDICT_WORDS[e.verdict] || e.decision) + copy, score3(e.score), score3(e.threshold), work];
}

async function loadAudit() {
  const page = await api("GET", `${API}/audit?offset=${state.auditOffset}&limit=${AUDIT_PER_PAGE}`, undefined, "Reading the audit log");
  if (!page.items.length && state.auditOffset > 0 && page.total > 0) {
    state.auditOffset = Math.max(0, (Math.ceil(page.total / AUDIT_PER_PAGE) - 1) * AUDIT_PER_PAGE);
    return loadAudit();
  }
  const table = $("#audit-table");
  const body = table.querySelector("tbody");
  body.innerHTML = "";
  for (const e of page.items) {
    const tr = el("tr");
    tr.append(...auditRow(e).map((c) => el("td", null, c)));
    body.append(tr);
  }
  table.hidden = false;
  $("#audit-pager").hidden = false;
  $("#audit-range").textContent = page.total
    ? `decisions ${page.offset + 1}–${page.offset + page.items.length} of ${page.total}, newest first`
    : "no decisions yet";
  $("#audit-newer").disabled = state.auditOffset === 0;
  $("#audit-older").disabled = page.offset + page.items.length >= page.total;
}

function pageAudit(step) {
  state.auditOffset = Math.max(0, state.auditOffset + step * AUDIT_PER_PAGE);
  return loadAudit();
}

const AUDIT_COLUMNS = ["id", "time", "key_name", "route", "verdict", "decision", "artist_id", "artist_name", "score",
  "threshold", "work_id", "work_title", "same_work_as", "image_sha256", "image_b_sha256", "model_id", "request_id"];

function csvCell(v) {
  const s = v == null ? "" : String(v);
  // a leading = + - @ would be read as a formula by spreadsheets: quote it behind an apostrophe
  const safe = /^[=+\-@\t\r]/.test(s) ? "'" + s : s;
  return /[",\n\r]/.test(safe) ? `"${safe.replaceAll('"', '""')}"` : safe;
}

async function exportAudit() {
  const rows = [AUDIT_COLUMNS.join(",")];
  for (let offset = 0; ; offset += AUDIT_PER_REQUEST) {
    const page = await api("GET", `${API}/audit?offset=${offset}&limit=${AUDIT_PER_REQUEST}`, undefined, "Exporting the audit log");
    for (const e of page.items) rows.push(AUDIT_COLUMNS.map((c) => csvCell(e[c])).join(","));
    if (!page.items.length || offset + page.items.length >= page.total) break;
  }
  const blob = new Blob([rows.join("\r\n") + "\r\n"], { type: "text/csv" });
  saveBlob(blob, `brushprint-audit-${new Date().toISOString().slice(0, 10)}.csv`);
}

// hands `blob` to the browser as a download named `filename`
function saveBlob(blob, filename) {
  const link = el("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

// the collection's backup archive (GET /v1/archive: what `python -m service export` writes, for `import`)
async function downloadArchive() {
  const blob = await api("GET", `${API}/archive`, undefined, "Writing the collection's archive");
  saveBlob(blob, `brushprint-archive-${new Date().toISOString().slice(0, 10)}.tar`);
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
  $("#identify-go").addEventListener("click", () => guarded(identify));
  $("#verify-artist").addEventListener("change", verifyArtistChanged);
  $("#verify-artist-id").addEventListener("change", verifyArtistChanged);
  $("#works-files").addEventListener("chosen", renderCatalogueRows);
  $("#works-upload").addEventListener("click", () => guarded(uploadWorks));
  $("#collections-load").addEventListener("click", () => guarded(loadCollections));
  $("#artist-rename").addEventListener("click", () => guarded(renameArtist));
  $("#artists-prev").addEventListener("click", () => pageArtists(-1));
  $("#artists-next").addEventListener("click", () => pageArtists(1));
  $("#work-edit").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(saveEdit);
  });
  $("#work-edit-cancel").addEventListener("click", closeEdit);
  $("#audit-load").addEventListener("click", () => guarded(() => { state.auditOffset = 0; return loadAudit(); }));
  $("#audit-newer").addEventListener("click", () => guarded(() => pageAudit(-1)));
  $("#audit-older").addEventListener("click", () => guarded(() => pageAudit(1)));
  $("#audit-csv").addEventListener("click", () => guarded(exportAudit));
  $("#archive-download").addEventListener("click", () => guarded(downloadArchive));
  $("#artist-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    guarded(async () => {
      const made = await api("POST", `${API}/artists`, { id: $("#artist-id").value.trim(), name: $("#artist-name").value.trim() }, "Creating");
      $("#artist-id").value = "";
      $("#artist-name").value = "";
      await reloadArtists();
      const index = state.artists.findIndex((a) => a.id === made.id);
      if (index >= 0) state.artistPage = Math.floor(index / ARTISTS_PER_PAGE);
      renderArtists();
      await openArtist(state.artists[index] || made);
    });
  });
  if (key()) guarded(() => useKey(key()));
});
