"""The two classifier architectures: one independent binary Keras model per family.

- ``paper``: Table IV of the paper exactly, on the (1025, 126) dB STFT (about 31.5 M parameters).
- ``compact``: a small CNN on log-mel input with global pooling (about 62 k parameters, about 8 M
  multiply-adds per 4 s window), the shipped default.

TensorFlow/Keras is imported inside the functions so that importing this module stays cheap.
"""

from __future__ import annotations

from tagger.features import FeatureConfig

ARCHITECTURES = ("compact", "paper")

COMPACT_FEATURES = FeatureConfig(kind="logmel", n_mels=64)
PAPER_FEATURES = FeatureConfig(kind="stft")


def predict_batch(architecture: str) -> int:
    """Windows scored at a time when validating during training: the ten `paper` classifiers hold
    a (1025, 126, 32) float32 activation (16.5 MB) per window each, so 256 windows do not fit in
    24 GB; the compact ones need about 1 MB per window for all ten."""
    return 16 if architecture == "paper" else 256


def feature_config(architecture: str) -> FeatureConfig:
    """The front end an architecture is built for."""
    if architecture == "compact":
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


def build(architecture: str, *, name: str | None = None):
    """A fresh, uncompiled classifier for `architecture`, sized for its feature configuration."""
    cfg = feature_config(architecture)
    builder = build_compact if architecture == "compact" else build_paper
    return builder(cfg.shape, name=name or architecture)
