"""Task-level vars of a role carry the role's name (`__<role>_...`).

A registered variable or set_fact of the same name anywhere in the play (a playbook's, a test's)
outranks task vars: a bare `__kept` in the secrets role's SCRAM task was shadowed by a verify step's
`register: __kept`, and every later converge drew new SCRAM secrets that PostgreSQL did not store.
"""
from __future__ import annotations

import pathlib

import pytest
import yaml

ROLES = pathlib.Path(__file__).resolve().parents[2] / "roles"


def task_vars(tasks):
    for task in tasks or []:
        if not isinstance(task, dict):
            continue
        yield from (task.get("vars") or {}).keys()
        for key in ("block", "rescue", "always"):
            yield from task_vars(task.get(key))


@pytest.mark.parametrize("role", sorted(p.name for p in ROLES.iterdir() if (p / "tasks").is_dir()))
def test_task_vars_carry_the_roles_name(role):
    bad = []
    for path in sorted((ROLES / role / "tasks").glob("*.yml")):
        for name in task_vars(yaml.safe_load(path.read_text())):
            if name.startswith("__") and not name.startswith(f"__{role}_"):
                bad.append(f"{path.name}: {name}")
    assert not bad, f"task vars without the role's prefix __{role}_: {bad}"
