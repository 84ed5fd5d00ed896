"""Containers whose bytes hold more than mutagen shows: a tag write refuses them or keeps them whole.

Each file is built here (ffmpeg, then the container's bytes edited by hand where no encoder writes
the case), tagged, and checked from its bytes and with ffmpeg/ffprobe, not with mutagen alone:
mutagen's own view is what these cases get wrong.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import predicted

from tagger import tags
from tagger.errors import TagWriteError, UntaggableError, UserError
from tagger.containers import syncsafe as _tag_size

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None, reason="needs ffmpeg")

WRITE = dict(instruments=["guitar", "bass"], model_version="ova-test-1")


def _ffmpeg(path: Path, *args: str) -> Path:
    """A 1 s tone encoded by ffmpeg with ``args`` (codec and container options)."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-map_metadata", "-1", *args, str(path)], check=True)  # fmt: skip
    return path


def _ffprobe_tags(path: Path) -> dict[str, str]:
    out = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format_tags", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return {k.lower(): v for k, v in json.loads(out).get("format", {}).get("tags", {}).items()}


CODECS = {"flac": ["-c:a", "flac"], "ogg": ["-c:a", "libvorbis"], "opus": ["-c:a", "libopus"]}


def _decoded_md5(path: Path) -> str:
    return subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "md5", "-"],
                          capture_output=True, text=True, check=True).stdout  # fmt: skip


# -- MP4 ------------------------------------------------------------------------------------------


def test_fragmented_mp4_is_refused_and_left_as_it_is(tmp_path):
    song = _ffmpeg(tmp_path / "frag.m4a", "-c:a", "aac", "-movflags", "+frag_keyframe+empty_moov",
                   "-frag_duration", "200000")  # fmt: skip
    original = song.read_bytes()
    assert original.count(b"moof") > 1
    with pytest.raises(TagWriteError, match="fragmented MP4"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original
    assert not tags.read_instruments(song).tagged


# -- Vorbis comments (FLAC, Ogg Vorbis, Opus) -----------------------------------------------------

_BITSWAP = bytes(int(f"{i:08b}"[::-1], 2) for i in range(256))


def _ogg_crc(page: bytes) -> bytes:
    data = page[:22] + b"\0\0\0\0" + page[26:]
    return struct.pack(">I", (~zlib.crc32(data.translate(_BITSWAP), -1)) & 0xFFFFFFFF).translate(_BITSWAP)


def _patch(path: Path, old: bytes, new: bytes) -> None:
    """Replace the only occurrence of ``old`` in the file by ``new`` (same length), Ogg page
    checksums made right again: the bytes no tagging library would write."""
    assert len(old) == len(new)
    data = bytearray(path.read_bytes())
    assert data.count(old) == 1
    at = data.index(old)
    data[at : at + len(old)] = new
    if data[:4] == b"OggS":
        pos = 0
        while pos < len(data):
            n = data[pos + 26]
            end = pos + 27 + n + sum(data[pos + 27 : pos + 27 + n])
            if pos <= at < end:
                data[pos + 22 : pos + 26] = _ogg_crc(bytes(data[pos:end]))
            pos = end
    path.write_bytes(bytes(data))


def _with_comments(
    path: Path, comments: dict[str, str], *, vendor: str | None = None, picture_desc: str | None = None
) -> Path:
    """A tone file whose Vorbis comments (and vendor string, and a FLAC PICTURE block) mutagen wrote."""
    import mutagen
    from mutagen.flac import Picture

    _ffmpeg(path, *CODECS[path.suffix[1:]])
    audio = mutagen.File(str(path))
    if audio.tags is None:
        audio.add_tags()
    for key, value in comments.items():
        audio.tags[key] = value
    if vendor is not None:
        audio.tags.vendor = vendor
    if picture_desc is not None:
        pic = Picture()
        pic.type, pic.mime, pic.desc, pic.data = 3, "image/png", picture_desc, b"\x89PNG\r\n\x1a\n" + bytes(64)
        audio.add_picture(pic)
    audio.save()
    return path


BAD_COMMENTS = {
    # case: (comment mutagen writes, its bytes, the bytes another program wrote)
    "latin-1 value": (("TITLE", "Cafe del Mar"), b"Cafe del", b"Caf\xe9 del"),
    "key with ~": (("XCOMPILATION", "1"), b"XCOMPILATION", b"~COMPILATION"),
    "empty key": (("X", "emptykey"), b"X=emptykey", b"=Xemptykey"),
    "control character in key": (("CTRLX", "1"), b"CTRLX=", b"CTRL\x01="),
    "non-ASCII key": (("KXXY", "value"), b"KXXY=", b"K\xc3\xa9Y="),
    "entry without =": (("NOEQUAL", "text"), b"NOEQUAL=text", b"NOEQUAL_text"),
}


@pytest.mark.parametrize("ext", ["flac", "ogg", "opus"])
@pytest.mark.parametrize("case", sorted(BAD_COMMENTS))
def test_vorbis_comment_mutagen_cannot_keep_is_refused(tmp_path, ext, case):
    (key, value), old, new = BAD_COMMENTS[case]
    song = _with_comments(tmp_path / f"song.{ext}", {key: value, "ARTIST": "ok"})
    _patch(song, old, new)
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match="Vorbis comments") as caught:
        tags.write_instruments(song, **WRITE)
    assert repr(new)[2:-1] in caught.value.reason  # the entry is named, escaped
    assert song.read_bytes() == original


@pytest.mark.parametrize(
    "ext, made, marker, named",
    [("flac", {"vendor": "VendorX"}, b"VendorX", "vendor string"),
     ("ogg", {"vendor": "VendorX"}, b"VendorX", "vendor string"),
     ("opus", {"vendor": "VendorX"}, b"VendorX", "vendor string"),
     ("flac", {"picture_desc": "PicDescX"}, b"PicDescX", "PICTURE 1")],  # fmt: skip
    ids=["flac vendor", "ogg vendor", "opus vendor", "flac picture description"],
)
def test_a_vendor_string_or_picture_description_that_is_not_utf8_is_refused(tmp_path, ext, made, marker, named):
    song = _with_comments(tmp_path / f"song.{ext}", {"ARTIST": "ok"}, **made)
    _patch(song, marker, marker[:-1] + b"\xe9")
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=named):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def test_flac_second_comment_block_mutagen_cannot_keep_is_refused(tmp_path):
    """mutagen shows the first VORBIS_COMMENT block but writes every one back from its view."""
    song = _with_comments(tmp_path / "song.flac", {"ARTIST": "ok"})
    data = song.read_bytes()
    comment = b"TITLE=Caf\xe9"
    block = struct.pack("<I", 3) + b"ref" + struct.pack("<I", 1) + struct.pack("<I", len(comment)) + comment
    assert data[:4] == b"fLaC" and data[4] == 0  # STREAMINFO (34 bytes), not the last block
    song.write_bytes(data[:42] + bytes([4]) + len(block).to_bytes(3, "big") + block + data[42:])
    import mutagen

    assert [b.code for b in mutagen.File(str(song)).metadata_blocks].count(4) == 2
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match="Caf"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


@pytest.mark.parametrize("ext", ["flac", "ogg", "opus"])
def test_valid_vorbis_comments_are_tagged_and_kept(tmp_path, ext):
    import mutagen

    comments = {"TITLE": "Café del Mar", "ARTIST": "Ann", "ALBUM": "Ünïcode ☃"}
    song = _with_comments(tmp_path / f"song.{ext}", comments, picture_desc="Pochette café" if ext == "flac" else None)
    before = mutagen.File(str(song))
    others = sorted(before.tags)
    decoded = _decoded_md5(song)
    tags.write_instruments(song, **WRITE)
    after = mutagen.File(str(song))
    assert sorted((k, v) for k, v in after.tags if not k.startswith("INSTRUMENTS")) == others
    if ext == "flac":
        assert [p.desc for p in after.pictures] == ["Pochette café"]
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    assert _decoded_md5(song) == decoded


# -- MP4 atoms mutagen converts -------------------------------------------------------------------


def _atom(name: bytes, content: bytes) -> bytes:
    return struct.pack(">I", 8 + len(content)) + name + content


def _data(kind: int, value: bytes) -> bytes:
    return _atom(b"data", struct.pack(">II", kind, 0) + value)


def _m4a_with_atoms(path: Path, atoms: bytes) -> Path:
    """An M4A whose ``ilst`` holds exactly ``atoms`` (``moov`` after ``mdat``, as ffmpeg writes it:
    no chunk offset moves when it grows)."""
    from mutagen.mp4 import Atoms

    _ffmpeg(path, "-c:a", "aac", "-metadata", "title=placeholder")
    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        chain = Atoms(f).path(b"moov", b"udta", b"meta", b"ilst")
    assert chain[0].offset > data.index(b"mdat")
    ilst = chain[-1]
    start, end = ilst.offset + 8, ilst.offset + ilst.length
    data[start:end] = atoms
    grow = len(atoms) - (end - start)
    for atom in chain:
        assert data[atom.offset + 4 : atom.offset + 8] == atom.name
        data[atom.offset : atom.offset + 4] = struct.pack(">I", atom.length + grow)
    path.write_bytes(bytes(data))
    return path


def _ilst_names(path: Path) -> list[bytes]:
    from mutagen.mp4 import Atoms

    with open(path, "rb") as f:
        return [atom.name for atom in Atoms(f).path(b"moov", b"udta", b"meta", b"ilst")[-1].children]


def _freeform(mean: bytes, name: bytes, value: bytes) -> bytes:
    return _atom(b"----", _atom(b"mean", bytes(4) + mean) + _atom(b"name", bytes(4) + name) + _data(1, value))


GNRE = _atom(b"gnre", _data(0, struct.pack(">H", 18)))  # ID3v1 genre 17 + 1: Rock
TITLE = _atom(b"\xa9nam", _data(1, b"Song"))


@pytest.mark.parametrize(
    "atoms, named",
    [
        (GNRE + _atom(b"\xa9gen", _data(1, b"Jazzy")) + TITLE, "gnre"),  # converted to ©gen and merged
        (TITLE + _atom(b"\xa9nam", _data(1, b"Other")), "\xa9nam"),  # two atoms merged into one
    ],
    ids=["gnre beside ©gen", "repeated atom"],
)
def test_mp4_atoms_mutagen_would_convert_are_refused(tmp_path, atoms, named):
    song = _m4a_with_atoms(tmp_path / "song.m4a", atoms)
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match="MP4 tag has atoms") as caught:
        tags.write_instruments(song, **WRITE)
    assert repr(named) in caught.value.reason
    assert song.read_bytes() == original


def test_a_lone_id3_style_genre_becomes_the_same_genre_as_text(tmp_path):
    """AtomicParsley and older iTunes store a standard genre as ``gnre`` (a genre number): mutagen
    writes it as the ``©gen`` text every reader reads the same (was: the file refused). A number no
    genre has, or a gnre beside a ©gen (merged), still refuses (above, and the next test)."""
    song = _m4a_with_atoms(tmp_path / "song.m4a", GNRE + TITLE)
    before = _ffprobe_tags(song)
    assert before["genre"] == "Rock"
    tags.write_instruments(song, **WRITE)
    after = _ffprobe_tags(song)
    assert {k: v for k, v in after.items() if not k.startswith("instruments")} == before
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


def test_mp4_atoms_mutagen_keeps_are_tagged_and_listed_again(tmp_path):
    import mutagen

    unknown_genre = _atom(b"gnre", _data(0, struct.pack(">H", 999)))  # mutagen cannot parse it: written back as it is
    atoms = (TITLE + _atom(b"\xa9gen", _data(1, b"Jazz")) + _atom(b"trkn", _data(0, struct.pack(">4H", 0, 3, 9, 0)))
             + _freeform(b"com.apple.iTunes", b"MOOD", b"calm") + _freeform(b"org.example", b"NOTE", b"kept")
             + unknown_genre)  # fmt: skip
    song = _m4a_with_atoms(tmp_path / "song.m4a", atoms)
    before = mutagen.File(str(song)).tags
    others = sorted((k, repr(v)) for k, v in before.items())
    decoded = _decoded_md5(song)
    tags.write_instruments(song, **WRITE)
    names = _ilst_names(song)
    assert sorted(n for n in names if n != b"----") == sorted([b"\xa9nam", b"\xa9gen", b"trkn", b"gnre"])
    assert names.count(b"----") == 4  # MOOD, NOTE, INSTRUMENTS, INSTRUMENTS_MODEL
    after = mutagen.File(str(song)).tags
    assert sorted((k, repr(v)) for k, v in after.items() if "INSTRUMENTS" not in k) == others
    assert _decoded_md5(song) == decoded
    tags.remove_instruments(song)
    assert sorted(_ilst_names(song)) == sorted(_ilst_names(_m4a_with_atoms(tmp_path / "again.m4a", atoms)))


def test_the_verification_names_the_other_tags_a_save_changed(tmp_path, monkeypatch):
    """A save that changes another program's tag fails the verification, the file unchanged; the
    refusal names the tags (was: `verification failed: other tags changed`, naming none, so that
    nobody could tell which of a file's tags mutagen would have written otherwise)."""
    from mutagen.flac import FLAC

    from tagger.tags.storage import FLACStorage

    song = _ffmpeg(tmp_path / "song.flac", "-c:a", "flac", "-metadata", "TITLE=Song", "-metadata", "ARTIST=Ann")
    saved = FLACStorage.save

    def save_and_change(self, audio, path, **kwargs):  # (as a save that rewrote the title would)
        saved(self, audio, path, **kwargs)
        written = FLAC(path)
        written["TITLE"] = "Other"
        written.save()

    monkeypatch.setattr(FLACStorage, "save", save_and_change)
    before = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"verification failed: other tags changed \('TITLE'\); file left unchanged"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == before


def test_mp4_atom_lost_by_the_save_fails_the_verification(tmp_path, monkeypatch):
    """The atoms of the written copy are listed from its bytes: one the save lost (here an atom
    mutagen could not parse, which the other-tags digest does not see) fails the write."""
    from tagger.tags.storage import MP4Storage

    song = _m4a_with_atoms(tmp_path / "song.m4a", TITLE + _atom(b"gnre", _data(0, struct.pack(">H", 999))))
    original = song.read_bytes()
    save = MP4Storage.save

    def save_losing_unparsed_atoms(self, audio, path, **kwargs):
        audio.tags._failed_atoms.clear()
        save(self, audio, path, **kwargs)

    monkeypatch.setattr(MP4Storage, "save", save_losing_unparsed_atoms)
    with pytest.raises(TagWriteError, match="items read from its bytes"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original
    assert not list(tmp_path.glob(".*tagger-tmp"))


def _data_atom(kind: int, value: bytes, *, version: int = 0, locale: int = 0) -> bytes:
    return _atom(b"data", struct.pack(">II", version << 24 | kind, locale) + value)


PNG = b"\x89PNG\r\n\x1a\n" + bytes(40)


@pytest.mark.parametrize(
    "item, named",
    [
        (_atom(b"tmpo", _data_atom(21, bytes([200]))), "tmpo"),  # written FF C8: 65480 to a reader of unsigned
        (_atom(b"cnID", _data_atom(21, bytes([0xC8]))), "cnID"),  # sign-extended to FF FF FF C8
        (_atom(b"cpil", _data_atom(21, b"\x02")), "cpil"),  # written 1
        (_atom(b"trkn", _data_atom(0, struct.pack(">4H", 7, 3, 12, 9))), "trkn"),  # extra fields zeroed
        (_atom(b"covr", _atom(b"name", bytes(4) + b"front") + _data_atom(14, PNG)), "covr"),  # name child dropped
        (_atom(b"\xa9nam", _data_atom(1, b"Title", locale=0x00010409)), "\xa9nam"),  # locale zeroed
        (_atom(b"\xa9nam", _data_atom(1, b"Title", version=1)), "\xa9nam"),  # version zeroed
        (_atom(b"----", _atom(b"mean", bytes(4) + b"com.apple.iTunes") + _atom(b"name", bytes(4) + b"MOOD")
               + _data_atom(1, b"calm", locale=0x55)), "----:com.apple.iTunes:MOOD"),  # fmt: skip
    ],
    ids=["tmpo 1 byte 200", "cnID 1 byte", "cpil 2", "trkn extra fields", "covr name", "locale", "version",
         "freeform locale"],  # fmt: skip
)
def test_mp4_values_mutagen_would_store_differently_fail_the_verification(tmp_path, item, named):
    """mutagen reads these values back the same after its save, which stores them differently: the
    raw atoms of the copy are compared with the original's, and the file is left as it was."""
    song = _m4a_with_atoms(tmp_path / "song.m4a", _atom(b"\xa9ART", _data(1, b"Ann")) + item)
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match="verification failed: the save changed how other tags are stored") as caught:
        tags.write_instruments(song, **WRITE)
    assert f"({named!r})" in caught.value.reason  # that atom only: the artist is kept as it is
    assert song.read_bytes() == original
    assert not list(tmp_path.glob(".*tagger-tmp"))


