"""Valid but unusual audio content: channels that cancel in a plain downmix, lengths around one
window, rates, sample formats and levels at the edges. Each file is analysed for what it holds, or
is one clear error naming it; none is stored as something it is not."""

from __future__ import annotations

import io
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf

from conftest import tone_signal, track_instruments, write_audio
from library_fakes import FREQ, FakeAnalyser
from tagger import audio
from tagger.errors import AudioReadError
from tagger.db.queries import track_detail
from tagger.library.scan import scan

BASS, FLUTE, STRING = FREQ["bass"], FREQ["flute"], FREQ["string"]


def rms_db(y: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(y, dtype=np.float64)) + 1e-20))


@pytest.mark.parametrize("ext", ["wav", "flac", "m4a", "mp3", "ogg", "opus"])
def test_channels_in_antiphase_are_analysed_not_cancelled(tmp_path, db, ext):
    """L = -R (a phase-inverted recording): the mean of the channels is silence, and the loud file
    was stored with no instruments. A channel in antiphase is inverted before the mean now."""
    music = tmp_path / "music"
    y = tone_signal([BASS, FLUTE], seconds=9.0, sr=44_100)
    path = write_audio(music / f"antiphase.{ext}", np.stack([y, -y], axis=1), sr=44_100)
    assert rms_db(audio.load(path)) > rms_db(y) - 1.0
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"]}


def _windows(path) -> tuple[np.ndarray, np.ndarray]:
    """(audio [shape=(n, 64000)], silent [shape=(n,)]) of all of a file's windows."""
    batches = list(audio.iter_windows(path))
    return np.concatenate([w.audio for w in batches]), np.concatenate([w.silent for w in batches])


@pytest.mark.parametrize("ext", ["flac", "mp3"])
def test_a_phase_inverted_stereo_file_is_heard_as_its_mono_channel(tmp_path, ext):
    """A flute note in L and -L in R (a phase-inverted recording), encoded to FLAC or MP3: the plain
    mean was silence (every window under the floor). Its windows hold what its left channel holds:
    from a FLAC, the mono file's samples bit for bit; from an MP3 (where R is -L within the codec's
    error, the louder of the two changing from one second to the next), the left channel's within
    that error, where the mix took the louder one's polarity: inverted from one second to the next,
    a click at each such second's start (0.47 off at most, on a note of 0.24)."""
    y = tone_signal([FLUTE, 2 * FLUTE, 3 * FLUTE], seconds=9.0, sr=44_100) * np.exp(-np.arange(9 * 44_100) / 44_100 / 4)
    path = write_audio(tmp_path / f"inverted.{ext}", np.stack([y, -y], axis=1), sr=44_100)
    stereo, silent = _windows(path)
    assert not silent.any()
    if ext == "flac":
        assert np.array_equal(stereo, _windows(write_audio(tmp_path / "mono.flac", y, sr=44_100))[0])
    else:
        decoded, rate = sf.read(path, dtype="float32")
        sf.write(tmp_path / "left.wav", decoded[:, 0], rate, subtype="FLOAT")
        assert np.abs(stereo - _windows(tmp_path / "left.wav")[0]).max() < 1e-3


def test_channels_in_antiphase_keep_one_polarity_whichever_is_louder(tmp_path):
    """R = -L, 0.1 dB quieter in some seconds and louder in others: the mix is L (its polarity
    followed the louder channel's, turned over at the seconds where that changed)."""
    y = tone_signal([FLUTE], seconds=4.0)
    right = -y * np.repeat(np.float32([0.99, 1.01, 1.01, 0.99]), 16_000)
    sf.write(tmp_path / "inverted.wav", np.stack([y, right], axis=1), 16_000, subtype="FLOAT")
    np.testing.assert_allclose(audio.load(tmp_path / "inverted.wav"), y * np.repeat([0.995, 1.005, 1.005, 0.995], 16_000),
                               atol=1e-6)  # fmt: skip


def test_the_mix_keeps_its_polarity_where_a_channel_is_left_out_for_a_while(tmp_path):
    """Right channel wired the wrong way round, a note on it alone in the first second (the left
    empty, left out), the centre from then on: the mix was R in that second and (L - R) / 2 after
    it, the note turned over at 1 s (a step of 1.5 times it); a 5.1 file with its front left
    inverted and empty every other second turned over every second. Each keeps the polarity most
    of its channels had in the second before (in the block before, a second long for the stereo).
    (The first 10 ms of each second after the first fade from one mix to the next: left out here.)"""
    note, chord = tone_signal([FLUTE], seconds=4.0), tone_signal([BASS, STRING], seconds=4.0)
    centre = chord * np.repeat(np.float32([0, 1, 1, 1]), 16_000)
    sf.write(tmp_path / "stereo.wav", np.stack([centre, note - centre], axis=1), 16_000, subtype="FLOAT")
    first = np.arange(4 * 16_000) < 16_000
    settled = first | (np.arange(4 * 16_000) % 16_000 >= 160)
    mix = np.concatenate(list(audio.stream(tmp_path / "stereo.wav", block_seconds=1.0)))  # (from block to block)
    np.testing.assert_allclose(mix[settled], np.where(first, note, note / 2 - centre)[settled], atol=1e-6)
    front_left = -chord * np.repeat(np.float32([1, 0, 1, 0]), 16_000)  # (the LFE empty: every second is mixed)
    surround = [front_left, chord, 1.5 * chord, 0 * chord, 0.5 * chord, 0.5 * chord]
    sf.write(tmp_path / "surround.wav", np.stack(surround, axis=1), 16_000, subtype="FLOAT")
    expected = chord * np.repeat([0.9, 0.875, 0.9, 0.875], 16_000)
    np.testing.assert_allclose(audio.load(tmp_path / "surround.wav")[settled], expected[settled], atol=1e-6)


def test_a_channel_left_out_for_a_second_does_not_step_the_others_level_at_its_edges(tmp_path):
    """A tone on the left, another on the right every other second (faded in and out within it), a
    FLAC: the right, empty, is left out of its seconds, the left tone alone there and halved in the
    others. The mix switched at each second's edge, the tone stepping by 6 dB there, its largest
    sample-to-sample jump seven times the mix's own elsewhere (a click in every window holding it).
    The weights fade from one mix to the next over 10 ms now, within a block or across two, and
    from where a fade stopped in a block's last chunk, 20 frames (blocks of a second and 20 frames:
    the next block stepped from about the old mix to the new, 0.120 against 0.016)."""
    sr = 44_100
    t = np.arange(6 * sr) / sr
    fade = 0.5 - 0.5 * np.cos(np.pi * np.arange(882) / 882)  # (20 ms: the right channel itself has no step)
    gate = np.concatenate([np.zeros(sr), fade, np.ones(sr - 2 * 882), fade[::-1]])
    left, right = 0.3 * np.sin(2 * np.pi * 111.3 * t), 0.3 * np.sin(2 * np.pi * 167.9 * t) * np.tile(gate, 3)
    path = tmp_path / "gated.flac"
    sf.write(path, np.stack([left, right], axis=1), sr, subtype="PCM_24")
    edges = np.zeros(6 * 16_000 - 1, bool)
    for k in range(1, 6):
        edges[k * 16_000 - 20 : k * 16_000 + 20] = True
    tone = np.sin(2 * np.pi * 111.3 * np.arange(6 * 16_000) / 16_000)
    own = None  # (the mix's largest jump away from the edges, in 30 s blocks)
    for seconds in (30.0, 1.0, (sr + 20) / sr):
        mix = np.concatenate(list(audio.stream(path, block_seconds=seconds)))
        jumps = np.abs(np.diff(mix))
        own = own or jumps[~edges].max()
        assert jumps.max() < 1.1 * own, seconds  # (anywhere: blocks of 44,120 frames move the chunks' edges)
        level = [2 * np.mean((mix * tone)[k * 16_000 + 800 : (k + 1) * 16_000]) for k in range(6)]
        np.testing.assert_allclose(level, [0.3, 0.15] * 3, atol=0.003)  # (the empty right still left out)


def test_an_ordinary_stereo_file_is_the_plain_mean_bit_for_bit(tmp_path):
    """The antiphase and empty-channel checks leave a mix whose channels correlate (a centre and
    two sides) as it was: every window the plain float32 mean of the decoded channels, resampled."""
    rng = np.random.default_rng(1)
    centre = tone_signal([BASS, FLUTE], seconds=9.0, sr=44_100)
    left, right = (rng.standard_normal(len(centre)).astype(np.float32) * 0.05 for _ in range(2))
    path = write_audio(tmp_path / "mix.flac", np.stack([centre + left, 0.7 * centre + right], axis=1), sr=44_100)
    decoded, rate = sf.read(path, dtype="float32")
    sf.write(tmp_path / "mean.wav", decoded.mean(axis=1, dtype=np.float32), rate, subtype="FLOAT")
    stereo, silent = _windows(path)
    mean, mean_silent = _windows(tmp_path / "mean.wav")
    assert np.array_equal(stereo, mean) and np.array_equal(silent, mean_silent)


def test_a_channel_wired_the_wrong_way_round_keeps_what_is_in_the_centre(tmp_path, db):
    """Right channel inverted: the bass in the centre cancelled in the mean, and only what is panned
    to one side (a flute left, strings right) was found."""
    music = tmp_path / "music"
    bass = tone_signal([BASS], seconds=9.0)
    flute, string = tone_signal([FLUTE], seconds=9.0, amplitude=0.1), tone_signal([STRING], seconds=9.0, amplitude=0.1)
    path = write_audio(music / "inverted.wav", np.stack([bass + flute, -(bass + string)], axis=1))
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute", "string"]}


def test_channels_of_an_ordinary_mix_are_averaged_as_they_are(tmp_path):
    """Channels that correlate (a mix) or do not (two microphones, a mid/side pair stored as M and S)
    keep the plain mean; only a chunk with a channel in antiphase is treated apart, and only it."""
    rng = np.random.default_rng(0)
    centre, left, right = (rng.standard_normal(32_000).astype(np.float32) * 0.1 for _ in range(3))
    mix = np.stack([centre + left, centre + right, left, right * 0.5], axis=1)
    path = tmp_path / "mix.wav"
    sf.write(path, mix, 16_000, subtype="FLOAT")
    np.testing.assert_allclose(audio.load(path), mix.mean(axis=1), atol=1e-6)
    flipped = mix.copy()
    flipped[16_000:, 1] *= -1  # the second channel in antiphase with the first for the second second only
    flipped[16_000:, 0] = -flipped[16_000:, 1]
    path = tmp_path / "half.wav"
    sf.write(path, flipped, 16_000, subtype="FLOAT")
    y = audio.load(path)
    np.testing.assert_allclose(y[:16_000], flipped[:16_000].mean(axis=1), atol=1e-6)
    assert rms_db(y[16_000:]) > rms_db(flipped[16_000:].mean(axis=1)) + 6


@pytest.mark.parametrize("rate", [16_000, 44_100])
def test_a_constant_is_silence_whatever_its_offset(tmp_path, rate):
    """A file holding a constant (the silence of a recording with a DC offset: 36 to 160 of 32768)
    was not silent by its RMS (-59 to -46 dBFS), and the shipped models stored it as reed or brass.
    Its windows are silent now; sound on an offset is not."""
    path = tmp_path / "offset.wav"
    sf.write(path, np.full(8 * rate, 36, dtype=np.int16), rate)
    assert all(w.silent.all() for w in audio.iter_windows(path))
    sf.write(path, np.full(8 * rate, 160, dtype=np.int16), rate)
    assert all(w.silent.all() for w in audio.iter_windows(path))
    y = tone_signal([FLUTE], seconds=8.0, sr=rate, amplitude=0.01) + 0.3
    sf.write(path, y, rate)
    assert not any(w.silent.any() for w in audio.iter_windows(path))


def test_the_silence_floor_is_measured_over_the_real_samples_about_their_mean():
    windows = np.zeros((3, 64_000), np.float32)
    windows[0] = 0.5  # a constant: silence
    windows[1, :1000] = 0.5  # the same constant over the real samples of a padded last window
    windows[2, :1000] = 0.001 * np.sin(np.arange(1000))  # -63 dBFS about its mean
    windows[2, :1000] += 0.3
    lengths = np.array([64_000, 1000, 1000])
    assert (audio.window_rms_dbfs(windows, lengths) < -60).all()
    windows[2, :1000] += 0.003 * np.sin(np.arange(1000))  # 0.004 in all: -51 dBFS
    assert audio.window_rms_dbfs(windows, lengths)[2] == pytest.approx(-51.0, abs=0.2)


def _id3v2_length(data: bytes) -> int:
    """The length of the ID3v2 tag `data` begins with (its size: 4 bytes of 7 bits), 0 for none."""
    return 10 + sum((b & 0x7F) << 7 * (3 - i) for i, b in enumerate(data[6:10])) if data[:3] == b"ID3" else 0


ID3V1 = b"TAG" + b"a cut of the original".ljust(30, b"\0") + bytes(94) + b"\x0c"  # (128 bytes: title, genre)


def _mp3(path, y, sr, *args) -> bytes:
    """The bytes of an MP3 of `y` encoded by LAME at 64 kbps (`args`: more of ffmpeg's options)."""
    src = path.with_suffix(".src.wav")
    sf.write(str(src), y, sr)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "libmp3lame", "-b:a", "64k", *args,
                    str(path)], check=True)  # fmt: skip
    src.unlink()
    return path.read_bytes()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("second_rate", [44_100, 22_050])
@pytest.mark.parametrize("xing", [True, False])
def test_mp3_files_joined_one_after_another_are_analysed_whole(tmp_path, db, xing, second_rate):
    """``cat flute.mp3 bass.mp3``: the first file's Info header declares its own length, and
    libsndfile stopped there; without one, it stopped where the sample rate changes. Either way the
    scan stored the flute alone as the whole track, 6 s of 16 (a wrong answer). Such a file is now
    decoded by ffmpeg to its end; single files stay with libsndfile."""
    music = tmp_path / "music"
    music.mkdir()
    args = [] if xing else ["-write_xing", "0"]
    first = _mp3(tmp_path / "a.mp3", tone_signal([FLUTE], seconds=6.0, sr=44_100), 44_100, *args)
    second = _mp3(tmp_path / "b.mp3", tone_signal([BASS], seconds=10.0, sr=second_rate), second_rate,
                  "-id3v2_version", "0", *args)  # fmt: skip
    path = music / "joined.mp3"
    path.write_bytes(first + second)
    # (two CBR streams of one rate without headers are one CBR stream, which libsndfile decodes whole)
    assert audio.info(path).decoder == ("ffmpeg" if xing or second_rate != 44_100 else "soundfile")
    assert abs(len(audio.load(path)) / 16_000 - 16.0) < 0.2
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"]}
    for one in (tmp_path / "a.mp3", tmp_path / "b.mp3"):
        assert audio.info(one).decoder == "soundfile"


def _decoded_whole_ending_on_bass(path, seconds: float, *, within: float) -> None:
    """The file of joined parts decoded to its whole length, ``seconds`` give or take ``within``, its
    last 4 s the last part's bass (a decoder stopping at a joint gives the first part alone)."""
    got = audio.load(path)
    assert abs(len(got) / 16_000 - seconds) < within
    spectrum = np.abs(np.fft.rfft(got[-64_000:]))
    assert np.argmax(spectrum) * 16_000 / 64_000 == pytest.approx(BASS, abs=1.0)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("first_channels", [1, 2])
def test_mp3_files_joined_of_mono_and_stereo_frames_are_analysed_whole(tmp_path, db, first_channels):
    """``cat mono.mp3 stereo.mp3`` of one rate, without a length header (CBR, ``-write_xing 0``):
    libsndfile stopped where the channel mode changes, without a word, and the scan stored the
    flute's 6 s as the whole 16 s track (its declared length 16 s). Such a file is decoded by ffmpeg
    to its end now, as one whose sample rate changes."""
    music = tmp_path / "music"
    music.mkdir()
    flute, bass = tone_signal([FLUTE], seconds=6.0, sr=44_100), tone_signal([BASS], seconds=10.0, sr=44_100)
    if first_channels == 1:
        bass = np.stack([bass, bass], axis=1)
    else:
        flute = np.stack([flute, flute], axis=1)
    first = _mp3(tmp_path / "a.mp3", flute, 44_100, "-write_xing", "0")
    second = _mp3(tmp_path / "b.mp3", bass, 44_100, "-id3v2_version", "0", "-write_xing", "0")
    path = music / "joined.mp3"
    path.write_bytes(first + second)
    _decoded_whole_ending_on_bass(path, 16.0, within=0.2)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"]}


