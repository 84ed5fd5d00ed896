"""The averaged ensemble: members copied and verified, their scores averaged by every backend, and
the operating point chosen on held-out validation (or carried over) as for one model."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tagger.errors import ModelError, UserError  # noqa: E402
from tagger.evaluate.metrics import THRESHOLD_BETA, calibrate_threshold  # noqa: E402
from tagger.hashing import sha256_file  # noqa: E402
from tagger.model import average as AV  # noqa: E402
from tagger.model import gate as G  # noqa: E402
from tagger.model.ensemble import AVERAGED_MANIFEST_FORMAT, Ensemble, read_manifest, write_manifest  # noqa: E402

pytestmark = pytest.mark.model
FAMILIES = ("bass", "flute", "organ")


def _run(path, *, seed: int, version: str, families=FAMILIES, gate: bool = True):
    """A trunk-and-heads model directory of random weights (BatchNorm statistics too, so that scores vary)."""
    keras = pytest.importorskip("keras")
    from tagger.model import architectures as A
    from tagger.model import store

    keras.utils.set_random_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = A.feature_config("trunk")
    manifest = store.new_manifest(architecture="trunk", recipe="mixture", feature_config=cfg, version=version,
                                  data={"left_out_sources": ["generaluser"]})  # fmt: skip
    trunk = A.build_trunk(cfg.shape, filters=(4, 8))
    for layer in trunk.layers:
        if type(layer).__name__ == "BatchNormalization":
            g, b, m, v = layer.get_weights()
            layer.set_weights([g, b, rng.normal(0, 0.5, m.shape).astype("float32"), rng.uniform(0.5, 2, v.shape).astype("float32")])
    store.save_trunk(path, manifest, trunk)
    width = int(trunk.output_shape[-1])
    for f in families:
        head = A.build_head(width, name=f"head_{f}")
        head.set_weights([rng.normal(0, 0.6, w.shape).astype("float32") for w in head.get_weights()])
        store.save_classifier(path, manifest, f, head, threshold=0.5)
    if gate:
        store.save_gate(path, manifest, G.gate_model(rng.normal(0, 0.5, width), 0.1), threshold=0.5, override=None,
                        metrics={"cost": 0.2})  # fmt: skip
    return path


def _validation(folder, *, n_per_kind=40, seed=3, families=FAMILIES):
    """A cached validation set (as `tagger train` leaves it) of random features: kinds 0-2 with random
    labels, kind 3 drums alone; with a left-out source's set beside it."""
    from tagger.model import architectures as A

    shape = A.feature_config("trunk").shape
    rng = np.random.default_rng(seed)
    for sub in (folder, folder / "left_out"):
        sub.mkdir(parents=True)
        kind = np.repeat(np.arange(4), n_per_kind).astype(np.int8)
        labels = (rng.random((len(kind), len(families))) < 0.4).astype(np.uint8)
        labels[kind == 3] = 0
        np.save(sub / "valid_x.npy", rng.random((len(kind), *shape), dtype=np.float32).astype(np.float16))
        np.save(sub / "valid_labels.npy", labels)
        np.save(sub / "valid_kind.npy", kind)
        np.save(sub / "valid_levels.npy", labels.sum(axis=1))
    (folder / "features.json").write_text(json.dumps(A.feature_config("trunk").to_dict(), sort_keys=True))
    (folder / "families.json").write_text(json.dumps(list(families)))
    return folder


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("average")
    a = _run(root / "a", seed=1, version="run-a")
    b = _run(root / "b", seed=2, version="run-b")
    valid = _validation(root / "valid")
    sources = {p: sha256_file(p) for d in (a, b) for p in sorted(d.iterdir())}
    out = root / "pair"
    manifest = AV.combine(out, [a, b], valid=valid, version="pair-1")
    return root, a, b, valid, out, manifest, sources


