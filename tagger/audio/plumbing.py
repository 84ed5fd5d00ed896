"""What the probe and the decoders share: ffmpeg's and ffprobe's input options, a decoder subprocess
that dies with its parent and that a stop ends (`start_decoder`, `run_decoder`, `ending_decoders`),
the capture of what libsndfile's decoders print on fd 2, and a decoder's message without the file's
path or ffmpeg's addresses."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator


FFMPEG_INPUT_OPTIONS = ("-protocol_whitelist", "file")
"""Given to ffprobe and ffmpeg before the input: a file (and whatever it names) is read from the
file system only, never over a network."""


def _decoder_preexec():
    """A ``preexec_fn`` making a decoder subprocess die with the process that started it (Linux
    ``PR_SET_PDEATHSIG``), so that a killed scan worker never leaves a running ffmpeg behind (its
    death before the decoder's exec too: the decoder then exits at once). The decoder's process
    group of its own is `start_decoder`'s ``process_group=0``, set by the C code of the fork, not here
    (was: ``os.setpgid`` here, one more Python call in the forked child). As little Python as can be
    runs here: after a fork, in a process that has threads, only the forking thread goes on."""
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
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
        if os.getppid() != starter:  # (it died before the prctl: no signal will come)
            os._exit(1)

    return die_with_parent


_RUNNING: dict[subprocess.Popen, int] = {}
"""The decoder subprocesses this process runs now (`start_decoder` to `decoder_done`), each with the
thread that started it (`threading.get_ident`)."""


class _Ending:
    """An `ending_decoders` block: the thread it runs in, ``asked`` once its ``end`` was called."""

    asked = False

    def __init__(self) -> None:
        self.thread = threading.get_ident()


_ENDING: list[_Ending] = []
"""The `ending_decoders` blocks under way."""


def start_decoder(cmd: list[str], **popen: object) -> subprocess.Popen:
    """Start the decoder ``cmd`` (ffmpeg, ffprobe) with ``popen``'s `subprocess.Popen` arguments: in a
    process group of its own (a Ctrl-C, or any signal, sent to the scan's group does not reach it:
    ffmpeg sets its own SIGINT handler whatever it inherits, and a scan started with SIGINT ignored,
    a script's ``tagger scan ... &``, had the file it was decoding stored as the lasting error
    ``ffmpeg could not decode the file: exit code 255``), dying with this process
    (`_decoder_preexec`), and known until `decoder_done` to the `ending_decoders` block of its thread,
    whose ``end`` ends it (one started after it was called ends at once)."""
    proc = subprocess.Popen(cmd, process_group=0, preexec_fn=_decoder_preexec(), **popen)
    thread = _RUNNING[proc] = threading.get_ident()
    # (looked at after the add: an ``end`` called in between has ended it too)
    if any(block.asked and block.thread == thread for block in _ENDING):
        _end(proc)
    return proc


def decoder_done(proc: subprocess.Popen) -> None:
    """``proc`` (`start_decoder`'s) is no longer run: ended, or waited for."""
    _RUNNING.pop(proc, None)


def run_decoder(cmd: list[str], *, timeout: float) -> tuple[int, bytes, bytes]:
    """(exit status, standard output, standard error) of the decoder ``cmd`` (`start_decoder`), as
    `subprocess.run` gives them; `subprocess.TimeoutExpired` past ``timeout`` seconds, the decoder
    ended. Ended by ``end`` of `ending_decoders`, its status is -9 (SIGKILL)."""
    proc = start_decoder(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with proc:  # (its pipes closed, and it waited for, however this ends)
            try:
                out, err = proc.communicate(timeout=timeout)
            except BaseException:
                _end(proc)
                raise
    finally:
        decoder_done(proc)
    return proc.returncode, out, err


def _end(proc: subprocess.Popen) -> None:
    try:
        proc.kill()  # (not one waited for already: `Popen.send_signal` looks first)
    except OSError:
        pass


@contextlib.contextmanager
def ending_decoders() -> Iterator[Callable[[], None]]:
    """A block within which the function it gives, ``end()``, ends the decoder subprocesses that the
    block's thread runs (`start_decoder`), and any it starts after the call at once, until the block
    ends: what is waiting for one of them then sees it end (killed: a failure the caller knows for the
    stop's). A scan analysing its files in its own process (``--jobs 0``) calls it at a stop, from the
    stop signal's handler (`tagger.library.state.StopSignals.calling`): it waited for the ffprobe
    reading the file (up to its 60 s timeout) or a hung ffmpeg before it stopped. The decoders of
    another thread (a program that reads audio beside the scan, through `tagger.audio`) are not the
    scan's: left to run (were ended too, their reads failing with exit code -9)."""
    block = _Ending()

    def end() -> None:
        block.asked = True
        for proc, thread in list(_RUNNING.items()):
            if thread == block.thread:
                _end(proc)

    _ENDING.append(block)
    try:
        yield end
    finally:
        _ENDING.remove(block)


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
    text = text.replace(repr(os.fsencode(p)), "the file")  # (libsndfile is given the name's bytes)
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
