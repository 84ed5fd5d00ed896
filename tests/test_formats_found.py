"""Formats of `formats.AUDIO_FORMATS` that the crawler passed over: Shorten (``.shn``, the live-concert
tape trading archives), TAK (``.tak``), WSD (``.wsd``, 1-bit DSD), Sony's OpenMG (``.oma``, ``.aa3``,
``.omg``), RealAudio (``.ra``, and ``.rm`` by its first bytes) and VGM game music (``.vgm``,
``.vgz``). ffmpeg decoded each, but the crawler
knew neither their extensions nor their first bytes, so a scan of a folder of them said nothing at
all: ``0 scanned, ... 0 failed``. Each file here is made in the test (ffmpeg encodes RealAudio 1.0;
the others are written byte by byte, as ffmpeg's demuxers and decoders read them), found, analysed
for what it holds, and stored as a format without tags (TAK, since, in its APEv2 tag: `test_tags_tak`)."""

from __future__ import annotations

import gzip
import re
import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

from conftest import ffmpeg_demuxers, module_file, track_instruments
from library_fakes import FakeAnalyser
from tak_files import tak_file
from tagger import audio
from tagger import constants as C
from tagger.audio import formats
from tagger.crawl import SNIFF_BYTES, crawl, sniff_audio
from tagger.db import models as M
from tagger.errors import AudioReadError
from tagger.library.scan import scan, tag_writer


def _rice(bits: list[str], value: int, k: int) -> None:
    """Shorten's unsigned Rice code (ffmpeg's ``get_ur_golomb_shorten``): ``value >> k`` zeros and a
    one, then the ``k`` low bits."""
    bits.append("0" * (value >> k) + "1" + (format(value & ((1 << k) - 1), f"0{k}b") if k else ""))


def _ulong(bits: list[str], value: int) -> None:
    """An unsigned number of a Shorten header (version 1 on): its Rice parameter first (2 bits), then itself."""
    k = max(value.bit_length() - 1, 0)
    _rice(bits, k, 2)
    _rice(bits, value, k)


