#include "strata/backup/manifest.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::backup {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

BackupManifest Sample() {
  BackupManifest m;
  m.backup_id = "b-20261126T100000Z-abc";
  m.name = "nightly-2026.11.26_1";
  m.requester = "admin";
  m.policy = "nightly";
  m.consistency_requested = "quiesce";
  m.fallback = "crash";
  m.started_at_ms = 1'795'000'000'000;
  m.finished_at_ms = 1'795'000'042'000;
  m.state = "succeeded";
  ManifestVm vm;
  vm.uuid = "11111111-2222-3333-4444-555555555555";
  vm.name = "web01";
  vm.host = "host-a";
  vm.state_before = "running";
  vm.consistency_achieved = "quiesce";
  vm.vm_snapshot = "strata-nightly";
  vm.vm_snapshot_kind = "external";
  vm.saved_xml = "<domain type='kvm'><name>web01</name></domain>";
  vm.ok = true;
  ManifestDisk disk;
  disk.target = "vda";
  disk.source_path = "/srv/gold/web01.qcow2";
  disk.format = "qcow2";
  disk.storage_volume = "sv:dir:fs:1234:/srv/gold";
  disk.volume_name = "gold";
  disk.snapshot_id = "nightly-2026.11.26_1";
  disk.path_in_snapshot = "web01.qcow2";
  disk.snapshot_path = "/srv/gold/.strata-snapshots/nightly-2026.11.26_1/web01.qcow2";
  disk.size_bytes = uint64_t{1} << 40;  // larger than 32 bits
  disk.checksum = "xxh3-128:00ff";
  vm.disks.push_back(disk);
  m.vms.push_back(vm);
  ManifestVm failed;
  failed.uuid = "99999999-2222-3333-4444-555555555555";
  failed.name = "db01";
  failed.host = "host-a";
  failed.ok = false;
  failed.error = "domain 'db01': guest agent not responding";
  m.vms.push_back(failed);
  ManifestSnapshot snap;
  snap.snapshot_id = "nightly-2026.11.26_1";
  snap.storage_volume = "sv:dir:fs:1234:/srv/gold";
  snap.volume_name = "gold";
  snap.volume_root = "/srv/gold";
  snap.plugin = "dir";
  snap.host = "host-a";
  snap.path = "/srv/gold/.strata-snapshots/nightly-2026.11.26_1";
  snap.method = "reflink";
  snap.created_at_ms = 1'795'000'040'000;
  m.snapshots.push_back(snap);
  m.graph = json{{"nodes", json::array({{{"id", "backup:b-1"}, {"type", "backup"}}})},
                 {"edges", json::array()}};
  return m;
}

std::string Message(const absl::Status& s) { return std::string(s.message()); }

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::path(::testing::TempDir()) / "manifest-XXXXXX").string();
    EXPECT_NE(mkdtemp(tmpl.data()), nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void Touch(const fs::path& p, const std::string& text = "{}") {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

// ---- JSON --------------------------------------------------------------------------------------

TEST(ManifestJsonTest, RoundTrip) {
  const BackupManifest m = Sample();
  const json j = ToJson(m);
  EXPECT_EQ(j["format"], "strata-backup-manifest");
  EXPECT_EQ(j["format_version"], kManifestFormatVersion);
  absl::StatusOr<BackupManifest> back = ManifestFromJson(j);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, m);
  absl::StatusOr<BackupManifest> parsed = ParseManifest(j.dump(2));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_EQ(*parsed, m);
}

TEST(ManifestJsonTest, UnknownKeysAreIgnored) {
  json j = ToJson(Sample());
  j["added_by_a_newer_writer"] = {{"x", 1}};
  j["vms"][0]["future"] = "yes";
  j["vms"][0]["disks"][0]["encryption"] = "none";
  j["snapshots"][0]["replicas"] = json::array({"site-b"});
  absl::StatusOr<BackupManifest> m = ManifestFromJson(j);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, Sample());
}

TEST(ManifestJsonTest, OptionalKeysDefault) {
  json j = ToJson(Sample());
  j.erase("requester");
  j.erase("graph");
  j["policy"] = nullptr;  // null counts as absent
  j["vms"][0]["disks"][0].erase("checksum");
  j["vms"][0]["disks"][0].erase("size_bytes");
  absl::StatusOr<BackupManifest> m = ManifestFromJson(j);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->requester, "");
  EXPECT_EQ(m->policy, "");
  EXPECT_EQ(m->graph, json::object());
  EXPECT_EQ(m->vms[0].disks[0].checksum, "");
  EXPECT_EQ(m->vms[0].disks[0].size_bytes, 0u);
}

