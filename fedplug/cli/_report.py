"""``fedplug report SWEEP_DIR``: compare the runs of a sweep (table, plot, JSON)."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from fedplug._errors import FedplugError

from ._tables import print_table

console = Console()

METRICS = ("accuracy", "auc", "f1", "loss")
SWEEP_EXAMPLE = "fedplug run -m aggregator=fedavg,secure seed=0,1,2"
#: The log `fedplug run` writes into each run's directory, and its own logger there
#: (conf/hydra/job_logging/fedplug.yaml).
RUN_LOG = "run.log"
RUN_LOGGER = "fedplug.run"


@dataclass
class RunSummary:
    """One run of a sweep: its overrides and final metrics."""

    dir: str
    overrides: list[str]
    status: str = "ok"
    final: dict[str, float] = field(default_factory=dict)
    rounds: int = 0
    seconds: float | None = None
    history: list[dict] = field(default_factory=list)

    label: str = ""

    def settings(self) -> dict[str, str]:
        out = {}
        for item in self.overrides:
            key, _, value = item.partition("=")
            out[key.lstrip("+~")] = value
        return out


def _job_dirs(root: Path) -> list[Path]:
    """Every Hydra job directory under ``root``: it holds history.json or .hydra/."""
    dirs = {p.parent for p in root.rglob("history.json")}
    dirs |= {p.parent.parent for p in root.rglob(".hydra/overrides.yaml")}
    return sorted(dirs, key=_job_order)


def _job_order(path: Path) -> tuple:
    # Hydra names sweep jobs "<num>_<overrides>": order by job number, then by path.
    head = path.name.split("_", 1)[0]
    return (int(head) if head.isdigit() else math.inf, str(path))


def _overrides(job: Path) -> list[str]:
    import yaml

    path = job / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    try:
        value = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [str(v) for v in value] if isinstance(value, list) else []


def read_run(root: Path, job: Path) -> RunSummary:
    rel = str(job.relative_to(root)) if job != root else "."
    run = RunSummary(dir=rel, overrides=_overrides(job))
    path = job / "history.json"
    if not path.is_file():
        error = logged_error(job / RUN_LOG)
        run.status = (
            f"failed: {error}"
            if error
            else f"no history.json (the run failed or is still running; see its {RUN_LOG})"
        )
        return run
    try:
        data = json.loads(path.read_text())
        history = list(data["history"])
        run.seconds = float(data["seconds"]) if data.get("seconds") is not None else None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        run.status = f"unreadable history.json: {exc}"
        return run
    run.history = history
    run.rounds = len(history)
    if history:
        final = history[-1].get("evaluate") or {}
        run.final = {k: float(v) for k, v in final.items() if isinstance(v, (int, float))}
    return run


def logged_error(log: Path) -> str | None:
    """The error a failed run wrote into its run.log (the message it printed), if any."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return None
    marker = f" ERROR   {RUN_LOGGER}: "
    errors = [line.split(marker, 1)[1] for line in lines if marker in line]
    return errors[-1] if errors else None


