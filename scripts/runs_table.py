"""Print the README's runs table (Markdown) from the manifests of trained model directories.

Every figure comes from a manifest written by ``tagger train``: the held-out validation (per-family
AUC over protocol mixtures, music-like mixtures and single notes of the validation instruments; the
thresholded protocol Jaccard/EMR, solo and music-like Jaccard, drums alone), the left-out source's
(``--leave-out``), the parameters and the training time. A production fit (``--all-instruments
--reference DIR``) shows its reference run's held-out figures, marked as such.

    .venv/bin/python scripts/runs_table.py ~/.cache/tagger/runs/trunk-lo-1 ~/.cache/tagger/runs/trunk-lo-2 models
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

FAMILIES = ("bass", "brass", "flute", "guitar", "keyboard", "mallet", "organ", "reed", "string", "vocal")
NEGATIVE_PROB = 0.4
"""The mixture recipe's default share of mixtures with sounds of no family (`SynthSettings.negative_prob`)."""


def _f(value, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def params_of(manifest: dict, folder: Path | None = None) -> int:
    """The parameters of a model directory: trunk, gate and heads; an averaged ensemble's, every
    member's (read from `folder`)."""
    if manifest.get("members"):
        return sum(params_of(json.loads((folder / m["dir"] / "manifest.json").read_text())) for m in manifest["members"])
    gate = manifest.get("gate") or {}
    return (int(manifest.get("trunk", {}).get("params", 0)) + int(gate.get("params", 0))
            + sum(int(c.get("params", 0)) for c in manifest["classifiers"].values()))  # fmt: skip


def row(manifest: dict, folder: Path | None = None) -> list[str]:
    """The table's cells for one model directory's manifest (in `folder`: an averaged ensemble's
    members are read there)."""
    ref = manifest.get("reference")
    held = {f: c.get("metrics", {}).get("auc") for f, c in manifest["classifiers"].items()}
    validation = manifest.get("validation", {})
    left_out = manifest.get("validation_left_out", {})
    note = ""
    if ref:  # a production fit: its own validation instruments were trained on
        held, validation, left_out = ref["auc"], ref.get("validation", {}), ref.get("validation_left_out", {})
        note = f" (held-out figures: {ref['version']})"
    training = manifest.get("training", {})
    data = manifest.get("data", {})
    gate = manifest.get("gate") or {}
    params = params_of(manifest, folder)
    members = manifest.get("members")
    if members:  # the recipe and data are the members': name them
        training, data = {}, {}
    aucs = [held.get(f) for f in FAMILIES if held.get(f) is not None]
    lo_aucs = left_out.get("auc", {})
    lo = [lo_aucs[f] for f in FAMILIES if f in lo_aucs]
    proto = validation.get("protocol", {})
    synth = data.get("synth", {})
    weights = synth.get("level_weights")
    return [
        f"`{manifest['version']}`{note}",
        (f"the scores of {' and '.join(f'`{m}`' for m in (m['version'] for m in members))} averaged" if members else
         f"{manifest.get('architecture')}, {data.get('examples', '?')} examples x {training.get('epochs', '?')} epochs")
        + (f", level weights {','.join(f'{w:g}' for w in weights)}" if weights else "")
        + (f", timbre morph {synth['morph_prob']:g} / warp {synth['warp_prob']:g}" if synth.get("morph_prob") or synth.get("warp_prob") else "")
        + (f", chords {synth['chord_prob']:g}" if synth.get("chord_prob") else "")
        + (f", sections {synth['section_prob']:g}" if synth.get("section_prob") else "")
        + (f", drum beats {synth['drum_prob']:g}" if synth.get("drum_prob") else "")
        + (f", lossy codecs {synth['codec_prob']:g}" if synth.get("codec_prob") else "")
        + (f", loud masters {synth['master_prob']:g}" if synth.get("master_prob") else "")
        + (f", negatives in {synth['negative_prob']:g} of the mixtures"
           if synth.get("negative_prob", NEGATIVE_PROB) != NEGATIVE_PROB else "")
        + (", harmonic front end" if manifest.get("features", {}).get("harmonic") else "")
        + (f", soft presence gate (exponent {gate['exponent']:g})" if gate.get("exponent") is not None else
           f", presence gate (cost {gate.get('metrics', {}).get('cost', 0):g}"
           + (f", overruled by a head at {gate['override']:g})" if gate.get("override") is not None else ")") if gate else "")
        + (f", contrastive pretraining {training['pretrain_steps']} steps" if training.get("pretrain_steps") else "")
        + (f", spectrogram masks {training['mask_prob']:g}" if training.get("mask_prob") else "")
        + (f", mel shifts {training['shift_prob']:g} (up to {training.get('shift_bands', 2)} bands)" if training.get("shift_prob") else "")
        + (f", trunk filters {','.join(map(str, training['trunk_filters']))}"
           if training.get("trunk_filters") and list(training["trunk_filters"]) != [24, 48, 96, 192, 192] else "")
        + (f", {training['pooling']} pooling" if training.get("pooling", "max") != "max" else "")
        + (f", {training['instrument_fraction']:g} of the instruments" if training.get("instrument_fraction", 1.0) < 1.0 else "")
        + (", all instruments" if data.get("all_instruments") else "")
        + (f", without {', '.join(data['left_out_sources'])}" if data.get("left_out_sources") else ""),
        "the members'" if members else f"{data.get('dataset', '?')}: {data.get('train_instruments', '?')} instruments",
        f"{params:,}",
        "the members'" if members else f"{training.get('seconds', 0) / 60:.0f} min",
        f"{_f(np.mean(aucs) if aucs else None)} ({', '.join(f'{a:.2f}' for a in aucs)})",
        f"{_f(np.mean(lo) if lo else None)}" + (f" ({', '.join(f'{a:.2f}' for a in lo)})" if lo else ""),
        f"{_f(proto.get('jaccard'), 2)} / {_f(proto.get('emr'), 2)}",
        _f(validation.get("solo_jaccard"), 2),
        _f(validation.get("music_jaccard"), 2),
        _f(validation.get("percussion_silent"), 3),
    ]


HEADER = ["run", "recipe", "training data", "parameters", "training time",
          "held-out AUC, mean (bass .. vocal)", "left-out source AUC, mean (bass .. vocal)",
          "protocol Jaccard / EMR", "solo Jaccard", "music-like Jaccard", "drums alone: no family"]  # fmt: skip


def operating_points(manifest: dict) -> list[str]:
    """Per family: threshold, precision and recall on the music-like mixtures, single notes and
    every validation window (a Markdown table)."""
    lines = ["| family | threshold | music-like P / R | single notes P / R | all windows P / R |", "|---|---|---|---|---|"]
    for fam, c in manifest["classifiers"].items():
        m = c.get("metrics", {})
        cells = [f"{m.get(k, {}).get('precision', 0):.2f} / {m.get(k, {}).get('recall', 0):.2f}" for k in ("music", "solo", "all")]
        lines.append(f"| {fam} | {c['threshold']:.2f} | " + " | ".join(cells) + " |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dirs", nargs="+", type=Path)
    ap.add_argument("--operating-points", action="store_true",
                    help="instead: per family, threshold, precision and recall (of the first directory)")
    args = ap.parse_args(argv)
    if args.operating_points:
        print("\n".join(operating_points(json.loads((args.model_dirs[0] / "manifest.json").read_text()))))
        return 0
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    for d in args.model_dirs:
        try:
            manifest = json.loads((d / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            print(f"{d}: cannot read manifest.json: {exc}", file=sys.stderr)
            return 1
        lines.append("| " + " | ".join(row(manifest, d)) + " |")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
