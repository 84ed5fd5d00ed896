"""The tags at the end of an MP3 (or FLAC, or raw stream) and between its frames, read from their
bytes: a tag where a frame was to begin (`_tag_at`: ID3v2, ID3v1, APEv2), the tags after its audio
(`_trailing_tags`: ID3v1, APEv2, Lyrics3 v1 and v2, MusicMatch, an appended ID3v2 tag), and the
zero bytes after an MP3's last frame (`_mp3_ends`: a downloader's or ripper's padding)."""

from __future__ import annotations

from tagger.containers import id3v2_length


def _tag_at(head: bytes) -> int:
    """The length in bytes of the tag that `head` (32 bytes or more of an MP3, where a frame was to
    begin) begins with: an ID3v2 tag, an ID3v1 tag (128 bytes) or an APEv2 tag with its header (as
    joined files hold between their parts); 0 where none does."""
    if head[:3] == b"ID3" and len(head) >= 10 and head[3] in (2, 3, 4) and max(head[6:10]) < 0x80:
        return id3v2_length(head)
    if head[:3] == b"TAG":
        return 128
    if head[:8] == b"APETAGEX" and len(head) >= 24 and int.from_bytes(head[20:24], "little") & 1 << 29:
        return 32 + int.from_bytes(head[12:16], "little")  # (the header, and the size: items and footer)
    return 0


def _trailing_tags(f, size: int) -> tuple[int, list[str]]:
    """Where the audio of the open MP3 (or FLAC) `f` of `size` bytes ends: before the tags at its end
    (ID3v1, APEv2 by its footer, Lyrics3 v2, Lyrics3 v1, MusicMatch, an ID3v2 tag by its footer, in
    any order), and their names, the last one first."""
    end, names = size, []

    def read(at: int, n: int) -> bytes:
        f.seek(at)
        return f.read(n)

    for _ in range(8):
        if end >= 128 and read(end - 128, 3) == b"TAG":
            end -= 128
            names.append("an ID3v1 tag")
            continue
        footer = read(end - 32, 32) if end >= 32 else b""
        if footer[:8] == b"APETAGEX":
            length, flags = int.from_bytes(footer[12:16], "little"), int.from_bytes(footer[20:24], "little")
            begins = end - length - (32 if flags & 1 << 31 else 0)
            if length >= 32 and begins >= 0:
                end = begins
                names.append("an APEv2 tag")
                continue
        tail = read(end - 15, 15) if end >= 15 else b""
        if tail[6:] == b"LYRICS200" and tail[:6].isdigit():
            begins = end - 15 - int(tail[:6])
            if begins >= 0 and read(begins, 11) == b"LYRICSBEGIN":
                end = begins
                names.append("a Lyrics3 tag")
                continue
        if tail[6:] == b"LYRICSEND":
            # (Lyrics3 v1: no size; its text, at most 5100 bytes, between LYRICSBEGIN and LYRICSEND,
            # which its writers put right before an ID3v1 tag, which a later tool may have removed.
            # Winamp's lyrics plugins, old rippers: libsndfile and ffmpeg decoded it as frames and
            # failed, the whole file refused)
            window = max(0, end - 9 - 5100 - 11)
            begins = read(window, end - 9 - window).rfind(b"LYRICSBEGIN")
            if begins >= 0:
                end = window + begins
                names.append("a Lyrics3 tag")
                continue
        musicmatch = _musicmatch_length(read, end)
        if musicmatch:
            end -= musicmatch
            names.append("a MusicMatch tag")
            continue
        id3 = read(end - 10, 10) if end >= 10 else b""
        if id3[:3] == b"3DI" and id3[3] == 4 and id3[5] & 0x10 and max(id3[6:10]) < 0x80:
            begins = end - id3v2_length(b"ID3" + id3[3:])  # (an ID3v2.4 tag appended, by its footer)
            if begins >= 0 and read(begins, 5) == b"ID3" + id3[3:5]:
                end = begins
                names.append("an ID3v2 tag")
                continue
        break
    return end, names


MUSICMATCH_SYNC = b"18273645\0\0"
"""How a MusicMatch tag's version block (and its optional header, 256 bytes each) begins."""


