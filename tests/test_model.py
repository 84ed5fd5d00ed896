"""The classifiers: architectures, training recipes, the manifest, safe loading and adding a family."""

import json
import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from conftest import compact_models  # noqa: E402
from tagger.data import gm, nsynth, render as R  # noqa: E402
from tagger.errors import ModelError, UserError  # noqa: E402
from tagger.model import architectures as A  # noqa: E402
from tagger.model import gate as G  # noqa: E402
from tagger.model.ensemble import Ensemble, read_manifest, sha256_file  # noqa: E402
from tagger.model.backends import load_classifier  # noqa: E402
from tagger.model.train import TrainSettings, train_ensemble  # noqa: E402

pytestmark = pytest.mark.model

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or "fluidr3" not in R.default_soundfonts(), reason="fluidsynth and FluidR3_GM needed"
)
TINY = dict(examples=96, epochs=1, batch_size=32, valid_per_level=2, valid_music_examples=20, valid_solo_notes=20, aggregation_tracks=8)


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """Three programs each of flute, organ and bass plus a drum kit, rendered sparsely, and split."""
    root = tmp_path_factory.mktemp("tiny") / "ds"
    wanted = {"flute": [73, 74, 75], "organ": [16, 19, 20], "bass": [32, 33, 35]}
    progs = [p for p in gm.FAMILY_PROGRAMS if p.program in sum(wanted.values(), [])]
    progs += [gm.DRUM_KITS[0], gm.DRUM_KITS[1], gm.DRUM_KITS[2]]
    R.render_dataset(root, soundfonts={"fluidr3": R.default_soundfonts()["fluidr3"]}, programs=progs, velocities=(100,),
                     pitch_step=7, negative_pitch_step=5, negative_velocities=(100,), jobs=1)  # fmt: skip
    nsynth.split_dataset(root)
    return root


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TAGGER_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def eager_training(monkeypatch):
    """Train the joint graph eagerly: for the three batches of TINY, tracing Keras's train step into
    a graph was most of each training's time (py-spy), more than running the batches op by op. For
    tests whose assertions read what training wrote (files, manifests, thresholds), not how Keras
    ran it; the other training tests keep the traced step that `tagger train` runs."""
    from tagger.model import train as T

    real = T._compile_joint

    def eager(joint, *args, **kwargs):
        real(joint, *args, **kwargs)
        joint.run_eagerly = True

    monkeypatch.setattr(T, "_compile_joint", eager)


def test_architectures_match_the_design():
    paper = A.build("paper")
    assert paper.input_shape[1:] == (1025, 126)
    assert 31_000_000 < paper.count_params() < 32_000_000  # Table IV: about 31.5 M
    kinds = [type(layer).__name__ for layer in paper.layers]
    assert kinds.count("Conv2D") == 3 and kinds.count("BatchNormalization") == 3 and kinds.count("MaxPooling2D") == 3
    assert "Flatten" in kinds and "Dropout" in kinds
    assert [lay.filters for lay in paper.layers if type(lay).__name__ == "Conv2D"] == [32, 64, 128]
    compact = A.build("compact")
    assert compact.input_shape[1:] == A.COMPACT_FEATURES.shape == (64, 126)
    assert compact.count_params() <= 100_000
    assert compact.output_shape == (None, 1)
    with pytest.raises(ValueError):
        A.build("resnet")


def _model_dir(path, families=("bass", "flute")):
    return compact_models(path, families, version="t1", threshold=0.4, seed=None)


def test_manifest_records_hashes_and_loads(tmp_path):
    d = _model_dir(tmp_path / "m")
    manifest = read_manifest(d)
    assert manifest["families"] == ["bass", "flute"] and manifest["features"]["n_mels"] == 64
    assert manifest["classifiers"]["flute"]["sha256"] == sha256_file(d / "flute.keras")
    ens = Ensemble.load(d)
    probs = ens.predict(np.random.default_rng(0).standard_normal((3, 64_000)).astype(np.float32) * 0.1)
    assert probs.shape == (3, 2) and np.all((probs >= 0) & (probs <= 1))
    assert ens.decide(np.array([[0.5, 0.3]])).tolist() == [[True, False]]
    assert Ensemble.load(d, families=["flute"]).predict(np.zeros((1, 64_000), np.float32)).shape == (1, 1)


def test_tampered_missing_and_mismatched_models_are_refused(tmp_path):
    d = _model_dir(tmp_path / "m")
    with open(d / "bass.keras", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="sha256 mismatch for 'bass'"):
        Ensemble.load(d)
    (d / "bass.keras").unlink()
    with pytest.raises(ModelError, match="missing"):
        Ensemble.load(d)
    d2 = _model_dir(tmp_path / "m2")
    manifest = json.loads((d2 / "manifest.json").read_text())
    manifest["features"]["hop_length"] = 256
    (d2 / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="hop_length"):
        Ensemble.load(d2)
    manifest["features"]["hop_length"] = 512
    manifest["features"]["whitening"] = True  # a setting of a newer tagger: refused, not ignored
    (d2 / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="unknown feature setting whitening"):
        Ensemble.load(d2)
    manifest["format"] = 7  # a newer tagger's models
    (d2 / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="unsupported manifest format 7"):
        Ensemble.load(d2)
    manifest["format"] = 5  # an averaged ensemble's format, without members
    (d2 / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="lists no members"):
        Ensemble.load(d2)
    with pytest.raises(ModelError, match="manifest not found"):
        Ensemble.load(tmp_path / "nothing")
    a_file = tmp_path / "song.flac"  # (was: ".../song.flac/manifest.json: model manifest not found")
    a_file.write_bytes(b"fLaC")
    with pytest.raises(ModelError, match=r"song.flac: is a file, not a model folder: give --models \(or \$TAGGER_MODELS\)"):
        Ensemble.load(a_file)
    with pytest.raises(UserError, match="no classifier for vocal"):
        Ensemble.load(_model_dir(tmp_path / "m3"), families=["vocal"])


