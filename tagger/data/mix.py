"""The paper's polyphonic protocol (Table V): mixtures of 0..10 notes from distinct families.

For each level k, N mixtures each sum k notes whose families are all different, at random relative
gains and onsets, normalised to a common peak, and labelled with the 10-bit presence array.
`tagger dataset mix` writes them as WAV files plus a ``labels.json`` manifest, which
`tagger evaluate` also reads.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np

from tagger import constants as C
from tagger.data.defaults import MIXTURES_PER_LEVEL, MixSettings
from tagger.data.nsynth import Note, NoteDataset, load_note_audio, read_json
from tagger.errors import DatasetError, UserError
from tagger.instruments import FAMILIES, encode, to_bits
from tagger.outputs import folder_lock, write_atomic

MANIFEST = "labels.json"
INCOMPLETE = ".labels.json.incomplete"
"""Written before a mixture set's files, removed after its manifest: the files of an interrupted run."""
PEAK = 0.9


def mix_clips(clips: np.ndarray, *, gains_db: Sequence[float], onsets: Sequence[int], peak: float = PEAK) -> np.ndarray:
    """Sum clips [shape=(k, samples)] after gain and onset shift, normalised to `peak`.

    Returns a float32 array [shape=(samples,)]; an empty or silent mixture stays all zeros.
    """
    k, n = clips.shape if clips.ndim == 2 else (0, C.WINDOW_SAMPLES)
    out = np.zeros(n, dtype=np.float32)
    for i in range(k):
        shift = int(onsets[i])
        g = np.float32(10.0 ** (gains_db[i] / 20.0))
        if shift < n:
            out[shift:] += g * clips[i, : n - shift]
    top = float(np.max(np.abs(out))) if n else 0.0
    if top > 1e-6:
        out *= np.float32(peak / top)
    return out


def _eligible(notes: list[Note], settings: MixSettings) -> list[Note]:
    lo, hi = settings.pitch_range
    return [
        n
        for n in notes
        if lo <= n.pitch <= hi and (settings.velocities is None or n.velocity in settings.velocities)
    ]


def draw_mixtures(
    dataset: NoteDataset,
    *,
    per_level: int = MIXTURES_PER_LEVEL,
    levels: Sequence[int] | None = None,
    seed: int = 0,
    settings: MixSettings = MixSettings(),
) -> list[dict]:
    """Draw the mixture plan: per level, `per_level` sets of notes of distinct families.

    Returns records with level, notes, gains_db, onsets (samples) and the label bit string.
    """
    if per_level < 1:
        raise UserError(f"mixtures per level must be at least 1, got {per_level}")
    if levels is not None and (not list(levels) or min(levels) < 0):
        raise UserError(f"polyphony levels must be 0 or more, at least one of them; got {list(levels)}")
    rng = np.random.default_rng(seed)
    pools = {f: _eligible(ns, settings) for f, ns in dataset.by_family().items()}
    available = [f for f in dataset.families if pools[f]]
    levels = list(range(len(dataset.families) + 1)) if levels is None else list(levels)
    if max(levels, default=0) > len(available):
        missing = [f for f in dataset.families if not pools[f]]
        raise DatasetError(
            dataset.root,
            f"level {max(levels)} needs {max(levels)} families but "
            f"{f'the {dataset.split} split' if dataset.split else 'the dataset'} has notes of only "
            f"{len(available)} (none of: {', '.join(missing)}){dataset.split_choices()}",
        )
    plan = []
    max_onset = int(settings.max_onset_seconds * C.SAMPLE_RATE)
    for level in levels:
        for i in range(per_level):
            fams = sorted(rng.choice(len(available), size=level, replace=False).tolist()) if level else []
            chosen = [available[j] for j in fams]
            notes = [pools[f][int(rng.integers(len(pools[f])))] for f in chosen]
            gains = rng.uniform(*settings.gain_db, size=level).round(2).tolist()
            onsets = rng.integers(0, max_onset + 1, size=level).tolist()
            plan.append(
                {
                    "file": f"level{level:02d}/mix_{level:02d}_{i:04d}.wav",
                    "level": level,
                    "label": to_bits(encode(chosen, families=dataset.families)),
                    "instruments": [f for f in dataset.families if f in chosen],
                    "notes": [n.note_str for n in notes],
                    "gains_db": gains,
                    "onsets": onsets,
                    "_notes": notes,
                }
            )
    return plan


