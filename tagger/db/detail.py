"""One track with everything stored about it (``tagger show``: `track_detail`, and its window
scores, ``show --plot``: `track_timeline`), found under the name given or another Unicode form of it
(`stored_name`), and the error for a name the library holds no track of (`not_stored`); the tracks
of an album image's cue sheet, each aggregated from the stored window scores of its time range
(`with_cue_tracks`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from tagger.db import sql as Q
from tagger.db.filter import Candidate, TrackFilter, storable_name
from tagger.db.reads import _datetime, _family_order, latest_model_version_id, path_key, scanned_roots, unpack_window_scores
from tagger.db.sql import Reader, joined, reader_of, sql
from tagger.errors import UserError
from tagger.paths import escaped_name

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


@dataclass
class FamilyDetail:
    family: str
    present: bool
    score: float
    coverage: float
    segments: list[list[float]] = field(default_factory=list)


@dataclass
class CueTrackDetail:
    """One track of an album image's cue sheet, with the families of its time range (``show --json``'s
    ``cue_tracks``). ``start``, ``end`` and the segments are seconds in the whole file."""

    number: int
    title: str | None
    performer: str | None
    start: float
    end: float | None
    windows: int
    silent_windows: int
    instruments: list[str]
    families: list[FamilyDetail]
    hidden: bool = False
    """Track 0: the audio before the first track's ``INDEX 01`` (`tagger.cuesheet.CueTrack.hidden`)."""


@dataclass
class CueTrackMatch:
    """A cue track ``tagger query --cue-tracks`` selects: the album image's path and the track."""

    path: str
    track: CueTrackDetail

    def to_dict(self) -> dict:
        """The ``query --cue-tracks --format json`` row."""
        t = self.track
        return {"path": self.path, "number": t.number, "title": t.title, "performer": t.performer, "start": t.start,
                "end": t.end, "instruments": t.instruments, "scores": {f.family: f.score for f in t.families},
                "hidden": t.hidden}  # fmt: skip


@dataclass
class TrackDetail:
    """One track with everything stored about it (the ``show --json`` object)."""

    path: str
    status: str
    error: str | None
    size: int
    mtime: float
    fingerprint: str
    duration: float | None
    format: str | None
    sample_rate: int | None
    channels: int | None
    windows: int
    silent_windows: int
    model_version: str | None
    stale: bool
    analysed_at: str | None
    instruments: list[str]
    families: list[FamilyDetail]
    analysed_in_part: str | None = None
    """What the scan said of the file analysed without a small part it could not decode."""
    cue_sheet: str | None = None
    """The cue sheet whose tracks `cue_tracks` are (a ``.cue``, or the FLAC file's embedded one)."""
    cue_tracks: list[CueTrackDetail] = field(default_factory=list)
    cue_note: str | None = None
    """Why a cue sheet of the file gave no tracks (it could not be read, or does not fit the file), or
    what else its reader said."""

    def to_dict(self) -> dict:
        return asdict(self) | cue_json(self.cue_sheet, self.cue_tracks, self.cue_note)


def cue_json(source: str | None, tracks, note: str | None) -> dict:
    """The keys ``cue_sheet``, ``cue_tracks`` and ``cue_note`` of ``show --json`` and ``predict
    --json``: a cue sheet's name that is not valid UTF-8, in ``cue_sheet`` and in the note, with
    ``\\xNN`` escapes for the bytes that are not (`tagger.paths.escaped_name`, as ``scan --json``
    names such files): JSON holds no lone surrogate, which Python reads such bytes as."""
    return {"cue_sheet": None if source is None else escaped_name(source),
            "cue_tracks": [asdict(t) for t in tracks],
            "cue_note": None if note is None else escaped_name(note)}  # fmt: skip


def _present(track, order: dict[str, int]) -> list[str]:
    return sorted((d.family for d in track.detections if d.present), key=lambda f: order.get(f, len(order)))


