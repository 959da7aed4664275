"""Benchmark 1: one aggregation round on the Flower Simulation Engine.

Plain FedAvg vs fedplug secure aggregation vs Flower SecAgg+, K pods, D parameters; pods
return a fixed update so the protocol is what is measured. Each configuration runs in a
fresh process (a fresh simulation, a clean peak-memory counter). Per configuration:
median seconds per round over the timed rounds (round 1 warms up and is left out; the
last round also measures upload sizes and is left out), server peak memory added during
the rounds (ru_maxrss of the ServerApp process, which holds the in-memory SuperLink),
bytes uploaded per pod per round (serialized records), and the median pod handler time.
A separate single-process measurement splits a pod's protocol time into encode, masks
(keystream expansion and field sums) and packing, next to the bare AES-256-CTR cost.

    python benchmarks/aggregation_round.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import md_table, md_targets, median, target, write_results  # noqa: E402

MODES = ("plain", "secure", "secure-abort", "secure-all", "secure-harary", "secaggplus")
LABELS = {
    "plain": "plain FedAvg",
    "secure": "fedplug secure (recover)",
    "secure-abort": "fedplug secure (abort)",
    "secure-all": "fedplug secure (recover, all pairs)",
    "secure-harary": "fedplug secure (recover, Harary)",
    "secaggplus": "Flower SecAgg+",
}


def pod_breakdown(k: int, d: int, repeats: int = 3) -> dict[str, float]:
    """A pod's protocol steps in one process, in milliseconds (median of ``repeats``).

    The same pipeline as the pod handler: one padded buffer is encoded, masked and packed
    in place.
    """
    from fedplug.secagg import FixedPointCodec
    from fedplug.secagg._field import pack, padded_size
    from fedplug.secagg._masks import _mask_cipher, apply_masks

    rng = np.random.default_rng(0)
    trained = (rng.standard_normal(d) * 0.01).astype(np.float32)
    current = np.zeros(d, dtype=np.float32)
    codec = FixedPointCodec(8.0, 1_000_000, k)
    # Double masking (dropout="recover"): K - 1 pair masks and the pod's self-mask.
    masks = [(bytes([i + 1]) * 32, i % 2 == 0) for i in range(k)]
    times: dict[str, list[float]] = {"encode": [], "masks": [], "pack": [], "aes_floor": []}
    zeros = bytes(8 * d)
    out = bytearray(8 * d + 15)
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        buffer = np.zeros(padded_size(d + 2), dtype=np.float64)
        np.subtract(trained, current, out=buffer[:d], dtype=np.float64)
        codec.encode_weighted(buffer[: d + 2], 1000, out=buffer[: d + 2].view(np.uint64))
        encoded = buffer.view(np.uint64)
        t1 = time.perf_counter()
        apply_masks(
            encoded[: d + 2],
            masks,
            run_id="bench",
            round=1,
            attempt=0,
            participants_digest=b"p" * 32,
        )
        t2 = time.perf_counter()
        pack(encoded, in_place=True)
        t3 = time.perf_counter()
        for secret, _ in masks:  # the keystream alone: what AES-256-CTR costs for these masks
            _mask_cipher(secret, "bench", 1, 0, b"p" * 32, 2**61 - 1).update_into(zeros, out)
        t4 = time.perf_counter()
        for key, value in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            times[key].append(value * 1e3)
    return {key: median(v[1:]) for key, v in times.items()}


def run_config(mode: str, k: int, d: int, rounds: int, timeout: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        path = f.name
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        mode,
        str(k),
        str(d),
        str(rounds),
        path,
    ]
    start = time.time()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, "PYTHONWARNINGS": "ignore"},
        )
        data = json.loads(Path(path).read_text()) if Path(path).stat().st_size else {}
        if not data:
            data = {"error": f"worker exited {proc.returncode}: {proc.stderr[-2000:]}"}
    except subprocess.TimeoutExpired:
        data = {"error": f"timed out after {timeout:.0f}s"}
    finally:
        Path(path).unlink(missing_ok=True)
    data["process_s"] = time.time() - start
    return data


def summarize(mode: str, k: int, d: int, raw: dict) -> dict:
    timed = raw.get("round_s", [])[1:-1] or raw.get("round_s", [])
    pods = raw.get("pod_ms", [])[1:-1] or raw.get("pod_ms", [])
    return {
        "mode": mode,
        "pods": k,
        "params": d,
        "round_s": median(timed),
        "round_s_all": raw.get("round_s", []),
        "server_aggregate_s": median(raw.get("server_s", [])[1:-1] or raw.get("server_s", [])),
        "pod_handler_ms": median(pods) if pods else float("nan"),
        "setup_s": raw.get("setup_s", 0.0),
        "upload_bytes_per_pod": median(raw.get("upload_bytes", [])),
        "server_peak_mib_added": raw.get("rss_peak_mib", 0.0) - raw.get("rss_before_mib", 0.0),
        "server_peak_mib": raw.get("rss_peak_mib", 0.0),
        "process_s": raw.get("process_s"),
        "error": raw.get("error"),
    }


def worker(mode: str, k: int, d: int, rounds: int, path: str) -> None:
    from _apps import run_one

    out = run_one(mode, k, d, rounds)
    Path(path).write_text(json.dumps(asdict(out)))


def run(
    name: str,
    pods: list[int],
    dims: list[int],
    modes: list[str],
    rounds: int,
    timeout: float,
    breakdown: bool,
    targets: dict,
) -> None:
    started = time.time()
    rows: list[dict] = []
    for d in dims:
        for k in pods:
            for mode in modes:
                print(f"{mode} K={k} D={d} ...", flush=True)
                row = summarize(mode, k, d, run_config(mode, k, d, rounds, timeout))
                if breakdown and mode == "secure":
                    row["pod_protocol_ms"] = pod_breakdown(k, d)
                rows.append(row)
                print(
                    f"  round {row['round_s']:.3f}s  upload {row['upload_bytes_per_pod']:.0f}B"
                    f"  {row['error'] or ''}",
                    flush=True,
                )
    by = {(r["mode"], r["pods"], r["params"]): r for r in rows}
    table_rows, ratios = [], []
    for d in dims:
        for k in pods:
            plain = by.get(("plain", k, d))
            for mode in modes:
                r = by[(mode, k, d)]
                upload_ratio = (
                    r["upload_bytes_per_pod"] / plain["upload_bytes_per_pod"]
                    if plain
                    else float("nan")
                )
                pp = r.get("pod_protocol_ms", {})
                table_rows.append(
                    [
                        k,
                        f"{d:,}",
                        LABELS[mode],
                        r["round_s"],
                        r["round_s"] / plain["round_s"] if plain else float("nan"),
                        r["server_peak_mib_added"],
                        r["upload_bytes_per_pod"] / 1e6,
                        upload_ratio,
                        r["pod_handler_ms"],
                        (
                            f"{pp['encode']:.1f} / {pp['masks']:.1f} / {pp['pack']:.1f} "
                            f"(AES {pp['aes_floor']:.1f})"
                        )
                        if pp
                        else "",
                        "FAILED: " + r["error"].splitlines()[0][:60] if r["error"] else "",
                    ]
                )
            if ("secure", k, d) in by and plain:
                s = by[("secure", k, d)]
                entry = {
                    "pods": k,
                    "params": d,
                    "secure_over_plain": s["round_s"] / plain["round_s"],
                    "upload_over_plain": s["upload_bytes_per_pod"] / plain["upload_bytes_per_pod"],
                }
                pp = s.get("pod_protocol_ms") or {}
                if pp:
                    entry["masks_over_keystream"] = pp["masks"] / pp["aes_floor"]
                if ("secaggplus", k, d) in by:
                    entry["secaggplus_over_secure"] = (
                        by[("secaggplus", k, d)]["round_s"] / s["round_s"]
                    )
                ratios.append(entry)
            for variant in ("secure-abort", "secure-all", "secure-harary"):
                if (variant, k, d) in by and plain:
                    ratios.append(
                        {
                            "pods": k,
                            "params": d,
                            "variant": variant,
                            "secure_over_plain": by[(variant, k, d)]["round_s"] / plain["round_s"],
                            "upload_over_plain": by[(variant, k, d)]["upload_bytes_per_pod"]
                            / plain["upload_bytes_per_pod"],
                        }
                    )
    md = md_table(
        [
            "K",
            "D",
            "aggregation",
            "s / round",
            "x plain",
            "server peak MiB (added)",
            "upload MB / pod",
            "upload x plain",
            "pod handler ms",
            "pod encode / masks / pack ms (AES floor)",
            "note",
        ],
        table_rows,
    )
    md += "\n\nRatios (same run):\n\n" + md_table(
        ["K", "D", "secure", "secure / plain", "SecAgg+ / secure", "upload secure / plain"],
        [
            [
                e["pods"],
                f"{e['params']:,}",
                LABELS[e.get("variant", "secure")],
                e["secure_over_plain"],
                e.get("secaggplus_over_secure", float("nan")),
                e["upload_over_plain"],
            ]
            for e in ratios
        ],
    )
    checks = {}
    for key, (k, d, field, op, bound, *rest) in targets.items():
        variant = rest[0] if rest else "secure"
        e = next(
            (
                e
                for e in ratios
                if e["pods"] == k and e["params"] == d and e.get("variant", "secure") == variant
            ),
            None,
        )
        if e and field in e:
            checks[key] = target(e[field], op, bound)
    md += md_targets(checks)
    md += (
        "\n\nSimulated pods share this machine's cores (2 Ray workers, 1 CPU each), so pod "
        "work adds up across pods. Round times include Flower's in-memory SuperLink polling "
        "(0.1 s on the server and on the simulation's message pump). Pod handler = fedplug's "
        "real pod code per message (encode + mask + pack for secure). SecAgg+ per-stage pod "
        "times are not instrumented. Key setup (fedplug, once per run) is in the JSON "
        "(`setup_s`); SecAgg+ does its key setup inside every round.\n"
    )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(dims), figsize=(5 * len(dims), 3.4), squeeze=False)
    for ax, d in zip(axes[0], dims, strict=True):
        width = 0.8 / len(modes)
        for i, mode in enumerate(modes):
            ys = [by[(mode, k, d)]["round_s"] for k in pods]
            ax.bar(np.arange(len(pods)) + i * width, ys, width, label=LABELS[mode])
        ax.set_xticks(np.arange(len(pods)) + width * (len(modes) - 1) / 2, [f"K={k}" for k in pods])
        ax.set_title(f"D = {d:,}")
        ax.set_ylabel("seconds / round (median)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    params = {
        "pods": pods,
        "params": dims,
        "modes": modes,
        "rounds": rounds,
        "timed_rounds": "2..rounds-1",
        "num_examples_per_pod": 1000,
        "secure": "SecureAggregator() defaults (q=2^61-1, clip 8, max_weight 1e6)",
        "secaggplus": "SecAggPlusWorkflow(num_shares=K, reconstruction_threshold=K-1) "
        "(K=2: num_shares=1.0, threshold=0.5), legacy FedAvg",
        "client_resources": {"num_cpus": 1.0},
    }
    write_results(
        name,
        params=params,
        results={"rows": rows, "ratios": ratios, "checks": checks},
        markdown=md,
        plot=fig,
        started=started,
    )
    print(md)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        mode, k, d, rounds, path = sys.argv[2:7]
        worker(mode, int(k), int(d), int(rounds), path)
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K=3, D=100k, 4 rounds")
    parser.add_argument("--pods", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--params", type=int, nargs="+", default=[100_000, 1_000_000])
    default_modes = ["plain", "secure", "secure-abort", "secaggplus"]
    parser.add_argument("--modes", nargs="+", default=default_modes, choices=MODES)
    parser.add_argument("--rounds", type=int, default=8, help="incl. warm-up and last round")
    parser.add_argument("--timeout", type=float, default=300.0, help="per configuration")
    args = parser.parse_args()
    if args.quick:
        args.pods, args.params, args.rounds = [3], [100_000], 4
    targets = {
        "secure_over_plain@K10,D1M": (10, 1_000_000, "secure_over_plain", "<=", 2.0),
        "masks_over_keystream@K10,D1M": (10, 1_000_000, "masks_over_keystream", "<=", 2.5),
        "secaggplus_over_secure@K10,D1M": (10, 1_000_000, "secaggplus_over_secure", ">=", 2.5),
        "upload_over_plain@K10,D1M": (10, 1_000_000, "upload_over_plain", "<=", 2.0),
    }
    run(
        "aggregation_round",
        args.pods,
        args.params,
        args.modes,
        args.rounds,
        args.timeout,
        True,
        targets,
    )


if __name__ == "__main__":
    main()
