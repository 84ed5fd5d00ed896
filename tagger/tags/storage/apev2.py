"""WavPack, Monkey's Audio, Musepack, TAK: tagger's fields as APEv2 text items (``INSTRUMENTS``, ...),
several values joined by NUL bytes as the APEv2 specification has it.

mutagen rewrites the whole APEv2 tag at the end of the file (a header and a footer, the items sorted
by size); it drops an ID3v1 tag after it, or, where there is no APEv2 tag yet, buries the ID3v1 tag
in front of the new one: `APEv2Storage.save` sets the ID3v1 tag aside and puts it back after the
new tag. It keeps only part of an item's flags (not "read only"), writes the header and footer anew
(flags "has a header" alone, zero reserved bytes) and drops 24 bytes before the tag that begin with
``APETAGEX`` (its repair of old PyMusepack writes). So an ID3v1 tag behind a Lyrics3 or extended
ID3v1 block, an APEv1 tag (not UTF-8), items that mutagen would store otherwise and a header or
footer it would write otherwise (`_frame_changes`) are refused (`APEv2Storage.cannot_keep`), and
every other item's stored bytes are compared before and after (`APEv2Storage.item_values`). A
header added to a tag without one and the items' new order (by size) lose nothing.

ffmpeg (ffprobe, and the players built on it) shows an ID3v2 tag in front of the stream (some rippers
and taggers write one) only while the APEv2 tag shows nothing: where the APEv2 tag a write makes would
be the file's first, it carries the ID3v2 tag's fields (`front_copies`, folded into the loaded tag
by `APEv2Storage.add_copies`) with ``INSTRUMENTS_COPIES`` listing their keys, which `untag` removes with
tagger's own while they are still the same (`APEv2Storage.copies_left`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import re
import struct
from collections import Counter
from typing import NamedTuple

from tagger.tags.fields import INSTRUMENTS_COPIES, Raw, ours
from tagger.tags.storage._bytes import _hash_range, _id3v2_end
from tagger.tags.storage.base import Format, Storage, register

_PREAMBLE = b"APETAGEX"
_HAS_HEADER = 1 << 31
_IS_HEADER = 1 << 29
_FOOTER = 32
_ID3V1 = 128


class _APETag(NamedTuple):
    """Where a file's APE tag lies, read from its bytes."""

    start: int
    """First byte of the tag (its header, or its first item where it has none)."""
    end: int
    """Byte after its footer (after its last item for a tag at the start without a footer)."""
    version: int
    items: list[tuple[bytes, int, bytes]]
    """(key, flags, value) of each item, in the file's order."""
    header: bytes | None
    """Its header's 32 bytes (None where it has none)."""
    footer: bytes | None
    """Its footer's 32 bytes (None for a tag at the start without one)."""


def _find_tag(f, size: int) -> _APETag | None:
    """The file's APE tag: before its last 32 bytes (a footer), before an ID3v1 tag, or at its start
    (a header); None when it has none. Raises ValueError for a tag whose sizes do not fit the file."""
    for footer in (size - _FOOTER, size - _ID3V1 - _FOOTER):
        if footer < 0:
            continue
        f.seek(footer)
        block = f.read(_FOOTER)
        if block[:8] == _PREAMBLE:
            version, tag_size, count, flags = struct.unpack("<4I", block[8:24])
            end = footer + _FOOTER
            first = end - tag_size
            start = first - (_FOOTER if flags & _HAS_HEADER else 0)
            if first < 0 or start < 0:
                raise ValueError("its APE tag says it is larger than the file")
            header = None
            if start < first:  # mutagen takes these 32 bytes for the header, whatever they hold
                f.seek(start)
                header = f.read(_FOOTER)
                if header[:8] != _PREAMBLE:
                    raise ValueError("its APE tag's footer says it has a header, and the 32 bytes before its items "
                                     "are not one: a rewrite would cut them off the audio")  # fmt: skip
            if start >= 24:  # (mutagen's repair of old PyMusepack writes, which left 24 bytes of a header)
                f.seek(start - 24)
                if f.read(8) == _PREAMBLE:
                    raise ValueError("the 24 bytes before its APE tag begin as an APE tag does (what old PyMusepack "
                                     "versions left of a tag's header), and a rewrite would drop them")  # fmt: skip
            return _APETag(start, end, version, _items(f, first, end - _FOOTER, count), header, block)
    f.seek(0)
    block = f.read(_FOOTER)
    if block[:8] == _PREAMBLE and len(block) == _FOOTER and struct.unpack("<4I", block[8:24])[3] & _IS_HEADER:
        version, tag_size, count, _flags = struct.unpack("<4I", block[8:24])
        end = _FOOTER + tag_size
        if end > size:
            raise ValueError("its APE tag says it is larger than the file")
        f.seek(end - _FOOTER)
        footer = f.read(_FOOTER)
        if footer[:8] != _PREAMBLE or end - _FOOTER < _FOOTER:  # (the size counts it, as mutagen reads it)
            footer = None
        items = _items(f, _FOOTER, end - (_FOOTER if footer else 0), count)
        return _APETag(0, end, version, items, block, footer)
    return None


