#!/usr/bin/env bash
# The main job on the embedded default: generate the sample site (libvirt test-driver hosts with
# real disk images on two dir storage volumes), then show where every VM's data lives.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${STRATA_BIN:-build/default/apps}
SITE=${STRATA_SITE:-$PWD/site}
AGENT="$BIN/strata-agent/strata-agent"

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Generating the sample site in $SITE"
"$AGENT" sample-site "$SITE"

for config in "$SITE"/agents/*.toml; do
  host=$(basename "$config" .toml)
  step "$host: every VM down to its storage system  (strata-agent discover --config $config --to storage_system)"
  "$AGENT" discover --config "$config" --to storage_system
done

step "host-a: the full chain of one VM  (strata-agent discover --config .../host-a.toml --vm web01)"
"$AGENT" discover --config "$SITE/agents/host-a.toml" --vm web01

step "Upward: which VMs of host-b depend on storage volume 'gold'  (--select 'type=storage_volume name=gold' --up --to vm)"
"$AGENT" discover --config "$SITE/agents/host-b.toml" --select 'type=storage_volume name=gold' --up --to vm

step "The same question as JSON (first lines)"
"$AGENT" discover --config "$SITE/agents/host-b.toml" --select 'type=storage_volume name=gold' --up --to vm --json | head -n 20

step "Done. Try: $AGENT discover --help"
