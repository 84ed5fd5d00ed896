"""The scan pipeline on real audio files in several formats, with a deterministic analyser."""

from __future__ import annotations

import os
import shutil
import sys

import numpy as np
import pytest
from sqlalchemy import func, select

from conftest import ffmpeg_demuxers, module_file, track_instruments, track_rows
from library_fakes import BROKEN, EXPECTED, FREQ, FakeAnalyser, make_library
from tagger.db import models as M
from tagger.db.queries import find_tracks, prune_missing, track_detail
from tagger.db.session import open_database
from tagger.errors import UntaggableError
from tagger.crawl import crawl, sniff_audio
from tagger.fingerprint import content_hash, fingerprint
from tagger.library.scan import scan
from tagger.tags import write_instruments


@pytest.fixture(scope="module")
def library_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("template") / "music"
    make_library(root)
    return root


@pytest.fixture
def lib(tmp_path, library_template):
    """A fresh copy of the template library (tests modify it) and its file map."""
    root = tmp_path / "music"
    shutil.copytree(library_template, root, symlinks=True)
    files = {rel: str(root / rel) for rel in [*EXPECTED, BROKEN]}
    return root, files


def _status(db) -> dict[str, str]:
    with db.session() as s:
        return dict(s.execute(select(M.Track.path, M.Track.status)).all())


def test_crawl_finds_audio_by_extension_and_content_skips_hidden_and_loops(lib):
    root, files = lib
    found = sorted(str(p) for p in crawl([root]))
    assert found == sorted(files.values())
    with_hidden = [str(p) for p in crawl([root], include_hidden=True)]
    assert str(root / ".hidden" / "secret.wav") in with_hidden
    assert len(with_hidden) == len(found) + 1


def test_every_extension_a_tag_container_names_is_crawled():
    """A file named as a format tagger writes tags into is one the crawler takes as audio
    (`AUDIO_EXTENSIONS`, read from `AUDIO_FORMATS`): a container's extension never goes unscanned."""
    from tagger.audio.formats import AUDIO_EXTENSIONS
    from tagger.tags.storage import FORMATS

    named = {ext for fmt in FORMATS.values() for ext in fmt.extensions}
    assert {".mp3", ".flac", ".m4a", ".wv"} <= named  # (the registry was read)
    assert named <= AUDIO_EXTENSIONS, named - AUDIO_EXTENSIONS


@pytest.mark.parametrize("ext", ["mod", "xm", "s3m", "it"])
def test_a_tracker_module_in_the_library_is_scanned(tmp_path, db, ext):
    """Modules decode through ffmpeg's libopenmpt, a demuxer tagger allowed, but the crawler took
    no module by its extension (nor by its first bytes: a MOD's signature lies at byte 1080): a .mod
    in the library was never scanned. It is analysed now, and stored as a track (its instruments in
    the database: a module holds no tags tagger writes)."""
    if "libopenmpt" not in ffmpeg_demuxers():
        pytest.skip("needs ffmpeg with libopenmpt")
    music = tmp_path / "music"
    music.mkdir()
    path = module_file(music / f"tune.{ext}")  # (a MOD's bytes under each name: libopenmpt reads them by content)
    assert [str(p) for p in crawl([music])] == [str(path)]
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (summary.scanned, summary.failed) == (1, 0)
    assert track_rows(db) == {str(path): ("ok", None)}
    with db.session() as s:
        assert abs(s.execute(select(M.Track.duration)).scalar_one() - 7.68) < 0.2
    with pytest.raises(UntaggableError):
        write_instruments(path, instruments=["keyboard"], model_version="v1")


def test_sniff_audio_signatures():
    assert sniff_audio(b"RIFF\x00\x00\x00\x00WAVEfmt ")
    assert sniff_audio(b"fLaC\x00\x00")
    assert sniff_audio(b"ID3\x04\x00")
    assert sniff_audio(b"\x00\x00\x00\x20ftypM4A \x00")
    assert sniff_audio(b"wvpk\x3a\x00\x00\x00")  # WavPack
    assert sniff_audio(b"MAC \x96\x0f\x00\x00")  # Monkey's Audio
    assert sniff_audio(b"MPCK\x53\x48")  # Musepack SV8
    assert sniff_audio(b"TTA1\x01\x00\x02\x00")
    assert sniff_audio(b"DSD \x1c\x00\x00\x00")
    assert sniff_audio(b"riff" + bytes.fromhex("2e91cf11a5d628db04c10000"))  # Wave64
    assert not sniff_audio(b"riffraff and more")
    assert not sniff_audio(b"\xff\xd8\xff\xe0JFIF")
    assert not sniff_audio(b"hello world")


def test_fingerprint_follows_content_not_name(tmp_path):
    data = bytearray(os.urandom(500_000))
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(data)
    b.write_bytes(data)
    assert fingerprint(a) == fingerprint(b)
    data[250_000] ^= 0xFF  # inside the middle chunk
    b.write_bytes(data)
    assert fingerprint(a) != fingerprint(b)
    small = tmp_path / "s.bin"
    small.write_bytes(b"x" * 10)
    assert len(fingerprint(small)) == 32 and fingerprint(small) != fingerprint(a)


def test_content_hash_reads_the_whole_file(tmp_path):
    import hashlib

    from tagger.errors import AudioReadError

    data = bytearray(os.urandom(3_000_000))  # several read blocks
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(data)
    assert content_hash(a) == hashlib.blake2b(bytes(data), digest_size=16).hexdigest()
    data[100_000] ^= 0xFF  # outside the fingerprint's three chunks
    b.write_bytes(data)
    assert fingerprint(a) == fingerprint(b) and content_hash(a) != content_hash(b)
    with pytest.raises(AudioReadError, match="gone.bin"):
        content_hash(tmp_path / "gone.bin")


