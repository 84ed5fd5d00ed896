"""`tagger tag` (`tag_from_database`) of a file whose tags were rewritten since it was analysed
(`tagger untag`, `tag --from-json`, Picard, beets, foobar2000): its size, mtime and fingerprint are
no longer the stored ones, but its audio digest is, so it is tagged from the stored results and its
new facts recorded, as the scan keeps such a file's results (`tests/test_scan_retagged.py`). Other
audio, or no digest to compare, is refused as before: "scan it again"."""

from __future__ import annotations

import os

import pytest
from sqlalchemy import update

from conftest import tone_signal, write_audio
from library_fakes import FakeAnalyser
from tagger import tags
from tagger.db import models as M
from tagger.errors import ChangedSinceError, TagWriteError
from tagger.fingerprint import content_hash, fingerprint
from tagger.library.scan import scan, tag_writer
from test_scan_retagged import COVER, FORMATS, copy_tags, other_tags, retag, stored

FACTS = ("size", "fingerprint", "content_hash", "ctime_ns")


def analysed_and_tagged(tmp_path, db, ext: str):
    f = write_audio(tmp_path / "music" / f"duo.{ext}", tone_signal([110.0, 1000.0], seconds=5.0))
    first = scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0, on_track=tag_writer(model_version="fake-1"))
    assert first.scanned == 1 and first.tags_written == 1
    before = stored(db, f)
    assert before["audio_digest"] == tags.audio_digest(f) is not None and before["tags_current"]
    return f, before


def facts_of(f) -> dict:
    st = os.stat(f)
    return {"size": st.st_size, "fingerprint": fingerprint(f), "content_hash": content_hash(f), "ctime_ns": st.st_ctime_ns}


def tag(db, **options) -> list:
    return list(tags.tag_from_database(db, settle_seconds=0, **options))


@pytest.mark.parametrize("ext", FORMATS)
def test_untag_then_tag_writes_the_fields_back_and_records_the_file(tmp_path, db, ext):
    f, before = analysed_and_tagged(tmp_path, db, ext)
    assert [r.written for r in tags.remove_all([f])] == [True]
    assert not tags.read_instruments(f).tagged
    again = list(tags.remove_all([f]))  # untag twice: nothing left to remove
    assert [(r.changed, r.written) for r in again] == [(False, False)]
    untagged, facts = f.read_bytes(), facts_of(f)
    assert (facts["size"], facts["fingerprint"]) != (before["size"], before["fingerprint"])  # it reads as changed

    dry = tag(db, dry_run=True)  # says what it would do, records nothing
    assert [(type(r), r.changed, r.written, r.retagged) for r in dry] == [(tags.TagChange, True, False, True)], dry
    assert dry[0].after.instruments == ["bass", "flute"]
    assert f.read_bytes() == untagged and stored(db, f) == before

    done = tag(db)  # was: ChangedSinceError, "file changed since it was analysed (size ...); scan it again"
    assert [(type(r), r.written, r.retagged) for r in done] == [(tags.TagChange, True, True)], done
    state = tags.read_instruments(f)
    assert state.instruments == ["bass", "flute"] and state.model_version == "fake-1"
    after = stored(db, f)
    for key in ("results", "segments", "model", "analysed_at", "status", "audio_digest"):
        assert after[key] == before[key], key
    assert {key: after[key] for key in FACTS} == facts_of(f) and after["tags_current"]

    third = tag(db)  # recorded: nothing changed since, nothing to recognise
    assert [(r.changed, r.retagged) for r in third] == [(False, False)]
    rescan = scan([f.parent], db=db, analyser=FakeAnalyser(), jobs=0)
    assert (rescan.scanned, rescan.retagged, rescan.skipped) == (0, 0, 1)


@pytest.mark.parametrize("ext", FORMATS)
def test_a_file_retagged_by_another_program_is_recognised_and_its_tags_kept(tmp_path, db, ext):
    f, before = analysed_and_tagged(tmp_path, db, ext)
    retag(f, title="Picard's title")  # tagger's fields kept: nothing to write, the facts to record
    edited = f.read_bytes()
    results = tag(db)
    assert [(type(r), r.changed, r.written, r.retagged) for r in results] == [(tags.TagChange, False, False, True)]
    assert f.read_bytes() == edited and other_tags(f) == ("Picard's title", COVER)
    after = stored(db, f)
    assert {key: after[key] for key in FACTS} == facts_of(f) and after["tags_current"]
    assert (after["results"], after["analysed_at"], after["audio_digest"]) == (
        before["results"], before["analysed_at"], before["audio_digest"])  # fmt: skip

    retag(f, title="beets' title", cover=False, drop_ours=True)  # tagger's fields dropped: written back
    results = tag(db)
    assert [(r.written, r.retagged) for r in results] == [(True, True)], results
    assert tags.read_instruments(f).instruments == ["bass", "flute"] and other_tags(f)[0] == "beets' title"
    assert {key: stored(db, f)[key] for key in FACTS} == facts_of(f)


@pytest.mark.parametrize("ext", FORMATS)
def test_a_file_whose_audio_was_replaced_is_still_refused(tmp_path, db, ext):
    f, before = analysed_and_tagged(tmp_path, db, ext)
    old = tmp_path / f"old.{ext}"
    f.rename(old)
    write_audio(f, tone_signal([4000.0], seconds=5.0))  # re-encoded other audio, the same length ...
    copy_tags(old, f)  # ... carrying the old file's tags, tagger's fields included
    assert tags.audio_digest(f) != before["audio_digest"]
    tags.remove_instruments(f)
    replaced = f.read_bytes()
    for dry_run in (True, False):
        results = tag(db, dry_run=dry_run)
        assert [type(r) for r in results] == [ChangedSinceError], results
        assert results[0].reason.startswith("file changed since it was analysed") and "scan it again" in results[0].reason
    assert f.read_bytes() == replaced and stored(db, f) == before


