"""Evaluation of a model on encoded tensors."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812

from fedplug._errors import TrainingError

from ._encoding import EncodedTable
from ._metrics import classification_metrics, regression_moments
from ._training import _device, _positive_int


@torch.inference_mode()
def _logits(net: torch.nn.Module, data: EncodedTable, batch_size: int) -> torch.Tensor:
    device = _device(net)
    n = len(data)
    return torch.cat(
        [
            net(
                data.x_cat[i : i + batch_size].to(device),
                data.x_cont[i : i + batch_size].to(device),
            )
            for i in range(0, n, batch_size)
        ]
    ).float()


def _scored(
    net: torch.nn.Module, data: EncodedTable, batch_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``net``'s outputs on every row of ``data`` (in eval mode) and the labels."""
    bs = _positive_int("batch_size", batch_size)
    if data.y is None:
        raise TrainingError(
            "evaluation: the table has no target column; check that the pod's data includes "
            "the datastructure's target"
        )
    if len(data) == 0:
        raise TrainingError(
            "evaluation: the evaluation table is empty; the pod has no rows to score"
        )
    was_training = net.training
    net.eval()
    try:
        outputs = _logits(net, data, bs).cpu()
    except (RuntimeError, IndexError) as exc:
        raise TrainingError(
            f"evaluation: the model cannot score the encoded data ({exc}); check that the "
            "model was built for the same columns and schema"
        ) from exc
    finally:
        net.train(was_training)
    y = data.y.cpu()
    return outputs, y


def evaluate_local(
    net: torch.nn.Module, data: EncodedTable, batch_size: int = 1024
) -> dict[str, float]:
    """``loss``, ``accuracy``, ``f1``, ``precision``, ``recall``, ``auc`` (binary only) and
    ``num-examples`` of ``net`` on ``data`` (metrics as :func:`classification_metrics`)."""
    logits, y = _scored(net, data, batch_size)
    out: dict[str, float] = {"loss": float(F.cross_entropy(logits, y).item())}
    out.update(classification_metrics(y, torch.softmax(logits, dim=1)))
    out["num-examples"] = len(data)
    return out


def evaluate_regression(
    net: torch.nn.Module,
    data: EncodedTable,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    batch_size: int = 1024,
) -> dict[str, float]:
    """``loss`` (``loss_fn`` on the standardized target), the
    :data:`~fedplug.learning._metrics.REGRESSION_MOMENTS` and ``num-examples`` of a
    one-output ``net`` on ``data`` (labels: the standardized target)."""
    outputs, y = _scored(net, data, batch_size)
    out: dict[str, float] = {"loss": float(loss_fn(outputs, y).item())}
    out.update(regression_moments(y, outputs.reshape(-1)))
    out["num-examples"] = len(data)
    return out
