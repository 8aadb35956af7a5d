#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "sqlite_db.h"
#include "strata/server/catalog.h"

namespace strata::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::SizeIs;

// The value of `s` (failing the test when it is an error). Returned by value, so that a
// range-for over it does not outlive a temporary StatusOr.
template <typename T>
T Value(absl::StatusOr<T> s) {
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : T{};
}

CatalogTime T(int64_t micros) { return CatalogTime(std::chrono::microseconds(micros)); }

// A clock the test moves by hand.
struct FakeClock {
  std::atomic<int64_t> micros{1'700'000'000'000'000};
  std::function<CatalogTime()> Fn() {
    return [this] { return T(micros.load()); };
  }
};

// A raw connection for inspecting (and tampering with) a catalog file from the outside.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    EXPECT_EQ(sqlite3_open(path.c_str(), &db_), SQLITE_OK);
    sqlite3_busy_timeout(db_, 5000);
  }
  explicit RawDb(sqlite3* db) : db_(db) {}
  ~RawDb() { sqlite3_close(db_); }
  RawDb(const RawDb&) = delete;
  RawDb& operator=(const RawDb&) = delete;

  // Runs `sql`; returns the (extended) result code.
  int Exec(const std::string& sql) {
    char* err = nullptr;
    int rc = sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err);
    if (err != nullptr) last_error_ = err;
    sqlite3_free(err);
    return rc == SQLITE_OK ? rc : sqlite3_extended_errcode(db_);
  }
  // The first column of every row, as text.
  std::vector<std::string> Column(const std::string& sql) {
    std::vector<std::string> out;
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db_, sql.c_str(), -1, &stmt, nullptr), SQLITE_OK)
        << sqlite3_errmsg(db_);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      const unsigned char* p = sqlite3_column_text(stmt, 0);
      out.push_back(p != nullptr ? reinterpret_cast<const char*>(p) : "NULL");
    }
    sqlite3_finalize(stmt);
    return out;
  }
  std::string One(const std::string& sql) {
    std::vector<std::string> rows = Column(sql);
    return rows.empty() ? "<no row>" : rows.front();
  }
  sqlite3* get() { return db_; }
  const std::string& last_error() const { return last_error_; }

 private:
  sqlite3* db_ = nullptr;
  std::string last_error_;
};

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (std::filesystem::path(::testing::TempDir()) / "catalog-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    path_ = (dir_ / "catalog.db").string();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<Catalog> Open(const std::string& path) {
    absl::StatusOr<std::unique_ptr<Catalog>> c =
        OpenSqliteCatalog(path, SqliteCatalogOptions{.clock = clock_.Fn()});
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? std::move(*c) : nullptr;
  }
  std::unique_ptr<Catalog> OpenFile() { return Open(path_); }
  std::unique_ptr<Catalog> OpenMemory() { return Open(":memory:"); }

  static void AddHost(Catalog& c, const std::string& id, const std::string& cluster = "") {
    if (!cluster.empty()) {
      ASSERT_TRUE(c.UpsertCluster({cluster}).ok());
    }
    ASSERT_TRUE(
        c.UpsertHost(HostRecord{.id = id, .cluster = cluster, .endpoint = id + ":7443"}).ok());
  }

  static BackupItem Item(const std::string& vm, const std::string& disk, int64_t size = 1024) {
    return BackupItem{.vm_uuid = vm,
                      .vm_name = "name-" + vm,
                      .disk_target = disk,
                      .source_path = "/var/lib/images/" + vm + "-" + disk + ".qcow2",
                      .storage_volume = "/var/lib/images",
                      .snapshot_id = "snap-" + vm,
                      .path_in_snapshot = vm + "-" + disk + ".qcow2",
                      .size_bytes = size,
                      .checksum = "sha256:" + vm + disk};
  }

  static BackupRecord Backup(const std::string& id, int64_t started,
                             std::vector<BackupItem> items = {}) {
    return BackupRecord{.id = id,
                        .name = "name-" + id,
                        .requester = "admin",
                        .consistency = Consistency::kQuiesce,
                        .state = BackupState::kRunning,
                        .started_at = T(started),
                        .policy = "daily",
                        .metadata = {{"k", "v"}},
                        .items = std::move(items)};
  }

  static absl::Status Finish(Catalog& c, const std::string& id, BackupState state,
                             int64_t finished) {
    return c.FinishBackup(BackupFinish{.backup = id, .state = state, .finished_at = T(finished)});
  }

  FakeClock clock_;
  std::filesystem::path dir_;
  std::string path_;
};

// ---- migrations and connection -----------------------------------------------------------

TEST_F(CatalogTest, MigrationsApplyOnceAndAreRecorded) {
  const auto migrations = catalog_internal::EmbeddedMigrations();
  ASSERT_FALSE(migrations.empty());
  EXPECT_STREQ(migrations[0].name, "0001_initial.sql");
  EXPECT_THAT(migrations[0].sql, HasSubstr("CREATE TABLE backup_items"));
  const int64_t first_open = clock_.micros.load();
  OpenFile().reset();
  {
    RawDb raw(path_);
    EXPECT_EQ(raw.One("SELECT COUNT(*) FROM schema_migrations"), std::to_string(migrations.size()));
    EXPECT_EQ(raw.One("SELECT MAX(version) FROM schema_migrations"),
              std::to_string(migrations.size()));
    EXPECT_EQ(raw.One("SELECT name FROM schema_migrations WHERE version = 1"), "0001_initial.sql");
    EXPECT_EQ(raw.One("SELECT DISTINCT applied_at FROM schema_migrations"),
              std::to_string(first_open));
  }
  clock_.micros += 1'000'000;
  OpenFile().reset();  // up to date: applies nothing
  RawDb raw(path_);
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM schema_migrations"), std::to_string(migrations.size()));
  EXPECT_EQ(raw.One("SELECT DISTINCT applied_at FROM schema_migrations"),
            std::to_string(first_open));
  absl::StatusOr<int> applied = catalog_internal::ApplyMigrations(raw.get(), migrations, 0, "test");
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(*applied, 0);
}

