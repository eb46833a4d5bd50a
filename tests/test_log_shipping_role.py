"""The log_shipping role's handlers, rendered from the role's own files with
Ansible's templating, against the results its tasks register."""

from __future__ import annotations

from typing import Any

import yaml
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template
from helpers import ROOT

HANDLERS = ROOT / "roles/log_shipping/handlers/main.yml"
RESTART_AGENTS = "Restart the agents whose sources changed, and wait until they run again"


def handler(name: str) -> dict[str, Any]:
    handlers = yaml.safe_load(HANDLERS.read_text())
    return next(item for item in handlers if item["name"] == name)


def restarted(configs: list[dict[str, Any]], trust: list[dict[str, Any]]) -> list[str]:
    variables = {
        "log_shipping_agent_configs": {"results": configs},
        "log_shipping_agent_trust": {"results": trust},
    }
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template(handler(RESTART_AGENTS)["loop"]))


def test_each_agent_restarts_once_when_its_sources_and_trust_files_change() -> None:
    # A first run: both agents get new sources and three new trust files each.
    agents = ["shipyard-lamp", "shipyard-postgresql"]
    configs = [{"changed": True, "log_shipping_container": agent} for agent in agents]
    trust = [
        {"changed": True, "item": [agent, {"path": f"/trust/{n}"}]}
        for agent in agents
        for n in range(3)
    ]
    assert restarted(configs, trust) == agents


def test_only_the_agents_with_a_change_restart() -> None:
    configs = [
        {"changed": False, "log_shipping_container": "shipyard-lamp"},
        {"changed": False, "log_shipping_container": "shipyard-postgresql"},
    ]
    trust = [
        {"changed": False, "item": ["shipyard-lamp", {"path": "/trust/ca"}]},
        {"changed": True, "item": ["shipyard-postgresql", {"path": "/trust/ca"}]},
    ]
    assert restarted(configs, trust) == ["shipyard-postgresql"]
    assert restarted(configs[:0], trust[:0]) == []
