"""Pods: YAML parsing, configuration checks, loading, summaries and resolving by name."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console
from rich.table import Table

from fedplug._errors import DataSourceError, DataValidationError, PodConfigError, SchemaError
from fedplug.data import (
    ColumnSpec,
    ColumnSplit,
    CSVSource,
    LoadedPod,
    PercentageSplit,
    Pod,
    PodPolicy,
    Schema,
    render_schema_table,
    resolve_pod,
)

POD_YAML = """\
name: clinic-a
datasource: {type: csv, path: people.csv}
split: {type: percentage, validation: 0.25, seed: 3}
approved_pods: [clinic-b]
policy:
  require_secure_aggregation: true
  min_pods: 2
  accepted_tasks: [train]
identity:
  key_file: keys/clinic-a.pem
  pinned_keys: {clinic-b: %s}
"""
KEY = base64.b64encode(bytes(range(32))).decode()


@pytest.fixture
def data_pod_dir(tmp_path, data_people) -> Path:
    data_people.to_csv(tmp_path / "people.csv", index=False)
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "clinic-a.pem").write_text("-----BEGIN PRIVATE KEY-----\n")
    (tmp_path / "keys" / "clinic-a.pem").chmod(0o600)
    return tmp_path


def _write(directory: Path, text: str, name: str = "pod.yaml") -> Path:
    path = directory / name
    path.write_text(text)
    return path


# -- parsing ------------------------------------------------------------------------------------


def test_from_yaml_reads_every_setting(data_pod_dir):
    path = _write(data_pod_dir, POD_YAML % KEY)

    pod = Pod.from_yaml(path)

    assert pod.name == "clinic-a"
    assert isinstance(pod.datasource, CSVSource)
    assert pod.datasource.path == data_pod_dir / "people.csv"
    assert isinstance(pod.split, PercentageSplit) and pod.split.validation == 0.25
    assert pod.approved_pods == ("clinic-b",)
    assert pod.policy == PodPolicy(True, 2, ("train",))
    assert pod.identity_key == data_pod_dir / "keys" / "clinic-a.pem"
    assert pod.pinned_keys == {"clinic-b": KEY}
    assert pod.schema is None and pod.schema_options == {}
    assert pod.source_path == path
    pod.check()


def test_unknown_pod_key_suggests_the_closest(data_pod_dir, data_digest):
    path = _write(
        data_pod_dir, "name: a\ndatasource: {type: csv, path: people.csv}\naproved_pods: [b]\n"
    )
    before = data_digest(path)

    with pytest.raises(PodConfigError) as info:
        Pod.from_yaml(path)

    message = str(info.value)
    assert f"pod file '{path}'" in message
    assert "unknown key 'aproved_pods' (did you mean 'approved_pods'?)" in message
    assert "valid keys are 'name', 'datasource', 'schema'" in message
    assert data_digest(path) == before


def test_approved_pods_and_other_pods_together_are_rejected(data_pod_dir):
    path = _write(
        data_pod_dir,
        "name: a\ndatasource: {type: csv, path: people.csv}\napproved_pods: [b]\nother_pods: [c]\n",
    )

    with pytest.raises(PodConfigError, match="both 'approved_pods' and 'other_pods'.*keep only"):
        Pod.from_yaml(path)


def test_other_pods_is_an_alias(data_pod_dir):
    path = _write(
        data_pod_dir, "name: a\ndatasource: {type: csv, path: people.csv}\nother_pods: [b, c]\n"
    )

    assert Pod.from_yaml(path).approved_pods == ("b", "c")


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("{min_pods: two}", r"policy.min_pods must be a positive integer, got 'two' \(str\)"),
        ("{min_pods: 0}", "policy.min_pods must be a positive integer, got 0; write e.g."),
        ("{min_pods: true}", r"policy.min_pods must be a positive integer, got True \(bool\)"),
        ("{require_secure_aggregation: maybe}", "require_secure_aggregation must be true or"),
        ("{accepted_tasks: [train, predict]}", "unknown task kind.*'predict'"),
        ("{min_pod: 2}", r"unknown key 'min_pod' \(did you mean 'min_pods'\?\)"),
        ("{accepted_tasks: train}", r"accepted_tasks must be a list of task kinds"),
    ],
)
def test_bad_policies(data_pod_dir, policy, expected):
    path = _write(
        data_pod_dir, f"name: a\ndatasource: {{type: csv, path: p.csv}}\npolicy: {policy}\n"
    )

    with pytest.raises(PodConfigError, match=expected) as info:
        Pod.from_yaml(path)
    assert f"pod file '{path}' (pod 'a')" in str(info.value)


def test_unknown_datasource_type_in_a_pod_file(data_pod_dir):
    path = _write(data_pod_dir, "name: a\ndatasource: {type: xlsx, path: p.xlsx}\n")

    with pytest.raises(PodConfigError) as info:
        Pod.from_yaml(path)

    message = str(info.value)
    assert f"pod file '{path}' (pod 'a')" in message
    assert "unknown datasource type 'xlsx'" in message
    assert "known types: 'csv', 'dataframe', 'parquet', 'sql'" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("datasource: {type: csv, path: p.csv}\n", "missing required key 'name'"),
        ("name: a\n", "missing required key 'datasource'"),
        ("name: a b\ndatasource: {type: csv, path: p.csv}\n", "name must be letters"),
        ("name: a\ndatasource: {type: csv, path: p.csv\n", "is not valid YAML at line"),
        ("- a\n", "expected a mapping"),
        (
            "name: a\ndatasource: {type: csv, path: p.csv}\nschema: {file: s.yaml, infer: {}}\n",
            "schema has both 'file' and 'infer'",
        ),
        (
            "name: a\ndatasource: {type: csv, path: p.csv}\nschema: {infer: {max_cats: 5}}\n",
            r"schema.infer: unknown key 'max_cats' \(did you mean 'max_categories'\?\)",
        ),
        (
            "name: a\ndatasource: {type: csv, path: p.csv}\nschema: {infer: {ignore_cols: x}}\n",
            "ignore_cols must be a list of column names",
        ),
        (
            "name: a\ndatasource: {type: csv, path: p.csv}\napproved_pods: b\n",
            "approved_pods must be a list of pod names",
        ),
        (
            "name: a\ndatasource: {type: csv, path: p.csv}\nsplit: {type: kfold}\n",
            "unknown split type 'kfold'",
        ),
        (
            "name: a\ndatasource: {type: csv, path: p.csv}\nidentity: {keyfile: k.pem}\n",
            r"identity: unknown key 'keyfile' \(did you mean 'key_file'\?\)",
        ),
    ],
)
def test_bad_pod_files(tmp_path, data_digest, text, expected):
    path = _write(tmp_path, text)
    before = data_digest(path)

    with pytest.raises(PodConfigError, match=expected) as info:
        Pod.from_yaml(path)
    assert f"pod file '{path}'" in str(info.value)
    assert data_digest(path) == before


def test_missing_pod_file(tmp_path):
    with pytest.raises(PodConfigError, match="pod file '.*nope.yaml' does not exist.*fedplug demo"):
        Pod.from_yaml(tmp_path / "nope.yaml")


def test_check_catches_inconsistent_settings(data_pod_dir):
    source = CSVSource(data_pod_dir / "people.csv")

    assert Pod("a", source).policy == PodPolicy()  # None stands for the defaults
    with pytest.raises(PodConfigError, match="min_pods is 3 but approved_pods allows only 1"):
        Pod("a", source, approved_pods=["b"], policy=PodPolicy(min_pods=3)).check()
    with pytest.raises(PodConfigError, match="pinned_keys names pod.*'c' that are not in"):
        Pod("a", source, approved_pods=["b"], pinned_keys={"c": KEY}).check()
    with pytest.raises(PodConfigError, match=r"pinned_keys\['b'\] is not a base64 public key"):
        Pod("a", source, pinned_keys={"b": "not base64!"}).check()
    with pytest.raises(PodConfigError, match="identity.key_file '.*gone.pem' does not exist"):
        Pod("a", source, identity_key=data_pod_dir / "gone.pem").check()
    with pytest.raises(PodConfigError, match="datasource must be a Datasource"):
        Pod("a", "people.csv").check()  # type: ignore[arg-type]
    with pytest.raises(PodConfigError, match="pod name must be letters"):
        Pod("", source).check()


def test_a_pod_requiring_secure_aggregation_must_know_its_peers(data_pod_dir):
    """Without a pinned key for every approved peer, a server can invent a peer (issue 10)."""
    source = CSVSource(data_pod_dir / "people.csv")
    secure = PodPolicy(require_secure_aggregation=True)
    key = data_pod_dir / "keys" / "clinic-a.pem"
    cases = [
        ({}, ["approved_pods is not set", "identity.key_file is not set"]),
        ({"approved_pods": ["b"], "identity_key": key}, ["no key for approved pod(s) 'b'"]),
        (
            {"approved_pods": ["b", "c"], "identity_key": key, "pinned_keys": {"b": KEY}},
            ["no key for approved pod(s) 'c'"],
        ),
        ({"pinned_keys": {"b": KEY}, "identity_key": key}, ["approved_pods is not set"]),
    ]
    for settings, problems in cases:
        with pytest.raises(PodConfigError, match="fedplug pod keys") as info:
            Pod("a", source, policy=secure, **settings).check()
        for problem in problems:
            assert problem in str(info.value)
    Pod("a", source, policy=secure, approved_pods=["b"], identity_key=key,
        pinned_keys={"b": KEY}).check()  # fmt: skip


def test_an_identity_key_file_others_can_read_is_refused(data_pod_dir):
    source = CSVSource(data_pod_dir / "people.csv")
    key = data_pod_dir / "keys" / "clinic-a.pem"
    key.chmod(0o644)
    with pytest.raises(PodConfigError, match=r"readable or writable by other users.*chmod 600"):
        Pod("a", source, identity_key=key).check()


def test_an_identity_key_file_of_another_user_is_refused(data_pod_dir, monkeypatch):
    import os

    source = CSVSource(data_pod_dir / "people.csv")
    key = data_pod_dir / "keys" / "clinic-a.pem"
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(key).st_uid + 1)
    with pytest.raises(PodConfigError, match="belongs to another user"):
        Pod("a", source, identity_key=key).check()


def test_min_pods_defaults_to_two():
    assert PodPolicy().min_pods == 2


# -- loading ----------------------------------------------------------------------------------


def test_load_infers_validates_and_splits(data_pod_dir, data_digest):
    path = _write(data_pod_dir, POD_YAML % KEY)
    before = data_digest(data_pod_dir / "people.csv")

    loaded = Pod.from_yaml(path).load()

    assert isinstance(loaded, LoadedPod)
    assert loaded.name == "clinic-a"
    assert loaded.schema.name == "clinic-a"
    assert loaded.schema.num_rows == 8
    assert loaded.schema["city"].categories == ("Lyon", "Nice", "Paris")
    assert (len(loaded.train), len(loaded.validation)) == (6, 2)
    assert data_digest(data_pod_dir / "people.csv") == before


def test_load_with_an_agreed_schema_file_accepts_a_vocabulary_subset(data_pod_dir):
    agreed = Schema(
        [
            ColumnSpec("age", "continuous", "int"),
            ColumnSpec("income", "continuous", "float"),
            ColumnSpec("city", "categorical", "string", ("Lille", "Lyon", "Nice", "Paris", "Rome")),
            ColumnSpec("member", "categorical", "bool", (False, True)),
        ],
        name="agreed",
    )
    agreed.to_yaml(data_pod_dir / "agreed.schema.yaml")
    path = _write(
        data_pod_dir,
        "name: a\ndatasource: {type: csv, path: people.csv}\nschema: {file: agreed.schema.yaml}\n",
    )

    loaded = Pod.from_yaml(path).load()

    assert loaded.schema.name == "agreed"
    assert loaded.schema.num_rows == 8
    assert "Rome" in loaded.schema["city"].categories


def test_load_refuses_nonconforming_data_naming_the_pod(data_pod_dir, data_people, data_digest):
    Schema.infer(data_people, name="agreed").to_yaml(data_pod_dir / "agreed.schema.yaml")
    bad = data_pod_dir / "bad.csv"
    bad.write_text("age,income,city,member\nold,1.0,Paris,True\n30,,Rome,False\n")
    path = _write(
        data_pod_dir,
        "name: clinic-b\ndatasource: {type: csv, path: bad.csv}\n"
        "schema: {file: agreed.schema.yaml}\n",
    )
    before = (data_digest(bad), data_digest(data_pod_dir / "agreed.schema.yaml"))

    with pytest.raises(DataValidationError) as info:
        Pod.from_yaml(path).load()

    error = info.value
    assert error.pod == "clinic-b"
    assert "Data of pod 'clinic-b' does not conform to schema 'agreed' (3 violations" in str(error)
    assert "pod 'clinic-b', column 'age': 1 non-numeric value(s)" in str(error)
    assert "pod 'clinic-b', column 'income': 1 null value(s)" in str(error)
    assert "pod 'clinic-b', column 'city': 1 value(s) outside the declared vocabulary" in str(error)
    assert (data_digest(bad), data_digest(data_pod_dir / "agreed.schema.yaml")) == before


def test_load_refuses_an_empty_table(tmp_path, data_digest):
    (tmp_path / "empty.csv").write_text("age,city\n")
    path = _write(tmp_path, "name: a\ndatasource: {type: csv, path: empty.csv}\n")
    before = data_digest(tmp_path / "empty.csv")

    with pytest.raises(DataValidationError, match="pod 'a', table: the table is empty"):
        Pod.from_yaml(path).load()
    assert data_digest(tmp_path / "empty.csv") == before


def test_load_errors_name_the_pod(data_pod_dir):
    missing = _write(data_pod_dir, "name: a\ndatasource: {type: csv, path: gone.csv}\n")
    bad_schema = _write(
        data_pod_dir,
        "name: b\ndatasource: {type: csv, path: people.csv}\nschema: {file: gone.schema.yaml}\n",
        "b.yaml",
    )
    bad_infer = _write(
        data_pod_dir,
        "name: c\ndatasource: {type: csv, path: people.csv}\n"
        "schema: {infer: {force_stypes: {agee: text}}}\n",
        "c.yaml",
    )

    with pytest.raises(DataSourceError, match="pod 'a': CSV file '.*gone.csv' does not exist"):
        Pod.from_yaml(missing).load()
    with pytest.raises(SchemaError, match="pod 'b' .*schema file '.*gone.schema.yaml' does not"):
        Pod.from_yaml(bad_schema).load()
    with pytest.raises(SchemaError, match="pod 'c' .*cannot infer the schema.*'agee'"):
        Pod.from_yaml(bad_infer).load()


def test_column_split_column_is_not_part_of_the_schema(tmp_path, data_people):
    data_people.assign(fold=["train"] * 6 + ["validation"] * 2).to_csv(
        tmp_path / "p.csv", index=False
    )
    path = _write(
        tmp_path,
        "name: a\ndatasource: {type: csv, path: p.csv}\nsplit: {type: column, column: fold}\n",
    )

    loaded = Pod.from_yaml(path).load()

    assert isinstance(Pod.from_yaml(path).split, ColumnSplit)
    assert "fold" not in loaded.schema
    assert (len(loaded.train), len(loaded.validation)) == (6, 2)
    assert "fold" not in loaded.train.columns


def test_sqlite_pod_with_a_relative_url(tmp_path, data_people, data_digest):
    with sqlite3.connect(tmp_path / "p.db") as con:
        data_people.to_sql("people", con, index=False)
    before = data_digest(tmp_path / "p.db")
    path = _write(
        tmp_path,
        "name: a\ndatasource: {type: sql, url: 'sqlite:///p.db', "
        "table: people}\nsplit: {validation: 0}\n",
    )

    loaded = Pod.from_yaml(path).load()

    assert len(loaded.train) == 8
    assert loaded.schema["age"].stype == "continuous"
    assert data_digest(tmp_path / "p.db") == before


# -- display --------------------------------------------------------------------------------


def test_summary_and_schema_table(data_pod_dir):
    pod = Pod.from_yaml(_write(data_pod_dir, POD_YAML % KEY))

    summary = pod.summary()

    assert summary.splitlines()[0].startswith("pod 'clinic-a'")
    assert "CSV file" in summary and "people.csv" in summary
    assert "schema: inferred from the data" in summary
    assert "split: percentage: 25% validation, seed 3" in summary
    assert "approved pods: 'clinic-b'" in summary
    assert "secure aggregation required; min pods 2; accepted tasks train" in summary
    assert "pinned keys for 'clinic-b'" in summary

    table = render_schema_table(pod.load().schema)
    assert isinstance(table, Table)
    assert table.row_count == 4
    console = Console(width=120, record=True)
    console.print(table)
    text = console.export_text()
    assert "schema 'clinic-a' (8 rows)" in text
    assert "3: Lyon, Nice, Paris" in text


# -- resolve_pod ----------------------------------------------------------------------------


def test_resolve_pod_by_path_and_by_name(tmp_path, monkeypatch):
    pods = tmp_path / "pods"
    pods.mkdir()
    a = _write(pods, "name: a\n", "clinic-a.yaml")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    b = _write(elsewhere, "name: b\n", "clinic-b.yml")

    assert resolve_pod(a) == a
    assert resolve_pod(str(a)) == a
    assert resolve_pod("clinic-a", [pods]) == pods / "clinic-a.yaml"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FEDPLUG_POD_DIR", raising=False)
    assert resolve_pod("clinic-a") == Path("pods") / "clinic-a.yaml"
    monkeypatch.setenv("FEDPLUG_POD_DIR", str(elsewhere))
    assert resolve_pod("clinic-b") == b


def test_resolve_pod_that_does_not_exist(tmp_path):
    pods = tmp_path / "pods"
    pods.mkdir()
    _write(pods, "name: a\n", "census-income-demo.yaml")
    _write(pods, "columns: {}\n", "census-income.schema.yaml")

    with pytest.raises(PodConfigError) as info:
        resolve_pod("census-income-dem", [pods, tmp_path / "none"])

    message = str(info.value)
    assert "pod 'census-income-dem' not found (did you mean 'census-income-demo'?)" in message
    assert f"'{pods}'" in message and f"'{tmp_path / 'none'}'" in message
    assert "pods there: 'census-income-demo'." in message
    assert "census-income.schema" not in message
    assert "fedplug demo census-income" in message
    with pytest.raises(PodConfigError, match="pod file '.*missing.yaml' does not exist"):
        resolve_pod(tmp_path / "missing.yaml")
