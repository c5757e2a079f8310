#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: cert_expiry
short_description: Check TLS certificates of endpoints and files for expiry, renewal and validity
version_added: 0.1.0
description:
  - Connects to each endpoint (optionally after STARTTLS for SMTP or PostgreSQL), reads the served
    chain and reports every certificate's dates, lifetime, key, names and whether the chain verifies
    and the name matches; reads PEM files or directories (for example Caddy's certificate storage) too.
  - Targets are checked concurrently, each with its own timeout; one failing target never hides the
    others. Read-only, so check mode runs the same checks.
  - Each target gets a status, worst last - C(ok), C(renewal_overdue) (less than
    I(renewal_overdue_fraction) of its lifetime left, so the automatic renewal did not happen),
    C(warning), C(critical) (days left below the thresholds), C(invalid) (chain or name),
    C(not_yet_valid), C(unreachable), C(expired).
  - Optionally writes the results as a Prometheus textfile (atomically) for node-exporter's textfile
    collector.
author:
  - FreshTrack Pro operations (@freshtrack)
requirements:
  - cryptography (python3-cryptography) on the host that runs the module
options:
  endpoints:
    description: TLS endpoints to check.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: Host name or IP address to connect to.
        type: str
        required: true
      port:
        description: TCP port.
        type: int
        default: 443
      server_name:
        description: Name sent as SNI and matched against the certificate; defaults to I(host).
        type: str
      starttls:
        description: Protocol to speak before the TLS handshake.
        type: str
        choices: [smtp, postgres]
  paths:
    description: PEM certificate files, or directories searched for C(*.pem), C(*.crt) and C(*.cer).
    type: list
    elements: path
    default: []
  ca_path:
    description: CA bundle the served chains must verify against; the system store when unset.
    type: path
  timeout:
    description: Seconds allowed per endpoint (connect, STARTTLS and handshake).
    type: float
    default: 5
  workers:
    description: Targets checked at the same time.
    type: int
    default: 16
  warning_days:
    description: Days left below which a certificate is C(warning).
    type: float
    default: 14
  critical_days:
    description: Days left below which a certificate is C(critical).
    type: float
    default: 7
  renewal_overdue_fraction:
    description:
      - Fraction of the lifetime left below which the renewal is overdue. ACME clients such as Caddy
        and certbot renew with about a third of the lifetime left, so the default flags a renewal
        that did not happen while there is still time, for 90-, 47- or 200-day certificates alike.
    type: float
    default: 0.25
  fail_on:
    description: The least severe status that fails the task; C(never) only reports.
    type: str
    default: critical
    choices: [never, renewal_overdue, warning, critical, invalid, expired]
  prometheus_textfile:
    description: Write the results in the Prometheus text format to this file (atomic replace).
    type: path
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Nothing on the host changes except the optional textfile, which check mode does not write.
  diff_mode:
    support: none
  platform:
    platforms: posix
notes:
  - The served chain is read with C(get_unverified_chain) (Python 3.10 and later); older Pythons report
    the leaf only.
seealso:
  - module: community.crypto.get_certificate
"""

EXAMPLES = r"""
- name: Certificates of the public sites and of Caddy's storage
  freshtrack.deploy.cert_expiry:
    endpoints:
      - { host: app.freshtrackpro.com }
      - { host: 203.0.113.10, server_name: api.freshtrackpro.com }
      - { host: db.internal, port: 5432, starttls: postgres }
    paths: [/var/lib/docker/volumes/freshtrack_caddy_data/_data/caddy/certificates]
    fail_on: warning
    prometheus_textfile: /var/lib/prometheus/node-exporter/freshtrack_certs.prom
  register: certs

- name: Show what expires first
  ansible.builtin.debug:
    msg: "{{ certs.results | map(attribute='target') | zip(certs.results | map(attribute='status')) }}"
"""

RETURN = r"""
results:
  description: One entry per endpoint and per file, in the order given (endpoints first).
  returned: always
  type: list
  elements: dict
  contains:
    target:
      description: "C(host:port) (with the SNI name when it differs) or the file's path."
      returned: always
      type: str
      sample: "app.freshtrackpro.com:443"
    kind:
      description: Where the certificate came from.
      returned: always
      type: str
      choices: [endpoint, file]
    status:
      description: The target's status (see the description), worst last.
      returned: always
      type: str
      choices: [ok, renewal_overdue, warning, critical, invalid, not_yet_valid, unreachable, expired]
    reason:
      description: Why, in words.
      returned: always
      type: str
    certificate:
      description: The leaf certificate; null when the target is unreachable.
      returned: always
      type: dict
      contains:
        subject:
          description: Subject (RFC 4514).
          returned: success
          type: str
        common_name:
          description: Subject common name.
          returned: success
          type: str
        sans:
          description: DNS names and IP addresses.
          returned: success
          type: list
          elements: str
        issuer:
          description: Issuer (RFC 4514).
          returned: success
          type: str
        serial:
          description: Serial number (hexadecimal).
          returned: success
          type: str
        not_before:
          description: "Start of validity (UTC, ISO 8601)."
          returned: success
          type: str
          sample: "2026-11-01T00:00:00Z"
        not_after:
          description: "End of validity (UTC, ISO 8601)."
          returned: success
          type: str
          sample: "2027-01-30T00:00:00Z"
        seconds_remaining:
          description: Seconds until C(not_after) (negative when expired).
          returned: success
          type: int
        days_remaining:
          description: Days until C(not_after).
          returned: success
          type: float
        lifetime_days:
          description: C(not_after) minus C(not_before), in days.
          returned: success
          type: float
        lifetime_fraction_remaining:
          description: Share of the lifetime left, 0 to 1.
          returned: success
          type: float
        key_type:
          description: "Key algorithm: C(RSA), C(ECDSA), C(Ed25519), C(Ed448), C(DSA), or the key class name of another."
          returned: success
          type: str
        key_size:
          description: Key size in bits.
          returned: success
          type: int
        signature_algorithm:
          description: Signature algorithm.
          returned: success
          type: str
        self_signed:
          description: The issuer equals the subject.
          returned: success
          type: bool
    chain:
      description: "The served (or stored) chain, leaf first: subject, issuer and C(not_after) of each."
      returned: always
      type: list
      elements: dict
    chain_earliest_not_after:
      description: The earliest expiry in the chain.
      returned: when a certificate was read
      type: str
    chain_verified:
      description: The chain verifies against the CA store (endpoints only).
      returned: endpoints
      type: bool
    verify_error:
      description: Why the chain does not verify.
      returned: when the chain does not verify
      type: str
    hostname_match:
      description: The name is in the certificate (endpoints only).
      returned: endpoints
      type: bool
    error:
      description: The connection or parse error of an unreachable target.
      returned: when unreachable
      type: str
    elapsed_seconds:
      description: The time this target took.
      returned: always
      type: float
summary:
  description: The number of targets per status.
  returned: always
  type: dict
  sample: {ok: 3, warning: 1}
worst_status:
  description: The most severe status of all targets.
  returned: always
  type: str
elapsed_seconds:
  description: The wall time of all checks.
  returned: always
  type: float
"""

import os
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.freshtrack.deploy.plugins.module_utils import cert_expiry


def main():
    module = AnsibleModule(
        argument_spec=dict(
            endpoints=dict(type="list", elements="dict", default=[], options=dict(
                host=dict(type="str", required=True),
                port=dict(type="int", default=443),
                server_name=dict(type="str"),
                starttls=dict(type="str", choices=list(cert_expiry.STARTTLS_PROTOCOLS)),
            )),
            paths=dict(type="list", elements="path", default=[]),
            ca_path=dict(type="path"),
            timeout=dict(type="float", default=5),
            workers=dict(type="int", default=16),
            warning_days=dict(type="float", default=14),
            critical_days=dict(type="float", default=7),
            renewal_overdue_fraction=dict(type="float", default=0.25),
            fail_on=dict(type="str", default="critical",
                         choices=["never", "renewal_overdue", "warning", "critical", "invalid", "expired"]),
            prometheus_textfile=dict(type="path"),
        ),
        required_one_of=[("endpoints", "paths")],
        supports_check_mode=True,
    )
    params = module.params
    if not cert_expiry.HAS_CRYPTOGRAPHY:
        module.fail_json(msg=missing_required_lib("cryptography"), exception=str(cert_expiry.CRYPTOGRAPHY_IMPORT_ERROR))
    problems = []
    if params["timeout"] <= 0:
        problems.append("timeout must be above 0 (got %s)" % params["timeout"])
    if not 1 <= params["workers"] <= 256:
        problems.append("workers must be 1-256 (got %s)" % params["workers"])
    if not 0 <= params["critical_days"] <= params["warning_days"]:
        problems.append("critical_days (%s) must be between 0 and warning_days (%s)" % (
            params["critical_days"], params["warning_days"]))
    if not 0 < params["renewal_overdue_fraction"] < 1:
        problems.append("renewal_overdue_fraction must be between 0 and 1 (got %s)" % params["renewal_overdue_fraction"])
    for endpoint in params["endpoints"]:
        if not 1 <= endpoint["port"] <= 65535:
            problems.append("endpoints: port %s of %s is not 1-65535" % (endpoint["port"], endpoint["host"]))
    if params["ca_path"] and not os.path.isfile(params["ca_path"]):
        problems.append("ca_path %s is not a file" % params["ca_path"])
    if problems:
        module.fail_json(msg="; ".join(problems))

    settings = {"timeout": params["timeout"], "ca_path": params["ca_path"], "warning_days": params["warning_days"],
                "critical_days": params["critical_days"], "renewal_fraction": params["renewal_overdue_fraction"]}
    started = time.monotonic()
    results = cert_expiry.check_all(params["endpoints"], cert_expiry.pem_files(params["paths"]), settings,
                                    params["workers"])
    elapsed = round(time.monotonic() - started, 3)
    statuses = [result["status"] for result in results]
    summary = {status: statuses.count(status) for status in cert_expiry.SEVERITY if status in statuses}
    changed = False
    if params["prometheus_textfile"] and not module.check_mode:
        try:
            changed = cert_expiry.write_atomically(params["prometheus_textfile"],
                                                   cert_expiry.prometheus_text(results, time.time()))
        except OSError as error:
            module.fail_json(msg="cannot write %s: %s" % (params["prometheus_textfile"], error), results=results)
    output = dict(changed=changed, results=results, summary=summary, worst_status=cert_expiry.worst(statuses),
                  elapsed_seconds=elapsed)
    if cert_expiry.should_fail(statuses, params["fail_on"]):
        failing = ["%s: %s (%s)" % (r["target"], r["status"], r["reason"]) for r in results
                   if cert_expiry.SEVERITY[r["status"]] >= cert_expiry.SEVERITY[params["fail_on"]]]
        module.fail_json(msg="%d of %d certificate(s) at or beyond '%s': %s" % (
            len(failing), len(results), params["fail_on"], "; ".join(failing)), **output)
    module.exit_json(**output)


if __name__ == "__main__":
    main()
