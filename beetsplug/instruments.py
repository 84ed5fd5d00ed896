"""beets plugin ``instruments``: which instrument families play in each item (tagger's models).

Enable it with ``plugins: instruments`` in beets' config (``pip install 'tagger[beets]'``). It
adds:

- ``beet instruments [QUERY]``: analyses the matching items with tagger's scan (same models, same
  incremental database keyed by file: an item already analysed by ``tagger scan`` and unchanged is
  not analysed again), stores the families present as the flexible attribute ``instruments``
  (canonical order, ``", "``-separated, empty when none was found) and the model version as
  ``instruments_model``, and writes them into the file with beets' own ``try_write`` when beets
  writes tags (``import.write``, or ``-w``/``-W``);
- the media fields ``instruments`` and ``instruments_model``, read and written exactly where
  ``tagger scan`` writes ``INSTRUMENTS`` and ``INSTRUMENTS_MODEL`` (so ``beet write``, ``beet
  modify`` and ``beet update`` keep them, and an import reads them from files tagger tagged); fields
  of those names that are someone else's (no ``INSTRUMENTS_MODEL`` beside them) are neither read
  nor changed, and the plugin's own write keeps ``INSTRUMENTS_SCORES`` that are the results' own
  (as a scan without ``--scores`` does) and removes any other; stale results (another model
  version's, reused without ``--rescan-stale``) are never written over another model's fields: such
  a file is left as it is and its item follows it (as a tag-writing scan leaves it);
- the query ``has_instrument:FAMILY``: an exact family name (``instruments:string`` is a substring
  match, which a family name inside another one would also satisfy);
- with ``auto: yes``, analysis of the imported items during ``beet import``.

Configuration (all optional)::

    instruments:
      auto: no          # analyse items on import
      models: null      # tagger model directory (default: $TAGGER_MODELS or the shipped models)
      database: null    # tagger database URL or SQLite file (default: $TAGGER_DB, else tagger's own)
                        # (relative paths: from beets' configuration folder, as beets' own)
      jobs: null        # worker processes (null: all cores; 0: in beets' process)

An item that cannot be analysed is reported through beets' logger; the others go on. An item whose
file changed since its analysis (replaced by another program meanwhile) is given neither the results
nor the tags, and a file beets rewrote is recorded in tagger's database as unchanged only when its
audio bytes hash the same as before the write (`tagger.library.files.rewrite_tags`). A read-only
file is left unwritten, as ``tagger tag`` leaves it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import confuse
import mediafile
from beets import ui
from beets.dbcore import types
from beets.dbcore.query import FieldQuery
from beets.plugins import BeetsPlugin
from beets.util import displayable_path

from tagger.display import named, shown


def _named(item) -> str:
    """The item's path for a log line: one line, escape sequences shown, not run (`tagger.display.named`)."""
    return named(displayable_path(item.path))


SEPARATOR = ", "
"""Between the family names of the ``instruments`` attribute."""


def split_families(value) -> list[str]:
    """The family names of an ``instruments`` value (a string, a list, or None)."""
    if not value:
        return []
    if isinstance(value, str):
        value = value.replace(";", ",").split(",")
    return [v.strip().lower() for v in value if v and v.strip()]


class _Ours:
    """A media field over one of tagger's fields: a file whose fields named like tagger's are someone
    else's (`tagger.tags.foreign_fields`) reads as having none, and writes leave them as they are."""

    absent = None
    """What the field reads in such a file."""

    def __get__(self, mf, owner=None):
        if mf is None:
            return self
        return self.absent if _foreign(mf) else super().__get__(mf, owner)

    def __set__(self, mf, value):
        if not _foreign(mf):
            super().__set__(mf, value)

    def __delete__(self, mf):
        if not _foreign(mf):
            super().__delete__(mf)


class InstrumentsField(_Ours, mediafile.ListMediaField):
    """The multi-valued INSTRUMENTS tag, seen by beets as one ``"bass, flute"`` string; an empty
    value removes the tag (tagger writes no INSTRUMENTS when no family was found)."""

    absent = []

    def __init__(self):
        from tagger import tags

        super().__init__(*tags.mediafile_styles(tags.INSTRUMENTS, multi=True))

    def __get__(self, mf, owner=None):
        if mf is None:
            return self
        values = super().__get__(mf, owner)
        return SEPARATOR.join(values) if values else None

    def __set__(self, mf, value):
        values = split_families(value)
        if values:
            super().__set__(mf, values)
        else:
            self.__delete__(mf)


