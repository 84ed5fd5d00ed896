"""`scan` on a real Dask cluster: a scheduler and two worker processes started on loopback by the
test, results stored in a real PostgreSQL database, compared with a local scan into SQLite."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import compact_models
from library_fakes import BROKEN, EXPECTED, FakeAnalyser, make_library
from tagger.cli import app
from tagger.db import models as M
from tagger.db.session import open_database
from tagger.library.scan import scan, tag_writer

distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (pip install -e '.[test]')")

from tagger.library.distributed import AnalyserSpec, ClusterError, DaskBackend, worker_stats  # noqa: E402

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
FAKE = AnalyserSpec(kind="factory", factory="library_fakes:FakeAnalyser")
SLOW = AnalyserSpec(kind="factory", factory="library_fakes:FakeAnalyser", kwargs=(("delay", 0.5),))
"""The fake taking half a second a file: a scan is still running when a test kills part of its cluster."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_scheduler(port: int, env: dict) -> subprocess.Popen:
    """A scheduler process on ``port``, returned once it accepts connections: a worker started
    before that may reach its death timeout on a loaded machine, and the test fails for no fault of
    the code under test."""
    proc = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                             str(port), "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the Dask scheduler exited with status {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("the Dask scheduler did not listen within 120 s")

def _start_bare_worker(address: str, env: dict, folder, *, death_timeout: int, threads: int = 1) -> subprocess.Popen:
    """One worker process without a nanny (killing it kills the worker), single-threaded unless `threads`."""
    return subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", str(threads),
                             "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--death-timeout",
                             str(death_timeout), "--local-directory", str(folder)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def _distinct_copies(template, n: int, root):
    """`n` copies of the template's bass WAV in `root`, each with one more byte: distinct
    fingerprints, so that the scan takes none for a copy of another."""
    root.mkdir()
    for i in range(n):
        shutil.copy(template / "bass.wav", root / f"bass{i:02d}.wav")
        with open(root / f"bass{i:02d}.wav", "ab") as f:
            f.write(bytes([i]))
    return root


@contextlib.contextmanager
def _own_cluster(folder: Path, *, death_timeout: int = 60, workers: int = 1, nanny: bool = False,
                 worker_port: int | None = None, threads: int = 1, **env_extra: str) -> Iterator[tuple[str, subprocess.Popen, list[subprocess.Popen]]]:
    """(address, scheduler, workers) of a cluster for one test that kills part of it or its files kill
    it: a scheduler (`_start_scheduler`) and ``workers`` single-threaded workers (bare ones of ``threads``), their files in
    ``folder/w0``, ``folder/w1``...: bare (`_start_bare_worker`: killing one kills it) or, with
    ``nanny``, each under a nanny that restarts it (``worker_port``: the first one's worker at that
    port, a restart's too). ``env_extra``: more environment (Dask settings).
    All are stopped when the block ends (asked first, killed after 10 s: a nanny asked to stop takes
    its worker with it)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]), OMP_NUM_THREADS="1", **env_extra)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    procs = [_start_scheduler(port, env)]
    for i in range(workers):
        if nanny:
            procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads",
                                           "1", "--no-dashboard", "--host", "127.0.0.1", "--death-timeout",
                                           str(death_timeout), "--local-directory", str(folder / f"w{i}"),
                                           *(["--worker-port", str(worker_port)] if worker_port and i == 0 else [])],
                                          env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
        else:
            procs.append(_start_bare_worker(address, env, folder / f"w{i}", death_timeout=death_timeout, threads=threads))
    try:
        yield address, procs[0], procs[1:]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """``tcp://127.0.0.1:PORT`` of a scheduler with two single-threaded worker processes."""
    tmp = tmp_path_factory.mktemp("dask")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", DASK_DISTRIBUTED__WORKER__DAEMON="False")  # fmt: skip
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    py = sys.executable
    procs = []
    logs = []

    def start(name: str, args: list[str]) -> None:
        log = open(tmp / f"{name}.log", "w")
        logs.append(log)
        procs.append(subprocess.Popen([py, "-m", *args], env=env, cwd=str(tmp), stdout=log, stderr=subprocess.STDOUT))

    start("scheduler", ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                        "--no-dashboard", "--idle-timeout", "600"])  # fmt: skip
    for i in range(2):
        start(f"worker{i}", ["distributed.cli.dask_worker", address, "--nworkers", "1", "--nthreads", "1",
                             "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}",
                             "--local-directory", str(tmp / f"w{i}"), "--death-timeout", "120"])  # fmt: skip
    try:
        client = distributed.Client(address, timeout=60, set_as_default=False)
        client.wait_for_workers(2, timeout=90)
    except Exception as exc:
        for p in procs:
            p.kill()
        text = "\n".join((tmp / f"{n}.log").read_text()[-1500:] for n in ("scheduler", "worker0", "worker1"))
        pytest.fail(f"the Dask cluster did not start: {exc}\n{text}")
    yield address, client
    client.close()
    for p in reversed(procs):  # workers first, then the scheduler
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:  # e.g. a worker busy tearing TensorFlow down
            p.kill()
            p.wait()
    for log in logs:
        log.close()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("tpl") / "music"
    make_library(root)
    return root


def _one_bad_and_three_ok(root: Path, bad: str) -> None:
    """``root/bad`` of 7 windows (what `dask_fakes`' analysers crash or hang on) and ``ok0.wav`` to
    ``ok2.wav`` (1 to 3 windows)."""
    from conftest import tone_signal, write_audio

    write_audio(root / bad, tone_signal([110.0], seconds=26.0))
    for i in range(3):
        write_audio(root / f"ok{i}.wav", tone_signal([1000.0], seconds=4.0 + 4 * i))


def _scan_beside_a_crash(tmp_path: Path, **backend_options):
    """``crash.wav`` (7 windows: `dask_fakes.CrashingAnalyser` kills the worker analysing it) and
    ``ok0.wav`` to ``ok2.wav`` scanned on a cluster of their own whose nanny restarts the worker and
    whose scheduler gives a task up at its first death (``ALLOWED_FAILURES`` 0): (the summary, the
    music folder, each stored path's status)."""
    root = tmp_path / "music"
    _one_bad_and_three_ok(root, "crash.wav")  # (kills the worker)
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:CrashingAnalyser")
    try:
        with _own_cluster(tmp_path, nanny=True, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0") as (address, _, _):
            summary = scan([root], db=db, analyser=FakeAnalyser(),
                           backend=DaskBackend(address, spec=spec, connect_timeout=60, **backend_options))  # fmt: skip
        with db.session() as s:
            rows = dict(s.query(M.Track.path, M.Track.status))
    finally:
        db.close()
    return summary, root, rows


def _copy(template, dest: Path) -> Path:
    shutil.copytree(template, dest, symlinks=True)
    return dest


def _snapshot(db, root: Path) -> dict:
    """Everything stored per track, keyed by path relative to `root`."""
    out = {}
    with db.session() as s:
        for t in s.query(M.Track).all():
            rel = os.path.relpath(t.path, root)
            out[rel] = {
                "status": t.status,
                "error": bool(t.error),
                "file": (t.size, t.fingerprint, t.content_hash, t.format, t.sample_rate, t.channels, t.windows, t.silent_windows),
                "duration": t.duration,
                "model": t.model_version.version if t.model_version else None,
                "detections": {d.family: (d.present, d.score, d.coverage) for d in t.detections},
                "segments": sorted((g.family, g.start, g.end) for g in t.segments),
            }
    return out


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for rel in a:
        x, y = a[rel], b[rel]
        assert (x["status"], x["error"], x["file"], x["model"]) == (y["status"], y["error"], y["file"], y["model"]), rel
        assert x["duration"] == pytest.approx(y["duration"], abs=1e-9) if x["duration"] is not None else y["duration"] is None
        assert sorted(x["detections"]) == sorted(y["detections"]), rel
        for fam, (present, score, coverage) in x["detections"].items():
            p2, s2, c2 = y["detections"][fam]
            assert present == p2, (rel, fam)
            assert score == pytest.approx(s2, abs=1e-5), (rel, fam)
            assert coverage == pytest.approx(c2, abs=1e-9), (rel, fam)
        assert [(f, s) for f, s, _ in x["segments"]] == [(f, s) for f, s, _ in y["segments"]], rel
        assert [e for *_, e in x["segments"]] == pytest.approx([e for *_, e in y["segments"]], abs=1e-9), rel


@pytest.mark.slow
def test_dask_scan_into_postgres_equals_local_scan_into_sqlite(cluster, pg_url, template, tmp_path):
    address, client = cluster
    before = {r["pid"]: r["files"] for r in client.run(worker_stats).values()}
    local_root = _copy(template, tmp_path / "local" / "music")
    remote_root = _copy(template, tmp_path / "remote" / "music")

    local_db = open_database(tmp_path / "local.db")
    local = scan([local_root], db=local_db, analyser=FakeAnalyser(), jobs=0,
                 on_track=tag_writer(model_version="fake-1"))  # fmt: skip

    remote_db = open_database(pg_url)
    assert remote_db.engine.dialect.name == "postgresql"
    seen = []
    backend = DaskBackend(address, connect_timeout=60, spec=FAKE)
    remote = scan([remote_root], db=remote_db, analyser=FakeAnalyser(), backend=backend, progress=seen.append,
                  on_track=tag_writer(model_version="fake-1"))  # fmt: skip

    # The same summary and the same stored results, track by track.
    keys = ("found", "scanned", "failed", "skipped", "stale", "moved", "copied", "missing", "tags_written", "tag_errors")
    assert {k: getattr(remote, k) for k in keys} == {k: getattr(local, k) for k in keys}
    assert (remote.scanned, remote.failed, remote.tags_written) == (len(EXPECTED), 1, len(EXPECTED))
    assert remote.audio_seconds == pytest.approx(local.audio_seconds, abs=1e-6)
    # the workers' stage times and memory reach the summary as from local workers
    assert remote.stage_seconds["decode"] > 0 and remote.stage_seconds["features"] > 0
    assert remote.stage_seconds["inference"] > 0 and len(remote.peak_rss["workers"]) == 2
    assert [os.path.relpath(p, remote_root) for p, _ in remote.errors] == [BROKEN]
    _assert_same(_snapshot(remote_db, remote_root), _snapshot(local_db, local_root))
    from tagger.db.queries import find_tracks

    with remote_db.session() as s:
        got = {os.path.relpath(t.path, remote_root): t.instruments for t in find_tracks(s)}
    assert got == EXPECTED

    # Progress reported every file; both worker processes did part of the work.
    analysed = [p for p in seen if p.phase == "analyse"]
    assert analysed[-1].files_done == analysed[-1].files_total == len(EXPECTED) + 1
    after = {r["pid"]: r["files"] for r in client.run(worker_stats).values()}
    done = {pid: after[pid] - before.get(pid, 0) for pid in after}
    assert len(done) == 2 and sum(done.values()) == len(EXPECTED) + 1
    assert all(n > 0 for n in done.values()), done

    # The tags were written by the client, the next scan (through the cluster) skips everything.
    from tagger import tags

    assert tags.read_instruments(str(remote_root / "duo.flac")).instruments == ["bass", "flute"]
    again = scan([remote_root], db=remote_db, analyser=FakeAnalyser(), backend=backend)
    assert (again.scanned, again.skipped, again.failed) == (0, len(EXPECTED) + 1, 0)
    local_db.close()
    remote_db.close()


def test_workers_with_another_model_stop_the_scan(cluster, template, tmp_path):
    address, _ = cluster
    root = _copy(template, tmp_path / "music")
    db = open_database(tmp_path / "lib.db")
    other = AnalyserSpec(kind="factory", factory="library_fakes:FakeAnalyser", kwargs=(("version", "fake-2"),))
    with pytest.raises(ClusterError, match="fake-2.*fake-1"):
        scan([root], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=other))
    with db.session() as s:
        assert s.query(M.Track).filter(M.Track.status == M.STATUS_OK).count() == 0
    db.close()


