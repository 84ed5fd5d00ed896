"""What becomes of a track over its file's life (fifth audit, 2026-12-06): copied after new audio
was written over its original, replaced by a folder or by a link the scan does not follow, named
like another file's escaped name, under an empty folder given with a folder holding it, failed and
then moved, or moved with its library to another disk behind a link; and a dry run that must change
no file. From a later audit the same day: results a scan replaced while `tag` wrote the old ones,
and a file replaced by another of the same size and mtime (``mv``) during a scan or before `tag`;
later, one replaced between its analysis and the scan's tag write, and `tag` killed between its
rename and its record. From the identity audit: two files of one size, mtime and fingerprint
swapped by name, before a scan and before `tag`, a file written over in place under `--quick`, and
a folder of the library mounted a second time inside it.
One test each, on the scan with the `FakeAnalyser`."""

from __future__ import annotations

import os
import shutil
import sqlite3

import pytest

from conftest import tone_signal, write_audio
from library_fakes import BANDS, FakeAnalyser
from tagger.db.filter import TrackFilter
from tagger.db.session import open_database
from tagger.fingerprint import CHUNK, content_hash
from tagger.library.scan import scan


def _scan(roots, dbfile, analyser=None, **options):
    db = open_database(dbfile)
    try:
        return scan(roots if isinstance(roots, list) else [roots], db=db, analyser=analyser or FakeAnalyser(), jobs=0,
                    **options)  # fmt: skip
    finally:
        db.close()


def _rows(dbfile) -> dict[str, dict]:
    """path -> {status, error, content_hash, instruments} of every track."""
    from sqlalchemy import select

    from tagger.db import models as M

    db = open_database(dbfile)
    try:
        with db.session() as s:
            return {t.path: {"status": t.status, "error": t.error, "content_hash": t.content_hash,
                             "instruments": sorted(d.family for d in t.detections if d.present)}
                    for t in s.scalars(select(M.Track))}  # fmt: skip
    finally:
        db.close()


def _old(*paths) -> None:
    """Set the files' mtime a minute back (past any settle time, and another mtime than before)."""
    for p in paths:
        st = os.stat(p)
        os.utime(p, (st.st_atime, st.st_mtime - 60))


def test_a_copy_of_a_file_rewritten_where_the_fingerprint_does_not_read_is_analysed_not_given_old_results(tmp_path):
    # New audio over an analysed file, the same size, different only outside the fingerprint's three
    # chunks, then copied: the copy was given the original's old results and old content hash
    # (compared with the original's current bytes, which are the copy's). Now its own analysis.
    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "stem.wav", tone_signal([110.0], seconds=40.0))  # bass
    other = write_audio(tmp_path / "other.wav", tone_signal([4000.0], seconds=40.0))  # string, same size
    _scan(music, dbfile)
    data, new = bytearray(song.read_bytes()), other.read_bytes()
    size, mid = len(data), len(data) // 2 - CHUNK // 2
    for start, end in ((CHUNK, mid), (mid + CHUNK, size - CHUNK)):
        data[start:end] = new[start:end]
    song.write_bytes(bytes(data))
    copy = music / "a_copy.wav"
    shutil.copyfile(song, copy)
    _old(song, copy)
    summary = _scan(music, dbfile)
    assert (summary.scanned, summary.copied) == (2, 0)
    rows = _rows(dbfile)
    for path in (song, copy):
        assert "string" in rows[str(path)]["instruments"], rows
        assert rows[str(path)]["content_hash"] == content_hash(path)
    shutil.copyfile(song, music / "b_copy.wav")  # a copy of analysed bytes still gets their results
    _old(music / "b_copy.wav")
    summary = _scan(music, dbfile)
    assert (summary.scanned, summary.copied) == (0, 1)
    assert _rows(dbfile)[str(music / "b_copy.wav")]["instruments"] == rows[str(song)]["instruments"]


def _prune(dbfile):
    from tagger.db.queries import prune_missing

    db = open_database(dbfile)
    try:
        with db.session() as s:
            return prune_missing(s)
    finally:
        db.close()


def test_a_file_replaced_by_a_folder_or_reached_through_a_link_not_followed_goes_missing(tmp_path):
    # rm song.flac; mkdir song.flac: the track stayed ok for ever (the path exists), and prune kept
    # it; a folder replaced by a link out of the library (not followed) kept its tracks ok likewise.
    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "song.flac", tone_signal([110.0], seconds=4.0))
    album = write_audio(music / "album" / "x.flac", tone_signal([1000.0], seconds=4.0))
    hidden = write_audio(music / ".hidden" / "h.flac", tone_signal([4000.0], seconds=4.0))
    write_audio(music / "other.flac", tone_signal([4000.0], seconds=4.0))
    _scan(music, dbfile, include_hidden=True)
    song.unlink()
    write_audio(song / "inner.flac", tone_signal([1000.0], seconds=5.0))
    outside = tmp_path / "outside" / "album"
    shutil.move(music / "album", outside)
    (music / "album").symlink_to(outside)
    summary = _scan(music, dbfile)  # without --include-hidden: the hidden file is skipped, kept as it was
    assert summary.missing == 2
    rows = _rows(dbfile)
    assert (rows[str(song)]["status"], rows[str(album)]["status"]) == ("missing", "missing")
    assert rows[str(hidden)]["status"] == "ok" and rows[str(song / "inner.flac")]["status"] == "ok"
    assert _prune(dbfile).removed == [str(song)]  # the link's file is still there: kept until a scan follows it
    summary = _scan(music, dbfile, follow_external_symlinks=True)
    assert (summary.scanned, _rows(dbfile)[str(album)]["status"]) == (0, "ok")


def test_a_name_spelled_like_another_files_escaped_name_keeps_its_own_results(tmp_path):
    # A file named a\xff.flac (a real backslash: valid UTF-8) and one named with the byte 0xFF share
    # the stored name: the error row of the second overwrote the first's results on every other scan.
    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    valid = write_audio(music / "a\\xff.flac", tone_signal([110.0], seconds=4.0))
    shutil.copyfile(valid, os.fsencode(music) + b"/a\xff.flac")
    _old(valid, os.fsencode(music) + b"/a\xff.flac")
    for run in range(3):
        summary = _scan(music, dbfile)
        assert _rows(dbfile) == {str(valid): {"status": "ok", "error": None, "content_hash": content_hash(valid),
                                              "instruments": ["bass"]}}, run  # fmt: skip
        assert (summary.scanned, summary.failed, summary.missing) == (int(run == 0), 1, 0)
        assert [p for p, _ in summary.errors] == [str(valid)]
    assert "spell the name of another file: nothing is stored for this one" in summary.errors[0][1]
    valid.unlink()  # the escaped name free again: the error is stored under it, as for any such name
    summary = _scan(music, dbfile)
    assert _rows(dbfile)[str(valid)]["status"] == "missing"  # results kept: a track's row is never the error's
    assert summary.failed == 1


