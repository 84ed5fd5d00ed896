"""Writing many files: predictions (from `tagger predict --json` output or the library
database), selecting them, writing them, and removing our fields from files and folders.

Files under folders are found as a scan finds them (`tagger.crawl.crawl`). Writing the database's
results, recorded in it around each write, is `tagger.tags.database`'s (`tag_from_database`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tagger.display import named
from tagger.errors import ChangedSinceError, TagWriteError, UserError
from tagger.instruments import FAMILIES, canonical_order
from tagger.paths import check_filesystem_encoding
from tagger.tags.fields import TagChange, model_families
from tagger.tags.leftovers import LeftoverCopies
from tagger.tags.rewrite import remove_instruments, write_instruments
from tagger.tags.rows import PredictionRow, is_name

if TYPE_CHECKING:
    from tagger.db.filter import TrackFilter
    from tagger.db.listing import StoredResults


def find_audio_files(
    paths: Iterable[str | os.PathLike], *, follow_external_symlinks: bool = False, include_hidden: bool = False
) -> Iterator[Path | TagWriteError]:
    """Files given directly, and the audio files under folders as a scan finds them
    (`tagger.crawl.crawl`: hidden files, unless ``include_hidden``, and leftover temporary files are
    left out, and a symbolic link pointing outside the given folders is not followed unless
    ``follow_external_symlinks``). A path that does not exist and each link not followed are
    yielded as a `TagWriteError` (the reason why they are skipped).
    """
    from tagger.crawl import CrawlReport, crawl

    roots = []
    for p in map(Path, paths):
        if os.path.lexists(p):
            roots.append(p)
        else:
            yield TagWriteError(p, "no such file or folder")
    report = CrawlReport()
    yield from crawl(roots, follow_external_symlinks=follow_external_symlinks, include_hidden=include_hidden,
                     report=report)  # fmt: skip
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
    families: tuple[str, ...] | None = None
    """The families of the model that produced it (what its names are checked against); None: the
    canonical families."""
    stored: StoredResults | None = None
    """Which results of the library database these are (`predictions_from_database`): the file is
    written only while its fingerprint is the one they were made from, and the tags written from
    them are recorded as current only while the track still holds them."""
    fingerprint: str | None = None
    """The file's content fingerprint when it was analysed (`tagger.fingerprint.fingerprint`: a row of
    `tagger predict --json`); None to skip the check (``stored`` carries the database's)."""
    ctime_ns: int | None = None
    """The file's ctime when it was analysed (a row of `tagger predict --json`; None: not known, as
    in an older predict's row): a file of another ctime must hash to ``content_hash``."""
    content_hash: str | None = None
    """The hash of the whole file analysed (`tagger.fingerprint.content_hash`; None: not known)."""


MAX_LINE_BYTES = 1 << 20
"""The longest line of a predictions file read (`tagger predict --json` writes a few hundred bytes
a row; a longer line is refused unread, so a wrong file given cannot fill the memory)."""

MAX_SKIPPED_BYTES = 256 << 20
"""The most of one over-long line skipped (unkept) before the reading stops with an error: input
without a newline (``/dev/zero``, a stream) would otherwise be skipped for ever."""

MAX_BAD_LINES_IN_A_ROW = 1000
"""The most bad lines one after the other before the reading stops with an error (endless input
with newlines, ``/dev/urandom``, is no `tagger predict --json` output)."""


class RejectedRow(TagWriteError):
    """A row of a predictions file that is not written, and why: ``path`` names the predictions
    file and its line, ``reason`` the music file (when the row names one) and what is wrong."""

    def __init__(self, source: str | os.PathLike, line: int, reason: str, file: str | None = None) -> None:
        super().__init__(f"{os.fsdecode(source)} line {line}", f"{named(file)}: {reason}" if file else reason)
        self.source, self.line, self.file = os.fsdecode(source), line, file


@dataclass(frozen=True)
class PredictionRows:
    """A predictions file read and checked: the rows that may be written, and those that may not."""

    predictions: list[Prediction]
    rejected: list[RejectedRow]


def load_predictions_jsonl(path: str | os.PathLike, *, model_version: str | None = None,
                           override: bool = False) -> PredictionRows:  # fmt: skip
    """Every row of `tagger predict --json` output, checked before any file is touched: one JSON
    object per line with ``path``, ``instruments`` and ``scores`` (``model_version``, ``families``,
    ``size`` and ``mtime`` when present; other keys are ignored). A line that is not such a row (not
    UTF-8, not JSON, a wrong type, an unknown family, a score that is not a number from 0 to 1, a
    family without a score) is a `RejectedRow` naming the file, the line and the reason; blank lines,
    a UTF-8 byte-order mark and CRLF line ends are read. A relative ``path`` is taken from the current
    folder.

    ``model_version`` is used for rows that do not name theirs; with ``override`` (the user named it)
    a row naming another is rejected. Raises `UserError` when the file cannot be read."""
    found: list[tuple[int, Prediction]] = []
    rejected: list[RejectedRow] = []
    try:
        f = open(path, "rb")
    except OSError as exc:
        raise UserError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None
    def readline(size: int) -> bytes:
        try:
            return f.readline(size)
        except OSError as exc:
            raise UserError(f"cannot read {os.fspath(path)}: {exc.strerror or exc}") from None

    def check_bad_run() -> None:
        if len(rejected) - good_rejected >= MAX_BAD_LINES_IN_A_ROW:
            first = rejected[good_rejected]
            raise UserError(f"{os.fspath(path)}: {MAX_BAD_LINES_IN_A_ROW} bad lines in a row (lines {first.line} to "
                            f"{number}; line {first.line}: {first.reason}): not `tagger predict --json` output; "
                            "nothing was written")  # fmt: skip

    with f:
        number = good_rejected = 0  # (good_rejected: the rejected rows before the last good one)
        while True:
            check_bad_run()
            data = readline(MAX_LINE_BYTES + 1)
            if not data:
                break
            number += 1
            if len(data) > MAX_LINE_BYTES and not data.endswith(b"\n"):
                skipped = len(data)
                while data and not data.endswith(b"\n"):  # (the rest of the line, unkept)
                    if skipped > MAX_SKIPPED_BYTES:
                        raise UserError(f"{os.fspath(path)} line {number}: a line without end (more than "
                                        f"{MAX_SKIPPED_BYTES >> 20} MiB): not `tagger predict --json` output; "
                                        "nothing was written")  # fmt: skip
                    data = readline(MAX_LINE_BYTES)
                    skipped += len(data)
                rejected.append(RejectedRow(path, number, "a line of more than 1 MiB: not a row of `tagger predict --json`"))
                continue
            if number == 1 and data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            if not data.strip():
                continue
            row = None
            try:
                row = _parse_row(data)
                found.append((number, _prediction(row, model_version=model_version, override=override)))
                good_rejected = len(rejected)
            except ValueError as exc:
                file = row.get("path") if isinstance(row, dict) and is_name(row.get("path")) else None
                rejected.append(RejectedRow(path, number, str(exc), file))
    predictions, contradicting = _one_row_per_file(path, found)
    return PredictionRows(predictions, sorted([*rejected, *contradicting], key=lambda r: r.line))


def _one_row_per_file(source, found: list[tuple[int, Prediction]]) -> tuple[list[Prediction], list[RejectedRow]]:
    """One prediction per file: rows naming the same file (the same name, ``./a.flac`` and ``a.flac``,
    a symbolic or hard link to it) with the same results are written once; with different results
    (which is right?) none of them is, each a `RejectedRow`."""
    by_file: dict[tuple, list[tuple[int, Prediction]]] = {}
    for number, pred in found:
        try:
            st = os.stat(pred.path)
            key: tuple = ("inode", st.st_dev, st.st_ino)
        except OSError:  # (the write says why: no such file, ...)
            key = ("name", os.path.abspath(pred.path))
        by_file.setdefault(key, []).append((number, pred))
    keep: set[int] = set()
    rejected: list[RejectedRow] = []
    for rows in by_file.values():
        if len({_results(pred) for _, pred in rows}) == 1:
            keep.add(rows[0][0])
            continue
        for number, pred in rows:
            others = ", ".join(str(n) for n, _ in rows if n != number)
            rejected.append(RejectedRow(source, number, f"line {others} gives other results for the same file: "
                                                        "which is right? Neither is written", pred.path))  # fmt: skip
    return [pred for number, pred in found if number in keep], rejected


def _results(pred: Prediction) -> tuple:
    """What a prediction would write and check, comparable across rows."""
    families = pred.families or FAMILIES
    scores = {name.strip().lower(): value for name, value in (pred.scores or {}).items()}
    return (tuple(canonical_order(pred.instruments, families=families)), pred.model_version,
            None if pred.scores is None else tuple(sorted(scores.items())), tuple(families), pred.expected,
            pred.fingerprint)  # fmt: skip


def read_predictions_jsonl(path: str | os.PathLike, *, model_version: str | None = None) -> list[Prediction]:
    """The rows of `load_predictions_jsonl`; raises `UserError` naming the first bad line."""
    rows = load_predictions_jsonl(path, model_version=model_version)
    if rows.rejected:
        raise UserError(str(rows.rejected[0]))
    return rows.predictions


def _parse_row(data: bytes) -> dict:
    import json

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"not UTF-8 (byte {exc.start + 1}): not a row of `tagger predict --json`") from None
    try:
        row = json.loads(text)
    except (ValueError, RecursionError) as exc:  # (ValueError: also an integer of 5,000 digits)
        raise ValueError(f"not a JSON object ({exc})") from None
    if not isinstance(row, dict):
        raise ValueError(f"not a JSON object with 'path' and 'instruments' (a JSON {type(row).__name__})")
    return row


