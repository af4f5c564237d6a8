"""Robustness to the photograph: a model judged on every image of a corpus under each acquisition condition.

Covered by tests/training/test_robustness.py.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contract.calibration import threshold_table
from contract.card import Aggregation, BackboneSpec, CalibrationRow, QualityBand, QualityModel, sha256_file
from contract import quality
from contract.quality import pair_quality
from contract.decode import CORPUS_LIMITS, Decoded, decode_bytes, decode_file
from contract.recipe import crop_features, model_inputs, resized
from training import conditions as cond
from training import cosine, realeval


def _key(spec: BackboneSpec, backbone: Path, paths: Sequence[Path], condition: str, seed: int) -> str:
    parts = [spec.model_dump(mode="json"), sha256_file(backbone), [sha256_file(p) for p in paths], condition]
    return hashlib.sha256(json.dumps([*parts, cond.VERSION, seed]).encode()).hexdigest()[:16]


def _upload(path: Path, condition: cond.Condition | None, seed: int) -> Decoded:
    """The picture as a caller under `condition` would upload it (None: the file as published), decoded."""
    if condition is None:
        return decode_file(path, CORPUS_LIMITS)
    return decode_bytes(condition(decode_file(path, CORPUS_LIMITS).image, seed), CORPUS_LIMITS)


def upload_measures(decoded: Decoded, spec: BackboneSpec) -> quality.Measures:
    """contract.quality's measures of an upload, at the recipe's working resolution (as the service takes them)."""
    working = resized(decoded.image, spec.preprocessing)
    return quality.measure(decoded.image, decoded.n_bytes, decoded.jpeg_quality, working)


def condition_crops(
    paths: Sequence[Path],
    condition: cond.Condition | None,
    spec: BackboneSpec,
    backbone: Path,
    cache: Path | None = None,
    seed: int = 0,
    session=None,  # type: ignore[no-untyped-def]
) -> tuple[list[np.ndarray], list[quality.Measures]]:
    """Per picture, its crops' vectors [n_crops, embedding_dim] and its quality measures after `condition`
    (image i drawn with seed+i; None: as published): the bytes the condition writes go through contract.decode,
    contract.quality and contract.recipe exactly as an upload does. Cached in `cache` by everything they depend
    on; either half is computed alone when only it is missing."""
    from tqdm import tqdm

    name = condition.name if condition is not None else "published"
    key = _key(spec, backbone, paths, name, seed)
    fc = Path(cache) / f"crops-{name}-{key}.npz" if cache is not None else None
    fm = Path(cache) / f"measures-{name}-{key}.json" if cache is not None else None
    crops = measures = None
    if fc is not None and fc.is_file():
        data = np.load(fc)
        crops = [data[str(i)] for i in range(len(paths))]
    if fm is not None and fm.is_file():
        measures = [quality.Measures(**m) for m in json.loads(fm.read_text())]
    if crops is not None and measures is not None:
        return crops, measures
    if crops is None and session is None:
        from training.realmodel import _session

        session = _session(backbone)
    new_crops, new_measures = [], []
    for i, p in enumerate(tqdm(paths, desc=name, unit="img")):
        decoded = _upload(p, condition, seed + i)
        if measures is None:
            new_measures.append(upload_measures(decoded, spec))
        if crops is None:
            x = model_inputs(decoded.image, spec)
            new_crops.append(crop_features(session.run(None, {spec.input_name: x})[0], spec.embedding))
    if crops is None:
        crops = new_crops
        if fc is not None:
            fc.parent.mkdir(parents=True, exist_ok=True)
            np.savez(fc, **{str(i): v for i, v in enumerate(crops)})
    if measures is None:
        measures = new_measures
        if fm is not None:
            fm.parent.mkdir(parents=True, exist_ok=True)
            fm.write_text(json.dumps([m.as_dict() for m in measures]))
    return crops, measures


# ------------------------------------------------------------------------------------------------ fitting


@dataclass(frozen=True)
class Copies:
    """Embeddings of a corpus as published and under acquisition conditions (image-level, crops averaged),
    plus the crops as published (what the whitening's total covariance is fitted on)."""

    crops: list[np.ndarray]  # published: per image [n_crops, D]
    emb: np.ndarray  # published: [N, D]
    under: dict[str, np.ndarray]  # condition name → [N, D]
    _principal: dict = field(default_factory=dict, compare=False, repr=False)

    under_crops: dict[str, list[np.ndarray]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, crops: Sequence[np.ndarray], under: dict[str, Sequence[np.ndarray]]) -> Copies:
        return cls(
            list(crops),
            np.stack([c.mean(axis=0) for c in crops]),
            {k: np.stack([c.mean(axis=0) for c in v]) for k, v in under.items()},
            under_crops={k: list(v) for k, v in under.items()},
        )

    def crop_nuisance(self, idx: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Crop-level differences: each copy's crop minus the published crop at the same grid position (the
        grids align after resizing; a hand-held copy's misalignment counts as nuisance too)."""
        out = [
            self.under_crops[n][i] - self.crops[i]
            for n in names
            for i in idx
            if self.under_crops[n][i].shape == self.crops[i].shape
        ]
        return np.concatenate(out) if out else np.zeros((0, self.emb.shape[1]))

    def region_nuisance(self, idx: np.ndarray) -> np.ndarray:
        """Each published crop minus its picture's mean crop: what differs between regions of one painting."""
        return np.concatenate([self.crops[i] - self.crops[i].mean(axis=0) for i in idx])

    def principal(self, idx: np.ndarray, subspace: int) -> cosine.Principal:
        """The principal subspace of the published crops of images `idx` (memoised: many fits share a split)."""
        key = (np.asarray(idx).tobytes(), subspace)
        cache = self._principal
        if key not in cache:
            cache[key] = cosine.principal(np.concatenate([self.crops[i] for i in idx]), subspace)
        return cache[key]

    def nuisance(self, idx: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """[len(idx) * len(names), D]: each copy's embedding minus its published embedding."""
        if not names:
            return np.zeros((0, self.emb.shape[1]))
        return np.concatenate([self.under[n][idx] - self.emb[idx] for n in names])


@dataclass(frozen=True)
class Recipe:
    """How a projection is fitted: plain PCA whitening (`robust=False`) or the nuisance-aware one."""

    dim: int = 64
    power: float = -0.5
    robust: bool = True
    shrink: float = 0.1
    subspace: int = 256
    crops: float = 0.0  # weight of crop-level copy differences in the nuisance (image-level ones weigh 1)
    regions: float = 0.0  # weight of differences between regions of one published painting

    def fit(self, copies: Copies, idx: np.ndarray, conditions: Sequence[str]) -> cosine.Whitening:
        if not self.robust or not conditions:
            vectors = np.concatenate([copies.crops[i] for i in idx])
            return cosine.fit_whitening(vectors, dim=self.dim, power=self.power)
        parts = [copies.nuisance(idx, conditions)]
        if self.crops:
            d = copies.crop_nuisance(idx, conditions)
            parts.append(d * np.sqrt(self.crops * len(parts[0]) / max(1, len(d))))
        if self.regions:
            d = copies.region_nuisance(idx)
            parts.append(d * np.sqrt(self.regions * len(parts[0]) / max(1, len(d))))
        return cosine.fit_robust(
            copies.principal(idx, self.subspace),
            np.concatenate(parts),
            dim=self.dim,
            power=self.power,
            shrink=self.shrink,
            subspace=self.subspace,
        )


# ------------------------------------------------------------------------------------------------ judging


@dataclass(frozen=True)
class Scored:
    """Pairs of a test half scored by a projection fitted on the other half: as published, and per condition
    within (both pictures through it) and cross (one published, one through it)."""

    ia: np.ndarray
    ib: np.ndarray
    same: np.ndarray
    cosine: np.ndarray


def score_pairs(va: np.ndarray, vb: np.ndarray, test: np.ndarray, labels: np.ndarray, both: bool) -> Scored:
    """Cosines of every within-`test` pair (a < b) with a's vector from `va` and b's from `vb`; with `both`,
    also the other orientation (b from `va`, a from `vb`) — for cross pairs, either picture may be the copy."""
    a, b = np.triu_indices(len(test), 1)
    ia, ib = test[a], test[b]
    cos = np.sum(va[a] * vb[b], axis=1)
    if both:
        ia, ib = np.concatenate([ia, ib]), np.concatenate([ib, ia])
        cos = np.concatenate([cos, np.sum(vb[a] * va[b], axis=1)])
    return Scored(ia, ib, labels[ia] == labels[ib], cos)


# ------------------------------------------------------------------------------------ one model, fitted


PAIR_KINDS = ("within", "cross")
BAND_EDGES = (0.9, 0.85, 0.8, 0.75, 0.7, 0.65, 0.6, 0.5, 0.4, 0.3, 0.2)
MIN_BAND_GENUINE = 40  # distinct same-artist pairs (per repeat) a band needs before it speaks for its quality
MIN_BAND_IMPOSTOR = 400
QUALITY_FEATURES = ("shorter_side", "bits_per_pixel", "jpeg_quality", "sharpness", "noise")
QUALITY_TARGET = "cosine of the copy's projection to the published picture's (1: the camera moved nothing)"


@dataclass(frozen=True)
class Trials:
    """Scored pairs: the two images, genuine?, score (cosine or probability), the pair's quality (the lower of
    its two pictures') and the repeat it came from. The same two paintings under several conditions are
    several trials of one underlying pair: `distinct` counts those, what a rate's confidence may rest on."""

    ia: np.ndarray
    ib: np.ndarray
    same: np.ndarray
    score: np.ndarray
    quality: np.ndarray
    repeat: np.ndarray

    _FIELDS = ("ia", "ib", "same", "score", "quality", "repeat")

    @classmethod
    def cat(cls, parts: Sequence[Trials]) -> Trials:
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls._FIELDS))

    def select(self, keep: np.ndarray) -> Trials:
        return Trials(*(getattr(self, f)[keep] for f in self._FIELDS))

    def with_scores(self, score: np.ndarray) -> Trials:
        return Trials(self.ia, self.ib, self.same, np.asarray(score, np.float64), self.quality, self.repeat)

    def pairs(self) -> realeval.Pairs:
        return realeval.Pairs(self.ia, self.ib, self.same, self.score, self.repeat)

    def distinct(self) -> tuple[int, int]:
        """(genuine, impostor) distinct underlying pairs per repeat."""
        reps = max(1, len(np.unique(self.repeat)))
        lo, hi = np.minimum(self.ia, self.ib), np.maximum(self.ia, self.ib)
        key = (lo.astype(np.int64) * 100_003 + hi) * 1000 + self.repeat
        return len(np.unique(key[self.same])) // reps, len(np.unique(key[~self.same])) // reps


def family_groups(names: Sequence[str]) -> dict[frozenset[str], list[str]]:
    """The conditions `names` grouped by the families they touch (one held-out fit per group)."""
    groups: dict[frozenset[str], list[str]] = {}
    for c in cond.get(names):
        groups.setdefault(frozenset(c.families), []).append(c.name)
    return groups


def allowed_without(names: Sequence[str], families: frozenset[str]) -> list[str]:
    """The conditions among `names` that share no family with `families`."""
    return [c.name for c in cond.get(names) if not set(c.families) & families]


def features(measures: dict[str, list[quality.Measures]]) -> dict[str, np.ndarray]:
    """The quality model's input per condition: [N, len(QUALITY_FEATURES)]."""
    return {k: np.array([m.vector(QUALITY_FEATURES) for m in v]) for k, v in measures.items()}


def fit_quality(
    copies: Copies, feats: dict[str, np.ndarray], idx: np.ndarray, names: Sequence[str], recipe: Recipe
) -> QualityModel | None:
    """Linear prediction, from a picture's measures alone, of how far the camera moved its projection: each
    copy's cosine to its published picture under a projection fitted (on `idx`) WITHOUT the copy's condition
    families — so the quality reads how much an unfamiliar degradation of that measured kind costs, not how
    well the projection learned one it saw. The published pictures count as 1."""
    if not names:
        return None
    from sklearn.linear_model import Ridge

    x, y = [feats["published"][idx]], [np.ones(len(idx))]
    for fams, group in family_groups(names).items():
        w = recipe.fit(copies, idx, allowed_without(names, fams))
        pub = realeval.project(w, copies.emb[idx])
        for n in group:
            y.append(np.sum(realeval.project(w, copies.under[n][idx]) * pub, axis=1))
            x.append(feats[n][idx])
    xs, ys = np.concatenate(x), np.concatenate(y)
    mean, scale = xs.mean(axis=0), np.maximum(xs.std(axis=0), 1e-6)
    reg = Ridge(alpha=1.0).fit((xs - mean) / scale, ys)
    return QualityModel(
        features=list(QUALITY_FEATURES),
        mean=mean.tolist(),
        scale=scale.tolist(),
        coef=reg.coef_.tolist(),
        intercept=float(reg.intercept_),
        floor=0.0,
        target=QUALITY_TARGET,
        fitted_on=f"{len(ys)} pictures: {len(idx)} paintings as published and under {len(names)} conditions",
    )


def qualities(model: QualityModel | None, feats: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each picture's quality under a quality model (1 without one), per condition; the same arithmetic as
    contract.quality.score, vectorised."""
    if model is None:
        return {k: np.ones(len(v)) for k, v in feats.items()}
    z = {k: (v - np.asarray(model.mean)) / np.asarray(model.scale) for k, v in feats.items()}
    return {k: np.clip(model.intercept + v @ np.asarray(model.coef), 0.0, 1.0) for k, v in z.items()}


def scored_trials(
    head: cosine.CosineHead,
    copies: Copies,
    q: dict[str, np.ndarray],
    labels: np.ndarray,
    test: np.ndarray,
    name: str | None,
    kind: str = "within",
    repeat: int = 0,
) -> Trials:
    """Cosines of the pairs within `test` under `head`'s projection: as published (`name` None), or under
    condition `name` `within` (both pictures through it) or `cross` (one published, one through it, in both
    orientations). `q`: each picture's quality per condition ("published" included)."""
    a, b = np.triu_indices(len(test), 1)
    pub, qp = head.project(copies.emb[test]), q["published"][test]
    va, qa, vb, qb = pub, qp, pub, qp
    if name is not None:
        cp, qc = head.project(copies.under[name][test]), q[name][test]
        if kind == "within":
            va, qa, vb, qb = cp, qc, cp, qc
        else:
            a, b = np.concatenate([a, b]), np.concatenate([b, a])
            vb, qb = cp, qc
    ia, ib = test[a], test[b]
    cos = np.sum(va[a].astype(np.float64) * vb[b], axis=1)
    return Trials(ia, ib, labels[ia] == labels[ib], cos, pair_quality(qa[a], qb[b]), np.full(len(a), repeat))



def build_bands(t: Trials, n_conditions: int) -> list[QualityBand]:
    """Quality bands from scored trials (probabilities): walking down BAND_EDGES, a band closes once it holds
    MIN_BAND_GENUINE / MIN_BAND_IMPOSTOR distinct pairs; what is left below the last band is unmeasured (the
    quality model's floor is that band's lower edge)."""
    bands: list[QualityBand] = []
    top = np.inf
    for edge in (*BAND_EDGES, 0.0):
        sel = t.select((t.quality >= edge) & (t.quality < top))
        g, i = sel.distinct()
        if g < MIN_BAND_GENUINE or i < MIN_BAND_IMPOSTOR:
            continue
        table = threshold_table(sel.same, sel.score)
        row = operating_point(table, "default", None)
        bands.append(
            QualityBand(
                min_quality=edge,
                pair=table,
                recommended_threshold=row.threshold,
                recommended_rule=(
                    f"equal error rate of out-of-fold pairs of quality >= {edge:g} (FPR {row.fpr:.3f}, FNR {row.fnr:.3f})"
                ),
                measured_on=(
                    f"{g} same-artist / {i} different-artist distinct pairs per repeat, {len(sel.same)} trials: "
                    f"published and under {n_conditions} acquisition conditions, out-of-fold"
                ),
            )
        )
        top = edge
    return bands


def band_index(quality_values: np.ndarray, bands: Sequence[QualityBand]) -> np.ndarray:
    """Per trial, the index of its band (bands highest first), -1 below the lowest."""
    mins = np.array([b.min_quality for b in bands])
    out = np.full(len(quality_values), -1)
    for k in range(len(bands) - 1, -1, -1):
        out[quality_values >= mins[k]] = k
    return out


@dataclass(frozen=True)
class Fitted:
    """Everything a cosine model learns from a set of images: projection, calibration, quality model, bands."""

    head: cosine.CosineHead
    pair: list[CalibrationRow]  # published pairs, out-of-fold
    portfolio: list[CalibrationRow]  # published leave-one-out verify trials, out-of-fold
    quality: QualityModel | None
    bands: list[QualityBand]  # highest first
    published: Trials  # the out-of-fold published pairs the tables came from (probabilities)
    under: Trials  # out-of-fold pairs under the fit's conditions, each scored without its families (probabilities)
    conditions: tuple[str, ...]


def fit_model(
    copies: Copies,
    feats: dict[str, np.ndarray],
    labels: np.ndarray,
    idx: np.ndarray,
    names: Sequence[str],
    recipe: Recipe,
    *,
    folds: int = 2,
    repeats: int = 2,
    seed: int = 0,
    aggregation: Aggregation = Aggregation(),
) -> Fitted:
    """The whole cosine recipe on images `idx`, with copies under conditions `names`: the projection and the
    quality model on all of them; the logistic map and the published tables from artist-disjoint out-of-fold
    scores (inner `folds` x `repeats`); the quality bands from out-of-fold pairs under each condition scored by
    a projection that never saw that condition's families (so a band's rates are what an unfamiliar
    degradation of that quality costs, not what a rehearsed one does)."""
    names = tuple(names)
    groups = family_groups(names)
    whitening = recipe.fit(copies, idx, names)
    qmodel = fit_quality(copies, feats, idx, names, recipe)
    q = qualities(qmodel, feats)
    pub_parts, cp_parts = [], []
    for r in range(repeats):
        fold = realeval.artist_folds(labels[idx], folds, seed + r)
        for f in range(folds):
            train, test = idx[fold != f], idx[fold == f]
            inner = cosine.CosineHead(recipe.fit(copies, train, names), 1.0, 0.0)
            pub_parts.append(scored_trials(inner, copies, q, labels, test, None, repeat=r))
            for fams, group in groups.items():
                held = cosine.CosineHead(recipe.fit(copies, train, allowed_without(names, fams)), 1.0, 0.0)
                for n in group:
                    for kind in PAIR_KINDS:
                        cp_parts.append(scored_trials(held, copies, q, labels, test, n, kind, repeat=r))
    pub = Trials.cat(pub_parts)
    slope, bias = cosine.fit_calibration(pub.score, pub.same)
    head = cosine.CosineHead(whitening, slope, bias)
    pub = pub.with_scores(head.probability(pub.score))
    under = Trials.cat(cp_parts) if cp_parts else pub.select(np.zeros(len(pub.same), bool))
    under = under.with_scores(head.probability(under.score))
    vs, vy, _ = realeval.verify_trials(pub.pairs(), labels, aggregation)
    bands = build_bands(Trials.cat([pub, under]), len(names)) if qmodel is not None else []
    if qmodel is not None and bands:
        qmodel = qmodel.model_copy(update={"floor": bands[-1].min_quality})
    return Fitted(
        head, threshold_table(pub.same, pub.score), threshold_table(vy, vs), qmodel, bands, pub, under, names
    )


def operating_point(table: Sequence[CalibrationRow], kind: str, value: float | None) -> CalibrationRow:
    return realeval.operating_point(table, kind, value)


# ------------------------------------------------------------------------------------ judged, held out

OPERATING_POINTS = (("max_fpr", 0.05), ("max_fpr", 0.01), ("default", None))


def _rule(kind: str, value: float | None) -> str:
    return f"{kind}<={value:g}" if value is not None else "default"


@dataclass(frozen=True)
class Judged:
    """Trials of a test half under one condition and kind, with the decision each got at each operating point
    (from its quality band's table when the model has bands) and the rates that table claimed."""

    trials: Trials  # probabilities
    refused: np.ndarray  # below the quality floor: the service would refuse to judge
    accept: dict[str, np.ndarray]  # rule → accepted?
    claimed_fpr: dict[str, np.ndarray]
    claimed_fnr: dict[str, np.ndarray]


def decide(model: Fitted, t: Trials) -> Judged:
    """Each trial judged as the service judges it: its quality picks the band, the band's table the threshold."""
    tables = [b.pair for b in model.bands] or [model.pair]
    defaults = [b.recommended_threshold for b in model.bands] or [operating_point(model.pair, "default", None).threshold]
    band = band_index(t.quality, model.bands) if model.bands else np.zeros(len(t.score), int)
    refused = band < 0
    accept, cf, cn = {}, {}, {}
    for kind, value in OPERATING_POINTS:
        rule = _rule(kind, value)
        thr, fpr, fnr = np.zeros(len(tables)), np.zeros(len(tables)), np.zeros(len(tables))
        for k, table in enumerate(tables):
            if kind == "default":
                row_t = defaults[k]
                fpr[k], fnr[k] = _rates_at(table, row_t)
                thr[k] = row_t
            else:
                row = operating_point(table, kind, value)
                thr[k], fpr[k], fnr[k] = row.threshold, row.fpr, row.fnr
        b = np.maximum(band, 0)
        accept[rule] = t.score >= thr[b]
        cf[rule], cn[rule] = fpr[b], fnr[b]
    return Judged(t, refused, accept, cf, cn)


def _rates_at(table: Sequence[CalibrationRow], threshold: float) -> tuple[float, float]:
    ts = np.array([r.threshold for r in table])
    return float(np.interp(threshold, ts, [r.fpr for r in table])), float(np.interp(threshold, ts, [r.fnr for r in table]))


def _rate_ci(j: Judged, labels: np.ndarray, rule: str, genuine: bool, n_boot: int) -> tuple[float, tuple[float, float]]:
    """Observed FPR (genuine False) or FNR (True) among the judged trials, with an artist-bootstrap 95 % CI."""
    keep = ~j.refused & (j.trials.same == genuine)
    wrong = ~j.accept[rule] if genuine else j.accept[rule]
    sel = j.trials.select(keep).with_scores(wrong[keep].astype(np.float64))
    if not keep.any():
        return float("nan"), (float("nan"), float("nan"))
    value = float(sel.score.mean())

    def stat(p: realeval.Pairs, w: np.ndarray) -> float:
        return float(np.average(p.score, weights=w))

    if n_boot <= 0:
        return value, (value, value)
    # bootstrap_ci needs both classes present; resample artists over these trials alone
    pairs = sel.pairs()
    both = realeval.Pairs(pairs.ia, pairs.ib, np.ones(len(pairs.ia), bool), pairs.score, pairs.repeat)
    return value, _boot(both, labels, stat, n_boot)


def _boot(pairs: realeval.Pairs, labels: np.ndarray, stat, n: int, seed: int = 0) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    artists, inverse = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        counts = np.bincount(rng.integers(0, len(artists), len(artists)), minlength=len(artists)).astype(np.float64)
        w = counts[inverse[pairs.ia]] * counts[inverse[pairs.ib]]
        if w.sum() > 0:
            values.append(stat(pairs, w))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


def summarise(j: Judged, labels: np.ndarray, n_boot: int) -> dict:
    """One row of the robustness table: AUC, refusals, observed against claimed rates at each operating point."""
    t = j.trials
    auc = realeval.auc_eer(t.same, t.score)[0]
    auc_ci = realeval.bootstrap_ci(t.pairs(), labels, lambda p, w: realeval.auc_eer(p.same, p.score, w)[0], n_boot) if n_boot else (auc, auc)
    out: dict = {"pair_auc": auc, "pair_auc_ci95": auc_ci, "refused": float(j.refused.mean()), "trials": int(len(t.same)),
                 "quality_median": float(np.median(t.quality)), "points": {}}
    kept = ~j.refused
    for kind, value in OPERATING_POINTS:
        rule = _rule(kind, value)
        fpr, fpr_ci = _rate_ci(j, labels, rule, False, n_boot)
        fnr, fnr_ci = _rate_ci(j, labels, rule, True, n_boot)
        imp, gen = kept & ~t.same, kept & t.same
        out["points"][rule] = {
            "observed_fpr": fpr,
            "observed_fpr_ci95": fpr_ci,
            "claimed_fpr": float(j.claimed_fpr[rule][imp].mean()) if imp.any() else float("nan"),
            "observed_fnr": fnr,
            "observed_fnr_ci95": fnr_ci,
            "claimed_fnr": float(j.claimed_fnr[rule][gen].mean()) if gen.any() else float("nan"),
        }
    return out


def judge(
    copies: Copies,
    feats: dict[str, np.ndarray],
    labels: np.ndarray,
    conditions: Sequence[cond.Condition],
    recipe: Recipe,
    *,
    outer_repeats: int = 3,
    inner_repeats: int = 2,
    seed: int = 100,
    n_boot: int = 200,
    aggregation: Aggregation = Aggregation(),
) -> dict:
    """The model recipe judged on artists and acquisition-condition families it was not fitted on.

    Artists are split in halves (`outer_repeats` times, both ways); for each judged condition the whole recipe
    (projection, quality model, logistic map, tables, bands) is fitted on one half with copies under every
    condition that shares none of its families, and judged on the other half's pairs under that condition,
    within and cross; as published with every condition in the fit (the shipped configuration)."""
    groups: dict[frozenset[str], list[cond.Condition | None]] = {frozenset(): [None]}
    for c in conditions:
        groups.setdefault(frozenset(c.families), []).append(c)
    parts: dict[tuple[str, str], list[Judged]] = {}
    for r in range(outer_repeats):
        half = realeval.artist_folds(labels, 2, seed + r)
        for f in (0, 1):
            fit, test = np.where(half == f)[0], np.where(half != f)[0]
            for fams, judged in groups.items():
                names = [c.name for c in conditions if not set(c.families) & fams]
                model = fit_model(
                    copies, feats, labels, fit, names, recipe, repeats=inner_repeats, seed=seed + 17 * r,
                    aggregation=aggregation,
                )  # fmt: skip
                q = qualities(model.quality, feats)
                for c in judged:
                    for kind in ("published",) if c is None else PAIR_KINDS:
                        name = None if c is None else c.name
                        t = scored_trials(model.head, copies, q, labels, test, name, kind, repeat=2 * r + f)
                        t = t.with_scores(model.head.probability(t.score))
                        parts.setdefault((name or "published", kind), []).append(decide(model, t))
    out = {}
    for (name, kind), js in parts.items():
        merged = Judged(
            Trials.cat([j.trials for j in js]),
            np.concatenate([j.refused for j in js]),
            *({k: np.concatenate([getattr(j, a)[k] for j in js]) for k in js[0].accept} for a in ("accept", "claimed_fpr", "claimed_fnr")),
        )
        out[f"{name}/{kind}"] = summarise(merged, labels, n_boot)
    return out
