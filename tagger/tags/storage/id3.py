"""ID3v2 (MP3, WAV, AIFF, DSF): tagger's fields as ``TXXX`` frames with those descriptions (v2.4; v2.3
on request, where multiple values are joined with ``/``; a file already carrying an ID3v2.3 tag is
kept at v2.3 so that no other frame is converted): `ID3Storage`, which each container's storage extends.

Where the tag is, and the audio, is each container's module: MP3 at the start of the file
(`tagger.tags.storage.mp3`); WAV and AIFF in an ``ID3`` chunk, found by walking their chunks as the
audio is (a WAV whose fields are in a ``LIST/INFO`` chunk alone, or beside an ID3 chunk without
frames, gets them copied into it: `WAVEStorage.info_frames`; `tagger.tags.storage.riff`);
DSF at the end of the file, where its header points (`tagger.tags.storage.dsf`). The
checks on mutagen's round trip read the tag's frames from the file's bytes (`_id3_walk`).
"""

from __future__ import annotations

import io
import os
import zlib
from collections import Counter
from typing import NamedTuple

from tagger.containers import syncsafe
from tagger.tags.fields import INSTRUMENTS_MODEL, Raw, ours
from tagger.tags.storage.base import Storage


class ID3Storage(Storage):
    """ID3v2 ``TXXX`` frames whose description is the field name."""

    kind = "id3"

    def read(self, tags) -> Raw:
        # ID3v2.3 (and v2.2) join multiple values with "/" (never part of a family or score); an ID3v2.4
        # tag separates them with NULs, and a "/" in its value is the value's own, as every reader
        # takes it (a v2.3 tag converted to v2.4 as kid3 and mutagen do: one value, rewritten)
        joined = tuple(getattr(tags, "version", (2, 4, 0)))[:2] < (2, 4)
        raw: Raw = {}
        for frame in tags.getall("TXXX"):
            name = ours(frame.desc)
            if name == INSTRUMENTS_MODEL or (name and not joined):
                raw.setdefault(name, []).extend(str(t) for t in frame.text)
            elif name:
                raw.setdefault(name, []).extend(v for t in frame.text for v in str(t).split("/"))
        return raw

    def lookalikes(self, tags):
        return (f"TXXX:{f.desc}" for f in tags.getall("TXXX") if not ours(f.desc) and ours(f.desc, any_case=True))

    def write(self, tags, raw: Raw) -> None:
        from mutagen.id3 import TXXX, Encoding

        for frame in list(tags.getall("TXXX")):
            if ours(frame.desc):
                del tags[frame.HashKey]
        for name, values in raw.items():
            tags.add(TXXX(encoding=Encoding.UTF8, desc=name, text=list(values)))

    def other_items(self, audio):
        tags = audio.tags
        items = sorted(
            ((key, _unicode_as_one(frame)) for key, frame in tags.items()
             if not (frame.FrameID == "TXXX" and ours(frame.desc)) and not _empty_text(frame)),
            key=lambda item: item[0],
        )  # fmt: skip
        if tags.unknown_frames:
            items.append(("<unknown frames>", list(tags.unknown_frames)))
        return items

    def version(self, audio, id3v23, raw):
        current = audio.tags.version[1] if audio.tags is not None else None
        if current == 1:  # only an ID3v1 tag (MP3), loaded as ID3v2.4 frames: the ID3v2 tag is new
            version = 3 if id3v23 else 4
            return version, bool(raw) and version == 3  # (its date becomes a v2.3 TYER: `prepare`)
        if id3v23 is None:  # removal keeps the file's version
            version = current if current in (3, 4) else 3 if current == 2 else 4
        elif id3v23:
            version = 3
        else:  # v2.4, but an existing v2.3 tag stays v2.3 (no other frame is converted), and an
            # ID3v2.2 tag (which mutagen cannot write) becomes v2.3, the version of its frames' names
            version = 3 if current in (2, 3) else 4
        return version, bool(raw) and current is not None and current != version

    def cannot_keep(self, audio, path, version):
        tags = audio.tags
        if tags is None or tags.version[1] == 1:  # no ID3v2 tag: nothing in one to lose
            return None
        current = tags.version[1]
        unknown = [bytes(d[: 3 if current == 2 else 4]).decode("latin-1") for d in tags.unknown_frames]
        lost: list[str] = []
        found = self.item_ids(path)
        if found is None:
            past = self.frame_past_end(path)
            if past:  # (mutagen reads such a frame as the rest of the tag, the frames after it inside it)
                return (f"its ID3v2.{current} tag is damaged: {past} (mutagen reads the rest of the tag as that "
                        "frame's content, the frames after it included, and a rewrite would store it so)")
        if found is not None:  # frames mutagen could not read are dropped by any save
            if current == 2:  # mutagen loads v2.2 frames as their v2.3 successors: compare counts
                missing = sum(found.values()) - len(tags) - len(unknown)
                if missing > 0:
                    lost.append(f"{missing} frame(s) mutagen cannot read")
            else:
                loaded = Counter(frame.FrameID for frame in tags.values()) + Counter(unknown)
                gone = found - loaded
                if gone:  # a frame that holds nothing loses nothing (an old Picard's TIPL, TagLib's empty TCOM)
                    gone -= self.empty_frames(path)
                lost += sorted(gone.elements())
        if version != current:
            lost += unknown  # mutagen keeps frames it does not know only at their own version
        if current == 4 and version == 3:
            lost += _lost_in_v23(tags)
        if lost:
            what = ", ".join(dict.fromkeys(lost))
            if version != current:
                return f"converting its ID3v2.{current} tag to ID3v2.{version} would lose {what}"
            return f"its ID3v2.{current} tag has frames that a rewrite would lose ({what})"
        changed = self.changed_frames(audio, path)
        if changed:
            return f"its ID3v2.{current} tag has frames that a rewrite would change: {', '.join(changed)}"
        return None

    def frame_past_end(self, path: str) -> str | None:
        """Where the file's ID3v2 tag holds a frame that declares more bytes than the tag holds
        (``APIC declares 268435455 bytes where 117 are left``), read from its frame headers; None
        where none does."""
        with open(path, "rb") as f:
            span = self.id3_span(f, os.fstat(f.fileno()).st_size)
            why: list[str] = []
            if span is not None and _id3_walk(f, *span, why=why) is None and why:
                return why[0]
            return None

    def empty_frames(self, path: str) -> Counter:
        """The IDs of the frames of the file's ID3v2 tag that hold nothing: no content, or a text
        frame with its encoding byte alone (and NULs), which mutagen drops as it loads them."""
        with open(path, "rb") as f:
            span = self.id3_span(f, os.fstat(f.fileno()).st_size)
            walk = None if span is None else _id3_walk(f, *span)
            if walk is None:
                return Counter()
            empty = Counter()
            for frame in walk.frames:
                text = frame.fid.startswith("T") or frame.fid == "IPLS"
                data = _id3_frame_data(walk, frame) if text and frame.length else None
                if frame.length == 0 or (data is not None and not data[1:].strip(b"\0")):
                    empty[frame.fid] += 1  # (another frame mutagen cannot read is a loss: not counted)
            return empty

    def changed_frames(self, audio, path: str) -> list[str]:
        """The frames of the ID3v2 tag of the file ``path`` that mutagen loaded (as ``audio``) in a
        form that it would write back differently, each as "ID (why)", read from the file's bytes
        (`_id3_changed_frames`)."""
        with open(path, "rb") as f:
            span = self.id3_span(f, os.fstat(f.fileno()).st_size)
            walk = None if span is None else _id3_walk(f, *span)
            return [] if walk is None else _id3_changed_frames(walk, audio.tags)

    def prepare(self, audio, version):
        # the frames that change: `cannot_keep` checked the round trip (an ID3v1 tag's frames, loaded
        # as v2.4 ones, convert without loss)
        if audio.tags is not None and audio.tags.version[1] in (1, 4) and version == 3:
            audio.tags.update_to_v23()
        if audio.tags is not None:
            _write_in_file_order(audio.tags)

    def item_ids(self, path):
        with open(path, "rb") as f:
            span = self.id3_span(f, os.fstat(f.fileno()).st_size)
            return Counter() if span is None else _id3_frame_ids(f, *span)

    def expected_item_ids(self, audio, version):
        tags = audio.tags
        if tags is None:
            return Counter()
        ids = Counter(frame.FrameID for frame in tags.values() if not _empty_text(frame))  # (not written)
        ids.update(bytes(d[:4]).decode("latin-1") for d in _unknown_written(tags, version))
        return ids

    def id3_span(self, f, size: int) -> tuple[int, int] | None:
        """(offset, most bytes it may span) of the file's ID3v2 tag, header included; None when the
        file has none."""
        raise NotImplementedError

    def save(self, audio, path, *, version, original):
        if not _holds_frames(audio.tags, version):
            audio.delete()  # nothing left in the ID3 tag (tagger created it): remove the tag altogether
        else:
            audio.save(v2_version=version, v23_sep="/")


