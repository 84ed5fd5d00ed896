"""A cue sheet's bytes read and decoded (`tagger.cuesheet`): a ``.cue`` file read whole, refused where
it is no regular file, too large or not text (`_read_cue_file`, `MAX_CUE_BYTES`); its text as UTF-8,
UTF-16 with a byte order mark, else Windows-1252 (`decode_cue`), and the other Windows code pages a
cue sheet may be written in (`OTHER_CODE_PAGES`)."""

from __future__ import annotations

import os
import stat

from tagger.cuesheet.sheet import CueSheetError

MAX_CUE_BYTES = 1 << 20
"""A cue sheet is a few kilobytes; a ``.cue`` larger than this is no cue sheet (nor read whole)."""


OTHER_CODE_PAGES = ("cp1251", "cp932", "cp936", "cp950", "cp949", "cp1250", "cp1253", "cp1254", "cp1255",
                    "cp1256", "cp1257", "cp874", "cp1258")  # fmt: skip
"""The Windows code pages besides Windows-1252 that a cue sheet neither UTF-8 nor UTF-16 may be written in
(EAC and foobar2000 write the system's: Cyrillic, Japanese, Simplified and Traditional Chinese, Korean,
Central European, Greek, Turkish, Hebrew, Arabic, Baltic, Thai, Vietnamese). One of them is taken
where its reading of a ``FILE`` line names the audio file and Windows-1252's does not."""


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
