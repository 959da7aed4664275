"""Pods that know each other: identity keys, approvals and pins, as `fedplug pod keys` does.

For tests and demos of pods that require secure aggregation, which must approve and pin
every peer (see ``Pod``'s checks). Real pod owners run ``fedplug pod keys`` each on their
own machine and exchange only the public keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from fedplug.secagg import IdentityKey


def pin_each_other(pod_files: Sequence[str | Path]) -> dict[str, str]:
    """Give each pod file an identity key and pin its approved peers' keys; returns the keys.

    A pod without ``approved_pods`` is made to approve every other pod of ``pod_files``; a
    pod that lists its approved pods keeps the list, and pins those of ``pod_files`` in it.
    Each key file is created next to its pod file (mode 0600) as ``<name>.identity.pem``.
    """
    files = [Path(f) for f in pod_files]
    configs = [yaml.safe_load(f.read_text()) for f in files]
    publics: dict[str, str] = {}
    for path, config in zip(files, configs, strict=True):
        name = str(config["name"])
        identity = IdentityKey.load_or_create(path.parent / f"{name}.identity.pem")
        publics[name] = identity.public_b64()
    for path, config in zip(files, configs, strict=True):
        name = str(config["name"])
        approved = config.get("approved_pods")
        if approved is None:
            approved = sorted(p for p in publics if p != name)
            config["approved_pods"] = approved
        config["identity"] = {
            "key_file": f"{name}.identity.pem",
            "pinned_keys": {p: publics[p] for p in approved if p in publics and p != name},
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    return publics
