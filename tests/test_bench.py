"""The benchmark's parts: the seeded compositions, their MIDI, one real render, the process-tree
memory sampler and the synthesised query database. No timing assertions."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks import bench as B
from benchmarks import library as L
from tagger.instruments import FAMILIES


def test_compositions_are_seeded_varied_and_in_range():
    a, b = L.compose(3, seed=1), L.compose(3, seed=1)
    assert a == b and L.compose(3, seed=2) != a
    pieces = [L.compose(i) for i in range(40)]
    for p in pieces:
        assert L.MIN_SECONDS <= p.seconds <= L.MAX_SECONDS and 80 <= p.tempo <= 140
        assert 3 <= len(p.families) <= 6 and set(p.families) <= set(FAMILIES)
        channels = [part.channel for part in p.parts]
        assert len(set(channels)) == len(channels)
        assert all((part.channel == 9) == (part.family == "drums") for part in p.parts)
    assert {p.format for p in pieces} == set(L.FORMATS) and {p.soundfont for p in pieces} == {"fluidr3", "musescore"}
    assert len({p.families for p in pieces}) > 20  # different line-ups
    assert set().union(*(p.families for p in pieces)) == set(FAMILIES)  # every family plays somewhere
    assert any(part.family == "drums" for p in pieces for part in p.parts)


def test_a_smaller_library_is_a_prefix_of_a_larger_one():
    small, big = L.plan(hours=0.5), L.plan(hours=2.0)
    assert big[: len(small)] == small
    assert sum(p.seconds for p in big) >= 2 * 3600 > sum(p.seconds for p in big[:-1])
    assert len({p.relpath for p in big}) == len(big)


def test_midi_events_are_sorted_balanced_and_in_range():
    piece = L.compose(5)
    events = L.events(piece)
    times = [t for t, _ in events]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= piece.seconds
    ranges = {part.channel: (part.low, part.high) for part in piece.parts}
    programs = {msg[0] & 0x0F: msg[1] for _, msg in events if msg[0] & 0xF0 == 0xC0}
    assert programs == {part.channel: part.program for part in piece.parts}
    held: dict[tuple[int, int], int] = {}
    ons = 0
    for _, msg in events:
        kind, ch = msg[0] & 0xF0, msg[0] & 0x0F
        if kind == 0x90:
            ons += 1
            assert ranges[ch][0] <= msg[1] <= ranges[ch][1] and 1 <= msg[2] <= 127
            held[(ch, msg[1])] = held.get((ch, msg[1]), 0) + 1
        elif kind == 0x80:
            held[(ch, msg[1])] -= 1
    assert ons > piece.seconds  # a busy piece: more than one note a second
    assert all(v == 0 for v in held.values())


@pytest.mark.skipif(shutil.which("fluidsynth") is None or shutil.which("ffmpeg") is None, reason="needs fluidsynth and ffmpeg")
@pytest.mark.parametrize("fmt", ["mp3", "m4a"])
def test_render_encodes_a_decodable_track(tmp_path, fmt):
    from tagger import audio
    from tagger.data.render import default_soundfonts

    if not default_soundfonts():
        pytest.skip("no training SoundFont installed")
    piece = dataclasses.replace(L.compose(0), seconds=6.0, format=fmt)
    out = L.render(piece, tmp_path / f"p.{fmt}")
    meta = audio.info(out)
    assert meta.sample_rate == L.ENCODE_RATE and meta.channels == 2
    mono = audio.load(out)
    assert abs(len(mono) / 16_000 - 6.0) < 0.2
    level = 20 * np.log10(np.sqrt(np.mean(mono.astype(np.float64) ** 2)))
    assert -40 < level < 0  # music, not silence
    assert not list(tmp_path.glob(".*part*"))  # no temporary file left


@pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")
def test_the_clipping_script_renders_a_piece_again_for_another_length(tmp_path, monkeypatch):
    """scripts/clipping.py caches each clean render in its --out folder, named by the piece's index,
    parts and families alone: a run with another --seconds in the same folder measured the renders
    of the run before (16 s excerpts said to be 1 s). Its renders are the benchmark's own
    (`render_audio`): stereo at the render rate, cut to the piece's length, peaking at -1 dBFS."""
    import importlib.util

    from tagger import constants as C
    from tagger.data.render import default_soundfonts

    if not default_soundfonts():
        pytest.skip("no training SoundFont installed")
    monkeypatch.setattr(sys, "path", list(sys.path))  # (the script puts the repository on it)
    spec = importlib.util.spec_from_file_location("clipping", Path(__file__).parent.parent / "scripts" / "clipping.py")
    clipping = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(clipping)
    piece = dataclasses.replace(L.compose(0, seed=11, short=True), seconds=2.0)
    longer = clipping.render(piece, tmp_path)
    shorter = clipping.render(dataclasses.replace(piece, seconds=1.0), tmp_path)
    assert longer.shape == (2 * C.RENDER_SAMPLE_RATE, 2) and shorter.shape == (C.RENDER_SAMPLE_RATE, 2)  # (was: 2 s)
    assert np.isclose(np.abs(shorter).max(), 10 ** (-1 / 20))
    np.testing.assert_array_equal(clipping.render(piece, tmp_path), longer)  # (from the cache)


