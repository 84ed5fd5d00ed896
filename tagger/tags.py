"""Read, write and remove tagger's own fields in audio files, safely (mutagen underneath).

What is written
---------------
Three fields, the same names everywhere (files, database, README):

- ``INSTRUMENTS``: the families present, canonical names in canonical order, one value each.
- ``INSTRUMENTS_MODEL``: the version of the model that produced them (provenance).
- ``INSTRUMENTS_SCORES`` (optional): one ``family=0.873`` value per family.

Per container:

=====================  =====================================================================
MP3, WAV, AIFF         ID3v2 ``TXXX`` frames with those descriptions (v2.4; v2.3 on request,
                       where multiple values are joined with ``/``; a file already carrying an
                       ID3v2.3 tag is kept at v2.3 so that no other frame is converted)
FLAC, Ogg Vorbis, Opus Vorbis comments, one entry per value
MP4/M4A                freeform atoms ``----:com.apple.iTunes:INSTRUMENTS`` (UTF-8), one data
                       atom per value
WMA                    ASF attributes with those names, one per value
=====================  =====================================================================

Nothing is ever written to human credit fields (ID3 TMCL/IPLS, Vorbis PERFORMER). A file that
was analysed and holds no instrument carries ``INSTRUMENTS_MODEL`` but no ``INSTRUMENTS``.

Safety
------
A write never touches the file in place: the file is copied to a hidden temporary file in the
same folder (same mode), the tags are changed on the copy, the copy is re-read and verified (our
fields hold the intended values, every other tag is unchanged, the audio payload bytes hash the
same), flushed to disk, then moved over the original with `os.replace` (atomic on POSIX). A crash
at any moment leaves the old file or the new one; on any error the temporary file is removed and
`TagWriteError` is raised. Writing values a file already holds is a no-op (the file is not
rewritten). The file mode and extended attributes (POSIX ACLs included) are kept; the
modification time is updated unless ``keep_mtime``.

Other programs: a Linux read lease on the original is held from before the copy until after the
rename (`_ReadLease`): a file open for writing elsewhere is refused, and one opened for writing
meanwhile makes the write give up (the old file is put back if that happened at the rename). A
file modified less than ``settle_seconds`` ago is refused too (the commands' default is
`DEFAULT_SETTLE_SECONDS`). The copy is always read as the original's mutagen type.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import stat
import struct
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tagger.errors import TagWriteError, UserError
from tagger.instruments import FAMILIES, canonical_order, check_family

INSTRUMENTS = "INSTRUMENTS"
"""Multi-valued field: the families present, canonical names in canonical order."""
INSTRUMENTS_MODEL = "INSTRUMENTS_MODEL"
"""Single-valued field: the model version that produced INSTRUMENTS."""
INSTRUMENTS_SCORES = "INSTRUMENTS_SCORES"
"""Multi-valued field (optional): ``family=score`` per family, score with 3 decimals."""
FIELDS: tuple[str, ...] = (INSTRUMENTS, INSTRUMENTS_MODEL, INSTRUMENTS_SCORES)
"""Every field tagger writes, and the only ones `remove_instruments` removes."""

MP4_FREEFORM_PREFIX = "----:com.apple.iTunes:"
"""MP4 freeform atom prefix (mean ``com.apple.iTunes``), as iTunes, beets and ffmpeg use it."""

TEMP_SUFFIX = ".tagger-tmp"
"""Suffix of the hidden temporary files of an atomic write (never an audio extension)."""
_TEMP_NAME = re.compile(r"\..*\.[a-z0-9_]{8}" + re.escape(TEMP_SUFFIX), re.DOTALL)
"""The exact names `tempfile.mkstemp` gives our temporary files: ``.NAME.XXXXXXXX.tagger-tmp``."""

SCORE_DECIMALS = 3

_KINDS = {
    "MP3": "id3",
    "WAVE": "id3",
    "AIFF": "id3",
    "FLAC": "vorbis",
    "OggVorbis": "vorbis",
    "OggOpus": "vorbis",
    "MP4": "mp4",
    "ASF": "asf",
}
"""mutagen file type -> how our fields are stored."""

SUPPORTED_FORMATS = "MP3, WAV, AIFF, FLAC, Ogg Vorbis, Opus, MP4/M4A, WMA"
_MTIME_TOLERANCE = 1e-3
DEFAULT_SETTLE_SECONDS = 10.0
"""The commands' default settle time: a file modified less than this many seconds ago may still be
being written, and is left for a later run (``--settle-seconds``, ``$TAGGER_SETTLE_SECONDS``)."""
_CHUNK = 1 << 20


# -- results ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TagState:
    """tagger's fields as a file holds them."""

    instruments: list[str] = field(default_factory=list)
    """Family names as stored (canonical order when tagger wrote them); empty when absent."""
    model_version: str | None = None
    scores: dict[str, float] | None = None
    """Per-family scores, or None when the file has no INSTRUMENTS_SCORES."""

    @property
    def tagged(self) -> bool:
        """True when any of tagger's fields is present."""
        return bool(self.instruments) or self.model_version is not None or self.scores is not None


@dataclass(frozen=True)
class TagChange:
    """What a write or removal did (or, with ``dry_run``, would do) to one file."""

    path: str
    before: TagState
    after: TagState
    changed: bool
    """True when the file's fields differ (or must be rewritten) from the requested state."""
    written: bool
    """True when the file was actually replaced; False for no-ops and dry runs."""
    dry_run: bool = False
    size: int | None = None
    """The file's size after the operation (unchanged file: its current size)."""
    mtime: float | None = None
    """The file's mtime after the operation, for the database's changed-since check."""


# -- mediafile / beets --------------------------------------------------------------------------


