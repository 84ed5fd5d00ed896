"""What a scan reports and how it is stopped: `Progress`, `ScanSummary`, `ScanInterrupted`,
`StopSignals`, and the interfaces it calls (`Analyser`, `OnTrack`)."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol

import numpy as np

from tagger.aggregate import TrackResult
from tagger.errors import TaggerError
from tagger.paths import escaped_name
from tagger.signals import STOP_SIGNALS, Interrupted, set_handler


class Analyser(Protocol):
    """What the scan needs from a model (the `tagger.model.ensemble.Ensemble` interface)."""

    families: tuple[str, ...]
    thresholds: np.ndarray
    feature_config: object

    @property
    def version(self) -> str: ...
    @property
    def hash(self) -> str: ...
    @property
    def aggregation(self) -> dict: ...
    def predict_features(self, feats: np.ndarray) -> np.ndarray: ...


@dataclass
class Progress:
    """Where a scan stands (passed to the ``progress`` callback)."""

    phase: str
    """'plan' (checking files) or 'analyse'."""
    files_done: int = 0
    files_total: int | None = None
    audio_seconds: float = 0.0
    elapsed: float = 0.0

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.elapsed if self.elapsed > 0 else 0.0


@dataclass
class ScanSummary:
    """What a scan did."""

    scan_id: int
    model_version: str
    found: int = 0
    """Audio files found under the folders."""
    scanned: int = 0
    """Files analysed successfully."""
    failed: int = 0
    skipped: int = 0
    """Unchanged files not re-analysed (including stale ones left alone)."""
    stale: int = 0
    """Skipped files whose results come from another model version (see ``rescan_stale``)."""
    moved: int = 0
    copied: int = 0
    """New files whose whole content is an analysed file's: given a copy of its results without
    analysis (counted in ``skipped`` too)."""
    retagged: int = 0
    """Files that read as changed whose audio bytes were those analysed (another program rewrote
    their tags): results kept without analysis (counted in ``skipped`` too; stale ones are analysed
    again only with ``rescan_stale``, as an unchanged file's)."""
    missing: int = 0
    """Tracks newly marked missing."""
    empty_roots: list[tuple[str, int]] = field(default_factory=list)
    """(folder, tracks) of the folders given that were empty (a drive not mounted?) while the
    database holds tracks under them: those tracks were kept as they were, not marked missing."""
    merged: list[str] = field(default_factory=list)
    """Tracks an older tagger stored under the name of a symbolic link to a file of the library,
    deleted: the file's own track holds the same results."""
    duplicates: list[str] = field(default_factory=list)
    """Tracks stored under another name of a file this scan found under the name its walk reached
    (a folder of the library mounted a second time, `tagger.db.scan_writer.Missing.duplicates`):
    deleted, the found name's track holds the file's results."""
    relinked: list[tuple[str, str]] = field(default_factory=list)
    """(old, new) of the tracks stored under a path that leads through a symbolic link to a file
    this scan found under its real path (a library moved, a link left at its old place): the row
    now has the real path, results kept."""
    renamed: list[tuple[str, str]] = field(default_factory=list)
    """(old, new) of the tracks stored under another name of a file this scan found, with no symbolic
    link on its way (a folder mounted at two places, each name scanned by a scan of its own): the
    row now has the name this scan found, results kept."""
    audio_seconds: float = 0.0
    wall_seconds: float = 0.0
    tags_written: int = 0
    """Files whose tags were written (or would be, in a dry run) by the ``on_track`` hook."""
    tag_errors: int = 0
    tag_failures: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of each failed tag write (the track's results are stored; the next scan that
    writes tags tries again)."""
    tags_kept: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of the files whose fields named like tagger's, their INSTRUMENTS_MODEL no model
    tagger knows, the tag write left as they were (`tagger.tags.TagChange.kept`): not a failure, their
    results are stored."""
    untaggable: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of the files whose format holds no tags tagger writes (`UntaggableError`):
    their results are stored, no tag write is tried again, and they are not a failure."""
    errors: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of each file that failed, under the name it is stored as (one that is not UTF-8
    with ``\\xNN`` escapes, `tagger.paths.escaped_name`), and of each folder that could not be listed,
    under its own name (`to_dict` escapes it as a file's)."""
    analysed_in_part: list[tuple[str, str]] = field(default_factory=list)
    """(path, note) of the files analysed and stored without a small part ffmpeg could not decode
    (damaged frames, at most `tagger.audio.MAX_LOST_SHARE` of the file): not a failure."""
    decoded_anew: list[tuple[str, str]] = field(default_factory=list)
    """(path, why) of the unchanged files whose tracks an older tagger's decoding analysed in part
    (``tracks.decoding``: files joined byte-wise, of which it decoded the first alone) or stored with
    every window silent (before the quiet-recording floor), analysed again (counted in ``scanned``
    or ``failed``)."""
    temp_files: list[str] = field(default_factory=list)
    """Temporary files left by killed tag writes that this scan deleted, or with ``keep_temp_files``
    (a dry run) found and left in place, under their own names (`to_dict` escapes a name that is not
    UTF-8)."""
    not_audio: list[str] = field(default_factory=list)
    """Files given by name whose name says they hold no audio (``notes.txt``, ``cover.jpg``: a shell's
    ``~/Music/*``), left out: neither analysed nor stored (`tagger.crawl.CrawlReport.not_audio`)."""
    unfollowed: list[str] = field(default_factory=list)
    """Symbolic links under the scanned folders that point outside them, not followed (without
    ``follow_external_symlinks``): what lies behind them was not scanned (`tagger.crawl.CrawlReport`)."""
    deferred: list[tuple[str, str]] = field(default_factory=list)
    """(path, reason) of the new or changed files left for a later scan: modified less than the
    settle time ago, they may still be being written (nothing is stored for them)."""
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Seconds spent per stage. Analysis (``decode``, ``resample``, ``framing``, ``features``, and
    ``wait``: workers waiting for the scan to read their messages) is summed over the worker processes; the rest is
    the main process's: ``plan`` (crawl, fingerprints), ``inference``, ``aggregation``, ``database``,
    ``tags`` and ``idle`` (waiting for the workers)."""
    peak_rss: dict = field(default_factory=dict)
    """Peak resident memory in bytes: ``main`` (this process) and ``workers`` (one value per worker)."""

    @property
    def realtime_factor(self) -> float:
        return self.audio_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Nothing failed: no file nor folder in ``errors``, no tag write in ``tag_errors``."""
        return not self.errors and not self.tag_errors and not self.failed

    def to_dict(self) -> dict:
        out = asdict(self)
        out["errors"] = [{"path": escaped_name(p), "error": e} for p, e in self.errors]
        out["temp_files"] = [escaped_name(p) for p in self.temp_files]  # (JSON holds no lone surrogate)
        out["unfollowed"] = [escaped_name(p) for p in self.unfollowed]
        out["not_audio"] = [escaped_name(p) for p in self.not_audio]
        out["deferred"] = [{"path": p, "reason": r} for p, r in self.deferred]
        out["analysed_in_part"] = [{"path": p, "note": n} for p, n in self.analysed_in_part]
        out["decoded_anew"] = [{"path": p, "reason": r} for p, r in self.decoded_anew]
        out["tag_failures"] = [{"path": p, "error": e} for p, e in self.tag_failures]
        out["untaggable"] = [{"path": p, "reason": r} for p, r in self.untaggable]  # (was: [path, reason] pairs)
        out["tags_kept"] = [{"path": p, "reason": r} for p, r in self.tags_kept]
        out["empty_roots"] = [{"path": p, "tracks_kept": n} for p, n in self.empty_roots]
        out["relinked"] = [{"from": a, "to": b} for a, b in self.relinked]
        out["renamed"] = [{"from": a, "to": b} for a, b in self.renamed]
        out["stage_seconds"] = {k: round(v, 3) for k, v in self.stage_seconds.items()}
        out["realtime_factor"] = round(self.realtime_factor, 2)
        out["audio_seconds"] = round(self.audio_seconds, 3)
        out["wall_seconds"] = round(self.wall_seconds, 3)
        return out


class ScanInterrupted(TaggerError):
    """The scan was asked to stop (SIGINT, SIGTERM or SIGHUP); what was analysed before is stored."""

    def __init__(self, signum: int, stored: int) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name if signum in signal.Signals._value2member_map_ else f"signal {signum}"
        super().__init__(f"interrupted ({name}): the {stored} file(s) analysed by this scan are stored; "
                         "scan again to continue")  # fmt: skip


class StopSignals:
    """While a scan runs (in the main thread): the first SIGINT, SIGTERM or SIGHUP asks it to stop;
    the scan then stores the files already analysed, stops its workers and raises `ScanInterrupted`
    (within about a second). A second signal interrupts at once (`tagger.signals.Interrupted`, a
    KeyboardInterrupt: exit status 128 + its number). A signal that
    was ignored before the scan (``nohup``) stays ignored."""

    NAMES = STOP_SIGNALS

    def __init__(self) -> None:
        self.signum: int | None = None
        self.saved: dict = {}
        self.at_stop: list[Callable[[], None]] = []
        """What the first stop signal calls too (`calling`)."""

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is not threading.main_thread():
            return self
        for name in self.NAMES:
            sig = getattr(signal, name, None)
            if sig is None or signal.getsignal(sig) is signal.SIG_IGN:
                continue
            self.saved[sig] = set_handler(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self.saved.items():
            set_handler(sig, handler)

    def _handle(self, signum, _frame) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum
        for call in list(self.at_stop):
            call()

    @contextlib.contextmanager
    def calling(self, call: Callable[[], None]) -> Iterator[None]:
        """Within the block, the first stop signal also calls ``call`` (from its handler, in the main
        thread, wherever that is: it must be quick and never raise), a stop asked before at once:
        `tagger.audio.plumbing.ending_decoders`' ``end`` (``--jobs 0``)."""
        self.at_stop.append(call)
        try:
            if self.requested:
                call()
            yield
        finally:
            self.at_stop.remove(call)

    @property
    def requested(self) -> bool:
        return self.signum is not None


@dataclass(frozen=True)
class AnalysedFile:
    """The file a track's results were made from, as the scan found it: what the ``on_track`` hook
    checks the file against before it writes into it (`tagger.tags.write_instruments`'s ``expected``,
    ``fingerprint``, ``inode``, ``content_hash`` and ``ctime_ns``), so that another file moved over it meanwhile
    never gets its results."""

    size: int
    mtime: float
    fingerprint: str | None = None
    inode: tuple[int, int] | None = None
    """(st_dev, st_ino); None where not known."""
    content_hash: str | None = None
    """The hash of its whole content (`tagger.fingerprint.content_hash`); None where not known."""
    ctime_ns: int | None = None
    """Its status-change time (``st_ctime_ns``): a file written over in place with its mtime set back
    keeps its inode but not its ctime; None where not known."""
    own_write: bool = False
    """It was found exactly as tagger's own last write left it (`tagger.db.scan_writer.FileState.own_write`):
    its tag write does not wait the settle time (the write still checks it is the file found)."""


OnTrack = Callable[[str, TrackResult, AnalysedFile], object]
"""Called in the main process after a track's results are stored (e.g. to write tags), with the
file's path, its result and the file as it was analysed (`AnalysedFile`).

It may raise `TaggerError` (logged, counted in ``tag_errors``). When it returns an object with a
true ``changed`` attribute it counts in ``tags_written``; with a true ``written`` attribute the
file was rewritten, so the track's size, mtime and fingerprint are refreshed (the next scan then
sees the file unchanged).
"""
