"""beets' mediafile: the storage styles of tagger's fields, so that beets reads and writes exactly
the fields tagger writes (`register_mediafile_fields`), and which fields named like them are
someone else's (`foreign_fields`)."""

from __future__ import annotations

from tagger.errors import UserError
from tagger.tags.fields import FIELDS, INSTRUMENTS, INSTRUMENTS_MODEL, INSTRUMENTS_SCORES
from tagger.tags.storage import MP4_FREEFORM_PREFIX, STORAGES


def register_mediafile_fields() -> None:
    """Register ``instruments``, ``instruments_model`` and ``instruments_scores`` on beets'
    `mediafile.MediaFile`, reading and writing exactly the fields tagger writes.

    Idempotent. ``mediafile`` is imported here (it is not a dependency of tagger itself).
    """
    try:
        import mediafile as mf
    except ImportError:
        raise UserError("registering the fields needs beets' mediafile (pip install mediafile)") from None

    def single(name: str):
        return mf.MediaField(*mediafile_styles(name, multi=False))

    def multi(name: str):
        return mf.ListMediaField(*mediafile_styles(name, multi=True))

    for attr, descriptor in (
        ("instruments", lambda: multi(INSTRUMENTS)),
        ("instruments_model", lambda: single(INSTRUMENTS_MODEL)),
        ("instruments_scores", lambda: multi(INSTRUMENTS_SCORES)),
    ):
        if attr not in mf.MediaFile.__dict__:
            mf.MediaFile.add_field(attr, descriptor())


def mediafile_styles(name: str, *, multi: bool) -> list:
    """The `mediafile` storage styles of our field `name` in every container (for a ``MediaField``,
    or with ``multi`` a ``ListMediaField``): exactly where tagger writes it."""
    import mediafile as mf

    if multi:
        return [mf.MP3ListDescStorageStyle(desc=name, split_v23=True), mf.MP4ListStorageStyle(MP4_FREEFORM_PREFIX + name),
                mf.ListStorageStyle(name), mf.ASFStorageStyle(name)]  # fmt: skip
    return [mf.MP3DescStorageStyle(desc=name), mf.MP4StorageStyle(MP4_FREEFORM_PREFIX + name), mf.StorageStyle(name),
            mf.ASFStorageStyle(name)]  # fmt: skip


def foreign_fields(mf) -> list[str]:
    """The fields of the file loaded in ``mf`` (a `mediafile.MediaFile`) that are named like tagger's
    but are someone else's (no INSTRUMENTS_MODEL beside them, or named like them in another case
    where the container tells case apart: `tagger.tags.storage.Storage.foreign`), which a writer of
    our fields must leave alone; empty when there are none.

    Decided once per loaded file, before any of our fields is set in it (setting INSTRUMENTS_MODEL
    would make someone else's INSTRUMENTS beside it look like ours). In a format tagger does not
    write, the rule is read through mediafile: our names without INSTRUMENTS_MODEL."""
    import mediafile as mf_module

    known = mf.__dict__.get("_tagger_foreign_fields")
    if known is None:
        storage = STORAGES.get(type(mf.mgfile).__name__)
        if storage is not None:
            known = list(storage.foreign(mf.mgfile))
        else:
            raw = {name: mf_module.ListMediaField(*mediafile_styles(name, multi=True)).__get__(mf) for name in FIELDS}
            known = [] if raw[INSTRUMENTS_MODEL] else sorted(name for name, values in raw.items() if values)
        mf.__dict__["_tagger_foreign_fields"] = known
    return known
