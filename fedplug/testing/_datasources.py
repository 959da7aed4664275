"""Conformance check for datasource plugins: read-only, a new frame per call, clear errors.

``check_datasource`` returns None or raises AssertionError whose message names the check,
the datasource, what was expected, what happened, and how to fix it.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

from fedplug._errors import DataSourceError
from fedplug.data import Datasource

CHECK = "check_datasource"
#: A column the check adds to a loaded frame, to see whether the next load() sees it.
_PROBE = "__fedplug_check_datasource__"


def _label(source: Any) -> str:
    name = type(source).__name__
    try:
        described = source.describe()
    except Exception:  # noqa: BLE001 - describe() is checked on its own below
        return name
    return f"{name}({described})" if isinstance(described, str) and described else name


class _Check:
    """Failure messages of check_datasource for one datasource."""

    def __init__(self, source: Any, what: str = "datasource") -> None:
        self.prefix = f"{CHECK}: {what} {_label(source)!r}"

    def fail(self, problem: str, fix: str = "") -> AssertionError:
        return AssertionError(f"{self.prefix}: {problem}" + (f" {fix}" if fix else ""))


# -- the files behind a source ---------------------------------------------------------------
def _sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite:///file.db`` URL, else None."""
    try:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception:  # noqa: BLE001 - no sqlalchemy, or not a URL: nothing to watch
        return None
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        return None
    return Path(database)


def _watched_paths(source: Datasource) -> list[Path]:
    """Files (or directories) the source reads: its ``path_options``, ``path``, SQLite ``url``."""
    names = [*getattr(type(source), "path_options", ()), "path"]
    found: list[Path] = []
    for name in dict.fromkeys(names):
        value = getattr(source, name, None)
        if isinstance(value, (str, Path)) and str(value):
            found.append(Path(value))
    url = getattr(source, "url", None)
    if isinstance(url, str):
        database = _sqlite_file(url)
        if database is not None:
            found.append(database)
    return [p for p in dict.fromkeys(found) if p.exists()]


