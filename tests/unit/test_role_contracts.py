"""Contracts every role keeps, checked statically (no hosts needed).

- meta/argument_specs.yml has a `main` and a `preflight` entry point with the same options (a
  role run only through tasks_from, like deploy, has one spec per entry point, all alike);
- every public default is prefixed with the role name and declared in the spec, with the same
  default where the spec states one, and every option in the spec exists in defaults;
- task files use fully qualified module names;
- every task that mentions a secret-looking variable sets no_log.
"""
from __future__ import annotations

import pathlib
import re

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLES = sorted(p for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir())
ROLE_IDS = [r.name for r in ROLES]

# Task keys that are not modules.
TASK_KEYWORDS = {
    "name", "when", "loop", "loop_control", "register", "notify", "tags", "vars", "become",
    "become_user", "changed_when", "failed_when", "check_mode", "no_log", "args", "delegate_to",
    "run_once", "until", "retries", "delay", "ignore_errors", "block", "rescue", "always",
    "environment", "listen", "async", "poll", "with_items", "diff", "throttle", "timeout",
    "any_errors_fatal", "ignore_unreachable", "collections", "module_defaults", "debugger",
    "local_action", "delegate_facts", "connection", "become_method", "become_flags",
}


def load(path: pathlib.Path):
    return yaml.safe_load(path.read_text()) or {}


def iter_tasks(tasks):
    for task in tasks or []:
        yield task
        for key in ("block", "rescue", "always"):
            yield from iter_tasks(task.get(key))


def main_options(role: pathlib.Path) -> dict:
    """The options of `main`, or of the entry points of a tasks_from-only role (all alike)."""
    specs = load(role / "meta" / "argument_specs.yml")["argument_specs"]
    return specs["main"]["options"] if "main" in specs else next(iter(specs.values()))["options"]


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_argument_specs_have_main_and_a_preflight_that_checks_it(role):
    specs = load(role / "meta" / "argument_specs.yml")["argument_specs"]
    if not (role / "tasks" / "main.yml").exists():
        # Every entry point a playbook calls has a spec, and they validate the same variables.
        entry_points = {p.stem for p in (role / "tasks").glob("*.yml")} & set(specs)
        assert entry_points == set(specs), f"specs without a tasks file: {set(specs) - entry_points}"
        assert all(spec["options"] == main_options(role) for spec in specs.values())
        return
    assert "main" in specs
    # `preflight` declares no options (Ansible's implicit check would dump the whole spec on a type
    # error): its first task checks main's itself, one line naming each bad variable.
    assert "preflight" in specs and "options" not in specs["preflight"]
    first_task = load(role / "tasks" / "preflight.yml")[0]
    assert first_task.get("ansible.builtin.import_tasks", "").endswith("freshtrack/tasks/validate.yml") or (
        role.name == "freshtrack" and first_task.get("ansible.builtin.import_tasks") == "validate.yml"), first_task


SPEC_KEYS = {"type", "elements", "default", "choices", "description", "required", "options",
             "aliases", "no_log", "version_added"}


def iter_options(options, path=""):
    for name, spec in options.items():
        yield f"{path}{name}", spec
        yield from iter_options(spec.get("options", {}), f"{path}{name}.")


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_every_option_is_typed_and_described(role):
    options = main_options(role)
    for name, spec in iter_options(options):
        assert set(spec) <= SPEC_KEYS, f"{name}: unexpected keys {set(spec) - SPEC_KEYS}"
        assert spec.get("type") and spec.get("description"), f"{name}: needs type and description"


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_defaults_are_prefixed_and_match_the_spec(role):
    defaults = load(role / "defaults" / "main.yml")
    options = main_options(role)
    prefix = role.name + "_"
    assert all(name.startswith(prefix) for name in defaults), sorted(
        n for n in defaults if not n.startswith(prefix))
    assert sorted(defaults) == sorted(options), "defaults and argument_specs list different variables"
    for name, spec in options.items():
        # A default derived from the site-wide settings (a template) is documented, not compared.
        if "default" in spec and "{{" not in yaml.safe_dump(defaults[name]):
            assert spec["default"] == defaults[name], f"{name}: spec {spec['default']!r} != defaults {defaults[name]!r}"


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_internal_vars_use_the_internal_prefix(role):
    for path in (role / "vars").glob("*.yml"):
        for name in load(path):
            assert name.startswith(f"_{role.name}_"), f"{path.name}: {name}"


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_modules_are_fully_qualified(role):
    for path in list((role / "tasks").glob("*.yml")) + list((role / "handlers").glob("*.yml")):
        for task in iter_tasks(load(path) or []):
            modules = [k for k in task if k not in TASK_KEYWORDS]
            for module in modules:
                assert module.count(".") >= 2, f"{path.relative_to(ROOT)}: '{task.get('name')}' uses {module}"


