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

A gate can turn down a lone note that one head is sure of (an unusual instrument heard alone), so
a head that scores at least the gate's *override* keeps its window whatever the gate says. The
override is chosen on the same validation windows by `choose_override`: the most permissive one of
`GATE_OVERRIDES` that keeps some of the windows the gate turns down without lowering F0.5 over
every validation window or letting windows of drums alone trigger a family more often than
`DRUMS_SILENT_MIN` allows (None when none qualifies). When the run leaves a source out, the left-out
library's kits alone must stay as silent too (at least as often, or, where the gate alone leaves
fewer of them silent, the override must set off none of them): kits that no training example held, the case of a
user's drums (on sample-library kits alone, the most permissive override can let an unheard kit
through: 15 of 21 windows of unheard FM kits silent at 0.8, 19 with the gate alone).

The gate can be *soft* instead (`softened`; ``tagger combine --soft-gate``): every head's score is
scaled by the gate's score to a power, no window is turned down, and the heads' thresholds are
chosen on the scaled scores. A window the gate doubts keeps its ranking among the others (the
per-family AUC of the scores users get stays the heads'), but each head needs more in it to pass.
`choose_exponent` picks the gentlest power that does as well as the hard gate on the same windows.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tagger.constants import GATE_COST  # noqa: F401  (here for its users: G.GATE_COST)
from tagger.evaluate.metrics import THRESHOLD_BETA, fbeta_from_counts

GATE_OVERRIDES = (0.98, 0.95, 0.9, 0.85, 0.8)
"""Head scores tried as the gate's override, from the strictest (`choose_override`)."""
DRUMS_SILENT_MIN = 0.95
"""The share of validation windows of drums alone that must stay without a family for an override
to qualify (issue 15's target for windows of drums or percussion alone)."""
DECIDING = ("threshold", "override", "exponent")
"""The keys of a manifest's gate entry that decide (`decided`); what a production fit carries over."""
GATE_EXPONENTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
"""Exponents tried for a *soft* gate (`softened`, `choose_exponent`), from the gentlest."""
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


def gated(heads: np.ndarray, gate: np.ndarray, threshold: float, override: float | None = None) -> np.ndarray:
    """Head scores [shape=(n, k)] after the gate (scores [shape=(n,)]): 0 in the windows it turns
    down, unless a head scores at least `override` there."""
    keep = np.asarray(gate) >= threshold
    if override is not None:
        keep = keep | (np.asarray(heads).max(axis=1, initial=0.0) >= override)
    return np.where(keep[:, None], heads, np.float32(0.0)).astype(np.float32)


def softened(heads: np.ndarray, gate: np.ndarray, exponent: float) -> np.ndarray:
    """Head scores [shape=(n, k)] scaled by the gate's score [shape=(n,)] to the power `exponent`:
    the soft gate. A window the gate doubts keeps its ranking among the others, but every head in it
    needs more to pass its threshold; the thresholds are chosen on these scores (`choose_exponent`)."""
    g = np.clip(np.asarray(gate, dtype=np.float32), 0.0, 1.0) ** np.float32(exponent)
    return (np.asarray(heads, dtype=np.float32) * g[:, None]).astype(np.float32)


def decided(heads: np.ndarray, gate: np.ndarray, entry: dict) -> np.ndarray:
    """Head scores [shape=(n, k)] after the gate a manifest's entry describes: soft when it has an
    ``exponent`` (`softened`), else a window under its ``threshold`` has no family unless a head
    reaches its ``override`` (`gated`)."""
    if entry.get("exponent") is not None:
        return softened(heads, gate, float(entry["exponent"]))
    return gated(heads, gate, float(entry["threshold"]), entry.get("override"))


def choose_exponent(heads: np.ndarray, gate: np.ndarray, *, truth: np.ndarray, drums_alone: np.ndarray, base: dict,
                    thresholds_for: Callable[[np.ndarray], np.ndarray],
                    other_kits: tuple[np.ndarray, np.ndarray] | None = None, candidates=GATE_EXPONENTS,
                    min_silent: float = DRUMS_SILENT_MIN, beta: float = THRESHOLD_BETA) -> tuple[float | None, list[dict]]:  # fmt: skip
    """The soft gate's exponent (`softened`) chosen on validation windows, against the hard gate it
    would replace: head scores [shape=(n, k)], gate scores [shape=(n,)], `truth` [bool,
    shape=(n, k)], which windows hold drums alone [bool, shape=(n,)], `base` (the hard gate's record
    from `choose_override`: its F-beta over every window, its drums-alone and other kits' silent
    shares), `thresholds_for` (softened scores -> the heads' thresholds [shape=(k,)], chosen as for
    any scores) and `other_kits` as for `choose_override`.

    The gentlest of `candidates` (the one that keeps most of the heads' ranking) whose F-beta over
    every (window, family) is at least the hard gate's, whose drums-alone windows stay without a
    family in at least `min_silent` of cases and whose other kits' windows stay as silent as with
    the hard gate (or `min_silent`); None when none qualifies (the hard gate stays).
    Returns it and one record per candidate, each with its thresholds."""
    truth = np.asarray(truth, dtype=bool)
    drums_alone = np.asarray(drums_alone, dtype=bool)
    others = other_kits is not None and len(other_kits[1]) > 0
    records, chosen = [], None
    for a in sorted(candidates):
        scores = softened(heads, gate, a)
        th = np.asarray(thresholds_for(scores), dtype=np.float32)
        pred = scores >= th
        rec = {"exponent": float(a),
               "fbeta": round(fbeta_from_counts(int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum()), beta=beta), 4),
               "drums_alone_silent": round(float(1.0 - pred[drums_alone].any(axis=1).mean()), 4) if drums_alone.any() else None,
               "thresholds": [round(float(t), 4) for t in th]}  # fmt: skip
        if others:
            rec["other_kits_silent"] = round(float(1.0 - (softened(*other_kits, a) >= th).any(axis=1).mean()), 4)
        records.append(rec)
        if (chosen is None and rec["drums_alone_silent"] is not None and rec["drums_alone_silent"] >= min_silent
                and rec["fbeta"] >= base["fbeta"]
                and (not others or rec["other_kits_silent"] >= min(min_silent, base.get("other_kits_silent", 1.0)))):  # fmt: skip
            chosen = float(a)
    return chosen, records


