"""Peak memory of ``tagger query`` on a large library: ``python -m benchmarks.query_memory``.

Synthesises (once, cached) a library database of ``--tracks`` analysed tracks (default 200,000;
`benchmarks.bench.synth_database`), then runs the real ``tagger query --format F`` command for each
format, its output written to a file, and prints the peak resident memory of the process (its
``ru_maxrss``), its wall time, and the size and SHA-256 of its output (to compare the bytes written
by two versions: ``--src OTHER_CHECKOUT`` runs the commands from another checkout).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/query_memory.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench  # noqa: E402
from benchmarks import library as L  # noqa: E402

TRACKS = 200_000
FORMATS = ("json", "paths")


def measure(db: Path, fmt: str) -> dict:
    """One ``tagger query --format fmt`` process: its peak RSS, wall time and output."""
    with tempfile.TemporaryFile() as out:
        t = time.perf_counter()
        proc = subprocess.Popen(bench.tagger_cmd("query", "--format", fmt, "--db", str(db)), stdout=out,
                                stderr=subprocess.PIPE, env=bench.child_env(), cwd=bench.child_cwd())  # fmt: skip
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"tagger query --format {fmt} failed: {err.decode(errors='replace')[-500:]}")
        out.seek(0)
        digest, size = hashlib.sha256(), 0
        while block := out.read(1 << 20):
            digest.update(block)
            size += len(block)
    return {"format": fmt, "peak_rss_bytes": usage.ru_maxrss * 1024, "seconds": round(wall, 3),
            "output_bytes": size, "output_sha256": digest.hexdigest()}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.query_memory", description=__doc__.split("\n\n")[0])
    ap.add_argument("--tracks", type=int, default=TRACKS, help=f"tracks in the library (default {TRACKS:,})")
    ap.add_argument("--formats", default=",".join(FORMATS), help="comma-separated query formats (default json,paths)")
    ap.add_argument("--cache", type=Path, default=None, help="cache folder (default ~/.cache/tagger/bench)")
    ap.add_argument("--src", type=Path, default=None, help="run tagger from this checkout instead")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    if args.src:
        bench.SOURCE.append(str(args.src.resolve()))
    cache = (args.cache or L.default_cache_dir()).expanduser().resolve()
    cache.mkdir(parents=True, exist_ok=True)
    db = bench.synth_database(cache / f"query-{args.tracks}.db", tracks=args.tracks)
    figures = [measure(db, fmt) for fmt in args.formats.split(",")]
    if args.json:
        print(json.dumps({"tracks": args.tracks, "queries": figures}, indent=1))
    for f in figures if not args.json else ():
        print(f"tagger query --format {f['format']} on {args.tracks:,} tracks: peak RSS {bench.fmt_bytes(f['peak_rss_bytes'])}, "
              f"{f['seconds']:.1f} s, {bench.fmt_bytes(f['output_bytes'])} written (sha256 {f['output_sha256'][:16]})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
