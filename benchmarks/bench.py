"""Benchmark of the whole scan: ``python -m benchmarks.bench`` (or ``make bench``).

1. Renders (once, cached) a library of 3-5 minute multi-instrument pieces from the training
   SoundFonts, encoded as MP3, FLAC, Ogg Vorbis and M4A (`benchmarks.library`), ``--hours`` of audio
   (default 2; ``--quick``: about 10 minutes).
2. Runs the real ``tagger scan`` command on fresh copies of it (tags written, fresh database): on a
   quarter of the library and on all of it (memory at two library sizes), then again on the
   unchanged library, then on a 1,000-track library of hard links to the same files (rescan time
   per 1,000 tracks). While a scan runs, the memory of its process tree is sampled from ``/proc``.
3. Times the ensemble alone on windows of the library: the shipped model with the runtime the scan
   uses, and the ``compact`` against the ``paper`` architecture on the same windows (Keras both).
4. Times ``tagger query`` on a synthesised 10,000-track database.

Prints a report and writes every figure to a JSON file (``--out``; by default under the cache
folder) so that runs can be compared (``--compare OLD.json``).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/bench.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import library as L  # noqa: E402

QUICK_HOURS = 10 / 60
SMALL_SHARE = 0.25
MIRROR_TRACKS = 1000
QUERY_TRACKS = 10_000
INFERENCE_WINDOWS = 1024
ARCH_WINDOWS = 32
TARGETS = {
    "scan_x_realtime": 400.0,
    "ensemble_x_realtime": 700.0,
    "peak_memory_bytes": 1.5e9,
    "rescan_seconds_per_1000": 5.0,
    "query_seconds": 0.3,
}

STAGES = ("plan", "decode", "resample", "framing", "features", "inference", "aggregation", "database", "tags")


def say(msg: str = "") -> None:
    print(msg, flush=True)


# -- process-tree memory ----------------------------------------------------------------------------
def _children_map() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        rest = stat[stat.rfind(b")") + 2 :].split()
        kids.setdefault(int(rest[1]), []).append(int(entry.name))
    return kids


def _status(pid: int) -> dict[str, int | str]:
    out: dict[str, int | str] = {}
    try:
        with open(f"/proc/{pid}/status", "rb") as f:
            for line in f:
                key, _, value = line.partition(b":")
                if key in (b"VmRSS", b"VmHWM"):
                    out[key.decode()] = int(value.split()[0]) * 1024
                elif key == b"Name":
                    out["Name"] = value.strip().decode(errors="replace")
    except OSError:
        pass
    return out


class TreeMemory(threading.Thread):
    """Samples the resident memory of a process and all its descendants every `interval` seconds."""

    def __init__(self, root: int, interval: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.stop = threading.Event()
        self.peak: dict[int, int] = {}  # pid -> VmHWM (peak RSS of that process)
        self.names: dict[int, str] = {}
        self.parent: dict[int, int] = {}
        self.peak_total = 0  # largest sum of VmRSS over the tree at one moment

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def sample(self) -> None:
        kids = _children_map()
        todo, total = [self.root], 0
        while todo:
            pid = todo.pop()
            st = _status(pid)
            if "VmRSS" in st:
                total += int(st["VmRSS"])
                self.peak[pid] = max(self.peak.get(pid, 0), int(st.get("VmHWM", st["VmRSS"])))
                if pid not in self.names:
                    self.names[pid] = str(st.get("Name", "?"))
                    try:
                        with open(f"/proc/{pid}/cmdline", "rb") as f:
                            if b"resource_tracker" in f.read():
                                self.names[pid] = "resource_tracker"
                    except OSError:
                        pass
            for kid in kids.get(pid, []):
                self.parent[kid] = pid
                todo.append(kid)
        self.peak_total = max(self.peak_total, total)

    def report(self) -> dict:
        workers = [p for p in self.peak if self.parent.get(p) == self.root and self.names.get(p, "").startswith("python")]
        others = [p for p in self.peak if p != self.root and p not in workers]
        return {
            "main_peak_rss": self.peak.get(self.root, 0),
            "worker_peak_rss": sorted((self.peak[p] for p in workers), reverse=True),
            "decoder_peak_rss": max((self.peak[p] for p in others if self.names.get(p) != "resource_tracker"), default=0),
            "resource_tracker_rss": max((self.peak[p] for p in others if self.names.get(p) == "resource_tracker"), default=0),
            "sum_of_peaks": sum(self.peak.values()),
            "peak_total_rss": self.peak_total,
        }


# -- running tagger -----------------------------------------------------------------------------------
def tagger_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "tagger", *args]


SOURCE: list[str] = []
"""Set by ``--src``: run the tagger commands from another checkout (to compare with older code)."""


def child_cwd() -> str | None:
    """``python -m`` puts the working folder first on the path: run from the ``--src`` checkout."""
    return SOURCE[0] if SOURCE else None


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if SOURCE:
        env["PYTHONPATH"] = os.pathsep.join([*SOURCE, env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def query_env() -> dict[str, str]:
    """The query processes' environment: as `child_env`, with Python's bytecode cache on, as an
    installed tagger has it (pip compiles it; a shell with ``PYTHONDONTWRITEBYTECODE=1``, as this
    project's build machine has, made every timed query compile tagger's modules again, ~44 ms)."""
    env = child_env()
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def run_scan(roots: Sequence[Path], *, db: Path, models: Path, jobs: int | None, tags: bool = False) -> dict:
    """One ``tagger scan --json`` process (``tags``: ``--write-tags``) with no settle time (the
    benchmark's files were just copied: a settle time would defer them all); returns its summary,
    wall time and memory."""
    cmd = tagger_cmd("scan", *map(str, roots), "--db", str(db), "--models", str(models), "--json", "--settle-seconds", "0")
    if tags:
        cmd += ["--write-tags"]
    if jobs is not None:
        cmd += ["--jobs", str(jobs)]
    t = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env(), cwd=child_cwd())
    mem = TreeMemory(proc.pid)
    mem.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t
    mem.stop.set()
    mem.join()
    try:
        summary = json.loads(out)
    except json.JSONDecodeError:
        raise SystemExit(f"tagger scan failed (exit {proc.returncode}):\n{err.decode(errors='replace')[-2000:]}") from None
    if summary.get("failed"):
        say(f"  warning: {summary['failed']} file(s) failed: {summary.get('errors')[:3]}")
    return {"process_wall_seconds": wall, "summary": summary, "memory": mem.report()}


def scan_figures(run: dict, tracks: int) -> dict:
    s = run["summary"]
    wall = run["process_wall_seconds"]
    audio = float(s["audio_seconds"])
    stages = {k: float(v) for k, v in (s.get("stage_seconds") or {}).items()}
    return {
        "tracks": tracks,
        "audio_seconds": audio,
        "process_wall_seconds": round(wall, 3),
        "scan_wall_seconds": s["wall_seconds"],
        "startup_seconds": round(wall - float(s["wall_seconds"]), 3),
        "x_realtime": round(audio / wall, 1) if wall else 0.0,
        "x_realtime_scan_only": s.get("realtime_factor"),
        "tracks_per_second": round(tracks / wall, 3) if wall else 0.0,
        "stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        "tags_written": s.get("tags_written"),
        "failed": s.get("failed"),
        "memory": run["memory"],
        "memory_reported_by_scan": s.get("peak_rss"),
    }


# -- the ensemble alone ---------------------------------------------------------------------------------
def library_windows(paths: Sequence[Path], n: int) -> "object":
    """Up to `n` non-silent 4 s windows [shape=(n, 64000)] from the files, in order."""
    import numpy as np

    from tagger import audio

    got, total = [], 0
    for p in paths:
        for w in audio.iter_windows(p, batch_size=64):
            a = w.audio[~w.silent]
            got.append(a)
            total += len(a)
            if total >= n:
                return np.concatenate(got)[:n]
    return np.concatenate(got)[:n]


def time_predict(ensemble, feats, *, repeats: int = 3, batch_size: int = 64) -> float:
    """Best wall seconds of `repeats` passes of ``ensemble.predict_features`` over `feats`."""
    ensemble.predict_features(feats[:batch_size], batch_size=batch_size)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        ensemble.predict_features(feats, batch_size=batch_size)
        best = min(best, time.perf_counter() - t)
    return best


def paper_ensemble(families: Sequence[str]):
    """The paper's architecture, one random-weight classifier per family, joined like `Ensemble.load`
    (speed does not depend on the weights)."""
    import keras

    from tagger.model import architectures as A
    from tagger.model.backends import KerasRunner

    shape = A.PAPER_FEATURES.shape
    inp = keras.Input(shape=shape, name="features")
    outs = [A.build("paper", name=f"family_{i}")(inp) for i, _ in enumerate(families)]
    model = keras.Model(inp, keras.layers.Concatenate()(outs) if len(outs) > 1 else outs[0])
    return KerasRunner(model)


class _RunnerEnsemble:
    def __init__(self, runner, n: int) -> None:
        self.runner, self.n = runner, n

    def predict_features(self, feats, *, batch_size: int = 64):
        import numpy as np

        return np.concatenate([self.runner(feats[i : i + batch_size]) for i in range(0, len(feats), batch_size)])


def measure_inference(models: Path, paths: Sequence[Path], *, windows: int, arch_windows: int, paper: bool) -> dict:
    """The ensemble alone on the same windows: shipped runtime (all cores and one thread), and the
    compact against the paper architecture."""
    from tagger import features as F
    from tagger.model import architectures as A
    from tagger.model import backends as B
    from tagger.model import runtime as R
    from tagger.model.ensemble import Ensemble

    audio_windows = library_windows(paths, windows)
    n = len(audio_windows)
    shipped = Ensemble.load(models)
    feats = F.compute(windows=audio_windows, config=shipped.feature_config)
    out: dict = {"windows": n, "runtime": shipped.runtime, "architecture": shipped.manifest.get("architecture")}
    sec = time_predict(shipped, feats)
    out["all_cores"] = {"threads": B.default_threads(), "seconds": round(sec, 4), "ms_per_window": round(1000 * sec / n, 3),
                        "x_realtime": round(n * 4.0 / sec, 1)}  # fmt: skip
    if shipped.runtime == "onnxruntime":
        one = _RunnerEnsemble(R.OnnxRunner(R.load_cached(shipped.export_key), threads=1), 0)
        sec1 = time_predict(one, feats)
        out["one_thread"] = {"threads": 1, "seconds": round(sec1, 4), "ms_per_window": round(1000 * sec1 / n, 3),
                             "x_realtime": round(n * 4.0 / sec1, 1)}  # fmt: skip
    # compact vs paper, Keras both, on the first `arch_windows` windows
    k = min(arch_windows, n)
    few = audio_windows[:k]
    arch: dict = {"windows": k, "runtime": "keras"}
    saved = os.environ.get(B.RUNTIME_ENV)
    os.environ[B.RUNTIME_ENV] = "keras"
    try:
        compact_keras = Ensemble.load(models)
    finally:
        if saved is None:
            os.environ.pop(B.RUNTIME_ENV, None)
        else:
            os.environ[B.RUNTIME_ENV] = saved
    cf = F.compute(windows=few, config=compact_keras.feature_config)
    c_sec = time_predict(compact_keras, cf, batch_size=32)
    arch["compact_ms_per_window"] = round(1000 * c_sec / k, 3)
    arch["compact_shipped_runtime_ms_per_window"] = round(1000 * time_predict(shipped, feats[:k], batch_size=32) / k, 3)
    if paper:
        pf = F.compute(windows=few, config=A.PAPER_FEATURES)
        p_model = _RunnerEnsemble(paper_ensemble(shipped.families), len(shipped.families))
        p_sec = time_predict(p_model, pf, repeats=1, batch_size=16)
        arch["paper_ms_per_window"] = round(1000 * p_sec / k, 3)
        arch["paper_over_compact"] = round(p_sec / c_sec, 1)
        arch["paper_over_compact_shipped_runtime"] = round(arch["paper_ms_per_window"] / arch["compact_shipped_runtime_ms_per_window"], 1)
    out["architectures"] = arch
    return out


# -- query ------------------------------------------------------------------------------------------------
def synth_database(path: Path, *, tracks: int, seed: int = 0) -> Path:
    """A library database of `tracks` analysed tracks with random detections and segments (cached)."""
    if path.is_file():
        return path
    from sqlalchemy import insert

    from tagger.db import models as M
    from tagger.db.session import open_database
    from tagger.instruments import FAMILIES

    tmp = path.with_name(f".{path.name}.tmp")
    for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
        p.unlink(missing_ok=True)
    db = open_database(str(tmp))
    rng = random.Random(seed)
    now = M.utcnow()
    with db.engine.begin() as conn:
        mv = conn.execute(insert(M.ModelVersion).values(
            version="bench", manifest_hash="0" * 64, families=json.dumps(list(FAMILIES)),
            thresholds=json.dumps({f: 0.5 for f in FAMILIES}), aggregation="{}", created_at=now)).inserted_primary_key[0]  # fmt: skip
        track_rows, det_rows, seg_rows = [], [], []
        for i in range(tracks):
            if len(track_rows) == 10_000:  # (in parts: 200,000 tracks held at once took gigabytes)
                _insert_rows(conn, track_rows, det_rows, seg_rows)
            dur = rng.uniform(120, 420)
            track_rows.append({
                "id": i + 1, "path": f"/music/artist-{i // 120:03d}/album-{i // 12:04d}/{i % 12 + 1:02d} track {i}.flac",
                "size": rng.randint(3_000_000, 40_000_000), "mtime": 1.7e9 + i, "fingerprint": f"{rng.getrandbits(128):032x}",
                "duration": dur, "format": "FLAC", "sample_rate": 44100, "channels": 2, "status": M.STATUS_OK,
                "windows": int(dur // 4) + 1, "silent_windows": 0, "model_version_id": mv,
                "first_seen_at": now, "analysed_at": now, "updated_at": now,
            })  # fmt: skip
            present = set(rng.sample(FAMILIES, rng.randint(1, 5)))
            for fam in FAMILIES:
                on = fam in present
                det_rows.append({"track_id": i + 1, "family": fam, "present": on,
                                 "score": rng.uniform(0.5, 1.0) if on else rng.uniform(0.0, 0.5),
                                 "coverage": rng.uniform(0.1, 1.0) if on else 0.0})  # fmt: skip
                if on:
                    a = rng.uniform(0, dur / 2)
                    seg_rows.append({"track_id": i + 1, "family": fam, "start": a, "end": min(dur, a + rng.uniform(8, dur / 2))})
        _insert_rows(conn, track_rows, det_rows, seg_rows)
    db.close()
    os.replace(tmp, path)
    return path


def _insert_rows(conn, track_rows: list, det_rows: list, seg_rows: list) -> None:
    """Insert the rows of `synth_database` and empty the lists."""
    from sqlalchemy import insert

    from tagger.db import models as M

    for table, rows in ((M.Track, track_rows), (M.Detection, det_rows), (M.Segment, seg_rows)):
        if rows:
            conn.execute(insert(table), rows)
        rows.clear()


QUERIES = (
    ("--has", "flute", "--lacks", "vocal"),
    ("--has", "string", "--has", "bass", "--min-score", "0.6"),
    ("--has", "organ", "--path-glob", "*/artist-01*/*", "--format", "m3u"),
)


def measure_query(db: Path, *, runs: int = 5) -> dict:
    """Wall time of whole ``tagger query`` processes (interpreter start-up included) and of the
    query itself in this process, on the synthesised database."""
    from tagger.db.filter import TrackFilter
    from tagger.db.queries import find_tracks
    from tagger.db.session import open_database
    from tagger.library.report import render_tracks

    out: dict = {"tracks": None, "queries": [], "bytecode": "cached"}
    env = query_env()
    for q in QUERIES:
        cmd = tagger_cmd("query", *q, "--db", str(db))
        cmd += [] if "--format" in q else ["--format", "json"]
        walls, n = [], 0
        subprocess.run(cmd, capture_output=True, env=env, cwd=child_cwd())  # untimed: writes the bytecode
        for _ in range(runs):
            t = time.perf_counter()
            proc = subprocess.run(cmd, capture_output=True, env=env, cwd=child_cwd())
            walls.append(time.perf_counter() - t)
            if proc.returncode != 0:
                raise SystemExit(f"tagger query failed: {proc.stderr.decode(errors='replace')[-500:]}")
            n = len(json.loads(proc.stdout)) if "--format" not in q else proc.stdout.count(b"\n#EXTINF")
        has = [q[i + 1] for i, a in enumerate(q) if a == "--has"]
        lacks = [q[i + 1] for i, a in enumerate(q) if a == "--lacks"]
        min_score = float(q[q.index("--min-score") + 1]) if "--min-score" in q else None
        glob = q[q.index("--path-glob") + 1] if "--path-glob" in q else None
        database = open_database(str(db))
        inproc = []
        try:
            for _ in range(runs):
                t = time.perf_counter()
                with database.session() as s:
                    found = find_tracks(s, where=TrackFilter.of(has=has, lacks=lacks, min_score=min_score,
                                                                path_glob=glob))  # fmt: skip
                render_tracks(found, fmt="json")
                inproc.append(time.perf_counter() - t)
        finally:
            database.close()
        out["queries"].append({
            "args": " ".join(q), "matches": n,
            "process_seconds_median": round(statistics.median(walls), 4), "process_seconds_max": round(max(walls), 4),
            "in_process_seconds_median": round(statistics.median(inproc), 4),
        })  # fmt: skip
    start = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(tagger_cmd("--help"), capture_output=True, env=env, cwd=child_cwd())
        start.append(time.perf_counter() - t)
    out["python_startup_seconds_median"] = round(statistics.median(start), 4)
    return out


# -- the run --------------------------------------------------------------------------------------------
def machine() -> dict:
    info = {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        info["memory_bytes"] = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    except OSError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def load_now() -> dict:
    """CPU load when the run starts: timings taken while other work runs are not comparable."""
    busy = subprocess.run(["pgrep", "-f", "tagger train"], capture_output=True, text=True).stdout.split()
    return {"load_average_1m": round(os.getloadavg()[0], 2), "tagger_train_running": bool(busy)}


def random_models(cache: Path) -> Path:
    """A compact ensemble with random weights (speed does not depend on the weights), cached."""
    from tagger.instruments import FAMILIES
    from tagger.model import architectures as A
    from tagger.model import store

    out = cache / "random-compact-models"
    if (out / "manifest.json").is_file():
        return out
    tmp = cache / ".random-compact-models.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    manifest = store.new_manifest(architecture="compact", recipe="random", feature_config=A.COMPACT_FEATURES,
                                  version="compact-random-bench")  # fmt: skip
    for fam in FAMILIES:
        store.save_classifier(tmp, manifest, fam, A.build("compact", name=fam))
    os.replace(tmp, out)
    return out


def hardlink_mirror(pieces: Sequence[L.Piece], *, source: Path, dest: Path, tracks: int) -> Path:
    """`tracks` hard links to the library's files, as many albums (a big library's rescan, no new audio)."""
    shutil.rmtree(dest, ignore_errors=True)
    for i in range(tracks):
        p = pieces[i % len(pieces)]
        target = dest / f"disc-{i // 100:03d}" / f"{i:05d} {Path(p.relpath).name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source / p.relpath, target)
    return dest


def fmt_bytes(n: float) -> str:
    return f"{n / 2**20:,.0f} MiB"


def print_report(r: dict) -> None:
    say()
    say("=" * 78)
    say(f"tagger scan benchmark  {r['started']}  ({r['machine'].get('cpus')} cores, {r['machine'].get('cpu', '?')})")
    load = r["load_before"]
    say(f"models: {r['models']['version']} ({r['models']['runtime']})   load before: {load['load_average_1m']}"
        + ("   WARNING: tagger train was running" if load["tagger_train_running"] else ""))  # fmt: skip
    big = r["scan"]["full"]
    say(f"library: {big['tracks']} tracks, {big['audio_seconds'] / 3600:.2f} h of audio (mp3, flac, ogg, m4a)")
    say("-" * 78)
    say(f"full scan (fresh, tags written): {big['process_wall_seconds']:.1f} s wall "
        f"(start-up {big['startup_seconds']:.1f} s) -> {big['x_realtime']:.0f}x real time end to end, "
        f"{big['tracks_per_second']:.2f} tracks/s")  # fmt: skip
    if "short" in r["scan"]:
        sh = r["scan"]["short"]
        say(f"short tracks ({sh['tracks']} of 15-55 s, tags written): {sh['process_wall_seconds']:.1f} s wall -> "
            f"{sh['x_realtime']:.0f}x real time end to end, {sh['tracks_per_second']:.2f} tracks/s")  # fmt: skip
    st = big["stage_seconds"]
    say("stage seconds (workers' stages summed over the worker processes):")
    for k in (*STAGES, "wait", "idle"):
        if k in st:
            say(f"  {k:<12} {st[k]:8.2f} s")
    say("peak memory (RSS):")
    for key in ("small", "full"):
        m = r["scan"][key]["memory"]
        say(f"  {key:<5} library ({r['scan'][key]['tracks']:>4} tracks, {r['scan'][key]['audio_seconds'] / 3600:.2f} h): "
            f"main {fmt_bytes(m['main_peak_rss'])}, workers " + " + ".join(fmt_bytes(w) for w in m["worker_peak_rss"])
            + f", all processes at once {fmt_bytes(m['peak_total_rss'])}")  # fmt: skip
    re = r["scan"]["rescan"]
    say(f"rescan unchanged ({re['tracks']} tracks): {re['process_wall_seconds']:.2f} s")
    mi = r["scan"].get("rescan_1000")
    if mi:
        say(f"rescan unchanged {mi['tracks']} tracks: {mi['process_wall_seconds']:.2f} s "
            f"-> {r['results']['rescan_seconds_per_1000']:.2f} s per 1,000 tracks")  # fmt: skip
    inf = r.get("inference")
    if inf:
        say(f"ensemble alone ({inf['windows']} windows, {inf['runtime']}): "
            f"{inf['all_cores']['ms_per_window']:.2f} ms/window = {inf['all_cores']['x_realtime']:.0f}x real time "
            f"({inf['all_cores']['threads']} threads)"
            + (f"; one thread {inf['one_thread']['x_realtime']:.0f}x" if "one_thread" in inf else ""))  # fmt: skip
        a = inf["architectures"]
        if "paper_ms_per_window" in a:
            say(f"compact vs paper (Keras both, same {a['windows']} windows): compact {a['compact_ms_per_window']:.2f} "
                f"ms/window, paper {a['paper_ms_per_window']:.1f} ms/window: compact is {a['paper_over_compact']:.0f}x faster "
                f"({a['paper_over_compact_shipped_runtime']:.0f}x with the shipped runtime)")  # fmt: skip
    q = r.get("query")
    if q:
        for item in q["queries"]:
            say(f"tagger query {item['args']}: {item['process_seconds_median']:.3f} s (process, median), "
                f"{item['in_process_seconds_median'] * 1000:.0f} ms in process, {item['matches']} matches")  # fmt: skip
        say(f"  (python start-up alone, tagger --help: {q['python_startup_seconds_median']:.3f} s; {q['tracks']} tracks)")
    say("-" * 78)
    for name, ok in r["targets_met"].items():
        value = r["results"].get(name)
        verdict = "-      " if value is None else "met    " if ok else "NOT MET"
        say(f"  {verdict}  {name}: {'not measured' if value is None else value} (target {TARGETS[name]:g})")
    say("=" * 78)


def compare(new: dict, old_path: Path) -> None:
    old = json.loads(old_path.read_text())
    say(f"compared with {old_path} ({old.get('started')}):")
    for key in TARGETS:
        a, b = old.get("results", {}).get(key), new["results"].get(key)
        if a is not None and b is not None:
            say(f"  {key:<28} {a:>12.4g} -> {b:<12.4g}" + (_bytecode_note(old, new) if key == "query_seconds" else ""))


def _bytecode_note(old: dict, new: dict) -> str:
    """Where one report timed the query with the bytecode cache (``"bytecode": "cached"``, since
    `query_env`) and the other without that key (taken as the shell had it: this machine's turns the
    cache off), says so: that alone is about 50 ms of the query's time."""
    a, b = (r.get("query", {}).get("bytecode", "as the shell had it") for r in (old, new))
    return "" if a == b else f"  (bytecode: {a} -> {b}; not comparable)"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=2.0, help="hours of audio in the library (default 2)")
    ap.add_argument("--quick", action="store_true", help="about 10 minutes of audio, for development")
    ap.add_argument("--models", type=Path, default=None, help="model directory (default: the shipped models)")
    ap.add_argument("--random-models", action="store_true", help="random-weight compact models (speed does not depend on weights)")
    ap.add_argument("--jobs", type=int, default=None, help="tagger scan --jobs (default: all cores)")
    ap.add_argument("--cache", type=Path, default=None, help="cache folder (default ~/.cache/tagger/bench)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="JSON results file (default: <cache>/results/<time>.json)")
    ap.add_argument("--compare", type=Path, default=None, help="an earlier results file to compare with")
    ap.add_argument("--no-paper", action="store_true", help="skip the paper-architecture timing")
    ap.add_argument("--mirror-tracks", type=int, default=MIRROR_TRACKS)
    ap.add_argument("--query-tracks", type=int, default=QUERY_TRACKS)
    ap.add_argument("--src", type=Path, default=None,
                    help="run the scans with the tagger package of another checkout (e.g. a git worktree of an older commit)")
    ap.add_argument("--short-tracks", type=int, default=L.SHORT_TRACKS,
                    help="tracks of 15-55 s in the short-tracks library (0: skip it)")
    ap.add_argument("--short-only", action="store_true", help="only the short-tracks scan (with tags written)")
    ap.add_argument("--scan-only", action="store_true", help="only the scans: no ensemble, query or 1,000-track timings")
    args = ap.parse_args(argv)
    if args.src:
        SOURCE[:] = [str(args.src.resolve())]
    if args.scan_only:
        args.mirror_tracks = args.query_tracks = 0

    cache = (args.cache or L.default_cache_dir()).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    hours = QUICK_HOURS if args.quick else args.hours
    started = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    from tagger.model.ensemble import MANIFEST, default_model_dir, read_manifest

    models = random_models(cache) if args.random_models else (args.models or default_model_dir()).resolve()
    if not (models / MANIFEST).is_file():
        raise SystemExit(f"no model manifest in {models}: pass --models DIR, or --random-models for a speed-only run")
    manifest = read_manifest(models)

    pieces = L.plan(hours=hours, seed=args.seed)
    short = L.plan_short(tracks=args.short_tracks, seed=args.seed) if args.short_tracks else []
    lib = L.ensure_library(short if args.short_only else pieces + short, cache_dir=cache, log=say)
    small_n = max(1, round(len(pieces) * SMALL_SHARE))
    report: dict = {"started": started, "machine": machine(), "load_before": load_now(), "command": " ".join(sys.argv),
                    "source": SOURCE[0] if SOURCE else str(Path(__file__).resolve().parent.parent),
                    "library": {"hours": hours, "tracks": len(pieces), "seed": args.seed, "formats": list(L.FORMATS),
                                "cache": str(lib)},
                    "scan": {}}  # fmt: skip

    # First load after a model change exports the classifiers to ONNX (cached): not a scan's cost.
    t = time.perf_counter()
    probe = subprocess.run([sys.executable, "-c", "import sys; from tagger.model.ensemble import Ensemble; "
                            "print(getattr(Ensemble.load(sys.argv[1]), 'runtime', 'keras'))", str(models)],
                           capture_output=True, text=True, env=child_env(), cwd=child_cwd())  # fmt: skip
    report["models"] = {"dir": str(models), "version": manifest.get("version"), "architecture": manifest.get("architecture"),
                        "runtime": probe.stdout.strip() or "?", "first_load_seconds": round(time.perf_counter() - t, 2)}  # fmt: skip

    work = cache / "run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if short:
        folder = L.materialise(short, library=lib, dest=work / "library-short")
        say(f"scanning the short-tracks library (tags written): {len(short)} tracks, "
            f"{sum(p.seconds for p in short) / 60:.1f} min ...")  # fmt: skip
        run = run_scan([folder], db=work / "short.db", models=models, jobs=args.jobs, tags=True)
        report["scan"]["short"] = scan_figures(run, len(short))
        report["library"]["short_tracks"] = len(short)
    if args.short_only:
        report["finished"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        report["load_after"] = load_now()
        out = args.out or cache / "results" / f"bench-short-{started.replace(':', '')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps(report["scan"].get("short"), indent=1))
        say(f"load average {report['load_before']} before, {report['load_after']} after; results: {out}")
        return 0
    for key, chosen in (("small", pieces[:small_n]), ("full", pieces)):
        folder = L.materialise(chosen, library=lib, dest=work / f"library-{key}")
        say(f"scanning the {key} library: {len(chosen)} tracks, {sum(p.seconds for p in chosen) / 3600:.2f} h ...")
        run = run_scan([folder], db=work / f"{key}.db", models=models, jobs=args.jobs, tags=True)
        report["scan"][key] = scan_figures(run, len(chosen))
        if key == "full":
            say("rescanning the unchanged library ...")
            report["scan"]["rescan"] = scan_figures(run_scan([folder], db=work / "full.db", models=models, jobs=args.jobs), len(chosen))
            if args.mirror_tracks:
                mirror = hardlink_mirror(pieces, source=folder, dest=work / "mirror", tracks=args.mirror_tracks)
                say(f"{args.mirror_tracks} hard links to the same files: first scan (copies of known results), then rescan ...")
                run_scan([mirror], db=work / "full.db", models=models, jobs=args.jobs)
                report["scan"]["rescan_1000"] = scan_figures(
                    run_scan([mirror], db=work / "full.db", models=models, jobs=args.jobs), args.mirror_tracks)
    if not args.scan_only:
        say("timing the ensemble alone ...")
        report["inference"] = measure_inference(models, [work / "library-full" / p.relpath for p in pieces],
                                                windows=INFERENCE_WINDOWS, arch_windows=ARCH_WINDOWS, paper=not args.no_paper)  # fmt: skip
    if args.query_tracks:
        say(f"timing tagger query on {args.query_tracks:,} tracks ...")
        qdb = synth_database(cache / f"query-{args.query_tracks}-{args.seed}.db", tracks=args.query_tracks, seed=args.seed)
        report["query"] = measure_query(qdb)
        report["query"]["tracks"] = args.query_tracks
    report["finished"] = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    report["load_after"] = load_now()

    full = report["scan"]["full"]
    results = {
        "scan_x_realtime": full["x_realtime"],
        "ensemble_x_realtime": report["inference"]["all_cores"]["x_realtime"] if "inference" in report else None,
        "peak_memory_bytes": max(report["scan"][k]["memory"]["peak_total_rss"] for k in ("small", "full")),
        "rescan_seconds_per_1000": round(report["scan"]["rescan_1000"]["process_wall_seconds"] * 1000 / args.mirror_tracks, 3)
        if "rescan_1000" in report["scan"] else None,
        "query_seconds": max(q["process_seconds_median"] for q in report["query"]["queries"]) if "query" in report else None,
    }  # fmt: skip
    report["results"] = results
    report["targets_met"] = {
        k: (v is not None and (v >= TARGETS[k] if k.endswith("x_realtime") else v < TARGETS[k])) for k, v in results.items()
    }
    out = args.out or cache / "results" / f"bench-{started.replace(':', '')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print_report(report)
    say(f"results: {out}")
    if args.compare:
        compare(report, args.compare)
    for copy in ("mirror", "library-small", "library-full"):  # the copies; the databases stay for inspection
        shutil.rmtree(work / copy, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
