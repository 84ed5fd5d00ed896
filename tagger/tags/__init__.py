"""Read, write and remove tagger's own fields in audio files, safely (mutagen underneath).

Three fields, the same names everywhere (files, database, README): ``INSTRUMENTS`` (the families
present, in the model's order), ``INSTRUMENTS_MODEL`` (the model version that produced them) and,
optionally, ``INSTRUMENTS_SCORES`` (``family=0.873`` per family). Nothing is ever written to human
credit fields (ID3 TMCL/IPLS, Vorbis PERFORMER). A file that was analysed and holds no instrument
carries ``INSTRUMENTS_MODEL`` but no ``INSTRUMENTS``. A write that copies another tag's fields a
reader would no longer show (`Storage.add_copies`) lists them in ``INSTRUMENTS_COPIES``, which
``untag`` reads (`Storage.copies_left`).

The package:

- `tagger.tags.fields`: the fields, declared once, and the `TagState` / `TagChange` results;
- `tagger.tags.storage`: one storage class per tag container (ID3, Vorbis comment, MP4 freeform,
  ASF, APEv2; a module per container family) with read / write / delete / other tags / audio payload;
- `tagger.tags.rewrite`: the atomic, verified rewrite of one file, `read_instruments`,
  `write_instruments`, `remove_instruments`;
- `tagger.tags.decide`: what a rewrite reads in the file and decides, and its refusals before
  anything is copied; `tagger.tags.writing`: its steps on the hidden copy (lock, copy, change and
  verify, flush, replace);
- `tagger.tags.checks`: the checks that the file a write changes is the file analysed (size and
  mtime, fingerprint, content hash) and is settled (`unsettled_reason`);
- `tagger.tags.leftovers`: the hidden copies a write makes, and those killed writes left
  (`remove_stale_temp_files`, `LeftoverCopies`);
- `tagger.tags.formats`: which format a file is, and loading it with mutagen (our errors only);
- `tagger.tags.filesystem`: the file-system facts a rewrite checks and keeps (Linux read lease,
  writers' lock, owner, mode, extended attributes, fsync);
- `tagger.tags.batch`: many files: predictions (JSONL or the database), selection with
  `tagger.db.filter.TrackFilter`, `write_predictions`, `remove_all`;
- `tagger.tags.database`: the database's results written into the files, each write recorded
  around it (`tag_from_database`);
- `tagger.tags.rows`: a row of `tagger predict --json` (`PredictionRow`), which predict writes
  and the batch reads;
- `tagger.tags.beets`: the fields registered on beets' ``mediafile``.

Everything callers use is importable from here (``from tagger import tags; tags.write_instruments``).
"""

from __future__ import annotations

import os  # noqa: F401  (tests patch ``tags.os.replace``)

from tagger.paths import DEFAULT_SETTLE_SECONDS, TEMP_SUFFIX, is_temp_name
from tagger.tags.batch import (
    Prediction,
    PredictionRows,
    RejectedRow,
    find_audio_files,
    load_predictions_jsonl,
    predictions_from_database,
    read_predictions_jsonl,
    remove_all,
    rows_folder,
    select_predictions,
    write_predictions,
)
from tagger.tags.beets import foreign_fields, mediafile_styles, register_mediafile_fields
from tagger.tags.checks import unsettled_reason
from tagger.tags.database import tag_from_database
from tagger.tags.fields import (
    FIELDS,
    INSTRUMENTS,
    INSTRUMENTS_COPIES,
    INSTRUMENTS_MODEL,
    INSTRUMENTS_SCORES,
    SCORE_DECIMALS,
    Raw,
    TagChange,
    TagState,
)
from tagger.tags.leftovers import remove_stale_temp_files
from tagger.tags.rewrite import (
    SUPPORTED_FORMATS,
    audio_digest,
    audio_digest_or_none,
    foreign_reason,
    read_instruments,
    remove_instruments,
    write_instruments,
)
from tagger.tags.rows import PredictionRow
from tagger.tags.storage import MP4_FREEFORM_PREFIX, STORAGES, Storage, payload_digest

__all__ = [
    "DEFAULT_SETTLE_SECONDS", "FIELDS", "INSTRUMENTS", "INSTRUMENTS_COPIES", "INSTRUMENTS_MODEL", "INSTRUMENTS_SCORES", "MP4_FREEFORM_PREFIX",
    "Prediction", "PredictionRow", "PredictionRows", "Raw", "RejectedRow", "SCORE_DECIMALS", "STORAGES", "SUPPORTED_FORMATS", "Storage",
    "TEMP_SUFFIX", "TagChange", "TagState", "audio_digest", "audio_digest_or_none", "find_audio_files", "foreign_fields", "foreign_reason",
    "is_temp_name", "load_predictions_jsonl", "mediafile_styles", "payload_digest", "predictions_from_database",
    "read_instruments", "read_predictions_jsonl", "register_mediafile_fields", "remove_all", "remove_instruments",
    "remove_stale_temp_files", "rows_folder", "select_predictions", "tag_from_database", "unsettled_reason", "write_instruments",
    "write_predictions",
]  # fmt: skip
