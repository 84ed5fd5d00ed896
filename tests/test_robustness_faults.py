"""Faults: `kill -9` at random moments, two scans at once, a full disk, a read-only database.

The SIGKILL loop (with, beside the killed scan, a program appending to a recording it keeps open, a
tag editor rewriting a file's TITLE, and extended attributes on every file) runs a few rounds here; ``TAGGER_SOAK=1`` (or ``TAGGER_SOAK=<rounds>``) runs the
long soak on demand: ``TAGGER_SOAK=40 .venv/bin/python -m pytest tests/test_robustness_faults.py -k sigkill``.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from conftest import predicted, tone_signal, write_audio
from library_fakes import FREQ, FakeAnalyser
from tagger import tags
from tagger.db.queries import find_tracks
from tagger.db.session import open_database
from tagger.db.lock import DatabaseBusy
from tagger.db.urls import DatabaseError
from tagger.library.scan import scan, tag_writer

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

TESTS = Path(__file__).resolve().parent
SOAK = os.environ.get("TAGGER_SOAK", "")
ROUNDS = (int(SOAK) if SOAK.isdigit() and int(SOAK) > 1 else 40) if SOAK else 4

SCAN_SCRIPT = """
import os, sys, time
sys.path[:0] = [{tests!r}, {root!r}]  # this checkout's tagger, whatever is installed
from library_fakes import FakeAnalyser
from tagger import tags
from tagger.db.session import open_database
from tagger.library.scan import scan, tag_writer

slow_copy = tags.writing._write_copy

def slow_write_copy(*args, **kwargs):  # widen the tag-write window, so that kills land inside it
    time.sleep(0.15)
    return slow_copy(*args, **kwargs)

tags.writing._write_copy = slow_write_copy


class Gated(FakeAnalyser):
    # With a gate (the 5th argument): the files after the first wait until that file exists (the
    # scan stays in progress, its first file stored, until the test has done what it does then).
    gate = None

    def predict_features(self, feats, batch_size=None):
        while self.gate and self.calls >= 1 and not os.path.exists(self.gate):
            time.sleep(0.02)
        return super().predict_features(feats, batch_size)


if __name__ == "__main__":
    db = open_database(sys.argv[1])
    print("ready", flush=True)
    version = sys.argv[4] if len(sys.argv) > 4 else "fake-1"
    Gated.gate = sys.argv[5] if len(sys.argv) > 5 else None
    scan([sys.argv[2]], db=db, analyser=Gated(delay=float(sys.argv[3]), version=version), jobs=1,
         commit_every=1, predict_batch=2, rescan_stale=True, on_track=tag_writer(model_version=version))
    print("done", flush=True)
"""


def _ffmpeg(path: Path, freq: float, seconds: float, extra: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = {".flac": "flac", ".mp3": "libmp3lame", ".ogg": "libvorbis", ".wav": "pcm_s16le"}[path.suffix]
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"sine=frequency={freq}:duration={seconds}:sample_rate=16000", "-c:a", codec,
                    "-metadata", f"title=Song at {freq} Hz", "-metadata", "artist=Test Band", *extra, str(path)],
                   check=True)  # fmt: skip
    return path


def _decoded_md5(path: Path) -> str:
    data, _ = sf.read(str(path), dtype="int16", always_2d=True)
    return hashlib.md5(data.tobytes()).hexdigest()


def _other_tags(path: Path) -> list:
    """Every tag of the file but tagger's, as tagger reads them: with the fields a write copies into
    the ID3 tag it adds (a WAV's LIST/INFO chunk, an MP3's ID3v1 tag: `formats._load_id3`), which a
    WAV tagged then shows in its ID3 chunk too."""
    from tagger.tags import formats

    f, _storage = formats.open_file(path)
    out = []
    for key, value in (f.tags.items() if f.tags is not None else []):
        if not any(name in str(key).upper() for name in tags.FIELDS):
            out.append((str(key), str(value)))
    return sorted(out)


def _temp_files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*") if tags.is_temp_name(p.name)]


def _db_state(db_path: Path) -> dict[str, list[str]]:
    """{path: present families} of the ok tracks; checks integrity and that every ok track is whole."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=30)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        rows = con.execute(
            "SELECT t.path, count(d.id), group_concat(CASE WHEN d.present THEN d.family END) FROM tracks t "
            "LEFT JOIN detections d ON d.track_id = t.id WHERE t.status = 'ok' GROUP BY t.id"
        ).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    finally:
        con.close()
    assert all(n == len(FREQ) for _, n, _ in rows), rows
    return {p: sorted((fams or "").split(",")) if fams else [] for p, _, fams in rows}