def test_scan_detects_the_right_instruments_in_every_format(lib, db):
    root, files = lib
    summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.found == len(files)
    assert summary.scanned == len(EXPECTED) and summary.failed == 1
    assert summary.skipped == 0
    assert summary.audio_seconds == pytest.approx(9 + 6 + 10 + 6 + 8 + 5 + 5 + 4 + 5 + 5, abs=0.3)
    assert track_instruments(db) == {files[rel]: fams for rel, fams in EXPECTED.items()}
    with db.session() as s:
        detail = track_detail(s, path=files["sub/string.mp3"])
        assert detail.format == "MP3" and detail.channels == 1
        string = next(f for f in detail.families if f.family == "string")
        # 6 s of tone then 4 s of silence: windows 0-4 and 4-8 play, 8-10 is silent.
        assert string.present and string.coverage == 1.0 and string.segments == [[0.0, 8.0]]
        assert detail.windows == 3 and detail.silent_windows == 1
        silent = track_detail(s, path=files["silence.wav"])
        assert silent.status == "ok" and silent.instruments == [] and silent.silent_windows == silent.windows == 2
        broken = track_detail(s, path=files[BROKEN])
        assert broken.status == "error" and broken.error and broken.families == []
        assert s.scalar(select(func.count()).select_from(M.Scan).where(M.Scan.finished_at.is_not(None))) == 1


def test_worker_processes_give_the_same_results_as_inline(lib, tmp_path):
    root, files = lib
    results = []
    for jobs in (0, 2):
        database = open_database(tmp_path / f"jobs{jobs}.db")
        summary = scan([root], db=database, analyser=FakeAnalyser(), jobs=jobs, predict_batch=8)
        assert (summary.scanned, summary.failed) == (len(EXPECTED), 1)
        with database.session() as s:
            results.append({t.path: (t.instruments, t.scores) for t in find_tracks(s)})
        database.close()
    assert results[0] == results[1]


def test_rescan_skips_unchanged_files(lib, db):
    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    again = FakeAnalyser()
    summary = scan([root], db=db, analyser=again, jobs=0)
    assert (summary.scanned, summary.failed, summary.skipped) == (0, 0, len(files))
    assert again.calls == 0
    retry = scan([root], db=db, analyser=FakeAnalyser(), jobs=0, retry_errors=True)
    assert (retry.scanned, retry.failed, retry.skipped) == (0, 1, len(files) - 1)


def test_changed_content_is_reanalysed_and_touch_is_not(lib, db):
    from conftest import tone_signal, write_audio

    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    st = os.stat(files["bass.wav"])
    os.utime(files["duo.flac"], (st.st_atime + 100, st.st_mtime + 100))  # touched only
    write_audio(files["bass.wav"], tone_signal([4000.0], seconds=9.0))  # same size, new content
    assert os.stat(files["bass.wav"]).st_size == st.st_size
    summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and summary.skipped == len(files) - 1
    inst = track_instruments(db)
    assert inst[files["bass.wav"]] == ["string"]
    assert inst[files["duo.flac"]] == ["bass", "flute"]
    with db.session() as s:
        mtime = s.scalar(select(M.Track.mtime).where(M.Track.path == files["duo.flac"]))
    assert mtime == os.stat(files["duo.flac"]).st_mtime


def test_moved_and_renamed_files_keep_their_results_without_reanalysis(lib, db):
    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    with db.session() as s:
        old_id = s.scalar(select(M.Track.id).where(M.Track.path == files["sub/flute.m4a"]))
    new = root / "elsewhere" / "renamed flute.m4a"
    new.parent.mkdir()
    os.rename(files["sub/flute.m4a"], new)
    spy = FakeAnalyser()
    summary = scan([root], db=db, analyser=spy, jobs=0)
    assert summary.moved == 1 and summary.scanned == 0 and summary.missing == 0
    assert spy.calls == 0
    status = _status(db)
    assert files["sub/flute.m4a"] not in status and status[str(new)] == "ok"
    with db.session() as s:
        assert s.scalar(select(M.Track.id).where(M.Track.path == str(new))) == old_id
        assert track_detail(s, path=str(new)).instruments == ["flute"]


def _stems(root, sr=16_000, seconds=20):
    """Stems of one song: same length and format, silent where the fingerprint reads (start, middle,
    end), different audio elsewhere, so one fingerprint: flute, bass and string parts."""
    import soundfile as sf

    t = np.arange(sr * seconds) / sr
    playing = ((t > 3) & (t < 8)) | ((t > 12) & (t < 17))  # silent at 0-3 s, 8-12 s, 17-20 s
    root.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, fam in (("one.wav", "flute"), ("two.wav", "bass"), ("three.wav", "string")):
        out[fam] = root / name
        sf.write(out[fam], (0.5 * np.sin(2 * np.pi * FREQ[fam] * t) * playing).astype(np.float32), sr, subtype="PCM_16")
    assert len({fingerprint(p) for p in out.values()}) == 1 and len({p.read_bytes() for p in out.values()}) == 3
    return out


def test_moved_files_whose_fingerprints_agree_keep_their_own_results(tmp_path, db):
    """Stems moved together: each new path matches every gone stem by fingerprint; the whole-content
    hash stored at analysis tells which one it is, so each keeps its own results, not another's."""
    root = tmp_path / "music"
    stems = _stems(root / "stems")
    one, two = stems["flute"], stems["bass"]
    stems["string"].unlink()
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert track_instruments(db) == {str(one): ["flute"], str(two): ["bass"]}
    # the folder is reorganised: the names now sort the other way round
    (root / "moved").mkdir()
    os.rename(one, root / "moved" / "2.wav")
    os.rename(two, root / "moved" / "1.wav")
    spy = FakeAnalyser()
    summary = scan([root], db=db, analyser=spy, jobs=0)
    assert summary.moved == 2 and summary.scanned == 0 and summary.missing == 0 and spy.calls == 0
    found = track_instruments(db)
    assert found == {str(root / "moved" / "1.wav"): ["bass"], str(root / "moved" / "2.wav"): ["flute"]}