def shorten_file(path, samples: np.ndarray, rate: int, *, blocksize: int = 256, declared: int | None = None,
                 block_align: int | None = None):
    """A Shorten (version 2) file of 16-bit ``samples`` [shape=(n, channels)], written here as ffmpeg's
    ``libavcodec/shorten.c`` reads it (no encoder of ours writes Shorten): the header (type s16 LE,
    channels, block size, no LPC, no running mean), the WAV header in a verbatim block, then per block
    and channel a DIFF0 (the samples) or DIFF1 (their differences) block, whichever is smaller, of
    Rice-coded residuals, a BLOCKSIZE command before a short last block, and QUIT. ``declared``: the
    size its WAV header's data chunk declares (default: the samples'); ``block_align``: its fmt chunk's
    (default: the right one)."""
    n, channels = samples.shape
    bits = ["".join(format(b, "08b") for b in b"ajkg\x02")]
    for v in (5, channels, blocksize, 0, 0, 0):  # type (s16 LE), channels, block size, maxnlpc, nmean, skip bytes
        _ulong(bits, v)
    data = samples.astype("<i2").tobytes()
    wav = (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt "
           + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * 2 * channels, block_align or 2 * channels, 16)
           + b"data" + struct.pack("<I", len(data) if declared is None else declared))  # fmt: skip
    _rice(bits, 9, 2)  # FN_VERBATIM
    _rice(bits, len(wav), 5)
    for b in wav:
        _rice(bits, b, 8)
    x = samples.astype(np.int64)
    last = np.zeros(channels, np.int64)
    for start in range(0, n, blocksize):
        block = x[start : start + blocksize]
        if len(block) < blocksize:
            blocksize = len(block)
            _rice(bits, 5, 2)  # FN_BLOCKSIZE
            _ulong(bits, blocksize)
        for c in range(channels):
            diff1 = np.diff(block[:, c], prepend=last[c])
            command, residuals = min((0, block[:, c]), (1, diff1), key=lambda r: int(np.abs(r[1]).sum()))
            mean = float(np.abs(residuals).mean())
            k = int(np.log2(mean)) if mean >= 1 else 0
            _rice(bits, command, 2)  # FN_DIFF0 or FN_DIFF1
            _rice(bits, k, 3)
            for r in residuals.tolist():  # (signed: even for r >= 0, odd below)
                _rice(bits, 2 * r if r >= 0 else -2 * r - 1, k + 1)
            last[c] = block[-1, c]
    _rice(bits, 4, 2)  # FN_QUIT
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    path.write_bytes(int(stream, 2).to_bytes(len(stream) // 8, "big") + bytes(8))
    return path


def wsd_file(path, *, seconds: float, freq: float, channels: int = 2, dsd_rate: int = 2_822_400):
    """A WSD file (1-bit DSD64, version 1.1), written here as ffmpeg's ``wsddec.c`` reads it: a
    2048-byte header, then the channels' bytes interleaved, most significant bit first, of a
    1-bit stream whose density of ones follows a sine (as `conftest.dsf_file`)."""
    n = int(seconds * dsd_rate) // 8 * 8
    t = np.arange(n) / dsd_rate
    bits = (0.5 * np.sin(2 * np.pi * freq * t) > np.random.default_rng(0).uniform(-1, 1, n)).astype(np.uint8)
    data = np.repeat(np.packbits(bits.reshape(-1, 8), axis=1).reshape(-1, 1), channels, axis=1).tobytes()
    header = bytearray(2048)
    header[0:4], header[8] = b"1bit", 0x11
    struct.pack_into(">QII", header, 12, 2048 + len(data), 0x80, 0x800)  # file size, text and data offsets
    struct.pack_into(">I", header, 36, dsd_rate)
    header[44] = channels
    struct.pack_into(">I", header, 48, (1 << channels) - 1)  # channel assignment
    path.write_bytes(bytes(header) + data)
    return path


def oma_file(path, *, pcm: np.ndarray | None = None, mp3: bytes = b"", encrypted: bool = False):
    """An OpenMG file (Sony's ``.oma``), written here as ffmpeg's ``omadec.c`` reads it: the ``ea3``
    tag (an ID3v2 tag by another name, empty), the 96-byte ``EA3`` header naming the codec, then the
    audio: 16-bit big-endian stereo PCM at 44.1 kHz [shape=(n, 2)] (LPCM, codec 4) or MP3 frames
    (codec 3), the two of Sony's codecs besides ATRAC, which no encoder of ours writes. ``encrypted``:
    the header says the audio is encrypted (Sony's DRM), without the key's data in the tag."""
    size = 1024 - 10
    tag = b"ea3\x03\0\0" + bytes((size >> s) & 0x7F for s in (21, 14, 7, 0)) + bytes(size)  # (a syncsafe size)
    header = bytearray(96)
    header[0:8] = b"EA3\x02\0\x60" + (b"\0\x01" if encrypted else b"\xff\xff")  # version, header size, encryption
    header[32] = 4 if pcm is not None else 3
    body = pcm.astype(">i2").tobytes() if pcm is not None else mp3
    path.write_bytes(tag + bytes(header) + body)
    return path


PSG_CLOCK = 3_579_545


def vgm_file(path, *, seconds: float, freq: float):
    """A VGM file (version 1.50) of the Master System's PSG (SN76489) playing a square wave of the
    period nearest ``freq`` on its first channel for ``seconds``, written here byte by byte."""
    period = round(PSG_CLOCK / (32 * freq))
    cmds = bytearray()
    for latch in (0x9F, 0xBF, 0xDF, 0xFF):  # every channel silent
        cmds += bytes([0x50, latch])
    cmds += bytes([0x50, 0x80 | (period & 0xF), 0x50, period >> 4, 0x50, 0x90])  # channel 0: period, full volume
    total = left = round(seconds * 44_100)
    while left:
        wait = min(left, 0xFFFF)
        cmds += b"\x61" + struct.pack("<H", wait)
        left -= wait
    cmds += b"\x66"  # end of data
    header = bytearray(0x40)
    header[0:4] = b"Vgm "
    struct.pack_into("<III", header, 0x08, 0x150, PSG_CLOCK, 0)
    struct.pack_into("<I", header, 0x18, total)  # total samples at 44.1 kHz
    struct.pack_into("<IHB", header, 0x24, 60, 0x0009, 16)  # rate; PSG feedback and shift register width
    struct.pack_into("<I", header, 0x34, 0x40 - 0x34)  # data offset (relative)
    data = header + cmds
    struct.pack_into("<I", data, 0x04, len(data) - 4)  # end of file offset (relative)
    path.write_bytes(bytes(data) if path.suffix != ".vgz" else gzip.compress(bytes(data)))
    return path


def spc_file(path, *, seconds: int, freq: float):
    """An SPC file (the SNES's sound chip, v0.30 with an ID666 tag giving ``seconds``), written here as
    libgme reads it: the SPC700 looping on itself (``BRA -2``), and the DSP registers as saved with
    voice 0 keyed on, playing a looped BRR sample of a square wave of 32 samples at the pitch nearest
    ``freq``, no echo."""
    spc = bytearray(0x10200)
    spc[0:37] = b"SNES-SPC700 Sound File Data v0.30\x1a\x1a\x1a\x1e"  # (has an ID666 tag; minor version 30)
    struct.pack_into("<HBBBBB", spc, 0x25, 0x0200, 0, 0, 0, 0x02, 0xEF)  # PC, A, X, Y, PSW, SP
    spc[0x2E:0x32] = b"tone"
    spc[0xA9:0xB1] = b"%03d00000" % seconds  # seconds to play, fade (ms), as text
    ram = 0x100
    spc[ram + 0x200 : ram + 0x202] = b"\x2f\xfe"  # BRA -2
    struct.pack_into("<HH", spc, ram + 0x300, 0x400, 0x400)  # sample 0: its start and loop point
    brr = b"\xb0" + b"\x77" * 8 + b"\xb3" + b"\x99" * 8  # (shift 11: 16 samples of +7, 16 of -7; end, loop)
    spc[ram + 0x400 : ram + 0x400 + len(brr)] = brr
    pitch = round(freq * 32 * 4096 / 32000)  # (4096: the sample's 32 kHz)
    dsp = {0x00: 0x7F, 0x01: 0x7F, 0x02: pitch & 0xFF, 0x03: pitch >> 8, 0x07: 0x7F, 0x0C: 0x7F, 0x1C: 0x7F,
           0x4C: 0x01, 0x6C: 0x20, 0x5D: 0x03, 0x6D: 0x80}  # volumes, pitch, gain; KON, FLG, DIR, ESA  # fmt: skip
    for reg, value in dsp.items():
        spc[0x10100 + reg] = value
    path.write_bytes(bytes(spc))
    return path


def realaudio_file(path, src):
    """A RealAudio 1.0 (14.4) file in a RealMedia container, encoded by ffmpeg."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-ar", "8000", "-ac", "1",
                           "-c:a", "real_144", "-f", "rm", str(path)], capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"ffmpeg cannot encode RealAudio: {proc.stderr.decode()[-200:]}")
    return path


def realaudio_v3_file(path, rmf):
    """A RealAudio 1.0 file of the oldest kind (``.ra\\xfd``, version 3: a header and the codec's
    20-byte frames, no RealMedia chunks), of the frames of the RealMedia file ``rmf``
    (`realaudio_file`), written here as ffmpeg's ``rmdec.c`` reads it."""
    data = rmf.read_bytes()
    pos, frames = struct.unpack(">I", data[4:8])[0], bytearray()
    while data[pos : pos + 4] != b"DATA":  # (the .RMF header, then PROP, CONT, MDPR chunks)
        pos += struct.unpack(">I", data[pos + 4 : pos + 8])[0]
    count, pos = struct.unpack(">I", data[pos + 10 : pos + 14])[0], pos + 18
    for _ in range(count):  # (each packet: a 12-byte header, its length first, then the frames)
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        frames += data[pos + 12 : pos + length]
        pos += length
    meta = b"".join(bytes([len(t)]) + t for t in (b"tone", b"", b"", b""))  # title, author, copyright, comment
    body = bytes(8) + struct.pack(">H", 60_000) + bytes(4) + meta + b"\0\x04lpcJ"  # (bytes a minute)
    path.write_bytes(b".ra\xfd" + struct.pack(">HH", 3, len(body)) + body + bytes(frames))
    return path


def ffmpeg_file(path, src, codec: str, *, encoder: str = ""):
    """``src`` encoded by ffmpeg with ``codec`` (``eac3``, ``truehd``, ``mlp``: Blu-ray's and DVD-Audio's;
    ``latm``: AAC as digital TV broadcasts it) by ``encoder`` (default: ``codec``)."""
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-c:a", encoder or codec,
                           "-strict", "-2", "-f", codec, str(path)], capture_output=True)  # fmt: skip
    if proc.returncode != 0:
        pytest.skip(f"ffmpeg cannot encode {codec}: {proc.stderr.decode()[-200:]}")
    return path


def dtshd_file(path, src):
    """A DTS-HD file (``.dtshd``) holding a DTS core alone, encoded by ffmpeg (which writes no DTS-HD
    file): the ``DTSHDHDR`` chunk (its fields left empty), then the core's frames in ``STRMDATA``,
    as ffmpeg's ``dtshddec.c`` reads them."""
    core = ffmpeg_file(path.with_suffix(".dts"), src, "dts", encoder="dca")
    frames = core.read_bytes()
    core.unlink()
    path.write_bytes(b"DTSHDHDR" + struct.pack(">Q", 8) + bytes(8) + b"STRMDATA" + struct.pack(">Q", len(frames))
                     + frames)  # fmt: skip
    return path


def tone(seconds: float, rate: int, freqs=(440.0, 660.0)) -> np.ndarray:
    """16-bit samples [shape=(n, len(freqs))]: one sine a channel, at half scale."""
    t = np.arange(round(seconds * rate)) / rate
    return np.round(16383 * np.stack([np.sin(2 * np.pi * f * t) for f in freqs], axis=1)).astype(np.int16)


def dominant_hz(y: np.ndarray, sr: int = C.SAMPLE_RATE) -> float:
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    return float(np.argmax(spec) * sr / len(y))