# -- helpers ------------------------------------------------------------------------------------


def _unicode_as_one(frame):
    """``frame`` as the other-tags digest compares it: its text encoding UTF-16 where it is any of
    the Unicode ones, and so in its sub-frames (a chapter's), which are taken in the order of their
    keys. mutagen writes the UTF-8 and UTF-16BE text of an ID3v2.3 tag (encodings that version does
    not have, which many programs write all the same) as UTF-16: the same text; and it writes a
    chapter's sub-frames sorted (the title first, then by size; `_write_in_file_order` keeps the
    tag's own frames in their order, not these), which changes no chapter as readers show it: its
    sub-frames are one of each kind."""
    import copy

    unicode, sub_frames = getattr(frame, "encoding", None) in (2, 3), getattr(frame, "sub_frames", None)
    if unicode or sub_frames:
        frame = copy.copy(frame)
        if unicode:
            frame.encoding = 1
        if sub_frames:
            frame.sub_frames = [_unicode_as_one(sub) for _key, sub in sorted(sub_frames.items())]
    return frame


def _write_in_file_order(tags) -> None:
    """Have mutagen write the frames of the loaded tag ``tags`` in the order it loaded them: the
    file's, the frames added since (tagger's) last. mutagen sorts them (a few text frames first, then
    by size; the pictures alone keep their order), and readers show the first of the frames that they
    show under one name: two comments in different languages (ffmpeg's ``comment``), two ``WOAR``
    URLs, lyrics in two languages (TagLib's lists). The frames mutagen could not read, which it
    writes back as they were, stay last, as mutagen writes them.

    The function set on ``tags`` holds it by a weak reference: a bound method would make a cycle
    that keeps the loaded tag (a cover of tens of megabytes) in memory until the garbage collector
    runs, after it is let go."""
    import weakref

    from mutagen.id3._tags import save_frame

    held = weakref.ref(tags)

    def _write(config):  # (mutagen's ``ID3Tags._write``, without the sort)
        tags = held()
        data = [save_frame(frame, config=config) for frame in tags.values()]
        if tags._unknown_v2_version == config.v2_version:
            data.extend(frame for frame in tags.unknown_frames if len(frame) > 10)
        return bytearray().join(data)

    tags._write = _write


