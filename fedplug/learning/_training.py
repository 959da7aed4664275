"""Local training on encoded tensors: one seeded shuffle per epoch, no DataLoader."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import cast

import torch
import torch.nn.functional as F  # noqa: N812

from fedplug._errors import ConfigError, TrainingError
from fedplug._validation import positive_int

from ._encoding import EncodedTable
from ._optimizer import Optimizer


def _positive_int(name: str, value: object) -> int:
    return positive_int(value, name=f"training: {name}", fix=f"pass e.g. {name}=1 or more")


def _device(net: torch.nn.Module) -> torch.device:
    for p in net.parameters():
        return p.device
    return torch.device("cpu")


def train_local(
    net: torch.nn.Module,
    data: EncodedTable,
    *,
    epochs: int | None = None,
    steps: int | None = None,
    batch_size: int,
    optimizer: Optimizer,
    seed: int,
    proximal_mu: float = 0.0,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
) -> dict[str, float]:
    """Train ``net`` in place for ``epochs`` passes or ``steps`` batches (exactly one).

    The same seed gives the same weights: shuffling uses a ``torch.randperm`` seeded with
    ``seed`` and dropout uses the global RNG seeded inside ``torch.random.fork_rng`` (the
    caller's RNG state is left untouched). Returns ``train_loss`` (the mean loss over
    every example seen in this call) and ``num-examples`` (``len(data)``).

    ``loss_fn(outputs, labels)`` is the batch's mean loss; cross-entropy by default (the
    classifier's), e.g. a mean squared error for a regressor.

    ``proximal_mu > 0`` adds FedProx's proximal term ``mu / 2 * ||w - w_start||^2``,
    which keeps the local model near the weights it started from (the global model).
    """
    if (epochs is None) == (steps is None):
        raise ConfigError(
            f"training: give exactly one of epochs and steps (got epochs={epochs!r}, "
            f"steps={steps!r}); set the other to None"
        )
    if epochs is not None:
        _positive_int("epochs", epochs)
    else:
        _positive_int("steps", steps)
    bs = _positive_int("batch_size", batch_size)
    if not isinstance(optimizer, Optimizer):
        raise ConfigError(
            f"training: optimizer must be a fedplug Optimizer such as Optimizer('SGD', "
            f"{{'lr': 0.01}}), got {optimizer!r}"
        )
    if data.y is None:
        raise TrainingError(
            "training: the table has no target column, so there is nothing to learn; "
            "check that the pod's data includes the datastructure's target"
        )
    n = len(data)
    if n == 0:
        raise TrainingError(
            "training: the training table is empty; the pod has no rows to train on"
        )

    device = _device(net)
    x_cat, x_cont, y = (t.to(device) for t in (data.x_cat, data.x_cont, data.y))
    opt = optimizer.build(net.parameters())
    mu = float(proximal_mu)
    if not math.isfinite(mu) or mu < 0:
        raise ConfigError(f"training: proximal_mu must be a number >= 0, got {proximal_mu!r}")
    anchor = [p.detach().clone() for p in net.parameters()] if mu > 0 else []
    criterion = F.cross_entropy if loss_fn is None else loss_fn
    net.train()
    batches_per_epoch = math.ceil(n / bs)
    # Exactly one of epochs and steps is given (checked above): without epochs, steps is set.
    n_epochs = epochs if epochs is not None else math.ceil(cast(int, steps) / batches_per_epoch)
    remaining = steps if steps is not None else n_epochs * batches_per_epoch
    loss_sum = torch.zeros((), device=device)
    seen = 0
    gen = torch.Generator().manual_seed(seed)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for _ in range(n_epochs):
                perm = torch.randperm(n, generator=gen)
                if remaining < batches_per_epoch:  # last, partial pass of a steps budget
                    perm = perm[: remaining * bs]
                m = perm.numel()
                perm = perm.to(device)
                # One gather per epoch; the batches below are then cheap views.
                ec, en, ey = x_cat[perm], x_cont[perm], y[perm]
                for start in range(0, m, bs):
                    stop = min(start + bs, m)
                    opt.zero_grad(set_to_none=True)
                    loss = criterion(net(ec[start:stop], en[start:stop]), ey[start:stop])
                    objective = loss
                    if anchor:
                        drift = sum(
                            (p - a).pow(2).sum()
                            for p, a in zip(net.parameters(), anchor, strict=True)
                        )
                        objective = loss + 0.5 * mu * drift
                    objective.backward()
                    opt.step()
                    loss_sum.add_(loss.detach(), alpha=stop - start)
                remaining -= math.ceil(m / bs)
                seen += m
                # One host read per epoch: stop early on a diverged run.
                total = loss_sum.item()
                if not math.isfinite(total):
                    raise TrainingError(
                        f"training: the loss became {total} (diverged) with optimizer "
                        f"{optimizer!r}; lower the learning rate or scale the features"
                    )
    except (RuntimeError, TypeError, ValueError, IndexError) as exc:
        raise TrainingError(
            f"training: local training failed with optimizer {optimizer!r} ({exc}); check "
            "that the model matches the encoded data and the optimizer suits the model"
        ) from exc
    return {"train_loss": loss_sum.item() / seen, "num-examples": n}
