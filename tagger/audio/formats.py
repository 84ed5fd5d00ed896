"""The audio formats tagger analyses, declared once: each ffmpeg demuxer with the extensions the
crawler takes for it (`AUDIO_FORMATS`), the first bytes it takes whatever the name (`FORMAT_MAGICS`),
the files of an audio extension it leaves out (`OTHER_FILES`), the names of formats mutagen does not
know (`FORMAT_NAMES`), and the demuxers ffmpeg may read a file with or is refused (`AUDIO_DEMUXERS`,
`SOUNDFILE_DEMUXERS`, `PLAYLIST_FORMATS`, `SYNTH_FORMATS`). Tables alone: nothing is imported, so
that the crawler and the tag writer read them without the decoders."""

from __future__ import annotations


AUDIO_FORMATS: dict[str, tuple[str, ...]] = {
    "mp3": (".mp3", ".mp2"), "flac": (".flac",), "ogg": (".ogg", ".oga", ".opus", ".spx"),
    "mov": (".m4a", ".m4b", ".mp4", ".alac"), "matroska": (".mka", ".webm"), "asf": (".wma",), "wav": (".wav",),
    "w64": (".w64",), "aiff": (".aif", ".aiff", ".aifc"), "caf": (".caf",), "au": (".au", ".snd"), "ape": (".ape",),
    "wv": (".wv",), "mpc": (".mpc",), "mpc8": (), "tta": (".tta",), "tak": (".tak",), "shn": (".shn",),
    "dsf": (".dsf",), "iff": (".dff",), "wsd": (".wsd",), "aac": (".aac",), "loas": (".loas", ".latm"),
    "ac3": (".ac3",), "eac3": (".eac3", ".ec3"), "dts": (".dts",), "dtshd": (".dtshd",),
    "truehd": (".thd", ".truehd"), "mlp": (".mlp",), "amr": (), "oma": (".oma", ".aa3", ".omg"), "rm": (".ra",),
    "avi": (), "mpeg": (), "mpegts": (), "flv": (), "libopenmpt": (".mod", ".xm", ".s3m", ".it"),
    "libgme": (".vgm", ".vgz"),
}  # fmt: skip
"""The formats tagger analyses, declared once: each ffmpeg demuxer (of ``ffmpeg -demuxers``) of the
files a music library holds, with the file extensions the crawler takes as audio for it (and
`FORMAT_MAGICS`, the first bytes it takes whatever the name: `tagger.crawl.sniff_audio`). One with
neither (``amr``, ``mpc8``...) reads a file named on the command line, or one under another
format's extension (an SV8 Musepack ``.mpc``): add only what a test has a file of.
Audio files (``mp3`` reads MP2 too, ``wav`` RF64 and BW64, ``iff`` DSDIFF, ``ogg`` Vorbis, Opus,
Speex and FLAC, ``mov`` M4A/MP4/ALAC, ``matroska`` MKA and WebM, ``asf`` WMA, ``rm`` RealAudio,
``oma`` Sony's OpenMG, ATRAC; lossless WavPack, Monkey's Audio, TTA and DSD included), the containers of music
videos (``avi``, ``mpeg``, ``mpegts``, ``flv``), and modules and game music (``libopenmpt``: MOD,
XM, S3M, IT...; ``libgme``: VGM, SPC, NSF...), which ffmpeg renders from the file's own samples and
notes. `AUDIO_DEMUXERS` and `AUDIO_EXTENSIONS` are read from it: a new format is one entry here."""
FORMAT_MAGICS: dict[bytes, str] = {
    b"ajkg": "shn", b"tBaK": "tak", b"1bit\0\0\0\0": "wsd", b"ea3\x03": "oma", b".RMF\0\0": "rm", b".ra\xfd": "rm",
    b"DTSHDHDR": "dtshd", b"Vgm ": "libgme", b"SNES-SPC700 Sound File Data": "libgme",
}  # fmt: skip
"""The first bytes of files of `AUDIO_FORMATS` that the crawler takes as audio whatever their names
(`tagger.crawl.sniff_audio`), with the demuxer of each: each is what ffmpeg's demuxer looks for.
Formats whose extension other files share are found by these alone: RealMedia ``.rm`` (a RealVideo
``.rm`` or ``.rmvb`` music video too, as an ``.mp4`` is) and SNES ``.spc`` music (``.spc`` is also
a code-signing certificate's, and a spectrum's)."""
OTHER_FILES: dict[str, tuple[bytes, ...]] = {".mod": (b"\0\0\1\xba",)}
"""Extensions of `AUDIO_FORMATS` that other files share, with the first bytes of those, which the
crawler leaves out (`tagger.crawl.is_audio_file`): a camcorder's ``.MOD`` (JVC's, Panasonic's:
MPEG-2 video in a program stream, its pack header first) is no tracker module."""
FORMAT_NAMES = {
    "shn": "Shorten", "wsd": "WSD", "loas": "LATM/LOAS AAC", "dtshd": "DTS-HD", "truehd": "TrueHD", "mlp": "MLP",
    "oma": "OpenMG/ATRAC",
    "rm": "RealAudio/RealMedia", "libgme": "game music", "matroska": "Matroska/WebM", "caf": "CAF", "au": "AU",
    "w64": "Wave64",
}  # fmt: skip
"""The names for users of formats of `AUDIO_FORMATS` that mutagen does not know, which a tag write
names as formats it has no tags for (`tagger.tags.formats`)."""
AUDIO_DEMUXERS = frozenset(AUDIO_FORMATS)
"""The demuxers ffmpeg may read a file with (`AUDIO_FORMATS`). ffmpeg picks its demuxer by the
file's content whatever its name; a file it reads with any other demuxer (of 355 in ffmpeg 5.1: a
playlist, a script of tones, a subtitle, a picture, a game's sound bank, raw samples guessed from a
few header bytes) is an error, not analysed (`tagger.audio.probe._ffprobe_info`). A list of what is allowed, not of
what is refused: each refusal before it (`PLAYLIST_FORMATS`, `SYNTH_FORMATS`) was found only after
such a file had been analysed."""
AUDIO_EXTENSIONS = frozenset(ext for extensions in AUDIO_FORMATS.values() for ext in extensions)
"""File extensions the crawler treats as audio (`AUDIO_FORMATS`): every format of a music library that
libsndfile or ffmpeg decodes."""
SOUNDFILE_DEMUXERS = {"FLAC": "flac", "OGG": "ogg", "MP3": "mp3", "WAV": "wav", "RF64": "wav", "W64": "w64",
                      "AIFF": "aiff", "CAF": "caf", "AU": "au"}  # fmt: skip
"""The ffmpeg demuxer of a file libsndfile described (`AudioInfo.format`), for ffmpeg to decode what
libsndfile cannot of it (`AudioInfo.demuxer`); ffmpeg takes the others only as one of `AUDIO_DEMUXERS`."""
PLAYLIST_FORMATS = frozenset({"concat", "hls", "dash", "sdp", "imf"})
"""ffmpeg's demuxers of files that name other files or streams, which ffmpeg recognises by their
content whatever the name: a 14 KB ``song.mp3`` holding ``ffconcat version 1.0`` and ``file
real.wav`` a thousand times was analysed as a 4,000 s track of another file's audio (a 24-hour one
for 21,600 lines). Outside `AUDIO_DEMUXERS`, and said so in the error."""
SYNTH_FORMATS = {"sbg": "SBaGen binaural beats"}
"""ffmpeg's demuxers of text scripts whose tones ffmpeg synthesises, which it also recognises by
their content: a 60-byte ``beats.mp3`` listing ``+24:00:00`` was analysed as a 24-hour track of
tones (results for a file that holds no audio). Outside `AUDIO_DEMUXERS`, and said so in the error."""
