"""The performance work keeps results the same: the ONNX Runtime export of the classifiers against
Keras, the cache and the fallbacks, the numpy mel filterbank against librosa, the fast downmix,
the fast database checks, and the scan's stage timings. No timing assertions here: speed is
measured by `benchmarks/bench.py`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from conftest import compact_models
from tagger.errors import UserError
from tagger.model import architectures as A
from tagger.model import backends as B
from tagger.model import runtime as R
from tagger.model import store
from tagger.model import train as T

keras = pytest.importorskip("keras")
needs_ort = pytest.mark.skipif(not R.onnxruntime_available(), reason="onnxruntime/onnx not installed")


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Exported graphs go to a private cache folder, not the user's."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(B.RUNTIME_ENV, raising=False)


def _randomise(model, seed: int):
    """Random weights everywhere, BatchNorm statistics included (fresh ones are an identity)."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        if type(layer).__name__ == "BatchNormalization":
            gamma, beta, mean, var = ws
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.2, beta.shape),
                               rng.normal(0, 0.2, mean.shape), rng.uniform(0.5, 2.0, var.shape)])  # fmt: skip
        else:
            layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in ws])
    return model


def _model_dir(path, families=("bass", "flute"), seed=0):
    return compact_models(path, families, version="rt1", threshold=0.4, seed=None, weights=lambda m, i: _randomise(m, seed + i))


def _feats(shape, n=12, seed=5):
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


@needs_ort
@pytest.mark.parametrize("arch", ["compact", "paper"])
@pytest.mark.model
def test_onnx_export_matches_keras(arch):
    # The paper's layers (biased convolutions, Flatten in Keras' NHWC order, hidden Dense) on a
    # small input, so that the test stays fast; the compact model at its real size.
    shape = A.COMPACT_FEATURES.shape if arch == "compact" else (24, 20)
    build = A.build_compact if arch == "compact" else A.build_paper
    models = [_randomise(build(shape, name=f"c{i}"), i) for i in range(3)]
    runner = R.OnnxRunner(R.export_onnx([(None, models)], shape), threads=1)
    x = _feats(shape)
    want = np.concatenate([np.asarray(m(x, training=False)) for m in models], axis=1)
    got = runner(x)
    assert got.shape == (len(x), 3)
    assert np.max(np.abs(got - want)) < R.TOLERANCE
    assert np.std(want) > 1e-3  # a meaningful comparison: the outputs vary


@needs_ort
@pytest.mark.parametrize("pooling", A.POOLINGS)
@pytest.mark.model
def test_onnx_export_of_a_trunk_and_heads_matches_keras(pooling):
    # The trunk at its real size with either pooling (the anti-aliased one adds a zero border, a
    # max-pool of stride 1 and average pools), two heads on its embedding.
    shape = A.COMPACT_FEATURES.shape
    trunk = _randomise(A.build_trunk(shape, pooling=pooling), 7)
    heads = [_randomise(A.build_head(int(trunk.output_shape[-1]), name=f"h{i}"), i) for i in range(2)]
    runner = R.OnnxRunner(R.export_onnx([(trunk, heads)], shape), threads=1)
    x = _feats(shape, n=6)
    emb = trunk(x, training=False)
    want = np.concatenate([np.asarray(h(emb, training=False)) for h in heads], axis=1)
    got = runner(x)
    assert got.shape == (len(x), 2)
    assert np.max(np.abs(got - want)) < R.TOLERANCE
    assert np.std(want) > 1e-3


@needs_ort
@pytest.mark.model
def test_unsupported_layers_are_refused():
    inp = keras.Input(shape=(8, 8))
    out = keras.layers.Dense(1, activation="sigmoid")(keras.layers.LSTM(4)(inp))
    with pytest.raises(R.UnsupportedModel, match="LSTM"):
        R.export_onnx([(None, [keras.Model(inp, out)])], (8, 8))


