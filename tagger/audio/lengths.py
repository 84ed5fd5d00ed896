"""The lengths a file's headers declare exactly, against which a file cut short is found after
decoding: the formats whose declared length is exact (`EXACT_LENGTHS`) and the rule for a decode
that falls short of it (`_check_shortfall`), a WAV/AIFF data chunk that declares more than the file
holds (`_check_data_chunk`), the WAV header a Shorten file holds (`_shorten_seconds`)."""

from __future__ import annotations

import os
from pathlib import Path

from tagger.audio.fileinfo import AudioInfo
from tagger.audio.losses import _cut_short
from tagger.audio.matroska import _timeline_gaps
from tagger.audio.mp3 import _mp3_end_intact
from tagger.audio.mp3length import _mp3_length_declared
from tagger.errors import AudioReadError


def _shorten_seconds(path: Path) -> float | None:
    """The length a Shorten file declares, of which ffprobe says nothing: the data chunk of the WAV
    header it holds verbatim (Rice-coded, after its own header: as ffmpeg's ``shorten.c`` reads
    them). None where it declares none: an AIFF header, a WAV's data chunk of an undeclared length
    (0, 0xFFFFFFFF) or larger than its RIFF size allows, a header that cannot be read."""
    try:
        with open(path, "rb") as f:
            head = f.read(24_576)  # (a verbatim header is under 16 KiB, each byte Rice-coded in 9 bits or more)
    except OSError:
        return None
    if len(head) < 8 or head[:4] != b"ajkg":
        return None
    version, bits, pos = head[4], "".join(format(b, "08b") for b in head[5:]), 0

    def rice(k: int) -> int:
        nonlocal pos
        one = bits.find("1", pos)
        if one < 0 or one + 1 + k > len(bits):
            raise ValueError("past the bytes read")
        value = ((one - pos) << k) | int(bits[one + 1 : one + 1 + k] or "0", 2)
        pos = one + 1 + k
        return value

    def number(k: int) -> int:  # (version 1 on: its Rice parameter first)
        return rice(rice(2) if version else k)

    try:
        number(4)  # the sample type
        channels = number(0)
        if version:
            number(8)  # block size
            number(2)  # LPC order
            number(0)  # blocks of the running mean
            skip = number(1)  # bytes skipped (read before `pos` is: it moves it)
            pos += 8 * skip
        if rice(2) != 9:  # (FN_VERBATIM)
            return None
        wav = bytes(rice(8) & 0xFF for _ in range(rice(5)))
    except ValueError:
        return None
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        return None
    at, rate, frame = 12, 0, 0
    while at + 8 <= len(wav):
        kind, size = wav[at : at + 4], int.from_bytes(wav[at + 4 : at + 8], "little")
        if kind == b"fmt " and size >= 16 and at + 24 <= len(wav):
            rate = int.from_bytes(wav[at + 12 : at + 16], "little")
            # (bytes a sample of every channel, from the bits per sample and Shorten's own channels, as
            # ffmpeg's decoder reads them: not the block align, which some tools wrote wrong)
            frame = channels * ((int.from_bytes(wav[at + 22 : at + 24], "little") + 7) // 8)
        elif kind == b"data":
            riff_end = int.from_bytes(wav[4:8], "little") + 8
            if not rate or not frame or size in (0, 0xFFFFFFFF) or at + 8 + size > riff_end:
                return None
            return size // frame / rate
        at += 8 + size + (size & 1)
    return None


def _data_chunk(path: Path, fmt: str) -> tuple[int, int] | None:
    """(bytes its header declares, bytes there are) of the audio data chunk of a WAV ('data') or
    AIFF ('SSND') file; None where the file is of another kind, declares 0 bytes or has no such
    chunk among its first 256."""
    kinds = {"WAV": (b"RIFF", b"data", "<", 0), "AIFF": (b"FORM", b"SSND", ">", 8)}
    if fmt not in kinds:
        return None
    magic, wanted, order, skip = kinds[fmt]
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if f.read(12)[:4] != magic:
                return None
            pos = 12
            for _ in range(256):  # (chunks are skipped, not read: a recorder's large iXML or JUNK costs nothing)
                if pos + 8 > size:
                    break
                f.seek(pos)
                head = f.read(8)
                length = int.from_bytes(head[4:], "little" if order == "<" else "big")
                if head[:4] == wanted:
                    if length <= skip:
                        return None
                    return length - skip, max(size - pos - 8 - skip, 0)
                pos += 8 + length + (length & 1)
    except OSError:
        return None
    return None


def _check_data_chunk(path: Path, meta: AudioInfo, notes: list[str] | None) -> None:
    """A WAV or AIFF file whose audio data chunk declares more bytes than the file holds (cut short: a
    copy or download that stopped, a disk that filled) was decoded as far as it goes by libsndfile,
    which takes the length from what is there, and stored as the whole track without a word; it now
    comes under `_cut_short`'s rule, against the length its header declares."""
    chunk = _data_chunk(path, meta.format)
    if chunk is None or not meta.duration or chunk[1] <= 0:
        return  # (no samples there: libsndfile's "the file holds no audio samples")
    declared, there = chunk
    if there > 0xFFFFFFFF and meta.format == "WAV" and declared < there:
        # More than a RIFF header can declare: its size is 0xFFFFFFFF or wrapped past 4 GiB, and
        # libsndfile reads that much only (60 s of a 94-minute 192 kHz file, for a wrapped one).
        full = meta.duration * there / declared
        raise AudioReadError(path, f"a WAV of more audio data than its header can declare (over 4 GiB; RF64 and "
                                   f"Wave64 files can): libsndfile would read {meta.duration:.1f} s of its "
                                   f"{full:.1f} s; nothing stored")  # fmt: skip
    if there > declared and declared != 0xFFFFFFFF:
        _check_after_data(path, meta, notes, declared, there)
    if there >= declared or declared == 0xFFFFFFFF:
        return  # (whole; or of a length left undeclared by a streaming writer, which libsndfile reads to its end)
    full = meta.duration * declared / there
    lost = full - meta.duration
    _cut_short(path, notes, lost=lost, holds=meta.duration, duration=full)


def _check_after_data(path: Path, meta: AudioInfo, notes: list[str] | None, declared: int, there: int) -> None:
    """A WAV or AIFF whose data chunk declares fewer bytes than follow its header, the rest beginning no chunk
    (a recorder or copy that stopped before it wrote the final size, a size left from an earlier
    pass): libsndfile reads what it declares, and a 60 s recording declaring its first 10 s was
    analysed as a 10 s track without a word (an AIFF's COMM chunk declaring as much). How much of the rest is audio is not known: where it is
    a second or more (and 1% of the declared), not zeros and no tag (ID3v2, ID3v1) or chunk (an ID of
    four letters), the file is analysed as declared with a note saying so; an error for a caller that
    takes no notes."""
    extra = there - declared - (declared & 1)  # (a chunk of an odd size is padded to an even one)
    per_second = declared / meta.duration
    if extra < max(per_second, 0.01 * declared):
        return
    try:
        with open(path, "rb") as f:
            f.seek(os.fstat(f.fileno()).st_size - there + declared)
            after = f.read(65537)
    except OSError:
        return
    # (where it is of an odd size, a chunk may follow its pad byte or, as writers that leave the pad
    # out put it and mutagen then appends its id3 chunk, the last byte of its data)
    for start in {declared & 1, 0}:
        head = after[start : start + 65536]
        if all(32 <= b < 127 for b in head[:4]) or head[:3] in (b"ID3", b"TAG") or not any(head):
            return
    said = (f"its data chunk declares {meta.duration:.1f} s, and {extra / per_second:.1f} s more of bytes follow it "
            "that begin no chunk (a recorder or copy that stopped before it wrote the final size?)")  # fmt: skip
    if notes is None:
        raise AudioReadError(path, f"{said}; nothing stored, as what follows may be audio")
    notes.append(f"{said}: analysed as the {meta.duration:.1f} s declared; what follows may be audio")


EXACT_LENGTHS = {("soundfile", "MP3"), ("ffmpeg", "MP3"), ("ffmpeg", "wavpack"), ("ffmpeg", "ape"), ("ffmpeg", "tta"),
                 ("ffmpeg", "tak"), ("ffmpeg", "shorten")}  # fmt: skip
"""(decoder, format) of the files whose declared length is exact (an MP3's Xing/Info/VBRI header, the
headers of WavPack, Monkey's Audio, TTA and TAK, the WAV header a Shorten file holds: `_shorten_seconds`), so that audio missing from its end is known
(`_check_shortfall`). Not lengths estimated from a bit rate (an MP3 without such a header, raw AAC).
("ffmpeg", "MP3"): an MP3 libsndfile described and ffmpeg decodes, of a known length only where its
VBRI header declares it (`_vbri_seconds`; joined files and VBR files without a header: unknown)."""
SHORTFALL_SLACK = 0.05
"""Seconds a decoder may give less than the declared length without a word (rounding, an MP3's
padding): a twentieth of a second is no part of a 4 s window worth a note."""


def _check_shortfall(path: Path, meta: AudioInfo, decoded: int, notes: list[str] | None, noted: int) -> None:
    """A file that decoded to less than the exact length its header declares (`EXACT_LENGTHS`), by
    more than `SHORTFALL_SLACK`, and of which no decoder said so: cut short (a copy or download that
    stopped). An MP3 cut to 40% gave 3.95 s of 10 through libsndfile, a WavPack 4.0 s of 10 through
    ffmpeg, each without a word, and was stored as the whole track; they come under
    `_note_or_refuse`'s rule now; an MP3 whose end is intact (`_mp3_end_intact`: an editor's cut
    whose header overstates) is analysed as what it holds, with a note. `noted`: the number of
    `notes` before decoding (one said already)."""
    if not meta.duration or len(notes or ()) > noted:
        return
    if meta.decoder == "ffmpeg" and meta.demuxer == "matroska":
        _check_timeline(path, meta, decoded, notes)
        return
    if (meta.decoder, meta.format) not in EXACT_LENGTHS:
        return
    lost = meta.duration - decoded / meta.decode_rate
    # (a VBRI header's frame count holds its own frame or not, as encoders go: one frame more allowed)
    slack = SHORTFALL_SLACK + (1152 / meta.sample_rate if meta.decoder == "ffmpeg" and meta.format == "MP3" else 0.0)
    if lost <= slack or (meta.format == "MP3" and not _mp3_length_declared(path)):
        return
    after = _mp3_end_intact(path) if meta.format == "MP3" else None
    if after:  # (an editor's cut: analysed as what it holds, and said)
        if notes is not None:
            notes.append(f"its header declares {meta.duration:.1f} s, the file holds {meta.duration - lost:.1f} s and "
                         f"ends on a whole frame followed by {after}: cut by an editor that kept the original's "
                         f"length in the header, analysed as the {meta.duration - lost:.1f} s it holds")  # fmt: skip
        return
    _cut_short(path, notes, lost=lost, holds=meta.duration - lost, duration=meta.duration)


def _check_timeline(path: Path, meta: AudioInfo, decoded: int, notes: list[str] | None) -> None:
    """A Matroska or WebM stream that decodes to less than the span of its timeline (its DURATION tag,
    as ffmpeg's muxer and mkvmerge write it, or the segment's duration, from where the stream begins:
    `_ffprobe_info`), by more than `SHORTFALL_SLACK`: gaps in its timestamps, frames a recording
    dropped or a damaged copy lost, which ffmpeg passes over without a word (an 8 s file missing 2 s
    in its middle was analysed as a 6 s track, what followed the gap 2 s early), under
    `_note_or_refuse`'s rule. Encoders' files decode to within 20 ms of it (Opus, Vorbis, AAC, MP3,
    AC-3, E-AC-3, FLAC, ALAC, WavPack, PCM)."""
    lost = meta.duration - decoded / meta.decode_rate
    if lost > SHORTFALL_SLACK:
        _timeline_gaps(path, notes, lost=lost, duration=meta.duration)