def _fingerprint(path: Path) -> dict[str, tuple[int, int, str]]:
    """Size, mtime (ns) and SHA-256 of the file, or of every file under the directory."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    out = {}
    for file in files:
        stat = file.stat()
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        out[str(file)] = (stat.st_size, stat.st_mtime_ns, digest)
    return out


def _frames_of(source: Datasource) -> dict[str, pd.DataFrame]:
    """Deep copies of the DataFrames the source holds (an in-memory source's data)."""
    held = getattr(source, "__dict__", {})
    return {k: v.copy(deep=True) for k, v in held.items() if isinstance(v, pd.DataFrame)}


# -- the steps -------------------------------------------------------------------------------
def _load(source: Datasource, c: _Check, call: int) -> pd.DataFrame:
    try:
        frame = source.load()
    except DataSourceError as exc:
        raise c.fail(
            f"load() (call {call}) raised DataSourceError: {exc}",
            "check_datasource needs a configured source whose data exists; pass a "
            "misconfigured one as `broken=`.",
        ) from exc
    except Exception as exc:  # noqa: BLE001 - reported with the plugin's own words
        raise c.fail(
            f"load() (call {call}) raised {type(exc).__name__}: {exc}",
            "load() must return a pandas DataFrame, and report a problem with the data as "
            "fedplug.DataSourceError.",
        ) from exc
    if not isinstance(frame, pd.DataFrame):
        raise c.fail(
            f"load() (call {call}) returned a {type(frame).__name__}, not a pandas DataFrame.",
            "Return a pandas.DataFrame with one row per record.",
        )
    return frame


def _check_frame(frame: pd.DataFrame, c: _Check) -> None:
    if len(frame) == 0:
        raise c.fail(
            f"load() returned a frame with no rows (columns {list(frame.columns)[:10]}).",
            "Point the source at data with at least one row; an empty source has nothing to "
            "train on.",
        )
    bad = [col for col in frame.columns if not isinstance(col, str)]
    if bad:
        raise c.fail(
            f"load() returned column names that are not strings: {bad[:5]!r}.",
            "Pod schemas name columns by string: rename them (e.g. "
            "frame.columns = [str(c) for c in frame.columns]), or read the file's header.",
        )


def _mutate(frame: pd.DataFrame) -> None:
    """Change ``frame`` in place, as a caller of load() may."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # in-place value changes, dtype-preserving (rows reversed)
            for i in range(frame.shape[1]):
                frame.iloc[:, i] = frame.iloc[::-1, i].to_numpy()
        except Exception:  # noqa: BLE001 - an exotic dtype; the probe column below suffices
            pass
        frame[_PROBE] = 1
        frame.drop(index=frame.index[:1], inplace=True)


def _check_fresh(source: Datasource, first: pd.DataFrame, c: _Check) -> None:
    expected = first.copy(deep=True)
    second = _load(source, c, 2)
    if second is first:
        raise c.fail(
            "two load() calls returned the same DataFrame object.",
            "Return a new frame on every call (e.g. `return self._frame.copy(deep=True)`), "
            "so a pod changing its frame cannot change the source.",
        )
    _mutate(second)
    third = _load(source, c, 3)
    if _PROBE in third.columns or len(third) != len(expected):
        raise c.fail(
            "a change to the frame one load() returned showed in the next load() "
            "(a column added or a row dropped in place reappeared).",
            "Return a new frame on every call (e.g. `return self._frame.copy(deep=True)`).",
        )
    if not third.equals(expected):
        raise c.fail(
            "load() returned different data after the frame from an earlier load() was "
            "changed in place (or the source is not deterministic).",
            "Return a deep copy of the data on every call (`frame.copy(deep=True)`), and read "
            "the same rows in the same order each time.",
        )


def _check_describe(source: Datasource, c: _Check) -> None:
    try:
        text = source.describe()
    except Exception as exc:  # noqa: BLE001
        raise c.fail(
            f"describe() raised {type(exc).__name__}: {exc}",
            "describe() must return a short text naming the data (messages and logs use it).",
        ) from exc
    if not isinstance(text, str) or not text.strip():
        raise c.fail(
            f"describe() returned {text!r}; expected a non-empty string.",
            "Return a short text naming the data, e.g. f\"feather file '{self.path}'\".",
        )


def _check_broken(broken: Any) -> None:
    c = _Check(broken, "broken datasource")
    if not isinstance(broken, Datasource):
        raise c.fail(
            f"is a {type(broken).__name__}, not a fedplug.data.Datasource.",
            "Pass a misconfigured instance of the same datasource class as `broken=`.",
        )
    try:
        frame = broken.load()
    except DataSourceError as exc:
        if not str(exc).strip():
            raise c.fail(
                "load() raised a DataSourceError with an empty message.",
                "Say what is missing and how to fix it (the pod's owner reads it).",
            ) from exc
        return
    except Exception as exc:  # noqa: BLE001
        raise c.fail(
            f"load() of missing data raised {type(exc).__name__}: {exc}",
            "Catch the library's error (OSError, pandas or driver errors) and raise "
            "fedplug.DataSourceError naming the missing data and the fix, `from exc`.",
        ) from exc
    raise c.fail(
        f"load() of missing data returned a {type(frame).__name__} instead of raising.",
        "Raise fedplug.DataSourceError when the data the source points at does not exist.",
    )


def check_datasource(source: Datasource, *, broken: Datasource | None = None) -> None:
    """Check a configured datasource against the datasource contract.

    Parameters
    ----------
    source:
        A ``fedplug.data.Datasource`` instance pointing at existing data with at least one
        row.
    broken:
        Optional: a second instance pointing at something missing (a file that does not
        exist, an unknown table). Its ``load()`` must raise ``fedplug.DataSourceError``.

    Verified: ``load()`` returns a pandas DataFrame with at least one row and string column
    names; every call returns a new frame, and changing one in place does not change the
    next; loading leaves the files the source exposes (``path_options``, ``path``, a SQLite
    ``url``) and the DataFrames it holds unchanged (bytes and modification time);
    ``describe()`` returns a non-empty string; and, with ``broken``, missing data raises
    ``DataSourceError`` (not a bare pandas or OS error).
    """
    c = _Check(source)
    if not isinstance(source, Datasource):
        raise c.fail(
            f"is a {type(source).__name__}, not a fedplug.data.Datasource.",
            "Subclass fedplug.data.Datasource and pass a configured instance.",
        )
    paths = _watched_paths(source)
    before = {str(p): _fingerprint(p) for p in paths}
    held = _frames_of(source)

    first = _load(source, c, 1)
    _check_frame(first, c)
    _check_fresh(source, first, c)

    for path in paths:
        if _fingerprint(path) != before[str(path)]:
            raise c.fail(
                f"loading changed '{path}' (its bytes or modification time).",
                "A datasource is read-only: open files for reading only (SQLite in mode=ro) "
                "and never write, touch or rewrite the data.",
            )
    for name, frame in held.items():
        now = getattr(source, name, None)
        if not isinstance(now, pd.DataFrame) or not now.equals(frame):
            raise c.fail(
                f"loading changed the DataFrame it holds in {name!r}.",
                "A datasource is read-only: return a copy and never modify the data it holds.",
            )
    _check_describe(source, c)
    if broken is not None:
        _check_broken(broken)
