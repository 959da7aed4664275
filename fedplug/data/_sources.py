"""Read-only datasources: each ``load()`` returns a fresh DataFrame and never writes."""

from __future__ import annotations

import inspect
import re
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, cast

import pandas as pd

from fedplug._errors import DataSourceError, PodConfigError
from fedplug._validation import check_known_keys
from fedplug.data._text import did_you_mean, quoted, type_name

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine


class Datasource(ABC):
    """Base class: a named kind, a ``load()`` that returns a new frame, a ``describe()``."""

    kind: ClassVar[str] = "datasource"
    #: The fedplug plugin API this datasource is written for.
    fedplug_plugin_api: ClassVar[int] = 2
    #: Constructor arguments that are file paths, resolved against the pod file's directory.
    path_options: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def load(self) -> pd.DataFrame:
        """A new DataFrame with the source's rows; the source is never written."""

    def describe(self) -> str:
        return self.kind

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.describe()})"

    @classmethod
    def from_config(cls, options: Mapping[str, Any], base_dir: Path | None) -> Datasource:
        """Build from the pod YAML's ``datasource`` options (without ``type``)."""
        options = dict(options)
        for key in cls.path_options:
            if key in options and isinstance(options[key], (str, Path)):
                options[key] = _resolve(options[key], base_dir)
        _check_options(cls, options)
        return cls(**options)


def _resolve(path: str | Path, base_dir: Path | None) -> Path:
    path = Path(path).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    return path


