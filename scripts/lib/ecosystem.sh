# The checks Galaxy, Automation Hub and the Ansible docs run on a collection, run here offline on
# what ships: the tarball the collection tier built and its installed copy
# ($CACHE_DIR/collection). Sourced by scripts/test after common.sh.
#
#   ecosystem_checks     galaxy-importer, antsibull-docs, antsibull-changelog, ansible-test sanity,
#                        ansible-builder introspect; each step's output in .cache/ecosystem/<step>.log

ECOSYSTEM_DIR="$CACHE_DIR/ecosystem"
INSTALLED_COLLECTION="$CACHE_DIR/collection/installed/ansible_collections/freshtrack/deploy"

# One step: its output kept in a log, shown when it fails; its time in the suite's table.
ecosystem_step() {
  local name=$1 t0=$SECONDS rc=0
  shift
  "$@" >"$ECOSYSTEM_DIR/$name.log" 2>&1 || rc=$?
  record_timing setup "ecosystem: $name" "" "$([ $rc -eq 0 ] && echo passed || echo "FAILED(rc=$rc)")" $((SECONDS - t0))
  if [ $rc -ne 0 ]; then
    warn "$name failed: $ECOSYSTEM_DIR/$name.log follows"
    tail -n 60 "$ECOSYSTEM_DIR/$name.log" | sed "s/^/[$name] /" >&2
  else
    log "$name passed in $((SECONDS - t0)) s"
  fi
  return $rc
}

# galaxy-importer as Galaxy runs it on an upload, with its ansible-test step off (that step runs
# ansible-test in a container image from a registry; ansible-test sanity runs below instead) and its
# ansible-lint step off (the suite's own lint tier runs the same ansible-lint at the production
# profile over these files and the rest of the repository: a minute of CPU saved).
galaxy_importer() {
  local config="$ECOSYSTEM_DIR/galaxy-importer.cfg" tarball
  tarball=$(ls "$CACHE_DIR"/collection/freshtrack-deploy-*.tar.gz)
  printf '[galaxy-importer]\nRUN_ANSIBLE_TEST = False\nRUN_ANSIBLE_LINT = False\nLOG_LEVEL_MAIN = INFO\n' > "$config"
  (cd "$ECOSYSTEM_DIR" && GALAXY_IMPORTER_CONFIG="$config" python3 -m galaxy_importer.main "$tarball")
  # It exits 0 with errors in its result too: none may be there.
  python3 - "$ECOSYSTEM_DIR/importer_result.json" <<'PY'
import json, sys
result = json.load(open(sys.argv[1]))
roles = [c["name"] for c in result.get("contents", []) if c.get("content_type") == "role"]
errors = [m for m in result.get("import_log", []) if "error" in str(m).lower()]
print(f"imported {result['metadata']['namespace']}.{result['metadata']['name']} {result['metadata']['version']}: "
      f"{len(result.get('contents', []))} contents, {len(roles)} roles, {len(result.get('docs_blob', {}).get('contents', []))} documented")
sys.exit(1 if errors else 0)
PY
}

antsibull_docs_lint() {
  antsibull-docs lint-collection-docs --plugin-docs "$INSTALLED_COLLECTION"
}

antsibull_changelog_lint() {
  (cd "$REPO_ROOT" && antsibull-changelog lint)
}

# ansible-test of the controller's ansible-core, in the installed collection (it must sit under
# ansible_collections/<namespace>/<name>). Its venvs get pip from the offline bootstrap script.
ansible_test_sanity() {
  local pip_version python_version
  pip_version=$(python3 - <<'PY'
import pathlib, re, ansible_test
source = (pathlib.Path(ansible_test.__file__).parent / "_internal" / "python_requirements.py").read_text()
print(re.search(r"pip='([0-9.]+)'", source).group(1))
PY
)
  mkdir -p ~/.ansible/test/cache
  cp "$REPO_ROOT/scripts/lib/get_pip_offline.py" ~/.ansible/test/cache/get_pip_"${pip_version//./_}".py
  python_version=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  # Outside this checkout: inside a git work tree ansible-test only sees the files git tracks, and
  # the installed copy (under .cache) is not one of them.
  local root
  root=$(mktemp -d /tmp/freshtrack-sanity.XXXXXX)
  mkdir -p "$root/ansible_collections/freshtrack"
  cp -a "$INSTALLED_COLLECTION" "$root/ansible_collections/freshtrack/deploy"
  local rc=0
  (cd "$root/ansible_collections/freshtrack/deploy" && ansible-test sanity --venv --python "$python_version" --color no) || rc=$?
  rm -rf "$root"
  return $rc
}

# ansible-builder reads what the collection needs in an execution environment: only its own
# dependencies (meta/execution-environment.yml), never the controller's pins of requirements.txt.
ansible_builder_introspect() {
  local listed
  listed=$(ansible-builder introspect --sanitize "$CACHE_DIR/collection/installed")
  printf '%s\n' "$listed"
  printf '%s\n' "$listed" | python3 -c '
import sys
listed = sys.stdin.read()
wanted = [line.split("#")[0].strip() for line in open(sys.argv[1]) if line.split("#")[0].strip()]
missing = [w for w in wanted if w.split(">")[0].split("=")[0] not in listed]
pinned = [p for p in ("ansible==", "ansible-core==", "docker==", "jmespath==") if p in listed]
print("missing from introspect:", missing, "controller pins in it:", pinned)
sys.exit(1 if missing or pinned else 0)
' "$REPO_ROOT/meta/ee-requirements.txt"
}

ecosystem_checks() {
  local failed=0
  # What ships is checked, not the checkout (ensure_venv puts the checkout first).
  unset ANSIBLE_COLLECTIONS_PATH
  mkdir -p "$ECOSYSTEM_DIR"
  ecosystem_step galaxy-importer galaxy_importer || failed=1
  ecosystem_step antsibull-docs antsibull_docs_lint || failed=1
  ecosystem_step antsibull-changelog antsibull_changelog_lint || failed=1
  ecosystem_step ansible-test-sanity ansible_test_sanity || failed=1
  ecosystem_step ansible-builder ansible_builder_introspect || failed=1
  return $failed
}
