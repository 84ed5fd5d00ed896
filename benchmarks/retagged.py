"""Rescan of a library whose tags another program rewrote: ``python -m benchmarks.retagged``.

1. Makes (once, cached) ``--tracks`` files of ``--seconds`` each, FLAC, MP3 and M4A (AAC) in turn,
   encoded by ``ffmpeg`` at 44.1 kHz stereo from a tone and pink noise (the analysis costs the same
   whatever the audio).
2. Times `tagger.fingerprint.content_hash` and `tagger.tags.audio_digest` on each, the file in the
   page cache as the scan's worker finds it after reading it whole: the digest is the extra cost of
   an analysed file.
3. Runs the real ``tagger scan`` (tags written, fresh database, shipped models unless ``--models``)
   on a copy, rewrites every file's tags with mutagen as a tag editor would (a new title, a 77 kB
   cover), and times the rescan. ``--src DIR`` runs the scans from another checkout (the code
   before this change re-analyses every retagged file). ``--move``: each file is also moved, as
   beets' path formats do it, to ``Artist N/Album/NN title.ext`` (the code before the retagged
   move re-analyses every file and marks its old track missing).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: python benchmarks/retagged.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench as B  # noqa: E402

FORMATS = ("flac", "mp3", "m4a")
CODECS = {"flac": ["-c:a", "flac"], "mp3": ["-c:a", "libmp3lame", "-b:a", "192k"], "m4a": ["-c:a", "aac", "-b:a", "192k"]}
COVER = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 300


def make_files(folder: Path, *, tracks: int, seconds: float) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(tracks):
        ext = FORMATS[i % len(FORMATS)]
        path = folder / f"track-{i:03d}-{seconds:g}s.{ext}"
        if not path.exists():
            tmp = path.with_name("." + path.name)
            subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y",
                            "-f", "lavfi", "-i", f"sine=frequency={110 * (1 + i % 7)}:sample_rate=44100:duration={seconds}",
                            "-f", "lavfi", "-i", f"anoisesrc=d={seconds}:c=pink:r=44100:a=0.05:seed={i}",
                            "-filter_complex", "amerge=inputs=2", "-ac", "2", *CODECS[ext], "-f", {"m4a": "mp4"}.get(ext, ext),
                            str(tmp)], check=True)  # fmt: skip
            tmp.rename(path)
        out.append(path)
    return out


def retag(path: Path, title: str) -> None:
    """A tag editor's save: a new title and a cover (mutagen, as Picard and beets use it)."""
    import mutagen
    from mutagen.flac import Picture
    from mutagen.id3 import APIC, TIT2
    from mutagen.mp4 import MP4Cover

    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    kind = type(f).__name__
    if kind == "FLAC":
        f.tags["TITLE"] = title
        pic = Picture()
        pic.type, pic.mime, pic.data = 3, "image/png", COVER
        f.add_picture(pic)
    elif kind == "MP3":
        f.tags.add(TIT2(encoding=3, text=[title]))
        f.tags.add(APIC(encoding=3, mime="image/png", type=3, desc="front", data=COVER))
    else:
        f.tags["\xa9nam"] = [title]
        f.tags["covr"] = [MP4Cover(COVER, imageformat=MP4Cover.FORMAT_PNG)]
    f.save()


def digest_costs(files: list[Path], repeats: int = 5) -> dict[str, dict[str, float]]:
    """Per format: median milliseconds of the content hash and of the audio digest, and MB per file."""
    from tagger.fingerprint import content_hash
    from tagger.tags import audio_digest

    per: dict[str, dict[str, list[float]]] = {}
    for path in files:
        content_hash(path)  # in the page cache, as after the worker's read
        got = per.setdefault(path.suffix[1:], {"content_hash": [], "audio_digest": [], "mb": []})
        for _ in range(repeats):
            t = time.perf_counter()
            content_hash(path)
            got["content_hash"].append(time.perf_counter() - t)
            t = time.perf_counter()
            audio_digest(path)
            got["audio_digest"].append(time.perf_counter() - t)
        got["mb"].append(path.stat().st_size / 1e6)
    return {ext: {k: statistics.median(v) * (1 if k == "mb" else 1e3) for k, v in got.items()} for ext, got in per.items()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tracks", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=120.0, help="length of each file (default 120)")
    ap.add_argument("--jobs", type=int, default=None, help="tagger scan --jobs (default: all cores)")
    ap.add_argument("--models", type=Path, default=None, help="model directory (default: the shipped models)")
    ap.add_argument("--src", type=Path, default=None, help="run the scans from this checkout (older code)")
    ap.add_argument("--cache", type=Path, default=None, help="cache folder (default ~/.cache/tagger/bench)")
    ap.add_argument("--move", action="store_true", help="move each retagged file to another folder and name")
    args = ap.parse_args(argv)
    if args.src:
        B.SOURCE[:] = [str(args.src.resolve())]
    from tagger.model.ensemble import default_model_dir

    models = (args.models or default_model_dir()).resolve()
    cache = (args.cache or B.L.default_cache_dir()).expanduser().resolve()
    files = make_files(cache / "retagged-v1", tracks=args.tracks, seconds=args.seconds)
    B.say(f"{len(files)} files of {args.seconds:g} s, {sum(p.stat().st_size for p in files) / 1e6:.0f} MB")
    for ext, c in digest_costs(files).items():
        B.say(f"  {ext}: {c['mb']:.1f} MB per file: content hash {c['content_hash']:.1f} ms, "
              f"audio digest {c['audio_digest']:.1f} ms (files in the page cache, median)")  # fmt: skip
    work = cache / "run-retagged"
    shutil.rmtree(work, ignore_errors=True)
    music = work / "music"
    music.mkdir(parents=True)
    for p in files:
        shutil.copy(p, music / p.name)
    source = B.SOURCE[0] if B.SOURCE else "this checkout"
    first = B.run_scan([music], db=work / "lib.db", models=models, jobs=args.jobs, tags=True)
    s = first["summary"]
    B.say(f"first scan ({source}): {s['scanned']} analysed in {first['process_wall_seconds']:.1f} s")
    for i, p in enumerate(sorted(music.iterdir())):
        retag(p, "Retagged by another program")
        if args.move:  # beets' path formats: $albumartist/$album/$track $title
            dst = music / f"Artist {i % 4}" / "Album" / f"{i:02d} Retagged{p.suffix}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            p.rename(dst)
    again = B.run_scan([music], db=work / "lib.db", models=models, jobs=args.jobs, tags=True)
    s = again["summary"]
    B.say(f"rescan after every file was retagged{' and moved' if args.move else ''} ({source}): {s['scanned']} "
          f"analysed, {s.get('retagged', 0)} kept as retagged, {s['moved']} moved, {s['missing']} missing, "
          f"{s['skipped']} skipped, in {again['process_wall_seconds']:.1f} s")  # fmt: skip
    shutil.rmtree(music, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