def register_mediafile_fields() -> None:
    """Register ``instruments``, ``instruments_model`` and ``instruments_scores`` on beets'
    `mediafile.MediaFile`, reading and writing exactly the fields tagger writes.

    Idempotent. ``mediafile`` is imported here (it is not a dependency of tagger itself).
    """
    try:
        import mediafile as mf
    except ImportError:
        raise UserError("registering the fields needs beets' mediafile (pip install mediafile)") from None

    def single(name: str):
        return mf.MediaField(*mediafile_styles(name, multi=False))

    def multi(name: str):
        return mf.ListMediaField(*mediafile_styles(name, multi=True))

    for attr, descriptor in (
        ("instruments", lambda: multi(INSTRUMENTS)),
        ("instruments_model", lambda: single(INSTRUMENTS_MODEL)),
        ("instruments_scores", lambda: multi(INSTRUMENTS_SCORES)),
    ):
        if attr not in mf.MediaFile.__dict__:
            mf.MediaFile.add_field(attr, descriptor())


def mediafile_styles(name: str, *, multi: bool) -> list:
    """The `mediafile` storage styles of our field `name` in every container (for a ``MediaField``,
    or with ``multi`` a ``ListMediaField``): exactly where tagger writes it."""
    import mediafile as mf

    if multi:
        return [mf.MP3ListDescStorageStyle(desc=name, split_v23=True), mf.MP4ListStorageStyle(MP4_FREEFORM_PREFIX + name),
                mf.ListStorageStyle(name), mf.ASFStorageStyle(name)]  # fmt: skip
    return [mf.MP3DescStorageStyle(desc=name), mf.MP4StorageStyle(MP4_FREEFORM_PREFIX + name), mf.StorageStyle(name),
            mf.ASFStorageStyle(name)]  # fmt: skip


# -- public API ---------------------------------------------------------------------------------


def read_instruments(path: str | os.PathLike) -> TagState:
    """tagger's fields in ``path`` (an empty `TagState` when it has none).

    Raises `TagWriteError` when the file cannot be read or its format is not supported.
    """
    audio, kind = _open(path)
    return _state(_get_raw(audio, kind))


def write_instruments(
    path: str | os.PathLike,
    *,
    instruments: Iterable[str],
    model_version: str,
    scores: Mapping[str, float] | None = None,
    id3v23: bool = False,
    keep_mtime: bool = False,
    dry_run: bool = False,
    expected: tuple[int, float] | None = None,
    settle_seconds: float = 0.0,
) -> TagChange:
    """Write INSTRUMENTS and INSTRUMENTS_MODEL (and INSTRUMENTS_SCORES when ``scores`` is given;
    stale scores are removed otherwise) atomically.

    ``expected=(size, mtime)``: refuse when the file's current size differs or its mtime differs
    by more than a millisecond (the file changed since it was analysed). ``id3v23``: write ID3v2.3
    instead of ID3v2.4 (ID3 carriers). A file already holding these values is left untouched (``written=False``).
    ``settle_seconds``: refuse a file modified less than this many seconds ago (it may still be
    being written; the commands pass `DEFAULT_SETTLE_SECONDS`). A file open for writing by another
    program is refused whatever the settle time (where Linux leases are available; see `_ReadLease`).
    Raises `TagWriteError` (read-only, changed, recently changed or in-use file, unsupported format,
    failed write or verification) and `UserError` (unknown family, bad score, empty model version).
    """
    raw = _desired_raw(instruments=instruments, model_version=model_version, scores=scores)
    return _rewrite(
        path, target=lambda _before: raw, id3v23=id3v23, keep_mtime=keep_mtime, dry_run=dry_run, expected=expected,
        settle_seconds=settle_seconds,
    )  # fmt: skip


def remove_instruments(
    path: str | os.PathLike,
    *,
    keep_mtime: bool = False,
    dry_run: bool = False,
    expected: tuple[int, float] | None = None,
    settle_seconds: float = 0.0,
) -> TagChange:
    """Remove exactly tagger's fields (`FIELDS`) and nothing else, atomically.

    An ID3 tag left without any frame is removed altogether (tagger created it). A file without
    tagger's fields is left untouched (``written=False``). ``settle_seconds``: as for `write_instruments`.
    """
    return _rewrite(
        path, target=lambda _before: {}, id3v23=None, keep_mtime=keep_mtime, dry_run=dry_run, expected=expected,
        settle_seconds=settle_seconds,
    )  # fmt: skip


def is_temp_name(name: str) -> bool:
    """True for the name of one of our temporary files (``.NAME.XXXXXXXX.tagger-tmp``)."""
    return _TEMP_NAME.fullmatch(name) is not None


