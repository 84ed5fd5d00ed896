import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tagger import constants as C
from tagger.data import gm, mix as M, nsynth, render as R
from tagger.errors import DatasetError
from tagger.instruments import FAMILIES, decode, from_bits

FREQ = {f: 110.0 * (i + 1) for i, f in enumerate(FAMILIES)}


def make_nsynth(root, *, instruments_per_family=3, notes=2, extra=True):
    """A small dataset in the real NSynth layout: one tone per note, frequency by family."""
    (root / "audio").mkdir(parents=True)
    meta = {}
    t = np.arange(C.WINDOW_SAMPLES) / C.SAMPLE_RATE
    rows = [(f, "acoustic" if i % 2 == 0 else "electronic", i) for f in FAMILIES for i in range(instruments_per_family)]
    if extra:
        rows += [("synth_lead", "synthetic", 0), ("percussion", "acoustic", 0)]
    for fam, src, i in rows:
        inst = f"{fam}_{src}_{i:03d}"
        for k in range(notes):
            pitch = 48 + 12 * k
            note_str = f"{inst}-{pitch:03d}-100"
            y = 0.3 * np.sin(2 * np.pi * FREQ.get(fam, 5000.0) * (k + 1) * t) * np.exp(-t)
            sf.write(root / "audio" / f"{note_str}.wav", y.astype(np.float32), C.SAMPLE_RATE, subtype="PCM_16")
            meta[note_str] = {
                "note_str": note_str, "pitch": pitch, "velocity": 100, "sample_rate": 16000,
                "instrument_str": inst, "instrument_family_str": fam, "instrument_source_str": src,
                "qualities_str": [], "note": len(meta),
            }  # fmt: skip
    (root / "examples.json").write_text(json.dumps(meta))
    return root


def test_reader_applies_the_paper_filter(tmp_path):
    root = make_nsynth(tmp_path / "nsynth-test")
    everything = nsynth.NoteDataset.load(root)
    assert len(everything.notes) == 10 * 3 * 2
    assert {n.family for n in everything.negatives} == {"percussion"}  # synth_lead dropped entirely
    paper = nsynth.NoteDataset.load(root, sources=nsynth.PAPER_SOURCES)
    assert len(paper.notes) == 10 * 2 * 2 and all(n.source == "acoustic" for n in paper.notes)
    assert paper.notes[0].split == "test"  # a real NSynth folder name gives the split
    audio = nsynth.load_note_audio(paper.notes[:3])
    assert audio.shape == (3, 64_000) and audio.dtype == np.float32
    labels = paper.labels()
    assert labels.sum() == len(paper.notes) and decode(labels[0]) == [paper.notes[0].family]


def test_reader_errors(tmp_path):
    with pytest.raises(DatasetError, match="examples.json is missing"):
        nsynth.NoteDataset.load(tmp_path)
    (tmp_path / "examples.json").write_text(json.dumps({"x": {"pitch": 1}}))
    with pytest.raises(DatasetError, match="lacks field"):
        nsynth.NoteDataset.load(tmp_path)
    root = make_nsynth(tmp_path / "d")
    with pytest.raises(DatasetError, match="no split yet"):
        nsynth.NoteDataset.load(root, split="train")


def test_split_by_instrument_never_by_note(tmp_path):
    root = make_nsynth(tmp_path / "d", instruments_per_family=5)
    summary = nsynth.split_dataset(root, seed=3)
    assignment = nsynth.read_split(root)
    parts = {s: nsynth.NoteDataset.load(root, split=s) for s in nsynth.SPLITS}
    insts = {s: {n.instrument for n in ds.notes} for s, ds in parts.items()}
    assert not (insts["train"] & insts["valid"]) and not (insts["train"] & insts["test"]) and not (insts["valid"] & insts["test"])
    for s, ds in parts.items():
        assert all(assignment[n.instrument] == s for n in ds.notes)
    assert all(set(v) == {"train", "valid", "test"} for f, v in summary.items() if f in FAMILIES)
    assert nsynth.split_dataset(root, seed=3) == summary  # deterministic


def test_split_keeps_a_program_together_across_soundfonts(tmp_path):
    root = make_nsynth(tmp_path / "d", extra=False)
    meta = json.loads((root / "examples.json").read_text())
    for rec in list(meta.values()):  # a second SoundFont rendering the same programs
        twin = dict(rec, instrument_str=rec["instrument_str"] + "b", note_str=rec["note_str"].replace("-", "b-", 1))
        shutil.copy(root / "audio" / f"{rec['note_str']}.wav", root / "audio" / f"{twin['note_str']}.wav")
        meta[twin["note_str"]] = twin
    for rec in meta.values():
        rec["program"] = int(rec["instrument_str"].rstrip("b").rsplit("_", 1)[1]) + 10 * FAMILIES.index(rec["instrument_family_str"])
    (root / "examples.json").write_text(json.dumps(meta))
    nsynth.split_dataset(root)
    assignment = nsynth.read_split(root)
    for inst, s in assignment.items():
        if not inst.endswith("b"):
            assert assignment[inst + "b"] == s


def test_mixer_levels_and_labels(tmp_path):
    root = make_nsynth(tmp_path / "d")
    ds = nsynth.NoteDataset.load(root)
    path = M.write_mixtures(ds, tmp_path / "mix", per_level=4, seed=1, settings=M.MixSettings(max_onset_seconds=0.5))
    manifest = M.read_manifest(path)
    recs = manifest["mixtures"]
    assert len(recs) == 11 * 4
    for rec in recs:
        fams = decode(from_bits(rec["label"]))
        assert len(fams) == rec["level"] == len(set(fams)) and fams == rec["instruments"]
        note_fams = sorted(n.split("_")[0] for n in rec["notes"])
        assert note_fams == sorted(fams)
        y, sr = sf.read(rec["path"])
        assert sr == 16_000 and len(y) == 64_000
        assert (np.abs(y).max() < 1e-4) == (rec["level"] == 0)
    # the mixture of a flute and a string holds exactly their two frequencies (plus harmonics of notes)
    rec = next(r for r in recs if r["level"] == 2)
    y, _ = sf.read(rec["path"])
    spec = np.abs(np.fft.rfft(y))
    peaks = {FREQ[f] for f in rec["instruments"]}
    strong = np.argsort(spec)[-200:] * 16_000 / len(y)
    assert any(min(abs(strong - p * k)) < 1 for p in peaks for k in (1, 2))


