"""Benchmark 7: gradient-boosted trees on census income, federated vs central vs XGBoost.

The ``gradient-boosted-trees`` model with its defaults (100 trees of depth 6, learning
rate 0.1, 256 bins, an evaluation every 10 trees) on the bundled Adult data split into the
two census demo pods, trained in simulation (in-process backend) with ``aggregator=fedavg``,
with ``aggregator=secure`` and with ``SecureAggregator(dropout="abort")``; against the same
algorithm and server loop (``boosting_driver``, its evaluations included) run centrally on
the pods' pooled training rows with the bins of the federated run; and against XGBoost
(``tree_method="hist"``, native categorical splits, one thread, as fedplug's pods run) on
the same pooled rows, once with matched parameters and once with XGBoost's defaults.

Reported: wall time, adult.test accuracy and AUC, whether each federated run's trees equal
the central ones (same splits, leaf values within 1e-6) and secure equals plain, and where
a federated run spends its time per exchange (the pods' work, transport and aggregation,
the server's split finding, set-up). The load average is recorded with the figures: the
development machine is shared, and its other users' load inflates every wall time.

XGBoost is not a dependency of fedplug: ``pip install -e '.[bench]'`` (or
``pip install xgboost-cpu``, the wheel without the CUDA/NCCL libraries) adds it; without
it the XGBoost rows are left out and the results say so.

    python benchmarks/gbdt.py [--quick] [--trees N] [--depth D] [--no-abort]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import md_table, median, write_results

from fedplug import DataStructure, FedAvg, SecureAggregator
from fedplug._trees import GradientBoostedTrees, boosting_driver
from fedplug.data import Pod, Schema, load_adult, write_census_demo
from fedplug.learning import BoostingPod, Ensemble, classification_metrics

TARGET = "TARGET"
LEAF_ATOL = 1e-6  # leaf values: the bar of issue 12 and tests/test_boosting.py


def loadavg() -> dict[str, float]:
    one, five, fifteen = os.getloadavg()
    return {"1m": round(one, 2), "5m": round(five, 2), "15m": round(fifteen, 2)}


# -- instrumentation ----------------------------------------------------------------------
class Trace:
    """Where one training run's time goes, as its server loop and its pods see it."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, float]] = []  # (op, seconds through the aggregator)
        self.pod: dict[str, float] = defaultdict(float)  # op -> pod work, summed over pods
        self.tree_starts: list[float] = []
        self.driver_start = self.driver_end = 0.0

    def exchange(self, inner: Any) -> Any:
        trace = self

        class Timed:
            def sum(self, request: dict, size: int, bound: float | None) -> np.ndarray:
                if request.get("op") == "hist" and request.get("depth") == 0:
                    trace.tree_starts.append(time.perf_counter())
                start = time.perf_counter()
                out = inner.sum(request, size, bound)
                trace.exchanges.append((str(request.get("op")), time.perf_counter() - start))
                return out

        return Timed()

    def driver(self, drive: Callable) -> Callable:
        """``drive`` (a model's server loop) with its exchanges and its duration timed."""

        def timed(exchange: Any, task: Any, on_round: Any) -> Any:
            self.driver_start = time.perf_counter()
            try:
                return drive(self.exchange(exchange), task, on_round)
            finally:
                self.driver_end = time.perf_counter()

        return timed

    def summary(self, total_seconds: float) -> dict[str, Any]:
        by_op: dict[str, dict[str, float]] = {}
        for op in sorted({op for op, _ in self.exchanges}):
            times = [s for o, s in self.exchanges if o == op]
            by_op[op] = {
                "count": len(times),
                "seconds": sum(times),
                "median_ms": 1e3 * median(times),
                "pod_seconds": self.pod.get(op, 0.0),
            }
        driver = self.driver_end - self.driver_start
        exchange = sum(s for _, s in self.exchanges)
        pods = sum(self.pod.values())
        marks = [*self.tree_starts, self.driver_end]
        return {
            "total_seconds": total_seconds,
            # Before and after the model's loop: loading and validating the pods, schemas,
            # key setup, the scaling exchanges, collecting the result.
            "setup_seconds": total_seconds - driver,
            "driver_seconds": driver,
            "exchange_seconds": exchange,
            "pod_seconds": pods,
            # What the exchanges cost beyond the pods' own work: building and sending
            # messages, (de)serialising requests and vectors, masking, the (secure) sum.
            "transport_aggregation_seconds": exchange - pods,
            # The server's own work between exchanges: split finding, building requests.
            "server_seconds": driver - exchange,
            "exchanges": len(self.exchanges),
            "by_op": by_op,
            # Per boosting iteration, from its first level to the next one's (the last
            # one to the end of the loop; evaluations fall in the tree before them).
            "seconds_per_tree": [b - a for a, b in zip(marks, marks[1:], strict=False)],
        }