def test_a_new_file_sharing_a_gone_files_fingerprint_is_not_taken_for_it(tmp_path, db):
    """One stem deleted and another of the same length added in the same interval: the fingerprint
    matches the one gone track, but the whole content does not: analysed as new, the gone track
    goes missing, and the new file does not get (or have written into its tags) the old results."""
    root = tmp_path / "music"
    stems = _stems(tmp_path / "all")
    (root / "a").mkdir(parents=True)
    shutil.copy2(stems["flute"], root / "a" / "part.wav")
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert track_instruments(db) == {str(root / "a" / "part.wav"): ["flute"]}
    os.remove(root / "a" / "part.wav")
    shutil.copy2(stems["bass"], root / "a" / "bass part.wav")
    spy = FakeAnalyser()
    summary = scan([root], db=db, analyser=spy, jobs=0)
    assert summary.moved == 0 and summary.scanned == 1 and summary.missing == 1 and spy.calls > 0
    assert track_instruments(db) == {str(root / "a" / "bass part.wav"): ["bass"]}
    assert _status(db)[str(root / "a" / "part.wav")] == "missing"
    # the same content moved alone is still a move, after a tag write too (its hash is refreshed)
    from tagger.library.scan import tag_writer

    scan([root], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    with db.session() as s:
        row = s.scalar(select(M.Track).where(M.Track.path == str(root / "a" / "bass part.wav")))
        assert row.tags_current and row.content_hash == content_hash(root / "a" / "bass part.wav")
    os.rename(root / "a" / "bass part.wav", root / "bass again.wav")
    spy = FakeAnalyser()
    summary = scan([root], db=db, analyser=spy, jobs=0)
    assert summary.moved == 1 and summary.scanned == 0 and spy.calls == 0
    assert track_instruments(db) == {str(root / "bass again.wav"): ["bass"]}


def test_tracks_stored_before_content_hashes_move_by_fingerprint_alone(tmp_path, db):
    """Rows from before revision 0005 hold no content hash (nor an audio digest, revision 0010): one
    gone candidate is taken as before (nothing else can be compared); two or more leave the file to
    be analysed as new."""
    root = tmp_path / "music"
    stems = _stems(root / "stems")
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    with db.session() as s:
        s.execute(M.Track.__table__.update().values(content_hash=None, audio_digest=None))
    os.rename(stems["flute"], root / "flute.wav")
    summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.moved == 1 and summary.scanned == 0
    assert track_instruments(db)[str(root / "flute.wav")] == ["flute"]
    with db.session() as s:
        s.execute(M.Track.__table__.update().values(content_hash=None, audio_digest=None))
    (root / "moved").mkdir()
    os.rename(stems["bass"], root / "moved" / "2.wav")
    os.rename(stems["string"], root / "moved" / "1.wav")
    summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.moved == 0 and summary.scanned == 2 and summary.missing == 2
    found = track_instruments(db)
    assert found[str(root / "moved" / "1.wav")] == ["string"] and found[str(root / "moved" / "2.wav")] == ["bass"]
    with db.session() as s:  # analysed again: their hashes are stored now
        for name in ("1.wav", "2.wav"):
            path = root / "moved" / name
            assert s.scalar(select(M.Track.content_hash).where(M.Track.path == str(path))) == content_hash(path)


def test_a_copy_gets_the_results_of_its_original(lib, db):
    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    copy = root / "copy of duo.flac"
    shutil.copy2(files["duo.flac"], copy)
    spy = FakeAnalyser()
    summary = scan([root], db=db, analyser=spy, jobs=0)
    assert summary.copied == 1 and summary.scanned == 0 and spy.calls == 0
    assert track_instruments(db)[str(copy)] == ["bass", "flute"]


def test_deleted_files_are_marked_missing_then_pruned(lib, db):
    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    kept = root.parent / "kept.ogg"
    shutil.move(files["sub/deeper/trio.ogg"], kept)
    os.remove(files["bass.wav"])
    summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.missing == 2
    status = _status(db)
    assert status[files["bass.wav"]] == status[files["sub/deeper/trio.ogg"]] == "missing"
    assert files["bass.wav"] not in track_instruments(db)
    with db.session() as s:
        assert track_detail(s, path=files["bass.wav"]).status == "missing"
        assert s.scalar(select(M.Track.missing_since).where(M.Track.path == files["bass.wav"])) is not None
    # The file comes back (moved back in): recognised, not re-analysed, no longer missing.
    shutil.move(kept, root / "trio again.ogg")
    spy = FakeAnalyser()
    back = scan([root], db=db, analyser=spy, jobs=0)
    assert back.moved == 1 and spy.calls == 0
    assert track_instruments(db)[str(root / "trio again.ogg")] == ["bass", "flute", "string"]
    with db.session() as s:
        assert prune_missing(s).removed == [files["bass.wav"]]
    assert files["bass.wav"] not in _status(db)
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(M.Detection)) == 3 * (len(EXPECTED) - 1)


def test_scanning_a_subfolder_does_not_mark_the_rest_missing(lib, db):
    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    summary = scan([root / "sub"], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.missing == 0 and summary.found == 3
    assert set(_status(db).values()) == {"ok", "error"}


def test_new_model_version_makes_results_stale_until_rescan_stale(lib, db):
    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(version="v1"), jobs=0)
    v2 = FakeAnalyser(version="v2")
    summary = scan([root], db=db, analyser=v2, jobs=0)
    assert summary.stale == len(EXPECTED) and summary.scanned == 0 and v2.calls == 0
    with db.session() as s:
        tracks = find_tracks(s)
        assert all(t.stale and t.model_version == "v1" for t in tracks)
    redo = scan([root], db=db, analyser=FakeAnalyser(version="v2"), jobs=0, rescan_stale=True)
    assert redo.scanned == len(EXPECTED) and redo.stale == 0 and redo.failed == 0
    with db.session() as s:
        tracks = find_tracks(s)
        assert all(not t.stale and t.model_version == "v2" for t in tracks)
        versions = s.execute(select(M.ModelVersion.version, M.ModelVersion.thresholds)).all()
    assert [v for v, _ in versions] == ["v1", "v2"]
    assert '"bass": 0.5' in versions[0][1]
    assert track_instruments(db) == {files[rel]: fams for rel, fams in EXPECTED.items()}


