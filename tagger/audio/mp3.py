"""An MP3's structure, read from its frame headers and tags: its frames (`_mp3_frame`,
`_mp3_frames_at`, followed one by one: `_mp3_walk`), the length a Xing/Info/VBRI header declares,
what libsndfile would decode only in part (`_mp3_decoded_in_part`: joined files, VBR without a
length header), the tags between and after its frames (`_tag_at`, `_trailing_tags`, `_mp3_feed`),
how its frames end (`_mp3_tail`, `_mp3_end_intact`); and a file whose last frame is cut
(`_check_mp3_cut`)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from tagger.audio.fileinfo import AudioInfo
from tagger.audio.losses import _note_or_refuse, _seconds_of
from tagger.containers import id3v2_length
from tagger.errors import AudioReadError


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


def _declared_bytes(frame: bytes) -> int | None:
    """The length in bytes of the MPEG stream that a Xing/Info or VBRI header in `frame` (the
    stream's first frame) declares; None where it declares none."""
    for tag in (b"Xing", b"Info"):
        at = frame.find(tag)
        if at >= 0 and at + 16 <= len(frame):
            flags = int.from_bytes(frame[at + 4 : at + 8], "big")
            field = at + 8 + (4 if flags & 1 else 0)  # (the frame count comes first when present)
            return int.from_bytes(frame[field : field + 4], "big") or None if flags & 2 else None
    at = frame.find(b"VBRI")
    if at >= 0 and at + 14 <= len(frame):
        return int.from_bytes(frame[at + 10 : at + 14], "big") or None
    return None


def _declared_frames(frame: bytes) -> int | None:
    """The number of frames after it that a Xing/Info header in `frame` (an MP3's first frame)
    declares; None where it declares none."""
    for tag in (b"Xing", b"Info"):
        at = frame.find(tag)
        if at >= 0 and at + 12 <= len(frame):
            return int.from_bytes(frame[at + 8 : at + 12], "big") or None if frame[at + 7] & 1 else None
    return None


def _vbri_seconds(path: Path) -> float | None:
    """The length in seconds that the VBRI header of an MP3 (Fraunhofer's encoders: 32 bytes after
    its first frame's header, where no Xing/Info header is) declares, from its frame count; None
    where there is none."""
    frame = _first_mp3_frame(path)
    if frame is None:
        return None
    hz = _mp3_frame(frame, 0)[2]
    if frame[36:40] != b"VBRI" or b"Xing" in frame or b"Info" in frame or len(frame) < 54:
        return None
    frames = int.from_bytes(frame[50:54], "big")
    mpeg1 = (frame[1] >> 3) & 3 == 3
    return frames * (1152 if mpeg1 else 576) / hz if frames else None


def _mp3_decoded_in_part(path: Path, probes: int = 8) -> str | None:
    """Why libsndfile would decode an MP3 only in part, or None: a VBR MP3 without a header of its
    length (Xing, Info, VBRI) whose length libsndfile takes from its first frame's bit rate and stops
    reading at (it declares 119.6 s for a 600 s file, and decodes no more); MP3 files joined one after
    another (``cat a.mp3 b.mp3``), whose first header declares the first file only (libsndfile
    decoded 6 s of 16); frames of another sample rate than the first's, or mono frames after stereo
    ones or stereo after mono (joined files again), at which libsndfile stops without a word (a
    CBR mono MP3 joined to a stereo one: 3.0 s of 6.1 s decoded, the length it declares); a Xing/Info
    header that declares fewer frames than the bytes it declares hold, at whose count libsndfile
    stops (half the frames declared: 1.5 s of a 3.0 s file decoded, as if whole). Frames are looked
    for at `probes` places through the file, and after the bytes a header declares (past an ID3v2
    tag there); where the mean frame length those bytes and frames give is not within 10% of the
    frames found at the probes, the frames up to those bytes are counted (`_mp3_walk`: 30-80 ms for a
    10-minute file, which an encoder's CBR file, whose header is right, is spared). Frames are looked
    for and followed before the tags at its end alone (`_trailing_tags`), and a probe takes
    `MP3_CHAIN` frames of one kind in a row for frames: a 16 kHz MP3 with a cover in an APEv2 tag was
    'MP3 files joined (frames of 48000 Hz after frames of 16000 Hz)' for two such headers in the
    cover's bytes, and went to ffmpeg, which gave the encoder's padding at its end too (175
    samples)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = id3v2_length(f.read(10))
            end = max(_trailing_tags(f, size)[0], start)
            first, known, lengths = None, False, []
            for k in range(probes):
                at = start + (end - start) * k // probes
                f.seek(at)
                data = f.read(min(16384, end - at))
                found = _mp3_frames_at(data, MP3_CHAIN, at + len(data) == end)
                if found is None:
                    continue
                i, (kbps, length, hz) = found
                mono = data[i + 3] >> 6 == 3  # (the channel mode: 3 is mono)
                lengths.append(length)
                if first is None:
                    first, frame, first_mono, first_at = (kbps, hz), data[i : i + length], mono, at + i
                    known = any(tag in frame for tag in (b"Xing", b"Info", b"VBRI"))
                    declared = _declared_bytes(frame)
                    if declared is not None and _frames_after(f, first_at + declared, end):
                        return "MP3 files joined one after another (its first header declares the length of the first only)"
                elif (hz, mono) != (first[1], first_mono):
                    return _joined((hz, mono), (first[1], first_mono))
                elif not known and kbps != first[0]:
                    return "a VBR MP3 without a length header"
            frames = _declared_frames(frame) if first is not None else None
            if frames and declared and abs(declared / (frames + 1) / (sum(lengths) / len(lengths)) - 1) > 0.1:
                f.seek(first_at)
                _, _, held, _ = _mp3_walk(f, first_at, min(first_at + declared, end))
                if held - 1 > frames + 1:  # (its own frame not counted; one more allowed, as encoders go)
                    return (f"its Xing/Info header declares {frames} frames, where the {declared} bytes it declares hold "
                            f"{held - 1}")  # fmt: skip
            if first is not None and not known:
                # (a part of another rate or mode between the probes, as short as a second: libsndfile
                # stopped there, 42.6 s of an 83.5 s file decoded, what was after it never heard)
                f.seek(first_at)
                rates: set[int] = set()
                *_, kinds = _mp3_walk(f, first_at, end, rates)
                other = next((k for k in kinds if k != (first[1], first_mono)), None)
                if other is not None:
                    return _joined(other, (first[1], first_mono))
                if len(rates) > 1:  # (a 320 kbps part then a 32 kbps one, joined: 5.55 s of 10 s decoded)
                    return "a VBR MP3 without a length header"
    except OSError:
        return None
    return None


def _joined(kind: tuple[int, bool], first: tuple[int, bool]) -> str:
    """Why an MP3 whose frames of `kind` (sample rate, mono) follow frames of the `first` kind is
    decoded by ffmpeg (`_mp3_decoded_in_part`)."""
    (hz, mono), first_hz = kind, first[0]
    if hz != first_hz:
        return f"MP3 files joined one after another (frames of {hz} Hz after frames of {first_hz} Hz)"
    now, before = ("mono", "stereo") if mono else ("stereo", "mono")
    return f"MP3 files joined one after another ({now} frames after {before} frames)"


def _frames_after(f, pos: int, end: int) -> bool:
    """Whether MPEG layer III frames (`MP3_CHAIN` of one kind in a row, read in full) begin within 4
    KiB of `pos` in the open file `f`, before `end` (where the tags at its end begin), past the tags there
    (`_tag_at`: the first part's ID3v1 or APEv2 tag, the second's ID3v2 tag; an APEv2 tag holding a
    cover was longer than 4 KiB, and the parts after it went unseen)."""
    for _ in range(8):
        f.seek(pos)
        length = _tag_at(f.read(32))
        if not length:
            break
        pos += length
    if pos >= end:
        return False
    f.seek(pos)
    return _mp3_frames_at(f.read(min(4096 + MP3_CHAIN * MP3_MAX_FRAME, end - pos)), MP3_CHAIN) is not None


def _check_mp3_cut(path: Path, meta: AudioInfo, tail: _Mp3Tail | None, decoded: int, notes: list[str] | None) -> None:
    """An MP3 without a header of its length (Xing, Info, VBRI) whose last frame the file cuts
    (`_mp3_tail`: a copy or download that stopped, ID3v1-tagged afterwards or not) is analysed as
    what it holds, with a note saying so; how much is missing is not known (a CBR file's length is
    estimated from its size, which the cut made). A file with such a header comes under
    `_check_shortfall`'s rule, against the length it declares."""
    if tail is None or not tail.held or _mp3_length_declared(path):
        return
    seconds = decoded / meta.decode_rate
    where = (f"inside an MPEG frame ({tail.held} of its {tail.length} bytes)" if tail.length
             else f"inside an MPEG frame's header ({tail.held} of its 4 bytes)")  # fmt: skip
    after = f", before {' and '.join(reversed(tail.trailing))}" if tail.trailing else ""
    if notes is None:
        raise AudioReadError(path, f"cut short: the file ends {where}{after}; nothing stored, as how much is "
                                   "missing is not known (no header declares its length)")  # fmt: skip
    notes.append(f"the file ends {where}{after}: cut short (a copy or download that stopped?), analysed as the "
                 f"{seconds:.1f} s it holds; how much is missing is not known (no header declares its length)")


def _check_mp3_stopped(path: Path, meta: AudioInfo, decoded: int) -> None:
    """An MP3 without a header of its length (a Xing/Info/VBRI header's: `_check_shortfall`) that
    libsndfile decoded to less than half of what its bytes hold at its first frame's bit rate (from
    its first frame to the tags at its end; its frames of one rate, `_mp3_decoded_in_part` having
    sent any other to ffmpeg): libsndfile stopped at bytes that are no MPEG frames it reads, without
    a word. A 26 s MP3 with a raw AAC inside it was 5.0 s of it; a raw AAC read as an MP3 (its first
    frame's header damaged, under another name than ``.aac``: `tagger.audio.rawframes._raw_not_mp3`)
    0.02 s of 6 s. An error: what it holds past there is not known, nor that it is an MP3."""
    seconds = decoded / meta.decode_rate
    # (libsndfile's own length, of the same bytes and bit rate, reached half way: no file read)
    if meta.decoder != "soundfile" or meta.format != "MP3" or seconds >= (meta.duration or 0.0) / 2:
        return
    if _mp3_length_declared(path):
        return
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = id3v2_length(f.read(10))
            f.seek(start)
            data = f.read(16384)
            end, _padded, _names = _mp3_ends(f, size)
    except (OSError, ValueError):
        return
    # (its first two frames in a row; or a lone header where its audio begins, which libsndfile read)
    found = _mp3_frames_at(data) or ((0, _mp3_frame(data, 0)) if _mp3_frame(data, 0) else None)
    if found is None:
        return
    first, kbps = start + found[0], found[1][0]
    audio = end - first
    if seconds >= audio * 8 / (kbps * 1000) / 2:
        return
    # (tags its frames reach are no audio: an ID3v2 tag appended at its end, a 600 KB cover in it after
    # 5 s of frames, was read as 42 s of them and the whole file refused)
    try:
        with open(path, "rb") as f:
            _, tags, _, _ = _mp3_walk(f, first, end)
    except OSError:
        return
    audio -= sum(after - begins for begins, after in tags)
    held = audio * 8 / (kbps * 1000)
    if seconds >= held / 2:
        return
    raise AudioReadError(path, f"libsndfile, reading it as an MP3, stopped after {seconds:.2f} s of the about "
                               f"{held:.1f} s its {audio} bytes of audio hold at its first frame's {kbps} kbps: "
                               "the rest is no MPEG frames it reads (another format's frames, or damage); nothing "
                               "stored")  # fmt: skip


def _mp3_length_declared(path: Path) -> bool:
    """Whether an MP3's first frame holds a Xing, Info or VBRI header (its length exact; else
    libsndfile estimates it from the file's size, which tags at its end make too long)."""
    frame = _first_mp3_frame(path)
    return frame is not None and any(t in frame for t in (b"Xing", b"Info", b"VBRI"))


def _first_mp3_frame(path: Path) -> bytes | None:
    """The bytes of an MP3's first MPEG frame (after its ID3v2 tag, within its first 16 KiB), where a
    Xing, Info or VBRI header stands; None where none is found or the file cannot be read."""
    try:
        with open(path, "rb") as f:
            f.seek(id3v2_length(f.read(10)))
            data = f.read(16384)
    except OSError:
        return None
    found = _mp3_frames_at(data)
    if found is None:
        return None
    i, (_kbps, length, _hz) = found
    return data[i : i + length]


@dataclass(frozen=True)
class _Mp3Layout:
    """What an MP3's bytes are, frame headers and tags read (`_mp3_layout`)."""

    size: int
    end: int
    """Where its audio ends: before the tags at the end of the file (`_trailing_tags`)."""
    trailing: list[str]
    """The names of those tags, the last one first ("an ID3v1 tag")."""
    walked: int
    """Where its frames, followed one by one from the first, end (`_mp3_walk`): `end` when whole."""
    between: list[tuple[int, int]]
    """(first, last + 1) byte of each tag between its frames (files joined one after another)."""


def _mp3_layout(path: Path) -> _Mp3Layout | None:
    """The layout of an MP3 (its frames followed from the first, past an ID3v2 tag at its start);
    None where no frame is found or it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = id3v2_length(f.read(10))
            f.seek(start)
            found = _mp3_frames_at(f.read(16384))
            if found is None:
                return None
            end, padded, trailing = _mp3_ends(f, size)
            walked, between, _, _ = _mp3_walk(f, start + found[0], padded)
    except (OSError, ValueError):
        return None
    tail = _mp3_tail(path) if end < padded else None  # (zero bytes at its end: where its last frame ends)
    if tail is not None and not tail.held:
        end, trailing = tail.end, tail.trailing
    return _Mp3Layout(size, end, trailing, walked, between)


def _mp3_end_intact(path: Path) -> str | None:
    """What follows the last MPEG frame of an MP3 whose frames, followed one by one from the first,
    end whole right before a tag at the end of the file (ID3v1, APEv2, Lyrics3: "an ID3v1 tag"), or
    None. Such a file was cut by an editor (mp3DirectCut, an old ``ffmpeg -c copy``) that kept the
    original's frame count in its Xing/Info/VBRI header: its end is intact, the header overstates.
    A download that stopped ends inside a frame (on a frame's end about one time in 400) and has no
    tag after its frames; a tool that later appends an ID3v1 tag leaves the cut frame before it."""
    layout = _mp3_layout(path)
    if layout is None or not _without_padding(layout.trailing) or layout.walked != layout.end:
        return None  # (zero bytes alone after a whole frame: a download's preallocated file, stopped?)
    return " and ".join(reversed(layout.trailing))


@dataclass(frozen=True)
class _Mp3Tail:
    """How an MP3's frames end (`_mp3_tail`)."""

    end: int
    """Where its audio ends: before the tags at the end of the file (`_trailing_tags`)."""
    trailing: list[str]
    """The names of those tags, the last one first ("an ID3v1 tag")."""
    held: int
    """The bytes the file holds of its last frame where it ends inside it (cut), 0 where it ends on
    a whole frame."""
    length: int
    """That frame's length in bytes (0 where even its header is cut)."""


MP3_MAX_FRAME = 1729
"""The longest MPEG frame in bytes: layer II at 384 kbps and 32 kHz, padded (layer III: 1441, 320 kbps
at 32 kHz, 160 kbps at 8 kHz)."""


def _mp3_tail(path: Path) -> _Mp3Tail | None:
    """How the frames of an MP3 end before the tags at its end, read from its last few frames (a
    few KiB, whatever its length: not `_mp3_walk`'s walk from the first): on a whole frame, or inside
    one (cut: a copy or download that stopped). None where no chain of frames reaches its end
    (bytes that are neither frames nor tags there) or it cannot be read."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = id3v2_length(f.read(10))
            end, padded, trailing = _mp3_ends(f, size)
            first = max(start, end - 4 * MP3_MAX_FRAME)
            f.seek(first)
            data = f.read(min(padded, end + MP3_MAX_FRAME) - first)  # (a frame may end on zero bytes)
    except (OSError, ValueError):
        return None
    found = _mp3_frames_at(data[: 2 * MP3_MAX_FRAME + 4])
    if found is None:
        return None
    pos, stop = found[0], end - first
    while pos < stop:
        frame = _mp3_frame(data, pos)
        if frame is None:  # (the header itself cut, 1-3 bytes of it left, or bytes that are no frame)
            left = data[pos:stop]
            header = len(left) < 4 and left[0] == 0xFF and (len(left) == 1 or left[1] & 0xE0 == 0xE0)
            return _Mp3Tail(end, trailing, len(left), 0) if header else None
        if pos + frame[1] > stop and first + pos + frame[1] != padded:
            # (its end past the file's bytes, or inside zeros that go on past it: a download stopped
            # inside it, its file preallocated; a frame ending exactly where they do holds them itself,
            # as does one whose audio ends where they begin: its ancillary bytes zero, then padding)
            whole = _mp3_audio_end(data, pos) if first + pos + frame[1] < padded else None
            if whole is not None and whole[0] <= stop <= whole[1]:
                pos += frame[1]
                break
            held = (stop if first + pos + frame[1] < padded else padded - first) - pos
            return _Mp3Tail(end, trailing, held, frame[1])
        pos += frame[1]
    return _Mp3Tail(first + pos, trailing if first + pos < padded else _without_padding(trailing), 0, 0)


def _mp3_audio_end(data: bytes, pos: int) -> tuple[int, int] | None:
    """Where in `data` the zero bytes after the MPEG layer III frame at ``data[pos]``, the last frame
    of its file, may begin for the frame to be whole: (from, to). Its audio ends at `to`: its main
    data, read from its side info (where it begins, `main_data_begin` bytes back in the frames before,
    and its granules' bits, `part2_3_length`); a last frame's bytes after it are its ancillary data,
    no audio, which an encoder may write as zero bytes (lame writes 0x55 and 0xAA, others zeros). So
    zeros that begin there, or up to 2 bytes before (its main data's own last bytes may be zero), or,
    in a frame without main data of its own (silence), anywhere after its side info's last
    `part2_3_length` (the rest of a silent granule's side info may be zero), and go on past the
    frame's end are no sign of a frame cut short; nor are zeros that begin after the "LAME3.100"
    lame writes after its audio (`_lame_ancillary`: `to` past it). A download that stopped inside a
    frame stops there one time in a few hundred (in a frame of the middle, the bytes after its audio
    are the next frames', not zeros). A layer II frame's audio ends where its bits do (`_mp2_bits`;
    its encoder zero-fills the rest: ffmpeg's and twolame's). None where the frame is of layer I or
    its side info is cut."""
    if pos + 4 > len(data):
        return None
    h = int.from_bytes(data[pos : pos + 4], "big")
    if (h >> 17) & 3 == 2:
        used = _mp2_bits(data, pos)
        return None if used is None else (pos + (used + 7) // 8 - 2, pos + (used + 7) // 8)
    if (h >> 17) & 3 != 1:
        return None
    mpeg1, mono = (h >> 19) & 3 == 3, (h >> 6) & 3 == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    at = pos + 4 + (0 if (h >> 16) & 1 else 2)  # (a CRC after the header where its protection bit is 0)
    if at + side > len(data):
        return None
    bits, n = int.from_bytes(data[at : at + side], "big"), 8 * side
    begin = bits >> (n - (9 if mpeg1 else 8))
    read = (9 + (5 if mono else 3) + 4 * (1 if mono else 2)) if mpeg1 else (8 + (1 if mono else 2))  # (scfsi too)
    total = fields = 0
    for _ in range((2 if mpeg1 else 1) * (1 if mono else 2)):
        total += (bits >> (n - read - 12)) & 0xFFF
        fields = read + 12
        read += 59 if mpeg1 else 63
    own = max(0, (total + 7) // 8 - begin)
    frame = _mp3_frame(data, pos)
    ends, anc = at + side + own, 8 * (at + side) + max(0, total - 8 * begin)  # (the bit its audio ends on)
    lame = _lame_ancillary(data, anc, pos + (frame[1] if frame else 0))
    return (at + (fields + 7) // 8 if not own else ends - 2), max(ends, lame)


_MP2_STEPS = ((0, 3, 7, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095, 8191, 16383, 32767, 65535),
              (0, 3, 5, 7, 9, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095, 8191, 65535),
              (0, 3, 5, 7, 9, 15, 31, 65535), (0, 3, 5, 65535),
              (0, 3, 5, 9, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095, 8191, 16383, 32767),
              (0, 3, 5, 9, 15, 31, 63, 127),
              (0, 3, 5, 7, 9, 15, 31, 63, 127, 255, 511, 1023, 2047, 4095, 8191, 16383), (0, 3, 5, 9))  # fmt: skip
_MP2_TABLES = ((0,) * 3 + (1,) * 8 + (2,) * 12 + (3,) * 4, (0,) * 3 + (1,) * 8 + (2,) * 12 + (3,) * 7,
               (4,) * 2 + (5,) * 6, (4,) * 2 + (5,) * 10, (6,) * 4 + (5,) * 7 + (7,) * 19)  # fmt: skip
"""Layer II's bit allocation tables (ISO 11172-3 B.2a-d, 13818-3 B.1 for MPEG-2): each subband's
quantisation steps (`_MP2_STEPS`, their allocation read in 4, 3 or 2 bits: 16, 8 or 4 of them)."""


def _mp2_bits(data: bytes, pos: int) -> int | None:
    """The bits of the MPEG layer II frame at ``data[pos]`` its audio takes (header, CRC, bit
    allocation, scale factor selection, scale factors and 12 granules of samples); None where its
    bit allocation is cut."""
    frame = _mp3_frame(data, pos)
    if frame is None:
        return None
    kbps, length, hz = frame
    h = int.from_bytes(data[pos : pos + 4], "big")
    mode, nch = (h >> 6) & 3, 1 if (h >> 6) & 3 == 3 else 2
    per = kbps // nch
    if (h >> 19) & 3 != 3:
        table = _MP2_TABLES[4]
    elif (hz == 48000 and per >= 56) or 56 <= per <= 80:
        table = _MP2_TABLES[0]
    else:
        table = _MP2_TABLES[1 if hz != 48000 and per >= 96 else 2 if hz != 32000 and per <= 48 else 3]
    bound = min(len(table), ((h >> 4) & 3) * 4 + 4) if mode == 1 else len(table)  # (joint stereo's)
    if pos + length > len(data):
        return None
    bits, n = int.from_bytes(data[pos : pos + length], "big"), 8 * length
    at = 32 + (0 if (h >> 16) & 1 else 16)

    def read(width: int) -> int:
        nonlocal at
        at += width
        return (bits >> (n - at)) & ((1 << width) - 1) if at <= n else 0

    steps = []
    for sb, kind in enumerate(table):
        width = len(_MP2_STEPS[kind]).bit_length() - 1
        steps.append([_MP2_STEPS[kind][read(width)] for _ in range(nch)] if sb < bound else
                     [_MP2_STEPS[kind][read(width)]] * nch)  # fmt: skip
    factors = sum((18, 12, 6, 12)[read(2)] for both in steps for step in both if step)
    samples = sum({3: 5, 5: 7, 9: 10}.get(step) or 3 * (step + 1).bit_length() - 3
                  for sb, both in enumerate(steps) for step in (both if sb < bound else both[:1]) if step)  # fmt: skip
    return at + factors + 12 * samples if at <= n else None


def _lame_ancillary(data: bytes, bit: int, end: int) -> int:
    """Where the ancillary data LAME writes after a frame's audio ends, found beginning at bit `bit`
    of `data` (where the frame's main data ends, anywhere in a byte) or a few bits on, before `end`
    (the frame's end): "LAME" and its version ("LAME3.100", "LAME3.99r", cut where the frame ends);
    0 where none begins there. lame writes 0x55 and 0xAA after it, but zero bytes without its bit
    reservoir (``lame --nores``, ffmpeg's ``-reservoir 0``), in every frame: a whole last frame's
    zeros then begin up to 9 bytes past its audio."""
    chunk = data[bit // 8 : min(end, len(data), bit // 8 + _LAME_ANCILLARY + 2)]
    for skip in range(bit % 8, bit % 8 + 9):
        n = 8 * len(chunk) - skip
        if n < 8:
            return 0
        text = ((int.from_bytes(chunk, "big") & ((1 << n) - 1)) >> (n % 8)).to_bytes(n // 8, "big")
        count = 0
        for i, byte in enumerate(text[:_LAME_ANCILLARY]):
            if (byte != b"LAME"[i]) if i < 4 else (byte not in b"0123456789.abcdefghijklmnopqrstuvwxyz"):
                break
            count = i + 1
        if count >= min(4, len(text)):
            return bit // 8 + (skip + 8 * count + 7) // 8
    return 0


_LAME_ANCILLARY = 16
"""The most bytes of "LAME" and its version read after a frame's audio (`_lame_ancillary`)."""


def _without_padding(names: list[str]) -> list[str]:
    """`names` (`_mp3_ends`) less the zero padding: zero bytes its last frame ends on, of its own."""
    return [name for name in names if name != "zero padding"]


def _mp3_junk(path: Path) -> tuple[int, int] | None:
    """Where the frames of an MP3 without a header of its length (Xing, Info, VBRI), followed one by
    one from the first (`_mp3_layout`), end at bytes that are neither frames nor a tag known, up to
    the tags at its end, with no two frames in a row after them: (where its last whole frame ends,
    where those bytes end); None where its frames reach its end or frames follow (damage in its
    middle, which the decoders go on past). Such bytes (a download's garbage, a tool's leftovers, a
    frame cut and then something appended) were decoded as frames: libsndfile failed on them from a
    few KiB on, ffmpeg said it could not decode them, and the whole file was refused. Read only for
    a file whose last few frames do not reach its end (`_mp3_tail`), so a walk from its first frame
    (30-50 ms for 10 minutes) costs only such files."""
    if _mp3_length_declared(path):  # (decoded to the frame count it declares: what follows is never read)
        return None
    layout = _mp3_layout(path)
    if layout is None or layout.walked >= layout.end:
        return None
    try:
        with open(path, "rb") as f:
            pos = layout.walked
            while pos < layout.end:
                f.seek(pos)
                data = f.read(min(1 << 20, layout.end - pos) + 2 * MP3_MAX_FRAME)[: layout.end - pos]
                if _mp3_frames_at(data) is not None:
                    return None
                pos += max(1, len(data) - 2 * MP3_MAX_FRAME)
    except OSError:
        return None
    return layout.walked, layout.end


def _check_mp3_junk(path: Path, meta: AudioInfo, junk: tuple[int, int] | None, decoded: int,
                    notes: list[str] | None) -> None:  # fmt: skip
    """An MP3 whose frames are followed by bytes that are neither frames nor a tag known
    (`_mp3_junk`), decoded without them: whether they held audio once (a frame damaged, frames after
    it) is not known, so they count as the most audio they could hold, at its first frame's bit rate,
    under `MAX_LOST_SHARE`'s rule: a note where that is at most 1% of the length (a few KiB after a
    song), else an error (a 26 s MP3 with a raw AAC inside it after its first 5 s stays refused)."""
    if junk is None:
        return
    frame = _first_mp3_frame(path)
    kbps = _mp3_frame(frame, 0)[0] if frame is not None else 0
    seconds, junk_bytes = decoded / meta.decode_rate, junk[1] - junk[0]
    most = junk_bytes * 8 / (kbps * 1000) if kbps else float("inf")
    what = (f"{junk_bytes} bytes after its last whole MPEG frame are neither MPEG frames nor a tag known (damage, "
            "or what a download or a tool left?)")  # fmt: skip
    _note_or_refuse(path, notes, lost=most, duration=seconds + most,
                    note=f"{what}: analysed as the {seconds:.1f} s of its frames before them (they hold at most "
                         f"{most:.3f} s at its first frame's {kbps} kbps)",
                    refusal=f"{what}; nothing stored, as they could hold {_seconds_of(most, seconds + most)} (at its "
                            f"first frame's {kbps} kbps) and no header declares its length")  # fmt: skip


def _mp3_feed(path: Path) -> tuple[tuple[int, int], ...]:
    """The byte ranges of an MP3 to give ffmpeg (`AudioInfo.feed`) where tags lie between its frames
    (``cat a.mp3 b.mp3``, b beginning with its ID3v2 tag): all but those tags, and but the tags at
    its end where its frames reach them (ffmpeg, reading a pipe, cannot look for those); () where no
    tag lies between its frames, for ffmpeg to read the file itself. Where the walk stops at bytes
    that are neither frames nor tags (damage), the rest is given as it is, for ffmpeg's own rule.
    An APEv2 or Lyrics3 tag at its end that its frames reach is left out too, tags between them or
    not: ffmpeg skips an ID3v1 tag there, and decodes those as frames it cannot ("Header missing",
    a whole VBR MP3 without a length header then an error)."""
    layout = _mp3_layout(path)
    if layout is None:
        return ()
    ends_in_others = layout.walked == layout.end and any(t != "an ID3v1 tag" for t in layout.trailing)
    if not layout.between and not ends_in_others:
        return ()
    ranges, pos = [], 0
    for first, after in layout.between:
        ranges.append((pos, first))
        pos = after
    ranges.append((pos, layout.end if layout.walked == layout.end else layout.size))
    return tuple((a, b) for a, b in ranges if b > a)


def _feed_before(feed: tuple[tuple[int, int], ...], before: int) -> tuple[tuple[int, int], ...]:
    """The byte ranges `feed` (`AudioInfo.feed`; () for the whole file) less what lies from `before`
    on: an MP3's frames alone, without the bytes after them (`_mp3_junk`)."""
    return tuple((a, min(b, before)) for a, b in (feed or ((0, before),)) if a < before)


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