def _items(f, start: int, end: int, count: int) -> list[tuple[bytes, int, bytes]]:
    f.seek(start)
    data = f.read(end - start)
    items, pos = [], 0
    for _ in range(count):
        if pos + 8 > len(data):
            raise ValueError("its APE tag's items run past the tag")
        length, flags = struct.unpack_from("<2I", data, pos)
        nul = data.find(b"\0", pos + 8)
        if nul < 0 or nul + 1 + length > len(data):
            raise ValueError("its APE tag's items run past the tag")
        items.append((data[pos + 8 : nul], flags, data[nul + 1 : nul + 1 + length]))
        pos = nul + 1 + length
    if pos != len(data):  # mutagen reads `count` items, and a rewrite drops what follows them
        raise ValueError(f"its APE tag's size counts {len(data) - pos} bytes more than its {count} item(s) hold (a "
                         "wrong size or item count): a rewrite would drop them")  # fmt: skip
    return items


def _key(name: bytes) -> str:
    return name.decode("latin-1")


def _ours(key: str, kind: int) -> bool:
    """An item of one of tagger's fields: a text item (kind 0) named like one in any case. A binary or
    link item of such a name is someone else's (`APEv2Storage.lookalikes`): kept and checked."""
    return kind == 0 and ours(key, any_case=True) is not None


_FRONT_KEYS = {
    "TIT2": "Title", "TPE1": "Artist", "TALB": "Album", "TPE2": "Album Artist", "TRCK": "Track", "TPOS": "Disc",
    "TDRC": "Year", "TCON": "Genre", "TCOM": "Composer", "TPE3": "Conductor", "TEXT": "Lyricist", "TIT3": "Subtitle",
    "TBPM": "BPM", "TSRC": "ISRC", "TCOP": "Copyright", "TLAN": "Language", "TSSE": "Encoder",
}  # fmt: skip
"""The ID3v2 text frames an APEv2 tag carries under a key of its own (mutagen's, foobar2000's and
Mp3tag's names; TagLib reads them as the same properties: ``Year`` as DATE, ``Track`` as TRACKNUMBER,
``Album Artist`` as ALBUMARTIST). A ``TXXX`` frame is carried under its description, a comment
(``COMM``) as ``Comment`` (under its description where it has one, as ffmpeg names it), any other
text frame and lyrics under the name ffmpeg shows them by (`_ffmpeg_name`)."""

_FFMPEG_NAMES = {
    "TALB": "album", "TCOM": "composer", "TCON": "genre", "TCOP": "copyright", "TENC": "encoded_by",
    "TIT2": "title", "TLAN": "language", "TPE1": "artist", "TPE2": "album_artist", "TPE3": "performer",
    "TPOS": "disc", "TPUB": "publisher", "TRCK": "track", "TSSE": "encoder", "TCMP": "compilation",
    "TDRC": "date", "TDRL": "date", "TYER": "date", "TDAT": "date", "TDEN": "creation_time",
    "TSOA": "album-sort", "TSOP": "artist-sort", "TSOT": "title-sort", "TIT1": "grouping",
    "TAL": "album", "TCO": "genre", "TCP": "compilation", "TT2": "title", "TEN": "encoded_by", "TP1": "artist",
    "TP2": "album_artist", "TP3": "performer", "TRK": "track", "TYE": "date", "TDA": "date",
}  # fmt: skip
"""The names ffmpeg (5.1: libavformat/id3v2.c's ``ff_id3v2_34_metadata_conv``, ``ff_id3v2_4_metadata_conv``
and ``id3v2_2_metadata_conv``, applied to a tag of any version; an ID3v2.3 ``TYER`` and ``TDAT``
merged into one date) shows an ID3v2 text frame by; any other by its frame id (``TLEN``, ``TKEY``)."""

_BY_MUTAGEN = {"TXXX", "COMM", "TYER", "TDAT", "TIME", *_FRONT_KEYS}
"""The frames carried as mutagen reads them as ID3v2.4 (a v2.3 date from ``TYER``, ``TDAT`` and ``TIME``,
a genre number by its name); the other text frames are carried as they are in the file, by their
own ids, as ffmpeg shows them (mutagen makes an ID3v2.3 ``TORY`` a ``TDOR``, drops a ``TRDA``)."""


@functools.cache
def _v22_ids() -> dict[str, str]:
    """The ID3v2.2 frame id (``TLE``) of each frame mutagen reads from a v2.2 tag by its v2.3 id (``TLEN``)."""
    from mutagen.id3 import Frames_2_2

    return {cls.__base__.__name__: name for name, cls in Frames_2_2.items()}


