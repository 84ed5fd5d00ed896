"""Album images with cue sheets: the reader (`tagger.cuesheet`) and ``tagger show``'s cue tracks.

The album is generated here with known contents: three 8 s tones of different timbres (bass 110 Hz,
flute 1000 Hz, string 4000 Hz) in one FLAC, scanned with the band-listening fake analyser of
`library_fakes`, so each cue track's family is known.
"""

from __future__ import annotations


import numpy as np
import pytest

from conftest import tone_signal, write_audio
from library_fakes import FREQ
from tagger.cuesheet import CueSheetError, decode_cue, find_cue_sheet, may_have_cue_file, parse_cue_text


ALBUM_CUE = """REM GENRE Test
REM COMMENT "ExactAudioCopy v1.6"
PERFORMER "The Tones"
TITLE "Three Timbres"
FILE "{name}" WAVE
  TRACK 01 AUDIO
    TITLE "Low"
    PERFORMER "Bassist"
    INDEX 01 00:00:00
  TRACK 02 AUDIO
    TITLE "Middle"
    INDEX 00 00:07:50
    INDEX 01 00:08:00
  TRACK 03 AUDIO
    TITLE "High"
    INDEX 01 00:16:00
"""


def _album(path):
    return write_audio(path, np.concatenate([tone_signal([FREQ[f]], seconds=8.0) for f in ("bass", "flute", "string")]))


# --- the reader ---------------------------------------------------------------------------------


def test_a_cue_sheet_gives_each_track_its_number_title_performer_and_range():
    sheet = parse_cue_text(ALBUM_CUE.format(name="Album.wav"), source="Album.cue", audio_name="Album.flac")
    assert (sheet.title, sheet.performer) == ("Three Timbres", "The Tones")
    assert [(t.number, t.title, t.performer, t.start, t.end) for t in sheet.tracks] == [
        (1, "Low", "Bassist", 0.0, 8.0), (2, "Middle", "The Tones", 8.0, 16.0), (3, "High", "The Tones", 16.0, None)]  # fmt: skip
    # (a track without its own PERFORMER is the album's; it was None, shown as null by query --cue-tracks
    # though the sheet names the album's, found walking through the README)
    alone = parse_cue_text(ALBUM_CUE.format(name="Album.wav").replace('PERFORMER "The Tones"\n', ""), source="Album.cue")
    assert alone.performer is None and [t.performer for t in alone.tracks] == ["Bassist", None, None]


def test_frames_are_75_a_second():
    text = 'FILE "a.flac" WAVE\n TRACK 01 AUDIO\n  INDEX 01 00:00:00\n TRACK 02 AUDIO\n  INDEX 01 61:02:74\n'
    sheet = parse_cue_text(text, source="a.cue", audio_name="a.flac")
    assert sheet.tracks[1].start == pytest.approx(61 * 60 + 2 + 74 / 75)


@pytest.mark.parametrize("bom, encoding", [("\ufeff", "utf-8"), ("", "utf-8"), ("", "cp1252"), ("\ufeff", "utf-16-le")],
                         ids=["utf-8 with BOM", "utf-8", "cp1252", "utf-16 with BOM"])  # fmt: skip
def test_encodings(bom, encoding):
    text = bom + 'TITLE "Caf\u00e9 \u2013 \u00e9t\u00e9"\nFILE "a.flac" WAVE\n TRACK 01 AUDIO\n  INDEX 01 00:00:00\n'
    sheet = parse_cue_text(decode_cue(text.encode(encoding)), source="a.cue")
    assert sheet.title == "Caf\u00e9 \u2013 \u00e9t\u00e9" and sheet.tracks[0].start == 0.0


@pytest.mark.parametrize("stem, title, encoding", [("Альбом", "Песня", "cp1251"), ("ソナタ表", "第一楽章", "cp932"),
                                                  ("夜曲", "月光", "cp936")], ids=["cp1251", "shift-jis", "gbk"])  # fmt: skip
