// The `strata` commands against a real HTTP server on loopback that answers canned JSON: the
// requests they send (paths, escaped query parameters, bodies) and what they print.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "commands.h"
#include "render.h"

namespace strata::cli {
namespace {

using nlohmann::json;

struct Canned {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
};

struct Seen {
  std::string method;
  std::string target;                              // raw, as sent
  std::multimap<std::string, std::string> params;  // decoded
  std::string body;
};

// A loopback HTTP server answering canned responses by path (404 JSON otherwise).
class FakeServer {
 public:
  explicit FakeServer(std::string prefix = "") : prefix_(std::move(prefix)) {
    auto handler = [this](const httplib::Request& req, httplib::Response& res) {
      std::lock_guard lock(mu_);
      seen_.push_back(
          {req.method, req.target,
           std::multimap<std::string, std::string>(req.params.begin(), req.params.end()),
           req.body});
      auto it = canned_.find(req.method + " " + req.path);
      if (it == canned_.end()) {
        res.status = 404;
        res.set_content(R"({"error":{"code":404,"status":"NOT_FOUND","message":"no route"}})",
                        "application/json");
        return;
      }
      res.status = it->second.status;
      res.set_content(it->second.body, it->second.content_type.c_str());
    };
    server_.Get(".*", handler);
    server_.Post(".*", handler);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeServer() {
    server_.stop();
    thread_.join();
  }
  void Answer(const std::string& method_and_path, Canned canned) {
    std::lock_guard lock(mu_);
    canned_[method_and_path.substr(0, method_and_path.find(' ') + 1) + prefix_ +
            method_and_path.substr(method_and_path.find(' ') + 1)] = std::move(canned);
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + prefix_; }

 private:
  std::string prefix_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, Canned> canned_;
  std::vector<Seen> seen_;
};

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

template <class F>
Outcome RunCli(const std::string& server, bool json_output, F&& command) {
  std::ostringstream out, err;
  Cli cli({server, json_output}, out, err);
  int code = command(cli);
  return {code, out.str(), err.str()};
}

// ---- requests --------------------------------------------------------------------------------

TEST(RequestTest, QueryValuesAreEscaped) {
  EXPECT_EQ(EscapeQueryValue("type=vm name=web*"), "type%3Dvm%20name%3Dweb%2A");
  EXPECT_EQ(EscapeQueryValue("a&b#c/d?e+f%g"), "a%26b%23c%2Fd%3Fe%2Bf%25g");
  EXPECT_EQ(EscapeQueryValue("Ünï"), "%C3%9Cn%C3%AF");
  EXPECT_EQ(EscapeQueryValue("host-a_1.b~"), "host-a_1.b~");
  EXPECT_EQ(QueryString({}), "");
  EXPECT_EQ(QueryString({{"a", ""}, {"b", "1"}, {"c", "x y"}}), "?b=1&c=x%20y");
}

TEST(RequestTest, ArgumentsMapToTargets) {
  EXPECT_EQ(VmsTarget({}), "/api/v1/vms");
  EXPECT_EQ(VmsTarget({"host-a", "web*", "running"}),
            "/api/v1/vms?host=host-a&name=web%2A&state=running");
  EXPECT_EQ(VmsTarget({"", "", "shut off"}), "/api/v1/vms?state=shut%20off");
  EXPECT_EQ(EventsTarget({}), "/api/v1/events");
  EXPECT_EQ(EventsTarget({12, 50, "host-b"}), "/api/v1/events?after=12&limit=50&host=host-b");
  EXPECT_EQ(EventsTarget({0, std::nullopt, ""}), "/api/v1/events?after=0");

  FindOptions find;
  find.selector = "type=storage_volume name=gold";
  find.direction = "up";
  find.to = "vm";
  find.depth = 4;
  EXPECT_EQ(FindTarget(find, false),
            "/api/v1/graph?select=type%3Dstorage_volume%20name%3Dgold&direction=up&to=vm&depth=4"
            "&format=json");
  find.tree = true;
  EXPECT_EQ(FindTarget(find, false),
            "/api/v1/graph?select=type%3Dstorage_volume%20name%3Dgold&direction=up&to=vm&depth=4"
            "&format=tree");
  EXPECT_EQ(FindTarget(find, true).find("format=tree"), std::string::npos)
      << "--json wins over --tree";

  EXPECT_EQ(TreeTargets({}, false),
            std::vector<std::string>{
                "/api/v1/graph?select=type%3Dvm&direction=down&to=storage_system&format=tree"});
  EXPECT_EQ(TreeTargets({{"web01", "0b6c1a52-3d7e-4f10-9a2b-5c8d7e6f1a20"}}, true),
            (std::vector<std::string>{
                "/api/v1/graph?select=type%3Dvm%20name%3Dweb01&direction=down&to=storage_system"
                "&format=json",
                "/api/v1/graph?select=id%3Dvm%3A0b6c1a52-3d7e-4f10-9a2b-5c8d7e6f1a20"
                "&direction=down&to=storage_system&format=json"}));
}

TEST(RequestTest, VmSelectorKeepsSelectorTermsIntact) {
  EXPECT_EQ(VmSelector("web*"), "type=vm name=web*");
  EXPECT_EQ(VmSelector("my vm,2"), "type=vm name=my?vm?2");
  EXPECT_EQ(VmSelector("0B6C1A52-3D7E-4F10-9A2B-5C8D7E6F1A20"),
            "id=vm:0B6C1A52-3D7E-4F10-9A2B-5C8D7E6F1A20");
  EXPECT_EQ(VmSelector("0b6c1a52-3d7e-4f10-9a2b-5c8d7e6f1a2"),
            "type=vm name=0b6c1a52-3d7e-4f10-9a2b-5c8d7e6f1a2");
}

TEST(RequestTest, BodiesAndServerResolution) {
  EXPECT_EQ(BackupBody({{"web01", "db01"}, "nightly", "pause", ""}),
            json::parse(R"({"vms":["web01","db01"],"name":"nightly","consistency":"pause"})"));
  EXPECT_EQ(RestoreBody({"web01", "b-1", ""}), json::parse(R"({"vm":"web01","backup":"b-1"})"));
  EXPECT_EQ(ResolveServer("http://a:1", "http://b:2"), "http://a:1");
  EXPECT_EQ(ResolveServer("", "http://b:2"), "http://b:2");
  EXPECT_EQ(ResolveServer("", ""), "http://127.0.0.1:8080");
  EXPECT_EQ(ResolveServer("", nullptr), "http://127.0.0.1:8080");
}

TEST(RequestTest, ErrorMessages) {
  EXPECT_EQ(ErrorMessage(404, R"({"error":{"code":404,"message":"host 'x' not found"}})"),
            "host 'x' not found");
  EXPECT_EQ(ErrorMessage(500, "boom\nstack"), "HTTP 500: boom");
  EXPECT_EQ(ErrorMessage(502, ""), "HTTP 502");
}

// ---- rendering -------------------------------------------------------------------------------

TEST(RenderTest, TableColumnsAreAligned) {
  EXPECT_EQ(RenderTable({"NAME", "HOST", "STATE"},
                        {{"web01", "host-a", "running"}, {"db-primary", "b", "shut off"}}),
            "NAME        HOST    STATE\n"
            "web01       host-a  running\n"
            "db-primary  b       shut off\n");
  EXPECT_EQ(RenderTable({"A", "B"}, {}), "A  B\n");
  // Multi-byte characters count as one column; empty last cells leave no trailing spaces.
  EXPECT_EQ(RenderTable({"N", "X"}, {{"ü", ""}, {"ab", "1"}}), "N   X\nü\nab  1\n");
}

TEST(RenderTest, Cells) {
  EXPECT_EQ(Cell(json()), "-");
  EXPECT_EQ(Cell(json("")), "-");
  EXPECT_EQ(Cell(json("a\tb\nc")), "a b c");
  EXPECT_EQ(Cell(json(42)), "42");
  EXPECT_EQ(Cell(json(true)), "true");
  EXPECT_EQ(Cell(json::array({"a", "b"})), "a,b");
  EXPECT_EQ(Cell(json::object()), "-");
  EXPECT_EQ(Cell(json{{"k", 1}}), R"({"k":1})");
  EXPECT_EQ(Field(json{{"a", 1}}, "b"), "-");
  EXPECT_EQ(Field(json("x"), "a"), "-");
}

TEST(RenderTest, NodesShowTheirHostWhenTheyHaveOne) {
  json graph = json::parse(R"({"nodes":[
    {"id":"vm:1","type":"vm","name":"web01","attrs":{"host":"host-a"}},
    {"id":"ss:x","type":"storage_system","name":"x","attrs":{}},
    {"id":"vm:2","type":"vm","name":"app03","attrs":{"host":"host-c"}}],"edges":[]})");
  EXPECT_EQ(RenderNodes(graph, "vm"),
            "TYPE  NAME   HOST    ID\n"
            "vm    web01  host-a  vm:1\n"
            "vm    app03  host-c  vm:2\n");
  EXPECT_EQ(RenderNodes(graph, "storage_system"),
            "TYPE            NAME  ID\nstorage_system  x     ss:x\n");
  EXPECT_EQ(RenderNodes(graph, ""),
            "TYPE            NAME   HOST    ID\n"
            "vm              web01  host-a  vm:1\n"
            "storage_system  x      -       ss:x\n"
            "vm              app03  host-c  vm:2\n");
}

TEST(RenderTest, IllTypedAnswersRenderEmptyTables) {
  EXPECT_EQ(RenderVms(json::array()), "NAME  UUID  HOST  STATE\n");
  EXPECT_EQ(RenderVms(json{{"vms", 3}}), "NAME  UUID  HOST  STATE\n");
  EXPECT_EQ(RenderVms(json{{"vms", {1}}}), "NAME  UUID  HOST  STATE\n-     -     -     -\n");
}

// ---- commands against a loopback server ------------------------------------------------------

constexpr char kHosts[] = R"({"hosts":[
  {"id":"host-a","cluster":"prod","endpoint":"127.0.0.1:7001","state":"reachable",
   "last_heartbeat":"2024-05-01T10:00:00Z","registered_at":"2024-05-01T09:00:00Z","vm_count":4,
   "plugins":[{"kind":"hypervisor","name":"libvirt","version":"1","capabilities":[]},
              {"kind":"storage","name":"dir","version":"1","capabilities":[]}]},
  {"id":"host-bb","cluster":"","endpoint":"127.0.0.1:7002","state":"unreachable",
   "last_heartbeat":"2024-05-01T09:59:00Z","registered_at":"2024-05-01T09:00:00Z","vm_count":12,
   "plugins":[]}]})";

