"""The host timer's certificate check, written to node-exporter's textfile collector.

    freshtrack_cert_monitor.py --config /etc/freshtrack/cert-monitor.json --textfile DIR/freshtrack_certs.prom

The checks are the cert_expiry module's own code (plugins/module_utils/cert_expiry.py, installed
beside this file as cert_expiry.py): the module and the timer have one checker. The JSON config
holds endpoints, paths, ca_path, timeout, workers, warning_days, critical_days and
renewal_overdue_fraction. One line per target on stdout (the journal); exit 0 unless the textfile
cannot be written (a failing certificate is a metric, not a failed unit).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cert_expiry  # noqa: E402  (installed beside this file)


def settings_from(config: dict) -> dict:
    """The checker's settings from the config file, with the module's defaults."""
    return {"timeout": float(config.get("timeout", 5)), "ca_path": config.get("ca_path") or None,
            "warning_days": float(config.get("warning_days", 14)),
            "critical_days": float(config.get("critical_days", 7)),
            "renewal_fraction": float(config.get("renewal_overdue_fraction", 0.25))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Certificate expiry to a Prometheus textfile")
    parser.add_argument("--config", required=True)
    parser.add_argument("--textfile", required=True)
    args = parser.parse_args(argv)
    with open(args.config, encoding="utf-8") as handle:
        config = json.load(handle)
    endpoints = [dict({"port": 443}, **endpoint) for endpoint in config.get("endpoints", [])]
    results = cert_expiry.check_all(endpoints, cert_expiry.pem_files(config.get("paths", [])),
                                    settings_from(config), int(config.get("workers", 16)))
    cert_expiry.write_atomically(args.textfile, cert_expiry.prometheus_text(results, time.time()))
    for result in results:
        print("%s %s: %s" % (result["target"], result["status"], result["reason"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
