"""Shared, generic test fixtures: synthetic signals and audio files in any format."""

from __future__ import annotations

import os
import shutil
import subprocess
import struct
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

# The tests create files and tag them at once: no settle time for the commands (CLI runs and their
# subprocesses) unless a test asks for one (tests of the settle time set it themselves).
os.environ["TAGGER_SETTLE_SECONDS"] = "0"

# The tests never write into the user's caches (the ONNX exports of the models they train, training
# caches): the session has a cache folder of its own, removed when it ends; a test that needs an
# empty one sets its own.
SESSION_CACHE = tempfile.mkdtemp(prefix="tagger-tests-cache-")
os.environ["XDG_CACHE_HOME"] = SESSION_CACHE
os.environ.pop("TAGGER_CACHE", None)
# Nor into the user's library database (`untag` and `tag --from-json` record their writes in the
# default one, where there is one): the default is the session's data folder, which holds none.
os.environ["XDG_DATA_HOME"] = os.path.join(SESSION_CACHE, "data")


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(SESSION_CACHE, ignore_errors=True)


def tone_signal(
    freqs: Sequence[float], *, seconds: float, sr: int = 16_000, amplitude: float = 0.3, silence: float = 0.0
) -> np.ndarray:
    """Sum of sines (equal share of `amplitude`), optionally followed by `silence` seconds of zeros."""
    t = np.arange(int(seconds * sr)) / sr
    y = np.zeros_like(t)
    for f in freqs:
        y += np.sin(2 * np.pi * f * t)
    if len(freqs):
        y *= amplitude / len(freqs)
    if silence:
        y = np.concatenate([y, np.zeros(int(silence * sr))])
    return y.astype(np.float32)


def write_audio(path: str | Path, audio: np.ndarray, *, sr: int = 16_000) -> Path:
    """Write mono `audio` to `path`; the extension picks the format (wav/flac/aiff via soundfile,
    anything else (mp3, m4a, ogg, opus, ...) encoded by ffmpeg from a temporary WAV)."""
    import soundfile as sf

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ext = path.suffix.lower()
    if ext in (".wav", ".flac", ".aiff", ".aif"):
        sf.write(str(path), audio, sr)
        return path
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is needed to encode " + ext)
    tmp = path.with_name(f".{path.name}.src.wav")
    sf.write(str(tmp), audio, sr)
    codec = {".mp3": ["-c:a", "libmp3lame", "-b:a", "96k"], ".m4a": ["-c:a", "aac", "-b:a", "96k"],
             ".ogg": ["-c:a", "libvorbis"], ".opus": ["-c:a", "libopus"]}.get(ext, [])  # fmt: skip
    try:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(tmp), *codec, str(path)], check=True)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def predicted(path: str | Path, **row) -> dict:
    """``row``, a row of `tagger predict --json` for the file ``path`` as it is now: ``path``, and the
    ``size``, ``mtime`` and ``fingerprint`` that `tagger tag --from-json` checks, added (``row`` may
    override them)."""
    from tagger.fingerprint import fingerprint

    st = os.stat(path)
    return {"path": str(path), "size": st.st_size, "mtime": st.st_mtime, "fingerprint": fingerprint(path), **row}


@pytest.fixture
def make_tone_file():
    """``make_tone_file(path, freqs, seconds=..., sr=..., silence=...)`` writes a tone file and returns its path."""

    def make(path, freqs: Sequence[float], *, seconds: float = 4.0, sr: int = 16_000, **kwargs) -> Path:
        return write_audio(path, tone_signal(freqs, seconds=seconds, sr=sr, **kwargs), sr=sr)

    return make


# -- process state --------------------------------------------------------------------------------------
_ENV_WATCHED = ("TAGGER_", "TF_NUM_", "OMP_NUM_THREADS")
"""Environment variables a test must leave as it found them (by prefix): tagger's settings and the
inference thread counts (importing TensorFlow and quiet_tensorflow set variables of their own, once
a process, on purpose: not watched)."""


def _process_state() -> dict:
    """What a test run in the pytest process can change for the tests after it: the signal handlers
    (a scan worker's set-up ignores SIGINT: a later test's Ctrl-C went unheard), the working folder,
    the umask, the watched environment, the root and ``tagger`` loggers, ``sys.path``. (Warnings
    filters are pytest's to restore after every test.)"""
    import logging
    import signal
    import sys

    umask = os.umask(0o022)
    os.umask(umask)
    handlers = {}
    for sig in signal.valid_signals():
        try:
            handlers[signal.Signals(sig).name] = signal.getsignal(sig)
        except (OSError, ValueError):  # (not a signal Python handles: SIGKILL, realtime ones)
            continue
    root, ours = logging.getLogger(), logging.getLogger("tagger")
    return {
        "signal handlers": handlers,
        "working folder": os.getcwd(),
        "umask": oct(umask),
        "environment": {k: v for k, v in os.environ.items() if k.startswith(_ENV_WATCHED)},
        "root logger": (list(root.handlers), root.level),
        "tagger logger": (list(ours.handlers), ours.level, ours.propagate, ours.disabled),
        "logging.disable": logging.root.manager.disable,
        "sys.path": list(sys.path),
    }


