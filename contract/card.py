"""The model card (`model.json`): the one contract between training and serving.

Training writes it (`training/backbone/export.py`), the service reads nothing else about a model. Pure pydantic:
importable by both halves without TensorFlow or onnxruntime. Covered by tests/contract/test_card.py.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from contract.heads import head_kind

CARD_FILE = "model.json"
FORMAT_VERSION: Literal[1] = 1
# Backbone fields that describe where the weights came from without changing what they compute: the only card
# fields about the embedding that the model id leaves out (the files' hashes cover the weights themselves).
ID_IGNORES: dict = {"arch": True, "weights": True, "embedding": {"description": True}}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, protected_namespaces=())


class Preprocessing(_Strict):
    """How an RGB uint8 image becomes the backbone's input.

    1. resize so the shorter side is `resize_shorter` (bilinear, aspect kept);
    2. cut `grid` = [rows, cols] crops of `crop` = [height, width], spread evenly from edge to edge of the
       resized picture (neighbours overlap when the picture is smaller than the grid); [1, 1] is one centre crop;
    3. x = (pixel * scale - mean[c]) / std[c], channels in `channel_order`;
    4. `layout` NHWC float32 batch, crops row by row.
    """

    resize_shorter: int = Field(gt=0)
    crop: tuple[int, int]
    resample: Literal["bilinear", "bicubic"] = "bilinear"
    scale: float = 1.0
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    channel_order: Literal["RGB", "BGR"] = "RGB"
    layout: Literal["NHWC", "NCHW"] = "NHWC"
    grid: tuple[int, int] = (1, 1)

    @model_validator(mode="after")
    def _grid(self) -> Preprocessing:
        if not (1 <= self.grid[0] <= 8 and 1 <= self.grid[1] <= 8):
            raise ValueError("preprocessing.grid must be 1..8 rows and columns")
        return self

    @property
    def n_crops(self) -> int:
        return self.grid[0] * self.grid[1]


class EmbeddingRecipe(_Strict):
    """What the embedding vector is made of, so a reader can rebuild it."""

    pooled_dim: int = Field(ge=0, description="global-average-pooled final features")
    style_layers: list[str] = Field(default_factory=list, description="layers whose per-channel mean/std are appended")
    style_dim: int = Field(default=0, ge=0)
    description: str = ""
    # How the backbone's per-crop outputs become the one embedding of a picture (contract.recipe.combine):
    # keep `crop_features` = [start, stop) of each crop's output (None: all of it), then `mean` them, or
    # L2-normalise each crop first and average (`l2_mean`, so every crop weighs the same).
    crop_features: tuple[int, int] | None = None
    combine: Literal["mean", "l2_mean"] = "mean"


class BackboneSpec(_Strict):
    file: str
    arch: str
    input_name: str
    output_name: str
    embedding_dim: int = Field(gt=0, description="the picture's embedding, after the crops are combined")
    embedding: EmbeddingRecipe
    preprocessing: Preprocessing
    weights: str = Field(description="where the ImageNet/backbone weights came from")
    output_dim: int | None = Field(default=None, gt=0, description="backbone output per crop; None: embedding_dim")

    @property
    def crop_dim(self) -> int:
        return self.output_dim or self.embedding_dim

    @model_validator(mode="after")
    def _dims(self) -> BackboneSpec:
        sl = self.embedding.crop_features
        kept = self.crop_dim if sl is None else sl[1] - sl[0]
        if sl is not None and not 0 <= sl[0] < sl[1] <= self.crop_dim:
            raise ValueError(f"embedding.crop_features {sl} is not a slice of the {self.crop_dim}-d crop output")
        if kept != self.embedding_dim:
            raise ValueError(
                f"the crops combine to {kept} dimensions, the card says embedding_dim {self.embedding_dim}"
            )
        return self


class OnnxPart(_Strict):
    file: str
    input_names: list[str]
    output_name: str
    output_dim: int | None = None


class CosineSpec(_Strict):
    """A `cosine` head: no trained pair weights. The projection centres the embedding, PCA-whitens it
    (`dim` directions scaled by eigenvalue**`power`, fitted on `fitted_on`) and L2-normalises it; the
    comparator maps the cosine of two projections to P(same artist) = sigmoid(`slope` * cosine + `bias`),
    fitted on artist-disjoint out-of-fold pairs."""

    dim: int = Field(gt=0)
    power: float
    fitted_on: str
    slope: float
    bias: float


class HeadSpec(_Strict):
    """Pair head. `file` takes two [N, D] embeddings and returns the same-artist probability [N].

    For `symmetric` and `cosine` heads the per-image projection and the comparator are also exported, so the
    service can project each reference once and compare many pairs cheaply; composing them equals `file`.
    """

    kind: str = Field(description="a kind of contract.heads.KINDS")
    file: str
    input_names: tuple[str, str]
    output_name: str
    params: int = Field(ge=0)
    projection: OnnxPart | None = None
    comparator: OnnxPart | None = None
    cosine: CosineSpec | None = None
    selected_on: str = Field(default="", description="the evaluation this head won, against which candidates")

    @model_validator(mode="after")
    def _parts_together(self) -> HeadSpec:
        kind = head_kind(self.kind)
        if (self.projection is None) != (self.comparator is None):
            raise ValueError("head.projection and head.comparator come together or not at all")
        if kind.projection and self.projection is None:
            raise ValueError(f"a {kind.name} head has a projection and a comparator")
        if kind.spec == "cosine" and self.cosine is None:
            raise ValueError(f"a {kind.name} head has its cosine spec")
        return self


def _absent(value: object) -> bool:
    return value is None


# Optional fields added after cards were first shipped are left out when unset, so an older card reads and
# writes back exactly as it was.
def _optional_count(description: str) -> int | None:
    return Field(default=None, ge=0, exclude_if=_absent, description=description)  # type: ignore[no-any-return]


class CalibrationRow(_Strict):
    threshold: float = Field(ge=0.0, le=1.0)
    fpr: float = Field(ge=0.0, le=1.0)
    fnr: float = Field(ge=0.0, le=1.0)
    precision: float = Field(ge=0.0, le=1.0)
    recall: float = Field(ge=0.0, le=1.0)
    # For readers of the card: the one-sided 95 % Clopper–Pearson upper bounds of fpr and fnr given the table's
    # counts (contract.operating.rate_upper; None in cards written before the counts were). The service
    # recomputes them from the counts with the same function, so they cannot disagree.
    fpr_upper: float | None = Field(default=None, ge=0.0, le=1.0, exclude_if=_absent)
    fnr_upper: float | None = Field(default=None, ge=0.0, le=1.0, exclude_if=_absent)


class PortfolioCalibration(_Strict):
    """Verify-level calibration: a query against `k` references of the claimed artist, aggregated.

    `genuine_trials` / `impostor_trials`: the effective number of leave-one-out trials behind the table (for
    repeated cross-validation, per repeat); None in older cards (bounds unknown)."""

    k: int = Field(gt=0)
    table: list[CalibrationRow]
    genuine_trials: int | None = _optional_count("effective same-artist trials behind the table")
    impostor_trials: int | None = _optional_count("effective different-artist trials behind the table")


class Aggregation(_Strict):
    """How pair scores against a portfolio become one score: mean of the `top_m` highest pair scores."""

    method: Literal["top_mean"] = "top_mean"
    top_m: int = Field(default=5, gt=0)


class QualityModel(_Strict):
    """How an upload's measures (contract.quality.Measures) become its quality in [0, 1]:
    quality = clip(intercept + coef · ((features − mean) / scale), 0, 1), a linear prediction of `target`
    fitted on copies of real paintings under acquisition conditions. Below `floor` the model's error rates were
    never measured: the service refuses to judge (422 `image_quality_too_low`)."""

    features: list[str] = Field(min_length=1)
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    floor: float = Field(ge=0.0, le=1.0)
    target: str = Field(description="what the quality predicts")
    fitted_on: str = ""
    metrics: dict = Field(default_factory=dict, description="how well it predicts, on pictures it was not fitted on")

    @model_validator(mode="after")
    def _lengths(self) -> QualityModel:
        n = len(self.features)
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n):
            raise ValueError("quality model: features, mean, scale and coef must have the same length")
        if any(s <= 0 for s in self.scale):
            raise ValueError("quality model: every scale must be positive")
        return self


class QualityBand(_Strict):
    """Error rates of pairs whose quality (the lower of the two pictures') is at least `min_quality` and below
    the next band's: the calibration a reply uses when its pictures' quality falls here."""

    min_quality: float = Field(ge=0.0, le=1.0)
    pair: list[CalibrationRow]
    genuine_pairs: int | None = _optional_count("effective same-artist pairs behind the band's pair table")
    impostor_pairs: int | None = _optional_count("effective different-artist pairs behind the band's pair table")
    portfolio: list[CalibrationRow] = Field(default_factory=list)
    genuine_trials: int | None = _optional_count("effective same-artist trials behind the band's portfolio table")
    impostor_trials: int | None = _optional_count("effective different-artist trials behind its portfolio table")
    recommended_threshold: float = Field(ge=0.0, le=1.0)
    recommended_rule: str
    measured_on: str = ""


class SameWork(_Strict):
    """When two pictures show the same painting (a copy re-encoded, resized, re-photographed): the cosine of their
    reference vectors (the head's projection, else the embedding) at or above `threshold`. Measured by
    `python -m training duplicates` (training/evaluation/duplicates.py) on copies of a corpus under acquisition
    conditions against pairs of different paintings, the projection fitted without the judged paintings."""

    threshold: float = Field(ge=-1.0, le=1.0)
    measured_on: str
    different_pairs: int = Field(ge=0, description="distinct pairs of different paintings measured")
    false_same: int = Field(ge=0, description="of those, at or above the threshold")
    copies: int = Field(ge=0, description="copies of paintings measured (painting × condition)")
    found: float = Field(ge=0.0, le=1.0, description="fraction of the copies at or above the threshold")
    per_condition: dict[str, float] = Field(default_factory=dict, description="fraction found, per condition")


class Calibration(_Strict):
    """Tables measured on artist-disjoint validation pairs, sorted by threshold ascending.

    `genuine_pairs` / `impostor_pairs`: the effective number of same-/different-artist pairs behind the pair
    table — what its error rates can show (contract.operating); for pairs scored in repeated cross-validation,
    pairs per repeat, not the total. None in older cards: the bounds are then unknown, never invented.

    `pair`/`portfolio` describe pictures as the corpus published them. With a `quality` model, `bands` hold the
    tables measured at each quality (highest band first); a pair's quality picks its band
    (contract.quality.band_for)."""

    split: str = "val"
    pair: list[CalibrationRow]
    genuine_pairs: int | None = _optional_count("effective same-artist pairs behind the pair table")
    impostor_pairs: int | None = _optional_count("effective different-artist pairs behind the pair table")
    aggregation: Aggregation = Aggregation()
    portfolio: list[PortfolioCalibration] = Field(default_factory=list)
    recommended_threshold: float = Field(ge=0.0, le=1.0)
    recommended_rule: str
    quality: QualityModel | None = None
    bands: list[QualityBand] = Field(default_factory=list)
    same_work: SameWork | None = Field(default=None, exclude_if=_absent)

    @model_validator(mode="after")
    def _sorted(self) -> Calibration:
        if self.bands and self.quality is None:
            raise ValueError("calibration bands need a quality model")
        mins = [b.min_quality for b in self.bands]
        if mins != sorted(mins, reverse=True) or len(set(mins)) != len(mins):
            raise ValueError("calibration bands must be ordered by min_quality, highest first, without repeats")
        if self.bands and self.quality is not None and mins[-1] > self.quality.floor + 1e-9:
            raise ValueError("the lowest calibration band must reach down to the quality floor")
        tables = [self.pair] + [p.table for p in self.portfolio]
        tables += [b.pair for b in self.bands] + [b.portfolio for b in self.bands if b.portfolio]
        for table in tables:
            if not table:
                raise ValueError("calibration tables must not be empty")
            ts = [r.threshold for r in table]
            if ts != sorted(ts):
                raise ValueError("calibration tables must be sorted by threshold")
        return self


class Card(_Strict):
    format_version: Literal[1] = FORMAT_VERSION
    name: str
    version: str
    created: str
    backbone: BackboneSpec
    head: HeadSpec
    calibration: Calibration
    metrics: dict = Field(default_factory=dict, description="evaluation: 'unseen' and 'seen' reported apart")
    training_data: dict = Field(default_factory=dict, description="provenance of the corpus and split")
    files: dict[str, str] = Field(description="file name -> sha256 hex")

    @property
    def model_id(self) -> str:
        """Stable id of what this model computes and the service stores under it: name@version+short hash of
        every input of an embedding — the files (weights, head and projection) and the card's backbone
        section (input and output names and shapes, preprocessing and crop recipe, how crops combine), less the
        provenance notes `ID_IGNORES` lists. Changing any of them gives another id, so embeddings stored
        under the old one are never served under the new (the service says `reindex_required`)."""
        recipe = self.backbone.model_dump(mode="json", exclude=ID_IGNORES)
        payload = json.dumps({"files": dict(sorted(self.files.items())), "backbone": recipe}, sort_keys=True)
        digest = hashlib.sha256(payload.encode()).hexdigest()
        return f"{self.name}@{self.version}+{digest[:12]}"

    def onnx_files(self) -> list[str]:
        names = [self.backbone.file, self.head.file]
        if self.head.projection is not None and self.head.comparator is not None:
            names += [self.head.projection.file, self.head.comparator.file]
        return names


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class CardError(ValueError):
    """The model directory does not match its card."""


def load_card(model_dir: Path, verify_files: bool = True) -> Card:
    path = Path(model_dir) / CARD_FILE
    if not path.is_file():
        raise CardError(f"no {CARD_FILE} in {model_dir}")
    try:
        card = Card.model_validate(json.loads(path.read_text()))
    except (ValueError, json.JSONDecodeError) as e:
        raise CardError(f"{path} is not a valid model card: {e}") from e
    if verify_files:
        for name in card.onnx_files():
            f = Path(model_dir) / name
            if not f.is_file():
                raise CardError(f"model card names {name} but {f} does not exist")
            want = card.files.get(name)
            if want is None:
                raise CardError(f"model card has no sha256 for {name}")
            got = sha256_file(f)
            if got != want:
                raise CardError(f"{f} sha256 {got[:12]}… does not match the card's {want[:12]}…")
    return card


def seal_card(card: Card, model_dir: Path) -> Card:
    """The one card writer: record the sha256 of every ONNX file the card names (as they are in `model_dir`)
    and write model.json there; returns the sealed card. Training's exports and the dev model all call it."""
    sealed = card.model_copy(update={"files": {f: sha256_file(Path(model_dir) / f) for f in card.onnx_files()}})
    write_card(sealed, model_dir)
    return sealed


def write_card(card: Card, model_dir: Path) -> Path:
    path = Path(model_dir) / CARD_FILE
    path.write_text(json.dumps(card.model_dump(mode="json"), indent=2) + "\n")
    return path
