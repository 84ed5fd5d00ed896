"""WavPack, Monkey's Audio, Musepack and TAK files whose only tag is an ID3v2 tag in front of the
stream (some rippers and taggers write one; the decoders skip it).

ffmpeg (ffprobe, and the players built on it) shows that tag only while the file's APEv2 tag shows
nothing: the APEv2 tag a write added held tagger's fields alone, and the file's title, artist and
album went from ffprobe's view (nothing deleted, but hidden). The APEv2 tag a write adds now carries
the ID3v2 tag's fields under their APEv2 names; `untag` removes them with tagger's own."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from tak_files import tak_file
from test_tags_containers import _APE_HEADERS, _ID3V1, _ape_tag, _decoded_md5, _ffmpeg

from tagger import tags
from tagger.errors import TagWriteError

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg")

WRITE = dict(instruments=["guitar", "bass"], model_version="ova-test-1")

SHOWN_AS = {"date": "year", "album_artist": "album artist", "tbpm": "bpm"}
"""ffprobe's names for an ID3v2 tag's fields -> its names for the APEv2 items that carry them under their
APEv2 names (others: the same)."""

COPIED = {
    "Title": ["Blue Song"], "Artist": ["Ann Example", "Bob Example"], "Album": ["Kind of Test"],
    "Album Artist": ["Various"], "Track": ["3/12"], "Disc": ["1/2"], "Year": ["1999-05-01"], "Genre": ["Jazz"],
    "Comment": ["a comment"], "Composer": ["Cy Composer"], "REPLAYGAIN_TRACK_GAIN": ["-3.10 dB"],
    "REPLAYGAIN_TRACK_PEAK": ["0.912345"], "MusicBrainz Album Id": ["1b2c3d4e-0000-4000-8000-000000000001"],
}  # fmt: skip
"""The APEv2 items a write carries of `_front_tag`'s fields."""


def _front_tag(*extra, v23: bool = False) -> bytes:
    """An ID3v2.4 tag (v2.3 with ``v23``) as a ripper writes one: text fields, ReplayGain, a MusicBrainz
    id, a cover, and ``extra`` frames."""
    from mutagen.id3 import (APIC, COMM, ID3, TALB, TCOM, TCON, TDRC, TIT2, TPE1, TPE2, TPOS, TRCK, TXXX,
                             WOAR)  # fmt: skip

    tag = ID3()
    for frame in (TIT2(text="Blue Song"), TPE1(text=["Ann Example", "Bob Example"]), TALB(text="Kind of Test"),
                  TPE2(text="Various"), TRCK(text="3/12"), TPOS(text="1/2"), TDRC(text="1999-05-01"),
                  TCON(text="Jazz"), COMM(lang="eng", desc="", text="a comment"), TCOM(text="Cy Composer"),
                  TXXX(desc="REPLAYGAIN_TRACK_GAIN", text="-3.10 dB"),
                  TXXX(desc="REPLAYGAIN_TRACK_PEAK", text="0.912345"),
                  TXXX(desc="MusicBrainz Album Id", text="1b2c3d4e-0000-4000-8000-000000000001"),
                  APIC(mime="image/png", type=3, desc="", data=b"\x89PNG\r\n\x1a\n" + bytes(range(256))),
                  WOAR(url="https://example.org/ann"), *extra):  # fmt: skip
        frame.encoding = 1 if v23 else 3
        tag.add(frame)
    buf = io.BytesIO()
    tag.save(buf, v2_version=3 if v23 else 4, v23_sep="/", padding=lambda _info: 64)
    return buf.getvalue()


def _stream(tmp_path: Path, ext: str) -> bytes:
    """The bytes of a file of the format ``ext`` without tags (WavPack and TAK encoded, Monkey's Audio
    and Musepack as headers mutagen reads with bytes standing for the audio)."""
    if ext == "wv":
        return _ffmpeg(tmp_path / "plain.wv", "-c:a", "wavpack", "-fflags", "+bitexact").read_bytes()
    if ext == "tak":
        t = np.arange(22_050) / 22_050
        x = np.round(16383 * np.sin(2 * np.pi * 110.0 * t)).astype(np.int16)
        return tak_file(tmp_path / "plain.tak", np.stack([x, x], axis=1), 22_050).read_bytes()
    return _APE_HEADERS[ext] + bytes(range(256)) * 16


