"""The signals that stop a run (`STOP_SIGNALS`: SIGINT, SIGTERM, SIGHUP): `tagger.library.state.StopSignals`
handles them (the first asks the run to stop, a second interrupts at once), and the tag writes hold
them back (`held`) around the steps that a second one must not split (`tagger.tags.rewrite`)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
"""The names of the signals that stop a scan, `tag` and `untag` (Ctrl-C, `kill`, a closed terminal)."""


class Interrupted(KeyboardInterrupt):
    """A second stop signal, which stops a command at once (`tagger.library.state.StopSignals`), as
    Python's own SIGINT handler does: the command's exit status is 128 + ``signum`` (`exit_status`;
    was 130 for every signal, SIGTERM's 143 by convention)."""

    def __init__(self, signum: int) -> None:
        super().__init__()
        self.signum = signum

    def __reduce__(self):  # (pickle's default calls the class without ``signum``: a TypeError)
        return type(self), (self.signum,), self.__dict__  # (its notes, as pickle's default keeps them)


def exit_status(interrupted: KeyboardInterrupt) -> int:
    """The exit status of a command `interrupted` at once: 128 + the signal's number (`Interrupted`),
    130 for Python's own KeyboardInterrupt (SIGINT)."""
    return 128 + getattr(interrupted, "signum", 2)


@contextlib.contextmanager
def held(*, at_most: int | None = None, on_held: Callable[[int], None] | None = None) -> Iterator[None]:
    """The Python handlers of the stop signals held back while the block runs: a stop signal that
    comes meanwhile is handed to its handler as the block ends (the block's error, if any, going on
    after). A second one interrupts at once (`StopSignals`, Python's own SIGINT handler:
    KeyboardInterrupt), wherever Python is: between the creation of a tag write's hidden copy or
    backup link and its name's recording (`tempfile.mkstemp` returns the name only once the file
    exists) it left that file in the library, where only a later scan of the folder removed it;
    inside their removal, it left the rest. Held, it comes once the name is recorded, or once every
    name is removed.

    The handlers, not the signals, are held (``pthread_sigmask`` holds a signal back from one thread
    only, and the kernel gives it to another, such as the one numpy starts on import, its Python
    handler running in the main thread all the same). A signal left to the system (SIG_DFL: SIGTERM without a handler
    kills at once, as ``kill -9`` does) or ignored is left as it is. Outside the main thread, where
    Python runs no handler, the block runs as it is.

    ``at_most``: the stop signal that makes that many while the block runs is not held: the handlers
    are put back and handed those that came at once, inside the block (a block that may last, such
    as another program's write in place on a slow or hung drive, must not make every Ctrl-C and
    SIGTERM useless). ``on_held``: called with the count at each one held (from the handler, in the
    main thread: quick, never raising; `say` a line)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: dict[int, object] = {}
    came: list[int] = []

    def defer(signum, _frame) -> None:
        came.append(signum)
        if at_most is not None and len(came) >= at_most:
            given, back = list(came), dict(saved)
            came.clear()
            saved.clear()
            _give_back(back, given)
        elif on_held is not None:
            on_held(len(came))

    try:
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            handler = signal.getsignal(sig) if sig is not None else None
            if callable(handler):
                saved[sig] = handler
                set_handler(sig, defer)
        yield
    finally:
        _give_back(saved, came)


def _give_back(saved: dict, came: list[int]) -> None:
    """Put the handlers ``saved`` back, then hand them the signals that ``came`` meanwhile, in order;
    the first error one of them raises (KeyboardInterrupt) is raised once all are back and handed.
    (Python handles a pending signal as a handler is set: one handled so is such an error too.)"""
    interrupted: BaseException | None = None
    for sig, handler in saved.items():
        for _try in range(len(STOP_SIGNALS) + 1):  # (each pending signal is handled once)
            try:
                set_handler(sig, handler)
                break
            except BaseException as exc:  # noqa: BLE001 - (a pending signal's handler: kept, raised below)
                interrupted = interrupted or exc
    for signum in came:
        try:
            saved[signum](signum, None)
        except BaseException as exc:  # noqa: BLE001 - as above
            interrupted = interrupted or exc
    if interrupted is not None:
        raise interrupted


def set_handler(sig: int, handler):
    """`signal.signal` (the handler before returned), told to `watch_stop_signals`' thread where it
    runs, in its order among the signals that thread reads: a 0 byte written to its pipe once the
    handler is set. The watcher judges a signal it reads before that byte by the handler before
    (Python hands a pending signal to the handler before as it sets another), one after by this one
    (was: by the handler in force when it read the signal, which the main thread could have set
    meanwhile: a scan's first Ctrl-C, handled by its `tagger.library.state.StopSignals`, whose block
    had put Python's own handler back before the watcher's thread ran, was read as Python's own
    Ctrl-C, at once, ending the process if it then waited in SQLite). Only one that comes between
    the setting and the byte, a few bytecodes of the main thread, is still judged by the handler
    before. Every stop-signal handler tagger sets goes through here.

    The watcher asks of a handler only whether it is Python's own SIGINT handler: a change that
    leaves that answer as the watcher was last told it is not told (was: every change woke the
    watcher's thread, six for each `held` block, which swaps `StopSignals`' handlers for its own and
    back, four blocks in a FLAC file's tag write: a few tenths of a millisecond of each write's main
    thread on a loaded machine)."""
    import os
    import signal

    before = signal.signal(sig, handler)
    told = _TOLD
    if told is not None:
        told.latest[sig] = handler
        if (handler is signal.default_int_handler) is (told.sent.get(sig) is signal.default_int_handler):
            return before
        told.sent[sig] = handler
        told.changes.append((sig, handler))
        try:
            os.write(told.write, b"\0")
        except OSError:
            pass  # (the pipe full: a watcher that reads nothing; the change is taken at the next 0)
    return before


class _Told:
    """The stop-signal handlers as `watch_stop_signals`' thread is told of them (`set_handler`): those
    in force as it started (``start``), the changes in order, each to be taken at its 0 byte
    (``changes``), the latest told (``sent``) and the latest set (``latest``). ``write``: the
    watcher's pipe."""

    def __init__(self, write: int) -> None:
        import collections
        import signal

        self.write = write
        stops = [getattr(signal, name) for name in STOP_SIGNALS if hasattr(signal, name)]
        self.start = {sig: signal.getsignal(sig) for sig in stops}
        self.latest = dict(self.start)
        self.sent = dict(self.start)
        self.changes: collections.deque = collections.deque()


_TOLD: _Told | None = None
"""What `set_handler` tells the running watcher (None: none runs)."""


def watch_stop_signals(main_call: Callable[[], int | None]) -> None:
    """Make a second stop signal stop the command at once while its main thread waits inside SQLite
    for a lock another process holds (its busy timeout, `tagger.db.engine.BUSY_TIMEOUT_S`): there
    Python runs no signal handler until SQLite returns, and two Ctrl-Cs to a ``tagger untag`` whose
    record waited took 31 s to end it. A thread reads the signals from `signal.set_wakeup_fd` (the
    numbers of those with a Python handler, written as they come, wherever the main thread is); at
    the second stop signal (or a SIGINT with Python's own handler, KeyboardInterrupt at once), where
    the main thread is in a call into SQLite (`tagger.db.sqlite_calls.main_call`) and still in the
    same one `STUCK_S` later, it ends the process as Python's handler would have: ``tagger: error:
    interrupted``, exit status 128 + that signal's number (130 for SIGINT), the hidden copy of a tag write under way removed
    (`at_forced_stop`: ``tag`` waits there to record the file as pending, before its copy replaces
    it), the file left as it was. SQLite's transaction is left as a kill leaves it: not committed.
    Called once, by the command line's entry point (from the main thread), with
    `tagger.db.sqlite_calls.main_call` (passed in: ``tagger.db`` imports `tagger.outputs`, which
    imports this module for `at_forced_stop`); where another wakeup fd is set, or none can be, it
    does nothing."""
    import os
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return
    read, write = os.pipe()
    os.set_blocking(write, False)
    try:
        before = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    except (ValueError, OSError):
        before = None
    if before != -1:
        if before is not None:
            signal.set_wakeup_fd(before)
        os.close(read)
        os.close(write)
        return
    global _TOLD
    _TOLD = _Told(write)
    threading.Thread(target=_watch, args=(read, main_call, _TOLD), name="tagger-stop-signals", daemon=True).start()


_AT_FORCED_STOP: list = []
"""What `watch_stop_signals` calls before it ends the process (`at_forced_stop`), the latest first."""


def at_forced_stop(undo, *, done: bool = False) -> None:
    """Have `watch_stop_signals` call ``undo`` (from its own thread, the main thread stuck in SQLite)
    before it ends the process at a second stop signal: a tag write's `close`, which removes its
    hidden copy, as the KeyboardInterrupt of a second signal elsewhere does; `tagger.outputs.write_atomic`'s
    removal of its temporary file (``query -o`` streams the tracks it reads into it). ``done``: no longer."""
    if done:
        if undo in _AT_FORCED_STOP:
            _AT_FORCED_STOP.remove(undo)
    else:
        _AT_FORCED_STOP.append(undo)


STUCK_S = 0.5
"""How long the main thread may stay in the call into SQLite it was in at a second stop signal before
`watch_stop_signals` ends the process (a statement that is not waiting for a lock returns sooner,
and Python's handler then stops the command as it always did)."""


def _watch(read: int, main_call: Callable[[], int | None], told: _Told) -> None:
    import os
    import signal
    import time

    handlers = dict(told.start)  # (those in force as the signals read so far came)
    seen = 0
    while True:
        try:
            data = os.read(read, 64)
        except OSError:
            return
        if not data:
            return
        for signum in data:
            if signum == 0 and told.changes:  # (a handler set: `set_handler`)
                sig, handler = told.changes.popleft()
                handlers[sig] = handler
            if signum not in handlers:
                continue
            seen += 1
            if seen < 2 and _handler(signum, handlers, told) is not signal.default_int_handler:
                continue
            call = main_call()
            if call is None:
                continue
            waited = 0.0
            while main_call() == call and waited < STUCK_S:
                time.sleep(0.05)
                waited += 0.05
            if main_call() == call:
                _end_at_once(signum)


def say(line: str) -> None:
    """Write ``line`` (text tagger composed, its names escaped by `tagger.display.named`) on stderr as
    a forced stop writes its own lines (`_end_at_once`): straight to file descriptor 2, in stderr's
    encoding (a character it lacks as an escape), never through ``sys.stderr`` (the main thread may
    hold it) nor through logging (configured otherwise by a program that calls tagger, it dropped or
    reformatted the line). For what `at_forced_stop` holds: ``functools.partial(say, LINE)``."""
    import os
    import sys

    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    try:
        os.write(2, (line + "\n").encode(encoding, "backslashreplace"))
    except (OSError, LookupError):
        pass


def _handler(signum: int, handlers: dict, told: _Told):
    """The handler Python hands ``signum`` to, as the watcher reads it: the one in force as it came
    (``handlers``: where `set_handler` told no change, one that is Python's own SIGINT handler as
    that one is or is not), where every change since went through `set_handler`; else (a handler
    set otherwise) the one in force now."""
    import signal

    now = signal.getsignal(signum)
    return handlers[signum] if now is told.latest.get(signum) else now


def _end_at_once(signum: int) -> None:
    """End the process as `tagger.cli.app.handle_errors` ends one interrupted: what the command had
    printed flushed (by a thread of its own: never waiting on a stream the main thread holds), what
    `at_forced_stop` holds called (the lines it writes with `say` coming after the command's), then
    ``tagger: error: interrupted`` and exit status 128 + the signal's number ``signum`` (was 130 for
    SIGTERM too)."""
    import os
    import sys
    import threading

    def flush() -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001 - (closed, full: the lines below are written all the same)
                pass

    flusher = threading.Thread(target=flush, daemon=True)
    flusher.start()
    flusher.join(1.0)
    for undo in reversed(list(_AT_FORCED_STOP)):
        try:
            undo()
        except Exception:  # noqa: BLE001 - (one that fails leaves what a kill leaves: a later scan removes it)
            pass
    say("tagger: error: interrupted")
    os._exit(128 + signum)
