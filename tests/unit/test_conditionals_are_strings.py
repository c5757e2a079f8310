"""A conditional with ': ' in it, unquoted, is a YAML mapping, not a string: ansible-core fails it only
when the task runs ("Conditional expressions must be strings"), which for a failure path of a Molecule
check may be the first time in CI. Every conditional in the repository's YAML is read here instead."""
from __future__ import annotations

import pathlib

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
KEYS = ("when", "failed_when", "changed_when", "until", "that")
FILES = sorted(path for top in ("molecule", "playbooks", "roles", "tests")
               for path in (ROOT / top).rglob("*.yml") if ".cache" not in path.parts)
FILES += [ROOT / "site.yml"]


class Loader(yaml.SafeLoader):
    """Ansible's tags (!unsafe, !vault) read as plain values."""


Loader.add_multi_constructor("!", lambda loader, suffix, node: loader.construct_scalar(node)
                             if isinstance(node, yaml.ScalarNode) else None)


def not_strings(node, where=""):
    if isinstance(node, dict):
        for key, value in node.items():
            if key in KEYS:
                for item in value if isinstance(value, list) else [value]:
                    if not isinstance(item, (str, bool)):
                        yield f"{where}{key}: {item!r}"
            yield from not_strings(value, f"{where}{key}/" if isinstance(key, str) else where)
    elif isinstance(node, list):
        for index, item in enumerate(node):
            yield from not_strings(item, f"{where}{index}/")


@pytest.mark.parametrize("path", FILES, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_conditional_is_a_string(path):
    try:
        documents = list(yaml.load_all(path.read_text(encoding="utf-8"), Loader=Loader))
    except yaml.YAMLError:
        pytest.skip("not plain YAML (a Jinja template)")
    assert [found for document in documents for found in not_strings(document)] == []