def test_workers_with_another_tagger_version_stop_the_scan(cluster, template, tmp_path, monkeypatch):
    """The workers run this repository's tagger; a client of another version is refused by each of
    them before any file is analysed (was: only the model was compared)."""
    import tagger

    address, _ = cluster
    root = _copy(template, tmp_path / "music")
    db = open_database(tmp_path / "lib.db")
    monkeypatch.setattr(tagger, "__version__", "0.0.1-other")
    with pytest.raises(ClusterError, match="worker runs tagger .* the client 0.0.1-other: install the same tagger version"):
        scan([root], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=FAKE))
    with db.session() as s:
        assert s.query(M.Track).count() == 0
    db.close()
    import tagger.library.distributed as D  # a worker that joins after the check refuses each file

    other = AnalyserSpec(kind="factory", factory="library_fakes:FakeAnalyser", expected_tagger="0.0.2-other")
    assert "install the same tagger version" in D.analyse_remote(str(root / "bass.wav"), spec=other, config=None).fatal


def test_a_model_replaced_on_a_worker_during_the_scan_stops_it_and_keeps_what_was_stored(cluster, template, tmp_path):
    """A task that finds its worker's model no longer the client's (`RemoteResult.fatal`: the model
    folder replaced after the workers' check) stops the scan with a ClusterError; the files stored
    before it stay. (Pinned before `DaskBackend.run` was split into steps.)"""
    address, _ = cluster
    root = _copy(template, tmp_path / "music")
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:ReplacedAnalyser", kwargs=(("marker", str(tmp_path / "replaced")),))
    with pytest.raises(ClusterError, match=r"^the Dask worker tcp://127\.0\.0\.1:\d+: .*hash-replaced.*install the same models on every machine"):
        scan([root], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=spec, in_flight=1), commit_every=1)
    with db.session() as s:
        status = [st for (st,) in s.query(M.Track.status)]
    assert set(status) <= {M.STATUS_OK} and len(status) < len(EXPECTED)
    db.close()


def test_without_dask_distributed_the_backend_says_what_to_install(monkeypatch):
    """(Pinned before `DaskBackend.run` was split into steps.)"""
    from tagger.errors import UserError

    monkeypatch.setitem(sys.modules, "distributed", None)  # (an import of it raises ImportError)
    with pytest.raises(UserError, match=r"the dask backend needs dask.distributed: pip install 'tagger\[dask\]'"):
        DaskBackend("tcp://127.0.0.1:8786").run([], analyser=FakeAnalyser(), config=None, predict_batch=8, store=None)


def test_unreachable_scheduler_is_a_clear_error(template, tmp_path):
    root = tmp_path / "music"
    (root).mkdir()
    shutil.copy(template / "bass.wav", root / "bass.wav")
    db = open_database(tmp_path / "lib.db")
    backend = DaskBackend(f"tcp://127.0.0.1:{_free_port()}", spec=FAKE, connect_timeout=2)
    t0 = time.monotonic()
    with pytest.raises(ClusterError, match="cannot reach the Dask scheduler"):
        scan([root], db=db, analyser=FakeAnalyser(), backend=backend)
    assert time.monotonic() - t0 < 30
    db.close()


def test_cli_backend_options(monkeypatch):
    monkeypatch.delenv("TAGGER_DASK_SCHEDULER", raising=False)
    runner = CliRunner()
    r = runner.invoke(app, ["scan", "--help"])
    assert r.exit_code == 0 and "--backend" in r.output and "--scheduler" in r.output
    r = runner.invoke(app, ["scan", ".", "--backend", "dask"])
    assert r.exit_code == 1 and "--scheduler" in r.output
    r = runner.invoke(app, ["scan", ".", "--backend", "spark"])
    assert r.exit_code == 1 and "backend" in r.output


@pytest.fixture(scope="module")
def random_models(tmp_path_factory):
    """A real model directory: random-weight compact classifiers for two families."""
    return compact_models(tmp_path_factory.mktemp("models"), ("bass", "flute"), version="dask-random-1", recipe="test-random")


@pytest.mark.model
def test_cli_scan_with_a_real_model_on_the_cluster_equals_a_local_scan(cluster, pg_url, random_models, tmp_path,
                                                                        monkeypatch):
    """`tagger scan --backend dask`: each worker loads the Keras ensemble from the shared model folder."""
    import functools
    import json

    import tagger.library.distributed as D

    monkeypatch.setattr(D, "DaskBackend", functools.partial(D.DaskBackend, connect_timeout=60))  # (as the others)

    from conftest import tone_signal, write_audio

    address, client = cluster
    roots = {}
    for name in ("local", "remote"):
        music = roots[name] = tmp_path / name / "music"
        write_audio(music / "a.flac", tone_signal([110.0], seconds=9.0, sr=44_100), sr=44_100)
        write_audio(music / "b.wav", tone_signal([880.0, 1320.0], seconds=6.0))
        write_audio(music / "c" / "d.wav", tone_signal([], seconds=3.0))
        (music / "bad.wav").write_bytes(b"RIFF not really")
    runner = CliRunner()
    common = ["--models", str(random_models), "--no-write-tags", "--json"]
    r = runner.invoke(app, ["scan", str(roots["local"]), "--db", str(tmp_path / "l.db"), "--jobs", "0", *common])
    assert r.exit_code == 1, r.output  # bad.wav failed
    local = json.loads(r.output)
    r = runner.invoke(app, ["scan", str(roots["remote"]), "--db", pg_url, "--backend", "dask", "--scheduler", address, *common])
    assert r.exit_code == 1, r.output
    remote = json.loads(r.output)
    assert (remote["scanned"], remote["failed"], remote["model_version"]) == (3, 1, "dask-random-1")
    for key in ("found", "scanned", "failed", "skipped"):
        assert remote[key] == local[key], key
    a = open_database(tmp_path / "l.db")
    b = open_database(pg_url)
    _assert_same(_snapshot(b, roots["remote"]), _snapshot(a, roots["local"]))
    with b.session() as s:
        assert {t.path for t in s.query(M.Track).filter(M.Track.status == "ok")} == {
            str(roots["remote"] / p) for p in ("a.flac", "b.wav", "c/d.wav")}
    a.close()
    b.close()

    def inference_threads():
        import tagger.library.remote as R

        (ensemble,) = [a for a in R._ANALYSERS.values() if a.version == "dask-random-1"]
        runner = ensemble._runner
        if ensemble.runtime == "onnxruntime":
            return ensemble.runtime, runner.session.get_session_options().intra_op_num_threads
        import tensorflow as tf

        return ensemble.runtime, int(os.environ["TF_NUM_INTRAOP_THREADS"]) or tf.config.threading.get_intra_op_parallelism_threads()

    # each single-threaded worker runs the model on one thread, not on all the machine's cores
    assert [n for _, n in client.run(inference_threads).values()] == [1, 1]


def test_files_the_workers_cannot_see_stop_the_scan(cluster, template, tmp_path, monkeypatch):
    """Workers must see the library under the same paths: a worker that cannot read the files is
    reported before any file is recorded as failed."""
    address, _ = cluster
    root = tmp_path / "music"
    root.mkdir()
    shutil.copy(template / "bass.wav", root / "bass.wav")
    db = open_database(tmp_path / "lib.db")

    import tagger.library.distributed as D

    real_run = D.DaskBackend.run

    def run_elsewhere(self, paths, **kwargs):  # the workers are told paths that exist only "here"
        return real_run(self, [p + ".only-on-the-client" for p in paths], **kwargs)

    monkeypatch.setattr(D.DaskBackend, "run", run_elsewhere)
    with pytest.raises(ClusterError, match="same path on every worker"):
        scan([root], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=FAKE))
    with db.session() as s:
        assert s.query(M.Track).filter(M.Track.status == M.STATUS_ERROR).count() == 0
    db.close()


def test_cli_unreachable_scheduler_is_one_error_line(template, tmp_path, monkeypatch, fake_models):
    root = tmp_path / "music"
    root.mkdir()
    shutil.copy(template / "bass.wav", root / "bass.wav")
    monkeypatch.setenv("TAGGER_DASK_SCHEDULER", f"tcp://127.0.0.1:{_free_port()}")
    import functools

    import tagger.library.distributed as D

    monkeypatch.setattr(D, "DaskBackend", functools.partial(D.DaskBackend, connect_timeout=2.0))
    r = CliRunner().invoke(app, ["scan", str(root), "--db", str(tmp_path / "lib.db"), "--backend", "dask"])
    assert r.exit_code == 1
    assert "tagger: error:" in r.output and "cannot reach the Dask scheduler" in r.output


def test_worker_loads_the_model_once_and_reloads_a_replaced_one(monkeypatch):
    import tagger.library.remote as R

    monkeypatch.setattr(R, "_ANALYSERS", {})
    loads = []
    real = R._load_analyser
    monkeypatch.setattr(R, "_load_analyser", lambda spec, worker=None: loads.append(spec) or real(spec, worker))
    spec = AnalyserSpec(kind="factory", factory="library_fakes:FakeAnalyser", expected_hash="hash-fake-1",
                        expected_version="fake-1")  # fmt: skip
    first = R._worker_analyser(spec)
    assert R._worker_analyser(spec) is first and len(loads) == 1  # cached per worker process
    first._version = "fake-0"  # the cached model no longer is the client's (model folder replaced)
    again = R._worker_analyser(spec)
    assert again is not first and again.hash == "hash-fake-1" and len(loads) == 2
    other = AnalyserSpec(kind="factory", factory="library_fakes:FakeAnalyser", expected_hash="hash-v9", expected_version="v9")
    assert R.worker_check(other)["ok"] is False and "v9" in R.worker_check(other)["error"]
    result = R.analyse_remote("/nonexistent.wav", spec=other, config=None)
    assert result.fatal is not None and "install the same models" in result.fatal


def test_losing_the_scheduler_stops_the_scan_and_keeps_what_was_stored(template, tmp_path):
    """The scheduler dies mid-scan: the scan ends with a ClusterError, the files stored so far stay,
    no file is recorded as failed, and the next scan (on a new cluster) does the rest."""
    import threading

    with _own_cluster(tmp_path, death_timeout=5) as (address, sched, _):
        root = _distinct_copies(template, 12, tmp_path / "music")
        db = open_database(tmp_path / "lib.db")
        stored = []

        def kill_after_three(p):
            if p.phase == "analyse" and p.files_done >= 3 and not stored:
                stored.append(p.files_done)
                threading.Thread(target=sched.kill).start()

        t0 = time.monotonic()
        with pytest.raises(ClusterError, match="Dask cluster failed") as info:
            scan([root], db=db, analyser=FakeAnalyser(), progress=kill_after_three, commit_every=1,
                 backend=DaskBackend(address, spec=SLOW, connect_timeout=60))  # fmt: skip
        assert "run the scan again" in str(info.value)
        assert time.monotonic() - t0 < 120
    with db.session() as s:
        status = [st for (st,) in s.query(M.Track.status)]
    assert 3 <= len(status) < 12 and set(status) == {M.STATUS_OK}
    again = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert again.scanned == 12 - len(status) and again.skipped == len(status) and again.failed == 0
    db.close()


