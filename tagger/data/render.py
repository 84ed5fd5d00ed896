"""Render an NSynth-format note dataset from SoundFonts with FluidSynth.

Every program of the General MIDI map (`tagger.data.gm`) is played over its plausible pitch range at
NSynth's velocities: 4 s notes held for 3 s, reverb and chorus off, rendered at 48 kHz by the
`fluidsynth` command and resampled to 16 kHz with soxr. Notes whose level is near silence are
dropped. The output layout is NSynth's (``examples.json`` + ``audio/<note_str>.wav``) with a few extra
fields (soundfont, program, bank) that the reader ignores when absent.
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tagger import constants as C
from tagger.data.defaults import NSYNTH_VELOCITIES
from tagger.data.examples import merge_examples, note_record, read_examples, render_in_parallel, rendered_soundfonts
from tagger.data.gm import Program, all_programs
from tagger.errors import DatasetError, UserError
from tagger.outputs import write_atomic

HOLD_SECONDS = 3.0
SLOT_SECONDS = 4.25
"""Each note gets a 4.25 s slot: 3 s held, release until 4 s, all-sound-off, then a short gap."""
SILENT_NOTE_DBFS = -65.0
"""Notes whose RMS over their first 3 s is below this level are dropped as near-silent."""

ALLOWED_SOUNDFONTS = {
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2",),
    "musescore": (
        "/usr/share/sounds/sf3/MuseScore_General.sf3",
        "/usr/share/sounds/sf3/MuseScore_General_Full.sf3",
        "/usr/share/sounds/sf2/MuseScore_General.sf2",
    ),
    "generaluser": ("/usr/share/minuet/soundfonts/GeneralUser-v1.47.sf2",),  # Debian minuet-data
    "opl3": ("/usr/share/sounds/sf2/OPL-3_FM_128M.sf2",),  # Debian opl3-soundfont (FM synthesis)
}
"""The General MIDI SoundFonts allowed for training data (DEVELOPERS.md, issue 15); every other
sample library is reserved for independent evaluation and never rendered here."""

DRUM_SOUNDFONTS = {
    "blackpearl": ("/usr/share/sounds/sf2/Black_Pearl_4_LV2.sf2",),  # Debian avldrums.lv2-soundfont
    "redzeppelin": ("/usr/share/sounds/sf2/Red_Zeppelin_4_LV2.sf2",),
}
"""Drum-kit SoundFonts (one kit each, as preset 0 of bank 0), rendered as negatives only."""

DRUM_KEYS = (35, 81)
"""The General MIDI drum keys a kit is played over."""

_TICKS_PER_BEAT = 480
_TEMPO_US = 500_000  # 120 bpm: one tick = 1/960 s
_TICKS_PER_SECOND = _TICKS_PER_BEAT * 1_000_000 // _TEMPO_US


@dataclass(frozen=True)
class NoteSpec:
    pitch: int
    velocity: int


def default_soundfonts() -> dict[str, Path]:
    """The training SoundFonts installed by Debian's packages (key -> path)."""
    return _installed(ALLOWED_SOUNDFONTS)


def default_drum_soundfonts() -> dict[str, Path]:
    """The installed drum-kit SoundFonts (key -> path), rendered as percussion negatives."""
    return _installed(DRUM_SOUNDFONTS)


def _installed(table: dict[str, tuple[str, ...]]) -> dict[str, Path]:
    found = {}
    for key, candidates in table.items():
        for cand in candidates:
            if os.path.exists(cand):
                found[key] = Path(cand)
                break
    return found


def soundfont_key(path: str | os.PathLike) -> str:
    """A short, stable key for a SoundFont file name ('fluidr3', 'musescore' or a slug of the name)."""
    stem = Path(path).name.lower()
    if stem.startswith("fluidr3"):
        return "fluidr3"
    if stem.startswith("musescore"):
        return "musescore"
    if stem.startswith("generaluser"):
        return "generaluser"
    if stem.startswith(("opl-3", "opl3")):
        return "opl3"
    return "".join(ch for ch in Path(path).stem.lower() if ch.isalnum())[:16] or "soundfont"


def _vlq(value: int) -> bytes:
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def write_midi(path: Path, events: Sequence[tuple[float, bytes]]) -> None:
    """Write a format-0 Standard MIDI File from (seconds, raw message) events sorted by time."""
    track = bytearray()
    track += b"\x00\xff\x51\x03" + _TEMPO_US.to_bytes(3, "big")
    last = 0
    for seconds, message in events:
        tick = int(round(seconds * _TICKS_PER_SECOND))
        track += _vlq(tick - last) + message
        last = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, _TICKS_PER_BEAT)
    path.write_bytes(header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track))