def test_an_empty_folder_given_with_a_folder_holding_it_keeps_its_tracks(tmp_path):
    # scan lib/drive lib, lib/drive empty as an unmounted drive's mount point: the warning said its
    # tracks were kept, and the walk of lib marked them missing in the same run.
    lib, dbfile = tmp_path / "lib", tmp_path / "lib.db"
    on_drive = write_audio(lib / "drive" / "d1.flac", tone_signal([110.0], seconds=4.0))
    local = write_audio(lib / "local" / "l1.flac", tone_signal([1000.0], seconds=4.0))
    _scan(lib, dbfile)
    on_drive.unlink()
    local.unlink()  # gone from a folder that is not empty: missing as ever
    write_audio(lib / "local" / "l2.flac", tone_signal([4000.0], seconds=4.0))
    for roots in ([lib / "drive", lib], [lib, lib / "drive"]):
        summary = _scan(roots, dbfile)
        assert summary.empty_roots == [(str(lib / "drive"), 1)]
        rows = _rows(dbfile)
        assert (rows[str(on_drive)]["status"], rows[str(local)]["status"]) == ("ok", "missing")


def test_a_dry_run_lists_the_temp_files_of_killed_tag_writes_and_deletes_none(tmp_path):
    from typer.testing import CliRunner

    from tagger.cli import app

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    write_audio(music / "song.flac", tone_signal([110.0], seconds=4.0))
    left = music / ".song.flac.abcd1234.tagger-tmp"  # what a tag write killed with -9 leaves
    left.write_bytes(b"half a copy")
    _old(music / "song.flac", left)
    command = ["scan", str(music), "--db", str(dbfile), "--jobs", "0", "--settle-seconds", "0"]
    result = CliRunner().invoke(app, [*command, "--dry-run"])
    assert result.exit_code == 0, result.output
    assert left.exists()
    assert f"tagger: would remove {left}, left over by an interrupted tag write" in result.output
    assert "deleted" not in result.output
    result = CliRunner().invoke(app, command)  # not a dry run: deleted, and said so (was: in --json alone)
    assert result.exit_code == 0 and not left.exists(), result.output
    assert "1 leftover temporary file(s) of interrupted tag writes (.tagger-tmp) deleted (--json names them)\n" in result.output
    left.write_bytes(b"half a copy")
    _old(left)
    summary = _scan(music, dbfile)
    assert not left.exists() and summary.temp_files == [str(left)]


def test_a_failed_file_moved_keeps_a_reason_that_names_no_old_path(tmp_path):
    # bad2.mp3 -> bad3.mp3: `errors` said "bad3.mp3: not a readable audio file (.../bad2.mp3: ...)".
    import sqlite3

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    music.mkdir()
    bad = music / "bad2.mp3"
    bad.write_bytes(b"not audio " * 100)
    _old(bad)
    _scan(music, dbfile)
    assert "bad2" not in _rows(dbfile)[str(bad)]["error"]
    bad.rename(music / "bad3.mp3")
    assert _scan(music, dbfile).moved == 1
    reason = _rows(dbfile)[str(music / "bad3.mp3")]["error"]
    assert reason.startswith("not a readable audio file") and "bad2" not in reason, reason
    con = sqlite3.connect(dbfile)  # a reason stored by an older tagger, naming the file
    with con:
        con.execute("update tracks set error = ? where path = ?",
                    (f"cannot decode {music / 'bad3.mp3'}", str(music / "bad3.mp3")))  # fmt: skip
    con.close()
    (music / "bad3.mp3").rename(music / "bad4.mp3")
    assert _scan(music, dbfile).moved == 1
    assert _rows(dbfile)[str(music / "bad4.mp3")]["error"] == f"cannot decode {music / 'bad4.mp3'}"


def test_a_library_moved_to_another_disk_behind_a_link_keeps_one_track_per_file(tmp_path):
    # mv Music newdisk/Music; ln -s newdisk/Music Music; scan Music: every file was stored twice for
    # ever ("copied"), the old rows never missing since their paths still lead to the files.
    music, dbfile = tmp_path / "Music", tmp_path / "lib.db"
    files = [write_audio(music / name, tone_signal([f], seconds=4.0)) for name, f in (("x.flac", 110.0),
                                                                                      ("y.flac", 1000.0))]  # fmt: skip
    _scan(music, dbfile)
    before = _rows(dbfile)
    moved = tmp_path / "newdisk" / "Music"
    moved.parent.mkdir()
    music.rename(moved)
    music.symlink_to(moved)
    summary = _scan(music, dbfile)
    assert (summary.scanned, summary.copied, summary.moved, summary.missing) == (0, 0, 0, 0)
    assert summary.relinked == [(str(f), str(moved / f.name)) for f in files]
    assert _rows(dbfile) == {str(moved / f.name): before[str(f)] for f in files}  # results and all
    summary = _scan(music, dbfile)
    assert (summary.skipped, summary.relinked, len(_rows(dbfile))) == (2, [], 2)
    hard = moved / "z.flac"  # a hard link is another name of its own, crawled as such: a copy as before
    os.link(files[0].resolve(), hard)
    summary = _scan(music, dbfile)
    assert (summary.copied, summary.relinked, len(_rows(dbfile))) == (1, [], 3)


def test_a_folder_mounted_at_two_places_scanned_under_each_name_keeps_one_track_per_file(tmp_path):
    # /data/Music bind-mounted at ~/Music, one scan of each name (a cron job's, the user's): each file
    # was stored once per name, results copied, and for ever: every tag write through one name left
    # the other's row "changed since it was analysed; scan it again" (`tagger tag` exit 1 each run).
    # Found by the red team. The row follows the name the scan found, as a link's does.
    import subprocess

    from typer.testing import CliRunner

    from tagger.cli import app

    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root and mount for a bind mount")
    music, other, dbfile = tmp_path / "Music", tmp_path / "other", tmp_path / "lib.db"
    files = [write_audio(music / name, tone_signal([f], seconds=4.0)) for name, f in (("x.flac", 110.0),
                                                                                      ("y.flac", 1000.0))]  # fmt: skip
    _old(*files)
    other.mkdir()
    if subprocess.run(["mount", "--bind", str(music), str(other)], capture_output=True).returncode:
        pytest.skip("cannot make a bind mount here")
    try:
        _scan(music, dbfile)
        before = _rows(dbfile)
        summary = _scan(other, dbfile)
        assert (summary.scanned, summary.copied, summary.moved) == (0, 0, 0)
        assert summary.renamed == [(str(f), str(other / f.name)) for f in files] and summary.relinked == []
        assert _rows(dbfile) == {str(other / f.name): before[str(f)] for f in files}  # results and all
        result = CliRunner().invoke(app, ["tag", "--db", str(dbfile), "--settle-seconds", "0", "--scores"])
        assert result.exit_code == 0 and "2 tagged, 0 unchanged, 0 skipped" in result.output, result.output
        summary = _scan(music, dbfile)  # the first name again: the rows follow it back
        assert summary.renamed == [(str(other / f.name), str(f)) for f in files] and summary.scanned == 0
        assert sorted(_rows(dbfile)) == [str(f) for f in files]
    finally:
        subprocess.run(["umount", "-l", str(other)], check=False)


