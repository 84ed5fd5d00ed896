"""What a file holds, as its decoder reports it (`AudioInfo`), and the sample rates analysed
(`MIN_RATE`, `MAX_RATE`, `FFMPEG_MAX_RATE`): what `tagger.audio.probe.info` returns and the
decoders and the checks of each container read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


MIN_RATE, MAX_RATE = 8_000, 384_000
"""Sample rates analysed (DXD's 352.8 and 384 kHz included). ffmpeg decodes DSD to a PCM rate of
the DSD rate / 8 (352.8 kHz for DSD64, up to 1.4 MHz for DSD256), which it is asked to bring down to
`FFMPEG_MAX_RATE` itself: a DSD file is analysed whatever its rate."""
FFMPEG_MAX_RATE = 192_000
"""The highest PCM rate ffmpeg hands over (`AudioInfo.decode_rate`); above it, it resamples."""


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
    feed: tuple[tuple[int, int], ...] = ()
    """The byte ranges ffmpeg is given (through a pipe) instead of the file, where tags lie between
    an MP3's frames (files joined one after another: `_mp3_feed`); () for the file as it is."""
    demuxer: str = ""
    """The ffmpeg demuxer that read the file when it was described (ffprobe's first name of it, 'mov'
    for an MP4 read by mutagen): ffmpeg decodes it with that one (``-f``), so that a file replaced
    between the two is not read as another format; "" where libsndfile described it."""
    cut_said: bool = False
    """Whether a check before decoding has said already that the file is cut short, how much is
    missing not being known (a live-written Matroska file that ends inside a cluster:
    `_check_matroska_live`): ffmpeg's ``File ended prematurely`` is then no loss of its own."""
    parts: tuple[Any, ...] = ()
    """The streams of a file of two or more joined byte-wise (`tagger.audio.joined.JoinedPart`: ``cat
    a.flac b.flac``), each decoded on its own by ffmpeg, one after another; () for a file of one."""
    said: str = ""
    """What its decode will leave out that its description found, said in the notes of a decode
    (`tagger.audio.stream`'s): the streams after the first of a file of streams joined byte-wise that
    are not decoded part by part (`tagger.audio.joined.unsplit_note`); "" for none."""

    @property
    def decode_rate(self) -> int:
        """The rate of the decoded samples: the file's, but at most `FFMPEG_MAX_RATE` from ffmpeg."""
        return min(self.sample_rate, FFMPEG_MAX_RATE) if self.decoder == "ffmpeg" else self.sample_rate
