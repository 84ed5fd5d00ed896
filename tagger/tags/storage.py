"""Where tagger's fields live in each tag container: one storage class per container.

In the style of beets' mediafile ``storage``: each class knows how to `~Storage.read`, `~Storage.write`
and `~Storage.delete` our fields (`tagger.tags.fields`) in a loaded mutagen file, how to `~Storage.save`
it, which of its other tags must not change (`~Storage.other_items`), and which bytes carry the
audio (`~Storage.payload`). A format whose container is shared (WAV and AIFF carry ID3, FLAC and
Ogg carry Vorbis comments) is a small subclass that only says where its audio is.

Adding a container: one class here, decorated with ``@register("MutagenTypeName", ...)``.

=====================  =====================================================================
MP3, WAV, AIFF         ID3v2 ``TXXX`` frames with those descriptions (v2.4; v2.3 on request,
                       where multiple values are joined with ``/``; a file already carrying an
                       ID3v2.3 tag is kept at v2.3 so that no other frame is converted)
FLAC, Ogg Vorbis, Opus Vorbis comments, one entry per value
MP4/M4A                freeform atoms ``----:com.apple.iTunes:INSTRUMENTS`` (UTF-8), one data
                       atom per value
WMA                    ASF attributes with those names, one per value
=====================  =====================================================================
"""

from __future__ import annotations

import hashlib
import io
import os
import struct
import zlib
from collections import Counter
from collections.abc import Iterable
from typing import NamedTuple

from tagger.tags.fields import INSTRUMENTS_MODEL, Raw, ours

MP4_FREEFORM_PREFIX = "----:com.apple.iTunes:"
"""MP4 freeform atom prefix (mean ``com.apple.iTunes``), as iTunes, beets and ffmpeg use it."""

_CHUNK = 1 << 20

STORAGES: dict[str, Storage] = {}
"""mutagen file type name -> the storage of our fields in it."""


def register(*mutagen_types: str):
    """Class decorator: use this storage class for files of these mutagen types."""

    def add(cls):
        for name in mutagen_types:
            STORAGES[name] = cls()
        return cls

    return add


def storage_for(audio) -> Storage | None:
    """The storage of a loaded mutagen file, or None when tagger does not write into its format."""
    return STORAGES.get(type(audio).__name__)


