"""ASF (WMA): tagger's fields as ASF attributes with those names, one per value. The check on
mutagen's round trip reads the header's attributes from the file's bytes (`_asf_attributes`),
and where mutagen's write would put each of them (`_asf_moves`). A text of an odd number of bytes,
which mutagen cannot read, is named for the refusal (`odd_texts`).
"""

from __future__ import annotations

import os
import struct
from typing import NamedTuple

from tagger.tags.fields import Raw, ours
from tagger.tags.storage._bytes import _hash_range
from tagger.tags.storage.base import Format, Storage, register


@register(Format("ASF", "WMA", (".wma",)))
class ASFStorage(Storage):
    """ASF attributes with the field names, one per value; the audio is everything after the header
    object, and the header's stream descriptions (`payload`)."""

    kind = "asf"

    def read(self, tags) -> Raw:
        raw: Raw = {}
        for key, values in tags.as_dict().items():
            name = ours(key)
            if name:
                raw.setdefault(name, []).extend(str(v.value) for v in values)
        return raw

    def lookalikes(self, tags):
        return (key for key in tags.as_dict() if not ours(key) and ours(key, any_case=True))

    def write(self, tags, raw: Raw) -> None:
        from mutagen.asf import ASFUnicodeAttribute

        for key in [k for k in tags.as_dict() if ours(k)]:
            del tags[key]
        for name, values in raw.items():
            tags[name] = [ASFUnicodeAttribute(v) for v in values]

    def other_items(self, audio):
        # mutagen may move attributes between header objects; per-name order is kept
        return sorted(((k, v) for k, v in audio.tags if not ours(k)), key=lambda item: item[0])

    def cannot_keep(self, audio, path, version):
        # mutagen reads a BOOL as "is it 1" and writes it back as 0 or 1 (a true 0xFFFFFFFF becomes
        # false), writes a Metadata object attribute's reserved field as 0, writes every name, text
        # value and Content Description field as its text up to the last character that is not a NUL
        # and one NUL (extra NULs and an unended text change), and the Header Extension's reserved
        # fields as the specification's: it reads the same values back, so the other-tags digest
        # cannot see the change. The header's bytes tell.
        changed = []
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            f.seek(16)
            declared = int.from_bytes(f.read(8), "little")
            if declared > size:  # (mutagen reads what is there, and its save fails: "OSError: Invalid argument")
                return f"its ASF header declares {declared} bytes where the file holds {size} (damaged?)"
            for where, name, kind, lead, _stream, _length, value in _asf_attributes(f, size):
                shown = _asf_name(name)
                if not _asf_text_kept(name):
                    changed.append(f"{shown!r}, whose name is not one text and one NUL")
                if kind == 0 and value is not None and not _asf_text_kept(value):
                    changed.append(f"{shown!r}, whose text is not one text and one NUL")
                if kind == 2 and value is not None and int.from_bytes(value, "little") not in (0, 1):
                    changed.append(f"{shown!r}, a BOOL stored as 0x{value[::-1].hex()}")
                if where == "Metadata" and lead:
                    changed.append(f"{shown!r}, whose reserved field in the Metadata object is {lead}")
            changed += _asf_header_changes(f, size)
            # (a move is a change a reader can show only where the values of that name differ: ffmpeg's
            # twin Author, in the Content Description and the Extended Content Description, moves harmlessly)
            values = {} if audio.tags is None else audio.tags.as_dict()
            moved = [said for name, said in _asf_moves(f, size)
                     if len({(type(v).__name__, v.value) for v in values.get(name, ())}) > 1]  # fmt: skip
        if moved and not changed:
            return ("a rewrite would move its ASF attributes to other header objects (mutagen keeps one attribute "
                    "of a name in the Extended Content Description and in the Metadata object and moves the others "
                    "to the Metadata Library; a reader that shows one value of a name, such as ffmpeg, may then show "
                    f"another): {', '.join(moved)}")  # fmt: skip
        if not changed:
            return None
        return ("its ASF attributes hold values that a rewrite would change (mutagen writes a BOOL back as 0 or 1, "
                f"a reserved field as 0 and a text as itself and one NUL): {', '.join(changed)}")  # fmt: skip

    def payload(self, f, size, h):
        """Everything after the header object, and the header's objects that say how it decodes:
        each Stream Properties object (the codec, its WAVEFORMATEX and data, the audio's spread), the
        File Properties' preroll, flags and packet sizes (not its file size and dates, which
        editors update), each Extended Stream Properties object in the Header Extension."""
        f.seek(16)
        (header_size,) = struct.unpack("<Q", f.read(8))
        for guid, start, end in list(_asf_objects(f, 30, min(header_size, size))):
            if guid == _ASF_STREAM_PROPERTIES:
                h.update(b"Stream Properties %d:" % (end - start))
                _hash_range(f, start, end, h)
            elif guid == _ASF_FILE_PROPERTIES:
                h.update(b"File Properties:")
                _hash_range(f, start + 56, min(start + 76, end), h)
            elif guid == _ASF_HEADER_EXTENSION:
                for inner, inner_start, inner_end in list(_asf_objects(f, start + 22, end)):
                    if inner == _ASF_EXTENDED_STREAM_PROPERTIES:
                        h.update(b"Extended Stream Properties %d:" % (inner_end - inner_start))
                        _hash_range(f, inner_start, inner_end, h)
        h.update(b"data:")
        _hash_range(f, header_size, size, h)
        return True


