"""The log pipeline configs of the observability role (roles/observability/templates/): Loki,
Grafana Alloy and (legacy) Promtail, rendered with the role defaults and checked against schemas
written here from the upstream documentation, since neither binary can run on this machine.

Each schema cites the documentation (and version) it was written from. Checks marked "project
rule" are this project's choices, not upstream requirements. Every checker returns a list of
error strings; the broken-variant tests show that each check can fail.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import pathlib
import re

import jinja2
import jinja2.meta
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "roles" / "observability" / "templates"

DEFAULTS = {
    "observability_loki_retention_period": "744h",
    "observability_loki_http_port": 3100,
    "observability_log_shipper": "alloy",
    "observability_compose_project": "freshtrack",
    "observability_loki_ingestion_rate_mb": 8,
}
TEMPLATE_NAMES = ("loki.yaml.j2", "config.alloy.j2", "promtail.yaml.j2")
PUSH_PATH = "/loki/api/v1/push"
# Project rule: the stream labels both shippers put on every container's logs.
TARGET_LABELS = {"container", "compose_service", "compose_project"}


def render(name: str, **overrides) -> str:
    """Render like Ansible's template module (trim_blocks), but with plain Jinja2 and
    StrictUndefined: the templates may use no Ansible-only filter or variable."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(name).render({**DEFAULTS, **overrides})


# ---------------------------------------------------------------------------------------------
# Durations
# ---------------------------------------------------------------------------------------------
# Loki configuration reference v3.7.x, "Generic placeholders" (https://grafana.com/docs/loki/v3.7.x/configure/):
# "Prometheus duration fields support: 'ms', 's', 'm', 'h', 'd', 'w', 'y' ... Go native duration
# fields support: 'ns', 'us', 'µs', 'ms', 's', 'm', 'h' but not 'd', 'w', 'y'. Note: '0' is allowed
# without a unit." The Prometheus form is prometheus/common model.ParseDuration (units in order).
_PROM_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")
_PROM_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)
_GO_DURATION = re.compile(r"^[-+]?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ns|us|µs|ms|s|m|h))+$")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def prom_duration(value) -> float | None:
    """Seconds of a Prometheus-style duration (Loki model.Duration), None if not one."""
    if not isinstance(value, str):
        return None
    if value == "0":
        return 0.0
    match = _PROM_DURATION.match(value)
    if not value or not match:
        return None
    return sum(int(g) * unit for g, unit in zip(match.groups(), _PROM_UNITS) if g)


def go_duration(value) -> float | None:
    """Seconds of a Go time.Duration string, None if not one."""
    if not isinstance(value, str):
        return None
    if value == "0":
        return 0.0
    if not _GO_DURATION.match(value):
        return None
    sign = -1 if value.startswith("-") else 1
    parts = re.findall(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)", value)
    return sign * sum(float(n) * _GO_UNITS[u] for n, u in parts)


# ---------------------------------------------------------------------------------------------
# Loki schema
# ---------------------------------------------------------------------------------------------
# Written from the Loki 3.x configuration reference, Loki v3.7.x (read at tag v3.7.6, the newest
# 3.x release; source file grafana/loki docs/sources/shared/configuration.md):
#   https://grafana.com/docs/loki/v3.7.x/configure/
#   https://grafana.com/docs/loki/v3.7.x/operations/storage/retention/   (compactor retention)
#   https://grafana.com/docs/loki/v3.7.x/operations/storage/schema/      (tsdb, v13, 24h period)
# Requirements that the reference states only in Loki's config validation are marked with the
# Go source they come from (pkg/compactor/config.go, pkg/loki/validation.go,
# pkg/storage/config/schema_config.go at v3.7.6).

# Every top-level block of `loki.yaml` in the v3.7.x reference.
LOKI_TOP_LEVEL = frozenset({
    "target", "auth_enabled", "ballast_bytes", "server", "ui", "distributor", "querier",
    "query_engine", "query_scheduler", "frontend", "query_range", "ruler", "ruler_storage",
    "ingester_client", "ingester", "pattern_ingester", "index_gateway", "bloom_build",
    "bloom_gateway", "storage_config", "chunk_store_config", "schema_config", "compactor",
    "compactor_grpc_client", "limits_config", "frontend_worker", "table_manager", "memberlist",
    "kafka_config", "dataobj", "ingest_limits", "ingest_limits_frontend",
    "ingest_limits_frontend_client", "runtime_config", "operational_config", "tracing",
    "analytics", "profiling", "tenant_limits_allow_publish", "common", "shutdown_delay",
    "metrics_namespace",
})

# Types of the keys this project sets, as the reference declares them (<boolean>, <int>,
# <float>, <string>, <duration>; the duration flavour from the Go field type). A key outside this
# table fails (catches typos); add keys here from the reference when the template grows.
LOKI_KEY_TYPES = {
    "auth_enabled": "bool",
    "server.http_listen_port": "port",
    "server.grpc_listen_port": "port",
    "server.log_level": ("debug", "info", "warn", "error"),
    "common.path_prefix": "string",
    "common.replication_factor": "int",
    "common.storage.filesystem.chunks_directory": "string",
    "common.storage.filesystem.rules_directory": "string",
    "common.ring.kvstore.store": ("consul", "etcd", "inmemory", "memberlist", "multi"),
    "storage_config.tsdb_shipper.active_index_directory": "string",
    "storage_config.tsdb_shipper.cache_location": "string",
    "compactor.working_directory": "string",
    "compactor.compaction_interval": "go_duration",
    "compactor.retention_enabled": "bool",
    "compactor.retention_delete_delay": "go_duration",
    "compactor.retention_delete_worker_count": "int",
    "compactor.delete_request_store": "string",
    "limits_config.retention_period": "prom_duration",
    "limits_config.max_query_lookback": "prom_duration",
    "limits_config.reject_old_samples": "bool",
    "limits_config.reject_old_samples_max_age": "prom_duration",
    "limits_config.ingestion_rate_mb": "float",
    "limits_config.ingestion_burst_size_mb": "float",
    "limits_config.allow_structured_metadata": "bool",
    "limits_config.volume_enabled": "bool",
    "analytics.reporting_enabled": "bool",
}
# period_config: "store ... Either tsdb or boltdb-shipper" (this project: tsdb only);
# "object_store ... aws (alias s3), azure, gcs, alibabacloud, bos, cos, swift, filesystem".
LOKI_PERIOD_KEYS = {"from", "store", "object_store", "schema", "index", "chunks", "row_shards"}
LOKI_PERIOD_INDEX_KEYS = {"path_prefix", "prefix", "period", "tags"}
LOKI_OBJECT_STORES = {"aws", "s3", "azure", "gcs", "alibabacloud", "bos", "cos", "swift", "filesystem"}
LOKI_LEGACY_KEYS = {"boltdb_shipper", "boltdb"}  # storage_config blocks of legacy indexes


def _type_error(path: str, value, kind) -> str | None:
    if isinstance(kind, tuple):
        return None if value in kind else f"{path}: {value!r} is not one of {kind}"
    ok = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "port": isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 65535,
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "string": isinstance(value, str) and value != "",
        "prom_duration": prom_duration(value) is not None,
        "go_duration": go_duration(value) is not None,
    }[kind]
    return None if ok else f"{path}: {value!r} is not a valid {kind}"


def _leaves(node, path=""):
    """(dotted path, value) of every scalar, and of every list as a whole."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, f"{path}.{key}" if path else str(key))
    else:
        yield path, node


def _all_keys(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _all_keys(value)
    elif isinstance(node, list):
        for item in node:
            yield from _all_keys(item)


def _daytime(value) -> dt.date | None:
    """period_config.from: <daytime>, "In YYYY-MM-DD format"."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if isinstance(value, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return None
    return None


