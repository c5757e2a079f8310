"""Pure logic of the backup job (roles/backup/files/freshtrack_backup_jobs/core.py): names,
grouping, retention, manifest comparison, metrics text. No database, no Docker."""
from __future__ import annotations

import datetime as dt
import pathlib
import sys

import pytest

# The job's library, as the role installs it beside the command line (freshtrack_backup.py).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "roles" / "backup" / "files"))
sys.dont_write_bytecode = True  # no __pycache__ among the role's files
from freshtrack_backup_jobs import core as fb  # noqa: E402
from freshtrack_backup_jobs import migrate as fm  # noqa: E402

UTC = dt.timezone.utc


def stamp(text):
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=UTC)


def backups_at(*times, incomplete=(), labels=None):
    out = {}
    for text in times:
        name = fb.backup_name("freshtrack", stamp(text))
        parts = {"dump": name + ".dump.zst", "sha256": name + ".sha256", "manifest": name + ".manifest.json"}
        if text in incomplete:
            parts.pop("manifest")
        out[name] = {"name": name, "time": stamp(text), "label": (labels or {}).get(text, "scheduled"), **parts}
    return out


def names(*times):
    return [fb.backup_name("freshtrack", stamp(t)) for t in times]


def test_names_round_trip_in_utc():
    when = dt.datetime(2026, 11, 23, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    name = fb.backup_name("freshtrack", when)
    assert name == "freshtrack-20261123T020405Z"
    assert fb.parse_backup_name(name, "freshtrack") == when


@pytest.mark.parametrize("name", ["other-20261123T020405Z", "freshtrack-20261123", "freshtrack-20261123T020405Z.x",
                                  "freshtrack-latest", "freshtrack-x-20261123T020405Z"])
def test_foreign_names_are_ignored(name):
    assert fb.parse_backup_name(name, "freshtrack") is None


def test_grouping_by_backup_and_part():
    files = ["freshtrack-20261123T020000Z.dump.zst", "freshtrack-20261123T020000Z.sha256",
             "freshtrack-20261123T020000Z.manifest.json", "freshtrack-20261122T020000Z.dump.zst.age",
             "freshtrack-20261121T020000Z.dump.zst.part", "notes.txt", "other-20261123T020000Z.dump.zst"]
    groups = fb.group_files(files, "freshtrack")
    assert set(groups) == {"freshtrack-20261123T020000Z", "freshtrack-20261122T020000Z"}
    assert fb.is_complete(groups["freshtrack-20261123T020000Z"])
    assert groups["freshtrack-20261122T020000Z"]["dump"].endswith(".age")
    assert not fb.is_complete(groups["freshtrack-20261122T020000Z"])


def test_daily_keeps_the_newest_of_each_day():
    backups = backups_at("2026-11-23 02:00", "2026-11-23 10:00", "2026-11-22 02:00", "2026-11-21 02:00",
                         "2026-11-20 02:00")
    keep, delete, _why = fb.retention_plan(backups, daily=2, weekly=0, monthly=0)
    assert keep == names("2026-11-23 10:00", "2026-11-22 02:00")
    assert delete == names("2026-11-23 02:00", "2026-11-21 02:00", "2026-11-20 02:00")


def test_weeks_and_months_reach_back():
    # 2026-11-23 is a Monday (ISO week 48); 2026-11-22 a Sunday (week 47).
    daily = [f"2026-{m:02d}-{d:02d} 02:00" for m, last in ((9, 30), (10, 31), (11, 23)) for d in range(1, last + 1)]
    keep, delete, _why = fb.retention_plan(backups_at(*daily), daily=3, weekly=3, monthly=3)
    assert keep == names("2026-11-23 02:00", "2026-11-22 02:00", "2026-11-21 02:00", "2026-11-15 02:00",
                         "2026-10-31 02:00", "2026-09-30 02:00")
    assert len(keep) + len(delete) == len(daily)


def test_every_count_zero_still_keeps_the_newest_complete():
    backups = backups_at("2026-11-23 02:00", "2026-11-22 02:00", incomplete=("2026-11-23 02:00",))
    keep, delete, _why = fb.retention_plan(backups, daily=0, weekly=0, monthly=0)
    # The incomplete newer one stays too (an upload may still be under way); nothing older does.
    assert keep == names("2026-11-23 02:00", "2026-11-22 02:00")
    assert delete == []


def test_newest_good_survives_when_newer_ones_are_incomplete():
    backups = backups_at("2026-11-23 02:00", "2026-11-22 02:00", "2026-11-21 02:00",
                         incomplete=("2026-11-23 02:00", "2026-11-22 02:00"))
    keep, delete, _why = fb.retention_plan(backups, daily=1, weekly=0, monthly=0)
    assert names("2026-11-21 02:00")[0] in keep
    assert delete == []


def test_nothing_complete_deletes_nothing():
    backups = backups_at("2026-11-23 02:00", "2026-10-01 02:00", incomplete=("2026-11-23 02:00", "2026-10-01 02:00"))
    assert fb.retention_plan(backups, daily=1, weekly=0, monthly=0)[1] == []


def test_incomplete_older_than_the_newest_good_is_retained_by_the_rules():
    backups = backups_at("2026-11-23 02:00", "2026-11-01 02:00", incomplete=("2026-11-01 02:00",))
    assert fb.retention_plan(backups, daily=1, weekly=0, monthly=0)[1] == names("2026-11-01 02:00")


def test_empty():
    assert fb.retention_plan({}, daily=7, weekly=4, monthly=12) == ([], [], {})


# ---- Pre-deploy backups a rollback may need (issue: deploy + rollback on one day) ------------------------

def state_of(current, previous):
    """A deploy record as deploy.yml writes it: the backup taken before each of the two deploys."""
    return {"current": {"image": "app:2", "backup": {"name": names(current)[0], "sha256": "a" * 64}},
            "previous": {"image": "app:1", "backup": {"name": names(previous)[0], "sha256": "b" * 64} if previous else None}}


def plan_with_deploys(backups, state, now, days=7, **counts):
    protected = fb.deploy_protected(backups, state, days, stamp(now))
    return fb.retention_plan(backups, **{"daily": 7, "weekly": 4, "monthly": 0, **counts}, protected=protected)


def test_deploys_on_the_same_day_keep_every_pre_deploy_backup():
    # A failed deploy, a good one, its rollback, then a manual backup: all on 2026-11-30.
    labels = {"2026-11-30 10:00": "pre-deploy", "2026-11-30 10:05": "pre-deploy", "2026-11-30 10:10": "pre-rollback",
              "2026-11-30 10:15": "manual"}
    backups = backups_at("2026-11-30 02:00", *labels, labels=labels)
    keep, delete, why = plan_with_deploys(backups, state_of("2026-11-30 10:10", "2026-11-30 10:05"), "2026-11-30 10:16")
    # Without the rule the daily count keeps only the manual one.
    assert fb.retention_plan(backups, daily=7, weekly=4, monthly=0)[0] == names("2026-11-30 10:15")
    assert keep == names("2026-11-30 10:15", "2026-11-30 10:10", "2026-11-30 10:05", "2026-11-30 10:00")
    assert delete == names("2026-11-30 02:00")
    assert why[names("2026-11-30 10:10")[0]] == ["taken before the current deploy (app:2)"]
    assert why[names("2026-11-30 10:05")[0]] == ["taken before the previous deploy (app:1)"]
    assert why[names("2026-11-30 10:00")[0]] == ["pre-deploy backup younger than 7 days"]
    assert why[names("2026-11-30 10:15")[0]][0].startswith("newest of its day")


def test_deploys_on_consecutive_days():
    labels = {"2026-11-28 09:00": "pre-deploy", "2026-11-29 09:00": "pre-deploy", "2026-11-30 09:00": "pre-rollback"}
    backups = backups_at("2026-11-28 02:00", "2026-11-29 02:00", "2026-11-30 02:00", *labels, labels=labels)
    keep, delete, _why = plan_with_deploys(backups, state_of("2026-11-30 09:00", "2026-11-29 09:00"), "2026-11-30 12:00",
                                           daily=1, weekly=0)
    assert set(names(*labels)) <= set(keep)
    assert delete == names("2026-11-30 02:00", "2026-11-29 02:00", "2026-11-28 02:00")


def test_older_than_the_age_limit_only_the_recorded_ones_stay():
    labels = {"2026-10-01 09:00": "pre-deploy", "2026-10-02 09:00": "pre-deploy", "2026-10-03 09:00": "pre-deploy",
              "2026-11-29 09:00": "pre-deploy"}
    backups = backups_at("2026-11-30 02:00", *labels, labels=labels)
    keep, delete, why = plan_with_deploys(backups, state_of("2026-10-03 09:00", "2026-10-01 09:00"), "2026-11-30 12:00",
                                          daily=1, weekly=0)
    # 10-02 is a pre-deploy backup older than 7 days and neither deploy recorded it: the counts decide (gone).
    assert keep == names("2026-11-30 02:00", "2026-11-29 09:00", "2026-10-03 09:00", "2026-10-01 09:00")
    assert delete == names("2026-10-02 09:00")
    assert why[names("2026-10-01 09:00")[0]] == ["taken before the previous deploy (app:1)"]


def test_age_limit_zero_and_no_deploy_record_leave_the_counts_alone():
    labels = {"2026-11-30 09:00": "pre-deploy"}
    backups = backups_at("2026-11-30 02:00", "2026-11-30 10:00", *labels, labels=labels)
    assert plan_with_deploys(backups, {}, "2026-11-30 12:00", days=0)[1] == names("2026-11-30 09:00", "2026-11-30 02:00")


def test_a_recorded_backup_that_is_gone_protects_nothing():
    backups = backups_at("2026-11-30 02:00")
    assert fb.deploy_protected(backups, state_of("2026-11-01 09:00", None), 7, stamp("2026-11-30 12:00")) == {}


def test_compare_manifest_names_each_difference():
    expected = {"counts": {"public.a": 10, "public.b": 5}, "checksum": {"rows": 3, "value": "42"}}
    assert fb.compare_manifest(expected, {"counts": {"public.a": 10, "public.b": 5},
                                          "checksum": {"rows": 3, "value": "42"}}) == []
    problems = fb.compare_manifest(expected, {"counts": {"public.a": 9, "public.c": 1},
                                              "checksum": {"rows": 3, "value": "41"}})
    assert problems == ["public.a: 10 rows at dump time, 9 restored", "public.b: 5 rows at dump time, missing restored",
                        "public.c: missing rows at dump time, 1 restored",
                        "readings checksum: 3 rows / 42 at dump time, 3 rows / 41 restored"]


def test_compare_manifest_without_checksum_table():
    assert fb.compare_manifest({"counts": {}, "checksum": None}, {"counts": {}, "checksum": None}) == []


def test_metrics_text():
    text = fb.render_metrics("freshtrack_backup", {
        "success": 1, "last_success_timestamp_seconds": 1795461876.706,
        "failure": [({"reason": "upload"}, 1), ({"reason": 'a"b'}, 0)]}, {"success": "Last run ok."})
    assert "# HELP freshtrack_backup_success Last run ok.\n# TYPE freshtrack_backup_success gauge\n" \
           "freshtrack_backup_success 1\n" in text
    assert "freshtrack_backup_last_success_timestamp_seconds 1795461876.706\n" in text
    assert 'freshtrack_backup_failure{reason="upload"} 1\n' in text
    assert 'freshtrack_backup_failure{reason="a\\"b"} 0\n' in text


def test_checksum_sql_quotes_identifiers():
    sql = fb.checksum_sql('public.sensor"readings', "recorded_at", 3600)
    assert '"public"."sensor""readings"' in sql and "interval '3600 seconds'" in sql


def test_free_space_and_sizes():
    assert fb.free_bytes_ok(5, 5) and not fb.free_bytes_ok(4, 5)
    assert fb.format_bytes(512) == "512 B" and fb.format_bytes(3 * 1024 ** 3) == "3.0 GiB"


def test_the_command_line_dispatches_to_each_commands_module(tmp_path):
    """list and retention --dry-run through the command line, on an empty backup directory."""
    import json
    import subprocess

    script = pathlib.Path(__file__).resolve().parents[2] / "roles" / "backup" / "files" / "freshtrack_backup.py"
    config = tmp_path / "backup.json"
    config.write_text(json.dumps({
        "name": "freshtrack", "dir": str(tmp_path / "backups"), "source": {"mode": "container"},
        "retention": {"local": {"daily": 7, "weekly": 4, "monthly": 0}, "remote": {"daily": 1, "weekly": 0, "monthly": 0}},
        "s3": {"enabled": False}, "encryption": {"mode": "none"}, "compression": {}, "verify": {},
        "lock_file": str(tmp_path / "lock"), "state_file": str(tmp_path / "state.json"), "min_free_bytes": 0}))
    for command, expected in ((["list"], {"ok": True, "backups": []}),
                              (["retention", "--dry-run"], {"ok": True, "local": {"kept": 0, "deleted": [], "why": {}}})):
        result = subprocess.run([sys.executable, "-B", str(script), "--config", str(config), "--json", *command],
                                capture_output=True, text=True, timeout=60, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert json.loads(result.stdout) == expected
    bad = subprocess.run([sys.executable, "-B", str(script), "--config", str(config), "--json", "restore", "latest"],
                         capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 2 and json.loads(bad.stdout)["reason"] == "usage"


# ---- migrate: which rows the target lacks, and the SQL that selects them ----

def test_missing_ids_are_the_sources_the_target_lacks_in_order():
    assert fm.missing_ids([5, 1, 2, 9, 7], [1, 2, 7, 8]) == [5, 9]
    assert fm.missing_ids([], [1]) == [] and fm.missing_ids([3], []) == [3]


def test_ids_fold_into_runs():
    assert fm.ids_ranges([7, 1, 2, 3, 5, 8, 9, 10]) == [(1, 3), (5, 5), (7, 10)]
    assert fm.ids_ranges([]) == []


def test_ranges_condition_quotes_the_column_and_never_selects_all_when_empty():
    assert fm.ranges_condition('id', [(1, 3), (5, 5)]) == '"id" BETWEEN 1 AND 3 OR "id" = 5'
    assert fm.ranges_condition('we"ird', [(2, 2)]) == '"we""ird" = 2'
    assert fm.ranges_condition("id", []) == "false"


def test_table_names_are_quoted_part_by_part():
    assert fm.quote_table("public.sensor_readings") == '"public"."sensor_readings"'
    assert fm.quote_table('odd"schema.t') == '"odd""schema"."t"'
