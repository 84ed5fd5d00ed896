"""Loud-mastering augmentation (`tagger train --master-prob`): training windows raised and clipped or
limited into full scale, seeded, at about the asked share, their labels unchanged, and the examples
and the example cache it leaves alone exactly those made before it existed."""

import numpy as np
import pytest

from tagger import constants as C
from tagger import features as F
from tagger.model import mastering as M
from tagger.model import synth as S

SR = C.SAMPLE_RATE
L = C.WINDOW_SAMPLES


def _windows() -> np.ndarray:
    """Eight windows: decaying tones at 0.05 to 0.9 peak (one silent), the kind of example a mixture
    ends as, with a little noise."""
    t = np.arange(L) / SR
    noise = np.random.default_rng(0).standard_normal(L).astype(np.float32) * 1e-3
    out = np.zeros((8, L), dtype=np.float32)
    for i, (f, peak) in enumerate(((220, 0.9), (330, 0.5), (0, 0.0), (440, 0.2), (660, 0.05), (880, 0.7), (990, 0.3), (1200, 0.6))):
        if f:
            out[i] = peak * np.sin(2 * np.pi * f * t) * np.exp(-t) + noise
    return out


def test_the_peak_limiter_follows_each_peak_at_once_and_releases_exponentially():
    rng = np.random.default_rng(1)
    x = (rng.uniform(-1, 1, 4000) * np.repeat([0.3, 4.0, 0.3, 2.0], 1000)).astype(np.float32)
    release = 0.05
    a, e, env = np.exp(-1 / (release * SR)), 0.0, np.zeros(len(x))
    for n, v in enumerate(np.abs(x.astype(np.float64))):  # the envelope sample by sample
        e = max(v, e * a)
        env[n] = e
    got = M.peak_limit(x, release_s=release)
    assert got.dtype == np.float32 and got.shape == x.shape
    np.testing.assert_allclose(got, x / np.maximum(env, 1.0), rtol=1e-6, atol=1e-7)
    assert np.max(np.abs(got)) <= 1.0 and np.max(np.abs(got)) > 0.99  # the loudest peak lands on full scale
    np.testing.assert_array_equal(got[:1000], x[:1000])  # under full scale: untouched
    # a quiet stretch right after the loud one is turned down with it (no look-ahead, a release)
    assert np.mean(np.abs(got[2000:2100])) < 0.5 * np.mean(np.abs(x[2000:2100]))
    # every kind keeps a louder window in full scale; the clip and tanh are `scripts/clipping.py`'s
    for kind in M.KINDS:
        y = M.master(x, kind, 18.0)
        assert np.max(np.abs(y)) <= 1.0 and y.dtype == np.float32
    np.testing.assert_array_equal(M.master(x, "clip", 6), np.clip(x * np.float32(10 ** (6 / 20)), -1, 1))
    np.testing.assert_array_equal(M.master(x, "tanh", 6), np.tanh(x * np.float32(10 ** (6 / 20))))
    assert M.master(x, None, 12) is x
    with pytest.raises(ValueError, match="unknown mastering"):
        M.master(x, "fuzz", 6)


def test_augment_masters_about_its_share_in_full_scale_and_is_the_rng_s_alone():
    windows = np.tile(_windows(), (10, 1))  # 80 windows, 70 with sound
    out = M.augment(windows, np.random.default_rng(3), prob=0.5)
    assert out.dtype == np.float32 and out.shape == windows.shape
    changed = np.array([not np.array_equal(a, b) for a, b in zip(out, windows)])
    assert 22 <= changed.sum() <= 48, changed.sum()
    assert not changed[2::8].any()  # silent windows stay silent
    assert np.max(np.abs(out)) <= 1.0
    for a, b in zip(out[changed], windows[changed]):  # louder: at least 3 dB over a -1 dBFS peak, then squeezed
        assert np.max(np.abs(a)) > 0.8  # (tanh of +3 dB over -1 dBFS: 0.85)
        assert np.sqrt(np.mean(a**2)) > 1.2 * np.sqrt(np.mean(b**2)) * 10 ** (-1 / 20) / np.max(np.abs(b))
    np.testing.assert_array_equal(out, M.augment(windows, np.random.default_rng(3), prob=0.5))
    assert not np.array_equal(out, M.augment(windows, np.random.default_rng(4), prob=0.5))
    np.testing.assert_array_equal(M.augment(windows, np.random.default_rng(3), prob=0.0), windows)
    assert (np.array([not np.array_equal(a, b) for a, b in zip(M.augment(windows, np.random.default_rng(5), prob=1.0), windows)])
            == np.any(windows != 0, axis=1)).all()  # fmt: skip


