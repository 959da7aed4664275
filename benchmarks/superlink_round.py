"""Benchmark 2: aggregation rounds on a real SuperLink with three SuperNodes.

A real ``flower-superlink`` and three SuperNodes on 127.0.0.1 (the harness of
``tests/deploy_helpers.py``: free ports, ``FLWR_HOME`` in a temp dir, every process
stopped at the end), and one ``flwr run`` per mode and size on the same SuperLink and
SuperNodes: plain FedAvg, fedplug secure aggregation, Flower SecAgg+. The apps are those
of benchmark 1 (``_apps.py``: pods return a fixed update, fedplug's real pod and server
aggregation code), packaged at run time as a small Flower App whose components live in
``_superlink_app.py`` (shipped inside the FAB). Per run: median seconds per round over
the timed rounds (the first round warms up, the last also measures upload sizes; both
left out), fedplug's one-time key setup separately.

Two kinds of SuperNode (``--supernodes``), each with its own SuperLink:

- ``flower``: plain ``flower-supernode``, which starts a fresh ``flwr-clientapp`` process
  for every message (Flower 1.42's ``flwr-clientapp`` serves one task and exits): every
  message pays a Python start-up, the imports and the bundle's installation;
- ``fedplug``: the pod process of ``fedplug pod start`` (``_bench_pod.py``: fedplug's
  long-lived executor behind ``flower-supernode --isolation process``, with the
  benchmark's app swapped in), which answers every message from one process.

Flower 1.42's SuperNode sleeps 3 s whenever a poll of the SuperLink finds no message, so
every server -> pod exchange costs up to ~3 s of waiting: SecAgg+ needs four exchanges
per round, fedplug secure (dropout="recover") two (upload, unmask), fedplug secure with
dropout="abort" and plain one. Every server loop, SecAgg+'s included, polls for replies
through fedplug's ``PollingGrid`` (every 0.25 s), as fedplug's ServerApp does under
``flwr run``.

    python benchmarks/superlink_round.py [--params 1000000 100000] [--rounds 8]
        [--modes plain secure ...] [--supernodes flower fedplug] [--name superlink_round]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _common import md_table, md_targets, target, write_results  # noqa: E402
from aggregation_round import LABELS, MODES, summarize  # noqa: E402
from deploy_helpers import BIN, CONNECTION, Cluster, free_port, write_pods  # noqa: E402

K = 3
KINDS = ("flower", "fedplug")
KIND_LABELS = {
    "flower": "flower-supernode (a process per message)",
    "fedplug": "fedplug pod start (one long-lived process)",
}
#: The modes a fedplug pod process can serve (SecAgg+ needs Flower's own ClientApp).
FEDPLUG_MODES = ("plain", "secure", "secure-abort")
POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
POD_POLL_DEFAULT = "fedplug's default: every 0.1 s while a run is active, 0.5 s when idle"
COMPONENTS = {
    "plain": "_superlink_app:fedplug_client",
    "secure": "_superlink_app:fedplug_client",
    "secure-abort": "_superlink_app:fedplug_client",
    "secaggplus": "_superlink_app:secaggplus_client",
}


def make_app(directory: Path, mode: str) -> Path:
    """A Flower App directory: pyproject + the benchmark modules (shipped in the FAB)."""
    app = directory / f"app-{mode}"
    app.mkdir(parents=True, exist_ok=True)
    for name in ("_apps.py", "_superlink_app.py"):
        shutil.copy(HERE / name, app / name)
    (app / "pyproject.toml").write_text(
        f"""[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "fedplug-bench-{mode}"
version = "1.0.0"
dependencies = ["flwr"]

[tool.hatch.build.targets.wheel]
packages = ["."]

[tool.flwr.app]
publisher = "fedplug-bench"

[tool.flwr.app.components]
serverapp = "_superlink_app:server_app"
clientapp = "{COMPONENTS[mode]}"

[tool.flwr.app.config]
mode = "{mode}"
k = {K}
d = 1000
rounds = 3
out = ""
"""
    )
    return app


def run_mode(c: Cluster, app: Path, mode: str, d: int, rounds: int, timeout: float) -> dict:
    out = c.workdir / f"outcome-{mode}-{d}.json"
    config = f"mode='{mode}' k={K} d={d} rounds={rounds} out='{out}'"
    start = time.time()
    run = c._spawn(  # noqa: SLF001 - the harness's process starter (logs, cleanup)
        f"run-{mode}-{d}",
        [BIN / "flwr", "run", app, CONNECTION, "--run-config", config, "--stream"],
    )
    try:
        outcome = c.finish(run, timeout=timeout)
        data = json.loads(out.read_text()) if out.exists() else {}
        if not data:
            data = {"error": f"no outcome ({outcome.status}): {outcome.details[-1500:]}"}
        elif outcome.status != "finished:completed" and not data.get("error"):
            data["error"] = f"run {outcome.status}: {outcome.details[-1500:]}"
        data["run_s"] = outcome.seconds
    except Exception as exc:  # noqa: BLE001 - recorded, the other modes still run
        data = {"error": f"{type(exc).__name__}: {str(exc)[-1500:]}"}
    data["process_s"] = time.time() - start
    return data


def start_nodes(c: Cluster, kind: str, pod_dir: Path) -> list:
    """K SuperNodes of ``kind`` connected to ``c``'s SuperLink."""
    if kind == "flower":
        nodes = [
            c._spawn(  # noqa: SLF001 - the harness's process starter (logs, cleanup)
                f"supernode-{i}",
                [
                    BIN / "flower-supernode",
                    "--insecure",
                    "--superlink",
                    c.address,
                    "--port",
                    str(free_port()),
                ],
            )
            for i in range(K)
        ]
    else:
        pods = write_pods(pod_dir, names=[f"bench-{i}" for i in range(K)], rows=[300] * K)
        nodes = [
            c._spawn(  # noqa: SLF001
                f"pod-{i}",
                [
                    sys.executable,
                    HERE / "_bench_pod.py",
                    pod,
                    "--superlink",
                    c.address,
                    "--insecure",
                ],
            )
            for i, pod in enumerate(pods)
        ]
    for node in nodes:
        c.wait_connected(node)
    return nodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=int, nargs="+", default=[1_000_000, 100_000])
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["plain", "secure", "secure-abort", "secaggplus"],
        choices=MODES,
    )
    parser.add_argument(
        "--supernodes",
        nargs="+",
        default=list(KINDS),
        choices=KINDS,
        help="flower: plain flower-supernode; fedplug: fedplug pod start's process",
    )
    parser.add_argument(
        "--pod-poll",
        type=float,
        default=None,
        help=f"{POLL_ENV} for the fedplug pod processes (default: unset, {POD_POLL_DEFAULT})",
    )
    parser.add_argument("--rounds", type=int, default=8, help="incl. warm-up and last round")
    parser.add_argument("--timeout", type=float, default=420.0, help="per run, seconds")
    parser.add_argument("--keep", type=Path, help="keep logs in this directory")
    parser.add_argument(
        "--name", default="superlink_round", help="results/<name>.json, .md and .png"
    )
    args = parser.parse_args()
    started = time.time()
    args.load_at_start = os.getloadavg()[0]
    workdir = Path(tempfile.mkdtemp(prefix="fedplug-superlink-bench-"))
    rows: list[dict] = []
    try:
        for kind in args.supernodes:
            modes = [m for m in args.modes if kind == "flower" or m in FEDPLUG_MODES]
            # A SuperLink per kind: the server apps take every connected SuperNode.
            with Cluster(workdir / kind) as c:
                c.env["PYTHONPATH"] = str(HERE)  # belt and braces: the FAB ships them too
                c.env["PYTHONWARNINGS"] = "ignore"
                if kind == "fedplug":
                    # What a pod owner gets: fedplug's own poll of the Runtime API.
                    c.env.pop(POLL_ENV, None)
                    if args.pod_poll is not None:
                        c.env[POLL_ENV] = str(args.pod_poll)
                c.start_superlink()
                start_nodes(c, kind, workdir / kind / "pods")
                apps = {mode: make_app(workdir / kind, mode) for mode in modes}
                for d in args.params:
                    for mode in modes:
                        print(f"{kind}: {mode} K={K} D={d} ...", flush=True)
                        raw = run_mode(c, apps[mode], mode, d, args.rounds, args.timeout)
                        row = summarize(mode, K, d, raw)
                        row["supernodes"] = kind
                        row["run_s"] = raw.get("run_s")
                        row["server_app_s"] = raw.get("serverapp_s")
                        rows.append(row)
                        print(
                            f"  round {row['round_s']:.3f}s "
                            f"(all {np.round(row['round_s_all'], 2)})"
                            f"  setup {row['setup_s']:.3f}s  {row['error'] or ''}",
                            flush=True,
                        )
                if args.keep:
                    shutil.copytree(c.logs, args.keep / kind, dirs_exist_ok=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    report(rows, args, started)


def report(rows: list[dict], args: argparse.Namespace, started: float) -> None:
    by = {(r["supernodes"], r["mode"], r["params"]): r for r in rows}
    kinds = [k for k in args.supernodes if any(r["supernodes"] == k for r in rows)]
    table, ratios = [], []
    for kind in kinds:
        for d in args.params:
            plain = by.get((kind, "plain", d))
            for mode in args.modes:
                r = by.get((kind, mode, d))
                if r is None:
                    continue
                table.append(
                    [
                        KIND_LABELS[kind],
                        f"{d:,}",
                        LABELS[mode],
                        r["round_s"],
                        r["round_s"] / plain["round_s"] if plain else float("nan"),
                        ", ".join(f"{x:.2f}" for x in r["round_s_all"]),
                        r["setup_s"] if mode.startswith("secure") else float("nan"),
                        r["server_aggregate_s"],
                        r["pod_handler_ms"],
                        r["upload_bytes_per_pod"] / 1e6,
                        "FAILED: " + r["error"].splitlines()[0][:60] if r["error"] else "",
                    ]
                )
            s = by.get((kind, "secure", d))
            if s and plain:
                entry = {
                    "supernodes": kind,
                    "params": d,
                    "secure_over_plain": s["round_s"] / plain["round_s"],
                    "secure_setup_s": s["setup_s"],
                }
                if (kind, "secaggplus", d) in by:
                    secaggplus = by[(kind, "secaggplus", d)]["round_s"]
                    entry["secaggplus_over_secure"] = secaggplus / s["round_s"]
                if (kind, "secure-abort", d) in by:
                    abort = by[(kind, "secure-abort", d)]["round_s"]
                    entry["abort_over_plain"] = abort / plain["round_s"]
                ratios.append(entry)
    md = md_table(
        [
            "SuperNodes",
            "D",
            "aggregation",
            "s / round (median)",
            "x plain",
            "all rounds s",
            "one-time key setup s",
            "server aggregate s",
            "pod handler ms",
            "upload MB / pod",
            "note",
        ],
        table,
    )
    if ratios:
        md += "\n\nRatios (same SuperLink, same SuperNodes, same run of this script):\n\n"
        md += md_table(
            [
                "SuperNodes",
                "D",
                "secure (recover) / plain",
                "secure (abort) / plain",
                "SecAgg+ / secure (recover)",
                "fedplug key setup s (once)",
            ],
            [
                [
                    KIND_LABELS[e["supernodes"]],
                    f"{e['params']:,}",
                    e["secure_over_plain"],
                    e.get("abort_over_plain", float("nan")),
                    e.get("secaggplus_over_secure", float("nan")),
                    e["secure_setup_s"],
                ]
                for e in ratios
            ],
        )
    checks = {}
    for e in ratios:
        tag = f"@{e['supernodes']},K{K},D{e['params']:,}"
        checks["secure_over_plain" + tag] = target(e["secure_over_plain"], "<=", 1.5)
        if "secaggplus_over_secure" in e:
            checks["secaggplus_over_secure" + tag] = target(e["secaggplus_over_secure"], ">=", 2.5)
    md += md_targets(checks, "Targets (issue 13)")
    pod_checks = {}
    for d in args.params:
        pod_plain = by.get(("fedplug", "plain", d))
        if pod_plain and d >= 1_000_000:
            pod_checks[f"plain_round_s@fedplug,K{K},D{d:,}"] = target(
                pod_plain["round_s"], "<=", 4.0
            )
    md += md_targets(pod_checks, "Targets (issue 14)")
    pod_poll = f"every {args.pod_poll} s" if args.pod_poll is not None else POD_POLL_DEFAULT
    checks.update(pod_checks)
    md += (
        f"\n\nOne `flower-superlink` and {K} SuperNodes on 127.0.0.1 (insecure, this "
        "machine) per kind of SuperNode, one `flwr run` per row, in the order of the table. "
        "flower-supernode: Flower's SuperNode with its own SuperExec, which starts a fresh "
        "`flwr-clientapp` process (Python start-up, imports, bundle installation) for every "
        f"message ({POLL_ENV}=0.2). fedplug pod start: the pod process fedplug runs for a "
        "pod, one process that answers every message (its Runtime API poll: "
        f"{pod_poll}), "
        "serving the same benchmark app. "
        f"{args.rounds} rounds per run; the median is over rounds 2..{args.rounds - 1} "
        "(round 1 warms up, the last also measures upload sizes). A round is timed in the "
        "ServerApp from sending the train messages to the aggregated model; Flower 1.42's "
        "SuperNode sleeps 3 s after every empty poll, so each server -> pod exchange waits "
        "up to ~3 s: plain and fedplug secure (abort) need one exchange per round, fedplug "
        "secure (recover) two (upload, unmask), SecAgg+ four (setup, share keys, collect "
        "masked vectors, unmask) and does its key setup inside every round. Every row, "
        "SecAgg+'s included, polls for replies every 0.25 s through fedplug's "
        "`PollingGrid`, as fedplug's ServerApp does under `flwr run`. fedplug's key setup "
        "runs once per run "
        "(`setup_s`, not in the round times). Pod handler = fedplug's real pod code per "
        "message (encode + mask + pack for secure); SecAgg+ per-stage pod times are not "
        "instrumented. This shared machine's 1-minute load average: "
        f"{args.load_at_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end.\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(args.params), figsize=(5.5 * len(args.params), 3.6), squeeze=False
    )
    colours = {"flower": "tab:gray", "fedplug": "tab:blue"}
    for ax, d in zip(axes[0], args.params, strict=True):
        for kind in kinds:
            names = [f"{LABELS[m]}\n({kind})" for m in args.modes if (kind, m, d) in by]
            ys = [by[(kind, m, d)]["round_s"] for m in args.modes if (kind, m, d) in by]
            ax.bar(names, ys, color=colours[kind], label=KIND_LABELS[kind])
        ax.axhline(4.0, color="tab:red", linestyle=":", linewidth=1)
        ax.set_title(f"real SuperLink, K = {K}, D = {d:,}")
        ax.set_ylabel("seconds / round (median)")
        ax.tick_params(axis="x", labelsize=6, rotation=30)
        ax.legend(fontsize=7)
    params = {
        "pods": K,
        "params": args.params,
        "modes": args.modes,
        "supernodes": kinds,
        "rounds": args.rounds,
        "timed_rounds": "2..rounds-1",
        "deployment": "flower-superlink + 3 SuperNodes on 127.0.0.1, --insecure, flwr run --stream",
        "flower_supernode": f"flower-supernode, {POLL_ENV}=0.2 (its SuperExec)",
        "fedplug_pod": "fedplug pod start's process (benchmarks/_bench_pod.py), "
        f"{POLL_ENV}={args.pod_poll if args.pod_poll is not None else 'unset'} "
        f"({pod_poll})",
        "num_examples_per_pod": 1000,
        # Other work on this shared machine slows every row: 1-minute load, start and end.
        "load_average": [args.load_at_start, os.getloadavg()[0]],
        "secure": "SecureAggregator() defaults (q=2^61-1, clip 8, max_weight 1e6)",
        "secaggplus": "SecAggPlusWorkflow(num_shares=K, reconstruction_threshold=K-1), "
        "legacy FedAvg",
    }
    write_results(
        args.name,
        params=params,
        results={"rows": rows, "ratios": ratios, "checks": checks},
        markdown=md,
        plot=fig,
        started=started,
    )
    print(md)


if __name__ == "__main__":
    main()
