"""Which pod a SuperNode serves, loaded once per process and checked against its policy."""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from flwr.app import Context

from fedplug._errors import PodConfigError, PolicyRefusal
from fedplug._plugins import load_pod_model
from fedplug.data import LoadedPod, Pod
from fedplug.learning import PodModel, TrainingTask

# The node-config key a SuperNode uses to name its pod file.
POD_NODE_CONFIG_KEY = "pod"
# The run-config key listing pod files for simulated SuperNodes (by partition id).
PODS_RUN_CONFIG_KEY = "pods"

logger = logging.getLogger("fedplug.pod")


@dataclass
class PodRuntime:
    """A pod's definition, its validated data and the trainers built for tasks on it."""

    pod: Pod
    data: LoadedPod
    trainers: dict[str, PodModel]

    @property
    def name(self) -> str:
        return self.pod.name

    def trainer(self, task: TrainingTask) -> PodModel:
        """The pod half of the task's model plugin, loaded only if the policy accepts it."""
        key = task.digest()
        if key not in self.trainers:
            cls = load_pod_model(task.model_plugin, self.pod.policy.accepted_models, self.name)
            cls.admit(task, self.pod.policy, self.name)
            # Only the newest task's encoded tensors are worth keeping in memory.
            self.trainers.clear()
            self.trainers[key] = cls(task, self.data.train, self.data.validation)
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


@dataclass
class _Loaded:
    """A runtime and the state of the files its data was read from, when it was read."""

    runtime: PodRuntime
    files: tuple[Path, ...]
    fingerprint: tuple[tuple[int, int, int, int] | None, ...]


# Per process, by the pod file's resolved path. Nothing is ever written to disk: a pod's
# validated data lives only in the memory of the long-lived process that serves it.
_CACHE: dict[str, _Loaded] = {}
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


def watched_files(pod_file: Path, pod: Pod) -> tuple[Path, ...]:
    """The files a pod's validated data is read from: its YAML, schema file and data file.

    A datasource names its file by a ``path`` attribute (CSV, Parquet and plugins that
    follow them) or, for SQLite, by its URL (the write-ahead log too: a write lands there
    first). A server database has no file to watch: restart the pod to read it again.
    """
    files = [pod_file]
    if isinstance(pod.schema, (str, Path)):
        files.append(Path(pod.schema))
    path = getattr(pod.datasource, "path", None)
    if isinstance(path, (str, Path)):
        files.append(Path(path))
    url = getattr(pod.datasource, "url", None)
    if isinstance(url, str) and url.startswith("sqlite:///"):
        database = url[len("sqlite:///") :].split("?", 1)[0]
        if database and not database.startswith((":memory:", "file:")):
            files += [Path(database), Path(database + "-wal")]
    return tuple(files)


def fingerprint(files: Sequence[Path]) -> tuple[tuple[int, int, int, int] | None, ...]:
    """Each file's device, inode, size and modification time (None if it is missing).

    A rewrite changes the size or the time, a replacement (write, then rename) the inode:
    a few ``stat`` calls per message, where hashing a large file would cost seconds.
    """
    marks: list[tuple[int, int, int, int] | None] = []
    for file in files:
        try:
            st = os.stat(file)
        except OSError:
            marks.append(None)
            continue
        marks.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(marks)


def load_runtime(path: Path) -> PodRuntime:
    """The pod's validated data, read once per process and again only when it changed.

    Each message checks the fingerprint of the pod's files (:func:`watched_files`); when
    the YAML, the schema file or the data file changed, the pod is read and validated
    again before it answers, so it never trains on data it has not validated. The
    fingerprint is taken before reading: a file changed while it was read is read again
    at the next message.
    """
    key = str(path.resolve())
    with _LOCK:
        cached = _CACHE.get(key)
        if cached is not None and fingerprint(cached.files) == cached.fingerprint:
            return cached.runtime
        _limit_threads()
        before = fingerprint([path])  # the YAML's, before it is read
        pod = Pod.from_yaml(path)
        files = watched_files(path, pod)
        marks = before + fingerprint(files[1:])
        if cached is not None:
            logger.info(
                "pod %r: its definition, schema or data changed; reading and validating it again",
                pod.name,
            )
        runtime = PodRuntime(pod=pod, data=pod.load(), trainers={})
        _CACHE[key] = _Loaded(runtime, files, marks)
        return runtime
