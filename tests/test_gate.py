"""The presence gate's pieces: the logistic regression, its Keras form and the choice of threshold."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tagger.model import gate as G  # noqa: E402


def test_the_logistic_regression_separates_a_rare_class_and_keeps_the_embeddings_units():
    rng = np.random.default_rng(0)
    n, d = 4000, 12
    present = rng.random(n) > 0.05  # examples of no family are rare, as in the mixtures
    emb = rng.standard_normal((n, d)) * np.linspace(0.5, 20.0, d) + 100.0  # unscaled, offset units
    emb[:, 3] += np.where(present, 20.0, -20.0)  # one dimension tells them apart
    w, b = G.fit_logistic(emb, present)
    logit = emb @ w + b
    # balanced: both classes are mostly right, not only the common one
    assert np.mean(logit[present] > 0) > 0.95 and np.mean(logit[~present] < 0) > 0.95
    assert np.argmax(np.abs(w * emb.std(axis=0))) == 3
    with pytest.raises(ValueError, match="with and without a family"):
        G.fit_logistic(emb, np.ones(n, bool))


def test_the_gate_model_computes_the_fitted_logistic():
    rng = np.random.default_rng(1)
    w, b = rng.standard_normal(6).astype(np.float32), 0.3
    model = G.gate_model(w, b)
    emb = rng.standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_allclose(G.gate_scores(model, emb), 1 / (1 + np.exp(-(emb @ w + b))), rtol=1e-5)
    assert model.count_params() == 7


def test_the_threshold_turns_down_at_most_the_given_share_of_windows_with_a_family():
    scores = np.random.default_rng(2).permutation(np.arange(200) / 200)
    t = G.choose_threshold(scores, 0.03)
    assert np.sum(scores < t) == 6  # 3% of 200
    assert G.choose_threshold(scores, 0.0) == 0.0 and np.sum(scores < G.choose_threshold(scores, 0.5)) == 100
