# shellcheck shell=bash
# The disposable local "production-like" host: a Debian systemd container that stands in for a VM.
# Its engine keeps its data in a volume (overlay2, and it survives a restart of the host container).

LOCAL_HOST_NAME="${FRESHTRACK_LOCAL_HOST:-freshtrack-local}"
LOCAL_HOST_IMAGE="${FRESHTRACK_LOCAL_IMAGE:-debian12-systemd}"
LOCAL_KEY="$CACHE_DIR/local/admin_ed25519"
# Where the stand-ins' archives appear on the host (tests/vars/stand-ins.yml loads them from there).
LOCAL_ARCHIVES_MOUNT=/var/cache/freshtrack-images

# The admin's key pair, and its public half as an inventory value (not a lookup of a file beside the
# inventory: an inventory AWX imports keeps its values, not the directory they were read from).
LOCAL_KEY_VARS="$REPO_ROOT/inventories/local/group_vars/freshtrack/admin_key.yml"
ensure_local_key() {
  mkdir -p "$(dirname "$LOCAL_KEY")"
  [ -f "$LOCAL_KEY" ] || ssh-keygen -q -t ed25519 -N '' -C "freshtrack-local-admin" -f "$LOCAL_KEY"
  local vars
  vars=$(printf -- '---\n# Written by scripts/deploy-local (not committed): the public half of %s.\nhardening_admin_ssh_keys:\n  - "%s"\n' \
    "${LOCAL_KEY#"$REPO_ROOT"/}" "$(cat "$LOCAL_KEY.pub")")
  [ "$(cat "$LOCAL_KEY_VARS" 2>/dev/null)" = "$vars" ] || printf '%s\n' "$vars" > "$LOCAL_KEY_VARS"
}