def stored_name(session: Session, path: str) -> str:
    """The name the database stores the track at ``path`` under: ``path`` itself when a track has it,
    else the one stored name that is ``path`` in another Unicode form (`tagger.paths.nfc`: a file
    copied from macOS is stored decomposed, NFD, where a user types NFC; its file may be gone, so
    that no name on disk tells the form), else ``path``. Two such stored names are refused, naming
    them. Raises `UserError` for a name that is not UTF-8 (`storable_name`)."""
    from tagger.display import named
    from tagger.paths import nfc

    reader = reader_of(session)
    path = storable_name(path)
    if path.isascii() or reader.rows(sql("SELECT id FROM tracks WHERE path = {}", path)):
        return path
    # (the stored name starts as the typed one does up to its first letter that is not ASCII, but
    # for the letter before it, which an accent may compose with)
    common = path[: max(0, next(i for i, c in enumerate(path) if not c.isascii()) - 1)]
    pattern = common.replace("/", "//").replace("%", "/%").replace("_", "/_") + "%"  # ('/' escapes: LIKE's own)
    stored = [name for (name,) in reader.rows(sql("SELECT path FROM tracks WHERE path LIKE {} ESCAPE '/'", pattern))]
    alike = [name for name in stored if nfc(name) == nfc(path)]
    if len(alike) > 1:
        raise UserError(f"{named(path)}: the library holds {len(alike)} tracks of this name in different Unicode forms "
                        f"({', '.join(ascii(a) for a in alike)}): give the name in the form it has on disk")  # fmt: skip
    return alike[0] if alike else path


def not_stored(path: str, session: Session | Reader | None = None) -> UserError:
    """The error for a `path` the library holds no track of: a folder is not a track (`tagger show
    ~/Music/album` said to scan the folder, scanned already), a name that is nothing is no file, a
    file in a hidden folder (or hidden itself) below a folder a scan of ``session``'s database was
    given (`tagger.db.reads.scanned_roots`) is one that scan passes over without --include-hidden.
    A hidden folder at or above the scanned folders is not one of those: a scan given
    ``~/.local/Music`` enters it (a file there not stored is one no scan has seen yet)."""
    if os.path.isdir(path):
        return UserError(f"{path}: is a folder; give one of its files (`tagger query --path-glob "
                         f"'{path}/*'` lists its tracks)")  # fmt: skip
    if not os.path.lexists(path):
        return UserError(f"{path}: not in the library database, and no such file")
    from tagger.crawl import is_audio_file

    if os.path.isfile(path) and not is_audio_file(path):  # (`show cover.jpg` said to scan its folder, scanned already)
        return UserError(f"{path}: not in the library database: not an audio file tagger reads (by its name and "
                         f"first bytes), so no scan stores it")  # fmt: skip
    parts = os.fspath(path).split(os.sep)
    hidden = [i for i, part in enumerate(parts) if part.startswith(".") and part not in (".", "..")]
    if hidden and session is not None:  # (it named ~/.local of a library scanned as ~/.local/Music)
        roots = scanned_roots(session)
        hidden = [i for i in hidden if _walked_into(os.sep.join(parts[:i]) or os.sep, roots)]
    hidden = hidden[0] if hidden else None
    if hidden is not None:  # (a scan of its folder, done already, passes it over: "scan its folder" misled)
        where = "a hidden file" if hidden == len(parts) - 1 else f"in the hidden folder {os.sep.join(parts[: hidden + 1])}"
        return UserError(f"{path}: not in the library database: {where}, which a scan of a folder above it "
                         f"passes over without --include-hidden")  # fmt: skip
    return UserError(f"{path}: not in the library database (scan its folder with `tagger scan`)")


def _walked_into(folder: str, roots: list[str]) -> bool:
    """``folder`` is one of the folders a scan of ``roots`` walks (one of them or under one, as given
    or with its links resolved, as scans store their roots): a hidden name in it is passed over."""
    from tagger.paths import under_any

    return under_any(folder, roots) or under_any(os.path.realpath(folder), roots)


_DETAIL_COLUMNS = ("id", "path", "status", "error", "size", "mtime", "fingerprint", "duration", "format", "sample_rate",
                   "channels", "windows", "silent_windows", "model_version_id", "analysed_at", "analysed_in_part")  # fmt: skip
"""The columns of ``tracks`` that `track_detail` reads."""