def test_every_track_row_is_whole(lib, db):
    """Detections: one per family per analysed track; segments only where a family is detected."""
    root, _ = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0, commit_every=1)
    with db.session() as s:
        for t in s.scalars(select(M.Track).where(M.Track.status == "ok")):
            assert sorted(d.family for d in t.detections) == ["bass", "flute", "string"]
            fams_with_segments = {g.family for g in t.segments}
            assert fams_with_segments <= {d.family for d in t.detections if d.coverage > 0}
            assert all(0 <= g.start < g.end <= t.duration + 1e-6 for g in t.segments)


def test_scan_reports_progress(lib, db):
    root, files = lib
    seen = []
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0, progress=seen.append)
    analyse = [p for p in seen if p.phase == "analyse"]
    assert analyse[-1].files_done == analyse[-1].files_total == len(files)
    assert analyse[-1].audio_seconds > 50 and analyse[-1].realtime_factor > 0
    assert [p.files_done for p in analyse] == sorted(p.files_done for p in analyse)
    # the check phase ends on every file found (its reports are 0.2 s apart: its bar closed on the
    # last one's count, `check: 1file` after 25 files, found walking through the README)
    plan = [p for p in seen if p.phase == "plan"]
    assert plan[-1].files_done == len(files) and seen.index(plan[-1]) < seen.index(analyse[0])


def test_fake_analyser_scores_follow_frequency_bands():
    from tagger import features as F
    from conftest import tone_signal

    fake = FakeAnalyser()
    w = np.stack([tone_signal([110.0], seconds=4.0), tone_signal([4000.0], seconds=4.0)])
    p = fake.predict_features(F.compute(windows=w, config=fake.feature_config))
    assert p[0, 0] > 0.9 and p[0, 1] < 0.2 and p[1, 2] > 0.9 and p[1, 0] < 0.2


def test_scan_can_write_tags_and_the_next_scan_sees_the_file_unchanged(tmp_path, db):
    from conftest import tone_signal, write_audio
    from tagger import tags
    from tagger.library.scan import tag_writer

    music = tmp_path / "tagged"
    f = write_audio(music / "duo.flac", tone_signal([110.0, 1000.0], seconds=5.0))
    dry = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1", dry_run=True))
    assert dry.tags_written == 1 and not tags.read_instruments(f).tagged
    redo = scan([music], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0, rescan_stale=True,
                on_track=tag_writer(model_version="fake-2"))  # fmt: skip
    assert redo.scanned == 1 and redo.tags_written == 1 and redo.tag_errors == 0
    state = tags.read_instruments(f)
    assert state.instruments == ["bass", "flute"] and state.model_version == "fake-2"
    again = scan([music], db=db, analyser=FakeAnalyser(version="fake-2"), jobs=0)
    assert (again.scanned, again.skipped) == (0, 1)
    with db.session() as s:
        row = s.scalar(select(M.Track).where(M.Track.path == str(f)))
        assert (row.size, row.fingerprint) == (os.stat(f).st_size, fingerprint(f))


@pytest.mark.parametrize("ext,codec", [("tta", "tta"), ("mka", "flac"), ("webm", "libopus"), ("caf", "pcm_s16le")])
def test_lossless_and_matroska_files_are_scanned_and_formats_without_tags_do_not_fail_the_scan(tmp_path, db, ext, codec):
    """TTA, Matroska/WebM audio (what downloaders save) and CAF files were not crawled at all:
    a collection of them was passed over without a word. A format tagger cannot write tags into is
    analysed and stored; the scan says so once and does not fail (exit 0), and the next scan does
    not try again (a cron job would otherwise see every scan fail)."""
    import subprocess

    from conftest import tone_signal, write_audio
    from tagger.library.scan import tag_writer

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    music = tmp_path / "music"
    src = write_audio(tmp_path / "src.wav", tone_signal([110.0], seconds=5.0))
    f = music / f"bass.{ext}"
    music.mkdir()
    proc = subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", codec, str(f)], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"ffmpeg cannot encode {ext}")
    assert [str(p) for p in crawl([music])] == [str(f)]
    before = f.read_bytes()
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert summary.scanned == 1 and summary.ok and summary.tag_errors == 0
    assert [p for p, _ in summary.untaggable] == [str(f)] and "unsupported format" in summary.untaggable[0][1]
    assert track_instruments(db) == {str(f): ["bass"]} and f.read_bytes() == before
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert again.skipped == 1 and again.untaggable == [] and again.ok



def test_an_rf64_wav_file_is_a_format_without_tags_not_a_failure(tmp_path, db):
    """RF64 (the WAV of field recorders and DAWs past 4 GB, some always) is analysed, but mutagen
    cannot tag it ("Root chunk must be a RIFF chunk"): its tag write failed on every scan, and every
    scan exited 1. It is a format without tags: stored, said once, not a failure, left byte for byte."""
    import subprocess

    from tagger.library.scan import tag_writer

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    music = tmp_path / "music"
    music.mkdir()
    f = music / "bass.wav"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=110:duration=5",
                    "-rf64", "always", str(f)], check=True)  # fmt: skip
    before = f.read_bytes()
    assert before[:4] == b"RF64"
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (summary.scanned, summary.tag_errors) == (1, 0) and summary.ok
    assert [p for p, _ in summary.untaggable] == [str(f)] and "RF64" in summary.untaggable[0][1]
    assert track_instruments(db) == {str(f): ["bass"]} and f.read_bytes() == before

def _wavpack_duo(tmp_path, music):
    """A WavPack file of two tones (the fake analyser hears bass and flute) in a new folder `music`."""
    import subprocess

    from conftest import tone_signal, write_audio

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    music.mkdir()
    src = write_audio(tmp_path / "src.wav", tone_signal([110.0, 1000.0], seconds=5.0))
    f = music / "duo.wv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "wavpack", str(f)], check=True)
    return f