def _restore_process_state(state: dict) -> None:
    import logging
    import signal
    import sys

    for name, handler in state["signal handlers"].items():
        if signal.getsignal(getattr(signal, name)) != handler and handler is not None:
            signal.signal(getattr(signal, name), handler)
    os.chdir(state["working folder"])
    os.umask(int(state["umask"], 8))
    for k in [k for k in os.environ if k.startswith(_ENV_WATCHED)]:
        del os.environ[k]
    os.environ.update(state["environment"])
    root, ours = logging.getLogger(), logging.getLogger("tagger")
    root.handlers[:], root.level = state["root logger"]
    ours.handlers[:], ours.level, ours.propagate, ours.disabled = state["tagger logger"]
    logging.disable(state["logging.disable"])
    sys.path[:] = state["sys.path"]


def _changes(before, after) -> list[str]:
    """What differs between two `_process_state`s, in words."""
    changed = []
    for what, was in before.items():
        now = after[what]
        if was == now:
            continue
        if isinstance(was, dict):
            keys = sorted(k for k in was.keys() | now.keys() if was.get(k, "(unset)") != now.get(k, "(unset)"))
            changed.append(f"{what}: " + ", ".join(f"{k} {was.get(k, '(unset)')!r} -> {now.get(k, '(unset)')!r}"
                                                   for k in keys))  # fmt: skip
        else:
            changed.append(f"{what}: {was!r} -> {now!r}")
    return changed


_LAST_SIGNALS: list = ["the session's start", _process_state()["signal handlers"]]
"""[the test that ended last, the signal handlers it left]: a fixture of a wider scope, or a module's
import, must not change them between two tests either."""