def test_mp4_values_stored_in_an_equivalent_form_are_tagged(tmp_path):
    """Re-encodings that every reader reads the same are not a change: text stored as implicit,
    an integer in another width, an integer or a flag stored as implicit (which mutagen writes with
    the integer type; such a file was refused), a track or disc pair with zero extra fields in another
    length."""
    atoms = (_atom(b"\xa9nam", _data_atom(0, b"Title")) + _atom(b"tmpo", _data_atom(21, struct.pack(">I", 120)))
             + _atom(b"cpil", _data_atom(0, b"\x01")) + _atom(b"stik", _data_atom(0, b"\x01"))
             + _atom(b"trkn", _data_atom(0, struct.pack(">3H", 0, 3, 12)))
             + _atom(b"disk", _data_atom(0, struct.pack(">4H", 0, 1, 2, 0))))  # fmt: skip
    song = _m4a_with_atoms(tmp_path / "song.m4a", atoms)
    tags.write_instruments(song, **WRITE)
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


def _m4a_with_meta(path: Path, order: tuple[bytes, ...], free: bytes) -> Path:
    """An M4A whose ``meta`` holds its ``hdlr``, an ``ilst`` with a title and a ``free`` atom of
    content ``free``, in the ``order`` of their names."""
    from mutagen.mp4 import Atoms

    _m4a_with_atoms(path, TITLE)
    data = bytearray(path.read_bytes())
    with open(path, "rb") as f:
        chain = Atoms(f).path(b"moov", b"udta", b"meta")
    meta = chain[-1]
    children = {c.name: bytes(data[c.offset : c.offset + c.length]) for c in meta.children if c.name != b"free"}
    children[b"free"] = _atom(b"free", free)
    start, end = meta.offset + meta.length - meta.datalength + 4, meta.offset + meta.length  # (after version, flags)
    content = b"".join(children[name] for name in order)
    data[start:end] = content
    grow = len(content) - (end - start)
    for atom in chain:
        data[atom.offset : atom.offset + 4] = struct.pack(">I", atom.length + grow)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("order, free, refused", [
    ((b"hdlr", b"ilst", b"free"), bytes(16), None),
    ((b"hdlr", b"ilst", b"free"), b"\x01" * 16, None),
    ((b"hdlr", b"ilst", b"free"), b"tool data", "it holds bytes that are not zeros"),
    ((b"hdlr", b"ilst", b"free"), b"\x01\x00" * 8, "it holds bytes that are not zeros"),
    ((b"ilst", b"hdlr", b"free"), bytes(16), "other atoms lie between them"),
], ids=["zeros after ilst", "TagLib's padding after ilst", "data after ilst", "ones and zeros after ilst",
        "last child, ilst first"])  # fmt: skip
def test_mp4_free_atom_mutagen_would_write_over_is_refused(tmp_path, order, free, refused):
    """mutagen takes a ``free`` child of ``meta`` beside ``ilst`` for the tag's padding and writes
    over it: bytes in it that are not zeros were lost without a word, and where ``ilst`` is the first
    child it takes the last one, however far, and wrote over the atoms between them (here the
    ``hdlr``). Zeros beside ``ilst`` are padding, written over as before, and so are bytes that are
    all 0x01: TagLib (kid3 ...) fills the padding it adds with them (was: refused)."""
    song = _m4a_with_meta(tmp_path / "song.m4a", order, free)
    original = song.read_bytes()
    if refused is None:
        assert tags.write_instruments(song, **WRITE).written
        return
    with pytest.raises(TagWriteError, match=rf"a 'free' atom beside 'ilst' that a rewrite would overwrite \({refused}"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def test_ffmpeg_m4a_with_the_usual_tags_and_a_cover_is_tagged(tmp_path):
    import mutagen

    cover = tmp_path / "cover.png"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "color=red:size=16x16", "-frames:v", "1",
                    str(cover)], check=True)  # fmt: skip
    song = tmp_path / "song.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-i", str(cover), "-map", "0", "-map", "1", "-c:a", "aac", "-c:v", "copy",
                    "-disposition:v", "attached_pic", "-metadata", "title=Café", "-metadata", "artist=Ann",
                    "-metadata", "track=3/12", "-metadata", "disc=1/2", str(song)], check=True)  # fmt: skip
    before = mutagen.File(str(song)).tags
    assert {"covr", "trkn", "disk", "\xa9nam", "\xa9ART"} <= set(before.keys())
    others = sorted((k, repr(v)) for k, v in before.items())
    tags.write_instruments(song, **WRITE)
    after = mutagen.File(str(song)).tags
    assert sorted((k, repr(v)) for k, v in after.items() if "INSTRUMENTS" not in k) == others
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    tags.remove_instruments(song)
    assert not tags.read_instruments(song).tagged


def test_an_m4a_whose_tags_are_in_a_quicktime_style_meta_atom_is_left_unchanged(tmp_path):
    """QuickTime's ``meta`` atom has no version and flags (its ``hdlr`` right after its header), where
    the ISO form has 4 bytes of them; ffmpeg and TagLib read both. mutagen finds no tags in the
    QuickTime form and added a second ``meta`` atom in front of it holding tagger's fields alone:
    TagLib then showed neither the title nor tagger's fields (was: tagged, without a word). Found
    writing an M4A whose ``meta`` atom was in QuickTime's form. Left unchanged, saying why."""
    from mutagen.mp4 import Atoms

    song = _ffmpeg(tmp_path / "song.m4a", "-c:a", "aac", "-metadata", "title=QuickTime")
    data = bytearray(song.read_bytes())
    with open(song, "rb") as f:
        chain = Atoms(f).path(b"moov", b"udta", b"meta")
    meta = chain[-1]
    assert data[meta.offset + 8 : meta.offset + 12] == bytes(4)  # (version and flags: the ISO form)
    del data[meta.offset + 8 : meta.offset + 12]
    for atom in chain:  # (moov after mdat: no chunk offset moves)
        data[atom.offset : atom.offset + 4] = struct.pack(">I", atom.length - 4)
    song.write_bytes(bytes(data))
    assert _ffprobe_tags(song)["title"] == "QuickTime"
    with pytest.raises(TagWriteError, match=r"its MP4 tags are in a 'meta' atom of QuickTime's form \(without version "
                                            r"and flags\), which mutagen does not read.*; left unchanged"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == data


def _covr_atom(path: Path) -> bytes:
    from mutagen.mp4 import Atoms

    with open(path, "rb") as f:
        covr = [atom for atom in Atoms(f).path(b"moov", b"udta", b"meta", b"ilst")[-1].children if atom.name == b"covr"]
        f.seek(covr[0].offset)
        return f.read(covr[0].length)


@pytest.mark.parametrize("kind", ["ffmpeg's BMP cover (27)", "GIF (12)", "implicit type (0)", "JPEG and BMP"])
def test_an_m4a_cover_neither_jpeg_nor_png_keeps_its_type(tmp_path, kind):
    """mutagen reads a cover whose data atom's type is neither JPEG (13) nor PNG (14) as a JPEG and
    writes it back so: every such M4A was refused after the write, `verification failed: other tags
    changed` (naming nothing), among them every M4A that ffmpeg gave a BMP cover (type 27). Found
    tagging covers of each type the iTunes specification lists. The cover keeps its type now,
    through tag and untag; ffprobe reads the same tags and the cover."""
    if kind.startswith("ffmpeg"):
        cover = tmp_path / "cover.bmp"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "color=red:size=16x16", "-frames:v",
                        "1", str(cover)], check=True)  # fmt: skip
        song = tmp_path / "song.m4a"
        subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                        "-i", str(cover), "-map", "0", "-map", "1", "-c:a", "aac", "-c:v", "copy",
                        "-disposition:v", "attached_pic", "-metadata", "title=Café", str(song)], check=True)  # fmt: skip
    else:
        datas = {"GIF (12)": _data(12, b"GIF89a" + bytes(40)), "implicit type (0)": _data(0, b"\xff\xd8\xff" + bytes(40)),
                 "JPEG and BMP": _data(13, b"\xff\xd8\xff" + bytes(40)) + _data(27, b"BM" + bytes(40))}[kind]  # fmt: skip
        song = _m4a_with_atoms(tmp_path / "song.m4a", TITLE + _atom(b"covr", datas))
    covr = _covr_atom(song)
    assert covr[20:24] != struct.pack(">I", 13)
    before, decoded = _ffprobe_tags(song), _decoded_md5(song)
    assert tags.write_instruments(song, **WRITE).written
    assert _covr_atom(song) == covr
    assert {k: v for k, v in _ffprobe_tags(song).items() if not k.startswith("instruments")} == before
    assert _decoded_md5(song) == decoded and tags.read_instruments(song).instruments == ["bass", "guitar"]
    tags.remove_instruments(song)
    assert _covr_atom(song) == covr and not tags.read_instruments(song).tagged


# -- ASF (WMA) attributes mutagen writes back differently -----------------------------------------


def _utf16z(name: str) -> bytes:
    return name.encode("utf-16-le") + b"\0\0"


ASF_CASES = {
    # case: (attribute, where mutagen puts it (stream: the Metadata object), its bytes, the bytes
    # another program wrote, what the refusal says)
    "BOOL 0xFFFFFFFF": (("WM/IsCompilation", None), _utf16z("WM/IsCompilation") + b"\x02\0\x04\0\x01\0\0\0",
                        _utf16z("WM/IsCompilation") + b"\x02\0\x04\0\xff\xff\xff\xff", "BOOL stored as 0xffffffff"),
    "Metadata BOOL 2": (("WM/Flag", 0), _utf16z("WM/Flag") + b"\x01\0", _utf16z("WM/Flag") + b"\x02\0",
                        "BOOL stored as 0x0002"),
    "Metadata reserved field": (("WM/Mdx", 1), struct.pack("<HHHHI", 0, 1, 14, 2, 2) + _utf16z("WM/Mdx"),
                                struct.pack("<HHHHI", 2, 1, 14, 2, 2) + _utf16z("WM/Mdx"), "reserved field"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(ASF_CASES))
def test_asf_values_mutagen_would_write_back_differently_are_refused(tmp_path, case):
    """mutagen reads a BOOL as "is it 1" and writes 0 or 1; it writes a Metadata object
    attribute's reserved field as 0. It reads the same values back, so only the bytes tell."""
    import mutagen
    from mutagen.asf import ASFBoolAttribute

    (name, stream), old, new, said = ASF_CASES[case]
    song = _ffmpeg(tmp_path / "song.wma", "-c:a", "wmav2")
    audio = mutagen.File(str(song))
    audio.tags[name] = [ASFBoolAttribute(True, stream=stream)]
    audio.save()
    data = song.read_bytes()
    assert data.count(old) == 1
    song.write_bytes(data.replace(old, new))
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match="ASF attributes hold values that a rewrite would change") as caught:
        tags.write_instruments(song, **WRITE)
    assert f"{name!r}, " in caught.value.reason and said in caught.value.reason
    assert song.read_bytes() == original


_ASF_CD = bytes.fromhex("3326b2758e66cf11a6d900aa0062ce6c")  # Content Description GUID
_ASF_HE = bytes.fromhex("b503bf5f2ea9cf118ee300c00c205365")  # Header Extension GUID


@pytest.mark.parametrize("case, said", [
    ("title extra NULs", "the Content Description's Title"), ("title unended", "the Content Description's Title"),
    ("reserved", "the Header Extension's reserved fields"), ("value after NUL", "'WM/Foo', whose text"),
    ("name unended", "'WM/Fooo', whose name"),
])  # fmt: skip
def test_asf_header_bytes_mutagen_would_write_back_differently_are_refused(tmp_path, case, said):
    """mutagen writes every text as itself and one NUL (extra NULs went, an unended text got one)
    and the Header Extension's reserved fields as the specification's; it reads the same values
    back, so a tag write changed these bytes without a word."""
    import mutagen
    from mutagen.asf import ASFUnicodeAttribute

    song = _ffmpeg(tmp_path / "song.wma", "-metadata", "title=abc", "-c:a", "wmav2")
    audio = mutagen.File(str(song))
    audio.tags["WM/Foo"] = [ASFUnicodeAttribute("abc")]
    audio.save()
    data = bytearray(song.read_bytes())
    title, ext = data.find(_ASF_CD) + 34, data.find(_ASF_HE) + 24
    assert data[title : title + 8] == _utf16z("abc") and data[ext + 16 : ext + 18] == b"\x06\0"
    foo = _utf16z("WM/Foo") + b"\0\0\x08\0" + _utf16z("abc")
    edits = {"title extra NULs": (title, _utf16z("a") + b"\0" * 4), "title unended": (title, _utf16z("ab") + "c".encode("utf-16-le")),
             "reserved": (ext + 16, b"\x07\0"), "value after NUL": (data.find(foo) + 18, _utf16z("ab") + "c".encode("utf-16-le")),
             "name unended": (data.find(_utf16z("WM/Foo")), "WM/Fooo".encode("utf-16-le"))}  # fmt: skip
    at, new = edits[case]
    data[at : at + len(new)] = new
    song.write_bytes(bytes(data))
    with pytest.raises(TagWriteError, match="ASF attributes hold values that a rewrite would change") as caught:
        tags.write_instruments(song, **WRITE)
    assert said in caught.value.reason
    assert song.read_bytes() == bytes(data)


def _wma_with(path: Path, attributes: dict, renames: tuple[tuple[str, str], ...] = ()) -> Path:
    """A WMA file (ffmpeg, title "abc") holding ``attributes`` (name -> mutagen attributes), then
    attribute names renamed in its bytes (same length: to make what mutagen itself never writes)."""
    import mutagen

    song = _ffmpeg(path, "-metadata", "title=abc", "-c:a", "wmav2")
    audio = mutagen.File(str(song))
    for name, values in attributes.items():
        audio.tags[name] = values
    audio.save()
    data = song.read_bytes()
    for old, new in renames:
        assert len(old) == len(new) and data.count(_utf16z(old)) == 1
        data = data.replace(_utf16z(old), _utf16z(new))
    song.write_bytes(data)
    return song


def _wma_cases():
    from mutagen.asf import ASFUnicodeAttribute as Text

    return {
        # case: (attributes, renames, what the refusal names)
        "a name twice in the Extended Content Description": (
            {"WM/Foo": [Text("one")], "WM/Fop": [Text("two")]}, (("WM/Fop", "WM/Foo"),),
            "'WM/Foo' from the Extended Content Description to the Metadata Library"),
        "a name twice in the Metadata object": (
            {"WM/Mx": [Text("one", stream=1)], "WM/My": [Text("two", stream=2)]}, (("WM/My", "WM/Mx"),),
            "'WM/Mx' from the Metadata to the Metadata Library"),
        # moves a reader shows nothing of: every value of the name the same (None: tagged)
        "a Content Description name in the Extended Content Description": (
            {"WM/Tit": [Text("Ann")]}, (("WM/Tit", "Author"),), None),
        "a name twice in the Extended Content Description with one value": (
            {"WM/Foo": [Text("one")], "WM/Fop": [Text("one")]}, (("WM/Fop", "WM/Foo"),), None),
    }  # fmt: skip