@pytest.mark.slow
def test_ensure_library_renders_only_what_the_cache_lacks(tmp_path, monkeypatch):
    if shutil.which("fluidsynth") is None or shutil.which("ffmpeg") is None:
        pytest.skip("needs fluidsynth and ffmpeg")
    pieces = [dataclasses.replace(L.compose(i), seconds=3.0) for i in range(2)]
    rendered = []
    real = L._render_job

    def spy(args):
        rendered.append(args[0].index)
        return real(args)

    monkeypatch.setattr(L, "_render_job", spy)
    monkeypatch.setattr(L, "ProcessPoolExecutor", _InlinePool)
    lib = L.ensure_library(pieces, cache_dir=tmp_path)
    assert sorted(rendered) == [0, 1] and all((lib / p.relpath).is_file() for p in pieces)
    L.ensure_library(pieces, cache_dir=tmp_path)
    assert sorted(rendered) == [0, 1]  # cached
    copy = L.materialise(pieces[:1], library=lib, dest=tmp_path / "work")
    assert [p.name for p in copy.rglob("*.*")] == [Path(pieces[0].relpath).name]


class _InlinePool:
    def __init__(self, max_workers=None):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def map(self, fn, items):
        return map(fn, items)


def test_tree_memory_sees_a_child_and_its_children(tmp_path):
    # (the two processes hold their memory until the sampler has seen both at once: was 1.5 s, which
    # a sampler thread that a loaded machine left waiting could miss)
    go = tmp_path / "go"
    kid = "import os, sys, time; x = bytearray(30 * 2**20)\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.02)"
    code = ("import subprocess, sys\n"
            "big = bytearray(60 * 2**20)\n"
            "subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]]).wait()")  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-c", code, kid, str(go)])
    mem = B.TreeMemory(proc.pid, interval=0.05)
    mem.start()
    deadline = time.monotonic() + 120  # (a bound on a hang, not a timing)
    def child_seen() -> bool:  # (its peak, as the report reads it: the sum alone could be reached while the
        # child was still filling its 30 MiB, and once told to go it exited before the sampler saw more)
        return max((v for pid, v in list(mem.peak.items()) if pid != proc.pid), default=0) >= 30 * 2**20

    while (mem.peak_total < 90 * 2**20 or not child_seen()) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    go.touch()
    proc.wait()
    mem.stop.set()
    mem.join()
    r = mem.report()
    assert r["main_peak_rss"] >= 60 * 2**20
    assert r["worker_peak_rss"] and r["worker_peak_rss"][0] >= 30 * 2**20
    assert r["peak_total_rss"] >= 90 * 2**20


def test_synthesised_query_database_answers_queries(tmp_path):
    from tagger.db.filter import TrackFilter
    from tagger.db.queries import find_tracks
    from tagger.db.session import open_database

    path = B.synth_database(tmp_path / "q.db", tracks=200, seed=3)
    db = open_database(str(path))
    try:
        with db.session() as s:
            everything = find_tracks(s)
            flute = find_tracks(s, where=TrackFilter.of(has=["flute"], lacks=["vocal"]))
    finally:
        db.close()
    assert len(everything) == 200
    assert all(1 <= len(t.instruments) <= 5 and len(t.scores) == len(FAMILIES) for t in everything)
    want = [t.path for t in everything if "flute" in t.instruments and "vocal" not in t.instruments]
    assert [t.path for t in flute] == want and 0 < len(want) < 200
    assert B.synth_database(path, tracks=200) == path  # cached


