"""The training-data sources beside the SoundFonts: STK physical models, the Salamander Grand Piano,
negatives cut from sample libraries."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tagger.data import nsynth, render as R, samples as M, stk as S
from tagger.errors import DatasetError
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


def _tone(path: Path, freq: float, *, seconds: float, sr: int = 48_000, channels: int = 2) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    y = 0.5 * np.sin(2 * np.pi * freq * t) * np.exp(-t / 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([y] * channels, axis=1), sr)
    return path


def test_note_names_and_salamander_file_names(tmp_path):
    assert [M.parse_note_name(n) for n in ("A0", "C4", "F#3", "Eb5", "C8")] == [21, 60, 54, 75, 108]
    with pytest.raises(ValueError):
        M.parse_note_name("H2")
    with pytest.raises(DatasetError, match="no Salamander samples"):
        M.salamander_notes(tmp_path)
    _tone(tmp_path / "package" / "audio" / "Bb3v10.ogg", 233.08, seconds=1)
    with pytest.raises(DatasetError, match="Bb3v10.ogg.*unexpected file name"):
        M.salamander_notes(tmp_path)


def test_salamander_notes_cover_neighbouring_keys_at_their_pitch(tmp_path):
    audio = tmp_path / "package" / "audio"
    _tone(audio / "A0v10.ogg", 27.5, seconds=6)
    _tone(audio / "C4v10.ogg", 261.63, seconds=6)
    notes = M.salamander_notes(tmp_path)
    assert sorted(n.pitch for n in notes) == [21, 22, 59, 60, 61]  # A0 - 1 is not a piano key
    summary = M.render_salamander(tmp_path / "ds", folder=tmp_path, jobs=1)
    assert summary["new"] == {"keyboard": {"notes": 5, "instruments": 1}}
    ds = nsynth.NoteDataset.load(tmp_path / "ds", check_audio=True)
    assert {(n.instrument, n.group, n.velocity) for n in ds.notes} == {("keyboard_acoustic_salamander", "salamander", 79)}
    for note in ds.notes:
        y, sr = sf.read(note.path)
        assert sr == 16_000 and len(y) == 64_000
        if note.pitch >= 59:
            assert _f0_share_db(y, note.pitch) == pytest.approx(0.0)  # transposed by resampling
        assert np.abs(y[int(3.6 * sr) :]).max() == 0 and np.abs(y[: 3 * sr]).max() > 0.1  # held 3 s, released


def test_sample_negatives_keep_only_classified_samples(tmp_path):
    kits, sonic = tmp_path / "drumkits", tmp_path / "sonic"
    _tone(kits / "BJA_Pacific" / "kick.wav", 60, seconds=0.5, sr=44_100)
    _tone(kits / "BJA_Pacific" / "snare.flac", 200, seconds=0.3, sr=44_100, channels=1)
    (kits / "BJA_Pacific" / "drumkit.xml").write_text("<drumkit_info/>")
    _tone(kits / "ElectricEmpireKit" / "zap.wav", 900, seconds=9, sr=22_050)
    # a kit of hydrogen-drumkits-effects (reserved for evaluation) installed in the same folder
    _tone(kits / "EffectsKit" / "whoosh.wav", 500, seconds=1, sr=44_100)
    for name in ("bd_808", "ambi_drone", "guit_em9", "ambi_piano", "unknown_thing"):
        _tone(sonic / f"{name}.flac", 110, seconds=2, sr=44_100)
    summary = M.render_sample_negatives(tmp_path / "ds", hydrogen=kits, sonic_pi=sonic, calf=tmp_path / "none", jobs=1)
    assert "calf" not in summary
    rows = json.loads((tmp_path / "ds" / "examples.json").read_text())
    by_inst = {}
    for r in rows.values():
        by_inst.setdefault(r["instrument_str"], []).append(r)
    assert sorted(by_inst) == [
        "effects_electronic_sonicpiambi", "percussion_acoustic_hydrogenbjapacific",
        "percussion_electronic_hydrogenelectricempirekit", "percussion_electronic_sonicpibd",
    ]  # fmt: skip
    assert len(by_inst["percussion_acoustic_hydrogenbjapacific"]) == 2
    assert {r["sample"] for r in rows.values()} == {"kick.wav", "snare.flac", "zap.wav", "bd_808.flac", "ambi_drone.flac"}
    assert all(r["pitch"] == 60 and r["velocity"] == 100 for r in rows.values())
    ds = nsynth.NoteDataset.load(tmp_path / "ds", check_audio=True)
    assert ds.notes == [] and {n.group for n in ds.negatives} == {
        "hydrogen-bjapacific", "hydrogen-electricempirekit", "sonicpi-percussion-bd", "sonicpi-effects-ambi"
    }
    long = sf.read(next(n.path for n in ds.negatives if n.instrument.endswith("electricempirekit")))[0]
    assert len(long) == 64_000 and np.abs(long[-100:]).max() > 0.01  # a long sample is cut at 4 s


@pytest.mark.skipif(shutil.which("fluidsynth") is None or not (M.CALF_SOUNDFONTS / "Hum.sf2").is_file(),
                    reason="fluidsynth and calf-plugins needed")  # fmt: skip
def test_calf_noise_soundfonts_render_as_effects(tmp_path):
    calf = tmp_path / "calf"
    calf.mkdir()
    shutil.copy(M.CALF_SOUNDFONTS / "Hum.sf2", calf / "Hum.sf2")
    summary = M.render_calf(tmp_path / "ds", root=calf, pitches=(60,))
    assert summary["new"] == {"effects": {"notes": 1, "instruments": 1}}
    (neg,) = nsynth.NoteDataset.load(tmp_path / "ds", check_audio=True).negatives
    assert neg.instrument == "effects_electronic_calfhum" and neg.group == "calf"


def test_cli_adds_sources_to_a_dataset_and_rewrites_the_split(tmp_path):
    from typer.testing import CliRunner

    from tagger.cli import app

    _tone(tmp_path / "package" / "audio" / "C4v10.ogg", 261.63, seconds=5)
    out = tmp_path / "ds"
    args = ["dataset", "render", str(out), "--no-soundfonts", "--no-stk", "--no-sample-negatives"]
    result = CliRunner().invoke(app, [*args, "--salamander", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["salamander"]["new_notes"] == 3 and "stk" not in summary
    assert set(nsynth.read_split(out)) == {"keyboard_acoustic_salamander"}
    again = CliRunner().invoke(app, [*args, "--salamander", str(tmp_path)])
    assert json.loads(again.output[again.output.index("{") :])["salamander"]["new_notes"] == 0
