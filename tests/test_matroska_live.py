"""Live-written Matroska and WebM files (no Duration in their Segment Info, no DURATION tag, no Cues:
ffmpeg's ``-live 1``, a browser's MediaRecorder, OBS): the gaps between their clusters and a last
cluster cut short, found by walking the clusters (`tagger.audio.matroska`), and whole such files
analysed without a note."""

from __future__ import annotations

import shutil
import struct
import subprocess

import numpy as np
import pytest
import soundfile as sf

from conftest import tone_signal
from library_fakes import FREQ
from tagger import audio
from tagger.audio.ebml import _CLUSTER, _element
from tagger.audio.matroska import _matroska_walk
from tagger.audio.mkvblocks import _block_ns, _frames, _Track
from tagger.audio.mkvtimeline import _stretch
from tagger.errors import AudioReadError

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
FF = ["ffmpeg", "-nostdin", "-v", "error"]
GAPS = r"\(gaps in its timeline: frames a recording dropped, or a damaged copy lost\)"


def _live(tmp_path, name: str, seconds: float, *args: str, codec: str = "libopus", fmt: str = "webm"):
    src = tmp_path / f"{name}.wav"
    sf.write(src, tone_signal([FREQ["flute"], FREQ["bass"]], seconds=seconds, sr=48_000), 48_000)
    out = tmp_path / f"{name}.{'webm' if fmt == 'webm' else 'mka'}"
    subprocess.run([*FF, "-i", src, *args, "-c:a", codec, "-f", fmt, "-live", "1", "-cluster_time_limit", "1000",
                    "-cluster_size_limit", "1000000", out], check=True)  # fmt: skip
    return out


def _clusters(data: bytes) -> list[tuple[int, int]]:
    """(start, head length) of each Cluster of a live-written file (a Segment of unknown size)."""
    head = _element(data)
    pos = head[1] + head[2]
    pos += _element(data, pos)[1]
    found = []
    while pos < len(data):
        eid, hl, size = _element(data, pos)
        if eid == _CLUSTER:
            found.append((pos, hl))
        pos += hl + size
    return found


def _decoded(path, notes):
    return len(np.concatenate(list(audio.stream(path, notes=notes)))) / 16_000


def test_a_live_webm_missing_a_cluster_from_its_middle_is_refused(tmp_path):
    """A live-written WebM declares no length, so 683024b's timeline check had nothing to measure
    against: one missing its 4th cluster (1 s of 12) was analysed as an 11 s track, as if whole,
    what followed the gap 1 s early. Its clusters' timestamps tell the gap now."""
    path = _live(tmp_path, "live", 12.0)
    data = path.read_bytes()
    clusters = _clusters(data)
    assert len(clusters) >= 6 and audio.info(path).duration is None
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: clusters[3][0]] + data[clusters[4][0] :])
    said = rf"its Matroska timestamps span 12\.0 s, of which the file holds 11\.0 s {GAPS}; nothing stored, as a result"
    with pytest.raises(AudioReadError, match=rf"{said} would leave 1\.0 s out"):
        list(audio.stream(cut, notes=[]))


@pytest.mark.parametrize("codec", ["libopus", "libvorbis"])
@pytest.mark.parametrize("gap", [2.0, 1.0])
def test_a_gap_in_a_live_webms_timestamps_comes_under_the_one_percent_rule(tmp_path, codec, gap):
    """Frames a recording dropped (timestamps jumping 2 s after the first 3 of 8, 1 s of 150):
    refused, or analysed with the note the gaps of a file that declares its length get."""
    seconds = 8.0 if gap == 2.0 else 150.0
    path = _live(tmp_path, "gap", seconds - gap, "-af", f"asetpts='if(gte(T,3),PTS+{gap}/TB,PTS)'", codec=codec)
    assert audio.info(path).duration is None
    notes: list[str] = []
    if gap == 2.0:
        said = rf"its Matroska timestamps span 8\.0 s, of which the file holds 6\.0 s {GAPS}; nothing stored"
        with pytest.raises(AudioReadError, match=rf"{said}, as a result would leave 2\.0 s out"):
            _decoded(path, notes)
        return
    assert abs(_decoded(path, notes) - 149.0) < 0.05
    assert len(notes) == 1 and notes[0].startswith("its Matroska timestamps span 150.0 s, of which the file holds "
                                                   "149.0 s (gaps in its timeline: ")  # fmt: skip
    assert abs(notes[0].lost - 1.0) < 0.03