TEST(CliTest, HostsTable) {
  FakeServer server;
  server.Answer("GET /api/v1/hosts", {200, kHosts});
  Outcome run = RunCli(server.url(), false, [](Cli& cli) { return cli.Hosts(); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_EQ(
      run.out,
      "HOST     CLUSTER  STATE        VMS  ENDPOINT        LAST HEARTBEAT        PLUGINS\n"
      "host-a   prod     reachable    4    127.0.0.1:7001  2024-05-01T10:00:00Z  libvirt,dir\n"
      "host-bb  -        unreachable  12   127.0.0.1:7002  2024-05-01T09:59:00Z  -\n");
}

TEST(CliTest, JsonPrintsTheServersJson) {
  FakeServer server;
  server.Answer("GET /api/v1/hosts", {200, kHosts});
  Outcome run = RunCli(server.url(), true, [](Cli& cli) { return cli.Hosts(); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out), json::parse(kHosts));
}

TEST(CliTest, VmsSendsEscapedFiltersAndPrintsATable) {
  FakeServer server;
  server.Answer("GET /api/v1/vms",
                {200, R"({"vms":[{"uuid":"u-1","name":"web 01","host":"host-a","state":"running"},
                                 {"uuid":"u-22","name":"web02","host":"host-b","state":"shut off"}]})"});
  Outcome run = RunCli(server.url(), false, [](Cli& cli) {
    return cli.Vms({"host-a", "web &*", "running"});
  });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out,
            "NAME    UUID  HOST    STATE\n"
            "web 01  u-1   host-a  running\n"
            "web02   u-22  host-b  shut off\n");
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].target, "/api/v1/vms?host=host-a&name=web%20%26%2A&state=running");
  EXPECT_EQ(seen[0].params.find("name")->second, "web &*");
  EXPECT_EQ(seen[0].params.count("state"), 1u);
}