def test_mixer_is_seeded_and_checks_families(tmp_path):
    ds = nsynth.NoteDataset.load(make_nsynth(tmp_path / "d"))
    a = M.draw_mixtures(ds, per_level=3, seed=7)
    b = M.draw_mixtures(ds, per_level=3, seed=7)
    assert [r["notes"] for r in a] == [r["notes"] for r in b]
    small = nsynth.NoteDataset(root=ds.root, notes=[n for n in ds.notes if n.family in ("bass", "flute")])
    with pytest.raises(DatasetError, match="level 3 needs 3 families"):
        M.draw_mixtures(small, per_level=1, levels=[3])


def test_mix_clips_gain_onset_and_peak():
    clips = np.zeros((2, 100), np.float32)
    clips[0, 0] = 1.0
    clips[1, 0] = 1.0
    out = M.mix_clips(clips, gains_db=[0.0, -6.0206], onsets=[0, 10], peak=0.5)
    assert out[0] == pytest.approx(0.5) and out[10] == pytest.approx(0.25, rel=1e-3)


def test_gm_map_covers_the_families_once():
    progs = [p.program for p in gm.FAMILY_PROGRAMS + gm.NEGATIVE_PROGRAMS]
    assert sorted(progs) == list(range(128))
    assert {p.family for p in gm.FAMILY_PROGRAMS} == set(FAMILIES)


def test_midi_writer_roundtrip(tmp_path):
    path = tmp_path / "x.mid"
    prog = gm.FAMILY_PROGRAMS[0]
    R.write_midi(path, R.note_events(prog, [R.NoteSpec(40, 100), R.NoteSpec(41, 50)]))
    data = path.read_bytes()
    assert data[:4] == b"MThd" and b"MTrk" in data and data.endswith(b"\x00\xff\x2f\x00")
    assert bytes([0x90, 40, 100]) in data and bytes([0x90, 41, 50]) in data


needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or "fluidr3" not in R.default_soundfonts(), reason="fluidsynth and FluidR3_GM needed"
)


@needs_fluidsynth
def test_render_writes_an_nsynth_dataset_the_reader_loads(tmp_path):
    sfs = {"fluidr3": R.default_soundfonts()["fluidr3"]}
    flute = next(p for p in gm.FAMILY_PROGRAMS if p.program == 73)
    kit = gm.DRUM_KITS[0]
    summary = R.render_dataset(
        tmp_path / "ds", soundfonts=sfs, programs=[flute, kit], velocities=(25, 127), pitch_step=12,
        negative_pitch_step=10, negative_velocities=(100,), jobs=1,
    )  # fmt: skip
    ds = nsynth.NoteDataset.load(tmp_path / "ds", check_audio=True)
    assert {n.family for n in ds.notes} == {"flute"} and len(ds.notes) == summary["notes_per_family"]["flute"]["fluidr3"]
    assert {n.pitch for n in ds.notes} == {60, 72, 84, 96}
    assert all(n.family == "percussion" for n in ds.negatives)
    audio = nsynth.load_note_audio(ds.notes)
    levels = R.rms_dbfs(audio[:, : 3 * 16_000])
    assert np.all(levels > R.SILENT_NOTE_DBFS)
    loud = [n for n in ds.notes if n.velocity == 127][0]
    y, sr = sf.read(loud.path)
    assert sr == 16_000 and len(y) == 64_000
    held, tail = np.abs(y[16_000:40_000]).mean(), np.abs(y[60_000:]).mean()
    assert held > 10 * tail  # held 3 s, released before 4 s; no reverb tail
    assert summary["dropped_silent"] == summary["requested_notes"] - summary["notes"]


def _riff_chunk(cid: bytes, body: bytes) -> bytes:
    return cid + len(body).to_bytes(4, "little") + body + (b"\0" if len(body) % 2 else b"")


def _phdr_record(name: str, program: int, bank: int) -> bytes:
    return name.encode().ljust(20, b"\0") + program.to_bytes(2, "little") + bank.to_bytes(2, "little") + bytes(14)


def test_soundfont_presets_come_from_the_preset_headers(tmp_path):
    phdr = _phdr_record("Nylon", 24, 0) + _phdr_record("Ukulele", 24, 8) + _phdr_record("Kit", 0, 128)
    phdr += _phdr_record("EOP", 0, 0)  # the terminal record is not a preset
    body = (
        b"sfbk"
        + _riff_chunk(b"LIST", b"INFO" + _riff_chunk(b"ifil", bytes(4)))
        + _riff_chunk(b"LIST", b"sdta" + _riff_chunk(b"smpl", bytes(7)))  # odd size: padded
        + _riff_chunk(b"LIST", b"pdta" + _riff_chunk(b"phdr", phdr))
    )
    path = tmp_path / "tiny.sf2"
    path.write_bytes(_riff_chunk(b"RIFF", body))
    assert R.soundfont_presets(path) == {(0, 24), (8, 24), (128, 0)}
    bad = tmp_path / "not.sf2"
    bad.write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(DatasetError, match="not.sf2.*not a SoundFont"):
        R.soundfont_presets(bad)
    no_presets = tmp_path / "empty.sf2"
    no_presets.write_bytes(_riff_chunk(b"RIFF", b"sfbk" + _riff_chunk(b"LIST", b"INFO")))
    with pytest.raises(DatasetError, match="empty.sf2.*no preset headers"):
        R.soundfont_presets(no_presets)


