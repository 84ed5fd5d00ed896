"""Which tracks a command works on: one filter value, read both by SQL and in memory.

In the style of beets' ``dbcore/query.py``: each part of a filter knows its SQL clause
(`~Part.clause`: SQL text over the ``tracks`` table, `tagger.db.sql.Sql`; None when it can only be
checked in Python) and its
Python match (`~Part.match`, on a `Candidate`: a stored track or a prediction read from a file).
`TrackFilter` combines them; ``tagger query`` and ``tagger tag`` build it from the same options
(`tagger.cli.options`).

Adding a filter: one `Part` subclass here, a field of `TrackFilter` (and its keyword of
`TrackFilter.of`; a condition on where a file is, not on what it holds, marked `PLACE`), and its
CLI option: one entry of `tagger.cli.options.FILTER_OPTIONS`, which query and tag both take. What
reads a filter in parts asks it (`TrackFilter.place`, `TrackFilter.held`, `TrackFilter.paths_alone`),
never its fields by name.
"""

from __future__ import annotations

import fnmatch
import functools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, replace

from tagger.db.sql import PER_STATEMENT, Sql, chunks, joined, sql
from tagger.errors import UserError
from tagger.paths import Roots, absolute, folder_prefix, is_utf8, nfc


@dataclass(frozen=True)
class Candidate:
    """What the in-memory evaluator sees of a track."""

    path: str
    instruments: Sequence[str]
    scores: Mapping[str, float] | None = None


class Part:
    """One condition of a filter."""

    def clause(self, dialect: str) -> Sql | None:
        """The SQL condition on the ``tracks`` table (``dialect``: the database's), or None when only
        `match` can check it."""
        raise NotImplementedError

    def match(self, item: Candidate) -> bool:
        raise NotImplementedError


def under_clause(root: str, dialect: str) -> Sql:
    """SQL condition: the track's path is `root` or lies under folder `root`.

    SQLite compares text bytewise, so a range scan on the path index does it; other databases may
    use locale collations, so there the prefix is compared exactly with ``substr``.
    """
    prefix = folder_prefix(root)
    if dialect == "sqlite":
        inside = sql("tracks.path >= {} AND tracks.path < {}", prefix, prefix[:-1] + chr(ord(os.sep) + 1))
    else:  # (the length a literal: a driver may send an int parameter as a type substr takes no such argument of)
        inside = sql(f"substr(tracks.path, 1, {len(prefix):d}) = {{}}", prefix)
    return sql("{} OR tracks.path = {}", inside, root)


def under_any_clause(roots: Iterable[str], dialect: str) -> Sql:
    """SQL condition: the track's path is one of ``roots`` or lies under one of them (`under_clause`,
    OR'd: give it at most `tagger.db.sql.PER_STATEMENT` roots, `tagger.db.sql.chunks`)."""
    return joined(" OR ", (under_clause(r, dialect) for r in roots))


def _detected(family: str, min_score: float | None = None) -> Sql:
    """SQL condition: the track has ``family`` detected (with a score of at least ``min_score``)."""
    score = sql("") if min_score is None else sql(" AND detections.score >= {}", float(min_score))
    return sql("EXISTS (SELECT 1 FROM detections WHERE detections.track_id = tracks.id AND detections.family = {} "
               "AND detections.present = TRUE{})", family, score)  # fmt: skip


@dataclass(frozen=True)
class Has(Part):
    """The family is detected (with a score of at least ``min_score`` when given)."""

    family: str
    min_score: float | None = None

    def clause(self, dialect):
        return _detected(self.family, self.min_score)

    def match(self, item):
        if self.family not in {f.lower() for f in item.instruments}:
            return False
        if self.min_score is None:
            return True
        score = (item.scores or {}).get(self.family)
        return score is not None and float(score) >= float(self.min_score)


@dataclass(frozen=True)
class Lacks(Part):
    """The family is not detected."""

    family: str

    def clause(self, dialect):
        return sql("NOT {}", _detected(self.family))

    def match(self, item):
        return self.family not in {f.lower() for f in item.instruments}


@dataclass(frozen=True)
class PathGlob(Part):
    """The whole absolute path matches a shell pattern (``'*/Jazz/*'``, ``'*.flac'``), case-sensitively,
    or the same pattern with its folder part's links resolved (`glob_forms`); either as they are or
    both in Unicode's NFC form (a name copied from macOS is stored decomposed, NFD: ``e`` and a
    combining accent, where a user types ``é``)."""

    pattern: str

    def clause(self, dialect):
        return None  # SQL LIKE/GLOB differ per database and from fnmatch: checked in Python

    def match(self, item):
        forms = glob_forms(self.pattern)
        if any(fnmatch.fnmatchcase(item.path, form) for form in forms):
            return True
        path = nfc(item.path)
        return any(fnmatch.fnmatchcase(path, nfc(form)) for form in forms)