def _probe(path: Path) -> dict[str, str]:
    """ffprobe's fields of the file, but tagger's, named in lower case as an APEv2 tag names them."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    shown = {k.lower(): v for k, v in json.loads(out).get("format", {}).get("tags", {}).items()}
    return {SHOWN_AS.get(k, k): v for k, v in shown.items() if not k.startswith("instruments")}


def _ape_items(path: Path) -> dict[str, list[str]]:
    from mutagen.apev2 import APEv2

    return {key: list(value) for key, value in APEv2(str(path)).items()}


@pytest.mark.parametrize("ext", ["wv", "tak", "ape", "mpc"])
def test_the_apev2_tag_a_write_adds_carries_the_fields_of_the_id3v2_tag_in_front(tmp_path, ext):
    """ffprobe showed the ID3v2 tag's title, artist, album...; after a write it showed tagger's fields
    alone (ffmpeg discards an ID3v2 tag once the APEv2 tag shows anything). The APEv2 tag carries
    them now: ffprobe shows every field it showed, TagLib (which reads no ID3v2 tag in these files)
    shows them too, the ID3v2 tag (its cover and URL included) and the audio byte for byte."""
    song = tmp_path / f"song.{ext}"
    song.write_bytes(_front_tag() + _stream(tmp_path, ext))
    original = song.read_bytes()
    before = _probe(song) if ext in ("wv", "tak") else None
    if before is not None:
        assert before["title"] == "Blue Song" and before["year"] == "1999-05-01"

    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data.startswith(original) and data[len(original) : len(original) + 8] == b"APETAGEX"
    items = _ape_items(song)
    assert {k: v for k, v in items.items() if not k.startswith("INSTRUMENTS")} == COPIED
    assert items["INSTRUMENTS"] == ["bass", "guitar"] and tags.read_instruments(song).instruments == ["bass", "guitar"]
    if before is not None:
        after = _probe(song)
        assert after == before  # (ffprobe shows the first of several values, then and now)
        assert _decoded_md5(song) == _decoded_md5(tmp_path / f"plain.{ext}")
    if ext == "wv":
        import taglib

        with taglib.File(str(song)) as f:
            shown = dict(f.tags)
        assert shown["TITLE"] == ["Blue Song"] and shown["ARTIST"] == ["Ann Example", "Bob Example"]
        assert shown["DATE"] == ["1999-05-01"] and shown["ALBUMARTIST"] == ["Various"]
        assert shown["TRACKNUMBER"] == ["3/12"] and shown["REPLAYGAIN_TRACK_GAIN"] == ["-3.10 dB"]

    # a second write of the same values changes nothing; of others, tagger's fields alone
    assert not tags.write_instruments(song, **WRITE).written
    assert tags.write_instruments(song, instruments=["vocal"], model_version="ova-test-2").written
    again = _ape_items(song)
    assert {k: v for k, v in again.items() if not k.startswith("INSTRUMENTS")} == COPIED
    assert again["INSTRUMENTS"] == ["vocal"] and song.read_bytes().startswith(original)

    assert tags.remove_instruments(song).written
    assert song.read_bytes() == original


def test_an_id3v23_tag_in_front_is_carried_as_ffmpeg_shows_it(tmp_path):
    """An ID3v2.3 tag (its date TYER and TDAT frames, several artists joined by "/", a genre number) is
    carried as ffprobe showed it: the date whole, the genre by its name."""
    from mutagen.id3 import TCON

    song = tmp_path / "song.wv"
    song.write_bytes(_front_tag(TCON(text="(17)"), v23=True) + _stream(tmp_path, "wv"))
    original = song.read_bytes()
    before = _probe(song)
    assert (before["year"], before["genre"]) == ("1999-05-01", "Rock")
    assert tags.write_instruments(song, **WRITE).written
    assert _probe(song) == before and song.read_bytes().startswith(original)
    assert _ape_items(song)["Genre"] == ["Rock"]
    assert tags.remove_instruments(song).written and song.read_bytes() == original



def test_an_id3v22_tags_frames_keep_the_names_ffmpeg_shows_them_by(tmp_path):
    """ffmpeg names an ID3v2.2 tag's frames without a name of its own by their v2.2 ids (``TLE``,
    ``TT1``, ``TOR``) and shows no v2.2 lyrics (``ULT``); mutagen reads them by their v2.3 ids. The
    copies were named by those (ffprobe then showing ``TLEN``, ``grouping``, ``TORY`` and lyrics it had
    not shown); they keep ffprobe's names now, and the lyrics stay in the ID3v2 tag alone."""

    def frame(fid: str, text: bytes) -> bytes:  # (a v2.2 frame: a 3-byte id and a 3-byte size)
        return fid.encode() + len(text).to_bytes(3, "big") + text

    body = b"".join([frame("TT2", b"\0Blue Song"), frame("TP1", b"\0Ann Example"), frame("TLE", b"\x00183000"),
                     frame("TT1", b"\0Slow ones"), frame("TOR", b"\x001970"), frame("ULT", b"\0eng\0la la la")])
    song = tmp_path / "song.wv"
    song.write_bytes(b"ID3\x02\x00\x00" + len(body).to_bytes(4, "big") + body + _stream(tmp_path, "wv"))  # (< 128)
    original = song.read_bytes()
    before = _probe(song)
    assert before == {"title": "Blue Song", "artist": "Ann Example", "tle": "183000", "tt1": "Slow ones", "tor": "1970"}
    assert tags.write_instruments(song, **WRITE).written
    assert _probe(song) == before and song.read_bytes().startswith(original)
    assert {k: v for k, v in _ape_items(song).items() if not k.startswith("INSTRUMENTS")} == {
        "Title": ["Blue Song"], "Artist": ["Ann Example"], "TLE": ["183000"], "TT1": ["Slow ones"], "TOR": ["1970"]}
    assert tags.remove_instruments(song).written and song.read_bytes() == original


