"""Datasources: round trips, read-only behaviour and clear errors for bad sources."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pytest

from fedplug._errors import DataSourceError, PodConfigError
from fedplug.data import (
    DATASOURCES,
    CSVSource,
    DataFrameSource,
    ParquetSource,
    SQLSource,
    datasource_from_config,
)


@pytest.fixture
def data_sqlite(tmp_path, data_people):
    path = tmp_path / "people.db"
    with sqlite3.connect(path) as con:
        data_people.to_sql("people", con, index=False)
        con.execute("CREATE TABLE visits (id INTEGER)")
    return path


# -- CSV ----------------------------------------------------------------------------------------


def test_csv_round_trip_returns_a_fresh_frame_each_time(tmp_path, data_people, data_digest):
    path = tmp_path / "people.csv"
    data_people.to_csv(path, index=False)
    before = data_digest(path)
    source = CSVSource(path)

    first = source.load()
    first.loc[0, "age"] = -1

    pd.testing.assert_frame_equal(source.load(), data_people, check_dtype=False)
    assert source.kind == "csv"
    assert str(path) in source.describe()
    assert data_digest(path) == before


def test_csv_read_options_are_passed_to_pandas(tmp_path):
    path = tmp_path / "semi.csv"
    path.write_text("a;b\n1;x\n2;y\n")

    frame = CSVSource(path, sep=";").load()

    assert list(frame.columns) == ["a", "b"]
    assert frame["a"].tolist() == [1, 2]


def test_missing_csv_file(tmp_path):
    path = tmp_path / "nope.csv"

    with pytest.raises(DataSourceError, match=r"CSV file '.*nope\.csv' does not exist"):
        CSVSource(path).load()
    assert not path.exists()


def test_garbled_binary_csv(tmp_path, data_digest):
    path = tmp_path / "garbled.csv"
    path.write_bytes(bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)))
    before = data_digest(path)

    with pytest.raises(DataSourceError, match="garbled.csv' is not text.*encoding") as info:
        CSVSource(path).load()

    assert "check the file" in str(info.value)
    assert data_digest(path) == before


def test_ragged_csv_names_the_line(tmp_path, data_digest):
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n1,2\n3,4,5,6\n")
    before = data_digest(path)

    with pytest.raises(DataSourceError, match="ragged.csv' cannot be parsed.*line 3"):
        CSVSource(path).load()
    assert data_digest(path) == before


def test_zero_byte_csv(tmp_path):
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")

    with pytest.raises(DataSourceError, match="empty.csv' is empty"):
        CSVSource(path).load()
    assert path.read_bytes() == b""


def test_csv_directory_and_unknown_option(tmp_path):
    with pytest.raises(DataSourceError, match="is not a file"):
        CSVSource(tmp_path).load()
    with pytest.raises(DataSourceError, match=r"unknown read_csv option 'seperator'"):
        CSVSource(tmp_path / "x.csv", seperator=";")


# -- Parquet, DataFrame -----------------------------------------------------------------------


def test_parquet_round_trip(tmp_path, data_people, data_digest):
    path = tmp_path / "people.parquet"
    data_people.to_parquet(path)
    before = data_digest(path)

    frame = ParquetSource(path).load()

    pd.testing.assert_frame_equal(frame, data_people, check_dtype=False)
    assert frame["age"].dtype.kind == "i"
    assert data_digest(path) == before


def test_garbled_parquet(tmp_path, data_digest):
    path = tmp_path / "broken.parquet"
    path.write_text("this is not parquet")
    before = data_digest(path)

    with pytest.raises(DataSourceError, match="Parquet file '.*broken.parquet' cannot be read"):
        ParquetSource(path).load()
    with pytest.raises(DataSourceError, match="Parquet file '.*gone.parquet' does not exist"):
        ParquetSource(tmp_path / "gone.parquet").load()
    assert data_digest(path) == before


def test_dataframe_source_keeps_a_defensive_copy(data_people):
    source = DataFrameSource(data_people)
    data_people.loc[0, "age"] = 999

    loaded = source.load()
    loaded.loc[1, "age"] = 888

    assert source.load()["age"].tolist()[:2] == [25, 32]
    assert "8 rows x 4 columns" in source.describe()
    with pytest.raises(DataSourceError, match="needs a pandas DataFrame, got list"):
        DataFrameSource([1, 2])  # type: ignore[arg-type]


# -- SQL ----------------------------------------------------------------------------------------


def test_sqlite_table_and_query_round_trip(data_sqlite, data_people, data_digest):
    before = data_digest(data_sqlite)
    url = f"sqlite:///{data_sqlite}"

    table = SQLSource(url, table="people").load()
    query = SQLSource(url, query="SELECT age, city FROM people WHERE age > 40").load()

    pd.testing.assert_frame_equal(
        table.drop(columns="member"), data_people.drop(columns="member"), check_dtype=False
    )
    assert query["age"].tolist() == [47, 51, 44, 60]
    assert data_digest(data_sqlite) == before


def test_sql_unknown_table_lists_the_tables(data_sqlite, data_digest):
    before = data_digest(data_sqlite)

    with pytest.raises(DataSourceError) as info:
        SQLSource(f"sqlite:///{data_sqlite}", table="peple").load()

    message = str(info.value)
    assert "no table 'peple' (did you mean 'people'?)" in message
    assert "tables there: 'people', 'visits'" in message
    assert "datasource.table" in message
    assert data_digest(data_sqlite) == before


def test_sql_bad_query_and_write_statements(data_sqlite, data_digest):
    before = data_digest(data_sqlite)
    url = f"sqlite:///{data_sqlite}"

    with pytest.raises(DataSourceError, match="reading query .* failed: .*no such column: nope"):
        SQLSource(url, query="SELECT nope FROM people").load()
    with pytest.raises(DataSourceError, match="query must be a SELECT"):
        SQLSource(url, query="DELETE FROM people")
    with pytest.raises(DataSourceError, match="exactly one of 'table' and 'query' \\(got both\\)"):
        SQLSource(url, table="people", query="SELECT 1")
    with pytest.raises(DataSourceError, match="got neither"):
        SQLSource(url)
    assert data_digest(data_sqlite) == before


def test_sqlite_missing_file_is_not_created(tmp_path):
    path = tmp_path / "missing.db"

    with pytest.raises(DataSourceError, match="SQLite database file '.*missing.db'.*does not"):
        SQLSource(f"sqlite:///{path}", table="t").load()
    assert not path.exists()


def test_sql_url_problems_hide_the_password():
    with pytest.raises(DataSourceError) as info:
        SQLSource("postgresql://ann:secret@localhost/db", table="t").load()
    assert "secret" not in str(info.value)
    assert "ann:***@localhost" in str(info.value)
    with pytest.raises(DataSourceError, match="is not a database URL"):
        SQLSource("not a url", table="t").load()


# -- config ---------------------------------------------------------------------------------


def test_datasource_from_config_resolves_relative_paths(tmp_path, data_people, data_sqlite):
    (tmp_path / "data").mkdir()
    data_people.to_csv(tmp_path / "data" / "p.csv", index=False)

    csv = datasource_from_config({"type": "csv", "path": "data/p.csv"}, tmp_path)
    sql = datasource_from_config(
        {"type": "sql", "url": "sqlite:///people.db", "table": "people"}, tmp_path
    )
    frame = pd.DataFrame({"a": [1]})
    mem = datasource_from_config({"type": "dataframe", "frame": frame}, None)

    assert isinstance(csv, CSVSource) and csv.path == tmp_path / "data" / "p.csv"
    assert len(csv.load()) == 8
    assert len(sql.load()) == 8
    assert mem.load().equals(frame)
    assert set(DATASOURCES) == {"csv", "parquet", "sql", "dataframe"}


def test_datasource_from_config_errors():
    with pytest.raises(PodConfigError) as info:
        datasource_from_config({"type": "excel", "path": "x.xlsx"}, None)
    assert "unknown datasource type 'excel'" in str(info.value)
    assert "known types: 'csv', 'dataframe', 'parquet', 'sql'" in str(info.value)

    with pytest.raises(PodConfigError, match="datasource has no 'type'; add one of 'csv'"):
        datasource_from_config({"path": "x.csv"}, None)
    with pytest.raises(PodConfigError, match=r"unknown option 'pth' \(did you mean 'path'\?\)"):
        datasource_from_config({"type": "parquet", "pth": "x.parquet"}, None)
    with pytest.raises(PodConfigError, match=r"datasource type 'parquet' needs option\(s\) 'path'"):
        datasource_from_config({"type": "parquet"}, None)
    with pytest.raises(PodConfigError, match="exactly one of 'table' and 'query'"):
        datasource_from_config({"type": "sql", "url": "sqlite:///x.db"}, None)
    with pytest.raises(PodConfigError, match=r"datasource type 'csv' needs option\(s\) 'path'"):
        datasource_from_config({"type": "csv"}, None)
    with pytest.raises(PodConfigError, match="datasource must be a mapping"):
        datasource_from_config("data.csv", None)  # type: ignore[arg-type]
