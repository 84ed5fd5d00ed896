import librosa
import numpy as np
import pytest

from tagger import constants as C
from tagger import features as F

from conftest import tone_signal


def test_paper_stft_shape_and_peak_bin():
    x = tone_signal([1000.0], seconds=4.0)
    db = F.stft_db(windows=x)
    assert db.shape == (1, 1025, 126) and db.dtype == np.float32
    assert int(np.argmax(db[0, :, 60])) == round(1000 * C.N_FFT / C.SAMPLE_RATE)  # bin 128


def test_power_matches_librosa():
    x = np.random.default_rng(1).standard_normal((2, 64_000)).astype(np.float32) * 0.1
    ref = np.abs(librosa.stft(x, n_fft=2048, hop_length=512)) ** 2
    np.testing.assert_allclose(F.power_spectrogram(windows=x), ref, rtol=1e-3, atol=1e-3 * ref.max())


def test_logmel_default_bands_and_chirp_rises():
    t = np.arange(64_000) / C.SAMPLE_RATE
    chirp = (0.3 * np.sin(2 * np.pi * (200 * t + (4000 - 200) / (2 * 4.0) * t**2))).astype(np.float32)
    mel = F.logmel_db(windows=chirp)
    assert mel.shape == (1, C.N_MELS, 126)
    peaks = mel[0].argmax(axis=0)[5:-5]
    assert np.all(np.diff(peaks) >= 0) and peaks[-1] > peaks[0] + 40


def test_normalised_features_are_level_invariant_and_in_range():
    cfg = F.FeatureConfig(kind="logmel", n_mels=64)
    x = tone_signal([220.0, 660.0], seconds=4.0) + 0.01 * np.random.default_rng(0).standard_normal(64_000).astype(np.float32)
    a = F.compute(windows=x, config=cfg)
    b = F.compute(windows=0.05 * x, config=cfg)
    assert a.shape == (1, 64, 126) and a.dtype == np.float32
    assert a.min() >= 0 and a.max() == 1.0
    np.testing.assert_allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("kind", ["logmel", "stft"])
def test_windows_of_huge_samples_give_the_same_features(kind):
    """Up to float32's largest values (a float file of 1e30 samples), where the power overflows."""
    cfg = F.FeatureConfig(kind=kind, n_mels=64)
    x = tone_signal([220.0, 660.0], seconds=4.0) + 0.01 * np.random.default_rng(0).standard_normal(64_000).astype(np.float32)
    batch = np.stack([x, x * np.float32(1e30), x / np.abs(x).max() * np.float32(3e38)])
    out = F.compute(windows=batch, config=cfg)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[1:], np.broadcast_to(out[0], out[1:].shape), atol=1e-4)
    # (the window alone as in the batch: equal but for float32 rounding, which the FFT's batch and
    # single paths may do differently; exact equality failed once in a full run: 153 values 1 ulp apart)
    np.testing.assert_allclose(out[0], F.compute(windows=x, config=cfg)[0], rtol=1e-6, atol=1e-6)


def test_batches_equal_single_windows():
    cfg = F.FeatureConfig(kind="stft")
    x = np.random.default_rng(2).standard_normal((3, 64_000)).astype(np.float32)
    batch = F.compute(windows=x, config=cfg)
    assert batch.shape == (3, 1025, 126)
    np.testing.assert_allclose(batch[1], F.compute(windows=x[1], config=cfg)[0], atol=1e-6)


def test_spectral_gain_changes_only_weighted_bins():
    cfg = F.FeatureConfig(kind="stft")
    x = tone_signal([500.0, 3000.0], seconds=4.0)
    gain = np.ones((1, 1025), np.float32)
    gain[0, 300:] = 0.01  # -20 dB above ~2.3 kHz
    plain, eq = F.compute(windows=x, config=cfg), F.compute(windows=x, config=cfg, spectral_gain=gain)
    hi = round(3000 * 2048 / 16000)
    lo = round(500 * 2048 / 16000)
    assert abs(plain[0, lo, 60] - eq[0, lo, 60]) < 1e-5
    assert plain[0, hi, 60] - eq[0, hi, 60] == pytest.approx(20 / C.TOP_DB, abs=0.01)


