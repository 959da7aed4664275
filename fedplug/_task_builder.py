"""From a composed Hydra config to a runnable plan: shared by every way of running a task.

``fedplug run`` (simulation), ``flwr run`` (a real SuperLink, :mod:`fedplug._flower.app`)
and ``TabularClassifier.fit`` build the same objects through these functions, so the
same config gives the same task whichever way it runs.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from fedplug._errors import ConfigError, FedplugError
from fedplug._validation import check_known_keys, quoted

if TYPE_CHECKING:  # imported lazily below: they pull in torch and Flower
    from fedplug._flower import Aggregator, RunPlan, RunResult
    from fedplug._flower._wire import PodInfo
    from fedplug._model_base import Model
    from fedplug.data import Schema
    from fedplug.learning import TrainingTask


@dataclass
class ComposedRun:
    """The objects a composed config describes, before any pod is contacted."""

    model: Any  # a model plugin, e.g. TabularClassifier
    aggregator: Aggregator
    aggregator_ref: str
    strategy_ref: str
    strategy_params: dict[str, Any]
    pods: dict[str, Any]  # the ``pods`` group: identifiers, dirs, create_demo
    pod_dirs: list[Path]
    federation: dict[str, Any]
    config: dict[str, Any]  # the whole composed config, resolved, for the outputs


def conf_dir() -> Path:
    """Where the Hydra config groups live: $FEDPLUG_CONF_DIR, else the source tree's conf/."""
    if os.environ.get("FEDPLUG_CONF_DIR"):
        return Path(os.environ["FEDPLUG_CONF_DIR"]).resolve()
    here = Path(__file__).resolve().parent
    # A wheel ships the configs inside the package; a source checkout keeps them beside it.
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise ConfigError(
        "fedplug's Hydra configs (conf/config.yaml) were not found; install fedplug from its "
        "source tree (pip install -e .) or set FEDPLUG_CONF_DIR to a conf/ directory."
    )


def compose_config(overrides: Sequence[str], config_dir: Path | None = None) -> Any:
    """Compose ``config.yaml`` with Hydra overrides, as ``fedplug run OVERRIDES`` does.

    Unlike ``@hydra.main`` this neither changes directory nor creates an output
    directory; the caller decides where outputs go.
    """
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from fedplug._config_checks import explain_compose_error

    directory = Path(config_dir) if config_dir is not None else conf_dir()
    try:
        with initialize_config_dir(config_dir=str(directory.resolve()), version_base="1.3"):
            return compose("config", overrides=list(overrides))
    except (HydraException, OmegaConfBaseException) as exc:
        raise explain_compose_error(exc, list(overrides)) from exc


def plain(value: Any) -> Any:
    """A resolved plain container from an OmegaConf node (``None`` stays ``None``)."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(value, resolve=True) if value is not None else None


def plugin_ref(group_cfg: dict, group: str) -> str:
    """Pop a group's plugin reference: an entry-point ``name`` or a ``_target_`` path."""
    name, target = group_cfg.pop("name", None), group_cfg.pop("_target_", None)
    if (name is None) == (target is None):
        raise ConfigError(
            f"the {group} config must give exactly one of `name` (a plugin name, see "
            f"`fedplug plugins`) and `_target_` (an import path package.module:attribute); "
            f"got name={name!r}, _target_={target!r}. Remove one, e.g. ~{group}.name."
        )
    return str(name if name is not None else target)


