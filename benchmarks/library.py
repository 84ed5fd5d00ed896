"""A benchmark music library: multi-instrument pieces rendered from the training SoundFonts.

Each piece is a seeded random composition (tempo, key, a four-chord progression, sections of eight
bars in which each instrument plays or rests): a bass line, chords on a keyboard, guitar, organ or
mallet, melodies or pads on winds, brass, strings or voices, often a drum kit on channel 10. It is
written as a MIDI file (`tagger.data.render.write_midi`), rendered at 48 kHz by the ``fluidsynth``
program (`tagger.data.render.fluidsynth_command`: reverb and chorus off, gain 0.5) with one of the
two training SoundFonts, peak-normalised to -1 dBFS and encoded by ``ffmpeg`` at 44.1 kHz as MP3,
FLAC, Ogg Vorbis or M4A (AAC) in turn, with ordinary title/artist/album tags.

Piece ``i`` depends only on (seed, i), so a smaller library is a prefix of a larger one and the
cache (default ``~/.cache/tagger/bench/library-v1``) serves every size.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tagger import constants as C
from tagger.data.gm import FAMILY_PROGRAMS, Program
from tagger.data.render import default_soundfonts, fluidsynth_command, write_midi

FORMATS = ("mp3", "flac", "ogg", "m4a")
LIBRARY_VERSION = "library-v1"
"""Bump when the composition or encoding changes, so that old caches are not reused."""
ENCODE_RATE = 44_100
TRACKS_PER_ALBUM = 8
MIN_SECONDS, MAX_SECONDS = 180.0, 300.0
SHORT_SECONDS = (15.0, 55.0)
"""Durations of the short-tracks library (jingles, interludes, samples): per-file costs dominate."""
SHORT_TRACKS = 60

ROLE = {
    "bass": "bass",
    "keyboard": "chords",
    "guitar": "chords",
    "organ": "chords",
    "mallet": "chords",
    "string": "pad",
    "brass": "melody",
    "flute": "melody",
    "reed": "melody",
    "vocal": "melody",
}
"""How each family plays in a piece."""

_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (1, 4, 0, 5), (0, 3, 4, 4), (5, 3, 0, 4))
"""Scale degrees (0-based) of four-bar chord progressions."""
_ENCODERS = {
    "mp3": ["-c:a", "libmp3lame", "-b:a", "192k"],
    "flac": ["-c:a", "flac", "-sample_fmt", "s16"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "5"],
    "m4a": ["-c:a", "aac", "-b:a", "192k", "-movflags", "+faststart"],
}


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/tagger/bench`` (usually ``~/.cache/tagger/bench``: `tagger.paths.cache_home`)."""
    from tagger.paths import cache_home

    base = cache_home()
    if base is None:
        raise SystemExit("no cache folder: $XDG_CACHE_HOME is not an absolute path and there is no home folder; "
                         "give --cache")  # fmt: skip
    return Path(base) / "tagger" / "bench"


@dataclass(frozen=True)
class Part:
    """One instrument of a piece."""

    family: str
    """A family name, or 'drums'."""
    program: int
    channel: int
    role: str
    low: int
    high: int
    sections: tuple[bool, ...]
    """Whether the part plays in each section."""


@dataclass(frozen=True)
class Piece:
    """A seeded composition: everything needed to render and encode one track."""

    index: int
    seconds: float
    tempo: float
    key: int
    minor: bool
    progression: tuple[int, ...]
    soundfont: str
    """'fluidr3' or 'musescore'."""
    format: str
    parts: tuple[Part, ...] = field(default=())
    folder: str = ""
    """A sub-folder of the library (``short`` for the short-tracks library), so that caches do not mix."""

    @property
    def families(self) -> tuple[str, ...]:
        """The instrument families that play (drums are not a family)."""
        return tuple(sorted({p.family for p in self.parts if p.family != "drums"}))

    @property
    def relpath(self) -> str:
        """Where the encoded track lives inside the library folder."""
        album = self.index // TRACKS_PER_ALBUM
        name = f"album-{album:03d}/{self.index % TRACKS_PER_ALBUM + 1:02d} piece {self.index:04d}.{self.format}"
        return f"{self.folder}/{name}" if self.folder else name


def compose(index: int, *, seed: int = 0, short: bool = False) -> Piece:
    """The piece number `index` of the library with this `seed` (pure: same arguments, same piece);
    ``short``: of the short-tracks library (`SHORT_SECONDS`)."""
    rng = random.Random(f"tagger-bench-{'short-' if short else ''}{seed}-{index}")
    seconds = round(rng.uniform(*(SHORT_SECONDS if short else (MIN_SECONDS, MAX_SECONDS))), 1)
    beat = 60.0 / rng.uniform(80, 140)
    bar = 4 * beat
    tempo = 60.0 / beat
    n_sections = max(1, int(seconds // (8 * bar)) + 1)
    by_family: dict[str, list[Program]] = {}
    for prog in FAMILY_PROGRAMS:
        by_family.setdefault(prog.family, []).append(prog)
    n_families = rng.randint(3, 6)
    families = ["bass"] if rng.random() < 0.8 else []
    others = [f for f in ROLE if f not in families]
    rng.shuffle(others)
    families += others[: n_families - len(families)]
    parts: list[Part] = []
    channels = [c for c in range(16) if c != 9]
    for i, fam in enumerate(families):
        prog = rng.choice(by_family[fam])
        sections = tuple(rng.random() < 0.75 for _ in range(n_sections))
        if not any(sections):
            sections = (True,) + sections[1:]
        parts.append(Part(fam, prog.program, channels[i], ROLE[fam], prog.low, prog.high, sections))
    if rng.random() < 0.7:
        parts.append(Part("drums", 0, 9, "drums", 35, 81, tuple(rng.random() < 0.85 for _ in range(n_sections))))
    return Piece(
        index=index,
        seconds=seconds,
        tempo=round(tempo, 3),
        key=rng.randrange(12),
        minor=rng.random() < 0.4,
        progression=rng.choice(_PROGRESSIONS),
        soundfont=("fluidr3", "musescore")[index % 2],
        format=FORMATS[index % len(FORMATS)],
        parts=tuple(parts),
        folder="short" if short else "",
    )


def plan(*, hours: float, seed: int = 0) -> list[Piece]:
    """The first pieces whose durations add up to at least `hours` (at least one piece)."""
    pieces: list[Piece] = []
    total = 0.0
    while total < hours * 3600 or not pieces:
        piece = compose(len(pieces), seed=seed)
        pieces.append(piece)
        total += piece.seconds
    return pieces


def plan_short(*, tracks: int = SHORT_TRACKS, seed: int = 0) -> list[Piece]:
    """The short-tracks library: `tracks` pieces of 15-55 s, in every format."""
    return [compose(i, seed=seed, short=True) for i in range(tracks)]


def _fit(pitch: int, low: int, high: int) -> int:
    while pitch < low:
        pitch += 12
    while pitch > high:
        pitch -= 12
    return max(low, min(high, pitch))


def events(piece: Piece) -> list[tuple[float, bytes]]:
    """The piece's MIDI events as (seconds, message), sorted (note-offs before note-ons at a tie)."""
    rng = random.Random(f"tagger-bench-notes-{piece.index}-{piece.tempo}")
    beat = 60.0 / piece.tempo
    bar = 4 * beat
    scale = _MINOR if piece.minor else _MAJOR
    section_len = 8 * bar
    notes: list[tuple[float, float, int, int, int]] = []  # start, end, channel, pitch, velocity
    head: list[tuple[float, bytes]] = []
    for part in piece.parts:
        ch = part.channel
        head += [
            (0.0, bytes([0xB0 | ch, 0, 0])),
            (0.0, bytes([0xC0 | ch, part.program])),
            (0.0, bytes([0xB0 | ch, 7, rng.randint(85, 110)])),  # channel volume
            (0.0, bytes([0xB0 | ch, 10, rng.randint(24, 104)])),  # pan
        ]
        centre = (part.low + part.high) // 2
        melody = centre + rng.randint(-3, 3)
        t_bar = 0.0
        n_bar = 0
        while t_bar < piece.seconds - beat:
            section = min(int(t_bar // section_len), len(part.sections) - 1)
            if part.sections[section]:
                degree = piece.progression[n_bar % len(piece.progression)]
                root = piece.key + scale[degree]
                chord = [root + scale[(degree + k) % 7] - scale[degree] + (12 if degree + k >= 7 else 0) for k in (0, 2, 4)]
                vel = rng.randint(60, 105)
                if part.role == "bass":
                    step = rng.choice((1, 2))
                    for b in range(0, 4, step):
                        p = _fit(root + (7 if b == 2 and rng.random() < 0.3 else 0) + 36, part.low, part.high)
                        notes.append((t_bar + b * beat, t_bar + (b + step * 0.9) * beat, ch, p, vel))
                elif part.role == "chords":
                    base = _fit(chord[0] + 48, part.low, part.high - 8)
                    hits = rng.choice(((0, 2), (0, 1, 2, 3), (0, 1.5, 2.5)))
                    for b in hits:
                        for c in chord:
                            p = _fit(base + c - chord[0], part.low, part.high)
                            notes.append((t_bar + b * beat, t_bar + (b + 0.95) * beat, ch, p, vel - 10))
                elif part.role == "pad":
                    base = _fit(chord[0] + 60, part.low, part.high - 8)
                    for c in chord:
                        notes.append((t_bar, t_bar + 3.9 * beat, ch, _fit(base + c - chord[0], part.low, part.high), vel - 15))
                elif part.role == "melody":
                    b = 0.0
                    while b < 4:
                        length = rng.choice((0.5, 1, 1, 1.5, 2))
                        melody = _fit(melody + rng.choice((-2, -1, -1, 0, 1, 1, 2, 3)), part.low + 3, part.high - 3)
                        pitch = piece.key + 12 * ((melody - piece.key) // 12) + min(scale, key=lambda s: abs(s - (melody - piece.key) % 12))
                        if rng.random() < 0.85:
                            notes.append((t_bar + b * beat, t_bar + min(4, b + length * 0.95) * beat, ch, _fit(pitch, part.low, part.high), vel))
                        b += length
                elif part.role == "drums":
                    for e in range(8):
                        t = t_bar + e * beat / 2
                        notes.append((t, t + 0.1, ch, 42, rng.randint(50, 80)))  # closed hi-hat
                        if e in (0, 4) or (e == 5 and rng.random() < 0.3):
                            notes.append((t, t + 0.1, ch, 36, 100))  # kick
                        if e in (2, 6):
                            notes.append((t, t + 0.1, ch, 38, 95))  # snare
            t_bar += bar
            n_bar += 1
    timed: list[tuple[float, int, bytes]] = []
    for start, end, ch, pitch, vel in notes:
        end = min(end, piece.seconds)
        if end <= start:
            continue
        timed.append((start, 1, bytes([0x90 | ch, pitch, max(1, min(127, vel))])))
        timed.append((end, 0, bytes([0x80 | ch, pitch, 0])))
    timed.sort(key=lambda e: (e[0], e[1]))
    out = head + [(t, msg) for t, _, msg in timed]
    out += [(piece.seconds, bytes([0xB0 | p.channel, 123, 0])) for p in piece.parts]  # all notes off
    return out


def render_audio(piece: Piece, *, soundfonts: dict[str, Path] | None = None) -> np.ndarray:
    """The piece rendered by fluidsynth from its SoundFont (`soundfonts`, default the installed
    training ones; the first of them where its own is missing): [shape=(m, 2)] float32 at
    `C.RENDER_SAMPLE_RATE`, cut to `piece.seconds`, at fluidsynth's level (`render` and
    scripts/clipping.py each scale it to -1 dBFS, in float64 and float32: their figures stay as
    measured)."""
    fonts = soundfonts or default_soundfonts()
    font = fonts.get(piece.soundfont) or next(iter(fonts.values()), None)
    if font is None:
        raise RuntimeError("no training SoundFont installed (Debian: fluid-soundfont-gm, musescore-general-soundfont)")
    with tempfile.TemporaryDirectory(prefix="tagger-bench-") as tmp:
        midi, raw = Path(tmp) / "piece.mid", Path(tmp) / "piece.raw"
        write_midi(midi, events(piece))
        proc = subprocess.run(fluidsynth_command(font, midi, raw, gain=0.5), capture_output=True, text=True)
        if proc.returncode != 0 or not raw.exists():
            raise RuntimeError(f"fluidsynth failed on piece {piece.index}: {proc.stderr.strip()[-300:]}")
        return np.fromfile(raw, dtype="<f4").reshape(-1, 2)[: int(piece.seconds * C.RENDER_SAMPLE_RATE)]


def render(piece: Piece, dest: Path, *, soundfonts: dict[str, Path] | None = None) -> Path:
    """Render and encode one piece into `dest` (atomically: a finished file or none)."""
    audio = render_audio(piece, soundfonts=soundfonts)
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    if peak > 0:
        audio = audio * np.float32(10 ** (-1 / 20) / peak)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = dest.with_name(f".{dest.name}.part{dest.suffix}")
    cmd = [
        "ffmpeg", "-nostdin", "-v", "error", "-y",
        "-f", "f32le", "-ar", str(C.RENDER_SAMPLE_RATE), "-ac", "2", "-i", "pipe:0",
        "-ar", str(ENCODE_RATE), *_ENCODERS[piece.format],
        "-metadata", f"title=Piece {piece.index}",
        "-metadata", "artist=tagger bench",
        "-metadata", f"album=Album {piece.index // TRACKS_PER_ALBUM}",
        "-metadata", f"track={piece.index % TRACKS_PER_ALBUM + 1}",
        str(tmp_out),
    ]  # fmt: skip
    enc = subprocess.run(cmd, input=audio.astype("<f4").tobytes(), capture_output=True)
    if enc.returncode != 0:
        tmp_out.unlink(missing_ok=True)
        raise RuntimeError(f"ffmpeg failed on piece {piece.index}: {enc.stderr.decode(errors='replace')[-300:]}")
    os.replace(tmp_out, dest)
    return dest


def _render_job(args: tuple[Piece, str]) -> str:
    piece, dest = args
    return str(render(piece, Path(dest)))


def ensure_library(
    pieces: Sequence[Piece],
    *,
    cache_dir: Path,
    jobs: int | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> Path:
    """Render whatever pieces the cache lacks (in parallel) and return the library folder."""
    if shutil.which("fluidsynth") is None or shutil.which("ffmpeg") is None:
        raise RuntimeError("the benchmark needs the fluidsynth and ffmpeg programs (Debian: apt-get install fluidsynth ffmpeg)")
    lib = cache_dir / LIBRARY_VERSION
    todo = [(p, str(lib / p.relpath)) for p in pieces if not (lib / p.relpath).is_file()]
    if todo:
        hours = sum(p.seconds for p, _ in todo) / 3600
        log(f"rendering {len(todo)} piece(s), {hours:.2f} h of audio, into {lib} (cached for later runs)")
        jobs = jobs or os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            for i, path in enumerate(pool.map(_render_job, todo), 1):
                if i % 10 == 0 or i == len(todo):
                    log(f"  rendered {i}/{len(todo)}")
    return lib


def materialise(pieces: Sequence[Piece], *, library: Path, dest: Path) -> Path:
    """A fresh, writable copy of the pieces' files under `dest` (tag writing changes files)."""
    if dest.exists():
        shutil.rmtree(dest)
    for p in pieces:
        target = dest / p.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(library / p.relpath, target)
    return dest