def test_training_examples_mastered_loud_are_the_same_examples_and_only_a_share_is_changed(tmp_path):
    from test_chords import _pool

    pool = _pool(tmp_path / "pool")
    fc = F.FeatureConfig()
    off_x, off_y = S.generate_chunk(str(pool.directory), seed=4, chunk=2, count=24, settings=S.SynthSettings(), feature_config=fc)
    zero_x, zero_y = S.generate_chunk(str(pool.directory), seed=4, chunk=2, count=24, settings=S.SynthSettings(master_prob=0.0),
                                      feature_config=fc)  # fmt: skip
    np.testing.assert_array_equal(zero_x, off_x)  # off: the very examples made before it existed
    np.testing.assert_array_equal(zero_y, off_y)
    on_x, on_y = S.generate_chunk(str(pool.directory), seed=4, chunk=2, count=24, settings=S.SynthSettings(master_prob=0.5),
                                  feature_config=fc)  # fmt: skip
    np.testing.assert_array_equal(on_y, off_y)  # the same examples, labels unchanged
    same = [np.array_equal(a, b) for a, b in zip(on_x, off_x)]
    assert 4 <= sum(same) <= 20, sum(same)
    again, _ = S.generate_chunk(str(pool.directory), seed=4, chunk=2, count=24, settings=S.SynthSettings(master_prob=0.5),
                                feature_config=fc)  # fmt: skip
    np.testing.assert_array_equal(again, on_x)


def test_the_example_cache_of_a_run_without_loud_masters_is_the_one_made_before_they_existed():
    from tagger.model.examples import _signature, _synth_signature

    weights = (0.6, 2, 1.8, 1.5, 1.2, 1, 0.8, 0.6, 0.5, 0.4, 0.3)
    # the signatures these settings had before `master_prob` existed (e586ad4): caches stay valid
    before = {S.SynthSettings(): "08b986035510db68", S.SynthSettings(recipe="solo"): "2c1db3fa763892ba",
              S.SynthSettings(level_weights=weights, drum_prob=0.2): "f3bfdccf9767699c",
              S.SynthSettings(level_weights=weights, drum_prob=0.2, section_prob=0.3): "4df24900f9a5e0ad",
              S.SynthSettings(level_weights=weights, drum_prob=0.2, codec_prob=0.3): "f3d918316b773444"}  # fmt: skip
    assert {s: _signature(_synth_signature(s)) for s in before} == before
    assert "master_prob" not in _synth_signature(S.SynthSettings())
    on = S.SynthSettings(level_weights=weights, drum_prob=0.2, master_prob=0.3)
    assert _synth_signature(on)["master_prob"] == 0.3
    assert _signature(_synth_signature(on)) != before[S.SynthSettings(level_weights=weights, drum_prob=0.2)]
    assert _signature(_synth_signature(on)) != _signature(_synth_signature(S.SynthSettings(level_weights=weights, drum_prob=0.2,
                                                                                            master_prob=0.5)))  # fmt: skip
    assert S.settings_dict(on)["master_prob"] == 0.3  # what the manifest records (`data.synth`)


def test_train_master_prob_reaches_the_synthesis_settings(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import sys
    import types

    import tagger.cli.train
    from tagger.cli import app
    from tagger.errors import UserError
    from tagger.model.settings import TrainSettings

    seen = []

    def fake_train_ensemble(data, out, *, synth, **kwargs):
        seen.append(synth)
        raise UserError("stopped before training")

    # (the training module and the training settings' checks import TensorFlow: not what this is about)
    monkeypatch.setitem(sys.modules, "tagger.model.train", types.SimpleNamespace(train_ensemble=fake_train_ensemble))
    monkeypatch.setattr(tagger.cli.train, "_train_settings", lambda out, **flags: TrainSettings())
    monkeypatch.setattr(tagger.cli.train, "quiet_tensorflow", lambda: None)
    args = ["train", "--data", str(tmp_path), "--out", str(tmp_path / "m"), "--architecture", "trunk"]
    res = CliRunner().invoke(app, [*args, "--master-prob", "0.3", "--drum-prob", "0.2"])
    assert "stopped before training" in res.output, res.output
    assert seen[-1].master_prob == 0.3 and seen[-1].drum_prob == 0.2 and seen[-1].codec_prob == 0.0
    CliRunner().invoke(app, args)
    assert seen[-1] == S.SynthSettings()  # off by default: the shipped recipe's examples
    res = CliRunner().invoke(app, [*args, "--master-prob", "1.5"])
    assert res.exit_code == 2 and len(seen) == 2  # a chance over 1 is refused before anything runs