def make(kind: str, path, tmp_path, *, seconds: float = 3.0, freq: float = 440.0):
    """A file of ``kind`` (``shn``, ``tak``, ``wsd``, ``oma``: LPCM, ``oma-mp3``, ``aac``: ADTS, ``ac3``,
    ``eac3``, ``truehd``, ``mlp``, ``dts``, ``dtshd``, ``loas``, ``rm``, ``ra3``: the oldest RealAudio,
    ``libgme``: VGM, ``spc``) at ``path`` holding a tone of ``freq`` for ``seconds``."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    if kind == "shn":
        return shorten_file(path, tone(seconds, 22_050, (freq, freq)), 22_050)
    if kind == "tak":
        return tak_file(path, tone(seconds, 22_050, (freq, freq)), 22_050)
    if kind == "wsd":
        return wsd_file(path, seconds=seconds, freq=freq)
    if kind == "oma":
        return oma_file(path, pcm=tone(seconds, 44_100, (freq, freq)))
    if kind == "oma-mp3":
        src = tmp_path / f"src-{path.stem}.mp3"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                        f"sine={freq}:duration={seconds}", "-c:a", "libmp3lame", "-id3v2_version", "0",
                        "-write_xing", "0", str(src)], check=True)  # fmt: skip
        return oma_file(path, mp3=src.read_bytes())
    if kind in ("aac", "ac3", "eac3", "truehd", "mlp", "dts", "dtshd", "loas"):
        src = tmp_path / f"src-{path.stem}.wav"
        sf.write(src, tone(seconds, 48_000, (freq, freq)), 48_000, subtype="PCM_16")
        if kind in ("aac", "loas"):
            return ffmpeg_file(path, src, "adts" if kind == "aac" else "latm", encoder="aac")
        if kind == "dts":
            return ffmpeg_file(path, src, "dts", encoder="dca")
        return dtshd_file(path, src) if kind == "dtshd" else ffmpeg_file(path, src, kind)
    if kind in ("rm", "ra3"):
        src = tmp_path / f"src-{path.stem}.wav"
        sf.write(src, tone(seconds, 8000, (freq,)), 8000, subtype="PCM_16")
        if kind == "rm":
            return realaudio_file(path, src)
        return realaudio_v3_file(path, realaudio_file(tmp_path / f"src-{path.stem}.rm", src))
    if "libgme" not in ffmpeg_demuxers():
        pytest.skip("needs ffmpeg with libgme")
    if kind == "spc":
        return spc_file(path, seconds=round(seconds), freq=freq)
    return vgm_file(path, seconds=seconds, freq=freq)


FOUND = [("shn", "tone.shn"), ("tak", "tone.tak"), ("wsd", "tone.wsd"), ("oma", "tone.oma"), ("oma-mp3", "tone.aa3"),
         ("oma", "tone.omg"), ("rm", "tone.ra"), ("rm", "tone.rm"), ("ra3", "old.ra"), ("libgme", "tone.vgm"),
         ("libgme", "tone.vgz"), ("spc", "tone.spc"), ("eac3", "tone.eac3"), ("eac3", "tone.ec3"),
         ("truehd", "tone.thd"), ("truehd", "tone.truehd"), ("mlp", "tone.mlp"), ("dtshd", "tone.dtshd"),
         ("loas", "tone.loas"), ("loas", "tone.latm")]  # fmt: skip
"""(the kind of file, `make`; a file name) of each format and name the crawler did not find."""


MAGIC_ONLY = {".rm": b"rm -rf build/\n", ".spc": bytes.fromhex("308206a406092a864886f70d010702a0")}
"""Extensions of these formats that other files have too, with the first bytes of such a file: a
shell script, a code-signing certificate (``.spc``, DER). The crawler takes these formats by their
first bytes alone."""


NAME_ONLY = {".vgz", ".eac3", ".ec3", ".thd", ".truehd", ".mlp", ".loas", ".latm"}
"""Extensions of formats without first bytes of their own: gzip (VGZ), AC-3's sync word (E-AC-3),
none at the start (TrueHD and MLP, whose major sync comes 4 bytes in), an 11-bit sync word (LOAS)."""


@pytest.mark.parametrize("ext", sorted(MAGIC_ONLY))
def test_other_files_with_an_extension_of_these_formats_are_not_crawled(tmp_path, ext):
    assert ext not in formats.AUDIO_EXTENSIONS
    (tmp_path / f"other{ext}").write_bytes(MAGIC_ONLY[ext] + bytes(100))
    assert list(crawl([tmp_path])) == []


def test_a_camcorder_mod_video_is_not_crawled_as_a_tracker_module(tmp_path):
    """JVC's and Panasonic's camcorders name their videos ``.MOD`` (MPEG-2 in a program stream): the
    crawler took one for a tracker module, and ffmpeg's ``mpeg`` demuxer (a music video's) read it,
    so a scan stored a home video's sound as a track. Left out by its first bytes
    (`formats.OTHER_FILES`); a module of that extension is crawled as before."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    clip = tmp_path / "MOV001.MOD"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25",
                    "-f", "lavfi", "-i", "sine=440", "-t", "2", "-c:v", "mpeg2video", "-c:a", "ac3", "-f", "vob",
                    str(clip)], check=True)  # fmt: skip
    tune = module_file(tmp_path / "tune.mod")
    assert [str(p) for p in crawl([tmp_path])] == [str(tune)]


@pytest.mark.parametrize("magic", sorted(formats.FORMAT_MAGICS))
def test_the_first_bytes_of_each_format_are_audio(magic):
    assert sniff_audio((magic + bytes(32))[:SNIFF_BYTES])


@pytest.mark.parametrize("kind,name", FOUND)
def test_the_crawler_finds_each_format_and_ffmpeg_reads_it_with_its_demuxer(tmp_path, kind, name):
    """Found by its extension (`MAGIC_ONLY` by its first bytes), and by its first bytes under a name
    that says nothing (`NAME_ONLY` by its extension alone)."""
    music = tmp_path / "music"
    music.mkdir()
    f = make(kind, music / name, tmp_path)
    demuxer = {"ra3": "rm", "oma-mp3": "oma", "spc": "libgme"}.get(kind, kind)
    unnamed = music / "track.bin"
    unnamed.write_bytes(f.read_bytes())
    expected = [str(f)] if f.suffix in NAME_ONLY else [str(f), str(unnamed)]
    assert sorted(str(p) for p in crawl([music])) == sorted(expected)
    meta = audio.info(f)
    assert (meta.decoder, meta.demuxer) == ("ffmpeg", demuxer)
    assert f.suffix in formats.AUDIO_FORMATS[demuxer] or f.suffix in MAGIC_ONLY


def _encoded(path, x, rate: int, codec: str):
    src = path.with_suffix(".src.wav")
    sf.write(src, x, rate, subtype="PCM_16")
    return ffmpeg_file(path, src, codec)


LOSSLESS = {
    "shn": (22_050, lambda path, x: shorten_file(path, x, 22_050)),
    "tak": (22_050, lambda path, x: tak_file(path, x, 22_050)),
    "oma": (44_100, lambda path, x: oma_file(path, pcm=x)),
    "thd": (48_000, lambda path, x: _encoded(path, x, 48_000, "truehd")),
    "mlp": (48_000, lambda path, x: _encoded(path, x, 48_000, "mlp")),
}
"""The lossless formats, by extension: (the rate, a writer of 16-bit stereo samples at it)."""


