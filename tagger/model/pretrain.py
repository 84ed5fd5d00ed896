"""Supervised contrastive pretraining of the shared trunk on instrument identity.

Before the trunk learns the families from mixtures, it learns to tell instruments apart: single
notes of the training pool are embedded, and the SupCon loss (Khosla et al., 2020) pulls together
the notes of one instrument (at other pitches and velocities, under other augmentations) and
pushes apart those of different instruments. Non-family sounds (drum kits, effects) take part as
instruments of their own, so the trunk also learns them apart. Each batch holds `per_instrument`
notes of `instruments_per_batch` distinct instruments. The projection head used by the loss is
discarded; the mixture training then starts from the pretrained trunk.

The note features (one augmented view per note, augmented like the training mixtures: gain,
equalisation, noise, reverb) are computed once, in parallel, and cached with the training examples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger import features as F
from tagger.model import synth as S


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = 0
    """Contrastive steps (batches); 0 = no pretraining."""
    instruments_per_batch: int = 16
    per_instrument: int = 4
    temperature: float = 0.1
    learning_rate: float = 1e-3
    projection: int = 128
    seed: int = 0


def note_features(pool_dir: str | os.PathLike, *, seed: int, feature_config: F.FeatureConfig, chunk_size: int = 1000,
                  jobs: int = -1) -> np.ndarray:  # fmt: skip
    """Features [shape=(notes, *config.shape), float16] of every pool note, each augmented once."""
    from joblib import Parallel, delayed

    count = len(S.NotePool(pool_dir).family)
    starts = list(range(0, count, chunk_size))
    parts = Parallel(n_jobs=jobs)(
        delayed(_note_chunk)(str(pool_dir), start, min(chunk_size, count - start), seed, feature_config) for start in starts
    )
    return np.concatenate(parts) if parts else np.zeros((0, *feature_config.shape), np.float16)


def _note_chunk(pool_dir: str, start: int, count: int, seed: int, feature_config: F.FeatureConfig) -> np.ndarray:
    pool = S.NotePool(pool_dir)
    rng = np.random.default_rng([seed, start])
    plain = S.SynthSettings()
    audio = np.zeros((count, S.L), dtype=np.float32)
    gains = np.ones((count, C.STFT_BINS), dtype=np.float32)
    for i in range(count):
        audio[i] = S.finish_example(pool.clip(start + i) * np.float32(10 ** (rng.uniform(-12, 0) / 20)), rng, plain)
        if rng.random() < plain.eq_prob:
            gains[i] = S.eq_curve(rng)
    return np.concatenate(
        [F.compute(windows=audio[j : j + 64], config=feature_config, spectral_gain=gains[j : j + 64]) for j in range(0, count, 64)]
    ).astype(np.float16)


def batches(instrument: np.ndarray, settings: PretrainSettings):
    """Endless index batches: `per_instrument` notes of each of `instruments_per_batch` distinct
    instruments that have at least two notes (so every note has a positive)."""
    rng = np.random.default_rng([settings.seed, 7])
    by_inst = {int(i): np.flatnonzero(instrument == i) for i in np.unique(instrument)}
    eligible = np.array([i for i, idx in by_inst.items() if len(idx) >= 2])
    if len(eligible) < 2:
        raise ValueError("contrastive pretraining needs at least two instruments with two notes each")
    k = min(settings.instruments_per_batch, len(eligible))
    while True:
        chosen = rng.choice(eligible, size=k, replace=False)
        idx = [rng.choice(by_inst[int(i)], size=settings.per_instrument, replace=len(by_inst[int(i)]) < settings.per_instrument)
               for i in chosen]  # fmt: skip
        yield np.concatenate(idx), np.repeat(chosen, settings.per_instrument)


def supcon_loss(z, ids, temperature: float):
    """SupCon loss of L2-normalised embeddings `z` [shape=(n, d)] with integer labels `ids` [shape=(n,)]:
    mean over anchors of the negative mean log-likelihood of their positives."""
    from keras import ops

    n = ops.shape(z)[0]
    eye = ops.eye(n, dtype=z.dtype)
    logits = ops.matmul(z, ops.transpose(z)) / temperature - 1e9 * eye
    log_prob = logits - ops.logsumexp(logits, axis=1, keepdims=True)
    pos = ops.cast(ops.equal(ops.expand_dims(ids, 1), ops.expand_dims(ids, 0)), z.dtype) - eye
    per_anchor = -ops.sum(pos * log_prob, axis=1) / ops.maximum(ops.sum(pos, axis=1), 1.0)
    return ops.mean(per_anchor)


def pretrain_trunk(trunk, feats: np.ndarray, instrument: np.ndarray, settings: PretrainSettings, *,
                   progress: Callable[[dict], None] | None = None) -> list[float]:  # fmt: skip
    """Train `trunk` in place with the SupCon loss on instrument identity; returns the loss per step."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(settings.seed)
    width = int(trunk.output_shape[-1])
    proj = keras.Sequential(
        [keras.Input(shape=(width,)), keras.layers.Dense(width, activation="relu"), keras.layers.Dense(settings.projection)],
        name="projection",
    )
    schedule = keras.optimizers.schedules.CosineDecay(settings.learning_rate, decay_steps=max(settings.steps, 1), alpha=0.05)
    opt = keras.optimizers.Adam(schedule)
    variables = trunk.trainable_variables + proj.trainable_variables
    opt.build(variables)

    @tf.function(reduce_retracing=True)
    def step(x, ids):
        with tf.GradientTape() as tape:
            z = tf.math.l2_normalize(proj(trunk(x, training=True), training=True), axis=1)
            loss = supcon_loss(z, ids, settings.temperature)
        opt.apply_gradients(zip(tape.gradient(loss, variables), variables))
        return loss

    losses = []
    source = batches(instrument, settings)
    for s in range(settings.steps):
        idx, ids = next(source)
        order = np.argsort(idx, kind="stable")  # sorted reads from a memory map
        x = np.asarray(feats[idx[order]], dtype=np.float32)
        losses.append(float(step(tf.constant(x), tf.constant(ids[order].astype(np.int32)))))
        if progress and (s % 50 == 0 or s == settings.steps - 1):
            progress({"step": s + 1, "of": settings.steps, "loss": round(float(np.mean(losses[-50:])), 4)})
    return losses


