"""The in-process simulation backend: same results as Ray, timeouts, pods in memory, progress."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from fed_harness import make_plan, max_rel_diff
from flwr.app import Context, Message, RecordDict
from flwr.clientapp import ClientApp

from fedplug import (
    ConfigError,
    DataFrameSource,
    DataStructure,
    DataValidationError,
    FedAvg,
    Pod,
    PolicyRefusal,
    Schema,
    TabularClassifier,
)
from fedplug._flower import build_client_app, run_plan
from fedplug._flower._inprocess import InProcessGrid
from fedplug._flower._pod_compute import is_stats_exchange
from fedplug._flower._simulation import INPROCESS_MAX_PODS, choose_backend, run_locally
from fedplug._task_builder import compose_config
from fedplug.data import PercentageSplit, PodPolicy


def _model(rounds: int = 2) -> TabularClassifier:
    return TabularClassifier(DataStructure(target="TARGET"), rounds=rounds, epochs=1, seed=3)


def _weights(model: TabularClassifier) -> list[np.ndarray]:
    return model._fitted[1]


def test_same_plan_same_model_in_process_and_on_ray(fed_pods) -> None:
    """The one Ray test here: both backends run the same plan to the same model."""
    pods = [str(p) for p in fed_pods(2, rows=160)]
    on_ray, in_process = _model(), _model()
    ray_history = on_ray.fit(pods, backend="ray", verbose=False)
    local_history = in_process.fit(pods, backend="inprocess", verbose=False)
    # Float32 weights; FedAvg may add the pods' updates in another order on Ray.
    assert max_rel_diff(_weights(in_process), _weights(on_ray)) < 1e-5
    assert [h["round"] for h in local_history] == [h["round"] for h in ray_history] == [1, 2]
    for mine, theirs in zip(local_history, ray_history, strict=True):
        for part in ("train", "evaluate"):
            assert mine[part].keys() == theirs[part].keys()
            for key, value in mine[part].items():
                assert value == pytest.approx(theirs[part][key], rel=1e-5, abs=1e-6), key


def test_auto_runs_small_federations_in_process() -> None:
    files = [Path(f"p{i}.yaml") for i in range(INPROCESS_MAX_PODS + 1)]
    assert choose_backend("auto", files[:INPROCESS_MAX_PODS]) == "inprocess"
    assert choose_backend("auto", files) == "ray"
    # Pods held in memory cannot reach Ray's processes: in process, however many.
    memory = [Pod(f"m{i}", DataFrameSource(pd.DataFrame({"a": [1]}))) for i in range(9)]
    assert choose_backend("auto", memory) == "inprocess"
    assert choose_backend("ray", files) == "ray"


def test_a_bad_backend_or_verbose_fails_before_any_pod_is_read(tmp_path) -> None:
    missing = [str(tmp_path / "nowhere.yaml")]
    with pytest.raises(ConfigError, match=r"backend='threads'.*'inprocess', 'ray'"):
        _model().fit(missing, backend="threads")
    with pytest.raises(ConfigError, match=r"verbose='loud'.*False \(silent\)"):
        _model().fit(missing, verbose="loud")


def test_ray_refuses_pods_in_memory_and_a_zero_cpu_share(fed_pods, fed_adult) -> None:
    pod = Pod("in-memory", DataFrameSource(fed_adult.head(50)))
    with pytest.raises(ConfigError, match=r"\['in-memory'\] are fedplug.Pod objects.*'inprocess'"):
        choose_backend("ray", [pod])
    pods = [str(p) for p in fed_pods(2, rows=100)]
    plan = make_plan([Path(p) for p in pods], FedAvg(), rounds=1)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"cpus_per_pod=0.*federation.cpus_per_pod=1"):
        run_locally(plan, [Path(p) for p in pods], backend="ray", cpus_per_pod=0)
    assert time.monotonic() - started < 5  # refused before Ray starts


def test_hydra_federation_groups_choose_the_backend() -> None:
    assert compose_config([]).federation.backend == "auto"
    ray = compose_config(["federation=simulation-ray"]).federation
    assert ray.backend == "ray"
    # The same keys as federation=simulation.
    assert set(ray) == set(compose_config([]).federation)


def _memory_pod(name: str, frame: pd.DataFrame, schema: Schema) -> Pod:
    return Pod(
        name,
        DataFrameSource(frame),
        schema=schema,
        split=PercentageSplit(validation=0.25, seed=1),
        policy=PodPolicy(min_pods=2),
    )


def test_pods_in_memory_train_like_the_same_pods_on_disk(fed_pods, fed_adult, tmp_path) -> None:
    rows = 200
    files = [str(p) for p in fed_pods(2, rows=rows)]
    schema = Schema.from_yaml(tmp_path / "schema.yaml")
    in_memory = [
        _memory_pod(f"pod-{c}", fed_adult.iloc[i * rows : (i + 1) * rows], schema)
        for i, c in enumerate("ab")
    ]
    on_disk, held = _model(rounds=1), _model(rounds=1)
    disk_history = on_disk.fit(files, verbose=False)
    # One pod in memory beside one pod file, as a notebook would mix them.
    memory_history = held.fit([in_memory[0], files[1]], verbose=False)
    assert memory_history == disk_history
    for mine, theirs in zip(_weights(held), _weights(on_disk), strict=True):
        np.testing.assert_array_equal(mine, theirs)
    assert _model(rounds=1).fit(in_memory, verbose=False) == disk_history


def test_a_pod_that_breaks_its_schema_fails_at_once_with_its_violations(fed_adult) -> None:
    schema = Schema.infer(fed_adult, name="census", force_stypes={"education-num": "continuous"})
    bad = fed_adult.head(100).copy()
    bad.loc[3, "workclass"] = "Astronaut"
    pods = [
        _memory_pod("good", fed_adult.head(100), schema),
        _memory_pod("bad", bad, schema),
    ]
    # The schema is given, so fit itself reads no pod: the backend does, before training.
    model = TabularClassifier(DataStructure(target="TARGET"), schema=schema, rounds=1)
    started = time.monotonic()
    with pytest.raises(DataValidationError, match=r"(?s)'bad'.*workclass.*Astronaut"):
        model.fit(pods, verbose=False)
    assert time.monotonic() - started < 10  # not the 120 s wait for a SuperNode


def test_progress_per_round_unless_verbose_is_false(fed_pods, capsys) -> None:
    pods = [str(p) for p in fed_pods(2, rows=120)]
    seen: list[int] = []
    _model().fit(pods, on_round=lambda r, train, evaluate: seen.append(r))
    out = capsys.readouterr().out
    assert "round 1/2  train_loss=" in out and "round 2/2" in out and "accuracy=" in out
    assert seen == [1, 2]
    _model().fit(pods, verbose=False, on_round=lambda r, train, evaluate: seen.append(r))
    assert capsys.readouterr().out == ""
    assert seen == [1, 2, 1, 2]


def test_the_callers_torch_threads_are_given_back(fed_pods) -> None:
    pods = [str(p) for p in fed_pods(2, rows=120)]
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        _model(rounds=1).fit(pods, verbose=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_policy_refusal_arrives_at_once(fed_pods) -> None:
    policies = {"pod-a": {"policy": {"require_secure_aggregation": True, "min_pods": 2}}}
    pods = [str(p) for p in fed_pods(2, rows=100, policies=policies)]
    started = time.monotonic()
    with pytest.raises(PolicyRefusal, match=r"\['pod-a'\] require secure aggregation"):
        _model().fit(pods, verbose=False)
    assert time.monotonic() - started < 10  # on Ray: 30-37 s


# -- timeouts: nothing waits forever ------------------------------------------------------


def _echo_app() -> ClientApp:
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        return Message(RecordDict(), reply_to=message)

    return app


def _blocking_app(release: threading.Event, started: threading.Event) -> ClientApp:
    app = ClientApp()

    @app.query()
    def query(message: Message, context: Context) -> Message:
        started.set()
        release.wait(30)  # bounded, so a failing test cannot hang the suite
        return Message(RecordDict(), reply_to=message)

    return app


def _queries(grid: InProcessGrid, nodes: list[int]) -> list[Message]:
    return [Message(RecordDict(), dst_node_id=n, message_type="query") for n in nodes]


def test_a_wait_ends_at_its_timeout_and_the_other_pods_go_on() -> None:
    release, started = threading.Event(), threading.Event()
    grid = InProcessGrid({1: _blocking_app(release, started), 2: _echo_app()}, default_timeout=0.5)
    try:
        t0 = time.monotonic()
        replies = list(grid.send_and_receive(_queries(grid, [1, 2]), timeout=0.5))
        waited = time.monotonic() - t0
        assert started.is_set()
        # Node 1 hangs: its reply is missing; node 2, queued behind it, still answers.
        assert 0.4 < waited < 3.0
        assert [r.metadata.src_node_id for r in replies] in ([], [2])
        again = list(grid.send_and_receive(_queries(grid, [2]), timeout=5))
        assert [r.metadata.src_node_id for r in again] == [2]
        # Without a timeout the grid's default applies: node 1 is still busy.
        t0 = time.monotonic()
        assert list(grid.send_and_receive(_queries(grid, [1]))) == []
        assert time.monotonic() - t0 < 3.0
    finally:
        release.set()
        grid.close()


def test_a_late_reply_is_dropped() -> None:
    release, started = threading.Event(), threading.Event()
    grid = InProcessGrid({1: _blocking_app(release, started)}, default_timeout=5)
    try:
        [message] = _queries(grid, [1])
        assert list(grid.send_and_receive([message], timeout=0.2)) == []
        release.set()
        time.sleep(0.2)
        assert list(grid.pull_messages([message.metadata.message_id])) == []
    finally:
        release.set()
        grid.close()


def test_a_pod_that_hangs_in_training_costs_the_round_timeout_not_the_run(fed_pods, caplog) -> None:
    files = fed_pods(3, rows=120)
    release = threading.Event()
    pod_app = build_client_app()
    # torch imports its compiler on the first optimizer (seconds): not within a round here.
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])

    def hanging(message: Message, context: Context) -> Message:
        training = message.metadata.message_type == "train" and not is_stats_exchange(message)
        if context.node_id == 3 and training:
            release.wait(60)
        return pod_app(message, context)

    app = ClientApp()
    app.query("schema")(hanging)
    app.train()(hanging)
    app.evaluate()(hanging)
    configs = {i + 1: {"pod": str(p)} for i, p in enumerate(files)}
    plan = make_plan(files, FedAvg(), rounds=1)
    # Pods run one at a time; a pod busy for half the time left no longer holds up the
    # others, whatever order the strategy sampled the pods in.
    plan.round_timeout = 4.0
    grid = InProcessGrid({1: app, 2: app, 3: app}, node_configs=configs, default_timeout=4.0)
    try:
        t0 = time.monotonic()
        result = run_plan(grid, plan)
        seconds = time.monotonic() - t0
    finally:
        release.set()
        grid.close()
    # Rounds go on with the pods that answer; pod-c, stuck, misses every exchange after.
    assert [h["round"] for h in result.history] == [1]
    assert 2 * plan.round_timeout <= seconds < 40
    missing = [r for r in caplog.messages if "'pod-c' did not answer within 4.0s" in r]
    assert len(missing) == 2  # training, then evaluation (pod-c is still stuck)
    assert not [r for r in caplog.messages if "'pod-a' did not answer" in r]


def test_the_pods_torch_threads_come_from_the_environment(monkeypatch) -> None:
    from fedplug._flower._inprocess import torch_threads

    monkeypatch.delenv("FEDPLUG_TORCH_THREADS", raising=False)
    assert torch_threads() == 1
    monkeypatch.setenv("FEDPLUG_TORCH_THREADS", "3")
    assert torch_threads() == 3
    for bad in ("two", "0", "-1"):
        monkeypatch.setenv("FEDPLUG_TORCH_THREADS", bad)
        with pytest.raises(ConfigError, match=r"FEDPLUG_TORCH_THREADS=.*whole number >= 1"):
            torch_threads()


def test_a_pod_made_from_a_frame_trains_like_a_virtual_worker(fed_adult) -> None:
    # PySyft's virtual workers: Pod(name=..., data=frame), no file, in the simulation.
    from fedplug import DataStructure, Pod, TabularClassifier
    from fedplug._errors import PodConfigError
    from fedplug.data import PercentageSplit

    frames = [fed_adult.iloc[:300].copy(), fed_adult.iloc[300:600].copy()]
    before = [f.copy() for f in frames]
    pods = [
        Pod(
            name=f"worker-{i}",
            data=frame,
            schema_options={"force_stypes": {"education-num": "continuous"}},
            split=PercentageSplit(validation=0.2, seed=1),
        )
        for i, frame in enumerate(frames)
    ]
    # Pods agree only on the columns a model uses.
    columns = ["age", "education-num", "sex", "hours-per-week"]
    model = TabularClassifier(
        DataStructure(target="TARGET", selected_cols=columns), rounds=1, hidden=(8,)
    )
    history = model.fit(pods, backend="inprocess", verbose=False)
    assert len(history) == 1 and 0 < history[0]["evaluate"]["accuracy"] <= 1
    for frame, copy in zip(frames, before, strict=True):
        pd.testing.assert_frame_equal(frame, copy)  # the caller's frames are untouched
    with pytest.raises(PodConfigError, match="exactly one of datasource= .* and data="):
        Pod(name="nothing")
