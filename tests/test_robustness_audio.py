"""Unusual audio content: float files of NaN, infinite or absurdly large samples, files that decode
only in part, files too short for their rate. Each is analysed right or is one clear error naming
the file; nothing non-finite reaches the database or the tags, and no file stops the scan."""

from __future__ import annotations

import math
import os
import random
import shutil
import subprocess

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

from conftest import tone_signal, track_instruments, track_rows, write_audio
from library_fakes import FREQ, FakeAnalyser
from tagger.db import models as M
from tagger.library.scan import scan

BASS = FREQ["bass"]
FLOAT_FORMATS = [("wav", "WAV"), ("aiff", "AIFF"), ("caf", "CAF")]


def stored_scores(db) -> list[float]:
    with db.session() as s:
        return list(s.scalars(select(M.Detection.score)))


@pytest.mark.parametrize("subtype", ["FLOAT", "DOUBLE"])
def test_float_files_of_huge_samples_are_analysed_as_their_shape(tmp_path, db, subtype):
    """Samples of 1e30 (finite, but their power overflows float32): the features are relative to
    the window's maximum, so the file is the bass tone it is (was: NaN scores, and the scan stopped
    at its first detection with `NOT NULL constraint failed: detections.score`)."""
    music = tmp_path / "music"
    music.mkdir()
    loud = tone_signal([BASS], seconds=6.0).astype(np.float64) * 1e30
    for ext, fmt in FLOAT_FORMATS:
        sf.write(str(music / f"loud.{ext}"), loud, 16_000, subtype=subtype, format=fmt)
    sf.write(str(music / "plain.wav"), tone_signal([BASS], seconds=6.0), 16_000)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0 and summary.scanned == 4, summary.errors
    assert all(found == ["bass"] for found in track_instruments(db).values()), track_instruments(db)
    assert all(math.isfinite(s) for s in stored_scores(db))


class NaNForFlute(FakeAnalyser):
    """A model that goes wrong on one kind of input: NaN scores for the windows of a flute tone."""

    def predict_features(self, feats, batch_size=None):
        probs = super().predict_features(feats, batch_size)
        probs[probs[:, self.families.index("flute")] > 0.5] = np.nan
        return probs


def test_non_finite_model_scores_fail_their_file_and_the_scan_goes_on(tmp_path, db):
    music = tmp_path / "music"
    music.mkdir()
    for name, freq in (("a_bass.wav", BASS), ("b_flute.wav", FREQ["flute"]), ("c_bass.wav", BASS)):
        sf.write(str(music / name), tone_signal([freq], seconds=6.0), 16_000)
    summary = scan([music], db=db, analyser=NaNForFlute(), jobs=0)
    rows = track_rows(db)
    assert summary.scanned == 2 and summary.failed == 1
    status, reason = rows[str(music / "b_flute.wav")]
    assert status == "error" and reason.startswith("the model gave NaN or infinite scores"), reason
    assert dict(summary.errors)[str(music / "b_flute.wav")] == reason
    assert track_instruments(db) == {str(music / "a_bass.wav"): ["bass"], str(music / "c_bass.wav"): ["bass"]}
    assert all(math.isfinite(s) for s in stored_scores(db))


def test_predict_names_the_file_whose_scores_are_not_finite(tmp_path):
    from tagger.errors import AudioReadError
    from tagger.library.assemble import analyse_track

    path = tmp_path / "flute.wav"
    sf.write(str(path), tone_signal([FREQ["flute"]], seconds=6.0), 16_000)
    with pytest.raises(AudioReadError, match=r"flute\.wav: the model gave NaN or infinite scores"):
        analyse_track(path, NaNForFlute())


