"""All of the service's settings in one place: one pydantic-settings class, env prefix `BRUSHPRINT_`.

Every limit the service enforces is named here (CompreFace style), so an operator finds them in one file and the
README can list them; this is the one place each default lives (`Runtime.from_settings` / `Runtime.build` read a
`Settings`, nothing else). Covered by tests/service/test_config.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

from PIL import Image
from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DB_FILE = "brushprint.db"
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
GraphOptimization = Literal["all", "extended", "basic", "disabled"]
ConvAlgoSearch = Literal["heuristic", "exhaustive", "default"]
BackboneInput = Literal["auto", "uint8", "float32"]
# `batch_max_size` when unset, by the provider the model runs on (BENCHMARKS.md, http_e2e and the H200 run of
# recipe_cost: why). On both, batching across requests did not pay: on CPU 1.01-1.06× idle at 64 ÷ 16 crops; on
# an H200 0.73× (64 ÷ 16) and 0.98× (32 ÷ 16) at 16 clients — the backbone (4.3-4.6k crops/s at any batch from
# 16) is not the bottleneck there, the CPU-side resize and crops are. Kept apart so a later measurement can move one.
BATCH_CROPS_CPU = 16
BATCH_CROPS_CUDA = 16
CPU_MEM_ARENA_DEFAULT = True


def _split_csv(value: object) -> object:
    # Environment variables are flat strings: accept "JPEG,PNG" besides a JSON list.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """Runtime configuration. Each field reads `BRUSHPRINT_<FIELD>` from the environment."""

    model_config = SettingsConfigDict(
        env_prefix="BRUSHPRINT_", extra="ignore", validate_default=True, protected_namespaces=()
    )

    # --- where things live
    model_dir: Path = Field(
        default=Path("models/default"), description="model directory holding model.json + ONNX files"
    )
    data_dir: Path = Field(
        default=Path("data"), description="originals (content-addressed) and the default SQLite file"
    )
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; unset means a SQLite file brushprint.db inside data_dir"
    )

    # --- serving
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: LogLevel = "INFO"
    admin_key: SecretStr | None = Field(
        default=None, description="when set, an admin key with exactly this value exists after start (stored hashed)"
    )
    admin_key_name: str = Field(default="bootstrap-admin", min_length=1, max_length=64)
    admin_key_collection: str = Field(
        default="default", description="the collection the bootstrap admin key acts in (made at start if missing)"
    )
    operator_key: SecretStr | None = Field(
        default=None,
        description="when set, an operator key with exactly this value exists after start (stored hashed): it "
        "manages collections and sees inside none",
    )
    operator_key_name: str = Field(default="bootstrap-operator", min_length=1, max_length=64)

    # --- image intake limits (the embedder hands them to contract.decode, which enforces them)
    max_upload_bytes: int = Field(default=64_000_000, gt=0, description="largest accepted image file")
    max_request_bytes: int = Field(
        default=100_000_000, gt=0, description="largest request body, checked from Content-Length before reading"
    )
    max_pixels: int = Field(
        default=200_000_000, gt=0, description="decompression-bomb guard: width*height, checked from the header"
    )
    decode_pixels: int = Field(
        default=40_000_000,
        gt=0,
        description="larger pictures are reduced while decoding (JPEG by DCT scaling, others one at a time) to at "
        "most this many pixels",
    )
    allowed_formats: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["JPEG", "PNG", "WEBP", "TIFF", "BMP", "GIF"],
        description="Pillow format names accepted for uploads",
    )
    max_files_per_request: int = Field(default=32, ge=1, le=1000, description="works per enrolment request")

    # --- micro-batching and inference
    batch_max_size: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="backbone inputs (crops) per run; a picture's crops never split; 0: chosen by the provider in "
        f"use ({BATCH_CROPS_CPU} on CPU — one 16-crop picture per run: no batching across requests — "
        f"{BATCH_CROPS_CUDA} on CUDA; `Settings.for_providers`)",
    )
    batch_max_wait_ms: float = Field(default=5.0, ge=0.0, le=1000.0)
    max_queue: int = Field(default=256, ge=1, description="images waiting for the backbone before 503 overloaded")
    max_inflight: int = Field(
        default=64,
        ge=1,
        description="scoring and enrolment requests served at once; more are shed with 503 overloaded before "
        "their upload is read",
    )
    providers: Literal["auto", "cpu", "cuda"] = Field(
        default="auto", description="onnxruntime providers: auto = CUDA when this onnxruntime offers it, else CPU"
    )
    model_poll_seconds: float = Field(
        default=1.0, gt=0.0, le=60.0, description="how often a replica checks the database for a model upgrade"
    )
    identify_shortlist: int = Field(default=200, ge=1, description="faiss candidates rescored by the head in /identify")
    gallery_calibration: bool = Field(
        default=True, description="derive error rates from the enrolled works once the gallery is large enough"
    )
    gallery_calibration_min_artists: int = Field(
        default=5, ge=2, description="artists with 2 or more works before the gallery calibrates itself"
    )
    migrate_on_start: bool = Field(
        default=True,
        description="bring the database schema to this release's revision when a process opens it (under a lock, "
        "so replicas starting together migrate once); false: refuse an older schema, and run "
        "`python -m service db upgrade` as a deployment step",
    )
    gpu_index: bool | None = Field(
        default=None, description="keep the faiss index on the GPU; unset means: when faiss sees a GPU"
    )

    # --- embedding cache (service/serving/cache.py)
    embedding_cache_mb: int = Field(
        default=64,
        ge=0,
        description="MB (10^6 bytes) of embedded uploads kept per process, least recently used dropped first, so "
        "a picture sent again in the same collection skips decoding and the backbone; 0 turns the cache off",
    )

    # --- onnxruntime sessions (service/serving/model.py `SessionConfig.of` turns these into SessionOptions)
    intra_op_threads: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="threads each onnxruntime session uses inside one operator; 0: onnxruntime's default (one per "
        "physical core)",
    )
    graph_optimization: GraphOptimization = Field(
        default="all", description="onnxruntime graph optimisation level: all, extended, basic or disabled"
    )
    cpu_mem_arena: bool = Field(
        default=CPU_MEM_ARENA_DEFAULT,
        description="onnxruntime's CPU memory arena (keeps freed activation buffers for reuse)",
    )
    cuda_conv_algo_search: ConvAlgoSearch = Field(
        default="exhaustive",
        description="how the CUDA provider picks each convolution's cuDNN algorithm for an input shape it has not "
        "seen: exhaustive (onnxruntime's default: benchmarks every algorithm once per batch size; fastest when "
        "batch sizes repeat, as with the default batch of one picture), heuristic (cuDNN's choice at once; pays "
        "where batch sizes keep changing, e.g. a single-crop model batched across requests) or default",
    )
    backbone_input: BackboneInput = Field(
        default="auto",
        description="what the backbone is fed: uint8 (the crops as cut, the card's normalisation run as the "
        "graph's first nodes, built when the model loads: the same outputs, a quarter of the bytes queued and "
        "copied to a GPU, 1.4x the backbone's pictures/s there; on a CPU 0.98-1.09x the time per picture and "
        "~15 MiB more memory), float32 (the card's backbone file as it is, crops normalised in numpy) or auto "
        "(uint8 on the CUDA provider, float32 on the CPU)",
    )

    # --- abuse control
    rate_limit_per_minute: float = Field(
        default=600.0, ge=0.0, description="sustained requests per minute per API key; 0 disables the limiter"
    )
    rate_limit_burst: int = Field(default=60, ge=1, description="requests a key may make at once before being limited")
    collection_rate_limit_per_minute: float = Field(
        default=0.0,
        ge=0.0,
        description="sustained requests per minute per collection, all its keys together; 0 disables it",
    )
    collection_rate_limit_burst: int = Field(
        default=300, ge=1, description="requests a collection's keys may make at once before being limited"
    )

    @field_validator("allowed_formats", mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("allowed_formats")
    @classmethod
    def _formats_upper(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("allowed_formats must name at least one format")
        value = [v.upper() for v in value]
        Image.init()
        unknown = sorted(set(value) - set(Image.OPEN))
        if unknown:
            raise ValueError(f"allowed_formats names formats Pillow cannot read: {unknown}")
        return value

    @field_validator(
        "log_level", "providers", "graph_optimization", "cuda_conv_algo_search", "backbone_input", mode="before"
    )
    @classmethod
    def _case(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        return value.upper() if info.field_name == "log_level" else value.lower()

    @field_validator("admin_key", "operator_key")
    @classmethod
    def _admin_key_strong(cls, value: SecretStr | None) -> SecretStr | None:
        # A short bootstrap key would be the weakest credential in the system; keys are compared by hash only.
        if value is not None and len(value.get_secret_value()) < 16:
            raise ValueError("admin_key must be at least 16 characters")
        return value

    @model_validator(mode="after")
    def _limits_consistent(self) -> Settings:
        if self.max_request_bytes < self.max_upload_bytes:
            raise ValueError("max_request_bytes must be at least max_upload_bytes")
        if self.database_url is None:
            # Filled here so the runtime, the key store and the CLI all open the very same database.
            self.database_url = f"sqlite:///{self.data_dir / DEFAULT_DB_FILE}"
        return self

    def for_providers(self, providers: Sequence[str]) -> Settings:
        """These settings with what depends on the onnxruntime providers the model really runs on (`Model.providers`)
        filled in: `batch_max_size` when 0. The one place that choice is made; `Runtime` applies it once the
        first model is loaded, so everything downstream reads a number."""
        if self.batch_max_size:
            return self
        size = BATCH_CROPS_CUDA if "CUDAExecutionProvider" in providers else BATCH_CROPS_CPU
        return self.model_copy(update={"batch_max_size": size})
