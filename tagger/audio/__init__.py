"""Decode any common audio format, downmix, resample to 16 kHz and cut NSynth-length windows.

Decoding goes through libsndfile (soundfile) for WAV, FLAC, OGG Vorbis, Opus, MP3 and AIFF, and
through the ``ffmpeg`` program for what libsndfile cannot read (M4A/AAC/ALAC, WMA, WavPack, APE, ...). Long files
are streamed in blocks, so memory stays bounded whatever the file's length: a two-hour file is
never loaded whole. Every failure surfaces as `AudioReadError` naming the file and the reason.

The package:

- `tagger.audio.probe`: what a file holds without decoding it (`info`; libsndfile, ffprobe, MP4
  atoms) and the decoder it goes to;
- `tagger.audio.lengths`: the lengths headers declare exactly (`EXACT_LENGTHS`, WAV/AIFF data
  chunks, a Shorten file's WAV header), against which a file cut short is found;
- `tagger.audio.ogg`: an Ogg file's pages (chained, cut short, pages missing, an Opus pre-skip);
- `tagger.audio.mp3`: an MP3's layout and its checks (the tags ffmpeg is not given, its last frame
  cut, bytes after its frames that are none), read with `tagger.audio.mp3frames` (its frame
  headers, its frames followed one by one), `tagger.audio.endtags` (the tags between and after
  its frames, zero padding; a FLAC's and a raw stream's too), `tagger.audio.mp3tail` (how its last
  frame ends, from its side info) and `tagger.audio.mp3length` (the length its header declares;
  what libsndfile would decode only in part: joined files, VBR without a length header);
- `tagger.audio.matroska`: a live-written Matroska/WebM file's clusters walked for its audio's
  timeline (gaps, a last cluster cut; whether its Segment Info declares a Duration), read with
  `tagger.audio.ebml` (an element's head, its children), `tagger.audio.mkvblocks` (the audio track,
  the samples its blocks' codec tells) and `tagger.audio.mkvtimeline` (the blocks' timeline: gaps,
  blocks longer than their codec tells);
- `tagger.audio.flac`: a FLAC's frame headers and CRCs (whether it ends on its whole last frame);
- `tagger.audio.joined`: files of FLAC, WAV, AIFF, WavPack or TTA streams joined byte-wise (each part's
  header, `JoinedPart`), decoded part by part;
- `tagger.audio.rawframes`: the checks of raw streams (ADTS AAC, AC-3, E-AC-3, TrueHD, MLP, LOAS,
  DTS, DTS-HD: their last frame cut, bytes between frames that begin none), read with
  `tagger.audio.rawheaders` (each kind's frame headers) and `tagger.audio.rawwalk` (a file's frames
  walked);
- `tagger.audio.fileinfo`: `AudioInfo`, what `info` returns, and the sample rates analysed;
- `tagger.audio.formats`: the formats analysed, declared once (`AUDIO_FORMATS`, the extensions and
  first bytes crawled, the demuxers ffmpeg may read a file with);
- `tagger.audio.decoders`: libsndfile blocks, FLAC, the ``ffmpeg`` subprocess (its stderr, its
  limits: `MAX_SECONDS`);
- `tagger.audio.losses`: the rule for audio a decoder could not give (`MAX_LOST_SHARE`, notes or
  refusal), NaN or infinite samples (`MAX_NON_FINITE`) and the channels that hold them;
- `tagger.audio.downmix`: channels to mono (antiphase inverted, empty channels left out);
- `tagger.audio.windows`: `stream` (decode, downmix, resample), `load`, `frame_windows`,
  `iter_windows`, `window_rms_dbfs`, `Windows`;
- `tagger.audio.plumbing`: what the probe and the decoders share (a decoder subprocess that dies
  with its parent, libsndfile's fd 2 capture, messages without the file's path).

Everything callers use is importable from here (``from tagger import audio; audio.stream``). The
constants below are for reading: a test that changes one patches the module that defines it, where
the code looks it up (``monkeypatch.setattr(decoders, "MAX_SECONDS", ...)``), not this package.
"""

from __future__ import annotations

from tagger.audio.decoders import MAX_SECONDS
from tagger.audio.fileinfo import FFMPEG_MAX_RATE, MAX_RATE, MIN_RATE, AudioInfo
from tagger.audio.formats import AUDIO_EXTENSIONS
from tagger.audio.losses import MAX_LOST_SHARE, MAX_NON_FINITE
from tagger.audio.probe import ffmpeg_available, info
from tagger.audio.windows import BLOCK_SECONDS, Windows, frame_windows, iter_windows, load, stream, window_rms_dbfs

__all__ = [
    "AUDIO_EXTENSIONS",
    "BLOCK_SECONDS",
    "FFMPEG_MAX_RATE",
    "MAX_LOST_SHARE",
    "MAX_NON_FINITE",
    "MAX_RATE",
    "MAX_SECONDS",
    "MIN_RATE",
    "AudioInfo",
    "Windows",
    "ffmpeg_available",
    "frame_windows",
    "info",
    "iter_windows",
    "load",
    "stream",
    "window_rms_dbfs",
]
