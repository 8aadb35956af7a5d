// `stratad catalog rebuild --from-storage` as an operator runs it: the real binary, manifests
// written into a storage tree, and the SQLite catalog it fills opened afterwards.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "strata/backup/manifest.h"
#include "strata/server/catalog.h"
#include "strata/util/process.h"

namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using strata::backup::BackupManifest;
using strata::server::BackupRecord;
using strata::server::BackupState;
using strata::server::Catalog;

constexpr int64_t kT0 = 1'795'000'000'000;

BackupManifest Manifest(const std::string& id, const std::string& name, int64_t start_ms,
                        const std::string& vm_uuid, const std::string& vm_name) {
  BackupManifest m;
  m.backup_id = id;
  m.name = name;
  m.requester = "operator";
  m.policy = "nightly";
  m.consistency_requested = "pause";
  m.started_at_ms = start_ms;
  m.finished_at_ms = start_ms + 3000;
  m.state = "succeeded";
  strata::backup::ManifestVm vm;
  vm.uuid = vm_uuid;
  vm.name = vm_name;
  vm.host = "host-a";
  vm.ok = true;
  vm.consistency_achieved = "pause";
  strata::backup::ManifestDisk disk;
  disk.target = "vda";
  disk.source_path = "/srv/vol/" + vm_name + ".qcow2";
  disk.storage_volume = "sv:dir:fs:1:/srv/vol";
  disk.snapshot_id = name;
  disk.path_in_snapshot = vm_name + ".qcow2";
  disk.size_bytes = 4096;
  vm.disks.push_back(disk);
  m.vms.push_back(vm);
  strata::backup::ManifestSnapshot snap;
  snap.snapshot_id = name;
  snap.storage_volume = disk.storage_volume;
  snap.volume_root = "/srv/vol";
  snap.host = "host-a";
  snap.path = "/srv/vol/.strata-snapshots/" + name;
  m.snapshots.push_back(snap);
  return m;
}

class CatalogRebuildTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "strata-rebuild-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    snapshots_ = dir_ / "vol" / ".strata-snapshots";
    fs::create_directories(snapshots_);
    db_ = (dir_ / "c.db").string();
  }
  void TearDown() override { fs::remove_all(dir_); }

  void Put(const BackupManifest& m) {
    fs::create_directories(snapshots_ / m.name);
    ASSERT_TRUE(strata::backup::WriteManifestFile(
                    (snapshots_ / (m.name + strata::backup::kManifestSuffix)).string(), m)
                    .ok());
  }
  static strata::util::ProcessResult Stratad(std::vector<std::string> args) {
    args.insert(args.begin(), STRATAD_BIN);
    auto result = strata::util::RunProcess(args);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : strata::util::ProcessResult{-1, ""};
  }
  std::unique_ptr<Catalog> OpenCatalog(const std::string& path) {
    auto catalog = strata::server::OpenSqliteCatalog(path);
    EXPECT_TRUE(catalog.ok()) << catalog.status();
    return catalog.ok() ? *std::move(catalog) : nullptr;
  }

  fs::path dir_;
  fs::path snapshots_;
  std::string db_;
};

TEST_F(CatalogRebuildTest, ImportsManifestsIntoTheCatalog) {
  Put(Manifest("b-1", "nightly-1", kT0, "u-web", "web01"));
  Put(Manifest("b-2", "nightly-2", kT0 + 86'400'000, "u-db", "db01"));

  auto result =
      Stratad({"catalog", "rebuild", "--from-storage", dir_.string(), "--db", db_, "--json"});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  const json report = json::parse(result.output);
  EXPECT_EQ(report["files_found"], 2);
  EXPECT_EQ(report["backups_imported"], 2);
  EXPECT_EQ(report["backups_skipped"], 0);
  EXPECT_TRUE(report["errors"].empty());

  {
    auto catalog = OpenCatalog(db_);
    ASSERT_TRUE(catalog);
    absl::StatusOr<std::vector<BackupRecord>> all = catalog->ListBackups({.with_items = true});
    ASSERT_TRUE(all.ok()) << all.status();
    ASSERT_EQ(all->size(), 2u);
    const BackupRecord& newest = (*all)[0];
    EXPECT_EQ(newest.id, "b-2");
    EXPECT_EQ(newest.name, "nightly-2");
    EXPECT_EQ(newest.state, BackupState::kSucceeded);
    EXPECT_EQ(newest.consistency, strata::server::Consistency::kPause);
    EXPECT_EQ(newest.requester, "operator");
    EXPECT_EQ(newest.policy, "nightly");
    ASSERT_EQ(newest.items.size(), 1u);
    EXPECT_EQ(newest.items[0].vm_uuid, "u-db");
    EXPECT_EQ(newest.items[0].disk_target, "vda");
    EXPECT_EQ(newest.items[0].snapshot_id, "nightly-2");
    EXPECT_EQ(newest.items[0].size_bytes, 4096);
    EXPECT_EQ(newest.metadata["manifests"].size(), 1u);
    EXPECT_EQ((*all)[1].items.at(0).vm_name, "web01");
    EXPECT_EQ(catalog->LatestRestorePoint("u-web")->backup.name, "nightly-1");
  }

  // Again: nothing new, nothing changed.
  result = Stratad({"catalog", "rebuild", "--from-storage", dir_.string(), "--db", db_});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("2 manifest files, 2 backups: 0 imported, 2 already in the "
                               "catalog, 0 errors"),
            std::string::npos)
      << result.output;
}

