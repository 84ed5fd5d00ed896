"""`tagger train`: train, calibrate and save the One-vs-All classifiers."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import typer

from tagger.cli import options as F
from tagger.cli.app import app, echo, handle_errors, quiet_tensorflow
from tagger.errors import UserError
from tagger.model.settings import TRUNK_FILTERS, SynthSettings, TrainSettings

T, S = TrainSettings, SynthSettings


@app.command("train")
@handle_errors
def train(
    data: Path = typer.Option(
        ..., "--data", parser=F.path, help="Rendered NSynth-format dataset with a split (tagger dataset render)."
    ),
    out: Path = typer.Option(
        Path("models"), "--out", parser=F.path, help="Model directory to write (manifest.json + <family>.keras)."
    ),
    family: list[str] = typer.Option(None, "--family", help="Train only this family (repeatable); a new name adds an instrument."),
    architecture: str = typer.Option(
        None, help="trunk (shipped: a shared trunk and one head per family), compact (one small CNN per family) or "
        "paper (Table IV); default: the architecture of the models already in --out, else trunk."
    ),
    recipe: str = typer.Option(F.default(T, "recipe"), help="mixture (default) or solo (the paper's)."),
    examples: int = typer.Option(F.default(T, "examples"), min=1, help="Training examples to generate."),
    epochs: int = typer.Option(F.default(T, "epochs"), min=1),
    batch_size: int = typer.Option(F.default(T, "batch_size"), min=1),
    learning_rate: float = typer.Option(F.default(T, "learning_rate")),
    seed: int = typer.Option(F.default(T, "seed")),
    max_notes_per_instrument: int = typer.Option(
        F.default(T, "max_notes_per_instrument"), min=1,
        help="Notes per instrument loaded into the training pool."
    ),
    valid_per_level: int = typer.Option(
        F.default(T, "valid_per_level"), min=1,
        help="Validation mixtures per polyphony level (Table V protocol)."
    ),
    valid_examples: int = typer.Option(
        F.default(T, "valid_music_examples"), min=1,
        help="Music-like validation mixtures, and validation solo notes."
    ),
    aggregation_tracks: int = typer.Option(
        F.default(T, "aggregation_tracks"), min=1,
        help="Synthetic validation tracks to calibrate the per-track rule."
    ),
    version: str = typer.Option(
        None, help="Version string recorded in the manifest (default: generated; a folder whose models change keeps its own)."
    ),
    force: bool = typer.Option(False, help="Retrain families that are already in the model directory."),
    leave_out: list[str] = typer.Option(
        None, "--leave-out", help="Leave a whole source out of training (e.g. generaluser) and validate on its instruments too."
    ),
    all_instruments: bool = typer.Option(
        F.default(T, "all_instruments"),
        help="Production fit: train on the instruments of every split (use --reference for the thresholds)."
    ),
    level_weights: str = typer.Option(
        None, help="Relative weights of 0, 1, ... families per training mixture, one for each number up to the "
        "dataset's families (whichever --family is trained), comma-separated (default: the recipe's, for any number "
        "of families); e.g. "
        "0.6,2,1.8,1.5,1.2,1,0.8,0.6,0.5,0.4,0.3 favours few instruments of ten families."
    ),
    morph_prob: float = typer.Option(
        F.default(S, "morph_prob"),
        min=0.0, max=1.0, help="Timbre augmentation: chance that an instrument of a training mixture takes part "
        "of the spectral envelope of another instrument of its family."
    ),
    warp_prob: float = typer.Option(
        F.default(S, "warp_prob"),
        min=0.0, max=1.0, help="Timbre augmentation: chance that an instrument's spectral envelope is stretched "
        "along frequency (up to 4 semitones, pitch unchanged)."
    ),
    chord_prob: float = typer.Option(
        F.default(S, "chord_prob"),
        min=0.0, max=1.0, help="Chance that a note an instrument plays in a training mixture is a chord of 2-4 "
        "of its notes (as pianos, guitars, organs and string sections play in music)."
    ),
    section_prob: float = typer.Option(
        F.default(S, "section_prob"),
        min=0.0, max=1.0, help="Chance that a note an instrument plays in a training mixture is a section: 2-6 "
        "players of its family on one pitch, detuned and a little apart (as a brass or string section or a choir)."
    ),
    drum_prob: float = typer.Option(
        F.default(S, "drum_prob"),
        min=0.0, max=1.0, help="Chance that a drum kit plays a beat under a training example (drums are no "
        "family: they must not be heard as one)."
    ),
    codec_prob: float = typer.Option(
        F.default(S, "codec_prob"),
        min=0.0, max=1.0, help="Chance that a training example is encoded and decoded by a lossy codec (MP3, AAC, "
        "Opus or Vorbis at library bitrates), as most music in a library is (needs ffmpeg)."
    ),
    master_prob: float = typer.Option(
        F.default(S, "master_prob"),
        min=0.0, max=1.0, help="Chance that a training example is mastered loud, as much commercial music is: raised "
        "3-18 dB, then hard-clipped at full scale or limited (tanh or a peak limiter); the label is unchanged."
    ),
    negative_prob: float = typer.Option(
        F.default(S, "negative_prob"),
        min=0.0, max=1.0, help="Chance that a training mixture of one or more families also holds 1-2 sounds of no "
        "family (drum hits, synths, effects), which the classifiers must not hear as a family."
    ),
    instrument_fraction: float = typer.Option(
        F.default(T, "instrument_fraction"),
        min=0.01, max=1.0, help="Ablation: train on this share of each family's training instruments."
    ),
    trunk_filters: str = typer.Option(
        None, help="Shared trunk: filters of its conv blocks, comma-separated (default "
        f"{','.join(map(str, TRUNK_FILTERS))})."
    ),
    pooling: str = typer.Option(
        F.default(T, "pooling"),
        help="Shared trunk: how it halves its maps between conv blocks: 'max' (2x2 max-pool) or 'blur' "
        "(anti-aliased max-pool: scores that move smoothly when a sound's spectrum moves by a mel band)."
    ),
    pretrain_steps: int = typer.Option(
        F.default(T, "pretrain_steps"),
        min=0, help="Shared trunk: supervised contrastive pretraining steps on instrument identity (single notes; "
        "same instrument at other pitches = positives) before the mixture training; 0 = none."
    ),
    mask_prob: float = typer.Option(
        F.default(T, "mask_prob"),
        min=0.0, max=1.0, help="Chance that a training example's spectrogram has two frequency bands and two "
        "time stretches masked (SpecAugment)."
    ),
    shift_prob: float = typer.Option(
        F.default(T, "shift_prob"),
        min=0.0, max=1.0, help="Chance that a training example's spectrogram is shifted up or down by 1 to "
        "--shift-bands mel bands (the spectral envelope moved a little)."
    ),
    shift_bands: int = typer.Option(
        F.default(T, "shift_bands"),
        min=1, max=8, help="Largest shift of --shift-prob, in mel bands."
    ),
    harmonic: bool = typer.Option(
        F.default(T, "harmonic"),
        "--harmonic", help="Front end: keep the harmonic part of the spectrogram only (drum hits damped by "
        "median-filter separation); recorded in the manifest and used by every scan with these models."
    ),
    gate_cost: float = typer.Option(
        F.default(T, "gate_cost"),
        min=0.0, max=0.5, help="Shared trunk: a presence gate (any family playing?) on the trunk's embedding may turn "
        "down this share of the validation windows that hold a family, so that windows of drums or other sounds of no "
        "family get none, unless a head is sure of its family (the override, chosen on the same windows); 0 = no gate. "
        "Models already trained without a gate, with a gate of another cost or without an override, or whose gate file "
        "does not match the manifest, get one fitted."
    ),
    reference: Path = typer.Option(
        None, "--reference", help="Model directory trained on held-out instruments (one run, not an averaged ensemble) whose thresholds and aggregation are kept."
    ),
    one_se_thresholds: bool = typer.Option(
        False, "--one-se-thresholds", help="Each family's threshold is the most precise one whose window F0.5 is within "
        "one bootstrap standard error of the best (as the track rule is chosen), not the F0.5-best itself."
    ),
) -> None:
    """Train the ensemble (or one family) from a rendered dataset's train split, validating on its valid split."""
    quiet_tensorflow()
    from tagger.model.train import train_ensemble

    settings = _train_settings(
        out, architecture=architecture, recipe=recipe, examples=examples, epochs=epochs, batch_size=batch_size,
        learning_rate=learning_rate, seed=seed, max_notes_per_instrument=max_notes_per_instrument,
        valid_per_level=valid_per_level, valid_examples=valid_examples, aggregation_tracks=aggregation_tracks,
        leave_out=leave_out, all_instruments=all_instruments, pretrain_steps=pretrain_steps,
        instrument_fraction=instrument_fraction, trunk_filters=trunk_filters, pooling=pooling, harmonic=harmonic,
        mask_prob=mask_prob, shift_prob=shift_prob, shift_bands=shift_bands, gate_cost=gate_cost,
        one_se_thresholds=one_se_thresholds,
    )  # fmt: skip
    synth = _synth_settings(
        recipe=recipe, level_weights=level_weights, morph_prob=morph_prob, warp_prob=warp_prob, chord_prob=chord_prob,
        drum_prob=drum_prob, section_prob=section_prob, codec_prob=codec_prob, master_prob=master_prob,
        negative_prob=negative_prob,
    )  # fmt: skip
    fams = [f.strip().lower() for f in family] if family else None
    manifest = train_ensemble(
        data, out, settings=settings, families=fams, force=force, version=version,
        progress=_progress_reporter(examples), reference=reference, synth=synth,
    )  # fmt: skip
    echo(json.dumps(_summary(out, manifest), indent=1), lines=True)