def test_losing_every_worker_stops_the_scan_and_keeps_what_was_stored(template, tmp_path):
    """Every worker dies mid-scan (the scheduler stays): the scan waits `worker_timeout` seconds for
    one, then ends with a ClusterError; the files stored so far stay, none is recorded as failed,
    and the next scan does the rest (was: the scan waited for ever)."""
    import threading

    with _own_cluster(tmp_path, death_timeout=60) as (address, _, [worker]):
        root = _distinct_copies(template, 10, tmp_path / "music")
        db = open_database(tmp_path / "lib.db")
        killed = []

        def kill_after_three(p):
            if p.phase == "analyse" and p.files_done >= 3 and not killed:
                killed.append(p.files_done)
                threading.Thread(target=worker.kill).start()

        outcome = []

        def run():
            try:
                outcome.append(scan([root], db=db, analyser=FakeAnalyser(), progress=kill_after_three, commit_every=1,
                                    backend=DaskBackend(address, spec=SLOW, connect_timeout=60, worker_timeout=2)))  # fmt: skip
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(120)  # (a scan that waits for ever fails here instead of hanging the test run)
    assert outcome and isinstance(outcome[0], ClusterError), outcome
    assert "every Dask worker left the scheduler" in str(outcome[0]) and "run the scan again" in str(outcome[0])
    with db.session() as s:
        status = [st for (st,) in s.query(M.Track.status)]
    assert 3 <= len(status) < 10 and set(status) == {M.STATUS_OK}
    again = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert again.scanned == 10 - len(status) and again.skipped == len(status) and again.failed == 0
    db.close()


def test_a_stop_signal_is_heard_while_the_files_are_still_on_the_workers(cluster, template, tmp_path):
    """SIGINT while every file in flight is still being analysed: the scan stops at once (was: at
    the next file to come back), cancels what it submitted, and stores and tags nothing."""
    import signal
    import threading

    from tagger import tags
    from tagger.library.scan import ScanInterrupted

    address, _ = cluster
    root = tmp_path / "music"
    root.mkdir()
    shutil.copy(template / "duo.flac", root / "duo.flac")
    gate = tmp_path / "gate"
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:GatedAnalyser", kwargs=(("gate", str(gate)),))
    db = open_database(tmp_path / "lib.db")

    ended = threading.Event()  # (a scan that failed at once: no SIGINT then, into the tests after this one)

    def interrupt_once_started():
        deadline = time.monotonic() + 60
        while not os.path.exists(f"{gate}.started") and not ended.is_set() and time.monotonic() < deadline:
            time.sleep(0.05)
        if not ended.is_set():
            os.kill(os.getpid(), signal.SIGINT)

    # (a suite started in the background by a shell without job control inherits SIGINT ignored,
    # which the scan rightly keeps ignored; this test is about a terminal's Ctrl-C)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupter = threading.Thread(target=interrupt_once_started, daemon=True)
    interrupter.start()
    try:
        with pytest.raises(ScanInterrupted):
            scan([root], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=spec),
                 on_track=tag_writer(model_version="fake-1"))  # fmt: skip
        assert not os.path.exists(f"{gate}.finished")  # stopped while the worker still held the file
    finally:
        ended.set()
        interrupter.join()
        signal.signal(signal.SIGINT, before)
        gate.touch()  # let the worker go
    with db.session() as s:
        assert s.query(M.Track).count() == 0
    assert tags.read_instruments(str(root / "duo.flac")).instruments == []
    db.close()


@pytest.mark.slow
def test_a_file_that_kills_its_worker_becomes_an_error_row(template, tmp_path):
    """A worker dying on a file (a decoder crash) fails that file, as with local workers; the nanny
    restarts the worker and the scan goes on."""
    # one task at a time: a task queued on the dying worker would die with it
    summary, root, rows = _scan_beside_a_crash(tmp_path, in_flight=1)
    assert (summary.scanned, summary.failed) == (3, 1)
    assert [(os.path.basename(p), "decoder crashed or ran out of memory" in e) for p, e in summary.errors] == [("crash.wav", True)]
    assert rows[str(root / "crash.wav")] == M.STATUS_ERROR
    assert sorted(v for k, v in rows.items() if "ok" in os.path.basename(k)) == [M.STATUS_OK] * 3


def test_a_file_the_worker_cannot_read_keeps_its_results(tmp_path, db, monkeypatch):
    """A read error on a Dask worker (EIO: a failing disk) came back as a plain string, so the file's
    results were deleted and a lasting error stored, where a local worker's mark (unreadable) keeps
    them and tries the file again next scan. The mark now travels in `RemoteResult`."""
    import errno

    import tagger.library.distributed as D
    from conftest import tone_signal, track_instruments, write_audio
    from tagger import fingerprint

    songs = [write_audio(tmp_path / "music" / f"{name}.wav", tone_signal([110.0], seconds=4.0)) for name in "ab"]
    assert scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 2
    plain = fingerprint._open_regular

    def failing_disk(path):
        if os.path.basename(path) == "a.wav":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        return plain(path)

    class InProcess:  # (the cluster's part, here: analyse_remote as a worker runs it)
        def run(self, paths, *, analyser, config, predict_batch, store, poll, file_timeout=None):
            monkeypatch.setattr(fingerprint, "_open_regular", failing_disk)
            for i, path in enumerate(paths):
                store(i, D.analyse_remote(path, spec=FAKE, config=config, predict_batch=predict_batch))

    summary = scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(version="fake-2"), backend=InProcess(),
                   rescan_stale=True)  # fmt: skip
    assert [(p, e.split(" (on the Dask worker ")[0]) for p, e in summary.errors] == [(str(songs[0]), "cannot read file: Input/output error")]
    assert summary.errors[0][1].endswith(")") and "pid" in summary.errors[0][1]  # (which worker could not read it)
    assert track_instruments(db) == {str(p): ["bass"] for p in songs}  # (fake-1's results kept for a.wav)


def test_a_batch_is_committed_while_the_scan_waits_for_the_cluster(tmp_path, db, monkeypatch):
    """Files stored from a cluster waited, uncommitted, until the next file came back: a long (or
    hung) file on a worker kept the batch open past ``commit_seconds`` (a kill lost it; PostgreSQL's
    idle_in_transaction_session_timeout ended the connection and the scan). The wait commits it."""
    import sqlite3

    import tagger.library.distributed as D
    from conftest import tone_signal, write_audio

    for name in "ab":
        write_audio(tmp_path / "music" / f"{name}.wav", tone_signal([110.0], seconds=4.0))
    seen = []

    class SlowSecondFile:  # the first file comes back at once, the second after a long wait
        def run(self, paths, *, analyser, config, predict_batch, store, poll, file_timeout=None):
            store(0, D.analyse_remote(paths[0], spec=FAKE, config=config, predict_batch=predict_batch))
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                time.sleep(0.05)
                poll()
            with sqlite3.connect(str(tmp_path / "library.db")) as other:  # another reader, meanwhile
                seen.append(other.execute("SELECT count(*) FROM tracks WHERE status = 'ok'").fetchone()[0])
            store(1, D.analyse_remote(paths[1], spec=FAKE, config=config, predict_batch=predict_batch))

    summary = scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), backend=SlowSecondFile(),
                   commit_every=50, commit_seconds=0.3)  # fmt: skip
    assert summary.scanned == 2
    assert seen == [1]


def test_a_file_that_hangs_its_worker_times_out_and_the_scan_goes_on(template, tmp_path):
    """A worker stuck in one file (a decoder blocked for good) held the scan for ever: the file
    timeout applied to local workers only, and the stuck worker was still connected. Now the file
    becomes an error row after `file_timeout` seconds of running, its task is cancelled, its worker
    restarted by the nanny, and the other files are analysed."""
    import threading

    root = tmp_path / "music"
    _one_bad_and_three_ok(root, "hang.wav")  # (hangs its worker)
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:HangingAnalyser")
    outcome = []

    with _own_cluster(tmp_path, nanny=True) as (address, _, _):

        def run():
            try:
                # (10 s: the worker restarted after the hung file loads the analyser in its first file's
                # task, which counts; 3 s left a loaded machine's imports no time to spare)
                outcome.append(scan([root], db=db, analyser=FakeAnalyser(), file_timeout=10,
                                    backend=DaskBackend(address, spec=spec, connect_timeout=60, in_flight=1)))  # fmt: skip
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(150)  # (a scan that waits for ever fails here instead of hanging the test run)
    assert outcome, "the scan still waited for the hung file"
    summary = outcome[0]
    assert not isinstance(summary, BaseException), summary
    assert (summary.scanned, summary.failed) == (3, 1)
    [(path, reason)] = summary.errors
    assert os.path.basename(path) == "hang.wav" and "timed out after" in reason and "Dask worker" in reason, reason
    with db.session() as s:
        rows = dict(s.query(M.Track.path, M.Track.status))
    assert rows[str(root / "hang.wav")] == M.STATUS_ERROR
    assert sorted(v for k, v in rows.items() if "ok" in os.path.basename(k)) == [M.STATUS_OK] * 3
    db.close()


def test_a_file_that_hangs_the_last_worker_without_a_nanny_stops_the_scan_and_leaves_it(tmp_path):
    """A file past the file timeout on a worker started with ``--no-nanny`` closes that worker (a
    retirement), whichever worker it is: the last one closed left the cluster without any, and the
    scan waited for one to join, then stopped saying every worker had left, as if tagger had not
    closed it. The last worker without a nanny is left as it is and the scan stops at once, naming
    the worker and the file, the timed-out file stored."""
    root = tmp_path / "music"
    _one_bad_and_three_ok(root, "hang.wav")  # (hangs its worker; the first file)
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:HangingAnalyser")
    try:
        with _own_cluster(tmp_path) as (address, _, _):
            with pytest.raises(ClusterError, match=r"the Dask worker tcp://127\.0\.0\.1:\d+ ran .*hang\.wav past the "
                                                   r"file timeout and is the last worker left, with no nanny.*"
                                                   r"run the workers under a nanny"):  # fmt: skip
                scan([root], db=db, analyser=FakeAnalyser(), file_timeout=10,  # (as the nanny test: a loaded machine)
                     backend=DaskBackend(address, spec=spec, connect_timeout=60, worker_timeout=5))  # fmt: skip
            with distributed.Client(address, timeout=60, set_as_default=False) as client:
                assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1  # (was: closed)
        with db.session() as s:
            rows = {os.path.basename(p): e for p, e in s.query(M.Track.path, M.Track.error)}
    finally:
        db.close()
    assert "timed out after" in rows["hang.wav"] and all(e is None for n, e in rows.items() if n != "hang.wav"), rows


def test_a_file_that_hangs_one_thread_of_the_last_worker_without_a_nanny_leaves_the_others_going(tmp_path, caplog):
    """The last worker left, started with ``--no-nanny``, stopped the scan at its first file past the
    file timeout, though it had other threads to analyse the rest: one hung file on a single
    two-thread worker left three files unanalysed. The file is stored as timed out, its thread left
    stuck (nothing can end it without a nanny), the other thread analyses the rest, and a warning
    names the worker and the file and says to run workers under a nanny.
    The next scan, the worker not restarted, counts the thread still stuck from this one (the worker
    says which of its threads run a cancelled task): its one free thread stuck too is the end of the
    scan, naming both. Counted by each scan's own files, it was a warning ('1 of its 2 threads'), and
    the files given the worker next waited behind the two stuck threads for ever, the scan with them
    (here the stuck file is that scan's last, so the old code warned and returned)."""
    import logging

    from conftest import tone_signal, write_audio

    root = tmp_path / "music"
    _one_bad_and_three_ok(root, "hang.wav")  # (hangs its thread)
    write_audio(tmp_path / "more" / "hang2.wav", tone_signal([110.0], seconds=26.0))  # (7 windows: hangs too)
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:HangingAnalyser")
    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    try:
        with _own_cluster(tmp_path, threads=2) as (address, _, _):
            summary = scan([root], db=db, analyser=FakeAnalyser(), file_timeout=10,  # (as the nanny test: a loaded machine)
                           backend=DaskBackend(address, spec=spec, connect_timeout=60, worker_timeout=5))  # fmt: skip
            with distributed.Client(address, timeout=60, set_as_default=False) as client:
                assert len(client.scheduler_info(n_workers=-1)["workers"]) == 1  # (left as it is, not closed)
            with pytest.raises(ClusterError, match=r"ran .*hang2\.wav past the file timeout .*each of its 2 threads is "
                                                   r"stuck in a file \(.*hang2\.wav, and 1 more since an earlier scan"):  # fmt: skip
                scan([tmp_path / "more"], db=db, analyser=FakeAnalyser(), file_timeout=10,
                     backend=DaskBackend(address, spec=spec, connect_timeout=60, worker_timeout=5))  # fmt: skip
        with db.session() as s:
            rows = {os.path.basename(p): (st, e) for p, st, e in s.query(M.Track.path, M.Track.status, M.Track.error)}
    finally:
        db.close()
    assert (summary.scanned, summary.failed) == (3, 1)
    assert rows["hang.wav"][0] == M.STATUS_ERROR and "timed out after" in rows["hang.wav"][1], rows
    assert [rows[f"ok{i}.wav"][0] for i in range(3)] == [M.STATUS_OK] * 3, rows
    said = [r.getMessage() for r in caplog.records if "hang.wav" in r.getMessage()]
    assert any("no nanny" in m and "1 of its 2 threads" in m for m in said), said