ensure_local_host() {
  if [ "$(docker inspect -f '{{.State.Running}}' "$LOCAL_HOST_NAME" 2>/dev/null)" = "true" ]; then
    [ "$(docker inspect -f "{{range .Mounts}}{{if eq .Destination \"$LOCAL_ARCHIVES_MOUNT\"}}{{.Source}}{{end}}{{end}}" \
         "$LOCAL_HOST_NAME")" = "$ARCHIVES_DIR" ] ||
      die "$LOCAL_HOST_NAME was created without $ARCHIVES_DIR (the image archives) mounted at $LOCAL_ARCHIVES_MOUNT: scripts/deploy-local --fresh"
    log "local host $LOCAL_HOST_NAME is running"
    return 0
  fi
  log "creating local host $LOCAL_HOST_NAME from freshtrack-test/$LOCAL_HOST_IMAGE:local"
  # A new host gets a new engine too: an old engine volume would hold containers and database
  # volumes made with secrets this host no longer has.
  destroy_local_host
  # The app's names resolve to the host itself, as public DNS makes them: deploy.yml and restore.yml
  # check /health through Caddy from the host.
  start_systemd_container "$LOCAL_HOST_NAME" "freshtrack-test/$LOCAL_HOST_IMAGE:local" \
    -v "$LOCAL_HOST_NAME-docker:/var/lib/docker" -v "$ARCHIVES_DIR:$LOCAL_ARCHIVES_MOUNT:ro" \
    --add-host app.freshtrack.test:127.0.0.1 --add-host api.freshtrack.test:127.0.0.1
  # As on a VM: /proc unmasked and /proc/sys writable (images.sh).
  unmask_proc "$LOCAL_HOST_NAME"
  wait_for_boot "$LOCAL_HOST_NAME"
}

destroy_local_host() {
  docker rm -f "$LOCAL_HOST_NAME" >/dev/null 2>&1 || true
  docker volume rm "$LOCAL_HOST_NAME-docker" >/dev/null 2>&1 || true
  log "local host $LOCAL_HOST_NAME removed"
}

local_host_address() {
  docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$LOCAL_HOST_NAME"
}

print_local_summary() {
  local ip h
  ip=$(local_host_address)
  h() { docker exec "$LOCAL_HOST_NAME" bash -c "$1" 2>/dev/null || echo "n/a"; }
  printf '\n%-22s %s\n' "host" "$LOCAL_HOST_NAME ($ip)"
  printf '%-22s %s\n' "os" "$(h '. /etc/os-release; echo $PRETTY_NAME')"
  printf '%-22s %s\n' "ssh (keys only)" "ssh -i $LOCAL_KEY freshtrack@$ip"
  printf '%-22s %s\n' "sshd" "$(h "sshd -T | grep -E '^(permitrootlogin|passwordauthentication) ' | tr '\n' ' '")"
  printf '%-22s %s\n' "firewall" "$(h "echo \$(ufw status | head -1 | cut -d' ' -f2), \$(ufw show added | grep -c '^ufw ') rules")"
  printf '%-22s %s\n' "fail2ban" "$(h "fail2ban-client status sshd | grep -o 'Currently banned:.*'")"
  printf '%-22s %s\n' "security updates" "$(h "apt-config dump APT::Periodic::Unattended-Upgrade")"
  printf '%-22s %s\n' "docker" "$(h "docker version -f '{{.Server.Version}}'")"
  printf '%-22s %s\n' "compose" "$(h "docker compose version --short")"
  printf '%-22s %s\n' "secrets" "$(h "echo \$(ls /opt/freshtrack/secrets | wc -l) files in \$(stat -c '%n (%a)' /opt/freshtrack/secrets)")"
  printf '%-22s %s\n' "docker logs" "$(h "python3 -c 'import json; d=json.load(open(\"/etc/docker/daemon.json\")); print(d[\"log-driver\"], d[\"log-opts\"])'")"
  print_stack_summary "$ip"
}

# The stack as a user meets it: URLs through Caddy (its internal CA saved next to the key), each
# checked from this machine, then every service with its health.
print_stack_summary() {
  local ip=$1 ca="$CACHE_DIR/local/caddy-root.crt" domain code
  docker exec "$LOCAL_HOST_NAME" docker exec freshtrack-caddy cat /data/caddy/pki/authorities/local/root.crt \
    >"$ca" 2>/dev/null || { printf '%-22s %s\n' "stack" "not running"; return 0; }
  printf '\n%-22s %s\n' "Caddy's CA" "$ca (freshtrack_tls_mode: internal)"
  for domain in app.freshtrack.test api.freshtrack.test; do
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 --cacert "$ca" \
      --resolve "$domain:443:$ip" "https://$domain/health" || true)
    printf '%-22s %s\n' "https://$domain" "/health -> HTTP $code  (curl --cacert $ca --resolve $domain:443:$ip https://$domain/health)"
  done
  # Monitoring, as Prometheus sees it (its UI listens on the host's loopback: an SSH tunnel reaches it).
  docker exec -i "$LOCAL_HOST_NAME" python3 - <<'PY' 2>/dev/null || printf '%-22s %s\n' "Prometheus" "not running"
import json, urllib.request
def query(path):
    return json.load(urllib.request.urlopen("http://127.0.0.1:9090/api/v1/" + path, timeout=5))["data"]
targets = query("targets?state=active")["activeTargets"]
down = sorted(t["labels"]["job"] + " " + t["labels"]["instance"] for t in targets if t["health"] != "up")
# The dead man's switch fires always, by design: shown apart from the real alerts.
firing = sorted({a["labels"]["alertname"] for a in query("alerts")["alerts"] if a["state"] == "firing"}
                - {"MonitoringPipelineDead"})
print("%-22s %d of %d targets up%s" % ("Prometheus", len(targets) - len(down), len(targets),
                                         ("; down: " + ", ".join(down)) if down else ""))
print("%-22s %s" % ("alerts firing", ", ".join(firing) or "none (but the dead man's switch, always firing)"))
pg = query("query?query=pg_up")["result"]
print("%-22s %s" % ("PostgreSQL exporter", "pg_up %s" % (pg[0]["value"][1] if pg else "missing")))
PY
  printf '%-22s %s\n' "monitoring UIs" "ssh -L 9090:127.0.0.1:9090 -L 9093:127.0.0.1:9093 to the host (Prometheus, Alertmanager)"
  printf '\n'
  docker exec "$LOCAL_HOST_NAME" docker ps --filter label=com.docker.compose.project=freshtrack \
    --format 'table {{.Names}}\t{{.Status}}\t{{.Ports}}' | sort
}
