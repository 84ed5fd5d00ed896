"""Render library query results as text: table, JSON, CSV, bare paths (one a line, or NUL-separated)
or an M3U playlist.

Pure functions from the plain values of `tagger.db.queries` to strings; the CLI only prints them.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import math
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from json.encoder import encode_basestring_ascii as _json_str
from typing import TYPE_CHECKING

from tagger.constants import SILENCE_DBFS
from tagger.db.listing import TrackSummary
from tagger.display import named, named_failed, padded, shown, width

if TYPE_CHECKING:  # (start-up: `tagger query` renders no track's detail, and `tagger.db.detail` is 1-2 ms of its import)
    from tagger.db.detail import CueTrackDetail, CueTrackMatch, TrackDetail

QUERY_FORMATS = ("table", "json", "csv", "paths", "paths0", "m3u")
FORMAT_OF_SUFFIX = {".m3u": "m3u", ".m3u8": "m3u", ".csv": "csv", ".json": "json"}
"""The format `tagger query -o NAME` writes without ``--format``, by the name's extension (else a table)."""

SHOWN = {"table": ("instruments",), "json": ("instruments", "scores"), "csv": ("instruments", "scores"), "paths": (),
         "paths0": (), "m3u": ()}  # fmt: skip
"""What of a track's detections each of `QUERY_FORMATS` shows: the query reads those only
(`tagger.db.listing.stream_tracks`: a table's present families are a third of the rows, a list of
paths needs none)."""

log = logging.getLogger(__name__)

_LINE_BREAK = re.compile("[\n\r\x0b\x0c\x1c-\x1e\x85\u2028\u2029]")
"""Every character `str.splitlines` ends a line at."""


def _one_line(tracks: Iterable[TrackSummary], fmt: str) -> Iterator[TrackSummary]:
    """The tracks whose path fits on one line: a path holding a line break would be split into two
    entries of a line-based list (``paths``, ``m3u``), so it is left out, with a warning naming it.
    A line break is any boundary of `str.splitlines` (``\\v``, ``\\f``, ``\\x1c``-``\\x1e``, NEL,
    U+2028, U+2029 too), as a script reading the list may split there."""
    for t in tracks:
        if _LINE_BREAK.search(t.path):
            log.warning("left out of the %s output: %r (its name holds a line break)", fmt, t.path)
        else:
            yield t


def left_out(tracks: Sequence[TrackSummary], fmt: str) -> int:
    """How many of `tracks` the ``fmt`` output leaves out (`_one_line`: a name holding a line break in a
    line-based list); 0 for the other formats."""
    return sum(1 for t in tracks if _LINE_BREAK.search(t.path)) if fmt in ("paths", "m3u") else 0


def seconds_to_clock(seconds: float | None) -> str:
    """``m:ss`` (or ``h:mm:ss``) for a duration; ``?`` when unknown."""
    if seconds is None:
        return "?"
    total = int(round(seconds))
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def render_tracks(tracks: Sequence[TrackSummary], *, fmt: str) -> str:
    """The ``tagger query`` output in one of `QUERY_FORMATS` (always ending with a newline when not empty)."""
    return "".join(iter_rendered(tracks, fmt=fmt))


STREAM_BATCH = 500
"""Tracks per piece of `iter_rendered`."""