class _ID3Frame(NamedTuple):
    """One frame of an ID3v2 tag as its header gives it."""

    fid: str
    flags: int
    """The frame's flags (0 in ID3v2.2, which has none)."""
    offset: int
    """Where its data starts in the tag body (`_ID3Walk.body`)."""
    length: int


class _ID3Walk(NamedTuple):
    """The frames of an ID3v2 tag, read from the frame headers alone."""

    body: object
    """The open file the offsets are in: the file, or a copy of a tag undone of its unsynchronisation."""
    major: int
    sizes: str
    """How its frame sizes are written: "syncsafe" or "plain"."""
    unsync: bool
    """Every frame unsynchronised (an ID3v2.4 tag flag: each frame's data is undone of it)."""
    frames: list[_ID3Frame]


def _unknown_written(tags, version: int | None) -> list[bytes]:
    """The frames mutagen does not know (kept as their bytes) that a save of ``tags`` at ``version``
    writes: those of a tag of that version, each with some content."""
    return [d for d in tags.unknown_frames if len(d) > 10] if tags.version[1] == version else []


def _holds_frames(tags, version: int | None) -> bool:
    """Whether a save of ``tags`` at ``version`` writes any frame: one mutagen loaded, or one it does
    not know (`_unknown_written`). A tag without any is removed altogether instead (tagger created it)."""
    return bool(len(tags)) or bool(_unknown_written(tags, version))