def loki_errors(cfg) -> list[str]:
    if not isinstance(cfg, dict):
        return ["loki: the document is not a mapping"]
    errors = [f"loki: unknown top-level block {key!r}" for key in cfg if key not in LOKI_TOP_LEVEL]
    # Legacy index types: no boltdb(-shipper) block or store anywhere (project rule, TSDB only).
    errors += [f"loki: legacy key {key!r}" for key in _all_keys(cfg) if key in LOKI_LEGACY_KEYS]

    for path, value in _leaves({k: v for k, v in cfg.items() if k != "schema_config"}):
        if path not in LOKI_KEY_TYPES:
            errors.append(f"loki: {path} is not a key this schema knows")
        elif (err := _type_error(path, value, LOKI_KEY_TYPES[path])) is not None:
            errors.append(f"loki: {err}")

    # schema_config: "configs" is a list of period_config.
    schema = cfg.get("schema_config")
    periods = schema.get("configs") if isinstance(schema, dict) else None
    if not isinstance(schema, dict) or set(schema) - {"configs"}:
        errors.append("loki: schema_config must hold only `configs`")
    if not isinstance(periods, list) or not periods:
        # schema_config.go: "must specify at least one schema configuration"
        errors.append("loki: schema_config.configs needs at least one period")
        periods = []
    previous = None
    for i, period in enumerate(periods):
        where = f"loki: schema_config.configs[{i}]"
        if not isinstance(period, dict):
            errors.append(f"{where} is not a mapping")
            continue
        errors += [f"{where}: unknown key {k!r}" for k in period if k not in LOKI_PERIOD_KEYS]
        start = _daytime(period.get("from"))
        if start is None:
            errors.append(f"{where}.from: {period.get('from')!r} is not a YYYY-MM-DD date")
        elif previous is not None and start <= previous:
            # schema_config.go: "from time in schemas must be distinct and in increasing order"
            errors.append(f"{where}.from: not after the previous period")
        previous = start or previous
        # schema docs: "tsdb is the current and only recommended value for store";
        # "v13 is the most recent schema and recommended value" (project rule: exactly these).
        if period.get("store") != "tsdb":
            errors.append(f"{where}.store: {period.get('store')!r}, must be tsdb")
        if period.get("schema") != "v13":
            errors.append(f"{where}.schema: {period.get('schema')!r}, must be v13")
        if period.get("object_store") not in LOKI_OBJECT_STORES:
            errors.append(f"{where}.object_store: {period.get('object_store')!r} is not a documented store")
        index = period.get("index")
        if not isinstance(index, dict):
            errors.append(f"{where}.index is missing")
            continue
        errors += [f"{where}.index: unknown key {k!r}" for k in index if k not in LOKI_PERIOD_INDEX_KEYS]
        prefix = index.get("prefix")
        if not isinstance(prefix, str) or not prefix or " " in prefix:
            errors.append(f"{where}.index.prefix: {prefix!r} (any value without spaces)")
        # "tsdb must always have periodic config for index set to 24h"; retention needs 24h too.
        if prom_duration(index.get("period")) != 86400:
            errors.append(f"{where}.index.period: {index.get('period')!r}, must be 24h")
    starts = [d for d in (_daytime(p.get("from")) for p in periods if isinstance(p, dict)) if d]
    if starts and min(starts) > dt.date.today():
        # "for a new install, this must be a date in the past"
        errors.append("loki: no schema period is active yet (every `from` is in the future)")

    # Compactor retention (retention docs): "`delete_request_store` should be set ... This is
    # required when retention is enabled" (pkg/compactor/config.go rejects it empty).
    compactor = cfg.get("compactor") or {}
    limits = cfg.get("limits_config") or {}
    common = cfg.get("common") or {}
    if compactor.get("retention_enabled") is True:
        store = compactor.get("delete_request_store")
        if not store:
            errors.append("loki: compactor.retention_enabled requires compactor.delete_request_store")
        elif store not in LOKI_OBJECT_STORES:
            errors.append(f"loki: compactor.delete_request_store {store!r} is not an object store")
    retention = prom_duration(limits.get("retention_period"))
    if "retention_period" in limits:
        # "only applies if retention_enabled is true in the compactor config"
        if compactor.get("retention_enabled") is not True:
            errors.append("loki: limits_config.retention_period without compactor.retention_enabled")
        # "The minimum retention period is 24h."
        if retention is not None and retention < 86400:
            errors.append(f"loki: limits_config.retention_period {limits['retention_period']!r} < 24h")
    else:
        errors.append("loki: limits_config.retention_period is not set (logs would live forever)")
    # Project rule: queries do not reach beyond what retention keeps.
    lookback = limits.get("max_query_lookback")
    if lookback is not None and retention is not None and prom_duration(lookback) != retention:
        errors.append("loki: limits_config.max_query_lookback differs from retention_period")

    # pkg/loki/validation.go: tsdb needs tsdb_shipper dirs (or common.path_prefix), a compactor
    # working directory; structured metadata needs schema v13 and tsdb on the active period.
    shipper = (cfg.get("storage_config") or {}).get("tsdb_shipper") or {}
    if not common.get("path_prefix"):
        for key in ("active_index_directory", "cache_location"):
            if not shipper.get(key):
                errors.append(f"loki: storage_config.tsdb_shipper.{key} (or common.path_prefix) is needed")
        if not compactor.get("working_directory"):
            errors.append("loki: compactor.working_directory (or common.path_prefix) is needed")
    if limits.get("allow_structured_metadata", True) and periods and isinstance(periods[-1], dict):
        if periods[-1].get("schema") != "v13" or periods[-1].get("store") != "tsdb":
            errors.append("loki: allow_structured_metadata needs schema v13 and store tsdb")
    return errors


# ---------------------------------------------------------------------------------------------
# Alloy syntax: tokenizer and parser
# ---------------------------------------------------------------------------------------------
# Written from "Alloy syntax" (https://grafana.com/docs/alloy/latest/get-started/syntax/, Alloy
# v1.18, read at tag v1.18.1) and the grammar comments of grafana/alloy syntax/scanner/scanner.go
# and syntax/parser/internal.go at v1.18.1:
#   comments `//` and `/* */` (not `#`); identifiers letters/digits/_ not starting with a digit;
#   strings "..." with Go escapes or `raw`; single quotes are illegal;
#   Body = [ Statement { terminator Statement } ]; Statement = Attribute | Block;
#   Attribute = identifier "=" Expression; Block = BlockName "{" Body "}";
#   BlockName = identifier { "." identifier } [ string ];
#   a newline is a terminator after an identifier, literal, `)`, `]` or `}` (so multi-line lists
#   and objects need a trailing comma); lists `[a, b,]`; objects `{ key = value, "k" = v, }`;
#   expressions with || && comparison + - * / % ^, unary ! -, access `.name`, index `[e]`,
#   calls `f(args)`.


class AlloySyntaxError(ValueError):
    pass


@dataclasses.dataclass
class Tok:
    kind: str  # IDENT STRING NUMBER FLOAT BOOL NULL TERM EOF or the punctuation itself
    value: object
    line: int


_PUNCT = ("||", "&&", "==", "!=", "<=", ">=", "=", "<", ">", "!", "+", "-", "*", "/", "%", "^",
          "{", "}", "(", ")", "[", "]", ",", ".")
_TERM_AFTER = {"IDENT", "STRING", "NUMBER", "FLOAT", "BOOL", "NULL", ")", "]", "}"}
_SIMPLE_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
                   "\\": "\\", '"': '"', "'": "'"}


def _unescape(body: str, line: int) -> str:
    out, i = [], 0
    while i < len(body):
        ch = body[i]
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        nxt = body[i + 1] if i + 1 < len(body) else ""
        if nxt in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[nxt])
            i += 2
        elif nxt in "xuU":
            width = {"x": 2, "u": 4, "U": 8}[nxt]
            digits = body[i + 2:i + 2 + width]
            if not re.fullmatch(f"[0-9a-fA-F]{{{width}}}", digits):
                raise AlloySyntaxError(f"line {line}: bad escape \\{nxt}{digits}")
            out.append(chr(int(digits, 16)))
            i += 2 + width
        elif re.fullmatch(r"[0-7]{3}", body[i + 1:i + 4]):
            out.append(chr(int(body[i + 1:i + 4], 8)))
            i += 4
        else:
            raise AlloySyntaxError(f"line {line}: unknown escape sequence \\{nxt}")
    return "".join(out)


