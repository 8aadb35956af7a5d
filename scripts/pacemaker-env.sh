#!/usr/bin/env bash
# A real one-node Pacemaker cluster for the tests of the `pacemaker` cluster membership
# (tests/integration/cluster_membership_test.cc): corosync with a private configuration, then
# pacemakerd, so that `crm_mon --output-as=xml` answers as on a cluster node.
#
#   scripts/pacemaker-env.sh start   start corosync and pacemakerd unless a cluster runs, then
#                                    wait until the cluster has elected its DC (90 s at most)
#   scripts/pacemaker-env.sh stop    stop what `start` started (nothing it found running)
#   scripts/pacemaker-env.sh status  say what runs
#
# The cluster is named "strata-test" and its one corosync node "host-a" (127.0.0.1), the host id
# of the sample site's first agent; the test adds and removes remote nodes for the others. The
# tests touch only a cluster of that name and skip, saying why, on any other. Pacemaker keeps its
# configuration in /var/lib/pacemaker/cib: `start` refuses to run over another cluster's. What
# `start` started is recorded in $STRATA_PACEMAKER_ENV_STATE (default
# /run/strata-pacemaker-env-<hash of this checkout's path>), with the corosync configuration and
# both logs. Without root, or without the binaries, `start` says so and exits 0: the tests skip.
set -euo pipefail

CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${STRATA_PACEMAKER_ENV_STATE:-/run/strata-pacemaker-env-$(printf '%s' "$CHECKOUT" | md5sum | cut -c1-12)}
CLUSTER=strata-test
CIB=/var/lib/pacemaker/cib/cib.xml

# A live process named $1 (zombies, which nobody may reap in a container, do not count).
live_pid() {
  local pid
  for pid in $(pgrep -x "$1"); do
    if [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ]; then
      echo "$pid"
      return 0
    fi
  done
  return 1
}
running() { live_pid "$1" >/dev/null; }

# The cluster has a DC: it answers crm_mon with its nodes.
elected() { timeout 10 crm_mon --output-as=xml -1 2>/dev/null | grep -q '<current_dc present="true"'; }

start() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "pacemaker-env: not root: not starting a cluster (the Pacemaker tests will skip)"
    return 0
  fi
  for bin in /usr/sbin/corosync /usr/sbin/pacemakerd /usr/sbin/crm_mon /usr/sbin/cibadmin; do
    if [ ! -x "$bin" ]; then
      echo "pacemaker-env: $bin is missing (scripts/install-deps.sh installs it)"
      return 0
    fi
  done
  if running corosync || running pacemakerd; then
    echo "pacemaker-env: a cluster runs already (corosync or pacemakerd); not starting one"
    return 0
  fi
  if [ -s "$CIB" ] && ! grep -q "name=\"cluster-name\" value=\"$CLUSTER\"" "$CIB"; then
    echo "pacemaker-env: $CIB holds another cluster's configuration; not starting a test" \
      "cluster over it (the Pacemaker tests will skip)"
    return 0
  fi
  mkdir -p "$STATE"
  cat >"$STATE/corosync.conf" <<EOF
totem {
  version: 2
  cluster_name: $CLUSTER
  crypto_cipher: none
  crypto_hash: none
}
logging {
  to_stderr: no
  to_syslog: no
  to_logfile: yes
  logfile: $STATE/corosync.log
}
quorum {
  provider: corosync_votequorum
}
nodelist {
  node {
    name: host-a
    nodeid: 1
    ring0_addr: 127.0.0.1
  }
}
EOF
  /usr/sbin/corosync -c "$STATE/corosync.conf"
  touch "$STATE/corosync"
  PCMK_logfile="$STATE/pacemaker.log" setsid /usr/sbin/pacemakerd \
    >"$STATE/pacemakerd.out" 2>&1 </dev/null &
  touch "$STATE/pacemakerd"
  echo "pacemaker-env: started corosync and pacemakerd (cluster $CLUSTER)"
  # A new cluster waits dc-deadtime (20 s by default) for other nodes before it elects its DC.
  local deadline=$((SECONDS + 90))
  until elected; do
    if [ $SECONDS -ge $deadline ]; then
      echo "pacemaker-env: no DC elected after 90 s (logs in $STATE)" >&2
      return 1
    fi
    sleep 0.5
  done
  # No fencing devices here; without this the cluster would refuse to manage remote nodes.
  crm_attribute --type crm_config --name stonith-enabled --update false
  crm_attribute --type crm_config --name dc-deadtime --update 2s
  echo "pacemaker-env: cluster $CLUSTER answers crm_mon after $SECONDS s"
}

stop_one() {
  local name=$1 pid
  [ -e "$STATE/$name" ] || return 0
  rm -f "$STATE/$name"
  if ! pid=$(live_pid "$name"); then
    echo "pacemaker-env: $name is gone already"
    return 0
  fi
  case $name in
    pacemakerd) /usr/sbin/pacemakerd --shutdown >/dev/null 2>&1 || kill -TERM "$pid" ;;
    corosync) corosync-cfgtool -H >/dev/null 2>&1 || kill -TERM "$pid" ;;
  esac
  for _ in $(seq 300); do
    running "$name" || break
    sleep 0.1
  done
  echo "pacemaker-env: stopped $name (pid $pid)"
}

stop() {
  stop_one pacemakerd
  stop_one corosync
}

status() {
  for name in corosync pacemakerd; do
    if running "$name"; then echo "$name: running (pid $(live_pid "$name"))"; else echo "$name: not running"; fi
  done
  if elected; then echo "crm_mon: answers"; else echo "crm_mon: no elected cluster"; fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