@contextmanager
def timing_pods(trace: Trace) -> Iterator[None]:
    """Time every pod's answer (the in-process backend runs the pods in this process)."""
    original = BoostingPod.answer

    def answer(self: BoostingPod, request: dict[str, Any]) -> np.ndarray:
        start = time.perf_counter()
        try:
            return original(self, request)
        finally:
            trace.pod[str(request.get("op"))] += time.perf_counter() - start

    BoostingPod.answer = answer  # type: ignore[method-assign]
    try:
        yield
    finally:
        BoostingPod.answer = original  # type: ignore[method-assign]


# -- fedplug's trees ------------------------------------------------------------------------
def new_model(trees: int, depth: int) -> GradientBoostedTrees:
    return GradientBoostedTrees(DataStructure(target=TARGET), n_trees=trees, max_depth=depth)


def fitted(model: GradientBoostedTrees) -> tuple[Any, Ensemble]:
    """The (task, ensemble) a fit left: ``task_`` and ``state_`` of the model contract."""
    if hasattr(model, "state_"):
        return model.task_, Ensemble.from_dict(model.state_)
    return model._fitted  # before the model base kept task_ / state_


def federated(
    pods: list[Path], aggregator: Any, trees: int, depth: int, test: pd.DataFrame
) -> tuple[GradientBoostedTrees, dict[str, Any]]:
    model = new_model(trees, depth)
    trace = Trace()
    drive = model.driver()
    model.driver = lambda: trace.driver(drive)  # type: ignore[method-assign]
    before = loadavg()
    with timing_pods(trace):
        start, cpu = time.perf_counter(), time.process_time()
        model.fit(pods, aggregator, backend="inprocess", verbose=False)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = loadavg()
    return model, {
        "seconds": seconds,
        # All threads of this process: the server and, in-process, the pods. Less
        # sensitive than wall time to the other users' load on a shared machine.
        "cpu_seconds": cpu,
        "metrics": model.evaluate(test),
        "profile": trace.summary(seconds),
        "load_before": before,
        "load_after": after,
    }


class Central:
    """The exchange of one pod holding every pooled row: central training, same code."""

    def __init__(self, pod: BoostingPod) -> None:
        self.pod = pod

    def sum(self, request: dict, size: int, bound: float | None) -> np.ndarray:
        vector = self.pod.answer(request)
        assert vector.size == size, (vector.size, size)
        return vector


def central(
    reference: GradientBoostedTrees,
    train: pd.DataFrame,
    validation: pd.DataFrame,
    test: pd.DataFrame,
) -> tuple[GradientBoostedTrees, dict[str, Any]]:
    """The federated run's task (so its scaling, hence its bins) trained on pooled rows."""
    task, _ = fitted(reference)
    trace = Trace()
    drive = trace.driver(boosting_driver(reference.params(), int(reference.eval_every)))
    before = loadavg()
    with timing_pods(trace):
        start, cpu = time.perf_counter(), time.process_time()
        state, history = drive(Central(BoostingPod(task, train, validation)), task, None)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    after = loadavg()
    model = new_model(reference.n_trees, reference.max_depth)
    model.set_trained(task, state, history)
    return model, {
        "seconds": seconds,
        # All threads of this process: the server and, in-process, the pods. Less
        # sensitive than wall time to the other users' load on a shared machine.
        "cpu_seconds": cpu,
        "metrics": model.evaluate(test),
        "profile": trace.summary(seconds),
        "load_before": before,
        "load_after": after,
    }


