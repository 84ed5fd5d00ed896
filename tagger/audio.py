"""Decode any common audio format, downmix, resample to 16 kHz and cut NSynth-length windows.

Decoding goes through libsndfile (soundfile) for WAV, FLAC, OGG Vorbis, Opus, MP3 and AIFF, and
through the ``ffmpeg`` program for what libsndfile cannot read (M4A/AAC/ALAC, WMA, WavPack, APE, ...). Long files
are streamed in blocks, so memory stays bounded whatever the file's length: a two-hour file is
never loaded whole. Every failure surfaces as `AudioReadError` naming the file and the reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.errors import AudioReadError, MissingToolError

AUDIO_EXTENSIONS = frozenset(
    {".mp3", ".mp2", ".flac", ".ogg", ".oga", ".opus", ".spx", ".m4a", ".m4b", ".mp4", ".aac", ".alac", ".wav", ".w64",
     ".aif", ".aiff", ".aifc", ".caf", ".au", ".snd", ".wma", ".wv", ".ape", ".mpc", ".tta", ".mka", ".webm", ".dsf",
     ".dff", ".ac3", ".dts"}
)  # fmt: skip
"""File extensions the crawler treats as audio: every format of a music library that libsndfile or
ffmpeg decodes (lossless WavPack, Monkey's Audio, TTA and DSD included; Matroska and WebM audio as
saved by downloaders)."""

MIN_RATE, MAX_RATE = 8_000, 384_000
"""Sample rates analysed (DXD's 352.8 and 384 kHz included). ffmpeg decodes DSD to a PCM rate of
the DSD rate / 8 (352.8 kHz for DSD64, up to 1.4 MHz for DSD256), which it is asked to bring down to
`FFMPEG_MAX_RATE` itself: a DSD file is analysed whatever its rate."""
FFMPEG_MAX_RATE = 192_000
"""The highest PCM rate ffmpeg hands over (`AudioInfo.decode_rate`); above it, it resamples."""
BLOCK_SECONDS = 30.0
"""Decoded block length when streaming (bounded memory): at most this many seconds of 2 channels at
`FFMPEG_MAX_RATE` a block (46 MB of float32), shorter for more channels (libsndfile reads WAVs of
up to 1024)."""
MAX_LOST_SHARE = 0.01
"""The largest share of a file's length that ffmpeg may fail to decode (damaged frames it skips)
for the rest to be analysed, with a note saying what was left out (`stream`'s ``notes``): one bad
frame of an AAC file is 23 ms, which no player stops at and no tag depends on. A file with more, or
of unknown length, is an error: its result would leave out too much."""
MAX_SECONDS = 24 * 3600.0
"""A decoder that gives more audio than this, or than twice the file's declared length plus a
minute where that is more, is stopped and the file is an error (`stream`): a FIFO or a device
swapped in after the file was checked, or a demuxer that loops, would otherwise be decoded without
end, each block counting as progress for the scan's file timeout. Not tighter: ffprobe estimates
some lengths from the first frames' bit rate (an MP3 or raw AAC file without a length header), as
libsndfile does (it declares 2 minutes for a 10-minute VBR MP3 without one). A file that grows
while it is decoded is stopped at once: its size is checked at each block."""
MAX_NON_FINITE = 0.01
"""The largest share of a file's samples that may be NaN or infinite (a float file's glitches):
they are analysed as silence. A file with more (a float file of garbage, one of NaN only, one of
samples too large to resample) is an error: its silence would be a wrong answer."""


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, as its decoder reports it."""

    path: str
    format: str
    """Container/codec name ('WAV', 'FLAC', 'MP3', 'aac', ...)."""
    sample_rate: int
    channels: int
    duration: float | None
    """Seconds, when the container says; None when unknown before decoding."""
    decoder: str
    """'soundfile' or 'ffmpeg'."""

    @property
    def decode_rate(self) -> int:
        """The rate of the decoded samples: the file's, but at most `FFMPEG_MAX_RATE` from ffmpeg."""
        return min(self.sample_rate, FFMPEG_MAX_RATE) if self.decoder == "ffmpeg" else self.sample_rate


@dataclass
class Windows:
    """A batch of consecutive 4 s analysis windows of one file.

    Attributes
    ----------
    start : np.ndarray [shape=(n,), dtype=int64]
        First sample of each window at 16 kHz.
    audio : np.ndarray [shape=(n, 64000), dtype=float32]
        Mono audio; the last window of a file is zero-padded.
    silent : np.ndarray [shape=(n,), dtype=bool]
        True where the window's RMS about its mean (over its real samples) is below the silence floor.
    """

    start: np.ndarray
    audio: np.ndarray
    silent: np.ndarray

    def __len__(self) -> int:
        return len(self.start)


def _decoder_preexec():
    """A ``preexec_fn`` making a decoder subprocess die with the process that started it (Linux
    ``PR_SET_PDEATHSIG``), so that a killed scan worker never leaves a running ffmpeg behind."""
    import sys

    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, before the fork
    except (OSError, AttributeError):
        return None

    def die_with_parent() -> None:
        prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL

    return die_with_parent


def _said(text: str, path: str | os.PathLike) -> str:
    """A decoder's message without the file's path, which ffmpeg and libsndfile put in theirs: the
    reason is stored with the track and must stay true when the file is moved (the error names the
    file already)."""
    for p in dict.fromkeys((str(path), os.path.abspath(path))):
        text = text.replace(f"{p}: ", "").replace(repr(p), "the file").replace(p, "the file")
    return text


def ffmpeg_available() -> bool:
    return shutil.which("ffmpeg") is not None and shutil.which("ffprobe") is not None


def _check_file(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise AudioReadError(path, "file not found") from None
    except PermissionError:
        raise AudioReadError(path, "permission denied") from None
    except OSError as exc:
        raise AudioReadError(path, f"cannot stat file: {exc.strerror or exc}") from None
    if not path.is_file():
        raise AudioReadError(path, "not a regular file")
    if st.st_size == 0:
        raise AudioReadError(path, "empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioReadError(path, "permission denied")


def _check_rate(path: Path, rate: int, decoder: str) -> None:
    top = MAX_RATE if decoder == "soundfile" else 8 * MAX_RATE  # (DSD512 through ffmpeg: 2.8 MHz)
    if not MIN_RATE <= rate <= top:
        raise AudioReadError(path, f"unsupported sample rate {rate} Hz (supported: {MIN_RATE}-{top} Hz)")


class _DecoderStderr:
    """Catches what libsndfile's decoders print on file descriptor 2 (libmpg123 reports each
    corrupt MP3 frame there) during the calls made inside ``with trap:``, into one temporary file
    per decoded file, instead of the terminal; `first_line` is kept for the file's error message.
    fd 2 is process-wide: calls from several threads are serialised."""

    _lock = threading.Lock()

    def __init__(self) -> None:
        self.file = None
        self.saved: int | None = None

    def __enter__(self) -> _DecoderStderr:
        self._lock.acquire()
        try:
            if self.file is None:
                import tempfile

                self.file = tempfile.TemporaryFile()
            sys.stderr.flush()
            self.saved = os.dup(2)
            os.dup2(self.file.fileno(), 2)
        except BaseException:
            self._lock.release()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            os.dup2(self.saved, 2)
            os.close(self.saved)
        finally:
            self._lock.release()

    def first_line(self) -> str:
        if self.file is None:
            return ""
        self.file.seek(0)
        lines = self.file.read(4096).decode("utf-8", "replace").strip().splitlines()
        return lines[0].strip() if lines else ""

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


UNKNOWN_FRAMES = 2**62
"""libsndfile reports a length it does not know as 2**63 - 1 frames (a FLAC written by a streaming
encoder, whose STREAMINFO says 0 samples), and then fails to read it (``Internal psf_fseek()
failed``): such a file goes to ffmpeg, which decodes it."""


def _soundfile_info(path: Path) -> AudioInfo | None:
    import soundfile as sf

    trap = _DecoderStderr()
    try:
        with trap, sf.SoundFile(str(path)) as f:
            frames = f.frames
            rate = f.samplerate
            if frames >= UNKNOWN_FRAMES:  # (a FLAC of unknown length: libsndfile fails reading it)
                return None
            duration = frames / rate if frames and frames > 0 and rate else None
            return AudioInfo(str(path), f.format, rate, f.channels, duration, "soundfile")
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        return None
    finally:
        trap.close()


INSTALL_FFMPEG = "install ffmpeg (Debian: apt-get install ffmpeg)"


def _ffprobe_info(path: Path) -> AudioInfo:
    if not ffmpeg_available():
        raise MissingToolError(
            path,
            "libsndfile cannot decode this file and ffmpeg is not installed; "
            f"{INSTALL_FFMPEG} to read M4A/AAC/ALAC, WMA, WavPack, APE and other files libsndfile cannot",
        )
    cmd = ["ffprobe", "-v", "error", "-print_format", "json", "-show_streams", "-show_format", "--", str(path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=60, check=False, preexec_fn=_decoder_preexec())
    except subprocess.TimeoutExpired:
        raise AudioReadError(path, "ffprobe timed out reading the file") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise AudioReadError(path, f"not a readable audio file ({_said(msg[-1], path) if msg else 'ffprobe failed'})")
    try:
        meta = json.loads(proc.stdout or b"{}")
    except json.JSONDecodeError:
        raise AudioReadError(path, "ffprobe returned unreadable metadata") from None
    streams = [s for s in meta.get("streams", []) if s.get("codec_type") == "audio"]
    if not streams:
        raise AudioReadError(path, "no audio stream in this file")
    s = streams[0]
    try:
        rate = int(s.get("sample_rate") or 0)
        channels = int(s.get("channels") or 0)
    except ValueError:
        raise AudioReadError(path, "invalid sample rate or channel count in the stream") from None
    if rate <= 0 or channels <= 0:
        raise AudioReadError(path, "audio stream has no sample rate or channels")
    duration = _seconds(s.get("duration")) or _seconds((s.get("tags") or {}).get("DURATION"))
    others = [t for t in meta.get("streams", []) if t is not s and not (t.get("disposition") or {}).get("attached_pic")]
    if duration is None and not others:  # (the file's length is its stream's; a cover picture has none)
        duration = _seconds(meta.get("format", {}).get("duration"))
    return AudioInfo(str(path), str(s.get("codec_name", "unknown")), rate, channels, duration, "ffmpeg")


def _seconds(value) -> float | None:
    """Seconds from ffprobe: a number (``"6.000000"``) or, in a Matroska stream's tags, a clock
    (``"00:00:06.000000000"``); None for none or nonsense (``"N/A"``)."""
    try:
        if isinstance(value, str) and value.count(":") == 2:
            h, m, sec = value.split(":")
            value = int(h) * 3600 + int(m) * 60 + float(sec)
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 and seconds == seconds and seconds != float("inf") else None


MP4_CODECS = {"mp4a.40.2": "aac", "alac": "alac"}
"""MP4 audio codecs described from the container (mutagen) instead of by ffprobe: AAC-LC and ALAC."""
MP4_MIN_RATE = 32000
"""Below this, AAC may carry implicit SBR (the decoder doubles the rate the container declares)."""


def _mp4_info(path: Path) -> AudioInfo | None:
    """An M4A/MP4 file's AAC-LC or ALAC track described from its atoms (mutagen, under a
    millisecond) instead of an ffprobe process (about 100 ms a file, as much as decoding a third of
    a 30 s track); None for anything else, which ffprobe then describes. The decoder is told the
    rate (``-ar``), so what it outputs always matches."""
    if path.suffix.lower() not in (".m4a", ".mp4", ".m4b"):
        return None
    try:
        from mutagen.mp4 import MP4

        st = MP4(str(path)).info
        codec = MP4_CODECS.get(str(getattr(st, "codec", "")))
        rate, channels, length = int(st.sample_rate or 0), int(st.channels or 0), float(st.length or 0.0)
    except Exception:  # noqa: BLE001  (anything mutagen cannot read: ffprobe decides)
        return None
    if codec is None or rate < MP4_MIN_RATE or not 0 < channels <= 8 or length <= 0:
        return None
    return AudioInfo(str(path), codec, rate, channels, length, "ffmpeg")


def _chained_ogg(path: Path) -> bool:
    """An Ogg file of several streams one after the other (a "chained" file: two recordings joined,
    an internet radio capture): a stream begins after another's pages. libsndfile decodes only the
    first; ffmpeg decodes them all. Reads the page headers only (27 bytes and a segment table a page)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            pos, seen_data = 0, False
            while pos + 27 <= size:
                f.seek(pos)
                head = f.read(27)
                if head[:4] != b"OggS":
                    return False  # not a page where one must begin: leave the file to libsndfile
                table = f.read(head[26])
                begins = bool(head[5] & 0x02)
                if begins and seen_data:
                    return True
                seen_data = seen_data or not begins
                pos += 27 + len(table) + sum(table)
    except OSError:
        return False
    return False


_MP3_KBPS = ((0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160),  # MPEG 2 and 2.5, layer III
             (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320))  # MPEG 1, layer III
_MP3_RATES = {0: (11025, 12000, 8000), 2: (22050, 24000, 16000), 3: (44100, 48000, 32000)}


def _mp3_frame(data: bytes, i: int) -> tuple[int, int, int] | None:
    """(bit rate in kbps, length in bytes, sample rate in Hz) of the MPEG layer III frame whose
    header begins at ``data[i]``; None where none does."""
    if i + 4 > len(data):
        return None
    h = int.from_bytes(data[i : i + 4], "big")
    version, layer, index, rate = (h >> 19) & 3, (h >> 17) & 3, (h >> 12) & 15, (h >> 10) & 3
    if h >> 21 != 0x7FF or version == 1 or layer != 1 or index in (0, 15) or rate == 3:
        return None
    kbps, hz = _MP3_KBPS[version == 3][index], _MP3_RATES[version][rate]
    return kbps, (144 if version == 3 else 72) * kbps * 1000 // hz + ((h >> 9) & 1), hz


def _mp3_frames_at(data: bytes) -> tuple[int, tuple[int, int, int]] | None:
    """The first MPEG layer III frame of `data` followed by another (two in a row, to trust a header
    found): (its offset, `_mp3_frame`); None where there is none."""
    for i in range(len(data) - 4):
        frame = _mp3_frame(data, i)
        if frame is not None and _mp3_frame(data, i + frame[1]) is not None:
            return i, frame
    return None


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


def _id3v2_end(data: bytes) -> int:
    """The length of the ID3v2 tag `data` begins with (0 for none)."""
    if data[:3] != b"ID3" or len(data) < 10:
        return 0
    footer = 10 if data[5] & 0x10 else 0
    return 10 + footer + ((data[6] & 0x7F) << 21 | (data[7] & 0x7F) << 14 | (data[8] & 0x7F) << 7 | data[9] & 0x7F)


def _mp3_decoded_in_part(path: Path, probes: int = 8) -> str | None:
    """Why libsndfile would decode an MP3 only in part, or None: a VBR MP3 without a header of its
    length (Xing, Info, VBRI) whose length libsndfile takes from its first frame's bit rate and stops
    reading at (it declares 119.6 s for a 600 s file, and decodes no more); MP3 files joined one after
    another (``cat a.mp3 b.mp3``), whose first header declares the first file only (libsndfile
    decoded 6 s of 16); frames of another sample rate than the first's (joined files again), at which
    libsndfile stops without a word. Frames are looked for at `probes` places through the file, and
    after the bytes a header declares (past an ID3v2 tag there)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            start = _id3v2_end(f.read(10))
            first, known = None, False
            for k in range(probes):
                f.seek(start + (size - start) * k // probes)
                data = f.read(16384)
                found = _mp3_frames_at(data)
                if found is None:
                    continue
                i, (kbps, length, hz) = found
                if first is None:
                    first, frame = (kbps, hz), data[i : i + length]
                    known = any(tag in frame for tag in (b"Xing", b"Info", b"VBRI"))
                    declared = _declared_bytes(frame)
                    if declared is not None and _frames_after(f, start + i + declared):
                        return "MP3 files joined one after another (its first header declares the length of the first only)"
                elif hz != first[1]:
                    return f"MP3 files joined one after another (frames of {hz} Hz after frames of {first[1]} Hz)"
                elif not known and kbps != first[0]:
                    return "a VBR MP3 without a length header"
    except OSError:
        return None
    return None


def _frames_after(f, pos: int) -> bool:
    """Whether MPEG layer III frames (two in a row) begin within 4 KiB of `pos` in the open file `f`,
    past an ID3v2 tag there."""
    f.seek(pos)
    head = f.read(10)
    f.seek(pos + _id3v2_end(head))
    return _mp3_frames_at(f.read(4096)) is not None


def info(path: str | os.PathLike) -> AudioInfo:
    """Describe an audio file without decoding it; raises `AudioReadError`."""
    p = Path(path)
    _check_file(p)
    meta = _soundfile_info(p)
    # A chained Ogg and a VBR MP3 without a length header are decoded whole by ffmpeg only: without
    # it (not on $PATH), libsndfile gave the first stream, or the first 24 s of a 60 s MP3, stored
    # as the whole track (a wrong answer); they are the machine's error now, retried by the next scan.
    if meta is not None and meta.format == "OGG" and _chained_ogg(p):
        if not ffmpeg_available():
            raise MissingToolError(p, "a chained Ogg file (streams one after another): libsndfile decodes only the "
                                      f"first, and ffmpeg, which decodes them all, is not installed; {INSTALL_FFMPEG}")  # fmt: skip
        # Decoded whole by ffmpeg, not its first stream alone; ffprobe gives the length of its last
        # stream, not of the whole: unknown.
        meta = replace(_ffprobe_info(p), duration=None)
    why = _mp3_decoded_in_part(p) if meta is not None and meta.format == "MP3" else None
    if why:
        if not ffmpeg_available():
            raise MissingToolError(p, f"{why}: libsndfile decodes only a part of it, and ffmpeg, which decodes it "
                                      f"whole, is not installed; {INSTALL_FFMPEG}")  # fmt: skip
        meta = replace(meta, decoder="ffmpeg", duration=None)  # decoded to its end, of a length not known
    meta = meta or (_mp4_info(p) if ffmpeg_available() else None) or _ffprobe_info(p)
    _check_rate(p, meta.sample_rate, meta.decoder)
    return meta


def _soundfile_blocks(path: Path, block_frames: int) -> Iterator[np.ndarray]:
    import soundfile as sf

    trap = _DecoderStderr()
    try:
        with trap:
            f = sf.SoundFile(str(path))
        with f:
            while True:
                with trap:
                    block = f.read(block_frames, dtype="float32", always_2d=True)
                if not len(block):
                    return
                yield block
    except (sf.LibsndfileError, RuntimeError) as exc:
        said = trap.first_line()
        raise AudioReadError(path, _said(f"decoding failed: {exc}" + (f" ({said})" if said else ""), path)) from None
    finally:
        trap.close()


def _flac_blocks(path: Path, meta: AudioInfo, block_frames: int, notes: list[str] | None) -> Iterator[np.ndarray]:
    """A FLAC file's blocks from libsndfile, and, when libsndfile fails before the end (a file cut
    short, whose header declares more samples than it holds: ``Internal psf_fseek() failed``,
    ``flac decoder lost sync``), the rest of what is there from ffmpeg (which decodes the file
    again; the frames already given are skipped, both decoders being exact), with `_ffmpeg_blocks`'s
    rule for what it cannot decode."""
    done = 0
    try:
        for block in _soundfile_blocks(path, block_frames):
            done += len(block)
            yield block
        return
    except AudioReadError:
        if not ffmpeg_available() or meta.sample_rate > FFMPEG_MAX_RATE:
            raise
    skip, total, noted = done, done, len(notes or ())
    for block in _ffmpeg_blocks(path, replace(meta, decoder="ffmpeg"), block_frames, notes):
        if skip >= len(block):
            skip -= len(block)
            continue
        total += len(block) - skip
        yield block[skip:]
        skip = 0
    declared = round((meta.duration or 0.0) * meta.sample_rate)
    if total >= declared or len(notes or ()) > noted:  # (whole, or ffmpeg's own rule said what was lost)
        return
    lost = (declared - total) / meta.sample_rate  # (cut where a frame begins: ffmpeg says nothing)
    _note_or_refuse(path, notes, lost=lost, duration=meta.duration,
                    note=f"the file ends before the length its header declares: analysed without the rest "
                         f"({lost:.3f} s of {meta.duration or 0.0:.1f} s left out)",
                    refusal=f"cut short: the file holds {total / meta.sample_rate:.1f} s of the "
                            f"{meta.duration:.1f} s its header declares; nothing stored, as a result "
                            f"would leave {lost:.1f} s out")  # fmt: skip


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
    comes under `_note_or_refuse`'s rule, against the length its header declares."""
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
    if there >= declared or declared == 0xFFFFFFFF:
        return  # (whole; or of a length left undeclared by a streaming writer, which libsndfile reads to its end)
    full = meta.duration * declared / there
    lost = full - meta.duration
    _note_or_refuse(path, notes, lost=lost, duration=full,
                    note=f"the file ends before the length its header declares: analysed without the rest "
                         f"({lost:.3f} s of {full:.1f} s left out)",
                    refusal=f"cut short: the file holds {meta.duration:.1f} s of the {full:.1f} s its header "
                            f"declares; nothing stored, as a result would leave {lost:.1f} s out")  # fmt: skip


def _note_or_refuse(path: Path, notes: list[str] | None, *, lost: float, duration: float | None, note: str,
                    refusal: str) -> None:  # fmt: skip
    """The rule for audio a decoder could not give (`MAX_LOST_SHARE`): `note` appended to `notes` when
    `lost` seconds are at most that share of the known `duration` and the caller takes notes; else an
    `AudioReadError` of `refusal` (a result would leave too much out, or how much is not known)."""
    if notes is not None and duration and lost <= MAX_LOST_SHARE * duration:
        notes.append(note)
    else:
        raise AudioReadError(path, refusal)


def _ffmpeg_blocks(path: Path, meta: AudioInfo, block_frames: int, notes: list[str] | None = None) -> Iterator[np.ndarray]:
    """The file's decoded blocks [shape=(m, channels)] from ffmpeg. Damaged frames ffmpeg skips are
    an `AudioReadError` at the end, unless `notes` is given and they are at most `MAX_LOST_SHARE` of
    the file's length: then one note saying what was left out is appended to it."""
    import tempfile

    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-i", os.path.abspath(path), "-map", "0:a:0",
        "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(meta.channels), "-ar", str(meta.decode_rate), "-",
    ]  # fmt: skip
    # stderr goes to a file: a broken file can make ffmpeg print more than a pipe holds, and a
    # full stderr pipe nobody reads would hang it.
    with tempfile.TemporaryFile() as errfile:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errfile, preexec_fn=_decoder_preexec())
        frame_bytes = 4 * meta.channels
        frames = 0
        try:
            assert proc.stdout is not None
            while True:
                buf = proc.stdout.read(block_frames * frame_bytes)
                if not buf:
                    break
                usable = len(buf) - len(buf) % frame_bytes
                frames += usable // frame_bytes
                yield np.frombuffer(buf[:usable], dtype="<f4").reshape(-1, meta.channels)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                raise AudioReadError(path, "ffmpeg did not exit after decoding the file") from None
            if proc.returncode != 0:
                errfile.seek(max(0, errfile.seek(0, os.SEEK_END) - 4096))
                err = errfile.read().decode("utf-8", "replace").strip()
                last = err.splitlines()[-1] if err else f"exit code {proc.returncode}"
                raise AudioReadError(path, f"ffmpeg could not decode the file: {_said(last, path)}")
            failed, first, cut = _decoding_errors(errfile)
            if failed:
                lost = (meta.duration or 0.0) - frames / meta.decode_rate
                left_out = "them" if not meta.duration else f"{max(lost, 0.0):.1f} s of {meta.duration:.1f} s"
                _note_or_refuse(path, notes, lost=lost, duration=meta.duration,
                                note=f"ffmpeg could not decode {failed} of its frames ({_said(first, path)}): analysed "
                                     f"without them ({max(lost, 0.0):.3f} s of {meta.duration or 0.0:.1f} s left out)",
                                refusal=f"corrupt audio: ffmpeg could not decode {failed} of its frames "
                                        f"({_said(first, path)}); nothing stored, as a result would leave {left_out} out")  # fmt: skip
            if cut:
                raise AudioReadError(path, f"ffmpeg could not read all of the file ({_said(cut, path)}); nothing "
                                           "stored, as a result would leave out what it could not read")  # fmt: skip
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout:
                proc.stdout.close()


CUT_SHORT = ("ended prematurely", "partial file")
"""What ffmpeg's demuxers say at level ``error`` of a file that ends before its audio does (Matroska
and WebM, MP4), exiting 0. Other messages of that level without a decoding error are not taken for
a loss: a chained Ogg Opus file prints ``failed to create or replace stream`` and is decoded whole."""


def _decoding_errors(errfile) -> tuple[int, str, str]:
    """What an ffmpeg run that exited 0 printed at level ``error`` (its stderr, `errfile`): the
    number of frames it could not decode (and skipped) with the first decoder message about them,
    and the first message saying that the file is cut short (`CUT_SHORT`); "" for none. Messages
    lose their ``[aac @ 0x...]`` prefix's address (it changes from run to run): ``aac: ...``.
    Read a line at a time (a file of corrupt frames prints one line or two per frame)."""
    import re

    errfile.seek(0)
    failed, first, cut, before = 0, "", "", ""
    for raw in errfile:
        line = re.sub(r"^\[([^\]]+?) @ 0x[0-9a-f]+\] ", r"\1: ", raw.decode("utf-8", "replace").strip())
        if line.startswith("Error while decoding stream"):
            failed += 1
            first = first or (before if before and not before.startswith("Error while") else line)
        elif not cut and any(words in line for words in CUT_SHORT):
            cut = line
        before = line
    return failed, first, cut


def _zero_non_finite(mono: np.ndarray) -> int:
    """Set the NaN and infinite samples of `mono` to 0, in place; returns how many there were."""
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(mono.sum())  # a NaN or inf sample makes the sum non-finite: one cheap pass
    if finite:
        return 0
    bad = int(np.count_nonzero(~np.isfinite(mono)))
    np.nan_to_num(mono, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    return bad


ANTIPHASE = -0.5
"""A channel whose correlation with the loudest channel over a `_downmix` chunk (1 s) is below this
is averaged with its polarity inverted: channels in antiphase (L = -R: a phase-inverted recording, a
channel wired the wrong way round) cancel in the plain mean, which left a loud file silent (stored
with no instruments) or without what is in the centre (the bass, the voice). Music mixed the
ordinary way correlates above 0."""
EMPTY_CHANNEL_DB = -60.0
"""A channel this far or further below the loudest over a `_downmix` chunk is left out of the mean:
empty channels (the silent surrounds of a 5.1 file, the empty side of a mono transfer stored as
stereo) lowered the level of what the others hold (by 15.6 dB for a 5.1 file of the centre alone),
and quiet passages fell under the silence floor (`constants.SILENCE_DBFS`) that they were above in
the same recording as a mono file. A chunk with neither such channel nor one in antiphase is the
plain mean, bit for bit."""


def _downmix(block: np.ndarray, *, chunk: int | None = None) -> tuple[np.ndarray, int]:
    """Mean of the channels [shape=(m, c)] -> [shape=(m,)] float32, NaN/inf samples set to 0, and
    how many of those there were. In each `chunk` of frames (None: the whole block), a channel in
    antiphase with the loudest one (`ANTIPHASE`) is inverted before the mean, and an empty one
    (`EMPTY_CHANNEL_DB`) left out of it.

    The same as ``block.mean(axis=1, dtype=np.float32)`` (bit for bit up to 7 channels, within float32
    rounding beyond) but summed column by column: numpy's reduction over a short last axis costs
    about as much as decoding an MP3.
    """
    n = block.shape[1]
    if n == 1:
        mono = np.array(block[:, 0], dtype=np.float32)
    else:
        with np.errstate(invalid="ignore", over="ignore"):  # (inf + -inf: NaN, counted below)
            mono = np.add(block[:, 0], block[:, 1], dtype=np.float32)
            for c in range(2, n):
                mono += block[:, c]
            mono /= np.float32(n)
            _mix_unusual_chunks(block, mono, chunk or len(block))
    return mono, _zero_non_finite(mono)


def _mix_unusual_chunks(block: np.ndarray, mono: np.ndarray, chunk: int) -> None:
    """Replace, in place, each `chunk` of `mono` (the mean of `block`'s channels) where a channel is in
    antiphase with the loudest one (`ANTIPHASE`) or empty (`EMPTY_CHANNEL_DB`) by the mean of the
    channels not empty, those in antiphase inverted. A chunk holding NaN or infinite samples keeps the
    plain mean (`stream` counts them)."""
    empty = 10 ** (EMPTY_CHANNEL_DB / 10)
    for start in range(0, len(block), max(chunk, 1)):
        x = block[start : start + chunk]
        power, dots = _channel_stats(x)
        if not np.isfinite(power).all():  # (samples beyond about 1e17 square past float32: in float64)
            power, dots = _channel_stats(x.astype(np.float64))
            if not np.isfinite(power).all():
                continue
        loudest = int(np.argmax(power))
        if not power[loudest] > 0:
            continue
        if dots.ndim == 2:
            dots = dots[:, loudest]
        else:
            dots = x.T.astype(power.dtype, copy=False) @ x[:, loudest].astype(power.dtype)
        flip = dots < ANTIPHASE * np.sqrt(power * power[loudest])
        kept = power > empty * power[loudest]
        if flip.any() or not kept.all():
            weights = np.where(flip, -1.0, 1.0) * kept / kept.sum()
            mono[start : start + len(x)] = x @ weights.astype(np.float32)


def _channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each channel's power [shape=(c,)] in `x` [shape=(m, c)], and its products with every other
    [shape=(c, c)] for up to 8 channels (one BLAS call: a third of the time of the sums), or an empty
    array beyond (then computed for the loudest channel alone)."""
    if x.shape[1] <= 8:
        gram = x.T @ x
        return np.diagonal(gram), gram
    return np.einsum("ic,ic->c", x, x), np.zeros(0)


def stream(
    path: str | os.PathLike,
    *,
    block_seconds: float = BLOCK_SECONDS,
    meta: AudioInfo | None = None,
    timings: dict[str, float] | None = None,
    notes: list[str] | None = None,
) -> Iterator[np.ndarray]:
    """Decode a file as mono float32 blocks at 16 kHz, in bounded memory.

    Channels are averaged (downmix), NaN/inf samples become 0 (more than `MAX_NON_FINITE` of them:
    `AudioReadError` at the end of the stream), and the audio is resampled with a
    streaming soxr resampler from any rate in 8-192 kHz. `meta` is the file's `info` when the caller
    already has it (saves a second probe, an ffprobe run for M4A/WMA); `timings`, when given,
    accumulates the seconds spent in ``"decode"`` (decoding and downmix) and ``"resample"``;
    `notes`, when given, receives what the caller should say about a file analysed in part (damaged
    frames ffmpeg skipped, up to `MAX_LOST_SHARE` of its length; without `notes` they are an error).

    Yields
    ------
    np.ndarray [shape=(m,), dtype=float32]
        Consecutive blocks; their concatenation is the whole file at 16 kHz.
    """
    import time

    import soxr

    clock = time.perf_counter
    t = clock()
    p = Path(path)
    meta = meta or info(p)
    rate = meta.decode_rate
    block_frames = max(1024, min(int(block_seconds * min(rate, FFMPEG_MAX_RATE)),  # bounded memory at any rate
                                 int(block_seconds * FFMPEG_MAX_RATE * 2) // meta.channels))  # and channel count
    noted = len(notes or ())
    if meta.decoder != "soundfile":
        blocks = _ffmpeg_blocks(p, meta, block_frames, notes)
    elif meta.format == "FLAC":
        blocks = _flac_blocks(p, meta, block_frames, notes)
    else:
        _check_data_chunk(p, meta, notes)
        blocks = _soundfile_blocks(p, block_frames)
    resampler = None
    if rate != C.SAMPLE_RATE:
        resampler = soxr.ResampleStream(rate, C.SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    decoded = bad = resampled = bad_resampled = 0
    bad_by_channel = np.zeros(meta.channels, dtype=np.int64)
    most, size = _most_frames(meta), _size(p)
    for block in blocks:
        mono, n_bad = _downmix(block, chunk=rate)
        decoded, bad = decoded + len(mono), bad + n_bad
        if n_bad and block.shape[1] > 1:
            bad_by_channel[: block.shape[1]] += np.count_nonzero(~np.isfinite(block), axis=0)[: meta.channels]
        now = _size(p)
        if decoded > most or now != size:
            blocks.close()  # (ends a decoder subprocess now)
            if now != size:
                raise AudioReadError(p, f"the file changed while it was being decoded (its size went from {size} to "
                                        f"{f'{now} bytes' if now >= 0 else 'nothing: it is gone'})")  # fmt: skip
            declares = f"{meta.duration:.1f} s" if meta.duration else "no length"
            raise AudioReadError(p, f"the decoder gave more than {most / rate:.0f} s of audio for a file that declares "
                                    f"{declares} (a FIFO or a device swapped in, or a demuxer that loops): "
                                    "not analysed")  # fmt: skip
        t1 = clock()
        out = mono if resampler is None else resampler.resample_chunk(mono, last=False)
        if resampler is not None:  # (samples beyond about 1e36 overflow the resampler: NaN out)
            resampled, bad_resampled = resampled + len(out), bad_resampled + _zero_non_finite(out)
        if timings is not None:
            t2 = clock()
            timings["decode"] = timings.get("decode", 0.0) + (t1 - t)
            timings["resample"] = timings.get("resample", 0.0) + (t2 - t1)
        if len(out):
            yield out.astype(np.float32, copy=False)
        t = clock()
    if resampler is not None:
        tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        resampled, bad_resampled = resampled + len(tail), bad_resampled + _zero_non_finite(tail)
        if len(tail):
            yield tail.astype(np.float32, copy=False)
    if not decoded:
        raise AudioReadError(p, "the file holds no audio samples")
    _check_shortfall(p, meta, decoded, notes, noted)
    if bad / decoded > MAX_NON_FINITE:
        _check_channels(p, bad_by_channel / decoded)
    for share, what in ((bad / decoded, "NaN or infinite"),
                        (bad_resampled / max(resampled, 1), "too large to resample (beyond about 1e36)")):  # fmt: skip
        if share > MAX_NON_FINITE:
            raise AudioReadError(p, f"{share:.1%} of its samples are {what}: not analysed (up to "
                                    f"{MAX_NON_FINITE:.0%} of them are taken as silence)")  # fmt: skip


EXACT_LENGTHS = {("soundfile", "MP3"), ("ffmpeg", "wavpack"), ("ffmpeg", "ape"), ("ffmpeg", "tta")}
"""(decoder, format) of the files whose declared length is exact (an MP3's Xing/Info/VBRI header, the
headers of WavPack, Monkey's Audio and TTA), so that audio missing from its end is known
(`_check_shortfall`). Not lengths estimated from a bit rate (an MP3 without such a header, raw AAC)."""
SHORTFALL_SLACK = 0.05
"""Seconds a decoder may give less than the declared length without a word (rounding, an MP3's
padding): a twentieth of a second is no part of a 4 s window worth a note."""


def _check_shortfall(path: Path, meta: AudioInfo, decoded: int, notes: list[str] | None, noted: int) -> None:
    """A file that decoded to less than the exact length its header declares (`EXACT_LENGTHS`), by
    more than `SHORTFALL_SLACK`, and of which no decoder said so: cut short (a copy or download that
    stopped). An MP3 cut to 40% gave 3.95 s of 10 through libsndfile, a WavPack 4.0 s of 10 through
    ffmpeg, each without a word, and was stored as the whole track; they come under
    `_note_or_refuse`'s rule now. `noted`: the number of `notes` before decoding (one said already)."""
    if not meta.duration or (meta.decoder, meta.format) not in EXACT_LENGTHS or len(notes or ()) > noted:
        return
    lost = meta.duration - decoded / meta.decode_rate
    if lost <= SHORTFALL_SLACK or (meta.format == "MP3" and not _mp3_length_declared(path)):
        return
    _note_or_refuse(path, notes, lost=lost, duration=meta.duration,
                    note=f"the file ends before the length its header declares: analysed without the rest "
                         f"({lost:.3f} s of {meta.duration:.1f} s left out)",
                    refusal=f"cut short: the file holds {meta.duration - lost:.1f} s of the {meta.duration:.1f} s "
                            f"its header declares; nothing stored, as a result would leave {lost:.1f} s out")  # fmt: skip


def _mp3_length_declared(path: Path) -> bool:
    """Whether an MP3's first frame holds a Xing, Info or VBRI header (its length exact; else
    libsndfile estimates it from the file's size, which tags at its end make too long)."""
    try:
        with open(path, "rb") as f:
            f.seek(_id3v2_end(f.read(10)))
            data = f.read(16384)
    except OSError:
        return False
    found = _mp3_frames_at(data)
    return found is not None and any(t in data[found[0] : found[0] + found[1][1]] for t in (b"Xing", b"Info", b"VBRI"))


def _size(path: Path) -> int:
    """The file's size in bytes; -1 when it is gone."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _most_frames(meta: AudioInfo) -> int:
    """The most frames (at `AudioInfo.decode_rate`) a decoder may give for the file `meta` (see
    `MAX_SECONDS`)."""
    return int(max(MAX_SECONDS, 2 * (meta.duration or 0.0) + 60.0) * meta.decode_rate)


def _check_channels(path: Path, shares: np.ndarray) -> None:
    """Raise the error naming the channels of a multichannel file with more than `MAX_NON_FINITE` of
    NaN or infinite samples, `shares` [shape=(channels,)] being each channel's share, when some of
    its channels are fine. The file is not analysed from those: what is panned to a broken channel
    would be missing from the result, a wrong answer. (All channels broken: `stream`'s error.)"""
    broken = [i for i, share in enumerate(shares) if share > MAX_NON_FINITE]
    if not broken or len(broken) == len(shares):
        return

    def listed(items: list[str]) -> str:
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + f" and {items[-1]}"

    names, percent = listed([str(i + 1) for i in broken]), listed([f"{shares[i]:.1%}" for i in broken])
    which = f"channel {names} of {len(shares)} is" if len(broken) == 1 else f"channels {names} of {len(shares)} are"
    raise AudioReadError(path, f"{which} NaN or infinite ({percent} of {'its' if len(broken) == 1 else 'their'} "
                               "samples): not analysed, as the other channels alone could miss instruments (up to "
                               f"{MAX_NON_FINITE:.0%} of a file's samples are taken as silence)")  # fmt: skip


def load(path: str | os.PathLike, *, max_seconds: float | None = None) -> np.ndarray:
    """Decode a whole (short) file as mono float32 at 16 kHz, optionally stopping after max_seconds."""
    parts, total = [], 0
    limit = None if max_seconds is None else int(max_seconds * C.SAMPLE_RATE)
    for block in stream(path):
        parts.append(block)
        total += len(block)
        if limit is not None and total >= limit:
            break
    audio = np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)
    return audio if limit is None else audio[:limit]


def window_rms_dbfs(audio: np.ndarray, lengths: np.ndarray | None = None) -> np.ndarray:
    """RMS level (dBFS) of each row of `audio` [shape=(n, m)] about its mean (a DC offset is no
    sound), over the first `lengths[i]` samples (the rest being zero padding).

    A window holding a constant (the "silence" of a recording with a DC offset, 36 of 32768 in a
    16-bit WAV) was not silent by its plain RMS (-59 dBFS), and the shipped models scored it as reed
    or brass above their thresholds: a wrong answer for a file of silence."""
    n = audio.shape[-1] if lengths is None else np.maximum(lengths, 1)
    mean = audio.sum(axis=-1, dtype=np.float64) / n
    power = np.maximum(np.square(audio, dtype=np.float64).sum(axis=-1) / n - np.square(mean), 0.0)
    return 10.0 * np.log10(np.maximum(power, 1e-20))


def frame_windows(
    blocks: Iterable[np.ndarray],
    *,
    hop_samples: int = C.WINDOW_SAMPLES,
    silence_dbfs: float = C.SILENCE_DBFS,
    batch_size: int = 32,
) -> Iterator[Windows]:
    """Cut a stream of 16 kHz blocks into 4 s windows every `hop_samples`, in batches.

    A window starts every `hop_samples`; the last window, which may run past the end, is zero-padded
    and emitted only if it holds samples no earlier window covered (so a 9 s file with a 4 s hop
    yields windows at 0, 4 and 8 s). A stream shorter than 4 s yields one padded window.
    """
    if hop_samples <= 0:
        raise ValueError("hop_samples must be positive")
    w = C.WINDOW_SAMPLES
    buf = np.zeros(0, dtype=np.float32)
    offset = 0  # absolute sample index of buf[0]
    next_start = 0
    covered = 0  # samples covered by emitted windows
    total = 0
    pending_start: list[int] = []
    pending_audio: list[np.ndarray] = []
    pending_len: list[int] = []

    def flush() -> Windows:
        audio = np.stack(pending_audio)
        lengths = np.asarray(pending_len)
        out = Windows(
            start=np.asarray(pending_start, dtype=np.int64),
            audio=audio,
            silent=window_rms_dbfs(audio, lengths) < silence_dbfs,
        )
        pending_start.clear()
        pending_audio.clear()
        pending_len.clear()
        return out

    for block in blocks:
        buf = np.concatenate([buf, np.asarray(block, dtype=np.float32)])
        total += len(block)
        while next_start + w <= offset + len(buf):
            i = next_start - offset
            pending_start.append(next_start)
            pending_audio.append(buf[i : i + w].copy())
            pending_len.append(w)
            covered = next_start + w
            next_start += hop_samples
            if len(pending_start) >= batch_size:
                yield flush()
        drop = min(next_start - offset, len(buf))
        if drop > 0:
            buf = buf[drop:]
            offset += drop
    if total > covered and next_start < total:
        i = next_start - offset
        tail = buf[i:]
        pending_start.append(next_start)
        pending_audio.append(np.pad(tail, (0, w - len(tail))))
        pending_len.append(len(tail))
    if pending_start:
        yield flush()


def iter_windows(
    path: str | os.PathLike,
    *,
    hop_seconds: float = C.WINDOW_SECONDS,
    silence_dbfs: float = C.SILENCE_DBFS,
    batch_size: int = 32,
) -> Iterator[Windows]:
    """Stream a file's 4 s windows (see `frame_windows`); raises `AudioReadError`."""
    return frame_windows(
        stream(path),
        hop_samples=int(round(hop_seconds * C.SAMPLE_RATE)),
        silence_dbfs=silence_dbfs,
        batch_size=batch_size,
    )
