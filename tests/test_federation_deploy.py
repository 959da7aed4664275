"""``model.fit(..., federation=CONNECTION)`` on a real SuperLink and pods (127.0.0.1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from deploy_helpers import CONNECTION, cluster, write_pods

from fedplug import DataStructure, TabularClassifier
from fedplug._federation import RunFailed

FEATURES = ["age", "education", "hours-per-week", "sex"]


def _model() -> TabularClassifier:
    return TabularClassifier(
        DataStructure("TARGET", selected_cols=FEATURES), rounds=1, hidden=(8,), batch_size=32
    )


@pytest.mark.deploy
def test_fit_on_a_superlink_returns_what_a_simulation_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    pods = write_pods(tmp_path / "pods", names=("pod-a", "pod-b"), rows=(150, 120))
    with cluster(tmp_path) as c:
        c.start_superlink()
        for key in ("FLWR_HOME", "PATH", "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"):
            monkeypatch.setenv(key, c.env[key])
        # No pod is connected yet: the run fails on the SuperLink, and fit says why.
        quick = {"connection": CONNECTION, "connect_timeout": 1}
        with pytest.raises(RunFailed) as info:
            _model().fit(["pod-a", "pod-b"], federation=quick, verbose=False)
        message = " ".join(str(info.value).split())
        assert f"on '{CONNECTION}' ended finished:failed: " in message, message
        assert "'pod-a'" in message and "not found" in message, message

        c.start_pods(pods)
        model = _model()
        history = model.fit(["pod-a", "pod-b"], federation=CONNECTION)
    printed = capsys.readouterr().out
    assert "round 1/1" in printed and "pods found" in printed, printed  # the run's progress

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the pods train (FEDPLUG_TORCH_THREADS=1)
    try:
        simulated = _model()
        expected = simulated.fit(pods, backend="inprocess", verbose=False)
    finally:
        torch.set_num_threads(threads)
    assert [h["round"] for h in history] == [h["round"] for h in expected] == [1]
    assert set(history[0]["evaluate"]) == set(expected[0]["evaluate"])
    assert set(history[0]["train"]) == set(expected[0]["train"])
    assert model.trained and model.history_ == history
    for a, b in zip(model.state_, simulated.state_, strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)
    frame = pd.read_csv(pods[0].with_suffix(".csv")).head(20)
    assert list(model.predict(frame)) == list(simulated.predict(frame))
