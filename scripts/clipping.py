"""Do loud masters get wrong tags? Clean excerpts, then the same mastered loud: a gain of +6, +12
or +18 dB, then a hard clip at 0 dBFS or a soft limiter (tanh), each tagged through the whole
pipeline a scan uses (decode, resample, windows, ensemble, track rule: `analyse_track`).

The excerpts are the benchmark library's short pieces (`benchmarks.library.compose`, seed 11, cut
to ``--seconds``), rendered by ``fluidsynth`` from the training SoundFonts (FluidR3_GM and
MuseScore_General in turn) and peak-normalised to -1 dBFS as the benchmark's are: per piece, the
multi-instrument mix and one of its parts alone (a solo). Each version is written as a 16-bit WAV at
48 kHz. Printed: per version, the tracks that gain a family the clean file's tags lack (and one the
piece does not play: a wrong tag), the families lost, precision and recall against what plays;
per family, how often it is added; and the mean shift of the window scores against the clean file.

    .venv/bin/python scripts/clipping.py --pieces 30 --out ~/.cache/tagger/clipping
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: benchmarks is a sibling package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

VERSIONS = [("clean", None, 0)] + [(f"{k}+{g}", k, g) for k in ("clip", "tanh") for g in (6, 12, 18)]
"""(name, mastering, gain in dB): the clean file and its loud masters."""


def excerpts(*, pieces: int, seconds: float, seed: int = 11) -> list[tuple[str, object]]:
    """(kind, piece) pairs: each piece's mix ("mix") and one of its parts alone ("solo")."""
    from benchmarks import library as L

    out = []
    for i in range(pieces):
        p = dataclasses.replace(L.compose(i, seed=seed, short=True), seconds=seconds)
        out.append(("mix", p))
        part = random.Random(i).choice([q for q in p.parts if q.family != "drums"])
        part = dataclasses.replace(part, sections=tuple(True for _ in part.sections))
        out.append(("solo", dataclasses.replace(p, parts=(part,))))
    return out


def render(piece, cache: Path) -> np.ndarray:
    """The piece at 48 kHz stereo float32 (`benchmarks.library.render_audio`), peak-normalised to -1 dBFS,
    cached in `cache` under its SoundFont, index, length, parts and families (a run with another
    ``--seconds`` in the same folder was given the renders of the run before)."""
    from benchmarks import library as L
    from tagger.data.render import default_soundfonts

    f = cache / f"clean-{piece.soundfont}-{piece.index}-{piece.seconds:g}s-{len(piece.parts)}-{'_'.join(piece.families)}.npy"
    if f.exists():
        return np.load(f)
    font = default_soundfonts().get(piece.soundfont)
    if font is None:  # (not the benchmark's fallback to another SoundFont: the figures name both)
        raise SystemExit(f"the SoundFont {piece.soundfont!r} is not installed (Debian: fluid-soundfont-gm, "
                         "musescore-general-soundfont)")  # fmt: skip
    audio = L.render_audio(piece, soundfonts={piece.soundfont: font})
    peak = np.abs(audio).max() if len(audio) else np.float32(0)
    audio = audio * np.float32(10 ** (-1 / 20) / peak) if peak > 0 else audio
    np.save(f, audio)
    return audio


def measure(args) -> dict:
    import soundfile as sf

    from tagger import constants as C
    from tagger.library.assemble import analyse_track
    from tagger.model.ensemble import Ensemble
    from tagger.model.mastering import master

    ens = Ensemble.load(args.models)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for kind, p in excerpts(pieces=args.pieces, seconds=args.seconds):
        audio = render(p, args.out)
        for name, k, g in VERSIONS:
            path = args.out / f"{kind}-{p.index}-{name}.wav"
            sf.write(path, master(audio, k, g), C.RENDER_SAMPLE_RATE, subtype="PCM_16")
            r = analyse_track(str(path), ens)
            path.unlink()
            rows.append({"kind": kind, "index": p.index, "variant": name, "truth": list(p.families),
                         "found": r.instruments, "scores": r.scores,
                         "window_scores": np.nan_to_num(r.window_scores, nan=-1).round(4).tolist()})  # fmt: skip
        print(kind, p.index, p.families, [(x["variant"], x["found"]) for x in rows[-len(VERSIONS):]], flush=True)
    return {"families": list(ens.families), "thresholds": ens.thresholds.tolist(), "rows": rows}