def test_shapes_from_config_and_bad_input():
    assert F.FeatureConfig(kind="stft").shape == (1025, 126)
    assert F.FeatureConfig(kind="logmel", n_mels=96).shape == (96, 126)
    with pytest.raises(ValueError):
        F.compute(windows=np.zeros((1, 1000), np.float32), config=F.FeatureConfig())
    with pytest.raises(ValueError):
        F.compute(windows=np.zeros((1, 64_000), np.float32), config=F.FeatureConfig(kind="cqt"))


def _clicks(seconds: float = 4.0, every: float = 0.25, seed: int = 0) -> np.ndarray:
    """Broadband noise bursts (5 ms decay) every `every` seconds: a stand-in for drum hits."""
    y = np.zeros(int(seconds * C.SAMPLE_RATE), np.float32)
    rng = np.random.default_rng(seed)
    burst = 0.5 * np.exp(-np.arange(400) / 80)
    for k in range(0, len(y), int(every * C.SAMPLE_RATE)):
        n = min(400, len(y) - k)
        y[k : k + n] += (rng.standard_normal(n) * burst[:n]).astype(np.float32)
    return y


def test_harmonic_mask_keeps_sustained_partials_and_damps_clicks():
    cfg = F.FeatureConfig(kind="logmel", n_mels=64)
    power = np.einsum("mf,nft->nmt", F.mel_filterbank(sample_rate=C.SAMPLE_RATE, n_fft=C.N_FFT, n_mels=64, fmin=F.FMIN),
                      F.power_spectrogram(windows=np.stack([tone_signal([440.0], seconds=4.0), _clicks()])))  # fmt: skip
    mask = F.harmonic_mask(power=power)
    assert mask.shape == power.shape and mask.min() >= 0 and mask.max() <= 1
    band = int(power[0, :, 60].argmax())  # the tone's band
    assert mask[0, band, 10:-10].min() > 0.9
    hits = power[1].sum(axis=0) > np.median(power[1].sum(axis=0)) * 10  # the frames of the bursts
    assert hits.sum() >= 8 and np.median(mask[1][:, hits]) < 0.2
    assert cfg.to_dict() == F.FeatureConfig(kind="logmel", n_mels=64, harmonic=False).to_dict()
    with pytest.raises(ValueError):
        F.harmonic_mask(power=power[0])


def test_the_harmonic_front_end_hears_a_tone_through_drum_hits():
    full = F.FeatureConfig(kind="logmel", n_mels=64)
    harmonic = F.FeatureConfig(kind="logmel", n_mels=64, harmonic=True)
    tone, both = tone_signal([220.0, 440.0, 660.0], seconds=4.0), tone_signal([220.0, 440.0, 660.0], seconds=4.0) + _clicks()

    def distance(cfg):
        a, b = F.compute(windows=tone, config=cfg), F.compute(windows=both, config=cfg)
        assert a.shape == (1, 64, 126) and a.min() >= 0 and a.max() == 1.0
        return float(np.abs(a - b).mean())

    assert distance(full) > 0.1  # the hits fill the spectrogram
    assert distance(harmonic) < 0.3 * distance(full)


def test_feature_config_records_harmonic_only_when_set():
    plain = F.FeatureConfig(kind="logmel", n_mels=64)
    assert "harmonic" not in plain.to_dict()  # (records made before the option read back the same)
    assert F.FeatureConfig.from_dict(plain.to_dict()) == plain and not F.FeatureConfig.from_dict(plain.to_dict()).harmonic
    on = F.FeatureConfig(kind="logmel", n_mels=64, harmonic=True)
    assert on.to_dict()["harmonic"] is True and F.FeatureConfig.from_dict(on.to_dict()) == on


def test_the_running_median_is_scipys_median_filter():
    from scipy.ndimage import median_filter

    x = (np.random.default_rng(3).random((2, 64, 126)) ** 6 * 1e3).astype(np.float32)
    for axis, size in ((2, 9), (1, 9), (2, 3)):
        shape = [1, 1, 1]
        shape[axis] = size
        np.testing.assert_array_equal(F._running_median(x, size=size, axis=axis), median_filter(x, size=shape, mode="reflect"))
