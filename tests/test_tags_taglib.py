"""What TagLib reads of tagger's writes: the library most Linux players and taggers read tags with
(kid3, Strawberry, Clementine, Amarok, Elisa), through pytaglib (TagLib bundled).

For every format tagger writes, a file made by ffmpeg (or by hand where no encoder writes it), with
a title, artist, album, track, a cover, a custom field and lyrics written first by mutagen: TagLib
must read tagger's fields with the values written, every other property and the audio properties
as before the write, and after `untag` none of tagger's fields and the rest as before. The other
way round: fields TagLib writes (as kid3 does) are someone else's without INSTRUMENTS_MODEL, and
tagger's own with it. What TagLib shows differently is a limit of the reader, said in README
*Fields* (WMA attributes, ID3v2.3 values).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import dsf_file, predicted
from test_tags import SCORES, WRITE, _png, ffmpeg_tone, make_tagged, mediafile
from test_tags_containers import _APE_HEADERS, _ape_tag, _wav_with_info

from tagger import tags
from tagger.errors import TagWriteError

taglib = pytest.importorskip("taglib")
pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="needs ffmpeg")

OURS = ("INSTRUMENTS", "INSTRUMENTS_MODEL", "INSTRUMENTS_SCORES")
WRITTEN = {
    "INSTRUMENTS": ["bass", "guitar"],
    "INSTRUMENTS_MODEL": [WRITE["model_version"]],
    "INSTRUMENTS_SCORES": [f"{family}={score:.3f}" for family, score in SCORES.items()],
}
KINDS = ["mp3", "mp3-id3v23", "flac", "ogg", "opus", "m4a", "wma", "wav", "wav-info", "aiff", "wv", "dsf", "ape", "mpc"]


def _rich(tmp_path: Path, kind: str) -> Path:
    """A file of ``kind`` with a title, artist, album, track, cover, custom field and lyrics."""
    ext = kind.split("-")[0]
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / f"song.{ext}"
    if kind == "wav-info":  # ffmpeg's own LIST/INFO chunk, no ID3 chunk
        return ffmpeg_tone(path, "wav", seconds=0.5)
    if ext == "dsf":
        from mutagen.dsf import DSF
        from mutagen.id3 import APIC, TALB, TIT2, TPE1, TRCK, TXXX, USLT

        audio = DSF(str(dsf_file(path, seconds=0.2, freq=440.0)))
        audio.add_tags()
        for frame in (TIT2(text=["Blue in Green"]), TPE1(text=["Ann Example"]), TALB(text=["Kind of Test"]),
                      TRCK(text=["3"]), TXXX(desc="TAGGER_TEST_NOTE", text=["keep me"]),
                      USLT(lang="eng", desc="", text="la la\nlo"),
                      APIC(mime="image/png", type=3, desc="cover", data=_png())):  # fmt: skip
            audio.tags.add(frame)
        audio.save()
        return path
    if ext in _APE_HEADERS:  # (no encoder here: a header made by hand, bytes standing for the audio)
        items = [(b"Title", b"Blue in Green"), (b"Artist", b"Ann Example"), (b"Album", b"Kind of Test"),
                 (b"Track", b"3"), (b"TAGGER_TEST_NOTE", b"keep me"), (b"Lyrics", b"la la\nlo")]  # fmt: skip
        cover = (b"Cover Art (Front)", 2, b"cover.png\0" + _png())
        path.write_bytes(_APE_HEADERS[ext] + bytes(range(256)) * 16 + _ape_tag([(k, 0, v) for k, v in items] + [cover]))
        return path
    make_tagged(path, ext, seconds=0.5)
    mf = mediafile.MediaFile(str(path))
    mf.lyrics = "la la\nlo"
    mf.save()
    return path


def taglib_view(path: Path) -> dict:
    """Everything TagLib reads: its property map, the names it lists as unsupported, the pictures and
    the audio properties."""
    with taglib.File(str(path)) as f:
        pictures = sorted((p.get("mimeType", ""), p.get("description", ""), p.get("pictureType", ""), bytes(p["data"]))
                          for p in f.complex_properties("PICTURE"))  # fmt: skip
        return {"tags": dict(f.tags), "unsupported": sorted(f.unsupported), "pictures": pictures,
                "audio": (f.length, f.sampleRate, f.channels, f.bitrate)}  # fmt: skip


def _without_ours(view: dict) -> dict:
    return {**view, "tags": {k: v for k, v in view["tags"].items() if k not in OURS},
            "unsupported": [k for k in view["unsupported"] if k not in OURS]}  # fmt: skip


def _joined_v23(view: dict) -> dict:
    """The view of a file whose ID3v2.4 tag became ID3v2.3: TagLib reads a v2.3 value that joins
    several with "/" as one value (mutagen, beets and tagger split it)."""
    return {**view, "tags": {k: ["/".join(v)] for k, v in view["tags"].items()}}


@pytest.mark.parametrize("kind", KINDS)
def test_taglib_reads_the_fields_written_and_every_other_tag_as_before(tmp_path, kind):
    song = _rich(tmp_path, kind)
    before = taglib_view(song)
    assert before["tags"]["TITLE"] == ["Blue in Green"] and not set(OURS) & set(before["tags"])
    if kind != "wav-info":
        assert before["tags"]["LYRICS"] == ["la la\nlo"] and before["pictures"]
        assert "TAGGER_TEST_NOTE" in (before["unsupported"] if kind == "wma" else before["tags"])
    v23 = kind == "mp3-id3v23"
    tags.write_instruments(song, **WRITE, scores=SCORES, id3v23=v23)
    after = taglib_view(song)
    if kind == "wma":  # TagLib's property map holds only the ASF attributes it has a name for
        assert not set(OURS) & set(after["tags"]) and set(OURS) <= set(after["unsupported"])
    elif v23:
        assert {k: after["tags"][k] for k in OURS} == {k: ["/".join(v)] for k, v in WRITTEN.items()}
    else:
        assert {k: after["tags"][k] for k in OURS} == WRITTEN
    expected = _joined_v23(before) if v23 else before
    assert _without_ours(after) == expected
    tags.remove_instruments(song)
    assert taglib_view(song) == expected


def test_tag_and_untag_commands_as_taglib_reads_them(tmp_path):
    """`tagger tag --from-json --scores` and `tagger untag` over a folder of several formats."""
    from typer.testing import CliRunner

    from tagger.cli import app

    music = tmp_path / "music"
    music.mkdir()
    songs = [_rich(music / kind, kind) for kind in ("flac", "mp3", "m4a", "opus", "wav-info", "wv")]
    before = {song: taglib_view(song) for song in songs}
    rows = [predicted(song, instruments=["flute"], scores={"flute": 0.9, "vocal": 0.25}) for song in songs]
    found = tmp_path / "found.jsonl"
    found.write_text("".join(json.dumps(row) + "\n" for row in rows))
    res = CliRunner().invoke(app, ["tag", "--from-json", str(found), "--model-version", "m-1", "--scores"])
    assert res.exit_code == 0 and f"{len(songs)} tagged" in res.output, res.output
    for song in songs:
        view = taglib_view(song)
        assert {k: view["tags"][k] for k in OURS} == {"INSTRUMENTS": ["flute"], "INSTRUMENTS_MODEL": ["m-1"],
                                                      "INSTRUMENTS_SCORES": ["flute=0.900", "vocal=0.250"]}  # fmt: skip
        assert _without_ours(view) == before[song], song
    res = CliRunner().invoke(app, ["untag", "--model-version", "m-1", str(music)])
    assert res.exit_code == 0, res.output
    assert {song: taglib_view(song) for song in songs} == before


def _taglib_writes(path: Path, fields: dict[str, list[str]]) -> dict:
    """Set properties with TagLib (as kid3 does) -> those it could not store."""
    with taglib.File(str(path)) as f:
        f.tags.update(fields)
        return f.save()


@pytest.mark.parametrize("kind", [k for k in KINDS if k not in ("mp3-id3v23", "wma")])
def test_fields_taglib_wrote_are_someone_elses_without_a_model_and_ours_with_one(tmp_path, kind):
    song = _rich(tmp_path, kind)
    assert _taglib_writes(song, {"INSTRUMENTS": ["Flute", "vocal"]}) == {}
    assert not tags.read_instruments(song).tagged
    with pytest.raises(TagWriteError, match="its INSTRUMENTS field was not written by tagger"):
        tags.write_instruments(song, **WRITE)
    tags.remove_instruments(song)
    assert taglib_view(song)["tags"]["INSTRUMENTS"] == ["Flute", "vocal"]

    assert _taglib_writes(song, {"INSTRUMENTS_MODEL": ["kid3-user"]}) == {}
    assert tags.read_instruments(song) == tags.TagState(["flute", "vocal"], "kid3-user")
    before = _without_ours(taglib_view(song))
    tags.write_instruments(song, **WRITE)  # rewritten in tagger's form
    after = taglib_view(song)
    assert {k: after["tags"].get(k) for k in OURS} == {**WRITTEN, "INSTRUMENTS_SCORES": None}
    assert _without_ours(after) == before


def test_taglib_stores_no_field_of_ours_in_a_wma_file(tmp_path):
    """TagLib's property map has no custom ASF attributes: pytaglib's save gives the fields back
    unstored (kid3 writes them through TagLib's attribute interface). README *Fields* says so."""
    song = _rich(tmp_path, "wma")
    assert _taglib_writes(song, {"INSTRUMENTS": ["flute"], "INSTRUMENTS_MODEL": ["x"]}) == {
        "INSTRUMENTS": ["flute"], "INSTRUMENTS_MODEL": ["x"]}  # fmt: skip


INFO_ITEMS = {
    b"INAM": b"Blue in Green", b"IART": "Ann Exämple".encode(), b"IPRD": b"Kind of Test", b"ICMT": b"a\ncomment",
    b"IGNR": b"Jazz", b"ICRD": b"1959-03-02", b"IPRT": b"3/5", b"ISFT": b"Lavf", b"ICOP": b"(c) Nobody",
    b"IMUS": b"Bill Example", b"ITCH": b"Ann", b"ILNG": b"en", b"IWRI": b"Bob", b"IMED": b"CD",
    b"ISRC": b"XX0000000001", b"IBPM": b"120", b"ITRK": b"3", b"IKEY": b"jazz; modal", b"ISBJ": b"a subject",
}  # fmt: skip
"""Every LIST/INFO item TagLib shows and has an ID3 frame for, and some it does not show."""


@pytest.mark.parametrize("id3v23", [False, True])
def test_a_wav_files_list_info_fields_stay_visible_to_taglib_beside_the_id3_chunk(tmp_path, id3v23):
    """TagLib shows a WAV's ID3 chunk alone once it has one: the LIST/INFO fields are copied into the
    ID3 chunk a write adds (was: TagLib showed tagger's fields and no title, artist ... any more).
    `untag` leaves the copies: TagLib shows what it showed before the write."""
    song = _wav_with_info(tmp_path / "info.wav", INFO_ITEMS)
    before = taglib_view(song)
    assert len(before["tags"]) == 16 and before["tags"]["ARTIST"] == ["Ann Exämple"]
    tags.write_instruments(song, **WRITE, id3v23=id3v23)
    after = taglib_view(song)
    assert after["tags"]["INSTRUMENTS"] == (["bass/guitar"] if id3v23 else ["bass", "guitar"])
    shown = ("tags", "pictures", "audio")  # (its list of unsupported items names the chunk's: ITRK, IKEY ...)
    assert {k: _without_ours(after)[k] for k in shown} == {k: before[k] for k in shown}
    tags.remove_instruments(song)
    assert {k: taglib_view(song)[k] for k in shown} == {k: before[k] for k in shown}


@pytest.mark.parametrize("genre", ["80s Pop", "2 Tone", "8-bit", "1990s", "3rd Wave Ska", "17 Rock", "(Live", "17 "])
def test_a_list_info_genre_beginning_with_a_digit_is_copied_as_taglib_shows_it(tmp_path, genre):
    """TagLib reads an ID3 genre that is a number ("17", " 17", "+17") or begins with "(...)" ("(17)",
    "(RX)", "(Live) Set") otherwise than the text (Rock, RX, " Set"): such IGNR items are refused. Any
    other genre it shows as written, digits first or not (was: every IGNR beginning with a digit or
    "(" refused, "80s Pop" and "2 Tone" among them)."""
    song = _wav_with_info(tmp_path / "info.wav", {b"INAM": b"Song", b"IGNR": genre.encode()})
    before = taglib_view(song)["tags"]
    assert before == {"TITLE": ["Song"], "GENRE": [genre]}
    tags.write_instruments(song, **WRITE)
    assert _without_ours(taglib_view(song))["tags"] == before


def test_a_scan_writes_what_taglib_reads(tmp_path, db):
    """A tag-writing scan (the test analyser: a 110 Hz tone is bass) of files with fields of their own."""
    from conftest import tone_signal, write_audio
    from library_fakes import FakeAnalyser

    from tagger.library.scan import scan, tag_writer

    music = tmp_path / "music"
    songs = [write_audio(music / f"bass.{ext}", tone_signal([110.0], seconds=4.0)) for ext in ("flac", "mp3", "wav")]
    for song in songs[:-1]:
        with taglib.File(str(song)) as f:
            f.tags.update({"TITLE": ["Low"], "ARTIST": ["Ann"]})
            assert f.save() == {}
    import soundfile as sf

    with sf.SoundFile(songs[-1], "r+") as f:  # (libsndfile writes a WAV's fields in a LIST/INFO chunk alone)
        f.title, f.artist = "Low", "Ann"
    before = {song: taglib_view(song) for song in songs}
    assert all(view["tags"]["TITLE"] == ["Low"] for view in before.values())
    writer = tag_writer(model_version="fake-1")
    assert scan([music], db=db, analyser=FakeAnalyser(), jobs=0, on_track=writer).scanned == len(songs)
    for song in songs:
        view = taglib_view(song)
        assert {k: view["tags"].get(k) for k in OURS} == {
            "INSTRUMENTS": ["bass"], "INSTRUMENTS_MODEL": ["fake-1"], "INSTRUMENTS_SCORES": None}  # fmt: skip
        assert _without_ours(view)["tags"] == before[song]["tags"] and view["audio"] == before[song]["audio"]


def _with_chunks(song: Path, *chunks: bytes) -> Path:
    """``song`` (a WAV) with ``chunks`` (each its header, content and pad byte) added at its end."""
    import struct

    data = song.read_bytes() + b"".join(chunks)
    song.write_bytes(data[:4] + struct.pack("<I", len(data) - 8) + data[8:])
    return song


def _chunk(cid: bytes, content: bytes) -> bytes:
    import struct

    return cid + struct.pack("<I", len(content)) + content + b"\0" * (len(content) & 1)


@pytest.mark.parametrize("id3", [
    _chunk(b"id3 ", b"ID3\x04\0\0\0\0\0\x10" + bytes(16)),
    _chunk(b"ID3 ", b"ID3\x03\0\0\0\0\0\x10" + bytes(16)),
    _chunk(b"ID3 ", b""),
], ids=["v2.4 tag of padding alone", "v2.3 tag of padding alone", "empty chunk"])  # fmt: skip
def test_a_wav_whose_id3_chunk_holds_no_frame_gets_its_list_info_fields_copied(tmp_path, id3):
    """TagLib shows the first of a WAV's tags that is not empty: beside an ID3 chunk without frames
    (a tagger that removed its fields and left the chunk), the LIST/INFO fields. A write that put
    tagger's fields into that chunk made TagLib show them alone (was: the copies were made only for
    a file without an ID3 chunk). `untag` keeps the copies, as for a file without one."""
    items = {b"INAM": b"Song", b"IART": "Ann Exämple".encode(), b"ICRD": b"1959", b"IGNR": b"Jazz"}
    song = _with_chunks(_wav_with_info(tmp_path / "info.wav", items), id3)
    before = taglib_view(song)
    assert before["tags"] == {"TITLE": ["Song"], "ARTIST": ["Ann Exämple"], "DATE": ["1959"], "GENRE": ["Jazz"]}
    assert tags.write_instruments(song, **WRITE).written
    assert _without_ours(taglib_view(song))["tags"] == before["tags"]
    assert tags.remove_instruments(song).written
    assert taglib_view(song)["tags"] == before["tags"]


def test_of_two_list_info_chunks_the_one_taglib_shows_is_copied(tmp_path):
    """TagLib shows a WAV's first LIST/INFO chunk alone ("Duplicate INFO tag found"); ffmpeg shows
    both (the later's value where both hold an item) and ignores an ID3 chunk beside them. The first
    is copied into the ID3 chunk: each reader shows what it showed before, tagger's fields beside
    (was: refused, '2 LIST/INFO chunks')."""
    import subprocess

    def ffprobe_tags(path: Path) -> dict:
        out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json", str(path)],
                             capture_output=True, check=True, text=True).stdout  # fmt: skip
        return json.loads(out)["format"].get("tags", {})

    song = _wav_with_info(tmp_path / "info.wav", {b"INAM": b"First", b"IART": b"Ann"})
    _with_chunks(song, _chunk(b"LIST", b"INFO" + _chunk(b"INAM", b"Second\0") + _chunk(b"IPRD", b"Album\0")))
    original = song.read_bytes()
    before, ffmpeg_before = taglib_view(song)["tags"], ffprobe_tags(song)
    assert before == {"TITLE": ["First"], "ARTIST": ["Ann"]}
    assert ffmpeg_before == {"title": "Second", "artist": "Ann", "album": "Album"}
    assert tags.write_instruments(song, **WRITE).written
    assert song.read_bytes()[8 : len(original)] == original[8:]  # (both chunks kept, the ID3 chunk after them)
    assert _without_ours(taglib_view(song))["tags"] == before and ffprobe_tags(song) == ffmpeg_before
    assert tags.remove_instruments(song).written
    assert taglib_view(song)["tags"] == before and ffprobe_tags(song) == ffmpeg_before
