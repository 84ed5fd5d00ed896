"""WAV and AIFF (RIFF and FORM chunks): tagger's fields in an ``ID3`` chunk, an ID3v2 tag
(`tagger.tags.storage.id3`), found by walking the file's chunks as the audio is; the audio is the
``data``/``SSND`` chunk read as its ``fmt ``/``COMM`` chunk says. A WAV whose fields are in a
``LIST/INFO`` chunk alone, or beside an ID3 chunk without frames, gets them copied into it
(`WAVEStorage.info_frames`).
"""

from __future__ import annotations

import os
import re
import struct
from collections import Counter

from tagger.tags.storage._bytes import _hash_range
from tagger.tags.storage.base import Format, register
from tagger.tags.storage.id3 import ID3Storage, _id3_frame_ids


@register(Format("WAVE", "WAV", (".wav",)))
class WAVEStorage(ID3Storage):
    """WAV: an ID3 chunk; the audio is the ``data`` chunk, read as its ``fmt `` chunk says (both are
    hashed: the same samples under another rate or sample format are other audio)."""

    little, audio_chunk, format_chunk = True, b"data", b"fmt "

    def _chunks(self, f, end: int):
        """(id, data offset, declared data length) of each top-level chunk that starts before ``end``."""
        for cid, start, length, _next in self._walk(f, end):
            yield cid, start, length

    def _walk(self, f, end: int):
        """(id, data offset, declared data length, offset of the next chunk) of each top-level chunk
        that starts before ``end``. An odd-sized chunk is followed by a pad byte; where one lacks it
        (some writers leave it out: 8-bit or 24-bit mono with an odd number of samples, an odd text)
        and the next chunk starts right after its last byte, the next chunk is read there, as
        libsndfile and ffmpeg find the audio after such a chunk (`_pad_missing`)."""
        pos = 12
        while pos + 8 <= end:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI" if self.little else ">4sI", f.read(8))
            after = pos + 8 + clen
            nxt = after + 1 if clen & 1 and not self._pad_missing(f, after, end) else after
            yield cid, pos + 8, clen, nxt
            pos = nxt

    def _pad_missing(self, f, at: int, end: int) -> bool:
        """Whether the odd-sized chunk ending at ``at`` lacks its pad byte: the byte there is not 0,
        no chunk header starts after it (an id of 4 printable ASCII characters, a size that ends by
        ``end``: the pad byte of some writers is not 0) and one starts at it."""
        f.seek(at)
        head = f.read(9)
        if len(head) < 9 or head[0] == 0:
            return False

        def header(data: bytes, pos: int) -> bool:
            size = struct.unpack("<I" if self.little else ">I", data[4:8])[0]
            return all(32 <= c <= 126 for c in data[:4]) and pos + 8 + size <= end

        return not header(head[1:9], at + 1) and header(head[:8], at)

    def payload(self, f, size, h):
        # Each chunk's id and declared size too: the boundary between the format chunk and the audio
        # is part of what decodes (a format chunk grown by 2 bytes taken from the audio is other audio).
        # A RIFF (FORM) after the file's own is a second file joined byte-wise, whose audio is decoded
        # too (`tagger.audio.joined`): hashed whole (was: passed over, so that a joined WAV whose second
        # part was other audio read as the same file, its results kept).
        joined = b"RIFF" if self.little else b"FORM"
        found = False
        for cid, start, length in self._chunks(f, size):
            if cid == joined:
                h.update(cid + struct.pack(">Q", length))
                _hash_range(f, start, min(start + length, size), h)
            elif cid in (self.audio_chunk, self.format_chunk):
                h.update(cid + struct.pack(">Q", length))
                to_end = cid == self.audio_chunk and length in (0, 0xFFFFFFFF)
                _hash_range(f, start, size if to_end else min(start + length, size), h)
                found = found or cid == self.audio_chunk
                if to_end:  # a streaming writer's placeholder: read to the end of the file (0: ffmpeg a
                    break  # WAV's, libsndfile an AIFF's; 0xFFFFFFFF: both)
        return found

    def save(self, audio, path, *, version, original):
        with open(path, "r+b") as f:
            if self.id3_span(f, os.fstat(f.fileno()).st_size) is None:
                self._pad_odd_chunks(f)
        super().save(audio, path, version=version, original=original)

    def _pad_odd_chunks(self, f) -> None:
        """Give each odd-sized chunk of the open file ``f`` that lacks it the pad byte that should
        follow it (many writers leave it out), before mutagen adds its ID3 chunk after the last one:
        mutagen walks the chunks by their sizes and pad bytes, and finds nothing after such a chunk
        (nor the tag chunk it adds: `_walk`), nor after the last chunk where the file ends at an odd
        offset (its ID3 chunk would start there). The chunks after one move by a byte, each kept as
        it was; the RIFF/FORM size counts the pad bytes. The last chunk gets none where the
        RIFF/FORM size is not the file's (nor the file's and the missing pad byte), the file's
        without an ID3v1 tag appended after the chunks (`_load_id3`) counted as the file's: mutagen
        would take the tag's first byte for the pad byte and add its ID3 chunk inside the ID3v1 tag."""
        from mutagen._util import insert_bytes

        size = f.seek(0, os.SEEK_END)
        f.seek(0)
        head = f.read(8)
        if len(head) < 8:
            return
        fmt = "<I" if self.little else ">I"
        declared = struct.unpack(fmt, head[4:8])[0]
        end = self._chunks_end(f, size, declared)  # (before an ID3v1 tag appended after them, which stays last)
        chunks = list(self._walk(f, min(size, 8 + declared)))
        missing = [start + length for _cid, start, length, nxt in chunks[:-1] if nxt == start + length and length & 1]
        if chunks and declared in (end - 8, end - 7):
            _cid, start, length, _nxt = chunks[-1]
            if length & 1 and start + length == end:
                missing.append(end)
        # (a RIFF/FORM size one more than the chunks counts a missing pad byte already, whichever chunk lacks it)
        counted = int(bool(missing) and declared == end - 7)
        for at in reversed(missing):
            if at < size:
                insert_bytes(f, 1, at)
            f.seek(at)
            f.write(b"\0")
        if missing:
            f.seek(4)
            f.write(struct.pack(fmt, declared + len(missing) - counted))

    @staticmethod
    def _chunks_end(f, size: int, declared: int) -> int:
        """Where the chunks of the open file ``f`` (``size`` bytes, its RIFF/FORM chunk declaring
        ``declared``) end: before an ID3v1 tag appended after them (some tools do: `_load_id3`) where
        the RIFF/FORM chunk ends there (or a byte after, counting a missing pad byte), else ``size``."""
        if size >= 8 + 128 and declared + 8 in (size - 128, size - 127):
            f.seek(size - 128)
            if f.read(3) == b"TAG":
                return size - 128
        return size

    def id3_span(self, f, size):
        for cid, start, length in self._chunks(f, size):
            if cid.upper() == b"ID3 ":  # as mutagen finds it: the first one, either case
                return start, min(length, size - start)
        return None

    def info_shown(self, path: str) -> bool:
        """Whether TagLib shows the fields of the WAV file's ``LIST/INFO`` chunk: TagLib 2's property
        map shows the first of a WAV's tags that is not empty, the ID3 chunk's first, so it does where
        the file has no ID3 chunk, or one that holds no frame (an empty chunk, a tag of padding
        alone, as the frame headers in the file's bytes say). False for AIFF."""
        if not self.little:
            return False
        with open(path, "rb") as f:
            span = self.id3_span(f, os.fstat(f.fileno()).st_size)
            return span is None or span[1] == 0 or _id3_frame_ids(f, *span) == Counter()

    def info_frames(self, path: str) -> tuple[list, list[str]]:
        """The fields of the WAV file's ``LIST/INFO`` chunk that TagLib shows, as the ID3 frames it
        shows the same way, and the items it shows that no ID3 frame would show as they are (each
        named, with why). TagLib 2's property map shows a WAV's ID3 chunk alone once it has one
        that is not empty (`info_shown`): a tag write adds these frames to the ID3 chunk
        (`_load_id3` in `tagger.tags.formats`), as it copies an MP3's ID3v1 fields. Of two
        LIST/INFO chunks TagLib shows the first alone, the one copied (ffmpeg shows both, and
        ignores the ID3 chunk beside them). ([], []) for a file without such a chunk, and for AIFF."""
        if not self.little:
            return [], []
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            shown = b""
            for cid, start, length in self._chunks(f, size):
                if cid == b"LIST" and length >= 4:
                    f.seek(start)
                    if f.read(4) == b"INFO":
                        if length > _INFO_MOST:  # (a damaged size; read, it would be held in memory)
                            return [], [f"a LIST/INFO chunk of {length} bytes"]
                        shown = f.read(length - 4)
                        break
        frames, refused = [], []
        for item, text in _info_items(shown).items():
            name = item.decode("ascii")
            fid = _INFO_AS_ID3.get(item)
            if item in _INFO_NOT_COPIED:
                refused.append(f"{name} (TagLib's {_INFO_NOT_COPIED[item]})")
            elif fid == "TCON" and _taglib_reads_genre_otherwise(text):
                refused.append(f"{name} {text!r} (an ID3 genre number)")
            elif fid is not None:
                frame = _text_frame(fid, text)
                if fid == "TDRC" and str(frame) != text:
                    refused.append(f"{name} {text!r} (no ID3 date)")
                else:
                    frames.append(frame)
        return frames, refused

    def cannot_keep(self, audio, path, version):
        _frames, refused = self.info_frames(path) if self.info_shown(path) else ([], [])
        if refused:
            return ("its fields are in a LIST/INFO chunk, which TagLib shows no more once the file has an ID3 "
                    "chunk; tagger copies them into the ID3 chunk it adds, and cannot copy these as TagLib shows "
                    f"them: {', '.join(refused)}")  # fmt: skip
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            declared = struct.unpack("<I" if self.little else ">I", head[4:8])[0] if len(head) == 8 else 0
            unpadded = None  # (the first odd-sized chunk without its pad byte that chunks follow)
            first_id3 = True  # (no ID3 chunk met yet, of either case)
            # (bytes after the RIFF/FORM chunk are not its chunks)
            for cid, start, length, nxt in self._walk(f, min(size, 8 + declared)):
                name = cid.decode("latin-1").strip() or "?"
                if cid == self.audio_chunk and length == 0 and start < size:
                    return (f"its {name!r} chunk declares 0 bytes, a streaming writer's placeholder never filled in "
                            "(ffmpeg reads a WAV's, libsndfile an AIFF's, to the end of the file): a tag chunk after "
                            "it would be decoded as audio; the tags are not written")  # fmt: skip
                if start - 8 == size - 128 and cid[:3] == b"TAG":  # (not a chunk: ID3v1's 'TAG' and a title)
                    return _riff_into_id3v1(self.little, declared)
                if start + length > size:  # a recording cut short, or a streamed file's placeholder size
                    why = "a streaming writer's placeholder" if length == 0xFFFFFFFF else "cut short?"
                    return (f"its {name!r} chunk claims {length} bytes but the file ends {size - start} bytes into "
                            f"it ({why}): a tag chunk after it would be read as part of it; the audio is "
                            "analysed as it is, the tags are not written")  # fmt: skip
                if cid.upper() == b"ID3 " and not self.little and cid != b"ID3 " and first_id3:
                    return (f"its ID3 chunk is named {cid.decode('latin-1')!r}, which mutagen and ffmpeg do not read in "
                            "an AIFF file (TagLib does): a write would add a second ID3 chunk beside it")  # fmt: skip
                if cid.upper() == b"ID3 " and unpadded is not None:
                    return (f"its ID3 chunk follows {unpadded}, where mutagen does not look for chunks: a "
                            "write would add a second ID3 chunk without the first one's frames")  # fmt: skip
                first_id3 = first_id3 and cid.upper() != b"ID3 "
                if unpadded is None and length & 1 and nxt == start + length and nxt + 8 <= size:
                    unpadded = f"the {name!r} chunk of an odd size ({length} bytes) without its pad byte"
            if self.id3_span(f, min(size, 8 + declared)) is None:  # (mutagen adds one where the RIFF/FORM ends)
                why = self._riff_end_unfit(f, size, declared)
                if why:
                    return why
        return super().cannot_keep(audio, path, version)

    def _riff_end_unfit(self, f, size: int, declared: int) -> str | None:
        """Why the open file ``f`` (``size`` bytes, without an ID3 chunk inside its RIFF/FORM chunk,
        which declares ``declared`` bytes) cannot get one where mutagen adds it, at the end of the
        RIFF/FORM chunk, growing its size; None where it can."""
        form = "RIFF" if self.little else "FORM"
        if declared == 0xFFFFFFFF:
            return (f"its {form} size is 0xFFFFFFFF, a streaming writer's placeholder, which cannot grow by the tag "
                    "chunk")  # fmt: skip
        end = 8 + declared
        for cid, start, length, _nxt in self._walk(f, self._chunks_end(f, size, declared)):
            name = cid.decode("latin-1").strip() or "?"
            if start - 8 < end < start + length:
                if start - 8 == size - 128 and cid[:3] == b"TAG":  # (not a chunk: ID3v1's 'TAG' and a title)
                    return _riff_into_id3v1(self.little, declared)
                return (f"its {form} size ({declared} bytes) ends inside its {name!r} chunk, where mutagen would add "
                        "the tag chunk")  # fmt: skip
            if start - 8 >= end and cid.upper() == b"ID3 ":
                return (f"its ID3 chunk lies after the end its {form} size ({declared} bytes) gives, where mutagen "
                        "does not look for it (TagLib and ffmpeg read it): a write would add a second ID3 chunk "
                        "without its frames, which TagLib would show instead")  # fmt: skip
        return None


