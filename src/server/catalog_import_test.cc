#include "strata/server/catalog_import.h"

#include <stdlib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "strata/backup/manifest.h"

namespace strata::server {
namespace {

namespace fs = std::filesystem;
using backup::BackupManifest;
using backup::ManifestDisk;
using backup::ManifestSnapshot;
using backup::ManifestVm;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::SizeIs;

constexpr int64_t kT0 = 1'795'000'000'000;  // ms

ManifestVm Vm(const std::string& uuid, const std::string& name, const std::string& host,
              const std::string& volume, const std::string& snapshot, bool ok = true) {
  ManifestVm vm;
  vm.uuid = uuid;
  vm.name = name;
  vm.host = host;
  vm.state_before = "running";
  vm.consistency_achieved = ok ? "crash" : "";
  vm.saved_xml = "<domain><name>" + name + "</name></domain>";
  vm.ok = ok;
  if (!ok) {
    vm.error = "domain '" + name + "': disk 'vda' is on no storage volume";
    return vm;
  }
  for (const char* target : {"vda", "vdb"}) {
    ManifestDisk d;
    d.target = target;
    d.source_path = "/srv/" + volume + "/" + name + "-" + target + ".qcow2";
    d.format = "qcow2";
    d.storage_volume = "sv:dir:fs:1:/srv/" + volume;
    d.volume_name = volume;
    d.snapshot_id = snapshot;
    d.path_in_snapshot = name + "-" + target + ".qcow2";
    d.size_bytes = 1 << 20;
    d.checksum = std::string(target) == "vda" ? "xxh3-128:ab" : "";
    vm.disks.push_back(d);
  }
  return vm;
}

ManifestSnapshot Snap(const std::string& volume, const std::string& snapshot,
                      const std::string& host) {
  ManifestSnapshot s;
  s.snapshot_id = snapshot;
  s.storage_volume = "sv:dir:fs:1:/srv/" + volume;
  s.volume_name = volume;
  s.volume_root = "/srv/" + volume;
  s.plugin = "dir";
  s.host = host;
  s.path = "/srv/" + volume + "/.strata-snapshots/" + snapshot;
  s.method = "reflink";
  s.created_at_ms = kT0 + 1000;
  return s;
}

BackupManifest Manifest(const std::string& id, const std::string& name, int64_t start_ms) {
  BackupManifest m;
  m.backup_id = id;
  m.name = name;
  m.requester = "admin";
  m.policy = "nightly";
  m.consistency_requested = "crash";
  m.started_at_ms = start_ms;
  m.finished_at_ms = start_ms + 5000;
  m.state = "succeeded";
  return m;
}

class CatalogImportTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "import-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    storage_ = dir_ / "storage";
    fs::create_directories(storage_);
    absl::StatusOr<std::unique_ptr<Catalog>> c = OpenSqliteCatalog((dir_ / "c.db").string());
    ASSERT_TRUE(c.ok()) << c.status();
    catalog_ = *std::move(c);
  }
  void TearDown() override {
    catalog_.reset();
    fs::remove_all(dir_);
  }

  // Writes `m` as `<storage>/<volume>/.strata-snapshots/<snapshot>.manifest.json`.
  std::string Put(const std::string& volume, const std::string& snapshot, const BackupManifest& m) {
    const fs::path d = storage_ / volume / ".strata-snapshots";
    fs::create_directories(d / snapshot);
    const std::string path = (d / (snapshot + ".manifest.json")).string();
    absl::Status s = backup::WriteManifestFile(path, m);
    EXPECT_TRUE(s.ok()) << s;
    return path;
  }
  std::string PutText(const std::string& volume, const std::string& snapshot,
                      const std::string& text) {
    const fs::path d = storage_ / volume / ".strata-snapshots";
    fs::create_directories(d);
    const std::string path = (d / (snapshot + ".manifest.json")).string();
    std::ofstream(path) << text;
    return path;
  }

  ImportReport Import() {
    absl::StatusOr<ImportReport> r = ImportManifests(*catalog_, {storage_.string()});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *std::move(r) : ImportReport{};
  }