@pytest.fixture(scope="module")
def tagged_template(tmp_path_factory):
    root = tmp_path_factory.mktemp("tpl") / "music"
    fams = list(FREQ)
    files = {}
    for i, ext in enumerate([".flac", ".mp3", ".ogg", ".wav", ".flac", ".mp3", ".ogg", ".flac"]):
        fam = fams[i % len(fams)]
        files[f"{'sub/' if i % 2 else ''}{i}_{fam}{ext}"] = (fam, _ffmpeg(root / f"{'sub/' if i % 2 else ''}{i}_{fam}{ext}",
                                                                            FREQ[fam] * (1 + 0.01 * i), 6.0))  # fmt: skip
    return root, {rel: fam for rel, (fam, _) in files.items()}


def _xattrs(path: Path) -> dict[str, bytes]:
    return {name: os.getxattr(path, name) for name in os.listxattr(path)} if hasattr(os, "listxattr") else {}


class _Neighbours:
    """Other programs at work in the library while it is scanned: one appends MPEG frames to
    ``growing.mp3`` keeping its descriptor open (a recording), one rewrites ``edited.flac``'s
    TITLE in place every 0.05-0.4 s (a tag editor)."""

    def __init__(self, music: Path, frames: bytes, rng: random.Random) -> None:
        import threading

        self.growing, self.edited = music / "growing.mp3", music / "edited.flac"
        self.frames, self.rng = frames, rng
        self.appended = b""
        self.titles: list[str] = []
        self.stop = threading.Event()
        self.failures: list[BaseException] = []
        self.threads = [threading.Thread(target=self._append), threading.Thread(target=self._edit)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=120)

    def _append(self) -> None:
        try:
            with open(self.growing, "ab") as f:
                while not self.stop.is_set():
                    chunk = self.frames[: 144 * self.rng.randrange(1, 20)]  # whole 144-byte frames
                    f.write(chunk)
                    f.flush()
                    self.appended += chunk
                    time.sleep(self.rng.uniform(0.01, 0.2))
        except BaseException as exc:
            self.failures.append(exc)

    def _edit(self) -> None:
        import mutagen

        try:
            n = 0
            while not self.stop.is_set():
                n += 1
                title = f"edit {n} " + "x" * self.rng.randrange(0, 200)
                f = mutagen.File(self.edited)
                f["TITLE"] = title
                f.save()
                self.titles.append(title)
                time.sleep(self.rng.uniform(0.05, 0.4))
        except BaseException as exc:
            self.failures.append(exc)