def test_the_tracks_renamed_to_another_name_of_their_files_are_named_five_at_most(capsys):
    # A folder mounted at two places and scanned under each name by turns (a cron job's scan of
    # /data/Music, the user's of ~/Music) moves every track to the other name at every scan: each scan
    # printed one line per track of the library. Five are named, the rest counted.
    from tagger.cli.scan import _scan_notes
    from tagger.library.state import ScanSummary

    summary = ScanSummary(scan_id=1, model_version="m")
    summary.renamed = [(f"/data/Music/{i}.flac", f"/home/u/Music/{i}.flac") for i in range(40)]
    _scan_notes(summary, dry_run=False)
    out = capsys.readouterr()
    lines = (out.out + out.err).splitlines()
    assert len(lines) == 6 and all("under another name" in line for line in lines[:5]), lines
    assert lines[5] == ("tagger: ... and 35 more track(s) stored under the name this scan found their files by (a "
                        "folder mounted at two places?)")


def _tags_current(dbfile, path) -> bool:
    con = sqlite3.connect(dbfile)
    try:
        return bool(con.execute("select tags_current from tracks where path = ?", (str(path),)).fetchone()[0])
    finally:
        con.close()


def test_tags_written_from_results_a_scan_replaced_meanwhile_are_not_recorded_as_current(tmp_path, monkeypatch):
    # `tag` read the results, a `scan --rescan-stale` of another model stored new ones, then `tag`
    # wrote the old ones and recorded them as current: every later scan left the stale tags alone.
    from tagger import tags
    from tagger.errors import TagWriteError
    from tagger.library.scan import tag_writer
    from tagger.tags import batch

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "song.flac", tone_signal([110.0], seconds=4.0))
    _old(song)
    _scan(music, dbfile)  # fake-1: bass; no tags written
    other = FakeAnalyser(version="fake-2", bands={"string": BANDS["bass"], "flute": BANDS["flute"],
                                                  "bass": BANDS["string"]})  # fmt: skip
    write = batch.write_instruments

    def scan_then_write(path, **options):  # the scan commits between tag's read (of each track,
        _scan(music, dbfile, analyser=other, rescan_stale=True)  # right before its write) and the write
        return write(path, **options)

    monkeypatch.setattr(batch, "write_instruments", scan_then_write)
    db = open_database(dbfile)
    try:
        results = list(tags.tag_from_database(db, settle_seconds=0))
    finally:
        db.close()
    assert [r.written for r in results if not isinstance(r, TagWriteError)] == [True]
    assert ["a scan stored new results for it meanwhile" in r.reason for r in results
            if isinstance(r, TagWriteError)] == [True]  # fmt: skip
    assert tags.read_instruments(song).model_version == "fake-1"
    assert not _tags_current(dbfile, song)
    summary = _scan(music, dbfile, analyser=other, on_track=tag_writer(model_version="fake-2"))
    assert (summary.scanned, summary.tags_written) == (0, 1)  # same bytes: only the tags are written
    state = tags.read_instruments(song)
    assert (state.model_version, state.instruments) == ("fake-2", ["string"])
    assert _tags_current(dbfile, song)


def _same_size_and_mtime(tmp_path):
    """An analysed-to-be ``music/song.wav`` (bass) and ``incoming/song.wav`` (string) of the same size
    and mtime, as two files unpacked from one archive."""
    song = write_audio(tmp_path / "music" / "song.wav", tone_signal([110.0], seconds=4.0))
    incoming = write_audio(tmp_path / "incoming" / "song.wav", tone_signal([4000.0], seconds=4.0))
    _old(song)
    st = os.stat(song)
    os.utime(incoming, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.path.getsize(incoming) == st.st_size
    return song, incoming


def test_a_file_replaced_during_its_analysis_by_one_of_the_same_size_and_mtime_is_analysed_again(tmp_path):
    # mv of another file of the same size and mtime over a file being analysed: the check after the
    # analysis compared size and mtime only, so the old file's results were stored and written into
    # the new file, its fingerprint and content hash recorded: no later scan looked at it again.
    from tagger import tags
    from tagger.library.scan import tag_writer

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song, incoming = _same_size_and_mtime(tmp_path)
    touched = write_audio(music / "touched.wav", tone_signal([1000.0], seconds=4.0))
    _old(touched)

    class Replacing(FakeAnalyser):
        def predict_features(self, feats):
            if incoming.exists():
                os.replace(incoming, song)
                st = os.stat(touched)
                os.utime(touched, (st.st_atime, st.st_mtime + 10))  # the same file, only touched: kept
                os.chmod(touched, 0o600)
            return super().predict_features(feats)

    summary = _scan(music, dbfile, analyser=Replacing(), on_track=tag_writer(model_version="fake-1"))
    reason = "the file changed while it was being analysed; the next scan analyses it again"
    assert summary.errors == [(str(song), reason)]
    assert not tags.read_instruments(song).tagged
    assert _rows(dbfile)[str(touched)]["instruments"] == ["flute"]  # (its tags wait for the next scan: touched)
    summary = _scan(music, dbfile, on_track=tag_writer(model_version="fake-1"))
    assert (summary.scanned, summary.failed) == (1, 0)
    assert _rows(dbfile)[str(song)]["instruments"] == tags.read_instruments(song).instruments == ["string"]


def test_tag_refuses_a_file_replaced_by_one_of_the_same_size_and_mtime(tmp_path):
    # scan --no-write-tags, then mv of another file of the same size and mtime over it: `tag` wrote
    # the old file's results into it and recorded its fingerprint and content hash, so no later scan
    # analysed it.
    from tagger import tags
    from tagger.errors import ChangedSinceError
    from tagger.library.scan import tag_writer

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song, incoming = _same_size_and_mtime(tmp_path)
    _scan(music, dbfile)  # no tags written
    before = _rows(dbfile)
    os.replace(incoming, song)
    db = open_database(dbfile)
    try:
        results = list(tags.tag_from_database(db, settle_seconds=0))
    finally:
        db.close()
    assert [type(r) for r in results] == [ChangedSinceError], results
    assert results[0].reason.startswith("file changed since it was analysed (the same size and modification time")
    assert not tags.read_instruments(song).tagged
    assert _rows(dbfile) == before  # neither its fingerprint nor its content hash taken on
    summary = _scan(music, dbfile, on_track=tag_writer(model_version="fake-1"))
    assert summary.scanned == 1
    assert _rows(dbfile)[str(song)]["instruments"] == tags.read_instruments(song).instruments == ["string"]


def test_a_scan_does_not_write_stored_results_into_a_file_replaced_since_it_was_planned(tmp_path, monkeypatch):
    """The scan writes stored results into unchanged tracks whose tags do not hold them, after the
    analysis: a file of the same size and mtime moved over one of them meanwhile passed the write's
    size/mtime check and got the old results as tags, recorded as current for good."""
    from tagger import tags
    from tagger.library import runner as R
    from tagger.library.scan import tag_writer

    music = tmp_path / "music"
    song = write_audio(music / "a.wav", tone_signal([110.0], seconds=3.0))  # bass
    other = write_audio(tmp_path / "other.wav", tone_signal([4000.0], seconds=3.0))
    assert song.stat().st_size == other.stat().st_size
    os.utime(other, ns=(song.stat().st_atime_ns, song.stat().st_mtime_ns))
    dbfile = tmp_path / "lib.db"
    _scan([music], dbfile)  # tags not written: the next scan that writes tags retags the file
    retag = R.Runner.retag

    def swapped(self, work):
        os.replace(other, song)  # another file, same size and mtime, moved over during the scan
        return retag(self, work)

    monkeypatch.setattr(R.Runner, "retag", swapped)
    summary = _scan([music], dbfile, on_track=tag_writer(model_version="fake-1"))
    assert summary.tags_written == 0 and [p for p, _ in summary.tag_failures] == [str(song)]
    assert not tags.read_instruments(song).tagged
    monkeypatch.setattr(R.Runner, "retag", retag)
    assert _scan([music], dbfile, on_track=tag_writer(model_version="fake-1")).scanned == 1  # analysed again


def _unseen_by_the_fingerprint(song, incoming):
    """``incoming``: the audio of ``song`` where the fingerprint's three chunks read, another tone
    (string) everywhere else: the same size and fingerprint, other content (``song`` lasts 40 s)."""
    other = write_audio(incoming.parent / "other.wav", tone_signal([4000.0], seconds=40.0))
    data, new = bytearray(song.read_bytes()), other.read_bytes()
    other.unlink()
    size, mid = len(data), len(data) // 2 - CHUNK // 2
    for start, end in ((CHUNK, mid), (mid + CHUNK, size - CHUNK)):
        data[start:end] = new[start:end]
    incoming.write_bytes(bytes(data))
    return incoming


def test_a_file_replaced_during_its_analysis_by_one_the_fingerprint_cannot_tell_apart_is_analysed_again(tmp_path):
    """Another file (another inode) of the same size and mtime, different only where the
    fingerprint's three chunks do not read (two stems silent there): the fingerprint matched, so
    the old file's results were stored for it. Another inode now needs the whole content too."""
    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "stem.wav", tone_signal([110.0], seconds=40.0))
    incoming = _unseen_by_the_fingerprint(song, tmp_path / "incoming.wav")
    _old(song)
    st = os.stat(song)
    os.utime(incoming, ns=(st.st_atime_ns, st.st_mtime_ns))

    class Replacing(FakeAnalyser):
        def predict_features(self, feats):
            if incoming.exists():
                os.replace(incoming, song)
            return super().predict_features(feats)

    summary = _scan(music, dbfile, analyser=Replacing())
    assert summary.errors == [(str(song), "the file changed while it was being analysed; the next scan analyses it again")]
    assert _scan(music, dbfile).scanned == 1
    assert _rows(dbfile)[str(song)]["content_hash"] == content_hash(song)


