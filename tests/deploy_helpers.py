"""A small harness for deployment tests: a real SuperLink, SuperNodes and ``flwr run``.

Every process starts in its own session with its output in a log file; :class:`Cluster`
is a context manager that stops every process it started (and their children, found by
process id) whether the test passes or fails. Ports are chosen free; every wait has a
timeout; ``FLWR_HOME`` is a temporary directory, so the user's Flower config is untouched.
"""

from __future__ import annotations

import contextlib
import ctypes
import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CONNECTION = "fedplug-test"
STOP_GRACE = 10.0  # seconds a process gets to stop after SIGTERM before SIGKILL


# -- pods -------------------------------------------------------------------------------


def write_pods(
    directory: Path,
    names: Sequence[str] = ("pod-a", "pod-b", "pod-c"),
    rows: Sequence[int] = (500, 400, 300),
    extra: dict[str, dict] | None = None,
) -> list[Path]:
    """Census pods with different rows (and sizes) and one agreed schema file."""
    from fedplug.data import Schema, load_adult

    directory.mkdir(parents=True, exist_ok=True)
    adult = load_adult("train")
    # education-num is an ordered level: declared, so inference does not warn.
    schema = Schema.infer(adult, name="census", force_stypes={"education-num": "continuous"})
    schema.to_yaml(directory / "schema.yaml")
    paths, start = [], 0
    for name, n in zip(names, rows, strict=True):
        adult.iloc[start : start + n].to_csv(directory / f"{name}.csv", index=False)
        start += n
        config = {
            "name": name,
            "datasource": {"type": "csv", "path": f"{name}.csv"},
            "schema": {"file": "schema.yaml"},
            "split": {"type": "percentage", "validation": 0.2, "seed": 1},
            "policy": {"min_pods": 2},
        }
        config.update((extra or {}).get(name, {}))
        path = directory / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        paths.append(path)
    return paths


def plaintext_reference(
    pod_files: Sequence[Path], task: object, rounds: int, weighted: bool = True
) -> list[np.ndarray]:
    """The global model after ``rounds`` of plain FedAvg, recomputed here from the pods.

    Each pod's training is deterministic given the task (seed, scaling) and the global
    weights, so this replays exactly the updates the pods computed in the run and takes
    their mean weighted by example counts (or unweighted, to show the test can tell).
    """
    import torch

    from fedplug._task_builder import initial_weights
    from fedplug.data import Pod
    from fedplug.learning import PodTrainer

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the pods run (FEDPLUG_TORCH_THREADS=1)
    try:
        loaded = [Pod.from_yaml(p).load() for p in pod_files]
        trainers = [PodTrainer(task, pod.train, pod.validation) for pod in loaded]
        weights = initial_weights(task)
        for server_round in range(1, rounds + 1):
            updates = [trainer.fit(weights, server_round) for trainer in trainers]
            counts = np.array([float(m["num-examples"]) if weighted else 1.0 for _, m in updates])
            weights = [
                (
                    sum(
                        c * np.asarray(u[k], np.float64)
                        for c, (u, _) in zip(counts, updates, strict=True)
                    )
                    / counts.sum()
                ).astype(w.dtype)
                for k, w in enumerate(weights)
            ]
        return weights
    finally:
        torch.set_num_threads(threads)


def max_abs_diff(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> float:
    assert [x.shape for x in a] == [y.shape for y in b]
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - y))) for x, y in zip(a, b, strict=True)
    )


