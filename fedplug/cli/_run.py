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


def _plain(value: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if value is not None else None


def run_from_config(cfg: Any) -> float | None:
    """Run one composed config; returns the final validation accuracy (for sweepers)."""
    import time

    from hydra.core.hydra_config import HydraConfig

    from fedplug._plugins import load_plugin
    from fedplug.learning import DataStructure, Optimizer

    from ._outputs import print_results, progress_printer, write_outputs

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    pods = _plain(cfg.pods)
    pod_dirs = [Path(d) for d in pods.get("dirs") or []]
    _ensure_demo(pods, pod_dirs)
    model_cfg = _plain(cfg.model)
    model_cls = load_plugin("models", _plugin_ref(model_cfg, "model"))
    optimizer = model_cfg.pop("optimizer", None) or {}
    ds = _plain(cfg.datastructure)
    model = model_cls(
        datastructure=DataStructure(**ds),
        optimizer=Optimizer(optimizer.get("name", "Adam"), optimizer.get("params") or {}),
        seed=int(cfg.seed),
        **_only(model_cfg, model_cls, "model"),
    )
    agg_cfg = _plain(cfg.aggregator)
    agg_ref = _plugin_ref(agg_cfg, "aggregator")
    aggregator = load_plugin("aggregators", agg_ref)(**(agg_cfg.get("params") or {}))
    strat_cfg = _plain(cfg.strategy)
    strat_ref = _plugin_ref(strat_cfg, "strategy")
    fed = _plain(cfg.federation)
    console.print(
        f"[bold]fedplug run[/]: {model_cls.__name__} on pods {pods['identifiers']} | "
        f"aggregator={agg_ref} strategy={strat_ref} rounds={model.rounds} "
        f"seed={cfg.seed}\noutputs: {out_dir}"
    )
    started = time.monotonic()
    history = model.fit(
        pods["identifiers"],
        aggregator=aggregator,
        strategy=strat_ref,
        strategy_params=strat_cfg.get("params") or {},
        pod_dirs=pod_dirs,
        round_timeout=float(fed.get("round_timeout", 300.0)),
        cpus_per_pod=float(fed.get("cpus_per_pod", 1.0)),
        verbose=bool(fed.get("verbose", False)),
        on_round=progress_printer(console, model.rounds),
    )
    seconds = time.monotonic() - started
    write_outputs(out_dir, model, history, seconds, _plain(cfg))
    print_results(console, history, seconds, out_dir)
    final = history[-1]["evaluate"] if history else {}
    return float(final.get("accuracy", 0.0)) if final else None


def _plugin_ref(group_cfg: dict, group: str) -> str:
    """Pop a group's plugin reference: an entry-point ``name`` or a ``_target_`` path."""
    name, target = group_cfg.pop("name", None), group_cfg.pop("_target_", None)
    if (name is None) == (target is None):
        raise ConfigError(
            f"the {group} config must give exactly one of `name` (a plugin name, see "
            f"`fedplug plugins`) and `_target_` (an import path package.module:attribute); "
            f"got name={name!r}, _target_={target!r}. Remove one, e.g. ~{group}.name."
        )
    return str(name if name is not None else target)


def _only(params: dict, cls: type, what: str) -> dict:
    import inspect

    valid = set(inspect.signature(cls).parameters)
    unknown = sorted(set(params) - valid)
    if unknown:
        raise ConfigError(
            f"{what} config has unknown key(s) {unknown}; {cls.__name__} takes {sorted(valid)}."
        )
    return params


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