def alloy_tokens(src: str) -> list[Tok]:
    toks: list[Tok] = []
    i, line, n = 0, 1, len(src)

    def insert_term() -> bool:
        return bool(toks) and toks[-1].kind in _TERM_AFTER

    while i < n:
        ch = src[i]
        if ch == "\n":
            if insert_term():
                toks.append(Tok("TERM", "\n", line))
            line += 1
            i += 1
        elif ch in " \t\r":
            i += 1
        elif src.startswith("//", i):
            end = src.find("\n", i)
            i = n if end < 0 else end
        elif src.startswith("/*", i):
            end = src.find("*/", i + 2)
            if end < 0:
                raise AlloySyntaxError(f"line {line}: block comment not terminated")
            if "\n" in src[i:end] and insert_term():
                toks.append(Tok("TERM", "\n", line))
            line += src.count("\n", i, end)
            i = end + 2
        elif ch == '"':
            j = i + 1
            while j < n and src[j] != '"':
                if src[j] == "\n":
                    raise AlloySyntaxError(f"line {line}: string literal not terminated")
                j += 2 if src[j] == "\\" else 1
            if j >= n:
                raise AlloySyntaxError(f"line {line}: string literal not terminated")
            toks.append(Tok("STRING", _unescape(src[i + 1:j], line), line))
            i = j + 1
        elif ch == "`":
            j = src.find("`", i + 1)
            if j < 0:
                raise AlloySyntaxError(f"line {line}: raw string literal not terminated")
            toks.append(Tok("STRING", src[i + 1:j], line))
            line += src.count("\n", i, j)
            i = j + 1
        elif ch == "'":
            raise AlloySyntaxError(f"line {line}: illegal single-quoted string; use double quotes")
        elif ch.isalpha() or ch == "_":
            j = i
            while j < n and (src[j].isalnum() or src[j] == "_"):
                j += 1
            word = src[i:j]
            kind = {"true": "BOOL", "false": "BOOL", "null": "NULL"}.get(word, "IDENT")
            toks.append(Tok(kind, {"true": True, "false": False, "null": None}.get(word, word), line))
            i = j
        elif ch.isdigit() or (ch == "." and i + 1 < n and src[i + 1].isdigit()):
            m = re.compile(r"\d*\.\d+(?:[eE][+-]?\d+)?|\d+(?:[eE][+-]?\d+)?").match(src, i)
            text = m.group(0)
            is_float = "." in text or "e" in text.lower()
            toks.append(Tok("FLOAT" if is_float else "NUMBER", float(text) if is_float else int(text), line))
            i = m.end()
        else:
            for p in _PUNCT:
                if src.startswith(p, i):
                    toks.append(Tok(p, p, line))
                    i += len(p)
                    break
            else:
                raise AlloySyntaxError(f"line {line}: illegal character {ch!r}")
    if insert_term():
        toks.append(Tok("TERM", "\n", line))
    toks.append(Tok("EOF", None, line))
    return toks


# AST
@dataclasses.dataclass
class Block:
    name: str
    label: str | None
    body: list
    line: int


@dataclasses.dataclass
class Attr:
    name: str
    value: object
    line: int


@dataclasses.dataclass
class Lit:
    value: object


@dataclasses.dataclass
class Arr:
    items: list


@dataclasses.dataclass
class Obj:
    fields: dict


@dataclasses.dataclass
class Ref:
    """identifier { "." identifier }: a component export or a stdlib name."""
    parts: list
    line: int


@dataclasses.dataclass
class Op:
    """Any other expression (operators, index, call); only its sub-expressions matter here."""
    kind: str
    args: list


_BINARY_PREC = {"||": 1, "&&": 2, "==": 3, "!=": 3, "<": 3, "<=": 3, ">": 3, ">=": 3,
                "+": 4, "-": 4, "*": 5, "/": 5, "%": 5}


class AlloyParser:
    def __init__(self, src: str):
        self.toks = alloy_tokens(src)
        self.pos = 0

    @property
    def tok(self) -> Tok:
        return self.toks[self.pos]

    def advance(self) -> Tok:
        tok = self.toks[self.pos]
        self.pos += 1
        return tok

    def expect(self, kind: str) -> Tok:
        if self.tok.kind != kind:
            raise AlloySyntaxError(f"line {self.tok.line}: expected {kind!r}, got {self.tok.kind} {self.tok.value!r}")
        return self.advance()

    def parse_file(self) -> list:
        body = self.parse_body("EOF")
        self.expect("EOF")
        return body

    def parse_body(self, until: str) -> list:
        body = []
        while self.tok.kind not in (until, "EOF"):
            body.append(self.parse_statement())
            if self.tok.kind == until:
                break
            if self.tok.kind != "TERM":
                raise AlloySyntaxError(f"line {self.tok.line}: expected end of statement, got {self.tok.value!r}")
            self.advance()
        if self.tok.kind != until:
            raise AlloySyntaxError(f"line {self.tok.line}: expected {until!r}, got end of file (unbalanced braces?)")
        return body

    def parse_statement(self):
        if self.tok.kind == "}":
            raise AlloySyntaxError(f"line {self.tok.line}: unexpected '}}' (unbalanced braces)")
        start = self.expect("IDENT")
        parts = [start.value]
        while self.tok.kind == ".":
            self.advance()
            parts.append(self.expect("IDENT").value)
        label = None
        if self.tok.kind == "STRING":
            label = self.advance().value
        if self.tok.kind == "=" and len(parts) == 1 and label is None:
            self.advance()
            return Attr(parts[0], self.parse_expr(), start.line)
        self.expect("{")
        body = self.parse_body("}")
        self.expect("}")
        return Block(".".join(parts), label, body, start.line)

    def parse_expr(self, min_prec: int = 1):
        left = self.parse_pow()
        while self.tok.kind in _BINARY_PREC and _BINARY_PREC[self.tok.kind] >= min_prec:
            op = self.advance().kind
            right = self.parse_expr(_BINARY_PREC[op] + 1)
            left = Op(op, [left, right])
        return left

    def parse_pow(self):
        base = self.parse_unary()
        if self.tok.kind == "^":
            self.advance()
            return Op("^", [base, self.parse_pow()])
        return base

    def parse_unary(self):
        if self.tok.kind in ("!", "-"):
            op = self.advance().kind
            return Op(op, [self.parse_unary()])
        expr = self.parse_primary()
        while self.tok.kind in (".", "[", "("):
            if self.tok.kind == ".":
                self.advance()
                name = self.expect("IDENT").value
                expr = Ref(expr.parts + [name], expr.line) if isinstance(expr, Ref) else Op("access", [expr, name])
            elif self.tok.kind == "[":
                self.advance()
                expr = Op("index", [expr, self.parse_expr()])
                self.expect("]")
            else:
                self.advance()
                args = self.parse_list(")")
                expr = Op("call", [expr, *args])
        return expr

    def parse_list(self, until: str) -> list:
        items = []
        while self.tok.kind != until:
            items.append(self.parse_expr())
            if self.tok.kind == until:
                break
            if self.tok.kind != ",":
                raise AlloySyntaxError(f"line {self.tok.line}: missing ',' in expression list")
            self.advance()
        self.expect(until)
        return items

    def parse_primary(self):
        tok = self.tok
        if tok.kind == "IDENT":
            self.advance()
            return Ref([tok.value], tok.line)
        if tok.kind in ("STRING", "NUMBER", "FLOAT", "BOOL", "NULL"):
            self.advance()
            return Lit(tok.value)
        if tok.kind == "(":
            self.advance()
            inner = self.parse_expr()
            self.expect(")")
            return Op("paren", [inner])
        if tok.kind == "[":
            self.advance()
            return Arr(self.parse_list("]"))
        if tok.kind == "{":
            self.advance()
            fields = {}
            while self.tok.kind != "}":
                key = self.advance()
                if key.kind not in ("IDENT", "STRING"):
                    raise AlloySyntaxError(f"line {key.line}: expected field name, got {key.value!r}")
                if key.value in fields:
                    raise AlloySyntaxError(f"line {key.line}: duplicate field {key.value!r}")
                self.expect("=")
                fields[key.value] = self.parse_expr()
                if self.tok.kind == "}":
                    break
                if self.tok.kind != ",":
                    raise AlloySyntaxError(f"line {self.tok.line}: missing ',' in field list")
                self.advance()
            self.expect("}")
            return Obj(fields)
        raise AlloySyntaxError(f"line {tok.line}: expected expression, got {tok.kind} {tok.value!r}")


