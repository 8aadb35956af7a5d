// SQLite implementation of strata::server::Catalog. One connection, guarded by one mutex; every
// public method takes the mutex for its whole duration, so a method's transaction never
// interleaves with another's on this object. Other connections (processes) are arbitrated by
// SQLite's locks: writes use BEGIN IMMEDIATE and the busy timeout.
#include <sqlite3.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <set>
#include <unordered_map>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "sqlite_db.h"
#include "strata/core/status_macros.h"
#include "strata/server/catalog.h"

namespace strata::server {

// ---- enums ---------------------------------------------------------------------------------

namespace {

template <typename E, size_t N>
absl::StatusOr<E> ParseEnum(const char* what, const std::string& text,
                            const std::pair<E, const char*> (&table)[N]) {
  std::vector<std::string> names;
  for (const auto& [value, name] : table) {
    if (text == name) return value;
    names.push_back(name);
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown ", what, " '", absl::CEscape(text),
                                                 "' (expected one of: ", absl::StrJoin(names, ", "),
                                                 ")"));
}

template <typename E, size_t N>
const char* EnumName(E value, const std::pair<E, const char*> (&table)[N]) {
  for (const auto& [v, name] : table) {
    if (v == value) return name;
  }
  return "?";
}

constexpr std::pair<HostState, const char*> kHostStates[] = {
    {HostState::kReachable, "reachable"}, {HostState::kUnreachable, "unreachable"}};
constexpr std::pair<EventKind, const char*> kEventKinds[] = {{EventKind::kAdded, "added"},
                                                             {EventKind::kRemoved, "removed"},
                                                             {EventKind::kModified, "modified"},
                                                             {EventKind::kCluster, "cluster"}};
constexpr std::pair<Consistency, const char*> kConsistencies[] = {
    {Consistency::kCrash, "crash"},
    {Consistency::kPause, "pause"},
    {Consistency::kQuiesce, "quiesce"}};
constexpr std::pair<BackupState, const char*> kBackupStates[] = {
    {BackupState::kRunning, "running"},
    {BackupState::kSucceeded, "succeeded"},
    {BackupState::kFailed, "failed"}};
constexpr std::pair<JobState, const char*> kJobStates[] = {{JobState::kQueued, "queued"},
                                                           {JobState::kRunning, "running"},
                                                           {JobState::kSucceeded, "succeeded"},
                                                           {JobState::kFailed, "failed"}};

}  // namespace

const char* ToString(HostState state) { return EnumName(state, kHostStates); }
const char* ToString(EventKind kind) { return EnumName(kind, kEventKinds); }
const char* ToString(Consistency consistency) { return EnumName(consistency, kConsistencies); }
const char* ToString(BackupState state) { return EnumName(state, kBackupStates); }
const char* ToString(JobState state) { return EnumName(state, kJobStates); }
absl::StatusOr<HostState> ParseHostState(const std::string& text) {
  return ParseEnum("host state", text, kHostStates);
}
absl::StatusOr<EventKind> ParseEventKind(const std::string& text) {
  return ParseEnum("event kind", text, kEventKinds);
}
absl::StatusOr<Consistency> ParseConsistency(const std::string& text) {
  return ParseEnum("consistency", text, kConsistencies);
}
absl::StatusOr<BackupState> ParseBackupState(const std::string& text) {
  return ParseEnum("backup state", text, kBackupStates);
}
absl::StatusOr<JobState> ParseJobState(const std::string& text) {
  return ParseEnum("job state", text, kJobStates);
}

// ---- SQLite helpers ------------------------------------------------------------------------

namespace {

int64_t ToMicros(CatalogTime t) {
  return std::chrono::duration_cast<std::chrono::microseconds>(t.time_since_epoch()).count();
}
CatalogTime FromMicros(int64_t us) {
  return CatalogTime(
      std::chrono::duration_cast<CatalogTime::duration>(std::chrono::microseconds(us)));
}

// The status for a failed SQLite call. `context` says what was being done, naming the object.
absl::Status SqliteError(sqlite3* db, int rc, const std::string& context) {
  std::string text = absl::StrCat(context, ": ", db != nullptr ? sqlite3_errmsg(db) : "",
                                  " (sqlite code ", rc, ")");
  switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
      return absl::UnavailableError(text);
    case SQLITE_CONSTRAINT:
      if (rc == SQLITE_CONSTRAINT_PRIMARYKEY || rc == SQLITE_CONSTRAINT_UNIQUE) {
        return absl::AlreadyExistsError(text);
      }
      if (rc == SQLITE_CONSTRAINT_FOREIGNKEY) return absl::NotFoundError(text);
      return absl::InvalidArgumentError(text);
    default:
      return absl::InternalError(text);
  }
}

// A cached prepared statement, borrowed for one use: reset and unbound when it goes away.
class Stmt {
 public:
  Stmt(sqlite3* db, sqlite3_stmt* stmt) : db_(db), stmt_(stmt) {}
  Stmt(Stmt&& other) noexcept
      : db_(other.db_), stmt_(std::exchange(other.stmt_, nullptr)), bind_rc_(other.bind_rc_) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt& operator=(Stmt&&) = delete;
  ~Stmt() {
    if (stmt_ != nullptr) {
      sqlite3_reset(stmt_);
      sqlite3_clear_bindings(stmt_);
    }
  }

  Stmt& Text(int i, const std::string& v) {
    Note(sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT));
    return *this;
  }
  Stmt& Int(int i, int64_t v) {
    Note(sqlite3_bind_int64(stmt_, i, v));
    return *this;
  }
  Stmt& Null(int i) {
    Note(sqlite3_bind_null(stmt_, i));
    return *this;
  }
  Stmt& OptText(int i, const std::string& v) { return v.empty() ? Null(i) : Text(i, v); }

  // True when a row is available, false when done.
  absl::StatusOr<bool> Step(const std::string& context) {
    if (bind_rc_ != SQLITE_OK) return SqliteError(db_, bind_rc_, context);
    int rc = sqlite3_step(stmt_);
    if (rc == SQLITE_ROW) return true;
    if (rc == SQLITE_DONE) return false;
    return SqliteError(db_, rc, context);
  }
  // Runs a statement that returns no rows.
  absl::Status Run(const std::string& context) {
    STRATA_ASSIGN_OR_RETURN(bool row, Step(context));
    (void)row;
    return absl::OkStatus();
  }

  std::string ColText(int i) const {
    const unsigned char* p = sqlite3_column_text(stmt_, i);
    if (p == nullptr) return "";
    return std::string(reinterpret_cast<const char*>(p),
                       static_cast<size_t>(sqlite3_column_bytes(stmt_, i)));
  }
  int64_t ColInt(int i) const { return sqlite3_column_int64(stmt_, i); }
  bool ColNull(int i) const { return sqlite3_column_type(stmt_, i) == SQLITE_NULL; }

 private:
  void Note(int rc) {
    if (rc != SQLITE_OK && bind_rc_ == SQLITE_OK) bind_rc_ = rc;
  }

  sqlite3* db_;
  sqlite3_stmt* stmt_;
  int bind_rc_ = SQLITE_OK;
};

absl::Status Exec(sqlite3* db, const char* sql, const std::string& context) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  if (rc == SQLITE_OK) return absl::OkStatus();
  std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
  sqlite3_free(err);
  absl::Status s = SqliteError(nullptr, rc, context);
  return absl::Status(s.code(), absl::StrCat(context, ": ", msg, " (sqlite code ", rc, ")"));
}

