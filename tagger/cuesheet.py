"""The cue sheet of an album image: one audio file holding a whole CD (``Album.flac``) and the
cue sheet that says where its tracks start (EAC, foobar2000, XLD).

`find_cue_sheet` looks, in this order, for

- a ``.cue`` file in the audio file's folder whose ``FILE`` line names it: the same name in any case,
  or the same name with another extension (``FILE "Album.wav" WAVE`` for the FLAC the WAV became);
  of several, the one named as the audio file is (``Album.cue``), then the first by name;
- the ``.cue`` named as the audio file whose one ``FILE`` line names a file of which the folder has
  nothing of that name (``FILE "CDImage.wav"``: the image and its cue sheet renamed since the rip);
- the cue sheet embedded in a FLAC file: a ``CUESHEET`` Vorbis comment (the text of a ``.cue``), else
  a FLAC CUESHEET metadata block (track starts and numbers; no titles); or the ``Cuesheet`` item of
  the APEv2 tag of a Monkey's Audio, WavPack, TTA, TAK or Musepack file (`APE_TAG_EXTENSIONS`).

Each track starts at its ``INDEX 01`` (mm:ss:ff, 75 frames a second) and ends where the next one
starts (the gap before a track, its ``INDEX 00``, belongs to the track before, as EAC's "gaps
appended to previous track" and most splitters have it); the last one ends at the end of the file.
Text is read as UTF-8 (with or without a byte order mark), UTF-16 with a byte order mark, else in the
Windows code page whose reading of a ``FILE`` line names the audio file (`OTHER_CODE_PAGES`), else as
Windows-1252 (Latin-1 where that has no letter for a byte).

The reader only reads: it writes neither the audio file nor the cue sheet. It imports nothing
beyond the standard library, so that ``tagger show`` stays fast (the FLAC metadata is read here,
without mutagen). A cue sheet that cannot be used raises `CueSheetError` naming it and the reason;
callers report it and treat the file as one track.
"""

from __future__ import annotations

import os
import re
import stat
import struct
from dataclasses import dataclass, field

from tagger.errors import TaggerError

FRAMES_PER_SECOND = 75
"""A CD frame (sector) is 1/75 s: the ``ff`` of a cue sheet's ``mm:ss:ff``."""

MAX_CUE_BYTES = 1 << 20
"""A cue sheet is a few kilobytes; a ``.cue`` larger than this is no cue sheet (nor read whole)."""

MAX_FLAC_METADATA = 64 << 20
"""How far into a FLAC file its metadata blocks are followed (cover pictures are skipped, not read)."""

_FLAC_STREAMINFO, _FLAC_VORBIS_COMMENT, _FLAC_CUESHEET = 0, 4, 5
_LEAD_OUT = (170, 255)
"""The lead-out's track number in a FLAC CUESHEET block: 170 for a CD, 255 otherwise."""


