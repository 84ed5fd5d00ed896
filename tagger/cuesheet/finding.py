"""The cue sheet of an audio file found (`tagger.cuesheet`): `find_cue_sheet` looks for a ``.cue``
beside it that names it (each folder's ``.cue`` files listed and read once: `_folder_cues`,
`_CueFile`, read in each code page that may name the file), else one in the folder above that names it
in its folder (`_in_the_folder_above`: ``FILE "CD1/Album.flac"``), else one named as it is, else the
cue sheet it embeds (`tagger.cuesheet.embedded`); `may_have_cue_file`, whether a ``.cue`` beside it
or above it would count."""

from __future__ import annotations

import os

from tagger.cuesheet.embedded import _embedded
from tagger.cuesheet.parsing import _Line, _file_folder, _file_name, _lines, _parse
from tagger.cuesheet.reading import OTHER_CODE_PAGES, _read_cue_file, _unicode, decode_cue
from tagger.cuesheet.sheet import CueSheet, CueSheetError


def find_cue_sheet(path: str | os.PathLike, *, folders: dict | None = None) -> CueSheet | None:
    """The cue sheet of the audio file at ``path``, or None when it has none (or one of fewer than two
    tracks there: a file of one track, not an album image): a ``.cue`` beside it that names it, else
    one in the folder above that names it in its folder (``FILE "CD1/Album.flac"``), else one named
    as it is whose ``FILE`` names a file not there, else the one it embeds. Raises `CueSheetError`
    for a cue sheet that names the file but cannot be used (and for a ``.cue`` named as the file is
    that cannot be read as one). ``folders``: a dict kept over many calls (``query --cue-tracks``), in which each
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
        return _album_image(sheet)
    sheet = _in_the_folder_above(folder, name, folders)
    if sheet is not None:
        return _album_image(sheet)
    for cue in cues:  # (one named as the file whose FILE names a file not there: the image renamed since)
        if cue.stem == stem and cue.error is None and len(cue.files) == 1:
            (named,) = cue.files
            if os.path.splitext(named)[0].casefold() not in stems:
                sheet = _parse(cue.lines, source=cue.path, audio_name=None)
                sheet = CueSheet(sheet.source, sheet.title, sheet.performer, sheet.tracks,
                                 notes=(f"its FILE line names {named!r}, which is not in the folder: read as this "
                                        "file's (renamed since the rip?)",))  # fmt: skip
                return _album_image(sheet)
    sheet = _embedded(path)
    return None if sheet is None else _album_image(sheet)


def _album_image(sheet: CueSheet) -> CueSheet | None:
    """``sheet`` where it gives the file two tracks or more (a hidden track 0 not counted), else None:
    a file of one track is no album image."""
    return sheet if sum(not t.hidden for t in sheet.tracks) > 1 else None


def _folder_above(folder: str) -> tuple[str, str] | None:
    """The folder above ``folder`` (as given: no link resolved) and ``folder``'s own name in it; None
    for the root."""
    here = os.path.abspath(folder or os.curdir)
    up, name = os.path.split(here)
    return (up, name) if name else None


def _in_the_folder_above(folder: str, name: str, folders: dict | None) -> CueSheet | None:
    """The cue sheet in the folder above ``folder`` whose ``FILE`` line names the file ``name`` in
    ``folder`` (``FILE "CD1/Album.flac"`` or ``"CD1\\Album.flac"`` in ``Album/Album.cue`` for
    ``Album/CD1/Album.flac``: one sheet for the discs of an album); of several, the one naming it
    exactly, then the first by name, a note naming the others. No higher: a sheet two folders up is
    not looked for."""
    above = _folder_above(folder)
    if above is None:
        return None
    up, here = above
    candidates = []
    for cue in _folder_cues(up, folders)[0]:
        found = None if cue.error is not None else cue.naming(name, folder=here)
        if found is not None:
            candidates.append((found[0], cue.entry, cue.path, found[1]))
    if not candidates:
        return None
    candidates.sort(key=lambda c: c[:2])
    _, _, cue, lines = candidates[0]
    sheet = _parse(lines, source=cue, audio_name=name, folder=here)
    others = [c[2] for c in candidates[1:]]
    if others:
        sheet = CueSheet(sheet.source, sheet.title, sheet.performer, sheet.tracks,
                         notes=(f"{len(others)} other cue sheet(s) name this file too, not read: " + ", ".join(others),))  # fmt: skip
    return sheet


class _CueFile:
    """A ``.cue`` file of the folder: read once, its ``FILE`` names under each reading of its bytes."""

    def __init__(self, folder: str, entry: str):
        self.entry = entry
        self.path = os.path.join(folder, entry)
        self.stem = os.path.splitext(entry)[0].casefold()
        self.error: CueSheetError | None = None
        self._data: bytes | None = None
        self._readings: list[_Reading] | None = None
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

    def naming(self, name: str, *, folder: str | None = None) -> tuple[int, list[_Line]] | None:
        """``(rank, lines)`` of the first reading whose ``FILE`` lines name ``name`` (`_match`'s rank:
        0 the name, 1 the same name with another extension), or None when none does. With ``folder``
        (this cue sheet in the folder above it), the lines that name ``name`` in ``folder``
        (``CD1/Album.flac``)."""
        key = "" if folder is None else folder.casefold() + "/"
        for lines, names, stems in self._all():
            if key + name.casefold() in names:
                return 0, lines
            if key + os.path.splitext(name)[0].casefold() in stems:
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


_Reading = tuple[list[_Line], set[str], set[str]]


def _reading(lines: list[_Line]) -> _Reading:
    """A reading of a cue sheet: its lines, and its ``FILE`` lines' names and their stems (case folded),
    each as a bare name and, for a name in a folder (``CD1\\Album.flac``), as ``cd1/album.flac`` too."""
    names = set()
    for line in lines:
        if line.command == "FILE":
            name, folder = _file_name(line.args).casefold(), _file_folder(line.args)
            names.add(name)
            if folder is not None:
                names.add(folder.casefold() + "/" + name)
    return lines, names, {os.path.splitext(n)[0] for n in names}


def may_have_cue_file(path: str | os.PathLike, *, folders: dict | None = None) -> bool:
    """Whether a ``.cue`` beside the file at ``path`` names it or is named as it is, or one in the
    folder above names it in its folder (what `find_cue_sheet` would take, or refuse with its
    reason); its embedded cue sheet not looked at.
    Cheap with ``folders`` (each folder's ``.cue`` files read once): the test that spares ``query
    --cue-tracks`` the rest for the files of a folder that no cue sheet names."""
    folder, name = os.path.split(os.fspath(path))
    stem = os.path.splitext(name)[0].casefold()
    if any(cue.stem == stem or (cue.error is None and cue.naming(name) is not None) for cue in _folder_cues(folder, folders)[0]):
        return True
    above = _folder_above(folder)
    return above is not None and any(cue.error is None and cue.naming(name, folder=above[1]) is not None
                                     for cue in _folder_cues(above[0], folders)[0])  # fmt: skip


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