def test_a_wav_whose_data_chunk_declares_less_than_follows_it_says_so(tmp_path):
    """A 60 s recording whose data chunk declares its first 10 s (a recorder that stopped before it
    wrote the final size): libsndfile reads the 10 s declared, and the file was analysed as a 10 s
    track without a word. How much of the rest is audio is not known: it is analysed as declared with
    a note, an error for a caller that takes no notes; a chunk, a tag or zeros after the data chunk
    are no such bytes."""
    import struct

    y = np.concatenate([tone_signal([FLUTE], seconds=10.0, sr=44_100), tone_signal([BASS], seconds=50.0, sr=44_100)])
    pcm = (y * 32767).astype("<i2").tobytes()
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 44_100, 88_200, 2, 16)

    def wav(name: str, after: bytes) -> object:
        body = b"WAVE" + fmt + b"data" + struct.pack("<I", 882_000) + pcm[:882_000] + after
        path = tmp_path / name
        path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
        return path

    stale = wav("stale.wav", pcm[882_000:])
    notes: list[str] = []
    assert len(np.concatenate(list(audio.stream(stale, notes=notes)))) == 160_000
    assert notes == ["its data chunk declares 10.0 s, and 50.0 s more of bytes follow it that begin no chunk (a recorder "
                     "or copy that stopped before it wrote the final size?): analysed as the 10.0 s declared; what "
                     "follows may be audio"]  # fmt: skip
    with pytest.raises(AudioReadError, match=r"50\.0 s more of bytes .*; nothing stored, as what follows may be audio"):
        audio.load(stale)
    for name, after in [("list.wav", b"LIST" + struct.pack("<I", 200_000) + bytes(200_000)),
                        ("id3.wav", b"ID3\x04\0\0\0\x0c\x1a\x00" + bytes(200_000)), ("zeros.wav", bytes(200_000))]:
        notes = []
        assert len(np.concatenate(list(audio.stream(wav(name, after), notes=notes)))) == 160_000
        assert notes == [], name
    aiff = tmp_path / "stale.aiff"  # (its COMM chunk declaring the 10 s too)
    comm = b"COMM" + struct.pack(">IhIh", 18, 1, 441_000, 16) + b"\x40\x0e\xac\x44" + bytes(6)  # (44100.0, 80 bits)
    ssnd = b"SSND" + struct.pack(">III", 882_008, 0, 0) + (y * 32767).astype(">i2").tobytes()
    aiff.write_bytes(b"FORM" + struct.pack(">I", 4 + len(comm) + len(ssnd)) + b"AIFF" + comm + ssnd)
    notes = []
    assert len(np.concatenate(list(audio.stream(aiff, notes=notes)))) == 160_000
    assert notes == ["its data chunk declares 10.0 s, and 50.0 s more of bytes follow it that begin no chunk (a recorder "
                     "or copy that stopped before it wrote the final size?): analysed as the 10.0 s declared; what "
                     "follows may be audio"]  # fmt: skip


def test_a_wav_of_an_odd_data_chunk_without_its_pad_byte_and_a_tag_after_it_is_whole(tmp_path):
    """An 8-bit WAV of an odd number of samples from a writer that leaves the pad byte out, then
    tagged by mutagen (as tagger and beets write WAV tags), which appends its id3 chunk right after
    the data: 69b3e04 read the chunk one byte on, its ID's last three letters and a byte of its size,
    and the whole file was 'a recorder that stopped', an error for `load`."""
    import struct

    from mutagen.id3 import APIC, TIT2
    from mutagen.wave import WAVE

    y = tone_signal([FLUTE], seconds=20.0, sr=8_000)
    pcm = (np.append(y, 0.0) * 127 + 128).astype("u1").tobytes()  # (160001 bytes)
    body = b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8_000, 8_000, 1, 8) + b"data"
    body += struct.pack("<I", len(pcm)) + pcm
    path = tmp_path / "unpadded.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    tags = WAVE(path)
    tags.add_tags()
    tags.tags.add(TIT2(encoding=3, text="a title"))
    tags.tags.add(APIC(encoding=3, mime="image/jpeg", type=3, desc="", data=bytes(range(256)) * 800 + bytes(150)))
    tags.save()
    data = path.read_bytes()
    after = data[data.index(b"data") + 8 + len(pcm) :]
    assert after[:4] == b"id3 " and not 32 <= after[4] < 127  # (no pad byte; a size byte not a letter after the ID)
    notes: list[str] = []
    assert len(np.concatenate(list(audio.stream(path, notes=notes)))) == 320_002
    assert notes == []
    assert len(audio.load(path)) == 320_002


def test_predict_says_what_it_left_out_of_a_file_analysed_in_part(tmp_path, fake_models):
    """`tagger predict` runs the scan's steps, which take notes (69b3e04's WAV whose data chunk
    declares 10 s of a 60 s recording is analysed as declared with one), and printed the result of
    such a file as of a whole one: the note was dropped without a word. It warns as `show` does."""
    import struct

    from typer.testing import CliRunner

    from tagger.cli import app

    y = np.concatenate([tone_signal([FLUTE], seconds=10.0), tone_signal([BASS], seconds=50.0)])
    pcm = (y * 32767).astype("<i2").tobytes()
    body = b"WAVE" + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 16_000, 32_000, 2, 16) + b"data"
    body += struct.pack("<I", 320_000) + pcm
    stale = tmp_path / "stale.wav"
    stale.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    for args in ([], ["--json"]):
        r = CliRunner().invoke(app, ["predict", str(stale), *args])
        assert r.exit_code == 0, r.output
        assert r.stderr.splitlines() == [f"tagger: warning: {stale}: analysed in part: its data chunk declares 10.0 s, and "
                                         "50.0 s more of bytes follow it that begin no chunk (a recorder or copy that "
                                         "stopped before it wrote the final size?): analysed as the 10.0 s declared; "
                                         "what follows may be audio"]  # fmt: skip
    whole = write_audio(tmp_path / "whole.flac", tone_signal([FLUTE], seconds=6.0))
    r = CliRunner().invoke(app, ["predict", str(whole)])
    assert r.exit_code == 0 and r.stderr == "", r.output


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_mp3_files_joined_with_a_short_part_of_another_rate_between_the_probes_are_analysed_whole(tmp_path):
    """Nine CBR MP3s without a length header joined, the fifth 0.5 s at 48 kHz between two of the 8
    places whose frames are compared: libsndfile stopped there, and 42.6 s of an 83.5 s file were
    analysed as the whole track, the bass after it never heard, without a word. The frames of an
    MP3 without a length header are followed to its end now (30 ms for 10 minutes), and such a file
    goes to ffmpeg, decoded to its end."""
    parts = []
    for k, (freq, seconds, sr) in enumerate([(FLUTE, 10.0, 44_100)] * 3 + [(FLUTE, 12.5, 44_100), (STRING, 0.5, 48_000)]
                                            + [(BASS, 10.0, 44_100)] * 4):  # fmt: skip
        parts.append(_mp3(tmp_path / f"p{k}.mp3", tone_signal([freq], seconds=seconds, sr=sr), sr, "-write_xing", "0",
                          "-id3v2_version", "0"))  # fmt: skip
    path = tmp_path / "joined.mp3"
    path.write_bytes(b"".join(parts))
    _decoded_whole_ending_on_bass(path, 83.0, within=0.3)
    assert audio.info(tmp_path / "p8.mp3").decoder == "soundfile"  # (a part alone: one rate)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_mp3_files_joined_with_a_short_part_of_another_bit_rate_after_the_probes_are_analysed_whole(tmp_path):
    """A 5 s CBR MP3 at 320 kbps and a 5 s one at 32 kbps joined (no length header): the second's
    bytes lie after the last of the 8 places whose frames' bit rates are compared, and libsndfile,
    taking the length from the first frame's 320 kbps, stopped at 5.55 s of 10 s, the bass never
    heard, without a word. The walk of the frames to the end (3a9e6e3) reads their bit rates too;
    more than one sends the file to ffmpeg, decoded to its end."""
    high = _mp3(tmp_path / "high.mp3", tone_signal([FLUTE], seconds=5.0, sr=44_100), 44_100, "-b:a", "320k",
                "-write_xing", "0", "-id3v2_version", "0")  # fmt: skip
    low = _mp3(tmp_path / "low.mp3", tone_signal([BASS], seconds=5.0, sr=44_100), 44_100, "-b:a", "32k",
               "-write_xing", "0", "-id3v2_version", "0")  # fmt: skip
    path = tmp_path / "joined.mp3"
    path.write_bytes(high + low)
    got = audio.load(path)
    assert abs(len(got) / 16_000 - 10.0) < 0.3
    spectrum = np.abs(np.fft.rfft(got[-32_000:]))
    assert np.argmax(spectrum) * 16_000 / 32_000 == pytest.approx(BASS, abs=1.0)
    assert audio.info(tmp_path / "high.mp3").decoder == "soundfile"  # (a part alone: one bit rate)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("change", ["rate", "channels"])
def test_mp2_files_joined_of_two_rates_or_of_mono_and_stereo_are_analysed_whole(tmp_path, db, change):
    """MPEG layer II (MP2, of broadcast recordings), which libsndfile decodes as MP3: files joined
    of 44.1 then 48 kHz frames, or of mono then stereo, were decoded by libsndfile, which stopped at
    the change without a word (the flute's 6 s of a 16 s file stored as the track), as MP3s did
    before their frames' rates and modes were compared: the frame headers read were of layer III
    only. A single MP2 stays libsndfile's."""
    music = tmp_path / "music"
    music.mkdir()
    second_rate = 48_000 if change == "rate" else 44_100
    bass = tone_signal([BASS], seconds=10.0, sr=second_rate)
    if change == "channels":
        bass = np.stack([bass, bass], axis=1)
    first = _mp3(tmp_path / "a.mp2", tone_signal([FLUTE], seconds=6.0, sr=44_100), 44_100, "-c:a", "mp2", "-b:a", "192k")
    second = _mp3(tmp_path / "b.mp2", bass, second_rate, "-c:a", "mp2", "-b:a", "192k")
    path = music / "joined.mp2"
    path.write_bytes(first + second)
    _decoded_whole_ending_on_bass(path, 16.0, within=0.1)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"]}
    assert audio.info(tmp_path / "a.mp2").decoder == "soundfile"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("vbr", [False, True])
def test_an_mp3_whose_xing_header_declares_too_few_frames_is_analysed_whole(tmp_path, db, vbr):
    """A Xing/Info header whose frame count is half what the bytes it declares hold (an editor or
    joiner that rewrote one field of it): libsndfile stopped at the count, and the scan stored the
    flute's first 6 s of a 12 s file, the bass after it never heard, without a word. Such a file is
    decoded by ffmpeg to its end now; one whose header is right stays libsndfile's."""
    music = tmp_path / "music"
    music.mkdir()
    y = np.concatenate([tone_signal([FLUTE], seconds=6.0, sr=44_100), tone_signal([BASS], seconds=6.0, sr=44_100)])
    data = bytearray(_mp3(tmp_path / "whole.mp3", y, 44_100, *(["-q:a", "4"] if vbr else [])))
    at = max(data.find(b"Xing"), data.find(b"Info"))
    assert at > 0 and data[at + 7] & 3 == 3  # (its frame count and its bytes declared)
    frames = int.from_bytes(data[at + 8 : at + 12], "big")
    data[at + 8 : at + 12] = (frames // 2).to_bytes(4, "big")
    path = music / "lying.mp3"
    path.write_bytes(bytes(data))
    _decoded_whole_ending_on_bass(path, 12.0, within=0.1)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"]}
    assert audio.info(tmp_path / "whole.mp3").decoder == "soundfile"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("tail", ["apev2", "apev2 without its header", "lyrics3", "id3v1"])
def test_a_vbr_mp3_without_a_length_header_and_a_tag_at_its_end_is_analysed_whole(tmp_path, tail):
    """A whole VBR MP3 without a Xing/Info header (decoded by ffmpeg, which finds its length) with a
    Lyrics3 tag, or an APEv2 tag of a footer alone (the APEv1 form, which the specification lets
    v2 writers use too), after its frames: ffmpeg decoded the tag as frames it could not
    ('mp3float: Header missing') and the file was an error, 'corrupt audio: ffmpeg could not decode
    1 of its frames'. The tag is left out of what ffmpeg is given now, as tags between the parts of
    joined files: the same samples as the file without it, and no note (as with an ID3v1 tag, or an
    APEv2 tag with its header, which ffmpeg skips itself)."""
    from mutagen.apev2 import APEv2

    data = _mp3(tmp_path / "plain.mp3", tone_signal([BASS], seconds=6.0, sr=44_100), 44_100, "-q:a", "4",
                "-write_xing", "0")  # fmt: skip
    assert b"Xing" not in data and b"Info" not in data
    path = tmp_path / "tagged.mp3"
    lyrics = b"LYRICSBEGIN" + b"IND00002" + b"10"
    item = (7).to_bytes(4, "little") + bytes(4) + b"Title\0a title"
    footer = b"APETAGEX" + (2000).to_bytes(4, "little") + (len(item) + 32).to_bytes(4, "little") + (1).to_bytes(4, "little")
    path.write_bytes(data + {"apev2": b"", "id3v1": ID3V1, "apev2 without its header": item + footer + bytes(12),
                             "lyrics3": lyrics + b"%06d" % len(lyrics) + b"LYRICS200" + ID3V1}[tail])  # fmt: skip
    if tail == "apev2":
        tag = APEv2()
        tag["Title"] = "a title"
        tag.save(path)
    elif tail == "apev2 without its header":
        assert APEv2(path)["Title"] == "a title"  # (a tag as mutagen reads it)
    assert audio.info(path).decoder == "ffmpeg"
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == []
    np.testing.assert_array_equal(got, audio.load(tmp_path / "plain.mp3"))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("second_rate", [44_100, 22_050])
@pytest.mark.parametrize("cover", [False, True])
def test_mp3_files_joined_with_a_tag_between_them_are_analysed_whole_and_keep_it_through_a_tag_write(
    tmp_path, db, cover, second_rate
):  # fmt: skip
    """``cat flute.mp3 bass.mp3`` where the second begins with its own ID3v2 tag (concatenated
    downloads, mixtapes): ffmpeg, which decodes joined files whole, cannot decode the tag's bytes
    (``mp3float: Header missing``, one frame lost, or 14 for a tag holding a cover) and the file was
    an error. The tags between frames are now left out of what ffmpeg is given: the file decodes to
    the same samples as the parts joined without the tag; a tag write (at the start) leaves the
    tag between the parts as it was, and the audio decodes the same after it."""
    from mutagen.id3 import APIC, ID3, TIT2

    from tagger.tags import write_instruments

    music = tmp_path / "music"
    music.mkdir()
    first = _mp3(tmp_path / "a.mp3", tone_signal([FLUTE], seconds=6.0, sr=44_100), 44_100, "-write_xing", "1")
    _mp3(tmp_path / "b.mp3", tone_signal([BASS], seconds=10.0, sr=second_rate), second_rate)
    tag = ID3(tmp_path / "b.mp3")
    tag.add(TIT2(encoding=3, text=["the second part"]))
    if cover:  # (bytes of every value: false frame headers for a decoder that reads them as audio)
        tag.add(APIC(encoding=3, mime="image/jpeg", type=3, data=bytes(range(256)) * 200))
    tag.save()
    second = (tmp_path / "b.mp3").read_bytes()
    middle = second[: _id3v2_length(second)]
    assert len(middle) > 30 and (len(middle) > 50_000) == cover
    path, plain = music / "joined.mp3", tmp_path / "plain.mp3"
    path.write_bytes(first + second)
    plain.write_bytes(first + second[len(middle) :])
    expected = audio.load(plain)
    assert abs(len(expected) / 16_000 - 16.0) < 0.2
    np.testing.assert_array_equal(audio.load(path), expected)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"]}
    assert write_instruments(path, instruments=["bass", "flute"], model_version="fake-1").written
    data = path.read_bytes()
    assert data.startswith(b"ID3") and data.count(middle) == 1 and data.endswith(middle + second[len(middle) :])
    assert ID3(path)["TXXX:INSTRUMENTS"].text == ["bass", "flute"]
    np.testing.assert_array_equal(audio.load(path), expected)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_the_feed_of_joined_mp3_parts_ends_with_its_stream_and_a_file_cut_or_gone_meanwhile_is_an_error(tmp_path):
    """The thread that feeds ffmpeg the parts of a joined MP3 (`AudioInfo.feed`): a stream closed
    early (a scan stopped, an error in a later step) ends ffmpeg and the thread at once; a file cut
    short or deleted while it is fed is an error saying so, not a shorter track taken for the whole."""
    import threading

    first = _mp3(tmp_path / "a.mp3", tone_signal([FLUTE], seconds=60.0, sr=44_100), 44_100, "-write_xing", "1")
    second = _mp3(tmp_path / "b.mp3", tone_signal([BASS], seconds=60.0, sr=44_100), 44_100, "-metadata", "title=b")
    assert second.startswith(b"ID3")  # (a tag between the parts: fed through the pipe)
    path = tmp_path / "joined.mp3"
    path.write_bytes(first + second)
    assert audio.info(path).feed
    before = threading.active_count()
    blocks = audio.stream(path, block_seconds=1.0)
    next(blocks)
    assert threading.active_count() == before + 1  # (the feeder)
    blocks.close()
    assert threading.active_count() == before
    for cut in ("cut", "deleted"):
        blocks = audio.stream(path, block_seconds=1.0)
        next(blocks)
        if cut == "cut":
            with open(path, "r+b") as f:
                f.truncate(len(first) // 2)
        else:
            path.unlink()
        with pytest.raises(AudioReadError, match="the file changed while it was being decoded"):
            for _ in blocks:
                pass
        assert threading.active_count() == before
        path.write_bytes(first + second)


@pytest.mark.parametrize(("channels", "playing"), [(2, [0]), (6, [2]), (6, [0, 1])])
def test_empty_channels_do_not_push_quiet_music_under_the_silence_floor(tmp_path, db, channels, playing):
    """A quiet passage (-52 dBFS) in the centre channel of a 5.1 file with nothing else, or on one
    side of a mono transfer stored as stereo: the mean over every channel lowered it by up to 15.6 dB
    to under the -60 dBFS silence floor, and the track was stored with no instruments, where the
    same recording as a mono file is analysed. Empty channels are left out of the mean now."""
    music = tmp_path / "music"
    y = tone_signal([FLUTE], seconds=8.0, amplitude=np.sqrt(2) * 10 ** (-52 / 20))
    block = np.zeros((len(y), channels), np.float32)
    block[:, playing] = y[:, None]
    path = write_audio(music / f"quiet{channels}.flac", block)
    assert rms_db(audio.load(path)) == pytest.approx(-52.0, abs=0.2)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["flute"]}


@pytest.mark.parametrize("level", [-62, -66, -75])
def test_a_recording_quiet_throughout_is_heard_as_its_louder_copy(tmp_path, db, level):
    """Music below the -60 dBFS silence floor throughout (a transfer made at too low a gain) was all
    silent windows, stored with no instruments, though the models score it as its louder copy. Such
    a file is heard now under a floor of its own level (40 dB under its loudest window, not under
    -80 dBFS): its hiss alone before the music too, as a louder copy's would be; a file of hiss at
    -85 dBFS stays silence, and so does the quiet hiss before an ordinary file's music."""
    music = tmp_path / "music"
    rng = np.random.default_rng(0)
    gain = 10 ** (level / 20)
    y = tone_signal([FLUTE], seconds=8.0, amplitude=np.sqrt(2) * gain)
    quiet = music / "quiet.flac"  # (24-bit: 16 bits at -75 dBFS leave the fake analyser hearing their steps)
    music.mkdir()
    sf.write(quiet, y, 16000, subtype="PCM_24")
    hiss = (rng.standard_normal(16000 * 8) * 10 ** (-85 / 20)).astype(np.float32)
    hissing = write_audio(music / "hiss.flac", hiss)
    lead = (rng.standard_normal(16000 * 8) * 10 ** (-70 / 20)).astype(np.float32)
    ordinary = write_audio(music / "ordinary.flac", np.concatenate([lead, tone_signal([FLUTE], seconds=8.0)]))
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(quiet): ["flute"], str(hissing): [], str(ordinary): ["flute"]}
    with db.session() as s:
        assert track_detail(s, path=str(quiet)).silent_windows == 0
        assert track_detail(s, path=str(hissing)).silent_windows == 2
        assert track_detail(s, path=str(ordinary)).silent_windows == 2