def _soundfont(path, presets) -> Path:
    """A SoundFont of no samples whose preset headers name `presets` ((name, program, bank) each)."""
    phdr = b"".join(_phdr_record(*p) for p in presets) + _phdr_record("EOP", 0, 0)
    path.write_bytes(_riff_chunk(b"RIFF", b"sfbk" + _riff_chunk(b"LIST", b"pdta" + _riff_chunk(b"phdr", phdr))))
    return path


def test_render_plans_programs_kits_and_missing_presets_and_adds_to_a_dataset(tmp_path, monkeypatch):
    """What `render_dataset` renders, skips, counts and writes, FluidSynth faked (a note of velocity
    25 comes out near-silent). (Pinned before `render_dataset` was split into steps.)"""
    from tagger.data.examples import note_record
    from tagger.errors import UserError

    rendered = []

    def fake_render(job):
        sf_key, soundfont, program, notes, audio_dir, gain = job
        rendered.append((sf_key, program.name, len(notes)))
        inst = R.instrument_str(program, sf_key)
        return [note_record(note_str=f"{inst}-{n.pitch:03d}-{n.velocity:03d}", pitch=n.pitch, velocity=n.velocity,
                            instrument=inst, family=program.family, source=program.source, level=-20.0, soundfont=sf_key,
                            program=program.program, bank=program.bank) for n in notes if n.velocity != 25]  # fmt: skip

    monkeypatch.setattr(R, "_render_program", fake_render)
    melodic = _soundfont(tmp_path / "gm.sf2", [("Flute", 73, 0), ("Dulcimer", 15, 0)])
    kits = _soundfont(tmp_path / "kit.sf2", [("Kit", 0, 0)])
    flute, dulcimer = (next(p for p in gm.all_programs() if p.name == name) for name in ("flute", "dulcimer"))
    mellow = next(v for v in gm.VARIANT_PROGRAMS if v.name == "mellow grand piano")  # not in gm.sf2
    opts = dict(soundfonts={"gm": melodic}, velocities=(25, 100), pitch_step=12, negative_pitch_step=12,
                negative_velocities=(50,), jobs=1)  # fmt: skip
    done = []
    first = R.render_dataset(tmp_path / "ds", programs=[flute, dulcimer, mellow], drum_soundfonts={"kit": kits},
                             progress=lambda *a: done.append(a), **opts)  # fmt: skip
    assert rendered == [("kit", "kit drum kit", 47), ("gm", "flute", 8), ("gm", "dulcimer", 4)]  # the longest first
    assert done == [(1, 3), (2, 3), (3, 3)]
    assert first == {
        "notes_per_family": {"percussion": {"kit": 47}, "flute": {"gm": 4}, "ethnic": {"gm": 4}}, "notes": 55,
        "kept_notes": 0, "requested_notes": 59, "dropped_silent": 4, "missing_presets": ["keyboard_acoustic_gm000v008"],
        "soundfonts": {"gm": str(melodic), "kit": str(kits)},
    }  # fmt: skip
    assert list(first["notes_per_family"]) == ["ethnic", "flute", "percussion"]  # in note_str order
    assert (tmp_path / "ds" / "render.json").read_text() == json.dumps(first, indent=1)
    examples = json.loads((tmp_path / "ds" / "examples.json").read_text())
    assert list(examples) == sorted(examples) and [r["note"] for r in examples.values()] == list(range(55))
    written = (tmp_path / "ds" / "examples.json").read_bytes()
    # again, with the kits left out: nothing is rendered again, and render.json keeps the kits' SoundFont
    rendered.clear()
    again = R.render_dataset(tmp_path / "ds", programs=[flute, dulcimer], **opts)
    assert rendered == [] and (tmp_path / "ds" / "examples.json").read_bytes() == written
    assert again == {**first, "kept_notes": 55, "requested_notes": 0, "dropped_silent": 0, "missing_presets": []}
    with pytest.raises(UserError, match="no SoundFont found"):
        R.render_dataset(tmp_path / "none", soundfonts={})
    assert not (tmp_path / "none").exists()


def test_a_render_that_makes_no_note_says_why_not_to_render_one(tmp_path):
    """A render whose SoundFont has none of the programs' presets wrote an examples.json of no notes
    and then ended in the empty dataset's refusal ('lists no notes: ... render one with `tagger
    dataset render`'), said to the user who had just run it, without the summary that says why: it
    now says that the render made no notes, with its counts (fails on the old code: that message)."""
    from typer.testing import CliRunner

    from tagger.cli import app

    odd = _soundfont(tmp_path / "odd.sf2", [("Odd", 99, 5)])  # (no General MIDI program's preset)
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["dataset", "render", str(out), "--soundfont", str(odd), "--no-stk",
                                      "--no-salamander", "--no-sample-negatives"])  # fmt: skip
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    missing = len(json.loads((out / "render.json").read_text())["missing_presets"])
    assert missing > 100 and result.output.strip() == (
        f"tagger: error: {out}: the render made no notes (0 requested, 0 dropped as near-silent, {missing} program(s) "
        "whose preset the SoundFonts lack, listed in render.json): no dataset to split")  # fmt: skip
    assert not (out / "split.json").exists()


def test_a_render_of_other_sources_that_makes_no_note_counts_their_notes(tmp_path):
    """A render without SoundFonts (--no-soundfonts) whose notes were all dropped as near-silent (a
    Salamander folder of silent samples) said '0 requested, 0 dropped as near-silent, 0 program(s)
    whose preset the SoundFonts lack, listed in render.json': the SoundFonts' counts alone, of a
    render that rendered none and wrote no render.json. The other sources' notes are counted
    (fails on the old code: '0 requested, 0 dropped')."""
    from typer.testing import CliRunner

    from tagger.cli import app
    from tagger.data import samples

    piano = tmp_path / "salamander"
    piano.mkdir()
    sf.write(piano / "C4v8.ogg", np.zeros(8000, dtype=np.float32), 16000)  # (silent: every note dropped)
    notes = len(samples.salamander_notes(piano))
    out = tmp_path / "ds"
    result = CliRunner().invoke(app, ["dataset", "render", str(out), "--no-soundfonts", "--no-stk", "--salamander", str(piano),
                                      "--no-sample-negatives", "--jobs", "1"])  # fmt: skip
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    assert notes > 1 and result.output.strip() == (
        f"tagger: error: {out}: the render made no notes ({notes} requested, {notes} dropped as near-silent): no dataset to split")
    assert not (out / "render.json").exists() and not (out / "split.json").exists()


