"""Dispatch ``fedplug <command>``; ``run`` hands its arguments to Hydra untouched."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from rich.console import Console
from rich.markup import escape

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
  submit CONNECTION [OVERRIDES] [--output-dir D]
                               run on a SuperLink (flwr run --stream); exit 1 unless it completes
  evaluate MODEL DATA          score a saved model on a labelled CSV/Parquet file
  evaluate MODEL --pods POD... score it on the pods' own data (per pod and overall)
  plugins                      list installed plugins by kind
  report SWEEP_DIR             compare the runs of a sweep (table and plot)
"""


def _parser() -> argparse.ArgumentParser:
    # The commands table is the help (it lists `run`, which Hydra parses, not argparse);
    # argparse's own list of subcommands would leave `run` out.
    parser = argparse.ArgumentParser(
        prog="fedplug",
        usage=USAGE.split("\n", 1)[0],
        description=USAGE.split("\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    # prog: argparse would otherwise build the subcommands' usage from the usage line.
    sub = parser.add_subparsers(
        dest="command", metavar="command", prog="fedplug", help=argparse.SUPPRESS
    )
    # Never parsed here (main hands `run` to Hydra first): listed so that an unknown
    # command's error names it among the choices.
    sub.add_parser("run", help="train across pods", add_help=False)
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
    submit = sub.add_parser(
        "submit",
        help="run the task on a SuperLink; exit 1 unless it completes",
        description="`flwr run APP CONNECTION --stream` with the overrides as its run config, "
        "then the run's final status from the SuperLink: exit 0 only when it is "
        "finished:completed (flwr run itself exits 0 after a failed run).",
    )
    submit.add_argument(
        "connection", metavar="CONNECTION", help="a SuperLink connection in $FLWR_HOME/config.toml"
    )
    submit.add_argument(
        "overrides", nargs="*", metavar="OVERRIDE", help="Hydra overrides, as for fedplug run"
    )
    submit.add_argument(
        "--output-dir",
        default="",
        help="where the ServerApp writes the outputs, on the SuperLink's machine "
        "(default: outputs/flwr-run/<time> there)",
    )
    submit.add_argument(
        "--app", default=None, help="the Flower App (default: this fedplug checkout)"
    )
    submit.add_argument(
        "--timeout",
        type=float,
        default=3600.0,
        help="seconds before the run is stopped and reported failed (default: 3600)",
    )
    evaluate = sub.add_parser(
        "evaluate", help="score a saved model on a labelled file, or on pods' own data"
    )
    evaluate.add_argument("model", metavar="MODEL")
    evaluate.add_argument("data", metavar="DATA", nargs="?", default=None)
    evaluate.add_argument(
        "--pods",
        nargs="+",
        default=None,
        metavar="POD",
        help="score on these pods' validation rows instead (names or pod files)",
    )
    evaluate.add_argument(
        "--secure",
        action="store_true",
        help="aggregate the pods' metrics securely (no per-pod figures)",
    )
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
        if ns.command == "submit":
            from ._submit import submit

            return submit(
                ns.connection,
                ns.overrides,
                output_dir=ns.output_dir,
                app=ns.app,
                timeout=ns.timeout,
            )
        if ns.command == "evaluate":
            from ._evaluate import evaluate

            return evaluate(ns.model, ns.data, pods=ns.pods, secure=ns.secure)
        if ns.command == "plugins":
            from ._plugins import plugins

            return plugins()
        if ns.command == "report":
            from ._report import report

            return report(ns.sweep_dir)
    except FedplugError as exc:
        # escape: a message naming e.g. pods.identifiers=[a,b] is text, not markup
        console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
        return 1
    return 2


def entry() -> None:
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader left early (`fedplug plugins | head`): no traceback; Python's own
        # flush at exit would raise again, so stdout goes to /dev/null first.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 0
    sys.exit(code)


if __name__ == "__main__":
    entry()
