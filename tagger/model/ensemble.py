"""The model manifest and the one object that runs the One-vs-All ensemble.

A model directory holds one Keras file per family plus ``manifest.json``: the families in order,
the feature configuration, per-family thresholds, file hashes, recipe, data description and
validation metrics. `Ensemble.load` verifies every hash and the feature configuration and hands the
files to an inference backend (`tagger.model.backends`: ONNX Runtime or Keras, which loads them in
safe mode); callers only ever see `Ensemble.predict(windows) -> scores`.

An averaged ensemble (format 5, `tagger.model.average`) holds instead its members, each a model
directory of its own inside it (``member-models/<name>/``) whose manifest's sha256 the ensemble records;
the runner averages the members' scores (every head's, and the gate's), which the ensemble's own
thresholds, gate threshold and override decide. Its gate may be soft instead (format 6,
``gate.exponent``): every head's score is scaled by the gate's to that power
(`tagger.model.gate.softened`), and the thresholds decide the scaled scores.
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
from tagger.hashing import sha256_file  # noqa: F401  (re-exported: the store hashes the files it writes)
from tagger.model import backends as B
from tagger.model import gate as G
from tagger.model import runtime as R
from tagger.model.backends import load_classifier  # noqa: F401  (re-exported: training loads the trunk with it)

MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
HARMONIC_MANIFEST_FORMAT = 2
"""The format of manifests whose models hear the harmonic front end: taggers that read only format 1
(made before that front end existed) refuse them instead of scoring them on the wrong features."""
GATED_MANIFEST_FORMAT = 3
"""The format of manifests with a presence gate (`tagger.model.gate`): taggers that read only formats
1 and 2 refuse them instead of tagging the windows the gate turns down."""
OVERRIDE_MANIFEST_FORMAT = 4
"""The format of manifests whose presence gate a confident head overrules (``gate.override``):
taggers that read only formats 1 to 3 refuse them instead of turning down the windows it keeps."""
AVERAGED_MANIFEST_FORMAT = 5
"""The format of manifests whose scores are the average of member model directories
(``manifest["members"]``, `tagger.model.average`): taggers that read only formats 1 to 4 refuse them
instead of failing on a manifest whose classifiers name no file."""
SOFT_GATE_MANIFEST_FORMAT = 6
"""The format of manifests whose presence gate is soft (``gate.exponent``, `tagger.model.gate.softened`):
taggers that read only formats 1 to 5 refuse them instead of reading thresholds chosen for softened
scores as thresholds for the heads' own."""
MANIFEST_FORMATS = (MANIFEST_FORMAT, HARMONIC_MANIFEST_FORMAT, GATED_MANIFEST_FORMAT, OVERRIDE_MANIFEST_FORMAT,
                    AVERAGED_MANIFEST_FORMAT, SOFT_GATE_MANIFEST_FORMAT)  # fmt: skip
MODELS_ENV = "TAGGER_MODELS"
TRAIN_INTO_MEMBERS = ("{out} is an averaged ensemble: train into each of its members (a copy of the member's folder, "
                      "--out MEMBER), then combine them again (tagger combine)")  # fmt: skip
"""Why `tagger train` does not train into an averaged ensemble, and what to do instead."""


def default_model_dir() -> Path:
    """``$TAGGER_MODELS``, else the shipped models (`shipped_model_dir`)."""
    env = os.environ.get(MODELS_ENV)
    if env:
        return Path(env)
    return shipped_model_dir()