def test_a_retirement_the_scheduler_gives_up_closes_the_hung_worker_at_once(tmp_path, caplog):
    """A worker without a nanny that ran a file past the file timeout is retired; where the scheduler
    gave the retirement up (no other running worker to take the results the worker held for the
    client), the worker stayed, running, its thread stuck in the file, and was given the next files,
    which waited behind that thread for ever, and the scan with them; nothing said so. It is closed
    at once, with a warning. Here the worker is the cluster's only one and holds a result."""
    import logging

    from tagger.library.distributed import _end_worker

    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    with _own_cluster(tmp_path) as (address, _, _):
        with distributed.Client(address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(1, timeout=60)
            [worker] = client.scheduler_info(n_workers=-1)["workers"]
            held = client.submit(sum, [1, 2], pure=False)
            assert held.result(timeout=60) == 3  # (its result held on the worker for the client)
            _end_worker(client, worker, False, 30.0)
            deadline = time.monotonic() + 30  # (the worker's own leaving is told to the scheduler a moment later)
            while worker in client.scheduler_info(n_workers=-1)["workers"] and time.monotonic() < deadline:
                time.sleep(0.1)
            assert worker not in client.scheduler_info(n_workers=-1)["workers"], "the worker was left running"
    [record] = [r for r in caplog.records if "gave up the retirement" in r.getMessage()]
    assert worker in record.getMessage() and "closed at once" in record.getMessage()


def test_the_scan_goes_on_while_a_hung_workers_nanny_does_not_answer(tmp_path, monkeypatch):
    """The restart of a worker that ran a file past the file timeout waited for its nanny in the
    scan's thread, up to 30 s where the nanny did not answer (paused, its machine stopped): nothing
    stored meanwhile, not even the timed-out file, and a Ctrl-C unheard. The restart runs in a
    thread of its own: here the nanny answers only once the scan has stored the timed-out file."""
    import threading

    root = tmp_path / "music"
    _one_bad_and_three_ok(root, "hang.wav")  # (hangs its worker)
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:HangingAnalyser")
    stored, answered = threading.Event(), []
    plain_run, plain_restart = DaskBackend.run, distributed.Client.restart_workers

    def run(self, paths, *, store, **kwargs):  # (the scan's store, watched)
        def watched(i, result):
            store(i, result)
            if "timed out" in (result.error or ""):
                stored.set()

        return plain_run(self, paths, store=watched, **kwargs)

    def paused_nanny(self, workers, **kwargs):  # (answers once the timed-out file is stored; at most 120 s)
        answered.append(stored.wait(120))
        return plain_restart(self, workers, **kwargs)

    monkeypatch.setattr(DaskBackend, "run", run)
    monkeypatch.setattr(distributed.Client, "restart_workers", paused_nanny)
    try:
        with _own_cluster(tmp_path, nanny=True) as (address, _, _):
            summary = scan([root], db=db, analyser=FakeAnalyser(), file_timeout=10,
                           backend=DaskBackend(address, spec=spec, connect_timeout=60, in_flight=1))  # fmt: skip
    finally:
        db.close()
    assert answered == [True], "the scan waited for the nanny before it stored the timed-out file"
    assert (summary.scanned, summary.failed) == (3, 1)
    [(path, reason)] = summary.errors
    assert os.path.basename(path) == "hang.wav" and "timed out after" in reason, reason


def test_a_scan_that_ends_with_a_timed_out_file_restarts_its_worker_first(tmp_path, monkeypatch):
    """Since 7604c2e a timed-out file's worker is restarted by a thread beside the scan; a scan whose
    last file timed out returned at once and closed its client under that thread: a restart whose
    two calls to the scheduler had not all gone out was dropped ('Stream is closed', a debug line),
    the worker left stuck in the file for the next scan (found reviewing 7604c2e). The scan waits
    for the restart once every file is stored: here the nanny is asked only then."""
    import threading

    from conftest import tone_signal, write_audio

    root = tmp_path / "music"
    write_audio(root / "hang.wav", tone_signal([110.0], seconds=26.0))  # (7 windows: hangs its worker)
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:HangingAnalyser")
    stored, restarted = threading.Event(), []
    plain_run, plain_restart = DaskBackend.run, distributed.Client.restart_workers

    def run(self, paths, *, store, **kwargs):  # (the scan's store, watched)
        def watched(i, result):
            store(i, result)
            stored.set()

        return plain_run(self, paths, store=watched, **kwargs)

    def restart_once_stored(self, workers, **kwargs):  # (asked once the timed-out file is stored; at most 120 s)
        stored.wait(120)
        out = plain_restart(self, workers, **kwargs)
        restarted.append(out)
        return out

    monkeypatch.setattr(DaskBackend, "run", run)
    monkeypatch.setattr(distributed.Client, "restart_workers", restart_once_stored)
    try:
        with _own_cluster(tmp_path, nanny=True) as (address, _, _):
            summary = scan([root], db=db, analyser=FakeAnalyser(), file_timeout=3,
                           backend=DaskBackend(address, spec=spec, connect_timeout=60, in_flight=1))  # fmt: skip
            done = list(restarted)  # (as the scan returned)
    finally:
        db.close()
    [(path, reason)] = summary.errors
    assert os.path.basename(path) == "hang.wav" and "timed out after" in reason, reason
    assert len(done) == 1 and list(done[0].values()) == ["OK"], "the scan returned before its worker was restarted"


def test_a_nanny_that_does_not_answer_the_restart_is_warned_of(caplog):
    """The restart of a timed-out file's worker asks the scheduler with ``raise_for_error=False``,
    whose answer says 'timed out' for a nanny that did not answer (paused, its machine stopped): the
    scheduler then drops the worker, its process maybe still stuck in the file, and the answer was
    never read: nothing said so. It is a warning naming the worker; a restart done says nothing."""
    import logging

    from tagger.library.distributed import _end_worker

    class Client:
        status = "running"

        def __init__(self, answer):
            self.answer, self.asked = answer, []

        def restart_workers(self, workers, timeout=None, raise_for_error=True):
            self.asked.append((workers, timeout, raise_for_error))
            return {w: self.answer for w in workers}  # (distributed 2026.8: "OK", "removed" or "timed out")

    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    w = "tcp://10.0.0.7:40123"
    done = Client("OK")
    _end_worker(done, w, True, 30.0)
    assert done.asked == [([w], 30.0, False)] and not caplog.records
    _end_worker(Client("timed out"), w, True, 30.0)
    [record] = caplog.records
    assert record.levelno == logging.WARNING and record.getMessage().startswith(
        f"dask: the nanny of the worker {w} did not answer within 30 s"), record.getMessage()  # fmt: skip


def test_a_worker_dying_in_its_start_up_check_leaves_the_scan_to_the_others(template, tmp_path):
    """A worker that died while it loaded the model (its check is pinned to it) left its check
    waiting for ever, and the scan with it, deaf to a first Ctrl-C. Now the check of a worker that
    left is dropped, and the scan goes on with the workers that passed theirs."""
    import threading

    root = _distinct_copies(template, 3, tmp_path / "music")
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:DyingOnLoadAnalyser",
                        kwargs=(("marker", str(tmp_path / "died")),))  # fmt: skip
    outcome = []

    with _own_cluster(tmp_path, workers=2) as (address, _, _):

        def run():
            try:
                backend = DaskBackend(address, spec=spec, connect_timeout=60)
                with distributed.Client(address, timeout=60, set_as_default=False) as watcher:
                    watcher.wait_for_workers(2, timeout=60)  # (both start the check)
                outcome.append(scan([root], db=db, analyser=FakeAnalyser(), backend=backend))
            except BaseException as exc:
                outcome.append(exc)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        t.join(120)  # (a scan that waits for ever fails here instead of hanging the test run)
    assert (tmp_path / "died").exists()
    assert outcome, "the scan still waited for the dead worker's check"
    assert not isinstance(outcome[0], BaseException), outcome[0]
    assert (outcome[0].scanned, outcome[0].failed) == (3, 0)
    db.close()


def test_a_large_file_gets_time_for_its_size_before_it_counts_as_hung(tmp_path):
    """A Dask task sends no progress, so the file timeout capped a file's whole analysis there: a
    3 GB DSD file over a slow share (which a local worker's reading messages keep alive) was stored as
    'timed out' at every scan. A worker now has the file timeout plus a second per megabyte."""
    from tagger.library.distributed import SLOWEST_READ, task_limit

    small, large = tmp_path / "small.wav", tmp_path / "large.dsf"
    small.write_bytes(bytes(1000))
    with open(large, "wb") as f:
        f.truncate(3 * 10**9)  # (sparse: 3 GB that take no room)
    assert task_limit(str(small), 300.0) == pytest.approx(300.0, abs=0.01)
    assert task_limit(str(large), 300.0) == 300.0 + 3 * 10**9 / SLOWEST_READ == 3300.0
    assert task_limit(str(tmp_path / "gone.wav"), 300.0) == 300.0


def test_a_worker_that_reads_another_file_at_the_path_stores_and_tags_nothing(tmp_path, db):
    """A worker that saw another file at a file's path (another mount of the same name, a stale
    copy) had its results stored for the client's file and written into its tags (a bass track
    stored and tagged 'string'), its error stored as the file's. Its fingerprint of the file now
    travels with the result: such a file is a transient error naming the worker, its stored results
    and tags left as they were, and nothing of the other file (its content hash) is stored."""
    import tagger.library.distributed as D
    from conftest import tone_signal, track_instruments, write_audio
    from tagger.tags import read_instruments

    client, worker = tmp_path / "client" / "music", tmp_path / "worker" / "music"
    for name, (mine, theirs) in {"a.flac": (110.0, 4000.0), "b.flac": (110.0, None)}.items():
        write_audio(client / name, tone_signal([mine], seconds=8.0))
        if theirs is not None:
            write_audio(worker / name, tone_signal([theirs], seconds=8.0))
        else:  # the worker's copy: the same name, but broken
            (worker / name).parent.mkdir(parents=True, exist_ok=True)
            (worker / name).write_bytes(b"not audio" * 100)

    class OtherMount:  # (the cluster's part, here: analyse_remote as a worker with another mount runs it)
        def run(self, paths, *, analyser, config, predict_batch, store, poll, file_timeout=None):
            for i, path in enumerate(paths):
                seen = path.replace(str(client), str(worker))
                store(i, D.analyse_remote(seen, spec=FAKE, config=config, predict_batch=predict_batch))

    fake = FakeAnalyser()
    summary = scan([client], db=db, analyser=fake, backend=OtherMount(), on_track=tag_writer(model_version=fake.version))
    assert summary.scanned == 0 and sorted(os.path.basename(p) for p, _ in summary.errors) == ["a.flac", "b.flac"]
    assert all("read another file at this path" in e and "pid" in e for _, e in summary.errors)
    assert track_instruments(db) == {}
    assert read_instruments(str(client / "a.flac")).instruments == []
    with db.session() as s:
        rows = s.query(M.Track.status, M.Track.error_transient, M.Track.content_hash).all()
    assert rows == [(M.STATUS_ERROR, True, None)] * 2
    # the next scan, on workers that see the client's files, analyses them
    summary = scan([client], db=db, analyser=fake, on_track=tag_writer(model_version=fake.version), jobs=0)
    assert summary.scanned == 2 and track_instruments(db) == {str(client / n): ["bass"] for n in ("a.flac", "b.flac")}