@register(Format("AIFF", "AIFF", (".aif", ".aiff", ".aifc")))
class AIFFStorage(WAVEStorage):
    """AIFF: an ID3 chunk; the audio is the ``SSND`` chunk, read as its ``COMM`` chunk says
    (big-endian chunk sizes)."""

    little, audio_chunk, format_chunk = False, b"SSND", b"COMM"


# -- helpers ------------------------------------------------------------------------------------

_INFO_AS_ID3 = {
    b"INAM": "TIT2", b"IART": "TPE1", b"IPRD": "TALB", b"ICMT": "COMM", b"IGNR": "TCON", b"ICRD": "TDRC",
    b"IPRT": "TRCK", b"ISFT": "TSSE", b"ICOP": "TCOP", b"IMUS": "TCOM", b"ITCH": "TENC", b"ILNG": "TLAN",
    b"IWRI": "TEXT", b"IMED": "TMED", b"ISRC": "TSRC", b"IBPM": "TBPM",
}  # fmt: skip
"""The WAV ``LIST/INFO`` items TagLib 2 shows, and the ID3 frame it shows under the same name (TITLE,
ARTIST, ALBUM, COMMENT, GENRE, DATE, TRACKNUMBER, ENCODING, COPYRIGHT, COMPOSER, ENCODEDBY,
LANGUAGE, LYRICIST, MEDIA, ISRC, BPM: measured with TagLib 2.1). It shows no other item (ITRK,
IKEY, ISBJ ...) but those of `_INFO_NOT_COPIED`."""
_INFO_MOST = 1 << 20
"""The most bytes of a ``LIST/INFO`` chunk read (its fields are a few short texts)."""
_INFO_NOT_COPIED = {b"IENG": "ARRANGER", b"IDIT": "ENCODINGTIME", b"ISTR": "PERFORMER", b"ICNT": "RELEASECOUNTRY"}
"""``LIST/INFO`` items TagLib 2 shows (under these names) that no ID3 text frame shows the same way."""