def _ffmpeg_name(frame, *, v22: bool = False) -> str:
    """The name ffprobe shows the ID3v2 text frame or lyrics ``frame`` (mutagen's, as read from the file) by;
    ``v22``: of an ID3v2.2 tag, whose frames ffmpeg names by their v2.2 ids (``TLE``, ``TT1``; mutagen reads
    them by their v2.3 ids)."""
    fid = _v22_ids().get(frame.FrameID, frame.FrameID) if v22 else frame.FrameID
    if fid == "USLT":  # ("lyrics-" and the description, "-", the language, as libavformat's read_uslt)
        return f"lyrics-{frame.desc + '-' if frame.desc else ''}{frame.lang.split(chr(0))[0]}"
    return _FFMPEG_NAMES.get(fid, fid)


_FFMPEG_GENRES = {40: "AlternRock", 59: "Gangsta", 84: "Fast Fusion", 129: "Hardcore Techno", 133: "Negerpunk",
                  146: "Jpop"}  # fmt: skip
"""ffmpeg's names (5.1, libavformat/id3v1.c) of the ID3v1 genre numbers that mutagen names otherwise
(``Alt. Rock``, ``Gangsta Rap``, ``Fast-Fusion``, ``Hardcore``, ``Afro-Punk``, ``JPop``)."""


def _ffmpeg_genre(text: str) -> str:
    """The genre ffmpeg shows of a ``TCON`` frame whose first value is ``text`` (libavformat's read_ttag):
    a number read as C's ``sscanf`` reads ``"(%d)"`` or ``"%d"`` (``(17)``, ``17``, ``(17)Rock``, ``17abc``)
    from 0 to 191 by its ID3v1 name, as ffmpeg names it; anything else as it is (``(RX)``, ``(CR)``,
    ``(200)``, which mutagen reads as ``Remix``, ``Cover``, ``Unknown``)."""
    from mutagen.id3 import TCON

    found = re.match(r"\(\s*([+-]?\d+)", text) or re.match(r"\s*([+-]?\d+)", text)
    number = int(found.group(1)) if found else -1
    return _FFMPEG_GENRES.get(number, TCON.GENRES[number]) if 0 <= number < len(TCON.GENRES) else text


def _ffmpeg_date(raw) -> str | None:
    """The date ffmpeg shows of the ID3v2.2 or v2.3 tag ``raw`` (mutagen's, as in the file; libavformat's
    merge_date): its ``TYER`` of 4 digits, ``-MM-DD`` from a ``TDAT`` of 4, then `` HH:MM`` from a ``TIME``
    of 4 (mutagen's date adds ``:00``); None where its ``TYER`` is not 4 digits (ffmpeg merges nothing)."""

    def four(fid: str) -> str | None:
        frame = raw.get(fid)
        text = str(frame.text[0]) if frame is not None and frame.text else ""
        return text if len(text) == 4 and text.isascii() and text.isdigit() else None

    year, day, time = four("TYER"), four("TDAT"), four("TIME")
    if year is None:
        return None
    return year + (f"-{day[2:]}-{day[:2]}" + (f" {time[:2]}:{time[2:]}" if time else "") if day else "")


def _dates_left(raw) -> set[str]:
    """The date frames (``TYER``, ``TDAT``, ``TIME``) of the ID3v2.2 or v2.3 tag ``raw`` (mutagen's, as in
    the file) that ffmpeg shows by their own ids, not merged into its date (`_ffmpeg_date`: a year not
    of 4 digits, a day or time not of 4 or without the rest), and that mutagen's date (the ``TDRC`` it
    makes of them, carried as ``Year``) leaves out too (it drops a year not ``YYYY`` or ``YYYY-MM-DD``,
    a day not ``DDMM``, a time not ``HHMM`` or without a day): carried by their ids, as ffmpeg shows them."""

    def text(fid: str) -> str:
        frame = raw.get(fid)
        return str(frame.text[0]) if frame is not None and frame.text else ""

    def four(fid: str) -> bool:
        return len(text(fid)) == 4 and text(fid).isascii() and text(fid).isdigit()

    year = re.fullmatch(r"([0-9]{4})(-[0-9]{2}-[0-9]{2})?", text("TYER"))
    day = bool(re.fullmatch(r"[0-9]{4}", text("TDAT")))
    shown = {"TYER": not four("TYER"), "TDAT": not (four("TYER") and four("TDAT")),
             "TIME": not (four("TYER") and four("TDAT") and four("TIME"))}  # fmt: skip
    year = year if "TDRC" not in raw else None  # (mutagen keeps a TDRC the tag has, and drops these)
    carried = {"TYER": bool(year), "TDAT": bool(year) and day,
               "TIME": bool(year) and (day or bool(year and year.group(2))) and bool(re.fullmatch(r"[0-9]{4}", text("TIME")))}  # fmt: skip
    return {fid for fid in shown if fid in raw and shown[fid] and not carried[fid]}


def _frame_values(frame) -> list[str]:
    """The values of the ID3v2 text frame or lyrics ``frame``, the first the one ffmpeg shows (a list
    of people, ``TIPL``, ``TMCL``, v2.3 ``IPLS``: each role and name, in turn)."""
    if hasattr(frame, "people"):
        values = [part for pair in frame.people for part in pair]
    else:
        values = frame.text if isinstance(frame.text, list) else [frame.text]
    return [str(value) for value in values if str(value)]