def _musicmatch_length(read, end: int) -> int:
    """The length of the MusicMatch tag (MusicMatch Jukebox before 4.0) that ends at `end`, read with
    ``read(at, n)``; 0 where none does. Its 48-byte footer (``Brava Software Inc.``, 13 spaces, a
    version ``d.dd``) follows 20 bytes of offsets (little-endian: its image extension's first, its
    version block's fourth), after its metadata of one of four sizes and its version block; before
    that block, its image (a 4-byte extension, a 4-byte size, the image, 4 unused bytes) of the
    length the two offsets give, whose size must agree; before all, an optional 256-byte header."""
    if end < 48 + 20 + 256 + 7868:
        return 0
    footer = read(end - 48, 48)
    version = footer[32:36]
    if footer[:32] != b"Brava Software Inc." + b" " * 13 or not (version[:1] + version[2:]).isdigit() or version[1:2] != b".":
        return 0
    offsets = read(end - 68, 20)
    image = int.from_bytes(offsets[12:16], "little") - int.from_bytes(offsets[:4], "little")
    if image < 12:
        return 0
    for metadata in (7868, 7936, 8004, 8132):
        length = 48 + 20 + metadata + 256
        if end - length - image < 0 or read(end - length, 10) != MUSICMATCH_SYNC:
            continue
        length += image
        if int.from_bytes(read(end - length + 4, 4), "little") + 12 != image:
            return 0
        header = end - length - 256
        return length + (256 if header >= 0 and read(header, 10) == MUSICMATCH_SYNC else 0)
    return 0


PADDING_READ = 1 << 16
"""How much of an MP3's end is read back at a time for the zero bytes after its frames (`_mp3_ends`)."""


def _mp3_ends(f, size: int) -> tuple[int, int, list[str]]:
    """Where the audio of the open MP3 `f` of `size` bytes can end, before the tags at its end
    (`_trailing_tags`) and the zero bytes after its last frame (a downloader's or ripper's padding,
    which libsndfile and ffmpeg decoded as frames and failed: from 2,000 of them on, the whole file
    refused): (`end`, `padded`, the names of what follows it, the last one first), `end` where
    those zero bytes begin, `padded` where they end. A frame's own last bytes may be zero too: its
    last frame, read (`_mp3_tail`), is whole where it ends exactly at `padded` (the zeros its own,
    no padding), and cut short where the zeros begin inside it and go on past its end (a download
    stopped inside it, its file preallocated: which it is, is not known from its bytes). Zero bytes
    after a tag (before an ID3v1 tag, say) are the padding alone: `end` is then that tag's start,
    the tag's own last zero bytes (an APEv2 footer's) its own."""
    end, names = _trailing_tags(f, size)
    zeros = end
    while zeros > 0:
        f.seek(max(0, zeros - PADDING_READ))
        block = f.read(zeros - max(0, zeros - PADDING_READ))
        kept = block.rstrip(b"\0")
        zeros -= len(block) - len(kept)
        if kept:
            break
    if zeros == end:
        return end, end, names
    before, more = _trailing_tags(f, zeros)
    if more:  # (a tag before the zeros: it ends exactly where they begin)
        return before, before, [*names, "zero padding", *more]
    # (or inside them, its own last bytes zero: an APEv2 footer's 8 reserved bytes, always; an ID3v1
    # tag of genre 0 without a comment; an ID3v2.4 footer of a size that is a multiple of 128. Taken
    # for frames, the tag and the zeros were given to ffmpeg, and a whole VBR file refused, 'could
    # not decode 1 of its frames')
    near = max(0, zeros - 128)
    f.seek(near)
    head = f.read(min(end, zeros + 128) - near)
    found = [near + i + n for what, n in ((b"APETAGEX", 32), (b"TAG", 128), (b"3DI", 10)) for i in _finds(head, what)]
    for tag_end in sorted(e for e in found if zeros < e <= end):
        before, more = _trailing_tags(f, tag_end)
        if more:
            return before, before, [*names, *(["zero padding"] if tag_end < end else []), *more]
    return zeros, end, [*names, "zero padding"]


def _finds(data: bytes, what: bytes) -> list[int]:
    """Where each `what` begins in `data`."""
    found, i = [], data.find(what)
    while i >= 0:
        found.append(i)
        i = data.find(what, i + 1)
    return found


def _without_padding(names: list[str]) -> list[str]:
    """`names` (`_mp3_ends`) less the zero padding: zero bytes its last frame ends on, of its own."""
    return [name for name in names if name != "zero padding"]
