"""A pod keeps its validated data between messages, and reads it again only when it changed.

The pod process (``fedplug pod start``) is long-lived: it reads and validates its data
once and answers every message from memory. A change to the pod's YAML, schema file or
data file (size, modification time or a replaced file) makes the next message read and
validate the data again, so a pod never trains on data it has not validated. Nothing is
kept on disk, so there is no cache another local user could read or plant.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from fed_harness import make_plan
from flwr.app import ArrayRecord, ConfigRecord, Message, RecordDict

from fedplug import FedAvg
from fedplug._flower import LocalGrid, _pod_runtime, build_client_app
from fedplug._flower import _wire as wire
from fedplug.data import CSVSource, Pod


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Path]]:
    """Every CSV file read, in order; and a fresh per-process pod cache."""
    monkeypatch.setattr(_pod_runtime, "_CACHE", {})
    seen: list[Path] = []
    real = CSVSource.load

    def counting(self: CSVSource) -> pd.DataFrame:
        seen.append(self.path)
        return real(self)

    monkeypatch.setattr(CSVSource, "load", counting)
    yield seen


def _content(plan, server_round: int = 1) -> RecordDict:  # noqa: ANN001
    k = len(plan.task.continuous())
    return RecordDict(
        {
            "arrays": ArrayRecord([np.asarray(w) for w in plan.initial_weights]),
            "config": ConfigRecord(
                {
                    wire.TASK_KEY: plan.task.with_scaling(np.zeros(k), np.ones(k)).to_json(),
                    "server-round": server_round,
                    wire.PODS_KEY: json.dumps(plan.pods),
                }
            ),
        }
    )


def _send(grid: LocalGrid, plan, message_type: str = wire.TRAIN) -> Message:  # noqa: ANN001
    (reply,) = grid.send_and_receive(
        [Message(_content(plan), dst_node_id=1, message_type=message_type)]
    )
    return reply


def _pod_process(pod_file: Path) -> LocalGrid:
    """The ClientApp as ``fedplug pod start`` builds it: one process, one pod."""
    return LocalGrid({1: build_client_app(pod_file=pod_file)})


def _setup(fed_pods, reads: list[Path]) -> tuple[list[Path], object, LocalGrid]:  # noqa: ANN001
    """Two census pods, a task, and pod-a's process; reads counted from here on."""
    pods = fed_pods(2, rows=120)
    plan = make_plan(pods, FedAvg(), rounds=1)  # reads the pods' schemas, as a modeller
    reads.clear()
    return pods, plan, _pod_process(pods[0])


def _examples(reply: Message) -> int:
    assert not reply.has_error(), reply.error
    return int(reply.content["metrics"]["num-examples"])


def _rewrite(csv: Path, frame: pd.DataFrame) -> None:
    """Rewrite the data file in place, with a modification time surely different."""
    before = os.stat(csv).st_mtime_ns
    frame.to_csv(csv, index=False)
    os.utime(csv, ns=(before + 10**9, before + 10**9))


def test_the_pod_process_reads_its_data_once_for_many_messages(fed_pods, reads) -> None:
    pods, plan, grid = _setup(fed_pods, reads)
    assert _examples(_send(grid, plan)) == 90  # 120 rows, 25% held out for validation
    assert _examples(_send(grid, plan)) == 90
    assert not _send(grid, plan, wire.EVALUATE).has_error()
    assert not _send(grid, plan).has_error()
    assert reads == [pods[0].parent / "pod-a.csv"]


def test_a_changed_data_file_is_read_and_validated_again(fed_pods, fed_adult, reads) -> None:
    pods, plan, grid = _setup(fed_pods, reads)
    csv = pods[0].parent / "pod-a.csv"
    assert _examples(_send(grid, plan)) == 90
    _rewrite(csv, fed_adult.iloc[:80])
    assert _examples(_send(grid, plan)) == 60  # the new rows, not the remembered ones
    assert _examples(_send(grid, plan)) == 60
    assert len(reads) == 2


