"""The steps of one tag write on its hidden copy (`tagger.tags.rewrite`), once `tagger.tags.decide`
has decided it (`_Write`): the original locked and leased, copied, the copy changed and verified
against it (`_write_copy`, `_verify`), flushed, moved over the file, and the copy and the backup
removed whatever happened: only they, and the original they replaced (`_Write._ours`); a file of
another program, or the original, found under the copy's name and not put back is kept beside the
file (`_Write._keep`).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tagger import signals
from tagger.errors import ChangedSinceError, TagWriteError
from tagger.paths import TEMP_SUFFIX
from tagger.tags import filesystem, formats
from tagger.tags import scratch as scratch_files
from tagger.tags.decide import _CHANGED_MEANWHILE, _Decision
from tagger.tags.fields import Raw
from tagger.tags.leftovers import backup_prefix, swap_name, temp_prefix
from tagger.tags.storage import Storage, payload_digest

log = logging.getLogger(__name__)


class _BeforeReplaceFailed(Exception):
    """What the ``before_replace`` callback raised, carried past the rewrite's own error handling."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error)
        self.error = error


_GONE_MEANWHILE = ("file deleted or moved away while its tags were being written (by another program); not put "
                   "back")
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
    fingerprint: str | None = None
    """The fingerprint (`tagger.fingerprint.fingerprint`) the file was found to have, checked again
    where a FUSE file system gave it another number (`lock`); None: not known."""
    source: int | None = None
    lease: filesystem.ReadLease | None = None
    held: int | None = None
    tmp: str | None = None
    backup: str | None = None
    payload: str | None = None
    """The audio payload's digest (`payload_digest`), None where the format has no cheap check."""
    values: Counter | None = None
    xattrs: dict | None = None
    scratch: str | None = None
    """Where the tags are written first, outside the drive, on a file system that cannot resize files
    (`filesystem.resizes_files`), before it is copied whole into ``tmp``; None: written in ``tmp``."""
    scratch_held: int | None = None
    """``scratch`` open, holding its lock (`tagger.tags.scratch`: not removed as a killed write's)."""
    replaced: bool = False
    """The copy moved over the file: the original, under the copy's name or the backup's, is removed."""

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
        held = os.fstat(self.source)
        renumbered = not filesystem.same_file(held, self.st) and filesystem.renumbered(self.st, held, self.real)
        if renumbered:
            self.st = held  # (its number as the descriptor keeps it, for the checks from here on)
        if not self.still_the_file():
            raise TagWriteError(self.shown, _CHANGED_MEANWHILE)
        if renumbered and self.fingerprint is not None:
            # (exfat-fuse gives a file moved over it with its times kept, `touch -r`, `cp -p`, the same
            # size, mtime and ctime: only its content tells it from the file found)
            from tagger.fingerprint import fingerprint

            if fingerprint(self.real) != self.fingerprint:
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
            try:
                self.held, self.tmp = tempfile.mkstemp(prefix=self.prefix, suffix=TEMP_SUFFIX, dir=self.folder)
            except OSError as exc:
                too_long = _path_too_long(self.folder, self.prefix) if exc.errno == errno.ENAMETOOLONG else None
                if too_long is None:
                    raise
                raise TagWriteError(self.shown, too_long) from exc
            fcntl.flock(self.held, fcntl.LOCK_EX)  # "in use" until we are done or dead (remove_stale_temp_files)
        filesystem.copy_flags(self.held, filesystem.file_flags(self.source), self.shown)  # (while empty: chattr +C)
        if not filesystem.resizes_files(self.held, self.tmp, self.shown):
            self._make_scratch()
        else:
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
        items = _write_copy(self.scratch or tmp, cls=d.cls, storage=d.storage, raw=d.raw, version=d.version,
                            original=self.real, drop=d.drop)  # fmt: skip
        if self.scratch is not None:  # (written once, from its start, into the empty copy on the drive)
            shutil.copyfile(self.scratch, tmp)
        filesystem.copy_mode(tmp, self.st, self.shown)  # a write by a user other than root clears a setgid bit
        _verify(tmp, cls=d.cls, storage=d.storage, raw=d.raw, others=d.others, items=items, values=self.values,
                payload=self.payload, mutagen_type=self.mutagen_type, original=self.real)  # fmt: skip
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
        is held), or moved another file over it after the last check; the lease let go, the folder
        flushed.

        Where the file system can (`filesystem.exchange`), the copy and the file swap names in one
        step, and the name the copy had then holds what was at the path: a file another program moved
        there after the last check (a tag editor's atomic save, ``ffmpeg ... && mv``) is put back at
        once, never lost (was: the copy moved over it, a write of theirs lost about once in 25 when
        they saved every few milliseconds), and so is a second save of theirs landing between the swap
        and the swap back (was: taken out by the swap back and removed as the copy); a file deleted or
        moved away meanwhile stays so (was: the copy put back under its name). Elsewhere the rename
        replaces whatever is there, or is not; a file system that takes the swap for a plain rename
        (FUSE ones built on fusepy with libfuse 3) has the copy at the path: a rename it was (was: said
        `file deleted or moved away ...` of every file it tagged)."""
        with signals.held():  # (renamed and recorded for `close` as one step, before the last check: after
            self._name_for_the_swap()  # it, a round trip on SMB, which cannot swap, widened the gap a save is lost in)
        if self.lease.broken() or not self.still_the_file():
            raise TagWriteError(self.shown, _CHANGED_MEANWHILE)
        if self.lease.active:
            with signals.held():  # (linked and recorded for `close` as one step; the copy's first form where
                # the name with the original's facts is refused, eCryptfs's 143 bytes: was no backup at all)
                self.backup = (filesystem.link_backup(self.real, self.folder, backup_prefix(self.prefix, self.st))
                               or filesystem.link_backup(self.real, self.folder, self.prefix))
        put_back = renamed = False
        try:
            # (swapped, looked at and swapped back as one step: a second stop signal in between would
            # have `close` remove, under the copy's name, the file another program had moved there)
            with signals.held():
                swapped = filesystem.exchange(self.tmp, self.real)
                if swapped and not os.path.lexists(self.tmp) and self._copy_at(self.real):
                    # (a file system that took the swap for a plain rename, its flag ignored: a FUSE one on
                    # libfuse 3 whose rename drops the flags, as fusepy's do; the copy is at the path)
                    swapped, renamed = False, True
                elif swapped and (not filesystem.same_inode(os.lstat(self.tmp), self.st) or self.lease.broken()):
                    put_back = True
                    self._swap_back()
                if not swapped and not renamed:
                    os.replace(self.tmp, self.real)
                # (recorded in the same step: a stop signal at its end has `close` remove the original as
                # replaced, not keep it as a file it could not tell from another program's)
                self.replaced = not put_back
        except FileNotFoundError:
            raise TagWriteError(self.shown, _GONE_MEANWHILE) from None
        except OSError as exc:
            import errno

            if exc.errno != errno.EBUSY or not filesystem.is_mount_point(self.real):
                raise  # (EBUSY from a network share: another machine has the file open; said as it is)
            raise TagWriteError(self.shown, _MOUNT_POINT) from None
        if put_back:  # (our copy under its own name again, removed by `close`)
            raise TagWriteError(self.shown, _CHANGED_MEANWHILE)
        if not swapped:  # (else the copy's name holds the old file, removed by `close`)
            self.tmp = None
        if not swapped and self.lease.broken():
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

    def left(self) -> os.stat_result:
        """The file this write left at the path, once `replace` moved the copy there: its size, mtime
        and ctime are what `tagger.tags.TagChange` says the write left, and what a record of tagger's
        own write takes for it (`tagger.db.writes.record_own_write`, `record_rewrite`), the settle time
        not waited for a file found so. Where the path no longer holds the copy (another program's save
        moved over it right after, while the folder was flushed: was taken for tagger's write, its
        fingerprint recorded with the results of the audio written), the copy's own (still held
        open), which the file at the path does not have: nothing is recorded of it."""
        new = os.stat(self.real)
        if self.held is None:
            return new
        copy = os.fstat(self.held)
        return new if filesystem.same_inode(new, copy) or filesystem.renumbered(copy, new, self.real) else copy

    def _make_scratch(self) -> None:
        """Copy the file to ``scratch``, in tagger's folder in the system's temporary folder, held locked
        (`tagger.tags.scratch`: stale ones of killed writes removed first); its error said as the
        drive's limit."""
        try:
            with signals.held():  # (created and recorded for `close` as one step)
                self.scratch_held, self.scratch = scratch_files.create()
            shutil.copyfile(self.real, self.scratch)
        except OSError as exc:
            raise TagWriteError(self.shown, f"its file system cannot resize files (FAT through fusefat refuses "
                                            f"ftruncate), so its tags are written in a copy in {tempfile.gettempdir()} "
                                            f"first, which failed: {exc.strerror or exc}") from exc

    def _name_for_the_swap(self) -> None:
        """Rename the copy `leftovers.swap_name` (its inode and the original's facts in its name) for the
        swap of the names: a write killed between the swap and the swap back (`kill -9`, power loss)
        leaves under it what the swap took from the path, which the next cleanup deletes only where it
        is the original (or the copy) and keeps otherwise (was: another program's save, moved over the
        file after the last check, deleted as a copy). Left as it is where the file system cannot rename
        without replacing (`filesystem.rename_noreplace`: it cannot swap either) or refuses."""
        name = swap_name(self.tmp, self.prefix, os.fstat(self.held), self.st)
        try:
            if filesystem.rename_noreplace(self.tmp, name):
                self.tmp = name
        except OSError:
            pass  # (the swap, or the rename, meets what is wrong and says it)

    def _swap_back(self) -> None:
        """Put back at the path the file the swap took from it (another program's, or the original
        opened for writing), and where the swap back took out a second file of theirs moved over the
        copy meanwhile, swap again: their last one at the path. Where the copy's name then holds
        anything but the copy (a swap back the file system refused, EIO, ENOSPC, ...; the path deleted
        or moved away meanwhile; their earlier file, which the later one replaced at the path), that
        file is kept (`_keep`) and the error says where: was removed by `close` as the copy, another
        program's save or the original lost."""
        gone = last_out = False
        try:
            if filesystem.exchange(self.tmp, self.real) and not self._copy_at(self.tmp):
                # (another save of theirs moved over our copy after the swap, and the swap back took
                # it out: their last one back at the path; the one it replaced is kept below)
                last_out = not filesystem.exchange(self.tmp, self.real)
        except FileNotFoundError:  # (the path deleted or moved away since the swap: it held our copy)
            gone = True
        except OSError:
            pass  # (refused, as `exchange` says False: said below)
        if not os.path.lexists(self.tmp) or self._copy_at(self.tmp):
            return  # (put back: our copy under its own name, removed by `close`)
        kept = self._keep(self.tmp)
        if gone or not os.path.lexists(self.real):
            raise TagWriteError(self.shown, f"{_GONE_MEANWHILE}; the file that was there before is kept as {kept}")
        if last_out:
            raise TagWriteError(self.shown, f"file changed while its tags were being written (another program moved "
                                            f"files over it twice), and the file system refused to put their last "
                                            f"one back: it is kept as {kept}, and the path holds their earlier "
                                            f"one")  # fmt: skip
        if self._copy_at(self.real):
            raise TagWriteError(self.shown, f"file changed while its tags were being written (another program wrote to "
                                            f"it or moved a file over it), and the file system refused to put that "
                                            f"file back: it is kept as {kept}, and the path holds tagger's copy of "
                                            f"the file as it was found, with the new tags")  # fmt: skip
        raise TagWriteError(self.shown, f"{_CHANGED_MEANWHILE}; the file another program replaced there meanwhile is "
                                        f"kept as {kept}")  # fmt: skip

    def _keep(self, tmp: str) -> str:
        """Move the file at ``tmp`` (the copy's name or the backup's), not one `close` may remove, to a
        name of its own beside the file, ``NAME.tagger-kept-XXXXXXXX~`` (`filesystem.keep_beside`, which
        no cleanup of leftover copies removes) -> where it is now: its hidden name, where it cannot be
        moved."""
        if tmp == self.tmp:  # (never removed by `close`)
            self.tmp = None
        elif tmp == self.backup:
            self.backup = None
        kept = filesystem.keep_beside(tmp, self.folder, os.path.basename(self.real))
        if kept is not None:
            return kept
        return f"{tmp} (moving it to a name of its own failed too: move it away before a scan, `tag` or `untag` of " \
               f"that folder, which remove such leftovers)"

    def _copy_at(self, name: str) -> bool:
        """Whether the file at ``name`` is the copy (not a file put there since)."""
        return filesystem.same_inode(os.lstat(name), os.fstat(self.held))

    def _ours(self, name: str) -> bool:
        """Whether the file at ``name`` is provably one `close` may remove: the copy (the inode the copy's
        open descriptor holds); once the copy replaced the file (``replaced``), the original swapped
        under the copy's name or linked as the backup (the inode found); the backup link where another
        name still holds its file (whatever was at the path when it was linked)."""
        try:
            st = os.lstat(name)
        except OSError:
            return False
        if self.held is not None and filesystem.same_inode(st, os.fstat(self.held)):
            return True
        return (self.replaced and filesystem.same_inode(st, self.st)) or (name == self.backup and st.st_nlink > 1)

    def close(self) -> None:
        """Remove the copy (after an exchange, the old file under its name) and the backup, where still
        there and provably those (`_ours`: was, another program's save swapped under the copy's name
        and not put back removed as the copy), and close the descriptors, whole: a stop signal
        arriving meanwhile comes after (`tagger.signals.held`). Anything else under the copy's name is
        kept (`_keep`), said in the log."""
        with signals.held():
            for name in (self.tmp, self.backup, self.scratch):  # (scratch: tagger's own, in the temporary folder)
                if name is not None and name != self.scratch and os.path.lexists(name) and not self._ours(name):
                    log.warning("%s: another file than tagger's copy under its hidden name %s, kept as %s",
                                self.shown, name, self._keep(name))  # fmt: skip
                elif name is not None:
                    try:
                        os.unlink(name)
                    except OSError:  # (gone, or a folder that refuses removals: a later scan removes it if it can;
                        pass  # the error that stopped the write is the one reported, and the descriptors are closed)
            if self.held is not None:
                os.close(self.held)
            if self.scratch_held is not None:  # (its lock let go once it is removed)
                os.close(self.scratch_held)
            if self.source is not None:
                os.close(self.source)