def parse_alloy(src: str) -> list:
    return AlloyParser(src).parse_file()


# ---------------------------------------------------------------------------------------------
# Alloy component schema
# ---------------------------------------------------------------------------------------------
# Written from the Grafana Alloy component reference, Alloy v1.18 (read at tag v1.18.1;
# grafana/alloy docs/sources/reference/components/...), checked against the Go argument structs
# (`alloy:"...,attr"` = required, `,optional` = optional) where the docs disagree:
#   https://grafana.com/docs/alloy/latest/reference/components/discovery/discovery.docker/
#   https://grafana.com/docs/alloy/latest/reference/components/discovery/discovery.relabel/
#   https://grafana.com/docs/alloy/latest/reference/components/loki/loki.source.docker/
#   https://grafana.com/docs/alloy/latest/reference/components/loki/loki.process/
#   https://grafana.com/docs/alloy/latest/reference/components/loki/loki.write/
# (The loki.source.docker table lists `labels` as required with default {}; the struct has it
# optional, so it is optional here.)


@dataclasses.dataclass
class Spec:
    attrs: dict = dataclasses.field(default_factory=dict)      # name -> type
    required: frozenset = frozenset()
    blocks: dict = dataclasses.field(default_factory=dict)     # name -> Spec
    required_blocks: frozenset = frozenset()
    exports: dict = dataclasses.field(default_factory=dict)    # name -> type
    repeatable: bool = True


_AUTH_BLOCKS = {name: Spec(attrs={"*": "any"}) for name in ("authorization", "basic_auth", "oauth2", "tls_config")}
_HTTP_CLIENT_ATTRS = {
    "bearer_token_file": "string", "bearer_token": "string", "enable_http2": "bool",
    "follow_redirects": "bool", "http_headers": "map", "no_proxy": "string",
    "proxy_connect_header": "map", "proxy_from_environment": "bool", "proxy_url": "string",
}
_RULE = Spec(attrs={"action": "string", "modulus": "number", "regex": "string", "replacement": "string",
                    "separator": "string", "source_labels": "list", "target_label": "string"})
RELABEL_ACTIONS = {"drop", "dropequal", "hashmod", "keep", "keepequal", "labeldrop", "labelkeep",
                   "labelmap", "lowercase", "replace", "uppercase"}

# loki.process stage blocks (the docs' block table); arguments spelled out for the stages used.
_STAGE_NAMES = ("cri", "decolorize", "docker", "drop", "eventlogmessage", "geoip", "json", "label_drop",
                "label_keep", "labels", "limit", "logfmt", "luhn", "match", "metrics", "multiline", "output",
                "pack", "pattern", "regex", "replace", "sampling", "static_labels", "structured_metadata",
                "structured_metadata_drop", "template", "tenant", "timestamp", "truncate", "windowsevent")
STAGES: dict = {f"stage.{name}": Spec(attrs={"*": "any"}, blocks={"*": Spec(attrs={"*": "any"})})
                for name in _STAGE_NAMES}
STAGES["stage.json"] = Spec(attrs={"expressions": "map", "regex": "string", "drop_malformed": "bool",
                                   "source": "string"})
STAGES["stage.labels"] = Spec(attrs={"values": "map", "source_type": "string"})
STAGES["stage.match"] = Spec(attrs={"selector": "string", "action": "string", "drop_counter_reason": "string",
                                    "pipeline_name": "string"},
                             required=frozenset({"selector"}), blocks=STAGES)  # nests any stage

ALLOY_COMPONENTS = {
    "discovery.docker": Spec(
        attrs={"host": "string", "host_networking_host": "string", "match_first_network": "bool",
               "port": "number", "refresh_interval": "duration", **_HTTP_CLIENT_ATTRS},
        required=frozenset({"host"}),
        blocks={"filter": Spec(attrs={"name": "string", "values": "list"}, required=frozenset({"name", "values"})),
                **_AUTH_BLOCKS},
        exports={"targets": "targets"}),
    "discovery.relabel": Spec(
        attrs={"targets": "targets"}, required=frozenset({"targets"}),
        blocks={"rule": _RULE},
        required_blocks=frozenset({"rule"}),  # project rule: the docs allow none (a no-op)
        exports={"output": "targets", "rules": "rules"}),
    "loki.source.docker": Spec(
        attrs={"host": "string", "targets": "targets", "forward_to": "receivers", "labels": "map",
               "relabel_rules": "rules", "refresh_interval": "duration"},
        required=frozenset({"host", "targets", "forward_to"}),
        blocks={"http_client_config": Spec(attrs={"*": "any"}, blocks=_AUTH_BLOCKS, repeatable=False)},
        exports={}),
    "loki.process": Spec(
        attrs={"forward_to": "receivers"}, required=frozenset({"forward_to"}),
        blocks=STAGES, exports={"receiver": "receiver"}),
    "loki.write": Spec(
        attrs={"external_labels": "map", "max_streams": "number"},
        blocks={"endpoint": Spec(
            attrs={"url": "string", "batch_size": "string", "batch_wait": "duration", "headers": "map",
                   "max_backoff_period": "duration", "max_backoff_retries": "number",
                   "min_backoff_period": "duration", "name": "string", "remote_timeout": "duration",
                   "retry_on_http_429": "bool", "tenant_id": "string", **_HTTP_CLIENT_ATTRS},
            required=frozenset({"url"}),
            blocks={**_AUTH_BLOCKS, "queue_config": Spec(attrs={"*": "any"}, repeatable=False)}),
            "wal": Spec(attrs={"*": "any"}, repeatable=False)},
        required_blocks=frozenset({"endpoint"}),  # project rule: the docs allow none (sends nowhere)
        exports={"receiver": "receiver"}),
}
# Configuration blocks that are not components (no label): "Special configuration blocks"
# (https://grafana.com/docs/alloy/latest/reference/config-blocks/); only `logging` is spelled out.
ALLOY_CONFIG_BLOCKS = {"logging": Spec(attrs={"level": "string", "format": "string", "write_to": "receivers"})}
# Standard library namespaces a reference may start with (function calls such as sys.env(...)).
# (docs/sources/reference/stdlib/ at v1.18.1: https://grafana.com/docs/alloy/latest/reference/stdlib/)
ALLOY_STDLIB = {"array", "coalesce", "constants", "convert", "encoding", "file", "json_path", "string", "sys"}
_IDENT = re.compile(r"^[^\W\d]\w*$")


def _refs(expr):
    """Every reference in an expression, except the callee of a function call."""
    if isinstance(expr, Ref):
        yield expr
    elif isinstance(expr, Arr):
        for item in expr.items:
            yield from _refs(item)
    elif isinstance(expr, Obj):
        for value in expr.fields.values():
            yield from _refs(value)
    elif isinstance(expr, Op):
        args = expr.args[1:] if expr.kind == "call" else expr.args
        for arg in args:
            if not isinstance(arg, str):
                yield from _refs(arg)


def _resolve(ref: Ref, defined: dict) -> tuple[str | None, str | None]:
    """(export type, error) of a reference like loki.write.default.receiver."""
    parts = ref.parts
    if parts[0] in ALLOY_STDLIB:
        return "any", None
    for size in range(len(parts) - 2, 0, -1):
        name = ".".join(parts[:size])
        if name in ALLOY_COMPONENTS:
            label, rest = parts[size], parts[size + 1:]
            if (name, label) not in defined:
                return None, f"line {ref.line}: {'.'.join(parts)} refers to undefined component {name} \"{label}\""
            exports = ALLOY_COMPONENTS[name].exports
            if len(rest) != 1 or rest[0] not in exports:
                return None, f"line {ref.line}: {name} exports {sorted(exports)}, not {'.'.join(rest)}"
            return exports[rest[0]], None
    return None, f"line {ref.line}: unknown reference {'.'.join(parts)}"


