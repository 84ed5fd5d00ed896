"""A file whose tags another program rewrote (Picard, beets, kid3, foobar2000 retagging a library; a
backup from before tagger tagged it put back): the same audio, so the next scan keeps its results
without analysing it again (`tagger.library.matches.only_tags_changed`), keeps the other program's tags
and writes tagger's fields back where they were removed. Any doubt (other audio, a format without an
audio digest, a track stored before revision 0010) is an analysis, as before."""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import select, update

from conftest import tone_signal, write_audio
from library_fakes import FakeAnalyser
from tagger import tags
from tagger.db import models as M
from tagger.fingerprint import content_hash, fingerprint
from tagger.library.plan import only_tags_changed
from tagger.library.scan import scan, tag_writer

FORMATS = ("flac", "mp3", "m4a")
COVER = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 300
"""A cover of about 77 kB: a retag that adds it moves the audio and changes the fingerprint."""


def retag(path, *, title: str, cover: bool = True, drop_ours: bool = False) -> None:
    """Another program's tag edit, with mutagen directly: a new title, a cover added, and with
    ``drop_ours`` tagger's fields removed (a tagger that writes only the fields it knows)."""
    import mutagen
    from mutagen.flac import Picture
    from mutagen.id3 import APIC, TIT2
    from mutagen.mp4 import MP4Cover

    f = mutagen.File(path)
    if f.tags is None:
        f.add_tags()
    kind = type(f).__name__
    if drop_ours:
        for key in [k for k in f.tags.keys() if "INSTRUMENTS" in k.upper()]:
            del f.tags[key]
    if kind == "FLAC":
        f.tags["TITLE"] = title
        if cover:
            pic = Picture()
            pic.type, pic.mime, pic.data = 3, "image/png", COVER
            f.add_picture(pic)
    elif kind == "MP3":
        f.tags.add(TIT2(encoding=3, text=[title]))
        if cover:
            f.tags.add(APIC(encoding=3, mime="image/png", type=3, desc="front", data=COVER))
    elif kind == "MP4":
        f.tags["\xa9nam"] = [title]
        if cover:
            f.tags["covr"] = [MP4Cover(COVER, imageformat=MP4Cover.FORMAT_PNG)]
    else:
        raise AssertionError(kind)
    f.save()


def other_tags(path) -> tuple[str, bytes | None]:
    """(title, first cover's bytes) as the other program wrote them."""
    import mutagen

    f = mutagen.File(path)
    kind = type(f).__name__
    if kind == "FLAC":
        return f.tags["TITLE"][0], (f.pictures[0].data if f.pictures else None)
    if kind == "MP3":
        apic = f.tags.getall("APIC")
        return str(f.tags["TIT2"]), (apic[0].data if apic else None)
    covers = f.tags.get("covr")
    return f.tags["\xa9nam"][0], (bytes(covers[0]) if covers else None)


def stored(db, path) -> dict:
    """What the database holds for the track of ``path``: results, model, when analysed, file facts."""
    with db.session() as s:
        t = s.scalar(select(M.Track).where(M.Track.path == str(path)))
        return {"results": [(d.family, d.present, d.score, d.coverage) for d in t.detections],
                "segments": [(g.family, g.start, g.end) for g in t.segments], "model": t.model_version_id,
                "analysed_at": t.analysed_at, "status": t.status, "size": t.size, "fingerprint": t.fingerprint,
                "content_hash": t.content_hash, "ctime_ns": t.ctime_ns, "audio_digest": t.audio_digest,
                "tags_current": t.tags_current}  # fmt: skip


def analysed_and_tagged(tmp_path, db, ext: str):
    f = write_audio(tmp_path / "music" / f"duo.{ext}", tone_signal([110.0, 1000.0], seconds=5.0))
    first = scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert first.scanned == 1 and first.tags_written == 1
    before = stored(db, f)
    assert before["audio_digest"] == tags.audio_digest(f) and before["audio_digest"] is not None
    assert before["tags_current"] and tags.read_instruments(f).instruments == ["bass", "flute"]
    return f, before


@pytest.mark.parametrize("drop_ours", [False, True], ids=["tagger-fields-kept", "tagger-fields-removed"])
@pytest.mark.parametrize("ext", FORMATS)
def test_a_file_retagged_by_another_program_keeps_its_results_without_analysis(tmp_path, db, ext, drop_ours):
    f, before = analysed_and_tagged(tmp_path, db, ext)
    retag(f, title="Another title", drop_ours=drop_ours)
    assert (os.path.getsize(f), fingerprint(f)) != (before["size"], before["fingerprint"])  # it reads as changed
    assert tags.read_instruments(f).tagged is not drop_ours

    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and again.scanned == 0 and (again.retagged, again.skipped) == (1, 1)
    assert again.ok and again.tag_errors == 0 and again.tags_written == (1 if drop_ours else 0)
    after = stored(db, f)
    for key in ("results", "segments", "model", "analysed_at", "status", "audio_digest"):
        assert after[key] == before[key], key
    assert other_tags(f) == ("Another title", COVER)  # the other program's tags kept
    state = tags.read_instruments(f)  # tagger's fields there (written back where they were removed)
    assert state.instruments == ["bass", "flute"] and state.model_version == "fake-1"
    st = os.stat(f)
    assert (after["size"], after["fingerprint"], after["content_hash"], after["ctime_ns"]) == (
        st.st_size, fingerprint(f), content_hash(f), st.st_ctime_ns)  # fmt: skip
    assert after["tags_current"]

    third = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and (third.skipped, third.retagged, third.tags_written) == (1, 0, 0)


def test_a_scan_without_tag_writes_keeps_the_results_and_a_later_one_writes_tagger_fields_back(tmp_path, db):
    f, before = analysed_and_tagged(tmp_path, db, "flac")
    retag(f, title="Picard's title", drop_ours=True)
    analyser = FakeAnalyser()
    plain = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert analyser.calls == 0 and plain.retagged == 1 and plain.tags_written == 0
    assert stored(db, f)["results"] == before["results"] and not stored(db, f)["tags_current"]
    assert not tags.read_instruments(f).tagged
    writing = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and writing.retagged == 0 and writing.tags_written == 1
    assert tags.read_instruments(f).instruments == ["bass", "flute"] and other_tags(f)[0] == "Picard's title"
    assert stored(db, f)["tags_current"]


