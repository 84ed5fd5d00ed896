"""Bad input never stops a scan: each bad file ends as one clear error row (and summary line); the
valid but unusual ones (silence, NaN/inf samples, 1-8 channels, 8-192 kHz, odd names) are analysed."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from sqlalchemy import select
from typer.testing import CliRunner

from conftest import tone_signal, track_instruments, track_rows, write_audio
from library_fakes import FakeAnalyser
from tagger.db import models as M
from tagger.db.session import open_database
from tagger.library.scan import scan

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

BASS = 110.0
FORBIDDEN = ("unexpected", "Traceback", "Error:", "errno")
"""Words of an error that escaped our own error types."""
NOT_AUDIO = "not a readable audio file|no audio stream|which is not an audio file format tagger analyses"


def _clear(reason: str) -> bool:
    return bool(reason) and not any(w in reason for w in FORBIDDEN)


def _cut(src: Path, dst: Path, at: int) -> Path:
    dst.write_bytes(src.read_bytes()[:at])
    return dst


@pytest.fixture(scope="module")
def bad_library(tmp_path_factory):
    """{path: expected error substring (None: analysed fine; "any": either, but clearly)}."""
    root = tmp_path_factory.mktemp("bad") / "music"
    root.mkdir()
    out: dict[str, str | None] = {}
    rng = random.Random(8)
    bass = tone_signal([BASS], seconds=6.0)
    (root / "empty.mp3").write_bytes(b"")
    out[str(root / "empty.mp3")] = "empty file"
    # Truncated files of every lossy/lossless container, cut at random points (and inside the header).
    originals = root / ".orig"
    for ext in ("mp3", "flac", "ogg", "m4a"):
        good = write_audio(originals / f"good.{ext}", bass)
        size = good.stat().st_size
        low = size // 2 if ext == "ogg" else size // 10  # (Ogg: past its 4 KB of headers)
        for i, at in enumerate([12, *sorted(rng.randrange(low, size - 1) for _ in range(3))]):
            out[str(_cut(good, root / f"cut{i}.{ext}", at))] = "any"
    (root / "noise.flac").write_bytes(rng.randbytes(30_000))
    out[str(root / "noise.flac")] = "any"
    (root / "notes.mp3").write_text("These are the liner notes, not an MP3.\n" * 40)
    out[str(root / "notes.mp3")] = NOT_AUDIO
    png = b"\x89PNG\r\n\x1a\n" + rng.randbytes(2000)
    (root / "cover.mp3").write_bytes(png)
    out[str(root / "cover.mp3")] = NOT_AUDIO
    video = root / "video_only.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "color=c=black:s=32x32:d=1",
                    "-c:v", "mpeg4", "-f", "mp4", str(video)], check=True)  # fmt: skip
    out[str(video)] = "no audio stream"
    sf.write(str(root / "blip.wav"), tone_signal([BASS], seconds=0.05), 16_000)
    out[str(root / "blip.wav")] = r"too short to analyse: 0\.050 s"
    sf.write(str(root / "slow_rate.wav"), tone_signal([BASS], seconds=2.0, sr=4_000), 4_000)
    out[str(root / "slow_rate.wav")] = "unsupported sample rate 4000 Hz"
    # Valid, if unusual: analysed, with the right answer.
    sf.write(str(root / "silence.wav"), np.zeros(16_000 * 5, dtype=np.float32), 16_000)
    out[str(root / "silence.wav")] = None
    nan = tone_signal([BASS], seconds=6.0)
    nan[::997], nan[5::1999], nan[7::2999] = np.nan, np.inf, -np.inf
    sf.write(str(root / "nan_inf.wav"), nan, 16_000, subtype="FLOAT")
    out[str(root / "nan_inf.wav")] = None
    for ch in (1, 2, 6, 8):
        multi = np.repeat(tone_signal([BASS], seconds=5.0, sr=22_050)[:, None], ch, axis=1)
        sf.write(str(root / f"ch{ch}.wav"), multi, 22_050)
        out[str(root / f"ch{ch}.wav")] = None
    for sr in (8_000, 192_000):
        sf.write(str(root / f"sr{sr}.flac"), tone_signal([BASS], seconds=5.0, sr=sr), sr)
        out[str(root / f"sr{sr}.flac")] = None
    # Names: spaces, a newline, a very long name deep down.
    for name in ("with  spaces .wav", "new\nline.wav"):
        sf.write(str(root / name), bass, 16_000)
        out[str(root / name)] = None
    deep = root / ("d" * 200) / ("e" * 200) / ("f" * 200)
    deep.mkdir(parents=True)
    long_name = deep / ("g" * 250 + ".wav")
    sf.write(str(long_name), bass, 16_000)
    out[str(long_name)] = None
    # A symlink loop is walked once.
    os.symlink("..", root / ("d" * 200) / "loop")
    return root, out


def test_every_bad_file_is_one_clear_error_and_the_rest_is_analysed(bad_library, tmp_path):
    root, expected = bad_library
    db = open_database(tmp_path / "lib.db")
    try:
        summary = scan([root], db=db, analyser=FakeAnalyser(), jobs=2, commit_every=7)
        rows = track_rows(db)
        found = track_instruments(db)
    finally:
        db.close()
    assert set(rows) == set(expected)
    assert summary.found == len(expected) and summary.scanned + summary.failed == len(expected)
    errors = dict(summary.errors)
    for path, want in expected.items():
        status, reason = rows[path]
        if want is None:
            assert status == "ok", (path, reason)
            assert found[path] == ([] if "silence" in path else ["bass"]), path
        elif want == "any":  # truncated/noise: what survives may decode; otherwise a clear reason
            assert status in ("ok", "error")
            if status == "error":
                assert _clear(reason) and errors[path] == reason, (path, reason)
        else:
            assert status == "error" and re.search(want, reason), (path, reason)
            assert _clear(reason) and errors[path] == reason
    # Every cut file whose header declares its length fails (MP3 with a Xing/Info header, FLAC, M4A:
    # these cuts leave more than 1% out), and so does every header cut at 12 bytes; an Ogg cut past its
    # headers is analysed as what it holds with a note (how much is missing is not known), or, cut
    # inside its last page, comes under the 1% rule.
    cut = {p: rows[p][0] for p in expected if "/cut" in p and not (p.endswith(".ogg") and "/cut0." not in p)}
    assert set(cut.values()) == {"error"}
    with db.session() as s:
        from sqlalchemy import select

        from tagger.db import models as M

        notes = dict(s.execute(select(M.Track.path, M.Track.analysed_in_part)).all())
    for p in expected:
        if p.endswith(".ogg") and "/cut0." not in p and rows[p][0] == "ok":
            assert "cut short" in notes[p] or "left out" in notes[p], (p, notes[p])


def test_non_utf8_file_name_is_a_clear_error_and_stays_one(tmp_path, db):
    music = tmp_path / "music"
    music.mkdir()
    write_audio(music / "fine.wav", tone_signal([BASS], seconds=4.0))
    raw = os.fsencode(music) + b"/caf\xe9.wav"  # Latin-1, not UTF-8
    shutil.copy(music / "fine.wav", raw)
    for _ in range(2):  # rescans keep one row, never mark it missing
        summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
        rows = track_rows(db)
        shown = str(music / "caf\\xe9.wav")
        assert rows[shown][0] == "error" and "not valid UTF-8" in rows[shown][1]
        assert rows[str(music / "fine.wav")][0] == "ok" and len(rows) == 2
    assert summary.failed == 1 and summary.missing == 0
    os.rename(raw, music / "cafe.wav")
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    rows = track_rows(db)
    assert rows[str(music / "cafe.wav")][0] == "ok" and rows[shown][0] == "missing"


def test_a_file_whose_name_is_not_utf8_is_read_by_libsndfile_as_any_other(tmp_path, monkeypatch):
    """libsndfile was given such a name as str, which soundfile encodes as UTF-8 strictly: the
    UnicodeEncodeError made the probe take the file for one libsndfile cannot read, so `tagger
    predict` (and evaluate's mixtures) decoded a WAV or FLAC of a Latin-1 name through ffmpeg, and
    without ffmpeg refused it as 'libsndfile cannot decode this file' (found reviewing 766dd9b's
    soundfile call sites). It is given the name's bytes; a message naming them is cut as others."""
    from tagger import audio
    from tagger.audio import probe
    from tagger.audio.plumbing import _said

    for ext in ("wav", "flac"):
        plain = tmp_path / f"cafe.{ext}"
        write_audio(plain, tone_signal([BASS], seconds=4.0))
        raw = os.fsencode(tmp_path) + b"/caf\xe9." + ext.encode()  # Latin-1, not UTF-8
        shutil.copy(plain, raw)
        name = os.fsdecode(raw)
        assert audio.info(name).decoder == audio.info(plain).decoder == "soundfile", ext
        monkeypatch.setattr(probe, "ffmpeg_available", lambda: False)
        np.testing.assert_array_equal(audio.load(name), audio.load(plain))
        monkeypatch.undo()
    assert _said(f"decoding failed: Error opening {raw!r}: System error.", name) == \
        "decoding failed: Error opening the file: System error."


def _nested_file(root, folders: list[str], name: str, data: bytes) -> str:
    """Write ``data`` as ``name`` in ``folders`` nested in ``root``, made by calls relative to each
    folder (an absolute path near or past PATH_MAX, 4096, is refused) -> the file's path."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for folder in folders:
            os.mkdir(folder, dir_fd=fd)
            nxt = os.open(folder, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nxt
        with open(os.open(name, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd), "wb") as f:
            f.write(data)
    finally:
        os.close(fd)
    return os.path.join(str(root), *folders, name)


def test_a_path_too_long_to_list_is_reported_not_fatal(tmp_path, db):
    music = tmp_path / "music"
    music.mkdir()
    write_audio(music / "fine.wav", tone_signal([BASS], seconds=4.0))
    _nested_file(music, ["x" * 250] * 20, "deep.wav", (music / "fine.wav").read_bytes())  # (past PATH_MAX)
    summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    assert summary.scanned == 1 and track_rows(db)[str(music / "fine.wav")][0] == "ok"
    assert any("File name too long" in reason for _, reason in summary.errors), summary.errors


def test_a_file_whose_path_leaves_no_room_for_the_hidden_copy_is_refused_saying_so(tmp_path, monkeypatch):
    """A file whose path is a few bytes under PATH_MAX (4096) opens, but the hidden copy beside it
    (the path and 21 bytes) does not: the write said `tag write failed (OSError: File name too long)`
    of a 40-byte name. At 4075 bytes the copy's path is 4096 bytes, one too many (the NUL that ends a
    path counts): said so (was: 'the system allows 4096' of it); at 4074 the write is made. A copy's
    name too long for its file system, its path short, is said as it was, not as a path too long."""
    from tagger import tags
    from tagger.errors import TagWriteError

    source = write_audio(tmp_path / "a.flac", tone_signal([BASS], seconds=1.0)).read_bytes()
    name, paths = "n" * 35 + ".flac", {}
    for total in (4074, 4075):
        root = tmp_path / str(total)
        root.mkdir()
        folders, left = [], total - len(str(root)) - 1 - len(name)  # (the folders' bytes, each with its "/")
        while left > 202:
            folders.append("d" * 200)
            left -= 201
        paths[total] = _nested_file(root, [*folders, "e" * (left - 1)], name, source)
        assert len(paths[total]) == total
    tags.write_instruments(paths[4074], instruments=["bass"], model_version="m1")
    assert tags.read_instruments(paths[4074]).instruments == ["bass"]
    path = paths[4075]
    with pytest.raises(TagWriteError) as caught:
        tags.write_instruments(path, instruments=["bass"], model_version="m1")
    assert caught.value.path == path
    assert caught.value.reason == ("its path is too long for the hidden copy a tag write makes beside it (4096 bytes "
                                   "with the copy's name; the system allows 4095): move it to a shorter path")
    with open(path, "rb") as f:
        assert f.read() == source
    assert not [n for n in os.listdir(os.path.dirname(path)) if n != name]

    def refused(*args, **kwargs):
        raise OSError(errno.ENAMETOOLONG, "File name too long")

    monkeypatch.setattr("tagger.tags.writing.tempfile.mkstemp", refused)
    with pytest.raises(TagWriteError) as caught:
        tags.write_instruments(tmp_path / "a.flac", instruments=["bass"], model_version="m1")
    assert caught.value.reason == "tag write failed (OSError: File name too long); file left unchanged"


def test_unreadable_file_and_folder(tmp_path, db, monkeypatch):
    """Permission denied on a file: an error row. On a folder: reported, and its known tracks are not
    marked missing. As root (CI) permission bits do not stop us, so the refusals are injected at
    the system calls the scan makes; as another user the chmod alone does it."""
    from tagger import fingerprint as fp_module

    music = tmp_path / "music"
    locked_dir = music / "locked"
    for p in (music / "secret.wav", locked_dir / "inside.wav", music / "open.wav"):
        write_audio(p, tone_signal([BASS], seconds=4.0))
    scan([music], db=db, analyser=FakeAnalyser(), jobs=0)  # all readable the first time
    assert {st for st, _ in track_rows(db).values()} == {"ok"}
    write_audio(music / "secret.wav", tone_signal([1000.0], seconds=5.0))  # changed: must be re-read
    os.chmod(music / "secret.wav", 0)
    os.chmod(locked_dir, 0)
    try:
        if os.geteuid() == 0:
            real_open, real_scandir = fp_module._open_regular, os.scandir

            def refuse_open(path, *args, **kwargs):
                if os.fspath(path) == str(music / "secret.wav"):
                    raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
                return real_open(path, *args, **kwargs)

            def refuse_scandir(path="."):
                if os.fspath(path) == str(locked_dir):
                    raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
                return real_scandir(path)

            monkeypatch.setattr(fp_module, "_open_regular", refuse_open)
            monkeypatch.setattr(os, "scandir", refuse_scandir)
        summary = scan([music], db=db, analyser=FakeAnalyser(), jobs=0)
    finally:
        os.chmod(music / "secret.wav", 0o644)
        os.chmod(locked_dir, 0o755)
    rows = track_rows(db)
    assert rows[str(music / "secret.wav")] == ("error", "cannot read file: Permission denied")
    assert rows[str(locked_dir / "inside.wav")][0] == "ok"  # not missing: its folder could not be listed
    assert summary.missing == 0
    assert (str(locked_dir), "cannot list the folder: Permission denied; its files were left as they are") in summary.errors


def test_errors_command_lists_them_and_cli_scan_prints_no_traceback(bad_library, tmp_path, fake_models):
    from tagger.cli import app

    root, expected = bad_library
    db_file = str(tmp_path / "cli.db")
    res = CliRunner().invoke(app, ["scan", str(root), "--db", db_file, "--jobs", "0", "--no-write-tags", "--json"])
    assert res.exit_code == 1, res.output  # files failed: exit 1
    assert "Traceback" not in res.output
    summary = json.loads(res.stdout)
    res = CliRunner().invoke(app, ["errors", "--json", "--db", db_file])
    listed = {row["path"]: row["error"] for row in json.loads(res.stdout)}
    assert listed == {e["path"]: e["error"] for e in summary["errors"]}
    assert {p for p, want in expected.items() if want not in (None, "any")} <= set(listed)


def test_a_two_hour_file_is_analysed_in_bounded_memory(tmp_path, db):
    """2 h at 8 kHz: mostly silence (only non-silent windows cost features), a tone at both ends."""
    path = tmp_path / "long.wav"
    sr, seconds = 8_000, 7_200
    tone = (tone_signal([BASS], seconds=8.0, sr=sr) * 32767).astype("<i2")
    with sf.SoundFile(str(path), "w", samplerate=sr, channels=1, subtype="PCM_16") as f:
        f.write(tone)
        silence = np.zeros(sr * 600, dtype="<i2")
        for _ in range((seconds - 16) // 600):
            f.write(silence)
        f.write(np.zeros(sr * ((seconds - 16) % 600), dtype="<i2"))
        f.write(tone)
    full = seconds * 16_000 * 4  # the whole file as float32 at 16 kHz: 460 MB
    tracemalloc.start()
    try:
        summary = scan([path], db=db, analyser=FakeAnalyser(), jobs=0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert summary.scanned == 1 and summary.failed == 0
    assert peak < full / 3, f"peak {peak / 1e6:.0f} MB"  # about 50-110 MB (batches of windows), whatever the length
    with db.session() as s:
        track = s.scalar(select(M.Track))
        assert abs(track.duration - seconds) < 0.01 and track.windows == seconds // 4
    assert track_instruments(db) == {str(path): ["bass"]}
