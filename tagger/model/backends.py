"""The inference backends: what runs the classifiers of a model directory, behind one protocol.

A backend has a `name`, says whether it can run here (`available`), and `load`s the verified files
of a model directory (`ModelFiles`) into a runner, ``runner(features) -> scores`` [shape=(n, bins,
frames)] -> [shape=(n, n_families)], whose ``name`` is the backend's. `BACKENDS` lists them in order
of preference; ``TAGGER_RUNTIME`` picks one by name, and ``auto`` (the default) takes the first
that is available and faithful (a backend that cannot reproduce Keras on the model raises
`Unfaithful`, and the next one is tried). Each also says whether it would load a model without
importing TensorFlow (`without_tensorflow`: ``tagger scan`` asks before loading, through
`loads_without_tensorflow`). A new backend is one class here and one entry in `BACKENDS`.

- ``onnxruntime``: the classifiers exported to one ONNX graph (`tagger.model.runtime`), verified
  against Keras and cached by manifest hash, so a later load does not even import TensorFlow.
- ``keras``: the classifiers joined into one Keras model, run as a traced TensorFlow function.

This module also sizes the inference thread pools (`default_threads`, `limit_threads`,
`configure_tensorflow_threads`) and silences TensorFlow's start-up logging (`quiet_tensorflow`).
Nothing heavy is imported at import time.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from tagger.errors import ModelError, UserError
from tagger.model import runtime as R

if TYPE_CHECKING:
    from tagger import features as F

log = logging.getLogger(__name__)

RUNTIME_ENV = "TAGGER_RUNTIME"
"""The backend by name (``keras``, ``onnxruntime``), or ``auto`` (default): the first of `BACKENDS`
that is available and faithful."""
THREADS_ENV = "TAGGER_INFERENCE_THREADS"
"""Intra-op threads of the inference backend (default: all cores)."""
INFERENCE_THREAD_VARS = (THREADS_ENV, "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")
"""Environment variables sizing the inference thread pools (ONNX Runtime, TensorFlow)."""


# -- threads and logging ----------------------------------------------------------------------------
def quiet_tensorflow() -> None:
    """Import TensorFlow without its start-up chatter on stderr (call it before anything imports TF).

    Its C++ log lines are off (``TF_CPP_MIN_LOG_LEVEL=3``: real failures raise anyway); on Linux
    without an NVIDIA driver CUDA is not probed (``CUDA_VISIBLE_DEVICES=""``, whose failed
    ``cuInit`` is logged as an error); and what its libraries print before their logging is set up
    is caught during the import, shown only if the import fails. Values the user set are kept."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "KERAS_HOME" not in os.environ and not os.path.isabs(os.path.expanduser("~")):
        # (no home, no $HOME nor user database entry: TensorFlow's Keras wrote ``~/.keras/keras.json``
        # under the current folder, which may be the music library; Keras's own fallback instead)
        import tempfile

        os.environ["KERAS_HOME"] = os.path.join(tempfile.gettempdir(), ".keras")
    if sys.platform.startswith("linux") and "CUDA_VISIBLE_DEVICES" not in os.environ:
        if not os.path.exists("/proc/driver/nvidia"):
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
    if "tensorflow" in sys.modules:
        return
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            import tensorflow  # noqa: F401
        except ImportError:
            failed = True  # the command that needs it says so
        else:
            failed = False
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        if failed:
            caught.seek(0)
            sys.stderr.write(caught.read().decode("utf-8", "replace"))


def default_threads() -> int:
    """Intra-op threads for inference: ``$TAGGER_INFERENCE_THREADS``, else all cores (the scan's
    workers mostly wait on the model)."""
    cores = os.cpu_count() or 1
    env = os.environ.get(THREADS_ENV)
    if env:
        from tagger.errors import UserError

        most = 4 * cores  # (0 or -5 was taken for 1 in silence; 100000 threads were asked of the runtime)
        try:
            n = int(env)
        except ValueError:
            n = None
        if n is None or not 1 <= n <= most:
            raise UserError(f"${THREADS_ENV} is {env!r}: give a number of threads from 1 to {most} (4 per core), "
                            f"e.g. {cores}")  # fmt: skip
        return n
    return cores


