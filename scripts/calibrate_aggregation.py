"""Choose the per-track aggregation rule of a trained run again, and carry it into the shipped models.

`tagger train` calibrates the rule once, on 300 synthetic tracks of the validation instruments
(`tagger.model.calibrate`; ``--aggregation-tracks``). This script does it again for an existing
run, with the rule of today and more tracks (F0.5 is flat near its best, so the choice needs them
to be stable: of the rules within one bootstrap standard error of the best F0.5 the most precise is
chosen, and the F0.5-best rule is shown beside it), and checks the choice on tracks the choice never saw: another draw of tracks of the
validation instruments (``--seed`` + 1) and, with ``--left-out POOL``, tracks of a sample library
the run never heard. ``--drum-beats`` adds tracks drawn the same way with a drum kit of their pool
playing a beat under every window, as under most music (drums are no family: every tag they add is
wrong). With ``--into DIR`` the rule is written into a production fit that took the run as its
``--reference`` (the shipped models), as `tagger train --reference` would have; ``--version NAME``
renames those models, since they now give other results (a library scanned before is rescanned:
its tracks are stale either way, as the manifest's hash changes). Without ``--into`` the run's own
manifest takes the chosen rule; ``--dry-run`` only prints the figures and writes nothing.

    .venv/bin/python scripts/calibrate_aggregation.py ~/.cache/tagger/runs/trunk-lo-harmonic \\
        --pool ~/.cache/tagger/train/pool-valid-739e4d315784665c \\
        --left-out ~/.cache/tagger/train/pool-left-out-739e4d315784665c --tracks 1000 --into models \\
        --version trunk-harmonic-2 --drum-beats --compare 0.85
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tagger.model import synth as S
from tagger.model.calibrate import calibrate_aggregation, score_tracks, track_figures
from tagger.model.ensemble import Ensemble, read_manifest, write_manifest

COLUMNS = ("fbeta", "precision", "recall", "jaccard", "emr", "wrong_per_track")


def _row(name: str, fig: dict) -> str:
    return f"| {name} | {fig['quantile']:g} | {fig['min_windows']} | " + " | ".join(f"{fig[c]:.3f}" for c in COLUMNS) + " |"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a model directory trained on held-out instruments")
    ap.add_argument("--pool", type=Path, required=True, help="the run's validation note pool (pool-valid-<signature>)")
    ap.add_argument("--left-out", type=Path, help="the note pool of the source the run left out (pool-left-out-<signature>)")
    ap.add_argument("--compare", type=float, action="append", default=[], metavar="Q",
                    help="also show the rule of this quantile (min_windows 1), e.g. an earlier one; repeatable")
    ap.add_argument("--drum-beats", action="store_true", help="also check tracks with a drum beat under every window")
    ap.add_argument("--tracks", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--into", type=Path, help="a production model directory whose reference is the run")
    ap.add_argument("--version", help="with --into: the production models' new version name")
    ap.add_argument("--dry-run", action="store_true", help="print the figures only: write no manifest")
    args = ap.parse_args(argv)
    if args.dry_run and (args.into is not None or args.version):
        ap.error("--dry-run writes nothing: it does not go with --into or --version")

    if args.into is not None:  # refuse before any work
        version = read_manifest(args.run)["version"]
        reference = read_manifest(args.into).get("reference", {}).get("version")
        if reference != version:
            print(f"error: {args.into} was not fitted with {args.run} ({version}) as its reference (it names {reference})", file=sys.stderr)
            return 1
    calib = calibrate_aggregation(args.run, args.pool, tracks=args.tracks, seed=args.seed, write=not args.dry_run)
    ensemble = Ensemble.load(args.run)
    rules = {"chosen": calib["best"], "F0.5-best": calib["best"]["fbeta_best"], "Jaccard-best": calib["jaccard_best"]}
    rules.update({f"quantile {q:g}": {"quantile": q, "min_windows": 1} for q in args.compare})
    print(f"| rule | quantile | min windows | {' | '.join(COLUMNS)} |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    valid = S.NotePool(args.pool)
    plain = S.SynthSettings()
    checks = [(f"{args.tracks} calibration tracks (seed {args.seed})", valid, args.seed, plain),
              (f"{args.tracks} other tracks of the validation instruments (seed {args.seed + 1})", valid, args.seed + 1, plain)]  # fmt: skip
    if args.left_out is not None:
        checks.append((f"{args.tracks} tracks of the left-out source (seed {args.seed})", S.NotePool(args.left_out), args.seed, plain))
    if args.drum_beats:
        checks += [(f"{what}, over drum beats", pool, seed, S.SynthSettings(drum_prob=1.0)) for what, pool, seed, _ in checks[1:]]
    for what, pool, seed, settings in checks:
        scored = score_tracks(ensemble, pool, tracks=args.tracks, seed=seed, settings=settings)
        for name, rule in rules.items():
            fig = track_figures(scored, families=ensemble.families, thresholds=ensemble.thresholds,
                                quantile=rule["quantile"], min_windows=rule["min_windows"])  # fmt: skip
            print(_row(f"{what}: {name}", fig))
    if args.into is not None:
        manifest = read_manifest(args.into)
        manifest["aggregation"] = dict(read_manifest(args.run)["aggregation"])
        manifest["reference"]["aggregation_calibration"] = calib
        if args.version:
            manifest["version"] = args.version
        write_manifest(args.into, manifest)
        print(f"aggregation {manifest['aggregation']} written into {args.into} ({manifest['version']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
