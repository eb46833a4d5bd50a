"""Fixtures for the log shipping tests: collectors, agents and moto, cleaned up always."""

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from logs_harness import Collector, MotoServer


@pytest.fixture
def collector_factory(tmp_path: Path) -> Iterator[Callable[..., Collector]]:
    started: list[Collector] = []

    def make(**settings: Any) -> Collector:
        workdir = tmp_path / f"collector{len(started)}"
        workdir.mkdir()
        collector = Collector(workdir, **settings)
        started.append(collector)
        return collector

    try:
        yield make
    finally:
        for collector in started:
            collector.kill()


@pytest.fixture
def collector(collector_factory: Callable[..., Collector]) -> Collector:
    return collector_factory().start()


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto")).start()
    try:
        yield server
    finally:
        server.stop()