@functools.lru_cache(maxsize=16)
def glob_forms(pattern: str) -> tuple[str, ...]:
    """``pattern``, and, when the folder it begins with (up to the last ``/`` before its first
    wildcard) exists and has a symbolic link on its way, the same pattern with that folder's real
    path: a scan stores tracks under the real path of their folders, so ``"$HOME/Music/*"`` with
    ``~/Music`` a link to another disk would select nothing."""
    wild = min((i for i in (pattern.find(c) for c in "*?[") if i >= 0), default=len(pattern))
    folder = pattern[: pattern.rfind("/", 0, wild) + 1]
    if len(folder) <= 1 or not os.path.isdir(folder):
        return (pattern,)
    real = os.path.join(os.path.realpath(folder), "")
    return (pattern,) if real == folder else (pattern, real + pattern[len(folder) :])


@dataclass(frozen=True)
class Under(Part):
    """The path is one of these files or folders, or lies under one of them (absolute paths)."""

    roots: tuple[str, ...]

    def clause(self, dialect):
        return under_any_clause(self.roots, dialect)

    @functools.cached_property
    def _roots(self) -> Roots:
        return Roots(self.roots)

    def match(self, item):  # (by the path's folders, not each root: tag --from-json of 12,000 rows and files)
        return self._roots.holds(os.path.abspath(item.path))


def check_path_glob(pattern: str | None) -> str | None:
    """``pattern`` (`PathGlob`), refused (`UserError`) when it can match no absolute path: an empty
    one, or one whose first character cannot be ``/`` (``Jazz``, ``[``, a backslash: fnmatch has no
    escape character), or one that is not UTF-8 (no stored name is). Such a pattern would select
    nothing, in silence."""
    if pattern is None:
        return None
    if not is_utf8(pattern):  # (a byte of a Latin-1 name typed in a shell: stored names are UTF-8 only)
        raise UserError(f"--path-glob '{pattern}' is not valid UTF-8 (a byte shown as \\xNN): the library database "
                        "holds UTF-8 names only, so it can match no track")  # fmt: skip
    first = pattern[:1]
    if first in ("/", "*", "?"):
        return pattern
    close = pattern.find("]", 2) if first == "[" else -1
    if close > 0 and fnmatch.fnmatchcase("/", pattern[: close + 1]):
        return pattern  # a character class holding "/"
    hint = f" (did you mean '*{pattern}*'?)" if pattern.strip() else ""
    home = os.path.expanduser(pattern) != pattern  # (~/Music, ~me/Music: ~nobody stays as it is)
    if pattern.startswith(("./", "../")) or pattern in (".", "..") or home:  # (a folder's name as a shell
        # writes it, quoted: '*./**' was the hint, which no stored path, absolute and normalised, matches)
        absolute = os.path.abspath(os.path.expanduser(pattern))
        if pattern.endswith("/") or os.path.isdir(absolute):  # (a folder: its tracks, where '../' gave '//',
            absolute = os.path.join(absolute, "*")  # '.' '/cwd', './' '/cwd/', matching no track either)
        hint = f" (did you mean '{absolute}'?)"
    raise UserError(f"--path-glob '{pattern}' matches the whole absolute path, so it must start with / or *: "
                    f"it can match no track{hint}")  # fmt: skip


def storable_name(path: str) -> str:
    """``path``, refused (`UserError`) when it is not valid UTF-8: the database holds UTF-8 text, so
    it holds no results for such a file, nor for the files of such a folder (a scan records each as an
    error under an escaped name)."""
    if not is_utf8(path):
        if os.path.isdir(path):
            raise UserError(f"{path}: the folder name is not valid UTF-8, so the library database holds no results "
                            "for its files (a scan records each as an error); rename the folder and scan it")  # fmt: skip
        raise UserError(f"{path}: the file name is not valid UTF-8, so the library database holds no results "
                        "for it (a scan records it as an error); rename the file and scan it")  # fmt: skip
    return path


def path_forms(path: str | os.PathLike) -> tuple[str, ...]:
    """``path`` made absolute, and the same with the folders on its way resolved (its last part is
    left as it is: a track may be stored under the name of a link to a file)."""
    given = storable_name(absolute(os.path.expanduser(os.fspath(path))))
    folder, name = os.path.split(given)
    resolved = os.path.join(os.path.realpath(folder), name) if name else os.path.realpath(given)
    whole = os.path.realpath(given)  # a folder given through a link: the folder it points to
    return tuple(dict.fromkeys((given, resolved, whole) if os.path.isdir(given) else (given, resolved)))


PLACE = {"place": True}
"""The metadata of a `TrackFilter` field that is a condition on where a file is (its path), not on
what it holds (its families): `TrackFilter.place` keeps those fields, `TrackFilter.held` the others."""


