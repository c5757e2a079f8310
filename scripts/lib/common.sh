# shellcheck shell=bash
# Shared helpers for the developer entry points (scripts/test, scripts/deploy-local).
# Everything here is idempotent: it finds what already works and only adds what is missing.

set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CACHE_DIR="${FRESHTRACK_CACHE_DIR:-$REPO_ROOT/.cache}"
# Kept across the checkouts of this machine, so a fresh clone starts with them: the controller venv
# (one per requirements hash) and the test images' archives (rewritten when an image's recipe changes).
SHARED_CACHE_DIR="${FRESHTRACK_SHARED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/freshtrack-deploy}"
VENV_DIR="${FRESHTRACK_VENV:-$REPO_ROOT/.venv}"
mkdir -p "$CACHE_DIR" "$SHARED_CACHE_DIR"

log()  { printf '\033[1;34m==> %s\033[0m\n' "$*" >&2; }
warn() { printf '\033[1;33m!!  %s\033[0m\n' "$*" >&2; }
die()  { printf '\033[1;31mxx  %s\033[0m\n' "$*" >&2; exit 1; }

# Run a step and print how long it took: long work shows progress. With TIMINGS_FILE set
# (scripts/test), the time is also recorded for the suite's timing table (scripts/lib/timings.py).
step() {
  local name=$1; shift
  local t0=$SECONDS
  log "$name"
  "$@"
  log "$name: done in $((SECONDS - t0)) s"
  record_timing setup "$name" "" passed $((SECONDS - t0))
}

record_timing() {
  [ -z "${TIMINGS_FILE:-}" ] || printf '%s\t%s\t%s\t%s\t%s\n' "$@" >> "$TIMINGS_FILE"
}

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# Commands the tests run on this machine, from Debian packages: "command:package" pairs, each
# installed only when missing.
ensure_commands() {
  local pair missing=()
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || { log "Installing ${missing[*]}"; apt_install "${missing[@]}"; }
}

# ansible-core 2.20+ needs Python >= 3.12. Prefer what the system has, then pyenv.
find_python() {
  local candidate
  for candidate in python3.13 python3.12; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import venv' >/dev/null 2>&1; then
      command -v "$candidate"; return 0
    fi
  done
  if command -v pyenv >/dev/null 2>&1; then
    local version
    for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.(1[2-9])(\.[0-9]+)?$' | sort -rV); do
      if [ -x "$(pyenv prefix "$version")/bin/python" ]; then
        echo "$(pyenv prefix "$version")/bin/python"; return 0
      fi
    done
  fi
  if command -v python3 >/dev/null 2>&1 &&
     python3 -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
    command -v python3; return 0
  fi
  return 1
}

# A virtualenv installed from a requirements file, (re)built only when the hash of what it installs
# changes: make_venv DIR HASH REQUIREMENTS_FILE.
make_venv() {
  local dir=$1 want=$2 requirements=$3 stamp python lock
  # Two checkouts setting up the same venv at once: the second waits for the first.
  exec {lock}>"$SHARED_CACHE_DIR/venv.lock"
  flock "$lock"
  stamp="$dir/.freshtrack-requirements"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    log "Python venv $dir is current"
  else
    python=$(find_python) || die "No Python >= 3.12 found. Install one (Debian 12: 'pyenv install 3.12', \
Debian 13: apt-get install python3-venv, Ubuntu 24.04: apt-get install python3.12-venv) and re-run."
    log "Creating venv $dir with $python ($("$python" --version))"
    "$python" -m venv --clear "$dir"
    "$dir/bin/pip" install -q --upgrade pip
    "$dir/bin/pip" install -q -r "$requirements"
    echo "$want" > "$stamp"
  fi
  exec {lock}>&-
}

# The controller virtualenv. Unless FRESHTRACK_VENV names one (or the checkout has a .venv
# directory of its own), it is the machine's shared venv for these requirements and .venv links to it.
ensure_venv() {
  local want
  want=$(cat "$REPO_ROOT/requirements.txt" "$REPO_ROOT/tests/requirements.txt" | sha256sum | cut -c1-16)
  if [ -z "${FRESHTRACK_VENV:-}" ] && { [ -L "$REPO_ROOT/.venv" ] || [ ! -e "$REPO_ROOT/.venv" ]; }; then
    VENV_DIR="$SHARED_CACHE_DIR/venv-$want"
    ln -sfn "$VENV_DIR" "$REPO_ROOT/.venv"
  fi
  make_venv "$VENV_DIR" "$want" "$REPO_ROOT/tests/requirements.txt"
  export PATH="$VENV_DIR/bin:$PATH"
  export ANSIBLE_CONFIG="$REPO_ROOT/ansible.cfg"
  # The checkout's collection first: a freshtrack.deploy installed into ~/.ansible/collections (by
  # a user, or by a tool) would otherwise shadow the code under test (ansible.cfg lists ./collections
  # last, so that ansible-galaxy never installs into the checkout).
  export ANSIBLE_COLLECTIONS_PATH="$REPO_ROOT/collections:$HOME/.ansible/collections:/usr/share/ansible/collections"
}

# A Docker engine: an existing one is used as it is; otherwise Debian's docker.io is installed and
# dockerd started in the background with its default configuration (no daemon.json is written).
ensure_engine() {
  if docker info >/dev/null 2>&1; then
    log "Docker engine is running ($(docker version -f '{{.Server.Version}}'))"
  else
    command -v dockerd >/dev/null 2>&1 || { log "Installing Docker engine (docker.io)"; apt_install docker.io; }
    log "Starting dockerd (log: $CACHE_DIR/dockerd.log)"
    # In a subshell, so the engine is no job of the suite: the suite's `wait` for its lanes and its
    # clean-up of its own processes at exit leave the engine running.
    ( as_root setsid dockerd >>"$CACHE_DIR/dockerd.log" 2>&1 < /dev/null & )
    local i
    for i in $(seq 1 60); do
      docker info >/dev/null 2>&1 && break
      sleep 1
    done
    docker info >/dev/null 2>&1 || die "dockerd did not come up; see $CACHE_DIR/dockerd.log"
  fi
  ensure_compose_v2
}

# Compose v2: Debian 12 only ships the Python v1; Debian 13's docker-compose .deb is the Go v2
# plugin and runs on Debian 12. Fetch it without touching the system's apt sources.
ensure_compose_v2() {
  if docker compose version >/dev/null 2>&1; then
    log "Compose: $(docker compose version --short)"
    return 0
  fi
  apt_install ca-certificates
  local work="$CACHE_DIR/apt-trixie"
  mkdir -p "$work/lists/partial" "$work/debs"
  echo "deb http://deb.debian.org/debian trixie main" > "$work/sources.list"
  local opts=(-oDir::Etc::SourceList="$work/sources.list" -oDir::Etc::SourceParts=/dev/null
              -oDir::State::Lists="$work/lists" -oAPT::Get::List-Cleanup=0 -oAPT::Sandbox::User=root)
  log "Fetching compose v2 (Debian 13 docker-compose)"
  as_root apt-get "${opts[@]}" update -qq
  (cd "$work/debs" && as_root apt-get "${opts[@]}" download docker-compose >/dev/null)
  as_root dpkg -i "$work"/debs/docker-compose_*.deb >/dev/null
  docker compose version >/dev/null 2>&1 || die "docker compose v2 is still missing after installing it"
  log "Compose: $(docker compose version --short)"
}
