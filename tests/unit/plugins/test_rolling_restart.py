"""Decision logic of the rolling_restart module, without Docker: parsing, refusals, planning which
containers stay and go, and the verdict on new containers in every state they can be in."""
from __future__ import annotations

import itertools

import pytest

from ansible_collections.freshtrack.deploy.plugins.module_utils import rolling_restart as rr

HASH, IMAGE = "h-new", "sha256:new"


def view(name="c1", status="running", health="healthy", number=1, config_hash=HASH, image_id=IMAGE,
         restart_count=0, exit_code=0, oom=False):
    return {"id": f"id-{name}", "name": name, "status": status, "health": health, "number": number,
            "created": f"2026-11-23T00:00:0{number}Z", "config_hash": config_hash, "image_id": image_id,
            "image": "app:1", "restart_count": restart_count, "exit_code": exit_code, "oom_killed": oom,
            "last_health_output": "", "last_health_exit": None}


# ---- parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [
    ("10s", 10), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), ("2m", 120), (20, 20), ("15", 15), (None, None),
])
def test_parse_duration(text, seconds):
    assert rr.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten seconds", "10x", "1m-5s"])
def test_parse_duration_rejects_garbage(text):
    with pytest.raises(ValueError):
        rr.parse_duration(text)


def test_parse_config_hashes():
    assert rr.parse_config_hashes("backend abc\nworker def\n\nnoise line here\n") == {"backend": "abc", "worker": "def"}


@pytest.mark.parametrize("service, replicas", [
    ({"deploy": {"replicas": 3}}, 3), ({"scale": 2}, 2), ({}, 1), ({"deploy": {"replicas": 0}}, 0),
])
def test_replicas_of(service, replicas):
    assert rr.replicas_of(service) == replicas


# ---- refusals ----------------------------------------------------------------------------------

CHECK = {"test": ["CMD", "true"]}


def test_refuses_container_name():
    why = rr.refusal("db", {"container_name": "freshtrack-db", "healthcheck": CHECK}, None, None)
    assert "container_name 'freshtrack-db'" in why and "side by side" in why


@pytest.mark.parametrize("ports, refused", [
    ([{"target": 3000, "published": "8080", "protocol": "tcp"}], True),
    ([{"target": 3000, "published": "8080-8090", "protocol": "tcp"}], False),
    ([{"target": 3000, "protocol": "tcp"}], False),
    ([{"target": 3000, "host_ip": "127.0.0.1", "protocol": "tcp"}], False),
    (["127.0.0.1:3002:3001"], True),
    ([], False),
])
def test_refuses_fixed_host_ports_only(ports, refused):
    why = rr.refusal("web", {"ports": ports, "healthcheck": CHECK}, None, None)
    assert (why is not None) == refused
    if refused:
        assert "fixed host port" in why


@pytest.mark.parametrize("service_check, image_check, wait_fixed, refused", [
    (CHECK, None, None, False),
    (None, {"Test": ["CMD-SHELL", "true"]}, None, False),
    (None, None, None, True),
    ({"disable": True}, {"Test": ["CMD-SHELL", "true"]}, None, True),
    ({"test": ["NONE"]}, None, None, True),
    (None, {"Test": ["NONE"]}, None, True),
    (None, None, 15, False),
])
def test_healthcheck_required_unless_fixed_wait(service_check, image_check, wait_fixed, refused):
    service = {"healthcheck": service_check} if service_check is not None else {}
    why = rr.refusal("web", service, image_check, wait_fixed)
    assert (why is not None) == refused
    if refused:
        assert "no healthcheck" in why and "wait_fixed" in why


# ---- container view -----------------------------------------------------------------------------

