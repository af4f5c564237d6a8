"""The exported model as onnxruntime sessions, checked against its card before it serves anything.

`Model.load` verifies the files' sha256 (contract.card.load_card), that each ONNX graph has the input and
output names the card promises, and, by running one dummy input through every part, that the embedding and
projection dimensions are the card's. Any mismatch is a `ModelError` naming the file and what differs.
Covered by tests/service/test_model.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import onnxruntime as ort
from PIL import Image

from contract.card import Card, CardError, load_card
from contract.graph import with_uint8_input
from contract.heads import head_kind
from contract.recipe import combine, crop_features, model_inputs, pool

if TYPE_CHECKING:
    from service.config import Settings

Providers = Literal["auto", "cpu", "cuda"]
_CUDA = "CUDAExecutionProvider"
_CPU = "CPUExecutionProvider"
# ORT warns (severity 2) about e.g. unused initializers and missing CUDA libraries; errors still show.
_QUIET = 3


class ModelError(RuntimeError):
    """The model directory cannot be served (bad card, checksum, graph names or shapes, provider)."""


_LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
}


@dataclass(frozen=True)
class SessionConfig:
    """How every onnxruntime session of a model runs. `SessionConfig()` is onnxruntime's own defaults and the
    card's backbone file as it is; `SessionConfig.of(settings)` the service's (settings `intra_op_threads`,
    `graph_optimization`, `cpu_mem_arena`, `cuda_conv_algo_search`, `backbone_input`), which every loader of a
    serving model passes to `Model.load`."""

    intra_op_threads: int = 0  # 0: onnxruntime's default (one per physical core)
    graph_optimization: str = "all"  # all | extended | basic | disabled
    cpu_mem_arena: bool = True
    cuda_conv_algo_search: str = "exhaustive"  # heuristic | exhaustive | default (the CUDA provider's option)
    # float32: the card's graph as it is, fed normalised crops; uint8: the crops as cut, normalised in the graph
    # (contract/graph.py: the same outputs, a quarter of the bytes queued and copied to a GPU); auto: uint8 where
    # the backbone is to run on CUDA, else float32 (bench.uint8_input: uint8 1.4x on an H200; on a CPU no faster)
    backbone_input: str = "float32"

    def __post_init__(self) -> None:
        if self.intra_op_threads < 0:
            raise ModelError(f"intra_op_threads must be 0 (onnxruntime's default) or more, not {self.intra_op_threads}")
        if self.graph_optimization not in _LEVELS:
            raise ModelError(f"graph_optimization must be one of {sorted(_LEVELS)}, not {self.graph_optimization!r}")
        if self.cuda_conv_algo_search not in _ALGO_SEARCH:
            raise ModelError(
                f"cuda_conv_algo_search must be one of {sorted(_ALGO_SEARCH)}, not {self.cuda_conv_algo_search!r}"
            )
        if self.backbone_input not in _INPUT_CHOICES:
            raise ModelError(f"backbone_input must be one of {sorted(_INPUT_CHOICES)}, not {self.backbone_input!r}")

    def input_type(self, providers: list[str]) -> str:
        """`backbone_input` for a backbone to run on `providers` (`choose_providers`): auto resolved."""
        if self.backbone_input == "auto":
            return "uint8" if providers[0] == _CUDA else "float32"
        return self.backbone_input

    @classmethod
    def of(cls, settings: Settings) -> SessionConfig:
        return cls(
            settings.intra_op_threads,
            settings.graph_optimization,
            settings.cpu_mem_arena,
            settings.cuda_conv_algo_search,
            settings.backbone_input,
        )

    def options(self) -> ort.SessionOptions:
        """The one place a serving session's SessionOptions are made."""
        opts = ort.SessionOptions()
        opts.log_severity_level = _QUIET
        if self.intra_op_threads:
            opts.intra_op_num_threads = self.intra_op_threads
        opts.graph_optimization_level = _LEVELS[self.graph_optimization]
        opts.enable_cpu_mem_arena = self.cpu_mem_arena
        return opts

    def providers(self, names: list[str]) -> list[str | tuple[str, dict[str, str]]]:
        """onnxruntime's providers argument for `names` (`choose_providers`): CUDA with its options."""
        return [(n, {"cudnn_conv_algo_search": _ALGO_SEARCH[self.cuda_conv_algo_search]}) if n == _CUDA else n
                for n in names]  # fmt: skip