// Reads the single text value of a PRAGMA (or any one-value query).
absl::StatusOr<std::string> QueryText(sqlite3* db, const char* sql, const std::string& context) {
  sqlite3_stmt* stmt = nullptr;
  int rc = sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr);
  if (rc != SQLITE_OK) return SqliteError(db, rc, context);
  rc = sqlite3_step(stmt);
  std::string value;
  if (rc == SQLITE_ROW) {
    const unsigned char* p = sqlite3_column_text(stmt, 0);
    if (p != nullptr) value = reinterpret_cast<const char*>(p);
    rc = SQLITE_OK;
  } else if (rc == SQLITE_DONE) {
    rc = SQLITE_OK;
  }
  absl::Status status = rc == SQLITE_OK ? absl::OkStatus() : SqliteError(db, rc, context);
  sqlite3_finalize(stmt);
  if (!status.ok()) return status;
  return value;
}

constexpr size_t kMaxIdBytes = 512;

// Ids and names: non-empty, at most kMaxIdBytes, no control characters.
absl::Status CheckId(const std::string& what, const std::string& value) {
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(what, " must not be empty"));
  if (value.size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(absl::StrCat(what, " '", absl::CEscape(value.substr(0, 64)),
                                                   "...' is longer than ", kMaxIdBytes, " bytes"));
  }
  for (unsigned char c : value) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, " '", absl::CEscape(value), "' contains a control character"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckLimit(int limit, int max) {
  if (limit < 1 || limit > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("limit ", limit, " is out of range (1..", max, ")"));
  }
  return absl::OkStatus();
}

std::string Quote(const std::string& s) { return absl::StrCat("'", s, "'"); }

absl::StatusOr<nlohmann::json> ParseStoredJson(const std::string& text, const std::string& what) {
  nlohmann::json value = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) {
    return absl::InternalError(absl::StrCat(what, ": stored JSON is not valid"));
  }
  return value;
}

template <typename E, size_t N>
absl::StatusOr<E> ParseStoredEnum(const std::string& text, const std::string& what,
                                  const std::pair<E, const char*> (&table)[N]) {
  for (const auto& [value, name] : table) {
    if (text == name) return value;
  }
  return absl::InternalError(absl::StrCat(what, ": stored value '", text, "' is not known"));
}

}  // namespace

// ---- connection and migrations --------------------------------------------------------------

namespace catalog_internal {

absl::StatusOr<sqlite3*> OpenConnection(const std::string& path,
                                        std::chrono::milliseconds busy_timeout) {
  const std::string label = absl::StrCat("catalog ", Quote(path));
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(
      path.c_str(), &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    absl::Status s = SqliteError(db, rc, absl::StrCat(label, ": cannot open"));
    sqlite3_close(db);
    return s;
  }
  auto fail = [&](absl::Status s) {
    sqlite3_close(db);
    return s;
  };
  sqlite3_extended_result_codes(db, 1);
  sqlite3_busy_timeout(db, static_cast<int>(busy_timeout.count()));
  absl::StatusOr<std::string> mode =
      QueryText(db, "PRAGMA journal_mode=WAL", absl::StrCat(label, ": setting WAL mode"));
  if (!mode.ok()) return fail(mode.status());
  const bool in_memory = path == ":memory:" || path.empty();
  if (*mode != "wal" && !(in_memory && *mode == "memory")) {
    return fail(absl::FailedPreconditionError(
        absl::StrCat(label, ": cannot use WAL mode (journal_mode is '", *mode,
                     "'); the catalog needs a local file system that supports shared memory")));
  }
  absl::Status s =
      Exec(db, "PRAGMA foreign_keys=ON; PRAGMA synchronous=NORMAL; PRAGMA cache_size=-65536;",
           absl::StrCat(label, ": setting pragmas"));
  if (!s.ok()) return fail(s);
  absl::StatusOr<std::string> fk =
      QueryText(db, "PRAGMA foreign_keys", absl::StrCat(label, ": reading foreign_keys"));
  if (!fk.ok()) return fail(fk.status());
  if (*fk != "1") {
    return fail(absl::FailedPreconditionError(
        absl::StrCat(label, ": this SQLite does not enforce foreign keys")));
  }
  return db;
}

absl::StatusOr<int> ApplyMigrations(sqlite3* db, std::span<const Migration> migrations,
                                    int64_t now_micros, const std::string& label) {
  for (size_t i = 0; i < migrations.size(); ++i) {
    if (migrations[i].version != static_cast<int>(i + 1)) {
      return absl::InternalError(absl::StrCat(label, ": migration '", migrations[i].name,
                                              "' has version ", migrations[i].version,
                                              ", expected ", i + 1));
    }
  }
  const int newest = static_cast<int>(migrations.size());
  STRATA_RETURN_IF_ERROR(Exec(db,
                              "CREATE TABLE IF NOT EXISTS schema_migrations ("
                              "version INTEGER PRIMARY KEY NOT NULL, name TEXT NOT NULL, "
                              "applied_at INTEGER NOT NULL)",
                              absl::StrCat(label, ": creating schema_migrations")));
  auto current_version = [&]() -> absl::StatusOr<int> {
    STRATA_ASSIGN_OR_RETURN(std::string v,
                            QueryText(db, "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
                                      absl::StrCat(label, ": reading the schema version")));
    return std::atoi(v.c_str());
  };
  auto too_new = [&](int version) {
    return absl::FailedPreconditionError(absl::StrCat(label, ": schema version ", version,
                                                      " is newer than this binary supports (",
                                                      newest, "); upgrade stratad"));
  };
  STRATA_ASSIGN_OR_RETURN(int version, current_version());
  if (version > newest) return too_new(version);
  int applied = 0;
  for (const Migration& m : migrations) {
    if (m.version <= version) continue;
    const std::string context = absl::StrCat(label, ": migration ", m.name);
    STRATA_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE", context));
    auto run = [&]() -> absl::Status {
      // Another process may have migrated between our read and our lock.
      STRATA_ASSIGN_OR_RETURN(version, current_version());
      if (version > newest) return too_new(version);
      if (m.version <= version) return absl::OkStatus();
      STRATA_RETURN_IF_ERROR(Exec(db, m.sql, context));
      sqlite3_stmt* raw = nullptr;
      int rc = sqlite3_prepare_v2(
          db, "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)", -1,
          &raw, nullptr);
      if (rc != SQLITE_OK) return SqliteError(db, rc, context);
      absl::Status s;
      {
        Stmt stmt(db, raw);
        s = stmt.Int(1, m.version).Text(2, m.name).Int(3, now_micros).Run(context);
      }
      sqlite3_finalize(raw);
      STRATA_RETURN_IF_ERROR(s);
      ++applied;
      version = m.version;
      return absl::OkStatus();
    };
    absl::Status s = run();
    if (s.ok()) s = Exec(db, "COMMIT", context);
    if (!s.ok()) {
      if (sqlite3_get_autocommit(db) == 0) (void)Exec(db, "ROLLBACK", context);
      return s;
    }
  }
  return applied;
}

}  // namespace catalog_internal

// ---- the catalog ---------------------------------------------------------------------------

