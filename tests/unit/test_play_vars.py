"""No play of the collection sets a role's variable.

Play vars (and vars_files) outrank the inventory: a role variable set there would silently ignore
the value a sysadmin puts in group_vars. Shared values live in roles/freshtrack/defaults (role
default precedence) and each role's defaults derive from them.
"""
from __future__ import annotations

import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
ROLE_PREFIXES = tuple(p.name + "_" for p in (ROOT / "roles").iterdir() if (p / "defaults").is_dir())
PLAYBOOKS = sorted((ROOT / "playbooks").glob("*.yml")) + [ROOT / "site.yml"]
# Set on purpose over anything else: rollback.yml is deploy.yml with the action fixed.
ALLOWED = {("playbooks/rollback.yml", "deploy_action")}


def play_level_vars(playbook: pathlib.Path):
    """(name, where) of every variable a play or an import_playbook sets, vars_files included."""
    for play in yaml.safe_load(playbook.read_text()) or []:
        for name in play.get("vars") or {}:
            yield name, "vars"
        for vars_file in play.get("vars_files") or []:
            path = (playbook.parent / vars_file).resolve()
            for name in yaml.safe_load(path.read_text()) or {}:
                yield name, f"vars_files {vars_file}"


def test_the_role_prefixes_are_found():
    assert "freshtrack_" in ROLE_PREFIXES and "stack_" in ROLE_PREFIXES and len(ROLE_PREFIXES) >= 12


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_no_play_sets_a_role_variable(playbook):
    rel = str(playbook.relative_to(ROOT))
    offending = [f"{name} ({where})" for name, where in play_level_vars(playbook)
                 if name.startswith(ROLE_PREFIXES) and (rel, name) not in ALLOWED]
    assert not offending, f"{rel} sets role variables at play level, hiding the inventory's: {offending}"


def test_the_check_catches_a_play_var(tmp_path):
    (tmp_path / "vars").mkdir()
    (tmp_path / "vars" / "shared.yml").write_text("caddy_domains: {}\n")
    playbook = tmp_path / "play.yml"
    playbook.write_text("- hosts: all\n  vars: {stack_dir: /srv}\n  vars_files: [vars/shared.yml]\n  tasks: []\n")
    names = [name for name, _value in play_level_vars(playbook) if name.startswith(ROLE_PREFIXES)]
    assert names == ["stack_dir", "caddy_domains"]


def test_every_role_is_in_the_one_list_or_a_helper():
    """The roles site.yml runs come from roles/freshtrack's lists; the rest are called by roles."""
    settings = yaml.safe_load((ROOT / "roles" / "freshtrack" / "defaults" / "main.yml").read_text())
    listed = settings["freshtrack_host_roles"] + settings["freshtrack_stack_roles"]
    helpers = {"freshtrack", "images", "deploy"}  # settings; image loading; deploy.yml's own steps
    roles = {p.name for p in (ROOT / "roles").iterdir() if (p / "tasks").is_dir()}
    assert sorted(listed) == sorted(roles - helpers)
    assert set(settings["freshtrack_deploy_roles"]) <= set(settings["freshtrack_stack_roles"])
    for playbook in ("host.yml", "stack.yml", "preflight.yml", "deploy.yml"):
        text = (ROOT / "playbooks" / playbook).read_text()
        assert "freshtrack_" in text and "_roles" in text, f"{playbook} does not read the role lists"
