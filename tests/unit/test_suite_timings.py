"""The suite's timer (scripts/lib/timings.py): Molecule's action lines become one record per action,
the first destroy is told apart from the clean-up, a scenario stopped inside an action records it
as failed, and the report sums per scenario."""
from __future__ import annotations

import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "lib" / "timings.py"
ARROW = "\u279c"


def molecule_lines(*pairs):
    lines = ["\x1b[36mINFO    \x1b[0m Found config file .config/molecule/config.yml",
             f"INFO     stack {ARROW} discovery: scenario test matrix: destroy, create"]
    for action, outcome in pairs:
        lines.append(f"\x1b[36mINFO    \x1b[0m \x1b[32mstack\x1b[0m {ARROW} \x1b[33m{action}\x1b[0m: Executing")
        lines.append("  TASK [something] ****")
        if outcome:
            lines.append(f"INFO     stack {ARROW} {action}: {outcome}")
    return "\n".join(lines) + "\n"


def follow(tmp_path, text):
    records = tmp_path / "t.tsv"
    out = subprocess.run([sys.executable, str(SCRIPT), "molecule", "molecule stack", str(records)],
                         input=text, capture_output=True, text=True, check=True)
    assert out.stdout == text  # passed through unchanged
    return [line.split("\t") for line in records.read_text().splitlines()]


def test_each_action_is_one_record_and_the_first_destroy_is_told_apart(tmp_path):
    rows = follow(tmp_path, molecule_lines(("destroy", "Executed: Successful"), ("create", "Executed: Successful"),
                                           ("converge", "Executed: Successful"), ("destroy", "Executed: Successful")))
    assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
        ("action", "molecule stack", "destroy (before)", "passed"), ("action", "molecule stack", "create", "passed"),
        ("action", "molecule stack", "converge", "passed"), ("action", "molecule stack", "destroy", "passed")]
    assert all(float(r[4]) >= 0 for r in rows)


def test_a_failed_or_interrupted_action_is_recorded_as_failed(tmp_path):
    rows = follow(tmp_path, molecule_lines(("create", "Executed: Successful"), ("verify", "Executed: Failed"),
                                           ("destroy", None)))
    assert [(r[2], r[3]) for r in rows] == [("create", "passed"), ("verify", "FAILED"), ("destroy", "FAILED")]


def test_report_sums_tiers_and_actions(tmp_path):
    records = tmp_path / "t.tsv"
    records.write_text("setup\tDocker engine\t\tpassed\t2\n"
                       "tier\tunit\t\tpassed\t3\n"
                       "tier\tmolecule stack\t\tFAILED(rc=2)\t70\n"
                       "action\tmolecule stack\tconverge\tpassed\t40.4\n"
                       "action\tmolecule stack\tverify\tFAILED\t29.6\n"
                       "wall\tsuite\t\t\t60\n")
    out = subprocess.run([sys.executable, str(SCRIPT), "report", str(records), str(tmp_path / "r")],
                         capture_output=True, text=True, check=True).stdout
    assert "sum of the above" in out and "75  (1.2 min)" in out
    assert "wall clock (lanes side by side)" in out and "60  (1.0 min)" in out
    row = next(line for line in out.splitlines() if line.startswith("molecule stack") and "!" in line)
    assert row.split()[-3:] == ["40", "30!", "70"]
    assert (tmp_path / "r.txt").read_text().strip() == out.strip()
