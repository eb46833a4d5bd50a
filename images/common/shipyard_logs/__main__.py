"""shipyard-logs COMMAND: agent, collector or report, one entry point for all three."""

from __future__ import annotations

import sys
from collections.abc import Callable

COMMANDS = ("agent", "collector", "report")
USAGE = "usage: shipyard-logs {agent|collector|report} [--help | OPTIONS]"


def command(name: str) -> Callable[[list[str] | None], int]:
    # Imported on demand: the agent's images carry no boto3, which report and collector use.
    if name == "agent":
        from shipyard_logs.agent.cli import main
    elif name == "collector":
        from shipyard_logs.collector import main
    else:
        from shipyard_logs.report import main
    return main


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if args else 64
    if args[0] not in COMMANDS:
        print(f"shipyard-logs: unknown command {args[0]!r}\n{USAGE}", file=sys.stderr)
        return 64
    return command(args[0])(args[1:])


if __name__ == "__main__":
    sys.exit(main())