def copy_tags(src, dst) -> None:
    """Every tag of ``src`` put into ``dst`` with mutagen (a file re-encoded, its tags carried over)."""
    import mutagen

    a, b = mutagen.File(src), mutagen.File(dst)
    if b.tags is None:
        b.add_tags()
    for key in list(b.tags.keys()):
        del b.tags[key]
    for key in a.tags.keys():
        b.tags[key] = a.tags[key]
    for pic in getattr(a, "pictures", ()):  # (FLAC keeps its covers beside the Vorbis comment)
        b.add_picture(pic)
    b.save()


@pytest.mark.parametrize("ext", FORMATS)
def test_other_audio_with_the_tags_kept_is_analysed_again(tmp_path, db, ext):
    f, before = analysed_and_tagged(tmp_path, db, ext)
    retag(f, title="Old song")
    old = shutil.copy(f, tmp_path / f"old.{ext}")
    write_audio(f, tone_signal([4000.0], seconds=5.0))  # new audio at the path
    copy_tags(old, f)  # ... carrying the old file's tags, tagger's fields included
    assert tags.read_instruments(f).instruments == ["bass", "flute"] and other_tags(f) == ("Old song", COVER)
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls > 0 and again.scanned == 1 and again.retagged == 0
    after = stored(db, f)
    assert after["audio_digest"] == tags.audio_digest(f) != before["audio_digest"]
    assert [d[0] for d in after["results"] if d[1]] == ["string"]
    assert tags.read_instruments(f).instruments == ["string"] and other_tags(f) == ("Old song", COVER)


def test_a_format_without_an_audio_digest_is_analysed_again(tmp_path, db):
    """A TrueAudio file (no tags tagger writes, so no audio digest), given an ID3 tag by another
    program: analysed again, as every changed file was."""
    import subprocess

    from mutagen.id3 import TIT2
    from mutagen.trueaudio import TrueAudio

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    src = write_audio(tmp_path / "src.wav", tone_signal([110.0], seconds=5.0))
    f = tmp_path / "music" / "bass.tta"
    f.parent.mkdir()
    if subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(src), "-c:a", "tta", str(f)]).returncode != 0:
        pytest.skip("ffmpeg cannot encode tta")
    scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0)
    assert stored(db, f)["audio_digest"] is None
    t = TrueAudio(f)
    t.add_tags()
    t.tags.add(TIT2(encoding=3, text=["A title"]))
    t.save()
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert analyser.calls > 0 and again.scanned == 1 and again.retagged == 0


def test_a_track_stored_before_audio_digests_is_analysed_once_then_kept(tmp_path, db):
    """A track from before revision 0010 (no audio digest): its retagged file is analysed again once,
    which records the digest; the next retag keeps the results."""
    f, before = analysed_and_tagged(tmp_path, db, "mp3")
    with db.session() as s:
        s.execute(update(M.Track).values(audio_digest=None))
        s.commit()
    retag(f, title="First retag")
    analyser = FakeAnalyser()
    once = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls > 0 and once.scanned == 1 and once.retagged == 0
    assert stored(db, f)["audio_digest"] == before["audio_digest"]
    retag(f, title="Second retag", cover=False, drop_ours=True)
    analyser = FakeAnalyser()
    kept = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and kept.retagged == 1 and kept.tags_written == 1
    assert tags.read_instruments(f).instruments == ["bass", "flute"] and other_tags(f)[0] == "Second retag"


def test_taggers_own_tag_write_records_the_digest_of_a_track_stored_without_one(tmp_path, db):
    """A scan that writes the tags of a track stored before revision 0010 records its audio digest
    (the write checks it left the audio bytes as they were): a later retag keeps the results."""
    f = write_audio(tmp_path / "music" / "duo.m4a", tone_signal([110.0, 1000.0], seconds=5.0))
    scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0)  # no tags written
    with db.session() as s:
        s.execute(update(M.Track).values(audio_digest=None))
        s.commit()
    analyser = FakeAnalyser()
    writing = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and writing.tags_written == 1
    assert stored(db, f)["audio_digest"] == tags.audio_digest(f) is not None
    retag(f, title="Retitled")
    kept = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert analyser.calls == 0 and kept.retagged == 1


def test_a_file_changed_while_its_digest_was_read_is_not_taken_for_the_same_audio(tmp_path):
    """The file's facts are those of one file: written to after its stat (its ctime moves on), its
    audio digest and content hash prove nothing of what the stat saw."""
    f = write_audio(tmp_path / "duo.flac", tone_signal([110.0, 1000.0], seconds=3.0))
    digest = tags.audio_digest(f)
    st = os.stat(f)
    assert only_tags_changed(str(f), st, digest, lambda: content_hash(f)) == content_hash(f)
    retag(f, title="Meanwhile")  # the same audio, but not the file the stat saw
    assert tags.audio_digest(f) == digest
    assert only_tags_changed(str(f), st, digest, lambda: content_hash(f)) is None
    assert only_tags_changed(str(f), os.stat(f), None, lambda: content_hash(f)) is None  # no stored digest
    assert only_tags_changed(str(f), os.stat(f), "0" * 64, lambda: content_hash(f)) is None  # other audio


def test_tagger_scan_says_how_many_retagged_files_kept_their_results(tmp_path, fake_models):
    import json

    from typer.testing import CliRunner

    from tagger.cli import app

    f = write_audio(tmp_path / "music" / "duo.mp3", tone_signal([110.0, 1000.0], seconds=5.0))
    db = ["--db", str(tmp_path / "lib.db"), "--jobs", "0", "--settle-seconds", "0"]
    run = CliRunner().invoke
    assert run(app, ["scan", str(f.parent), *db]).exit_code == 0
    retag(f, title="Another title", drop_ours=True)
    r = run(app, ["scan", str(f.parent), *db])
    assert r.exit_code == 0, r.output
    assert "0 scanned, 1 skipped unchanged" in r.output
    assert ("1 file(s) whose tags were rewritten since the last scan (by another program, or tagger untag or tag "
            "--from-json) kept their results (the same audio: not analysed again)") in r.output  # fmt: skip
    assert "tags: 1 tagged, 0 failed" in r.output
    retag(f, title="Once more")
    r = run(app, ["scan", str(f.parent), "--json", *db])
    assert r.exit_code == 0, r.output
    assert (json.loads(r.output)["retagged"], json.loads(r.output)["scanned"]) == (1, 0)


