"""beets' mediafile: the storage styles of tagger's fields, so that beets reads and writes exactly
the fields tagger writes (`register_mediafile_fields`)."""

from __future__ import annotations

from tagger.errors import UserError
from tagger.tags.fields import INSTRUMENTS, INSTRUMENTS_MODEL, INSTRUMENTS_SCORES
from tagger.tags.storage import MP4_FREEFORM_PREFIX


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
