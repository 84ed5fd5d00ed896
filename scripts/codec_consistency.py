"""Do the tags of a track depend on how it was encoded? The same synthetic tracks as lossless WAV
and as the lossy files of a music library (MP3, AAC, Opus, Vorbis at common bitrates), each tagged
through the whole pipeline a scan uses (decode, resample, windows, ensemble, track rule).

The tracks are those that choose the track rule (`tagger.model.calibrate.synth_tracks`: 3 to 15
windows of one to six families from a note pool), written at 44.1 kHz; every encoding is made
with ffmpeg. Printed: per encoding, the share of tracks whose tags equal the WAV file's, the
families added and dropped per track against it, and the tags' Jaccard/precision/recall against
the truth (what the model heard in training plays no part in the agreement, which is the point).

    .venv/bin/python scripts/codec_consistency.py --pool ~/.cache/tagger/train/pool-valid-f083d9f76858ac88 \\
        --tracks 100 --out ~/.cache/tagger/codecs
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np

ENCODINGS = {
    # name: (extension, ffmpeg arguments)
    "wav": ("wav", ["-c:a", "pcm_s16le"]),
    "mp3-128k": ("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]),
    "aac-128k": ("m4a", ["-c:a", "aac", "-b:a", "128k"]),
    "opus-96k": ("opus", ["-c:a", "libopus", "-b:a", "96k"]),
    "vorbis-q3": ("ogg", ["-c:a", "libvorbis", "-q:a", "3"]),
    "mp3-64k": ("mp3", ["-c:a", "libmp3lame", "-b:a", "64k"]),
}
RATE = 44_100


def write_tracks(pool_dir: Path, out: Path, *, tracks: int, seed: int) -> tuple[list[tuple[Path, np.ndarray]], list[str]]:
    """The synthetic tracks as 44.1 kHz float WAV sources in `out` with their truth labels, and the
    pool's family order."""
    import soundfile as sf
    import soxr

    from tagger import constants as C
    from tagger.model import synth as S
    from tagger.model.calibrate import synth_tracks

    pool = S.NotePool(pool_dir)
    out.mkdir(parents=True, exist_ok=True)
    made = []
    for i, (windows, label) in enumerate(synth_tracks(pool, tracks=tracks, seed=seed)):
        audio = soxr.resample(windows.reshape(-1).astype(np.float64), C.SAMPLE_RATE, RATE)
        peak = float(np.max(np.abs(audio))) or 1.0
        path = out / f"track{i:04d}.src.wav"
        sf.write(path, (audio * min(1.0, 0.9 / peak)).astype(np.float32), RATE, subtype="FLOAT")
        made.append((path, label.astype(bool)))
    return made, list(pool.families)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pool", type=Path, required=True, help="a note pool (pool-valid-<signature> in the training cache)")
    ap.add_argument("--out", type=Path, required=True, help="a folder for the tracks and their encodings")
    ap.add_argument("--models", type=Path, help="model directory (default: the shipped models)")
    ap.add_argument("--tracks", type=int, default=100)
    ap.add_argument("--seed", type=int, default=11)
    args = ap.parse_args(argv)

    from tagger.library.assemble import analyse_track
    from tagger.model.ensemble import Ensemble

    ensemble = Ensemble.load(args.models)
    sources, pool_families = write_tracks(args.pool, args.out, tracks=args.tracks, seed=args.seed)
    columns = [pool_families.index(f) for f in ensemble.families]
    tags: dict[str, list[set[str]]] = {name: [] for name in ENCODINGS}
    for src, _label in sources:
        for name, (ext, codec) in ENCODINGS.items():
            dst = src.with_name(src.name.replace(".src.wav", f".{name}.{ext}"))
            if not dst.exists() or dst.stat().st_mtime < src.stat().st_mtime:  # (made by an earlier run: kept)
                subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), *codec, str(dst)], check=True)
            tags[name].append(set(analyse_track(dst, ensemble).instruments))
    truth = [{ensemble.families[j] for j, c in enumerate(columns) if label[c]} for _src, label in sources]

    print(f"{len(sources)} tracks, models {ensemble.version}")
    print("| encoding | same tags as WAV | families added / dropped per track vs WAV | Jaccard | precision | recall |")
    print("|---|---|---|---|---|---|")
    for name in ENCODINGS:
        got, ref = tags[name], tags["wav"]
        same = np.mean([g == r for g, r in zip(got, ref)])
        added = np.mean([len(g - r) for g, r in zip(got, ref)])
        dropped = np.mean([len(r - g) for g, r in zip(got, ref)])
        jac = np.mean([len(g & t) / len(g | t) if g | t else 1.0 for g, t in zip(got, truth)])
        tp = sum(len(g & t) for g, t in zip(got, truth))
        prec = tp / max(1, sum(len(g) for g in got))
        rec = tp / max(1, sum(len(t) for t in truth))
        print(f"| {name} | {same:.1%} | {added:.2f} / {dropped:.2f} | {jac:.3f} | {prec:.3f} | {rec:.3f} |")
    print("\nfamilies added / dropped against WAV, over all tracks (right: of them, in the truth)")
    for name in list(ENCODINGS)[1:]:
        moved = []
        for family in ensemble.families:
            pairs = list(zip(tags[name], tags["wav"], truth))
            added = [t for g, r, t in pairs if family in g - r]
            dropped = [t for g, r, t in pairs if family in r - g]
            if added or dropped:
                moved.append(f"{family} +{len(added)} ({sum(family in t for t in added)} right) "
                             f"-{len(dropped)} ({sum(family in t for t in dropped)} right)")
        print(f"{name}: {'; '.join(moved) or 'none'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
