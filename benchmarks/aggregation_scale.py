"""Benchmark 3: scale, K = 100 simulated pods, D = 100,000: secure / plain per round, with
each pod masking every other pod ("all") and with its Harary-graph neighbours.

python benchmarks/aggregation_scale.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aggregation_round import run  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="K=20, 4 rounds")
    parser.add_argument("--pods", type=int, default=100)
    parser.add_argument("--params", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    k, rounds = (20, 4) if args.quick else (args.pods, args.rounds)
    # The target is at K = 50, D = 100k; other sizes are labelled as what they ran.
    label = f"harary_over_plain@K{k},D{args.params // 1000}k"
    targets = {label: (k, args.params, "secure_over_plain", "<=", 2.0, "secure-harary")}
    modes = ["plain", "secure-harary", "secure-all"]
    run("aggregation_scale", [k], [args.params], modes, rounds, 1200.0, False, targets)


if __name__ == "__main__":
    main()