def compare(a: Ensemble, b: Ensemble, edges_rtol: float) -> dict[str, Any]:
    """Same bins (edges within ``edges_rtol``), same splits, leaves within LEAF_ATOL?"""
    bins = len(a.binning.features) == len(b.binning.features) and all(
        (fa.name, fa.kind, fa.categories) == (fb.name, fb.kind, fb.categories)
        and len(fa.edges) == len(fb.edges)
        and np.allclose(fa.edges, fb.edges, rtol=edges_rtol, atol=0)
        for fa, fb in zip(a.binning.features, b.binning.features, strict=False)
    )
    split_diffs, leaf_diff, nodes = 0, 0.0, 0
    for ia, ib in zip(a.trees, b.trees, strict=False):
        for ta, tb in zip(ia, ib, strict=False):
            for n in range(len(ta.feature)):
                nodes += 1
                same = (ta.feature[n], ta.threshold[n], ta.missing_left[n]) == (
                    tb.feature[n],
                    tb.threshold[n],
                    tb.missing_left[n],
                ) and sorted(ta.left_categories[n]) == sorted(tb.left_categories[n])
                split_diffs += not same
            leaf_diff = max(leaf_diff, float(np.max(np.abs(np.subtract(ta.value, tb.value)))))
    same_count = len(a.trees) == len(b.trees)
    return {
        "equal": bool(bins and same_count and split_diffs == 0 and leaf_diff <= LEAF_ATOL),
        "same_bins": bool(bins),
        "same_tree_count": same_count,
        "nodes_compared": nodes,
        "nodes_with_other_split": split_diffs,
        "max_leaf_difference": leaf_diff,
    }


def request_bytes(ensemble: Ensemble, trees: int) -> int:
    """Size of a ``hist`` request's ensemble when ``trees`` iterations are done (JSON)."""
    partial = Ensemble(ensemble.binning, ensemble.n_classes, ensemble.base, ensemble.trees[:trees])
    return len(json.dumps(partial.to_dict()))


# -- XGBoost --------------------------------------------------------------------------------
def xgboost_runs(
    train: pd.DataFrame, test: pd.DataFrame, schema: Schema, trees: int, depth: int, repeats: int
) -> dict[str, Any]:
    try:
        import xgboost
    except ImportError:
        return {
            "skipped": "xgboost is not installed: pip install -e '.[bench]' (or pip install "
            "xgboost-cpu) and run again"
        }
    classes = sorted(train[TARGET].unique())

    def frame(data: pd.DataFrame) -> pd.DataFrame:
        out = data.drop(columns=[TARGET]).copy()
        for column in out.columns:
            categories = schema[column].categories if column in schema.columns else None
            if categories:
                out[column] = pd.Categorical(out[column], categories=list(categories))
            else:
                out[column] = pd.to_numeric(out[column], errors="coerce").astype(np.float64)
        return out

    x_train, x_test = frame(train), frame(test)
    y_train = pd.Index(classes).get_indexer(train[TARGET])
    y_test = pd.Index(classes).get_indexer(test[TARGET])
    # XGBoost's native API (its scikit-learn wrapper needs scikit-learn). "defaults" are
    # those of XGBClassifier: 100 rounds, depth 6, eta 0.3, 256 bins, lambda 1.
    base = {"objective": "binary:logistic", "tree_method": "hist", "nthread": 1}
    configs = {
        "xgboost_matched": ({**base, "max_depth": depth, "eta": 0.1}, trees),
        "xgboost_defaults": (base, 100),
    }
    out: dict[str, Any] = {"version": xgboost.__version__}
    for name, (params, rounds) in configs.items():
        times: list[float] = []
        cpus: list[float] = []
        before = loadavg()
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            # Building the DMatrix (its quantile bins) is part of training, as binning is
            # for fedplug's central run.
            dtrain = xgboost.DMatrix(x_train, label=y_train, enable_categorical=True)
            booster = xgboost.train(params, dtrain, num_boost_round=rounds)
            times.append(time.perf_counter() - start)
            cpus.append(time.process_time() - cpu)
        positive = booster.predict(xgboost.DMatrix(x_test, enable_categorical=True))
        out[name] = {
            "seconds": median(times),
            "seconds_all": times,
            "cpu_seconds": median(cpus),
            "metrics": classification_metrics(y_test, positive),
            "params": {**params, "num_boost_round": rounds, "enable_categorical": True},
            "load_before": before,
            "load_after": loadavg(),
        }
    return out