def test_queries_are_timed_with_bytecode_cached_after_an_untimed_run(tmp_path, monkeypatch):
    """An installed tagger keeps its modules' bytecode: the timed query processes get Python's cache
    even where the shell turns it off (this machine's does), after one untimed run that writes it."""
    db = B.synth_database(tmp_path / "q.db", tracks=20, seed=1)
    runs = []

    def fake_run(cmd, **kw):
        runs.append((tuple(cmd), kw["env"]))
        return subprocess.CompletedProcess(cmd, 0, stdout=b"[]", stderr=b"")

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.setattr(B.subprocess, "run", fake_run)
    out = B.measure_query(db, runs=2)
    assert out["bytecode"] == "cached" and all("PYTHONDONTWRITEBYTECODE" not in env for _, env in runs)
    queries = [cmd for cmd, _ in runs if "query" in cmd]
    assert len(queries) == 3 * len(B.QUERIES) and all(queries.count(c) == 3 for c in queries)


def test_compare_says_when_only_one_query_timing_had_the_bytecode_cache(tmp_path, capsys):
    """Every result file before b019d0a timed the query without the bytecode cache where the shell
    turned it off: --compare with one of them showed the cache's ~50 ms as the code's."""
    results = {"query_seconds": 0.28}
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"started": "then", "results": results, "query": {"queries": []}}))
    B.compare({"results": {"query_seconds": 0.23}, "query": {"bytecode": "cached"}}, old)
    line = next(x for x in capsys.readouterr().out.splitlines() if "query_seconds" in x)
    assert "bytecode: as the shell had it -> cached; not comparable" in line
    B.compare({"results": results, "query": {"queries": []}}, old)
    assert "bytecode" not in capsys.readouterr().out


def test_targets_and_report_shape():
    assert set(B.TARGETS) == {"scan_x_realtime", "ensemble_x_realtime", "peak_memory_bytes", "rescan_seconds_per_1000",
                              "query_seconds"}  # fmt: skip
    run = {"process_wall_seconds": 10.0, "memory": {"peak_total_rss": 1},
           "summary": {"audio_seconds": 4000.0, "wall_seconds": 9.0, "realtime_factor": 444.4,
                       "stage_seconds": {"decode": 1.5}, "tags_written": 3, "failed": 0}}  # fmt: skip
    fig = B.scan_figures(run, tracks=20)
    assert fig["x_realtime"] == 400.0 and fig["startup_seconds"] == 1.0 and fig["tracks_per_second"] == 2.0


def test_bench_help_runs_as_a_module_and_as_a_script():
    root = Path(__file__).resolve().parent.parent
    for cmd in ([sys.executable, "-m", "benchmarks.bench", "--help"], [sys.executable, "benchmarks/bench.py", "--help"]):
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=root, env={**os.environ}, check=True).stdout
        assert "--hours" in out and "--quick" in out


@pytest.mark.model
def test_the_ensemble_alone_is_timed_with_the_runtime_it_ships_and_on_one_thread(tmp_path, make_tone_file, monkeypatch):
    """`measure_inference` loads the ONNX export the shipped runtime made to time it on one thread: it
    must find it under the key the runtime caches it by (the files' hash since 2026-12-05; looking it
    up by the manifest's hash found nothing and the benchmark crashed)."""
    from conftest import compact_models

    from tagger.model import backends as BK
    from tagger.model import runtime as R

    if not R.onnxruntime_available():
        pytest.skip("onnxruntime/onnx not installed")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv(BK.RUNTIME_ENV, raising=False)
    models = compact_models(tmp_path / "models", ["bass", "flute"], version="bench")
    song = make_tone_file(tmp_path / "song.flac", [220.0, 330.0], seconds=20.0)
    out = B.measure_inference(models, [song], windows=4, arch_windows=2, paper=False)
    assert out["windows"] == 4 and out["runtime"] == "onnxruntime"
    assert out["one_thread"]["threads"] == 1 and out["one_thread"]["x_realtime"] > 0
    assert out["all_cores"]["x_realtime"] > 0 and out["architectures"]["compact_ms_per_window"] > 0


def test_the_retagged_benchmark_rewrites_tags_only(tmp_path):
    """`benchmarks.retagged`'s files in each format, retagged as it does: another fingerprint (a scan
    finds them changed), the same audio digest (a scan keeps their results)."""
    from benchmarks import retagged as R
    from tagger.fingerprint import fingerprint
    from tagger.tags import audio_digest

    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg not installed")
    files = R.make_files(tmp_path, tracks=3, seconds=1.0)
    assert sorted(p.suffix for p in files) == [".flac", ".m4a", ".mp3"]
    for p in files:
        before = (fingerprint(p), audio_digest(p))
        R.retag(p, "A title")
        assert fingerprint(p) != before[0] and audio_digest(p) == before[1] is not None
