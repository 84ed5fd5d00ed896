"""MP4/M4A: tagger's fields as freeform atoms ``----:com.apple.iTunes:INSTRUMENTS`` (UTF-8), one
data atom per value.
"""

from __future__ import annotations

import hashlib
import io
import struct
from collections import Counter

from tagger.tags.fields import Raw, ours
from tagger.tags.storage._bytes import _feed, _hash_range
from tagger.tags.storage.base import Format, Storage, register

MP4_FREEFORM_PREFIX = "----:com.apple.iTunes:"
"""MP4 freeform atom prefix (mean ``com.apple.iTunes``), as iTunes, beets and ffmpeg use it."""


@register(Format("MP4", "MP4/M4A", (".m4a", ".m4b", ".mp4", ".alac")))
class MP4Storage(Storage):
    """MP4 freeform atoms ``----:com.apple.iTunes:NAME`` (UTF-8), one data atom per value; the
    audio is the ``mdat`` atoms and the tracks' descriptions (`payload`). Fragmented files are
    refused (`cannot_keep`)."""

    kind = "mp4"

    @staticmethod
    def _ours(key: str) -> str | None:
        return ours(key[len(MP4_FREEFORM_PREFIX) :]) if key.startswith(MP4_FREEFORM_PREFIX) else None

    def lookalikes(self, tags):
        """Freeform atoms named like ours in another case, or under another mean than
        ``com.apple.iTunes`` (``----:com.foo:INSTRUMENTS``, ``----:com.apple.itunes:...``): ffmpeg
        shows a freeform atom by its name alone, the last of a name, so ours would hide it."""
        for key in tags.keys():
            parts = key.split(":", 2)
            if parts[0] == "----" and len(parts) == 3 and not self._ours(key) and ours(parts[2], any_case=True):
                yield key

    def foreign(self, audio) -> list[str]:
        name = getattr(audio, "filename", None)
        return super().foreign(audio) + (self.mdta_lookalikes(name) if name else [])

    @staticmethod
    def mdta_lookalikes(path: str) -> list[str]:
        """The keys named like ours (any case) of a ``meta`` atom of QuickTime's ``mdta`` handler in
        ``moov`` or its ``udta``, as ffmpeg's ``-movflags use_metadata_tags`` writes every field it is
        given (``mdta:INSTRUMENTS``): ffmpeg shows such an item by its key's name, the last of a name
        beside a freeform atom of ours, so ours beside it would hide it or be hidden."""
        from mutagen.mp4 import Atoms

        found = []
        with open(path, "rb") as f:
            atoms = Atoms(f)
            metas = []
            for where in ((b"moov",), (b"moov", b"udta")):
                try:
                    parent = atoms.path(*where)[-1]
                except KeyError:
                    continue
                metas += [atom for atom in parent.children or () if atom.name == b"meta"]
            for meta in metas:
                for keys in (atom for atom in meta.children or () if atom.name == b"keys"):
                    f.seek(keys.offset)
                    data = f.read(min(keys.length, 1 << 20))
                    pos = 16  # (its header, version and flags, and the count of keys)
                    while pos + 8 <= len(data):
                        size, space = struct.unpack_from(">I4s", data, pos)
                        if size < 8 or pos + size > len(data):
                            break
                        key = data[pos + 8 : pos + size].decode("utf-8", "replace")
                        if space == b"mdta" and ours(key, any_case=True):
                            found.append(f"mdta:{key}")
                        pos += size
        return found

    def read(self, tags) -> Raw:
        raw: Raw = {}
        for key, values in tags.items():
            name = self._ours(key)
            if name:
                raw.setdefault(name, []).extend(bytes(v).decode("utf-8", "replace") for v in values)
        return raw

    def write(self, tags, raw: Raw) -> None:
        from mutagen.mp4 import AtomDataType, MP4FreeForm

        for key in [k for k in tags.keys() if self._ours(k)]:
            del tags[key]
        for name, values in raw.items():
            tags[MP4_FREEFORM_PREFIX + name] = [MP4FreeForm(v.encode("utf-8"), dataformat=AtomDataType.UTF8) for v in values]

    def other_items(self, audio):
        return sorted(((k, v) for k, v in audio.tags.items() if not self._ours(k)), key=lambda item: item[0])

    def cannot_keep(self, audio, path, version):
        from mutagen.mp4 import Atoms

        with open(path, "rb") as f:
            top = [atom.name for atom in Atoms(f).atoms]
        if b"moof" in top:  # mutagen updates the offsets of the first fragment only: the others would
            # point into the wrong bytes once the tag grows, and their audio would be lost
            return ("it is a fragmented MP4 (moof atoms), whose audio a tag write would break (mutagen does "
                    "not move every fragment's offsets); the audio is analysed as it is, the tags are not "
                    "written")  # fmt: skip
        if self.quicktime_meta(path):
            return ("its MP4 tags are in a 'meta' atom of QuickTime's form (without version and flags), which "
                    "mutagen does not read: a rewrite would put a second 'meta' atom in front of it, and TagLib "
                    "would show the tags of neither")  # fmt: skip
        padding = self.padding_changed(path)
        if padding:
            return f"its MP4 tag has a 'free' atom beside 'ilst' that a rewrite would overwrite ({padding})"
        # mutagen converts some atoms as it loads them (an ID3-style "gnre" becomes "©gen", merged with
        # a "©gen" already there) and merges repeated ones: a save writes its view, and the other-tags
        # digest, taken from that view, cannot see the change. The atom names tell.
        found = self.item_ids(path)
        kept = self.expected_item_ids(audio, version)
        if found == kept:
            return None
        if found - kept == Counter({"gnre": 1}) and kept - found == Counter({"\xa9gen": 1}):
            with open(path, "rb") as f:
                if self._genre_text(f, dict(self._ilst(f))["gnre"]) is not None:
                    return None  # a lone ID3-style genre becomes the same genre as text: read the same
        what = ", ".join(repr(name) for name in sorted(set((found - kept) | (kept - found))))
        return f"its MP4 tag has atoms that a rewrite would convert, merge or drop ({what})"

    def save(self, audio, path, *, version, original):
        _keep_cover_types(audio, path)
        audio.save()

    @staticmethod
    def quicktime_meta(path: str) -> bool:
        """Whether a ``meta`` atom in ``moov``/``udta`` has QuickTime's form: its children right after
        its header (a ``hdlr`` first), where the ISO form (which mutagen reads) has 4 bytes of
        version and flags. mutagen finds no tags in it and adds a ``meta`` atom of its own."""
        from mutagen.mp4 import Atoms

        with open(path, "rb") as f:
            try:
                udta = Atoms(f).path(b"moov", b"udta")[-1]
            except KeyError:
                return False
            for atom in udta.children or ():
                if atom.name == b"meta":
                    f.seek(atom.offset)
                    head = f.read(24)
                    start = 16 if head[:4] == b"\0\0\0\x01" else 8
                    if head[start + 4 : start + 8] == b"hdlr":
                        return True
        return False

    @staticmethod
    def padding_changed(path: str) -> str | None:
        """What a save would lose in the ``free`` atom that mutagen takes for the tag's padding and
        writes over (the child of ``meta`` before ``ilst``, or after it; "before" the first child
        is the last one), or None: bytes that are not zeros, or atoms between it and ``ilst``.
        Bytes that are all 0x01 are padding too: TagLib (kid3 ...) fills the ``free`` atom it adds
        beside ``ilst`` with them."""
        from mutagen.mp4 import Atoms

        with open(path, "rb") as f:
            try:
                meta, ilst = Atoms(f).path(b"moov", b"udta", b"meta", b"ilst")[-2:]
            except KeyError:
                return None
            index = meta.children.index(ilst)
            near = [meta.children[index - 1], *meta.children[index + 1 : index + 2]]
            free = next((atom for atom in near if atom.name == b"free"), None)
            if free is None:
                return None
            if free.offset + free.length != ilst.offset and ilst.offset + ilst.length != free.offset:
                return "other atoms lie between them"
            start = free.offset + free.length - free.datalength
            f.seek(start)
            filler = None  # (zeros, or TagLib's 0x01, throughout)
            while f.tell() < free.offset + free.length:
                block = f.read(min(1 << 20, free.offset + free.length - f.tell()))
                if not block:
                    break
                filler = block[0] if filler is None else filler
                if filler not in (0, 1) or block.strip(bytes([filler])):
                    return "it holds bytes that are not zeros"
        return None

    def item_ids(self, path):
        """The keys of the ``ilst`` atom's children as mutagen names them (a freeform atom as
        ``----:mean:name``), read from the atom tree and the freeform atoms' own ``mean``/``name``."""
        with open(path, "rb") as f:
            return Counter(key for key, _atom in self._ilst(f))

    def item_values(self, path):
        """Each ``ilst`` child but ours, read from the atom tree: mutagen parses the values and
        renders them again, and some come back in another form that it reads as the same value (a
        one-byte tempo of 200 becomes ``FF C8``, the data atom's locale and version are zeroed, a
        ``name`` child of ``covr`` goes, the track number's extra fields are zeroed, a ``cpil`` of
        2 becomes 1). Only what every reader takes for the same value counts as equal: text stored
        as implicit (0) or UTF-8 (1), an integer of another width with the same unsigned value, a
        track or disc number pair whose extra fields are zero."""
        values: Counter = Counter()
        with open(path, "rb") as f:
            items = self._ilst(f)
            alone = sum(key in ("gnre", "\xa9gen") for key, _ in items) == 1
            for key, atom in items:
                if self._ours(key):
                    continue
                h = hashlib.sha256()
                end = atom.offset + atom.length
                genre = self._genre_text(f, atom) if key == "gnre" and alone else None
                if genre is not None:  # stands for the "©gen" text atom mutagen writes in its place
                    key, data = "\xa9gen", io.BytesIO(struct.pack(">I4sI4s", 16 + len(genre), b"data", 1, b"\0" * 4) + genre)
                    _mp4_item_digest(data, b"\xa9gen", 0, len(data.getbuffer()), h)
                else:
                    _mp4_item_digest(f, atom.name, end - atom.datalength, end, h)
                values[(key, h.hexdigest())] += 1
        return values

    @staticmethod
    def _genre_text(f, atom) -> bytes | None:
        """The genre name (UTF-8) of an ID3-style ``gnre`` atom that holds one data atom with a
        standard genre number and nothing else mutagen would drop (locale, version); else None."""
        from mutagen._constants import GENRES

        if atom.datalength != 18:
            return None
        f.seek(atom.offset + atom.length - atom.datalength)
        size, child, flags, locale, number = struct.unpack(">I4sI4sH", f.read(18))
        if size != 18 or child != b"data" or flags not in (0, 21) or any(locale) or not 1 <= number <= len(GENRES):
            return None
        return GENRES[number - 1].encode("utf-8")

    @staticmethod
    def _ilst(f) -> list[tuple[str, object]]:
        """(key as mutagen names it, mutagen's `Atom`) of each child of the ``ilst`` atom of the
        open file ``f``; none when the file has no ``ilst``."""
        from mutagen.mp4 import Atoms

        try:
            ilst = Atoms(f).path(b"moov", b"udta", b"meta", b"ilst")[-1]
        except KeyError:
            return []
        out = []
        for atom in ilst.children:
            name = atom.name
            if name == b"----":
                f.seek(atom.offset + atom.length - atom.datalength)
                parts = _mp4_children(f.read(atom.datalength))
                if b"mean" in parts and b"name" in parts:
                    name = b"----:" + parts[b"mean"][4:] + b":" + parts[b"name"][4:]
            out.append((name.decode("latin-1"), atom))
        return out

    def expected_item_ids(self, audio, version):
        tags = audio.tags
        if tags is None:
            return Counter()
        # one atom per key; an atom mutagen could not parse is written back as it was, unless a
        # parsed one took its key (mutagen keeps them in a private attribute)
        failed = {key: len(datas) for key, datas in getattr(tags, "_failed_atoms", {}).items() if key not in tags}
        return Counter(tags.keys()) + Counter(failed)

    def payload(self, f, size, h):
        """The ``mdat`` atoms, and what says how they decode: ``moov``'s timescale (``mvhd``) and tracks
        (`_mp4_tables`: sample descriptions, edit lists, sample tables with their chunk offsets
        made relative to the atom they point into) and fragments (``mvex``, ``moof``); not ``udta``
        nor ``meta`` (tags), nor padding. A tag write that grows ``moov`` or moves it in front of
        the audio shifts the chunk offsets and the audio together: the digest stays."""
        from mutagen.mp4 import Atoms

        top = Atoms(f).atoms
        targets = [(atom.offset, atom.offset + atom.length) for atom in top if atom.name in (b"mdat", b"moof")]
        moov = hashlib.sha256()  # (fed last: a tag editor may move moov before or after the audio)
        found = False
        for atom in top:
            start, end = atom.offset + atom.length - atom.datalength, atom.offset + atom.length
            if atom.name == b"mdat":
                _hash_range(f, start, end, h)
                found = True
            elif atom.name == b"moof":
                _mp4_tables(f, b"moof", start, end, h, targets)
            elif atom.name == b"moov":
                for name, child, child_end in _mp4_atoms(f, start, end):
                    if name == b"mvhd":  # its timescale, that of the edit lists
                        f.seek(child)
                        head = f.read(24)
                        moov.update(b"mvhd:" + head[20:24] if head[:1] == b"\x01" else b"mvhd:" + head[12:16])
                    elif name in (b"trak", b"mvex", None):
                        _mp4_tables(f, name or b"?", child, child_end, moov, targets)
        h.update(b"moov:" + moov.digest())
        return found


