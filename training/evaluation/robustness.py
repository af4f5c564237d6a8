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

from contract import quality
from contract.calibration import SampleSize, threshold_table
from contract.card import Aggregation, BackboneSpec, Card, QualityBand, QualityModel, sha256_file
from contract.decode import CORPUS_LIMITS, Decoded, decode_bytes, decode_file
from contract.operating import Table, Unreachable, equal_error_point
from contract.operating import operating_point as choose_point
from contract.quality import pair_quality
from contract.recipe import crop_features, model_inputs, resized
from training.backbone.sessions import cpu_session
from training.data import conditions as cond
from training.evaluation import realeval
from training.heads import cosine


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
    return quality.measure(decoded.image, decoded.n_bytes, decoded.jpeg_quality, working, decoded.size)


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
        session = cpu_session(backbone)
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
    _moments: dict = field(default_factory=dict, compare=False, repr=False)

    under_crops: dict[str, list[np.ndarray]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, crops: Sequence[np.ndarray], under: dict[str, Sequence[np.ndarray]]) -> Copies:
        return cls(
            list(crops),
            np.stack([c.mean(axis=0) for c in crops]),
            {k: np.stack([c.mean(axis=0) for c in v]) for k, v in under.items()},
            under_crops={k: list(v) for k, v in under.items()},
        )

    def principal(self, idx: np.ndarray, subspace: int) -> cosine.Principal:
        """The principal subspace of the published crops of images `idx` (memoised: many fits share a split)."""
        key = (np.asarray(idx).tobytes(), subspace)
        cache = self._principal
        if key not in cache:
            cache[key] = cosine.principal(np.concatenate([self.crops[i] for i in idx]), subspace)
        return cache[key]

    def noise(self, idx: np.ndarray, names: Sequence[str], subspace: int) -> np.ndarray:
        """The nuisance's uncentred second moment in the principal subspace of `idx` ([P, P]): the mean over
        conditions `names` of each one's (memoised: a judge fits every mix of conditions on the same splits)."""
        pca = self.principal(idx, subspace)
        total = np.zeros((pca.basis.shape[1],) * 2)
        for n in names:
            key = (np.asarray(idx).tobytes(), subspace, n)
            if key not in self._moments:
                d = (self.under[n][idx] - self.emb[idx]) @ pca.basis
                self._moments[key] = d.T @ d / len(d)
            total += self._moments[key]
        return total / max(1, len(names))


@dataclass(frozen=True)
class Recipe:
    """How a projection is fitted: plain PCA whitening (`robust=False`) or the nuisance-aware one."""

    dim: int = 64
    power: float = -0.5
    robust: bool = True
    shrink: float = 0.1
    subspace: int = 256

    def fit(self, copies: Copies, idx: np.ndarray, conditions: Sequence[str]) -> cosine.Whitening:
        """The projection fitted on images `idx` as published and their copies under `conditions`."""
        if not self.robust or not conditions:
            vectors = np.concatenate([copies.crops[i] for i in idx])
            return cosine.fit_whitening(vectors, dim=self.dim, power=self.power)
        pca = copies.principal(idx, self.subspace)
        noise = copies.noise(idx, conditions, self.subspace)
        return cosine.robust_from(pca, noise, dim=self.dim, power=self.power, shrink=self.shrink)


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
MIN_BAND_GENUINE = 40  # same-artist pair trials per repeat a band needs before it speaks for its quality
MIN_BAND_IMPOSTOR = 800
FLOOR_QUANTILE = 0.01  # the quality floor: below the lowest 1 % of the pairs measured, nothing is claimed
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