TEST_F(CatalogRebuildTest, BadManifestFailsTheCommandButTheOthersAreImported) {
  Put(Manifest("b-1", "nightly-1", kT0, "u-web", "web01"));
  const std::string bad = (snapshots_ / "broken.manifest.json").string();
  std::ofstream(bad) << "{\"format\": \"strata-backup-manifest\"";
  auto result = Stratad({"catalog", "rebuild", "--from-storage", dir_.string(), "--db", db_});
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("1 imported"), std::string::npos) << result.output;
  EXPECT_NE(result.output.find("error: backup manifest '" + bad + "': not valid JSON"),
            std::string::npos)
      << result.output;
  auto catalog = OpenCatalog(db_);
  ASSERT_TRUE(catalog);
  EXPECT_TRUE(catalog->GetBackup("nightly-1").ok());
}

TEST_F(CatalogRebuildTest, UsesTheDatabaseOfTheConfigFile) {
  Put(Manifest("b-1", "nightly-1", kT0, "u-web", "web01"));
  const std::string from_config = (dir_ / "from-config.db").string();
  const std::string config = (dir_ / "stratad.toml").string();
  std::ofstream(config) << "db = \"" << from_config << "\"\nhttp_listen = \"127.0.0.1:0\"\n";
  auto result =
      Stratad({"catalog", "rebuild", "--from-storage", dir_.string(), "--config", config});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("catalog '" + from_config + "'"), std::string::npos)
      << result.output;
  auto catalog = OpenCatalog(from_config);
  ASSERT_TRUE(catalog);
  EXPECT_TRUE(catalog->GetBackup("b-1").ok());
  EXPECT_FALSE(fs::exists(dir_ / "stratad.db"));

  // --db on the command line wins over the file, as for the server.
  result = Stratad(
      {"catalog", "rebuild", "--from-storage", dir_.string(), "--config", config, "--db", db_});
  ASSERT_EQ(result.exit_code, 0) << result.output;
  EXPECT_NE(result.output.find("catalog '" + db_ + "': 1 manifest file, 1 backup: 1 imported"),
            std::string::npos)
      << result.output;

  // A config file stratad would refuse is refused here too.
  std::ofstream(config) << "db = \"" << from_config << "\"\nno_such_key = 1\n";
  result = Stratad({"catalog", "rebuild", "--from-storage", dir_.string(), "--config", config});
  EXPECT_EQ(result.exit_code, 2) << result.output;
  EXPECT_NE(result.output.find("unknown key 'no_such_key'"), std::string::npos) << result.output;
}

TEST_F(CatalogRebuildTest, MissingStorageDirectoryIsAnError) {
  const std::string missing = (dir_ / "nope").string();
  auto result = Stratad({"catalog", "rebuild", "--from-storage", missing, "--db", db_});
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("stratad: catalog rebuild: storage root '" + missing + "'"),
            std::string::npos)
      << result.output;
}

TEST_F(CatalogRebuildTest, FromStorageIsRequired) {
  auto result = Stratad({"catalog", "rebuild", "--db", db_});
  EXPECT_NE(result.exit_code, 0);
  EXPECT_NE(result.output.find("--from-storage is required"), std::string::npos) << result.output;
}

}  // namespace
