"""Codec augmentation (`tagger train --codec-prob`): training windows sent through the lossy codecs
of a music library, each window coming back where it was, and the examples it leaves alone unchanged."""

import numpy as np
import pytest

from tagger import constants as C
from tagger import features as F
from tagger.errors import UserError
from tagger.model import lossy
from tagger.model import synth as S

SR = C.SAMPLE_RATE
L = C.WINDOW_SAMPLES

pytestmark = pytest.mark.skipif(not __import__("shutil").which("ffmpeg"), reason="ffmpeg not installed")


def _windows() -> np.ndarray:
    """Five windows: decaying tones at 300, 500, 0 (silence), 900 and 1500 Hz, each starting late
    (a quiet first half-second) so that a window that came back shifted would show it."""
    t = np.arange(L) / SR
    out = np.zeros((5, L), dtype=np.float32)
    for i, f in enumerate((300, 500, 0, 900, 1500)):
        if f:
            out[i, SR // 2 :] = (0.5 * np.sin(2 * np.pi * f * t) * np.exp(-0.5 * t))[: L - SR // 2]
    return out


def _peak_hz(x: np.ndarray) -> float:
    return float(np.fft.rfftfreq(len(x), 1 / SR)[np.argmax(np.abs(np.fft.rfft(x)))])


@pytest.mark.parametrize("name", ["mp3-64k", "aac-128k", "opus-96k", "vorbis-q3"])
def test_each_window_comes_back_in_place_changed_by_the_codec_and_nothing_leaks_between_windows(name):
    codec = next(c for c in lossy.CODECS if c.name == name)
    windows = _windows()
    back = lossy.round_trip(windows, codec)
    assert back.shape == windows.shape and back.dtype == np.float32
    for i in (0, 1, 3, 4):
        assert abs(_peak_hz(back[i]) - _peak_hz(windows[i])) < 2
        # in place: the quiet first half-second stays quiet and the tone matches sample by sample
        assert np.max(np.abs(back[i, : SR // 2 - 400])) < 0.01
        corr = np.dot(back[i], windows[i]) / np.linalg.norm(back[i]) / np.linalg.norm(windows[i])
        assert corr > 0.95, (name, i, corr)
    assert np.max(np.abs(back[2])) < 0.01  # the silent window between two tones stays silent
    assert not np.array_equal(back, windows)  # and the codec did change the sound
    assert np.max(np.abs(back - windows)) > 1e-3


def test_the_delay_a_codec_adds_is_found_and_undone():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(20_000).astype(np.float32)
    late = np.concatenate([np.zeros(777, np.float32), x])
    assert lossy.delay(x, late) == 777
    assert lossy.delay(x, x) == 0


def test_augment_sends_about_its_share_through_codecs_and_leaves_the_rest_as_they_were():
    windows = np.repeat(_windows(), 8, axis=0)  # 40 windows
    out = lossy.augment(windows, np.random.default_rng(3), prob=0.5)
    changed = [not np.array_equal(a, b) for a, b in zip(out, windows) if np.any(b)]
    assert 8 <= sum(changed) <= 24  # of the 32 windows with sound
    again = lossy.augment(windows, np.random.default_rng(3), prob=0.5)
    np.testing.assert_array_equal(out, again)  # the draws are the rng's alone
    np.testing.assert_array_equal(lossy.augment(windows, np.random.default_rng(3), prob=0.0), windows)


def test_without_ffmpeg_codec_augmentation_says_what_it_needs(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(UserError, match="needs ffmpeg"):
        lossy.round_trip(_windows(), lossy.CODECS[0])


def test_training_examples_with_codecs_are_the_same_examples_and_only_a_share_is_changed(tmp_path):
    from test_chords import _pool

    from tagger.model.train import _synth_signature

    pool = _pool(tmp_path / "pool")
    fc = F.FeatureConfig()
    off_x, off_y = S.generate_chunk(str(pool.directory), seed=4, chunk=2, count=24, settings=S.SynthSettings(), feature_config=fc)
    on_x, on_y = S.generate_chunk(str(pool.directory), seed=4, chunk=2, count=24, settings=S.SynthSettings(codec_prob=0.5),
                                  feature_config=fc)  # fmt: skip
    np.testing.assert_array_equal(on_y, off_y)  # the same examples, labels unchanged
    same = [np.array_equal(a, b) for a, b in zip(on_x, off_x)]
    assert 4 <= sum(same) <= 20, sum(same)
    assert "codec_prob" not in _synth_signature(S.SynthSettings())
    assert _synth_signature(S.SynthSettings(codec_prob=0.3))["codec_prob"] == 0.3