class ModelField(_Ours, mediafile.MediaField):
    """The INSTRUMENTS_MODEL tag; an empty value removes it, and the results with it (INSTRUMENTS and
    INSTRUMENTS_SCORES: without their model, they read as someone else's fields, which neither tagger
    nor the plugin ever changes again)."""

    def __init__(self):
        from tagger import tags

        super().__init__(*tags.mediafile_styles(tags.INSTRUMENTS_MODEL, multi=False))

    def __set__(self, mf, value):
        if value:
            super().__set__(mf, str(value))
        else:
            self.__delete__(mf)

    def __delete__(self, mf):
        if _foreign(mf):
            return
        # (first: alone, they would read as someone else's; mediafile's update sets the fields in the order of
        # their names, so beets' write sets `instruments` before this, which removes it again)
        for name in ("instruments", "instruments_scores"):
            field = mediafile.MediaFile.__dict__.get(name)
            if isinstance(field, _Ours):
                field.__delete__(mf)
        super().__delete__(mf)


class ScoresField(_Ours, mediafile.ListMediaField):
    """The INSTRUMENTS_SCORES tag (``family=0.873`` values, `tagger scan --scores`): not an item field
    (beets neither reads nor writes it); the plugin's writes keep it where it holds the results' own
    scores, as a scan without ``--scores`` does, and remove it otherwise, so that no file keeps scores
    of another model or other audio beside the results written."""

    absent = []

    def __init__(self):
        from tagger import tags

        super().__init__(*tags.mediafile_styles(tags.INSTRUMENTS_SCORES, multi=True))


def _foreign(mf) -> bool:
    from tagger.tags import foreign_fields

    return bool(foreign_fields(mf))


class HasInstrumentQuery(FieldQuery[str]):
    """``has_instrument:flute``: items whose ``instruments`` hold exactly that family name."""

    def __init__(self, field_name: str, pattern: str, fast: bool = True) -> None:
        super().__init__("instruments", pattern.strip().lower(), fast=False)

    @classmethod
    def value_match(cls, pattern: str, value) -> bool:
        return pattern in split_families(value)


UNWRITTEN = "instruments_unwritten"
"""The item attribute saying that its results are held by beets alone (given without being written into
the file: ``-W``, ``import.write: no``, a read-only file or someone else's fields there, a write beets
could not make): the hash of
the file's audio bytes they were made from (`tagger.tags.audio_digest`); empty otherwise."""


def _audio_of(path) -> str:
    """`tagger.tags.audio_digest` of ``path``, or "" when it has none (a format without the check) or
    cannot be read."""
    from tagger import tags
    from tagger.errors import TaggerError

    try:
        return tags.audio_digest(os.fsdecode(path)) or ""
    except (TaggerError, OSError):
        return ""


def _follow_unwritten(item_class) -> None:
    """Wrap beets' ``Item.read`` and ``Item.write`` (once per process) so that results beets alone
    holds (`UNWRITTEN`) survive ``beet update``: ``read`` sets every media field from the file, and
    reading none of tagger's fields there emptied them, which reads as "no instrument found". They are
    kept while the file holds none of tagger's fields and its audio bytes are still those the results
    were made from (tags edited by another program: kept; other audio put there: emptied, a wrong
    answer being worse than none); once a write puts them into the file (``beet write``, ``modify
    -w``, the plugin's own), or the file holds results of tagger's, the item follows the file again,
    so that a file `tagger untag` emptied empties its item too. (beets sends no event
    on a read, and its ``after_write`` event cannot reach a plugin whose own listener is running: an
    import with ``auto``.)"""
    read, write = item_class.read, item_class.write
    if getattr(read, "_tagger", False):
        return

    def read_keeping_unwritten(item, *args, **kwargs):
        audio = item.get(UNWRITTEN)
        kept = {f: item.get(f) for f in ("instruments", "instruments_model")} if audio else None
        read(item, *args, **kwargs)
        if kept is not None and not item.get("instruments_model") and _audio_of(item.path) == audio:
            item.update(kept)
        elif kept is not None:  # the file holds results now (they are the item's), or other audio
            item[UNWRITTEN] = ""

    def write_noting_written(item, path=None, *args, **kwargs):
        if path is None or path == item.path:
            _take_the_files_results(item)
        write(item, path, *args, **kwargs)  # (raises when it could not write)
        if item.get(UNWRITTEN) and (path is None or path == item.path) and not _left_alone(os.fsdecode(item.path)):
            item[UNWRITTEN] = ""  # (stored by the caller: beets' try_sync, the plugin's _give)

    for wrapper, original in ((read_keeping_unwritten, read), (write_noting_written, write)):
        wrapper._tagger = True
        wrapper.__name__, wrapper.__doc__ = original.__name__, original.__doc__
    item_class.read, item_class.write = read_keeping_unwritten, write_noting_written


