"""A row of `tagger predict --json`, declared once: `tagger predict` writes it (`PredictionRow.to_dict`)
and `tagger tag --from-json` reads it (`PredictionRow.from_dict`, through `tagger.tags.batch`), so
the two cannot disagree on a field's name or type. A row is one JSON object on one line."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from tagger.errors import UserError
from tagger.instruments import FAMILIES, canonical_order
from tagger.tags.fields import check_model_version, model_families


@dataclass(frozen=True)
class PredictionRow:
    """What `tagger predict` found in one file, and the file as it read it. The fields are the row's
    keys, in the order they are written."""

    path: str
    """The file, as an absolute path (a row read may hold a relative one: from the current folder)."""
    instruments: list[str]
    """The families present."""
    scores: dict[str, float] | None = None
    """family -> track score (rounded to 4 decimals when written); None: none given."""
    windows: int | None = None
    """Windows analysed (not read back: only shown)."""
    model_version: str | None = None
    """The version of the models; None: not given (`from_dict`'s ``model_version`` stands for it)."""
    families: list[str] | None = None
    """The families of the models (what ``instruments`` and ``scores`` are checked against); None:
    the canonical families."""
    size: int | None = None
    mtime: float | None = None
    """The file's size and mtime when it was analysed."""
    ctime_ns: int | None = None
    """Its ctime when it was analysed (None: not known, as in an older predict's row)."""
    fingerprint: str | None = None
    """Its content fingerprint (`tagger.fingerprint.fingerprint`)."""
    content_hash: str | None = None
    """The hash of the whole file analysed (`tagger.fingerprint.content_hash`; None: not known)."""

    def to_dict(self) -> dict:
        """The row as `tagger predict --json` writes it (``json.dumps``): every field, in order."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @property
    def known_families(self) -> tuple[str, ...]:
        """The families its names are checked against: the row's (`model_families`), else the canonical ones."""
        return model_families(self.families) if self.families is not None else FAMILIES

    @classmethod
    def from_dict(cls, row: dict, *, model_version: str | None = None, override: bool = False) -> PredictionRow:
        """The row of one parsed line, checked; raises ValueError saying what is wrong. Other keys
        are ignored; ``model_version`` is used where the row names none, and with ``override`` (the
        user named it) a row naming another is refused."""
        file = row.get("path")
        if not is_name(file):
            raise ValueError(f"'path' is a file name (a non-empty text without NUL), got {shown_json(file)}")
        if "instruments" not in row:
            raise ValueError("no 'instruments' (a list of family names)")
        instruments = row["instruments"]
        if not isinstance(instruments, list) or not all(isinstance(name, str) for name in instruments):
            raise ValueError(f"'instruments' is a list of family names, got {shown_json(instruments)}")
        families = row.get("families")
        if families is not None and (not isinstance(families, list) or not families):
            raise ValueError(f"'families' is a list of family names, got {shown_json(families)}")
        try:
            known = model_families(families) if families is not None else FAMILIES
            names = canonical_order(instruments, families=known)
        except UserError as exc:
            raise ValueError(str(exc)) from None
        scores = row.get("scores")
        if scores is not None:
            if not isinstance(scores, dict):
                raise ValueError(f"'scores' is an object of family: score, got {shown_json(scores)}")
            checked: dict[str, float] = {}
            for name, value in scores.items():
                family = name.strip().lower()
                if family not in known:
                    raise ValueError(f"a score for the unknown family {name!r}; known families: {', '.join(known)}")
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                    raise ValueError(f"a score is a number from 0 to 1, got {name}={shown_json(value)}")  # (NaN fails too)
                if checked.get(family, value) != value:
                    raise ValueError(f"two different scores for the family {family!r} (names differing in case or spaces)")
                checked[family] = float(value)
            missing = [name for name in names if name not in checked]
            if missing:
                raise ValueError(f"no score for {', '.join(missing)}, which it lists in 'instruments'")
            scores = {str(k): float(v) for k, v in scores.items()}
        version = row.get("model_version")
        if version is not None and not isinstance(version, str):
            raise ValueError(f"'model_version' is a text, got {shown_json(version)}")
        try:
            version = check_model_version(version) if version is not None else None
            if version is not None and override and model_version is not None and version != check_model_version(model_version):
                raise ValueError(f"its model version is {version!r}, not --model-version {model_version!r}")
            version = version or model_version
            if not version:
                raise ValueError("no model version (pass --model-version)")
            version = check_model_version(version)
        except UserError as exc:
            raise ValueError(str(exc)) from None
        if not {"size", "mtime", "fingerprint"} & row.keys():
            raise ValueError("no size, mtime and fingerprint of the file as `tagger predict` read it (a row of an older "
                             "tagger, or not of `predict`?), so a file changed since cannot be told: run "
                             "`tagger predict --json` again")  # fmt: skip
        size, mtime, print_ = row.get("size"), row.get("mtime"), row.get("fingerprint")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"'size' is a whole number of bytes, got {shown_json(size)}")
        if isinstance(mtime, bool) or not isinstance(mtime, (int, float)) or not math.isfinite(mtime):
            raise ValueError(f"'mtime' is a time in seconds, got {shown_json(mtime)}")
        if not is_digest(print_):
            raise ValueError(f"'fingerprint' is 32 hex digits, got {shown_json(print_)}")
        ctime_ns, whole = row.get("ctime_ns"), row.get("content_hash")  # (not in an older predict's rows)
        if ctime_ns is not None and (isinstance(ctime_ns, bool) or not isinstance(ctime_ns, int)):
            raise ValueError(f"'ctime_ns' is a whole number of nanoseconds, got {shown_json(ctime_ns)}")
        if whole is not None and not is_digest(whole):
            raise ValueError(f"'content_hash' is 32 hex digits, got {shown_json(whole)}")
        windows = row.get("windows")  # (only shown: any value is let through, as when it was not read at all)
        if isinstance(windows, bool) or not isinstance(windows, int):
            windows = None
        return cls(file, list(instruments), scores, windows, version, families, size, float(mtime), ctime_ns, print_, whole)


def is_name(value) -> bool:
    """``value`` is a file name a row may hold: a non-empty text without NUL."""
    return isinstance(value, str) and bool(value.strip()) and "\0" not in value


def is_digest(value) -> bool:
    """``value`` is 32 lower-case hex digits (a fingerprint or content hash as `tagger predict` writes it)."""
    return isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def shown_json(value) -> str:
    """``value`` as the JSON it was read from (``true``, ``null``, ``"0.9"``, ``NaN``), at most 60 characters."""
    import json

    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