def _empty_text(frame) -> bool:
    """A text frame (not TXXX, whose description is a value) holding nothing but empty strings,
    which mutagen loads but does not write back: it loses nothing."""
    from mutagen.id3 import TextFrame

    # (mutagen skips a text frame whose text joins to nothing; ['', ''] joins to a NUL and is written)
    return isinstance(frame, TextFrame) and frame.FrameID != "TXXX" and len(str(frame)) == 0


def _id3_frame_ids(f, start: int, span: int) -> Counter | None:
    """The frame IDs of the ID3v2 tag at ``start`` in the open file ``f`` (at most ``span`` bytes),
    read from the frame headers alone: a check on mutagen, which drops frames it cannot parse and
    merges repeated ones when it loads. None when the headers cannot be walked to the end."""
    walk = _id3_walk(f, start, span)
    return None if walk is None else Counter(frame.fid for frame in walk.frames)


def _id3_walk(f, start: int, span: int, *, why: list[str] | None = None) -> _ID3Walk | None:
    """The frames of the ID3v2 tag at ``start`` in the open file ``f`` (at most ``span`` bytes),
    read from the frame headers. Frame data is skipped, not read (a cover may be large). None when
    the headers cannot be walked to the end (a tag this reader does not understand); then, where
    ``why`` is given and a frame declares more bytes than the tag holds (with every reading of
    its frame sizes), that frame is appended to it (`_walk_frames`)."""
    f.seek(start)
    head = f.read(10)
    if len(head) < 10 or head[:3] != b"ID3" or head[3] not in (2, 3, 4):
        return None
    major, flags = head[3], head[5]
    size = min(syncsafe(head[6:10]), span - 10)
    if major == 2 and flags & 0x40:  # a compressed ID3v2.2 tag
        return None
    if major < 4 and flags & 0x80:  # the whole tag unsynchronised (v2.4 does it frame by frame): rare, read it
        body = io.BytesIO(f.read(size).replace(b"\xff\x00", b"\xff"))
        body_start, size = 0, len(body.getbuffer())
    else:
        body, body_start = f, start + 10
    first = 0
    if major > 2 and flags & 0x40:  # extended header
        body.seek(body_start)
        ext = body.read(4)
        if len(ext) < 4:
            return None
        from mutagen.id3 import Frames

        if ext.decode("latin-1") in Frames:
            first = 0  # the flag set without an extended header (some writers): frames follow, as mutagen reads it
        else:
            first = 4 + int.from_bytes(ext, "big") if major == 3 else syncsafe(ext)
    # v2.4 frame sizes are syncsafe, but some writers (old iTunes) wrote plain ones: the walk that
    # reaches the end cleanly is the tag's
    past: list[list[str]] = []
    for sizes in ("syncsafe", "plain") if major == 4 else ("plain",):
        past.append([])
        frames = _walk_frames(body, body_start, first, size, major, sizes, past=past[-1])
        if frames is not None:
            return _ID3Walk(body, major, sizes, major == 4 and bool(flags & 0x80), frames)
    if why is not None and all(past):
        why.append(past[0][0])
    return None


def _walk_frames(f, base: int, pos: int, size: int, major: int, sizes: str, *,
                 past: list[str] | None = None) -> list[_ID3Frame] | None:  # fmt: skip
    """The frames of a tag body of ``size`` bytes at ``base`` in ``f``, from ``pos`` on, their sizes
    read as ``sizes``; None where they cannot be walked to the end. A frame that declares more bytes
    than the tag holds is described in ``past`` (when given)."""
    head, id_len = (6, 3) if major == 2 else (10, 4)
    if pos > size:
        return None  # (an extended header said to run past the tag)
    frames: list[_ID3Frame] = []
    while pos + head <= size:
        f.seek(base + pos)
        header = f.read(head)
        fid = header[:id_len]
        if not any(fid):
            break  # padding
        if len(header) < head or not all(48 <= b <= 57 or 65 <= b <= 90 for b in fid):
            return None
        raw = header[id_len : id_len + (3 if major == 2 else 4)]
        length = syncsafe(raw) if sizes == "syncsafe" else int.from_bytes(raw, "big")
        if pos + head + length > size:
            if past is not None:
                past.append(f"its {fid.decode('ascii')} frame declares {length} bytes where {size - pos - head} are left")
            return None
        flags = 0 if major == 2 else int.from_bytes(header[8:10], "big")
        frames.append(_ID3Frame(fid.decode("ascii"), flags, base + pos + head, length))
        pos += head + length
    f.seek(base + pos)
    if any(f.read(min(size - pos, 1 << 16))):
        return None  # bytes after the last frame that are not padding
    return frames