@dataclass(frozen=True)
class TrackFilter:
    """A selection of tracks: every family of ``has`` present (score >= ``min_score`` when given),
    none of ``lacks``, the path matching ``path_glob`` and (when ``paths`` are given) under one of
    ``paths``. The empty filter selects everything."""

    has: tuple[str, ...] = ()
    lacks: tuple[str, ...] = ()
    min_score: float | None = None
    path_glob: str | None = field(default=None, metadata=PLACE)
    paths: tuple[str, ...] = field(default=(), metadata=PLACE)
    given: tuple[str, ...] = field(default=(), compare=False, metadata=PLACE)  # the paths as written, absolute

    @classmethod
    def of(cls, *, has: Iterable[str] | None = (), lacks: Iterable[str] | None = (), min_score: float | None = None,
           path_glob: str | None = None, paths: Iterable[str | os.PathLike] | None = ()) -> TrackFilter:  # fmt: skip
        """A filter from option values (None for an option not given); family names lower-cased,
        paths made absolute, each also with its folders' symbolic links resolved (a scan stores
        its tracks under the real path of the folders it was given, so ``~/Music`` through a link
        still selects them)."""
        if min_score is not None:  # (otherwise it would select everything, or nothing, in silence)
            if math.isnan(min_score):
                raise UserError("--min-score must be a number, got nan")
            if not 0.0 <= min_score <= 1.0:  # scores are probabilities: above 1 nothing, below 0 all
                raise UserError(f"--min-score {min_score:g}: a score lies between 0 and 1")
            if not has:
                raise UserError("--min-score is the least score of each --has family: give --has FAMILY with it")
        has = tuple(f.strip().lower() for f in has or ())
        lacks = tuple(f.strip().lower() for f in lacks or ())
        both = sorted(set(has) & set(lacks))
        if both:  # (no track can match)
            raise UserError(f"{', '.join(both)} given both to --has and to --lacks: no track can match")
        return cls(
            has=has,
            lacks=lacks,
            min_score=min_score,
            path_glob=check_path_glob(path_glob),
            paths=tuple(dict.fromkeys(form for p in paths or () for form in path_forms(p))),
            given=tuple(dict.fromkeys(path_forms(p)[0] for p in paths or ())),
        )

    @property
    def shown_paths(self) -> tuple[str, ...]:
        """The paths to name in a message: as given (absolute), not every form matched."""
        return self.given or self.paths

    def by_paths(self, size: int = PER_STATEMENT) -> list[TrackFilter]:
        """This filter as filters of at most ``size`` of its paths each, its other conditions in every
        one: together they select what it selects (a track under paths of two of them: in both), each
        one's SQL a statement can hold (`tagger.db.sql.PER_STATEMENT`: ``tagger tag *.flac`` of
        1,000 files or more failed on SQLite, "Expression tree is too large (maximum depth 1000)").
        Few paths or none: ``[self]``."""
        if len(self.paths) <= size:
            return [self]
        return [replace(self, paths=tuple(part)) for part in chunks(self.paths, size)]

    def place(self) -> TrackFilter:
        """This filter's conditions on where a file is alone (its fields marked `PLACE`: the paths, the
        path pattern), the others left out."""
        return self._keeping(place=True)

    def held(self) -> TrackFilter:
        """This filter's conditions on what a file holds alone (every field not marked `PLACE`: the
        families, their least score), those on where it is left out."""
        return self._keeping(place=False)

    def _keeping(self, *, place: bool) -> TrackFilter:
        left = [f for f in fields(self) if bool(f.metadata.get("place")) != place]
        return replace(self, **{f.name: f.default if f.default is not MISSING else f.default_factory() for f in left})

    @property
    def paths_alone(self) -> bool:
        """No condition but the paths (`Under`; no paths: none at all): a filter that selects nothing
        under them selects nothing because nothing there was analysed."""
        return all(isinstance(p, Under) for p in self.parts)

    def check(self, known: Sequence[str]) -> TrackFilter:
        """Raise `UserError` for a family name not among ``known`` (naming the choices); returns self."""
        for name in (*self.has, *self.lacks):
            if name not in known:
                raise UserError(f"unknown instrument family {name!r}; known families: {', '.join(known)}")
        return self

    @functools.cached_property
    def parts(self) -> list[Part]:  # (made once: `match` runs for every prediction)
        parts: list[Part] = [Has(f, self.min_score) for f in self.has]
        parts += [Lacks(f) for f in self.lacks]
        if self.paths:
            parts.append(Under(self.paths))
        if self.path_glob:
            parts.append(PathGlob(self.path_glob))
        return parts

    def clauses(self, dialect: str) -> list[Sql]:
        """The SQL conditions of the parts that have one."""
        return [c for c in (p.clause(dialect) for p in self.parts) if c is not None]

    def python_only(self, dialect: str) -> list[Part]:
        """The parts SQL cannot check (apply `match` to the rows the SQL conditions selected)."""
        return [p for p in self.parts if p.clause(dialect) is None]

    def match(self, item: Candidate) -> bool:
        """The in-memory evaluator: True when ``item`` passes every part."""
        return all(p.match(item) for p in self.parts)
