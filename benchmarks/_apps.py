"""Benchmark-only Flower apps: pods that return a fixed update, and timed server loops.

Four modes share one harness, so only the aggregation differs:

- ``plain``: fedplug's plaintext FedAvg (``FedAvg().wrap``); pods run fedplug's real
  ``handle_train``;
- ``secure``: fedplug's ``SecureAggregator`` (real key setup and
  ``SecureAggregationStrategy``); pods run fedplug's real ``handle_setup`` /
  ``handle_secure`` (encode, double-mask) / ``handle_unmask`` - only the trainer is
  replaced by a fixed update; ``secure-abort``: the same with ``dropout="abort"`` (one
  exchange per round, pair masks only);
- ``secaggplus``: Flower's ``SecAggPlusWorkflow`` with ``secaggplus_mod`` on the legacy
  strategy stack, full graph, reconstruction threshold K - 1 (tolerates one dropout).
"""

from __future__ import annotations

import resource
import time
from dataclasses import dataclass, field

import numpy as np
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.serde import recorddict_to_proto
from flwr.serverapp import Grid, ServerApp

NUM_EXAMPLES = 1000
BENCH_KEY = "bench"
POD_MS = "bench-pod-ms"


def fixed_update(name: str, size: int) -> np.ndarray:
    """A pod's fixed 'trained' weights: small values, different per pod."""
    seed = sum(name.encode()) * 7919 + size
    return (np.random.default_rng(seed).standard_normal(size) * 0.01).astype(np.float32)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def payload_bytes(content: RecordDict) -> int:
    """Serialized size of a reply's records (what goes on the wire), bench record excluded."""
    kept = RecordDict({k: v for k, v in content.items() if k not in (BENCH_KEY, "metrics")})
    if "metrics" in content:
        kept["metrics"] = MetricRecord({k: v for k, v in content["metrics"].items() if k != POD_MS})
    return recorddict_to_proto(kept).ByteSize()


# -- fedplug pods ---------------------------------------------------------------------------
class _FixedTrainer:
    def __init__(self, name: str) -> None:
        self.name = name
        self._cache: dict[int, np.ndarray] = {}

    def fit(self, weights: list[np.ndarray], server_round: int, *_: object):  # noqa: ANN201
        size = int(sum(w.size for w in weights))
        if size not in self._cache:
            self._cache[size] = fixed_update(self.name, size)
        return [self._cache[size].reshape(weights[0].shape)], {"num-examples": NUM_EXAMPLES}


_RUNTIMES: dict[str, object] = {}


def _runtime(context: Context):  # noqa: ANN202
    """A PodRuntime whose trainer returns a fixed update; policy and identity are real."""
    from fedplug._flower._pod_runtime import PodRuntime
    from fedplug.data import Pod, PodPolicy

    name = f"n{context.node_id}"
    if name not in _RUNTIMES:
        import torch

        torch.set_num_threads(1)  # as fedplug pods do (_pod_runtime._limit_threads)

        class FixedRuntime(PodRuntime):
            def trainer(self, task):  # noqa: ANN001, ANN202
                return self.trainers.setdefault("fixed", _FixedTrainer(self.name))

        pod = Pod(name, datasource=None, policy=PodPolicy(min_pods=2))
        _RUNTIMES[name] = FixedRuntime(pod=pod, data=None, trainers={})  # type: ignore[arg-type]
    return _RUNTIMES[name]


def _timed(handler):  # noqa: ANN001, ANN202
    def run(message: Message, context: Context) -> Message:
        start = time.perf_counter()
        reply = handler(message, context, _runtime(context))
        ms = (time.perf_counter() - start) * 1e3
        if reply.has_error():
            raise RuntimeError(f"benchmark pod failed: {reply.error.reason}")
        if "metrics" in reply.content:  # Flower's FedAvg accepts exactly one MetricRecord
            reply.content["metrics"][POD_MS] = ms
        else:
            reply.content[BENCH_KEY] = MetricRecord({POD_MS: ms})
        return reply

    return run


def fedplug_client_app() -> ClientApp:
    from fedplug._flower._pod_app import handle_train
    from fedplug._flower._secure_pod import handle_secure, handle_setup, handle_unmask

    app = ClientApp()
    app.train()(_timed(handle_train))
    app.query("secaggsetup")(_timed(handle_setup))
    app.query("secaggunmask")(_timed(handle_unmask))
    app.query("ping")(lambda m, c: (_runtime(c), Message(RecordDict(), reply_to=m))[1])
    app.train("secure")(_timed(lambda m, c, r: handle_secure(m, c, r, "train")))
    return app