@needs_ort
@pytest.mark.model
def test_ensemble_runs_on_onnxruntime_equal_to_keras_and_caches_the_export(tmp_path, monkeypatch):
    from tagger.model.ensemble import Ensemble

    d = _model_dir(tmp_path / "m")
    ens = Ensemble.load(d)
    assert ens.runtime == "onnxruntime"
    cached = list(R.cache_dir().glob("*.onnx"))
    assert [p.name for p in cached] == [R.cache_key(ens.graph_hash, ens.families)]
    monkeypatch.setenv(B.RUNTIME_ENV, "keras")
    ref = Ensemble.load(d)
    assert ref.runtime == "keras"
    x = _feats(A.COMPACT_FEATURES.shape, n=70)  # more than one batch
    assert np.max(np.abs(ens.predict_features(x, batch_size=32) - ref.predict_features(x, batch_size=32))) < R.TOLERANCE
    windows = np.random.default_rng(1).standard_normal((3, 64_000)).astype(np.float32) * 0.1
    assert np.max(np.abs(ens.predict(windows) - ref.predict(windows))) < R.TOLERANCE
    # a family selection is its own graph
    monkeypatch.delenv(B.RUNTIME_ENV)
    one = Ensemble.load(d, families=["flute"])
    assert one.runtime == "onnxruntime" and one.predict_features(x).shape == (70, 1)
    assert np.allclose(one.predict_features(x)[:, 0], ref.predict_features(x)[:, 1], atol=R.TOLERANCE)


@needs_ort
@pytest.mark.parametrize("override", [None, 0.9])
@pytest.mark.model
def test_the_export_key_names_the_graph_the_loader_writes(tmp_path, override):
    # A subset of the families runs every head when the gate's override listens to them all, else
    # its own: `export_key` (what the CLI and the benchmark look up) names the export the load caches.
    from tagger.model import gate as G
    from tagger.model.ensemble import Ensemble, export_key, read_manifest, runner_families

    families = ("bass", "flute", "organ")
    cfg = A.feature_config("trunk")
    manifest = store.new_manifest(architecture="trunk", recipe="mixture", feature_config=cfg, version="k1", data={})
    trunk = _randomise(A.build_trunk(cfg.shape, filters=(4, 8)), 1)
    store.save_trunk(tmp_path / "m", manifest, trunk)
    width = int(trunk.output_shape[-1])
    for i, f in enumerate(families):
        store.save_classifier(tmp_path / "m", manifest, f, _randomise(A.build_head(width, name=f"head_{f}"), i), threshold=0.5)
    store.save_gate(tmp_path / "m", manifest, G.gate_model(np.full(width, 0.1), 0.0), threshold=0.5, override=override)
    saved = read_manifest(tmp_path / "m")
    want = families if override is not None else ("flute",)
    assert runner_families(saved, ["flute"]) == want and runner_families(saved) == families
    one = Ensemble.load(tmp_path / "m", families=["flute"])
    assert one.run_families == want and one.export_key == export_key(saved, ["flute"])
    assert [p.name for p in R.cache_dir().glob("*.onnx")] == [one.export_key]
    every = Ensemble.load(tmp_path / "m")
    assert every.export_key == export_key(saved) and (R.cache_dir() / every.export_key).is_file()
    assert (every.export_key == one.export_key) == (override is not None)  # the same graph, or one of its own


