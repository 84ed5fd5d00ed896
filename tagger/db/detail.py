"""One track with everything stored about it (``tagger show``: `track_detail`, and its window
scores, ``show --plot``: `track_timeline`), found under the name given or another Unicode form of it
(`stored_name`), and the error for a name the library holds no track of (`not_stored`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from tagger.db import sql as Q
from tagger.db.filter import storable_name
from tagger.db.reads import _datetime, _family_order, latest_model_version_id
from tagger.db.sql import Reader, reader_of, sql
from tagger.errors import UserError

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

    def to_dict(self) -> dict:
        return asdict(self)


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


def not_stored(path: str) -> UserError:
    """The error for a `path` the library holds no track of: a folder is not a track (`tagger show
    ~/Music/album` said to scan the folder, scanned already), a name that is nothing is no file."""
    if os.path.isdir(path):
        return UserError(f"{path}: is a folder; give one of its files (`tagger query --path-glob "
                         f"'{path}/*'` lists its tracks)")  # fmt: skip
    if not os.path.lexists(path):
        return UserError(f"{path}: not in the library database, and no such file")
    from tagger.crawl import is_audio_file

    if os.path.isfile(path) and not is_audio_file(path):  # (`show cover.jpg` said to scan its folder, scanned already)
        return UserError(f"{path}: not in the library database: not an audio file tagger reads (by its name and "
                         f"first bytes), so no scan stores it")  # fmt: skip
    return UserError(f"{path}: not in the library database (scan its folder with `tagger scan`)")


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
        raise not_stored(path)
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
    was analysed before the database kept window scores (revision 0003): then it needs a rescan. A
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
        raise not_stored(path)
    w = t.window_scores
    if t.status == M.STATUS_ERROR or (t.status != M.STATUS_OK and w is None and not t.detections):
        raise UserError(f"{path}: has no results ({t.status}{': ' + t.error if t.error else ''})")
    if w is None and t.status != M.STATUS_OK:  # (a missing track keeps its results, but cannot be rescanned)
        raise UserError(f"{path}: {t.status}, and analysed before the database kept window scores, so there is no timeline to draw")
    if w is None:
        raise UserError(
            f"{path}: analysed before the database kept window scores, so there is no timeline to draw; it needs "
            f"a rescan (the next analysis of the file stores them), or draw it now with `tagger predict FILE --plot OUT.png`"
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