@pytest.mark.parametrize("case", sorted(_wma_cases()))
def test_asf_attributes_mutagen_would_move_to_another_object_are_refused(tmp_path, case):
    """mutagen writes one attribute of a name into the Extended Content Description (or the Metadata
    object) and moves the others to the Metadata Library, and a Content Description name into that
    object, whichever object held it. ffmpeg shows the last value of a name it reads, in the file's
    order: a repeated WM/Foo shown as "two" was shown as "one" after a write, without a word. Such
    a file is refused, naming the attributes, and left byte for byte."""
    attributes, renames, named = _wma_cases()[case]
    song = _wma_with(tmp_path / "song.wma", attributes, renames)
    original, shown = song.read_bytes(), _ffprobe_tags(song)
    if named is None:  # (ffmpeg's twin Author, `test_an_ffmpeg_wma_with_an_artist_is_tagged`, is one of these)
        tags.write_instruments(song, **WRITE)
        assert {k: v for k, v in _ffprobe_tags(song).items() if k in shown} == shown
        return
    with pytest.raises(TagWriteError, match="a rewrite would move its ASF attributes to other header objects") as err:
        tags.write_instruments(song, **WRITE)
    assert named in err.value.reason and "left unchanged" in err.value.reason
    assert song.read_bytes() == original and _ffprobe_tags(song) == shown
    if case.startswith("a name twice in the Extended"):
        assert shown["wm/foo"] == "two"


def test_asf_languages_streams_and_a_name_in_several_objects_are_kept_byte_for_byte(tmp_path):
    """Metadata Library attributes with a language and a stream number, a Metadata attribute on a
    stream, and a name both in the Extended Content Description and the Metadata Library stay in
    their objects with their numbers: each attribute's bytes are in the written file as they were,
    ffmpeg shows the same tags and decodes the same audio."""
    from mutagen.asf import ASFUnicodeAttribute as Text

    song = _wma_with(tmp_path / "song.wma", {"WM/Genre": [Text("Jazz"), Text("Rock", language=0, stream=0)],
                                            "WM/Mood": [Text("calm", language=1, stream=1), Text("dark", language=2)],
                                            "WM/Bar": [Text("x", stream=1)]})  # fmt: skip
    records = [struct.pack("<HHHHI", language, stream, len(_utf16z(name)), 0, len(_utf16z(value))) + _utf16z(name)
               + _utf16z(value) for name, value, language, stream in
               [("WM/Genre", "Rock", 0, 0), ("WM/Mood", "calm", 1, 1), ("WM/Mood", "dark", 2, 0), ("WM/Bar", "x", 0, 1)]]
    records.append(struct.pack("<H", len(_utf16z("WM/Genre"))) + _utf16z("WM/Genre") + struct.pack("<HH", 0, 10)
                   + _utf16z("Jazz"))  # fmt: skip
    data = song.read_bytes()
    assert all(data.count(record) == 1 for record in records)
    shown, decoded = _ffprobe_tags(song), _decoded_md5(song)
    tags.write_instruments(song, **WRITE)
    data = song.read_bytes()
    assert all(data.count(record) == 1 for record in records)
    assert {k: v for k, v in _ffprobe_tags(song).items() if k in shown} == shown and _decoded_md5(song) == decoded


@pytest.mark.parametrize("where, named", [("value", "the value of 'WM/Foo' in the Extended Content Description"),
                                          ("library value", "the value of 'WM/Foo' in the Metadata Library"),
                                          ("name", "the name 'WM/Foo'... in the Extended Content Description"),
                                          ("title", "the Content Description's Title")])  # fmt: skip
def test_asf_text_of_an_odd_number_of_bytes_is_refused_naming_it(tmp_path, where, named):
    """A text stored in an odd number of bytes (not UTF-16: a damaged header) stopped mutagen with
    its bare words (`'utf-16-le' codec can't decode byte 0x00 in position 6: truncated data`). The
    refusal names the text and the object holding it; the file is left as it is."""
    from mutagen.asf import ASFUnicodeAttribute as Text

    song = _wma_with(tmp_path / "song.wma", {"WM/Foo": [Text("abc", language=0 if where == "library value" else None)]})
    data = song.read_bytes()
    value = _utf16z("abc")
    if where == "value":
        old = _utf16z("WM/Foo") + struct.pack("<HH", 0, 8) + value
        new = _utf16z("WM/Foo") + struct.pack("<HH", 0, 7) + value[:-1]
    elif where == "library value":
        old = struct.pack("<HI", 0, 8) + _utf16z("WM/Foo") + value
        new = struct.pack("<HI", 0, 7) + _utf16z("WM/Foo") + value[:-1]
    elif where == "name":
        old = struct.pack("<H", 14) + _utf16z("WM/Foo") + struct.pack("<HH", 0, 8)
        new = struct.pack("<H", 13) + _utf16z("WM/Foo")[:-1] + struct.pack("<HH", 0, 8)
    else:
        old = struct.pack("<5H", 8, 0, 0, 0, 0) + value
        new = struct.pack("<5H", 7, 0, 0, 0, 0) + value[:-1]
    assert data.count(old) == 1
    data = data.replace(old, new + b"\0")  # (the byte after the text stands in for what followed: same sizes)
    song.write_bytes(data)
    with pytest.raises(TagWriteError, match="texts of an odd number of bytes, which mutagen cannot read") as err:
        tags.write_instruments(song, **WRITE)
    assert named in err.value.reason
    assert song.read_bytes() == data


# -- ID3 frames mutagen would write back differently ----------------------------------------------


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127, n & 127])


def _id3_frame(fid: bytes, data: bytes, *, flags: int = 0, major: int = 4) -> bytes:
    size = _syncsafe(len(data)) if major == 4 else struct.pack(">I", len(data))
    return fid + size + struct.pack(">H", flags) + data


def _mp3_with_id3(path: Path, *frames: bytes, major: int = 4) -> Path:
    """A tone MP3 whose ID3v2 tag (version ``major``) holds exactly ``frames``, as built here."""
    _ffmpeg(path, "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0")
    body = b"".join(frames) + bytes(64)
    path.write_bytes(b"ID3" + bytes([major, 0, 0]) + _syncsafe(len(body)) + body + path.read_bytes())
    return path


@pytest.mark.parametrize("major, flag", [(4, 0x0040), (3, 0x0020)], ids=["v2.4", "v2.3"])
def test_id3_frame_with_the_grouping_flag_is_refused(tmp_path, major, flag):
    """mutagen does not know the grouping flag: it reads the group byte (here 3) as the text's
    encoding, keeps the text's own encoding byte as a character, and writes the frame without the
    flag. It reads that back the same, so only the frame headers tell."""
    grouped = _id3_frame(b"TIT2", b"\x03" + b"\x03Title", flags=flag, major=major)
    song = _mp3_with_id3(tmp_path / "song.mp3", _id3_frame(b"TPE1", b"\x03Ann", major=major), grouped, major=major)
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"frames that a rewrite would change: TIT2 \(grouped"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


@pytest.mark.parametrize("major, flag, named", [
    (4, 0x4000, "discard it once the tag is altered"), (4, 0x1000, "read-only"),
    (3, 0x8000, "discard it once the tag is altered"), (3, 0x2000, "read-only"),
], ids=["v2.4 tag alter", "v2.4 read-only", "v2.3 tag alter", "v2.3 read-only"])  # fmt: skip
def test_id3_frame_with_status_flags_is_refused(tmp_path, major, flag, named):
    """mutagen writes every frame with its status flags cleared: a frame marked to be discarded once
    the tag is altered was kept, unmarked, and a read-only mark was dropped, without a word (it
    reads the same text back, so only the frame headers tell)."""
    marked = _id3_frame(b"TIT2", b"\x03Title", flags=flag, major=major)
    song = _mp3_with_id3(tmp_path / "song.mp3", _id3_frame(b"TPE1", b"\x03Ann", major=major), marked, major=major)
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=rf"frames that a rewrite would change: TIT2 \(flags mutagen drops: {named}"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


@pytest.mark.parametrize(
    "frame",
    [
        _id3_frame(b"TIT1", b"\x01" + "Grp".encode("utf-16-be")),
        _id3_frame(b"TXXX", b"\x01" + "FOO".encode("utf-16") + b"\0\0" + "bar".encode("utf-16-be")),
    ],
    ids=["TIT1", "TXXX value"],
)
def test_id3_utf16_text_without_a_byte_order_mark_is_refused(tmp_path, frame):
    """mutagen decodes such text as little-endian and writes it back with a byte order mark:
    big-endian text becomes garbage (ffprobe shows "䜀爀瀀" for "Grp"), read back the same."""
    song = _mp3_with_id3(tmp_path / "song.mp3", _id3_frame(b"TPE1", b"\x01" + "Ann".encode("utf-16") + b"\0\0"), frame)
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"would change: T[A-Z0-9]+ \(UTF-16 text without a byte order mark\)"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def test_id3v23_request_refuses_to_join_values_that_hold_a_slash(tmp_path):
    """ID3v2.3 joins multiple values with "/": ['AC/DC', 'Queen'] would read as three artists."""
    from mutagen.id3 import ID3

    song = _mp3_with_id3(tmp_path / "slash.mp3", _id3_frame(b"TPE1", b"\x03AC/DC\0Queen"))
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match="converting its ID3v2.4 tag to ID3v2.3 would lose TPE1"):
        tags.write_instruments(song, **WRITE, id3v23=True)
    assert song.read_bytes() == original
    plain = _mp3_with_id3(tmp_path / "plain.mp3", _id3_frame(b"TPE1", b"\x03Ann\0Bob"))
    tags.write_instruments(plain, **WRITE, id3v23=True)  # values without "/": joined, split again by readers
    assert ID3(str(plain)).version[1] == 3 and ID3(str(plain))["TPE1"].text == ["Ann/Bob"]


CHAPTER = b"ch1\0" + struct.pack(">IIII", 0, 1000, 0xFFFFFFFF, 0xFFFFFFFF) + _id3_frame(b"TIT2", b"\x03Chapter 1")


@pytest.mark.parametrize(
    "sub, named",
    [(_id3_frame(b"TIT3", b"\x09Intro"), "TIT3"),  # no such text encoding
     (_id3_frame(b"TIT3", b""), "TIT3"),  # empty
     (_id3_frame(b"WXXX", b"\x07x\0http://a.example/"), "WXXX")],  # fmt: skip
    ids=["bad encoding", "empty", "bad link"],
)
def test_id3_chapter_sub_frame_mutagen_cannot_read_is_refused(tmp_path, sub, named):
    """mutagen drops a CHAP sub-frame it cannot read, as it drops such a frame at the top level:
    the sub-frames are listed from the bytes too."""
    toc = _id3_frame(b"CTOC", b"toc\0\x03\x01ch1\0" + _id3_frame(b"TIT2", b"\x03Contents"))
    song = _mp3_with_id3(tmp_path / "song.mp3", toc, _id3_frame(b"CHAP", CHAPTER + sub))
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=f"CHAP 'ch1': its sub-frame {named} \\(mutagen cannot read it\\)"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original
    kept = _mp3_with_id3(tmp_path / "kept.mp3", toc, _id3_frame(b"CHAP", CHAPTER + _id3_frame(b"TIT3", b"\x03Intro")))
    tags.write_instruments(kept, **WRITE)
    assert tags.read_instruments(kept).instruments == ["bass", "guitar"]


# -- MP3 with an ID3v1 tag only -------------------------------------------------------------------

V1 = (b"TAG" + b"V1 Title".ljust(30, b"\0") + b"V1 Artist".ljust(30, b"\0") + b"V1 Album".ljust(30, b"\0") + b"2001"
      + b"a comment".ljust(28, b"\0") + b"\0\x07" + b"\x05")  # fmt: skip
"""An ID3v1.1 tag: title, artist, album, year, comment, track 7, genre 5 (Funk)."""


def _mp3_v1_only(path: Path) -> Path:
    _ffmpeg(path, "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_id3v1", "0", "-write_xing", "0")
    path.write_bytes(path.read_bytes() + V1)
    return path


@pytest.mark.parametrize("major", [3, 4])
def test_an_mp3_with_an_empty_id3v2_tag_keeps_showing_its_id3v1_fields(tmp_path, major):
    """An ID3v2 tag without frames (a tag editor's leftover once every field was cleared) beside an
    ID3v1 tag: players, ffmpeg and TagLib show the ID3v1 fields, as where there is no ID3v2 tag, and
    showed none once tagger's fields were in the ID3v2 tag (the ID3v1 fields were copied only where
    there was no ID3v2 tag at all). Found tagging MP3s with an empty ID3v2 tag. They are copied into
    it now, as into a new one; ffprobe and TagLib show the same title, artist and genre."""
    song = _mp3_with_id3(tmp_path / "song.mp3", major=major)
    song.write_bytes(song.read_bytes() + b"TAG" + b"v1 title".ljust(30, b"\0") + b"v1 artist".ljust(30, b"\0")
                     + bytes(64) + b"\x05")  # fmt: skip
    before = _ffprobe_tags(song)
    assert before == {"title": "v1 title", "artist": "v1 artist", "genre": "Funk"}
    assert tags.write_instruments(song, **WRITE).written
    assert {k: v for k, v in _ffprobe_tags(song).items() if "instruments" not in k} == before
    taglib = pytest.importorskip("taglib")
    with taglib.File(str(song)) as f:
        assert (f.tags["TITLE"], f.tags["ARTIST"], f.tags["GENRE"]) == (["v1 title"], ["v1 artist"], ["Funk"])
    tags.remove_instruments(song)
    assert _ffprobe_tags(song) == before


@pytest.mark.parametrize("id3v1", [False, True], ids=["APEv2 alone", "APEv2 and ID3v1"])
def test_an_mp3_whose_fields_are_in_an_apev2_tag_alone_is_left_unchanged(tmp_path, id3v1):
    """TagLib shows the first tag of an MP3 that holds anything, of its ID3v2, APEv2 and ID3v1 tags:
    the title, artist and ReplayGain of an MP3 whose only tag is APEv2 (old foobar2000, MP3Gain)
    stopped showing once tagger's ID3v2 tag was there (was: tagged, TagLib showing tagger's fields
    alone, or the ID3v1 fields tagger copies where there is an ID3v1 tag: the APEv2 title and
    artist hidden). Found tagging MP3s as these programs leave them. Left unchanged, saying why;
    one with an ID3v2 tag of its own is tagged as before."""
    from mutagen.apev2 import APEv2
    from mutagen.id3 import ID3, TIT2

    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0")
    ape = APEv2()
    ape["Title"], ape["Artist"], ape["REPLAYGAIN_TRACK_GAIN"] = "Ape title", "Ape artist", "-3.10 dB"
    ape.save(str(song))
    if id3v1:
        song.write_bytes(song.read_bytes() + b"TAG" + b"v1 title".ljust(30, b"\0") + bytes(94) + b"\x05")
    before = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"an APEv2 tag after its audio holds its fields \(Title, Artist\) and "
                                            r"no ID3v2 tag does: TagLib shows"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == before
    own = ID3()
    own.add(TIT2(encoding=3, text="ID3 title"))
    own.save(song, v1=1)
    assert tags.write_instruments(song, **WRITE).written


def test_an_mp3_whose_apev2_tag_holds_only_mp3gain_bookkeeping_is_tagged(tmp_path):
    """MP3Gain's MP3GAIN_MINMAX and MP3GAIN_UNDO items are its own bookkeeping, read by MP3Gain from
    the APEv2 tag itself, not fields anyone views: an MP3 whose APEv2 tag holds only these was refused
    as holding 'its fields (MP3GAIN_MINMAX, MP3GAIN_UNDO)' (de1577b), a file tagged before it. Found
    reviewing de1577b. Tagged, the APEv2 tag kept; beside a title they go unnamed."""
    from mutagen.apev2 import APEv2

    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0")
    ape = APEv2()
    ape["MP3GAIN_MINMAX"], ape["MP3GAIN_UNDO"] = "120,180", "+002,+002,N"
    ape.save(str(song))
    assert tags.write_instruments(song, **WRITE).written
    assert dict(APEv2(str(song))) == dict(ape)
    titled = _ffmpeg(tmp_path / "titled.mp3", "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0")
    ape["Title"] = "Ape title"
    ape.save(str(titled))
    with pytest.raises(TagWriteError, match=r"holds its fields \(Title\) and no ID3v2 tag does"):
        tags.write_instruments(titled, **WRITE)


