"""An averaged ensemble: trained models whose scores are averaged, decided as one model.

Two trunks trained on different examples disagree on instruments neither heard; the average of
their scores separates the families better than either (the README's "Two runs averaged"). An
averaged ensemble is a model directory (manifest format 5) that holds its members, each a model
directory of its own, copied into ``member-models/<name>/`` with its manifest's sha256 recorded in the
ensemble's manifest. `tagger.model.ensemble.Ensemble` runs the members as one graph whose output is
the average of theirs, every head's and the gate's; the ensemble's own per-family thresholds, gate
threshold and override then decide, as for one model.

`combine` makes one, in one of two ways:

- **held-out** (``valid``): the members are runs trained on held-out instruments, and the
  operating point is chosen on their validation set as `tagger train` chooses it for one run
  (`choose_operating_point`): per-family thresholds by F0.5 over every validation window with a
  family question, the gate's threshold by its cost, its override by
  `tagger.model.gate.choose_override` (with the left-out source's kits, when the runs left a source
  out). The per-track rule is chosen afterwards on validation tracks
  (``scripts/calibrate_aggregation.py``), as for one run.
- **production** (``reference``): the members are production fits (every instrument heard), and
  the thresholds, gate, override and per-track rule are carried over from an averaged held-out
  ensemble of the runs they were fitted after, as ``tagger train --reference`` does for one model.

Adding a family to an averaged ensemble is one head per member, each trained on its member's frozen
trunk (``tagger train --family NAME --out MEMBER``), then `combine` again: no other head and no
trunk changes.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tagger.aggregate import DEFAULT_AGGREGATION
from tagger.errors import UserError
from tagger.hashing import sha256_file
from tagger.model import ensemble as E
from tagger.model import gate as G
from tagger.model.folders import check_output_dir
from tagger.model.manifest import AVERAGED_MANIFEST_FORMAT, MANIFEST, read_manifest, reference_entry, write_manifest
from tagger.model.verify import _verified_file

MEMBERS_DIR = "member-models"
"""Where an averaged ensemble keeps its members, one folder each (a name that is no Python
identifier, so that installing the models as package data does not take the folder for a package)."""
ARCHITECTURE = "averaged"


def choose_operating_point(heads: np.ndarray, gate: np.ndarray | None, *, truth: np.ndarray, kind: np.ndarray,
                           cost: float = G.GATE_COST, other_kits: tuple[np.ndarray, np.ndarray] | None = None,
                           soft: bool = False, threshold_resamples: int = 0) -> dict:  # fmt: skip
    """The decisions of a model chosen on its validation windows, as `tagger train` chooses them for
    one run: from head scores [shape=(n, k)] before any gate, the gate's scores [shape=(n,)] or None,
    `truth` [bool, shape=(n, k)] and each window's `kind` (`tagger.model.validation.ValidationSet`: 0-2
    with a family question, 3 drums alone); `other_kits`, head and gate scores of another library's
    kits alone (`tagger.model.gate.choose_override`).

    With `threshold_resamples`, each family's threshold is the most precise within one bootstrap
    standard error of its F0.5-best (`tagger.evaluate.metrics.calibrate_threshold`), wherever
    thresholds are chosen (the soft gate's exponents included).

    With `soft`, the gate is then softened where that does as well (`tagger.model.gate.choose_exponent`):
    its exponent chosen, the thresholds chosen again on the softened scores, and the hard gate's
    threshold and override kept in the gate's metrics only.

    Returns {"thresholds": [k], "metrics": [k per-family dicts], "gate": {"threshold", "override",
    "exponent", "metrics"} or None}."""
    from tagger.model.validation import family_threshold

    truth = np.asarray(truth, dtype=bool)
    kind = np.asarray(kind)
    scored = kind < 3  # (drums alone are what the gate is measured on, not a family question)

    def operating_point(scores: np.ndarray) -> list[tuple[float, dict]]:
        return [family_threshold(truth[:, j], scores[:, j], kind, resamples=threshold_resamples)
                for j in range(scores.shape[1])]  # fmt: skip

    chosen = operating_point(heads)
    thresholds = np.array([t for t, _ in chosen], dtype=np.float32)
    out = {"thresholds": thresholds, "metrics": [m for _, m in chosen], "gate": None}
    if gate is None:
        return out
    with_family = scored & truth.any(axis=1)
    t = G.choose_threshold(gate[with_family], cost)
    drums = kind == 3
    override, tried = G.choose_override(heads, gate, t, truth=truth, head_thresholds=thresholds, drums_alone=drums,
                                        other_kits=other_kits)  # fmt: skip
    from tagger.evaluate.metrics import auc

    out["gate"] = {
        "threshold": t,
        "override": override,
        "exponent": None,
        "metrics": {"cost": cost, "own_threshold": round(t, 4), "auc": round(auc(with_family, gate), 4),
                    "turns_down_with_family": round(float(np.mean(gate[with_family] < t)), 4),
                    **({"turns_down_drums_alone": round(float(np.mean(gate[drums] < t)), 4)} if drums.any() else {}),
                    "own_override": override, "overrides_tried": tried},
    }  # fmt: skip
    if not soft:
        return out
    base = next(r for r in tried if r["override"] == override)
    exponent, soft_tried = G.choose_exponent(
        heads, gate, truth=truth, drums_alone=drums, base=base, other_kits=other_kits,
        thresholds_for=lambda scores: [th for th, _ in operating_point(scores)],
    )  # fmt: skip
    out["gate"]["metrics"]["exponents_tried"] = soft_tried
    if exponent is not None:
        softened = operating_point(G.softened(heads, gate, exponent))
        out["thresholds"] = np.array([th for th, _ in softened], dtype=np.float32)
        out["metrics"] = [m for _, m in softened]
        out["gate"].update(threshold=None, override=None, exponent=exponent)
        out["gate"]["metrics"]["hard"] = {"threshold": round(t, 4), "override": override}
    return out


def combine(out_dir: str | os.PathLike, members: Sequence[str | os.PathLike], *, valid: str | os.PathLike | None = None,
            reference: str | os.PathLike | None = None, version: str | None = None, soft_gate: bool = False,
            threshold_resamples: int = 0, say: Callable[[str, dict], None] | None = None) -> dict:  # fmt: skip
    """Make the averaged ensemble of `members` (model directories) in `out_dir`, its operating point
    chosen on the cached validation set `valid` of held-out runs (``<cache>/train/examples-<sig>``,
    with its ``left_out`` set when the runs left a source out) or carried over from the averaged
    ensemble `reference`. With `soft_gate` (and `valid`), a soft gate replaces the hard one where it
    does as well on validation (`choose_operating_point`); with `threshold_resamples`, the thresholds
    follow the one-standard-error rule there. Returns the manifest.

    `out_dir` must be new, empty, or an averaged ensemble (replaced whole, only once the new one is
    complete: a failure leaves it as it was)."""
    say = say or (lambda stage, info: None)
    out_dir = Path(out_dir)
    check_output_dir(out_dir, hint="combine into another folder", other_files=False)  # (those: below)
    _restore_older(out_dir, say)
    if (valid is None) == (reference is None):
        raise UserError("combine needs a validation set of held-out runs (--valid) or an averaged held-out ensemble "
                        "(--reference), one of the two")  # fmt: skip
    dirs = [Path(m) for m in members]
    manifests = _member_manifests(dirs)
    gated = all(m.get("gate") for m in manifests)  # (all or none: `_member_manifests`)
    ref = _reference_manifest(reference, manifests[0], gated=gated, n_members=len(dirs)) if reference is not None else None
    _check_out_dir(out_dir, dirs)

    tmp = out_dir.parent / f".{out_dir.name}.combine.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        entries = _copy_members(tmp, dirs, manifests)
        manifest = _new_manifest(manifests, entries, version=version, gated=gated)
        if ref is not None:
            _carry_over(manifest, ref, gated=gated)
            write_manifest(tmp, manifest)
            E.Ensemble.load(tmp)  # every member loads and runs as one graph
        else:
            write_manifest(tmp, manifest)
            _choose_on_validation(tmp, manifest, Path(valid), manifests, soft=soft_gate, say=say,
                                  threshold_resamples=threshold_resamples)  # fmt: skip
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # (the folder asked for is untouched)
        raise
    _replace(tmp, out_dir)
    say("combined", {"out": str(out_dir), "members": [e["version"] for e in entries]})
    return read_manifest(out_dir)


def _restore_older(out_dir: Path, say: Callable[[str, dict], None]) -> None:
    """Put back an older ensemble that an earlier combine, stopped between its two renames
    (`_replace`), left at `_older`, before anything else is decided."""
    if not out_dir.exists() and _older(out_dir).exists():
        os.replace(_older(out_dir), out_dir)
        say("restored", {"out": str(out_dir), "from": str(_older(out_dir))})


def _member_manifests(dirs: Sequence[Path]) -> list[dict]:
    """The members' manifests, once they are known to average: at least two, none an averaged
    ensemble itself, all of the first's features and families (in its order), all with a presence
    gate or none; else a `UserError` naming the member and what to do."""
    if len(dirs) < 2:
        raise UserError(f"an averaged ensemble needs at least two members; {len(dirs)} given")
    manifests = [_member_manifest(d) for d in dirs]
    _check_distinct(dirs)
    first = manifests[0]
    for d, m in zip(dirs[1:], manifests[1:]):
        if m["features"] != first["features"]:
            raise UserError(f"{d} hears other features than {dirs[0]}: their scores cannot be averaged")
        if list(m["families"]) != list(first["families"]):
            raise UserError(f"{d} has the families {', '.join(m['families'])}, {dirs[0]} {', '.join(first['families'])}: "
                            "train the missing heads into each member first")  # fmt: skip
    with_gate = [bool(m.get("gate")) for m in manifests]
    if any(with_gate) and not all(with_gate):
        raise UserError(f"{dirs[with_gate.index(False)]} has no presence gate and {dirs[with_gate.index(True)]} has one: "
                        "fit a gate into every member (tagger train --out MEMBER), or none")  # fmt: skip
    return manifests


def _reference_manifest(reference: str | os.PathLike, first: dict, *, gated: bool, n_members: int) -> dict:
    """The manifest of the averaged held-out ensemble whose decisions are carried over, once it is
    known to fit the members: an averaged ensemble of as many models, deciding the same families
    on the same features, with a presence gate exactly when they have one."""
    ref = read_manifest(reference)
    if not ref.get("members"):
        raise UserError(f"{reference} is not an averaged ensemble: its operating point is one model's")
    if list(ref["families"]) != list(first["families"]) or ref["features"] != first["features"]:
        raise UserError(f"{reference} decides other families or features than the members")
    if bool(ref.get("gate")) != gated:
        raise UserError(f"{reference} {'has' if ref.get('gate') else 'has no'} presence gate, unlike its members")
    if len(ref["members"]) != n_members:
        raise UserError(f"{reference} averages {len(ref['members'])} models; {n_members} given")
    return ref


def _check_out_dir(out_dir: Path, dirs: Sequence[Path]) -> None:
    """Refuse an output folder that holds something other than an averaged ensemble (which is
    replaced whole), or that is or holds one of the members."""
    if out_dir.exists() and any(out_dir.iterdir()):
        if not (out_dir / MANIFEST).is_file() or not read_manifest(out_dir).get("members"):
            raise UserError(f"{out_dir} holds something other than an averaged ensemble; combine into a new folder")
    if any(out_dir.resolve() == d.resolve() or out_dir.resolve() in d.resolve().parents for d in dirs):
        raise UserError(f"{out_dir} holds a member; combine into another folder")


def _copy_members(tmp: Path, dirs: Sequence[Path], manifests: Sequence[dict]) -> list[dict]:
    """Copy each member (checked against its manifest's hashes) into ``tmp/member-models/<name>``;
    the ensemble manifest's entry for each: its folder, its manifest's sha256, its version."""
    entries = []
    for d, m, name in zip(dirs, manifests, _member_names(dirs, manifests)):
        sub = tmp / MEMBERS_DIR / name
        _copy_model(d, m, sub)
        entries.append({"dir": f"{MEMBERS_DIR}/{name}", "sha256": sha256_file(sub / MANIFEST), "version": m["version"]})
    return entries


def _new_manifest(manifests: Sequence[dict], entries: list[dict], *, version: str | None, gated: bool) -> dict:
    """The ensemble's manifest before its operating point is decided: the first member's families,
    features and recipe, the members, each member's data, placeholder thresholds (0.5) and gate,
    the default per-track rule; the version given, else the members' versions joined."""
    first = manifests[0]
    families = list(first["families"])
    manifest = {
        "format": AVERAGED_MANIFEST_FORMAT,
        "version": version or "averaged-" + "+".join(str(m["version"]) for m in manifests),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "architecture": ARCHITECTURE,
        "recipe": first.get("recipe"),
        "families": families,
        "features": dict(first["features"]),
        "members": entries,
        "aggregation": dict(DEFAULT_AGGREGATION),
        "data": {"members": [{"version": e["version"], **m.get("data", {})} for e, m in zip(entries, manifests)]},
        "classifiers": {f: {"threshold": 0.5} for f in families},
        "validation": {},
    }
    if gated:
        manifest["gate"] = {"threshold": 0.0, "override": None}
    return manifest


def _carry_over(manifest: dict, ref: dict, *, gated: bool) -> None:
    """Decide `manifest` as the reference ensemble `ref` decides: its thresholds, its gate's
    deciding values and cost, its per-track rule, and a ``reference`` entry saying where they came
    from with the reference's validation figures."""
    families = manifest["families"]
    manifest["classifiers"] = {f: {"threshold": float(ref["classifiers"][f]["threshold"])} for f in families}
    if gated:
        manifest["gate"] = {**{k: ref["gate"].get(k) for k in G.DECIDING},
                            "metrics": {"cost": ref["gate"].get("metrics", {}).get("cost")}}  # fmt: skip
    manifest["aggregation"] = dict(ref.get("aggregation", DEFAULT_AGGREGATION))
    manifest["reference"] = reference_entry(
        ref, why="thresholds, presence gate and aggregation rule carried over from this averaged ensemble of runs on "
                 "held-out instruments",
    )  # fmt: skip


def _check_distinct(dirs: Sequence[Path]) -> None:
    """Refuse a member given twice, as one folder or as a copy (the same manifest.json, byte for
    byte): the ensemble would be one model weighed double, recorded as two members, and two models
    passed the check for at least two members."""
    seen: dict[object, Path] = {}
    for d in dirs:
        for key in (("folder", d.resolve()), ("manifest", sha256_file(d / MANIFEST))):
            if key in seen:
                raise UserError(f"{d} is the same model as {seen[key]} (the same {'folder' if key[0] == 'folder' else 'manifest.json'}): "
                                "an average needs different models; give each member once")  # fmt: skip
            seen[key] = d


def _member_manifest(d: Path) -> dict:
    manifest = read_manifest(d)
    if manifest.get("members"):
        raise UserError(f"{d} is itself an averaged ensemble: combine its members instead")
    return manifest


def _member_names(dirs: Sequence[Path], manifests: Sequence[dict]) -> list[str]:
    """A folder name per member: its version, made safe, numbered when two are the same."""
    names = []
    for i, (d, m) in enumerate(zip(dirs, manifests)):
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", str(m.get("version") or d.name)).strip(".-") or f"member-{i}"
        names.append(name if name not in names else f"{name}-{i}")
    return names


def _copy_model(src: Path, manifest: dict, dst: Path) -> None:
    """Copy a model directory's manifest and the files it names (checked against their sha256)."""
    entries = [*manifest["classifiers"].values(), *(manifest[k] for k in ("trunk", "gate") if manifest.get(k))]
    dst.mkdir(parents=True)
    for entry in entries:
        path = _verified_file(src, entry, f"the file {entry.get('file')!r}", str(entry.get("file")))
        target = dst / str(entry["file"])
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    shutil.copy2(src / MANIFEST, dst / MANIFEST)


def _choose_on_validation(folder: Path, manifest: dict, valid: Path, members: Sequence[dict], *, soft: bool, say,
                          threshold_resamples: int = 0) -> None:  # fmt: skip
    """Choose the ensemble's operating point on the held-out runs' validation set and write it with
    the validation figures into `folder`'s manifest (`choose_operating_point`)."""
    from tagger.evaluate.metrics import auc

    vs = _validation_set(valid, manifest)
    lo = _validation_set(valid / "left_out", manifest, columns_from=valid) if (valid / "left_out" / "valid_x.npy").is_file() else None
    ens = E.Ensemble.load(folder)
    k = len(ens.families)
    say("score", {"windows": len(vs.labels) + (len(lo.labels) if lo is not None else 0)})
    held = ens.predict_raw(vs.feats)
    lo_raw = ens.predict_raw(lo.feats) if lo is not None else None
    gated = "gate" in manifest
    costs = {float(m["gate"].get("metrics", {}).get("cost", G.GATE_COST)) for m in members} if gated else {G.GATE_COST}
    if len(costs) != 1:
        raise UserError(f"the members' presence gates were chosen for different costs ({sorted(costs)})")
    kits = None
    if lo_raw is not None and (lo.kind == 3).any():
        kits = (lo_raw[lo.kind == 3, :k], lo_raw[lo.kind == 3, k])
    point = choose_operating_point(held[:, :k], held[:, k] if gated else None, truth=vs.labels, kind=vs.kind,
                                   cost=costs.pop(), other_kits=kits, soft=soft,
                                   threshold_resamples=threshold_resamples)  # fmt: skip
    th = point["thresholds"]
    manifest["classifiers"] = {f: {"threshold": round(float(t), 4), "metrics": m}
                               for f, t, m in zip(ens.families, th, point["metrics"])}  # fmt: skip
    if point["gate"] is not None:
        g = point["gate"]
        manifest["gate"] = {"threshold": None if g["threshold"] is None else round(float(g["threshold"]), 4),
                            "override": None if g["override"] is None else round(float(g["override"]), 4),
                            "exponent": g["exponent"], "metrics": g["metrics"]}  # fmt: skip
    th = np.array([manifest["classifiers"][f]["threshold"] for f in ens.families], dtype=np.float32)

    def decided(raw):
        return G.decided(raw[:, :k], raw[:, k], manifest["gate"]) if gated else raw[:, :k]

    fams = list(ens.families)
    manifest["validation"] = {"data": str(valid), **vs.report(decided(held), th, fams, fams)}
    if lo is not None:
        sel, lo_decided = lo.kind < 3, decided(lo_raw)
        manifest["validation_left_out"] = {
            "sources": sorted({s for m in members for s in m.get("data", {}).get("left_out_sources", [])}),
            # (as `tagger train` records it: on the scores users get, after the gate; and the heads' alone)
            "auc": {f: round(auc(lo.labels[sel, j], lo_decided[sel, j]), 4) for j, f in enumerate(fams)},
            "auc_heads": {f: round(auc(lo.labels[sel, j], lo_raw[sel, j]), 4) for j, f in enumerate(fams)},
            **lo.report(lo_decided, th, fams, fams),
        }
    write_manifest(folder, manifest)
    say("operating point", {"thresholds": {f: c["threshold"] for f, c in manifest["classifiers"].items()},
                            **({"gate": {k2: manifest["gate"][k2] for k2 in G.DECIDING}} if gated else {})})  # fmt: skip


def _validation_set(folder: Path, manifest: dict, *, columns_from: Path | None = None):
    """The cached validation set in `folder`, checked against the ensemble's features, its labels'
    columns those of the ensemble's families (as ``families.json`` of `columns_from`, default
    `folder`, names them; a set cached before that file was written must have as many columns as
    the ensemble has families, in its order)."""
    from tagger.model.validation import ValidationSet

    if not (folder / "valid_x.npy").is_file():
        raise UserError(f"{folder} holds no cached validation set (valid_x.npy): pass the examples-<signature> folder "
                        "of the runs' training cache")  # fmt: skip
    source = columns_from or folder
    recorded = source / "features.json"
    if recorded.is_file() and json.loads(recorded.read_text()) != manifest["features"]:
        raise UserError(f"the validation set in {folder} was computed with other features than the members hear")
    vs = ValidationSet.cached(folder, lambda: None)
    families = list(manifest["families"])
    named = source / "families.json"
    columns = json.loads(named.read_text()) if named.is_file() else None
    if columns is None:
        if vs.labels.shape[1] != len(families):
            raise UserError(f"the validation set in {folder} has {vs.labels.shape[1]} families, the members {len(families)}")
        return vs
    missing = [f for f in families if f not in columns]
    if missing:
        raise UserError(f"the validation set in {folder} has no labels for {', '.join(missing)}")
    vs.labels = vs.labels[:, [columns.index(f) for f in families]]
    return vs


def _older(out_dir: Path) -> Path:
    """Where `_replace` keeps the older ensemble between its two renames."""
    return out_dir.parent / f".{out_dir.name}.combine.old"


def _replace(tmp: Path, out_dir: Path) -> None:
    """Put the finished ensemble `tmp` at `out_dir`, replacing an older one only now (a stop between
    the two renames leaves it at `_older`, and the next `combine` puts it back first)."""
    if out_dir.exists():
        old = _older(out_dir)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out_dir, old)
        try:
            os.replace(tmp, out_dir)
        except OSError:
            os.replace(old, out_dir)  # (the older ensemble back where it was)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out_dir)