def retag(window_scores: list, *, families: list[str], thresholds: np.ndarray, quantile: float, margin: float) -> list[str]:
    """The track rule on stored window scores (silent rows -1), each threshold raised by `margin`."""
    w = np.array(window_scores, dtype=np.float32).reshape(-1, len(families))
    w = w[(w >= 0).all(axis=1)]
    if not len(w):
        return []
    score = np.quantile(w, quantile, axis=0) if len(w) > 1 else w[0]
    return [f for f, s, t in zip(families, score, thresholds) if s >= t + margin]


def summarise(data: dict, *, margin: float = 0.0) -> None:
    """Print the table; `margin` > 0: the loud versions tagged again with every threshold raised by it
    (what a more cautious rule for tracks known to be loud would give), the clean files as they are."""
    from tagger.aggregate import aggregation_params
    from tagger.model.ensemble import default_model_dir, read_manifest

    fams = data["families"]
    if margin:
        quantile = aggregation_params(read_manifest(default_model_dir()).get("aggregation"))["quantile"]
        for r in data["rows"]:
            if r["variant"] != "clean":
                r["found"] = retag(r["window_scores"], families=fams, thresholds=np.array(data["thresholds"]),
                                   quantile=quantile, margin=margin)  # fmt: skip
    by = {}
    for r in data["rows"]:
        by.setdefault((r["kind"], r["index"]), {})[r["variant"]] = r
    tracks = list(by.values())
    print(f"{len(tracks)} excerpts ({sum(1 for t in by if t[0] == 'solo')} solo)")
    print("version   new family  new wrong family  added/lost per track  precision  recall  mean window shift (abs)")
    for name, _k, _g in VERSIONS:
        new = wrong = added = lost = tp = fp = fn = 0
        added_by: dict[str, int] = {}
        shift, absshift = [], []
        for t in tracks:
            clean, v = set(t["clean"]["found"]), t[name]
            found, truth = set(v["found"]), set(v["truth"])
            plus = found - clean
            new += bool(plus)
            wrong += bool(plus - truth)
            added += len(plus)
            lost += len(clean - found)
            tp, fp, fn = tp + len(found & truth), fp + len(found - truth), fn + len(truth - found)
            for f in plus - truth:
                added_by[f] = added_by.get(f, 0) + 1
            a, b = np.array(t["clean"]["window_scores"]), np.array(v["window_scores"])
            ok = (a >= 0).all(axis=1) & (b >= 0).all(axis=1)
            shift.append((b - a)[ok])
            absshift.append(np.abs(b - a)[ok])
        n = len(tracks)
        s, sa = np.concatenate(shift), np.concatenate(absshift)
        print(f"{name:9} {new / n:10.0%} {wrong / n:17.0%} {added / n:9.2f} / {lost / n:.2f} "
              f"{tp / max(tp + fp, 1):14.3f} {tp / max(tp + fn, 1):7.3f}  ({sa.mean():.3f})")  # fmt: skip
        print("          wrong families added: " + ", ".join(f"{f} {c}" for f, c in sorted(added_by.items(), key=lambda x: -x[1])))
        print("          window shift per family: " + ", ".join(f"{f} {m:+.3f}" for f, m in zip(fams, s.mean(axis=0))))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True, help="a folder for the renders and results.json")
    ap.add_argument("--models", type=Path, help="model directory (default: the shipped models)")
    ap.add_argument("--pieces", type=int, default=30, help="pieces (each gives a mix and a solo)")
    ap.add_argument("--seconds", type=float, default=16.0, help="length of each excerpt (4 windows)")
    ap.add_argument("--summarise", action="store_true", help="print the summary of the results.json in --out")
    ap.add_argument("--margin", type=float, default=0.0,
                    help="with --summarise: tag the loud versions again with every threshold raised by this much")
    args = ap.parse_args(argv)
    results = args.out / "results.json"
    if not args.summarise:
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(measure(args)))
    summarise(json.loads(results.read_text()), margin=args.margin)
    return 0


if __name__ == "__main__":
    sys.exit(main())
