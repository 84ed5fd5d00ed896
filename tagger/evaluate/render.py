"""The report as text: ``report.md`` (`render_markdown`) and the command's closing summary
(`summary_lines`), both from the report's content (the dict that ``report.json`` holds)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from tagger.display import named
from tagger.paths import is_utf8


def format_levels(levels: Sequence[int]) -> str:
    """[0..10] -> '0-10'; [1, 3, 5] -> '1,3,5' (the form a list of levels is written and read in)."""
    lv = sorted(set(int(v) for v in levels))
    if len(lv) > 1 and lv == list(range(lv[0], lv[-1] + 1)):
        return f"{lv[0]}-{lv[-1]}"
    return ",".join(str(v) for v in lv)


def pct(value: float | None, digits: int = 1) -> str:
    """0.973 -> '97.3%'; None/NaN -> 'n/a'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{100 * value:.{digits}f}%"


def _num(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _table(header: Sequence[str], rows: Iterable[Sequence]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def render_markdown(report: dict) -> str:
    """report.md from the report's content (the same dict that report.json holds): the header
    (`_header`), the solo test (`_solo_section`), the polyphony levels (`_polyphony_section`),
    what the metrics mean (`_GLOSSARY`)."""
    files = report.get("files", {})
    lines = _header(report)
    if report.get("solo"):
        lines += _solo_section(report["solo"], report["paper"], files)
    if report.get("polyphony"):
        lines += _polyphony_section(report["polyphony"], report["paper"], report["model"]["families"], files)
    return "\n".join(lines + _GLOSSARY)


def _header(report: dict) -> list[str]:
    """The model and data the report scores, when and by what it was made, the command that reruns
    it (when known), and each family's decision threshold."""
    model, data = report["model"], report["data"]
    fams = model["families"]
    lines = [
        "# tagger evaluation report",
        "",
        f"- Model: `{model['version']}` ({model.get('architecture') or '?'}), manifest sha256 "
        f"`{(model.get('manifest_sha256') or '?')[:16]}`, from `{named(model['dir'])}`",
        f"- Data: `{named(data['path'])}` ({'note dataset' if data['kind'] == 'notes' else 'mixture folder'}"
        + (f", split `{data['split']}`" + (", acoustic sources only" if data.get("acoustic_only") else "") if data["kind"] == "notes" else "")
        + f"), sha256 of its index `{data['sha256'][:16]}`",
        f"- Created {report['created']} by tagger {report['tagger_version']}",
    ]
    lines += [f"- {line[0].upper()}{line[1:]}" for line in data_lines(data)]
    if report.get("command"):
        command = report["command"]  # (a name not UTF-8: shown escaped, as no UTF-8 text holds it)
        lines += ["- Rerun:", "", "```sh", command if is_utf8(command) else named(command), "```"]
    lines += [
        "",
        "Decision thresholds come from the model manifest (calibrated on validation data when the model",
        "was trained); this evaluation tunes nothing on the data it scores.",
        "",
    ]
    lines += _table(["family", *fams], [["threshold", *(_num(model["thresholds"][f]) for f in fams)]])
    lines.append("")
    return lines


def _solo_section(solo: dict, pap: dict, files: dict) -> list[str]:
    """The solo test: one family per note (precision, recall, F1, accuracy next to the paper's),
    the ranking's top-1 accuracy, the confusion matrix, each classifier on its own, the confusion
    image when one was drawn."""
    sl = solo["single_label"]
    lines = [
        "## Solo test (the paper's Table VI)",
        "",
        f"{solo['n']} single notes. Each note gets one predicted family: the highest-scoring family among",
        "those whose score reaches their threshold, or *none* when no family does (counted as a miss).",
        "",
    ]
    rows = [
        [f, _num(v["precision"]), _num(v["recall"]), _num(v["f1"]), v["support"]] for f, v in sl["families"].items()
    ]
    rows.append(["**accuracy**", "", "", _num(sl["accuracy"]), sl["macro_avg"]["support"]])
    for name in ("macro_avg", "weighted_avg"):
        avg = sl[name]
        rows.append([name.replace("_", " "), _num(avg["precision"]), _num(avg["recall"]), _num(avg["f1"]), avg["support"]])
    lines += _table(["family", "precision", "recall", "F1", "support"], rows)
    lines += [
        "",
        f"Accuracy: ours **{pct(sl['accuracy'])}**, the paper's {pct(pap['solo_accuracy'], 0)} "
        f"(on NSynth test notes; not the same notes). Notes with no family above threshold: {sl['none']}.",
        "",
        f"Ranking alone, thresholds aside: the highest-scoring family is the right one for "
        f"{pct(solo['ranking']['top1_accuracy'])} of the notes.",
        "",
        "Confusion matrix (rows: true family, columns: predicted family):",
        "",
    ]
    cm = solo["confusion"]
    lines += _table(["true \\ predicted", *cm["columns"]], [[r, *row] for r, row in zip(cm["rows"], cm["counts"])])
    ml = solo["multilabel"]
    lines += [
        "",
        "Each classifier on its own (thresholded decisions; a note may get several families or none): "
        f"exact match {pct(ml['emr'])}, Jaccard {pct(ml['jaccard'])}, Hamming {pct(ml['hamming'])}.",
        "",
    ]
    lines += _table(
        ["family", "accuracy", "TPR", "FPR", "precision", "F1", "support"],
        [
            [f, pct(v["accuracy"]), pct(v["tpr"]), pct(v["fpr"]), pct(v["precision"]), pct(v["f1"]), v["support"]]
            for f, v in ml["families"].items()
        ],
    )
    if "solo_confusion" in files:
        lines += ["", f"![Solo confusion matrix]({files['solo_confusion']})"]
    lines.append("")
    return lines


def _polyphony_section(poly: dict, pap: dict, fams: Sequence[str], files: dict) -> list[str]:
    """The polyphony levels: how the mixtures were made (`_clip_notes`), whether the overall values
    compare with the paper's, the per-level table next to the paper's (`_levels_table`), the oracle
    count (`_oracle_table`), the per-family tables (`_family_tables`) and the confusion grids."""
    src = poly["source"]
    made = (
        f"{src['per_level']} mixtures per level drawn with seed {src['seed']} and rendered in memory"
        if src["kind"] == "rendered"
        else f"mixtures read from the folder's labels.json (made with seed {src.get('seed')}, {src.get('per_level')} per level)"
    )
    lines = [
        "## Polyphony levels (the paper's Table V and Fig. 6)",
        "",
        f"{poly['n']} mixtures; level k sums k notes of k distinct families; {made}.",
        "Overall = the unweighted mean over levels, as the paper computes it.",
        "",
    ]
    lines += _clip_notes(src)
    if not _every_level(poly, pap):
        lines += [
            f"Only levels {format_levels([int(k) for k in poly['levels']])} were run: our overall values "
            "are not comparable with the paper's (levels 0-10).",
            "",
        ]
    lines += _levels_table(poly, pap)
    if poly.get("oracle_count"):
        lines += _oracle_table(poly["oracle_count"])
    if "metrics_vs_level" in files:
        lines += ["", f"![Metrics against polyphony level]({files['metrics_vs_level']})"]
    lines += _family_tables(poly, fams, files)
    level_keys = list(poly["levels"])
    grids = [(k, files[f"confusion_level_{int(k):02d}"]) for k in level_keys if f"confusion_level_{int(k):02d}" in files]
    if grids:
        lines += ["", "### Per-family confusion matrices per level (Figs. 9-14)", ""]
        lines += [f"- level {k}: [{path}]({path})" for k, path in grids]
    lines.append("")
    return lines


def _clip_notes(src: dict) -> list[str]:
    """A note for the mixtures shorter than the window (padded) and those longer (cut), naming the
    first 20 of each."""
    lines = []
    for key, what in (("padded", "shorter than the {w:g} s window were evaluated padded with silence"),
                      ("cut", "longer than the {w:g} s window were scored on their first window only")):  # fmt: skip
        clips = src.get(key) or {}
        if clips.get("count"):
            names = ", ".join(f"`{named(p['file'])}` ({p['seconds']:g} s)" for p in clips["files"][:20])
            more = f" and {clips['count'] - 20} more (all in report.json)" if clips["count"] > 20 else ""
            lines += [f"**{clips['count']} mixture(s) {what.format(w=clips['window_seconds'])}:** {names}{more}.", ""]
    return lines


def _every_level(poly: dict, pap: dict) -> bool:
    """Whether the levels run are the paper's (0-10): only then is our overall value, a mean over
    levels, set beside the paper's; over fewer levels the paper's is `n/a` (was: its 64% over 0-10
    beside ours over, say, 1-3, whose paper mean is 82%, in the command's summary without a word)."""
    return sorted(int(k) for k in poly["levels"]) == sorted(int(k) for k in pap["level_accuracy"])


def _levels_table(poly: dict, pap: dict) -> list[str]:
    """One row per level and the overall row: our Jaccard, Hamming and EMR next to the paper's."""
    rows = []
    for k, v in poly["levels"].items():
        rows.append([
            k, v["n"], pct(v["jaccard"]), pct(pap["level_accuracy"].get(k), 0), pct(v["hamming"]),
            pct(v["emr"]), pct(pap["level_emr"].get(k), 0),
        ])  # fmt: skip
    ov, every = poly["overall"], _every_level(poly, pap)
    rows.append([
        "**overall**", poly["n"], pct(ov["jaccard"]), pct(pap["overall_accuracy"] if every else None, 0),
        pct(ov["hamming"]), pct(ov["emr"]), pct(pap["overall_emr"] if every else None, 0),
    ])  # fmt: skip
    return _table(["level", "n", "accuracy (Jaccard)", "paper accuracy", "Hamming accuracy", "EMR", "paper EMR"], rows)


def _oracle_table(oc: dict) -> list[str]:
    """The ranking alone: Jaccard and EMR per level when each mixture keeps its k best families."""
    lines = [
        "",
        "Ranking alone, thresholds aside: keeping each mixture's k highest-scoring families, k being its",
        "true number of families (an oracle count no tagger has), gives per level",
        "",
    ]
    lines += _table(
        ["", *oc["levels"], "overall"],
        [
            ["Jaccard", *(pct(v["jaccard"]) for v in oc["levels"].values()), pct(oc["overall"]["jaccard"])],
            ["EMR", *(pct(v["emr"]) for v in oc["levels"].values()), pct(oc["overall"]["emr"])],
        ],
    )
    return lines


def _family_tables(poly: dict, fams: Sequence[str], files: dict) -> list[str]:
    """Per family and level: accuracy, TPR and FPR, each table followed by its plot when drawn."""
    lines = []
    level_keys = list(poly["levels"])
    for key, title in (
        ("accuracy", "Per-family accuracy (share of mixtures where the family's bit is right)"),
        ("tpr", "Per-family true-positive rate TP/(TP+FN) (n/a: the family is in no mixture of the level)"),
        ("fpr", "Per-family false-positive rate FP/(FP+TN) (n/a: the family is in every mixture of the level)"),
    ):
        lines += ["", f"### {title}", ""]
        rows = [
            [f, *(pct(poly["levels"][k]["families"][f][key], 0) for k in level_keys), pct(poly["family_overall"][f][key], 0)]
            for f in fams
        ]
        lines += _table(["family", *(f"L{k}" for k in level_keys), "mean"], rows)
        if f"family_{key}_vs_level" in files:
            lines += ["", f"![{title}]({files[f'family_{key}_vs_level']})"]
    return lines


_GLOSSARY = [
    "## What the metrics mean",
    "",
    "- **Accuracy (Jaccard)**: per mixture |true ∩ predicted| / |true ∪ predicted|, averaged; a mixture with",
    "  no instrument and no prediction scores 1. The paper calls it multilabel accuracy.",
    "- **Hamming accuracy**: share of the 10 presence bits that are right, over all mixtures.",
    "- **EMR** (exact match ratio): share of mixtures whose whole set of families is right.",
    "- **TPR** = TP/(TP+FN): of the mixtures that contain the family, the share where it was found.",
    "- **FPR** = FP/(FP+TN): of the mixtures without the family, the share where it was reported.",
    "- Per-family **accuracy** = (TP+TN)/n. Confusion matrices are [[TN, FP], [FN, TP]].",
    "",
]
"""What the metrics mean: the last section of every report.md."""


def left_out_lines(left_out: dict | None) -> list[str]:
    """What a report says of the notes of its split that it left out (report.json's
    ``data.left_out``): a line for the synth_lead notes, one for those of other families; none for
    a mixture folder, an older report or no note left out."""
    if not left_out:
        return []
    lines = []
    if left_out.get("synth_lead"):
        lines.append(f"left out {left_out['synth_lead']:,} synth_lead notes (the paper leaves that family out)")
    other = left_out.get("other_families") or {}
    if other:
        counts = ", ".join(f"{family}: {n:,}" for family, n in other.items())
        lines.append(f"left out {sum(other.values()):,} notes of families that are not the model's ({counts})")
    return lines


def data_lines(data: dict) -> list[str]:
    """What a report says of its data beside the path: why the model's figures on them are
    optimistic (``data.seen_by_model``: it was trained or calibrated on them), the notes left out (`left_out_lines`) and
    the notes longer than the window, scored on their first 4 s (``data.notes_cut``, the first 5 named)."""
    lines = [f"warning: {line}" for line in data.get("seen_by_model") or []]
    lines += left_out_lines(data.get("left_out"))
    cut = data.get("notes_cut") or {}
    if cut.get("count"):
        names = ", ".join(f"{named(c['file'])} ({c['seconds']:g} s)" for c in cut["files"][:5])
        more = f" and {cut['count'] - 5} more (all in report.json)" if cut["count"] > 5 else ""
        lines.append(f"{cut['count']:,} note(s) longer than the {cut['window_seconds']:g} s window were scored "
                     f"and mixed on their first window only: {names}{more}")  # fmt: skip
    return lines


def summary_lines(report: dict) -> list[str]:
    """A short plain-text summary for the end of the command."""
    lines = [f"model {report['model']['version']} on {named(report['data']['path'])}"]
    lines += data_lines(report["data"])
    solo = report.get("solo")
    if solo:
        sl = solo["single_label"]
        lines.append(
            f"solo test: {solo['n']} notes, accuracy {pct(sl['accuracy'])} (paper {pct(report['paper']['solo_accuracy'], 0)}), "
            f"macro F1 {_num(sl['macro_avg']['f1'])}"
        )
    poly = report.get("polyphony")
    if poly:
        pap = report["paper"]
        lines.append(f"{'level':>5} {'n':>5} {'Jaccard':>8} {'paper':>6} {'Hamming':>8} {'EMR':>7} {'paper':>6}")
        for k, v in poly["levels"].items():
            lines.append(
                f"{k:>5} {v['n']:>5} {pct(v['jaccard']):>8} {pct(pap['level_accuracy'].get(k), 0):>6} "
                f"{pct(v['hamming']):>8} {pct(v['emr']):>7} {pct(pap['level_emr'].get(k), 0):>6}"
            )
        ov, every = poly["overall"], _every_level(poly, pap)
        lines.append(
            f"{'all':>5} {poly['n']:>5} {pct(ov['jaccard']):>8} {pct(pap['overall_accuracy'] if every else None, 0):>6} "
            f"{pct(ov['hamming']):>8} {pct(ov['emr']):>7} {pct(pap['overall_emr'] if every else None, 0):>6}"
        )
        if not every:
            lines.append(f"only levels {format_levels([int(k) for k in poly['levels']])} were run: the overall "
                         "values are not comparable with the paper's (levels 0-10)")  # fmt: skip
    return lines
