// The REST API of a whole Stratad (real gRPC and HTTP listeners on loopback ports, a SQLite
// catalog in a temporary file) with a fake agent (a real gRPC server) for host-a.
#include "strata/server/rest_api.h"

#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <filesystem>
#include <mutex>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "strata/server/stratad.h"
#include "testing/sample_host.h"

namespace strata::server {
namespace {

using nlohmann::json;
using ::testing::HasSubstr;

class RestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    db_ = (std::filesystem::temp_directory_path() /
           ("rest_test_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name() + ".db"))
              .string();
    std::filesystem::remove(db_);
    testing::StartSampleAgent(agent_);
    StratadOptions options;
    options.grpc_listen = "127.0.0.1:0";
    options.http_listen = "127.0.0.1:0";
    options.db_path = db_;
    options.http_threads = 300;
    options.max_event_streams = 210;
    options.stream_keepalive = std::chrono::milliseconds(200);
    options.agents = agents_;
    server_ = std::make_unique<Stratad>(options);
    ASSERT_TRUE(server_->Start().ok());
    ASSERT_TRUE(testing::RegisterSampleAgent(*server_, agent_).ok());
    port_ = testing::HttpPort(*server_);
    client_ = std::make_unique<httplib::Client>("127.0.0.1", port_);
    // One connection, so one server thread serves the requests in order (the metrics of one
    // request are recorded after its response is written).
    client_->set_keep_alive(true);
  }
  void TearDown() override {
    client_.reset();
    server_.reset();
    agent_.Stop();
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(db_ + suffix);
  }

  // GET and parse; expects `code`.
  json Get(const std::string& path, int code = 200) {
    auto res = client_->Get(path);
    EXPECT_TRUE(res) << path;
    if (!res) return json();
    EXPECT_EQ(res->status, code) << path << ": " << res->body;
    EXPECT_EQ(res->get_header_value("Content-Type"), "application/json") << path;
    return json::parse(res->body, nullptr, false);
  }
  json Put(const std::string& path, const std::string& body, int code = 200) {
    auto res = client_->Put(path, body, "application/json");
    EXPECT_TRUE(res) << path;
    if (!res) return json();
    EXPECT_EQ(res->status, code) << path << ": " << res->body;
    return json::parse(res->body, nullptr, false);
  }
  json Post(const std::string& path, const std::string& body, int code = 200) {
    auto res = client_->Post(path, body, "application/json");
    EXPECT_TRUE(res) << path;
    if (!res) return json();
    EXPECT_EQ(res->status, code) << path << ": " << res->body;
    return json::parse(res->body, nullptr, false);
  }
  static json Error(int code, const std::string& status, const std::string& message) {
    return {{"error", {{"code", code}, {"status", status}, {"message", message}}}};
  }
  static std::vector<std::string> Ids(const json& graph) {
    std::vector<std::string> ids;
    for (const json& n : graph["nodes"]) ids.push_back(n["id"]);
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  std::string db_;
  AgentConnector* agents_ = nullptr;  // a fixture's own; nullptr: gRPC to the fake agent
  testing::FakeAgent agent_{"host-a"};
  std::unique_ptr<Stratad> server_;
  int port_ = 0;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(RestTest, HealthzAndMetrics) {
  EXPECT_EQ(Get("/healthz"), json({{"status", "ok"}, {"hosts", 1}, {"reachable", 1}}));
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_THAT(res->get_header_value("Content-Type"), HasSubstr("text/plain"));
  EXPECT_THAT(
      res->body,
      HasSubstr("strata_http_requests_total{route=\"/healthz\",method=\"GET\",code=\"200\"} 1\n"));
  EXPECT_THAT(res->body, HasSubstr("strata_hosts{state=\"reachable\"} 1\n"));
  EXPECT_THAT(res->body, HasSubstr("strata_hosts{state=\"unreachable\"} 0\n"));
  EXPECT_THAT(res->body, HasSubstr("strata_registrations_total 1\n"));
  EXPECT_THAT(res->body, HasSubstr("strata_graph_hosts 1\n"));
  // host, cluster, 2 VMs, 2 disks, 2 files, one volume, one storage system
  EXPECT_THAT(res->body, HasSubstr("strata_graph_nodes 10\n"));
  Get("/nope", 404);
  res = client_->Get("/metrics");
  EXPECT_THAT(
      res->body,
      HasSubstr("strata_http_requests_total{route=\"unmatched\",method=\"GET\",code=\"404\"} 1\n"));
}

TEST_F(RestTest, ASecondServerOnTheSameGrpcPortFailsToStart) {
  StratadOptions options;
  options.grpc_listen = server_->grpc_address();
  options.http_listen = "127.0.0.1:0";
  options.db_path = db_ + ".second";
  Stratad second(options);
  absl::Status started = second.Start();
  EXPECT_EQ(started.code(), absl::StatusCode::kUnavailable) << started;
  EXPECT_THAT(started.message(), HasSubstr("cannot listen on " + server_->grpc_address()));
  second.Stop();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(db_ + ".second" + suffix);
  }
}

TEST_F(RestTest, ASecondServerOnTheSameHttpPortFailsToStart) {
  StratadOptions options;
  options.grpc_listen = "127.0.0.1:0";
  options.http_listen = server_->http_address();
  options.db_path = db_ + ".second";
  Stratad second(options);
  absl::Status started = second.Start();
  EXPECT_EQ(started.code(), absl::StatusCode::kUnavailable) << started;
  EXPECT_THAT(started.message(), HasSubstr("HTTP: cannot listen on " + server_->http_address()));
  second.Stop();
  for (const char* suffix : {"", "-wal", "-shm"}) {
    std::filesystem::remove(db_ + ".second" + suffix);
  }
  EXPECT_EQ(Get("/healthz")["status"], "ok");  // the first one still answers
}

TEST_F(RestTest, Hosts) {
  json hosts = Get("/api/v1/hosts");
  ASSERT_EQ(hosts["hosts"].size(), 1u);
  const json& h = hosts["hosts"][0];
  EXPECT_EQ(h["id"], "host-a");
  EXPECT_EQ(h["cluster"], "prod");
  EXPECT_EQ(h["endpoint"], agent_.endpoint());
  EXPECT_EQ(h["state"], "reachable");
  EXPECT_EQ(h["vm_count"], 2);
  EXPECT_EQ(h["graph_version"], 1);
  EXPECT_THAT(h["last_heartbeat"].get<std::string>(),
              ::testing::MatchesRegex("20[0-9-]+T[0-9:.]+Z"));
  EXPECT_EQ(Get("/api/v1/hosts/host-a"), h);
  EXPECT_EQ(Get("/api/v1/hosts/nope", 404), Error(404, "NOT_FOUND", "host 'nope' not found"));
  EXPECT_EQ(Get("/api/v1/clusters"),
            json({{"clusters", {{{"name", "prod"}, {"hosts", {"host-a"}}}}}}));
}

TEST_F(RestTest, RefreshAsksTheAgentAnd503WhenItIsGone) {
  const int calls = agent_.discover_calls();
  EXPECT_EQ(Post("/api/v1/hosts/host-a/refresh", ""),
            json({{"host", "host-a"}, {"vm_count", 2}, {"version", 2}}));
  EXPECT_EQ(agent_.discover_calls(), calls + 1);
  EXPECT_EQ(Post("/api/v1/hosts/nope/refresh", "", 404),
            Error(404, "NOT_FOUND", "host 'nope' not found"));
  agent_.Stop();
  json error = Post("/api/v1/hosts/host-a/refresh", "", 503);
  EXPECT_EQ(error["error"]["status"], "UNAVAILABLE");
  EXPECT_THAT(error["error"]["message"].get<std::string>(),
              HasSubstr("discovery of host 'host-a' by its agent at '" + agent_.endpoint() + "'"));
}

TEST_F(RestTest, Vms) {
  json all = Get("/api/v1/vms");
  EXPECT_EQ(
      all,
      json({{"vms",
             {{{"uuid", "u2"}, {"name", "db01"}, {"host", "host-a"}, {"state", "shut off"}},
              {{"uuid", "u1"}, {"name", "web01"}, {"host", "host-a"}, {"state", "running"}}}}}));
  EXPECT_EQ(Get("/api/v1/vms?name=web*")["vms"].size(), 1u);
  EXPECT_EQ(Get("/api/v1/vms?state=shut%20off")["vms"][0]["name"], "db01");
  EXPECT_EQ(Get("/api/v1/vms?host=host-a&name=*01")["vms"].size(), 2u);
  EXPECT_EQ(Get("/api/v1/vms?name=nothing*")["vms"].size(), 0u);
  EXPECT_EQ(Get("/api/v1/vms?host=nope", 404), Error(404, "NOT_FOUND", "host 'nope' not found"));

  json vm = Get("/api/v1/vms/web01");
  EXPECT_EQ(vm["uuid"], "u1");
  EXPECT_EQ(vm["attrs"]["state"], "running");
  EXPECT_EQ(Ids(vm["graph"]), std::vector<std::string>({"disk:u1:vda", "file:fs:nfs1:/web01.qcow2",
                                                        "ss:nas", "sv:dir:fs:nfs1:/", "vm:u1"}));
  EXPECT_EQ(Get("/api/v1/vms/u1"), vm);
  EXPECT_EQ(Get("/api/v1/vms/web99", 404), Error(404, "NOT_FOUND", "VM 'web99' not found"));
}

TEST_F(RestTest, GraphQueries) {
  json down = Get("/api/v1/graph?select=type=vm%20name=web01&to=storage_system");
  EXPECT_EQ(Ids(down), std::vector<std::string>({"disk:u1:vda", "file:fs:nfs1:/web01.qcow2",
                                                 "ss:nas", "sv:dir:fs:nfs1:/", "vm:u1"}));
  EXPECT_EQ(down["edges"].size(), 4u);
  // Unencoded '=' inside the value works as typed.
  EXPECT_EQ(Get("/api/v1/graph?select=type=vm,name=web01&to=storage_system"), down);
  json up = Get("/api/v1/graph?select=type%3Dstorage_system&direction=up&to=vm");
  EXPECT_EQ(Ids(up).size(), 8u);  // ss, sv, 2 files, 2 disks, 2 VMs (nothing above the VMs)
  json depth = Get("/api/v1/graph?select=id%3Dvm:u1&depth=1");
  EXPECT_EQ(Ids(depth), std::vector<std::string>({"disk:u1:vda", "vm:u1"}));

  auto tree = client_->Get("/api/v1/graph?select=name%3Dweb01&format=tree");
  ASSERT_TRUE(tree);
  EXPECT_EQ(tree->status, 200);
  EXPECT_THAT(tree->get_header_value("Content-Type"), HasSubstr("text/plain"));
  EXPECT_THAT(tree->body, HasSubstr("vm web01 [uuid=u1, state=running, host=host-a]\n"
                                    "  virtual_disk vda\n"));

  json posted =
      Post("/api/v1/graph/query",
           R"({"select":"type=vm name=web01","direction":"down","to":"storage_system","depth":0})");
  EXPECT_EQ(posted, down);
  auto posted_tree = client_->Post(
      "/api/v1/graph/query", R"({"select":"name=web01","format":"tree"})", "application/json");
  ASSERT_TRUE(posted_tree);
  EXPECT_EQ(posted_tree->body, tree->body);
}

TEST_F(RestTest, MalformedInputIs400) {
  EXPECT_EQ(Get("/api/v1/graph?select=type=vmm", 400)["error"]["message"],
            "bad selector 'type=vmm': unknown node type 'vmm' (known types: cluster, host, vm, "
            "vm_config, virtual_disk, passthrough_disk, file, mount_point, fs_volume, "
            "block_device, lun, storage_volume, storage_system, vm_snapshot, storage_snapshot, "
            "backup)");
  EXPECT_EQ(Get("/api/v1/graph?direction=sideways", 400),
            Error(400, "INVALID_ARGUMENT", "bad direction 'sideways': expected down, up or none"));
  EXPECT_EQ(Get("/api/v1/graph?depth=-1", 400),
            Error(400, "INVALID_ARGUMENT",
                  "bad value '-1' for 'depth': expected a whole number from 0 to 1000000"));
  EXPECT_EQ(Get("/api/v1/graph?format=xml", 400),
            Error(400, "INVALID_ARGUMENT", "bad format 'xml': expected json or tree"));
  EXPECT_EQ(Get("/api/v1/events?limit=lots", 400),
            Error(400, "INVALID_ARGUMENT",
                  "bad value 'lots' for 'limit': expected a whole number from 1 to 10000"));
  EXPECT_EQ(Post("/api/v1/graph/query", "{not json", 400),
            Error(400, "INVALID_ARGUMENT", "request body is not valid JSON"));
  EXPECT_EQ(Post("/api/v1/graph/query", "[1]", 400),
            Error(400, "INVALID_ARGUMENT", "request body must be a JSON object"));
  EXPECT_EQ(Post("/api/v1/graph/query", R"({"depth":"deep"})", 400),
            Error(400, "INVALID_ARGUMENT", "field 'depth' must be a whole number"));
  EXPECT_EQ(Post("/api/v1/graph/query", R"({"to":"nothing"})", 400)["error"]["message"]
                .get<std::string>()
                .substr(0, 26),
            "unknown node type 'nothing");
  EXPECT_EQ(Get("/api/v1/backups?state=great", 400)["error"]["code"], 400);
}

TEST_F(RestTest, UnknownPathsMethodsAndBigBodies) {
  EXPECT_EQ(Get("/api/v1/nothing", 404), Error(404, "NOT_FOUND", "no such path '/api/v1/nothing'"));
  auto res = client_->Delete("/api/v1/hosts/host-a");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET");
  EXPECT_EQ(json::parse(res->body),
            Error(405, "METHOD_NOT_ALLOWED",
                  "method DELETE is not allowed on '/api/v1/hosts/host-a' (allowed: GET)"));
  res = client_->Get("/api/v1/backups/x/y");
  EXPECT_EQ(res->status, 404);
  res = client_->Post("/api/v1/hosts", "", "application/json");
  EXPECT_EQ(res->status, 405);

  const std::string big(1536 * 1024, ' ');
  res = client_->Post("/api/v1/graph/query", big, "application/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 413);
  EXPECT_EQ(
      json::parse(res->body),
      Error(413, "PAYLOAD_TOO_LARGE", "request body is larger than the limit of 1048576 bytes"));
  // Just under the limit is fine (and then fails as JSON, not as size).
  const std::string fits(1024 * 1024, ' ');
  EXPECT_EQ(Post("/api/v1/graph/query", fits, 400)["error"]["code"], 400);
}

TEST_F(RestTest, BackupRequestsAreValidatedAndAFailingAgentFailsTheJob) {
  EXPECT_EQ(Post("/api/v1/backups", R"({"vms":["nope"]})", 404),
            Error(404, "NOT_FOUND", "VM 'nope' not found in the inventory"));
  EXPECT_EQ(
      Post("/api/v1/backups", R"({"vms":["web01"],"consistency":"yolo"})", 400),
      Error(400, "INVALID_ARGUMENT", "consistency must be crash, pause or quiesce, not 'yolo'"));
  EXPECT_EQ(Post("/api/v1/backups", R"({"vms":["web01"],"vm_snapshot":"fancy"})", 400),
            Error(400, "INVALID_ARGUMENT",
                  "vm_snapshot must be auto, internal, external or none, not 'fancy'"));
  EXPECT_EQ(Post("/api/v1/backups", R"({"vms":["web01"],"name":"../../etc/passwd"})",
                 400)["error"]["status"],
            "INVALID_ARGUMENT");
  EXPECT_EQ(Post("/api/v1/backups", R"({"vms":"web01","verify":"yes"})", 400),
            Error(400, "INVALID_ARGUMENT", "field 'verify' must be true or false"));
  EXPECT_EQ(Post("/api/v1/backups", "{}", 400)["error"]["message"],
            "nothing to back up: name VMs, a host, a cluster or a selector that matches VMs");
  EXPECT_EQ(Post("/api/v1/restores", R"({"vm":"web01","backup":"nope"})", 404)["error"]["code"],
            404);

  // The fake agent has no Backup service: the job runs and fails, naming the host.
  json started = Post("/api/v1/backups", R"({"select":"type=vm name=web*","name":"n1"})", 202);
  ASSERT_TRUE(started.contains("job")) << started;
  EXPECT_EQ(started["backup_name"], "n1");
  const std::string job_id = started["job"]["id"];
  json job;
  for (int i = 0; i < 200; ++i) {
    job = Get("/api/v1/jobs/" + job_id);
    if (job["state"] == "failed" || job["state"] == "succeeded") break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  EXPECT_EQ(job["state"], "failed") << job;
  EXPECT_EQ(job["kind"], "backup");
  ASSERT_EQ(job["detail"]["vms"].size(), 1u) << job;
  EXPECT_EQ(job["detail"]["vms"][0]["name"], "web01");
  EXPECT_EQ(job["detail"]["vms"][0]["state"], "failed");
  EXPECT_THAT(job["detail"]["vms"][0]["error"].get<std::string>(),
              HasSubstr("backup on host 'host-a'"));
  json backup = Get("/api/v1/backups/n1");
  EXPECT_EQ(backup["state"], "failed") << backup;
  // A name is used once.
  EXPECT_EQ(Post("/api/v1/backups", R"({"vms":["web01"],"name":"n1"})", 409)["error"]["message"],
            "a backup named 'n1' already exists");
}

TEST_F(RestTest, PoliciesAndPrune) {
  EXPECT_EQ(Put("/api/v1/policies/daily", R"({"keep_last":1})"), json({{"name", "daily"},
                                                                       {"keep_last", 1},
                                                                       {"keep_hourly", 0},
                                                                       {"keep_daily", 0},
                                                                       {"keep_weekly", 0},
                                                                       {"keep_monthly", 0}}));
  EXPECT_EQ(Put("/api/v1/policies/bad", R"({"keep_last":-1})", 400)["error"]["message"],
            "field 'keep_last' must be a whole number from 0 to 1000000");
  EXPECT_EQ(Put("/api/v1/policies/..", "{}", 400)["error"]["status"], "INVALID_ARGUMENT");
  EXPECT_EQ(Get("/api/v1/policies")["policies"].size(), 1u);
  EXPECT_EQ(Post("/api/v1/backups/prune", R"({"policy":"weekly"})", 404)["error"]["message"],
            "retention policy 'weekly' not found");

  // Two finished backups of the policy, each in its own snapshot.
  const auto now = std::chrono::system_clock::now();
  for (int i = 0; i < 2; ++i) {
    BackupRecord b;
    b.id = "b" + std::to_string(i);
    b.name = "daily-" + std::to_string(i);
    b.policy = "daily";
    b.state = BackupState::kSucceeded;
    b.started_at = now - std::chrono::hours(2 - i);
    b.finished_at = b.started_at + std::chrono::minutes(1);
    b.items.push_back(BackupItem{.vm_uuid = "u1",
                                 .vm_name = "web01",
                                 .disk_target = "vda",
                                 .source_path = "/v/web01.qcow2",
                                 .storage_volume = "sv:dir:x",
                                 .snapshot_id = b.name,
                                 .path_in_snapshot = "web01.qcow2",
                                 .size_bytes = 1});
    b.metadata = {
        {"manifests",
         {{{"snapshots",
            {{{"storage_volume", "sv:dir:x"}, {"snapshot_id", b.name}, {"host", "host-a"}}}}}}}};
    ASSERT_TRUE(server_->catalog().CreateBackup(b).ok());
  }
  json plan = Post("/api/v1/backups/prune", R"({"policy":"daily","dry_run":true})");
  ASSERT_EQ(plan["kept"].size(), 1u) << plan;
  EXPECT_EQ(plan["kept"][0]["name"], "daily-1");
  ASSERT_EQ(plan["expired"].size(), 1u) << plan;
  EXPECT_EQ(plan["expired"][0]["name"], "daily-0");
  EXPECT_EQ(plan["snapshots_to_delete"], json({"sv:dir:x/daily-0"}));
  EXPECT_EQ(Get("/api/v1/backups")["backups"].size(), 2u);  // a dry run deletes nothing

  // The fake agent cannot delete snapshots: the expired backup's record stays, with the reason.
  json pruned = Post("/api/v1/backups/prune", R"({"policy":"daily"})");
  EXPECT_TRUE(pruned["deleted"].empty()) << pruned;
  ASSERT_EQ(pruned["errors"].size(), 1u) << pruned;
  EXPECT_THAT(pruned["errors"][0].get<std::string>(), HasSubstr("backup 'daily-0'"));
  EXPECT_EQ(Get("/api/v1/backups")["backups"].size(), 2u);
}

TEST_F(RestTest, BackupsRestoresAndJobs) {
  EXPECT_EQ(Get("/api/v1/backups"), json({{"backups", json::array()}}));
  BackupRecord backup;
  backup.id = "b1";
  backup.name = "nightly";
  backup.requester = "test";
  backup.started_at = std::chrono::system_clock::now();
  backup.items.push_back(BackupItem{.vm_uuid = "u1",
                                    .vm_name = "web01",
                                    .disk_target = "vda",
                                    .source_path = "/web01.qcow2",
                                    .size_bytes = 42});
  ASSERT_TRUE(server_->catalog().CreateBackup(backup).ok());
  json list = Get("/api/v1/backups");
  ASSERT_EQ(list["backups"].size(), 1u);
  EXPECT_EQ(list["backups"][0]["name"], "nightly");
  EXPECT_EQ(list["backups"][0]["state"], "running");
  json one = Get("/api/v1/backups/nightly");
  EXPECT_EQ(one["id"], "b1");
  ASSERT_EQ(one["items"].size(), 1u);
  EXPECT_EQ(one["items"][0]["size_bytes"], 42);
  EXPECT_EQ(Get("/api/v1/backups/zzz", 404)["error"]["status"], "NOT_FOUND");

  ASSERT_TRUE(server_->catalog().CreateJob(JobRecord{.id = "j1", .kind = "discovery"}).ok());
  json jobs = Get("/api/v1/jobs");
  ASSERT_EQ(jobs["jobs"].size(), 1u);
  EXPECT_EQ(jobs["jobs"][0]["state"], "queued");
  EXPECT_EQ(Get("/api/v1/jobs/j1")["kind"], "discovery");
  EXPECT_EQ(Get("/api/v1/jobs?kind=backup")["jobs"].size(), 0u);
  EXPECT_EQ(Get("/api/v1/jobs/j9", 404)["error"]["code"], 404);
}

TEST_F(RestTest, EventsList) {
  json events = Get("/api/v1/events");
  ASSERT_EQ(events["events"].size(), 1u);
  const json& e = events["events"][0];
  EXPECT_EQ(e["host"], "host-a");
  EXPECT_EQ(e["kind"], "cluster");
  EXPECT_EQ(e["detail"]["event"], "host-registered");
  EventRecord record{.host = "host-a",
                     .vm_uuid = "u1",
                     .kind = EventKind::kModified,
                     .time = std::chrono::system_clock::now()};
  ASSERT_TRUE(server_->events().Append({record, record}).ok());
  EXPECT_EQ(Get("/api/v1/events?after=1")["events"].size(), 2u);
  EXPECT_EQ(Get("/api/v1/events?after=1&limit=1")["events"].size(), 1u);
  EXPECT_EQ(Get("/api/v1/events?host=host-a")["events"].size(), 3u);
  EXPECT_EQ(Get("/api/v1/events?host=host-z", 404)["error"]["message"], "host 'host-z' not found");
}

// Reads an event stream until `until` appears in what arrived (or 10 s pass).
std::string ReadStream(int port, const httplib::Headers& headers, const std::string& path,
                       const std::string& until, std::function<void()> after_open = {}) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(10, 0);
  std::string got;
  bool opened = false;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  client.Get(path, headers, [&](const char* data, size_t n) {
    got.append(data, n);
    if (!opened) {
      opened = true;
      if (after_open) after_open();
    }
    return got.find(until) == std::string::npos && std::chrono::steady_clock::now() < deadline;
  });
  return got;
}

TEST_F(RestTest, EventStreamDeliversNewEvents) {
  EventRecord record{.host = "host-a",
                     .vm_uuid = "u1",
                     .kind = EventKind::kRemoved,
                     .time = std::chrono::system_clock::now(),
                     .detail = {{"vm_name", "web01"}}};
  std::string got = ReadStream(port_, {}, "/api/v1/events/stream", "\"kind\":\"removed\"",
                               [&] { ASSERT_TRUE(server_->events().Append({record}).ok()); });
  // Only the new event (seq 2), not the registration before the stream opened.
  EXPECT_THAT(got, HasSubstr("id: 2\ndata: {"));
  EXPECT_THAT(got, HasSubstr("\"vm_uuid\":\"u1\""));
  EXPECT_THAT(got, ::testing::Not(HasSubstr("id: 1\n")));
}

TEST_F(RestTest, EventStreamResumesAfterLastEventId) {
  EventRecord record{.host = "host-a",
                     .vm_uuid = "u9",
                     .kind = EventKind::kAdded,
                     .time = std::chrono::system_clock::now()};
  ASSERT_TRUE(server_->events().Append({record, record}).ok());  // seqs 2, 3
  std::string got = ReadStream(port_, {{"Last-Event-ID", "2"}}, "/api/v1/events/stream", "id: 3\n");
  EXPECT_THAT(got, HasSubstr("id: 3\ndata: "));
  EXPECT_THAT(got, ::testing::Not(HasSubstr("id: 2\n")));
  got = ReadStream(port_, {}, "/api/v1/events/stream?after=0", "id: 3\n");
  EXPECT_THAT(got, HasSubstr("id: 1\ndata: "));
  // Idle streams get keep-alive comments.
  got = ReadStream(port_, {}, "/api/v1/events/stream", ": keepalive\n");
  EXPECT_THAT(got, HasSubstr(": keepalive\n"));
  auto res = client_->Get("/api/v1/events/stream", {{"Last-Event-ID", "x"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(
      json::parse(res->body),
      Error(400, "INVALID_ARGUMENT", "bad Last-Event-ID 'x': expected an event sequence number"));
}

// Opens an event stream on a raw socket and leaves it open. Returns the socket.
int OpenRawStream(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  const std::string request =
      "GET /api/v1/events/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n";
  if (::send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return -1;
  }
  char buf[256];
  if (::recv(fd, buf, sizeof(buf), 0) <= 0) {  // the status line and headers: it is served
    ::close(fd);
    return -1;
  }
  return fd;
}

TEST_F(RestTest, TwoHundredEventStreamsDoNotStarveTheApi) {
  std::vector<int> streams;
  for (int i = 0; i < 200; ++i) {
    int fd = OpenRawStream(port_);
    ASSERT_GE(fd, 0) << "stream " << i;
    streams.push_back(fd);
  }
  auto res = client_->Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_THAT(res->body, HasSubstr("strata_event_streams 200\n"));
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 50; ++i) Get("/api/v1/vms/web01");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  EXPECT_LT(elapsed, std::chrono::seconds(2));
  // Beyond the cap (210 here) a stream is refused rather than queued.
  std::vector<int> more;
  for (int i = 0; i < 10; ++i) more.push_back(OpenRawStream(port_));
  auto refused = client_->Get("/api/v1/events/stream");
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(json::parse(refused->body)["error"]["message"],
            "too many event streams open (limit 210); try again later");
  for (int fd : streams) ::close(fd);
  for (int fd : more) {
    if (fd >= 0) ::close(fd);
  }
}

// ---- job streams ------------------------------------------------------------------------------

// Discovery through the fake agent's gRPC; backups as the test scripts them: RunBackup reports
// each progress the test hands over and returns when the test says Finish (web01 backed up).
class ScriptedAgents : public AgentConnector {
 public:
  absl::StatusOr<DiscoveryResult> Discover(const std::string& host_id, const std::string& endpoint,
                                           const std::vector<std::string>& vms) override {
    return grpc_->Discover(host_id, endpoint, vms);
  }
  absl::StatusOr<AgentBackupResult> RunBackup(const std::string&, const std::string&,
                                              const AgentBackupParams&,
                                              const AgentProgressFn& progress) override {
    std::unique_lock lock(mu_);
    ++calls_;
    cv_.notify_all();
    for (;;) {
      cv_.wait(lock, [&] { return released_ || !steps_.empty(); });
      if (steps_.empty()) return absl::UnavailableError("the test ended");
      std::optional<AgentProgress> step = steps_.front();
      steps_.pop_front();
      if (!step) break;
      lock.unlock();
      progress(*step);
      lock.lock();
    }
    AgentBackupResult result;
    result.manifest_json = json{{"vms",
                                 {{{"uuid", "u1"},
                                   {"name", "web01"},
                                   {"host", "host-a"},
                                   {"ok", true},
                                   {"consistency_achieved", "crash"},
                                   {"disks", json::array()}}}}}
                               .dump();
    return result;
  }

  void Progress(AgentProgress p) { Push(std::move(p)); }
  void Finish() { Push(std::nullopt); }
  // Every RunBackup, running or to come, fails (so that no job outlives the test).
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }
  bool WaitForCall(std::chrono::seconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return calls_ > 0; });
  }

 private:
  void Push(std::optional<AgentProgress> step) {
    std::lock_guard lock(mu_);
    steps_.push_back(std::move(step));
    cv_.notify_all();
  }

  std::unique_ptr<AgentConnector> grpc_ = MakeGrpcAgentConnector(GrpcAgentConnectorOptions{});
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::optional<AgentProgress>> steps_;
  int calls_ = 0;
  bool released_ = false;
};

class JobStreamTest : public RestTest {
 protected:
  JobStreamTest() { agents_ = &scripted_; }
  void TearDown() override {
    scripted_.Release();
    RestTest::TearDown();
  }
  ScriptedAgents scripted_;
};

struct JobEvent {
  int64_t id = 0;
  json job;
};

// Reads a job stream, handing each "event: job" to `on_event` as it arrives. True when the
// server ended the stream; false when it did not within 10 s (or answered something else).
bool ReadJobStream(int port, const std::string& path,
                   const std::function<void(const JobEvent&)>& on_event) {
  httplib::Client client("127.0.0.1", port);
  client.set_read_timeout(10, 0);
  std::string buffer;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  auto res = client.Get(path, [&](const char* data, size_t n) {
    buffer.append(data, n);
    for (size_t end; (end = buffer.find("\n\n")) != std::string::npos;) {
      const std::string block = buffer.substr(0, end + 1);
      buffer.erase(0, end + 2);
      std::string event, data_line;
      int64_t id = 0;
      for (size_t start = 0, nl; (nl = block.find('\n', start)) != std::string::npos;
           start = nl + 1) {
        const std::string line = block.substr(start, nl - start);
        if (line.starts_with("event: ")) event = line.substr(7);
        if (line.starts_with("id: ")) id = std::stoll(line.substr(4));
        if (line.starts_with("data: ")) data_line = line.substr(6);
      }
      if (event == "job") on_event({id, json::parse(data_line)});
    }
    return std::chrono::steady_clock::now() < deadline;
  });
  return res && res->status == 200 && res->get_header_value("Content-Type") == "text/event-stream";
}

TEST_F(JobStreamTest, FollowsABackupFromItsCurrentStateToItsEnd) {
  json started = Post("/api/v1/backups", R"({"vms":["web01"],"name":"live"})", 202);
  const std::string id = started["job"]["id"];
  // The agent has the backup and waits for the test: the job stands still.
  ASSERT_TRUE(scripted_.WaitForCall(std::chrono::seconds(10)));
  const json before = Get("/api/v1/jobs/" + id);
  ASSERT_EQ(before["state"], "running") << before;

  std::vector<JobEvent> events;
  const bool ended = ReadJobStream(port_, "/api/v1/jobs/" + id + "/stream", [&](const JobEvent& e) {
    events.push_back(e);
    if (events.size() == 1) {
      scripted_.Progress({"u1", "web01", "copy", "copying vda", 40});
    } else if (e.job["detail"]["vms"][0]["step"] == "copy" && e.job["state"] == "running") {
      scripted_.Finish();
    }
  });
  EXPECT_TRUE(ended) << "the server ends the stream after the job's end";
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events[0].id, 1);
  EXPECT_EQ(events[0].job, before) << "first the job as it is";
  for (size_t i = 1; i < events.size(); ++i) {
    EXPECT_GT(events[i].id, events[i - 1].id);
    EXPECT_NE(events[i].job, events[i - 1].job) << "one event per change";
  }
  const json& progress = events[1].job;
  EXPECT_EQ(progress["state"], "running");
  EXPECT_EQ(progress["progress"], 40);
  EXPECT_EQ(progress["detail"]["vms"][0]["message"], "copying vda");
  const json last = events.back().job;
  EXPECT_EQ(last["state"], "succeeded") << last;
  EXPECT_EQ(last["progress"], 100);
  EXPECT_EQ(last["detail"]["vms"][0]["state"], "succeeded") << "the VM's result";
  EXPECT_EQ(last, Get("/api/v1/jobs/" + id)) << "the final JSON";

  // An ended job: its final state, then the end.
  events.clear();
  EXPECT_TRUE(ReadJobStream(port_, "/api/v1/jobs/" + id + "/stream",
                            [&](const JobEvent& e) { events.push_back(e); }));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].job, last);
}

