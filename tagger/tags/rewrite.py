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

Where the fields live in each container is `tagger.tags.storage`'s business. Recognising a file's
format and loading it with mutagen is in `tagger.tags.formats`; the file-system checks and the facts
kept on the copy (lease, writers' lock, mode, owner, extended attributes, fsync) are in
`tagger.tags.filesystem`; the checks that the file is the one analysed and is settled, in
`tagger.tags.checks`; the hidden copy's name and the copies that killed writes left, in
`tagger.tags.leftovers`.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from tagger import signals
from tagger.errors import ChangedSinceError, TaggerError, TagWriteError
from tagger.paths import TEMP_SUFFIX
from tagger.tags import filesystem, formats
from tagger.tags.checks import _check_expected, _check_fingerprint, _only_tags_changed, unsettled_reason
from tagger.tags.fields import INSTRUMENTS_MODEL, INSTRUMENTS_SCORES, Raw, TagChange, TagState, desired_raw, state
from tagger.tags.leftovers import temp_prefix
from tagger.tags.storage import MP4_FREEFORM_PREFIX, STORAGES, Storage, payload_digest, supported_formats

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
    Raises `TagWriteError` (read-only, changed, recently changed or in-use file, unsupported format,
    failed write or verification) and `UserError` (unknown family, bad score, empty model version).
    """
    raw = desired_raw(instruments=instruments, model_version=model_version, scores=scores, families=families)
    scored: Raw = {}
    if scores is None and current_scores is not None:
        scored = desired_raw(instruments=instruments, model_version=model_version, scores=current_scores,
                             families=families)  # fmt: skip

    def target(before: Raw) -> Raw:  # (scores joined by "/" as in ID3v2.3, in a tag converted to v2.4: kept)
        if not over_other_model and before.get(INSTRUMENTS_MODEL, [model_version]) != [model_version]:
            return before
        held = [v for value in before.get(INSTRUMENTS_SCORES, []) for v in value.split("/")]
        return scored if INSTRUMENTS_SCORES in scored and held == scored[INSTRUMENTS_SCORES] else raw

    return _rewrite(
        path, target=target, id3v23=id3v23, keep_mtime=keep_mtime, dry_run=dry_run, expected=expected,
        settle_seconds=settle_seconds, fingerprint=fingerprint, inode=inode, content_hash=content_hash,
        ctime_ns=ctime_ns, audio_digest=audio_digest, before_replace=before_replace,
    )  # fmt: skip


def remove_instruments(
    path: str | os.PathLike,
    *,
    keep_mtime: bool = False,
    dry_run: bool = False,
    expected: tuple[int, float] | None = None,
    settle_seconds: float = 0.0,
) -> TagChange:
    """Remove exactly tagger's fields (`FIELDS`) and nothing else, atomically.

    An ID3 tag left without any frame is removed altogether (tagger created it). A file without
    tagger's fields is left untouched (``written=False``). ``settle_seconds``: as for `write_instruments`.
    """
    return _rewrite(
        path, target=lambda _before: {}, id3v23=None, keep_mtime=keep_mtime, dry_run=dry_run, expected=expected,
        settle_seconds=settle_seconds,
    )  # fmt: skip


class _BeforeReplaceFailed(Exception):
    """What the ``before_replace`` callback raised, carried past the rewrite's own error handling."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


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
                             settle_seconds=settle_seconds, before_replace=before_replace, retagged=retagged)  # fmt: skip
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
                  retagged: str | None = None):  # fmt: skip
    """`_rewrite` once the file is found: decide (`_decide`), then write the verified copy and move it
    over the file (`_Write`'s steps), its errors said as the file's. ``retagged``: the audio digest
    the file was found to have, changed since it was analysed in its tags alone (`_only_tags_changed`),
    which the bytes copied must hash to."""
    decision = _decide(shown, real, st, target=target, id3v23=id3v23, dry_run=dry_run, settle_seconds=settle_seconds)
    if not decision.changed or dry_run:
        found = {} if retagged is None else {"retagged": True, "ctime_ns": st.st_ctime_ns, "audio_digest": retagged}
        return TagChange(
            path=shown, before=decision.before, after=decision.after if decision.changed else decision.before,
            changed=decision.changed, written=False, dry_run=dry_run, size=st.st_size, mtime=st.st_mtime,
            converted=decision.converted, **found,
        )  # fmt: skip
    write = _Write(shown, real, st, decision, audio=retagged)
    try:
        write.lock()
        write.copy()
        write.change_and_verify()
        write.flush(keep_mtime=keep_mtime, before_replace=before_replace)
        write.replace()
        new = os.stat(real)
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
        write.close()
    return TagChange(
        path=shown, before=decision.before, after=decision.after, changed=True, written=True, size=new.st_size,
        mtime=new.st_mtime, ctime_ns=new.st_ctime_ns, audio_digest=write.payload, retagged=retagged is not None,
        converted=decision.converted,
    )  # fmt: skip


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
    on return, before the copy is made: covers can be tens of megabytes."""
    audio, storage = formats.open_file(shown, real=real)
    before_raw = storage.get(audio)
    after_raw = target(before_raw)
    foreign = storage.foreign(audio) if after_raw else []  # (a removal leaves them alone: not ours)
    if foreign:
        raise TagWriteError(shown, foreign_reason(foreign))
    version, convert = storage.version(audio, id3v23, after_raw)
    changed = before_raw != after_raw or convert
    before, after = state(before_raw), state(after_raw)
    unsettled = unsettled_reason(st.st_mtime, settle_seconds)
    if changed:
        loss = storage.cannot_keep(audio, real, version)
        if loss:
            raise TagWriteError(shown, f"{loss}; left unchanged")
        filesystem.check_writable(shown, real, st)
        if unsettled:
            raise TagWriteError(shown, unsettled)
    else:  # (where it changes, `cannot_keep` refuses such a file)
        hidden = storage.fields_out_of_reach(real)
        if hidden:  # (was: an untag that found none of tagger's fields where it looks said nothing)
            raise TagWriteError(shown, f"{hidden}; left unchanged")
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


_CHANGED_MEANWHILE = "file changed while its tags were being written (another program wrote to it); left as it is"
_MOUNT_POINT = ("it is a mount point (a file mounted there on its own, as a container's volume may be): a tag write "
                "moves a verified copy over the file, which the system refuses for a mount point; left as it is")
"""A file bind-mounted over a name of the library: the ``rename`` fails with EBUSY (was said as `tag write
failed (OSError: Device or resource busy)`, naming nothing). Found at the rename, and told from a network
share's EBUSY (a file another machine has open) by the mount table."""


