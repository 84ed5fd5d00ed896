"""The decoders: libsndfile in blocks, FLAC (libsndfile, then ffmpeg for the rest of a file cut
short), the ``ffmpeg`` subprocess (its stderr read for damaged frames and files cut short), and the
limit on how much audio a decoder may give (`MAX_SECONDS`). Each yields blocks
[shape=(m, channels)] at the file's `AudioInfo.decode_rate`."""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np

from tagger.audio.fileinfo import FFMPEG_MAX_RATE, AudioInfo
from tagger.audio.flac import _flac_end_whole
from tagger.audio.joined import SEEKING_DEMUXERS
from tagger.audio.formats import AUDIO_DEMUXERS, SOUNDFILE_DEMUXERS
from tagger.audio.lengths import SHORTFALL_SLACK
from tagger.audio.losses import LostNote, _cut_short, _note_or_refuse, _seconds_of
from tagger.audio.plumbing import (FFMPEG_INPUT_OPTIONS, _DecoderStderr, _said, _unaddressed, decoder_done,
                                   opened_name, start_decoder)  # fmt: skip
from tagger.audio.probe import ffmpeg_available
from tagger.errors import AudioReadError


MAX_SECONDS = 24 * 3600.0
"""A decoder that gives more audio than this, or than twice the file's declared length plus a
minute where that is more, is stopped and the file is an error (`stream`): a FIFO or a device
swapped in after the file was checked, or a demuxer that loops, would otherwise be decoded without
end, each block counting as progress for the scan's file timeout. Not tighter: ffprobe estimates
some lengths from the first frames' bit rate (an MP3 or raw AAC file without a length header), as
libsndfile does (it declares 2 minutes for a 10-minute VBR MP3 without one). A file that grows
while it is decoded is stopped at once: its size is checked at each block."""


class _Head(io.RawIOBase):
    """The first `end` bytes of the file `path`, as a file (for libsndfile: `_soundfile_blocks`)."""

    def __init__(self, path: Path, end: int) -> None:
        super().__init__()
        self._file, self._end, self._pos = open(path, "rb"), end, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._end}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def read(self, n: int = -1) -> bytes:
        n = self._end - self._pos if n is None or n < 0 else min(n, self._end - self._pos)
        if n <= 0:
            return b""
        self._file.seek(self._pos)
        data = self._file.read(n)
        self._pos += len(data)
        return data

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._file.close()
        super().close()


def _soundfile_blocks(path: Path, block_frames: int, end: int | None = None) -> Iterator[np.ndarray]:
    """The file's blocks from libsndfile; of its first `end` bytes only where given (an MP3 cut
    inside a frame before the tags at its end: libsndfile decoded the tag as the cut frame's rest
    and failed, ``Unspecified internal error``)."""
    import soundfile as sf

    trap = _DecoderStderr()
    head = _Head(path, end) if end is not None else None
    try:
        with trap:
            f = sf.SoundFile(head if head is not None else os.fsencode(opened_name(path)))  # (not '-': stdin; bytes)
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
        if head is not None:
            head.close()


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
    for block in _ffmpeg_blocks(path, _as_ffmpeg(meta), block_frames, notes):
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
    if _flac_end_whole(path, declared):  # (its end is there: frames lost in its middle, skipped without a word)
        _note_or_refuse(path, notes, lost=lost, duration=meta.duration,
                        note=f"frames in its middle could not be decoded (damaged): analysed without them "
                             f"({lost:.3f} s of {meta.duration or 0.0:.1f} s left out)",
                        refusal=f"corrupt audio: frames in its middle could not be decoded (damaged; the file holds "
                                f"{total / meta.sample_rate:.1f} s of the {meta.duration:.1f} s its header declares, "
                                f"its end whole); nothing stored, as a result would leave {lost:.1f} s out",
                        whole=True)  # fmt: skip
        return
    _cut_short(path, notes, lost=lost, holds=total / meta.sample_rate, duration=meta.duration)