def _value_error(where: str, kind: str, expr, defined: dict) -> str | None:
    """Shallow type check of an attribute value against the documented argument type."""
    if kind == "any":
        return None
    if isinstance(expr, Ref):
        ref_kind, _ref_name = _resolve(expr, defined)  # undefined references are reported separately
        if ref_kind in (None, "any") or ref_kind == kind:
            return None
        return f"{where}: a {kind} is expected, the reference gives {ref_kind}"
    if isinstance(expr, Op):
        return None  # computed at run time
    if kind == "receivers":
        if not isinstance(expr, Arr) or not expr.items:
            return f"{where}: a non-empty list of receivers is expected"
        for item in expr.items:
            if isinstance(item, Ref) and _resolve(item, defined)[0] not in (None, "receiver", "any"):
                return f"{where}: {'.'.join(item.parts)} is not a receiver"
            if not isinstance(item, Ref):
                return f"{where}: list items must be receiver references"
        return None
    ok = {
        "string": isinstance(expr, Lit) and isinstance(expr.value, str),
        "duration": isinstance(expr, Lit) and go_duration(expr.value) is not None,
        "bool": isinstance(expr, Lit) and isinstance(expr.value, bool),
        "number": isinstance(expr, Lit) and isinstance(expr.value, (int, float)) and not isinstance(expr.value, bool),
        "list": isinstance(expr, Arr),
        "map": isinstance(expr, Obj),
        "targets": isinstance(expr, Arr) and all(isinstance(i, Obj) for i in expr.items),
        "rules": False,
    }.get(kind, False)
    return None if ok else f"{where}: a {kind} is expected"


def _check_body(where: str, body: list, spec: Spec, defined: dict, errors: list) -> None:
    attrs = [s for s in body if isinstance(s, Attr)]
    blocks = [s for s in body if isinstance(s, Block)]
    seen = set()
    for attr in attrs:
        if attr.name in seen:
            errors.append(f"{where}: attribute {attr.name!r} set twice")
        seen.add(attr.name)
        kind = spec.attrs.get(attr.name, spec.attrs.get("*"))
        if kind is None:
            errors.append(f"{where}: unknown argument {attr.name!r}")
        elif (err := _value_error(f"{where}.{attr.name}", kind, attr.value, defined)) is not None:
            errors.append(err)
    errors += [f"{where}: missing required argument {name!r}" for name in sorted(spec.required - seen)]
    names = [b.name for b in blocks]
    errors += [f"{where}: missing required block {name!r}" for name in sorted(spec.required_blocks - set(names))]
    for block in blocks:
        sub = spec.blocks.get(block.name, spec.blocks.get("*"))
        if sub is None:
            errors.append(f"{where}: unknown block {block.name!r}")
            continue
        if block.label is not None:
            errors.append(f"{where}: nested block {block.name!r} takes no label")
        if not sub.repeatable and names.count(block.name) > 1:
            errors.append(f"{where}: block {block.name!r} given more than once")
        _check_body(f"{where} > {block.name}", block.body, sub, defined, errors)


def _walk_attrs(body):
    for stmt in body:
        if isinstance(stmt, Attr):
            yield stmt
        else:
            yield from _walk_attrs(stmt.body)


def alloy_errors(src: str) -> list[str]:
    try:
        body = parse_alloy(src)
    except AlloySyntaxError as exc:
        return [f"alloy syntax: {exc}"]
    errors: list[str] = []
    defined: dict = {}
    for stmt in body:
        if isinstance(stmt, Attr):
            errors.append(f"alloy: line {stmt.line}: unexpected top-level attribute {stmt.name!r}")
        elif stmt.name in ALLOY_COMPONENTS:
            if stmt.label is None or not _IDENT.match(stmt.label):
                errors.append(f"alloy: line {stmt.line}: {stmt.name} needs a label that is an identifier")
            elif (stmt.name, stmt.label) in defined:
                errors.append(f"alloy: line {stmt.line}: {stmt.name} \"{stmt.label}\" defined twice")
            else:
                defined[(stmt.name, stmt.label)] = stmt
        elif stmt.name not in ALLOY_CONFIG_BLOCKS:
            errors.append(f"alloy: line {stmt.line}: unknown component {stmt.name!r}")
    for (name, label), block in defined.items():
        _check_body(f'alloy: {name} "{label}"', block.body, ALLOY_COMPONENTS[name], defined, errors)
    for stmt in body:
        if isinstance(stmt, Block) and stmt.name in ALLOY_CONFIG_BLOCKS:
            _check_body(f"alloy: {stmt.name}", stmt.body, ALLOY_CONFIG_BLOCKS[stmt.name], defined, errors)
    for attr in _walk_attrs(body):
        for ref in _refs(attr.value):
            if (err := _resolve(ref, defined)[1]) is not None:
                errors.append(f"alloy: {err}")
    # Argument values the docs constrain.
    for attr in _walk_attrs(body):
        value = attr.value.value if isinstance(attr.value, Lit) else None
        if attr.name == "url" and isinstance(value, str):
            if not re.match(r"^https?://[^/\s]+", value) or not value.endswith(PUSH_PATH):
                errors.append(f"alloy: line {attr.line}: push url {value!r} must be http(s)://host{PUSH_PATH}")
        if attr.name == "action" and isinstance(value, str) and value not in RELABEL_ACTIONS | {"keep", "drop"}:
            errors.append(f"alloy: line {attr.line}: unknown action {value!r}")
        if attr.name == "regex" and isinstance(value, str):
            try:
                re.compile(value)  # Python re as a stand-in for RE2 on these simple patterns
            except re.error as exc:
                errors.append(f"alloy: line {attr.line}: bad regex {value!r}: {exc}")
        if attr.name == "selector" and isinstance(value, str) and not LOGQL_SELECTOR.match(value):
            errors.append(f"alloy: line {attr.line}: {value!r} is not a LogQL stream selector")
    return errors


# LogQL stream selector with optional line filters (https://grafana.com/docs/loki/v3.7.x/query/log_queries/):
# {label op "value", ...} then any of |= != |~ !~ "string".
_MATCHER = r'\s*[A-Za-z_]\w*\s*(?:=~|!~|!=|=)\s*"(?:[^"\\]|\\.)*"\s*'
LOGQL_SELECTOR = re.compile(
    r'^\{' + _MATCHER + r'(?:,' + _MATCHER + r')*\}(?:\s*(?:\|=|!=|\|~|!~)\s*"(?:[^"\\]|\\.)*")*\s*$')


def selector_labels(selector: str) -> set[str]:
    inside = selector[selector.index("{") + 1:selector.index("}")]
    return set(re.findall(r'([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)', inside))


def alloy_components(src: str) -> dict:
    return {(b.name, b.label): b for b in parse_alloy(src) if isinstance(b, Block) and b.label}


def attr_value(block: Block, name: str):
    for stmt in block.body:
        if isinstance(stmt, Attr) and stmt.name == name:
            return stmt.value
    return None


def lit(expr):
    """The Python value of a literal expression (strings, numbers, lists, objects)."""
    if isinstance(expr, Lit):
        return expr.value
    if isinstance(expr, Arr):
        return [lit(i) for i in expr.items]
    if isinstance(expr, Obj):
        return {k: lit(v) for k, v in expr.fields.items()}
    return expr


# ---------------------------------------------------------------------------------------------
# Promtail schema
# ---------------------------------------------------------------------------------------------
# Written from the Promtail configuration reference in the Loki docs, Loki v3.6.x (read at tag
# v3.6.15, the last release that still has the page; Promtail is end of life since 2026-03-02
# and v3.7 keeps only the EOL notice):
#   https://grafana.com/docs/loki/v3.6.x/send-data/promtail/configuration/
#   https://grafana.com/docs/loki/v3.6.x/send-data/promtail/stages/json/ (drop_malformed)
PROMTAIL_TOP_LEVEL = {"global", "server", "clients", "positions", "scrape_configs", "limits_config",
                      "target_config", "options", "tracing"}
PROMTAIL_SERVER_KEYS = {
    "disable", "profiling_enabled", "http_listen_address", "http_listen_port", "grpc_listen_address",
    "grpc_listen_port", "register_instrumentation", "graceful_shutdown_timeout", "http_server_read_timeout",
    "http_server_write_timeout", "http_server_idle_timeout", "grpc_server_max_recv_msg_size",
    "grpc_server_max_send_msg_size", "grpc_server_max_concurrent_streams", "log_level", "http_path_prefix",
    "health_check_target", "enable_runtime_reload",
}
PROMTAIL_CLIENT_KEYS = {"url", "headers", "tenant_id", "batchwait", "batchsize", "basic_auth", "bearer_token",
                        "bearer_token_file", "proxy_url", "tls_config", "backoff_config",
                        "drop_rate_limited_batches", "external_labels", "timeout"}
