"""`shipyard-logs agent`: load the configuration, run the agent until a signal stops it."""

from __future__ import annotations

import signal
from collections.abc import Iterator

from .. import agent as package
from ..config import config_from_cli
from .config import load_config
from .daemon import Agent


def iter_signals() -> Iterator[signal.Signals]:
    yield from (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def main(argv: list[str] | None = None) -> int:
    config = config_from_cli(
        "shipyard-log-agent",
        str(package.__doc__).split("\n")[0],
        "SHIPYARD_AGENT_CONFIG",
        load_config,
        argv,
    )
    if isinstance(config, int):
        return config
    agent = Agent(config)
    for signum in iter_signals():
        signal.signal(signum, lambda *_: agent.stop.set())
    return agent.run()
