"""Find the audio files under a folder.

The walk is recursive and follows symbolic links to folders inside the scanned folders, except a
link to a folder that holds the link (a loop), and never enters a folder twice (by device and
inode). A symbolic link (to a folder or a file) that points outside every scanned folder is not
followed unless ``follow_external_symlinks``: a scan then never reads, nor writes tags, outside the
library. The kernel's own file systems (``/proc``, ``/sys``, ``/dev`` and their kind:
`SYSTEM_FS_TYPES`) are never entered, nor a link into them followed: their files are the kernel's
state and devices, some of which wait when read (``/proc/kmsg``, for the next kernel message).
Hidden folders and files (name starting with ".") are skipped unless asked for. Folders that
cannot be listed and leftover temporary files of interrupted tag writes are reported in a
`CrawlReport`; the crawler itself never writes anything. A file is audio when its extension says so
(`tagger.audio.AUDIO_EXTENSIONS`) or, for a file with another or no extension, when its first bytes carry a known audio signature
(ID3/MPEG, FLAC, Ogg, RIFF/WAVE, FORM/AIFF, ISO-BMFF ``ftyp`` M4A, ASF/WMA).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tagger.audio import AUDIO_EXTENSIONS
from tagger.audio.formats import FORMAT_MAGICS, OTHER_FILES
from tagger import paths
from tagger.errors import UserError
from tagger.paths import SYSTEM_FS_TYPES, system_folder, under_any  # noqa: F401  (system_folder: crawl's name too)

log = logging.getLogger(__name__)

NON_AUDIO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".txt", ".nfo", ".log", ".cue", ".m3u", ".m3u8",
     ".pls", ".pdf", ".db", ".ini", ".json", ".xml", ".html", ".sfv", ".md5", ".accurip", ".lrc", ".py", ".wvc"}
)  # fmt: skip
"""Extensions never sniffed (common companions of music files; a WavPack correction file, ``.wvc``,
starts with a WavPack block header but holds no audio of its own)."""

_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_W64_GUID = b"riff" + bytes.fromhex("2e91cf11a5d628db04c1")  # Sony Wave64's first chunk


MOUNTINFO = paths.MOUNTINFO


def system_mounts(mountinfo: str | None = None) -> dict[str, str]:
    """{mount point: file system type} of every mount (`tagger.paths.mount_points`), read from
    ``mountinfo`` (default `MOUNTINFO`, Linux's ``/proc/self/mountinfo``); empty where it cannot be
    read (another system), or when no mount is of a `SYSTEM_FS_TYPES` type."""
    out = paths.mount_points(mountinfo or MOUNTINFO) or {}
    return out if any(kind in SYSTEM_FS_TYPES for kind in out.values()) else {}


def refuse_system_root(path: str | os.PathLike, mounts: dict[str, str] | None = None) -> None:
    """Raise `UserError` for a folder or file to scan that lies on one of the kernel's file systems
    (``tagger scan /proc``): its files are not music, and reading some of them blocks for ever."""
    real = os.path.realpath(path)
    kind = system_folder(real, system_mounts() if mounts is None else mounts)
    if kind is not None:
        raise UserError(f"{os.fspath(path)}: on the kernel's {kind} file system (its files are the system's state "
                        "and devices, not music): not scanned")  # fmt: skip


SNIFF_BYTES = 32
"""How many of a file's first bytes `sniff_audio` is given: the longest signature is SPC's (27)."""


def sniff_audio(head: bytes) -> bool:
    """True when the first bytes of a file (`SNIFF_BYTES` of them) look like a known audio container."""
    if head.startswith((b"ID3", b"fLaC", b"OggS", b".snd", b"wvpk", b"MAC ", b"MPCK", b"MP+", b"TTA1", b"caff",
                        b"DSD ", b"FRM8", *FORMAT_MAGICS)) or head.startswith((_ASF_GUID, _W64_GUID)):  # fmt: skip
        return True
    if head[:4] == b"RIFF" and head[8:12] in (b"WAVE", b"RF64"):
        return True
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return True
    if head[4:8] == b"ftyp" and head[8:12] in (b"M4A ", b"M4B ", b"mp42", b"isom", b"dash", b"mp41"):
        return True
    if len(head) >= 2 and head[0] == 0xFF and (head[1] & 0xE0) == 0xE0 and (head[1] & 0x06) != 0:
        return True  # MPEG audio frame sync (mp3 without ID3), or ADTS AAC
    return False


def is_audio_file(path: str | os.PathLike) -> bool:
    ext = os.path.splitext(os.fsdecode(path))[1].lower()
    if ext in OTHER_FILES:  # (an audio extension that other files have too: those are left out)
        try:
            with open(path, "rb") as f:
                return not f.read(SNIFF_BYTES).startswith(OTHER_FILES[ext])
        except OSError:
            return True  # (the scan says why it cannot be read)
    if ext in AUDIO_EXTENSIONS:
        return True
    if ext in NON_AUDIO_EXTENSIONS:
        return False
    try:
        with open(path, "rb") as f:
            return sniff_audio(f.read(SNIFF_BYTES))
    except OSError:
        return False


@dataclass
class CrawlReport:
    """What a crawl met besides audio files."""

    unreadable: list[tuple[str, str]] = field(default_factory=list)
    """(folder, reason) for each folder that could not be listed: its files were not seen."""
    external_links: list[str] = field(default_factory=list)
    """Symbolic links pointing outside the scanned folders, not followed."""
    temp_files: list[str] = field(default_factory=list)
    """Hidden temporary files left by interrupted tag writes (`tagger.paths.is_temp_name`)."""
    not_audio: list[str] = field(default_factory=list)
    """Files given by name whose name says they hold no audio (`NON_AUDIO_EXTENSIONS`), which a scan
    leaves out (`tagger.library.plan.plan_files`): a shell's ``~/Music/*`` names the notes and covers
    beside the folders."""


def crawl(
    roots: Iterable[str | os.PathLike],
    *,
    include_hidden: bool = False,
    follow_external_symlinks: bool = False,
    report: CrawlReport | None = None,
) -> Iterator[Path]:
    """Yield the absolute paths of the audio files under `roots` (files given directly are yielded as is).

    Raises `UserError` for a root that does not exist. `report`, when given, collects the folders
    that could not be listed, the external links not followed and leftover tag-write temp files.

    The steps: `_Walk.start` (the roots' real folders, the kernel's mounts a walk can reach, a root
    on one of them refused), `_Walk.root` for each root, `_Walk.linked_folders` (folders reached
    only through a link), `_Walk.linked_files` (links to files the walk did not reach by name).
    """
    report = report if report is not None else CrawlReport()
    roots = [Path(paths.absolute(os.path.expanduser(os.fspath(r)))) for r in roots]
    walk = _Walk.start(roots, include_hidden=include_hidden, follow_external_symlinks=follow_external_symlinks,
                       report=report)  # fmt: skip
    for root in roots:
        yield from walk.root(root)
    yield from walk.linked_folders()
    yield from walk.linked_files()


@dataclass
class _Walk:
    """The state one `crawl` shares between its steps: what it was asked, what it has met."""

    include_hidden: bool
    follow_external_symlinks: bool
    report: CrawlReport
    inside: list[str]
    """The real paths of the folders to scan."""
    mounts: dict[str, str]
    """`system_mounts`, or empty when no kernel's file system can be reached (no look-up on the way)."""
    seen_dirs: set[tuple[int, int]] = field(default_factory=set)
    seen_files: set[str] = field(default_factory=set)
    found: list[str] = field(default_factory=list)
    """The files yielded under their own name."""
    links: list[str] = field(default_factory=list)
    """Links to files inside the scanned folders: yielded after the walk, if still new."""
    external_targets: set[str] = field(default_factory=set)
    """The real paths of the files reached through links out of the scanned folders (only with
    ``follow_external_symlinks``): a second link to one of them is the same file, left out."""
    folder_links: list[str] = field(default_factory=list)
    """Links to folders inside the scanned folders: walked after the folders themselves, and only
    when their folder was not reached (a hidden one), so that a file is found under its real path
    even where a link to its folder sorts first (`alink -> real`)."""

    @classmethod
    def start(cls, roots: list[Path], *, include_hidden: bool, follow_external_symlinks: bool,
              report: CrawlReport) -> _Walk:  # fmt: skip
        """Decide which folders are inside the scan and whether the kernel's file systems must be
        looked for on the way (one of their mounts lies under a scanned folder, or external links
        are followed); raise `UserError` for a root that lies on one of them."""
        inside = [os.path.realpath(r) for r in roots if r.is_dir()]
        every_mount = system_mounts()
        for root in roots:
            refuse_system_root(root, every_mount)
        reachable = follow_external_symlinks or any(
            kind in SYSTEM_FS_TYPES and is_under(point, inside) for point, kind in every_mount.items()
        )
        return cls(include_hidden, follow_external_symlinks, report, inside, every_mount if reachable else {})

    def system(self, path: str, here: str | None = None) -> bool:
        """The folder or file ``path`` is the kernel's: never entered nor read (``/proc`` under a
        scanned ``/``, a link to ``/proc/kmsg``). ``here``: the real path of its folder, which lies
        on no such file system (the walk never enters one): a name there that is no link is one of
        them only when it is a mount point (a look-up in the table, not a walk up its path)."""
        if not self.mounts:
            return False
        if here is not None and not os.path.islink(path):
            kind = self.mounts.get(os.path.join(here, os.path.basename(path)))
            kind = kind if kind in SYSTEM_FS_TYPES else None
        else:
            kind = system_folder(os.path.realpath(path), self.mounts)
        if kind is not None:
            log.info("not entering %s: the kernel's %s file system, not files", path, kind)
        return kind is not None

    def allowed(self, path: str) -> bool:
        """A symbolic link may be followed: it stays inside a scanned folder, or we were asked to."""
        if self.follow_external_symlinks or not os.path.islink(path):
            return True
        target = os.path.realpath(path)
        if is_under(target, self.inside):
            return True
        log.info("not following %s: it points outside the scanned folders (to %s)", path, target)
        self.report.external_links.append(path)
        return False

    def walk_error(self, exc: OSError) -> None:
        """A folder that cannot be listed: logged and reported, its files not seen."""
        reason = exc.strerror or str(exc)
        log.info("cannot list %s: %s", exc.filename, reason)  # (reported by the caller: scan, predict)
        self.report.unreadable.append((os.fsdecode(exc.filename) if exc.filename is not None else "?", reason))

    def root(self, root: Path) -> Iterator[Path]:
        """A root given as a file is yielded as is (once); a folder is walked; anything else is a
        `UserError`."""
        if root.is_file():
            if str(root) not in self.seen_files:
                self.seen_files.add(str(root))
                if self.follow_external_symlinks and self.second_external_root(root):
                    return
                self.found.append(str(root))
                yield root
            return
        if not root.exists():
            raise UserError(f"no such file or folder: {root}")
        if not root.is_dir():
            raise UserError(f"{root}: not a folder nor a regular file")
        yield from self.walk(str(root))

    def linked_folders(self) -> Iterator[Path]:
        """Walk the folders met through links (a folder reached through a link may hold links of
        its own); `walk` skips those whose folder was reached already."""
        while self.folder_links:
            yield from self.walk(self.folder_links.pop(0))

    def walk(self, top: str) -> Iterator[Path]:
        """Walk ``top`` in name order, each folder once (by device and inode), yielding the audio
        files found under their own name; links to files and folders of the library are set aside."""
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True, onerror=self.walk_error):
            try:
                st = os.stat(dirpath)
            except OSError:
                dirnames[:] = []
                continue
            key = (st.st_dev, st.st_ino)
            if key in self.seen_dirs:
                dirnames[:] = []  # a symlink loop or a folder reached twice
                continue
            self.seen_dirs.add(key)
            here = os.path.realpath(dirpath)
            dirnames[:] = self.subfolders(dirpath, dirnames, here)
            outside = here if self.follow_external_symlinks and not is_under(here, self.inside) else None
            yield from self.files(dirpath, filenames, outside)

    def subfolders(self, dirpath: str, dirnames: list[str], here: str) -> list[str]:
        """The subfolders of ``dirpath`` (whose real path is ``here``) to walk, in name order: not
        hidden (unless asked), no loop, no external link (unless asked), not the kernel's; links to
        folders of the library are set aside in `folder_links`."""
        dirnames = sorted(
            d for d in dirnames
            if (self.include_hidden or not d.startswith(".")) and not _loops(os.path.join(dirpath, d), here)
            and self.allowed(os.path.join(dirpath, d))
            and not self.system(os.path.join(dirpath, d), here)
        )  # fmt: skip
        for d in [d for d in dirnames if _internal_link(os.path.join(dirpath, d), self.inside)]:
            dirnames.remove(d)
            self.folder_links.append(os.path.join(dirpath, d))
        return dirnames

    def files(self, dirpath: str, filenames: list[str], outside: str | None = None) -> Iterator[Path]:
        """The audio files among ``filenames`` (of ``dirpath``), in name order: temp files of tag
        writes reported, hidden files skipped (unless asked), a file seen before, an external link
        (unless asked) or a link to the kernel's files skipped, links to files of the library set
        aside in `links`. ``outside``: the real path of ``dirpath`` where links led it out of the
        scanned folders (`second_external_name`)."""
        for name in sorted(filenames):
            if paths.is_temp_name(name):
                self.report.temp_files.append(os.path.join(dirpath, name))
                continue
            if not self.include_hidden and name.startswith(".") or paths.is_kept_name(name):
                continue  # (a file a tag write kept, not put back: the user's to look at, never tagged)
            if os.path.splitext(name)[1].lower() in NON_AUDIO_EXTENSIONS:
                continue  # (by its name alone: a link out, a cover or a rip log, is then not reported as unfollowed)
            path = os.path.join(dirpath, name)
            if path in self.seen_files or not os.path.isfile(path) or not self.allowed(path):
                continue
            if self.mounts and os.path.islink(path) and self.system(path) or not is_audio_file(path):
                continue
            self.seen_files.add(path)
            if self.follow_external_symlinks and self.second_external_name(path, outside):
                continue
            if os.path.islink(path) and is_under(os.path.realpath(path), self.inside):
                self.links.append(path)
                continue
            self.found.append(path)
            yield Path(path)

    def second_external_name(self, path: str, outside: str | None = None) -> bool:
        """Whether ``path`` leads through links out of the scanned folders (the file, or a folder on
        its way) to a file reached so before under another name: two links to one file outside were
        two tracks, each analysed, and a tag write through one made the others fail as changed
        while they were analysed. The first name the walk reaches is scanned; the others are left out.
        ``outside``: the real path of the file's folder where that lies outside the scanned folders
        (`walk` resolves each folder once): a file that is no link is resolved only there (a
        `os.path.realpath` of every file doubled the crawl of a library of 100,000 files)."""
        if os.path.islink(path):
            target = os.path.realpath(path)
            if is_under(target, self.inside):
                return False
        elif outside is None:
            return False
        else:
            target = os.path.join(outside, os.path.basename(path))
        return self.reached_before(target)

    def second_external_root(self, root: Path) -> bool:
        """`second_external_name` for a file given as a root, outside the scanned folders: one
        reached before through a link (``scan ~/Music ~/Downloads/x.flac``, ``~/Music`` holding a
        link to it) is left out; its real path is recorded for the links the walk meets after it."""
        target = os.path.realpath(root)
        return not is_under(target, self.inside) and self.reached_before(target)

    def reached_before(self, target: str) -> bool:
        """Whether the file outside the scanned folders whose real path is ``target`` was reached
        before (`external_targets`); it is recorded as reached."""
        if target in self.external_targets:
            return True
        self.external_targets.add(target)
        return False

    def linked_files(self) -> Iterator[Path]:
        """A link to a file of the library is the same file under a second name: scanned once, under
        the file's own name (a tag write through the link would change that file while it waits for
        its turn), unless the walk did not reach the file itself (a hidden folder). The files found
        are told apart by inode only when there are such links (no second stat of every file
        otherwise)."""
        yielded: set[tuple[int, int]] = set()
        for path in self.found if self.links else ():
            with contextlib.suppress(OSError):
                st = os.stat(path)
                yielded.add((st.st_dev, st.st_ino))
        for path in self.links:
            try:
                st = os.stat(path)
            except OSError:
                continue  # gone since: nothing to scan
            if (st.st_dev, st.st_ino) not in yielded:
                yielded.add((st.st_dev, st.st_ino))
                yield Path(path)


def is_under(target: str, folders: Iterable[str]) -> bool:
    """True when the (real) path `target` is one of `folders` (real paths) or lies under one."""
    return under_any(target, folders)


def external_link_target(path: str | os.PathLike, roots: Iterable[str | os.PathLike]) -> str | None:
    """Where `path` really is, when symbolic links (the file itself or a folder on its way) lead it
    outside every one of `roots` (files or folders); None when it stays inside (or has no links).

    The rule of `crawl`, for commands given a list of files: a write must not land outside the
    folders it was given unless asked to (``--follow-external-symlinks``).
    """
    target = os.path.realpath(path)
    if target == os.path.abspath(path):
        return None  # no link on the way
    if is_under(target, [os.path.realpath(r) for r in roots]):
        return None
    return target


def _internal_link(path: str, inside: list[str]) -> bool:
    """True for a symlink to a folder inside the scanned folders (``inside``: their real paths)."""
    return os.path.islink(path) and is_under(os.path.realpath(path), inside)


def _loops(path: str, here: str) -> bool:
    """True for a symlink to a folder that contains `here` (following it would walk in circles)."""
    if not os.path.islink(path):
        return False
    target = os.path.realpath(path)
    return paths.is_under(here, target)