def _write_over_in_place(path, data: bytes) -> None:
    """Write ``data`` over the file ``path`` in place (the same inode) and set its mtime back to what
    it was, as ``cp --preserve=timestamps`` or a restore from a backup does."""
    st = os.stat(path)
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_a_file_written_over_in_place_during_its_analysis_with_its_mtime_kept_is_analysed_again(tmp_path):
    """The same file (inode) written over in place while it was analysed, its mtime set back, by a
    stem that differs only where the fingerprint does not read: another ctime sent it to the
    fingerprint check alone, which it passed, so the old audio's results were stored and written
    into it as tags, its facts recorded: no later scan looked at it again. Another ctime now needs
    the whole content analysed, as it does when the scan plans."""
    from tagger import tags
    from tagger.library.scan import tag_writer

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "stem.wav", tone_signal([110.0], seconds=40.0))  # bass
    edited = _unseen_by_the_fingerprint(song, tmp_path / "edited.wav").read_bytes()  # string outside the chunks
    _old(song)
    inode = os.stat(song).st_ino

    class Rewriting(FakeAnalyser):
        def predict_features(self, feats):
            if song.read_bytes() != edited:
                _write_over_in_place(song, edited)
            return super().predict_features(feats)

    writer = tag_writer(model_version="fake-1")
    summary = _scan(music, dbfile, analyser=Rewriting(), on_track=writer)
    assert summary.errors == [(str(song), "the file changed while it was being analysed; the next scan analyses it again")]
    assert os.stat(song).st_ino == inode and not tags.read_instruments(song).tagged
    summary = _scan(music, dbfile, on_track=writer)
    assert (summary.scanned, summary.tags_written) == (1, 1)
    assert _rows(dbfile)[str(song)]["instruments"] == tags.read_instruments(song).instruments == ["bass", "string"]


def test_a_scans_tag_write_refuses_a_file_written_over_in_place_after_its_analysis_with_its_mtime_kept(tmp_path):
    """The same, after the analysis and its check, before the scan's tag write: the write was given
    no ctime, so the same inode passed on its fingerprint alone and got the old audio's results."""
    from tagger import tags
    from tagger.library.scan import tag_writer

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "stem.wav", tone_signal([110.0], seconds=40.0))  # bass
    edited = _unseen_by_the_fingerprint(song, tmp_path / "edited.wav").read_bytes()
    _old(song)
    analysed = content_hash(song)
    writer = tag_writer(model_version="fake-1")

    def written_over_first(path, result, expected):
        _write_over_in_place(song, edited)
        return writer(path, result, expected)

    summary = _scan(music, dbfile, on_track=written_over_first)
    assert (summary.scanned, summary.tags_written) == (1, 0)
    assert [p for p, _ in summary.tag_failures] == [str(song)]
    assert summary.tag_failures[0][1].startswith("file changed since it was analysed")
    assert not tags.read_instruments(song).tagged
    assert _rows(dbfile)[str(song)]["content_hash"] == analysed and not _tags_current(dbfile, song)
    assert _scan(music, dbfile, on_track=writer).scanned == 1  # (another ctime than the one stored)
    assert _rows(dbfile)[str(song)]["instruments"] == tags.read_instruments(song).instruments == ["bass", "string"]


@pytest.mark.parametrize("unseen", [False, True], ids=["other-audio", "other-audio-the-fingerprint-does-not-read"])
def test_a_scans_tag_write_refuses_a_file_replaced_after_its_analysis_by_one_of_the_same_size_and_mtime(tmp_path,
                                                                                                        unseen):
    """The scan's tag hook was given only the size and mtime of the file analysed: another file of
    the same size and mtime moved over it after the check that follows the analysis got the old
    file's results as tags, and its fingerprint and content hash were recorded as the track's, so no
    later scan analysed it. The write now checks the fingerprint, and another inode's whole content."""
    from tagger import tags
    from tagger.library.scan import tag_writer

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    if unseen:
        song = write_audio(music / "song.wav", tone_signal([110.0], seconds=40.0))
        incoming = _unseen_by_the_fingerprint(song, tmp_path / "incoming.wav")
        _old(song)
        st = os.stat(song)
        os.utime(incoming, ns=(st.st_atime_ns, st.st_mtime_ns))
    else:
        song, incoming = _same_size_and_mtime(tmp_path)
    analysed = content_hash(song)
    writer = tag_writer(model_version="fake-1")

    def moved_over_first(path, result, expected):
        os.replace(incoming, song)  # after the analysis and its check, before the write
        return writer(path, result, expected)

    summary = _scan(music, dbfile, on_track=moved_over_first)
    assert (summary.scanned, summary.tags_written) == (1, 0)
    assert [p for p, _ in summary.tag_failures] == [str(song)]
    assert summary.tag_failures[0][1].startswith("file changed since it was analysed")
    assert not tags.read_instruments(song).tagged
    assert _rows(dbfile)[str(song)]["content_hash"] == analysed and not _tags_current(dbfile, song)
    if not unseen:  # (one the fingerprint cannot tell apart passes for the old file in a later scan too)
        assert _scan(music, dbfile, on_track=writer).scanned == 1
        assert tags.read_instruments(song).instruments == _rows(dbfile)[str(song)]["instruments"] == ["string"]