def test_the_average_of_two_runs_is_one_model_decided_as_one_run_is(pair, monkeypatch, tmp_path):
    from tagger.model import backends as B
    from tagger.model import validation as V

    root, a, b, valid, out, manifest, sources = pair
    assert manifest["format"] == AVERAGED_MANIFEST_FORMAT == 5 and manifest["version"] == "pair-1"
    assert [m["version"] for m in manifest["members"]] == ["run-a", "run-b"]
    # each member is copied whole, its manifest's hash recorded; the runs themselves are untouched
    for entry, src in zip(manifest["members"], (a, b)):
        copy = out / entry["dir"]
        assert entry["sha256"] == sha256_file(copy / "manifest.json") == sha256_file(src / "manifest.json")
        assert sorted(p.name for p in copy.iterdir()) == sorted(p.name for p in src.iterdir())
    assert {p: sha256_file(p) for p in sources} == sources
    vs = V.ValidationSet.cached(valid, lambda: None)
    ens, ra, rb = Ensemble.load(out), Ensemble.load(a), Ensemble.load(b)
    assert ens.families == FAMILIES and ens.runtime == "onnxruntime" and ens.gate_threshold is not None
    x = vs.feats[:32].astype(np.float32)
    want = (ra.predict_raw(x) + rb.predict_raw(x)) / 2  # every head's score and the gate's, averaged
    raw = ens.predict_raw(x)
    assert raw.shape == (32, 4) and np.max(np.abs(raw - want)) < 1e-5 and np.std(want[:, :3]) > 1e-3
    monkeypatch.setenv(B.RUNTIME_ENV, "keras")
    assert np.max(np.abs(Ensemble.load(out).predict_raw(x) - want)) < 1e-5
    monkeypatch.delenv(B.RUNTIME_ENV)
    # the thresholds: F0.5 over the validation windows with a family question, on the averaged scores
    held = (ra.predict_raw(vs.feats) + rb.predict_raw(vs.feats)) / 2
    asked = vs.kind < 3
    for j, f in enumerate(FAMILIES):
        t, _ = calibrate_threshold(vs.labels[asked, j], held[asked, j], beta=THRESHOLD_BETA)
        assert manifest["classifiers"][f]["threshold"] == pytest.approx(t, abs=1e-4)
    with_family = asked & vs.labels.any(axis=1)
    gate = manifest["gate"]
    assert gate["threshold"] == pytest.approx(G.choose_threshold(held[with_family, 3], 0.2), abs=1e-4)  # the members' cost
    assert gate["metrics"]["cost"] == 0.2 and "other_kits_silent" in gate["metrics"]["overrides_tried"][0]
    assert manifest["validation_left_out"]["sources"] == ["generaluser"] and set(manifest["validation_left_out"]["auc"]) == set(FAMILIES)
    # the gate decides the averaged scores: a window it turns down has no family
    probs = ens.predict_features(x)
    down = want[:, 3] < ens.gate_threshold
    if ens.gate_override is not None:
        down &= want[:, :3].max(axis=1) < ens.gate_override
    assert np.all(probs[down] == 0) and np.allclose(probs[~down], want[~down, :3], atol=1e-5)
    # a subset of the families (a scan's worker) gets the same columns
    sub = Ensemble.load(out, families=["organ"])
    assert np.allclose(sub.predict_features(x)[:, 0], probs[:, 2], atol=1e-6)
    assert sub.thresholds.tolist() == pytest.approx([manifest["classifiers"]["organ"]["threshold"]])


def test_a_member_tampered_or_out_of_place_is_refused(pair, tmp_path):
    import shutil

    _root, _a, _b, _valid, out, manifest, _ = pair
    d = tmp_path / "copy"
    shutil.copytree(out, d)
    head = d / manifest["members"][1]["dir"] / "flute.keras"
    with open(head, "r+b") as fh:
        fh.write(b"N")
    with pytest.raises(ModelError, match="sha256 mismatch for 'flute'"):
        Ensemble.load(d)
    shutil.rmtree(d)
    shutil.copytree(out, d)
    member = d / manifest["members"][0]["dir"] / "manifest.json"
    m = json.loads(member.read_text())
    m["classifiers"]["bass"]["threshold"] = 0.1
    member.write_text(json.dumps(m))
    with pytest.raises(ModelError, match="member's manifest"):
        Ensemble.load(d)
    for bad, reason in (("../../a", "outside"), ("", "outside")):
        top = json.loads((out / "manifest.json").read_text())
        top["members"][0]["dir"] = bad
        (d / "manifest.json").write_text(json.dumps(top))
        with pytest.raises(ModelError, match=reason):
            Ensemble.load(d)
    top["members"] = []
    (d / "manifest.json").write_text(json.dumps(top))
    with pytest.raises(ModelError, match="lists no members"):
        Ensemble.load(d)