def test_a_file_retagged_within_the_settle_time_is_left_for_the_next_scan_not_a_failed_tag_write(tmp_path, fake_models):
    """A file whose tags another program rewrote (here tagger's fields dropped) seconds before a
    tag-writing scan kept its results, then the write putting tagger's fields back was refused as
    `changed 2 s ago, still being written?` and counted a failed tag write, exit 1 (found walking
    through the README: `tagger tag --from-json` then `tagger scan`, 24 failed), where a new file as
    fresh is left for a later scan with exit 0. The write waits as well, and the next scan makes it."""
    from typer.testing import CliRunner

    from tagger.cli import app

    f = write_audio(tmp_path / "music" / "duo.mp3", tone_signal([110.0, 1000.0], seconds=5.0))
    db = ["--db", str(tmp_path / "lib.db"), "--jobs", "0"]
    run = CliRunner().invoke
    assert run(app, ["scan", str(f.parent), *db, "--settle-seconds", "0"]).exit_code == 0
    retag(f, title="Another title", drop_ours=True)
    before = f.read_bytes()
    r = run(app, ["scan", str(f.parent), *db, "--settle-seconds", "3600"])
    assert r.exit_code == 0, r.output
    assert "tags: 0 tagged, 0 failed" in r.output
    assert "1 file(s) changed in the last 3600 s were left for a later scan" in r.output
    assert f.read_bytes() == before and tags.read_instruments(f).model_version is None
    r = run(app, ["scan", str(f.parent), *db, "--settle-seconds", "0"])
    assert r.exit_code == 0, r.output
    assert "0 scanned" in r.output and "tags: 1 tagged, 0 failed" in r.output
    assert tags.read_instruments(f).instruments == ["bass", "flute"]
    # (a scan that analysed nothing gives no speed: it said `0.00 h audio in 0.1 s (0.0x real time)`)
    assert "0.00 h audio in " in r.output and "real time" not in r.output


def test_scan_scores_leaves_files_tagged_before_and_its_help_says_to_use_tag(tmp_path, fake_models):
    """`tagger scan --scores` over a library scanned without it wrote nothing (`tags: 0 tagged`): its
    tags hold their results, so the scan leaves them, while its help said only "Also write per-family
    scores" (found walking through the README). The help and README say which files it tags and name
    `tagger tag --scores` for the others, which writes them, saying so."""
    from typer.testing import CliRunner

    from tagger.cli import app

    f = write_audio(tmp_path / "music" / "duo.mp3", tone_signal([110.0, 1000.0], seconds=5.0))
    db = ["--db", str(tmp_path / "lib.db"), "--settle-seconds", "0"]
    run = CliRunner().invoke
    assert run(app, ["scan", str(f.parent), *db, "--jobs", "0"]).exit_code == 0
    before = f.read_bytes()
    r = run(app, ["scan", str(f.parent), *db, "--jobs", "0", "--scores"])
    assert r.exit_code == 0 and "tags: 0 tagged, 0 failed" in r.output and f.read_bytes() == before
    shown = " ".join(run(app, ["scan", "--help"], terminal_width=200).output.split())
    assert "files tagged before are left as they are: tagger tag --scores" in shown.replace("│ ", "")
    r = run(app, ["tag", str(f), *db, "--scores"])
    assert r.exit_code == 0 and tags.read_instruments(f).scores is not None
    # (its line said `tagged ...: bass, flute (was: bass, flute)`, nothing of what changed)
    assert r.stdout == f"tagged {f}: bass, flute (was: bass, flute; scores added)\n"
    r = run(app, ["tag", str(f), *db])
    assert r.stdout == f"tagged {f}: bass, flute (was: bass, flute; scores removed)\n"
    # (README's `tagger tag --id3v23` of files tagged before said `(was: bass, flute)` of each)
    r = run(app, ["tag", str(f), *db, "--id3v23", "--dry-run"])
    assert r.stdout == f"would tag {f}: bass, flute (was: bass, flute; ID3v2.4 tag made ID3v2.3)\n"
    r = run(app, ["tag", str(f), *db, "--id3v23"])
    assert r.stdout == f"tagged {f}: bass, flute (was: bass, flute; ID3v2.4 tag made ID3v2.3)\n"
    from mutagen.mp3 import MP3

    assert MP3(f).tags.version == (2, 3, 0) and tags.read_instruments(f).instruments == ["bass", "flute"]


def test_a_scan_that_leaves_stale_tracks_names_its_models(tmp_path, fake_models):
    """A scan with other models (--models) said `run tagger scan --rescan-stale`, which, run as
    written, scans with the default models (found walking through the README)."""
    from typer.testing import CliRunner

    from library_fakes import FakeAnalyser
    from tagger.cli import app
    from tagger.db.session import open_database

    f = write_audio(tmp_path / "music" / "duo.mp3", tone_signal([110.0, 1000.0], seconds=5.0))
    database = open_database(tmp_path / "lib.db")
    scan([f.parent], db=database, analyser=FakeAnalyser(version="fake-0"), jobs=0)
    database.close()
    r = CliRunner().invoke(app, ["scan", str(f.parent), "--db", str(tmp_path / "lib.db"), "--jobs", "0",
                                 "--no-write-tags"])  # fmt: skip
    assert r.exit_code == 0, r.output
    assert ("1 track(s) were analysed by another model version than this scan's (fake-1): the same scan with "
            "--rescan-stale analyses them with it") in r.stdout  # fmt: skip


def _forget_digests(db) -> None:
    with db.session() as s:
        s.execute(update(M.Track).values(audio_digest=None))
        s.commit()


def test_tagger_tag_records_the_digest_of_a_track_stored_without_one(tmp_path, db):
    f = write_audio(tmp_path / "music" / "duo.flac", tone_signal([110.0, 1000.0], seconds=5.0))
    scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0)
    _forget_digests(db)
    [change] = [r for r in tags.tag_from_database(db, settle_seconds=0)]
    assert change.written
    assert stored(db, f)["audio_digest"] == tags.audio_digest(f) is not None