def iter_rendered(tracks: Iterable[TrackSummary], *, fmt: str, batch: int = STREAM_BATCH,
                  families: Sequence[str] | None = None, widths: tuple[int, int] | None = None,
                  encoding: str | None = None) -> Iterator[str]:  # fmt: skip
    """`render_tracks` in pieces of at most ``batch`` tracks each, each ending where an entry ends:
    a library of any size is written without its whole text, nor for JSON a dict per track, held
    at once (the JSON of 100,000 tracks, 46 MB, took 400 MB built in one piece). `tracks` is gone
    through once, as the pieces are asked for (an iterator such as
    `tagger.db.listing.stream_tracks` is never held whole), except for a CSV without ``families``
    (its score columns: `tagger.db.listing.scored_families`; else those of every track) and a
    table without ``widths`` (of its PATH and LENGTH columns: `table_widths`; else measured on
    every track). ``encoding``: that of the stream a table is printed on, where it is not UTF-8
    (`escaped_for`)."""
    if fmt not in QUERY_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(QUERY_FORMATS)}")
    if (fmt == "csv" and families is None) or (fmt == "table" and widths is None):
        tracks = list(tracks)
        families = _families(tracks) if fmt == "csv" else None
        widths = table_widths(tracks, encoding=encoding) if fmt == "table" else None
    entries = _one_line(tracks, fmt) if fmt in ("paths", "m3u") else iter(tracks)
    if fmt == "m3u":
        yield "#EXTM3U\n"
    elif fmt == "csv":
        yield _csv_rows([["path", "duration", "format", "instruments", "model_version", "stale",
                          *(f"score_{f}" for f in families)]])  # fmt: skip
    first = True
    while part := list(itertools.islice(entries, batch)):
        if fmt == "json":  # (json.dumps of the whole list, indent=1, item by item)
            items = ",\n".join(" " + _json_indented(t.to_dict()).replace("\n", "\n ") for t in part)
            yield ("[\n" if first else ",\n") + items
        elif fmt == "paths":
            yield "".join(t.path + "\n" for t in part)
        elif fmt == "paths0":  # (a name holds any character but NUL: every one is carried whole, for `xargs -0`)
            yield "".join(t.path + "\0" for t in part)
        elif fmt == "m3u":
            yield "".join(_m3u_entry(t) for t in part)
        elif fmt == "table":
            yield (_table_line(TABLE_HEADER, widths) if first else "") + "".join(
                _table_line(_table_row(t, encoding), widths) for t in part)
        else:
            yield _csv_rows([_csv_row(t, families) for t in part])
        first = False
    if fmt == "json":
        yield "[]\n" if first else "\n]\n"


_JSON_WORDS = {None: "null", True: "true", False: "false"}


def _json_value(value) -> str | None:
    """``json.dumps(value)`` for a str, None, a bool, an int or a float; None for anything else."""
    kind = type(value)
    if kind is str:
        return _json_str(value)
    if kind is float:
        if value != value:
            return "NaN"
        return float.__repr__(value) if abs(value) != math.inf else "Infinity" if value > 0 else "-Infinity"
    if value is None or kind is bool:
        return _JSON_WORDS[value]
    if kind is int:
        return int.__repr__(value)
    return None


def _json_indented(d: dict) -> str:
    """``json.dumps(d, indent=1)``, the same text, for a dict of str keys whose values are `_json_value`'s
    scalars, lists of them or dicts of str keys to them (a `TrackSummary.to_dict`); anything else goes
    to `json.dumps`. json's encoder written in C does not indent, and its Python one took 40-70 ms of
    a 2,106-track ``tagger query --format json`` (about a sixth of the whole process)."""
    lines = []
    for key, value in d.items():
        if type(key) is not str:
            return json.dumps(d, indent=1)
        text = _json_value(value)
        if text is None:
            kind = type(value)
            if kind is list:
                items = [_json_value(v) for v in value]
                if None in items:
                    return json.dumps(d, indent=1)
                text = "[\n  " + ",\n  ".join(items) + "\n ]" if items else "[]"
            elif kind is dict:
                items = [_json_value(v) for v in value.values()]
                if None in items or any(type(k) is not str for k in value):
                    return json.dumps(d, indent=1)
                pairs = [f"{_json_str(k)}: {v}" for k, v in zip(value, items)]
                text = "{\n  " + ",\n  ".join(pairs) + "\n }" if pairs else "{}"
            else:
                return json.dumps(d, indent=1)
        lines.append(f"{_json_str(key)}: {text}")
    return "{\n " + ",\n ".join(lines) + "\n}" if lines else "{}"


def render_m3u(tracks: Sequence[TrackSummary]) -> str:
    """An extended M3U playlist (absolute paths, UTF-8: save it as ``.m3u8`` or ``.m3u``)."""
    return render_tracks(tracks, fmt="m3u")


def _m3u_entry(t: TrackSummary) -> str:
    title = os.path.splitext(os.path.basename(t.path))[0].replace(",", " ")
    return f"#EXTINF:{int(round(t.duration)) if t.duration is not None else -1},{title}\n{t.path}\n"


def render_csv(tracks: Sequence[TrackSummary]) -> str:
    """Header ``path,duration,format,instruments,model_version,stale,score_<family>...``;
    instruments separated by ``;``."""
    return render_tracks(tracks, fmt="csv")


