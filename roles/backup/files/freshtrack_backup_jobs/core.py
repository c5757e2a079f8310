"""Shared pieces of the backup job: names and grouping of backup files, the retention plan,
manifest comparison and metrics text (pure, unit-tested), the dump/compress/encrypt pipeline,
PostgreSQL access (in the container or at a managed endpoint) and the S3 copy."""
from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import re
import subprocess
import sys
import tempfile

CHUNK = 1 << 20
NAME_RE = re.compile(r"^(?P<prefix>[A-Za-z0-9_.-]+?)-(?P<stamp>\d{8}T\d{6}Z)$")
STAMP = "%Y%m%dT%H%M%SZ"
SUFFIXES = {"none": ".dump.zst", "age": ".dump.zst.age", "gpg": ".dump.zst.gpg"}


class BackupError(Exception):
    """A failure with a message for the operator (and the metric's reason label)."""

    def __init__(self, message, reason="error"):
        super().__init__(message)
        self.reason = reason


# ---- Pure logic (unit-tested in tests/unit/test_backup_script.py) --------------------------------------

def backup_name(prefix, when):
    return f"{prefix}-{when.astimezone(dt.timezone.utc).strftime(STAMP)}"


def parse_backup_name(name, prefix):
    """The UTC time of a backup name of this prefix, or None for any other name."""
    match = NAME_RE.match(name)
    if not match or match.group("prefix") != prefix:
        return None
    return dt.datetime.strptime(match.group("stamp"), STAMP).replace(tzinfo=dt.timezone.utc)


def group_files(filenames, prefix):
    """{backup name: {'time', 'dump', 'sha256', 'manifest'}} from a directory or bucket listing."""
    backups = {}
    for filename in filenames:
        for part, suffixes in (("dump", tuple(SUFFIXES.values())), ("sha256", (".sha256",)),
                               ("manifest", (".manifest.json",))):
            suffix = next((s for s in suffixes if filename.endswith(s)), None)
            if suffix is None:
                continue
            name = filename[: -len(suffix)]
            when = parse_backup_name(name, prefix)
            if when is not None:
                backups.setdefault(name, {"name": name, "time": when})[part] = filename
            break
    return backups


def is_complete(backup):
    return all(backup.get(part) for part in ("dump", "sha256", "manifest"))


def is_predeploy(label):
    """Backups deploy.yml takes before it changes anything (pre-deploy, pre-rollback)."""
    return str(label or "").startswith("pre-")


def deploy_protected(backups, deploy_state, max_age_days, now):
    """{name: reason} of the backups a rollback may still need, which no count deletes.

    The backups taken before the current and the previous deploy (recorded in the deploy state),
    and every pre-deploy backup younger than `max_age_days` (a failed deploy records nothing, a
    deploy and its rollback may fall on one day). `backups` carry their manifest's 'label'.
    """
    protected = {}
    for which in ("current", "previous"):
        entry = (deploy_state or {}).get(which) or {}
        recorded = (entry.get("backup") or {}).get("name")
        if recorded in backups:
            protected[recorded] = f"taken before the {which} deploy ({entry.get('image', '?')})"
    limit = now - dt.timedelta(days=max_age_days)
    for name, backup in backups.items():
        if name not in protected and is_predeploy(backup.get("label")) and backup["time"] > limit:
            protected[name] = f"{backup['label']} backup younger than {max_age_days:g} days"
    return protected


def retention_plan(backups, daily, weekly, monthly, protected=None):
    """(keep, delete, why): names of backups to keep and to delete, newest first, and for each kept
    one the reasons it is kept.

    Kept: the newest backup of each of the `daily` newest days that have one, of the `weekly`
    newest ISO weeks and of the `monthly` newest months, always the newest complete backup, and
    whatever `protected` names ({name: reason}, see deploy_protected). Incomplete sets (a dump
    without manifest, say from an interrupted upload) are left alone unless a newer complete backup
    exists, so a failing job never deletes the last thing it has.
    """
    ordered = sorted(backups.values(), key=lambda b: b["time"], reverse=True)
    why = {}
    for count, period, label in ((daily, lambda t: t.date(), "daily"),
                                 (weekly, lambda t: t.isocalendar()[:2], "weekly"),
                                 (monthly, lambda t: (t.year, t.month), "monthly")):
        seen = []
        for backup in ordered:
            key = period(backup["time"])
            if key in seen:
                continue
            if len(seen) >= count:
                break
            seen.append(key)
            why.setdefault(backup["name"], []).append(f"newest of its {label[:-2] if label != 'daily' else 'day'}"
                                                      f" ({label} {len(seen)} of {count})")
    complete = [b for b in ordered if is_complete(b)]
    if complete:
        why.setdefault(complete[0]["name"], []).append("the newest complete backup")
        newest_good = complete[0]["time"]
        for b in ordered:
            if not is_complete(b) and b["time"] > newest_good:
                why.setdefault(b["name"], []).append("incomplete, newer than the newest complete one")
    else:
        for b in ordered:
            why.setdefault(b["name"], []).append("no complete backup yet")
    for name, reason in (protected or {}).items():
        if name in backups:
            why.setdefault(name, []).append(reason)
    names = [b["name"] for b in ordered]
    return [n for n in names if n in why], [n for n in names if n not in why], why


