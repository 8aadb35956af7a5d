// What the web console needs from stratad: its built files served at `/` (content types, no way
// out of the web root), one level of the resource tree at a time (GET /api/v1/graph/children)
// and the VM filters of the tree (cluster, depends_on, no_backup_since_hours). A whole Stratad
// on loopback ports with a fake agent for host-a, as in rest_api_test.cc.
#include <httplib.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "strata/server/stratad.h"
#include "testing/sample_host.h"

namespace strata::server {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

void WriteFile(const std::filesystem::path& path, const std::string& text) {
  std::filesystem::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

class WebConsoleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("web_console_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::remove_all(dir_);
    // The web root, and beside it a file that must never be served.
    WriteFile(dir_ / "web/index.html", "<!doctype html><title>Strata console</title>");
    WriteFile(dir_ / "web/assets/index-abc123.js", "console.log('strata');");
    WriteFile(dir_ / "web/assets/index-abc123.css", "body{}");
    WriteFile(dir_ / "web/.hidden", "hidden-content");
    WriteFile(dir_ / "secret.txt", "root:x:0:0:secret");
    std::filesystem::create_symlink(dir_ / "secret.txt", dir_ / "web/assets/link.txt");

    testing::StartSampleAgent(agent_);
    StratadOptions options;
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.db_path = (dir_ / "catalog.db").string();
    options.http_threads = 16;
    options.web_root = WebRoot();
    server_ = std::make_unique<Stratad>(options);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_TRUE(testing::RegisterSampleAgent(*server_, agent_).ok());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", testing::HttpPort(*server_));
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
    agent_.Stop();
    std::filesystem::remove_all(dir_);
  }
  virtual std::string WebRoot() { return (dir_ / "web").string(); }

  json Get(const std::string& path, int code = 200) {
    auto res = client_->Get(path);
    EXPECT_TRUE(res) << path;
    if (!res) return json();
    EXPECT_EQ(res->status, code) << path << ": " << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json") << path;
    return json::parse(res->body, nullptr, false);
  }
  static std::vector<std::string> Names(const json& list, const char* key = "name") {
    std::vector<std::string> names;
    for (const json& item : list) names.push_back(item[key].get<std::string>());
    return names;
  }

  std::filesystem::path dir_;
  testing::FakeAgent agent_{"host-a"};
  std::unique_ptr<Stratad> server_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(WebConsoleTest, ServesTheConsoleFilesWithTheirContentTypes) {
  auto res = client_->Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/html; charset=utf-8");
  EXPECT_EQ(res->get_header_value("Cache-Control"), "no-cache");
  EXPECT_THAT(res->body, HasSubstr("<title>Strata console</title>"));

  res = client_->Get("/index.html");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->body, HasSubstr("Strata console"));

  res = client_->Get("/assets/index-abc123.js");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/javascript; charset=utf-8");
  EXPECT_EQ(res->get_header_value("Cache-Control"), "public, max-age=31536000, immutable");
  EXPECT_EQ(res->body, "console.log('strata');");

  res = client_->Get("/assets/index-abc123.css");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/css; charset=utf-8");

  res = client_->Head("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  // A missing file is the API's JSON 404; the API keeps its own 404s and 405s.
  EXPECT_EQ(Get("/assets/nope.js", 404)["error"]["message"], "no such path '/assets/nope.js'");
  EXPECT_EQ(Get("/api/v1/nope", 404)["error"]["message"], "no such path '/api/v1/nope'");
  res = client_->Post("/", "{}", "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 404);
  EXPECT_EQ(Get("/api/v1/hosts")["hosts"].size(), 1u);
}

TEST_F(WebConsoleTest, NothingOutsideTheWebRootIsServed) {
  for (const std::string path :
       {"/../secret.txt", "/assets/../../secret.txt", "/assets/%2e%2e/%2e%2e/secret.txt",
        "/assets/..%2f..%2fsecret.txt", "/%2e%2e/secret.txt", "/assets/..%5c..%5csecret.txt",
        "/assets/link.txt", "/.hidden", "/assets/%00/x", "/../../../../etc/passwd",
        "/assets/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"}) {
    auto res = client_->Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_TRUE(res->status == 404 || res->status == 400) << path << ": " << res->status;
    EXPECT_THAT(res->body, Not(HasSubstr("root:x:0:0"))) << path;
    EXPECT_THAT(res->body, Not(HasSubstr("hidden-content"))) << path;
  }
}

class NoWebRootTest : public WebConsoleTest {
  std::string WebRoot() override { return ""; }
};

TEST_F(NoWebRootTest, WithoutAWebRootOnlyTheApiIsServed) {
  EXPECT_EQ(Get("/", 404)["error"]["message"], "no such path '/'");
  EXPECT_EQ(Get("/index.html", 404)["error"]["status"], "NOT_FOUND");
  EXPECT_EQ(Get("/api/v1/hosts")["hosts"].size(), 1u);
}

TEST_F(WebConsoleTest, GraphChildrenExpandTheTreeOneLevelAtATime) {
  // The roots: the cluster holds host-a, so host-a is not a root of its own.
  json roots = Get("/api/v1/graph/children");
  EXPECT_TRUE(roots["node"].is_null());
  ASSERT_EQ(roots["children"].size(), 1u);
  EXPECT_EQ(roots["children"][0]["id"], "cluster:prod");
  EXPECT_EQ(roots["children"][0]["type"], "cluster");
  EXPECT_EQ(roots["children"][0]["children"], 1);

  json hosts = Get("/api/v1/graph/children?id=cluster:prod");
  EXPECT_EQ(hosts["node"]["id"], "cluster:prod");
  ASSERT_EQ(hosts["children"].size(), 1u);
  EXPECT_EQ(hosts["children"][0]["id"], "host:host-a");
  EXPECT_EQ(hosts["children"][0]["edge"], "has_member");

  json vms = Get("/api/v1/graph/children?id=host:host-a&direction=down");
  EXPECT_THAT(Names(vms["children"]), ElementsAre("db01", "web01"));  // by name
  EXPECT_EQ(vms["children"][1]["attrs"]["state"], "running");
  EXPECT_EQ(vms["children"][1]["children"], 1);  // its disk

  // Down to the storage system, one level at a time.
  std::string id = "vm:u1";
  std::vector<std::string> types;
  for (int i = 0; i < 10; ++i) {
    json level = Get("/api/v1/graph/children?id=" + id);
    if (level["children"].empty()) break;
    id = level["children"][0]["id"];
    types.push_back(level["children"][0]["type"]);
  }
  EXPECT_THAT(types, ElementsAre("virtual_disk", "file", "storage_volume", "storage_system"));
  EXPECT_EQ(id, "ss:nas");

  // Upward from the storage volume: the files of both VMs (ids with '/' and ':' as typed).
  json up = Get("/api/v1/graph/children?id=sv:dir:fs:nfs1:/&direction=up");
  EXPECT_EQ(up["direction"], "up");
  EXPECT_THAT(Names(up["children"], "id"),
              ElementsAre("file:fs:nfs1:/db01.qcow2", "file:fs:nfs1:/web01.qcow2"));
  EXPECT_EQ(up["children"][0]["children"], 1);  // one disk rests on each file

  EXPECT_EQ(Get("/api/v1/graph/children?id=vm:nope", 404)["error"]["message"],
            "node 'vm:nope' not found");
  EXPECT_EQ(Get("/api/v1/graph/children?id=vm:u1&direction=sideways", 400)["error"]["message"],
            "bad direction 'sideways': expected down or up");
}

TEST_F(WebConsoleTest, VmFiltersClusterDependsOnAndNoRecentBackup) {
  EXPECT_THAT(Names(Get("/api/v1/vms?cluster=prod")["vms"]), ElementsAre("db01", "web01"));
  EXPECT_EQ(Get("/api/v1/vms?cluster=test", 404)["error"]["message"], "cluster 'test' not found");

  EXPECT_THAT(Names(Get("/api/v1/vms?depends_on=sv:dir:fs:nfs1:/")["vms"]),
              ElementsAre("db01", "web01"));
  EXPECT_THAT(Names(Get("/api/v1/vms?depends_on=ss:nas")["vms"]), ElementsAre("db01", "web01"));
  EXPECT_THAT(Names(Get("/api/v1/vms?depends_on=file:fs:nfs1:/web01.qcow2")["vms"]),
              ElementsAre("web01"));
  EXPECT_THAT(Names(Get("/api/v1/vms?depends_on=vm:u2")["vms"]), ElementsAre("db01"));
  EXPECT_THAT(Names(Get("/api/v1/vms?depends_on=host:host-a")["vms"]), ElementsAre());
  EXPECT_THAT(Names(Get("/api/v1/vms?depends_on=ss:nas&name=web*")["vms"]), ElementsAre("web01"));
  EXPECT_EQ(Get("/api/v1/vms?depends_on=sv:nope", 404)["error"]["message"],
            "node 'sv:nope' not found");

  // No backups at all: every VM lacks a recent one.
  EXPECT_THAT(Names(Get("/api/v1/vms?no_backup_since_hours=24")["vms"]),
              ElementsAre("db01", "web01"));
  auto add_backup = [&](const std::string& id, const std::string& uuid, std::chrono::hours age,
                        BackupState state) {
    BackupRecord b;
    b.id = id;
    b.name = id;
    b.started_at = std::chrono::system_clock::now() - age;
    b.items.push_back(BackupItem{.vm_uuid = uuid, .vm_name = "x", .disk_target = "vda"});
    ASSERT_TRUE(server_->catalog().CreateBackup(b).ok());
    BackupFinish finish;
    finish.backup = id;
    finish.state = state;
    finish.finished_at = b.started_at + std::chrono::minutes(1);
    ASSERT_TRUE(server_->catalog().FinishBackup(finish).ok());
  };
  add_backup("b-web01-new", "u1", std::chrono::hours(1), BackupState::kSucceeded);
  add_backup("b-db01-old", "u2", std::chrono::hours(48), BackupState::kSucceeded);
  add_backup("b-db01-failed", "u2", std::chrono::hours(2), BackupState::kFailed);
  EXPECT_THAT(Names(Get("/api/v1/vms?no_backup_since_hours=24")["vms"]), ElementsAre("db01"));
  EXPECT_THAT(Names(Get("/api/v1/vms?no_backup_since_hours=72")["vms"]), ElementsAre());
  EXPECT_THAT(Names(Get("/api/v1/vms?no_backup_since_hours=0")["vms"]),
              ElementsAre("db01", "web01"));
  EXPECT_EQ(Get("/api/v1/vms?no_backup_since_hours=soon", 400)["error"]["message"],
            "bad value 'soon' for 'no_backup_since_hours': expected a whole number from 0 to "
            "876000");
}

TEST_F(WebConsoleTest, RecentEventsAreTheNewestAndSayWhereTheStreamGoesOn) {
  json none = Get("/api/v1/events/recent");
  const int64_t start = none["latest"].get<int64_t>();  // registering host-a logged one
  EXPECT_EQ(none["events"].size(), static_cast<size_t>(start));
  std::vector<EventRecord> batch;
  for (int i = 0; i < 30; ++i) {
    batch.push_back(EventRecord{.host = "host-a",
                                .vm_uuid = "u1",
                                .kind = EventKind::kModified,
                                .time = std::chrono::system_clock::now(),
                                .detail = {{"vm_name", "web01"}, {"sequence", i}}});
  }
  ASSERT_TRUE(server_->events().Append(batch).ok());
  json recent = Get("/api/v1/events/recent");
  EXPECT_EQ(recent["latest"], start + 30);
  ASSERT_EQ(recent["events"].size(), 20u);
  EXPECT_EQ(recent["events"][0]["seq"], start + 11);
  EXPECT_EQ(recent["events"][19]["seq"], start + 30);
  EXPECT_EQ(recent["events"][19]["detail"]["sequence"], 29);
  EXPECT_EQ(Get("/api/v1/events/recent?limit=3")["events"].size(), 3u);
  EXPECT_EQ(Get("/api/v1/events/recent?limit=0", 400)["error"]["message"],
            "bad value '0' for 'limit': expected a whole number from 1 to 1000");
}

TEST_F(WebConsoleTest, OneVmsEventsWhateverItsHost) {
  std::vector<EventRecord> batch;
  for (int i = 0; i < 9; ++i) {
    batch.push_back(EventRecord{.host = "host-a",
                                .vm_uuid = i % 3 == 0 ? "u-mine" : "u-other",
                                .kind = EventKind::kModified,
                                .time = std::chrono::system_clock::now(),
                                .detail = {{"sequence", i}}});
  }
  ASSERT_TRUE(server_->events().Append(batch).ok());
  json mine = Get("/api/v1/events?vm=u-mine");
  ASSERT_EQ(mine["events"].size(), 3u) << mine.dump();
  for (const json& e : mine["events"]) EXPECT_EQ(e["vm_uuid"], "u-mine");
  EXPECT_EQ(mine["events"][2]["detail"]["sequence"], 6);
  const int64_t after = mine["events"][0]["seq"].get<int64_t>();
  EXPECT_EQ(Get("/api/v1/events?vm=u-mine&limit=1&after=" +
                std::to_string(after))["events"][0]["detail"]["sequence"],
            3);
  EXPECT_TRUE(Get("/api/v1/events?vm=u-never")["events"].empty());
  EXPECT_EQ(Get("/api/v1/events?vm=u-mine&host=host-a", 400)["error"]["message"],
            "filter events by host or by vm, not both");
}

}  // namespace
}  // namespace strata::server