PROMTAIL_POSITIONS_KEYS = {"filename", "sync_period", "ignore_invalid_yaml"}
PROMTAIL_SCRAPE_KEYS = {
    "job_name", "pipeline_stages", "decompression", "journal", "encoding", "syslog", "loki_push_api",
    "windows_events", "gcplog", "azure_event_hub", "kafka", "gelf", "cloudflare", "heroku_drain",
    "relabel_configs", "static_configs", "file_sd_configs", "kubernetes_sd_configs", "consul_sd_configs",
    "consulagent_sd_configs", "docker_sd_configs",
}
PROMTAIL_DOCKER_SD_KEYS = {"host", "proxy_url", "tls_config", "port", "host_networking_host",
                           "match_first_network", "filters", "refresh_interval", "basic_auth",
                           "authorization", "oauth2", "follow_redirects"}
PROMTAIL_RELABEL_KEYS = {"source_labels", "separator", "target_label", "regex", "modulus", "replacement", "action"}
PROMTAIL_RELABEL_ACTIONS = {"replace", "keep", "drop", "hashmod", "labelmap", "labeldrop", "labelkeep"}
PROMTAIL_STAGES = {"docker", "cri", "regex", "json", "template", "match", "timestamp", "output", "labels",
                   "metrics", "tenant", "replace", "decolorize", "drop", "eventlogmessage", "geoip",
                   "labelallow", "labeldrop", "limit", "logfmt", "multiline", "pack", "sampling",
                   "static_labels", "structured_metadata"}
PROMTAIL_STAGE_KEYS = {"json": {"expressions", "source", "drop_malformed"},
                       "match": {"selector", "pipeline_name", "action", "drop_counter_reason", "stages"}}


def _promtail_stage_errors(where: str, stages, errors: list) -> None:
    if not isinstance(stages, list):
        errors.append(f"{where}: must be a list")
        return
    for i, stage in enumerate(stages):
        if not isinstance(stage, dict) or len(stage) != 1:
            errors.append(f"{where}[{i}]: each stage is a mapping with one key")
            continue
        (name, conf), = stage.items()
        if name not in PROMTAIL_STAGES:
            errors.append(f"{where}[{i}]: unknown stage {name!r}")
            continue
        if name in PROMTAIL_STAGE_KEYS:
            if not isinstance(conf, dict):
                errors.append(f"{where}[{i}].{name}: must be a mapping")
                continue
            errors += [f"{where}[{i}].{name}: unknown key {k!r}" for k in conf if k not in PROMTAIL_STAGE_KEYS[name]]
        if name == "match":
            if not isinstance(conf.get("selector"), str) or not LOGQL_SELECTOR.match(conf["selector"]):
                errors.append(f"{where}[{i}].match.selector: {conf.get('selector')!r} is not a LogQL selector")
            if "stages" in conf:
                _promtail_stage_errors(f"{where}[{i}].match.stages", conf["stages"], errors)
        if name == "labels" and not (isinstance(conf, dict) and conf):
            errors.append(f"{where}[{i}].labels: a mapping of label names is needed")
        if name == "json" and not isinstance((conf or {}).get("expressions"), dict):
            errors.append(f"{where}[{i}].json.expressions: a mapping is needed")


def promtail_errors(cfg) -> list[str]:
    if not isinstance(cfg, dict):
        return ["promtail: the document is not a mapping"]
    errors = [f"promtail: unknown top-level key {k!r}" for k in cfg if k not in PROMTAIL_TOP_LEVEL]
    for key in ("clients", "positions", "scrape_configs"):
        if key not in cfg:
            errors.append(f"promtail: {key} is missing")
    server = cfg.get("server") or {}
    errors += [f"promtail: server: unknown key {k!r}" for k in server if k not in PROMTAIL_SERVER_KEYS]
    clients = cfg.get("clients") or []
    if not isinstance(clients, list) or not clients:
        errors.append("promtail: clients needs at least one client")
        clients = []
    for i, client in enumerate(clients):
        if not isinstance(client, dict):
            errors.append(f"promtail: clients[{i}] is not a mapping")
            continue
        errors += [f"promtail: clients[{i}]: unknown key {k!r}" for k in client if k not in PROMTAIL_CLIENT_KEYS]
        url = client.get("url")
        # "Path to the push API needs to be included. Example: http://example.com:3100/loki/api/v1/push"
        if not isinstance(url, str) or not re.match(r"^https?://[^/\s]+", url) or not url.endswith(PUSH_PATH):
            errors.append(f"promtail: clients[{i}].url {url!r} must be http(s)://host{PUSH_PATH}")
    positions = cfg.get("positions") or {}
    errors += [f"promtail: positions: unknown key {k!r}" for k in positions if k not in PROMTAIL_POSITIONS_KEYS]
    if not isinstance(positions.get("filename"), str) or not positions.get("filename", "").startswith("/"):
        errors.append("promtail: positions.filename must be an absolute path")
    scrapes = cfg.get("scrape_configs") or []
    if not isinstance(scrapes, list) or not scrapes:
        errors.append("promtail: scrape_configs needs at least one scrape config")
        scrapes = []
    for i, scrape in enumerate(scrapes):
        where = f"promtail: scrape_configs[{i}]"
        if not isinstance(scrape, dict):
            errors.append(f"{where} is not a mapping")
            continue
        errors += [f"{where}: unknown key {k!r}" for k in scrape if k not in PROMTAIL_SCRAPE_KEYS]
        if not isinstance(scrape.get("job_name"), str) or not scrape["job_name"]:
            errors.append(f"{where}.job_name is missing")
        for j, sd in enumerate(scrape.get("docker_sd_configs") or []):
            sd_where = f"{where}.docker_sd_configs[{j}]"
            errors += [f"{sd_where}: unknown key {k!r}" for k in sd if k not in PROMTAIL_DOCKER_SD_KEYS]
            if not isinstance(sd.get("host"), str) or not re.match(r"^(unix|tcp|https?)://", sd["host"]):
                errors.append(f"{sd_where}.host {sd.get('host')!r} is not a Docker daemon address")
            if "refresh_interval" in sd and prom_duration(sd["refresh_interval"]) is None:
                errors.append(f"{sd_where}.refresh_interval is not a duration")
            for k, flt in enumerate(sd.get("filters") or []):
                if not (isinstance(flt, dict) and set(flt) == {"name", "values"} and isinstance(flt["values"], list)):
                    errors.append(f"{sd_where}.filters[{k}] needs name and a list of values")
        for j, rule in enumerate(scrape.get("relabel_configs") or []):
            rule_where = f"{where}.relabel_configs[{j}]"
            errors += [f"{rule_where}: unknown key {k!r}" for k in rule if k not in PROMTAIL_RELABEL_KEYS]
            action = rule.get("action", "replace")
            if action not in PROMTAIL_RELABEL_ACTIONS:
                errors.append(f"{rule_where}: unknown action {action!r}")
            if action == "replace" and not rule.get("target_label"):
                errors.append(f"{rule_where}: target_label is mandatory for replace")
            if "source_labels" in rule and not isinstance(rule["source_labels"], list):
                errors.append(f"{rule_where}.source_labels must be a list")
            try:
                re.compile(rule.get("regex", "(.*)"))
            except re.error as exc:
                errors.append(f"{rule_where}.regex: {exc}")
        if "pipeline_stages" in scrape:
            _promtail_stage_errors(f"{where}.pipeline_stages", scrape["pipeline_stages"], errors)
    return errors


# ---------------------------------------------------------------------------------------------
# Tests: the rendered templates
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def loki_cfg():
    return yaml.safe_load(render("loki.yaml.j2"))


@pytest.fixture(scope="module")
def alloy_src():
    return render("config.alloy.j2")


