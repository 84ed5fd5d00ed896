"""A small deterministic stand-in for the Ensemble, for the library (scan/db/query) tests.

Each family listens to a frequency band: its probability for a window is the mean over time of the
strongest mel band inside its range (features are normalised to the window's maximum, so a steady
tone inside the band scores close to 1 and a band holding nothing scores 0). Tones at 110 Hz
(bass), 1000 Hz (flute) and 4000 Hz (string) are thus detected exactly.
"""

from __future__ import annotations

import time

import numpy as np

from tagger.aggregate import DEFAULT_AGGREGATION
from tagger.features import FeatureConfig, mel_frequencies

BANDS = {"bass": (40.0, 300.0), "flute": (600.0, 2000.0), "string": (2500.0, 7000.0)}
FREQ = {"bass": 110.0, "flute": 1000.0, "string": 4000.0}
UKULELE_BANDS = {**BANDS, "ukulele": (330.0, 520.0)}
"""The bands of a model with an 11th family (``ukulele``, not a canonical family): a 440 Hz tone."""


class FakeAnalyser:
    def __init__(self, *, version: str = "fake-1", delay: float = 0.0, n_mels: int = 32, bands: dict | None = None):
        bands = dict(BANDS if bands is None else bands)
        self.families = tuple(bands)
        self.thresholds = np.full(len(self.families), 0.5, dtype=np.float32)
        self.feature_config = FeatureConfig(kind="logmel", n_mels=n_mels)
        self._version = version
        self.delay = delay
        # (tagger's own mel scale, not librosa's: a worker process that imported librosa for it took
        # 0.65 s more CPU to start, and numba compiled librosa's functions, 28 s, in a new environment)
        centres = mel_frequencies(n_mels=n_mels + 2, fmin=self.feature_config.fmin, fmax=8000.0)[1:-1]
        self.masks = [(centres >= lo) & (centres <= hi) for lo, hi in bands.values()]
        self.calls = 0
        self.windows_seen = 0

    @property
    def version(self) -> str:
        return self._version

    @property
    def hash(self) -> str:
        return "hash-" + self._version

    @property
    def aggregation(self) -> dict:
        return dict(DEFAULT_AGGREGATION)

    def predict_features(self, feats: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        self.calls += 1
        self.windows_seen += len(feats)
        if self.delay:
            time.sleep(self.delay)
        feats = np.asarray(feats, dtype=np.float32)
        per_band = feats.mean(axis=2)  # (n, n_mels)
        return np.stack([per_band[:, m].max(axis=1) for m in self.masks], axis=1).astype(np.float32)


# -- a small library of real audio files in several formats with known contents -------------------

LIBRARY = {
    # relative path: (frequencies, seconds, sample rate, trailing silence)
    "bass.wav": ((110.0,), 9.0, 16_000, 0.0),
    "duo.flac": ((110.0, 1000.0), 6.0, 44_100, 0.0),
    "sub/string.mp3": ((4000.0,), 6.0, 16_000, 4.0),
    "sub/flute.m4a": ((1000.0,), 6.0, 16_000, 0.0),
    "sub/deeper/trio.ogg": ((110.0, 1000.0, 4000.0), 8.0, 22_050, 0.0),
    "more/flute_string.aiff": ((1000.0, 4000.0), 5.0, 16_000, 0.0),
    "silence.wav": ((), 5.0, 16_000, 0.0),
    "bass_no_extension": ((110.0,), 4.0, 16_000, 0.0),
    "more/bass.opus": ((110.0,), 5.0, 48_000, 0.0),
    "more/string.wma": ((4000.0,), 5.0, 44_100, 0.0),
}
EXPECTED = {
    "bass.wav": ["bass"],
    "duo.flac": ["bass", "flute"],
    "sub/string.mp3": ["string"],
    "sub/flute.m4a": ["flute"],
    "sub/deeper/trio.ogg": ["bass", "flute", "string"],
    "more/flute_string.aiff": ["flute", "string"],
    "silence.wav": [],
    "bass_no_extension": ["bass"],
    "more/bass.opus": ["bass"],
    "more/string.wma": ["string"],
}
BROKEN = "broken.mp3"


def make_library(root) -> dict:
    """Write `LIBRARY` under `root` plus a broken file, non-audio files, a hidden folder and a
    symlink loop; returns {relative path: absolute path} of the audio files a scan must find."""
    import os
    import shutil
    from pathlib import Path

    import soundfile as sf

    from conftest import tone_signal, write_audio

    root = Path(root)
    out = {}
    for rel, (freqs, seconds, sr, silence) in LIBRARY.items():
        y = tone_signal(freqs, seconds=seconds, sr=sr, silence=silence)
        if rel == "bass_no_extension":
            (root).mkdir(parents=True, exist_ok=True)
            sf.write(str(root / rel), y, sr, format="WAV")
            path = root / rel
        else:
            path = write_audio(root / rel, y, sr=sr)
        out[rel] = str(path)
    (root / BROKEN).write_bytes(b"this is not audio at all " * 50)
    out[BROKEN] = str(root / BROKEN)
    (root / "notes.txt").write_text("liner notes")
    (root / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 100)
    hidden = root / ".hidden"
    hidden.mkdir()
    shutil.copy(out["bass.wav"], hidden / "secret.wav")
    os.symlink("..", root / "sub" / "loop")
    return out


# -- a scan worker that misbehaves ------------------------------------------------------------------------


def _frame(conn, msg) -> bytes:
    """The bytes that ``conn.send(msg)`` writes on the pipe (in its own framing), caught in a file."""
    import os
    import tempfile

    with tempfile.TemporaryFile() as f:
        out = type(conn)(os.dup(f.fileno()), readable=False)
        out.send(msg)
        out.close()
        f.seek(0)
        return f.read()


class _StallingEnd:
    """A worker's end of its pipe (`worker_main`'s ``conn``) that, on the first message holding
    features of a file named ``*stall*``, writes half of the message and pauses the worker
    (SIGSTOP, as a debugger would, or a machine swapping hard for a while)."""

    def __init__(self, conn) -> None:
        self.conn, self.tasks = conn, set()

    def poll(self, timeout=0.0):
        return self.conn.poll(timeout)

    def recv(self):
        import os

        item = self.conn.recv()
        if item is not None and "stall" in os.path.basename(item[1]):
            self.tasks.add(item[0])
        return item

    def send(self, msg) -> None:
        import os
        import signal

        from tagger.library.messages import Windows

        if msg.task_id in self.tasks and isinstance(msg, Windows) and len(msg.features):
            frame = _frame(self.conn, msg)
            os.write(self.conn.fileno(), frame[: len(frame) // 2])
            os.kill(os.getpid(), signal.SIGSTOP)
        self.conn.send(msg)


def stalling_worker(conn, *args) -> None:
    """`worker_main` pausing itself halfway through a message of each file named ``*stall*``
    (a target for `tagger.library.supervisor.worker_main`, patched in by a test)."""
    from tagger.library.analyse import worker_main

    worker_main(_StallingEnd(conn), *args)


class _FreezingEnd(_StallingEnd):
    """A worker's end of its pipe that, on taking a file named ``*freeze*``, pauses the worker
    (SIGSTOP) before it claims the file, once per scan (the flag file `flag`, made on the first
    pause, spares the worker that takes the file next): a worker stopped between two files."""

    def __init__(self, conn, flag: str) -> None:
        super().__init__(conn)
        self.flag = flag

    def recv(self):
        import os
        import signal

        item = self.conn.recv()
        if item is not None and "freeze" in os.path.basename(item[1]) and not os.path.exists(self.flag):
            open(self.flag, "w").close()
            os.kill(os.getpid(), signal.SIGSTOP)
        return item


def freezing_worker(conn, *args) -> None:
    """`worker_main` pausing itself before it claims the first file named ``*freeze*`` of a scan
    (the flag file is ``$TAGGER_TEST_FREEZE_FLAG``; a target for `tagger.library.supervisor.worker_main`)."""
    import os

    from tagger.library.analyse import worker_main

    worker_main(_FreezingEnd(conn, os.environ["TAGGER_TEST_FREEZE_FLAG"]), *args)


def hanging_worker(conn, *args) -> None:
    """A worker that hangs in its start-up (a model or library load that never returns) and never
    reads its pipe (a target for `tagger.library.supervisor.worker_main`)."""
    import time

    time.sleep(3600)


class _ChangingEnd(_StallingEnd):
    """A worker's end of its pipe that, on the first features of a file named ``*hang*`` or
    ``*crash*``, changes that file (``hang``: replaced by a FIFO, then the worker hangs; ``crash``:
    a byte appended, then the worker is killed): a file that changed while its decoder hung or died."""

    def recv(self):
        import os

        item = self.conn.recv()
        if item is not None and any(word in os.path.basename(item[1]) for word in ("hang", "crash")):
            self.tasks.add(item[0])
            self.paths = getattr(self, "paths", {}) | {item[0]: item[1]}
        return item

    def send(self, msg) -> None:
        import os
        import signal
        import time

        from tagger.library.messages import Windows

        if msg.task_id in self.tasks and isinstance(msg, Windows) and len(msg.features):
            path = self.paths[msg.task_id]
            if "hang" in os.path.basename(path):
                os.unlink(path)
                os.mkfifo(path)
                time.sleep(3600)
            with open(path, "ab") as f:
                f.write(b"\0")
            os.kill(os.getpid(), signal.SIGKILL)
        self.conn.send(msg)


def changing_worker(conn, *args) -> None:
    """`worker_main` changing each file named ``*hang*`` or ``*crash*`` while it analyses it, then
    hanging or dying (`_ChangingEnd`; a target for `tagger.library.supervisor.worker_main`)."""
    from tagger.library.analyse import worker_main

    worker_main(_ChangingEnd(conn), *args)


SLOW_READ_SECONDS = 2.0
"""How long each read of `_SlowFile` (and each block read of `_SlowBlocks`) takes: more than the
content hash's and the audio digest's 1 s between progress messages, so that each read sends one."""


class _SlowFile:
    """A file whose reads take `SLOW_READ_SECONDS` each (a network share)."""

    def __init__(self, f) -> None:
        self.f = f

    def read(self, n=-1):
        import time

        time.sleep(SLOW_READ_SECONDS)
        return self.f.read(n)

    def __getattr__(self, name):  # seek, tell, ...: as the file's
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.f.close()


def slow_storage_worker(conn, *args) -> None:
    """`worker_main` reading the whole of each file (its content hash) as from slow storage:
    `SLOW_READ_SECONDS` per 1 MiB block (a target for `tagger.library.supervisor.worker_main`)."""
    from tagger import fingerprint
    from tagger.library.analyse import worker_main

    plain = fingerprint._open_regular
    fingerprint._open_regular = lambda path: _SlowFile(plain(path))
    worker_main(conn, *args)


class _SlowBlocks(_SlowFile):
    """A file whose reads of blocks (over 64 KiB) take `SLOW_READ_SECONDS` each, its small reads (headers) none:
    a network share's throughput."""

    def read(self, n=-1):
        if n < 0 or n > 1 << 16:
            return super().read(n)
        return self.f.read(n)


def slow_digest_worker(conn, *args) -> None:
    """`worker_main` reading the audio bytes of each file for their digest (`tagger.tags.audio_digest`)
    as from slow storage, `SLOW_READ_SECONDS` per block of 1 MiB (the file no longer in the page cache after its
    content hash); its content hash is read at the usual speed."""
    import builtins

    from tagger.library.analyse import worker_main
    from tagger.tags.storage import base

    base.open = lambda path, mode="r": _SlowBlocks(builtins.open(path, mode))
    worker_main(conn, *args)