@pytest.mark.parametrize("seconds", [2.3, 0.1863])
@pytest.mark.parametrize("ext", sorted(LOSSLESS))
def test_a_lossless_file_decodes_to_the_samples_written(tmp_path, ext, seconds):
    """Shorten, TAK, LPCM OpenMG, TrueHD and MLP: ffmpeg gives back every sample written (TAK's CRCs
    checked; MLP's encoder pads its last frame to 40 samples with silence), and tagger analyses what
    it analyses of the same samples in a WAV, to float rounding. (2.3 s: a last Shorten block of 134
    samples, a BLOCKSIZE command; 0.1863 s: a last TAK frame of 12 samples, stored as they are.)"""
    rate, write = LOSSLESS[ext]
    x = tone(seconds, rate)
    f = write(tmp_path / f"tone.{ext}", x)
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    raw = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-err_detect", "crccheck+explode", "-i", str(f),
                          "-f", "s16le", "-"], capture_output=True, check=True).stdout  # fmt: skip
    decoded = np.frombuffer(raw, "<i2").reshape(-1, 2)
    assert np.array_equal(decoded[: len(x)], x) and 0 <= len(decoded) - len(x) < 40 and not decoded[len(x) :].any()
    wav = tmp_path / "tone.wav"
    sf.write(wav, x, rate, subtype="PCM_16")
    y, ref = audio.load(f), audio.load(wav)
    assert 0 <= len(y) - len(ref) <= 14 and np.max(np.abs(y[: len(ref)] - ref)) < 1e-4


@pytest.mark.parametrize("kind,name,freq", [("wsd", "tone.wsd", 440.0), ("oma-mp3", "tone.oma", 440.0),
                                            ("rm", "tone.ra", 440.0), ("ra3", "old.ra", 1000.0),
                                            ("libgme", "tone.vgm", 440.0), ("libgme", "tone.vgz", 1000.0),
                                            ("spc", "tone.spc", 440.0), ("dtshd", "tone.dtshd", 440.0),
                                            ("loas", "tone.latm", 440.0)])  # fmt: skip
def test_lossy_and_synthesised_formats_decode_to_the_tone_and_length(tmp_path, kind, name, freq):
    """1-bit DSD (WSD), MP3 in OpenMG, RealAudio 1.0 (8 kHz), the PSG's square wave (at the period
    nearest the tone: 440.4 and 998.8 Hz), the SNES's (439.9 Hz), a DTS core in a DTS-HD file and
    AAC in LOAS decode to the tone written, for its length."""
    f = make(kind, tmp_path / name, tmp_path, seconds=3.0, freq=freq)
    y = audio.load(f)
    assert abs(len(y) / C.SAMPLE_RATE - 3.0) < 0.06
    assert abs(dominant_hz(y[: 2 * C.SAMPLE_RATE]) - freq) < 3
    assert 0.05 < np.sqrt(np.mean(y[: 2 * C.SAMPLE_RATE] ** 2)) < 1


def test_a_tak_file_cut_short_is_an_error_not_a_shorter_track(tmp_path):
    """Its STREAMINFO declares its exact length, as WavPack's, Monkey's Audio's and TTA's headers do
    (`tagger.audio.lengths.EXACT_LENGTHS`): cut in half it decoded to 1.3 s without a word, analysed as the whole."""
    f = tak_file(tmp_path / "cut.tak", tone(2.3, 22_050), 22_050)
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2])
    with pytest.raises(AudioReadError, match=r"cut short: the file holds 1\.3 s of the 2\.3 s its header declares"):
        audio.load(f)


def test_a_refusal_of_a_file_cut_by_a_little_tells_the_two_lengths_apart(tmp_path):
    """A caller that takes no notes refuses any cut: a 10 s WAV less its last 40 ms was 'cut short:
    the file holds 10.0 s of the 10.0 s its header declares; ... would leave 0.0 s out', which
    reads as no loss at all. The lengths get the decimals that tell them apart."""
    f = tmp_path / "cut.wav"
    sf.write(f, tone(10.0, 16_000), 16_000, subtype="PCM_16")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 2_560])  # 40 ms of 16-bit stereo
    with pytest.raises(AudioReadError, match=r"cut short: the file holds 9\.96 s of the 10\.00 s its header declares; "
                                              r"nothing stored, as a result would leave 0\.04 s out"):
        audio.load(f)
    # (9.94 s of 9.96 s: '9.9 s of the 10.0 s' told apart at one decimal, but 'would leave 0.0 s out';
    # a single sample of 8 kHz lost: '9.999 s of the 10.000 s ... 0.000 s out')
    sf.write(f, tone(9.96, 8_000), 8_000, subtype="PCM_16")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 640])  # 20 ms of 16-bit stereo
    with pytest.raises(AudioReadError, match=r"holds 9\.94 s of the 9\.96 s its header declares; nothing stored, as "
                                              r"a result would leave 0\.02 s out"):
        audio.load(f)
    sf.write(f, tone(1.0, 8_000), 8_000, subtype="PCM_16")
    data = f.read_bytes()
    f.write_bytes(data[: len(data) - 4])  # one sample: 0.125 ms
    with pytest.raises(AudioReadError, match=r"holds 0\.9999 s of the 1\.0000 s its header declares; nothing stored, "
                                              r"as a result would leave 0\.0001 s out"):
        audio.load(f)


def test_a_shorten_file_cut_short_is_an_error_not_a_shorter_track(tmp_path):
    """The WAV header a Shorten file holds declares its length (ffprobe says none): cut anywhere, it
    was analysed as what it held, as the whole, where the cut let ffmpeg's decoder stop without a
    word (at 2 of these 4 places: 0.93 s and 1.40 s of 3.0 s stored as whole tracks). Now
    `tagger.audio.lengths.EXACT_LENGTHS` holds it to that length."""
    x = tone(3.0, 22_050)
    f = shorten_file(tmp_path / "whole.shn", x, 22_050)
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    assert audio.info(f).duration == pytest.approx(3.0)
    data = f.read_bytes()
    for share in (0.31, 0.47, 0.62, 0.83):
        cut = tmp_path / f"cut-{share}.shn"
        cut.write_bytes(data[: int(len(data) * share)])
        with pytest.raises(AudioReadError, match=r"(cut short: the file holds [\d.]+ s of the 3\.0 s its header "
                                                  r"declares|corrupt audio: .* of 3\.0 s out)"):  # fmt: skip
            audio.load(cut)


@pytest.mark.parametrize("declared", [0, 0xFFFFFFFF])
def test_a_shorten_file_of_an_undeclared_length_is_analysed(tmp_path, declared):
    """A WAV header of a streaming writer (its data size 0 or 0xFFFFFFFF) declares no length: the file
    is analysed for what it holds, not refused as cut short."""
    f = shorten_file(tmp_path / "stream.shn", tone(3.0, 22_050), 22_050, declared=declared)
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    assert audio.info(f).duration is None
    assert len(audio.load(f)) == 3 * C.SAMPLE_RATE


@pytest.mark.parametrize("block_align", [2, 8])
def test_a_whole_shorten_file_whose_wav_header_has_a_wrong_block_align_is_analysed(tmp_path, block_align):
    """Some tools wrote a WAV header's block align wrong (the bytes of one channel's sample, 2, for
    16-bit stereo), which ffmpeg's Shorten decoder does not read: its length is the data chunk's size
    over Shorten's channels and the header's bits per sample. Was read over the block align: a whole
    3 s file 'cut short: the file holds 3.0 s of the 6.0 s its header declares', or a 1.5 s one."""
    f = shorten_file(tmp_path / "whole.shn", tone(3.0, 22_050), 22_050, block_align=block_align)
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    assert audio.info(f).duration == pytest.approx(3.0)
    assert len(audio.load(f)) == 3 * C.SAMPLE_RATE


