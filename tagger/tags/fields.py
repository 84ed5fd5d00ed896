"""The fields tagger writes, declared once for every container, and their values.

- ``INSTRUMENTS``: the families present, in the model's family order, one value each.
- ``INSTRUMENTS_MODEL``: the version of the model that produced them (provenance).
- ``INSTRUMENTS_SCORES`` (optional): one ``family=0.873`` value per family.
- ``INSTRUMENTS_COPIES`` (only beside copies a write added of another tag's fields): their keys.

`Raw` is what a storage class (`tagger.tags.storage`) reads and writes: canonical field name ->
values as strings. `desired_raw` builds it from a result, `state` turns it into a `TagState`.

tagger always writes INSTRUMENTS_MODEL: an INSTRUMENTS or INSTRUMENTS_SCORES field without it is
someone else's (a user's own list of instruments), which ``tag`` refuses to overwrite and
``untag`` leaves alone; so are fields whose INSTRUMENTS_MODEL names no model tagger knows, which
``tagger untag`` and the writes keep (`remove_instruments`' and `write_instruments`' ``models``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from tagger.errors import UserError
from tagger.instruments import FAMILIES, canonical_order, check_family

INSTRUMENTS = "INSTRUMENTS"
"""Multi-valued field: the families present, canonical names in canonical order."""
INSTRUMENTS_MODEL = "INSTRUMENTS_MODEL"
"""Single-valued field: the model version that produced INSTRUMENTS."""
INSTRUMENTS_SCORES = "INSTRUMENTS_SCORES"
"""Multi-valued field (optional): ``family=score`` per family, score with 3 decimals."""
FIELDS: tuple[str, ...] = (INSTRUMENTS, INSTRUMENTS_MODEL, INSTRUMENTS_SCORES)
"""The fields that hold a result, and the only ones `remove_instruments` removes besides
`INSTRUMENTS_COPIES` and the copies it lists."""
INSTRUMENTS_COPIES = "INSTRUMENTS_COPIES"
"""Multi-valued field, written only where a write adds copies of another tag's fields that a reader
would no longer show (a WavPack's ID3v2 tag in front, copied into its APEv2 tag; an MP3's APEv2
ReplayGain items, copied into its ID3v2 tag): the keys tagger copied, one value each. The file
records no other way who wrote them, and a user's own items equal to that other tag's (some
taggers write both) look the same: `untag` removes only the copies this field lists, while they
still hold the other tag's values, and this field with them (`Storage.copies_left`). Not a result:
not among `FIELDS`, nor read as one (kept as it is by a new write, like the copies)."""

SCORE_DECIMALS = 3

Raw = dict[str, list[str]]
"""Our fields present in a file: canonical field name -> values as strings."""


@dataclass(frozen=True)
class TagState:
    """tagger's fields as a file holds them."""

    instruments: list[str] = field(default_factory=list)
    """Family names as stored (canonical order when tagger wrote them); empty when absent."""
    model_version: str | None = None
    scores: dict[str, float] | None = None
    """Per-family scores, or None when the file has no INSTRUMENTS_SCORES."""

    @property
    def tagged(self) -> bool:
        """True when any of tagger's fields is present."""
        return bool(self.instruments) or self.model_version is not None or self.scores is not None


@dataclass(frozen=True)
class TagChange:
    """What a write or removal did (or, with ``dry_run``, would do) to one file."""

    path: str
    before: TagState
    after: TagState
    changed: bool
    """True when the file's fields differ (or must be rewritten) from the requested state."""
    written: bool
    """True when the file was actually replaced; False for no-ops and dry runs."""
    dry_run: bool = False
    size: int | None = None
    """The file's size after the operation (unchanged file: its current size)."""
    mtime: float | None = None
    """The file's mtime after the operation, for the database's changed-since check."""
    ctime_ns: int | None = None
    """The status-change time of the file a write left (None when nothing was written): another
    writer's copy moved over it since (made and renamed later) has another, and so has a write in
    place, even one leaving the same size and mtime (`tagger.fingerprint.read_back`)."""
    audio_digest: str | None = None
    """The hash of the bytes that carry the written file's audio (`tagger.tags.audio_digest`), which
    the write checked it left as they were; None when nothing was written or the format has no such
    check."""
    retagged: bool = False
    """The file had changed since it was analysed, but in its tags alone: its audio digest is still
    the stored one (`write_instruments`' ``audio_digest``). Its ``ctime_ns`` and ``audio_digest`` are
    given then even when nothing was written, so that its new facts can be recorded."""
    converted: str | None = None
    """What a write that converts the file's tag to another version makes of it (``ID3v2.4 tag made
    ID3v2.3``: `tagger tag --id3v23` of a file tagged before), None where it converts nothing."""
    kept: str | None = None
    """Why a removal or a write left fields named like tagger's in place (`remove_instruments`' and
    `write_instruments`' ``models``): their INSTRUMENTS_MODEL names no model tagger knows, so they
    are not provably tagger's; None otherwise."""


