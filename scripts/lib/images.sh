# shellcheck shell=bash
# The one mechanism for test images. Each image is a folder under tests/images/<name>/ holding
# one of
#   rootfs.env   - a Debian root file system made with debootstrap (SUITE=, INCLUDE=), imported;
#   converge.env - a systemd host of another test image (PARENT=) converged by a playbook of this
#                  collection (PLAYBOOK=, with the recipe's inventory.yml), a command run in it
#                  (FINISH=), then committed; INPUTS= names the paths whose content enters the hash;
#   Dockerfile   - built FROM another test image, named in a first line `# parent: <name>`
#                 and used through `ARG BASE_IMAGE` / `FROM ${BASE_IMAGE}`; with a
#                 pip-binaries.txt beside it, the scripts of those (pinned) wheels are put into
#                 the build context's bin/ (containers cannot reach PyPI, this machine can).
# An image is tagged freshtrack-test/<name>:<hash of its recipe and its parent's hash> and
# freshtrack-test/<name>:local; a build is skipped when the hash tag already exists.

IMAGES_DIR="$REPO_ROOT/tests/images"
# Stand-ins for the stack's upstream images (tests/vars/stand-ins.yml names them).
STAND_IN_IMAGES=(postgres15 pgbouncer redis caddy freshtrack-backend)
# Further versions of the stand-in backend, for the rolling restart tests (built, not archived).
BACKEND_VERSION_IMAGES=(freshtrack-backend-v2 freshtrack-backend-bad freshtrack-backend-crash)
# Services the tests need beside the stack (the S3 endpoint of the backup tests), built and archived.
TEST_SERVICE_IMAGES=(s3)
# Stand-ins for the monitoring images, on one shared layer (tests/images/monitoring): one archive.
MONITORING_STAND_IN_IMAGES=(prometheus alertmanager blackbox-exporter node-exporter postgres-exporter
                            redis-exporter pgbouncer-exporter)
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

image_parent() {
  local dockerfile="$IMAGES_DIR/$1/Dockerfile" converge="$IMAGES_DIR/$1/converge.env"
  [ ! -f "$dockerfile" ] || sed -n 's/^# parent: *//p' "$dockerfile" | head -n 1
  [ ! -f "$converge" ] || sed -n 's/^PARENT=//p' "$converge" | head -n 1
  return 0
}