def test_an_encrypted_openmg_file_is_an_error_saying_so(tmp_path):
    """Sony's DRM: ffmpeg cannot decode it and says why, then only ``Operation not permitted``, which
    the error gave alone, as if the file's permissions were at fault."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    f = oma_file(tmp_path / "locked.oma", pcm=tone(1.0, 44_100), encrypted=True)
    assert [str(p) for p in crawl([tmp_path])] == [str(f)]
    with pytest.raises(AudioReadError) as err:
        audio.info(f)
    assert "encrypted (DRM), which ffmpeg cannot decode (oma: " in str(err.value) and "@ 0x" not in str(err.value)


def test_a_file_ffmpeg_cannot_decode_is_said_by_its_last_message_not_by_ffmpeg_s_log(tmp_path):
    """A TAK whose every frame ffmpeg's decoder refuses (``unsupported/invalid number of samples``:
    the TAK writer of these tests at 8,000 Hz): ffmpeg exits non-zero, and the last line it printed
    was its log's ``Last message repeated 2 times``, which the error gave as the reason."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    f = tak_file(tmp_path / "damaged.tak", tone(2.77, 8_000), 8_000)
    with pytest.raises(AudioReadError) as err:
        audio.load(f)
    said = str(err.value)
    assert said.startswith(f"{f}: ffmpeg could not decode the file: "), said
    assert "Last message repeated" not in said and "@ 0x" not in said and said.endswith("Invalid data found when "
                                                                                         "processing input"), said


NOTES = b"Notes on the recordings of the 12th, for the box set.\nSide A: takes 3 and 5.\n"
"""A text file of 80 bytes, saved under an audio extension by mistake."""


@pytest.mark.parametrize("ext,codec", [("thd", "TrueHD"), ("mlp", "MLP"), ("eac3", "E-AC-3"), ("shn", "Shorten"),
                                       ("ac3", "AC-3"), ("dts", "DTS")])  # fmt: skip
def test_a_text_file_under_a_raw_stream_extension_is_said_to_hold_no_audio_of_it(tmp_path, ext, codec):
    """ffmpeg takes the raw stream's demuxer by the name and meets no frame: its stream has no
    sample rate and no channels. Was ``audio stream has no sample rate or channels``, at every scan,
    as if a real stream lacked them."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    f = tmp_path / f"notes.{ext}"
    f.write_bytes(NOTES)
    assert [str(p) for p in crawl([tmp_path])] == [str(f)]
    with pytest.raises(AudioReadError) as err:
        audio.info(f)
    said = str(err.value)
    assert " audio found in it (ffmpeg's " in said and codec in said and "not a file of that format" in said, said
    assert "no sample rate or channels" not in said


@pytest.mark.parametrize("ext", ["oma", "aa3", "omg", "tak"])
def test_a_short_text_file_under_an_openmg_or_tak_extension_is_said_plainly(tmp_path, ext):
    """ffmpeg's oma reader fails on a file shorter than its header with -1, which it prints as
    ``Operation not permitted`` (the error said just that, as if the file's permissions were at
    fault); its tak reader names itself by its address in memory, which changed at every scan."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    f = tmp_path / f"notes.{ext}"
    f.write_bytes(NOTES)
    with pytest.raises(AudioReadError) as err:
        audio.info(f)
    said = str(err.value)
    assert "(Operation not permitted)" not in said and "@ 0x" not in said, said
    assert said.startswith(f"{f}: not a readable audio file (")
    if ext != "tak":
        assert "not the file's permissions" in said