def test_a_track_an_older_tagger_stored_all_silent_is_analysed_again_once(tmp_path, db, monkeypatch):
    """A quiet recording an older tagger (before the quiet floor, decoding 2) stored with every window
    silent kept no instruments for ever, its file unchanged. A scan analyses such a track again
    once, deciding it from the stored window counts (the file is not looked at for files joined),
    and says why; a track with windows that were not silent is left as it is, its file not read."""
    from sqlalchemy import select

    from tagger.audio import joined
    from tagger.db import models as M

    music = tmp_path / "music"
    music.mkdir()
    quiet = music / "quiet.flac"
    sf.write(quiet, tone_signal([FLUTE], seconds=8.0, amplitude=np.sqrt(2) * 10 ** (-66 / 20)), 16000, subtype="PCM_24")
    ordinary = write_audio(music / "ordinary.flac", tone_signal([FLUTE], seconds=8.0))
    assert _scan_as_decoding_2(music, db, monkeypatch) == 2
    assert track_instruments(db) == {str(quiet): [], str(ordinary): ["flute"]}
    looked = []
    monkeypatch.setattr(joined, "decoded_otherwise", lambda p: looked.append(p))
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (summary.scanned, summary.skipped, summary.failed) == (1, 1, 0), summary.errors
    assert summary.decoded_anew == [(str(quiet), "every window was under the silence floor, which now follows "
                                                 "a quiet recording's own level")]  # fmt: skip
    assert track_instruments(db) == {str(quiet): ["flute"], str(ordinary): ["flute"]}
    with db.session() as s:
        assert dict(s.execute(select(M.Track.path, M.Track.decoding)).all()) == {str(quiet): joined.DECODING, str(ordinary): 2}
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (summary.scanned, summary.skipped, summary.decoded_anew, looked) == (0, 2, [], [])


def _scan_as_decoding_2(music, db, monkeypatch) -> int:
    """Scan `music` as the tagger of decoding 2 did (the -60 dBFS floor for every file, a quiet
    recording's windows all silent) and record its tracks so; returns how many it scanned."""
    from tagger.db import models as M
    from tagger.library import analyse

    with monkeypatch.context() as m:
        m.setattr(analyse, "quiet_floor", lambda loudest, **kw: None)
        scanned = scan([music], db=db, analyser=FakeAnalyser(), jobs=0).scanned
    with db.session() as s:
        s.execute(M.Track.__table__.update().values(decoding=2))
        s.commit()
    return scanned


def test_a_stale_track_analysed_again_as_all_silent_is_not_counted_stale(tmp_path, db, monkeypatch):
    """A track of decoding 2 stored all silent by another model version is analysed again by this
    scan's model, found where it was or moved: it was counted stale too ("2 scanned, 1 skipped
    unchanged (3 stale)", the stale line naming 3 tracks --rescan-stale would analyse). Only the
    track left as it is counts stale now."""
    music = tmp_path / "music"
    music.mkdir()
    y = tone_signal([FLUTE], seconds=8.0, amplitude=np.sqrt(2) * 10 ** (-66 / 20))
    for name in ("quiet.flac", "away.flac"):
        sf.write(music / name, y, 16000, subtype="PCM_24")
    write_audio(music / "ordinary.flac", tone_signal([FLUTE], seconds=8.0))
    assert _scan_as_decoding_2(music, db, monkeypatch) == 3
    (music / "away.flac").rename(music / "moved.flac")
    summary = scan([music], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0)
    assert (summary.scanned, summary.moved, summary.skipped, summary.stale) == (2, 1, 1, 1), summary.errors
    assert sorted(p for p, _ in summary.decoded_anew) == [str(music / "moved.flac"), str(music / "quiet.flac")]
    assert track_instruments(db)[str(music / "moved.flac")] == ["flute"]
    summary = scan([music], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0)
    assert (summary.scanned, summary.skipped, summary.stale) == (0, 3, 1)

def test_a_long_silence_held_back_is_progress_for_the_file_timeout(tmp_path, monkeypatch):
    """The windows of a file silent so far are held back until its music (or its end) decides its
    floor: nothing reached the scan meanwhile, and a long silent lead-in that takes longer than the
    file timeout to decode (an hour of it on slow storage) would be stopped as a hung decoder. A
    `Reading` message is sent each second of the hold (checked: removed, a 10-hour silent FLAC under
    --file-timeout 2 timed out). The clock steps a second at each look, so no test waits."""
    import time
    from types import SimpleNamespace

    from tagger.library import analyse
    from tagger.library.messages import FileInfo, Reading, Windows

    steps = iter(range(10**6))
    monkeypatch.setattr(analyse, "time", SimpleNamespace(monotonic=lambda: float(next(steps)), perf_counter=time.perf_counter))
    path = write_audio(tmp_path / "lead.flac", np.concatenate([np.zeros(16000 * 20), tone_signal([FLUTE], seconds=4.0)]))
    config = analyse.AnalysisConfig(features=FakeAnalyser().feature_config.to_dict(), batch_size=1)
    kinds = [type(m) for m in analyse.analyse_file(0, str(path), config=config)]
    first = kinds.index(Windows)
    assert kinds.index(FileInfo) < first
    assert kinds[kinds.index(FileInfo):first].count(Reading) >= 4
    assert kinds.count(Windows) == 6 and not kinds[first:].count(Reading)


@pytest.mark.parametrize("ext", ["wav", "aiff"])
def test_a_wav_or_aiff_cut_short_is_analysed_as_far_as_it_goes_or_is_an_error_that_says_so(tmp_path, db, ext):
    """A WAV or AIFF whose data chunk declares more than the file holds (a copy that stopped, a full
    disk): libsndfile takes the length from what is there, and the first 4 s of a 10 s file were
    stored as the whole track without a word. The FLAC rule applies now: up to 1% of the declared
    length lost, analysed with the note; more, an error naming what is missing."""
    from sqlalchemy import select

    from tagger.db import models as M

    music = tmp_path / "music"
    y = tone_signal([BASS], seconds=10.0, sr=44_100)
    whole = write_audio(tmp_path / f"whole.{ext}", y, sr=44_100).read_bytes()
    music.mkdir()
    (music / f"half.{ext}").write_bytes(whole[: len(whole) * 2 // 5])
    (music / f"tail.{ext}").write_bytes(whole[: len(whole) - 4410])  # 0.05 s of 10 s
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.errors == [(str(music / f"half.{ext}"), "cut short: the file holds 4.0 s of the 10.0 s its header "
                                                            "declares; nothing stored, as a result would leave 6.0 s out")]  # fmt: skip
    assert track_instruments(db) == {str(music / f"tail.{ext}"): ["bass"]}
    with db.session() as s:
        note = s.scalar(select(M.Track.analysed_in_part).where(M.Track.path == str(music / f"tail.{ext}")))
    assert note == "the file ends before the length its header declares: analysed without the rest (0.050 s of 10.0 s left out)"


@pytest.mark.parametrize("field", ["wrapped", "undeclared"])
def test_a_wav_of_more_than_4_gib_is_an_error_not_its_first_part(tmp_path, field):
    """A RIFF WAV holds at most 4 GiB by its header: past that, writers leave the size wrapped
    (modulo 2**32) or 0xFFFFFFFF, and libsndfile read 60 s of a 94-minute 192 kHz file (or stopped at
    4 GiB), stored as the whole track. Such a file is an error saying so (a sparse file here: nothing
    is decoded)."""
    import struct

    rate, data = 192_000, 2**32 + 192_000 * 4 * 60  # 16-bit stereo: 4 GiB and 60 s
    size = data % 2**32 if field == "wrapped" else 0xFFFFFFFF
    fmt = struct.pack("<IHHIIHH", 16, 1, 2, rate, rate * 4, 4, 16)
    head = b"RIFF" + struct.pack("<I", (36 + data) % 2**32) + b"WAVEfmt " + fmt + b"data" + struct.pack("<I", size)
    path = tmp_path / "long.wav"
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(len(head) + data)
    with pytest.raises(AudioReadError, match="more audio data than its header can declare .* of its 5652.4 s"):
        next(audio.stream(path))
    with open(path, "r+b") as f:  # the same header on a file of 10 s: read to its end, as before
        f.truncate(len(head) + rate * 4 * 10)
    if field == "undeclared":
        assert abs(len(audio.load(path)) - 10 * 16_000) <= 2


@pytest.mark.parametrize(("seconds", "starts", "silent"), [
    (1.0, [0], [False]), (3.99, [0], [False]), (4.0, [0], [False]),
    (4.0 + 1 / 16_000, [0, 64_000], [False, True]),  # (one sample is no sound: it has no variance)
    (4.0 + 2 / 16_000, [0, 64_000], [False, False]), (8.0, [0, 64_000], [False, False]),
])  # fmt: skip
def test_lengths_around_one_window(tmp_path, seconds, starts, silent):
    y = tone_signal([FLUTE], seconds=8.0)[: int(round(seconds * 16_000))]
    y[-2:] = [0.3, -0.3]  # (a last sample of sound)
    path = write_audio(tmp_path / "x.wav", y)
    (w,) = list(audio.iter_windows(path))
    assert w.start.tolist() == starts and w.silent.tolist() == silent


@pytest.mark.parametrize(("name", "rate", "subtype", "gain"), [
    ("u8.wav", 44_100, "PCM_U8", 1.0), ("ulaw.wav", 44_100, "ULAW", 1.0), ("alaw.wav", 44_100, "ALAW", 1.0),
    ("s24.wav", 96_000, "PCM_24", 1.0), ("s32.wav", 192_000, "PCM_32", 1.0),
    ("over_full_scale.wav", 44_100, "FLOAT", 8.0),  # (float samples up to 2.4: analysed as they are, not clipped)
    ("quiet.flac", 44_100, "PCM_24", 10 ** (-45 / 20) / 0.3 * np.sqrt(2)),  # (-45 dBFS RMS: analysed)
    ("rate8k.wav", 8_000, "PCM_16", 1.0), ("rate384k.wav", 384_000, "PCM_16", 1.0),
])  # fmt: skip
def test_sample_formats_rates_and_levels_are_analysed_for_what_they_hold(tmp_path, db, name, rate, subtype, gain):
    music = tmp_path / "music"
    music.mkdir()
    path = music / name
    y = tone_signal([BASS, FLUTE], seconds=6.0, sr=rate) * gain
    sf.write(str(path), y, rate, subtype=subtype)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"]}


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_tag_write_keeps_every_stream_of_an_mp4(tmp_path):
    """An M4A with two audio tracks and an MP4 with a video track: the first audio track is analysed
    (the one whose length is stored), and a tag write keeps every stream's decoded content."""
    from tagger.tags import write_instruments

    def digests(path) -> list[str]:
        out = []
        for spec in ("0:a:0", "0:a:1?", "0:v:0?"):
            done = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", spec, "-f", "md5", "-"],
                                  capture_output=True, text=True, check=True)  # fmt: skip
            out.append(done.stdout)
        return out

    flute, bass = tmp_path / "flute.wav", tmp_path / "bass.wav"
    sf.write(flute, tone_signal([FLUTE], seconds=4.0), 16_000)
    sf.write(bass, tone_signal([BASS], seconds=8.0), 16_000)
    two, video = tmp_path / "two.m4a", tmp_path / "video.mp4"
    ff = ["ffmpeg", "-nostdin", "-v", "error"]
    subprocess.run([*ff, "-i", flute, "-i", bass, "-map", "0:a", "-map", "1:a", "-c:a", "aac", two], check=True)
    subprocess.run([*ff, "-f", "lavfi", "-i", "color=c=black:s=32x32:d=8", "-i", flute, "-map", "0:v", "-map", "1:a",
                    "-c:v", "mpeg4", "-c:a", "aac", video], check=True)  # fmt: skip
    for path in (two, video):
        assert abs(audio.info(path).duration - 4.0) < 0.1 and abs(len(audio.load(path)) / 16_000 - 4.0) < 0.1
        before, data = digests(path), path.read_bytes()
        write_instruments(path, instruments=["flute"], model_version="test-1")
        assert path.read_bytes() != data and b"INSTRUMENTS" in path.read_bytes()
        assert digests(path) == before and all(before[:2])


def test_show_says_when_a_track_is_without_instruments_because_every_window_is_silent(tmp_path, db):
    """A track stored with no instruments because nothing in it reached the silence floor (a master
    at -85 dBFS, a file of silence) read in `tagger show` as one analysed and found without any."""
    from tagger.db.queries import track_detail
    from tagger.library.report import render_detail

    music = tmp_path / "music"
    quiet = write_audio(music / "quiet.flac", tone_signal([FLUTE], seconds=6.0, amplitude=np.sqrt(2) * 10 ** (-85 / 20)))
    loud = write_audio(music / "loud.flac", tone_signal([FLUTE], seconds=6.0))
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    with db.session() as s:
        shown = {p: render_detail(track_detail(s, path=str(p))) for p in (quiet, loud)}
    assert "  instruments: (none)  (every window is silent: 2 of 2 below -60 dBFS)\n" in shown[quiet]
    assert "  instruments: flute\n" in shown[loud]


def test_predict_says_when_a_file_is_without_instruments_because_every_window_is_silent(tmp_path, fake_models):
    """`tagger predict` of a file of silence said `(no instrument)` alone, where `show` of the same
    file says that nothing reached the silence floor (found walking through the README)."""
    from typer.testing import CliRunner

    from tagger.cli import app

    quiet = write_audio(tmp_path / "quiet.flac", tone_signal([FLUTE], seconds=6.0, amplitude=np.sqrt(2) * 10 ** (-85 / 20)))
    loud = write_audio(tmp_path / "loud.flac", tone_signal([FLUTE], seconds=6.0))
    r = CliRunner().invoke(app, ["predict", str(quiet), str(loud)])
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    assert lines[0] == f"{quiet}: (no instrument)  (every window is silent: 2 of 2 below -60 dBFS)"
    assert lines[2] == f"{loud}: flute"


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_the_length_of_a_matroska_file_is_that_of_the_stream_analysed(tmp_path):
    """A Matroska file of two audio streams (6 s, then 12 s), or of a longer video: ffprobe gives no
    length for a Matroska stream but in its tags, and the file's length (12 s) was taken for that of
    the first audio stream, which is the one decoded: the 1% rule for damaged frames measured the
    6 s it decodes against 12 (6 s "left out": the file refused, its reason wrong)."""
    flute, bass = tmp_path / "flute.wav", tmp_path / "bass.wav"
    sf.write(flute, tone_signal([FLUTE], seconds=6.0), 16_000)
    sf.write(bass, tone_signal([BASS], seconds=12.0), 16_000)
    two, video = tmp_path / "two.mka", tmp_path / "video.webm"
    ff = ["ffmpeg", "-nostdin", "-v", "error"]
    subprocess.run([*ff, "-i", flute, "-i", bass, "-map", "0:a", "-map", "1:a", "-c:a", "flac", two], check=True)
    subprocess.run([*ff, "-f", "lavfi", "-i", "color=c=black:s=32x32:d=12", "-i", flute, "-map", "0:v", "-map", "1:a",
                    "-c:v", "libvpx", "-c:a", "libopus", video], check=True)  # fmt: skip
    for path in (two, video):
        meta = audio.info(path)
        assert meta.decoder == "ffmpeg" and abs(meta.duration - 6.0) < 0.05, meta
        assert abs(len(audio.load(path)) / 16_000 - 6.0) < 0.05


@pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("mkvmerge") is None, reason="needs ffmpeg and mkvmerge")
def test_a_gap_in_an_mkvmerge_files_stream_begun_into_its_video_is_found(tmp_path):
    """mkvmerge's DURATION tag (a statistic) is the span of the stream's own timestamps, where
    ffmpeg's muxer writes the end of its last: 683024b took the start off both, so the audio of a
    music video begun 3 s in (mkvmerge --sync), 10 s of timeline holding 6 s and a 2 s gap, was 'a 7 s
    stream' and analysed as whole. ffmpeg remuxing such a file keeps mkvmerge's statistics tags and
    writes its own DURATION: that is still the end, less the start."""
    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([FLUTE], seconds=8.0), 16_000)
    ff = ["ffmpeg", "-nostdin", "-v", "error"]
    gap, whole, video = tmp_path / "gap.mka", tmp_path / "whole.mka", tmp_path / "video.mkv"
    subprocess.run([*ff, "-i", src, "-af", "asetpts='if(gte(T,3),PTS+2/TB,PTS)'", "-c:a", "flac", gap], check=True)
    subprocess.run([*ff, "-i", src, "-c:a", "flac", whole], check=True)
    subprocess.run([*ff, "-f", "lavfi", "-i", "color=c=black:s=32x32:d=14", "-c:v", "libvpx", video], check=True)
    muxed = {}
    for name, audio_file in [("gap", gap), ("whole", whole)]:
        muxed[name] = tmp_path / f"{name}-video.mkv"
        subprocess.run(["mkvmerge", "-q", "-o", muxed[name], video, "--sync", "0:3000", audio_file], check=True)
    with pytest.raises(AudioReadError, match=r"its Matroska timestamps span 10\.0 s, of which the file holds 8\.0 s"):
        list(audio.stream(muxed["gap"], notes=[]))
    remuxed = tmp_path / "remuxed.mkv"
    subprocess.run([*ff, "-i", muxed["whole"], "-map", "0", "-c", "copy", remuxed], check=True)
    for path in (muxed["whole"], remuxed):
        notes: list[str] = []
        assert abs(audio.info(path).duration - 8.0) < 0.05, path
        assert abs(len(np.concatenate(list(audio.stream(path, notes=notes)))) / 16_000 - 8.0) < 0.05
        assert notes == [], path


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("gap", [2.0, 1.0])
def test_a_gap_in_a_matroska_files_timestamps_comes_under_the_one_percent_rule(tmp_path, db, gap):
    """A Matroska stream whose timestamps jump (frames a recording dropped, a damaged copy's lost
    clusters): ffmpeg decodes what is there without a word, and an 8 s file missing 2 s after its
    first 3 was analysed as a 6 s track, as if whole, what follows the gap 2 s early. Its timeline
    (the stream's DURATION tag) is its length now: 2 s of 8 is refused, 1 s of 150 is a note, and a
    stream that begins 0.5 s into a video's timeline is measured from there, whole."""
    music = tmp_path / "music"
    music.mkdir()
    seconds = 8.0 if gap == 2.0 else 150.0
    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([FLUTE], seconds=seconds - gap), 16_000)
    path = music / "gap.mka"
    ff = ["ffmpeg", "-nostdin", "-v", "error"]
    subprocess.run([*ff, "-i", src, "-af", f"asetpts='if(gte(T,3),PTS+{gap}/TB,PTS)'", "-c:a", "flac", path], check=True)
    assert abs(audio.info(path).duration - seconds) < 0.01
    notes: list[str] = []
    if gap == 2.0:
        with pytest.raises(AudioReadError, match=r"its Matroska timestamps span 8\.0 s, of which the file holds 6\.0 s "
                                                 r"\(gaps in its timeline: .*\); nothing stored, as a result would leave "
                                                 r"2\.0 s out"):  # fmt: skip
            list(audio.stream(path, notes=notes))
    else:
        assert abs(len(np.concatenate(list(audio.stream(path, notes=notes)))) / 16_000 - 149.0) < 0.01
        assert notes == ["its Matroska timestamps span 150.0 s, of which the file holds 149.0 s (gaps in its timeline: "
                         "frames a recording dropped, or a damaged copy lost): analysed without them (1.000 s of 150.0 s "
                         "left out)"]  # fmt: skip
    late = music / "late.mkv"
    subprocess.run([*ff, "-f", "lavfi", "-i", "color=c=black:s=32x32:d=6.5", "-itsoffset", "0.5", "-i", src, "-map", "0:v",
                    "-map", "1:a", "-c:v", "libvpx", "-c:a", "flac", late], check=True)  # fmt: skip
    assert abs(audio.info(late).duration - (seconds - gap)) < 0.05
    notes = []
    assert abs(len(np.concatenate(list(audio.stream(late, notes=notes)))) / 16_000 - (seconds - gap)) < 0.05
    assert notes == []


