"""Benchmark: feedback in seconds. `fedplug run` on the census demo, and a policy refusal.

Each figure is a `fedplug` command run as a user types it, in a fresh directory, timed
from start to exit (wall), with the CPU time of its process tree (user + system, from
the kernel's accounting of waited-for children: it depends far less than wall time on
what else the machine runs) and the peak resident memory of its whole process tree (the
sum of every process's RSS, sampled every 50 ms from /proc: Ray's workers included):

- the default `fedplug run` (in-process backend, 5 rounds, 2 pods): the first run in an
  empty directory (it writes the demo pods), then runs with the pods in place (median);
- the same with `federation=simulation-ray` (Flower's Simulation Engine, the old default);
- a policy refusal: one demo pod requires secure aggregation (keys pinned as `fedplug pod
  keys` would) and the run asks for FedAvg; the command must fail, naming the refusal;
- the same two from Python, as a notebook user meets them: in one fresh interpreter,
  `import fedplug`, then `model.fit(...)` (5 rounds) timed twice, and `fit` against the
  refusing pods until it raises.

    python benchmarks/feedback.py [--runs 3] [--ray-runs 2] [--quick]

Targets (issue 14): default run < 25 s wall and < 1 GB peak RSS; refusal < 5 s. The
machine may be shared: the load average before each run is recorded next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import md_table, md_targets, median, target, write_results

from fedplug.data import write_census_demo

# The `fedplug` command of this Python's environment, as a user runs it.
_SCRIPT = Path(sys.executable).with_name("fedplug")
FEDPLUG = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-m", "fedplug.cli._main"]
WALL_TARGET_S = 25.0
RSS_TARGET_MB = 1024.0
REFUSAL_TARGET_S = 5.0
#: A wall-clock limit for any one command, so a hung run cannot hang the benchmark.
COMMAND_TIMEOUT_S = 900.0


def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc (ppid is the 4th field of stat)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue  # the process ended meanwhile
        # The command name may hold spaces and parentheses: split after its last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _rss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def tree_rss_mb(root: int) -> float:
    """The resident memory of ``root`` and all its descendants, in MB."""
    tree, total, todo = _children(), 0, [root]
    while todo:
        pid = todo.pop()
        total += _rss_kb(pid)
        todo += tree.get(pid, [])
    return total / 1024


def load_average() -> float:
    return os.getloadavg()[0]


def children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(args: list[str], cwd: Path) -> dict[str, Any]:
    """Run one command; its wall and CPU seconds, peak tree RSS, exit code and output."""
    load = load_average()
    cpu_before = children_cpu_seconds()
    started = time.monotonic()
    env = dict(os.environ, FEDPLUG_POD_DIR=str(cwd / "pods"), COLUMNS="120")
    proc = subprocess.Popen(
        [*FEDPLUG, *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    peak = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], tree_rss_mb(proc.pid))
            done.wait(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        output, _ = proc.communicate(timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        output, _ = proc.communicate()
    seconds = time.monotonic() - started
    done.set()
    sampler.join()
    return {
        "command": "fedplug " + " ".join(args),
        "seconds": round(seconds, 2),
        "cpu_seconds": round(children_cpu_seconds() - cpu_before, 2),
        "peak_rss_mb": round(peak[0], 1),
        "exit_code": proc.returncode,
        "load_before": round(load, 2),
        "output_tail": output[-2000:],
    }


def accuracy(output: str) -> float | None:
    """The last round's validation accuracy in a run's progress lines."""
    found = re.findall(r"round \d+/\d+ .*?accuracy=([0-9.]+)", output)
    return float(found[-1]) if found else None


def run_series(args: list[str], runs: int, workdir: Path, label: str) -> list[dict[str, Any]]:
    """``runs`` runs of one command in ``workdir``; the first writes the demo if missing."""
    results = []
    for i in range(runs):
        result = timed([*args, f"hydra.run.dir=out-{label}-{i}"], workdir)
        result["accuracy"] = accuracy(result["output_tail"])
        print(
            f"{label} #{i + 1}: {result['seconds']:.1f} s ({result['cpu_seconds']:.1f} s CPU), "
            f"{result['peak_rss_mb']:.0f} MB, "
            f"exit {result['exit_code']}, accuracy {result['accuracy']}, "
            f"load {result['load_before']}",
            flush=True,
        )
        if result["exit_code"] != 0:
            print(result["output_tail"], file=sys.stderr)
            raise SystemExit(f"{label}: `{result['command']}` failed")
        results.append(result)
    return results


def refusal(workdir: Path, runs: int) -> list[dict[str, Any]]:
    """A pod that requires secure aggregation, asked for FedAvg: the run must refuse."""
    import yaml

    from fedplug.testing import pin_each_other

    pods = write_census_demo(workdir / "pods")
    config = yaml.safe_load(pods[0].read_text())
    config["policy"]["require_secure_aggregation"] = True
    pods[0].write_text(yaml.safe_dump(config, sort_keys=False))
    pin_each_other(pods)  # what `fedplug pod keys` sets up on each pod's machine
    results = []
    for i in range(runs):
        result = timed(["run", "aggregator=fedavg", f"hydra.run.dir=out-refusal-{i}"], workdir)
        print(
            f"refusal #{i + 1}: {result['seconds']:.1f} s ({result['cpu_seconds']:.1f} s CPU), "
            f"{result['peak_rss_mb']:.0f} MB, "
            f"exit {result['exit_code']}, load {result['load_before']}",
            flush=True,
        )
        if result["exit_code"] == 0 or "require secure aggregation" not in result["output_tail"]:
            print(result["output_tail"], file=sys.stderr)
            raise SystemExit("the refusal run did not fail with the pod's refusal")
        results.append(result)
    return results


PYTHON_API = r"""
import json, sys, time
t0 = time.monotonic()
import fedplug
from fedplug import DataStructure, PolicyRefusal, TabularClassifier
imported = time.monotonic() - t0
pods, refusing = sys.argv[1:3], sys.argv[3:5]
def model():
    return TabularClassifier(DataStructure(target="TARGET"), rounds=5)