def _take_the_files_results(item) -> None:
    """Before beets writes ``item`` into its file: where the file changed since beets last read or
    wrote it (its mtime past the one beets' database holds, as ``beet update`` tells it), beets holds
    no change of the item not yet written (that mtime is not 0) and the item's results did not
    change since it was loaded, the item takes the file's results first, as ``beet update`` would read
    them, so that the write leaves them there: those `tagger scan`, `tagger tag` wrote into the file
    since (an item imported before tagger analysed its file, or holding an older model's results), or
    the none `tagger untag` left (was: ``beet write -f``, ``beet modify -w title=...`` wrote the item's
    nothing, or its stale results, over them: beets writes every field from its own database). A file
    unchanged since, or an item edited in beets and not written since (mtime 0), keeps the item's: a
    model emptied on purpose (``beet modify -W instruments_model=``, then ``beet write -f``) is
    removed (was: the file's results taken back); such an item costs a stat, not a read. Results
    beets alone holds (`UNWRITTEN`) stay while the file holds none of tagger's and the same audio, as
    ``read`` keeps them; the plugin's own writes are left as given (`_write_given`). (A wrapper of ``Item.write``, not a ``write`` listener: beets refuses a plugin's
    listener while another of its listeners runs, an import with ``auto``.)"""
    if getattr(item, "_tagger_gives", False):
        return
    dirty = set(getattr(item, "_dirty", ()))
    if {"instruments", "instruments_model"} & dirty:
        return  # (changed by this command: the user's, written as asked)
    read_at = _stored_mtime(item) if "mtime" in dirty else item.get("mtime")
    if not read_at:
        return  # (beets holds changes of the item not yet written, its mtime 0, or never read the file)
    from beets.util import syspath

    try:
        if int(os.path.getmtime(syspath(item.path))) <= int(read_at):
            return  # (the file as beets last read or wrote it: the item's are the latest)
        mf = mediafile.MediaFile(syspath(item.path))
    except (mediafile.UnreadableFileError, OSError):
        return  # (beets' write says why)
    found = {"instruments": mf.instruments or "", "instruments_model": mf.instruments_model or ""}
    if found == {f: item.get(f) or "" for f in found}:
        return
    if not found["instruments_model"] and item.get(UNWRITTEN) and _audio_of(item.path) == item.get(UNWRITTEN):
        return  # (beets' alone, the file's audio the same: kept, as `read` keeps them)
    item.update({**found, UNWRITTEN: ""})
    from beets import logging as beets_logging

    beets_logging.getLogger("beets").debug("instruments: {}: {}", _named(item), shown(
        f"the file changed since beets read it and holds {found['instruments'] or 'no instrument'} "
        f"(model {found['instruments_model'] or 'none'}), which the item did not: the item takes them, "
        "and the write leaves them in the file"))


def _stored_mtime(item) -> float:
    """The ``mtime`` beets' database holds of ``item``: when beets last read or wrote its file, 0 where
    it holds changes not written into it since (beets sets 0 at an edit of a media field); 0 for an
    item not stored."""
    db = getattr(item, "_db", None)
    stored = db.get_item(item.id) if db is not None and item.id is not None else None
    return (stored.get("mtime") or 0) if stored is not None else 0