TEST_F(RestTest, JobStreamOfAnUnknownJobIs404) {
  json error = Get("/api/v1/jobs/j-nope/stream", 404);
  EXPECT_EQ(error["error"]["status"], "NOT_FOUND");
  EXPECT_THAT(error["error"]["message"].get<std::string>(), HasSubstr("j-nope"));
}

TEST_F(RestTest, StopEndsAnOpenJobStream) {
  // A job no worker runs: it never ends by itself.
  ASSERT_TRUE(server_->catalog().CreateJob(JobRecord{.id = "j1", .kind = "discovery"}).ok());
  std::mutex mu;
  std::condition_variable cv;
  std::vector<JobEvent> events;
  bool ended = false;
  std::thread reader([&] {
    ReadJobStream(port_, "/api/v1/jobs/j1/stream", [&](const JobEvent& e) {
      std::lock_guard lock(mu);
      events.push_back(e);
      cv.notify_all();
    });
    std::lock_guard lock(mu);
    ended = true;
    cv.notify_all();
  });
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return !events.empty(); }));
  }
  // A change made outside the job manager still arrives.
  ASSERT_TRUE(server_->catalog().UpdateJob({"j1", JobState::kRunning, 30, "half", {}}).ok());
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return events.size() >= 2; }));
  }
  const auto start = std::chrono::steady_clock::now();
  server_->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  {
    // The reader gives up by itself only after 10 s.
    std::unique_lock lock(mu);
    EXPECT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return ended; }))
        << "the server ended the stream";
  }
  reader.join();
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].job["state"], "queued");
  EXPECT_EQ(events[1].job["progress"], 30);
}

}  // namespace
}  // namespace strata::server