def test_the_start_up_check_refuses_a_worker_that_sees_another_file(tmp_path):
    """The check before a scan looked only whether the worker could read the first file: a worker
    with another file there (another mount of the same name) went on to analyse every file. It now
    compares that file's fingerprint with the client's."""
    from conftest import tone_signal, write_audio
    from tagger.fingerprint import fingerprint
    from tagger.library.remote import worker_check

    mine = write_audio(tmp_path / "client.flac", tone_signal([110.0], seconds=5.0))
    theirs = write_audio(tmp_path / "worker.flac", tone_signal([4000.0], seconds=5.0))
    assert worker_check(FAKE, str(mine), sample_fingerprint=fingerprint(mine))["ok"] is True
    report = worker_check(FAKE, str(theirs), sample_fingerprint=fingerprint(mine))
    assert report["ok"] is False and report["error"].startswith(f"sees another file at {theirs} than the client")


def test_a_cluster_whose_workers_see_another_file_stops_before_any_file(cluster, tmp_path, monkeypatch):
    """On a real cluster: the workers see another file at the first file's path; the scan stops in
    one message naming the worker, and nothing is recorded for any file."""
    from conftest import tone_signal, write_audio

    import tagger.library.distributed as D

    address, _ = cluster
    client, worker = tmp_path / "client", tmp_path / "worker"
    for name in ("a.flac", "b.flac"):
        write_audio(client / name, tone_signal([110.0], seconds=5.0))
        write_audio(worker / name, tone_signal([4000.0], seconds=5.0))
    from tagger.fingerprint import fingerprint as real_fp

    real_run = D.DaskBackend.run

    def run_elsewhere(self, paths, **kwargs):  # the workers' mount holds other files of the same names
        return real_run(self, [p.replace(str(client), str(worker)) for p in paths], **kwargs)

    monkeypatch.setattr(D.DaskBackend, "run", run_elsewhere)
    monkeypatch.setattr(D, "fingerprint_or_none", lambda p: real_fp(p.replace(str(worker), str(client))), raising=False)
    db = open_database(tmp_path / "lib.db")
    with pytest.raises(ClusterError, match=r"worker tcp://127\.0\.0\.1:\d+: sees another file at .*a\.flac than the client"):
        scan([client], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=FAKE))
    with db.session() as s:
        assert s.query(M.Track).count() == 0
    db.close()


def test_workers_with_other_tagger_code_under_the_same_version_stop_the_scan(cluster, template, tmp_path, monkeypatch):
    """tagger's version number stays 0.1.0 from commit to commit: a worker on a checkout at another
    commit (other decoding code) passed the version check and its results were mixed into the
    database. The client now sends a digest of its source files, and each worker compares its own."""
    import tagger.library.distributed as D

    address, _ = cluster
    root = _copy(template, tmp_path / "music")
    db = open_database(tmp_path / "lib.db")
    monkeypatch.setattr(D, "code_digest", lambda: "f" * 32, raising=False)  # (the client's checkout, another commit)
    with pytest.raises(ClusterError, match="worker runs tagger .* with other source files than the client's .*ffffffffffff"):
        scan([root], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=FAKE))
    with db.session() as s:
        assert s.query(M.Track).count() == 0
    db.close()


def test_the_code_digest_tells_two_checkouts_apart(tmp_path):
    """The digest of the tagger package's source files: the same for a copy, another for a copy with
    one file changed; a worker given another one refuses each file too (one that joins late)."""
    import tagger
    from tagger.library import remote as R

    here = Path(tagger.__file__).resolve().parent
    same = shutil.copytree(here, tmp_path / "same" / "tagger", ignore=shutil.ignore_patterns("__pycache__"))
    other = shutil.copytree(same, tmp_path / "other" / "tagger")
    with open(other / "audio" / "__init__.py", "a") as f:
        f.write("\n# a local change\n")
    os.symlink("user@host.1234:1700000000", same / "audio" / ".#probe.py")  # an editor's lock: not code
    assert R.code_digest(str(same)) == R.code_digest() and len(R.code_digest()) == 32
    assert R.code_digest(str(other)) != R.code_digest()
    spec = AnalyserSpec(kind="factory", factory="library_fakes:FakeAnalyser", expected_tagger=tagger.__version__,
                        expected_code=R.code_digest(str(other)))  # fmt: skip
    assert "with other source files than the client's" in R.analyse_remote("/nonexistent.wav", spec=spec, config=None).fatal
    assert R.worker_check(spec)["ok"] is False
    assert R.worker_check(AnalyserSpec(**{**spec.__dict__, "expected_code": R.code_digest()}))["ok"] is True


def test_the_code_digest_of_an_installed_copy_is_the_checkouts(tmp_path):
    """A client on a checkout and workers on ``pip install .`` of the same commit: the installation
    holds the Alembic scripts as tagger/migrations (pyproject's package-dir), a checkout has them
    beside the package, and their .py files made the digests differ: every worker refused, 'other
    source files than the client's'. The folders mapped in are left out; a change elsewhere is not."""
    import tagger
    from tagger.library import remote as R

    here = Path(tagger.__file__).resolve().parent
    installed = shutil.copytree(here, tmp_path / "site-packages" / "tagger", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(here.parent / "migrations", installed / "migrations", ignore=shutil.ignore_patterns("__pycache__"))
    (installed / "models").mkdir()
    (installed / "models" / "manifest.json").write_text("{}")
    assert R.code_digest(str(installed)) == R.code_digest()
    deeper = shutil.copytree(installed, tmp_path / "deeper" / "tagger")  # (the digest is kept per folder)
    (deeper / "model" / "migrations").mkdir()  # (a folder of that name deeper down is code)
    (deeper / "model" / "migrations" / "x.py").write_text("")
    assert R.code_digest(str(deeper)) != R.code_digest()


@pytest.mark.slow
def test_a_file_queued_beside_one_that_kills_its_worker_is_analysed(tmp_path):
    """The scheduler counts a worker's death against every task the worker held: the file that
    killed it (a decoder crash, a worker killed for its memory) and those queued beside it (two
    tasks per thread are in flight). An innocent file was stored as 'the decoder crashed', its
    results deleted. A file whose workers died is now tried again alone once the others are done:
    only the one that kills its worker then is the file's error."""
    summary, root, rows = _scan_beside_a_crash(tmp_path)
    assert [(os.path.basename(p), "decoder crashed or ran out of memory" in e) for p, e in summary.errors] == [("crash.wav", True)]
    # which machine: a decoder crash on one of a cluster's (another ffmpeg) said no worker's address
    assert re.search(r"every Dask worker analysing it died, the last tcp://127\.0\.0\.1:\d+; see their logs", summary.errors[0][1])
    assert (summary.scanned, summary.failed) == (3, 1)
    assert rows == {str(root / "crash.wav"): M.STATUS_ERROR, **{str(root / f"ok{i}.wav"): M.STATUS_OK for i in range(3)}}


def test_a_quick_scan_takes_the_result_of_a_file_whose_stored_fingerprint_is_stale(tmp_path, db):
    """A ``--quick`` scan plans with the stored fingerprint of a file whose size, mtime and ctime are
    the stored ones. A file written in place with its size and mtime kept (a tag editor keeping the
    mtime, on a drive whose ctime is the mtime) no longer has it: a Dask worker's result for it was
    refused as "read another file at this path ... mount the library at the same path" at every such
    scan, though the worker read the client's very file (a local scan analyses it). The client now
    reads the file again before it refuses: the worker's fingerprint is its own, the result is taken."""
    import mutagen.flac

    import tagger.library.distributed as D
    from conftest import tone_signal, track_instruments, write_audio

    music = tmp_path / "music"
    song = write_audio(music / "a.flac", tone_signal([110.0], seconds=5.0))
    tagged = mutagen.flac.FLAC(song)
    tagged["title"] = "aaaaaaaa"
    tagged.save()
    assert scan([music], db=db, analyser=FakeAnalyser(version="fake-0"), jobs=0).scanned == 1
    st = os.stat(song)
    data = song.read_bytes()
    with open(song, "r+b") as f:  # a tag editor's save in place: the same size, the mtime kept
        f.write(data.replace(b"aaaaaaaa", b"bbbbbbbb"))
    os.utime(song, ns=(st.st_atime_ns, st.st_mtime_ns))
    with db.session() as s:  # (the ctime as stored: a FAT drive's is its mtime)
        s.query(M.Track).one().ctime_ns = os.stat(song).st_ctime_ns
        s.commit()

    class SameMount:  # (the cluster's part, here: analyse_remote as a worker that sees the client's files runs it)
        def run(self, paths, *, analyser, config, predict_batch, store, poll, file_timeout=None):
            for i, path in enumerate(paths):
                store(i, D.analyse_remote(path, spec=FAKE, config=config, predict_batch=predict_batch))

    summary = scan([music], db=db, analyser=FakeAnalyser(), backend=SameMount(), quick=True, rescan_stale=True)
    assert summary.scanned == 1 and summary.errors == [], summary.errors
    assert track_instruments(db) == {str(song): ["bass"]}


def test_workers_that_join_during_the_scan_get_files(tmp_path, monkeypatch, caplog):
    """The files in flight were limited to two per worker thread of the cluster as the scan began:
    workers that joined later (machines switched on one after another) had at most the one queued
    file stolen from the first worker, and sat idle. The limit now follows the cluster's threads.
    Their decoding libraries were never compared with the client's (only the start-up check's
    workers were): each is warned of once, from its first result."""
    import logging
    import threading

    import tagger.library.distributed as D
    from conftest import tone_signal, write_audio
    from tagger.library.remote import decoding_stack

    monkeypatch.setattr(D, "decoding_stack", lambda: {**decoding_stack(), "ffmpeg": "4.4.2-other"})
    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")

    root, busy, gate = tmp_path / "music", tmp_path / "busy", tmp_path / "gate"
    busy.mkdir()
    for i in range(8):
        write_audio(root / f"{i}_bass.wav", tone_signal([110.0 + i], seconds=4.0))
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:BarrierAnalyser", kwargs=(("folder", str(busy)), ("gate", str(gate))))
    db = open_database(tmp_path / "lib.db")
    with _own_cluster(tmp_path) as (address, _, _):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(TESTS), str(REPO)]), OMP_NUM_THREADS="1")
        out = {}

        def run() -> None:
            try:
                out["summary"] = scan([root], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=spec))
            except BaseException as exc:  # (reported below: a scan that ended at once ends the waits at once)
                out["error"] = exc

        def holders() -> set[str]:
            return {p.name.split("-")[0] for p in busy.iterdir()}

        def wait_for(condition, limit: float) -> None:
            """Until `condition()` or the scan's end; `limit` s at most (only a failing run reaches it)."""
            deadline = time.monotonic() + limit
            while thread.is_alive() and not condition() and time.monotonic() < deadline:
                time.sleep(0.1)

        thread = threading.Thread(target=run)
        thread.start()
        late = []
        try:
            wait_for(lambda: holders(), 120)
            late = [_start_bare_worker(address, env, tmp_path / f"late{i}", death_timeout=60) for i in range(2)]
            wait_for(lambda: len(holders()) >= 3, 90)
            holding = holders()
        finally:
            gate.touch()
            thread.join(120)
            for p in late:
                p.terminate()
                p.wait(10)
        assert "error" not in out, f"the scan failed: {out['error']!r}"
        assert len(holding) == 3, "the workers that joined during the scan were not given files"
    assert out["summary"].scanned == 8
    warned = [r.getMessage() for r in caplog.records if re.search(r"decodes? with ffmpeg", r.getMessage())]
    assert len(warned) == 1, warned  # (the start-up check's worker; those that joined have the same ffmpeg: was 3)
    db.close()


