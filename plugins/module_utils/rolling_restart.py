# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Health-gated rolling restart of docker compose services.

The first half is pure (parsing, planning, judging container states) and unit-tested without
Docker. The second half drives the engine: the compose CLI creates the new replicas (so they get
exactly the configuration `docker compose up` would give them), the Docker SDK for Python inspects,
starts, connects, stops and removes containers.

Flow for one service: record the old containers -> create the new ones beside them (compose
`up --no-start --no-recreate --scale`) -> keep them out of the proxy's network -> start them ->
wait until every one is healthy (plus an HTTP probe if asked) -> let them join the proxy's network
-> take the old ones out of the proxy's sight (aliases and slot dropped, address kept for the
requests in flight) -> drain -> stop them gracefully -> remove them. On any failure before the old
ones are touched, the new ones are stopped gracefully and removed, and the old ones keep serving; too
few free proxy slots stop the rollout before anything is created.
"""
from __future__ import annotations

import dataclasses
import json
import re
import time

COMPOSE_LABEL = "com.docker.compose"
PROJECT_LABEL = COMPOSE_LABEL + ".project"
SERVICE_LABEL = COMPOSE_LABEL + ".service"
ONEOFF_LABEL = COMPOSE_LABEL + ".oneoff"
HASH_LABEL = COMPOSE_LABEL + ".config-hash"
NUMBER_LABEL = COMPOSE_LABEL + ".container-number"

DEFAULT_STOP_TIMEOUT = 10  # Docker's own default when a service sets no stop_grace_period


@dataclasses.dataclass(frozen=True)
class RolloutOptions:
    """How a rollout proceeds: the module's options, typed, with the module's defaults (its
    argument_spec takes them from here). See the module's DOCUMENTATION for each."""
    batch_size: int = 0
    health_timeout: int = 120
    wait_fixed: int | None = None
    probe: dict | None = None
    proxy_network: str | None = None
    proxy_alias: str | None = None
    proxy_slots: int | None = None
    drain_command: list | None = None
    drain_delay: float = 2.0
    proxy_withdraw: str = "auto"
    stop_timeout: int | None = None
    force: bool = False
    log_lines: int = 20

    @classmethod
    def from_params(cls, params: dict) -> "RolloutOptions":
        """The rollout's options out of a module's params (other keys are ignored)."""
        return cls(**{field.name: params[field.name] for field in dataclasses.fields(cls)
                      if params.get(field.name) is not None})

    @classmethod
    def default(cls, name: str):
        return {field.name: field.default for field in dataclasses.fields(cls)}[name]


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|ns)")
_DURATION_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}


class RolloutError(Exception):
    """A rollout that cannot start or did not succeed; the message is for a person. `result` is
    the service's partial result (phases so far) when the rollout had started."""

    result: dict | None = None


# ---------------------------------------------------------------------------------------------
# Pure logic


def parse_duration(value) -> float | None:
    """Seconds in a compose duration ('1m30s', '10s', '500ms', 20); None when unset."""
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = _DURATION_PART.findall(text)
    if not parts or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a duration: {value!r}")
    return sum(float(number) * _DURATION_UNITS[unit] for number, unit in parts)


def parse_config_hashes(text: str) -> dict:
    """`docker compose config --hash=a,b` prints 'service hash' per line."""
    hashes = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 2:
            hashes[fields[0]] = fields[1]
    return hashes


def replicas_of(service: dict) -> int:
    """Desired replica count: `deploy.replicas`, else `scale`, else 1."""
    deploy = service.get("deploy") or {}
    if deploy.get("replicas") is not None:
        return int(deploy["replicas"])
    if service.get("scale") is not None:
        return int(service["scale"])
    return 1


def fixed_host_ports(service: dict) -> list[str]:
    """Published ports with a fixed host port (two replicas cannot bind the same one)."""
    fixed = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            published = str(port.get("published") or "")
            target = port.get("target")
        else:  # short syntax, should compose ever hand it back unnormalised
            pieces = str(port).split(":")
            published, target = (pieces[-2] if len(pieces) > 1 else ""), pieces[-1]
        if published and "-" not in published:
            fixed.append(f"{published}->{target}")
    return fixed