_ALGO_SEARCH = {"heuristic": "HEURISTIC", "exhaustive": "EXHAUSTIVE", "default": "DEFAULT"}
_INPUT_TYPES: dict[str, tuple[type[np.generic], str]] = {
    "float32": (np.float32, "tensor(float)"),
    "uint8": (np.uint8, "tensor(uint8)"),
}
_INPUT_CHOICES = {*_INPUT_TYPES, "auto"}


def choose_providers(providers: str = "auto") -> list[str]:
    """Only providers this onnxruntime build offers, CUDA first, so CPU-only hosts log no CUDA failures."""
    available = ort.get_available_providers()
    if providers == "cpu":
        return [_CPU]
    if providers == "cuda":
        if _CUDA not in available:
            raise ModelError(f"providers='cuda' but this onnxruntime offers only {available}")
        return [_CUDA, _CPU]
    if providers == "auto":
        return [_CUDA, _CPU] if _CUDA in available else [_CPU]
    raise ModelError(f"providers must be 'auto', 'cpu' or 'cuda', not {providers!r}")


@dataclass
class _Part:
    session: ort.InferenceSession
    inputs: list[str]
    output: str
    dtype: type[np.generic] = np.float32  # what every input of the part takes

    def run(self, *arrays: np.ndarray) -> np.ndarray:
        if self.dtype is np.uint8 and any(a.dtype != np.uint8 for a in arrays):
            # never cast normalised floats to bytes: the caller cut its crops for the other input type
            raise ModelError(f"this backbone takes uint8 crops (Model.model_inputs), not {arrays[0].dtype}")
        feed = {name: np.ascontiguousarray(a, dtype=self.dtype) for name, a in zip(self.inputs, arrays, strict=True)}
        return self.session.run([self.output], feed)[0]