def test_a_file_missing_from_a_workers_mount_names_the_worker_and_keeps_its_results(tmp_path, db):
    """A worker whose mount lacks a file (a partial copy, a share not mounted there) stored 'cannot
    read file: No such file or directory' for a file the client reads, with nothing saying where:
    the reason of a file a worker could not read now names the worker. Its results stay, and the
    next scan tries it again."""
    import tagger.library.distributed as D
    from conftest import tone_signal, track_instruments, write_audio

    client, worker = tmp_path / "client", tmp_path / "worker"
    song = write_audio(client / "a.flac", tone_signal([110.0], seconds=5.0))
    assert scan([client], db=db, analyser=FakeAnalyser(version="fake-0"), jobs=0).scanned == 1

    class PartialMount:  # (the cluster's part, here: a worker whose mount does not hold the file)
        def run(self, paths, *, analyser, config, predict_batch, store, poll, file_timeout=None):
            for i, path in enumerate(paths):
                store(i, D.analyse_remote(path.replace(str(client), str(worker)), spec=FAKE, config=config,
                                          predict_batch=predict_batch))  # fmt: skip

    summary = scan([client], db=db, analyser=FakeAnalyser(), backend=PartialMount(), rescan_stale=True)
    ((path, reason),) = summary.errors
    assert path == str(song) and reason.startswith("cannot read file: No such file or directory (on the Dask worker ")
    assert track_instruments(db) == {str(song): ["bass"]}  # (fake-0's results kept)
    with db.session() as s:
        assert s.query(M.Track.status).scalar() == M.STATUS_OK


def test_workers_with_other_decoding_libraries_are_named_in_a_warning(cluster, tmp_path, monkeypatch, caplog):
    """A worker whose ffmpeg, libsndfile, soxr, NumPy or SciPy is another version than the client's
    may decode a file a little differently; nothing said so, and its results mixed into the database
    without a word. The start-up check now reports each worker's versions, and the scan warns of
    each one that differs (tagger's own code and the model must be the same: those are refused)."""
    import logging

    import tagger.library.distributed as D
    from conftest import tone_signal, track_instruments, write_audio
    from tagger.library.remote import decoding_stack

    address, _ = cluster
    song = write_audio(tmp_path / "music" / "a.flac", tone_signal([110.0], seconds=5.0))
    db = open_database(tmp_path / "lib.db")
    with caplog.at_level(logging.WARNING, logger="tagger.library.distributed"):
        scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=FAKE))
    assert not [r for r in caplog.records if "decode" in r.getMessage()]  # (the same machine: the same versions)
    caplog.clear()
    other = {**decoding_stack(), "ffmpeg": "4.4.2-other"}  # (the client's machine, another ffmpeg)
    monkeypatch.setattr(D, "decoding_stack", lambda: other, raising=False)
    db.close()
    db = open_database(tmp_path / "other.db")
    with caplog.at_level(logging.WARNING, logger="tagger.library.distributed"):
        summary = scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=FAKE))
    warned = sorted(r.getMessage() for r in caplog.records if "decode with" in r.getMessage())
    assert len(warned) == 1 and f"ffmpeg {decoding_stack()['ffmpeg']} (the client's 4.4.2-other)" in warned[0], warned
    assert re.search(r"the workers tcp://127\.0\.0\.1:\d+, tcp://127\.0\.0\.1:\d+ decode with", warned[0]), warned  # (was: one each)
    assert summary.scanned == 1 and track_instruments(db) == {str(song): ["bass"]}  # (warned, not refused)
    db.close()


def test_other_decoding_libraries_are_warned_of_once_a_scan(caplog, monkeypatch):
    """The workers whose decoding libraries differ from the client's were warned of one line each: a
    machine with another ffmpeg running 8 worker processes gave 8 lines at the start of a scan, and
    one more for each worker its nanny restarted or that joined later. Each difference is warned of
    once a scan, naming its workers (4, then how many more); another difference is a warning of its own."""
    import logging

    import tagger.library.distributed as D
    from tagger.library.messages import RemoteResult

    mine = {"ffmpeg": "6.1", "numpy": "1.26.4"}
    monkeypatch.setattr(D, "decoding_stack", lambda: mine)
    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    stacks = D._Stacks()
    stacks.compare({f"tcp://10.0.0.7:{4000 + i}": {"stack": {**mine, "ffmpeg": "5.1"}} for i in range(8)}
                   | {"tcp://10.0.0.5:4000": {"stack": mine}})  # fmt: skip
    for late in ("tcp://10.0.0.7:4100", "tcp://10.0.0.7:4101"):  # (restarted by their nannies)
        stacks.compare_late(RemoteResult("/music/a.flac", worker=late, stack={**mine, "ffmpeg": "5.1"}))
    stacks.compare_late(RemoteResult("/music/b.flac", worker="tcp://10.0.0.9:4000", stack={**mine, "numpy": "2.0.0"}))
    warned = [r.getMessage() for r in caplog.records]
    assert warned == [
        "dask: the workers tcp://10.0.0.7:4000, tcp://10.0.0.7:4001, tcp://10.0.0.7:4002, tcp://10.0.0.7:4003 and 4 "
        "more decode with ffmpeg 5.1 (the client's 6.1): their results may differ a little from the client's and from "
        "a local scan's; install the same versions on every machine (warned once a scan)",
        "dask: the worker tcp://10.0.0.9:4000 decodes with numpy 2.0.0 (the client's 1.26.4): its results may differ a "
        "little from the client's and from a local scan's; install the same versions on every machine (warned once a "
        "scan)"], warned  # fmt: skip


def test_the_tasks_keep_nothing_of_the_files_done(tmp_path, monkeypatch):
    """Each file's time limit (`task_limit`, with the default file timeout: every scan) was kept in
    `_Tasks.limits` for the whole scan, never removed: 140 bytes a file, 140 MB of the client's
    memory for a library of a million files, whose memory README says stays bounded. A finished, a
    timed-out or a suspect file's task leaves nothing behind, and a suspect's retry runs alone."""
    import threading

    from distributed import KilledWorker

    import tagger.library.distributed as D
    from tagger.library.distributed import _Tasks
    from tagger.library.messages import RemoteResult

    class Future:
        def __init__(self, key, path):
            self.key, self.path = key, path

        def result(self):
            if "crash" in self.path:
                raise KilledWorker(self.key, None, 0)
            return RemoteResult(self.path)

        def release(self):
            pass

    class Client:
        def submit(self, fn, path, **kwargs):
            return Future(kwargs["key"], path)

        def scheduler_info(self, n_workers=0):  # (a suspect is tried alone on a worker its nanny restarts)
            return {"workers": {"tcp://10.0.0.7:40123": {"nanny": "tcp://10.0.0.7:40100"}}}

    paths = [str(tmp_path / f"{i}.wav") for i in range(50)] + [str(tmp_path / "crash.wav")]
    tasks = _Tasks(Client(), paths, spec=FAKE, config=None, predict_batch=1, retries=0, file_timeout=300.0)
    class Flight(list):  # (as_completed's add)
        add = list.append

    flight, stored = Flight(tasks.submit_next() for _ in range(4)), []
    hung = flight.pop(0)  # (run past its limit: given up, stored as timed out, the next file in its place)
    monkeypatch.setattr(D, "_overdue", lambda client, index, limits: [(hung.key, "tcp://10.0.0.7:40123", 301.0)])
    monkeypatch.setattr(DaskBackend, "_give_up", lambda self, client, fut, worker, restarting: threading.Thread())
    idle = type("Idle", (), {"reset": lambda self: None})()
    DaskBackend(Client())._time_out_overdue(Client(), tasks, flight, idle, lambda i, r: stored.append(os.path.basename(r.path)))
    assert stored == ["0.wav"] and len(flight) == 4
    while flight:
        done = tasks.finished(flight.pop(0), KilledWorker)
        if done is not None:
            stored.append(os.path.basename(done[1].path))
        nxt = tasks.submit_next()
        if nxt is not None:
            assert nxt.key not in tasks.alone or list(tasks.index) == [nxt.key]  # (the suspect alone)
            flight.append(nxt)
    assert len(stored) == 51 and stored[-1] == "crash.wav"
    assert tasks.index == {} and tasks.limits == {} and tasks.alone == {} and tasks.suspects == [] == tasks.stranded


def test_two_workers_without_a_nanny_timed_out_at_once_are_not_both_closed(tmp_path, caplog, monkeypatch):
    """Two files past their timeout at the same check, on the only two workers, both started with
    ``--no-nanny`` (a stalled mount under both): the first is closed (in a thread, `_end_worker`),
    and the scheduler still lists it running while its retirement is on its way, so the second was
    closed too, as if the first would carry on: the cluster was left without a worker, and the scan
    waited 60 s and said every worker had left. A worker without a nanny being closed is not another:
    the second is left as the last worker, its other thread going on (`_leave_stuck`)."""
    import logging
    import threading

    import tagger.library.distributed as D
    from tagger.library.distributed import _Tasks

    class Future:
        def __init__(self, key):
            self.key = key

        def cancel(self):
            pass

    class Client:
        def submit(self, fn, path, **kwargs):
            return Future(kwargs["key"])

        def scheduler_info(self, n_workers=0):  # (no nanny; the first still running as the scheduler sees it)
            return {"workers": {w: {"status": "running"} for w in workers}}

        def nthreads(self):
            return dict.fromkeys(workers, 2)

        def run(self, *args, **kwargs):  # (the worker does not answer: the scan's own count)
            raise OSError("no answer")

        def retire_workers(self, addresses, close_workers=False):
            retired.extend(addresses)
            release.wait(30)
            return dict.fromkeys(addresses, {})

    workers, retired, release = ["tcp://10.0.0.7:40123", "tcp://10.0.0.8:40123"], [], threading.Event()
    tasks = _Tasks(Client(), [str(tmp_path / f"{i}.wav") for i in range(4)], spec=FAKE, config=None, predict_batch=1,
                   retries=0, file_timeout=300.0)  # fmt: skip
    flight = [tasks.submit_next() for _ in range(2)]
    overdue = [(f.key, w, 301.0) for f, w in zip(flight, workers)]
    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    idle = type("Idle", (), {"reset": lambda self: None})()
    monkeypatch.setattr(D, "_overdue", lambda client, index, limits: overdue)
    try:
        DaskBackend(Client())._time_out_overdue(Client(), tasks, type("F", (list,), {"add": list.append})(), idle,
                                                lambda i, r: None)  # fmt: skip
        assert retired == workers[:1]  # (was: both)
        assert tasks.stuck == {workers[1]: [str(tmp_path / "1.wav")]}
    finally:
        release.set()
        for t in tasks.ending:
            t.join(30)
    assert any("last worker left" in r.getMessage() and "1 of its 2 threads" in r.getMessage() for r in caplog.records)