def has_healthcheck(service: dict, image_healthcheck: dict | None) -> bool:
    """A healthcheck from the service, or from the image unless the service disables it."""
    check = service.get("healthcheck")
    if check is not None:
        if check.get("disable"):
            return False
        test = check.get("test")
        if test:
            return test not in (["NONE"], "NONE")
    test = (image_healthcheck or {}).get("Test")
    return bool(test) and test != ["NONE"]


def refusal(name: str, service: dict, image_healthcheck: dict | None, wait_fixed) -> str | None:
    """Why this service cannot be rolled without downtime, or None."""
    if service.get("container_name"):
        return (f"service {name} sets container_name {service['container_name']!r}: two containers cannot "
                "share a name, so old and new cannot run side by side. Remove container_name.")
    ports = fixed_host_ports(service)
    if ports:
        return (f"service {name} publishes fixed host port(s) {', '.join(ports)}: a second replica cannot bind "
                "them. Put the service behind the proxy and drop the host port.")
    if not has_healthcheck(service, image_healthcheck) and not wait_fixed:
        return (f"service {name} has no healthcheck, so there is no way to know a new container is ready. "
                "Add a healthcheck (preferred) or set wait_fixed to the seconds to wait after start.")
    return None


def container_view(attrs: dict) -> dict:
    """The few facts the decisions need, from `docker inspect` (the SDK's container.attrs)."""
    state = attrs.get("State") or {}
    health = state.get("Health") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    log = health.get("Log") or []
    try:
        number = int(labels.get(NUMBER_LABEL, "0"))
    except ValueError:
        number = 0
    return {
        "id": attrs.get("Id", ""),
        "name": (attrs.get("Name") or "").lstrip("/"),
        "status": state.get("Status", "missing"),
        "health": health.get("Status") or None,
        "exit_code": state.get("ExitCode"),
        "restart_count": attrs.get("RestartCount", 0) or 0,
        "oom_killed": bool(state.get("OOMKilled")),
        "config_hash": labels.get(HASH_LABEL),
        "image_id": attrs.get("Image"),
        "image": (attrs.get("Config") or {}).get("Image"),
        "number": number,
        "created": attrs.get("Created", ""),
        "last_health_output": (log[-1].get("Output") or "").strip() if log else "",
        "last_health_exit": log[-1].get("ExitCode") if log else None,
        "aliases": {name: endpoint.get("Aliases") or [] for name, endpoint in
                    ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).items()},
    }


def parse_dry_run(text: str) -> set:
    """Containers `docker compose --dry-run up` would recreate (its 'Container <name>  Recreate' lines)."""
    return set(re.findall(r"Container (\S+)\s+Recreate\b", text))


def is_current(view: dict, desired_hash: str, desired_image_id: str, diverged: set | None = None) -> bool:
    """Runs the desired configuration and image, and is running.

    The configuration is judged by compose itself when it can say (`diverged`, from a dry run of
    `up`); otherwise by the config-hash label against `config --hash`, which compose 2.26 computes
    differently for services with env_file.
    """
    same_config = view["name"] not in diverged if diverged is not None else view["config_hash"] == desired_hash
    return (view["status"] == "running" and same_config
            and view["image_id"] == desired_image_id and view["health"] != "unhealthy")


def plan(views: list[dict], replicas: int, desired_hash: str, desired_image_id: str,
         batch_size: int = 0, force: bool = False, diverged: set | None = None) -> dict:
    """What to do with one service.

    Returns keep (current containers that stay), replace (containers to go, oldest first),
    batches (how many new containers to add before removing as many old ones; their sum is the
    number of new containers) and changed.
    """
    ordered = sorted(views, key=lambda v: (v["number"], v["created"]))
    current = [] if force else [v for v in ordered if is_current(v, desired_hash, desired_image_id, diverged)]
    keep = current[:replicas]
    replace = [v for v in ordered if v not in keep]
    to_create = replicas - len(keep)
    size = batch_size if batch_size and batch_size > 0 else max(to_create, 1)
    batches = []
    remaining = to_create
    while remaining > 0:
        batches.append(min(size, remaining))
        remaining -= batches[-1]
    return {"keep": keep, "replace": replace, "batches": batches, "changed": bool(replace or batches)}


