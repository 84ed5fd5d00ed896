"""The levers for unheard instruments: timbre augmentation (envelope morphing and frequency warping)
and supervised contrastive pretraining of the shared trunk."""

import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tagger import constants as C  # noqa: E402
from tagger.model import synth as S  # noqa: E402
from tagger.model import timbre as T  # noqa: E402

SR = C.SAMPLE_RATE
L = C.WINDOW_SAMPLES


def harmonic_tone(f0: float, *, formant: float, width: float = 0.8, seconds: float = 4.0) -> np.ndarray:
    """A harmonic tone whose partials follow a resonance at `formant` Hz (a body with one formant)."""
    t = np.arange(int(seconds * SR)) / SR
    out = np.zeros_like(t)
    for k in range(1, int(7900 / f0)):
        f = k * f0
        out += np.exp(-0.5 * (np.log2(f / formant) / width) ** 2) * np.sin(2 * np.pi * f * t)
    return (0.5 * out / np.abs(out).max()).astype(np.float32)


def band_of_peak(env: np.ndarray) -> float:
    return float(2 ** T._BAND_CENTRES[int(np.argmax(env))])


def test_an_identity_timbre_filter_changes_nothing():
    env = S.spectral_envelope(np.fft.rfft(harmonic_tone(220, formant=1000)))
    assert env.shape == T._BAND_CENTRES.shape
    np.testing.assert_allclose(S.timbre_filter(env, None, amount=0.0, warp=1.0), 1.0)
    np.testing.assert_allclose(S.timbre_filter(env, env, amount=0.7, warp=1.0), 1.0, atol=1e-6)


def test_morphing_moves_the_envelope_towards_the_other_instrument_and_keeps_the_pitch():
    low, high = harmonic_tone(220, formant=500, width=1.5), harmonic_tone(220, formant=3000, width=1.5)
    env_low, env_high = (S.spectral_envelope(np.fft.rfft(x)) for x in (low, high))
    assert band_of_peak(env_low) < 700 < 2000 < band_of_peak(env_high)
    spectrum = np.fft.rfft(low)
    gains = S.timbre_filter(env_low, env_high, amount=1.0, warp=1.0)
    assert 20 * np.log10(gains.max() / gains.min()) <= 2 * S.MAX_TIMBRE_DB + 1e-3  # limited boost and cut
    above = 2**T._BAND_CENTRES > 200  # where the tones have partials
    shape = lambda env: env[above] - env[above].mean()  # noqa: E731  (loudness aside)
    distance = lambda x: float(np.abs(shape(S.spectral_envelope(np.fft.rfft(x))) - shape(env_high)).mean())  # noqa: E731
    morphed = np.fft.irfft(spectrum * gains, n=L)
    half = np.fft.irfft(spectrum * S.timbre_filter(env_low, env_high, amount=0.5, warp=1.0), n=L)
    assert distance(morphed) < distance(half) < distance(low)
    assert distance(morphed) < 0.5 * distance(low)  # (limited by MAX_TIMBRE_DB)
    assert band_of_peak(S.spectral_envelope(np.fft.rfft(morphed))) > 2 * band_of_peak(env_low)  # the body of the other instrument
    # the partials stay where they were: the pitch is the same
    freqs = np.fft.rfftfreq(L, 1 / SR)
    strongest = np.argsort(np.abs(np.fft.rfft(morphed)))[-5:]
    assert all(abs(freqs[i] / 220 - round(freqs[i] / 220)) < 0.01 for i in strongest)


def test_warping_stretches_the_envelope_not_the_pitch():
    tone = harmonic_tone(110, formant=800)
    spectrum = np.fft.rfft(tone)
    env = S.spectral_envelope(spectrum)
    up = np.fft.irfft(spectrum * S.timbre_filter(env, None, amount=0.0, warp=2 ** (4 / 12)), n=L)
    down = np.fft.irfft(spectrum * S.timbre_filter(env, None, amount=0.0, warp=2 ** (-4 / 12)), n=L)
    centroid = lambda x: float(np.sum(np.abs(np.fft.rfft(x)) ** 2 * np.fft.rfftfreq(L, 1 / SR)) / np.sum(np.abs(np.fft.rfft(x)) ** 2))  # noqa: E731
    assert centroid(down) < centroid(tone) < centroid(up)
    fundamental = lambda x: np.fft.rfftfreq(L, 1 / SR)[np.argmax(np.abs(np.fft.rfft(x))[: int(150 * L / SR)])]  # noqa: E731
    assert fundamental(up) == fundamental(tone) == fundamental(down) == pytest.approx(110, abs=0.5)