def _parts_blocks(path: Path, meta: AudioInfo, block_frames: int, notes: list[str] | None) -> Iterator[np.ndarray]:
    """The blocks of a file of streams joined byte-wise (`AudioInfo.parts`), each part decoded by
    ffmpeg from its own bytes (`AudioInfo.feed`), at `meta`'s rate and channels, one after another.
    What a part's decode says (frames it could not decode, a part that decodes to less than its
    header declares by more than `SHORTFALL_SLACK`: cut short) comes under `_note_or_refuse`'s rule,
    against the part's length, and names the part (``part 1 of the 2 files joined in it: ...``); the
    losses of all the parts are held to the rule together against the file's length
    (`_check_lost_total`)."""
    count = len(meta.parts)
    for i, part in enumerate(meta.parts, 1):
        which = f"part {i} of the {count} files joined in it"
        one = replace(meta, parts=(), feed=((part.start, part.end),), duration=part.seconds,
                      demuxer=part.demuxer or meta.demuxer)  # (a part of its own kind: a FLAC, then a WAV)
        said: list[str] | None = [] if notes is not None else None
        got = 0
        try:
            for block in _ffmpeg_blocks(path, one, block_frames, said, seekable=one.demuxer in SEEKING_DEMUXERS):
                got += len(block)
                yield block
            lost = (part.seconds or 0.0) - got / meta.decode_rate
            if part.seconds is not None and lost > SHORTFALL_SLACK and not said:
                _cut_short(path, said, lost=lost, holds=got / meta.decode_rate, duration=part.seconds)
        except AudioReadError as exc:
            if exc.path != os.fsdecode(path):
                raise
            raise AudioReadError(path, f"{which}: {exc.reason}", unreadable=exc.unreadable) from None
        for note in said or ():
            if isinstance(note, LostNote):  # (each part's loss a part of the file's own: added up)
                note = LostNote(f"{which}: {note}", note.lost, meta.duration or note.duration)
            else:
                note = f"{which}: {note}"
            notes.append(note)  # type: ignore[union-attr]


def _soundfile_or_ffmpeg_blocks(path: Path, meta: AudioInfo, block_frames: int, notes: list[str] | None,
                                end: int | None = None) -> Iterator[np.ndarray]:  # fmt: skip
    """A file's blocks from libsndfile, or, where libsndfile gives not one frame of the length it
    declares, from ffmpeg: an Ogg Vorbis whose comment header declares 2**31 comments is opened by
    libsndfile, which declares its length and then reads nothing (without a word), and was an error
    saying that the file holds no audio samples (untrue: ffmpeg decodes it whole). `end`: see
    `_soundfile_blocks`."""
    given = False
    for block in _soundfile_blocks(path, block_frames, end):
        given = True
        yield block
    if given or not meta.duration or not ffmpeg_available() or meta.sample_rate > FFMPEG_MAX_RATE:
        return
    yield from _ffmpeg_blocks(path, _as_ffmpeg(meta), block_frames, notes)


def _as_ffmpeg(meta: AudioInfo) -> AudioInfo:
    """`meta` (of a file libsndfile described) for ffmpeg to decode, with the demuxer of its format."""
    return replace(meta, decoder="ffmpeg", demuxer=SOUNDFILE_DEMUXERS.get(meta.format, ""))