def _write_given(item, tags) -> bool:
    """beets' ``try_write`` of the results the plugin has just given ``item``: written as given, the
    file's not taken first (`_take_the_files_results`; the plugin checked the file against them), and
    the item stored once written, as beets' ``try_sync`` stores it: its ``mtime`` the written file's
    (was: the 0 of the results given before the write stayed in beets' database, beets' mark of an
    edit not written, so a later ``beet write`` put these results back over those a later `tagger
    scan` wrote into the file). Stop signals are held back meanwhile (`tagger.signals.held`): beets
    (mutagen) writes the file in place, moving its audio where a tag grows, and a Ctrl-C inside
    that left the file half-written, its audio damaged. The first held says so on stderr; the third
    (`HELD_AT_MOST`) stops at once, inside the write, naming the file (was: every one held however
    long the write took, a file on a slow or hung network drive making Ctrl-C and SIGTERM useless)."""
    from tagger.signals import held

    item._tagger_gives = True
    try:
        with held(at_most=HELD_AT_MOST, on_held=lambda n: _say_held(item, n)):
            written = None
            try:
                written = item.try_write(tags=tags)
                if written:
                    item.store()
            except KeyboardInterrupt:  # (only the signal that breaks the hold comes inside it)
                if written is None:  # (in beets' store of the item, after the write: the file is whole)
                    from beets import logging as beets_logging

                    beets_logging.getLogger("beets").error("instruments: {}: {}", _named(item), shown(
                        "stopped inside beets' write of it: beets writes in place, so the file may be left "
                        "half-written, its audio damaged"))
                raise
    finally:
        item._tagger_gives = False
    return written


HELD_AT_MOST = 3
"""The stop signal that stops ``beet instruments`` inside beets' write of a file (`_write_given`): the
first stops the command after the item, the second after the write, the third at once."""


def _say_held(item, count: int) -> None:
    """Say on stderr (from the signal's handler: `tagger.signals.say`) that the stop signal held
    during beets' write of ``item`` (the ``count``-th) comes once the write is done."""
    from tagger.signals import say

    if count == 1:
        try:
            line = (f"instruments: stopping once beets has written {_named(item)} (it writes in place: stopping "
                    "inside would damage its audio); a third Ctrl-C stops at once, the file possibly half-written")
        except Exception:  # noqa: BLE001 - (in a signal handler: never raise)
            return
        say(line)