def _families(tracks: Sequence[TrackSummary]) -> list[str]:
    families: dict[str, None] = {}
    for t in tracks:
        families.update(dict.fromkeys(t.scores))
    return list(families)


def _csv_row(t: TrackSummary, families: Sequence[str]) -> list:
    unlisted = [f for f in t.scores if f not in families]
    if unlisted:  # (a model of other families stored results after the columns were chosen)
        log.warning("%r: its score(s) for %s are not in the CSV columns (stored while the output was written)",
                    t.path, ", ".join(unlisted))  # fmt: skip
    return [t.path, "" if t.duration is None else round(t.duration, 3), t.format or "", ";".join(t.instruments),
            t.model_version or "", int(t.stale), *(t.scores.get(f, "") for f in families)]  # fmt: skip


def _csv_rows(rows: list[list]) -> str:
    import csv  # (start-up: only the CSV format needs it)

    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _columns(rows: list[list[str]]) -> str:
    widths = [max(width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "".join("  ".join(padded(c, w) for c, w in zip(r, widths)).rstrip() + "\n" for r in rows)


TABLE_HEADER = ("PATH", "LENGTH", "INSTRUMENTS")


def escaped_for(text: str, encoding: str | None) -> str:
    """``text`` as a stream of ``encoding`` prints it (`tagger.cli.app.standard_streams`: a letter the
    encoding lacks as a ``\\u30cd`` escape), so that a table pads it by what is printed (a table of
    ネコ.flac padded by its 4 terminal columns printed 12 letters under PYTHONIOENCODING=latin-1);
    ``text`` itself for None (UTF-8)."""
    return text if encoding is None else text.encode(encoding, "backslashreplace").decode(encoding)


def _table_row(t: TrackSummary, encoding: str | None = None) -> tuple[str, str, str]:
    path = escaped_for(named(t.path), encoding)
    return path, seconds_to_clock(t.duration), " ".join(filter(None, [", ".join(t.instruments), "(stale)" if t.stale else ""]))


def _table_line(row: Sequence[str], widths: tuple[int, int]) -> str:
    return f"{padded(row[0], widths[0])}  {padded(row[1], widths[1])}  {row[2]}".rstrip() + "\n"


def table_widths(tracks: Iterable[TrackSummary], *, encoding: str | None = None) -> tuple[int, int]:
    """The widths of the table's PATH and LENGTH columns for `tracks` (its last column is not padded):
    what `iter_rendered` needs to write the table row by row. Gone through once, nothing kept."""
    path, length = len(TABLE_HEADER[0]), len(TABLE_HEADER[1])
    for t in tracks:
        path = max(path, width(escaped_for(named(t.path), encoding)))
        length = max(length, len(seconds_to_clock(t.duration)))
    return path, length


def render_table(tracks: Sequence[TrackSummary]) -> str:
    return render_tracks(tracks, fmt="table")


def all_silent_note(windows: int | None, silent_windows: int | None) -> str:
    """What `show` and `predict` add to `(none)` when every window was below the silence floor: nothing
    was listened to, which is not "found nothing"; "" otherwise."""
    if windows and silent_windows == windows:
        return f"  (every window is silent: {windows} of {windows} below {SILENCE_DBFS:g} dBFS)"
    return ""


STALE_NOTE = "stale: the last scan ran other models; a scan with them and --rescan-stale analyses it again"
"""What `show` says of a stale track (it said "analysed by an older model", of models that may be newer)."""


def render_detail(d: TrackDetail) -> str:
    """The ``tagger show`` text."""
    head = [
        named(d.path),
        f"  status: {d.status}" + (f" ({shown(d.error)})" if d.error else ""),
        f"  length: {seconds_to_clock(d.duration)}  format: {d.format or '?'}  "
        f"{d.sample_rate or '?'} Hz  {d.channels or '?'} ch",
        f"  model: {shown(d.model_version or '-')}" + (f"  ({STALE_NOTE})" if d.stale else ""),
        f"  instruments: {', '.join(d.instruments) if d.instruments else '(none)' if d.model_version else '(not analysed)'}",
    ]
    head[-1] += all_silent_note(d.windows, d.silent_windows)
    if d.analysed_in_part:
        head.append(f"  warning: analysed in part: {shown(d.analysed_in_part)}")
    if not d.families:
        return "\n".join(head) + "\n"
    rows = [["FAMILY", "PRESENT", "SCORE", "COVERAGE", "WHERE"]]
    for f in d.families:
        where = ", ".join(f"{seconds_to_clock(a)}-{seconds_to_clock(b)}" for a, b in f.segments)
        rows.append([f.family, "yes" if f.present else "no", f"{f.score:.3f}", f"{100 * f.coverage:.0f}%", where])
    return "\n".join(head) + "\n\n" + _columns(rows) + _render_cue(d)


def _render_cue(d: TrackDetail) -> str:
    """The tracks of the file's cue sheet under the whole file's table (`with_cue_tracks`), and what
    there is to say of its cue sheet."""
    return render_cue(d.cue_sheet, d.cue_tracks, d.cue_note)


def render_cue(source: str | None, tracks: Sequence[CueTrackDetail], note: str | None) -> str:
    """A cue sheet's tracks (``tagger show``'s and ``tagger predict``'s table) and its note, each
    after a blank line; "" for a file without a cue sheet."""
    out = ""
    if tracks:
        hidden = sum(t.hidden for t in tracks)
        out += f"\ncue sheet: {named(source)} ({len(tracks) - hidden} tracks{' + hidden track 0' if hidden else ''})\n"
        rows = [["TRACK", "FROM", "TO", "TITLE", "INSTRUMENTS"]]
        for t in tracks:
            rows.append([f"#{t.number:02d}", seconds_to_clock(t.start), seconds_to_clock(t.end), _cue_title(t),
                         ", ".join(t.instruments) or "(none)" + all_silent_note(t.windows, t.silent_windows)])  # fmt: skip
        out += _columns(rows)
    if note:
        out += f"\ncue sheet: {shown(note)}\n"
    return out


def _cue_title(t: CueTrackDetail) -> str:
    """A cue track's TITLE column: ``Title / Performer``; a hidden track 0 says what it is."""
    if t.hidden:
        return "(hidden, before the first track)"
    return " / ".join(shown(x) for x in (t.title, t.performer) if x) or "-"


CUE_TRACK_FORMATS = ("table", "json")
"""The formats of ``tagger query --cue-tracks`` (a track inside a file is no entry of a path list)."""


def render_cue_matches(matches: Sequence[CueTrackMatch], *, fmt: str) -> str:
    """The ``tagger query --cue-tracks`` text: a table (``Album.flac  #03  ...  Title  flute``) or a
    JSON list of `CueTrackMatch.to_dict` rows."""
    if fmt == "json":
        return json.dumps([m.to_dict() for m in matches], indent=1) + "\n"
    if not matches:
        return ""
    rows = [["PATH", "TRACK", "FROM", "TO", "TITLE", "INSTRUMENTS"]]
    for m in matches:
        t = m.track
        rows.append([named(m.path), f"#{t.number:02d}", seconds_to_clock(t.start), seconds_to_clock(t.end), _cue_title(t),
                     ", ".join(t.instruments) or "(none)"])  # fmt: skip
    return _columns(rows)


def render_stats(stats: dict) -> str:
    """The ``tagger stats`` text."""
    t = stats["tracks"]
    lines = [
        f"tracks: {t['total']} ({t['ok']} analysed, {t['error']} failed, {t['missing']} missing, {t['stale']} stale)",
        f"audio: {stats['audio_seconds'] / 3600:.2f} h",
        f"tracks without any instrument: {t['no_instrument']}",
    ]
    # (the manifest_hash prefix that `tagger --version` prints for the models it runs)
    lines += [f"model {m['version']}, manifest_hash {m['manifest_hash'][:16]}: {m['tracks']} track(s)"
              for m in stats.get("model_versions", ())]
    fams = list(stats["families"])
    if fams:
        lines.append("")
        rows = [["FAMILY", "TRACKS", *fams]]
        for f in fams:
            rows.append([f, str(stats["families"][f]), *(str(stats["cooccurrence"][f][g]) for g in fams)])
        lines.append(_columns(rows).rstrip("\n"))
    return "\n".join(lines) + "\n"


def render_errors(errors: Sequence[dict]) -> str:
    return "".join(f"{named_failed(e['path'], e['error'])}: {shown(e['error'])}\n" for e in errors)