class _Copies(NamedTuple):
    """What the APEv2 tag a write adds carries of the file's ID3v2 tag in front (`front_copies`)."""

    items: list[tuple[str, list[str]]]
    """(APEv2 key, values) of each field, in the ID3v2 tag's order."""
    refused: str | None
    """Why its fields cannot all be carried (then the file is left unchanged); None where they can."""


def front_copies(path: str) -> _Copies:
    """The fields of the ID3v2 tag in front of the stream of the file ``path`` as APEv2 items.

    ffmpeg (ffprobe, and the players built on it) shows that tag only while the file's APEv2 tag
    shows nothing: the fields of its text frames, its comments and its lyrics. The frames with an
    APEv2 name (`_FRONT_KEYS`), ``TXXX`` and ``COMM`` are read as ID3v2.4 (v2.2 and v2.3 frames as
    mutagen converts them: a v2.3 ``TYER``, ``TDAT`` and ``TIME`` one date, its first value as ffmpeg
    merges them, `_ffmpeg_date`, those it shows apart by their ids, `_dates_left`; a genre number,
    ``(17)``, by its name, ``Rock``, its first value as ffmpeg reads it, `_ffmpeg_genre`); any other text frame (``TENC``,
    ``TLEN``, ``TKEY``, ``TSOP``...) and lyrics (``USLT``) are carried as they are in the file, under
    the name ffprobe shows them by (`_ffmpeg_name`: ``encoded_by``, ``TLEN``, ``lyrics-eng``; an
    ID3v2.2 tag's by their v2.2 ids, ``TLE``, and its lyrics, which ffmpeg does not show, not at all), all
    their values (ffprobe shows the first, before and after). The tag's other frames (a picture, a
    URL, private data, a rating, a file id) no reader of these formats shows (ffmpeg reads a picture
    of an ID3v2 tag in an MP3, AAC, TTA or WAV file alone, TagLib and the WavPack tools no ID3v2 tag
    at all), before a write or after it: they stay in the ID3v2 tag, which is kept byte for byte.
    A description that is no APEv2 key, two frames of one APEv2 key or that ffmpeg shows under one
    name (``TDRC`` and ``TDRL``, both ``date``: it shows one of them), several ID3v2 tags in front
    holding frames and a tag mutagen cannot read are refused: their fields would change in ffmpeg's
    view. ``TXXX`` frames named like tagger's fields are not carried (tagger's own fields in the
    APEv2 tag take their place)."""
    import mutagen
    from mutagen.apev2 import is_valid_apev2_key
    from mutagen.id3 import ID3

    from tagger.containers import id3v2_tags

    tags = []
    with open(path, "rb") as f:
        for data in id3v2_tags(f):
            try:  # (as mutagen converts it to ID3v2.4, and as it is in the file)
                tags.append((ID3(io.BytesIO(data), load_v1=False), ID3(io.BytesIO(data), load_v1=False, translate=False)))
            except (mutagen.MutagenError, OSError, ValueError, struct.error, EOFError, IndexError, KeyError) as exc:
                return _Copies([], f"its ID3v2 tag in front cannot be read ({exc or type(exc).__name__})")
    tags = [(tag, raw) for tag, raw in tags if len(tag) or tag.unknown_frames]
    if len(tags) > 1:
        return _Copies([], f"it starts with {len(tags)} ID3v2 tags holding frames, one after the other")
    tag, raw = tags[0] if tags else (None, None)
    fields = []  # (the frame's name, its APEv2 key, the name ffmpeg shows it by, its values)
    for frame in tag.values() if tag is not None else []:
        fid = frame.FrameID
        if fid == "TXXX":
            if ours(frame.desc, any_case=True):
                continue
            key = shown = frame.desc
        elif fid == "COMM":
            key, shown = frame.desc or "Comment", frame.desc or "comment"
        elif fid in _FRONT_KEYS:
            key, shown = _FRONT_KEYS[fid], _FFMPEG_NAMES.get(fid, fid)
        else:
            continue
        values = _frame_values(frame)
        # (the first value, which ffprobe shows, as ffmpeg reads it from the file where mutagen reads it otherwise)
        if values and fid == "TCON" and raw.get("TCON") is not None and str(raw["TCON"].text[0]):
            values[0] = _ffmpeg_genre(str(raw["TCON"].text[0]))
        elif values and fid == "TDRC" and raw.version < (2, 4, 0) and "TDRC" not in raw:
            values[0] = _ffmpeg_date(raw) or values[0]
        fields.append((frame.HashKey, key, shown, values))
    v22 = raw is not None and raw.version < (2, 3, 0)
    dates = _dates_left(raw) if raw is not None and raw.version < (2, 4, 0) else set()
    for frame in raw.values() if raw is not None else []:
        fid = frame.FrameID  # (mutagen reads a v2.2 frame by its v2.3 id: TLEN for TLE)
        if fid in dates:  # (by its own id, as ffmpeg shows a date frame it does not merge)
            name = _v22_ids().get(fid, fid) if v22 else fid
            fields.append((frame.HashKey, name, name, _frame_values(frame)))
            continue
        if fid in _BY_MUTAGEN or not (fid.startswith("T") or fid == "USLT" and not v22):  # (no v2.2 lyrics in ffmpeg)
            continue
        name = _ffmpeg_name(frame, v22=v22)
        fields.append((frame.HashKey, name, name, _frame_values(frame)))
    items: dict[str, tuple[str, list[str]]] = {}
    names: dict[str, str] = {}
    refused: list[str] = []
    for name, key, shown, values in fields:
        if not values:
            continue
        if not is_valid_apev2_key(key):
            refused.append(f"{name} (its name is no possible APEv2 key)")
        elif key.lower() in items:
            refused.append(f"{name} (a second field of the APEv2 key {key!r})")
        elif shown.lower() in names:
            refused.append(f"{name} (ffmpeg shows it and {names[shown.lower()]} under one name, {shown!r})")
        else:
            items[key.lower()] = (key, values)
            names[shown.lower()] = name
    for frame in tag.unknown_frames if tag is not None else []:
        fid = frame[:4].decode("latin-1")
        if fid.startswith("T") or fid in ("COMM", "USLT"):
            refused.append(f"{fid} (mutagen cannot read it)")
    if refused:
        return _Copies([], ", ".join(refused))
    return _Copies(list(items.values()), None)


