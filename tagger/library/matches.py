"""Which stored track a crawled file is, by its content (pure decisions of the scan's plan,
`tagger.library.plan`, given the file's `os.stat` and a ``digest()`` reading its whole content once):
a gone track's file moved (`origin`), an analysed file's copy (`copied_from`), a stored file whose
tags alone another program rewrote (`only_tags_changed`), a gone track's file moved and retagged at
once (`gone_digests`, `moved_with_new_tags`); and when two reads are of one file (`file_identity`,
`_one_file`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tagger.db import models as M
from tagger.library.state import ScanInterrupted, StopSignals
from tagger.paths import Spelling, folder_prefix

log = logging.getLogger("tagger.library.scan")


def copied_from(done: list[M.Track], path: str, *, st: os.stat_result, digest) -> M.Track | None:
    """The analysed track whose results are those of the file ``path``, a copy of its file; None
    when none is. ``done`` are the analysed tracks of this model with the file's size and
    fingerprint; ``st`` is the file's `os.stat`; ``digest()`` gives the file's content hash (None
    when it cannot be read).

    Results hold for the bytes they were made from, whose hash is stored with them: the original
    file may have been rewritten since (new audio where the fingerprint does not read) and not yet
    analysed again, so its current bytes prove nothing. A track stored before content hashes
    (revision 0005) has none: the file is analysed as new. A hard link to a track's file whose mtime
    and ctime are the stored ones is that file unchanged, by the rule that skips unchanged files:
    taken without reading it. Making a link changes the file's ctime, as a write in place with the
    mtime set back (``touch -r``) does: a link made since the analysis is read
    (`tagger.library.plan.ContentHashes` reads a file once for all its names)."""
    for t in done:
        if t.mtime == st.st_mtime and t.ctime_ns == st.st_ctime_ns and _same_inode(t.path, path):
            return t
    if not any(t.content_hash for t in done):
        return None
    wanted = digest()
    return next((t for t in done if t.content_hash and t.content_hash == wanted), None) if wanted else None


def _same_inode(a: str, b: str) -> bool:
    """True when paths ``a`` and ``b`` (followed) are one file."""
    try:
        sa, sb = os.stat(a), os.stat(b)
    except OSError:
        return False
    return (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino)


def _one_file(other: str, st: os.stat_result) -> bool:
    """Whether the path ``other`` (followed) is the very file found as ``st``: its device, inode, size,
    mtime and ctime (a union file system passing its drives' inode numbers through may give two
    files one number; a copy kept with its mtime, ``cp -p``, has another ctime)."""
    try:
        o = os.stat(other)
    except OSError:
        return False
    return file_identity(o) == file_identity(st)


def origin(path: str, gone: list[M.Track], *, digest) -> M.Track | None:
    """The gone track whose file `path` is, moved; None when it is none of them or cannot be told.

    `gone` are the tracks of this size and fingerprint whose files are gone. The old files cannot
    be read any more, so the new file's whole content is compared with the content hash stored when
    each was analysed or last rewritten: files of one size and format that agree where the
    fingerprint reads (stems of one song, silent at its start, middle and end) are told apart. A
    track stored before content hashes were (revision 0005) has none: it is taken only when it is the
    one candidate, as the fingerprint alone decided before. Otherwise the file is not a move (a copy,
    or analysed as new) rather than given another file's results, and the gone tracks go missing.
    ``digest()`` gives the file's content hash (None when it cannot be read)."""
    if not gone:
        return None
    if any(t.content_hash for t in gone):
        wanted = digest()
        if wanted is None:
            return None  # unreadable now: the analysis reports it
        same = [t for t in gone if t.content_hash == wanted]
        # A track whose file went since the last scan is the likelier origin than one missing before.
        same = [t for t in same if t.status != M.STATUS_MISSING] or same
        if same:
            return same[0]  # the same bytes: any of them holds this file's results
    unknown = [t for t in gone if not t.content_hash]
    unknown = [t for t in unknown if t.status != M.STATUS_MISSING] or unknown
    if len(unknown) == 1 and len(gone) == 1:
        return unknown[0]
    log.info("%s: its fingerprint matches %d gone track(s) but not their whole content; not a move",
             path, len(gone))  # fmt: skip
    return None


def _same_bytes(digest, stored: str | None) -> bool:
    """Whether a file whose size and fingerprint are the stored ones but whose mtime or ctime is
    not (or which was missing) still holds the bytes analysed: its whole content (``digest()``, None
    when it cannot be read) against the content hash stored at analysis or at the last tag write.
    New audio written over a file, or two files of one size swapped that agree where the fingerprint
    reads (stems silent at the start, middle and end), must not keep the old results. A track stored
    before content hashes (revision 0005) has none to compare: analysed again. An unreadable file
    counts as changed (its analysis reports it)."""
    if not stored:
        return False
    wanted = digest()
    return wanted is not None and wanted == stored


