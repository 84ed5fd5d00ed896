"""The presence gate of a shared-trunk ensemble: does any family play in this window?

Each head answers one family, and a window of drums alone (a drum solo, an intro, a loop) or of
other sounds of no family sets some of them off. The gate is one more answer on the trunk's
embedding, learnt from every training example at once: positive when the example holds any family.
A family is tagged only when its head is over its threshold *and* the gate is over the gate's; a
window the gate turns down has no family (`Ensemble.predict_features` sets its scores to 0).

It is a logistic regression on the frozen trunk's embedding, with balanced classes (examples of no
family are a few percent of the mixtures), saved as a one-layer Keras model (``gate.keras``) so that
every backend runs it with the heads. Its threshold is chosen on the validation windows that hold a
family: the highest that turns down at most `GATE_COST` of them. Windows of no family (drums alone)
are not used for the choice; they are what it is measured on.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

GATE_COST = 0.15
"""Default share of validation windows holding a family that the gate may turn down (chosen on
held-out instruments with ``scripts/held_out_detail.py --report --gate-costs``: the README's
"Presence gate" lever)."""
GATE_L2 = 1.25e-4
"""L2 penalty of the logistic regression (on standardised embeddings)."""


def fit_logistic(emb: np.ndarray, present: np.ndarray, *, l2: float = GATE_L2) -> tuple[np.ndarray, float]:
    """Weights [shape=(d,)] and bias of a class-balanced, L2-penalised logistic regression of
    `present` [bool, shape=(n,)] on `emb` [shape=(n, d)], in the embedding's own units."""
    from scipy.optimize import minimize

    emb = np.asarray(emb, dtype=np.float64)
    present = np.asarray(present, dtype=bool)
    if present.all() or not present.any():
        raise ValueError("the gate needs training examples with and without a family")
    mean, std = emb.mean(axis=0), emb.std(axis=0) + 1e-6
    z = (emb - mean) / std
    t = present.astype(np.float64)
    weight = np.where(present, 0.5 / present.mean(), 0.5 / (1 - present.mean())) / len(t)

    def loss(params):
        w, b = params[:-1], params[-1]
        logit = z @ w + b
        # log(1 + e^-x) for positives, log(1 + e^x) for negatives, computed stably
        nll = np.logaddexp(0.0, np.where(present, -logit, logit))
        p = 1.0 / (1.0 + np.exp(-logit))
        grad_logit = weight * (p - t)
        value = float(weight @ nll + 0.5 * l2 * w @ w)
        grad = np.concatenate([z.T @ grad_logit + l2 * w, [grad_logit.sum()]])
        return value, grad

    res = minimize(loss, np.zeros(z.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 1000})
    w_z, b_z = res.x[:-1], res.x[-1]
    w = w_z / std
    return w.astype(np.float32), float(b_z - w @ mean)


def gate_model(weights: np.ndarray, bias: float):
    """The gate as a Keras model: the embedding -> one sigmoid unit."""
    import keras

    inp = keras.Input(shape=(len(weights),), name="embedding")
    layer = keras.layers.Dense(1, activation="sigmoid", name="presence")
    model = keras.Model(inp, layer(inp), name="gate")
    layer.set_weights([np.asarray(weights, dtype=np.float32)[:, None], np.array([bias], dtype=np.float32)])
    return model


def choose_threshold(scores_with_family: np.ndarray, cost: float = GATE_COST) -> float:
    """The highest threshold that turns down at most `cost` of the windows that hold a family."""
    scores = np.sort(np.asarray(scores_with_family, dtype=np.float64))
    if not len(scores) or cost <= 0:
        return 0.0
    k = int(np.floor(cost * len(scores)))  # windows that may fall under the threshold
    return float(scores[k]) if k < len(scores) else float(scores[-1])


def embed(trunk, feats, *, batch: int = 256, limit: int | None = None, progress: Callable[[int], None] | None = None) -> np.ndarray:
    """The trunk's embedding [shape=(n, d)] of features (read in batches: `feats` may be memory-mapped)."""
    n = len(feats) if limit is None else min(limit, len(feats))
    out = []
    for i in range(0, n, batch):
        out.append(np.asarray(trunk(np.asarray(feats[i : min(i + batch, n)], dtype=np.float32), training=False)))
        if progress is not None:
            progress(min(i + batch, n))
    return np.concatenate(out) if out else np.zeros((0, int(trunk.output_shape[-1])), dtype=np.float32)


def gate_scores(model, emb: np.ndarray) -> np.ndarray:
    return np.asarray(model(np.asarray(emb, dtype=np.float32), training=False))[:, 0]
