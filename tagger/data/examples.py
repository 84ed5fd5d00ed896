"""Add note rows to an NSynth-format dataset's ``examples.json`` (shared by every note source)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from tagger.errors import DatasetError


def read_examples(path: str | os.PathLike) -> dict[str, dict]:
    """The rows of an existing ``examples.json`` (empty when there is none)."""
    from tagger.data.render import _read_examples

    return _read_examples(Path(path))


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
    tmp = out / "examples.json.tmp"
    tmp.write_text(json.dumps(ordered, indent=1))
    os.replace(tmp, out / "examples.json")  # never a half-written file
    return len(ordered)
