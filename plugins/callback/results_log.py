"""Append every task result, as callbacks see it, to a JSON-lines file.

The default callback shows a result in full only at -v and its module
arguments only at -vvv; this records both for every task at no cost to the
screen, so a scan of the file sees what the most verbose run would print.
Results of no_log tasks arrive censored, as they would on the screen.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = """
name: results_log
type: aggregate
short_description: Append every task result to a JSON-lines file
description:
  - One JSON object per result (time, playbook, play, host, task, action, status, result),
    module arguments included, censored where the task has no_log.
options:
  path:
    description: The file; nothing is written when it is empty.
    type: path
    default: ""
    env:
      - name: SHIPYARD_RESULTS_LOG
    ini:
      - section: callback_results_log
        key: path
"""


class CallbackModule(CallbackBase):
    """Record each result; the file is created 0600."""

    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "results_log"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self) -> None:
        super().__init__()
        self._playbook = ""
        self._play = ""

    def _write(self, result: Any, status: str) -> None:  # noqa: ANN401 (Ansible's result type)
        path = self.get_option("path")
        if not path:
            return
        record = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "playbook": self._playbook,
            "play": self._play,
            "host": result._host.get_name(),
            "task": result._task.get_name(),
            "action": result._task.action,
            "status": status,
            "result": result._result,
        }
        os.makedirs(os.path.dirname(path), exist_ok=True)  # noqa: PTH103, PTH120
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as out:
            out.write(json.dumps(record, default=str) + "\n")

    def v2_playbook_on_start(self, playbook: Any) -> None:  # noqa: ANN401
        self._playbook = playbook._file_name

    def v2_playbook_on_play_start(self, play: Any) -> None:  # noqa: ANN401
        self._play = play.get_name()

    def v2_runner_on_ok(self, result: Any) -> None:  # noqa: ANN401
        self._write(result, "ok")

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:  # noqa: ANN401
        self._write(result, "ignored" if ignore_errors else "failed")

    def v2_runner_on_skipped(self, result: Any) -> None:  # noqa: ANN401
        self._write(result, "skipped")

    def v2_runner_on_unreachable(self, result: Any) -> None:  # noqa: ANN401
        self._write(result, "unreachable")

    def v2_runner_item_on_ok(self, result: Any) -> None:  # noqa: ANN401
        self._write(result, "item ok")

    def v2_runner_item_on_failed(self, result: Any) -> None:  # noqa: ANN401
        self._write(result, "item failed")
