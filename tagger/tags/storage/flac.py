"""FLAC: Vorbis comments in a VORBIS_COMMENT metadata block (`tagger.tags.storage.vorbis`), the
metadata blocks walked as mutagen walks them, its PICTURE blocks and the ID3 tags beside the stream.
"""

from __future__ import annotations

import os
import struct

from tagger.errors import TagWriteError
from tagger.tags.storage._bytes import _hash_range, _id3v2_end
from tagger.tags.storage.base import Format, register
from tagger.tags.storage.vorbis import VorbisStorage, _read_counted, _shown, _vorbis_entries


_BLOCK_NAMES = {0: "STREAMINFO", 2: "APPLICATION", 3: "SEEKTABLE", 5: "CUESHEET"}
"""FLAC metadata block types by number, as a reason names them."""
_FLAC_BLOCK_MAX = (1 << 24) - 1
"""The most bytes a FLAC metadata block holds (its length is a 24-bit number)."""


@register(Format("FLAC", "FLAC", (".flac",)))
class FLACStorage(VorbisStorage):
    """FLAC: the audio is the STREAMINFO block and the frames after the metadata blocks (PICTURE
    blocks are other tags; padding, seek table and cue sheet do not change what the frames decode to).

    mutagen writes back every VORBIS_COMMENT block (it shows the first one) and every PICTURE
    block from what it loaded: `cannot_keep` compares each with the file's bytes."""

    def _blocks(self, f):
        """(type, data offset, data end) of each metadata block, walked as mutagen walks them: a
        VORBIS_COMMENT or PICTURE block ends where its content ends, whatever its header says."""
        size = os.fstat(f.fileno()).st_size
        pos = _id3v2_end(f)
        f.seek(pos)
        if f.read(4) != b"fLaC":
            return
        pos += 4
        while True:
            f.seek(pos)
            head = f.read(4)
            if len(head) < 4:
                return
            code, end = head[0] & 0x7F, pos + 4 + int.from_bytes(head[1:4], "big")
            if code == 4:
                _vorbis_entries(f, size)
                end = f.tell()
            elif code == 6:
                _picture_header(f, size)
                end = f.tell()
            yield code, pos + 4, end
            if head[0] & 0x80:
                return
            pos = end

    def cannot_keep(self, audio, path, version):
        # Players that read FLAC through ffmpeg (mpv, VLC, ...) show an ID3v2 tag in front of fLaC
        # only while the Vorbis comments are empty: tagger's fields would hide its title and artist.
        if not any(True for _ in (audio.tags or ())):
            shown = _id3_fields_in_front(path)
            if shown:
                return (f"an ID3v2 tag in front of its FLAC stream holds its fields ({shown}) and its Vorbis "
                        "comments none: players that read Vorbis comments first would stop showing them once "
                        "tagger's fields are there")  # fmt: skip
            shown = _id3v1_fields(path)
            if shown:  # (TagLib shows a FLAC's ID3v1 tag only while its Vorbis comments are empty)
                return (f"an ID3v1 tag at its end holds its fields ({shown}) and its Vorbis comments none: TagLib "
                        "shows them only while the Vorbis comments are empty, so tagger's fields would hide "
                        "them")  # fmt: skip
        changed = self.blocks_changed(audio, path)
        if changed:
            return (f"its FLAC metadata has blocks that a rewrite would change ({', '.join(changed)}: bytes in "
                    "reserved fields or past their last entry, which mutagen does not write back)")  # fmt: skip
        return super().cannot_keep(audio, path, version)

    def save(self, audio, path, *, version, original):
        # mutagen refuses a VORBIS_COMMENT block too long for its 24-bit length with an error of
        # its own (in mutagen 1.48, an AttributeError): say what it is
        for block in self.loaded_comments(audio):
            size = len(block.write())
            if size > _FLAC_BLOCK_MAX:
                raise TagWriteError(path, f"its Vorbis comments with tagger's fields would take {size:,} bytes, "
                                          f"more than a FLAC metadata block holds ({_FLAC_BLOCK_MAX:,})")  # fmt: skip
        audio.save()

    def blocks_changed(self, audio, path: str) -> list[str]:
        """The metadata blocks other than padding, comments and pictures (checked on their own)
        that a save would not write back byte for byte: mutagen writes STREAMINFO, SEEKTABLE and
        CUESHEET from the fields it parsed, so their reserved bytes and any bytes after their last
        seek point or track were dropped."""
        with open(path, "rb") as f:
            raw = []
            for code, start, end in list(self._blocks(f)):
                if code not in (1, 4, 6):
                    f.seek(start)
                    raw.append((code, f.read(end - start)))
        loaded = [block for block in audio.metadata_blocks if block.code not in (1, 4, 6)]
        if [code for code, _ in raw] != [block.code for block in loaded]:
            return [f"{len(raw)} such block(s) in the file, {len(loaded)} read by mutagen"]
        return [_BLOCK_NAMES.get(code, f"block type {code}") for (code, data), block in zip(raw, loaded)
                if bytes(block.write()) != data]  # fmt: skip

    def comment_blocks(self, audio, path):
        with open(path, "rb") as f:
            out = []
            size = os.fstat(f.fileno()).st_size
            for code, start, _end in list(self._blocks(f)):
                if code == 4:
                    f.seek(start)
                    out.append(_vorbis_entries(f, size))
            return out

    def loaded_comments(self, audio):
        return [block for block in audio.metadata_blocks if block.code == 4]

    def pictures_changed(self, audio, path):
        import copy

        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            raw = []
            for code, start, _end in list(self._blocks(f)):
                if code == 6:
                    f.seek(start)
                    raw.append(_picture_header(f, size))
        pictures = audio.pictures
        changed = []
        if len(raw) != len(pictures):
            changed.append(f"{len(raw)} PICTURE block(s) in the file, {len(pictures)} read by mutagen")
        for n, ((header, mime, desc, length), pic) in enumerate(zip(raw, pictures), 1):
            # The picture data is loaded as it is; the header (type, MIME type, description,
            # dimensions) is decoded and encoded again. Only the header is compared: no copy of
            # the data is made (a cover may be tens of megabytes).
            bare = copy.copy(pic)
            bare.data = b""
            if bare.write()[:-4] != header[:-4] or len(pic.data) != length:
                changed.append(f"PICTURE {n} (MIME type {_shown(mime)}, description {_shown(desc)})")
        return changed

    def payload(self, f, size, h):
        pos = _id3v2_end(f)
        f.seek(pos)
        if f.read(4) != b"fLaC":
            return False
        pos += 4
        while True:
            f.seek(pos)
            head = f.read(4)
            if len(head) < 4:
                return False
            length = int.from_bytes(head[1:4], "big")
            if head[0] & 0x7F == 0:  # STREAMINFO: the rate, channels, bits and length the frames decode to
                h.update(b"STREAMINFO %d:" % length)
                _hash_range(f, pos + 4, pos + 4 + length, h)
            pos += 4 + length
            if head[0] & 0x80:
                break
        h.update(b"frames:")
        _hash_range(f, pos, size, h)
        return True


