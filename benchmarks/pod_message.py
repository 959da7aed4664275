"""Benchmark 6: a pod's time per message beyond training, on a 200,000-row pod.

Two ways of serving the same pod, answering the same train message (a ~1M-parameter
TabularNet, hidden 1024-896, a few optimizer steps: training is short and the same in
both):

- ``process per message``: what Flower's own SuperNode does (Flower 1.42's
  ``flwr-clientapp`` serves one task and exits): a fresh Python process per message
  imports fedplug, reads and validates the pod's data, answers one message and exits.
  Measured by running exactly that (``--one-message``); Flower's own extra steps (its
  process start-up, installing the app bundle, the Runtime API calls) come on top, so
  this is a lower bound of what it costs;
- ``fedplug pod start``: one long-lived process reads and validates the pod once when it
  starts; every message then costs a check of the pod files' fingerprints, decoding the
  message, the handler and encoding the reply. The first message of a run also encodes
  the pod's rows for the task (cached for the run's later messages).

Both decode the message from its wire form and encode the reply, as a pod does. Per
message: wall seconds from the message's arrival to its reply, the training inside it
(the pod model's ``fit``), and the difference (pod time beyond training).

    python benchmarks/pod_message.py [--rows 200000] [--messages 6] [--fresh 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import md_table, md_targets, median, target, write_results  # noqa: E402

POD = "big-pod"
PEER = "other-pod"
HIDDEN = (1024, 896)


def write_pod(directory: Path, rows: int) -> Path:
    """A pod of ``rows`` census rows (sampled with replacement) and its agreed schema."""
    import yaml

    from fedplug.data import Schema, load_adult

    directory.mkdir(parents=True, exist_ok=True)
    adult = load_adult("train")
    Schema.infer(adult, name="census").to_yaml(directory / "schema.yaml")
    adult.sample(n=rows, replace=True, random_state=0).to_csv(directory / "data.csv", index=False)
    pod_file = directory / f"{POD}.yaml"
    config = {
        "name": POD,
        "datasource": {"type": "csv", "path": "data.csv"},
        "schema": {"file": "schema.yaml"},
        "split": {"type": "percentage", "validation": 0.1, "seed": 1},
    }
    pod_file.write_text(yaml.safe_dump(config, sort_keys=False))
    return pod_file


def write_message(directory: Path, steps: int) -> tuple[Path, int]:
    """A train message as the server sends it, in its wire form; and its parameter count."""
    import numpy as np
    import torch
    from flwr.app import ArrayRecord, ConfigRecord, RecordDict
    from flwr.common.serde import recorddict_to_proto

    from fedplug import TabularClassifier
    from fedplug._flower import _wire as wire
    from fedplug.data import Schema
    from fedplug.learning import DataStructure, TabularNetSpec, get_weights

    schema = Schema.from_yaml(directory / "schema.yaml")
    model = TabularClassifier(
        DataStructure(target="TARGET"), epochs=None, steps=steps, hidden=HIDDEN, rounds=1
    )
    # The task the server would send (``training_task``; ``_task`` before it was public).
    task = getattr(model, "training_task", None) or model._task  # noqa: SLF001
    task = task(schema)
    k = len(task.continuous())
    task = task.with_scaling(np.zeros(k), np.ones(k))
    torch.manual_seed(0)
    weights = get_weights(TabularNetSpec.from_dict(task.model).build())
    content = RecordDict(
        {
            "arrays": ArrayRecord([np.asarray(w) for w in weights]),
            "config": ConfigRecord(
                {
                    wire.TASK_KEY: task.to_json(),
                    "server-round": 1,
                    wire.PODS_KEY: json.dumps([POD, PEER]),
                }
            ),
        }
    )
    path = directory / "train.msg"
    path.write_bytes(recorddict_to_proto(content).SerializeToString())
    return path, int(sum(w.size for w in weights))


class Pod:
    """The pod's ClientApp as ``fedplug pod start`` builds it, with its training timed."""

    def __init__(self, pod_file: Path) -> None:
        from fedplug._flower import LocalGrid, _pod_runtime, build_client_app
        from fedplug.data import CSVSource

        self.fit_s = 0.0
        self.reads = 0
        real_trainer = _pod_runtime.PodRuntime.trainer
        real_load = CSVSource.load
        bench = self

        def timed_trainer(runtime: Any, task: Any) -> Any:
            trainer = real_trainer(runtime, task)
            if not getattr(trainer, "_bench_timed", False):
                fit = trainer.fit

                def timed_fit(*args: Any, **kwargs: Any) -> Any:
                    start = time.perf_counter()
                    try:
                        return fit(*args, **kwargs)
                    finally:
                        bench.fit_s += time.perf_counter() - start

                trainer.fit = timed_fit
                trainer._bench_timed = True
            return trainer

        def counted_load(source: Any) -> Any:
            bench.reads += 1
            return real_load(source)

        _pod_runtime.PodRuntime.trainer = timed_trainer  # type: ignore[method-assign]
        CSVSource.load = counted_load  # type: ignore[method-assign]
        self.grid = LocalGrid({1: build_client_app(pod_file=pod_file)})

    def start(self, pod_file: Path) -> float:
        """Read and validate the pod, as ``fedplug pod start`` does before serving."""
        from fedplug._flower._pod_runtime import load_runtime

        start = time.perf_counter()
        load_runtime(pod_file)
        return time.perf_counter() - start

    def answer(self, wire_bytes: bytes, server_round: int) -> dict[str, float]:
        """One message, from its wire form to the reply's wire form."""
        from flwr.app import Message
        from flwr.common.serde import recorddict_from_proto, recorddict_to_proto
        from flwr.proto.recorddict_pb2 import RecordDict as ProtoRecordDict

        self.fit_s = 0.0
        start = time.perf_counter()
        proto = ProtoRecordDict()
        proto.ParseFromString(wire_bytes)
        content = recorddict_from_proto(proto)
        content["config"]["server-round"] = server_round
        (reply,) = self.grid.send_and_receive(
            [Message(content, dst_node_id=1, message_type="train")]
        )
        if reply.has_error():
            raise RuntimeError(f"the pod failed: {reply.error.reason}")
        recorddict_to_proto(reply.content).SerializeToString()
        total = time.perf_counter() - start
        return {"total_s": total, "fit_s": self.fit_s, "beyond_s": total - self.fit_s}