namespace {

constexpr char kHostColumns[] =
    "id, COALESCE(cluster, ''), endpoint, plugins, state, last_heartbeat, registered_at";
constexpr char kVmColumns[] = "uuid, name, host, state, updated_at";
constexpr char kEventColumns[] = "seq, host, vm_uuid, kind, time, detail";
constexpr char kBackupColumns[] =
    "id, name, requester, consistency, state, started_at, finished_at, policy, metadata";
constexpr char kItemColumns[] =
    "vm_uuid, vm_name, disk_target, source_path, storage_volume, snapshot_id, path_in_snapshot, "
    "size_bytes, checksum";
constexpr char kJobColumns[] = "id, kind, state, progress, message, created_at, updated_at, detail";
constexpr char kPolicyColumns[] =
    "name, keep_last, keep_hourly, keep_daily, keep_weekly, keep_monthly";

std::string BackupLabel(const std::string& id_or_name) {
  return absl::StrCat("backup ", Quote(id_or_name));
}

absl::Status CheckItems(const std::string& backup, const std::vector<BackupItem>& items) {
  std::set<std::pair<std::string, std::string>> seen;
  for (const BackupItem& item : items) {
    const std::string where = BackupLabel(backup);
    STRATA_RETURN_IF_ERROR(CheckId(absl::StrCat(where, ": item VM uuid"), item.vm_uuid));
    STRATA_RETURN_IF_ERROR(CheckId(
        absl::StrCat(where, ": VM ", Quote(item.vm_uuid), ": disk target"), item.disk_target));
    if (item.size_bytes < 0) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": VM ", Quote(item.vm_uuid), " disk ",
                                                     Quote(item.disk_target), ": negative size ",
                                                     item.size_bytes));
    }
    if (!seen.emplace(item.vm_uuid, item.disk_target).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": VM ", Quote(item.vm_uuid), " disk ",
                                                     Quote(item.disk_target), " is listed twice"));
    }
  }
  return absl::OkStatus();
}

class SqliteCatalog final : public Catalog {
 public:
  SqliteCatalog(sqlite3* db, std::string label, std::function<CatalogTime()> clock)
      : db_(db), label_(std::move(label)), clock_(std::move(clock)) {}
  ~SqliteCatalog() override {
    for (auto& [sql, stmt] : cache_) sqlite3_finalize(stmt);
    sqlite3_close(db_);
  }
  SqliteCatalog(const SqliteCatalog&) = delete;
  SqliteCatalog& operator=(const SqliteCatalog&) = delete;

  // ---- clusters and hosts ----

  absl::Status UpsertCluster(const ClusterRecord& cluster) override {
    STRATA_RETURN_IF_ERROR(CheckId("cluster name", cluster.name));
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(
        Stmt stmt, Prepare("INSERT INTO clusters (name) VALUES (?) ON CONFLICT DO NOTHING"));
    return stmt.Text(1, cluster.name).Run(absl::StrCat("cluster ", Quote(cluster.name)));
  }