def _pool(tmp_path, families=("flute", "organ")):
    """A note pool of two families, two instruments each (formant 600 or 2500 Hz), plus noise negatives."""
    import json

    clips, fam, inst = [], [], []
    for fi, _ in enumerate(families):
        for ii, formant in enumerate((600, 2500)):
            for f0 in (196, 262, 330, 440):
                clips.append(harmonic_tone(f0 * (1 + fi), formant=formant * (1 + 0.3 * fi)))
                fam.append(fi)
                inst.append(2 * fi + ii)
    rng = np.random.default_rng(0)
    for _ in range(3):
        clips.append((rng.standard_normal(L) * 0.1).astype(np.float32))
        fam.append(-1)
        inst.append(4)
    tmp_path.mkdir(parents=True, exist_ok=True)
    np.save(tmp_path / "audio.npy", (np.stack(clips) * 32767).astype(np.int16))
    meta = {"families": list(families), "family": fam, "instrument": inst, "is_drum": [False] * len(fam),
            "instrument_names": [f"i{i}" for i in range(5)], "notes": [str(i) for i in range(len(fam))]}  # fmt: skip
    (tmp_path / "pool.json").write_text(json.dumps(meta))
    return S.NotePool(tmp_path)


def test_timbre_augmented_mixtures_keep_their_labels_and_are_deterministic(tmp_path):
    from tagger.model import architectures as A

    pool = _pool(tmp_path / "pool")
    plain = S.SynthSettings()
    timbre = S.SynthSettings(morph_prob=1.0, warp_prob=1.0)
    rng = np.random.default_rng(3)
    envelopes = T._Envelopes(pool)
    for _ in range(10):
        audio, label = S.mixture_example(pool, rng, timbre, instruments={0: 0, 1: 3}, envelopes=envelopes)
        assert label.tolist() == [1, 1] and np.isfinite(audio).all() and 0 < np.abs(audio).max() <= 1.0
    fcfg = A.feature_config("trunk")
    a = S.generate_chunk(str(pool.directory), seed=1, chunk=0, count=12, settings=timbre, feature_config=fcfg)
    b = S.generate_chunk(str(pool.directory), seed=1, chunk=0, count=12, settings=timbre, feature_config=fcfg)
    c = S.generate_chunk(str(pool.directory), seed=1, chunk=0, count=12, settings=plain, feature_config=fcfg)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    # the augmentation itself changes an instrument's sound, by a bounded gain at every frequency
    clip = pool.clip(0)
    for seed in range(3):
        changed = T._timbre(clip, pool, 0, 0, np.random.default_rng(seed), S.SynthSettings(morph_prob=1.0, warp_prob=1.0), envelopes)
        assert not np.allclose(changed, clip, atol=1e-3) and np.abs(changed).max() == pytest.approx(np.abs(clip).max(), rel=1e-4)
    untouched = T._timbre(clip, pool, 0, 0, np.random.default_rng(0), S.SynthSettings(), envelopes)
    assert untouched is clip  # off: the entry is returned as it was
    # an instrument's envelope is morphed towards another of the same family, never of another family
    fresh = T._Envelopes(pool)
    for seed in range(5):
        T._timbre(pool.clip(0), pool, 0, 0, np.random.default_rng(seed), S.SynthSettings(morph_prob=1.0), fresh)
    assert set(fresh.cache) == {1}  # the only other flute instrument


def test_supcon_loss_is_low_when_instruments_cluster_and_high_when_they_mix():
    from keras import ops

    from tagger.model.pretrain import supcon_loss

    ids = np.repeat(np.arange(4), 4).astype(np.int32)
    centres = np.eye(8, dtype=np.float32)[:4]
    clustered = centres[ids] + 0.01 * np.random.default_rng(0).standard_normal((16, 8)).astype(np.float32)
    clustered /= np.linalg.norm(clustered, axis=1, keepdims=True)
    mixed = np.random.default_rng(1).standard_normal((16, 8)).astype(np.float32)
    mixed /= np.linalg.norm(mixed, axis=1, keepdims=True)
    good = float(ops.convert_to_numpy(supcon_loss(ops.convert_to_tensor(clustered), ops.convert_to_tensor(ids), 0.1)))
    bad = float(ops.convert_to_numpy(supcon_loss(ops.convert_to_tensor(mixed), ops.convert_to_tensor(ids), 0.1)))
    # perfect clusters: each anchor's 3 positives share the probability mass, log(3) is the floor
    assert good == pytest.approx(np.log(3), abs=0.05) and bad > good + 1.0