def shipped_model_dir() -> Path:
    """The shipped models: the installed package's ``tagger/models``, else the repository's ``models/``."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "models"
    if (installed / MANIFEST).is_file():
        return installed
    return here.parent / "models"


MODEL_FILE_NAMES = ("manifest.json", "manifest.json.tmp")
"""What `tagger.model.store` writes into a model directory, besides its ``*.keras`` files."""


def check_output_dir(out_dir: str | os.PathLike, *, hint: str, other_files: bool = True) -> None:
    """Refuse to write models into `out_dir` (`tagger train --out`, `tagger combine --out`) when it
    is, or lies in, the shipped models (part of the installation, replaced only by copying a
    finished model folder over them), or is a member of an averaged ensemble (whose manifest
    records the member's sha256: changed in place, the ensemble no longer loads), or a folder of
    other files than a model's (a music folder given by mistake; `other_files`: check that too).
    `hint`: what to do instead."""
    out = Path(out_dir).resolve()
    shipped = shipped_model_dir().resolve()
    if out == shipped or shipped in out.parents:
        raise UserError(f"{out_dir} is tagger's shipped models: {hint}, then pass it with --models or ${MODELS_ENV}")
    for above in list(out.parents)[:3]:
        if not (above / MANIFEST).is_file():
            continue
        try:
            members = read_manifest(above).get("members") or []
        except ModelError:
            continue
        for m in members if isinstance(members, list) else ():
            if isinstance(m, dict) and (above / str(m.get("dir", ""))).resolve() in (out, *out.parents):
                raise UserError(f"{out_dir} is a member of the averaged ensemble {above}, which records its files' "
                                f"hashes: {hint} (a copy outside the ensemble), then combine again")  # fmt: skip
    if other_files and out.is_dir() and not (out / MANIFEST).is_file():
        other = sorted(p.name for p in out.iterdir() if not (p.name in MODEL_FILE_NAMES or p.name.endswith(".keras")))
        if other:
            shown = ", ".join(other[:3]) + (f" and {len(other) - 3} more" if len(other) > 3 else "")
            raise UserError(f"{out_dir} holds files that are not a model's ({shown}): {hint}")
    elif out.exists() and not out.is_dir():
        raise UserError(f"{out_dir} is a file, not a folder: {hint}")


def read_manifest(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / MANIFEST
    if Path(model_dir).exists() and not Path(model_dir).is_dir():  # (--models song.flac: "song.flac/manifest.json")
        raise ModelError(model_dir, "is a file, not a model folder: give --models (or $TAGGER_MODELS) the folder "
                                    "holding manifest.json")  # fmt: skip
    if not path.is_file():
        raise ModelError(path, "model manifest not found (train models with `tagger train` or pass --models DIR)")
    try:
        manifest = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:  # (ValueError: also an integer of 5,000 digits)
        raise ModelError(path, f"invalid manifest JSON: {exc}") from None
    if not isinstance(manifest, dict):
        raise ModelError(path, f"a manifest is a JSON object, not {type(manifest).__name__}")
    if manifest.get("format") not in MANIFEST_FORMATS:
        raise ModelError(path, f"unsupported manifest format {manifest.get('format')!r} (this tagger reads "
                               f"{' or '.join(map(str, MANIFEST_FORMATS))}: a newer tagger made these models)")
    for key in ("families", "features", "classifiers", "version"):
        if key not in manifest:
            raise ModelError(path, f"manifest lacks {key!r}")
    families = manifest["families"]
    if not isinstance(families, list) or not families or not all(isinstance(f, str) and f.strip() for f in families):
        raise ModelError(path, f"the manifest's families must be a list of names, not {families!r}")
    if len(set(families)) != len(families):
        raise ModelError(path, f"the manifest lists a family twice ({', '.join(families)})")
    if not isinstance(manifest["features"], dict):
        raise ModelError(path, f"the manifest's features must be an object, not {manifest['features']!r}")
    version = manifest["version"]
    if isinstance(version, bool) or not isinstance(version, (str, int)) or not str(version).strip():
        raise ModelError(path, f"the manifest's version must be a name, not {version!r}")
    if not isinstance(manifest["classifiers"], dict) or not manifest["classifiers"]:
        raise ModelError(path, "the manifest's classifiers must be an object with one entry per family")
    _check_aggregation(path, manifest.get("aggregation", {}))
    if manifest["format"] == AVERAGED_MANIFEST_FORMAT and not (isinstance(manifest.get("members"), list) and manifest["members"]):
        raise ModelError(path, "an averaged ensemble's manifest lists no members")
    for fam, entry in (manifest["classifiers"] or {}).items() if isinstance(manifest["classifiers"], dict) else ():
        t = entry.get("threshold", 0.5) if isinstance(entry, dict) else None
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0:
            raise ModelError(path, f"threshold of {fam!r} is {t!r}: a probability threshold must lie in [0, 1]")
    gate = manifest.get("gate")
    if gate is not None:
        a = gate.get("exponent") if isinstance(gate, dict) else None
        if a is not None and (isinstance(a, bool) or not isinstance(a, (int, float)) or not 0.0 < a <= 4.0):
            raise ModelError(path, f"exponent of the presence gate is {a!r}: a soft gate's exponent must lie in (0, 4]")
        t = gate.get("threshold") if isinstance(gate, dict) else None
        bad = isinstance(t, bool) or not isinstance(t, (int, float)) or not 0.0 <= t <= 1.0
        if bad and (a is None or t is not None):  # (a soft gate has no threshold)
            raise ModelError(path, f"threshold of the presence gate is {t!r}: a probability threshold must lie in [0, 1]")
        h = gate.get("override")
        if h is not None and (isinstance(h, bool) or not isinstance(h, (int, float)) or not 0.0 <= h <= 1.0):
            raise ModelError(path, f"override of the presence gate is {h!r}: a head score must lie in [0, 1]")
    return manifest


_AGGREGATION_RANGES = {"quantile": (0.0, 1.0), "min_windows": (1, 10_000), "merge_gap": (0, 10_000),
                       "hop_seconds": (0.05, 3600.0)}  # fmt: skip
"""The manifest's aggregation parameters that a model may set, and the values they may take."""


def _check_aggregation(path: Path, aggregation) -> None:
    """Refuse aggregation parameters no track could be aggregated with (a tampered manifest): they
    would fail every file, or the scan part-way, instead of the model at load."""
    if not isinstance(aggregation, dict):
        raise ModelError(path, f"the manifest's aggregation must be an object, not {aggregation!r}")
    for key, (low, high) in _AGGREGATION_RANGES.items():
        value = aggregation.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ModelError(path, f"aggregation {key} is {value!r}: it must lie in [{low:g}, {high:g}]")


def manifest_format(manifest: dict) -> int:
    """The oldest format that holds what the manifest needs (a soft gate, members averaged, a gate's
    override, a gate, the harmonic front end)."""
    if manifest.get("gate") and manifest["gate"].get("exponent") is not None:
        return SOFT_GATE_MANIFEST_FORMAT
    if manifest.get("members"):
        return AVERAGED_MANIFEST_FORMAT
    if manifest.get("gate") and manifest["gate"].get("override") is not None:
        return OVERRIDE_MANIFEST_FORMAT
    if manifest.get("gate"):
        return GATED_MANIFEST_FORMAT
    return HARMONIC_MANIFEST_FORMAT if (manifest.get("features") or {}).get("harmonic") else MANIFEST_FORMAT


def write_manifest(model_dir: str | os.PathLike, manifest: dict) -> Path:
    """Write the manifest atomically, in the format its contents need (`manifest_format`)."""
    manifest["format"] = manifest_format(manifest)
    path = Path(model_dir) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)
    return path


