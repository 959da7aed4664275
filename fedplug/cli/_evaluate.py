"""``fedplug evaluate MODEL DATA``: score a saved model on a labelled file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from fedplug._errors import ConfigError

from ._tables import print_table

console = Console()


def evaluate(
    model_path: str,
    data_path: str | None,
    *,
    pods: list[str] | None = None,
    secure: bool = False,
) -> int:
    from fedplug._model_base import load_model
    from fedplug.data import CSVSource, ParquetSource

    if (data_path is None) == (pods is None):
        raise ConfigError(
            "fedplug evaluate takes a model and either a labelled DATA file or --pods POD...: "
            "`fedplug evaluate model.pt test.csv` or `fedplug evaluate model.pt --pods a b`."
        )
    if pods is not None:
        return _evaluate_on_pods(load_model(model_path), model_path, pods, secure)
    assert data_path is not None
    _check_order(model_path, data_path)
    model = load_model(model_path)  # whichever model plugin the file names
    path = Path(data_path)
    if path.suffix == ".parquet":
        frame = ParquetSource(path).load()
    elif path.suffix in (".csv", ".gz"):
        frame = CSVSource(path).load()
    else:
        raise ConfigError(f"{data_path!r}: use a .csv or .parquet file.")
    metrics = model.evaluate(frame)
    table = Table(title=f"{Path(model_path).name} on {path.name} ({len(frame)} rows)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in metrics.items():
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
    print_table(console, table)
    return 0


def _evaluate_on_pods(model: Any, model_path: str, pods: list[str], secure: bool) -> int:
    from fedplug._flower import FedAvg, SecureAggregator

    aggregator = SecureAggregator() if secure else FedAvg()
    metrics = model.evaluate(pod_identifiers=pods, aggregator=aggregator)
    per_pod = dict(model.pod_metrics_)
    keys = list(metrics)
    table = Table(title=f"{Path(model_path).name} on the validation rows of pods {pods}")
    table.add_column("pod")
    for key in keys:
        table.add_column(key, justify="right")
    for pod, values in per_pod.items():
        table.add_row(pod, *[f"{values[k]:.4f}" if k in values else "-" for k in keys])
    label = "all pods (secure)" if secure else "all pods"
    table.add_row(label, *[f"{metrics[k]:.4f}" for k in keys])
    print_table(console, table)
    return 0


DATA_SUFFIXES = (".csv", ".gz", ".parquet")


def _check_order(model_path: str, data_path: str) -> None:
    """Refuse a data file given as the model (the arguments swapped), naming both."""
    model_suffix = Path(model_path).suffix.lower()
    if model_suffix in DATA_SUFFIXES or (
        Path(data_path).suffix.lower() == ".pt" and model_suffix != ".pt"
    ):
        raise ConfigError(
            f"fedplug evaluate takes the model first, then the data: got MODEL={model_path!r} "
            f"and DATA={data_path!r}, which look swapped. Run "
            f"`fedplug evaluate {data_path} {model_path}`."
        )