REPLAYGAIN = {"REPLAYGAIN_TRACK_GAIN": "-3.10 dB", "REPLAYGAIN_TRACK_PEAK": "0.912345",
              "REPLAYGAIN_ALBUM_GAIN": "-2.50 dB", "REPLAYGAIN_ALBUM_PEAK": "0.988831"}  # fmt: skip
"""The ReplayGain items MP3Gain and foobar2000 write into an MP3's APEv2 tag."""


def _replaygain_seen(path: Path) -> dict[str, object]:
    """The ReplayGain of the file ``path`` as TagLib (its property map), mediafile and ffprobe read it."""
    import mediafile

    taglib = pytest.importorskip("taglib")
    with taglib.File(str(path)) as f:
        seen: dict[str, object] = {f"taglib {k}": v for k, v in f.tags.items() if k.startswith("REPLAYGAIN_")}
    media = mediafile.MediaFile(str(path))
    seen.update({f"mediafile {name}": getattr(media, name)
                 for name in ("rg_track_gain", "rg_track_peak", "rg_album_gain", "rg_album_peak")})  # fmt: skip
    seen.update({f"ffprobe {k}": v for k, v in _ffprobe_tags(path).items() if k.startswith("replaygain_")})
    return seen


@pytest.mark.parametrize("case", ["APEv2 alone", "lower-case keys, ID3v2.3", "and an ID3v1 tag"])
def test_an_mp3_whose_apev2_tag_holds_replaygain_alone_is_tagged_with_it_copied(tmp_path, case):
    """An MP3 without an ID3v2 tag whose APEv2 tag holds ReplayGain items and MP3Gain's undo (as
    MP3Gain and foobar2000 leave many MP3s) was refused since de1577b: TagLib shows an MP3's APEv2
    tag only while it has no ID3v2 tag, and the gain would have gone from its view. Found tagging
    such files. The ReplayGain items are copied into the new ID3v2 tag as TXXX:REPLAYGAIN_TRACK_GAIN
    etc. (mediafile's, TagLib's, ffmpeg's, foobar2000's and mpd's names), the APEv2 tag kept byte for
    byte: TagLib reads the same gain, mediafile and ffprobe (which read no APEv2 tag in an MP3) read
    it too; untag gives back the file. Beside any other item (a title) it is refused as before."""
    from mutagen.apev2 import APEv2
    from mutagen.id3 import ID3

    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0")
    ape = APEv2()
    for key, value in REPLAYGAIN.items():
        ape[key.lower() if case.startswith("lower") else key] = value
    ape["MP3GAIN_MINMAX"], ape["MP3GAIN_UNDO"] = "120,180", "+002,+002,N"
    ape.save(str(song))
    if case == "and an ID3v1 tag":
        song.write_bytes(song.read_bytes() + V1)
    original = song.read_bytes()
    before = _replaygain_seen(song)
    assert before["taglib REPLAYGAIN_TRACK_GAIN"] == ["-3.10 dB"] and before["mediafile rg_track_gain"] is None

    id3v23 = case.endswith("ID3v2.3")
    assert tags.write_instruments(song, id3v23=id3v23, **WRITE).written
    data = song.read_bytes()
    assert data[:3] == b"ID3" and data[3] == (3 if id3v23 else 4)
    assert data.endswith(original)  # an ID3v2 tag in front, the audio and the APEv2 tag (ID3v1 too) byte for byte
    frames = ID3(str(song), load_v1=False, translate=False)
    assert {key: str(frames[f"TXXX:{key}"]) for key in REPLAYGAIN} == REPLAYGAIN
    after = _replaygain_seen(song)
    assert {k: v for k, v in after.items() if k.startswith("taglib")} == {
        k: v for k, v in before.items() if k.startswith("taglib")}  # fmt: skip
    assert (after["mediafile rg_track_gain"], after["mediafile rg_track_peak"], after["mediafile rg_album_gain"],
            after["mediafile rg_album_peak"]) == (-3.10, 0.912345, -2.50, 0.988831)  # fmt: skip
    assert {k.split()[1]: v for k, v in after.items() if k.startswith("ffprobe")} == {
        k.lower(): v for k, v in REPLAYGAIN.items()}  # fmt: skip
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]

    tags.remove_instruments(song)
    if case == "and an ID3v1 tag":  # the frames copied from the ID3v1 tag stay, as where it is alone (documented)
        assert song.read_bytes().endswith(original) and _ffprobe_tags(song)["title"] == "V1 Title"
    else:
        assert song.read_bytes() == original
        assert _replaygain_seen(song) == before

    titled = _ffmpeg(tmp_path / "titled.mp3", "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0")
    ape["Title"] = "Ape title"
    ape.save(str(titled))
    kept = titled.read_bytes()
    with pytest.raises(TagWriteError, match=r"holds its fields \(Title\) and no ID3v2 tag does"):
        tags.write_instruments(titled, **WRITE)
    assert titled.read_bytes() == kept


def test_untag_keeps_replaygain_frames_that_no_longer_copy_the_apev2_tag(tmp_path):
    """untag removes the ReplayGain frames tagger copied from an MP3's APEv2 tag, with the ID3v2 tag,
    only while they still copy it: once another program changed either (MP3Gain run again), they
    are that program's and stay, tagger's fields alone removed."""
    from mutagen.apev2 import APEv2
    from mutagen.id3 import ID3

    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0")
    ape = APEv2()
    ape.update(REPLAYGAIN)
    ape.save(str(song))
    assert tags.write_instruments(song, **WRITE).written
    ape = APEv2(str(song))
    ape["REPLAYGAIN_TRACK_GAIN"] = "-4.00 dB"
    ape.save(str(song))
    tags.remove_instruments(song)
    frames = ID3(str(song), load_v1=False, translate=False)
    assert sorted(frames.keys()) == sorted(f"TXXX:{key}" for key in REPLAYGAIN)
    assert str(frames["TXXX:REPLAYGAIN_TRACK_GAIN"]) == "-3.10 dB"


@pytest.mark.parametrize("id3v23", [False, True], ids=["v2.4", "v2.3"])
def test_the_replaygain_frames_a_write_copies_are_listed_and_a_users_own_stay_at_untag(tmp_path, id3v23):
    """A user's own TXXX:REPLAYGAIN_* frames equal to MP3Gain's APEv2 items (foobar2000 writes both), in an
    ID3v2 tag holding nothing else, were taken by untag for the copies tagger makes and removed, the
    ID3v2 tag with them. Found by the review of 264b8e6 (its APEv2 twin). The frames tagger copies are
    listed in TXXX:INSTRUMENTS_COPIES (joined by / in ID3v2.3), which untag removes with them (the file
    back byte for byte); frames no such list names stay, byte for byte."""
    from mutagen.apev2 import APEv2
    from mutagen.id3 import ID3, TXXX

    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame", "-id3v2_version", "0", "-write_xing", "0")
    ape = APEv2()
    ape.update(REPLAYGAIN)
    ape.save(str(song))
    original = song.read_bytes()
    assert tags.write_instruments(song, id3v23=id3v23, **WRITE).written
    listed = ID3(str(song), load_v1=False, translate=False)["TXXX:INSTRUMENTS_COPIES"]
    assert sorted("/".join(map(str, listed.text)).split("/")) == sorted(REPLAYGAIN)
    assert tags.remove_instruments(song).written and song.read_bytes() == original

    own = ID3()
    for key, value in REPLAYGAIN.items():
        own.add(TXXX(encoding=3, desc=key, text=value))
    own.save(str(song), v2_version=3 if id3v23 else 4)
    users = song.read_bytes()
    assert tags.write_instruments(song, id3v23=id3v23, **WRITE).written
    assert "TXXX:INSTRUMENTS_COPIES" not in ID3(str(song), load_v1=False, translate=False)
    assert tags.remove_instruments(song).written
    assert song.read_bytes() == users


@pytest.mark.parametrize("id3v23", [False, True], ids=["v2.4", "v2.3"])
def test_id3v1_only_mp3_keeps_showing_its_fields_after_tag_and_untag(tmp_path, id3v23):
    """ffmpeg (and players) read the ID3v1 tag only where there is no ID3v2 tag: the ID3v2 tag
    tagger adds carries the ID3v1 fields, and the ID3v1 tag stays as it is."""
    from mutagen.id3 import ID3

    song = _mp3_v1_only(tmp_path / "v1.mp3")
    original = song.read_bytes()
    shown = _ffprobe_tags(song)
    assert {shown["title"], shown["artist"], shown["album"]} == {"V1 Title", "V1 Artist", "V1 Album"}
    decoded = _decoded_md5(song)

    tags.write_instruments(song, id3v23=id3v23, **WRITE)
    data = song.read_bytes()
    assert data[:3] == b"ID3" and data[3] == (3 if id3v23 else 4)
    assert data[-128:] == V1  # the ID3v1 tag byte for byte
    assert data.endswith(original)  # the audio frames too: only an ID3v2 tag came in front
    after = _ffprobe_tags(song)
    assert {k: after[k] for k in shown} == shown
    assert after["instruments"].startswith("bass")  # (ffprobe shows the first value, or the v2.3 "/" join)
    assert _decoded_md5(song) == decoded
    frames = ID3(str(song), load_v1=False, translate=False)
    assert sorted(frames.keys()) == sorted(["TIT2", "TPE1", "TALB", "TYER" if id3v23 else "TDRC", "COMM::eng",
                                            "TRCK", "TCON", "TXXX:INSTRUMENTS", "TXXX:INSTRUMENTS_MODEL"])  # fmt: skip
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]

    # untag removes our fields only: the frames carried from the ID3v1 tag stay (documented)
    tags.remove_instruments(song)
    assert _ffprobe_tags(song) == shown
    assert song.read_bytes()[-128:] == V1 and song.read_bytes().endswith(original)
    assert "TIT2" in ID3(str(song), load_v1=False) and not tags.read_instruments(song).tagged


# -- owner, group, folder ------------------------------------------------------------------------

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (files of other users)")


@contextlib.contextmanager
def _as_user(uid: int, gid: int, groups: list[int]):
    """Run the block with these effective user, group and supplementary groups (root only)."""
    before = os.getgroups()
    os.setgroups(groups)
    os.setegid(gid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
        os.setgroups(before)


@pytest.fixture
def shared_folder():
    """A folder every user can reach (pytest's own are root's only), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="tagger-shared-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_owner_that_cannot_be_given_away_keeps_the_group(tmp_path, monkeypatch):
    from tagger.tags import filesystem

    song = _ffmpeg(tmp_path / "song.flac", "-c:a", "flac")
    calls = []

    def chown(path, uid, gid):
        calls.append((uid, gid))
        if uid != -1:
            raise PermissionError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "chown", chown)
    filesystem.copy_owner(str(song), SimpleNamespace(st_uid=4242, st_gid=4343))
    assert calls == [(4242, 4343), (-1, 4343)]  # the owner refused: the group at least


@needs_root
@pytest.mark.parametrize("mode", [0o664, 0o2775], ids=["0664", "setgid 2775"])
def test_group_member_tagging_a_shared_file_keeps_its_group_and_mode(shared_folder, mode):
    """alice (1001) owns the file, group music (2345); bob (1002, a member of music) tags it: he
    becomes its owner (only root may give a file away) but the group and mode stay, so alice and
    the group can still write it."""
    alice, bob, music = 1001, 1002, 2345
    lib = shared_folder / "lib"
    lib.mkdir()
    song = _ffmpeg(lib / "song.flac", "-c:a", "flac")
    tags.read_instruments(song)  # (modules loaded while the standard library is still readable)
    os.chown(lib, alice, music)
    lib.chmod(0o775)
    os.chown(song, alice, music)
    song.chmod(mode)
    with _as_user(bob, bob, [music]):
        tags.write_instruments(song, **WRITE)
    st = song.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (bob, music, mode)
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


@needs_root
def test_file_in_a_read_only_folder_is_skipped_even_for_root(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    song = _ffmpeg(folder / "song.flac", "-c:a", "flac")
    original, inode = song.read_bytes(), song.stat().st_ino
    folder.chmod(0o555)
    try:
        with pytest.raises(TagWriteError, match="is not writable"):
            tags.write_instruments(song, **WRITE)
        with pytest.raises(TagWriteError, match="is not writable"):
            tags.write_instruments(song, dry_run=True, **WRITE)
    finally:
        folder.chmod(0o755)
    assert song.read_bytes() == original and song.stat().st_ino == inode


# -- fields of our names that tagger did not write ------------------------------------------------


def _foreign_field(path: Path, name: str, *, model: bool = False) -> Path:
    """A tone file with a user's own field ``name`` = "Piano, Tenor Saxophone" (and, with
    ``model``, an INSTRUMENTS_MODEL beside it, as tagger writes)."""
    import mutagen
    from mutagen.asf import ASFUnicodeAttribute
    from mutagen.id3 import TXXX
    from mutagen.mp4 import MP4FreeForm

    ext = path.suffix[1:]
    codecs = {**CODECS, "mp3": ["-c:a", "libmp3lame"], "m4a": ["-c:a", "aac"], "wma": ["-c:a", "wmav2"]}
    _ffmpeg(path, *codecs[ext])
    audio = mutagen.File(str(path))
    if audio.tags is None:
        audio.add_tags()
    fields = {name: "Piano, Tenor Saxophone", **({"INSTRUMENTS_MODEL": "ova-old"} if model else {})}
    for key, value in fields.items():
        if ext == "mp3":
            audio.tags.add(TXXX(encoding=3, desc=key, text=[value]))
        elif ext == "m4a":
            audio.tags["----:com.apple.iTunes:" + key] = [MP4FreeForm(value.encode())]
        elif ext == "wma":
            audio.tags[key] = [ASFUnicodeAttribute(value)]
        else:
            audio.tags[key] = [value]
    audio.save()
    return path


@pytest.mark.parametrize(
    "ext, name",
    [("flac", "INSTRUMENTS"), ("flac", "instruments"), ("ogg", "INSTRUMENTS_SCORES"), ("mp3", "INSTRUMENTS"),
     ("m4a", "INSTRUMENTS"), ("wma", "INSTRUMENTS")],  # fmt: skip
)
def test_our_field_names_without_a_model_are_not_taken_over(tmp_path, ext, name):
    """A user's own INSTRUMENTS field (no INSTRUMENTS_MODEL beside it): tag refuses, untag leaves it."""
    song = _foreign_field(tmp_path / f"song.{ext}", name)
    original = song.read_bytes()
    assert not tags.read_instruments(song).tagged
    with pytest.raises(TagWriteError, match=f"its {name.upper()} field was not written by tagger"):
        tags.write_instruments(song, **WRITE)
    with pytest.raises(TagWriteError, match="not written by tagger"):
        tags.write_instruments(song, dry_run=True, **WRITE)
    change = tags.remove_instruments(song)
    assert not change.changed and not change.written
    assert song.read_bytes() == original


@pytest.mark.parametrize("ext", ["mp3", "m4a", "wma"])
def test_lower_case_names_in_case_sensitive_containers_are_someone_elses(tmp_path, ext):
    """ID3 TXXX descriptions, MP4 freeform names and ASF attributes tell case apart: only the
    upper-case names tagger writes are ours, even beside an INSTRUMENTS_MODEL; a field named like
    ours in another case is someone else's, which readers that ignore case (mediafile) would mix
    up with ours: tag refuses the file (was: wrote its own field beside it), untag leaves it."""
    song = _foreign_field(tmp_path / f"song.{ext}", "instruments", model=True)
    name = {"mp3": "TXXX:instruments", "m4a": "----:com.apple.iTunes:instruments", "wma": "instruments"}[ext]
    original = song.read_bytes()
    assert tags.read_instruments(song).instruments == []
    with pytest.raises(TagWriteError, match=f"its {name} field was not written by tagger"):
        tags.write_instruments(song, **WRITE)
    tags.remove_instruments(song)  # removes the INSTRUMENTS_MODEL, leaves the lower-case field
    import mutagen

    keys = [k for k in (mutagen.File(str(song)).tags.keys()) if "instruments" in k.lower()]
    assert keys == [name] and song.read_bytes() != original