def test_variation_presets_keep_their_base_program():
    base = {(p.program, p.family) for p in gm.FAMILY_PROGRAMS}
    assert gm.VARIANT_PROGRAMS and all((v.program, v.family) in base and 0 < v.bank < 128 for v in gm.VARIANT_PROGRAMS)
    assert len({(v.bank, v.program) for v in gm.VARIANT_PROGRAMS}) == len(gm.VARIANT_PROGRAMS)
    assert gm.all_programs(variants=True)[: len(gm.FAMILY_PROGRAMS)] == gm.FAMILY_PROGRAMS
    ukulele = next(v for v in gm.VARIANT_PROGRAMS if v.name == "ukulele")
    assert R.instrument_str(ukulele, "fluidr3") == "guitar_acoustic_fluidr3024v008"
    assert bytes([0xB0, 0, 8]) in b"".join(e for _, e in R.note_events(ukulele, [R.NoteSpec(64, 100)]))


@needs_fluidsynth
@pytest.mark.slow
def test_render_adds_variation_presets_to_an_existing_dataset(tmp_path):
    sfs = {"fluidr3": R.default_soundfonts()["fluidr3"]}
    nylon = next(p for p in gm.FAMILY_PROGRAMS if p.program == 24)
    ukulele = next(v for v in gm.VARIANT_PROGRAMS if v.name == "ukulele")
    mellow = next(v for v in gm.VARIANT_PROGRAMS if v.name == "mellow grand piano")  # MuseScore_General only
    opts = dict(soundfonts=sfs, velocities=(100,), pitch_step=12, jobs=1)
    first = R.render_dataset(tmp_path / "ds", programs=[nylon], **opts)
    nylon_wav = tmp_path / "ds" / "audio" / "guitar_acoustic_fluidr3024-064-100.wav"
    stamp = nylon_wav.stat().st_mtime_ns
    second = R.render_dataset(tmp_path / "ds", programs=[nylon, ukulele, mellow], **opts)
    assert second["kept_notes"] == first["notes"]
    assert second["requested_notes"] == len(range(ukulele.low, ukulele.high + 1, 12))  # only the new instrument
    assert second["missing_presets"] == ["keyboard_acoustic_fluidr3000v008"]
    assert nylon_wav.stat().st_mtime_ns == stamp  # kept, not rendered again
    ds = nsynth.NoteDataset.load(tmp_path / "ds", check_audio=True)
    by_inst = {n.instrument: n for n in ds.notes}
    assert set(by_inst) == {"guitar_acoustic_fluidr3024", "guitar_acoustic_fluidr3024v008"}
    # the variant is split with its base program
    assert by_inst["guitar_acoustic_fluidr3024"].group == by_inst["guitar_acoustic_fluidr3024v008"].group
    # the bank select reaches FluidSynth: the same note sounds different from the base preset
    a, b = (R.render_notes(sfs["fluidr3"], p, [R.NoteSpec(72, 100)])[0] for p in (nylon, ukulele))
    assert R.rms_dbfs(b[:48_000]) > R.SILENT_NOTE_DBFS and np.abs(a - b).max() > 0.01
    musescore = R.default_soundfonts().get("musescore")
    if musescore:  # a render with another SoundFont keeps the earlier one in render.json
        R.render_dataset(tmp_path / "ds", programs=[mellow], **dict(opts, soundfonts={"musescore": musescore}))
        assert set(json.loads((tmp_path / "ds" / "render.json").read_text())["soundfonts"]) == {"fluidr3", "musescore"}


