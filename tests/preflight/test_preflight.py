"""Preflight covers every role: one bad value per argument-spec entry, each named.

From every roles/*/meta/argument_specs.yml (every entry point), for each
option and each sub-option of a list of dicts, the test generates a bad value
of each kind the entry allows:
- a mistyped name (its last letter doubled);
- a value of the wrong type (a word for a number or a boolean, a mapping for
  a list, a word for a mapping, a list for a string or a path);
- a value outside its choices;
- a number out of its range (a port above 65535, any other number below 0).
playbooks/preflight.yml runs once per kind with every bad value of that kind
(it reports all problems at once) and must name each one. A run with the
generated good values passes that check, so every failure is a bad value's
doing. Nothing here lists roles or options: a new role is covered as soon as
it has its argument specs, and a role without them fails the first test.

Reserved names, which no spec can express, fail in preflight too (each
provisioning role's tasks/validate.yml), naming the variable and the rule.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import pytest
import yaml
from helpers import ROOT, run_playbook

ROLES = ROOT / "roles"
NUMBER_WORD, BOOL_WORD, DICT_WORD, NO_CHOICE = (
    "not-a-number",
    "not-a-bool",
    "not-a-mapping",
    "not-a-choice",
)


def options() -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """{option: spec} over every role and entry point, and {option: its role}."""
    out: dict[str, dict[str, Any]] = {}
    owner: dict[str, str] = {}
    for path in sorted(ROLES.glob("*/meta/argument_specs.yml")):
        for entry in yaml.safe_load(path.read_text())["argument_specs"].values():
            out.update(entry.get("options") or {})
            owner.update(dict.fromkeys(entry.get("options") or {}, path.parent.parent.name))
    return out, owner


OPTIONS, OWNER = options()
# The roles whose variables describe the environment the rest of the
# configuration reads: preflight checks them first, and stops at a bad one.
FACT_ROLES = yaml.safe_load((ROOT / "playbooks/preflight.yml").read_text())[0]["vars"][
    "preflight_fact"
]["from_roles"]


TYPES: dict[str, type | tuple[type, ...]] = {
    "str": str,
    "path": str,
    "int": int,
    "float": (int, float),
    "bool": bool,
    "list": list,
    "dict": dict,
}


def good(spec: dict[str, Any]) -> object:
    """A value the spec accepts (and the roles' own checks, for the lists of dicts).

    The spec's default where it is a value of the option's type (some say in
    words what the default is): the environment's description checks its
    values against each other and the image manifests (every secret a
    manifest names must be generated, for one).
    """
    kind = spec.get("type", "str")
    choices = spec.get("choices")
    default = spec.get("default")
    elements_are_dicts = kind == "list" and spec.get("elements") == "dict"
    if (
        not elements_are_dicts
        and isinstance(default, TYPES.get(kind, object))
        and (not choices or kind == "list" or default in choices)
    ):
        return default
    if kind == "list":
        if spec.get("elements") == "dict":
            return [{k: good(s) for k, s in (spec.get("options") or {}).items()}]
        return [choices[0] if choices else "x"]
    if choices:
        return choices[0]
    return {"int": 1, "float": 1.5, "bool": True, "dict": {}, "path": "/x"}.get(kind, "preflight-x")


def wrong_type(spec: dict[str, Any]) -> object | None:
    """A value of the wrong type; None where any value converts (raw)."""
    return {
        "int": NUMBER_WORD,
        "float": NUMBER_WORD,
        "bool": BOOL_WORD,
        "list": {"a": "mapping"},
        "dict": DICT_WORD,
        "str": ["a", "list"],
        "path": ["a", "list"],
    }.get(spec.get("type", "str"))


def out_of_range(name: str, spec: dict[str, Any]) -> tuple[object, str] | None:
    """A number preflight's ranges refuse, and the rule it must say; None for no number."""
    if spec.get("type") not in ("int", "float"):
        return None
    if name == "port" or name.endswith("_port"):
        return 65536, "must be a TCP port, 1 to 65535, not 65536"
    return -1, "must be 0 or more, not -1"


def pytype(value: object) -> str:
    return type(value).__name__


def choices_words(name: str, spec: dict[str, Any]) -> str:
    """How Ansible's validator refuses NO_CHOICE for an option with choices."""
    listed = ", ".join(str(c) for c in spec["choices"])
    if spec.get("type") == "list":
        return f"value of {name} must be one or more of: {listed}. Got no match for: {NO_CHOICE}"
    return f"value of {name} must be one of: {listed}, got: {NO_CHOICE}"


def typo(name: str, taken: set[str]) -> str:
    mistyped = name + name[-1]
    assert mistyped not in taken, f"the typo of {name} is a real option"
    return mistyped


@dataclass
class Bad:
    """One generated bad value: the variables to set, and what preflight must say about it."""

    kind: str
    entry: str
    extra: dict[str, object]
    expect: str

    @property
    def role(self) -> str:
        return OWNER[self.entry.split(".")[0]]


def bad_values() -> Iterator[Bad]:
    taken = set(OPTIONS)
    for name, spec in OPTIONS.items():
        mistyped = typo(name, taken)
        yield Bad("typo", name, {mistyped: good(spec)}, mistyped)
        value = wrong_type(spec)
        if value is not None:
            if spec.get("type", "str") in ("str", "path"):
                expect = f'argument "{name}" must be a string, not a {pytype(value)}'
            else:
                expect = (
                    f"argument '{name}' is of type {pytype(value)} and we were unable to convert"
                )
            yield Bad("type", name, {name: value}, expect)
        if spec.get("choices"):
            value = [NO_CHOICE] if spec.get("type") == "list" else NO_CHOICE
            yield Bad("choices", name, {name: value}, choices_words(name, spec))
        bad_number = out_of_range(name, spec)
        if bad_number:
            yield Bad("range", name, {name: bad_number[0]}, f'argument "{name}" {bad_number[1]}')
        if spec.get("type") == "list" and spec.get("elements") == "dict":
            subs = spec.get("options") or {}
            base = good(spec)[0]  # type: ignore[index]
            for sub, sub_spec in subs.items():
                entry = f"{name}.{sub}"
                mistyped = typo(sub, set(subs))
                yield Bad(
                    "typo",
                    entry,
                    {name: [base | {mistyped: good(sub_spec)}]},
                    f"{name}.{mistyped}",
                )
                value = wrong_type(sub_spec)
                if value is not None:
                    if sub_spec.get("type", "str") in ("str", "path"):
                        expect = f"{name}[0].{sub} must be a string, not a {pytype(value)}"
                    else:
                        expect = f"argument '{sub}' is of type {pytype(value)} found in '{name}'."
                    yield Bad("type", entry, {name: [base | {sub: value}]}, expect)
                if sub_spec.get("choices"):
                    value = [NO_CHOICE] if sub_spec.get("type") == "list" else NO_CHOICE
                    expect = f"{choices_words(sub, sub_spec)} found in {name}"
                    yield Bad("choices", entry, {name: [base | {sub: value}]}, expect)
                bad_number = out_of_range(sub, sub_spec)
                if bad_number:
                    yield Bad(
                        "range",
                        entry,
                        {name: [base | {sub: bad_number[0]}]},
                        f"{name}[0].{sub} {bad_number[1]}",
                    )


BAD = list(bad_values())


def is_elements(value: object) -> bool:
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def merged(kind: str) -> list[tuple[dict[str, Any], list[Bad]]]:
    """The bad values of one kind in as few sets of extra vars as they fit in.

    One variable holds one value, but a list of dicts holds many bad
    elements side by side; a set takes a bad value when its variable is free
    there, or when both are such lists. The values the fact is made from go in
    sets of their own, as preflight stops at them before checking the rest.
    """
    runs: list[tuple[dict[str, Any], list[Bad]]] = []
    for b in (replace(b) for b in BAD if b.kind == kind):
        for run in runs:
            extra, bads = run
            if (bads[0].role in FACT_ROLES) == (b.role in FACT_ROLES) and all(
                k not in extra or (is_elements(v) and is_elements(extra[k]))
                for k, v in b.extra.items()
            ):
                break
        else:
            runs.append(({}, []))
            extra, bads = runs[-1]
        for key, value in b.extra.items():
            if key in extra:
                # The element's index in the merged list, where the message gives one.
                b.expect = b.expect.replace(f"{key}[0].", f"{key}[{len(extra[key])}].")
                extra[key].append(value[0])
            else:
                extra[key] = list(value) if is_elements(value) else value
        bads.append(b)
    return runs


def spec_report(messages: list[str]) -> str:
    """The preflight check's own message: the spec errors name their role."""
    found = [m for m in messages if "Unknown variable(s)" in m or "(role " in m]
    return "\n".join(found)


def test_every_role_has_argument_specs() -> None:
    roles = sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir())
    missing = [r for r in roles if not (ROLES / r / "meta" / "argument_specs.yml").is_file()]
    assert roles and not missing, f"roles without meta/argument_specs.yml: {missing}"
    assert len(OPTIONS) > 50 and {b.kind for b in BAD} == {"typo", "type", "choices", "range"}