# -- helpers ------------------------------------------------------------------------------------


def _mp4_children(data: bytes) -> dict[bytes, bytes]:
    """The first child atom of each name in an MP4 atom's content ``data`` -> its content."""
    out: dict[bytes, bytes] = {}
    pos = 0
    while pos + 8 <= len(data):
        size, name = struct.unpack(">I4s", data[pos : pos + 8])
        if size < 8:
            break
        out.setdefault(name, data[pos + 8 : pos + size])
        pos += size
    return out


def _keep_cover_types(audio, path: str) -> None:
    """Give each cover of the loaded file ``audio`` the type its data atom has in the file at ``path``
    (the copy, not yet saved). mutagen reads a cover of a type other than JPEG (13) or PNG (14) as
    a JPEG and writes it back so: a BMP (27, as ffmpeg stores a BMP cover), a GIF (12), a cover of
    the implicit type (0); it writes back the type a cover object holds."""
    covers = audio.tags.get("covr") if audio.tags is not None else None
    if not covers:
        return
    with open(path, "rb") as f:
        found = [atom for key, atom in MP4Storage._ilst(f) if key == "covr"]
        if len(found) != 1:
            return  # (repeated atoms are refused beforehand: `MP4Storage.cannot_keep`)
        atom = found[0]
        f.seek(atom.offset + atom.length - atom.datalength)
        content = f.read(atom.datalength)
    kinds, pos = [], 0
    while pos + 16 <= len(content):  # (the data atoms, as mutagen reads them: a "name" child skipped)
        size, name, kind = struct.unpack(">I4sI", content[pos : pos + 12])
        if size < 8:
            return
        if name == b"data":
            kinds.append(kind)
        pos += size
    if len(kinds) == len(covers):
        for cover, kind in zip(covers, kinds):
            cover.imageformat = kind