def _id3v1_not_carried(fields: dict, copies: _Copies) -> list[str]:
    """The fields of an ID3v1 tag (``fields``: mutagen's `ParseID3v1`) that the copies of the ID3v2 tag in
    front (``copies``) do not show as they are: a value the copy's first value is not (or does not
    begin with, where the ID3v1 tag cut it at its 28 or 30 bytes), a track number or a year it does
    not begin with, a genre of another name."""
    shown = {key.lower(): values[0] for key, values in copies.items}
    missing = []
    for fid, frame in fields.items():
        v1 = frame.genres[0] if fid == "TCON" and frame.genres else str(frame.text[0]) if frame.text else ""
        v2 = shown.get("comment" if fid == "COMM" else _FRONT_KEYS.get(fid, "").lower(), "")
        if fid == "TRCK":
            same = v2.split("/")[0].strip().lstrip("0") == v1.lstrip("0")
        elif fid == "TDRC":
            same = v2[:4] == v1
        elif fid == "TCON":  # (its number by mutagen's name or ffmpeg's, which the copy's first value has)
            same = v2 in (v1, _ffmpeg_genre(str(frame.text[0]) if frame.text else ""))
        else:
            cut = len(v1.encode("latin-1", "replace")) >= 28
            same = v2 == v1 or (cut and v2.startswith(v1))
        if not same:
            missing.append(fid)
    return missing


def _copies_shown(tag: _APETag | None) -> bool:
    """Whether the APEv2 tag ``tag`` (None: there is none) shows nothing but tagger's fields, so that
    a write's tag carries the fields of an ID3v2 tag in front (`front_copies`)."""
    return tag is None or all(_ours(_key(key), flags >> 1 & 3) for key, flags, _value in tag.items)


def _copy_items(path: str, tag: _APETag | None) -> list[tuple[bytes, int, bytes]]:
    """(key, flags, value) of the items the APEv2 tag of a write of the file ``path`` carries of its
    ID3v2 tag in front, as mutagen writes them (text items); none where its tag ``tag`` shows other
    items or the fields are refused."""
    if not _copies_shown(tag):
        return []
    return [(key.encode(), 0, "\0".join(values).encode()) for key, values in _marked(front_copies(path).items)]


def _marked(items: list[tuple[str, list[str]]]) -> list[tuple[str, list[str]]]:
    """The copies ``items`` (APEv2 key, values) a write adds and, where there are any, the item that lists
    their keys (`INSTRUMENTS_COPIES`): the file's record that tagger wrote them (`APEv2Storage.copies_left`)."""
    return [*items, (INSTRUMENTS_COPIES, [key for key, _values in items])] if items else []


def _is_marker(key: str, kind: int) -> bool:
    """The item (text) that lists the copies tagger added (`INSTRUMENTS_COPIES`, any case)."""
    return kind == 0 and key.upper() == INSTRUMENTS_COPIES


