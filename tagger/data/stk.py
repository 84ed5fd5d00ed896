"""Render notes of the Synthesis ToolKit's physical and FM models (Debian's ``stk`` package).

Each note is one run of ``stk-demo INSTRUMENT -s 48000 -ow note.wav -if note.ski``: a SKINI score
sets the model's physical parameters with ControlChange messages, holds the note for 3 s and lets it
ring for 1 s more. The first 4 s are resampled to 16 kHz with soxr; notes below `SILENT_NOTE_DBFS`
over their first 3 s are dropped, as for the SoundFont renderer.

Every voice (an STK class, or a ModalBar preset) is rendered in a few *variants*: physical parameters
(breath pressure, reed stiffness, bow pressure, stick hardness, vibrato, ...) drawn at random with a
seed, each an instrument of its own (``reed_acoustic_stkclarinet01``). All variants of one STK class
share a split ``group`` (``stk-clarinet``), so a split never puts a class on both sides.

Models left out: Brass (silent below MIDI 72 in this build whatever the lip tension), BlowHole and
Recorder (their pitch is off by one to several semitones), BandedWG and Mesh2D (near-silent or
pitchless with default settings), Simple and Resonate (test signals more than instruments).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.data.defaults import NOTES_PER_VARIANT, VARIANTS_PER_VOICE
from tagger.data.examples import existing_instruments, merge_examples, note_record, render_in_parallel
from tagger.data.gm import SOURCE_ACOUSTIC, SOURCE_ELECTRONIC
from tagger.data.render import HOLD_SECONDS, SILENT_NOTE_DBFS, rms_dbfs
from tagger.errors import DatasetError, UserError

SOUNDFONT_KEY = "stk"
"""The ``soundfont`` field of STK notes (the renderer's name for a sample library)."""
VELOCITY_RANGE = (50, 127)


@dataclass(frozen=True)
class StkVoice:
    """One playable STK model, with the family it stands for and the parameters a variant draws."""

    name: str
    """Short key used in instrument names (``clarinet``, ``marimba``)."""
    stk_class: str
    """The instrument argument of stk-demo (``Clarinet``, ``ModalBar``)."""
    family: str
    """A family, or a negative category (percussion, synth, effects, ethnic)."""
    low: int
    high: int
    """MIDI pitch range (inclusive) that notes are drawn from."""
    source: str = SOURCE_ACOUSTIC
    controls: dict[int, tuple[int, int]] = field(default_factory=dict)
    """SKINI controller number -> (low, high) range each variant draws a value from."""
    fixed: dict[int, int] = field(default_factory=dict)
    """Controllers every note of the voice sends (e.g. ModalBar's preset, controller 16)."""
    pitch_offset: float = 0.0
    """Semitones added to the played note so that the sounding pitch is the labelled one
    (PercFlut's carrier sounds a fifth above the note it is given)."""

    @property
    def group(self) -> str:
        return f"stk-{self.stk_class.lower()}"


_VIB = {11: (20, 80), 1: (0, 35)}  # vibrato (or LFO) frequency and depth
_A, _E = SOURCE_ACOUSTIC, SOURCE_ELECTRONIC

STK_VOICES: tuple[StkVoice, ...] = (
    # reed: 2 reed stiffness, 4 noise gain, (sax) 26 reed aperture, 29/1 vibrato
    StkVoice("clarinet", "Clarinet", "reed", 50, 94, _A, {2: (35, 100), 4: (5, 45), **_VIB}),
    StkVoice("saxofony", "Saxofony", "reed", 44, 80, _A, {2: (30, 100), 26: (30, 90), 4: (5, 40), 29: (20, 80), 1: (0, 30)}),
    # flute: 4 noise gain, vibrato
    StkVoice("flute", "Flute", "flute", 60, 96, _A, {4: (5, 50), **_VIB}),
    StkVoice("blowbotl", "BlowBotl", "flute", 60, 84, _A, {4: (5, 60), **_VIB}),
    StkVoice("percflut", "PercFlut", "flute", 60, 96, _A, {2: (20, 100), 4: (20, 100), **_VIB}, pitch_offset=-7.02),
    # string: 2 bow pressure, 4 bow position, vibrato
    StkVoice("bowed", "Bowed", "string", 36, 100, _A, {2: (30, 110), 4: (15, 100), 11: (20, 80), 1: (0, 10)}),
    # guitar (plucked strings): Karplus-Strong models
    StkVoice("plucked", "Plucked", "guitar", 40, 88, _A),
    StkVoice("mandolin", "Mandolin", "guitar", 48, 84, _A, {2: (20, 110), 4: (15, 110), 11: (70, 120), 1: (0, 30)}),
    StkVoice("stifkarp", "StifKarp", "guitar", 40, 88, _A, {4: (10, 110), 11: (90, 127)}),  # no 1 (stretch): it detunes
    # keyboard: FM electric pianos (2 modulator index, 4 crossfade, 11/1 LFO)
    StkVoice("rhodey", "Rhodey", "keyboard", 28, 100, _E, {2: (20, 100), 4: (20, 100), **_VIB}),
    StkVoice("wurley", "Wurley", "keyboard", 28, 100, _E, {2: (20, 100), 4: (20, 100), **_VIB}),
    # organ: FM Hammond
    StkVoice("beethree", "BeeThree", "organ", 36, 96, _E, {2: (20, 100), 4: (20, 100), **_VIB}),
    # mallet: FM tubular bell and the ModalBar presets (2 stick hardness, 4 stick position, 8 direct mix)
    StkVoice("tubebell", "TubeBell", "mallet", 60, 84, _A, {2: (20, 100), 4: (20, 100)}),
    StkVoice("marimba", "ModalBar", "mallet", 36, 96, _A, {2: (30, 115), 4: (20, 100), 8: (0, 50)}, {16: 0}),
    StkVoice("vibraphone", "ModalBar", "mallet", 53, 89, _A, {2: (30, 115), 4: (20, 100), 8: (0, 50), 1: (0, 40)}, {16: 1}),
    # vocal: FM voices (2 vowel, 4 spectral tilt) and the formant singer
    StkVoice("fmvoices", "FMVoices", "vocal", 40, 84, _A, {2: (0, 127), 4: (20, 100), **_VIB}),
    StkVoice("voicform", "VoicForm", "vocal", 40, 84, _A, dict(_VIB)),
    # negatives
    StkVoice("sitar", "Sitar", "ethnic", 48, 84, _A),
    StkVoice("agogo", "ModalBar", "percussion", 48, 84, _A, {2: (30, 115), 4: (20, 100)}, {16: 2}),
    StkVoice("woodblock", "ModalBar", "percussion", 48, 84, _A, {2: (30, 115), 4: (20, 100)}, {16: 3}),
    StkVoice("clump", "ModalBar", "percussion", 48, 84, _A, {2: (30, 115), 4: (20, 100)}, {16: 8}),
    StkVoice("shakers", "Shakers", "percussion", 36, 67, _A, {4: (30, 110), 11: (20, 110)}),
    StkVoice("drummer", "Drummer", "percussion", 35, 81, _A),
    StkVoice("hevymetl", "HevyMetl", "synth", 36, 84, SOURCE_ELECTRONIC, {2: (20, 100), 4: (20, 100), **_VIB}),
    StkVoice("moog", "Moog", "synth", 36, 84, SOURCE_ELECTRONIC, {2: (20, 110), 4: (20, 110), **_VIB}),
    StkVoice("whistle", "Whistle", "effects", 60, 96, _A, {4: (10, 80), 11: (20, 80), 1: (0, 60)}),
)
"""The STK voices rendered by default, their families and pitch ranges (gm_families.md)."""


@dataclass(frozen=True)
class StkVariant:
    """One voice with one drawn set of controller values: an instrument of the dataset."""

    voice: StkVoice
    index: int
    controls: dict[int, int]

    @property
    def instrument_str(self) -> str:
        return f"{self.voice.family}_{self.voice.source}_{SOUNDFONT_KEY}{self.voice.name}{self.index:02d}"


@dataclass(frozen=True)
class StkNote:
    pitch: int
    velocity: int


def stk_demo() -> str | None:
    """Path of the stk-demo program, or None when STK is not installed."""
    return shutil.which("stk-demo")


def draw_variants(voice: StkVoice, *, count: int = VARIANTS_PER_VOICE, seed: int = 0) -> list[StkVariant]:
    """`count` parameter sets of `voice`, drawn uniformly in each controller's range (one set when the
    voice has no controllers to vary). The draw depends only on the seed and the voice's name."""
    rng = np.random.default_rng([seed, zlib.crc32(voice.name.encode())])
    n = count if voice.controls else 1
    out = []
    for i in range(n):
        values = {cc: int(rng.integers(lo, hi + 1)) for cc, (lo, hi) in sorted(voice.controls.items())}
        out.append(StkVariant(voice, i + 1, {**voice.fixed, **values}))
    return out


def draw_notes(variant: StkVariant, *, count: int = NOTES_PER_VARIANT, seed: int = 0) -> list[StkNote]:
    """`count` distinct (pitch, velocity) notes spread over the voice's range, velocities in 50..127."""
    voice = variant.voice
    rng = np.random.default_rng([seed, zlib.crc32(variant.instrument_str.encode())])
    span = np.arange(voice.low, voice.high + 1)
    pitches = np.concatenate([rng.permutation(span) for _ in range(-(-count // len(span)))])[:count]
    notes = {}
    for p in pitches:
        for _ in range(8):  # a repeated pitch gets another velocity
            v = int(rng.integers(VELOCITY_RANGE[0], VELOCITY_RANGE[1] + 1))
            if (int(p), v) not in notes:
                notes[(int(p), v)] = StkNote(int(p), v)
                break
    return sorted(notes.values(), key=lambda n: (n.pitch, n.velocity))


def skini_score(variant: StkVariant, note: StkNote) -> str:
    """The SKINI score of one note: controllers, NoteOn, NoteOff after 3 s, then 1 s of silence
    (a velocity-0 note marks the end; SKINI times are deltas in seconds)."""
    lines = [f"ControlChange 0.0 1 {cc} {value}" for cc, value in variant.controls.items()]
    played = note.pitch + variant.voice.pitch_offset
    lines.append(f"NoteOn 0.0 1 {played:.2f} {note.velocity}")
    lines.append(f"NoteOff {HOLD_SECONDS:.1f} 1 {played:.2f} 64")
    lines.append(f"NoteOn {C.WINDOW_SECONDS - HOLD_SECONDS:.1f} 1 0 0")
    return "\n".join(lines) + "\n"


def render_note(variant: StkVariant, note: StkNote, *, workdir: str | os.PathLike | None = None) -> np.ndarray:
    """Render one note; float32 mono 16 kHz audio [shape=(64000,)]."""
    import soundfile as sf
    import soxr

    exe = stk_demo()
    if exe is None:
        raise UserError("the 'stk-demo' program is not installed (Debian: apt-get install stk)")
    with tempfile.TemporaryDirectory(prefix="tagger-stk-", dir=workdir) as tmp:
        ski = Path(tmp) / "note.ski"
        wav = Path(tmp) / "note.wav"
        ski.write_text(skini_score(variant, note))
        proc = subprocess.run(
            [exe, variant.voice.stk_class, "-s", str(C.RENDER_SAMPLE_RATE), "-ow", str(wav), "-if", str(ski)],
            capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=tmp,
        )  # fmt: skip
        if proc.returncode != 0 or not wav.is_file():
            raise DatasetError(wav, f"stk-demo {variant.voice.stk_class} failed: {proc.stderr.strip()[-300:]}")
        data, rate = sf.read(os.fsencode(wav), dtype="float32", always_2d=True)  # (bytes: a name not UTF-8)
    mono = data.mean(axis=1)[: int(C.WINDOW_SECONDS * rate)]
    mono = np.nan_to_num(mono, nan=0.0, posinf=0.0, neginf=0.0)
    mono = _remove_dc(mono, rate)
    res = soxr.resample(mono, rate, C.SAMPLE_RATE, quality="HQ") if rate != C.SAMPLE_RATE else mono
    out = np.zeros(C.WINDOW_SAMPLES, dtype=np.float32)
    out[: min(len(res), C.WINDOW_SAMPLES)] = res[: C.WINDOW_SAMPLES]
    peak = float(np.max(np.abs(out)))
    if peak > 0.99:  # some models overshoot full scale: scale the note down rather than clip it
        out *= 0.99 / peak
    return out


def _remove_dc(audio: np.ndarray, rate: int) -> np.ndarray:
    """High-pass at 20 Hz: several models (Plucked, Sitar, ModalBar) leave a decaying DC offset."""
    from scipy.signal import butter, sosfilt

    sos = butter(2, 20.0, btype="highpass", fs=rate, output="sos")
    return sosfilt(sos, audio).astype(np.float32)


def _render_variant(job: tuple[StkVariant, list[StkNote], Path]) -> tuple[list[dict], int]:
    import soundfile as sf

    variant, notes, audio_dir = job
    inst = variant.instrument_str
    rows = []
    for note in notes:
        clip = render_note(variant, note)
        level = float(rms_dbfs(clip[: int(HOLD_SECONDS * C.SAMPLE_RATE)]))
        if level < SILENT_NOTE_DBFS:
            continue
        note_str = f"{inst}-{note.pitch:03d}-{note.velocity:03d}"
        sf.write(os.fsencode(audio_dir / f"{note_str}.wav"), clip, C.SAMPLE_RATE, subtype="PCM_16")
        rows.append(
            note_record(
                note_str=note_str, pitch=note.pitch, velocity=note.velocity, instrument=inst,
                family=variant.voice.family, source=variant.voice.source, level=level, soundfont=SOUNDFONT_KEY,
                group=variant.voice.group, stk_class=variant.voice.stk_class,
                stk_controls={str(k): v for k, v in variant.controls.items()},
            )  # fmt: skip
        )
    return rows, len(notes) - len(rows)


def render_stk(
    out_dir: str | os.PathLike,
    *,
    voices: Iterable[StkVoice] = STK_VOICES,
    variants: int = VARIANTS_PER_VOICE,
    notes_per_variant: int = NOTES_PER_VARIANT,
    seed: int = 0,
    jobs: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Add STK notes to the NSynth-format dataset in `out_dir` (created when missing).

    Variants already in ``examples.json`` are kept and not rendered again. Returns a summary: notes per
    family of the whole dataset, new notes and instruments per family, dropped near-silent notes.
    """

    if stk_demo() is None:
        raise UserError("the 'stk-demo' program is not installed (Debian: apt-get install stk)")
    out = Path(out_dir)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    have = existing_instruments(out)
    job_list = []
    for voice in voices:
        for variant in draw_variants(voice, count=variants, seed=seed):
            if variant.instrument_str in have:
                continue
            job_list.append((variant, draw_notes(variant, count=notes_per_variant, seed=seed), audio_dir))
    rows, dropped = render_in_parallel(_render_variant, job_list, jobs=jobs, progress=progress)
    total = merge_examples(out, rows)
    new: dict[str, dict[str, int]] = {}
    for r in rows:
        fam = new.setdefault(r["instrument_family_str"], {"notes": 0, "instruments": 0})
        fam["notes"] += 1
    for fam, insts in _instruments_per_family(rows).items():
        new[fam]["instruments"] = insts
    return {"source": SOUNDFONT_KEY, "new": dict(sorted(new.items())), "new_notes": len(rows),
            "dropped_silent": dropped, "notes": total}  # fmt: skip


def _instruments_per_family(rows: Sequence[dict]) -> dict[str, int]:
    seen: dict[str, set[str]] = {}
    for r in rows:
        seen.setdefault(r["instrument_family_str"], set()).add(r["instrument_str"])
    return {k: len(v) for k, v in seen.items()}

