"""Benchmark 5: census income end to end, centralized vs plain FedAvg vs secure aggregation.

Same model (TabularNet 64-32, dropout 0.1), optimizer (Adam, lr 1e-3), batch size (64)
and number of passes over the data: central trains rounds x epochs epochs on the full
training file; federated runs train ``epochs`` per round for ``rounds`` rounds on the two
census demo pods. Test accuracy is measured on the separate UCI test file through the
public API (serialize, deserialize, evaluate).

    python benchmarks/census_e2e.py [--quick]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import md_table, write_results

from fedplug import DataStructure, FedAvg, Optimizer, SecureAggregator, TabularClassifier
from fedplug.data import Schema, load_adult, write_census_demo
from fedplug.learning import (
    TabularEncoder,
    TabularNetSpec,
    evaluate_local,
    local_feature_moments,
    scaling_from_moments,
    train_local,
)


def central(train, test, rounds: int, epochs: int, batch: int, seed: int) -> tuple[dict, float]:
    start = time.perf_counter()
    schema = Schema.infer(train)
    resolved = DataStructure(target="TARGET").resolve(schema)
    mean, std = scaling_from_moments(
        local_feature_moments(train, resolved.continuous), len(resolved.continuous)
    )
    encoder = TabularEncoder(schema, resolved, mean, std)
    torch.manual_seed(seed)
    net = TabularNetSpec.for_columns(schema, resolved, (64, 32), 0.1).build()
    data = encoder.encode(train)
    opt = Optimizer("Adam", {"lr": 1e-3})
    # One optimizer for all epochs, as a centralized run would have.
    train_local(net, data, epochs=rounds * epochs, batch_size=batch, optimizer=opt, seed=seed)
    seconds = time.perf_counter() - start
    return evaluate_local(net, encoder.encode(test)), seconds


def federated(
    pods: list[Path],
    aggregator,
    rounds: int,
    epochs: int,
    batch: int,
    seed: int,
    workdir: Path,
    test,
) -> tuple[dict, float]:
    model = TabularClassifier(
        DataStructure(target="TARGET"),
        epochs=epochs,
        batch_size=batch,
        rounds=rounds,
        optimizer=Optimizer("Adam", {"lr": 1e-3}),
        seed=seed,
    )
    start = time.perf_counter()
    model.fit(pods, aggregator=aggregator)
    seconds = time.perf_counter() - start
    path = model.serialize(workdir / f"{type(aggregator).__name__}.pt")
    return TabularClassifier.deserialize(path).evaluate(test), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 round of 1 epoch")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    started = time.time()
    rounds = 1 if args.quick else args.rounds
    torch.set_num_threads(1)  # as the pods do; central gets no unfair thread advantage

    train, test = load_adult("train"), load_adult("test")
    results: dict[str, dict] = {}
    metrics, seconds = central(train, test, rounds, args.epochs, args.batch_size, args.seed)
    results["central"] = {"metrics": metrics, "seconds": seconds}
    with tempfile.TemporaryDirectory() as tmp:
        pods = write_census_demo(Path(tmp))
        for name, agg in (("fedavg", FedAvg()), ("secure", SecureAggregator())):
            metrics, seconds = federated(
                pods, agg, rounds, args.epochs, args.batch_size, args.seed, Path(tmp), test
            )
            results[name] = {"metrics": metrics, "seconds": seconds}
    acc = {k: float(v["metrics"]["accuracy"]) for k, v in results.items()}
    checks = {
        "federated_at_least_84pct": min(acc["fedavg"], acc["secure"]) >= 0.84,
        "federated_within_1pp_of_central": max(
            abs(acc["fedavg"] - acc["central"]), abs(acc["secure"] - acc["central"])
        )
        <= 0.01,
        "secure_within_0.2pp_of_plain": abs(acc["secure"] - acc["fedavg"]) <= 0.002,
    }
    results["checks"] = checks
    labels = {
        "central": "centralized",
        "fedavg": "plain FedAvg, 2 pods",
        "secure": "secure aggregation, 2 pods",
    }
    rows = [
        [
            labels[k],
            f"{100 * acc[k]:.2f}%",
            float(results[k]["metrics"].get("auc", float("nan"))),
            results[k]["seconds"],
        ]
        for k in ("central", "fedavg", "secure")
    ]
    md = md_table(["training", "test accuracy", "test AUC", "wall s"], rows)
    md += (
        f"\n\n{rounds} round(s) x {args.epochs} epoch(s) (central: {rounds * args.epochs} "
        f"epochs), batch {args.batch_size}, Adam lr 1e-3, TabularNet 64-32; test = UCI "
        f"adult.test ({len(test)} rows). Federated wall time includes the Flower simulation "
        "start-up (Ray), key setup and the cross-pod scaling exchanges.\n\n"
        + "\n".join(f"- {k}: {'met' if v else 'MISSED'}" for k, v in checks.items())
        + "\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
    names = ["central", "FedAvg", "secure"]
    a1.bar(
        names, [100 * acc[k] for k in ("central", "fedavg", "secure")], color=["grey", "C1", "C0"]
    )
    a1.set_ylim(80, 88)
    a1.set_ylabel("test accuracy (%)")
    a2.bar(
        names,
        [results[k]["seconds"] for k in ("central", "fedavg", "secure")],
        color=["grey", "C1", "C0"],
    )
    a2.set_ylabel("wall seconds")
    params = {
        "rounds": rounds,
        "epochs_per_round": args.epochs,
        "central_epochs": rounds * args.epochs,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "model": "TabularNet(64, 32), dropout 0.1",
        "optimizer": "Adam lr=1e-3",
        "pods": ["census-income-demo", "census-income-yaml-demo"],
        "quick": args.quick,
        "train_rows": len(train),
        "test_rows": len(test),
    }
    write_results(
        "census_e2e", params=params, results=results, markdown=md, plot=fig, started=started
    )
    print(md)


if __name__ == "__main__":
    main()