def test_a_production_pair_carries_the_held_out_pairs_decisions(pair, tmp_path):
    root, a, b, valid, out, manifest, _ = pair
    ref = read_manifest(out)
    ref["aggregation"] = {**ref["aggregation"], "quantile": 0.6, "min_windows": 2}
    write_manifest(out, ref)
    prod = AV.combine(tmp_path / "prod", [b, a], reference=out, version="prod-1")
    assert {f: c["threshold"] for f, c in prod["classifiers"].items()} == {f: c["threshold"] for f, c in ref["classifiers"].items()}
    assert {k: prod["gate"][k] for k in ("threshold", "override")} == {k: ref["gate"][k] for k in ("threshold", "override")}
    assert prod["gate"]["metrics"]["cost"] == ref["gate"]["metrics"]["cost"] == 0.2
    assert prod["aggregation"]["quantile"] == 0.6 and prod["aggregation"]["min_windows"] == 2
    assert prod["reference"]["version"] == "pair-1" and [m["version"] for m in prod["members"]] == ["run-b", "run-a"]
    assert Ensemble.load(tmp_path / "prod").gate_threshold == pytest.approx(ref["gate"]["threshold"])
    # combined again into the same folder: replaced whole
    again = AV.combine(tmp_path / "prod", [a, b], reference=out, version="prod-2")
    assert again["version"] == "prod-2" and read_manifest(tmp_path / "prod")["version"] == "prod-2"
    assert not list(tmp_path.glob(".prod*"))
    # a combine stopped between its two renames (the older ensemble moved aside, the new one not yet
    # in place): the next combine puts the older one back first, so that one which fails keeps it
    os.replace(tmp_path / "prod", tmp_path / ".prod.combine.old")
    with pytest.raises(UserError, match="not an averaged ensemble"):
        AV.combine(tmp_path / "prod", [a, b], reference=a)
    assert read_manifest(tmp_path / "prod")["version"] == "prod-2" and not list(tmp_path.glob(".prod*"))
    Ensemble.load(tmp_path / "prod")


def test_what_cannot_be_averaged_is_refused_with_the_reason(pair, tmp_path):
    from typer.testing import CliRunner

    from tagger.cli import app

    root, a, b, valid, out, manifest, _ = pair
    with pytest.raises(UserError, match="one of the two"):
        AV.combine(tmp_path / "x", [a, b], valid=valid, reference=out)
    with pytest.raises(UserError, match="at least two members"):
        AV.combine(tmp_path / "x", [a], valid=valid)
    c = _run(tmp_path / "c", seed=3, version="run-c", families=("bass", "flute"))
    with pytest.raises(UserError, match="train the missing heads"):
        AV.combine(tmp_path / "x", [a, c], valid=valid)
    ungated = _run(tmp_path / "u", seed=4, version="run-u", gate=False)
    with pytest.raises(UserError, match="has no presence gate"):
        AV.combine(tmp_path / "x", [a, ungated], valid=valid)
    with pytest.raises(UserError, match="not an averaged ensemble"):
        AV.combine(tmp_path / "x", [a, b], reference=a)
    with pytest.raises(UserError, match="itself an averaged ensemble"):
        AV.combine(tmp_path / "x", [a, out], valid=valid)
    with pytest.raises(UserError, match="no cached validation set"):
        AV.combine(tmp_path / "x", [a, b], valid=tmp_path)
    assert not list(tmp_path.glob(".x.*"))  # (nothing left behind by a combination that failed)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="something other than an averaged ensemble"):
        AV.combine(other, [a, b], valid=valid)
    assert [p.name for p in other.iterdir()] == ["notes.txt"] and not (tmp_path / "x").exists()
    # training into an averaged ensemble says where to train instead
    res = CliRunner().invoke(app, ["train", "--data", str(tmp_path), "--out", str(out)])
    assert res.exit_code == 1 and "train into each of its members" in res.output
    # and a single run takes no averaged ensemble's decisions (they decide averaged scores)
    from tagger.model.train import train_ensemble

    with pytest.raises(UserError, match="is an averaged ensemble: its thresholds and gate decide averaged scores"):
        train_ensemble(tmp_path / "data", tmp_path / "single", reference=out)
    assert not (tmp_path / "single").exists()
    res = CliRunner().invoke(app, ["combine", "--help"])
    assert res.exit_code == 0 and "--valid" in res.output and "--reference" in res.output and "--soft-gate" in res.output
    res = CliRunner().invoke(app, ["combine", str(a), str(b), "--out", str(tmp_path / "x"), "--reference", str(out), "--soft-gate"])
    assert res.exit_code == 1 and "--soft-gate chooses the gate on a validation set" in res.output and not (tmp_path / "x").exists()
    res = CliRunner().invoke(app, ["combine", str(a), str(b), "--out", str(tmp_path / "x"), "--reference", str(out),
                                   "--one-se-thresholds"])  # fmt: skip
    assert res.exit_code == 1 and "--one-se-thresholds chooses the thresholds" in res.output and not (tmp_path / "x").exists()


