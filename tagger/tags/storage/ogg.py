"""Ogg Vorbis and Opus: Vorbis comments in the comment header packet (`tagger.tags.storage.vorbis`).

The Ogg page helpers (`_ogg_packets`, `tagger.hashing.ogg_page_intact`) serve the comment check and
the payload digest of both Ogg codecs; `_ogg_first_chain_end` finds where a chained file's next song
starts, which `save` and the digest keep as they are.
"""

from __future__ import annotations

import io
import os
import shutil
import struct

from tagger.containers import ogg_page_heads
from tagger.hashing import ogg_page_intact
from tagger.tags.storage._bytes import _hash_range
from tagger.tags.storage.base import Format, register
from tagger.tags.storage.vorbis import VorbisStorage, _shown, _vorbis_entries


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
        headers = self.headers
        serial = _ogg_stream_serial(f, self.ident_magic)
        chain_end = _ogg_first_chain_end(f)  # (as `save` finds it: the rest is kept as it is)
        done, partial = 0, bytearray()
        for _start, page, raw in _ogg_chain_pages(f, chain_end):
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

    def payload_change_reason(self, path):
        """A page of the tagged stream in the first chain whose CRC is wrong (damaged; players skip
        it): mutagen gives the pages it renumbers (when the comment header takes another number of
        pages) a right CRC, and players would then play that page's damaged audio; a damaged page
        holding the comment header and the packets beside it (Vorbis's setup header) is laid anew
        with right CRCs by every rewrite, and players would read its damaged codec header. The
        first page (the identification header, never rewritten) and other streams' pages (kept as
        they are) are no cause."""
        with open(path, "rb") as f:
            serial = _ogg_stream_serial(f, self.ident_magic)
            done, partial = 0, bytearray()
            for start, page, raw in _ogg_chain_pages(f, _ogg_first_chain_end(f)):
                if page.serial != serial:
                    continue
                header = done < self.headers
                if header:
                    complete, partial = _ogg_packets(page, partial)
                    done += len(complete)
                if ogg_page_intact(raw) or page.first:
                    continue
                damaged = f"its Ogg page {page.sequence} (at byte {start}) fails its CRC check (damaged: players skip it"
                if header:
                    return (f"{damaged}, and the {self.codec} headers on it), and every rewrite lays the comment "
                            "header and the packets beside it in new pages with right CRCs: players would read its "
                            "damaged codec header")  # fmt: skip
                return (f"{damaged}), and the rewrite renumbers the pages after the comment header, which gives it a "
                        "right CRC: players would play its damaged audio")  # fmt: skip
        return None


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


def _ogg_chain_pages(f, chain_end: int):
    """(offset, mutagen's OggPage, its bytes) of each page of the open Ogg file ``f`` before
    ``chain_end`` (`_ogg_first_chain_end`), in order."""
    from mutagen.ogg import OggPage

    f.seek(0)
    while f.tell() < chain_end:
        start = f.tell()
        try:
            page = OggPage(f)
        except EOFError:
            return
        end = f.tell()
        f.seek(start)
        yield start, page, f.read(end - start)


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