# -- report ---------------------------------------------------------------------------------
LABELS = {
    "central": "fedplug GBDT, central (pooled rows, same bins)",
    "fedavg": "fedplug GBDT, 2 pods, `aggregator=fedavg`",
    "secure": "fedplug GBDT, 2 pods, `aggregator=secure`",
    "secure_abort": 'fedplug GBDT, 2 pods, secure `dropout="abort"`',
    "xgboost_matched": "XGBoost hist, lr 0.1 (matched), pooled rows",
    "xgboost_defaults": "XGBoost hist, its defaults (lr 0.3), pooled rows",
}


def markdown(results: dict[str, Any], params: dict[str, Any]) -> str:
    runs = [k for k in LABELS if k in results or k in results.get("xgboost", {})]
    rows = []
    for key in runs:
        r = results.get(key) or results["xgboost"][key]
        same = results["equality"].get(key, {})
        equal = (
            "n/a"
            if key.startswith("xgboost") or key == "central"
            else ("yes" if same.get("equal") else "NO")
        )
        central = results["central"]
        load = f"{r['load_before']['1m']:.1f} / {r['load_after']['1m']:.1f}"
        rows.append(
            [
                LABELS[key],
                f"{100 * r['metrics']['accuracy']:.2f}%",
                f"{r['metrics'].get('auc', float('nan')):.4f}",
                r["seconds"],
                f"{r['seconds'] / central['seconds']:.2f}",
                r["cpu_seconds"],
                f"{r['cpu_seconds'] / central['cpu_seconds']:.2f}",
                equal,
                load,
            ]
        )
    md = md_table(
        [
            "training",
            "adult.test accuracy",
            "AUC",
            "wall s",
            "x central",
            "CPU s",
            "x central",
            "trees = central",
            "load 1m before / after",
        ],
        rows,
    )
    eq = results["equality"]
    md += (
        f"\n\n{params['trees']} trees of depth {params['depth']}, learning rate "
        f"{params['learning_rate']}, {params['max_bins']} bins, an evaluation every "
        f"{params['eval_every']} trees; {params['train_rows']} pooled training rows "
        f"({params['validation_rows']} validation rows held by the pods), test = adult.test "
        f"({params['test_rows']} rows). XGBoost: median of {params['xgboost_repeats']} fit(s), "
        "one thread, native categorical splits. CPU s: all threads of this process (the in-process "
        "pods run in it), less sensitive to the machine's other load than wall time.\n\n"
        f"- federated (fedavg) trees equal central: {_yes(eq.get('fedavg'))}\n"
        f"- federated (secure) trees equal central: {_yes(eq.get('secure'))}\n"
        f"- secure trees equal plain (bin edges within 1e-5): {_yes(eq.get('secure_vs_fedavg'))}\n"
    )
    if "secure_abort" in eq:
        md += f'- secure `dropout="abort"` trees equal central: {_yes(eq.get("secure_abort"))}\n'
    md += "\nWhere the time goes (seconds; pod work summed over both pods, which run one "
    md += "after another in the in-process backend):\n\n"
    prof_rows = []
    for key in ("central", "fedavg", "secure", "secure_abort"):
        if key not in results:
            continue
        p = results[key]["profile"]
        hist = p["by_op"].get("hist", {})
        prof_rows.append(
            [
                key,
                p["total_seconds"],
                p["setup_seconds"],
                p["pod_seconds"],
                p["transport_aggregation_seconds"],
                p["server_seconds"],
                p["exchanges"],
                hist.get("median_ms", float("nan")),
            ]
        )
    md += md_table(
        [
            "run",
            "total",
            "set-up",
            "pod work",
            "transport + aggregation",
            "server (split finding)",
            "exchanges",
            "hist exchange median ms",
        ],
        prof_rows,
    )
    sizes = results["request_bytes"]
    md += (
        f"\n\nA `hist` request carries the whole ensemble so far: {sizes['after_1']:,} bytes "
        f"of JSON after one tree, {sizes['after_last']:,} after {params['trees']}.\n"
    )
    load = results["load"]
    md += (
        f"\nLoad average (1/5/15 min) at the start: {load['start']['1m']}/{load['start']['5m']}/"
        f"{load['start']['15m']}, at the end: {load['end']['1m']}/{load['end']['5m']}/"
        f"{load['end']['15m']} on {os.cpu_count()} cores (`uptime`: {load['uptime']}).\n"
    )
    if "skipped" in results.get("xgboost", {}):
        md += f"\nXGBoost rows left out: {results['xgboost']['skipped']}.\n"
    return md


