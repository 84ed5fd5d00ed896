"""The timeline of a Matroska or WebM file's audio blocks (`tagger.audio.matroska`): each block's
timestamp against the length its codec tells of the one before (`_Timeline`): the gaps between them,
and blocks longer than their codec tells, measured by their own timestamps (`_stretch`)."""

from __future__ import annotations

from array import array


class _Timeline:
    """The audio track's blocks in the order the walk meets them (across clusters): the first one's
    timestamp, the last one's, and of each two in a row whose timestamps' spacing differs from the
    length its codec tells of the first by more than `tolerance` (two ticks of rounding), that
    spacing and length: a gap between them, or blocks longer than their codec tells (`_stretch`).
    Those that agree are counted alone (a whole file's: all of them, none kept); the lengths told of
    all are added up (`told`)."""

    def __init__(self, tolerance: int) -> None:
        self.tolerance = tolerance
        self.first: int | None = None
        self.last: tuple[int, int | None, bool] | None = None  # (ns, length told (ns), a BlockDuration's)
        self.agree = 0
        self.apart = array("q")  # (spacing, length told, 1 for a BlockDuration's) of each that disagrees
        self.before: bytes | None = None  # (a Vorbis packet's window follows the packet before it)
        self.told = [0, 0]  # (the lengths told of all blocks: their codec's, their BlockDurations)
        self.before_last: tuple[int | None, bool] | None = None

    def add(self, ns: int, told: int | None, exact: bool) -> None:
        """The next block: its timestamp, its length told (None where not: taken as the one before's)
        and whether that is its BlockDuration."""
        if self.first is None:
            self.first = ns
        if told is None and self.last is not None:
            told, exact = self.last[1], self.last[2]
        if self.last is not None and self.last[1] is not None:
            spacing, length = ns - self.last[0], self.last[1]
            if abs(spacing - length) <= self.tolerance:
                self.agree += 1
            elif spacing > 0 and length > 0:
                self.apart.extend((spacing, length, int(self.last[2])))
        self.before_last = None if self.last is None else self.last[1:]
        self.last = (ns, told, exact)
        if told is not None:
            self.told[exact] += told

    def damaged(self) -> None:
        """Damage right after the last block: its bytes may be another's (bytes cut out from inside
        it), its length told wrong (600 ms of a 20 ms Opus block's): taken as the one before's."""
        if self.last is not None and self.before_last is not None:
            if self.last[1] is not None:
                self.told[self.last[2]] -= self.last[1]
            self.last = (self.last[0], *self.before_last)
            if self.last[1] is not None:
                self.told[self.last[2]] += self.last[1]

    def stretch(self) -> float:
        return _stretch([(s, t) for s, t, exact in zip(*[iter(self.apart)] * 3) if not exact], self.tolerance,
                        agree=self.agree)  # fmt: skip

    def length(self, told: int, exact: bool, stretch: float) -> int:
        return told if exact else round(told * stretch)

    def gaps(self, stretch: float, span: int) -> tuple[int, int]:
        """(how many, ns together) of the gaps: a block that begins after the end of the one before it
        (its length told, stretched) by more than two ticks and half a block (a recorder's jitter).
        Together at most what the timeline's `span` (ns) holds beyond the blocks' lengths: a block
        late by more than that whose next is as early (timestamps that jitter) loses nothing."""
        gaps = lost = 0
        for spacing, told, exact in zip(*[iter(self.apart)] * 3):
            length = self.length(told, bool(exact), stretch)
            if spacing - length > max(self.tolerance, length // 2):
                gaps, lost = gaps + 1, lost + spacing - length
        lost = min(lost, span - round(self.told[0] * stretch) - self.told[1])
        return (gaps, lost) if lost > self.tolerance else (0, 0)


def _stretch(pairs: list[tuple[int, int]], tolerance: int, *, agree: int = 0) -> float:
    """How much longer than their codec tells the blocks of a track are, measured by their own
    timestamps: `pairs` holds, of blocks in a row, the spacing (ns) of their timestamps and the
    length its codec tells of the first of them; `agree` more such that agree within `tolerance` (two
    ticks of rounding), each a ratio of one. The median of the ratios, where it is off by more than a
    quarter; else 1. A codec's nominal length can be wrong for a whole file (an HE-AAC track whose
    SamplingFrequency is its output rate, each frame 2,048 samples of it, not 1,024: every cluster's
    end half a frame early, a gap after each, the whole file refused); its own timestamps are not.
    The median, not the sum: a gap is one ratio of many; and not of the ratios that disagree alone:
    timestamps rounded from a coarser file's (mkvmerge's of a live MKA, a millisecond off in a third
    of them) disagree a little either way. Where it stretches, it is refined to the spacing over the
    lengths of the pairs that agree with the median within `tolerance`: the median of ratios each
    rounded to a tick (42 or 43 ms over 21.3) was 2.016, 94 ms too long over 12 s."""
    ratios = [1.0 if abs(spacing - told) <= tolerance else spacing / told
              for spacing, told in pairs if told > 0 and spacing > 0]  # fmt: skip
    below = sorted(r for r in ratios if r < 1.0)
    above = sorted(r for r in ratios if r > 1.0)
    ones = agree + len(ratios) - len(below) - len(above)
    k = (len(below) + ones + len(above)) // 2
    if not below and not above:
        return 1.0
    middle = below[k] if k < len(below) else 1.0 if k < len(below) + ones else above[k - len(below) - ones]
    if 0.8 <= middle <= 1.25:
        return 1.0
    # (each ratio off by its timestamps' rounding: the blocks' whole spacing over their lengths told,
    # of those near the median, the stretch of the file's length, not of one block's)
    near = [(spacing, told) for spacing, told in pairs if abs(spacing - told * middle) <= tolerance]
    return sum(s for s, _ in near) / sum(t for _, t in near) if near else middle
