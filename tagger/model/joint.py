"""The graph a run trains: one classifier per family on a shared input (`build_joint`), its
losses and learning-rate schedule (`_compile_joint`), its scores (`_predict_joint`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagger.model import architectures as A
from tagger.model.settings import TrainSettings


def _weighted_bce(pos_weight: float, neg_weight: float):
    import keras
    from keras import ops

    def loss(y_true, y_pred):
        y_true = ops.cast(y_true, y_pred.dtype)
        bce = keras.losses.binary_crossentropy(y_true, y_pred)
        w = ops.squeeze(y_true, -1) * pos_weight + (1 - ops.squeeze(y_true, -1)) * neg_weight
        return bce * w

    return loss


def build_joint(families: Sequence[str], architecture: str, *, seed: int, trunk=None, freeze: bool = True,
                trunk_filters: Sequence[int] = A.TRUNK_FILTERS, pooling: str = "max"):  # fmt: skip
    """One graph holding a classifier per family (shared input, one output per family).

    Per-family architectures get independent weights. Shared-trunk ones get one head per family on
    the trunk: a new trunk when `trunk` is None (trained with the heads), else the given one, frozen
    (only the new heads train) unless `freeze` is False (a pretrained trunk trained on with the heads).
    Returns (joint model, {family: classifier or head}, trunk or None).
    """
    import keras

    keras.utils.set_random_seed(seed)
    cfg = A.feature_config(architecture)
    inp = keras.Input(shape=cfg.shape, name="features")
    if architecture in A.SHARED_TRUNK:
        if trunk is None:
            trunk = A.build_trunk(cfg.shape, name="trunk", filters=tuple(trunk_filters), pooling=pooling)
        else:
            trunk.trainable = not freeze
        embedding = trunk(inp)
        members = {f: A.build_head(int(trunk.output_shape[-1]), name=f"head_{f}") for f in families}
        outs = {f: keras.layers.Identity(name=f)(m(embedding)) for f, m in members.items()}
        return keras.Model(inp, outs, name="joint"), members, trunk
    members = {f: A.build(architecture, name=f"{architecture}_{f}") for f in families}
    outs = {f: keras.layers.Identity(name=f)(m(inp)) for f, m in members.items()}
    return keras.Model(inp, outs, name="joint"), members, None


def _compile_joint(joint, settings: TrainSettings, y: np.ndarray, *, todo: Sequence[str], fam_idx: Sequence[int]) -> None:
    """Compile the joint graph: a binary cross-entropy per head (the solo recipe weights each
    family's positives by its class balance in `y`), Adam on a cosine-decayed learning rate."""
    import keras

    losses = {}
    for f, j in zip(todo, fam_idx):
        if settings.recipe == "solo":
            pos = max(float(y[:, j].mean()), 1e-3)
            losses[f] = _weighted_bce(0.5 / pos, 0.5 / (1 - pos))
        else:
            losses[f] = "binary_crossentropy"
    steps = int(np.ceil(len(y) / settings.batch_size)) * settings.epochs
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps=steps, alpha=0.05)
    joint.compile(optimizer=keras.optimizers.Adam(schedule), loss=losses)


def _predict_joint(joint, feats: np.ndarray, families: Sequence[str], batch: int = 256) -> np.ndarray:
    outs = []
    for i in range(0, len(feats), batch):
        res = joint(np.asarray(feats[i : i + batch], dtype=np.float32), training=False)
        outs.append(np.concatenate([np.asarray(res[f]) for f in families], axis=1))
    return np.concatenate(outs)
