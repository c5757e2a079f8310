#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: FreshTrack Pro contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: rolling_restart
short_description: Replace the containers of docker compose services without downtime, gated on health
version_added: 0.1.0
description:
  - For each service in turn, starts new containers from the project's current compose configuration
    beside the old ones, waits until every new one is healthy (its Docker healthcheck, plus an HTTP
    probe if set), then drains, stops gracefully and removes the old ones. Capacity never drops
    below the desired replica count (max unavailable 0).
  - With I(proxy_network), new containers stay out of that network until they are healthy, then join
    it with the aliases compose gave them, so a proxy that finds replicas by DNS never sends a request
    to one that is not ready; old containers leave the proxy's view before their stop signal (see
    I(proxy_withdraw)). With I(proxy_alias) they also get a free slot alias
    (C(backend-slot-1) .. C(backend-slot-N)), the fixed upstream list of a proxy that health-checks
    its upstreams, as Caddy does only for static upstreams; an old container releases its slot
    when it leaves the proxy's view.
  - If a new container turns unhealthy, exits, restarts or is not healthy within I(health_timeout),
    the new containers are removed, the old ones are left untouched and serving, and the module
    fails with the container's last health-check output and the tail of its log.
  - Refuses services that cannot run twice at once (C(container_name), a fixed host port) and services
    without a healthcheck unless I(wait_fixed) is set.
  - Nothing to do (every container runs the desired image and configuration) reports C(changed=false).
    Check mode reports the plan and changes nothing; diff mode shows the old and new images.
  - Containers are created by the compose CLI (so they are exactly what C(docker compose up) would
    create, labels included) and inspected, started, stopped and removed through the Docker SDK for
    Python.
author:
  - FreshTrack Pro operations (@freshtrack)
requirements:
  - Docker SDK for Python (python3-docker) on the host that runs the module
  - the docker compose v2 CLI plugin
options:
  project_src:
    description: The compose project's directory.
    type: path
    required: true
  files:
    description: Compose files, in order, relative to I(project_src) or absolute. Compose's defaults when empty.
    type: list
    elements: path
    default: []
  project_name:
    description: The project name; compose derives it (the C(name) key or the directory) when unset.
    type: str
  profiles:
    description: Compose profiles to enable.
    type: list
    elements: str
    default: []
  env_files:
    description: Files passed as C(--env-file) (for interpolation).
    type: list
    elements: path
    default: []
  services:
    description: Services to roll, one after the other, in this order.
    type: list
    elements: str
    required: true
  batch_size:
    description:
      - New containers started per step; as many old ones leave after each step.
      - C(0) replaces all replicas at once (twice the containers for a moment, never fewer).
    type: int
    default: 0
  health_timeout:
    description: Seconds the new containers have to become healthy before the rollout is abandoned.
    type: int
    default: 120
  wait_fixed:
    description:
      - For a service without a healthcheck, seconds to wait after start before a running container
        counts as ready. Without it such services are refused.
    type: int
  probe:
    description: An HTTP readiness probe the new containers must also pass, sent from the host to each container's IP.
    type: dict
    suboptions:
      port:
        description: Container port.
        type: int
        required: true
      path:
        description: Request path.
        type: str
        default: /
      status:
        description: Statuses that count as ready.
        type: list
        elements: int
        default: [200]
      timeout:
        description: Seconds per request.
        type: float
        default: 2
  proxy_network:
    description:
      - Engine name of the network the proxy reaches the service through (for example C(freshtrack_edge)).
        New containers join it, with the aliases compose gave them, only once healthy.
    type: str
  proxy_alias:
    description:
      - Slot alias pattern with C({slot}), for example C(backend-slot-{slot}), for a proxy that
        health-checks a fixed list of upstreams (Caddy's active health checks do not work on
        C(dynamic) upstreams). Each new container joins I(proxy_network) under the lowest free
        slot alias; running containers without one (started by a plain C(docker compose up)) get
        one too (reported in C(adopted)). Requires I(proxy_network) and I(proxy_slots).
    type: str
  proxy_slots:
    description:
      - How many slot aliases the proxy lists (C(backend-slot-1) .. C(backend-slot-N)); at least the
        replicas plus the batch size (twice the replicas when I(batch_size) is 0).
    type: int
  drain_command:
    description:
      - Command run in each old container before the drain delay, for example one that makes its
        readiness endpoint fail so a health-checking proxy stops routing to it.
    type: list
    elements: str
  drain_delay:
    description:
      - Seconds between the old containers leaving the proxy's view (or, without I(proxy_network),
        the new ones being ready) and the old ones' stop signal; at least the proxy's DNS refresh or
        health-check interval plus the longest request, so what the proxy already sent them finishes.
    type: float
    default: 2
  proxy_withdraw:
    description:
      - Whether old containers leave the proxy's view before their stop signal, so no request reaches
        an app that is shutting down, whatever it does on SIGTERM. Their endpoint on I(proxy_network)
        is re-created at the same address without aliases (the service name and the slot alias stop
        resolving to them; connections already open carry on), then the module waits I(drain_delay).
      - Keeping the address needs a network with a user-configured subnet (compose
        C(networks.<name>.ipam.config)). C(auto) withdraws where the network allows it and warns where
        it does not (old containers then stay in the proxy's DNS until stopped, and the rollout relies
        on the app failing its readiness check on SIGTERM); C(always) refuses such a network before
        anything is created; C(never) leaves old containers in the proxy's view until stopped.
    type: str
    choices: [auto, always, never]
    default: auto
  stop_timeout:
    description:
      - Seconds an old container gets to finish in-flight work after SIGTERM (its stop signal)
        before it is killed. Defaults to the service's C(stop_grace_period), else 10.
    type: int
  force:
    description: Replace containers even when they already run the desired image and configuration.
    type: bool
    default: false
  docker_host:
    description: The Docker daemon's address.
    type: str
    default: unix:///var/run/docker.sock
  log_lines:
    description: Lines of a failed container's log in the failure message.
    type: int
    default: 20
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Reports the plan (which services would roll, from which image to which) and changes nothing.
  diff_mode:
    support: full
    details: The old and new image of each service.
  platform:
    platforms: posix
