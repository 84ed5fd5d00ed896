"""The classifier architectures.

- ``paper``: Table IV of the paper exactly, on the (1025, 126) dB STFT (about 31.5 M parameters),
  one independent binary model per family.
- ``compact``: a small CNN on log-mel input with global pooling (about 62 k parameters, about 8 M
  multiply-adds per 4 s window), one independent binary model per family.
- ``trunk``: one shared CNN trunk on log-mel input (learnt from every family's labels at once)
  that maps a window to an embedding, and one small binary head per family on that embedding.
  Adding a family trains one head on the frozen trunk; nothing else changes.

TensorFlow/Keras is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

from tagger.features import FeatureConfig
from tagger.model.settings import TRUNK_FILTERS  # noqa: F401  (here for its users: A.TRUNK_FILTERS)

ARCHITECTURES = ("compact", "paper", "trunk")
SHARED_TRUNK = ("trunk",)
"""Architectures made of one shared trunk and per-family heads (the others: one model per family)."""

HEAD_UNITS = 64
POOLINGS = ("max", "blur")
"""How the trunk halves its maps between conv blocks: ``max``, a 2x2 max-pool; ``blur``, an
anti-aliased max-pool (`downsample`)."""

COMPACT_FEATURES = FeatureConfig(kind="logmel", n_mels=64)
PAPER_FEATURES = FeatureConfig(kind="stft")


def predict_batch(architecture: str) -> int:
    """Windows scored at a time when validating during training: the ten `paper` classifiers hold
    a (1025, 126, 32) float32 activation (16.5 MB) per window each, so 256 windows do not fit in
    24 GB; the compact ones need about 1 MB per window for all ten."""
    return 16 if architecture == "paper" else 256


def feature_config(architecture: str) -> FeatureConfig:
    """The front end an architecture is built for."""
    if architecture in ("compact", "trunk"):
        return COMPACT_FEATURES
    if architecture == "paper":
        return PAPER_FEATURES
    raise ValueError(f"unknown architecture {architecture!r}; expected one of {', '.join(ARCHITECTURES)}")


def build_paper(input_shape: tuple[int, int], *, name: str = "paper"):
    """Table IV: Conv2D 32/64/128 (3x3, relu, same) each + BatchNorm + 2x2 MaxPool; Flatten;
    Dense 128 relu; Dropout 0.5; Dense 1 sigmoid."""
    import keras
    from keras import layers

    inp = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1))(inp)
    for filters in (32, 64, 128):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.BatchNormalization()(x)
        x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(128, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    out = layers.Dense(1, activation="sigmoid", name="presence")(x)
    return keras.Model(inp, out, name=name)


def build_compact(input_shape: tuple[int, int], *, name: str = "compact"):
    """Five 3x3 conv blocks (8-16-32-64-64 filters, BatchNorm, ReLU, 2x2 max-pool between), global
    average and max pooling, dropout, one sigmoid unit."""
    import keras
    from keras import layers

    inp = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1))(inp)
    for i, filters in enumerate((8, 16, 32, 64, 64)):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        if i < 4:
            x = layers.MaxPooling2D(2)(x)
    x = layers.Concatenate()([layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)])
    x = layers.Dropout(0.3)(x)
    out = layers.Dense(1, activation="sigmoid", name="presence")(x)
    return keras.Model(inp, out, name=name)


def downsample(x, pooling: str = "max"):
    """Halve a map [shape=(n, H, W, C)] in both axes. ``max``: a 2x2 max-pool, stride 2. ``blur``:
    the anti-aliased max-pool of Zhang (2019), "Making convolutional networks shift-invariant again":
    a 2x2 max-pool of stride 1, then a [1, 2, 1] / 4 binomial low-pass in each axis sampled every
    second row and column, so that a spectral envelope moved by one mel band moves the pooled map
    smoothly instead of flipping which of two bands survives. The low-pass is two 2x2 average pools
    (a box of 2 twice is [1, 2, 1] / 4), the second of stride 2; a zero border of 1 (the maps are
    ReLU outputs, never below 0) keeps the output size of the 2x2 max-pool. No weights either way."""
    from keras import layers

    if pooling == "max":
        return layers.MaxPooling2D(2)(x)
    if pooling != "blur":
        raise ValueError(f"unknown pooling {pooling!r}; expected one of {', '.join(POOLINGS)}")
    x = layers.ZeroPadding2D(1)(x)
    x = layers.MaxPooling2D(2, strides=1)(x)
    x = layers.AveragePooling2D(2, strides=1)(x)
    return layers.AveragePooling2D(2, strides=2)(x)


def build_trunk(input_shape: tuple[int, int], *, name: str = "trunk", filters: tuple[int, ...] = TRUNK_FILTERS,
                pooling: str = "max"):  # fmt: skip
    """The shared trunk: 3x3 conv blocks (BatchNorm, ReLU, a halving `downsample` between) whose last
    map is pooled over time and frequency (average and max) into an embedding [shape=(n, 2 * filters[-1])]."""
    import keras
    from keras import layers

    inp = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1))(inp)
    for i, f in enumerate(filters):
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.Activation("relu")(x)
        if i < len(filters) - 1:
            x = downsample(x, pooling)
    out = layers.Concatenate(name="embedding")([layers.GlobalAveragePooling2D()(x), layers.GlobalMaxPooling2D()(x)])
    return keras.Model(inp, out, name=name)


def build_head(embedding_size: int, *, name: str = "head", units: int = HEAD_UNITS):
    """One family's head on the trunk's embedding: dropout, a small hidden layer, one sigmoid unit."""
    import keras
    from keras import layers

    inp = keras.Input(shape=(embedding_size,), name="embedding")
    x = layers.Dropout(0.3)(inp)
    x = layers.Dense(units, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    out = layers.Dense(1, activation="sigmoid", name="presence")(x)
    return keras.Model(inp, out, name=name)


def build(architecture: str, *, name: str | None = None):
    """A fresh, uncompiled per-family classifier for `architecture` (not for shared-trunk ones:
    see `build_trunk` and `build_head`), sized for its feature configuration."""
    cfg = feature_config(architecture)
    if architecture in SHARED_TRUNK:
        raise ValueError(f"{architecture!r} is built as a trunk and heads")
    builder = build_compact if architecture == "compact" else build_paper
    return builder(cfg.shape, name=name or architecture)