def test_a_file_tried_alone_is_not_sent_to_a_worker_being_restarted(tmp_path):
    """A file timed out: its worker is restarted in a thread (`_give_up`), and the scan submits the next
    task at once, while the scheduler still lists the worker running. A suspect's alone retry went to
    the first worker with a nanny, which could be that one: it died with the restart, and where the
    worker could not say it was closing (a nanny killing a worker whose event loop a decoder holds),
    the file was stored as 'the decoder crashed'. A worker whose restart is under way is passed
    over; with no other, the suspect waits for the restart to end."""
    import threading

    from tagger.library.distributed import _Tasks

    class Future:
        def __init__(self, key):
            self.key = key

    class Client:
        def submit(self, fn, path, **kwargs):
            submitted.append(kwargs.get("workers"))
            return Future(kwargs["key"])

        def scheduler_info(self, n_workers=0):
            return {"workers": {w: {"nanny": w.replace(":40", ":50")} for w in workers}}

    workers, submitted = ["tcp://10.0.0.7:40123", "tcp://10.0.0.8:40123"], []
    tasks = _Tasks(Client(), [str(tmp_path / "a.wav")], spec=FAKE, config=None, predict_batch=1, retries=0,
                   file_timeout=None)  # fmt: skip
    next(tasks._todo)  # (every file submitted: the suspect's turn)
    tasks.suspects.append((0, "tcp://10.0.0.9:40123", None))
    release = threading.Event()
    tasks.ending = [threading.Thread(target=release.wait, name=f"tagger-restart-{w}", daemon=True) for w in workers]
    for t in tasks.ending:
        t.start()
    try:
        assert tasks.submit_next() is None and tasks.suspects and not submitted  # (both restarting: it waits)
        tasks.ending = tasks.ending[:1]  # (the second's restart over)
        assert tasks.submit_next() is not None
        assert submitted == [["tcp://10.0.0.8:40123"]]  # (was: the first, under its restart)
    finally:
        release.set()


def test_a_scheduler_that_cannot_answer_taggers_questions_is_warned_of_once(tmp_path, caplog):
    """The client asks the scheduler, by a function it sends (``run_on_scheduler``), which files run
    past the file timeout and whether a worker died under a file tried alone. A scheduler that could
    not answer (one on another Python version than the client's cannot load the function) left the
    file timeout off, and the alone retry unstopped, with a line in the debug log only. The scan now
    warns once of each, with the scheduler's reason; nothing is stored for the files meanwhile."""
    import logging

    from tagger.library.distributed import _end_alone_at_its_death, _Tasks

    class Future:
        def __init__(self, key):
            self.key = key

    class Client:
        def submit(self, fn, path, **kwargs):
            return Future(kwargs["key"])

        def scheduler_info(self, n_workers=0):
            return {"workers": {"tcp://10.0.0.7:40123": {"nanny": "tcp://10.0.0.7:40100"}}}

        def run_on_scheduler(self, fn, *args, **kwargs):
            raise TypeError("code() argument 13 must be str, not int")  # (a function of another Python version)

    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    client = Client()
    tasks = _Tasks(client, [str(tmp_path / "a.wav")], spec=FAKE, config=None, predict_batch=1, retries=0, file_timeout=3.0)
    fut = tasks.submit_next()
    tasks.alone[fut.key] = "tcp://10.0.0.7:40123"  # (as if tried alone)
    idle, stored = type("Idle", (), {"reset": lambda self: None})(), []
    for _ in range(3):  # (three checks, about a second apart in a scan)
        DaskBackend(client)._time_out_overdue(client, tasks, [], idle, lambda i, r: stored.append(r))
        _end_alone_at_its_death(tasks, [], idle, lambda i, r: stored.append(r))
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 2, warned
    assert warned[0].startswith("dask: cannot ask the scheduler which files run past the file timeout (TypeError: code() "
                                "argument 13 must be str, not int): no file is timed out while it cannot answer")  # fmt: skip
    assert warned[1].startswith("dask: cannot ask the scheduler whether a worker died under a file tried alone (TypeError: ")
    assert stored == [] and list(tasks.index) == [fut.key]


def test_a_scheduler_going_away_is_no_question_it_cannot_answer(tmp_path, caplog):
    """c8f75af warned of any failure of the questions the client sends the scheduler, as one that
    cannot load them ('a scheduler on another Python version than the client's'): a scheduler going
    away between the client's checks (its connection closed) was warned of so, beside the scan's
    own error for it (found reviewing c8f75af). A connection's failure stays a debug line."""
    import logging

    from distributed.comm.core import CommClosedError

    from tagger.library.distributed import _end_alone_at_its_death, _Tasks

    class Future:
        def __init__(self, key):
            self.key = key

    class Client:
        def submit(self, fn, path, **kwargs):
            return Future(kwargs["key"])

        def run_on_scheduler(self, fn, *args, **kwargs):
            raise CommClosedError("in <TCP (closed) ConnectionPool.run_function local=tcp://127.0.0.1:50000 "
                                  "remote=tcp://127.0.0.1:8786>: Stream is closed")  # fmt: skip

    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    client = Client()
    tasks = _Tasks(client, [str(tmp_path / "a.wav")], spec=FAKE, config=None, predict_batch=1, retries=0, file_timeout=3.0)
    fut = tasks.submit_next()
    tasks.alone[fut.key] = "tcp://10.0.0.7:40123"  # (as if tried alone)
    idle, stored = type("Idle", (), {"reset": lambda self: None})(), []
    DaskBackend(client)._time_out_overdue(client, tasks, [], idle, lambda i, r: stored.append(r))
    _end_alone_at_its_death(tasks, [], idle, lambda i, r: stored.append(r))
    assert [r.getMessage() for r in caplog.records] == [] and stored == []


def test_a_model_that_raises_on_a_worker_is_named_with_the_worker(cluster, tmp_path):
    """A task that raised (a worker's model runtime failing: an exception, not a crash) stopped the
    scan with 'the Dask cluster failed while analysing PATH: RuntimeError: ...', naming no machine of
    the cluster. The scheduler's record of where it raised is named."""
    from conftest import tone_signal, write_audio

    address, _ = cluster
    write_audio(tmp_path / "music" / "a.wav", tone_signal([110.0], seconds=5.0))
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:FailingModelAnalyser")
    with pytest.raises(ClusterError, match=r"failed while analysing .*a\.wav on the Dask workers? tcp://127\.0\.0\.1:\d+"
                                           r".*: RuntimeError: the model runtime failed \(simulated\)"):
        scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), backend=DaskBackend(address, connect_timeout=60, spec=spec, retries=0))
    db.close()


