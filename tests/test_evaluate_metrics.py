"""Every evaluation metric on hand-made predictions whose answers are worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tagger.errors import UserError
from tagger.evaluate import metrics as MX

# Five examples over three families (a, b, c); the answers below are counted by hand.
TRUTH = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 0, 0], [1, 1, 1]], dtype=np.uint8)
PRED = np.array([[1, 0, 0], [1, 0, 1], [0, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=np.uint8)
FAMS = ("a", "b", "c")


def test_jaccard_per_example_by_hand():
    # {a}/{a} = 1; {a,b} vs {a,c}: 1/3; {} vs {} = 1 (empty-empty); {} vs {b}: 0/1; {a,b,c} vs {a,b}: 2/3
    got = MX.jaccard_per_example(truth=TRUTH, pred=PRED)
    np.testing.assert_allclose(got, [1, 1 / 3, 1, 0, 2 / 3])
    assert MX.jaccard_accuracy(truth=TRUTH, pred=PRED) == pytest.approx(3 / 5)


def test_empty_truth_and_empty_prediction_score_one_but_a_false_alarm_scores_zero():
    empty = np.zeros((1, 10), dtype=np.uint8)
    assert MX.jaccard_accuracy(truth=empty, pred=empty) == 1.0
    alarm = empty.copy()
    alarm[0, 3] = 1
    assert MX.jaccard_accuracy(truth=empty, pred=alarm) == 0.0
    assert MX.exact_match_ratio(truth=empty, pred=empty) == 1.0
    assert MX.hamming_accuracy(truth=empty, pred=alarm) == pytest.approx(0.9)


def test_hamming_and_emr_by_hand():
    # correct bits per example: 3, 1, 3, 2, 2 -> 11 of 15; exact matches: examples 0 and 2
    assert MX.hamming_accuracy(truth=TRUTH, pred=PRED) == pytest.approx(11 / 15)
    assert MX.exact_match_ratio(truth=TRUTH, pred=PRED) == pytest.approx(2 / 5)
    summary = MX.multilabel_summary(truth=TRUTH, pred=PRED)
    assert summary == pytest.approx({"n": 5, "jaccard": 0.6, "hamming": 11 / 15, "emr": 0.4})


def test_hamming_accuracy_is_not_jaccard():
    # one instrument of ten missed: 9 of 10 bits right, but the intersection over union is 0
    truth = np.zeros((1, 10), dtype=np.uint8)
    truth[0, 0] = 1
    pred = np.zeros_like(truth)
    assert MX.hamming_accuracy(truth=truth, pred=pred) == pytest.approx(0.9)
    assert MX.jaccard_accuracy(truth=truth, pred=pred) == 0.0
    assert MX.hamming_accuracy(truth=TRUTH, pred=PRED) != pytest.approx(MX.jaccard_accuracy(truth=TRUTH, pred=PRED))


def test_family_counts_and_rates_by_hand():
    c = MX.family_counts(truth=TRUTH, pred=PRED)
    np.testing.assert_array_equal(c.tp, [3, 1, 0])
    np.testing.assert_array_equal(c.fp, [0, 1, 1])
    np.testing.assert_array_equal(c.tn, [2, 2, 3])
    np.testing.assert_array_equal(c.fn, [0, 1, 1])
    np.testing.assert_allclose(MX.accuracy(c), [1, 3 / 5, 3 / 5])
    np.testing.assert_allclose(MX.true_positive_rate(c), [1, 1 / 2, 0])
    np.testing.assert_allclose(MX.false_positive_rate(c), [0, 1 / 3, 1 / 4])
    np.testing.assert_allclose(MX.precision(c), [1, 1 / 2, 0])
    np.testing.assert_allclose(MX.f1_score(c), [1, 1 / 2, 0])
    np.testing.assert_array_equal(c.matrix(1), [[2, 1], [1, 1]])  # [[TN, FP], [FN, TP]]


def test_tpr_is_not_the_reference_codes_tn_over_tn_plus_fn():
    # family c: present once and missed, reported once where absent -> TPR 0.
    # The paper's reference code computed TN / (TN + FN) = 3 / 4 and called it TPR.
    c = MX.family_counts(truth=TRUTH, pred=PRED)
    assert MX.true_positive_rate(c)[2] == 0.0
    assert MX.reference_code_tpr(c)[2] == pytest.approx(0.75)
    np.testing.assert_allclose(MX.reference_code_tpr(c), [1, 2 / 3, 3 / 4])
    # A classifier that never says "present" finds nothing (TPR 0) yet scores high on TN/(TN+FN).
    truth = np.array([[1], [0], [0], [0], [0]], dtype=np.uint8)
    silent = np.zeros_like(truth)
    cs = MX.family_counts(truth=truth, pred=silent)
    assert MX.true_positive_rate(cs)[0] == 0.0
    assert MX.reference_code_tpr(cs)[0] == pytest.approx(0.8)


def test_undefined_rates_are_nan_not_zero():
    truth = np.array([[0, 1], [0, 1]], dtype=np.uint8)  # family 0 never present, family 1 always
    pred = np.array([[0, 1], [1, 1]], dtype=np.uint8)
    c = MX.family_counts(truth=truth, pred=pred)
    tpr, fpr = MX.true_positive_rate(c), MX.false_positive_rate(c)
    assert math.isnan(tpr[0]) and tpr[1] == 1.0
    assert fpr[0] == 0.5 and math.isnan(fpr[1])
    table = MX.family_table(c, ("x", "y"))
    assert math.isnan(table["x"]["tpr"]) and table["x"]["support"] == 0
    assert table["y"]["confusion"] == [[0, 0], [0, 2]]


def test_bad_inputs_raise_our_error():
    with pytest.raises(UserError):
        MX.jaccard_accuracy(truth=TRUTH, pred=PRED[:, :2])
    with pytest.raises(UserError):
        MX.hamming_accuracy(truth=TRUTH, pred=PRED * 2)
    with pytest.raises(UserError):
        MX.exact_match_ratio(truth=TRUTH, pred=PRED[:3])


# --- solo test -------------------------------------------------------------------------------

SOLO_TRUTH = np.array([0, 0, 1, 1, 2])
SOLO_SCORES = np.array(
    [
        [0.9, 0.2, 0.1],  # a -> a
        [0.4, 0.3, 0.2],  # a -> none (nothing reaches 0.5)
        [0.6, 0.8, 0.1],  # b -> b
        [0.7, 0.55, 0.1],  # b -> a (both pass, a scores higher)
        [0.1, 0.2, 0.95],  # c -> c
    ]
)


def test_single_label_prediction_uses_argmax_among_families_that_pass():
    pred = MX.single_label_predictions(scores=SOLO_SCORES, thresholds=np.full(3, 0.5))
    np.testing.assert_array_equal(pred, [0, 3, 1, 0, 2])  # 3 = "none"
    # with b's threshold at 0.9, b's 0.8 no longer counts: note 2 goes to a (0.6 passes 0.5)
    pred = MX.single_label_predictions(scores=SOLO_SCORES, thresholds=np.array([0.5, 0.9, 0.5]))
    np.testing.assert_array_equal(pred, [0, 3, 0, 0, 2])


def test_solo_confusion_matrix_and_classification_report_by_hand():
    pred = MX.single_label_predictions(scores=SOLO_SCORES, thresholds=np.full(3, 0.5))
    cm = MX.solo_confusion_matrix(truth_index=SOLO_TRUTH, pred_index=pred, n_families=3)
    np.testing.assert_array_equal(cm, [[1, 0, 0, 1], [1, 1, 0, 0], [0, 0, 1, 0]])
    rep = MX.classification_report(cm, FAMS)
    # tp = 1, 1, 1; predicted as a/b/c = 2, 1, 1; support = 2, 2, 1
    assert rep["families"]["a"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert rep["families"]["b"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert rep["families"]["c"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1})
    assert rep["accuracy"] == pytest.approx(3 / 5)
    assert rep["macro_avg"] == pytest.approx({"precision": 2.5 / 3, "recall": 2 / 3, "f1": (0.5 + 2 / 3 + 1) / 3, "support": 5})
    assert rep["weighted_avg"] == pytest.approx({"precision": 4 / 5, "recall": 3 / 5, "f1": (1 + 4 / 3 + 1) / 5, "support": 5})
    assert rep["none"] == 1
    # a family with notes never predicted: NaN precision in its row, 0 in both averages (as
    # scikit-learn counts it), so a model that never names a family gains nothing by it
    rep = MX.classification_report(np.array([[1, 0, 0, 1], [0, 0, 0, 2], [0, 0, 1, 0]]), FAMS)
    assert np.isnan(rep["families"]["b"]["precision"])
    assert rep["macro_avg"]["precision"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert rep["weighted_avg"]["precision"] == pytest.approx((2 * 1.0 + 2 * 0.0 + 1 * 1.0) / 5)


def test_solo_confusion_matrix_rejects_out_of_range_classes():
    with pytest.raises(UserError):
        MX.solo_confusion_matrix(truth_index=[0, 3], pred_index=[0, 0], n_families=3)


# --- polyphony levels -------------------------------------------------------------------------


def test_per_level_and_overall_is_the_mean_over_levels_not_over_examples():
    # level 0: one mixture answered "nothing" (Jaccard 1); level 1: three mixtures all wrong (0)
    truth = np.array([[0, 0], [1, 0], [1, 0], [0, 1]], dtype=np.uint8)
    pred = np.array([[0, 0], [0, 1], [0, 1], [1, 0]], dtype=np.uint8)
    levels = np.array([0, 1, 1, 1])
    per = MX.per_level(levels=levels, truth=truth, pred=pred, families=("x", "y"))
    assert sorted(per) == [0, 1]
    assert per[0]["jaccard"] == 1.0 and per[0]["emr"] == 1.0 and per[0]["n"] == 1
    assert per[1]["jaccard"] == 0.0 and per[1]["hamming"] == 0.0 and per[1]["n"] == 3
    assert math.isnan(per[0]["families"]["x"]["tpr"])  # nobody plays at level 0
    assert per[1]["families"]["x"]["tpr"] == 0.0 and per[1]["families"]["x"]["fpr"] == 1.0
    assert per[1]["families"]["y"]["fpr"] == 1.0
    ov = MX.overall(per)
    assert ov["jaccard"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert MX.jaccard_accuracy(truth=truth, pred=pred) == pytest.approx(0.25)  # pooled: not what the paper reports
    assert ov["emr"] == pytest.approx(0.5) and ov["hamming"] == pytest.approx(0.5)
    fam = MX.family_overall(per, ("x", "y"))
    assert fam["x"]["tpr"] == 0.0  # level 0's undefined TPR is skipped, not counted as 0 or 1
    assert fam["x"]["accuracy"] == pytest.approx(0.5) and fam["x"]["fpr"] == pytest.approx(0.5)


def test_oracle_count_keeps_the_k_highest_scores_by_hand():
    truth = np.array([[1, 0, 0], [1, 1, 0], [0, 0, 0], [0, 1, 1]], dtype=np.uint8)
    scores = np.array([[0.2, 0.9, 0.1], [0.8, 0.1, 0.7], [0.9, 0.9, 0.9], [0.5, 0.5, 0.1]])
    got = MX.oracle_count_predictions(truth=truth, scores=scores)
    # k=1: b ranks first (wrong); k=2: a and c; k=0: nothing; k=2 with a tie a=b: the earlier family a
    np.testing.assert_array_equal(got, [[0, 1, 0], [1, 0, 1], [0, 0, 0], [1, 1, 0]])
    np.testing.assert_allclose(MX.jaccard_per_example(truth=truth, pred=got), [0, 1 / 3, 1, 1 / 3])
    with pytest.raises(UserError, match="scores have shape"):
        MX.oracle_count_predictions(truth=truth, scores=scores[:, :2])


# --- the training-time metrics (thresholds and validation scores in the manifest) ---------------


def test_threshold_calibration_and_scores():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.7, 0.6, 0.8, 0.9])
    t, metrics = MX.calibrate_threshold(y, p)
    assert 0.2 < t <= 0.6 and metrics["recall"] == 1.0 and metrics["auc"] == pytest.approx(8 / 9, abs=1e-3)
    truth = np.array([[1, 0, 0], [0, 0, 0], [1, 1, 0]], bool)
    pred = np.array([[1, 1, 0], [0, 0, 0], [1, 1, 0]], bool)
    assert MX.jaccard(truth, pred).tolist() == [0.5, 1.0, 1.0]
    s = MX.protocol_scores(truth, pred, np.array([1, 0, 2]))
    assert s["levels"][1] == {"jaccard": 0.5, "emr": 0.0} and s["jaccard"] == pytest.approx(2.5 / 3, abs=1e-4)


def test_one_standard_error_threshold_is_the_most_precise_within_the_error_of_the_best():
    # 80 windows: F0.5 is flat near its best, so a more precise threshold lies within one error of
    # it and is chosen. The same windows 100 times over: the same F0.5 at every threshold, an error
    # ten times smaller, and the rule gives the best's decisions.
    rng = np.random.default_rng(4)
    y = rng.random(80) < 0.5
    p = np.clip(0.3 * y + 0.7 * rng.random(80), 0, 1)
    t0, m0 = MX.calibrate_threshold(y, p, beta=0.5)
    assert "fbeta_best" not in m0
    t1, m1 = MX.calibrate_threshold(y, p, beta=0.5, resamples=500)
    assert m1["fbeta_best"] == {"threshold": round(t0, 4), "fbeta": m0["fbeta"]}
    assert t1 > t0 and m1["precision"] > m0["precision"] and m1["fbeta"] < m0["fbeta"]
    assert MX.calibrate_threshold(y, p, beta=0.5, resamples=500) == (t1, m1)  # seeded
    y100, p100 = np.tile(y, 100), np.tile(p, 100)
    t2, m2 = MX.calibrate_threshold(y100, p100, beta=0.5, resamples=200)
    assert m2["fbeta"] == m0["fbeta"] and np.array_equal(p100 >= t2, p100 >= t0)
    # no threshold finds a positive: nothing to improve on, the F0.5-best rule's answer
    none, metrics = MX.calibrate_threshold(np.zeros(10, bool), p[:10], beta=0.5, resamples=100)
    assert none == MX.calibrate_threshold(np.zeros(10, bool), p[:10], beta=0.5)[0] and "fbeta_best" not in metrics


def test_fbeta_from_counts_weighs_precision_by_beta():
    # precision 1/2, recall 1: F1 = 2/3, F0.5 = 1.25 * 0.5 / (0.25 * 0.5 + 1) = 5/9, F2 = 5 * 0.5 / (4 * 0.5 + 1) = 5/6
    assert MX.fbeta_from_counts(2, 2, 0, beta=1.0) == pytest.approx(2 / 3)
    assert MX.fbeta_from_counts(2, 2, 0) == pytest.approx(5 / 9)  # THRESHOLD_BETA, 0.5
    assert MX.fbeta_from_counts(2, 2, 0, beta=2.0) == pytest.approx(5 / 6)
    assert MX.fbeta_from_counts(0, 0, 0) == 0.0
    # element-wise on arrays of counts (bootstrap resamples), the same values as one by one
    many = MX.fbeta_from_counts(np.array([2, 2, 0]), np.array([2, 2, 0]), np.array([0, 1, 0]))
    assert many == pytest.approx([5 / 9, 10 / 19, 0.0]) and many.shape == (3,)


def test_validation_auc_ranks_ties_fairly():
    y = np.array([1, 0, 1, 0, 0])
    assert MX.auc(y, np.array([0.9, 0.1, 0.8, 0.2, 0.3])) == 1.0
    assert MX.auc(y, np.array([0.1, 0.9, 0.2, 0.8, 0.7])) == 0.0
    assert MX.auc(y, np.full(5, 1.0)) == 0.5  # a constant (saturated) classifier is chance, not 0
    assert MX.auc(y, np.array([0.5, 0.5, 0.9, 0.1, 0.1])) == pytest.approx((0.5 + 2 + 3) / 6)  # one tied pair counts half
    assert np.isnan(MX.auc(np.zeros(3), np.ones(3)))
