"""``fedplug pod keys``: the identity key a secure pod needs, and what its peers paste."""

from __future__ import annotations

import stat

import yaml

from fedplug.cli import main
from fedplug.data import Pod
from fedplug.secagg import IdentityKey


def _pod_file(directory, name: str, extra: dict | None = None):  # noqa: ANN001, ANN202
    (directory / f"{name}.csv").write_text("x,y\n1,a\n2,b\n3,a\n4,b\n")
    config = {"name": name, "datasource": {"type": "csv", "path": f"{name}.csv"}, **(extra or {})}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_pod_keys_creates_a_private_key_and_prints_the_lines_peers_pin(tmp_path, capsys) -> None:
    a = _pod_file(tmp_path, "hospital-a")
    assert main(["pod", "keys", str(a)]) == 0
    out = capsys.readouterr().out
    key_file = tmp_path / "hospital-a.identity.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    public = IdentityKey.load_or_create(key_file).public_b64()
    assert f"public key: {public}" in out
    assert "key_file: hospital-a.identity.pem" in out  # the line its own file lacks
    # A second run keeps the key, and says so.
    assert main(["pod", "keys", str(a)]) == 0
    again = capsys.readouterr().out
    assert "(existing)" in again and public in again

    # The printed lines, pasted into a peer's file, make a valid secure pod.
    pasted = yaml.safe_load(out.split("(with their other peers):\n", 1)[1])
    b = _pod_file(tmp_path, "hospital-b", {"policy": {"require_secure_aggregation": True}})
    assert main(["pod", "keys", str(b)]) == 0
    capsys.readouterr()
    config = yaml.safe_load(b.read_text())
    config.update(pasted)
    config["identity"]["key_file"] = "hospital-b.identity.pem"
    b.write_text(yaml.safe_dump(config))
    pod = Pod.from_yaml(b)
    pod.check()
    assert pod.pinned_keys == {"hospital-a": public} and pod.approved_pods == ("hospital-a",)


def test_pod_keys_uses_the_key_file_the_pod_names(tmp_path, capsys) -> None:
    a = _pod_file(tmp_path, "a", {"identity": {"key_file": "keys/a.pem"}})
    assert main(["pod", "keys", str(a)]) == 0
    out = capsys.readouterr().out
    assert (tmp_path / "keys" / "a.pem").is_file() and "add to" not in out


def _err(capsys) -> str:  # noqa: ANN001
    # The console wraps long lines at its width; compare the words.
    return " ".join(capsys.readouterr().err.split())


def test_pod_keys_errors(tmp_path, capsys) -> None:
    assert main(["pod", "keys", str(tmp_path / "missing.yaml")]) == 1
    assert "missing.yaml" in _err(capsys)
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text("datasource: {type: csv, path: x.csv}\n")
    assert main(["pod", "keys", str(nameless)]) == 1
    assert "has no name" in _err(capsys)
    loose = _pod_file(tmp_path, "loose", {"identity": {"key_file": "loose.pem"}})
    (tmp_path / "loose.pem").write_bytes(IdentityKey.generate().to_pem())
    (tmp_path / "loose.pem").chmod(0o644)
    assert main(["pod", "keys", str(loose)]) == 1
    assert "chmod 600" in _err(capsys)