def _nan_in_first(model, index):
    if index == 0:  # a diverged run: one weight of the first classifier is NaN
        weights = model.get_weights()
        weights[-1] = weights[-1] * np.nan
        model.set_weights(weights)
    return model


def _three_scores_for_second(model, index):
    """The second family's file is a valid Keras model reading the features, with 3 outputs."""
    if index != 1:
        return model
    import keras

    inp = keras.Input(shape=A.COMPACT_FEATURES.shape)
    x = keras.layers.GlobalAveragePooling1D()(inp)
    return keras.Model(inp, keras.layers.Dense(3, activation="sigmoid")(x))


@pytest.mark.parametrize("runtime", ["auto", "keras"])
def test_models_with_nan_weights_or_a_head_of_another_shape_are_refused_at_load(tmp_path, monkeypatch, runtime):
    # Before: both loaded; NaN scores passed no threshold (the family silently never tagged), and
    # the 3-score head shifted every later column (a broadcasting error on every file).
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("TAGGER_RUNTIME", runtime)
    nan = compact_models(tmp_path / "nan", ("bass", "flute"), version="n1", seed=0, weights=_nan_in_first)
    with pytest.raises(ModelError, match=r"nan/bass.keras: weights .* NaN or infinite"):
        Ensemble.load(nan)
    wide = compact_models(tmp_path / "wide", ("bass", "flute"), version="w1", seed=0, weights=_three_scores_for_second)
    with pytest.raises(ModelError, match=r"wide/flute.keras: classifier output \(3,\) is not one score"):
        Ensemble.load(wide)
    assert not list((tmp_path / "cache").rglob("*.onnx"))  # never exported, so never loaded from the cache either


def test_a_runner_whose_scores_are_not_probabilities_is_refused_at_load(tmp_path, monkeypatch):
    # Whatever the backend (a graph exported by an older tagger, cached): one test batch decides.
    from tagger.model import backends as B

    d = _model_dir(tmp_path / "m")
    for scores, reason in ((lambda n: np.full((n, 2), np.nan, np.float32), "not probabilities"),
                           (lambda n: np.full((n, 3), 0.5, np.float32), r"give \(3,\) scores per window.*need 2"),
                           (lambda n: np.full((n, 2), 1.5, np.float32), "not probabilities")):  # fmt: skip
        monkeypatch.setattr(B, "load_runner", lambda files, scores=scores: lambda feats: scores(len(feats)))
        with pytest.raises(ModelError, match=f"{tmp_path / 'm'}: the classifiers {reason}|{tmp_path / 'm'}: .*{reason}"):
            Ensemble.load(d)


def test_a_scan_with_a_broken_model_touches_no_file(tmp_path, monkeypatch, make_tone_file):
    from typer.testing import CliRunner

    from tagger.cli import app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    song = make_tone_file(tmp_path / "music" / "a.flac", [440.0])
    before = song.read_bytes()
    nan = compact_models(tmp_path / "nan", ("bass", "flute"), version="n1", seed=0, weights=_nan_in_first)
    result = CliRunner().invoke(app, ["scan", str(tmp_path / "music"), "--models", str(nan), "--db", str(tmp_path / "l.db")])
    assert result.exit_code == 1, result.output
    assert "nan/bass.keras" in result.output and "NaN or infinite" in result.output
    assert song.read_bytes() == before and not (tmp_path / "l.db").exists()


def test_a_model_folder_replaced_while_loading_is_refused_and_one_loaded_is_kept(tmp_path, monkeypatch):
    from tagger.model import backends as B

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    old = compact_models(tmp_path / "old", ("bass", "flute"), version="old-1", seed=1)
    new = compact_models(tmp_path / "new", ("bass", "flute"), version="new-1", seed=2)
    x = np.random.default_rng(0).standard_normal((2, 64_000)).astype(np.float32) * 0.1
    want = Ensemble.load(old).predict(x)
    live = tmp_path / "live"
    shutil.copytree(old, live)
    real = B.load_runner

    def replaced_after_the_check(files, **kw):  # `tagger combine` renames another model into place
        shutil.rmtree(live)
        shutil.copytree(new, live)
        return real(files, **kw)

    monkeypatch.setattr(B, "load_runner", replaced_after_the_check)
    with pytest.raises(ModelError, match=r"live/bass.keras: changed while the models were loading"):
        Ensemble.load(live)  # was: the new weights ran under the old manifest's version and thresholds
    monkeypatch.setattr(B, "load_runner", real)
    shutil.rmtree(live)
    shutil.copytree(old, live)
    loaded = Ensemble.load(live)
    shutil.rmtree(live)
    shutil.copytree(new, live)  # replaced once loaded: the loaded model runs on, under its own version
    assert loaded.version == "old-1" and np.allclose(loaded.predict(x), want)