@register(
    Format("WavPack", "WavPack", (".wv",), load=lambda: ape_type("WavPack")),
    Format("MonkeysAudio", "Monkey's Audio", (".ape",), load=lambda: ape_type("MonkeysAudio")),
    Format("Musepack", "Musepack", (".mpc",), load=lambda: ape_type("Musepack")),
    Format("TAK", "TAK", (".tak",), load=lambda: ape_type("TAK")),
)
class APEv2Storage(Storage):
    """APEv2 text items named like the fields (the keys ignore case), one item per field with its
    values joined by NUL bytes; the audio is every byte outside the APEv2 tag."""

    kind = "apev2"

    def read(self, tags) -> Raw:
        from mutagen.apev2 import TEXT

        raw: Raw = {}
        for key, value in tags.items():
            name = ours(key, any_case=True)
            if name and value.kind == TEXT:
                raw.setdefault(name, []).extend(v for v in value if v)
        return raw

    def lookalikes(self, tags):
        """Items named like ours that hold no text (a binary or a link item): someone else's."""
        from mutagen.apev2 import TEXT

        return (key for key, value in tags.items() if ours(key, any_case=True) and value.kind != TEXT)

    def write(self, tags, raw: Raw) -> None:
        for key in [k for k, value in tags.items() if _ours(k, value.kind)]:
            del tags[key]
        for name, values in raw.items():
            if values:
                tags[name] = list(values)

    def save(self, audio, path, *, version, original):
        # mutagen writes the tag at the very end, dropping an ID3v1 tag after the old one (or burying
        # one that ends a file without an APE tag): it is set aside and put back after the new tag,
        # where the APEv2 specification has it
        with open(path, "r+b") as f:
            size = f.seek(0, 2)
            id3v1 = _id3v1_after(f, size, _find_tag(f, size))
            if id3v1:
                f.truncate(size - len(id3v1))
        if audio.tags is not None and not len(audio.tags):
            audio.delete()  # nothing left in the APE tag (tagger created it): remove the tag altogether
        else:
            audio.save()
        if id3v1:
            with open(path, "ab") as f:
                f.write(id3v1)

    def add_copies(self, audio, path):
        """The fields of the ID3v2 tag in front of the stream (`front_copies`) added to the loaded APEv2
        tag as text items, where that tag shows nothing but tagger's fields (or the file has none):
        ffmpeg shows the ID3v2 tag only while the APEv2 tag shows nothing, and a write's tag would hide
        it. ``INSTRUMENTS_COPIES`` lists their keys (`_marked`). The ID3v2 tag itself is kept byte for byte."""
        with open(path, "rb") as f:
            try:
                tag = _find_tag(f, f.seek(0, 2))
            except ValueError:  # (`cannot_keep` says it)
                return
        if not _copies_shown(tag):
            return
        copies = front_copies(path)
        if copies.refused or not copies.items:
            return
        if audio.tags is None:
            audio.add_tags()
        for key, values in _marked(copies.items):
            audio.tags[key] = values

    def copies_left(self, audio, path):
        # the copies a write added (`add_copies`) are those INSTRUMENTS_COPIES lists: where the APEv2 tag
        # holds nothing but tagger's fields, that list and the copies it names, each still the same, a
        # removal removes them, and the tag, as it was missing; otherwise the copies stay (another
        # program's since) and the list goes with tagger's fields. Without the list every item stays: a
        # user's own items equal to the ID3v2 tag's fields (some taggers write both) look the same
        from mutagen.apev2 import TEXT

        if audio.tags is None:
            return []
        marker = next((key for key, value in audio.tags.items() if _is_marker(key, value.kind)), None)
        if marker is None:
            return []
        listed = {key.lower() for key in audio.tags[marker]}
        rest = {key.lower(): (value.kind, list(value) if value.kind == TEXT else None)
                for key, value in audio.tags.items() if not _ours(key, value.kind) and key != marker}  # fmt: skip
        copies = front_copies(path)
        made = {key.lower(): (TEXT, values) for key, values in copies.items}
        if not rest or copies.refused or rest.keys() != listed or rest != made:
            return [marker.lower()]
        return [*sorted(rest), marker.lower()]

    def other_items(self, audio):
        return sorted((key.lower(), (value.kind, value.value)) for key, value in audio.tags.items()
                      if not _ours(key, value.kind))  # fmt: skip

    def cannot_keep(self, audio, path, version):
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            try:
                tag = _find_tag(f, size)
            except ValueError as exc:
                return str(exc)
            if tag is None and _id3v1_after(f, size, tag) and size >= _ID3V1 + 9:
                # (mutagen finds an APE tag in front of a Lyrics3v2 tag; other readers look behind an
                # extended ID3v1 block: a new tag between them and the ID3v1 tag would sit beside an old one)
                f.seek(size - _ID3V1 - 9)
                lyrics = f.read(9) in (b"LYRICS200", b"LYRICSEND")
                f.seek(max(size - _ID3V1 - 227, 0))
                if lyrics or (size >= _ID3V1 + 227 and f.read(4) == b"TAG+"):
                    block = "a Lyrics3" if lyrics else "an extended ID3v1 (TAG+)"
                    return (f"it ends with an ID3v1 tag behind {block} block, in front of which a rewrite would "
                            "add its APEv2 tag (where an old one may lie)")  # fmt: skip
            id3v1 = _id3v1_after(f, size, tag)
            if id3v1 and (tag is None or not tag.items):
                from mutagen.id3 import ParseID3v1

                fields = ParseID3v1(id3v1) or {}
                # (TagLib shows the first of the APEv2 and ID3v1 tags that holds anything: the copies of
                # an ID3v2 tag in front, `add_copies`, may show what the ID3v1 tag shows)
                if fields and _id3v1_not_carried(fields, front_copies(path)):
                    shown = ", ".join(sorted(fields))
                    return (f"an ID3v1 tag at its end holds its fields ({shown}) and its APEv2 tag none: TagLib shows "
                            "them only while the APEv2 tag is empty, so tagger's fields would hide them")  # fmt: skip
        if tag is None or not tag.items:
            refused = front_copies(path).refused  # (a tag with tagger's fields already hides the ID3v2 tag)
            if refused:
                return (f"the ID3v2 tag in front of its stream holds fields that its APEv2 tag cannot carry as "
                        f"they are ({refused}): ffmpeg shows that tag only while the APEv2 tag is empty, so "
                        "tagger's fields would hide them")  # fmt: skip
        if tag is None:
            return None
        if tag.version != 2000:
            return f"its APE tag is version {tag.version / 1000:g}, which a rewrite would convert to APEv2"
        changes = _frame_changes(tag)
        if changes:
            return changes
        kept = Counter(_written(key, value) for key, value in ([] if audio.tags is None else audio.tags.items())
                       if not _ours(key, value.kind))  # fmt: skip
        found = Counter(item for item in tag.items if not _ours(_key(item[0]), item[1] >> 1 & 3))
        found.update(_copy_items(path, tag))  # (what `add_copies` added to the loaded tag)
        changed = sorted({_key(key) for key, _flags, _value in (found - kept) + (kept - found)})
        if not changed:
            return None
        what = ", ".join(map(repr, changed[:8])) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        return (f"its APEv2 tag has items that a rewrite would change or drop (flags mutagen does not keep, "
                f"text that is not UTF-8, repeated keys): {what}")  # fmt: skip

    def item_values(self, path):
        """(key, flags and a digest of the value) of each item of the APEv2 tag but ours, from the
        file's bytes."""
        with open(path, "rb") as f:
            tag = _find_tag(f, f.seek(0, 2))
        values: Counter = Counter()
        # (with the items a write adds as copies of the ID3v2 tag in front, where the tag shows no other
        # item: the same before a write that adds them and after it, before an untag that removes them
        # with the tag and after it)
        # (not the list of the copies, INSTRUMENTS_COPIES, which an untag removes where the copies stay:
        # tagger's, compared with the other tags, `other_tags`)
        for key, flags, value in ([] if tag is None else tag.items) + _copy_items(path, tag):
            if not _ours(_key(key), flags >> 1 & 3) and not _is_marker(_key(key), flags >> 1 & 3):
                values[(_key(key), flags, hashlib.sha256(value).hexdigest())] += 1
        return values

    def payload(self, f, size, h):
        # every byte but the APE tag and an ID3v1 tag after it (or after the audio where there is
        # none): tags other programs rewrite or drop (mutagen drops it as it rewrites the APE tag)
        tag = _find_tag(f, size)
        end = size - len(_id3v1_after(f, size, tag))
        if tag is None:
            _hash_range(f, 0, end, h)
        else:
            _hash_range(f, 0, tag.start, h)
            _hash_range(f, tag.end, end, h)
        return True