# -- fedplug server ---------------------------------------------------------------------------
@dataclass
class Outcome:
    round_s: list[float] = field(default_factory=list)
    server_s: list[float] = field(default_factory=list)
    pod_ms: list[float] = field(default_factory=list)
    upload_bytes: list[int] = field(default_factory=list)
    setup_s: float = 0.0
    rss_before_mib: float = 0.0
    rss_peak_mib: float = 0.0
    error: str | None = None


def _pod_ms(reply: Message) -> float:
    record = reply.content["metrics"] if "metrics" in reply.content else reply.content[BENCH_KEY]
    return float(record[POD_MS])


def _warm_up(grid: Grid, nodes: list[int]) -> None:
    """One exchange that starts the simulation's workers and loads the pod apps."""
    sent = [Message(RecordDict(), dst_node_id=n, message_type="query.ping") for n in nodes]
    replies = list(grid.send_and_receive(sent, timeout=600))
    if len(replies) != len(nodes):
        raise RuntimeError(f"warm-up: {len(replies)} of {len(nodes)} pods answered")


def _task_json() -> str:
    from fedplug.learning import TrainingTask

    return TrainingTask(schema={}, datastructure={}, model={}, optimizer={}).to_json()


def fedplug_server_app(
    mode: str, k: int, d: int, rounds: int, out: Outcome, *, deployed: bool = False
) -> ServerApp:
    """fedplug's timed server loop. ``deployed``: on a real SuperLink, poll for replies
    through fedplug's ``PollingGrid``, as fedplug's ServerApp does under ``flwr run``
    (Flower's own grid sleeps 3 s between polls); the simulation uses Flower's grid as is,
    as ``fedplug run`` does."""
    from flwr.serverapp.strategy import FedAvg as FlowerFedAvg

    from fedplug._flower import FedAvg, SecureAggregator
    from fedplug._flower import _wire as wire
    from fedplug._flower._session import PodSession

    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        if deployed:
            from fedplug._flower.app import PollingGrid

            grid = PollingGrid(grid)
        try:
            nodes = list(grid.get_node_ids())
            while len(nodes) < k:
                time.sleep(0.1)
                nodes = list(grid.get_node_ids())
            session = PodSession(pods={n: f"n{n}" for n in nodes})
            aggregator = {
                "secure": SecureAggregator(),
                "secure-abort": SecureAggregator(dropout="abort"),
                "secure-all": SecureAggregator(neighbours="all"),
                "secure-harary": SecureAggregator(neighbours="harary"),
            }.get(mode, FedAvg())
            _warm_up(grid, nodes)
            out.rss_before_mib = peak_rss_mib()
            start = time.perf_counter()
            state = aggregator.setup(grid, session)
            out.setup_s = time.perf_counter() - start
            inner = FlowerFedAvg(fraction_evaluate=0.0, min_train_nodes=k, min_available_nodes=k)
            strategy = aggregator.wrap(inner, session, state)
            arrays = ArrayRecord([np.zeros(d, dtype=np.float32)])
            task = _task_json()
            for r in range(1, rounds + 1):
                config = ConfigRecord({wire.TASK_KEY: task, wire.PHASE_KEY: wire.PHASE_FIT})
                t0 = time.perf_counter()
                messages = strategy.configure_train(r, arrays, config, grid)
                replies = list(grid.send_and_receive(messages, timeout=600))
                t1 = time.perf_counter()
                new_arrays, _ = strategy.aggregate_train(r, replies)
                t2 = time.perf_counter()
                if new_arrays is None or len(replies) != k:
                    raise RuntimeError(f"round {r}: {len(replies)} replies, no model")
                out.round_s.append(t2 - t0)
                out.server_s.append(t2 - t1)
                out.pod_ms.append(float(np.median([_pod_ms(m) for m in replies])))
                if r == rounds:  # measured once, outside the timed rounds' medians
                    out.upload_bytes = [payload_bytes(m.content) for m in replies]
                arrays = ArrayRecord([np.zeros(d, dtype=np.float32)])  # a fixed global model
            out.rss_peak_mib = peak_rss_mib()
        except BaseException as exc:  # noqa: BLE001
            import traceback

            out.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"

    return app


# -- Flower SecAgg+ ---------------------------------------------------------------------------
def secaggplus_client_app(d: int) -> ClientApp:
    from flwr.client import NumPyClient
    from flwr.client.mod import secaggplus_mod

    class FixedClient(NumPyClient):
        def __init__(self, name: str) -> None:
            self.name = name

        def fit(self, parameters, config):  # noqa: ANN001, ANN201
            size = int(sum(p.size for p in parameters))
            return [fixed_update(self.name, size)], NUM_EXAMPLES, {}

    clients: dict[str, object] = {}

    def client_fn(context: Context):  # noqa: ANN202
        import torch

        torch.set_num_threads(1)
        name = f"n{context.node_id}"
        client = clients.setdefault(name, FixedClient(name))
        return client.to_client()  # type: ignore[attr-defined]

    return ClientApp(client_fn=client_fn, mods=[secaggplus_mod])