def remove_stale_temp_files(paths: Iterable[str | os.PathLike], *, min_age: float = 2.0) -> list[str]:
    """Delete leftover temporary files of tag writes that were killed (``kill -9``, power loss).

    Only files whose name matches our exact pattern (`is_temp_name`), regular files (never a
    symlink), at least `min_age` seconds old and not in use are deleted: a write in progress holds
    an exclusive ``flock`` on its temporary file from the moment it creates it, and the kernel
    drops that lock when the writer dies. Returns the deleted paths; never raises for a file that
    cannot be checked or deleted (it is left alone).
    """
    import fcntl
    import time

    removed = []
    for path in map(os.fspath, paths):
        if not is_temp_name(os.path.basename(path)):
            continue
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or time.time() - st.st_mtime < min_age:
                continue
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # fails while a writer holds it
            now = os.lstat(path)
            held = os.fstat(fd)
            if (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
                os.unlink(path)
                removed.append(path)
        except OSError:
            pass  # in use (EWOULDBLOCK), already gone, or not ours to delete: left alone
        finally:
            os.close(fd)
    return removed


def find_audio_files(
    paths: Iterable[str | os.PathLike], *, follow_external_symlinks: bool = False
) -> Iterator[Path | TagWriteError]:
    """Files given directly, and the audio files under folders as a scan finds them
    (`tagger.library.crawl.crawl`: hidden files and leftover temporary files are left out, and a
    symbolic link pointing outside the given folders is not followed unless
    ``follow_external_symlinks``). A path that does not exist and each link not followed are
    yielded as a `TagWriteError` (the reason why they are skipped).
    """
    from tagger.library.crawl import CrawlReport, crawl

    roots = []
    for p in map(Path, paths):
        if os.path.lexists(p):
            roots.append(p)
        else:
            yield TagWriteError(p, "no such file or folder")
    report = CrawlReport()
    yield from crawl(roots, follow_external_symlinks=follow_external_symlinks, report=report)
    for link in report.external_links:
        yield TagWriteError(link, _external_reason(os.path.realpath(link)))
    for folder, reason in report.unreadable:
        yield TagWriteError(folder, f"cannot list the folder: {reason}; its files were left as they are")


def _external_reason(target: str) -> str:
    return (
        f"a symbolic link pointing outside the given folders (to {target}); not followed "
        "(--follow-external-symlinks to include it)"
    )


@dataclass(frozen=True)
class Prediction:
    """What to write into one file: the detected families and their provenance."""

    path: str
    instruments: list[str]
    model_version: str
    scores: dict[str, float] | None = None
    expected: tuple[int, float] | None = None
    """(size, mtime) of the file when it was analysed; None to skip the changed-since check."""


def read_predictions_jsonl(path: str | os.PathLike, *, model_version: str | None = None) -> list[Prediction]:
    """Predictions from `tagger predict --json` output: one JSON object per line with ``path``,
    ``instruments`` and ``scores`` (``model_version``, ``size`` and ``mtime`` when present).

    ``model_version`` is used for rows that do not name theirs. Raises `UserError` on bad input.
    """
    import json

    rows: list[Prediction] = []
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise UserError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{os.fspath(path)} line {number}"
        try:
            row = json.loads(line)
            file, instruments = row["path"], row["instruments"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise UserError(f"{where}: expected a JSON object with 'path' and 'instruments' ({exc})") from None
        version = row.get("model_version") or model_version
        if not version:
            raise UserError(f"{where}: no model version (pass --model-version)")
        expected = (int(row["size"]), float(row["mtime"])) if "size" in row and "mtime" in row else None
        rows.append(Prediction(str(file), list(instruments), str(version), row.get("scores"), expected))
    return rows


def select_predictions(
    predictions: Iterable[Prediction],
    *,
    paths: Iterable[str | os.PathLike] = (),
    has: Iterable[str] = (),
    lacks: Iterable[str] = (),
) -> list[Prediction]:
    """Predictions whose file is (under) one of ``paths`` (all when empty), holding every family of
    ``has`` and none of ``lacks``."""
    roots = [os.path.abspath(p) for p in paths]
    has_set = {check_family(f) for f in has}
    lacks_set = {check_family(f) for f in lacks}
    chosen = []
    for pred in predictions:
        file = os.path.abspath(pred.path)
        if roots and not any(file == r or file.startswith(r.rstrip(os.sep) + os.sep) for r in roots):
            continue
        present = {f.lower() for f in pred.instruments}
        if has_set <= present and not lacks_set & present:
            chosen.append(pred)
    return chosen


def write_predictions(
    predictions: Iterable[Prediction],
    *,
    scores: bool = False,
    id3v23: bool = False,
    keep_mtime: bool = False,
    dry_run: bool = False,
    settle_seconds: float = 0.0,
    roots: Iterable[str | os.PathLike] | None = None,
    follow_external_symlinks: bool = False,
) -> Iterator[TagChange | TagWriteError]:
    """`write_instruments` for each prediction; a file that cannot be tagged yields its
    `TagWriteError` (the others go on). ``scores``: also write INSTRUMENTS_SCORES.

    ``roots``: the files and folders the writes must stay in (as a scan's folders): a file reached
    through a symbolic link pointing outside them is skipped unless ``follow_external_symlinks``.
    None: the folder holding every listed file.
    """
    from tagger.library.crawl import external_link_target

    predictions = list(predictions)
    if roots is None:
        folders = [os.path.dirname(os.path.abspath(p.path)) for p in predictions]
        roots = [os.path.commonpath(folders)] if folders else []
    roots = list(roots)
    for pred in predictions:
        try:
            target = None if follow_external_symlinks else external_link_target(pred.path, roots)
            if target is not None:
                raise TagWriteError(pred.path, _external_reason(target))
            yield write_instruments(
                pred.path, instruments=pred.instruments, model_version=pred.model_version,
                scores=pred.scores if scores else None, id3v23=id3v23, keep_mtime=keep_mtime,
                dry_run=dry_run, expected=pred.expected, settle_seconds=settle_seconds,
            )  # fmt: skip
        except TagWriteError as exc:
            yield exc


def remove_all(
    paths: Iterable[str | os.PathLike],
    *,
    keep_mtime: bool = False,
    dry_run: bool = False,
    settle_seconds: float = 0.0,
    follow_external_symlinks: bool = False,
) -> Iterator[TagChange | TagWriteError]:
    """`remove_instruments` on files and the audio files of folders (found as a scan finds them,
    `find_audio_files`); a file that cannot be changed, or is not followed, yields its
    `TagWriteError` (the others go on)."""
    for file in find_audio_files(paths, follow_external_symlinks=follow_external_symlinks):
        if isinstance(file, TagWriteError):
            yield file
            continue
        try:
            yield remove_instruments(file, keep_mtime=keep_mtime, dry_run=dry_run, settle_seconds=settle_seconds)
        except TagWriteError as exc:
            yield exc


def predictions_from_database(
    session, *, paths: Iterable[str | os.PathLike] = (), has: Iterable[str] = (), lacks: Iterable[str] = ()
) -> list[Prediction]:
    """The analysed tracks of the library database (`tagger.db.queries.find_tracks`), under
    ``paths`` when given, as predictions carrying the size and mtime recorded at analysis (so a
    file changed since is refused). Tracks without a model version are left out."""
    from sqlalchemy import select

    from tagger.db import models as M
    from tagger.db import queries

    tracks = queries.find_tracks(session, has=list(has), lacks=list(lacks))
    facts = {
        path: (size, mtime)
        for path, size, mtime in session.execute(
            select(M.Track.path, M.Track.size, M.Track.mtime).where(M.Track.status == M.STATUS_OK)
        )
    }
    predictions = [
        Prediction(t.path, list(t.instruments), t.model_version, dict(t.scores), facts.get(t.path))
        for t in tracks
        if t.model_version
    ]
    return select_predictions(predictions, paths=paths)


def record_rewrite(session, change: TagChange) -> None:
    """After a write, store the file's new size, mtime and fingerprint in the library database, so
    that the next scan sees the file unchanged and the next write is not refused."""
    if not change.written:
        return
    from sqlalchemy import select

    from tagger.db import models as M
    from tagger.library.fingerprint import fingerprint

    track = session.scalar(select(M.Track).where(M.Track.path == change.path))
    if track is not None:
        track.size, track.mtime, track.fingerprint = change.size, change.mtime, fingerprint(change.path)


def tag_from_database(
    database,
    *,
    paths: Iterable[str | os.PathLike] = (),
    has: Iterable[str] = (),
    lacks: Iterable[str] = (),
    scores: bool = False,
    id3v23: bool = False,
    keep_mtime: bool = False,
    dry_run: bool = False,
    settle_seconds: float = 0.0,
    follow_external_symlinks: bool = False,
) -> Iterator[TagChange | TagWriteError]:
    """Write the stored results of the library database (a `tagger.db.session.Database`) into the
    files, without re-analysis, recording each rewritten file's new size/mtime/fingerprint.

    Writes stay inside ``paths`` (or, when none are given, the folders the database's scans were
    given): a file reached through a symbolic link pointing elsewhere is skipped unless
    ``follow_external_symlinks``."""
    import json

    from sqlalchemy import select

    from tagger.db import models as M

    paths = list(paths)
    with database.session() as session:
        predictions = predictions_from_database(session, paths=paths, has=has, lacks=lacks)
        roots = list(paths) or sorted({r for (text,) in session.execute(select(M.Scan.roots)) for r in json.loads(text)})
    results = write_predictions(
        predictions, scores=scores, id3v23=id3v23, keep_mtime=keep_mtime, dry_run=dry_run,
        settle_seconds=settle_seconds, roots=roots, follow_external_symlinks=follow_external_symlinks,
    )  # fmt: skip
    for result in results:
        if isinstance(result, TagChange) and result.written:
            with database.session() as session:
                record_rewrite(session, result)
        yield result


# -- raw field access per container -------------------------------------------------------------

Raw = dict[str, list[str]]
"""Our fields present in a file: canonical field name -> values as strings."""


def _desired_raw(*, instruments: Iterable[str], model_version: str, scores: Mapping[str, float] | None) -> Raw:
    model_version = str(model_version).strip()
    if not model_version:
        raise UserError("a model version is required to write INSTRUMENTS_MODEL")
    raw: Raw = {}
    names = canonical_order(list(instruments))
    if names:
        raw[INSTRUMENTS] = names
    raw[INSTRUMENTS_MODEL] = [model_version]
    if scores is not None:
        checked: dict[str, float] = {}
        for name, value in scores.items():
            value = float(value)
            if not math.isfinite(value) or not 0.0 <= value <= 1.0:
                raise UserError(f"a score is a number between 0 and 1, got {name}={value}")
            checked[check_family(name)] = value
        if checked:
            raw[INSTRUMENTS_SCORES] = [f"{f}={checked[f]:.{SCORE_DECIMALS}f}" for f in FAMILIES if f in checked]
    return raw


def _state(raw: Raw) -> TagState:
    def split(values: list[str]) -> list[str]:
        return [v.strip() for v in values if v.strip()]

    scores = None
    if INSTRUMENTS_SCORES in raw:
        scores = {}
        for item in split(raw[INSTRUMENTS_SCORES]):
            name, _, value = item.partition("=")
            try:
                scores[name.strip().lower()] = float(value)
            except ValueError:
                continue
    model = raw.get(INSTRUMENTS_MODEL)
    return TagState(
        instruments=[v.lower() for v in split(raw.get(INSTRUMENTS, []))],
        model_version=model[0] if model else None,
        scores=scores,
    )


def _ours(name: str) -> str | None:
    """The canonical field name when ``name`` (any case) is one of ours."""
    upper = name.upper()
    return upper if upper in FIELDS else None


def _get_raw(audio, kind: str) -> Raw:
    tags = audio.tags
    raw: Raw = {}
    if tags is None:
        return raw
    if kind == "id3":
        for frame in tags.getall("TXXX"):
            name = _ours(frame.desc)
            if name == INSTRUMENTS_MODEL:
                raw.setdefault(name, []).extend(str(t) for t in frame.text)
            elif name:  # ID3v2.3 joins multiple values with "/" (never part of a family or score)
                raw.setdefault(name, []).extend(v for t in frame.text for v in str(t).split("/"))
    elif kind == "vorbis":
        for key, value in tags:
            name = _ours(key)
            if name:
                raw.setdefault(name, []).append(value)
    elif kind == "mp4":
        for key, values in tags.items():
            name = _ours(key[len(MP4_FREEFORM_PREFIX) :]) if key.startswith(MP4_FREEFORM_PREFIX) else None
            if name:
                raw.setdefault(name, []).extend(bytes(v).decode("utf-8", "replace") for v in values)
    elif kind == "asf":
        for key, values in tags.as_dict().items():
            name = _ours(key)
            if name:
                raw.setdefault(name, []).extend(str(v.value) for v in values)
    return {k: v for k, v in raw.items() if v}


def _set_raw(audio, kind: str, raw: Raw) -> None:
    """Replace our fields in the (loaded) file with ``raw``; other tags are not touched."""
    if audio.tags is None:
        if not raw:
            return
        audio.add_tags()
    tags = audio.tags
    if kind == "id3":
        from mutagen.id3 import TXXX, Encoding

        for frame in list(tags.getall("TXXX")):
            if _ours(frame.desc):
                del tags[frame.HashKey]
        for name, values in raw.items():
            tags.add(TXXX(encoding=Encoding.UTF8, desc=name, text=list(values)))
    elif kind == "vorbis":
        for key in {k for k, _ in tags if _ours(k)}:
            del tags[key]
        for name, values in raw.items():
            tags[name] = list(values)
    elif kind == "mp4":
        from mutagen.mp4 import AtomDataType, MP4FreeForm

        for key in [k for k in tags.keys() if k.startswith(MP4_FREEFORM_PREFIX) and _ours(k[len(MP4_FREEFORM_PREFIX) :])]:
            del tags[key]
        for name, values in raw.items():
            tags[MP4_FREEFORM_PREFIX + name] = [MP4FreeForm(v.encode("utf-8"), dataformat=AtomDataType.UTF8) for v in values]
    elif kind == "asf":
        from mutagen.asf import ASFUnicodeAttribute

        for key in [k for k in tags.as_dict() if _ours(k)]:
            del tags[key]
        for name, values in raw.items():
            tags[name] = [ASFUnicodeAttribute(v) for v in values]


# -- the other tags (what must not change) ------------------------------------------------------


def _feed(h, value) -> None:
    """Add a mutagen tag value to the hash ``h``: its type and content, bytes hashed in place (a
    50 MB cover is never copied nor turned into a string), lists in order."""
    from mutagen.id3 import Frame

    h.update(type(value).__name__.encode() + b":")
    if isinstance(value, (bytes, bytearray, memoryview)):
        h.update(b"%d:" % len(value))
        h.update(value)
        extra = vars(value) if hasattr(value, "__dict__") else {}  # MP4Cover.imageformat, MP4FreeForm.dataformat
        for key in sorted(extra):
            h.update(key.encode())
            _feed(h, extra[key])
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"%d:" % len(data))
        h.update(data)
    elif isinstance(value, (list, tuple)):
        h.update(b"%d:" % len(value))
        for item in value:
            _feed(h, item)
    elif isinstance(value, Frame):  # every attribute of the frame's specification
        for spec in (*value._framespec, *value._optionalspec):
            h.update(spec.name.encode())
            _feed(h, getattr(value, spec.name, None))
    elif hasattr(value, "value") and hasattr(value, "TYPE"):  # an ASF attribute
        _feed(h, value.value)
        _feed(h, repr((getattr(value, "language", None), getattr(value, "stream", None))))
    else:
        data = repr(value).encode("utf-8", "surrogatepass")
        h.update(b"%d:" % len(data))
        h.update(data)


def _other_tags(audio, kind: str) -> str:
    """A digest of every tag of the file except ours (cover art included): equal digests, equal tags.

    Streamed into a hash: no copy of the tag data is held (covers can be tens of megabytes).
    """
    h = hashlib.sha256()
    tags = audio.tags
    if tags is None:
        items: Iterable = []
    elif kind == "id3":
        items = sorted(
            ((key, frame) for key, frame in tags.items() if not (frame.FrameID == "TXXX" and _ours(frame.desc))),
            key=lambda item: item[0],
        )
        if tags.unknown_frames:
            items.append(("<unknown frames>", list(tags.unknown_frames)))
    elif kind == "vorbis":
        items = [(k, v) for k, v in tags if not _ours(k)]
    elif kind == "mp4":
        items = sorted(
            ((k, v) for k, v in tags.items() if not (k.startswith(MP4_FREEFORM_PREFIX) and _ours(k[len(MP4_FREEFORM_PREFIX) :]))),
            key=lambda item: item[0],
        )
    else:  # asf: mutagen may move attributes between header objects; per-name order is kept
        items = sorted(((k, v) for k, v in tags if not _ours(k)), key=lambda item: item[0])
    for key, value in items:
        _feed(h, key)
        _feed(h, value)
    pictures = getattr(audio, "pictures", None)  # FLAC PICTURE blocks
    if pictures is not None:
        _feed(h, "<pictures>")
        for pic in pictures:
            _feed(h, [pic.type, pic.mime, pic.desc, pic.width, pic.height, pic.depth, pic.colors, pic.data])
    return h.hexdigest()


# -- the audio payload (what must not change either) --------------------------------------------


def _hash_range(f, start: int, end: int, h) -> None:
    f.seek(start)
    left = end - start
    while left > 0:
        block = f.read(min(_CHUNK, left))
        if not block:
            break
        h.update(block)
        left -= len(block)


def _id3v2_end(f, start: int = 0) -> int:
    """Offset after the ID3v2 tag(s) at ``start`` (``start`` when there is none)."""
    pos = start
    while True:
        f.seek(pos)
        head = f.read(10)
        if len(head) < 10 or head[:3] != b"ID3":
            return pos
        size = 0
        for b in head[6:10]:
            size = (size << 7) | (b & 0x7F)
        pos += 10 + size + (10 if head[5] & 0x10 else 0)


def _payload_digest(path: str, mutagen_type: str) -> str | None:
    """Hash of the bytes that carry the audio (tags and container headers excluded).

    MP3: everything between the ID3v2 tag and an ID3v1 tag; FLAC: the frames after the metadata
    blocks; WAV/AIFF: the data/SSND chunk; Ogg: the codec header packets but the comment one, the
    later pages' bodies and granule positions (mutagen renumbers pages) and whether every page's
    CRC is right; MP4: the mdat atoms; WMA: everything after the
    header object. None when the format has no cheap check.
    """
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if mutagen_type == "MP3":
            start = _id3v2_end(f)
            end = size
            if size - start >= 128:
                f.seek(size - 128)
                if f.read(3) == b"TAG":
                    end = size - 128
            _hash_range(f, start, end, h)
        elif mutagen_type == "FLAC":
            pos = _id3v2_end(f)
            f.seek(pos)
            if f.read(4) != b"fLaC":
                return None
            pos += 4
            while True:
                f.seek(pos)
                head = f.read(4)
                if len(head) < 4:
                    return None
                pos += 4 + int.from_bytes(head[1:4], "big")
                if head[0] & 0x80:
                    break
            _hash_range(f, pos, size, h)
        elif mutagen_type in ("WAVE", "AIFF"):
            little = mutagen_type == "WAVE"
            want = b"data" if little else b"SSND"
            pos, found = 12, False
            while pos + 8 <= size:
                f.seek(pos)
                cid, clen = struct.unpack("<4sI" if little else ">4sI", f.read(8))
                if cid == want:
                    _hash_range(f, pos + 8, min(pos + 8 + clen, size), h)
                    found = True
                pos += 8 + clen + (clen & 1)
            if not found:
                return None
        elif mutagen_type in ("OggVorbis", "OggOpus"):
            from mutagen.ogg import OggPage

            headers = 3 if mutagen_type == "OggVorbis" else 2  # packet 1 is the comment header
            done, serial, packet = 0, None, b""
            while True:
                start = f.tell()
                try:
                    page = OggPage(f)
                except EOFError:
                    break
                end = f.tell()
                f.seek(start)
                if not _ogg_crc_ok(f.read(end - start)):
                    h.update(b"bad page CRC")  # (mutagen may split the header pages differently)
                if serial is None:
                    serial = page.serial
                if page.serial != serial:
                    continue
                if done < headers:
                    for i, part in enumerate(page.packets):
                        packet = packet + part if i == 0 and page.continued else part
                        if i < len(page.packets) - 1 or page.complete:
                            if done != 1:
                                h.update(packet)
                            done, packet = done + 1, b""
                    continue
                h.update(struct.pack("<qBB", page.position, page.continued, page.last))
                for part in page.packets:
                    h.update(struct.pack("<I", len(part)))
                    h.update(part)
        elif mutagen_type == "MP4":
            from mutagen.mp4 import Atoms

            found = False
            for atom in Atoms(f).atoms:
                if atom.name == b"mdat":
                    _hash_range(f, atom.offset + atom.length - atom.datalength, atom.offset + atom.length, h)
                    found = True
            if not found:
                return None
        elif mutagen_type == "ASF":
            f.seek(16)
            (header_size,) = struct.unpack("<Q", f.read(8))
            _hash_range(f, header_size, size, h)
        else:
            return None
    return h.hexdigest()


_BITSWAP = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc_ok(page: bytes) -> bool:
    """Whether an Ogg page's stored CRC matches its bytes (Ogg's CRC is zlib's on bit-swapped bytes)."""
    if len(page) < 27:
        return False
    data = page[:22] + b"\0\0\0\0" + page[26:]
    crc = (~zlib.crc32(data.translate(_BITSWAP), -1)) & 0xFFFFFFFF
    return struct.pack(">I", crc).translate(_BITSWAP) == page[22:26]


# -- the atomic rewrite -------------------------------------------------------------------------


def _open(path: str | os.PathLike, *, real: str | None = None, cls: type | None = None):
    """Load ``path`` with mutagen -> (file object, storage kind); our errors only.

    ``cls``: the mutagen class to use (the original's, for its temporary copy: mutagen guesses a
    file's type partly from its name, and a ``.tagger-tmp`` name says nothing, so an MP3 without an
    ID3 tag, e.g. an 8 kHz MPEG 2.5 one, would not be recognised from the copy). Without ``cls`` the
    type comes from the name and the first bytes, with our own MPEG frame check as a last resort.
    """
    import mutagen

    name = real or os.fspath(path)
    try:
        if cls is None:
            audio = mutagen.File(name)
            if audio is None and _looks_like_mpeg(name):
                from mutagen.mp3 import MP3

                try:
                    audio = MP3(name, load_v1=False)
                except mutagen.MutagenError:
                    audio = None
            elif audio is not None and type(audio).__name__ == "MP3":
                cls, audio = type(audio), None  # (let the first load go before the second)
        if cls is not None:
            # Never fold an ID3v1 tag into the ID3v2 tag we write (it would add frames).
            audio = cls(name, load_v1=False) if cls.__name__ == "MP3" else cls(name)
    except FileNotFoundError:
        raise TagWriteError(path, "no such file") from None
    except (mutagen.MutagenError, OSError, ValueError, struct.error, EOFError) as exc:
        raise TagWriteError(path, f"cannot read tags: {exc}") from exc
    if audio is None or type(audio).__name__ not in _KINDS:
        what = "unknown" if audio is None else type(audio).__name__
        raise TagWriteError(path, f"unsupported format ({what}); tagger writes tags into {SUPPORTED_FORMATS}")
    return audio, _KINDS[type(audio).__name__]


def _looks_like_mpeg(name: str) -> bool:
    """An ID3v2 tag or an MPEG audio frame header (layer I-III, any MPEG version) at the start."""
    try:
        with open(name, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    if head.startswith(b"ID3"):
        return True
    return len(head) == 4 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0 and head[2] >> 4 != 0xF


def _check_expected(path, st: os.stat_result, expected: tuple[int, float] | None) -> None:
    if expected is None:
        return
    size, mtime = expected
    if st.st_size != int(size) or abs(st.st_mtime - float(mtime)) > _MTIME_TOLERANCE:
        raise TagWriteError(
            path,
            f"file changed since it was analysed (size {st.st_size} vs {int(size)}, "
            f"mtime {st.st_mtime:.3f} vs {float(mtime):.3f}); scan it again",
        )


def unsettled_reason(mtime: float, settle_seconds: float, *, now: float | None = None) -> str | None:
    """Why a file modified at ``mtime`` must be left alone for now (modified less than
    ``settle_seconds`` ago: it may still be being written), or None.

    A modification time in the future by less than the settle time counts as recent too.
    """
    import time

    age = (time.time() if now is None else now) - mtime
    if settle_seconds <= 0 or abs(age) >= settle_seconds:
        return None
    return f"changed {max(age, 0.0):.0f} s ago, still being written? (settle time {settle_seconds:g} s); left for a later run"


def _check_writable(path, real: str, st: os.stat_result) -> None:
    if not os.access(real, os.W_OK) or not st.st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise TagWriteError(path, "file is read-only")
    folder = os.path.dirname(real) or "."
    if not os.access(folder, os.W_OK | os.X_OK):
        raise TagWriteError(path, f"folder {folder} is not writable (needed for the atomic replace)")


_F_SETLEASE = 1024
_F_GETLEASE = 1025
_F_SETSIG = 10


class _ReadLease:
    """A Linux read lease on the original file, held from before the copy until after the rename.

    The kernel refuses the lease (EAGAIN) while any process has the file open for writing, and
    breaks it as soon as one opens it for writing (or truncates it): `broken` then says so, and that
    opener's ``open`` waits until the lease is released (at most ``/proc/sys/fs/lease-break-time``
    seconds), so its writes cannot go to the file we are about to replace. Readers neither prevent
    nor break it. Where leases are not available (not Linux, not the file's owner without
    CAP_LEASE, network and FUSE filesystems, leases disabled) `active` is False and the writer
    relies on its other checks (settle time, size/mtime/inode unchanged).

    The lease-break notification (a signal) goes nowhere: SIGURG (ignored by default) is chosen
    before the lease is taken and the descriptor's owner is cleared right after.
    """

    def __init__(self, fd: int, shown: str) -> None:
        import fcntl
        import signal
        import sys

        self.fd = fd
        self.active = False
        self.unavailable: str | None = None
        if not sys.platform.startswith("linux"):
            self.unavailable = "leases are Linux only"
            return
        try:
            fcntl.fcntl(fd, getattr(fcntl, "F_SETSIG", _F_SETSIG), signal.SIGURG)
            fcntl.fcntl(fd, getattr(fcntl, "F_SETLEASE", _F_SETLEASE), fcntl.F_RDLCK)
        except OSError as exc:
            import errno

            if exc.errno == errno.EAGAIN:
                raise TagWriteError(
                    shown, "open for writing by another program (still being written?); left as it is for a later run"
                ) from None
            self.unavailable = exc.strerror or str(exc)  # EACCES (not the owner), EINVAL (filesystem) ...
            return
        self.active = True
        fcntl.fcntl(fd, fcntl.F_SETOWN, 0)

    def broken(self) -> bool:
        """True when another program opened the file for writing since the lease was taken."""
        if not self.active:
            return False
        import fcntl

        return fcntl.fcntl(self.fd, getattr(fcntl, "F_GETLEASE", _F_GETLEASE)) != fcntl.F_RDLCK


def _same_file(a: os.stat_result, b: os.stat_result) -> bool:
    return (a.st_dev, a.st_ino, a.st_size, a.st_mtime_ns) == (b.st_dev, b.st_ino, b.st_size, b.st_mtime_ns)


def _xattrs(path: str) -> dict[str, bytes]:
    """A file's extended attributes (POSIX ACLs included: ``system.posix_acl_access``)."""
    import errno

    try:
        names = os.listxattr(path)
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOSYS):
            return {}
        raise
    out = {}
    for name in names:
        try:
            out[name] = os.getxattr(path, name)
        except OSError as exc:
            if exc.errno != errno.ENODATA:  # removed meanwhile
                raise
    return out


def _copy_xattrs(src: str, dst: str, shown: str) -> dict[str, bytes]:
    """Give ``dst`` exactly the extended attributes of ``src`` (user attributes, POSIX ACLs, ...);
    returns them. Raises `TagWriteError` naming the attributes that cannot be kept."""
    want = _xattrs(src)
    have = _xattrs(dst)  # e.g. an ACL inherited from the folder's default ACL, a security label
    problems = []
    for name in have.keys() - want.keys():
        try:
            os.removexattr(dst, name)
        except OSError as exc:
            problems.append(f"{name} ({exc.strerror or exc})")
    for name, value in want.items():
        if have.get(name) != value:
            try:
                os.setxattr(dst, name, value)
            except OSError as exc:
                problems.append(f"{name} ({exc.strerror or exc})")
    if not problems and _xattrs(dst) != want:
        problems.append("the attributes read back differ")
    if problems:
        raise TagWriteError(shown, f"cannot keep the extended attributes on the new copy: {', '.join(problems)}")
    return want


def _link_backup(real: str, folder: str, prefix: str) -> str | None:
    """A second name (a hidden temporary-file name) for the original, so that it can be put back
    after the rename; None where the filesystem has no hard links."""
    import secrets

    for _ in range(10):
        name = os.path.join(folder, prefix + secrets.token_hex(4) + TEMP_SUFFIX)
        try:
            os.link(real, name)
            return name
        except FileExistsError:
            continue
        except OSError:
            return None
    return None


def _rewrite(
    path: str | os.PathLike,
    *,
    target: Callable[[Raw], Raw],
    id3v23: bool | None,
    keep_mtime: bool,
    dry_run: bool,
    expected: tuple[int, float] | None,
    settle_seconds: float = 0.0,
) -> TagChange:
    shown = os.fspath(path)
    real = os.path.realpath(shown)  # a symlink's target is rewritten, the link stays a link
    try:
        st = os.stat(real)
    except FileNotFoundError:
        raise TagWriteError(shown, "no such file") from None
    except OSError as exc:
        raise TagWriteError(shown, f"cannot stat: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise TagWriteError(shown, "not a regular file")
    _check_expected(shown, st, expected)

    audio, kind = _open(shown, real=real)
    cls = type(audio)
    before_raw = _get_raw(audio, kind)
    after_raw = target(before_raw)
    version = None
    convert = False
    if kind == "id3":
        current = audio.tags.version[1] if audio.tags is not None else None
        if id3v23 is None:  # removal keeps the file's version
            version = current if current in (3, 4) else 4
        elif id3v23:
            version = 3
        else:  # v2.4, but an existing v2.3 tag stays v2.3 (no other frame is converted)
            version = 3 if current == 3 else 4
        convert = bool(after_raw) and current is not None and current != version
    changed = before_raw != after_raw or convert
    before, after = _state(before_raw), _state(after_raw)
    unsettled = unsettled_reason(st.st_mtime, settle_seconds)
    if not changed or dry_run:
        if changed:
            _check_writable(shown, real, st)
            if unsettled:
                raise TagWriteError(shown, unsettled)
        return TagChange(
            path=shown, before=before, after=after if changed else before, changed=changed, written=False,
            dry_run=dry_run, size=st.st_size, mtime=st.st_mtime,
        )  # fmt: skip
    _check_writable(shown, real, st)
    if unsettled:
        raise TagWriteError(shown, unsettled)
    # Only a digest of the other tags is kept: the loaded tag (cover art included) is let go now.
    others = None if convert else _other_tags(audio, kind)
    del audio

    mutagen_type = cls.__name__
    folder = os.path.dirname(real) or "."
    base = os.path.basename(real)
    prefix = "." + os.fsencode(base)[:80].decode("utf-8", "ignore") + "."
    changed_meanwhile = "file changed while its tags were being written (another program wrote to it); left as it is"
    tmp = backup = None
    held = source = None
    try:
        import fcntl

        source = os.open(real, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        lease = _ReadLease(source, shown)
        if not _same_file(os.fstat(source), st):
            raise TagWriteError(shown, changed_meanwhile)
        try:
            fcntl.flock(source, fcntl.LOCK_SH | fcntl.LOCK_NB)  # "in use" for the backup name below
        except OSError:
            pass
        payload = _payload_digest(real, mutagen_type)
        held, tmp = tempfile.mkstemp(prefix=prefix, suffix=TEMP_SUFFIX, dir=folder)
        fcntl.flock(held, fcntl.LOCK_EX)  # "in use" until we are done or dead (remove_stale_temp_files)
        shutil.copyfile(real, tmp)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        if (st.st_uid, st.st_gid) != (os.stat(tmp).st_uid, os.stat(tmp).st_gid):
            try:
                os.chown(tmp, st.st_uid, st.st_gid)
            except OSError:
                pass  # not ours to give away; documented: the writer then owns the file
        xattrs = _copy_xattrs(real, tmp, shown)
        if lease.broken():
            raise TagWriteError(shown, changed_meanwhile)
        _write_copy(tmp, cls=cls, kind=kind, raw=after_raw, version=version, original=real)
        _verify(tmp, cls=cls, kind=kind, raw=after_raw, others=others, payload=payload, mutagen_type=mutagen_type)
        if _xattrs(tmp) != xattrs or stat.S_IMODE(os.stat(tmp).st_mode) != stat.S_IMODE(st.st_mode):
            raise TagWriteError(tmp, "verification failed: the extended attributes or the mode changed")
        if keep_mtime:
            os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        _fsync(tmp)
        if lease.broken() or not _same_file(os.fstat(source), st) or not _same_file(os.stat(real), st):
            raise TagWriteError(shown, changed_meanwhile)
        if lease.active:
            backup = _link_backup(real, folder, prefix)
        os.replace(tmp, real)
        tmp = None
        if lease.broken():
            # Someone opened the old file for writing between the last check and the rename: their
            # writes would go to the replaced file. Put the old file back, with our copy gone.
            if backup is None:
                raise TagWriteError(shown, "tags written, but another program opened the file for writing at that "
                                           "moment; its changes may be lost: check the file")  # fmt: skip
            os.replace(backup, real)
            backup = None
            raise TagWriteError(shown, changed_meanwhile)
        os.close(source)  # the lease ends here
        source = None
        _fsync_dir(folder)
        new = os.stat(real)
    except TagWriteError as exc:
        raise TagWriteError(shown, exc.reason if exc.path == shown else f"{exc.reason}; file left unchanged") from exc
    except Exception as exc:  # mutagen, OS and anything unexpected: our error, with the reason
        import mutagen

        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        kind_of = "mutagen" if isinstance(exc, mutagen.MutagenError) else type(exc).__name__
        raise TagWriteError(shown, f"tag write failed ({kind_of}: {reason}); file left unchanged") from exc
    finally:
        for name in (tmp, backup):
            if name is not None:
                try:
                    os.unlink(name)
                except FileNotFoundError:
                    pass
        if held is not None:
            os.close(held)
        if source is not None:
            os.close(source)
    return TagChange(
        path=shown, before=before, after=after, changed=True, written=True, size=new.st_size, mtime=new.st_mtime
    )


def _write_copy(tmp: str, *, cls: type, kind: str, raw: Raw, version: int | None, original: str) -> None:
    """Change our fields in the temporary copy ``tmp`` (read as ``cls``, the original's mutagen type)."""
    mutagen_type = cls.__name__
    audio, _ = _open(tmp, cls=cls)
    _set_raw(audio, kind, raw)
    if kind == "id3":
        if not len(audio.tags):
            # Nothing left in the ID3 tag (tagger created it): remove the tag altogether.
            if mutagen_type == "MP3":
                from mutagen.id3 import delete

                delete(tmp, delete_v1=False, delete_v2=True)
            else:
                audio.delete()
        else:
            audio.save(v2_version=version, v23_sep="/", **({"v1": 1} if mutagen_type == "MP3" else {}))
        if mutagen_type == "MP3":
            _restore_id3v1(original, tmp)
    else:
        audio.save()


def _restore_id3v1(original: str, tmp: str) -> None:
    """Put the original ID3v1 tag back byte for byte (mutagen regenerates it from ID3v2)."""
    with open(original, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 128:
            return
        f.seek(-128, os.SEEK_END)
        old = f.read(128)
    if old[:3] != b"TAG":
        return
    with open(tmp, "r+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() >= 128:
            f.seek(-128, os.SEEK_END)
            if f.read(3) == b"TAG":
                f.seek(-128, os.SEEK_END)
                f.write(old)
                return
        f.seek(0, os.SEEK_END)
        f.write(old)


def _verify(
    tmp: str, *, cls: type, kind: str, raw: Raw, others: str | None, payload: str | None, mutagen_type: str
) -> None:
    """Re-read the written copy: our fields as intended, other tags and audio payload unchanged."""
    audio, kind_now = _open(tmp, cls=cls)
    if kind_now != kind or type(audio).__name__ != mutagen_type:
        raise TagWriteError(tmp, "verification failed: the written copy is no longer the same format")
    got = _get_raw(audio, kind)
    if got != raw:
        raise TagWriteError(tmp, f"verification failed: fields read back as {got}, expected {raw}")
    if others is not None and _other_tags(audio, kind) != others:
        raise TagWriteError(tmp, "verification failed: other tags changed")
    del audio
    if payload is not None and _payload_digest(tmp, mutagen_type) != payload:
        raise TagWriteError(tmp, "verification failed: the audio payload changed")


def _fsync(name: str) -> None:
    fd = os.open(name, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
