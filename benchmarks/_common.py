"""Shared helpers: machine/version records and the JSON / markdown / plot writers."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError):
        mem = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1) if mem else None,
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in ("flwr", "torch", "numpy", "cryptography", "pandas", "ray", "fedplug"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "?"))
        except Exception:  # noqa: BLE001 - a missing package is recorded, not fatal
            out[name] = "not installed"
    return out


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def target(value: float, op: str, bound: float) -> dict[str, Any]:
    """One target check: ``value op bound`` with ``op`` "<=" or ">="."""
    met = value <= bound if op == "<=" else value >= bound
    return {"value": value, "op": op, "bound": bound, "met": met}


def md_targets(checks: dict[str, dict[str, Any]], title: str = "Targets") -> str:
    """The checks of :func:`target` as a markdown list (empty without checks)."""
    if not checks:
        return ""
    return f"\n\n{title}:\n\n" + "\n".join(
        f"- {name}: {c['value']:.2f} (target {c['op']} {c['bound']}): "
        f"{'met' if c['met'] else 'MISSED'}"
        for name, c in checks.items()
    )


def md_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            if v != v:
                return "n/a"
            return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(
    name: str,
    *,
    params: dict[str, Any],
    results: Any,
    markdown: str,
    plot: Any | None = None,
    started: float | None = None,
) -> dict[str, Path]:
    """Write ``results/<name>.json``, ``.md`` and (given a matplotlib figure) ``.png``."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    record = {
        "benchmark": name,
        "command": " ".join(["python", *sys.argv]),
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "wall_seconds": round(time.time() - started, 1) if started else None,
        "machine": machine(),
        "versions": versions(),
        "parameters": params,
        "results": results,
    }
    paths = {"json": RESULTS / f"{name}.json", "md": RESULTS / f"{name}.md"}
    paths["json"].write_text(json.dumps(record, indent=2, default=float) + "\n")
    m, v = record["machine"], record["versions"]
    header = (
        f"# {name}\n\n`{record['command']}` on {m['cpu']} ({m['cores']} cores), "
        f"Python {v['python']}, flwr {v['flwr']}, torch {v['torch']}, numpy {v['numpy']}, "
        f"cryptography {v['cryptography']}; {record['date']}.\n\n"
    )
    paths["md"].write_text(header + markdown.rstrip() + "\n")
    if plot is not None:
        paths["png"] = RESULTS / f"{name}.png"
        plot.tight_layout()
        plot.savefig(paths["png"], dpi=110)
    for p in paths.values():
        print(f"wrote {p}")
    return paths
