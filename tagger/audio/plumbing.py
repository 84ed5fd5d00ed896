"""What the probe and the decoders share: ffmpeg's and ffprobe's input options, a decoder subprocess
that dies with its parent, the capture of what libsndfile's decoders print on fd 2, and a decoder's
message without the file's path or ffmpeg's addresses."""

from __future__ import annotations

import os
import re
import sys
import threading


FFMPEG_INPUT_OPTIONS = ("-protocol_whitelist", "file")
"""Given to ffprobe and ffmpeg before the input: a file (and whatever it names) is read from the
file system only, never over a network."""


def _decoder_preexec():
    """A ``preexec_fn`` making a decoder subprocess die with the process that started it (Linux
    ``PR_SET_PDEATHSIG``), so that a killed scan worker never leaves a running ffmpeg behind, in a
    process group of its own: a Ctrl-C (or any signal) sent to the scan's group does not reach it,
    as ffmpeg sets its own SIGINT handler whatever it inherits, and a scan started with SIGINT
    ignored (a script's ``tagger scan ... &``) had the file it was decoding stored as the lasting
    error ``ffmpeg could not decode the file: exit code 255``. Only its starter ends it (or its
    death, before the decoder's exec too: the decoder then exits at once)."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, before the fork
    except (OSError, AttributeError):
        return None

    starter = os.getpid()

    def die_with_parent() -> None:
        os.setpgid(0, 0)
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        if os.getppid() != starter:  # (it died before the prctl: no signal will come)
            os._exit(1)

    return die_with_parent


def _unaddressed(line: str) -> str:
    """An ffmpeg message without its ``[aac @ 0x...]`` prefix's address, which changes from run to
    run (a stored reason must not): ``aac: ...``."""
    return re.sub(r"^\[([^\]]+?) @ 0x[0-9a-f]+\] ", r"\1: ", line.strip())


def opened_name(path: str | os.PathLike) -> str:
    """The name libsndfile, ffprobe and ffmpeg are given for the file ``path``: absolute (a relative
    ``-`` is standard input to them), naming what the system opens (`tagger.paths.absolute`:
    `os.path.abspath` cut ``link/..`` out of the name by its letters, where the system goes up from
    the folder the link leads to, so ``tagger predict link/../a.wav`` decoded the ``a.wav`` beside
    ``link``, another file than the one named)."""
    from tagger.paths import absolute

    return absolute(path)


def _said(text: str, path: str | os.PathLike) -> str:
    """A decoder's message without the file's path, which ffmpeg and libsndfile put in theirs: the
    reason is stored with the track and must stay true when the file is moved (the error names the
    file already). Every decoder is given `opened_name` (a relative ``-`` is standard input to
    them), so that name alone is cut: a relative one, also cut before, took letters out of the
    message wherever they stood (``tagger predict a``: 'Invthe filelid dthe filetthe file found')."""
    p = opened_name(path)
    read = os.fsencode(p).decode("utf-8", "replace")  # (as its message is read: a byte not UTF-8 is U+FFFD)
    for name in dict.fromkeys((p, read, _FFMPEG_LOGGED.sub("?", p), _FFMPEG_LOGGED.sub("?", read))):
        # (as given, as read back, and as ffmpeg's log writes it)
        text = text.replace(f"{name}: ", "").replace(repr(name), "the file").replace(name, "the file")
    return text


_FFMPEG_LOGGED = re.compile("[\x00-\x07\x0e-\x1f]")
"""The control characters ffmpeg's log writes as ``?`` (libavutil/log.c ``sanitize``: a name holding
an escape sequence is written so in its messages)."""


class _DecoderStderr:
    """Catches what libsndfile's decoders print on file descriptor 2 (libmpg123 reports each
    corrupt MP3 frame there) during the calls made inside ``with trap:``, into one temporary file
    per decoded file, instead of the terminal; `first_line` is kept for the file's error message.
    fd 2 is process-wide: calls from several threads are serialised."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self.file = None
        self.saved: int | None = None

    def __enter__(self) -> _DecoderStderr:
        self._lock.acquire()
        try:
            if self.file is None:
                import tempfile

                self.file = tempfile.TemporaryFile()
            sys.stderr.flush()
            self.saved = os.dup(2)
            os.dup2(self.file.fileno(), 2)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        finally:
            self._lock.release()

    def first_line(self) -> str:
        if self.file is None:
            return ""
        self.file.seek(0)
        lines = self.file.read(4096).decode("utf-8", "replace").strip().splitlines()
        return lines[0].strip() if lines else ""

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