@pytest.mark.parametrize("version, frames", [
    (3, {"TCON": "(RX)", "TYER": "1999", "TDAT": "0105", "TIME": "1230"}),  # (was: Remix, 12:30:00)
    (3, {"TCON": "(40)", "TYER": "99", "TDAT": "0105"}),  # (was: Alt. Rock, the year and day gone)
    (3, {"TCON": "17abc", "TYER": "1999", "TIME": "1230"}),  # (was: 17abc, the time gone)
    (4, {"TCON": "(200)"}),  # (was: Unknown)
])  # fmt: skip
def test_a_genre_and_a_date_are_carried_as_ffmpeg_shows_them(tmp_path, version, frames):
    """ffmpeg reads a genre number as C's sscanf reads "(%d)" or "%d", from 0 to 191, by its own names
    (``AlternRock``, where mutagen says ``Alt. Rock``), and anything else as it is (``(RX)``, ``(200)``,
    which mutagen reads as ``Remix`` and ``Unknown``); it merges an ID3v2.3 ``TYER``, ``TDAT`` and
    ``TIME`` of 4 digits each into ``1999-05-01 12:30`` (mutagen: ``12:30:00``) and shows those it does not
    merge by their ids (mutagen drops them). The copies showed mutagen's values, and lost those frames
    from ffprobe's view; ffprobe shows the same after a write now."""

    def frame(fid: str, text: str) -> bytes:  # (ISO-8859-1 text, the size as v2.3 and, below 128, v2.4 have it)
        return fid.encode() + (len(text) + 1).to_bytes(4, "big") + b"\0\0\0" + text.encode("latin-1")

    body = frame("TIT2", "Blue Song") + b"".join(frame(fid, text) for fid, text in frames.items())
    song = tmp_path / "song.wv"
    song.write_bytes(b"ID3" + bytes([version, 0, 0]) + len(body).to_bytes(4, "big") + body + _stream(tmp_path, "wv"))
    original = song.read_bytes()
    before = _probe(song)
    assert before["title"] == "Blue Song" and "genre" in before
    assert tags.write_instruments(song, **WRITE).written
    assert _probe(song) == before and song.read_bytes().startswith(original)
    assert tags.remove_instruments(song).written and song.read_bytes() == original