def configure_tensorflow_threads(threads: int = 0, *, inter: int | None = None) -> None:
    """Size TensorFlow's thread pools: `threads` intra-op (0 = all cores), `inter` inter-op
    (default: 1 or 2). Imports TensorFlow; a no-op once TensorFlow is running."""
    import tensorflow as tf

    n = threads or os.cpu_count() or 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(inter if inter is not None else max(1, min(2, n)))
    except RuntimeError:
        pass  # already initialised in this process


def limit_threads(n: int) -> None:
    """Run inference on `n` threads in this process: the thread variables (those the user set are
    left alone) and, when TensorFlow is already imported (the variables may come too late), its pools."""
    for var in INFERENCE_THREAD_VARS:
        os.environ.setdefault(var, str(n))
    if "tensorflow" in sys.modules:
        configure_tensorflow_threads(n, inter=n)


# -- the protocol -----------------------------------------------------------------------------------
@dataclass
class Member:
    """The verified files of one model of a model directory: per-family classifiers, or a shared
    trunk with one head per family (and a presence gate)."""

    classifiers: tuple[Path, ...]
    """One file per family, in `ModelFiles.families` order (heads reading the trunk's embedding if `trunk`)."""
    trunk: Path | None
    """The shared trunk's file, or None (each classifier reads the features)."""
    gate: Path | None = None
    """The presence gate's file (a head on the trunk's embedding, `tagger.model.gate`), or None. Its
    score is the runner's last column, after the families'."""


@dataclass
class ModelFiles:
    """The verified files of a model directory, as a backend receives them: one member, or several
    whose scores the runner averages (an averaged ensemble, `tagger.model.average`)."""

    members: tuple[Member, ...]
    feature_config: F.FeatureConfig
    graph_hash: str
    """What the runner is built from (`tagger.model.manifest.graph_hash`): its export's cache key."""
    families: tuple[str, ...]
    _keras: tuple | None = field(default=None, repr=False)

    @property
    def folder(self) -> Path:
        """Where the files lie (named in errors)."""
        first = self.members[0] if self.members else None
        return first.classifiers[0].parent if first is not None and first.classifiers else Path(".")

    def keras_models(self):
        """(combined Keras model, [(trunk model or None, classifier models with the gate last)] per
        member), loaded once per `ModelFiles` (so a backend that falls back to Keras does not load
        the files twice)."""
        if self._keras is None:
            self._keras = _load_combined(self.members, self.feature_config)
        return self._keras


class Runner(Protocol):
    name: str

    def __call__(self, feats: np.ndarray) -> np.ndarray: ...


class Backend(Protocol):
    name: str

    def available(self) -> bool:
        """Whether this backend's libraries are installed."""
        ...

    def load(self, files: ModelFiles) -> Runner:
        """A runner for the model; raises `Unfaithful` when it cannot run this model as Keras does."""
        ...

    def without_tensorflow(self, key: str) -> bool:
        """Whether `load` would import no TensorFlow for the model whose export key is ``key``
        (`tagger.model.manifest.export_key`): a guess made before the load, so that TensorFlow is
        imported quietly when it will be (a wrong guess costs its start-up chatter, never a result)."""
        ...


class Unfaithful(Exception):
    """A backend cannot run this model (an unsupported layer) or its outputs differ from Keras."""


# -- Keras ------------------------------------------------------------------------------------------
def load_classifier(path: str | os.PathLike):
    """Load one classifier file in Keras safe mode (no arbitrary code execution)."""
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False, safe_mode=True)
    except Exception as exc:  # Keras raises many types for corrupt/unsafe files
        reason = _newer_keras(path, keras.__version__) or f"{type(exc).__name__}: {exc}"
        raise ModelError(path, f"cannot load classifier: {reason}") from None


def _release(version: str) -> tuple[int, ...]:
    """The release numbers of a version string: '3.15.1' -> (3, 15, 1), '3.16.0.dev1' -> (3, 16, 0)."""
    import re

    m = re.match(r"\d+(?:\.\d+)*", version.strip())
    return tuple(int(p) for p in m.group(0).split(".")) if m else ()