def _prediction(row: dict, *, model_version: str | None, override: bool) -> Prediction:
    """The `Prediction` of one row of `tagger predict --json` (`PredictionRow.from_dict`); raises
    ValueError saying what is wrong."""
    checked = PredictionRow.from_dict(row, model_version=model_version, override=override)
    return Prediction(checked.path, checked.instruments, checked.model_version, checked.scores,
                      (checked.size, checked.mtime), checked.known_families, fingerprint=checked.fingerprint,
                      ctime_ns=checked.ctime_ns, content_hash=checked.content_hash)  # fmt: skip


def select_predictions(predictions: Iterable[Prediction], *, where: TrackFilter | None = None) -> list[Prediction]:
    """The predictions the filter ``where`` selects (the in-memory evaluator of `TrackFilter`; None:
    all of them). Family names must be known to the predictions' models."""
    from tagger.db.filter import Candidate, TrackFilter  # (SQLAlchemy: not for the scan's workers, which import this package)

    predictions = list(predictions)
    if where is None:
        where = TrackFilter()
    known = list(FAMILIES)
    for pred in predictions:
        known += [f for f in model_families(pred.families or ()) if f not in known]
    where.check(known)
    return [p for p in predictions if where.match(Candidate(p.path, p.instruments, p.scores))]


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
    before_replace: Callable[[Prediction, str], None] | None = None,
    refresh: Callable[[Prediction], Prediction] | None = None,
    stop: Callable[[], bool] | None = None,
    recorded: Mapping[str, tuple] | None = None,
    models: Collection[str] | None = None,
) -> Iterator[TagChange | TagWriteError]:
    """`write_instruments` for each prediction; a file that cannot be tagged yields its
    `TagWriteError` (the others go on). ``scores``: also write INSTRUMENTS_SCORES.
    ``settle_seconds``: as for `write_instruments`, but not for a file of the database exactly as
    its record after tagger's own tag write (`as_tagger_left_it`).
    ``stop()``: asked before each file; when true the run ends there (the file before it written
    and, by the caller, recorded: a signal handler sets it, as `tagger.library.state.StopSignals`).
    ``refresh(prediction)``: the prediction to write, read again right before its write (raises
    `TagWriteError` when there is none to write any more).

    ``roots``: the files and folders the writes must stay in (as a scan's folders): a file reached
    through a symbolic link pointing outside them is skipped unless ``follow_external_symlinks``.
    None: `rows_folder` (raises `UserError` for rows in unrelated folders). ``before_replace(prediction,
    copy)``: called before each verified copy is moved over its file (`write_instruments`). Unless
    ``dry_run``, the hidden copies that killed writes left of each file are deleted (`LeftoverCopies`).
    ``recorded``: for predictions that carry no stored facts (`tagger tag --from-json`'s rows), what
    the library database recorded of their files after tagger's own writes, as for `remove_all`: a
    file found exactly so is not waited for (was: every file a scan, `tag` or `untag` had just
    written waited the settle time). ``models``: the model versions known to be tagger's
    (`write_instruments`' ``models``; None: any).
    """
    import functools

    from tagger.crawl import external_link_target

    check_filesystem_encoding()
    predictions = list(predictions)
    roots = list(roots) if roots is not None else [rows_folder(predictions)] if predictions else []
    leftovers = LeftoverCopies()

    def write(pred: Prediction, *, by_audio: bool = False) -> TagChange:
        target = None if follow_external_symlinks else external_link_target(pred.path, roots)
        if target is not None:
            raise TagWriteError(pred.path, _external_reason(target))
        if not dry_run:
            leftovers.remove(pred.path)
        return write_instruments(
            pred.path, instruments=pred.instruments, model_version=pred.model_version,
            scores=pred.scores if scores else None, id3v23=id3v23, keep_mtime=keep_mtime,
            dry_run=dry_run, expected=pred.expected, families=pred.families,
            settle_seconds=0.0 if as_tagger_left_it(pred) or _as_recorded(pred.path, recorded) else settle_seconds,
            fingerprint=pred.stored.fingerprint if pred.stored else pred.fingerprint,
            content_hash=pred.stored.content_hash if pred.stored else pred.content_hash,
            ctime_ns=pred.stored.ctime_ns if pred.stored else pred.ctime_ns,
            audio_digest=pred.stored.audio_digest if by_audio and pred.stored else None,
            before_replace=None if before_replace is None else functools.partial(before_replace, pred), models=models,
        )  # fmt: skip

    for pred in predictions:
        if stop is not None and stop():
            return
        try:
            if refresh is not None:
                pred = refresh(pred)
            try:
                change = write(pred)
            except ChangedSinceError as refusal:
                # (another tagger writer rewrote and recorded the file since the read: once more, from
                # the database's facts now; the same facts: the file changed outside tagger, and is
                # written when only its tags changed, its audio digest the stored one)
                again = pred if refresh is None or pred.stored is None else refresh(pred)
                if again.stored == pred.stored:
                    change = _by_audio(write, pred, refusal)
                else:
                    pred = again
                    try:
                        change = write(pred)
                    except ChangedSinceError as second:
                        change = _by_audio(write, pred, second)
            yield change
        except ChangedSinceError as exc:
            yield exc if pred.stored is not None else _unchanged_or(exc, pred, scores=scores, id3v23=id3v23)
        except TagWriteError as exc:
            yield exc