class CueSheetError(TaggerError):
    """A cue sheet that cannot be used: ``source`` names it (the ``.cue``, or the FLAC file with
    the kind of embedded cue sheet), ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass(frozen=True)
class CueTrack:
    number: int
    title: str | None
    performer: str | None
    start: float
    """Seconds from the start of the file (its ``INDEX 01``)."""
    end: float | None
    """Where the next track starts; None for the last track (the end of the file)."""


@dataclass(frozen=True)
class CueSheet:
    source: str
    """The ``.cue`` file, or ``FILE (embedded CUESHEET comment)`` / ``FILE (embedded CUESHEET block)``."""
    title: str | None
    performer: str | None
    tracks: tuple[CueTrack, ...]
    notes: tuple[str, ...] = field(default=())
    """What the reader has to say that does not stop it (another cue sheet naming the file, left out)."""


def find_cue_sheet(path: str | os.PathLike, *, folders: dict | None = None) -> CueSheet | None:
    """The cue sheet of the audio file at ``path``, or None when it has none (or one of fewer than two
    tracks there: a file of one track, not an album image). Raises `CueSheetError` for a cue sheet
    that names the file but cannot be used (and for a ``.cue`` named as the file is that cannot be
    read as one). ``folders``: a dict kept over many calls (``query --cue-tracks``), in which each
    folder's ``.cue`` files are listed and read once."""
    path = os.fspath(path)
    folder, name = os.path.split(path)
    stem = os.path.splitext(name)[0].casefold()
    candidates = []
    cues, stems = _folder_cues(folder, folders)
    for cue in cues:
        own = cue.stem == stem
        if cue.error is not None:
            if own:  # (a cue sheet named as the file, which cannot be read: the user expects it to count)
                raise cue.error
            continue
        found = cue.naming(name)
        if found is not None:
            candidates.append((found[0], not own, cue.entry, cue.path, found[1]))
    if candidates:
        candidates.sort(key=lambda c: c[:3])
        _, _, _, cue, lines = candidates[0]
        others = [c[3] for c in candidates[1:]]
        sheet = _parse(lines, source=cue, audio_name=name)
        if others:
            sheet = CueSheet(sheet.source, sheet.title, sheet.performer, sheet.tracks,
                             notes=(f"{len(others)} other cue sheet(s) name this file too, not read: "
                                    + ", ".join(others),))  # fmt: skip
        return sheet if len(sheet.tracks) > 1 else None
    for cue in cues:  # (one named as the file whose FILE names a file not there: the image renamed since)
        if cue.stem == stem and cue.error is None and len(cue.files) == 1:
            (named,) = cue.files
            if os.path.splitext(named)[0].casefold() not in stems:
                sheet = _parse(cue.lines, source=cue.path, audio_name=None)
                sheet = CueSheet(sheet.source, sheet.title, sheet.performer, sheet.tracks,
                                 notes=(f"its FILE line names {named!r}, which is not in the folder: read as this "
                                        "file's (renamed since the rip?)",))  # fmt: skip
                return sheet if len(sheet.tracks) > 1 else None
    sheet = _embedded(path)
    return sheet if sheet is not None and len(sheet.tracks) > 1 else None


OTHER_CODE_PAGES = ("cp1251", "cp932", "cp936", "cp950", "cp949", "cp1250", "cp1253", "cp1254", "cp1255",
                    "cp1256", "cp1257", "cp874", "cp1258")  # fmt: skip
"""The Windows code pages besides Windows-1252 that a cue sheet neither UTF-8 nor UTF-16 may be written in
(EAC and foobar2000 write the system's: Cyrillic, Japanese, Simplified and Traditional Chinese, Korean,
Central European, Greek, Turkish, Hebrew, Arabic, Baltic, Thai, Vietnamese). One of them is taken
where its reading of a ``FILE`` line names the audio file and Windows-1252's does not."""


class _CueFile:
    """A ``.cue`` file of the folder: read once, its ``FILE`` names under each reading of its bytes."""

    def __init__(self, folder: str, entry: str):
        self.entry = entry
        self.path = os.path.join(folder, entry)
        self.stem = os.path.splitext(entry)[0].casefold()
        self.error: CueSheetError | None = None
        self._data: bytes | None = None
        self._readings: list[tuple[list[_Line], set[str], set[str]]] | None = None
        try:
            self._data = _read_cue_file(self.path)
            self._first = _reading(_lines(decode_cue(self._data), self.path))
        except CueSheetError as exc:
            self.error = exc

    @property
    def lines(self) -> list[_Line]:
        """Its lines as read first (UTF-8, UTF-16 or Windows-1252)."""
        return self._first[0]

    @property
    def files(self) -> list[str]:
        """The distinct names its ``FILE`` lines give (as read first), in their order."""
        return list(dict.fromkeys(_file_name(line.args) for line in self.lines if line.command == "FILE"))

    def naming(self, name: str) -> tuple[int, list[_Line]] | None:
        """``(rank, lines)`` of the first reading whose ``FILE`` lines name ``name`` (`_match`'s rank:
        0 the name, 1 the same name with another extension), or None when none does."""
        for lines, names, stems in self._all():
            if name.casefold() in names:
                return 0, lines
            if os.path.splitext(name)[0].casefold() in stems:
                return 1, lines
        return None

    def _all(self):
        yield self._first
        if self._readings is None:  # (the other code pages: only for bytes that are neither UTF-8 nor UTF-16)
            self._readings = []
            if not _unicode(self._data):
                for encoding in OTHER_CODE_PAGES:
                    try:
                        self._readings.append(_reading(_lines(self._data.decode(encoding), self.path)))
                    except (UnicodeDecodeError, CueSheetError):
                        pass
        yield from self._readings


