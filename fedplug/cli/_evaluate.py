"""``fedplug evaluate MODEL DATA``: score a saved model on a labelled file."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from fedplug._errors import ConfigError

from ._tables import print_table

console = Console()


def evaluate(model_path: str, data_path: str) -> int:
    from fedplug._model_base import load_model
    from fedplug.data import CSVSource, ParquetSource

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
