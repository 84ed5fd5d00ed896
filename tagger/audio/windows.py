"""A file as 16 kHz mono blocks (`stream`: probe, decode, downmix, resample, the checks at its
end), whole (`load`), and cut into 4 s windows (`frame_windows`, `iter_windows`) with their
silence (`window_rms_dbfs`)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.audio.decoders import (_ffmpeg_blocks, _flac_blocks, _most_frames, _parts_blocks, _size,
                                    _soundfile_or_ffmpeg_blocks)  # fmt: skip
from tagger.audio.downmix import Polarity, _downmix, _zero_non_finite
from tagger.audio.fileinfo import FFMPEG_MAX_RATE, AudioInfo
from tagger.audio.lengths import _check_data_chunk, _check_shortfall
from tagger.audio.losses import MAX_NON_FINITE, _check_channels, _check_lost_total
from tagger.audio.matroska import _check_matroska_live
from tagger.audio.mp3 import _check_mp3_cut, _check_mp3_junk, _check_mp3_stopped, _feed_before, _mp3_junk
from tagger.audio.mp3tail import _mp3_tail
from tagger.audio.ogg import _check_ogg_end
from tagger.audio.probe import info
from tagger.audio.rawframes import _check_raw_damage, _check_raw_end
from tagger.errors import AudioReadError


BLOCK_SECONDS = 30.0
"""Decoded block length when streaming (bounded memory): at most this many seconds of 2 channels at
`FFMPEG_MAX_RATE` a block (46 MB of float32), shorter for more channels (libsndfile reads WAVs of
up to 1024)."""


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
    level : np.ndarray [shape=(n,), dtype=float64] or None
        That RMS in dBFS (`window_rms_dbfs`).
    """

    start: np.ndarray
    audio: np.ndarray
    silent: np.ndarray
    level: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.start)


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
    ends = walk = None
    noted_raw = noted
    if meta.format == "OGG" or meta.demuxer == "ogg":
        _check_ogg_end(p, meta, notes)
    declared = meta
    tail = _mp3_tail(p) if meta.format == "MP3" or meta.demuxer == "mp3" else None
    junk = _mp3_junk(p) if (meta.format == "MP3" or meta.demuxer == "mp3") and tail is None else None
    if meta.said and notes is not None:  # (streams joined that are not decoded: the first alone, said)
        notes.append(meta.said)
        noted = len(notes)
    if meta.parts:  # (streams joined byte-wise: each decoded on its own)
        blocks = _parts_blocks(p, meta, block_frames, notes)
    elif meta.decoder != "soundfile":
        if junk is not None:  # (ffmpeg given its frames alone: it refused the file, 'could not decode')
            meta = replace(meta, feed=_feed_before(meta.feed, junk[0]))
        meta, walk = _check_raw_end(p, meta, notes)  # (a raw stream: its whole frames alone decoded)
        noted_raw = len(notes or ())
        declared = meta
        # (a live-written WebM's length, for the decoder: its clusters' timeline, their gaps noted)
        meta = _check_matroska_live(p, meta, notes)
        blocks = _ffmpeg_blocks(p, meta, block_frames, notes)
    elif meta.format == "FLAC":
        blocks = _flac_blocks(p, meta, block_frames, notes)
    else:
        _check_data_chunk(p, meta, notes)
        ends = tail if meta.format == "MP3" else None
        # An MP3 with tags or zero padding after its frames: libsndfile is given its frames' bytes alone
        # (it decoded a cut frame's tag as the frame's rest, and 2,000 zero bytes or a long Lyrics3 tag
        # after whole frames as frames, and failed: the whole file refused). Not for ID3v1 and APEv2
        # tags after whole frames, which it skips itself: read through Python, the bytes given cost
        # it half a million calls an hour of audio.
        skipped = ends is not None and ends.held == 0 and set(ends.trailing) <= {"an ID3v1 tag", "an APEv2 tag"}
        end = (ends.end if ends is not None and not skipped else junk[0] if junk is not None else None)
        blocks = _soundfile_or_ffmpeg_blocks(p, meta, block_frames, notes, end)
    resampler = None
    if rate != C.SAMPLE_RATE:
        resampler = soxr.ResampleStream(rate, C.SAMPLE_RATE, 1, dtype="float32", quality="HQ")
    decoded = bad = resampled = bad_resampled = 0
    bad_by_channel = np.zeros(meta.channels, dtype=np.int64)
    most, size = _most_frames(meta), _size(p)
    polarity = Polarity()
    for block in blocks:
        mono, n_bad = _downmix(block, chunk=rate, polarity=polarity)
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
        rest = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
        resampled, bad_resampled = resampled + len(rest), bad_resampled + _zero_non_finite(rest)
        if len(rest):
            yield rest.astype(np.float32, copy=False)
    if not decoded:
        raise AudioReadError(p, "the file holds no audio samples")
    _check_mp3_stopped(p, meta, decoded)
    _check_mp3_cut(p, meta, tail, decoded, notes)
    _check_mp3_junk(p, meta, junk, decoded, notes)
    _check_shortfall(p, declared, decoded, notes, noted)
    _check_raw_damage(p, walk, notes, noted_raw, decoded / rate)
    _check_lost_total(p, notes, noted)
    if bad / decoded > MAX_NON_FINITE:
        _check_channels(p, bad_by_channel / decoded)
    for share, what in ((bad / decoded, "NaN or infinite"),
                        (bad_resampled / max(resampled, 1), "too large to resample (beyond about 1e36)")):  # fmt: skip
        if share > MAX_NON_FINITE:
            raise AudioReadError(p, f"{share:.1%} of its samples are {what}: not analysed (up to "
                                    f"{MAX_NON_FINITE:.0%} of them are taken as silence)")  # fmt: skip


def load(path: str | os.PathLike, *, max_seconds: float | None = None, checked: bool = False) -> np.ndarray:
    """Decode a whole (short) file as mono float32 at 16 kHz, optionally stopping after max_seconds.

    Stopped there, the file's checks that `stream` makes at its end (more than `MAX_NON_FINITE` of
    NaN or infinite samples, which it gives as silence; a file cut short) are not made. With
    `checked` the file is decoded to its end all the same, what lies beyond `max_seconds` dropped
    as it comes (memory bounded), so that they are: an `AudioReadError` where it fails one."""
    parts, total = [], 0
    limit = None if max_seconds is None else int(max_seconds * C.SAMPLE_RATE)
    for block in stream(path):
        if limit is None or total < limit:
            parts.append(block)
        total += len(block)
        if limit is not None and total >= limit and not checked:
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
        level = window_rms_dbfs(audio, np.asarray(pending_len))
        out = Windows(start=np.asarray(pending_start, dtype=np.int64), audio=audio,
                      silent=level < silence_dbfs, level=level)  # fmt: skip
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