TEST_F(CatalogTest, MigrationsRunInOrderAndAFailingOneIsRolledBack) {
  RawDb raw(":memory:");
  const catalog_internal::Migration two[] = {
      {1, "0001_a.sql", "CREATE TABLE a (x INTEGER);"},
      {2, "0002_b.sql", "CREATE TABLE b (y INTEGER); INSERT INTO a VALUES (2);"},
  };
  absl::StatusOr<int> applied = catalog_internal::ApplyMigrations(raw.get(), two, 5, "mem");
  ASSERT_TRUE(applied.ok()) << applied.status();
  EXPECT_EQ(*applied, 2);
  EXPECT_EQ(raw.One("SELECT x FROM a"), "2");  // 0002 ran after 0001
  EXPECT_THAT(raw.Column("SELECT version FROM schema_migrations ORDER BY version"),
              ElementsAre("1", "2"));

  const catalog_internal::Migration three[] = {
      two[0],
      two[1],
      {3, "0003_broken.sql", "CREATE TABLE c (z INTEGER); INSERT INTO missing VALUES (1);"}};
  applied = catalog_internal::ApplyMigrations(raw.get(), three, 6, "mem");
  ASSERT_FALSE(applied.ok());
  EXPECT_THAT(applied.status().message(), HasSubstr("mem: migration 0003_broken.sql"));
  EXPECT_THAT(applied.status().message(), HasSubstr("no such table: missing"));
  EXPECT_EQ(raw.One("SELECT MAX(version) FROM schema_migrations"), "2");
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM sqlite_master WHERE name = 'c'"), "0");

  const catalog_internal::Migration gap[] = {two[0], {3, "0003_x.sql", "SELECT 1;"}};
  applied = catalog_internal::ApplyMigrations(raw.get(), gap, 7, "mem");
  ASSERT_FALSE(applied.ok());
  EXPECT_EQ(std::string(applied.status().message()),
            "mem: migration '0003_x.sql' has version 3, expected 2");
}

TEST_F(CatalogTest, NewerSchemaIsRefused) {
  OpenFile().reset();
  {
    RawDb raw(path_);
    ASSERT_EQ(raw.Exec("INSERT INTO schema_migrations VALUES (999, '0999_future.sql', 0)"),
              SQLITE_OK);
  }
  absl::StatusOr<std::unique_ptr<Catalog>> c = OpenSqliteCatalog(path_);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(c.status().message()),
            "catalog '" + path_ + "': schema version 999 is newer than this binary supports (" +
                std::to_string(catalog_internal::EmbeddedMigrations().size()) +
                "); upgrade stratad");
}

TEST_F(CatalogTest, FileDatabaseIsInWalMode) {
  auto c = OpenFile();
  ASSERT_TRUE(c);
  RawDb raw(path_);
  EXPECT_EQ(raw.One("PRAGMA journal_mode"), "wal");
}

TEST_F(CatalogTest, ConnectionSettings) {
  OpenFile().reset();
  absl::StatusOr<sqlite3*> db =
      catalog_internal::OpenConnection(path_, std::chrono::milliseconds(1234));
  ASSERT_TRUE(db.ok()) << db.status();
  RawDb raw(*db);
  EXPECT_EQ(raw.One("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(raw.One("PRAGMA foreign_keys"), "1");
  EXPECT_EQ(raw.One("PRAGMA synchronous"), "1");  // NORMAL
  EXPECT_EQ(raw.One("PRAGMA busy_timeout"), "1234");
  EXPECT_EQ(raw.One("PRAGMA cache_size"), "-65536");
  // An item for an unknown backup is refused by the foreign key.
  EXPECT_EQ(raw.Exec("INSERT INTO backup_items VALUES ('no-such-backup', 'vm', 'vm', 'vda', "
                     "'/a', '/', 's', 'a', 1, '', 0)"),
            SQLITE_CONSTRAINT_FOREIGNKEY);
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM backup_items"), "0");
}

TEST_F(CatalogTest, ForeignKeysAreEnforcedThroughTheCatalog) {
  auto c = OpenFile();
  ASSERT_TRUE(c);
  absl::Status s = c->UpsertHost(HostRecord{.id = "host-a", .cluster = "nope", .endpoint = "e"});
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(s.message()), "host 'host-a': cluster 'nope' not found");
  // Deleting a backup deletes its items (ON DELETE CASCADE works only with foreign keys on).
  ASSERT_TRUE(c->CreateBackup(Backup("b1", 10, {Item("vm1", "vda"), Item("vm2", "vda")})).ok());
  ASSERT_TRUE(Finish(*c, "b1", BackupState::kSucceeded, 20).ok());
  ASSERT_TRUE(c->DeleteBackup("b1").ok());
  RawDb raw(path_);
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM backup_items"), "0");
}

TEST_F(CatalogTest, ReopenKeepsData) {
  {
    auto c = OpenFile();
    ASSERT_TRUE(c);
    AddHost(*c, "host-a", "prod");
    ASSERT_TRUE(
        c->ReplaceHostVms("host-a", {{.uuid = "u1", .name = "web", .state = "running"}}).ok());
    ASSERT_TRUE(c->PutHostGraph("host-a", 3, R"({"nodes":[]})").ok());
    ASSERT_TRUE(c->AppendEvents({{.host = "host-a", .vm_uuid = "u1", .time = T(5)}}).ok());
    ASSERT_TRUE(c->CreateBackup(Backup("b1", 10, {Item("u1", "vda")})).ok());
    ASSERT_TRUE(c->CreateJob({.id = "j1", .kind = "backup"}).ok());
  }
  auto c = OpenFile();
  ASSERT_TRUE(c);
  EXPECT_EQ(c->GetHost("host-a")->cluster, "prod");
  EXPECT_EQ(c->GetVm("u1")->name, "web");
  EXPECT_EQ(c->GetHostGraph("host-a")->version, 3);
  EXPECT_THAT(*c->ListEvents(0, 10, std::nullopt), SizeIs(1));
  EXPECT_THAT(c->GetBackup("b1")->items, ElementsAre(Item("u1", "vda")));
  EXPECT_EQ(c->GetJob("j1")->kind, "backup");
}

// ---- hosts and clusters ------------------------------------------------------------------

TEST_F(CatalogTest, ClustersRoundTrip) {
  auto c = OpenMemory();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->UpsertCluster({"b"}).ok());
  ASSERT_TRUE(c->UpsertCluster({"a"}).ok());
  ASSERT_TRUE(c->UpsertCluster({"b"}).ok());  // idempotent
  EXPECT_THAT(*c->ListClusters(), ElementsAre(ClusterRecord{"a"}, ClusterRecord{"b"}));
  EXPECT_EQ(std::string(c->UpsertCluster({""}).message()), "cluster name must not be empty");
}

