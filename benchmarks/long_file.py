"""Peak memory of a scan of one long file: ``python -m benchmarks.long_file --hours 3``.

Makes (once, into ``--dir``) a stereo 44.1 kHz FLAC of low-level pink noise with ffmpeg's
``anoisesrc`` (about 315 MB an hour; 3 hours take about a minute to encode), optionally remuxed into Matroska (``--container mka``: decoded through ffmpeg instead of
libsndfile), scans it with one worker process and the shipped models into a fresh database, and
prints the peak resident memory of the worker and of the main process (``ScanSummary.peak_rss``).
Memory that grows with the file's length shows as a larger worker peak for more hours; the README
(*Audio and features*) records the figures measured.
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
import time
from pathlib import Path


def make_file(folder: Path, hours: float, container: str) -> Path:
    flac = folder / f"noise-{hours:g}h.flac"
    if not flac.exists():
        part = flac.with_name("." + flac.name)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi",
                        "-i", f"anoisesrc=d={hours * 3600:g}:c=pink:r=44100:a=0.02", "-ac", "2", "-c:a", "flac",
                        "-f", "flac", str(part)], check=True)  # fmt: skip
        part.rename(flac)
    if container == "flac":
        return flac
    out = flac.with_suffix(f".{container}")
    if not out.exists():
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(flac), "-c", "copy", str(out)], check=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=3.0)
    parser.add_argument("--container", choices=("flac", "mka"), default="flac")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "tagger-long-file")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    path = make_file(args.dir, args.hours, args.container)

    from tagger.db.session import open_database
    from tagger.library.scan import scan
    from tagger.model.ensemble import Ensemble

    with tempfile.TemporaryDirectory() as tmp:
        db = open_database(Path(tmp) / "library.db")
        try:
            t = time.perf_counter()
            summary = scan([path], db=db, analyser=Ensemble.load(), jobs=1)
            wall = time.perf_counter() - t
        finally:
            db.close()
    mib = 2**20
    workers = summary.peak_rss.get("workers") or [0]
    print(f"{path.name}: {args.hours:g} h, {summary.scanned} scanned, {summary.failed} failed, {wall:.1f} s")
    print(f"peak RSS: worker {max(workers) / mib:.0f} MiB, main process {summary.peak_rss.get('main', 0) / mib:.0f} MiB")


if __name__ == "__main__":
    main()