def check_against_plaintext(
    output_dir: Path,
    pod_files: Sequence[Path],
    rounds: int,
    scaling_pods: Sequence[Path] | None = None,
) -> None:
    """The run's model equals the plaintext weighted mean of the pods' own updates.

    Also checks the cross-pod scaling the run agreed on (securely) against the pooled
    statistics of the training rows of ``scaling_pods`` (default: the same pods).
    """
    from fedplug import TabularClassifier
    from fedplug.data import Pod

    model = TabularClassifier.deserialize(output_dir / "model.pt")
    task, weights = model._fitted
    history = json.loads((output_dir / "history.json").read_text())["history"]
    assert [h["round"] for h in history] == list(range(1, rounds + 1))

    pooled = pd.concat([Pod.from_yaml(p).load().train for p in scaling_pods or pod_files])
    columns = task.continuous()
    np.testing.assert_allclose(task.mean, pooled[columns].mean().to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(task.std, pooled[columns].std(ddof=0).to_numpy(), rtol=1e-4)

    expected = plaintext_reference(pod_files, task, rounds)
    unweighted = plaintext_reference(pod_files, task, rounds, weighted=False)
    error = max_abs_diff(weights, expected)
    # Fixed-point resolution is ~1e-10 here; float32 storage adds ~1e-7.
    assert error < 1e-5, f"secure model differs from the plaintext weighted mean by {error}"
    # ...and that tolerance is far tighter than what a wrong (unweighted) mean gives.
    assert max_abs_diff(unweighted, expected) > 100 * max(error, 1e-7)


# -- TLS and node keys (generated with `cryptography`, no openssl needed) ---------------


def make_tls(directory: Path, host: str = "127.0.0.1") -> dict[str, Path]:
    """A throw-away CA and a server certificate for ``host`` (and localhost)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedplug test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = {
        "ca": directory / "ca.crt",
        "cert": directory / "server.pem",
        "key": directory / "server.key",
    }
    paths["ca"].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def make_node_key(directory: Path, name: str) -> tuple[Path, Path]:
    """A SuperNode authentication key pair (ECDSA P-384, OpenSSH format, as ssh-keygen)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP384R1())
    private, public = directory / name, directory / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
    )
    private.chmod(0o600)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
    )
    return private, public


# -- processes --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, for every process we can see."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _set_subreaper(on: bool) -> None:
    """Adopt orphaned grandchildren (Flower's SuperExec and app processes) so they are reaped."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL(None, use_errno=True).prctl(36, 1 if on else 0, 0, 0, 0)


def _die_with_parent() -> None:
    """In the child: get SIGKILL if the test process dies (even by SIGKILL), so nothing
    outlives a crashed or killed test run. Linux only; elsewhere the context manager's
    cleanup is the only guard."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): with the pid, its identity."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _is_flower(pid: int) -> bool:
    try:
        comm = Path(f"/proc/{pid}/stat").read_text().split("(", 1)[1].rsplit(")", 1)[0]
    except OSError:
        return False
    return comm.startswith(("flwr", "flower"))


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


@dataclass
class Proc:
    """A process the harness started, with its log file."""

    name: str
    popen: subprocess.Popen
    log_path: Path
    known: dict[int, int | None] = field(default_factory=dict)  # descendant -> start time
    signalled: bool = False

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.popen.poll() is None

    def remember_children(self) -> None:
        if self.alive():
            self.known.update({pid: _start_time(pid) for pid in descendants(self.popen.pid)})

    def live_children(self) -> list[int]:
        """Descendants seen so far that still run (a reused pid is not ours: skipped)."""
        return [p for p, t in self.known.items() if _alive(p) and _start_time(p) == t]

    def request_stop(self, sig: int = signal.SIGTERM) -> None:
        """Ask the process to stop (once); :meth:`stop` then waits for it."""
        self.remember_children()
        if self.alive() and not self.signalled:
            self.signalled = True
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, grace: float = STOP_GRACE) -> None:
        """Stop the process and everything it started, by process id; never hangs."""
        self.request_stop(sig)
        if self.alive():
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=grace)
        leftovers = self.live_children()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in leftovers) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in self.live_children():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        for pid, started in self.known.items():
            if _start_time(pid) == started:  # still ours (a zombie keeps its stat)
                _reap(pid)


@dataclass
class RunOutcome:
    run_id: int
    status: str  # e.g. "finished:completed", "finished:failed"
    details: str  # Flower's status details (a failed ServerApp's exception)
    log: str  # what `flwr run --stream` printed: the ServerApp's log
    seconds: float