def test_a_file_in_a_format_without_tags_is_tagged_once_a_later_tagger_can(tmp_path, db, monkeypatch):
    """A file found in a format without tags was stored as if its tags were current, for ever: a
    later tagger that learned the format (as this one learned WavPack) never wrote its tags without
    a forced rescan. The track is marked with what the tagger that found it could tag; a tagger that
    can tag more tries it again, once; the same tagger never does."""
    from tagger import tags
    from tagger.library.scan import tag_writer
    from tagger.tags.storage import STORAGES

    music = tmp_path / "music"
    f = _wavpack_duo(tmp_path, music)
    before = f.read_bytes()
    with monkeypatch.context() as old_tagger:  # a tagger that could not tag WavPack
        old_tagger.delitem(STORAGES, "WavPack")
        first = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
        assert [p for p, _ in first.untaggable] == [str(f)] and first.ok and f.read_bytes() == before
        same = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
        assert (same.skipped, same.untaggable, same.tags_written) == (1, [], 0)  # the same tagger: not again
    with db.session() as s:
        assert s.scalar(select(M.Track.untaggable_formats)) not in (None, "")
    nothing = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)  # a scan without tag writes: leaves the mark
    assert nothing.skipped == 1
    later = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (later.scanned, later.tags_written, later.untaggable) == (0, 1, []) and later.ok
    assert tags.read_instruments(f).instruments == ["bass", "flute"] == track_instruments(db)[str(f)]
    with db.session() as s:
        assert s.execute(select(M.Track.untaggable_formats, M.Track.tags_current)).one() == (None, True)
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (again.skipped, again.tags_written) == (1, 0)


def test_a_wavpack_file_is_scanned_and_tagged(tmp_path, db):
    """WavPack files were passed over by the crawl; now they are analysed and their APEv2 tag written."""
    from tagger import tags
    from tagger.library.scan import tag_writer

    music = tmp_path / "music"
    f = _wavpack_duo(tmp_path, music)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (summary.scanned, summary.tags_written, summary.untaggable) == (1, 1, []) and summary.ok
    assert tags.read_instruments(f).instruments == ["bass", "flute"] == track_instruments(db)[str(f)]
    again = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (again.scanned, again.skipped) == (0, 1)



def test_a_wavpack_correction_file_is_not_a_track(tmp_path, db):
    """A hybrid WavPack file comes with a correction file (``.wvc``) beside it, which starts with a
    WavPack block header but holds no audio of its own: the crawl sniffed it as audio, and every scan
    reported it as a file ffmpeg could not decode (the scan failed). It is a companion file, passed over."""
    import subprocess

    from conftest import tone_signal, write_audio

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    music = tmp_path / "music"
    music.mkdir()
    src = write_audio(tmp_path / "src.wav", tone_signal([110.0], seconds=5.0))
    f = music / "bass.wv"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "wavpack", str(f)], check=True)
    correction = music / "bass.wvc"
    correction.write_bytes(f.read_bytes()[:32] + bytes(4096))  # a block header, then no audio ffmpeg reads
    assert [str(p) for p in crawl([music])] == [str(f)]
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (summary.scanned, summary.errors) == (1, []) and summary.ok

def test_a_model_with_an_extra_family_tags_queries_and_retags_it(tmp_path, db):
    """A family the canonical list does not know (``ukulele``) is checked against the model that
    produced the result: the scan writes its tag, ``query --has ukulele`` and ``tag`` accept it."""
    from conftest import tone_signal, write_audio
    from library_fakes import UKULELE_BANDS
    from tagger import tags
    from tagger.db.filter import TrackFilter
    from tagger.db import writes
    from tagger.db.queries import find_tracks
    from tagger.library.scan import tag_writer

    music = tmp_path / "uke"
    f = write_audio(music / "uke.flac", tone_signal([440.0], seconds=5.0))
    model = FakeAnalyser(version="uke-1", bands=UKULELE_BANDS)
    summary = scan([music], db=db, analyser=model, jobs=0, on_track=tag_writer(model_version="uke-1", scores=True))
    assert summary.ok and summary.tags_written == 1, summary.errors
    state = tags.read_instruments(f)
    assert state.instruments == ["ukulele"] and set(state.scores) == set(UKULELE_BANDS)
    with db.session() as s:
        assert [t.path for t in find_tracks(s, where=TrackFilter.of(has=["ukulele"]))] == [str(f)]
    removed = tags.remove_instruments(f)
    assert removed.written
    with db.session() as s:
        writes.record_rewrite(s, path=removed.path, size=removed.size, mtime=removed.mtime)
    results = list(tags.tag_from_database(db, where=TrackFilter.of(has=["ukulele"]), scores=True))
    assert [r.written for r in results] == [True], results
    assert tags.read_instruments(f).instruments == ["ukulele"]


class _Interrupting(FakeAnalyser):
    def predict_features(self, feats):
        if self.calls >= 3:
            raise KeyboardInterrupt
        return super().predict_features(feats)


def test_interrupted_scan_keeps_whole_tracks_and_resumes(lib, db):
    root, files = lib
    with pytest.raises(KeyboardInterrupt):
        scan([root], db=db, analyser=_Interrupting(), jobs=0, commit_every=1, predict_batch=1)
    with db.session() as s:
        stored = s.scalar(select(func.count()).select_from(M.Track).where(M.Track.status == "ok"))
        rows = s.scalar(select(func.count()).select_from(M.Track))
        assert 1 <= stored < len(EXPECTED)
        assert s.scalar(select(func.count()).select_from(M.Detection)) == 3 * stored
    summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.skipped == rows
    assert summary.scanned + summary.failed == len(files) - rows
    assert track_instruments(db) == {files[rel]: fams for rel, fams in EXPECTED.items()}


def test_missing_folder_is_a_user_error(tmp_path, db):
    from tagger.errors import UserError

    with pytest.raises(UserError, match="no such file or folder"):
        scan([tmp_path / "nope"], db=db, analyser=FakeAnalyser(), jobs=0)