def test_an_id3v1_tag_after_the_stream_is_kept_and_one_holding_other_values_still_refused(tmp_path):
    """An ID3v1 tag without fields (a tagger's blank one) stays at the end, after the new APEv2 tag,
    byte for byte; one holding other values than the ID3v2 tag is still refused as before (TagLib shows
    it, not the ID3v2 tag, while the APEv2 tag is empty: the copies would hide them), the file unchanged."""
    blank = b"TAG" + bytes(124) + b"\xff"
    song = tmp_path / "song.wv"
    song.write_bytes(_front_tag() + _stream(tmp_path, "wv") + blank)
    original = song.read_bytes()
    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data.startswith(original[:-128]) and data.endswith(blank)
    assert {k: v for k, v in _ape_items(song).items() if not k.startswith("INSTRUMENTS")} == COPIED
    assert _probe(song)["title"] == "Blue Song"
    assert tags.remove_instruments(song).written and song.read_bytes() == original

    song.write_bytes(_front_tag() + _stream(tmp_path, "wv") + _ID3V1)  # (its title "Blue", its artist "Ann")
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"an ID3v1 tag at its end holds its fields \(TCON, TIT2, TPE1\)"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def test_an_id3v1_genre_that_ffmpeg_names_otherwise_than_mutagen_is_carried(tmp_path):
    """The copies' genre is ffmpeg's name of a number (``(40)``: ``AlternRock``), where mutagen reads the
    ID3v1 tag's genre 40 as ``Alt. Rock``: the ID3v1 tag written of such an ID3v2 tag was taken for one
    holding a genre the copies do not carry, and the file refused; it is tagged, its ID3v1 tag kept."""
    from mutagen.id3 import ID3, TCON, MakeID3v1

    front = _front_tag(TCON(text="(40)"), v23=True)
    id3v1 = MakeID3v1(ID3(io.BytesIO(front)))
    assert id3v1[127] == 40
    song = tmp_path / "song.wv"
    song.write_bytes(front + _stream(tmp_path, "wv") + id3v1)
    original = song.read_bytes()
    assert tags.write_instruments(song, **WRITE).written
    assert song.read_bytes().endswith(id3v1) and _ape_items(song)["Genre"] == ["AlternRock"]
    assert tags.remove_instruments(song).written and song.read_bytes() == original


def test_an_id3v1_tag_holding_the_id3v2_tags_fields_is_kept_and_they_are_shown_alike(tmp_path):
    """A tagger that writes both tags writes the ID3v2 tag's fields into the ID3v1 tag too (each cut at
    its 30 bytes, the first artist, the track number alone, the year). ffmpeg and TagLib show the ID3v1
    tag of such a file, not the ID3v2 one. It was refused (TagLib would have shown tagger's fields
    alone); the copies of the ID3v2 tag carry every ID3v1 field, so it is tagged: ffprobe shows the
    ID3v1 tag as before (ffmpeg reads no APEv2 tag in front of an ID3v1 tag), TagLib the copies, which
    hold every value it showed, whole; the ID3v1 tag stays at the end, byte for byte."""
    import taglib
    from mutagen.id3 import ID3, TIT2, MakeID3v1

    front = _front_tag(TIT2(text="Blue Song, the Long Version of It"))
    id3v1 = MakeID3v1(ID3(io.BytesIO(front)))
    song = tmp_path / "song.wv"
    song.write_bytes(front + _stream(tmp_path, "wv") + id3v1)
    original = song.read_bytes()
    before = _probe(song)
    with taglib.File(str(song)) as f:
        assert f.tags["TITLE"] == ["Blue Song, the Long Version of"] and f.tags["ARTIST"] == ["Ann Example"]

    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data.startswith(original[:-128]) and data.endswith(id3v1)
    assert _probe(song) == before
    with taglib.File(str(song)) as f:
        shown = dict(f.tags)
    assert shown["TITLE"] == ["Blue Song, the Long Version of It"] and shown["ARTIST"] == ["Ann Example", "Bob Example"]
    assert (shown["ALBUM"], shown["DATE"], shown["TRACKNUMBER"], shown["GENRE"]) == (
        ["Kind of Test"], ["1999-05-01"], ["3/12"], ["Jazz"])  # fmt: skip
    assert tags.remove_instruments(song).written and song.read_bytes() == original


