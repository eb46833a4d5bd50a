"""Service-file validation: every mistake exits 78 (EX_CONFIG) and names the key."""

import subprocess

import pytest
from init_harness import INIT, INIT_PYTHON, InitRunner

EX_CONFIG = 78


def svc(name: str = "a", **keys: object) -> dict[str, object]:
    return {"name": name, "command": ["/bin/true"], **keys}


BAD_CONFIGS = [
    pytest.param(
        {}, [svc(stop_timout=1.0)], ["service 'a'", "unknown key 'stop_timout'"], id="unknown-key"
    ),
    pytest.param(
        {"stop_budgt": 5.0},
        [svc()],
        ["[supervisor]", "unknown key 'stop_budgt'"],
        id="unknown-supervisor-key",
    ),
    pytest.param(
        {},
        [svc(stop_signal="TERMINATE")],
        ["service 'a'", "key 'stop_signal'", "TERMINATE"],
        id="bad-signal",
    ),
    pytest.param(
        {}, [svc(stop_signal=15)], ["service 'a'", "key 'stop_signal'"], id="signal-not-string"
    ),
    pytest.param(
        {},
        [svc("a", stop_timeout=5.0), svc("b", stop_timeout=5.0)],
        ["key 'stop_budget'", "stop_timeout", "a=5", "b=5", "10"],
        id="stop-budget-default",
    ),
    pytest.param(
        {"stop_budget": 2.0},
        [svc("a", stop_timeout=3.0)],
        ["key 'stop_budget'", "a=3"],
        id="stop-budget-custom",
    ),
    pytest.param(
        {}, [svc("a"), svc("a")], ["service 'a'", "key 'name'", "duplicate"], id="duplicate-name"
    ),
    pytest.param({}, [svc("a b")], ["service #1", "key 'name'"], id="bad-name"),
    pytest.param({}, [svc("shipyard-init")], ["key 'name'"], id="reserved-name"),
    pytest.param({}, [{"name": "a"}], ["service 'a'", "key 'command'", "required"], id="no-cmd"),
    pytest.param(
        {}, [svc(command="/bin/true")], ["service 'a'", "key 'command'", "list"], id="cmd-string"
    ),
    pytest.param({}, [svc(command=["/bin/echo", 1])], ["key 'command'"], id="cmd-item-type"),
    pytest.param({}, [svc(type="daemon")], ["service 'a'", "key 'type'", "daemon"], id="bad-type"),
    pytest.param(
        {}, [svc(start_timeout="30")], ["key 'start_timeout'", "string"], id="timeout-type"
    ),
    pytest.param({}, [svc(stop_timeout=-1.0)], ["key 'stop_timeout'"], id="negative-timeout"),
    pytest.param({}, [svc(critical="yes")], ["key 'critical'"], id="critical-type"),
    pytest.param({}, [svc(order=1.5)], ["key 'order'", "integer"], id="order-type"),
    pytest.param(
        {},
        [svc(ready={"tcp": "127.0.0.1:1", "file": "/x"})],
        ["key 'ready'", "exactly one"],
        id="two-probes",
    ),
    pytest.param({}, [svc(ready={"ftp": "x"})], ["key 'ready.ftp'"], id="unknown-probe"),
    pytest.param(
        {}, [svc(ready={"tcp": "localhost"})], ["key 'ready.tcp'", "host:port"], id="bad-tcp"
    ),
    pytest.param({}, [svc(ready={"http": "https://x/"})], ["key 'ready.http'"], id="https"),
    pytest.param(
        {},
        [svc(type="oneshot", ready={"file": "/x"})],
        ["service 'a'", "key 'ready'", "longrun"],
        id="oneshot-probe",
    ),
    pytest.param(
        {}, [svc(user="no-such-user-here")], ["key 'user'", "no such user"], id="unknown-user"
    ),
    pytest.param(
        {}, [svc(environment={"PORT": 80})], ["key 'environment.PORT'"], id="env-value-type"
    ),
    pytest.param({}, [svc(workdir="srv")], ["key 'workdir'", "absolute"], id="relative-workdir"),
    pytest.param(
        {"status_file": "status.json"}, [svc()], ["key 'status_file'"], id="relative-status-file"
    ),
    pytest.param(
        {"ready_file": "ready"}, [svc()], ["key 'ready_file'", "absolute"], id="relative-ready"
    ),
    pytest.param(
        {"ready_file": "/run/x.json", "status_file": "/run/x.json"},
        [svc()],
        ["key 'ready_file'", "differ"],
        id="ready-is-status",
    ),
    pytest.param(
        {"secret_variables": "DB_PASSWORD"},
        [svc()],
        ["[supervisor]", "key 'secret_variables'", "list"],
        id="secrets-not-a-list",
    ),
    pytest.param(
        {"secret_variables": ["DB PASSWORD"]},
        [svc()],
        ["key 'secret_variables'", "'DB PASSWORD'"],
        id="secret-pattern",
    ),
    pytest.param({}, [svc(secrets="yes")], ["key 'secrets'", "true or false"], id="secrets-type"),
    pytest.param(
        {}, [svc(pass_arguments=1)], ["key 'pass_arguments'", "true or false"], id="args-type"
    ),
    pytest.param({}, [], ["key 'service'", "at least one"], id="no-services"),
    pytest.param(
        {}, [svc(profiles="web")], ["service 'a'", "key 'profiles'", "list"], id="profiles-type"
    ),
    pytest.param(
        {}, [svc(profiles=["Web Server"])], ["key 'profiles'", "'Web Server'"], id="profile-name"
    ),
]