def pair_batches(batches: list[int], replace: list[dict]) -> list[tuple[int, list[dict]]]:
    """Each batch's count of new containers with the old containers it retires.

    Old containers that do not run go with the first batch (they serve nothing); running ones
    leave one for one with the new ones; extras (more old than new) go with the last batch.
    """
    idle = [v for v in replace if v["status"] != "running"]
    running = [v for v in replace if v["status"] == "running"]
    if not batches:
        return [(0, idle + running)] if replace else []
    pairs = []
    for index, count in enumerate(batches):
        retire = running[:count]
        running = running[count:]
        if index == 0:
            retire = idle + retire
        pairs.append((count, retire))
    if running:
        count, retire = pairs[-1]
        pairs[-1] = (count, retire + running)
    return pairs


def judge(views: list[dict], elapsed: float, timeout: float, wait_fixed=None,
          probes: dict | None = None) -> tuple[str, str]:
    """Verdict on freshly started containers: ('wait'|'ready'|'failed', why).

    Docker's `unhealthy` already includes the image's retries and start period, so it fails at
    once; so does a container that exited, died, restarts or vanished.
    """
    probes = probes or {}
    waiting = []
    for view in views:
        name, status, health = view["name"], view["status"], view["health"]
        if status in ("exited", "dead", "missing", "removing"):
            code = view.get("exit_code")
            extra = " (out of memory)" if view.get("oom_killed") else ""
            return "failed", f"{name} {status}" + (f" with code {code}" if code is not None and status != "missing" else "") + extra
        if status == "restarting" or view.get("restart_count", 0) > 0:
            return "failed", f"{name} is restarting (restart count {view.get('restart_count', 0)})"
        if health == "unhealthy":
            return "failed", f"{name} is unhealthy"
        if status != "running":  # created, paused
            waiting.append(f"{name} {status}")
            continue
        if health is None:
            if wait_fixed is None:
                return "failed", f"{name} has no healthcheck"
            if elapsed < wait_fixed:
                waiting.append(f"{name} running, fixed wait {elapsed:.0f}/{wait_fixed:.0f} s")
                continue
        elif health != "healthy":
            waiting.append(f"{name} {health}")
            continue
        probe = probes.get(view["id"])
        if probe is not None and probe is not True:
            waiting.append(f"{name} probe: {probe}")
    if not waiting:
        return "ready", "all healthy"
    if elapsed >= timeout:
        return "failed", f"not healthy after {timeout:.0f} s: " + "; ".join(waiting)
    return "wait", "; ".join(waiting)


def slot_aliases(pattern: str, slots: int) -> list[str]:
    """Every slot alias, e.g. backend-slot-1 .. backend-slot-4 for 'backend-slot-{slot}' and 4."""
    return [pattern.format(slot=number) for number in range(1, slots + 1)]


def free_slots(pattern: str, slots: int, taken: set, wanted: int) -> list[str]:
    """The first `wanted` slot aliases nobody holds; RolloutError when there are not enough."""
    free = [alias for alias in slot_aliases(pattern, slots) if alias not in taken]
    if len(free) < wanted:
        raise RolloutError(f"{wanted} new container(s) need a proxy slot but only {len(free)} of {slots} are free "
                           f"({', '.join(sorted(taken)) or 'none'} taken): raise proxy_slots (and the proxy's upstream "
                           "list) or lower batch_size")
    return free[:wanted]


def stamped(message: str, now: float) -> str:
    """A progress line with its UTC time to the millisecond, so it can be set beside a proxy's or a
    load generator's log (which replica left the proxy's view when a request failed)."""
    return time.strftime("%H:%M:%S", time.gmtime(now)) + f".{int(now * 1000) % 1000:03d}Z {message}"


def image_summary(views: list[dict]) -> str:
    """'name (image sha256:abcd...)' per container, for diff and messages."""
    return "\n".join(f"{v['name']}: {v.get('image') or '?'} {str(v.get('image_id') or '')[:19]}" for v in views)


def images_after(result: dict) -> list[dict]:
    """The containers a service has (or, in check mode, would have) after its rollout."""
    kept = [v for v in result["old"] if v["id"] in result["kept"]]
    if result["new"] or not result["changed"]:
        return kept + result["new"] if result["changed"] else result["old"]
    missing = result["replicas"] - len(kept)
    return kept + [{"name": f"{result['service']} (new {n + 1})", "image": result["image"],
                    "image_id": result["image_id"]} for n in range(missing)]