def _yes(check: dict[str, Any] | None) -> str:
    if not check:
        return "not measured"
    if check["equal"]:
        return f"yes (max leaf difference {check['max_leaf_difference']:.1e})"
    return (
        f"NO ({check['nodes_with_other_split']} of {check['nodes_compared']} nodes split "
        f"differently, max leaf difference {check['max_leaf_difference']:.1e}, same bins: "
        f"{check['same_bins']})"
    )


def plot(results: dict[str, Any]) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2, a3) = plt.subplots(1, 3, figsize=(13, 3.6))
    runs = [k for k in ("central", "fedavg", "secure", "secure_abort") if k in results]
    parts = [
        ("setup_seconds", "set-up", "0.7"),
        ("pod_seconds", "pod work", "C2"),
        ("transport_aggregation_seconds", "transport + aggregation", "C0"),
        ("server_seconds", "server split finding", "C1"),
    ]
    bottom = np.zeros(len(runs))
    for key, label, color in parts:
        values = np.array([max(0.0, results[r]["profile"][key]) for r in runs])
        a2.bar(runs, values, bottom=bottom, label=label, color=color)
        bottom += values
    xgb = results.get("xgboost", {})
    for key in ("xgboost_matched", "xgboost_defaults"):
        if key in xgb:
            a2.bar([key.replace("xgboost_", "xgb ")], [xgb[key]["seconds"]], color="C4")
    # CPU seconds of the process: what the run costs without the machine's other load.
    cpu = [(r, results[r]["cpu_seconds"]) for r in runs]
    cpu += [(k.replace("xgboost_", "xgb "), xgb[k]["cpu_seconds"]) for k in LABELS if k in xgb]
    a2.scatter([n for n, _ in cpu], [c for _, c in cpu], color="k", marker="_", s=300, zorder=3)
    a2.plot([], [], color="k", label="CPU seconds")
    a2.set_ylabel("wall seconds")
    a2.legend(fontsize=7)
    a2.tick_params(axis="x", labelsize=7, rotation=20)

    names, accs = [], []
    for key in (*runs, "xgboost_matched", "xgboost_defaults"):
        r = results.get(key) or xgb.get(key)
        if r:
            names.append(key.replace("xgboost_", "xgb "))
            accs.append(100 * r["metrics"]["accuracy"])
    a1.bar(names, accs, color=["grey", "C1", "C0", "C9", "C4", "C6"][: len(names)])
    a1.set_ylim(min(accs) - 1.5, max(accs) + 0.5)
    a1.set_ylabel("adult.test accuracy (%)")
    a1.tick_params(axis="x", labelsize=7, rotation=20)

    for key in runs:
        per_tree = results[key]["profile"]["seconds_per_tree"]
        a3.plot(range(1, len(per_tree) + 1), per_tree, label=key)
    a3.set_xlabel("tree")
    a3.set_ylabel("seconds per tree")
    a3.legend(fontsize=7)
    return fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 trees (a ~1-minute smoke run)")
    parser.add_argument("--trees", type=int, default=100)
    parser.add_argument("--depth", type=int, default=6)
    parser.add_argument("--no-abort", action="store_true", help='skip dropout="abort"')
    args = parser.parse_args()
    started = time.time()
    trees = 10 if args.quick else args.trees
    repeats = 1 if args.quick else 3
    load_start = loadavg()
    uptime = os.popen("uptime").read().strip()

    test = load_adult("test")
    results: dict[str, Any] = {}
    models: dict[str, GradientBoostedTrees] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pods = write_census_demo(Path(tmp))
        loaded = [Pod.from_yaml(p).load() for p in pods]
        train = pd.concat([p.train for p in loaded], ignore_index=True)
        validation = pd.concat([p.validation for p in loaded], ignore_index=True)
        aggregators: dict[str, Any] = {"fedavg": FedAvg(), "secure": SecureAggregator()}
        if not args.no_abort:
            aggregators["secure_abort"] = SecureAggregator(dropout="abort")
        for name, aggregator in aggregators.items():
            print(f"{name}: {trees} trees ...", flush=True)
            models[name], results[name] = federated(pods, aggregator, trees, args.depth, test)
            print(f"  {results[name]['seconds']:.1f} s", flush=True)
    print("central ...", flush=True)
    models["central"], results["central"] = central(models["fedavg"], train, validation, test)
    print(f"  {results['central']['seconds']:.1f} s", flush=True)

    ensembles = {k: fitted(m)[1] for k, m in models.items()}
    equality = {k: compare(ensembles[k], ensembles["central"], 1e-9) for k in aggregators}
    # Secure bins come from securely summed (fixed-point) scaling statistics: edges agree
    # to ~1e-6 relative, and so must every split and leaf.
    for key in ("secure", "secure_abort"):
        if key in ensembles:
            equality[key] = compare(ensembles[key], ensembles["central"], 1e-5)
    equality["secure_vs_fedavg"] = compare(ensembles["secure"], ensembles["fedavg"], 1e-5)
    results["equality"] = equality

    print("xgboost ...", flush=True)
    schema = Schema.from_dict(fitted(models["fedavg"])[0].schema)
    results["xgboost"] = xgboost_runs(train, test, schema, trees, args.depth, repeats)
    fed = ensembles["fedavg"]
    results["request_bytes"] = {
        "after_1": request_bytes(fed, 1),
        "after_last": request_bytes(fed, len(fed.trees)),
    }
    results["load"] = {"start": load_start, "end": loadavg(), "uptime": uptime}

    reference = models["fedavg"]
    params = {
        "trees": trees,
        "depth": args.depth,
        "learning_rate": reference.learning_rate,
        "max_bins": reference.max_bins,
        "reg_lambda": reference.reg_lambda,
        "min_child_weight": reference.min_child_weight,
        "eval_every": reference.eval_every,
        "backend": "inprocess",
        "pods": ["census-income-demo", "census-income-yaml-demo"],
        "train_rows": len(train),
        "validation_rows": len(validation),
        "test_rows": len(test),
        "xgboost_repeats": repeats,
        "quick": args.quick,
    }
    md = markdown(results, params)
    write_results(
        "gbdt", params=params, results=results, markdown=md, plot=plot(results), started=started
    )
    print(md)


if __name__ == "__main__":
    main()
