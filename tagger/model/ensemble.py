"""The model manifest and the one object that runs the One-vs-All ensemble.

A model directory holds one Keras file per family plus ``manifest.json``: the families in order,
the feature configuration, per-family thresholds, file hashes, recipe, data description and
validation metrics. `Ensemble.load` verifies every hash and the feature configuration and loads the
files in Keras safe mode; callers only ever see `Ensemble.predict(windows) -> scores`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger import features as F
from tagger.errors import ModelError, UserError

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
MODELS_ENV = "TAGGER_MODELS"


def default_model_dir() -> Path:
    """The shipped models: the installed package's ``tagger/models``, else the repository's ``models/``."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    here = Path(__file__).resolve().parent.parent
    installed = here / "models"
    if (installed / MANIFEST).is_file():
        return installed
    return here.parent / "models"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def read_manifest(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ModelError(path, "model manifest not found (train models with `tagger train` or pass --models DIR)")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(path, f"invalid manifest JSON: {exc}") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ModelError(path, f"unsupported manifest format {manifest.get('format')!r} (expected {MANIFEST_FORMAT})")
    for key in ("families", "features", "classifiers", "version"):
        if key not in manifest:
            raise ModelError(path, f"manifest lacks {key!r}")
    for fam, entry in (manifest["classifiers"] or {}).items() if isinstance(manifest["classifiers"], dict) else ():
        t = entry.get("threshold", 0.5) if isinstance(entry, dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise ModelError(path, f"threshold of {fam!r} is {t!r}: a probability threshold must lie in [0, 1]")
    return manifest


def write_manifest(model_dir: str | os.PathLike, manifest: dict) -> Path:
    """Write the manifest atomically."""
    path = Path(model_dir) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def manifest_hash(manifest: dict) -> str:
    """A stable hash of the manifest content (what the database records per model version)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def check_feature_config(path: Path, recorded: dict) -> F.FeatureConfig:
    """Refuse a manifest whose signal geometry differs from this build's constants."""
    cfg = F.FeatureConfig.from_dict(recorded)
    expected = {
        "sample_rate": C.SAMPLE_RATE,
        "window_samples": C.WINDOW_SAMPLES,
        "n_fft": C.N_FFT,
        "hop_length": C.HOP_LENGTH,
        "normalisation": F.FeatureConfig().normalisation,
    }
    for key, value in expected.items():
        if getattr(cfg, key) != value:
            raise ModelError(path, f"feature configuration mismatch: {key}={getattr(cfg, key)!r}, this tagger uses {value!r}")
    if cfg.kind not in ("logmel", "stft"):
        raise ModelError(path, f"unknown feature kind {cfg.kind!r}")
    return cfg


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
    """features [shape=(n, bins, frames)] -> scores [shape=(n, n_families)]: ONNX Runtime or Keras."""

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def hash(self) -> str:
        return manifest_hash(self.manifest)

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
        entries = []
        for fam in fams:
            entry = manifest["classifiers"].get(fam)
            if entry is None:
                raise ModelError(mpath, f"manifest lists family {fam!r} without a classifier entry")
            fpath = _verified_file(model_dir, entry, f"classifier file for {fam!r}", repr(fam))
            entries.append((fam, fpath, float(entry.get("threshold", 0.5))))
        trunk = manifest.get("trunk")
        trunk_path = _verified_file(model_dir, trunk, "the shared trunk file", "the shared trunk") if trunk is not None else None
        runner = _make_runner(
            [p for _, p, _ in entries], cfg, manifest_hash=manifest_hash(manifest), families=fams, trunk=trunk_path
        )
        return cls(
            model_dir=model_dir,
            manifest=manifest,
            families=fams,
            thresholds=np.array([t for _, _, t in entries], dtype=np.float32),
            feature_config=cfg,
            _runner=runner,
        )

    @property
    def runtime(self) -> str:
        """What runs the classifiers: 'onnxruntime' or 'keras'."""
        return getattr(self._runner, "name", "keras")

    def features(self, windows: np.ndarray) -> np.ndarray:
        """Model input for windows [shape=(n, 64000)] -> [shape=(n, bins, frames)]."""
        return F.compute(windows=windows, config=self.feature_config)

    def predict_features(self, feats: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Per-family probabilities [shape=(n, n_families), dtype=float32] from features."""
        feats = np.asarray(feats, dtype=np.float32)
        if len(feats) == 0:
            return np.zeros((0, len(self.families)), dtype=np.float32)
        out = []
        for i in range(0, len(feats), batch_size):
            out.append(np.asarray(self._runner(feats[i : i + batch_size])))
        return np.concatenate(out).astype(np.float32)

    def predict(self, windows: np.ndarray, *, batch_size: int = 64) -> np.ndarray:
        """Per-family probabilities [shape=(n, n_families)] for windows [shape=(n, 64000)]."""
        return self.predict_features(self.features(windows), batch_size=batch_size)

    def decide(self, scores: np.ndarray) -> np.ndarray:
        """Presence decisions (bool) from scores with the calibrated thresholds."""
        return np.asarray(scores) >= self.thresholds


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


def load_classifier(path: str | os.PathLike):
    """Load one classifier file in Keras safe mode (no arbitrary code execution)."""
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for corrupt/unsafe files
        raise ModelError(path, f"cannot load classifier: {type(exc).__name__}: {exc}") from None


def _load_combined(paths: Sequence[Path], cfg: F.FeatureConfig, trunk: Path | None = None):
    """Load each classifier (and the shared trunk, if any) and join them into one model with an
    (n, n_families) output. Returns (combined model, trunk model or None, classifier models)."""
    import keras

    models = [load_classifier(p) for p in paths]
    trunk_model = load_classifier(trunk) if trunk is not None else None
    if trunk_model is not None and tuple(trunk_model.input_shape[1:]) != cfg.shape:
        raise ModelError(trunk, f"trunk input {trunk_model.input_shape[1:]} does not match the feature shape {cfg.shape}")
    head_input = tuple(trunk_model.output_shape[1:]) if trunk_model is not None else cfg.shape
    for path, m in zip(paths, models):
        if tuple(m.input_shape[1:]) != head_input:
            what = "the trunk's embedding" if trunk_model is not None else "the feature shape"
            raise ModelError(path, f"classifier input {m.input_shape[1:]} does not match {what} {head_input}")
    inp = keras.Input(shape=cfg.shape, name="features")
    x = inp
    if trunk_model is not None:
        trunk_model.name = "trunk"
        x = trunk_model(inp)
    outs = []
    for i, m in enumerate(models):
        m.name = f"family_{i}"
        outs.append(m(x))
    out = outs[0] if len(outs) == 1 else keras.layers.Concatenate()(outs)
    return keras.Model(inp, out, name="ensemble"), trunk_model, models


class _KerasRunner:
    """The combined Keras model as one traced TensorFlow function (much faster than eager calls)."""

    name = "keras"

    def __init__(self, model) -> None:
        self.model = model
        self.fn = None
        try:
            import tensorflow as tf

            spec = tf.TensorSpec([None, *model.input_shape[1:]], tf.float32)
            self.fn = tf.function(lambda x: model(x, training=False), input_signature=[spec])
        except Exception:  # another Keras backend: plain calls
            self.fn = None

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        if self.fn is not None:
            return self.fn(feats).numpy()
        return np.asarray(self.model(feats, training=False))


def _make_runner(
    paths: Sequence[Path], cfg: F.FeatureConfig, *, manifest_hash: str, families: Sequence[str], trunk: Path | None = None
):
    """The fastest faithful runtime for the classifiers: ONNX Runtime on their exported graph when
    onnxruntime is installed and the export matches Keras within `runtime.TOLERANCE` (the export is
    cached by manifest hash, so a later load does not even import TensorFlow), else Keras.
    ``TAGGER_RUNTIME=keras`` forces Keras."""
    import logging

    from tagger.model import runtime as R

    log = logging.getLogger(__name__)
    choice = os.environ.get(R.RUNTIME_ENV, "auto").strip().lower()
    if choice == "keras" or not R.onnxruntime_available():
        return _KerasRunner(_load_combined(paths, cfg, trunk)[0])
    key = R.cache_key(manifest_hash, families)
    cached = R.load_cached(key)
    if cached is not None:
        try:
            return R.OnnxRunner(cached)
        except Exception as exc:  # a damaged cache entry: export again
            log.debug("cached ONNX model %s unusable (%s); exporting again", key, exc)
    model, trunk_model, classifiers = _load_combined(paths, cfg, trunk)
    try:
        blob = R.export_onnx(classifiers, cfg.shape, trunk=trunk_model)
        runner = R.OnnxRunner(blob)
        diff = R.max_difference(runner, model, cfg.shape)
    except Exception as exc:  # an unsupported layer, or onnxruntime refusing the graph: Keras it is
        log.info("running the classifiers with Keras (ONNX export not possible: %s)", exc)
        return _KerasRunner(model)
    if diff > R.TOLERANCE:
        log.warning("ONNX export differs from Keras by %.2g (> %g); running the classifiers with Keras", diff, R.TOLERANCE)
        return _KerasRunner(model)
    R.store_cached(key, blob)
    return runner
