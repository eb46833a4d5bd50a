"""The provisioning roles' filter plugins, loaded from their files (they are no package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

ROLES = Path(__file__).resolve().parents[1] / "roles"


def load(role: str, name: str) -> ModuleType:
    path = ROLES / role / "filter_plugins" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{role}_{name}", path)
    assert spec and spec.loader, path
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


scram = load("postgresql_provision", "scram")
native = load("mariadb_provision", "native_password")