def one_message(pod_file: Path, message: Path, out: Path) -> None:
    """``--one-message``: a fresh process answers one message, as flwr-clientapp would."""
    started = time.perf_counter()
    os.environ.setdefault("FEDPLUG_TORCH_THREADS", "1")
    pod = Pod(pod_file)  # imports fedplug, flwr and torch
    imported = time.perf_counter()
    load_s = pod.start(pod_file)
    result = pod.answer(message.read_bytes(), 1)
    result.update(imports_s=imported - started, load_s=load_s)
    out.write_text(json.dumps(result))


def fresh_processes(pod_file: Path, message: Path, count: int, workdir: Path) -> list[dict]:
    rows = []
    for i in range(count):
        out = workdir / f"fresh-{i}.json"
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, __file__, "--one-message", str(pod_file), str(message), str(out)],
            check=True,
            timeout=600,
            env={**os.environ, "FEDPLUG_TORCH_THREADS": "1", "PYTHONWARNINGS": "ignore"},
        )
        wall = time.perf_counter() - start
        inner = json.loads(out.read_text())
        # From process start to exit: the handler's time plus start-up, imports and reading.
        rows.append({**inner, "total_s": wall, "beyond_s": wall - inner["fit_s"]})
    return rows


def long_lived(pod_file: Path, message: Path, count: int) -> tuple[float, list[dict], int]:
    os.environ.setdefault("FEDPLUG_TORCH_THREADS", "1")
    pod = Pod(pod_file)
    start_s = pod.start(pod_file)
    wire_bytes = message.read_bytes()
    rows = [pod.answer(wire_bytes, r + 1) for r in range(count)]
    return start_s, rows, pod.reads


