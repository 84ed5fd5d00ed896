"""Files that are two files joined byte-wise (``cat a.flac b.flac > ab.flac``: badly joined downloads,
"gapless album" tools): FLAC, WAV, AIFF, WavPack and TTA. libsndfile and ffmpeg decoded the first part
alone, without a word, and the scan stored the first file's instruments and length as the whole
track's; each part is decoded now."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select

from conftest import tone_signal, track_instruments
from library_fakes import FREQ, FakeAnalyser
from tagger import audio
from tagger.audio import probe
from tagger.db import models as M
from tagger.errors import AudioReadError, MissingToolError
from tagger.library.scan import scan
from tagger.library.state import ScanInterrupted

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

BASS, FLUTE = FREQ["bass"], FREQ["flute"]
KINDS = ["flac", "wav", "aiff", "wv", "tta"]


def _encode(path, y: np.ndarray, sr: int):
    """`y` [shape=(n,) or (n, channels)] written to `path`, its extension's format (ffmpeg for WavPack
    and TTA, with the APEv2 tag its muxers write at the end); its bytes."""
    if path.suffix in (".flac", ".wav", ".aiff"):
        sf.write(str(path), y, sr)
    else:
        src = path.with_suffix(".src.wav")
        sf.write(str(src), y, sr)
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), str(path)], check=True)
        src.unlink()
    return path.read_bytes()


def _parts(tmp_path, ext: str, *, second_sr: int = 44_100, second_channels: int = 2) -> tuple[bytes, bytes]:
    """A 6 s flute file and a 10 s bass file of format `ext`, as bytes."""
    flute = tone_signal([FLUTE], seconds=6.0, sr=44_100)
    bass = tone_signal([BASS], seconds=10.0, sr=second_sr)
    first = _encode(tmp_path / f"a.{ext}", np.stack([flute, flute], axis=1), 44_100)
    second = _encode(tmp_path / f"b.{ext}", np.stack([bass] * second_channels, axis=1) if second_channels > 1 else bass,
                     second_sr)  # fmt: skip
    return first, second


def _ends_on_bass(got: np.ndarray) -> bool:
    spectrum = np.abs(np.fft.rfft(got[-64_000:]))
    return abs(np.argmax(spectrum) * 16_000 / 64_000 - BASS) < 1.0


@pytest.mark.parametrize("ext", KINDS)
def test_files_joined_byte_wise_are_analysed_whole(tmp_path, db, ext):
    """``cat flute.EXT bass.EXT``: was analysed and stored as the flute's 6 s, the file's 16 s and its
    bass never heard (each of the four kinds, without a word). Each part is decoded now, and the
    file's length is theirs together; a single file is described as before."""
    music = tmp_path / "music"
    music.mkdir()
    first, second = _parts(tmp_path, ext)
    path = music / f"joined.{ext}"
    path.write_bytes(first + second)
    meta = audio.info(path)
    assert meta.duration == pytest.approx(16.0, abs=0.01) and len(meta.parts) == 2
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == []
    assert abs(len(got) / 16_000 - 16.0) < 0.01 and _ends_on_bass(got)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"]}
    one = audio.info(tmp_path / f"a.{ext}")
    assert one.parts == () and one.duration == pytest.approx(6.0, abs=0.01)
    assert one.decoder == ("soundfile" if ext in ("flac", "wav", "aiff") else "ffmpeg")


@pytest.mark.parametrize("ext", KINDS)
def test_files_joined_of_other_rates_and_channels_are_analysed_whole(tmp_path, ext):
    """A 44.1 kHz stereo file and a 48 kHz mono one joined: each part is decoded at the first one's
    rate and channels (ffmpeg converts the second), to the length of both."""
    first, second = _parts(tmp_path, ext, second_sr=48_000, second_channels=1)
    path = tmp_path / f"joined.{ext}"
    path.write_bytes(first + second)
    assert audio.info(path).duration == pytest.approx(16.0, abs=0.01)
    got = audio.load(path)
    assert abs(len(got) / 16_000 - 16.0) < 0.01 and _ends_on_bass(got)


def test_flac_files_joined_with_their_tags_decode_to_the_same_samples_as_without(tmp_path):
    """FLACs that carry an ID3v2 tag in front and an ID3v1 tag at their end (some taggers'): the tags
    between the parts are not given to ffmpeg, and the file decodes as its parts' audio joined."""
    first, second = _parts(tmp_path, "flac")
    path, plain = tmp_path / "tagged.flac", tmp_path / "plain.flac"
    id3v2 = b"ID3\x03\x00\x00\x00\x00\x02\x00" + b"\x00" * 256  # (a tag of 256 bytes of padding)
    id3v1 = b"TAG" + b"the first part".ljust(125, b"\x00")
    path.write_bytes(id3v2 + first + id3v1 + id3v2 + second + id3v1)
    plain.write_bytes(first + second)
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == []
    np.testing.assert_array_equal(got, audio.load(plain))
    assert abs(len(got) / 16_000 - 16.0) < 0.01