def render_mixture(record: dict, *, cut: list[dict] | None = None) -> np.ndarray:
    """The mixture a `draw_mixtures` record describes [shape=(WINDOW_SAMPLES,)]; its notes longer
    than the window are listed in `cut` (`load_note_audio`)."""
    notes: list[Note] = record["_notes"]
    clips = load_note_audio(notes, cut=cut) if notes else np.zeros((0, C.WINDOW_SAMPLES), np.float32)
    return mix_clips(clips, gains_db=record["gains_db"], onsets=record["onsets"])


def write_mixtures(
    dataset: NoteDataset,
    out_dir: str | os.PathLike,
    *,
    per_level: int = MIXTURES_PER_LEVEL,
    levels: Sequence[int] | None = None,
    seed: int = 0,
    settings: MixSettings = MixSettings(),
) -> Path:
    """Write the mixture set (WAV files + ``labels.json``); returns the manifest path.

    `out_dir` may be new, hold other files, or hold an earlier mixture set, which this one replaces:
    a file in the way that is not one of that set's (a user's ``labels.json`` or WAV) is refused
    before anything is written; the earlier manifest is removed before the first file is written
    (an interrupted run leaves no manifest, so its folder never passes as a whole mixture set), each
    WAV is written to a temporary name and renamed, the earlier set's files this one lacks are
    removed, and ``labels.json`` is written last, atomically. One run at a time writes into a folder
    (`folder_lock`): a second one is refused with `FolderBusy` and writes nothing."""
    import soundfile as sf

    out = Path(out_dir)
    plan = draw_mixtures(dataset, per_level=per_level, levels=levels, seed=seed, settings=settings)
    if os.path.realpath(out) in {os.path.realpath(dataset.root), os.path.realpath(dataset.root / "audio")}:
        raise DatasetError(out, "is the note dataset's folder or its audio/ folder: the mixtures would lie among its "
                                "notes (a labels.json beside examples.json, which evaluate reads as notes); mix into "
                                "a folder of its own")  # fmt: skip
    if out.exists() and not out.is_dir():
        raise DatasetError(out, "exists and is not a folder (the mixtures go into a folder)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DatasetError(out, f"cannot make the folder: {exc.strerror or exc}") from None
    with folder_lock(out, what="tagger dataset mix"):  # (the checks too: what is there may change until it is held)
        earlier = _earlier_files(out)
        for rec in plan:
            path = out / rec["file"]
            if (path.exists() or path.is_symlink()) and rec["file"] not in earlier:
                raise DatasetError(path, "already exists and is not a file of an earlier `tagger dataset mix` here; "
                                         "nothing was written: choose a new or empty folder")  # fmt: skip
        new = {rec["file"] for rec in plan}
        write_atomic(out / INCOMPLETE, json.dumps(sorted(earlier | new)))
        (out / MANIFEST).unlink(missing_ok=True)  # the earlier set is whole no more
        for rec in plan:
            path = out / rec["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            audio = render_mixture(rec)  # (never a truncated WAV under a mixture's name:)
            write_atomic(path, lambda tmp: sf.write(os.fsencode(tmp), audio, C.SAMPLE_RATE, subtype="PCM_16", format="WAV"))
        for name in sorted(earlier - new):  # the earlier set's files that this one does not have
            stale = out / name
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
            try:
                stale.parent.rmdir()  # only when empty
            except OSError:
                pass
        manifest = {
            "families": list(dataset.families),
            "source": str(dataset.root),
            "split": dataset.split,  # (evaluate tells by it whether the model was calibrated on these notes)
            "seed": seed,
            "per_level": per_level,
            "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in settings.__dict__.items()},
            "mixtures": [{k: v for k, v in rec.items() if not k.startswith("_")} for rec in plan],
        }
        path = out / MANIFEST
        write_atomic(path, json.dumps(manifest, indent=1))
        (out / INCOMPLETE).unlink()
        return path


_OUR_FILE = re.compile(r"level\d{2}/mix_\d{2}_\d{4,}\.wav")
"""The names `draw_mixtures` gives: only such files of an earlier set are ever replaced or removed."""


def _earlier_files(out: Path) -> set[str]:
    """The files of an earlier mixture set in `out` (its manifest's, and an interrupted run's); a
    ``labels.json`` there that is not a mixture manifest is refused, never replaced."""
    names: list = []
    if (out / MANIFEST).exists() or (out / MANIFEST).is_symlink():
        try:
            names += [rec["file"] for rec in read_manifest(out / MANIFEST)["mixtures"]]
        except DatasetError as exc:
            raise DatasetError(out / MANIFEST, f"is not a mixture manifest of tagger ({exc.reason}); nothing was "
                                               "written: choose a new or empty folder") from None  # fmt: skip
    if (out / INCOMPLETE).exists():
        listed = read_json(out / INCOMPLETE)
        names += listed if isinstance(listed, list) else []
    return {n for n in names if isinstance(n, str) and _OUR_FILE.fullmatch(n)}


def read_manifest(path: str | os.PathLike) -> dict:
    """Read a mixture manifest (a folder or its labels.json); file paths become absolute.

    Every mixture's ``file`` must name a file inside the manifest's folder (a relative path without
    ``..``): a manifest never makes `tagger evaluate` read a file elsewhere. A manifest without
    ``families`` (a hand-made one) has its labels' bits in the paper's order, `FAMILIES` (was: read
    over no family, every label refused as not 0 characters long)."""
    p = Path(path)
    if p.is_dir():
        p = p / MANIFEST
    if not p.is_file():
        if (p.parent / INCOMPLETE).exists():
            raise DatasetError(p.parent, "an interrupted `tagger dataset mix` left this mixture folder incomplete "
                                         "(no labels.json); run it again")  # fmt: skip
        raise DatasetError(p, "no mixture manifest (labels.json) here; make one with `tagger dataset mix`")
    data = read_json(p)
    try:
        if not isinstance(data, dict) or not isinstance(data["mixtures"], list):
            raise TypeError("expected an object with a list of mixtures")
        if data.get("families") is None:
            data["families"] = list(FAMILIES)
        families = data["families"]
        if not isinstance(families, list) or not all(isinstance(f, str) for f in families):
            raise TypeError(f"families is {families!r}, expected a list of names")
        for rec in data["mixtures"]:
            if not isinstance(rec, dict):
                raise TypeError(f"mixture {rec!r} is not an object")
            rec["path"] = str(p.parent / _inside(rec["file"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise DatasetError(p, f"invalid mixture manifest: {exc}") from None
    twice = sorted({f for f in families if families.count(f) > 1})
    if twice:  # (a bit of the labels would stand for two families)
        raise DatasetError(p, f"invalid mixture manifest: families names {', '.join(map(repr, twice))} twice")
    for rec in data["mixtures"]:
        why = _label_fault(rec, families)
        if why:
            raise DatasetError(p, f"invalid mixture manifest: mixture {rec.get('file')!r} {why}")
    return data


def _label_fault(rec: dict, families: list[str]) -> str | None:
    """Why a mixture's ``label`` (and ``level``, where given) cannot be scored, or None: the label must
    be a bit string of one 0/1 per family, and the level, a whole number, its count of 1s (was: a
    mixture without a label a `KeyError` traceback once the model had loaded, a bad bit string an
    error naming neither the file nor the mixture, and a level that was not the label's count, 3 for
    a label of 2 families, or -1, scored silently in that level's row beside the paper's)."""
    level, label = rec.get("level"), rec.get("label")
    if not isinstance(label, str):
        return "has no label (a bit string)" if label is None else f"has label {label!r}, expected a bit string"
    if len(label) != len(families) or set(label) - {"0", "1"}:
        return f"has label {label!r}, expected a bit string of {len(families)} characters of 0/1, one per family"
    if level is None:
        return None
    if isinstance(level, bool) or not isinstance(level, int):
        return f"has level {level!r}, expected a whole number"
    if level != label.count("1"):
        return f"has level {level} but its label {label!r} names {label.count('1')} families"
    return None


def _inside(name) -> PurePosixPath:
    """`name` as a relative path that stays inside its folder; ValueError otherwise."""
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValueError(f"mixture file {name!r} is not a file name")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ValueError(f"mixture file {name!r} lies outside the mixture folder (only relative paths inside it)")
    return rel
