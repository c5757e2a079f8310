#!/usr/bin/env python3
"""What each Molecule scenario runs and asserts, read from its files (so a speed-up can show that
no scenario lost an action or an assertion): platforms and their images, the action sequence,
and the checks of its verify playbook with everything it imports or includes (assert tasks, their
conditions, and tasks that fail on a condition: failed_when / until).

  scenario_checks.py [CHECKOUT] [--json]   (in the venv: needs PyYAML; CHECKOUT defaults to this
                                            one, another one, e.g. a `git worktree` of an older
                                            commit, gives the figures to compare with)
"""

import json
import pathlib
import sys

import yaml

ARGS = [a for a in sys.argv[1:] if not a.startswith("-")]
ROOT = pathlib.Path(ARGS[0]).resolve() if ARGS else pathlib.Path(__file__).resolve().parents[2]
INCLUDES = ("ansible.builtin.import_playbook", "import_playbook", "ansible.builtin.include_tasks",
            "ansible.builtin.import_tasks", "include_tasks", "import_tasks")


def load(path):
    with open(path, encoding="utf-8") as handle:
        return yaml.safe_load(handle) or []


def count_checks(path, seen=None):
    """(assert tasks, assert conditions, failing conditions) in a playbook or task file and its imports."""
    seen = seen if seen is not None else set()
    path = path.resolve()
    if path in seen or not path.exists() or ROOT / "playbooks" in path.parents:
        return 0, 0, 0  # product playbooks a verify step runs are not the test's assertions
    seen.add(path)
    totals = [0, 0, 0]

    def walk(tasks):
        for task in tasks or []:
            if not isinstance(task, dict):
                continue
            for key in ("block", "rescue", "always", "tasks", "pre_tasks", "post_tasks"):
                walk(task.get(key))
            for key in INCLUDES:
                target = task.get(key)
                if isinstance(target, dict):
                    target = target.get("file")
                if isinstance(target, str) and "{{" not in target:
                    sub = count_checks(path.parent / target, seen)
                    totals[0] += sub[0]; totals[1] += sub[1]; totals[2] += sub[2]
            module = task.get("ansible.builtin.assert") or task.get("assert")
            if isinstance(module, dict):
                that = module.get("that")
                totals[0] += 1
                totals[1] += len(that) if isinstance(that, list) else 1
            for key in ("failed_when", "until"):
                if key in task:
                    value = task[key]
                    totals[2] += len(value) if isinstance(value, list) else 1

    walk(load(path))
    return tuple(totals)


def merged(scenario_dir):
    base = load(ROOT / ".config" / "molecule" / "config.yml")
    own = load(scenario_dir / "molecule.yml")
    config = dict(base)
    for key, value in own.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return config


def main():
    rows = []
    for scenario_dir in sorted((ROOT / "molecule").iterdir()):
        if not (scenario_dir / "molecule.yml").exists():
            continue
        config = merged(scenario_dir)
        asserts, conditions, failing = count_checks(scenario_dir / "verify.yml")
        rows.append({
            "scenario": scenario_dir.name,
            "platforms": [p["image"].split("/")[-1] for p in config.get("platforms", [])],
            "actions": config.get("scenario", {}).get("test_sequence", []),
            "assert_tasks": asserts, "assert_conditions": conditions, "failing_conditions": failing,
        })
    if "--json" in sys.argv:
        print(json.dumps(rows, indent=1))
        return
    print("%-14s %-52s %7s %10s %8s  %s" % ("scenario", "platforms", "asserts", "conditions",
                                          "fail/until", "actions"))
    for row in rows:
        print("%-14s %-52s %7d %10d %8d  %s" % (row["scenario"], ", ".join(row["platforms"]), row["assert_tasks"],
                                              row["assert_conditions"], row["failing_conditions"],
                                              " ".join(row["actions"])))


if __name__ == "__main__":
    main()
