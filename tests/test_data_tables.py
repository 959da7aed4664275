"""``DataStructure(table=...)`` names the table each pod serves, or is refused up front.

A pod serves one table: the one its owner configured, validated against its schema. It
answers to the pod's name and, for a SQL table, to that table's name; any other table is
refused, naming the pod, the table and the pod's tables.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from fedplug._errors import DataStructureError
from fedplug.data import CSVSource, DataFrameSource, Pod, SQLSource
from fedplug.learning import DataStructure


def _sqlite(tmp_path: Path) -> Path:
    path = tmp_path / "hospital.db"
    with sqlite3.connect(path) as db:
        pd.DataFrame({"age": [30, 40], "label": ["a", "b"]}).to_sql("patients", db, index=False)
        pd.DataFrame({"cost": [1.0, 2.0]}).to_sql("visits", db, index=False)
    return path


def test_a_single_table_pod_answers_to_its_own_name_only():
    pod = Pod(name="hospital-a", datasource=DataFrameSource(pd.DataFrame({"x": [1]})))

    assert pod.table_names() == ("hospital-a",)
    pod.check_table(None)
    pod.check_table("hospital-a")
    with pytest.raises(DataStructureError) as info:
        pod.check_table("no_such_table")

    message = str(info.value)
    assert "table 'no_such_table' for pod 'hospital-a' is not a table this pod serves" in message
    assert "in-memory DataFrame (1 rows x 1 columns)) is one table, named after the pod" in (
        message
    )
    assert "Tables of pod 'hospital-a': 'hospital-a'" in message
    assert "table={'hospital-a': 'hospital-a'}" in message


def test_a_sql_pod_answers_to_its_configured_table_and_refuses_the_others(tmp_path):
    url = f"sqlite:///{_sqlite(tmp_path)}"
    pod = Pod(name="hospital-a", datasource=SQLSource(url, table="patients"))

    assert pod.table_names() == ("hospital-a", "patients")
    pod.check_table("patients")
    pod.check_table("hospital-a")
    for other in ("visits", "no_such_table"):
        with pytest.raises(DataStructureError) as info:
            pod.check_table(other)
        message = str(info.value)
        assert f"table '{other}' for pod 'hospital-a' is not a table this pod serves" in message
        assert "its datasource reads SQL table 'patients' only" in message
        assert "Tables of pod 'hospital-a': 'hospital-a', 'patients'" in message

    by_query = Pod(name="hospital-b", datasource=SQLSource(url, query="SELECT * FROM visits"))
    assert by_query.table_names() == ("hospital-b",)


def test_check_pods_with_pod_objects_checks_every_pods_table(tmp_path):
    a = Pod(name="a", datasource=CSVSource(tmp_path / "a.csv"))  # never read
    b = Pod(name="b", datasource=CSVSource(tmp_path / "b.csv"))

    DataStructure(target="y", table={"a": "a", "b": "b"}).check_pods([a, b])
    DataStructure(target="y").check_pods([a, b])
    with pytest.raises(DataStructureError, match="table 'no_such_table' for pod 'a'"):
        DataStructure(target="y", table={"a": "no_such_table", "b": "b"}).check_pods([a, b])
    with pytest.raises(DataStructureError, match="table 'shared' for pod 'a'"):
        DataStructure(target="y", table="shared").check_pods([a, b])
    # Names only (a real federation's server): the mapping must still cover the pods.
    with pytest.raises(DataStructureError, match=r"pod\(s\) \['b'\] have no entry"):
        DataStructure(target="y", table={"a": "a"}).check_pods(["a", "b"])


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (42, "table must be a table name or a mapping {pod name: table name}, got 42"),
        ({"a": 1}, "table must map pod names to table names (strings), got {'a': 1}"),
        ("", "table must be a table name or a mapping"),
    ],
)
def test_a_table_of_the_wrong_kind_is_named(table, expected):
    with pytest.raises(DataStructureError) as info:
        DataStructure(target="y", table=table).check_pods(["a"])

    assert expected in str(info.value)


def test_fit_refuses_an_unknown_table_before_any_pod_reads_data(fed_pods, tmp_path):
    from fedplug import TabularClassifier

    paths = fed_pods(2, rows=50)
    (tmp_path / "pod-a.csv").unlink()  # reading it would fail differently
    model = TabularClassifier(
        DataStructure(target="TARGET", table={"pod-a": "no_such_table", "pod-b": "pod-b"}),
        rounds=1,
    )

    with pytest.raises(DataStructureError) as info:
        model.fit([str(p) for p in paths])

    assert "table 'no_such_table' for pod 'pod-a' is not a table this pod serves" in str(info.value)