class InstrumentsPlugin(BeetsPlugin):
    item_types = {"instruments": types.STRING, "instruments_model": types.STRING, UNWRITTEN: types.STRING}
    item_queries = {"has_instrument": HasInstrumentQuery}

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.config.add({"auto": False, "models": None, "database": None, "jobs": None})
        for field, descriptor in (("instruments", InstrumentsField), ("instruments_model", ModelField),
                                  ("instruments_scores", ScoresField)):  # fmt: skip
            self._add_media_field(field, descriptor(), item_field=descriptor is not ScoresField)
        self._analyser = None
        from beets import library

        _follow_unwritten(library.Item)
        try:
            auto = self.config["auto"].get(bool)
        except confuse.ConfigError as exc:  # (was raised here: beets printed its traceback at every command
            # and went on without the plugin, its command, queries and fields; `jobs` says so as one line too)
            self._log.error("configuration error: {}; items are not analysed on import", exc)
            auto = False
        if auto:
            self.register_listener("import_task_files", self.import_task_files)
        self.register_listener("import_task_created", self.leave_out_kept_files)

    def leave_out_kept_files(self, session, task):
        """beets' ``import_task_created`` event: the files a tagger tag write kept beside a track
        (``NAME.tagger-kept-XXXXXXXX``, another program's save or the file before the write, not put
        back: see tagger's Safety) are not imported as tracks. Those kept since the ``~`` ending fall
        under beets' default ``ignore`` list (``*~``); those an older tagger kept without it did not
        (was: imported as one more track, and with ``import.copy`` or ``move`` put into the library).
        Each one left out is a warning line; the file stays where it is, the user's to look at.
        So is the hidden copy a tag write makes (``.NAME.XXXXXXXX.tagger-tmp``; one a killed write left,
        perhaps half-written, which the next tagger write in its folder removes), which beets' defaults
        skip (``.*`` in ``ignore``, ``ignore_hidden``): with neither (``ignore: []``, ``ignore_hidden:
        no``) it was imported as the track, the track itself then skipped as its duplicate.
        Returns ``[]`` (drop the task) where no item is left, else None (the task, changed in place)."""
        from tagger.paths import is_kept_name, is_temp_name

        def kept(item) -> bool:
            name = os.path.basename(os.fsdecode(item.path))
            if is_kept_name(name):
                self._log.warning("{}: {}", _named(item), shown(
                    "a file a tagger tag write kept (another program's save, or the file before the write): not "
                    "imported; it is yours to look at, then rename or remove"))
                return True
            if is_temp_name(name):
                self._log.warning("{}: {}", _named(item), shown(
                    "the hidden copy of a tagger tag write (left by a write that was killed), not a track: not "
                    "imported; the next tagger scan, tag or untag of its folder removes it"))
                return True
            return False

        item = getattr(task, "item", None)  # (a singleton)
        if item is not None:
            return [] if kept(item) else None
        items = getattr(task, "items", None)
        if not items:
            return None
        left = [i for i in items if not kept(i)]
        if len(left) == len(items):
            return None
        if not left:
            return []
        task.items = left
        return None

    def _add_media_field(self, name: str, descriptor, *, item_field: bool = True) -> None:
        """`add_media_field` (``item_field``: an item field too; otherwise on `MediaFile` only), once
        per process (beets and tests may load the plugin again; tagger's own
        `register_mediafile_fields` may have added a plain field of the same name)."""
        if not isinstance(mediafile.MediaFile.__dict__.get(name), type(descriptor)):
            if name in mediafile.MediaFile.__dict__:
                delattr(mediafile.MediaFile, name)
            if item_field:
                self.add_media_field(name, descriptor)
            else:
                mediafile.MediaFile.add_field(name, descriptor)
        elif item_field:
            from beets import library

            library.Item._media_fields.add(name)

    # -- the model ----------------------------------------------------------------------------------
    @property
    def analyser(self):
        """tagger's `Ensemble` (loaded on first use, from the ``models`` option); settable."""
        if self._analyser is None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            from tagger.model.ensemble import Ensemble

            self._analyser = Ensemble.load(self._path_option("models"))
            self._log.debug("models {} loaded", self._analyser.version)
        return self._analyser

    @analyser.setter
    def analyser(self, value) -> None:
        self._analyser = value

    def _path_option(self, name: str) -> str | None:
        """The option ``name`` (a folder or file, or a database URL) read as beets reads its own paths:
        ``~`` expanded, a relative path from a config file taken from beets' configuration folder
        (not from wherever ``beet`` runs, which would give each folder its own database)."""
        value = self.config[name].get()
        if value is None:
            return value
        if "://" in str(value):  # (a SQLite URL's relative file too: was taken from wherever `beet` ran)
            return self._sqlite_file_from_config_folder(name, str(value))
        return self.config[name].as_filename()

    def _sqlite_file_from_config_folder(self, name: str, url: str) -> str:
        """``url`` (the option ``name``) with the relative file of a SQLite URL (``sqlite:///tagger.db``)
        taken from where beets takes a relative path of that option (confuse's ``Filename``); any other
        URL as it is (tagger's `as_url` says what is wrong with one)."""
        from sqlalchemy.engine import make_url

        try:
            parsed = make_url(url)
            sqlite = parsed.get_backend_name() == "sqlite"
        except Exception:  # (ArgumentError, ValueError: as_url names the fault)
            return url
        file = parsed.database or ""
        if not sqlite or file in ("", ":memory:") or file.startswith(("file:", "~")) or os.path.isabs(file):
            return url
        _, source = self.config[name].first()
        if source.base_for_paths:
            file = os.path.join(os.path.dirname(source.filename), file)
        elif source.filename:
            file = os.path.join(self.config.root().config_dir(), file)
        return parsed.set(database=os.path.abspath(file)).render_as_string(hide_password=False)

    # -- the command and the import hook ----------------------------------------------------------
    def commands(self):
        cmd = ui.Subcommand("instruments", help="detect the instrument families playing in items (tagger)")
        cmd.parser.add_option("-w", "--write", action="store_true", default=None,
                              help="write the fields into the files (default: import.write)")  # fmt: skip
        cmd.parser.add_option("-W", "--nowrite", action="store_false", dest="write", help="do not write the files")
        cmd.parser.add_option("--rescan-stale", action="store_true", default=False,
                              help="re-analyse items analysed by another model version (or before tagger's database kept window scores)")  # fmt: skip
        cmd.parser.add_option("--retry-errors", action="store_true", default=False,
                              help="re-analyse unchanged files that failed before")  # fmt: skip
        cmd.func = self.command
        return [cmd]

    def command(self, lib, opts, args) -> None:
        from tagger.db.urls import DatabaseError
        from tagger.errors import TaggerError

        items = list(lib.items(args))
        try:
            self.analyse(items, write=ui.should_write(opts.write), rescan_stale=opts.rescan_stale,
                         retry_errors=opts.retry_errors)  # fmt: skip
        except TaggerError as exc:  # the database, the models: one line, as beets shows its own errors
            where = " (with beets: the database option of instruments)" if isinstance(exc, DatabaseError) else ""
            raise ui.UserError(f"instruments: {exc}{where}") from None

    def import_task_files(self, session, task) -> None:
        """``auto``: analyse the items of an import task once their files are in place."""
        from tagger.errors import TaggerError

        from tagger.library.state import ScanInterrupted

        try:
            self.analyse(list(task.imported_items()), write=ui.should_write())
        except ScanInterrupted as exc:  # (Ctrl-C: the import stops too, as beets' own Ctrl-C stops it)
            # (its items are in beets' library, without results: `beet instruments` gives them, where
            # importing again would not; was: "scan again to continue", "run the command again")
            said = str(exc) if getattr(exc, "given", None) is not None else (
                f"{exc}; `beet instruments` analyses and gives the items this import left without results")
            self._log.error("{}", said)
            raise KeyboardInterrupt from None
        except (TaggerError, confuse.ConfigError) as exc:  # the import goes on
            self._log.error("{}", exc)

    def analyse(self, items, *, write: bool, rescan_stale: bool = False, retry_errors: bool = False) -> dict:
        """Analyse `items`, set their fields, store them and (with `write`) write their files.

        Returns counts: analysed, reused (stored results of unchanged files), failed, written.
        """
        from tagger.db.session import open_database
        from tagger.library.files import analyse_files
        from tagger.library.state import StopSignals

        counts = {"analysed": 0, "reused": 0, "failed": 0, "written": 0}
        if not items:
            return counts
        jobs = self.config["jobs"].get(confuse.Optional(int))  # (beets: "configuration error: instruments.jobs: ...")
        paths = {item.id: os.path.abspath(os.fsdecode(item.path)) for item in items}
        database = open_database(self._path_option("database"))
        try:
            _, results = analyse_files(paths.values(), db=database, analyser=self.analyser, jobs=jobs,
                                       rescan_stale=rescan_stale, retry_errors=retry_errors)  # fmt: skip
            known = _known_models(database)
            with StopSignals() as stop:  # (the first stop signal: the items given so far stay, the rest wait)
                for done, item in enumerate(items):
                    if stop.requested:
                        raise _stopped(stop.signum, done, len(items), written=write)
                    self._give_one(database, item, results[paths[item.id]], write=write, counts=counts, known=known)
                if stop.requested:  # (asked during the last item: heard too, as a scan hears it)
                    raise _stopped(stop.signum, len(items), len(items), written=write)
        finally:
            database.close()
        kept = f", {counts['kept']} kept (fields not provably tagger's, see above)" if counts.get("kept") else ""
        self._log.info("{analysed} analysed, {reused} unchanged (results reused), {failed} failed, "
                       "{written} file(s) written" + kept, **counts)  # fmt: skip
        return counts

    def _give_one(self, database, item, res, *, write: bool, counts: dict, known: set[str]) -> None:
        """`_give` ``item`` its result ``res``, count it in ``counts`` and say what was done of it; a file
        whose fields are not provably tagger's (their INSTRUMENTS_MODEL none of ``known``, the model
        versions tagger knows: `tagger.model.folders.known_model_versions`) is kept, as `tagger untag`
        and `tagger tag` keep it: neither written nor its item given the results, said and counted."""
        kept = _kept(item, res, known)
        if kept:
            counts["kept"] = counts.get("kept", 0) + 1
            self._log.warning("{}: {}", _named(item), shown(kept))
            return
        problem, written = self._give(database, item, res, write=write)
        if problem:
            counts["failed"] += 1
            self._log.error("{}: {}", _named(item), shown(problem))
            return
        counts["analysed" if res.analysed else "reused"] += 1
        counts["written"] += written
        # (one line an item, as beets' own plugins say what they did of each: `beet fingerprint`'s
        # "PATH: fingerprinting", replaygain's "Skipping track ..."; info: shown by the command,
        # with -v on import)
        outcome = ("analysed" if res.analysed else "unchanged, results reused") + (", written" * written)
        self._log.info("{}: {}", _named(item), shown(f"{item.get('instruments') or 'no instrument'} ({outcome})"))

    def _give(self, database, item, res, *, write: bool) -> tuple[str | None, bool]:
        """Give ``item`` the results ``res`` of its file and store it; with ``write``, write them into
        the file too (beets' ``try_write``, through `rewrite_tags`: the rewrite is recorded in tagger's
        database only when nothing but tags changed). Nothing is given while the file is not the one
        the results were made from. Returns (why the item was not given them, whether it was written).

        The item's ``mtime`` in beets' database stays when beets last read or wrote the file: the
        written file's once written (`_write_given`), the one it held where the file holds what the
        item is given already (was: 0, which beets sets at an edit of a media field, its mark of an
        edit not written, so that `_take_the_files_results` took the item's results for the user's
        edit and a later ``beet write`` put them back over those a later `tagger scan` wrote into the
        file); 0 where beets alone holds them (``-W``, a write not made)."""
        from tagger.library.files import changed_since_analysis, rewrite_tags

        if not res.ok:
            return res.error, False

        def give(*, unwritten: bool, as_file: bool = False) -> None:
            read_at = item.mtime
            item["instruments"] = SEPARATOR.join(res.instruments)
            item["instruments_model"] = res.model_version or ""
            item[UNWRITTEN] = _audio_of(res.path) if unwritten else ""
            if as_file:  # (the file holds them already: beets' mtime stands, see above)
                item.mtime = read_at
            item.store()

        found = _in_file(res)
        if found.model_version not in (None, res.model_version) and res.stale:
            # stale results (another model version's than the plugin's, not analysed again) never replace
            # another model's in the file (as a tag-writing scan leaves them): the item follows the file,
            # as beets reads it (`beet update` then changes nothing)
            read_at = item.mtime
            item.update(_as_beets_reads(res.path, found))
            item[UNWRITTEN] = ""
            item.mtime = read_at  # (the file holds them already: beets' mtime stands, see above)
            item.store()
            self._log.info("{}: {}", _named(item), shown(
                f"holds the results of model {found.model_version}; its stored results, of model "
                f"{res.model_version}, are stale: left unchanged (--rescan-stale analyses it again)"))
            return None, False
        holds = found.holds
        to_write = write and not holds
        left = _left_alone(res.path) if to_write else None
        if not to_write or left:
            problem = changed_since_analysis(res)
            if problem is None:
                give(unwritten=not holds, as_file=holds)
                if left:
                    self._log.warning("{}: {}", _named(item), shown(left))
            return problem, False
        # (INSTRUMENTS_SCORES: the results' own are kept, as a scan without --scores keeps them; others removed)
        dropped = {} if found.own_scores else {"instruments_scores": None}
        done = rewrite_tags(database, res, lambda: give(unwritten=False) or _write_given(item, dropped))
        if not done.written:
            if done.problem is None:  # beets could not write it, and said why: the results are beets' alone
                item[UNWRITTEN] = _audio_of(res.path)
                item.store()
            return done.problem, False
        if done.problem:
            self._log.warning("{}: {}", _named(item), shown(done.problem))
        return None, True


