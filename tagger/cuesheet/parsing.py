"""A cue sheet's text parsed into the tracks it gives a file (`tagger.cuesheet`): its lines
(`_lines`), the files its ``FILE`` lines name (`_file_name`, `_match`), each track's ``INDEX 01``
(`_seconds`) and the checks of their order (`_parse`, `parse_cue_text`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from tagger.cuesheet.sheet import FRAMES_PER_SECOND, CueSheet, CueSheetError, CueTrack, cue_clock, with_hidden_track


def parse_cue_text(text: str, *, source: str, audio_name: str | None = None) -> CueSheet:
    """The tracks a cue sheet's text gives the file ``audio_name`` (every track when None: an
    embedded cue sheet, whose FILE line may name anything). Raises `CueSheetError`."""
    return _parse(_lines(text, source), source=source, audio_name=audio_name)


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


def _file_path(args: str) -> str:
    """The name a ``FILE`` line gives, as written (a path, maybe)."""
    if args.startswith('"'):
        end = args.find('"', 1)
        return args[1:end] if end > 0 else args[1:]
    return args.rsplit(None, 1)[0] if len(args.split()) > 1 else args  # FILE name TYPE


def _file_name(args: str) -> str:
    return re.split(r"[\\/]", _file_path(args))[-1]  # (a Windows path in an EAC cue sheet: C:\rips\Album.wav)


def _file_folder(args: str) -> str | None:
    """The folder beside the cue sheet that a ``FILE`` line names its file in (``CD1`` of
    ``CD1/Album.flac``, ``CD1\\Album.flac`` or ``./CD1/Album.flac``: a sheet one folder above the
    image); None for a bare name, a path of more folders or an absolute one (``C:\\rips\\Album.wav``)."""
    parts = re.split(r"[\\/]", _file_path(args))
    if len(parts) < 2 or not parts[0] or ":" in parts[0]:
        return None
    parts = [part for part in parts if part not in ("", ".")]
    return parts[0] if len(parts) == 2 else None


def _match(file_line: str, audio_name: str, folder: str | None = None) -> int | None:
    """0: the FILE line names the file (in any case); 1: the same name with another extension; None.
    With ``folder`` (a cue sheet in the folder above the file's), only a FILE line naming the file in
    that folder (``CD1/Album.flac``) names it."""
    if folder is not None and (_file_folder(file_line) or "").casefold() != folder.casefold():
        return None
    named = _file_name(file_line).casefold()
    if named == audio_name.casefold():
        return 0
    if os.path.splitext(named)[0] == os.path.splitext(audio_name)[0].casefold():
        return 1
    return None


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


def _parse(lines: list[_Line], *, source: str, audio_name: str | None, folder: str | None = None) -> CueSheet:
    """The tracks of the ``FILE`` blocks that name ``audio_name`` (every track when None), in ``folder``
    where given (`_match`)."""
    title = performer = None
    tracks: list[dict] = []
    current: dict | None = None
    ours = audio_name is None  # (an embedded cue sheet: every FILE is this file)
    disc: str | None = None  # (the folder the FILE line names its file in: a disc's, in a sheet one folder above)
    for line in lines:
        if line.command == "FILE":
            ours = audio_name is None or _match(line.args, audio_name, folder) is not None
            disc = (_file_folder(line.args) or "").casefold()
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
                current["ours"], current["disc"] = ours, disc
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
    # (a track without its own PERFORMER is the album's: the one before the first TRACK)
    result = tuple(CueTrack(t["number"], t["title"], t["performer"] or performer, t["start"], nxt["start"] if nxt else None)
                   for t, nxt in zip(ours_tracks, [*ours_tracks[1:], None]))  # fmt: skip
    # (the sheet's first track, or where the sheet names discs in their folders (``folder``: CD1/, CD2/)
    # the disc's first: else the audio before is the gap of a track of the file before; another disc's
    # image holds none of this one's audio, and the audio before CD2's first track was in no track)
    audio = [t for t in tracks if t["audio"] and (folder is None or t.get("disc") == folder.casefold())]
    if ours_tracks and ours_tracks[0] is audio[0]:
        result = with_hidden_track(result, performer=performer)
    return CueSheet(source, title, performer, result)
