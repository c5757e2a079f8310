# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Certificate expiry: what a certificate says, how worried to be about it, and fetching it.

The logic (describe, classify, hostname matching, Prometheus text) is pure and unit-tested with a
frozen clock; fetching talks TLS with Python's ssl (STARTTLS for SMTP and PostgreSQL) and parses
with `cryptography`. One endpoint failing never affects another.
"""
from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import struct
import time

try:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
    HAS_CRYPTOGRAPHY = True
    CRYPTOGRAPHY_IMPORT_ERROR = None
except ImportError as error:  # pragma: no cover - reported by the module
    HAS_CRYPTOGRAPHY = False
    CRYPTOGRAPHY_IMPORT_ERROR = error

# Worst last: the order decides which status an endpoint gets and what `fail_on` means.
SEVERITY = {
    "ok": 0,
    "renewal_overdue": 1,
    "warning": 2,
    "critical": 3,
    "invalid": 4,
    "not_yet_valid": 4,
    "unreachable": 4,
    "expired": 5,
}
STARTTLS_PROTOCOLS = ("smtp", "postgres")
PEM_SUFFIXES = (".pem", ".crt", ".cer")


def utc(value: datetime.datetime) -> datetime.datetime:
    return value if value.tzinfo else value.replace(tzinfo=datetime.timezone.utc)


def _not_before(cert):
    return utc(getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before)


def _not_after(cert):
    return utc(getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after)


def key_description(public_key) -> tuple[str, int | None]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return "RSA", public_key.key_size
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return "ECDSA", public_key.key_size
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256
    if isinstance(public_key, ed448.Ed448PublicKey):
        return "Ed448", 456
    if isinstance(public_key, dsa.DSAPublicKey):
        return "DSA", public_key.key_size
    return type(public_key).__name__, None


def subject_alt_names(cert) -> list[str]:
    try:
        extension = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    names = [str(name) for name in extension.get_values_for_type(x509.DNSName)]
    names += [str(address) for address in extension.get_values_for_type(x509.IPAddress)]
    return names


def hostname_matches(name: str | None, sans: list[str], common_name: str | None = None) -> bool | None:
    """RFC 6125 matching: a wildcard covers exactly one left-most label; IPs match exactly.
    The common name counts only when there are no SANs (as browsers did before ignoring it)."""
    if not name:
        return None
    name = name.rstrip(".").lower()
    try:
        wanted_ip = ipaddress.ip_address(name)
    except ValueError:
        wanted_ip = None
    candidates = sans or ([common_name] if common_name else [])
    for candidate in candidates:
        candidate = candidate.rstrip(".").lower()
        if wanted_ip is not None:
            try:
                if ipaddress.ip_address(candidate) == wanted_ip:
                    return True
            except ValueError:
                continue
            continue
        if candidate.startswith("*."):
            head, _dot, rest = name.partition(".")
            if head and rest == candidate[2:] and "*" not in rest:
                return True
        elif candidate == name:
            return True
    return False


def describe(cert, now: datetime.datetime) -> dict:
    """Everything a person or an alert rule wants to know about one certificate."""
    now = utc(now)
    not_before, not_after = _not_before(cert), _not_after(cert)
    lifetime = (not_after - not_before).total_seconds()
    remaining = (not_after - now).total_seconds()
    key_type, key_size = key_description(cert.public_key())
    common_names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    signature = cert.signature_hash_algorithm
    return {
        "subject": cert.subject.rfc4514_string(),
        "common_name": str(common_names[0].value) if common_names else None,
        "sans": subject_alt_names(cert),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": format(cert.serial_number, "X"),
        "not_before": not_before.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "not_after": not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "seconds_remaining": int(remaining),
        "days_remaining": round(remaining / 86400, 2),
        "lifetime_days": round(lifetime / 86400, 2),
        "lifetime_fraction_remaining": round(max(0.0, min(1.0, remaining / lifetime)) if lifetime > 0 else 0.0, 4),
        "key_type": key_type,
        "key_size": key_size,
        "signature_algorithm": "%s-%s" % (key_type, signature.name.upper()) if signature else key_type,
        "self_signed": cert.issuer == cert.subject,
    }


def classify(info: dict, now: datetime.datetime, warning_days: float, critical_days: float,
             renewal_fraction: float, chain_verified: bool | None = None,
             hostname_match: bool | None = None) -> tuple[str, str]:
    """(status, reason) for one described certificate."""
    now = utc(now)
    not_before = datetime.datetime.strptime(info["not_before"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc)
    if now < not_before:
        return "not_yet_valid", "valid from %s" % info["not_before"]
    if info["seconds_remaining"] <= 0:
        return "expired", "expired %s" % info["not_after"]
    if chain_verified is False:
        return "invalid", "the chain does not verify"
    if hostname_match is False:
        return "invalid", "the name is not in the certificate"
    days = info["days_remaining"]
    if days < critical_days:
        return "critical", "%.1f days left (critical below %s)" % (days, critical_days)
    if days < warning_days:
        return "warning", "%.1f days left (warning below %s)" % (days, warning_days)
    if info["lifetime_fraction_remaining"] < renewal_fraction:
        return "renewal_overdue", "%.0f%% of its lifetime left; renewal should have happened below %.0f%%" % (
            info["lifetime_fraction_remaining"] * 100, renewal_fraction * 100)
    return "ok", "%.1f days left" % days


def worst(statuses) -> str:
    return max(statuses, key=lambda status: SEVERITY[status], default="ok")


def should_fail(statuses, fail_on: str) -> bool:
    if fail_on == "never":
        return False
    return any(SEVERITY[status] >= SEVERITY[fail_on] for status in statuses)


# ---- Prometheus textfile ---------------------------------------------------------------------------

def _label(value) -> str:
    return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def prometheus_text(results: list[dict], generated_at: float) -> str:
    """Gauges for node-exporter's textfile collector, one series per checked target."""
    lines = [
        "# HELP freshtrack_cert_not_after_timestamp_seconds Expiry of the served (or stored) certificate.",
        "# TYPE freshtrack_cert_not_after_timestamp_seconds gauge",
    ]
    series = {"not_after": [], "fraction": [], "status": [], "chain": []}
    for result in results:
        labels = 'target="%s"' % _label(result["target"])
        cert = result.get("certificate")
        if cert:
            not_after = datetime.datetime.strptime(cert["not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            series["not_after"].append("freshtrack_cert_not_after_timestamp_seconds{%s} %d" % (labels, not_after))
            series["fraction"].append("freshtrack_cert_lifetime_remaining_ratio{%s} %s" % (
                labels, cert["lifetime_fraction_remaining"]))
            if result.get("chain_earliest_not_after"):
                chain = datetime.datetime.strptime(result["chain_earliest_not_after"], "%Y-%m-%dT%H:%M:%SZ").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
                series["chain"].append("freshtrack_cert_chain_earliest_not_after_timestamp_seconds{%s} %d" % (labels, chain))
        for status in SEVERITY:
            series["status"].append('freshtrack_cert_status{%s,status="%s"} %d' % (
                labels, status, 1 if result["status"] == status else 0))
    lines += series["not_after"]
    lines += ["# HELP freshtrack_cert_lifetime_remaining_ratio Fraction of the certificate's lifetime left.",
              "# TYPE freshtrack_cert_lifetime_remaining_ratio gauge"] + series["fraction"]
    lines += ["# HELP freshtrack_cert_chain_earliest_not_after_timestamp_seconds Earliest expiry in the served chain.",
              "# TYPE freshtrack_cert_chain_earliest_not_after_timestamp_seconds gauge"] + series["chain"]
    lines += ["# HELP freshtrack_cert_status 1 for the target's current status.",
              "# TYPE freshtrack_cert_status gauge"] + series["status"]
    lines += ["# HELP freshtrack_cert_check_timestamp_seconds When the check ran.",
              "# TYPE freshtrack_cert_check_timestamp_seconds gauge",
              "freshtrack_cert_check_timestamp_seconds %d" % generated_at]
    return "\n".join(lines) + "\n"


def write_atomically(path: str, text: str, mode: int = 0o644) -> bool:
    """Replace path with text via a temporary file in the same directory; False when unchanged."""
    try:
        with open(path, encoding="utf-8") as current:
            if current.read() == text:
                return False
    except OSError:
        pass
    tmp = "%s.%d.tmp" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)
    return True


# ---- Fetching ------------------------------------------------------------------------------------------

def _recv_line(sock) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError("the server closed the connection during STARTTLS")
        data += chunk
    return data


def _smtp_reply(sock) -> tuple[int, str]:
    lines = []
    while True:
        line = _recv_line(sock).decode("latin-1")
        lines.append(line.strip())
        if len(line) < 4 or line[3] != "-":
            return int(line[:3]), " ".join(lines)


def starttls(sock, protocol: str) -> None:
    """Bring a plain connection to the point where a TLS handshake starts."""
    if protocol == "smtp":
        code, text = _smtp_reply(sock)
        if code != 220:
            raise ConnectionError("SMTP greeting: %s" % text)
        sock.sendall(b"EHLO freshtrack-cert-check\r\n")
        code, text = _smtp_reply(sock)
        if code != 250 or "STARTTLS" not in text.upper():
            raise ConnectionError("SMTP server offers no STARTTLS: %s" % text)
        sock.sendall(b"STARTTLS\r\n")
        code, text = _smtp_reply(sock)
        if code != 220:
            raise ConnectionError("SMTP STARTTLS refused: %s" % text)
    elif protocol == "postgres":
        sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
        answer = sock.recv(1)
        if answer != b"S":
            raise ConnectionError("PostgreSQL refused SSL (answered %r)" % answer)
    else:
        raise ValueError("unknown STARTTLS protocol %s" % protocol)


def _peer_chain(tls) -> list[bytes]:
    getter = getattr(tls, "get_unverified_chain", None)  # Python >= 3.13
    if getter is None:
        getter = getattr(getattr(tls, "_sslobj", None), "get_unverified_chain", None)  # 3.10-3.12
    if getter is None:
        return [tls.getpeercert(binary_form=True)]
    chain = getter() or []
    return [item if isinstance(item, bytes) else item.public_bytes(ssl._ssl.ENCODING_DER) for item in chain]


def _handshake(host, port, server_name, protocol, timeout, context):
    deadline = time.monotonic() + timeout
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        if protocol:
            starttls(sock, protocol)
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        tls = context.wrap_socket(sock, server_hostname=server_name)
        try:
            return _peer_chain(tls)
        finally:
            tls.close()
    finally:
        sock.close()


def fetch_chain(host: str, port: int, server_name: str | None, protocol: str | None, timeout: float,
                ca_file: str | None) -> dict:
    """The served chain (DER, leaf first) and whether it verifies against the CA store.

    The verifying handshake checks the chain only; the name is matched separately, so both
    answers are known. When the chain does not verify, a second handshake takes it unverified."""
    verifying = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    verifying.check_hostname = False
    sni = server_name if server_name and not _is_ip(server_name) else None
    try:
        return {"chain": _handshake(host, port, sni, protocol, timeout, verifying),
                "chain_verified": True, "verify_error": None}
    except ssl.SSLCertVerificationError as error:
        verify_error = error.verify_message or str(error)
    lenient = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    lenient.check_hostname = False
    lenient.verify_mode = ssl.CERT_NONE
    return {"chain": _handshake(host, port, sni, protocol, timeout, lenient),
            "chain_verified": False, "verify_error": verify_error}


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def load_der_chain(chain: list[bytes]):
    return [x509.load_der_x509_certificate(der) for der in chain]


def pem_files(paths: list[str]) -> list[str]:
    """Files named by `paths`; directories are walked for *.pem, *.crt and *.cer."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            for root, _dirs, files in os.walk(path):
                found += [os.path.join(root, name) for name in sorted(files) if name.endswith(PEM_SUFFIXES)]
        else:
            found.append(path)
    return found


def load_pem_chain(path: str):
    with open(path, "rb") as handle:
        data = handle.read()
    certs = x509.load_pem_x509_certificates(data) if hasattr(x509, "load_pem_x509_certificates") else [
        x509.load_pem_x509_certificate(data)]
    if not certs:
        raise ValueError("no PEM certificate in %s" % path)
    return certs


# ---- One target, and all of them -------------------------------------------------------------------------

def endpoint_label(endpoint: dict) -> str:
    host = endpoint["host"]
    label = "[%s]:%s" % (host, endpoint["port"]) if ":" in host else "%s:%s" % (host, endpoint["port"])
    if endpoint.get("server_name") and endpoint["server_name"] != host:
        label += " (%s)" % endpoint["server_name"]
    return label


def _result_from_chain(target, kind, certs, now, settings, chain_verified=None, verify_error=None,
                       hostname=None) -> dict:
    leaf = describe(certs[0], now)
    match = hostname_matches(hostname, leaf["sans"], leaf["common_name"]) if hostname else None
    status, reason = classify(leaf, now, settings["warning_days"], settings["critical_days"],
                              settings["renewal_fraction"], chain_verified, match)
    if status == "invalid" and verify_error and chain_verified is False:
        reason = "the chain does not verify: %s" % verify_error
    chain = [describe(cert, now) for cert in certs]
    return {
        "target": target, "kind": kind, "status": status, "reason": reason, "certificate": leaf,
        "chain": [{"subject": c["subject"], "issuer": c["issuer"], "not_after": c["not_after"]} for c in chain],
        "chain_earliest_not_after": min(c["not_after"] for c in chain),
        "chain_verified": chain_verified, "verify_error": verify_error, "hostname_match": match, "error": None,
    }


def check_endpoint(endpoint: dict, settings: dict, now_fn) -> dict:
    target = endpoint_label(endpoint)
    started = time.monotonic()
    name = endpoint.get("server_name") or endpoint["host"]
    try:
        fetched = fetch_chain(endpoint["host"], endpoint["port"], name, endpoint.get("starttls"),
                              settings["timeout"], settings.get("ca_path"))
        result = _result_from_chain(target, "endpoint", load_der_chain(fetched["chain"]), now_fn(), settings,
                                    fetched["chain_verified"], fetched["verify_error"], name)
    except (OSError, ssl.SSLError, ValueError, ConnectionError) as error:
        message = "timed out after %ss" % settings["timeout"] if isinstance(error, (socket.timeout, TimeoutError)) else (
            "%s: %s" % (type(error).__name__, error))
        result = {"target": target, "kind": "endpoint", "status": "unreachable", "reason": message,
                  "certificate": None, "chain": [], "chain_earliest_not_after": None, "chain_verified": None,
                  "verify_error": None, "hostname_match": None, "error": message}
    result["elapsed_seconds"] = round(time.monotonic() - started, 3)
    return result


def check_file(path: str, settings: dict, now_fn) -> dict:
    started = time.monotonic()
    try:
        result = _result_from_chain(path, "file", load_pem_chain(path), now_fn(), settings)
    except (OSError, ValueError) as error:
        message = "%s: %s" % (type(error).__name__, error)
        result = {"target": path, "kind": "file", "status": "unreachable", "reason": message, "certificate": None,
                  "chain": [], "chain_earliest_not_after": None, "chain_verified": None, "verify_error": None,
                  "hostname_match": None, "error": message}
    result["elapsed_seconds"] = round(time.monotonic() - started, 3)
    return result


def check_all(endpoints: list[dict], files: list[str], settings: dict, workers: int, now_fn=None) -> list[dict]:
    """Every target, concurrently (at most `workers` at once), in the order given."""
    from concurrent.futures import ThreadPoolExecutor

    now_fn = now_fn or (lambda: datetime.datetime.now(datetime.timezone.utc))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        jobs = [pool.submit(check_endpoint, endpoint, settings, now_fn) for endpoint in endpoints]
        jobs += [pool.submit(check_file, path, settings, now_fn) for path in files]
        return [job.result() for job in jobs]