@pytest.mark.parametrize("key", ["----:com.foo:INSTRUMENTS", "----:com.apple.itunes:INSTRUMENTS"])
def test_mp4_freeform_fields_of_our_names_under_another_mean_are_someone_elses(tmp_path, key):
    """An MP4 freeform atom named like ours under another mean than com.apple.iTunes (another
    tool's, or a lower-case mean) is someone else's: ffmpeg shows freeform atoms by their name alone,
    the last of a name, so ours beside it hid its value (was: written beside it, ffprobe showing
    INSTRUMENTS=guitar where it had shown the user's Piano); tag refuses, untag leaves it."""
    import mutagen
    from mutagen.mp4 import MP4FreeForm

    song = _ffmpeg(tmp_path / "song.m4a", "-c:a", "aac")
    audio = mutagen.File(str(song))
    audio.tags[key] = [MP4FreeForm(b"Piano")]
    audio.save()
    original = song.read_bytes()
    assert _ffprobe_tags(song)["instruments"] == "Piano"
    with pytest.raises(TagWriteError, match=f"its {key} field was not written by tagger"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original
    change = tags.remove_instruments(song)
    assert not change.written and song.read_bytes() == original


@pytest.mark.parametrize("key", ["INSTRUMENTS", "instruments_scores"])
def test_mp4_mdta_keys_of_our_names_are_someone_elses(tmp_path, key):
    """ffmpeg keeps a field it has no MP4 atom for only with ``-movflags use_metadata_tags``, as an item
    of a ``meta`` atom of the ``mdta`` handler named by its ``keys`` atom, which mutagen reads as an
    atom named by the key's index and ffmpeg by the key: the user's ``INSTRUMENTS=Piano`` so written was
    taken for nobody's, tagger's freeform atom written beside it, and ffprobe still showed Piano (the
    last of a name). Such a key is someone else's: tag refuses the file naming it, untag leaves it."""
    song = _ffmpeg(tmp_path / "song.m4a", "-c:a", "aac", "-movflags", "use_metadata_tags", "-metadata", f"{key}=Piano")
    original = song.read_bytes()
    assert _ffprobe_tags(song)[key.lower()] == "Piano"
    with pytest.raises(TagWriteError, match=f"its mdta:{key} field was not written by tagger"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original
    change = tags.remove_instruments(song)
    assert not change.written and song.read_bytes() == original


def test_mp4_fields_of_our_names_refused_for_where_they_are_say_where_ours_are(tmp_path):
    """A file tagger tagged and ffmpeg then remuxed with ``-movflags use_metadata_tags`` holds tagger's own
    fields, in upper case with INSTRUMENTS_MODEL beside them, as mdta keys, which tag refuses (someone
    else's: mutagen cannot change them); the refusal said 'tagger writes its fields in upper case, with
    INSTRUMENTS_MODEL beside them', which these are, and so said of an upper-case ``----:com.foo:INSTRUMENTS``
    (found reviewing 8882d9b and c9fb921). It names where tagger's are in MP4, and for mdta keys what wrote
    them and how they go; ffmpeg without the flag does leave them out."""
    import mutagen
    from mutagen.mp4 import MP4FreeForm

    song = _ffmpeg(tmp_path / "song.m4a", "-c:a", "aac")
    tags.write_instruments(song, **WRITE)
    remuxed = tmp_path / "remuxed.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(song), "-c", "copy", "-movflags",
                    "use_metadata_tags", str(remuxed)], check=True)  # fmt: skip
    assert _ffprobe_tags(remuxed)["instruments_model"] == "ova-test-1"
    original = remuxed.read_bytes()
    with pytest.raises(TagWriteError) as refused:
        tags.write_instruments(remuxed, **WRITE)
    assert "mdta:INSTRUMENTS field" in str(refused.value) or "mdta:INSTRUMENTS and" in str(refused.value)
    assert "freeform atoms ----:com.apple.iTunes:NAME alone" in str(refused.value)
    assert "-movflags use_metadata_tags" in str(refused.value) and remuxed.read_bytes() == original
    plain = tmp_path / "plain.m4a"
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-i", str(remuxed), "-c", "copy", str(plain)], check=True)
    assert "instruments" not in _ffprobe_tags(plain)
    tags.write_instruments(plain, **WRITE)
    audio = mutagen.File(str(song))
    audio.tags["----:com.foo:INSTRUMENTS"] = [MP4FreeForm(b"Piano")]
    audio.save()
    with pytest.raises(TagWriteError, match=r"in an MP4 file as freeform atoms ----:com\.apple\.iTunes:NAME alone\)") as refused:
        tags.write_instruments(song, instruments=["bass"], model_version="ova-test-2")
    assert "mdta" not in str(refused.value)


def test_mp4_mdta_keys_of_other_names_are_kept_beside_ours(tmp_path):
    song = _ffmpeg(tmp_path / "song.m4a", "-c:a", "aac", "-movflags", "use_metadata_tags", "-metadata", "mood=Calm")
    tags.write_instruments(song, **WRITE)
    assert _ffprobe_tags(song)["mood"] == "Calm" and _ffprobe_tags(song)["instruments"] == "bass"


def test_our_fields_with_a_model_in_any_vorbis_case_are_ours(tmp_path):
    song = _foreign_field(tmp_path / "song.flac", "instruments", model=True)
    assert tags.read_instruments(song).instruments == ["piano, tenor saxophone"]
    tags.write_instruments(song, **WRITE)
    import mutagen

    def fields():
        return sorted(k for k, _ in mutagen.File(str(song)).tags if k.upper().startswith("INSTRUMENTS"))

    assert fields() == ["INSTRUMENTS", "INSTRUMENTS", "INSTRUMENTS_MODEL"]  # the lower-case one replaced
    tags.remove_instruments(song)
    assert fields() == []


# -- the values tagger writes ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["a\x00b", "m-1\x07", "m\ud800x"], ids=["NUL", "BEL", "lone surrogate"])
def test_model_version_with_a_control_character_is_refused_up_front(tmp_path, version):
    """A NUL ends the text for ffprobe and most ID3, MP4 and ASF readers ("a" for "a\\0b")."""
    song = _ffmpeg(tmp_path / "song.flac", "-c:a", "flac")
    original = song.read_bytes()
    with pytest.raises(UserError, match="model version cannot hold a control character"):
        tags.write_instruments(song, instruments=["guitar"], model_version=version)
    assert song.read_bytes() == original
    listing = tmp_path / "pred.jsonl"
    listing.write_text(json.dumps({"path": str(song), "instruments": ["guitar"], "model_version": version}) + "\n")
    with pytest.raises(UserError, match=r"pred.jsonl line 1: .*song.flac: a model version cannot hold"):
        tags.read_predictions_jsonl(listing)


def test_model_families_differing_in_case_or_spaces_are_the_canonical_ones(tmp_path):
    """A model whose manifest says "Guitar" (or " vocal") tags "guitar", its scores included."""
    song = _ffmpeg(tmp_path / "song.flac", "-c:a", "flac")
    tags.write_instruments(song, instruments=["Guitar"], model_version="m-1", scores={"Guitar": 0.8, " vocal": 0.1},
                           families=("Guitar", " Vocal "))  # fmt: skip
    state = tags.read_instruments(song)
    assert state.instruments == ["guitar"] and state.scores == {"guitar": 0.8, "vocal": 0.1}
    listing = tmp_path / "pred.jsonl"
    listing.write_text(json.dumps(predicted(song, instruments=["Guitar"], model_version="m-1",
                                            families=["Guitar", "Vocal"])) + "\n")  # fmt: skip
    (pred,) = tags.read_predictions_jsonl(listing)
    assert pred.families == ("guitar", "vocal")
    with pytest.raises(UserError, match="two different scores for the family 'guitar'"):
        tags.write_instruments(song, instruments=["guitar"], model_version="m-1", scores={"guitar": 0.9, "Guitar": 0.2},
                               families=("guitar", "Guitar"))  # fmt: skip


def test_an_ffmpeg_wma_with_an_artist_is_tagged(tmp_path):
    """ffmpeg's ASF muxer writes the artist twice (Content Description and Extended Content
    Description); mutagen moves the twin into the Metadata Library with language and stream 0, which
    an Extended Content attribute means without saying (was: 'other tags changed', every such file
    refused)."""
    song = _ffmpeg(tmp_path / "song.wma", "-c:a", "wmav2", "-metadata", "artist=Someone", "-metadata", "title=Song")
    before, audio = _ffprobe_tags(song), _decoded_md5(song)
    tags.write_instruments(song, **WRITE)
    after = _ffprobe_tags(song)
    assert {k: v for k, v in after.items() if not k.startswith("instruments")} == before
    assert before["artist"] == "Someone" and _decoded_md5(song) == audio
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]


def _v23_frame(fid: bytes, data: bytes) -> bytes:
    return fid + struct.pack(">I", len(data)) + b"\0\0" + data


def _prepend_v23_tag(song: Path, frames: bytes, *, flags: int = 0) -> None:
    """Put an ID3v2.3 tag of these frames (and 32 bytes of padding) before the file's bytes."""
    body = frames + bytes(32)
    size = bytes((len(body) >> shift) & 0x7F for shift in (21, 14, 7, 0))
    song.write_bytes(b"ID3\x03\x00" + bytes([flags]) + size + body + song.read_bytes())


def test_an_id3v23_tag_with_utf8_or_utf16be_text_is_tagged_with_the_same_text(tmp_path):
    """ID3v2.3 has no UTF-8 (3) nor UTF-16BE (2) text encoding, but many programs write them in v2.3
    tags all the same, and every reader reads them; mutagen writes such text as UTF-16 (1), the same
    text, which the verification took for a change: every such file was refused after the write,
    `verification failed: other tags changed`. Found writing frames of each text encoding in tags
    of each version. Now tagged: ffprobe, TagLib and mutagen read the same text, and so after untag."""
    from mutagen.id3 import ID3

    frames = [_id3_frame(b"TIT2", b"\x03Caf\xc3\xa9", major=3), _id3_frame(b"TPE1", b"\x02" + "Édith".encode("utf-16-be"), major=3),
              _id3_frame(b"COMM", b"\x03eng\0d\xc3\xa9j\xc3\xa0", major=3), _id3_frame(b"TALB", b"\x00Album", major=3)]  # fmt: skip
    song = _mp3_with_id3(tmp_path / "song.mp3", *frames, major=3)

    def texts():
        return sorted((key, [str(t) for t in frame.text]) for key, frame in ID3(song).items() if "INSTRUMENTS" not in key)

    before, shown = texts(), _ffprobe_tags(song)
    assert shown["title"] == "Café" and shown["artist"] == "Édith" and shown["comment"] == "déjà"
    assert tags.write_instruments(song, **WRITE).written
    assert texts() == before and {k: v for k, v in _ffprobe_tags(song).items() if "instruments" not in k} == shown
    assert song.read_bytes()[3] == 3 and tags.read_instruments(song).instruments == ["bass", "guitar"]
    taglib = pytest.importorskip("taglib")
    with taglib.File(str(song)) as f:
        assert (f.tags["TITLE"], f.tags["ARTIST"], f.tags["COMMENT"]) == (["Café"], ["Édith"], ["déjà"])
    tags.remove_instruments(song)
    assert texts() == before and _ffprobe_tags(song) == shown