  // A backup over two hosts: host-a took snapshots on volumes gold and silver (its manifest
  // lies beside both), host-b one on bronze. Plus a later backup on one host where one VM
  // failed.
  void PutTwoBackups() {
    BackupManifest a = Manifest("b-1", "nightly-1", kT0);
    a.vms = {Vm("u-web", "web01", "host-a", "gold", "nightly-1"),
             Vm("u-app", "app01", "host-a", "silver", "nightly-1")};
    a.snapshots = {Snap("gold", "nightly-1", "host-a"), Snap("silver", "nightly-1", "host-a")};
    Put("gold", "nightly-1", a);
    Put("silver", "nightly-1", a);
    BackupManifest b = Manifest("b-1", "nightly-1", kT0 + 100);
    b.finished_at_ms = kT0 + 9000;
    b.vms = {Vm("u-db", "db01", "host-b", "bronze", "nightly-1")};
    b.snapshots = {Snap("bronze", "nightly-1", "host-b")};
    Put("bronze", "nightly-1", b);

    BackupManifest c = Manifest("b-2", "nightly-2", kT0 + 86'400'000);
    c.consistency_requested = "quiesce";
    c.fallback = "crash";
    c.state = "partial";
    c.vms = {Vm("u-web", "web01", "host-a", "gold", "nightly-2"),
             Vm("u-bad", "bad01", "host-a", "gold", "nightly-2", /*ok=*/false)};
    c.snapshots = {Snap("gold", "nightly-2", "host-a")};
    Put("gold", "nightly-2", c);
  }

  fs::path dir_;
  fs::path storage_;
  std::unique_ptr<Catalog> catalog_;
};