@pytest.fixture(scope="module")
def promtail_cfg():
    return yaml.safe_load(render("promtail.yaml.j2"))


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_templates_render_with_only_the_role_variables(name):
    text = render(name)
    assert "{{" not in text and "{%" not in text
    # Rendering with any variable missing fails (StrictUndefined), so each listed one is used
    # or not needed; none other is.
    env = jinja2.Environment()
    used = jinja2.meta.find_undeclared_variables(env.parse((TEMPLATES / name).read_text()))
    assert used <= set(DEFAULTS), used - set(DEFAULTS)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_the_shipper_choice_does_not_change_the_files(name):
    # The role selects which file to deploy; the files themselves do not depend on it.
    assert render(name, observability_log_shipper="alloy") == render(name, observability_log_shipper="promtail")


def test_loki_config_matches_the_schema(loki_cfg):
    assert loki_errors(loki_cfg) == []


def test_loki_values_come_from_the_variables(loki_cfg):
    assert loki_cfg["server"]["http_listen_port"] == 3100
    limits = loki_cfg["limits_config"]
    assert limits["retention_period"] == "744h" and prom_duration("744h") == 31 * 86400
    assert limits["max_query_lookback"] == limits["retention_period"]
    assert limits["ingestion_rate_mb"] == 8
    assert limits["ingestion_burst_size_mb"] >= limits["ingestion_rate_mb"]
    assert limits["allow_structured_metadata"] is True and limits["volume_enabled"] is True
    assert loki_cfg["auth_enabled"] is False and loki_cfg["analytics"]["reporting_enabled"] is False
    (period,) = loki_cfg["schema_config"]["configs"]
    assert _daytime(period["from"]) == dt.date(2024, 4, 1)
    assert period["index"] == {"prefix": "index_", "period": "24h"}
    assert loki_cfg["compactor"]["delete_request_store"] == "filesystem"
    assert loki_cfg["common"]["path_prefix"] == "/loki"


def test_loki_retention_follows_the_variable():
    cfg = yaml.safe_load(render("loki.yaml.j2", observability_loki_retention_period="2160h",
                                observability_loki_ingestion_rate_mb=16, observability_loki_http_port=3200))
    assert loki_errors(cfg) == []
    assert cfg["limits_config"]["retention_period"] == "2160h"
    assert cfg["limits_config"]["ingestion_rate_mb"] == 16 and cfg["server"]["http_listen_port"] == 3200


def test_loki_renders_the_same_from_string_variables():
    # Extra vars given on the command line (-e key=value) arrive as strings.
    as_strings = {k: str(v) for k, v in DEFAULTS.items()}
    cfg = yaml.safe_load(render("loki.yaml.j2", **as_strings))
    assert loki_errors(cfg) == []
    assert cfg["limits_config"]["ingestion_burst_size_mb"] == 16


def test_no_legacy_index_in_the_loki_template():
    text = (TEMPLATES / "loki.yaml.j2").read_text()
    assert not re.search(r"boltdb|\bv1[0-2]\b|\bv9\b", text)


def test_alloy_config_matches_the_schema(alloy_src):
    assert alloy_errors(alloy_src) == []


def test_alloy_pipeline_is_wired_as_intended(alloy_src):
    comps = alloy_components(alloy_src)
    assert set(comps) == {("discovery.docker", "containers"), ("discovery.relabel", "containers"),
                          ("loki.source.docker", "containers"), ("loki.process", "containers"),
                          ("loki.write", "default")}
    docker = comps[("discovery.docker", "containers")]
    assert lit(attr_value(docker, "host")) == "unix:///var/run/docker.sock"
    (flt,) = [b for b in docker.body if isinstance(b, Block) and b.name == "filter"]
    assert lit(attr_value(flt, "name")) == "label"
    assert lit(attr_value(flt, "values")) == ["com.docker.compose.project=freshtrack"]

    relabel = comps[("discovery.relabel", "containers")]
    assert attr_value(relabel, "targets").parts == ["discovery", "docker", "containers", "targets"]
    rules = [b for b in relabel.body if isinstance(b, Block) and b.name == "rule"]
    assert {lit(attr_value(r, "target_label")) for r in rules} == TARGET_LABELS
    sources = {lit(attr_value(r, "target_label")): lit(attr_value(r, "source_labels")) for r in rules}
    assert sources["compose_project"] == ["__meta_docker_container_label_com_docker_compose_project"]
    assert sources["compose_service"] == ["__meta_docker_container_label_com_docker_compose_service"]
    assert sources["container"] == ["__meta_docker_container_name"]

    source = comps[("loki.source.docker", "containers")]
    assert attr_value(source, "targets").parts == ["discovery", "relabel", "containers", "output"]
    assert [r.parts for r in attr_value(source, "forward_to").items] == [["loki", "process", "containers", "receiver"]]
    process = comps[("loki.process", "containers")]
    assert [r.parts for r in attr_value(process, "forward_to").items] == [["loki", "write", "default", "receiver"]]

    (match,) = [b for b in process.body if isinstance(b, Block) and b.name == "stage.match"]
    selector = lit(attr_value(match, "selector"))
    assert selector_labels(selector) <= TARGET_LABELS
    assert re.compile(r"^\s*\{").search('{"level":"info"}') and not re.compile(r"^\s*\{").search("plain text")
    json_stage, labels_stage = [b for b in match.body if isinstance(b, Block)]
    assert json_stage.name == "stage.json" and lit(attr_value(json_stage, "drop_malformed")) is False
    assert lit(attr_value(json_stage, "expressions")) == {"level": "level"}
    assert labels_stage.name == "stage.labels" and lit(attr_value(labels_stage, "values")) == {"level": ""}

    (endpoint,) = comps[("loki.write", "default")].body
    assert lit(attr_value(endpoint, "url")) == "http://loki:3100/loki/api/v1/push"


def test_alloy_follows_the_variables():
    src = render("config.alloy.j2", observability_compose_project="other", observability_loki_http_port=3200)
    assert alloy_errors(src) == []
    assert 'com.docker.compose.project=other"' in src and "http://loki:3200/loki/api/v1/push" in src


def test_promtail_config_matches_the_schema(promtail_cfg):
    assert promtail_errors(promtail_cfg) == []


def test_promtail_pipeline_matches_alloy(promtail_cfg):
    assert promtail_cfg["clients"] == [{"url": "http://loki:3100/loki/api/v1/push"}]
    (scrape,) = promtail_cfg["scrape_configs"]
    (sd,) = scrape["docker_sd_configs"]
    assert sd["host"] == "unix:///var/run/docker.sock"
    assert sd["filters"] == [{"name": "label", "values": ["com.docker.compose.project=freshtrack"]}]
    assert {r["target_label"] for r in scrape["relabel_configs"]} == TARGET_LABELS
    (match,) = scrape["pipeline_stages"]
    assert selector_labels(match["match"]["selector"]) <= TARGET_LABELS
    assert match["match"]["stages"] == [{"json": {"expressions": {"level": "level"}, "drop_malformed": False}},
                                        {"labels": {"level": None}}]


# ---------------------------------------------------------------------------------------------
# Tests: the tokenizer/parser on their own
# ---------------------------------------------------------------------------------------------
def test_alloy_parser_reads_the_syntax_of_the_docs():
    src = '''
    /* block
       comment */
    logging {
      level  = "info" // trailing comment
      format = "logfmt"
    }
    local.file "api_key" { filename = sys.env("API_KEY_PATH") }
    prometheus.scrape "app" {
      targets = [
        { "__address__" = "localhost:9090", job = `raw\\string` },
      ]
      n = -(1 + 2) * 3 ^ 2 >= 4 && !false || null == null
      m = {}
      k = targets[0]["__address__"]
    }
    '''
    body = parse_alloy(src)
    assert [(b.name, b.label) for b in body] == [("logging", None), ("local.file", "api_key"),
                                                 ("prometheus.scrape", "app")]
    targets = attr_value(body[2], "targets")
    assert lit(targets) == [{"__address__": "localhost:9090", "job": "raw\\string"}]
    assert lit(Lit(alloy_tokens(r'"a\"b\n\u00e9"')[0].value)) == 'a"b\né'


@pytest.mark.parametrize("src, message", [
    ('a "x" {\n  b = 1\n', "unbalanced"),
    ('a "x" {\n  b = 1\n}\n}\n', "unbalanced"),
    ('a "x" {\n  b = [\n    1,\n    2\n  ]\n}\n', "missing ','"),  # multi-line list without trailing comma
    ("a 'x' {}\n", "single-quoted"),
    ('a "x" {\n  # not a comment\n}\n', "illegal character"),
    ('a "x" { b = "open }\n', "not terminated"),
    ('a "x" { b = 1 c = 2 }\n', "expected end of statement"),
    ('a "x" { b = "\\q" }\n', "unknown escape"),
])
def test_alloy_parser_rejects_bad_syntax(src, message):
    with pytest.raises(AlloySyntaxError, match=message):
        parse_alloy(src)