@pytest.mark.integration
@pytest.mark.slow
def test_sigkill_at_random_moments_then_resume(tmp_path, tagged_template):
    """Kill `scan` (analysis, commits, tag writes) again and again, while other programs append to
    a recording and edit a file's tags; then resume: nothing lost, nothing damaged (extended
    attributes included), no temporary file left."""
    template, fams = tagged_template
    music = tmp_path / "music"
    shutil.copytree(template, music)
    files = {rel: music / rel for rel in fams}
    rating = hasattr(os, "setxattr")
    try:
        for p in files.values():
            os.setxattr(p, "user.rating", p.name.encode())
    except OSError:
        rating = False  # no user extended attributes on this filesystem
    xattrs = {rel: _xattrs(p) for rel, p in files.items()}
    frames = _ffmpeg(tmp_path / "frames.mp3", 220.0, 6.0, extra=["-b:a", "32k", "-write_xing", "0",
                                                                   "-id3v2_version", "0", "-map_metadata", "-1"]).read_bytes()  # fmt: skip
    assert frames[:2] == b"\xff\xf3"  # MPEG 2 layer III, 144-byte frames, no tag
    (music / "growing.mp3").write_bytes(frames[: 144 * 50])
    _ffmpeg(music / "edited.flac", 330.0, 6.0)
    edited_audio = _decoded_md5(music / "edited.flac")
    audio = {rel: _decoded_md5(p) for rel, p in files.items()}
    other = {rel: _other_tags(p) for rel, p in files.items()}
    db_path = tmp_path / "library.db"
    script = tmp_path / "scan_script.py"
    script.write_text(SCAN_SCRIPT.format(tests=str(TESTS), root=str(TESTS.parent)))
    rng = random.Random(int(time.time()) if SOAK else 1)
    stored: dict[str, list[str]] = {}
    killed_in_tag_write = 0
    epoch = 1  # when a round gets to finish, the next one re-analyses and re-tags everything (a new model version)
    for _ in range(ROUNDS):
        finished = False
        growing_before = (music / "growing.mp3").read_bytes()
        with _Neighbours(music, frames, rng) as neighbours:
            proc = subprocess.Popen([sys.executable, str(script), str(db_path), str(music), "0.05", f"fake-{epoch}"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
            try:
                assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
                time.sleep(rng.uniform(0.0, 2.5))
                proc.send_signal(signal.SIGKILL)
                finished = proc.wait(timeout=30) == 0 and "done" in proc.stdout.read()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                proc.stdout.close()
                proc.stderr.close()
        assert not neighbours.failures, neighbours.failures
        # The recording kept everything written to it (tagger never replaced it while it was open)
        # and the editor's last TITLE is in its file.
        assert (music / "growing.mp3").read_bytes() == growing_before + neighbours.appended
        assert mutagen_title(music / "edited.flac") == neighbours.titles[-1]
        assert _decoded_md5(music / "edited.flac") == edited_audio
        now = _db_state(db_path)
        assert all(now.get(p) == v for p, v in stored.items() if p in map(str, files.values())), "a stored result was lost"
        stored = now
        for rel, p in files.items():  # each file is whole: the old one or the newly tagged one
            assert _decoded_md5(p) == audio[rel] and _other_tags(p) == other[rel], rel
            assert _xattrs(p) == xattrs[rel] and (not rating or _xattrs(p)["user.rating"] == p.name.encode()), rel
            state = tags.read_instruments(p)
            allowed = [tags.TagState([fams[rel]], f"fake-{e}") for e in (epoch - 1, epoch)]
            assert state in (tags.TagState(), *allowed), (rel, state)
        killed_in_tag_write += bool(_temp_files(music))
        if finished:
            epoch += 1
    if SOAK:  # the kills must have landed inside tag writes too (leaving their temporary copy)
        assert killed_in_tag_write > 0
    # Resume (any leftover temporary file of a killed tag write is removed by the scan).
    db = open_database(db_path)
    try:
        for leftover in _temp_files(music):
            os.utime(leftover, (time.time() - 60, time.time() - 60))  # older than a write in progress
        version = f"fake-{epoch}"
        summary = scan([music], db=db, analyser=FakeAnalyser(version=version), jobs=0, rescan_stale=True,
                       on_track=tag_writer(model_version=version))
        with db.session() as s:
            found = {t.path: t.instruments for t in find_tracks(s)}
    finally:
        db.close()
    neighbours = {str(music / "growing.mp3"), str(music / "edited.flac")}
    assert {p: v for p, v in found.items() if p not in neighbours} == {str(p): [fams[rel]] for rel, p in files.items()}
    assert summary.failed == 0 and summary.tag_errors == 0
    assert _temp_files(music) == []
    state = _db_state(db_path)
    assert {p: v for p, v in state.items() if p not in neighbours} == {str(p): [fams[rel]] for rel, p in files.items()}
    for rel, p in files.items():
        assert _decoded_md5(p) == audio[rel] and _other_tags(p) == other[rel], rel
        assert tags.read_instruments(p) == tags.TagState([fams[rel]], version), rel
        assert _xattrs(p) == xattrs[rel], rel
    for p in neighbours:  # tagged once the other programs were done
        assert tags.read_instruments(p).model_version == version, p


def mutagen_title(path: Path) -> str:
    import mutagen

    return mutagen.File(path)["TITLE"][0]


def test_stale_temp_files_are_removed_and_nothing_else(tmp_path, monkeypatch):
    import fcntl

    from tagger.tags import leftovers

    monkeypatch.setattr(leftovers, "FRESH_SECONDS", 600.0)  # "fresh" stays fresh however slow the machine
    music = tmp_path / "music"
    song = write_audio(music / "song.wav", tone_signal([110.0], seconds=2.0))
    old = time.time() - 3600
    stale = music / ".song.wav.ab12cd_z.tagger-tmp"
    busy = music / ".song.wav.zz99yy00.tagger-tmp"
    not_ours = [music / ".song.wav.tagger-tmp", music / "x.ab12cd_z.tagger-tmp", music / ".song.wav.AB12CD_Z.tagger-tmp"]
    for p in (stale, busy, *not_ours):
        p.write_bytes(b"x")
        os.utime(p, (old, old))
    link = music / ".other.wav.qq11ww22.tagger-tmp"
    link.symlink_to(song)
    holder = os.open(busy, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a tag write in progress elsewhere
    try:
        db = open_database(tmp_path / "lib.db")
        try:
            scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
        finally:
            db.close()
        assert not stale.exists()
        assert busy.exists() and link.is_symlink() and song.exists() and all(p.exists() for p in not_ours)
    finally:
        os.close(holder)
    fresh = music / ".song.wav.fr35hh00.tagger-tmp"
    fresh.write_bytes(b"x")  # just created by a writer that has not locked it yet: left alone
    assert tags.remove_stale_temp_files([busy, fresh]) == [str(busy)]
    assert fresh.exists()


@pytest.mark.parametrize("command", ["untag", "tag --from-json", "tag --db"])
def test_tag_and_untag_remove_the_stale_copies_of_the_files_they_visit(tmp_path, command, monkeypatch):
    """A hidden copy (or backup link) that a killed `tag` or `untag` left (`kill -9`, or a second
    signal before bae4af0) stayed beside its file through every later `tag` and
    `untag` of it: only a scan of the folder deleted it. They delete the stale copies of each file
    they visit, as a scan does (not in use, not just made), written or not; a dry run deletes
    none, nor are another file's touched."""
    import fcntl
    import json

    from tagger.cli import app

    music = tmp_path / "music"
    song = write_audio(music / "song.flac", tone_signal([110.0], seconds=1.0))
    other = write_audio(music / "other.flac", tone_signal([220.0], seconds=1.0))
    from tagger.tags import leftovers

    monkeypatch.setattr(leftovers, "FRESH_SECONDS", 600.0)  # "fresh" stays fresh however slow the machine
    old = time.time() - 3600
    stale, backup = music / ".song.flac.ab12cd34.tagger-tmp", music / ".song.flac.0f0f0f0f.tagger-tmp"
    busy, fresh = music / ".song.flac.zz99yy00.tagger-tmp", music / ".song.flac.fr35hh00.tagger-tmp"
    others = [music / ".other.flac.ab12cd34.tagger-tmp", music / ".song.flac.ab12cd34.tagger-tmp.flac"]
    for p in (stale, busy, fresh, *others):
        p.write_bytes(b"x")
    os.link(song, backup)  # (a backup link: the old file's second name)
    for p in (stale, backup, busy, *others):
        os.utime(p, (old, old))
    if command == "untag":
        args = ["untag", str(song), "--settle-seconds", "0"]
    elif command == "tag --from-json":
        rows = tmp_path / "rows.jsonl"
        rows.write_text(json.dumps(predicted(song, instruments=["bass"], model_version="m-1")) + "\n")
        args = ["tag", "--from-json", str(rows), str(music), "--settle-seconds", "0"]
    else:
        db = open_database(tmp_path / "lib.db")
        try:
            scan([music], db=db, analyser=FakeAnalyser(), jobs=0, keep_temp_files=True)  # (its own removal off)
        finally:
            db.close()
        args = ["tag", "--db", str(tmp_path / "lib.db"), str(song), "--settle-seconds", "0"]
    holder = os.open(busy, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # a write in progress elsewhere
    try:
        left = {p.name for p in music.iterdir()}
        r = CliRunner().invoke(app, [*args, "--dry-run"])
        assert r.exit_code == 0, r.output
        assert {p.name for p in music.iterdir()} == left  # a dry run changes no file
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
    finally:
        os.close(holder)
    assert not stale.exists() and not backup.exists()
    assert busy.exists() and fresh.exists() and all(p.exists() for p in others)
    assert song.exists() and other.exists()


@pytest.mark.integration
def test_a_second_scan_of_the_same_database_refuses(tmp_path, monkeypatch):
    music = tmp_path / "music"
    files = [write_audio(music / f"{i}.wav", tone_signal([FREQ["bass"] + i], seconds=8.0)) for i in range(10)]
    db_path = tmp_path / "library.db"
    script = tmp_path / "scan_script.py"
    script.write_text(SCAN_SCRIPT.format(tests=str(TESTS), root=str(TESTS.parent)))
    gate = tmp_path / "gate"  # (the first scan holds its files after the first until the second has been refused)
    first = subprocess.Popen([sys.executable, str(script), str(db_path), str(music), "0", "fake-1", str(gate)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert first.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 60
        while not _db_state(db_path):
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        db = open_database(db_path)
        try:
            with pytest.raises(DatabaseBusy, match=f"another tagger scan or prune \\(process {first.pid}\\) is using the database"):
                scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
        finally:
            db.close()
        from tagger.cli import app
        from tagger.model import ensemble

        monkeypatch.setattr(ensemble.Ensemble, "load", classmethod(lambda cls, *a, **k: FakeAnalyser()))
        res = CliRunner().invoke(app, ["scan", str(music), "--db", str(db_path), "--jobs", "0"])
        assert res.exit_code == 1 and "Traceback" not in res.output, res.output
        assert res.output.strip().splitlines()[-1].startswith(f"tagger: error: another tagger scan or prune (process {first.pid})")
        assert first.poll() is None and len(_db_state(db_path)) < len(files)  # (refused while the first was scanning)
        gate.touch()
        assert first.wait(timeout=120) == 0, first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        first.stdout.close()
        first.stderr.close()
    assert len(_db_state(db_path)) == len(files)  # the first scan finished whole
    db = open_database(db_path)
    try:  # and once it is done, the next scan runs
        assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0).skipped == len(files)
    finally:
        db.close()


def test_a_read_only_database_is_a_clear_error_and_loses_nothing(tmp_path):
    music = tmp_path / "music"
    write_audio(music / "a.wav", tone_signal([FREQ["bass"]], seconds=4.0))
    db_path = tmp_path / "library.db"
    db = open_database(db_path)
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    db.close()
    before = _db_state(db_path)
    write_audio(music / "b.wav", tone_signal([FREQ["flute"]], seconds=4.0))
    ro = open_database(f"sqlite:///file:{db_path}?mode=ro&uri=true")  # read-only, even for root
    try:
        with pytest.raises(DatabaseError, match=r"the database .*library.db cannot be written \(its URL opens it read-only \(mode=ro\)\): "
                                                 r"`tagger scan` writes it and changed nothing"):  # fmt: skip
            scan([music], db=ro, analyser=FakeAnalyser(), jobs=0)
    finally:
        ro.close()
    assert _db_state(db_path) == before and len(before) == 1


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
                          capture_output=True).returncode == 0  # fmt: skip


@pytest.fixture
def small_disk(tmp_path):
    where = tmp_path / "disk"
    if not _mount_tmpfs(where, "3m"):
        pytest.skip("needs root and mount to make a small tmpfs (a real full disk)")
    yield where
    subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.mark.integration
def test_a_full_disk_and_a_read_only_filesystem_are_clear_errors_and_lose_nothing(tmp_path, small_disk, monkeypatch):
    music = tmp_path / "music"
    for i in range(3):
        write_audio(music / f"a{i}.wav", tone_signal([FREQ["bass"] + i], seconds=4.0))
    db_path = small_disk / "library.db"
    db = open_database(db_path)
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    before = _db_state(db_path)
    assert len(before) == 3
    for i in range(60):  # new tracks, to be written on a full disk
        write_audio(music / "more" / f"b{i}.wav", tone_signal([FREQ["flute"] + i], seconds=4.0))
    filler = small_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError:
        pass  # the disk is full
    finally:
        os.close(fd)
    with pytest.raises(DatabaseError, match="cannot write the database .*full"):
        scan([music], db=db, analyser=FakeAnalyser(), jobs=0, commit_every=5)
    db.close()
    filler.unlink()
    assert all(_db_state(db_path).get(p) == v for p, v in before.items())
    # The command line says it in one line.
    from tagger.cli import app
    from tagger.model import ensemble

    monkeypatch.setattr(ensemble.Ensemble, "load", classmethod(lambda cls, *a, **k: FakeAnalyser()))
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    res = CliRunner().invoke(app, ["scan", str(music), "--db", str(db_path), "--jobs", "0", "--no-write-tags"])
    assert res.exit_code == 1 and "Traceback" not in res.output, res.output
    assert res.output.strip().splitlines()[-1].startswith("tagger: error:"), res.output
    assert f"the database {db_path} cannot be written (it is on a read-only file system ({small_disk}))" in res.output  # before any write
    subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    db = open_database(db_path)
    try:
        summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    finally:
        db.close()
    assert summary.failed == 0
    state = _db_state(db_path)
    assert len(state) == 63 and all(state[p] == v for p, v in before.items())