def test_container_view_from_inspect():
    attrs = {"Id": "abc", "Name": "/p-backend-3", "Image": "sha256:x", "RestartCount": 2,
             "Created": "2026-11-23T10:00:00Z",
             "State": {"Status": "running", "ExitCode": 0, "OOMKilled": False,
                       "Health": {"Status": "unhealthy", "Log": [{"Output": "first"}, {"Output": "  last\n"}]}},
             "Config": {"Image": "app:2", "Labels": {rr.HASH_LABEL: "h", rr.NUMBER_LABEL: "3"}},
             "NetworkSettings": {"Networks": {"p_edge": {"Aliases": ["p-backend-3", "backend", "backend-slot-2"]}}}}
    got = rr.container_view(attrs)
    assert got["name"] == "p-backend-3" and got["number"] == 3 and got["restart_count"] == 2
    assert got["health"] == "unhealthy" and got["last_health_output"] == "last"
    assert got["last_health_exit"] is None  # this Log entry has no ExitCode
    assert got["aliases"] == {"p_edge": ["p-backend-3", "backend", "backend-slot-2"]}


class LoggedContainer:
    def logs(self, tail):
        return b"listening\n"


@pytest.mark.parametrize("output, exit_code, expected", [
    ("health: HTTP/1.0 503 Service Unavailable", 1, "last health check (exit 1): health: HTTP/1.0 503"),
    ("", 1, "last health check (exit 1): (no output)"),  # a silent check still tells its exit code
    ("", None, None),  # never checked: no line
])
def test_failure_report_gives_the_last_health_check(output, exit_code, expected):
    rollout = rr.Rollout(None, compose=None, project="p", options=rr.RolloutOptions(log_lines=5))
    bad = dict(view("p-backend-3", health="unhealthy"), last_health_output=output, last_health_exit=exit_code)
    report = rollout.failure_report("backend", "p-backend-3 is unhealthy", [LoggedContainer()], [bad])
    assert report.startswith("rollout of backend stopped: p-backend-3 is unhealthy.")
    assert "--- p-backend-3 (running, health unhealthy, exit code 0)" in report
    assert "last 5 log lines:\nlistening" in report
    if expected:
        assert expected in report
    else:
        assert "last health check" not in report


# ---- planning ------------------------------------------------------------------------------------

def test_nothing_to_do_when_every_replica_is_current():
    steps = rr.plan([view("a", number=1), view("b", number=2)], 2, HASH, IMAGE)
    assert steps == {"keep": steps["keep"], "replace": [], "batches": [], "changed": False}
    assert [v["name"] for v in steps["keep"]] == ["a", "b"]


@pytest.mark.parametrize("difference", [{"config_hash": "h-old"}, {"image_id": "sha256:old"}])
def test_new_image_or_config_replaces_all_at_once_by_default(difference):
    old = [view("a", number=1, **difference), view("b", number=2, **difference)]
    steps = rr.plan(old, 2, HASH, IMAGE)
    assert steps["keep"] == [] and [v["name"] for v in steps["replace"]] == ["a", "b"]
    assert steps["batches"] == [2] and steps["changed"]


@pytest.mark.parametrize("batch_size, batches", [(1, [1, 1, 1]), (2, [2, 1]), (0, [3]), (5, [3])])
def test_batches(batch_size, batches):
    old = [view(n, number=i, config_hash="h-old") for i, n in enumerate("abc", 1)]
    assert rr.plan(old, 3, HASH, IMAGE, batch_size)["batches"] == batches


def test_every_old_state_combination():
    """Each old container, whatever its state, is kept only if it runs the desired config healthily."""
    states = [("running", "healthy"), ("running", "starting"), ("running", "unhealthy"), ("running", None),
              ("exited", None), ("restarting", None), ("created", None), ("paused", "healthy")]
    for (s1, h1), (s2, h2) in itertools.product(states, repeat=2):
        for current1, current2 in itertools.product([True, False], repeat=2):
            a = view("a", s1, h1, 1, HASH if current1 else "old")
            b = view("b", s2, h2, 2, HASH if current2 else "old")
            steps = rr.plan([a, b], 2, HASH, IMAGE)
            ok = [v for v in (a, b) if v["config_hash"] == HASH and v["status"] == "running"
                  and v["health"] != "unhealthy"]
            assert steps["keep"] == ok, (a, b)
            assert steps["replace"] == [v for v in (a, b) if v not in ok]
            assert sum(steps["batches"]) == 2 - len(ok)
            assert steps["changed"] == (len(ok) != 2)