# ---------------------------------------------------------------------------------------------
# Tests: every check can fail (broken variants of the rendered files)
# ---------------------------------------------------------------------------------------------
def _mutated(text: str, old: str, new: str) -> str:
    # Exactly one occurrence, so a variant cannot silently edit a comment instead.
    assert text.count(old) == 1, f"variant base text {old!r} found {text.count(old)} times"
    return text.replace(old, new)


@pytest.mark.parametrize("old, new, message", [
    ("schema: v13", "schema: v11", "must be v13"),
    ("schema: v13", "schema: v12", "must be v13"),
    ("store: tsdb", "store: boltdb-shipper", "must be tsdb"),
    ("storage_config:\n", "storage_config:\n  boltdb_shipper:\n    active_index_directory: /loki/index\n",
     "legacy key 'boltdb_shipper'"),
    ("period: 24h", "period: 168h", "must be 24h"),
    ('from: "2024-04-01"', 'from: "2024-13-01"', "not a YYYY-MM-DD date"),
    ('from: "2024-04-01"', 'from: "2999-01-01"', "no schema period is active"),
    ("prefix: index_", "prefix: index with space", "index.prefix"),
    ("object_store: filesystem", "object_store: floppy", "not a documented store"),
    ("  delete_request_store: filesystem\n", "", "requires compactor.delete_request_store"),
    ("retention_enabled: true", "retention_enabled: false", "without compactor.retention_enabled"),
    ("retention_enabled: true", 'retention_enabled: "yes"', "not a valid bool"),
    ('retention_period: "744h"', 'retention_period: "12h"', "< 24h"),
    ('retention_period: "744h"', 'retention_period: "31 days"', "not a valid prom_duration"),
    ('max_query_lookback: "744h"', 'max_query_lookback: "24h"', "differs from retention_period"),
    ("compaction_interval: 10m", "compaction_interval: 1d", "not a valid go_duration"),
    ("ingestion_rate_mb: 8", "ingestion_rate_mb: eight", "not a valid float"),
    ("http_listen_port: 3100", "http_listen_port: 70000", "not a valid port"),
    ("analytics:", "analytic:", "unknown top-level block 'analytic'"),
    ("  volume_enabled: true", "  volume_enable: true", "limits_config.volume_enable is not a key"),
])
def test_loki_checks_catch_broken_variants(old, new, message):
    cfg = yaml.safe_load(_mutated(render("loki.yaml.j2"), old, new))
    errors = loki_errors(cfg)
    assert any(message in e for e in errors), errors


def test_loki_checks_catch_structured_metadata_on_an_old_schema():
    cfg = yaml.safe_load(render("loki.yaml.j2"))
    cfg["schema_config"]["configs"][0]["schema"] = "v12"
    assert any("allow_structured_metadata needs schema v13" in e for e in loki_errors(cfg))


@pytest.mark.parametrize("old, new, message", [
    ("loki.write.default.receiver", "loki.write.missing.receiver", 'undefined component loki.write "missing"'),
    ("loki.write.default.receiver", "loki.write.default.output", "exports ['receiver']"),
    ("discovery.relabel.containers.output", "discovery.relable.containers.output", "unknown reference"),
    ("forward_to = [loki.write.default.receiver]", "forward_to = [discovery.relabel.containers.output]",
     "is not a receiver"),
    ('loki.write "default" {', 'loki.writer "default" {', "unknown component 'loki.writer'"),
    ('  host       = "unix:///var/run/docker.sock"\n  targets', "  targets", "missing required argument 'host'"),
    ("  forward_to = [loki.write.default.receiver]\n", "", "missing required argument 'forward_to'"),
    ('    url = "http://loki:3100/loki/api/v1/push"\n', "", "missing required argument 'url'"),
    ("/loki/api/v1/push", "/api/prom/push", "must be http(s)://host/loki/api/v1/push"),
    ("  targets = discovery.docker.containers.targets\n", "", "missing required argument 'targets'"),
    ('    name   = "label"\n', "", "missing required argument 'name'"),
    ('refresh_interval = "15s"', 'refresh_intervall = "15s"', "unknown argument 'refresh_intervall'"),
    ('refresh_interval = "15s"', 'refresh_interval = "15 seconds"', "a duration is expected"),
    ("stage.json {", "stage.jsonn {", "unknown block 'stage.jsonn'"),
    ("      drop_malformed = false\n", '      drop_malformed = "no"\n', "a bool is expected"),
    ('target_label  = "container"', 'target_label  = "container"\n    action        = "keeep"', "unknown action"),
    ('regex         = "/(.*)"', 'regex         = "/(.*"', "bad regex"),
    ('`{compose_project=', '`compose_project=', "not a LogQL stream selector"),
    ('loki.write "default" {', 'loki.process "containers" {\n  forward_to = []\n}\n\nloki.write "default" {',
     "defined twice"),
    ('discovery.docker "containers" {', 'discovery.docker {', "needs a label"),
    ("  endpoint {\n", "  endpointt {\n", "unknown block 'endpointt'"),
    ("  rule {\n    source_labels = [\"__meta_docker_container_name\"]", "  rule {\n    source_labels = [\"x\"]",
     None),  # harmless edit: must still pass (guards against over-strict checks)
])
def test_alloy_checks_catch_broken_variants(alloy_src, old, new, message):
    errors = alloy_errors(_mutated(alloy_src, old, new))
    if message is None:
        assert errors == []
    else:
        assert any(message in e for e in errors), errors


@pytest.mark.parametrize("old, new", [
    ("loki.write \"default\" {\n  endpoint {", "loki.write \"default\" {\n  endpoint {{"),  # unbalanced brace
    ("}\n\nloki.source.docker", "\n\nloki.source.docker"),                                 # missing brace
    ('regex         = "/(.*)"', "regex         = '/(.*)'"),                                 # single quotes
    ("// Stream labels", "# Stream labels"),                                                # shell comment
    ('"com.docker.compose.project=freshtrack"]', '"com.docker.compose.project=freshtrack"'),  # unclosed list
])
def test_alloy_syntax_check_catches_broken_variants(alloy_src, old, new):
    errors = alloy_errors(_mutated(alloy_src, old, new))
    assert errors and errors[0].startswith("alloy syntax:"), errors


@pytest.mark.parametrize("old, new, message", [
    ("clients:", "client:", "clients is missing"),
    ("/loki/api/v1/push", "/loki/api/v1/pushx", "must be http(s)://host/loki/api/v1/push"),
    ("  filename: /var/lib/promtail/positions.yaml", "  file: positions.yaml", "unknown key 'file'"),
    ("      - host: unix:///var/run/docker.sock", "      - hostname: unix:///var/run/docker.sock",
     "unknown key 'hostname'"),
    ("      - host: unix:///var/run/docker.sock", "      - host: /var/run/docker.sock", "not a Docker daemon address"),
    ("refresh_interval: 15s", "refresh_interval: 15 s", "not a duration"),
    ("docker_sd_configs:", "docker_sd_config:", "unknown key 'docker_sd_config'"),
    ("  - job_name: docker\n", "  - job: docker\n", "job_name is missing"),
    ("target_label: container", "action: replace", "target_label is mandatory"),
    ("          - name: label\n", "          - label: label\n", "needs name and a list of values"),
    ("- match:", "- matches:", "unknown stage 'matches'"),
    ("          selector: '{compose", "          selector: '(compose", "not a LogQL selector"),
    ("                drop_malformed: false", "                drop_malformd: false", "unknown key 'drop_malformd'"),
    ("http_listen_port: 9080", "http_port: 9080", "server: unknown key 'http_port'"),
])
def test_promtail_checks_catch_broken_variants(old, new, message):
    cfg = yaml.safe_load(_mutated(render("promtail.yaml.j2"), old, new))
    errors = promtail_errors(cfg)
    assert any(message in e for e in errors), errors
