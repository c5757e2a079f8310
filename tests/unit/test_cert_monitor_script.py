"""The cert_monitor role's host entry point, installed as the role installs it: the script beside
the module's checks (cert_expiry.py), run by the timer's command line against a config file."""
from __future__ import annotations

import datetime
import json
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
import certmaker  # noqa: E402


def install(tmp_path: pathlib.Path) -> pathlib.Path:
    lib = tmp_path / "lib"
    lib.mkdir()
    shutil.copy(ROOT / "plugins" / "module_utils" / "cert_expiry.py", lib / "cert_expiry.py")
    shutil.copy(ROOT / "roles" / "cert_monitor" / "files" / "freshtrack_cert_monitor.py", lib / "freshtrack_cert_monitor.py")
    return lib / "freshtrack_cert_monitor.py"


def test_the_timer_command_writes_metrics_for_each_certificate(tmp_path):
    script = install(tmp_path)
    certs = tmp_path / "certs"
    certs.mkdir()
    soon = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=3)
    (certs / "ok.crt").write_bytes(certmaker.pem(certmaker.make_cert("ok.example.com")[0]))
    (certs / "soon.crt").write_bytes(certmaker.pem(certmaker.make_cert("soon.example.com", not_after=soon)[0]))
    config = tmp_path / "cert-monitor.json"
    config.write_text(json.dumps({"endpoints": [], "paths": [str(certs)], "warning_days": 14, "critical_days": 7}))
    textfile = tmp_path / "freshtrack_certs.prom"
    result = subprocess.run([sys.executable, str(script), "--config", str(config), "--textfile", str(textfile)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stdout.splitlines())
    assert len(lines) == 2 and " ok: " in lines[0] and " critical: " in lines[1], result.stdout
    metrics = textfile.read_text()
    assert 'freshtrack_cert_status{' in metrics and "soon.crt" in metrics and "ok.crt" in metrics


def test_the_module_utils_file_is_a_library_only():
    """No command line left in module_utils: it neither parses arguments nor prints."""
    source = (ROOT / "plugins" / "module_utils" / "cert_expiry.py").read_text()
    assert "argparse" not in source and "print(" not in source and "__main__" not in source