def _reading(lines: list[_Line]) -> tuple[list[_Line], set[str], set[str]]:
    """A reading of a cue sheet: its lines, and its ``FILE`` lines' names and their stems (case folded)."""
    names = {_file_name(line.args).casefold() for line in lines if line.command == "FILE"}
    return lines, names, {os.path.splitext(n)[0] for n in names}


def may_have_cue_file(path: str | os.PathLike, *, folders: dict | None = None) -> bool:
    """Whether a ``.cue`` beside the file at ``path`` names it or is named as it is (what
    `find_cue_sheet` would take, or refuse with its reason); its embedded cue sheet not looked at.
    Cheap with ``folders`` (each folder's ``.cue`` files read once): the test that spares ``query
    --cue-tracks`` the rest for the files of a folder that no cue sheet names."""
    folder, name = os.path.split(os.fspath(path))
    stem = os.path.splitext(name)[0].casefold()
    return any(cue.stem == stem or (cue.error is None and cue.naming(name) is not None)
               for cue in _folder_cues(folder, folders)[0])  # fmt: skip


def _folder_cues(folder: str, folders: dict | None = None) -> tuple[list[_CueFile], set[str]]:
    """The folder's ``.cue`` files, and the stems of its other entries (case folded)."""
    if folders is not None and folder in folders:
        return folders[folder]
    try:
        entries = sorted(os.listdir(folder or "."))
    except OSError:
        entries = []
    cues = [_CueFile(folder, entry) for entry in entries if entry.casefold().endswith(".cue")]
    found = cues, {os.path.splitext(e)[0].casefold() for e in entries if not e.casefold().endswith(".cue")}
    if folders is not None:
        folders[folder] = found
    return found


def parse_cue_text(text: str, *, source: str, audio_name: str | None = None) -> CueSheet:
    """The tracks a cue sheet's text gives the file ``audio_name`` (every track when None: an
    embedded cue sheet, whose FILE line may name anything). Raises `CueSheetError`."""
    return _parse(_lines(text, source), source=source, audio_name=audio_name)


def _unicode(data: bytes) -> bool:
    """Whether a cue sheet's bytes are UTF-8 or UTF-16 with a byte order mark (`decode_cue` reads them
    as such), not text of a code page."""
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def decode_cue(data: bytes) -> str:
    """A cue sheet's bytes as text: UTF-8 (a byte order mark dropped), UTF-16 with a byte order
    mark, else Windows-1252 (the bytes it has no letter for read as Latin-1)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16", errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return "".join(_cp1252_or_latin1(data))


def _cp1252_or_latin1(data: bytes):
    for b in data:
        try:
            yield bytes([b]).decode("cp1252")
        except UnicodeDecodeError:
            yield chr(b)


def _regular(path: str) -> bool:
    """Whether ``path`` is a regular file (a FIFO or a device would keep `open` waiting)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _read_cue_file(cue: str) -> bytes:
    if not _regular(cue):
        raise CueSheetError(cue, "not a regular file")
    try:
        with open(cue, "rb") as f:
            data = f.read(MAX_CUE_BYTES + 1)
    except OSError as exc:
        raise CueSheetError(cue, f"cannot be read ({exc.strerror or exc})") from None
    if len(data) > MAX_CUE_BYTES:
        raise CueSheetError(cue, f"larger than {MAX_CUE_BYTES // 1024} KiB: not a cue sheet")
    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise CueSheetError(cue, "holds NUL bytes: not a text file")
    return data


