"""A lean inference runtime: the Keras classifiers exported, with their own weights, to ONNX Runtime.

The ``.keras`` files stay the source of truth. `export_onnx` writes the same layers with the same
weights into one ONNX graph (the classifiers side by side, outputs concatenated in family order;
the members of an averaged ensemble side by side, their outputs averaged);
`OnnxRunner` runs it with ONNX Runtime. The exported graph is verified against Keras on a fixed
random batch before use (`verify`), and cached in the user cache folder keyed by the hash of the
files it runs (`tagger.model.manifest.graph_hash`: thresholds decided anew reuse it), so a later
scan neither imports TensorFlow nor converts again.

Only the layer types of `tagger.model.architectures` are exported (Conv2D, BatchNormalization,
Activation, MaxPooling2D, global pooling, Concatenate, Flatten, Dense, Dropout, the channel
Reshape); any other raises `UnsupportedModel`. `tagger.model.backends.OnnxBackend` puts these
together (export, verify, cache) behind the backend protocol; without it, Keras runs the model.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

EXPORT_VERSION = 1
"""Bump when the exporter changes: cached graphs of another version are not reused."""
TOLERANCE = 1e-4
"""Largest absolute difference from Keras accepted for any output probability."""
CACHE_ENTRIES = 8
"""Exported graphs kept in the cache (the most recently written)."""


class UnsupportedModel(Exception):
    """The classifier has a layer or setting the exporter does not handle."""


def import_onnxruntime():
    """``import onnxruntime``, its telemetry off (``ORT_DISABLE_TELEMETRY=1``, unless the user set
    it): ONNX Runtime 1.32 otherwise writes a device ID and an event store (1.1 MB after a day of
    runs) under ``~/.cache/Microsoft/DeveloperTools/.onnxruntime`` at every import, and where the
    home cannot be written prints a coloured line on stderr ("Failed to persist telemetry device
    ID") on every command that loads the models."""
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    import onnxruntime

    return onnxruntime


def onnxruntime_available() -> bool:
    """Whether ONNX Runtime imports and ``onnx`` (the exporter's library) is installed. ``onnx`` is
    only looked up, not imported: its import (ml_dtypes, protobuf) took 0.5-0.8 s of every scan's
    start-up, and a scan whose export is cached never uses it (an export imports it, and an
    ``onnx`` that is there but fails to import makes the export fail, which `load_runner` takes as
    the runtime being unusable: the next backend is tried, as before)."""
    import importlib.util

    try:
        if importlib.util.find_spec("onnx") is None:
            return False
        import_onnxruntime()
    except (ImportError, ValueError):  # (find_spec: ValueError for a module whose __spec__ is None)
        return False
    return True


def cache_dir() -> Path | None:
    """``$XDG_CACHE_HOME/tagger/runtime`` (usually ``~/.cache/tagger/runtime``); None when neither
    names an absolute folder (a relative ``$XDG_CACHE_HOME`` is ignored, as the XDG specification
    says; no ``$HOME`` and no home in the user database): exports are then not cached, rather than
    written under the current folder (which may be the music library)."""
    from tagger.paths import cache_home

    base = cache_home()
    return None if base is None else Path(base) / "tagger" / "runtime"


def cache_key(graph_hash: str, families: Sequence[str]) -> str:
    """Cache file name of an exported ensemble: the hash of its files, family selection, exporter version."""
    sel = hashlib.sha256(",".join(families).encode()).hexdigest()[:8]
    return f"{graph_hash[:32]}-{sel}-v{EXPORT_VERSION}.onnx"


# -- export -------------------------------------------------------------------------------------------
class _Graph:
    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self.helper, self.numpy_helper = helper, numpy_helper
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def name(self, hint: str) -> str:
        self.n += 1
        return f"{hint}_{self.n}"

    def const(self, hint: str, value: np.ndarray) -> str:
        name = self.name(hint)
        self.inits.append(self.numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: Sequence[str], hint: str | None = None, **attrs) -> str:
        out = self.name(hint or op_type.lower())
        self.nodes.append(self.helper.make_node(op_type, list(inputs), [out], **attrs))
        return out


def _activation(g: _Graph, x: str, activation: str) -> str:
    if activation in ("linear", None):
        return x
    if activation == "relu":
        return g.op("Relu", [x])
    if activation == "sigmoid":
        return g.op("Sigmoid", [x])
    if activation == "tanh":
        return g.op("Tanh", [x])
    raise UnsupportedModel(f"activation {activation!r}")


def _name_of_activation(fn) -> str:
    return fn if isinstance(fn, str) else getattr(fn, "__name__", str(fn))


def _pads(cfg: dict, kernel: Sequence[int]) -> list[int]:
    strides = tuple(cfg.get("strides", (1, 1)))
    if cfg.get("padding") == "valid":
        return [0, 0, 0, 0]
    if cfg.get("padding") == "same" and strides == (1, 1) and all(k % 2 == 1 for k in kernel):
        return [kernel[0] // 2, kernel[1] // 2, kernel[0] // 2, kernel[1] // 2]
    raise UnsupportedModel(f"padding {cfg.get('padding')!r} with strides {strides} and kernel {tuple(kernel)}")


def _layer(g: _Graph, layer, x: list[str], ranks: list[int]) -> tuple[str, int]:
    """Emit one Keras layer; tensors of rank 4 are kept NCHW. Returns (output name, rank)."""
    kind = type(layer).__name__
    cfg = layer.get_config()
    w = [np.asarray(v, dtype=np.float32) for v in layer.get_weights()]
    if kind in ("Dropout", "SpatialDropout2D", "GaussianNoise", "GaussianDropout", "ActivityRegularization"):
        return x[0], ranks[0]
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise UnsupportedModel(f"{kind} with data_format {cfg.get('data_format')!r}")
    if kind == "Reshape":
        target = tuple(cfg["target_shape"])
        in_shape = tuple(layer.input.shape[1:])
        if ranks[0] == 3 and target == (*in_shape, 1):  # (n, H, W) -> NHWC (n, H, W, 1) == NCHW (n, 1, H, W)
            return g.op("Unsqueeze", [x[0], g.const("axes", np.array([1], dtype=np.int64))]), 4
        raise UnsupportedModel(f"Reshape {in_shape} -> {target}")
    if kind == "Conv2D":
        if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1) or cfg.get("groups", 1) != 1:
            raise UnsupportedModel("dilated or grouped Conv2D")
        kernel = w[0]  # (kh, kw, cin, cout) -> (cout, cin, kh, kw)
        inputs = [x[0], g.const("W", np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))]
        if cfg.get("use_bias", True):
            inputs.append(g.const("B", w[1]))
        y = g.op("Conv", inputs, kernel_shape=list(kernel.shape[:2]), strides=list(cfg.get("strides", (1, 1))),
                 pads=_pads(cfg, kernel.shape[:2]))  # fmt: skip
        return _activation(g, y, _name_of_activation(cfg.get("activation"))), 4
    if kind == "BatchNormalization":
        if cfg.get("axis") not in (-1, [-1], (-1,), 3, [3]) and not (ranks[0] == 2 and cfg.get("axis") in (1, [1])):
            raise UnsupportedModel(f"BatchNormalization over axis {cfg.get('axis')!r}")
        i = 0
        gamma = w[i] if cfg.get("scale", True) else None
        i += 1 if cfg.get("scale", True) else 0
        beta = w[i] if cfg.get("center", True) else None
        i += 1 if cfg.get("center", True) else 0
        mean, var = w[i], w[i + 1]
        gamma = np.ones_like(mean) if gamma is None else gamma
        beta = np.zeros_like(mean) if beta is None else beta
        y = g.op("BatchNormalization", [x[0], g.const("gamma", gamma), g.const("beta", beta), g.const("mean", mean),
                                        g.const("var", var)], epsilon=float(cfg.get("epsilon", 1e-3)))  # fmt: skip
        return y, ranks[0]
    if kind == "Activation":
        return _activation(g, x[0], _name_of_activation(cfg.get("activation"))), ranks[0]
    if kind == "ReLU" and not cfg.get("max_value") and not cfg.get("negative_slope") and not cfg.get("threshold"):
        return g.op("Relu", [x[0]]), ranks[0]
    if kind == "ZeroPadding2D":
        (top, bottom), (left, right) = (tuple(p) for p in cfg["padding"])
        pads = np.array([0, 0, top, left, 0, 0, bottom, right], dtype=np.int64)  # NCHW begins, then ends
        return g.op("Pad", [x[0], g.const("pads", pads)]), 4
    if kind in ("MaxPooling2D", "AveragePooling2D"):
        pool = list(cfg["pool_size"])
        strides = list(cfg.get("strides") or pool)
        if cfg.get("padding", "valid") != "valid":
            raise UnsupportedModel(f"{kind} with padding {cfg.get('padding')!r}")
        op = "MaxPool" if kind == "MaxPooling2D" else "AveragePool"
        return g.op(op, [x[0]], kernel_shape=pool, strides=strides), 4
    if kind in ("GlobalAveragePooling2D", "GlobalMaxPooling2D"):
        y = g.op("GlobalAveragePool" if kind == "GlobalAveragePooling2D" else "GlobalMaxPool", [x[0]])
        if cfg.get("keepdims"):
            raise UnsupportedModel(f"{kind} with keepdims")
        return g.op("Flatten", [y], axis=1), 2
    if kind == "Flatten":
        if ranks[0] == 4:  # Keras flattens NHWC order
            return g.op("Flatten", [g.op("Transpose", [x[0]], perm=[0, 2, 3, 1])], axis=1), 2
        return g.op("Flatten", [x[0]], axis=1), 2
    if kind == "Concatenate":
        axis = int(cfg.get("axis", -1))
        rank = ranks[0]
        if any(r != rank for r in ranks) or axis not in (-1, rank - 1):
            raise UnsupportedModel(f"Concatenate over axis {axis}")
        return g.op("Concat", x, axis=1), rank  # the channel axis, NCHW or (n, features)
    if kind == "Dense":
        if ranks[0] != 2:
            raise UnsupportedModel("Dense on a tensor of rank > 2")
        y = g.op("MatMul", [x[0], g.const("W", w[0])])
        if cfg.get("use_bias", True):
            y = g.op("Add", [y, g.const("B", w[1])])
        return _activation(g, y, _name_of_activation(cfg.get("activation"))), 2
    raise UnsupportedModel(f"layer type {kind}")