# -- helpers ------------------------------------------------------------------------------------


def _asf_guid(text: str) -> bytes:
    import uuid

    return uuid.UUID(text).bytes_le


_ASF_EXTENDED_CONTENT = _asf_guid("D2D0A440-E307-11D2-97F0-00A0C95EA850")
_ASF_HEADER_EXTENSION = _asf_guid("5FBF03B5-A92E-11CF-8EE3-00C00C205365")
_ASF_HEADER_EXTENSION_RESERVED = _asf_guid("ABD3D211-A9BA-11CF-8EE6-00C00C205365") + b"\x06\x00"
"""The Header Extension's two reserved fields as the specification (and mutagen's write) has them."""
_ASF_STREAM_PROPERTIES = _asf_guid("B7DC0791-A9B7-11CF-8EE6-00C00C205365")
_ASF_FILE_PROPERTIES = _asf_guid("8CABDCA1-A947-11CF-8EE4-00C00C205365")
_ASF_EXTENDED_STREAM_PROPERTIES = _asf_guid("14E6A5CB-C672-4332-8399-A96952065B5A")
_ASF_CONTENT_DESCRIPTION = _asf_guid("75B22633-668E-11CF-A6D9-00AA0062CE6C")
_ASF_CONTENT_FIELDS = ("Title", "Author", "Copyright", "Description", "Rating")
_ASF_METADATA = {
    _asf_guid("C5F8CBEA-5BAF-4877-8467-AA8C44FA4CCA"): "Metadata",
    _asf_guid("44231C94-9498-49D1-A141-1D134E457054"): "Metadata Library",
}


def _asf_objects(f, pos: int, end: int):
    """(GUID, content offset, content end) of each ASF object from ``pos`` to ``end`` in the open
    file ``f``; the walk stops at an object that does not fit."""
    while pos + 24 <= end:
        f.seek(pos)
        guid, size = struct.unpack("<16sQ", f.read(24))
        if size < 24 or pos + size > end:
            return
        yield guid, pos + 24, pos + size
        pos += size


