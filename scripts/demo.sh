#!/usr/bin/env bash
# The main job on the embedded default.
#  1. Generate the sample site: libvirt test-driver hosts with real disk images on two dir
#     storage volumes, a pass-through block disk and an rbd network disk.
#  2. Discovery on one host, no server needed: every VM down to its storage system, and upward.
#  3. The running system: stratad plus one strata-agent per host; the CLI over the REST API.
#  4. Backup and restore: a backup with progress, the catalog, a damaged disk restored in place
#     (checksums compared), a VM restored as a new VM that the server learns of through events,
#     and the catalog rebuilt from the storage alone.
# Usage: scripts/demo.sh [--keep]   (--keep leaves stratad and the agents running)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRATA_BIN:-$PWD/build/default/bin}
SITE=${STRATA_SITE:-$PWD/site}
KEEP=0
[ "${1:-}" = "--keep" ] && KEEP=1

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

# What an earlier run of the demo left on the site's volumes (snapshots, restored disks).
rm -rf "$SITE"/volumes/*/.strata-snapshots "$SITE/state"
rm -f "$SITE"/volumes/*/web01-restored-*

step "Generating the sample site in $SITE"
show "$BIN/strata-agent" sample-site "$SITE"

step "Discovery on host-a, no server involved: every VM down to its storage system"
show "$BIN/strata-agent" discover --config "$SITE/agents/host-a.toml" --to storage_system

step "The full chain of one VM, every layer"
show "$BIN/strata-agent" discover --config "$SITE/agents/host-a.toml" --vm web01

step "Upward: the VMs of host-b that depend on storage volume 'gold'"
show "$BIN/strata-agent" discover --config "$SITE/agents/host-b.toml" \
  --select 'type=storage_volume name=gold' --up --to vm

if [ ! -x "$BIN/stratad" ] || [ ! -x "$BIN/strata" ]; then
  step "Done (stratad or strata not built)"
  exit 0
fi

RUN="$SITE/run"
mkdir -p "$RUN"
PIDS=()
cleanup() {
  if [ "$KEEP" = 0 ]; then
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
  fi
}
trap cleanup EXIT

# Waits for a process's "listening" line in its log and prints it.
wait_line() {
  local log=$1 pattern=$2
  for _ in $(seq 1 100); do
    if grep -m1 "$pattern" "$log" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "demo: no '$pattern' in $log:" >&2
  cat "$log" >&2
  return 1
}

step "Starting stratad (catalog in $RUN/stratad.db)"
rm -f "$RUN"/stratad.db*
"$BIN/stratad" --db "$RUN/stratad.db" --grpc-listen 127.0.0.1:0 \
  --http-listen "127.0.0.1:${STRATA_HTTP_PORT:-0}" >"$RUN/stratad.log" 2>&1 &
PIDS+=($!)
line=$(wait_line "$RUN/stratad.log" 'stratad: listening')
echo "$line"
GRPC=$(sed -E 's/.*grpc=([^ ]+).*/\1/' <<<"$line")
HTTP=$(sed -E 's/.*http=([^ ]+).*/\1/' <<<"$line")
export STRATA_SERVER="http://$HTTP"
# The web console, when it was built (stratad finds it beside its bin/ directory).
CONSOLE=""
if [ -f "$BIN/../share/strata/web/index.html" ]; then CONSOLE="http://$HTTP/"; fi
if [ -n "$CONSOLE" ]; then echo "Web console: $CONSOLE"; fi