# ---------------------------------------------------------------------------------------------
# Engine side


class Compose:
    """The compose CLI for one project; run_command is AnsibleModule.run_command (or alike)."""

    def __init__(self, run_command, project_src, files=None, project_name=None, profiles=None,
                 env_files=None, binary="docker"):
        self.run_command = run_command
        self.cwd = project_src
        args = [binary, "compose", "--project-directory", project_src]
        for path in files or []:
            args += ["-f", path]
        if project_name:
            args += ["-p", project_name]
        for profile in profiles or []:
            args += ["--profile", profile]
        for path in env_files or []:
            args += ["--env-file", path]
        self.base = args

    def run(self, *args) -> str:
        command = self.base + list(args)
        rc, out, err = self.run_command(command, cwd=self.cwd)
        if rc != 0:
            raise RolloutError(f"`{' '.join(command[1:])}` failed (rc {rc}): {(err or out).strip()[-2000:]}")
        return out

    def config(self) -> dict:
        return json.loads(self.run("config", "--format", "json"))

    def hashes(self, services: list[str]) -> dict:
        return parse_config_hashes(self.run("config", "--hash", ",".join(services)))

    def diverged(self, service: str) -> set | None:
        """Containers of `service` compose would recreate; None when this compose has no --dry-run."""
        command = self.base[:2] + ["--dry-run"] + self.base[2:] + ["up", "--no-start", service]
        rc, out, err = self.run_command(command, cwd=self.cwd)
        if rc != 0:
            if "dry-run" in (err or ""):
                return None
            raise RolloutError(f"`{' '.join(command[1:])}` failed (rc {rc}): {(err or out).strip()[-2000:]}")
        return parse_dry_run((out or "") + (err or ""))

    def create_replicas(self, service: str, total: int) -> None:
        """Create (not start) replicas up to `total`, leaving the existing ones alone.

        Not --no-deps: compose hashes the configuration without the dependencies then, and the
        containers' config-hash label would never match `config --hash`. --no-recreate also holds
        for the dependencies, and --no-start starts none of them.
        """
        self.run("up", "--no-start", "--no-recreate", "--scale", f"{service}={total}", service)


def http_probe(address: str, probe: dict) -> bool | str:
    """True when GET http://address:port/path answers an expected status, else why not."""
    import http.client

    connection = http.client.HTTPConnection(address, probe["port"], timeout=probe.get("timeout", 2))
    try:
        connection.request("GET", probe.get("path", "/"), headers={"User-Agent": "freshtrack-rolling-restart"})
        status = connection.getresponse().status
    except OSError as error:
        return f"{type(error).__name__}: {error}"
    finally:
        connection.close()
    return True if status in probe.get("status", [200]) else f"HTTP {status}"


