"""Optimizer configuration: any ``torch.optim`` class by name, with its parameters."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from fedplug._errors import ConfigError
from fedplug._validation import check_known_keys, did_you_mean


def _optimizer_classes() -> dict[str, type[torch.optim.Optimizer]]:
    return {
        name: cls
        for name, cls in vars(torch.optim).items()
        if isinstance(cls, type)
        and issubclass(cls, torch.optim.Optimizer)
        and cls is not torch.optim.Optimizer
    }


def _plain(value: Any) -> Any:
    # YAML/Hydra give lists or ListConfigs (e.g. Adam betas); torch expects tuples.
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return tuple(_plain(v) for v in value)
    return value


class Optimizer:
    """A ``torch.optim`` optimizer named case-insensitively (``"SGD"``, ``"adamw"``).

    The name and parameters are checked when the object is made, so a typo fails
    before any training starts.
    """

    def __init__(self, name: str, params: Mapping[str, Any] | None = None) -> None:
        classes = _optimizer_classes()
        by_lower = {n.lower(): n for n in classes}
        if not isinstance(name, str) or name.lower() not in by_lower:
            hint = did_you_mean(name, classes, ignore_case=True)
            raise ConfigError(
                f"optimizer: unknown optimizer {name!r}{hint}; available optimizers "
                f"(torch.optim): {sorted(classes)}"
            )
        if params is not None and not isinstance(params, Mapping):
            raise ConfigError(
                f"optimizer {name!r}: params must be a mapping such as {{'lr': 0.01}}, "
                f"got {params!r}"
            )
        self.name: str = by_lower[name.lower()]
        self.cls: type[torch.optim.Optimizer] = classes[self.name]
        self.params: dict[str, Any] = {str(k): _plain(v) for k, v in (params or {}).items()}
        self._check_params()

    @staticmethod
    def available() -> list[str]:
        """Names of the optimizers in ``torch.optim``."""
        return sorted(_optimizer_classes())

    def _valid_names(self) -> list[str]:
        sig = inspect.signature(self.cls.__init__)
        return [p for p in sig.parameters if p not in ("self", "params")]

    def _check_params(self) -> None:
        check_known_keys(
            self.params, self._valid_names(), where=f"optimizer {self.name!r}", noun="parameter"
        )
        # Values are checked by building on a throw-away 2-D parameter; a failure is
        # pinned on one parameter by trying each on its own.
        try:
            self.cls([torch.zeros(2, 2, requires_grad=True)], **self.params)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise self._param_error(exc) from exc

    def _param_error(self, exc: Exception) -> ConfigError:
        culprits = []
        for key, value in self.params.items():
            try:
                self.cls([torch.zeros(2, 2, requires_grad=True)], **{key: value})
            except (TypeError, ValueError, RuntimeError):
                culprits.append(f"{key}={value!r}")
        what = ", ".join(culprits) if culprits else f"params {self.params!r}"
        return ConfigError(
            f"optimizer {self.name!r}: invalid parameter {what} ({exc}); "
            f"fix the value in the optimizer params (see torch.optim.{self.name})"
        )

    def build(self, parameters: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """A fresh ``torch.optim`` optimizer over ``parameters``."""
        try:
            return self.cls(parameters, **self.params)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"optimizer {self.name!r} with params {self.params!r} cannot be used on "
                f"this model ({exc}); choose another optimizer or fix its params"
            ) from exc

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}``, YAML/JSON-safe."""
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.params.items()}
        return {"name": self.name, "params": params}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Optimizer:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        if not isinstance(data, Mapping) or "name" not in data:
            raise ConfigError(
                f"optimizer: expected a mapping like {{'name': 'SGD', 'params': {{'lr': 0.01}}}}, "
                f"got {data!r}"
            )
        check_known_keys(data, ("name", "params"), where="optimizer")
        return cls(data["name"], data.get("params"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Optimizer):
            return NotImplemented
        return self.name == other.name and self.params == other.params

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Optimizer({self.name!r}, {self.params!r})"