def compare_manifest(expected, actual):
    """Differences between the counts/checksum recorded at dump time and those of a restore."""
    problems = []
    want, got = expected.get("counts", {}), actual.get("counts", {})
    for table in sorted(set(want) | set(got)):
        if want.get(table) != got.get(table):
            problems.append(f"{table}: {want.get(table, 'missing')} rows at dump time, "
                            f"{got.get(table, 'missing')} restored")
    want_sum, got_sum = expected.get("checksum") or {}, actual.get("checksum") or {}
    if want_sum.get("value") != got_sum.get("value") or want_sum.get("rows") != got_sum.get("rows"):
        problems.append(f"readings checksum: {want_sum.get('rows')} rows / {want_sum.get('value')} at dump "
                        f"time, {got_sum.get('rows')} rows / {got_sum.get('value')} restored")
    return problems


def render_metrics(prefix, values, help_texts):
    """Prometheus text format; values: {metric: number or [(labels dict, number)]}."""
    lines = []
    for metric in sorted(values):
        name = f"{prefix}_{metric}"
        lines += [f"# HELP {name} {help_texts.get(metric, metric)}", f"# TYPE {name} gauge"]
        samples = values[metric] if isinstance(values[metric], list) else [({}, values[metric])]
        for labels, value in samples:
            label_text = ",".join(f'{k}="{str(v).replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
                                  for k, v in sorted(labels.items()))
            number = f"{value:.0f}" if float(value).is_integer() else f"{value:.3f}"
            lines.append(f"{name}{{{label_text}}} {number}" if label_text else f"{name} {number}")
    return "\n".join(lines) + "\n"


def free_bytes_ok(free, minimum):
    return free >= minimum


def format_bytes(size):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{size} B"
        size /= 1024
    return f"{size} B"


# ---- SQL the manifest and the verification share -------------------------------------------------------

COUNTS_SQL = (
    "SELECT format('%I.%I', n.nspname, c.relname), "
    "(xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I', n.nspname, c.relname),"
    " false, true, '')))[1]::text "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
    "AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%' ORDER BY 1;")


def checksum_sql(table, column, window):
    """Rows of the last `window` before the newest reading: count and an order-independent sum of
    64-bit hashes of each row's text (no sort, so it stays cheap on millions of rows)."""
    ident = ".".join('"' + part.replace('"', '""') + '"' for part in table.split("."))
    col = '"' + column.replace('"', '""') + '"'
    return (f"SELECT count(*), coalesce(sum(hashtextextended(r::text, 0)::numeric), 0) FROM {ident} r "
            f"WHERE {col} >= (SELECT max({col}) - interval '{int(window)} seconds' FROM {ident});")


def table_exists_sql(table):
    return f"SELECT to_regclass('{table.replace(chr(39), chr(39) * 2)}') IS NOT NULL;"


# ---- Running PostgreSQL clients -----------------------------------------------------------------------

class Postgres:
    """psql/pg_dump/pg_restore of the stack's PostgreSQL: `docker exec` into its container, or for
    managed databases a client container of the same image on the host network."""

    def __init__(self, source, workdir):
        self.source = source
        self.user, self.db = source["user"], source["db"]
        self.workdir = workdir
        self._pgpass = None

    def prefix(self, interactive=True):
        if self.source.get("mode", "container") == "container":
            return ["docker", "exec"] + (["-i"] if interactive else []) + [self.source["container"]]
        if self._pgpass is None:
            with open(self.source["password_file"], encoding="utf-8") as handle:
                password = handle.read().strip()
            self._pgpass = os.path.join(self.workdir, "pgpass")
            fd = os.open(self._pgpass, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(f"*:*:*:{self.user}:{password.replace(chr(92), chr(92) * 2).replace(':', chr(92) + ':')}\n")
        # The host's user namespace: the host's network, and a pgpass file only root may read.
        # verify-ca/verify-full check the server against the CA file the stack role wrote.
        tls = (["-v", f"{self.source['sslrootcert']}:/run/freshtrack-ca.pem:ro", "-e", "PGSSLROOTCERT=/run/freshtrack-ca.pem"]
               if self.source.get("sslrootcert") else [])
        return ["docker", "run", "--rm"] + (["-i"] if interactive else []) + [
            "--network", "host", "--userns", "host", "-v", f"{self._pgpass}:/run/pgpass:ro", "-e", "PGPASSFILE=/run/pgpass",
            "-e", f"PGHOST={self.source['host']}", "-e", f"PGPORT={self.source.get('port', 5432)}",
            "-e", f"PGSSLMODE={self.source.get('sslmode', 'verify-full')}"] + tls + [self.source["image"]]

    def psql(self, sql, db=None, check=True):
        result = subprocess.run(
            self.prefix() + ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                             "-U", self.user, "-d", db or self.db],
            input=sql, capture_output=True, text=True, timeout=3600, check=False)
        if check and result.returncode != 0:
            raise BackupError(f"psql failed: {result.stderr.strip()[-500:]}", "database")
        return result.stdout

    def measure(self, verify_cfg, db=None):
        """Per-table row counts and the readings checksum of a database."""
        return measure_with(lambda sql: self.psql(sql, db=db), verify_cfg)


