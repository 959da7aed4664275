"""Dispatch ``fedplug <command>``; ``run`` hands its arguments to Hydra untouched."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from rich.console import Console

from fedplug._errors import FedplugError

console = Console(stderr=True)

USAGE = """fedplug <command> [...]

commands:
  run [OVERRIDES] [-m]         train across pods (Hydra overrides, e.g. aggregator=secure)
  demo census-income [--dir D] write the census-income tutorial's two pods
  pod check POD.yaml           check a pod file and its data, print its schema
  pod keys POD.yaml            create the pod's identity key, print what its peers pin
  pod start POD.yaml --superlink HOST:PORT   check a pod, then serve it (fedplug's app only)
  schema agree POD... [-o FILE] [--vocabularies union|exact] [--dir D]
                               one schema file for the pods, from their published schemas
  evaluate MODEL DATA          score a saved model on a labelled CSV/Parquet file
  plugins                      list installed plugins by kind
  report SWEEP_DIR             compare the runs of a sweep (table and plot)
"""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fedplug", usage=USAGE)
    # prog: argparse would otherwise build the subcommands' usage from USAGE (garbled).
    sub = parser.add_subparsers(dest="command", metavar="command", prog="fedplug")
    demo = sub.add_parser("demo", help="write a tutorial's pods")
    demo.add_argument("name", choices=["census-income"])
    demo.add_argument(
        "--dir", default=None, help="pod directory (default: $FEDPLUG_POD_DIR or ./pods)"
    )
    pod = sub.add_parser("pod", help="check or start a pod")
    pod_sub = pod.add_subparsers(
        dest="pod_command", metavar="pod_command", required=True, prog="fedplug pod"
    )
    check = pod_sub.add_parser("check", help="check a pod file and its data")
    check.add_argument("pod_file")
    keys = pod_sub.add_parser("keys", help="create the pod's identity key, print what peers pin")
    keys.add_argument("pod_file")
    start = pod_sub.add_parser(
        "start",
        help="check a pod, then serve it: a SuperNode that runs only fedplug's app",
        description="Check the pod and its data, then serve it: a flower-supernode child "
        "process and this long-lived process, which answers every message with the fedplug "
        "installed here and keeps the pod's validated data in memory between messages.",
    )
    start.add_argument("pod_file", metavar="POD.yaml", help="the pod's YAML file")
    start.add_argument(
        "--superlink",
        required=True,
        metavar="HOST:PORT",
        help="the SuperLink's Fleet API address",
    )
    start.add_argument("--insecure", action="store_true", help="no TLS (local testing only)")
    start.add_argument(
        "--root-certificates", default=None, metavar="CA.pem", help="the CA certificate for TLS"
    )
    start.add_argument(
        "--auth-key",
        default=None,
        metavar="KEY",
        help="this SuperNode's private key for node authentication",
    )
    start.add_argument(
        "--port",
        type=int,
        default=None,
        help="local port of the SuperNode's Runtime API (default: a free one)",
    )
    schema = sub.add_parser("schema", help="agree on one schema across pods")
    schema_sub = schema.add_subparsers(
        dest="schema_command", metavar="schema_command", required=True
    )
    agree = schema_sub.add_parser(
        "agree",
        help="combine the pods' published schemas (metadata only) into one schema file",
    )
    agree.add_argument(
        "pods", nargs="+", metavar="POD", help="pod name, pod YAML file or published schema file"
    )
    agree.add_argument(
        "-o", "--output", default=None, help="schema file to write (default: print the YAML)"
    )
    agree.add_argument(
        "--vocabularies",
        choices=["union", "exact"],
        default="union",
        help="union: combine the pods' categories (default); exact: require them equal",
    )
    agree.add_argument(
        "--dir", default=None, help="pod directory (default: $FEDPLUG_POD_DIR or ./pods)"
    )
    evaluate = sub.add_parser("evaluate", help="score a saved model on a labelled file")
    evaluate.add_argument("model")
    evaluate.add_argument("data")
    sub.add_parser("plugins", help="list installed plugins")
    report = sub.add_parser("report", help="compare the runs of a sweep")
    report.add_argument("sweep_dir")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] == "run":
            from ._run import run_hydra

            return run_hydra(args[1:])
        ns = _parser().parse_args(args)
        if ns.command is None:
            console.print(USAGE)
            return 2
        if ns.command == "demo":
            from ._demo import demo

            return demo(ns.name, ns.dir)
        if ns.command == "pod":
            if ns.pod_command == "keys":
                from ._keys import pod_keys

                return pod_keys(ns.pod_file)
            from ._pod import pod_check, pod_start

            return pod_check(ns.pod_file) if ns.pod_command == "check" else pod_start(ns)
        if ns.command == "schema":
            from ._schema import schema_agree

            return schema_agree(ns.pods, ns.output, ns.vocabularies, ns.dir)
        if ns.command == "evaluate":
            from ._evaluate import evaluate

            return evaluate(ns.model, ns.data)
        if ns.command == "plugins":
            from ._plugins import plugins

            return plugins()
        if ns.command == "report":
            from ._report import report

            return report(ns.sweep_dir)
    except FedplugError as exc:
        console.print(f"[bold red]error:[/] {exc}", highlight=False)
        return 1
    return 2


def entry() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entry()