def test_a_track_stored_without_a_digest_is_still_refused(tmp_path, db):
    f, _before = analysed_and_tagged(tmp_path, db, "flac")
    with db.session() as s:
        s.execute(update(M.Track).values(audio_digest=None))
        s.commit()
    list(tags.remove_all([f]))
    before, untagged = stored(db, f), f.read_bytes()
    results = tag(db)
    assert [type(r) for r in results] == [ChangedSinceError] and "scan it again" in results[0].reason
    assert f.read_bytes() == untagged and stored(db, f) == before


def test_a_file_changed_while_its_digest_is_read_is_left_alone(tmp_path, db, monkeypatch):
    """The digest compared is of the file the checks found: one rewritten meanwhile (its ctime moves
    on) is refused, neither written nor recorded."""
    from tagger.tags import rewrite

    f, _before = analysed_and_tagged(tmp_path, db, "mp3")
    list(tags.remove_all([f]))
    before = stored(db, f)
    real = rewrite.audio_digest_or_none

    def meanwhile(path, **kw):
        digest = real(path, **kw)
        retag(f, title="Meanwhile", cover=False)
        return digest

    monkeypatch.setattr(rewrite, "audio_digest_or_none", meanwhile)
    results = tag(db)
    assert [type(r) for r in results] == [TagWriteError], results
    assert results[0].reason == "file changed while it was being checked; scan it again"
    assert not tags.read_instruments(f).tagged and other_tags(f)[0] == "Meanwhile"
    assert stored(db, f) == before


def test_a_recognised_file_within_the_settle_time_is_left_for_a_later_run(tmp_path, db):
    f, before = analysed_and_tagged(tmp_path, db, "m4a")
    retag(f, title="Just now")  # tagger's fields kept: nothing to write, but nothing recorded either
    results = list(tags.tag_from_database(db, settle_seconds=3600))
    assert [type(r) for r in results] == [TagWriteError] and "still being written?" in results[0].reason
    assert stored(db, f) == before


def test_tagger_tag_after_untag_says_how_many_files_it_recognised(tmp_path, fake_models):
    from typer.testing import CliRunner

    from tagger.cli import app

    music = tmp_path / "music"
    files = [write_audio(music / f"duo.{ext}", tone_signal([110.0, 1000.0], seconds=5.0)) for ext in FORMATS]
    db, settle = ["--db", str(tmp_path / "lib.db")], ["--settle-seconds", "0"]
    run = CliRunner().invoke
    r = run(app, ["scan", str(music), *db, *settle, "--jobs", "0"])
    assert r.exit_code == 0, r.output
    r = run(app, ["untag", "--model-version", "fake-1", str(music), *settle])
    assert r.exit_code == 0 and "0 untagged, 3 unchanged" not in r.output, r.output
    r = run(app, ["untag", "--model-version", "fake-1", str(music), *settle])  # once more: nothing to remove
    assert r.exit_code == 0 and "0 untagged, 3 unchanged, 0 skipped" in r.output, r.output
    line = ("3 file(s) whose tags were rewritten since the last scan (by another program, or tagger untag or tag "
            "--from-json) recognised by their audio, the same as analysed")  # fmt: skip
    r = run(app, ["tag", *db, *settle, "--dry-run"])
    assert r.exit_code == 0, r.output
    assert "3 would be tagged, 0 unchanged, 0 skipped" in r.output and f"{line}: nothing recorded (dry run)" in r.output
    assert not any(tags.read_instruments(f).tagged for f in files)
    r = run(app, ["tag", *db, *settle])
    assert r.exit_code == 0, r.output  # was: exit 1, every file "changed since it was analysed; scan it again"
    assert "3 tagged, 0 unchanged, 0 skipped" in r.output and f"{line}, their new size and mtime recorded" in r.output
    assert all(tags.read_instruments(f).instruments == ["bass", "flute"] for f in files)
    r = run(app, ["tag", *db, *settle])
    assert r.exit_code == 0 and "0 tagged, 3 unchanged, 0 skipped" in r.output and "recognised" not in r.output


def test_the_write_checks_the_bytes_it_copies_against_the_stored_digest(tmp_path, db, monkeypatch):
    """Under its lock and read lease, the write hashes the audio it copies (the digest its verification
    compares the copy with): where that is not the stored digest, nothing is written. (The stats around
    the first read and the lock's own check leave no way to get there with a real file: the digest the
    first read found is replaced here.)"""
    from tagger.tags import rewrite

    f, _before = analysed_and_tagged(tmp_path, db, "flac")
    list(tags.remove_all([f]))
    untagged, recorded = f.read_bytes(), stored(db, f)
    real = rewrite._only_tags_changed
    monkeypatch.setattr(rewrite, "_only_tags_changed", lambda *a, **kw: real(*a, **kw) and "0" * 64)
    results = tag(db)
    assert [type(r) for r in results] == [ChangedSinceError], results
    assert results[0].reason == ("file changed since it was analysed (its audio, as its tags were about to be "
                                 "written); scan it again")  # fmt: skip
    assert f.read_bytes() == untagged and stored(db, f) == recorded
    assert [p.name for p in f.parent.iterdir()] == [f.name]  # no copy left