def _ripper_frames():
    """The frames the ID3v2 writers a user meets put in besides `_front_tag`'s (EAC, foobar2000 and
    Mp3tag: TENC, TSSE, TLEN, COMM with a description; iTunes: TCMP, iTunNORM; Windows Media Player:
    PRIV, POPM; MusicBrainz Picard: TSOP, TSO2, TSOA, TMED, UFID; ffmpeg: TENC, TSSE), all of them."""
    from mutagen.id3 import (COMM, POPM, PRIV, TBPM, TCMP, TCOP, TDOR, TENC, TIPL, TIT1, TKEY, TLEN, TMED, TOPE,
                             TPUB, TSO2, TSOA, TSOP, TSSE, UFID, USLT, WXXX)  # fmt: skip

    return (TENC(text="Exact Audio Copy   (Secure mode)"), TSSE(text="Lavf59.27.100"), TLEN(text="1000"),
            TPUB(text="Example Records"), TSOP(text="Example, Ann"), TSO2(text="Various"), TSOA(text="Kind of Test"),
            TMED(text="CD"), TOPE(text="Old Band"), TIT1(text="Slow Ones"), TCMP(text="1"), TKEY(text="Am"),
            TBPM(text="120"), TCOP(text="2001 Example Records"), TDOR(text="1998"),
            TIPL(people=[["producer", "Pat Producer"], ["mix", "Max Mixer"]]),
            USLT(lang="eng", desc="", text="la la la\nla la"), USLT(lang="deu", desc="Strophe", text="la"),
            COMM(lang="eng", desc="iTunNORM", text=" 00000A2B 00000B3C"), COMM(lang="fra", desc="Notes", text="une note"),
            WXXX(desc="", url="https://example.org/"), PRIV(owner="WM/MediaClassPrimaryID", data=b"\xbc}`\xd1#\xe3"),
            UFID(owner="http://musicbrainz.org", data=b"9f3c0a52-0000-4000-8000-000000000002"),
            POPM(email="Windows Media Player 9 Series", rating=196, count=0))  # fmt: skip