notes:
  - Old containers are removed without their anonymous volumes; named volumes are never touched.
  - Secrets or configs whose file content changed do not change the compose configuration hash;
    use I(force) to roll the services that read them.
"""

EXAMPLES = r"""
- name: Roll the backend behind Caddy (slot upstreams), then the worker
  freshtrack.deploy.rolling_restart:
    project_src: /opt/freshtrack
    files: [compose.yaml, compose.selfhosted.yaml, compose.production.yaml]
    project_name: freshtrack
    services: [backend]
    proxy_network: freshtrack_edge
    proxy_alias: "backend-slot-{slot}"
    proxy_slots: 4
    health_timeout: 180
    probe:
      port: 3000
      path: /health/ready
  register: rollout

- name: The phase durations of the backend
  ansible.builtin.debug:
    msg: "{{ rollout.services[0].phases }}"

- name: One replica at a time, a drain hook, 20 s for a health-checking proxy to stop routing to the old one
  freshtrack.deploy.rolling_restart:
    project_src: /opt/app
    services: [web]
    batch_size: 1
    drain_command: [touch, /tmp/drain]
    drain_delay: 20
"""

RETURN = r"""
services:
  description: Per service, in the order rolled.
  returned: always
  type: list
  elements: dict
  contains:
    service:
      description: Service name.
      type: str
    changed:
      description: Whether containers were (or in check mode would be) replaced.
      type: bool
    replicas:
      description: Desired replica count.
      type: int
    image:
      description: The image reference of the compose configuration.
      type: str
    image_id:
      description: Its image ID on this host.
      type: str
    old:
      description: The containers found before the rollout (id, name, status, health, image, image_id, config_hash).
      type: list
      elements: dict
    kept:
      description: IDs of old containers that already ran the desired configuration and stayed.
      type: list
      elements: str
    adopted:
      description: IDs of kept containers that were given a proxy slot alias.
      type: list
      elements: str
    new:
      description: The containers started (same keys as I(old)).
      type: list
      elements: dict
    removed:
      description: IDs of old containers stopped and removed.
      type: list
      elements: str
    batches:
      description: New containers per step.
      type: list
      elements: int
    phases:
      description: >-
        Seconds spent in create, start, healthy, join_proxy_network, withdraw (old containers leaving
        the proxy's view), drain, stop and remove (remove_new after a failure).
      type: dict
    withdraw:
      description: Whether the old containers left the proxy's view before their stop signal (see I(proxy_withdraw)).
      type: bool
    duration:
      description: Seconds for the service.
      type: float
  sample:
    - service: backend
      changed: true
      replicas: 2
      image: ghcr.io/freshtrack/backend:1.4.0
      image_id: sha256:3f2a...
      old: [{id: 9c1e..., name: freshtrack-backend-1, status: running, health: healthy}]
      new: [{id: 7b0d..., name: freshtrack-backend-3, status: running, health: healthy}]
      removed: [9c1e...]
      phases: {create: 0.4, start: 0.3, healthy: 11.2, join_proxy_network: 0.1, drain: 2.0, stop: 1.1, remove: 0.1}
      duration: 15.6
log:
  description: What the rollout did, a line per step, each with its UTC time to the millisecond.
  returned: always
  type: list
  elements: str
  sample: ["05:30:01.442Z backend: creating 2 new container(s) beside 2"]
duration:
  description: Seconds for the whole module run.
  returned: always
  type: float
"""

import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.freshtrack.deploy.plugins.module_utils.rolling_restart import (
    Compose, Rollout, RolloutError, RolloutOptions, image_summary, images_after, stamped)

try:
    import docker
    HAS_DOCKER = True
except ImportError:
    HAS_DOCKER = False


def argument_spec() -> dict:
    return dict(
        project_src=dict(type="path", required=True),
        files=dict(type="list", elements="path", default=[]),
        project_name=dict(type="str"),
        profiles=dict(type="list", elements="str", default=[]),
        env_files=dict(type="list", elements="path", default=[]),
        services=dict(type="list", elements="str", required=True),
        batch_size=dict(type="int", default=RolloutOptions.default("batch_size")),
        health_timeout=dict(type="int", default=RolloutOptions.default("health_timeout")),
        wait_fixed=dict(type="int"),
        probe=dict(type="dict", options=dict(
            port=dict(type="int", required=True),
            path=dict(type="str", default="/"),
            status=dict(type="list", elements="int", default=[200]),
            timeout=dict(type="float", default=2),
        )),
        proxy_network=dict(type="str"),
        proxy_alias=dict(type="str"),
        proxy_slots=dict(type="int"),
        drain_command=dict(type="list", elements="str"),
        drain_delay=dict(type="float", default=RolloutOptions.default("drain_delay")),
        proxy_withdraw=dict(type="str", choices=["auto", "always", "never"], default=RolloutOptions.default("proxy_withdraw")),
        stop_timeout=dict(type="int"),
        force=dict(type="bool", default=RolloutOptions.default("force")),
        docker_host=dict(type="str", default="unix:///var/run/docker.sock"),
        log_lines=dict(type="int", default=RolloutOptions.default("log_lines")),
    )


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           required_by=dict(proxy_alias=("proxy_network", "proxy_slots")))
    params = module.params
    if not HAS_DOCKER:
        module.fail_json(msg=missing_required_lib("docker (python3-docker)"))
    for name in ("batch_size", "health_timeout", "log_lines"):
        if params[name] < 0:
            module.fail_json(msg=f"{name} must be 0 or more, got {params[name]}")
    if params["proxy_alias"] and "{slot}" not in params["proxy_alias"]:
        module.fail_json(msg=f"proxy_alias must contain {{slot}}, got {params['proxy_alias']!r}")
    if not params["services"]:
        module.fail_json(msg="services must name at least one service")

    started = time.monotonic()
    messages = []
    compose = Compose(module.run_command, params["project_src"], params["files"], params["project_name"],
                      params["profiles"], params["env_files"])
    try:
        client = docker.DockerClient(base_url=params["docker_host"])
        client.ping()
    except Exception as error:
        module.fail_json(msg=f"cannot reach the Docker daemon at {params['docker_host']}: {error}")

    results = []
    try:
        project = params["project_name"] or compose.config().get("name")
        rollout = Rollout(client, compose, project, RolloutOptions.from_params(params), log=lambda message: messages.append(stamped(message, time.time())),
                          warn=module.warn)
        for service in params["services"]:
            results.append(rollout.roll(service, check_mode=module.check_mode))
    except RolloutError as error:
        if error.result:
            results.append(error.result)
        module.fail_json(msg=str(error), services=results, log=messages,
                         duration=round(time.monotonic() - started, 3))
    except docker.errors.DockerException as error:
        module.fail_json(msg=f"Docker API error: {error}", services=results, log=messages,
                         duration=round(time.monotonic() - started, 3))

    changed = any(result["changed"] for result in results)
    output = dict(changed=changed, services=results, log=messages, duration=round(time.monotonic() - started, 3))
    if module._diff:
        output["diff"] = dict(before="".join(image_summary(r["old"]) + "\n" for r in results),
                              after="".join(image_summary(images_after(r)) + "\n" for r in results))
    module.exit_json(**output)


if __name__ == "__main__":
    main()
