"""``fedplug pod keys``: a pod's identity key and the lines its peers pin."""

from __future__ import annotations

from pathlib import Path

from fedplug._errors import PodConfigError


def pod_keys(pod_file: str) -> int:
    """Create the pod's identity key (0600) and print what its peers pin.

    Reads only the pod file's name and ``identity.key_file``, so it works on a pod file
    that does not yet pass the secure-aggregation checks it exists to satisfy.
    """
    from fedplug.data._yaml import read_yaml
    from fedplug.secagg import IdentityKey

    path = Path(pod_file).expanduser()
    data = read_yaml(path, what="pod file", error=PodConfigError, fix="check the pod file's path")
    name = data.get("name") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name:
        raise PodConfigError(f"pod file '{path}' has no name; add `name: <pod name>` to it.")
    identity = data.get("identity") or {}
    given = identity.get("key_file") if isinstance(identity, dict) else None
    relative = str(given) if given else f"{name}.identity.pem"
    key_path = Path(relative).expanduser()
    if not key_path.is_absolute():
        key_path = path.parent / key_path
    existed = key_path.exists()
    key = IdentityKey.load_or_create(key_path)
    if key_path.stat().st_mode & 0o077:
        raise PodConfigError(
            f"identity key '{key_path}' is readable or writable by other users; make it "
            f"private: chmod 600 '{key_path}'"
        )
    public = key.public_b64()
    lines = [
        f"identity key of pod {name!r}: {key_path} "
        f"({'existing' if existed else 'created, mode 0600'})",
        f"public key: {public}",
        "",
    ]
    if not given:
        lines += [f"add to {path}:", "identity:", f"  key_file: {relative}", ""]
    lines += [
        "each peer's owner adds this to their own pod file (with their other peers):",
        f"approved_pods: [{name}]",
        "identity:",
        "  pinned_keys:",
        f'    {name}: "{public}"',
    ]
    # Plain print: the key and the YAML must be copied exactly, never wrapped or styled.
    print("\n".join(lines))
    return 0