@dataclass
class _Write:
    """The state the steps of one write share: the file (``shown``, its ``real`` path, found as
    ``st``), the decision, the original open (``source``, holding the read lease and the writers'
    lock), the temporary copy (``tmp``, with ``held`` holding its flock), the backup link, and what
    the verification compares. Each step raises on the first thing wrong; `close` lets go of the
    descriptors and removes the copy and the backup, whatever happened."""

    shown: str
    real: str
    st: os.stat_result
    decision: _Decision
    audio: str | None = None
    """The audio digest the file must have (a file changed since it was analysed in its tags alone:
    `_only_tags_changed`), checked on the bytes copied; None: not asked."""
    source: int | None = None
    lease: filesystem.ReadLease | None = None
    held: int | None = None
    tmp: str | None = None
    backup: str | None = None
    payload: str | None = None
    """The audio payload's digest (`payload_digest`), None where the format has no cheap check."""
    values: Counter | None = None
    xattrs: dict | None = None

    @property
    def folder(self) -> str:
        return os.path.dirname(self.real) or "."

    @property
    def prefix(self) -> str:
        """The start of the temporary file's and the backup's names: hidden, after the file's own."""
        return temp_prefix(self.real)

    @property
    def mutagen_type(self) -> str:
        return self.decision.cls.__name__

    def still_the_file(self) -> bool:
        """The original open and the path both still the file found (size, mtime, inode)."""
        st = self.st
        return filesystem.same_file(os.fstat(self.source), st) and filesystem.same_file(os.stat(self.real), st)

    def lock(self) -> None:
        """Open the original, take its read lease and the writers' lock, and check it is still the file
        found: a writer that held the lock until now has moved its copy over the file."""
        self.source = os.open(self.real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        self.lease = filesystem.ReadLease(self.source, self.shown)
        filesystem.lock_writers(self.source, self.shown)  # (also "in use" for the backup name in `replace`)
        if not self.still_the_file():
            raise TagWriteError(self.shown, _CHANGED_MEANWHILE)

    def copy(self) -> None:
        """Read what the verification compares (the audio payload's digest, the tag items' stored
        values), then copy the file to the temporary file with its inode flags (`filesystem.KEPT_FLAGS`),
        owner, mode and extended attributes."""
        import fcntl

        self.payload = payload_digest(self.real, self.mutagen_type)
        if self.audio is not None and self.payload != self.audio:  # (changed since `_only_tags_changed` read it)
            raise ChangedSinceError(self.shown, "file changed since it was analysed (its audio, as its tags were "
                                                "about to be written); scan it again")  # fmt: skip
        self.values = self.decision.storage.item_values(self.real)
        with signals.held():  # (created and recorded for `close` as one step)
            self.held, self.tmp = tempfile.mkstemp(prefix=self.prefix, suffix=TEMP_SUFFIX, dir=self.folder)
            fcntl.flock(self.held, fcntl.LOCK_EX)  # "in use" until we are done or dead (remove_stale_temp_files)
        filesystem.copy_flags(self.held, filesystem.file_flags(self.source), self.shown)  # (while empty: chattr +C)
        shutil.copyfile(self.real, self.tmp)
        filesystem.copy_owner(self.tmp, self.st)  # before the mode: a chown clears a setgid bit set before it
        filesystem.copy_mode(self.tmp, self.st, self.shown)
        self.xattrs = filesystem.copy_xattrs(self.real, self.tmp, self.shown)
        if self.lease.broken():
            raise TagWriteError(self.shown, _CHANGED_MEANWHILE)

    def change_and_verify(self) -> None:
        """Change our fields in the copy and verify it (`_write_copy`, `_verify`): its mode and
        extended attributes the original's too."""
        d, tmp = self.decision, self.tmp
        items = _write_copy(tmp, cls=d.cls, storage=d.storage, raw=d.raw, version=d.version, original=self.real,
                            drop=d.drop)  # fmt: skip
        filesystem.copy_mode(tmp, self.st, self.shown)  # a write by a user other than root clears a setgid bit
        _verify(tmp, cls=d.cls, storage=d.storage, raw=d.raw, others=d.others, items=items, values=self.values,
                payload=self.payload, mutagen_type=self.mutagen_type)  # fmt: skip
        if filesystem.xattrs(tmp) != self.xattrs or stat.S_IMODE(os.stat(tmp).st_mode) != stat.S_IMODE(self.st.st_mode):
            raise TagWriteError(tmp, "verification failed: the extended attributes or the mode changed")

    def flush(self, *, keep_mtime: bool, before_replace: Callable[[str], None] | None) -> None:
        """The copy's modification time (the original's with ``keep_mtime``), its bytes on the disk,
        then ``before_replace`` (its error carried out as `_BeforeReplaceFailed`)."""
        if keep_mtime:
            os.utime(self.tmp, ns=(self.st.st_atime_ns, self.st.st_mtime_ns))
        filesystem.fsync(self.tmp)
        if before_replace is not None:
            try:
                before_replace(self.tmp)
            except Exception as exc:
                raise _BeforeReplaceFailed(exc) from exc

    def replace(self) -> None:
        """Move the copy over the file, unless the file changed meanwhile; the old file put back where
        another program opened it for writing at that moment (through the backup link, where a lease
        is held); the lease let go, the folder flushed."""
        if self.lease.broken() or not self.still_the_file():
            raise TagWriteError(self.shown, _CHANGED_MEANWHILE)
        if self.lease.active:
            with signals.held():  # (linked and recorded for `close` as one step)
                self.backup = filesystem.link_backup(self.real, self.folder, self.prefix)
        try:
            os.replace(self.tmp, self.real)
        except OSError as exc:
            import errno

            if exc.errno != errno.EBUSY or not filesystem.is_mount_point(self.real):
                raise  # (EBUSY from a network share: another machine has the file open; said as it is)
            raise TagWriteError(self.shown, _MOUNT_POINT) from None
        self.tmp = None
        if self.lease.broken():
            # Someone opened the old file for writing between the last check and the rename: their
            # writes would go to the replaced file. Put the old file back, with our copy gone.
            if self.backup is None:
                raise TagWriteError(self.shown, "tags written, but another program opened the file for writing at "
                                                "that moment; its changes may be lost: check the file")  # fmt: skip
            os.replace(self.backup, self.real)
            self.backup = None
            raise TagWriteError(self.shown, _CHANGED_MEANWHILE)
        os.close(self.source)  # the lease ends here
        self.source = None
        filesystem.fsync_dir(self.folder)

    def close(self) -> None:
        """Remove the copy and the backup (where still there) and close the descriptors, whole: a stop
        signal arriving meanwhile comes after (`tagger.signals.held`)."""
        with signals.held():
            for name in (self.tmp, self.backup):
                if name is not None:
                    try:
                        os.unlink(name)
                    except OSError:  # (gone, or a folder that refuses removals: a later scan removes it if it can;
                        pass  # the error that stopped the write is the one reported, and the descriptors are closed)
            if self.held is not None:
                os.close(self.held)
            if self.source is not None:
                os.close(self.source)


def _write_copy(
    tmp: str, *, cls: type, storage: Storage, raw: Raw, version: int | None, original: str, drop: Sequence[str] = ()
) -> Counter | None:
    """Change our fields in the temporary copy ``tmp`` (read as ``cls``, the original's mutagen
    type), removing the items ``drop`` too -> the tag items its bytes must then list
    (`Storage.expected_item_ids`; None where the container has no such listing)."""
    audio, _ = formats.open_file(tmp, cls=cls)
    storage.set(audio, raw, drop=drop)
    storage.prepare(audio, version)
    items = storage.expected_item_ids(audio, version)
    storage.save(audio, tmp, version=version, original=original)
    return items


def _verify(
    tmp: str, *, cls: type, storage: Storage, raw: Raw, others: dict[str, str] | None, items: Counter | None,
    values: Counter | None, payload: str | None, mutagen_type: str,
) -> None:  # fmt: skip
    """Re-read the written copy: our fields as intended, other tags unchanged (``others``: their
    digests per key, None for a version conversion, which `Storage.cannot_keep` checked beforehand), every
    item of the tag that the save wrote present in its bytes, the other items' stored values as
    they were in the original (``values``: `Storage.item_values`, mutagen's view of them being the
    same before and after), the audio payload unchanged."""
    audio, storage_now = formats.open_file(tmp, cls=cls, copies=False)  # (a removed tag: no ID3v1/INFO copies)
    if storage_now is not storage or type(audio).__name__ != mutagen_type:
        raise TagWriteError(tmp, "verification failed: the written copy is no longer the same format")
    got = storage.get(audio)
    if got != raw:
        raise TagWriteError(tmp, f"verification failed: fields read back as {got}, expected {raw}")
    if others is not None:
        now = storage.other_tags(audio)
        changed = sorted(key for key in others.keys() | now.keys() if others.get(key) != now.get(key))
        if changed:
            named = ", ".join(map(repr, changed[:5])) + (f" and {len(changed) - 5} more" if len(changed) > 5 else "")
            raise TagWriteError(tmp, f"verification failed: other tags changed ({named})")
    del audio
    if items is not None and storage.item_ids(tmp) != items:
        raise TagWriteError(tmp, "verification failed: the tag's items read from its bytes are not the ones written")
    if values is not None:
        now = storage.item_values(tmp)
        changed = ", ".join(map(repr, sorted({key for key, _digest in (values - now) + (now - values)})))
        if changed:
            raise TagWriteError(tmp, f"verification failed: the save changed how other tags are stored ({changed}), "
                                     "into a form mutagen reads as the same values")  # fmt: skip
    if payload is not None and payload_digest(tmp, mutagen_type) != payload:
        raise TagWriteError(tmp, "verification failed: the audio payload changed")