def measure_with(run_sql, verify_cfg):
    counts = {}
    for line in run_sql(COUNTS_SQL).splitlines():
        if "\t" in line:
            table, count = line.split("\t", 1)
            counts[table] = int(count)
    checksum = None
    table = verify_cfg.get("checksum_table", "")
    if table and run_sql(table_exists_sql(table)).strip() == "t":
        rows, value = run_sql(checksum_sql(table, verify_cfg["checksum_column"],
                                           verify_cfg["checksum_window_seconds"])).strip().split("\t")
        checksum = {"table": table, "column": verify_cfg["checksum_column"],
                    "window_seconds": verify_cfg["checksum_window_seconds"], "rows": int(rows), "value": value}
    return {"counts": counts, "checksum": checksum}


class SnapshotSession:
    """A psql session holding a REPEATABLE READ transaction open: pg_dump imports its snapshot, and
    the manifest's counts are taken in the very same snapshot (exact, even under writes)."""

    def __init__(self, pg):
        self.proc = subprocess.Popen(
            pg.prefix() + ["psql", "-X", "-q", "-A", "-t", "-F", "\t", "-v", "ON_ERROR_STOP=1",
                           "-U", pg.user, "-d", pg.db],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, bufsize=1)
        self.snapshot = self.query("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;\n"
                                   "SELECT pg_export_snapshot();").strip()
        if not re.match(r"^[0-9A-F-]+$", self.snapshot):
            raise BackupError(f"could not export a snapshot: {self.snapshot or self._stderr()}", "database")

    def query(self, sql):
        marker = "__freshtrack_done__"
        try:
            self.proc.stdin.write(f"{sql}\nSELECT '{marker}';\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BackupError(f"psql ended: {self._stderr()}", "database") from None
        out = []
        for line in self.proc.stdout:
            if line.rstrip("\n") == marker:
                return "".join(out)
            out.append(line)
        raise BackupError(f"psql ended: {self._stderr()}", "database")

    def _stderr(self):
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
            return self.proc.stderr.read().strip()[-500:]
        return "no answer"

    def close(self):
        with contextlib.suppress(Exception):
            self.proc.stdin.write("COMMIT;\n")
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        if self.proc.poll() is None:
            self.proc.kill()


# ---- Pipelines -----------------------------------------------------------------------------------------

def compress_command(cfg):
    return ["zstd", "-q", "-c", f"-{int(cfg['compression']['level'])}", f"-T{int(cfg['compression']['threads'])}"]


def gpg_home(enc):
    home = enc.get("gpg_home") or "/root/.gnupg"
    os.makedirs(home, mode=0o700, exist_ok=True)
    return home


def encrypt_command(cfg):
    enc = cfg["encryption"]
    if enc["method"] == "age":
        return ["age", "--encrypt", "-R", enc["recipient_file"]]
    if enc["method"] == "gpg":
        return ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", gpg_home(enc),
                "--trust-model", "always", "--encrypt", "--recipient-file", enc["recipient_file"], "--output", "-"]
    return None


def decrypt_command(cfg):
    enc = cfg["encryption"]
    if enc["method"] == "age":
        if not enc.get("identity_file"):
            raise BackupError("backups are age-encrypted and no identity file is configured on this host "
                              "(encryption.identity_file): restore where the private key is", "encryption")
        return ["age", "--decrypt", "-i", enc["identity_file"]]
    if enc["method"] == "gpg":
        return ["gpg", "--batch", "--quiet", "--no-tty", "--homedir", gpg_home(enc),
                "--decrypt"]
    return None


def pipe_into(commands, source_path, sink_argv, tool):
    """commands (decompress, decrypt...) reading source_path, feeding sink_argv (pg_restore, psql) on its
    stdin; a sink that fails raises BackupError("restore") with the end of its stderr."""
    err = tempfile.TemporaryFile()
    sink = subprocess.Popen(sink_argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=err)
    try:
        run_pipeline(commands, source_path=source_path, sink_stdin=sink.stdin)
    except BrokenPipeError:
        pass  # the sink stopped reading: its own exit code and message say why
    finally:
        with contextlib.suppress(BrokenPipeError):
            sink.stdin.close()
        code = sink.wait()
    if code != 0:
        err.seek(0)
        raise BackupError(f"{tool} exited {code}: {err.read().decode(errors='replace').strip()[-500:]}", "restore")