  absl::StatusOr<std::vector<ClusterRecord>> ListClusters() override {
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("SELECT name FROM clusters ORDER BY name"));
    std::vector<ClusterRecord> out;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step("listing clusters"));
      if (!row) break;
      out.push_back(ClusterRecord{stmt.ColText(0)});
    }
    return out;
  }

  absl::Status UpsertHost(const HostRecord& host) override {
    STRATA_RETURN_IF_ERROR(CheckId("host id", host.id));
    const std::string label = absl::StrCat("host ", Quote(host.id));
    STRATA_RETURN_IF_ERROR(CheckId(absl::StrCat(label, ": endpoint"), host.endpoint));
    if (!host.cluster.empty()) {
      STRATA_RETURN_IF_ERROR(CheckId(absl::StrCat(label, ": cluster"), host.cluster));
    }
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(
        Stmt stmt,
        Prepare("INSERT INTO hosts (id, cluster, endpoint, plugins, state, last_heartbeat, "
                "registered_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "cluster = excluded.cluster, endpoint = excluded.endpoint, "
                "plugins = excluded.plugins, state = excluded.state, "
                "last_heartbeat = excluded.last_heartbeat"));
    absl::Status s = stmt.Text(1, host.id)
                         .OptText(2, host.cluster)
                         .Text(3, host.endpoint)
                         .Text(4, host.plugins.dump())
                         .Text(5, ToString(host.state))
                         .Int(6, ToMicros(host.last_heartbeat))
                         .Int(7, Now())
                         .Run(label);
    if (absl::IsNotFound(s)) {  // the foreign key on cluster
      return absl::NotFoundError(
          absl::StrCat(label, ": cluster ", Quote(host.cluster), " not found"));
    }
    return s;
  }

  absl::StatusOr<HostRecord> GetHost(const std::string& id) override {
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(
        Stmt stmt, Prepare(absl::StrCat("SELECT ", kHostColumns, " FROM hosts WHERE id = ?")));
    stmt.Text(1, id);
    const std::string label = absl::StrCat("host ", Quote(id));
    STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
    if (!row) return absl::NotFoundError(absl::StrCat(label, " not found"));
    return ReadHost(stmt);
  }

  absl::StatusOr<std::vector<HostRecord>> ListHosts() override {
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(
        Stmt stmt, Prepare(absl::StrCat("SELECT ", kHostColumns, " FROM hosts ORDER BY id")));
    std::vector<HostRecord> out;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step("listing hosts"));
      if (!row) break;
      STRATA_ASSIGN_OR_RETURN(HostRecord host, ReadHost(stmt));
      out.push_back(std::move(host));
    }
    return out;
  }

  absl::Status SetHostState(const std::string& id, HostState state,
                            std::optional<CatalogTime> last_heartbeat) override {
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(Stmt stmt,
                            Prepare("UPDATE hosts SET state = ?, last_heartbeat = COALESCE(?, "
                                    "last_heartbeat) WHERE id = ?"));
    stmt.Text(1, ToString(state)).Text(3, id);
    if (last_heartbeat) stmt.Int(2, ToMicros(*last_heartbeat));
    const std::string label = absl::StrCat("host ", Quote(id));
    STRATA_RETURN_IF_ERROR(stmt.Run(label));
    if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat(label, " not found"));
    return absl::OkStatus();
  }

  // ---- VMs ----

  absl::Status ReplaceHostVms(const std::string& host, const std::vector<VmRecord>& vms) override {
    STRATA_RETURN_IF_ERROR(CheckId("host id", host));
    const std::string label = absl::StrCat("host ", Quote(host));
    std::set<std::string> listed;
    for (const VmRecord& vm : vms) {
      STRATA_RETURN_IF_ERROR(CheckId(absl::StrCat(label, ": VM uuid"), vm.uuid));
      STRATA_RETURN_IF_ERROR(
          CheckId(absl::StrCat(label, ": VM ", Quote(vm.uuid), ": name"), vm.name));
      if (!listed.insert(vm.uuid).second) {
        return absl::InvalidArgumentError(
            absl::StrCat(label, ": VM uuid ", Quote(vm.uuid), " is listed twice"));
      }
    }
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.Begin(label));
    STRATA_RETURN_IF_ERROR(RequireHost(host));
    const int64_t now = Now();
    for (const VmRecord& vm : vms) {
      STRATA_ASSIGN_OR_RETURN(
          Stmt stmt,
          Prepare("INSERT INTO vms (uuid, name, host, state, updated_at) VALUES (?, ?, ?, ?, ?) "
                  "ON CONFLICT (uuid) DO UPDATE SET name = excluded.name, host = excluded.host, "
                  "state = excluded.state, updated_at = CASE WHEN name = excluded.name AND "
                  "host = excluded.host AND state = excluded.state THEN updated_at ELSE "
                  "excluded.updated_at END"));
      STRATA_RETURN_IF_ERROR(stmt.Text(1, vm.uuid)
                                 .Text(2, vm.name)
                                 .Text(3, host)
                                 .Text(4, vm.state)
                                 .Int(5, now)
                                 .Run(absl::StrCat(label, ": VM ", Quote(vm.uuid))));
    }
    std::vector<std::string> gone;
    {
      STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("SELECT uuid FROM vms WHERE host = ?"));
      stmt.Text(1, host);
      while (true) {
        STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
        if (!row) break;
        std::string uuid = stmt.ColText(0);
        if (!listed.contains(uuid)) gone.push_back(std::move(uuid));
      }
    }
    for (const std::string& uuid : gone) {
      STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("DELETE FROM vms WHERE uuid = ?"));
      STRATA_RETURN_IF_ERROR(
          stmt.Text(1, uuid).Run(absl::StrCat(label, ": removing VM ", Quote(uuid))));
    }
    return txn.Commit(label);
  }

  absl::StatusOr<std::vector<VmRecord>> ListVms(const std::optional<std::string>& host) override {
    std::lock_guard lock(mu_);
    std::optional<Stmt> stmt;
    if (host) {
      STRATA_RETURN_IF_ERROR(RequireHost(*host));
      STRATA_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat("SELECT ", kVmColumns,
                                                           " FROM vms WHERE host = ? "
                                                           "ORDER BY name, uuid")));
      s.Text(1, *host);
      stmt.emplace(std::move(s));
    } else {
      STRATA_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat("SELECT ", kVmColumns,
                                                           " FROM vms ORDER BY host, name, uuid")));
      stmt.emplace(std::move(s));
    }
    std::vector<VmRecord> out;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, stmt->Step("listing VMs"));
      if (!row) break;
      out.push_back(ReadVm(*stmt));
    }
    return out;
  }

  absl::StatusOr<VmRecord> GetVm(const std::string& uuid_or_name) override {
    std::lock_guard lock(mu_);
    const std::string label = absl::StrCat("VM ", Quote(uuid_or_name));
    {
      STRATA_ASSIGN_OR_RETURN(
          Stmt stmt, Prepare(absl::StrCat("SELECT ", kVmColumns, " FROM vms WHERE uuid = ?")));
      stmt.Text(1, uuid_or_name);
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
      if (row) return ReadVm(stmt);
    }
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare(absl::StrCat("SELECT ", kVmColumns,
                                                            " FROM vms WHERE name = ? "
                                                            "ORDER BY host, uuid")));
    stmt.Text(1, uuid_or_name);
    std::vector<VmRecord> found;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
      if (!row) break;
      found.push_back(ReadVm(stmt));
    }
    if (found.empty()) return absl::NotFoundError(absl::StrCat(label, " not found"));
    if (found.size() > 1) {
      std::vector<std::string> who;
      for (const VmRecord& vm : found) {
        who.push_back(absl::StrCat("uuid ", vm.uuid, " on host ", Quote(vm.host)));
      }
      return absl::InvalidArgumentError(absl::StrCat("VM name ", Quote(uuid_or_name),
                                                     " is ambiguous (", absl::StrJoin(who, ", "),
                                                     "); use the UUID"));
    }
    return std::move(found.front());
  }

  // ---- host graphs ----

  absl::Status PutHostGraph(const std::string& host, int64_t version,
                            const std::string& graph_json) override {
    STRATA_RETURN_IF_ERROR(CheckId("host id", host));
    const std::string label = absl::StrCat("host ", Quote(host), ": resource graph");
    if (version < 0) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": negative version ", version));
    }
    if (!nlohmann::json::accept(graph_json)) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, " version ", version, " is not valid JSON"));
    }
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.Begin(label));
    STRATA_RETURN_IF_ERROR(RequireHost(host));
    {
      STRATA_ASSIGN_OR_RETURN(Stmt stmt,
                              Prepare("SELECT version, graph FROM host_graphs WHERE host_id = ?"));
      stmt.Text(1, host);
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
      if (row) {
        const int64_t stored = stmt.ColInt(0);
        if (version == stored && stmt.ColText(1) == graph_json) return absl::OkStatus();
        if (version == stored) {
          return absl::FailedPreconditionError(absl::StrCat(
              label, " version ", version, " is already stored with different content"));
        }
        if (version < stored) {
          return absl::FailedPreconditionError(absl::StrCat(
              label, " version ", version, " is older than the stored version ", stored));
        }
      }
    }
    STRATA_ASSIGN_OR_RETURN(
        Stmt stmt,
        Prepare("INSERT INTO host_graphs (host_id, version, graph, updated_at) VALUES (?, ?, ?, "
                "?) ON CONFLICT (host_id) DO UPDATE SET version = excluded.version, "
                "graph = excluded.graph, updated_at = excluded.updated_at"));
    STRATA_RETURN_IF_ERROR(
        stmt.Text(1, host).Int(2, version).Text(3, graph_json).Int(4, Now()).Run(label));
    return txn.Commit(label);
  }

  absl::StatusOr<HostGraphRecord> GetHostGraph(const std::string& host) override {
    std::lock_guard lock(mu_);
    STRATA_RETURN_IF_ERROR(RequireHost(host));
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("SELECT host_id, version, graph, updated_at FROM "
                                               "host_graphs WHERE host_id = ?"));
    stmt.Text(1, host);
    const std::string label = absl::StrCat("host ", Quote(host));
    STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
    if (!row) return absl::NotFoundError(absl::StrCat(label, " has no resource graph"));
    return ReadGraph(stmt);
  }

  absl::StatusOr<std::vector<HostGraphRecord>> ListHostGraphs() override {
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("SELECT host_id, version, graph, updated_at FROM "
                                               "host_graphs ORDER BY host_id"));
    std::vector<HostGraphRecord> out;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step("listing resource graphs"));
      if (!row) break;
      out.push_back(ReadGraph(stmt));
    }
    return out;
  }

  // ---- events ----

  absl::StatusOr<std::vector<int64_t>> AppendEvents(
      const std::vector<EventRecord>& events) override {
    for (size_t i = 0; i < events.size(); ++i) {
      const EventRecord& e = events[i];
      const std::string where = absl::StrCat("event ", i + 1, " of ", events.size());
      STRATA_RETURN_IF_ERROR(CheckId(absl::StrCat(where, ": host id"), e.host));
      if (e.kind != EventKind::kCluster) {
        STRATA_RETURN_IF_ERROR(CheckId(
            absl::StrCat(where, " (host ", Quote(e.host), ", ", ToString(e.kind), "): VM uuid"),
            e.vm_uuid));
      }
    }
    std::vector<int64_t> seqs;
    if (events.empty()) return seqs;
    seqs.reserve(events.size());
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.Begin("appending events"));
    std::set<std::string> known_hosts;
    for (size_t i = 0; i < events.size(); ++i) {
      const EventRecord& e = events[i];
      const std::string where = absl::StrCat("event ", i + 1, " of ", events.size());
      if (!known_hosts.contains(e.host)) {
        absl::Status s = RequireHost(e.host);
        if (!s.ok()) return absl::Status(s.code(), absl::StrCat(where, ": ", s.message()));
        known_hosts.insert(e.host);
      }
      STRATA_ASSIGN_OR_RETURN(Stmt stmt,
                              Prepare("INSERT INTO events (host, vm_uuid, kind, time, detail) "
                                      "VALUES (?, ?, ?, ?, ?)"));
      STRATA_RETURN_IF_ERROR(stmt.Text(1, e.host)
                                 .Text(2, e.vm_uuid)
                                 .Text(3, ToString(e.kind))
                                 .Int(4, ToMicros(e.time))
                                 .Text(5, e.detail.dump())
                                 .Run(where));
      seqs.push_back(sqlite3_last_insert_rowid(db_));
    }
    STRATA_RETURN_IF_ERROR(txn.Commit("appending events"));
    return seqs;
  }

  absl::StatusOr<std::vector<EventRecord>> ListEvents(
      int64_t after_seq, int limit, const std::optional<std::string>& host) override {
    STRATA_RETURN_IF_ERROR(CheckLimit(limit, 10000));
    if (after_seq < 0) {
      return absl::InvalidArgumentError(absl::StrCat("negative event seq ", after_seq));
    }
    std::lock_guard lock(mu_);
    std::optional<Stmt> stmt;
    if (host) {
      STRATA_RETURN_IF_ERROR(RequireHost(*host));
      STRATA_ASSIGN_OR_RETURN(
          Stmt s, Prepare(absl::StrCat("SELECT ", kEventColumns,
                                       " FROM events WHERE host = ? AND seq > ? ORDER BY seq "
                                       "LIMIT ?")));
      s.Text(1, *host).Int(2, after_seq).Int(3, limit);
      stmt.emplace(std::move(s));
    } else {
      STRATA_ASSIGN_OR_RETURN(
          Stmt s, Prepare(absl::StrCat("SELECT ", kEventColumns,
                                       " FROM events WHERE seq > ? ORDER BY seq LIMIT ?")));
      s.Int(1, after_seq).Int(2, limit);
      stmt.emplace(std::move(s));
    }
    return ReadEvents(*stmt);
  }

  absl::StatusOr<std::vector<EventRecord>> ListVmEvents(const std::string& vm_uuid,
                                                        int64_t after_seq, int limit) override {
    STRATA_RETURN_IF_ERROR(CheckLimit(limit, 10000));
    if (after_seq < 0) {
      return absl::InvalidArgumentError(absl::StrCat("negative event seq ", after_seq));
    }
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(
        Stmt stmt, Prepare(absl::StrCat("SELECT ", kEventColumns,
                                        " FROM events WHERE vm_uuid = ? AND seq > ? ORDER BY seq "
                                        "LIMIT ?")));
    stmt.Text(1, vm_uuid).Int(2, after_seq).Int(3, limit);
    return ReadEvents(stmt);
  }

  // The rows of an events query (kEventColumns), in order. Called with mu_ held.
  absl::StatusOr<std::vector<EventRecord>> ReadEvents(Stmt& stmt) {
    std::vector<EventRecord> out;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step("listing events"));
      if (!row) break;
      EventRecord e;
      e.seq = stmt.ColInt(0);
      e.host = stmt.ColText(1);
      e.vm_uuid = stmt.ColText(2);
      const std::string what = absl::StrCat("event ", e.seq);
      STRATA_ASSIGN_OR_RETURN(e.kind, ParseStoredEnum(stmt.ColText(3), what, kEventKinds));
      e.time = FromMicros(stmt.ColInt(4));
      STRATA_ASSIGN_OR_RETURN(e.detail, ParseStoredJson(stmt.ColText(5), what));
      out.push_back(std::move(e));
    }
    return out;
  }

  // ---- backups ----

  absl::Status CreateBackup(const BackupRecord& backup) override {
    STRATA_RETURN_IF_ERROR(CheckId("backup id", backup.id));
    STRATA_RETURN_IF_ERROR(CheckId(absl::StrCat(BackupLabel(backup.id), ": name"), backup.name));
    const std::string label = BackupLabel(backup.name);
    if (backup.state == BackupState::kRunning && backup.finished_at) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": a running backup has no finish time"));
    }
    if (backup.state != BackupState::kRunning && !backup.finished_at) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": a ", ToString(backup.state), " backup needs a finish time"));
    }
    if (backup.finished_at && *backup.finished_at < backup.started_at) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": finishes before it starts"));
    }
    STRATA_RETURN_IF_ERROR(CheckItems(backup.name, backup.items));
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.Begin(label));
    {
      // Ids and names share one space, so that "id or name" always means one backup.
      STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("SELECT id, name FROM backups WHERE id IN (?1, "
                                                 "?2) OR name IN (?1, ?2) LIMIT 1"));
      stmt.Text(1, backup.id).Text(2, backup.name);
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
      if (row) {
        const bool id_clash = stmt.ColText(0) == backup.id || stmt.ColText(1) == backup.id;
        return absl::AlreadyExistsError(
            absl::StrCat(BackupLabel(id_clash ? backup.id : backup.name), " already exists"));
      }
    }
    {
      STRATA_ASSIGN_OR_RETURN(Stmt stmt,
                              Prepare(absl::StrCat("INSERT INTO backups (", kBackupColumns,
                                                   ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")));
      stmt.Text(1, backup.id)
          .Text(2, backup.name)
          .Text(3, backup.requester)
          .Text(4, ToString(backup.consistency))
          .Text(5, ToString(backup.state))
          .Int(6, ToMicros(backup.started_at))
          .Text(8, backup.policy)
          .Text(9, backup.metadata.dump());
      if (backup.finished_at) stmt.Int(7, ToMicros(*backup.finished_at));
      STRATA_RETURN_IF_ERROR(stmt.Run(label));
    }
    STRATA_RETURN_IF_ERROR(
        InsertItems(backup.id, backup.name, ToMicros(backup.started_at), backup.items));
    return txn.Commit(label);
  }

  absl::Status AddBackupItems(const std::string& backup,
                              const std::vector<BackupItem>& items) override {
    STRATA_RETURN_IF_ERROR(CheckItems(backup, items));
    const std::string label = BackupLabel(backup);
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.Begin(label));
    STRATA_ASSIGN_OR_RETURN(BackupRecord stored, ReadBackup(backup, /*with_items=*/false));
    if (stored.state != BackupState::kRunning) {
      return absl::FailedPreconditionError(
          absl::StrCat(label, " is already finished (", ToString(stored.state), ")"));
    }
    STRATA_RETURN_IF_ERROR(InsertItems(stored.id, backup, ToMicros(stored.started_at), items));
    return txn.Commit(label);
  }

  absl::Status FinishBackup(const BackupFinish& finish) override {
    const std::string label = BackupLabel(finish.backup);
    if (finish.state == BackupState::kRunning) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": a backup finishes as succeeded or failed, not running"));
    }
    if (finish.metadata_patch && !finish.metadata_patch->is_object()) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": the metadata patch must be a JSON object"));
    }
    STRATA_RETURN_IF_ERROR(CheckItems(finish.backup, finish.items));
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.Begin(label));
    STRATA_ASSIGN_OR_RETURN(BackupRecord stored, ReadBackup(finish.backup, /*with_items=*/false));
    if (stored.state != BackupState::kRunning) {
      return absl::FailedPreconditionError(
          absl::StrCat(label, " is already finished (", ToString(stored.state), ")"));
    }
    if (finish.finished_at < stored.started_at) {
      return absl::InvalidArgumentError(absl::StrCat(label, ": finishes before it starts"));
    }
    STRATA_RETURN_IF_ERROR(
        InsertItems(stored.id, finish.backup, ToMicros(stored.started_at), finish.items));
    nlohmann::json metadata = stored.metadata;
    if (finish.metadata_patch) metadata.merge_patch(*finish.metadata_patch);
    STRATA_ASSIGN_OR_RETURN(
        Stmt stmt,
        Prepare("UPDATE backups SET state = ?, finished_at = ?, metadata = ? WHERE id = ?"));
    STRATA_RETURN_IF_ERROR(stmt.Text(1, ToString(finish.state))
                               .Int(2, ToMicros(finish.finished_at))
                               .Text(3, metadata.dump())
                               .Text(4, stored.id)
                               .Run(label));
    return txn.Commit(label);
  }

  absl::StatusOr<BackupRecord> GetBackup(const std::string& id_or_name) override {
    std::lock_guard lock(mu_);
    // Two reads (backup, items) must see one state of the database.
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.BeginRead(BackupLabel(id_or_name)));
    return ReadBackup(id_or_name, /*with_items=*/true);
  }

  absl::StatusOr<std::vector<BackupRecord>> ListBackups(const BackupListOptions& options) override {
    STRATA_RETURN_IF_ERROR(CheckLimit(options.limit, 100000));
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.BeginRead("listing backups"));
    std::string sql = absl::StrCat("SELECT ", kBackupColumns, " FROM backups WHERE 1");
    if (options.state) absl::StrAppend(&sql, " AND state = ?1");
    if (options.vm_uuid) {
      absl::StrAppend(&sql, " AND id IN (SELECT backup_id FROM backup_items WHERE vm_uuid = ?2)");
    }
    absl::StrAppend(&sql, " ORDER BY started_at DESC, rowid DESC LIMIT ?3");
    std::vector<BackupRecord> out;
    {
      STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare(sql));
      if (options.state) stmt.Text(1, ToString(*options.state));
      if (options.vm_uuid) stmt.Text(2, *options.vm_uuid);
      stmt.Int(3, options.limit);
      while (true) {
        STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step("listing backups"));
        if (!row) break;
        STRATA_ASSIGN_OR_RETURN(BackupRecord b, ReadBackupRow(stmt));
        out.push_back(std::move(b));
      }
    }
    if (options.with_items) {
      for (BackupRecord& b : out) {
        STRATA_ASSIGN_OR_RETURN(b.items, ReadItems(b.id, std::nullopt));
      }
    }
    return out;
  }

  absl::Status DeleteBackup(const std::string& id_or_name) override {
    const std::string label = BackupLabel(id_or_name);
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.Begin(label));
    STRATA_ASSIGN_OR_RETURN(BackupRecord stored, ReadBackup(id_or_name, /*with_items=*/false));
    if (stored.state == BackupState::kRunning) {
      return absl::FailedPreconditionError(
          absl::StrCat(label, " is still running; finish it (as failed) before deleting it"));
    }
    // Items go with it: ON DELETE CASCADE.
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("DELETE FROM backups WHERE id = ?"));
    STRATA_RETURN_IF_ERROR(stmt.Text(1, stored.id).Run(label));
    return txn.Commit(label);
  }

  absl::StatusOr<RestorePoint> LatestRestorePoint(const std::string& vm_uuid) override {
    STRATA_RETURN_IF_ERROR(CheckId("VM uuid", vm_uuid));
    const std::string label = absl::StrCat("VM ", Quote(vm_uuid));
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.BeginRead(label));
    std::string backup_id;
    {
      // CROSS JOIN keeps SQLite from reordering: walk the VM's items newest first, stop at the
      // first whose backup succeeded.
      STRATA_ASSIGN_OR_RETURN(
          Stmt stmt, Prepare("SELECT i.backup_id FROM backup_items AS i CROSS JOIN backups AS b "
                             "ON b.id = i.backup_id WHERE i.vm_uuid = ? AND b.state = "
                             "'succeeded' ORDER BY i.backup_started_at DESC, i.backup_id DESC "
                             "LIMIT 1"));
      stmt.Text(1, vm_uuid);
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
      if (!row) {
        return absl::NotFoundError(absl::StrCat("no succeeded backup holds ", label));
      }
      backup_id = stmt.ColText(0);
    }
    RestorePoint point;
    STRATA_ASSIGN_OR_RETURN(point.backup, ReadBackup(backup_id, /*with_items=*/false));
    STRATA_ASSIGN_OR_RETURN(point.items, ReadItems(backup_id, vm_uuid));
    return point;
  }

  // ---- jobs ----

  absl::Status CreateJob(const JobRecord& job) override {
    STRATA_RETURN_IF_ERROR(CheckId("job id", job.id));
    const std::string label = absl::StrCat("job ", Quote(job.id));
    STRATA_RETURN_IF_ERROR(CheckId(absl::StrCat(label, ": kind"), job.kind));
    STRATA_RETURN_IF_ERROR(CheckProgress(label, job.progress));
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare(absl::StrCat("INSERT INTO jobs (", kJobColumns,
                                                            ") VALUES (?, ?, ?, ?, ?, ?, ?, ?)")));
    const int64_t now = Now();
    absl::Status s = stmt.Text(1, job.id)
                         .Text(2, job.kind)
                         .Text(3, ToString(job.state))
                         .Int(4, job.progress)
                         .Text(5, job.message)
                         .Int(6, now)
                         .Int(7, now)
                         .Text(8, job.detail.dump())
                         .Run(label);
    if (absl::IsAlreadyExists(s))
      return absl::AlreadyExistsError(absl::StrCat(label, " already exists"));
    return s;
  }

  absl::StatusOr<JobRecord> UpdateJob(const JobUpdate& update) override {
    const std::string label = absl::StrCat("job ", Quote(update.id));
    if (update.progress) {
      STRATA_RETURN_IF_ERROR(CheckProgress(label, *update.progress));
    }
    std::lock_guard lock(mu_);
    Transaction txn(this);
    STRATA_RETURN_IF_ERROR(txn.Begin(label));
    STRATA_ASSIGN_OR_RETURN(JobRecord job, ReadJob(update.id));
    const bool terminal = job.state == JobState::kSucceeded || job.state == JobState::kFailed;
    if (terminal) {
      return absl::FailedPreconditionError(
          absl::StrCat(label, " is already ", ToString(job.state), " and cannot change"));
    }
    if (update.state) {
      if (*update.state == JobState::kQueued && job.state != JobState::kQueued) {
        return absl::FailedPreconditionError(
            absl::StrCat(label, " is ", ToString(job.state), " and cannot go back to queued"));
      }
      job.state = *update.state;
    }
    if (update.progress) job.progress = *update.progress;
    if (update.message) job.message = *update.message;
    if (update.detail) job.detail = *update.detail;
    job.updated_at = FromMicros(Now());
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("UPDATE jobs SET state = ?, progress = ?, "
                                               "message = ?, updated_at = ?, detail = ? WHERE "
                                               "id = ?"));
    STRATA_RETURN_IF_ERROR(stmt.Text(1, ToString(job.state))
                               .Int(2, job.progress)
                               .Text(3, job.message)
                               .Int(4, ToMicros(job.updated_at))
                               .Text(5, job.detail.dump())
                               .Text(6, job.id)
                               .Run(label));
    STRATA_RETURN_IF_ERROR(txn.Commit(label));
    return job;
  }

  absl::StatusOr<JobRecord> GetJob(const std::string& id) override {
    std::lock_guard lock(mu_);
    return ReadJob(id);
  }

  absl::StatusOr<std::vector<JobRecord>> ListJobs(const JobListOptions& options) override {
    STRATA_RETURN_IF_ERROR(CheckLimit(options.limit, 100000));
    std::lock_guard lock(mu_);
    std::string sql = absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE 1");
    if (options.state) absl::StrAppend(&sql, " AND state = ?1");
    if (options.kind) absl::StrAppend(&sql, " AND kind = ?2");
    absl::StrAppend(&sql, " ORDER BY created_at DESC, rowid DESC LIMIT ?3");
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare(sql));
    if (options.state) stmt.Text(1, ToString(*options.state));
    if (options.kind) stmt.Text(2, *options.kind);
    stmt.Int(3, options.limit);
    std::vector<JobRecord> out;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step("listing jobs"));
      if (!row) break;
      STRATA_ASSIGN_OR_RETURN(JobRecord job, ReadJobRow(stmt));
      out.push_back(std::move(job));
    }
    return out;
  }

  // ---- retention policies ----

  absl::Status UpsertPolicy(const RetentionPolicy& policy) override {
    STRATA_RETURN_IF_ERROR(ValidateRetentionPolicy(policy));
    const std::string label = PolicyLabel(policy.name);
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(
        Stmt stmt, Prepare(absl::StrCat(
                       "INSERT INTO policies (", kPolicyColumns,
                       ", created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                       "ON CONFLICT (name) DO UPDATE SET keep_last = excluded.keep_last, "
                       "keep_hourly = excluded.keep_hourly, keep_daily = excluded.keep_daily, "
                       "keep_weekly = excluded.keep_weekly, "
                       "keep_monthly = excluded.keep_monthly, "
                       "updated_at = excluded.updated_at")));
    const int64_t now = Now();
    return stmt.Text(1, policy.name)
        .Int(2, policy.keep_last)
        .Int(3, policy.keep_hourly)
        .Int(4, policy.keep_daily)
        .Int(5, policy.keep_weekly)
        .Int(6, policy.keep_monthly)
        .Int(7, now)
        .Int(8, now)
        .Run(label);
  }

  absl::StatusOr<RetentionPolicy> GetPolicy(const std::string& name) override {
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare(absl::StrCat("SELECT ", kPolicyColumns,
                                                            " FROM policies WHERE name = ?")));
    stmt.Text(1, name);
    const std::string label = PolicyLabel(name);
    STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
    if (!row) return absl::NotFoundError(absl::StrCat(label, " not found"));
    return ReadPolicy(stmt);
  }

  absl::StatusOr<std::vector<RetentionPolicy>> ListPolicies() override {
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare(absl::StrCat("SELECT ", kPolicyColumns,
                                                            " FROM policies ORDER BY name")));
    std::vector<RetentionPolicy> out;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step("listing retention policies"));
      if (!row) break;
      out.push_back(ReadPolicy(stmt));
    }
    return out;
  }

  absl::Status DeletePolicy(const std::string& name) override {
    const std::string label = PolicyLabel(name);
    std::lock_guard lock(mu_);
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("DELETE FROM policies WHERE name = ?"));
    STRATA_RETURN_IF_ERROR(stmt.Text(1, name).Run(label));
    if (sqlite3_changes(db_) == 0) return absl::NotFoundError(absl::StrCat(label, " not found"));
    return absl::OkStatus();
  }

 private:
  static std::string PolicyLabel(const std::string& name) {
    return absl::StrCat("retention policy ", Quote(name));
  }

  static RetentionPolicy ReadPolicy(const Stmt& stmt) {
    return RetentionPolicy{.name = stmt.ColText(0),
                           .keep_last = static_cast<int>(stmt.ColInt(1)),
                           .keep_hourly = static_cast<int>(stmt.ColInt(2)),
                           .keep_daily = static_cast<int>(stmt.ColInt(3)),
                           .keep_weekly = static_cast<int>(stmt.ColInt(4)),
                           .keep_monthly = static_cast<int>(stmt.ColInt(5))};
  }

  // RAII transaction on this connection: rolled back unless committed. Callers hold mu_.
  class Transaction {
   public:
    explicit Transaction(SqliteCatalog* c) : c_(c) {}
    Transaction(const Transaction&) = delete;
    Transaction& operator=(const Transaction&) = delete;
    ~Transaction() {
      if (active_ && sqlite3_get_autocommit(c_->db_) == 0) {
        if (auto stmt = c_->Prepare("ROLLBACK"); stmt.ok()) (void)stmt->Run("rollback");
      }
    }
    // A write transaction: takes the write lock now (waiting up to the busy timeout), so it
    // never fails half-way for lock upgrades.
    absl::Status Begin(const std::string& context) { return Start("BEGIN IMMEDIATE", context); }
    // A read transaction: one consistent snapshot for several SELECTs.
    absl::Status BeginRead(const std::string& context) { return Start("BEGIN", context); }
    absl::Status Commit(const std::string& context) {
      STRATA_ASSIGN_OR_RETURN(Stmt stmt, c_->Prepare("COMMIT"));
      STRATA_RETURN_IF_ERROR(stmt.Run(absl::StrCat(context, ": commit")));
      active_ = false;
      return absl::OkStatus();
    }

   private:
    absl::Status Start(const char* sql, const std::string& context) {
      STRATA_ASSIGN_OR_RETURN(Stmt stmt, c_->Prepare(sql));
      STRATA_RETURN_IF_ERROR(stmt.Run(absl::StrCat(context, ": begin")));
      active_ = true;
      return absl::OkStatus();
    }

    SqliteCatalog* c_;
    bool active_ = false;
  };

  int64_t Now() const { return ToMicros(clock_ ? clock_() : std::chrono::system_clock::now()); }

  // A cached prepared statement for `sql` (prepared on first use). Callers hold mu_.
  absl::StatusOr<Stmt> Prepare(const std::string& sql) {
    auto it = cache_.find(sql);
    if (it == cache_.end()) {
      sqlite3_stmt* stmt = nullptr;
      int rc = sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()),
                                  SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
      if (rc != SQLITE_OK) {
        return SqliteError(db_, rc, absl::StrCat(label_, ": preparing '", sql, "'"));
      }
      it = cache_.emplace(sql, stmt).first;
    }
    return Stmt(db_, it->second);
  }

  absl::Status RequireHost(const std::string& id) {
    STRATA_ASSIGN_OR_RETURN(Stmt stmt, Prepare("SELECT 1 FROM hosts WHERE id = ?"));
    stmt.Text(1, id);
    const std::string label = absl::StrCat("host ", Quote(id));
    STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
    if (!row) return absl::NotFoundError(absl::StrCat(label, " not found"));
    return absl::OkStatus();
  }

  static absl::Status CheckProgress(const std::string& label, int progress) {
    if (progress < 0 || progress > 100) {
      return absl::InvalidArgumentError(
          absl::StrCat(label, ": progress ", progress, " is out of range (0..100)"));
    }
    return absl::OkStatus();
  }

  absl::Status InsertItems(const std::string& backup_id, const std::string& label_name,
                           int64_t started_at, const std::vector<BackupItem>& items) {
    const std::string label = BackupLabel(label_name);
    for (const BackupItem& item : items) {
      STRATA_ASSIGN_OR_RETURN(
          Stmt stmt, Prepare(absl::StrCat("INSERT INTO backup_items (backup_id, ", kItemColumns,
                                          ", backup_started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, "
                                          "?, ?, ?)")));
      const std::string what =
          absl::StrCat(label, ": VM ", Quote(item.vm_uuid), " disk ", Quote(item.disk_target));
      absl::Status s = stmt.Text(1, backup_id)
                           .Text(2, item.vm_uuid)
                           .Text(3, item.vm_name)
                           .Text(4, item.disk_target)
                           .Text(5, item.source_path)
                           .Text(6, item.storage_volume)
                           .Text(7, item.snapshot_id)
                           .Text(8, item.path_in_snapshot)
                           .Int(9, item.size_bytes)
                           .Text(10, item.checksum)
                           .Int(11, started_at)
                           .Run(what);
      if (absl::IsAlreadyExists(s)) {
        return absl::AlreadyExistsError(absl::StrCat(what, " already exists"));
      }
      if (absl::IsNotFound(s)) return absl::NotFoundError(absl::StrCat(label, " not found"));
      STRATA_RETURN_IF_ERROR(s);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<HostRecord> ReadHost(const Stmt& stmt) {
    HostRecord h;
    h.id = stmt.ColText(0);
    h.cluster = stmt.ColText(1);
    h.endpoint = stmt.ColText(2);
    const std::string what = absl::StrCat("host ", Quote(h.id));
    STRATA_ASSIGN_OR_RETURN(h.plugins, ParseStoredJson(stmt.ColText(3), what));
    STRATA_ASSIGN_OR_RETURN(h.state, ParseStoredEnum(stmt.ColText(4), what, kHostStates));
    h.last_heartbeat = FromMicros(stmt.ColInt(5));
    h.registered_at = FromMicros(stmt.ColInt(6));
    return h;
  }

  static VmRecord ReadVm(const Stmt& stmt) {
    return VmRecord{.uuid = stmt.ColText(0),
                    .name = stmt.ColText(1),
                    .host = stmt.ColText(2),
                    .state = stmt.ColText(3),
                    .updated_at = FromMicros(stmt.ColInt(4))};
  }

  static HostGraphRecord ReadGraph(const Stmt& stmt) {
    return HostGraphRecord{.host_id = stmt.ColText(0),
                           .version = stmt.ColInt(1),
                           .graph_json = stmt.ColText(2),
                           .updated_at = FromMicros(stmt.ColInt(3))};
  }

  static absl::StatusOr<BackupRecord> ReadBackupRow(const Stmt& stmt) {
    BackupRecord b;
    b.id = stmt.ColText(0);
    b.name = stmt.ColText(1);
    b.requester = stmt.ColText(2);
    const std::string what = BackupLabel(b.id);
    STRATA_ASSIGN_OR_RETURN(b.consistency, ParseStoredEnum(stmt.ColText(3), what, kConsistencies));
    STRATA_ASSIGN_OR_RETURN(b.state, ParseStoredEnum(stmt.ColText(4), what, kBackupStates));
    b.started_at = FromMicros(stmt.ColInt(5));
    if (!stmt.ColNull(6)) b.finished_at = FromMicros(stmt.ColInt(6));
    b.policy = stmt.ColText(7);
    STRATA_ASSIGN_OR_RETURN(b.metadata, ParseStoredJson(stmt.ColText(8), what));
    return b;
  }

  // By id first, then by name. Callers hold mu_ (and a transaction when they read more).
  absl::StatusOr<BackupRecord> ReadBackup(const std::string& id_or_name, bool with_items) {
    BackupRecord b;
    {
      STRATA_ASSIGN_OR_RETURN(Stmt stmt,
                              Prepare(absl::StrCat("SELECT ", kBackupColumns,
                                                   " FROM backups WHERE id = ?1 OR name = ?1 "
                                                   "ORDER BY id = ?1 DESC LIMIT 1")));
      stmt.Text(1, id_or_name);
      const std::string label = BackupLabel(id_or_name);
      STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
      if (!row) return absl::NotFoundError(absl::StrCat(label, " not found"));
      STRATA_ASSIGN_OR_RETURN(b, ReadBackupRow(stmt));
    }
    if (with_items) {
      STRATA_ASSIGN_OR_RETURN(b.items, ReadItems(b.id, std::nullopt));
    }
    return b;
  }

  absl::StatusOr<std::vector<BackupItem>> ReadItems(const std::string& backup_id,
                                                    const std::optional<std::string>& vm_uuid) {
    std::optional<Stmt> stmt;
    if (vm_uuid) {
      STRATA_ASSIGN_OR_RETURN(
          Stmt s, Prepare(absl::StrCat("SELECT ", kItemColumns,
                                       " FROM backup_items WHERE backup_id = ? AND vm_uuid = ? "
                                       "ORDER BY disk_target")));
      s.Text(1, backup_id).Text(2, *vm_uuid);
      stmt.emplace(std::move(s));
    } else {
      STRATA_ASSIGN_OR_RETURN(Stmt s, Prepare(absl::StrCat("SELECT ", kItemColumns,
                                                           " FROM backup_items WHERE backup_id "
                                                           "= ? ORDER BY rowid")));
      s.Text(1, backup_id);
      stmt.emplace(std::move(s));
    }
    std::vector<BackupItem> out;
    while (true) {
      STRATA_ASSIGN_OR_RETURN(bool row, stmt->Step(BackupLabel(backup_id)));
      if (!row) break;
      out.push_back(BackupItem{.vm_uuid = stmt->ColText(0),
                               .vm_name = stmt->ColText(1),
                               .disk_target = stmt->ColText(2),
                               .source_path = stmt->ColText(3),
                               .storage_volume = stmt->ColText(4),
                               .snapshot_id = stmt->ColText(5),
                               .path_in_snapshot = stmt->ColText(6),
                               .size_bytes = stmt->ColInt(7),
                               .checksum = stmt->ColText(8)});
    }
    return out;
  }

  static absl::StatusOr<JobRecord> ReadJobRow(const Stmt& stmt) {
    JobRecord j;
    j.id = stmt.ColText(0);
    j.kind = stmt.ColText(1);
    const std::string what = absl::StrCat("job ", Quote(j.id));
    STRATA_ASSIGN_OR_RETURN(j.state, ParseStoredEnum(stmt.ColText(2), what, kJobStates));
    j.progress = static_cast<int>(stmt.ColInt(3));
    j.message = stmt.ColText(4);
    j.created_at = FromMicros(stmt.ColInt(5));
    j.updated_at = FromMicros(stmt.ColInt(6));
    STRATA_ASSIGN_OR_RETURN(j.detail, ParseStoredJson(stmt.ColText(7), what));
    return j;
  }

  absl::StatusOr<JobRecord> ReadJob(const std::string& id) {
    STRATA_ASSIGN_OR_RETURN(
        Stmt stmt, Prepare(absl::StrCat("SELECT ", kJobColumns, " FROM jobs WHERE id = ?")));
    stmt.Text(1, id);
    const std::string label = absl::StrCat("job ", Quote(id));
    STRATA_ASSIGN_OR_RETURN(bool row, stmt.Step(label));
    if (!row) return absl::NotFoundError(absl::StrCat(label, " not found"));
    return ReadJobRow(stmt);
  }

  std::mutex mu_;
  sqlite3* const db_;  // guarded by mu_
  const std::string label_;
  const std::function<CatalogTime()> clock_;
  std::unordered_map<std::string, sqlite3_stmt*> cache_;  // guarded by mu_
};

}  // namespace

absl::StatusOr<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path) {
  return OpenSqliteCatalog(path, SqliteCatalogOptions{});
}

absl::StatusOr<std::unique_ptr<Catalog>> OpenSqliteCatalog(const std::string& path,
                                                           const SqliteCatalogOptions& options) {
  const std::string label = absl::StrCat("catalog ", Quote(path));
  STRATA_ASSIGN_OR_RETURN(sqlite3 * db,
                          catalog_internal::OpenConnection(path, options.busy_timeout));
  const CatalogTime now = options.clock ? options.clock() : std::chrono::system_clock::now();
  absl::StatusOr<int> applied = catalog_internal::ApplyMigrations(
      db, catalog_internal::EmbeddedMigrations(), ToMicros(now), label);
  if (!applied.ok()) {
    sqlite3_close(db);
    return applied.status();
  }
  return std::make_unique<SqliteCatalog>(db, label, options.clock);
}

}  // namespace strata::server