class Storage:
    """Our fields in one tag container (subclasses implement the container's access)."""

    kind = "?"
    """The container's name (``id3``, ``vorbis``, ``mp4``, ``asf``)."""

    def read(self, tags) -> Raw:
        """Our fields in the (loaded, not None) tag object."""
        raise NotImplementedError

    def write(self, tags, raw: Raw) -> None:
        """Replace our fields in the tag object with ``raw``; other tags are not touched."""
        raise NotImplementedError

    def delete(self, tags) -> None:
        """Remove our fields (and nothing else) from the tag object."""
        self.write(tags, {})

    def other_items(self, audio) -> Iterable[tuple]:
        """(key, value) of every tag of the file except ours, in a stable order."""
        raise NotImplementedError

    def save(self, audio, path: str, *, version: int | None, original: str) -> None:
        """Save the loaded file ``audio`` (loaded from ``path``, a copy of ``original``)."""
        audio.save()

    def version(self, audio, id3v23: bool | None, raw: Raw) -> tuple[int | None, bool]:
        """(tag version to save, whether saving converts the file's existing tag to it)."""
        return None, False

    def cannot_keep(self, audio, path: str, version: int | None) -> str | None:
        """Why saving the file loaded from ``path`` at ``version`` would lose or change a tag that is
        not ours (then nothing is written), or None."""
        return None

    def prepare(self, audio, version: int | None) -> None:
        """Convert the loaded file's other tags for a save at ``version`` (`cannot_keep` said yes)."""

    def item_ids(self, path: str) -> Counter | None:
        """The names of the file's tag items, read from its bytes alone (not by mutagen), where the
        container lists them (ID3 frames); None otherwise. Empty when the file has no tag."""
        return None

    def expected_item_ids(self, audio, version: int | None) -> Counter | None:
        """What `item_ids` must find once the loaded file is saved at ``version``."""
        return None

    def item_values(self, path: str) -> Counter | None:
        """(key, digest of its stored value) of each tag item of the file but ours, read from its
        bytes alone and normalised so that only re-encodings every reader reads the same compare
        equal, where the container has a check on mutagen's re-encoding (MP4); None otherwise. A
        save must keep them: mutagen reads some values back the same that it wrote differently."""
        return None

    def payload(self, f, size: int, h) -> bool:
        """Feed the bytes that carry the audio (tags and container headers excluded) of the open
        file ``f`` (``size`` bytes) to the hash ``h``; False when the format has no cheap check."""
        return False

    # -- shared by every container ----------------------------------------------------------------
    def get(self, audio) -> Raw:
        """Our fields in a loaded file (empty values dropped); none when INSTRUMENTS_MODEL is not
        among them: fields of those names without it are someone else's (`foreign`)."""
        raw = self._fields(audio)
        return raw if INSTRUMENTS_MODEL in raw else {}

    def foreign(self, audio) -> list[str]:
        """The names of the fields with our names that are not ours (no INSTRUMENTS_MODEL beside
        them: tagger always writes it), which a write must not replace, and of the fields named
        like ours in another case where the container's names are case-sensitive (a
        ``TXXX:instruments``: someone else's, which readers that ignore case would mistake for ours
        beside the one a write would add)."""
        raw = self._fields(audio)
        lookalikes = [] if audio.tags is None else sorted(set(self.lookalikes(audio.tags)))
        return ([] if INSTRUMENTS_MODEL in raw else sorted(raw)) + lookalikes

    def lookalikes(self, tags) -> Iterable[str]:
        """The names of the fields named like ours in another case, in a container whose names are
        case-sensitive (none where they are not)."""
        return ()

    def _fields(self, audio) -> Raw:
        if audio.tags is None:
            return {}
        return {k: v for k, v in self.read(audio.tags).items() if v}

    def set(self, audio, raw: Raw) -> None:
        """Replace our fields in a loaded file, adding a tag when it has none and ``raw`` is not empty."""
        if audio.tags is None:
            if not raw:
                return
            audio.add_tags()
        self.write(audio.tags, raw)

    def other_tags(self, audio) -> str:
        """A digest of every tag of the file except ours (cover art included): equal digests, equal tags.

        Streamed into a hash: no copy of the tag data is held (covers can be tens of megabytes).
        """
        h = hashlib.sha256()
        for key, value in [] if audio.tags is None else self.other_items(audio):
            _feed(h, key)
            _feed(h, value)
        pictures = getattr(audio, "pictures", None)  # FLAC PICTURE blocks
        if pictures is not None:
            _feed(h, "<pictures>")
            for pic in pictures:
                _feed(h, [pic.type, pic.mime, pic.desc, pic.width, pic.height, pic.depth, pic.colors, pic.data])
        return h.hexdigest()


# -- ID3 (MP3, WAV, AIFF) -----------------------------------------------------------------------