def test_folder_condition_matches_the_folder_only(db):
    from tagger.library.scan import _under

    paths = ["/m/sub/a.mp3", "/m/sub/deep/b.mp3", "/m/sub2/c.mp3", "/m/sub", "/m/su", "/m/Sub/d.mp3"]
    with db.session() as s:
        for i, p in enumerate(paths):
            s.add(M.Track(path=p, size=1, mtime=1.0, fingerprint=str(i)))
        s.flush()
        got = sorted(s.scalars(select(M.Track.path).where(_under("/m/sub", s))))
    assert got == ["/m/sub", "/m/sub/a.mp3", "/m/sub/deep/b.mp3"]


def test_a_crashed_worker_fails_its_file_and_is_replaced(db, tmp_path):
    import multiprocessing as mp
    from collections import deque

    from tagger.db.scan_writer import FileState, ScanWriter
    from tagger.library import scan as S
    from tagger.library.messages import Started
    from tagger.library.runner import Runner
    from tagger.library.workers import Worker

    class DeadProc:
        pid, exitcode = 4242, -11

        def is_alive(self):
            return False

    with db.session() as s:
        mv = S.register_model(s, FakeAnalyser())
        row = M.Scan(model_version_id=mv.id)
        s.add(row)
        s.flush()
        scan_id, mv_id = row.id, mv.id
    summary = S.ScanSummary(scan_id=scan_id, model_version="fake-1")
    writer = ScanWriter(db=db, scan_id=scan_id, model_version_id=mv_id, summary=summary, commit_every=1, commit_seconds=1)
    runner = Runner(analyser=FakeAnalyser(), writer=writer, predict_batch=4, on_track=None, progress=None, total=1, t0=0)
    path = str(tmp_path / "crash.mp3")  # (a file that is still there, as the planning found it: its crash is its error)
    with open(path, "wb") as f:
        f.write(b"\xff\xfb" + bytes(8))
    runner.pending[0] = runner.new_pending(FileState.of(path, os.stat(path), fingerprint(path), None))
    started = []

    def dead_worker(*claims):
        """A dead worker whose pipe holds its `claims` (`Started` messages), then ends."""
        ours, theirs = mp.get_context("spawn").Pipe()
        for claim in claims:
            theirs.send(claim)
        theirs.close()
        w = Worker(DeadProc(), ours)
        w.sent.extend(c.task_id for c in claims)
        return w

    workers = [dead_worker(Started(0, 4242))]
    runner._check_workers(workers, deque(), lambda: started.append(1) or "new")
    writer.finish()
    assert workers == ["new"] and started == [1] and not runner.pending
    assert summary.failed == 1
    with db.session() as s:
        track = s.scalar(select(M.Track).where(M.Track.path == path))
        assert track.status == "error" and "crashed" in track.error and "-11" in track.error
    # Workers that keep dying without a file end the scan with our error instead of looping forever.
    from tagger.errors import TaggerError

    with pytest.raises(TaggerError, match="keep exiting"):
        for _ in range(5):
            runner._check_workers([dead_worker()], deque(), lambda: "new")


def test_quick_trusts_size_mtime_and_ctime_and_the_default_reads_the_fingerprint(lib, db, monkeypatch):
    from conftest import tone_signal, write_audio

    from tagger.library import plan

    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    read = []
    monkeypatch.setattr(plan, "fingerprint", lambda p, _f=plan.fingerprint: read.append(p) or _f(p))
    quick = scan([root], db=db, analyser=FakeAnalyser(), jobs=0, quick=True)
    assert (quick.scanned, read) == (0, [])  # nothing read of the unchanged files
    full = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert full.scanned == 0 and len(read) == full.found
    path = files["bass.wav"]
    st = os.stat(path)
    write_audio(path, tone_signal([1000.0], seconds=9.0))  # same size, new content...
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and the old mtime: its ctime tells (was: kept "bass")
    read.clear()
    quick = scan([root], db=db, analyser=FakeAnalyser(), jobs=0, quick=True)
    assert quick.scanned == 1 and read == [path] and track_instruments(db)[path] == ["flute"]


def test_tag_after_a_quick_scan_kept_a_stale_fingerprint_says_to_scan_without_quick(tmp_path):
    """A file rewritten in place with its size and mtime kept (mp3gain -p, a tag editor keeping the
    time) on a drive whose ctime is its mtime (FAT: the stored ctime stays true) is skipped by
    ``--quick``, which keeps its stored fingerprint; `tagger tag` refuses the file. Its refusal said
    "scan it again", and a ``--quick`` scan again kept the fingerprint, so tag refused it at every run:
    it says now to scan without --quick, after which the file is analysed and tagged."""
    from typer.testing import CliRunner

    from conftest import tone_signal, write_audio
    from tagger import tags
    from tagger.cli import app

    music = tmp_path / "music"
    song = write_audio(music / "a.wav", tone_signal([110.0], seconds=5.0))
    db = open_database(tmp_path / "library.db")
    try:
        assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 1
        st = os.stat(song)
        write_audio(song, tone_signal([1000.0], seconds=5.0))  # (PCM: the same size)
        os.utime(song, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(song).st_size == st.st_size
        with db.session() as s:  # (a FAT drive's ctime is its mtime: as stored)
            s.query(M.Track).one().ctime_ns = os.stat(song).st_ctime_ns
            s.commit()
        assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0, quick=True).scanned == 0  # (its way)
    finally:
        db.close()
    tag = ["tag", str(music), "--db", str(tmp_path / "library.db"), "--settle-seconds", "0"]
    result = CliRunner().invoke(app, tag)
    assert result.exit_code == 1 and not tags.read_instruments(song).tagged, result.output
    assert f"skipped {song}: file changed since it was analysed (the same size and modification time, other content: " \
           "rewritten in place with its modification time kept, or another file moved over it?); scan it again, " \
           "without --quick" in result.output  # fmt: skip
    db = open_database(tmp_path / "library.db")
    try:
        assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 1  # (without --quick)
    finally:
        db.close()
    result = CliRunner().invoke(app, tag)
    assert result.exit_code == 0 and tags.read_instruments(song).instruments == ["flute"], result.output