def _classifier(g: _Graph, model, inp: str) -> str:
    """Emit one Keras functional model reading ONNX tensor `inp`; returns its output's name."""
    tensors: dict[int, tuple[str, int]] = {}
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedModel("a classifier must have one input and one output")
    tensors[id(model.inputs[0])] = (inp, len(model.inputs[0].shape))
    for layer in model.layers:
        if type(layer).__name__ == "InputLayer":
            continue
        nodes = [n for n in layer._inbound_nodes if all(id(t) in tensors for t in n.input_tensors)]
        if len(nodes) != 1:
            raise UnsupportedModel(f"layer {layer.name} is shared or not connected")
        node = nodes[0]
        ins = [tensors[id(t)] for t in node.input_tensors]
        out, rank = _layer(g, layer, [n for n, _ in ins], [r for _, r in ins])
        if len(node.output_tensors) != 1:
            raise UnsupportedModel(f"layer {layer.name} has several outputs")
        tensors[id(node.output_tensors[0])] = (out, rank)
    out = tensors.get(id(model.outputs[0]))
    if out is None or out[1] != 2:
        raise UnsupportedModel("the classifier output is not (n, 1)")
    return out[0]


def export_onnx(members: Sequence[tuple], input_shape: tuple[int, ...]) -> bytes:
    """One ONNX graph running Keras classifiers on input ``features`` [shape=(n, *input_shape)] with
    output ``scores`` [shape=(n, classifiers per member)]. Each member is ``(trunk or None,
    classifiers)``: its classifiers, in the order given, read the features, or with a shared trunk
    are heads reading its embedding, computed once; the members' scores are averaged (every member
    has as many classifiers). Raises `UnsupportedModel`."""
    from onnx import TensorProto, checker, helper

    g = _Graph()
    widths = {len(models) for _, models in members}
    if len(widths) != 1:
        raise UnsupportedModel(f"members with different numbers of classifiers ({sorted(widths)}) cannot be averaged")
    member_outs = []
    for trunk, models in members:
        source = _classifier(g, trunk, "features") if trunk is not None else "features"
        outs = [_classifier(g, m, source) for m in models]
        member_outs.append(outs[0] if len(outs) == 1 else g.op("Concat", outs, axis=1))
    final = member_outs[0] if len(member_outs) == 1 else g.op("Mean", member_outs)
    g.nodes.append(helper.make_node("Identity", [final], ["scores"]))
    width = widths.pop()
    graph = helper.make_graph(
        g.nodes, "ensemble",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", *input_shape])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", width])],
        initializer=g.inits,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="tagger")
    model.ir_version = 8
    checker.check_model(model)
    return model.SerializeToString()