def trailing_tag_start(f, end: int) -> int | None:
    """Where the APEv2 tag that ends the open file ``f``'s first ``end`` bytes begins (its header,
    or its items where it has none), read from its footer; None where no such tag ends there or it
    does not fit (an MP3's tag of MP3Gain or foobar2000, before an ID3v1 tag or at the end)."""
    try:
        tag = _find_tag(f, end)
    except ValueError:
        return None
    return None if tag is None or tag.footer is None or tag.end != end else tag.start


def ape_tag_damage(path: str) -> str | None:
    """Why the APE tag at the end or the start of the file ``path`` does not fit it (`_find_tag`'s
    words: a tag that says it is larger than the file, items that run past it), read from its bytes;
    None where it fits or there is none. mutagen says ``[Errno 22] Invalid argument`` of a tag that
    declares 2 GB, and nothing of a tag whose items run past it."""
    try:
        with open(path, "rb") as f:
            _find_tag(f, f.seek(0, 2))
    except ValueError as exc:
        return str(exc)
    except OSError:
        return None
    return None


_STREAMS = {b"wvpk": "WavPack", b"MAC ": "MonkeysAudio", b"MP+": "Musepack", b"MPCK": "Musepack", b"tBaK": "TAK"}
"""The first bytes of each stream whose file carries an APEv2 tag -> its mutagen type name."""


def ape_file_type(path: str) -> type | None:
    """The mutagen class (`ape_type`) of a WavPack, Monkey's Audio, Musepack or TAK file, told from the
    stream's first bytes at the start of the file or behind ID3v2 tags there (some taggers put one
    in front; the decoders skip it, and mutagen takes such a file for an MP3); None for another file."""
    try:
        with open(path, "rb") as f:
            f.seek(_id3v2_end(f))
            head = f.read(4)
    except OSError:
        return None
    name = next((name for magic, name in _STREAMS.items() if head.startswith(magic)), None)
    return None if name is None else ape_type(name)