def portfolio_trials(
    head: cosine.CosineHead,
    copies: Copies,
    q: dict[str, np.ndarray],
    labels: np.ndarray,
    test: np.ndarray,
    name: str | None,
    aggregation: Aggregation,
    repeat: int = 0,
) -> Trials:
    """Leave-one-out verification inside `test` with probabilities from `head`: each work (as published, or its
    copy under condition `name`) against every artist's published portfolio in `test` (its own without it),
    aggregated as the service aggregates. Genuine trials only for artists with 2+ works in `test`. A trial's
    quality is its query's (the portfolio is as published); `ia` the query, `ib` the first reference."""
    pub = head.project(copies.emb[test])
    query = pub if name is None else head.project(copies.under[name][test])
    qq = q["published" if name is None else name][test]
    prob = head.probability(query.astype(np.float64) @ pub.T.astype(np.float64))
    lab = labels[test]
    parts = []
    for a in np.unique(lab):
        refs = np.where(lab == a)[0]
        s = prob[:, refs].copy()
        own = lab == a
        s[own] = np.where(refs[None, :] == np.arange(len(test))[own, None], -np.inf, s[own])  # leave one out
        n_refs = np.full(len(test), len(refs)) - own
        keep = n_refs > 0
        top = -np.sort(-s[keep], axis=1)
        m = np.minimum(aggregation.top_m, n_refs[keep])
        csum = np.cumsum(np.where(np.isfinite(top), top, 0.0), axis=1)
        score = csum[np.arange(len(m)), m - 1] / m  # contract.aggregation's top-m mean, all queries at once
        q_idx = np.where(keep)[0]
        parts.append((test[q_idx], np.full(len(q_idx), test[refs[0]]), own[keep], score, qq[q_idx]))
    ia, ib, same, score, qual = (np.concatenate(x) for x in zip(*parts, strict=True))
    return Trials(ia, ib, same.astype(bool), score, qual, np.full(len(ia), repeat))


def counted(t: Trials, unit: str = "pairs") -> Table:
    """The calibration table of scored trials with the distinct pairs (trials) per repeat behind it."""
    g, i = t.distinct()
    return Table(threshold_table(t.same, t.score, counts=SampleSize(g, i)), g, i, unit)


def _band(pairs: Trials, trials: Trials, lo: float, hi: float, n_conditions: int) -> QualityBand:
    """One band: the pairs and portfolio trials of quality in [lo, hi), their counted tables and default point."""
    reps = max(1, len(np.unique(pairs.repeat)))
    sel = pairs.select((pairs.quality >= lo) & (pairs.quality < hi))
    tv = trials.select((trials.quality >= lo) & (trials.quality < hi))
    pair, port = counted(sel), counted(tv, "trials")
    row = choose_point(pair)
    return QualityBand(
        min_quality=lo,
        pair=list(pair.rows),
        genuine_pairs=pair.genuine,
        impostor_pairs=pair.impostor,
        portfolio=list(port.rows),
        genuine_trials=port.genuine,
        impostor_trials=port.impostor,
        recommended_threshold=row.threshold,
        recommended_rule=(
            f"equal error rate of out-of-fold pairs of quality >= {lo:g} (FPR {row.fpr:.3f}, FNR {row.fnr:.3f})"
        ),
        measured_on=(
            f"{len(sel.same) // reps} pair trials per repeat ({pair.genuine} same-artist / {pair.impostor} "
            f"different-artist distinct pairs), as published and under {n_conditions} acquisition conditions, "
            "out-of-fold"
        ),
    )


def build_bands(pairs: Trials, trials: Trials, n_conditions: int) -> list[QualityBand]:
    """Quality bands from scored pairs and portfolio trials (probabilities), walking down BAND_EDGES: a band
    closes once it holds MIN_BAND_GENUINE / MIN_BAND_IMPOSTOR pair trials per repeat. The trials left below the
    last band join it, down to the floor: the lowest quality measured (FLOOR_QUANTILE of the pairs, on a 0.05
    grid) — below it the model is unmeasured and the service refuses. A band's counts are its distinct pairs per
    repeat (the same two paintings under several conditions count once): what its bounds rest on."""
    reps = max(1, len(np.unique(pairs.repeat)))
    floor = float(np.floor(np.quantile(pairs.quality, FLOOR_QUANTILE) * 20) / 20) if len(pairs.quality) else 0.0
    edges: list[float] = []
    top = np.inf
    for edge in BAND_EDGES:
        if edge <= floor:
            break
        sel = pairs.select((pairs.quality >= edge) & (pairs.quality < top))
        if sel.same.sum() / reps >= MIN_BAND_GENUINE and (~sel.same).sum() / reps >= MIN_BAND_IMPOSTOR:
            edges.append(edge)
            top = edge
    if edges:
        edges[-1] = floor  # what is left below the last band joins it, down to the floor
    else:
        edges = [floor]
    uppers = [np.inf, *edges[:-1]]
    return [_band(pairs, trials, lo, hi, n_conditions) for lo, hi in zip(edges, uppers, strict=True)]


