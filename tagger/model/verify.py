"""The files of a model directory verified before anything is deserialised, and what it is (`model_info`).

Every file the manifest names (each family's classifier, the shared trunk, the presence gate; each
member's manifest of an averaged ensemble) must lie inside its folder and match its recorded sha256.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from tagger.errors import ModelError
from tagger.hashing import sha256_file
from tagger.model import backends as B
from tagger.model.folders import default_model_dir
from tagger.model.manifest import MANIFEST, check_feature_config, manifest_hash, read_manifest, runner_families

def _verified_members(model_dir: Path, manifest: dict, families: Sequence[str]) -> tuple[B.Member, ...]:
    """The verified files of every member that runs `families` (one for a plain ensemble)."""
    if manifest.get("members"):
        mpath = model_dir / MANIFEST
        return tuple(_member_files(model_dir, manifest, m, families) for m in _members_of(mpath, manifest))
    return (_model_files(model_dir, manifest, families, gated=manifest.get("gate") is not None),)


@dataclass(frozen=True)
class ModelInfo:
    """Which models a tagger uses (`tagger --version`): their folder, the version their manifest
    names (what the tags' INSTRUMENTS_MODEL and the database record), when they were made, and the
    sha256 of the manifest, which records every weight file's sha256: two installations whose
    manifests hash the same run the same weights. `manifest_hash` is the other hash of the same
    manifest: of its parsed content (`manifest_hash`, `Ensemble.hash`), the one a library database
    records per model version (`model_versions.manifest_hash`, `tagger stats`)."""

    model_dir: Path
    version: str
    created: str | None
    manifest_sha256: str
    manifest_hash: str


def model_info(model_dir: str | os.PathLike | None = None) -> ModelInfo:
    """The `ModelInfo` of a model directory (default: `default_model_dir`), its feature settings
    and every file's sha256 checked as `Ensemble.load` checks them, without loading TensorFlow or
    ONNX Runtime. Raises `ModelError` for a missing, tampered or mismatched file."""
    model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
    manifest = read_manifest(model_dir)
    check_feature_config(model_dir / MANIFEST, manifest["features"])
    _verified_members(model_dir, manifest, runner_families(manifest))
    created = manifest.get("created")
    return ModelInfo(model_dir=model_dir, version=str(manifest["version"]), created=str(created) if created else None,
                     manifest_sha256=sha256_file(model_dir / MANIFEST), manifest_hash=manifest_hash(manifest))  # fmt: skip


def _model_files(model_dir: Path, manifest: dict, families: Sequence[str], *, gated: bool) -> B.Member:
    """The verified files of the one model a (member) manifest describes: the classifiers of
    `families`, its trunk, and its gate when `gated`. Nothing is deserialised before every hash matches."""
    mpath = model_dir / MANIFEST
    classifiers = []
    for fam in families:
        entry = manifest["classifiers"].get(fam)
        if entry is None:
            raise ModelError(mpath, f"manifest lists family {fam!r} without a classifier entry")
        classifiers.append(_verified_file(model_dir, entry, f"classifier file for {fam!r}", repr(fam)))
    trunk = manifest.get("trunk")
    trunk_path = _verified_file(model_dir, trunk, "the shared trunk file", "the shared trunk") if trunk is not None else None
    gate = manifest.get("gate") if gated else None
    if gated and gate is None:
        raise ModelError(mpath, "the ensemble has a presence gate but this member has none")
    if gate is not None and trunk_path is None:
        raise ModelError(mpath, "the manifest lists a presence gate but no shared trunk for it to read")
    gate_path = _verified_file(model_dir, gate, "the presence gate file", "the presence gate") if gate is not None else None
    return B.Member(classifiers=tuple(classifiers), trunk=trunk_path, gate=gate_path)


def _members_of(mpath: Path, manifest: dict) -> list[dict]:
    members = manifest["members"]
    if not isinstance(members, list) or not all(isinstance(m, dict) for m in members):
        raise ModelError(mpath, "the manifest's members are not a list of objects")
    return members


def _member_files(model_dir: Path, manifest: dict, entry: dict, families: Sequence[str]) -> B.Member:
    """The verified files of one member of an averaged ensemble: its folder lies inside `model_dir`,
    its manifest matches the sha256 the ensemble recorded, and it hears the same features and
    families (so the runner's averaged columns mean what the ensemble's thresholds decide)."""
    folder = model_dir / str(entry.get("dir", ""))
    mpath = folder / MANIFEST
    if not folder.resolve().is_relative_to(model_dir.resolve()) or folder.resolve() == model_dir.resolve():
        raise ModelError(folder, "a member of the ensemble lies outside its model directory (refusing to load)")
    if not mpath.is_file():
        raise ModelError(mpath, "the manifest of a member of the ensemble is missing")
    if sha256_file(mpath) != entry.get("sha256"):
        raise ModelError(mpath, "sha256 mismatch for a member's manifest: it was modified or corrupted (refusing to load)")
    member = read_manifest(folder)
    if member.get("members"):
        raise ModelError(mpath, "a member of an averaged ensemble is itself averaged (members do not nest)")
    if member["features"] != manifest["features"]:
        raise ModelError(mpath, "a member hears other features than its ensemble")
    if list(member["families"]) != list(manifest["families"]):
        raise ModelError(mpath, f"a member's families ({', '.join(member['families'])}) differ from its ensemble's")
    return _model_files(folder, member, families, gated=manifest.get("gate") is not None)


def _verified_file(model_dir: Path, entry, what: str, label: str) -> Path:
    """The model file an entry of the manifest names, inside `model_dir` and matching its sha256."""
    if not isinstance(entry, dict):
        raise ModelError(model_dir / MANIFEST, f"the manifest entry of {what} is not an object")
    fpath = model_dir / str(entry.get("file", ""))
    if not fpath.resolve().is_relative_to(model_dir.resolve()) or fpath.resolve() == model_dir.resolve():
        raise ModelError(fpath, f"{what} lies outside the model directory (refusing to load)")
    if not fpath.is_file():
        raise ModelError(fpath, f"{what} is missing")
    if sha256_file(fpath) != entry.get("sha256"):
        raise ModelError(fpath, f"sha256 mismatch for {label}: the file was modified or corrupted (refusing to load)")
    return fpath