def _ffprobe_chapters(path) -> list[dict]:
    """The chapters ffprobe reads in ``path`` (their times and tags)."""
    out = subprocess.run(["ffprobe", "-v", "error", "-show_chapters", "-of", "json", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return json.loads(out)["chapters"]


def test_an_id3v23_chapter_with_utf8_titles_is_tagged_with_the_same_chapters(tmp_path):
    """The same for the sub-frames of a chapter (podcasts: CHAP frames with their titles), which the
    verification compared with their encoding (was: `verification failed: other tags changed
    ('CHAP:c1')`)."""
    title = _id3_frame(b"TIT2", b"\x03Kapitel \xc3\xa9ins", major=3)
    chapter = _id3_frame(b"CHAP", b"c1\0" + struct.pack(">4I", 0, 500, 2**32 - 1, 2**32 - 1) + title, major=3)
    song = _mp3_with_id3(tmp_path / "song.mp3", _id3_frame(b"TIT2", b"\x00Podcast", major=3), chapter, major=3)

    before = _ffprobe_chapters(song)
    assert before[0]["tags"]["title"] == "Kapitel éins"
    assert tags.write_instruments(song, **WRITE).written
    assert _ffprobe_chapters(song) == before and _ffprobe_tags(song)["title"] == "Podcast"


@pytest.mark.parametrize("major", [3, 4])
def test_a_chapter_whose_sub_frames_mutagen_sorts_is_tagged_with_the_same_chapters(tmp_path, major):
    """mutagen writes a chapter's sub-frames sorted (the title first, then by size): a chapter whose
    link (WXXX) came before its title was refused, `verification failed: other tags changed
    ('CHAP:c1')`. Found once that refusal named the frame. Its sub-frames are one of each kind, so
    their order changes no chapter as readers show it: tagged, ffprobe reading the same chapters."""
    text = b"\x03" if major == 4 else b"\x00"
    subs = _id3_frame(b"WXXX", b"\x00\0http://chapter.example/a/long/link", major=major)
    subs += _id3_frame(b"TIT2", text + b"One", major=major)
    chapter = _id3_frame(b"CHAP", b"c1\0" + struct.pack(">4I", 0, 500, 2**32 - 1, 2**32 - 1) + subs, major=major)
    song = _mp3_with_id3(tmp_path / "song.mp3", _id3_frame(b"TIT2", text + b"Podcast", major=major), chapter, major=major)

    before = _ffprobe_chapters(song)
    assert before[0]["tags"]["title"] == "One"
    assert tags.write_instruments(song, **WRITE).written
    assert _ffprobe_chapters(song) == before and tags.read_instruments(song).instruments == ["bass", "guitar"]


def _frame_order(path: Path) -> list[bytes]:
    """The IDs of the frames of the ID3v2.3/2.4 tag an MP3 starts with, in the order of its bytes."""
    data = path.read_bytes()
    end, pos, ids = 10 + _tag_size(data[6:10]), 10, []
    while pos + 10 <= end and data[pos : pos + 4].strip(b"\0"):
        size = _tag_size(data[pos + 4 : pos + 8]) if data[3] == 4 else struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        ids.append(data[pos : pos + 4])
        pos += 10 + size
    return ids


@pytest.mark.parametrize("major", [3, 4])
def test_id3_frames_stay_in_their_order_so_readers_show_the_same_first_value(tmp_path, major):
    """mutagen writes an ID3 tag's frames sorted (a few text frames first, then by size): of two
    comments in different languages, ffmpeg (and the players built on it) showed the shorter one as
    the file's comment after a tag write, and TagLib listed two comments, two artist URLs (WOAR) and
    lyrics in two languages the other way round. Found comparing ffprobe's and TagLib's view of
    frames written in a foreign order. The frames keep the file's order now, tagger's last; `untag`
    leaves them in it."""
    lang = (lambda text: b"\x00" + text) if major == 3 else (lambda text: b"\x03" + text)
    frames = [_id3_frame(b"TPE1", lang(b"Artist"), major=major), _id3_frame(b"TIT2", lang(b"Song"), major=major),
              _id3_frame(b"COMM", lang(b"eng\0") + b"the comment a player shows", major=major),
              _id3_frame(b"COMM", lang(b"deu\0") + b"kurz", major=major),
              _id3_frame(b"WOAR", b"http://artist.example.com/home", major=major),
              _id3_frame(b"WOAR", b"http://a.example", major=major),
              _id3_frame(b"USLT", lang(b"eng\0") + b"la la la la", major=major),
              _id3_frame(b"USLT", lang(b"deu\0") + b"la", major=major)]  # fmt: skip
    song = _mp3_with_id3(tmp_path / "song.mp3", *frames, major=major)
    order = _frame_order(song)
    assert _ffprobe_tags(song)["comment"] == "the comment a player shows"
    tags.write_instruments(song, **WRITE)
    assert _frame_order(song) == order + [b"TXXX", b"TXXX"]
    assert _ffprobe_tags(song)["comment"] == "the comment a player shows"
    taglib = pytest.importorskip("taglib")
    with taglib.File(str(song)) as f:
        assert f.tags["COMMENT"] == ["the comment a player shows", "kurz"]
        assert f.tags["ARTISTWEBPAGE"] == ["http://artist.example.com/home", "http://a.example"]
    tags.remove_instruments(song)
    assert _frame_order(song) == order and _ffprobe_tags(song)["comment"] == "the comment a player shows"


@pytest.mark.parametrize("version", [3, 4])
def test_empty_id3_frames_lose_nothing_and_do_not_stop_a_write(tmp_path, version):
    """Frames holding nothing, which mutagen drops as it loads them: an old Picard's empty TIPL and
    TMCL (v2.4, the encoding byte alone), TagLib's empty text frames (v2.3, the encoding byte alone,
    or no content at all), or drops once written (an empty string). Dropping them loses nothing
    (was: the file refused as losing them, or as 'other tags changed')."""
    from mutagen.id3 import ID3, TIPL, TIT2, TMCL

    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame")
    if version == 4:
        tag = ID3()
        tag.add(TIT2(encoding=3, text=["Song"]))
        tag.add(TIPL(encoding=3, people=[]))
        tag.add(TMCL(encoding=3, people=[]))
        tag.save(str(song), v2_version=4)
    else:
        frames = _v23_frame(b"TIT2", b"\0Song") + _v23_frame(b"TCOM", b"\x01") + _v23_frame(b"TPE2", b"")
        frames += _v23_frame(b"TCON", b"\0\0")  # an empty string: loaded, then written as nothing
        _prepend_v23_tag(song, frames)
    before, audio = _ffprobe_tags(song), _decoded_md5(song)
    assert before["title"] == "Song"
    tags.write_instruments(song, **WRITE)
    after = _ffprobe_tags(song)
    assert {k: v for k, v in after.items() if not k.startswith("instruments")} == before
    assert _decoded_md5(song) == audio and tags.read_instruments(song).instruments == ["bass", "guitar"]


def test_an_id3_extended_header_flag_without_the_header_is_read_as_mutagen_reads_it(tmp_path):
    """Some writers set the extended-header flag with no extended header (mutagen reads the frames
    that follow): the frame walk took the first frame's ID for the header's size and raised
    ValueError, which stopped `tag` and aborted every scan that wrote tags."""
    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame")
    _prepend_v23_tag(song, _v23_frame(b"TIT2", b"\0Song"), flags=0x40)
    tags.write_instruments(song, **WRITE)
    assert tags.read_instruments(song).instruments == ["bass", "guitar"] and _ffprobe_tags(song)["title"] == "Song"


def test_a_non_text_frame_mutagen_cannot_read_is_still_a_loss(tmp_path):
    """Only text frames that hold nothing lose nothing: a WXXX without its URL is dropped by mutagen
    and must refuse the file (the empty-frame rule had counted every non-text frame as empty)."""
    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame")
    _prepend_v23_tag(song, _v23_frame(b"TIT2", b"\0Song") + _v23_frame(b"WXXX", b"\0"))
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"would lose \(WXXX\)"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def test_a_text_frame_of_several_empty_values_is_written_back(tmp_path):
    """TPE1 ['', ''] joins to a NUL, which mutagen writes back: not an empty frame (was: refused by
    the post-write check, the frame left out of what the copy must hold)."""
    from mutagen.id3 import ID3, TPE1, TIT2

    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame")
    tag = ID3()
    tag.add(TIT2(encoding=3, text=["Song"]))
    tag.add(TPE1(encoding=3, text=["", ""]))
    tag.save(str(song), v2_version=4)
    tags.write_instruments(song, **WRITE)
    assert ID3(str(song))["TPE1"].text == ["", ""]


def test_an_unforeseen_error_reading_a_file_is_one_tag_error(tmp_path, monkeypatch):
    """mutagen and tagger's own byte checks can raise IndexError, KeyError, struct.error on files
    malformed in ways nobody foresaw: a TagWriteError naming the file, never a traceback (which
    stopped `tag` and aborted the scan)."""
    from tagger.tags import storage

    song = _ffmpeg(tmp_path / "song.flac", *CODECS["flac"])
    for error in (IndexError("index out of range"), KeyError(65282), struct.error("unpack")):
        def boom(self, audio, error=error):
            raise error

        monkeypatch.setattr(storage.VorbisStorage, "get", boom)
        with pytest.raises(TagWriteError, match=f"cannot read its tags \\({type(error).__name__}"):
            tags.write_instruments(song, **WRITE)


# -- APEv2 (WavPack) --------------------------------------------------------------------------------


def _ape_tag(items: list[tuple[bytes, int, bytes]], *, version: int = 2000, header: bool = False) -> bytes:
    """An APE tag (a footer, and a header when asked) holding ``items`` (key, flags, value) as given."""
    body = b"".join(struct.pack("<2I", len(value), flags) + key + b"\0" + value for key, flags, value in items)

    def block(flags: int) -> bytes:
        return b"APETAGEX" + struct.pack("<4I", version, len(body) + 32, len(items), flags) + b"\0" * 8

    return (block(0xA0000000) if header else b"") + body + block(0x80000000 if header else 0)


_ID3V1 = b"TAG" + b"Blue".ljust(30, b"\0") + b"Ann".ljust(30, b"\0") + bytes(64) + b"\x05"
_EMPTY_ID3V1 = b"TAG" + bytes(124) + b"\xff"  # (no title, ..., no genre)
_LYRICS3V2 = b"LYRICSBEGIN" + b"IND00003110" + b"%06dLYRICS200" % 22

APE_CASES = {
    # case: (the tag's bytes after the audio, what the refusal names)
    "read-only item": (_ape_tag([(b"Title", 1, b"Blue"), (b"Artist", 0, b"Ann")]), "'Title'"),
    "repeated key": (_ape_tag([(b"Artist", 0, b"Ann"), (b"ARTIST", 0, b"Bob")]), "'Artist'"),
    "APEv1 tag": (_ape_tag([(b"Title", 0, b"Blue")], version=1000), "version 1"),
    "ID3v1 behind a Lyrics3v2 block after the APE tag": (_ape_tag([(b"Title", 0, b"Blue")]) + _LYRICS3V2 + _ID3V1,
                                                         "ID3v1 tag behind a Lyrics3 block"),
    "ID3v1 behind an extended ID3v1 block": (b"TAG+" + bytes(223) + _ID3V1, "extended ID3v1 (TAG+)"),
    # mutagen writes the header and footer anew: flags "has a header" alone, zeros in the reserved bytes
    "read-only tag": (_ape_tag([(b"Title", 0, b"Blue")])[:-12] + struct.pack("<I", 1) + bytes(8),
                      "footer's flags 0x00000001 (read only)"),
    "read-only tag with a header": (_ape_tag([(b"Title", 0, b"Blue")], header=True).replace(
        struct.pack("<I", 0x80000000) + bytes(8), struct.pack("<I", 0x80000001) + bytes(8)), "(read only, has a header)"),
    "footer's reserved bytes": (_ape_tag([(b"Title", 0, b"Blue")])[:-8] + b"abcdefgh", "reserved bytes 6162636465666768"),
    "a header that disagrees with its footer": (
        (lambda t: t[:16] + struct.pack("<I", 5) + t[20:])(_ape_tag([(b"Title", 0, b"Blue")], header=True)),
        "header's version, size and item count 2000/50/5, which disagree with its footer's 2000/50/1"),
    "an item flag mutagen does not know": (_ape_tag([(b"Title", 0x10, b"Blue")]), "'Title'"),
    "what old PyMusepack versions left": (b"APETAGEX" + struct.pack("<4I", 2000, 50, 1, 0)
                                          + _ape_tag([(b"Title", 0, b"Blue")], header=True), "PyMusepack"),
}


@pytest.mark.parametrize("case", sorted(APE_CASES))
def test_wavpack_tags_a_rewrite_would_change_are_refused(tmp_path, case):
    """mutagen rewrites an APEv2 tag from its own view: it drops an item's read-only flag, merges
    repeated keys, converts an APEv1 tag, adds the new tag in front of an ID3v1 tag behind a Lyrics3
    or extended ID3v1 block (where an old APE tag may lie), writes the header and footer anew (the tag's read-only flag cleared, reserved
    bytes zeroed, a header that disagrees with the footer made to agree) and drops 24 bytes before
    the tag that begin with ``APETAGEX``. Such a file is refused, naming what would change, and
    left byte for byte (the tag's flags, reserved bytes, header and leftover were changed or dropped
    without a word)."""
    tail, named = APE_CASES[case]
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    with open(song, "ab") as f:
        f.write(tail)
    original = song.read_bytes()
    with pytest.raises(TagWriteError) as err:
        tags.write_instruments(song, **WRITE)
    assert named in err.value.reason and "left unchanged" in err.value.reason
    assert song.read_bytes() == original


@pytest.mark.parametrize("ape", [False, True], ids=["no APE tag", "an empty APE tag"])
def test_wavpack_whose_fields_are_in_an_id3v1_tag_alone_is_left_unchanged(tmp_path, ape):
    """TagLib shows the first of a WavPack's (Monkey's Audio's, Musepack's) APEv2 and ID3v1 tags that
    holds anything: the title and artist of a file whose only fields are in an ID3v1 tag stopped
    showing once tagger's APEv2 tag was there (was: tagged, TagLib showing tagger's fields alone).
    Found tagging a WavPack with an ID3v1 tag alone. Left unchanged, saying why."""
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    song.write_bytes(song.read_bytes() + (_ape_tag([], header=True) if ape else b"") + _ID3V1)
    before = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"an ID3v1 tag at its end holds its fields \(TCON, TIT2, TPE1\) and its APEv2 "
                                            r"tag none: TagLib shows them only while the APEv2 tag is empty"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == before


@pytest.mark.parametrize("ape", [True, False], ids=["after an APE tag", "alone"])
def test_wavpack_id3v1_tag_after_the_ape_tag_is_kept_there(tmp_path, ape):
    """An ID3v1 tag after the APE tag (the APEv2 specification's place for it, as foobar2000 and EAC
    write it; or alone): mutagen drops it when it writes the APE tag, or buries it in front of a new
    one, so such files were refused. The ID3v1 tag is set aside and put back after the new APE tag:
    every byte before the tag and the ID3v1 tag are kept, the items too, the audio decodes the same;
    `untag` of a file tagger gave its only APE tag returns the very bytes it had. (An ID3v1 tag alone
    holds no field here: one that holds fields is refused, next test.)"""
    items = [(b"Title", 0, b"Blue"), (b"Artist", 0, b"Ann")]
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    audio, decoded = song.read_bytes(), _decoded_md5(song)
    id3v1 = _ID3V1 if ape else _EMPTY_ID3V1
    original = audio + (_ape_tag(items, header=True) if ape else b"") + id3v1
    song.write_bytes(original)
    tags.write_instruments(song, **WRITE)
    data = song.read_bytes()
    assert data.startswith(audio) and data.endswith(b"APETAGEX" + data[-160:-128][8:] + id3v1)
    assert all(struct.pack("<2I", len(v), f) + k + b"\0" + v in data for k, f, v in (items if ape else []))
    assert tags.read_instruments(song).instruments == ["bass", "guitar"] and _decoded_md5(song) == decoded
    tags.remove_instruments(song)
    data = song.read_bytes()
    assert not tags.read_instruments(song).tagged and data.endswith(id3v1)
    if ape:  # the same tag, its items in size order
        assert len(data) == len(original) and data[: len(audio) + 32] == original[: len(audio) + 32]
        assert all(struct.pack("<2I", len(v), f) + k + b"\0" + v in data[len(audio) : -160] for k, f, v in items)
    else:
        assert data == original


def test_wavpack_tag_with_a_header_and_binary_items_is_kept_and_the_audio_bytes_too(tmp_path):
    """A WavPack file whose APEv2 tag has a header, a binary item (cover art) and an external link:
    a write and an untag keep every other item's key, flags and bytes, and every byte outside the tag."""
    items = [(b"Cover Art (Front)", 2, b"front.png\0" + bytes(range(256))), (b"Title", 0, b"Blue in Green"),
             (b"Related", 4, b"http://example.org/"), (b"Artist", 0, "Ann \u00c9xample".encode())]  # fmt: skip
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    audio = song.read_bytes()
    song.write_bytes(audio + _ape_tag(items, header=True))
    tags.write_instruments(song, **WRITE)
    data = song.read_bytes()
    assert data.startswith(audio) and tags.read_instruments(song).instruments == ["bass", "guitar"]
    for key, flags, value in items:
        assert struct.pack("<2I", len(value), flags) + key + b"\0" + value in data
    assert _ffprobe_tags(song)["title"] == "Blue in Green"
    tags.remove_instruments(song)
    data = song.read_bytes()
    assert data.startswith(audio) and b"INSTRUMENTS" not in data and not tags.read_instruments(song).tagged
    assert all(struct.pack("<2I", len(value), flags) + key + b"\0" + value in data for key, flags, value in items)


def test_wavpack_tag_without_a_header_and_items_out_of_size_order_gets_a_header_and_size_order(tmp_path):
    """What a rewrite changes and loses nothing by: mutagen writes every APEv2 tag with a header and
    its items sorted by size (the specification recommends both; readers find items by key). Every
    item keeps its key, flags and bytes, every byte before the tag is kept, ffmpeg reads the same
    tags and decodes the same audio."""
    items = [(b"Comment", 0, b"a long comment, longer than the rest"), (b"Artist", 0, b"Ann"), (b"Year", 0, b"1959")]
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    audio, decoded = song.read_bytes(), _decoded_md5(song)
    song.write_bytes(audio + _ape_tag(items))
    shown = _ffprobe_tags(song)
    tags.write_instruments(song, **WRITE)
    data = song.read_bytes()
    assert data.startswith(audio) and data[len(audio) : len(audio) + 8] == b"APETAGEX"
    at = [data.index(struct.pack("<2I", len(value), flags) + key + b"\0" + value) for key, flags, value in items]
    assert at[2] < at[1] < at[0]  # (Year, Artist, Comment: by size, 17, 18 and 51 bytes)
    assert _decoded_md5(song) == decoded and {k: v for k, v in _ffprobe_tags(song).items() if k in shown} == shown


_APE_HEADERS = {
    # Monkey's Audio 3.99 and Musepack SV7 headers as mutagen reads them, then bytes standing for the audio
    "ape": b"MAC " + struct.pack("<H", 3990) + b"\0" * 50 + struct.pack("<IIIHHI", 73728, 100, 1, 16, 2, 44100),
    "mpc": b"MP+" + bytes([0x07]) + struct.pack("<I", 10) + b"\0" * 24,
}


@pytest.mark.parametrize("ext", sorted(_APE_HEADERS))
def test_monkeys_audio_and_musepack_take_apev2_tags_and_keep_every_other_byte(tmp_path, ext):
    """Monkey's Audio and Musepack files carry APEv2 tags like WavPack: tagged, read back, untagged,
    with the bytes before the tag and the user's own items kept (no encoder writes them here: the
    headers are made by hand, the audio stands in as bytes)."""
    audio = _APE_HEADERS[ext] + bytes(range(256)) * 16
    song = tmp_path / f"song.{ext}"
    song.write_bytes(audio + _ape_tag([(b"Title", 0, b"Blue in Green")]))
    tags.write_instruments(song, **WRITE)
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    data = song.read_bytes()
    assert data.startswith(audio) and struct.pack("<2I", 13, 0) + b"Title\0Blue in Green" in data
    tags.remove_instruments(song)
    assert not tags.read_instruments(song).tagged and song.read_bytes().startswith(audio)


def _wav_with_info(path: Path, items: dict[bytes, bytes]) -> Path:
    """A short silent WAV whose only tags are a LIST/INFO chunk of ``items``."""
    info = b"INFO"
    for item, value in items.items():
        value += b"\0"
        info += item + struct.pack("<I", len(value)) + value + b"\0" * (len(value) & 1)
    fmt = b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    body = b"WAVE" + fmt + b"data" + struct.pack("<I", 1600) + bytes(1600) + b"LIST" + struct.pack("<I", len(info)) + info
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    return path


@pytest.mark.parametrize("items, named", [
    ({b"INAM": b"Song", b"IENG": b"Ann"}, "IENG (TagLib's ARRANGER)"),
    ({b"INAM": b"Song", b"IGNR": b"17"}, "IGNR '17' (an ID3 genre number)"),
    ({b"INAM": b"Song", b"IGNR": b" +17"}, "IGNR ' +17' (an ID3 genre number)"),
    ({b"INAM": b"Song", b"IGNR": b"(Live) Set"}, "IGNR '(Live) Set' (an ID3 genre number)"),
    ({b"INAM": b"Song", b"ICRD": b"March 1959"}, "ICRD 'March 1959' (no ID3 date)"),
    ({b"INAM": b"Song", b"ISBJ": bytes(1 << 20)}, "a LIST/INFO chunk of 1048604 bytes"),
], ids=["engineer", "genre number", "genre number spaced", "genre in brackets", "date in words", "over 1 MiB"])  # fmt: skip
def test_wav_list_info_fields_no_id3_frame_shows_alike_are_refused(tmp_path, items, named):
    """A WAV's LIST/INFO fields are copied into the ID3 chunk a write adds (TagLib shows the ID3 chunk
    alone once there is one: tests/test_tags_taglib.py); one that no ID3 frame would show as TagLib
    shows it leaves the file unchanged, named. Not copied, it would vanish from TagLib's view."""
    song = _wav_with_info(tmp_path / "info.wav", items)
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=re.escape(named)):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def test_wav_list_info_fields_are_copied_into_the_id3_chunk_and_kept_by_untag(tmp_path):
    """The copies are what mutagen, beets and TagLib then read; the LIST/INFO chunk stays byte for
    byte, and `untag` removes tagger's fields alone (the copies stay: the file's fields read the same)."""
    import mutagen

    song = _wav_with_info(tmp_path / "info.wav", {b"INAM": b"Song", b"IART": "Ann Exämple".encode(), b"ITRK": b"3",
                                                  b"ICRD": b"1959", b"ICMT": b"a comment"})  # fmt: skip
    original = song.read_bytes()
    tags.write_instruments(song, **WRITE)
    data = song.read_bytes()
    assert data[12 : len(original)] == original[12:]  # (the ID3 chunk comes after the LIST chunk)
    frames = {key: str(frame) for key, frame in mutagen.File(str(song)).tags.items() if not key.startswith("TXXX")}
    assert frames == {"TIT2": "Song", "TPE1": "Ann Exämple", "TDRC": "1959", "COMM::eng": "a comment"}
    tags.remove_instruments(song)
    assert not tags.read_instruments(song).tagged
    assert {key: str(frame) for key, frame in mutagen.File(str(song)).tags.items()} == frames


@pytest.mark.parametrize("kind", ["wav", "mp3"])
def test_untag_removes_an_id3_tag_holding_ours_alone_beside_list_info_or_id3v1(tmp_path, kind):
    """A WAV whose other fields are in a LIST/INFO chunk, or an MP3 whose other fields are in an ID3v1
    tag, with an ID3 tag holding tagger's fields alone (as tagger wrote them before it copied those
    fields, or as another program did): `untag` removes the ID3 tag, the file byte for byte as it was
    before it had one. Was: 'verification failed: other tags changed', the written copy's reload
    taking the LIST/INFO or ID3v1 fields (which a write copies) for frames of its ID3 tag."""
    from mutagen.id3 import ID3, TXXX
    from mutagen.wave import WAVE
    from test_tags import ffmpeg_tone

    if kind == "wav":
        song = _wav_with_info(tmp_path / "info.wav", {b"INAM": b"Song", b"IART": b"Ann"})
    else:
        song = ffmpeg_tone(tmp_path / "v1.mp3", "mp3", seconds=0.5, extra=["-write_id3v1", "1", "-id3v2_version", "0"])
        assert song.read_bytes()[-128:-125] == b"TAG"
    original = song.read_bytes()
    ours = [TXXX(encoding=3, desc="INSTRUMENTS", text=["bass"]), TXXX(encoding=3, desc="INSTRUMENTS_MODEL", text=["m-0"])]
    if kind == "wav":
        audio = WAVE(str(song))
        audio.add_tags()
        for frame in ours:
            audio.tags.add(frame)
        audio.save()
    else:
        tag = ID3()
        for frame in ours:
            tag.add(frame)
        tag.save(str(song), v1=0)  # (mutagen would write the ID3v1 tag over from the ID3v2 one)
        with open(song, "ab") as f:
            f.write(original[-128:])
    assert tags.read_instruments(song) == tags.TagState(["bass"], "m-0")
    tags.remove_instruments(song)
    assert song.read_bytes() == original


# -- DSF (ID3 at the end) ---------------------------------------------------------------------------


def test_dsf_takes_id3_fields_at_its_end_and_untag_gives_back_the_same_bytes(tmp_path):
    """A DSF file (DSD) gets tagger's fields in the ID3 tag its header points to; the DSD, fmt and
    data chunks are kept byte for byte, the header's file size follows the file, ffmpeg decodes the
    same audio, and `untag` of a file tagger gave its only tag returns the very bytes it had."""
    from conftest import dsf_file

    song = dsf_file(tmp_path / "song.dsf", seconds=0.5, freq=440.0)
    original = song.read_bytes()
    decoded = _decoded_md5(song)
    tags.write_instruments(song, **WRITE, scores={"bass": 0.9, "guitar": 0.8})
    data = song.read_bytes()
    assert data[:12] == original[:12] and data[28 : len(original)] == original[28:]
    total, pointer = struct.unpack_from("<QQ", data, 12)
    assert (total, pointer) == (len(data), len(original)) and data[pointer : pointer + 3] == b"ID3"
    assert tags.read_instruments(song).instruments == ["bass", "guitar"] and _decoded_md5(song) == decoded
    assert _ffprobe_tags(song)["instruments_model"] == WRITE["model_version"]
    tags.remove_instruments(song)
    assert song.read_bytes() == original


def test_dsf_with_bytes_after_its_id3_tag_is_refused(tmp_path):
    """mutagen cuts a DSF file after the ID3 tag it writes: whatever followed the old tag (another
    program's chunk) would be lost. Such a file is refused and left as it is."""
    from conftest import dsf_file

    song = dsf_file(tmp_path / "song.dsf", seconds=0.5, freq=440.0)
    tags.write_instruments(song, **WRITE)
    with open(song, "ab") as f:
        f.write(b"XTRA" + bytes(60))
    before = song.read_bytes()
    with pytest.raises(TagWriteError, match="metadata pointer does not lead to one ID3 tag ending the file"):
        tags.write_instruments(song, instruments=["vocal"], model_version="ova-test-2")
    assert song.read_bytes() == before


def test_dsf_whose_metadata_pointer_is_its_size_is_tagged_as_one_without_a_tag(tmp_path):
    """Some writers point a DSF file without metadata at its end instead of writing 0 (the DSF
    specification's "none"): nothing lies there, yet the file was refused as if the pointer led to
    something a rewrite would cut off. The tag is added there, as to a file whose pointer is 0."""
    from conftest import dsf_file

    song = dsf_file(tmp_path / "song.dsf", seconds=0.5, freq=440.0)
    data = song.read_bytes()
    song.write_bytes(data[:20] + struct.pack("<Q", len(data)) + data[28:])
    original = song.read_bytes()
    decoded = _decoded_md5(song)
    assert not tags.read_instruments(song).tagged
    assert tags.write_instruments(song, **WRITE).written
    data = song.read_bytes()
    assert data[:12] == original[:12] and data[28 : len(original)] == original[28:]
    assert struct.unpack_from("<QQ", data, 12) == (len(data), len(original)) and data[len(original) :].startswith(b"ID3")
    assert tags.read_instruments(song).instruments == ["bass", "guitar"] and _decoded_md5(song) == decoded
    assert tags.remove_instruments(song).written
    assert song.read_bytes()[28:] == original[28:] and _decoded_md5(song) == decoded


def _dsf_with_id3(path: Path, *frames: bytes, major: int = 4, flags: int = 0, after: bytes = b"") -> Path:
    """A DSF file (`dsf_file`) ending with an ID3v2 tag (version ``major``, header ``flags``) that
    holds exactly ``frames``, its header pointing to it, then ``after``."""
    from conftest import dsf_file

    dsf_file(path, seconds=0.5, freq=440.0)
    data = path.read_bytes()
    body = b"".join(frames) + bytes(64)
    tail = b"ID3" + bytes([major, 0, flags]) + _syncsafe(len(body)) + body + after
    path.write_bytes(data[:12] + struct.pack("<QQ", len(data) + len(tail), len(data)) + data[28:] + tail)
    return path


@pytest.mark.parametrize("ext", ["mp3", "dsf"])
def test_untag_keeps_an_id3_frame_mutagen_does_not_know(tmp_path, ext):
    """A frame mutagen does not know (an old ReplayGain tool's RGAD) is kept as it is, and a write
    keeps it; but `untag` of a tag holding it beside tagger's fields alone took the tag for empty
    and deleted it, which the verification caught: the file could never be untagged ("verification
    failed: other tags changed"). The tag now stays, with that frame byte for byte."""
    rgad = _id3_frame(b"RGAD", b"\x00\x00\x80\x00\x2e\x20\x00\x00")
    if ext == "mp3":
        song = _mp3_with_id3(tmp_path / "song.mp3", rgad)
    else:
        song = _dsf_with_id3(tmp_path / "song.dsf", rgad)
    decoded = _decoded_md5(song)
    tags.write_instruments(song, **WRITE)
    assert rgad in song.read_bytes() and tags.read_instruments(song).tagged
    assert tags.remove_instruments(song).written
    data = song.read_bytes()
    assert rgad in data and b"INSTRUMENTS" not in data and not tags.read_instruments(song).tagged
    assert _decoded_md5(song) == decoded


DSF_FOOTER_FLAGS = {
    # case: (ID3 version, the bytes after the tag's body)
    "ID3v2.2 (no footer in that version)": (2, b"0123456789"),
    "ID3v2.4, not a footer": (4, b"0123456789"),
}


@pytest.mark.parametrize("case", sorted(DSF_FOOTER_FLAGS))
def test_dsf_id3_tag_whose_footer_flag_lies_is_refused(tmp_path, case):
    """The footer flag of the ID3 tag a DSF file's pointer leads to made the 10 bytes after it count
    as its footer whatever they were: in an ID3v2.2 tag (which has no footer) or without the footer's
    ``3DI``, the tag did not end the file, yet mutagen cut those bytes off. Such a file is refused and
    left as it is; a real footer is the tag's, replaced with it."""
    major, after = DSF_FOOTER_FLAGS[case]
    title = _id3_frame(b"TIT2", b"\x03Blue", major=major) if major > 2 else b"TT2\x00\x00\x05\x00Blue"
    song = _dsf_with_id3(tmp_path / "song.dsf", title, major=major, flags=0x10, after=after)
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match="metadata pointer does not lead to one ID3 tag ending the file"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original
    title = _id3_frame(b"TIT2", b"\x03Blue")
    footer = b"3DI\x04\x00\x10" + _syncsafe(len(title) + 64)
    real = _dsf_with_id3(tmp_path / "footer.dsf", title, flags=0x10, after=footer)
    before = real.read_bytes()
    pointer = struct.unpack_from("<Q", before, 20)[0]
    tags.write_instruments(real, **WRITE)
    data = real.read_bytes()
    assert data[28:pointer] == before[28:pointer] and b"3DI" not in data[pointer:]
    assert tags.read_instruments(real).instruments == ["bass", "guitar"] and _ffprobe_tags(real)["title"] == "Blue"


@pytest.mark.parametrize("ext", ["mp3", "dsf"])
def test_id3_tag_mutagen_reads_past_the_file_is_refused_with_a_reason(tmp_path, ext):
    """An ID3v2.2 tag with its compression flag (which mutagen takes for the later versions'
    extended header, whose size it then reads from the first frame's name) makes mutagen read past
    the end of the file and raise a bare error: the refusal said "cannot read tags: " and nothing
    more. It now says what is wrong."""
    title = b"TT2\x00\x00\x05\x00Blue"
    if ext == "mp3":
        song = _mp3_with_id3(tmp_path / "song.mp3", title, major=2)
        _patch(song, b"ID3\x02\x00\x00", b"ID3\x02\x00\x40")
    else:
        song = _dsf_with_id3(tmp_path / "song.dsf", title, major=2, flags=0x40)
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match=r"cannot read tags: a part of it runs past the end of the file \(as"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def _ape_block(*, size: int, count: int, flags: int) -> bytes:
    return b"APETAGEX" + struct.pack("<4I", 2000, size, count, flags) + b"\0" * 8


APE_LYING_HEADERS = {
    # case: the bytes after the audio; each makes mutagen cut the tag's "header", 32 bytes of audio
    "footer flags a header that is not there": _ape_tag([(b"Title", 0, b"Blue")])[:-32]
    + _ape_block(size=32 + 18, count=1, flags=0x80000000),
    "a header where the footer should be": _ape_block(size=32, count=0, flags=0xA0000000),
}


@pytest.mark.parametrize("case", sorted(APE_LYING_HEADERS))
def test_wavpack_tag_whose_footer_points_at_a_header_that_is_audio_is_refused(tmp_path, case):
    """An APE footer that says the tag has a header (or a header at the end, read as a footer) makes
    mutagen take the 32 bytes before the tag's items for that header: a rewrite cut them off the
    audio, and the payload check, which drew the same line, did not see it. Refused, byte for byte."""
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    decoded = _decoded_md5(song)
    with open(song, "ab") as f:
        f.write(APE_LYING_HEADERS[case])
    original = song.read_bytes()
    with pytest.raises(TagWriteError) as err:
        tags.write_instruments(song, **WRITE)
    assert "header" in err.value.reason and "left unchanged" in err.value.reason
    assert song.read_bytes() == original and _decoded_md5(song) == decoded


APE_SLACK = {
    # case: (the tag after the audio, the bytes a rewrite used to drop)
    "no items, a size of 1,000 bytes": (_ape_block(size=32 + 1000, count=0, flags=0), "audio"),
    "an item count too low": (_ape_tag([(b"Title", 0, b"Blue"), (b"Artist", 0, b"Ann")])[:-32]
                              + _ape_block(size=32 + 36, count=1, flags=0), b"Artist\0Ann"),
}


@pytest.mark.parametrize("case", sorted(APE_SLACK))
def test_wavpack_tag_whose_size_holds_more_than_its_items_is_refused(tmp_path, case):
    """An APE tag whose size counts more bytes than its items hold (no items but a size, an item
    count lower than the items there): mutagen reads the items the count says, and a rewrite dropped
    the rest, the audio before the tag when the size reached into it. Refused, byte for byte."""
    tail, lost = APE_SLACK[case]
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    decoded = _decoded_md5(song)
    with open(song, "ab") as f:
        f.write(tail)
    original = song.read_bytes()
    assert lost == "audio" or lost in original
    with pytest.raises(TagWriteError) as err:
        tags.write_instruments(song, **WRITE)
    assert "more than its" in err.value.reason and "left unchanged" in err.value.reason
    assert song.read_bytes() == original and _decoded_md5(song) == decoded


@pytest.mark.parametrize("rate", [176_400, 352_800])
def test_wavpack_at_a_rate_outside_its_table_is_tagged(tmp_path, rate):
    """WavPack stores a rate outside its table of 15 (176.4 kHz hi-res, 352.8 kHz DXD) in the block
    itself, where mutagen does not look (``list index out of range``): such a file was analysed and
    then failed its tag write on every scan. Its tag is written, every byte before it kept."""
    song = _ffmpeg(tmp_path / "hires.wv", "-ar", str(rate), "-c:a", "wavpack", "-fflags", "+bitexact")
    audio, decoded = song.read_bytes(), _decoded_md5(song)
    tags.write_instruments(song, **WRITE)
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    assert song.read_bytes().startswith(audio) and _decoded_md5(song) == decoded
    assert _ffprobe_tags(song)["instruments_model"] == WRITE["model_version"]


def _damaged(path: Path, start: bytes, new: bytes) -> Path:
    """The file with its first bytes ``start`` replaced by ``new`` (what mutagen sniffs)."""
    data = path.read_bytes()
    assert data.startswith(start)
    path.write_bytes(new + data[len(start) :])
    return path


DAMAGED = {
    # name: (encoder options, the file's first bytes, what they become)
    "song.wv": (["-c:a", "wavpack"], b"wvpk", b"APETAGEX"),
    "song.ogg": (["-c:a", "libvorbis"], b"OggS", b"OggX"),
    "song.opus": (["-c:a", "libopus"], b"OggS", b"OggX"),
    "song.wma": (["-c:a", "wmav2"], bytes.fromhex("3026b275"), b"\0\0\0\0"),
}


@pytest.mark.parametrize("name", sorted(DAMAGED))
def test_a_damaged_file_of_a_format_tagger_writes_is_a_failure_not_a_format_without_tags(tmp_path, name):
    """mutagen tells a WavPack, Ogg or WMA file by its first bytes alone: one whose first bytes are
    damaged was "a format without tags", which a scan stores as done and never tries again and
    `untag` counts as unchanged. It is a file that cannot be read (retried, `untag` exits 1)."""

    options, start, new = DAMAGED[name]
    song = _damaged(_ffmpeg(tmp_path / name, *options), start, new)
    original = song.read_bytes()
    for call in (lambda: tags.write_instruments(song, **WRITE), lambda: tags.remove_instruments(song)):
        with pytest.raises(TagWriteError, match="cannot read tags") as err:
            call()
        assert not isinstance(err.value, UntaggableError)
    assert song.read_bytes() == original


def test_an_m4a_without_its_ftyp_atom_is_tagged(tmp_path):
    """An MP4 file without an ``ftyp`` atom (QuickTime's older files; here blanked into a ``free``
    atom, the offsets kept) decodes as ever, but mutagen's guess, which looks for ``ftyp``, said
    "format without tags": never tagged, never retried. Its name says M4A: read as MP4, tagged."""
    song = _ffmpeg(tmp_path / "song.m4a", "-c:a", "aac")
    data = song.read_bytes()
    size = struct.unpack(">I", data[:4])[0]
    assert data[4:8] == b"ftyp"
    song.write_bytes(data[:4] + b"free" + b"\0" * (size - 8) + data[size:])
    decoded = _decoded_md5(song)
    tags.write_instruments(song, **WRITE)
    assert tags.read_instruments(song).instruments == ["bass", "guitar"] and _decoded_md5(song) == decoded


def test_an_mp3_named_m4a_is_still_tagged_as_the_mp3_it_is(tmp_path):
    """The name says a format only where mutagen recognises none: an MP3 saved as ``.m4a`` (as some
    downloaders do) is tagged as an MP3, not refused as a damaged MP4."""
    song = _ffmpeg(tmp_path / "song.mp3", "-c:a", "libmp3lame")
    song = song.rename(tmp_path / "song.m4a")
    tags.write_instruments(song, **WRITE)
    assert song.read_bytes()[:3] == b"ID3" and tags.read_instruments(song).instruments == ["bass", "guitar"]


@pytest.mark.parametrize("made, named, held", [
    ("ogg", "flac", "Ogg Vorbis"), ("flac", "wav", "FLAC"), ("m4a", "flac", "MP4/M4A"), ("flac", "mp3", "FLAC"),
    ("opus", "wav", "Opus"),
])  # fmt: skip
def test_a_file_whose_name_says_another_format_than_its_bytes_is_refused_naming_both(tmp_path, made, named, held):
    """Where mutagen picks a format by the name before the first bytes (``.flac``, ``.wav``, ``.mp3``),
    a file holding another format fails to load: the refusal said mutagen's words, ``Root chunk must
    be a RIFF chunk, got OggS``, ``can't sync to MPEG frame``, or that it is not a valid FLAC file,
    which it is not meant to be. It names the format of the name and of the bytes, file unchanged."""
    codecs = {**CODECS, "m4a": ["-c:a", "aac"]}
    song = _ffmpeg(tmp_path / f"song.{made}", *codecs[made]).rename(tmp_path / f"song.{named}")
    original = song.read_bytes()
    label = {"flac": "FLAC", "wav": "WAV", "mp3": "MP3"}[named]
    with pytest.raises(TagWriteError, match=re.escape(f"its name says {label} (.{named}) where its first bytes are {held}:")):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


@pytest.mark.parametrize("name, args, what", [
    ("song.mka", ["-c:a", "flac"], "Matroska/WebM"), ("song.webm", ["-c:a", "libopus"], "Matroska/WebM"),
    ("song.caf", ["-c:a", "pcm_s16le"], "CAF"), ("song.au", ["-c:a", "pcm_s16be"], "AU"),
    ("song.w64", ["-c:a", "pcm_s16le"], "Wave64"),
    ("song.webm>m4a", ["-c:a", "libopus"], "Matroska/WebM"), ("song.mka>ogg", ["-c:a", "flac"], "Matroska/WebM"),
    ("song.caf>m4a", ["-c:a", "alac"], "CAF"), ("song.w64>wav", ["-c:a", "pcm_s16le"], "Wave64"),
    ("song.au>mp3", ["-c:a", "pcm_s16be"], "AU"),
])  # fmt: skip
def test_formats_without_tags_that_mutagen_does_not_know_are_named(tmp_path, name, args, what):
    """Was: ``unsupported format (unknown)`` for a Matroska, WebM, CAF, AU or Wave64 file, formats
    tagger analyses and knows by their names; the format is named, the file left as it was. Saved
    under a name of a format tagger writes (``>``: renamed so; a WebM as ``.m4a``, a Wave64 as
    ``.wav``), it is known by its first bytes: was a failure on every run, ``cannot read tags: not
    a MP4 file``, ``Root chunk must be a RIFF chunk, got riff``."""
    made, _, renamed = name.partition(">")
    song = _ffmpeg(tmp_path / made, *args)
    if renamed:
        song = song.rename(song.with_suffix("." + renamed))
    original = song.read_bytes()
    with pytest.raises(UntaggableError, match=re.escape(f"unsupported format ({what}); tagger writes tags into")):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


@pytest.mark.parametrize("name, args", [
    ("song.aac", ["-write_id3v2", "1", "-metadata", "title=Radio"]), ("song.m4a", []), ("song.mp3", []),
])  # fmt: skip
def test_raw_aac_behind_an_id3v2_tag_or_under_another_name_is_a_format_without_tags(tmp_path, name, args):
    """mutagen takes a raw AAC (ADTS) stream for one by its ``.aac`` extension alone: behind an ID3v2
    tag (radio rips, ffmpeg's ``-write_id3v2``) it tried it as an MP3, and saved as ``.m4a`` (as some
    downloaders do) as an MP4, and the tag write failed on every scan, ``cannot read tags: can't sync
    to MPEG frame`` or ``not a MP4 file``, exit 1. It is raw AAC, a format without tags, as a bare
    ``.aac`` is: said, not a failure, the file left as it was."""
    song = tmp_path / name
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=frequency=440:duration=1",
                    "-c:a", "aac", *args, "-f", "adts", str(song)], check=True)  # fmt: skip
    original = song.read_bytes()
    assert original.startswith(b"ID3") == bool(args)
    with pytest.raises(UntaggableError, match=re.escape("unsupported format (raw AAC (ADTS))")):
        tags.write_instruments(song, **WRITE)
    with pytest.raises(UntaggableError):
        tags.remove_instruments(song)
    assert song.read_bytes() == original