def test_a_cue_sheet_in_the_code_page_of_its_files_name(tmp_path, stem, title, encoding):
    """EAC writes a cue sheet in the system's code page: a Russian or Japanese one named no file at
    all when read as Windows-1252 (FILE "Àëüáîì.wav"), so the album image had no cue sheet, without a
    word. The code page whose reading names the file is the sheet's (表 ends in the byte of a backslash)."""
    flac = _album(tmp_path / f"{stem}.flac")
    text = ALBUM_CUE.format(name=f"C:\\rips\\{stem}.wav").replace('"Middle"', f'"{title}"').replace("\n", "\r\n")
    (tmp_path / f"{stem}.cue").write_bytes(text.encode(encoding))
    sheet = find_cue_sheet(flac)
    assert sheet is not None and [t.title for t in sheet.tracks] == ["Low", title, "High"]
    (tmp_path / f"{stem}.cue").rename(tmp_path / "rip.cue")  # (named otherwise: found by its FILE line alone)
    assert [t.title for t in find_cue_sheet(flac).tracks] == ["Low", title, "High"]


def test_latin1_bytes_windows_1252_lacks_are_read_as_latin1():
    assert decode_cue(b'TITLE "a\x81b\xe9"') == 'TITLE "a\x81b\u00e9"'


def test_only_the_tracks_of_the_files_own_file_block_and_a_gap_in_the_file_before():
    text = ('FILE "C:\\rips\\one.wav" WAVE\n TRACK 01 AUDIO\n  INDEX 01 00:00:00\n TRACK 02 AUDIO\n  INDEX 00 03:00:00\n'
            'FILE "two.wav" WAVE\n  INDEX 01 00:00:00\n TRACK 03 AUDIO\n  TITLE "x"\n  INDEX 01 02:00:00\n')  # fmt: skip
    assert [(t.number, t.start) for t in parse_cue_text(text, source="s.cue", audio_name="one.flac").tracks] == [(1, 0.0)]
    two = parse_cue_text(text, source="s.cue", audio_name="TWO.FLAC").tracks
    assert [(t.number, t.start, t.end) for t in two] == [(2, 0.0, 120.0), (3, 120.0, None)]


HIDDEN_CUE = """PERFORMER "The Tones"
FILE "Album.wav" WAVE
  TRACK 01 AUDIO
    TITLE "Low"
    INDEX 00 00:00:00
    INDEX 01 {start}
  TRACK 02 AUDIO
    TITLE "High"
    INDEX 01 00:16:00
"""


def test_the_audio_before_track_one_is_a_hidden_track_0():
    """The audio before track 1's INDEX 01 (a hidden song, as EAC rips one: INDEX 00 at 00:00:00,
    INDEX 01 later) belonged to no track: show, query --cue-tracks and predict left it out. It is
    track 0 where it holds a window (4 s), else left out (a pre-gap); the audio before the first track
    of a later FILE is the gap of a track of the file before, no hidden track."""
    sheet = parse_cue_text(HIDDEN_CUE.format(start="00:08:00"), source="a.cue", audio_name="Album.flac")
    assert [(t.number, t.title, t.performer, t.start, t.end, t.hidden) for t in sheet.tracks] == [
        (0, None, "The Tones", 0.0, 8.0, True), (1, "Low", "The Tones", 8.0, 16.0, False),
        (2, "High", "The Tones", 16.0, None, False)]  # fmt: skip
    no_index00 = parse_cue_text(HIDDEN_CUE.format(start="00:04:00").replace("    INDEX 00 00:00:00\n", ""), source="a.cue")
    assert [(t.number, t.start, t.end) for t in no_index00.tracks] == [(0, 0.0, 4.0), (1, 4.0, 16.0), (2, 16.0, None)]
    pregap = parse_cue_text(HIDDEN_CUE.format(start="00:03:74"), source="a.cue")
    assert [(t.number, t.start) for t in pregap.tracks] == [(1, 3 + 74 / 75), (2, 16.0)]
    two_files = ('FILE "one.wav" WAVE\n TRACK 01 AUDIO\n  INDEX 01 00:00:00\n TRACK 02 AUDIO\n  INDEX 01 01:00:00\n'
                 'FILE "two.wav" WAVE\n TRACK 03 AUDIO\n  INDEX 00 00:00:00\n  INDEX 01 00:06:00\n'
                 ' TRACK 04 AUDIO\n  INDEX 01 02:00:00\n')  # fmt: skip
    assert [t.number for t in parse_cue_text(two_files, source="s.cue", audio_name="two.flac").tracks] == [3, 4]
    one = parse_cue_text(two_files.replace("INDEX 01 00:00:00", "INDEX 01 00:05:00", 1), source="s.cue", audio_name="one.flac")
    assert [(t.number, t.start) for t in one.tracks] == [(0, 0.0), (1, 5.0), (2, 60.0)]