TEST(CliTest, TreePrintsTheServersTextTreeForEachVm) {
  FakeServer server;
  server.Answer("GET /api/v1/graph",
                {200, "vm web01 [state=running]\n  virtual_disk vda\n", "text/plain"});
  Outcome run = RunCli(server.url(), false, [](Cli& cli) { return cli.Tree({{"web01", "db*"}}); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out,
            "vm web01 [state=running]\n  virtual_disk vda\n"
            "vm web01 [state=running]\n  virtual_disk vda\n");
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].params.find("select")->second, "type=vm name=web01");
  EXPECT_EQ(seen[1].params.find("select")->second, "type=vm name=db*");
  EXPECT_EQ(seen[1].params.find("to")->second, "storage_system");
  EXPECT_EQ(seen[1].params.find("format")->second, "tree");
}

TEST(CliTest, TreeJsonMergesTheGraphsOfSeveralVms) {
  FakeServer server;
  server.Answer("GET /api/v1/graph",
                {200, R"({"nodes":[{"id":"vm:1","type":"vm","name":"a","attrs":{}},
                                   {"id":"ss:x","type":"storage_system","name":"x","attrs":{}}],
                          "edges":[{"from":"vm:1","to":"ss:x","type":"backed_by"}]})"});
  Outcome run = RunCli(server.url(), true, [](Cli& cli) { return cli.Tree({{"a", "b"}}); });
  EXPECT_EQ(run.code, 0) << run.err;
  json merged = json::parse(run.out);
  EXPECT_EQ(merged["nodes"].size(), 2u);
  EXPECT_EQ(merged["edges"].size(), 1u);
}