TEST_F(CatalogTest, HostsRoundTrip) {
  auto c = OpenMemory();
  ASSERT_TRUE(c);
  ASSERT_TRUE(c->UpsertCluster({"prod"}).ok());
  HostRecord h{.id = "host-b",
               .cluster = "prod",
               .endpoint = "10.0.0.2:7443",
               .plugins = {{{"name", "libvirt"}, {"version", "1"}}},
               .state = HostState::kReachable,
               .last_heartbeat = T(111)};
  const int64_t registered = clock_.micros.load();
  ASSERT_TRUE(c->UpsertHost(h).ok());
  ASSERT_TRUE(c->UpsertHost({.id = "host-a", .endpoint = "10.0.0.1:7443"}).ok());
  HostRecord want = h;
  want.registered_at = T(registered);
  EXPECT_EQ(*c->GetHost("host-b"), want);

  // An upsert changes every field but registered_at.
  clock_.micros += 50;
  h.endpoint = "10.0.0.9:7443";
  h.cluster = "";
  ASSERT_TRUE(c->UpsertHost(h).ok());
  want.endpoint = "10.0.0.9:7443";
  want.cluster = "";
  EXPECT_EQ(*c->GetHost("host-b"), want);

  absl::StatusOr<std::vector<HostRecord>> hosts = c->ListHosts();
  ASSERT_TRUE(hosts.ok());
  ASSERT_THAT(*hosts, SizeIs(2));
  EXPECT_EQ((*hosts)[0].id, "host-a");
  EXPECT_EQ((*hosts)[1], want);

  ASSERT_TRUE(c->SetHostState("host-b", HostState::kUnreachable, std::nullopt).ok());
  EXPECT_EQ(c->GetHost("host-b")->state, HostState::kUnreachable);
  EXPECT_EQ(c->GetHost("host-b")->last_heartbeat, T(111));
  ASSERT_TRUE(c->SetHostState("host-b", HostState::kReachable, T(222)).ok());
  EXPECT_EQ(c->GetHost("host-b")->state, HostState::kReachable);
  EXPECT_EQ(c->GetHost("host-b")->last_heartbeat, T(222));

  EXPECT_EQ(c->GetHost("host-x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(c->GetHost("host-x").status().message()), "host 'host-x' not found");
  EXPECT_EQ(std::string(c->SetHostState("host-x", HostState::kReachable, std::nullopt).message()),
            "host 'host-x' not found");
  EXPECT_EQ(std::string(c->UpsertHost({.id = "host-c"}).message()),
            "host 'host-c': endpoint must not be empty");
  EXPECT_EQ(std::string(c->UpsertHost({.id = "bad\nid", .endpoint = "e"}).message()),
            "host id 'bad\\nid' contains a control character");
}

// ---- VMs ---------------------------------------------------------------------------------

TEST_F(CatalogTest, VmsRoundTripAndLookups) {
  auto c = OpenMemory();
  ASSERT_TRUE(c);
  AddHost(*c, "host-a");
  AddHost(*c, "host-b");
  const int64_t t0 = clock_.micros.load();
  ASSERT_TRUE(c->ReplaceHostVms("host-a", {{.uuid = "u2", .name = "db", .state = "running"},
                                           {.uuid = "u1", .name = "web", .state = "shut off"}})
                  .ok());
  ASSERT_TRUE(
      c->ReplaceHostVms("host-b", {{.uuid = "u3", .name = "web", .state = "running"}}).ok());
  EXPECT_EQ(*c->GetVm("u1"), (VmRecord{.uuid = "u1",
                                       .name = "web",
                                       .host = "host-a",
                                       .state = "shut off",
                                       .updated_at = T(t0)}));
  EXPECT_EQ(c->GetVm("db")->uuid, "u2");  // by name
  absl::StatusOr<VmRecord> ambiguous = c->GetVm("web");
  EXPECT_EQ(ambiguous.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(ambiguous.status().message()),
            "VM name 'web' is ambiguous (uuid u1 on host 'host-a', uuid u3 on host 'host-b'); "
            "use the UUID");
  EXPECT_EQ(c->GetVm("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(c->GetVm("nope").status().message()), "VM 'nope' not found");

  std::vector<std::string> names;
  for (const VmRecord& vm : Value(c->ListVms(std::nullopt)))
    names.push_back(vm.host + "/" + vm.name);
  EXPECT_THAT(names, ElementsAre("host-a/db", "host-a/web", "host-b/web"));
  EXPECT_THAT(*c->ListVms("host-b"), SizeIs(1));
  EXPECT_EQ(std::string(c->ListVms("host-z").status().message()), "host 'host-z' not found");

  // Replace: u2 unchanged (keeps updated_at), u1 gone, u3 moves here from host-b, u4 new.
  clock_.micros += 100;
  ASSERT_TRUE(c->ReplaceHostVms("host-a", {{.uuid = "u2", .name = "db", .state = "running"},
                                           {.uuid = "u3", .name = "web", .state = "running"},
                                           {.uuid = "u4", .name = "new", .state = "paused"}})
                  .ok());
  EXPECT_EQ(c->GetVm("u1").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(c->GetVm("u2")->updated_at, T(t0));
  EXPECT_EQ(c->GetVm("u3")->host, "host-a");
  EXPECT_EQ(c->GetVm("u3")->updated_at, T(t0 + 100));
  EXPECT_THAT(*c->ListVms("host-b"), SizeIs(0));
  EXPECT_THAT(*c->ListVms("host-a"), SizeIs(3));

  EXPECT_EQ(std::string(c->ReplaceHostVms("host-z", {}).message()), "host 'host-z' not found");
  EXPECT_EQ(std::string(c->ReplaceHostVms(
                             "host-a", {{.uuid = "u9", .name = "x"}, {.uuid = "u9", .name = "y"}})
                            .message()),
            "host 'host-a': VM uuid 'u9' is listed twice");
  ASSERT_TRUE(c->ReplaceHostVms("host-a", {}).ok());
  EXPECT_THAT(*c->ListVms(std::nullopt), SizeIs(0));
}

TEST_F(CatalogTest, ReplaceHostVmsIsAtomic) {
  auto c = OpenFile();
  ASSERT_TRUE(c);
  AddHost(*c, "host-a");
  ASSERT_TRUE(c->ReplaceHostVms("host-a", {{.uuid = "u1", .name = "a", .state = "running"},
                                           {.uuid = "u2", .name = "b", .state = "running"}})
                  .ok());
  {
    RawDb raw(path_);
    ASSERT_EQ(raw.Exec("CREATE TRIGGER poison BEFORE INSERT ON vms WHEN NEW.uuid = 'poison' "
                       "BEGIN SELECT RAISE(ABORT, 'poisoned'); END"),
              SQLITE_OK);
  }
  // u3 and u4 are written before the poisoned row fails: all of it must be undone.
  absl::Status s = c->ReplaceHostVms("host-a", {{.uuid = "u3", .name = "c", .state = "running"},
                                                {.uuid = "u4", .name = "d", .state = "running"},
                                                {.uuid = "poison", .name = "p", .state = "x"}});
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.message(), HasSubstr("host 'host-a': VM 'poison': poisoned"));
  std::vector<std::string> uuids;
  for (const VmRecord& vm : Value(c->ListVms("host-a"))) uuids.push_back(vm.uuid);
  EXPECT_THAT(uuids, ElementsAre("u1", "u2"));
  // The object is still usable afterwards (the transaction was closed).
  ASSERT_TRUE(c->ReplaceHostVms("host-a", {{.uuid = "u5", .name = "e", .state = "running"}}).ok());
  EXPECT_THAT(*c->ListVms("host-a"), SizeIs(1));
}

// ---- host graphs -------------------------------------------------------------------------

TEST_F(CatalogTest, HostGraphsKeepOnlyTheLatestVersion) {
  auto c = OpenFile();
  ASSERT_TRUE(c);
  AddHost(*c, "host-a");
  AddHost(*c, "host-b");
  const int64_t t0 = clock_.micros.load();
  ASSERT_TRUE(c->PutHostGraph("host-a", 1, R"({"v":1})").ok());
  ASSERT_TRUE(c->PutHostGraph("host-b", 7, R"({"v":7})").ok());
  EXPECT_EQ(
      *c->GetHostGraph("host-a"),
      (HostGraphRecord{
          .host_id = "host-a", .version = 1, .graph_json = R"({"v":1})", .updated_at = T(t0)}));
  clock_.micros += 10;
  ASSERT_TRUE(c->PutHostGraph("host-a", 2, R"({"v":2})").ok());
  EXPECT_EQ(*c->GetHostGraph("host-a"), (HostGraphRecord{.host_id = "host-a",
                                                         .version = 2,
                                                         .graph_json = R"({"v":2})",
                                                         .updated_at = T(t0 + 10)}));
  ASSERT_TRUE(c->PutHostGraph("host-a", 2, R"({"v":2})").ok());  // retry
  absl::Status s = c->PutHostGraph("host-a", 1, R"({"v":1})");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(s.message()),
            "host 'host-a': resource graph version 1 is older than the stored version 2");
  EXPECT_EQ(std::string(c->PutHostGraph("host-a", 2, R"({"v":3})").message()),
            "host 'host-a': resource graph version 2 is already stored with different content");
  EXPECT_EQ(std::string(c->PutHostGraph("host-a", 3, "{not json").message()),
            "host 'host-a': resource graph version 3 is not valid JSON");
  EXPECT_EQ(std::string(c->PutHostGraph("host-z", 1, "{}").message()), "host 'host-z' not found");
  EXPECT_EQ(std::string(c->GetHostGraph("host-z").status().message()), "host 'host-z' not found");

  std::vector<std::string> seen;
  for (const HostGraphRecord& g : Value(c->ListHostGraphs())) {
    seen.push_back(g.host_id + "@" + std::to_string(g.version));
  }
  EXPECT_THAT(seen, ElementsAre("host-a@2", "host-b@7"));
  RawDb raw(path_);
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM host_graphs"), "2");
}

// ---- events ------------------------------------------------------------------------------

TEST_F(CatalogTest, EventsRoundTripAndBatchIsAtomic) {
  auto c = OpenMemory();
  ASSERT_TRUE(c);
  AddHost(*c, "host-a");
  std::vector<EventRecord> batch = {
      {.host = "host-a", .vm_uuid = "u1", .kind = EventKind::kAdded, .time = T(1)},
      {.host = "host-a",
       .vm_uuid = "u1",
       .kind = EventKind::kModified,
       .time = T(2),
       .detail = {{"what", "disk"}}},
      {.host = "host-a", .kind = EventKind::kCluster, .time = T(3)},
  };
  absl::StatusOr<std::vector<int64_t>> seqs = c->AppendEvents(batch);
  ASSERT_TRUE(seqs.ok()) << seqs.status();
  ASSERT_THAT(*seqs, SizeIs(3));
  EXPECT_EQ((*seqs)[1], (*seqs)[0] + 1);
  EXPECT_EQ((*seqs)[2], (*seqs)[1] + 1);
  for (size_t i = 0; i < batch.size(); ++i) batch[i].seq = (*seqs)[i];
  EXPECT_EQ(*c->ListEvents(0, 100, std::nullopt), batch);

  absl::StatusOr<std::vector<int64_t>> bad = c->AppendEvents(
      {{.host = "host-a", .vm_uuid = "u2", .time = T(4)}, {.host = "zzz", .vm_uuid = "u3"}});
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(bad.status().message()), "event 2 of 2: host 'zzz' not found");
  EXPECT_THAT(*c->ListEvents(0, 100, std::nullopt), SizeIs(3));  // nothing of the batch stored
  EXPECT_EQ(
      std::string(
          c->AppendEvents({{.host = "host-a", .kind = EventKind::kRemoved}}).status().message()),
      "event 1 of 1 (host 'host-a', removed): VM uuid must not be empty");
  EXPECT_THAT(*c->AppendEvents({}), SizeIs(0));
}

TEST_F(CatalogTest, EventSeqsStayMonotonicAcrossReopen) {
  int64_t last = 0;
  {
    auto c = OpenFile();
    ASSERT_TRUE(c);
    AddHost(*c, "host-a");
    absl::StatusOr<std::vector<int64_t>> seqs =
        c->AppendEvents({{.host = "host-a", .vm_uuid = "u1"}, {.host = "host-a", .vm_uuid = "u2"}});
    ASSERT_TRUE(seqs.ok());
    last = seqs->back();
  }
  {
    RawDb raw(path_);  // prune the newest events: their seqs must still never come back
    ASSERT_EQ(raw.Exec("DELETE FROM events"), SQLITE_OK);
  }
  auto c = OpenFile();
  ASSERT_TRUE(c);
  absl::StatusOr<std::vector<int64_t>> seqs =
      c->AppendEvents({{.host = "host-a", .vm_uuid = "u3"}});
  ASSERT_TRUE(seqs.ok());
  EXPECT_EQ(seqs->front(), last + 1);
}

TEST_F(CatalogTest, ListEventsPages) {
  auto c = OpenMemory();
  ASSERT_TRUE(c);
  AddHost(*c, "host-a");
  AddHost(*c, "host-b");
  std::vector<EventRecord> batch;
  for (int i = 0; i < 25; ++i) {
    batch.push_back({.host = i % 5 == 0 ? "host-b" : "host-a",
                     .vm_uuid = "u" + std::to_string(i),
                     .time = T(i)});
  }
  ASSERT_TRUE(c->AppendEvents(batch).ok());
  std::vector<std::string> all;
  std::vector<size_t> page_sizes;
  int64_t after = 0;
  while (true) {
    absl::StatusOr<std::vector<EventRecord>> page = c->ListEvents(after, 10, std::nullopt);
    ASSERT_TRUE(page.ok());
    page_sizes.push_back(page->size());
    if (page->empty()) break;
    for (const EventRecord& e : *page) {
      EXPECT_GT(e.seq, after);
      after = e.seq;
      all.push_back(e.vm_uuid);
    }
  }
  EXPECT_THAT(page_sizes, ElementsAre(10, 10, 5, 0));
  ASSERT_THAT(all, SizeIs(25));
  for (int i = 0; i < 25; ++i) EXPECT_EQ(all[i], "u" + std::to_string(i));

  absl::StatusOr<std::vector<EventRecord>> b = c->ListEvents(0, 3, "host-b");
  ASSERT_TRUE(b.ok());
  ASSERT_THAT(*b, SizeIs(3));
  EXPECT_EQ((*b)[0].vm_uuid, "u0");
  EXPECT_EQ((*b)[2].vm_uuid, "u10");
  EXPECT_THAT(*c->ListEvents((*b)[2].seq, 10, "host-b"), SizeIs(2));
  EXPECT_EQ(std::string(c->ListEvents(0, 0, std::nullopt).status().message()),
            "limit 0 is out of range (1..10000)");
  EXPECT_EQ(c->ListEvents(0, 10, "host-z").status().code(), absl::StatusCode::kNotFound);

  // One VM's events, whichever host logged them.
  ASSERT_TRUE(c->AppendEvents({{.host = "host-b", .vm_uuid = "u1", .time = T(99)}}).ok());
  absl::StatusOr<std::vector<EventRecord>> u1 = c->ListVmEvents("u1", 0, 10);
  ASSERT_TRUE(u1.ok()) << u1.status();
  ASSERT_THAT(*u1, SizeIs(2));
  EXPECT_EQ((*u1)[0].host, "host-a");
  EXPECT_EQ((*u1)[1].host, "host-b");
  EXPECT_THAT(*c->ListVmEvents("u1", (*u1)[0].seq, 10), SizeIs(1));
  EXPECT_THAT(*c->ListVmEvents("nope", 0, 10), SizeIs(0));
  EXPECT_EQ(c->ListVmEvents("u1", 0, 0).status().code(), absl::StatusCode::kInvalidArgument);
}

// ---- backups -----------------------------------------------------------------------------

TEST_F(CatalogTest, BackupsRoundTrip) {
  auto c = OpenMemory();
  ASSERT_TRUE(c);
  BackupRecord b = Backup("b1", 100, {Item("vm1", "vda"), Item("vm1", "vdb"), Item("vm2", "vda")});
  b.name = "nightly-1";
  ASSERT_TRUE(c->CreateBackup(b).ok());
  EXPECT_EQ(*c->GetBackup("b1"), b);
  EXPECT_EQ(*c->GetBackup("nightly-1"), b);

  absl::Status dup = c->CreateBackup(b);
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(std::string(dup.message()), "backup 'b1' already exists");
  BackupRecord same_name = Backup("b2", 100);
  same_name.name = "nightly-1";
  EXPECT_EQ(std::string(c->CreateBackup(same_name).message()), "backup 'nightly-1' already exists");
  BackupRecord id_is_a_name = Backup("nightly-1", 100);
  EXPECT_EQ(std::string(c->CreateBackup(id_is_a_name).message()),
            "backup 'nightly-1' already exists");

  ASSERT_TRUE(c->AddBackupItems("nightly-1", {Item("vm3", "vda")}).ok());
  EXPECT_EQ(std::string(c->AddBackupItems("b1", {Item("vm3", "vda")}).message()),
            "backup 'b1': VM 'vm3' disk 'vda' already exists");
  EXPECT_EQ(std::string(c->AddBackupItems("nope", {Item("vm3", "vda")}).message()),
            "backup 'nope' not found");

  ASSERT_TRUE(c->FinishBackup({.backup = "b1",
                               .state = BackupState::kSucceeded,
                               .finished_at = T(200),
                               .items = {Item("vm4", "vda")},
                               .metadata_patch = nlohmann::json{{"sizes", 4}, {"k", nullptr}}})
                  .ok());
  BackupRecord want = b;
  want.state = BackupState::kSucceeded;
  want.finished_at = T(200);
  want.metadata = {{"sizes", 4}};
  want.items.push_back(Item("vm3", "vda"));
  want.items.push_back(Item("vm4", "vda"));
  EXPECT_EQ(*c->GetBackup("b1"), want);

  absl::Status again = Finish(*c, "b1", BackupState::kFailed, 300);
  EXPECT_EQ(again.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(again.message()), "backup 'b1' is already finished (succeeded)");
  EXPECT_EQ(std::string(c->AddBackupItems("b1", {Item("vm5", "vda")}).message()),
            "backup 'b1' is already finished (succeeded)");
  EXPECT_EQ(std::string(Finish(*c, "b9", BackupState::kFailed, 300).message()),
            "backup 'b9' not found");
  EXPECT_EQ(Finish(*c, "b1", BackupState::kRunning, 300).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(c->GetBackup("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(c->GetBackup("nope").status().message()), "backup 'nope' not found");
  EXPECT_EQ(
      std::string(
          c->CreateBackup(Backup("b3", 1, {Item("vm1", "vda"), Item("vm1", "vda")})).message()),
      "backup 'name-b3': VM 'vm1' disk 'vda' is listed twice");

  // Listing: newest first, filters.
  ASSERT_TRUE(c->CreateBackup(Backup("b2", 150, {Item("vm2", "vda")})).ok());
  ASSERT_TRUE(c->CreateBackup(Backup("b0", 50, {Item("vm9", "vda")})).ok());
  auto ids = [&](const BackupListOptions& o) {
    std::vector<std::string> out;
    absl::StatusOr<std::vector<BackupRecord>> list = c->ListBackups(o);
    EXPECT_TRUE(list.ok()) << list.status();
    for (const BackupRecord& r : *list) {
      EXPECT_EQ(r.items.empty(), !o.with_items) << r.id;
      out.push_back(r.id);
    }
    return out;
  };
  EXPECT_THAT(ids({}), ElementsAre("b2", "b1", "b0"));
  EXPECT_THAT(ids({.state = BackupState::kSucceeded}), ElementsAre("b1"));
  EXPECT_THAT(ids({.vm_uuid = "vm2"}), ElementsAre("b2", "b1"));
  EXPECT_THAT(ids({.with_items = true, .limit = 2}), ElementsAre("b2", "b1"));

  EXPECT_EQ(std::string(c->DeleteBackup("b2").message()),
            "backup 'b2' is still running; finish it (as failed) before deleting it");
  ASSERT_TRUE(Finish(*c, "b2", BackupState::kFailed, 160).ok());
  ASSERT_TRUE(c->DeleteBackup("name-b2").ok());
  EXPECT_EQ(c->GetBackup("b2").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(c->DeleteBackup("b2").message()), "backup 'b2' not found");
}

TEST_F(CatalogTest, CreateBackupWithItemsIsAtomic) {
  auto c = OpenFile();
  ASSERT_TRUE(c);
  {
    RawDb raw(path_);
    ASSERT_EQ(raw.Exec("CREATE TRIGGER poison BEFORE INSERT ON backup_items WHEN NEW.vm_uuid = "
                       "'poison' BEGIN SELECT RAISE(ABORT, 'poisoned'); END"),
              SQLITE_OK);
  }
  absl::Status s = c->CreateBackup(Backup("b1", 1, {Item("vm1", "vda"), Item("poison", "vda")}));
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(c->GetBackup("b1").status().code(), absl::StatusCode::kNotFound);
  RawDb raw(path_);
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM backup_items"), "0");
}

TEST_F(CatalogTest, LatestRestorePointPicksTheNewestSucceeded) {
  auto c = OpenMemory();
  ASSERT_TRUE(c);
  auto make = [&](const std::string& id, int64_t started, BackupState final_state,
                  std::vector<BackupItem> items) {
    ASSERT_TRUE(c->CreateBackup(Backup(id, started, std::move(items))).ok());
    if (final_state != BackupState::kRunning) {
      ASSERT_TRUE(Finish(*c, id, final_state, started + 10).ok());
    }
  };
  make("old", 100, BackupState::kSucceeded, {Item("vm1", "vda"), Item("vm1", "vdb")});
  make("newest-ok", 300, BackupState::kSucceeded,
       {Item("vm2", "vda"), Item("vm1", "vdb", 7), Item("vm1", "vda", 9)});
  make("failed", 400, BackupState::kFailed, {Item("vm1", "vda")});
  make("running", 500, BackupState::kRunning, {Item("vm1", "vda")});
  make("late-insert", 200, BackupState::kSucceeded, {Item("vm1", "vda")});

  absl::StatusOr<RestorePoint> p = c->LatestRestorePoint("vm1");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->backup.id, "newest-ok");
  EXPECT_EQ(p->backup.state, BackupState::kSucceeded);
  EXPECT_TRUE(p->backup.items.empty());
  EXPECT_THAT(p->items, ElementsAre(Item("vm1", "vda", 9), Item("vm1", "vdb", 7)));

  absl::StatusOr<RestorePoint> none = c->LatestRestorePoint("vm-9");
  EXPECT_EQ(none.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(none.status().message()), "no succeeded backup holds VM 'vm-9'");

  // Once the newest succeeded one is deleted, the next newest is picked.
  ASSERT_TRUE(c->DeleteBackup("newest-ok").ok());
  EXPECT_EQ(c->LatestRestorePoint("vm1")->backup.id, "late-insert");
}

// ---- jobs --------------------------------------------------------------------------------

TEST_F(CatalogTest, JobsRoundTripAndTransitions) {
  auto c = OpenMemory();
  ASSERT_TRUE(c);
  const int64_t t0 = clock_.micros.load();
  JobRecord j{.id = "j1", .kind = "backup", .message = "waiting", .detail = {{"vms", 3}}};
  ASSERT_TRUE(c->CreateJob(j).ok());
  j.created_at = j.updated_at = T(t0);
  EXPECT_EQ(*c->GetJob("j1"), j);
  absl::Status dup = c->CreateJob(j);
  EXPECT_EQ(dup.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(std::string(dup.message()), "job 'j1' already exists");

  clock_.micros += 5;
  absl::StatusOr<JobRecord> u =
      c->UpdateJob({.id = "j1", .state = JobState::kRunning, .progress = 40});
  ASSERT_TRUE(u.ok()) << u.status();
  j.state = JobState::kRunning;
  j.progress = 40;
  j.updated_at = T(t0 + 5);
  EXPECT_EQ(*u, j);
  EXPECT_EQ(*c->GetJob("j1"), j);

  EXPECT_EQ(std::string(c->UpdateJob({.id = "j1", .state = JobState::kQueued}).status().message()),
            "job 'j1' is running and cannot go back to queued");
  EXPECT_EQ(std::string(c->UpdateJob({.id = "j1", .progress = 101}).status().message()),
            "job 'j1': progress 101 is out of range (0..100)");
  ASSERT_TRUE(c->UpdateJob({.id = "j1",
                            .state = JobState::kSucceeded,
                            .progress = 100,
                            .message = "done",
                            .detail = nlohmann::json{{"ok", true}}})
                  .ok());
  EXPECT_EQ(c->GetJob("j1")->detail, (nlohmann::json{{"ok", true}}));
  absl::StatusOr<JobRecord> after = c->UpdateJob({.id = "j1", .message = "again"});
  EXPECT_EQ(after.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(std::string(after.status().message()),
            "job 'j1' is already succeeded and cannot change");
  EXPECT_EQ(std::string(c->GetJob("j9").status().message()), "job 'j9' not found");
  EXPECT_EQ(c->UpdateJob({.id = "j9"}).status().code(), absl::StatusCode::kNotFound);

  clock_.micros += 5;
  ASSERT_TRUE(c->CreateJob({.id = "j2", .kind = "restore"}).ok());
  ASSERT_TRUE(c->CreateJob({.id = "j3", .kind = "backup"}).ok());  // same time as j2
  auto ids = [&](const JobListOptions& o) {
    std::vector<std::string> out;
    for (const JobRecord& r : Value(c->ListJobs(o))) out.push_back(r.id);
    return out;
  };
  EXPECT_THAT(ids({}), ElementsAre("j3", "j2", "j1"));
  EXPECT_THAT(ids({.kind = "backup"}), ElementsAre("j3", "j1"));
  EXPECT_THAT(ids({.state = JobState::kQueued, .kind = "backup"}), ElementsAre("j3"));
  EXPECT_THAT(ids({.limit = 1}), ElementsAre("j3"));
}

// ---- retention policies ------------------------------------------------------------------

TEST_F(CatalogTest, MigrationFromAVersion1DatabaseAddsPolicies) {
  const auto migrations = catalog_internal::EmbeddedMigrations();
  ASSERT_GE(migrations.size(), 2u);
  EXPECT_STREQ(migrations[1].name, "0002_policies.sql");
  {
    // A database as a binary that knew only 0001 left it, with a backup in it.
    absl::StatusOr<sqlite3*> db =
        catalog_internal::OpenConnection(path_, std::chrono::milliseconds(1000));
    ASSERT_TRUE(db.ok()) << db.status();
    RawDb raw(*db);
    absl::StatusOr<int> applied =
        catalog_internal::ApplyMigrations(raw.get(), migrations.first(1), 7, "v1");
    ASSERT_TRUE(applied.ok()) << applied.status();
    EXPECT_EQ(*applied, 1);
    ASSERT_EQ(raw.Exec("INSERT INTO backups (id, name, requester, consistency, state, started_at, "
                       "finished_at, policy) VALUES ('b1', 'nightly-1', 'admin', 'crash', "
                       "'succeeded', 10, 20, 'nightly')"),
              SQLITE_OK)
        << raw.last_error();
    EXPECT_EQ(raw.One("SELECT COUNT(*) FROM sqlite_master WHERE name = 'policies'"), "0");
  }
  auto c = OpenFile();
  ASSERT_TRUE(c);
  {
    RawDb raw(path_);
    EXPECT_THAT(raw.Column("SELECT name FROM schema_migrations ORDER BY version"),
                ElementsAre("0001_initial.sql", "0002_policies.sql"));
    EXPECT_EQ(raw.One("SELECT applied_at FROM schema_migrations WHERE version = 1"), "7");
    EXPECT_EQ(raw.One("SELECT applied_at FROM schema_migrations WHERE version = 2"),
              std::to_string(clock_.micros.load()));
  }
  EXPECT_EQ(c->GetBackup("b1")->policy, "nightly");  // data of version 1 is still there
  ASSERT_TRUE(c->UpsertPolicy({.name = "nightly", .keep_daily = 7}).ok());
  EXPECT_EQ(c->GetPolicy("nightly")->keep_daily, 7);
}

TEST_F(CatalogTest, PoliciesRoundTrip) {
  auto c = OpenFile();
  ASSERT_TRUE(c);
  EXPECT_THAT(Value(c->ListPolicies()), SizeIs(0));
  const RetentionPolicy nightly{.name = "nightly",
                                .keep_last = 3,
                                .keep_hourly = 24,
                                .keep_daily = 7,
                                .keep_weekly = 4,
                                .keep_monthly = 12};
  const RetentionPolicy hourly{.name = "hourly", .keep_hourly = 48};
  ASSERT_TRUE(c->UpsertPolicy(nightly).ok());
  const int64_t created = clock_.micros.load();
  ASSERT_TRUE(c->UpsertPolicy(hourly).ok());
  EXPECT_EQ(*c->GetPolicy("nightly"), nightly);
  EXPECT_THAT(Value(c->ListPolicies()), ElementsAre(hourly, nightly));  // by name

  // Upsert replaces the counts and keeps created_at.
  clock_.micros += 1000;
  RetentionPolicy changed = nightly;
  changed.keep_last = 0;
  changed.keep_monthly = 24;
  ASSERT_TRUE(c->UpsertPolicy(changed).ok());
  EXPECT_EQ(*c->GetPolicy("nightly"), changed);
  {
    RawDb raw(path_);
    EXPECT_EQ(raw.One("SELECT created_at FROM policies WHERE name = 'nightly'"),
              std::to_string(created));
    EXPECT_EQ(raw.One("SELECT updated_at FROM policies WHERE name = 'nightly'"),
              std::to_string(clock_.micros.load()));
  }

  absl::StatusOr<RetentionPolicy> missing = c->GetPolicy("weekly");
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(missing.status().message()), "retention policy 'weekly' not found");

  absl::Status bad = c->UpsertPolicy({.name = "nightly", .keep_daily = -1});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(bad.message()),
            "retention policy 'nightly': keep_daily -1 is out of range (0..100000)");
  bad = c->UpsertPolicy({.name = "../x", .keep_daily = 1});
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(*c->GetPolicy("nightly"), changed);

  // The policy's backups stay when it goes.
  ASSERT_TRUE(c->CreateBackup(Backup("b1", 10)).ok());
  ASSERT_TRUE(c->DeletePolicy("daily").code() == absl::StatusCode::kNotFound);
  ASSERT_TRUE(c->UpsertPolicy({.name = "daily", .keep_daily = 1}).ok());
  ASSERT_TRUE(c->DeletePolicy("daily").ok());
  EXPECT_EQ(c->GetBackup("b1")->policy, "daily");
  absl::Status again = c->DeletePolicy("daily");
  EXPECT_EQ(again.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(std::string(again.message()), "retention policy 'daily' not found");
  EXPECT_THAT(Value(c->ListPolicies()), ElementsAre(hourly, changed));

  // Survives a reopen.
  c.reset();
  c = OpenFile();
  ASSERT_TRUE(c);
  EXPECT_EQ(*c->GetPolicy("hourly"), hourly);
}

TEST(CatalogEnumsTest, NamesRoundTrip) {
  for (HostState v : {HostState::kReachable, HostState::kUnreachable}) {
    EXPECT_EQ(*ParseHostState(ToString(v)), v);
  }
  for (EventKind v :
       {EventKind::kAdded, EventKind::kRemoved, EventKind::kModified, EventKind::kCluster}) {
    EXPECT_EQ(*ParseEventKind(ToString(v)), v);
  }
  for (Consistency v : {Consistency::kCrash, Consistency::kPause, Consistency::kQuiesce}) {
    EXPECT_EQ(*ParseConsistency(ToString(v)), v);
  }
  for (BackupState v : {BackupState::kRunning, BackupState::kSucceeded, BackupState::kFailed}) {
    EXPECT_EQ(*ParseBackupState(ToString(v)), v);
  }
  for (JobState v :
       {JobState::kQueued, JobState::kRunning, JobState::kSucceeded, JobState::kFailed}) {
    EXPECT_EQ(*ParseJobState(ToString(v)), v);
  }
  EXPECT_STREQ(ToString(JobState::kSucceeded), "succeeded");
  EXPECT_EQ(std::string(ParseJobState("done").status().message()),
            "unknown job state 'done' (expected one of: queued, running, succeeded, failed)");
}

// ---- concurrency -------------------------------------------------------------------------

// Each of 4 writers appends events, creates jobs and backups with items; `catalog_for(t)` gives
// the catalog thread t writes through.
void RunWriters(const std::function<Catalog&(int)>& catalog_for, int per_thread,
                std::atomic<int>& errors, std::string& first_error, std::mutex& mu) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      Catalog& c = catalog_for(t);
      auto note = [&](const absl::Status& s) {
        if (s.ok()) return;
        if (errors.fetch_add(1) == 0) {
          std::lock_guard lock(mu);
          first_error = std::string(s.message());
        }
      };
      for (int i = 0; i < per_thread; ++i) {
        const std::string id = std::to_string(t) + "-" + std::to_string(i);
        note(c.AppendEvents({{.host = "host-a", .vm_uuid = "u" + id},
                             {.host = "host-a", .vm_uuid = "v" + id}})
                 .status());
        note(c.CreateJob({.id = "job-" + id, .kind = "backup"}));
        BackupRecord b{.id = "b-" + id,
                       .name = "n-" + id,
                       .started_at = T(i),
                       .items = {{.vm_uuid = "vm" + id, .disk_target = "vda"},
                                 {.vm_uuid = "vm" + id, .disk_target = "vdb"}}};
        note(c.CreateBackup(b));
        note(
            c.UpdateJob({.id = "job-" + id, .state = JobState::kRunning, .progress = 50}).status());
      }
    });
  }
  for (std::thread& th : threads) th.join();
}

void CheckWritersResult(const std::string& path, int per_thread) {
  RawDb raw(path);
  const int n = 4 * per_thread;
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM events"), std::to_string(2 * n));
  EXPECT_EQ(raw.One("SELECT COUNT(DISTINCT seq) FROM events"), std::to_string(2 * n));
  EXPECT_EQ(raw.One("SELECT MAX(seq) - MIN(seq) + 1 FROM events"), std::to_string(2 * n));
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM jobs WHERE state = 'running'"), std::to_string(n));
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM backups"), std::to_string(n));
  EXPECT_EQ(raw.One("SELECT COUNT(*) FROM backup_items"), std::to_string(2 * n));
}

TEST_F(CatalogTest, ConcurrentWritersOnOneObject) {
  auto c = OpenFile();
  ASSERT_TRUE(c);
  AddHost(*c, "host-a");
  constexpr int kPerThread = 100;
  std::atomic<int> errors{0};
  std::string first_error;
  std::mutex mu;
  RunWriters([&](int) -> Catalog& { return *c; }, kPerThread, errors, first_error, mu);
  EXPECT_EQ(errors.load(), 0) << first_error;
  c.reset();
  CheckWritersResult(path_, kPerThread);
}

TEST_F(CatalogTest, ConcurrentWritersOnSeparateConnections) {
  std::vector<std::unique_ptr<Catalog>> catalogs;
  for (int t = 0; t < 4; ++t) {
    catalogs.push_back(OpenFile());
    ASSERT_TRUE(catalogs.back());
  }
  AddHost(*catalogs[0], "host-a");
  constexpr int kPerThread = 50;
  std::atomic<int> errors{0};
  std::string first_error;
  std::mutex mu;
  RunWriters([&](int t) -> Catalog& { return *catalogs[t]; }, kPerThread, errors, first_error, mu);
  EXPECT_EQ(errors.load(), 0) << first_error;
  catalogs.clear();
  CheckWritersResult(path_, kPerThread);
}

}  // namespace
}  // namespace strata::server
