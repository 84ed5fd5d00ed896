"""The signals that stop a run (`STOP_SIGNALS`: SIGINT, SIGTERM, SIGHUP): `tagger.library.state.StopSignals`
handles them (the first asks the run to stop, a second interrupts at once), and the tag writes hold
them back (`held`) around the steps that a second one must not split (`tagger.tags.rewrite`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
"""The names of the signals that stop a scan, `tag` and `untag` (Ctrl-C, `kill`, a closed terminal)."""


@contextlib.contextmanager
def held() -> Iterator[None]:
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
    Python runs no handler, the block runs as it is."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved: dict[int, object] = {}
    came: list[int] = []

    def defer(signum, _frame) -> None:
        came.append(signum)

    try:
        for name in STOP_SIGNALS:
            sig = getattr(signal, name, None)
            handler = signal.getsignal(sig) if sig is not None else None
            if callable(handler):
                saved[sig] = handler
                signal.signal(sig, defer)
        yield
    finally:
        _give_back(saved, came)


def _give_back(saved: dict, came: list[int]) -> None:
    """Put the handlers ``saved`` back, then hand them the signals that ``came`` meanwhile, in order;
    the first error one of them raises (KeyboardInterrupt) is raised once all are back and handed.
    (Python handles a pending signal as a handler is set: one handled so is such an error too.)"""
    import signal

    interrupted: BaseException | None = None
    for sig, handler in saved.items():
        for _try in range(len(STOP_SIGNALS) + 1):  # (each pending signal is handled once)
            try:
                signal.signal(sig, handler)
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
