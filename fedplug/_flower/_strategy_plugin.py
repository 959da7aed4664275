"""The helper behind every strategy plugin: a Flower strategy class, run over every pod.

A strategy plugin is a callable ``factory(n_pods, **params) -> flwr Strategy`` declaring
``fedplug_plugin_api``, ``secure_compatible`` and ``server_step``. :class:`StrategyPlugin`
is that callable for a Strategy class: it samples every pod in every round (as the pods'
policies expect), refuses parameters the class does not take with a
:class:`~fedplug.ConfigError` naming them, and turns the class's own ``TypeError`` or
``ValueError`` on bad values into one.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from flwr.serverapp.strategy import Strategy

from fedplug._errors import ConfigError
from fedplug._validation import check_known_keys

#: Flower's sampling parameters, which fedplug fills in: every pod, every round.
SAMPLING = (
    "fraction_train",
    "fraction_evaluate",
    "min_train_nodes",
    "min_evaluate_nodes",
    "min_available_nodes",
)


def every_pod(n_pods: int) -> dict[str, Any]:
    """Flower's sampling parameters for "every one of the task's ``n_pods``, every round"."""
    return {
        "fraction_train": 1.0,
        "fraction_evaluate": 1.0,
        "min_train_nodes": n_pods,
        "min_evaluate_nodes": n_pods,
        "min_available_nodes": n_pods,
    }


def accepted_parameters(cls: type) -> set[str]:
    """The keyword parameters ``cls(...)`` takes, following ``**kwargs`` up the MRO."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        params = inspect.signature(init).parameters.values()
        names |= {
            p.name
            for p in params
            if p.name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        }
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            break  # this __init__ takes nothing beyond its own parameters
    return names


class StrategyPlugin:
    """A strategy plugin made from a Flower Strategy class.

    Parameters
    ----------
    name:
        The plugin's name, as its entry point and Hydra config give it.
    cls:
        The Strategy class; it is called with every-pod sampling plus the user's params.
    secure_compatible:
        Its aggregation is a function of the pods' weighted mean only, so secure
        aggregation (which reveals only that mean) can replace it.
    server_step:
        Its result is not the weighted mean itself (a server learning rate, momentum).
    """

    fedplug_plugin_api: ClassVar[int] = 2

    def __init__(
        self,
        name: str,
        cls: type[Strategy],
        *,
        secure_compatible: bool = True,
        server_step: bool = False,
    ) -> None:
        self.name = name
        self.cls = cls
        self.secure_compatible = secure_compatible
        self.server_step = server_step
        self.__doc__ = cls.__doc__
        self.__name__ = self.__qualname__ = name

    def __call__(self, n_pods: int, **params: Any) -> Strategy:
        valid = accepted_parameters(self.cls)
        check_known_keys(
            params,
            valid,
            where=f"strategy {self.name!r}",
            noun="parameter",
            fix=f"valid ones: {sorted(valid - set(SAMPLING))} (strategy.params in Hydra)",
        )
        try:
            return self.cls(**{**every_pod(n_pods), **params})
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"strategy {self.name!r}: invalid parameters {params}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return f"StrategyPlugin({self.name!r}, {self.cls.__qualname__})"