_INTEGER_ITEMS = frozenset({b"tmpo", b"cpil", b"pgap", b"pcst", b"hdvd", b"stik", b"rtng", b"tves", b"tvsn", b"plID",
                            b"cnID", b"geID", b"atID", b"sfID", b"cmID", b"akID", b"shwm", b"\xa9mvc", b"\xa9mvi"})  # fmt: skip
"""ilst items whose value is a big-endian integer (or a flag), which mutagen writes with the integer
type (21) whatever type they had: stored as implicit (0), they read the same."""


def _mp4_item_digest(f, name: bytes, start: int, end: int, h) -> None:
    """Feed to the hash ``h`` the children of the ``ilst`` item atom ``name`` whose content spans
    ``start`` to ``end`` in the open file ``f``, data atoms in a normal form (`MP4Storage.item_values`)
    and every other child as it is. The values are streamed (a cover may be tens of megabytes)."""
    pos = start
    while pos + 8 <= end:
        f.seek(pos)
        size, child = struct.unpack(">I4s", f.read(8))
        if size < 8 or pos + size > end:
            break  # not a child atom: the rest is fed as it is, below
        if child != b"data" or size < 16:
            _feed(h, "<atom>")
            _hash_range(f, pos, pos + size, h)
            pos += size
            continue
        head = f.read(8)
        version, kind, locale = head[0], int.from_bytes(head[1:4], "big"), head[4:8]
        length = size - 16
        if kind == 0:  # implicit: the item's own type, read the same (an integer item's, or text)
            kind = 21 if name in _INTEGER_ITEMS else 1
        value = None
        if kind == 21 and length in (1, 2, 3, 4, 8):  # a big-endian integer: its unsigned value
            value = ("integer", int.from_bytes(f.read(length), "big"))
        elif kind == 1 and name in (b"trkn", b"disk") and 6 <= length <= 16:
            data = f.read(length)  # (0, number, total), trkn with a 16-bit 0 after
            value = ("pair", data[2:6]) if not any(data[:2]) and not any(data[6:]) else ("raw", data)
        _feed(h, ("<data>", version, kind, locale))
        if value is not None:
            _feed(h, value)
        else:
            _feed(h, length)
            _hash_range(f, pos + 16, pos + size, h)
        pos += size
    _feed(h, "<rest>")
    _hash_range(f, pos, end, h)


