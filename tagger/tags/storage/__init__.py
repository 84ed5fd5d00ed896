"""Where tagger's fields live in each tag container: one storage class per container.

In the style of beets' mediafile ``storage``: each class knows how to `~Storage.read`, `~Storage.write`
and `~Storage.delete` our fields (`tagger.tags.fields`) in a loaded mutagen file, how to `~Storage.save`
it, which of its other tags must not change (`~Storage.other_items`), and which bytes carry the
audio (`~Storage.payload`). A format whose container is shared (WAV and AIFF carry ID3, FLAC and
Ogg carry Vorbis comments) is a small subclass that only says where its audio is.

One module per container family (its storage classes and the reading of its bytes they need), and
per container where several carry one tag (ID3v2: MP3, WAV/AIFF, DSF):

- `tagger.tags.storage.base`: the `Storage` base class, the registry (`register`, `storage_for`,
  `STORAGES`: mutagen file type name -> storage; `FORMATS`: -> `Format`, its name and extensions)
  and `payload_digest`;
- `tagger.tags.storage.id3`: ID3v2 ``TXXX`` frames (`ID3Storage`, the frames read from the bytes);
- `tagger.tags.storage.mp3`: MP3: that tag at the start of the file, an ID3v1 and an APEv2 tag beside it;
- `tagger.tags.storage.riff`: WAV, AIFF: the same ID3v2 tag in an ``ID3`` chunk, their chunks, ``LIST/INFO``;
- `tagger.tags.storage.dsf`: DSF: the same ID3v2 tag, at the end of the file;
- `tagger.tags.storage.vorbis`: Vorbis comments (`VorbisStorage`, their raw entries);
- `tagger.tags.storage.flac`: FLAC: those comments in its metadata blocks, its pictures, ID3 tags beside it;
- `tagger.tags.storage.ogg`: Ogg Vorbis, Opus: those comments in a header packet, the pages, chained files;
- `tagger.tags.storage.mp4`: MP4/M4A: freeform atoms ``----:com.apple.iTunes:NAME``;
- `tagger.tags.storage.asf`: WMA: ASF attributes;
- `tagger.tags.storage.apev2`: WavPack, Monkey's Audio, Musepack, TAK: APEv2 text items;
- `tagger.tags.storage._bytes`: the byte helpers several of them use.

Adding a container: one class beside its siblings (a new family: a new module, imported below),
decorated with ``@register(Format("MutagenTypeName", "its name for users", (".ext", ...)), ...)``:
the messages that list what tagger tags and the reading of a file by its extension follow. Importing this package imports every container
module, so `STORAGES` is complete; every public name is importable from here.
"""

from __future__ import annotations

from tagger.tags.storage.base import (
    FORMATS, STORAGES, Format, Storage, format_named, payload_digest, register, storage_for, supported_formats,
)

# The container modules register their classes as they are imported (in this order: `STORAGES` keeps
# the order it always had).
from tagger.tags.storage.id3 import ID3Storage
from tagger.tags.storage.mp3 import MP3Storage
from tagger.tags.storage.riff import AIFFStorage, WAVEStorage
from tagger.tags.storage.dsf import DSFStorage
from tagger.tags.storage.vorbis import VorbisStorage
from tagger.tags.storage.flac import FLACStorage
from tagger.tags.storage.ogg import OggOpusStorage, OggVorbisStorage
from tagger.tags.storage.mp4 import MP4_FREEFORM_PREFIX, MP4Storage
from tagger.tags.storage.asf import ASFStorage
from tagger.tags.storage.apev2 import APEv2Storage

__all__ = [
    "AIFFStorage", "APEv2Storage", "ASFStorage", "DSFStorage", "FLACStorage", "FORMATS", "Format", "ID3Storage", "MP3Storage", "MP4Storage", "MP4_FREEFORM_PREFIX",
    "OggOpusStorage", "OggVorbisStorage", "STORAGES", "Storage", "VorbisStorage", "WAVEStorage", "payload_digest",
    "format_named", "register", "storage_for", "supported_formats",
]  # fmt: skip