@pytest.mark.parametrize(("supervisor", "services", "expected"), BAD_CONFIGS)
def test_check_config_rejects_mistakes_naming_the_key(
    init: InitRunner,
    supervisor: dict[str, object],
    services: list[dict[str, object]],
    expected: list[str],
) -> None:
    init.write_config(services, **supervisor)
    result = init.cli("--check-config")
    assert result.returncode == EX_CONFIG, result.stderr
    for fragment in expected:
        assert fragment in result.stderr
    assert result.stderr.startswith("shipyard-init | config error: ")


def test_check_config_accepts_every_key(init: InitRunner) -> None:
    init.write_config(
        [
            svc(
                "web",
                order=20,
                stop_timeout=2.0,
                ready={"http": "http://127.0.0.1:8080/"},
                profiles=["web", "all-in-one"],
            ),
            {
                "name": "db-init",
                "type": "oneshot",
                "command": ["/bin/true"],
                "user": "nobody",
                "environment": {"PGDATA": "/var/lib/postgresql/data"},
                "workdir": "/",
                "order": 10,
                "start_timeout": 60.0,
                "stop_signal": "INT",
                "stop_timeout": 5,
                "secrets": True,
                "pass_arguments": True,
            },
            svc(
                "db",
                order=10,
                critical=True,
                stop_signal="SIGINT",
                stop_timeout=4.0,
                ready={"command": ["/bin/true"]},
                ready_interval=0.5,
            ),
            svc("agent", critical=False, stop_timeout=1.0, ready={"unix": "/run/agent.sock"}),
            svc("cache", order=30, stop_timeout=1.0, ready={"tcp": "[::1]:6379"}),
            svc("flag", order=30, stop_timeout=0, ready={"file": "/run/flag"}),
        ],
        stop_budget=9.0,
        secret_variables=["DB_PASSWORD", "APP_*_KEY", "TOKEN_[AB]?"],
    )
    result = init.cli("--check-config")
    assert result.returncode == 0, result.stderr
    # Sorted by (order, position in file).
    assert "6 services: agent, db-init, db, web, cache, flag" in result.stdout


def test_broken_toml_is_a_config_error(init: InitRunner) -> None:
    init.config_path.write_text('[[service]]\nname = "a"\ncommand = ["/bin/true"\n')
    result = init.cli("--check-config")
    assert result.returncode == EX_CONFIG
    assert "invalid TOML" in result.stderr


def test_unknown_top_level_table(init: InitRunner) -> None:
    init.config_path.write_text('[[services]]\nname = "a"\ncommand = ["/bin/true"]\n')
    result = init.cli("--check-config")
    assert result.returncode == EX_CONFIG
    assert "unknown key 'services'" in result.stderr


def test_missing_config_file(init: InitRunner) -> None:
    result = init.cli("--check-config")
    assert result.returncode == EX_CONFIG
    assert "cannot read" in result.stderr
    assert str(init.config_path) in result.stderr


def test_run_with_bad_config_starts_nothing(init: InitRunner) -> None:
    init.write_config([init.service("a", stop_timeout=1.0, stop_signal="BOGUS")])
    assert init.run_to_exit() == EX_CONFIG
    assert "key 'stop_signal'" in init.stderr
    assert init.events() == []


def test_status_with_bad_config_is_plain_unhealthy(init: InitRunner) -> None:
    # Docker reserves health-check codes above 1.
    init.write_config([svc(bogus=True)])
    assert init.cli("status").returncode == 1


def test_config_path_from_environment(init: InitRunner) -> None:
    init.write_config([svc()])
    env = {**init.env, "SHIPYARD_INIT_CONFIG": str(init.config_path)}
    result = subprocess.run(
        [INIT_PYTHON, str(INIT), "--check-config"],
        capture_output=True,
        text=True,
        timeout=10,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert str(init.config_path) in result.stdout


# ------------------------------------------------------------------ profiles


def profiled(init: InitRunner) -> None:
    init.write_config(
        [
            svc("prepare", type="oneshot"),
            svc("db", profiles=["db"], stop_timeout=1.0),
            svc("web", profiles=["web"], stop_timeout=1.0),
            svc("agent", stop_timeout=1.0),
            svc("cache", profiles=["web", "db"], stop_timeout=1.0),
        ]
    )


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        (None, "prepare, db, web, agent, cache"),
        ("", "prepare, db, web, agent, cache"),
        ("web", "prepare, web, agent, cache"),
        ("db", "prepare, db, agent, cache"),
        (" db, web ", "prepare, db, web, agent, cache"),
    ],
)
def test_profiles_select_their_services_and_those_of_none(
    init: InitRunner, selection: str | None, expected: str
) -> None:
    profiled(init)
    init.env.pop("SHIPYARD_INIT_PROFILES", None)
    if selection is not None:
        init.env["SHIPYARD_INIT_PROFILES"] = selection
    result = init.cli("--check-config")
    assert result.returncode == 0, result.stderr
    assert f"services: {expected})" in result.stdout


def test_an_unknown_profile_is_a_config_error_naming_the_variable(init: InitRunner) -> None:
    profiled(init)
    init.env["SHIPYARD_INIT_PROFILES"] = "web,wbe"
    result = init.cli("--check-config")
    assert result.returncode == EX_CONFIG
    assert "SHIPYARD_INIT_PROFILES: unknown profile 'wbe'" in result.stderr
    assert "profiles: db, web" in result.stderr
    # And a run starts nothing.
    init.start()
    assert init.wait(10) == EX_CONFIG
    assert init.events("start") == []