def test_a_live_webm_cut_inside_its_last_block_is_measured_against_its_timeline(tmp_path):
    """A live-written WebM less its last 100 bytes (inside its last block, its cluster's last
    element): ffmpeg says 'File ended prematurely', which was an error however little was missing,
    the file declaring no length; the cut block's own samples (its Opus TOC) tell what is missing,
    20 ms of 12 s, a note. Cut inside an earlier block, how much is missing is not known: see
    `test_a_live_webm_cut_inside_its_last_cluster_is_analysed_as_what_it_holds`."""
    path = _live(tmp_path, "live", 12.0)
    data = path.read_bytes()
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[:-100])
    notes: list[str] = []
    assert abs(_decoded(cut, notes) - 11.98) < 0.03
    assert len(notes) == 1 and notes[0].startswith("ffmpeg could not read all of the file (")
    assert notes[0].endswith("analysed without the rest (0.021 s of 12.0 s left out)"), notes


def _unknown_sizes(data: bytes) -> bytes:
    """The file with each Cluster's size made unknown (all ones), as a MediaRecorder writes them."""
    out = bytearray(data)
    for pos, hl in _clusters(data):
        n = hl - 4
        out[pos + 4 : pos + hl] = bytes([0xFF >> (n - 1)]) + b"\xff" * (n - 1)
    return bytes(out)


@pytest.mark.parametrize("kind", ["opus", "vorbis", "mediarecorder", "pipe", "video", "mp3", "ac3", "aac", "pcm", "flac",
                                  "truehd", "one block a cluster"])
def test_whole_live_written_files_are_analysed_without_a_note(tmp_path, kind):
    """Whole live-written files: Opus (its pre-skip a negative start), Vorbis, a MediaRecorder's
    clusters of unknown size, ffmpeg's WebM written to a pipe (no Duration, no Cues), a video whose
    audio ends 5 s before it, MP3, AC-3, AAC, PCM, FLAC and TrueHD in a live MKA, Opus in clusters of
    one block each. The MP3 and AC-3 ones were
    refused or noted: ffprobe's length of a file that declares none is an estimate from its bit
    rate (a 10 s MP3 'a 10.4 s stream', 0.4 s of 'gaps')."""
    seconds = 10.0
    if kind == "video":
        src = tmp_path / "a.wav"
        sf.write(src, tone_signal([FREQ["flute"]], seconds=seconds, sr=48_000), 48_000)
        path = tmp_path / "video.webm"
        subprocess.run([*FF, "-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:d=15", "-i", src, "-map", "0:v", "-map",
                        "1:a", "-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus", "-f", "webm", "-live", "1",
                        path], check=True)  # fmt: skip
    elif kind == "pipe":
        src = tmp_path / "a.wav"
        sf.write(src, tone_signal([FREQ["flute"]], seconds=seconds, sr=48_000), 48_000)
        path = tmp_path / "pipe.webm"
        with open(path, "wb") as out:
            subprocess.run([*FF, "-i", src, "-c:a", "libopus", "-f", "webm", "pipe:1"], stdout=out, check=True)
    elif kind == "one block a cluster":
        src = tmp_path / "a.wav"
        sf.write(src, tone_signal([FREQ["flute"]], seconds=seconds, sr=48_000), 48_000)
        path = tmp_path / "small.webm"
        subprocess.run([*FF, "-i", src, "-c:a", "libopus", "-f", "webm", "-live", "1", "-cluster_time_limit", "1",
                        "-cluster_size_limit", "1", path], check=True)  # fmt: skip
    elif kind in ("opus", "vorbis", "mediarecorder"):
        path = _live(tmp_path, kind, seconds, codec="libvorbis" if kind == "vorbis" else "libopus")
        if kind == "mediarecorder":
            path.write_bytes(_unknown_sizes(path.read_bytes()))
    else:
        codec = {"mp3": "libmp3lame", "ac3": "ac3", "aac": "aac", "pcm": "pcm_s16le", "flac": "flac", "truehd": "truehd"}[kind]
        strict = ("-strict", "-2") if kind == "truehd" else ()
        path = _live(tmp_path, kind, seconds, *strict, codec=codec, fmt="matroska")
    notes: list[str] = []
    assert abs(_decoded(path, notes) - seconds) < 0.05
    assert notes == []
    assert audio.info(path).duration is None
    walk = _matroska_walk(path)
    assert walk is not None and walk.gaps == 0 and not walk.cut and abs(walk.span - seconds) < 0.05, walk


