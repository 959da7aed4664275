"""``fedplug run``: compose the task from Hydra configs, train, and write the outputs."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape

from fedplug._errors import ConfigError, FedplugError
from fedplug._task_builder import conf_dir

console = Console()
err = Console(stderr=True)
#: The run's own record in run.log (conf/hydra/job_logging/fedplug.yaml): what the
#: terminal shows, progress and the error, in the file only.
log = logging.getLogger("fedplug.run")
#: Hydra's shell completion registers its script for the last word of the command
#: ("run"), so Tab breaks every other program named run; fedplug does not offer it.
SHELL_COMPLETION_FLAGS = ("-sc", "--shell-completion")

__all__ = ["conf_dir", "run_hydra", "run_from_config"]


def run_hydra(argv: Sequence[str]) -> int:
    import hydra
    from hydra.errors import HydraException
    from omegaconf import DictConfig
    from omegaconf.errors import OmegaConfBaseException

    from fedplug._config_checks import explain_compose_error
    from fedplug._federation import expand_federation

    refused = [a for a in argv if a.split("=", 1)[0] in SHELL_COMPLETION_FLAGS]
    if refused:
        raise ConfigError(
            f"`fedplug run {refused[0]}`: shell completion is not available for fedplug (Hydra's "
            "script would register itself for every command named `run`). See the config "
            "groups and their options with `fedplug run --help`, and the composed config "
            "with `fedplug run --cfg job`."
        )
    status = {"code": 0}

    @hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")
    def _main(cfg: DictConfig) -> float | None:
        try:
            return run_from_config(cfg)
        except FedplugError as exc:
            log.error("%s", exc)
            # escape: a message naming e.g. pods.identifiers=[a,b] is text, not markup
            err.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            status["code"] = 1
            return None  # a sweep's other runs go on; the exit code says it failed

    argv = expand_federation(argv, conf_dir())  # federation=CONNECTION: on that SuperLink
    saved, saved_full_error = sys.argv, os.environ.get("HYDRA_FULL_ERROR")
    sys.argv = ["fedplug run", *argv]
    # Hydra then raises a composition error instead of printing its own report, so that
    # fedplug can name the group's valid keys.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        with _restored_logging():
            _main()
    except (HydraException, OmegaConfBaseException) as exc:
        raise explain_compose_error(exc, argv) from exc
    finally:
        sys.argv = saved
        if saved_full_error is None:
            os.environ.pop("HYDRA_FULL_ERROR", None)
        else:
            os.environ["HYDRA_FULL_ERROR"] = saved_full_error
    return status["code"]


@contextmanager
def _restored_logging() -> Iterator[None]:
    """Undo the job logging Hydra sets up (run.log, the console handler) once the run is
    over, so that a caller in the same process (a notebook, a test) keeps its own."""
    loggers = [logging.getLogger(name) for name in ("", "fedplug", "fedplug.run")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    try:
        yield
    finally:
        for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
            for handler in lg.handlers:
                if handler not in handlers:
                    handler.close()
            lg.handlers[:] = handlers
            lg.setLevel(level)
            lg.propagate = propagate


def run_from_config(cfg: Any) -> float | None:
    """Run one composed config; returns the final validation accuracy (for sweepers)."""
    import time

    from hydra.core.hydra_config import HydraConfig

    from fedplug._task_builder import check_aggregator, objects_from_config, refuse_early

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    refuse_early(cfg)  # the pods' policies, before torch loads: a refusal in seconds
    from fedplug._api import build_strategy

    from ._outputs import print_results, print_table, results_table, write_outputs

    run = objects_from_config(cfg)
    model, fed = run.model, run.federation
    # What fit checks too, here before any file is written or pod read.
    model.check_params()
    check_aggregator(run.aggregator)
    build_strategy(
        run.strategy_ref, len(run.pods["identifiers"]), run.strategy_params, run.aggregator
    )
    connection = fed.get("connection")  # federation=superlink: run on that SuperLink
    if not connection:
        _ensure_demo(run.pods, run.pod_dirs)
    header = (
        f"{type(model).__name__} on pods {run.pods['identifiers']} | "
        f"aggregator={run.aggregator_ref} strategy={run.strategy_ref} "
        f"rounds={model.progress_total()} "
        f"seed={cfg.seed}"
    )
    console.print(
        f"[bold]fedplug run[/]: {escape(header)}\noutputs: {escape(str(out_dir))}",
        highlight=False,
    )
    log.info("fedplug run: %s; outputs: %s", header, out_dir)
    started = time.monotonic()
    history = model.fit(
        run.pods["identifiers"],
        aggregator=run.aggregator,
        strategy=run.strategy_ref,
        strategy_params=run.strategy_params,
        pod_dirs=None if connection else run.pod_dirs,
        round_timeout=float(fed.get("round_timeout", 300.0)),
        cpus_per_pod=float(fed.get("cpus_per_pod", 1.0)),
        backend=str(fed.get("backend", "auto")),
        # A line per round always; federation.verbose adds Flower's own log.
        verbose=2 if fed.get("verbose", False) else 1,
        on_round=None if connection else _log_round(model.progress_total()),
        federation=fed if connection else None,
    )
    seconds = time.monotonic() - started
    if not model.trained:  # a remote SuperLink keeps the outputs (fit's warning says where)
        print_table(console, results_table(history))
        return None
    write_outputs(out_dir, model, history, seconds, run.config)
    print_results(console, history, seconds, out_dir)
    log.info("done in %.1fs; model, history and plot in %s", seconds, out_dir)
    final = history[-1]["evaluate"] if history else {}
    return float(final.get("accuracy", 0.0)) if final else None


def _log_round(rounds: int):  # noqa: ANN202
    """Each round's line (as printed) into run.log."""
    from fedplug._flower._progress import round_line

    def on_round(server_round: int, train: dict, evaluate: dict) -> None:
        log.info("%s", round_line(server_round, rounds, train, evaluate))

    return on_round


def _ensure_demo(pods: dict, pod_dirs: list[Path]) -> None:
    """Write the tutorial pods on first use, so `fedplug run` works on a fresh clone.

    Every pod name is checked first: one that is neither found nor a demo pod is an error,
    and nothing is written. Only missing demo files are written; an existing file (its
    user may have edited it) is never replaced.
    """
    from fedplug._errors import PodConfigError
    from fedplug._validation import quoted
    from fedplug.data import resolve_pod
    from fedplug.data._census import DEMO_POD, DEMO_YAML_POD, write_census_demo_files

    demo = pods.get("create_demo")
    missing = []
    for identifier in pods["identifiers"]:
        try:
            resolve_pod(identifier, pod_dirs or None)
        except PodConfigError as exc:
            if not demo:
                raise
            if identifier not in (DEMO_POD, DEMO_YAML_POD):
                raise PodConfigError(
                    f"{exc}. Nothing was written: `fedplug run` writes only the {demo} demo's "
                    f"pods ({quoted([DEMO_POD, DEMO_YAML_POD])}) when they are missing."
                ) from exc
            missing.append(identifier)
    if not missing:
        return
    target = pod_dirs[0] if pod_dirs else Path("pods")
    done = write_census_demo_files(target)
    console.print(f"wrote the {demo} demo pods to {target}/ (for {quoted(missing)})")
    log.info("wrote %s; kept %s", [str(p) for p in done.written], [str(p) for p in done.kept])
    if done.kept:
        console.print(
            f"  kept the existing {', '.join(p.name for p in done.kept)} (never overwritten)",
            highlight=False,
        )