def _ffmpeg_blocks(path: Path, meta: AudioInfo, block_frames: int, notes: list[str] | None = None, *,
                   seekable: bool = False) -> Iterator[np.ndarray]:  # fmt: skip
    """The file's decoded blocks [shape=(m, channels)] from ffmpeg. Damaged frames ffmpeg skips are
    an `AudioReadError` at the end, unless `notes` is given and they are at most `MAX_LOST_SHARE` of
    the file's length: then one note saying what was left out is appended to it. `seekable`: a
    `meta.feed` of one range is given to ffmpeg as a part of the file it can seek in (its ``subfile``
    protocol), not through a pipe (a WavPack of more than 2 channels: ffmpeg's demuxer reads ahead
    to its other blocks for its channels, and refuses a pipe: ``Cannot determine additional
    parameters``)."""
    import tempfile
    import threading

    # The demuxer that described the file (-f), or where none did one of AUDIO_DEMUXERS: a file
    # replaced after it was described is not read as a playlist, a script or a picture.
    demuxer = ["-f", meta.demuxer] if meta.demuxer else ["-format_whitelist", ",".join(sorted(AUDIO_DEMUXERS))]
    name, url = opened_name(path), None
    if seekable and len(meta.feed) == 1:
        url = f"subfile,,start,{meta.feed[0][0]},end,{meta.feed[0][1]},,:file:{name}"
        meta = replace(meta, feed=())
    source = (["-protocol_whitelist", "pipe", "-f", meta.demuxer or "mp3", "-i", "pipe:0"] if meta.feed
              else ["-protocol_whitelist", "subfile,file", *demuxer, "-i", url] if url
              else [*FFMPEG_INPUT_OPTIONS, *demuxer, "-i", name])  # fmt: skip
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", *source, "-map", "0:a:0",
        "-f", "f32le", "-acodec", "pcm_f32le", "-ac", str(meta.channels), "-ar", str(meta.decode_rate), "-",
    ]  # fmt: skip
    # stderr goes to a file: a broken file can make ffmpeg print more than a pipe holds, and a
    # full stderr pipe nobody reads would hang it.
    feeder = None
    with tempfile.TemporaryFile() as errfile:
        proc = start_decoder(cmd, stdin=subprocess.PIPE if meta.feed else None, stdout=subprocess.PIPE, stderr=errfile)
        frame_bytes = 4 * meta.channels
        frames = 0
        try:
            if meta.feed:  # (in the try: a feeder that cannot start, "can't start new thread", ends its ffmpeg)
                thread = threading.Thread(target=_feed, args=(path, meta.feed, proc.stdin), daemon=True)
                thread.start()
                feeder = thread
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
                text = errfile.read().decode("utf-8", "replace").replace(url or name, name)  # (a subfile's: the file's name)
                said = [line for line in _said(text, path).strip().splitlines()
                        if not line.strip().startswith("Last message repeated")]  # (ffmpeg's log, not a reason)
                last = _unaddressed(said[-1]) if said else f"exit code {proc.returncode}"
                raise AudioReadError(path, f"ffmpeg could not decode the file: {_said(last, path)}")
            failed, first, cut = _decoding_errors(errfile)
            if url:
                first, cut = (told.replace(url, name) if told else told for told in (first, cut))
            if failed and not cut:  # (a file cut short: its last frame cut, said below as such)
                lost = (meta.duration or 0.0) - frames / meta.decode_rate
                left_out = "them" if not meta.duration else _seconds_of(lost, meta.duration)
                _note_or_refuse(path, notes, lost=lost, duration=meta.duration,
                                note=f"ffmpeg could not decode {failed} of its frames ({_said(first, path)}): analysed "
                                     f"without them ({max(lost, 0.0):.3f} s of {meta.duration or 0.0:.1f} s left out)",
                                refusal=f"corrupt audio: ffmpeg could not decode {failed} of its frames "
                                        f"({_said(first, path)}); nothing stored, as a result would leave {left_out} out",
                                whole=True)  # fmt: skip
            if cut and not meta.cut_said:
                # A file cut short (an M4A's mdat, a WebM's last cluster): as a FLAC cut short, what is
                # missing from the length the file declares comes under the 1% rule (was: an error,
                # even for the last 20 ms of a 20 s M4A, where a FLAC cut so is analysed with a note).
                lost = (meta.duration or 0.0) - frames / meta.decode_rate
                left_out = _seconds_of(lost, meta.duration) if meta.duration else "what it could not read"
                _note_or_refuse(path, notes, lost=lost, duration=meta.duration,
                                note=f"ffmpeg could not read all of the file ({_said(cut, path)}): analysed without "
                                     f"the rest ({max(lost, 0.0):.3f} s of {meta.duration or 0.0:.1f} s left out)",
                                refusal=f"ffmpeg could not read all of the file ({_said(cut, path)}); nothing stored, "
                                        f"as a result would leave {left_out} out", whole=True)  # fmt: skip
        finally:
            try:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            finally:
                decoder_done(proc)
            if feeder is not None:
                feeder.join()  # (ffmpeg gone: its writes fail at once)
            elif proc.stdin:
                proc.stdin.close()  # (no feeder started to close it)
            if proc.stdout:
                proc.stdout.close()


def _feed(path: Path, ranges: tuple[tuple[int, int], ...], pipe) -> None:
    """Write the byte `ranges` of the file `path` into `pipe` (an ffmpeg's stdin: `AudioInfo.feed`),
    then close it. A file that cannot be read, or an ffmpeg that is gone (stopped early, killed),
    ends the feed: ffmpeg's exit, or the stream's checks of the file, say what happened."""
    try:
        with open(path, "rb") as f:
            for start, end in ranges:
                f.seek(start)
                left = end - start
                while left > 0:
                    block = f.read(min(1 << 20, left))
                    if not block:
                        return
                    pipe.write(block)
                    left -= len(block)
    except (OSError, ValueError):
        return
    finally:
        try:
            pipe.close()
        except OSError:
            pass


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
    errfile.seek(0)
    failed, first, cut, before = 0, "", "", ""
    for raw in errfile:
        line = _unaddressed(raw.decode("utf-8", "replace"))
        if line.startswith("Error while decoding stream"):
            failed += 1
            first = first or (before if before and not before.startswith("Error while") else line)
        elif not cut and any(words in line for words in CUT_SHORT):
            cut = line
        before = line
    return failed, first, cut


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
