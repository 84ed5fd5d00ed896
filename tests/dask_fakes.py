"""Analysers for the Dask tests, importable by the worker processes (``dask_fakes:...``)."""

from __future__ import annotations

import os

from library_fakes import FakeAnalyser


class CrashingAnalyser(FakeAnalyser):
    """The FakeAnalyser, except that the worker process dies (as on a decoder segfault) when a file
    has exactly `crash_windows` non-silent windows; with `deaths` (a folder), it first creates a file
    there named by its process id (how many workers the file killed); with `seen`, it first waits
    (at most 60 s) until the scheduler lists the task among those its worker runs (told by a heartbeat,
    as of a file that runs a while)."""

    def __init__(self, *, crash_windows: int = 7, deaths: str | None = None, seen: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.crash_windows, self.deaths, self.seen = crash_windows, deaths, seen

    def predict_features(self, feats):
        if len(feats) == self.crash_windows:
            if self.seen:
                _until_the_scheduler_sees_it_run()
            if self.deaths is not None:
                open(os.path.join(self.deaths, str(os.getpid())), "w").close()
            os._exit(3)
        return super().predict_features(feats)


def _until_the_scheduler_sees_it_run(hold: float = 60.0) -> None:
    import time

    from distributed import get_client, get_worker

    worker = get_worker()
    key, address = worker.get_current_task(), worker.address

    def running(dask_scheduler=None):  # (on the scheduler: nested, so pickled by value)
        ws = dask_scheduler.workers.get(address)
        return ws is not None and any(ts.key == key for ts in ws.executing)

    client, deadline = get_client(), time.monotonic() + hold
    while not client.run_on_scheduler(running) and time.monotonic() < deadline:
        time.sleep(0.1)


class GatedAnalyser(FakeAnalyser):
    """The FakeAnalyser, except that it holds every file until the file `gate` exists (at most
    `hold` seconds): it creates ``<gate>.started`` when it begins to wait and ``<gate>.finished``
    when it lets the file go on."""

    def __init__(self, *, gate: str, hold: float = 60.0, **kwargs):
        super().__init__(**kwargs)
        self.gate, self.hold = gate, hold

    def predict_features(self, feats):
        import time

        open(f"{self.gate}.started", "w").close()
        deadline = time.monotonic() + self.hold
        while not os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        open(f"{self.gate}.finished", "w").close()
        return super().predict_features(feats)


class HangingAnalyser(FakeAnalyser):
    """The FakeAnalyser, except that the worker hangs (as on a decoder blocked for good: a stalled
    network mount) when a file has exactly `hang_windows` non-silent windows, for `hold` seconds."""

    def __init__(self, *, hang_windows: int = 7, hold: float = 600.0, **kwargs):
        super().__init__(**kwargs)
        self.hang_windows, self.hold = hang_windows, hold

    def predict_features(self, feats):
        import time

        if len(feats) == self.hang_windows:
            time.sleep(self.hold)
        return super().predict_features(feats)


class DyingOnLoadAnalyser(FakeAnalyser):
    """The FakeAnalyser, except that the first worker process to load it dies while loading (as a
    worker killed for its memory while it loads the model): the one that creates `marker`."""

    def __init__(self, *, marker: str, **kwargs):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            super().__init__(**kwargs)
            return
        os._exit(3)


class ReplacedAnalyser(FakeAnalyser):
    """The FakeAnalyser, except that its model is replaced once it has scored a file: after its first
    prediction (which creates `marker`) it reports another hash, as a worker whose model folder was
    replaced in the middle of a scan."""

    def __init__(self, *, marker: str, **kwargs):
        super().__init__(**kwargs)
        self.marker = marker

    @property
    def hash(self) -> str:
        return "hash-replaced" if os.path.exists(self.marker) else super().hash

    def predict_features(self, feats, batch_size=None):
        open(self.marker, "w").close()
        return super().predict_features(feats, batch_size)


class BarrierAnalyser(FakeAnalyser):
    """The FakeAnalyser, except that it holds every file until the file `gate` exists (at most
    `hold` seconds), having created ``<folder>/<pid>-<n>`` (which worker process holds how many)."""

    def __init__(self, *, folder: str, gate: str, hold: float = 120.0, **kwargs):
        super().__init__(**kwargs)
        self.folder, self.gate, self.hold = folder, gate, hold

    def predict_features(self, feats, batch_size=None):
        import time

        open(os.path.join(self.folder, f"{os.getpid()}-{self.calls}"), "w").close()
        deadline = time.monotonic() + self.hold
        while not os.path.exists(self.gate) and time.monotonic() < deadline:
            time.sleep(0.05)
        return super().predict_features(feats, batch_size)


class FailingModelAnalyser(FakeAnalyser):
    """The FakeAnalyser, except that its model raises on every file (as a model runtime failing on one
    machine: an exception, not a crash)."""

    def predict_features(self, feats, batch_size=None):
        raise RuntimeError("the model runtime failed (simulated)")


class StoppedInRetryAnalyser(FakeAnalyser):
    """The FakeAnalyser, except for a file of exactly `windows` non-silent windows: the first
    `crashes` workers analysing it die (a decoder crash: past the scheduler's allowed failures, the
    file becomes a suspect, tried again alone); the next creates ``<folder>/alone-<pid of its
    parent>-<its pid>`` (its nanny's, or the test's for a worker without one) and holds the file
    until it is stopped (at most `hold` seconds); the one after analyses it."""

    def __init__(self, *, folder: str, crashes: int = 1, windows: int = 7, hold: float = 120.0, **kwargs):
        super().__init__(**kwargs)
        self.folder, self.crashes, self.windows, self.hold = folder, crashes, windows, hold

    def predict_features(self, feats, batch_size=None):
        import time

        if len(feats) == self.windows:
            for turn in [*(f"crashed-{n}" for n in range(self.crashes)), "held"]:
                try:
                    os.close(os.open(os.path.join(self.folder, turn), os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                except FileExistsError:
                    continue
                if turn != "held":
                    os._exit(3)
                open(os.path.join(self.folder, f"alone-{os.getppid()}-{os.getpid()}"), "w").close()
                time.sleep(self.hold)
                break
        return super().predict_features(feats, batch_size)