def test_fewer_programs_ablation_keeps_validation_and_test_untouched(tmp_path, capsys, monkeypatch):
    import importlib.util
    import sys
    from pathlib import Path

    monkeypatch.setattr(sys, "path", list(sys.path))  # (the script puts the checkout first on it: not for the tests after)
    spec = importlib.util.spec_from_file_location("fewer", Path(__file__).parents[1] / "scripts" / "fewer_programs.py")
    fewer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fewer)
    src = make_nsynth(tmp_path / "ds", instruments_per_family=8, notes=1)
    nsynth.split_dataset(src)
    assert fewer.main([str(src), str(tmp_path / "half"), "--keep", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "flute: keeps " in out and "; drops " in out
    for split in ("valid", "test"):
        before = nsynth.NoteDataset.load(src, split=split)
        after = nsynth.NoteDataset.load(tmp_path / "half", split=split)
        assert [n.note_str for n in after.notes + after.negatives] == [n.note_str for n in before.notes + before.negatives]
    before = nsynth.NoteDataset.load(src, split="train")
    after = nsynth.NoteDataset.load(tmp_path / "half", split="train")
    assert {n.note_str for n in after.negatives} == {n.note_str for n in before.negatives}
    for fam in FAMILIES:
        had = {n.instrument for n in before.notes if n.family == fam}
        has = {n.instrument for n in after.notes if n.family == fam}
        assert has < had and len(has) == -(-len(had) // 2)  # half of the programs, rounded up, kept
    # the audio is shared, not copied, and the source is never changed
    a = next((tmp_path / "half" / "audio").iterdir())
    assert a.stat().st_ino == (src / "audio" / a.name).stat().st_ino
    assert "unused" not in (src / "split.json").read_text()
    with pytest.raises(SystemExit):
        fewer.main([str(src), str(tmp_path / "half")])  # never overwrites a folder


def test_runs_table_reads_held_out_left_out_and_production_manifests(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("runs", Path(__file__).parents[1] / "scripts" / "runs_table.py")
    runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runs)
    fams = runs.FAMILIES
    held = {"version": "held-1", "architecture": "trunk", "trunk": {"params": 1000},
            "classifiers": {f: {"params": 10, "metrics": {"auc": 0.5 + i / 100}} for i, f in enumerate(fams)},
            "validation": {"protocol": {"jaccard": 0.52, "emr": 0.17}, "solo_jaccard": 0.27, "music_jaccard": 0.46,
                           "percussion_silent": 0.885},
            "validation_left_out": {"auc": {f: 0.9 for f in fams}},
            "training": {"epochs": 3, "seconds": 1200}, "data": {"dataset": "gm4", "examples": 80000, "train_instruments": 167,
                                                               "left_out_sources": ["generaluser"]}}  # fmt: skip
    prod = {**held, "version": "prod-1", "validation": {"note": "seen"}, "validation_left_out": {},
            "reference": {"version": "held-1", "auc": {f: 0.7 for f in fams}, "validation": held["validation"],
                          "validation_left_out": held["validation_left_out"]},
            "data": {**held["data"], "all_instruments": True, "left_out_sources": []}}  # fmt: skip
    lever = {**held, "version": "lever-1", "training": {**held["training"], "pretrain_steps": 1500, "instrument_fraction": 0.5,
                                                         "trunk_filters": [32, 64], "shift_prob": 0.5, "shift_bands": 3},
             "data": {**held["data"], "synth": {"morph_prob": 0.5, "warp_prob": 0.25, "chord_prob": 0.4,
                                                      "section_prob": 0.3, "drum_prob": 0.3, "negative_prob": 0.7}}, "features": {"harmonic": True},
             "gate": {"params": 385, "metrics": {"cost": 0.03}}}  # fmt: skip
    for name, manifest in (("held", held), ("prod", prod), ("lever", lever)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "manifest.json").write_text(json.dumps(manifest))
    assert runs.main([str(tmp_path / "held"), str(tmp_path / "prod"), str(tmp_path / "lever")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and lines[0].startswith("| run | recipe")
    held_row, prod_row, lever_row = (line.split(" | ") for line in lines[2:])
    assert ("timbre morph 0.5 / warp 0.25, chords 0.4, sections 0.3, drum beats 0.3, negatives in 0.7 of the mixtures, harmonic front end, "
            "presence gate (cost 0.03), contrastive pretraining 1500 steps, mel shifts 0.5 (up to 3 bands), trunk filters 32,64, "
            "0.5 of the instruments") in lever_row[1]  # fmt: skip
    assert lever_row[3] == "1,485"  # the trunk, the heads and the gate
    assert "shifts" not in held_row[1]
    assert not {"timbre", "chords", "drum", "harmonic", "pretraining", "gate"} & set(held_row[1].replace(",", " ").split())
    assert "sections" not in held_row[1]
    assert "without generaluser" in held_row[1] and held_row[3] == "1,100" and held_row[4] == "20 min"
    assert held_row[5].startswith("0.545 (0.50, 0.51") and held_row[6].startswith("0.900")
    assert held_row[7] == "0.52 / 0.17" and held_row[8:10] == ["0.27", "0.46"]
    assert "held-out figures: held-1" in prod_row[0] and "all instruments" in prod_row[1]
    assert prod_row[5].startswith("0.700") and prod_row[7] == "0.52 / 0.17"  # the reference's, not its own
    # a soft gate is named by its exponent, not by the hard gate it replaced
    soft = {**held, "version": "soft-1", "gate": {"threshold": None, "override": None, "exponent": 0.4, "params": 385,
                                                  "metrics": {"cost": 0.15, "hard": {"threshold": 0.5, "override": 0.9}}}}  # fmt: skip
    (tmp_path / "soft").mkdir()
    (tmp_path / "soft" / "manifest.json").write_text(json.dumps(soft))
    assert runs.main([str(tmp_path / "soft")]) == 0
    soft_row = capsys.readouterr().out.splitlines()[-1].split(" | ")
    assert "soft presence gate (exponent 0.4)" in soft_row[1] and "cost" not in soft_row[1] and soft_row[3] == "1,485"
    assert runs.main([str(tmp_path / "nothing")]) == 1
    from tagger.model.synth import SynthSettings

    assert runs.NEGATIVE_PROB == SynthSettings().negative_prob  # the table names only a non-default share


def test_runs_table_prints_the_operating_points(tmp_path, capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("runs", Path(__file__).parents[1] / "scripts" / "runs_table.py")
    runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runs)
    point = {"precision": 0.75, "recall": 0.5}
    manifest = {"classifiers": {"flute": {"threshold": 0.61, "metrics": {"music": point, "solo": point, "all": point}}}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert runs.main(["--operating-points", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "| flute | 0.61 | 0.75 / 0.50 | 0.75 / 0.50 | 0.75 / 0.50 |"


@pytest.mark.model
def test_held_out_detail_scores_kinds_and_averaged_runs(tmp_path, capsys):
    import importlib.util

    from conftest import compact_models
    from tagger.evaluate.metrics import auc
    from tagger.model.ensemble import Ensemble

    spec = importlib.util.spec_from_file_location("detail", Path(__file__).parents[1] / "scripts" / "held_out_detail.py")
    detail = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(detail)
    a = compact_models(tmp_path / "a", ["bass", "flute"], version="a", seed=1)
    b = compact_models(tmp_path / "b", ["bass", "flute"], version="b", seed=2)
    rng = np.random.default_rng(0)
    valid = tmp_path / "examples"
    valid.mkdir()
    n = 40
    feats = rng.uniform(0, 1, (n, 64, 126)).astype(np.float16)
    labels = np.stack([np.arange(n) % 2, (np.arange(n) // 2) % 2], axis=1).astype(np.uint8)
    kind = np.repeat(np.arange(4), n // 4).astype(np.int8)
    for name, arr in (("x", feats), ("labels", labels), ("kind", kind), ("levels", labels.sum(axis=1))):
        np.save(valid / f"valid_{name}.npy", arr)
    assert detail.main(["--valid", str(valid), str(a), str(b)]) == 0
    out = capsys.readouterr().out.splitlines()
    kinds_rows = [line for line in out if line.startswith(("| `a` |", "| `b` |"))]
    assert len(kinds_rows) == 4  # one row per run in each table
    averaged = [line for line in out if "`a` + `b`" in line]
    assert len(averaged) == 1
    p = Ensemble.load(a).predict_features(feats.astype(np.float32), batch_size=256)
    expected = np.mean([auc(labels[kind < 3, j], p[kind < 3, j]) for j in range(2)])
    assert kinds_rows[2].split(" | ")[1] == f"{expected:.3f}"  # held-out AUC as in the manifests
    assert detail.main(["--valid", str(tmp_path / "nothing"), str(a)]) == 1
    assert "no cached validation set" in capsys.readouterr().err
    # a set cached with another front end is not scored with these models
    (valid / "features.json").write_text(json.dumps({**Ensemble.load(a).feature_config.to_dict(), "harmonic": True}))
    assert detail.main(["--valid", str(valid), str(a)]) == 1
    assert "other features than the cached set" in capsys.readouterr().err


@pytest.mark.model
def test_held_out_detail_reports_a_gated_run_without_its_gate_and_at_other_gate_costs(tmp_path, capsys, monkeypatch):
    """--report --without-gate --gate-costs: the gated run, its heads alone, and its gate at other
    thresholds chosen like `tagger train --gate-cost` on the held-out windows that hold a family."""
    import importlib.util

    pytest.importorskip("keras")
    import keras

    from tagger.model import architectures as A, gate as G, store

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    spec = importlib.util.spec_from_file_location("detail", Path(__file__).parents[1] / "scripts" / "held_out_detail.py")
    detail = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(detail)
    keras.utils.set_random_seed(3)
    models = tmp_path / "gated"
    manifest = store.new_manifest(architecture="trunk", recipe="mixture", feature_config=A.COMPACT_FEATURES, version="g")
    trunk = A.build_trunk(A.COMPACT_FEATURES.shape, filters=(4, 8))
    store.save_trunk(models, manifest, trunk)
    for fam in ("bass", "flute"):
        store.save_classifier(models, manifest, fam, A.build_head(16, name=fam), threshold=0.5)
    rng = np.random.default_rng(0)
    store.save_gate(models, manifest, G.gate_model(rng.normal(0, 1, 16).astype(np.float32), 0.0), threshold=0.5)
    valid = tmp_path / "examples"
    (valid / "left_out").mkdir(parents=True)
    n = 80
    feats = rng.uniform(0, 1, (n, *A.COMPACT_FEATURES.shape)).astype(np.float16)
    labels = np.stack([np.arange(n) % 2, (np.arange(n) // 2) % 2], axis=1).astype(np.uint8)
    kind = np.repeat(np.arange(4), n // 4).astype(np.int8)
    for folder in (valid, valid / "left_out"):
        for name, arr in (("x", feats), ("labels", labels), ("kind", kind), ("levels", labels.sum(axis=1))):
            np.save(folder / f"valid_{name}.npy", arr)
    with pytest.raises(SystemExit):  # (the options of --report alone)
        detail.main(["--valid", str(valid), "--gate-costs", "0.1", str(models)])
    capsys.readouterr()
    assert detail.main(["--valid", str(valid), "--report", "--without-gate", "--gate-costs", "0,0.5", "--gate-overrides", "0.5",
                        "--top-rescue", str(models)]) == 0  # fmt: skip
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]}
    rescued = [key for key in rows if "top family rescued" in key]
    assert len(rescued) == 2 * len(detail.TOP_RESCUE) and all(" tags, " in key for key in rescued)
    gate_scores = G.gate_scores(G.gate_model(*_gate_weights(models)), G.embed(trunk, feats.astype(np.float32)))
    with_family = (kind < 3) & labels.any(axis=1)
    t_half = G.choose_threshold(gate_scores[with_family], 0.5)
    t_train = G.choose_threshold(gate_scores[with_family], G.GATE_COST)
    # two runs averaged (here the run and its copy: the same scores), decided as tagger train decides for one
    import shutil as sh

    sh.copytree(models, tmp_path / "again")
    assert detail.main(["--valid", str(valid), "--report", "--averaged", str(models), str(tmp_path / "again")]) == 0
    averaged = [line for line in capsys.readouterr().out.splitlines() if "averaged" in line]
    assert len(averaged) == 2 and averaged[1].split(" | ")[0].endswith("left-out source")
    assert f"averaged (gate {t_train:.3f}, override " in averaged[0]  # the gate's threshold at the training cost
    # the same over views: one view unshifted is the plain average; shifted views score other figures
    assert detail.main(["--valid", str(valid), "--report", "--averaged", "--mel-shifts", "0", str(models), str(tmp_path / "again")]) == 0
    out = capsys.readouterr().out.splitlines()
    plain = [line.split(" | ")[1:] for line in out if "averaged (gate" in line and "mel shifts" not in line]
    one_view = [line.split(" | ")[1:] for line in out if "averaged over mel shifts 0 (gate" in line]
    assert len(plain) == 2 and one_view == plain
    auc_lines = [line for line in out if "averaged over mel shifts 0: " in line]
    assert len(auc_lines) == 2 and "held-out AUC" in auc_lines[0] and "left-out AUC" in auc_lines[1]
    assert detail.main(["--valid", str(valid), "--report", "--averaged", str(models)]) == 1  # one run: nothing to average
    assert "needs two runs" in capsys.readouterr().err
    assert np.mean(gate_scores[with_family] < t_half) <= 0.5 and f"(threshold {t_half:.3f})" in " ".join(rows)
    names = ["`gated without its gate`", "`gated`", "`gated`, gate cost 0", "`gated`, gate cost 0.5"]
    for where in ("held-out instruments", "left-out source"):
        silent, recall = [], []
        for name in names:
            (row,) = [r for key, r in rows.items() if key == f"{name}, {where}"
                      or key.startswith(name + " ") and key.endswith(where) and "overruled" not in key]  # fmt: skip
            silent.append(float(row[-1].rstrip(" |%")))
            recall.append(float(row[-2].split(" / ")[1]))
        assert recall[0] >= recall[2] >= recall[3] and recall[0] >= recall[1]  # (a gate adds no right tag)
        (over,) = [r for key, r in rows.items() if key.startswith(f"{names[3]} (") and "overruled by a head at 0.5" in key
                   and key.endswith(where)]  # fmt: skip
        assert recall[3] <= float(over[-2].split(" / ")[1]) <= recall[0]  # (a confident head keeps its window)
        assert float(over[-1].rstrip(" |%")) <= silent[3]
        # a higher gate threshold turns down more windows of drums alone; the heads alone turn down none
        assert silent[0] <= silent[2] <= silent[3] and silent[0] <= silent[1], (where, silent)
    assert silent[3] > silent[0]  # (this gate at cost 0.5 silences some drum windows the heads tagged)
    # the heads alone, as a model directory of their own
    assert detail.main(["--copy-without-gate", str(tmp_path / "heads"), str(models)]) == 0
    heads = json.loads((tmp_path / "heads" / "manifest.json").read_text())
    assert "gate" not in heads and not (tmp_path / "heads" / "gate.keras").exists() and (models / "gate.keras").is_file()
    assert heads["classifiers"] == json.loads((models / "manifest.json").read_text())["classifiers"]


def test_held_out_detail_rescues_the_top_family_only_where_the_gate_hears_one_and_no_head_passes():
    import importlib.util
    from types import SimpleNamespace

    spec = importlib.util.spec_from_file_location("detail", Path(__file__).parents[1] / "scripts" / "held_out_detail.py")
    detail = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(detail)
    ens = SimpleNamespace(thresholds=[0.5, 0.5], gate_threshold=0.5, gate_override=None)
    heads = np.array([[0.4, 0.1], [0.6, 0.1], [0.3, 0.4], [0.1, 0.2]], dtype=np.float32)
    gate = np.array([0.9, 0.9, 0.2, 0.9], dtype=np.float32)
    scores, rescue = detail.top_rescued(ens, heads, gate)
    # window 0 and 3: the gate hears a family, no head passes: the top one is raised to its threshold;
    # window 1: a head passes (unchanged); window 2: the gate turns it down (every score 0)
    assert rescue.tolist() == [True, False, False, True]
    np.testing.assert_allclose(scores, [[0.5, 0.1], [0.6, 0.1], [0.0, 0.0], [0.1, 0.5]])
    assert detail.top_rescued(ens, heads, gate, share=0.7)[1].tolist() == [True, False, False, False]  # 0.4 >= 0.7 x 0.5 > 0.2
    assert not detail.top_rescued(ens, heads, gate, gate_at_least=0.95)[1].any()


def _gate_weights(models: Path):
    import keras

    layer = keras.saving.load_model(models / "gate.keras").get_layer("presence")
    w, b = layer.get_weights()
    return w[:, 0], float(b[0])


def test_held_out_detail_scores_each_instrument_group_on_single_notes(tmp_path):
    import importlib.util

    from conftest import compact_models
    from tagger.model.ensemble import Ensemble

    spec = importlib.util.spec_from_file_location("detail", Path(__file__).parents[1] / "scripts" / "held_out_detail.py")
    detail = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(detail)
    root = make_nsynth(tmp_path / "ds", instruments_per_family=2, notes=2, extra=False)
    models = compact_models(tmp_path / "m", list(FAMILIES), version="m", seed=3)
    lines = detail.programs(root, models, split=None)
    assert lines[0].startswith("| family | group | notes | right top family | tagged |")
    rows = [line.strip("| ").split(" | ") for line in lines[2:]]
    assert [r[:3] for r in rows] == [[f, f"{f}_{s}_{i:03d}", "2"] for f in FAMILIES for i, s in ((0, "acoustic"), (1, "electronic"))]
    ens = Ensemble.load(models)
    ds = nsynth.NoteDataset.load(root)
    notes = [n for n in ds.notes if n.instrument == "flute_acoustic_000"]
    probs = ens.predict(nsynth.load_note_audio(notes))
    flute = FAMILIES.index("flute")
    row = next(r for r in rows if r[1] == "flute_acoustic_000")
    assert row[3] == f"{np.mean(probs.argmax(axis=1) == flute):.0%}" and row[4] == f"{np.mean(ens.decide(probs)[:, flute]):.0%}"
    only = detail.programs(root, models, split=None, source="nosuch")
    assert len(only) == 2  # no group of that source


@pytest.mark.model
def test_held_out_detail_scores_the_silence_of_non_family_sounds(tmp_path):
    import importlib.util

    from conftest import compact_models
    from tagger.model.ensemble import Ensemble

    spec = importlib.util.spec_from_file_location("detail", Path(__file__).parents[1] / "scripts" / "held_out_detail.py")
    detail = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(detail)
    root = make_nsynth(tmp_path / "ds", instruments_per_family=1, notes=3)
    quiet = compact_models(tmp_path / "quiet", list(FAMILIES), version="quiet", seed=3, threshold=1.0)
    eager = compact_models(tmp_path / "eager", list(FAMILIES), version="eager", seed=3, threshold=0.0)
    lines = detail.silence(root, [quiet, eager], split=None)
    assert lines[0] == "| run | percussion (3 notes): no family | all |"
    assert lines[2:4] == ["| `quiet` | 100.0% | 100.0% |", "| `eager` | 0.0% | 0.0% |"]
    # which families the non-family notes trigger: none at threshold 1, every one at threshold 0
    assert lines[4:7] == ["", "| run | sound | " + " | ".join(FAMILIES) + " |", "|---|---|" + "---|" * len(FAMILIES)]
    assert lines[7:] == ["| `quiet` | percussion | " + " | ".join(["0.0%"] * len(FAMILIES)) + " |",
                         "| `eager` | percussion | " + " | ".join(["100.0%"] * len(FAMILIES)) + " |"]  # fmt: skip
    mid = compact_models(tmp_path / "mid", list(FAMILIES), version="mid", seed=3, threshold=0.5)
    ens = Ensemble.load(mid)
    notes = [n for n in nsynth.NoteDataset.load(root, families=detail.NON_FAMILY).notes]
    expected = np.mean(~ens.decide(ens.predict(nsynth.load_note_audio(notes))).any(axis=1))
    mid_lines = detail.silence(root, [mid], split=None)
    assert mid_lines[2] == f"| `mid` | {expected:.1%} | {expected:.1%} |"
    fired = ens.decide(ens.predict(nsynth.load_note_audio(notes))).mean(axis=0)
    assert mid_lines[-1] == "| `mid` | percussion | " + " | ".join(f"{v:.1%}" for v in fired) + " |"


def test_two_regime_thresholds_recover_quiet_single_notes_that_one_threshold_loses():
    import importlib.util

    from tagger.model.validation import ValidationSet

    spec = importlib.util.spec_from_file_location("detail", Path(__file__).parents[1] / "scripts" / "held_out_detail.py")
    detail = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(detail)
    rng = np.random.default_rng(0)
    n, fams = 400, 3
    kind = np.repeat([0, 2], n // 2).astype(np.int8)
    labels = np.zeros((n, fams), np.uint8)
    probs = np.zeros((n, fams), np.float32)
    for i in range(n):
        if kind[i] == 0:  # a mixture: two families play, strong scores, the third family scores 0.5
            on = rng.choice(fams, 2, replace=False)
            labels[i, on] = 1
            probs[i] = np.where(labels[i] == 1, 0.9, 0.5)
        else:  # a single note: a weak right score, nothing else
            labels[i, rng.integers(fams)] = 1
            probs[i] = np.where(labels[i] == 1, 0.4, 0.05)
    vs = ValidationSet(np.zeros((n, 1, 1), np.float16), labels, kind, labels.sum(axis=1))
    rows = [line.split(" | ") for line in detail.two_regime(vs, probs, bounds=(1.2,))[2:]]
    one, two = rows
    assert one[0] == "| one threshold per family" and two[0] == "| two, S = 1.2"
    assert float(one[4]) == 0.0 and float(two[4]) == 1.0  # single notes: lost by one threshold, found by two
    assert float(one[2]) == float(two[2]) == 1.0 and two[1] == "50%"  # mixtures right either way
    # precision 1 either way; F0.5 over every window: recall 400/600 with one threshold, 1 with two
    assert float(one[6]) == float(two[6]) == 1.0
    assert float(one[7].rstrip(" |")) == pytest.approx(1.25 * (2 / 3) / (0.25 + 2 / 3), abs=1e-3) and float(two[7].rstrip(" |")) == 1.0


@pytest.mark.model
def test_calibrate_aggregation_script_checks_the_rule_and_carries_it_into_the_production_fit(tmp_path, capsys):
    import importlib.util

    from conftest import compact_models
    from tagger.model import synth as S
    from tagger.model.ensemble import read_manifest, write_manifest

    spec = importlib.util.spec_from_file_location("calib", Path(__file__).parents[1] / "scripts" / "calibrate_aggregation.py")
    calib = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(calib)
    root = make_nsynth(tmp_path / "ds", instruments_per_family=1, notes=2)
    S.NotePool.build(nsynth.NoteDataset.load(root), tmp_path / "pool")
    run = compact_models(tmp_path / "run", list(FAMILIES), version="held-out", seed=3)
    prod = compact_models(tmp_path / "prod", list(FAMILIES), version="production", seed=4)
    manifest = read_manifest(prod)
    write_manifest(prod, {**manifest, "reference": {"version": "held-out"}})
    args = [str(run), "--pool", str(tmp_path / "pool"), "--left-out", str(tmp_path / "pool"), "--tracks", "6"]
    # a dry run prints the figures and leaves every manifest as it was
    run_before, prod_before = (run / "manifest.json").read_bytes(), (prod / "manifest.json").read_bytes()
    assert calib.main([*args, "--dry-run"]) == 0
    assert sum(line.startswith("| 6 ") for line in capsys.readouterr().out.splitlines()) == 9  # 3 rules x 3 track sets
    assert (run / "manifest.json").read_bytes() == run_before and (prod / "manifest.json").read_bytes() == prod_before
    with pytest.raises(SystemExit):
        calib.main([*args, "--dry-run", "--into", str(prod)])
    assert "--dry-run writes nothing" in capsys.readouterr().err
    assert calib.main([*args, "--into", str(prod), "--version", "production-2", "--drum-beats",
                      "--compare", "0.5"]) == 0  # fmt: skip
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| 6 ")]
    # four rules on calibration tracks, other tracks, left-out tracks, and the last two over drum beats
    assert len(rows) == 20 and sum("over drum beats" in row for row in rows) == 8
    assert sum(": quantile 0.5 | 0.5 | 1 |" in row for row in rows) == 5
    chosen = read_manifest(run)["aggregation_calibration"]
    assert chosen["tracks"] == 6 and chosen["rule"].startswith("the most precise rule whose F0.5")
    fbeta_best = chosen["best"]["fbeta_best"]
    assert fbeta_best["fbeta"] >= max(chosen["jaccard_best"]["fbeta"], chosen["default"]["fbeta"], chosen["best"]["fbeta"])
    assert chosen["best"]["qualifies"] and chosen["best"]["precision"] >= fbeta_best["precision"]
    assert rows[0] == calib._row("6 calibration tracks (seed 7): chosen", chosen["best"])  # the same tracks again
    assert rows[1] == calib._row("6 calibration tracks (seed 7): F0.5-best", fbeta_best)
    after = read_manifest(prod)
    assert after["aggregation"] == read_manifest(run)["aggregation"]
    assert after["reference"]["aggregation_calibration"] == chosen and after["version"] == "production-2"
    # a production fit of another reference is refused, before any work
    write_manifest(prod, {**after, "reference": {"version": "other"}})
    assert calib.main([*args, "--into", str(prod)]) == 1
    assert "was not fitted with" in capsys.readouterr().err
    assert read_manifest(prod)["aggregation"] == after["aggregation"]