def test_contrastive_batches_hold_several_notes_of_distinct_instruments():
    from tagger.model.pretrain import PretrainSettings, batches

    instrument = np.array([0] * 5 + [1] * 3 + [2] * 1 + [3] * 4)
    gen = batches(instrument, PretrainSettings(instruments_per_batch=3, per_instrument=2))
    for _ in range(20):
        idx, ids = next(gen)
        assert len(idx) == 6 and (instrument[idx] == ids).all()
        assert len(set(ids.tolist())) == 3 and 2 not in ids  # one note alone has no positive


@pytest.mark.model
def test_contrastive_pretraining_separates_instruments_the_trunk_then_trains_on(tmp_path, monkeypatch):
    from tagger.model import architectures as A
    from tagger.model.pretrain import PretrainSettings, pretrained_trunk

    pool = _pool(tmp_path / "pool")
    fcfg = A.feature_config("trunk")
    settings = PretrainSettings(steps=150, instruments_per_batch=5, per_instrument=3, learning_rate=3e-3)
    seen = []
    say = lambda stage, info: seen.append((stage, info))  # noqa: E731
    small = lambda: A.build_trunk(fcfg.shape, filters=(8, 16, 32))  # noqa: E731
    trunk = pretrained_trunk(small, pool.directory, tmp_path / "cache", settings, fcfg, say=say)
    losses = np.array(__import__("json").loads((tmp_path / "cache" / "losses.json").read_text()))
    assert len(losses) == 150 and losses[-10:].mean() < losses[:10].mean()
    feats = np.load(tmp_path / "cache" / "notes_x.npy").astype(np.float32)
    # a second call reuses the pretrained weights instead of training again
    seen.clear()
    again = pretrained_trunk(small, pool.directory, tmp_path / "cache", settings, fcfg, say=say)
    assert seen == [("pretrain", {"reused": str(tmp_path / "cache" / "trunk.weights.h5")})]
    np.testing.assert_allclose(np.asarray(again(feats[:3], training=False)), np.asarray(trunk(feats[:3], training=False)), atol=1e-5)
    # the embedding puts notes of one instrument closer together than notes of different instruments
    same = pool.instrument[:, None] == pool.instrument[None, :]
    off = ~np.eye(len(feats), dtype=bool)

    def gap(model) -> float:
        # normalised over this batch of notes (BatchNorm's running averages are young after 150 steps)
        z = np.array(model(feats, training=True))
        z -= z.mean(axis=0)  # cosine similarity around the centre of the embeddings
        z /= np.linalg.norm(z, axis=1, keepdims=True) + 1e-9
        sim = z @ z.T
        return float(sim[same & off].mean() - sim[~same].mean())

    assert gap(trunk) > gap(small()) + 0.2  # far more than an untrained trunk


def test_timbre_augmentation_changes_the_example_signature_only_when_on():
    from dataclasses import asdict

    from tagger.model.train import _synth_signature

    off = _synth_signature(S.SynthSettings())
    assert not set(S.TIMBRE_SETTINGS) & set(off)  # examples cached before the augmentation existed are reused
    assert off == {k: v for k, v in asdict(S.SynthSettings()).items() if k not in S.TIMBRE_SETTINGS + S.CHORD_SETTINGS + S.DRUM_SETTINGS + S.SECTION_SETTINGS + S.CODEC_SETTINGS + S.MASTER_SETTINGS}
    on = _synth_signature(S.SynthSettings(morph_prob=0.5))
    assert on["morph_prob"] == 0.5 and on["warp_prob"] == 0.0 and set(S.TIMBRE_SETTINGS) <= set(on)


def test_the_instrument_share_ablation_keeps_a_share_of_every_family():
    from pathlib import Path

    from tagger.data.nsynth import Note, NoteDataset
    from tagger.model.train import _instrument_share

    def note(family, inst, pitch):
        return Note(f"{inst}-{pitch:03d}-100", pitch, 100, family, "acoustic", inst, Path("x.wav"), inst)

    notes = [note("flute", f"flute{i}", p) for i in range(10) for p in (60, 62)]
    notes += [note("vocal", "vocal0", 60)]
    drums = [note("percussion", "kit0", 36)]
    ds = NoteDataset(Path("."), notes, drums)
    half = _instrument_share(ds, 0.5, seed=0)
    kept = {n.instrument for n in half.notes}
    assert len(kept - {"vocal0"}) == 5 and "vocal0" in kept  # a family with one instrument keeps it
    assert all(sum(n.instrument == i for n in half.notes) == 2 for i in kept - {"vocal0"})  # whole instruments
    assert half.negatives == drums
    assert {n.instrument for n in _instrument_share(ds, 0.5, seed=0).notes} == kept  # seeded
    assert {n.instrument for n in _instrument_share(ds, 0.5, seed=1).notes} != kept


