-- Strata catalog, schema version 2: retention policies (strata/server/retention.h).
-- A backup names its policy in backups.policy (text, no foreign key): deleting a policy leaves
-- its backups in place, outside every prune.

CREATE TABLE policies (
  name         TEXT PRIMARY KEY NOT NULL,
  keep_last    INTEGER NOT NULL DEFAULT 0 CHECK (keep_last >= 0),
  keep_hourly  INTEGER NOT NULL DEFAULT 0 CHECK (keep_hourly >= 0),
  keep_daily   INTEGER NOT NULL DEFAULT 0 CHECK (keep_daily >= 0),
  keep_weekly  INTEGER NOT NULL DEFAULT 0 CHECK (keep_weekly >= 0),
  keep_monthly INTEGER NOT NULL DEFAULT 0 CHECK (keep_monthly >= 0),
  created_at   INTEGER NOT NULL,
  updated_at   INTEGER NOT NULL
);

-- The prune of one policy lists its backups.
CREATE INDEX backups_by_policy ON backups (policy, started_at);