def test_members_and_references_that_do_not_match_are_refused_with_the_reason(pair, tmp_path):
    """(Pinned before `combine` was split into steps.)"""
    import shutil

    root, a, b, valid, out, manifest, _ = pair

    def edited(src, name, change):
        copy = shutil.copytree(src, tmp_path / name)
        m = read_manifest(copy)
        change(m)
        write_manifest(copy, m)
        return copy

    other_features = edited(a, "f", lambda m: m["features"].update(n_mels=m["features"].get("n_mels", 0) + 1))
    with pytest.raises(UserError, match=r"f hears other features than .*a: their scores cannot be averaged"):
        AV.combine(tmp_path / "x", [a, other_features], valid=valid)
    two_families = edited(out, "ref-families", lambda m: m.update(families=["bass", "flute"]))
    with pytest.raises(UserError, match="ref-families decides other families or features than the members"):
        AV.combine(tmp_path / "x", [a, b], reference=two_families)
    no_gate = edited(out, "ref-ungated", lambda m: m.pop("gate"))
    with pytest.raises(UserError, match="ref-ungated has no presence gate, unlike its members"):
        AV.combine(tmp_path / "x", [a, b], reference=no_gate)
    with pytest.raises(UserError, match="pair averages 2 models; 3 given"):
        AV.combine(tmp_path / "x", [a, b, edited(a, "third", lambda m: m.update(version="third"))], reference=out)
    inside = out / AV.MEMBERS_DIR / manifest["members"][0]["dir"].split("/")[-1]
    with pytest.raises(UserError, match="pair holds a member; combine into another folder"):
        AV.combine(out, [inside, b], reference=out)
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*")) and not list(root.glob(".pair.*"))
    assert read_manifest(out)["version"] == "pair-1"


def test_a_member_given_twice_or_as_a_copy_is_refused(pair, tmp_path):
    """`combine a a` (or a and a copy of it) made an "average" of one model weighed double, recorded
    as two members, past the check for at least two (was: exit 0, a new ensemble)."""
    import shutil

    from typer.testing import CliRunner

    from tagger.cli import app

    root, a, b, valid, out, manifest, _ = pair
    with pytest.raises(UserError, match=r"a is the same model as .*a \(the same folder\): an average needs different"):
        AV.combine(tmp_path / "x", [a, b, a.parent / "." / a.name], reference=out)
    copy = shutil.copytree(a, tmp_path / "copy-of-a")
    result = CliRunner().invoke(app, ["combine", str(a), str(copy), "--out", str(tmp_path / "x"), "--reference", str(out)])
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert f"{copy} is the same model as {a} (the same manifest.json)" in result.output
    assert not (tmp_path / "x").exists() and not list(tmp_path.glob(".x.*"))


