"""The model folder a run trains into and what the run must train there.

Its manifest, opened or new, checked against the run's architecture, front end and recipe
(`_open_manifest`); the reference run whose thresholds a production fit carries over
(`_reference_manifest`, `_check_reference`); the families to train and the trunk they train on
(`_frozen_trunk`); whether the presence gate is fitted (`_gate_plan`, `_gate_outdated`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from tagger import features as F
from tagger.errors import UserError
from tagger.model import architectures as A
from tagger.model.settings import TrainSettings


def _reference_manifest(reference: str | os.PathLike | None) -> dict | None:
    """The manifest of the `reference` models, or None; a `UserError` for an averaged ensemble."""
    from tagger.model.manifest import read_manifest

    ref_manifest = read_manifest(reference) if reference is not None else None
    if ref_manifest is not None and ref_manifest.get("members"):
        raise UserError(f"{reference} is an averaged ensemble: its thresholds and gate decide averaged scores. A single "
                        "run's production fit takes the held-out run of its own recipe as --reference (and an averaged "
                        "ensemble of production fits takes its held-out pair: tagger combine --reference)")  # fmt: skip
    return ref_manifest


def _open_manifest(out_dir, settings: TrainSettings, fcfg: F.FeatureConfig, *, wanted: Sequence[str], force: bool,
                   version: str | None) -> tuple[dict, F.FeatureConfig]:  # fmt: skip
    """The output folder's manifest (a new one when there is none, or when `force` retrains every
    model on another front end) and the front end to train on (the frozen trunk's, for new heads);
    a `UserError` when the folder holds models of another kind (members, architecture, front end,
    recipe)."""
    from tagger.model import store

    manifest = store.open_or_create(
        out_dir,
        architecture=settings.architecture,
        recipe=settings.recipe,
        feature_config=fcfg,
        version=version,
        data={},
    )
    if manifest.get("members"):
        from tagger.model.folders import TRAIN_INTO_MEMBERS

        raise UserError(TRAIN_INTO_MEMBERS.format(out=out_dir))
    if manifest.get("architecture") != settings.architecture:
        raise UserError(f"{out_dir} holds {manifest.get('architecture')} models; train into another folder")
    recorded = F.FeatureConfig.from_dict(manifest["features"])
    if recorded != fcfg and settings.architecture in A.SHARED_TRUNK and manifest.get("trunk") and not force:
        fcfg = recorded  # new heads on the frozen trunk hear what it was trained on
    elif recorded != fcfg and force and set(wanted) >= set(manifest["classifiers"]):
        # every model of the folder is retrained: the new front end replaces the old one
        manifest = store.new_manifest(architecture=settings.architecture, recipe=settings.recipe, feature_config=fcfg,
                                      version=version, data={})  # fmt: skip
        recorded = fcfg
    if recorded != fcfg:
        held = "the harmonic front end" if manifest["features"].get("harmonic") else "the full spectrogram"
        raise UserError(f"{out_dir} holds models trained on {held}; train with the same front end (--harmonic) "
                        "or into another folder")
    if manifest.get("recipe") != settings.recipe:
        raise UserError(f"{out_dir} holds models of the {manifest.get('recipe')!r} recipe; train into another folder")
    return manifest, fcfg


def _gate_plan(out_dir, manifest: dict, settings: TrainSettings, *, todo: Sequence[str],
               reference: dict | None) -> tuple[float, bool]:  # fmt: skip
    """The presence gate's cost and whether this run fits one. Returns (cost, needed)."""
    ref_manifest = reference
    shared = settings.architecture in A.SHARED_TRUNK
    # the presence gate of a shared trunk (`tagger.model.gate`) is trained with new heads, or alone
    # when it is missing; a production fit takes the reference's threshold, so it needs a reference gate
    # (a gate chosen for another cost is refitted: the heads and the trunk stay; a production fit's
    # cost is its reference's, whose threshold it takes)
    gate_cost = settings.gate_cost
    if ref_manifest is not None and "gate" in ref_manifest:
        gate_cost = float(ref_manifest["gate"].get("metrics", {}).get("cost", gate_cost))
    need_gate = (shared and settings.recipe == "mixture" and settings.gate_cost > 0
                 and (ref_manifest is None or "gate" in ref_manifest)
                 and (bool(todo) or _gate_outdated(Path(out_dir), manifest, gate_cost, ref_manifest)))  # fmt: skip
    return gate_cost, need_gate


def _gate_outdated(out_dir: Path, manifest: dict, cost: float, reference: dict | None) -> bool:
    """Whether the folder's presence gate must be fitted (again) although no head changes: there is
    none, it was chosen for another cost or before gates had an override, it differs from the
    reference it must carry over, or its file is missing or is not the one the manifest names (a
    refit killed between writing the file and the manifest)."""
    from tagger.hashing import sha256_file

    gate = manifest.get("gate")
    if not gate or gate.get("metrics", {}).get("cost") != cost or "override" not in gate:
        return True
    if reference is not None and (gate.get("threshold") != reference["gate"].get("threshold")
                                  or gate.get("override") != reference["gate"].get("override")):  # fmt: skip
        return True
    path = out_dir / str(gate.get("file", ""))
    return not path.is_file() or sha256_file(path) != gate.get("sha256")


def _frozen_trunk(out_dir, manifest: dict, settings: TrainSettings, *, todo: list[str], force: bool,
                  say: Callable[[str, dict], None]) -> tuple[object | None, list[str]]:  # fmt: skip
    """The folder's shared trunk, loaded to train new heads on it frozen (None when there is none,
    or with `force`), and the families to train: with a new trunk, every head of the folder too.
    Returns (frozen trunk or None, families to train)."""
    shared = settings.architecture in A.SHARED_TRUNK
    frozen_trunk = None
    if shared and manifest.get("trunk") and not force:
        from tagger.model.backends import load_classifier
        from tagger.model.verify import _verified_file

        frozen_trunk = load_classifier(_verified_file(Path(out_dir), manifest["trunk"], "the shared trunk file", "the shared trunk"))
        say("trunk", {"frozen": manifest["trunk"]["file"], "new_heads": todo})
    elif shared:
        todo = list(dict.fromkeys([*manifest["families"], *todo]))  # a new trunk: every head trains anew
    return frozen_trunk, todo


def _check_reference(ref_manifest: dict, reference, manifest: dict, *, todo: Sequence[str],
                     feature_config: F.FeatureConfig) -> None:  # fmt: skip
    """A `UserError` unless the reference models have a threshold for every head this run keeps or
    trains and hear the same front end."""
    # a run that trains no head (a gate added) takes the reference's thresholds for the heads it keeps
    lacking = [f for f in (todo or manifest["classifiers"]) if f not in ref_manifest["classifiers"]]
    if lacking:
        raise UserError(f"the reference models in {reference} have no threshold for {', '.join(lacking)}")
    if F.FeatureConfig.from_dict(ref_manifest["features"]) != feature_config:
        raise UserError(f"the reference models in {reference} hear another front end than this training "
                        "(--harmonic must be the same): their thresholds do not carry over")  # fmt: skip