def as_tagger_left_it(pred: Prediction) -> bool:
    """Whether ``pred``'s file is exactly as the library database recorded it with its tags current
    (its size, mtime and ctime those ``pred.stored`` holds: as tagger's own tag write, a scan's or a
    `tagger tag`'s, left it, or as a tag-writing scan found it settled and analysed it), or as tagger's
    own last write left it whatever its tags hold (``written_ctime_ns``: `tagger untag`'s, recorded
    after it): no other program wrote to it since (any write changes its ctime), so it is not "still
    being written" however recent its mtime, and the settle time need not pass (was: `tagger tag
    --scores` right after a tag-writing scan skipped every file as "changed 2 s ago, still being
    written?", the mtime being tagger's own write; and `tag` right after `untag` likewise). The write
    still checks the file is the one recorded."""
    stored = pred.stored
    if stored is None or stored.ctime_ns is None:
        return False
    if not (stored.tags_current or stored.written_ctime_ns == stored.ctime_ns):
        return False
    try:
        st = os.stat(pred.path)
    except OSError:
        return False  # (the write says why)
    return (st.st_size, st.st_mtime, st.st_ctime_ns) == (stored.size, stored.mtime, stored.ctime_ns)


def _as_recorded(path: str | os.PathLike, recorded: Mapping[str, tuple] | None) -> bool:
    """Whether the file at ``path`` is exactly as ``recorded`` (`write_predictions`) holds it after
    tagger's own last write: its size, mtime and ctime; no program has written to it since."""
    facts = _recorded_facts(path, recorded) if recorded else None
    if facts is None:
        return False
    try:
        st = os.stat(path)
    except OSError:
        return False  # (the write says why)
    return (st.st_size, st.st_mtime, st.st_ctime_ns) == tuple(facts[:3])


