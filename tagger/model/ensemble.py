"""The one object that runs the One-vs-All ensemble.

A model directory holds one Keras file per family plus ``manifest.json``: the families in order,
the feature configuration, per-family thresholds, file hashes, recipe, data description and
validation metrics (`tagger.model.manifest`). `Ensemble.load` verifies every hash
(`tagger.model.verify`) and the feature configuration and hands the files to an inference backend
(`tagger.model.backends`: ONNX Runtime or Keras, which loads them in safe mode); callers only ever
see `Ensemble.predict(windows) -> scores`. Where model folders are, and which ones models may be
written into, is `tagger.model.folders`.

An averaged ensemble (format 5, `tagger.model.average`) holds instead its members, each a model
directory of its own inside it (``member-models/<name>/``) whose manifest's sha256 the ensemble records;
the runner averages the members' scores (every head's, and the gate's), which the ensemble's own
thresholds, gate threshold and override decide. Its gate may be soft instead (format 6,
``gate.exponent``): every head's score is scaled by the gate's to that power
(`tagger.model.gate.softened`), and the thresholds decide the scaled scores.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger import features as F
from tagger.errors import ModelError, UserError
from tagger.hashing import sha256_file  # noqa: F401  (re-exported: the store hashes the files it writes)
from tagger.model import backends as B
from tagger.model import gate as G
from tagger.model import runtime as R
from tagger.model.backends import load_classifier  # noqa: F401  (re-exported: training loads the trunk with it)
from tagger.model.folders import (MODEL_FILE_NAMES, MODELS_ENV, TRAIN_INTO_MEMBERS, check_output_dir,
                                  default_model_dir, shipped_model_dir)  # fmt: skip
from tagger.model.manifest import (AVERAGED_MANIFEST_FORMAT, GATED_MANIFEST_FORMAT, HARMONIC_MANIFEST_FORMAT, MANIFEST,
                                   MANIFEST_FORMAT, MANIFEST_FORMATS, OVERRIDE_MANIFEST_FORMAT, SOFT_GATE_MANIFEST_FORMAT,
                                   check_feature_config, export_key, graph_hash, manifest_format, manifest_hash,
                                   read_manifest, reference_entry, runner_families, write_manifest)  # fmt: skip
from tagger.model.verify import ModelInfo, _verified_file, _verified_members, model_info

__all__ = [
    "AVERAGED_MANIFEST_FORMAT", "GATED_MANIFEST_FORMAT", "HARMONIC_MANIFEST_FORMAT", "MANIFEST", "MANIFEST_FORMAT",
    "MANIFEST_FORMATS", "MODEL_FILE_NAMES", "MODELS_ENV", "OVERRIDE_MANIFEST_FORMAT", "SOFT_GATE_MANIFEST_FORMAT",
    "TRAIN_INTO_MEMBERS", "Ensemble", "ModelInfo", "_verified_file", "check_feature_config", "check_output_dir",
    "default_model_dir", "export_key", "graph_hash", "load_classifier", "manifest_format", "manifest_hash",
    "model_info", "read_manifest", "reference_entry", "runner_families", "sha256_file", "shipped_model_dir",
    "write_manifest",
]  # fmt: skip
"""What callers import from here: the manifest's (`tagger.model.manifest`), the folders'
(`tagger.model.folders`) and the verified files' (`tagger.model.verify`) names beside `Ensemble`."""