def test_the_audio_before_the_first_track_of_a_disc_named_in_its_folder_is_a_hidden_track_0(tmp_path):
    """A sheet one folder above the discs of an album (``FILE "CD1/Album.wav"``, ``FILE "CD2/Album.wav"``)
    gives each disc's image its own tracks, and the audio before a disc's first ``INDEX 01`` is that
    disc's hidden track 0, as it is the first disc's: it was CD2's gap of a track of the file before,
    which is another disc's image (in no track: a song there was never found, reviewing 595ced2 with
    bb81dcd). In a sheet beside the images (``one.wav``, ``two.wav``: sides of one rip) it stays left out."""
    cd1, cd2 = _album(tmp_path / "Album" / "CD1" / "Album.flac"), _album(tmp_path / "Album" / "CD2" / "Album.flac")
    (tmp_path / "Album" / "Album.cue").write_text(
        'FILE "CD1/Album.wav" WAVE\n TRACK 01 AUDIO\n  INDEX 01 00:00:00\n TRACK 02 AUDIO\n  INDEX 01 00:08:00\n'
        'FILE "CD2/Album.wav" WAVE\n TRACK 01 AUDIO\n  INDEX 00 00:00:00\n  INDEX 01 00:08:00\n'
        ' TRACK 02 AUDIO\n  INDEX 01 00:16:00\n', encoding="utf-8")  # fmt: skip
    assert [(t.number, t.start, t.hidden) for t in find_cue_sheet(cd1).tracks] == [(1, 0.0, False), (2, 8.0, False)]
    assert [(t.number, t.start, t.end, t.hidden) for t in find_cue_sheet(cd2).tracks] == [
        (0, 0.0, 8.0, True), (1, 8.0, 16.0, False), (2, 16.0, None, False)]  # fmt: skip


def test_a_hidden_track_0_in_a_cuesheet_block_and_a_sheet_of_one_track(tmp_path):
    """A CUESHEET metadata block's track 1 starting after 0 has a hidden track 0 as a .cue has; a
    sheet of one track and a hidden track 0 is no album image (a file of one track)."""
    import mutagen.flac

    flac = _album(tmp_path / "Album.flac")
    f = mutagen.flac.FLAC(flac)
    cs = mutagen.flac.CueSheet(None)
    cs.tracks = []
    for number, seconds in ((1, 0), (2, 16), (170, 24)):
        track = mutagen.flac.CueSheetTrack(number, seconds * 16_000)
        if number != 170:
            track.indexes.append(mutagen.flac.CueSheetTrackIndex(0, 0))
            track.indexes.append(mutagen.flac.CueSheetTrackIndex(1, 8 * 16_000 if number == 1 else 0))
        cs.tracks.append(track)
    f.metadata_blocks.append(cs)
    f.save()
    assert [(t.number, t.start, t.end, t.hidden) for t in find_cue_sheet(flac).tracks] == [
        (0, 0.0, 8.0, True), (1, 8.0, 16.0, False), (2, 16.0, None, False)]  # fmt: skip
    (tmp_path / "Album.cue").write_text(HIDDEN_CUE.format(start="00:08:00").split("  TRACK 02")[0], encoding="utf-8")
    assert find_cue_sheet(flac) is None


def test_tabs_and_line_breaks_as_editors_write_them():
    """A tab after the command word (TRACK\\t01) is a separator as a space is (it read as no TRACK line
    at all); a title holding a form feed or U+2028 is one title (`str.splitlines` cut it there, the
    rest read as a command), and CR, LF and CRLF each end a line."""
    text = ('FILE\t"a.flac"\tWAVE\r\n\tTRACK\t01\tAUDIO\r\n\t\tTITLE\t"One\x0cTwo\u2028Three"\r\n\t\tINDEX\t01\t00:00:00\r'
            '\tTRACK 02 AUDIO\n\t\tINDEX 01 00:01:00\n')  # fmt: skip
    sheet = parse_cue_text(text, source="a.cue", audio_name="a.flac")
    assert [(t.number, t.title, t.start) for t in sheet.tracks] == [(1, "One\x0cTwo\u2028Three", 0.0), (2, None, 1.0)]


