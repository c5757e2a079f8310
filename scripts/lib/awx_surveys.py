"""AWX survey specs of the operator playbooks, generated from where their variables are documented.

    python3 scripts/lib/awx_surveys.py [--check]

awx/surveys.yml names each job template's variables and where each is documented (a role's
argument spec entry point, or one of the collection's modules); this writes awx/surveys/<name>.json
in AWX's survey_spec format with the question text, type, default and choices taken from there.
--check writes nothing and exits 1 naming what is out of date (tests/unit/test_awx_surveys.py).
"""
from __future__ import annotations

import argparse
import ast
import json
import pathlib
import sys

import yaml

import generated_files

ROOT = pathlib.Path(__file__).resolve().parents[2]
SURVEYS = ROOT / "awx" / "surveys.yml"
OUT = ROOT / "awx" / "surveys"


def _text(value) -> str:
    paragraphs = value if isinstance(value, list) else [value or ""]
    return " ".join(" ".join(str(p).split()) for p in paragraphs)


def module_options(module: str) -> dict:
    """A module's documented options, read from its DOCUMENTATION without importing it."""
    source = (ROOT / "plugins" / "modules" / f"{module}.py").read_text()
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "DOCUMENTATION":
            return yaml.safe_load(node.value.value)["options"]
    raise LookupError(f"plugins/modules/{module}.py has no DOCUMENTATION")


def documentation(question: dict) -> dict:
    """The option that documents a question's variable."""
    source = question["documented_by"]
    if "module" in source:
        options = module_options(source["module"])
    else:
        specs = yaml.safe_load((ROOT / "roles" / source["role"] / "meta" / "argument_specs.yml").read_text())
        options = specs["argument_specs"][source["entry_point"]]["options"]
    name = source.get("option", question["variable"])
    if name not in options:
        raise LookupError(f"{question['variable']}: {name} is not documented in {source}")
    return options[name]


def _answer(value) -> str:
    """Survey answers reach the playbook as strings (AWX's extra vars); booleans as Ansible reads them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def playbook_vars(playbook: str) -> dict:
    """The vars a playbook's plays set (their values are the defaults its questions offer)."""
    found: dict = {}
    for play in yaml.safe_load((ROOT / playbook).read_text()) or []:
        found.update(play.get("vars") or {})
    return found


def question(entry: dict, playbook: str) -> dict:
    option = documentation(entry)
    kind = option.get("type", "str")
    choices = option.get("choices")
    default = playbook_vars(playbook).get(entry["variable"], option.get("default"))
    spec = {"question_name": entry["variable"], "question_description": _text(option.get("description")),
            "variable": entry["variable"], "required": bool(entry.get("required", option.get("required", False))),
            "default": _answer(default)}
    if kind == "bool":
        spec.update(type="multiplechoice", choices=["false", "true"])
    elif choices:
        spec.update(type="multiplechoice", choices=[_answer(c) for c in choices])
    elif kind == "int":
        spec.update(type="integer", min=option.get("min", 0), max=option.get("max", 2147483647))
    elif kind == "float":
        spec.update(type="float", min=0, max=1e9)
    elif option.get("no_log"):
        spec.update(type="password", min=0, max=1024)
    else:
        spec.update(type="text", min=1 if spec["required"] else 0, max=1024)
    return spec


def surveys() -> dict[str, dict]:
    wanted = yaml.safe_load(SURVEYS.read_text())
    return {name: {"name": f"FreshTrack {name}", "description": f"Answers for {template['playbook']}",
                   "spec": [question(q, template["playbook"]) for q in template["questions"]]}
            for name, template in wanted.items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    generated = surveys()
    wanted = {OUT / f"{name}.json": json.dumps(survey, indent=2) + "\n" for name, survey in generated.items()}
    unwanted = sorted(p for p in OUT.glob("*.json") if p.stem not in generated)
    return generated_files.sync(wanted, args.check, "python3 scripts/lib/awx_surveys.py", ROOT, unwanted)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
