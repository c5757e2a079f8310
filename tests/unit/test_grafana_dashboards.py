"""Static checks of the Grafana provisioning in roles/observability/files/grafana: the datasources file,
the dashboards provider and every dashboard JSON (structure, layout, datasource references, queries).
No Grafana needed. The datasource uids and types come from the provisioned datasources file only."""
from __future__ import annotations

import json
import pathlib
import re

import pytest
import yaml

GRAFANA = pathlib.Path(__file__).resolve().parents[2] / "roles" / "observability" / "files" / "grafana"
DATASOURCES_FILE = GRAFANA / "provisioning" / "datasources" / "freshtrack.yml"
PROVIDER_FILE = GRAFANA / "provisioning" / "dashboards" / "freshtrack.yml"
DASHBOARDS = GRAFANA / "dashboards"
DASHBOARD_PATH = "/var/lib/grafana/dashboards/freshtrack"
GRID_COLUMNS = 24
MAX_UID_LENGTH = 40  # Grafana rejects longer dashboard uids
# Built-in datasource of Grafana's "Annotations & Alerts" (only allowed in annotations).
GRAFANA_BUILTIN = {"type": "grafana", "uid": "-- Grafana --"}
MIXED_UID = "-- Mixed --"
# A LogQL query is a log query (stream selector first) or a metric query (aggregation / range function).
LOGQL = re.compile(
    r"^\s*(\{|(sum|count|rate|avg|min|max|topk|bottomk|stddev|stdvar|sort|sort_desc|count_over_time|rate_counter"
    r"|bytes_over_time|bytes_rate|avg_over_time|sum_over_time|min_over_time|max_over_time|quantile_over_time"
    r"|absent_over_time|label_replace|vector)\b)")

DASHBOARD_FILES = sorted(path for path in DASHBOARDS.iterdir() if path.is_file()) if DASHBOARDS.is_dir() else []