def only_tags_changed(path: str, st: os.stat_result, stored: str | None, digest) -> str | None:
    """The content hash of the file ``path`` (found as ``st``), which reads as changed since its
    track's results were made (another size, fingerprint or whole content), when only its tags
    changed: the bytes that carry its audio hash to ``stored``, the `tagger.tags.audio_digest` of
    the file analysed. None otherwise, and wherever that cannot be told: no stored digest (a track
    analysed before revision 0010, or a format without the check), a file whose digest cannot be
    read now, or that changed while it was read (another size, mtime, ctime or inode after the
    reads than ``st``, taken before them: a write in place changes the ctime, which nobody can set
    back, so the fingerprint, the digest and ``digest()``, the content hash, are of one file). The
    file is then analysed, as any changed file is."""
    if not stored:
        return None
    now = _audio_digest_or_none(path)
    if now is None or now != stored:
        return None
    return _read_whole(path, st, digest)


def _audio_digest_or_none(path: str) -> str | None:
    """`tagger.tags.audio_digest_or_none` (imported when first needed; looked up here, where the
    tests count this module's reads)."""
    from tagger.tags import audio_digest_or_none

    return audio_digest_or_none(path)


def _read_whole(path: str, st: os.stat_result, digest) -> str | None:
    """The content hash of ``path`` (``digest()``) when the file is still the one `os.stat` found as
    ``st`` (taken before every read of it) after the reads; None otherwise."""
    whole = digest()
    try:
        again = os.stat(path)
    except OSError:
        return None
    if whole is None or file_identity(again) != file_identity(st):
        return None
    return whole


@dataclass
class NewFile:
    """A file the database does not know, which is no gone track's file by content, nor a copy."""

    path: str
    st: os.stat_result
    fingerprint: str
    content_hash: Callable[[], str | None]
    """Its whole content's hash, read once (None when it cannot be read)."""


@dataclass
class MovedRetagged:
    """A `NewFile` that is the file of the gone track ``track_id``, its tags rewritten."""

    file: NewFile
    track_id: int
    content_hash: str


def gone_digests(existing: dict[str, tuple], *, seen: set[str], unlisted: Sequence[str],
                 spelling: Spelling) -> dict[int, tuple[str, str]]:  # fmt: skip
    """{track id: (path, audio digest)} of the tracks stored under the scanned folders (``existing``,
    the plan's rows) with an audio digest whose file is gone: the scan did not see it and no
    regular file is there under that spelling. Not those under a folder that could not be listed
    (``unlisted``): their files may well be there."""
    prefixes = tuple(folder_prefix(f) for f in unlisted)
    return {row[0]: (path, row[10]) for path, row in existing.items() if row[10] and path not in seen
            and not path.startswith(prefixes) and not spelling.is_file(path)}  # fmt: skip


def moved_with_new_tags(fresh: Sequence[NewFile], gone: dict[int, tuple[str, str]], *,
                        stop: StopSignals | None = None,
                        digest_of: Callable[[str], str | None] | None = None) -> list[MovedRetagged]:  # fmt: skip
    """The new files of ``fresh`` that are gone tracks' files, moved and retagged at once (beets'
    path formats, Picard's "rename files", foobar2000's file operations): the bytes that carry a
    file's audio hash (`tagger.tags.audio_digest`) to the stored digest of exactly one gone track
    (``gone``: `gone_digests`), and no other new file's do. Two gone tracks of one digest, two
    new files of one, a file whose digest cannot be read, or that changed while it was read: none
    is taken (analysed as new). Only the new files with the extension of a gone track's name are
    read (a tag editor keeps the extension; another one leaves the file to analysis), and the plan
    calls this only where a track is gone: a first scan reads nothing more. ``digest_of``: reads a
    file's digest (default `tagger.tags.audio_digest_or_none`)."""
    digest_of = digest_of or _audio_digest_or_none
    by_digest: dict[str, list[int]] = {}
    for track_id, (_path, digest) in gone.items():
        by_digest.setdefault(digest, []).append(track_id)
    kinds = {os.path.splitext(path)[1].casefold() for path, _digest in gone.values()}
    found: dict[str, list[NewFile]] = {}
    for new in fresh:
        if stop is not None and stop.requested:
            raise ScanInterrupted(stop.signum, 0)
        if os.path.splitext(new.path)[1].casefold() not in kinds:
            continue
        digest = digest_of(new.path)
        if digest in by_digest:
            found.setdefault(digest, []).append(new)
    out = []
    for digest, files in found.items():
        if len(files) > 1 or len(by_digest[digest]) > 1:
            log.info("%s: its audio is that of %d gone track(s) and %d new file(s); not a move",
                     files[0].path, len(by_digest[digest]), len(files))  # fmt: skip
            continue
        whole = _read_whole(files[0].path, files[0].st, files[0].content_hash)
        if whole is not None:
            out.append(MovedRetagged(files[0], by_digest[digest][0], whole))
    return out


def file_identity(st: os.stat_result) -> tuple[int, ...]:
    """What of a file's `os.stat` must agree before and after reading it for the reads to be of one
    file: device, inode, size, mtime and ctime (a write in place with the mtime set back changes the
    ctime, which nobody can set back)."""
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns
