"""General MIDI programs -> instrument families, as fixed in the team's gm_families.md.

Electric and electronic versions of an instrument belong to its family; synthesizer voices do not.
Programs that are none of the families are rendered as *negatives* (sounds that must never trigger a
classifier): drum kits, synth voices, ethnic instruments, percussion and sound effects.

Programs excluded from the families and why:
- 15 dulcimer, 104 sitar, 106 shamisen, 107 koto, 108 kalimba, 109 bagpipe, 111 shanai: ethnic
  instruments that the NSynth families do not describe (they are used as negatives).
- 31 guitar harmonics: a playing technique whose sound is closer to a mallet than to a guitar.
- 38-39 synth bass, 50-51 synth strings, 54 synth voice, 62-63 synth brass, 80-103 synth leads,
  pads and effects: synthesizer voices (NSynth's synth_lead is excluded by the paper).
- 47 timpani, 55 orchestra hit, 112-127 percussive and sound effects, every drum kit: percussion.
- 78 whistle: a human whistle is neither flute nor vocal.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE_ACOUSTIC = "acoustic"
SOURCE_ELECTRONIC = "electronic"
SOURCE_SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class Program:
    """One General MIDI program as a renderable instrument."""

    program: int
    """0-based GM program; for drum kits the kit's preset number in bank 128."""
    name: str
    family: str
    """One of the families, or a negative category (percussion, synth, effects, ethnic)."""
    low: int
    high: int
    """Plausible MIDI pitch range (inclusive)."""
    source: str = SOURCE_ACOUSTIC
    bank: int = 0

    @property
    def is_drum_kit(self) -> bool:
        return self.bank == 128


def _p(program, name, family, low, high, source=SOURCE_ACOUSTIC, bank=0):
    return Program(program, name, family, low, high, source, bank)


FAMILY_PROGRAMS: tuple[Program, ...] = (
    # bass 32-37 (28-67)
    _p(32, "acoustic bass", "bass", 28, 67),
    _p(33, "electric bass finger", "bass", 28, 67, SOURCE_ELECTRONIC),
    _p(34, "electric bass pick", "bass", 28, 67, SOURCE_ELECTRONIC),
    _p(35, "fretless bass", "bass", 28, 67, SOURCE_ELECTRONIC),
    _p(36, "slap bass 1", "bass", 28, 67, SOURCE_ELECTRONIC),
    _p(37, "slap bass 2", "bass", 28, 67, SOURCE_ELECTRONIC),
    # brass
    _p(56, "trumpet", "brass", 54, 86),
    _p(57, "trombone", "brass", 40, 77),
    _p(58, "tuba", "brass", 26, 65),
    _p(59, "muted trumpet", "brass", 54, 86),
    _p(60, "french horn", "brass", 35, 77),
    _p(61, "brass section", "brass", 35, 86),
    # flute
    _p(72, "piccolo", "flute", 74, 108),
    _p(73, "flute", "flute", 60, 98),
    _p(74, "recorder", "flute", 65, 98),
    _p(75, "pan flute", "flute", 55, 96),
    _p(76, "blown bottle", "flute", 60, 84),
    _p(77, "shakuhachi", "flute", 62, 93),
    _p(79, "ocarina", "flute", 60, 89),
    # guitar
    _p(24, "nylon guitar", "guitar", 40, 83),
    _p(25, "steel guitar", "guitar", 40, 86),
    _p(26, "jazz guitar", "guitar", 40, 88, SOURCE_ELECTRONIC),
    _p(27, "clean guitar", "guitar", 40, 88, SOURCE_ELECTRONIC),
    _p(28, "muted guitar", "guitar", 40, 88, SOURCE_ELECTRONIC),
    _p(29, "overdriven guitar", "guitar", 40, 88, SOURCE_ELECTRONIC),
    _p(30, "distortion guitar", "guitar", 40, 88, SOURCE_ELECTRONIC),
    _p(105, "banjo", "guitar", 48, 81),
    # keyboard
    _p(0, "acoustic grand piano", "keyboard", 21, 108),
    _p(1, "bright acoustic piano", "keyboard", 21, 108),
    _p(2, "electric grand piano", "keyboard", 28, 100, SOURCE_ELECTRONIC),
    _p(3, "honky-tonk piano", "keyboard", 21, 108),
    _p(4, "electric piano 1", "keyboard", 28, 100, SOURCE_ELECTRONIC),
    _p(5, "electric piano 2", "keyboard", 28, 100, SOURCE_ELECTRONIC),
    _p(6, "harpsichord", "keyboard", 29, 89),
    _p(7, "clavinet", "keyboard", 29, 88, SOURCE_ELECTRONIC),
    # mallet
    _p(8, "celesta", "mallet", 60, 108),
    _p(9, "glockenspiel", "mallet", 79, 108),
    _p(10, "music box", "mallet", 60, 96),
    _p(11, "vibraphone", "mallet", 53, 89),
    _p(12, "marimba", "mallet", 36, 96),
    _p(13, "xylophone", "mallet", 65, 108),
    _p(14, "tubular bells", "mallet", 60, 77),
    # organ
    _p(16, "drawbar organ", "organ", 36, 96, SOURCE_ELECTRONIC),
    _p(17, "percussive organ", "organ", 36, 96, SOURCE_ELECTRONIC),
    _p(18, "rock organ", "organ", 36, 96, SOURCE_ELECTRONIC),
    _p(19, "church organ", "organ", 24, 96),
    _p(20, "reed organ", "organ", 36, 96),
    # reed
    _p(21, "accordion", "reed", 41, 93),
    _p(22, "harmonica", "reed", 60, 96),
    _p(23, "bandoneon", "reed", 36, 93),
    _p(64, "soprano sax", "reed", 56, 88),
    _p(65, "alto sax", "reed", 49, 80),
    _p(66, "tenor sax", "reed", 44, 76),
    _p(67, "baritone sax", "reed", 36, 68),
    _p(68, "oboe", "reed", 58, 93),
    _p(69, "english horn", "reed", 52, 84),
    _p(70, "bassoon", "reed", 34, 76),
    _p(71, "clarinet", "reed", 50, 94),
    # string
    _p(40, "violin", "string", 55, 100),
    _p(41, "viola", "string", 48, 88),
    _p(42, "cello", "string", 36, 81),
    _p(43, "contrabass", "string", 28, 67),
    _p(44, "tremolo strings", "string", 28, 100),
    _p(45, "pizzicato strings", "string", 28, 100),
    _p(46, "orchestral harp", "string", 24, 103),
    _p(48, "string ensemble 1", "string", 28, 100),
    _p(49, "string ensemble 2", "string", 28, 100),
    _p(110, "fiddle", "string", 55, 100),
    # vocal
    _p(52, "choir aahs", "vocal", 40, 84),
    _p(53, "voice oohs", "vocal", 40, 84),
)

VARIANT_PROGRAMS: tuple[Program, ...] = (
    # GS-style variation presets (bank > 0) of family programs in FluidR3_GM and MuseScore_General:
    # more distinct instruments per family. A variant keeps its base program number, so a split
    # keeps it on the same side as the base program (they often share samples). MuseScore_General's
    # "Expr." banks (17, 18, 21, 26, 31, 41, 51), named as the base presets made to follow the
    # expression controller, are left out as near-duplicates. Rendered only where the SoundFont
    # has the preset.
    _p(0, "mellow grand piano", "keyboard", 21, 108, bank=8),
    _p(4, "detuned electric piano 1", "keyboard", 28, 100, SOURCE_ELECTRONIC, bank=8),
    _p(5, "detuned electric piano 2", "keyboard", 28, 100, SOURCE_ELECTRONIC, bank=8),
    _p(6, "coupled harpsichord", "keyboard", 29, 89, bank=8),
    _p(14, "church bell", "mallet", 48, 77, bank=8),
    _p(16, "detuned organ 1", "organ", 36, 96, SOURCE_ELECTRONIC, bank=8),
    _p(17, "detuned organ 2", "organ", 36, 96, SOURCE_ELECTRONIC, bank=8),
    _p(19, "church organ 2", "organ", 24, 96, bank=8),
    _p(21, "italian accordion", "reed", 41, 93, bank=8),
    _p(24, "ukulele", "guitar", 60, 84, bank=8),
    _p(25, "12-string guitar", "guitar", 40, 86, bank=8),
    _p(26, "hawaiian guitar", "guitar", 40, 88, SOURCE_ELECTRONIC, bank=8),
    _p(28, "funk guitar", "guitar", 40, 88, SOURCE_ELECTRONIC, bank=8),
    _p(30, "feedback guitar", "guitar", 40, 88, SOURCE_ELECTRONIC, bank=8),
    _p(25, "mandolin", "guitar", 55, 88, bank=16),
    _p(40, "slow violin", "string", 55, 100, bank=8),
    _p(61, "brass section 2", "brass", 35, 86, bank=8),
    # MuseScore_General's orchestral sections: violins, second violins, violas, celli, basses
    *(
        _p(prog, f"{section} {style}", "string", low, high, bank=bank)
        for bank, section, low, high in ((20, "violins", 55, 100), (25, "violins 2", 55, 100),
                                         (30, "violas", 48, 88), (40, "celli", 36, 81), (50, "basses", 28, 67))
        for prog, style in ((44, "tremolo"), (45, "pizzicato"), (48, "fast"), (49, "slow"))
    ),  # fmt: skip
)

NEGATIVE_PROGRAMS: tuple[Program, ...] = (
    _p(15, "dulcimer", "ethnic", 48, 84),
    _p(31, "guitar harmonics", "effects", 52, 88, SOURCE_ELECTRONIC),
    _p(38, "synth bass 1", "synth", 28, 67, SOURCE_SYNTHETIC),
    _p(39, "synth bass 2", "synth", 28, 67, SOURCE_SYNTHETIC),
    _p(47, "timpani", "percussion", 36, 57),
    _p(50, "synth strings 1", "synth", 36, 96, SOURCE_SYNTHETIC),
    _p(51, "synth strings 2", "synth", 36, 96, SOURCE_SYNTHETIC),
    _p(54, "synth voice", "synth", 48, 84, SOURCE_SYNTHETIC),
    _p(55, "orchestra hit", "effects", 48, 84, SOURCE_SYNTHETIC),
    _p(62, "synth brass 1", "synth", 36, 84, SOURCE_SYNTHETIC),
    _p(63, "synth brass 2", "synth", 36, 84, SOURCE_SYNTHETIC),
    _p(78, "whistle", "effects", 60, 96),
    *(_p(p, f"synth lead/pad/fx {p}", "synth", 36, 96, SOURCE_SYNTHETIC) for p in range(80, 104)),
    _p(104, "sitar", "ethnic", 48, 84),
    _p(106, "shamisen", "ethnic", 50, 86),
    _p(107, "koto", "ethnic", 48, 84),
    _p(108, "kalimba", "ethnic", 60, 96),
    _p(109, "bagpipe", "ethnic", 55, 84),
    _p(111, "shanai", "ethnic", 60, 90),
    *(_p(p, f"percussive/effect {p}", "effects", 36, 84) for p in range(112, 128)),
)

DRUM_KITS: tuple[Program, ...] = tuple(
    Program(kit, f"drum kit {kit}", "percussion", 35, 81, SOURCE_ACOUSTIC, bank=128)
    for kit in (0, 8, 16, 24, 25, 32, 40, 48)
)
"""Drum kits (bank 128) common to FluidR3_GM and MuseScore_General; pitches are GM drum keys."""

NEGATIVE_CATEGORIES = ("percussion", "synth", "effects", "ethnic")


def all_programs(*, negatives: bool = True, variants: bool = False) -> tuple[Program, ...]:
    """Every renderable program: the families' (with their variation presets if asked) and, unless
    disabled, the negatives and drum kits."""
    return FAMILY_PROGRAMS + (VARIANT_PROGRAMS if variants else ()) + (NEGATIVE_PROGRAMS + DRUM_KITS if negatives else ())