def track_detail(session: Session | Reader, *, path: str) -> TrackDetail:
    """Everything stored about the track at `path`; raises `UserError` if the database lacks it.
    ``session``: a `tagger.db.sql.Reader`, or a Session or a Connection (``tagger show`` reads
    through ``sqlite3`` alone, as ``query`` does)."""
    reader = reader_of(session)
    found = reader.rows(sql(f"SELECT {', '.join(_DETAIL_COLUMNS)} FROM tracks WHERE path = {{}}", stored_name(reader, path)))
    if not found:
        raise not_stored(path, reader)
    t = found[0]
    detections = reader.rows(sql("SELECT family, present, score, coverage FROM detections WHERE track_id = {}", t.id))
    segments = reader.rows(sql('SELECT family, start, "end" FROM segments WHERE track_id = {}', t.id))
    version = None if t.model_version_id is None else reader.rows(
        sql("SELECT version FROM model_versions WHERE id = {}", t.model_version_id))[0][0]  # fmt: skip
    order = _family_order(reader)
    segs: dict[str, list[list[float]]] = {}
    for family, start, end in sorted(segments, key=lambda row: row.start):
        segs.setdefault(family, []).append([start, end])
    ranked = sorted(detections, key=lambda row: order.get(row.family, len(order)))
    fams = [FamilyDetail(r.family, bool(r.present), r.score, r.coverage, segs.get(r.family, [])) for r in ranked]
    return TrackDetail(
        path=t.path,
        status=t.status,
        error=t.error,
        size=t.size,
        mtime=t.mtime,
        fingerprint=t.fingerprint,
        duration=t.duration,
        format=t.format,
        sample_rate=t.sample_rate,
        channels=t.channels,
        windows=t.windows,
        silent_windows=t.silent_windows,
        model_version=version,
        stale=t.status == Q.STATUS_OK and t.model_version_id != latest_model_version_id(reader),
        analysed_at=_datetime(t.analysed_at).isoformat(timespec="seconds") + "Z" if t.analysed_at else None,
        instruments=[r.family for r in ranked if r.present],
        families=fams,
        analysed_in_part=t.analysed_in_part if t.status == Q.STATUS_OK else None,
    )


def track_timeline(session: Session, *, path: str):
    """The stored window scores of the track at `path` as a `tagger.timeline.Timeline`.

    Raises `UserError` when the database lacks the track, when it could not be analysed, or when it
    was analysed before the database kept window scores (revision 0003): then it needs a scan with
    ``--rescan-stale``, which analyses such tracks again (a plain scan keeps their results). A
    track whose file went missing keeps its results, and its timeline is drawn as `show` lists them.
    """
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from tagger.db import models as M
    from tagger.timeline import Timeline, thresholds_from_json

    t = session.scalar(
        select(M.Track).where(M.Track.path == stored_name(session, path))
        .options(selectinload(M.Track.detections), selectinload(M.Track.segments))
    )
    if t is None:
        raise not_stored(path, session)
    w = t.window_scores
    if t.status == M.STATUS_ERROR or (t.status != M.STATUS_OK and w is None and not t.detections):
        raise UserError(f"{path}: has no results ({t.status}{': ' + t.error if t.error else ''})")
    if w is None and t.status != M.STATUS_OK:  # (a missing track keeps its results, but cannot be rescanned)
        raise UserError(f"{path}: {t.status}, and analysed before the database kept window scores, so there is no timeline to draw")
    if w is None:
        raise UserError(
            f"{path}: analysed before the database kept window scores, so there is no timeline to draw; "
            f"`tagger scan --rescan-stale` of its folder analyses it again and stores them, or draw it now with "
            f"`tagger predict FILE --plot OUT.png`"
        )
    families, starts, scores = w.unpack()
    mv = t.model_version
    segs: dict[str, list[tuple[float, float]]] = {}
    for g in sorted(t.segments, key=lambda g: g.start):
        segs.setdefault(g.family, []).append((g.start, g.end))
    return Timeline(
        path=t.path,
        model_version=mv.version if mv else None,
        families=families,
        starts=starts,
        scores=scores,
        thresholds=thresholds_from_json(families, json.loads(mv.thresholds)) if mv else {},
        segments=segs,
        present=_present(t, _family_order(session)),
        duration=t.duration,
        window_seconds=w.window_seconds,
    )


SHOWN_WHOLE = "the file is shown as one track"
"""What `with_cue_tracks`' note says becomes of a file whose cue sheet gives no tracks (``tagger show``'s)."""