def load_yaml(path):
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def load_dashboard(path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        problem = str(error)
    pytest.fail(f"{path.name}: not valid JSON: {problem}")


@pytest.fixture(scope="module")
def datasources():
    """uid -> type of the provisioned datasources."""
    data = load_yaml(DATASOURCES_FILE)
    return {entry["uid"]: entry["type"] for entry in data["datasources"]}


def panels_of(dashboard):
    """(panel, row title or None) for every panel, including those nested in (collapsed) rows."""
    for panel in dashboard.get("panels", []):
        yield panel, None
        for nested in panel.get("panels", []) or []:
            yield nested, panel.get("title", "?")


def describe(path, dashboard, panel=None, row=None):
    where = f"{path.name} ({dashboard.get('title', '?')})"
    if panel is not None:
        where += f" panel {panel.get('id', '?')} {panel.get('title', '(no title)')!r}"
        if row:
            where += f" in row {row!r}"
    return where


def check_ref(ref, where, datasources, errors, allow_builtin=False):
    """A datasource reference must be {"type": ..., "uid": ...} naming a provisioned datasource."""
    if allow_builtin and ref == GRAFANA_BUILTIN:
        return
    if not isinstance(ref, dict):
        errors.append(f"{where}: datasource {ref!r} is not an object {{type, uid}} (names and ${{DS_...}} "
                      f"variables break provisioning)")
        return
    uid, kind = ref.get("uid"), ref.get("type")
    if uid not in datasources:
        errors.append(f"{where}: datasource uid {uid!r} is not provisioned ({', '.join(sorted(datasources))})")
    elif kind != datasources[uid]:
        errors.append(f"{where}: datasource {uid!r} has type {datasources[uid]!r}, the reference says {kind!r}")


def overlaps(a, b):
    return (a["x"] < b["x"] + b["w"] and b["x"] < a["x"] + a["w"]
            and a["y"] < b["y"] + b["h"] and b["y"] < a["y"] + a["h"])


# ---------------------------------------------------------------------------------------------- provisioning

def test_datasources_file_parses_with_api_version_1():
    data = load_yaml(DATASOURCES_FILE)
    assert data.get("apiVersion") == 1, f"{DATASOURCES_FILE.name}: apiVersion must be 1"
    entries = data.get("datasources")
    assert entries, f"{DATASOURCES_FILE.name}: no datasources"
    uids = [entry.get("uid") for entry in entries]
    assert all(uids), f"{DATASOURCES_FILE.name}: every datasource needs a uid (dashboards reference it)"
    assert len(set(uids)) == len(uids), f"{DATASOURCES_FILE.name}: duplicate uids {uids}"
    for entry in entries:
        assert entry.get("type") and entry.get("url") and entry.get("name"), f"datasource {entry.get('uid')}: " \
            "name, type and url required"
    assert sum(1 for entry in entries if entry.get("isDefault")) <= 1, "more than one default datasource"


def test_provider_loads_dashboards_from_the_role_path():
    data = load_yaml(PROVIDER_FILE)
    assert data.get("apiVersion") == 1, f"{PROVIDER_FILE.name}: apiVersion must be 1"
    providers = data.get("providers") or []
    assert len(providers) == 1, f"{PROVIDER_FILE.name}: expected one provider, found {len(providers)}"
    provider = providers[0]
    assert provider.get("type") == "file", f"{PROVIDER_FILE.name}: provider type must be file"
    assert provider.get("options", {}).get("path") == DASHBOARD_PATH, (
        f"{PROVIDER_FILE.name}: options.path must be {DASHBOARD_PATH}, not {provider.get('options', {}).get('path')!r}")


def test_dashboard_files_are_loadable_by_the_provider():
    assert DASHBOARD_FILES, f"no dashboards in {DASHBOARDS}"
    # Grafana's file provider reads *.json only (lower-case extension) and skips nothing else silently.
    bad = [path.name for path in DASHBOARD_FILES if path.suffix != ".json" or path.name.startswith(".")]
    assert not bad, f"files the provider would not load as dashboards: {bad}"


def test_dashboard_uids_and_titles_are_unique():
    seen_uids, seen_titles, errors = {}, {}, []
    for path in DASHBOARD_FILES:
        dashboard = load_dashboard(path)
        uid, title = dashboard.get("uid"), dashboard.get("title")
        if uid in seen_uids:
            errors.append(f"{path.name}: uid {uid!r} already used by {seen_uids[uid]}")
        if title in seen_titles:
            errors.append(f"{path.name}: title {title!r} already used by {seen_titles[title]}")
        seen_uids[uid], seen_titles[title] = path.name, path.name
    assert not errors, "\n".join(errors)


# ---------------------------------------------------------------------------------------------- per dashboard

@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[path.name for path in DASHBOARD_FILES])
def test_dashboard_structure(path):
    dashboard = load_dashboard(path)
    where = describe(path, dashboard)
    errors = []
    uid = dashboard.get("uid")
    if not isinstance(uid, str) or not uid:
        errors.append(f"{where}: no uid (a stable uid keeps links and the provisioned copy stable)")
    elif len(uid) > MAX_UID_LENGTH or not re.fullmatch(r"[A-Za-z0-9_-]+", uid):
        errors.append(f"{where}: uid {uid!r} must be at most {MAX_UID_LENGTH} characters of [A-Za-z0-9_-]")
    if not isinstance(dashboard.get("title"), str) or not dashboard["title"].strip():
        errors.append(f"{where}: no title")
    if not isinstance(dashboard.get("schemaVersion"), int):
        errors.append(f"{where}: no integer schemaVersion")
    if not isinstance(dashboard.get("panels"), list) or not dashboard["panels"]:
        errors.append(f"{where}: no panels")
    if dashboard.get("id") is not None:
        errors.append(f"{where}: id must be null (Grafana assigns it; a fixed id clashes across instances)")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[path.name for path in DASHBOARD_FILES])
def test_panel_ids_are_unique(path):
    dashboard = load_dashboard(path)
    seen, errors = {}, []
    for panel, row in panels_of(dashboard):
        panel_id = panel.get("id")
        where = describe(path, dashboard, panel, row)
        if not isinstance(panel_id, int) or isinstance(panel_id, bool):
            errors.append(f"{where}: id {panel_id!r} is not an integer")
        elif panel_id in seen:
            errors.append(f"{where}: duplicate panel id {panel_id} (also {seen[panel_id]!r})")
        else:
            seen[panel_id] = panel.get("title")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[path.name for path in DASHBOARD_FILES])