@functools.cache
def ape_type(name: str) -> type:
    """mutagen's class of that name (``WavPack``, ``MonkeysAudio``, ``Musepack``, ``TAK``), reading the stream
    behind ID3v2 tags at the start of the file, and a WavPack rate outside WavPack's table of 15
    (176.4 kHz hi-res, 352.8 and 384 kHz DXD: the header's rate index says "custom") from the first
    block's ID_SAMPLE_RATE sub-block, where mutagen fails with ``list index out of range``."""
    import importlib

    module = {"WavPack": "wavpack", "MonkeysAudio": "monkeysaudio", "Musepack": "musepack", "TAK": "tak"}[name]
    base = getattr(importlib.import_module(f"mutagen.{module}"), name)

    class Info(base._Info):
        def __init__(self, fileobj):
            start = _id3v2_end(fileobj)
            fileobj.seek(start)
            try:
                super().__init__(fileobj)
            except IndexError:
                if name != "WavPack":
                    raise
                fileobj.seek(start)
                head = fileobj.read(32)
                block_size, version, total, flags = struct.unpack_from("<IH2xI8xI", head, 4)
                self.version = version
                self.channels = 1 if flags & 4 else 2
                self.bits_per_sample = ((flags & 3) + 1) * 8
                self.sample_rate = _custom_rate(fileobj.read(min(max(block_size - 24, 0), 1 << 16)))
                known = total != 0xFFFFFFFF and self.sample_rate
                self.length = total / self.sample_rate if known else 0.0

    return type(name, (base,), {"_Info": Info, "__module__": __name__, "__qualname__": name})


def _custom_rate(subblocks: bytes) -> int:
    """The rate of a WavPack block's ID_SAMPLE_RATE (0x27) metadata sub-block; 0 when it has none."""
    pos = 0
    while pos + 2 <= len(subblocks):
        kind = subblocks[pos]
        large = kind & 0x80
        size = 2 * (int.from_bytes(subblocks[pos + 1 : pos + 4], "little") if large else subblocks[pos + 1])
        data = pos + (4 if large else 2)
        if kind & 0x3F == 0x27:
            return int.from_bytes(subblocks[data : data + size - (1 if kind & 0x40 else 0)], "little")
        pos = data + size
    return 0


def _id3v1_after(f, size: int, tag: _APETag | None) -> bytes:
    """The ID3v1 tag (128 bytes) that ends the open file ``f`` (``size`` bytes) after its APE tag
    ``tag`` (or, where it has none, after the audio); empty where there is none."""
    if size >= _ID3V1 and (tag is None or tag.end <= size - _ID3V1):
        f.seek(size - _ID3V1)
        block = f.read(_ID3V1)
        if block[:3] == b"TAG":
            return block
    return b""


_FLAG_NAMES = {1: "read only", _HAS_HEADER: "has a header", 1 << 30: "has no footer", _IS_HEADER: "is the header"}


def _frame_changes(tag: _APETag) -> str | None:
    """What a rewrite would change in the APE tag's header and footer (mutagen writes them anew, at
    the end of the file, with the flags "has a header" (and "is the header") alone and zeros in the
    reserved bytes): None where only a header would be added to a tag that has none, which holds
    nothing (the APEv2 specification recommends one)."""
    if tag.footer is None:
        return "its APE tag is at the start of the file, with no footer: a rewrite would move it to the end"
    changed = []
    for name, block, wanted in (("header", tag.header, _HAS_HEADER | _IS_HEADER), ("footer", tag.footer, _HAS_HEADER)):
        if block is None:
            continue
        flags = struct.unpack_from("<I", block, 20)[0]
        if flags not in (wanted, 0 if name == "footer" and tag.header is None else wanted):
            said = [text for bit, text in _FLAG_NAMES.items() if flags & bit]
            said += [f"0x{flags & ~sum(_FLAG_NAMES):08x}"] if flags & ~sum(_FLAG_NAMES) else []
            changed.append(f"its {name}'s flags 0x{flags:08x} ({', '.join(said)}) to 0x{wanted:08x}")
        if block[24:32] != bytes(8):
            changed.append(f"its {name}'s reserved bytes {block[24:32].hex()} to zeros")
    if tag.header is not None and tag.header[8:20] != tag.footer[8:20]:
        header, footer = struct.unpack_from("<3I", tag.header, 8), struct.unpack_from("<3I", tag.footer, 8)
        changed.append("its header's version, size and item count {}, which disagree with its footer's {}".format(
            "/".join(map(str, header)), "/".join(map(str, footer))))  # fmt: skip
    if not changed:
        return None
    return f"a rewrite of its APE tag would change {'; '.join(changed)}"


def _written(key: str, value) -> tuple[bytes, int, bytes]:
    """(key, flags, value) of an item as mutagen writes it."""
    return key.encode("utf-8"), value.kind << 1, value._write()