def with_cue_tracks(session: Session | Reader, detail: TrackDetail, *, folders: dict | None = None,
                    without: str = SHOWN_WHOLE) -> TrackDetail:  # fmt: skip
    """``detail`` with the tracks of its file's cue sheet (`tagger.cuesheet.find_cue_sheet`),
    each given its families by the track rule (`tagger.aggregate.aggregate_range`) over the window
    scores stored for its time range: nothing is analysed again. The file itself is only read for its
    cue sheet; a file without one is returned as it is. A cue sheet that cannot be read, or that does
    not fit the stored track (a track starting after the file's end: the cue sheet of another rip),
    gives no tracks and a `cue_note` saying why; so does a track analysed before the database kept
    window scores. ``folders``: `find_cue_sheet`'s, for many files; ``without``: what the note says
    becomes of the file then (`SHOWN_WHOLE`)."""
    if detail.status != Q.STATUS_OK or detail.model_version is None:
        return detail
    detail.cue_sheet, tracks, detail.cue_note = fitting_cue_sheet(detail.path, duration=detail.duration, folders=folders,
                                                                  without=without)  # fmt: skip
    if not tracks:
        return detail
    reader = reader_of(session)
    found = reader.rows(sql("SELECT w.families, w.window_seconds, w.n_windows, w.starts, w.scores, m.thresholds, "
                            "m.aggregation FROM tracks t JOIN window_scores w ON w.track_id = t.id JOIN model_versions m "
                            "ON m.id = t.model_version_id WHERE t.path = {}", detail.path))  # fmt: skip
    if not found:
        detail.cue_note = (f"{detail.cue_sheet}: its {sum(not t.hidden for t in tracks)} tracks need the window scores, which this file was analysed "
                           "without (before the database kept them): `tagger scan --rescan-stale` of its folder stores them")  # fmt: skip
        return detail
    w = found[0]
    import numpy as np

    from tagger.aggregate import aggregation_params

    families, starts, scores = unpack_window_scores(families=w.families, n_windows=w.n_windows, starts=w.starts, scores=w.scores)
    thresholds = json.loads(w.thresholds)
    thresholds = np.array([float(thresholds.get(f, np.inf)) for f in families], dtype=np.float32)
    params = aggregation_params(json.loads(w.aggregation) if w.aggregation else None)
    detail.cue_tracks = cue_track_details(tracks, scores=scores, starts=starts, families=families, thresholds=thresholds,
                                          params=params, duration=detail.duration, window_seconds=w.window_seconds,
                                          order=_family_order(reader))  # fmt: skip
    return detail


def fitting_cue_sheet(path: str | os.PathLike, *, duration: float | None, folders: dict | None = None,
                      without: str = SHOWN_WHOLE) -> tuple[str | None, list, str | None]:  # fmt: skip
    """The cue sheet of the file at ``path`` (`tagger.cuesheet.find_cue_sheet`) as (its source, its
    tracks, a note): no source, tracks or note for a file without one. A cue sheet that cannot be
    read gives no source and no tracks, and a note saying why; one that does not fit the file (a
    track starting after its ``duration``: the cue sheet of another rip) its source, no tracks and
    a note. ``without``: what the note says becomes of the file then (`SHOWN_WHOLE`). Shared by
    ``tagger show`` (`with_cue_tracks`) and ``tagger predict``."""
    from tagger.cuesheet import CueSheetError, cue_clock, find_cue_sheet

    try:
        sheet = find_cue_sheet(path, folders=folders)
    except CueSheetError as exc:
        return None, [], f"{exc}; {without}"
    if sheet is None:
        return None, [], None
    note = "; ".join(sheet.notes) or None
    late = [t for t in sheet.tracks if duration is not None and t.start >= duration]
    if late:
        # (named as a cue sheet that cannot be read is: "cue sheet: track 04 ..." left the user to guess which .cue)
        return sheet.source, [], (f"{sheet.source}: track {late[0].number:02d} starts at {cue_clock(late[0].start)}, "
                                  f"after the end of the file "
                                  f"({cue_clock(duration)}): the cue sheet of another rip? {without[:1].upper()}{without[1:]}")  # fmt: skip
    return sheet.source, list(sheet.tracks), note


