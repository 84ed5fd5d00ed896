"""The cue sheet of an album image: one audio file holding a whole CD (``Album.flac``) and the
cue sheet that says where its tracks start (EAC, foobar2000, XLD).

`find_cue_sheet` looks, in this order, for

- a ``.cue`` file in the audio file's folder whose ``FILE`` line names it: the same name in any case,
  or the same name with another extension (``FILE "Album.wav" WAVE`` for the FLAC the WAV became);
  of several, the one named as the audio file is (``Album.cue``), then the first by name;
- a ``.cue`` file in the folder above whose ``FILE`` line names the audio file in its folder
  (``FILE "CD1/Album.flac"`` or ``"CD1\\Album.flac"`` in ``Album/Album.cue`` for ``Album/CD1/Album.flac``);
  no higher;
- the ``.cue`` named as the audio file whose one ``FILE`` line names a file of which the folder has
  nothing of that name (``FILE "CDImage.wav"``: the image and its cue sheet renamed since the rip);
- the cue sheet embedded in a FLAC file: a ``CUESHEET`` Vorbis comment (the text of a ``.cue``), else
  a FLAC CUESHEET metadata block (track starts and numbers; no titles); or the ``Cuesheet`` item of
  the APEv2 tag of a Monkey's Audio, WavPack, TTA, TAK or Musepack file (`APE_TAG_EXTENSIONS`).

Each track starts at its ``INDEX 01`` (mm:ss:ff, 75 frames a second) and ends where the next one
starts (the gap before a track, its ``INDEX 00``, belongs to the track before, as EAC's "gaps
appended to previous track" and most splitters have it); the last one ends at the end of the file.
The audio before the first track's ``INDEX 01`` (a hidden track one) is track 0 (`CueTrack.hidden`)
when it holds a window (`HIDDEN_TRACK_SECONDS`), else left out.
Text is read as UTF-8 (with or without a byte order mark), UTF-16 with a byte order mark, else in the
Windows code page whose reading of a ``FILE`` line names the audio file (`OTHER_CODE_PAGES`), else as
Windows-1252 (Latin-1 where that has no letter for a byte).

The reader only reads: it writes neither the audio file nor the cue sheet. It imports nothing
beyond the standard library, so that ``tagger show`` stays fast (the FLAC metadata is read here,
without mutagen). A cue sheet that cannot be used raises `CueSheetError` naming it and the reason;
callers report it and treat the file as one track.

The package: `tagger.cuesheet.finding` (`find_cue_sheet`: the ``.cue`` files of the folder, the one
that names the file), `tagger.cuesheet.embedded` (a FLAC's CUESHEET comment or block, an APEv2
``Cuesheet`` item), `tagger.cuesheet.reading` (a ``.cue`` read, its encodings),
`tagger.cuesheet.parsing` (its lines parsed into tracks) and `tagger.cuesheet.sheet` (`CueSheet`,
`CueTrack`, `CueSheetError`, `cue_clock`). Everything callers use is importable from here.
"""

from __future__ import annotations

from tagger.cuesheet.embedded import APE_TAG_EXTENSIONS, MAX_FLAC_METADATA, may_embed_cue_sheet
from tagger.cuesheet.finding import find_cue_sheet, may_have_cue_file
from tagger.cuesheet.parsing import parse_cue_text
from tagger.cuesheet.reading import MAX_CUE_BYTES, OTHER_CODE_PAGES, decode_cue
from tagger.cuesheet.sheet import FRAMES_PER_SECOND, HIDDEN_TRACK_SECONDS, CueSheet, CueSheetError, CueTrack, cue_clock

__all__ = [
    "APE_TAG_EXTENSIONS",
    "FRAMES_PER_SECOND",
    "HIDDEN_TRACK_SECONDS",
    "MAX_CUE_BYTES",
    "MAX_FLAC_METADATA",
    "OTHER_CODE_PAGES",
    "CueSheet",
    "CueSheetError",
    "CueTrack",
    "cue_clock",
    "decode_cue",
    "find_cue_sheet",
    "may_embed_cue_sheet",
    "may_have_cue_file",
    "parse_cue_text",
]