def test_a_recorded_write_by_another_program_records_the_digest_of_a_track_stored_without_one(tmp_path, db):
    """`tagger.library.files.rewrite_tags` (the beets plugin's write, beets' ``try_write``)."""
    from tagger.library.files import analyse_files, rewrite_tags

    f = write_audio(tmp_path / "music" / "duo.mp3", tone_signal([110.0, 1000.0], seconds=5.0))
    analyse_files([f], db=db, analyser=FakeAnalyser(), jobs=0)
    _forget_digests(db)
    _, results = analyse_files([f], db=db, analyser=FakeAnalyser(), jobs=0)
    done = rewrite_tags(db, results[str(f)], lambda: retag(f, title="beets' title") or True)
    assert done.written and done.problem is None
    assert stored(db, f)["audio_digest"] == tags.audio_digest(f) is not None


def test_a_retagged_file_that_a_rescan_of_stale_results_analyses_again_is_not_counted_as_kept(tmp_path, db):
    """A stale track (another model's results) whose tags another program rewrote is analysed again by
    a scan with ``rescan_stale``: its results are not kept, so it is no retagged file that kept them
    (the scan's line said it was), and its audio digest is not read for nothing in the plan."""
    from unittest import mock

    import tagger.library.plan as plan

    f, before = analysed_and_tagged(tmp_path, db, "flac")
    retag(f, title="Another title")
    analyser = FakeAnalyser(version="fake-2")
    with mock.patch.object(plan, "only_tags_changed", wraps=plan.only_tags_changed) as check:
        again = scan([f.parent], db=db, analyser=analyser, jobs=0, rescan_stale=True)
    assert again.scanned == 1 and analyser.calls > 0
    assert again.retagged == 0
    assert check.call_count == 0
    assert stored(db, f)["model"] != before["model"]


@pytest.mark.parametrize("ext", ["wav", "aiff"])
def test_a_wav_or_aiff_whose_format_chunk_now_says_another_rate_is_analysed_again(tmp_path, db, ext):
    """The same sample bytes under another ``fmt `` (WAV) or ``COMM`` (AIFF) chunk are other audio (here
    twice the sample rate: the music an octave up, in half the time), though the audio digest hashed
    the data chunk alone and the scan took the file for one whose tags only had changed: the old
    results were kept for it. The format chunk is hashed with the audio now."""
    import struct

    f = write_audio(tmp_path / "music" / f"duo.{ext}", tone_signal([110.0, 1000.0], seconds=5.0))
    scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0)
    before = stored(db, f)
    assert before["audio_digest"] is not None
    data = bytearray(f.read_bytes())
    if ext == "wav":
        at = data.index(b"fmt ") + 8
        rate, byte_rate = struct.unpack_from("<II", data, at + 4)
        struct.pack_into("<II", data, at + 4, rate * 2, byte_rate * 2)
    else:  # (COMM: channels, frames, bits, then the rate as an 80-bit float: one more in its exponent doubles it)
        at = data.index(b"COMM") + 8 + 8
        struct.pack_into(">H", data, at, struct.unpack_from(">H", data, at)[0] + 1)
    f.write_bytes(data)
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert (again.retagged, again.scanned) == (0, 1) and analyser.calls > 0
    assert stored(db, f)["audio_digest"] == tags.audio_digest(f) != before["audio_digest"]


# A file retagged and moved at once (beets' `import`/`modify` with path formats, Picard's "rename
# files", foobar2000's file operations): the same audio under a new name, its old name gone.


def beets_move(f, root, *, title: str, drop_ours: bool = False):
    """``f`` retagged and moved to ``root/Artist/Album/01 title.ext``, as beets does; returns the new path."""
    retag(f, title=title, drop_ours=drop_ours)
    new = root / "Artist" / "Album" / f"01 {title}{f.suffix}"
    new.parent.mkdir(parents=True, exist_ok=True)
    os.rename(f, new)
    return new


def track_paths(db) -> dict[str, str]:
    with db.session() as s:
        return {t.path: t.status for t in s.scalars(select(M.Track))}


@pytest.mark.parametrize("drop_ours", [False, True], ids=["tagger-fields-kept", "tagger-fields-removed"])
@pytest.mark.parametrize("ext", ("flac", "mp3"))
def test_a_file_retagged_and_moved_keeps_its_results_without_analysis(tmp_path, db, ext, drop_ours):
    f, before = analysed_and_tagged(tmp_path, db, ext)
    new = beets_move(f, f.parent, title="Another title", drop_ours=drop_ours)
    assert fingerprint(new) != before["fingerprint"] and tags.audio_digest(new) == before["audio_digest"]

    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and again.scanned == 0
    assert (again.moved, again.retagged, again.skipped, again.missing) == (1, 1, 1, 0)
    assert again.ok and again.tag_errors == 0 and again.tags_written == (1 if drop_ours else 0)
    assert track_paths(db) == {str(new): M.STATUS_OK}  # the track followed its file
    after = stored(db, new)
    for key in ("results", "segments", "model", "analysed_at", "status", "audio_digest"):
        assert after[key] == before[key], key
    assert other_tags(new) == ("Another title", COVER)
    state = tags.read_instruments(new)
    assert state.instruments == ["bass", "flute"] and state.model_version == "fake-1"
    st = os.stat(new)
    assert (after["size"], after["fingerprint"], after["content_hash"], after["ctime_ns"]) == (
        st.st_size, fingerprint(new), content_hash(new), st.st_ctime_ns)  # fmt: skip
    assert after["tags_current"]

    third = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and (third.skipped, third.moved, third.retagged, third.tags_written) == (1, 0, 0, 0)