def cue_track_details(tracks, *, scores, starts, families, thresholds, params: dict, duration: float | None,
                      window_seconds: float, order: dict[str, int]) -> list[CueTrackDetail]:  # fmt: skip
    """Each cue track (`fitting_cue_sheet`'s) with its families by the track rule
    (`tagger.aggregate.aggregate_range`) over the whole file's window scores of its time range,
    ranked by ``order``: the stored ones (``tagger show``) or those just analysed (``tagger predict``).

    Parameters
    ----------
    scores : np.ndarray [shape=(n_windows, len(families))] NaN in the rows of silent windows
    starts : np.ndarray [shape=(n_windows,)] window starts in seconds
    thresholds : np.ndarray [shape=(len(families),)]
    """
    from tagger.aggregate import aggregate_range

    out = []
    for t in tracks:
        end = None if t.end is None or (duration is not None and t.end >= duration) else t.end
        r = aggregate_range(scores, starts, start=t.start, end=end, families=families, thresholds=thresholds,
                            duration=duration, window_seconds=window_seconds, **params)  # fmt: skip
        ranked = sorted(r.results, key=lambda f: order.get(f.family, len(order)))
        shown_end = duration if end is None else end
        out.append(CueTrackDetail(
            number=t.number, title=t.title, performer=t.performer, start=round(t.start, 3),
            end=None if shown_end is None else round(shown_end, 3),
            windows=r.windows, silent_windows=r.silent_windows, instruments=[f.family for f in ranked if f.present],
            families=[FamilyDetail(f.family, f.present, f.score, f.coverage, [list(g) for g in f.segments]) for f in ranked],
            hidden=t.hidden,
        ))  # fmt: skip
    return out


NOT_LISTED = "none of its tracks is listed"
"""What `cue_tracks_matching`'s note says becomes of a file whose cue sheet gives no tracks."""


def cue_tracks_matching(session: Session | Reader, where: TrackFilter) -> tuple[list[CueTrackMatch], list[tuple[str, str]]]:
    """The tracks of the album images' cue sheets whose own families match ``where`` (``tagger query
    --cue-tracks``), by path and track number, and the notes of the cue sheets that gave no tracks
    (``(path, cue_note)``). The files ``where``'s path conditions select are looked at, whatever their
    whole-file families (a flute in one track of an album may be too little of it to count for the
    album); their folders are listed for ``.cue`` files (once each), and a FLAC's own first blocks are
    read for an embedded cue sheet (`with_cue_tracks`). Nothing is analysed again."""
    from tagger.cuesheet import may_embed_cue_sheet, may_have_cue_file

    reader = reader_of(session)
    place, families = where.place(), where.held()
    found: dict[str, str | None] = {}
    for part in place.by_paths():  # (a few hundred paths a statement: `tagger.db.sql.PER_STATEMENT`)
        conds = joined(" AND ", [sql("tracks.status = {}", Q.STATUS_OK), *part.clauses(reader.dialect)])
        found.update(reader.tuples(sql(f"SELECT path, format FROM tracks WHERE {{}} ORDER BY {path_key(reader.dialect)}",
                                       conds)))  # fmt: skip
    rows = sorted(found.items())  # (each once, by path: a file and its folder given in two parts)
    in_python = place.python_only(reader.dialect)
    folders: dict = {}  # (each folder's .cue files listed and read once, not once for each of its files)
    matches: list[CueTrackMatch] = []
    notes: list[tuple[str, str]] = []
    for path, fmt in rows:
        if not all(p.match(Candidate(path, ())) for p in in_python):
            continue
        if (fmt or "").upper() != "FLAC" and not may_embed_cue_sheet(path) and not may_have_cue_file(path, folders=folders):
            continue
        # (its note says what the query does: it said "The file is shown as one track", show's wording)
        detail = with_cue_tracks(reader, track_detail(reader, path=path), folders=folders, without=NOT_LISTED)
        if detail.cue_note:
            notes.append((path, detail.cue_note))
        for t in detail.cue_tracks:
            if families.match(Candidate(path, t.instruments, {f.family: f.score for f in t.families})):
                matches.append(CueTrackMatch(path, t))
    return matches, notes
