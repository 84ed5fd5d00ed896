"""The training-data sources beside the SoundFonts: STK physical models."""

import json

import numpy as np
import pytest
import soundfile as sf

from tagger.data import nsynth, render as R, stk as S
from tagger.instruments import FAMILIES

needs_stk = pytest.mark.skipif(S.stk_demo() is None, reason="stk-demo (Debian package stk) needed")


def _voice(name):
    return next(v for v in S.STK_VOICES if v.name == name)


def _f0_share_db(clip: np.ndarray, pitch: int) -> float:
    """Level (dB) of the spectrum within 3% of the note's f0, relative to the spectrum's peak."""
    seg = clip[8_000:40_000]  # 0.5 - 2.5 s: the held part
    spec = np.abs(np.fft.rfft(seg * np.hanning(len(seg))))
    freqs = np.fft.rfftfreq(len(seg), 1 / 16_000)
    f0 = 440.0 * 2 ** ((pitch - 69) / 12)
    return float(20 * np.log10(spec[(freqs > 0.97 * f0) & (freqs < 1.03 * f0)].max() / spec.max()))


def test_stk_voices_are_families_or_negatives_and_variants_are_seeded():
    negatives = {"percussion", "synth", "effects", "ethnic"}
    assert all(v.family in FAMILIES or v.family in negatives for v in S.STK_VOICES)
    assert len({v.name for v in S.STK_VOICES}) == len(S.STK_VOICES)
    clarinet = _voice("clarinet")
    a, b = S.draw_variants(clarinet, count=3, seed=0), S.draw_variants(clarinet, count=3, seed=0)
    assert a == b and len({tuple(v.controls.items()) for v in a}) == 3
    assert a[0].instrument_str == "reed_acoustic_stkclarinet01" and clarinet.group == "stk-clarinet"
    assert len(S.draw_variants(_voice("plucked"), count=3)) == 1  # nothing to vary
    notes = S.draw_notes(a[0], count=40)
    assert len(notes) == 40 and len({(n.pitch, n.velocity) for n in notes}) == 40
    assert all(clarinet.low <= n.pitch <= clarinet.high and 50 <= n.velocity <= 127 for n in notes)
    bell = S.draw_variants(_voice("tubebell"))[0]  # 25 pitches: 40 notes repeat pitches at other velocities
    assert len(S.draw_notes(bell, count=40)) == 40
    score = S.skini_score(a[0], notes[0])
    assert score.splitlines()[-3].startswith(f"NoteOn 0.0 1 {notes[0].pitch}.00 {notes[0].velocity}")
    assert "NoteOff 3.0" in score


@needs_stk
@pytest.mark.parametrize("name,pitch", [("clarinet", 60), ("flute", 72), ("bowed", 55), ("wurley", 48), ("percflut", 76)])
def test_stk_notes_sound_at_their_pitch_for_3_s(name, pitch):
    variant = S.draw_variants(_voice(name), count=1)[0]
    clip = S.render_note(variant, S.StkNote(pitch, 100))
    assert clip.shape == (64_000,) and clip.dtype == np.float32 and np.abs(clip).max() <= 0.99
    held = R.rms_dbfs(clip[8_000:44_000])
    assert held > -40
    assert R.rms_dbfs(clip[60_000:]) < held - 20  # released after 3 s
    assert _f0_share_db(clip, pitch) > -20  # the fundamental is a main partial (PercFlut: shifted down a fifth)
    assert abs(np.mean(clip)) < 1e-3  # no DC offset


@needs_stk
def test_render_stk_adds_instruments_grouped_by_stk_class(tmp_path):
    out = tmp_path / "ds"
    voices = [_voice("clarinet"), _voice("marimba"), _voice("vibraphone"), _voice("agogo")]
    summary = S.render_stk(out, voices=voices, variants=2, notes_per_variant=3, jobs=1)
    ds = nsynth.NoteDataset.load(out, check_audio=True)
    assert {n.family for n in ds.notes} == {"reed", "mallet"} and {n.family for n in ds.negatives} == {"percussion"}
    assert {n.group for n in ds.notes} == {"stk-clarinet", "stk-modalbar"}
    assert len({n.instrument for n in ds.notes if n.family == "mallet"}) == 4
    assert summary["new_notes"] == len(ds.notes) + len(ds.negatives) == summary["notes"]
    assert summary["new_notes"] + summary["dropped_silent"] == 4 * 2 * 3
    rows = json.loads((out / "examples.json").read_text())
    row = next(iter(rows.values()))
    assert row["soundfont"] == "stk" and row["sample_rate"] == 16_000 and row["level_dbfs"] > R.SILENT_NOTE_DBFS
    y, sr = sf.read(ds.notes[0].path)
    assert sr == 16_000 and len(y) == 64_000
    # a second run renders only what is missing, and the split keeps each STK class on one side
    stamp = ds.notes[0].path.stat().st_mtime_ns
    again = S.render_stk(out, voices=voices + [_voice("saxofony")], variants=2, notes_per_variant=3, jobs=1)
    assert set(again["new"]) == {"reed"} and ds.notes[0].path.stat().st_mtime_ns == stamp
    fake = [dict(row, note_str=f"reed_acoustic_sf{p:03d}-060-100", instrument_str=f"reed_acoustic_sf{p:03d}",
                 instrument_family_str="reed", program=p, group=None) for p in (68, 70, 71)]  # fmt: skip
    from tagger.data.examples import merge_examples

    merge_examples(out, fake)  # SoundFont-like rows: reed has 5 groups, so whole groups are assigned
    nsynth.split_dataset(out)
    split = nsynth.read_split(out)
    by_group: dict[str, set[str]] = {}
    for n in nsynth.NoteDataset.load(out).notes:
        by_group.setdefault(n.group, set()).add(split[n.instrument])
    assert all(len(sides) == 1 for sides in by_group.values())