def pretrained_trunk(build_trunk: Callable[[], object], pool_dir: Path, cache: Path, settings: PretrainSettings,
                     feature_config: F.FeatureConfig, *, say: Callable[[str, dict], None]):  # fmt: skip
    """A trunk pretrained by `settings` on the pool's notes, reused from `cache` when already done."""
    cache.mkdir(parents=True, exist_ok=True)
    trunk = build_trunk()
    weights = cache / "trunk.weights.h5"
    if weights.is_file():
        trunk.load_weights(weights)
        say("pretrain", {"reused": str(weights)})
        return trunk
    feats_path = cache / "notes_x.npy"
    if not feats_path.is_file():
        say("pretrain", {"features": "single notes", "pool": str(pool_dir)})
        feats = note_features(pool_dir, seed=settings.seed, feature_config=feature_config)
        np.save(cache / "notes_x.tmp.npy", feats)
        os.replace(cache / "notes_x.tmp.npy", feats_path)
    feats = np.load(feats_path, mmap_mode="r")
    instrument = S.NotePool(pool_dir).instrument
    losses = pretrain_trunk(trunk, feats, instrument, settings, progress=lambda info: say("pretrain", info))
    trunk.save_weights(cache / "trunk.tmp.weights.h5")
    os.replace(cache / "trunk.tmp.weights.h5", weights)
    (cache / "losses.json").write_text(json.dumps([round(v, 4) for v in losses]))
    return trunk
