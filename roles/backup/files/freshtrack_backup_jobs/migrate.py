"""Moving the live database to another server (a managed endpoint) with the writers stopped only for
the last seconds (playbooks/migrate_database.yml drives it):

- copy (writers running): the whole database as it was in one snapshot (pg_dump | psql into the
  target's empty database), then the append-only tables' rows written since; their high-water marks
  are kept in a state file for `finish`.
- finish (writers stopped): the append-only tables' rows the target lacks (the newest, and any that
  committed late below a high-water mark), every other table copied again where it differs, the
  sequences set; then both sides measured as a backup's manifest is (per-table row counts, the
  readings checksum). Equal, or the job fails and the app stays on the old database.

Nothing is dropped or emptied on either side: the target must hold no table to begin with."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time

from .core import BackupError, Postgres, SnapshotSession, compare_manifest, log, pipe_into, write_atomic

# Rows that may commit after a later id was already visible (concurrent inserts): `finish` compares
# the ids of this many rows below each high-water mark on both sides, not only the tail above it.
LATE_COMMIT_WINDOW = 10000

TABLES_SQL = (
    "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1;")
SEQUENCES_SQL = ("SELECT format('%I.%I', schemaname, sequencename), coalesce(last_value, 0), "
                 "last_value IS NOT NULL FROM pg_sequences ORDER BY 1;")


def quote_table(table):
    return ".".join('"' + part.replace('"', '""') + '"' for part in table.split("."))


def quote_ident(name):
    return '"' + name.replace('"', '""') + '"'


def missing_ids(source_ids, target_ids):
    """Ids the source has and the target lacks, ascending (pure, unit-tested)."""
    return sorted(set(source_ids) - set(target_ids))


def ids_ranges(ids):
    """[(first, last), ...] runs of consecutive ids: a SQL condition stays short for long tails."""
    ranges = []
    for value in sorted(ids):
        if ranges and value == ranges[-1][1] + 1:
            ranges[-1][1] = value
        else:
            ranges.append([value, value])
    return [tuple(r) for r in ranges]


def ranges_condition(column, ranges):
    col = quote_ident(column)
    return " OR ".join(f"{col} = {a}" if a == b else f"{col} BETWEEN {a} AND {b}" for a, b in ranges) or "false"


class Migration:
    def __init__(self, job, target_cfg, append_only):
        self.job, self.target_cfg, self.append_only = job, target_cfg, dict(append_only)
        self.state_file = os.path.join(job.dir, ".migrate-state.json")
        self.target_name = f"{target_cfg['host']}:{target_cfg.get('port', 5432)}/{target_cfg['db']}"

    def __enter__(self):
        # Beside the backups, not under /tmp (see run.py: the Docker daemon must see the password file).
        os.makedirs(self.job.dir, mode=0o700, exist_ok=True)
        self.work = tempfile.mkdtemp(prefix=".work-migrate-", dir=self.job.dir)
        os.mkdir(os.path.join(self.work, "source"), 0o700)
        os.mkdir(os.path.join(self.work, "target"), 0o700)
        self.src = Postgres(self.job.cfg["source"], os.path.join(self.work, "source"))
        self.dst = Postgres(self.target_cfg, os.path.join(self.work, "target"))
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.work, ignore_errors=True)

    # ---- copying rows ----

    def copy_rows(self, table, condition="true", replace=False):
        """COPY the source's rows of `table` matching `condition` into the target (columns by name).
        replace: the target's rows go first, in the same transaction."""
        columns = self.columns(table)
        cols = ", ".join(quote_ident(c) for c in columns)
        out_sql = f"COPY (SELECT {cols} FROM {quote_table(table)} WHERE {condition}) TO STDOUT"
        in_cmds = (["-c", f"DELETE FROM {quote_table(table)}"] if replace else []) + ["-c", f"COPY {quote_table(table)} ({cols}) FROM STDIN"]
        source = self.src.prefix(interactive=False) + ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-U", self.src.user,
                                                       "-d", self.src.db, "-c", out_sql]
        sink = self.dst.prefix() + ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                    "-U", self.dst.user, "-d", self.dst.db] + in_cmds
        pipe_into([source], None, sink, f"copying {table}")

    def columns(self, table):
        schema, name = table.split(".", 1)
        out = self.src.psql("SELECT attname FROM pg_attribute WHERE attrelid = "
                            f"to_regclass('{quote_table(table).replace(chr(39), chr(39) * 2)}') AND attnum > 0 "
                            "AND NOT attisdropped AND attgenerated = '' ORDER BY attnum;")
        columns = [line for line in out.splitlines() if line]
        if not columns:
            raise BackupError(f"{schema}.{name}: no columns found on the source", "database")
        return columns

    def max_id(self, pg, table, column):
        return int(pg.psql(f"SELECT coalesce(max({quote_ident(column)}), 0) FROM {quote_table(table)};").strip() or 0)

    def ids_above(self, pg, table, column, floor):
        out = pg.psql(f"SELECT {quote_ident(column)} FROM {quote_table(table)} WHERE {quote_ident(column)} > {int(floor)};")
        return [int(line) for line in out.splitlines() if line.strip()]

    def fingerprint(self, pg, table):
        return pg.psql(f"SELECT count(*), coalesce(sum(hashtextextended(r::text, 0)::numeric), 0) FROM {quote_table(table)} r;").strip()

    def tables(self, pg):
        return [line for line in pg.psql(TABLES_SQL).splitlines() if line]

    # ---- the two phases ----

    def copy(self):
        started = time.time()
        result = {"phases": {}, "target": self.target_name}
        existing = self.tables(self.dst)
        if existing:
            raise BackupError(f"the target database {self.target_name} already holds {len(existing)} table(s) "
                              f"({', '.join(existing[:5])}{', ...' if len(existing) > 5 else ''}): the migration copies "
                              "only into an empty database, and empties none. Nothing was copied.", "target")
        t0 = self.job.phase(result, "target_check", started)
        session = SnapshotSession(self.src)
        try:
            marks = {}
            for table, column in self.append_only.items():
                if session.query(f"SELECT to_regclass('{table}') IS NOT NULL;").strip() == "t":
                    marks[table] = int(session.query(f"SELECT coalesce(max({quote_ident(column)}), 0) "
                                                     f"FROM {quote_table(table)};").strip() or 0)
            # Plain SQL without owners or grants: the managed server's user owns everything, and the
            # SQL of the source's pg_dump suits a server of its version or newer.
            dump = self.src.prefix(interactive=False) + [
                "pg_dump", "--format=plain", "--no-owner", "--no-privileges", f"--snapshot={session.snapshot}",
                "-U", self.src.user, "-d", self.src.db]
            load = self.dst.prefix() + ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction",
                                        "-U", self.dst.user, "-d", self.dst.db]
            pipe_into([dump], None, load, "pg_dump | psql")
        finally:
            session.close()
        t0 = self.job.phase(result, "bulk_copy", t0)
        state = {"target": self.target_name, "bulk_marks": dict(marks), "marks": dict(marks)}
        write_atomic(self.state_file, json.dumps(state) + "\n")
        # What the writers added meanwhile, while they still run: `finish` then has seconds of rows left.
        caught_up = 0
        for table, mark in marks.items():
            column = self.append_only[table]
            top = self.max_id(self.src, table, column)
            if top > mark:
                self.copy_rows(table, f"{quote_ident(column)} > {mark} AND {quote_ident(column)} <= {top}")
                caught_up += top - mark
                state["marks"][table] = top
                write_atomic(self.state_file, json.dumps(state) + "\n")
        self.job.phase(result, "catch_up", t0)
        measured = self.dst.measure(self.job.verify_cfg)
        result.update(ok=True, marks=state["marks"], caught_up_ids=caught_up, rows=sum(measured["counts"].values()),
                      counts=measured["counts"], seconds=round(time.time() - started, 2))
        log(f"copied the database into {self.target_name}: {result['rows']} rows; "
            f"{caught_up} ids caught up after the snapshot")
        return result

    def finish(self):
        """Writers must be stopped: whatever the source has then is what the target must have."""
        started = time.time()
        result = {"phases": {}, "target": self.target_name, "copied": {}}
        try:
            with open(self.state_file, encoding="utf-8") as handle:
                state = json.load(handle)
        except (FileNotFoundError, ValueError):
            raise BackupError("no copy to finish: run `migrate copy` first", "usage") from None
        if state.get("target") != self.target_name:
            raise BackupError(f"the copy was made into {state.get('target')}, not {self.target_name}: run `migrate copy` again",
                              "usage")
        source_tables, target_tables = self.tables(self.src), self.tables(self.dst)
        if source_tables != target_tables:
            raise BackupError(f"the tables differ: source {source_tables}, target {target_tables} (a schema change "
                              "since the copy?): run the migration again into an empty database", "mismatch")
        for table in source_tables:
            if table in self.append_only and table in state["marks"]:
                column = self.append_only[table]
                floor = max(0, min(state["bulk_marks"][table], state["marks"][table]) - LATE_COMMIT_WINDOW)
                lacking = missing_ids(self.ids_above(self.src, table, column, floor),
                                      self.ids_above(self.dst, table, column, floor))
                if lacking:
                    self.copy_rows(table, ranges_condition(column, ids_ranges(lacking)))
                    result["copied"][table] = len(lacking)
            elif self.fingerprint(self.src, table) != self.fingerprint(self.dst, table):
                # Not append-only (a few rows, as a rule): copied again whole, in one transaction.
                self.copy_rows(table, replace=True)
                result["copied"][table] = "all"
        t0 = self.job.phase(result, "final_sync", started)
        for line in self.src.psql(SEQUENCES_SQL).splitlines():
            if "\t" in line:
                name, value, called = line.split("\t")
                self.dst.psql(f"SELECT setval('{name.replace(chr(39), chr(39) * 2)}', {int(value)}, {called == 't'});")
        t0 = self.job.phase(result, "sequences", t0)
        source, target = self.src.measure(self.job.verify_cfg), self.dst.measure(self.job.verify_cfg)
        self.job.phase(result, "compare", t0)
        problems = compare_manifest(source, target)
        if problems:
            raise BackupError(f"the target differs from the source: {'; '.join(problems)}; the app stays on the old "
                              "database", "mismatch")
        result.update(ok=True, counts=target["counts"], checksum=target["checksum"],
                      rows=sum(target["counts"].values()), seconds=round(time.time() - started, 2))
        log(f"{self.target_name} holds what the source holds: {result['rows']} rows, counts and readings checksum equal")
        return result


def migrate(job, phase, target_file, append_only):
    try:
        with open(target_file, encoding="utf-8") as handle:
            target_cfg = json.load(handle)
    except (OSError, ValueError) as error:
        raise BackupError(f"{target_file}: {error}", "config") from None
    for key in ("host", "db", "user", "password_file", "image"):
        if not target_cfg.get(key):
            raise BackupError(f"{target_file} lacks '{key}'", "config")
    target_cfg["mode"] = "endpoint"
    if job.cfg["source"].get("mode", "container") != "container":
        raise BackupError("the database already is at an endpoint (the backup job's source is not the PostgreSQL "
                          "container): nothing to migrate from", "usage")
    with Migration(job, target_cfg, append_only) as migration:
        return migration.copy() if phase == "copy" else migration.finish()