def test_wavpack_untag_keeps_a_binary_item_named_like_ours(tmp_path):
    """A binary (or link) item named like one of tagger's fields is someone else's (tagger writes
    text; a write beside it is refused), but `untag` removed it with tagger's own fields, and the
    checks, which leave out every item of those names, did not see it go. It is kept, byte for byte."""
    theirs = (b"Instruments_Scores", 2, b"\x00\x01their own data")
    ours = [(b"INSTRUMENTS", 0, b"bass"), (b"INSTRUMENTS_MODEL", 0, b"ova-test-1")]
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    audio = song.read_bytes()
    song.write_bytes(audio + _ape_tag([*ours, theirs], header=True))
    with pytest.raises(TagWriteError, match="Instruments_Scores"):
        tags.write_instruments(song, **WRITE)
    assert tags.remove_instruments(song).written
    data = song.read_bytes()
    assert data.startswith(audio) and b"INSTRUMENTS" not in data and not tags.read_instruments(song).tagged
    assert struct.pack("<2I", len(theirs[2]), 2) + theirs[0] + b"\0" + theirs[2] in data


def test_wavpack_tagged_then_untagged_is_byte_for_byte_the_file_it_was(tmp_path):
    """A WavPack file without an APE tag, tagged and untagged, kept an empty APE tag (64 bytes) that
    tagger had created; it is removed, as an ID3 tag left empty is: the file is what it was."""
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    original = song.read_bytes()
    tags.write_instruments(song, **WRITE)
    assert tags.remove_instruments(song).written
    assert song.read_bytes() == original