def test_a_scan_of_a_thousand_files_named_one_by_one_asks_for_their_tracks_a_few_hundred_at_a_time(tmp_path):
    """`tagger scan *.flac` (a shell's glob: each file a root; beets' plugin on a selection likewise)
    asked the database for the tracks under each root in a statement of its own, twice (the plan,
    the files gone): a rescan of 12,000 unchanged files named so took 36-45 s against 1.7 s for
    their folder. The roots are asked for a few hundred at a time (`tagger.db.sql.chunks`): naming
    1,000 files costs about the statements naming their folder costs, and finds each unchanged."""
    import sqlite3

    from sqlalchemy import event

    from conftest import tone_signal, write_audio

    music = tmp_path / "music"
    song = write_audio(music / "song.flac", tone_signal([1000.0], seconds=0.5))
    db = open_database(tmp_path / "library.db")
    try:
        assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).scanned == 1
        copies = [shutil.copy2(song, music / f"{i:04d}.flac") for i in range(1000)]
        with sqlite3.connect(tmp_path / "library.db") as c:  # (their tracks as a scan stores them, without 1,000 analyses)
            columns = ", ".join(r[1] for r in c.execute("PRAGMA table_info(tracks)") if r[1] not in ("id", "path", "ctime_ns"))
            for copy in copies:
                c.execute(f"INSERT INTO tracks (path, ctime_ns, {columns}) SELECT ?, ?, {columns} FROM tracks WHERE id = 1",
                          (str(copy), os.stat(copy).st_ctime_ns))  # fmt: skip
            c.execute("INSERT INTO detections (track_id, family, present, score, coverage) SELECT tracks.id, "
                      "d.family, d.present, d.score, d.coverage FROM tracks, detections AS d WHERE d.track_id = 1 "
                      "AND tracks.id > 1")  # fmt: skip
        statements = []
        event.listen(db.engine, "before_cursor_execute", lambda *args: statements.append(1))
        folder = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
        by_folder = len(statements)
        statements.clear()
        named = scan([song, *copies], db=db, analyser=FakeAnalyser(), jobs=0)
    finally:
        db.close()
    assert (folder.found, folder.skipped, folder.scanned, folder.missing) == (1001, 1001, 0, 0)
    assert (named.found, named.skipped, named.scanned, named.missing) == (1001, 1001, 0, 0)
    assert len(statements) <= by_folder + 20, (len(statements), by_folder)


def test_roots_holding_a_path_are_those_it_is_under():
    """`tagger.paths.Roots.holding` (the missing files' check of a scan of many roots) tells the roots
    `is_under` tells, the folder and its files with a name sharing its beginning (``/m/a`` and
    ``/m/ab``) kept apart."""
    from tagger.paths import Roots, is_under

    roots = ["/", "/m", "/m/a", "/m/a/", "/m/ab", "/m/a/x.flac", "/m/.hidden", "/n/a"]
    paths = ["/m/a/x.flac", "/m/ab/y.flac", "/m/a", "/m/abc", "/m/.hidden/z.flac", "/n/a/b/c.flac", "/o/p.flac"]
    for path in paths:
        assert sorted(Roots(roots).holding(path)) == sorted(r for r in set(roots) if is_under(path, r)), path


def test_crawl_reports_temp_files_yields_a_given_file_once_and_a_link_only_when_its_file_is_unreached(tmp_path):
    """The crawl's branches that the scans above reach only indirectly, on files named as audio:
    a file given twice (and its folder after it), a leftover tag-write temp file (reported, never
    yielded), a link to a file of the library (yielded only when the walk does not reach the file
    itself: a hidden folder), a link to a folder that holds it (a loop), a special file root."""
    from tagger.crawl import CrawlReport
    from tagger.errors import UserError
    from tagger.paths import TEMP_SUFFIX

    music = tmp_path / "music"
    (music / "a").mkdir(parents=True)
    (music / ".stash").mkdir()
    for rel in ("a/1.flac", "a/2.wav", ".stash/h.flac", "a/cover.jpg"):
        (music / rel).write_bytes(b"\0" * 64)
    temp = music / "a" / f".1.flac.abcd1234{TEMP_SUFFIX}"
    temp.write_bytes(b"\0")
    (music / "a" / "same.flac").symlink_to("1.flac")  # the file itself is reached: not yielded
    (music / "a" / "hidden.flac").symlink_to("../.stash/h.flac")  # only this way: yielded
    (music / "a" / "loop").symlink_to(".")
    report = CrawlReport()
    found = [str(p) for p in crawl([music / "a" / "2.wav", music / "a" / "2.wav", music], report=report)]
    assert found == [str(music / "a" / "2.wav"), str(music / "a" / "1.flac"), str(music / "a" / "hidden.flac")]
    assert report.temp_files == [str(temp)] and report.unreadable == [] and report.external_links == []
    with_hidden = [str(p) for p in crawl([music], include_hidden=True)]
    assert with_hidden == [str(music / ".stash" / "h.flac"), str(music / "a" / "1.flac"), str(music / "a" / "2.wav")]
    os.mkfifo(music / "pipe")
    with pytest.raises(UserError, match="not a folder nor a regular file"):
        list(crawl([music / "pipe"]))
    with pytest.raises(UserError, match="no such file or folder"):
        list(crawl([music / "gone"]))


def test_a_file_given_with_its_folder_is_not_yielded_again_through_a_link_to_it(tmp_path):
    """`tagger scan song.flac .` with `alias.flac -> song.flac` in the folder: the file given was left
    out of the files told apart by inode, so the link yielded it a second time, under its name."""
    music = tmp_path / "music"
    music.mkdir()
    (music / "song.flac").write_bytes(b"\0" * 64)
    (music / "alias.flac").symlink_to("song.flac")
    assert [str(p) for p in crawl([music / "song.flac", music])] == [str(music / "song.flac")]