def test_a_mediarecorder_webm_missing_a_cluster_is_refused(tmp_path):
    """Clusters of unknown size end at the next Cluster: the walk finds the gap there too."""
    whole = _live(tmp_path, "live", 12.0).read_bytes()
    data, clusters = _unknown_sizes(whole), _clusters(whole)
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: clusters[5][0]] + data[clusters[6][0] :])
    with pytest.raises(AudioReadError, match=rf"span 12\.0 s, of which the file holds 11\.0 s {GAPS}"):
        _decoded(cut, [])


@pytest.mark.skipif(shutil.which("mkvmerge") is None, reason="needs mkvmerge")
@pytest.mark.parametrize("codec", ["libopus", "libvorbis", "aac", "libmp3lame", "ac3", "flac"])
def test_laced_blocks_are_walked_whole(tmp_path, codec):
    """mkvmerge laces audio (EBML lacing for Opus, Vorbis and AAC, fixed for MP3 and AC-3): each
    laced block's frames are told, no gap found in a whole file."""
    path = _live(tmp_path, "live", 10.0, codec=codec, fmt="matroska")
    out = tmp_path / "laced.mka"
    subprocess.run(["mkvmerge", "-q", "-o", out, path], check=True)
    walk = _matroska_walk(out)
    assert walk is not None and walk.gaps == 0 and not walk.cut and abs(walk.span - 10.0) < 0.05, walk


@pytest.mark.parametrize("lacing", ["xiph", "ebml", "fixed"])
def test_each_lacing_gives_its_frames(lacing):
    """A laced block's frames (three Opus frames of 20 ms: 60 ms), whichever lacing: Xiph (sizes of
    255 and more in runs of 255), EBML (a size, then signed differences) or fixed."""
    toc = bytes([31 << 3])  # (CELT, full band, 20 ms, one frame)
    sizes = [300, 10, 5] if lacing != "fixed" else [8, 8, 8]
    frames = [toc + bytes(n - 1) for n in sizes]
    if lacing == "xiph":
        head, flags = bytes([2, 255, 45, 10]), 0x02
    elif lacing == "ebml":
        # (300 as a 2-byte EBML number, then 10 - 300 as a signed one: biased by 2**13 - 1)
        head = bytes([2]) + (0x4000 | 300).to_bytes(2, "big") + (0x4000 | (10 - 300 + 0x1FFF)).to_bytes(2, "big")
        flags = 0x06
    else:
        head, flags = bytes([2]), 0x04
    payload = head + b"".join(frames)
    track = _Track(number=1, codec="A_OPUS", rate=48_000.0)
    assert [len(f) for f in _frames(track, payload, flags)] == sizes
    assert _block_ns(track, payload, flags, None, len(payload)) == 60_000_000