@pytest.mark.parametrize("ext, v23", [("wv", False), ("wv", True), ("tak", False)])
def test_the_frames_of_rippers_and_taggers_without_an_apev2_name_are_carried_as_ffmpeg_shows_them(tmp_path, ext, v23):
    """A text frame without an APEv2 name (TENC, TLEN, TKEY, TPUB, TSOP...) and lyrics refused the
    whole write (a large share of real tags hold TLEN or TENC). They are carried under the name ffprobe
    shows them by (encoded_by, TLEN, artist-sort, lyrics-eng...), every value; frames ffprobe does not
    show (a URL, private data, a file id, a rating, a cover) are not copied: ffprobe shows every field
    it showed, as it showed it; untag gives back the file. An ID3v2.3 tag's frames by their own ids
    (TORY as ffmpeg shows it, not as mutagen reads it, TDOR; its IPLS, which ffmpeg does not show, not)."""
    from mutagen.id3 import ID3

    front = _front_tag(*_ripper_frames())
    if v23:
        tag = ID3(io.BytesIO(front))
        tag.update_to_v23()
        buf = io.BytesIO()
        tag.save(buf, v2_version=3, v23_sep="/")
        front = buf.getvalue()
        assert {"TORY", "IPLS", "TYER", "TDAT"} <= set(ID3(io.BytesIO(front), translate=False))
    song = tmp_path / f"song.{ext}"
    song.write_bytes(front + _stream(tmp_path, ext))
    original = song.read_bytes()
    before = _probe(song)
    assert before["encoded_by"] == "Exact Audio Copy   (Secure mode)" and before["tlen"] == "1000"
    assert before["lyrics-eng"] == "la la la\nla la" and before["lyrics-strophe-deu"] == "la"
    assert (before["compilation"], before["tkey"], before["tso2"]) == ("1", "Am", "Various")
    assert v23 or before["artist-sort"] == "Example, Ann"  # (mutagen writes no TSOP in a v2.3 tag)
    assert before["tory" if v23 else "tdor"] == "1998"
    assert "ipls" not in before if v23 else before["tipl"] == "producer"  # (ffmpeg shows no v2.3 IPLS)

    assert tags.write_instruments(song, **WRITE).written
    assert song.read_bytes().startswith(original)
    assert _probe(song) == before
    items = _ape_items(song)
    assert items["encoded_by"] == ["Exact Audio Copy   (Secure mode)"] and items["TLEN"] == ["1000"]
    assert "IPLS" not in items if v23 else items["TIPL"] == ["producer", "Pat Producer", "mix", "Max Mixer"]
    assert items["TORY" if v23 else "TDOR"] == ["1998"]
    assert items["lyrics-eng"] == ["la la la\nla la"] and items["iTunNORM"] == [" 00000A2B 00000B3C"]
    assert not {"WXXX", "PRIV", "UFID", "POPM", "APIC", "WOAR"} & {key[:4] for key in items}
    assert not tags.write_instruments(song, **WRITE).written
    assert tags.remove_instruments(song).written and song.read_bytes() == original


def _extra(kind: str):
    from mutagen.id3 import TDRL, TXXX

    return {
        "a name no APEv2 key": (TXXX(desc="TAG", text="x"), r"TXXX:TAG \(its name is no possible APEv2 key\)"),
        "two of one key": (TXXX(desc="title", text="Other"), r"TXXX:title \(a second field of the APEv2 key"),
        "two of one name in ffmpeg": (TDRL(text="2001"), r"TDRL \(ffmpeg shows it and TDRC under one name, 'date'\)"),
    }[kind]


@pytest.mark.parametrize("kind", ["a name no APEv2 key", "two of one key", "two of one name in ffmpeg"])
def test_a_field_the_apev2_tag_cannot_carry_leaves_the_file_unchanged_naming_it(tmp_path, kind):
    """A field ffprobe shows that no APEv2 item would show alike (a description that is no APEv2 key,
    two fields of one APEv2 key, two frames ffprobe shows under one name, one of them alone) leaves
    the file unchanged, named: a write would hide or change it."""
    frame, named = _extra(kind)
    song = tmp_path / "song.wv"
    song.write_bytes(_front_tag(frame) + _stream(tmp_path, "wv"))
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"the ID3v2 tag in front of its stream holds fields that its APEv2 tag "
                                            r"cannot carry as they are \(.*" + named):  # fmt: skip
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def test_a_file_an_earlier_tagger_tagged_gets_the_copies_at_its_next_write_and_loses_them_at_untag(tmp_path):
    """A file an earlier tagger tagged (its APEv2 tag holding tagger's fields alone, the ID3v2 tag
    hidden) gets the copies at its next write; untag then gives back the file as it was untagged."""
    stream = _stream(tmp_path, "wv")
    ours = [(b"INSTRUMENTS", 0, b"bass"), (b"INSTRUMENTS_MODEL", 0, b"ova-test-0")]
    song = tmp_path / "song.wv"
    song.write_bytes(_front_tag() + stream + _ape_tag(ours, header=True))
    assert "title" not in _probe(song)
    assert tags.write_instruments(song, **WRITE).written
    assert {k: v for k, v in _ape_items(song).items() if not k.startswith("INSTRUMENTS")} == COPIED
    assert _probe(song)["title"] == "Blue Song"
    assert tags.remove_instruments(song).written
    assert song.read_bytes() == _front_tag() + stream