@pytest.mark.parametrize("ext", ["flac", "wv"])
def test_files_joined_of_a_part_cut_short_come_under_the_one_percent_rule(tmp_path, ext):
    """The first part cut to half of its bytes before the second was joined (a download that stopped,
    then joined): it decodes to less than its header declares, which is a loss of the whole file's
    length, more than 1% of it: an error saying which part and how much, not a track stored without
    a word of the 3 s missing."""
    first, second = _parts(tmp_path, ext)
    path = tmp_path / f"cut.{ext}"
    path.write_bytes(first[: len(first) // 2] + second)
    with pytest.raises(AudioReadError, match=r": part 1 of the 2 files joined in it: .*nothing stored, as a result "
                                             r"would leave [23]\.\d+ s") as caught:  # fmt: skip
        list(audio.stream(path, notes=[]))
    assert "6.0 s" in caught.value.reason


def test_a_small_loss_in_a_part_is_a_note_naming_the_part(tmp_path):
    """The last part less its last 100 bytes (a FLAC frame of 0.09 s, under 1% of the part): analysed,
    with ffmpeg's note of the frame it could not decode naming the part."""
    first, second = _parts(tmp_path, "flac")
    path = tmp_path / "joined.flac"
    path.write_bytes(first + second[:-100])
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert abs(len(got) / 16_000 - 15.9) < 0.1
    assert len(notes) == 1 and notes[0].startswith("part 2 of the 2 files joined in it: ffmpeg could not decode 1 of "
                                                   "its frames")  # fmt: skip


def test_files_joined_without_ffmpeg_are_the_machines_error(tmp_path, monkeypatch):
    """Without ffmpeg (not on $PATH), which decodes each part, the file is an error naming it (its
    next scan tries it again), not the first part stored as the whole track."""
    first, second = _parts(tmp_path, "flac")
    path = tmp_path / "joined.flac"
    path.write_bytes(first + second)
    monkeypatch.setattr(probe.shutil, "which", lambda name: None)
    with pytest.raises(MissingToolError, match=r"2 FLAC files joined one after another \(6\.0 s \+ 10\.0 s\).*ffmpeg"):
        audio.info(path)


@pytest.mark.parametrize("ext", ["wav", "aiff"])
def test_the_audio_digest_of_joined_wavs_holds_the_second_part(tmp_path, ext):
    """The audio digest (which tells a file whose tags alone changed, kept without re-analysis) of a
    WAV or AIFF hashed its first RIFF's (FORM's) format and audio chunks alone: a joined file whose
    second part was other audio of the same size read as the same file, and kept the results of the
    other. The second RIFF (FORM) is hashed too; a tag write (into the first) leaves the digest as
    it was."""
    from tagger.tags import audio_digest, write_instruments

    first, second = _parts(tmp_path, ext)
    other = _encode(tmp_path / f"c.{ext}", np.stack([tone_signal([FLUTE], seconds=10.0, sr=44_100)] * 2, axis=1), 44_100)
    assert len(other) == len(second) and other != second
    one, two = tmp_path / f"one.{ext}", tmp_path / f"two.{ext}"
    one.write_bytes(first + second)
    two.write_bytes(first + other)
    before = audio_digest(one)
    assert before != audio_digest(two)
    assert write_instruments(one, instruments=["bass", "flute"], model_version="fake-1").written
    assert audio_digest(one) == before
    assert abs(len(audio.load(one)) / 16_000 - 16.0) < 0.01


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads VmHWM (Linux)")
@pytest.mark.parametrize("ext", ["flac", "wv"])
def test_looking_for_a_joined_part_does_not_hold_the_file_in_memory(tmp_path, ext):
    """A FLAC's next part is looked for in all its audio (its frames declare no size), a WavPack's
    among its blocks (each block's header read). The search ran through the file's mmap, whose
    every page read (and the cached pages the kernel maps around it) counts in the process's
    resident memory until it is unmapped: probing a 1 GB FLAC or WavPack raised a scan worker's peak
    RSS by 1 GB (the scan's ``peak_rss``; a Dask worker's ``--memory-limit`` counts it too). It reads
    a MiB at a time now."""
    small = tmp_path / f"small.{ext}"
    _encode(small, tone_signal([FLUTE], seconds=1.0, sr=44_100), 44_100)
    # 48 MiB of audio after the file's header: bytes no header is in, or WavPack blocks of 16 KiB
    # that are none's first (block index 1)
    block = (b"wvpk" + (16384 - 8).to_bytes(4, "little") + (0x410).to_bytes(2, "little") + bytes(6)
             + (1).to_bytes(4, "little")).ljust(16384, b"\xa5") if ext == "wv" else b"\xa5" * 16384  # fmt: skip
    big = tmp_path / f"big.{ext}"
    with open(big, "wb") as f:
        f.write(small.read_bytes())
        for _ in range(48):
            f.write(block * 64)
    code = ("import sys\n"
            "from tagger import audio\n"
            "from tagger.audio.joined import _joined_parts\n"
            "def hwm():\n"
            "    return next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:'))\n"
            "_joined_parts(sys.argv[1])\n"  # (the imports and the search's code paths first: their memory)
            "before = hwm()\n"
            "assert _joined_parts(sys.argv[2]) == ()\n"
            "print(hwm() - before)\n")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(small), str(big)], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) < 16 * 1024, f"peak RSS grew by {int(done.stdout)} kB"