def _known_models(database) -> set[str]:
    """The model versions whose fields tagger takes for its own (`tagger.model.folders.known_model_versions`),
    with every one tagger's database ``database`` records (the plugin's own model among them, once it
    has analysed)."""
    from sqlalchemy.exc import SQLAlchemyError

    from tagger.db.listing import model_version_names
    from tagger.model.folders import known_model_versions

    try:
        with database.reader() as reader:
            recorded = model_version_names(reader)
    except SQLAlchemyError:
        recorded = set()
    return known_model_versions(recorded=recorded)


def _kept(item, res, known: set[str]) -> str | None:
    """Why the file of ``res`` is kept (None: it is not): its INSTRUMENTS_MODEL names neither a model
    tagger knows (``known``) nor the results' own, so its fields may be someone else's (a user's
    INSTRUMENTS=flute with INSTRUMENTS_MODEL=kid3-manual, typed in kid3). The item then follows the
    file, as beets reads it (``beet write`` then writes nothing of tagger's over them); the results
    stay in tagger's database."""
    import shlex

    from tagger import tags
    from tagger.errors import TaggerError
    from tagger.tags.rewrite import kept_reason

    if not res.ok:
        return None
    try:
        state = tags.read_instruments(res.path)
    except TaggerError:
        return None  # (a format tagger does not tag: as before)
    version = (state.model_version or "").strip()
    if not version or version == (res.model_version or "").strip() or version in known:
        return None
    read_at = item.mtime
    item.update(_as_beets_reads(res.path, _InFile(list(state.instruments), state.model_version, holds=False,
                                                   own_scores=False)))  # fmt: skip
    item[UNWRITTEN] = ""
    item.mtime = read_at  # (the file holds them: beets' mtime stands)
    item.store()
    return kept_reason(version, state, f"tagger untag --model-version {shlex.quote(version)} "
                                       f"{shlex.quote(res.path)} removes them; the next beet instruments then "
                                       "writes tagger's")  # fmt: skip


