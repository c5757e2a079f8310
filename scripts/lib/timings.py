#!/usr/bin/env python3
"""Where the suite's time goes: the timing records of scripts/test, and their tables.

  timings.py molecule TIER FILE   pass Molecule's output through (stdin to stdout) and append one
                                  record per action (create, prepare, check, converge, ...) to FILE
  timings.py report FILE [OUT]    print the per-tier and per-action tables of FILE; with OUT, also
                                  write them to OUT.txt and the records to OUT.json

FILE holds tab-separated records: kind (setup, tier, action, wall), name, action, result, seconds.
Standard library only: it runs before and outside the venv too.
"""

import json
import re
import sys
import time

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Molecule 26: "INFO     stack ➜ converge: Executing" ... "stack ➜ converge: Executed: Successful"
ACTION = re.compile(r"^(?:INFO|WARNING|ERROR)?\s*(\S+) \u279c (\S+): (Executing|Executed.*|Failed.*)\s*$")
ACTIONS = ["destroy (before)", "syntax", "create", "prepare", "check", "converge", "idempotence",
           "side_effect", "verify", "destroy"]


def append(path, kind, name, action, result, seconds):
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("\t".join([kind, name, action, result, "%.1f" % seconds]) + "\n")


def follow_molecule(tier, path):
    """Copy stdin to stdout, timing each Molecule action by its Executing/Executed lines."""
    current = None  # (action, started)
    seen = set()
    for raw in sys.stdin.buffer:
        sys.stdout.buffer.write(raw)
        sys.stdout.buffer.flush()
        match = ACTION.match(ANSI.sub("", raw.decode("utf-8", "replace")).rstrip("\n"))
        if not match or match.group(2) == "discovery":
            continue
        action, state = match.group(2), match.group(3)
        if state == "Executing":
            # The first destroy of `molecule test` clears leftovers; the last one is the clean-up.
            if action == "destroy" and "destroy (before)" not in seen and "create" not in seen:
                action = "destroy (before)"
            seen.add(action)
            current = (action, time.monotonic())
        elif current:
            result = "passed" if state.startswith("Executed") and "Fail" not in state else "FAILED"
            append(path, "action", tier, current[0], result, time.monotonic() - current[1])
            current = None
    if current:  # Molecule stopped inside an action (a failure, or killed)
        append(path, "action", tier, current[0], "FAILED", time.monotonic() - current[1])


def read(path):
    records = []
    try:
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                kind, name, action, result, seconds = line.rstrip("\n").split("\t")
                records.append({"kind": kind, "name": name, "action": action, "result": result,
                                "seconds": float(seconds)})
    except FileNotFoundError:
        pass
    return records


def tables(records):
    lines = []
    steps = [r for r in records if r["kind"] in ("setup", "tier")]
    total = sum(r["seconds"] for r in steps)
    lines.append("%-44s %-10s %8s" % ("step or tier", "result", "seconds"))
    lines.append("%-44s %-10s %8s" % ("-" * 12, "-" * 6, "-" * 7))
    for r in steps:
        label = ("(set-up) " if r["kind"] == "setup" else "") + r["name"]
        lines.append("%-44s %-10s %8.0f" % (label, r["result"], r["seconds"]))
    lines.append("%-44s %-10s %8.0f  (%.1f min)" % ("sum of the above", "", total, total / 60))
    for r in records:
        if r["kind"] == "wall":  # lanes run side by side: the wall clock is what CI waits
            lines.append("%-44s %-10s %8.0f  (%.1f min)" % ("wall clock (lanes side by side)", "",
                                                          r["seconds"], r["seconds"] / 60))

    actions = [r for r in records if r["kind"] == "action"]
    if actions:
        scenarios = list(dict.fromkeys(r["name"] for r in actions))
        columns = [a for a in ACTIONS if any(r["action"] == a for r in actions)]
        short = {"destroy (before)": "destroy0", "idempotence": "idempot.", "side_effect": "side_eff"}
        lines.append("")
        lines.append("%-24s" % "molecule, seconds" + "".join("%10s" % short.get(c, c) for c in columns)
                     + "%10s" % "sum")
        for scenario in scenarios:
            row, total = [], 0.0
            for column in columns:
                cells = [r for r in actions if r["name"] == scenario and r["action"] == column]
                seconds = sum(r["seconds"] for r in cells)
                total += seconds
                mark = "!" if any(r["result"] != "passed" for r in cells) else ""
                row.append("%10s" % (("%.0f%s" % (seconds, mark)) if cells else "-"))
            lines.append("%-24s" % scenario + "".join(row) + "%10.0f" % total)
        lines.append("(! = the action failed)")
    return "\n".join(lines)


def main(argv):
    if len(argv) >= 4 and argv[1] == "molecule":
        follow_molecule(argv[2], argv[3])
        return 0
    if len(argv) >= 3 and argv[1] == "report":
        records = read(argv[2])
        text = tables(records)
        print(text)
        if len(argv) >= 4:
            with open(argv[3] + ".txt", "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
            with open(argv[3] + ".json", "w", encoding="utf-8") as handle:
                json.dump(records, handle, indent=1)
        return 0
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