class _Attribute(NamedTuple):
    """One attribute as the header's bytes hold it."""

    where: str
    """Its object: ``Extended Content Description``, ``Metadata`` or ``Metadata Library``."""
    name: bytes
    kind: int
    """Its data type (0 text, 1 bytes, 2 BOOL, 3 DWORD, 4 QWORD, 5 WORD, 6 GUID)."""
    lead: int | None
    """The Metadata object's reserved field (the Metadata Library's language), None in the Extended
    Content Description."""
    stream: int | None
    """Its stream number (None in the Extended Content Description)."""
    length: int
    """The length of its value."""
    value: bytes | None
    """Its value, read only for a text or a BOOL (None otherwise: a picture may be large)."""


def _asf_attributes(f, size: int):
    """Each attribute (`_Attribute`) of the Extended Content Description, Metadata and Metadata
    Library objects of the ASF file open as ``f`` (``size`` bytes), read from the header's bytes,
    in the file's order. The walk stops where an object's content does not hold what it declares."""
    f.seek(0)
    head = f.read(30)
    if len(head) < 30:
        return
    header_end = min(struct.unpack("<Q", head[16:24])[0], size)
    for guid, start, end in list(_asf_objects(f, 30, header_end)):
        if guid == _ASF_EXTENDED_CONTENT:
            f.seek(start)
            pos = start + 2
            for _ in range(struct.unpack("<H", f.read(2))[0] if end - start >= 2 else 0):
                if pos + 6 > end:
                    return
                f.seek(pos)
                (name_length,) = struct.unpack("<H", f.read(2))
                if pos + 6 + name_length > end:
                    return
                name = f.read(name_length)
                kind, value_length = struct.unpack("<HH", f.read(4))
                pos += 6 + name_length + value_length
                if pos > end:
                    return
                value = f.read(value_length) if kind in (0, 2) else None
                yield _Attribute("Extended Content Description", name, kind, None, None, value_length, value)
        elif guid == _ASF_HEADER_EXTENSION and end - start >= 22:
            f.seek(start + 18)
            inner_end = min(start + 22 + struct.unpack("<I", f.read(4))[0], end)
            for inner, first, last in list(_asf_objects(f, start + 22, inner_end)):
                where = _ASF_METADATA.get(inner)
                if where is None or last - first < 2:
                    continue
                f.seek(first)
                pos = first + 2
                for _ in range(struct.unpack("<H", f.read(2))[0]):
                    if pos + 12 > last:
                        return
                    f.seek(pos)
                    lead, stream, name_length, kind, value_length = struct.unpack("<HHHHI", f.read(12))
                    name = f.read(name_length)
                    pos += 12 + name_length + value_length
                    if pos > last:
                        return
                    value = f.read(value_length) if kind in (0, 2) else None
                    yield _Attribute(where, name, kind, lead, stream, value_length, value)


def _asf_name(data: bytes) -> str:
    return data.decode("utf-16-le", "replace").strip("\x00")


def _asf_text_kept(data: bytes) -> bool:
    """Whether mutagen writes the UTF-16 text ``data`` back as it is: its text up to the last
    character that is not a NUL, then one NUL (an odd length fails mutagen's load before this)."""
    text = data.decode("utf-16-le", "replace").strip("\x00")
    return data == text.encode("utf-16-le", "surrogatepass") + b"\0\0"


_ASF_LOAD_ORDER = ("Content Description", "Extended Content Description", "Metadata", "Metadata Library")
"""The objects whose attributes mutagen loads, in the order it loads them (whatever the file's order)."""