def test_a_file_named_wsd_that_does_not_begin_with_its_signature_is_said_not_to_be_one(tmp_path):
    """ffmpeg's WSD reader, taken for a file by its name, reads any bytes as its header: a text file
    named ``.wsd`` was ``unsupported sample rate 239905901 Hz``, at every scan. A WSD behind an ID3v2
    tag (ffmpeg passes over it) is still read."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    f = tmp_path / "notes.wsd"
    f.write_bytes(b"This is a text file, notes about my recordings.\nline two\n")  # (7 channels at 239.9 MHz)
    with pytest.raises(AudioReadError, match=r"notes\.wsd: not a WSD file: it does not begin with WSD's signature "
                                             r"\(1bit\), though ffmpeg took it for one by its name: not analysed$"):
        audio.info(f)
    tagged = tmp_path / "tagged.wsd"
    wsd = wsd_file(tmp_path / "bass.wsd", seconds=1.0, freq=110.0).read_bytes()
    tagged.write_bytes(b"ID3\x03\0\0\0\0\0\x0a" + bytes(10) + wsd)
    assert audio.info(tagged).duration == pytest.approx(1.0, abs=0.01)


SCANNED = [("shn", "bass.shn", "Shorten"), ("wsd", "bass.wsd", "WSD"),
           ("oma", "bass.oma", "OpenMG"), ("oma-mp3", "bass.oma", "OpenMG"), ("rm", "bass.ra", "RealAudio"),
           ("rm", "bass.rm", "RealAudio"), ("ra3", "bass.ra", "RealAudio"), ("libgme", "bass.vgm", "game music"),
           ("libgme", "bass.vgz", "game music"), ("spc", "bass.spc", "game music"), ("eac3", "bass.eac3", "E-AC-3"),
           ("truehd", "bass.thd", "TrueHD"), ("mlp", "bass.mlp", "MLP"), ("dtshd", "bass.dtshd", "DTS-HD"),
           ("loas", "bass.latm", "LATM/LOAS")]  # fmt: skip
"""(the kind of file, `make`; a file name; the name of its format in the message saying it has no tags). TAK
is tagged (its APEv2 tag: `test_tags_tak`)."""


@pytest.mark.parametrize("kind,name,what", SCANNED)
def test_a_scan_analyses_each_format_and_stores_it_as_a_format_without_tags(tmp_path, db, kind, name, what):
    """Was: not found, and the summary said nothing of it. Now analysed and stored (a 110 Hz tone:
    bass) with its length; a tag write says it has no tags for the format, named (as for TTA:
    ``unsupported format (TrueAudio)``), does not fail the scan and leaves the file as it was."""
    music = tmp_path / "music"
    music.mkdir()
    f = make(kind, music / name, tmp_path, seconds=5.0, freq=110.0)
    before = f.read_bytes()
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (summary.scanned, summary.failed, summary.tag_errors) == (1, 0, 0) and summary.ok
    assert [p for p, _ in summary.untaggable] == [str(f)]
    assert f"unsupported format ({what}" in summary.untaggable[0][1]
    found = track_instruments(db)  # (a square wave's and a speech codec's harmonics reach the other bands)
    assert list(found) == [str(f)] and "bass" in found[str(f)] and f.read_bytes() == before
    with db.session() as s:
        duration = s.scalar(select(M.Track.duration).where(M.Track.path == str(f)))
    assert abs(duration - 5.0) < 0.06
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert again.skipped == 1 and again.untaggable == [] and again.ok


RAW = {"aac": ("tone.aac", "AAC (ADTS)", 1024), "ac3": ("tone.ac3", "AC-3", 1536),
       "eac3": ("tone.eac3", "E-AC-3", 1536), "truehd": ("tone.thd", "TrueHD", 40), "mlp": ("tone.mlp", "MLP", 40),
       "loas": ("tone.loas", "LATM/LOAS AAC", 1024), "dts": ("tone.dts", "DTS", 512)}
"""The raw frame streams ffmpeg's encoders write at 48 kHz: (a file name, the name of their frames in
a note, the samples of a frame)."""


def _decoded(f, notes: list[str]) -> np.ndarray:
    return np.concatenate(list(audio.stream(f, notes=notes)))


@pytest.mark.parametrize("kind", sorted(RAW))
def test_a_raw_stream_cut_inside_its_last_frame_is_analysed_without_it_and_said(tmp_path, kind):
    """A raw stream declares no length; each frame's header declares the frame's size, and a copy or
    download that stopped ends inside one. Cut by 7 bytes, an AC-3, E-AC-3, TrueHD or MLP file was
    analysed without a word, as if whole (ffmpeg decoded the AC-3's cut frame as a frame, dropped
    the TrueHD's), a DTS had ffmpeg's note of a frame it could not decode, and a LOAS was refused
    (``corrupt audio: ffmpeg could not decode 1 of its frames ...; nothing stored, as a result would
    leave them out``); a raw AAC (ADTS) had ffmpeg's note, or none (here: its last frame cut to its
    header), and was refused where ffprobe's estimate of its length from the bit rate ran long (a
    10.0 s file less 7 bytes: ``would leave 0.3 s of 10.3 s out``). Now each is analysed without
    the cut frame, its length the note's; a caller that takes no notes gets an error. The whole
    file has no note."""
    name, codec, samples = RAW[kind]
    f = make(kind, tmp_path / name, tmp_path, seconds=6.0)
    notes: list[str] = []
    whole = _decoded(f, notes)
    assert notes == []
    cut = tmp_path / f"cut{f.suffix}"
    cut.write_bytes(f.read_bytes()[:-7])
    y = _decoded(cut, notes)
    seconds = samples / 48_000
    assert len(notes) == 1 and notes[0].startswith(f"its last {codec} frame is cut ("), notes
    assert notes[0].endswith(f": analysed without it ({seconds:.3f} s of 6.0 s left out)"), notes
    assert abs(len(whole) - len(y) - seconds * C.SAMPLE_RATE) <= 2
    with pytest.raises(AudioReadError, match=rf"cut\.{f.suffix[1:]}: cut short: its last {re.escape(codec)} frame is cut"):
        audio.load(cut)


def test_a_short_ac3_file_cut_inside_its_last_frame_is_refused(tmp_path):
    """The 1% rule (`MAX_LOST_SHARE`): the 32 ms of an AC-3 frame are more than 1% of a 2 s file,
    which a download that stopped at 60% leaves: an error, nothing stored."""
    f = make("ac3", tmp_path / "tone.ac3", tmp_path, seconds=2.0)
    data = f.read_bytes()
    size = 4 * 192_000 // 1000  # (192 kbps, ffmpeg's rate for stereo: 768 bytes a frame)
    assert data[size : size + 2] == b"\x0b\x77"
    cut = tmp_path / "cut.ac3"
    cut.write_bytes(data[: len(data) * 3 // 5 // size * size + 100])
    with pytest.raises(AudioReadError, match=r"cut short: its last AC-3 frame is cut \(100 of the 768 bytes its "
                                             r"header declares there: .*would leave 0\.032 s of the 1\.2\d s"):
        _decoded(cut, [])


def test_an_ac3_file_at_half_its_rate_is_walked_at_that_rate(tmp_path):
    """AC-3 of bsid 9 (and 10) is the same frames at half (a quarter) of the rate its fscod names, as
    ffmpeg decodes it (its ac3_parser.c): the walk took each frame for 32 ms where it holds 64, so
    such a file cut inside its last frame said `0.032 s of 5.0 s left out` of 10 s. Here an
    ffmpeg-encoded AC-3's bsid set to 9 in each frame (ffmpeg encodes none)."""
    f = make("ac3", tmp_path / "tone.ac3", tmp_path, seconds=5.0)
    data, i = bytearray(f.read_bytes()), 0
    size = 4 * 192_000 // 1000  # (192 kbps at 48 kHz: 768 bytes a frame)
    while i < len(data):
        assert data[i : i + 2] == b"\x0b\x77" and data[i + 5] >> 3 == 8
        data[i + 5] = 9 << 3 | data[i + 5] & 7
        i += size
    cut = tmp_path / "half.ac3"
    cut.write_bytes(bytes(data[:-7]))
    notes: list[str] = []
    y = _decoded(cut, notes)
    assert abs(len(y) / C.SAMPLE_RATE - 9.984) < 0.01
    assert len(notes) == 1 and notes[0].endswith("analysed without it (0.064 s of 10.0 s left out)"), notes