def note_events(program: Program, notes: Sequence[NoteSpec]) -> list[tuple[float, bytes]]:
    """MIDI events playing each note in its own slot (bank select and program change first)."""
    ch = 9 if program.is_drum_kit else 0
    bank = 0 if program.is_drum_kit else program.bank
    events: list[tuple[float, bytes]] = [
        (0.0, bytes([0xB0 | ch, 0, bank])),  # bank select MSB (the drum channel selects kits by program)
        (0.0, bytes([0xC0 | ch, program.program])),
    ]
    for i, note in enumerate(notes):
        t0 = 0.1 + i * SLOT_SECONDS
        events.append((t0, bytes([0x90 | ch, note.pitch, note.velocity])))
        events.append((t0 + HOLD_SECONDS, bytes([0x80 | ch, note.pitch, 0])))
        events.append((t0 + C.WINDOW_SECONDS, bytes([0xB0 | ch, 120, 0])))  # all sound off
    events.append((0.1 + len(notes) * SLOT_SECONDS, bytes([0xB0 | ch, 121, 0])))
    return events


def fluidsynth_command(soundfont: Path, midi: Path, out_raw: Path, *, gain: float = 0.5) -> list[str]:
    exe = shutil.which("fluidsynth")
    if exe is None:
        raise UserError("the 'fluidsynth' program is not installed (Debian: apt-get install fluidsynth)")
    return [
        exe, "-n", "-i", "-q",
        "-R", "0", "-C", "0",  # reverb and chorus off (FluidSynth turns them on by default)
        "-g", str(gain),
        "-r", str(C.RENDER_SAMPLE_RATE),
        "-o", "synth.polyphony=256",
        "-o", "synth.cpu-cores=1",
        "-T", "raw", "-O", "float", "-E", "little",
        "-F", str(out_raw),
        str(soundfont), str(midi),
    ]  # fmt: skip


def render_notes(soundfont: Path, program: Program, notes: Sequence[NoteSpec], *, gain: float = 0.5) -> np.ndarray:
    """Render notes of one program; returns float32 mono audio at 16 kHz, shape (len(notes), 64000)."""
    import soxr

    with tempfile.TemporaryDirectory(prefix="tagger-render-") as tmp:
        midi = Path(tmp) / "notes.mid"
        raw = Path(tmp) / "notes.raw"
        write_midi(midi, note_events(program, notes))
        proc = subprocess.run(fluidsynth_command(soundfont, midi, raw, gain=gain), capture_output=True, text=True)
        if proc.returncode != 0 or not raw.exists():
            raise DatasetError(soundfont, f"fluidsynth failed on program {program.program}: {proc.stderr.strip()[-300:]}")
        stereo = np.fromfile(raw, dtype="<f4")
    mono = stereo.reshape(-1, 2).mean(axis=1)
    sr_in = C.RENDER_SAMPLE_RATE
    n_in = int(C.WINDOW_SECONDS * sr_in)
    out = np.zeros((len(notes), C.WINDOW_SAMPLES), dtype=np.float32)
    for i in range(len(notes)):
        start = int(round((0.1 + i * SLOT_SECONDS) * sr_in))
        chunk = mono[start : start + n_in]
        if len(chunk) < n_in:
            chunk = np.pad(chunk, (0, n_in - len(chunk)))
        res = soxr.resample(chunk, sr_in, C.SAMPLE_RATE, quality="HQ")
        out[i, : min(len(res), C.WINDOW_SAMPLES)] = res[: C.WINDOW_SAMPLES]
    return out


def rms_dbfs(audio: np.ndarray) -> np.ndarray:
    """RMS level in dB relative to full scale along the last axis (-inf-safe, floor -200 dB)."""
    rms = np.sqrt(np.mean(np.square(audio, dtype=np.float64), axis=-1))
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def program_notes(program: Program, *, velocities: Sequence[int], pitch_step: int) -> list[NoteSpec]:
    pitches = range(program.low, program.high + 1, max(1, pitch_step))
    return [NoteSpec(p, v) for p in pitches for v in velocities]


def instrument_str(program: Program, sf_key: str) -> str:
    """NSynth-style instrument name: <family>_<source>_<soundfont><program>, unique per instrument;
    a variation preset (bank 1-127) adds ``v<bank>``."""
    kind = "kit" if program.is_drum_kit else ""
    variant = f"v{program.bank:03d}" if 0 < program.bank < 128 else ""
    return f"{program.family}_{program.source}_{sf_key}{kind}{program.program:03d}{variant}"


