"""Deciding a tag write (`tagger.tags.rewrite`): the file loaded, the fields it has and those it is
to have, and the refusals that come before anything is copied (someone else's fields, a change that
would lose what the file holds, a file that cannot be written or was changed too recently).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from tagger.errors import TagWriteError
from tagger.tags import filesystem, formats
from tagger.tags.checks import unsettled_reason
from tagger.tags.fields import INSTRUMENTS_MODEL, Raw, TagState, state
from tagger.tags.storage import MP4_FREEFORM_PREFIX, Storage

_CHANGED_MEANWHILE = "file changed while its tags were being written (another program wrote to it); left as it is"


def foreign_reason(foreign: Sequence[str]) -> str:
    """Why a file whose fields ``foreign`` (`Storage.foreign`) are named like tagger's but are someone
    else's is left unchanged."""
    fields = " and ".join(foreign) + (" fields were" if len(foreign) > 1 else " field was")
    where = ""  # (the MP4 fields of our names that are someone else's whatever their case and model)
    if any(name.startswith(("----:", "mdta:")) for name in foreign):
        where += f", in an MP4 file as freeform atoms {MP4_FREEFORM_PREFIX}NAME alone"
    if any(name.startswith("mdta:") for name in foreign):
        where += ("; an mdta key is what ffmpeg's -movflags use_metadata_tags writes of any field it copies, "
                  "tagger's too, and mutagen cannot change it: ffmpeg without that flag leaves such keys out")
    return (f"its {fields} not written by tagger (tagger writes its fields in upper case, with {INSTRUMENTS_MODEL} "
            f"beside them{where}): someone else's, never overwritten; left unchanged")  # fmt: skip


@dataclass(frozen=True)
class _Decision:
    """What `_decide` read in the file and decided: the fields to write, and what the write needs of
    the loaded file once it is let go."""

    cls: type
    """The file's mutagen type (the copy is read as the same)."""
    storage: Storage
    raw: Raw
    """Our fields as they are to be."""
    version: int | None
    """The tag version to save (`Storage.version`)."""
    changed: bool
    """The fields, or the tag version, change."""
    before: TagState
    after: TagState
    others: dict[str, str] | None
    """The digests of the other tags (`Storage.other_tags`) that the verification compares; None for a
    version conversion (`Storage.cannot_keep` checked it) and when nothing is written."""
    drop: tuple[str, ...] = ()
    """The keys of the other items a removal removes too: copies tagger added (`Storage.copies_left`)."""
    converted: str | None = None
    """The tag converted to another version (`TagChange.converted`)."""


def _decide(shown, real, st, *, target, id3v23, dry_run, settle_seconds) -> _Decision:
    """Load the file and decide: the fields it has and those it is to have, refused (`TagWriteError`)
    when its fields are someone else's, when a change would lose what the file holds, and when it
    would change a file that cannot be written or was changed too recently. The loaded tag is let go
    on return, before the copy is made: covers can be tens of megabytes.

    A refusal read from the file's bytes is said as a change meanwhile (`_refused`) where the file is
    no longer the one found (``st``): another program's in-place save (beets', mutagen's) between the
    reads of the file gave a torn view of it, which was said as a fault of the file (was: `its Vorbis
    comments hold entries that a rewrite would change or drop ... b'TITLE=...'`, of a file whose
    comments were whole)."""
    try:
        audio, storage = formats.open_file(shown, real=real)
    except TagWriteError:
        _refused(shown, real, st, None)
        raise
    before_raw = storage.get(audio)
    after_raw = target(before_raw)
    foreign = storage.foreign(audio) if after_raw else []  # (a removal leaves them alone: not ours)
    if foreign:
        _refused(shown, real, st, foreign_reason(foreign))
    version, convert = storage.version(audio, id3v23, after_raw)
    changed = before_raw != after_raw or convert
    before, after = state(before_raw), state(after_raw)
    unsettled = unsettled_reason(st.st_mtime, settle_seconds)
    if changed:
        loss = storage.cannot_keep(audio, real, version)
        if loss:
            _refused(shown, real, st, f"{loss}; left unchanged")
        filesystem.check_writable(shown, real, st)
        if unsettled:
            raise TagWriteError(shown, unsettled)
    else:  # (where it changes, `cannot_keep` refuses such a file)
        hidden = storage.fields_out_of_reach(real)
        if hidden:  # (was: an untag that found none of tagger's fields where it looks said nothing)
            _refused(shown, real, st, f"{hidden}; left unchanged")
    # a removal that leaves nothing but copies tagger added with its tag removes them too (`Storage.copies_left`)
    drop = tuple(storage.copies_left(audio, real)) if changed and not after_raw else ()
    # Only a digest of the other tags is kept: the loaded tag (cover art included) is let go.
    others = storage.other_tags(audio) if changed and not dry_run and not convert else None
    for key in [] if others is None else drop:
        others.pop(key, None)
    was = getattr(audio.tags, "version", (None, None))[1] if convert else None  # (an ID3v2 tag's minor version)
    converted = f"ID3v2.{was} tag made ID3v2.{version}" if was in (2, 3, 4) else None
    return _Decision(cls=type(audio), storage=storage, raw=after_raw, version=version, changed=changed,
                     before=before, after=after, others=others, drop=drop, converted=converted)  # fmt: skip


def _refused(shown, real: str, st, reason: str | None) -> None:
    """Raise the refusal ``reason`` of the file at ``real``, found as ``st``; the change meanwhile
    instead where it is no longer that file (gone, rewritten, replaced: what was read of it may be
    torn). ``reason`` None: return where it is still that file (the caller raises its own error)."""
    try:
        still = filesystem.same_file(os.stat(real), st)
    except OSError:
        still = False
    if not still:
        raise TagWriteError(shown, _CHANGED_MEANWHILE)
    if reason is not None:
        raise TagWriteError(shown, reason)