def test_a_matroska_streams_length_is_read_from_its_tag_in_mkvmerges_spelling_too():
    """mkvmerge writes a stream's length as ``DURATION-eng`` (with the track's language), ffmpeg's
    muxer as ``DURATION``: only the latter was read, so such a file's length was unknown and one
    damaged frame refused it instead of a note (ffmpeg cannot write the former: checked on ffprobe's
    own output, a dictionary)."""
    from tagger.audio.probe import _tagged_duration

    assert _tagged_duration({"DURATION-eng": "00:01:02.500000000", "ENCODER": "x"}) == 62.5
    assert _tagged_duration({"duration": "00:00:06.000000000"}) == 6.0
    assert _tagged_duration({"DURATION-und": "N/A", "DURATION": "00:00:03.000000000"}) == 3.0
    assert _tagged_duration({"DURATIONS": "00:00:03.0", "TITLE": "x"}) is None


def test_channels_of_huge_or_a_few_non_finite_samples_are_still_mixed_as_before(tmp_path):
    """The channel statistics of the downmix square the samples: float samples of 1e30 overflow
    float32 there (the 1e30 stereo file became NaN, "100.0% of its samples are NaN or infinite", once
    the statistics were added); they are taken in float64 then. A few infinite samples (up to 1% are
    silence) leave their chunk the plain mean."""
    y = tone_signal([BASS], seconds=3.0).astype(np.float64) * 1e30
    for name, right in (("same.wav", 0.5 * y), ("antiphase.wav", -y)):
        sf.write(tmp_path / name, np.stack([y, right], axis=1), 16_000, subtype="FLOAT")
        out = audio.load(tmp_path / name)
        assert np.isfinite(out).all() and rms_db(out / 1e30) > rms_db(y / 1e30) - 3
    z = tone_signal([BASS], seconds=3.0)
    stereo = np.stack([z, -z], axis=1)
    stereo[100, 0] = np.inf
    sf.write(tmp_path / "inf.wav", stereo, 16_000, subtype="FLOAT")
    out = audio.load(tmp_path / "inf.wav")
    assert np.isfinite(out).all() and out[100] == 0 and rms_db(out[16_000:]) > rms_db(z) - 1