def _check_options(cls: type[Datasource], options: Mapping[str, Any]) -> None:
    params = {
        n: p
        for n, p in inspect.signature(cls.__init__).parameters.items()
        if n != "self" and p.kind is not p.VAR_POSITIONAL
    }
    # With **kwargs the class checks its own extra options (e.g. CSVSource's read_csv ones).
    if not any(p.kind is p.VAR_KEYWORD for p in params.values()):
        check_known_keys(
            options,
            params,
            where=f"datasource type {cls.kind!r}",
            noun="option",
            error=PodConfigError,
            fix=f"valid options are 'type', {quoted(params)}",
        )
    required = [
        n
        for n, p in params.items()
        if p.default is p.empty and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    missing = [n for n in required if n not in options]
    if missing:
        raise PodConfigError(
            f"datasource type {cls.kind!r} needs option(s) {quoted(missing)}; add them under "
            "datasource in the pod YAML"
        )


def _existing_file(path: Path, kind: str) -> Path:
    if not path.exists():
        raise DataSourceError(
            f"{kind} file '{path}' does not exist; check the path (datasource.path in the pod "
            "YAML is relative to the pod file's directory)"
        )
    if not path.is_file():
        raise DataSourceError(f"{kind} path '{path}' is not a file; point it at a {kind} file")
    return path


class CSVSource(Datasource):
    """A CSV file, read with ``pandas.read_csv(path, **read_csv_kwargs)``."""

    kind = "csv"
    path_options = ("path",)

    def __init__(self, path: str | Path, **read_csv_kwargs: Any) -> None:
        self.path = Path(path)
        self.read_csv_kwargs = dict(read_csv_kwargs)
        valid = [p for p in inspect.signature(pd.read_csv).parameters if p != "filepath_or_buffer"]
        check_known_keys(
            self.read_csv_kwargs,
            valid,
            where=f"CSV datasource '{self.path}'",
            noun="read_csv option",
            error=DataSourceError,
            fix="see pandas.read_csv for the valid options",
        )

    def describe(self) -> str:
        return f"CSV file '{self.path}'"

    def load(self) -> pd.DataFrame:
        path = _existing_file(self.path, "CSV")
        try:
            return pd.read_csv(path, **self.read_csv_kwargs)
        except pd.errors.EmptyDataError as exc:
            raise DataSourceError(
                f"CSV file '{path}' is empty (no header, no rows); write a header line and the "
                "data rows, or point datasource.path at the right file"
            ) from exc
        except UnicodeDecodeError as exc:
            raise DataSourceError(
                f"CSV file '{path}' is not text in the expected encoding ({exc.reason} at byte "
                f"{exc.start}); it may be binary or garbled: check the file, or set the "
                "'encoding' option (e.g. latin-1)"
            ) from exc
        except (pd.errors.ParserError, ValueError, TypeError, OSError) as exc:
            raise DataSourceError(
                f"CSV file '{path}' cannot be parsed: {_first_line(exc)}; check the file is a "
                "well-formed CSV (same number of fields on every line) and the read options "
                "(sep, header, ...)"
            ) from exc


class ParquetSource(Datasource):
    """A Parquet file."""

    kind = "parquet"
    path_options = ("path",)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def describe(self) -> str:
        return f"Parquet file '{self.path}'"

    def load(self) -> pd.DataFrame:
        path = _existing_file(self.path, "Parquet")
        try:
            return pd.read_parquet(path)
        except ImportError as exc:
            raise DataSourceError(
                f"Parquet file '{path}' cannot be read: {exc}; install pyarrow"
            ) from exc
        except Exception as exc:  # pyarrow raises a variety of ArrowException / OSError types
            raise DataSourceError(
                f"Parquet file '{path}' cannot be read: {_first_line(exc)}; check it is a "
                "complete Parquet file (re-export it, e.g. with DataFrame.to_parquet)"
            ) from exc


class DataFrameSource(Datasource):
    """An in-memory frame; keeps its own copy so later changes by the caller don't leak in."""

    kind = "dataframe"

    def __init__(self, frame: pd.DataFrame) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise DataSourceError(
                f"DataFrameSource needs a pandas DataFrame, got {type_name(frame)}; wrap the "
                "data with pandas.DataFrame(...) first"
            )
        self._frame = frame.copy(deep=True)

    def describe(self) -> str:
        rows, cols = self._frame.shape
        return f"in-memory DataFrame ({rows} rows x {cols} columns)"

    def load(self) -> pd.DataFrame:
        return self._frame.copy(deep=True)


_READ_ONLY_SQL = re.compile(r"^\s*(select|with)\b", re.IGNORECASE)


class SQLSource(Datasource):
    """A table or a SELECT query of a SQL database, read through SQLAlchemy.

    Exactly one of ``table`` and ``query``. Reading is read-only: SQLite files are opened in
    read-only mode (and never created), other databases are read inside a transaction that
    is rolled back, and only SELECT / WITH queries are accepted.
    """

    kind = "sql"

    def __init__(self, url: str, table: str | None = None, query: str | None = None) -> None:
        self.url = str(url)
        self.table = table
        self.query = query
        if (table is None) == (query is None):
            raise DataSourceError(
                f"SQL datasource {self._safe_url()}: give exactly one of 'table' and 'query' "
                f"(got {'both' if table is not None else 'neither'})"
            )
        if query is not None and not _READ_ONLY_SQL.match(str(query)):
            raise DataSourceError(
                f"SQL datasource {self._safe_url()}: query must be a SELECT (or WITH ... "
                f"SELECT) statement, got {str(query)[:60]!r}; datasources are read-only"
            )

    @classmethod
    def from_config(cls, options: Mapping[str, Any], base_dir: Path | None) -> Datasource:
        options = dict(options)
        url = options.get("url")
        if isinstance(url, str) and base_dir is not None:
            options["url"] = _absolute_sqlite_url(url, base_dir)
        return super().from_config(options, base_dir)

    def _safe_url(self) -> str:
        try:
            from sqlalchemy.engine import make_url

            return repr(make_url(self.url).render_as_string(hide_password=True))
        except Exception:  # an unparsable URL is reported by load(); don't fail here
            return repr(self.url)

    def describe(self) -> str:
        what = f"table {self.table!r}" if self.table is not None else "query"
        return f"SQL {what} at {self._safe_url()}"

    def _engine(self) -> Engine:
        import sqlalchemy as sa
        from sqlalchemy.engine import make_url

        try:
            url = make_url(self.url)
        except (sa.exc.ArgumentError, ValueError) as exc:
            raise DataSourceError(
                f"SQL datasource: {self.url!r} is not a database URL ({exc}); write it like "
                "'sqlite:///data.db' or 'postgresql://user@host/db'"
            ) from exc
        if url.get_backend_name() == "sqlite":
            database = url.database or ""
            if database in ("", ":memory:") or database.startswith("file:"):
                raise DataSourceError(
                    f"SQL datasource {self._safe_url()}: name a SQLite database file, e.g. "
                    "'sqlite:///data.db' (an in-memory database has no data to read)"
                )
            path = Path(database)
            if not path.is_file():
                raise DataSourceError(
                    f"SQLite database file '{path}' (from {self._safe_url()}) does not exist; "
                    "check the URL (relative paths resolve against the pod file's directory)"
                )
            uri = f"{path.resolve().as_uri()}?mode=ro"
            return sa.create_engine("sqlite://", creator=lambda: sqlite3.connect(uri, uri=True))
        try:
            return sa.create_engine(url)
        except Exception as exc:  # missing driver, bad options
            raise DataSourceError(
                f"SQL datasource {self._safe_url()}: cannot create a connection ({exc}); "
                "install the database driver named in the URL and check the URL"
            ) from exc

    def load(self) -> pd.DataFrame:
        import sqlalchemy as sa

        engine = self._engine()
        try:
            with engine.connect() as conn:
                if self.table is not None:
                    tables = sa.inspect(conn).get_table_names()
                    views = sa.inspect(conn).get_view_names()
                    if self.table not in tables and self.table not in views:
                        raise DataSourceError(
                            f"SQL datasource {self._safe_url()}: no table {self.table!r}"
                            f"{did_you_mean(self.table, tables + views)}; tables there: "
                            f"{quoted(tables + views)}; fix datasource.table in the pod YAML"
                        )
                    statement = sa.select(sa.text("*")).select_from(sa.table(self.table))
                    frame = pd.read_sql_query(statement, conn)
                else:
                    # Exactly one of table and query is set (checked in __init__).
                    frame = pd.read_sql_query(sa.text(cast(str, self.query)), conn)
                conn.rollback()  # we never write; make sure nothing could be committed
                return frame
        except DataSourceError:
            raise
        except Exception as exc:  # sqlalchemy.exc.*, DBAPI errors, pandas conversion errors
            what = f"table {self.table!r}" if self.table is not None else f"query {self.query!r}"
            raise DataSourceError(
                f"SQL datasource {self._safe_url()}: reading {what} failed: "
                f"{_first_line(exc)}; check the URL, the {('table' if self.table else 'query')} "
                "and that the database is reachable"
            ) from exc
        finally:
            engine.dispose()


def _absolute_sqlite_url(url: str, base_dir: Path) -> str:
    """Rewrite a relative ``sqlite:///file.db`` URL against the pod file's directory."""
    prefix = "sqlite:///"
    if url.startswith(prefix):
        rest = url[len(prefix) :]
        if rest and not rest.startswith(("/", ":memory:", "file:")):
            return prefix + str((Path(base_dir) / rest).absolute())
    return url


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0].rstrip(".") if text else type(exc).__name__


