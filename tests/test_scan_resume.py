"""A scan killed with SIGKILL at any moment loses nothing stored and leaves nothing half-written."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import tone_signal, write_audio
from library_fakes import FREQ, FakeAnalyser
from tagger.db.session import open_database
from tagger.library.scan import scan

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent
N_FILES = 12

SCRIPT = """
import sys
sys.path[:0] = [{tests!r}, {root!r}]  # this checkout's tagger, whatever is installed
from library_fakes import FakeAnalyser
from tagger.db.session import open_database
from tagger.library.scan import scan

class Slowing(FakeAnalyser):  # 0.25 s a file, 5 s from the 7th on: the scan is still running when the test kills it
    def predict_features(self, feats, batch_size=None):
        self.delay = 0.25 if self.calls < 6 else 5.0
        return super().predict_features(feats, batch_size)

if __name__ == "__main__":
    db = open_database(sys.argv[1])
    scan([sys.argv[2]], db=db, analyser=Slowing(), jobs=1, commit_every=1, predict_batch=2)
"""


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry))
    return out


def _ok_tracks(db_path: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM tracks WHERE status = 'ok'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.OperationalError:
        return 0  # not created yet


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc to find the worker processes")
def test_sigkill_mid_scan_then_clean_resume(tmp_path):
    music = tmp_path / "music"
    fams = list(FREQ)
    expected = {}
    for i in range(N_FILES):
        fam = fams[i % len(fams)]
        path = write_audio(music / f"{i:02d}_{fam}.wav", tone_signal([FREQ[fam] * (1 + 0.01 * i)], seconds=8.0))  # distinct contents
        expected[str(path)] = [fam]
    db_path = tmp_path / "library.db"
    script = tmp_path / "run_scan.py"
    script.write_text(SCRIPT.format(tests=str(TESTS), root=str(TESTS.parent)))
    proc = subprocess.Popen([sys.executable, str(script), str(db_path), str(music)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while _ok_tracks(db_path) < 3:
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the scan made no progress"
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers, "the scan should run worker processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    # Orphaned workers notice that their parent is gone and exit.
    deadline = time.monotonic() + 15
    while any(Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2] for pid in workers):
        assert time.monotonic() < deadline, "worker processes outlived the killed scan"
        time.sleep(0.1)

    db = open_database(db_path)
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
        stored = conn.exec_driver_sql("SELECT count(*) FROM tracks WHERE status = 'ok'").scalar()
        assert 3 <= stored < N_FILES
        # Nothing half-written: every stored track has all its detections.
        per_track = conn.exec_driver_sql(
            "SELECT t.id, count(d.id) FROM tracks t LEFT JOIN detections d ON d.track_id = t.id GROUP BY t.id"
        ).all()
        assert len(per_track) == stored and all(n == 3 for _, n in per_track)
        assert conn.exec_driver_sql("SELECT count(*) FROM scans WHERE finished_at IS NULL").scalar() == 1

    spy = FakeAnalyser()
    summary = scan([music], db=db, analyser=spy, jobs=0)
    assert summary.skipped == stored
    assert summary.scanned == N_FILES - stored and summary.failed == 0
    from tagger.db.queries import find_tracks

    with db.session() as s:
        assert {t.path: t.instruments for t in find_tracks(s)} == expected
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM detections").scalar() == 3 * N_FILES
    db.close()