def band_index(quality_values: np.ndarray, bands: Sequence[QualityBand]) -> np.ndarray:
    """Per trial, the index of its band (bands highest first), -1 below the lowest."""
    out = np.full(len(quality_values), -1)
    for k in range(len(bands) - 1, -1, -1):
        out[quality_values >= bands[k].min_quality] = k
    return out


@dataclass(frozen=True)
class Fitted:
    """Everything a cosine model learns from a set of images: projection, calibration, quality model, bands."""

    head: cosine.CosineHead
    pair: Table  # published pairs, out-of-fold
    portfolio: Table  # published leave-one-out verify trials, out-of-fold
    quality: QualityModel | None
    bands: list[QualityBand]  # highest first
    published: Trials  # the out-of-fold published pairs the tables came from (probabilities)
    published_trials: Trials  # the out-of-fold published verify trials
    conditions: tuple[str, ...]

    def tables(self, level: str) -> list[tuple[Table, tuple[float, str]]]:
        """Per band (or the published table alone without bands): the table of `level` ("pair" or "portfolio")
        and its default point, as the service reads them (contract.quality.band_table)."""
        if not self.bands:
            t = self.pair if level == "pair" else self.portfolio
            return [(t, equal_error_point(t.rows, "the published pairs"))]
        return [quality.band_table(b, level) for b in self.bands]


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
    banded: bool = True,
) -> Fitted:
    """The whole cosine recipe on images `idx`, with copies under conditions `names`: the projection and the
    quality model on all of them; the logistic map and the published tables from artist-disjoint out-of-fold
    scores (inner `folds` x `repeats`); the quality bands from out-of-fold pairs and verify trials under each
    condition scored by a projection that never saw that condition's family (so a band's rates are what an
    unfamiliar degradation of that quality costs, not what a rehearsed one does)."""
    names = tuple(names)
    groups = family_groups(names)
    whitening = recipe.fit(copies, idx, names)
    qmodel = fit_quality(copies, feats, idx, names, recipe) if banded else None
    q = qualities(qmodel, feats)
    pub_p, pub_v, cp_p, cp_v = [], [], [], []
    for r in range(repeats):
        fold = realeval.artist_folds(labels[idx], folds, seed + r)
        for f in range(folds):
            train, test = idx[fold != f], idx[fold == f]
            inner = cosine.CosineHead(recipe.fit(copies, train, names), 1.0, 0.0)
            pub_p.append(scored_trials(inner, copies, q, labels, test, None, repeat=r))
            pub_v.append((inner, test, None, r))
            if qmodel is None:
                continue
            for fams, group in groups.items():
                held = cosine.CosineHead(recipe.fit(copies, train, allowed_without(names, fams)), 1.0, 0.0)
                for n in group:
                    for kind in PAIR_KINDS:
                        cp_p.append(scored_trials(held, copies, q, labels, test, n, kind, repeat=r))
                    cp_v.append((held, test, n, r))
    pub = Trials.cat(pub_p)
    slope, bias = cosine.fit_calibration(pub.score, pub.same)
    head = cosine.CosineHead(whitening, slope, bias)
    pub = pub.with_scores(head.probability(pub.score))

    def verify(items: list) -> Trials:
        return Trials.cat(
            [
                portfolio_trials(cosine.CosineHead(h.whitening, slope, bias), copies, q, labels, t, n, aggregation, r)
                for h, t, n, r in items
            ]
        )

    pub_trials = verify(pub_v)
    bands: list[QualityBand] = []
    if qmodel is not None:
        under = Trials.cat(cp_p).with_scores(head.probability(Trials.cat(cp_p).score))
        bands = build_bands(Trials.cat([pub, under]), Trials.cat([pub_trials, verify(cp_v)]), len(names))
        if bands:
            qmodel = qmodel.model_copy(update={"floor": bands[-1].min_quality})
    return Fitted(head, counted(pub), counted(pub_trials, "trials"), qmodel, bands, pub, pub_trials, names)


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
    accept: dict[str, np.ndarray]  # rule → accepted? (False where the point is unreachable)
    claimed_fpr: dict[str, np.ndarray]
    claimed_fnr: dict[str, np.ndarray]

    @classmethod
    def cat(cls, parts: Sequence[Judged]) -> Judged:
        def joined(attr: str) -> dict[str, np.ndarray]:
            return {k: np.concatenate([getattr(j, attr)[k] for j in parts]) for k in parts[0].accept}

        return cls(
            Trials.cat([j.trials for j in parts]),
            np.concatenate([j.refused for j in parts]),
            joined("accept"),
            joined("claimed_fpr"),
            joined("claimed_fnr"),
        )


