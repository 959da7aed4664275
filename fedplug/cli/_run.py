"""``fedplug run``: compose the task from Hydra configs, train, and write the outputs."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Console

from fedplug._errors import ConfigError, FedplugError

console = Console()
err = Console(stderr=True)


def conf_dir() -> Path:
    """Where the Hydra config groups live: $FEDPLUG_CONF_DIR, else the source tree's conf/."""
    if os.environ.get("FEDPLUG_CONF_DIR"):
        return Path(os.environ["FEDPLUG_CONF_DIR"]).resolve()
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(
        "fedplug's Hydra configs (conf/config.yaml) were not found; install fedplug from its "
        "source tree (pip install -e .) or set FEDPLUG_CONF_DIR to a conf/ directory."
    )


def run_hydra(argv: Sequence[str]) -> int:
    import hydra
    from omegaconf import DictConfig

    status = {"code": 0}

    @hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
    def _main(cfg: DictConfig) -> float | None:
        try:
            return run_from_config(cfg)
        except FedplugError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False)
            status["code"] = 1
            if _is_multirun():
                return None  # the other runs of a sweep go on
            sys.exit(1)

    saved = sys.argv
    sys.argv = ["fedplug run", *argv]
    try:
        _main()
    finally:
        sys.argv = saved
    return status["code"]


def _is_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.get().mode == RunMode.MULTIRUN


def run_from_config(cfg: Any) -> float | None:
    """Run one composed config; returns the final validation accuracy (for sweepers)."""
    import time

    from hydra.core.hydra_config import HydraConfig

    from fedplug._task_builder import objects_from_config

    from ._outputs import print_results, write_outputs

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    run = objects_from_config(cfg)
    _ensure_demo(run.pods, run.pod_dirs)
    model, fed = run.model, run.federation
    console.print(
        f"[bold]fedplug run[/]: {type(model).__name__} on pods {run.pods['identifiers']} | "
        f"aggregator={run.aggregator_ref} strategy={run.strategy_ref} "
        f"rounds={model.progress_total()} "
        f"seed={cfg.seed}\noutputs: {out_dir}"
    )
    started = time.monotonic()
    history = model.fit(
        run.pods["identifiers"],
        aggregator=run.aggregator,
        strategy=run.strategy_ref,
        strategy_params=run.strategy_params,
        pod_dirs=run.pod_dirs,
        round_timeout=float(fed.get("round_timeout", 300.0)),
        cpus_per_pod=float(fed.get("cpus_per_pod", 1.0)),
        backend=str(fed.get("backend", "auto")),
        # A line per round always; federation.verbose adds Flower's own log.
        verbose=2 if fed.get("verbose", False) else 1,
    )
    seconds = time.monotonic() - started
    write_outputs(out_dir, model, history, seconds, run.config)
    print_results(console, history, seconds, out_dir)
    final = history[-1]["evaluate"] if history else {}
    return float(final.get("accuracy", 0.0)) if final else None


def _ensure_demo(pods: dict, pod_dirs: list[Path]) -> None:
    """Write the tutorial pods on first use, so `fedplug run` works on a fresh clone."""
    from fedplug._errors import PodConfigError
    from fedplug.data import resolve_pod

    demo = pods.get("create_demo")
    if not demo:
        return
    try:
        for identifier in pods["identifiers"]:
            resolve_pod(identifier, pod_dirs or None)
    except PodConfigError:
        from fedplug.data import write_census_demo

        target = pod_dirs[0] if pod_dirs else Path("pods")
        write_census_demo(target)
        console.print(f"wrote the {demo} demo pods to {target}/")