@pytest.fixture(autouse=True)
def _leaves_the_process_as_it_found_it(request):
    """Fails a test that changed the pytest process's state for the tests after it (`_process_state`;
    set it back in the test: monkeypatch, a fixture, try/finally), and sets it back, so that only
    this test fails; and fails the first test after a signal handler changed between two tests (a
    fixture of a wider scope, a module imported at collection). A scan worker's set-up run in the
    pytest process would leave SIGINT ignored, and a test of Ctrl-C after it would fail in the whole
    suite and pass alone (as it does in a suite started with SIGINT ignored: a shell's ``&`` without
    job control; the tests of Ctrl-C give SIGINT Python's handler themselves)."""
    before = _process_state()
    last, handlers = _LAST_SIGNALS
    between = _changes({"signal handlers": handlers}, {"signal handlers": before["signal handlers"]})
    yield
    after = _process_state()
    _LAST_SIGNALS[:] = [request.node.nodeid, after["signal handlers"]]
    changed = _changes(before, after)
    if changed:
        _restore_process_state(before)
        _LAST_SIGNALS[1] = before["signal handlers"]
    problems = [f"the test left the process changed for the tests after it: {'; '.join(changed)}"] if changed else []
    if between:
        problems.append(f"between the end of {last} and the start of this test (a wider fixture, an import) the "
                        f"process changed: {'; '.join(between)}")  # fmt: skip
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def _utf8_safe(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under pytest-xdist, a report's captured output and failure text travel to the main process as
    UTF-8: a file name that is not UTF-8 (surrogate escapes) in a test's log would end the whole run
    with an internal error. Such characters are written as backslash escapes there (on a worker only)."""
    outcome = yield
    if not hasattr(item.config, "workerinput"):
        return
    report = outcome.get_result()
    report.sections = [(title, _utf8_safe(text)) for title, text in report.sections]
    if report.longrepr is not None and not isinstance(report.longrepr, tuple):
        text = str(report.longrepr)
        if _utf8_safe(text) != text:
            report.longrepr = _utf8_safe(text)


# -- databases ------------------------------------------------------------------------------------------
@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler (KeyboardInterrupt) for the test: a suite started in the background
    by a shell without job control (`nohup .ci/run &`) inherits SIGINT ignored, which a scan rightly
    keeps ignored, and the tests that use it are about a terminal's Ctrl-C."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def db(tmp_path):
    """A fresh SQLite library database (closed after the test)."""
    from tagger.db.session import open_database

    database = open_database(tmp_path / "library.db")
    yield database
    database.close()


@pytest.fixture
def pg_url():
    """The URL of a fresh PostgreSQL database (skips the test when no server can be started)."""
    from pgserver import postgres_url_fixture

    yield from postgres_url_fixture()


def library_of_a_newer_tagger(path: Path, revision: str = "0099") -> Path:
    """A library database at `path` stamped with a schema revision this tagger does not know (as a
    newer tagger would leave it)."""
    import sqlite3

    from tagger.db.session import open_database

    open_database(path).close()
    con = sqlite3.connect(path)
    con.execute("UPDATE alembic_version SET version_num = ?", (revision,))
    con.commit()
    con.close()
    return path


def track_rows(db) -> dict[str, tuple[str, str | None]]:
    """{path: (status, error)} of every track in the database."""
    from sqlalchemy import select

    from tagger.db import models as M

    with db.session() as s:
        return {p: (st, e) for p, st, e in s.execute(select(M.Track.path, M.Track.status, M.Track.error))}


def track_instruments(db) -> dict[str, list[str]]:
    """{path: instruments} of every track the queries find."""
    from tagger.db.queries import find_tracks

    with db.session() as s:
        return {t.path: t.instruments for t in find_tracks(s)}


# -- models -----------------------------------------------------------------------------------------------
@pytest.fixture
def fake_models(monkeypatch):
    """`Ensemble.load` returns the deterministic `library_fakes.FakeAnalyser`: commands run without Keras."""
    from library_fakes import FakeAnalyser

    from tagger.model.ensemble import Ensemble

    monkeypatch.setattr(Ensemble, "load", classmethod(lambda cls, *a, **k: FakeAnalyser()))


def compact_models(path, families: Sequence[str], *, version: str, threshold=0.5, recipe: str = "test", seed: int | None = 0,
                   weights=None) -> Path:  # fmt: skip
    """A model directory of random-weight compact classifiers, one per family, saved with the store.

    `threshold`: one for all or one per family; `seed` seeds Keras first (None: leave it);
    `weights(model, index)` may replace the fresh weights (e.g. randomise BatchNorm statistics)."""
    pytest.importorskip("keras")
    from tagger.model.backends import quiet_tensorflow

    quiet_tensorflow()
    import keras

    from tagger.model import architectures as A
    from tagger.model import store

    if seed is not None:
        keras.utils.set_random_seed(seed)
    path = Path(path)
    manifest = store.new_manifest(architecture="compact", recipe=recipe, feature_config=A.COMPACT_FEATURES, version=version)
    for i, fam in enumerate(families):
        model = A.build("compact", name=fam)
        if weights is not None:
            model = weights(model, i)
        t = threshold[i] if isinstance(threshold, Sequence) else threshold
        store.save_classifier(path, manifest, fam, model, threshold=t)
    return path


def ffmpeg_demuxers() -> set[str]:
    """The names of the demuxers of the ffmpeg on $PATH (``ffmpeg -demuxers``: ``mov,mp4,m4a,...``
    split at its commas); skips the test where there is no ffmpeg."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    out = subprocess.run(["ffmpeg", "-hide_banner", "-demuxers"], capture_output=True, text=True, check=True).stdout
    rows = [line.split() for line in out.split("--", 1)[-1].splitlines()]
    return {name for row in rows if len(row) >= 2 and "D" in row[0] for name in row[1].split(",")}


def module_file(path, *, period: int = 428) -> Path:
    """A ProTracker module (MOD, 4 channels) written byte by byte: one sample of a square wave of
    32 bytes a cycle, looped, played once at `period` (8287 Hz at 428: a 259 Hz tone) for one pattern
    of 64 rows at speed 6 and 125 BPM (7.68 s)."""
    sample = b"square".ljust(22, b"\0") + struct.pack(">HBBHH", 1024, 0, 64, 0, 1024)  # (lengths in words)
    empty = b"\0" * 22 + struct.pack(">HBBHH", 0, 0, 0, 0, 1)
    pattern = bytearray(1024)  # (64 rows of 4 channels of 4 bytes)
    pattern[0:4] = bytes([period >> 8, period & 0xFF, 0x10, 0x00])  # (sample 1, no effect)
    wave = np.repeat(np.tile(np.array([100, -100], np.int8), 64), 16).tobytes()
    path.write_bytes(b"tone".ljust(20, b"\0") + sample + empty * 30 + bytes([1, 127]) + bytes(128) + b"M.K."
                     + bytes(pattern) + wave)  # fmt: skip
    return path


def dsf_file(path, *, seconds: float, freq: float, dsd_rate: int = 2_822_400) -> Path:
    """A mono DSD64 DSF file made here (no encoder writes DSD): a 1-bit stream whose density of ones
    follows a sine (noise-shaped by a random threshold), stored least significant bit first."""
    n = int(seconds * dsd_rate) // 8 * 8
    t = np.arange(n) / dsd_rate
    bits = (0.5 * np.sin(2 * np.pi * freq * t) > np.random.default_rng(0).uniform(-1, 1, n)).astype(np.uint8)
    data = np.packbits(bits.reshape(-1, 8)[:, ::-1], axis=1).tobytes()
    data += b"\x69" * (-len(data) % 4096)  # the last block padded with DSD silence
    fmt = b"fmt " + struct.pack("<QIIIIIIQII", 52, 1, 0, 1, 1, dsd_rate, 1, n, 4096, 0)
    body = fmt + b"data" + struct.pack("<Q", 12 + len(data)) + data
    path.write_bytes(b"DSD " + struct.pack("<QQQ", 28, 28 + len(body), 0) + body)
    return path


UNTAG_KNOWN: tuple[str, ...] = tuple(
    flag for version in ("fake-1", "fake-2", "m-1", "m-2", "ova-test-1", "ova-test-2") for flag in ("--model-version", version)
)
"""`tagger untag`'s options that make the model versions the tests write tagger's: no model found
and no library database records them, so `untag` would keep their fields as someone else's."""