def main() -> None:
    if len(sys.argv) == 5 and sys.argv[1] == "--one-message":
        one_message(Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--messages", type=int, default=6, help="long-lived: messages")
    parser.add_argument("--fresh", type=int, default=3, help="processes, one message each")
    parser.add_argument("--steps", type=int, default=10, help="optimizer steps per message")
    parser.add_argument("--quick", action="store_true", help="20,000 rows, 3 and 2 messages")
    args = parser.parse_args()
    if args.quick:
        args.rows, args.messages, args.fresh = 20_000, 3, 2
    started = time.time()
    args.load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="fedplug-pod-message-") as tmp:
        workdir = Path(tmp)
        pod_file = write_pod(workdir / "pod", args.rows)
        message, params = write_message(workdir / "pod", args.steps)
        print(f"pod of {args.rows:,} rows, a {params:,}-parameter model", flush=True)
        fresh = fresh_processes(pod_file, message, args.fresh, workdir)
        print("process per message, s:", [round(r["total_s"], 2) for r in fresh], flush=True)
        start_s, kept, reads = long_lived(pod_file, message, args.messages)
        print("fedplug pod start, s:", [round(r["total_s"], 3) for r in kept], flush=True)
    report(args, params, fresh, start_s, kept, reads, started)


def report(
    args: argparse.Namespace,
    params: int,
    fresh: list[dict],
    start_s: float,
    kept: list[dict],
    reads: int,
    started: float,
) -> None:
    later = kept[1:] or kept
    # Training proper: a later message's fit (the first fit of a task in a process also
    # encodes the pod's rows and warms torch up, which is pod time beyond training).
    train_s = median([r["fit_s"] for r in later])

    def row(label: str, rows: list[dict], extra: str) -> list:
        total = median([r["total_s"] for r in rows])
        return [
            label,
            len(rows),
            total,
            median([r["fit_s"] for r in rows]),
            total - train_s,
            extra,
        ]

    table = [
        row(
            "process per message (Flower's model; a lower bound)",
            fresh,
            f"imports {median([r['imports_s'] for r in fresh]):.2f} s, read + validate "
            f"{median([r['load_s'] for r in fresh]):.2f} s, encoding the rows: every message",
        ),
        row(
            "fedplug pod start, first message of a run",
            kept[:1],
            "encodes the pod's rows for the task (kept for the run's later messages)",
        ),
        row(
            "fedplug pod start, later messages",
            later,
            f"data read {reads} time(s) in {len(kept)} messages; read + validate once at "
            f"start: {start_s:.2f} s",
        ),
    ]
    md = md_table(
        [
            "serving",
            "messages",
            "s / message (median)",
            "fit s (in that message)",
            "beyond training s",
            "note",
        ],
        table,
    )
    checks = {
        "beyond_training_s@first": target(kept[0]["total_s"] - train_s, "<=", 1.0),
        "beyond_training_s@later": target(
            median([r["total_s"] for r in later]) - train_s, "<=", 1.0
        ),
    }
    md += md_targets(checks, "Targets (issue 14: under 1 s of pod time beyond training)")
    md += (
        f"\n\nA pod of {args.rows:,} census rows (sampled with replacement; 10% held out "
        f"for validation), a {params:,}-parameter TabularNet (hidden "
        f"{'-'.join(map(str, HIDDEN))}), {args.steps} optimizer steps of 64 rows per "
        "message, one torch thread. Wall seconds per message, from its wire form to the "
        "reply's; process per message: from starting the process to its exit. Training = "
        f"the fit of a later message of the long-lived process ({train_s:.2f} s); beyond "
        "training = s / message minus that (a first fit also encodes the pod's rows and "
        "warms torch up, which counts as beyond training). This shared machine's 1-minute "
        f"load average: {args.load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at "
        "the end.\n"
    )
    params_record = {
        "rows": args.rows,
        "params": params,
        "hidden": list(HIDDEN),
        "steps": args.steps,
        "batch_size": 64,
        "messages_long_lived": args.messages,
        "fresh_processes": args.fresh,
        "torch_threads": 1,
        # Other work on this shared machine slows every row: 1-minute load, start and end.
        "load_average": [args.load_at_start, os.getloadavg()[0]],
    }
    write_results(
        "pod_message",
        params=params_record,
        results={
            "fresh": fresh,
            "long_lived": kept,
            "start_s": start_s,
            "reads": reads,
            "train_s": train_s,
            "checks": checks,
        },
        markdown=md,
        started=started,
    )
    print(md)


if __name__ == "__main__":
    main()