def decide(model: Fitted, t: Trials, level: str = "pair") -> Judged:
    """Each trial judged as the service judges it: its quality picks the band, the band's table the operating
    point (contract.operating, the service's rule); an unreachable point accepts nothing and claims nothing."""
    tables = model.tables(level)
    band = band_index(t.quality, model.bands) if model.bands else np.zeros(len(t.score), int)
    refused = band < 0
    b = np.maximum(band, 0)
    accept, cf, cn = {}, {}, {}
    for kind, value in OPERATING_POINTS:
        thr, fpr, fnr = np.full(len(tables), np.inf), np.full(len(tables), np.nan), np.full(len(tables), np.nan)
        for k, (table, default) in enumerate(tables):
            try:
                op = choose_point(table, max_fpr=value) if kind == "max_fpr" else choose_point(table, default=default)
            except Unreachable:
                continue
            thr[k], fpr[k], fnr[k] = op.threshold, op.fpr, op.fnr
        rule = _rule(kind, value)
        accept[rule] = t.score >= thr[b]
        cf[rule], cn[rule] = fpr[b], fnr[b]
    # the published table's default threshold for every trial, whatever its quality: what the error-versus-discard
    # curve holds fixed (ISO/IEC 29794-1: one threshold, the lowest-quality trials set aside)
    fixed = choose_point(model.pair if level == "pair" else model.portfolio)
    accept[FIXED] = t.score >= fixed.threshold
    cf[FIXED], cn[FIXED] = np.full(len(t.score), fixed.fpr), np.full(len(t.score), fixed.fnr)
    return Judged(t, refused, accept, cf, cn)


FIXED = "published default"
DISCARD = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5)


def error_versus_discard(j: Judged) -> dict:
    """How the errors at one fixed threshold fall as the lowest-quality fraction of trials is set aside (pair
    quality ascending; ties broken at random), against what discarding at random would leave (the errors as
    they are). A quality measure is useful to the degree its curve falls."""
    t = j.trials
    rng = np.random.default_rng(0)
    order = np.lexsort((rng.random(len(t.quality)), t.quality))
    acc = j.accept[FIXED]
    out: dict = {"fraction": list(DISCARD), "fnr": [], "fpr": [], "fnr_random": [], "fpr_random": []}
    for f in DISCARD:
        keep = np.zeros(len(order), bool)
        keep[order[int(round(f * len(order))) :]] = True
        gen, imp = keep & t.same, keep & ~t.same
        out["fnr"].append(float((~acc[gen]).mean()) if gen.any() else float("nan"))
        out["fpr"].append(float(acc[imp].mean()) if imp.any() else float("nan"))
        out["fnr_random"].append(float((~acc[t.same]).mean()))
        out["fpr_random"].append(float(acc[~t.same].mean()))
    return out


def _rate(j: Judged, labels: np.ndarray, rule: str, genuine: bool, n_boot: int) -> tuple[float, tuple[float, float]]:
    """Observed FPR (genuine False) or FNR (True) among the judged (not refused) trials, artist-bootstrap CI."""
    keep = ~j.refused & (j.trials.same == genuine)
    if not keep.any():
        return float("nan"), (float("nan"), float("nan"))
    wrong = (~j.accept[rule] if genuine else j.accept[rule])[keep].astype(np.float64)
    t = j.trials.select(keep)
    value = float(wrong.mean())
    if n_boot <= 0:
        return value, (value, value)
    pairs = realeval.Pairs(t.ia, t.ib, t.same, wrong, t.repeat)
    return value, realeval.bootstrap_ci(
        pairs, labels, lambda p, w: float(np.average(p.score, weights=w)), n_boot, both_classes=False
    )


def _mean_known(x: np.ndarray) -> float:
    """Mean of the claims that were made (an unreachable point claims nothing); NaN when none were."""
    x = x[~np.isnan(x)]
    return float(x.mean()) if len(x) else float("nan")