def test_changed_data_that_fails_validation_is_refused_not_trained_on(
    fed_pods, fed_adult, reads
) -> None:
    pods, plan, grid = _setup(fed_pods, reads)
    csv = pods[0].parent / "pod-a.csv"
    assert _examples(_send(grid, plan)) == 90
    bad = fed_adult.iloc[:120].copy()
    bad.loc[bad.index[3], "workclass"] = "Astronaut"  # not in the agreed vocabulary
    _rewrite(csv, bad)
    for _ in range(2):  # every message reads it again until it is fixed; none trains
        reply = _send(grid, plan)
        assert reply.has_error()
        assert "pod 'pod-a'" in reply.error.reason and "workclass" in reply.error.reason
        assert "Astronaut" not in reply.error.reason  # a cell value never leaves the pod
    _rewrite(csv, fed_adult.iloc[:100])
    assert _examples(_send(grid, plan)) == 75
    assert len(reads) == 4


def test_a_changed_schema_file_or_pod_file_is_read_again(fed_pods, reads) -> None:
    pods, plan, grid = _setup(fed_pods, reads)
    assert _examples(_send(grid, plan)) == 90

    # The agreed schema no longer knows a category the data holds: validation refuses it.
    schema_file = pods[0].parent / "schema.yaml"
    original = schema_file.read_text()
    schema = yaml.safe_load(original)
    values = schema["columns"]["workclass"]["categories"]
    schema["columns"]["workclass"]["categories"] = [v for v in values if v != "Private"]
    schema_file.write_text(yaml.safe_dump(schema, sort_keys=False))
    reply = _send(grid, plan)
    assert reply.has_error() and "workclass" in reply.error.reason
    schema_file.write_text(original)
    assert _examples(_send(grid, plan)) == 90

    # The owner changes the pod's split: the next message uses it.
    config = yaml.safe_load(pods[0].read_text())
    config["split"]["validation"] = 0.5
    pods[0].write_text(yaml.safe_dump(config))
    assert _examples(_send(grid, plan)) == 60
    assert len(reads) == 4


def test_a_replaced_data_file_is_noticed_even_with_the_same_size_and_time(fed_pods, reads) -> None:
    pods, plan, grid = _setup(fed_pods, reads)
    csv = pods[0].parent / "pod-a.csv"
    assert _examples(_send(grid, plan)) == 90
    st = os.stat(csv)
    staged = csv.with_name("staged.csv")
    staged.write_bytes(csv.read_bytes())
    os.utime(staged, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(staged, csv)  # another file now: its inode differs
    assert _examples(_send(grid, plan)) == 90
    assert len(reads) == 2


def test_serving_writes_nothing_to_disk(
    fed_pods, reads, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No file a local user could read or plant: the pod's data lives in its memory only."""
    pods = fed_pods(2, rows=120)
    plan = make_plan(pods, FedAvg(), rounds=1)
    places = {name: tmp_path / name for name in ("home", "tmp", "cache", "state")}
    for place in places.values():
        place.mkdir()
    monkeypatch.setenv("HOME", str(places["home"]))
    monkeypatch.setenv("TMPDIR", str(places["tmp"]))
    monkeypatch.setenv("XDG_CACHE_HOME", str(places["cache"]))
    monkeypatch.setenv("XDG_STATE_HOME", str(places["state"]))
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    grid = _pod_process(pods[0])
    for message_type in (wire.TRAIN, wire.EVALUATE, wire.TRAIN):
        assert not _send(grid, plan, message_type).has_error()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_watched_files_name_the_yaml_the_schema_and_the_data(tmp_path: Path) -> None:
    csv_pod = Pod.from_dict(
        {"name": "a", "datasource": {"type": "csv", "path": "a.csv"}, "schema": {"file": "s.yaml"}},
        tmp_path,
    )
    assert _pod_runtime.watched_files(tmp_path / "a.yaml", csv_pod) == (
        tmp_path / "a.yaml",
        tmp_path / "s.yaml",
        tmp_path / "a.csv",
    )
    sql_pod = Pod.from_dict(
        {"name": "b", "datasource": {"type": "sql", "url": "sqlite:///b.db", "table": "t"}},
        tmp_path,
    )
    db = (tmp_path / "b.db").absolute()
    assert _pod_runtime.watched_files(tmp_path / "b.yaml", sql_pod) == (
        tmp_path / "b.yaml",
        db,
        Path(f"{db}-wal"),
    )
    # A missing file has no fingerprint; once it appears, the fingerprint differs.
    files = _pod_runtime.watched_files(tmp_path / "b.yaml", sql_pod)
    empty = _pod_runtime.fingerprint(files)
    assert empty == (None, None, None)
    db.write_bytes(b"")
    assert _pod_runtime.fingerprint(files) != empty