def choose_override(heads: np.ndarray, gate: np.ndarray, threshold: float, *, truth: np.ndarray, head_thresholds: np.ndarray,
                    drums_alone: np.ndarray, other_kits: tuple[np.ndarray, np.ndarray] | None = None,
                    candidates=GATE_OVERRIDES, min_silent: float = DRUMS_SILENT_MIN,
                    beta: float = THRESHOLD_BETA) -> tuple[float | None, list[dict]]:  # fmt: skip
    """The gate's override (`gated`) chosen on validation windows: head scores [shape=(n, k)], gate
    scores [shape=(n,)], `truth` [bool, shape=(n, k)], the heads' thresholds [shape=(k,)] and which
    windows hold drums alone [bool, shape=(n,)]; `other_kits`, the head and gate scores of windows
    of drums alone from kits of another library (the left-out source's), when there are some. The
    lowest of `candidates` that keeps some window the gate turns down, whose F-beta over every
    (window, family) is at least the gate's alone, whose drums-alone windows stay without a family
    in at least `min_silent` of cases, and whose other kits' windows do too, or lose nothing to it
    when the gate alone leaves fewer silent; None when none qualifies (or there are no drum windows
    to check).
    Returns it and one record per candidate (the gate alone first)."""
    truth = np.asarray(truth, dtype=bool)
    drums_alone = np.asarray(drums_alone, dtype=bool)
    others = other_kits is not None and len(other_kits[1]) > 0

    def silent_share(pred: np.ndarray) -> float:
        return round(float(1.0 - pred.any(axis=1).mean()), 4)

    def measure(override):
        pred = gated(heads, gate, threshold, override) >= head_thresholds
        fbeta = fbeta_from_counts(int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum()), beta=beta)
        rec = {"override": override, "fbeta": round(fbeta, 4),
               "drums_alone_silent": silent_share(pred[drums_alone]) if drums_alone.any() else None,
               "kept_by_override": int(((np.asarray(gate) < threshold) & (np.asarray(heads).max(axis=1) >= (override or 2.0))).sum())}  # fmt: skip
        if others:
            rec["other_kits_silent"] = silent_share(gated(other_kits[0], other_kits[1], threshold, override) >= head_thresholds)
        return rec

    base = measure(None)
    records, chosen = [base], None
    for h in sorted(candidates, reverse=True):
        rec = measure(float(h))
        records.append(rec)
        if (rec["kept_by_override"] and rec["drums_alone_silent"] is not None and rec["drums_alone_silent"] >= min_silent
                and rec["fbeta"] >= base["fbeta"]
                and (not others or rec["other_kits_silent"] >= min(min_silent, base["other_kits_silent"]))):  # fmt: skip
            chosen = float(h)
    return chosen, records


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
