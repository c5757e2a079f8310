"""Run one task of a collection module through ansible-playbook on localhost, as a user would,
and return its result (the json callback's view of it)."""
from __future__ import annotations

import json
import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[1]


def run_module(tmp: pathlib.Path, module: str, args: dict, check: bool = False, diff: bool = False,
               timeout: float = 300) -> dict:
    playbook = tmp / f"{module.rsplit('.', 1)[-1]}.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": module, module: args, "register": "r", "ignore_errors": True}],
    }]))
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_STDOUT_CALLBACK="json",
               ANSIBLE_LOCALHOST_WARNING="false", ANSIBLE_INVENTORY_UNPARSED_WARNING="false")
    command = ["ansible-playbook", str(playbook), "-i", "localhost,", "-c", "local"]
    command += (["--check"] if check else []) + (["--diff"] if diff else [])
    out = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert "{" in out.stdout, out.stdout + out.stderr
    data, _end = json.JSONDecoder().raw_decode(out.stdout[out.stdout.index("{"):])
    return data["plays"][0]["tasks"][0]["hosts"]["localhost"]
