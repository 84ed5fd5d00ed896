"""DSF (DSD): tagger's fields in an ID3v2 tag at the end of the file, where the ``DSD `` chunk's
metadata pointer says (the ID3v2 storage itself, its frames and their checks: `tagger.tags.storage.id3`).
"""

from __future__ import annotations

import os
import struct

from tagger.containers import syncsafe
from tagger.tags.storage._bytes import _hash_range
from tagger.tags.storage.base import Format, register
from tagger.tags.storage.id3 import ID3Storage, _holds_frames


@register(Format("DSF", "DSF", (".dsf",)))
class DSFStorage(ID3Storage):
    """DSF (DSD): an ID3v2 tag at the end of the file, where the ``DSD `` chunk's metadata pointer
    says; the audio is the ``fmt `` and ``data`` chunks (and the ``DSD `` chunk's id and size, not its
    file size and pointer, which a write updates)."""

    def _layout(self, f, size: int) -> tuple[int, int]:
        """(end of the ``data`` chunk, metadata pointer); ValueError for a file whose chunks do not fit."""
        f.seek(0)
        head = f.read(28)
        if len(head) < 28 or head[:4] != b"DSD ":
            raise ValueError("its DSD chunk cannot be read")
        pointer = struct.unpack_from("<Q", head, 20)[0]
        f.seek(28)
        fmt = f.read(12)
        if len(fmt) < 12 or fmt[:4] != b"fmt ":
            raise ValueError("its fmt chunk cannot be read")
        data_at = 28 + struct.unpack_from("<Q", fmt, 4)[0]
        f.seek(data_at)
        data = f.read(12)
        if len(data) < 12 or data[:4] != b"data":
            raise ValueError("its data chunk cannot be read")
        return data_at + struct.unpack_from("<Q", data, 4)[0], pointer

    def id3_span(self, f, size):
        _end, pointer = self._layout(f, size)
        return (pointer, size - pointer) if _points_to_tag(pointer, size) else None

    def payload(self, f, size, h):
        end, _pointer = self._layout(f, size)
        _hash_range(f, 0, 12, h)
        _hash_range(f, 28, min(end, size), h)
        return True

    def cannot_keep(self, audio, path, version):
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            try:
                end, pointer = self._layout(f, size)
            except ValueError as exc:
                return str(exc)
            if end > size:
                return (f"its data chunk claims {end - size} bytes more than the file holds (cut short?); the audio "
                        "is analysed as it is, the tags are not written")  # fmt: skip
            if _points_to_tag(pointer, size):
                f.seek(pointer)
                head = f.read(10)
                tag_end = self._tag_end(f, pointer)
                if pointer < end or head[:3] != b"ID3" or tag_end not in (size, size - len(self._id3v1(f, size))):
                    return ("its metadata pointer does not lead to one ID3 tag ending the file (or an ID3v1 tag "
                            "after it): a rewrite would cut off or overwrite what lies there")  # fmt: skip
        return super().cannot_keep(audio, path, version)

    @staticmethod
    def _tag_end(f, pointer: int) -> int:
        """Where the ID3v2 tag at ``pointer`` in the open file ``f`` ends, its footer included."""
        f.seek(pointer)
        head = f.read(10)
        tag_end = pointer + 10 + syncsafe(head[6:10]) if len(head) == 10 else pointer
        if len(head) == 10 and head[3] == 4 and head[5] & 0x10:  # a footer (ID3v2.4 only)
            f.seek(tag_end)
            tag_end += 10 if f.read(3) == b"3DI" else 0  # (the flag alone would make any 10 bytes one)
        return tag_end

    def _id3v1(self, f, size: int) -> bytes:
        """The ID3v1 tag some tool appended to the open DSF file ``f`` (``size`` bytes) right after its
        ID3v2 tag, or after its ``data`` chunk where it has none; b"" where there is none."""
        if size < 128:
            return b""
        end, pointer = self._layout(f, size)
        last = self._tag_end(f, pointer) if _points_to_tag(pointer, size) else end
        f.seek(size - 128)
        tag = f.read(128)
        return tag if last == size - 128 and tag[:3] == b"TAG" else b""

    def save(self, audio, path, *, version, original):
        """mutagen writes the ID3v2 tag at the end of the file (or where the pointer says) and cuts
        the file after it: an ID3v1 tag appended after it (which TagLib and ffmpeg do not read in a
        DSF, and which `_load_id3` does not fold into the ID3v2 tag) is taken off first and put back
        after, byte for byte; the header's file size counts the chunks and the ID3v2 tag, as mutagen
        writes it."""
        with open(path, "r+b") as f:
            v1 = self._id3v1(f, f.seek(0, 2))
            if v1:
                f.truncate(f.seek(0, 2) - 128)
        if _holds_frames(audio.tags, version):
            audio.save(v2_version=version, v23_sep="/")
        else:
            audio.delete()  # nothing left in the tag (tagger created it): removed, pointer back to 0
            with open(path, "r+b") as f:  # (mutagen leaves the header's file size as it was)
                size = f.seek(0, 2)
                f.seek(12)
                f.write(struct.pack("<Q", size))
        if v1:
            with open(path, "ab") as f:
                f.write(v1)


# -- helpers ------------------------------------------------------------------------------------

def _points_to_tag(pointer: int, size: int) -> bool:
    """Whether a DSF metadata pointer says the file (``size`` bytes) has a tag: 0 is the DSF
    specification's "none", and some writers point a file without one at its end (mutagen reads
    none there either; a save puts the tag there, as for 0)."""
    return pointer != 0 and pointer != size