def _asf_moves(f, size: int) -> list[tuple[str, str]]:
    """(name, what moves where) of each attribute (not tagger's) of the ASF file open as ``f``
    (``size`` bytes) that mutagen's write would put into another object than the one holding it, as
    mutagen's `save` routes them: the Metadata Library for a GUID, a value over 64 KiB, a language,
    and every attribute of a name already written to the object it would go to (a Content
    Description field too, and a field of that name that is not a text); a stream number to the
    Metadata object, a Content Description name to that object, any other to the Extended Content
    Description. Texts are counted as they are stored (`cannot_keep` refuses one that mutagen writes
    otherwise)."""
    found = [("Content Description", name, 0, None, None, length) for name, length in _asf_content_fields(f, size)]
    found += [(a.where, _asf_name(a.name), a.kind, a.lead if a.where == "Metadata Library" else None, a.stream,
               4 if a.kind == 2 else a.length) for a in _asf_attributes(f, size)]  # fmt: skip
    found.sort(key=lambda attribute: _ASF_LOAD_ORDER.index(attribute[0]))  # (stable: the file's order within each)
    taken: dict[str, set[str]] = {where: set() for where in _ASF_LOAD_ORDER}
    moved = []
    for where, name, kind, language, stream, length in found:
        if ours(name):
            continue  # (rewritten by tagger, in the Extended Content Description)
        if kind == 6 or length > 0xFFFF or language is not None:
            goes = "Metadata Library"
        elif stream is not None:
            goes = "Metadata"
        elif name in _ASF_CONTENT_FIELDS:
            goes = "Content Description" if kind == 0 else "Metadata Library"
        else:
            goes = "Extended Content Description"
        if goes != "Metadata Library" and name in taken[goes]:
            goes = "Metadata Library"
        taken[goes].add(name)
        if goes != where:
            moved.append((name, f"{name!r} from the {where} to the {goes}"))
    return moved


def odd_texts(path: str) -> list[str]:
    """The texts of the ASF file ``path`` stored in an odd number of bytes (mutagen fails to read
    them as UTF-16): attribute names and text values, Content Description fields, as a user reads them."""
    odd = []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            for a in _asf_attributes(f, size):
                if len(a.name) % 2:
                    odd.append(f"the name {_asf_name(a.name[:-1])!r}... in the {a.where}")
                elif a.kind == 0 and a.length % 2:
                    odd.append(f"the value of {_asf_name(a.name)!r} in the {a.where}")
            odd += [f"the Content Description's {name}" for name, length in _asf_content_fields(f, size) if length % 2]
    except (OSError, struct.error):  # (a header that does not hold what it declares: mutagen's words stand)
        return []
    return odd


def _asf_content_fields(f, size: int) -> list[tuple[str, int]]:
    """(name, length) of each Content Description field the ASF file open as ``f`` (``size`` bytes)
    holds (mutagen loads one that is not empty as an attribute of that name)."""
    f.seek(0)
    head = f.read(30)
    if len(head) < 30:
        return []
    fields = []
    for guid, start, end in list(_asf_objects(f, 30, min(struct.unpack("<Q", head[16:24])[0], size))):
        if guid == _ASF_CONTENT_DESCRIPTION and end - start >= 10:
            f.seek(start)
            fields += [(name, n) for name, n in zip(_ASF_CONTENT_FIELDS, struct.unpack("<5H", f.read(10))) if n]
    return fields


def _asf_header_changes(f, size: int) -> list[str]:
    """What mutagen's write would change in the ASF file open as ``f`` (``size`` bytes) outside its
    attributes: a Content Description field that is not one text and one NUL, Header Extension
    reserved fields other than the specification's (mutagen writes those)."""
    f.seek(0)
    head = f.read(30)
    if len(head) < 30:
        return []
    changed = []
    for guid, start, end in list(_asf_objects(f, 30, min(struct.unpack("<Q", head[16:24])[0], size))):
        f.seek(start)
        data = f.read(end - start)
        if guid == _ASF_CONTENT_DESCRIPTION and len(data) >= 10:
            pos = 10
            for name, length in zip(_ASF_CONTENT_FIELDS, struct.unpack("<5H", data[:10])):
                field = data[pos : pos + length]
                if length and not (len(field) % 2 == 0 and _asf_text_kept(field)):
                    changed.append(f"the Content Description's {name}, which is not one text and one NUL")
                pos += length
        elif guid == _ASF_HEADER_EXTENSION and len(data) >= 18 and data[:18] != _ASF_HEADER_EXTENSION_RESERVED:
            changed.append(f"the Header Extension's reserved fields ({data[:18].hex()})")
    return changed