def test_tag_killed_between_the_rename_and_the_database_record_recovers_without_a_scan(tmp_path, monkeypatch):
    """`tag` killed after moving the tagged copy over a file but before recording its new facts:
    every later `tag` refused the file (its size and fingerprint no longer the stored ones) until a
    scan analysed it again. A file that is byte for byte the copy `tag` verified is recognised now;
    one whose audio another file replaced since is still refused."""
    from tagger import tags
    from tagger.db import writes
    from tagger.errors import ChangedSinceError
    from tagger.library.scan import tag_writer

    class Killed(BaseException):
        pass

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "song.flac", tone_signal([110.0], seconds=4.0))  # bass
    swapped = write_audio(music / "swapped.flac", tone_signal([1000.0], seconds=4.0))  # flute
    _old(song, swapped)
    _scan(music, dbfile)  # no tags written
    before = _rows(dbfile)
    record = writes.record_rewrite

    def killed(*args, **kwargs):
        raise Killed

    def tag(path, dry_run=False):
        db = open_database(dbfile)
        try:
            return list(tags.tag_from_database(db, where=TrackFilter.of(paths=[path]), settle_seconds=0,
                                               dry_run=dry_run))  # fmt: skip
        finally:
            db.close()

    monkeypatch.setattr(writes, "record_rewrite", killed)
    for path in (song, swapped):
        try:
            tag(path)
        except Killed:
            pass
        else:
            raise AssertionError("the record was not reached")
    assert tags.read_instruments(song).instruments == ["bass"] and _rows(dbfile) == before
    # Other audio (string) holding the very tags `tag` wrote, moved over the second file.
    other = write_audio(tmp_path / "other.flac", tone_signal([4000.0], seconds=4.0))
    tags.write_instruments(other, instruments=["flute"], model_version="fake-1", families=tuple(BANDS))
    os.replace(other, swapped)
    monkeypatch.setattr(writes, "record_rewrite", record)
    assert [getattr(r, "changed", None) for r in tag(song, dry_run=True)] == [False]
    assert not _tags_current(dbfile, song)  # (a dry run records nothing)
    results = tag(song)
    assert [(type(r), getattr(r, "changed", None)) for r in results] == [(tags.TagChange, False)], results
    assert _rows(dbfile)[str(song)]["content_hash"] == content_hash(song)
    assert _tags_current(dbfile, song)
    results = tag(swapped)
    assert [type(r) for r in results] == [ChangedSinceError], results
    assert results[0].reason.startswith("file changed since it was analysed")
    assert _rows(dbfile)[str(swapped)] == before[str(swapped)]
    summary = _scan(music, dbfile, on_track=tag_writer(model_version="fake-1"))
    assert (summary.scanned, summary.tags_written) == (1, 1)  # the swapped file only
    assert tags.read_instruments(swapped).instruments == _rows(dbfile)[str(swapped)]["instruments"] == ["string"]


def _same_mtime(*paths) -> None:
    """Give the files the first one's mtime (as files unpacked from one archive have)."""
    st = os.stat(paths[0])
    for p in paths[1:]:
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))

def _swapped_twins(music, dbfile):
    """Two stems of one size and mtime, silent where the fingerprint reads, scanned without tags,
    then their names swapped with mv: (song, twin, the rows stored before the swap)."""
    song = write_audio(music / "bass.wav", tone_signal([110.0], seconds=40.0))
    twin = _unseen_by_the_fingerprint(song, music / "strings.wav")
    _old(song)
    _same_mtime(song, twin)
    _scan(music, dbfile)  # no tags written
    before = _rows(dbfile)
    os.rename(song, music / "swap.tmp")
    os.rename(twin, song)
    os.rename(music / "swap.tmp", twin)
    return song, twin, before



def test_two_files_of_one_size_mtime_and_fingerprint_swapped_by_name_are_analysed_again(tmp_path):
    # Two stems unpacked from one archive (one size, one mtime, silent where the fingerprint reads),
    # scanned without tags, then their names swapped with mv: size, mtime and fingerprint at each
    # path were the stored ones, so both kept the other's results, and the next tag-writing scan
    # wrote them into the files. A changed status-change time (ctime) now sends a file to the hash
    # of its whole content, as a changed mtime does.
    from tagger import tags
    from tagger.library.scan import tag_writer

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song, twin, before = _swapped_twins(music, dbfile)
    assert before[str(song)]["instruments"] != before[str(twin)]["instruments"]
    summary = _scan(music, dbfile, on_track=tag_writer(model_version="fake-1"))
    assert (summary.scanned, summary.skipped) == (2, 0)
    rows = _rows(dbfile)
    assert rows[str(song)]["instruments"] == before[str(twin)]["instruments"] == tags.read_instruments(song).instruments
    assert rows[str(twin)]["instruments"] == before[str(song)]["instruments"] == tags.read_instruments(twin).instruments
    for path in (song, twin):
        assert rows[str(path)]["content_hash"] == content_hash(path)
    summary = _scan(music, dbfile, on_track=tag_writer(model_version="fake-1"))
    assert (summary.scanned, summary.skipped, summary.tags_written) == (0, 2, 0)  # recorded as they are now


def test_a_quick_scan_analyses_a_file_written_over_in_place_with_its_size_and_mtime_kept(tmp_path):
    # cp --preserve=timestamps of another song of the same size over an analysed file (the same
    # inode, written in place, its mtime set back): `--quick` trusted size and mtime and kept the
    # old song's results. Its ctime is another now: the fingerprint is read, and tells.
    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song, incoming = _same_size_and_mtime(tmp_path)
    _scan(music, dbfile)
    inode = os.stat(song).st_ino
    shutil.copyfile(incoming, song)
    _same_mtime(incoming, song)
    assert os.stat(song).st_ino == inode
    summary = _scan(music, dbfile, quick=True)
    assert (summary.scanned, summary.skipped) == (1, 0)
    assert _rows(dbfile)[str(song)]["instruments"] == ["string"]
    assert _scan(music, dbfile, quick=True).skipped == 1