DATASOURCES: dict[str, type[Datasource]] = {
    "csv": CSVSource,
    "parquet": ParquetSource,
    "sql": SQLSource,
    "dataframe": DataFrameSource,
}


def datasource_from_config(cfg: Mapping[str, Any], base_dir: Path | None = None) -> Datasource:
    """``{"type": "csv"|"parquet"|"sql"|"dataframe", ...options}`` -> a ``Datasource``.

    Relative paths resolve against ``base_dir`` (the pod file's directory).
    """
    if isinstance(cfg, Datasource):
        return cfg
    if not isinstance(cfg, Mapping):
        raise PodConfigError(
            f"datasource must be a mapping like {{type: csv, path: data.csv}}, got {type_name(cfg)}"
        )
    if "type" not in cfg:
        raise PodConfigError(
            f"datasource has no 'type'; add one of {quoted(DATASOURCES)} "
            "(e.g. datasource: {type: csv, path: data.csv})"
        )
    kind = cfg["type"]
    if kind in DATASOURCES:
        cls = DATASOURCES[kind]
    else:
        # Third-party datasources come through the plugin registry (stdlib-only module).
        from fedplug._errors import PluginError
        from fedplug._plugins import available, load_plugin

        try:
            cls = load_plugin("datasources", str(kind))
        except PluginError as exc:
            raise PodConfigError(
                f"unknown datasource type {kind!r}{did_you_mean(str(kind), DATASOURCES)}; "
                f"known types: {quoted(sorted(set(DATASOURCES) | set(available('datasources'))))}"
            ) from exc
    options = {k: v for k, v in cfg.items() if k != "type"}
    try:
        return cls.from_config(options, base_dir)
    except DataSourceError as exc:
        raise PodConfigError(str(exc)) from exc
    except TypeError as exc:  # a constructor that rejects its options in its own way
        raise PodConfigError(
            f"datasource type {kind!r}: bad options ({exc}); check datasource in the pod YAML"
        ) from exc