TEST_F(CatalogImportTest, ImportsEachBackupOnceFromEveryHostsManifests) {
  PutTwoBackups();
  ImportReport r = Import();
  EXPECT_EQ(r.files_found, 4);
  EXPECT_EQ(r.backups_found, 2);
  EXPECT_EQ(r.backups_imported, 2);
  EXPECT_EQ(r.backups_skipped, 0);
  EXPECT_THAT(r.errors, IsEmpty());
  EXPECT_THAT(r.imported, ElementsAre(ImportedBackup{"b-1", "nightly-1", "succeeded", 2, 6},
                                      ImportedBackup{"b-2", "nightly-2", "partial", 1, 2}));

  absl::StatusOr<BackupRecord> b1 = catalog_->GetBackup("b-1");
  ASSERT_TRUE(b1.ok()) << b1.status();
  EXPECT_EQ(b1->name, "nightly-1");
  EXPECT_EQ(b1->requester, "admin");
  EXPECT_EQ(b1->policy, "nightly");
  EXPECT_EQ(b1->consistency, Consistency::kCrash);
  EXPECT_EQ(b1->state, BackupState::kSucceeded);
  EXPECT_EQ(b1->started_at, CatalogTime(std::chrono::milliseconds(kT0)));
  ASSERT_TRUE(b1->finished_at.has_value());
  EXPECT_EQ(*b1->finished_at, CatalogTime(std::chrono::milliseconds(kT0 + 9000)));
  ASSERT_THAT(b1->items, SizeIs(6));
  auto web_vda = std::find_if(b1->items.begin(), b1->items.end(), [](const BackupItem& i) {
    return i.vm_uuid == "u-web" && i.disk_target == "vda";
  });
  ASSERT_NE(web_vda, b1->items.end());
  const BackupItem& item = *web_vda;
  EXPECT_EQ(item.vm_uuid, "u-web");
  EXPECT_EQ(item.vm_name, "web01");
  EXPECT_EQ(item.disk_target, "vda");
  EXPECT_EQ(item.source_path, "/srv/gold/web01-vda.qcow2");
  EXPECT_EQ(item.storage_volume, "sv:dir:fs:1:/srv/gold");
  EXPECT_EQ(item.snapshot_id, "nightly-1");
  EXPECT_EQ(item.path_in_snapshot, "web01-vda.qcow2");
  EXPECT_EQ(item.size_bytes, 1 << 20);
  EXPECT_EQ(item.checksum, "xxh3-128:ab");
  std::set<std::string> volumes;
  for (const BackupItem& i : b1->items) volumes.insert(i.storage_volume);
  EXPECT_EQ(volumes.size(), 3u);

  // Metadata as JobManager writes it: the manifests (two distinct ones: host-a's, host-b's).
  const json& meta = b1->metadata;
  EXPECT_EQ(meta["state"], "succeeded");
  EXPECT_EQ(meta["consistency_requested"], "crash");
  ASSERT_EQ(meta["manifests"].size(), 2u);
  EXPECT_EQ(meta["manifests"][0]["format"], "strata-backup-manifest");
  std::set<std::string> hosts;
  for (const json& m : meta["manifests"])
    hosts.insert(m["snapshots"][0]["host"].get<std::string>());
  EXPECT_EQ(hosts, (std::set<std::string>{"host-a", "host-b"}));
  EXPECT_EQ(meta["vms"].size(), 3u);
  EXPECT_EQ(meta["imported_from"].size(), 3u);
  EXPECT_EQ(meta["host_errors"], json::object());

  absl::StatusOr<BackupRecord> b2 = catalog_->GetBackup("nightly-2");
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_EQ(b2->state, BackupState::kSucceeded);  // partial: its ok VM can be restored
  EXPECT_EQ(b2->consistency, Consistency::kQuiesce);
  EXPECT_EQ(b2->metadata["state"], "partial");
  EXPECT_EQ(b2->metadata["fallback"], "crash");
  ASSERT_THAT(b2->items, SizeIs(2));  // the failed VM has no items
  for (const BackupItem& i : b2->items) EXPECT_EQ(i.vm_uuid, "u-web");
  const json& vms = b2->metadata["vms"];
  ASSERT_EQ(vms.size(), 2u);
  EXPECT_EQ(vms[1]["ok"], false);
  EXPECT_THAT(vms[1]["error"].get<std::string>(), HasSubstr("on no storage volume"));

  // The newest restore point of web01 is the later backup.
  EXPECT_EQ(catalog_->LatestRestorePoint("u-web")->backup.id, "b-2");
}

TEST_F(CatalogImportTest, SecondRunSkipsWhatIsThere) {
  PutTwoBackups();
  ASSERT_EQ(Import().backups_imported, 2);
  ImportReport r = Import();
  EXPECT_EQ(r.backups_imported, 0);
  EXPECT_EQ(r.backups_skipped, 2);
  EXPECT_THAT(r.skipped, ElementsAre("b-1", "b-2"));
  EXPECT_THAT(r.errors, IsEmpty());
  BackupListOptions all;
  EXPECT_THAT(*catalog_->ListBackups(all), SizeIs(2));
}

TEST_F(CatalogImportTest, BadManifestsAreReportedAndTheOthersImported) {
  PutTwoBackups();
  const std::string broken = PutText("gold", "broken", "{\"format\": ");
  json missing = backup::ToJson(Manifest("b-9", "nightly-9", kT0));
  missing.erase("vms");
  const std::string incomplete = PutText("silver", "incomplete", missing.dump());
  json newer = backup::ToJson(Manifest("b-8", "nightly-8", kT0));
  newer["format_version"] = 7;
  const std::string future = PutText("bronze", "future", newer.dump());

  ImportReport r = Import();
  EXPECT_EQ(r.files_found, 7);
  EXPECT_EQ(r.backups_found, 2);
  EXPECT_EQ(r.backups_imported, 2);
  ASSERT_THAT(r.errors, SizeIs(3));
  // Sorted by path: bronze, gold, silver.
  EXPECT_EQ(r.errors[0], "backup manifest '" + future +
                             "': format_version 7 is newer than this binary supports (1); "
                             "upgrade Strata");
  EXPECT_THAT(r.errors[1], HasSubstr("backup manifest '" + broken + "': not valid JSON: "));
  EXPECT_EQ(r.errors[2], "backup manifest '" + incomplete + "': missing required key 'vms'");
  EXPECT_TRUE(catalog_->GetBackup("b-1").ok());
}