def _stopped(signum: int, given: int, total: int, *, written: bool):
    """The error of a ``beet instruments`` stopped by a stop signal (Ctrl-C) after ``given`` of its
    ``total`` items: those keep their results (and, ``written``, their files, written whole), the
    others' are stored in tagger's database, and the next run gives them without analysing them
    again (an import's too: its items are in beets' library)."""
    from tagger.library.state import ScanInterrupted

    stop = ScanInterrupted(signum, 0)
    name = str(stop).split(")")[0] + ")"
    files = " (their files written whole)" if written else ""
    others = ("" if given == total else
              "; the others' results are stored in tagger's database: `beet instruments` gives them")
    stop.args = (f"{name} after {given} of {total} item(s), given their results{files}{others}",)
    stop.given = given
    return stop


def _beets_reads(res) -> bool:
    """Whether beets reads the fields of the file of ``res`` as the item's values of its results (a
    file holding them in another form, ``STRING`` that tagger reads as ``string``, is written in
    tagger's, as ``tagger tag`` writes it: otherwise ``beet update`` gave its item ``STRING`` and the
    next ``beet instruments`` ``string``, at every run). True where beets cannot read the file."""
    try:
        mf = mediafile.MediaFile(res.path)
    except mediafile.UnreadableFileError:
        return True
    return (mf.instruments or "") == SEPARATOR.join(res.instruments) and mf.instruments_model == res.model_version


