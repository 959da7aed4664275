"""PySyft's first federated-learning tutorial, in fedplug: a linear regressor (your own
``torch.nn.Module``) trained by federated averaging on two pods' data, then scored.

PySyft's tutorial sends an ``nn.Linear`` to two virtual workers holding parts of a
dataset, trains it there with SGD and a mean squared error, and averages. Here the two
workers are pods held in memory (``fedplug.Pod`` objects over the census-income rows),
the target is ``hours-per-week``, and the network is ``nets:Linear``, which each pod's
owner allows in ``policy.accepted_modules``:

    python examples/torch_module/linear_regression.py [--rounds 5] [--secure]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `nets` is "installed" here

from fedplug import (  # noqa: E402
    DataFrameSource,
    DataStructure,
    FedAvg,
    Optimizer,
    Pod,
    PodPolicy,
    SecureAggregator,
    TorchModule,
)
from fedplug.data import PercentageSplit, load_adult  # noqa: E402

MODULE = "nets:Linear"


def pods(rows: int) -> list[Pod]:
    """Two pods over disjoint census rows, each allowing the example's network."""
    adult = load_adult("train").sample(n=2 * rows, random_state=0)
    policy = PodPolicy(accepted_modules=(MODULE,))
    return [
        Pod(
            name=f"worker-{name}",
            datasource=DataFrameSource(part.reset_index(drop=True)),
            schema_options={"force_stypes": {"education-num": "continuous"}},
            split=PercentageSplit(validation=0.2, seed=1),
            policy=policy,
        )
        for name, part in (("bob", adult.iloc[:rows]), ("alice", adult.iloc[rows:]))
    ]


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rows", type=int, default=4000)
    parser.add_argument("--secure", action="store_true")
    args = parser.parse_args(argv)

    model = TorchModule(
        DataStructure(
            target="hours-per-week",
            selected_cols=["age", "education-num", "sex", "marital-status"],
        ),
        module=MODULE,
        loss="mse",
        rounds=args.rounds,
        optimizer=Optimizer("SGD", {"lr": 0.05}),
        batch_size=32,
    )
    aggregator = SecureAggregator() if args.secure else FedAvg()
    history = model.fit(pods(args.rows), aggregator)
    test = load_adult("test").head(2000)
    metrics = model.evaluate(test)
    baseline = float(abs(test["hours-per-week"] - test["hours-per-week"].mean()).mean())
    print(f"validation per round: {[round(h['evaluate']['rmse'], 3) for h in history]}")
    print(
        f"adult.test: RMSE {metrics['rmse']:.2f} h, MAE {metrics['mae']:.2f} h, "
        f"R^2 {metrics['r2']:.3f} (predicting the mean: MAE {baseline:.2f} h)"
    )
    return metrics


if __name__ == "__main__":
    main()