def _newer_keras(path: str | os.PathLike, running: str) -> str | None:
    """Why a file failed to load when a newer Keras than `running` saved it (its ``metadata.json``):
    an older Keras refuses the layer settings it does not know with a page-long error (Keras 3.12 on
    models saved by 3.15: "Unrecognized keyword arguments passed to Dense: {'quantization_config':
    None}"). None when the file names no newer Keras."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            saved = str(json.loads(z.read("metadata.json"))["keras_version"])
    except (OSError, KeyError, ValueError, TypeError, zipfile.BadZipFile):
        return None
    if not _release(saved) or _release(running) >= _release(saved):
        return None
    return f"it was saved by Keras {saved}, which this Keras {running} cannot read (pip install 'keras>={saved}')"


def _load_member(member: Member, cfg: F.FeatureConfig):
    """Load one member's trunk (if any) and classifiers, the gate last, checking that their shapes fit.
    Returns (trunk model or None, classifier models)."""
    paths = (*member.classifiers, member.gate) if member.gate is not None else member.classifiers
    models = [load_classifier(p) for p in paths]
    trunk_model = load_classifier(member.trunk) if member.trunk is not None else None
    for path, m in ((member.trunk, trunk_model), *zip(paths, models)):
        if m is not None:
            _check_weights(path, m)
    for path, m in zip(paths, models):
        if tuple(m.output_shape[1:]) != (1,):
            raise ModelError(path, f"classifier output {m.output_shape[1:]} is not one score per window (1,): "
                                   "the file holds another model than a family's classifier")  # fmt: skip
    if trunk_model is not None and tuple(trunk_model.input_shape[1:]) != cfg.shape:
        raise ModelError(member.trunk, f"trunk input {trunk_model.input_shape[1:]} does not match the feature shape {cfg.shape}")
    head_input = tuple(trunk_model.output_shape[1:]) if trunk_model is not None else cfg.shape
    for path, m in zip(paths, models):
        if tuple(m.input_shape[1:]) != head_input:
            what = "the trunk's embedding" if trunk_model is not None else "the feature shape"
            raise ModelError(path, f"classifier input {m.input_shape[1:]} does not match {what} {head_input}")
    return trunk_model, models


def _check_weights(path, model) -> None:
    """Refuse a model with a weight that is not a finite number (NaN or infinite, e.g. from a run
    that diverged): its scores would be NaN, which no threshold passes, so every track would silently
    lose that family."""
    import keras

    for w in model.weights:
        values = np.asarray(keras.ops.convert_to_numpy(w))
        if values.dtype.kind == "f" and not np.isfinite(values).all():
            bad = int(np.size(values) - np.isfinite(values).sum())
            raise ModelError(path, f"weights {w.path} hold {bad} value(s) that are NaN or infinite (refusing to load)")


def _load_combined(members: Sequence[Member], cfg: F.FeatureConfig):
    """Load every member (`_load_member`) and join them into one model with an (n, n_families) output
    (the gate's score last, if any): the members' outputs averaged. Returns (combined model,
    [(trunk model or None, classifier models)] per member)."""
    import keras

    loaded = [_load_member(m, cfg) for m in members]
    inp = keras.Input(shape=cfg.shape, name="features")
    member_outs = []
    for k, (trunk_model, models) in enumerate(loaded):
        prefix = "" if len(loaded) == 1 else f"member_{k}_"
        x = inp
        if trunk_model is not None:
            trunk_model.name = f"{prefix}trunk"
            x = trunk_model(inp)
        outs = []
        for i, m in enumerate(models):
            m.name = f"{prefix}family_{i}"
            outs.append(m(x))
        member_outs.append(outs[0] if len(outs) == 1 else keras.layers.Concatenate(name=f"{prefix}scores")(outs))
    out = member_outs[0] if len(member_outs) == 1 else keras.layers.Average(name="averaged")(member_outs)
    return keras.Model(inp, out, name="ensemble"), loaded


class KerasRunner:
    """A Keras model as one traced TensorFlow function (much faster than eager calls)."""

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


class KerasBackend:
    """The classifiers joined into one Keras model (the reference every other backend must match)."""

    name = "keras"

    def available(self) -> bool:
        return importlib.util.find_spec("keras") is not None

    def load(self, files: ModelFiles) -> Runner:
        return KerasRunner(files.keras_models()[0])

    def without_tensorflow(self, key: str) -> bool:
        return False


# -- ONNX Runtime -----------------------------------------------------------------------------------
class OnnxBackend:
    """The classifiers exported to one ONNX graph and run with ONNX Runtime, when the export matches
    Keras within `runtime.TOLERANCE` on `runtime.reference_batch`. The export is cached by the hash
    of the files it runs and the family selection: a cached graph loads without TensorFlow."""

    name = "onnxruntime"

    def available(self) -> bool:
        return R.onnxruntime_available()

    def without_tensorflow(self, key: str) -> bool:
        folder = R.cache_dir()  # (an export cached: loaded without TensorFlow; exporting imports it)
        return folder is not None and (folder / key).is_file()

    def load(self, files: ModelFiles) -> Runner:
        threads = default_threads()  # a bad $TAGGER_INFERENCE_THREADS is the user's error, not the export's
        key = R.cache_key(files.graph_hash, files.families)
        cached = R.load_cached(key)
        if cached is not None:
            try:
                return R.OnnxRunner(cached, threads=threads)
            except Exception as exc:  # a damaged cache entry: export again
                log.debug("cached ONNX model %s unusable (%s); exporting again", key, exc)
        model, loaded = files.keras_models()
        try:
            blob = R.export_onnx(loaded, files.feature_config.shape)
            runner = R.OnnxRunner(blob, threads=threads)
            diff = R.max_difference(runner, model, files.feature_config.shape)
        except Exception as exc:  # an unsupported layer, or onnxruntime refusing the graph
            log.info("the classifiers cannot run on ONNX Runtime (export not possible: %s)", exc)
            raise Unfaithful(f"export not possible: {exc}") from exc
        if diff > R.TOLERANCE:
            log.warning("ONNX export differs from Keras by %.2g (> %g); not using ONNX Runtime", diff, R.TOLERANCE)
            raise Unfaithful(f"the export differs from Keras by {diff:.2g}")
        R.store_cached(key, blob)
        return runner


BACKENDS: tuple[Backend, ...] = (OnnxBackend(), KerasBackend())
"""Every backend, in order of preference for ``auto``."""


def choice() -> str:
    """The backend ``$TAGGER_RUNTIME`` names (lower case), or 'auto'."""
    return os.environ.get(RUNTIME_ENV, "auto").strip().lower() or "auto"


def loads_without_tensorflow(key: str) -> bool:
    """Whether the backend `load_runner` tries first (the one ``$TAGGER_RUNTIME`` names, or ``auto``'s
    first available one) would load the model whose export key is ``key`` without importing
    TensorFlow (`Backend.without_tensorflow`); False where no backend is available."""
    name = choice()
    first = next((b for b in BACKENDS if name in ("auto", b.name) and b.available()), None)
    return first is not None and first.without_tensorflow(key)


def load_runner(files: ModelFiles, *, backend: str | None = None) -> Runner:
    """A runner for the model from the backend named `backend` (default: ``$TAGGER_RUNTIME``);
    ``auto``: the first backend of `BACKENDS` that is available and faithful."""
    name = (backend or choice()).strip().lower()
    if name == "auto":
        candidates = [b for b in BACKENDS if b.available()]
    else:
        candidates = [b for b in BACKENDS if b.name == name]
        if not candidates:
            raise UserError(f"{RUNTIME_ENV}={name!r}: unknown runtime (choose auto, {', '.join(b.name for b in BACKENDS)})")
        if not candidates[0].available():
            raise UserError(f"{RUNTIME_ENV}={name}: {name} is not installed")
    reasons = []
    for b in candidates:
        try:
            runner = b.load(files)
        except Unfaithful as exc:
            if name != "auto":
                raise ModelError(files.folder, f"cannot run the classifiers with {b.name}: {exc}") from None
            reasons.append(f"{b.name}: {exc}")
            continue
        log.debug("running the classifiers with %s", b.name)
        return runner
    raise ModelError(files.folder, "no inference backend can run the classifiers (" + "; ".join(reasons or ["none installed"]) + ")")  # fmt: skip