def test_a_quick_scan_without_tag_writes_takes_the_move_and_a_later_one_writes_tagger_fields_back(tmp_path, db):
    f, before = analysed_and_tagged(tmp_path, db, "flac")
    new = beets_move(f, tmp_path / "music", title="Picard's title", drop_ours=True)
    analyser = FakeAnalyser()
    plain = scan([f.parent], db=db, analyser=analyser, jobs=0, quick=True)
    assert analyser.calls == 0 and (plain.moved, plain.retagged, plain.missing, plain.tags_written) == (1, 1, 0, 0)
    assert stored(db, new)["results"] == before["results"] and not stored(db, new)["tags_current"]
    writing = scan([f.parent], db=db, analyser=analyser, jobs=0, quick=True,
                   on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and writing.tags_written == 1 and writing.moved == 0
    assert tags.read_instruments(new).instruments == ["bass", "flute"] and other_tags(new)[0] == "Picard's title"
    assert stored(db, new)["tags_current"]


def test_a_retagged_copy_is_no_move(tmp_path, db):
    """The old file still there: the retagged copy is other bytes, analysed (the copy rule takes
    only a copy of the whole content); the original keeps its track."""
    f, before = analysed_and_tagged(tmp_path, db, "mp3")
    copy = tmp_path / "music" / "copies" / "duo copy.mp3"
    copy.parent.mkdir()
    shutil.copy(f, copy)
    retag(copy, title="A copy")
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert analyser.calls > 0 and (again.scanned, again.moved, again.retagged, again.missing) == (1, 0, 0, 0)
    assert track_paths(db) == {str(f): M.STATUS_OK, str(copy): M.STATUS_OK}
    assert stored(db, f)["analysed_at"] == before["analysed_at"]


def test_two_gone_tracks_of_one_audio_leave_the_moved_file_to_analysis(tmp_path, db):
    f, _ = analysed_and_tagged(tmp_path, db, "flac")
    twin = tmp_path / "music" / "other" / "duo.flac"
    twin.parent.mkdir()
    shutil.copy(f, twin)
    retag(twin, title="Twin")  # the same audio, another file: analysed, its own track
    scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0)
    assert stored(db, twin)["audio_digest"] == stored(db, f)["audio_digest"]
    new = beets_move(f, tmp_path / "music", title="Moved")
    twin.unlink()
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert analyser.calls > 0 and (again.scanned, again.moved, again.retagged, again.missing) == (1, 0, 0, 2)
    assert track_paths(db) == {str(f): M.STATUS_MISSING, str(twin): M.STATUS_MISSING, str(new): M.STATUS_OK}


def test_one_gone_track_whose_audio_two_new_files_hold_leaves_both_to_analysis(tmp_path, db):
    f, _ = analysed_and_tagged(tmp_path, db, "mp3")
    shutil.copy(f, tmp_path / "second.mp3")
    one = beets_move(f, tmp_path / "music", title="One")
    two = tmp_path / "music" / "Other" / "two.mp3"
    two.parent.mkdir()
    shutil.move(tmp_path / "second.mp3", two)
    retag(two, title="Two")
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert analyser.calls > 0 and (again.scanned, again.moved, again.retagged, again.missing) == (2, 0, 0, 1)
    assert track_paths(db) == {str(f): M.STATUS_MISSING, str(one): M.STATUS_OK, str(two): M.STATUS_OK}


def test_new_audio_under_the_old_name_and_a_retagged_move_at_once(tmp_path, db):
    """The old name holds other audio now: its track is not gone, so it is no one's to take; both
    files are analysed, each given the results of its own audio."""
    f, before = analysed_and_tagged(tmp_path, db, "flac")
    new = beets_move(f, tmp_path / "music", title="Moved")
    write_audio(f, tone_signal([4000.0], seconds=5.0))
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert (again.scanned, again.moved, again.retagged, again.missing) == (2, 0, 0, 0) and again.tag_errors == 0
    assert [d[0] for d in stored(db, f)["results"] if d[1]] == ["string"]
    assert [d[0] for d in stored(db, new)["results"] if d[1]] == ["bass", "flute"]
    assert tags.read_instruments(f).instruments == ["string"]
    assert tags.read_instruments(new).instruments == ["bass", "flute"] and other_tags(new)[0] == "Moved"


def test_a_gone_track_without_an_audio_digest_is_no_move(tmp_path, db):
    """A track stored before revision 0010 (no digest): the retagged, moved file is analysed."""
    f, _ = analysed_and_tagged(tmp_path, db, "flac")
    _forget_digests(db)
    new = beets_move(f, tmp_path / "music", title="Moved")
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert analyser.calls > 0 and (again.scanned, again.moved, again.retagged, again.missing) == (1, 0, 0, 1)
    assert track_paths(db) == {str(f): M.STATUS_MISSING, str(new): M.STATUS_OK}


def test_new_files_are_read_for_an_audio_digest_only_when_a_gone_track_could_be_theirs(tmp_path, db, monkeypatch):
    """No gone track (a first scan, files added), or none named like the new file: no digest read in
    the plan."""
    from tagger.library import matches

    reads = []
    real = matches._audio_digest_or_none
    monkeypatch.setattr(matches, "_audio_digest_or_none", lambda path: reads.append(path) or real(path))
    music = tmp_path / "music"
    a = write_audio(music / "a.flac", tone_signal([110.0], seconds=3.0))
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    write_audio(music / "b.flac", tone_signal([220.0], seconds=3.0))
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert reads == []  # a first scan, then a file added: nothing gone
    a.unlink()
    c = write_audio(music / "c.mp3", tone_signal([330.0], seconds=3.0))
    done = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert reads == [] and (done.scanned, done.missing) == (1, 1)  # a FLAC gone, an MP3 new
    d = write_audio(music / "d.flac", tone_signal([440.0], seconds=3.0))
    done = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert reads == [str(d)] and (done.scanned, done.moved) == (1, 0)  # read, and other audio
    assert str(c) in track_paths(db)


def test_a_track_the_walk_skipped_is_not_gone(tmp_path, db):
    """A file in a hidden folder, which a scan without --include-hidden does not walk, is still
    there: a retagged copy of it elsewhere is analysed, and the hidden file keeps its track."""
    music = tmp_path / "music"
    hidden = write_audio(music / ".staging" / "duo.flac", tone_signal([110.0, 1000.0], seconds=5.0))
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0, include_hidden=True)
    copy = music / "Artist" / "duo.flac"
    copy.parent.mkdir()
    shutil.copy(hidden, copy)
    retag(copy, title="A copy")
    analyser = FakeAnalyser()
    again = scan([music], db=db, analyser=analyser, jobs=0)
    assert analyser.calls > 0 and (again.scanned, again.moved, again.retagged, again.missing) == (1, 0, 0, 0)
    assert track_paths(db) == {str(hidden): M.STATUS_OK, str(copy): M.STATUS_OK}