# -- helpers ------------------------------------------------------------------------------------


def _id3v1_fields(path: str) -> str:
    """The fields (as ID3v2 frame IDs, e.g. "TIT2, TPE1") of an ID3v1 tag ending the file; "" when none."""
    from mutagen.id3 import ParseID3v1

    with open(path, "rb") as f:
        if f.seek(0, 2) < 128:
            return ""
        f.seek(-128, 2)
        frames = ParseID3v1(f.read(128)) or {}
    return ", ".join(sorted(frames))


def _id3_fields_in_front(path: str) -> str:
    """The frames (IDs, e.g. "TIT2, TPE1") of an ID3v2 tag at the start of the file; "" when none
    (an ID3v1 tag at its end is not one)."""
    from mutagen.id3 import ID3, ID3NoHeaderError

    try:
        frames = sorted({key[:4] for key in ID3(path, load_v1=False).keys()})
    except ID3NoHeaderError:
        return ""
    except Exception:  # noqa: BLE001  (an unreadable tag in front: the save would keep its bytes as they are)
        return ""
    return ", ".join(frames[:6]) + (", ..." if len(frames) > 6 else "")

def _picture_header(f, size: int) -> tuple[bytes, bytes, bytes, int]:
    """(header bytes up to the data, MIME type, description, declared data length) of the FLAC
    PICTURE block content at the position of the open file ``f`` (``size`` bytes in all); ``f`` is
    left after the data."""
    parts = [f.read(4)]

    def counted() -> bytes:
        start = f.tell()
        value = _read_counted(f, size, ">I") or b""
        end = f.tell()
        f.seek(start)
        parts.append(f.read(end - start))
        return value

    mime = counted()
    desc = counted()
    parts.append(f.read(16))
    head = f.read(4)
    parts.append(head)
    length = struct.unpack(">I", head)[0] if len(head) == 4 else 0
    f.seek(length, os.SEEK_CUR)
    return b"".join(parts), mime, desc, length