def test_combine_says_what_it_restored_and_what_it_combined(pair, tmp_path):
    """(Pinned before `combine` was split into steps.)"""
    root, a, b, valid, out, manifest, _ = pair
    said = []
    AV.combine(tmp_path / "prod", [a, b], reference=out, version="prod-1", say=lambda stage, info: said.append((stage, info)))
    assert said == [("combined", {"out": str(tmp_path / "prod"), "members": ["run-a", "run-b"]})]
    os.replace(tmp_path / "prod", tmp_path / ".prod.combine.old")  # a combine stopped between its two renames
    said.clear()
    AV.combine(tmp_path / "prod", [b, a], reference=out, version="prod-2", say=lambda stage, info: said.append((stage, info)))
    assert said == [
        ("restored", {"out": str(tmp_path / "prod"), "from": str(tmp_path / ".prod.combine.old")}),
        ("combined", {"out": str(tmp_path / "prod"), "members": ["run-b", "run-a"]}),
    ]  # fmt: skip
    assert read_manifest(tmp_path / "prod")["version"] == "prod-2" and not list(tmp_path.glob(".prod*"))


def test_the_runs_table_names_the_members_and_counts_their_parameters(pair, capsys):
    import importlib.util
    from pathlib import Path

    _root, a, b, _valid, out, manifest, _ = pair
    spec = importlib.util.spec_from_file_location("runs", Path(__file__).parents[1] / "scripts" / "runs_table.py")
    runs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(runs)
    assert runs.main([str(out)]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    one = runs.params_of(read_manifest(a))
    assert one > 0 and runs.params_of(read_manifest(out), out) == one + runs.params_of(read_manifest(b))
    assert "`run-a` and `run-b` averaged" in line and f"{2 * one:,}" in line
    assert f"{np.mean(list(manifest['validation_left_out']['auc'].values())):.3f}" in line


def _gate_case(seed: int = 5):
    """Validation scores with a known story (2 families): windows of kinds 0-2 with random families,
    a tenth of which the gate barely hears (0.3: unusual instruments, their heads at 0.6-0.8, under any
    override), and windows of drums alone (kind 3) that the gate rightly doubts (0.02-0.1) but that set
    the second head off (0.55-0.75) in a third of them."""
    rng = np.random.default_rng(seed)
    n, d = 480, 120
    kind = np.r_[np.repeat(np.arange(3), n // 3), np.full(d, 3)].astype(np.int8)
    truth = np.zeros((n + d, 2), bool)
    truth[:n] = rng.random((n, 2)) < 0.5
    truth[:n][~truth[:n].any(axis=1), 0] = True
    heads = np.where(truth, rng.uniform(0.6, 0.95, truth.shape), rng.uniform(0.05, 0.5, truth.shape)).astype(np.float32)
    gate = rng.uniform(0.85, 0.99, n + d).astype(np.float32)
    faint = np.r_[rng.random(n) < 0.1, np.zeros(d, bool)]
    gate[faint] = 0.3
    heads[faint] = np.where(truth[faint], rng.uniform(0.6, 0.8, truth[faint].shape), heads[faint])
    gate[n:] = rng.uniform(0.02, 0.1, d)
    heads[n:] = rng.uniform(0.05, 0.3, (d, 2))
    heads[n : n + d // 3, 1] = rng.uniform(0.55, 0.75, d // 3)
    return heads, gate, truth, kind


def test_a_soft_gate_replaces_the_hard_one_where_it_does_better_on_validation():
    from tagger.model import validation as V

    heads, gate, truth, kind = _gate_case()
    hard_only = AV.choose_operating_point(heads, gate, truth=truth, kind=kind, cost=0.15)
    assert hard_only["gate"]["exponent"] is None and "exponents_tried" not in hard_only["gate"]["metrics"]  # (asked for)
    point = AV.choose_operating_point(heads, gate, truth=truth, kind=kind, cost=0.15, soft=True)
    g = point["gate"]
    tried = g["metrics"]["exponents_tried"]
    hard = next(r for r in g["metrics"]["overrides_tried"] if r["override"] == g["metrics"]["own_override"])
    # the hard gate turns the faint windows down; softened, they keep their families and the drums stay silent
    assert g["exponent"] is not None and g["threshold"] is None and g["override"] is None
    assert g["metrics"]["hard"]["threshold"] == pytest.approx(G.choose_threshold(gate[(kind < 3) & truth.any(axis=1)], 0.15), abs=1e-4)
    first = next(r for r in tried if r["drums_alone_silent"] >= G.DRUMS_SILENT_MIN and r["fbeta"] >= hard["fbeta"])
    assert g["exponent"] == first["exponent"] and first["fbeta"] > hard["fbeta"]
    # the thresholds are the ones chosen on the softened scores, as for any scores
    soft = G.softened(heads, gate, g["exponent"])
    for j in range(2):
        assert point["thresholds"][j] == pytest.approx(V.family_threshold(truth[:, j], soft[:, j], kind)[0])
    assert [round(float(t), 4) for t in point["thresholds"]] == first["thresholds"]
    # where the gate is less sure of the drums (0.8: under its hard threshold, but no softening silences
    # them: a third of them stay set off), the hard gate stays
    loud = gate.copy()
    loud[kind == 3] = 0.8
    hard_point = AV.choose_operating_point(heads, loud, truth=truth, kind=kind, cost=0.15, soft=True)
    assert hard_point["gate"]["exponent"] is None and hard_point["gate"]["threshold"] == pytest.approx(g["metrics"]["hard"]["threshold"], abs=1e-4)
    assert all(r["drums_alone_silent"] < G.DRUMS_SILENT_MIN for r in hard_point["gate"]["metrics"]["exponents_tried"])


def test_a_soft_gate_decides_what_the_ensemble_scores_and_is_carried_over(pair, tmp_path):
    import shutil

    from tagger.model.ensemble import SOFT_GATE_MANIFEST_FORMAT

    root, a, b, valid, out, manifest, _ = pair
    soft = tmp_path / "soft"
    shutil.copytree(out, soft)
    m = read_manifest(soft)
    m["gate"] = {**m["gate"], "threshold": None, "override": None, "exponent": 0.5}
    write_manifest(soft, m)
    assert read_manifest(soft)["format"] == SOFT_GATE_MANIFEST_FORMAT == 6  # (a tagger of format 5 refuses it)
    ens = Ensemble.load(soft)
    assert ens.gate_exponent == 0.5 and ens.gate_threshold is None and ens.gate_override is None
    x = np.random.default_rng(8).random((16, *ens.feature_config.shape), dtype=np.float32)
    raw = ens.predict_raw(x)
    np.testing.assert_allclose(ens.predict_features(x), raw[:, :3] * np.sqrt(raw[:, 3:]), rtol=1e-5)
    assert np.all(ens.predict_features(x) > 0)  # no window turned down
    sub = Ensemble.load(soft, families=["flute"])
    np.testing.assert_allclose(sub.predict_features(x)[:, 0], ens.predict_features(x)[:, 1], rtol=1e-6)
    # combined with --soft-gate on validation: the rule's choice, recorded with every exponent tried
    chose = AV.combine(tmp_path / "chose", [a, b], valid=valid, soft_gate=True)["gate"]
    hard = next(r for r in chose["metrics"]["overrides_tried"] if r["override"] == chose["metrics"]["own_override"])
    qualify = [r["exponent"] for r in chose["metrics"]["exponents_tried"] if r["drums_alone_silent"] >= G.DRUMS_SILENT_MIN
               and r["fbeta"] >= hard["fbeta"] and r["other_kits_silent"] >= min(G.DRUMS_SILENT_MIN, hard["other_kits_silent"])]  # fmt: skip
    assert [r["exponent"] for r in chose["metrics"]["exponents_tried"]] == sorted(G.GATE_EXPONENTS)
    assert chose["exponent"] == (min(qualify) if qualify else None)
    assert Ensemble.load(tmp_path / "chose").gate_exponent == chose["exponent"]
    # a production pair carries the soft gate over with the thresholds chosen for it
    prod = AV.combine(tmp_path / "prod", [a, b], reference=soft, version="prod-soft")
    assert prod["gate"]["exponent"] == 0.5 and prod["gate"]["threshold"] is None and prod["format"] == 6
    assert Ensemble.load(tmp_path / "prod").gate_exponent == 0.5
    # an exponent that is no number in (0, 4] is refused by name
    for bad in (0, -1, 5, True, "0.5"):
        m["gate"]["exponent"] = bad
        (soft / "manifest.json").write_text(json.dumps(m))
        with pytest.raises(ModelError, match="exponent of the presence gate"):
            Ensemble.load(soft)
    m["gate"] = {**m["gate"], "exponent": None, "threshold": None}
    (soft / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ModelError, match="threshold of the presence gate is None"):
        Ensemble.load(soft)


def test_one_se_thresholds_are_more_precise_within_the_error_of_the_best(pair, tmp_path):
    """`tagger combine --one-se-thresholds`: every family's threshold is `calibrate_threshold`'s
    one-standard-error choice on the same averaged scores, which records the F0.5-best beside it."""
    from tagger.model import validation as V

    _root, a, b, valid, _out, manifest, _ = pair
    one_se = AV.combine(tmp_path / "p", [a, b], valid=valid, threshold_resamples=300)
    vs = V.ValidationSet.cached(valid, lambda: None)
    held = (Ensemble.load(a).predict_raw(vs.feats) + Ensemble.load(b).predict_raw(vs.feats)) / 2
    asked = vs.kind < 3
    for j, f in enumerate(FAMILIES):
        mine, best = one_se["classifiers"][f], manifest["classifiers"][f]
        t, _ = calibrate_threshold(vs.labels[asked, j], held[asked, j], beta=THRESHOLD_BETA, resamples=300)
        assert mine["threshold"] == pytest.approx(t, abs=1e-4)
        assert mine["metrics"]["fbeta_best"]["threshold"] == pytest.approx(best["threshold"], abs=1e-4)
        assert mine["metrics"]["precision"] >= best["metrics"]["precision"]
        assert mine["metrics"]["fbeta"] <= best["metrics"]["fbeta"]


def test_combining_exports_the_pairs_graph_once(pair, tmp_path, monkeypatch):
    """The operating point is chosen after a first load of the pair; the decided pair runs the same
    files, so its export is the one cached then (the cache is keyed by the files, not the thresholds)."""
    from tagger.model import runtime as R

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    _root, a, b, valid, _out, _manifest, _ = pair
    AV.combine(tmp_path / "p", [a, b], valid=valid, soft_gate=True)
    ens = Ensemble.load(tmp_path / "p")
    assert ens.runtime == "onnxruntime"
    assert [p.name for p in R.cache_dir().glob("*.onnx")] == [R.cache_key(ens.graph_hash, ens.families)]
    AV.combine(tmp_path / "prod", [a, b], reference=tmp_path / "p")  # the same members decided by a reference
    assert len(list(R.cache_dir().glob("*.onnx"))) == 1


def _tree(folder) -> dict:
    from pathlib import Path

    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def test_models_are_never_written_into_the_shipped_models_a_member_or_a_music_folder(tmp_path, monkeypatch):
    # Before: `combine --out models` replaced the shipped models, `train --out ENSEMBLE/member-models/X`
    # changed a member in place (its ensemble no longer loaded: sha256 mismatch), and `train --out
    # ~/Music` wrote manifest.json and *.keras files among the songs.
    import shutil

    from tagger.model.ensemble import MODELS_ENV, default_model_dir
    from tagger.model.train import TrainSettings, train_ensemble

    monkeypatch.delenv(MODELS_ENV, raising=False)
    shipped = default_model_dir()
    before = _tree(shipped)
    copy = tmp_path / "ensemble"
    shutil.copytree(shipped, copy)
    members = [shutil.copytree(p, tmp_path / p.name) for p in sorted((shipped / AV.MEMBERS_DIR).iterdir())]
    with pytest.raises(UserError, match="is tagger's shipped models: combine into another folder"):
        AV.combine(shipped, members, reference=copy)
    with pytest.raises(UserError, match="is tagger's shipped models: train into a new or empty folder"):
        train_ensemble(tmp_path / "no-dataset", shipped / AV.MEMBERS_DIR / members[0].name, settings=TrainSettings())
    assert _tree(shipped) == before
    with pytest.raises(UserError, match=r"is a member of the averaged ensemble .*ensemble, which records"):
        train_ensemble(tmp_path / "no-dataset", copy / AV.MEMBERS_DIR / members[0].name, settings=TrainSettings())
    music = tmp_path / "music"
    music.mkdir()
    (music / "song.flac").write_bytes(b"fLaC")
    with pytest.raises(UserError, match=r"music holds files that are not a model's \(song.flac\)"):
        train_ensemble(tmp_path / "no-dataset", music, settings=TrainSettings())
    assert [p.name for p in music.iterdir()] == ["song.flac"]
    Ensemble.load(copy)  # the copy still loads: nothing was written into it
