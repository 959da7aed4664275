"""fedplug.testing.check_datasource: the built-in sources pass; deliberately bad ones fail."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

import fedplug.testing
from fedplug import DataSourceError
from fedplug.data import CSVSource, DataFrameSource, Datasource, ParquetSource, SQLSource
from fedplug.testing import check_datasource


def test_check_datasource_is_exported() -> None:
    assert "check_datasource" in fedplug.testing.__all__


# -- the built-in sources conform ------------------------------------------------------------


def test_csv_source_conforms(tmp_path: Path, data_people: pd.DataFrame) -> None:
    path = tmp_path / "people.csv"
    data_people.to_csv(path, index=False)

    check_datasource(CSVSource(path), broken=CSVSource(tmp_path / "missing.csv"))


def test_parquet_source_conforms(tmp_path: Path, data_people: pd.DataFrame) -> None:
    path = tmp_path / "people.parquet"
    data_people.to_parquet(path)

    check_datasource(ParquetSource(path), broken=ParquetSource(tmp_path / "missing.parquet"))


def test_dataframe_source_conforms(data_people: pd.DataFrame) -> None:
    # An in-memory frame cannot point at something missing: no broken instance.
    check_datasource(DataFrameSource(data_people))


def test_sql_source_conforms(tmp_path: Path, data_people: pd.DataFrame) -> None:
    path = tmp_path / "people.db"
    with sqlite3.connect(path) as con:
        data_people.to_sql("people", con, index=False)
    con.close()
    url = f"sqlite:///{path}"

    check_datasource(SQLSource(url, table="people"), broken=SQLSource(url, table="nobody"))
    check_datasource(
        SQLSource(url, query="SELECT age, city FROM people"),
        broken=SQLSource(f"sqlite:///{tmp_path / 'missing.db'}", table="people"),
    )


# -- deliberately bad sources fail clearly ---------------------------------------------------


class SameFrameSource(Datasource):
    """Returns the frame it holds, not a copy."""

    kind = "same-frame"

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame

    def load(self) -> pd.DataFrame:
        return self.frame


class WritingSource(Datasource):
    """Reads its CSV file, then rewrites it (e.g. to "normalise" it)."""

    kind = "writing"
    path_options = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> pd.DataFrame:
        frame = pd.read_csv(self.path)
        frame.to_csv(self.path, index=False, sep=",", lineterminator="\r\n")
        return frame


class TouchingSource(WritingSource):
    """Leaves the bytes alone but bumps the file's modification time."""

    def load(self) -> pd.DataFrame:
        frame = pd.read_csv(self.path)
        stat = self.path.stat()
        os.utime(self.path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        return frame


class BareErrorSource(WritingSource):
    """Lets the OS error of a missing file escape."""

    def load(self) -> pd.DataFrame:
        with open(self.path) as handle:
            return pd.read_csv(handle)


class SilentSource(WritingSource):
    """Returns an empty frame when the file is missing."""

    def load(self) -> pd.DataFrame:
        return pd.read_csv(self.path) if self.path.exists() else pd.DataFrame()


class ListSource(Datasource):
    kind = "list"

    def load(self) -> pd.DataFrame:
        return [[1, 2]]  # type: ignore[return-value]


class IntColumnsSource(Datasource):
    kind = "int-columns"

    def load(self) -> pd.DataFrame:
        return pd.DataFrame([[1, 2]])


class EmptySource(Datasource):
    kind = "empty"

    def load(self) -> pd.DataFrame:
        return pd.DataFrame({"a": []})


class NoDescriptionSource(DataFrameSource):
    def describe(self) -> str:
        return "  "


@pytest.fixture
def people_csv(tmp_path: Path, data_people: pd.DataFrame) -> Path:
    path = tmp_path / "people.csv"
    data_people.to_csv(path, index=False)
    return path


def _fails(source: Datasource, *parts: str, broken: Datasource | None = None) -> str:
    with pytest.raises(AssertionError) as info:
        check_datasource(source, broken=broken)
    message = str(info.value)
    assert message.startswith("check_datasource: ")
    for part in parts:
        assert part in message, message
    return message


def test_same_frame_each_call_fails(data_people: pd.DataFrame) -> None:
    _fails(
        SameFrameSource(data_people),
        "'SameFrameSource(same-frame)'",
        "same DataFrame object",
        "copy(deep=True)",
    )


def test_modifying_the_file_fails(people_csv: Path, data_digest) -> None:
    _fails(WritingSource(people_csv), f"changed '{people_csv}'", "read-only")


def test_touching_the_file_fails(people_csv: Path, data_digest) -> None:
    before = data_digest(people_csv)
    _fails(TouchingSource(people_csv), "modification time", "read-only")
    assert data_digest(people_csv) == before


def test_bare_file_not_found_error_fails(people_csv: Path, tmp_path: Path) -> None:
    check_datasource(BareErrorSource(people_csv))  # passes without a broken instance
    _fails(
        BareErrorSource(people_csv),
        "broken datasource",
        "FileNotFoundError",
        "fedplug.DataSourceError",
        broken=BareErrorSource(tmp_path / "missing.csv"),
    )


def test_missing_data_that_loads_fails(people_csv: Path, tmp_path: Path) -> None:
    _fails(
        SilentSource(people_csv),
        "returned a DataFrame instead of raising",
        broken=SilentSource(tmp_path / "missing.csv"),
    )


def test_broken_must_be_a_datasource(people_csv: Path) -> None:
    _fails(CSVSource(people_csv), "not a fedplug.data.Datasource", broken="missing.csv")  # type: ignore[arg-type]


def test_a_configured_source_that_fails_to_load_is_reported(tmp_path: Path) -> None:
    _fails(CSVSource(tmp_path / "missing.csv"), "raised DataSourceError", "broken=")


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (ListSource(), "returned a list, not a pandas DataFrame"),
        (IntColumnsSource(), "not strings"),
        (EmptySource(), "no rows"),
        (NoDescriptionSource(pd.DataFrame({"a": [1]})), "non-empty string"),
        ("not a source", "not a fedplug.data.Datasource"),
    ],
)
def test_contract_violations_fail(source: Datasource, problem: str) -> None:
    _fails(source, problem)


def test_source_is_not_modified_on_success(people_csv: Path, data_digest) -> None:
    before = (data_digest(people_csv), people_csv.stat().st_mtime_ns)
    check_datasource(CSVSource(people_csv))
    assert (data_digest(people_csv), people_csv.stat().st_mtime_ns) == before


def test_loaded_errors_are_datasource_errors(tmp_path: Path) -> None:
    # The broken-instance check relies on this built-in behaviour.
    with pytest.raises(DataSourceError):
        CSVSource(tmp_path / "missing.csv").load()