def test_a_dtshd_file_cut_short_is_held_to_the_length_its_strmdata_chunk_declares(tmp_path):
    """A DTS-HD file's STRMDATA chunk declares the bytes of its frames: one cut at 60% was analysed as
    the 3.6 s it held, without a word; now an error, as of the other containers whose header declares
    a length. Cut inside its last frame alone: the note."""
    f = make("dtshd", tmp_path / "tone.dtshd", tmp_path, seconds=6.0)
    data = f.read_bytes()
    cut = tmp_path / "cut.dtshd"
    cut.write_bytes(data[: len(data) * 3 // 5])
    with pytest.raises(AudioReadError, match=r"cut short: the file holds 3\.6 s of the 6\.0 s its header declares"):
        _decoded(cut, [])
    cut.write_bytes(data[:-7])
    notes: list[str] = []
    _decoded(cut, notes)
    assert notes == ["the file ends before the length its header declares: analysed without the rest (0.011 s of "
                     "6.0 s left out)"]
    # (cut, and its last bytes zeros: still 6.0 s, not those bytes counted again: 'about 0.6 s of 6.6 s out')
    held = len(data) * 3 // 5
    cut.write_bytes(data[: held * 5 // 6] + bytes(held - held * 5 // 6))
    with pytest.raises(AudioReadError, match=r"cut short: the file holds 3\.0 s of the 6\.0 s its header declares"):
        _decoded(cut, [])


@pytest.mark.parametrize("kind", sorted(RAW))
def test_a_raw_stream_whose_end_is_zeros_is_refused_and_its_tags_and_padding_are_no_frames(tmp_path, kind):
    """A copy or download that stopped into a file made at its full size first (a torrent client's,
    a download manager's) ends in zeros: the frame walk took its frames for the whole file, so a DTS,
    TrueHD or MLP file of 6 s whose last 60% were zeros was analysed as the 2.4 s its frames held,
    with ffmpeg's note of one frame lost (``0.011 s of 2.4 s left out``) or none, where ffprobe's
    estimate had refused it; the others were refused as ``would leave 0.0 s of 2.4 s out``. Now the
    bytes after the last frame that begin none come under the 1% rule, at the stream's bytes a
    second. An ID3v1 tag and zeros of padding after the frames are neither a loss nor given to the
    decoder (an AC-3's was ``ffmpeg could not decode 1 of its frames``, a note on a whole file)."""
    name, codec, _samples = RAW[kind]
    f = make(kind, tmp_path / name, tmp_path, seconds=6.0)
    data = f.read_bytes()
    notes: list[str] = []
    whole = _decoded(f, notes)
    keep = len(data) * 2 // 5
    zeros = tmp_path / f"zeros{f.suffix}"
    zeros.write_bytes(data[:keep] + bytes(len(data) - keep))
    with pytest.raises(AudioReadError, match=rf"zeros\.{f.suffix[1:]}: corrupt audio: its last \d+ bytes begin no "
                                             rf"{re.escape(codec)} frame \(a damaged end, or the zeros of a copy or "
                                             r"download that stopped\); nothing stored, as a result would leave about "
                                             r"3\.\d s of 6\.0 s out"):
        _decoded(zeros, notes)
    tagged = tmp_path / f"tagged{f.suffix}"
    tagged.write_bytes(data + bytes(1000) + b"TAG" + b"title".ljust(125, b"\0"))
    assert len(_decoded(tagged, notes)) == len(whole) and notes == []
    assert len(audio.load(tagged)) == len(whole)


@pytest.mark.parametrize("kind", sorted(RAW))
def test_raw_files_joined_with_their_tags_are_not_damaged(tmp_path, kind):
    """Two downloads joined (``cat a.aac b.aac``), each with its ID3v1 tag (and the second with an
    ID3v2 tag in front): ffmpeg decodes both whole, but the frame walk took the tags between them for
    damage, `128 bytes between its AAC (ADTS) frames begin no frame (damaged: frames lost from its
    middle)`, a note on a file that lost nothing and an error for a caller without notes. A tag
    where a frame was to begin is passed over, as between an MP3's joined parts; and the decoder is
    not given it: ffmpeg's AC-3, E-AC-3 and LOAS readers took it for a frame, `ffmpeg could not
    decode 1 of its frames ... (0.032 s of 6.0 s left out)`, and its TrueHD and MLP readers dropped
    27 ms without a word."""
    name, _codec, _samples = RAW[kind]
    one = make(kind, tmp_path / name, tmp_path, seconds=3.0)
    alone = len(_decoded(one, []))
    id3v1 = b"TAG" + b"title".ljust(125, b"\0")
    id3v2 = b"ID3\x04\x00\x00\x00\x00\x00\x0a" + b"TIT2\x00\x00\x00\x00\x00\x00"
    f = tmp_path / f"joined{one.suffix}"
    f.write_bytes(one.read_bytes() + id3v1 + id3v2 + one.read_bytes() + id3v1)
    notes: list[str] = []
    y = _decoded(f, notes)
    assert notes == [] and abs(len(y) - 2 * alone) <= 0.005 * C.SAMPLE_RATE, (notes, len(y) / C.SAMPLE_RATE)
    assert len(audio.load(f)) == len(y)


def test_a_raw_aac_whose_frames_layer_bits_are_damaged_is_decoded_whole(tmp_path):
    """ffmpeg's ADTS reader and decoder read no frame's layer bits. A 32 kHz raw AAC whose first frame's
    layer bits are flipped may begin with an MP3 frame's header for libsndfile (this one does: 1.4 s
    declared), which decoded 0.02 s of its 6 s and stopped: stored as the track without a word. It
    goes to ffmpeg now, its frames covering more of it than MP3 frames do, and is decoded whole, no
    note. A frame in the middle so damaged was taken for bytes that begin none by the walk, a note
    of a loss that ffmpeg does not have. An MP3 named ``.aac`` stays libsndfile's."""
    src = tmp_path / "src.wav"
    sf.write(src, tone(6.0, 44_100, (220.0, 330.0)), 44_100, subtype="PCM_16")
    f = ffmpeg_file(tmp_path / "tone.aac", src, "adts", encoder="aac")
    notes: list[str] = []
    whole = _decoded(f, notes)
    data = f.read_bytes()
    size = (data[3] & 3) << 11 | data[4] << 3 | data[5] >> 5
    for at in (0, size):  # (the first frame's header, the second's)
        assert data[at : at + 2] == b"\xff\xf1"
        damaged = tmp_path / f"layer{at}.aac"
        damaged.write_bytes(data[:at] + b"\xff\xf3" + data[at + 2 :])
        assert at or sf.info(damaged).format == "MP3"  # (libsndfile's reading)
        meta = audio.info(damaged)
        assert (meta.decoder, meta.demuxer) == ("ffmpeg", "aac"), meta
        assert len(_decoded(damaged, notes)) == len(whole) and notes == [], notes
        assert len(audio.load(damaged)) == len(whole)
    mp3 = tmp_path / "song.aac"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-c:a", "libmp3lame", "-f", "mp3",
                    str(mp3)], check=True)  # fmt: skip
    assert (audio.info(mp3).format, audio.info(mp3).decoder) == ("MP3", "soundfile")


def test_an_mp3_that_libsndfile_stops_reading_early_is_refused(tmp_path):
    """libsndfile stops an MP3 without a length header at bytes that are no MPEG frames it reads,
    without a word: a 20 s MP3 with a raw AAC inside it (after its first 5 s) was stored as a 5.0 s
    track, and a raw AAC whose first frame's layer bits are damaged, named ``.mp3``, as 0.02 s. Less
    than half of what its bytes hold at its bit rate is an error now; the MP3 alone is decoded whole."""
    src = tmp_path / "src.wav"
    sf.write(src, tone(20.0, 44_100, (440.0, 440.0)), 44_100, subtype="PCM_16")
    mp3 = tmp_path / "tone.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-c:a", "libmp3lame", "-b:a", "128k",
                    "-write_xing", "0", "-id3v2_version", "0", str(mp3)], check=True)  # fmt: skip
    assert abs(len(_decoded(mp3, [])) / C.SAMPLE_RATE - 20.0) < 0.1
    sf.write(src, tone(6.0, 44_100, (220.0, 330.0)), 44_100, subtype="PCM_16")
    aac = ffmpeg_file(tmp_path / "tone.aac", src, "adts", encoder="aac").read_bytes()
    data = mp3.read_bytes()
    inside = tmp_path / "inside.mp3"
    inside.write_bytes(data[: len(data) // 4] + aac + data[len(data) // 4 :])
    damaged = tmp_path / "damaged.mp3"
    damaged.write_bytes(aac[:1] + b"\xf3" + aac[2:])
    for f, seconds in ((inside, r"5\.\d\d"), (damaged, r"0\.0\d")):
        assert (audio.info(f).format, audio.info(f).decoder) == ("MP3", "soundfile")
        with pytest.raises(AudioReadError, match=rf"{f.name}: libsndfile, reading it as an MP3, stopped after "
                                                 rf"{seconds} s of the about \d+\.\d s its \d+ bytes of audio hold "
                                                 r"at its first frame's \d+ kbps: the rest is no MPEG frames it reads"):
            _decoded(f, [])


def test_an_mp3_with_an_id3v2_tag_appended_at_its_end_is_decoded_whole(tmp_path):
    """An ID3v2 tag appended at an MP3's end (ID3v2.4's footer ``3DI``; an ID3v2.3 one some tools
    write there) holds no frames: 5 s of frames and a 600 KB cover after them were read as 42 s of
    audio at 128 kbps, and the whole file refused as stopped early by libsndfile."""
    src = tmp_path / "src.wav"
    sf.write(src, tone(5.0, 44_100, (440.0, 440.0)), 44_100, subtype="PCM_16")
    mp3 = tmp_path / "tone.mp3"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(src), "-c:a", "libmp3lame", "-b:a", "128k",
                    "-write_xing", "0", "-id3v2_version", "0", str(mp3)], check=True)  # fmt: skip

    def syncsafe(n: int) -> bytes:
        return bytes((n >> s) & 127 for s in (21, 14, 7, 0))

    picture = b"\x00image/jpeg\x00\x03\x00" + np.random.default_rng(1).bytes(600_000)
    frame = b"APIC" + syncsafe(len(picture)) + b"\x00\x00" + picture
    v24 = b"ID3\x04\x00\x10" + syncsafe(len(frame)) + frame + b"3DI\x04\x00\x10" + syncsafe(len(frame))
    v23 = b"ID3\x03\x00\x00" + syncsafe(len(frame)) + frame
    for name, tag in (("v24.mp3", v24), ("v23.mp3", v23)):
        f = tmp_path / name
        f.write_bytes(mp3.read_bytes() + tag)
        assert (audio.info(f).format, audio.info(f).decoder) == ("MP3", "soundfile")
        assert abs(len(_decoded(f, [])) / C.SAMPLE_RATE - 5.0) < 0.1