def run_pipeline(commands, source_path=None, sink_path=None, sink_stdin=None):
    """commands[0] | commands[1] | ... ; the first reads source_path (if any); the output is hashed and
    written to sink_path (if any) or fed to sink_stdin (a Popen). Returns (sha256, bytes). Every stage
    must exit 0: a dump killed midway fails the whole backup."""
    source = open(source_path, "rb") if source_path else None  # noqa: SIM115 - closed in finally
    procs, stdin = [], source or subprocess.DEVNULL
    stderr_files = []
    try:
        for command in commands:
            err = tempfile.TemporaryFile()
            stderr_files.append(err)
            proc = subprocess.Popen(command, stdin=stdin, stdout=subprocess.PIPE, stderr=err)
            if procs:
                procs[-1].stdout.close()  # the next stage owns the pipe now (SIGPIPE reaches the writer)
            procs.append(proc)
            stdin = proc.stdout
        digest, size = hashlib.sha256(), 0
        out = os.fdopen(os.open(sink_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") if sink_path else sink_stdin
        try:
            while True:
                chunk = procs[-1].stdout.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        finally:
            if sink_path:
                out.flush()
                os.fsync(out.fileno())
                out.close()
        failures = []
        for command, proc, err in zip(commands, procs, stderr_files):
            code = proc.wait()
            if code != 0:
                err.seek(0)
                failures.append(f"{command[0] if command[0] != 'docker' else ' '.join(command[:2])}"
                                f"{' ' + command[3] if command[:2] == ['docker', 'exec'] and len(command) > 3 else ''}"
                                f" exited {code}: {err.read().decode(errors='replace').strip()[-400:]}")
        if failures:
            raise BackupError("; ".join(failures), "dump")
        return digest.hexdigest(), size
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if source:
            source.close()
        for err in stderr_files:
            err.close()


def sha256_file(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def write_atomic(path, data, mode=0o600):
    tmp = f"{path}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def log(message):
    """Progress for the journal on stderr; stdout carries only the --json answer."""
    print(f"freshtrack-backup: {message}", file=sys.stderr, flush=True)


# ---- Off-site storage (boto3, imported only when configured) -------------------------------------------

class OffSite:
    def __init__(self, s3):
        import boto3  # noqa: PLC0415 - only hosts with off-site storage need it
        from botocore.config import Config  # noqa: PLC0415

        self.bucket, self.prefix = s3["bucket"], s3.get("prefix", "").strip("/")
        kwargs = {"region_name": s3.get("region") or None, "endpoint_url": s3.get("endpoint_url") or None,
                  "config": Config(connect_timeout=10, read_timeout=60, retries={"max_attempts": 3})}
        if s3.get("access_key_id"):
            kwargs.update(aws_access_key_id=s3["access_key_id"], aws_secret_access_key=s3["secret_access_key"])
        self.client = boto3.client("s3", **kwargs)
        self.storage_class = s3.get("storage_class") or None

    def key(self, filename):
        return f"{self.prefix}/{filename}" if self.prefix else filename

    def upload(self, path, sha256=None):
        extra = {"Metadata": {"sha256": sha256}} if sha256 else {}
        if self.storage_class:
            extra["StorageClass"] = self.storage_class
        self.client.upload_file(path, self.bucket, self.key(os.path.basename(path)), ExtraArgs=extra or None)

    def size(self, filename):
        return self.client.head_object(Bucket=self.bucket, Key=self.key(filename))["ContentLength"]

    def list(self):
        names, token = [], None
        while True:
            kwargs = {"Bucket": self.bucket, "Prefix": self.key("")}
            if token:
                kwargs["ContinuationToken"] = token
            page = self.client.list_objects_v2(**kwargs)
            names += [obj["Key"][len(self.key("")):] for obj in page.get("Contents", [])]
            if not page.get("IsTruncated"):
                return names
            token = page["NextContinuationToken"]

    def read(self, filename):
        return self.client.get_object(Bucket=self.bucket, Key=self.key(filename))["Body"].read().decode()

    def download(self, filename, path):
        self.client.download_file(self.bucket, self.key(filename), path)

    def delete(self, filenames):
        for start in range(0, len(filenames), 1000):
            batch = filenames[start:start + 1000]
            answer = self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": [{"Key": self.key(f)} for f in batch], "Quiet": True})
            if answer.get("Errors"):
                raise BackupError(f"off-site deletion failed: {answer['Errors'][:3]}", "retention")