@dataclass
class Ensemble:
    """The loaded classifiers of a model directory, run as one batched model."""

    model_dir: Path
    manifest: dict
    families: tuple[str, ...]
    thresholds: np.ndarray
    """Per-family decision thresholds [shape=(n_families,)], calibrated on validation data."""
    feature_config: F.FeatureConfig
    _runner: Callable[[np.ndarray], np.ndarray]
    """features [shape=(n, bins, frames)] -> scores [shape=(n, n_families)], from the backend
    `tagger.model.backends` picked (ONNX Runtime or Keras); with a gate, its score is one more column."""
    gate_threshold: float | None = None
    """The presence gate's threshold (`tagger.model.gate`), or None when the models have no gate:
    a window whose gate score is under it has no family."""
    gate_override: float | None = None
    """A head score that overrules the gate (`tagger.model.gate.gated`): a window where any loaded
    head scores at least this much keeps its scores whatever the gate says; None: the gate decides."""
    gate_exponent: float | None = None
    """A soft gate's exponent (`tagger.model.gate.softened`): every head's score is scaled by the
    gate's score to this power, and no window is turned down (`gate_threshold` is then None)."""
    columns: tuple[int, ...] | None = None
    """Where `families` lie among the runner's heads when it runs more of them (a subset of a gate
    with an override, which hears every head); None: the runner's heads are `families`."""

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def hash(self) -> str:
        return manifest_hash(self.manifest)

    @property
    def run_families(self) -> tuple[str, ...]:
        """The families the runner computes (`runner_families`)."""
        return runner_families(self.manifest, self.families)

    @property
    def graph_hash(self) -> str:
        """What the exported graph of the families run is cached by (`graph_hash`)."""
        return graph_hash(self.manifest, self.run_families)

    @property
    def export_key(self) -> str:
        """The cache entry of the runner's ONNX export (`export_key`)."""
        return export_key(self.manifest, self.families)

    @property
    def aggregation(self) -> dict:
        return dict(self.manifest.get("aggregation", {}))

    @classmethod
    def load(cls, model_dir: str | os.PathLike | None = None, *, families: Sequence[str] | None = None) -> Ensemble:
        """Load and verify a model directory (default: the shipped models).

        Raises `ModelError` for a missing, tampered (hash mismatch) or mismatched file.
        """
        model_dir = Path(model_dir) if model_dir is not None else default_model_dir()
        manifest = read_manifest(model_dir)
        mpath = model_dir / MANIFEST
        cfg = check_feature_config(mpath, manifest["features"])
        fams = tuple(manifest["families"])
        if families is not None:
            unknown = [f for f in families if f not in fams]
            if unknown:
                raise UserError(f"no classifier for {', '.join(unknown)} in {model_dir}")
            fams = tuple(f for f in fams if f in families)
        gate = manifest.get("gate")
        run_fams = runner_families(manifest, fams)  # a gate's override runs every head; the subset keeps its own
        thresholds = {}
        for fam in run_fams:
            entry = manifest["classifiers"].get(fam)
            if entry is None:
                raise ModelError(mpath, f"manifest lists family {fam!r} without a classifier entry")
            thresholds[fam] = float(entry.get("threshold", 0.5)) if isinstance(entry, dict) else 0.5

        def verified() -> tuple[B.Member, ...]:
            return _verified_members(model_dir, manifest, run_fams)

        files = B.ModelFiles(members=verified(), feature_config=cfg, graph_hash=graph_hash(manifest, run_fams),
                             families=run_fams)  # fmt: skip
        runner = B.load_runner(files)
        try:  # the backend read the files after they were checked: they must be the ones checked
            verified()
        except ModelError as exc:
            raise ModelError(exc.path, f"changed while the models were loading (replaced meanwhile, e.g. by tagger "
                                       f"combine; run again): {exc.reason}") from None  # fmt: skip
        _check_runner(model_dir, runner, cfg, width=len(run_fams) + (gate is not None))
        return cls(
            model_dir=model_dir,
            manifest=manifest,
            families=fams,
            thresholds=np.array([thresholds[f] for f in fams], dtype=np.float32),
            feature_config=cfg,
            _runner=runner,
            gate_threshold=float(gate.get("threshold") or 0.0) if gate is not None and gate.get("exponent") is None else None,
            gate_override=float(gate["override"]) if gate is not None and gate.get("override") is not None else None,
            gate_exponent=float(gate["exponent"]) if gate is not None and gate.get("exponent") is not None else None,
            columns=None if run_fams == fams else tuple(run_fams.index(f) for f in fams),
        )

    @property
    def runtime(self) -> str:
        """The backend that runs the classifiers ('onnxruntime', 'keras': `tagger.model.backends`)."""
        return getattr(self._runner, "name", "keras")

    def features(self, windows: np.ndarray) -> np.ndarray:
        """Model input for windows [shape=(n, 64000)] -> [shape=(n, bins, frames)]."""
        return F.compute(windows=windows, config=self.feature_config)

    def predict_features(self, feats: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Per-family probabilities [shape=(n, n_families), dtype=float32] from features (0 in the
        windows the presence gate, if any, turns down; scaled by it when it is soft)."""
        feats = np.asarray(feats, dtype=np.float32)
        if len(feats) == 0:
            return np.zeros((0, len(self.families)), dtype=np.float32)
        out = []
        for i in range(0, len(feats), batch_size):
            out.append(np.asarray(self._runner(feats[i : i + batch_size])))
        scores = np.concatenate(out).astype(np.float32)
        if self.gate_threshold is not None:
            # the gate turns a window down: no family plays in it, unless a head is sure of one
            scores = G.gated(scores[:, :-1], scores[:, -1], self.gate_threshold, self.gate_override)
        elif self.gate_exponent is not None:
            # a soft gate: the window keeps its ranking, each head needs more where the gate doubts
            scores = G.softened(scores[:, :-1], scores[:, -1], self.gate_exponent)
        return scores if self.columns is None else scores[:, list(self.columns)]

    def predict_raw(self, feats: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Every head's score before the presence gate decides, then the gate's own score in the last
        column when there is a gate [shape=(n, heads run (+ 1))]: what thresholds are chosen on."""
        import dataclasses

        raw = dataclasses.replace(self, gate_threshold=None, gate_override=None, gate_exponent=None, columns=None)
        return raw.predict_features(np.asarray(feats, dtype=np.float32), batch_size=batch_size)

    def predict(self, windows: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Per-family probabilities [shape=(n, n_families)] for windows [shape=(n, 64000)]."""
        return self.predict_features(self.features(windows), batch_size=batch_size)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Presence decisions (bool) from scores with the calibrated thresholds."""
        return np.asarray(scores) >= self.thresholds


def _check_runner(model_dir: Path, runner: Callable[[np.ndarray], np.ndarray], cfg: F.FeatureConfig, *,
                  width: int) -> None:  # fmt: skip
    """Run the loaded classifiers once, on `runtime.reference_batch`, before any music is analysed:
    refuse models whose scores are not one probability per family (and gate) per window, in [0, 1]
    (a head of another shape, NaN from a weight, a stale export), instead of tagging wrong answers."""
    x = R.reference_batch(cfg.shape, n=2)
    try:
        out = np.asarray(runner(x))
    except Exception as exc:  # noqa: BLE001  (a backend's own error type: ours names the folder)
        raise ModelError(model_dir, f"the classifiers fail on a test batch: {type(exc).__name__}: {exc}") from None
    if out.shape != (len(x), width):
        raise ModelError(model_dir, f"the classifiers give {out.shape[1:] if out.ndim > 1 else out.shape} scores per "
                                    f"window, the manifest's families (and gate) need {width}")  # fmt: skip
    if not (np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0):
        raise ModelError(model_dir, "the classifiers give scores that are not probabilities in [0, 1] (NaN or out of "
                                    "range) on a test batch (refusing to load)")  # fmt: skip