PATH_MAX = 4096
"""Linux's limit on a path, in bytes with the NUL that ends it: a path of 4095 bytes opens, of 4096 does not."""


def _path_too_long(folder: str, prefix: str) -> str | None:
    """Why the hidden copy cannot be made beside a file whose path is near the system's limit
    (`PATH_MAX`): the file itself opens, its copy's path, ``prefix`` and a suffix longer, does not.
    None where the copy's path is within the limit (``File name too long`` of a file system whose
    names are shorter than the copy's: said as it is). (Said 'the system allows 4096' of a copy's
    path of 4096 bytes, one the system does not allow.)"""
    size = len(os.fsencode(os.path.join(folder, prefix))) + len(TEMP_SUFFIX) + 8
    if size < PATH_MAX:
        return None
    return (f"its path is too long for the hidden copy a tag write makes beside it ({size} bytes with the copy's "
            f"name; the system allows {PATH_MAX - 1}): move it to a shorter path")  # fmt: skip


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
    values: Counter | None, payload: str | None, mutagen_type: str, original: str,
) -> None:  # fmt: skip
    """Re-read the written copy: our fields as intended, other tags unchanged (``others``: their
    digests per key, None for a version conversion, which `Storage.cannot_keep` checked beforehand), every
    item of the tag that the save wrote present in its bytes, the other items' stored values as
    they were in the original (``values``: `Storage.item_values`, mutagen's view of them being the
    same before and after), the audio payload unchanged (else why, where the original file
    ``original`` tells it: `Storage.payload_change_reason`)."""
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
        why = storage.payload_change_reason(original)
        raise TagWriteError(tmp, "verification failed: the audio payload changed" + (f": {why}" if why else ""))