def _by_audio(write: Callable[..., TagChange], pred: Prediction, refusal: ChangedSinceError) -> TagChange:
    """``write(pred)`` of a file refused as changed since it was analysed (``refusal``), when the
    database stores its audio digest: written if only its tags changed (`write_instruments`'
    ``audio_digest``: the change says ``retagged``), refused as before otherwise. Tried only once the database's facts are
    known to be current (`write_predictions`' ``refresh``): a file another tagger writer rewrote and
    recorded meanwhile is written from those facts instead."""
    if pred.stored is None or not pred.stored.audio_digest:
        raise refusal
    return write(pred, by_audio=True)


def rows_folder(predictions: Iterable[Prediction], *, source: str | os.PathLike | None = None) -> str:
    """The folder holding every listed file: where the writes of rows given without folders must
    stay (`write_predictions`' ``roots``). Rows whose only common folder is the file system's root
    (a stray row, /dev/null, or files of unrelated trees) would switch off the guard against
    symbolic links pointing outside: `UserError` naming two of them (``source``: the rows' file)."""
    paths = sorted({os.path.abspath(p.path) for p in predictions})
    if not paths:
        raise UserError("no rows to write")
    folder = os.path.commonpath([os.path.dirname(p) for p in paths])
    if os.path.dirname(folder) != folder:
        return folder
    first = paths[0]
    other = next(p for p in paths if os.path.commonpath([os.path.dirname(first), os.path.dirname(p)]) == folder)
    where = f"{os.fspath(source)}: its rows" if source is not None else "the rows"
    raise UserError(
        f"{where} have no folder in common but / ({', '.join(dict.fromkeys([first, other]))}), so no folder would "
        "keep the writes from "
        "following symbolic links out of the library; name the folders to write in "
        "(tagger tag --from-json FILE FOLDER...)"
    )