def test_a_hard_link_to_a_file_rewritten_in_place_with_its_mtime_kept_is_analysed_not_given_old_results(tmp_path,
                                                                                                     monkeypatch):
    # A song edited in place (the same size, the fingerprint's chunks untouched), its mtime set back
    # (`touch -r`), then hard-linked into another folder: the link was taken for a link to the
    # unchanged file (same inode, the stored mtime) without reading it, and given the old results for
    # good, while the song itself, its ctime another, was analysed again. A link is now taken unread
    # only when the ctime is the stored one too; otherwise its content is read, once per file however
    # many names it has.
    from tagger.library import plan

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "song.wav", tone_signal([110.0], seconds=40.0))  # bass
    _old(song)
    _scan(music, dbfile)
    st = os.stat(song)
    edited = _unseen_by_the_fingerprint(song, tmp_path / "edited.wav")  # string outside the chunks
    with open(song, "r+b") as f:
        f.write(edited.read_bytes())
    os.utime(song, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.link(song, music / "a_link.wav")
    summary = _scan(music, dbfile)
    assert (summary.scanned, summary.copied) == (2, 0)
    rows = _rows(dbfile)
    assert rows[str(music / "a_link.wav")]["instruments"] == rows[str(song)]["instruments"] == ["bass", "string"]
    read = []
    monkeypatch.setattr(plan, "content_hash", lambda p, _f=plan.content_hash: read.append(p) or _f(p))
    links = [music / f"link{i}.wav" for i in range(3)]
    for link in links:
        os.link(song, link)
    summary = _scan(music, dbfile)
    assert (summary.scanned, summary.copied) == (0, 3)
    assert len(read) == 1, read  # one file, read once for its five names
    assert all(_rows(dbfile)[str(link)]["instruments"] == ["bass", "string"] for link in links)
    read.clear()
    assert _scan(music, dbfile).skipped == 5 and read == []


def test_tag_refuses_two_files_of_one_size_mtime_and_fingerprint_swapped_by_name(tmp_path):
    # The same two stems, scanned without tags and swapped by name, then `tagger tag`: it checked size,
    # mtime and fingerprint, all the stored ones, and wrote each file the other's results (recording
    # them as current). A file of another ctime must now hash to the content the results are of.
    from tagger import tags
    from tagger.errors import ChangedSinceError

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song, twin, before = _swapped_twins(music, dbfile)
    db = open_database(dbfile)
    try:
        results = list(tags.tag_from_database(db, settle_seconds=0))
    finally:
        db.close()
    assert [type(r) for r in results] == [ChangedSinceError, ChangedSinceError], results
    assert all(r.reason.startswith("file changed since it was analysed") for r in results)
    assert not tags.read_instruments(song).tagged and not tags.read_instruments(twin).tagged
    assert _rows(dbfile) == before
    os.rename(song, music / "swap.tmp")  # swapped back: other ctimes, but the bytes analysed: tagged
    os.rename(twin, song)
    os.rename(music / "swap.tmp", twin)
    db = open_database(dbfile)
    try:
        results = list(tags.tag_from_database(db, settle_seconds=0))
    finally:
        db.close()
    assert [r.written for r in results] == [True, True], results
    assert tags.read_instruments(song).instruments == before[str(song)]["instruments"]
    assert tags.read_instruments(twin).instruments == before[str(twin)]["instruments"]


def test_a_track_stored_before_ctimes_gets_its_files_ctime_on_the_next_scan_without_reading_it(tmp_path, monkeypatch):
    from tagger.library import plan

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "song.wav", tone_signal([110.0], seconds=4.0))
    _old(song)
    _scan(music, dbfile)
    con = sqlite3.connect(dbfile)
    with con:
        con.execute("update tracks set ctime_ns = null")  # as revision 0008 leaves an older track
    read = []
    monkeypatch.setattr(plan, "content_hash", lambda p, _f=plan.content_hash: read.append(p) or _f(p))
    assert _scan(music, dbfile).skipped == 1
    assert read == []  # trusted as before, by size, mtime and fingerprint
    assert con.execute("select ctime_ns from tracks").fetchone()[0] == os.stat(song).st_ctime_ns
    con.close()
    assert _scan(music, dbfile).skipped == 1 and read == []


@pytest.fixture
def bind_mount():
    """``bind_mount(source, target)``: mount folder ``source`` again at ``target`` (both names reach the
    same files, as a bind mount or a second mount of one share does); unmounted after the test.
    Skips the test where mounting is not allowed (it needs root)."""
    import subprocess

    mounted = []

    def mount(source, target):
        os.makedirs(target, exist_ok=True)
        if os.geteuid() != 0 or subprocess.run(["mount", "--bind", str(source), str(target)],
                                               capture_output=True).returncode != 0:  # fmt: skip
            pytest.skip("mounting a folder needs root")
        mounted.append(target)

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=False)


def test_a_folder_of_the_library_mounted_again_under_another_name_keeps_one_track_per_file(tmp_path, bind_mount):
    # A folder bind-mounted a second time inside the library, its name sorting first: the walk reaches
    # the files there first and skips the folder reached twice, so the files' tracks under their
    # first name were never looked at again, yet kept (their files are there): a duplicate of each
    # track, which kept the old results for good when the file changed (`query --has bass` listed a
    # song with no bass left). A track under a name of a file that the scan found under another name
    # is removed now, as one stored under a symbolic link is; the scan's own name has the results.
    from tagger.db.queries import find_tracks

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "real" / "x.wav", tone_signal([110.0], seconds=4.0))
    _old(song)
    _scan(music, dbfile)
    again = music / "0again" / "x.wav"
    bind_mount(music / "real", music / "0again")
    summary = _scan(music, dbfile)
    rows = _rows(dbfile)
    assert list(rows) == [str(again)] and rows[str(again)]["instruments"] == ["bass"]
    # (the track takes the name the walk reached, as a folder mounted at two places scanned under each
    # name does; was: a copy of its results under that name, the first name's track then removed)
    assert (summary.copied, summary.duplicates, summary.renamed) == (0, [], [(str(song), str(again))])
    write_audio(song, tone_signal([4000.0], seconds=4.0))
    _old(song)
    assert _scan(music, dbfile).scanned == 1
    db = open_database(dbfile)
    try:
        with db.session() as s:
            assert {t.path: t.instruments for t in find_tracks(s)} == {str(again): ["string"]}
    finally:
        db.close()
    hidden = write_audio(music / ".hidden" / "h.wav", tone_signal([1000.0], seconds=4.0))
    os.link(hidden, music / "real" / "h.wav")  # a link to a file the walk skips on purpose: both kept
    _old(hidden)
    _scan(music, dbfile, include_hidden=True)
    assert _scan(music, dbfile).duplicates == []
    assert {str(hidden), str(music / "0again" / "h.wav")} <= set(_rows(dbfile))


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")
def test_a_file_analysed_in_part_says_so_in_show_and_query_until_it_is_repaired(tmp_path, fake_models):
    # was: only the scan's own output said it (`tagger: warning: FILE: ffmpeg could not decode 1 of
    # its frames ...`); once that scrolled away, show and query gave the results as of a whole file
    check_analysed_in_part(tmp_path, str(tmp_path / "lib.db"))


def check_analysed_in_part(tmp_path, database: str) -> None:
    """Scan a library with a file analysed in part into `database` (a file or URL; fake models),
    check what show and query say of it, repair it, scan again, check the note is gone."""
    import json

    from typer.testing import CliRunner

    from tagger.cli import app
    from test_robustness_audio import m4a_with_one_damaged_frame

    music = tmp_path / "music"
    good, damaged = m4a_with_one_damaged_frame(music)
    db = ["--db", database]
    run = CliRunner().invoke
    r = run(app, ["scan", str(music), "--jobs", "0", *db])
    assert r.exit_code == 0, r.output
    [warning] = [line for line in r.output.splitlines() if line.startswith("tagger: warning:")]
    note = warning.removeprefix(f"tagger: warning: {damaged}: ")
    assert note.startswith("ffmpeg could not decode 1 of its frames (aac: ") and note.endswith("of 20.0 s left out)"), note
    shown = run(app, ["show", str(damaged), *db]).output
    assert f"  warning: analysed in part: {note}\n" in shown, shown
    assert "warning" not in run(app, ["show", str(good), *db]).output
    assert json.loads(run(app, ["show", str(damaged), "--json", *db]).output)["analysed_in_part"] == note
    rows = json.loads(run(app, ["query", "--format", "json", *db]).output)
    assert {row["path"]: row["analysed_in_part"] for row in rows} == {str(damaged): note, str(good): None}

    shutil.copyfile(good, damaged)  # repaired (a new download)
    r = run(app, ["scan", str(music), "--jobs", "0", *db])
    assert r.exit_code == 0 and "warning" not in r.output, r.output
    assert "warning" not in run(app, ["show", str(damaged), *db]).output
    rows = json.loads(run(app, ["query", "--format", "json", *db]).output)
    assert {row["path"]: row["analysed_in_part"] for row in rows} == {str(damaged): None, str(good): None}