@dataclass(frozen=True)
class _Line:
    number: int
    command: str
    args: str


_LINE_BREAK = re.compile(r"\r\n|\r|\n")
"""A cue sheet's line breaks (not `str.splitlines`'s others: a form feed or U+2028 in a title is part of it)."""


def _lines(text: str, source: str) -> list[_Line]:
    lines = []
    for i, raw in enumerate(_LINE_BREAK.split(text), 1):
        raw = raw.strip().lstrip("\ufeff")
        if not raw:
            continue
        command, *rest = raw.split(None, 1)  # (a tab after the command word too: TRACK\t01 AUDIO)
        lines.append(_Line(i, command.upper(), rest[0].strip() if rest else ""))
    if not any(line.command == "TRACK" for line in lines):
        raise CueSheetError(source, "no TRACK line: not a cue sheet")
    return lines


def _unquoted(args: str) -> str:
    """A cue sheet string: between its quotes when quoted (what follows the closing quote is the
    FILE line's type), else the first word."""
    if args.startswith('"'):
        end = args.rfind('"')
        return args[1:end] if end > 0 else args[1:]
    return args.split()[0] if args else ""


def _file_name(args: str) -> str:
    if args.startswith('"'):
        end = args.find('"', 1)
        name = args[1:end] if end > 0 else args[1:]
    else:  # FILE name TYPE
        name = args.rsplit(None, 1)[0] if len(args.split()) > 1 else args
    return re.split(r"[\\/]", name)[-1]  # (a Windows path in an EAC cue sheet: C:\rips\Album.wav)


def _match(file_line: str, audio_name: str) -> int | None:
    """0: the FILE line names the file (in any case); 1: the same name with another extension; None."""
    named = _file_name(file_line).casefold()
    if named == audio_name.casefold():
        return 0
    if os.path.splitext(named)[0] == os.path.splitext(audio_name)[0].casefold():
        return 1
    return None


def _names(lines: list[_Line], audio_name: str) -> int | None:
    ranks = [r for r in (_match(line.args, audio_name) for line in lines if line.command == "FILE") if r is not None]
    return min(ranks) if ranks else None


_TIME = re.compile(r"^([0-9]{1,4}):([0-9]{1,2}):([0-9]{1,2})$")
_NUMBER = re.compile(r"^[0-9]{1,9}$")
"""A TRACK's or INDEX's number: ASCII digits (``str.isdigit`` takes a ``²`` that `int` refuses)."""


def _seconds(value: str, *, source: str, line: _Line) -> float:
    m = _TIME.match(value)
    if m is None:
        raise CueSheetError(source, f"line {line.number}: {value!r} is not a time (mm:ss:ff)")
    minutes, seconds, frames = (int(g) for g in m.groups())
    if seconds >= 60 or frames >= FRAMES_PER_SECOND:
        raise CueSheetError(source, f"line {line.number}: {value!r} is not a time (mm:ss:ff: seconds under 60, "
                                    f"frames under {FRAMES_PER_SECOND})")  # fmt: skip
    return minutes * 60 + seconds + frames / FRAMES_PER_SECOND


