"""The model manifest: its formats, reading and checking it, writing it, and what is derived from it.

A model directory holds one Keras file per family plus ``manifest.json``: the families in order,
the feature configuration, per-family thresholds, file hashes, recipe, data description and
validation metrics. `read_manifest` refuses a manifest this tagger cannot run (a newer format, a
missing entry, a threshold or aggregation parameter out of range), `check_feature_config` one whose
signal geometry differs from this build's; `write_manifest` writes it atomically in the oldest
format that holds it. `manifest_hash`, `graph_hash` and `export_key` are the hashes the database
and the ONNX export cache know a model by.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

from tagger import constants as C
from tagger import features as F
from tagger.errors import ModelError
from tagger.model import runtime as R

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