def summarise(j: Judged, labels: np.ndarray, n_boot: int) -> dict:
    """One row of the robustness table: AUC, refusals, observed against claimed rates at each operating point."""
    t = j.trials
    auc = realeval.auc_eer(t.same, t.score)[0]

    out: dict = {
        "auc": auc,
        "auc_ci95": (
            realeval.bootstrap_ci(t.pairs(), labels, lambda p, w: realeval.auc_eer(p.same, p.score, w)[0], n_boot)
            if n_boot
            else (auc, auc)
        ),
        "refused": float(j.refused.mean()),
        "trials": int(len(t.same)),
        "quality_median": float(np.median(t.quality)),
        "points": {},
    }
    kept = ~j.refused
    for kind, value in OPERATING_POINTS:
        rule = _rule(kind, value)
        fpr, fpr_ci = _rate(j, labels, rule, False, n_boot)
        fnr, fnr_ci = _rate(j, labels, rule, True, n_boot)
        imp, gen = kept & ~t.same, kept & t.same
        out["points"][rule] = {
            "observed_fpr": fpr,
            "observed_fpr_ci95": fpr_ci,
            "claimed_fpr": _mean_known(j.claimed_fpr[rule][imp]),
            "observed_fnr": fnr,
            "observed_fnr_ci95": fnr_ci,
            "claimed_fnr": _mean_known(j.claimed_fnr[rule][gen]),
            "unreachable": float(np.isnan(j.claimed_fpr[rule][kept]).mean()) if kept.any() else 0.0,
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
    banded: bool = True,
) -> dict:
    """The model recipe judged on artists and acquisition-condition families it was not fitted on.

    Artists are split in halves (`outer_repeats` times, both ways); for each judged condition the whole recipe
    (projection, quality model, logistic map, tables, bands) is fitted on one half with copies under every
    condition outside its family, and judged on the other half's pairs under that condition, within and cross,
    and its verify trials (the query through the condition, portfolios as published); as published with every
    condition in the fit (the shipped configuration). Returns "<condition>/<kind>" → summary."""
    groups: dict[frozenset[str], list[cond.Condition | None]] = {frozenset(): [None]}
    for c in conditions:
        groups.setdefault(frozenset(c.families), []).append(c)
    all_names = [c.name for c in conditions]
    parts: dict[str, list[Judged]] = {}
    for r in range(outer_repeats):
        half = realeval.artist_folds(labels, 2, seed + r)
        for f in (0, 1):
            fit, test = np.where(half == f)[0], np.where(half != f)[0]
            rep = 2 * r + f
            for fams, judged in groups.items():
                model = fit_model(
                    copies, feats, labels, fit, allowed_without(all_names, fams), recipe, repeats=inner_repeats,
                    seed=seed + 17 * r, aggregation=aggregation, banded=banded,
                )  # fmt: skip
                q = qualities(model.quality, feats)
                for c in judged:
                    name = None if c is None else c.name
                    kinds = ("published",) if c is None else PAIR_KINDS
                    for kind in kinds:
                        t = scored_trials(model.head, copies, q, labels, test, name, kind, repeat=rep)
                        t = t.with_scores(model.head.probability(t.score))
                        parts.setdefault(f"{name or 'published'}/{kind}", []).append(decide(model, t))
                    v = portfolio_trials(model.head, copies, q, labels, test, name, aggregation, rep)
                    parts.setdefault(f"{name or 'published'}/verify", []).append(decide(model, v, "portfolio"))
    out = {k: summarise(Judged.cat(js), labels, n_boot) for k, js in parts.items()}
    copies_pairs = [j for k, js in parts.items() if not k.startswith("published/") and "/verify" not in k for j in js]
    if copies_pairs:
        out["error_versus_discard"] = error_versus_discard(Judged.cat(copies_pairs))
    return out


# ------------------------------------------------------------------------------------------------ report