_MP4_PARENTS = frozenset({b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"mvex", b"moof", b"traf"})
"""The atoms of a track's or fragment's description whose content is atoms (walked by `_mp4_tables`)."""
_MP4_NOT_AUDIO = frozenset({b"udta", b"meta", b"free", b"skip", b"wide"})
"""Atoms that do not say how the audio decodes, which tag editors rewrite: tags and padding."""


def _mp4_atoms(f, start: int, end: int):
    """(name, content offset, end) of each atom from ``start`` to ``end`` in the open file ``f``;
    where the bytes left are not an atom that fits, (None, their offset, ``end``) ends them."""
    pos = start
    while pos < end:
        f.seek(pos)
        head = f.read(16)
        size, name = struct.unpack(">I4s", head[:8]) if len(head) >= 8 else (0, b"")
        header = 8
        if size == 1 and len(head) == 16:
            size, header = struct.unpack(">Q", head[8:16])[0], 16
        if size < header or pos + size > end:
            yield None, pos, end
            return
        yield name, pos + header, pos + size
        pos += size


def _mp4_tables(f, name: bytes, start: int, end: int, h, targets: list[tuple[int, int]], depth: int = 0) -> None:
    """Feed to the hash ``h`` the atom ``name`` whose content spans ``start`` to ``end`` in the open
    file ``f``, a part of a track's or fragment's description: its children's names and contents but
    tags and padding (`_MP4_NOT_AUDIO`), the file offsets of chunk offset tables (``stco``, ``co64``)
    and fragment headers (``tfhd``) as (which of ``targets``, offset in it) (`_mp4_where`), and
    ``tkhd``'s and ``mdhd``'s dates as zeros. Atoms
    nested deeper than any description nests them are hashed as they are."""
    h.update(b"<%s %d>" % (name, end - start))
    if name not in _MP4_PARENTS or depth > 8:
        f.seek(start)
        if name in (b"stco", b"co64") and end - start >= 8:
            head = f.read(8)
            width = 4 if name == b"stco" else 8
            count = min(struct.unpack(">I", head[4:8])[0], (end - start - 8) // width)
            offsets = struct.unpack(f">{count}{'I' if width == 4 else 'Q'}", f.read(count * width))
            h.update(head)
            h.update(_mp4_where(offsets, targets))
            _hash_range(f, start + 8 + count * width, end, h)
        elif name == b"tfhd" and end - start >= 16:
            head = f.read(16)
            if head[3] & 1:  # (flag base-data-offset-present)
                h.update(head[:8])
                h.update(_mp4_where(struct.unpack(">Q", head[8:16]), targets))
                _hash_range(f, start + 16, end, h)
            else:
                _hash_range(f, start, end, h)
        elif name in (b"tkhd", b"mdhd") and end - start >= 12:
            head = f.read(20)
            dates = 16 if head[:1] == b"\x01" else 8  # (creation and modification times, which editors may set)
            h.update(head[:4] + bytes(dates))
            _hash_range(f, start + 4 + dates, end, h)
        else:
            _hash_range(f, start, end, h)
        return
    for child, child_start, child_end in list(_mp4_atoms(f, start, end)):
        if child not in _MP4_NOT_AUDIO:
            _mp4_tables(f, child or b"?", child_start, child_end, h, targets, depth + 1)
    h.update(b"</%s>" % name)


def _mp4_where(offsets, targets: list[tuple[int, int]]) -> bytes:
    """File ``offsets`` as (index of the span of ``targets`` holding it, offset from its start), packed;
    (-1, the offset) for one outside them. Equal before and after a write that moves the spans."""
    import bisect

    starts = [start for start, _end in targets]
    if offsets:
        i = bisect.bisect_right(starts, min(offsets)) - 1
        if i >= 0 and max(offsets) < targets[i][1]:  # (as a rule: all in one mdat)
            return struct.pack(">q", i) + struct.pack(f">{len(offsets)}q", *(o - starts[i] for o in offsets))
    out = []
    for o in offsets:
        i = bisect.bisect_right(starts, o) - 1
        out += (i, o - starts[i]) if i >= 0 and o < targets[i][1] else (-1, o)
    return struct.pack(f">{len(out)}q", *out)