# The content of the collection paths a converged image's recipe names (INPUTS=).
converge_inputs_hash() {
  local INPUTS=""
  # shellcheck disable=SC1090
  . "$IMAGES_DIR/$1/converge.env"
  # shellcheck disable=SC2086
  (cd "$REPO_ROOT" && find $INPUTS -type f -not -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
}

image_hash() {
  local name=$1 dir="$IMAGES_DIR/$1" parent
  [ -d "$dir" ] || die "no test image recipe $dir"
  parent=$(image_parent "$name")
  {
    (cd "$dir" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    # A root file system is also shaped by the function that builds it.
    [ ! -f "$dir/rootfs.env" ] || declare -f build_rootfs_image | sha256sum
    # A converged host also by the playbook, the roles it ran, and the function that runs them.
    [ ! -f "$dir/converge.env" ] || { converge_inputs_hash "$name"; declare -f build_converged_image | sha256sum; }
    [ -z "$parent" ] || image_hash "$parent"
  } | sha256sum | cut -c1-12
}

build_image() {
  local name=$1 hash tag parent dir="$IMAGES_DIR/$1"
  hash=$(image_hash "$name")
  tag="freshtrack-test/$name:$hash"
  if docker image inspect "$tag" >/dev/null 2>&1; then
    docker tag "$tag" "freshtrack-test/$name:local"
    log "image $name: cached ($tag)"
    return 0
  fi
  local t0=$SECONDS
  if [ -f "$dir/rootfs.env" ]; then
    build_rootfs_image "$name" "$tag"
  elif [ -f "$dir/converge.env" ]; then
    build_converged_image "$name" "$tag"
  else
    parent=$(image_parent "$name")
    [ -n "$parent" ] || die "$dir/Dockerfile lacks a '# parent: <image>' line"
    build_image "$parent"
    log "image $name: docker build FROM freshtrack-test/$parent:local"
    local context="$dir"
    if [ -f "$dir/pip-binaries.txt" ]; then
      context=$(mktemp -d "$CACHE_DIR/context-$name.XXXXXX")
      cp -a "$dir/." "$context/"
      wheel_scripts "$dir/pip-binaries.txt" "$context/bin"
    fi
    docker build -q --build-arg "BASE_IMAGE=freshtrack-test/$parent:local" \
      --label "org.freshtrack.recipe-hash=$hash" -t "$tag" "$context" >/dev/null
    [ "$context" = "$dir" ] || rm -rf "$context"
  fi
  docker tag "$tag" "freshtrack-test/$name:local"
  log "image $name: built $tag in $((SECONDS - t0)) s"
}

# The scripts (binaries) of pinned wheels, downloaded once into .cache/wheels.
wheel_scripts() {
  local requirements=$1 out=$2 wheel
  mkdir -p "$CACHE_DIR/wheels" "$out"
  python3 -m pip --version >/dev/null 2>&1 || die "pip is needed to fetch $requirements (run ensure_venv first)"
  python3 -m pip download -q --no-deps --only-binary=:all: -r "$requirements" -d "$CACHE_DIR/wheels"
  grep -v '^ *#' "$requirements" | sed 's/==/-/;s/-/_/' | while read -r stem; do
    [ -n "$stem" ] || continue
    for wheel in "$CACHE_DIR/wheels/${stem}"-*.whl; do
      python3 - "$wheel" "$out" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    for name in wheel.namelist():
        if ".data/scripts/" in name:
            target = os.path.join(sys.argv[2], os.path.basename(name))
            with open(target, "wb") as handle:
                handle.write(wheel.read(name))
            os.chmod(target, 0o755)
PY
    done
  done
}

build_rootfs_image() {
  local name=$1 tag=$2 SUITE="" INCLUDE="" root
  # shellcheck disable=SC1090
  . "$IMAGES_DIR/$name/rootfs.env"
  [ -n "$SUITE" ] || die "$name/rootfs.env must set SUITE"
  command -v debootstrap >/dev/null 2>&1 || apt_install debootstrap
  as_root rm -rf "$CACHE_DIR/rootfs-$name".*   # leftovers of an interrupted build
  root=$(mktemp -d "$CACHE_DIR/rootfs-$name.XXXXXX")
  log "image $name: debootstrap $SUITE (about a minute)"
  as_root debootstrap --variant=minbase ${INCLUDE:+--include="$INCLUDE"} "$SUITE" "$root" \
    "$DEBIAN_MIRROR" >"$CACHE_DIR/debootstrap-$name.log" 2>&1 ||
    die "debootstrap failed; see $CACHE_DIR/debootstrap-$name.log"
  if [ -d "$IMAGES_DIR/$name/overlay" ]; then
    as_root cp -a "$IMAGES_DIR/$name/overlay/." "$root/"
  fi
  # A small image: no downloaded packages or lists left behind.
  # and the package lists marked as never updated, as on a host that has not run apt yet.
  as_root rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  as_root touch -d @0 "$root"/var/lib/apt/lists
  as_root tar -C "$root" -c . | docker import \
    --change 'CMD ["/lib/systemd/systemd"]' \
    --change "LABEL org.freshtrack.recipe-hash=${tag##*:}" - "$tag" >/dev/null
  as_root rm -rf "$root"
}

# A host container of the parent image, converged by the recipe's playbook over the Docker API, then
# committed. /var/lib/docker is a tmpfs (as on the Molecule platforms): the engine's state is not
# part of the image, only what the roles installed and configured.
build_converged_image() {
  local name=$1 tag=$2 PARENT="" PLAYBOOK="" FINISH="" builder="freshtrack-build-$1" log="$CACHE_DIR/converge-$1.log"
  # shellcheck disable=SC1090
  . "$IMAGES_DIR/$name/converge.env"
  build_image "$PARENT"
  log "image $name: $PLAYBOOK on a $PARENT host (about two minutes; log: $log)"
  start_systemd_container "$builder" "freshtrack-test/$PARENT:local" --tmpfs "$DOCKER_DATA_TMPFS"
  unmask_proc "$builder"
  wait_for_boot "$builder"
  if ! ANSIBLE_CONFIG="$REPO_ROOT/ansible.cfg" ansible-playbook -i "$IMAGES_DIR/$name/inventory.yml" \
       -e "ansible_host=$builder" "$REPO_ROOT/$PLAYBOOK" >"$log" 2>&1; then
    docker rm -f "$builder" >/dev/null 2>&1 || true
    die "image $name: $PLAYBOOK failed; see $log"
  fi
  [ -z "$FINISH" ] || docker exec "$builder" sh -c "$FINISH" >>"$log" 2>&1 ||
    { docker rm -f "$builder" >/dev/null 2>&1; die "image $name: '$FINISH' failed; see $log"; }
  # systemd halts on SIGRTMIN+3: services stop cleanly before the commit.
  docker kill -s RTMIN+3 "$builder" >/dev/null
  timeout 60 docker wait "$builder" >/dev/null || true
  docker commit --change 'CMD ["/lib/systemd/systemd"]' \
    --change "LABEL org.freshtrack.recipe-hash=${tag##*:}" "$builder" "$tag" >/dev/null
  docker rm -f "$builder" >/dev/null
}

# Where a host container's engine keeps its data: a tmpfs, so the inner engine runs overlay2
# (on the container's own overlay root it falls back to vfs, which copies every layer for every
# container) and removing the host frees it at once. The Molecule platforms say the same.
DOCKER_DATA_TMPFS="/var/lib/docker:rw,exec,suid,dev"

# A Debian host container with systemd as PID 1: start_systemd_container NAME IMAGE [docker run
# options]. The flags are what systemd needs in a container here (../shared/ENVIRONMENT.md); the
# Molecule platforms use the same ones (.config/molecule/config.yml). SYS_PTRACE lets root enter
# non-root containers' namespaces (docker exec, healthchecks), as on a VM.
start_systemd_container() {
  local name=$1 image=$2; shift 2
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run -d --name "$name" --hostname "$name" \
    --cap-add SYS_ADMIN --cap-add NET_ADMIN --cap-add SYS_PTRACE --security-opt seccomp=unconfined \
    --cgroupns=host -v /sys/fs/cgroup:/sys/fs/cgroup:rw --tmpfs /run --tmpfs /run/lock --tmpfs /tmp \
    "$@" "$image" /lib/systemd/systemd >/dev/null
}

# /proc and /sys as on a VM: Docker's masks removed and /proc/sys writable (the engine's per-network
# settings). The kernel lets an engine mount /proc and /sys inside a remapped user namespace only
# where no path of theirs is covered (mount_too_revealing); test hosts only, never a real one.
unmask_proc() {
  docker exec "$1" bash -c "set -o pipefail; grep -oE ' /(proc/[^ ]*|sys/firmware)' /proc/self/mounts | sort -r | xargs -r -n1 umount -l"
}

# systemd in a fresh container needs a moment before its bus answers.
wait_for_boot() {
  local state="" i
  for i in $(seq 1 60); do
    state=$(docker exec "$1" systemctl is-system-running 2>/dev/null || true)
    case $state in running|degraded) break ;; esac
    sleep 1
  done
  log "$1 booted: systemd $state"
}

build_images() {
  local name
  for name in "$@"; do build_image "$name"; done
}

# `docker save` archives of test images for hosts that cannot pull them (the images role loads
# them): <shared cache>/images/<name>.tar, rewritten only when the image's recipe hash changed.
ARCHIVES_DIR="$SHARED_CACHE_DIR/images"
export FRESHTRACK_IMAGE_ARCHIVES="$ARCHIVES_DIR"
save_image_archives() {
  local name hash
  mkdir -p "$ARCHIVES_DIR"
  for name in "$@"; do
    hash=$(image_hash "$name")
    if [ -f "$ARCHIVES_DIR/$name.tar" ] && [ "$(cat "$ARCHIVES_DIR/$name.hash" 2>/dev/null)" = "$hash" ]; then
      continue
    fi
    docker save -o "$ARCHIVES_DIR/$name.tar.part" "freshtrack-test/$name:local"
    mv "$ARCHIVES_DIR/$name.tar.part" "$ARCHIVES_DIR/$name.tar"
    echo "$hash" > "$ARCHIVES_DIR/$name.hash"
    log "image $name: archive $ARCHIVES_DIR/$name.tar ($(du -h "$ARCHIVES_DIR/$name.tar" | cut -f1))"
  done
}

# Several images in one archive, $ARCHIVES_DIR/<group>.tar: their shared layers are stored once.
save_image_group_archive() {
  local group=$1 name hash tags=()
  shift
  hash=$(for name in "$@"; do image_hash "$name"; done | sha256sum | cut -c1-12)
  for name in "$@"; do tags+=("freshtrack-test/$name:local"); done
  mkdir -p "$ARCHIVES_DIR"
  if [ -f "$ARCHIVES_DIR/$group.tar" ] && [ "$(cat "$ARCHIVES_DIR/$group.hash" 2>/dev/null)" = "$hash" ]; then
    return 0
  fi
  docker save -o "$ARCHIVES_DIR/$group.tar.part" "${tags[@]}"
  mv "$ARCHIVES_DIR/$group.tar.part" "$ARCHIVES_DIR/$group.tar"
  echo "$hash" > "$ARCHIVES_DIR/$group.hash"
  log "images $*: archive $ARCHIVES_DIR/$group.tar ($(du -h "$ARCHIVES_DIR/$group.tar" | cut -f1))"
}

# Stand-in images built and saved as archives, for hosts that load them.
ensure_stand_ins() {
  build_images "${STAND_IN_IMAGES[@]}" "${BACKEND_VERSION_IMAGES[@]}" "${TEST_SERVICE_IMAGES[@]}" \
    "${MONITORING_STAND_IN_IMAGES[@]}"
  save_image_archives "${STAND_IN_IMAGES[@]}" "${TEST_SERVICE_IMAGES[@]}"
  save_image_group_archive monitoring "${MONITORING_STAND_IN_IMAGES[@]}"
}
