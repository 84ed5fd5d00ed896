"""What a training run leaves in the model folder, once its heads are trained.

The heads (and a new trunk) saved, each head with its threshold chosen on validation
(`_save_heads`); the presence gate fitted on the trunk, its threshold and override chosen
(`_gate_stage`, `_train_gate`); the manifest's record of the run: its data, its training, the
ensemble's validation (and on the left-out sources), the reference it carries over (`_record_run`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np

from tagger.data.examples import rendered_soundfonts
from tagger.errors import UserError
from tagger.evaluate.metrics import auc as _auc
from tagger.model import architectures as A
from tagger.model import gate as G
from tagger.model import synth as S
from tagger.model.examples import _Examples, _Notes
from tagger.model.joint import _predict_joint
from tagger.model.settings import TrainSettings
from tagger.model.validation import ValidationSet, family_threshold


def _save_heads(out_dir, manifest: dict, settings: TrainSettings, joint, members: dict, trunk, vs: ValidationSet, *,
                todo: Sequence[str], fam_idx: Sequence[int], new_trunk: bool, reference: dict | None,
                predict_batch: int) -> None:  # fmt: skip
    """Save the trained heads (and the trunk, when `new_trunk`) and register them in the manifest,
    each head with its threshold chosen on validation (`family_threshold`), or the reference's
    (its own then kept in its metrics)."""
    from tagger.model import store

    ref_manifest = reference
    probs = _predict_joint(joint, vs.feats, todo, batch=predict_batch)
    if new_trunk:
        store.save_trunk(out_dir, manifest, trunk)
    for i, (f, j) in enumerate(zip(todo, fam_idx)):
        t, metrics = family_threshold(vs.labels[:, j], probs[:, i], vs.kind, resamples=settings.threshold_resamples)
        if ref_manifest is not None:
            metrics["own_threshold"] = t
            t = float(ref_manifest["classifiers"][f]["threshold"])
        store.save_classifier(out_dir, manifest, f, members[f], threshold=t, metrics=metrics)


def _gate_stage(out_dir, manifest: dict, settings: TrainSettings, ex: _Examples, *, trunk, todo: Sequence[str],
                need_gate: bool, gate_cost: float, all_families: Sequence[str], reference: dict | None,
                say: Callable[[str, dict], None]) -> None:  # fmt: skip
    """Fit the presence gate on `trunk` (`_train_gate`) when the run needs one, or drop a gate that
    the new heads outdate and that cannot be refitted."""
    from tagger.model import store

    ref_manifest = reference
    shared = settings.architecture in A.SHARED_TRUNK
    if need_gate:
        _train_gate(out_dir, manifest, trunk, ex.x, ex.y, ex.vs, all_families, cost=gate_cost, reference=ref_manifest,
                    say=say, left_out=ex.vs_left_out)  # fmt: skip
    elif shared and manifest.get("gate") and todo:
        # heads changed under a gate that cannot be retrained (no reference gate, or --gate-cost 0): drop it
        del manifest["gate"]
        store.write_manifest(out_dir, manifest)


def _train_gate(out_dir, manifest: dict, trunk, x, y: np.ndarray, vs: ValidationSet, all_families: Sequence[str], *,
                cost: float, reference: dict | None, say: Callable[[str, dict], None],
                left_out: ValidationSet | None = None) -> dict:  # fmt: skip
    """Train the presence gate on the frozen `trunk` from the training examples (`x`, `y`), choose its
    threshold on the validation windows that hold a family (or take the reference's) and its
    override on the same windows and the `left_out` source's kits alone, save it and register it in
    the manifest. Returns its manifest entry."""
    from tagger.model import store

    if trunk is None:
        raise UserError(f"{out_dir} has no shared trunk for a presence gate to read")
    cols = [all_families.index(f) for f in manifest["families"] if f in all_families]
    present = np.asarray(y)[:, cols].any(axis=1)
    say("gate", {"examples": len(present), "with_no_family": int((~present).sum())})
    if present.all() or not present.any():
        manifest.pop("gate", None)
        store.write_manifest(out_dir, manifest)
        say("gate", {"skipped": "the training examples need some with a family and some with none"})
        return {}
    weights, bias = G.fit_logistic(G.embed(trunk, x), present)
    model = G.gate_model(weights, bias)
    valid_emb = G.embed(trunk, vs.feats)
    scores = G.gate_scores(model, valid_emb)
    with_family = (vs.kind < 3) & vs.labels[:, cols].any(axis=1)
    own = G.choose_threshold(scores[with_family], cost)
    threshold = float(reference["gate"]["threshold"]) if reference is not None else own
    drums = vs.kind == 3
    # a head sure of its family overrules the gate: the override is chosen on the same windows with
    # the heads' own thresholds, or carried over from the reference with the gate's threshold
    fams = [f for f in manifest["families"] if f in all_families]
    heads = _heads_on_embedding(out_dir, manifest, fams, valid_emb)
    other_kits = None
    if left_out is not None and (left_out.kind == 3).any():
        lo_emb = G.embed(trunk, left_out.feats[np.flatnonzero(left_out.kind == 3)])
        other_kits = (_heads_on_embedding(out_dir, manifest, fams, lo_emb), G.gate_scores(model, lo_emb))
    own_override, tried = G.choose_override(
        heads, scores, own, truth=vs.labels[:, cols].astype(bool), drums_alone=drums, other_kits=other_kits,
        head_thresholds=np.array([manifest["classifiers"][f]["threshold"] for f in fams], dtype=np.float32),
    )  # fmt: skip
    override = reference["gate"].get("override") if reference is not None else own_override
    metrics = {"cost": cost, "own_threshold": round(own, 4), "auc": round(_auc(with_family, scores), 4),
               "turns_down_with_family": round(float(np.mean(scores[with_family] < threshold)), 4),
               **({"turns_down_drums_alone": round(float(np.mean(scores[drums] < threshold)), 4)} if drums.any() else {}),
               "own_override": own_override, "overrides_tried": tried}  # fmt: skip
    entry = store.save_gate(out_dir, manifest, model, threshold=threshold, override=override, metrics=metrics)
    say("gate", {"threshold": entry["threshold"], "override": entry["override"],
                 **{k: v for k, v in metrics.items() if k != "overrides_tried"}})  # fmt: skip
    return entry


def _heads_on_embedding(out_dir, manifest: dict, families: Sequence[str], emb: np.ndarray, batch: int = 1024) -> np.ndarray:
    """The scores [shape=(n, len(families))] of the folder's heads on trunk embeddings [shape=(n, d)]."""
    from tagger.model.backends import load_classifier
    from tagger.model.verify import _verified_file

    cols = []
    for f in families:
        head = load_classifier(_verified_file(Path(out_dir), manifest["classifiers"][f], f"classifier file for {f!r}", repr(f)))
        cols.append(np.concatenate([np.asarray(head(np.asarray(emb[i : i + batch], dtype=np.float32), training=False))[:, 0]
                                    for i in range(0, len(emb), batch)]) if len(emb) else np.zeros(0, dtype=np.float32))  # fmt: skip
    return np.stack(cols, axis=1) if cols else np.zeros((len(emb), 0), dtype=np.float32)


def _record_run(out_dir, manifest: dict, settings: TrainSettings, notes: _Notes, ex: _Examples, synth: S.SynthSettings, *,
                todo: Sequence[str], history: list[dict], t_start: float, version: str | None, reference: dict | None,
                predict_batch: int) -> None:  # fmt: skip
    """Record the run in the manifest (not yet written): with a reference and no head trained, every
    head's threshold is the reference's; then the run's data, its training (when heads were
    trained), the ensemble's validation over every classifier in the folder (and on the left-out
    sources), its version, and the reference whose thresholds and per-track rule it carries."""
    ref_manifest, vs, vs_left_out, all_families = reference, ex.vs, ex.vs_left_out, notes.all_families
    if ref_manifest is not None and not todo:
        # the heads stay as they were, their thresholds are the reference's: the record below names that run
        for f, entry in manifest["classifiers"].items():
            entry["threshold"] = float(ref_manifest["classifiers"][f]["threshold"])
    # ensemble-level validation, over every classifier in the directory
    final_fams = [f for f in manifest["families"] if f in manifest["classifiers"]]
    manifest["data"] = {
        "dataset": notes.root.name,
        "left_out_sources": list(settings.leave_out),
        "all_instruments": settings.all_instruments,
        "render": rendered_soundfonts(notes.root),
        "train_instruments": len({n.instrument for n in notes.train.notes}),
        "valid_instruments": len({n.instrument for n in notes.valid.notes}),
        "pool_notes": {"train": int(len(ex.train_pool.family)), "valid": int(len(ex.valid_pool.family))},
        "examples": settings.examples,
        "synth": S.settings_dict(synth),
    }
    if todo:  # (a gate added alone leaves the record of the heads' training as it was)
        manifest["training"] = {**asdict(settings), "families_trained": todo, "history": history,
                                "seconds": round(time.time() - t_start, 1)}  # fmt: skip
    if set(final_fams) <= set(all_families) and len(final_fams) == len(manifest["families"]):
        full_probs = _predict_dir(out_dir, vs.feats, batch=predict_batch)
        th = np.array([manifest["classifiers"][f]["threshold"] for f in final_fams], dtype=np.float32)
        manifest["validation"] = vs.report(full_probs, th, final_fams, all_families)
        if settings.all_instruments:
            manifest["validation"]["note"] = "validation instruments were seen in training (production fit)"
        if vs_left_out is not None:
            lo_probs = _predict_dir(out_dir, vs_left_out.feats, batch=predict_batch)
            lo_idx = [all_families.index(f) for f in final_fams]
            manifest["validation_left_out"] = {
                "sources": list(settings.leave_out),
                "auc": {f: round(_auc(vs_left_out.labels[vs_left_out.kind < 3, j], lo_probs[vs_left_out.kind < 3, i]), 4)
                        for i, (f, j) in enumerate(zip(final_fams, lo_idx))},
                **vs_left_out.report(lo_probs, th, final_fams, all_families),
            }  # fmt: skip
    if version is not None:
        manifest["version"] = version  # models changed in place (new heads, a gate) take the name asked for
    if ref_manifest is not None:
        manifest["aggregation"] = dict(ref_manifest.get("aggregation", manifest["aggregation"]))
        from tagger.model.manifest import reference_entry

        manifest["reference"] = reference_entry(
            ref_manifest, why="thresholds and aggregation rule carried over from this run on held-out instruments"
        )


def _predict_dir(model_dir, feats: np.ndarray, *, batch: int) -> np.ndarray:
    from tagger.model.ensemble import Ensemble

    return Ensemble.load(model_dir).predict_features(np.asarray(feats, dtype=np.float32), batch_size=batch)