def _train_settings(out: Path, *, architecture: str | None, recipe: str, trunk_filters: str | None, pooling: str,
                    pretrain_steps: int, valid_examples: int, leave_out: list[str] | None, one_se_thresholds: bool,
                    **same):  # fmt: skip
    """The `TrainSettings` of `train`'s flags, checked: the architecture (`_architecture`), the
    shared-trunk options against it (`_trunk_options`), the recipe; ``same``: the flags named as
    the settings' fields."""
    from tagger.model.calibrate import BOOTSTRAP_RESAMPLES

    architecture = _architecture(architecture, out)
    filters = _trunk_options(architecture, pretrain_steps=pretrain_steps, trunk_filters=trunk_filters, pooling=pooling)
    if recipe not in ("mixture", "solo"):
        raise typer.BadParameter("recipe must be 'mixture' or 'solo'")
    rate = same.get("learning_rate")
    if rate is not None and not (math.isfinite(rate) and rate > 0):  # (a NaN or negative rate trained a model anyway)
        raise typer.BadParameter(f"--learning-rate must be a positive number, got {rate:g}")
    return TrainSettings(
        architecture=architecture, recipe=recipe, valid_music_examples=valid_examples, valid_solo_notes=valid_examples,
        leave_out=tuple(s.strip().lower() for s in leave_out or ()), pretrain_steps=pretrain_steps,
        trunk_filters=filters, pooling=pooling, threshold_resamples=BOOTSTRAP_RESAMPLES if one_se_thresholds else 0,
        **same,
    )  # fmt: skip