class Model:
    """Backbone + pair head (+ projection/comparator for symmetric heads) of one model card."""

    def __init__(
        self,
        card: Card,
        model_dir: Path,
        parts: dict[str, _Part],
        providers: list[str],
        session: SessionConfig | None = None,
    ):
        self.card = card
        self.model_dir = model_dir
        self._parts = parts
        self.providers = providers
        self.session = session or SessionConfig()
        self.model_id = card.model_id
        self.embedding_dim = card.backbone.embedding_dim
        self.has_projection = "projection" in parts
        # the projection's width when there is one; set from a dummy run by _check_shapes()
        self.reference_dim = card.backbone.embedding_dim

    # ---- loading ------------------------------------------------------------------------------------------
    @classmethod
    def load(cls, model_dir: str | Path, providers: str = "auto", session: SessionConfig | None = None) -> Model:
        """The model in `model_dir` on `providers` (`choose_providers`), every session made with `session`'s
        options (default: onnxruntime's own; a serving process passes `SessionConfig.of(settings)`). With
        providers 'cuda', a backbone that onnxruntime could not put on CUDA is an error, not a silent CPU run."""
        model_dir = Path(model_dir)
        session = session or SessionConfig()
        try:
            card = load_card(model_dir, verify_files=True)
        except CardError as e:
            raise ModelError(str(e)) from e
        chosen = choose_providers(providers)
        ort.set_default_logger_severity(_QUIET)
        opts = session.options()

        b, h = card.backbone, card.head

        def open_session(file: str, uint8_input: bool = False) -> ort.InferenceSession:
            try:
                graph = with_uint8_input(model_dir / file, b.preprocessing, b.input_name) if uint8_input else None
                return ort.InferenceSession(
                    graph or str(model_dir / file), sess_options=opts, providers=session.providers(chosen)
                )
            except Exception as e:  # onnx and onnxruntime raise their own exception types for bad graphs
                raise ModelError(f"{model_dir / file}: onnxruntime cannot load it: {e}") from e

        input_type = session.input_type(chosen)
        parts = {
            "backbone": _checked(
                open_session(b.file, input_type == "uint8"), b.file, [b.input_name], b.output_name, input_type
            ),
            "head": _checked(open_session(h.file), h.file, list(h.input_names), h.output_name),
        }
        if h.projection is not None and h.comparator is not None:
            parts["projection"] = _checked(
                open_session(h.projection.file), h.projection.file, h.projection.input_names, h.projection.output_name
            )
            parts["comparator"] = _checked(
                open_session(h.comparator.file), h.comparator.file, h.comparator.input_names, h.comparator.output_name
            )
        used = parts["backbone"].session.get_providers()
        if providers == "cuda" and _CUDA not in used:
            raise ModelError(
                f"providers='cuda' but onnxruntime runs {model_dir / b.file} on {used} only: CUDA is offered but did "
                "not start (its libraries, cuDNN or the driver missing or mismatched?)"
            )
        model = cls(card, model_dir, parts, [p for p in used if p in chosen], session)
        try:
            model._check_shapes()
        except ModelError:
            raise
        except Exception as e:  # onnxruntime refusing the card's shapes
            raise ModelError(f"{model_dir}: the model does not run with the card's shapes: {e}") from e
        return model

    def _check_shapes(self) -> None:
        p = self.card.backbone.preprocessing
        x = self.model_inputs(Image.new("RGB", (p.crop[1], p.crop[0]), (128, 128, 128)))[:1]
        out = self._run("backbone", x)
        if out.ndim != 2 or out.shape != (1, self.card.backbone.crop_dim):
            raise ModelError(
                f"{self.card.backbone.file}: output {self.card.backbone.output_name} has shape {out.shape}, "
                f"the card says [N, {self.card.backbone.crop_dim}]"
            )
        emb = self.combine(out)[None]
        scores = self._run("head", emb, emb)
        if scores.shape != (1,):
            raise ModelError(f"{self.card.head.file}: output has shape {scores.shape}, expected [N]")
        if self.has_projection:
            proj = self._run("projection", emb)
            want = self.card.head.projection.output_dim if self.card.head.projection else None
            if proj.ndim != 2 or proj.shape[0] != 1 or (want is not None and proj.shape[1] != want):
                raise ModelError(f"projection output has shape {proj.shape}, the card says [N, {want}]")
            if self._run("comparator", proj, proj).shape != (1,):
                raise ModelError("comparator output is not [N]")
            self.reference_dim = int(proj.shape[1])

    def _run(self, part: str, *arrays: np.ndarray) -> np.ndarray:
        out = self._parts[part].run(*arrays)
        # heads may export [N, 1]; the card's contract is [N]
        if part in ("head", "comparator") and out.ndim == 2 and out.shape[1] == 1:
            out = out[:, 0]
        return np.asarray(out, dtype=np.float32)

    # ---- inference ----------------------------------------------------------------------------------------
    @property
    def uint8_input(self) -> bool:
        """Whether the backbone takes the crops as cut (uint8) and normalises them itself (`backbone_input`)."""
        return self._parts["backbone"].dtype is np.uint8

    def model_inputs(self, image: Image.Image) -> np.ndarray:
        """A decoded picture → its backbone inputs [n_crops, H, W, 3], as the card's recipe says (uint8 crops as
        cut when the backbone takes them, `uint8_input`)."""
        return model_inputs(image, self.card.backbone, uint8=self.uint8_input)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Backbone inputs [N, H, W, 3] (crops, layout per card) → backbone outputs [N, crop_dim]; for a
        single-crop recipe that is the picture's embedding."""
        if len(batch) == 0:
            return np.zeros((0, self.card.backbone.crop_dim), np.float32)
        return self._run("backbone", batch)

    def combine(self, crop_outputs: np.ndarray) -> np.ndarray:
        """One picture's backbone outputs [n_crops, crop_dim] → its embedding [D], as the card says."""
        return combine(crop_outputs, self.card.backbone.embedding)

    def crop_vectors(self, inputs: Sequence[np.ndarray], max_rows: int = 256) -> list[np.ndarray]:
        """Pictures' backbone inputs (each [n_crops, H, W, 3], from `model_inputs`) → each picture's per-crop
        vectors [n_crops, embedding_dim] (contract.recipe.crop_features), whose mean is its embedding. The crops of
        all pictures go through the backbone together, in runs of at most `max_rows` (memory)."""
        if not inputs:
            return []
        crops = np.concatenate(list(inputs))
        outputs = np.concatenate([self.embed(crops[i : i + max_rows]) for i in range(0, len(crops), max_rows)])
        ends = np.cumsum([len(x) for x in inputs])
        recipe = self.card.backbone.embedding
        return [crop_features(part, recipe) for part in np.split(outputs, ends[:-1])]

    def embed_pictures(self, inputs: Sequence[np.ndarray], max_rows: int = 256) -> np.ndarray:
        """Pictures' backbone inputs → embeddings [len, D] (`crop_vectors`, pooled as contract.recipe.combine)."""
        if not inputs:
            return np.zeros((0, self.embedding_dim), np.float32)
        return np.stack([pool(v) for v in self.crop_vectors(inputs, max_rows)])

    def pair_scores(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The exported pair head as is: same-artist probability for rows of a and b, [N]."""
        if len(a) == 0:
            return np.zeros((0,), np.float32)
        return self._run("head", a, b)

    def project(self, emb: np.ndarray) -> np.ndarray:
        if not self.has_projection:
            raise ModelError("this model's head has no projection")
        if len(emb) == 0:
            return np.zeros((0, self.reference_dim), np.float32)
        return self._run("projection", emb)

    def compare(self, pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
        if not self.has_projection:
            raise ModelError("this model's head has no comparator")
        if len(pa) == 0:
            return np.zeros((0,), np.float32)
        return self._run("comparator", pa, pb)

    def reference_vectors(self, emb: np.ndarray) -> np.ndarray:
        """What a stored reference is scored through: its projection when the head has one, else the embedding."""
        emb = np.asarray(emb, np.float32).reshape(-1, self.embedding_dim)
        return self.project(emb) if self.has_projection else emb

    def symmetric_scores(self, va: np.ndarray, vb: np.ndarray) -> np.ndarray:
        """Pair scores of reference vectors that do not depend on the order of the pair.

        An order-free kind (contract.heads: `symmetric`, `cosine`) scores through its comparator as it is; other
        heads are averaged over both orders.
        """
        if self.has_projection and head_kind(self.card.head.kind).order_free:
            return self.compare(va, vb)
        if self.has_projection:
            return (self.compare(va, vb) + self.compare(vb, va)) / np.float32(2.0)
        return (self.pair_scores(va, vb) + self.pair_scores(vb, va)) / np.float32(2.0)

    def score_against(self, query_vec: np.ndarray, ref_vecs: np.ndarray, chunk: int = 2048) -> np.ndarray:
        """One query's reference vector against M references → [M] symmetric pair scores, in chunks so the
        repeated query rows never exceed `chunk` × dim floats however large the portfolio."""
        q = np.asarray(query_vec, np.float32).reshape(1, -1)
        refs = np.asarray(ref_vecs, np.float32)
        out = np.empty((len(refs),), np.float32)
        for start in range(0, len(refs), chunk):
            r = refs[start : start + chunk]
            out[start : start + len(r)] = self.symmetric_scores(np.repeat(q, len(r), axis=0), r)
        return out


def _checked(
    session: ort.InferenceSession, file: str, inputs: list[str], output: str, input_type: str = "float32"
) -> _Part:
    got_in = [i.name for i in session.get_inputs()]
    got_out = [o.name for o in session.get_outputs()]
    if sorted(got_in) != sorted(inputs):
        raise ModelError(f"{file}: ONNX inputs are {got_in}, the card says {inputs}")
    if output not in got_out:
        raise ModelError(f"{file}: ONNX outputs are {got_out}, the card says {output!r}")
    dtype, onnx_type = _INPUT_TYPES[input_type]
    for i in session.get_inputs():
        if i.type != onnx_type:
            raise ModelError(f"{file}: input {i.name} is {i.type}, expected {input_type}")
    return _Part(session=session, inputs=list(inputs), output=output, dtype=dtype)