def plots(judged: dict, baseline: dict | None, out_dir: Path) -> list[str]:
    """robustness.png (pair AUC and observed FPR at max_fpr=0.05 per condition, within and cross, the shipped
    recipe against the baseline) and quality_edc.png (error versus discard). Returns the file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [k.split("/")[0] for k in judged if k.endswith("/within")]
    files = []
    fig, axes = plt.subplots(1, 2, figsize=(11, 0.28 * len(names) + 1.8), sharey=True)
    y = np.arange(len(names))
    series = [("within", "shipped, within", 0.0), ("cross", "shipped, cross", 0.2)]
    if baseline:
        series.append(("within", "2.0.0 recipe, within", -0.2))
    for ax, (what, label) in zip(axes, (("auc", "pair ROC AUC"), ("fpr", "observed FPR at max_fpr=0.05")), strict=True):
        for kind, name, dy in series:
            src = baseline if name.startswith("2.0.0") else judged
            assert src is not None
            vals = [
                src[f"{n}/{kind}"]["auc"]
                if what == "auc"
                else src[f"{n}/{kind}"]["points"]["max_fpr<=0.05"]["observed_fpr"]
                for n in names
            ]
            ax.barh(y + dy, vals, height=0.2, label=name)
        ref = judged["published/published"]
        ax.axvline(ref["auc"] if what == "auc" else 0.05, color="k", ls="--", lw=1)
        if what == "auc":
            ax.axvline(ref["auc"] - 0.03, color="grey", ls=":", lw=1)
            ax.set_xlim(0.5, 1.0)
        else:
            ax.axvline(0.08, color="grey", ls=":", lw=1)
        ax.set(xlabel=label)
    axes[0].set_yticks(y, names)
    axes[0].invert_yaxis()
    axes[1].legend(loc="lower right", fontsize=8)
    fig.suptitle("held-out acquisition conditions (artists and condition family never fitted on)")
    fig.tight_layout()
    fig.savefig(out_dir / "robustness.png", dpi=100)
    plt.close(fig)
    files.append("robustness.png")
    edc = judged.get("error_versus_discard")
    if edc:
        fig, ax = plt.subplots(figsize=(5.5, 3.8))
        ax.plot(edc["fraction"], edc["fnr"], "o-", label="FNR, lowest quality set aside")
        ax.plot(edc["fraction"], edc["fnr_random"], ":", label="FNR, set aside at random")
        ax.plot(edc["fraction"], edc["fpr"], "s-", label="FPR, lowest quality set aside")
        ax.plot(edc["fraction"], edc["fpr_random"], ":", label="FPR, set aside at random")
        ax.set(xlabel="fraction of pairs set aside", ylabel="error at the published default threshold",
               title="error versus discard (held-out conditions)")  # fmt: skip
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out_dir / "quality_edc.png", dpi=100)
        plt.close(fig)
        files.append("quality_edc.png")
    return files


# ------------------------------------------------------------------------------------------ any model, any corpus


class CardHead:
    """A shipped cosine head read from its model directory: the projection ONNX, the card's logistic map."""

    def __init__(self, model_dir: Path, card: Card):
        if card.head.kind != "cosine" or card.head.projection is None or card.head.cosine is None:
            raise ValueError(f"{model_dir}: only cosine heads can be judged here (this one is {card.head.kind!r})")
        self._projection = cpu_session(Path(model_dir) / card.head.projection.file)
        self._input = card.head.projection.input_names[0]
        self.slope, self.bias = card.head.cosine.slope, card.head.cosine.bias

    def project(self, emb: np.ndarray) -> np.ndarray:
        return np.asarray(self._projection.run(None, {self._input: np.asarray(emb, np.float32)})[0], np.float32)

    def probability(self, cos: np.ndarray) -> np.ndarray:
        return cosine.sigmoid(self.slope * np.asarray(cos, np.float64) + self.bias)

    def compare(self, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
        return self.probability(np.sum(np.asarray(pa, np.float64) * np.asarray(pb, np.float64), axis=1))


def card_model(model_dir: Path, card: Card) -> Fitted:
    """A shipped model as `decide` reads it: its head, published tables, quality model and bands."""
    cal = card.calibration
    pair = Table.pair_of(cal)
    portfolio = Table.portfolio_of(sorted(cal.portfolio, key=lambda p: p.k)[0]) if cal.portfolio else pair
    empty = Trials(*(np.zeros(0),) * 6)
    return Fitted(CardHead(model_dir, card), pair, portfolio, cal.quality, list(cal.bands), empty, empty, ())  # type: ignore[arg-type]


def model_copies(
    model_dir: Path, paths: Sequence[Path], work: Path, conditions: Sequence[str] | None = None
) -> tuple[Copies, dict[str, list[quality.Measures]], list[cond.Condition]]:
    """A shipped model's crops of `paths` as published and under each acquisition condition (`conditions`, default
    all), by its card's recipe and backbone, cached in `work`; with the pictures' quality measures ("published"
    and one list per condition) and the conditions."""
    from contract.card import load_card

    card = load_card(Path(model_dir))
    backbone = Path(model_dir) / card.backbone.file
    chosen = cond.get(conditions)
    crops, published = condition_crops(paths, None, card.backbone, backbone, cache=work)
    under, measures = {}, {"published": published}
    for c in chosen:
        under[c.name], measures[c.name] = condition_crops(paths, c, card.backbone, backbone, cache=work)
    return Copies.of(crops, under), measures, chosen


def judge_model(
    model_dir: Path,
    corpus: Path,
    out: Path,
    work: Path,
    *,
    conditions: Sequence[str] | None = None,
    n_boot: int = 300,
    aggregation: Aggregation | None = None,
) -> dict:
    """A shipped model judged, as it is, on a folder-per-artist corpus under every acquisition condition: pairs
    within and cross, verify trials with the query through the condition, each decided as the service decides it
    (quality → band → contract.operating); nothing is fitted. Writes `out`/robustness.json and ROBUSTNESS.md.
    For a corpus kept apart from the model's fit, these are its figures on another source of paintings."""
    from contract.card import load_card
    from training.data.datasets import read_folders
    from training.evaluation.report import judged_lines

    model_dir, out = Path(model_dir), Path(out)
    card = load_card(model_dir)
    manifest = read_folders(Path(corpus))
    labels, _ = manifest.labels()
    paths = manifest.paths()
    if np.bincount(labels).max() < 2:
        raise ValueError(f"{corpus}: no artist has 2 or more works, so there are no same-artist pairs to judge")
    copies, measures, chosen = model_copies(model_dir, paths, work, conditions)
    model = card_model(model_dir, card)
    q = qualities(card.calibration.quality, features(measures))
    agg = aggregation or card.calibration.aggregation
    test = np.arange(len(paths))
    parts: dict[str, list[Judged]] = {}
    for c in [None, *chosen]:
        name = None if c is None else c.name
        for kind in ("published",) if c is None else PAIR_KINDS:
            t = scored_trials(model.head, copies, q, labels, test, name, kind)
            parts[f"{name or 'published'}/{kind}"] = [decide(model, t.with_scores(model.head.probability(t.score)))]
        v = portfolio_trials(model.head, copies, q, labels, test, name, agg)
        parts[f"{name or 'published'}/verify"] = [decide(model, v, "portfolio")]
    judged = {k: summarise(Judged.cat(js), labels, n_boot) for k, js in parts.items()}
    pooled = [j for k, js in parts.items() if not k.startswith("published/") and "/verify" not in k for j in js]
    if pooled:
        judged["error_versus_discard"] = error_versus_discard(Judged.cat(pooled))
    protocol = (
        f"{card.model_id} as shipped (nothing fitted here) on {corpus}: {len(paths)} paintings, "
        f"{len(set(labels.tolist()))} artists; every painting under each of {len(chosen)} acquisition conditions; "
        f"95 % CIs from an artist bootstrap ({n_boot} resamples). Only figures on a corpus the model was not fitted "
        "on describe new paintings"
    )
    out.mkdir(parents=True, exist_ok=True)
    result = {"model": card.model_id, "corpus": str(corpus), "protocol": protocol, "judged": judged}
    (out / "robustness.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    bands = [b.min_quality for b in card.calibration.bands]
    lines = judged_lines(judged, {}, protocol, card.calibration.quality, bands, f"# {card.model_id} on {corpus}")
    (out / "ROBUSTNESS.md").write_text("\n".join(lines) + "\n")
    p5 = [r["points"]["max_fpr<=0.05"]["observed_fpr"] for k, r in judged.items() if k.endswith(("/within", "/cross"))]
    result["summary"] = {
        "model": card.model_id,
        "published_auc": judged["published/published"]["auc"],
        "worst_auc": min(r["auc"] for k, r in judged.items() if k.endswith(("/within", "/cross"))),
        "worst_fpr_at_max_fpr_0.05": max(p5),
        "report": str(out / "ROBUSTNESS.md"),
    }
    return result
