"""site.yml's first play: a broken configuration fails before anything changes.

That site.yml converges and then changes nothing is shown by .ci/run (make up
twice) and by molecule/default (converge, idempotence, verify).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import environment_state, run_playbook

pytestmark = pytest.mark.docker


@pytest.mark.parametrize(
    ("extra_vars", "message"),
    [
        ({"dev_environment_htpp_port": 8081}, "Unknown variable(s): dev_environment_htpp_port"),
        ({"log_shipping_colector_port": 1}, "Unknown variable(s): log_shipping_colector_port"),
        ({"dev_environment_http_port": "eighty"}, "dev_environment_http_port"),
        ({"db_clients_build_headers": "maybe"}, "db_clients_build_headers"),
        ({"mariadb_provision_users": [{"name": "app", "pasword": "x"}]}, "pasword"),
        ({"log_shipping_matches": [{"pattern": "**", "type": "ftp"}]}, "log_shipping_matches"),
    ],
)
def test_broken_configuration_fails_before_any_change(
    docker_engine: str, extra_vars: dict[str, object], message: str
) -> None:
    before = environment_state()
    run = run_playbook("site.yml", extra_vars)
    assert run.rc != 0
    assert message in run.raw, run.raw[-3000:]
    # Only the preflight play ran: no other play's task appears in the report.
    assert "Prepare the Docker host" not in run.raw
    assert environment_state() == before


def test_one_image_by_tag_uses_the_resolved_base(base_image: str) -> None:
    """`--tags lamp` must still resolve the base image, or the build arg (and so the
    input hash) changes and the build goes looking for debian:trixie-slim."""
    assert run_playbook("playbooks/images.yml").rc == 0
    run = run_playbook("playbooks/images.yml", tags="lamp")
    assert run.rc == 0, run.raw
    assert run.facts["base_image_resolved"] == base_image
    assert run.changed == 0, run.raw


@pytest.mark.parametrize(
    ("variable", "content", "message"),
    [
        ("backup_s3_access_key_id_file", None, "does not exist or is empty"),
        ("backup_s3_secret_access_key_file", "", "does not exist or is empty"),
        ("backup_s3_ca_file", None, "does not exist"),
    ],
)
def test_a_missing_or_empty_backup_file_fails_naming_its_variable(
    docker_engine: str, tmp_path: Path, variable: str, content: str | None, message: str
) -> None:
    path = tmp_path / "given"
    if content is not None:
        path.write_text(content)
    before = environment_state()
    run = run_playbook("playbooks/environment.yml", {variable: str(path)})
    assert run.rc != 0
    assert f"{variable}: {path} {message}" in run.raw, run.raw[-3000:]
    assert environment_state() == before
