"""The log_shipping role with several collectors: its argument specs, and what it renders.

No engine: the argument specs are checked when the role starts, before its
first task, and the templates are rendered by Ansible on the controller and
judged by the agent's and the collector's own --check-config.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from logs_harness import PYTHON, ROOT, check_config

pytestmark = pytest.mark.slow  # ansible-playbook starts

BIN = Path(PYTHON).parent
ROLE = ROOT / "roles" / "log_shipping"
COLLECTORS = [
    {"host": "log-a", "name": "log-a"},
    {"host": "log-b", "port": 24230, "weight": 30, "standby": True},
]
RENDER = """
- name: Render the log_shipping templates
  hosts: localhost
  gather_facts: false
  vars_files: [{defaults}]
  vars:
    log_shipping_container: shipyard-lamp
    log_shipping_collector_gateways: ["172.17.0.1"]
    log_shipping_collector_matches: []
  tasks:
    - name: Render the agent's and the collector's configuration
      ansible.builtin.copy:
        dest: "{out}/{{{{ item }}}}"
        content: "{{{{ lookup('ansible.builtin.template', '{templates}/' ~ item ~ '.j2') }}}}"
        mode: "0600"
      loop: [log-agent.toml, collector.toml]
"""
INCLUDE = """
- name: Start the role
  hosts: localhost
  gather_facts: false
  roles: [log_shipping]
"""


def playbook(tmp_path: Path, text: str, extra: dict) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "play.yml"
    path.write_text(text)
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(ROOT / "roles"),
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    # Its own inventory: the project's reads the dev environment's fact.
    command = [str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local"]
    extra = {"ansible_python_interpreter": PYTHON, **extra}
    return subprocess.run(
        [*command, str(path), "--extra-vars", json.dumps(extra)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def render(tmp_path: Path, **extra: object) -> tuple[str, str]:
    text = RENDER.format(
        defaults=ROLE / "defaults" / "main.yml", out=tmp_path, templates=ROLE / "templates"
    )
    extra = {"log_shipping_security": False, "log_shipping_tls": False, **extra}
    run = playbook(tmp_path, text, extra)
    assert run.returncode == 0, run.stdout + run.stderr
    return (tmp_path / "log-agent.toml").read_text(), (tmp_path / "collector.toml").read_text()


def test_several_collectors_become_the_agents_servers_and_name_each_collector(tmp_path):
    agent, collector = render(tmp_path, log_shipping_collectors=COLLECTORS)
    assert "collector_host" not in agent
    assert agent.count("[[servers]]") == 2
    assert 'host = "log-b"\nport = 24230\nweight = 30\nstandby = true\n' in agent
    assert 'collector_name = "localhost"' in collector  # the inventory name
    for program, name in (("agent", "log-agent.toml"), ("collector", "collector.toml")):
        verdict = check_config(program, tmp_path / name)
        assert verdict.returncode == 0, verdict.stderr


def test_without_collectors_the_agents_configuration_is_unchanged(tmp_path):
    agent, collector = render(tmp_path)
    assert 'collector_host = "log-collector"\ncollector_port = 24224\n' in agent
    assert "[[servers]]" not in agent
    assert "collector_name" not in collector


def test_a_bad_server_is_refused_by_the_agent_naming_its_key(tmp_path):
    render(tmp_path, log_shipping_collectors=[{"host": "log-a"}, {"host": "log-a", "port": 0}])
    verdict = check_config("agent", tmp_path / "log-agent.toml")
    assert verdict.returncode == 78
    assert "agent.servers[1].port must be between 1 and 65535" in verdict.stderr


@pytest.mark.parametrize(
    ("collectors", "message"),
    [
        ([{"port": 24224}], "missing required arguments: host"),
        ([{"host": "log-a", "weight": "heavy"}], "weight"),
        ([{"host": "log-a", "prio": 1}], "prio"),
        ("log-a", "log_shipping_collectors"),
    ],
)
def test_the_argument_specs_refuse_a_bad_collector_list(tmp_path, collectors, message):
    run = playbook(tmp_path, INCLUDE, {"log_shipping_collectors": collectors})
    output = run.stdout + run.stderr
    assert run.returncode != 0
    assert "log_shipping_collectors" in output and message in output, output