@pytest.mark.parametrize(
    "body, reason",
    [
        (" TRACK 01 AUDIO\n  INDEX 01 00:61:00\n", "line 3: '00:61:00' is not a time"),
        (" TRACK 01 AUDIO\n  INDEX 01 00:00:75\n", "line 3: '00:00:75' is not a time"),
        (" TRACK 01 AUDIO\n  INDEX 01 1.5\n", "line 3: '1.5' is not a time"),
        (" TRACK 01 AUDIO\n  TITLE \"a\"\n TRACK 02 AUDIO\n  INDEX 01 00:01:00\n", "line 2: track 01 has no INDEX 01"),
        (" TRACK 02 AUDIO\n  INDEX 01 00:00:00\n TRACK 01 AUDIO\n  INDEX 01 00:01:00\n", "line 4: track 01 follows track 02"),
        (" TRACK 01 AUDIO\n  INDEX 01 00:05:00\n TRACK 02 AUDIO\n  INDEX 01 00:01:00\n",
         "line 4: track 02 starts at 00:01.00, not after track 01 (00:05.00)"),
        (" TRACK AUDIO\n", "line 2: TRACK without a track number ('AUDIO' is none)"),
        (" TRACK \u00b2 AUDIO\n  INDEX 01 00:00:00\n", "line 2: TRACK without a track number ('\u00b2' is none)"),
        (" TRACK 01 AUDIO\n  INDEX \u00b9 00:00:00\n", "line 3: INDEX needs a number and a time"),
    ],
)
def test_a_bad_cue_sheet_says_where_and_why(body, reason):
    with pytest.raises(CueSheetError) as e:
        parse_cue_text('FILE "a.flac" WAVE\n' + body, source="/m/a.cue", audio_name="a.flac")
    assert str(e.value).startswith(f"/m/a.cue: {reason}"), str(e.value)


def test_the_cue_beside_the_file_that_names_it(tmp_path):
    flac = _album(tmp_path / "Album.flac")
    (tmp_path / "Album.cue").write_text(ALBUM_CUE.format(name="album.WAV"), encoding="cp1252")
    (tmp_path / "Other.cue").write_text(ALBUM_CUE.format(name="Other.flac"), encoding="utf-8")
    sheet = find_cue_sheet(flac)
    assert sheet.source == str(tmp_path / "Album.cue") and len(sheet.tracks) == 3 and not sheet.notes
    assert find_cue_sheet(tmp_path / "Another.flac") is None  # (no cue sheet names it)


def test_a_cue_of_another_name_counts_when_it_names_the_file_and_two_say_so(tmp_path):
    flac = _album(tmp_path / "Album.flac")
    (tmp_path / "b rip.cue").write_text(ALBUM_CUE.format(name="Album.flac"), encoding="utf-8")
    (tmp_path / "a rip.cue").write_text(ALBUM_CUE.format(name="Album.wav"), encoding="utf-8")
    sheet = find_cue_sheet(flac)
    assert sheet.source == str(tmp_path / "b rip.cue")  # (names the file exactly: before a name of another extension)
    assert sheet.notes == (f"1 other cue sheet(s) name this file too, not read: {tmp_path / 'a rip.cue'}",)


def test_a_cue_named_as_the_file_whose_file_line_names_a_file_not_there(tmp_path):
    """An image and its cue sheet renamed together after the rip (CDImage.wav -> Album.flac, CDImage.cue
    -> Album.cue; the FILE line not rewritten, as a player's or a tagger's rename leaves it): Album.cue
    named no file of the folder, so the album had no cue sheet, without a word. It is the file's, with
    a note, where nothing in the folder has the name it gives; where something has, it is that file's."""
    flac = _album(tmp_path / "Album.flac")
    (tmp_path / "Album.cue").write_text(ALBUM_CUE.format(name="CDImage.wav"), encoding="utf-8")
    (tmp_path / "Album.log").write_text("EAC extraction logfile\n", encoding="utf-8")
    sheet = find_cue_sheet(flac)
    assert sheet.source == str(tmp_path / "Album.cue") and [t.title for t in sheet.tracks] == ["Low", "Middle", "High"]
    assert sheet.notes == ("its FILE line names 'CDImage.wav', which is not in the folder: read as this file's "
                           "(renamed since the rip?)",)  # fmt: skip
    _album(tmp_path / "CDImage.flac")  # (the file it names is there: its cue sheet, not Album.flac's)
    assert find_cue_sheet(flac) is None and len(find_cue_sheet(tmp_path / "CDImage.flac").tracks) == 3


