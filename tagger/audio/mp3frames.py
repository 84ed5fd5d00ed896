"""An MPEG audio file's frames, read from their headers (MP3: layer III; MP2: layer II, which
libsndfile decodes as MP3): a frame's header (`_mp3_frame`), the first frames found in a few KiB
(`_mp3_frames_at`; frames of one kind in a row: `_mp3_chain`, `MP3_CHAIN`), the longest frame
(`MP3_MAX_FRAME`), and the frames of a file followed one by one past the tags between them
(`_mp3_walk`)."""

from __future__ import annotations

from tagger.audio.endtags import _tag_at


_MP3_KBPS = ((0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG 2 and 2.5, layers II and III
             (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320))  # MPEG 1, layer III
_MP2_KBPS = (0, 32, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320, 384)  # MPEG 1, layer II
_MP3_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}


def _mp3_frame(data: bytes, i: int) -> tuple[int, int, int] | None:
    """(bit rate in kbps, length in bytes, sample rate in Hz) of the MPEG layer III or layer II frame
    (MP2, which libsndfile decodes as MP3: broadcast recordings) whose header begins at ``data[i]``;
    None where none does. Layer II was not read: MP2 files joined of two sample rates, or of mono
    and stereo frames, went to libsndfile, which stopped at the change without a word (3.0 s of 6.0)."""
    if i + 4 > len(data):
        return None
    h = int.from_bytes(data[i : i + 4], "big")
    version, layer, index, rate = (h >> 19) & 3, (h >> 17) & 3, (h >> 12) & 15, (h >> 10) & 3
    if h >> 21 != 0x7FF or version == 1 or layer not in (1, 2) or index in (0, 15) or rate == 3:
        return None
    hz = _MP3_RATES[version][rate]
    if layer == 2:  # (1152 samples a frame in every version)
        kbps = _MP2_KBPS[index] if version == 3 else _MP3_KBPS[0][index]
        return kbps, 144 * kbps * 1000 // hz + ((h >> 9) & 1), hz
    kbps = _MP3_KBPS[version == 3][index]
    return kbps, (144 if version == 3 else 72) * kbps * 1000 // hz + ((h >> 9) & 1), hz


def _mp3_frames_at(data: bytes, chain: int | None = None, ends: bool = False) -> tuple[int, tuple[int, int, int]] | None:
    """The first MPEG layer III frame of `data` followed by another (two in a row, to trust a header
    found): (its offset, `_mp3_frame`); None where there is none. With `chain`, the first that begins
    `chain` frames in a row of one kind (sample rate, layer, mono or not: `_mp3_chain`), as a stream's
    frames are: two in a row were taken of bytes that only looked like headers (a 48 kHz header inside
    a 16 kHz frame whose length reached the next real header; two inside a cover in an APEv2 tag),
    and a whole file for MP3 files joined (`_mp3_decoded_in_part`). With `ends` (`data` ends where
    the file's frames do), fewer frames than `chain`, two at least, that end where `data` does are a
    stream's too: a VBR file of 2 or 3 frames without a length header (``ffmpeg -ss -c copy`` of a
    file's last 0.15 s) went to libsndfile, which stopped short of its end. Only the offsets of a 0xFF byte
    are tried (a header begins with 11 set bits): trying each of the 16 KiB read at a probe in
    Python took about 10 ms of each MP3's analysis."""
    end = len(data) - 4
    i = data.find(b"\xff", 0, end)
    while i >= 0:
        frame = _mp3_frame(data, i)
        if frame is not None and (_mp3_chain(data, i, chain, ends) if chain else _mp3_frame(data, i + frame[1]) is not None):
            return i, frame
        i = data.find(b"\xff", i + 1, end)
    return None


def _mp3_kind(data: bytes, i: int) -> tuple[int, int, bool] | None:
    """(sample rate, layer, mono) of the frame whose header begins at ``data[i]``; None where none does."""
    frame = _mp3_frame(data, i)
    return None if frame is None else (frame[2], data[i + 1] >> 1 & 3, data[i + 3] >> 6 == 3)


def _mp3_chain(data: bytes, i: int, frames: int, ends: bool = False) -> bool:
    """Whether `frames` MPEG frames of one kind (`_mp3_kind`) follow one another from ``data[i]``, the
    header of the last of them within `data`; with `ends`, or two or more that end where `data` does."""
    kind = _mp3_kind(data, i)
    for n in range(1, frames):
        if kind is None:
            return False
        i += _mp3_frame(data, i)[1]
        if ends and n >= 2 and i == len(data):
            return True
        if _mp3_kind(data, i) != kind:
            return False
    return kind is not None


MP3_CHAIN = 4
"""How many frames of one kind in a row `_mp3_decoded_in_part` takes for a stream's frames (a
header, or two, inside a frame's data or a tag's bytes is no frame of another file)."""


MP3_MAX_FRAME = 1729
"""The longest MPEG frame in bytes: layer II at 384 kbps and 32 kHz, padded (layer III: 1441, 320 kbps
at 32 kHz, 160 kbps at 8 kHz)."""


def _mp3_walk(f, start: int, stop: int, rates: set[int] | None = None,
              ) -> tuple[int, list[tuple[int, int]], int, set[tuple[int, bool]]]:  # fmt: skip
    """Follow the frames of the open MP3 `f`, each by its length, from the frame at `start` towards
    `stop` (where its audio ends: `_trailing_tags`), past tags between them (`_tag_at`: joined
    files): where the walk ends (`stop` when every byte up to it is a frame or a tag; short of it at a
    frame the file cuts, or at bytes that are neither), and the (first, last + 1) byte of each tag
    passed, the number of frames followed, and the kinds of them, (sample rate, mono); the bit rates
    of them are added to `rates` where it is given. Read a MiB at a time (not mapped: a file cut while
    it is read would kill the process with SIGBUS); 40-50 ms for a 10-minute 128 kbps file on a busy
    2-core machine."""
    tags: list[tuple[int, int]] = []
    pos, base, data, frames, kinds = start, start, b"", 0, set()
    while pos < stop:
        i = pos - base
        if i + 32 > len(data) and base + len(data) < stop:
            f.seek(pos)
            base, i, data = pos, 0, f.read(1 << 20)
        frame = _mp3_frame(data, i)
        length = frame[1] if frame is not None else _tag_at(data[i : i + 32])
        if not length or pos + length > stop:
            break
        if frame is None:
            tags.append((pos, pos + length))
        else:
            frames += 1
            kinds.add((frame[2], data[i + 3] >> 6 == 3))
            if rates is not None:
                rates.add(frame[0])
        pos += length
    return pos, tags, frames, kinds