def test_files_mostly_of_nan_or_infinity_are_errors_and_a_few_such_samples_are_silence(tmp_path, db):
    """Up to 1% of NaN/inf samples are a float file's glitches, analysed as silence; a file of more
    is no audio (was: analysed as silence, `no instrument`, a wrong answer)."""
    music = tmp_path / "music"
    music.mkdir()
    tone = tone_signal([BASS], seconds=6.0).astype(np.float64)
    files = {}
    for ext, fmt in FLOAT_FORMATS:
        for subtype in ("FLOAT", "DOUBLE"):
            nan = np.full_like(tone, np.nan)
            files[f"nan_{subtype}.{ext}"] = (nan, subtype, fmt)
    half = tone.copy()
    half[: len(half) // 2] = np.inf
    files["half_inf.wav"] = (half, "FLOAT", "WAV")
    files["beyond_float32.wav"] = (tone * 1e300, "DOUBLE", "WAV")  # (read as float32: inf)
    glitches = tone.copy()
    glitches[::997], glitches[5::1999], glitches[7::2999] = np.nan, np.inf, -np.inf
    files["glitches.caf"] = (glitches, "FLOAT", "CAF")
    for name, (y, subtype, fmt) in files.items():
        sf.write(str(music / name), y, 16_000, subtype=subtype, format=fmt)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    rows = track_rows(db)
    assert summary.scanned == 1 and summary.failed == len(files) - 1, summary.errors
    assert rows[str(music / "glitches.caf")] == ("ok", None)
    assert track_instruments(db) == {str(music / "glitches.caf"): ["bass"]}
    for name in files:
        if name != "glitches.caf":
            status, reason = rows[str(music / name)]
            share = "50.0%" if name == "half_inf.wav" else "100.0%"
            assert status == "error" and reason.startswith(f"{share} of its samples are NaN or infinite: not analysed"), (name, reason)
    assert all(math.isfinite(s) for s in stored_scores(db))


def test_samples_too_large_to_resample_are_an_error_not_nan(tmp_path, db):
    path = tmp_path / "huge.wav"
    sf.write(str(path), tone_signal([BASS], seconds=6.0, sr=44_100) / 0.3 * np.float32(3e38), 44_100, subtype="FLOAT")
    summary = scan([path], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 1
    status, reason = track_rows(db)[str(path)]
    assert status == "error" and "of its samples are too large to resample" in reason, reason



def test_one_sample_at_44_khz_is_too_short_not_empty(tmp_path, db):
    """It resamples to no sample at 16 kHz (was: `the file holds no audio samples`, untrue)."""
    path = tmp_path / "one.wav"
    sf.write(str(path), np.full(1, 0.5, dtype=np.float32), 44_100)
    scan([path], db=db, analyser=FakeAnalyser(), jobs=0)
    assert track_rows(db)[str(path)] == ("error", "too short to analyse: 0.000 s of audio (at least 0.1 s needed)")


needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")


@needs_ffmpeg
def test_an_m4a_with_corrupt_frames_in_the_middle_is_an_error_that_says_so(tmp_path, db):
    """ffmpeg skips the frames it cannot decode and exits 0: the scan analysed what was left and
    stored it as the whole track, saying nothing (was: `ok`, 16.6 s of a 20 s file)."""
    music = tmp_path / "music"
    good = write_audio(music / "good.m4a", tone_signal([BASS], seconds=20.0))
    data = bytearray(good.read_bytes())
    rng = random.Random(1)
    for i in range(len(data) // 3, len(data) // 2):
        data[i] = rng.randrange(256)
    (music / "corrupt.m4a").write_bytes(bytes(data))
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    rows = track_rows(db)
    assert rows[str(good)] == ("ok", None) and summary.scanned == 1 and summary.failed == 1
    status, reason = rows[str(music / "corrupt.m4a")]
    assert status == "error" and reason.startswith("corrupt audio: ffmpeg could not decode "), reason
    assert "frames" in reason and "aac" in reason and "nothing stored" in reason and str(music) not in reason
    assert track_instruments(db) == {str(good): ["bass"]}


def m4a_with_one_damaged_frame(folder):
    """``good.m4a`` (20 s of a bass tone) and ``damaged.m4a``, the same with 40 bytes in its middle
    made random: one AAC frame (23 ms) ffmpeg cannot decode, which a scan leaves out and says so."""
    good = write_audio(folder / "good.m4a", tone_signal([BASS], seconds=20.0))
    data = bytearray(good.read_bytes())
    rng = random.Random(2)
    for i in range(len(data) // 2, len(data) // 2 + 40):
        data[i] = rng.randrange(256)
    damaged = folder / "damaged.m4a"
    damaged.write_bytes(bytes(data))
    return good, damaged


@needs_ffmpeg
def test_an_m4a_with_one_damaged_frame_is_analysed_without_it_and_says_so(tmp_path, db):
    """One damaged AAC frame (23 ms of 20 s), which players skip: the rest is analysed and stored,
    the scan names the file and what was left out (was: an error, the track never tagged, while the
    same damage in an MP3 is decoded past without a word); the rule of more damage above stands."""
    music = tmp_path / "music"
    good, damaged = m4a_with_one_damaged_frame(music)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert track_rows(db)[str(damaged)] == ("ok", None) and summary.failed == 0 and summary.ok
    assert track_instruments(db) == {str(good): ["bass"], str(damaged): ["bass"]}
    [(path, note)] = summary.analysed_in_part
    assert path == str(damaged) and note.startswith("ffmpeg could not decode 1 of its frames (aac: "), note
    assert "analysed without them" in note and "of 20.0 s left out" in note
    assert summary.to_dict()["analysed_in_part"] == [{"path": str(damaged), "note": note}]


@needs_ffmpeg
def test_damaged_frames_of_a_file_of_unknown_length_are_refused_not_left_out(tmp_path):
    """The 1% rule needs the file's length: where it is unknown, how much the damaged frames hide is
    too, so such a file is an error saying so (the rule's note is never made from the unknown length)."""
    from dataclasses import replace

    from tagger import audio
    from tagger.audio import decoders
    from tagger.errors import AudioReadError

    _good, damaged = m4a_with_one_damaged_frame(tmp_path)
    meta = replace(audio.info(damaged), duration=None)
    notes: list[str] = []
    with pytest.raises(AudioReadError, match=r"could not decode 1 of its frames .*would leave them out"):
        for _ in decoders._ffmpeg_blocks(damaged, meta, 16_000, notes):
            pass
    assert notes == []


@needs_ffmpeg
def test_a_flac_of_unknown_length_is_analysed(tmp_path, db):
    """A FLAC written by a streaming encoder (to a pipe: a live recording, a captured stream) declares
    0 samples ("unknown") in its STREAMINFO; libsndfile cannot read it (was: `decoding failed:
    Internal psf_fseek() failed.`), ffmpeg can. One of no audio at all says so."""
    src = tmp_path / "src.wav"
    sf.write(str(src), tone_signal([BASS], seconds=6.0), 16_000)
    streamed = tmp_path / "streamed.flac"
    with open(streamed, "wb") as out:
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-f", "flac", "-"], stdout=out, check=True)
    empty = tmp_path / "empty.flac"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "anullsrc=r=44100:cl=stereo", "-t", "0",
                    str(empty)], check=True)  # fmt: skip
    summary = scan([streamed, empty], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and summary.failed == 1
    assert track_instruments(db) == {str(streamed): ["bass"]}
    assert track_rows(db)[str(empty)] == ("error", "the file holds no audio samples")
    with db.session() as s:
        assert abs(s.scalar(select(M.Track.duration).where(M.Track.path == str(streamed))) - 6.0) < 0.01


def test_a_file_of_many_channels_is_decoded_in_blocks_of_bounded_size(tmp_path):
    """A block held 30 s of every channel: 30 s of a 1024-channel WAV at 384 kHz (which libsndfile
    reads) is 47 GB of float32. Blocks are now bounded in samples, whatever the channel count."""
    import tracemalloc

    from tagger import audio

    rate, channels = 48_000, 64
    path = tmp_path / "many.wav"
    one = (tone_signal([BASS], seconds=2.0, sr=rate) * 32767).astype("<i2")
    sf.write(str(path), np.repeat(one[:, None], channels, axis=1), rate, subtype="PCM_16")
    second = rate * channels * 4  # one second of the file as float32: 12.3 MB
    tracemalloc.start()
    try:
        y = np.concatenate(list(audio.stream(path, block_seconds=1.0)))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert abs(len(y) - 2 * 16_000) <= 2 and np.abs(y).max() > 0.25
    assert peak < second / 2, f"peak {peak / 1e6:.1f} MB"  # at most 1 s of 2 channels at 192 kHz a block: 1.5 MB


@needs_ffmpeg
def test_a_webm_cut_short_is_an_error_that_says_so(tmp_path, db):
    """ffmpeg decodes what is there and exits 0 (was: `ok`, shorter, saying nothing)."""
    good = write_audio(tmp_path / "good.opus", tone_signal([BASS], seconds=20.0))
    webm = tmp_path / "cut.webm"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(good), "-c", "copy", str(webm)], check=True)
    webm.write_bytes(webm.read_bytes()[: webm.stat().st_size // 2])
    scan([webm], db=db, analyser=FakeAnalyser(), jobs=0)
    status, reason = track_rows(db)[str(webm)]
    assert status == "error" and reason.startswith("ffmpeg could not read all of the file (matroska,webm: "), reason
    assert "nothing stored" in reason and str(tmp_path) not in reason and " @ 0x" not in reason


@needs_ffmpeg
def test_video_streams_and_cover_art_are_never_taken_for_audio(tmp_path, db):
    """Found right, kept right: a cover picture stream (MP3, FLAC, M4A) or a video stream (MP4,
    WebM) beside the audio is ignored, and a video without audio is `no audio stream`."""
    music = tmp_path / "music"
    music.mkdir()
    src = tmp_path / "bass.wav"
    sf.write(str(src), tone_signal([BASS], seconds=6.0), 16_000)
    cover = tmp_path / "cover.png"
    ff = ["ffmpeg", "-nostdin", "-v", "error", "-y"]
    subprocess.run([*ff, "-f", "lavfi", "-i", "testsrc=s=64x64:d=1", "-frames:v", "1", str(cover)], check=True)
    for ext, codec in (("mp3", []), ("flac", []), ("m4a", ["-c:a", "aac"])):
        subprocess.run([*ff, "-i", str(cover), "-i", str(src), "-map", "0:v", "-map", "1:a", *codec, "-c:v", "png",
                        "-disposition:v", "attached_pic", str(music / f"art.{ext}")], check=True)  # fmt: skip
    video = ["-f", "lavfi", "-i", "testsrc=s=64x64:d=6"]
    subprocess.run([*ff, *video, "-i", str(src), "-c:v", "mpeg4", "-c:a", "aac", str(music / "clip.mp4")], check=True)
    subprocess.run([*ff, *video, "-i", str(src), "-c:v", "libvpx", "-c:a", "libopus", str(music / "clip.webm")], check=True)
    subprocess.run([*ff, *video, "-c:v", "mpeg4", str(music / "silent_film.mp4")], check=True)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 5 and summary.failed == 1
    assert track_rows(db)[str(music / "silent_film.mp4")] == ("error", "no audio stream in this file")
    found = track_instruments(db)
    assert found == {str(music / n): ["bass"] for n in ("art.mp3", "art.flac", "art.m4a", "clip.mp4", "clip.webm")}
    with db.session() as s:
        for path, duration in s.execute(select(M.Track.path, M.Track.duration).where(M.Track.status == "ok")):
            assert abs(duration - 6.0) < 0.1, (path, duration)


ENDLESS_FFPROBE = """#!/bin/sh
echo '{"streams": [{"codec_type": "audio", "codec_name": "aac", "sample_rate": "16000", "channels": 1%s}], "format": {"format_name": "mov"}}'
"""
ENDLESS_FFMPEG = """#!/bin/sh
exec cat /dev/zero
"""
GROWING_FFMPEG = """#!/bin/sh
while [ "$1" != "-i" ]; do shift; done
while true; do head -c 65536 /dev/zero; printf x >> "$2"; done
"""


def _fake_decoder(tmp_path, monkeypatch, ffmpeg: str, declared: float | None):
    """An M4A-named file that ffprobe (a script) declares `declared` seconds long (None: no length)
    and ffmpeg (the script `ffmpeg`) decodes."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    extra = "" if declared is None else f', "duration": "{declared}"'
    for name, text in (("ffprobe", ENDLESS_FFPROBE % extra), ("ffmpeg", ffmpeg)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o700)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    path = tmp_path / "music" / "endless.m4a"
    path.parent.mkdir()
    path.write_bytes(b"\0\0\0\x20ftypM4A " + bytes(2000))  # not for libsndfile or mutagen: ffprobe describes it
    return path


@pytest.mark.parametrize("declared", [4.0, None])
def test_a_decoder_that_never_ends_is_stopped_and_says_why(tmp_path, monkeypatch, declared):
    """A decoder whose output never ends (a FIFO or a device swapped in after the file was checked,
    a demuxer that loops): every block was progress, so the file timeout never fired and the scan
    never ended. Decoding now stops after `MAX_SECONDS` of audio (24 h; twice the declared length
    plus a minute where that is more) with an error that says so."""
    from tagger import audio
    from tagger.audio import decoders
    from tagger.errors import AudioReadError

    path = _fake_decoder(tmp_path, monkeypatch, ENDLESS_FFMPEG, declared)
    monkeypatch.setattr(decoders, "MAX_SECONDS", 90.0)  # (24 h of zeros take minutes to decode)
    got = 0
    with pytest.raises(AudioReadError) as err:
        for block in audio.stream(path):
            got += len(block)
            assert got < 200 * 16_000, "the decoder's output was taken without end"
    assert err.value.path == str(path) and err.value.reason == (
        f"the decoder gave more than 90 s of audio for a file that declares {'4.0 s' if declared else 'no length'} "
        "(a FIFO or a device swapped in, or a demuxer that loops): not analysed"), err.value.reason


def test_a_file_that_grows_while_it_is_decoded_is_stopped_at_once(tmp_path, monkeypatch, db):
    """A file still being written (a recording, a download) that ffmpeg decodes as it grows: its
    decoding went on as long as the file grew. It stops at the first block after the file grew,
    and the scan records the file as changed (the next scan analyses it again)."""
    from tagger import audio
    from tagger.errors import AudioReadError

    path = _fake_decoder(tmp_path, monkeypatch, GROWING_FFMPEG, 4.0)
    size, got = path.stat().st_size, 0
    with pytest.raises(AudioReadError) as err:
        for block in audio.stream(path):
            got += len(block)
            assert got < 200 * 16_000, "the decoder's output was taken as long as the file grew"
    assert err.value.reason.startswith(f"the file changed while it was being decoded (its size went from {size} to ")
    scan([path.parent], db=db, analyser=FakeAnalyser(), jobs=0)
    assert track_rows(db) == {str(path): ("error", "the file changed while it was being analysed; the next scan "
                                                   "analyses it again")}


@needs_ffmpeg
def test_a_flac_cut_short_is_analysed_as_far_as_it_goes_or_is_an_error_that_says_so(tmp_path, db):
    """A FLAC whose header declares more samples than it holds (a download or a copy cut short):
    libsndfile stopped at the cut with `decoding failed: Internal psf_fseek() failed.` or `flac
    decoder lost sync`, whatever was lost. ffmpeg now decodes what is there, and the rule for damaged
    frames applies: up to 1% of the length lost is a note and the rest is analysed; more is an error."""
    music = tmp_path / "music"
    whole = write_audio(music / "whole.flac", tone_signal([BASS], seconds=60.0))
    data = whole.read_bytes()
    nearly, half = music / "nearly.flac", music / "half.flac"
    nearly.write_bytes(data[: len(data) - 300])
    half.write_bytes(data[: len(data) // 2])
    # Cut where a frame begins (its sync code), ffmpeg decodes what is left without a word.
    last, middle = music / "last_frame.flac", music / "frame_half.flac"
    last.write_bytes(data[: data.rfind(b"\xff\xf8")])
    middle.write_bytes(data[: data.rfind(b"\xff\xf8", 0, len(data) // 2)])
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    rows = track_rows(db)
    assert rows[str(whole)] == rows[str(nearly)] == rows[str(last)] == ("ok", None), rows
    assert track_instruments(db) == {str(whole): ["bass"], str(nearly): ["bass"], str(last): ["bass"]}
    notes = dict(summary.analysed_in_part)
    assert notes.pop(str(last)) == ("the file ends before the length its header declares: analysed without the rest "
                                    "(0.096 s of 60.0 s left out)")  # (its last frame: 1,536 samples)
    [(path, note)] = notes.items()
    assert path == str(nearly) and note.startswith("ffmpeg could not decode 1 of its frames (flac: ") and "of 60.0 s left out" in note, note
    with db.session() as s:
        duration = s.scalar(select(M.Track.duration).where(M.Track.path == str(nearly)))
    assert 59.4 < duration < 60.0, duration
    status, reason = rows[str(half)]
    assert status == "error" and reason.startswith("corrupt audio: ffmpeg could not decode 1 of its frames (flac: "), reason
    assert reason.endswith("of 60.0 s out") and "psf_fseek" not in reason and "lost sync" not in reason, reason
    assert rows[str(middle)] == ("error", "cut short: the file holds 30.0 s of the 60.0 s its header declares; nothing "
                                          "stored, as a result would leave 30.0 s out"), rows[str(middle)]


def test_a_file_with_one_channel_of_nan_is_an_error_naming_the_channel(tmp_path, db):
    """One channel of NaN or infinity (a float file's broken channel) made every downmixed sample
    NaN: `100.0% of its samples are NaN or infinite`, untrue of the good channels. It stays an
    error (the good channels alone could miss what is panned to the broken one: a wrong answer),
    now naming the channel."""
    music = tmp_path / "music"
    music.mkdir()
    tone = tone_signal([BASS], seconds=6.0)
    stereo = np.stack([tone, np.full_like(tone, np.nan)], axis=1)
    quad = np.stack([tone, tone, np.full_like(tone, np.inf), tone], axis=1)
    quad[::50, 1] = -np.inf  # (2% of channel 2 too)
    sf.write(str(music / "stereo.wav"), stereo, 16_000, subtype="FLOAT")
    sf.write(str(music / "quad.wav"), quad, 16_000, subtype="FLOAT")
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 2 and not summary.scanned
    assert track_rows(db) == {
        str(music / "stereo.wav"): ("error", "channel 2 of 2 is NaN or infinite (100.0% of its samples): not analysed, "
                                             "as the other channels alone could miss instruments (up to 1% of a "
                                             "file's samples are taken as silence)"),
        str(music / "quad.wav"): ("error", "channels 2 and 3 of 4 are NaN or infinite (2.0% and 100.0% of their "
                                           "samples): not analysed, as the other channels alone could miss instruments "
                                           "(up to 1% of a file's samples are taken as silence)"),
    }


@needs_ffmpeg
def test_a_vbr_mp3_without_a_length_header_is_analysed_to_its_end(tmp_path, db):
    """A VBR MP3 without a Xing/Info/VBRI header: libsndfile takes its length from the first frame's
    bit rate (here 160 kbps, then 32) and stops reading there, so the scan analysed its first 24 s
    of 120 as if whole (the flute after 30 s missing from the result: a wrong answer). Such a file
    is now decoded to its end by ffmpeg; one of constant bit rate stays with libsndfile."""
    from tagger import audio

    music = tmp_path / "music"
    music.mkdir()
    src = tmp_path / "src.wav"
    sf.write(str(src), np.concatenate([tone_signal([BASS], seconds=30.0), tone_signal([FREQ["flute"]], seconds=90.0)]), 16_000)
    vbr, cbr = music / "vbr.mp3", tmp_path / "cbr.mp3"
    for out, rate in ((vbr, ["-q:a", "9"]), (cbr, ["-b:a", "64k"])):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "libmp3lame", *rate,
                        "-write_xing", "0", str(out)], check=True)  # fmt: skip
    assert sf.info(str(vbr)).duration < 60  # (libsndfile's guess)
    assert audio.info(cbr).decoder == "soundfile"
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1, summary.errors
    assert track_instruments(db) == {str(vbr): ["bass", "flute"]}
    with db.session() as s:
        assert abs(s.scalar(select(M.Track.duration)) - 120.0) < 0.2