@pytest.mark.model
def test_a_resumed_run_goes_on_with_the_optimizer_state_of_its_checkpoint(tmp_path):
    keras = pytest.importorskip("keras")
    from tagger.model.train import load_checkpoint

    def compiled():
        keras.utils.set_random_seed(0)
        inp = keras.Input(shape=(6,))
        model = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(4, activation="relu")(inp)))
        model.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(0.01, decay_steps=20)),
                      loss="binary_crossentropy")  # fmt: skip
        return model

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(32, 6)).astype(np.float32), (rng.random((32, 1)) < 0.5).astype(np.float32)
    first = compiled()
    for _ in range(5):  # an epoch, then the checkpoint the training loop writes
        first.train_on_batch(x, y)
    first.save_weights(tmp_path / "joint.weights.h5")
    steps = int(first.optimizer.iterations.numpy())
    resumed = compiled()  # a new process: the same model, compiled, before any step
    load_checkpoint(resumed, tmp_path / "joint.weights.h5", iterations=steps)
    saved, restored = first.optimizer.variables, resumed.optimizer.variables
    assert len(saved) == len(restored) > 1 and int(resumed.optimizer.iterations.numpy()) == steps
    for a, b in zip(saved, restored):  # Adam's moments as saved, not zero
        np.testing.assert_allclose(b.numpy(), a.numpy(), err_msg=a.name)
    assert any(np.abs(v.numpy()).sum() > 0 for v in saved if "momentum" in v.name or "velocity" in v.name)
    for _ in range(3):  # the next steps are those of the run that never stopped
        first.train_on_batch(x, y)
        resumed.train_on_batch(x, y)
    for a, b in zip(first.get_weights(), resumed.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@needs_fluidsynth
@pytest.mark.parametrize("architecture", ["trunk", "compact"])
@pytest.mark.slow
def test_train_resume_and_add_an_instrument(tiny_dataset, tmp_path, cache, architecture):
    out = tmp_path / "models"
    settings = TrainSettings(architecture=architecture, **TINY)
    manifest = train_ensemble(tiny_dataset, out, settings=settings, families=["flute", "organ"], version="tiny-1")
    assert manifest["families"] == ["flute", "organ"]
    before = {f: sha256_file(out / f"{f}.keras") for f in ("flute", "organ")}
    for f in ("flute", "organ"):
        entry = manifest["classifiers"][f]
        assert 0.05 <= entry["threshold"] <= 0.95 and entry["metrics"]["examples"] > 0
    # resumable per family: a second run has nothing to do and touches nothing
    again = train_ensemble(tiny_dataset, out, settings=settings, families=["flute", "organ"])
    assert again["classifiers"] == manifest["classifiers"]
    # a new instrument (the drum kits) is trained alone and registered; the others are untouched
    from typer.testing import CliRunner

    from tagger.cli import app

    res = CliRunner().invoke(app, ["train", "--data", str(tiny_dataset), "--out", str(out), "--family", "percussion",
                                   "--examples", "64", "--epochs", "1", "--valid-per-level", "1",
                                   "--aggregation-tracks", "8", "--valid-examples", "20"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert 'batch: {"epoch": 1, "of": 1, "done": 64, "total": 64, "loss": ' in res.output  # progress in a log
    after = read_manifest(out)
    assert after["families"] == ["flute", "organ", "percussion"]
    assert {f: sha256_file(out / f"{f}.keras") for f in ("flute", "organ")} == before
    assert after["architecture"] == architecture
    if architecture == "trunk":  # the new head was trained on the frozen trunk, which is unchanged
        assert after["trunk"] == manifest["trunk"] and sha256_file(out / "trunk.keras") == manifest["trunk"]["sha256"]
    ens = Ensemble.load(out)
    assert ens.families == ("flute", "organ", "percussion")
    calib = after["aggregation_calibration"]
    assert calib["tracks"] == 8 and after["aggregation"]["quantile"] == calib["best"]["quantile"]
    assert ens.predict(np.zeros((2, 64_000), np.float32)).shape == (2, 3)


@needs_fluidsynth
@pytest.mark.slow
def test_paper_architecture_trains_and_runs_with_the_solo_recipe(tiny_dataset, tmp_path, cache):
    out = tmp_path / "paper"
    # (the smallest validation: the 31.5 M-parameter paper model's predictions on it took most of the time)
    small = dict(examples=8, batch_size=4, valid_per_level=1, valid_music_examples=4, valid_solo_notes=4, aggregation_tracks=2)
    settings = TrainSettings(architecture="paper", recipe="solo", **dict(TINY, **small))
    manifest = train_ensemble(tiny_dataset, out, settings=settings, families=["bass"])
    assert manifest["architecture"] == "paper" and manifest["features"]["kind"] == "stft"
    ens = Ensemble.load(out)
    assert ens.predict(np.zeros((1, 64_000), np.float32)).shape == (1, 1)
    with pytest.raises(UserError, match="holds paper models"):
        train_ensemble(tiny_dataset, out, settings=TrainSettings(**TINY), families=["bass"])


@needs_fluidsynth
@pytest.mark.slow
def test_examples_are_reused_across_training_settings_but_not_across_recipes(tiny_dataset, tmp_path, cache):
    def stages(out, **changes):
        seen = []
        settings = TrainSettings(**dict(TINY, examples=32, **changes))
        train_ensemble(tiny_dataset, tmp_path / out, settings=settings, families=["flute"], progress=lambda s, i: seen.append(s))
        return seen

    assert "generate" in stages("a")
    # another learning rate, batch size or epoch count trains on the same cached examples, from scratch
    again = stages("b", learning_rate=1e-4, batch_size=8, epochs=2)
    assert "generate" not in again and "resume" not in again and again.count("epoch") == 2
    assert "generate" in stages("c", recipe="solo")
    assert len(list(cache.joinpath("train").glob("examples-*"))) == 2


needs_generaluser = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not {"fluidr3", "generaluser"} <= set(R.default_soundfonts()),
    reason="fluidsynth, FluidR3_GM and GeneralUser GS (minuet-data) needed",
)


@pytest.fixture(scope="session")
def two_source_dataset(tmp_path_factory):
    """Flute and organ programs and a drum kit from two SoundFonts, sparsely rendered, and split."""
    root = tmp_path_factory.mktemp("two") / "ds"
    progs = [p for p in gm.FAMILY_PROGRAMS if p.program in (73, 74, 75, 16, 19, 20)] + [gm.DRUM_KITS[0]]
    sfs = {k: v for k, v in R.default_soundfonts().items() if k in ("fluidr3", "generaluser")}
    R.render_dataset(root, soundfonts=sfs, programs=progs, velocities=(100,), pitch_step=9, negative_pitch_step=6,
                     negative_velocities=(100,), jobs=1)  # fmt: skip
    nsynth.split_dataset(root)
    return root


@needs_generaluser
@pytest.mark.slow
def test_leave_one_source_out_then_a_production_fit_keeps_the_held_out_thresholds(two_source_dataset, tmp_path, cache):
    ds = nsynth.NoteDataset.load(two_source_dataset)
    assert {n.soundfont for n in ds.notes} == {"fluidr3", "generaluser"}
    held = tmp_path / "held-out"
    settings = TrainSettings(leave_out=("generaluser",), **TINY)
    manifest = train_ensemble(two_source_dataset, held, settings=settings, families=["flute", "organ"], version="lo-1")
    fluid_train = {n.instrument for n in ds.notes if n.split == "train" and n.soundfont == "fluidr3"}
    assert manifest["data"]["train_instruments"] == len(fluid_train)  # nothing of the left-out source trained
    lo = manifest["validation_left_out"]
    assert lo["sources"] == ["generaluser"] and set(lo["auc"]) == {"flute", "organ"}
    assert 0.0 <= lo["music_jaccard"] <= 1.0 and "protocol" in lo and 0.0 <= lo["percussion_silent"] <= 1.0
    tried, chosen = manifest["gate"]["metrics"]["overrides_tried"], manifest["gate"]["override"]
    assert all("other_kits_silent" in r for r in tried)  # the gate's override also heard the left-out library's kits
    assert chosen is None or next(r for r in tried if r["override"] == chosen)["other_kits_silent"] >= 0.95
    for f in ("flute", "organ"):  # the operating point is reported per family
        m = manifest["classifiers"][f]["metrics"]
        assert m["beta"] == 0.5 and {"precision", "recall"} <= set(m) and {"precision", "recall"} <= set(m["solo"])
    with pytest.raises(Exception, match="no notes of nosuchfont"):
        train_ensemble(two_source_dataset, tmp_path / "x", settings=TrainSettings(leave_out=("nosuchfont",), **TINY),
                       families=["flute", "organ"])  # fmt: skip
    with pytest.raises(UserError, match="another front end"):  # its thresholds were chosen on other features
        train_ensemble(two_source_dataset, tmp_path / "y", settings=TrainSettings(all_instruments=True, harmonic=True, **TINY),
                       families=["flute", "organ"], reference=held)  # fmt: skip
    prod = tmp_path / "production"
    fit = train_ensemble(two_source_dataset, prod, settings=TrainSettings(all_instruments=True, **TINY),
                         families=["flute", "organ"], version="prod-1", reference=held)  # fmt: skip
    assert fit["data"]["train_instruments"] == len({n.instrument for n in ds.notes})  # every split, every source
    assert {f: c["threshold"] for f, c in fit["classifiers"].items()} == {
        f: c["threshold"] for f, c in manifest["classifiers"].items()
    }
    assert fit["aggregation"] == read_manifest(held)["aggregation"]
    assert fit["gate"]["threshold"] == manifest["gate"]["threshold"]  # the gate's too
    assert fit["reference"]["version"] == "lo-1" and fit["validation"]["note"].startswith("validation instruments were seen")


@needs_fluidsynth
@pytest.mark.slow
def test_a_trunk_ensemble_runs_the_same_on_onnxruntime_and_keras(tiny_dataset, tmp_path, cache, monkeypatch):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "models"
    train_ensemble(tiny_dataset, out, settings=TrainSettings(architecture="trunk", **TINY), families=["flute", "bass"])
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # a fresh ONNX export
    windows = np.random.default_rng(0).standard_normal((6, 64_000)).astype(np.float32) * 0.1
    fast = Ensemble.load(out)
    assert fast.runtime == "onnxruntime" and fast.gate_threshold is not None  # the trunk, heads and gate: one graph
    monkeypatch.setenv("TAGGER_RUNTIME", "keras")
    slow = Ensemble.load(out)
    assert slow.runtime == "keras"
    np.testing.assert_allclose(fast.predict(windows), slow.predict(windows), atol=1e-4)
    trunk_params = read_manifest(out)["trunk"]["params"]
    assert A.build_trunk(A.COMPACT_FEATURES.shape).count_params() == trunk_params


@needs_fluidsynth
def test_train_level_weights_shape_the_training_mixtures(tiny_dataset, tmp_path, cache):
    from typer.testing import CliRunner

    from tagger.cli import app

    out = tmp_path / "models"
    base = ["train", "--data", str(tiny_dataset), "--out", str(out), "--family", "flute", "--family", "organ",
            "--examples", "64", "--epochs", "1", "--valid-per-level", "1", "--aggregation-tracks", "4",
            "--valid-examples", "10"]  # fmt: skip
    bad = CliRunner().invoke(app, [*base, "--level-weights", "1,x"])
    assert bad.exit_code == 2 and "comma-separated numbers" in bad.output
    bad = CliRunner().invoke(app, [*base, "--level-weights", "0,1,1"])  # one weight a number of families, 0 to 10
    assert bad.exit_code == 1 and "--level-weights gives 3 weights" in bad.output  # (two --family, the dataset's ten mixed)
    assert "mixes 10 families (the dataset's, whichever --family it trains): give 11" in " ".join(bad.output.split())
    bad = CliRunner().invoke(app, [*base, "--trunk-filters", "8,0"])
    assert bad.exit_code == 2 and "--trunk-filters" in bad.output
    bad = CliRunner().invoke(app, [*base, "--negative-prob", "1.5"])
    assert bad.exit_code == 2 and "--negative-prob" in bad.output
    bad = CliRunner().invoke(app, [*base, "--pooling", "average"])
    assert bad.exit_code == 2 and "--pooling must be one of max, blur" in bad.output
    res = CliRunner().invoke(app, [*base, "--level-weights", "0,1,1,0,0,0,0,0,0,0,0", "--morph-prob", "0.5", "--warp-prob", "0.25",
                                   "--trunk-filters", "8,16,32", "--negative-prob", "0.7", "--pooling", "blur"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert read_manifest(out)["trunk"]["params"] == A.build_trunk(A.COMPACT_FEATURES.shape, filters=(8, 16, 32)).count_params()
    assert read_manifest(out)["training"]["pooling"] == "blur" and read_manifest(out)["training"]["threshold_resamples"] == 0
    saved = load_classifier(out / read_manifest(out)["trunk"]["file"])  # the saved trunk pools anti-aliased
    assert sum(type(layer).__name__ == "AveragePooling2D" for layer in saved.layers) == 4
    synth = read_manifest(out)["data"]["synth"]
    assert synth["level_weights"] == [0.0, 1.0, 1.0] + [0.0] * 8 and synth["morph_prob"] == 0.5 and synth["warp_prob"] == 0.25
    assert synth["negative_prob"] == 0.7
    # the training examples hold one or two families, never none (level 0 has weight 0)
    ex = next(cache.glob("train/examples-*"))
    assert set(np.load(ex / "train_y.npy").sum(axis=1)) <= {1, 2}


def _pool_of(folder, families: int):
    """A note pool of ``families`` families, one instrument each playing one harmonic note, and a
    noise negative."""
    from tagger import constants as C
    from tagger.model import synth as S

    t = np.arange(C.WINDOW_SAMPLES) / C.SAMPLE_RATE
    clips = [sum(np.sin(2 * np.pi * k * (110 + 20 * f) * t) / k for k in range(1, 6)) * 0.3 for f in range(families)]
    clips.append(np.random.default_rng(0).standard_normal(C.WINDOW_SAMPLES) * 0.1)
    folder.mkdir(parents=True)
    np.save(folder / "audio.npy", (np.stack(clips) * 32767).astype(np.int16))
    meta = {"families": [f"family{f}" for f in range(families)], "family": [*range(families), -1],
            "instrument": list(range(families + 1)), "is_drum": [False] * (families + 1),
            "instrument_names": [f"i{i}" for i in range(families + 1)], "notes": [str(i) for i in range(families + 1)]}  # fmt: skip
    (folder / "pool.json").write_text(json.dumps(meta))
    return S.NotePool(folder)


def test_default_level_weights_follow_the_families_so_an_eleventh_is_mixed_with_all_the_others(tmp_path):
    """`SynthSettings.level_weights` had 11 weights, mixtures of 0 to 10 families: with an eleventh
    family no training mixture held all of them. The default's last weight now stands for each family
    beyond ten; weights given for another number of families are a `UserError` naming the option;
    ten families' settings, and so their training caches' signatures, are those of before."""
    from tagger.model import synth as S
    from tagger.model.examples import _signature, _synth_signature

    pool = _pool_of(tmp_path / "pool", 11)
    rng = np.random.default_rng(0)
    sizes = [int(S.mixture_example(pool, rng, S.SynthSettings())[1].sum()) for _ in range(120)]
    assert max(sizes) == 11 and min(sizes) == 0
    default = S.SynthSettings()
    assert default.for_families(10) == default and len(default.level_weights) == 11
    assert _signature(_synth_signature(default.for_families(10))) == _signature(_synth_signature(default))
    assert default.for_families(11).level_weights == (*default.level_weights, 0.8)
    given = S.SynthSettings(level_weights=(0.6, 2, 1.8, 1.5, 1.2, 1, 0.8, 0.6, 0.5, 0.4, 0.3))  # written for ten
    assert given.for_families(10) == given
    with pytest.raises(UserError, match=r"--level-weights gives 11 weights, for mixtures of 0 to 10 families; this "
                                        r"training mixes 11 families \(the dataset's, whichever --family it trains\): "
                                        r"give 12"):  # fmt: skip
        given.for_families(11)  # (was: "this training has 11 families", said too of a training of one --family)


@needs_fluidsynth
@pytest.mark.slow
def test_a_contrastively_pretrained_trunk_is_trained_on_with_the_heads(tiny_dataset, tmp_path, cache):
    from typer.testing import CliRunner

    from tagger.cli import app

    out = tmp_path / "models"
    seen = []
    settings = TrainSettings(architecture="trunk", pretrain_steps=4, **TINY)
    manifest = train_ensemble(tiny_dataset, out, settings=settings, families=["flute", "bass"],
                              progress=lambda s, i: seen.append((s, i)))  # fmt: skip
    steps = [i for s, i in seen if s == "pretrain" and "step" in i]
    assert steps[-1] == {"step": 4, "of": 4, "loss": steps[-1]["loss"]} and steps[-1]["loss"] > 0
    assert manifest["training"]["pretrain_steps"] == 4
    pre = next(cache.glob("train/pretrain-*"))
    import keras

    pretrained = A.build_trunk(A.COMPACT_FEATURES.shape)
    pretrained.load_weights(pre / "trunk.weights.h5")
    shipped = keras.models.load_model(out / "trunk.keras", compile=False)
    # the mixture training went on from the pretrained trunk (not frozen, not discarded)
    first = [w for w in shipped.weights if "kernel" in w.path][0]
    start = [w for w in pretrained.weights if "kernel" in w.path][0]
    assert first.shape == start.shape and not np.allclose(np.asarray(first), np.asarray(start))
    assert np.corrcoef(np.asarray(first).ravel(), np.asarray(start).ravel())[0, 1] > 0.5
    assert Ensemble.load(out).predict(np.zeros((1, 64_000), np.float32)).shape == (1, 2)
    # examples are shared with the runs without pretraining
    assert len(list(cache.glob("train/examples-*"))) == 1
    bad = CliRunner().invoke(app, ["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "c"), "--architecture",
                                   "compact", "--pretrain-steps", "3"])  # fmt: skip
    assert bad.exit_code == 2 and "shared-trunk" in bad.output


@needs_fluidsynth
@pytest.mark.slow
def test_spectrogram_masks_train_on_the_same_examples_and_are_recorded(tiny_dataset, tmp_path, cache, monkeypatch):
    from typer.testing import CliRunner

    from tagger.cli import app
    from tagger.model import train as T

    seen = []

    def spy(x, rng, *, prob, **kw):
        out = real(x, rng, prob=prob, **kw)
        seen.append((len(x), prob, int((out == 0).all(axis=1).any(axis=1).sum())))
        return out

    real = T.spec_mask
    monkeypatch.setattr(T, "spec_mask", spy)
    plain = train_ensemble(tiny_dataset, tmp_path / "plain", settings=TrainSettings(**TINY), families=["flute"])
    assert seen == []
    masked = train_ensemble(tiny_dataset, tmp_path / "masked", settings=TrainSettings(mask_prob=1.0, **TINY), families=["flute"])
    # every training batch, and every example in it, was masked before the network saw it
    assert sum(n for n, _, _ in seen) == TINY["examples"] * TINY["epochs"]
    assert all(p == 1.0 and zeroed == n for n, p, zeroed in seen)
    assert masked["training"]["mask_prob"] == 1.0 and plain["training"]["mask_prob"] == 0.0
    # the same cached examples, another checkpoint: the masks change the training, not the data
    assert len(list(cache.glob("train/examples-*"))) == 1 and len(list(cache.glob("train/ckpt-*"))) == 2
    bad = CliRunner().invoke(app, ["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "c"), "--mask-prob", "1.5"])
    assert bad.exit_code == 2 and "mask-prob" in bad.output


@needs_fluidsynth
@pytest.mark.slow
def test_one_se_thresholds_decide_the_same_training_more_precisely(tiny_dataset, tmp_path, cache, eager_training):
    """`tagger train --one-se-thresholds`: the thresholds only, on the same cached examples and the
    same finished checkpoint (nothing is trained again); each family's is `calibrate_threshold`'s
    one-standard-error choice, the F0.5-best recorded beside it."""
    from typer.testing import CliRunner

    from tagger.cli import app

    fams = ["flute", "organ"]
    plain = train_ensemble(tiny_dataset, tmp_path / "plain", settings=TrainSettings(**TINY), families=fams)
    assert len(list(cache.glob("train/ckpt-*"))) == 1
    strict = train_ensemble(tiny_dataset, tmp_path / "strict", families=fams,
                            settings=TrainSettings(threshold_resamples=200, **TINY))  # fmt: skip
    assert len(list(cache.glob("train/ckpt-*"))) == 1 and strict["training"]["threshold_resamples"] == 200
    for f in fams:
        mine, best = strict["classifiers"][f], plain["classifiers"][f]
        assert mine["metrics"]["auc"] == best["metrics"]["auc"]  # the same scores: the same trained weights
        if best["metrics"]["fbeta"] > 0:
            assert mine["metrics"]["fbeta_best"]["threshold"] == pytest.approx(best["threshold"], abs=1e-4)
            assert mine["metrics"]["precision"] >= best["metrics"]["precision"]
            assert mine["metrics"]["fbeta"] <= best["metrics"]["fbeta"]
    res = CliRunner().invoke(app, ["train", "--help"], env={"COLUMNS": "300"})  # (wide: every option name whole)
    assert res.exit_code == 0 and "--one-se-thresholds" in res.output


def test_mel_shifts_train_on_the_same_examples_and_are_recorded(tiny_dataset, tmp_path, cache, monkeypatch, eager_training):
    from typer.testing import CliRunner

    from tagger.cli import app
    from tagger.model import train as T

    seen = []

    def spy(x, rng, *, prob, max_bands):
        before = x.copy()
        out = real(x, rng, prob=prob, max_bands=max_bands)
        seen.append((len(x), prob, max_bands, sum(not np.array_equal(a, b) for a, b in zip(out, before))))
        return out

    real = T.spec_shift
    monkeypatch.setattr(T, "spec_shift", spy)
    plain = train_ensemble(tiny_dataset, tmp_path / "plain", settings=TrainSettings(**TINY), families=["flute"])
    assert seen == []
    shifted = train_ensemble(tiny_dataset, tmp_path / "shifted", families=["flute"],
                             settings=TrainSettings(shift_prob=1.0, shift_bands=3, **TINY))  # fmt: skip
    # every training batch went through the shifts, nearly every example changed (a flat one may not)
    assert sum(n for n, *_ in seen) == TINY["examples"] * TINY["epochs"]
    assert all(p == 1.0 and k == 3 for _, p, k, _ in seen) and sum(c for *_, c in seen) >= 0.9 * sum(n for n, *_ in seen)
    assert shifted["training"]["shift_prob"] == 1.0 and shifted["training"]["shift_bands"] == 3
    assert plain["training"]["shift_prob"] == 0.0
    # the same cached examples, another checkpoint: the shifts change the training, not the data
    assert len(list(cache.glob("train/examples-*"))) == 1 and len(list(cache.glob("train/ckpt-*"))) == 2
    bad = CliRunner().invoke(app, ["train", "--data", str(tiny_dataset), "--out", str(tmp_path / "c"), "--shift-bands", "0"])
    assert bad.exit_code == 2 and "shift-bands" in bad.output


@pytest.mark.slow
def test_a_harmonic_front_end_is_recorded_used_and_kept_when_a_family_is_added(tiny_dataset, tmp_path, cache, eager_training):
    from tagger import features as F

    out = tmp_path / "models"
    settings = TrainSettings(architecture="trunk", harmonic=True, gate_cost=0.0, **TINY)
    manifest = train_ensemble(tiny_dataset, out, settings=settings, families=["flute", "organ"], version="tiny-h")
    assert manifest["features"]["harmonic"] is True and manifest["format"] == 2  # (taggers older than it refuse it)
    ens = Ensemble.load(out)
    assert ens.feature_config.harmonic
    windows = np.random.default_rng(0).standard_normal((3, 64_000)).astype(np.float32) * 0.1
    harmonic_feats = F.compute(windows=windows, config=ens.feature_config)
    np.testing.assert_allclose(ens.predict(windows), ens.predict_features(harmonic_feats), atol=1e-5)
    full_feats = F.compute(windows=windows, config=F.FeatureConfig(kind="logmel", n_mels=64))
    assert np.abs(harmonic_feats - full_feats).max() > 0.1  # (so the line above tells the front ends apart)
    # a new head on the frozen trunk hears what the trunk was trained on, without being told
    train_ensemble(tiny_dataset, out, settings=TrainSettings(architecture="trunk", **TINY), families=["percussion"])
    after = read_manifest(out)
    assert after["features"]["harmonic"] is True and after["trunk"] == manifest["trunk"]
    # retraining part of the folder on another front end is refused, naming the reason; all of it replaces it
    with pytest.raises(UserError, match="harmonic front end"):
        train_ensemble(tiny_dataset, out, settings=TrainSettings(architecture="trunk", **TINY), families=["flute"], force=True)
    assert read_manifest(out) == after
    full = train_ensemble(tiny_dataset, out, settings=TrainSettings(architecture="trunk", gate_cost=0.0, **TINY),
                          families=["flute", "organ", "percussion"], force=True, version="tiny-full")  # fmt: skip
    assert "harmonic" not in full["features"] and full["format"] == 1 and full["families"] == ["flute", "organ", "percussion"]
    assert not Ensemble.load(out).feature_config.harmonic and full["trunk"] != manifest["trunk"]


@needs_fluidsynth
@pytest.mark.slow
def test_a_presence_gate_is_trained_on_the_trunk_and_turns_windows_down(tiny_dataset, tmp_path, cache):
    from tagger.model import store

    out = tmp_path / "models"
    settings = TrainSettings(architecture="trunk", **TINY)
    plain = train_ensemble(tiny_dataset, out, settings=TrainSettings(architecture="trunk", gate_cost=0.0, **TINY),
                           families=["flute", "organ"], version="no-gate")  # fmt: skip
    assert "gate" not in plain and Ensemble.load(out).gate_threshold is None and plain["format"] == 1
    heads = {f: sha256_file(out / f"{f}.keras") for f in ("flute", "organ")}
    shutil.copytree(out, tmp_path / "production")  # (the same models, for a production fit's gate below)
    # models without a gate get one added: the heads, the trunk and their training record stay
    seen = []
    gated = train_ensemble(tiny_dataset, out, settings=settings, families=["flute", "organ"], version="gated",
                           progress=lambda s, i: seen.append((s, i)))  # fmt: skip
    assert "epoch" not in [s for s, _ in seen] and {f: sha256_file(out / f"{f}.keras") for f in heads} == heads
    assert gated["trunk"] == plain["trunk"] and gated["training"] == plain["training"]
    gate = gated["gate"]
    # (taggers older than the gate refuse these models; those older than its override too, when it has one)
    assert gated["format"] == (3 if gate["override"] is None else 4) and gated["version"] == "gated"
    assert gate["sha256"] == sha256_file(out / "gate.keras") and gate["metrics"]["cost"] == settings.gate_cost
    # the override is the rule's choice among the candidates tried on the validation windows
    tried = gate["metrics"]["overrides_tried"]
    assert [r["override"] for r in tried] == [None, *sorted(G.GATE_OVERRIDES, reverse=True)]
    qualify = [r["override"] for r in tried[1:] if r["kept_by_override"] and r["drums_alone_silent"] is not None
               and r["drums_alone_silent"] >= G.DRUMS_SILENT_MIN and r["fbeta"] >= tried[0]["fbeta"]]  # fmt: skip
    assert gate["override"] == (min(qualify) if qualify else None) == gate["metrics"]["own_override"]
    assert gate["metrics"]["turns_down_with_family"] <= settings.gate_cost + 1e-9 and 0.0 <= gate["metrics"]["auc"] <= 1.0
    # nothing left to do: a third run touches nothing
    assert train_ensemble(tiny_dataset, out, settings=settings, families=["flute", "organ"]) == gated
    # another cost refits the gate alone, with a threshold at least as high for a higher cost
    costly = TrainSettings(architecture="trunk", gate_cost=0.4, **TINY)
    shutil.copytree(out, tmp_path / "refit")
    refit = train_ensemble(tiny_dataset, tmp_path / "refit", settings=costly, families=["flute", "organ"])
    assert refit["gate"]["metrics"]["cost"] == 0.4 and refit["gate"]["threshold"] >= gate["threshold"]
    assert {f: sha256_file(tmp_path / "refit" / f"{f}.keras") for f in heads} == heads and refit["trunk"] == plain["trunk"]
    # a gate added to a production fit takes every threshold of the held-out reference, the heads' and the
    # gate's, since its manifest then names that run (the heads and the trunk stay as they were)
    ref = tmp_path / "reference"
    shutil.copytree(out, ref)
    ref_thresholds = {"flute": 0.31, "organ": 0.62}
    store.write_manifest(ref, dict(gated, version="held-out", gate=dict(gate, threshold=0.05, override=0.93),
                                   classifiers={f: dict(c, threshold=ref_thresholds[f]) for f, c in gated["classifiers"].items()}))  # fmt: skip
    prod = tmp_path / "production"
    other_cost = TrainSettings(architecture="trunk", gate_cost=0.05, **TINY)  # (the reference's cost wins)
    fit = train_ensemble(tiny_dataset, prod, settings=other_cost, families=["flute", "organ"], version="prod-gated", reference=ref)
    assert {f: c["threshold"] for f, c in fit["classifiers"].items()} == ref_thresholds
    assert fit["gate"]["metrics"]["cost"] == gate["metrics"]["cost"]
    assert fit["gate"]["threshold"] == 0.05 and fit["reference"]["version"] == "held-out" and fit["version"] == "prod-gated"
    assert fit["gate"]["override"] == 0.93 and fit["format"] == 4 and Ensemble.load(prod).gate_override == 0.93
    assert {f: sha256_file(prod / f"{f}.keras") for f in heads} == heads and fit["trunk"] == plain["trunk"]
    assert read_manifest(prod)["classifiers"]["organ"]["threshold"] == 0.62
    # a window the gate turns down has no family; the others keep their heads' scores
    ens = Ensemble.load(out)
    rng = np.random.default_rng(0)
    t = np.arange(64_000) / 16_000
    windows = np.stack([*(rng.standard_normal((4, 64_000)) * 0.1), *(0.3 * np.sin(2 * np.pi * f * t) for f in (220, 440, 880, 1320))])
    feats = ens.features(windows.astype(np.float32))
    raw = np.concatenate([ens._runner(feats[i : i + 1]) for i in range(len(feats))])
    assert raw.shape == (8, 3)  # the two heads, then the gate
    gated_manifest = dict(gated, gate=dict(gate, threshold=float(np.median(raw[:, -1]))))
    store.write_manifest(out, gated_manifest)  # a threshold between the windows' gate scores
    ens = Ensemble.load(out)
    probs = ens.predict_features(feats)
    down = raw[:, -1] < ens.gate_threshold
    assert 0 < down.sum() < len(down)
    np.testing.assert_allclose(probs[~down], raw[~down, :2], atol=1e-5)
    assert np.all(probs[down] == 0.0)
    # with an override, a window the gate turns down keeps its scores where a head is sure enough
    surest = raw[down, :2].max(axis=1)
    h = float(np.max(surest))
    store.write_manifest(out, dict(gated_manifest, gate=dict(gated_manifest["gate"], override=h)))
    ens = Ensemble.load(out)
    assert ens.gate_override == h and read_manifest(out)["format"] == 4
    probs = ens.predict_features(feats)
    kept = ~down | (raw[:, :2].max(axis=1) >= h)
    assert (kept & down).any() and not kept.all()
    np.testing.assert_allclose(probs[kept], raw[kept, :2], atol=1e-5)
    assert np.all(probs[~kept] == 0.0)
    # one family alone gets the same scores: the override still hears the other head
    for j, fam in enumerate(("flute", "organ")):
        alone = Ensemble.load(out, families=[fam])
        assert alone.families == (fam,) and alone.thresholds.shape == (1,)
        np.testing.assert_allclose(alone.predict_features(feats)[:, 0], probs[:, j], atol=1e-6)
    (tmp_path / "bad").mkdir()
    with pytest.raises(ModelError, match="override of the presence gate"):
        store.write_manifest(tmp_path / "bad", dict(gated_manifest, gate=dict(gated_manifest["gate"], override=1.5)))
        read_manifest(tmp_path / "bad")
    # a damaged gate file is refused like any other model file
    with open(out / "gate.keras", "ab") as f:
        f.write(b"\0")
    with pytest.raises(ModelError, match="presence gate"):
        Ensemble.load(out)
    # and `tagger train` fits the gate again (a refit killed between the file and the manifest leaves
    # this state) instead of skipping a folder that cannot load; the trunk and heads stay
    repaired = train_ensemble(tiny_dataset, out, settings=settings, families=["flute", "organ"])
    assert repaired["gate"]["sha256"] == sha256_file(out / "gate.keras") and Ensemble.load(out).gate_threshold is not None
    assert {f: sha256_file(out / f"{f}.keras") for f in heads} == heads and repaired["trunk"] == plain["trunk"]
    # a gate fitted before gates had an override is fitted again, and gets one chosen
    old = dict(repaired, gate={k: v for k, v in repaired["gate"].items() if k != "override"})
    store.write_manifest(out, old)
    assert "override" in train_ensemble(tiny_dataset, out, settings=settings, families=["flute", "organ"])["gate"]


@needs_fluidsynth
@pytest.mark.slow
def test_two_runs_averaged_then_a_family_added_one_head_per_frozen_trunk(tiny_dataset, tmp_path, cache, eager_training):
    from tagger.model.average import combine

    # two runs on the same examples and validation set, trained differently (another learning rate)
    a, b = tmp_path / "a", tmp_path / "b"
    train_ensemble(tiny_dataset, a, settings=TrainSettings(architecture="trunk", **TINY), families=["flute", "organ"], version="a")
    train_ensemble(tiny_dataset, b, settings=TrainSettings(architecture="trunk", **dict(TINY, learning_rate=1e-3)),
                   families=["flute", "organ"], version="b")  # fmt: skip
    (valid,) = [p for p in (cache / "train").glob("examples-*") if (p / "valid_x.npy").is_file()]
    assert {"bass", "flute", "organ"} <= set(json.loads((valid / "families.json").read_text()))  # the label columns, named
    out = tmp_path / "pair"
    pair = combine(out, [a, b], valid=valid, version="pair")
    assert pair["families"] == ["flute", "organ"] and Ensemble.load(out).predict(np.zeros((2, 64_000), np.float32)).shape == (2, 2)
    # a family added: one head per member, each on its frozen trunk, then the members combined again
    kept = {p.relative_to(out): sha256_file(p) for p in out.rglob("*.keras")}
    with pytest.raises(UserError, match="train into each of its members"):
        train_ensemble(tiny_dataset, out, settings=TrainSettings(architecture="trunk", **TINY), families=["bass"])
    for m in (a, b):
        train_ensemble(tiny_dataset, m, settings=TrainSettings(architecture="trunk", **TINY), families=["bass"])
    grown = combine(out, [a, b], valid=valid, version="pair-bass")
    assert grown["families"] == ["flute", "organ", "bass"] and Ensemble.load(out).families == ("flute", "organ", "bass")
    now = {p.relative_to(out): sha256_file(p) for p in out.rglob("*.keras")}
    new = {p for p in now if p.name == "bass.keras"}
    changed = {p for p in kept if p.name != "gate.keras" and now[p] != kept[p]}
    assert len(new) == 2 and not changed  # no trunk and no other head was retrained (only each gate refitted)
    assert {f: grown["classifiers"][f]["threshold"] for f in ("flute", "organ")} == {f: pair["classifiers"][f]["threshold"] for f in ("flute", "organ")}