# -- runtime ------------------------------------------------------------------------------------------
class OnnxRunner:
    """Runs an exported ensemble with ONNX Runtime: ``runner(feats) -> scores`` on `threads` intra-op
    threads (default: all cores; the backend passes `backends.default_threads`)."""

    name = "onnxruntime"

    def __init__(self, model: bytes, *, threads: int | None = None) -> None:
        ort = import_onnxruntime()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads or os.cpu_count() or 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        # Threads that spin while waiting steal the cores the scan's decoding workers need.
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # A memory plan cached per batch size grows with every new size the scan sends (about
        # 100 MB over sizes 1-64) for no measurable speed: off, memory stays flat.
        opts.enable_mem_pattern = False
        self.session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])

    def __call__(self, feats: np.ndarray) -> np.ndarray:
        return self.session.run(["scores"], {"features": np.ascontiguousarray(feats, dtype=np.float32)})[0]


def reference_batch(input_shape: tuple[int, ...], n: int = 16) -> np.ndarray:
    """A fixed batch in [0, 1] (the features' range) on which exports are checked against Keras."""
    return np.random.default_rng(1234).random((n, *input_shape), dtype=np.float32)


def max_difference(runner, keras_model, input_shape: tuple[int, ...]) -> float:
    """Largest absolute difference between the runner's and the Keras model's outputs on `reference_batch`."""
    x = reference_batch(input_shape)
    want = np.asarray(keras_model(x, training=False), dtype=np.float32)
    got = runner(x)
    return float(np.max(np.abs(got - want)))