class Cluster:
    """A SuperLink and SuperNodes on 127.0.0.1, plus the ``flwr`` CLI pointed at them."""

    def __init__(self, workdir: Path, *, tls: bool = False, auth: bool = False) -> None:
        self.workdir = workdir
        self.tls = make_tls(workdir / "tls") if tls else None
        self.auth = auth
        self.home = workdir / "flwr-home"
        self.home.mkdir(parents=True, exist_ok=True)
        self.logs = workdir / "logs"
        self.logs.mkdir(exist_ok=True)
        self.procs: list[Proc] = []
        self.superlink: Proc | None = None
        self.address = ""
        self.env = {
            **os.environ,
            "FLWR_HOME": str(self.home),
            "FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION": "1",
            "FLWR_SUPEREXEC_TASK_POLL_INTERVAL": "0.2",
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONUNBUFFERED": "1",
            "FEDPLUG_TORCH_THREADS": "1",
            "FEDPLUG_CACHE_DIR": str(workdir / "pod-cache"),
            "COLUMNS": "200",
        }

    # -- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        _set_subreaper(True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()
        _set_subreaper(False)

    def stop_all(self) -> None:
        # Signal everything first, then wait: the processes shut down in parallel.
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.request_stop()
        for proc in reversed(self.procs):
            with contextlib.suppress(Exception):
                proc.stop()
        # Flower app processes orphaned by a killed SuperExec were adopted by this process.
        for pid in _children().get(os.getpid(), []):
            if _is_flower(pid) and pid not in {p.popen.pid for p in self.procs}:
                with contextlib.suppress(ProcessLookupError, PermissionError, TimeoutError):
                    os.kill(pid, signal.SIGKILL)
                    wait_for(lambda pid=pid: not _alive(pid), 5.0, f"process {pid} to die")
                _reap(pid)

    def _spawn(self, name: str, args: Sequence[str]) -> Proc:
        log_path = self.logs / f"{name}.log"
        handle = log_path.open("ab")
        popen = subprocess.Popen(
            [str(a) for a in args],
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.workdir,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        handle.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def _tls_args(self) -> list[str]:
        return ["--root-certificates", str(self.tls["ca"])] if self.tls else ["--insecure"]

    # -- SuperLink ----------------------------------------------------------------------
    def start_superlink(self, timeout: float = 60.0, attempts: int = 3) -> Proc:
        """Start the SuperLink on a free port (another, if that one was taken meanwhile)."""
        for attempt in range(attempts):
            port = free_port()
            args = [BIN / "flower-superlink", "--host", "127.0.0.1", "--port", str(port)]
            if self.tls:
                args += ["--ssl-ca-certfile", self.tls["ca"], "--ssl-certfile", self.tls["cert"]]
                args += ["--ssl-keyfile", self.tls["key"]]
            else:
                args.append("--insecure")
            if self.auth:
                args.append("--enable-supernode-auth")
            args.append("--disable-runtime-dependency-installation")
            proc = self._spawn(f"superlink-{attempt}" if attempt else "superlink", args)
            wait_for(
                lambda p=proc: "Uvicorn running" in p.log() or not p.alive(),
                timeout,
                "the SuperLink to listen",
            )
            if proc.alive():
                break
            if "already in use" not in proc.log() or attempt == attempts - 1:
                raise RuntimeError(f"the SuperLink exited:\n{proc.log()}")
        self.superlink = proc
        self.address = f"127.0.0.1:{port}"
        self._write_connection()
        return proc

    def _write_connection(self) -> None:
        lines = [
            "[superlink]",
            f'default = "{CONNECTION}"',
            "",
            f"[superlink.{CONNECTION}]",
            f'address = "{self.address}"',
        ]
        if self.tls:
            lines.append(f'root-certificates = "{self.tls["ca"]}"')
        else:
            lines.append("insecure = true")
        (self.home / "config.toml").write_text("\n".join(lines) + "\n")

    # -- SuperNodes ---------------------------------------------------------------------
    def start_supernode(
        self,
        pod_file: Path,
        *,
        key: Path | None = None,
        via_fedplug: bool = True,
        wait: bool = True,
        timeout: float = 60.0,
    ) -> Proc:
        """Serve a pod with ``fedplug pod start`` (the documented launch).

        ``via_fedplug=False`` starts plain ``flower-supernode --node-config pod=...``
        instead, for the tests that need Flower's own SuperNode (e.g. one the SuperLink
        refuses); on it, fedplug's app bundle answers every message with a refusal.
        """
        name = f"supernode-{Path(pod_file).stem}"
        if via_fedplug:
            args = [BIN / "fedplug", "pod", "start", pod_file, "--superlink", self.address]
            args += ["--root-certificates", self.tls["ca"]] if self.tls else ["--insecure"]
            if key is not None:
                args += ["--auth-key", key]
        else:
            args = [
                BIN / "flower-supernode",
                *self._tls_args(),
                "--superlink",
                self.address,
                "--node-config",
                f"pod='{Path(pod_file).resolve()}'",
                "--port",
                str(free_port()),
            ]
            if key is not None:
                args += ["--auth-supernode-private-key", key]
        proc = self._spawn(name, args)
        if wait:
            self.wait_connected(proc, timeout)
        return proc

    def wait_connected(self, proc: Proc, timeout: float = 60.0) -> None:
        wait_for(
            lambda: "SuperNode ID" in proc.log() or not proc.alive(),
            timeout,
            f"{proc.name} to connect",
        )
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()}")
        proc.remember_children()

    def start_pods(self, pod_files: Sequence[Path], **kwargs: object) -> list[Proc]:
        """Start one SuperNode per pod (in parallel) and wait until all are connected."""
        procs = [self.start_supernode(p, wait=False, **kwargs) for p in pod_files]
        for proc in procs:
            self.wait_connected(proc)
        return procs

    def kill(self, proc: Proc) -> None:
        """A pod's machine dies: SIGKILL the SuperNode and everything it started, at once."""
        proc.remember_children()
        for pid in [proc.popen.pid, *proc.live_children()]:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        proc.signalled = True
        proc.stop(grace=5.0)

    # -- the flwr CLI -------------------------------------------------------------------
    def flwr(self, *args: object, timeout: float = 60.0) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "flwr"), *[str(a) for a in args]],
            env=self.env,
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def register(self, public_key: Path) -> None:
        done = self.flwr("supernode", "register", public_key, CONNECTION)
        if done.returncode != 0:
            raise RuntimeError(f"flwr supernode register failed:\n{done.stdout}\n{done.stderr}")

    def start_run(self, overrides: str, output_dir: Path, name: str = "run") -> Proc:
        """``flwr run <repo> <connection> --stream`` in the background; its log is the run's."""
        config = f"overrides='{overrides}' output-dir='{output_dir}'"
        return self._spawn(
            name,
            [BIN / "flwr", "run", REPO_ROOT, CONNECTION, "--run-config", config, "--stream"],
        )

    def start_app_run(self, app_dir: Path, name: str = "run", run_config: str = "") -> Proc:
        """``flwr run <app_dir> <connection> --stream`` for any app directory (e.g. one a
        test wrote), in the background; its log is what ``--stream`` prints."""
        args: list[object] = [BIN / "flwr", "run", app_dir, CONNECTION, "--stream"]
        if run_config:
            args += ["--run-config", run_config]
        return self._spawn(name, args)

    def run_id(self, run: Proc, timeout: float = 120.0) -> int:
        marker = "Successfully started run "
        wait_for(lambda: marker in run.log() or not run.alive(), timeout, "the run to start")
        if marker not in run.log():
            raise RuntimeError(f"flwr run failed to start a run:\n{run.log()}")
        return int(run.log().split(marker, 1)[1].split()[0])

    def status(self, run_id: int) -> tuple[str, str]:
        """The run's status (e.g. ``finished:failed``) and its status details."""
        done = self.flwr("ls", "--run-id", run_id, CONNECTION, "--format", "json")
        try:
            run = json.loads(done.stdout)["runs"][0]
        except (json.JSONDecodeError, KeyError, IndexError):
            return "", done.stdout + done.stderr
        return str(run.get("status", "")), str(run.get("status-details", ""))

    def finish(self, run: Proc, timeout: float) -> RunOutcome:
        """Wait for the run to end (its streamed log ends with it); on timeout stop it, fail.

        Waiting on the stream rather than polling ``flwr ls`` keeps the CPU for the pods.
        """
        started = time.monotonic()
        run_id = self.run_id(run)
        try:
            wait_for(lambda: not run.alive(), timeout, f"run {run_id} to finish", 0.5)
        except TimeoutError as exc:
            self.flwr("stop", run_id, CONNECTION)
            run.stop()
            raise TimeoutError(f"{exc}; its log so far:\n{run.log()}") from exc
        seconds = time.monotonic() - started
        status, details = self.status(run_id)
        deadline = time.monotonic() + 30.0
        while not status.startswith("finished") and time.monotonic() < deadline:
            time.sleep(1.0)
            status, details = self.status(run_id)
        return RunOutcome(run_id, status, details, run.log(), seconds)

    @staticmethod
    def wait_for_log(proc: Proc, text: str, count: int = 1, timeout: float = 120.0) -> None:
        """Wait until ``text`` occurs ``count`` times in the process's log."""
        wait_for(
            lambda: proc.log().count(text) >= count or not proc.alive(),
            timeout,
            f"{text!r} x{count} in {proc.name}'s log",
            0.1,
        )
        if proc.log().count(text) < count:
            raise RuntimeError(f"{proc.name} exited before logging {text!r}:\n{proc.log()}")

    def dump_logs(self) -> str:
        """Every process log, for a failing assertion's message."""
        return "\n".join(f"===== {p.name}\n{p.log()[-4000:]}" for p in self.procs)


@contextlib.contextmanager
def cluster(workdir: Path, **kwargs: bool) -> Iterator[Cluster]:
    with Cluster(workdir, **kwargs) as c:
        yield c