def test_spectrogram_masks_silence_whole_bands_and_stretches_and_nothing_else():
    from tagger.model.train import spec_mask

    x = np.random.default_rng(0).uniform(0.2, 1.0, size=(200, 64, 126)).astype(np.float32)
    before = x.copy()
    assert spec_mask(x, np.random.default_rng(1), prob=0.5, max_bins=8, max_frames=12) is x
    masked = [i for i in range(len(x)) if (x[i] == 0).any()]
    assert 70 < len(masked) < 130  # about half the examples
    for i in range(len(x)):
        zero = x[i] == 0
        # what is not masked is untouched
        np.testing.assert_array_equal(x[i][~zero], before[i][~zero])
        if i not in masked:
            continue
        bins = np.flatnonzero(zero.all(axis=1))  # whole frequency bands
        frames = np.flatnonzero(zero.all(axis=0))  # whole time stretches
        assert 1 <= len(bins) <= 16 and 1 <= len(frames) <= 24
        # every zero lies in a masked band or stretch
        assert not (zero & ~np.isin(np.arange(64), bins)[:, None] & ~np.isin(np.arange(126), frames)[None, :]).any()
    untouched = before.copy()
    spec_mask(untouched, np.random.default_rng(1), prob=0.0)
    np.testing.assert_array_equal(untouched, before)


def test_mel_shift_moves_the_envelope_and_repeats_the_edge_band():
    from tagger.model.train import shift_mel

    spec = np.zeros((1, 6, 3), np.float32)
    spec[0, 2], spec[0, 0], spec[0, 5] = 1.0, 0.25, 0.5
    up, down = shift_mel(spec, 1)[0], shift_mel(spec, -2)[0]
    assert up[3].tolist() == [1.0] * 3 and up[0].tolist() == up[1].tolist() == [0.25] * 3  # the edge band repeated
    assert down[0].tolist() == [1.0] * 3 and down[4].tolist() == down[5].tolist() == [0.5] * 3
    same = shift_mel(spec, 0)
    np.testing.assert_array_equal(same, spec)
    assert same is not spec  # a copy: the caller's batch is never changed behind its back


def test_shift_augmentation_shifts_about_its_share_by_one_to_max_bands_each_way():
    from tagger.model.train import shift_mel, spec_shift

    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, size=(400, 64, 20)).astype(np.float32)
    before = x.copy()
    assert spec_shift(x, np.random.default_rng(1), prob=0.5, max_bands=2) is x
    seen = []
    for i in range(len(x)):
        if np.array_equal(x[i], before[i]):
            continue
        match = [k for k in (-2, -1, 1, 2) if np.array_equal(x[i], shift_mel(before[i : i + 1], k)[0])]
        assert len(match) == 1, i  # every changed example is exactly one shift of its own spectrogram
        seen.append(match[0])
    assert 160 < len(seen) < 240  # about half
    assert set(seen) == {-2, -1, 1, 2}  # both directions, every size up to max_bands
    untouched = before.copy()
    spec_shift(untouched, np.random.default_rng(1), prob=0.0, max_bands=2)
    np.testing.assert_array_equal(untouched, before)


@pytest.mark.model
def test_blur_pooling_moves_smoothly_when_a_band_moves_by_one():
    # One bright band at row 5, then at row 6: a 2x2 max-pool maps rows 4-5 and 6-7 to different
    # output rows, so the one-band move empties one output row and fills the next (all or nothing);
    # the anti-aliased pool keeps most of what it had (and sums the same over the map).
    keras = pytest.importorskip("keras")
    from tagger.model.architectures import downsample

    def pooled(pooling: str, row: int) -> np.ndarray:
        x = np.zeros((1, 16, 8, 1), np.float32)
        x[0, row, 2:6, 0] = 1.0
        inp = keras.Input(shape=(16, 8, 1))
        return np.asarray(keras.Model(inp, downsample(inp, pooling))(x))[0, :, :, 0]

    for pooling in ("max", "blur"):
        a, b = pooled(pooling, 5), pooled(pooling, 6)
        assert a.shape == b.shape == (8, 4)  # both halve the map
        overlap = float(np.minimum(a, b).sum() / a.sum())
        if pooling == "max":
            assert overlap == 0.0
        else:
            assert overlap > 0.4
            assert abs(a.sum() - b.sum()) / a.sum() < 0.01
    with pytest.raises(ValueError, match="unknown pooling"):
        downsample(keras.Input(shape=(4, 4, 1)), "median")
