"""Which pod a SuperNode serves, loaded once per process and checked against its policy."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context

from fedplug._errors import PodConfigError, PolicyRefusal
from fedplug.data import LoadedPod, Pod
from fedplug.learning import PodTrainer, TrainingTask

# The node-config key a SuperNode uses to name its pod file.
POD_NODE_CONFIG_KEY = "pod"
# The run-config key listing pod files for simulated SuperNodes (by partition id).
PODS_RUN_CONFIG_KEY = "pods"


@dataclass
class PodRuntime:
    """A pod's definition, its validated data and the trainers built for tasks on it."""

    pod: Pod
    data: LoadedPod
    trainers: dict[str, PodTrainer]

    @property
    def name(self) -> str:
        return self.pod.name

    def trainer(self, task: TrainingTask) -> PodTrainer:
        key = task.digest()
        if key not in self.trainers:
            # Only the newest task's encoded tensors are worth keeping in memory.
            self.trainers.clear()
            self.trainers[key] = PodTrainer(task, self.data.train, self.data.validation)
        return self.trainers[key]

    # -- policy --------------------------------------------------------------------------
    def require_task_kind(self, kind: str) -> None:
        accepted = tuple(self.pod.policy.accepted_tasks)
        if kind not in accepted:
            raise PolicyRefusal(
                f"pod {self.name!r} refuses a {kind!r} task: its policy accepts only "
                f"{list(accepted)}. Ask the pod's owner to add {kind!r} to policy.accepted_tasks.",
                reason="task-kind",
                pods=[self.name],
            )

    def require_plaintext_allowed(self) -> None:
        if self.pod.policy.require_secure_aggregation:
            raise PolicyRefusal(
                f"pod {self.name!r} requires secure aggregation and refuses to send a "
                "plaintext update. Rerun with aggregator=secure (Hydra) or "
                "aggregator=SecureAggregator() (Python).",
                reason="secure-aggregation-required",
                pods=[self.name],
            )

    def require_peers_allowed(self, pods: Sequence[str]) -> None:
        """Refuse to be aggregated with unapproved pods or with too few pods."""
        others = [p for p in pods if p != self.name]
        approved = self.pod.approved_pods
        if approved is not None:
            unapproved = sorted(set(others) - set(approved))
            if unapproved:
                raise PolicyRefusal(
                    f"pod {self.name!r} refuses to be aggregated with unapproved pod(s) "
                    f"{unapproved}; its approved_pods are {sorted(approved)}. Remove those "
                    f"pods from the task, or ask the owner of {self.name!r} to approve them.",
                    reason="unapproved-pod",
                    pods=[self.name, *unapproved],
                )
        min_pods = int(self.pod.policy.min_pods)
        if len(set(pods)) < min_pods:
            raise PolicyRefusal(
                f"pod {self.name!r} refuses to be aggregated with {len(set(pods))} pod(s) "
                f"{sorted(set(pods))}: its policy requires at least {min_pods}. Add pods to "
                "the task.",
                reason="too-few-pods",
                pods=sorted(set(pods)),
            )


_CACHE: dict[str, tuple[float, PodRuntime]] = {}
_LOCK = threading.Lock()


def pod_file_for(context: Context, pod_files: Sequence[str] | None = None) -> Path:
    """The pod file this node serves: its node config, else its simulated partition."""
    node_config = context.node_config
    if POD_NODE_CONFIG_KEY in node_config:
        return Path(str(node_config[POD_NODE_CONFIG_KEY])).expanduser()
    files = list(pod_files or [])
    if not files and PODS_RUN_CONFIG_KEY in context.run_config:
        files = json.loads(str(context.run_config[PODS_RUN_CONFIG_KEY]))
    if "partition-id" in node_config and files:
        index = int(node_config["partition-id"])
        if index < len(files):
            return Path(files[index])
    raise PodConfigError(
        "this SuperNode serves no pod: start each pod with `fedplug pod start POD.yaml "
        "--superlink HOST:PORT ...`."
    )


def _limit_threads() -> None:
    """One torch thread per pod unless told otherwise.

    Simulated pods each get one CPU; torch's default of one thread per core makes them
    fight over the same cores and runs many times slower on small models.
    """
    import torch

    torch.set_num_threads(int(os.environ.get("FEDPLUG_TORCH_THREADS", "1")))


def load_runtime(path: Path) -> PodRuntime:
    """Load and validate a pod once per process; reload when its file changes."""
    key = str(path.resolve())
    mtime = os.stat(path).st_mtime if path.exists() else -1.0
    with _LOCK:
        cached = _CACHE.get(key)
        if cached and cached[0] == mtime:
            return cached[1]
        _limit_threads()
        pod = Pod.from_yaml(path)
        runtime = PodRuntime(pod=pod, data=pod.load(), trainers={})
        _CACHE[key] = (mtime, runtime)
        return runtime