@pytest.mark.parametrize("codec", ["adpcm_ima_wav", "adpcm_ms", "gsm_ms"])
def test_joined_wavs_of_compressed_audio_declare_their_length(tmp_path, codec):
    """A part's length was its data chunk's bytes over its block align, right for PCM, float, A-law
    and µ-law alone: a block of ADPCM or GSM holds hundreds of samples, so two such WAVs of 6 s and
    10 s joined declared 0.008 s, and a first part cut to half before the join (3 s missing) was
    analysed without a word (no part was short of what it declared). Such a part's length is its
    ``fact`` chunk's (else its byte rate's); the cut part is the 1% rule's error naming it."""
    parts = []
    for name, seconds, freq in (("a", 6, FLUTE), ("b", 10, BASS)):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"sine=f={freq}:d={seconds}",
                        "-ar", "8000", "-c:a", codec, str(tmp_path / f"{name}.wav")], check=True)  # fmt: skip
        parts.append((tmp_path / f"{name}.wav").read_bytes())
    path = tmp_path / "joined.wav"
    path.write_bytes(parts[0] + parts[1])
    meta = audio.info(path)
    assert len(meta.parts) == 2 and meta.duration == pytest.approx(16.0, abs=0.5)
    assert abs(len(audio.load(path)) / 16_000 - meta.duration) < 0.05
    path.write_bytes(parts[0][: len(parts[0]) // 2] + parts[1])
    with pytest.raises(AudioReadError, match=r": part 1 of the 2 files joined in it: .*nothing stored"):
        list(audio.stream(path, notes=[]))


def test_joined_aiff_c_of_packets_declare_no_length(tmp_path):
    """An AIFF-C of IMA ADPCM (``ima4``) counts packets of 64 samples in its COMM chunk: two joined,
    of 6 s and 10 s, declared 0.25 s (a loss in a part then judged against that). Their length is
    not known now, as a FLAC's whose STREAMINFO declares none; the file decodes whole."""
    parts = []
    for name, seconds, freq in (("a", 6, FLUTE), ("b", 10, BASS)):
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", f"sine=f={freq}:d={seconds}",
                        "-ar", "8000", "-c:a", "adpcm_ima_qt", str(tmp_path / f"{name}.aiff")], check=True)  # fmt: skip
        parts.append((tmp_path / f"{name}.aiff").read_bytes())
    path = tmp_path / "joined.aiff"
    path.write_bytes(parts[0] + parts[1])
    meta = audio.info(path)
    assert len(meta.parts) == 2 and meta.duration is None
    assert abs(len(audio.load(path)) / 16_000 - 16.0) < 0.05


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
def test_ctrl_c_while_ffmpeg_decodes_a_joined_file_leaves_it_for_the_next_scan(tmp_path, db, monkeypatch):
    """Ctrl-C reaches the whole process group, the ffmpeg decoding a part of the file included: it
    exits (255, or the signal's death) and the file was stored as 'part 2 of the 2 files joined in
    it: ffmpeg could not decode the file: exit code 255', a lasting error the next scan passed over
    as unchanged (found with Ctrl-C on `tagger scan -j 0` of joined FLACs). Nothing is stored for it
    now, and the next scan analyses it."""
    music = tmp_path / "music"
    music.mkdir()
    first, second = _parts(tmp_path, "flac")
    path = music / "joined.flac"
    path.write_bytes(first + second)
    (music / "z.flac").write_bytes(second)  # (a file after it: the stop is looked at between files)
    real_popen = subprocess.Popen
    started: list[list[str]] = []

    def popen(cmd, *args, **kwargs):
        proc = real_popen(cmd, *args, **kwargs)
        if cmd[0] == "ffmpeg" and "pipe:0" in cmd:
            started.append(cmd)
            if len(started) == 2:  # the terminal's Ctrl-C, as the second part's decode begins
                proc.send_signal(signal.SIGINT)
                signal.raise_signal(signal.SIGINT)
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen)
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)  # (not SIG_IGN, as under a shell's `&`)
    try:
        with pytest.raises(ScanInterrupted):
            scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    finally:
        signal.signal(signal.SIGINT, saved)
    monkeypatch.undo()
    assert len(started) == 2
    with db.session() as s:
        assert s.scalars(select(M.Track)).all() == []
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0 and summary.scanned == 2, summary.errors
    assert track_instruments(db) == {str(path): ["bass", "flute"], str(music / "z.flac"): ["bass"]}