def _synth_settings(*, recipe: str, level_weights: str | None, **probs: float):
    """The `SynthSettings` of `train`'s flags: the recipe, the chances (``probs``, named as the
    settings' fields) and --level-weights (`_level_weights`)."""
    synth = SynthSettings(recipe=recipe, **probs)
    if level_weights:
        synth = dataclasses.replace(synth, level_weights=_level_weights(level_weights))
    return synth


def _architecture(architecture: str | None, out: Path) -> str:
    """The architecture asked for, else that of the models already in `out`, else ``trunk``; a
    `UserError` for an averaged ensemble's folder, `typer.BadParameter` for an unknown name."""
    from tagger.model.architectures import ARCHITECTURES

    if architecture is None:
        from tagger.model.manifest import MANIFEST, read_manifest

        existing = read_manifest(out) if (out / MANIFEST).is_file() else {}
        if existing.get("members"):
            from tagger.model.folders import TRAIN_INTO_MEMBERS

            raise UserError(TRAIN_INTO_MEMBERS.format(out=out))
        architecture = existing.get("architecture", F.default(TrainSettings, "architecture"))
    if architecture not in ARCHITECTURES:
        raise typer.BadParameter(f"architecture must be one of {', '.join(ARCHITECTURES)}")
    return architecture


def _trunk_options(architecture: str, *, pretrain_steps: int, trunk_filters: str | None, pooling: str) -> tuple[int, ...]:
    """Check the shared-trunk options (--pretrain-steps, --trunk-filters, --pooling) against the
    architecture; `typer.BadParameter` when one does not fit. Returns the trunk's filters."""
    from tagger.model.architectures import POOLINGS, SHARED_TRUNK

    if pretrain_steps and architecture not in SHARED_TRUNK:
        raise typer.BadParameter("--pretrain-steps needs a shared-trunk architecture (trunk)")
    filters = TRUNK_FILTERS
    if trunk_filters:
        try:
            filters = tuple(int(f) for f in trunk_filters.split(","))
        except ValueError:
            raise typer.BadParameter("--trunk-filters takes comma-separated whole numbers") from None
        if architecture not in SHARED_TRUNK or not filters or min(filters) < 1 or len(filters) > 7:
            raise typer.BadParameter("--trunk-filters needs the trunk architecture and 1 to 7 positive numbers")
    if pooling not in POOLINGS:
        raise typer.BadParameter(f"--pooling must be one of {', '.join(POOLINGS)}")
    if pooling != "max" and architecture not in SHARED_TRUNK:
        raise typer.BadParameter("--pooling needs the trunk architecture")
    return filters


