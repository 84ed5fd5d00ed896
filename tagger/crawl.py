"""Find the audio files under a folder.

The walk is recursive and follows symbolic links to folders inside the scanned folders, except a
link to a folder that holds the link (a loop), and never enters a folder twice (by device and
inode). A symbolic link (to a folder or a file) that points outside every scanned folder is not
followed unless ``follow_external_symlinks``: a scan then never reads, nor writes tags, outside the
library. Hidden folders and files (name starting with ".") are skipped unless asked for. Folders
that cannot be listed and leftover temporary files of interrupted tag writes are reported in a
`CrawlReport`; the crawler itself never writes anything. A file is audio when its extension says so (`tagger.audio.AUDIO_EXTENSIONS`)
or, for a file with another or no extension, when its first bytes carry a known audio signature
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
from tagger import paths
from tagger.errors import UserError
from tagger.paths import under_any

log = logging.getLogger(__name__)

NON_AUDIO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".txt", ".nfo", ".log", ".cue", ".m3u", ".m3u8",
     ".pls", ".pdf", ".db", ".ini", ".json", ".xml", ".html", ".sfv", ".md5", ".accurip", ".lrc", ".py", ".wvc"}
)  # fmt: skip
"""Extensions never sniffed (common companions of music files; a WavPack correction file, ``.wvc``,
starts with a WavPack block header but holds no audio of its own)."""

_ASF_GUID = bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")
_W64_GUID = b"riff" + bytes.fromhex("2e91cf11a5d628db04c1")  # Sony Wave64's first chunk


def sniff_audio(head: bytes) -> bool:
    """True when the first bytes of a file look like a known audio container."""
    if head.startswith((b"ID3", b"fLaC", b"OggS", b".snd", b"wvpk", b"MAC ", b"MPCK", b"MP+", b"TTA1", b"caff",
                        b"DSD ", b"FRM8")) or head.startswith((_ASF_GUID, _W64_GUID)):  # fmt: skip
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
    if ext in AUDIO_EXTENSIONS:
        return True
    if ext in NON_AUDIO_EXTENSIONS:
        return False
    try:
        with open(path, "rb") as f:
            return sniff_audio(f.read(16))
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
    """
    from tagger.paths import is_temp_name

    report = report if report is not None else CrawlReport()
    roots = [Path(os.path.abspath(os.path.expanduser(os.fspath(r)))) for r in roots]
    inside = [os.path.realpath(r) for r in roots if r.is_dir()]

    def allowed(path: str) -> bool:
        """A symbolic link may be followed: it stays inside a scanned folder, or we were asked to."""
        if follow_external_symlinks or not os.path.islink(path):
            return True
        target = os.path.realpath(path)
        if is_under(target, inside):
            return True
        log.info("not following %s: it points outside the scanned folders (to %s)", path, target)
        report.external_links.append(path)
        return False

    def walk_error(exc: OSError) -> None:
        reason = exc.strerror or str(exc)
        log.warning("cannot list %s: %s", exc.filename, reason)
        report.unreadable.append((os.fsdecode(exc.filename) if exc.filename is not None else "?", reason))

    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    found: list[str] = []  # the files yielded under their own name
    links: list[str] = []  # links to files inside the scanned folders: after the walk, if still new
    # Links to folders inside the scanned folders: walked after the folders themselves, and only
    # when their folder was not reached (a hidden one), so that a file is found under its real path
    # even where a link to its folder sorts first (`alink -> real`).
    folder_links: list[str] = []

    def walk(top: str) -> Iterator[Path]:
        for dirpath, dirnames, filenames in os.walk(top, followlinks=True, onerror=walk_error):
            try:
                st = os.stat(dirpath)
            except OSError:
                dirnames[:] = []
                continue
            key = (st.st_dev, st.st_ino)
            if key in seen_dirs:
                dirnames[:] = []  # a symlink loop or a folder reached twice
                continue
            seen_dirs.add(key)
            here = os.path.realpath(dirpath)
            dirnames[:] = sorted(
                d for d in dirnames
                if (include_hidden or not d.startswith(".")) and not _loops(os.path.join(dirpath, d), here)
                and allowed(os.path.join(dirpath, d))
            )  # fmt: skip
            for d in [d for d in dirnames if _internal_link(os.path.join(dirpath, d), inside)]:
                dirnames.remove(d)
                folder_links.append(os.path.join(dirpath, d))
            for name in sorted(filenames):
                if is_temp_name(name):
                    report.temp_files.append(os.path.join(dirpath, name))
                    continue
                if not include_hidden and name.startswith("."):
                    continue
                path = os.path.join(dirpath, name)
                if path in seen_files or not os.path.isfile(path) or not allowed(path) or not is_audio_file(path):
                    continue
                seen_files.add(path)
                if os.path.islink(path) and is_under(os.path.realpath(path), inside):
                    links.append(path)
                    continue
                found.append(path)
                yield Path(path)

    for root in roots:
        if root.is_file():
            if str(root) not in seen_files:
                seen_files.add(str(root))
                yield root
            continue
        if not root.exists():
            raise UserError(f"no such file or folder: {root}")
        if not root.is_dir():
            raise UserError(f"{root}: not a folder nor a regular file")
        yield from walk(str(root))
    while folder_links:  # (a folder reached through a link may hold links of its own)
        yield from walk(folder_links.pop(0))  # skipped by `walk` when its folder was reached
    # A link to a file of the library is the same file under a second name: scanned once, under the
    # file's own name (a tag write through the link would change that file while it waits for its
    # turn), unless the walk did not reach the file itself (a hidden folder). The files found are
    # told apart by inode only when there are such links (no second stat of every file otherwise).
    yielded: set[tuple[int, int]] = set()
    for path in found if links else ():
        with contextlib.suppress(OSError):
            st = os.stat(path)
            yielded.add((st.st_dev, st.st_ino))
    for path in links:
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