class _MeasuringGrid(Grid):
    """Passes through to the real Grid; on the last round, sums reply sizes per pod."""

    def __init__(self, grid: Grid) -> None:
        self._grid = grid
        self.measure = False
        self.bytes: dict[int, int] = {}

    def set_run(self, run) -> None:  # noqa: ANN001
        self._grid.set_run(run)

    @property
    def run(self):  # noqa: ANN201
        return self._grid.run

    def create_message(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN201
        return self._grid.create_message(*args, **kwargs)

    def get_node_ids(self):  # noqa: ANN201
        return self._grid.get_node_ids()

    def push_messages(self, messages):  # noqa: ANN001, ANN201
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids):  # noqa: ANN001, ANN201
        return self._grid.pull_messages(message_ids)

    def send_and_receive(self, messages, *, timeout=None):  # noqa: ANN001, ANN201
        replies = list(self._grid.send_and_receive(messages, timeout=timeout))
        if self.measure:
            for m in replies:
                if not m.has_error():
                    node = m.metadata.src_node_id
                    self.bytes[node] = self.bytes.get(node, 0) + payload_bytes(m.content)
        return replies


def secaggplus_server_app(k: int, d: int, rounds: int, out: Outcome) -> ServerApp:
    from flwr.common import ndarrays_to_parameters
    from flwr.server import LegacyContext, ServerConfig
    from flwr.server.strategy import FedAvg as LegacyFedAvg
    from flwr.server.workflow import DefaultWorkflow, SecAggPlusWorkflow

    app = ServerApp()
    marks: dict[int, list[float]] = {}

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        try:
            measuring = _MeasuringGrid(grid)

            class TimedFedAvg(LegacyFedAvg):
                def configure_fit(self, server_round, parameters, client_manager):  # noqa: ANN001, ANN201
                    marks[server_round] = [time.perf_counter()]
                    measuring.measure = server_round == rounds
                    return super().configure_fit(server_round, parameters, client_manager)

                def aggregate_fit(self, server_round, results, failures):  # noqa: ANN001, ANN201
                    marks[server_round].append(time.perf_counter())
                    result = super().aggregate_fit(server_round, results, failures)
                    marks[server_round].append(time.perf_counter())
                    if len(results) != k:
                        raise RuntimeError(f"round {server_round}: {len(results)} results")
                    return result

            strategy = TimedFedAvg(
                fraction_fit=1.0,
                fraction_evaluate=0.0,
                min_fit_clients=k,
                min_available_clients=k,
                initial_parameters=ndarrays_to_parameters([np.zeros(d, dtype=np.float32)]),
            )
            legacy = LegacyContext(
                context, config=ServerConfig(num_rounds=rounds), strategy=strategy
            )
            if k > 2:
                secagg = SecAggPlusWorkflow(num_shares=k, reconstruction_threshold=k - 1)
            else:  # integer num_shares must exceed 2: 1.0 means every node, 0.5 one of two
                secagg = SecAggPlusWorkflow(num_shares=1.0, reconstruction_threshold=0.5)
            out.rss_before_mib = peak_rss_mib()
            DefaultWorkflow(fit_workflow=secagg)(measuring, legacy)
            out.rss_peak_mib = peak_rss_mib()
            for r in sorted(marks):
                if len(marks[r]) == 3:
                    out.round_s.append(marks[r][2] - marks[r][0])
                    out.server_s.append(marks[r][2] - marks[r][1])
            out.upload_bytes = list(measuring.bytes.values())
            if len(out.round_s) != rounds:
                raise RuntimeError(f"only {len(out.round_s)} of {rounds} rounds completed")
        except BaseException as exc:  # noqa: BLE001
            import traceback

            out.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"

    return app


def run_one(mode: str, k: int, d: int, rounds: int) -> Outcome:
    """One configuration in this process: a fresh Flower simulation with k pods."""
    import logging
    import os

    from flwr.simulation import run_simulation

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    logging.getLogger("flwr").setLevel(logging.WARNING)
    out = Outcome()
    if mode == "secaggplus":
        server, client = secaggplus_server_app(k, d, rounds, out), secaggplus_client_app(d)
    else:
        server, client = fedplug_server_app(mode, k, d, rounds, out), fedplug_client_app()
    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=k,
        backend_config={
            "client_resources": {"num_cpus": 1.0, "num_gpus": 0.0},
            "init_args": {"logging_level": "ERROR", "log_to_driver": False},
        },
    )
    return out