def _unchanged_or(exc: ChangedSinceError, pred: Prediction, *, scores: bool, id3v23: bool) -> TagChange | TagWriteError:
    """A file changed since its row of `tagger predict --json` was made that already holds what the row
    would write (tagged from it by an earlier run) is unchanged, not skipped; otherwise ``exc``."""
    try:
        again = write_instruments(pred.path, instruments=pred.instruments, model_version=pred.model_version,
                                  scores=pred.scores if scores else None, id3v23=id3v23, dry_run=True,
                                  families=pred.families)  # fmt: skip
    except (TagWriteError, UserError):
        return _predict_again(exc)
    return _predict_again(exc) if again.changed else again


def _predict_again(exc: ChangedSinceError) -> ChangedSinceError:
    """``exc`` saying what to do for a row of `tagger predict --json`: predict the file again (its
    checks say "scan it again", which refreshes the database's results and leaves the row as it was)."""
    reason = exc.reason.partition("; scan it again")[0]  # (and what follows it: "without --quick")
    return ChangedSinceError(exc.path, f"{reason}; run tagger predict --json on it again")


def remove_all(
    paths: Iterable[str | os.PathLike],
    *,
    keep_mtime: bool = False,
    dry_run: bool = False,
    settle_seconds: float = 0.0,
    follow_external_symlinks: bool = False,
    stop: Callable[[], bool] | None = None,
    recorded: Mapping[str, tuple] | None = None,
    include_hidden: bool = False,
    models: Collection[str] | None = None,
) -> Iterator[TagChange | TagWriteError]:
    """`remove_instruments` on files and the audio files of folders (found as a scan finds them,
    `find_audio_files`; hidden files and folders only with ``include_hidden``, as a scan with it tags
    them); a file that cannot be changed, or is not followed, yields its `TagWriteError` (the others
    go on). ``stop()``: asked before each file, as by `write_predictions`.
    Unless ``dry_run``, the hidden copies that killed writes left of each file are deleted (`LeftoverCopies`).
    ``recorded``: path -> the size, mtime and ctime the library database recorded of the file after
    tagger's own tag write, and its fingerprint (`tagger.db.listing.recorded_as_tagged`): a file found
    exactly so is not waited for (`remove_instruments`). ``models``: the model versions that are
    tagger's; fields of another are kept (`remove_instruments`); None: any."""
    check_filesystem_encoding()
    leftovers = LeftoverCopies()
    for file in find_audio_files(paths, follow_external_symlinks=follow_external_symlinks, include_hidden=include_hidden):
        if stop is not None and stop():
            return
        if isinstance(file, TagWriteError):
            yield file
            continue
        if not dry_run:
            leftovers.remove(file)
        try:
            facts = _recorded_facts(file, recorded) if recorded else None
            yield remove_instruments(file, keep_mtime=keep_mtime, dry_run=dry_run, settle_seconds=settle_seconds,
                                     recorded=facts, models=models)  # fmt: skip
        except TagWriteError as exc:
            yield exc


def _recorded_facts(file: str | os.PathLike, recorded: Mapping[str, tuple]) -> tuple | None:
    """``recorded``'s facts of ``file``, looked up under each name the database may hold it by
    (`tagger.db.filter.path_forms`); None where it holds none (a name that is not UTF-8 included)."""
    from tagger.db.filter import path_forms

    try:
        forms = path_forms(file)
    except UserError:  # (not UTF-8: the database holds no results for it)
        return None
    return next((recorded[form] for form in forms if form in recorded), None)


def predictions_from_database(session, *, where: TrackFilter | None = None) -> list[Prediction]:
    """The analysed tracks of the library database that the filter ``where`` selects (None: every
    track), as predictions carrying the size, mtime and fingerprint recorded at analysis (so a file
    changed since is refused), the families of the model that produced them and which stored results
    they are. Tracks without a model version are left out."""
    from tagger.db.filter import TrackFilter
    from tagger.db.listing import tracks_to_tag

    if where is None:
        where = TrackFilter()
    return [
        Prediction(t.path, list(t.instruments), t.model_version, dict(t.scores), (t.size, t.mtime),
                   model_families(t.families), t.stored)  # fmt: skip
        for t in tracks_to_tag(session, where)
    ]
