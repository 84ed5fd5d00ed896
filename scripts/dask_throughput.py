"""Throughput of `tagger scan --backend dask` per worker core, on generated audio.

Starts a Dask scheduler and ``--workers`` single-threaded worker processes on loopback, writes
``--files`` FLAC files (44.1 kHz stereo, ``--seconds`` long: tone mixtures in noise), warms the
workers up (each loads the model once), then times one scan of the files through the cluster into
a SQLite database (tags not written; ``--music DIR`` scans that folder instead) and prints files/s and times real time, in total and per
worker core. Without ``--models`` it uses a random-weight compact ensemble of all ten families
(the shipped models' architecture: the same compute, meaningless scores).

    .venv/bin/python scripts/dask_throughput.py --files 16 --seconds 60 --workers 1
    .venv/bin/python scripts/dask_throughput.py --music ~/.cache/tagger/bench/library-v1 --workers 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _random_models(out: Path) -> Path:
    from tagger.cli.app import quiet_tensorflow

    quiet_tensorflow()
    import keras

    from tagger.instruments import FAMILIES
    from tagger.model import architectures, store

    keras.utils.set_random_seed(0)
    manifest = store.new_manifest(architecture="compact", recipe="bench-random",
                                  feature_config=architectures.feature_config("compact"), version="bench-random-1")  # fmt: skip
    for fam in FAMILIES:
        store.save_classifier(out, manifest, fam, architectures.build("compact"), threshold=0.5)
    return out


def _write_files(folder: Path, n: int, seconds: float) -> None:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    sr = 44_100
    t = np.arange(int(seconds * sr)) / sr
    for i in range(n):
        freqs = rng.uniform(60, 5000, size=3)
        y = sum(np.sin(2 * np.pi * f * t) for f in freqs) * 0.2 + rng.normal(0, 0.02, size=len(t))
        sf.write(str(folder / f"track{i:03d}.flac"), np.stack([y, y * 0.8], axis=1).astype(np.float32), sr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--workers", type=int, default=1, help="single-threaded worker processes")
    ap.add_argument("--models", type=Path, default=None)
    ap.add_argument("--music", type=Path, default=None,
                    help="scan this folder (read only, tags not written) instead of generated files")  # fmt: skip
    args = ap.parse_args()

    from tagger.db.session import open_database
    from tagger.library.distributed import AnalyserSpec, DaskBackend
    from tagger.library.scan import scan
    from tagger.model.ensemble import Ensemble

    tmp = Path(tempfile.mkdtemp(prefix="tagger-dask-bench-"))
    models = args.models or _random_models(tmp / "models")
    music, warm = args.music or tmp / "music", tmp / "warm"
    warm.mkdir()
    if args.music is None:
        music.mkdir()
        _write_files(music, args.files, args.seconds)
    _write_files(warm, 1, 5.0)
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    threads1 = {"OMP_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1"}
    env = dict(os.environ, **threads1)
    py = sys.executable
    procs = [subprocess.Popen([py, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port),
                               "--no-dashboard"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]  # fmt: skip
    for i in range(args.workers):
        procs.append(subprocess.Popen([py, "-m", "distributed.cli.dask_worker", address, "--nworkers", "1",
                                       "--nthreads", "1", "--no-nanny", "--no-dashboard", "--host", "127.0.0.1",
                                       "--local-directory", str(tmp / f"w{i}")],
                                      env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
    try:
        from distributed import Client

        client = Client(address, timeout=60, set_as_default=False)
        client.wait_for_workers(args.workers, timeout=120)
        analyser = Ensemble.load(models)
        backend = DaskBackend(client, spec=AnalyserSpec(model_dir=str(models)))
        db = open_database(tmp / "lib.db")
        scan([warm], db=db, analyser=analyser, backend=backend)  # every worker loads the model
        t0 = time.monotonic()
        summary = scan([music], db=db, analyser=analyser, backend=backend)
        wall = time.monotonic() - t0
        db.close()
        client.close()
    finally:
        for p in reversed(procs):
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    assert summary.failed == 0 and summary.scanned > 0, summary
    cores, files = args.workers, summary.scanned
    out = {
        "music": str(args.music) if args.music else f"{files} generated FLAC files of {args.seconds:g} s",
        "files": files, "worker_cores": cores, "wall_seconds": round(wall, 2),
        "files_per_second": round(files / wall, 3), "realtime_factor": round(summary.audio_seconds / wall, 1),
        "files_per_second_per_core": round(files / wall / cores, 3),
        "realtime_factor_per_core": round(summary.audio_seconds / wall / cores, 1),
        "model": analyser.version, "cpu": os.cpu_count(), "audio_seconds": round(summary.audio_seconds, 1),
        "stage_seconds": {k: round(v, 2) for k, v in summary.stage_seconds.items()},
        "worker_peak_rss_mb": [round(b / 2**20) for b in summary.peak_rss.get("workers", [])],
        "runtime": getattr(analyser, "runtime", "?"),
    }  # fmt: skip
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
