-- Strata catalog, schema version 1.
-- Times are INTEGER microseconds since the Unix epoch (UTC). JSON columns hold JSON text.
-- schema_migrations itself is created by the migration runner, not here.

CREATE TABLE clusters (
  name TEXT PRIMARY KEY NOT NULL
);

CREATE TABLE hosts (
  id             TEXT PRIMARY KEY NOT NULL,
  cluster        TEXT REFERENCES clusters (name),
  endpoint       TEXT NOT NULL,
  plugins        TEXT NOT NULL DEFAULT '[]' CHECK (json_valid(plugins)),
  state          TEXT NOT NULL CHECK (state IN ('reachable', 'unreachable')),
  last_heartbeat INTEGER NOT NULL,
  registered_at  INTEGER NOT NULL
);
CREATE INDEX hosts_by_cluster ON hosts (cluster);

CREATE TABLE vms (
  uuid       TEXT PRIMARY KEY NOT NULL,
  name       TEXT NOT NULL,
  host       TEXT NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
  state      TEXT NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX vms_by_host ON vms (host, name);
CREATE INDEX vms_by_name ON vms (name);

-- The latest resource graph of each host; older versions are not kept.
CREATE TABLE host_graphs (
  host_id    TEXT PRIMARY KEY NOT NULL REFERENCES hosts (id) ON DELETE CASCADE,
  version    INTEGER NOT NULL CHECK (version >= 0),
  graph      TEXT NOT NULL CHECK (json_valid(graph)),
  updated_at INTEGER NOT NULL
);

-- AUTOINCREMENT: a seq is never reused, even after the newest events are deleted.
CREATE TABLE events (
  seq     INTEGER PRIMARY KEY AUTOINCREMENT,
  host    TEXT NOT NULL,
  vm_uuid TEXT NOT NULL DEFAULT '',
  kind    TEXT NOT NULL CHECK (kind IN ('added', 'removed', 'modified', 'cluster')),
  time    INTEGER NOT NULL,
  detail  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
);
CREATE INDEX events_by_host ON events (host, seq);
CREATE INDEX events_by_vm ON events (vm_uuid, seq);

CREATE TABLE backups (
  id          TEXT PRIMARY KEY NOT NULL,
  name        TEXT NOT NULL UNIQUE,
  requester   TEXT NOT NULL,
  consistency TEXT NOT NULL CHECK (consistency IN ('crash', 'pause', 'quiesce')),
  state       TEXT NOT NULL CHECK (state IN ('running', 'succeeded', 'failed')),
  started_at  INTEGER NOT NULL,
  finished_at INTEGER,
  policy      TEXT NOT NULL DEFAULT '',
  metadata    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(metadata))
);
CREATE INDEX backups_by_start ON backups (started_at);
CREATE INDEX backups_by_state ON backups (state, started_at);

-- backup_started_at copies backups.started_at (which never changes) so that the newest restore
-- point of a VM is one reverse walk of backups_items_by_vm.
CREATE TABLE backup_items (
  backup_id         TEXT NOT NULL REFERENCES backups (id) ON DELETE CASCADE,
  vm_uuid           TEXT NOT NULL,
  vm_name           TEXT NOT NULL,
  disk_target       TEXT NOT NULL,
  source_path       TEXT NOT NULL,
  storage_volume    TEXT NOT NULL,
  snapshot_id       TEXT NOT NULL,
  path_in_snapshot  TEXT NOT NULL,
  size_bytes        INTEGER NOT NULL CHECK (size_bytes >= 0),
  checksum          TEXT NOT NULL DEFAULT '',
  backup_started_at INTEGER NOT NULL,
  UNIQUE (backup_id, vm_uuid, disk_target)
);
CREATE INDEX backup_items_by_vm ON backup_items (vm_uuid, backup_started_at, backup_id);

CREATE TABLE jobs (
  id         TEXT PRIMARY KEY NOT NULL,
  kind       TEXT NOT NULL,
  state      TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed')),
  progress   INTEGER NOT NULL CHECK (progress BETWEEN 0 AND 100),
  message    TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  detail     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
);
CREATE INDEX jobs_by_created ON jobs (created_at);
CREATE INDEX jobs_by_state ON jobs (state, created_at);