_ID3_GROUPED = {3: 0x0020, 4: 0x0040}
"""The grouping flag of a frame, per ID3v2 version."""

_ID3_STATUS = {
    3: ((0x8000, "discard it once the tag is altered"), (0x4000, "discard it once the file is altered"),
        (0x2000, "read-only")),
    4: ((0x4000, "discard it once the tag is altered"), (0x2000, "discard it once the file is altered"),
        (0x1000, "read-only")),
}  # fmt: skip
"""A frame's status flags, per ID3v2 version, which mutagen does not keep (it writes them as 0)."""

_ID3_ENCRYPTED = {3: 0x0040, 4: 0x0004}
"""The encryption flag of a frame, per ID3v2 version (mutagen keeps such a frame's bytes as they are)."""


def _id3_changed_frames(walk: _ID3Walk, tags) -> list[str]:
    """The frames of the walked tag that mutagen loads (as ``tags``) in a form it would write back
    differently, each as "ID (why)". Frames mutagen does not know are kept as they are: not listed."""
    from mutagen.id3 import Frames, Frames_2_2

    known = Frames_2_2 if walk.major == 2 else Frames
    changed = []
    for frame in walk.frames:
        if frame.fid not in known:
            continue
        status = [what for flag, what in _ID3_STATUS.get(walk.major, ()) if frame.flags & flag]
        if status and not frame.flags & _ID3_ENCRYPTED[walk.major]:
            changed.append(f"{frame.fid} (flags mutagen drops: {', '.join(status)})")
        elif frame.flags & _ID3_GROUPED.get(walk.major, 0):
            # mutagen does not know the flag: it reads the group byte as the frame's first byte (a
            # text's encoding) and writes the frame back without the flag
            changed.append(f"{frame.fid} (grouped with other frames, a flag mutagen drops)")
        elif frame.fid.startswith("T"):  # a text frame: the encoding, then the strings
            data = _id3_frame_data(walk, frame)
            strings = _utf16_strings(data[1:]) if data and data[0] == 1 else []
            if any(s.strip(b"\0") and s[:2] not in _BOMS for s in strings):
                # mutagen decodes a UTF-16 string without a byte order mark as little-endian and
                # writes it back with one: big-endian text (as some writers store it) is garbled
                changed.append(f"{frame.fid} (UTF-16 text without a byte order mark)")
        elif frame.fid in ("CHAP", "CTOC"):
            changed += _id3_sub_frames_changed(walk, frame, tags)
    return changed