class Rollout:
    """Rolls services of one compose project; `client` is a docker.DockerClient."""

    POLL_INTERVAL = 1.0  # seconds between looks at the new containers' health

    def __init__(self, client, compose: Compose, project: str, options: RolloutOptions, log=None, sleep=time.sleep,
                 clock=time.monotonic, warn=None):
        self.client = client
        self.warn = warn or (lambda message: None)
        self.pinnable = {}  # network -> whether containers can rejoin it at the address they had
        self.compose = compose
        self.project = project
        self.options = options
        self.log = log or (lambda message: None)
        self.sleep = sleep
        self.clock = clock
        self.config = None

    # -- inspection ------------------------------------------------------------------------
    def load_config(self) -> dict:
        if self.config is None:
            self.config = self.compose.config()
        return self.config

    def containers(self, service: str) -> list:
        found = self.client.containers.list(all=True, filters={
            "label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]})
        return [c for c in found if c.labels.get(ONEOFF_LABEL, "False") != "True"]

    def view(self, container) -> dict:
        try:
            container.reload()
        except Exception as error:  # gone: docker.errors.NotFound
            if type(error).__name__ != "NotFound":
                raise
            return {"id": container.id, "name": container.name, "status": "missing", "health": None,
                    "exit_code": None, "restart_count": 0, "number": 0, "created": "",
                    "config_hash": None, "image_id": None, "image": None, "last_health_output": "",
                    "last_health_exit": None}
        return container_view(container.attrs)

    def prepare(self, service: str) -> dict:
        """Everything a decision needs for one service; raises RolloutError on refusals."""
        config = self.load_config()
        definition = (config.get("services") or {}).get(service)
        if definition is None:
            known = ", ".join(sorted(config.get("services") or {})) or "none"
            raise RolloutError(f"service {service} is not in the compose project (services: {known})")
        image_ref = definition.get("image")
        if not image_ref:
            raise RolloutError(f"service {service} has no image; build the image first and name it")
        try:
            image = self.client.images.get(image_ref)
        except Exception as error:
            raise RolloutError(f"image {image_ref} of service {service} is not on this host ({error}); "
                               "pull or load it before the rollout") from error
        image_check = (image.attrs.get("Config") or {}).get("Healthcheck")
        why = refusal(service, definition, image_check, self.options.wait_fixed)
        if why:
            raise RolloutError(why)
        network = self.options.proxy_network
        if network and network not in self.network_names(definition):
            raise RolloutError(f"service {service} is not attached to proxy_network {network} "
                               f"(it is on: {', '.join(self.network_names(definition)) or 'none'})")
        diverged = self.compose.diverged(service)
        desired_hash = self.compose.hashes([service]).get(service)
        if not desired_hash:
            raise RolloutError(f"docker compose config gave no config hash for service {service}")
        containers = self.containers(service)
        views = [self.view(c) for c in containers]
        stop_timeout = self.options.stop_timeout
        if stop_timeout is None:
            stop_timeout = parse_duration(definition.get("stop_grace_period"))
        return {
            "definition": definition, "image_ref": image_ref, "image_id": image.id,
            "desired_hash": desired_hash, "diverged": diverged, "containers": containers, "views": views,
            "replicas": replicas_of(definition),
            "stop_timeout": int(stop_timeout if stop_timeout is not None else DEFAULT_STOP_TIMEOUT),
        }

    def network_names(self, definition: dict) -> list[str]:
        """Engine-side names of the service's networks (compose prefixes keys with the project)."""
        declared = self.load_config().get("networks") or {}
        names = []
        for key in (definition.get("networks") or {"default": None}):
            names.append((declared.get(key) or {}).get("name") or f"{self.project}_{key}")
        return names

    # -- one service ---------------------------------------------------------------------------
    def roll(self, service: str, check_mode: bool = False) -> dict:
        started = self.clock()
        facts = self.prepare(service)
        steps = plan(facts["views"], facts["replicas"], facts["desired_hash"], facts["image_id"],
                     self.options.batch_size, self.options.force, facts["diverged"])
        result = {
            "service": service, "changed": steps["changed"], "replicas": facts["replicas"],
            "image": facts["image_ref"], "image_id": facts["image_id"],
            "old": [_public(v) for v in facts["views"]],
            "kept": [v["id"] for v in steps["keep"]],
            "new": [], "removed": [], "phases": {}, "batches": steps["batches"],
        }
        by_id = {c.id: c for c in facts["containers"]}
        unslotted = self.unslotted(steps["keep"])
        result["adopted"] = [v["id"] for v in unslotted]
        result["changed"] = result["changed"] or bool(unslotted)
        if not result["changed"] or check_mode:
            result["duration"] = round(self.clock() - started, 3)
            return result
        try:
            self.execute(service, facts, steps, result, by_id, unslotted)
        except RolloutError as error:
            result.update(failed=True, duration=round(self.clock() - started, 3))
            error.result = result
            raise
        result["duration"] = round(self.clock() - started, 3)
        return result

    def execute(self, service, facts, steps, result, by_id, unslotted) -> None:
        result["withdraw"] = self.will_withdraw(service, [by_id[v["id"]] for v in steps["replace"]
                                                          if v["status"] == "running"], facts["image_id"])
        if unslotted:
            self.adopt(service, [by_id[v["id"]] for v in unslotted])
        total_now = len(facts["containers"])
        for count, retire in pair_batches(steps["batches"], steps["replace"]):
            new_views = self.add_batch(service, facts, count, total_now, result["phases"]) if count else []
            total_now += len(new_views)
            result["new"] += [_public(v) for v in new_views]
            self.retire(service, [by_id[v["id"]] for v in retire], facts["stop_timeout"], result["phases"],
                        result["withdraw"])
            total_now -= len(retire)
            result["removed"] += [v["id"] for v in retire]
        final = [self.view(c) for c in self.containers(service)]
        running = [v for v in final if v["status"] == "running"]
        result["final"] = [_public(v) for v in final]
        if len(running) != facts["replicas"] or len(final) != facts["replicas"]:
            raise RolloutError(f"service {service} ended with {len(running)} running of {len(final)} containers, "
                               f"wanted {facts['replicas']}")

    def add_batch(self, service: str, facts: dict, count: int, total_now: int, phases: dict) -> list[dict]:
        """Create, start and health-gate `count` new containers; on any failure stop them gracefully,
        remove them, and raise: a failed rollout leaves no container behind."""
        network = self.options.proxy_network
        # Before anything is created: too few free slots stop the rollout with nothing to undo.
        slots = self.take_slots(service, count) if network else []
        before = {c.id for c in self.containers(service)}
        t0 = self.clock()
        self.log(f"{service}: creating {count} new container(s) beside {total_now}")
        new = []
        try:
            try:
                self.compose.create_replicas(service, total_now + count)
            finally:  # what compose created, also when it failed half-way
                new = [c for c in self.containers(service) if c.id not in before]
                _add(phases, "create", self.clock() - t0)
            if len(new) != count:
                raise RolloutError(f"compose created {len(new)} container(s) for {service}, expected {count}")
            aliases = {}
            if network:
                for index, container in enumerate(new):  # out of the proxy's sight until healthy
                    aliases[container.id] = _aliases(container.attrs, network) + slots[index:index + 1]
                    self.client.networks.get(network).disconnect(container)
            t1 = self.clock()
            for container in new:
                container.start()
            _add(phases, "start", self.clock() - t1)
            t2 = self.clock()
            try:
                self.wait_ready(service, new)
            finally:  # a failed rollout reports how long it waited too
                _add(phases, "healthy", self.clock() - t2)
            if network:
                t3 = self.clock()
                for container in new:
                    self.client.networks.get(network).connect(container, aliases=aliases[container.id])
                _add(phases, "join_proxy_network", self.clock() - t3)
        except BaseException:
            t4 = self.clock()
            self.discard(new, facts["stop_timeout"])
            _add(phases, "remove_new", self.clock() - t4)
            raise
        return [self.view(c) for c in new]

    def take_slots(self, service: str, count: int) -> list[str]:
        """Slot aliases for `count` new containers (none when the proxy does not use slots)."""
        pattern = self.options.proxy_alias
        if not pattern:
            return []
        return free_slots(pattern, self.slot_count(), self.slots_taken(service), count)

    def slot_count(self) -> int:
        return int(self.options.proxy_slots or 0)

    def slots_taken(self, service: str) -> set:
        network = self.options.proxy_network
        taken = set()
        for container in self.containers(service):
            taken.update(_aliases(container.attrs, network))
        return taken & set(slot_aliases(self.options.proxy_alias, self.slot_count()))

    def adopt(self, service: str, kept: list) -> list[str]:
        """Give running containers that have no proxy slot (started by plain `compose up`) one.

        Their proxy-network endpoint is re-created with the extra alias; until then the proxy
        cannot reach them at all, so this takes nothing away.
        """
        network, pattern = self.options.proxy_network, self.options.proxy_alias
        if not (network and pattern):
            return []
        mine = set(slot_aliases(pattern, self.slot_count()))
        adopted = []
        for container in kept:
            container.reload()
            current = _aliases(container.attrs, network)
            if mine & set(current):
                continue
            alias = self.take_slots(service, 1)
            self.client.networks.get(network).disconnect(container)
            self.client.networks.get(network).connect(container, aliases=current + alias)
            container.reload()
            adopted.append(container.id)
            self.log(f"{service}: {container.name} joined the proxy as {alias[0]}")
        return adopted

    def unslotted(self, views: list[dict]) -> list[dict]:
        network, pattern = self.options.proxy_network, self.options.proxy_alias
        if not (network and pattern):
            return []
        mine = set(slot_aliases(pattern, self.slot_count()))
        return [v for v in views if not mine & set(v.get("aliases", {}).get(network, []))]

    # -- leaving the proxy's sight -------------------------------------------------------------
    def will_withdraw(self, service: str, running_old: list, image_id: str) -> bool:
        """Whether the old containers leave the proxy's view before their stop signal; decided before
        anything is created, so `proxy_withdraw: always` on a network that cannot do it changes nothing."""
        network, mode = self.options.proxy_network, self.options.proxy_withdraw
        if not (network and running_old) or mode == "never":
            return False
        address = _ipv4(running_old[0].attrs, network)
        if network not in self.pinnable:
            self.pinnable[network] = bool(address) and self.can_pin(network, address, image_id)
        if self.pinnable[network]:
            return True
        why = (f"proxy_network {network} has no user-configured subnet, so an old container cannot leave the "
               "proxy's DNS and keep its address while requests in flight finish")
        if mode == "always":
            raise RolloutError(f"{why}: give the network a subnet (compose: networks.<name>.ipam.config "
                               "[{subnet: ...}]), or set proxy_withdraw to auto")
        self.warn(f"rolling_restart {service}: {why}; old containers stay in it until their stop signal, so the "
                  "rollout relies on the app failing readiness on SIGTERM. Give the network a subnet to fix it.")
        return False

    def can_pin(self, network: str, address: str, image_id: str) -> bool:
        """Whether the engine lets a container join `network` at a chosen address, which it allows only
        on networks with a user-configured subnet (not visible in `network inspect` when the user also
        set the gateway). Tried on a container created for the purpose, never started, then removed:
        a created container's endpoint takes no address until it starts."""
        probe = self.client.containers.create(image_id, labels={"org.freshtrack.rolling-restart": "probe"})
        try:
            self.client.networks.get(network).connect(probe, ipv4_address=address)
            return True
        except Exception as error:
            if "user configured subnet" in str(error) or "user defined networks only" in str(error):
                return False
            raise
        finally:  # with the anonymous volumes its image may declare: nobody's data
            probe.remove(force=True, v=True)

    def withdraw(self, service: str, container) -> None:
        """Take a running container out of the proxy's sight without cutting what it is serving: its
        endpoint on proxy_network is re-created at the same address (and MAC) without aliases, so
        the service name and its slot alias stop resolving to it, while connections already open
        to its address carry on."""
        network = self.options.proxy_network
        container.reload()
        endpoint = _endpoint(container.attrs, network)
        address, mac = endpoint.get("IPAddress"), endpoint.get("MacAddress")
        aliases = _aliases(container.attrs, network)
        extra = {"mac_address": mac} if mac and _api_at_least(self.client, "1.44") else {}
        net = self.client.networks.get(network)
        net.disconnect(container)
        try:
            net.connect(container, ipv4_address=address, **extra)
        except Exception:
            net.connect(container, aliases=aliases)  # never left off the network it serves on
            raise
        self.log(f"{service}: {container.name} left the proxy's view ({network} {address}; "
                 f"{', '.join(aliases) or 'no alias'} no longer resolve to it)")

    def wait_ready(self, service: str, new: list) -> None:
        timeout = float(self.options.health_timeout)
        wait_fixed = self.options.wait_fixed
        probe = self.options.probe
        interval = self.POLL_INTERVAL
        t0 = self.clock()
        last = None
        while True:
            views = [self.view(c) for c in new]
            probes = {}
            if probe:
                for view, container in zip(views, new):
                    if view["status"] == "running" and view["health"] in ("healthy", None):
                        probes[view["id"]] = http_probe(_address(container.attrs), probe)
            elapsed = self.clock() - t0
            verdict, why = judge(views, elapsed, timeout, wait_fixed, probes)
            if verdict == "ready":
                self.log(f"{service}: new container(s) ready after {elapsed:.1f} s")
                return
            if verdict == "failed":
                raise RolloutError(self.failure_report(service, why, new, views))
            if why != last:
                self.log(f"{service}: waiting ({why})")
                last = why
            self.sleep(interval)

    def failure_report(self, service: str, why: str, new: list, views: list[dict]) -> str:
        lines = [f"rollout of {service} stopped: {why}. The new container(s) were removed; the old ones "
                 "were not touched and keep serving."]
        tail = self.options.log_lines
        for container, view in zip(new, views):
            lines.append(f"--- {view['name']} ({view['status']}, health {view['health'] or 'none'}, "
                         f"exit code {view['exit_code']})")
            # A silent check (curl -f, a bare socket) still tells its exit code.
            if view["last_health_output"] or view["last_health_exit"] is not None:
                last_lines = view["last_health_output"].splitlines()[-3:] or ["(no output)"]
                lines.append(f"last health check (exit {view['last_health_exit']}): "
                             + "\n  ".join(line[-300:] for line in last_lines))
            try:
                logs = container.logs(tail=tail).decode("utf-8", "replace").rstrip()
            except Exception as error:  # the container may already be gone
                logs = f"(no log: {error})"
            lines.append(f"last {tail} log lines:\n{logs}")
        return "\n".join(lines)

    def retire(self, service: str, old: list, stop_timeout: int, phases: dict, withdraw: bool = False) -> None:
        """Take out of the proxy's sight, drain, stop gracefully and remove old containers."""
        if not old:
            return
        running = [c for c in old if self.view(c)["status"] == "running"]
        t0 = self.clock()
        if withdraw and running:
            for container in running:
                self.withdraw(service, container)
            _add(phases, "withdraw", self.clock() - t0)
            t0 = self.clock()
        command = self.options.drain_command
        if command and running:
            for container in running:
                code, output = container.exec_run(command)
                if code != 0:
                    self.log(f"{service}: drain command in {container.name} exited {code}: "
                             f"{output.decode('utf-8', 'replace').strip()[-300:]}")
        delay = float(self.options.drain_delay or 0)
        if delay and running:
            self.log(f"{service}: draining {len(running)} old container(s) for {delay:g} s")
            self.sleep(delay)
        _add(phases, "drain", self.clock() - t0)
        t1 = self.clock()
        for container in running:
            self.log(f"{service}: stopping {container.name} (up to {stop_timeout} s)")
            container.stop(timeout=stop_timeout)
        _add(phases, "stop", self.clock() - t1)
        t2 = self.clock()
        self.remove(old)
        _add(phases, "remove", self.clock() - t2)

    def discard(self, containers: list, stop_timeout: int) -> None:
        """The new containers of a failed rollout: each stopped gracefully first (SIGTERM, then up
        to its stop timeout), so requests a proxy already sent to one finish, then removed."""
        for container in containers:
            try:
                container.reload()
                if container.status in ("running", "restarting"):
                    container.stop(timeout=stop_timeout)
            except Exception as error:
                if type(error).__name__ != "NotFound":
                    raise
        self.remove(containers)

    def remove(self, containers: list) -> None:
        for container in containers:
            try:
                container.remove(force=True)  # anonymous volumes stay: no data is deleted here
            except Exception as error:
                if type(error).__name__ != "NotFound":
                    raise


def _add(phases: dict, name: str, seconds: float) -> None:
    phases[name] = round(phases.get(name, 0.0) + seconds, 3)


def _public(view: dict) -> dict:
    keys = ("id", "name", "status", "health", "image", "image_id", "config_hash")
    return {key: view.get(key) for key in keys}


def _endpoint(attrs: dict, network: str) -> dict:
    """A container's endpoint on `network`, from `docker inspect` ({} when not attached)."""
    return ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}


def _aliases(attrs: dict, network: str) -> list[str]:
    endpoint = _endpoint(attrs, network)
    short_id = attrs.get("Id", "")[:12]
    return [alias for alias in endpoint.get("Aliases") or [] if alias != short_id]


def _ipv4(attrs: dict, network: str) -> str | None:
    return _endpoint(attrs, network).get("IPAddress") or None


def _api_at_least(client, version: str) -> bool:
    """The engine API the client talks is `version` or newer (MAC addresses on connect need 1.44)."""
    try:
        have = tuple(int(part) for part in str(client.api.api_version).split("."))
    except (AttributeError, ValueError):
        return False
    return have >= tuple(int(part) for part in version.split("."))


def _address(attrs: dict) -> str:
    for endpoint in ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).values():
        if endpoint.get("IPAddress"):
            return endpoint["IPAddress"]
    raise RolloutError(f"container {attrs.get('Name', '?')} has no IP address to probe")