def test_missing_replicas_are_created_and_extras_retired():
    assert rr.plan([], 2, HASH, IMAGE)["batches"] == [2]
    extra = rr.plan([view("a", number=1), view("b", number=2), view("c", number=3)], 2, HASH, IMAGE)
    assert [v["name"] for v in extra["replace"]] == ["c"] and extra["batches"] == [] and extra["changed"]


def test_force_replaces_current_containers():
    steps = rr.plan([view("a", number=1), view("b", number=2)], 2, HASH, IMAGE, force=True)
    assert steps["keep"] == [] and steps["batches"] == [2]


def test_pairing_retires_idle_first_and_one_for_one():
    old = [view("a", "exited", None, 1, "x"), view("b", number=2, config_hash="x"),
           view("c", number=3, config_hash="x")]
    pairs = rr.pair_batches([1, 1], old)
    assert [(n, [v["name"] for v in r]) for n, r in pairs] == [(1, ["a", "b"]), (1, ["c"])]
    # more running old ones than new ones: the rest leave with the last batch
    pairs = rr.pair_batches([1], old[1:])
    assert [(n, [v["name"] for v in r]) for n, r in pairs] == [(1, ["b", "c"])]
    # scale down only
    assert [(n, [v["name"] for v in r]) for n, r in rr.pair_batches([], old[1:])] == [(0, ["b", "c"])]
    assert rr.pair_batches([], []) == []


# ---- verdict on new containers ---------------------------------------------------------------

@pytest.mark.parametrize("status, health, extra, verdict, words", [
    ("created", None, {}, "wait", "created"),
    ("running", "starting", {}, "wait", "starting"),
    ("running", "healthy", {}, "ready", "all healthy"),
    ("running", "unhealthy", {}, "failed", "unhealthy"),
    ("running", None, {}, "failed", "no healthcheck"),
    ("restarting", None, {"restart_count": 1}, "failed", "restarting"),
    ("running", "starting", {"restart_count": 2}, "failed", "restart count 2"),
    ("exited", None, {"exit_code": 3}, "failed", "exited with code 3"),
    ("exited", None, {"exit_code": 137, "oom": True}, "failed", "out of memory"),
    ("dead", None, {}, "failed", "dead"),
    ("missing", None, {}, "failed", "missing"),
    ("paused", "healthy", {}, "wait", "paused"),
])
def test_judge_single_container(status, health, extra, verdict, words):
    got, why = rr.judge([view("n1", status, health, **extra)], elapsed=1, timeout=60)
    assert got == verdict and words in why


def test_judge_times_out_naming_what_it_waited_for():
    got, why = rr.judge([view("n1", "running", "starting")], elapsed=61, timeout=60)
    assert got == "failed" and "not healthy after 60 s" in why and "n1 starting" in why


def test_judge_fixed_wait_without_healthcheck():
    assert rr.judge([view("n1", "running", None)], 5, 60, wait_fixed=10)[0] == "wait"
    assert rr.judge([view("n1", "running", None)], 10, 60, wait_fixed=10)[0] == "ready"


def test_judge_probe_must_pass_too():
    new = [view("n1")]
    assert rr.judge(new, 1, 60, probes={"id-n1": "HTTP 503"}) == ("wait", "n1 probe: HTTP 503")
    assert rr.judge(new, 1, 60, probes={"id-n1": True})[0] == "ready"


def test_judge_every_pair_of_states():
    """Two new containers: one failure fails the batch, ready only when both are, else wait."""
    cases = [("created", None), ("running", "starting"), ("running", "healthy"), ("running", "unhealthy"),
             ("exited", None), ("restarting", None), ("dead", None), ("missing", None)]
    single = {case: rr.judge([view("x", *case)], 1, 60)[0] for case in cases}
    for first, second in itertools.product(cases, repeat=2):
        got, _reason = rr.judge([view("a", *first), view("b", *second)], 1, 60)
        verdicts = {single[first], single[second]}
        expected = "failed" if "failed" in verdicts else ("ready" if verdicts == {"ready"} else "wait")
        assert got == expected, (first, second)


# ---- proxy slots ----------------------------------------------------------------------------------