def test_a_drive_mounted_elsewhere_with_its_clock_an_hour_off_keeps_its_results_each_file_read_once(tmp_path,
                                                                                                   monkeypatch):
    # What the README promises of a removable drive: mounted under another name, every mtime an
    # hour later (a FAT drive after a change to summer time) or in the future (a wrong clock), its
    # files keep their results, each read whole once, under --quick too, and nothing is analysed
    # again; the tracks of files deleted while it was away stay under the old name until a scan of
    # a folder holding it.
    from tagger.library import plan

    media, dbfile = tmp_path / "media", tmp_path / "lib.db"
    songs = [write_audio(media / "usb1" / name, tone_signal([f], seconds=4.0))
             for name, f in (("a.wav", 110.0), ("b.wav", 1000.0), ("c/d.wav", 4000.0))]  # fmt: skip
    _old(*songs)
    _scan(media / "usb1", dbfile)
    before = _rows(dbfile)
    read = []
    monkeypatch.setattr(plan, "content_hash", lambda p, _f=plan.content_hash: read.append(p) or _f(p))
    songs[1].unlink()
    (media / "usb1").rename(media / "usb2")
    summary = _scan(media / "usb2", dbfile, quick=True)
    assert (summary.scanned, summary.moved, summary.missing, len(read)) == (0, 2, 0, 2)
    rows = _rows(dbfile)
    assert rows == {**{p.replace("usb1", "usb2"): v for p, v in before.items() if p != str(songs[1])},
                    str(songs[1]): before[str(songs[1])]}  # fmt: skip
    for shift in (3600, 10 * 365 * 86400):
        read.clear()
        for p in (media / "usb2").rglob("*.wav"):
            st = os.stat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + shift * 10**9))
        summary = _scan(media / "usb2", dbfile, quick=True, settle_seconds=10)
        assert (summary.scanned, summary.skipped, len(read)) == (0, 2, 2)
        assert _rows(dbfile) == rows
    summary = _scan(media, dbfile)
    assert (summary.scanned, summary.missing) == (0, 1)
    assert _rows(dbfile)[str(songs[1])]["status"] == "missing"


def test_the_beets_path_refuses_a_file_written_over_in_place_since_its_analysis_with_its_mtime_kept(tmp_path):
    """`tagger.library.files` (the beets plugin's checks before it gives results to an item or lets
    beets write them): a file written over in place since its analysis, its mtime set back, by audio
    that differs only where the fingerprint does not read, passed on size, mtime and fingerprint, so
    the old audio's results were given and written. Another ctime than the stored one now needs the
    whole content to hash as analysed, as the scan and `tagger tag` require."""
    from tagger.library.files import CHANGED, analyse_files, changed_since_analysis, rewrite_tags

    song = write_audio(tmp_path / "music" / "stem.wav", tone_signal([110.0], seconds=40.0))  # bass
    edited = _unseen_by_the_fingerprint(song, tmp_path / "edited.wav").read_bytes()
    _old(song)
    db = open_database(tmp_path / "lib.db")
    try:
        _, results = analyse_files([song], db=db, analyser=FakeAnalyser(), jobs=0)
        result = results[str(song)]
        assert changed_since_analysis(result) is None  # (untouched: the same file)
        _write_over_in_place(song, edited)
        assert changed_since_analysis(result) == CHANGED
        written = []
        done = rewrite_tags(db, result, lambda: written.append(1) or True)
        assert (done.written, done.problem, written) == (False, CHANGED, [])
    finally:
        db.close()


def test_the_beets_path_refuses_a_file_written_over_in_place_while_it_is_checked(tmp_path, monkeypatch):
    """`tagger.library.files._check` stats the file before and after its reads (fingerprint, audio
    digest), but compared inode, size and mtime only: a file written over in place during the reads,
    its mtime set back, passed, and the digest of the new audio was taken for the analysed one's
    (``rewrite_tags`` then let the write go on and recorded that digest with the old results). The
    ctime (which nobody can set back) is compared too now."""
    from tagger.library import files
    from tagger.library.files import CHANGED, analyse_files, changed_since_analysis, rewrite_tags

    song = write_audio(tmp_path / "music" / "stem.wav", tone_signal([110.0], seconds=40.0))  # bass
    edited = _unseen_by_the_fingerprint(song, tmp_path / "edited.wav").read_bytes()
    _old(song)
    db = open_database(tmp_path / "lib.db")
    try:
        _, results = analyse_files([song], db=db, analyser=FakeAnalyser(), jobs=0)
        result = results[str(song)]
        assert changed_since_analysis(result) is None
        digest = files._audio_digest

        def written_over_meanwhile(path):
            _write_over_in_place(song, edited)  # (between the check's two stats)
            return digest(path)

        monkeypatch.setattr(files, "_audio_digest", written_over_meanwhile)
        written = []
        done = rewrite_tags(db, result, lambda: written.append(1) or True)
        assert (done.written, done.problem, written) == (False, CHANGED, [])
    finally:
        db.close()


def test_a_tag_write_refuses_a_file_written_over_in_place_while_it_is_checked(tmp_path, monkeypatch):
    """The tag write's check (`tagger.tags.rewrite._check_fingerprint`) and the checks up to its rename
    (`tagger.tags.filesystem.same_file`) compared the file's stat before and after reading it by
    inode, size and mtime only: a file written over in place while its fingerprint was read, its mtime
    set back, passed (its ctime was the analysed one at the first stat, so no whole-content hash was
    asked), and the old audio's results were written into the new audio. The ctime is compared too now."""
    import tagger.fingerprint as fingerprints
    from tagger import tags
    from tagger.errors import TagWriteError

    song = write_audio(tmp_path / "music" / "stem.wav", tone_signal([110.0], seconds=40.0))  # bass
    edited = _unseen_by_the_fingerprint(song, tmp_path / "edited.wav").read_bytes()
    _old(song)
    st, analysed = os.stat(song), content_hash(song)
    read = fingerprints.fingerprint
    wanted = read(song)

    def written_over_meanwhile(path, *args, **kwargs):
        if song.read_bytes() != edited:
            _write_over_in_place(song, edited)
        return read(path, *args, **kwargs)

    monkeypatch.setattr(fingerprints, "fingerprint", written_over_meanwhile)
    with pytest.raises(TagWriteError):
        tags.write_instruments(song, instruments=["bass"], model_version="fake-1", families=tuple(BANDS),
                               expected=(st.st_size, st.st_mtime), fingerprint=wanted, content_hash=analysed,
                               ctime_ns=st.st_ctime_ns, inode=(st.st_dev, st.st_ino))  # fmt: skip
    assert song.read_bytes() == edited and not tags.read_instruments(song).tagged


