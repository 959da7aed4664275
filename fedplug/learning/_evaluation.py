"""Evaluation of a model on encoded tensors."""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812

from fedplug._errors import TrainingError

from ._encoding import EncodedTable
from ._metrics import classification_metrics
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


def evaluate_local(
    net: torch.nn.Module, data: EncodedTable, batch_size: int = 1024
) -> dict[str, float]:
    """``loss``, ``accuracy``, ``f1``, ``precision``, ``recall``, ``auc`` (binary only) and
    ``num-examples`` of ``net`` on ``data`` (metrics as :func:`classification_metrics`)."""
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
        logits = _logits(net, data, bs).cpu()
    except (RuntimeError, IndexError) as exc:
        raise TrainingError(
            f"evaluation: the model cannot score the encoded data ({exc}); check that the "
            "model was built for the same columns and schema"
        ) from exc
    finally:
        net.train(was_training)
    y = data.y.cpu()
    out: dict[str, float] = {"loss": float(F.cross_entropy(logits, y).item())}
    out.update(classification_metrics(y, torch.softmax(logits, dim=1)))
    out["num-examples"] = len(data)
    return out