def test_slots():
    assert rr.slot_aliases("backend-slot-{slot}", 3) == ["backend-slot-1", "backend-slot-2", "backend-slot-3"]
    assert rr.free_slots("s{slot}", 4, {"s1", "s3"}, 2) == ["s2", "s4"]
    with pytest.raises(rr.RolloutError, match="only 1 of 4 are free"):
        rr.free_slots("s{slot}", 4, {"s1", "s2", "s3"}, 2)


def test_images_after_for_diff():
    result = {"service": "backend", "changed": True, "replicas": 2, "image": "app:2", "image_id": IMAGE,
              "old": [view("a", config_hash="x"), view("b")], "kept": ["id-b"], "new": []}
    names = [v["name"] for v in rr.images_after(result)]
    assert names == ["b", "backend (new 1)"]
    result["new"] = [view("c")]
    assert [v["name"] for v in rr.images_after(result)] == ["b", "c"]


# ---- compose's own verdict ------------------------------------------------------------------------

def test_parse_dry_run_finds_what_compose_would_recreate():
    text = (" DRY-RUN MODE -  Container p-backend-2  Recreate\n DRY-RUN MODE -  Container p-redis  Running\n"
            " DRY-RUN MODE -  Container p-backend-1  Recreated\n DRY-RUN MODE -  Container p-worker-1  Running\n")
    assert rr.parse_dry_run(text) == {"p-backend-2"}
    assert rr.parse_dry_run(" DRY-RUN MODE -  Container p-backend-1  Running\n") == set()


def test_compose_verdict_outranks_the_hash_label():
    """compose 2.26 hashes services with env_file differently in `config --hash` and in `up`."""
    old = [view("a", number=1, config_hash="label-from-up"), view("b", number=2, config_hash="label-from-up")]
    assert rr.plan(old, 2, "hash-from-config", IMAGE)["changed"]  # the hash alone: always replaced
    assert not rr.plan(old, 2, "hash-from-config", IMAGE, diverged=set())["changed"]
    steps = rr.plan(old, 2, "hash-from-config", IMAGE, diverged={"b"})
    assert [v["name"] for v in steps["keep"]] == ["a"] and steps["batches"] == [1]


# ---- Options: one typed object, the module's defaults taken from it ------------------------------------

def test_options_defaults_are_the_modules_and_the_documented_ones():
    import dataclasses

    import yaml
    from ansible_collections.freshtrack.deploy.plugins.modules import rolling_restart as module

    spec = module.argument_spec()
    documented = yaml.safe_load(module.DOCUMENTATION)["options"]
    for field in dataclasses.fields(rr.RolloutOptions):
        assert field.name in spec, f"{field.name} is no module option"
        assert spec[field.name].get("default") == field.default, field.name
        assert documented[field.name].get("default") == field.default, field.name


def test_options_from_params_take_what_is_set_and_default_the_rest():
    options = rr.RolloutOptions.from_params({"project_src": "/srv", "services": ["backend"], "batch_size": 1,
                                             "wait_fixed": None, "proxy_alias": "slot-{slot}", "force": True})
    assert options.batch_size == 1 and options.force and options.proxy_alias == "slot-{slot}"
    assert options.wait_fixed is None and options.health_timeout == 120 and options.log_lines == 20
    with pytest.raises(dataclasses_frozen_error()):
        options.batch_size = 2


def dataclasses_frozen_error():
    import dataclasses
    return dataclasses.FrozenInstanceError


# ---- Leaving the proxy's view before the stop signal --------------------------------------------------

class FakeAPIError(Exception):
    pass


class FakeEngine:
    """The few engine calls the withdrawal makes, recorded; `subnet` says whether the network was
    given one (only then does the engine take a chosen address)."""

    def __init__(self, subnet: bool, api_version="1.41"):
        self.subnet, self.calls, self.api = subnet, [], type("Api", (), {"api_version": api_version})()
        self.containers, self.networks = self, self

    def create(self, image, labels=None):
        self.calls.append(("create", image))
        return FakeContainer("probe", self)

    def get(self, name):
        return FakeNetwork(name, self)


class FakeNetwork:
    def __init__(self, name, engine):
        self.name, self.engine = name, engine

    def connect(self, container, **kwargs):
        self.engine.calls.append(("connect", container.name, kwargs))
        if kwargs.get("ipv4_address") and not self.engine.subnet:
            raise FakeAPIError("user specified IP address is supported only when connecting to networks "
                               "with user configured subnets")

    def disconnect(self, container):
        self.engine.calls.append(("disconnect", container.name))