def _riff_into_id3v1(little: bool, declared: int) -> str:
    """Why a WAV (``little``) or an AIFF whose RIFF/FORM chunk declares ``declared`` bytes, ending
    inside an ID3v1 tag appended after its chunks, is not written."""
    return (f"its {'RIFF' if little else 'FORM'} size ({declared} bytes) ends inside the ID3v1 tag appended after "
            "its chunks (not at its start), where mutagen would add the tag chunk")  # fmt: skip


def _info_items(data: bytes) -> dict[bytes, str]:
    """The items of a ``LIST/INFO`` chunk's content (after ``INFO``) as TagLib reads them: an item's
    id must be 4 printable ASCII characters, its text is UTF-8 up to its first NUL (not UTF-8, or
    empty: not shown), a repeated id's last text counts, and the reading stops at an item that runs
    past the chunk."""
    items: dict[bytes, str] = {}
    pos = 0
    while pos + 8 <= len(data):
        item, length = data[pos : pos + 4], struct.unpack_from("<I", data, pos + 4)[0]
        if length > len(data) - pos - 8:
            break
        if all(32 <= c <= 126 for c in item):
            try:
                text = data[pos + 8 : pos + 8 + length].split(b"\0", 1)[0].decode("utf-8")
            except UnicodeDecodeError:
                text = ""
            if text:
                items[item] = text
            else:
                items.pop(item, None)
        pos += 8 + length + (length & 1)
    return items


def _taglib_reads_genre_otherwise(text: str) -> bool:
    """Whether TagLib shows an ID3 genre (``TCON``) holding ``text`` otherwise than ``text``: a number
    as wcstol reads one whole (" 17", "+17": "Rock"; "256": nothing), or a text beginning with "("
    and holding ")" (it reads "(17)", "(RX)", "(Live) Set" as ID3v1 genre codes: "Rock", "RX",
    " Set"). "80s Pop", "2 Tone", "17 " and "(Live" it shows as they are (measured with TagLib 2.1)."""
    return re.fullmatch(r"[ \t\n\v\f\r]*[+-]?[0-9]+", text) is not None or (text[:1] == "(" and ")" in text)


def _text_frame(fid: str, text: str):
    """An ID3 frame ``fid`` (a text frame, or ``COMM`` without a description) holding ``text`` (UTF-8)."""
    from mutagen.id3 import COMM, Encoding, Frames

    if fid == "COMM":
        return COMM(encoding=Encoding.UTF8, lang="eng", desc="", text=[text])
    return Frames[fid](encoding=Encoding.UTF8, text=[text])