def test_a_retagged_move_of_a_stale_track_is_analysed_again_under_its_new_name_with_rescan_stale(tmp_path, db):
    """Its results are not kept, so it is no retagged file that kept them (as in place)."""
    f, before = analysed_and_tagged(tmp_path, db, "mp3")
    new = beets_move(f, tmp_path / "music", title="Moved")
    analyser = FakeAnalyser(version="fake-2")
    again = scan([f.parent], db=db, analyser=analyser, jobs=0, rescan_stale=True)
    assert analyser.calls > 0 and (again.moved, again.retagged, again.scanned, again.missing) == (1, 0, 1, 0)
    assert track_paths(db) == {str(new): M.STATUS_OK}  # the row followed its file; its results are redone
    assert stored(db, new)["model"] != before["model"]
    assert stored(db, new)["audio_digest"] == tags.audio_digest(new)


def test_a_track_gone_missing_takes_its_file_retagged_when_it_comes_back_under_another_name(tmp_path, db):
    """The file retagged and moved out of the library (a scan marks its track missing), then into it
    under another name: the missing track is its own, restored with its results."""
    f, before = analysed_and_tagged(tmp_path, db, "flac")
    (f.parent / "notes.txt").write_text("not empty: no unmounted drive")
    out = beets_move(f, tmp_path / "inbox", title="Away")
    assert scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0).missing == 1
    back = f.parent / "Returned" / "01 Away.flac"
    back.parent.mkdir()
    os.rename(out, back)
    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0)
    assert analyser.calls == 0 and (again.moved, again.retagged, again.scanned, again.missing) == (1, 1, 0, 0)
    assert track_paths(db) == {str(back): M.STATUS_OK}
    assert stored(db, back)["results"] == before["results"] and stored(db, back)["analysed_at"] == before["analysed_at"]


