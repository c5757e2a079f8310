"""Role READMEs: the hand-written part, then a reference generated from meta/argument_specs.yml.

    python3 scripts/lib/role_readme.py [--check] [ROLE_DIR ...]   (default: every roles/*)

Everything above the marker line is the author's; everything below it is rewritten from the spec
(entry points, their descriptions, every option with type, default, choices and description), so
the README Galaxy shows can never disagree with what the role validates. --check writes nothing
and exits 1 naming each README that is out of date (tests/unit/test_role_readmes.py runs it).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

import yaml

import generated_files

MARKER = "<!-- Generated from meta/argument_specs.yml by scripts/lib/role_readme.py: edit the spec, not below. -->"
ROOT = pathlib.Path(__file__).resolve().parents[2]


def _text(value) -> str:
    """A spec description (a string or a list of paragraphs) as one Markdown paragraph each."""
    if value is None:
        return ""
    paragraphs = value if isinstance(value, list) else [value]
    return "\n\n".join(" ".join(str(p).split()) for p in paragraphs)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n\n", "<br>")


def _code(value) -> str:
    """A default or choice as inline code; YAML's flow style reads like the inventory would."""
    if isinstance(value, str):
        rendered = json.dumps(value) if value == "" or value != value.strip() else value
    else:
        rendered = json.dumps(value, sort_keys=False)
    rendered = rendered.replace("`", "'")
    return f"`{rendered}`"


def _type(option: dict) -> str:
    kind = option.get("type", "str")
    if kind == "list" and "elements" in option:
        kind = f"list of {option['elements']}"
    return kind


def _rows(options: dict, prefix: str = "") -> list[str]:
    rows = []
    for name, option in options.items():
        option = option or {}
        default = ""
        if option.get("required"):
            default = "*required*"
        elif "default" in option:
            default = _code(option["default"])
        description = _text(option.get("description"))
        if option.get("choices"):
            description += " Choices: " + ", ".join(_code(c) for c in option["choices"]) + "."
        if option.get("no_log"):
            description += " Never logged."
        rows.append(f"| `{prefix}{name}` | {_type(option)} | {_cell(default)} | {_cell(description.strip())} |")
        if option.get("options"):
            sub = f"{prefix}{name}[]." if option.get("type") == "list" else f"{prefix}{name}."
            rows.extend(_rows(option["options"], sub))
    return rows


def reference(role: str, specs: dict) -> str:
    """The generated part of a role's README."""
    lines = [MARKER, "", "## Entry points and variables", "",
             f"Checked before the role changes anything (`ansible-doc -t role freshtrack.deploy.{role}`).", ""]
    printed: dict[int, str] = {}  # entry points sharing one spec (YAML anchors) list it once
    for entry, spec in specs.items():
        lines.append(f"### `{entry}`" + (" (the role's default entry point)" if entry == "main" else f" (`tasks_from: {entry}`)"))
        lines.append("")
        lines.append(_text(spec.get("short_description")))
        lines.append("")
        if spec.get("description"):
            lines += [_text(spec["description"]), ""]
        options = spec.get("options") or {}
        if id(options) in printed and options:
            lines += [f"Its variables are those of `{printed[id(options)]}`.", ""]
            continue
        printed[id(options)] = entry
        if not options:
            lines += ["No variables.", ""]
            continue
        lines += ["| Variable | Type | Default | Description |", "|---|---|---|---|", *_rows(options), ""]
    return "\n".join(lines).rstrip() + "\n"


def render(role_dir: pathlib.Path) -> str:
    specs = yaml.safe_load((role_dir / "meta" / "argument_specs.yml").read_text())["argument_specs"]
    readme = role_dir / "README.md"
    current = readme.read_text() if readme.exists() else f"# freshtrack.deploy.{role_dir.name}\n"
    written = current.split(MARKER)[0].rstrip() + "\n\n"
    return written + reference(role_dir.name, specs)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 when a README is out of date")
    parser.add_argument("roles", nargs="*", type=pathlib.Path)
    args = parser.parse_args(argv)
    roles = args.roles or sorted(p.parent.parent for p in (ROOT / "roles").glob("*/meta/argument_specs.yml"))
    wanted = {role_dir / "README.md": render(role_dir) for role_dir in roles}
    return generated_files.sync(wanted, args.check, "python3 scripts/lib/role_readme.py", ROOT)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