def test_a_moved_and_a_copied_file_whose_tags_are_not_written_are_tagged_without_analysis(lib, db):
    """The plan hands a moved file and a copy, both with results of this model but no tags holding
    them, to the tag writer (as it does an unchanged file): tagged, not analysed."""
    from tagger import tags
    from tagger.library.scan import tag_writer

    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)  # no tags written
    moved, copy = root / "moved bass.wav", root / "copy of duo.flac"
    os.rename(files["bass.wav"], moved)
    shutil.copy2(files["duo.flac"], copy)
    spy = FakeAnalyser()
    summary = scan([root], db=db, analyser=spy, jobs=0, on_track=tag_writer(model_version=spy.version))
    assert (summary.moved, summary.copied, summary.scanned, spy.calls) == (1, 1, 0, 0)
    assert tags.read_instruments(moved).instruments == ["bass"]
    assert tags.read_instruments(copy).instruments == ["bass", "flute"]


def test_a_file_that_cannot_be_fingerprinted_is_a_transient_error_that_keeps_its_results(lib, db, monkeypatch):
    """A stored file the plan cannot read now (a failing drive) fails, and keeps the results stored
    for it while its size and mtime are those they were made from; the next scan reads it again."""
    from tagger.errors import AudioReadError
    from tagger.library import plan

    root, files = lib
    scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    bass, real = files["bass.wav"], plan.fingerprint

    def failing(path, *args, **kwargs):
        if str(path) == bass:
            raise AudioReadError(str(path), "Input/output error")
        return real(path, *args, **kwargs)

    monkeypatch.setattr(plan, "fingerprint", failing)
    summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 1 and [p for p, _ in summary.errors] == [bass]
    assert "Input/output error" in dict(summary.errors)[bass]
    assert track_instruments(db)[bass] == ["bass"]
    monkeypatch.undo()
    summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.failed == 0 and _status(db)[bass] == "ok"


class _SignallingOnce(FakeAnalyser):
    """Sends the scan's process SIGINT (a Ctrl-C) as it scores the file's first batch of windows."""

    def predict_features(self, feats):
        if self.calls == 0:
            os.kill(os.getpid(), __import__("signal").SIGINT)
        return super().predict_features(feats)


def test_a_ctrl_c_during_the_one_file_of_an_inline_scan_stops_it(tmp_path, db, python_sigint):
    """`--jobs 0` looked at a stop only before each file: a Ctrl-C (or SIGTERM) while it analysed a
    long file went unheard until the file was done, and during the last file not at all: the scan
    finished it and exited 0, `1 scanned`, not `interrupted` with 128 + the signal (found checking
    README's "stop a scan within about a second" with SIGINT to a `-j 0` scan of a 40-minute FLAC:
    rc 0 after 14 s). The stop is looked at between the file's messages; the file is left to the next
    scan, as a worker's is."""
    import soundfile as sf

    from tagger.library.state import ScanInterrupted

    root = tmp_path / "music"
    root.mkdir()
    sr = 16_000
    t = np.arange(200 * sr) / sr  # (two messages of windows: 32 and 18)
    sf.write(root / "long.wav", 0.3 * np.sin(2 * np.pi * FREQ["flute"] * t), sr, subtype="PCM_16")
    past = os.stat(root / "long.wav").st_mtime - 3600
    os.utime(root / "long.wav", (past, past))
    analyser = _SignallingOnce()
    with pytest.raises(ScanInterrupted) as stopped:
        scan([root], db=db, analyser=analyser, jobs=0, commit_every=1, predict_batch=1)
    assert stopped.value.exit_code == 130
    assert analyser.calls == 1  # (the file's second message of windows not analysed)
    assert _status(db) == {}
    summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and track_instruments(db) == {str(root / "long.wav"): ["flute"]}


_STOPPING_DECODER = """#!{python}
import os, signal, sys, time
if "{name}" == "ffprobe" or "-i" in sys.argv:  # (ffmpeg: not the test's own encode)
    os.kill(os.getppid(), signal.SIGINT)  # the terminal's Ctrl-C, while this decoder reads the file
    time.sleep(30)  # (a slow drive, a hung decoder: the scan waited for it to the end)
    open({survived!r}, "w").close()
os.execvp("{real}", ["{name}", *sys.argv[1:]])
"""


@pytest.mark.parametrize("decoder", ["ffprobe", "ffmpeg"])
def test_a_ctrl_c_of_an_inline_scan_ends_the_decoder_reading_the_file(tmp_path, db, monkeypatch, python_sigint, decoder):
    """A Ctrl-C (or SIGTERM) to a `--jobs 0` scan while an ffprobe read the file (its timeout is 60 s)
    or an ffmpeg decoded it (a hung one: no timeout in this process) stopped the scan only once that
    decoder was done: the stop was heard between the file's messages, and the main thread sat in the
    decoder's pipe (found by hand: SIGTERM to a -j 0 scan whose ffprobe hung, 61 s to stop). The
    stop ends the decoder (`tagger.audio.plumbing.ending_decoders`); its failure is not stored, the
    next scan analyses the file."""
    from conftest import tone_signal, write_audio
    from tagger.library.state import ScanInterrupted

    song = write_audio(tmp_path / "music" / "song.wma", tone_signal([110.0], seconds=4.0))
    past = os.stat(song).st_mtime - 3600
    os.utime(song, (past, past))
    bin_dir, survived = tmp_path / "bin", tmp_path / "survived"
    bin_dir.mkdir()
    fake = bin_dir / decoder
    fake.write_text(_STOPPING_DECODER.format(python=sys.executable, name=decoder, real=shutil.which(decoder),
                                             survived=str(survived)))  # fmt: skip
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ScanInterrupted) as stopped:
        scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), jobs=0)
    assert stopped.value.exit_code == 130
    assert not survived.exists()  # (ended at the stop, not waited for)
    assert _status(db) == {}  # (its failure, the stop's, not stored)
    monkeypatch.undo()
    summary = scan([tmp_path / "music"], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and track_instruments(db) == {str(song): ["bass"]}