def parameter_names(cls: type) -> list[str]:
    """The keyword parameters ``cls(...)`` takes, through ``**kwargs`` passed to its bases.

    A subclass that adds a parameter and forwards ``**kwargs`` to its base takes its own
    parameters and the base's; ``args`` and ``kwargs`` themselves are not parameters.
    """
    names: list[str] = []
    for klass in getattr(cls, "__mro__", (cls,)):
        init = klass.__dict__.get("__init__") if isinstance(klass, type) else None
        if klass is object or (init is None and klass is not cls):
            continue
        signature = inspect.signature(init or klass)
        kinds = {p.kind for p in signature.parameters.values()}
        names += [
            p.name
            for p in signature.parameters.values()
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        if inspect.Parameter.VAR_KEYWORD not in kinds:
            break
    return sorted(set(names))


def only_known(params: dict, cls: type, what: str) -> dict:
    """``params`` unchanged, or a ConfigError naming keys ``cls`` does not take."""
    valid = parameter_names(cls)
    check_known_keys(
        params, valid, where=f"{what} config", fix=f"{cls.__name__} takes {quoted(valid)}"
    )
    return params


def refuse_early(cfg: Any) -> None:
    """A local run's pods refuse by their policies (read from their pod files) before the
    model and torch load: a refusal arrives in seconds. Pods not found yet (the demo
    writes them) and runs on a SuperLink (the pods answer there) are left to the run."""
    from fedplug._config_checks import check_config
    from fedplug._flower._session import refuse_by_policy
    from fedplug.data import Pod, resolve_pod

    check_config(cfg)  # the config itself first, as objects_from_config does
    if (plain(cfg.federation) or {}).get("connection"):
        return
    pods_cfg = plain(cfg.pods) or {}
    dirs = [Path(d) for d in pods_cfg.get("dirs") or []] or None
    pods = []
    for identifier in pods_cfg.get("identifiers") or []:
        try:
            pods.append(Pod.from_yaml(resolve_pod(identifier, dirs)))
        except FedplugError:
            return  # the run reports it, or writes the demo first
    agg_cfg = plain(cfg.aggregator)
    aggregator = make_aggregator(
        plugin_ref(agg_cfg, "aggregator"), dict(agg_cfg.get("params") or {})
    )
    model = (plain(cfg.model) or {}).get("name")  # the entry-point name is the plugin's name
    refuse_by_policy(
        {pod.name: bool(pod.policy.require_secure_aggregation) for pod in pods},
        {pod.name: tuple(pod.policy.accepted_models) for pod in pods} if model else {},
        bool(aggregator.secure),
        str(model or ""),
    )


def objects_from_config(cfg: Any) -> ComposedRun:
    """The model, aggregator and strategy a composed config names (plugins by name)."""
    from fedplug._config_checks import check_config
    from fedplug._plugins import load_plugin
    from fedplug.learning import DataStructure, Optimizer

    check_config(cfg)  # every group's keys and values, before any object is built
    pods = plain(cfg.pods)
    model_cfg = plain(cfg.model)
    model_cls = load_plugin("models", plugin_ref(model_cfg, "model"))
    common: dict[str, Any] = {
        "datastructure": DataStructure(**plain(cfg.datastructure)),
        "seed": int(cfg.seed),
    }
    if "optimizer" in model_cfg:  # models trained by gradient descent take one
        optimizer = model_cfg.pop("optimizer") or {}
        common["optimizer"] = Optimizer(
            optimizer.get("name", "Adam"), optimizer.get("params") or {}
        )
    model = model_cls(**common, **only_known(model_cfg, model_cls, "model"))
    agg_cfg = plain(cfg.aggregator)
    agg_ref = plugin_ref(agg_cfg, "aggregator")
    aggregator = make_aggregator(agg_ref, dict(agg_cfg.get("params") or {}))
    strat_cfg = plain(cfg.strategy)
    strat_ref = plugin_ref(strat_cfg, "strategy")
    return ComposedRun(
        model=model,
        aggregator=aggregator,
        aggregator_ref=agg_ref,
        strategy_ref=strat_ref,
        strategy_params=dict(strat_cfg.get("params") or {}),
        pods=pods,
        pod_dirs=[Path(d) for d in pods.get("dirs") or []],
        federation=plain(cfg.federation) or {},
        config=plain(cfg),
    )


def initial_weights(task: TrainingTask) -> list[np.ndarray]:
    """The round-0 model: the task's network built under the task's seed."""
    import torch

    from fedplug.learning import TabularNetSpec, get_weights

    torch.manual_seed(task.seed)
    return get_weights(TabularNetSpec.from_dict(task.model).build())


def make_aggregator(ref: str, params: dict[str, Any]) -> Aggregator:
    """The aggregator plugin ``ref`` with ``params`` (a Hydra group's ``params``)."""
    from fedplug._flower import Aggregator
    from fedplug._plugins import load_plugin

    cls = load_plugin("aggregators", ref)
    if not (isinstance(cls, type) and issubclass(cls, Aggregator)):
        raise ConfigError(
            f"aggregator {ref!r} is {cls!r}, not a subclass of fedplug.Aggregator; point the "
            "plugin's entry point (or _target_) at its Aggregator subclass."
        )
    return cls(**only_known(params, cls, "aggregator"))


def check_aggregator(aggregator: object) -> Aggregator:
    """``aggregator`` itself once it is a valid fedplug Aggregator, else a ConfigError."""
    from fedplug._flower import Aggregator

    if not isinstance(aggregator, Aggregator):
        raise ConfigError(
            f"aggregator={aggregator!r} is not a fedplug Aggregator; pass an instance such as "
            "fedplug.FedAvg() or fedplug.SecureAggregator() (in Hydra: aggregator=fedavg or "
            "aggregator=secure)."
        )
    aggregator.validate()
    return aggregator


def build_plan(
    model: Any,
    pod_names: Sequence[str],
    schema: Schema,
    aggregator: Aggregator | None,
    strategy: Any = "fedavg",
    strategy_params: Mapping[str, Any] | None = None,
    *,
    round_timeout: float = 300.0,
    connect_timeout: float = 120.0,
    on_round: Callable[[int, dict, dict], None] | None = None,
    found: tuple[dict[int, str], dict[str, PodInfo]] | None = None,
) -> RunPlan:
    """The plan that trains ``model`` over the named pods, given their combined schema.

    Checks everything that can be checked before any pod computes: the model's
    parameters, the aggregator's, that the datastructure names exactly these pods, and
    that the strategy can run under this aggregator.
    """
    from fedplug._api import build_strategy
    from fedplug._flower import FedAvg, RunPlan

    model = check_model(model)
    model.check_params()
    aggregator = check_aggregator(aggregator if aggregator is not None else FedAvg())
    names = list(pod_names)
    model.datastructure.check_pods(names)
    task = model.training_task(schema)
    # A model trained by its own exchanges (gradient-boosted trees) has a driver and no
    # weights; the others are trained by rounds of the Flower strategy.
    driver = model.driver()
    return RunPlan(
        pods=names,
        task=task,
        initial_weights=model.initial_weights(task) if driver is None else [],
        driver=driver,
        prepare=model.prepare,
        rounds=model.progress_total() if driver is None else 0,
        aggregator=aggregator,
        strategy=build_strategy(strategy, len(names), dict(strategy_params or {}), aggregator),
        round_timeout=float(round_timeout),
        connect_timeout=float(connect_timeout),
        on_round=on_round,
        found=found,
    )


def build_evaluation_plan(
    model: Any,
    pod_names: Sequence[str],
    aggregator: Aggregator | None,
    *,
    round_timeout: float = 300.0,
    connect_timeout: float = 120.0,
    found: tuple[dict[int, str], dict[str, PodInfo]] | None = None,
) -> RunPlan:
    """The plan that scores a trained model on the named pods' validation rows."""
    from fedplug._api import build_strategy
    from fedplug._flower import FedAvg, RunPlan
    from fedplug._flower._server import Evaluation

    model = check_model(model)
    model._require_trained()
    aggregator = check_aggregator(aggregator if aggregator is not None else FedAvg())
    names = list(pod_names)
    model.datastructure.check_pods(names)
    return RunPlan(
        pods=names,
        task=model.task_,
        initial_weights=[],
        rounds=0,
        aggregator=aggregator,
        strategy=build_strategy("fedavg", len(names), {}, aggregator),
        round_timeout=float(round_timeout),
        connect_timeout=float(connect_timeout),
        found=found,
        evaluation=Evaluation(state=model.state_, evaluator=model.evaluator()),
    )


def attach_result(model: Model, result: RunResult) -> None:
    """Make ``model`` the trained model of ``result`` (ready to predict or serialize)."""
    state = result.state if result.state is not None else result.weights
    model.set_trained(result.task, state, result.history)


def check_model(model: object) -> Model:
    """``model`` itself once it is a fedplug model plugin's server half, else a ConfigError."""
    from fedplug._model_base import Model

    if not isinstance(model, Model):
        raise ConfigError(
            f"model={model!r} is not a fedplug model: pass an instance of a model plugin such "
            "as fedplug.TabularClassifier(...) or fedplug.GradientBoostedTrees(...) (in Hydra: "
            "model=tabular_classifier); a plugin's class subclasses fedplug.plugins.Model."
        )
    return model
