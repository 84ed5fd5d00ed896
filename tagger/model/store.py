"""Writing classifiers into a model directory and keeping its manifest consistent.

Each classifier is saved on its own (``<family>.keras``, Keras native format) and registered in
``manifest.json`` with its sha256, threshold and metrics; the other entries are left untouched, so
adding an instrument never changes the existing classifiers.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path

from tagger.aggregate import DEFAULT_AGGREGATION
from tagger.features import FeatureConfig
from tagger.hashing import sha256_file
from tagger.model.manifest import HARMONIC_MANIFEST_FORMAT, MANIFEST, MANIFEST_FORMAT, read_manifest, write_manifest


def new_manifest(
    *,
    architecture: str,
    recipe: str,
    feature_config: FeatureConfig,
    families: Sequence[str] = (),
    version: str | None = None,
    data: dict | None = None,
) -> dict:
    """A manifest with no classifiers yet."""
    stamp = _dt.datetime.now(_dt.timezone.utc)
    return {
        "format": HARMONIC_MANIFEST_FORMAT if feature_config.harmonic else MANIFEST_FORMAT,
        "version": version or f"{architecture}-{recipe}-{stamp:%Y%m%d%H%M%S}",
        "created": stamp.isoformat(timespec="seconds"),
        "architecture": architecture,
        "recipe": recipe,
        "families": list(families),
        "features": feature_config.to_dict(),
        "aggregation": dict(DEFAULT_AGGREGATION),
        "data": data or {},
        "classifiers": {},
        "validation": {},
    }


def open_or_create(model_dir: str | os.PathLike, **new_kwargs) -> dict:
    """The directory's manifest, or a new one (not yet written) when there is none."""
    path = Path(model_dir)
    if (path / MANIFEST).is_file():
        return read_manifest(path)
    path.mkdir(parents=True, exist_ok=True)
    return new_manifest(**new_kwargs)


def _save_keras(model_dir: str | os.PathLike, model, name: str) -> dict:
    """Save a Keras model as ``<name>.keras`` in `model_dir` atomically; its manifest entry (file,
    sha256, parameters)."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / f"{name}.keras"
    tmp = model_dir / f".{name}.tmp.keras"
    model.save(tmp)
    os.replace(tmp, final)
    return {"file": final.name, "sha256": sha256_file(final), "params": int(model.count_params())}


def save_classifier(
    model_dir: str | os.PathLike,
    manifest: dict,
    family: str,
    model,
    *,
    threshold: float = 0.5,
    metrics: dict | None = None,
    extra: dict | None = None,
) -> dict:
    """Save one Keras classifier as ``<family>.keras`` atomically and register it in the manifest.

    A new family is appended to the manifest's family order; the manifest is written to disk.
    """
    entry = {**_save_keras(model_dir, model, family), "threshold": round(float(threshold), 4), "metrics": metrics or {},
             **(extra or {})}  # fmt: skip
    manifest["classifiers"][family] = entry
    if family not in manifest["families"]:
        manifest["families"].append(family)
    write_manifest(model_dir, manifest)
    return entry


def save_trunk(model_dir: str | os.PathLike, manifest: dict, model) -> dict:
    """Save the shared trunk of a trunk-and-heads ensemble as ``trunk.keras`` atomically and register
    it in the manifest (``manifest["trunk"]``). The heads saved with `save_classifier` read its
    embedding; replacing the trunk invalidates every head, so callers retrain them all."""
    entry = _save_keras(model_dir, model, "trunk")
    manifest["trunk"] = entry
    write_manifest(model_dir, manifest)
    return entry


def save_gate(model_dir: str | os.PathLike, manifest: dict, model, *, threshold: float, override: float | None = None,
              metrics: dict | None = None) -> dict:  # fmt: skip
    """Save the presence gate of a trunk-and-heads ensemble (`tagger.model.gate`) as ``gate.keras``
    atomically and register it in the manifest (``manifest["gate"]``), with its threshold and the
    head score that overrules it (None: none does)."""
    entry = {**_save_keras(model_dir, model, "gate"), "threshold": round(float(threshold), 4),
             "override": None if override is None else round(float(override), 4), "metrics": metrics or {}}  # fmt: skip
    manifest["gate"] = entry
    write_manifest(model_dir, manifest)
    return entry