def _id3v2(title: bytes) -> bytes:
    """A small ID3v2.4 tag holding a title, with some padding."""
    body = b"TIT2" + struct.pack(">I", len(title) + 1) + b"\0\0\x03" + title + b"\0" * 64
    return b"ID3\x04\x00\x00" + bytes((len(body) >> s) & 0x7F for s in (21, 14, 7, 0)) + body


@pytest.mark.parametrize("ext", ["wv", "ape", "mpc"])
def test_a_wavpack_monkeys_or_musepack_file_behind_an_id3v2_tag_gets_its_ape_tag(tmp_path, ext):
    """Some taggers put an ID3v2 tag in front of a WavPack, Monkey's Audio or Musepack file (their
    decoders skip it). mutagen takes such a file for an MP3: tagger failed on it with "can't sync to
    MPEG frame" on every scan, or, where the audio held a false MPEG frame header, wrote its fields
    into that ID3v2 tag, where WavPack readers do not look. The file is read as what follows the ID3v2
    tag: the fields go into the APEv2 tag at the end, the ID3v2 tag and the audio stay byte for byte."""
    if ext == "wv":
        audio = _ffmpeg(tmp_path / "plain.wv", "-c:a", "wavpack", "-fflags", "+bitexact").read_bytes()
    else:
        audio = _APE_HEADERS[ext] + bytes(range(256)) * 16
    song = tmp_path / f"song.{ext}"
    song.write_bytes(_id3v2(b"Blue") + audio)
    original = song.read_bytes()
    tags.write_instruments(song, **WRITE)
    data = song.read_bytes()
    assert data.startswith(original) and data[len(original) : len(original) + 8] == b"APETAGEX"
    assert tags.read_instruments(song).instruments == ["bass", "guitar"]
    if ext == "wv":
        assert _decoded_md5(song) == _decoded_md5(tmp_path / "plain.wv")
        assert _ffprobe_tags(song)["instruments_model"] == WRITE["model_version"]
    tags.remove_instruments(song)
    assert song.read_bytes() == original


APE_UNREADABLE = {
    # case: an item mutagen refuses to read
    "a key that is not ASCII": ("Tïtle".encode(), 0, b"Blue"),
    "a reserved key": (b"ID3", 0, b"Blue"),
    "a one-letter key": (b"T", 0, b"Blue"),
    "text that is not UTF-8": (b"Artist", 0, b"\xff\xfe"),
    "an item of the reserved type 3": (b"Artist", 6, b"Ann"),
}


@pytest.mark.parametrize("case", sorted(APE_UNREADABLE))
def test_wavpack_tag_with_an_item_mutagen_cannot_read_is_refused_saying_so(tmp_path, case):
    """An APEv2 item mutagen refuses (a key that is not ASCII, reserved or too short, text that is
    not UTF-8, the reserved item type) made the file unreadable with mutagen's bare words (`'ascii'
    codec can't decode byte 0xc3 in position 1`). The refusal says it is the APEv2 tag's item."""
    song = _ffmpeg(tmp_path / "song.wv", "-c:a", "wavpack", "-fflags", "+bitexact")
    with open(song, "ab") as f:
        f.write(_ape_tag([(b"Album", 0, b"Kind of Test"), APE_UNREADABLE[case]]))
    original = song.read_bytes()
    with pytest.raises(TagWriteError, match="its APEv2 tag has an item mutagen cannot read"):
        tags.write_instruments(song, **WRITE)
    assert song.read_bytes() == original


def test_a_new_format_is_one_registered_storage_class(tmp_path):
    """Adding a container is one class with its `Format`: the list of formats in messages and the
    reading of a file by its extension follow, with no other list to edit."""
    from mutagen.trueaudio import TrueAudio

    from tagger.errors import UntaggableError
    from tagger.tags.formats import _named_type
    from tagger.tags.storage import FORMATS, STORAGES, Format, MP3Storage, format_named, register, supported_formats

    song = tmp_path / "song.tta"
    song.write_bytes(b"TTA1" + bytes(40))
    assert "TTA" not in supported_formats() and format_named("x.tta") is None and _named_type("x.tta") is None
    with pytest.raises(UntaggableError, match=r"tagger writes tags into MP3, WAV, .*Musepack, TAK$"):
        tags.write_instruments(song, instruments=["bass"], model_version="m")
    try:
        register(Format("TrueAudio", "TTA", (".tta",)))(type("TTAStorage", (MP3Storage,), {}))
        assert supported_formats().endswith("Musepack, TAK, TTA")
        assert format_named("x.TTA").label == "TTA" and _named_type("x.tta") is TrueAudio
    finally:
        STORAGES.pop("TrueAudio", None)
        FORMATS.pop("TrueAudio", None)
    assert "TTA" not in supported_formats()


def test_a_new_id3_container_is_one_registered_storage_class_and_its_tag_is_read_as_it_is(tmp_path):
    """A new container carrying ID3v2 is its storage class alone: its tag is loaded as it is in the
    file (`_load_id3`), as an MP3's. Which types those were was a list of names in
    `tagger.tags.formats` (MP3, WAVE, AIFF, DSF), so a TTA file (ffmpeg's) with an ID3v2.3 tag
    holding a year (TYER) and a volume adjustment (RVAD), loaded translated to v2.4, was refused:
    'its ID3v2.3 tag has frames that a rewrite would lose (RVAD, TYER)'."""
    from mutagen.id3 import ID3, RVAD, TIT2, TYER

    from tagger.tags.storage import FORMATS, STORAGES, Format, MP3Storage, register

    song = _ffmpeg(tmp_path / "song.tta", "-c:a", "tta")
    tag = ID3()
    tag.add(TIT2(encoding=3, text="Kind of Test"))
    tag.add(TYER(encoding=0, text="1999"))
    tag.add(RVAD(b"\x03\x10\x00\x10\x00\x10\x00\x00\x00\x00"))
    tag.save(str(song), v2_version=3)
    try:
        register(Format("TrueAudio", "TTA", (".tta",)))(type("TTAStorage", (MP3Storage,), {}))
        change = tags.write_instruments(song, instruments=["bass"], model_version="m")
    finally:
        STORAGES.pop("TrueAudio", None)
        FORMATS.pop("TrueAudio", None)
    assert change.written and change.after.instruments == ["bass"]
    written = ID3(str(song), translate=False)
    assert written.version == (2, 3, 0) and written["TYER"].text == ["1999"] and "RVAD" in written
    assert written.getall("TXXX:INSTRUMENTS")[0].text == ["bass"]