@pytest.mark.parametrize("channels", [(6, 6), (1, 6)])
def test_joined_wavpacks_of_more_than_two_channels_decode(tmp_path, channels):
    """A WavPack of more than 2 channels holds a block per channel pair, and ffmpeg's demuxer reads
    ahead to the others for its channels: fed through a pipe it refused the part (``Cannot determine
    additional parameters``), so that two 6-channel WavPacks joined were an error, 'ffmpeg could not
    decode the file: pipe:0: Invalid data found when processing input', nothing stored (before the
    joined files were decoded part by part, the first part was analysed). Such a part is given to
    ffmpeg as a part of the file it can seek in (its ``subfile`` protocol); a loss in one is said as
    before, naming the file."""
    flute = tone_signal([FLUTE], seconds=6.0, sr=44_100)
    bass = tone_signal([BASS], seconds=10.0, sr=44_100)
    first = _encode(tmp_path / "a.wv", np.stack([flute] * channels[0], axis=1) if channels[0] > 1 else flute, 44_100)
    second = _encode(tmp_path / "b.wv", np.stack([bass] * channels[1], axis=1), 44_100)
    path = tmp_path / "joined, 6 ch: 100%.wv"
    path.write_bytes(first + second)
    meta = audio.info(path)
    assert len(meta.parts) == 2 and meta.duration == pytest.approx(16.0, abs=0.01)
    got = audio.load(path)
    assert abs(len(got) / 16_000 - 16.0) < 0.01 and _ends_on_bass(got)
    path.write_bytes(first + second[: len(second) // 2])
    with pytest.raises(AudioReadError, match=r": part 2 of the 2 files joined in it: .*cut short") as caught:
        list(audio.stream(path, notes=[]))
    assert "subfile" not in caught.value.reason and caught.value.path == str(path)


IGNORING_SCRIPT = """
import os, signal, sys
sys.path[:0] = [{tests!r}, {root!r}]
from library_fakes import FakeAnalyser
from tagger.audio import decoders
from tagger.db.session import open_database
from tagger.library.scan import scan

signal.signal(signal.SIGINT, signal.SIG_IGN)  # (a shell's `&` without job control, nohup-like)
real_feed = decoders._feed
parts = []

class Pipe:  # the group's Ctrl-C once ffmpeg has read the second part's first bytes (its handlers set)
    def __init__(self, pipe):
        self.pipe = pipe
    def write(self, block):
        self.pipe.write(block)
        if len(parts) == 2 and not parts[1]:
            parts[1] = True
            os.killpg(os.getpgrp(), signal.SIGINT)
    def close(self):
        self.pipe.close()

def feed(path, ranges, pipe):
    parts.append(False)
    return real_feed(path, ranges, Pipe(pipe))

decoders._feed = feed
summary = scan([sys.argv[2]], db=open_database(sys.argv[1]), analyser=FakeAnalyser(), jobs=0)
print(len(parts), summary.scanned, summary.failed, summary.errors, flush=True)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals as on Linux")
def test_a_scan_ignoring_sigint_is_not_failed_by_the_ctrl_c_of_its_group(tmp_path):
    """A scan started with SIGINT ignored (a script's `tagger scan ... &`) goes on through the
    terminal's Ctrl-C, as it should; the ffmpeg decoding a part of a joined file did not (ffmpeg sets
    its own SIGINT handler whatever it inherits): it exited 255 and the file was stored as 'ffmpeg
    could not decode the file: exit code 255', a lasting error. The decoders run in a process group
    of their own now: only the scan stops them (or their death with it)."""
    music = tmp_path / "music"
    music.mkdir()
    first, second = _parts(tmp_path, "flac")
    (music / "joined.flac").write_bytes(first + second)
    script = tmp_path / "scan_script.py"
    tests = os.path.dirname(os.path.abspath(__file__))
    script.write_text(IGNORING_SCRIPT.format(tests=tests, root=os.path.dirname(tests)))
    done = subprocess.run([sys.executable, str(script), str(tmp_path / "lib.db"), str(music)], capture_output=True,
                          text=True, start_new_session=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.split(maxsplit=3)[:3] == ["2", "1", "0"], done.stdout


def test_a_joined_file_an_older_tagger_analysed_in_part_is_analysed_again_once(tmp_path, db, monkeypatch):
    """A library scanned by a tagger before the joined files' parts were decoded (a216af8) kept the
    first part's results for good: a joined FLAC stored as its 6 s of flute, the file unchanged, so
    every scan after the upgrade skipped it (its bass never heard). Each track records the decoding
    that analysed it (``tracks.decoding``, revision 0012): a scan finding the file of an older one
    unchanged analyses it again when it is joined, and says so; another file is recorded as looked
    at, and not looked at again."""
    from tagger.audio import joined

    music = tmp_path / "music"
    music.mkdir()
    first, second = _parts(tmp_path, "flac")
    path = music / "joined.flac"
    path.write_bytes(first + second)
    (music / "one.flac").write_bytes(first)
    with monkeypatch.context() as m:  # (the older tagger: the first part alone, no decoding recorded)
        m.setattr(probe, "_joined_parts", lambda p: ())
        assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 2
    with db.session() as s:
        s.execute(M.Track.__table__.update().values(decoding=None))
        s.commit()
    assert track_instruments(db)[str(path)] == ["flute"]
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (summary.scanned, summary.skipped, summary.failed) == (1, 1, 0), summary.errors
    assert summary.decoded_anew == [(str(path), "an older tagger analysed it in part (2 FLAC files joined one after another)")]
    assert track_instruments(db) == {str(path): ["bass", "flute"], str(music / "one.flac"): ["flute"]}
    with db.session() as s:
        assert set(s.scalars(select(M.Track.decoding))) == {joined.DECODING}
        assert s.scalar(select(M.Track.duration).where(M.Track.path == str(path))) == pytest.approx(16.0, abs=0.01)
    looked = []
    monkeypatch.setattr(joined, "decoded_otherwise", lambda p: looked.append(p))
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (summary.scanned, summary.skipped, summary.decoded_anew, looked) == (0, 2, [], [])



def test_a_joined_file_left_for_a_later_scan_is_not_said_to_be_analysed_again(tmp_path, db, monkeypatch):
    """A track of an older decoding whose joined file changed within the settle time (an older
    tagger's tag write just before the upgrade) is left for a later scan, as any file so recent; the
    scan said all the same `analysed again: an older tagger analysed it in part` (and listed it under
    ``decoded_anew``), at every scan until the file settled, where nothing was analysed (found
    checking README's claims: `tagger scan` right after a scan that wrote the file's tags). Said
    only by the scan that analyses it."""
    music = tmp_path / "music"
    music.mkdir()
    first, second = _parts(tmp_path, "flac")
    path = music / "joined.flac"
    path.write_bytes(first + second)  # (its mtime now: under an hour's settle time whatever the machine's load)
    with monkeypatch.context() as m:  # (the older tagger: the first part alone, no decoding recorded)
        m.setattr(probe, "_joined_parts", lambda p: ())
        assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 1
    with db.session() as s:
        s.execute(M.Track.__table__.update().values(decoding=None))
        s.commit()
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, settle_seconds=3600)
    assert (summary.scanned, [p for p, _ in summary.deferred]) == (0, [str(path)])
    assert summary.decoded_anew == []  # (was: said analysed again)
    assert track_instruments(db)[str(path)] == ["flute"]
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (summary.scanned, summary.decoded_anew) == (1, [(str(path), "an older tagger analysed it in part (2 FLAC files joined one after another)")])
    assert track_instruments(db)[str(path)] == ["bass", "flute"]

SUFFIXES = {"rf64": "wav"}
"""The extension of a file of each kind the tests make (an RF64 is a .wav)."""


def _part(path, freq: float, seconds: float, *, sr: int = 44_100) -> bytes:
    """A stereo tone of `seconds` at `freq` in the format of `path`'s extension (``.rf64``: written as
    ``.wav``; a mono DSD64 DSF; TAK written here: `tak_files`), as bytes."""
    from conftest import dsf_file
    from tak_files import tak_file

    y = tone_signal([freq], seconds=seconds, sr=sr)
    if path.suffix == ".rf64":
        out = path.with_suffix(".wav")
        sf.write(str(out), np.stack([y, y], axis=1), sr, format="RF64")
        return out.read_bytes()
    if path.suffix == ".dsf":
        return dsf_file(path, seconds=seconds, freq=freq).read_bytes()
    if path.suffix == ".tak":
        pcm = (y * 20_000).astype(np.int16)
        return tak_file(path, np.stack([pcm, pcm], axis=1), sr).read_bytes()
    if path.suffix == ".w64":
        sf.write(str(path), np.stack([y, y], axis=1), sr, format="W64")
        return path.read_bytes()
    return _encode(path, np.stack([y, y], axis=1), sr)


@pytest.mark.parametrize("ext", ["rf64", "w64", "dsf", "tak"])
def test_rf64_wave64_dsf_and_tak_files_joined_are_analysed_whole(tmp_path, db, ext):
    """``cat flute.EXT bass.EXT`` of the kinds a216af8 left: an RF64 was analysed as its first part
    alone (3 s of 8), a DSF as its first 3 s against a length of 8 (ffprobe's, from its bytes), a
    Wave64 as its first part with the second's header decoded as samples (and a second part of
    another rate or channels as noise), a TAK's second part decoded as the first's frames. Each part's
    header is found (RF64's ds64, Wave64's GUIDs and 64-bit sizes, DSF's DSD chunk, TAK's STREAMINFO
    of a right CRC-24) and decoded on its own."""
    music = tmp_path / "music"
    music.mkdir()
    path = music / f"joined.{SUFFIXES.get(ext, ext)}"
    path.write_bytes(_part(tmp_path / f"a.{ext}", FLUTE, 3.0) + _part(tmp_path / f"b.{ext}", BASS, 5.0))
    meta = audio.info(path)
    assert [p.seconds for p in meta.parts] == [pytest.approx(3.0, abs=0.01), pytest.approx(5.0, abs=0.01)]
    assert meta.duration == pytest.approx(8.0, abs=0.01)
    got = audio.load(path)
    assert abs(len(got) / 16_000 - 8.0) < 0.02 and _ends_on_bass(got)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0, summary.errors
    assert {"bass", "flute"} <= set(track_instruments(db)[str(path)])  # (a DSF's noise shaping: string too)
    assert audio.info(tmp_path / f"a.{SUFFIXES.get(ext, ext)}").parts == ()


@pytest.mark.parametrize("first,second", [("flac", "wav"), ("wav", "flac"), ("aiff", "w64"), ("wv", "flac"),
                                          ("tta", "aiff"), ("rf64", "tak"), ("dsf", "flac"),
                                          ("tak", "wav")])  # fmt: skip
def test_files_of_other_kinds_joined_are_analysed_whole(tmp_path, first, second):
    """A FLAC followed by a WAV (``cat a.flac b.wav``), and other kinds so: was the first part alone
    (3 s of 8), as a file of one kind was before a216af8. A part whose header declares its bytes is
    followed by a part of any kind where they end; a FLAC or WavPack whose stream does not run to the
    file's end (its last frame or block, of its last samples), or a TAK, by one of another kind looked
    for in its bytes. Each is decoded by its own kind's demuxer."""
    path = tmp_path / f"joined.{SUFFIXES.get(first, first)}"
    path.write_bytes(_part(tmp_path / f"a.{first}", FLUTE, 3.0) + _part(tmp_path / f"b.{second}", BASS, 5.0,
                                                                        sr=48_000))  # fmt: skip
    meta = audio.info(path)
    kinds = {"flac": "FLAC", "wav": "WAV", "aiff": "AIFF", "w64": "Wave64", "wv": "WavPack", "tta": "TTA",
             "rf64": "RF64", "tak": "TAK", "dsf": "DSF"}  # fmt: skip
    assert [p.kind for p in meta.parts] == [kinds[first], kinds[second]]
    assert meta.duration == pytest.approx(8.0, abs=0.01)
    notes: list[str] = []
    got = np.concatenate(list(audio.stream(path, notes=notes)))
    assert notes == [] and abs(len(got) / 16_000 - 8.0) < 0.02 and _ends_on_bass(got)


def _ape(seconds: float, *, rate: int = 44_100) -> bytes:
    """A Monkey's Audio 3.99 file's descriptor, header and seek table as ffmpeg reads them, then bytes
    standing for its frames (no encoder of Monkey's Audio here)."""
    import struct

    total = int(seconds * rate)
    frames = -(-total // 73_728)
    header = struct.pack("<HHIIIHHI", 2000, 0, 73_728, total - (frames - 1) * 73_728, frames, 16, 2, rate)
    seek, body = bytes(4 * frames), bytes(range(256)) * 64
    return (b"MAC " + struct.pack("<HH7I", 3990, 0, 52, len(header), len(seek), 0, len(body), 0, 0) + bytes(16)
            + header + seek + body)  # fmt: skip


def test_a_file_with_a_joined_part_of_monkeys_audio_says_only_its_first_is_analysed(tmp_path, db):
    """Monkey's Audio parts are found by their descriptors (the bytes each declares), but not decoded
    one by one (no encoder here to try ffmpeg on a part): a file holding one was analysed as its first
    part without a word; it is now analysed so with a warning naming the file and what it holds, kept
    with the track."""
    from tagger.audio.joined import _joined_parts

    two = tmp_path / "two.ape"
    two.write_bytes(_ape(3.0) + _ape(5.0))
    assert [(p.kind, p.seconds) for p in _joined_parts(two)] == [("Monkey's Audio", 3.0), ("Monkey's Audio", 5.0)]
    one = tmp_path / "one.ape"
    one.write_bytes(_ape(3.0))
    assert _joined_parts(one) == ()
    music = tmp_path / "music"
    music.mkdir()
    path = music / "wav_then_ape.wav"
    path.write_bytes(_part(tmp_path / "a.wav", FLUTE, 3.0) + _ape(5.0))
    note = ("it holds 2 files joined one after another (WAV, then Monkey's Audio), only the first analysed (a part "
            "of Monkey's Audio is not decoded on its own)")  # fmt: skip
    assert audio.info(path).said == note and audio.info(path).duration == pytest.approx(3.0, abs=0.01)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0 and summary.analysed_in_part == [(str(path), note)]
    assert track_instruments(db) == {str(path): ["flute"]}


@pytest.mark.parametrize("riff", ["the file's", "4", "0"])
def test_a_wav_with_a_copy_joined_after_its_audio_under_a_wrong_riff_size_is_analysed_whole(tmp_path, riff):
    """A WAV whose RIFF size is wrong (the whole file's, so that the WAV joined after its data chunk
    reads as a chunk of it; too small to hold its chunks; 0) was one WAV to the search (the first
    taken for the file's only one, the others for no WAV at all): 3 s of 8 decoded without a word.
    A part that begins where a WAV's data chunk ends is the next one, whatever its RIFF size says."""
    import struct

    first, second = _part(tmp_path / "a.wav", FLUTE, 3.0), _part(tmp_path / "b.wav", BASS, 5.0, sr=48_000)
    size = {"the file's": len(first) + len(second) - 8, "4": 4, "0": 0}[riff]
    path = tmp_path / "joined.wav"
    path.write_bytes(first[:4] + struct.pack("<I", size) + first[8:] + second)
    meta = audio.info(path)
    assert [p.seconds for p in meta.parts] == [pytest.approx(3.0, abs=0.01), pytest.approx(5.0, abs=0.01)]
    got = audio.load(path)
    assert abs(len(got) / 16_000 - 8.0) < 0.02 and _ends_on_bass(got)


def test_a_flac_with_bytes_after_its_last_frame_then_a_wav_is_analysed_whole(tmp_path, monkeypatch):
    """A FLAC, 2,000 zero bytes (a writer's padding), then a WAV: the FLAC's last frame, of the last
    samples its STREAMINFO declares, lies in the file's last 256 KiB (`_flac_last_frame`), and the WAV
    is looked for from there; a FLAC with those zeros alone is one FLAC, whose audio is not searched
    for a part of another kind (nine searches of its bytes: 1.1 s for a 10-minute FLAC, not 0.13)."""
    from tagger.audio import joined

    flac, wav = _part(tmp_path / "a.flac", FLUTE, 3.0), _part(tmp_path / "b.wav", BASS, 5.0, sr=48_000)
    path = tmp_path / "joined.flac"
    path.write_bytes(flac + bytes(2000) + wav)
    meta = audio.info(path)
    assert [(p.kind, p.start, p.end) for p in meta.parts] == [("FLAC", 0, len(flac) + 2000),
                                                             ("WAV", len(flac) + 2000, len(flac) + 2000 + len(wav))]  # fmt: skip
    got = audio.load(path)
    assert abs(len(got) / 16_000 - 8.0) < 0.02 and _ends_on_bass(got)
    alone = tmp_path / "alone.flac"
    alone.write_bytes(flac + bytes(2000))
    searched, next_of = [], joined._next_of
    monkeypatch.setattr(joined, "_next_of", lambda data, kinds, start: searched.append((len(kinds), start))
                        or next_of(data, kinds, start))  # fmt: skip
    assert audio.info(alone).parts == ()
    others = [start for kinds, start in searched if kinds > 1]
    assert others and all(len(flac) - 16_384 < start < len(flac) for start in others), (searched, len(flac))


def test_a_file_that_cannot_be_looked_at_for_an_older_decoding_keeps_its_track(tmp_path, db, monkeypatch):
    """The look at an older decoding's track (`decoded_otherwise`) runs in the scan's plan: a file it
    fails on (an error no check foresaw) must not stop the scan; the track keeps its results, and is
    looked at again by the next scan."""
    from tagger.audio import joined

    music = tmp_path / "music"
    music.mkdir()
    (music / "one.flac").write_bytes(_part(tmp_path / "a.flac", FLUTE, 3.0))
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    with db.session() as s:
        s.execute(M.Track.__table__.update().values(decoding=None))
        s.commit()

    def fails(path):
        raise IndexError("no such byte")

    monkeypatch.setattr(joined, "decoded_otherwise", fails)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (summary.scanned, summary.skipped, summary.failed) == (0, 1, 0)
    with db.session() as s:
        assert list(s.scalars(select(M.Track.decoding))) == [None]


def _wavpack_program_file(tmp_path, freq: float, seconds: float) -> bytes:
    """A stereo WavPack of a tone as the wavpack program writes one of a WAV with a LIST chunk after
    its data (ffmpeg's, most editors'): the WAV's header up to its audio kept in its first block (a
    RIFF header sub-block), its LIST chunk in a last block of no samples (a RIFF trailer sub-block).
    Made from ffmpeg's WavPack (no wavpack program here), whose decoder skips those sub-blocks."""
    import struct

    src, path = tmp_path / f"{freq}.wav", tmp_path / f"{freq}.wv"
    y = tone_signal([freq], seconds=seconds, sr=44_100)
    sf.write(str(src), np.stack([y, y], axis=1), 44_100, subtype="PCM_16")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "wavpack", "-map_metadata", "-1",
                    "-fflags", "+bitexact", str(path)], check=True)  # fmt: skip
    wav, wv = src.read_bytes(), path.read_bytes()
    riff = wav[: wav.index(b"data") + 8]
    size = int.from_bytes(wv[4:8], "little") + 8
    header = bytes([0x21, len(riff) // 2]) + riff
    trailer = b"LIST" + struct.pack("<I", 26) + b"INFOISFT" + struct.pack("<I", 14) + b"Lavf58.76.100\0"
    trailer = bytes([0x22, len(trailer) // 2]) + trailer
    last = b"wvpk" + struct.pack("<I", 24 + len(trailer)) + wv[8:16] + bytes(8) + struct.pack("<I", 1 << 28) + bytes(4)
    return wv[:4] + struct.pack("<I", size - 8 + len(header)) + wv[8:32] + header + wv[32:size] + wv[size:] + last + trailer


def test_a_wavpack_of_the_wavpack_program_is_one_file_whole_cut_or_followed_by_a_wav(tmp_path):
    """The wavpack program keeps the header of the WAV it encodes in its first block and the chunks
    after its data (a LIST chunk) in a last block of no samples: 7e2d8df took that last block for no
    end of the stream, and the WAV header in the first for a WAV joined after it, so such a WavPack
    (or one cut short) was refused ('part 1 of the 2 files joined in it: ffmpeg could not decode
    the file'), its samples otherwise decoded as a WAV's. Its last block of samples is read past the
    blocks of none, and a part of another kind looked for past its first block."""
    one = _wavpack_program_file(tmp_path, FLUTE, 3.0)
    path = tmp_path / "one.wv"
    path.write_bytes(one)
    assert audio.info(path).parts == () and abs(len(audio.load(path)) / 16_000 - 3.0) < 0.01
    from tagger.audio import joined as j

    with open(path, "rb") as f:  # (it ends on its last samples: its bytes are not searched for another part)
        data = j._Bytes(f, len(one))
        assert j._wavpack_ends(data, f, 0, j._wavpack_header(data, 0))
    cut = tmp_path / "cut.wv"
    cut.write_bytes(one[: len(one) * 6 // 10])
    assert j._joined_parts(cut) == ()
    wav = _part(tmp_path / "b.wav", BASS, 5.0, sr=48_000)
    joined = tmp_path / "joined.wv"
    joined.write_bytes(one + wav)
    assert [(p.kind, p.start) for p in audio.info(joined).parts] == [("WavPack", 0), ("WAV", len(one))]
    got = audio.load(joined)
    assert abs(len(got) / 16_000 - 8.0) < 0.02 and _ends_on_bass(got)
