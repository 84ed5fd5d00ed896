"""Vorbis comments (FLAC, Ogg Vorbis, Opus): tagger's fields as comments, one entry per value.

FLAC and Ogg differ in where the comments and the audio are; the Ogg page helpers (`_ogg_packets`,
`tagger.hashing.ogg_page_intact`) serve the comment check and the payload digest of both Ogg codecs.
"""

from __future__ import annotations

import io
import os
import shutil
import struct
from collections import Counter

from tagger.containers import ogg_page_heads
from tagger.errors import TagWriteError
from tagger.hashing import ogg_page_intact
from tagger.tags.fields import Raw, ours
from tagger.tags.storage._bytes import _hash_range, _id3v2_end
from tagger.tags.storage.base import Format, Storage, register


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


@register(Format("OggVorbis", "Ogg Vorbis", (".ogg", ".oga")))
class OggVorbisStorage(VorbisStorage):
    """Ogg Vorbis: the codec header packets but the comment one, the later pages' bodies and
    granule positions (mutagen renumbers pages) and whether every page's CRC is right; the pages
    of the other streams multiplexed with it, and every byte after the first chain (the next songs
    of a chained file, a radio rip), as they are.

    mutagen renumbers every page of the stream's serial number to the end of the file when the
    comment header takes another number of pages: in a chained file whose next chains have the
    same serial number (encoders writing serial 0, one file copied after itself) their pages would
    be numbered on from the first chain. `save` therefore lets mutagen write the first chain alone
    and puts the rest of the file back after it as it was."""

    headers = 3
    """Codec header packets (packet 1 is the comment header)."""
    comment_magic = b"\x03vorbis"
    codec = "Vorbis"
    """The codec's name, as a reason names it."""
    """How the comment header packet starts (the comments follow)."""
    ident_magic = b"\x01vorbis"
    """How the identification header packet (on the stream's first page) starts."""

    def save(self, audio, path, *, version, original):
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            end = _ogg_first_chain_end(f)
        if end >= size:
            audio.save()
            return
        with open(path, "r+b") as f:
            f.truncate(end)
        audio.save()  # (mutagen reads and writes the first chain, all the file it now sees)
        with open(original, "rb") as src, open(path, "ab") as dst:
            src.seek(end)
            shutil.copyfileobj(src, dst)

    def cannot_keep(self, audio, path, version):
        packet = self.comment_packet(audio, path)
        if packet is not None:
            data = io.BytesIO(packet)
            _vorbis_entries(data, len(packet))
            tail = packet[data.tell() :]
            if not self.tail_kept(tail):
                return (f"its {self.codec} comment header holds bytes after its "
                        f"comments ({_shown(bytes(tail))}) that a rewrite would replace with zeros (mutagen writes "
                        "only the comments back)")  # fmt: skip
        return super().cannot_keep(audio, path, version)

    @staticmethod
    def tail_kept(tail: bytes) -> bool:
        """Whether mutagen writes back the bytes ``tail`` that follow the comments in the comment
        header packet: it writes the framing byte as 1 and zeros after it."""
        return tail[:1] == b"\x01" and not any(tail[1:])

    def comment_blocks(self, audio, path):
        packet = self.comment_packet(audio, path)
        if packet is None:
            return None
        data = io.BytesIO(packet)
        return [_vorbis_entries(data, len(packet))]

    def comment_packet(self, audio, path: str) -> memoryview | None:
        """The comment header packet of the stream mutagen reads (``audio``) in the file ``path``,
        after its magic, read from its pages; None when it cannot be found."""
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
                        return memoryview(packet)[len(self.comment_magic) :]
                    packets += 1
        return None

    def payload(self, f, size, h):
        from mutagen.ogg import OggPage

        headers = self.headers
        serial = _ogg_stream_serial(f, self.ident_magic)
        chain_end = _ogg_first_chain_end(f)  # (as `save` finds it: the rest is kept as it is)
        f.seek(0)
        done, partial = 0, bytearray()
        while f.tell() < chain_end:
            start = f.tell()
            try:
                page = OggPage(f)
            except EOFError:
                break
            end = f.tell()
            f.seek(start)
            raw = f.read(end - start)
            if not ogg_page_intact(raw):
                h.update(b"bad page CRC")  # (mutagen may split the header pages differently)
            if page.serial != serial:
                h.update(b"other stream page %d:" % len(raw))  # multiplexed with it: kept as it is
                h.update(raw)
            elif done < headers:
                complete, partial = _ogg_packets(page, partial)
                for packet in complete:
                    if done != 1:
                        h.update(packet)
                    done += 1
            else:
                h.update(struct.pack("<qBB", page.position, page.continued, page.last))
                for part in page.packets:
                    h.update(struct.pack("<I", len(part)))
                    h.update(part)
        h.update(b"after the first chain:")
        _hash_range(f, chain_end, size, h)
        return True