def ours(name: str, *, any_case: bool = False) -> str | None:
    """The canonical field name when ``name`` is one of ours: exactly as tagger writes it (upper
    case) where the container's names are case-sensitive (ID3 ``TXXX`` descriptions, MP4 freeform
    names, ASF attributes: a ``TXXX:instruments`` is someone else's field), in any case with
    ``any_case`` (Vorbis comment names, case-insensitive by the specification).

    Fields of these names are tagger's only with INSTRUMENTS_MODEL beside them (`Storage.get`)."""
    key = name.upper() if any_case else name
    return key if key in FIELDS else None


def check_model_version(model_version: str) -> str:
    """The model version as INSTRUMENTS_MODEL holds it (spaces around it trimmed). Raises `UserError`
    when it is empty or holds a control character (a NUL ends the text for ffprobe and most readers
    of ID3, MP4 and ASF tags, which would show "a" for "a\\0b"; a line break splits a report line) or
    a lone surrogate (no container can encode it)."""
    import unicodedata

    text = str(model_version).strip()
    if not text:
        raise UserError("a model version is required to write INSTRUMENTS_MODEL")
    bad = next((c for c in text if unicodedata.category(c) in ("Cc", "Cs")), None)
    if bad is not None:
        shown = repr(text[:60]) + ("..." if len(text) > 60 else "")
        raise UserError(f"a model version cannot hold a control character or a lone surrogate ({bad!r}), got {shown}")
    return text


def model_families(families: Iterable[str]) -> tuple[str, ...]:
    """A model's family names as tagger writes and compares them: lower case, spaces around them
    trimmed, each once (a manifest's "Guitar" is the family "guitar"). Raises `UserError` for a
    name that is not text or is empty."""
    names: dict[str, None] = {}
    for name in families:
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"a family name is a non-empty text, got {name!r}")
        names[name.strip().lower()] = None
    return tuple(names)


def desired_raw(
    *,
    instruments: Iterable[str],
    model_version: str,
    scores: Mapping[str, float] | None,
    families: Sequence[str] | None = None,
) -> Raw:
    """Our fields for a result. Family names are checked against ``families`` (the families of the
    model that produced the result, `model_families`; None: the canonical `FAMILIES`) and written in
    their order. Raises `UserError` for an unknown family, a bad score, a family scored twice with
    different scores, and a model version `check_model_version` refuses."""
    families = model_families(families) if families else FAMILIES
    model_version = check_model_version(model_version)
    raw: Raw = {}
    names = canonical_order(list(instruments), families=families)
    if names:
        raw[INSTRUMENTS] = names
    raw[INSTRUMENTS_MODEL] = [model_version]
    if scores is not None:
        checked: dict[str, float] = {}
        for name, value in scores.items():
            value = float(value)
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise UserError(f"a score is a number between 0 and 1, got {name}={value}")
            family = check_family(name, families=families)
            if checked.get(family, value) != value:  # "Guitar" and "guitar": which one is meant?
                raise UserError(f"two different scores for the family {family!r} (names differing in case or spaces)")
            checked[family] = value
        if checked:
            raw[INSTRUMENTS_SCORES] = [f"{f}={checked[f]:.{SCORE_DECIMALS}f}" for f in families if f in checked]
    return raw


def state(raw: Raw) -> TagState:
    """The `TagState` of the fields ``raw`` (values trimmed, names lower-cased, bad scores ignored)."""

    def split(values: list[str]) -> list[str]:
        return [v.strip() for v in values if v.strip()]

    scores = None
    if INSTRUMENTS_SCORES in raw:
        scores = {}
        for item in split(raw[INSTRUMENTS_SCORES]):
            name, _, value = item.partition("=")
            try:
                scores[name.strip().lower()] = float(value)
            except ValueError:
                continue
    model = raw.get(INSTRUMENTS_MODEL)
    return TagState(
        instruments=[v.lower() for v in split(raw.get(INSTRUMENTS, []))],
        model_version=model[0] if model else None,
        scores=scores,
    )