TEST(ManifestJsonTest, MissingRequiredKeysAreNamed) {
  struct Case {
    std::function<void(json&)> edit;
    std::string message;
  };
  const Case cases[] = {
      {[](json& j) { j.erase("backup_id"); }, "missing required key 'backup_id'"},
      {[](json& j) { j.erase("format"); }, "missing required key 'format'"},
      {[](json& j) { j.erase("format_version"); }, "missing required key 'format_version'"},
      {[](json& j) { j.erase("started_at_ms"); }, "missing required key 'started_at_ms'"},
      {[](json& j) { j.erase("vms"); }, "missing required key 'vms'"},
      {[](json& j) { j["state"] = nullptr; }, "missing required key 'state'"},
      {[](json& j) { j["vms"][1].erase("uuid"); }, "missing required key 'vms[1].uuid'"},
      {[](json& j) { j["vms"][0]["disks"][0].erase("snapshot_id"); },
       "missing required key 'vms[0].disks[0].snapshot_id'"},
      {[](json& j) { j["snapshots"][0].erase("path"); },
       "missing required key 'snapshots[0].path'"},
  };
  for (const Case& c : cases) {
    json j = ToJson(Sample());
    c.edit(j);
    absl::StatusOr<BackupManifest> m = ManifestFromJson(j);
    ASSERT_FALSE(m.ok()) << c.message;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(Message(m.status()), "backup manifest: " + c.message);
  }
}

TEST(ManifestJsonTest, WrongTypesAreNamed) {
  json j = ToJson(Sample());
  j["vms"][0]["disks"][0]["size_bytes"] = -5;
  absl::StatusOr<BackupManifest> m = ManifestFromJson(j);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(Message(m.status()),
            "backup manifest: key 'vms[0].disks[0].size_bytes' must be a whole number, not "
            "negative");
  j = ToJson(Sample());
  j["vms"][0]["ok"] = "yes";
  m = ManifestFromJson(j);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(Message(m.status()), "backup manifest: key 'vms[0].ok' must be true or false");
  j = ToJson(Sample());
  j["started_at_ms"] = "yesterday";
  m = ManifestFromJson(j);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(Message(m.status()), "backup manifest: key 'started_at_ms' must be a whole number");
  m = ManifestFromJson(json::array());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(Message(m.status()), "backup manifest: the document must be a JSON object");
}

TEST(ManifestJsonTest, NewerFormatVersionIsRefused) {
  json j = ToJson(Sample());
  j["format_version"] = kManifestFormatVersion + 1;
  j.erase("backup_id");  // a newer format may lay out anything differently: version first
  absl::StatusOr<BackupManifest> m = ManifestFromJson(j);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Message(m.status()),
            "backup manifest: format_version 2 is newer than this binary supports (1); upgrade "
            "Strata");
}

TEST(ManifestJsonTest, OtherFormatIsRefused) {
  json j = ToJson(Sample());
  j["format"] = "something-else";
  absl::StatusOr<BackupManifest> m = ManifestFromJson(j);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(Message(m.status()),
            "backup manifest: key 'format' is 'something-else', expected 'strata-backup-manifest'");
}

TEST(ManifestJsonTest, MalformedJson) {
  for (const char* text : {"", "{", "{\"format\": }", "not json at all", "{\"a\":1} trailing"}) {
    absl::StatusOr<BackupManifest> m = ParseManifest(text);
    ASSERT_FALSE(m.ok()) << text;
    EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(Message(m.status()), HasSubstr("backup manifest: not valid JSON: ")) << text;
  }
}

// ---- files -------------------------------------------------------------------------------------

TEST(ManifestFileTest, WriteThenReadAndNoTemporaryLeftBehind) {
  TempDir dir;
  const std::string path = (dir.path() / "snap.manifest.json").string();
  ASSERT_TRUE(WriteManifestFile(path, Sample()).ok());
  absl::StatusOr<BackupManifest> m = ReadManifestFile(path);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(*m, Sample());
  // Overwrite: replaced atomically.
  BackupManifest changed = Sample();
  changed.state = "partial";
  ASSERT_TRUE(WriteManifestFile(path, changed).ok());
  EXPECT_EQ(ReadManifestFile(path)->state, "partial");
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    names.push_back(e.path().filename().string());
  }
  EXPECT_THAT(names, ElementsAre("snap.manifest.json"));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);
}

TEST(ManifestFileTest, WriteIntoMissingDirectoryFails) {
  TempDir dir;
  const std::string path = (dir.path() / "nope" / "x.manifest.json").string();
  absl::Status s = WriteManifestFile(path, Sample());
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(Message(s), HasSubstr("backup manifest '" + path + "': cannot create a temporary"));
}

TEST(ManifestFileTest, ReadErrorsNameTheFile) {
  TempDir dir;
  const std::string missing = (dir.path() / "missing.manifest.json").string();
  absl::StatusOr<BackupManifest> m = ReadManifestFile(missing);
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(m.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(m.status()), HasSubstr("backup manifest '" + missing + "': cannot open"));

  const fs::path bad = dir.path() / "bad.manifest.json";
  json j = ToJson(Sample());
  j["vms"][0].erase("name");
  Touch(bad, j.dump());
  m = ReadManifestFile(bad.string());
  ASSERT_FALSE(m.ok());
  EXPECT_EQ(Message(m.status()),
            "backup manifest '" + bad.string() + "': missing required key 'vms[0].name'");
}

// ---- search ------------------------------------------------------------------------------------