fits, cpu = [], []
for _ in range(2):
    t, c = time.monotonic(), time.process_time()
    history = model().fit(pods, verbose=False)
    fits.append(time.monotonic() - t)
    cpu.append(time.process_time() - c)
t, c = time.monotonic(), time.process_time()
try:
    model().fit(refusing, verbose=False)
    refusal = None
except PolicyRefusal:
    refusal = time.monotonic() - t
    cpu.append(time.process_time() - c)
print(json.dumps({"import_s": imported, "fit_s": fits, "refusal_s": refusal, "cpu_s": cpu,
                  "accuracy": history[-1]["evaluate"]["accuracy"]}))
"""


def python_api(pods_dir: Path, refusing_dir: Path) -> dict[str, Any]:
    """Timings inside one fresh interpreter: import, two fits, a refused fit."""
    names = ["census-income-demo", "census-income-yaml-demo"]
    args = [str(pods_dir / f"{n}.yaml") for n in names]
    args += [str(refusing_dir / f"{n}.yaml") for n in names]
    load = load_average()
    proc = subprocess.run(
        [sys.executable, "-c", PYTHON_API, *args],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )
    if proc.returncode != 0:
        print(proc.stdout, proc.stderr, file=sys.stderr)
        raise SystemExit("the Python API measurement failed")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_before"] = round(load, 2)
    print(f"python api: {result}", flush=True)
    if result["refusal_s"] is None:
        raise SystemExit("fit() against a pod requiring secure aggregation did not refuse")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="default runs (after the first)")
    parser.add_argument("--ray-runs", type=int, default=2, help="runs on Ray (0: skip)")
    parser.add_argument("--refusal-runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="one run of each, rounds=1")
    args = parser.parse_args()
    started = time.time()
    extra = ["model.rounds=1"] if args.quick else []
    runs, ray_runs = (1, min(args.ray_runs, 1)) if args.quick else (args.runs, args.ray_runs)
    refusal_runs = 1 if args.quick else args.refusal_runs

    with tempfile.TemporaryDirectory(prefix="fedplug-feedback-") as tmp:
        root = Path(tmp)
        (root / "inprocess").mkdir()
        first = run_series(["run", *extra], 1, root / "inprocess", "first")
        default = run_series(["run", *extra], runs, root / "inprocess", "default")
        ray: list[dict[str, Any]] = []
        if ray_runs:
            (root / "ray").mkdir()
            # The pods in place first, so Ray's figures compare with the default's.
            write_census_demo(root / "ray" / "pods")
            ray = run_series(
                ["run", "federation=simulation-ray", *extra], ray_runs, root / "ray", "ray"
            )
        (root / "refusal").mkdir()
        refused = refusal(root / "refusal", refusal_runs)
        api = python_api(root / "inprocess" / "pods", root / "refusal" / "pods")

    def row(name: str, series: list[dict[str, Any]], cpu: bool = True) -> list[Any]:
        return [
            name,
            len(series),
            median([r["seconds"] for r in series]),
            f"{min(r['seconds'] for r in series):.1f}-{max(r['seconds'] for r in series):.1f}",
            median([r["cpu_seconds"] for r in series]) if cpu else float("nan"),
            median([r["peak_rss_mb"] for r in series]),
            median([r["load_before"] for r in series]),
        ]

    rows = [
        row("`fedplug run`, first run (writes the demo pods)", first),
        row("`fedplug run` (in process, the default)", default),
    ]
    if ray:
        # Ray's worker processes are not children the command waits for: their CPU time
        # escapes the accounting (their memory does not: it is sampled from /proc).
        rows.append(row("`fedplug run federation=simulation-ray` (Ray)", ray, cpu=False))
    rows.append(row("policy refusal (`fedplug run`, a pod requires secure aggregation)", refused))
    headers = [
        "command",
        "runs",
        "median wall s",
        "range s",
        "CPU s",
        "peak RSS MB",
        "load avg",
    ]
    fits, cpu = api["fit_s"], api["cpu_s"]
    api_rows = [
        ["`import fedplug` (fresh interpreter)", api["import_s"], float("nan")],
        ["first `model.fit(...)`, 5 rounds (torch warms up)", fits[0], cpu[0]],
        ["next `model.fit(...)`, 5 rounds", fits[1], cpu[1]],
        ["`model.fit(...)` refused by a pod's policy", api["refusal_s"], cpu[2]],
    ]
    checks = {
        "default run, median wall s": target(
            median([r["seconds"] for r in default]), "<=", WALL_TARGET_S
        ),
        "default run, peak RSS MB (process tree)": target(
            max(r["peak_rss_mb"] for r in [*first, *default]), "<=", RSS_TARGET_MB
        ),
        "policy refusal, median wall s": target(
            median([r["seconds"] for r in refused]), "<=", REFUSAL_TARGET_S
        ),
        "policy refusal from Python (fit), s": target(api["refusal_s"], "<=", REFUSAL_TARGET_S),
        # Both commands run on one thread at a time (the pods one after another), so on
        # an idle machine their wall time comes close to their CPU time.
        "default run, median CPU s (idle wall approaches it)": target(
            median([r["cpu_seconds"] for r in default]), "<=", WALL_TARGET_S
        ),
        "policy refusal, median CPU s (idle wall approaches it)": target(
            median([r["cpu_seconds"] for r in refused]), "<=", REFUSAL_TARGET_S
        ),
    }
    markdown = (
        md_table(headers, rows)
        + f"\n\nFrom Python (one interpreter, load {api['load_before']}):\n\n"
        + md_table(["step", "wall s", "CPU s"], api_rows)
        + md_targets(checks)
    )
    print()
    print(markdown)
    write_results(
        "feedback",
        params={
            "runs": runs,
            "ray_runs": ray_runs,
            "refusal_runs": refusal_runs,
            "overrides": extra,
            "cores": os.cpu_count(),
        },
        results={
            "first": first,
            "default": default,
            "ray": ray,
            "refusal": refused,
            "python_api": api,
            "targets": checks,
        },
        markdown=markdown,
        started=started,
    )


if __name__ == "__main__":
    main()
