"""What a cue sheet gives (`tagger.cuesheet`): its tracks (`CueSheet`, `CueTrack`), the error of one
that cannot be used (`CueSheetError`), and its times (`FRAMES_PER_SECOND`, `cue_clock`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tagger.errors import TaggerError

FRAMES_PER_SECOND = 75
"""A CD frame (sector) is 1/75 s: the ``ff`` of a cue sheet's ``mm:ss:ff``."""


class CueSheetError(TaggerError):
    """A cue sheet that cannot be used: ``source`` names it (the ``.cue``, or the FLAC file with
    the kind of embedded cue sheet), ``reason`` says why."""

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")


@dataclass(frozen=True)
class CueTrack:
    number: int
    title: str | None
    performer: str | None
    """The track's ``PERFORMER``, else the album's (the one before the first ``TRACK``)."""
    start: float
    """Seconds from the start of the file (its ``INDEX 01``)."""
    end: float | None
    """Where the next track starts; None for the last track (the end of the file)."""


@dataclass(frozen=True)
class CueSheet:
    source: str
    """The ``.cue`` file, or ``FILE (embedded CUESHEET comment)`` / ``FILE (embedded CUESHEET block)``."""
    title: str | None
    performer: str | None
    tracks: tuple[CueTrack, ...]
    notes: tuple[str, ...] = field(default=())
    """What the reader has to say that does not stop it (another cue sheet naming the file, left out)."""


def cue_clock(seconds: float) -> str:
    """``mm:ss.ss``, as a cue sheet's times read."""
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:05.2f}"
