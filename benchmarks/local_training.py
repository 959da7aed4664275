"""Benchmark 4: a pod's local training throughput against a bare PyTorch loop.

Same model (the default TabularNet, hidden 64-32), same encoded census-income training
data, same batch size and optimizer (Adam, lr 1e-3), one torch thread (as pods run).
Runs are interleaved and timed in CPU seconds so a busy machine hurts both alike.

    python benchmarks/local_training.py [--quick]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F  # noqa: N812
from _common import md_table, median, write_results

from fedplug.data import Schema, load_adult
from fedplug.learning import (
    DataStructure,
    Optimizer,
    TabularEncoder,
    TabularNetSpec,
    local_feature_moments,
    scaling_from_moments,
    train_local,
)

TARGET = 0.87


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 repeats on a third of the data")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    started = time.time()
    repeats = 2 if args.quick else args.repeats

    frame = load_adult("train")
    if args.quick:
        frame = frame.iloc[: len(frame) // 3]
    schema = Schema.infer(frame)
    resolved = DataStructure(target="TARGET").resolve(schema)
    mean, std = scaling_from_moments(
        local_feature_moments(frame, resolved.continuous), len(resolved.continuous)
    )
    data = TabularEncoder(schema, resolved, mean, std).encode(frame)
    spec = TabularNetSpec.for_columns(schema, resolved, (64, 32), 0.1)
    n, bs = len(data), args.batch_size
    optimizer = Optimizer("Adam", {"lr": 1e-3})

    def bare(net: torch.nn.Module) -> None:
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        net.train()
        perm = torch.randperm(n)
        for i in range(0, n, bs):
            idx = perm[i : i + bs]
            opt.zero_grad()
            F.cross_entropy(net(data.x_cat[idx], data.x_cont[idx]), data.y[idx]).backward()
            opt.step()

    def fedplug_loop(net: torch.nn.Module) -> None:
        train_local(net, data, epochs=1, steps=None, batch_size=bs, optimizer=optimizer, seed=0)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    times: dict[str, list[float]] = {"bare": [], "fedplug": []}
    try:
        for r in range(repeats + 1):  # the first pass warms up allocators and caches
            for name, fn in (("bare", bare), ("fedplug", fedplug_loop)):
                torch.manual_seed(0)
                net = spec.build()
                start = time.process_time()
                fn(net)
                if r:
                    times[name].append(time.process_time() - start)
    finally:
        torch.set_num_threads(threads)
    rows = {k: n / median(v) for k, v in times.items()}
    best = {k: n / min(v) for k, v in times.items()}
    ratio = rows["fedplug"] / rows["bare"]
    results = {
        "rows": n,
        "seconds": times,
        "rows_per_second_median": rows,
        "rows_per_second_best": best,
        "ratio_median": ratio,
        "ratio_best": best["fedplug"] / best["bare"],
        "target": TARGET,
        "met": ratio >= TARGET,
    }
    table = md_table(
        ["loop", "rows/s (median)", "rows/s (best)", "epoch s (median)"],
        [
            ["bare PyTorch", rows["bare"], best["bare"], median(times["bare"])],
            ["fedplug train_local", rows["fedplug"], best["fedplug"], median(times["fedplug"])],
        ],
    )
    md = (
        f"{table}\n\nfedplug / bare = **{ratio:.3f}** (median; "
        f"best-of {results['ratio_best']:.3f});"
        f" target >= {TARGET}: {'met' if results['met'] else 'MISSED'}. {n} rows, batch {bs}, "
        "one torch thread, CPU time, interleaved runs.\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3))
    ax.bar(["bare PyTorch", "fedplug"], [rows["bare"], rows["fedplug"]], color=["grey", "C0"])
    ax.set_ylabel("rows / second (one thread)")
    ax.set_title(f"Local training, ratio {ratio:.3f}")
    params = {
        "batch_size": bs,
        "repeats": repeats,
        "rows": n,
        "model": "TabularNet(64, 32)",
        "optimizer": "Adam lr=1e-3",
        "torch_threads": 1,
        "quick": args.quick,
    }
    write_results(
        "local_training", params=params, results=results, markdown=md, plot=fig, started=started
    )
    print(md)


if __name__ == "__main__":
    main()
