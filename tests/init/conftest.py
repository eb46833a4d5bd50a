"""Fixtures for the shipyard-init tests."""

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from init_harness import InitRunner


@pytest.fixture
def init(tmp_path: Path) -> Iterator[InitRunner]:
    runner = InitRunner(tmp_path, uuid.uuid4().hex)
    try:
        yield runner
    finally:
        runner.cleanup()
