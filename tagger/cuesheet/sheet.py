"""What a cue sheet gives (`tagger.cuesheet`): its tracks (`CueSheet`, `CueTrack`), the error of one
that cannot be used (`CueSheetError`), and its times (`FRAMES_PER_SECOND`, `cue_clock`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from tagger.constants import WINDOW_SECONDS
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
    hidden: bool = False
    """The audio before the first track's ``INDEX 01`` (`with_hidden_track`): number 0, no title."""


@dataclass(frozen=True)
class CueSheet:
    source: str
    """The ``.cue`` file, or ``FILE (embedded CUESHEET comment)`` / ``FILE (embedded CUESHEET block)``."""
    title: str | None
    performer: str | None
    tracks: tuple[CueTrack, ...]
    notes: tuple[str, ...] = field(default=())
    """What the reader has to say that does not stop it (another cue sheet naming the file, left out)."""


HIDDEN_TRACK_SECONDS = WINDOW_SECONDS
"""The shortest audio before the first track that `with_hidden_track` lists as a track: one analysis
window (`tagger.constants.WINDOW_SECONDS`); a shorter one is a pre-gap of silence or a click."""


def with_hidden_track(tracks: tuple[CueTrack, ...], *, performer: str | None = None) -> tuple[CueTrack, ...]:
    """``tracks``, which start at the sheet's first track (or a disc's first: `_parse`), with the audio before its ``INDEX 01`` (a
    hidden track one, the "HTOA" EAC rips: ``INDEX 00 00:00:00`` and ``INDEX 01`` later, or an
    ``INDEX 01`` after 00:00:00) first as track 0 (`CueTrack.hidden`, the album's ``performer``) when
    it is `HIDDEN_TRACK_SECONDS` or longer. It belongs to no track of the sheet (the first starts at
    its ``INDEX 01``): left out, a song there would be nowhere; given to the first, it would count as
    that track's."""
    if not tracks or tracks[0].start < HIDDEN_TRACK_SECONDS:
        return tracks
    return (CueTrack(0, None, performer, 0.0, tracks[0].start, hidden=True), *tracks)


def cue_clock(seconds: float) -> str:
    """``mm:ss.ss``, as a cue sheet's times read."""
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:05.2f}"
