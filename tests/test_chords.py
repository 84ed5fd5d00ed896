"""Chords and sections in training mixtures (`tagger train --chord-prob`, `--section-prob`): several
notes of one instrument at once, or several players of one family on one note, labelled as that one
family, and the script that measures how models hear chords."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from tagger import constants as C
from tagger.model import synth as S

SR = C.SAMPLE_RATE
L = C.WINDOW_SAMPLES
PITCHES = (48, 50, 52, 55, 57, 60, 64, 67, 72)


def midi_hz(pitch: int) -> float:
    return 440.0 * 2 ** ((pitch - 69) / 12)


def _pool(folder: Path, *, with_pitch_key: bool = True) -> S.NotePool:
    """Instrument 0 (family 0): pure tones at PITCHES; instrument 1 (family 1): tones two octaves up
    with a third partial; negatives: instrument 2, noise, and instrument 3, a drum kit of one click."""
    t = np.arange(L) / SR
    clips, fam, inst, names, pitch = [], [], [], [], []
    for i, f in enumerate((0, 1)):
        for p in PITCHES:
            f0 = midi_hz(p + 24 * i)
            y = np.sin(2 * np.pi * f0 * t) + (0.5 * np.sin(2 * np.pi * 3 * f0 * t) if i else 0.0)
            clips.append(0.3 * y * np.exp(-0.3 * t))
            fam.append(f)
            inst.append(i)
            names.append(f"inst{i}-{p:03d}-100")
            pitch.append(p)
    clicks = np.zeros(L)
    clicks[:40] = 0.9 * np.exp(-np.arange(40) / 8)  # one short hit
    for i, (name, clip) in enumerate((("noise", np.random.default_rng(0).standard_normal(L) * 0.05), ("kit", clicks))):
        clips.append(clip)
        fam.append(-1)
        inst.append(2 + i)
        names.append(name)
        pitch.append(-1)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "audio.npy", (np.stack(clips) * 32767).astype(np.int16))
    meta = {"families": ["flute", "organ"], "family": fam, "instrument": inst, "is_drum": [n == "kit" for n in names],
            "instrument_names": ["inst0", "inst1", "noise", "kit"], "notes": names}  # fmt: skip
    if with_pitch_key:
        meta["pitch"] = pitch
    (folder / "pool.json").write_text(json.dumps(meta))
    return S.NotePool(folder)


def _peaks(x: np.ndarray, count: int) -> list[float]:
    """Frequencies of the `count` strongest spectral peaks (local maxima)."""
    mag = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    local = np.flatnonzero((mag[1:-1] > mag[:-2]) & (mag[1:-1] >= mag[2:])) + 1
    best = local[np.argsort(mag[local])[-count:]]
    return sorted(float(f) for f in np.fft.rfftfreq(len(x), 1 / SR)[best])


def test_the_pool_knows_each_note_pitch_from_its_record_or_its_name(tmp_path):
    with_key = _pool(tmp_path / "a")
    from_names = _pool(tmp_path / "b", with_pitch_key=False)
    np.testing.assert_array_equal(with_key.pitch, from_names.pitch)
    assert with_key.pitch[:len(PITCHES)].tolist() == list(PITCHES) and with_key.pitch[-1] == -1
    assert with_key.negative_instruments.tolist() == [2, 3] and with_key.drum_instruments.tolist() == [3]


def test_a_chord_is_notes_of_one_instrument_at_chord_intervals_about_as_loud_as_one_note(tmp_path):
    pool = _pool(tmp_path / "pool")
    note_rms = np.sqrt(np.mean(pool.clip(0) ** 2))
    allowed = {midi_hz(p) for p in PITCHES}
    for seed in range(6):
        rng = np.random.default_rng(seed)
        chord = S.chord(pool, 0, rng, size=3)
        found = _peaks(chord, 3)
        # three distinct notes of instrument 0 (its pure tones), none of instrument 1 (two octaves up)
        assert all(min(abs(f - a) for a in allowed) < 2.0 for f in found), found
        assert len({round(f) for f in found}) == 3
        # the other notes lie at CHORD_INTERVALS from one of them (the chord's first note)
        semis = np.round(12 * np.log2(np.asarray(found)[:, None] / np.asarray(found)[None, :])).astype(int)
        assert any(set(np.delete(semis[:, r], r)) <= set(S.CHORD_INTERVALS.tolist()) for r in range(3)), semis
        rms = np.sqrt(np.mean(chord**2))
        assert 0.5 * note_rms < rms < 2.0 * note_rms


def test_a_chord_of_an_instrument_without_pitches_takes_any_of_its_notes(tmp_path):
    pool = _pool(tmp_path / "pool")
    pool.pitch[:] = -1  # e.g. a sample library whose notes have no pitch
    chord = S.chord(pool, 1, np.random.default_rng(0), size=2)
    assert len({round(f) for f in _peaks(chord, 2)}) == 2
    single = S.chord(pool, 2, np.random.default_rng(0), size=3)  # one note only: the chord is that note
    np.testing.assert_allclose(single, pool.clip(int(pool.by_instrument[2][0])), atol=1e-6)


def _examples(pool: S.NotePool, setting: str, instruments: dict[int, int], count: int = 5):
    """`count` seeded mixtures of `instruments` with a synthesis setting always on, every note at time 0,
    nothing else mixed in: (audio, label) pairs."""
    on = S.SynthSettings(**{setting: 1.0}, aligned_share=1.0, negative_prob=0.0, reverb_prob=0.0, noise_prob=0.0)
    rng = np.random.default_rng(1)
    return [S.mixture_example(pool, rng, on, instruments=instruments) for _ in range(count)]


def _unchanged_while_off(pool: S.NotePool, setting: str) -> None:
    """Off (the default), a synthesis setting leaves the examples made before it existed (same draws,
    same audio) and out of the example signature (so their cache is reused); on, it changes them."""
    from tagger.model.train import _synth_signature

    a = S.mixture_example(pool, np.random.default_rng(5), S.SynthSettings())
    b = S.mixture_example(pool, np.random.default_rng(5), S.SynthSettings(**{setting: 0.0}))
    np.testing.assert_array_equal(a[0], b[0])
    c = S.mixture_example(pool, np.random.default_rng(5), S.SynthSettings(**{setting: 1.0}, aligned_share=1.0))
    assert not np.array_equal(a[0], c[0])
    assert setting not in _synth_signature(S.SynthSettings())
    assert _synth_signature(S.SynthSettings(**{setting: 0.4}))[setting] == 0.4


def test_mixtures_with_chords_keep_one_label_per_instrument_and_the_default_stream_is_unchanged(tmp_path):
    from dataclasses import asdict

    from tagger.model.train import _synth_signature

    pool = _pool(tmp_path / "pool")
    for audio, label in _examples(pool, "chord_prob", {0: 0}):
        assert label.tolist() == [1, 0]
        assert len({round(f) for f in _peaks(audio, 4) if f < 600}) >= 2  # more than one note of instrument 0
    _unchanged_while_off(pool, "chord_prob")
    # the non-family sounds mixed in can be limited to some negatives: here the drum kit's clicks only
    quiet = S.SynthSettings(negative_prob=1.0, silent_level0_prob=0.0, reverb_prob=0.0, noise_prob=0.0)
    for seed in range(4):
        kit, label = S.mixture_example(pool, np.random.default_rng(seed), quiet, instruments={}, negatives=pool.drum_instruments)
        assert label.tolist() == [0, 0] and np.mean(np.abs(kit) > 1e-3) < 0.01  # clicks, never noise
    off = _synth_signature(S.SynthSettings())
    assert off == {k: v for k, v in asdict(S.SynthSettings()).items() if k not in S.TIMBRE_SETTINGS + S.CHORD_SETTINGS + S.DRUM_SETTINGS + S.SECTION_SETTINGS + S.CODEC_SETTINGS + S.MASTER_SETTINGS}


@pytest.mark.model
def test_the_chord_report_scores_notes_chords_and_chords_with_other_sounds(tmp_path, capsys):
    from conftest import compact_models
    from tagger.model.ensemble import Ensemble

    spec = importlib.util.spec_from_file_location("detail", Path(__file__).parents[1] / "scripts" / "held_out_detail.py")
    detail = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(detail)
    pool = _pool(tmp_path / "pool")
    models = compact_models(tmp_path / "m", ["flute", "organ"], version="m", seed=3)
    audio, family, families = detail.chord_windows(pool.directory, per_instrument=3, seed=0)
    assert [a.shape for a in audio] == [(6, L)] * 4 and family.tolist() == [0, 0, 0, 1, 1, 1] and families == ["flute", "organ"]
    again = detail.chord_windows(pool.directory, per_instrument=3, seed=0)[0]
    assert all(np.array_equal(a, b) for a, b in zip(audio, again))  # seeded
    assert not np.array_equal(audio[0], audio[1])  # a chord is not the note
    assert not np.array_equal(audio[2], audio[3])  # a drum beat, or other sounds
    assert detail.main(["--chords", str(pool.directory), str(models)]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [r[1] for r in rows] == list(detail.CHORD_WAYS) and all(r[2] == "16" for r in rows)
    ens = Ensemble.load(models)
    audio, family, _ = detail.chord_windows(pool.directory)  # as the script plays them: 8 windows per instrument
    pred = ens.decide(ens.predict(audio[1]))
    truth = np.eye(2, dtype=bool)[family]
    assert rows[1][5] == f"{(pred & ~truth).sum(axis=1).mean():.2f}"  # wrong families per window, for the chords
    assert detail.main(["--chords", str(tmp_path), str(models)]) == 1
    assert "no note pool" in capsys.readouterr().err


def test_a_drum_beat_plays_the_kit_on_a_steady_grid_under_unchanged_labels(tmp_path):
    pool = _pool(tmp_path / "pool")
    for seed in range(4):
        beat = S.drum_beat(pool, 3, np.random.default_rng(seed))
        onsets = np.flatnonzero(np.abs(beat) > 0.2)
        onsets = onsets[np.insert(np.diff(onsets) > 40, 0, True)]  # one per hit
        gaps = np.diff(np.concatenate([[0], onsets, [L]]))
        # hits on eighth notes of 70-160 beats per minute, and one at least every quarter note
        # (beats 1-4 always play): from the start of the window to its end
        assert len(onsets) >= 8 and gaps.max() <= 2 * 30 / 70 * SR + 1
        eighth = np.median(np.diff(onsets))
        assert 30 / 160 * SR - 1 <= eighth <= 2 * 30 / 70 * SR + 1
    quiet = S.SynthSettings(drum_prob=1.0, silent_level0_prob=0.0, reverb_prob=0.0, noise_prob=0.0, negative_prob=0.0)
    audio, label = S.mixture_example(pool, np.random.default_rng(0), quiet, instruments={})
    assert label.tolist() == [0, 0] and np.abs(audio).max() > 0.1  # drums alone: no family
    audio, label = S.mixture_example(pool, np.random.default_rng(0), quiet, instruments={1: 1})
    assert label.tolist() == [0, 1]
    _unchanged_while_off(pool, "drum_prob")


def _section_pool(folder: Path) -> S.NotePool:
    """Family 0 has two instruments at PITCHES: 0, pure tones; 1, tones with a strong third partial
    (it plays only pitches 48..60). Family 1 has instrument 2, pure tones at PITCHES + 1 semitone."""
    t = np.arange(L) / SR
    clips, fam, inst, pitch = [], [], [], []
    for i, (f, partial, shift) in enumerate(((0, 0.0, 0), (0, 0.8, 0), (1, 0.0, 1))):
        for p in PITCHES if i != 1 else [p for p in PITCHES if p <= 60]:
            f0 = midi_hz(p + shift)
            clips.append(0.3 * (np.sin(2 * np.pi * f0 * t) + partial * np.sin(2 * np.pi * 3 * f0 * t)) * np.exp(-0.3 * t))
            fam.append(f)
            inst.append(i)
            pitch.append(p + shift)
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "audio.npy", (np.stack(clips) * 32767).astype(np.int16))
    meta = {"families": ["brass", "string"], "family": fam, "instrument": inst, "is_drum": [False] * len(fam),
            "instrument_names": ["a", "b", "c"], "notes": [f"n-{p:03d}-100" for p in pitch], "pitch": pitch}  # fmt: skip
    (folder / "pool.json").write_text(json.dumps(meta))
    return S.NotePool(folder)


def test_a_detuned_player_is_a_few_cents_off_and_late():
    tone = np.sin(2 * np.pi * 440.0 * np.arange(L) / SR).astype(np.float32)
    late = S.detuned(tone, 10.0, 160)
    assert late.shape == tone.shape and not late[:160].any() and np.abs(late[160:]).max() > 0.9
    found = _peaks(late[160:], 1)[0]
    assert abs(found - 440.0 * 2 ** (10 / 1200)) < abs(found - 440.0)  # 442.5 Hz: 10 cents up
    np.testing.assert_allclose(S.detuned(tone, 0.0, 0), tone, atol=1e-6)


def test_a_section_is_players_of_one_family_on_one_pitch_about_as_loud_as_one_note(tmp_path):
    pool = _section_pool(tmp_path / "pool")
    family_hz = {midi_hz(p) * k for p in PITCHES for k in (0.5, 1, 2, 3, 6)}
    others_hz = [midi_hz(p + 1) for p in PITCHES]
    borrowed = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        x = S.section(pool, 0, rng, size=5, family=0)
        mag = np.abs(np.fft.rfft(x * np.hanning(L)))
        freqs = np.fft.rfftfreq(L, 1 / SR)
        root = freqs[np.argmax(mag)]
        # every player is within SECTION_DETUNE_CENTS of one pitch (or an octave from it): the
        # strongest peaks are partials of that note, never of the other family's instrument
        for f in _peaks(x, 3):
            assert min(abs(1200 * np.log2(f / h)) for h in family_hz) <= S.SECTION_DETUNE_CENTS + 3, (seed, f)
        assert all(mag[np.argmin(np.abs(freqs - h))] < 0.05 * mag.max() for h in others_hz if abs(h - root) > 5)
        # instrument 1 (third partial) joins some sections, when it has the pitch
        third = mag[np.argmin(np.abs(freqs - 3 * root))]
        borrowed += third > 0.2 * mag.max()
        note_rms = np.sqrt(np.mean(pool.clip(int(pool.by_instrument[0][0])) ** 2))
        assert 0.6 * note_rms < np.sqrt(np.mean(x**2)) < 1.5 * note_rms  # 1/sqrt(players): not their sum
    assert 0 < borrowed < 12
    # one player is the note itself; without a family every player is the instrument
    one = S.section(pool, 0, np.random.default_rng(0), size=1, family=0)
    assert any(np.array_equal(one, pool.clip(int(i))) for i in pool.by_instrument[0])
    alone = S.section(pool, 1, np.random.default_rng(3), size=4)
    spectrum = np.abs(np.fft.rfft(alone))
    assert spectrum[np.argmin(np.abs(np.fft.rfftfreq(L, 1 / SR) - 3 * np.fft.rfftfreq(L, 1 / SR)[np.argmax(spectrum)]))] > 0.2 * spectrum.max()


def test_mixtures_with_sections_keep_the_family_label_and_the_default_stream_is_unchanged(tmp_path):
    pool = _section_pool(tmp_path / "pool")
    for audio, label in _examples(pool, "section_prob", {0: 0}):
        assert label.tolist() == [1, 0] and np.abs(audio).max() > 0.01
    _unchanged_while_off(pool, "section_prob")