class FakeContainer:
    def __init__(self, name, engine, address="172.23.255.5"):
        self.name, self.engine = name, engine
        endpoint = {"IPAddress": address, "MacAddress": "02:42:ac:17:ff:05",
                    "Aliases": ["backend", "backend-slot-2", "0123456789ab"]}
        self.attrs = {"Id": "0123456789abcdef", "NetworkSettings": {"Networks": {"edge": endpoint}}}

    def reload(self):
        pass

    def remove(self, force=False, v=False):
        self.engine.calls.append(("remove", self.name))


def rollout(engine, mode="auto", warnings=None):
    options = rr.RolloutOptions(proxy_network="edge", proxy_withdraw=mode)
    return rr.Rollout(engine, compose=None, project="p", options=options,
                      warn=(warnings.append if warnings is not None else None))


@pytest.mark.parametrize("subnet, mode, expected", [
    (True, "auto", True), (True, "always", True), (True, "never", False),
    (False, "auto", False), (False, "never", False),
])
def test_withdrawal_only_where_the_network_keeps_the_address(subnet, mode, expected):
    engine, warnings = FakeEngine(subnet), []
    old = FakeContainer("backend-1", engine)
    assert rollout(engine, mode, warnings).will_withdraw("backend", [old], "sha256:img") is expected
    probed = [call for call in engine.calls if call[0] == "create"]
    assert len(probed) == (0 if mode == "never" else 1)
    assert ("remove", "probe") in engine.calls or mode == "never"  # the probe never outlives the question
    assert bool(warnings) == (not subnet and mode == "auto")
    if warnings:
        assert "no user-configured subnet" in warnings[0] and "readiness on SIGTERM" in warnings[0]


def test_withdrawal_required_on_a_network_without_a_subnet_refuses_before_anything_changes():
    engine = FakeEngine(subnet=False)
    with pytest.raises(rr.RolloutError, match="no user-configured subnet.*give the network a subnet"):
        rollout(engine, "always").will_withdraw("backend", [FakeContainer("backend-1", engine)], "sha256:img")
    assert [call[0] for call in engine.calls] == ["create", "connect", "remove"]  # only the probe


def test_nothing_to_withdraw_without_proxy_network_or_running_old_containers():
    engine = FakeEngine(subnet=True)
    assert rollout(engine).will_withdraw("backend", [], "sha256:img") is False
    no_proxy = rr.Rollout(engine, None, "p", rr.RolloutOptions())
    assert no_proxy.will_withdraw("backend", [FakeContainer("backend-1", engine)], "sha256:img") is False
    assert engine.calls == []


@pytest.mark.parametrize("api_version, with_mac", [("1.41", False), ("1.44", True), ("1.47", True)])
def test_withdraw_rejoins_at_the_same_address_without_aliases(api_version, with_mac):
    engine = FakeEngine(subnet=True, api_version=api_version)
    rollout(engine).withdraw("backend", FakeContainer("backend-1", engine))
    expected = {"ipv4_address": "172.23.255.5", **({"mac_address": "02:42:ac:17:ff:05"} if with_mac else {})}
    assert engine.calls == [("disconnect", "backend-1"), ("connect", "backend-1", expected)]


def test_withdraw_that_cannot_rejoin_puts_the_container_back_with_its_aliases():
    engine = FakeEngine(subnet=False)
    with pytest.raises(FakeAPIError):
        rollout(engine).withdraw("backend", FakeContainer("backend-1", engine))
    assert engine.calls[-1] == ("connect", "backend-1", {"aliases": ["backend", "backend-slot-2"]})


def test_progress_lines_carry_their_utc_time_to_the_millisecond():
    # 2026-12-02 05:30:04.718 UTC
    assert rr.stamped("backend: stopping freshtrack-backend-1", 1796189404.718) == \
        "05:30:04.718Z backend: stopping freshtrack-backend-1"
    assert rr.stamped("x", 1796189404.0).startswith("05:30:04.000Z ")
