#!/usr/bin/env bash
# The real-QEMU environment of the tests: virtlogd and the system libvirtd (qemu:///system).
#
#   scripts/qemu-env.sh start   start virtlogd and libvirtd unless they already run, then wait
#                               until `virsh -c qemu:///system version` answers (60 s at most)
#   scripts/qemu-env.sh stop    stop what `start` started (nothing it found running)
#   scripts/qemu-env.sh status  say what runs
#
# Debian 12 has no init scripts for them here (no systemd), so they are started by hand, as
# root. What `start` started is recorded in $STRATA_QEMU_ENV_STATE (default
# /run/strata-qemu-env-<hash of this checkout's path>), so that `stop` ends only those, by pid,
# and a `make test` in another checkout never stops the daemons this one started. Without root, or without the
# binaries, `start` says so and exits 0: the QEMU tests then skip visibly.
set -euo pipefail

CHECKOUT=$(cd "$(dirname "$0")/.." && pwd)
STATE=${STRATA_QEMU_ENV_STATE:-/run/strata-qemu-env-$(printf '%s' "$CHECKOUT" | md5sum | cut -c1-12)}
URI=qemu:///system

# The pid in a daemon's pid file, if that process is the daemon.
running_pid() {
  local name=$1 pidfile=/run/$1.pid pid
  [ -r "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$name" ] || return 1
  echo "$pid"
}

answers() { timeout 10 virsh -q -c "$URI" version >/dev/null 2>&1; }

start() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "qemu-env: not root: not starting libvirtd (the real-QEMU tests will skip)"
    return 0
  fi
  for bin in /usr/sbin/libvirtd /usr/sbin/virtlogd /usr/bin/qemu-system-x86_64; do
    if [ ! -x "$bin" ]; then
      echo "qemu-env: $bin is missing (scripts/install-deps.sh installs it)"
      return 0
    fi
  done
  mkdir -p "$STATE"
  if running_pid virtlogd >/dev/null; then
    echo "qemu-env: virtlogd already runs (pid $(running_pid virtlogd))"
  else
    /usr/sbin/virtlogd -d
    touch "$STATE/virtlogd"
    echo "qemu-env: started virtlogd"
  fi
  if running_pid libvirtd >/dev/null; then
    echo "qemu-env: libvirtd already runs (pid $(running_pid libvirtd))"
  else
    # A stale socket from a daemon that died makes clients wait for nothing.
    rm -f /run/libvirt/libvirt-sock /run/libvirt/libvirt-sock-ro /run/libvirt/libvirt-admin-sock
    /usr/sbin/libvirtd -d
    touch "$STATE/libvirtd"
    echo "qemu-env: started libvirtd"
  fi
  local deadline=$((SECONDS + 60))
  until answers; do
    if [ $SECONDS -ge $deadline ]; then
      echo "qemu-env: $URI does not answer after 60 s" >&2
      return 1
    fi
    sleep 0.2
  done
  echo "qemu-env: $URI answers ($(virsh -c "$URI" version 2>/dev/null | grep -i 'running hypervisor' || true))"
}

stop_one() {
  local name=$1 pid
  [ -e "$STATE/$name" ] || return 0
  rm -f "$STATE/$name"
  pid=$(running_pid "$name") || { echo "qemu-env: $name is gone already"; return 0; }
  kill -TERM "$pid"
  for _ in $(seq 100); do
    [ -d "/proc/$pid" ] || break
    sleep 0.1
  done
  echo "qemu-env: stopped $name (pid $pid)"
}

stop() {
  stop_one libvirtd
  stop_one virtlogd
}

status() {
  for name in virtlogd libvirtd; do
    if pid=$(running_pid "$name"); then echo "$name: running (pid $pid)"; else echo "$name: not running"; fi
  done
  if answers; then echo "$URI: answers"; else echo "$URI: does not answer"; fi
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