def test_tag_from_database_names_a_copy_it_cannot_read_a_file_it_cannot_read_back_and_a_track_gone_meanwhile(
    tmp_path, monkeypatch
):
    """Three ways `tag_from_database` leaves a file's record alone, each a `TagWriteError` naming the
    file: its new copy cannot be hashed (the file left unchanged), the file cannot be read back after
    the write (tags written, not recorded), its track left the selection since the run began."""
    from tagger import fingerprint, tags
    from tagger.db import writes
    from tagger.errors import AudioReadError, TagWriteError
    from tagger.tags import batch

    music, dbfile = tmp_path / "music", tmp_path / "lib.db"
    song = write_audio(music / "song.flac", tone_signal([110.0], seconds=4.0))
    _old(song)
    _scan(music, dbfile)
    original = song.read_bytes()

    def tag():
        db = open_database(dbfile)
        try:
            return list(tags.tag_from_database(db, where=TrackFilter.of(paths=[song]), settle_seconds=0))
        finally:
            db.close()

    def unreadable(*args, **kwargs):
        raise AudioReadError(str(kwargs.get("path", args[0] if args else "")), "no such file")

    monkeypatch.setattr(fingerprint, "content_hash", unreadable)
    [error] = tag()
    assert isinstance(error, TagWriteError) and error.path == str(song)
    assert "cannot read its new copy: no such file; file left unchanged" in str(error)
    assert song.read_bytes() == original and not list(music.glob(".*tagger-tmp"))
    monkeypatch.undo()

    calls, real = [], batch.predictions_from_database

    def gone_after_the_first_read(*args, **kwargs):  # (a prune or a scan, between the read and the write)
        calls.append(1)
        return real(*args, **kwargs) if len(calls) == 1 else []

    monkeypatch.setattr(batch, "predictions_from_database", gone_after_the_first_read)
    [error] = tag()
    assert isinstance(error, TagWriteError) and "the selection no longer holds it; left as it is" in str(error)
    assert song.read_bytes() == original
    monkeypatch.undo()

    monkeypatch.setattr(writes, "record_rewrite", unreadable)
    change, error = tag()
    assert isinstance(change, tags.TagChange) and change.written and tags.read_instruments(song).instruments == ["bass"]
    assert isinstance(error, TagWriteError) and error.path == str(song)
    assert "tags written, but the file could not be read back to record it: no such file; scan it again" in str(error)
    monkeypatch.undo()
    assert _rows(dbfile)[str(song)]["content_hash"] != content_hash(song)  # not recorded: the next scan sees it


def test_another_name_of_a_tracks_file_is_the_very_file_not_one_of_its_number(tmp_path):
    # a7e6ea2 took a new name whose device and inode were those of a stored track's file for that
    # file: a union file system passing its drives' inode numbers through (mergerfs's passthrough) may
    # give two files one number, and a copy kept with its mtime (`cp -p`) has the same size, mtime and
    # fingerprint; its ctime tells it apart, as does any other fact of the stat.
    from tagger.library.plan import _one_file

    a = write_audio(tmp_path / "a.flac", tone_signal([110.0], seconds=1.0))
    b = tmp_path / "b.flac"
    shutil.copy2(a, b)
    sa, sb = os.stat(a), os.stat(b)
    assert (sa.st_size, sa.st_mtime_ns) == (sb.st_size, sb.st_mtime_ns)
    collided = os.stat_result((sb.st_mode, sa.st_ino, sa.st_dev, *tuple(sb)[3:]), {
        "st_mtime_ns": sb.st_mtime_ns, "st_ctime_ns": sb.st_ctime_ns + (sb.st_ctime_ns == sa.st_ctime_ns)})  # fmt: skip
    assert _one_file(str(a), sa) and not _one_file(str(a), collided)


def test_prune_keeps_the_missing_tracks_of_a_drive_not_mounted_inside_the_scanned_folder(tmp_path):
    # ~/Music/NAS, a share mounted inside the library, not mounted during a scan of ~/Music: its
    # tracks are marked missing (the mount point is an empty folder, not a scanned root), and `db
    # prune` deleted them with their results, hours of analysis, though their files were only out
    # of reach. The mount point is empty, as a scanned root found empty is: they are kept.
    music, dbfile = tmp_path / "Music", tmp_path / "lib.db"
    song = write_audio(music / "song.flac", tone_signal([110.0], seconds=4.0))
    away = [write_audio(music / "NAS" / "album" / f"{i}.flac", tone_signal([1000.0], seconds=4.0 + i)) for i in range(2)]
    _scan(music, dbfile)
    stash = tmp_path / "stash"
    shutil.move(music / "NAS" / "album", stash)  # unmounted: an empty NAS folder
    assert _scan(music, dbfile).missing == 2
    pruned = _prune(dbfile)
    assert (pruned.removed, pruned.kept) == ([], [str(p) for p in away])
    shutil.move(stash, music / "NAS" / "album")  # mounted again: the next scan restores them, results and all
    assert _scan(music, dbfile).scanned == 0
    assert {p: r["instruments"] for p, r in _rows(dbfile).items()} == {str(song): ["bass"], **{str(p): ["flute"] for p in away}}
    shutil.rmtree(music / "NAS")  # the folder gone: gone for good
    _scan(music, dbfile)
    assert _prune(dbfile).removed == [str(p) for p in away]


def test_prune_names_the_empty_folder_it_keeps_a_missing_track_for(tmp_path):
    # Was: `kept .../NAS/Artist/Album/0.flac: its file is there again, or its folder is empty (a
    # drive not mounted?)`, of a track whose folder is gone, its file not there: the folder that is
    # empty is ~/Music/NAS, three levels up, or one above the scanned folder, and only the user can
    # tell a drive not mounted from a folder left empty (an artist's one album deleted), once told
    # which folder it is.
    from typer.testing import CliRunner

    from tagger.cli import app

    music, dbfile = tmp_path / "Music", tmp_path / "lib.db"
    write_audio(music / "song.flac", tone_signal([110.0], seconds=4.0))
    nas = write_audio(music / "NAS" / "Artist" / "Album" / "0.flac", tone_signal([1000.0], seconds=4.0))
    back = write_audio(music / "Other" / "1.flac", tone_signal([1000.0], seconds=5.0))
    _scan(music, dbfile)
    shutil.move(music / "NAS" / "Artist", tmp_path / "stash")  # unmounted: an empty NAS folder
    shutil.move(back, tmp_path / "1.flac")
    assert _scan(music, dbfile).missing == 2
    shutil.move(tmp_path / "1.flac", back)  # back before the prune
    result = CliRunner().invoke(app, ["db", "prune", "--db", str(dbfile)])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        f"tagger: kept {nas}: {music / 'NAS'} is empty or cannot be listed (a drive not mounted?)",
        f"tagger: kept {back}: its file is there again", "0 missing track(s) removed, 2 kept"]