def test_a_cue_sheet_one_folder_up_naming_the_file_in_its_folder(tmp_path, monkeypatch):
    """One sheet for the discs of an album, ``Album/Album.cue`` with ``FILE "CD1\\Album.wav"`` (a
    Windows rip) and ``FILE "CD2/Album.wav"``, for ``Album/CD1/Album.flac`` and ``Album/CD2/Album.flac``:
    the images had no cue sheet, without a word (only the file's own folder was looked in). Each image
    gets the tracks of its own FILE block; a sheet two folders up, or one naming the file in another
    folder, is not its."""
    cd1, cd2 = _album(tmp_path / "Album" / "CD1" / "Album.flac"), _album(tmp_path / "Album" / "CD2" / "Album.flac")
    text = (ALBUM_CUE.format(name="CD1\\Album.wav")
            + 'FILE "CD2/Album.wav" WAVE\n  TRACK 04 AUDIO\n    TITLE "Four"\n    INDEX 01 00:00:00\n'
            '  TRACK 05 AUDIO\n    TITLE "Five"\n    INDEX 01 00:08:00\n')  # fmt: skip
    cue = tmp_path / "Album" / "Album.cue"
    cue.write_text(text, encoding="utf-8")
    sheet = find_cue_sheet(cd1)
    assert sheet.source == str(cue) and sheet.title == "Three Timbres" and not sheet.notes
    assert [(t.number, t.title, t.start, t.end) for t in sheet.tracks] == [
        (1, "Low", 0.0, 8.0), (2, "Middle", 8.0, 16.0), (3, "High", 16.0, None)]  # fmt: skip
    assert [(t.number, t.title, t.start, t.end) for t in find_cue_sheet(cd2).tracks] == [(4, "Four", 0.0, 8.0), (5, "Five", 8.0, None)]
    monkeypatch.chdir(cd2.parent)  # (a name given without its folder: the folder above is the current one's)
    assert [t.number for t in find_cue_sheet("Album.flac").tracks] == [4, 5]
    assert may_have_cue_file(cd1, folders={}) and not may_have_cue_file(tmp_path / "Album" / "CD3" / "Album.flac", folders={})
    cue.write_text(text.replace("CD1\\", "Other\\CD1\\").replace("CD2/", "./CD2/"), encoding="utf-8")
    assert find_cue_sheet(cd1) is None and len(find_cue_sheet(cd2).tracks) == 2  # (Other\CD1: a folder beside Album/CD1)
    cue.rename(tmp_path / "Album.cue")  # (two folders up: not looked for)
    (tmp_path / "Album.cue").write_text(text, encoding="utf-8")
    assert find_cue_sheet(cd1) is None and find_cue_sheet(cd2) is None


def test_a_cue_of_one_track_is_no_album_image(tmp_path):
    flac = _album(tmp_path / "01.flac")
    (tmp_path / "01.cue").write_text('FILE "01.flac" WAVE\n TRACK 01 AUDIO\n  INDEX 01 00:00:00\n', encoding="utf-8")
    assert find_cue_sheet(flac) is None


def test_an_unreadable_cue_named_as_the_file_is_an_error_others_are_passed_over(tmp_path):
    flac = _album(tmp_path / "Album.flac")
    (tmp_path / "notes.cue").write_bytes(b"\x00\x01binary")
    assert find_cue_sheet(flac) is None
    (tmp_path / "Album.cue").write_bytes(b"\x00\x01binary")
    with pytest.raises(CueSheetError, match=r"Album\.cue: holds NUL bytes: not a text file"):
        find_cue_sheet(flac)
    (tmp_path / "Album.cue").write_text("just some notes\n", encoding="utf-8")
    with pytest.raises(CueSheetError, match=r"Album\.cue: no TRACK line: not a cue sheet"):
        find_cue_sheet(flac)