@needs_ort
@pytest.mark.model
@pytest.mark.integration
def test_a_cached_export_loads_without_tensorflow(tmp_path):
    from tagger.model.ensemble import Ensemble

    d = _model_dir(tmp_path / "m")
    Ensemble.load(d)  # exports and caches
    code = textwrap.dedent(f"""
        import sys
        from pathlib import Path
        from tagger.cli.app import quiet_tensorflow_for
        from tagger.model.ensemble import Ensemble
        quiet_tensorflow_for(Path({str(d)!r}))  # (as a scan loads its models)
        e = Ensemble.load({str(d)!r})
        import numpy as np
        p = e.predict_features(np.zeros((2, 64, 126), np.float32))
        print(e.runtime, p.shape, "tensorflow" in sys.modules, "keras" in sys.modules, "onnx" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    # (nor onnx, the exporter's library: its import was 0.5-0.8 s of every scan's start-up)
    assert out == ["onnxruntime", "(2,", "2)", "False", "False", "False"]


@needs_ort
@pytest.mark.model
def test_a_changed_classifier_gets_a_new_export(tmp_path):
    from tagger.model.ensemble import Ensemble

    d = _model_dir(tmp_path / "m")
    first = Ensemble.load(d)
    manifest = store.open_or_create(d)
    store.save_classifier(d, manifest, "flute", _randomise(A.build("compact", name="flute"), 99), threshold=0.4)
    second = Ensemble.load(d)
    assert second.hash != first.hash and second.graph_hash != first.graph_hash
    assert len(list(R.cache_dir().glob("*.onnx"))) == 2
    x = _feats(A.COMPACT_FEATURES.shape)
    assert not np.allclose(first.predict_features(x)[:, 1], second.predict_features(x)[:, 1])
    # thresholds decided anew (the same files): the models' version changes, their export does not
    manifest = store.open_or_create(d)
    manifest["classifiers"]["flute"]["threshold"] = 0.7
    store.write_manifest(d, manifest)
    third = Ensemble.load(d)
    assert third.hash != second.hash and third.graph_hash == second.graph_hash
    assert len(list(R.cache_dir().glob("*.onnx"))) == 2 and third.runtime == "onnxruntime"
    assert np.allclose(third.predict_features(x), second.predict_features(x), atol=R.TOLERANCE)


@needs_ort
@pytest.mark.model
def test_a_damaged_cache_entry_is_exported_again(tmp_path):
    from tagger.model.ensemble import Ensemble

    d = _model_dir(tmp_path / "m")
    good = Ensemble.load(d)
    entry = R.cache_dir() / R.cache_key(good.graph_hash, good.families)
    entry.write_bytes(b"not an onnx graph")
    again = Ensemble.load(d)
    assert again.runtime == "onnxruntime"
    x = _feats(A.COMPACT_FEATURES.shape)
    assert np.allclose(again.predict_features(x), good.predict_features(x), atol=R.TOLERANCE)
    assert entry.read_bytes() != b"not an onnx graph"


@pytest.mark.model
def test_keras_is_the_fallback(tmp_path, monkeypatch):
    from tagger.model import ensemble as E

    d = _model_dir(tmp_path / "m")
    monkeypatch.setattr(R, "onnxruntime_available", lambda: False)
    assert E.Ensemble.load(d).runtime == "keras"
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache2"))
    if not R.onnxruntime_available():
        return

    def unsupported(*a, **k):
        raise R.UnsupportedModel("layer type Weird")

    monkeypatch.setattr(R, "export_onnx", unsupported)
    assert E.Ensemble.load(d).runtime == "keras"
    monkeypatch.undo()
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache3"))
    monkeypatch.setattr(R, "max_difference", lambda *a, **k: 0.5)  # an export that disagrees with Keras
    ens = E.Ensemble.load(d)
    assert ens.runtime == "keras"
    assert not list(R.cache_dir().glob("*.onnx"))  # never cached
    assert ens.predict_features(_feats(A.COMPACT_FEATURES.shape)).shape == (12, 2)


def test_cache_keeps_a_bounded_number_of_exports(tmp_path):
    for i in range(R.CACHE_ENTRIES + 3):
        R.store_cached(f"{i:032d}-x-v1.onnx", b"x")
    assert len(list(R.cache_dir().glob("*.onnx"))) == R.CACHE_ENTRIES
    assert len(list(R.cache_dir().glob("*.onnx.sha256"))) == R.CACHE_ENTRIES  # checksums go with them


def test_a_cached_export_changed_since_it_was_written_is_not_run(tmp_path):
    key = "0" * 32 + "-x-v1.onnx"
    R.store_cached(key, b"exported graph bytes")
    assert R.load_cached(key) == b"exported graph bytes"
    (R.cache_dir() / key).write_bytes(b"exported graph bytez")  # still "parses": only the checksum tells
    assert R.load_cached(key) is None
    R.store_cached(key, b"exported graph bytes")
    (R.cache_dir() / f"{key}.sha256").unlink()  # an entry of an older tagger, without checksum
    assert R.load_cached(key) is None


def test_a_cache_on_a_full_disk_warns_and_leaves_no_temporary_file(tmp_path):
    # A file size limit (RLIMIT_FSIZE) stands for a full disk: the write fails part-way.
    code = textwrap.dedent(f"""
        import logging, resource
        logging.basicConfig(level=logging.WARNING)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
        from tagger.model import runtime as R
        R.store_cached("{"0" * 32}-x-v1.onnx", b"g" * 5000)
        assert R.load_cached("{"0" * 32}-x-v1.onnx") is None
    """)  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "cannot cache the exported model in" in done.stderr and "next load exports it again" in done.stderr
    assert not [p.name for p in R.cache_dir().iterdir() if p.name.endswith(".tmp")]  # was: a 1000-byte .tmp per try


def test_the_cache_is_never_a_relative_folder(tmp_path, monkeypatch, caplog):
    import pwd

    monkeypatch.chdir(tmp_path)  # (a scan may start in the music folder)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "cache")  # relative: ignored, as the XDG specification says
    monkeypatch.delenv("TAGGER_CACHE", raising=False)
    assert R.cache_dir() == tmp_path / "home" / ".cache" / "tagger" / "runtime"
    # training's cache follows the same rule (was: "cache/tagger" under the current folder)
    assert T.cache_root() == tmp_path / "home" / ".cache" / "tagger"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.delenv("HOME")

    def no_entry(uid):
        raise KeyError(uid)

    monkeypatch.setattr(pwd, "getpwuid", no_entry)  # no $HOME, no home in the user database
    assert R.cache_dir() is None  # was: "~/.cache/tagger/runtime", under the current folder
    with pytest.raises(UserError, match="set TAGGER_CACHE"):
        T.cache_root()
    with caplog.at_level("WARNING"):
        R.store_cached("0" * 32 + "-x-v1.onnx", b"graph")
    assert "no cache folder for the exported model" in caplog.text
    assert R.load_cached("0" * 32 + "-x-v1.onnx") is None
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written under the current folder


# -- features and audio ---------------------------------------------------------------------------------
@pytest.mark.parametrize("sr,n_fft,n_mels,fmin", [(16_000, 2048, 64, 30.0), (16_000, 2048, 128, 30.0),
                                                   (22_050, 1024, 40, 0.0), (16_000, 512, 96, 100.0)])  # fmt: skip
def test_mel_filterbank_equals_librosa(sr, n_fft, n_mels, fmin):
    librosa = pytest.importorskip("librosa")
    from tagger import features as F
    from tagger.features import mel_filterbank

    ours = mel_filterbank.__wrapped__(sample_rate=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin)
    ref = librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels, fmin=fmin, fmax=sr / 2)
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    assert np.max(np.abs(ours - ref)) <= 1e-7
    assert np.array_equal(F.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=sr / 2),
                          librosa.mel_frequencies(n_mels=n_mels + 2, fmin=fmin, fmax=sr / 2))  # fmt: skip


@pytest.mark.integration
def test_features_do_not_import_librosa():
    code = ("import sys, numpy as np\nfrom tagger import features as F\n"
            "F.compute(windows=np.zeros((1, 64000), np.float32), config=F.FeatureConfig(n_mels=64))\n"
            "print('librosa' in sys.modules)")  # fmt: skip
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


@pytest.mark.parametrize("channels", [1, 2, 3, 6, 7])
def test_downmix_equals_the_channel_mean(channels):
    from tagger.audio.downmix import _downmix

    block = np.random.default_rng(channels).standard_normal((5000, channels)).astype(np.float32)
    mono, bad = _downmix(block)
    assert np.array_equal(mono, block.mean(axis=1, dtype=np.float32)) and bad == 0
    block[10, 0], block[20, -1], block[30, 0] = np.nan, np.inf, -np.inf
    want = np.nan_to_num(block.mean(axis=1, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    got, bad = _downmix(np.frombuffer(block.tobytes(), dtype=np.float32).reshape(block.shape))  # read-only, as from ffmpeg
    assert np.array_equal(got, want) and np.isfinite(got).all() and bad == 3


def test_stream_reports_decode_and_resample_time(tmp_path):
    from conftest import tone_signal, write_audio

    from tagger import audio

    path = write_audio(tmp_path / "a.flac", tone_signal([440.0], seconds=3.0, sr=44_100), sr=44_100)
    timings: dict = {}
    meta = audio.info(path)
    out = np.concatenate(list(audio.stream(path, meta=meta, timings=timings)))
    assert abs(len(out) - 48_000) <= 2
    assert set(timings) == {"decode", "resample"} and all(v > 0 for v in timings.values())


# -- database ---------------------------------------------------------------------------------------------
def test_fast_schema_check_agrees_with_alembic(tmp_path):
    from tagger.db import migrate
    from tagger.db.engine import make_engine
    from tagger.db.session import open_database
    from tagger.db.urls import as_url

    assert migrate._script_head() == migrate.head_revision()
    engine = make_engine(as_url(str(tmp_path / "new.db")))
    assert migrate.at_head(engine) is False  # no alembic_version table: Alembic decides
    engine.dispose()
    db = open_database(str(tmp_path / "new.db"))
    assert migrate.at_head(db.engine) is True
    db.close()


# -- scan statistics --------------------------------------------------------------------------------------
@pytest.mark.parametrize("jobs", [0, 2])
def test_scan_reports_stage_seconds_and_peak_memory(tmp_path, jobs):
    from library_fakes import FakeAnalyser
    from conftest import tone_signal, write_audio

    from tagger.db.session import open_database
    from tagger.library.scan import scan

    for i, ext in enumerate(("flac", "wav", "flac")):
        write_audio(tmp_path / "lib" / f"t{i}.{ext}", tone_signal([110.0 * (i + 1)], seconds=9.0))
    db = open_database(str(tmp_path / "lib.db"))
    try:
        summary = scan([tmp_path / "lib"], db=db, analyser=FakeAnalyser(), jobs=jobs)
    finally:
        db.close()
    assert summary.scanned == 3
    stages = summary.stage_seconds
    for key in ("plan", "decode", "framing", "features", "inference", "aggregation", "database"):
        assert stages.get(key, 0) > 0, key
    assert summary.peak_rss["main"] > 10 * 2**20
    if jobs:
        assert 1 <= len(summary.peak_rss["workers"]) <= jobs and all(w > 10 * 2**20 for w in summary.peak_rss["workers"])
    d = summary.to_dict()
    assert set(d["stage_seconds"]) == set(stages) and "peak_rss" in d


# -- the backend registry ---------------------------------------------------------------------------------
class _Fake:
    """A backend that answers every feature batch with a constant score per family."""

    def __init__(self, name, *, available=True, faithful=True):
        self.name, self._available, self._faithful, self.loaded = name, available, faithful, []

    def available(self):
        return self._available

    def load(self, files):
        self.loaded.append(files)
        if not self._faithful:
            raise B.Unfaithful("differs")
        n = len(files.families)
        runner = lambda feats: np.full((len(feats), n), 0.25, np.float32)  # noqa: E731
        runner.name = self.name
        return runner


@pytest.mark.model
def test_auto_takes_the_first_available_and_faithful_backend(tmp_path, monkeypatch):
    from tagger.model.ensemble import Ensemble

    d = _model_dir(tmp_path / "m")
    missing, wrong, good, later = _Fake("a", available=False), _Fake("b", faithful=False), _Fake("c"), _Fake("d")
    monkeypatch.setattr(B, "BACKENDS", (missing, wrong, good, later))
    ens = Ensemble.load(d)
    assert ens.runtime == "c" and not missing.loaded and len(wrong.loaded) == 1 and not later.loaded
    files = good.loaded[0]
    assert len(files.members) == 1 and files.members[0].trunk is None
    assert [p.name for p in files.members[0].classifiers] == ["bass.keras", "flute.keras"]
    assert files.families == ("bass", "flute") and files.graph_hash == ens.graph_hash
    assert ens.predict_features(_feats(A.COMPACT_FEATURES.shape, n=3)).tolist() == [[0.25, 0.25]] * 3
    monkeypatch.setenv(B.RUNTIME_ENV, "D")  # a backend by name, whatever its place
    assert Ensemble.load(d).runtime == "d"


@pytest.mark.model
def test_a_runtime_by_name_must_exist_be_installed_and_faithful(tmp_path, monkeypatch):
    from tagger.errors import ModelError, UserError
    from tagger.model.ensemble import Ensemble

    d = _model_dir(tmp_path / "m")
    monkeypatch.setattr(B, "BACKENDS", (_Fake("a", available=False), _Fake("b", faithful=False)))
    for name, error, message in (("tpu", UserError, "unknown runtime"), ("a", UserError, "a is not installed"),
                                 ("b", ModelError, "cannot run the classifiers with b: differs")):  # fmt: skip
        monkeypatch.setenv(B.RUNTIME_ENV, name)
        with pytest.raises(error, match=message):
            Ensemble.load(d)
    monkeypatch.setenv(B.RUNTIME_ENV, "auto")
    with pytest.raises(ModelError, match="no inference backend can run the classifiers"):
        Ensemble.load(d)


def test_backends_size_threads_and_quiet_tensorflow(monkeypatch):
    import os
    import sys

    for var in (*B.INFERENCE_THREAD_VARS, "TF_CPP_MIN_LOG_LEVEL"):
        # (set, then removed: the test's end removes what limit_threads sets; a removal alone of a
        # variable not set records nothing, and TF_NUM_*_THREADS=2 stayed for the tests after)
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert B.default_threads() == 6
    monkeypatch.setenv(B.THREADS_ENV, "3")
    assert B.default_threads() == 3
    monkeypatch.delenv(B.THREADS_ENV)
    monkeypatch.delitem(sys.modules, "tensorflow", raising=False)  # not imported: the variables alone
    B.limit_threads(2)
    assert [os.environ[v] for v in B.INFERENCE_THREAD_VARS] == ["2", "2", "2"] and B.default_threads() == 2
    import types

    monkeypatch.setitem(sys.modules, "tensorflow", types.ModuleType("tensorflow"))  # imported already: not again
    B.quiet_tensorflow()
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"


def test_scan_imports_tensorflow_only_when_loading_needs_it(tmp_path, monkeypatch):
    """`quiet_tensorflow_for` (called by `tagger scan` before loading the models) imports TensorFlow
    only for the Keras runtime or a model whose ONNX export is not cached."""
    import importlib

    from tagger.model.ensemble import default_model_dir, graph_hash, read_manifest

    cli_app = importlib.import_module("tagger.cli.app")  # the module (the package exports the Typer app)
    calls = []
    monkeypatch.setattr(cli_app, "quiet_tensorflow", lambda: calls.append(1))
    monkeypatch.setattr(R, "cache_dir", lambda: tmp_path)
    monkeypatch.setattr(R, "onnxruntime_available", lambda: True)
    monkeypatch.delenv(B.RUNTIME_ENV, raising=False)
    models = default_model_dir()
    cli_app.quiet_tensorflow_for(models)
    assert calls == [1]  # nothing exported yet: the export needs TensorFlow
    manifest = read_manifest(models)
    families = tuple(manifest["families"])
    (tmp_path / R.cache_key(graph_hash(manifest, families), families)).write_bytes(b"graph")  # the full load's key
    cli_app.quiet_tensorflow_for(models)
    cli_app.quiet_tensorflow_for(None)
    assert calls == [1]  # cached: no TensorFlow
    monkeypatch.setenv(B.RUNTIME_ENV, "keras")
    cli_app.quiet_tensorflow_for(models)
    assert calls == [1, 1]
    monkeypatch.delenv(B.RUNTIME_ENV)
    cli_app.quiet_tensorflow_for(tmp_path / "no-such-models")  # the load reports it; quiet meanwhile
    assert calls == [1, 1, 1]


def test_a_backend_added_in_one_place_says_itself_whether_a_scan_imports_tensorflow(monkeypatch):
    """A new backend is one class in `tagger.model.backends` and an entry of `BACKENDS`: whether
    ``tagger scan`` imports TensorFlow before loading (`quiet_tensorflow_for`) is the backend's own
    answer (`without_tensorflow`). It was decided in the CLI by the name 'onnxruntime', so a backend
    added without TensorFlow had TensorFlow imported for it (about 4 s and 600 MB) unless the CLI was
    edited too."""
    import importlib

    from tagger.model.ensemble import default_model_dir

    class Light:
        name = "light"

        def available(self):
            return True

        def load(self, files):
            raise AssertionError("not loaded here")

        def without_tensorflow(self, key):
            return True

    cli_app = importlib.import_module("tagger.cli.app")
    calls = []
    monkeypatch.setattr(cli_app, "quiet_tensorflow", lambda: calls.append(1))
    monkeypatch.setattr(R, "onnxruntime_available", lambda: False)
    monkeypatch.setattr(B, "BACKENDS", (Light(), *B.BACKENDS))
    for chosen in ("auto", "light"):
        monkeypatch.setenv(B.RUNTIME_ENV, chosen)
        cli_app.quiet_tensorflow_for(default_model_dir())
        assert calls == [], chosen
    monkeypatch.setenv(B.RUNTIME_ENV, "keras")
    cli_app.quiet_tensorflow_for(default_model_dir())
    assert calls == [1]


def test_a_file_saved_by_a_newer_keras_names_the_versions(tmp_path, monkeypatch):
    """Keras 3.12 (Python 3.10's newest) failed on the shipped models, saved by 3.15.1, with a page of
    layer configuration ending in "Unrecognized keyword arguments passed to Dense"; the error now
    names both versions and the upgrade. A file from the same or an older Keras keeps Keras' reason."""
    import json
    import zipfile

    from tagger.errors import ModelError

    path = tmp_path / "bass.keras"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps({"keras_version": "3.15.1", "date_saved": "2026-12-05@19:57:38"}))

    def refuse(*args, **kwargs):
        raise TypeError("Unrecognized keyword arguments passed to Dense: {'quantization_config': None}")

    monkeypatch.setattr(keras.saving, "load_model", refuse)
    monkeypatch.setattr(keras, "__version__", "3.12.4")
    with pytest.raises(ModelError) as info:
        B.load_classifier(path)
    assert str(info.value) == (f"{path}: cannot load classifier: it was saved by Keras 3.15.1, which this Keras 3.12.4 "
                               "cannot read (pip install 'keras>=3.15.1')")  # fmt: skip
    monkeypatch.setattr(keras, "__version__", "3.15.1")
    with pytest.raises(ModelError, match=r"cannot load classifier: TypeError: Unrecognized keyword arguments passed to Dense"):
        B.load_classifier(path)