TEST(FindManifestFilesTest, FindsManifestsOnlyDirectlyInSnapshotDirectories) {
  TempDir dir;
  const fs::path root = dir.path();
  Touch(root / "gold/.strata-snapshots/s1.manifest.json");
  Touch(root / "gold/.strata-snapshots/s2.manifest.json");
  Touch(root / "gold/.strata-snapshots/s1/disk.qcow2", "data");
  // Inside snapshot data: a copy of a nested volume's snapshots is not looked at.
  Touch(root / "gold/.strata-snapshots/s1/nested/.strata-snapshots/old.manifest.json");
  Touch(root / "deep/a/b/silver/.strata-snapshots/s3.manifest.json");
  // Not in a .strata-snapshots directory, or not a manifest name.
  Touch(root / "gold/stray.manifest.json");
  Touch(root / "gold/.strata-snapshots/notes.json");
  Touch(root / "gold/.strata-snapshots/.manifest.json");
  Touch(root / "gold/.strata-snapshots/.s9.manifest.json.tmp-abcdef");
  fs::create_directories(root / "gold/.strata-snapshots/dir.manifest.json");  // a directory
  // Symlinks are not followed: neither a directory symlink nor a manifest symlink.
  Touch(dir.path() / "elsewhere/.strata-snapshots/x.manifest.json");
  fs::create_directory_symlink(dir.path() / "elsewhere", root / "gold/link-to-elsewhere");
  fs::create_symlink(root / "gold/.strata-snapshots/s1.manifest.json",
                     root / "deep/a/b/silver/.strata-snapshots/link.manifest.json");

  absl::StatusOr<std::vector<std::string>> found =
      FindManifestFiles({(root / "gold").string(), (root / "deep").string()});
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_THAT(*found,
              ElementsAre((root / "deep/a/b/silver/.strata-snapshots/s3.manifest.json").string(),
                          (root / "gold/.strata-snapshots/s1.manifest.json").string(),
                          (root / "gold/.strata-snapshots/s2.manifest.json").string()));

  // Overlapping roots give each file once; a root may be the snapshot directory itself.
  found = FindManifestFiles(
      {root.string(), (root / "gold").string(), (root / "gold/.strata-snapshots").string()});
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->size(), 4u);  // + elsewhere/, reached directly from root
}

TEST(FindManifestFilesTest, RootErrors) {
  TempDir dir;
  const std::string missing = (dir.path() / "missing").string();
  absl::StatusOr<std::vector<std::string>> found = FindManifestFiles({missing});
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(found.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(found.status()), HasSubstr("storage root '" + missing + "'"));
  Touch(dir.path() / "file");
  found = FindManifestFiles({(dir.path() / "file").string()});
  ASSERT_FALSE(found.ok());
  EXPECT_EQ(Message(found.status()),
            "storage root '" + (dir.path() / "file").string() + "' is not a directory");
  found = FindManifestFiles({dir.path().string()});
  ASSERT_TRUE(found.ok());
  EXPECT_THAT(*found, IsEmpty());
}

TEST(FindManifestFilesTest, UnreadableDirectoriesAreReported) {
  if (::geteuid() == 0) GTEST_SKIP() << "root reads every directory";
  TempDir dir;
  Touch(dir.path() / "ok/.strata-snapshots/a.manifest.json");
  Touch(dir.path() / "locked/.strata-snapshots/b.manifest.json");
  fs::permissions(dir.path() / "locked", fs::perms::none);
  std::vector<std::string> unreadable;
  absl::StatusOr<std::vector<std::string>> found =
      FindManifestFiles({dir.path().string()}, &unreadable);
  fs::permissions(dir.path() / "locked", fs::perms::owner_all);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->size(), 1u);
  ASSERT_EQ(unreadable.size(), 1u);
  EXPECT_THAT(unreadable[0],
              HasSubstr("cannot read directory '" + (dir.path() / "locked").string() + "'"));
}

// ---- names -------------------------------------------------------------------------------------

TEST(ValidateNameTest, AcceptsAndRejects) {
  EXPECT_TRUE(ValidateName("backup name", "nightly-2026.11.26_1").ok());
  EXPECT_TRUE(ValidateName("backup name", "a").ok());
  EXPECT_TRUE(ValidateName("backup name", std::string(128, 'x')).ok());
  struct Case {
    std::string name;
    std::string why;
  };
  const Case cases[] = {
      {"../x", "must not start with '.' or '-'"},
      {"a/b", "character '/' is not allowed (letters, digits, '.', '_' and '-' are)"},
      {".hidden", "must not start with '.' or '-'"},
      {"-x", "must not start with '.' or '-'"},
      {"", "must not be empty"},
      {std::string(129, 'x'), "longer than 128 characters (129)"},
      {"a b", "character ' ' is not allowed (letters, digits, '.', '_' and '-' are)"},
      {"tab\tx", "character '\\x09' is not allowed (letters, digits, '.', '_' and '-' are)"},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateName("backup name", c.name);
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    std::string shown = c.name == "tab\tx" ? "tab\\x09x" : c.name;
    EXPECT_EQ(Message(s), "invalid backup name '" + shown + "': " + c.why);
  }
}

}  // namespace
}  // namespace strata::backup