def _as_beets_reads(path: str, found: _InFile) -> dict[str, str]:
    """The item fields ``instruments`` and ``instruments_model`` as beets reads them from the file at
    ``path`` (``beet update``: values another program wrote in another form, ``FLUTE``, exactly as
    stored, where tagger reads ``flute``); ``found``'s where beets cannot read it."""
    try:
        mf = mediafile.MediaFile(path)
    except mediafile.UnreadableFileError:
        return {"instruments": SEPARATOR.join(found.instruments), "instruments_model": found.model_version or ""}
    return {"instruments": mf.instruments or "", "instruments_model": mf.instruments_model or ""}


def _left_alone(path: str) -> str | None:
    """Why the file must not be written, as `tagger tag` leaves it (None: it may be): it is read-only
    (no write permission bit: root could write it, but the mode says to leave it alone), or fields
    named like tagger's in it are someone else's (`tagger.tags.foreign_fields`)."""
    import stat

    from tagger.tags import foreign_fields, foreign_reason

    try:
        mode = os.stat(path).st_mode
        foreign = foreign_fields(mediafile.MediaFile(path))
    except (OSError, mediafile.UnreadableFileError):
        return None  # (beets' write says why)
    if not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH) or not os.access(path, os.W_OK):
        return "file is read-only: left unchanged"
    return foreign_reason(foreign) if foreign else None


@dataclass(frozen=True)
class _InFile:
    """tagger's fields as the file of a result holds them (`_in_file`)."""

    instruments: list[str]
    model_version: str | None
    holds: bool
    """The file carries the results: their families and model version, and no scores or their own."""
    own_scores: bool
    """Its INSTRUMENTS_SCORES are the results' own (``tagger scan --scores`` wrote them): a write keeps them."""


def _in_file(res) -> _InFile:
    """What the file of ``res`` holds of tagger's fields, against ``res``. A format beets tags and
    tagger does not (none of the common ones since tagger tags APEv2 and DSF) is read as beets reads
    it (its scores, if any, are never counted as the results' own)."""
    from tagger import tags
    from tagger.errors import TaggerError

    try:
        state = tags.read_instruments(res.path)
    except TaggerError:
        try:
            mf = mediafile.MediaFile(res.path)
        except mediafile.UnreadableFileError:
            return _InFile([], None, holds=False, own_scores=False)
        families = split_families(mf.instruments)
        return _InFile(families, mf.instruments_model or None, own_scores=False,
                       holds=(families == list(res.instruments) and mf.instruments_model == res.model_version
                              and not mf.instruments_scores))  # fmt: skip

    def written(scores: dict[str, float]) -> dict[str, str]:
        return {family: f"{score:.{tags.SCORE_DECIMALS}f}" for family, score in scores.items()}

    own = state.scores is not None and written(state.scores) == written(res.scores)
    holds = (list(state.instruments) == list(res.instruments) and state.model_version == res.model_version
             and (state.scores is None or own) and _beets_reads(res))  # fmt: skip
    return _InFile(list(state.instruments), state.model_version, holds=holds, own_scores=own)