def reference_entry(ref: dict, *, why: str) -> dict:
    """A manifest's ``reference`` entry: the version of the models `ref` (a manifest) whose
    thresholds and per-track rule it carries over, `why`, and their AUCs and validation figures
    (a production fit's, from `tagger.model.record`; an averaged ensemble's, `tagger.model.average`)."""
    return {
        "version": ref["version"],
        "why": why,
        "auc": {f: c.get("metrics", {}).get("auc") for f, c in ref["classifiers"].items()},
        "validation": ref.get("validation", {}),
        "validation_left_out": ref.get("validation_left_out", {}),
        "aggregation_calibration": ref.get("aggregation_calibration", {}),
    }


def manifest_hash(manifest: dict) -> str:
    """A stable hash of the manifest content (what the database records per model version)."""
    return hashlib.sha256(json.dumps(manifest, sort_keys=True).encode()).hexdigest()


def graph_hash(manifest: dict, families: Sequence[str]) -> str:
    """A stable hash of what the runner of `families` is built from: the feature configuration and
    the recorded sha256 of every file it runs (of each member's manifest, for an averaged ensemble),
    not the thresholds, gate decisions and aggregation applied to its scores. The exported ONNX
    graph is cached by it, so models decided anew (`tagger combine` choosing its operating point
    after a first load) reuse their export."""
    gate = manifest.get("gate")
    if manifest.get("members"):
        files = [m.get("sha256") for m in manifest["members"]]
    else:
        files = [manifest["classifiers"][f].get("sha256") for f in families]
        files += [(manifest.get("trunk") or {}).get("sha256"), (gate or {}).get("sha256")]
    parts = {"features": manifest["features"], "files": files, "gated": gate is not None}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def runner_families(manifest: dict, families: Sequence[str] | None = None) -> tuple[str, ...]:
    """The families the runner of `families` (None: every one) computes, in the manifest's order:
    all of the manifest's when a gate's override listens to every head, else the ones asked for."""
    every = tuple(manifest["families"])
    gate = manifest.get("gate")
    if families is None or (gate is not None and gate.get("override") is not None):
        return every
    return tuple(f for f in every if f in families)


def export_key(manifest: dict, families: Sequence[str] | None = None) -> str:
    """The cache entry of the ONNX export that runs `families` (None: every one) of `manifest`
    (`tagger.model.runtime.cache_key`): the one place that knows it, for the loader, the CLI's
    guess whether TensorFlow will be needed, and the benchmark."""
    run = runner_families(manifest, families)
    return R.cache_key(graph_hash(manifest, run), run)


def check_feature_config(path: Path, recorded: dict) -> F.FeatureConfig:
    """Refuse a manifest whose signal geometry differs from this build's constants."""
    unknown = sorted(set(recorded) - set(F.FeatureConfig.__dataclass_fields__))
    if unknown:
        raise ModelError(path, f"unknown feature setting {', '.join(unknown)} (a newer tagger made these models)")
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
    # the settings a model may choose: of the right type and range, or every file would fail (or
    # silently score NaN features) part-way through a scan instead of the model at load
    limits = {"n_mels": (int, 1, C.N_FFT // 2 + 1), "fmin": ((int, float), 0.0, C.SAMPLE_RATE / 2),
              "top_db": ((int, float), 1e-3, 1e3), "harmonic": (bool, False, True)}  # fmt: skip
    for key, (kind, low, high) in limits.items():
        value = getattr(cfg, key)
        wrong_type = not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool)
        if wrong_type or not low <= value <= high or (key == "fmin" and value >= high):
            raise ModelError(path, f"feature setting {key}={value!r} is not a {key} this tagger can compute "
                                   f"(it lies in [{low:g}, {high:g}])")  # fmt: skip
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