def _id3_sub_frames_changed(walk: _ID3Walk, frame: _ID3Frame, tags) -> list[str]:
    """What a rewrite would change in the sub-frames of the CHAP or CTOC ``frame`` of the walked
    tag (a chapter's title, its link), which mutagen loaded as ``tags``: the sub-frames it could
    not read (and drops) and those `_id3_changed_frames` lists, each as "ID 'element': why". Read
    from the frame's bytes; none where they cannot be walked."""
    data = _id3_frame_data(walk, frame)
    end = -1 if data is None else data.find(b"\0")
    if end < 0:
        return []
    element, pos = data[:end].decode("latin-1"), end + 1
    if frame.fid == "CHAP":
        pos += 16  # start and end times and offsets
    else:  # CTOC: flags, entry count, the entries' element IDs
        count = data[pos + 1] if len(data) > pos + 1 else 0
        pos += 2
        for _ in range(count):
            pos = data.find(b"\0", pos) + 1
            if pos == 0:
                return []
    loaded = tags.get(f"{frame.fid}:{element}")
    if loaded is None:  # (one mutagen could not read: the frame itself is counted as lost)
        return []
    region = data[pos:]
    for sizes in ("syncsafe", "plain") if walk.major == 4 else ("plain",):
        body = io.BytesIO(region)
        frames = _walk_frames(body, 0, 0, len(region), walk.major, sizes)
        if frames is not None:
            break
    else:
        return []
    subs = loaded.sub_frames
    found = Counter(sub.fid for sub in frames)
    kept = Counter(sub.FrameID for sub in subs.values())
    kept.update(bytes(d[:4]).decode("latin-1") for d in subs.unknown_frames)
    shown = f"{frame.fid} {element!r}"
    changed = [f"{shown}: its sub-frame {fid} (mutagen cannot read it)" for fid in sorted(set(found - kept))]
    inner = _ID3Walk(body, walk.major, sizes, walk.unsync, frames)
    return changed + [f"{shown}: its sub-frame {what}" for what in _id3_changed_frames(inner, subs)]


_BOMS = (b"\xff\xfe", b"\xfe\xff")


def _utf16_strings(data: bytes) -> list[bytes]:
    """The NUL-terminated UTF-16 strings of ``data``, terminators dropped (code units of 2 bytes)."""
    strings, start = [], 0
    for pos in range(0, len(data) - 1, 2):
        if data[pos : pos + 2] == b"\0\0":
            strings.append(data[start:pos])
            start = pos + 2
    strings.append(data[start:])
    return strings


def _id3_frame_data(walk: _ID3Walk, frame: _ID3Frame) -> bytes | None:
    """The content of a frame of the walked tag as mutagen decodes it before reading it (data
    length indicator skipped, unsynchronisation undone, decompressed); None when it is encrypted or
    cannot be decompressed (mutagen keeps or drops such a frame whole)."""
    walk.body.seek(frame.offset)
    data = walk.body.read(frame.length)
    flags = frame.flags
    try:
        if walk.major == 4:
            if flags & 0x0004:  # encrypted
                return None
            if flags & 0x0009:  # compressed or with a data length indicator: 4 bytes of size first
                data = data[4:]
            if flags & 0x0002 or walk.unsync:
                data = data.replace(b"\xff\x00", b"\xff")
            if flags & 0x0008:
                data = zlib.decompress(data)
        elif walk.major == 3:
            if flags & 0x0040:  # encrypted
                return None
            if flags & 0x0080:  # compressed, after 4 bytes of size
                data = zlib.decompress(data[4:])
    except zlib.error:
        return None
    return data


def _lost_in_v23(tags) -> list[str]:
    """The frames of the ID3v2.4 tag ``tags`` (ours aside) that its conversion to v2.3 would not
    keep: converted and written by mutagen exactly as the save will, read back and converted to
    v2.4 again, they do not come back the same (TDRC -> TYER + TDAT -> TDRC does; a mood, a set
    subtitle, a date with seconds do not). Multiple values joined by "/" count as kept, the v2.3
    convention, unless a value holds a "/" itself: ['AC/DC', 'Queen'] would read as three."""
    import copy

    from mutagen.id3 import ID3

    def others(frames) -> list:
        return [frame for frame in frames if not (frame.FrameID == "TXXX" and ours(frame.desc))]

    def view(frames) -> Counter:
        return Counter(frame.pprint().replace(" / ", "/") for frame in others(frames))

    def ambiguous(frame) -> bool:  # several values, one holding a "/"
        text = getattr(frame, "text", None)
        return isinstance(text, list) and len(text) > 1 and any("/" in str(t) for t in text)

    joined = {frame.FrameID for frame in others(tags.values()) if ambiguous(frame)}

    v23 = ID3()
    for frame in tags.values():
        v23.add(copy.deepcopy(frame))
    v23.update_to_v23()
    data = io.BytesIO()
    v23.save(data, v2_version=3, v23_sep="/")
    data.seek(0)
    back = ID3(data, translate=False)
    back.update_to_v24()
    lost = {item.split("=", 1)[0] for item in (view(tags.values()) - view(back.values())).elements()}
    return sorted(lost | joined)