def read_sweep(sweep_dir: str | Path) -> list[RunSummary]:
    """Every run under a sweep (or single run) directory; error if there is none."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise FedplugError(
            f"sweep directory {str(root)!r} does not exist; pass the directory a sweep wrote "
            f"(e.g. multirun/DATE/TIME after `{SWEEP_EXAMPLE}`)."
        )
    runs = [read_run(root, job) for job in _job_dirs(root)]
    if not runs:
        raise FedplugError(
            f"no runs found in {str(root)!r}: no history.json or .hydra/overrides.yaml in it or "
            f"its subdirectories. Run a sweep first, e.g. `{SWEEP_EXAMPLE}`, and pass the "
            "directory it wrote (multirun/DATE/TIME by default)."
        )
    return runs


def _varying(runs: list[RunSummary]) -> list[str]:
    keys: dict[str, set[str]] = {}
    for run in runs:
        for key, value in run.settings().items():
            keys.setdefault(key, set()).add(value)
    for run in runs:  # a key missing from some runs varies too
        for key in keys:
            if key not in run.settings():
                keys[key].add("<default>")
    return [k for k, values in keys.items() if len(values) > 1]


def _groups(runs: list[RunSummary], varying: list[str]) -> list[dict[str, Any]]:
    """Runs that differ only by seed, summarised as mean and spread per metric."""
    by = [k for k in varying if k != "seed"]
    if "seed" not in varying:
        return []
    grouped: dict[tuple, list[RunSummary]] = {}
    for run in runs:
        if run.status == "ok":
            settings = run.settings()
            grouped.setdefault(tuple(settings.get(k, "<default>") for k in by), []).append(run)
    out = []
    for key, members in grouped.items():
        summary: dict[str, Any] = {"setting": dict(zip(by, key, strict=True)), "runs": len(members)}
        for metric in (*METRICS, "seconds"):
            found = [(r.seconds if metric == "seconds" else r.final.get(metric)) for r in members]
            values = [v for v in found if v is not None]
            if values:
                summary[metric] = {
                    "mean": statistics.fmean(values),
                    "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                }
        out.append(summary)
    return out


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def runs_table(runs: list[RunSummary], sweep_dir: Path) -> Table:
    table = Table(title=f"sweep {sweep_dir}: {len(runs)} run(s), final validation metrics")
    table.add_column("#", justify="right")
    table.add_column("overrides")
    for metric in METRICS:
        table.add_column(metric, justify="right")
    table.add_column("rounds", justify="right")
    table.add_column("wall time (s)", justify="right")
    table.add_column("status")
    for i, run in enumerate(runs):
        if run.status != "ok":
            blank = ["-"] * (len(METRICS) + 2)
            table.add_row(str(i), Text(run.label), *blank, Text(run.status, style="red"))
            continue
        table.add_row(
            str(i),
            Text(run.label),  # plain text: overrides hold [brackets]
            *[_fmt(run.final.get(m)) for m in METRICS],
            str(run.rounds),
            _fmt(run.seconds, 1),
            "ok",
        )
    return table


def groups_table(groups: list[dict[str, Any]]) -> Table:
    table = Table(title="by setting, over seeds (mean ± std)")
    table.add_column("setting")
    table.add_column("runs", justify="right")
    for metric in (*METRICS, "seconds"):
        table.add_column("wall time (s)" if metric == "seconds" else metric, justify="right")
    for group in groups:
        cells = []
        for metric in (*METRICS, "seconds"):
            stats = group.get(metric)
            digits = 1 if metric == "seconds" else 4
            cells.append(
                "-" if stats is None else f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"
            )
        setting = " ".join(f"{k}={v}" for k, v in group["setting"].items()) or "(all)"
        table.add_row(Text(setting), str(group["runs"]), *cells)
    return table


def plot_comparison(runs: list[RunSummary], path: Path) -> Path:
    """Validation accuracy per round for every run, and the final metrics side by side."""
    import matplotlib.pyplot as plt

    fig = comparison_figure(runs)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def comparison_figure(runs: list[RunSummary]) -> Any:
    """The figure of comparison.png; a run without results is shown as failed, not left out."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for i, run in enumerate(runs):
        label = f"#{i} {run.label}"[:60]
        if run.status == "ok" and run.history:
            rounds = [h.get("round") for h in run.history]
            values = [(h.get("evaluate") or {}).get("accuracy") for h in run.history]
            left.plot(rounds, values, marker="o", label=label)
        else:  # in the legend only, marked
            left.plot([], [], marker="x", linestyle="none", color="red", label=f"{label} (failed)")
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlabel("round")
    left.set_ylabel("validation accuracy")
    left.set_title("accuracy per round")
    if runs:
        left.legend(fontsize="small")
    width = 0.8 / len(METRICS[:3])
    ok = [run.status == "ok" for run in runs]
    for j, metric in enumerate(METRICS[:3]):
        right.bar(
            [i + j * width for i, good in enumerate(ok) if good],
            [r.final.get(metric, 0.0) for r, good in zip(runs, ok, strict=True) if good],
            width=width,
            label=metric,
        )
    for i, good in enumerate(ok):
        if not good:
            right.text(
                i + width, 0.02, "failed", rotation=90, ha="center", va="bottom", color="red"
            )
    right.set_xticks([i + width for i in range(len(runs))])
    right.set_xticklabels([f"#{i}" + ("" if good else " (failed)") for i, good in enumerate(ok)])
    right.set_ylim(0.0, 1.0)
    right.set_title("final validation metrics by run")
    right.legend(fontsize="small")
    failed = ok.count(False)
    fig.suptitle(f"fedplug sweep: {len(runs)} run(s)" + (f", {failed} failed" if failed else ""))
    fig.tight_layout()
    return fig


def report(sweep_dir: str) -> int:
    """Print the comparison and write comparison.png and comparison.json into the sweep dir."""
    root = Path(sweep_dir)
    runs = read_sweep(root)
    varying = _varying(runs)
    for run in runs:  # name each run by what sets it apart
        settings = run.settings()
        shown = [f"{k}={settings.get(k, '<default>')}" for k in varying]
        run.label = " ".join(shown) or " ".join(run.overrides) or run.dir
    common = sorted(
        {o for r in runs for o in r.overrides}
        - {o for r in runs for o in r.overrides if o.partition("=")[0].lstrip("+~") in varying}
    )
    groups = _groups(runs, varying)
    print_table(console, runs_table(runs, root))
    if common and len(runs) > 1:
        console.print(f"common to every run: {' '.join(common)}", highlight=False, markup=False)
    if groups and any(g["runs"] > 1 for g in groups):
        print_table(console, groups_table(groups))
    payload = {
        "sweep_dir": str(root.resolve()),
        "varying": varying,
        "common": common,
        "runs": [{k: v for k, v in asdict(r).items() if k != "history"} for r in runs],
        "groups": groups,
    }
    try:
        (root / "comparison.json").write_text(json.dumps(payload, indent=2))
        plot_comparison(runs, root / "comparison.png")
    except OSError as exc:
        raise FedplugError(
            f"cannot write the comparison into {str(root)!r}: {exc}. Make the directory "
            "writable, or copy the sweep somewhere writable and report on the copy."
        ) from exc
    failed = [r for r in runs if r.status != "ok"]
    console.print(
        f"{len(runs) - len(failed)} of {len(runs)} run(s) finished; wrote "
        f"{root / 'comparison.png'} and {root / 'comparison.json'}",
        highlight=False,
    )
    return 0