TEST(CliTest, TreeOfAnUnknownVmSaysSo) {
  FakeServer server;
  server.Answer("GET /api/v1/graph", {200, "", "text/plain"});
  Outcome run = RunCli(server.url(), false, [](Cli& cli) { return cli.Tree({{"nope"}}); });
  EXPECT_EQ(run.code, kExitNothingFound);
  EXPECT_EQ(run.err, "strata: no VM matches 'nope'\n");
}

constexpr char kGoldUp[] = R"({"nodes":[
  {"id":"sv:dir:fs:1:/srv/gold","type":"storage_volume","name":"gold","attrs":{}},
  {"id":"file:fs:1:/a.qcow2","type":"file","name":"/srv/gold/a.qcow2","attrs":{}},
  {"id":"vm:u-1","type":"vm","name":"web01","attrs":{"state":"running"}},
  {"id":"vm:u-2","type":"vm","name":"web03","attrs":{}}],"edges":[]})";

TEST(CliTest, FindListsTheNodesOfTheTargetType) {
  FakeServer server;
  server.Answer("GET /api/v1/graph", {200, kGoldUp});
  FindOptions find;
  find.selector = "type=storage_volume name=gold";
  find.direction = "up";
  find.to = "vm";
  Outcome run = RunCli(server.url(), false, [&](Cli& cli) { return cli.Find(find); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out,
            "TYPE  NAME   ID\n"
            "vm    web01  vm:u-1\n"
            "vm    web03  vm:u-2\n");
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].params.find("select")->second, "type=storage_volume name=gold");
  EXPECT_EQ(seen[0].params.find("direction")->second, "up");
  EXPECT_EQ(seen[0].params.count("depth"), 0u);

  find.to.clear();
  run = RunCli(server.url(), false, [&](Cli& cli) { return cli.Find(find); });
  EXPECT_EQ(run.code, 0);
  EXPECT_NE(run.out.find("storage_volume  gold               sv:dir:fs:1:/srv/gold\n"),
            std::string::npos)
      << run.out;
}

TEST(CliTest, FindWithoutMatchesExitsThree) {
  FakeServer server;
  server.Answer("GET /api/v1/graph", {200, R"({"nodes":[],"edges":[]})"});
  FindOptions find;
  find.selector = "name=nothing";
  find.to = "storage_system";
  Outcome run = RunCli(server.url(), false, [&](Cli& cli) { return cli.Find(find); });
  EXPECT_EQ(run.code, kExitNothingFound);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "strata: nothing matches 'name=nothing' with a path to storage_system\n");
}

