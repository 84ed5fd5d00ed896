"""Property-based: mutated audio bytes (cut, flipped, overwritten, inserted) fed to the decoder and to
the whole scan never crash, never hang and raise nothing but our own error types.

Bounded for CI (a fixed set of examples, a wall-clock guard per example); ``TAGGER_SOAK=1`` draws
many more, at random.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import tone_signal, write_audio
from library_fakes import FakeAnalyser
from tagger import audio
from tagger.db.session import open_database
from tagger.errors import AudioReadError
from tagger.library.analyse import AnalysisConfig, analyse_file
from tagger.library.scan import scan

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

SOAK = bool(os.environ.get("TAGGER_SOAK"))
FUZZ = settings(
    max_examples=400 if SOAK else 40,
    deadline=None,
    derandomize=not SOAK,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
GUARD_SECONDS = 30
EXTS = ("wav", "flac", "mp3", "ogg", "m4a")

_WORK = Path(tempfile.mkdtemp(prefix="tagger-fuzz-"))
_SEEDS: dict[str, bytes] = {}


@pytest.fixture(scope="module", autouse=True)
def _cleanup():
    yield
    if _DB is not None:
        _DB.close()
    shutil.rmtree(_WORK, ignore_errors=True)


def seed(ext: str) -> bytes:
    if ext not in _SEEDS:
        path = write_audio(_WORK / f"seed.{ext}", tone_signal([110.0, 1000.0], seconds=1.5, sr=22_050), sr=22_050)
        _SEEDS[ext] = path.read_bytes()
    return _SEEDS[ext]


@st.composite
def mutated(draw):
    ext = draw(st.sampled_from(EXTS))
    data = bytearray(seed(ext))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["cut", "flip", "overwrite", "insert", "zero"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        if kind == "cut":
            del data[at:]
        elif kind == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "overwrite":
            chunk = draw(st.binary(min_size=1, max_size=64))
            data[at : at + len(chunk)] = chunk
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        else:
            data[at : at + draw(st.integers(1, 4096))] = b"\0" * 16
    return ext, bytes(data)


@contextmanager
def guard(seconds: int = GUARD_SECONDS):
    """Fail (instead of hanging the suite) when an example runs longer than `seconds`."""

    def alarm(*_):
        raise TimeoutError(f"an example ran longer than {seconds} s (a hang?)")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _write(ext: str, data: bytes) -> Path:
    path = _WORK / f"case.{ext}"
    path.write_bytes(data)
    return path


@FUZZ
@given(case=mutated())
@pytest.mark.slow
def test_decoder_raises_only_our_error(case):
    ext, data = case
    path = _write(ext, data)
    with guard():
        try:
            meta = audio.info(path)
            samples = sum(len(block) for block in audio.stream(path))
        except AudioReadError as exc:
            assert exc.reason and exc.path == str(path)
            return
    assert meta.sample_rate > 0 and meta.channels > 0 and samples > 0


@FUZZ
@given(case=mutated())
def test_pipeline_returns_a_result_or_a_clear_error(case):
    ext, data = case
    path = _write(ext, data)
    config = AnalysisConfig(features=FakeAnalyser().feature_config.to_dict())
    with guard():
        messages = list(analyse_file(0, str(path), config=config))
    assert messages[-1].kind in ("done", "error")
    assert [m.kind for m in messages].count("error") + [m.kind for m in messages].count("done") == 1
    if messages[-1].kind == "error":
        assert not messages[-1].reason.startswith("unexpected"), messages[-1].reason  # only our own error types


_DB = None


@settings(FUZZ, max_examples=100 if SOAK else 15)
@given(case=mutated())
def test_scan_of_mutated_files_completes_with_a_row_each(case):
    global _DB
    from sqlalchemy import select

    from tagger.db import models as M

    if _DB is None:
        _DB = open_database(_WORK / "fuzz.db")
    ext, data = case
    folder = Path(tempfile.mkdtemp(dir=_WORK))
    (folder / f"case.{ext}").write_bytes(data)
    write_audio(folder / "fine.wav", tone_signal([110.0 + len(os.listdir(_WORK)) / 10], seconds=1.0))  # new content
    with guard():
        summary = scan([folder], db=_DB, analyser=FakeAnalyser(), jobs=0)
    assert summary.found == 2 and summary.scanned + summary.failed == 2
    with _DB.session() as s:
        rows = dict(s.execute(select(M.Track.path, M.Track.status).where(M.Track.path.startswith(str(folder)))).all())
    assert rows[str(folder / "fine.wav")] == "ok"
    assert rows[str(folder / f"case.{ext}")] in ("ok", "error")
    assert all(not e.startswith("unexpected") for _, e in summary.errors), summary.errors
