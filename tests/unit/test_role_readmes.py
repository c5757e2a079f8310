"""Every role's README ends with the reference generated from its argument spec, up to date, and
every entry point of every spec says what it is for (Galaxy, ansible-doc and antsibull-docs show it)."""
from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "lib"))
import role_readme  # noqa: E402

ROLES = sorted(p.parent.parent for p in ROOT.glob("roles/*/meta/argument_specs.yml"))


def test_every_role_has_a_spec_and_a_readme():
    assert {p.name for p in ROLES} == {p.name for p in (ROOT / "roles").iterdir() if p.is_dir()}
    assert all((role / "README.md").is_file() for role in ROLES)


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_readme_matches_the_spec(role):
    assert (role / "README.md").read_text() == role_readme.render(role), (
        f"{role.name}/README.md is out of date: run python3 scripts/lib/role_readme.py")


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_entry_point_is_described(role):
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    for entry, spec in specs.items():
        assert spec.get("short_description", "").strip(), f"{role.name}:{entry} has no short_description"
        assert spec.get("description"), f"{role.name}:{entry} has no description"
        for name, option in (spec.get("options") or {}).items():
            assert (option or {}).get("description"), f"{role.name}:{entry}: {name} has no description"


@pytest.mark.parametrize("role", ROLES, ids=lambda p: p.name)
def test_every_tasks_file_a_playbook_or_role_includes_has_an_entry_point(role):
    """An entry point some playbook or role uses (tasks_from) is documented and validated."""
    used = set()
    for path in [*ROOT.glob("playbooks/*.yml"), *ROOT.glob("roles/*/tasks/*.yml"), ROOT / "site.yml"]:
        text = path.read_text()
        if f"freshtrack.deploy.{role.name}" in text or "freshtrack.deploy.{{" in text:
            used.update(line.split("tasks_from:")[1].strip() for line in text.splitlines()
                        if line.strip().startswith("tasks_from:") and "{{" not in line.split("tasks_from:")[1])
    specs = yaml.safe_load((role / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    tasks = {p.stem for p in (role / "tasks").glob("*.yml")}
    assert used & tasks <= set(specs), f"{role.name}: tasks_from without an entry point spec: {sorted((used & tasks) - set(specs))}"


def test_check_mode_of_the_generator_names_a_stale_readme(tmp_path):
    role = tmp_path / "demo"
    (role / "meta").mkdir(parents=True)
    (role / "meta" / "argument_specs.yml").write_text(yaml.safe_dump({"argument_specs": {"main": {
        "short_description": "Demo", "description": ["A demo."],
        "options": {"demo_port": {"type": "int", "default": 80, "description": "Port | with a pipe."}}}}}))
    (role / "README.md").write_text("# demo\n\nHand-written.\n")
    script = ROOT / "scripts" / "lib" / "role_readme.py"
    stale = subprocess.run([sys.executable, str(script), "--check", str(role)], capture_output=True, text=True, check=False)
    assert stale.returncode == 1 and "README.md" in stale.stderr
    subprocess.run([sys.executable, str(script), str(role)], check=True, capture_output=True)
    text = (role / "README.md").read_text()
    assert text.startswith("# demo\n\nHand-written.\n\n" + role_readme.MARKER)
    assert "| `demo_port` | int | `80` | Port \\| with a pipe. |" in text
    assert subprocess.run([sys.executable, str(script), "--check", str(role)], check=False).returncode == 0
