"""Add note rows to an NSynth-format dataset's ``examples.json`` (shared by every note source)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tagger.errors import DatasetError
from tagger.outputs import write_atomic


def read_examples(path: str | os.PathLike) -> dict[str, dict]:
    """The rows of an existing examples.json (empty when there is none)."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not all("instrument_str" in r for r in data.values()):
            raise ValueError("not an object of NSynth note records")
    except (OSError, ValueError, AttributeError, TypeError, RecursionError) as exc:
        raise DatasetError(path, f"cannot add to this dataset: {exc}") from None
    return data


def rendered_soundfonts(root: str | os.PathLike) -> dict:
    """The SoundFonts a render of the dataset at `root` used (its render.json's ``soundfonts``: key
    -> file), for a render adding to it, the manifest of a model trained on it and `evaluate`'s
    check that it is the dataset a model names; empty where there is no render.json or none to
    read: not a regular file (a FIFO would block the reader for ever), not UTF-8 JSON, no such
    record."""
    path = Path(root) / "render.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return {}
    fonts = data.get("soundfonts") if isinstance(data, dict) else None
    return fonts if isinstance(fonts, dict) else {}


def check_render_folder(out_dir: str | os.PathLike) -> None:
    """Refuse to render into a folder that holds files but is no dataset (no ``examples.json``): a
    render writes ``render.json``, ``split.json`` and ``audio/*.wav`` there, over a user's files of
    those names. An empty or missing folder, or a dataset to add instruments to, is fine."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise DatasetError(out, "not a folder")
    if not out.is_dir() or (out / "examples.json").is_file():
        return
    from tagger.outputs import LOCK_NAME

    try:
        held = sorted(p.name for p in out.iterdir() if p.name != LOCK_NAME)
    except OSError as exc:
        raise DatasetError(out, f"cannot list the folder: {exc.strerror or exc}") from None
    if held:
        raise DatasetError(out, f"holds files but no examples.json ({', '.join(held[:3])}{', ...' if len(held) > 3 else ''}): "
                                "not a dataset to add to; render into an empty or new folder")  # fmt: skip


def existing_instruments(out_dir: str | os.PathLike) -> set[str]:
    """instrument_str of every note already in ``out_dir/examples.json``."""
    return {r["instrument_str"] for r in read_examples(Path(out_dir) / "examples.json").values()}


def merge_examples(out_dir: str | os.PathLike, rows: Iterable[dict]) -> int:
    """Add `rows` to ``out_dir/examples.json`` (a row replaces one with the same note_str), renumber
    the ``note`` field in note_str order and write the file atomically. Returns the number of notes."""
    out = Path(out_dir)
    examples = read_examples(out / "examples.json")
    for row in rows:
        if "note_str" not in row or "instrument_str" not in row:
            raise DatasetError(out / "examples.json", f"a new row lacks note_str or instrument_str: {row!r}")
        examples[row["note_str"]] = row
    ordered = {}
    for i, key in enumerate(sorted(examples)):
        row = examples[key]
        row["note"] = i
        ordered[key] = row
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "examples.json", json.dumps(ordered, indent=1))  # never a half-written file
    return len(ordered)


def note_record(*, note_str: str, pitch: int, velocity: int, instrument: str, family: str, source: str, level: float,
                **extra) -> dict:  # fmt: skip
    """One ``examples.json`` row: NSynth's fields (16 kHz) plus ``level_dbfs`` and a source's `extra`
    fields (soundfont, program, bank, group, ...)."""
    from tagger import constants as C

    return {
        "note_str": note_str,
        "pitch": pitch,
        "velocity": velocity,
        "sample_rate": C.SAMPLE_RATE,
        "instrument_str": instrument,
        "instrument_family_str": family,
        "instrument_source_str": source,
        **extra,
        "level_dbfs": round(float(level), 2),
    }


def render_in_parallel(
    job: Callable, job_list: Sequence, *, jobs: int, progress: Callable[[int, int], None] | None = None
) -> tuple[list[dict], int]:
    """Run ``job(item) -> (rows, dropped)`` over `job_list` on `jobs` processes (longest first is the
    caller's order); returns every row and the number of notes dropped, reporting ``progress(done, total)``."""
    from joblib import Parallel, delayed

    rows: list[dict] = []
    dropped = 0
    for done, (result, n_dropped) in enumerate(
        Parallel(n_jobs=jobs, return_as="generator_unordered")(delayed(job)(item) for item in job_list), 1
    ):
        rows.extend(result)
        dropped += n_dropped
        if progress:
            progress(done, len(job_list))
    return rows, dropped