def test_a_wav_cut_short_after_a_large_chunk_is_still_found(tmp_path):
    """Recorders put large chunks (iXML, JUNK padding) before the audio: the data chunk was looked for
    in the first 64 KiB only, so such a WAV cut short passed as whole."""
    import struct

    whole = write_audio(tmp_path / "whole.wav", tone_signal([BASS], seconds=10.0)).read_bytes()
    junk = b"JUNK" + struct.pack("<I", 100_000) + bytes(100_000)
    padded = whole[:4] + struct.pack("<I", len(whole) - 8 + len(junk)) + whole[8:12] + junk + whole[12:]
    path = tmp_path / "padded.wav"
    path.write_bytes(padded)
    assert abs(len(audio.load(path)) - 160_000) <= 2
    path.write_bytes(padded[: len(padded) // 2])
    with pytest.raises(AudioReadError, match="cut short"):
        audio.load(path)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_an_mp3_or_wavpack_cut_short_is_analysed_as_far_as_it_goes_or_is_an_error_that_says_so(tmp_path, db):
    """An MP3 with a Xing/Info header, or a WavPack, cut to 40% (a copy or download that stopped):
    libsndfile and ffmpeg decoded what is there without a word (3.95 s of 10), stored as the whole
    track. Up to 1% of the declared length missing: analysed with the note; more: an error."""
    from sqlalchemy import select

    from tagger.db import models as M

    music = tmp_path / "music"
    music.mkdir()
    y = tone_signal([BASS], seconds=10.0, sr=44_100)
    cuts = {}
    for ext, codec in (("mp3", ["-c:a", "libmp3lame", "-b:a", "128k"]), ("vbr.mp3", ["-c:a", "libmp3lame", "-q:a", "4"]),
                       ("wv", ["-c:a", "wavpack"])):  # fmt: skip
        src = tmp_path / "src.wav"
        sf.write(src, y, 44_100)
        whole = tmp_path / f"whole.{ext}"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, *codec, whole], check=True)
        data = whole.read_bytes()
        (music / f"half.{ext}").write_bytes(data[: len(data) * 4 // 10])
        cuts[ext] = data
    (music / "tail.mp3").write_bytes(cuts["mp3"][: len(cuts["mp3"]) - 1254])  # three frames of 418 bytes: 0.078 s
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    errors = dict(summary.errors)
    assert sorted(errors) == sorted(str(music / f"half.{ext}") for ext in cuts), errors
    assert all(e.startswith("cut short: the file holds ") and "of the 10.0 s its header declares" in e for e in errors.values())
    assert track_instruments(db) == {str(music / "tail.mp3"): ["bass"]}
    with db.session() as s:
        note = s.scalar(select(M.Track.analysed_in_part).where(M.Track.path == str(music / "tail.mp3")))
    assert note.startswith("the file ends before the length its header declares: analysed without the rest (0.0")


def test_channels_in_antiphase_beyond_eight_are_inverted_too(tmp_path):
    y = tone_signal([FLUTE], seconds=2.0)
    block = np.stack([y if i % 2 else -y for i in range(10)], axis=1)  # 10 channels, every other inverted
    block[:, 9] = 0.0  # and one empty
    sf.write(tmp_path / "ten.wav", block, 16_000, subtype="FLOAT")
    assert rms_db(audio.load(tmp_path / "ten.wav")) == pytest.approx(rms_db(y), abs=0.1)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("kind", ["id3v1", "apev2"])
def test_mp3_files_joined_after_the_first_ones_tag_at_its_end_are_analysed_whole(tmp_path, db, kind):
    """``cat flute.mp3 bass.mp3`` where the first ends with its ID3v1 or APEv2 tag (foobar2000 writes
    APEv2 to MP3s, a cover in it): frames were looked for within 4 KiB after the bytes the first
    file's Info header declares, and past an APEv2 tag of 9 KB none were found: libsndfile decoded
    the first 6 s, stored as the whole 16 s track. Tags there are skipped now, by their lengths."""
    from mutagen.apev2 import APEv2

    music = tmp_path / "music"
    music.mkdir()
    _mp3(tmp_path / "a.mp3", tone_signal([FLUTE], seconds=6.0, sr=44_100), 44_100, "-write_xing", "1")
    if kind == "apev2":
        tag = APEv2()
        tag["Title"] = "the first part"
        tag["Cover Art (Front)"] = b"cover.jpg\0" + bytes(range(256)) * 36
        tag.save(tmp_path / "a.mp3")
    first = (tmp_path / "a.mp3").read_bytes() + (ID3V1 if kind == "id3v1" else b"")
    second = _mp3(tmp_path / "b.mp3", tone_signal([BASS], seconds=10.0, sr=44_100), 44_100, "-id3v2_version", "0")
    path = music / "joined.mp3"
    path.write_bytes(first + second)
    assert abs(len(audio.load(path)) / 16_000 - 16.0) < 0.2
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"]}


def _with_false_headers(data: bytes, header: bytes, at: int) -> bytes:
    """`data` (an MP3 written by ffmpeg: frames after its ID3v2 tag) with `header` written `at` bytes
    into each of its frames after the first (its Info header's), bytes of their audio that look like
    a frame header."""
    from tagger.audio.mp3frames import _mp3_frame

    pos, out = _id3v2_length(data), bytearray(data)
    pos += _mp3_frame(data, pos)[1]
    while pos < len(data):
        length = _mp3_frame(data, pos)[1]
        if pos + length < len(data):
            out[pos + at : pos + at + 4] = header
        pos += length
    return bytes(out)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("where", ["apev2 cover", "audio", "both"])
def test_a_whole_16_khz_mp3_with_bytes_that_look_like_48_khz_headers_is_not_taken_for_files_joined(tmp_path, where):
    """A 10 s MP3 of LAME's at 16 kHz, 32 kbps, tagged: two bytes of a cover in its APEv2 tag that
    read as 48 kHz headers, one a frame's length (384 bytes) after the other, or in each frame's data
    a 48 kHz header whose length (96 bytes) reaches the next frame's real header, were taken for a
    file of 48 kHz joined after it ('MP3 files joined one after another (frames of 48000 Hz after
    frames of 16000 Hz)'): the file went to ffmpeg, which left the encoder's padding at its end in
    (175 samples more than libsndfile's). Frames are looked for before the tags at the file's end
    only now, and four of one kind in a row are taken for a stream's: the file stays libsndfile's,
    its samples those of the file without the tag."""
    from mutagen.apev2 import APEv2, APEValue, BINARY

    from tagger.audio.mp3length import _mp3_decoded_in_part

    y = tone_signal([FLUTE], seconds=10.0, sr=16_000)
    plain = tmp_path / "plain.mp3"
    data = _mp3(plain, np.stack([y, y], axis=1), 16_000, "-b:a", "32k")
    if where != "apev2 cover":
        data = _with_false_headers(data, bytes.fromhex("fffb1444"), 48)  # (MPEG-1, 32 kbps, 48 kHz: 96 bytes)
    path = tmp_path / "tagged.mp3"
    path.write_bytes(data)
    if where != "audio":
        cover = bytearray(np.random.default_rng(0).integers(0, 255, 12_000, dtype=np.uint8).tobytes())  # (no 0xFF)
        header = bytes.fromhex("fffb9464")  # (MPEG-1, 128 kbps, 48 kHz: 384 bytes)
        cover[9000:9004] = cover[9384:9388] = header
        tag = APEv2()
        tag["Title"] = "a title"
        tag["Cover Art (Front)"] = APEValue(b"cover.jpg\0" + bytes(cover), BINARY)
        tag.save(path)
    assert _mp3_decoded_in_part(path) is None
    assert audio.info(path).decoder == "soundfile"
    if where == "apev2 cover":
        np.testing.assert_array_equal(audio.load(path), audio.load(plain))
        assert len(audio.load(path)) == 160_000


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("frames", [2, 3])
def test_a_vbr_mp3_of_two_or_three_frames_without_a_length_header_is_ffmpegs(tmp_path, frames):
    """A VBR MP3 without a Xing/Info header of 2 or 3 frames, as ``ffmpeg -ss -c copy -write_xing 0``
    writes of a file's last 0.1 s (its ID3v2 tag, then the frames), went to libsndfile since 99c838e
    took only 4 frames of one kind in a row for a stream's, where such a file has fewer: libsndfile
    takes its length from the first frame's bit rate (0.138 s of a 0.157 s file decoded; found by the
    review of 99c838e over ffmpeg's -c copy cuts). Frames that end where the file's do are a
    stream's, 2 of them at least: the file is ffmpeg's, every frame decoded."""
    from tagger.audio.mp3length import _mp3_decoded_in_part

    rng = np.random.default_rng(3)
    y = (0.2 * rng.standard_normal(88_200) * np.repeat(rng.random(40), 2205)).astype(np.float32)
    data = _mp3(tmp_path / "whole.mp3", y, 44_100, "-q:a", "2", "-write_xing", "0")
    starts = _frame_starts(data) + [len(data)]
    k = len(starts) // 2
    assert len({data[starts[i] + 2] >> 4 for i in range(k, k + frames)}) > 1  # (frames of other bit rates)
    path = tmp_path / "last.mp3"
    path.write_bytes(data[: _id3v2_length(data)] + data[starts[k] : starts[k + frames]])
    assert _mp3_decoded_in_part(path) == "a VBR MP3 without a length header"
    assert audio.info(path).decoder == "ffmpeg"
    assert abs(len(audio.load(path)) - frames * 1152 * 16_000 / 44_100) < 1


def _frame_starts(data: bytes) -> list[int]:
    """Where each MPEG-1 layer III frame of an MP3 written by ffmpeg begins (after its ID3v2 tag),
    read from the frame headers: 144 * bit rate / sample rate bytes, plus one where padded."""
    kbps = (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)
    pos = _id3v2_length(data)
    starts = []
    while pos + 4 <= len(data) and data[pos] == 0xFF and data[pos + 1] & 0xFE == 0xFA:  # (MPEG-1 layer III)
        starts.append(pos)
        bits = data[pos + 2]
        pos += 144_000 * kbps[bits >> 4] // (44_100, 48_000, 32_000)[bits >> 2 & 3] + (bits >> 1 & 1)
    assert pos == len(data), "not an MPEG-1 layer III file of frames alone"
    return starts


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("mode", [["-b:a", "128k"], ["-q:a", "4"]], ids=["cbr", "vbr"])
def test_an_mp3_cut_by_an_editor_that_kept_its_header_is_analysed_and_one_cut_short_is_still_an_error(tmp_path, db, mode):
    """A cutter (mp3DirectCut, an old ``ffmpeg -c copy``) leaves the Xing/Info header's frame count
    of the original: the file holds 4 s of the 10 s its header declares and was refused as cut
    short, although it plays. A cut file ends on a whole frame, often followed by an ID3v1 or APEv2
    tag; a download that stopped ends inside a frame, without one. Only the first is analysed now
    (with a note); a file ending inside a frame, or on a frame without a tag after it, stays an error."""
    from mutagen.apev2 import APEv2
    from sqlalchemy import select

    from tagger.db import models as M

    music = tmp_path / "music"
    music.mkdir()
    data = _mp3(tmp_path / "whole.mp3", tone_signal([BASS], seconds=10.0, sr=44_100), 44_100, *mode, "-write_xing", "1")
    assert b"Xing" in data or b"Info" in data
    frames = _frame_starts(data)
    edge = frames[len(frames) * 4 // 10]  # (a frame's first byte: the cut ends on a whole frame)
    (music / "edited-id3v1.mp3").write_bytes(data[:edge] + ID3V1)
    (music / "edited-apev2.mp3").write_bytes(data[:edge])
    tag = APEv2()
    tag["Title"] = "a cut of the original"
    tag.save(music / "edited-apev2.mp3")
    (music / "edited-both.mp3").write_bytes((music / "edited-apev2.mp3").read_bytes() + ID3V1)
    refused = {"edge.mp3": data[:edge], "stopped.mp3": data[: edge + 100],  # (a download stopped inside a frame)
               "stopped-id3v1.mp3": data[: edge + 100] + ID3V1}  # (and tagged by a tool appending ID3v1)  # fmt: skip
    for name, cut in refused.items():
        (music / name).write_bytes(cut)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    errors = dict(summary.errors)
    assert sorted(errors) == sorted(str(music / name) for name in refused), errors
    assert all(errors[str(music / name)].startswith("cut short: the file holds 4.0 s of the 10.0 s its header declares")
               for name in refused), errors  # fmt: skip
    edited = sorted(str(music / f"edited-{kind}.mp3") for kind in ("id3v1", "apev2", "both"))
    assert track_instruments(db) == {path: ["bass"] for path in edited}
    with db.session() as s:
        notes = dict(s.execute(select(M.Track.path, M.Track.analysed_in_part)).all())
    assert all(notes[path].startswith("its header declares 10.0 s, the file holds 4.0 s and ends on a whole frame followed by an ")
               for path in edited), notes  # fmt: skip
    for path in edited:
        assert abs(len(audio.load(path)) / 16_000 - 4.0) < 0.1


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("after", ["id3v1", "apev2", "none"])
def test_a_cbr_mp3_cut_inside_a_frame_is_analysed_as_what_it_holds_with_a_note(tmp_path, db, after):
    """A CBR MP3 without a Xing/Info header, cut inside a frame (a download that stopped) and then
    tagged by a tool appending an ID3v1 (or APEv2) tag: libsndfile decoded the tag as the rest of the
    cut frame and failed (``decoding failed: Unspecified internal error``). It is given the bytes
    before the tag now, and the file is analysed as what it holds, the same samples as without the
    tag, with a note that it is cut; so is one cut without a tag after it (was: silently, as whole).
    A whole file, tagged the same, has no note."""
    from mutagen.apev2 import APEv2
    from sqlalchemy import select

    from tagger.db import models as M

    music = tmp_path / "music"
    music.mkdir()
    data = _mp3(tmp_path / "whole.mp3", tone_signal([BASS], seconds=10.0, sr=44_100), 44_100, "-b:a", "128k",
                "-write_xing", "0")  # fmt: skip
    assert b"Xing" not in data and b"Info" not in data
    frames = _frame_starts(data)
    k = len(frames) * 4 // 10
    cut = data[: frames[k] + 200]  # (200 bytes into a frame of 417 or 418)

    def tagged(name: str, body: bytes) -> None:
        path = music / name
        path.write_bytes(body + (ID3V1 if after == "id3v1" else b""))
        if after == "apev2":
            tag = APEv2()
            tag["Title"] = "a cut of the original"
            tag.save(path)

    tagged("cut.mp3", cut)
    tagged("whole.mp3", data)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(music / "cut.mp3"): ["bass"], str(music / "whole.mp3"): ["bass"]}
    with db.session() as s:
        notes = dict(s.execute(select(M.Track.path, M.Track.analysed_in_part)).all())
    tag = {"id3v1": ", before an ID3v1 tag", "apev2": ", before an APEv2 tag", "none": ""}[after]
    assert notes == {str(music / "whole.mp3"): None,
                     str(music / "cut.mp3"): f"the file ends inside an MPEG frame (200 of its {frames[k + 1] - frames[k]} "
                                             f"bytes){tag}: cut short (a copy or download that stopped?), analysed as the "
                                             "4.0 s it holds; how much is missing is not known (no header declares its "
                                             "length)"}  # fmt: skip
    (tmp_path / "bare.mp3").write_bytes(cut)
    decoded = [np.concatenate(list(audio.stream(path, notes=[]))) for path in (music / "cut.mp3", tmp_path / "bare.mp3")]
    assert np.array_equal(*decoded) and abs(len(decoded[0]) / 16_000 - 4.0) < 0.05
    with pytest.raises(AudioReadError, match=r"cut short: the file ends inside an MPEG frame \(200 of its"):
        audio.load(music / "cut.mp3")  # (a caller that takes no notes)


def _lyrics3v1(text: bytes) -> bytes:
    """A Lyrics3 v1 tag (no size: its text between LYRICSBEGIN and LYRICSEND), which its writers put
    right before an ID3v1 tag."""
    return b"LYRICSBEGIN" + text + b"LYRICSEND" + ID3V1


def _lyrics3v2(lyrics: bytes) -> bytes:
    """A Lyrics3 v2 tag (its size written before LYRICS200) of `lyrics` (at most 99,999 bytes)."""
    body = b"LYRICSBEGIN" + b"IND00002" + b"10" + b"LYR%05d" % len(lyrics) + lyrics
    return body + b"%06d" % len(body) + b"LYRICS200"


def _musicmatch(image: bytes, *, header: bool) -> bytes:
    """A MusicMatch tag (MusicMatch Jukebox before 4.0, as id3lib's musicmatch.txt describes it):
    an optional 256-byte header, the image's extension, size and bytes, 4 unused bytes, a 256-byte
    version block, 7,868 bytes of metadata padded with dashes, 20 bytes of offsets, the footer.
    The offsets are the file's, here as if the tag began at offset 1,000,000."""
    block = (b"18273645" + bytes(2) + b"3.00" + bytes(6) + b"3.00").ljust(256, b" ")
    image_part = b"jpg " + len(image).to_bytes(4, "little") + image + bytes(4)
    at = 1_000_000 + (256 if header else 0)
    offsets = [at, at + 4, at + 8 + len(image), at + len(image_part), at + len(image_part) + 256]
    return ((block if header else b"") + image_part + block + b"title".ljust(7868, b"-")
            + b"".join(o.to_bytes(4, "little") for o in offsets) + b"Brava Software Inc." + b" " * 13 + b"3.00"
            + b" " * 12)  # fmt: skip


def _id3v24_with_footer() -> bytes:
    """An ID3v2.4 tag with its footer ("3DI"), as a tool appending one at a file's end writes it."""
    from mutagen.id3 import ID3, TIT2

    tag = ID3()
    tag.add(TIT2(encoding=3, text="a title"))
    with io.BytesIO() as out:
        tag.save(out, v2_version=4, padding=lambda info: 0)
        head = bytearray(out.getvalue())
    head[5] |= 0x10  # (the footer flag)
    return bytes(head) + b"3DI" + bytes(head[3:10])


MP3_TAILS = {"2,000 zero bytes": bytes(2000), "100,000 zero bytes": bytes(100_000),
             "zero bytes, then an ID3v1 tag": bytes(4096) + ID3V1,
             "a Lyrics3 v1 tag": _lyrics3v1(b"[00:01.00]la la la\r\n" * 200),
             "a Lyrics3 v2 tag of 5 KB": _lyrics3v2(b"la " * 1663 + b"l"),
             "an ID3v2.4 tag with its footer": _id3v24_with_footer(),
             "a MusicMatch tag and an ID3v1 tag": _musicmatch(bytes(range(256)) * 20, header=True) + ID3V1,
             "a MusicMatch tag without header nor image": _musicmatch(b"", header=False)}  # fmt: skip


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("tail", list(MP3_TAILS))
@pytest.mark.parametrize("mode", [["-b:a", "128k"], ["-q:a", "4"]], ids=["cbr", "vbr"])
def test_a_whole_mp3_followed_by_zero_padding_or_a_lyrics3_v1_tag_is_analysed_whole(tmp_path, db, mode, tail):
    """A whole MP3 without a Xing/Info header whose frames are followed by zero bytes (a downloader
    or ripper's padding) or by a Lyrics3 v1 tag (Winamp's lyrics plugins, old rippers), or a
    MusicMatch tag (MusicMatch Jukebox before 4.0; since ea40495 bytes of no tag known): libsndfile
    (a CBR file) decoded them as frames and failed, ``decoding failed: Unspecified internal error``,
    from about 2,000 zero bytes on, and ffmpeg (a VBR file) said ``corrupt audio: ffmpeg could not
    decode 1 of its frames``: the whole track refused. The decoders are given its frames' bytes
    alone now (the zeros found from the frames' end, not guessed: a frame's own last bytes may be
    zero): the same samples as the file without them, and no note. A file cut inside a frame before
    such padding still says so, and one with a Xing header, cut on a frame's edge and padded, is
    still refused as cut short."""
    music = tmp_path / "music"
    music.mkdir()
    data = _mp3(tmp_path / "plain.mp3", tone_signal([BASS], seconds=6.0, sr=44_100), 44_100, *mode,
                "-write_xing", "0")  # fmt: skip
    assert b"Xing" not in data and b"Info" not in data
    path = music / "tail.mp3"
    path.write_bytes(data + MP3_TAILS[tail])
    assert audio.info(path).decoder == ("soundfile" if mode[0] == "-b:a" else "ffmpeg")
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == []
    np.testing.assert_array_equal(got, audio.load(tmp_path / "plain.mp3"))
    cuts = mode[0] == "-b:a" and tail == "2,000 zero bytes"  # (the cut files: once)
    if cuts:  # (a download that stopped inside a frame, its file preallocated with zeros)
        frames = _frame_starts(data)
        k = len(frames) // 2
        (music / "stopped.mp3").write_bytes(data[: frames[k] + 200] + bytes(5000))
        xing = _mp3(tmp_path / "xing.mp3", tone_signal([BASS], seconds=10.0, sr=44_100), 44_100, *mode)
        assert b"Xing" in xing or b"Info" in xing
        edge = _frame_starts(xing)[len(_frame_starts(xing)) * 4 // 10]  # (a frame's first byte)
        (music / "edge.mp3").write_bytes(xing[:edge] + bytes(5000))
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert track_instruments(db)[str(path)] == ["bass"]
    if not cuts:
        assert summary.failed == 0, summary.errors
        return
    errors = dict(summary.errors)
    assert sorted(errors) == [str(music / "edge.mp3")], errors
    assert errors[str(music / "edge.mp3")].startswith("cut short: the file holds 4.0 s of the 10.0 s its header declares")
    own = tmp_path / "own.mp3"  # (a last frame whose own last bytes are zero, an ID3v1 tag after it: whole)
    own.write_bytes(data[:-10] + bytes(10) + ID3V1)
    said: list[str] = []
    assert abs(len(np.concatenate(list(audio.stream(own, notes=said)))) / 16_000 - 6.0) < 0.05 and said == []
    stopped = np.concatenate(list(audio.stream(music / "stopped.mp3", notes=said)))
    assert abs(len(stopped) / 16_000 - 3.0) < 0.05
    assert said == [f"the file ends inside an MPEG frame (200 of its {frames[k + 1] - frames[k]} bytes), before zero "
                    "padding: cut short (a copy or download that stopped?), analysed as the 3.0 s it holds; how much "
                    "is missing is not known (no header declares its length)"]  # fmt: skip

@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("tail", ["100 zero bytes, then an ID3v1 tag", "3,000 zero bytes"])
@pytest.mark.parametrize("mode", [(44_100, "-b:a", "128k", "-ac", "2"), (44_100, "-q:a", "4"), (8_000, "-b:a", "16k")],
                         ids=["cbr", "vbr", "mpeg-2.5"])  # fmt: skip
def test_a_whole_mp3_whose_last_frame_ends_in_zero_ancillary_bytes_then_padding_is_whole(tmp_path, mode, tail):
    """An encoder may write a last frame's bytes after its audio (its ancillary data: LAME writes 0x55
    and 0xAA there) as zero bytes; followed by zero padding, 5b3c1f8 took the zeros for a download
    that stopped inside that frame: a whole CBR file noted 'cut short (a copy or download that
    stopped?)', its last frame left out, and a VBR one (ffmpeg given the frame without its zeros)
    refused, 'ffmpeg could not decode 1 of its frames' (found building a zero-filled last frame, as
    the review of 5b3c1f8 asked). Where the zeros begin is read from its side info: where its main
    data ends (a silent frame's: its side info's last bit length; MPEG-2.5 at 8 kHz, zeros from
    inside its side info)."""
    from tagger.audio.mp3frames import _mp3_frame, _mp3_frames_at

    sr, *args = mode
    y = tone_signal([BASS, FREQ["flute"]], seconds=3.0, sr=sr, silence=1.0)  # (a silent last frame: no audio bytes)
    plain = tmp_path / "plain.mp3"
    data = bytearray(_mp3(plain, y, sr, *args, "-write_xing", "0"))
    pos = _mp3_frames_at(bytes(data[:8192]))[0]
    while pos + _mp3_frame(data, pos)[1] < len(data):
        pos += _mp3_frame(data, pos)[1]
    assert pos + _mp3_frame(data, pos)[1] == len(data)
    mpeg1, mono = data[pos + 1] >> 3 & 3 == 3, data[pos + 3] >> 6 == 3
    side = (17 if mono else 32) if mpeg1 else (9 if mono else 17)
    data[pos + 4 + side :] = bytes(len(data) - pos - 4 - side)  # (its ancillary bytes zero)
    zeroed = tmp_path / "zeroed.mp3"
    zeroed.write_bytes(bytes(data))
    expected = audio.load(zeroed)
    np.testing.assert_array_equal(expected, audio.load(plain))  # (no audio in those bytes)
    path = tmp_path / "tail.mp3"
    path.write_bytes(bytes(data) + (bytes(100) + ID3V1 if tail.endswith("tag") else bytes(3000)))
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == []
    np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("tag", ["an APEv2 tag", "an ID3v1 tag of genre 0", "an ID3v2.4 tag of 256 bytes"])
@pytest.mark.parametrize("mode", [("-b:a", "128k"), ("-q:a", "4")], ids=["cbr", "vbr"])
def test_a_whole_mp3_with_a_tag_ending_in_zero_bytes_then_padding_is_whole(tmp_path, mode, tag):
    """A tag whose own last bytes are zero (an APEv2 footer's 8 reserved bytes, always; an ID3v1 tag
    of genre 0, Blues, without a comment; an ID3v2.4 tag appended with its footer, its size a
    multiple of 128), followed by zero padding: 5b3c1f8 looked for a tag ending
    where the zeros begin, found none, and took the tag for bytes after the frames: a VBR file
    without a length header (ffmpeg given the tag and the zeros) was refused, 'corrupt audio: ffmpeg
    could not decode 1 of its frames' (found putting zero padding after each tag, as the review of
    5b3c1f8 asked). A tag that ends inside the zeros is found now: the same samples, no note."""
    from mutagen.apev2 import APEv2

    data = _mp3(tmp_path / "plain.mp3", tone_signal([BASS], seconds=6.0, sr=44_100), 44_100, *mode,
                "-write_xing", "0")  # fmt: skip
    path = tmp_path / "tagged.mp3"
    if tag == "an APEv2 tag":
        path.write_bytes(data)
        ape = APEv2()
        ape["Title"] = "a title"
        ape.save(path)
        assert path.read_bytes().endswith(bytes(8))  # (its footer's reserved bytes)
    elif tag == "an ID3v1 tag of genre 0":
        path.write_bytes(data + b"TAG" + b"a title".ljust(30, b"\0") + bytes(94) + b"\0")  # (genre 0)
    else:
        from mutagen.id3 import ID3, TIT2

        id3 = ID3()
        id3.add(TIT2(encoding=3, text="a title"))
        with io.BytesIO() as out:
            id3.save(out, v2_version=4, padding=lambda info: 0)
            frames = len(out.getvalue()) - 10
        with io.BytesIO() as out:
            id3.save(out, v2_version=4, padding=lambda info: 256 - frames)
            head = bytearray(out.getvalue())
        assert len(head) == 266 and head[6:10] == bytes([0, 0, 2, 0])  # (its size, syncsafe: 256)
        head[5] |= 0x10  # (the footer flag)
        path.write_bytes(data + bytes(head) + b"3DI" + bytes(head[3:10]))
    path.write_bytes(path.read_bytes() + bytes(500))
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == []
    np.testing.assert_array_equal(got, audio.load(tmp_path / "plain.mp3"))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("mode", [(44_100, "-b:a", "128k"), (44_100, "-q:a", "4", "-write_xing", "0"),
                                  (22_050, "-q:a", "6", "-write_xing", "0")], ids=["cbr", "vbr", "mpeg-2-vbr"])  # fmt: skip
def test_a_whole_mp3_encoded_without_a_bit_reservoir_then_zero_padding_is_whole(tmp_path, mode):
    """LAME without its bit reservoir (``lame --nores``, ffmpeg's ``-reservoir 0``) writes after each
    frame's audio "LAME3.100", bit-aligned, then zero bytes: followed by zero padding, 61862dc's
    side info read took the zeros, 9 bytes past the frame's audio, for a download that stopped
    inside it: a CBR file with a Xing header had its last frame left out without a word, and a
    VBR one without a length header was refused, 'ffmpeg could not decode 1 of its frames' (found
    by the review of 61862dc over a corpus of 168 encodings). Those bytes are LAME's ancillary
    data, no audio."""
    sr, *args = mode
    y = tone_signal([BASS, FREQ["flute"]], seconds=3.0, sr=sr)
    plain = tmp_path / "plain.mp3"
    data = _mp3(plain, y, sr, *args, "-reservoir", "0")
    expected = audio.load(plain)
    path = tmp_path / "padded.mp3"
    path.write_bytes(data + bytes(100))
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == []
    np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("mode", [(48_000, "128k", 2, 0.0), (22_050, "64k", 1, 1.0), (16_000, "32k", 1, 0.0)],
                         ids=["stereo", "mpeg-2-silent-end", "mpeg-2-mono"])  # fmt: skip
def test_a_whole_mp2_whose_last_frame_ends_in_zero_bits_then_padding_is_whole(tmp_path, mode):
    """An MP2 encoder (ffmpeg's, twolame) fills a layer II frame's bits after its audio with zeros;
    followed by zero padding, 5b3c1f8 took the zeros, which begin inside that frame, for a download
    that stopped there: a whole MP2 noted 'the file ends inside an MPEG frame (382 of its 384
    bytes), before zero padding: cut short (a copy or download that stopped?)' and its last frame
    left out (61862dc read where a layer III frame's audio ends, not a layer II one's; found by the
    review of 61862dc over ffmpeg's and twolame's MP2s). Where its audio ends is read from its bit
    allocation and scale factor selection (`_mp2_bits`)."""
    sr, rate, channels, silence = mode
    y = tone_signal([55.0, 880.0], seconds=3.0, sr=sr, silence=silence)  # (each last frame ends in zero bytes)
    src, plain = tmp_path / "src.wav", tmp_path / "plain.mp2"
    sf.write(str(src), np.stack([y] * channels, axis=1) if channels > 1 else y, sr)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "mp2", "-b:a", rate, "-f", "mp2",
                    str(plain)], check=True)  # fmt: skip
    expected = audio.load(plain)
    path = tmp_path / "padded.mp2"
    path.write_bytes(plain.read_bytes() + bytes(100))
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == []
    np.testing.assert_array_equal(got, expected)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_vbr_mp3_without_a_length_header_cut_inside_a_frame_is_noted(tmp_path):
    """A VBR MP3 without a Xing/Info header (ffmpeg's ``-write_xing 0``, ``lame -t``), which ffmpeg
    decodes, cut inside a frame of its middle (a download that stopped), was analysed as the half it
    holds without a word: `_check_mp3_cut`, which notes a CBR file so cut, was given the file's end
    only where libsndfile decoded it (found cutting the review of 5b3c1f8..9045dc6's corpus at random
    bytes). The same note now, whichever decoder."""
    data = _mp3(tmp_path / "whole.mp3", tone_signal([BASS, FREQ["flute"]], seconds=6.0, sr=44_100), 44_100,
                "-q:a", "4", "-write_xing", "0")  # fmt: skip
    assert b"Xing" not in data and b"Info" not in data
    frames = _frame_starts(data)
    k = len(frames) // 2
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[: frames[k] + 40])
    assert audio.info(path).decoder == "ffmpeg"
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == [f"the file ends inside an MPEG frame (40 of its {frames[k + 1] - frames[k]} bytes): cut short "
                     f"(a copy or download that stopped?), analysed as the {len(got) / 16_000:.1f} s it holds; how much "
                     "is missing is not known (no header declares its length)"]  # fmt: skip
    assert abs(len(got) / 16_000 - 3.0) < 0.1