@pytest.mark.parametrize("edit", ["ID3v1 title changed", "ID3v1 tag dropped"])
@pytest.mark.parametrize("ext", ["wv", "tak"])
def test_an_apev2_file_whose_id3v1_tag_another_program_rewrote_keeps_its_results(tmp_path, db, ext, edit):
    """A WavPack (Monkey's Audio, Musepack, TAK) file ends with its APEv2 tag and often an ID3v1 tag
    after it (foobar2000, EAC): the audio digest counted the ID3v1 tag as audio, so a program that
    changed its title there, or dropped it (mutagen does, rewriting the APEv2 tag), had the file
    analysed again. Found tagging TAK files with an ID3v1 tag. The ID3v1 tag is a tag: left out."""
    import subprocess

    import numpy as np
    from tak_files import tak_file
    from test_tags_containers import _ape_tag

    music = tmp_path / "music"
    music.mkdir()
    f = music / f"low.{ext}"
    if ext == "tak":
        x = np.round(16383 * np.sin(2 * np.pi * 110.0 * np.arange(5 * 22_050) / 22_050)).astype(np.int16)
        tak_file(f, np.stack([x, x], axis=1), 22_050)
    else:
        if shutil.which("ffmpeg") is None:
            pytest.skip("needs ffmpeg")
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=110:duration=5",
                        "-c:a", "wavpack", "-map_metadata", "-1", "-fflags", "+bitexact", str(f)], check=True)  # fmt: skip
    id3v1 = b"TAG" + b"Low Tide".ljust(30, b"\0") + b"Ann".ljust(30, b"\0") + bytes(64) + b"\x05"
    f.write_bytes(f.read_bytes() + _ape_tag([(b"Title", 0, b"Low Tide")], header=True) + id3v1)
    first = scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert first.tags_written == 1 and f.read_bytes().endswith(id3v1)
    before = stored(db, f)
    if edit == "ID3v1 title changed":
        f.write_bytes(f.read_bytes()[:-128] + id3v1.replace(b"Low Tide", b"Low Wave"))
    else:
        import mutagen

        other = mutagen.File(f)
        other.tags["Comment"] = "found at the market"
        other.save()  # (mutagen drops the ID3v1 tag after the APEv2 tag)
        assert not f.read_bytes()[-128:].startswith(b"TAG")
    analyser = FakeAnalyser()
    again = scan([music], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and (again.scanned, again.retagged) == (0, 1) and again.ok
    after = stored(db, f)
    for key in ("results", "analysed_at", "audio_digest"):
        assert after[key] == before[key], key


def test_a_file_named_as_a_root_takes_no_track_of_a_drive_not_mounted(tmp_path, db):
    """A library on a removable drive, one of its files copied elsewhere and retagged there (beets'
    import copies), the drive then unplugged (its mount point empty), and the copy named as a root
    (the beets plugin, `tagger scan FILE`): the drive's track is not gone but away, and was taken
    by the copy, its row moved off the drive (found reviewing 1959198). A track under an empty
    folder, as under a scanned folder found empty, stays where it is; a file gone from a folder
    that still holds files is taken as before."""
    drive = tmp_path / "drive"
    on_drive = write_audio(drive / "Album" / "duo.flac", tone_signal([110.0, 1000.0], seconds=5.0))
    scan([drive], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    copy = tmp_path / "home" / "Artist" / "Album" / "01 duo.flac"
    copy.parent.mkdir(parents=True)
    shutil.copy(on_drive, copy)
    retag(copy, title="Imported")
    shutil.rmtree(drive / "Album")  # unplugged: the mount point is left, empty
    analyser = FakeAnalyser()
    again = scan([copy], db=db, analyser=analyser, jobs=0)
    assert analyser.calls > 0 and (again.scanned, again.moved, again.retagged) == (1, 0, 0)
    assert track_paths(db) == {str(on_drive): M.STATUS_OK, str(copy): M.STATUS_OK}

    # the same file gone from a folder that holds other files: a move, as 1959198 made it
    other = write_audio(tmp_path / "home" / "Other" / "solo.flac", tone_signal([440.0], seconds=5.0))
    scan([other.parent], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    write_audio(tmp_path / "home" / "Other" / "kept.flac", tone_signal([2000.0], seconds=5.0))
    moved = beets_move(other, tmp_path / "home", title="Solo")
    analyser = FakeAnalyser()
    third = scan([moved], db=db, analyser=analyser, jobs=0)
    assert analyser.calls == 0 and (third.moved, third.retagged) == (1, 1)
    assert str(other) not in track_paths(db) and track_paths(db)[str(moved)] == M.STATUS_OK


def test_a_stop_signal_stops_the_digest_reads_of_files_named_as_roots(tmp_path, db, monkeypatch):
    """The digests of the new files named as roots (a beets import of a thousand files) are read one
    after another to look for their gone tracks anywhere in the database; a Ctrl-C among them was
    heard only after the last (found reviewing 1959198): the scan stops at the next file now."""
    import signal

    from tagger.library import matches
    from tagger.library.state import ScanInterrupted

    new = [write_audio(tmp_path / "import" / f"{i}.flac", tone_signal([220.0 * (i + 1)], seconds=3.0))
           for i in range(3)]  # fmt: skip
    reads, real = [], matches._audio_digest_or_none

    def interrupted(path):
        reads.append(path)
        if len(reads) == 1:
            os.kill(os.getpid(), signal.SIGINT)  # (the scan's handler: a stop asked for)
        return real(path)

    monkeypatch.setattr(matches, "_audio_digest_or_none", interrupted)
    # (Ctrl-C as a terminal gives it: a suite started in the background by a shell without job
    # control inherits SIGINT ignored, which the scan rightly keeps ignored, and the signal was
    # never heard; no test leaves it ignored for the next: `conftest` checks every one)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(ScanInterrupted):
            scan(new, db=db, analyser=FakeAnalyser(), jobs=0)
    finally:
        signal.signal(signal.SIGINT, before)
    assert len(reads) == 1


@pytest.mark.parametrize("ext", FORMATS)
def test_a_retagged_file_keeps_the_scores_a_scan_with_scores_wrote(tmp_path, db, ext):
    """A library scanned with ``--scores``, then retagged by another program (kid3 converting MP3s'
    ID3v2.4 tags to v2.3, Picard adding a title and cover, one file's INSTRUMENTS removed): the next
    plain scan kept the results but rewrote every such file without INSTRUMENTS_SCORES, as if the
    user had asked for them to go (found living with a scanned library). Scores that hold the
    stored results are kept now; the file is left as the other program left it where tagger's
    fields are all there, INSTRUMENTS alone written back where it was removed; scores that are not
    the stored results' (an older analysis') are removed as before."""
    import mutagen

    f = write_audio(tmp_path / "music" / f"duo.{ext}", tone_signal([110.0, 1000.0], seconds=5.0))
    first = scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0,
                 on_track=tag_writer(model_version="fake-1", scores=True))  # fmt: skip
    assert first.tags_written == 1
    scores = tags.read_instruments(f).scores
    assert scores and set(scores) >= {"bass", "flute"}
    if ext == "mp3":  # kid3's "convert to ID3v2.3"
        from mutagen.id3 import ID3

        id3 = ID3(f)
        id3.update_to_v23()
        id3.save(v2_version=3)
    else:
        retag(f, title="Another title")
    retagged = f.read_bytes()

    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and again.retagged == 1 and again.tag_errors == 0
    assert again.tags_written == 0 and f.read_bytes() == retagged  # (it was rewritten, the scores removed)
    assert tags.read_instruments(f).scores == scores and stored(db, f)["tags_current"]

    g = mutagen.File(f)  # another program removes INSTRUMENTS alone: written back, the scores kept
    for key in [k for k in g.tags.keys() if k.upper().endswith(":INSTRUMENTS") or k.upper() == "INSTRUMENTS"]:
        del g.tags[key]
    g.save()
    assert tags.read_instruments(f).instruments == []
    third = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and third.tags_written == 1
    state = tags.read_instruments(f)
    assert state.instruments == ["bass", "flute"] and state.scores == scores

    with db.session() as s:  # scores another analysis gave: stale, removed by a write without --scores
        t = s.scalar(select(M.Track).where(M.Track.path == str(f)))
        for d in t.detections:
            d.score = min(1.0, d.score + 0.01) if d.present else d.score / 2
        t.tags_current = False
    fourth = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and fourth.tags_written == 1
    assert tags.read_instruments(f).scores is None and tags.read_instruments(f).instruments == ["bass", "flute"]


@pytest.mark.parametrize("id3v1", [False, True], ids=["ape-at-end", "ape-before-id3v1"])
def test_an_mp3_given_an_apev2_replaygain_tag_keeps_its_results_without_analysis(tmp_path, db, id3v1):
    """MP3Gain's analysis (and foobar2000's ReplayGain on MP3s set to APEv2) appends an APEv2 tag of
    ReplayGain items and changes no frame; the MP3 audio digest counted that tag as audio, so the
    next scan analysed every such file again (found running a ReplayGain tool over a scanned
    library). The digest ends before an APEv2 tag at the end, or before one an ID3v1 tag follows."""
    from mutagen.apev2 import APEv2

    f, before = analysed_and_tagged(tmp_path, db, "mp3")
    ape = APEv2()
    ape["REPLAYGAIN_TRACK_GAIN"] = "-3.20 dB"
    ape["MP3GAIN_MINMAX"] = "100,200"
    ape.save(f)
    if id3v1:  # (mutagen's APEv2 save drops an ID3v1 tag: MP3Gain keeps it after its APE tag)
        with open(f, "ab") as g:
            g.write(b"TAG" + b"Title".ljust(30, b"\0") + bytes(94) + b"\xff")
    with open(f, "rb") as g:
        data = g.read()
    assert (data[-128:-125] == b"TAG") is id3v1 and b"APETAGEX" in data[-200:]
    assert tags.audio_digest(f) == before["audio_digest"]

    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and again.scanned == 0 and again.retagged == 1 and again.ok
    assert stored(db, f)["results"] == before["results"] and APEv2(f)["REPLAYGAIN_TRACK_GAIN"] == "-3.20 dB"

    # other frames behind the same tag are other audio
    pos = data.index(b"APETAGEX") - 200
    with open(f, "r+b") as g:
        g.seek(pos)
        g.write(bytes(b ^ 0x55 for b in data[pos:pos + 16]))
    assert tags.audio_digest(f) != before["audio_digest"]


def test_an_id3v23_tag_converted_to_v24_gets_its_values_separated_again(tmp_path, db):
    """A library tagged with ``--id3v23 --scores`` (values joined by "/"), whose MP3 tags kid3 (or
    mutagen) then converted to ID3v2.4: the joined text becomes one v2.4 value, `bass/flute`, which
    TagLib, mediafile and ffmpeg read as one name, while tagger split "/" in any ID3 version, took
    the fields for right and left them so for good (found converting a tagged library's MP3s). A
    "/" separates values in ID3v2.3 alone now: the next scan writes the fields as v2.4 values, the
    scores with them (they are the stored ones), and the tag stays v2.4."""
    from mutagen.id3 import ID3

    f = write_audio(tmp_path / "music" / "duo.mp3", tone_signal([110.0, 1000.0], seconds=5.0))
    first = scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0,
                 on_track=tag_writer(model_version="fake-1", scores=True, id3v23=True))  # fmt: skip
    assert first.tags_written == 1 and ID3(f).version == (2, 3, 0)
    scores = tags.read_instruments(f).scores
    tag = ID3(f)
    assert tag.getall("TXXX:INSTRUMENTS")[0].text == ["bass/flute"]
    tag.update_to_v24()
    tag.save(v2_version=4)
    assert ID3(f).getall("TXXX:INSTRUMENTS")[0].text == ["bass/flute"]  # one v2.4 value

    analyser = FakeAnalyser()
    again = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert analyser.calls == 0 and again.retagged == 1 and again.tags_written == 1 and again.tag_errors == 0
    tag = ID3(f)
    assert tag.version == (2, 4, 0) and tag.getall("TXXX:INSTRUMENTS")[0].text == ["bass", "flute"]
    assert len(tag.getall("TXXX:INSTRUMENTS_SCORES")[0].text) == len(scores) > 1
    assert tags.read_instruments(f).scores == scores
    third = scan([f.parent], db=db, analyser=analyser, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert third.tags_written == 0 and third.retagged == 0


@pytest.mark.parametrize("ext", ["flac", "mp3"])
def test_a_tag_writing_scan_puts_back_a_stale_tracks_fields_under_its_own_model(tmp_path, db, ext):
    """After a model upgrade, a scan without --rescan-stale leaves the older model's tracks stale. One
    whose file another program stripped of tagger's fields got nothing back from a tag-writing scan
    ('tags: 0 tagged': only tracks of the scan's model were retagged), though `tagger tag` wrote them
    (found in a user's walk-through). Now the stored results go back under their own model's name
    and families (the older model's 11th family, which the new one lacks, included)."""
    from library_fakes import UKULELE_BANDS

    f = write_audio(tmp_path / "music" / f"trio.{ext}", tone_signal([110.0, 440.0, 1000.0], seconds=5.0))
    old = FakeAnalyser(version="fake-0", bands=UKULELE_BANDS)
    first = scan([f.parent], db=db, analyser=old, jobs=0, on_track=tag_writer(model_version="fake-0"))
    assert first.tags_written == 1
    assert tags.read_instruments(f) == tags.TagState(["bass", "flute", "ukulele"], "fake-0")
    before = stored(db, f)
    retag(f, title="Another title", cover=False, drop_ours=True)
    assert tags.read_instruments(f).instruments == []

    new = FakeAnalyser(version="fake-1")
    again = scan([f.parent], db=db, analyser=new, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert again.stale == 1 and again.tags_written == 1 and again.tag_errors == 0 and new.calls == 0
    assert tags.read_instruments(f) == tags.TagState(["bass", "flute", "ukulele"], "fake-0")
    assert other_tags(f)[0] == "Another title"
    after = stored(db, f)
    assert after["model"] == before["model"] and after["results"] == before["results"] and after["tags_current"]
    assert (after["size"], after["content_hash"]) == (os.path.getsize(f), content_hash(f))
    third = scan([f.parent], db=db, analyser=new, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert third.tags_written == 0 and third.stale == 1

    # --rescan-stale analyses it with the new model, whose results and name replace the old ones
    fresh = scan([f.parent], db=db, analyser=new, jobs=0, rescan_stale=True, on_track=tag_writer(model_version="fake-1"))
    assert fresh.scanned == 1 and fresh.tags_written == 1
    assert tags.read_instruments(f) == tags.TagState(["bass", "flute"], "fake-1")


def test_a_stale_tracks_results_never_replace_another_models_fields_in_its_file(tmp_path, db):
    """a1dad46 had a tag-writing scan put a stale track's stored results back into its file wherever
    its tags did not hold them: a file the newer model's results had been written into since (`tagger
    predict --json` then `tag --from-json`, or another database's scan with the newer models) got the
    older model's back from the next plain scan, and two such databases rewrote each other's fields
    at every scan (found reviewing a1dad46). The stale results go back where another program removed
    tagger's fields, or left them of the track's own model; a file whose fields name another model
    version is left as it is."""
    from library_fakes import UKULELE_BANDS

    f = write_audio(tmp_path / "music" / "trio.flac", tone_signal([110.0, 440.0, 1000.0], seconds=5.0))
    old = FakeAnalyser(version="fake-0", bands=UKULELE_BANDS)
    assert scan([f.parent], db=db, analyser=old, jobs=0, on_track=tag_writer(model_version="fake-0")).tags_written == 1
    before = stored(db, f)
    tags.write_instruments(f, instruments=["bass", "flute", "organ"], model_version="fake-1")  # as tag --from-json
    newer = f.read_bytes()

    new = FakeAnalyser(version="fake-1")
    for _ in range(2):
        again = scan([f.parent], db=db, analyser=new, jobs=0, on_track=tag_writer(model_version="fake-1"))
        assert again.stale == 1 and again.tags_written == 0 and again.tag_errors == 0 and new.calls == 0
        assert f.read_bytes() == newer
    assert tags.read_instruments(f) == tags.TagState(["bass", "flute", "organ"], "fake-1")
    assert stored(db, f)["model"] == before["model"] and stored(db, f)["results"] == before["results"]

    retag(f, title="Another title", cover=False, drop_ours=True)  # removed: the stale results go back
    third = scan([f.parent], db=db, analyser=new, jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert third.tags_written == 1 and new.calls == 0
    assert tags.read_instruments(f) == tags.TagState(["bass", "flute", "ukulele"], "fake-0")