def load_cached(key: str) -> bytes | None:
    """The cached export ``key`` when its bytes are those exported (the SHA-256 written beside it
    at export); None otherwise: missing, damaged, or changed since, it is exported again."""
    folder = cache_dir()
    if folder is None:
        return None
    path = folder / key
    try:
        blob = path.read_bytes()
        recorded = (folder / f"{key}.sha256").read_text().strip()
    except OSError:
        return None
    if hashlib.sha256(blob).hexdigest() != recorded:
        log.warning("the cached ONNX export %s is not the one exported (checksum differs); exporting again", path)
        return None
    return blob


def store_cached(key: str, model: bytes) -> None:
    """Write an exported graph and its SHA-256 into the cache atomically. A failure (a read-only
    or full disk) is a warning: the export runs from memory, and the next load exports it again;
    no temporary file is left behind."""
    folder = cache_dir()
    later = "the model runs from memory, and the next load exports it again (seconds, with TensorFlow)"
    if folder is None:
        log.warning("no cache folder for the exported model ($XDG_CACHE_HOME is not an absolute path and there is no "
                    "home directory): %s", later)  # fmt: skip
        return
    tmp = None
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in ((f"{key}.sha256", hashlib.sha256(model).hexdigest().encode()), (key, model)):
            tmp = folder / f".{name}.{os.getpid()}.tmp"
            tmp.write_bytes(data)
            os.replace(tmp, folder / name)
            tmp = None
        entries = sorted(folder.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in entries[CACHE_ENTRIES:]:
            old.unlink(missing_ok=True)
            (folder / f"{old.name}.sha256").unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot cache the exported model in %s (%s): %s", folder, exc.strerror or exc, later)
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