def test_generated_good_values_pass_the_spec_check() -> None:
    """The generated good values of every option at once: the spec check passes."""
    extra = {name: good(spec) for name, spec in OPTIONS.items()}
    run = run_playbook("playbooks/preflight.yml", extra)
    assert "All assertions passed" in run.messages, run.raw[-4000:]
    assert not spec_report(run.messages), spec_report(run.messages)


@pytest.mark.parametrize("kind", ["typo", "type", "choices", "range"])
def test_each_bad_value_fails_naming_it(kind: str) -> None:
    runs = merged(kind)
    assert runs
    for extra, bads in runs:
        run = run_playbook("playbooks/preflight.yml", extra)
        assert run.rc != 0
        message = spec_report(run.messages)
        unnamed = [f"{b.entry}: {b.expect}" for b in bads if b.expect not in message]
        assert not unnamed, (
            f"{len(unnamed)} of {len(bads)} bad values not named:\n"
            + "\n".join(unnamed[:40])
            + f"\n--- preflight said:\n{message[:6000]}"
        )


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        (
            {
                "postgresql_provision_users": [
                    {"name": "pg_app", "password": "x"},
                    {"name": "public", "password": "x"},
                    {"name": "none", "password": "x"},
                    {"name": "current_user", "password": "x"},
                ],
                "postgresql_provision_databases": [{"name": "template1"}],
            },
            [
                'postgresql_provision_users[0].name "pg_app": role names starting with pg_ are',
                'postgresql_provision_users[1].name "public" is reserved',
                'postgresql_provision_users[2].name "none" is reserved',
                'postgresql_provision_users[3].name "current_user" is reserved',
                'postgresql_provision_databases[0].name "template1" is a template database',
            ],
        ),
        (
            {
                "mariadb_provision_users": [
                    {"name": "root", "password": "x", "host": "%"},
                    {"name": "mariadb.sys", "password": "x"},
                    {"name": "Mysql", "password": "x"},
                    {"name": "app", "password": "x", "db": "mysql"},
                ],
                "mariadb_provision_databases": [{"name": "information_schema"}],
            },
            [
                'mariadb_provision_users[0].name "root" is reserved',
                'mariadb_provision_users[1].name "mariadb.sys" is reserved',
                'mariadb_provision_users[2].name "Mysql" is reserved',
                'mariadb_provision_users[3].db "mysql" is a system schema',
                'mariadb_provision_databases[0].name "information_schema" is a system schema',
            ],
        ),
    ],
    ids=["postgresql", "mariadb"],
)
def test_reserved_names_fail_in_preflight_naming_the_variable_and_the_rule(
    extra: dict[str, object], expect: list[str]
) -> None:
    run = run_playbook("playbooks/preflight.yml", extra)
    assert run.rc != 0
    said = "\n".join(run.messages)
    missing = [e for e in expect if e not in said]
    assert not missing, said
