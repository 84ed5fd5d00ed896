import numpy as np
import pytest

from tagger.aggregate import aggregate

FAMS = ("bass", "flute")
TH = np.array([0.5, 0.5], np.float32)


def run(probs, silent=None, **kw):
    probs = np.asarray(probs, np.float32)
    silent = np.zeros(len(probs), bool) if silent is None else np.asarray(silent)
    return aggregate(probs, silent, np.arange(len(probs)) * 4.0, families=FAMS, thresholds=TH, **kw)


def test_quantile_score_coverage_and_segments():
    probs = [[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.7, 0.1], [0.2, 0.1]]
    r = run(probs, quantile=0.5, min_windows=2, duration=19.0)
    bass, flute = r.results
    assert bass.present and bass.score == pytest.approx(0.7) and bass.coverage == pytest.approx(0.6)
    assert bass.segments == [(0.0, 16.0)]  # windows 0,1 and 3: a one-window gap is bridged
    assert not flute.present and flute.coverage == pytest.approx(0.2)  # one window only: not enough
    assert r.instruments == ["bass"]


def test_min_windows_is_capped_for_short_tracks():
    one = run([[0.95, 0.1]], quantile=0.7, min_windows=2)
    assert one.instruments == ["bass"]
    two = run([[0.95, 0.1], [0.1, 0.1]], quantile=1.0, min_windows=2)
    assert two.instruments == []


def test_silent_windows_are_ignored_and_silence_has_no_instruments():
    r = run([[0.9, 0.9], [0.1, 0.1]], silent=[True, False], quantile=1.0)
    assert r.instruments == [] and r.silent_windows == 1 and r.windows == 2
    quiet = run([[0.9, 0.9]], silent=[True])
    assert quiet.instruments == [] and all(x.score == 0 for x in quiet.results)


def test_the_track_rule_is_chosen_for_precision_not_jaccard():
    """Three tracks of bass; two also have a flute in one window, the third one spurious flute window
    as loud: a rule that tags the two flutes tags the wrong one too. Jaccard prefers tagging (5 right,
    1 wrong: 0.833 against 0.667); F0.5, the tagger's rule (a wrong tag is worse than a missing one),
    prefers none (0.882 against 0.862)."""
    from tagger.model.calibrate import choose_aggregation, track_figures

    windows = np.array([[0.9, 0.1], [0.9, 0.1], [0.9, 0.1], [0.9, 0.7]], np.float32)
    scored = [(windows, np.array([True, False])), (windows, np.array([True, True])), (windows, np.array([True, True]))]
    best, grid = choose_aggregation(scored, families=FAMS, thresholds=TH)
    assert (best["precision"], best["recall"], best["wrong_per_track"]) == (1.0, 0.6, 0.0)
    assert best["fbeta"] == pytest.approx(0.8824, abs=1e-4) and best["jaccard"] == pytest.approx(0.6667, abs=1e-4)
    by_jaccard = max(grid, key=lambda g: g["jaccard"])
    assert (by_jaccard["precision"], by_jaccard["recall"]) == (pytest.approx(5 / 6, abs=1e-4), 1.0)
    assert by_jaccard["jaccard"] == pytest.approx(0.8333, abs=1e-4) and by_jaccard["fbeta"] < best["fbeta"]
    # the quantile decides: the flute's fourth window counts from the 0.9 quantile up
    assert track_figures(scored, families=FAMS, thresholds=TH, quantile=0.85, min_windows=1)["recall"] == 0.6
    assert track_figures(scored, families=FAMS, thresholds=TH, quantile=0.9, min_windows=1)["recall"] == 1.0


def _lone_flute_tracks(scale: int):
    """Tracks of bass; in 6 of every 40 the flute scores 0.6 in one window of ten (only the rule
    quantile 1.0, min_windows 1 tags it): 5 of the 6 have a flute, one has none."""
    lone = np.array([[0.9, 0.6]] + [[0.9, 0.0]] * 9, np.float32)
    plain = np.array([[0.9, 0.0]] * 10, np.float32)
    return ([(plain, np.array([True, False]))] * (34 * scale) + [(lone, np.array([True, True]))] * (5 * scale)
            + [(lone, np.array([True, False]))] * scale)  # fmt: skip


def test_the_track_rule_takes_the_most_precise_rule_within_one_standard_error():
    """Tagging the lone flutes gains F0.5 (0.9825 against 0.9756: 5 found for 1 wrong) at the cost of
    precision (0.978 against 1). On 40 tracks that gain is within one bootstrap standard error
    (0.019) of chance, and the precise rule is chosen; on 400 tracks with the same shares the error
    shrinks (0.0065) and the F0.5-best rule is chosen."""
    from tagger.model.calibrate import choose_aggregation

    few, grid = choose_aggregation(_lone_flute_tracks(1), families=FAMS, thresholds=TH)
    assert (few["precision"], few["fbeta"], few["wrong_per_track"]) == (1.0, pytest.approx(0.9756, abs=1e-4), 0.0)
    best = few["fbeta_best"]
    assert (best["quantile"], best["min_windows"], best["fbeta"]) == (1.0, 1, pytest.approx(0.9825, abs=1e-4))
    assert best["precision"] == pytest.approx(45 / 46, abs=1e-4) and best["se_from_best"] == 0
    assert few["qualifies"] and few["se_from_best"] == pytest.approx(0.019, abs=0.004)
    assert all(g["qualifies"] for g in grid)  # every other rule tags no flute: the same figures as `few`

    many, grid = choose_aggregation(_lone_flute_tracks(10), families=FAMS, thresholds=TH)
    assert (many["quantile"], many["min_windows"], many["fbeta"]) == (1.0, 1, pytest.approx(0.9825, abs=1e-4))
    assert [g["qualifies"] for g in grid].count(True) == 1
    assert max(g["se_from_best"] for g in grid) == pytest.approx(0.0065, abs=0.002)

    # without resampling, the F0.5-best rule itself, as before 2026-12-05
    plain, _ = choose_aggregation(_lone_flute_tracks(1), families=FAMS, thresholds=TH, resamples=0)
    assert (plain["quantile"], plain["min_windows"], plain["fbeta"]) == (1.0, 1, pytest.approx(0.9825, abs=1e-4))