@register(Format("OggOpus", "Opus", (".opus",)))
class OggOpusStorage(OggVorbisStorage):
    """Opus in Ogg: as Ogg Vorbis, with two codec header packets."""

    headers = 2
    comment_magic = b"OpusTags"
    codec = "Opus"
    ident_magic = b"OpusHead"

    @staticmethod
    def tail_kept(tail: bytes) -> bool:
        """Opus (RFC 7845 5.2): bytes after the comments whose first byte has its lowest bit set are
        kept as they are; others are padding, which mutagen writes back as zeros."""
        return not tail or bool(tail[0] & 1) or not any(tail)


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


def _ogg_stream_serial(f, ident: bytes) -> int | None:
    """The serial number of the first logical stream of the open Ogg file ``f`` whose first packet
    starts with ``ident`` (the one mutagen reads and tags); the first page's when there is none."""
    from mutagen.ogg import OggPage

    f.seek(0)
    first = None
    while True:
        try:
            page = OggPage(f)
        except EOFError:
            return first
        if first is None:
            first = page.serial
        if page.first and page.packets and page.packets[0].startswith(ident):
            return page.serial
        if not page.first and first is not None:
            return first  # (every stream's first page comes before any other page)


def _ogg_first_chain_end(f) -> int:
    """The offset where the first chain of the open Ogg file ``f`` ends (a chained file's next song
    starts there; the end of the file for a file of one chain): after the page that ends the last
    of the logical streams begun before it; or, where the first song's last page lacks its
    end-of-stream flag (a cut radio rip, a careless joiner), before the first beginning-of-stream
    page that follows a page that is not one. Every stream of a chain begins before any of its data
    pages (the Ogg specification), so such a page is the next song's, unless a stream of the first
    chain has pages after it without beginning again (a stream begun late, against the
    specification): then the end-of-stream flags alone decide."""
    f.seek(0)
    streams: set[int] = set()  # (the streams begun and not yet ended)
    first_chain: set[int] = set()
    begun_again: set[int] = set()
    data_seen = False
    next_song: int | None | bool = None  # (False: a candidate the first chain went on past)
    ended = None
    for start, page in _ogg_page_heads(f):
        if next_song is None and data_seen and page.first:
            next_song = start
        data_seen = data_seen or not page.first
        if next_song is None:
            if page.first:
                first_chain.add(page.serial)
        elif page.first:
            begun_again.add(page.serial)
        elif next_song is not False and page.serial in first_chain and page.serial not in begun_again:
            next_song = False
        if ended is None:
            if page.first:
                streams.add(page.serial)
            if page.last:
                streams.discard(page.serial)
                if not streams:
                    ended = page.end
                    if next_song is None:
                        return ended
    if next_song:
        return next_song
    return ended if ended is not None else f.seek(0, os.SEEK_END)


def _ogg_page_heads(f):
    """(offset, `OggPageHead`) of each page of the open Ogg file ``f`` from its position, read from
    the page headers alone (`tagger.containers.ogg_page_heads`: the bodies are skipped, a tenth of
    the time of mutagen's `OggPage`); a page header or segment table cut short ends them, bytes
    that are not one raise ``ValueError``, as mutagen's reading of the file does."""
    pos = f.tell()
    for page in ogg_page_heads(f, pos):
        if not page.whole:
            return
        yield page.offset, page
        pos = page.end
    f.seek(pos)
    if len(head := f.read(27)) == 27 and head[:4] != b"OggS":
        raise ValueError(f"not an Ogg page at offset {pos}")