TEST_F(CatalogImportTest, FailedBackupIsStoredAsFailed) {
  BackupManifest m = Manifest("b-f", "nightly-f", kT0);
  m.state = "failed";
  m.vms = {Vm("u-1", "one", "host-a", "gold", "nightly-f", false)};
  Put("gold", "nightly-f", m);
  ImportReport r = Import();
  ASSERT_EQ(r.backups_imported, 1) << ToJson(r).dump();
  absl::StatusOr<BackupRecord> b = catalog_->GetBackup("b-f");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->state, BackupState::kFailed);
  EXPECT_EQ(b->metadata["state"], "failed");
  EXPECT_THAT(b->items, IsEmpty());
}

TEST_F(CatalogImportTest, ConflictsAreReported) {
  // Another backup already holds the name.
  ASSERT_TRUE(catalog_
                  ->CreateBackup(BackupRecord{.id = "other",
                                              .name = "nightly-1",
                                              .state = BackupState::kFailed,
                                              .started_at = CatalogTime(),
                                              .finished_at = CatalogTime()})
                  .ok());
  BackupManifest m = Manifest("b-1", "nightly-1", kT0);
  m.vms = {Vm("u-web", "web01", "host-a", "gold", "nightly-1")};
  const std::string path = Put("gold", "nightly-1", m);
  // Two manifests of one backup id that disagree on its name.
  BackupManifest x = Manifest("b-x", "x-one", kT0);
  const std::string x1 = Put("gold", "x-one", x);
  x.name = "x-two";
  const std::string x2 = Put("silver", "x-two", x);
  // An unknown consistency.
  BackupManifest q = Manifest("b-q", "q", kT0 + 1);
  q.consistency_requested = "telepathic";
  const std::string qpath = Put("bronze", "q", q);

  ImportReport r = Import();
  EXPECT_EQ(r.backups_found, 3);
  EXPECT_EQ(r.backups_imported, 0);
  ASSERT_THAT(r.errors, SizeIs(3)) << ToJson(r).dump(2);
  EXPECT_EQ(r.errors[0],
            "importing backup 'b-1' from '" + path + "': backup 'nightly-1' already exists");
  EXPECT_EQ(r.errors[1], "backup 'b-x': its manifests disagree on the name ('x-one' in '" + x1 +
                             "', 'x-two' in '" + x2 + "'); not imported");
  EXPECT_EQ(r.errors[2], "backup 'b-q' in '" + qpath +
                             "': unknown consistency 'telepathic' (expected one of: crash, "
                             "pause, quiesce); not imported");
}

TEST_F(CatalogImportTest, MissingRootFailsTheWholeImport) {
  const std::string missing = (dir_ / "nope").string();
  absl::StatusOr<ImportReport> r = ImportManifests(*catalog_, {storage_.string(), missing});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("storage root '" + missing + "'"));
}

TEST_F(CatalogImportTest, ReportFormats) {
  PutTwoBackups();
  PutText("gold", "broken", "nope");
  ImportReport r = Import();
  const json j = ToJson(r);
  EXPECT_EQ(j["files_found"], 5);
  EXPECT_EQ(j["backups_imported"], 2);
  EXPECT_EQ(j["imported"][0]["items"], 6);
  EXPECT_EQ(j["errors"].size(), 1u);
  const std::string text = FormatImportReport(r);
  EXPECT_THAT(text, HasSubstr("5 manifest files, 2 backups: 2 imported, 0 already in the "
                              "catalog, 1 error\n"));
  EXPECT_THAT(text, HasSubstr("imported nightly-1 (b-1): succeeded, 6 disks from 2 manifests\n"));
  EXPECT_THAT(text, HasSubstr("\nerror: backup manifest '"));
}

}  // namespace
}  // namespace strata::server