def _parse(lines: list[_Line], *, source: str, audio_name: str | None) -> CueSheet:
    title = performer = None
    tracks: list[dict] = []
    current: dict | None = None
    ours = audio_name is None  # (an embedded cue sheet: every FILE is this file)
    for line in lines:
        if line.command == "FILE":
            ours = audio_name is None or _match(line.args, audio_name) is not None
        elif line.command == "TRACK":
            parts = line.args.split()
            if not parts or not _NUMBER.match(parts[0]):
                raise CueSheetError(source, f"line {line.number}: TRACK without a track number"
                                            + (f" ({parts[0]!r} is none)" if parts else ""))  # fmt: skip
            current = {"number": int(parts[0]), "title": None, "performer": None, "start": None, "line": line,
                       "audio": len(parts) < 2 or parts[1].upper() == "AUDIO", "ours": ours}  # fmt: skip
            tracks.append(current)
        elif line.command in ("TITLE", "PERFORMER"):
            value = _unquoted(line.args) or None
            if current is not None:
                current[line.command.lower()] = value
            elif line.command == "TITLE":  # (before the first TRACK: the album's)
                title = value
            else:
                performer = value
        elif line.command == "INDEX" and current is not None:
            parts = line.args.split()
            if len(parts) != 2 or not _NUMBER.match(parts[0]):
                raise CueSheetError(source, f"line {line.number}: INDEX needs a number and a time")
            if int(parts[0]) == 1:  # (the FILE its INDEX 01 lies in holds the track: its gap may lie in the one before)
                current["ours"] = ours
                if ours:
                    current["start"] = _seconds(parts[1], source=source, line=line)
    ours_tracks = [t for t in tracks if t["ours"] and t["audio"]]
    for t in ours_tracks:
        if t["start"] is None:
            raise CueSheetError(source, f"line {t['line'].number}: track {t['number']:02d} has no INDEX 01 (where it starts)")
    for a, b in zip(ours_tracks, ours_tracks[1:]):
        if b["number"] <= a["number"]:
            raise CueSheetError(source, f"line {b['line'].number}: track {b['number']:02d} follows track {a['number']:02d}")
        if b["start"] <= a["start"]:
            raise CueSheetError(source, f"line {b['line'].number}: track {b['number']:02d} starts at {cue_clock(b['start'])}, "
                                        f"not after track {a['number']:02d} ({cue_clock(a['start'])})")  # fmt: skip
    result = tuple(CueTrack(t["number"], t["title"], t["performer"], t["start"], nxt["start"] if nxt else None)
                   for t, nxt in zip(ours_tracks, [*ours_tracks[1:], None]))  # fmt: skip
    return CueSheet(source, title, performer, result)


def cue_clock(seconds: float) -> str:
    """``mm:ss.ss``, as a cue sheet's times read."""
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:05.2f}"


def _embedded(path: str) -> CueSheet | None:
    """The cue sheet a FLAC file carries: its ``CUESHEET`` Vorbis comment, else its CUESHEET block; or
    the ``Cuesheet`` item of the APEv2 tag of a file of `APE_TAG_EXTENSIONS`; None for a file that
    holds none."""
    if not _regular(path):
        return None
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"fLaC":
                text = _ape_cuesheet(f) if path.casefold().endswith(APE_TAG_EXTENSIONS) else None
                return None if text is None else parse_cue_text(text, source=f"{path} (embedded APEv2 Cuesheet)")
            blocks = _flac_blocks(f)
    except OSError:
        return None  # (the file itself: `show` reads the database, the file may be gone or unreadable)
    comment = _vorbis_cuesheet(blocks.get(_FLAC_VORBIS_COMMENT))
    if comment is not None:
        return parse_cue_text(comment, source=f"{path} (embedded CUESHEET comment)")
    if _FLAC_CUESHEET in blocks and _FLAC_STREAMINFO in blocks:
        return _cuesheet_block(blocks[_FLAC_CUESHEET], blocks[_FLAC_STREAMINFO], source=f"{path} (embedded CUESHEET block)")
    return None


APE_TAG_EXTENSIONS = (".ape", ".wv", ".tta", ".tak", ".mpc")
"""The formats whose tags are APEv2, where foobar2000 embeds an image's cue sheet as a ``Cuesheet`` item
(Monkey's Audio, WavPack, TTA, TAK, Musepack)."""


def may_embed_cue_sheet(path: str | os.PathLike) -> bool:
    """Whether the file at ``path`` is of a format whose cue sheet `find_cue_sheet` reads from the file
    itself (FLAC, or a format of APEv2 tags, by its name)."""
    return os.fspath(path).casefold().endswith((".flac", *APE_TAG_EXTENSIONS))