# Expressions that carry a secret value: Vault variables, supplied secrets, the password lookup,
# and variables named like a password or token. Their names alone (`x.keys()`, quoted literals such
# as 'postgres_password' naming a secret file) carry nothing.
SECRET = re.compile(r"\bvault_\w+|\bsecrets_supplied\b|_secrets_supplied_present|ansible\.builtin\.password"
                    r"|\w*_(password|token|api_key|private_key)\b", re.I)
NAMES_ONLY = re.compile(r"\b\w+\.keys\(\)|'[^'{}]*'|\"[^\"{}]*\"")
# Names that mention a secret word but carry none.
NOT_SECRET = re.compile(r"^(\w*password_authentication|update_password|no_log)$")


def strings(value):
    """Every string in a task, as written (not YAML-escaped)."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


@pytest.mark.parametrize("role", ROLES, ids=ROLE_IDS)
def test_tasks_touching_secrets_set_no_log(role):
    for path in (role / "tasks").glob("*.yml"):
        for task in iter_tasks(load(path) or []):
            if "block" in task:
                continue
            body = {k: v for k, v in task.items() if k != "name"}
            # `password: "!"` is the user module locking an account, not a secret.
            # Only expressions can carry a value; plain text that names a variable carries none.
            dumped = " ".join(strings(body))
            expressions = " ".join(re.findall(r"\{\{.*?\}\}|\{%.*?%\}", dumped, re.S))
            expressions += " " + " ".join(  # bare conditions are expressions too
                value for key in ("when", "that") for value in (
                    body.get(key) if isinstance(body.get(key), list) else [body.get(key)])
                if isinstance(value, str))
            text = NAMES_ONLY.sub("", expressions)
            words = {m.group(0) for m in SECRET.finditer(text)} - {
                w for w in (m.group(0) for m in SECRET.finditer(text)) if NOT_SECRET.match(w)}
            if words:
                assert task.get("no_log") is True, f"{path.relative_to(ROOT)}: '{task.get('name')}' ({words})"


def test_every_role_that_installs_packages_adds_them_to_the_sites_apt_transaction():
    """playbooks/packages.yml installs every role's packages in one transaction: a role whose tasks
    install Debian packages has a `site_packages` entry point, is listed for it, and adds there the
    very list its own install task uses (so the role alone and the site install the same)."""
    listed = load(ROOT / "roles" / "freshtrack" / "vars" / "main.yml")["_freshtrack_site_package_roles"]
    installing = {}
    for role in ROLES:
        for path in sorted((role / "tasks").glob("*.yml")):
            if path.name == "site_packages.yml":
                continue
            for task in iter_tasks(load(path) if isinstance(load(path), list) else []):
                apt = task.get("ansible.builtin.apt")
                if isinstance(apt, dict) and apt.get("name") and apt.get("state", "present") == "present":
                    installing.setdefault(role.name, []).append(apt["name"])
    assert sorted(listed) == sorted(installing), "roles with an apt install vs _freshtrack_site_package_roles"
    for name, lists in installing.items():
        site = (ROOT / "roles" / name / "tasks" / "site_packages.yml").read_text()
        for expression in lists:
            variable = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", expression.strip())
            assert variable, f"{name}: install the role's package list variable, not {expression!r}"
            assert variable.group(1) in site, f"{name}: site_packages.yml does not add {variable.group(1)}"