def test_grid_positions_fit_and_do_not_overlap(path):
    dashboard = load_dashboard(path)
    errors = []
    # Top-level panels share one grid; the panels of a collapsed row are laid out when it opens, so they
    # are compared with each other only. Row headers themselves are exempt from the overlap check.
    groups = {None: []}
    for panel, row in panels_of(dashboard):
        where = describe(path, dashboard, panel, row)
        pos = panel.get("gridPos")
        if not isinstance(pos, dict) or not all(isinstance(pos.get(key), int) for key in ("x", "y", "w", "h")):
            errors.append(f"{where}: gridPos needs integer x, y, w and h, got {pos!r}")
            continue
        if pos["x"] < 0 or pos["y"] < 0 or pos["w"] < 1 or pos["h"] < 1:
            errors.append(f"{where}: gridPos {pos} has a negative position or an empty size")
        if pos["x"] + pos["w"] > GRID_COLUMNS:
            errors.append(f"{where}: gridPos x {pos['x']} + w {pos['w']} exceeds {GRID_COLUMNS} columns")
        if panel.get("type") != "row":
            groups.setdefault(row, []).append((panel, row, pos))
    for members in groups.values():
        for index, (panel, row, pos) in enumerate(members):
            for other, _other_title, other_pos in members[index + 1:]:
                if overlaps(pos, other_pos):
                    errors.append(f"{describe(path, dashboard, panel, row)}: gridPos {pos} overlaps panel "
                                  f"{other.get('id')} {other.get('title')!r} at {other_pos}")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[path.name for path in DASHBOARD_FILES])
def test_datasource_references_are_provisioned_uids(path, datasources):
    dashboard = load_dashboard(path)
    errors = []
    for variable in dashboard.get("templating", {}).get("list", []):
        where = f"{describe(path, dashboard)} variable {variable.get('name')!r}"
        if "datasource" in variable or variable.get("type") in ("query", "adhoc"):
            check_ref(variable.get("datasource"), where, datasources, errors)
    for annotation in dashboard.get("annotations", {}).get("list", []):
        where = f"{describe(path, dashboard)} annotation {annotation.get('name')!r}"
        check_ref(annotation.get("datasource"), where, datasources, errors, allow_builtin=True)
        target = annotation.get("target")
        if isinstance(target, dict) and "datasource" in target:
            check_ref(target["datasource"], where, datasources, errors, allow_builtin=True)
    for panel, row in panels_of(dashboard):
        where = describe(path, dashboard, panel, row)
        is_row = panel.get("type") == "row"
        panel_ref = panel.get("datasource")
        if not is_row or panel_ref is not None:  # rows carry one only to repeat by a variable
            if isinstance(panel_ref, dict) and panel_ref.get("uid") == MIXED_UID:
                pass
            else:
                check_ref(panel_ref, where, datasources, errors)
        for target in panel.get("targets", []) or []:
            target_where = f"{where} target {target.get('refId', '?')}"
            ref = target.get("datasource")
            check_ref(ref, target_where, datasources, errors)
            if (isinstance(ref, dict) and isinstance(panel_ref, dict) and panel_ref.get("uid") != MIXED_UID
                    and ref.get("uid") != panel_ref.get("uid")):
                errors.append(f"{target_where}: datasource {ref.get('uid')!r} differs from the panel's "
                              f"{panel_ref.get('uid')!r} (use the Mixed datasource for that)")
    assert not errors, "\n".join(errors)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[path.name for path in DASHBOARD_FILES])
def test_no_import_placeholders(path):
    text = path.read_text(encoding="utf-8")
    dashboard = load_dashboard(path)
    assert "${DS_" not in text, f"{describe(path, dashboard)}: contains a ${{DS_...}} import variable"
    assert "__inputs" not in text, f"{describe(path, dashboard)}: contains __inputs (an export for sharing)"
    assert "__requires" not in dashboard, f"{describe(path, dashboard)}: contains __requires"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=[path.name for path in DASHBOARD_FILES])
def test_targets_have_queries_for_their_datasource(path, datasources):
    dashboard = load_dashboard(path)
    errors = []
    for panel, row in panels_of(dashboard):
        where = describe(path, dashboard, panel, row)
        targets = panel.get("targets", []) or []
        if panel.get("type") != "row" and not targets:
            errors.append(f"{where}: no targets")
        for target in targets:
            target_where = f"{where} target {target.get('refId', '?')}"
            ref = target.get("datasource")
            kind = datasources.get(ref.get("uid")) if isinstance(ref, dict) else None
            expr = target.get("expr")
            if kind == "prometheus":
                if not isinstance(expr, str) or not expr.strip():
                    errors.append(f"{target_where}: Prometheus target without an expr")
            elif kind == "loki":
                if not isinstance(expr, str) or not LOGQL.match(expr):
                    errors.append(f"{target_where}: Loki expr {expr!r} is not a LogQL query "
                                  f"(a {{stream selector}} or a metric query such as sum/count/rate)")
        ref_ids = [target.get("refId") for target in targets]
        if len(set(ref_ids)) != len(ref_ids) or not all(ref_ids):
            errors.append(f"{where}: refIds must be present and unique, got {ref_ids}")
    assert not errors, "\n".join(errors)
