"""Held-out detail of trained runs on a cached validation set: per-kind AUC and averaged runs.

For each model directory: the mean per-family AUC on each kind of validation window (protocol
mixtures, music-like mixtures, single notes) and, on single notes, how often the highest-scoring
family is the right one. Then the held-out and left-out mean AUC (over every window with a family
question, as in the manifests) of each model directory alone and of the average of the scores of
every combination of them (model averaging).

The validation set is the one `tagger train` caches with its examples,
``~/.cache/tagger/train/examples-<signature>/valid_*.npy`` (``left_out/`` inside it for a run with
``--leave-out``); runs that share their example settings share it.

    .venv/bin/python scripts/held_out_detail.py --valid ~/.cache/tagger/train/examples-ab85013dc037513a \\
        ~/.cache/tagger/runs/trunk-lo-2 ~/.cache/tagger/runs/trunk-lo-timbre

With ``--report``: instead of AUC, each run's thresholded figures on the cached set and on its
left-out source (protocol Jaccard / EMR, single-note and music-like Jaccard, drums alone with no
family, as `tagger train` records them in the manifest, and the precision, recall and F0.5 of
every family of every window, drums alone included). ``--without-gate`` adds, for every run
with a presence gate, the same run scored by its heads alone (a copy of its folder without the
gate): what the gate changes, on the same trunk and heads. ``--gate-costs 0.01,0.05,0.1`` adds, for
every gated run, the same run with its gate's threshold chosen anew for each cost (the highest that
turns down at most that share of the held-out windows with a family, as `tagger train --gate-cost`
chooses it); the left-out source is scored at that threshold. ``--gate-overrides 0.9`` adds each
of those with the gate overruled in windows where a head scores at least 0.9 (the gate's override,
which `tagger train` chooses by `tagger.model.gate.choose_override`).

    .venv/bin/python scripts/held_out_detail.py --valid ~/.cache/tagger/train/examples-<signature> --report \
        --without-gate ~/.cache/tagger/runs/trunk-lo-harmonic-beats20-10ep-gate

``--averaged`` adds the gated runs' scores averaged (every head and the gate), with the thresholds,
the gate's threshold and its override chosen on the held-out windows as `tagger train` chooses them
for one run: what shipping the runs as one ensemble would give, thresholded.

``--mel-shifts=-1,0,1`` (with ``--report``; the ``=`` keeps argparse from reading ``-1`` as an option) adds the gated runs (averaged, when several) over views of every
window: its spectrogram shifted by each number of mel bands (edges repeated), every view scored by
every run and the scores averaged, decided the same way; with the mean AUC of those averaged scores,
held-out and left-out (the heads, before the gate). A measure of test-time augmentation: each view
costs one more pass of every trunk.

``--top-rescue`` adds, for every gated run, a decision rule measured for lone notes: a window in
which no family passes its threshold gets its top family when the gate hears a family in it (its
score at least the gate's threshold, or a higher bar) and that family's head scores at least a share
of its threshold (`TOP_RESCUE` lists the bars tried); each row names how many tags it adds and how
many of those are right.

With ``--copy-without-gate INTO``: the first model directory copied into INTO without its gate, to
score its heads alone with any other command (`tagger evaluate`, ``calibrate_aggregation.py
--dry-run``, ``--silence``).

With ``--programs DATASET``: instead, for the first model directory, single notes of every
validation instrument group of the dataset (a GM program across the sample libraries, an STK
class), each group's share of notes whose top family is right and whose family is tagged at the
threshold, and the family most often on top instead.

    .venv/bin/python scripts/held_out_detail.py --programs ~/.cache/tagger/datasets/gm4 ~/.cache/tagger/runs/trunk-lo-2

``--split train --source generaluser`` does the same for the training programs as played by a
source the run left out (known programs, unknown samples: the case of a user's music).

With ``--two-regime``: instead, for the first model directory, a decision rule measured honestly
on the cached validation set: thresholds chosen (F0.5, every window with drums alone included) on
the even-numbered windows and scored on the odd ones, once as today (one threshold per family) and
once with two per family, one for windows whose scores sum below S (few instruments playing), one
for the others, for a few S. Precision and F0.5 (the criterion of the thresholds) count every
family of every scored window with a family question.

With ``--chords POOL``: instead, for every model directory, windows of each instrument of a
training note pool (``~/.cache/tagger/train/pool-valid-<signature>``: the validation instruments;
``pool-left-out-<signature>``: the left-out source), played four ways: one note, a chord of 2-4 of
its notes, that chord over a drum kit's beat, and that chord with other non-family sounds (synths,
effects); per way, how often the right family is tagged and on top, how many wrong families a
window gets, Jaccard and precision. Music is played in chords, often over drums; a model that
hears a chord as several instruments tags wrong families.

    .venv/bin/python scripts/held_out_detail.py --chords ~/.cache/tagger/train/pool-valid-739e4d315784665c \
        ~/.cache/tagger/runs/trunk-lo-2 ~/.cache/tagger/runs/trunk-lo-chords

With ``--silence DATASET``: instead, for every model directory, every non-family note of a split
of the dataset (``--split``, default valid; drum kits and percussion, effects, synths, ethnic
instruments), one 4 s window each: the share that triggers no family, per kind of sound.

    .venv/bin/python scripts/held_out_detail.py --silence ~/.cache/tagger/datasets/gm4 --split test \
        ~/.cache/tagger/runs/trunk-lo-2 ~/.cache/tagger/runs/trunk-lo-harmonic
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

KINDS = ("protocol", "music-like", "single notes")


def _load(folder: Path):
    from tagger.model.validation import ValidationSet

    if not (folder / "valid_x.npy").is_file():
        return None
    return ValidationSet.cached(folder, lambda: None)


def _feature_config(folder: Path):
    """The front end of a cached validation set (`features.json`; sets cached before it was written
    hold the default trunk features)."""
    from tagger import features as F
    from tagger.model import architectures as A

    path = folder / "features.json"
    return F.FeatureConfig.from_dict(json.loads(path.read_text())) if path.is_file() else A.COMPACT_FEATURES


def _mean_auc(vs, probs: np.ndarray, select: np.ndarray) -> float:
    from tagger.evaluate.metrics import auc

    return float(np.mean([auc(vs.labels[select, j], probs[select, j]) for j in range(probs.shape[1])]))


def programs(dataset: Path, model_dir: Path, *, split: str = "valid", source: str | None = None, per_group: int = 60,
             seed: int = 0) -> list[str]:  # fmt: skip
    """Per instrument group of `split` (of one `source` only, if given): right top family and tagged
    share of its single notes (a Markdown table)."""
    from collections import Counter, defaultdict

    from tagger.data.nsynth import NoteDataset, load_note_audio
    from tagger.model.ensemble import Ensemble

    ens = Ensemble.load(model_dir)
    ds = NoteDataset.load(dataset, split=split, families=ens.families)
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for n in ds.notes:
        if source is None or n.soundfont == source:
            groups[(n.family, n.group)].append(n)
    rng = np.random.default_rng(seed)
    lines = ["| family | group | notes | right top family | tagged | most often on top instead |", "|---|---|---|---|---|---|"]
    for (family, group), notes in sorted(groups.items()):
        if len(notes) > per_group:
            notes = [notes[i] for i in np.sort(rng.choice(len(notes), per_group, replace=False))]
        probs = ens.predict(load_note_audio(notes))
        j = ens.families.index(family)
        top = probs.argmax(axis=1)
        wrong = Counter(ens.families[t] for t in top if t != j).most_common(1)
        lines.append(f"| {family} | {group} | {len(notes)} | {np.mean(top == j):.0%} | {np.mean(ens.decide(probs)[:, j]):.0%} | "
                     + (f"{wrong[0][0]} ({wrong[0][1] / len(notes):.0%})" if wrong else "") + " |")  # fmt: skip
    return lines


NON_FAMILY = ("percussion", "effects", "synth", "ethnic")


def silence(dataset: Path, model_dirs: list[Path], *, split: str = "valid") -> list[str]:
    """Per model directory and kind of non-family sound of `split`: the share of its notes (one
    window each) that trigger no family at the model's thresholds (a Markdown table), then which
    families they trigger (a second table: per run and kind, the share of the notes tagged with
    each family)."""
    from tagger.data.nsynth import NoteDataset, load_note_audio
    from tagger.model.ensemble import Ensemble

    ds = NoteDataset.load(dataset, split=split, families=NON_FAMILY)
    kinds = [k for k in NON_FAMILY if any(n.family == k for n in ds.notes)]
    audio = {k: load_note_audio([n for n in ds.notes if n.family == k]) for k in kinds}
    lines = ["| run | " + " | ".join(f"{k} ({len(audio[k])} notes): no family" for k in kinds) + " | all |",
             "|---|" + "---|" * (len(kinds) + 1)]  # fmt: skip
    which = []
    for d in model_dirs:
        ens = Ensemble.load(d)
        tagged = {k: ens.decide(ens.predict(audio[k])) for k in kinds}
        quiet = {k: ~tagged[k].any(axis=1) for k in kinds}
        every = np.concatenate(list(quiet.values())) if quiet else np.zeros(0, bool)
        lines.append(f"| `{d.name}` | " + " | ".join(f"{quiet[k].mean():.1%}" for k in kinds) + f" | {every.mean():.1%} |")
        if not which:
            which = ["", "| run | sound | " + " | ".join(ens.families) + " |", "|---|---|" + "---|" * len(ens.families)]
        which += [f"| `{d.name}` | {k} | " + " | ".join(f"{v:.1%}" for v in tagged[k].mean(axis=0)) + " |" for k in kinds]
    return lines + which


CHORD_WAYS = ("one note", "chord", "chord + drum beat", "chord + other non-family sounds")


def chord_windows(pool_dir: Path, *, per_instrument: int = 8, seed: int = 0):
    """Audio [shape=(n, 64000)] and family index [shape=(n,)] of each way (`CHORD_WAYS`) of playing
    every family instrument of a note pool, `per_instrument` windows each (seeded)."""
    from tagger.model import synth as S

    pool = S.NotePool(pool_dir)
    plain = dict(aligned_share=1.0, reverb_prob=0.0, noise_prob=0.0)
    alone, chord = S.SynthSettings(negative_prob=0.0, **plain), S.SynthSettings(negative_prob=0.0, chord_prob=1.0, **plain)
    drums = S.SynthSettings(negative_prob=0.0, chord_prob=1.0, drum_prob=1.0, **plain)
    mixed = S.SynthSettings(negative_prob=1.0, chord_prob=1.0, **plain)
    others = np.setdiff1d(pool.negative_instruments, pool.drum_instruments)
    ways = ((alone, None), (chord, None), (drums, None), (mixed, others))
    rng = np.random.default_rng(seed)
    audio: list[list[np.ndarray]] = [[] for _ in ways]
    family = []
    for f, instruments in enumerate(pool.family_instruments):
        for inst in instruments:
            for _ in range(per_instrument):
                family.append(f)
                for w, (settings, negatives) in enumerate(ways):
                    audio[w].append(S.mixture_example(pool, rng, settings, instruments={f: int(inst)}, negatives=negatives)[0])
    return [np.stack(a) for a in audio], np.asarray(family), pool.families


def chords(pool_dir: Path, model_dirs: list[Path], *, per_instrument: int = 8, seed: int = 0) -> list[str]:
    """The `chord_windows` of a pool scored by each model directory at its thresholds (a Markdown table)."""
    from tagger.model.ensemble import Ensemble

    audio, family, pool_families = chord_windows(pool_dir, per_instrument=per_instrument, seed=seed)
    lines = ["| run | played as | windows | right family tagged | right family on top | wrong families per window | Jaccard | precision |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for d in model_dirs:
        ens = Ensemble.load(d)
        truth = np.zeros((len(family), len(ens.families)), dtype=bool)
        keep = np.array([pool_families[f] in ens.families for f in family])
        truth[np.flatnonzero(keep), [ens.families.index(pool_families[f]) for f in family[keep]]] = True
        for way, x in zip(CHORD_WAYS, audio):
            probs = ens.predict(x[keep])
            pred = ens.decide(probs)
            t = truth[keep]
            right = (pred & t).sum(axis=1)
            wrong = (pred & ~t).sum(axis=1)
            jac = right / np.maximum((pred | t).sum(axis=1), 1)
            prec = right.sum() / max(int(pred.sum()), 1)
            lines.append(f"| `{d.name}` | {way} | {len(t)} | {right.mean():.1%} | {np.mean(probs.argmax(axis=1) == t.argmax(axis=1)):.1%} | "
                         f"{wrong.mean():.2f} | {jac.mean():.3f} | {prec:.3f} |")  # fmt: skip
    return lines


def without_gate(model_dir: Path, into: Path) -> Path:
    """A copy of a model directory without its presence gate: its heads alone, as before the gate."""
    from tagger.model.ensemble import read_manifest, write_manifest

    shutil.copytree(model_dir, into)
    manifest = read_manifest(into)
    gate = manifest.pop("gate", None)
    if gate is not None:
        (into / gate["file"]).unlink()
    write_manifest(into, manifest)
    return into


def report_rows(name: str, vs, probs: np.ndarray, ens) -> str:
    """One Markdown row of the thresholded validation figures (`ValidationSet.report`) of `probs`."""
    from tagger.evaluate.metrics import fbeta_from_counts

    rep = vs.report(probs, ens.thresholds, ens.families, ens.families)
    silent = rep.get("percussion_silent")
    # every (window, family) of every kind, drums alone included: the precision a user's tags have
    pred, truth = probs >= ens.thresholds, vs.labels.astype(bool)
    tp, fp, fn = int((pred & truth).sum()), int((pred & ~truth).sum()), int((~pred & truth).sum())
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    f05 = fbeta_from_counts(tp, fp, fn, beta=0.5)
    return (f"| {name} | {rep['protocol']['jaccard']:.3f} / {rep['protocol']['emr']:.3f} | {rep['solo_jaccard']:.3f} | "
            f"{rep['music_jaccard']:.3f} | {p:.3f} / {r:.3f} / {f05:.3f} | {'-' if silent is None else f'{silent:.1%}'} |")  # fmt: skip


def gate_cost_rows(name: str, ens, vs, left_out, costs, overrides=()) -> list[str]:
    """`report_rows` of a gated ensemble with its gate's threshold chosen anew for each cost on the
    held-out windows that hold a family (`tagger.model.gate.choose_threshold`); for each of
    `overrides` (a head score), also with the gate overruled in windows where a head scores at
    least that much (the gate's override, `tagger.model.gate.gated`)."""
    from tagger.model import gate as G

    sets = [("held-out instruments", vs), *([("left-out source", left_out)] if left_out is not None else [])]
    scored = {label: ens.predict_raw(s.feats) for label, s in sets}
    with_family = (vs.kind < 3) & vs.labels.any(axis=1)
    lines = []
    for cost in costs:
        t = G.choose_threshold(scored["held-out instruments"][with_family, -1], cost)
        for label, s in sets:
            p = scored[label]
            lines.append(report_rows(f"`{name}`, gate cost {cost:g} (threshold {t:.3f}), {label}", s,
                                     G.gated(p[:, :-1], p[:, -1], t), ens))  # fmt: skip
            for h in overrides:
                gated = G.gated(p[:, :-1], p[:, -1], t, h)
                lines.append(report_rows(f"`{name}`, gate cost {cost:g} (threshold {t:.3f}) overruled by a head at {h:g}, {label}",
                                         s, gated, ens))  # fmt: skip
    return lines


def averaged_rows(ensembles: list, names: list[str], vs, left_out, *, cost: float | None = None) -> list[str]:
    """`report_rows` of the average of gated ensembles' raw scores (heads and gate) on the held-out
    windows and the left-out source, decided as `tagger train` decides for one run and `tagger
    combine` for an averaged ensemble (`tagger.model.average.choose_operating_point`): the gate's
    threshold by `cost` (default the training default), its override with the left-out source's kits,
    or a soft gate's exponent where that does better."""
    from types import SimpleNamespace

    from tagger.model import gate as G
    from tagger.model.average import choose_operating_point

    def mean_scores(s):
        return np.mean([e.predict_raw(s.feats) for e in ensembles], axis=0)

    held = mean_scores(vs)
    heads, gate = held[:, :-1], held[:, -1]
    lo = mean_scores(left_out) if left_out is not None else None
    kits = lo[left_out.kind == 3] if lo is not None else None
    point = choose_operating_point(heads, gate, truth=vs.labels, kind=vs.kind, cost=G.GATE_COST if cost is None else cost,
                                   other_kits=None if kits is None else (kits[:, :-1], kits[:, -1]))  # fmt: skip
    g = point["gate"]
    decide = SimpleNamespace(thresholds=point["thresholds"], families=ensembles[0].families)
    how = f"soft gate, exponent {g['exponent']:g}" if g["exponent"] is not None else f"gate {g['threshold']:.3f}, override {g['override']}"
    name = " + ".join(f"`{n}`" for n in names) + f" averaged ({how})"
    lines = [report_rows(f"{name}, held-out instruments", vs, G.decided(heads, gate, g), decide)]
    if lo is not None:
        lines.append(report_rows(f"{name}, left-out source", left_out, G.decided(lo[:, :-1], lo[:, -1], g), decide))
    return lines


class MelShifted:
    """A loaded ensemble scored on views of each window (`shift_mel` by each of `shifts`), the views'
    scores averaged: what `averaged_rows` reads (`predict_raw`, `families`)."""

    def __init__(self, ens, shifts) -> None:
        self.ens, self.shifts, self.families = ens, tuple(shifts), ens.families

    def predict_raw(self, feats) -> np.ndarray:
        from tagger.model.augment import shift_mel

        return np.mean([self.ens.predict_raw(shift_mel(feats, k)) for k in self.shifts], axis=0)


def mel_shift_rows(ensembles: list, names: list[str], vs, left_out, shifts) -> list[str]:
    """`averaged_rows` of the runs over mel-shifted views of every window (`MelShifted`), and the mean
    AUC of the averaged heads on the held-out windows and the left-out source."""
    views = [MelShifted(e, shifts) for e in ensembles]
    label = f"over mel shifts {','.join(map(str, shifts))}"
    lines = [line.replace(" averaged (", f" averaged {label} (", 1) for line in averaged_rows(views, names, vs, left_out)]
    for name, s in (("held-out", vs), ("left-out", left_out)):
        if s is not None:
            heads = np.mean([v.predict_raw(s.feats) for v in views], axis=0)[:, : len(ensembles[0].families)]
            lines.append(f"{' + '.join(f'`{n}`' for n in names)} averaged {label}: {name} AUC {_mean_auc(s, heads, s.kind < 3):.4f}")
    return lines


TOP_RESCUE = ((None, 0.0), (None, 0.7), (0.6, 0.0), (0.8, 0.0), (0.8, 0.7))
"""The bars of `--top-rescue`: (the gate's score at least this, None = its threshold; the top head's
score at least this share of its own threshold)."""


def top_rescued(ens, heads: np.ndarray, gate: np.ndarray, *, gate_at_least: float | None = None,
                share: float = 0.0) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The gated ensemble's scores of windows [shape=(n, families)] from its heads' and gate's raw
    scores, where each window that no family passes gets its top family (its score raised to its
    threshold) when the gate scores at least `gate_at_least` (default: the gate's own threshold) and
    that head at least `share` of its threshold; and which windows got one [shape=(n,)]."""
    from tagger.model import gate as G

    th = np.asarray(ens.thresholds, dtype=np.float32)
    p = G.gated(heads, gate, ens.gate_threshold, ens.gate_override).copy()
    top = heads.argmax(axis=1)
    rows = np.arange(len(top))
    bar = ens.gate_threshold if gate_at_least is None else gate_at_least
    rescue = ~(p >= th).any(axis=1) & (gate >= bar) & (heads[rows, top] >= share * th[top])
    p[rows[rescue], top[rescue]] = np.maximum(heads[rows[rescue], top[rescue]], th[top[rescue]])
    return p, rescue


def top_rescue_rows(name: str, ens, vs, left_out) -> list[str]:
    """`report_rows` of a gated ensemble as it is and with each bar of `TOP_RESCUE`, on the held-out
    windows and the left-out source."""
    lines = []
    for label, s in (("held-out instruments", vs), *([("left-out source", left_out)] if left_out is not None else [])):
        p = ens.predict_raw(s.feats)
        truth = s.labels.astype(bool)
        for bar, share in TOP_RESCUE:
            scores, rescue = top_rescued(ens, p[:, :-1], p[:, -1], gate_at_least=bar, share=share)
            top = p[rescue, :-1].argmax(axis=1)
            right = int(truth[np.flatnonzero(rescue), top].sum())
            gate = "its threshold" if bar is None else f"{bar:g}"
            lines.append(report_rows(f"`{name}`, top family rescued (gate at least {gate}, head at least {share:g} of its "
                                     f"threshold): adds {int(rescue.sum())} tags, {right} right, {label}", s, scores, ens))  # fmt: skip
    return lines


def two_regime(vs, probs: np.ndarray, bounds=(0.8, 1.2, 1.6, 2.0)) -> list[str]:
    """One threshold per family against two (split by the sum of the window's scores), chosen on
    the even windows, scored on the odd ones (a Markdown table)."""
    from tagger.evaluate.metrics import THRESHOLD_BETA, calibrate_threshold, fbeta_from_counts, jaccard

    truth = vs.labels.astype(bool)
    fit = np.arange(len(truth)) % 2 == 0
    score = ~fit

    def pick(select):
        return np.array([calibrate_threshold(truth[select, j], probs[select, j], beta=THRESHOLD_BETA)[0]
                         for j in range(probs.shape[1])])  # fmt: skip

    def cells(pred) -> str:
        out = [jaccard(truth[score & (vs.kind == k)], pred[score & (vs.kind == k)]) for k in range(3)]
        drums = score & (vs.kind == 3)
        q = score & (vs.kind < 3)
        tp, fp = int((pred & truth)[q].sum()), int((pred & ~truth)[q].sum())
        fbeta = fbeta_from_counts(tp, fp, int((~pred & truth)[q].sum()))
        silent = f"{1 - pred[drums].any(axis=1).mean():.3f}" if drums.any() else ""
        return (" | ".join(f"{v.mean():.3f}" if len(v) else "-" for v in out)
                + f" | {silent or '-'} | {tp / max(tp + fp, 1):.3f} | {fbeta:.3f}")  # fmt: skip

    lines = ["| rule | windows below S | protocol Jaccard | music-like Jaccard | single notes Jaccard | drums alone: no family | precision "
             f"| F{THRESHOLD_BETA:g} |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    lines.append(f"| one threshold per family | - | {cells(probs >= pick(fit))} |")
    total = probs.sum(axis=1)
    for bound in bounds:
        low = total < bound
        pred = np.where(low[:, None], probs >= pick(fit & low), probs >= pick(fit & ~low))
        lines.append(f"| two, S = {bound:g} | {low.mean():.0%} | {cells(pred)} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_dirs", nargs="+", type=Path)
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--valid", type=Path, help="the examples cache folder holding valid_x.npy")
    group.add_argument("--programs", type=Path, metavar="DATASET", help="per validation instrument group, on single notes")
    group.add_argument("--chords", type=Path, metavar="POOL", help="a note pool's instruments as notes, chords, chords with drums")
    group.add_argument("--silence", type=Path, metavar="DATASET", help="a split's non-family notes: share with no family")
    group.add_argument("--copy-without-gate", type=Path, metavar="INTO",
                       help="copy the first model directory into INTO without its presence gate (its heads alone)")
    ap.add_argument("--two-regime", action="store_true", help="with --valid: one threshold per family against two")
    ap.add_argument("--report", action="store_true", help="with --valid: thresholded figures instead of AUC")
    ap.add_argument("--without-gate", action="store_true", help="with --report: also each gated run by its heads alone")
    ap.add_argument("--gate-costs", type=lambda v: [float(c) for c in v.split(",")], default=[],
                    help="with --report: also each gated run at the gate threshold of each of these costs")
    ap.add_argument("--gate-overrides", type=lambda v: [float(h) for h in v.split(",")], default=[],
                    help="with --gate-costs: also with the gate overruled where a head scores at least each of these")
    ap.add_argument("--averaged", action="store_true",
                    help="with --report: also the gated runs' scores averaged, decided as tagger train decides for one run")
    ap.add_argument("--mel-shifts", type=lambda v: [int(k) for k in v.split(",")], default=None,
                    help="with --report: also the gated runs (averaged) over spectrogram views shifted by these mel bands")
    ap.add_argument("--top-rescue", action="store_true",
                    help="with --report: also each gated run tagging the top family of windows no family passes")
    ap.add_argument("--split", default="valid", help="with --programs or --silence: the split scored (default valid)")
    ap.add_argument("--source", help="with --programs: only the notes of this source (e.g. generaluser, left out of a run)")
    args = ap.parse_args(argv)
    from tagger.model.backends import quiet_tensorflow

    quiet_tensorflow()
    from tagger.model.ensemble import Ensemble

    if (args.two_regime or args.report) and args.valid is None:
        ap.error("--two-regime and --report go with --valid")
    if args.mel_shifts and not args.report:
        ap.error("--mel-shifts goes with --report")
    if (args.without_gate or args.gate_costs or args.top_rescue or args.averaged) and not args.report:
        ap.error("--without-gate, --gate-costs, --top-rescue and --averaged go with --report")
    if args.copy_without_gate is not None:
        print(without_gate(args.model_dirs[0], args.copy_without_gate))
        return 0
    if args.chords is not None:
        if not (args.chords / "pool.json").is_file():
            print(f"{args.chords}: no note pool (pool.json) here", file=sys.stderr)
            return 1
        print("\n".join(chords(args.chords, args.model_dirs)))
        return 0
    if args.silence is not None:
        print("\n".join(silence(args.silence, args.model_dirs, split=args.split)))
        return 0
    if args.programs is not None:
        print("\n".join(programs(args.programs, args.model_dirs[0], split=args.split, source=args.source)))
        return 0

    vs = _load(args.valid)
    if vs is None:
        print(f"{args.valid}: no cached validation set (valid_x.npy) here", file=sys.stderr)
        return 1
    held = _feature_config(args.valid)
    tmp = Path(tempfile.mkdtemp(prefix="tagger-ungated-"))
    try:
        ensembles = {d: Ensemble.load(d) for d in args.model_dirs}
        if args.without_gate:
            for d in args.model_dirs:
                if ensembles[d].gate_threshold is not None:
                    plain = Path(f"{d.name} without its gate")
                    ensembles[plain] = Ensemble.load(without_gate(d, tmp / d.name))
        return _scored(args, vs, held, ensembles)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _scored(args, vs, held, ensembles: dict) -> int:
    """The --valid tables of `main` for loaded ensembles (name -> Ensemble)."""
    for d, ens in ensembles.items():
        if ens.feature_config != held:
            print(f"{d}: its models hear other features than the cached set in {args.valid} holds ({held.to_dict()}); "
                  "score it on the validation set its own training cached", file=sys.stderr)  # fmt: skip
            return 1
    if args.two_regime:
        ens = ensembles[args.model_dirs[0]]
        print("\n".join(two_regime(vs, ens.predict_features(np.asarray(vs.feats, dtype=np.float32), batch_size=256))))
        return 0
    left_out = _load(args.valid / "left_out")
    scores = {}
    for d, ens in ensembles.items():
        if vs.labels.shape[1] != len(ens.families):
            print(f"{d}: {len(ens.families)} families, the validation set has {vs.labels.shape[1]}", file=sys.stderr)
            return 1
        predict = lambda x: ens.predict_features(np.asarray(x, dtype=np.float32), batch_size=256)  # noqa: E731
        scores[d] = (predict(vs.feats), predict(left_out.feats) if left_out is not None else None)
    if args.report:
        print("| run, set | protocol Jaccard / EMR | single notes Jaccard | music-like Jaccard | "
              "every window: precision / recall / F0.5 | drums alone: no family |")  # fmt: skip
        print("|---|---|---|---|---|---|")
        for d, (p, lo) in scores.items():
            print(report_rows(f"`{d.name}`, held-out instruments", vs, p, ensembles[d]))
            if lo is not None:
                print(report_rows(f"`{d.name}`, left-out source", left_out, lo, ensembles[d]))
        for d, ens in ensembles.items():
            if ens.gate_threshold is not None:
                for line in gate_cost_rows(d.name, ens, vs, left_out, args.gate_costs, args.gate_overrides):
                    print(line)
                if args.top_rescue:
                    print("\n".join(top_rescue_rows(d.name, ens, vs, left_out)))
        gated_runs = [d for d in args.model_dirs if ensembles[d].gate_threshold is not None or ensembles[d].gate_exponent is not None]
        if args.averaged:
            if len(gated_runs) < 2:
                print(f"--averaged needs two runs with a presence gate; {len(gated_runs)} given", file=sys.stderr)
                return 1
            print("\n".join(averaged_rows([ensembles[d] for d in gated_runs], [d.name for d in gated_runs], vs, left_out)))
        if args.mel_shifts:
            if not gated_runs:
                print("--mel-shifts needs a run with a presence gate", file=sys.stderr)
                return 1
            print("\n".join(mel_shift_rows([ensembles[d] for d in gated_runs], [d.name for d in gated_runs], vs, left_out,
                                            args.mel_shifts)))  # fmt: skip
        return 0
    print("| run | " + " | ".join(f"{k} AUC" for k in KINDS) + " | single notes: right top family |")
    print("|---|" + "---|" * (len(KINDS) + 1))
    solo = vs.kind == 2
    truth = vs.labels[solo].argmax(axis=1)
    for d, (p, _) in scores.items():
        cells = [f"{_mean_auc(vs, p, vs.kind == k):.3f}" for k in range(len(KINDS))]
        top1 = float((p[solo].argmax(axis=1) == truth).mean()) if solo.any() else float("nan")
        print(f"| `{d.name}` | " + " | ".join(cells) + f" | {top1:.1%} |")
    print()
    print("| runs averaged | held-out AUC | left-out source AUC |")
    print("|---|---|---|")
    for k in range(1, len(scores) + 1):
        for combo in itertools.combinations(scores, k):
            held = _mean_auc(vs, np.mean([scores[d][0] for d in combo], axis=0), vs.kind < 3)
            lo = ""
            if left_out is not None:
                lo = f"{_mean_auc(left_out, np.mean([scores[d][1] for d in combo], axis=0), left_out.kind < 3):.3f}"
            print(f"| {' + '.join(f'`{d.name}`' for d in combo)} | {held:.3f} | {lo} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