@pytest.mark.slow
def test_a_crashing_file_on_workers_without_nannies_leaves_a_worker_standing(tmp_path):
    """Workers started with ``--no-nanny`` stay dead when a file kills them. A file whose worker died
    beside others was tried again alone (534568b) on whichever worker was left: with two such
    workers and allowed-failures 0 the first died in the scan and the second in the retry, leaving
    the cluster with none (and with a file left to try after it, the scan stopped with a cluster
    error). A retry never takes the last worker without a nanny: the files that worker held are
    transient errors naming the worker that died, their results kept, tried again by the next scan;
    no file is stored as crashed, innocent or not. Their reasons were the same words for each, the file
    that killed the worker untold from those beside it: where the scheduler saw which file the worker
    ran (here the crash waits until it does), the reason says whether it was this file."""
    root = tmp_path / "music"
    _one_bad_and_three_ok(root, "crash.wav")
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:CrashingAnalyser", kwargs=(("seen", True),))
    try:
        with _own_cluster(tmp_path, workers=2, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0") as (address, _, workers):
            summary = scan([root], db=db, analyser=FakeAnalyser(),
                           backend=DaskBackend(address, spec=spec, connect_timeout=60, worker_timeout=5))  # fmt: skip
            time.sleep(1)
            assert [p.poll() is None for p in workers].count(True) == 1, "the retry killed the last worker"
        with db.session() as s:
            rows = {os.path.basename(p): (st, e) for p, st, e in s.query(M.Track.path, M.Track.status, M.Track.error)}
    finally:
        db.close()
    errors = dict((os.path.basename(p), e) for p, e in summary.errors)
    assert "crash.wav" in errors
    for name, reason in errors.items():
        assert re.fullmatch(r"not analysed: the Dask worker analysing it died .*; the next scan tries it again "
                            r"\(on the Dask worker tcp://127\.0\.0\.1:\d+\)", reason), (name, reason)  # fmt: skip
    assert summary.scanned + summary.failed == 4 and summary.scanned >= 2
    assert "died while it ran this file (a decoder crash" in errors["crash.wav"], errors  # (was: the same for all)
    assert all("died while it ran another file in flight beside it" in e for n, e in errors.items() if n != "crash.wav")
    assert all("decoder crashed" not in (e or "") for _, e in rows.values()), rows
    assert all(st == M.STATUS_OK for name, (st, _) in rows.items() if name not in errors), rows


def test_a_file_that_kills_the_last_worker_without_a_nanny_is_named(tmp_path):
    """A file that kills its worker, on a cluster whose last worker has no nanny to restart it (or whose
    every worker it kills in turn, the scheduler giving it to the next up to allowed-failures times),
    left the cluster without a worker: the scan stopped saying every worker had left, 'with 2 file(s)
    in flight', naming none, and the user could not tell which file to keep from the next scan. The
    error names the files in flight the workers died under."""
    root = tmp_path / "music"
    _one_bad_and_three_ok(root, "crash.wav")
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:CrashingAnalyser")
    try:
        with _own_cluster(tmp_path) as (address, _, _):
            with pytest.raises(ClusterError, match=r"every Dask worker left the scheduler .*; the workers died under "
                                                   r"(\S+ \(1 death\), )?\S+crash\.wav \(1 death\)"):  # fmt: skip
                scan([root], db=db, analyser=FakeAnalyser(),
                     backend=DaskBackend(address, spec=spec, connect_timeout=60, worker_timeout=3))  # fmt: skip
    finally:
        db.close()


@pytest.mark.slow
def test_a_file_tried_alone_kills_one_worker_only(tmp_path):
    """A file tried alone (534568b) was left to the scheduler, which ran it again after each death
    up to allowed-failures times: a crashing file killed that many workers more (each restart of a
    nanny, each worker started with ``--no-nanny`` for good). The retry now runs on one worker and
    is stopped at its first death: the file is stored as crashed, naming that worker."""
    root = tmp_path / "music"
    _one_bad_and_three_ok(root, "crash.wav")
    deaths = tmp_path / "deaths"
    deaths.mkdir()
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:CrashingAnalyser", kwargs=(("deaths", str(deaths)),))
    try:
        with _own_cluster(tmp_path, nanny=True, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1") as (address, _, _):
            summary = scan([root], db=db, analyser=FakeAnalyser(),
                           backend=DaskBackend(address, spec=spec, connect_timeout=60))  # fmt: skip
    finally:
        db.close()
    ((path, reason),) = summary.errors
    assert os.path.basename(path) == "crash.wav"
    assert re.fullmatch(r"the decoder crashed or ran out of memory \(every Dask worker analysing it died, the last "
                        r"tcp://127\.0\.0\.1:\d+; see their logs\)", reason), reason  # fmt: skip
    # two deaths beside the other files (allowed-failures 1), then one alone (was: two alone)
    assert len(os.listdir(deaths)) == 3 and summary.scanned == 3


def _scan_stopping_the_alone_worker(tmp_path: Path, *, workers: int, nanny: bool, allowed_failures: int):
    """``stop.wav`` (`dask_fakes.StoppedInRetryAnalyser`: it kills the first ``allowed_failures + 1``
    workers analysing it, is held by the next) and ``ok0.wav`` to ``ok2.wav`` scanned on a cluster of
    their own; the worker holding ``stop.wav`` alone is sent SIGTERM (to its nanny with ``nanny``: a
    ``dask worker``'s own stop either way). Returns the summary, each stored name's status and error,
    and whether that worker's process ended within 30 s of the scan."""
    import signal
    import threading

    root, folder = tmp_path / "music", tmp_path / "turns"
    _one_bad_and_three_ok(root, "stop.wav")
    folder.mkdir()
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:StoppedInRetryAnalyser",
                        kwargs=(("folder", str(folder)), ("crashes", allowed_failures + 1)))  # fmt: skip
    outcome = []
    try:
        with _own_cluster(tmp_path, workers=workers, nanny=nanny,
                          DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES=str(allowed_failures)) as (address, _, procs):

            def run():
                try:
                    outcome.append(scan([root], db=db, analyser=FakeAnalyser(),
                                        backend=DaskBackend(address, spec=spec, connect_timeout=60)))  # fmt: skip
                except BaseException as exc:
                    outcome.append(exc)

            t = threading.Thread(target=run, daemon=True)
            t.start()
            deadline = time.monotonic() + 120
            while not list(folder.glob("alone-*")) and t.is_alive() and time.monotonic() < deadline:
                time.sleep(0.1)
            held = [int(p.name.split("-")[1 if nanny else 2]) for p in folder.glob("alone-*")]
            assert held, "the file was not tried alone"
            [proc] = [w for w in procs if w.pid == held[0]]
            proc.send_signal(signal.SIGTERM)  # (dask worker's own stop: it closes its worker, then itself)
            t.join(150)  # (a scan that waits for ever fails here instead of hanging the test run)
            try:
                ended = proc.wait(30) is not None
            except subprocess.TimeoutExpired:
                ended = False
        with db.session() as s:
            rows = {os.path.basename(p): (st, e) for p, st, e in s.query(M.Track.path, M.Track.status, M.Track.error)}
    finally:
        db.close()
    assert outcome, "the scan still waited"
    assert not isinstance(outcome[0], BaseException), outcome[0]
    return outcome[0], rows, ended


def _warned_of_a_stop(caplog) -> bool:
    return any(re.search(r"the worker tcp://127\.0\.0\.1:\d+ was stopped \(not a crash\) while it analysed .*stop\.wav",
                         r.getMessage()) for r in caplog.records)  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("allowed_failures", [0, 1])
def test_a_worker_stopped_while_it_tries_a_file_alone_is_no_crash_of_the_file(tmp_path, caplog, allowed_failures):
    """A worker stopped while it ran a suspect's alone retry (SIGTERM or Ctrl-C on ``dask worker``, a
    cluster scaling down) counts as a death for the scheduler (the task's suspicious count), so the
    file was stored as 'the decoder crashed' (a lasting error, tried again only with
    --retry-errors) where the file had done nothing. A worker that reported it was closing before it
    left is told from a death: the file is tried again alone on another worker. With allowed-failures
    0 the stop fails the task (KilledWorker); with 1 it leaves it waiting for its gone worker."""
    import logging

    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    summary, rows, ended = _scan_stopping_the_alone_worker(tmp_path, workers=2, nanny=True,
                                                           allowed_failures=allowed_failures)  # fmt: skip
    assert summary.errors == [] and (summary.scanned, summary.failed) == (4, 0), summary.errors
    assert rows == {name: (M.STATUS_OK, None) for name in ("stop.wav", "ok0.wav", "ok1.wav", "ok2.wav")}, rows
    assert _warned_of_a_stop(caplog), [r.getMessage() for r in caplog.records]
    assert ended


@pytest.mark.slow
def test_a_worker_without_a_nanny_stopped_under_a_file_alone_is_no_crash_of_the_file(tmp_path, caplog):
    """``dask worker --no-nanny`` sent SIGTERM (or Ctrl-C) ends its event loop, which breaks the worker's
    connection before it closes (distributed 2026.8): the scheduler heard no 'closing', the stop read
    as a death, and the file it ran alone was stored as 'the decoder crashed' (a lasting error). A
    worker that ran a tagger task closes first at a stop signal, as one under a nanny does: the file
    is no crash. Three workers: the first dies of the file, the second is stopped under its alone
    retry, the third is the last and is not risked (a transient error, the next scan tries it)."""
    import logging

    from tagger.library.distributed import STRANDED

    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    summary, rows, ended = _scan_stopping_the_alone_worker(tmp_path, workers=3, nanny=False, allowed_failures=0)
    assert all("decoder crashed" not in (e or "") for _, e in rows.values()), rows
    assert _warned_of_a_stop(caplog), [r.getMessage() for r in caplog.records]
    errors = {os.path.basename(p): e for p, e in summary.errors}  # (a file queued beside it on the first: as it)
    assert "stop.wav" in errors and all(e.startswith(STRANDED) for e in errors.values()), errors  # (alone: none ran)
    assert summary.scanned + summary.failed == 4
    assert ended  # (was: its process stayed, held by the file's thread, until the file's end)


def test_a_worker_without_a_nanny_has_dask_workers_own_stop_handlers_once_no_tagger_file_runs(cluster, tmp_path):
    """The stop handlers a tagger file puts in front of ``dask worker --no-nanny``'s own (to close its
    worker first, `reporting_stops`) stayed for the rest of the worker process's life: after the scan,
    on a shared cluster, other work there stopped by tagger's handler. They are ``dask worker``'s own
    again once no tagger task runs."""
    import signal

    from conftest import tone_signal, write_audio

    address, client = cluster
    write_audio(tmp_path / "music" / "a.flac", tone_signal([110.0], seconds=5.0))
    write_audio(tmp_path / "music" / "b.flac", tone_signal([220.0], seconds=5.0))
    db = open_database(tmp_path / "lib.db")
    try:
        summary = scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(),
                       backend=DaskBackend(address, connect_timeout=60, spec=FAKE))  # fmt: skip
    finally:
        db.close()
    assert summary.scanned == 2

    def handlers():
        return [getattr(signal.getsignal(s), "__module__", None) for s in (signal.SIGINT, signal.SIGTERM)]

    seen = client.run(handlers)
    assert len(seen) == 2 and all(v == ["distributed._signals"] * 2 for v in seen.values()), seen


@pytest.mark.slow
def test_a_crash_at_the_address_of_a_worker_stopped_before_is_a_crash(tmp_path, monkeypatch):
    """A worker under a nanny at a fixed port (``--worker-port``) comes back from a restart at its old
    address, and the scheduler keeps each address's events across the workers that had it: the
    'closing' its restart reported (a file timeout's restart, any client's) made every later death
    there read as a stop (`_stopped_gracefully`), so a file that killed it alone was tried alone again
    there, for ever, each try killing the worker (found reviewing 2c1a7f2). Only the events since the
    worker joined count: the file is stored as crashed, the others analysed."""
    from tagger.library import distributed as dist

    root = tmp_path / "music"
    _one_bad_and_three_ok(root, "crash.wav")  # (kills the worker)
    db = open_database(tmp_path / "lib.db")
    spec = AnalyserSpec(kind="factory", factory="dask_fakes:CrashingAnalyser")
    plain_alone_worker, tries = dist.alone_worker, []

    def alone_worker(workers):  # (a scan that tries the file alone for ever fails here instead of hanging)
        tries.append(1)
        assert len(tries) <= 8, "the file that kills its worker was tried alone again and again"
        return plain_alone_worker(workers)

    monkeypatch.setattr(dist, "alone_worker", alone_worker)
    port = _free_port()
    try:
        with _own_cluster(tmp_path, nanny=True, worker_port=port,
                          DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="0") as (address, _, _):  # fmt: skip
            with distributed.Client(address, timeout=60, set_as_default=False) as client:
                client.wait_for_workers(1, timeout=60)
                worker = f"tcp://127.0.0.1:{port}"
                assert list(client.scheduler_info(n_workers=-1)["workers"]) == [worker]
                client.restart_workers([worker], timeout=60)  # (its worker stopped: 'closing' at its address)
                client.wait_for_workers(1, timeout=60)
                assert list(client.scheduler_info(n_workers=-1)["workers"]) == [worker]
                assert any(m.get("status") in dist.CLOSING for _, m in client.get_events(worker) if isinstance(m, dict))
            summary = scan([root], db=db, analyser=FakeAnalyser(),
                           backend=DaskBackend(address, spec=spec, connect_timeout=60))  # fmt: skip
        with db.session() as s:
            rows = {os.path.basename(p): st for p, st in s.query(M.Track.path, M.Track.status)}
    finally:
        db.close()
    assert (summary.scanned, summary.failed) == (3, 1), summary.errors
    [(path, reason)] = summary.errors
    assert os.path.basename(path) == "crash.wav" and "the decoder crashed" in reason, reason
    assert rows["crash.wav"] == M.STATUS_ERROR and all(rows[f"ok{i}.wav"] == M.STATUS_OK for i in range(3)), rows


def test_a_worker_whose_retirement_was_given_up_dies_of_its_file(caplog):
    """A retirement the scheduler gives up (``retire_workers`` with no worker to take the data the
    worker holds) sets the worker closing_gracefully, then running again; a file that killed it later
    read as stopped with it (`_stopped_gracefully` took any closing status since it joined): the file
    was tried alone again, killing another worker, and the warning called its crash a stop. The
    worker's latest status decides (the scheduler's events as distributed 2026.8 logs them)."""
    import logging

    from tagger.library.distributed import _stopped_gracefully

    def change(prev, status):
        return {"action": "worker-status-change", "prev-status": prev, "status": status, "stimulus_id": "x"}

    joined = [(1.0, {"action": "add-worker"}), (1.1, change("init", "running"))]
    died = [(9.0, {"action": "remove-worker", "processing-tasks": {"tagger-analyse-0-ab"}, "expected": False})]
    given_up = [(2.0, change("running", "closing_gracefully")), (2.5, change("closing_gracefully", "running"))]
    stopped = [(3.0, change("running", "closing"))]

    class Client:
        def __init__(self, events):
            self.events = events

        def get_events(self, topic):
            return tuple(self.events)

    caplog.set_level(logging.WARNING, logger="tagger.library.distributed")
    w = "tcp://10.0.0.7:40123"
    assert not _stopped_gracefully(Client(joined + given_up + died), w, "/music/a.wav")
    assert not caplog.records
    assert _stopped_gracefully(Client(joined + given_up + stopped + died), w, "/music/a.wav")
    assert _stopped_gracefully(Client(joined + stopped + [(3.5, change("closing", "closed"))] + died), w, "/music/a.wav")


def test_a_decoder_failing_on_a_worker_names_the_worker(tmp_path, db, monkeypatch):
    """A worker whose ffmpeg fails (another build, a broken install) stored 'ffmpeg could not decode
    the file: ...' as the file's own error, naming no machine, where a file the worker could not read
    names it (725dfcc): the user could not tell one machine's fault from the file's. The reason of a
    file whose decoder failed on a worker now ends '(on the Dask worker ADDRESS)', and, as every
    reason, names no file."""
    import tagger.library.distributed as D
    from conftest import tone_signal, write_audio

    song = write_audio(tmp_path / "music" / "a.m4a", tone_signal([110.0], seconds=5.0))
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "ffmpeg").write_text("#!/bin/sh\necho 'Illegal instruction' >&2\nexit 132\n")
    (broken / "ffmpeg").chmod(0o755)

    class BrokenFfmpeg:  # (the cluster's part, here: a worker whose ffmpeg fails on every file)
        def run(self, paths, *, analyser, config, predict_batch, store, poll, file_timeout=None):
            monkeypatch.setenv("PATH", f"{broken}{os.pathsep}{os.environ['PATH']}")
            for i, path in enumerate(paths):
                store(i, D.analyse_remote(path, spec=FAKE, config=config, predict_batch=predict_batch))

    summary = scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), backend=BrokenFfmpeg())
    ((path, reason),) = summary.errors
    assert path == str(song)
    assert re.fullmatch(r"ffmpeg could not decode the file: .*Illegal instruction.* \(on the Dask worker .+ \(pid \d+\)\)", reason), reason
    assert "a.m4a" not in reason and str(tmp_path) not in reason
    with db.session() as s:
        assert s.query(M.Track.error).scalar() == reason