def _ape_cuesheet(f) -> str | None:
    """The ``Cuesheet`` item of the APEv2 tag at the end of the file ``f`` (before an ID3v1 tag), as
    text (UTF-8); None where there is none."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    for tail in (0, 128):  # (an ID3v1 tag may follow the APEv2 tag)
        if end < tail + 32:
            return None
        f.seek(end - tail - 32)
        footer = f.read(32)
        if footer[:8] == b"APETAGEX":
            break
    else:
        return None
    _version, size, count, _flags = struct.unpack_from("<IIII", footer, 8)
    if size < 32 or size > MAX_CUE_BYTES * 16 or size > end - tail:
        return None
    f.seek(end - tail - size)
    items = f.read(size - 32)
    pos = 0
    try:
        for _ in range(count):
            n, _flags = struct.unpack_from("<II", items, pos)
            key_end = items.index(b"\0", pos + 8)
            key, value = items[pos + 8 : key_end], items[key_end + 1 : key_end + 1 + n]
            pos = key_end + 1 + n
            if key.lower() == b"cuesheet":
                return value.decode("utf-8", errors="replace") if len(value) <= MAX_CUE_BYTES else None
    except (struct.error, ValueError):
        return None
    return None


def _flac_blocks(f) -> dict[int, bytes]:
    """The STREAMINFO, VORBIS_COMMENT and CUESHEET blocks of a FLAC file read past its ``fLaC``."""
    found: dict[int, bytes] = {}
    pos = 4
    while pos < MAX_FLAC_METADATA:
        header = f.read(4)
        if len(header) < 4:
            break
        last, kind, size = header[0] & 0x80, header[0] & 0x7F, int.from_bytes(header[1:], "big")
        if kind in (_FLAC_STREAMINFO, _FLAC_VORBIS_COMMENT, _FLAC_CUESHEET) and kind not in found:
            found[kind] = f.read(size)
        else:
            f.seek(size, os.SEEK_CUR)
        pos += 4 + size
        if last:
            break
    return found


def _vorbis_cuesheet(block: bytes | None) -> str | None:
    if not block:
        return None
    try:
        (vendor,) = struct.unpack_from("<I", block, 0)
        pos = 4 + vendor
        (count,) = struct.unpack_from("<I", block, pos)
        pos += 4
        for _ in range(count):
            (n,) = struct.unpack_from("<I", block, pos)
            entry = block[pos + 4 : pos + 4 + n]
            pos += 4 + n
            key, eq, value = entry.partition(b"=")
            if eq and key.upper() == b"CUESHEET":
                return decode_cue(value)
    except struct.error:
        return None
    return None


def _cuesheet_block(block: bytes, streaminfo: bytes, *, source: str) -> CueSheet:
    """The tracks of a FLAC CUESHEET metadata block (offsets in samples; the lead-out left out)."""
    try:
        rate = int.from_bytes(streaminfo[10:13], "big") >> 4
        count = block[395]
        pos, starts = 396, []
        for _ in range(count):
            offset, number = struct.unpack_from(">QB", block, pos)
            n_index = block[pos + 35]
            pos += 36
            index01 = None
            for _ in range(n_index):
                ioffset, inumber = struct.unpack_from(">QB", block, pos)
                pos += 12
                if inumber == 1:
                    index01 = offset + ioffset
            if number not in _LEAD_OUT:
                if index01 is None:
                    raise CueSheetError(source, f"track {number:02d} has no index 01 (where it starts)")
                starts.append((number, index01))
    except (IndexError, struct.error):
        raise CueSheetError(source, "cut short: not a CUESHEET block") from None
    if not rate:
        raise CueSheetError(source, "the stream's sample rate is 0")
    for (a, sa), (b, sb) in zip(starts, starts[1:]):
        if b <= a or sb <= sa:
            raise CueSheetError(source, f"track {b:02d} does not follow track {a:02d}")
    tracks = tuple(CueTrack(n, None, None, s / rate, nxt / rate if nxt is not None else None)
                   for (n, s), nxt in zip(starts, [s for _, s in starts[1:]] + [None]))  # fmt: skip
    return CueSheet(source, None, None, tracks)