# A port nothing listens on (bash's /dev/tcp: a refused connection means free).
free_port() {
  local port
  for _ in $(seq 1 50); do
    port=$((20000 + RANDOM % 40000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then echo "$port"; return; fi
  done
  echo "demo: no free port found" >&2
  return 1
}

step "Starting one strata-agent per host: host-a and host-b form cluster 'prod', host-c stands alone"
PORT_A=$(free_port)
PORT_B=$(free_port)
declare -A LISTEN=([host-a]="127.0.0.1:$PORT_A" [host-b]="127.0.0.1:$PORT_B" [host-c]="127.0.0.1:0")
for host in host-a host-b; do
  # Root keys go before the first [[storage...]] table.
  sed -i -e '/^cluster/d' "$SITE/agents/$host.toml"
  sed -i -e "1i cluster = 'prod'\ncluster_members = ['host-a=127.0.0.1:$PORT_A', 'host-b=127.0.0.1:$PORT_B']" \
    "$SITE/agents/$host.toml"
done
echo "\$ head -n 2 $SITE/agents/host-a.toml"
head -n 2 "$SITE/agents/host-a.toml"
for config in "$SITE"/agents/*.toml; do
  host=$(basename "$config" .toml)
  "$BIN/strata-agent" run --config "$config" --listen "${LISTEN[$host]}" --server "$GRPC" \
    >"$RUN/agent-$host.log" 2>&1 &
  PIDS+=($!)
  wait_line "$RUN/agent-$host.log" 'strata-agent: listening'
done

# Registration and the first discovery of each host take a moment.
for _ in $(seq 1 100); do
  n=$("$BIN/strata" hosts --json 2>/dev/null | grep -o '"state": *"reachable"' | wc -l || true)
  [ "$n" -ge 3 ] && break
  sleep 0.1
done

step "strata hosts"
show "$BIN/strata" hosts
step "strata vms"
show "$BIN/strata" vms
step "strata tree db02   (the VM with an rbd network disk)"
show "$BIN/strata" tree db02
step "strata find: which VMs, on any host, depend on storage volume 'gold'"
show "$BIN/strata" find 'type=storage_volume name=gold' --up --to vm

step "Backup: three VMs on two hosts, paused for their snapshots, checksums recorded"
show "$BIN/strata" backup web01 mail01 web03 --consistency pause --verify --name demo-nightly
step "Cluster backup: every VM of cluster 'prod' in one request, sent to one member"
echo "(the member coordinates: each VM's owner takes part, the shared volumes are snapshotted once,"
echo " and the answer comes back as one, per VM and node; db01's pass-through LUN and db02's rbd"
echo " disk cannot be snapshotted here and fail with the reason)"
show "$BIN/strata" backup --cluster prod --name demo-cluster || true
echo "\$ ls $SITE/volumes/gold/.strata-snapshots/"
ls "$SITE/volumes/gold/.strata-snapshots/"
step "A VM whose rbd disk no storage plug-in here can snapshot fails clearly (the others would not)"
show "$BIN/strata" backup db02 --name demo-db02 || true
step "The catalog"
show "$BIN/strata" backups
show "$BIN/strata" backups show demo-nightly

DISK="$SITE/volumes/silver/mail01.qcow2"
step "Damage mail01's disk, then restore it in place from the catalog"
sum_before=$(sha256sum "$DISK" | cut -d' ' -f1)
echo "sha256 before:      $sum_before"
printf 'ransomware was here' | dd of="$DISK" conv=notrunc status=none
echo "sha256 damaged:     $(sha256sum "$DISK" | cut -d' ' -f1)"
show "$BIN/strata" restore demo-nightly --vm mail01 --verify --yes
sum_after=$(sha256sum "$DISK" | cut -d' ' -f1)
echo "sha256 restored:    $sum_after"
if [ "$sum_before" = "$sum_after" ]; then echo "content matches the backup"; else
  echo "demo: restored content differs" >&2; exit 1; fi

step "Restore web01 as a new VM: it reaches the server through the agent's events"
show "$BIN/strata" restore demo-nightly --vm web01 --as web01-restored
for _ in $(seq 1 100); do
  "$BIN/strata" vms --name web01-restored 2>/dev/null | grep -q web01-restored && break
  sleep 0.1
done
show "$BIN/strata" vms --name 'web01*'
show "$BIN/strata" tree web01-restored
step "strata events --host host-a: the newest events, one consolidated notification per change"
echo "\$ $BIN/strata events --host host-a | tail -n 3"
"$BIN/strata" events --host host-a | tail -n 3

step "The catalog can be rebuilt from the storage alone (manifests beside every snapshot)"
rm -f "$RUN"/rebuilt.db*
show "$BIN/stratad" catalog rebuild --from-storage "$SITE/volumes" --db "$RUN/rebuilt.db"

step "The REST API listens on $STRATA_SERVER  (try: curl $STRATA_SERVER/api/v1/hosts)"
if [ -n "$CONSOLE" ]; then echo "Web console: $CONSOLE"; fi
if [ "$KEEP" = 1 ]; then
  echo "Left running (pids ${PIDS[*]}). Stop with: kill ${PIDS[*]}"
  echo "export STRATA_SERVER=$STRATA_SERVER   # then: $BIN/strata hosts"
else
  echo "Stopping stratad and the agents (run 'scripts/demo.sh --keep' to leave them running)."
fi
