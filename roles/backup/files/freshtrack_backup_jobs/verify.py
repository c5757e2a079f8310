"""Verification: the newest (or a named) backup restored into a throwaway PostgreSQL container and
compared with its manifest (row counts, the checksum over recent readings)."""
from __future__ import annotations

import contextlib
import os
import subprocess
import time

from .core import BackupError, Postgres, compare_manifest, log


def scratch_image(job):
    """The image of the scratch server: the PostgreSQL container's own (same major version)."""
    if job.verify_cfg.get("image"):
        return job.verify_cfg["image"]
    inspect = subprocess.run(["docker", "inspect", "--format", "{{.Config.Image}}", job.cfg["source"]["container"]],
                             capture_output=True, text=True, check=False)
    if inspect.returncode != 0:
        raise BackupError(f"cannot tell the image of {job.cfg['source']['container']}: {inspect.stderr.strip()}",
                          "verify")
    return inspect.stdout.strip()


def verify(job, name):
    started = time.time()
    result = {"ok": False, "phases": {}}
    container = f"freshtrack-backup-verify-{os.getpid()}"
    try:
        manifest, dump_path = job.resolve(name)
        result.update(name=manifest["name"], created=manifest["created"])
        t0 = job.phase(result, "fetch_check", started)
        user, db = job.cfg["source"]["user"], job.cfg["source"]["db"]
        # A scratch server: no network, data in tmpfs-free container storage, removed afterwards.
        subprocess.run(["docker", "run", "-d", "--rm", "--name", container, "--network", "none",
                        "--label", "org.freshtrack.purpose=backup-verify",
                        "-e", "POSTGRES_PASSWORD=verify-only", "-e", f"POSTGRES_USER={user}",
                        "-e", f"POSTGRES_DB={db}", scratch_image(job)],
                       check=True, capture_output=True, timeout=120)
        deadline = time.time() + 120
        while subprocess.run(["docker", "exec", container, "pg_isready", "-q", "-h", "127.0.0.1", "-U", user],
                             check=False, capture_output=True).returncode != 0:
            if time.time() > deadline:
                raise BackupError("the scratch PostgreSQL did not start within 120 s", "verify")
            time.sleep(0.5)
        t0 = job.phase(result, "scratch_server", t0)
        job.stream_restore(dump_path, ["docker", "exec", "-i", container], db, scratch=True)
        t0 = job.phase(result, "restore", t0)
        scratch = Postgres({"mode": "container", "container": container, "user": user, "db": db}, None)
        actual = scratch.measure(job.verify_cfg)
        job.phase(result, "compare", t0)
        problems = compare_manifest(manifest, actual)
        result.update(rows=sum(actual["counts"].values()), tables=len(actual["counts"]),
                      checksum_rows=(actual["checksum"] or {}).get("rows"), problems=problems)
        if problems:
            raise BackupError(f"restore of {manifest['name']} differs from its manifest: {'; '.join(problems)}",
                              "mismatch")
        result.update(ok=True, reason="")
        log(f"verified {manifest['name']}: {result['rows']} rows in {result['tables']} tables and the "
            f"checksum over {result['checksum_rows']} recent readings match the dump")
    except subprocess.CalledProcessError as error:
        result.update(reason="verify", error=f"{' '.join(error.cmd[:3])}: "
                      f"{(error.stderr or b'').decode(errors='replace').strip()[-300:]}")
    except BackupError as error:
        result.update(reason=error.reason, error=str(error))
    except Exception as error:  # noqa: BLE001 - any failure must reach the metric and the exit code
        result.update(reason="error", error=f"{type(error).__name__}: {error}")
    finally:
        subprocess.run(["docker", "rm", "-f", "-v", container], check=False, capture_output=True)
        result["seconds"] = round(time.time() - started, 2)
        verify_metrics(job, result)
    if not result["ok"]:
        log(f"verification FAILED: {result.get('error')}")
    return result


def verify_metrics(job, result):
    now = time.time()
    changes = {"verify_last_run": now, "verify_last_result": "success" if result["ok"] else result["reason"]}
    if result["ok"]:
        changes["verify_last_success"] = now
    with contextlib.suppress(OSError):
        job.save_state(**changes)
    state = job.state() or changes
    with contextlib.suppress(OSError):
        job.write_metrics("verify", {
            "last_run_timestamp_seconds": now,
            "last_success_timestamp_seconds": state.get("verify_last_success", 0),
            "success": 1 if result["ok"] else 0,
            "duration_seconds": result["seconds"],
            "restored_rows": result.get("rows", 0),
        }, {"last_run_timestamp_seconds": "When the restore verification last ran.",
            "last_success_timestamp_seconds": "When a restore verification last matched its manifest.",
            "success": "1 if the last restore verification matched the dump's counts and checksum.",
            "duration_seconds": "Duration of the last restore verification.",
            "restored_rows": "Rows the last verification restored."})
