"""Our error types. Callers only ever see these, each naming the file and a human reason."""

from __future__ import annotations

import os


class TaggerError(Exception):
    """Base class of every error tagger raises on purpose. Each pickles (a process or a Dask worker
    sending it back) with its message and attributes, whatever its ``__init__`` takes (`_rebuilt`:
    pickle's default calls the class with ``args``, the message alone, and failed with a TypeError
    for every one taking more, `AudioReadError` and `tagger.library.state.ScanInterrupted` among them)."""

    def __reduce__(self):
        return _rebuilt, (type(self), self.args), self.__dict__


def _rebuilt(cls: type[BaseException], args: tuple) -> BaseException:
    """An error of ``cls`` holding ``args``, its ``__init__`` not called: pickle then gives it back
    its attributes (`TaggerError.__reduce__`)."""
    error = cls.__new__(cls)
    error.args = args
    return error


class UserError(TaggerError):
    """Bad arguments or configuration given by the user."""


class _FileError(TaggerError):
    def __init__(self, path: str | os.PathLike | None, reason: str):
        self.path = None if path is None else os.fsdecode(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class AudioReadError(_FileError):
    """A file could not be decoded as audio. ``unreadable``: its bytes could not be read at all (an
    I/O error: a failing or vanished drive), which says nothing about its content and may pass."""

    def __init__(self, path: str | os.PathLike | None, reason: str, *, unreadable: bool = False):
        super().__init__(path, reason)
        self.unreadable = unreadable


class MissingToolError(AudioReadError):
    """A program needed to read this file whole (ffmpeg) is not installed: the machine's failure,
    not the file's, which may pass like an ``unreadable`` file's: a scan keeps the track's earlier
    results and analyses the file again at its next run, without ``--retry-errors``."""

    def __init__(self, path: str | os.PathLike | None, reason: str):
        super().__init__(path, reason, unreadable=True)


class TagWriteError(_FileError):
    """A file's tags could not be read or written."""


class ChangedSinceError(TagWriteError):
    """A file to be tagged is not the one its results were made from (its size, mtime or content
    fingerprint differ): it changed since it was analysed."""


class UntaggableError(TagWriteError):
    """A file's format holds no tags that tagger writes (raw AAC, Matroska, CAF, ...): its results
    live in the database only. Not a failure of a scan, which stores them and goes on."""


class EmptyFileError(TagWriteError):
    """A 0-byte file named like music (an interrupted copy or download): no audio and no tags.
    Nothing to write into, and nothing of tagger's to remove: `tagger untag` counts it unchanged."""


class ModelError(_FileError):
    """A model file or manifest is missing, tampered with or mismatched."""


class DatasetError(_FileError):
    """A note dataset is missing, malformed or inconsistent."""