def _level_weights(level_weights: str) -> tuple[float, ...]:
    """--level-weights as numbers; `typer.BadParameter` unless non-negative with a positive sum."""
    try:
        weights = tuple(float(w) for w in level_weights.split(","))
    except ValueError:
        raise typer.BadParameter("--level-weights takes comma-separated numbers") from None
    if not weights or any(w < 0 for w in weights) or not sum(weights):
        raise typer.BadParameter("--level-weights must be non-negative with a positive sum")
    return weights


def _progress_reporter(examples: int) -> Callable[[str, dict], None]:
    """The `progress` of a training: progress bars for the examples generated, the pretraining steps
    and each epoch's batches (said as lines when not a terminal), every other stage as a line."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def progress(stage: str, info: dict) -> None:
        if stage == "generated":
            bar = bars.setdefault("gen", tqdm(total=examples, desc="examples", unit="ex", disable=None))
            bar.update(info["n"])
        elif stage == "pretrain" and "step" in info:
            bar = bars.setdefault("pretrain", tqdm(total=info["of"], desc="pretrain", unit="step", disable=None))
            bar.update(info["step"] - bar.n)
            bar.set_postfix(loss=info["loss"])
            if bar.disable:
                echo(f"{stage}: {json.dumps(info)}", err=True)
        elif stage == "batch":
            key = f"epoch{info['epoch']}"
            bar = bars.setdefault(key, tqdm(total=info["total"], desc=f"epoch {info['epoch']}/{info['of']}", unit="ex", disable=None))
            bar.update(info["done"] - bar.n)
            bar.set_postfix(loss=info["loss"])
            if bar.disable:  # not a terminal (a log file): say the progress as lines
                echo(f"{stage}: {json.dumps(info)}", err=True)
        else:
            for bar in bars.values():
                bar.close()
            bars.clear()
            echo(f"{stage}: {json.dumps(info)}", err=True)

    return progress


def _summary(out: Path, manifest: dict) -> dict:
    """What `tagger train` prints when done: the folder, version, families, thresholds, gate and validation."""
    return {
        "model_dir": str(out),
        "version": manifest["version"],
        "families": manifest["families"],
        "thresholds": {f: c["threshold"] for f, c in manifest["classifiers"].items()},
        **({"gate": {k: manifest["gate"][k] for k in ("threshold", "metrics")}} if manifest.get("gate") else {}),
        "validation": manifest.get("validation", {}),
        "validation_left_out": manifest.get("validation_left_out", {}),
    }


@app.command("combine")
@handle_errors
def combine(
    members: list[Path] = typer.Argument(
        ..., parser=F.path, help="Model directories to average (two or more, the same families and features)."
    ),
    out: Path = typer.Option(
        ..., "--out", parser=F.path, help="The averaged ensemble's directory (new, empty, or an averaged ensemble to replace)."
    ),
    valid: Path = typer.Option(
        None, "--valid", help="The members' cached validation set (<cache>/train/examples-<signature>): choose the "
        "thresholds, the gate and its override on it (members trained on held-out instruments)."
    ),
    reference: Path = typer.Option(
        None, "--reference", help="An averaged ensemble of held-out runs: carry its thresholds, gate and per-track "
        "rule over (members that are production fits)."
    ),
    version: str = typer.Option(None, help="Version string recorded in the manifest (default: the members' versions joined)."),
    soft_gate: bool = typer.Option(
        False, "--soft-gate", help="With --valid: scale every head by the presence gate's score to a power chosen on "
        "validation, instead of turning windows down, where that does as well (the windows' F0.5, drums alone silent)."
    ),
    one_se_thresholds: bool = typer.Option(
        False, "--one-se-thresholds", help="With --valid: each family's threshold is the most precise one whose window "
        "F0.5 is within one bootstrap standard error of the best (as the track rule is chosen), not the F0.5-best itself."
    ),
) -> None:
    """Average trained models into one ensemble, decided by thresholds chosen on held-out validation (or carried over)."""
    quiet_tensorflow()
    from tagger.model import gate as G
    from tagger.model.average import combine as combine_models
    from tagger.model.calibrate import BOOTSTRAP_RESAMPLES

    if soft_gate and valid is None:
        raise UserError("--soft-gate chooses the gate on a validation set: pass --valid (a --reference carries its gate over)")
    if one_se_thresholds and valid is None:
        raise UserError("--one-se-thresholds chooses the thresholds on a validation set: pass --valid (a --reference "
                        "carries its thresholds over)")  # fmt: skip
    manifest = combine_models(out, members, valid=valid, reference=reference, version=version, soft_gate=soft_gate,
                              threshold_resamples=BOOTSTRAP_RESAMPLES if one_se_thresholds else 0,
                              say=lambda stage, info: echo(f"{stage}: {json.dumps(info)}", err=True))  # fmt: skip
    summary = {
        "model_dir": str(out),
        "version": manifest["version"],
        "members": [m["version"] for m in manifest["members"]],
        "thresholds": {f: c["threshold"] for f, c in manifest["classifiers"].items()},
        **({"gate": {k: manifest["gate"].get(k) for k in G.DECIDING}} if manifest.get("gate") else {}),
        "validation": manifest.get("validation", {}),
        "validation_left_out": manifest.get("validation_left_out", {}),
    }
    echo(json.dumps(summary, indent=1), lines=True)