TEST(CliTest, FindRejectsBadArgumentsWithoutAsking) {
  FakeServer server;
  FindOptions find;
  find.selector = "type=vm";
  find.depth = -2;
  Outcome run = RunCli(server.url(), false, [&](Cli& cli) { return cli.Find(find); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: --depth must be 0 or more, not -2\n");
  EXPECT_TRUE(server.seen().empty());
}

TEST(CliTest, EventsBackupsAndJobsTables) {
  FakeServer server;
  server.Answer("GET /api/v1/events",
                {200, R"({"events":[{"seq":7,"host":"host-a","vm_uuid":"u-1","kind":"added",
                          "time":"2024-05-01T10:00:00Z","detail":{"name":"web01"}},
                         {"seq":8,"host":"host-a","vm_uuid":"","kind":"cluster",
                          "time":"2024-05-01T10:00:01Z","detail":{}}]})"});
  server.Answer("GET /api/v1/backups",
                {200, R"({"backups":[{"id":"b-1","name":"nightly","state":"succeeded",
                          "consistency":"crash","started_at":"t0","finished_at":"t1",
                          "requester":"ops","items":[{},{}]}]})"});
  server.Answer("GET /api/v1/jobs",
                {200, R"({"jobs":[{"id":"j-1","kind":"discovery","state":"running","progress":40,
                          "message":"host-a","updated_at":"t2"}]})"});
  Outcome events = RunCli(server.url(), false, [](Cli& cli) {
    return cli.Events({7, 2, "host-a"});
  });
  EXPECT_EQ(events.code, 0) << events.err;
  EXPECT_EQ(events.out,
            "SEQ  TIME                  HOST    KIND     VM   DETAIL\n"
            "7    2024-05-01T10:00:00Z  host-a  added    u-1  {\"name\":\"web01\"}\n"
            "8    2024-05-01T10:00:01Z  host-a  cluster  -    -\n");
  EXPECT_EQ(server.seen().back().target, "/api/v1/events?after=7&limit=2&host=host-a");
  Outcome backups = RunCli(server.url(), false, [](Cli& cli) { return cli.Backups(); });
  EXPECT_EQ(backups.out,
            "ID   NAME     STATE      CONSISTENCY  STARTED  FINISHED  REQUESTER  ITEMS\n"
            "b-1  nightly  succeeded  crash        t0       t1        ops        2\n");
  Outcome jobs = RunCli(server.url(), false, [](Cli& cli) { return cli.Jobs(); });
  EXPECT_EQ(jobs.out,
            "ID   KIND       STATE    PROGRESS  MESSAGE  UPDATED\n"
            "j-1  discovery  running  40%       host-a   t2\n");
}

TEST(CliTest, ServerErrorsPrintTheirMessageAndExitOne) {
  FakeServer server;
  server.Answer("GET /api/v1/vms", {404, R"({"error":{"code":404,"status":"NOT_FOUND",
                                           "message":"host 'host-x' not found"}})"});
  server.Answer("GET /api/v1/jobs", {500, "internal trouble\n", "text/plain"});
  Outcome run = RunCli(server.url(), false, [](Cli& cli) { return cli.Vms({"host-x", "", ""}); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err, "strata: host 'host-x' not found\n");
  run = RunCli(server.url(), true, [](Cli& cli) { return cli.Jobs(); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: HTTP 500: internal trouble\n");
}

TEST(CliTest, BackupAndRestoreReportTheServers501) {
  FakeServer server;
  server.Answer("POST /api/v1/backups", {501, R"({"error":{"code":501,"status":"UNIMPLEMENTED",
                          "message":"backups are not implemented yet"}})"});
  server.Answer("POST /api/v1/restores", {501, R"({"error":{"code":501,"status":"UNIMPLEMENTED",
                          "message":"restores are not implemented yet"}})"});
  Outcome run = RunCli(server.url(), false, [](Cli& cli) {
    return cli.Backup({{"web01"}, "", "quiesce", ""});
  });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: backups are not implemented yet\n");
  auto seen = server.seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(json::parse(seen[0].body), json::parse(R"({"vms":["web01"],"consistency":"quiesce"})"));

  run = RunCli(server.url(), false, [](Cli& cli) { return cli.Restore({"web01", "", ""}); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: restores are not implemented yet\n");

  run = RunCli(server.url(), false, [](Cli& cli) {
    return cli.Backup({{"web01"}, "", "snapshot", ""});
  });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: --consistency must be crash, pause or quiesce, not 'snapshot'\n");
}

TEST(CliTest, UnreachableServerExitsTwo) {
  // A bound socket that does not listen: connecting to it is refused.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string url = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  Outcome run = RunCli(url, false, [](Cli& cli) { return cli.Hosts(); });
  close(fd);
  EXPECT_EQ(run.code, kExitUnreachable);
  EXPECT_EQ(run.out, "");
  EXPECT_TRUE(run.err.starts_with("strata: cannot reach stratad at " + url + ": ")) << run.err;
}

TEST(CliTest, InvalidServerUrl) {
  Outcome run = RunCli("ftp://x", false, [](Cli& cli) { return cli.Hosts(); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: invalid server URL 'ftp://x': expected http://HOST:PORT\n");
}

TEST(CliTest, ServerUrlMayHaveAPathPrefixAndNoScheme) {
  FakeServer server("/strata");
  server.Answer("GET /api/v1/hosts", {200, kHosts});
  std::string url = server.url().substr(std::string("http://").size()) + "/";
  Outcome run = RunCli(url, false, [](Cli& cli) { return cli.Hosts(); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(server.seen().at(0).target, "/strata/api/v1/hosts");
}

}  // namespace
}  // namespace strata::cli