def test_a_raw_aac_damaged_to_ff_bytes_is_walked_by_its_sync_words(tmp_path, monkeypatch):
    """Flash memory reads 0xFF where it lost data: the walk looked for the next ADTS frame at every
    0xFF byte, reading a header at each (1.6 s a MB of them: 16 s for 10 MB, half an hour for 1 GB).
    It looks for the 12-bit sync and layer 0 (0xFFF0, 0xFFF1, 0xFFF8, 0xFFF9) now: a header is read
    where one can begin, and the damage is said as before."""
    from tagger.audio import rawheaders, rawwalk

    data = make("aac", tmp_path / "tone.aac", tmp_path, seconds=3.0).read_bytes()
    f = tmp_path / "ff.aac"
    f.write_bytes(data[:20_000] + b"\xff" * 200_000 + data)
    read, frame = [], rawheaders._ADTS.frame
    monkeypatch.setattr(rawheaders._ADTS, "frame", lambda self, buf, i: read.append(i) or frame(self, buf, i))
    walk = rawwalk._frame_walk(f, "aac")
    assert walk is not None and 199_000 < walk.damaged <= 200_000 and walk.cut == 0.0 and walk.trailing == 0
    assert abs(walk.seconds - 3.0 - 20_000 / len(data) * 3.0) < 0.1
    assert 0 < len(read) < 2_000, len(read)  # (the headers read are counted: the patch is where the walk looks)


def test_a_raw_stream_losing_one_byte_is_said_in_words_that_fit(tmp_path):
    """One byte after an AC-3's last frame, or between two of its frames, that begins none: the notes
    said ``its last 1 bytes begin no AC-3 frame`` and ``1 bytes between its AC-3 frames``, each
    ``about 0.000 s of 6.0 s left out``. The seconds are shown as more than none."""
    data = make("ac3", tmp_path / "tone.ac3", tmp_path, seconds=6.0).read_bytes()
    f = tmp_path / "one.ac3"
    for damaged, said in ((data + b"\x01", "its last byte begins no AC-3 frame (a damaged end, or the zeros of a "
                                            "copy or download that stopped)"),
                          (data[: 768 * 100] + b"\x01" + data[768 * 100 :],
                           "1 byte between its AC-3 frames begins no frame (damaged: frames lost from its middle)")):
        f.write_bytes(damaged)
        notes: list[str] = []
        _decoded(f, notes)
        assert notes == [f"{said}: analysed without it (about 0.00004 s of 6.0 s left out)"], notes


@pytest.mark.parametrize("kind", ["truehd", "mlp"])
def test_a_raw_stream_whose_middle_is_damaged_is_said_to_miss_frames(tmp_path, kind):
    """Bytes overwritten in the middle of a TrueHD or MLP file (a damaged copy): ffmpeg passes over
    them to the next major sync, without a word, and the file was analysed as if whole (an AC-3's or
    DTS's decoder mostly fails on a frame they damage, and says so: its note or refusal stands).
    Now the bytes between frames that begin none come under the 1% rule: 1.5 KB of a 6 s file are a
    note, 60 KB an error (ffmpeg's, where its decoder fails on them, against the frames' length:
    TrueHD's was ``would leave them out``, its length unknown)."""
    name, codec, _samples = RAW[kind]
    f = make(kind, tmp_path / name, tmp_path, seconds=6.0)
    data = bytearray(f.read_bytes())
    rng = np.random.default_rng(1)
    for size in (1500, 60_000):
        damaged = bytearray(data)
        damaged[len(data) // 2 : len(data) // 2 + size] = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        f.write_bytes(bytes(damaged))
        notes: list[str] = []
        if size == 1500:
            _decoded(f, notes)
            assert len(notes) == 1 and re.fullmatch(rf"\d+ bytes between its {codec} frames begin no frame \(damaged: "
                                                    r"frames lost from its middle\): analysed without them \(about "
                                                    r"0\.0\d\d s of 6\.0 s left out\)", notes[0]), notes
        else:
            # (where ffmpeg's decoder said so first, its refusal: of the frames' length, where it had none)
            with pytest.raises(AudioReadError, match=r"corrupt audio: .* would leave (about )?\d\.\d s of 6\.0 s out"):
                _decoded(f, notes)


def test_the_losses_of_one_decode_are_held_to_the_one_percent_rule_together(tmp_path):
    """`MAX_LOST_SHARE` was applied to each loss alone: a 6 s TrueHD with 1.5 KB of its middle
    damaged (0.038 s) and 1.5 KB of bytes after its last frame (0.034 s), 1.2% of it together, was
    analysed with the two notes. Each alone is a note; together they are refused, giving both notes'
    words."""
    data = make("truehd", tmp_path / "tone.thd", tmp_path, seconds=6.0).read_bytes()
    rng = np.random.default_rng(1)
    middle = rng.integers(0, 256, 1500, dtype=np.uint8).tobytes()
    end = rng.integers(1, 256, 1500, dtype=np.uint8).tobytes()
    damaged = data[: len(data) // 2] + middle + data[len(data) // 2 + 1500 :]
    f = tmp_path / "lost.thd"
    for alone in (damaged, data + end):
        f.write_bytes(alone)
        notes: list[str] = []
        _decoded(f, notes)
        assert len(notes) == 1, notes
    f.write_bytes(damaged + end)
    notes = []
    with pytest.raises(AudioReadError, match=r"lost\.thd: corrupt audio: 2 losses, each under 1% of it alone \(its last "
                                             r"1500 bytes begin no TrueHD frame .* left out\); \d+ bytes between its "
                                             r"TrueHD frames begin no frame .* left out\)\); nothing stored, as "
                                             r"together a result would leave about 0\.07 s of 6\.0\d s out"):
        _decoded(f, notes)


@pytest.mark.parametrize("ext", ["loas", "latm"])
def test_random_bytes_named_loas_are_said_to_hold_no_loas_audio(tmp_path, ext):
    """ffmpeg's loas reader, taken by the name, fails on random bytes where it meets a sync word in
    them, with ``Invalid argument``: the error was ``not a readable audio file (Invalid argument)``,
    where a text named ``.ac3`` says that no AC-3 audio was found in it. A LOAS file begins with a
    frame (its sync word and length, a frame after it): this one does not."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    f = tmp_path / f"noise.{ext}"
    f.write_bytes(np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes())
    with pytest.raises(AudioReadError) as err:
        audio.info(f)
    said = str(err.value)
    assert said.startswith(f"{f}: no LATM/LOAS AAC audio found in it (no frame of it where it begins; ffmpeg's loas "
                           "reader, taking it by its name, failed: Invalid argument): not a file of that format, or "
                           "a damaged one; not analysed"), said