def _ogg_pages(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, length, granule position) of each whole page of an Ogg file's bytes."""
    pages, pos = [], 0
    while pos + 27 <= len(data) and data[pos : pos + 4] == b"OggS":
        table = data[pos + 27 : pos + 27 + data[pos + 26]]
        length = 27 + len(table) + sum(table)
        if pos + length > len(data):
            break
        pages.append((pos, length, int.from_bytes(data[pos + 6 : pos + 14], "little", signed=True)))
        pos += length
    return pages


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("codec, ext", [("libvorbis", "ogg"), ("libopus", "opus")])
def test_an_ogg_cut_short_is_analysed_with_a_note_or_is_an_error_that_says_so(tmp_path, db, codec, ext):
    """A Vorbis or Opus file cut short (inside a page, or missing its last pages: a copy or download
    that stopped) was analysed as far as it goes, as if whole, without a word (libsndfile takes its
    length from the last granule position there). A stream must end on a whole end-of-stream page:
    where the file ends inside that page, its header's granule position tells what is missing and
    `MAX_LOST_SHARE`'s rule applies (an Opus's last 6 ms: a note; a Vorbis's last 0.8 s: an error);
    where it ends earlier inside a page, how much is missing is not known: analysed as what it holds
    with a note saying so, as an MP3 whose last frame is cut (one that ends on a whole page, which a
    stream recording stopped there does too: `test_an_ogg_that_ends_on_a_whole_page_...`). Whole
    files are analysed as before, chained ones and ones with a cover in their comment header included."""
    import base64

    from mutagen import File
    from mutagen.flac import Picture
    from sqlalchemy import select

    from tagger.db import models as M

    music = tmp_path / "music"
    music.mkdir()

    def encode(name: str, freq: float, seconds: float) -> bytes:
        src = tmp_path / "src.wav"
        sf.write(src, tone_signal([freq], seconds=seconds, sr=48_000), 48_000)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-c:a", codec, tmp_path / name], check=True)
        return (tmp_path / name).read_bytes()

    data, second = encode(f"whole.{ext}", BASS, 10.0), encode(f"second.{ext}", FLUTE, 4.0)
    pages = _ogg_pages(data)
    assert data[pages[-1][0] + 5] & 0x04 and not data[pages[-2][0] + 5] & 0x04  # (its end-of-stream page, the last)
    last, before = pages[-1], pages[-2]
    middle = pages[len(pages) // 2]
    whole = {"whole": data, "chained": data + second, "cover": data}
    cut = {"inside-a-page": data[: middle[0] + middle[1] // 2],  # (cut inside a page: its last pages missing)
           "in-its-header": data[: last[0] + 20],  # (the last page's header cut: its granule position unknown)
           "inside-the-last-page": data[: last[0] + last[1] - 3],
           "inside-the-last-page-tagged": data[: last[0] + last[1] - 3] + ID3V1}  # fmt: skip
    for name, body in {**whole, **cut}.items():
        (music / f"{name}.{ext}").write_bytes(body)
    tagged = File(music / f"cover.{ext}")
    picture = Picture()
    picture.type, picture.mime, picture.data = 3, "image/png", bytes(range(256)) * 400  # (100 KB: several pages)
    tagged["METADATA_BLOCK_PICTURE"] = [base64.b64encode(picture.write()).decode()]
    tagged.save()
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    errors = {path.rsplit("/", 1)[1]: e for path, e in summary.errors}
    lost = (last[2] - before[2]) / 48_000  # (the audio of the last page: Vorbis 0.8 s, Opus 6.5 ms)
    unknown = "cut short (a copy or download that stopped?), analysed as the {:.1f} s it holds; how much is missing is not known"
    in_page = "inside an Ogg page (its last pages missing or cut)"
    import soundfile

    def held(name: str) -> float:
        return soundfile.info(str(music / f"{name}.{ext}")).duration

    partly = {f"inside-a-page.{ext}": f"the file ends {in_page}: " + unknown.format(held("inside-a-page")),
              f"in-its-header.{ext}": f"the file ends {in_page}: " + unknown.format(held("in-its-header"))}  # fmt: skip
    expected = {}
    note = None
    if ext == "ogg":
        assert lost > 0.1
        for name in ("inside-the-last-page", "inside-the-last-page-tagged"):
            expected[f"{name}.{ext}"] = (f"cut short: the file holds {10.0 - lost:.1f} s of the 10.0 s its last Ogg page "
                                         f"declares; nothing stored, as a result would leave {lost:.1f} s out")  # fmt: skip
    else:
        assert lost < 0.01
        note = f"the file ends inside its last Ogg page: analysed without the rest ({lost:.3f} s of 10.0 s left out)"
    assert errors == expected
    analysed = {str(music / f"{name}.{ext}") for name in whole}
    if note:
        analysed |= {str(music / f"inside-the-last-page.{ext}"), str(music / f"inside-the-last-page-tagged.{ext}")}
    analysed |= {str(music / name) for name in partly}
    assert track_instruments(db) == {path: ["bass"] if "chained" not in path else ["bass", "flute"] for path in analysed}
    with db.session() as s:
        notes = dict(s.execute(select(M.Track.path, M.Track.analysed_in_part)).all())
    wanted = {path: partly.get(path.rsplit("/", 1)[1], note if "inside-the-last" in path else None) for path in analysed}
    assert {path: notes[path] for path in analysed} == wanted


@pytest.mark.parametrize("tool", ["oggenc", "opusenc", "libsndfile-vorbis", "libsndfile-opus"])
def test_whole_ogg_files_of_other_encoders_are_not_taken_for_cut_ones(tmp_path, tool):
    """The end-of-stream page that a cut Ogg lacks is written by every encoder: oggenc and opusenc
    (where installed), libsndfile's Vorbis and Opus."""
    y = tone_signal([BASS], seconds=6.0, sr=48_000)
    src = tmp_path / "src.wav"
    sf.write(src, y, 48_000)
    path = tmp_path / ("song.opus" if "opus" in tool else "song.ogg")
    if tool.startswith("libsndfile"):
        sf.write(path, y, 48_000, format="OGG", subtype="OPUS" if "opus" in tool else "VORBIS")
    elif shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed")
    else:
        args = ["-Q", "-o", path, src] if tool == "oggenc" else ["--quiet", src, path]
        subprocess.run([tool, *args], check=True)
    notes: list[str] = []
    assert abs(len(np.concatenate(list(audio.stream(path, notes=notes)))) / 16_000 - 6.0) < 0.01
    assert notes == []


def _with_vbri(data: bytes, kbps_index: int) -> bytes:
    """An MP3 written by LAME with its Xing header (`data`) as a Fraunhofer encoder writes it: its
    first frame, of bit rate `kbps_index` (of MPEG-1 layer III's table), holds a VBRI header (32
    bytes after the frame header) declaring the file's bytes and its frames."""
    import struct

    starts = _frame_starts(data)
    first, rest = starts[0], data[starts[1] :]
    header = (int.from_bytes(data[first : first + 4], "big") & ~(0xF << 12) & ~(1 << 9)) | kbps_index << 12
    length = 144_000 * (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320)[kbps_index] // 44_100
    frame = bytearray(length)
    frame[:4] = header.to_bytes(4, "big")
    frame[36:62] = b"VBRI" + struct.pack(">HHHII", 1, 1105, 75, length + len(rest), len(starts) - 1) + struct.pack(
        ">HHHH", 0, 1, 2, 1)  # fmt: skip
    return data[:first] + bytes(frame) + rest


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("kbps_index", [1, 14], ids=["32-kbps-first-frame", "320-kbps-first-frame"])
def test_an_mp3_with_a_vbri_header_is_analysed_whole_and_one_cut_short_is_an_error(tmp_path, db, kbps_index,
                                                                                   monkeypatch):  # fmt: skip
    """libsndfile does not read a VBRI header (Fraunhofer's encoders): it took a VBR file's length
    from its first frame's bit rate, and a whole 10 s file was refused as cut short (the header's
    frame at 32 kbps: 14.1 s declared), or stored as the whole track from its first 1.4 s (at 320
    kbps: libsndfile stops at the length it declares). ffmpeg decodes such a file now, against the
    length the VBRI header declares: whole, it is analysed whole; cut short, it is an error."""
    music = tmp_path / "music"
    music.mkdir()
    y = tone_signal([BASS], seconds=10.0, sr=44_100)
    y[: 3 * 44_100] += np.random.default_rng(1).standard_normal(3 * 44_100).astype(np.float32) * 0.3  # (VBR: 3 s of noise)
    data = _with_vbri(_mp3(tmp_path / "lame.mp3", y, 44_100, "-q:a", "4", "-write_xing", "1"), kbps_index)
    (music / "whole.mp3").write_bytes(data)
    (music / "half.mp3").write_bytes(data[: len(data) // 2])
    meta = audio.info(music / "whole.mp3")
    assert (meta.decoder, round(meta.duration, 2)) == ("ffmpeg", 10.03)
    assert abs(len(audio.load(music / "whole.mp3")) / 16_000 - 10.03) < 0.01
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert [e for _, e in summary.errors] == [summary.errors[0][1]] and summary.errors[0][0] == str(music / "half.mp3")
    assert summary.errors[0][1].startswith("cut short: the file holds ") and "of the 10.0 s its header declares" in summary.errors[0][1]
    assert track_instruments(db) == {str(music / "whole.mp3"): ["bass"]}
    from tagger.audio import probe

    monkeypatch.setattr(probe.shutil, "which", lambda name: None)  # (without ffmpeg: the machine's error)
    with pytest.raises(AudioReadError, match=r"an MP3 with a VBRI header .*ffmpeg, which reads it, is not installed"):
        audio.info(music / "whole.mp3")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("skip", [312, 3840, 4000, 60000])
def test_an_opus_whose_pre_skip_drops_its_start_is_analysed_with_a_note_or_is_an_error(tmp_path, skip):
    """The decoders drop an Opus stream's pre-skip from its start: encoders write 312 (libopus's
    lookahead) to 3840 (80 ms); a damaged or wrongly written header's 60000 had 1.25 s of a 10 s file
    dropped without a word (analysed as 8.76 s). Beyond 3840, what is dropped (from 312) comes under
    the 1% rule: 4000 drops 0.077 s (a note), 60000 1.2 s (an error)."""
    import io

    from mutagen.ogg import OggPage

    path = tmp_path / "song.opus"
    sf.write(tmp_path / "src.wav", tone_signal([BASS], seconds=10.0, sr=48_000), 48_000)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", tmp_path / "src.wav", "-c:a", "libopus", path], check=True)
    data = path.read_bytes()
    first = OggPage(io.BytesIO(data))
    assert first.packets[0][:8] == b"OpusHead" and int.from_bytes(first.packets[0][10:12], "little") == 312
    first.packets[0] = first.packets[0][:10] + skip.to_bytes(2, "little") + first.packets[0][12:]
    path.write_bytes(first.write() + data[first.size :])  # (its checksum written anew)
    notes: list[str] = []
    lost = (skip - 312) / 48_000
    if skip <= 3840:
        assert abs(len(np.concatenate(list(audio.stream(path, notes=notes)))) / 16_000 - (10.0 - lost)) < 0.002
        assert notes == []
    elif skip == 4000:
        assert abs(len(np.concatenate(list(audio.stream(path, notes=notes)))) / 16_000 - (10.0 - lost)) < 0.002
        assert notes == ["its Opus header's pre-skip (4000 samples, where encoders write 312 to 3840) has its first "
                         "0.077 s dropped: analysed without them (0.077 s of 10.0 s left out)"]  # fmt: skip
    else:
        with pytest.raises(AudioReadError, match=r"its Opus header's pre-skip \(60000 samples, where encoders write 312 "
                                                 r"to 3840\) has the decoders drop its first 1\.2 s"):  # fmt: skip
            audio.load(path)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_refusal_of_frames_ffmpeg_could_not_decode_says_a_loss_above_none(tmp_path):
    """A caller that takes no notes refuses any loss: an M4A less its last 50 bytes (ffmpeg cannot
    decode its last frame) was refused as leaving '0.0 s of 20.0 s out', which reads as no loss.
    The figures get the decimals that show it (losses._seconds_of): '0.03 s of 20.02 s'."""
    src, whole = tmp_path / "src.wav", tmp_path / "whole.m4a"
    sf.write(src, tone_signal([BASS], seconds=20.0, sr=48_000), 48_000)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-c:a", "aac", "-movflags", "+faststart", whole],
                   check=True)  # fmt: skip
    cut = tmp_path / "cut.m4a"
    cut.write_bytes(whole.read_bytes()[:-50])
    with pytest.raises(AudioReadError, match=r"ffmpeg could not decode 1 of its frames \(.*\); nothing stored, as a "
                                             r"result would leave 0\.0[1-9] s of 20\.\d\d s out$"):  # fmt: skip
        audio.load(cut)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("ext, codec", [("m4a", ["-c:a", "aac", "-movflags", "+faststart"]), ("webm", ["-c:a", "libopus"])])
def test_an_m4a_or_webm_cut_short_comes_under_the_one_percent_rule_as_a_flac_does(tmp_path, ext, codec):
    """ffmpeg reads an M4A whose mdat is cut (or a WebM whose last cluster is) to the cut and says
    so (``partial file``, ``File ended prematurely``): such a file was an error however little was
    missing, where a FLAC cut short by as little is analysed with a note. What is missing from the
    length the file declares comes under the same 1% rule now, and the note or error says how much."""
    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([BASS], seconds=20.0, sr=48_000), 48_000)
    whole = tmp_path / f"whole.{ext}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, *codec, whole], check=True)
    data = whole.read_bytes()
    tail, half = tmp_path / f"tail.{ext}", tmp_path / f"half.{ext}"
    tail.write_bytes(data[:-1000])
    half.write_bytes(data[: len(data) // 2])
    notes: list[str] = []
    assert len(np.concatenate(list(audio.stream(whole, notes=notes)))) / 16_000 > 19.99 and notes == []
    decoded = len(np.concatenate(list(audio.stream(tail, notes=notes)))) / 16_000
    assert len(notes) == 1 and notes[0].startswith("ffmpeg could not read all of the file ("), notes
    lost = float(notes[0].split("analysed without the rest (")[1].split(" s of 20.0 s left out)")[0])
    assert 0.0 < lost < 0.2 and abs(decoded + lost - 20.0) < 0.03
    with pytest.raises(AudioReadError, match=r"ffmpeg could not read all of the file \(.*\); nothing stored, as a "
                                             r"result would leave (9|10)\.\d s of 20\.0 s out"):  # fmt: skip
        list(audio.stream(half, notes=[]))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("codec, ext", [("libvorbis", "ogg"), ("libopus", "opus")])
def test_an_ogg_damaged_in_the_middle_is_not_taken_for_one_cut_short(tmp_path, codec, ext):
    """The page walk that finds a cut Ogg stopped at the first bytes that are not a page: a file with
    3000 bytes zeroed across a page header in its middle (the decoders go on past them) was refused
    as `cut short ... its last pages missing`. The walk goes on at the next page of a right checksum,
    and its end is whole. The page whose header the damage took is missing from the middle, a
    second or two of these 10 s (ffmpeg's Ogg pages hold a second each), which was analysed as whole:
    it is refused naming the missing pages (`_check_ogg_gaps`), not as cut short."""
    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([BASS], seconds=10.0, sr=48_000), 48_000)
    path = tmp_path / f"damaged.{ext}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-c:a", codec, path], check=True)
    data = bytearray(path.read_bytes())
    middle = _ogg_pages(bytes(data))[len(_ogg_pages(bytes(data))) // 2][0]
    data[middle - 10 : middle + 2990] = bytes(3000)
    path.write_bytes(bytes(data))
    with pytest.raises(AudioReadError, match=r"Ogg pages? (is|are) missing from its middle") as refused:
        list(audio.stream(path, notes=[]))
    assert "cut short" not in str(refused.value)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("codec, ext, seconds", [("libvorbis", "ogg", 10.0), ("libopus", "opus", 10.0),
                                                 ("flac", "oga", 60.0)])  # fmt: skip
def test_pages_missing_from_the_middle_of_an_ogg_are_noted_or_refused(tmp_path, codec, ext, seconds):
    """An Ogg file missing pages from its middle (a download that lost a range, a bad copy) was
    decoded past the gap by libsndfile and ffmpeg and analysed as whole, without a word: a 10 s
    Opus file of 1 s pages missing 4 of them gave 6 s, a Vorbis file 7.7 s, each stored as the
    track. The page numbers of a stream tell the gap; the granule positions around it at most how
    much it held, which comes under the rule of a cut file (`MAX_LOST_SHARE`): one page of 20 ms
    missing is a note, a third of the file an error naming the file and the reason. FLAC in Ogg
    (ffmpeg) too, whose frames of 96 ms need a longer file for one page to be under 1%."""
    import re

    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([BASS, 3 * BASS], seconds=seconds, sr=48_000), 48_000)
    whole = tmp_path / f"whole.{ext}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-c:a", codec, "-page_duration", "20000", whole],
                   check=True)  # fmt: skip
    data = whole.read_bytes()
    pages = _ogg_pages(data)
    assert len(pages) > 40

    def without(name: str, first: int, count: int):
        path = tmp_path / f"{name}.{ext}"
        path.write_bytes(data[: pages[first][0]] + data[pages[first + count][0] :])
        return path

    notes: list[str] = []
    list(audio.stream(whole, notes=notes))
    assert notes == []
    few = without("few", len(pages) // 2, 1)
    list(audio.stream(few, notes=notes))
    assert len(notes) == 1 and re.fullmatch(
        r"1 Ogg page is missing from its middle \(a download that lost a range, a bad copy\?\): analysed without them "
        rf"\(0\.\d+ s of {seconds:.1f} s left out\)", notes[0]), notes  # fmt: skip
    with pytest.raises(AudioReadError) as refused:
        list(audio.stream(few))  # (a caller that takes no notes)
    assert "1 Ogg page is missing from its middle" in str(refused.value)
    many = without("many", len(pages) // 3, len(pages) // 3)
    with pytest.raises(AudioReadError) as refused:
        list(audio.stream(many, notes=notes))
    assert str(refused.value).startswith(f"{many}: {len(pages) // 3} Ogg pages are missing from its middle (a "
                                         "download that lost a range, a bad copy): ")  # fmt: skip
    assert str(refused.value).endswith(f" s of its {seconds:.1f} s; nothing stored, as a result would leave them out")


def _ogg_crc_bit_by_bit(page: bytes) -> bytes:
    """The checksum field of an Ogg page as the specification computes it, a bit at a time (CRC-32,
    polynomial 0x04C11DB7, not reflected, over the page with the field zeroed; stored little-endian)."""
    crc = 0
    for byte in page[:22] + bytes(4) + page[26:]:
        crc ^= byte << 24
        for _ in range(8):
            crc = ((crc << 1) ^ 0x04C11DB7) & 0xFFFFFFFF if crc & 0x80000000 else (crc << 1) & 0xFFFFFFFF
    return crc.to_bytes(4, "little")


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_one_ogg_page_checksum_serves_the_probe_and_the_tags(tmp_path):
    """The probe's cut-Ogg check (since a107f46) had an Ogg checksum of its own, a byte at a time in
    Python (about 20 ms for a page of 64 KiB, its page search trying one a candidate), beside the
    zlib one of the Ogg tag storage; both now call `tagger.hashing.ogg_page_intact`, which holds
    every page of an ffmpeg Ogg and no page with one byte changed."""
    from tagger import hashing
    from tagger.audio import ogg
    from tagger.tags.storage import ogg as ogg_storage

    assert ogg.ogg_page_intact is hashing.ogg_page_intact and ogg_storage.ogg_page_intact is hashing.ogg_page_intact
    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([BASS], seconds=3.0, sr=48_000), 48_000)
    path = tmp_path / "tone.ogg"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-c:a", "libvorbis", path], check=True)
    data = path.read_bytes()
    pages = _ogg_pages(data)
    assert len(pages) > 3
    for pos, length, _granule in pages:
        page = data[pos : pos + length]
        assert page[22:26] == _ogg_crc_bit_by_bit(page) and hashing.ogg_page_intact(page)
        for at in (5, 22, length - 1):
            changed = bytearray(page)
            changed[at] ^= 0x10
            assert not hashing.ogg_page_intact(bytes(changed))
    assert not hashing.ogg_page_intact(data[:26])


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_one_id3v2_length_and_one_ogg_page_walk_serve_the_probe_and_the_tags(tmp_path):
    """The probe and the tag storage each had their own ID3v2 tag length and their own walk over an
    Ogg file's page headers (the reviewer's leftover); both read `tagger.containers` now: a tag's
    length counts its footer where the flag gives one and is 0 for fewer than 10 bytes; the walk
    gives every page, stops before junk and after a segment table cut short."""
    import io

    from tagger import containers
    from tagger.tags.storage import _bytes

    tag = b"ID3\x04\x00\x00\x00\x00\x01\x00"  # (128 bytes of frames)
    assert containers.id3v2_length(tag) == 138 and containers.id3v2_length(tag[:5] + b"\x10" + tag[6:]) == 148
    assert containers.id3v2_length(tag[:9]) == 0 and containers.id3v2_length(b"TAG" + tag[3:]) == 0
    assert _bytes._id3v2_end(io.BytesIO(tag + bytes(128) + tag + bytes(128) + b"\xff\xfb"), 0) == 276
    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([BASS], seconds=3.0, sr=48_000), 48_000)
    path = tmp_path / "tone.ogg"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-c:a", "libvorbis", path], check=True)
    data = path.read_bytes()
    pages = [(p.offset, p.length, p.granule) for p in containers.ogg_page_heads(io.BytesIO(data + b"junk" * 10))]
    assert pages == _ogg_pages(data) and len(pages) > 3
    last = list(containers.ogg_page_heads(io.BytesIO(data[: pages[-1][0] + 28])))[-1]
    assert last.offset == pages[-1][0] and not last.whole