def _he_aac_at_its_output_rate(data: bytes) -> bytes:
    """A live AAC-LC MKA at 24 kHz made an HE-AAC one as a writer may store it: its CodecPrivate an
    AudioSpecificConfig of object type 5 (SBR signalled explicitly: core 24 kHz, output 48 kHz, over
    the same LC frames) and its SamplingFrequency the output rate, 48,000 (ffmpeg decodes each frame
    to 2,048 samples at 48 kHz: 42.7 ms, where 1,024 at the SamplingFrequency is 21.3 ms)."""
    head = _clusters(data)[0][0]
    out = bytearray(data)
    private = data.index(b"\x63\xa2\x85", 0, head) + 3  # (ffmpeg's 5 bytes: LC, then SBR marked absent)
    channels = int.from_bytes(data[private : private + 2], "big") >> 3 & 15
    fields = [(5, 5), (4, 6), (4, channels), (4, 3), (5, 2), (3, 0)]  # (AOT 5, 24 kHz, ..., 48 kHz, AOT 2, GASpecificConfig)
    bits = "".join(format(v, f"0{n}b") for n, v in fields).ljust(40, "0")
    out[private : private + 5] = int(bits, 2).to_bytes(5, "big")
    at = data.index(b"\xe1", data.index(b"A_AAC", 0, head), head)  # (Audio: its SamplingFrequency a float of 4 or 8 bytes)
    at = data.index(b"\xb5", at, head)
    fmt = ">f" if data[at + 1] == 0x84 else ">d"
    rate = slice(at + 2, at + 2 + struct.calcsize(fmt))
    assert struct.unpack(fmt, data[rate])[0] == 24_000.0
    out[rate] = struct.pack(fmt, 48_000.0)
    return bytes(out)


def test_a_live_he_aac_mka_whose_sampling_frequency_is_its_output_rate_is_whole(tmp_path):
    """The walk told an AAC block 1,024 samples at the track's SamplingFrequency: an HE-AAC track
    that stores its output rate there (48 kHz over a 24 kHz core) ended each cluster half a frame
    early, a gap after each, and a whole 12 s file was refused ('its Matroska timestamps span
    12.1 s, of which the file holds 11.8 s (gaps ...)'). The blocks' lengths are measured by their
    own timestamps' spacing where their codec's disagree; a lost cluster is still found."""
    path = _live(tmp_path, "lc", 12.0, "-ar", "24000", codec="aac", fmt="matroska")
    data = _he_aac_at_its_output_rate(path.read_bytes())
    he = tmp_path / "he.mka"
    he.write_bytes(data)
    assert audio.info(he).duration is None
    notes: list[str] = []
    assert abs(_decoded(he, notes) - 12.0) < 0.1 and notes == []
    walk = _matroska_walk(he)
    assert walk is not None and walk.gaps == 0 and abs(walk.span - 12.0) < 0.1, walk
    clusters = _clusters(data)
    cut = tmp_path / "cut.mka"
    cut.write_bytes(data[: clusters[3][0]] + data[clusters[4][0] :])
    with pytest.raises(AudioReadError, match=rf"span 12\.1 s, of which the file holds 11\.1 s {GAPS}"):
        _decoded(cut, [])