def test_embedded_cuesheet_comment_and_block(tmp_path):
    import mutagen.flac

    flac = _album(tmp_path / "Album.flac")
    before = flac.read_bytes()
    assert find_cue_sheet(flac) is None
    f = mutagen.flac.FLAC(flac)
    cs = mutagen.flac.CueSheet(None)
    cs.tracks = []
    for number, seconds in ((1, 0), (2, 8), (3, 16), (170, 24)):
        track = mutagen.flac.CueSheetTrack(number, seconds * 16_000)
        if number != 170:
            track.indexes.append(mutagen.flac.CueSheetTrackIndex(1, 0))
        cs.tracks.append(track)
    f.metadata_blocks.append(cs)
    f.save()
    sheet = find_cue_sheet(flac)
    assert sheet.source == f"{flac} (embedded CUESHEET block)"
    assert [(t.number, t.title, t.start, t.end) for t in sheet.tracks] == [(1, None, 0.0, 8.0), (2, None, 8.0, 16.0), (3, None, 16.0, None)]
    f = mutagen.flac.FLAC(flac)  # the comment's text, which has titles, comes first
    f["CUESHEET"] = ALBUM_CUE.format(name="CDImage.wav")
    f.save()
    sheet = find_cue_sheet(flac)
    assert sheet.source == f"{flac} (embedded CUESHEET comment)" and [t.title for t in sheet.tracks] == ["Low", "Middle", "High"]
    after = flac.read_bytes()
    assert find_cue_sheet(flac) and flac.read_bytes() == after != before  # (read, never written)


def test_an_apev2_cuesheet_item_before_an_id3v1_tag(tmp_path):
    """The APEv2 tag's ``Cuesheet`` item (any case) is read where an ID3v1 tag follows it; a file of
    another extension, or an APEv2 tag without it, has no embedded cue sheet."""
    import mutagen.apev2

    ape = tmp_path / "Album.ape"
    ape.write_bytes(b"MAC " + bytes(1000))
    tag = mutagen.apev2.APEv2()
    tag["Artist"], tag["CUESHEET"] = "x", ALBUM_CUE.format(name="CDImage.wav")
    tag.save(ape)
    with open(ape, "ab") as f:
        f.write(b"TAG" + b" " * 125)
    sheet = find_cue_sheet(ape)
    assert sheet.source == f"{ape} (embedded APEv2 Cuesheet)" and [t.title for t in sheet.tracks] == ["Low", "Middle", "High"]
    assert find_cue_sheet(ape.rename(tmp_path / "Album.mp3")) is None
    other = tmp_path / "Other.wv"
    other.write_bytes(b"wvpk" + bytes(100))
    tag = mutagen.apev2.APEv2()
    tag["Artist"] = "x"
    tag.save(other)
    assert find_cue_sheet(other) is None


def _id3v2(*, footer: bool) -> bytes:
    """An ID3v2.4 tag (a TIT2 frame), with its footer where ``footer``."""

    def syncsafe(n: int) -> bytes:
        return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])

    frames = b"TIT2" + syncsafe(3) + b"\0\0" + b"\x03hi"
    flags = 0x10 if footer else 0
    tag = b"ID3\x04\x00" + bytes([flags]) + syncsafe(len(frames)) + frames
    return tag + (b"3DI\x04\x00" + bytes([flags]) + syncsafe(len(frames)) if footer else b"")


@pytest.mark.parametrize("footer, tags", [(False, 1), (True, 1), (False, 2)],
                         ids=["id3v2", "id3v2 with footer", "two id3v2 tags back to back"])  # fmt: skip
def test_an_embedded_cue_sheet_behind_an_id3v2_tag(tmp_path, footer, tags):
    """A FLAC with an ID3v2 tag in front of its ``fLaC`` (some taggers write one to any file; mutagen
    and ffmpeg read past it) had no embedded cue sheet, without a word: the reader took it for no FLAC.
    So had one with two tags back to back (another program's prepended to the first), which ffmpeg
    and tagger's probe and tag storage read past: the reader read past the first alone (found
    reviewing 07d1949 against `tagger.containers`)."""
    import mutagen.flac

    flac = _album(tmp_path / "Album.flac")
    f = mutagen.flac.FLAC(flac)
    f["CUESHEET"] = ALBUM_CUE.format(name="CDImage.wav")
    f.save()
    flac.write_bytes(_id3v2(footer=footer) * tags + flac.read_bytes())
    if not footer and tags == 1:  # (mutagen reads such a FLAC, its tag not counting a footer)
        assert "Low" in mutagen.flac.FLAC(flac)["CUESHEET"][0]
    sheet = find_cue_sheet(flac)
    assert sheet.source == f"{flac} (embedded CUESHEET comment)" and [t.title for t in sheet.tracks] == ["Low", "Middle", "High"]
    flac.write_bytes(b"ID3\x04\x00\x00\x00\x00\x80\x00" + flac.read_bytes()[10:])  # (a size not syncsafe, read as tagger reads one: no fLaC after it)
    assert find_cue_sheet(flac) is None