_ID3V1 = b"TAG" + b"title".ljust(30, b"\0") + bytes(95)
_APEV2 = ((4).to_bytes(4, "little") + bytes(4) + b"a\0abcd"  # (one item, "a" = "abcd", then the tag's footer)
          + b"APETAGEX" + (2000).to_bytes(4, "little") + (14 + 32).to_bytes(4, "little") + (1).to_bytes(4, "little")
          + bytes(12))  # fmt: skip


@pytest.mark.parametrize("tail", [b"", _ID3V1, _APEV2 + _ID3V1], ids=["no tag after it", "ID3v1", "APEv2 and ID3v1"])
def test_a_flac_damaged_in_its_middle_is_not_said_to_be_cut_short(tmp_path, tail):
    """A FLAC with 20 KB zeroed in its middle (its length and end intact): libsndfile fails there,
    ffmpeg decodes on past the damage without a word, and what is missing (2 s of 20) was refused as
    `cut short: the file holds 18.0 s of the 20.0 s its header declares`, untrue. A file whose last
    frame is whole and ends on the last sample its header declares lost frames in its middle: the
    error says so, also where a tagger appended an ID3v1 or APEv2 tag after its last frame (they were
    taken for its end, and the file said cut short). A file cut short between two frames still says
    `cut short`."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("needs ffmpeg")
    path = tmp_path / "damaged.flac"
    sf.write(path, np.repeat(tone_signal([BASS], seconds=20.0, sr=44_100)[:, None], 2, axis=1), 44_100)
    data = bytearray(path.read_bytes())
    data[len(data) // 3 : len(data) // 3 + 20_000] = bytes(20_000)
    path.write_bytes(bytes(data) + tail)
    with pytest.raises(AudioReadError, match=r"corrupt audio: frames in its middle could not be decoded \(damaged; the "
                                             r"file holds 1\d\.\d s of the 20\.0 s its header declares, its end "
                                             r"whole\); nothing stored"):  # fmt: skip
        list(audio.stream(path, notes=[]))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("codec, ext", [("libvorbis", "ogg"), ("libopus", "opus"), ("flac", "oga")])
def test_an_ogg_recorded_from_a_live_stream_is_whole_and_a_page_lost_after_its_start_still_counts(tmp_path, codec, ext):
    """A recording of an Ogg stream joined while it played (an internet radio: its Icecast server
    sends a listener the stream's header pages, then the pages of the moment as they are, numbered
    on from thousands, their granule positions counting the hour it has played) was refused since
    8e0fc50 as `5000 Ogg pages are missing from its middle ...: up to 3601.0 s of its 10.0 s`, as
    was a file whose header pages a tool rewrote into fewer without numbering the rest again; both
    were analysed whole before, and are: the numbers that skip between a stream's header pages and
    its first audio page are where it begins, not pages missing from its middle. Where that page's
    granule position is beyond its packets' samples, the file begins that far into its stream
    (which was said of none: a file that lost its first pages passed as whole, without a word): a
    note says so, never an error, the pages telling no loss from a recording joined late or a file
    cut from a longer stream (oggz-chop: numbered on, its granule positions kept). A page lost after
    its start is still noted."""
    import struct
    import zlib

    swap = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))

    def renumbered(page: bytes, sequence: int, granule_shift: int) -> bytes:
        page = bytearray(page)
        granule = struct.unpack("<q", page[6:14])[0]
        page[6:14] = struct.pack("<q", granule + granule_shift if granule != -1 else -1)
        page[18:22] = struct.pack("<I", sequence)
        data = bytes(page[:22]) + bytes(4) + bytes(page[26:])
        page[22:26] = struct.pack(">I", (~zlib.crc32(data.translate(swap), -1)) & 0xFFFFFFFF).translate(swap)
        return bytes(page)

    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([BASS], seconds=10.0, sr=48_000), 48_000)
    whole = tmp_path / f"whole.{ext}"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-c:a", codec, whole], check=True)
    data = whole.read_bytes()
    pages = [data[pos : pos + length] for pos, length, _granule in _ogg_pages(data)]
    heads = next(i for i, (_pos, _length, granule) in enumerate(_ogg_pages(data)) if granule != 0)
    assert 0 < heads < len(pages) - 4
    live = tmp_path / f"live.{ext}"
    live.write_bytes(b"".join(pages[:heads] + [renumbered(p, 5000 + i, 3600 * 48_000) for i, p in enumerate(pages[heads:])]))
    retagged = tmp_path / f"retagged.{ext}"
    retagged.write_bytes(b"".join(pages[:heads] + [renumbered(p, heads + 1 + i, 0) for i, p in enumerate(pages[heads:])]))
    chopped = tmp_path / f"chopped.{ext}"  # (as oggz-chop cuts a stream: numbered on, granule positions kept)
    chopped.write_bytes(b"".join(pages[:heads] + [renumbered(p, heads + i, 3600 * 48_000) for i, p in enumerate(pages[heads:])]))
    started = tmp_path / f"started.{ext}"  # (its first two pages of audio lost)
    started.write_bytes(b"".join(pages[:heads] + pages[heads + 2 :]))
    first_two = _ogg_pages(data)[heads + 1][2] / 48_000
    said = {live: f"it begins 3600.0 s into its Ogg stream, {5000 - heads} page numbers skipped after its header pages "
                  "(a recording joined while the stream played, or its first pages lost): analysed from there",
            retagged: None,
            chopped: "it begins 3600.0 s into its Ogg stream (cut from a longer stream, or a recording joined while it "
                     "played): analysed from there",
            started: f"it begins {first_two:.1f} s into its Ogg stream, 2 page numbers skipped after its header pages "
                     "(a recording joined while the stream played, or its first pages lost): analysed from there"}
    for path, note in said.items():
        notes: list[str] = []
        decoded = len(np.concatenate(list(audio.stream(path, notes=notes)))) / 16_000
        assert notes == ([note] if note else []), (path.name, notes)
        assert abs(decoded - (10.0 if path != started else 10.0 - first_two)) < 0.1, (path.name, decoded)
        list(audio.stream(path))  # (never an error: the file may be whole)
    lost = tmp_path / f"lost.{ext}"
    middle = heads + (len(pages) - heads) // 2
    lost.write_bytes(b"".join(pages[:heads] + [renumbered(p, 5000 + i, 3600 * 48_000) for i, p in enumerate(pages[heads:])
                                               if heads + i != middle]))  # fmt: skip
    notes = []
    try:  # (refused: ffmpeg's pages hold a second each; FLAC's length is read from 0, the hour counted in: a note)
        list(audio.stream(lost, notes=notes))
        said = " ".join(notes)
    except AudioReadError as exc:
        said = str(exc)
    assert "1 Ogg page is missing from its middle" in said


def _ogg_encode(tmp_path, name: str, codec: str, seconds: float, *args: str):
    """A tone of `seconds` at 48 kHz encoded by ffmpeg with `codec` (its default pages: a second each)."""
    src = tmp_path / f"{name}.wav"
    sf.write(src, tone_signal([BASS, 3 * BASS], seconds=seconds, sr=48_000), 48_000)
    path = tmp_path / name
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-c:a", codec, *args, path], check=True)
    return path


def _ogg_said(path) -> list[str]:
    """What the Ogg checks say of the file at `path` (their notes; an error's text as a last note)."""
    from tagger.audio.ogg import _check_ogg_end

    notes: list[str] = []
    try:
        _check_ogg_end(path, audio.info(path), notes)
    except AudioReadError as exc:
        notes.append(f"error: {exc}")
    return notes


_OGG_CODECS = [("libvorbis", "ogg"), ("libopus", "opus"), ("flac", "oga"), ("libspeex", "spx")]


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("codec, ext", _OGG_CODECS)
def test_an_ogg_page_lost_from_a_long_track_counts_its_audio_not_the_page_after_it(tmp_path, codec, ext):
    """What pages missing from an Ogg held was counted as the span of granule positions from the
    page before them to the page after them, that page's own audio counted in: one 1 s page of
    ffmpeg's lost from a 150 s track (0.7%) was refused as up to 2 s (1.3%). The page after the gap
    keeps its packets: their samples (Opus's TOC byte, FLAC's frame header, Vorbis' modes, Speex's
    header) come off, and the loss is the missing page's own granule span, under 1%: a note."""
    from tagger.audio.ogg import _ogg_walk

    whole = _ogg_encode(tmp_path, f"whole.{ext}", codec, 150.0)
    data = whole.read_bytes()
    pages = _ogg_pages(data)
    k = len(pages) // 2
    rate = next(iter(_ogg_walk(whole).streams.values())).rate
    lost = (pages[k][2] - pages[k - 1][2]) / rate
    assert 0.9 < lost < 1.2 and not data[pages[k + 1][0] + 5] & 0x01  # (the page after begins a packet)
    gap = tmp_path / f"gap.{ext}"
    gap.write_bytes(data[: pages[k][0]] + data[pages[k + 1][0] :])
    assert _ogg_said(whole) == []
    duration = audio.info(gap).duration
    assert _ogg_said(gap) == [f"1 Ogg page is missing from its middle (a download that lost a range, a bad copy?): "
                              f"analysed without them ({lost:.3f} s of {duration:.1f} s left out)"]  # fmt: skip


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_packet_begun_on_a_lost_ogg_page_counts_as_lost(tmp_path):
    """Pages that split packets (each Opus packet of ffmpeg's 20 ms pages put on pages of some 500 bytes
    by mutagen in pieces of 255 bytes, granule positions from the packets' own pages): a page lost from the middle takes
    the packets it holds a piece of, the one it ends on the next page included, and no more."""
    import io

    from mutagen.ogg import OggPage

    whole = _ogg_encode(tmp_path, "whole.opus", "libopus", 10.0, "-b:a", "256k", "-page_duration", "20000")
    f, pages = io.BytesIO(whole.read_bytes()), []
    while f.tell() < len(f.getvalue()):
        pages.append(OggPage(f))
    heads = [p for p in pages if p.position == 0]
    audio_pages = pages[len(heads) :]
    assert all(len(p.packets) == 1 and p.complete for p in audio_pages)
    ends = [p.position for p in audio_pages]  # (where each packet ends, in samples)
    split = OggPage.from_packets([p.packets[0] for p in audio_pages], len(heads), 300, 0)
    done, finished = 0, []
    for page in split:
        page.serial = heads[0].serial
        done += len(page.packets) - (not page.complete)
        page.position = ends[done - 1] if len(page.packets) - (not page.complete) else -1
        finished.append(done)
    split[-1].last = True
    assert sum(p.continued for p in split) > len(split) // 3
    k = next(i for i in range(len(split) // 2, len(split)) if split[i + 1].continued and split[i].position != -1)
    gap = tmp_path / "gap.opus"
    gap.write_bytes(b"".join(p.write() for p in heads + split[:k] + split[k + 1 :]))
    lost = (ends[finished[k]] - ends[finished[k - 1] - 1]) / 48_000  # (through the packet it ends on the next page)
    assert 0.02 <= lost < 0.1
    duration = audio.info(gap).duration
    assert _ogg_said(gap) == [f"1 Ogg page is missing from its middle (a download that lost a range, a bad copy?): "
                              f"analysed without them ({lost:.3f} s of {duration:.1f} s left out)"]  # fmt: skip


_WHOLE_OGGS = [("ffmpeg", "libvorbis", "ogg", ()), ("ffmpeg", "libopus", "opus", ()),
               ("ffmpeg", "libopus", "opus", ("-frame_duration", "2.5")),
               ("ffmpeg", "libopus", "opus", ("-frame_duration", "60", "-application", "voip")),
               ("ffmpeg", "flac", "oga", ()), ("ffmpeg", "flac", "oga", ("-frame_size", "1000")),
               ("ffmpeg", "flac", "oga", ("-frame_size", "200")), ("ffmpeg", "flac", "oga", ("-frame_size", "192")),
               ("ffmpeg", "libspeex", "spx", ("-frames_per_packet", "4")), ("ffmpeg", "libvorbis", "ogg", ("-ar", "8000")),
               ("oggenc", "vorbis", "ogg", ()), ("opusenc", "opus", "opus", ()),
               ("soundfile", "VORBIS", "ogg", ()), ("soundfile", "OPUS", "opus", ())]  # fmt: skip


@pytest.mark.parametrize("tool, codec, ext, args", _WHOLE_OGGS)
def test_the_packets_of_each_ogg_page_add_up_to_its_granule_position(tmp_path, tool, codec, ext, args):
    """The samples `_follow_packets` counts on each page of audio (Opus's TOC byte, FLAC's block
    size codes, Vorbis' modes read from its setup header backwards, Speex's frames) are the span of
    its granule position from the page before, for every encoder at hand, but where a granule
    position trims: the last page's (end trimming) and Speex's first (its encoder's delay). The
    whole files are neither noted nor refused, chained, with a cover that takes pages in their
    comment header (mutagen renumbers the pages after it) or multiplexed with a second stream."""
    import base64
    import io

    from mutagen import File
    from mutagen.flac import Picture

    from tagger.audio import ogg
    from tagger.containers import ogg_page_heads

    if shutil.which("ffmpeg" if tool == "soundfile" else tool) is None:
        pytest.skip(f"needs {tool}")
    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([BASS, 3 * BASS], seconds=3.0, sr=48_000), 48_000)
    path = tmp_path / f"whole.{ext}"
    if tool == "ffmpeg":
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-c:a", codec, *args, path], check=True)
    elif tool == "soundfile":
        sf.write(path, tone_signal([BASS], seconds=3.0, sr=48_000), 48_000, format="OGG", subtype=codec)
    else:
        subprocess.run([tool, "--quiet", src, *(["-o", path] if tool == "oggenc" else [path])], check=True)
    data = path.read_bytes()
    streams: dict[int, tuple[ogg._OggStream, int]] = {}
    counted = 0
    for page in ogg_page_heads(io.BytesIO(data)):
        body = data[page.offset : page.end]
        if page.first:
            head = body[page.header : page.header + 80]
            streams[page.serial] = (ogg._OggStream(*ogg._ogg_codec(head), heads=ogg._ogg_heads(ogg._ogg_codec(head)[0], head),
                                                   header=head), 0)  # fmt: skip
        stream, before = streams[page.serial]
        had, stream.kept = stream.audio, 0
        ogg._follow_packets(stream, body)
        if page.granule == -1 or not stream.audio:
            continue
        if not page.last and not (stream.codec == "speex" and not had):
            assert stream.kept == page.granule - before, (page.sequence, stream.kept, page.granule - before)
            counted += 1
        streams[page.serial] = (stream, page.granule)
    assert counted >= 1 and all(s.codec for s, _ in streams.values())
    assert _ogg_said(path) == []
    other = tmp_path / f"other.{ext}"
    other.write_bytes(data)
    (tmp_path / f"chained.{ext}").write_bytes(data + other.read_bytes())
    assert _ogg_said(tmp_path / f"chained.{ext}") == []
    tagged = File(other)
    picture = Picture()
    picture.type, picture.mime, picture.data = 3, "image/png", bytes(range(256)) * 400  # (100 KB: several pages)
    tagged["METADATA_BLOCK_PICTURE"] = [base64.b64encode(picture.write()).decode()]
    tagged.save()
    walk = ogg._ogg_walk(other)
    assert walk.gaps.pages == 0 and walk.gaps.late == [] and _ogg_said(other) == []


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_multiplexed_ogg_is_whole_and_a_page_lost_from_one_stream_counts(tmp_path):
    """An Ogg of a Vorbis and an Opus stream side by side (ffmpeg -map twice) is neither noted nor
    refused; a page lost from one of them counts that stream's audio only (its granule span)."""
    src = tmp_path / "src.wav"
    sf.write(src, tone_signal([BASS], seconds=150.0, sr=48_000), 48_000)
    mixed = tmp_path / "mixed.ogg"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", src, "-i", src, "-map", "0:a", "-map", "1:a", "-c:a:0",
                    "libvorbis", "-c:a:1", "libopus", mixed], check=True)  # fmt: skip
    assert _ogg_said(mixed) == []
    data = mixed.read_bytes()
    pages = _ogg_pages(data)
    serial = lambda i: data[pages[i][0] + 14 : pages[i][0] + 18]  # noqa: E731
    opus = serial(1)
    k = next(i for i in range(len(pages) // 2, len(pages)) if serial(i) == opus)
    before = max(i for i in range(k) if serial(i) == opus)
    lost = (pages[k][2] - pages[before][2]) / 48_000
    gap = tmp_path / "gap.ogg"
    gap.write_bytes(data[: pages[k][0]] + data[pages[k + 1][0] :])
    said = _ogg_said(gap)
    assert len(said) == 1 and f"({lost:.3f} s of " in said[0] and said[0].startswith("1 Ogg page is missing"), said


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("codec, ext", [("libvorbis", "ogg"), ("libopus", "opus"), ("flac", "oga")])
def test_an_ogg_that_ends_on_a_whole_page_without_its_end_flag_is_not_taken_for_a_cut_one(tmp_path, codec, ext):
    """A stream recording stopped at a page's end (its last page whole, of a right checksum, without
    the end-of-stream flag: a radio capture that was stopped, ffmpeg's pages up to a point) was
    analysed with the note `the file ends on an Ogg page that does not end its stream (its last
    pages missing): cut short ...` and refused for a caller that takes no notes, though nothing in
    it is missing. Ending on a whole page is no evidence of a cut: analysed without a word. A file
    that ends inside a page is still cut short, also where a tag appended after the cut makes the
    page look whole (its checksum fails)."""
    import io

    from mutagen.ogg import OggPage

    whole = _ogg_encode(tmp_path, f"whole.{ext}", codec, 10.0)
    f, pages = io.BytesIO(whole.read_bytes()), []
    while f.tell() < len(f.getvalue()):
        pages.append(OggPage(f))
    assert pages[-1].last and not any(p.last for p in pages[:-1])
    unended = tmp_path / f"unended.{ext}"  # (stopped before its last page: no page of it ends the stream)
    unended.write_bytes(b"".join(p.write() for p in pages[:-1]))
    stopped = tmp_path / f"stopped.{ext}"
    stopped.write_bytes(b"".join(p.write() for p in pages[: len(pages) // 2]))
    for path in (unended, stopped):
        assert _ogg_said(path) == [], path.name
        list(audio.stream(path))  # (a caller that takes no notes)
    data = b"".join(p.write() for p in pages[: len(pages) // 2 + 1])
    tagged = tmp_path / f"tagged.{ext}"
    tagged.write_bytes(data[:-50] + ID3V1)  # (cut 50 bytes before its page's end, then an ID3v1 tag)
    held = audio.info(tagged).duration
    assert _ogg_said(tagged) == [f"the file ends inside an Ogg page (its last pages missing or cut): cut short (a copy "
                                 f"or download that stopped?), analysed as the {held:.1f} s it holds; how much is "
                                 "missing is not known"]  # fmt: skip


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
@pytest.mark.parametrize("mode", [["-b:a", "128k"], ["-q:a", "4"]], ids=["cbr", "vbr"])
def test_bytes_after_an_mp3s_frames_that_are_no_frames_nor_a_tag_come_under_the_one_percent_rule(tmp_path, mode):
    """A whole MP3 without a Xing/Info header followed by bytes that are neither frames nor a tag
    known (a download's garbage, a MusicMatch tag, a tool's leftovers): libsndfile decoded them as
    frames and failed from a few KiB on, ``decoding failed: Unspecified internal error``, and ffmpeg
    said ``corrupt audio: ffmpeg could not decode 1 of its frames``: the whole track refused. They
    are found by following its frames from the first (no two frames in a row after them) and left
    out of what the decoders are given; as whether they held audio is not known, they count as the
    most they could hold at its first frame's bit rate: a note where that is at most 1% of the
    length, else an error saying so."""
    data = _mp3(tmp_path / "plain.mp3", tone_signal([BASS], seconds=30.0, sr=44_100), 44_100, *mode,
                "-write_xing", "0")  # fmt: skip
    assert b"Xing" not in data and b"Info" not in data
    plain = audio.load(tmp_path / "plain.mp3")
    junk = np.random.default_rng(7).integers(0, 256, 20_000, dtype=np.uint8).tobytes().replace(b"\xff", b"\xfe")
    small, large = tmp_path / "small.mp3", tmp_path / "large.mp3"
    small.write_bytes(data + junk[:2000] + ID3V1)
    large.write_bytes(data + junk)
    notes: list[str] = []
    np.testing.assert_array_equal(np.concatenate(list(audio.stream(small, notes=notes))), plain)
    assert len(notes) == 1 and notes[0].startswith(
        "2000 bytes after its last whole MPEG frame are neither MPEG frames nor a tag known (damage, or what a "
        "download or a tool left?): analysed as the 30.0 s of its frames before them (they hold at most 0."), notes
    with pytest.raises(AudioReadError, match=r"20000 bytes after its last whole MPEG frame are neither MPEG frames "
                                             r"nor a tag known .*; nothing stored, as they could hold"):  # fmt: skip
        list(audio.stream(large, notes=[]))