def soundfont_presets(path: str | os.PathLike) -> set[tuple[int, int]]:
    """The (bank, program) pairs a SoundFont (.sf2, or .sf3 which shares its RIFF layout) defines,
    read from its preset headers (the ``phdr`` chunk of ``pdta``) without loading the samples."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"sfbk":
                raise DatasetError(path, "not a SoundFont (no RIFF 'sfbk' header)")
            while True:
                chunk = fh.read(12)
                if len(chunk) < 8:
                    raise DatasetError(path, "no preset headers (pdta/phdr) found")
                cid, size = chunk[:4], struct.unpack("<I", chunk[4:8])[0]
                if cid == b"LIST" and chunk[8:12] == b"pdta":
                    body = fh.read(size - 4)
                    break
                fh.seek(size + (size & 1) - 4, os.SEEK_CUR)
    except OSError as exc:
        raise DatasetError(path, f"cannot read the SoundFont: {exc.strerror or exc}") from None
    pos = 0
    while pos + 8 <= len(body):
        sid, ssz = body[pos : pos + 4], struct.unpack("<I", body[pos + 4 : pos + 8])[0]
        if sid == b"phdr":
            records = body[pos + 8 : pos + 8 + ssz]
            # 38-byte records; the last one is the terminal "EOP" record
            presets = set()
            for i in range(0, len(records) - 38, 38):
                program, bank = struct.unpack("<HH", records[i + 20 : i + 24])
                presets.add((bank, program))
            return presets
        pos += 8 + ssz + (ssz & 1)
    raise DatasetError(path, "no preset headers (pdta/phdr) found")


class _RenderJob(NamedTuple):
    """One instrument to render: a program (or a drum kit) of one SoundFont over its notes."""

    sf_key: str
    soundfont: Path
    program: Program
    notes: list[NoteSpec]
    audio_dir: Path
    gain: float


def _render_program(job: _RenderJob) -> list[dict]:
    """Render one instrument's notes into `audio_dir`; the examples.json rows of those not dropped as
    near-silent (`SILENT_NOTE_DBFS`)."""
    import soundfile as sf

    sf_key, soundfont, program, notes, audio_dir, gain = job
    audio = render_notes(soundfont, program, notes, gain=gain)
    levels = rms_dbfs(audio[:, : int(HOLD_SECONDS * C.SAMPLE_RATE)])
    inst = instrument_str(program, sf_key)
    rows = []
    for note, clip, level in zip(notes, audio, levels):
        if level < SILENT_NOTE_DBFS:
            continue
        note_str = f"{inst}-{note.pitch:03d}-{note.velocity:03d}"
        sf.write(os.fsencode(audio_dir / f"{note_str}.wav"), np.clip(clip, -1, 1), C.SAMPLE_RATE, subtype="PCM_16")  # (bytes: a name not UTF-8)
        rows.append(
            note_record(
                note_str=note_str, pitch=note.pitch, velocity=note.velocity, instrument=inst, family=program.family,
                source=program.source, level=level, soundfont=sf_key, program=program.program, bank=program.bank,
            )  # fmt: skip
        )
    return rows


def render_dataset(
    out_dir: str | os.PathLike,
    *,
    soundfonts: dict[str, Path] | None = None,
    programs: Iterable[Program] | None = None,
    drum_soundfonts: dict[str, Path] | None = None,
    velocities: Sequence[int] = NSYNTH_VELOCITIES,
    pitch_step: int = 1,
    negative_pitch_step: int = 3,
    negative_velocities: Sequence[int] = (50, 100),
    gain: float = 0.5,
    jobs: int = -1,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Render every (soundfont, program) into an NSynth-format dataset folder.

    ``drum_soundfonts`` are one-kit SoundFonts (their presets are drum kits, played on a melodic
    channel over the GM drum keys) rendered as percussion negatives.
    Negatives (drum kits, synths, effects, ethnic instruments) are rendered more sparsely
    (``negative_pitch_step``, ``negative_velocities``): they only need to cover the sound space.
    A program whose (bank, program) preset a SoundFont lacks is skipped for it (FluidSynth would
    silently play another preset). Instruments already in ``out_dir/examples.json`` are kept and
    not rendered again, so adding programs to a dataset renders only the new ones.
    Returns a summary dict (notes per family and soundfont, dropped notes, skipped presets).
    """
    soundfonts = soundfonts_to_render(soundfonts)
    out = Path(out_dir)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    progs = list(programs) if programs is not None else list(all_programs())
    existing = read_examples(out / "examples.json")
    have = {r["instrument_str"] for r in existing.values()}
    jobs_list, missing = _program_jobs(soundfonts, progs, have=have, audio_dir=audio_dir, gain=gain, velocities=velocities,
                                       pitch_step=pitch_step, negative_velocities=negative_velocities,
                                       negative_pitch_step=negative_pitch_step)  # fmt: skip
    jobs_list += _drum_kit_jobs(drum_soundfonts or {}, have=have, audio_dir=audio_dir, gain=gain, velocities=negative_velocities)
    jobs_list.sort(key=lambda j: -len(j.notes))  # longest jobs first so both cores stay busy to the end
    requested = sum(len(j.notes) for j in jobs_list)
    new_rows, dropped = render_in_parallel(_render_counted, jobs_list, jobs=jobs, progress=progress)
    merge_examples(out, new_rows)
    summary = summarise(sorted([*existing.values(), *new_rows], key=lambda r: r["note_str"]))  # (families in that order)
    summary["kept_notes"] = len(existing)
    summary["requested_notes"] = requested
    summary["dropped_silent"] = dropped
    summary["missing_presets"] = sorted(missing)
    earlier = rendered_soundfonts(out) if existing else {}
    used = {**soundfonts, **(drum_soundfonts or {})}
    summary["soundfonts"] = {**earlier, **{k: str(v) for k, v in used.items()}}
    write_atomic(out / "render.json", json.dumps(summary, indent=1))  # (nor one shared by a hard link)
    return summary


