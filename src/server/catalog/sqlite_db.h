// Internals of the SQLite catalog shared with its tests: the embedded migrations, the connection
// set-up and the migration runner. Not part of the public interface.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "absl/status/statusor.h"

struct sqlite3;

namespace strata::server::catalog_internal {

struct Migration {
  int version;       // 1, 2, ... in order, no gaps
  const char* name;  // file name, e.g. "0001_initial.sql"
  const char* sql;   // the file's text
};

// The migrations compiled into this binary (generated from catalog/migrations/*.sql).
std::span<const Migration> EmbeddedMigrations();

// Opens `path` (":memory:" allowed) and sets extended result codes, the busy timeout, WAL mode
// (file databases must end up in WAL), foreign_keys=ON, synchronous=NORMAL and a 64 MiB page
// cache. The caller owns
// the returned connection (sqlite3_close).
absl::StatusOr<sqlite3*> OpenConnection(const std::string& path,
                                        std::chrono::milliseconds busy_timeout);

// Applies the migrations newer than the database's version, each in its own IMMEDIATE
// transaction, recording (version, name, applied_at) in schema_migrations. Returns how many were
// applied. A database newer than the last migration is FailedPrecondition. `label` names the
// database in messages.
absl::StatusOr<int> ApplyMigrations(sqlite3* db, std::span<const Migration> migrations,
                                    int64_t now_micros, const std::string& label);

}  // namespace strata::server::catalog_internal
