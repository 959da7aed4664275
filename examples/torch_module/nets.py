"""The networks the torch-module example trains: plain ``torch.nn.Module`` subclasses.

A torch-module network takes ``(n_features, n_outputs, **module_params)`` and maps a float
tensor ``[rows, n_features]`` (fedplug's encoding: one-hot categoricals, then continuous
features standardized across pods) to ``[rows, n_outputs]``. Pods import it by its path
(``nets:Linear`` here), so it must be installed on every pod that trains it, and each pod's
owner lists that path in ``policy.accepted_modules``.
"""

from __future__ import annotations

from torch import nn


class Linear(nn.Module):
    """A linear model, as the PySyft tutorial's ``nn.Linear`` regressor."""

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_features, n_outputs)

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.fc(x)


class TwoLayer(nn.Module):
    """A small MLP with a width of your choice (``module_params: {width: 32}``)."""

    def __init__(self, n_features: int, n_outputs: int, width: int = 32) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Linear(n_features, width), nn.ReLU(), nn.Linear(width, n_outputs)
        )

    def forward(self, x):  # noqa: ANN001, ANN201
        return self.body(x)