def soundfonts_to_render(soundfonts: dict[str, Path] | None) -> dict[str, Path]:
    """The SoundFonts given, else the training ones installed (`default_soundfonts`); none is a
    `UserError` saying what to install, a file that is not a SoundFont a `DatasetError` naming it
    (its preset headers read: `soundfont_presets`)."""
    soundfonts = soundfonts if soundfonts is not None else default_soundfonts()
    if not soundfonts:
        raise UserError(
            "no SoundFont found: install fluid-soundfont-gm and musescore-general-soundfont "
            "or pass --soundfont PATH"
        )
    for path in soundfonts.values():
        soundfont_presets(path)
    return soundfonts


def _program_jobs(soundfonts: dict[str, Path], programs: Sequence[Program], *, have: set[str], audio_dir: Path, gain: float,
                  velocities: Sequence[int], pitch_step: int, negative_velocities: Sequence[int],
                  negative_pitch_step: int) -> tuple[list[_RenderJob], list[str]]:  # fmt: skip
    """A job per (SoundFont, program) not yet in the dataset (`have`: instrument_str), a negative
    program's notes the sparser ones; and the instruments whose preset the SoundFont lacks (skipped:
    FluidSynth would silently play another preset)."""
    jobs_list: list[_RenderJob] = []
    missing: list[str] = []
    for sf_key, sf_path in soundfonts.items():
        presets = soundfont_presets(sf_path)
        for prog in programs:
            if (prog.bank, prog.program) not in presets:
                missing.append(instrument_str(prog, sf_key))
                continue
            if instrument_str(prog, sf_key) in have:
                continue
            negative = prog.family not in _family_names()
            notes = program_notes(
                prog,
                velocities=negative_velocities if negative else velocities,
                pitch_step=negative_pitch_step if negative else pitch_step,
            )
            jobs_list.append(_RenderJob(sf_key, Path(sf_path), prog, notes, audio_dir, gain))
    return jobs_list, missing


def _drum_kit_jobs(drum_soundfonts: dict[str, Path], *, have: set[str], audio_dir: Path, gain: float,
                   velocities: Sequence[int]) -> list[_RenderJob]:  # fmt: skip
    """A job per preset of each one-kit SoundFont not yet in the dataset: the kit played on a
    melodic channel over every GM drum key (`DRUM_KEYS`) at `velocities`, as a percussion negative."""
    jobs_list = []
    for sf_key, sf_path in drum_soundfonts.items():
        for bank, number in sorted(soundfont_presets(sf_path)):
            kit = Program(number, f"{sf_key} drum kit", "percussion", *DRUM_KEYS, bank=bank)
            if instrument_str(kit, sf_key) in have:
                continue
            notes = program_notes(kit, velocities=velocities, pitch_step=1)
            jobs_list.append(_RenderJob(sf_key, Path(sf_path), kit, notes, audio_dir, gain))
    return jobs_list


def _render_counted(job: _RenderJob) -> tuple[list[dict], int]:
    """`_render_program`'s rows and how many of the job's notes it dropped as near-silent (the job
    `render_in_parallel` runs)."""
    rows = _render_program(job)
    return rows, len(job.notes) - len(rows)


def summarise(rows: Iterable[dict]) -> dict:
    per: dict[str, dict[str, int]] = {}
    for r in rows:
        per.setdefault(r["instrument_family_str"], {}).setdefault(r["soundfont"], 0)
        per[r["instrument_family_str"]][r["soundfont"]] += 1
    return {"notes_per_family": per, "notes": sum(sum(v.values()) for v in per.values())}


def _family_names() -> tuple[str, ...]:
    from tagger.instruments import FAMILIES

    return FAMILIES