class ID3Storage(Storage):
    """ID3v2 ``TXXX`` frames whose description is the field name."""

    kind = "id3"

    def read(self, tags) -> Raw:
        raw: Raw = {}
        for frame in tags.getall("TXXX"):
            name = ours(frame.desc)
            if name == INSTRUMENTS_MODEL:
                raw.setdefault(name, []).extend(str(t) for t in frame.text)
            elif name:  # ID3v2.3 joins multiple values with "/" (never part of a family or score)
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
            ((key, frame) for key, frame in tags.items()
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

    def item_ids(self, path):
        with open(path, "rb") as f:
            span = self.id3_span(f, os.fstat(f.fileno()).st_size)
            return Counter() if span is None else _id3_frame_ids(f, *span)

    def expected_item_ids(self, audio, version):
        tags = audio.tags
        if tags is None or not len(tags):
            return Counter()
        ids = Counter(frame.FrameID for frame in tags.values() if not _empty_text(frame))  # (not written)
        if tags.version[1] == version:
            ids.update(bytes(d[:4]).decode("latin-1") for d in tags.unknown_frames if len(d) > 10)
        return ids

    def id3_span(self, f, size: int) -> tuple[int, int] | None:
        """(offset, most bytes it may span) of the file's ID3v2 tag, header included; None when the
        file has none."""
        raise NotImplementedError

    def save(self, audio, path, *, version, original):
        if not len(audio.tags):
            audio.delete()  # nothing left in the ID3 tag (tagger created it): remove the tag altogether
        else:
            audio.save(v2_version=version, v23_sep="/")


@register("MP3")
class MP3Storage(ID3Storage):
    """MP3: the audio is everything between the ID3v2 tag and an ID3v1 tag (kept byte for byte)."""

    def save(self, audio, path, *, version, original):
        if not len(audio.tags):
            from mutagen.id3 import delete

            delete(path, delete_v1=False, delete_v2=True)
        else:
            audio.save(v2_version=version, v23_sep="/", v1=1)
        _restore_id3v1(original, path)

    def id3_span(self, f, size):
        f.seek(0)
        return (0, size) if f.read(3) == b"ID3" else None

    def payload(self, f, size, h):
        start = _id3v2_end(f)
        end = size
        if size - start >= 128:
            f.seek(size - 128)
            if f.read(3) == b"TAG":
                end = size - 128
        _hash_range(f, start, end, h)
        return True


@register("WAVE")
class WAVEStorage(ID3Storage):
    """WAV: an ID3 chunk; the audio is the ``data`` chunk."""

    little, audio_chunk = True, b"data"

    def _chunks(self, f, end: int):
        """(id, data offset, declared data length) of each top-level chunk that starts before ``end``."""
        pos = 12
        while pos + 8 <= end:
            f.seek(pos)
            cid, clen = struct.unpack("<4sI" if self.little else ">4sI", f.read(8))
            yield cid, pos + 8, clen
            pos += 8 + clen + (clen & 1)

    def payload(self, f, size, h):
        found = False
        for cid, start, length in self._chunks(f, size):
            if cid == self.audio_chunk:
                _hash_range(f, start, min(start + length, size), h)
                found = True
        return found

    def id3_span(self, f, size):
        for cid, start, length in self._chunks(f, size):
            if cid.upper() == b"ID3 ":  # as mutagen finds it: the first one, either case
                return start, min(length, size - start)
        return None

    def cannot_keep(self, audio, path, version):
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            declared = struct.unpack("<I" if self.little else ">I", head[4:8])[0] if len(head) == 8 else 0
            # (bytes after the RIFF/FORM chunk are not its chunks)
            for cid, start, length in self._chunks(f, min(size, 8 + declared)):
                if start + length > size:  # a recording cut short, or a streamed file's placeholder size
                    name = cid.decode("latin-1").strip() or "?"
                    return (f"its {name!r} chunk claims {length} bytes but the file ends {size - start} bytes into "
                            "it (cut short?): a tag chunk after it would be read as part of it; the audio is "
                            "analysed as it is, the tags are not written")  # fmt: skip
        return super().cannot_keep(audio, path, version)


@register("AIFF")
class AIFFStorage(WAVEStorage):
    """AIFF: an ID3 chunk; the audio is the ``SSND`` chunk (big-endian chunk sizes)."""

    little, audio_chunk = False, b"SSND"


# -- Vorbis comments (FLAC, Ogg Vorbis, Opus) ---------------------------------------------------


class VorbisStorage(Storage):
    """Vorbis comments, one entry per value."""

    kind = "vorbis"

    def read(self, tags) -> Raw:
        raw: Raw = {}
        for key, value in tags:
            name = ours(key, any_case=True)
            if name:
                raw.setdefault(name, []).append(value)
        return raw

    def write(self, tags, raw: Raw) -> None:
        for key in {k for k, _ in tags if ours(k, any_case=True)}:
            del tags[key]
        for name, values in raw.items():
            tags[name] = list(values)

    def other_items(self, audio):
        return [(k, v) for k, v in audio.tags if not ours(k, any_case=True)]

    def cannot_keep(self, audio, path, version):
        # mutagen decodes a comment that is not UTF-8 with U+FFFD, drops a key it does not accept
        # ("~COMPILATION", an empty or non-ASCII one) and renames an entry without "=": a save
        # writes its view, and the other-tags digest, taken from that view, cannot see the loss.
        raw = self.comment_blocks(audio, path)
        if raw is None:
            return "its Vorbis comment header cannot be found where mutagen read it"
        loaded = self.loaded_comments(audio)
        changed: list[str] = []
        if len(raw) != len(loaded):
            changed.append(f"{len(raw)} comment block(s) in the file, {len(loaded)} read by mutagen")
        for entries, comments in zip(raw, loaded):
            kept = [comments.vendor.encode("utf-8")] + [f"{k}={v}".encode("utf-8") for k, v in comments]
            if entries == kept:
                continue
            if entries[:1] != kept[:1]:
                changed.append(f"the vendor string {_shown(entries[0] if entries else b'')}")
            lost = list((Counter(entries[1:]) - Counter(kept[1:])).elements())
            changed += [_shown(entry) for entry in lost] or ["the order of the comments"]
        changed += self.pictures_changed(audio, path)
        if not changed:
            return None
        what = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
        return ("its Vorbis comments hold entries that a rewrite would change or drop (not UTF-8, or not a "
                f"NAME=value entry that mutagen accepts): {what}")  # fmt: skip

    def comment_blocks(self, audio, path: str) -> list[list[bytes]] | None:
        """The raw entries (vendor string first) of each Vorbis comment block that mutagen loaded
        (as ``audio``) from the file ``path`` and saves, read from its bytes; None when they cannot
        be found."""
        raise NotImplementedError

    def loaded_comments(self, audio) -> list:
        """The Vorbis comment blocks mutagen loaded, in the order of `comment_blocks`."""
        return [] if audio.tags is None else [audio.tags]

    def pictures_changed(self, audio, path: str) -> list[str]:
        """The picture blocks that a save would not write back byte for byte (FLAC)."""
        return []


@register("FLAC")
class FLACStorage(VorbisStorage):
    """FLAC: the audio is the frames after the metadata blocks (PICTURE blocks are other tags).

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
            pos += 4 + int.from_bytes(head[1:4], "big")
            if head[0] & 0x80:
                break
        _hash_range(f, pos, size, h)
        return True


@register("OggVorbis")
class OggVorbisStorage(VorbisStorage):
    """Ogg Vorbis: the codec header packets but the comment one, the later pages' bodies and
    granule positions (mutagen renumbers pages) and whether every page's CRC is right."""

    headers = 3
    """Codec header packets (packet 1 is the comment header)."""
    comment_magic = b"\x03vorbis"
    """How the comment header packet starts (the comments follow)."""

    def comment_blocks(self, audio, path):
        from mutagen.ogg import OggPage

        serial = audio.info.serial  # the stream mutagen reads (the first of this codec)
        with open(path, "rb") as f:
            partial, packets = bytearray(), 0
            while packets < self.headers:
                try:
                    page = OggPage(f)
                except EOFError:
                    return None
                if page.serial != serial:
                    continue
                complete, partial = _ogg_packets(page, partial)
                for packet in complete:
                    if packet.startswith(self.comment_magic):
                        data = io.BytesIO(memoryview(packet)[len(self.comment_magic) :])
                        return [_vorbis_entries(data, len(data.getbuffer()))]
                    packets += 1
        return None

    def payload(self, f, size, h):
        from mutagen.ogg import OggPage

        headers = self.headers
        done, serial, partial = 0, None, bytearray()
        while True:
            start = f.tell()
            try:
                page = OggPage(f)
            except EOFError:
                break
            end = f.tell()
            f.seek(start)
            if not _ogg_crc_ok(f.read(end - start)):
                h.update(b"bad page CRC")  # (mutagen may split the header pages differently)
            if serial is None:
                serial = page.serial
            if page.serial != serial:
                continue
            if done < headers:
                complete, partial = _ogg_packets(page, partial)
                for packet in complete:
                    if done != 1:
                        h.update(packet)
                    done += 1
                continue
            h.update(struct.pack("<qBB", page.position, page.continued, page.last))
            for part in page.packets:
                h.update(struct.pack("<I", len(part)))
                h.update(part)
        return True


@register("OggOpus")
class OggOpusStorage(OggVorbisStorage):
    """Opus in Ogg: as Ogg Vorbis, with two codec header packets."""

    headers = 2
    comment_magic = b"OpusTags"


# -- MP4 freeform atoms -------------------------------------------------------------------------


@register("MP4")
class MP4Storage(Storage):
    """MP4 freeform atoms ``----:com.apple.iTunes:NAME`` (UTF-8), one data atom per value; the
    audio is the ``mdat`` atoms. Fragmented files are refused (`cannot_keep`)."""

    kind = "mp4"

    @staticmethod
    def _ours(key: str) -> str | None:
        return ours(key[len(MP4_FREEFORM_PREFIX) :]) if key.startswith(MP4_FREEFORM_PREFIX) else None

    def lookalikes(self, tags):
        for key in tags.keys():
            name = key[len(MP4_FREEFORM_PREFIX) :]
            if key.startswith(MP4_FREEFORM_PREFIX) and not ours(name) and ours(name, any_case=True):
                yield key

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
        from mutagen.mp4 import Atoms

        found = False
        for atom in Atoms(f).atoms:
            if atom.name == b"mdat":
                _hash_range(f, atom.offset + atom.length - atom.datalength, atom.offset + atom.length, h)
                found = True
        return found


# -- ASF (WMA) ----------------------------------------------------------------------------------


@register("ASF")
class ASFStorage(Storage):
    """ASF attributes with the field names, one per value; the audio is everything after the header object."""

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
        # false), and writes a Metadata object attribute's reserved field as 0: it reads the same
        # values back, so the other-tags digest cannot see the change. The header's bytes tell.
        changed = []
        with open(path, "rb") as f:
            for where, name, kind, lead, value in _asf_attributes(f, os.fstat(f.fileno()).st_size):
                if kind == 2 and value is not None and int.from_bytes(value, "little") not in (0, 1):
                    changed.append(f"{name!r}, a BOOL stored as 0x{value[::-1].hex()}")
                if where == "Metadata" and lead:
                    changed.append(f"{name!r}, whose reserved field in the Metadata object is {lead}")
        if not changed:
            return None
        return ("its ASF attributes hold values that a rewrite would change (mutagen writes a BOOL back as 0 or 1 "
                f"and a reserved field as 0): {', '.join(changed)}")  # fmt: skip

    def payload(self, f, size, h):
        f.seek(16)
        (header_size,) = struct.unpack("<Q", f.read(8))
        _hash_range(f, header_size, size, h)
        return True


# -- helpers ------------------------------------------------------------------------------------


def payload_digest(path: str, mutagen_type: str) -> str | None:
    """Hash of the bytes that carry the audio of the file ``path`` (read as ``mutagen_type``),
    tags and container headers excluded; None when the format has no cheap check."""
    storage = STORAGES.get(mutagen_type)
    if storage is None:
        return None
    h = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if not storage.payload(f, size, h):
            return None
    return h.hexdigest()


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
        kind = 1 if kind == 0 else kind  # implicit: text (or the item's own type), read the same
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


def _asf_guid(text: str) -> bytes:
    import uuid

    return uuid.UUID(text).bytes_le


_ASF_EXTENDED_CONTENT = _asf_guid("D2D0A440-E307-11D2-97F0-00A0C95EA850")
_ASF_HEADER_EXTENSION = _asf_guid("5FBF03B5-A92E-11CF-8EE3-00C00C205365")
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


def _asf_attributes(f, size: int):
    """(object, name, type, first field, value) of each attribute of the Extended Content
    Description, Metadata and Metadata Library objects of the ASF file open as ``f`` (``size``
    bytes), read from the header's bytes. The first field is the Metadata object's reserved one
    (the Metadata Library's language), None in the Extended Content Description; the value is read
    only for a BOOL (type 2), None otherwise (a picture may be large). The walk stops where an
    object's content does not hold what it declares."""
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
                value = f.read(value_length) if kind == 2 else None
                yield "Extended Content Description", _asf_name(name), kind, None, value
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
                    lead, _stream, name_length, kind, value_length = struct.unpack("<HHHHI", f.read(12))
                    name = f.read(name_length)
                    pos += 12 + name_length + value_length
                    if pos > last:
                        return
                    value = f.read(value_length) if kind == 2 else None
                    yield where, _asf_name(name), kind, lead, value


def _asf_name(data: bytes) -> str:
    return data.decode("utf-16-le", "replace").strip("\x00")


def _shown(entry: bytes) -> str:
    """A tag entry of unknown bytes as text that can be printed safely (escaped, cut at 60 bytes)."""
    return repr(entry[:60]) + ("..." if len(entry) > 60 else "")


def _read_counted(f, size: int, fmt: str) -> bytes | None:
    """A length (``fmt``, 4 bytes) then that many bytes at the position of the open file ``f``
    (``size`` bytes in all; a length past the end reads what there is); None at the end."""
    head = f.read(4)
    if len(head) < 4:
        return None
    return f.read(min(struct.unpack(fmt, head)[0], max(size - f.tell(), 0)))


def _vorbis_entries(f, size: int) -> list[bytes]:
    """The raw entries of the Vorbis comment at the position of the open file ``f`` (``size``
    bytes in all): the vendor string, then each ``key=value`` comment as bytes (not decoded: a
    check on mutagen's decoded view). ``f`` is left after the last comment (before a framing
    bit); a comment cut short ends the list."""
    vendor = _read_counted(f, size, "<I")
    if vendor is None:
        return []
    entries = [vendor]
    head = f.read(4)
    for _ in range(struct.unpack("<I", head)[0] if len(head) == 4 else 0):
        entry = _read_counted(f, size, "<I")
        if entry is None:
            break
        entries.append(entry)
    return entries


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


def _hash_range(f, start: int, end: int, h) -> None:
    f.seek(start)
    left = end - start
    while left > 0:
        block = f.read(min(_CHUNK, left))
        if not block:
            break
        h.update(block)
        left -= len(block)


def _syncsafe(data: bytes) -> int:
    size = 0
    for b in data:
        size = (size << 7) | (b & 0x7F)
    return size


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


def _id3_walk(f, start: int, span: int) -> _ID3Walk | None:
    """The frames of the ID3v2 tag at ``start`` in the open file ``f`` (at most ``span`` bytes),
    read from the frame headers. Frame data is skipped, not read (a cover may be large). None when
    the headers cannot be walked to the end (a tag this reader does not understand)."""
    f.seek(start)
    head = f.read(10)
    if len(head) < 10 or head[:3] != b"ID3" or head[3] not in (2, 3, 4):
        return None
    major, flags = head[3], head[5]
    size = min(_syncsafe(head[6:10]), span - 10)
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
            first = 4 + int.from_bytes(ext, "big") if major == 3 else _syncsafe(ext)
    # v2.4 frame sizes are syncsafe, but some writers (old iTunes) wrote plain ones: the walk that
    # reaches the end cleanly is the tag's
    for sizes in ("syncsafe", "plain") if major == 4 else ("plain",):
        frames = _walk_frames(body, body_start, first, size, major, sizes)
        if frames is not None:
            return _ID3Walk(body, major, sizes, major == 4 and bool(flags & 0x80), frames)
    return None


def _walk_frames(f, base: int, pos: int, size: int, major: int, sizes: str) -> list[_ID3Frame] | None:
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
        length = _syncsafe(raw) if sizes == "syncsafe" else int.from_bytes(raw, "big")
        if pos + head + length > size:
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


def _id3_changed_frames(walk: _ID3Walk, tags) -> list[str]:
    """The frames of the walked tag that mutagen loads (as ``tags``) in a form it would write back
    differently, each as "ID (why)". Frames mutagen does not know are kept as they are: not listed."""
    from mutagen.id3 import Frames, Frames_2_2

    known = Frames_2_2 if walk.major == 2 else Frames
    changed = []
    for frame in walk.frames:
        if frame.fid not in known:
            continue
        if frame.flags & _ID3_GROUPED.get(walk.major, 0):
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


def _id3v2_end(f, start: int = 0) -> int:
    """Offset after the ID3v2 tag(s) at ``start`` (``start`` when there is none)."""
    pos = start
    while True:
        f.seek(pos)
        head = f.read(10)
        if len(head) < 10 or head[:3] != b"ID3":
            return pos
        pos += 10 + _syncsafe(head[6:10]) + (10 if head[5] & 0x10 else 0)



def _ogg_packets(page, partial: bytearray) -> tuple[list[bytearray], bytearray]:
    """The packets an Ogg page completes, and the one it leaves unfinished (``partial``: the one
    the pages before it left). Grown in place: a comment packet holding a cover spans thousands of
    pages, and joining them by copies took minutes."""
    complete = []
    for i, part in enumerate(page.packets):
        if i == 0 and page.continued:
            partial += part
        else:
            partial = bytearray(part)
        if i < len(page.packets) - 1 or page.complete:
            complete.append(partial)
            partial = bytearray()
    return complete, partial


_BITSWAP = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc_ok(page: bytes) -> bool:
    """Whether an Ogg page's stored CRC matches its bytes (Ogg's CRC is zlib's on bit-swapped bytes)."""
    if len(page) < 27:
        return False
    data = page[:22] + b"\0\0\0\0" + page[26:]
    crc = (~zlib.crc32(data.translate(_BITSWAP), -1)) & 0xFFFFFFFF
    return struct.pack(">I", crc).translate(_BITSWAP) == page[22:26]



def _restore_id3v1(original: str, tmp: str) -> None:
    """Put the original ID3v1 tag back byte for byte (mutagen regenerates it from ID3v2)."""
    with open(original, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < 128:
            return
        f.seek(-128, os.SEEK_END)
        old = f.read(128)
    if old[:3] != b"TAG":
        return
    with open(tmp, "r+b") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() >= 128:
            f.seek(-128, os.SEEK_END)
            if f.read(3) == b"TAG":
                f.seek(-128, os.SEEK_END)
                f.write(old)
                return
        f.seek(0, os.SEEK_END)
        f.write(old)

