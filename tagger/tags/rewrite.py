"""The atomic, verified rewrite of one file's tags, and reading them.

A write never touches the file in place: the file is copied to a hidden temporary file in the
same folder (same mode), the tags are changed on the copy, the copy is re-read and verified (our
fields hold the intended values, every other tag is unchanged, the audio payload bytes hash the
same), flushed to disk, then moved over the original with `os.replace` (atomic on POSIX). A crash
at any moment leaves the old file or the new one; on any error the temporary file is removed and
`TagWriteError` is raised. Writing values a file already holds is a no-op (the file is not
rewritten). The file mode and extended attributes (POSIX ACLs included) are kept; the
modification time is updated unless ``keep_mtime``.

Other programs: a Linux read lease on the original is held from before the copy until after the
rename (`filesystem.ReadLease`): a file open for writing elsewhere is refused, and one opened for writing
meanwhile makes the write give up (the old file is put back if that happened at the rename). A
file modified less than ``settle_seconds`` ago is refused too (the commands' default is
`DEFAULT_SETTLE_SECONDS`). The copy is always read as the original's mutagen type. Other tagger
writers of the same file: an exclusive ``flock`` on the original, held over the same span
(`filesystem.lock_writers`), refuses the second one.

This module holds what callers use and runs a write's steps in order (`_rewrite`, `_rewrite_file`):
reading the file and deciding what to write is `tagger.tags.decide`; the steps on the hidden copy
(lock, copy, change and verify, flush, replace, close) are `tagger.tags.writing`.
Where the fields live in each container is `tagger.tags.storage`'s business. Recognising a file's
format and loading it with mutagen is in `tagger.tags.formats`; the file-system checks and the facts
kept on the copy (lease, writers' lock, mode, owner, extended attributes, fsync) are in
`tagger.tags.filesystem`; the checks that the file is the one analysed and is settled, in
`tagger.tags.checks`; the hidden copy's name and the copies that killed writes left, in
`tagger.tags.leftovers`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shlex
import stat
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

from tagger import signals
from tagger.errors import ChangedSinceError, TaggerError, TagWriteError
from tagger.tags import formats
from tagger.tags.checks import _check_expected, _check_fingerprint, _only_tags_changed
from tagger.tags.decide import _decide, foreign_reason
from tagger.tags.fields import INSTRUMENTS, INSTRUMENTS_MODEL, INSTRUMENTS_SCORES, Raw, TagChange, TagState, desired_raw, state
from tagger.tags.storage import STORAGES, payload_digest, supported_formats
from tagger.tags.writing import _BeforeReplaceFailed, _Write

__all__ = [
    "SUPPORTED_FORMATS", "audio_digest", "audio_digest_or_none", "foreign_reason", "formats_signature",
    "read_instruments", "remove_instruments", "write_instruments",
]  # fmt: skip

log = logging.getLogger(__name__)


SUPPORTED_FORMATS = supported_formats()
"""The formats tagger writes tags into, as this module was imported (messages call `supported_formats`)."""


def formats_signature() -> str:
    """What this tagger can tag, as a short hash: the containers it writes (`STORAGES`) and the
    mutagen that reads them. A file found in a format without tags is marked with it
    (``tracks.untaggable_formats``) and tried again once it changes: a later tagger, or mutagen,
    may have learned the format."""
    import hashlib

    import mutagen

    what = ",".join(sorted(STORAGES)) + ";mutagen " + mutagen.version_string
    return hashlib.sha256(what.encode()).hexdigest()[:16]


def read_instruments(path: str | os.PathLike) -> TagState:
    """tagger's fields in ``path`` (an empty `TagState` when it has none).

    Raises `TagWriteError` when the file cannot be read or its format is not supported.
    """
    audio, storage = formats.open_file(path)
    return state(storage.get(audio))


def audio_digest(path: str | os.PathLike, *, progress: Callable[[int], None] | None = None) -> str | None:
    """A hash of the bytes of ``path`` that decide what it decodes to (its audio and codec headers,
    not its tags: `tagger.tags.storage.payload_digest`): equal before and after a write that
    changed only tags, whichever program wrote them; None when the format has no cheap check.
    ``progress``: called with the length of each block of audio bytes as it is hashed. Raises
    `TagWriteError` when the file cannot be read."""
    audio, _storage = formats.open_file(path)
    mutagen_type = type(audio).__name__
    del audio
    from mutagen import MutagenError

    try:
        return payload_digest(os.fspath(path), mutagen_type, progress=progress)
    except (*formats.UNREADABLE, MutagenError) as exc:  # (an Ogg page cut inside: mutagen's ogg.error)
        raise TagWriteError(path, f"cannot read its audio: {exc}") from None


def audio_digest_or_none(path: str | os.PathLike, *, progress: Callable[[int], None] | None = None) -> str | None:
    """`audio_digest`, or None where there is no answer to trust: a format without the check, a file
    that cannot be read, even an error of tagger's own in the check (logged). The callers (the
    worker after its content hash, the scan's plan, the beets path) then fall back to what they do
    without a digest: analyse the file again, or record nothing."""
    try:
        return audio_digest(path, progress=progress)
    except Exception:  # noqa: BLE001 - see above: no digest is always the safe answer
        log.debug("%s: no audio digest", path, exc_info=True)
        return None


def write_instruments(
    path: str | os.PathLike,
    *,
    instruments: Iterable[str],
    model_version: str,
    scores: Mapping[str, float] | None = None,
    current_scores: Mapping[str, float] | None = None,
    over_other_model: bool = True,
    id3v23: bool = False,
    keep_mtime: bool = False,
    dry_run: bool = False,
    expected: tuple[int, float] | None = None,
    settle_seconds: float = 0.0,
    families: Sequence[str] | None = None,
    fingerprint: str | None = None,
    inode: tuple[int, int] | None = None,
    content_hash: str | None = None,
    ctime_ns: int | None = None,
    audio_digest: str | None = None,
    before_replace: Callable[[str], None] | None = None,
    models: Collection[str] | None = None,
) -> TagChange:
    """Write INSTRUMENTS and INSTRUMENTS_MODEL (and INSTRUMENTS_SCORES when ``scores`` is given;
    stale scores are removed otherwise) atomically.

    ``expected=(size, mtime)``: refuse when the file's current size differs or its mtime differs
    by more than a millisecond (the file changed since it was analysed); ``fingerprint``: refuse,
    too, when its content fingerprint (`tagger.fingerprint.fingerprint`) is not this one, the one it
    was analysed with (another file of the same size and mtime moved over it); with ``inode``
    (``(st_dev, st_ino)`` of the file analysed), a file of another inode is refused unless its whole
    content hashes to ``content_hash`` (when known): a file that differs only where the fingerprint
    does not read has its fingerprint; so is a file whose ctime is not ``ctime_ns`` (the one recorded
    with its facts, when known: put there by a rename or a copy). ``audio_digest``: the audio digest
    of the file analysed (`audio_digest`; None: not known): a file these checks refuse is written
    still when its audio hashes to it, its tags alone rewritten since (`untag`, another program's
    edit), read before the write and again under its lock from the bytes it copies (the change then
    says ``retagged``). ``current_scores`` (with ``scores`` None): the result's scores, kept where
    the file's INSTRUMENTS_SCORES field holds exactly them as tagger writes them (an earlier write
    with scores made it; other scores, an older result's, are removed as stale): a scan without
    ``--scores`` keeps what a scan with it wrote. ``over_other_model=False``: a file whose
    INSTRUMENTS_MODEL names another model version than ``model_version`` is left as it is (the
    older results of a stale track, which a tag-writing scan puts back where they were removed,
    never replace another model's, those of a `tag --from-json` or another database's scan with
    newer models). ``id3v23``: write
    ID3v2.3 instead of ID3v2.4 (ID3 carriers). A file already holding these values is left
    untouched (``written=False``).
    ``settle_seconds``: refuse a file modified less than this many seconds ago (it may still be
    being written; the commands pass `DEFAULT_SETTLE_SECONDS`). A file open for writing by another
    program is refused whatever the settle time (where Linux leases are available; see `filesystem.ReadLease`).
    ``families``: the families of the model that produced the result (names are checked against
    them and written in their order); None: the canonical families (`tagger.instruments.FAMILIES`).
    ``before_replace``: called with the path of the verified, flushed copy just before it is moved
    over the file (e.g. to record its content hash: `tagger.db.writes.record_pending`); an exception
    it raises leaves the file unchanged and propagates as it is.
    ``models``: the model versions known to be tagger's (`tagger.model.folders.known_model_versions`;
    ``model_version`` is too): a file whose INSTRUMENTS_MODEL is none of them holds fields not provably
    tagger's (a user's INSTRUMENTS=flute with INSTRUMENTS_MODEL=kid3-manual), left unchanged with
    `TagChange.kept` saying why, as `remove_instruments` keeps them. None: any version is overwritten.
    Raises `TagWriteError` (read-only, changed, recently changed or in-use file, unsupported format,
    failed write or verification) and `UserError` (unknown family, bad score, empty model version).
    """
    raw = desired_raw(instruments=instruments, model_version=model_version, scores=scores, families=families)
    scored: Raw = {}
    if scores is None and current_scores is not None:
        scored = desired_raw(instruments=instruments, model_version=model_version, scores=current_scores,
                             families=families)  # fmt: skip

    kept: list[str] = []

    def target(before: Raw) -> Raw:  # (scores joined by "/" as in ID3v2.3, in a tag converted to v2.4: kept)
        version = model_version_of(before)
        if models is not None and version is not None and version != model_version.strip() and version not in models:
            kept.append(version)
            return before  # (not provably tagger's: left as it is, said as such)
        if not over_other_model and before.get(INSTRUMENTS_MODEL, [model_version]) != [model_version]:
            return before
        held = [v for value in before.get(INSTRUMENTS_SCORES, []) for v in value.split("/")]
        return scored if INSTRUMENTS_SCORES in scored and held == scored[INSTRUMENTS_SCORES] else raw

    change = _rewrite(
        path, target=target, id3v23=id3v23, keep_mtime=keep_mtime, dry_run=dry_run, expected=expected,
        settle_seconds=settle_seconds, fingerprint=fingerprint, inode=inode, content_hash=content_hash,
        ctime_ns=ctime_ns, audio_digest=audio_digest, before_replace=before_replace,
    )  # fmt: skip
    if not kept:
        return change
    # (not recorded as holding the results: retagged would record the file as current)
    return dataclasses.replace(change, retagged=False, kept=kept_reason(
        kept[0], change.before, f"tagger untag --model-version {shlex.quote(kept[0])} {shlex.quote(os.fspath(path))} "
                                "removes them; the next write then writes tagger's"))  # fmt: skip


def remove_instruments(
    path: str | os.PathLike,
    *,
    keep_mtime: bool = False,
    dry_run: bool = False,
    expected: tuple[int, float] | None = None,
    settle_seconds: float = 0.0,
    recorded: tuple[int, float, int] | tuple[int, float, int, str | None] | None = None,
    models: Collection[str] | None = None,
) -> TagChange:
    """Remove exactly tagger's fields (`FIELDS`) and nothing else, atomically.

    An ID3 tag left without any frame is removed altogether (tagger created it). A file without
    tagger's fields is left untouched (``written=False``). ``settle_seconds``: as for `write_instruments`,
    but not for a file found exactly as ``recorded``: the size, mtime and ctime (ns) the library
    database recorded right after tagger's own tag write (`tagger.db.listing.recorded_as_tagged`),
    which no program has written to since (its ctime would differ); the file found is the one
    written, checked under the lock as any (was: `tagger untag` right after a tag-writing scan
    skipped every file as "changed 1 s ago, still being written?"). A fourth item, the fingerprint
    recorded, is checked again where a FUSE file system gave the file another number meanwhile (as
    `write_instruments`' ``fingerprint``): on exFAT another file moved over it with its times kept
    looks the same otherwise.

    ``models``: the model versions known to be tagger's (the models found, those the library
    database records, those the user names); fields whose INSTRUMENTS_MODEL is none of them are not
    provably tagger's (a user's INSTRUMENTS=flute with INSTRUMENTS_MODEL=kid3-manual, typed in a tag
    editor, or another program's fields of the same names) and are kept: unchanged, with
    `TagChange.kept` saying why. None: every INSTRUMENTS_MODEL is tagger's (as before).
    """
    kept: list[str] = []

    def target(before: Raw) -> Raw:
        version = model_version_of(before)
        if models is not None and version is not None and version not in models:
            kept.append(version)
            return before  # (not provably tagger's: left as it is, said as such)
        return {}

    change = _rewrite(
        path, target=target, id3v23=None, keep_mtime=keep_mtime, dry_run=dry_run, expected=expected,
        settle_seconds=settle_seconds, recorded=recorded,
    )  # fmt: skip
    if not kept:
        return change
    return dataclasses.replace(change, kept=kept_reason(kept[0], change.before, f"tagger untag --model-version "
                                                                                f"{shlex.quote(kept[0])} removes them"))


def kept_reason(version: str, before: TagState, how: str) -> str:
    """Why a file's fields named like tagger's, INSTRUMENTS_MODEL ``version`` (no model tagger knows:
    `tagger.model.folders.known_model_versions`), are kept, said alike by untag and the writes;
    ``how``: the command that takes them anyway."""
    return (f"its {INSTRUMENTS_MODEL} {version!r} is no model tagger knows (neither one it has shipped, nor a model found "
            f"here, nor one the library database records), so its fields {' and '.join(model_fields(before))} may be "
            f"someone else's (written by hand or by another program); kept ({how})")  # fmt: skip


def model_version_of(raw: Raw) -> str | None:
    """The model version ``raw``'s INSTRUMENTS_MODEL holds, as tagger writes it (trimmed; the values
    of an ID3v2.3 frame joined with ``/``, the separator that split them), None without one."""
    values = raw.get(INSTRUMENTS_MODEL)
    return "/".join(values).strip() if values else None


def model_fields(before: TagState) -> list[str]:
    """The names of the fields ``before`` holds."""
    names = [INSTRUMENTS] if before.instruments else []
    names += [INSTRUMENTS_MODEL]
    names += [INSTRUMENTS_SCORES] if before.scores is not None else []
    return names


def _rewrite(
    path: str | os.PathLike,
    *,
    target: Callable[[Raw], Raw],
    id3v23: bool | None,
    keep_mtime: bool,
    dry_run: bool,
    expected: tuple[int, float] | None,
    settle_seconds: float = 0.0,
    fingerprint: str | None = None,
    inode: tuple[int, int] | None = None,
    content_hash: str | None = None,
    ctime_ns: int | None = None,
    audio_digest: str | None = None,
    before_replace: Callable[[str], None] | None = None,
    recorded: tuple[int, float, int] | tuple[int, float, int, str | None] | None = None,
) -> TagChange:
    shown = os.fspath(path)
    real = os.path.realpath(shown)  # a symlink's target is rewritten, the link stays a link
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise TagWriteError(shown, "no such file") from None
    except OSError as exc:
        raise TagWriteError(shown, f"cannot stat: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise TagWriteError(shown, "not a regular file")
    found_as = fingerprint  # (the fingerprint the file found has, where known)
    if recorded is not None and (st.st_size, st.st_mtime, st.st_ctime_ns) == tuple(recorded[:3]):
        settle_seconds = 0.0  # (as tagger's own write left it: `remove_instruments`)
        if fingerprint is None and len(recorded) > 3:  # (its analysed fingerprint, for `_Write.lock`: was none
            found_as = recorded[3]  # for untag, and on exFAT a file moved over with its times kept was untagged)
    retagged = None  # (the audio digest of a file changed since in its tags alone)
    try:
        _check_expected(shown, st, expected)
        _check_fingerprint(shown, real, st, fingerprint, inode=inode, whole=content_hash, ctime_ns=ctime_ns)
    except ChangedSinceError as refusal:
        retagged = _only_tags_changed(shown, real, st, audio_digest, refusal, settle_seconds=settle_seconds,
                                      digest=lambda: audio_digest_or_none(real))  # fmt: skip

    import mutagen

    try:
        return _rewrite_file(shown, real, st, target=target, id3v23=id3v23, keep_mtime=keep_mtime, dry_run=dry_run,
                             settle_seconds=settle_seconds, before_replace=before_replace, retagged=retagged,
                             analysed=found_as if retagged is None else None)  # fmt: skip
    except _BeforeReplaceFailed as failed:
        raise failed.error  # noqa: B904  (the callback's own error, as it raised it)
    except TaggerError:
        raise
    except Exception as exc:  # a file malformed in a way nobody foresaw
        if not isinstance(exc, (mutagen.MutagenError, *formats.UNREADABLE)) and not formats.raised_in_mutagen(exc):
            # A bug in tagger, not the file's fault, and said so; but one file that trips it must not
            # stop a scan of thousands (the same file would stop every later scan at the same place):
            # it is this file's error, with the traceback in the `-v` log for the report.
            log.debug("tagger's error while writing the tags of %r", shown, exc_info=True)
            raise TagWriteError(shown, f"an error in tagger itself, not in the file ({type(exc).__name__}: {exc}); "
                                       "left unchanged: please report it (the traceback is in the -v log)") from exc
        raise TagWriteError(shown, f"cannot read its tags ({type(exc).__name__}: {exc}); left unchanged") from exc


def _rewrite_file(shown, real, st, *, target, id3v23, keep_mtime, dry_run, settle_seconds, before_replace=None,
                  retagged: str | None = None, analysed: str | None = None):  # fmt: skip
    """`_rewrite` once the file is found: decide (`_decide`), then write the verified copy and move it
    over the file (`_Write`'s steps), its errors said as the file's. ``retagged``: the audio digest
    the file was found to have, changed since it was analysed in its tags alone (`_only_tags_changed`),
    which the bytes copied must hash to; ``analysed``: the fingerprint the file was found to have (the
    analysed one), which it must still have where a FUSE file system gave it another number."""
    decision = _decide(shown, real, st, target=target, id3v23=id3v23, dry_run=dry_run, settle_seconds=settle_seconds)
    if not decision.changed or dry_run:
        found = {} if retagged is None else {"retagged": True, "ctime_ns": st.st_ctime_ns, "audio_digest": retagged}
        return TagChange(
            path=shown, before=decision.before, after=decision.after if decision.changed else decision.before,
            changed=decision.changed, written=False, dry_run=dry_run, size=st.st_size, mtime=st.st_mtime,
            converted=decision.converted, **found,
        )  # fmt: skip
    write = _Write(shown, real, st, decision, audio=retagged, fingerprint=analysed)
    signals.at_forced_stop(write.close)  # (a second signal as a database wait holds the write: the copy removed)
    try:
        write.lock()
        write.copy()
        write.change_and_verify()
        write.flush(keep_mtime=keep_mtime, before_replace=before_replace)
        write.replace()
        new = write.left()  # (the copy's facts where another file was moved over it since)
    except ChangedSinceError:
        raise  # (its audio no longer the one analysed: the refusal as it is)
    except TagWriteError as exc:
        raise TagWriteError(shown, exc.reason if exc.path == shown else f"{exc.reason}; file left unchanged") from exc
    except _BeforeReplaceFailed:
        raise  # (unwrapped by `_rewrite`)
    except Exception as exc:  # mutagen's, the file's and the system's errors: our error, with the reason
        import mutagen

        if not isinstance(exc, (mutagen.MutagenError, *formats.UNREADABLE)) and not formats.raised_in_mutagen(exc):
            raise  # a bug in tagger: its own traceback, not the file's fault (the copy is removed below)
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        kind_of = "mutagen" if isinstance(exc, mutagen.MutagenError) else type(exc).__name__
        raise TagWriteError(shown, f"tag write failed ({kind_of}: {reason}); file left unchanged") from exc
    finally:
        signals.at_forced_stop(write.close, done=True)
        write.close()
    return TagChange(
        path=shown, before=decision.before, after=decision.after, changed=True, written=True, size=new.st_size,
        mtime=new.st_mtime, ctime_ns=new.st_ctime_ns, audio_digest=write.payload, retagged=retagged is not None,
        converted=decision.converted,
    )  # fmt: skip
