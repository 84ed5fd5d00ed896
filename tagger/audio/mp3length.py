"""The length an MP3's first frame declares (a Xing/Info or VBRI header: `_declared_bytes`,
`_declared_frames`, `_vbri_seconds`, `_mp3_length_declared`), and what libsndfile would decode of
an MP3 only in part (`_mp3_decoded_in_part`: MP3 files joined, VBR without a length header, a
Xing/Info header declaring fewer frames than its bytes hold), which the probe sends to ffmpeg."""

from __future__ import annotations

import os
from pathlib import Path

from tagger.audio.endtags import _tag_at, _trailing_tags
from tagger.audio.mp3frames import MP3_CHAIN, MP3_MAX_FRAME, _mp3_frame, _mp3_frames_at, _mp3_walk
from tagger.containers import id3v2_length


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