def test_copies_changed_since_the_write_stay_at_untag(tmp_path):
    """A copy another program changed since (the title edited in the APEv2 tag) is no longer tagger's:
    untag removes tagger's fields alone, the APEv2 tag stays with the copies."""
    from mutagen.apev2 import APEv2

    song = tmp_path / "song.wv"
    song.write_bytes(_front_tag() + _stream(tmp_path, "wv"))
    tags.write_instruments(song, **WRITE)
    ape = APEv2(str(song))
    ape["Title"] = "Blue Song (live)"
    ape.save(str(song))
    assert tags.remove_instruments(song).written
    items = _ape_items(song)
    assert items == {**COPIED, "Title": ["Blue Song (live)"]}


def test_the_copies_a_write_adds_are_listed_in_instruments_copies(tmp_path):
    """The file records which items tagger copied: INSTRUMENTS_COPIES lists their keys (ffprobe shows
    it beside tagger's other fields); a new write keeps it as it is, untag removes it with the copies."""
    song = tmp_path / "song.wv"
    song.write_bytes(_front_tag() + _stream(tmp_path, "wv"))
    original = song.read_bytes()
    assert tags.write_instruments(song, **WRITE).written
    items = _ape_items(song)
    assert sorted(items["INSTRUMENTS_COPIES"]) == sorted(COPIED)
    assert tags.write_instruments(song, instruments=["vocal"], model_version="ova-test-2").written
    assert sorted(_ape_items(song)["INSTRUMENTS_COPIES"]) == sorted(COPIED)
    dry = tags.remove_instruments(song, dry_run=True)
    assert dry.changed and not dry.written and "INSTRUMENTS_COPIES" in _ape_items(song)
    assert tags.remove_instruments(song).written and song.read_bytes() == original


@pytest.mark.parametrize("how", ["equal to the ID3v2 tag", "and an item of its own"])
def test_a_users_own_apev2_items_equal_to_the_id3v2_tags_fields_survive_untag(tmp_path, how):
    """A user's own APEv2 tag whose items are the ID3v2 tag's fields (some taggers write both tags), tagged
    (no copies added: the APEv2 tag shows the user's items) then untagged, lost its whole APEv2 tag:
    untag took the items for the copies tagger adds, TagLib and foobar2000 then showing nothing. Found
    by the review of 264b8e6. Only the copies INSTRUMENTS_COPIES lists are tagger's: the user's tag is
    given back byte for byte (and so are the copies of a file tagged before the list was written)."""
    from mutagen.apev2 import APEv2

    song = tmp_path / "song.wv"
    song.write_bytes(_front_tag() + _stream(tmp_path, "wv"))
    ape = APEv2()
    for key, values in COPIED.items():
        ape[key] = values
    if how == "and an item of its own":
        ape["Mood"] = "calm"
    ape.save(str(song))
    original = song.read_bytes()
    assert tags.write_instruments(song, **WRITE).written
    assert "INSTRUMENTS_COPIES" not in _ape_items(song)
    assert tags.remove_instruments(song).written
    assert song.read_bytes() == original
    assert {k: v for k, v in _ape_items(song).items() if k != "Mood"} == COPIED


@pytest.mark.parametrize("case", ["two ID3v2 tags", "an ID3v2.5 tag"])
def test_id3v2_tags_in_front_that_cannot_be_carried_whole_leave_the_file_unchanged(tmp_path, case):
    """Two ID3v2 tags in front holding frames (ffmpeg shows both) and a tag mutagen cannot read are
    not carried: the file is left unchanged, saying so, rather than its fields hidden."""
    from mutagen.id3 import TIT2

    if case == "two ID3v2 tags":
        front, said = _front_tag() + _front_tag(TIT2(text="Other")), "it starts with 2 ID3v2 tags holding frames"
    else:
        tag = bytearray(_front_tag())
        tag[3] = 5
        front, said = bytes(tag), "its ID3v2 tag in front cannot be read"
    song = tmp_path / "song.wv"
    song.write_bytes(front + _stream(tmp_path, "wv"))
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=f"the ID3v2 tag in front of its stream holds fields .*{said}"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original
