"""Byte helpers that more than one container's storage uses: hashing a range of a file and a tag
value (`_hash_range`, `_feed`), and finding the end of the ID3v2 tag(s) at the start of a file
(`_id3v2_end`: an MP3's, or one in front of a FLAC stream; each tag's length and size are
`tagger.containers`', as the audio probe reads them).
"""

from __future__ import annotations

from tagger.containers import id3v2_end

_CHUNK = 1 << 20


def _hash_range(f, start: int, end: int, h) -> None:
    f.seek(start)
    left = end - start
    while left > 0:
        block = f.read(min(_CHUNK, left))
        if not block:
            break
        h.update(block)
        left -= len(block)


def _feed(h, value) -> None:
    """Add a mutagen tag value to the hash ``h``: its type and content, bytes hashed in place (a
    50 MB cover is never copied nor turned into a string), lists in order."""
    from mutagen.id3 import Frame

    h.update(type(value).__name__.encode() + b":")
    if isinstance(value, (bytes, bytearray, memoryview)):
        h.update(b"%d:" % len(value))
        h.update(value)
        extra = vars(value) if hasattr(value, "__dict__") else {}  # MP4Cover.imageformat, MP4FreeForm.dataformat
        for key in sorted(extra):
            h.update(key.encode())
            _feed(h, extra[key])
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        h.update(b"%d:" % len(data))
        h.update(data)
    elif isinstance(value, (list, tuple)):
        h.update(b"%d:" % len(value))
        for item in value:
            _feed(h, item)
    elif isinstance(value, Frame):  # every attribute of the frame's specification
        for spec in (*value._framespec, *value._optionalspec):
            h.update(spec.name.encode())
            _feed(h, getattr(value, spec.name, None))
    elif hasattr(value, "value") and hasattr(value, "TYPE"):  # an ASF attribute
        _feed(h, value.value)
        # (an attribute of the Extended Content Description has none, which means 0 and 0: mutagen
        # moves one that has a twin of its name there into the Metadata Library, with 0 and 0)
        _feed(h, repr((getattr(value, "language", None) or 0, getattr(value, "stream", None) or 0)))
    else:
        data = repr(value).encode("utf-8", "surrogatepass")
        h.update(b"%d:" % len(data))
        h.update(data)


def _id3v2_end(f, start: int = 0) -> int:
    """Offset after the ID3v2 tag(s) at ``start`` in the open file ``f`` (``start`` when there is none)."""
    return id3v2_end(f, start)