def test_the_blocks_lengths_are_stretched_only_by_a_ratio_most_clusters_show():
    """`_stretch`: blocks twice as long as their codec tells in every cluster (HE-AAC stored at its
    output rate) are stretched twice; timestamps rounded from a coarser file's, each a millisecond
    off one way or the other (2.5 ms blocks at a 22.7 us tick, 0.55 ms of tolerance), are not (the
    median of the ratios that disagree alone was 0.6: each block's end early, a gap after each
    cluster); nor is a gap inside one cluster of ten."""
    ms = 1_000_000
    assert abs(_stretch([(42_700_000, 21_330_000)] * 12, 2_500_000) - 2.0) < 0.01
    jitter = [(3 * ms // 2, 5 * ms // 2)] * 6 + [(7 * ms // 2, 5 * ms // 2)] * 5 + [(5 * ms // 2, 5 * ms // 2)] * 3
    assert _stretch(jitter, 545_000) == 1.0
    assert _stretch([(20 * ms, 20 * ms)] * 9 + [(1020 * ms, 20 * ms)], 2_500_000) == 1.0
    assert _stretch([], 2_500_000) == 1.0


@pytest.mark.skipif(shutil.which("mkvmerge") is None, reason="needs mkvmerge")
def test_a_file_that_declares_its_duration_without_a_duration_tag_keeps_its_length(tmp_path):
    """25c4361's _declares_duration read the Segment Info's body from where the read of its head had
    ended, 32 bytes on, not from its first child: it found no Duration in any file, so one that
    declares it in its Info but holds no DURATION tag (mkvmerge's with
    --disable-track-statistics-tags, a live file remuxed by it, GStreamer's) was taken for a live one:
    no length, and cut by 100 bytes inside its last block it was refused, 'would leave what it could
    not read out', where the 12 s it declares tell what is missing."""
    live = _live(tmp_path, "live", 12.0, codec="ac3", fmt="matroska")
    path = tmp_path / "remuxed.mka"
    subprocess.run(["mkvmerge", "-q", "--disable-track-statistics-tags", "--no-cues", "-o", path, live], check=True)
    assert b"DURATION" not in path.read_bytes()
    assert abs(audio.info(path).duration - 12.0) < 0.01
    cut = tmp_path / "cut.mka"
    cut.write_bytes(path.read_bytes()[:-100])
    notes: list[str] = []
    assert abs(_decoded(cut, notes) - 11.97) < 0.02
    assert len(notes) == 1 and notes[0].startswith("ffmpeg could not read all of the file (")
    assert notes[0].endswith("analysed without the rest (0.032 s of 12.0 s left out)"), notes


def _blocks(data: bytes, cluster: tuple[int, int]) -> list[tuple[int, int]]:
    """(start, end) of each SimpleBlock of the `cluster` (its start, its head's length) in `data`."""
    pos, hl = cluster
    end = pos + hl + _element(data, pos)[2]
    found, at = [], pos + hl
    while at < end:
        eid, head, size = _element(data, at)
        if eid == 0xA3:
            found.append((at, at + head + size))
        at += head + size
    return found


def _without(data: bytes, cluster: tuple[int, int], start: int, end: int) -> bytes:
    """`data` less its bytes `start` to `end`, inside the `cluster`, whose size is made to hold the
    rest (blocks a recorder never wrote, or a copy lost, its clusters told again)."""
    pos, hl = cluster
    size = _element(data, pos)[2] - (end - start)
    n = hl - 4
    return data[: pos + 4] + ((1 << (7 * n)) | size).to_bytes(n, "big") + data[pos + hl : start] + data[end:]


def _samples(path) -> float:
    """Seconds ffmpeg decodes of the file, without a word about what it passed over."""
    out = subprocess.run([*FF, "-i", path, "-f", "f32le", "-ac", "1", "-"], capture_output=True, check=True).stdout
    return len(out) / 4 / 48_000


@pytest.mark.parametrize("codec", ["libopus", "libvorbis"])
@pytest.mark.parametrize("how", ["blocks", "bytes"])
def test_blocks_missing_inside_a_cluster_are_gaps(tmp_path, codec, how):
    """The walk compared each cluster's first audio block with the previous cluster's last: blocks
    missing between two blocks of one cluster (ten of them, 0.2 s of a 12 s live WebM, its cluster's
    size told again; or 40 blocks' bytes cut out off their edges, the cluster's size as it was:
    damage, past which ffmpeg goes on at the next cluster) were passed over, and the file analysed as
    if whole, without a word. Each two audio blocks in a row are compared now; what is found missing
    is what ffmpeg does not decode."""
    path = _live(tmp_path, "live", 12.0, codec=codec)
    data = path.read_bytes()
    cluster = _clusters(data)[4]
    blocks = _blocks(data, cluster)
    assert len(blocks) > 40
    if how == "blocks":
        first, last = (20, 30) if codec == "libopus" else (len(blocks) // 2 - 5, len(blocks) // 2 + 5)
        cut = _without(data, cluster, blocks[first][0], blocks[last][0])
    else:
        cut = data[: blocks[5][0] + 7] + data[blocks[45][0] + 13 :]
    damaged = tmp_path / "damaged.webm"
    damaged.write_bytes(cut)
    walk = _matroska_walk(damaged)
    decoded = _samples(damaged)
    assert walk is not None and walk.gaps >= 1, walk
    assert abs(walk.lost - (_samples(path) - decoded)) < 0.025, (walk, decoded)
    with pytest.raises(AudioReadError, match=rf"span 12\.0 s, of which the file holds 1[01]\.\d s {GAPS}; nothing"):
        _decoded(damaged, [])


def test_frames_a_recording_dropped_inside_a_cluster_are_a_gap(tmp_path):
    """A recording whose timestamps jump 0.3 s 3.5 s in, inside a cluster of 1 s: analysed as the
    11.7 s it holds without a word; now refused, 0.3 s of 12 s being more than 1%."""
    path = _live(tmp_path, "jump", 11.7, "-af", "asetpts='if(gte(T,3.5),PTS+0.3/TB,PTS)'")
    assert abs(_samples(path) - 11.7) < 0.03
    with pytest.raises(AudioReadError, match=rf"span 12\.0 s, of which the file holds 11\.7 s {GAPS}; nothing"):
        _decoded(path, [])


def _retimed(data: bytes, block: int, ms: int) -> bytes:
    """`data` with the SimpleBlock at `block` stamped `ms` later (its relative timestamp: the two
    bytes after its track's one)."""
    eid, head, _ = _element(data, block)
    at = block + head + 1
    rel = int.from_bytes(data[at : at + 2], "big", signed=True) + ms
    return data[:at] + rel.to_bytes(2, "big", signed=True) + data[at + 2 :]


def test_timestamps_that_jitter_are_no_gap(tmp_path):
    """A block stamped 12 ms late whose next one is on time (a recorder's clock jitter) loses nothing:
    no note, inside a cluster or at its start (where the walk took a late first block for a gap of
    12 ms and noted it, the file whole)."""
    path = _live(tmp_path, "live", 12.0)
    data = path.read_bytes()
    clusters = _clusters(data)
    data = _retimed(data, _blocks(data, clusters[3])[25][0], 12)
    data = _retimed(data, _blocks(data, clusters[6])[0][0], 12)
    path.write_bytes(data)
    walk = _matroska_walk(path)
    assert walk is not None and walk.gaps == 0, walk
    notes: list[str] = []
    assert abs(_decoded(path, notes) - 12.0) < 0.03 and notes == []


def test_a_live_he_aac_mka_of_one_block_a_cluster_is_whole(tmp_path):
    """An HE-AAC track stored at its output rate whose clusters each hold one block (a muxer's
    cluster a frame): `_stretch` measured the blocks' lengths by two blocks of one cluster, of which
    there were none; each cluster ended half a frame early, and the whole file was refused ('its
    Matroska timestamps span 12.0 s, of which the file holds 6.0 s'). Blocks in a row across clusters
    are measured too; 24 clusters lost (1.02 s) are still found."""
    src = tmp_path / "a.wav"
    sf.write(src, tone_signal([FREQ["flute"], FREQ["bass"]], seconds=12.0, sr=48_000), 48_000)
    lc = tmp_path / "lc.mka"
    subprocess.run([*FF, "-i", src, "-ar", "24000", "-c:a", "aac", "-f", "matroska", "-live", "1",
                    "-cluster_time_limit", "1", "-cluster_size_limit", "1", lc], check=True)  # fmt: skip
    data = lc.read_bytes()
    clusters = _clusters(data)
    data = _he_aac_at_its_output_rate(data[: clusters[-1][0]])  # (its last cluster holds two blocks)
    clusters = _clusters(data)
    assert all(len(_blocks(data, c)) == 1 for c in clusters)
    he = tmp_path / "he.mka"
    he.write_bytes(data)
    notes: list[str] = []
    assert abs(_decoded(he, notes) - 12.0) < 0.05 and notes == []
    cut = tmp_path / "cut.mka"
    cut.write_bytes(data[: clusters[100][0]] + data[clusters[124][0] :])
    assert abs(_matroska_walk(cut).lost - 24 * 2048 / 48_000) < 0.002
    with pytest.raises(AudioReadError, match=rf"span 12\.0 s, of which the file holds 11\.0 s {GAPS}"):
        _decoded(cut, [])


@pytest.mark.parametrize("where", ["last cluster", "middle", "mediarecorder"])
def test_a_live_webm_cut_inside_its_last_cluster_is_analysed_as_what_it_holds(tmp_path, where):
    """A live WebM that ends inside a cluster, not in its last element (a recording stopped by a
    crash, a copy that stopped: cut inside the 14th of its last cluster's 26 blocks, in the middle of
    the file, or a MediaRecorder's, its clusters of unknown size, cut inside a block) was refused,
    'ffmpeg could not read all of the file (...); nothing stored, as a result would leave what it
    could not read out', its audio before the cut whole. As an Ogg file missing its last pages, it is
    analysed as what it holds, the note saying so; an error for a caller that takes no notes."""
    path = _live(tmp_path, "live", 12.5)
    data = path.read_bytes()
    clusters = _clusters(data)
    if where == "last cluster":
        end, holds = _blocks(data, clusters[-1])[13][0] + 50, 12.24
    elif where == "middle":
        end, holds = clusters[6][0] + 3000, 6.23
    else:
        end, holds = _blocks(data, clusters[-1])[13][0] + 50, 12.24
        data = _unknown_sizes(data)
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[:end])
    notes: list[str] = []
    assert abs(_decoded(cut, notes) - holds) < 0.03
    assert notes == [f"the file ends inside a Matroska cluster (its last blocks missing or cut): cut short (a "
                     f"recording or copy that stopped?), analysed as the {holds:.1f} s it holds; how much is missing "
                     "is not known"]  # fmt: skip
    with pytest.raises(AudioReadError, match="cut short: the file ends inside a Matroska cluster, a recording or copy "
                                             "that stopped; nothing stored, as how much is missing is not known"):
        list(audio.stream(cut))


@pytest.mark.parametrize("codec", ["flac", "truehd"])
def test_a_live_flac_or_truehd_mka_missing_a_cluster_is_refused(tmp_path, codec):
    """FLAC and TrueHD blocks were not walked (their samples not told), so a live MKA of either
    missing its 5th cluster (1 s of 12) was analysed as an 11 s track without a word, ffmpeg passing
    over the gap as it does Opus's. A FLAC frame's header tells its samples, a TrueHD access unit is
    40 of them (at 44.1 or 48 kHz): the gap is found."""
    path = _live(tmp_path, "live", 12.0, *(("-strict", "-2") if codec == "truehd" else ()), codec=codec, fmt="matroska")
    data = path.read_bytes()
    clusters = _clusters(data)
    cut = tmp_path / "cut.mka"
    cut.write_bytes(data[: clusters[4][0]] + data[clusters[5][0] :])
    assert _samples(cut) < 11.1
    with pytest.raises(AudioReadError, match=rf"span 12\.0 s, of which the file holds 11\.0 s {GAPS}; nothing"):
        _decoded(cut, [])


@pytest.mark.parametrize("clusters", ["known sizes", "mediarecorder"])
@pytest.mark.parametrize("appended", [b"\n", bytes(10), b"TAG" + b"a title".ljust(30, b"\0") + bytes(95)],
                         ids=["newline", "zeros", "id3v1"])
def test_bytes_appended_to_a_whole_live_webm_are_no_cut(tmp_path, clusters, appended):
    """A whole live WebM followed by a few bytes that are no element (a newline, zeros, an ID3v1 tag
    another tool appended) was noted 'the file ends inside a Matroska cluster ...: cut short' and
    refused for a caller that takes no notes (since d89202c; the walk took them for an element's
    head cut, or an element running past the file's end). Its audio is whole: analysed without a
    word. The file cut through the head of a cluster after its last is still cut."""
    path = _live(tmp_path, "live", 6.0)
    data = path.read_bytes()
    last = _clusters(data)[-1][0]
    if clusters == "mediarecorder":
        data = _unknown_sizes(data)
    path.write_bytes(data + appended)
    notes: list[str] = []
    assert abs(_decoded(path, notes) - 6.0) < 0.03
    assert notes == []
    assert abs(_decoded(path, None) - 6.0) < 0.03
    walk = _matroska_walk(path)
    assert not walk.cut and walk.gaps == 0, walk
    cut = tmp_path / "cut.webm"
    cut.write_bytes(data[: last + 2])  # (the last cluster's ID, half of it)
    assert _matroska_walk(cut).cut
