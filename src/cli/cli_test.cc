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
      if (it == canned_.end() || it->second.empty()) {
        res.status = 404;
        res.set_content(R"({"error":{"code":404,"status":"NOT_FOUND","message":"no route"}})",
                        "application/json");
        return;
      }
      const Canned canned = it->second.front();
      if (it->second.size() > 1) it->second.erase(it->second.begin());
      res.status = canned.status;
      res.set_content(canned.body, canned.content_type.c_str());
    };
    server_.Get(".*", handler);
    server_.Post(".*", handler);
    server_.Put(".*", handler);
    server_.Delete(".*", handler);
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  ~FakeServer() {
    server_.stop();
    thread_.join();
  }
  void Answer(const std::string& method_and_path, Canned canned) {
    AnswerInTurn(method_and_path, {std::move(canned)});
  }
  // One answer per request, in turn; the last one answers every request after it.
  void AnswerInTurn(const std::string& method_and_path, std::vector<Canned> answers) {
    std::lock_guard lock(mu_);
    canned_[method_and_path.substr(0, method_and_path.find(' ') + 1) + prefix_ +
            method_and_path.substr(method_and_path.find(' ') + 1)] = std::move(answers);
  }
  std::vector<Seen> seen() {
    std::lock_guard lock(mu_);
    return seen_;
  }
  // The requests with this method and path (query left out).
  std::vector<Seen> seen(const std::string& method, const std::string& path) {
    std::vector<Seen> out;
    for (const Seen& s : seen()) {
      if (s.method == method && s.target.substr(0, s.target.find('?')) == prefix_ + path) {
        out.push_back(s);
      }
    }
    return out;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_) + prefix_; }

 private:
  std::string prefix_;
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
  std::map<std::string, std::vector<Canned>> canned_;
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

// Options for following jobs quickly; stdout and stdin are no terminals unless said.
GlobalOptions Fast(const std::string& server, bool json_output = false) {
  GlobalOptions globals;
  globals.server = server;
  globals.json = json_output;
  globals.poll_interval = std::chrono::milliseconds(1);
  return globals;
}

template <class F>
Outcome RunWith(const GlobalOptions& globals, F&& command, std::istream* in = nullptr) {
  std::ostringstream out, err;
  Cli cli(globals, out, err, in);
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

TEST(RequestTest, ServerResolution) {
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
                          "requester":"ops","policy":"daily","metadata":{"state":"partial"}},
                         {"id":"b-0","name":"first","state":"failed","consistency":"pause",
                          "started_at":"t","finished_at":"t","requester":"ops","policy":"",
                          "metadata":{}}]})"});
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
  Outcome backups = RunCli(server.url(), false, [](Cli& cli) { return cli.Backups({}); });
  EXPECT_EQ(backups.out,
            "ID   NAME     STATE    CONSISTENCY  POLICY  STARTED  FINISHED  REQUESTER\n"
            "b-1  nightly  partial  crash        daily   t0       t1        ops\n"
            "b-0  first    failed   pause        -       t        t         ops\n");
  Outcome jobs = RunCli(server.url(), false, [](Cli& cli) { return cli.Jobs({}); });
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
  run = RunCli(server.url(), true, [](Cli& cli) { return cli.Jobs({}); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: HTTP 500: internal trouble\n");
}

// ---- backups, restores, jobs, retention: requests --------------------------------------------

TEST(RequestTest, BackupAndRestoreBodiesFollowTheFlags) {
  BackupOptions backup;
  backup.vms = {"web01", "0b6c1a52-3d7e-4f10-9a2b-5c8d7e6f1a20"};
  EXPECT_EQ(BackupBody(backup),
            json::parse(R"({"vms":["web01","0b6c1a52-3d7e-4f10-9a2b-5c8d7e6f1a20"],
                            "consistency":"crash","verify":false})"));
  backup.vms.clear();
  backup.host = "host-a";
  backup.select = "type=vm name=web*";
  backup.cluster = "prod";
  backup.consistency = "quiesce";
  backup.fallback = "pause";
  backup.name = "before-upgrade";
  backup.policy = "nightly";
  backup.verify = true;
  EXPECT_EQ(BackupBody(backup), json::parse(R"({"vms":[],"host":"host-a",
      "select":"type=vm name=web*","cluster":"prod","consistency":"quiesce","fallback":"pause",
      "name":"before-upgrade","policy":"nightly","verify":true})"));

  RestoreOptions restore;
  restore.vm = "web01";
  EXPECT_EQ(RestoreBody(restore), json::parse(R"({"vm":"web01","verify":false})"));
  restore.backup = "nightly";
  restore.as_name = "web01-copy";
  restore.disks = {"vda", "vdb"};
  restore.verify = true;
  restore.start = false;
  restore.host = "host-b";
  restore.target_dir = "/srv/restore";
  EXPECT_EQ(RestoreBody(restore), json::parse(R"({"backup":"nightly","vm":"web01",
      "as":"web01-copy","disks":["vda","vdb"],"verify":true,"start":false,"host":"host-b",
      "target_dir":"/srv/restore"})"));

  EXPECT_EQ(PruneBody({"daily", true}), json::parse(R"({"policy":"daily","dry_run":true})"));
  PolicyOptions policy;
  policy.name = "daily";
  policy.keep_last = 3;
  policy.keep_weekly = 4;
  EXPECT_EQ(PolicyBody(policy), json::parse(R"({"keep_last":3,"keep_hourly":0,"keep_daily":0,
      "keep_weekly":4,"keep_monthly":0})"));

  EXPECT_EQ(BackupsTarget({}), "/api/v1/backups");
  EXPECT_EQ(BackupsTarget({"succeeded", "u-1", 5}),
            "/api/v1/backups?state=succeeded&vm=u-1&limit=5");
  EXPECT_EQ(JobsTarget({"running", "backup", std::nullopt}),
            "/api/v1/jobs?state=running&kind=backup");
}

TEST(RequestTest, InPlaceRestoreWarningNamesWhatItOverwrites) {
  EXPECT_EQ(InPlaceRestoreWarning("web01", true, "host-a", {"vda"}, "nightly",
                                  "2026-11-26T08:00:00.000Z"),
            "This stops VM 'web01' on host 'host-a' and replaces its disks vda with their copies "
            "from backup 'nightly' (2026-11-26 08:00).");
  EXPECT_EQ(InPlaceRestoreWarning("web01", true, "host-a", {"vda", "vdb"}, "", ""),
            "This stops VM 'web01' on host 'host-a' and replaces its disks vda, vdb with their "
            "copies from the newest backup holding it.");
  EXPECT_EQ(InPlaceRestoreWarning("old01", false, "", {}, "nightly", ""),
            "VM 'old01' is not in the inventory: this restores it in place from backup "
            "'nightly', overwriting whatever is at its disks' original paths.");
}

// ---- backups, restores, jobs, retention: rendering -------------------------------------------

json Vm(const std::string& name, const std::string& host, const std::string& state,
        const std::string& step = "", const std::string& message = "",
        const std::string& error = "", const std::string& achieved = "") {
  return {{"uuid", "u-" + name}, {"name", name},
          {"host", host},        {"state", state},
          {"step", step},        {"message", message},
          {"error", error},      {"consistency_achieved", achieved}};
}

// A backup job as GET /api/v1/jobs/{id} answers it.
json BackupJob(const std::string& state, int progress, json vms, const std::string& end = "",
               const std::string& message = "") {
  json job = {{"id", "j-1"},
              {"kind", "backup"},
              {"state", state},
              {"progress", progress},
              {"message", message},
              {"created_at", "2026-11-26T08:00:00.000Z"},
              {"updated_at", "2026-11-26T08:00:05.000Z"},
              {"detail",
               {{"backup_id", "b-1"},
                {"backup_name", "nightly"},
                {"consistency", "pause"},
                {"vms", std::move(vms)}}}};
  if (!end.empty()) job["detail"]["state"] = end;
  return job;
}

json RestoreJob(const std::string& state, int progress, json steps, json extra = json::object(),
                const std::string& message = "") {
  json job = {{"id", "j-2"},
              {"kind", "restore"},
              {"state", state},
              {"progress", progress},
              {"message", message},
              {"created_at", "2026-11-26T09:00:00.000Z"},
              {"updated_at", "2026-11-26T09:00:05.000Z"},
              {"detail",
               {{"backup_name", "nightly"},
                {"vm_name", "web01"},
                {"as_name", ""},
                {"host", "host-a"},
                {"step", steps.empty() ? "" : steps.back().value("step", "")},
                {"steps", steps}}}};
  job["detail"].update(extra);
  return job;
}

json Step(const std::string& step, const std::string& message) {
  return {{"step", step}, {"message", message}};
}

constexpr char kBackupDetail[] = R"({"id":"b-1","name":"nightly","requester":"ops",
  "consistency":"pause","state":"succeeded","started_at":"2026-11-26T08:00:00.000Z",
  "finished_at":"2026-11-26T08:01:00.000Z","policy":"daily",
  "metadata":{"state":"partial","consistency_requested":"quiesce",
    "vms":[{"uuid":"u-1","name":"web01","host":"host-a","ok":true,"error":""},
           {"uuid":"u-2","name":"db01","host":"host-b","ok":false,
            "error":"guest agent not responding"}]},
  "items":[{"vm_uuid":"u-1","vm_name":"web01","disk_target":"vda","source_path":"/srv/gold/a",
            "storage_volume":"gold","snapshot_id":"gold@b-1","path_in_snapshot":"a",
            "size_bytes":10737418240,"checksum":"sha256:abc"},
           {"vm_uuid":"u-1","vm_name":"web01","disk_target":"vdb","source_path":"/srv/gold/b",
            "storage_volume":"gold","snapshot_id":"gold@b-1","path_in_snapshot":"b",
            "size_bytes":1536,"checksum":""}]})";

TEST(RenderTest, BackupDetailListsItemsAndTheVmsNotBackedUp) {
  EXPECT_EQ(RenderBackupDetail(json::parse(kBackupDetail)),
            "ID:           b-1\n"
            "Name:         nightly\n"
            "State:        partial\n"
            "Consistency:  pause (requested quiesce)\n"
            "Policy:       daily\n"
            "Requester:    ops\n"
            "Started:      2026-11-26T08:00:00.000Z\n"
            "Finished:     2026-11-26T08:01:00.000Z\n"
            "\n"
            "VM     DISK  VOLUME  SNAPSHOT  SIZE      CHECKSUM\n"
            "web01  vda   gold    gold@b-1  10.0 GiB  sha256:abc\n"
            "web01  vdb   gold    gold@b-1  1.5 KiB   -\n"
            "\n"
            "Not backed up:\n"
            "  VM    HOST    ERROR\n"
            "  db01  host-b  guest agent not responding\n");
  EXPECT_EQ(FormatBytes(0), "0 B");
  EXPECT_EQ(FormatBytes(1023), "1023 B");
  EXPECT_EQ(FormatBytes(int64_t{3} << 40), "3.0 TiB");
  EXPECT_EQ(ShortTime("2026-11-26T08:00:59.999Z"), "2026-11-26 08:00");
  EXPECT_EQ(ShortTime("yesterday"), "yesterday");
}

TEST(RenderTest, PrunePlanShowsWhatIsKeptAndWhy) {
  json plan = json::parse(R"({"policy":"daily","dry_run":true,
    "kept":[{"id":"b-3","name":"n3","reasons":["last 1","daily 2026-11-26"]},
            {"id":"b-2","name":"n2","reasons":["daily 2026-11-25"]}],
    "expired":[{"id":"b-1","name":"n1"}],"snapshots_deleted":[],"errors":[]})");
  EXPECT_EQ(RenderPrunePlan(plan),
            "Policy 'daily', dry run (nothing deleted): 2 to keep, 1 to delete.\n"
            "ACTION  ID   NAME  REASONS\n"
            "keep    b-3  n3    last 1, daily 2026-11-26\n"
            "keep    b-2  n2    daily 2026-11-25\n"
            "delete  b-1  n1    -\n");
  plan["dry_run"] = false;
  plan["snapshots_deleted"] = json::parse(R"([{"key":"gold@b-1","host":"host-a","existed":true}])");
  plan["errors"] = {"host-b: snapshot 'silver@b-1': permission denied"};
  EXPECT_EQ(RenderPrunePlan(plan),
            "Policy 'daily': 2 kept, 1 deleted.\n"
            "ACTION   ID   NAME  REASONS\n"
            "kept     b-3  n3    last 1, daily 2026-11-26\n"
            "kept     b-2  n2    daily 2026-11-25\n"
            "deleted  b-1  n1    -\n"
            "\n"
            "Snapshots deleted:\n"
            "  SNAPSHOT  HOST\n"
            "  gold@b-1  host-a\n"
            "\n"
            "Errors:\n"
            "  host-b: snapshot 'silver@b-1': permission denied\n");
}

TEST(RenderTest, JobDetailsPerKind) {
  json backup = BackupJob(
      "running", 50,
      {Vm("web01", "host-a", "running", "copy", "copying vda"), Vm("db01", "host-b", "queued")});
  EXPECT_EQ(RenderJob(backup),
            "ID:           j-1\n"
            "Kind:         backup\n"
            "State:        running\n"
            "Progress:     50%\n"
            "Created:      2026-11-26T08:00:00.000Z\n"
            "Updated:      2026-11-26T08:00:05.000Z\n"
            "Backup:       nightly (b-1)\n"
            "Consistency:  pause\n"
            "\n"
            "VM     HOST    STATE    STEP  MESSAGE\n"
            "web01  host-a  running  copy  copying vda\n"
            "db01   host-b  queued   -     -\n");
  json restore = RestoreJob("succeeded", 100,
                            {Step("stop-vm", "stopping web01"), Step("copy-disks", "copying vda")},
                            {{"as_name", "web01-copy"},
                             {"result",
                              {{"vm_uuid", "u-9"},
                               {"vm_name", "web01-copy"},
                               {"disk_paths", {"/a", "/b"}},
                               {"verified", true}}}},
                            "restored");
  EXPECT_EQ(RenderJob(restore),
            "ID:               j-2\n"
            "Kind:             restore\n"
            "State:            succeeded\n"
            "Progress:         100%\n"
            "Message:          restored\n"
            "Created:          2026-11-26T09:00:00.000Z\n"
            "Updated:          2026-11-26T09:00:05.000Z\n"
            "Backup:           nightly\n"
            "VM:               web01\n"
            "As:               web01-copy\n"
            "Host:             host-a\n"
            "Step:             copy-disks\n"
            "Result VM:        web01-copy (u-9)\n"
            "Result Disks:     /a\n"
            "                  /b\n"
            "Result Verified:  yes\n"
            "\n"
            "STEP        MESSAGE\n"
            "stop-vm     stopping web01\n"
            "copy-disks  copying vda\n");
  EXPECT_EQ(RenderJobOutcome(restore),
            "Restored VM 'web01' from backup 'nightly' as 'web01-copy' on host 'host-a'.\n"
            "VM:        web01-copy (u-9)\n"
            "Disks:     /a\n"
            "           /b\n"
            "Verified:  yes\n");
  EXPECT_TRUE(JobSucceeded(restore));
  EXPECT_FALSE(JobSucceeded(BackupJob("succeeded", 100, json::array(), "partial")));
  EXPECT_FALSE(JobFinished(BackupJob("queued", 0, json::array())));
}

TEST(RenderTest, ACoordinatedClusterBackupNamesItsMemberAndTimings) {
  json job = BackupJob("succeeded", 100,
                       {Vm("web01", "host-a", "succeeded", "", "", "", "crash"),
                        Vm("web03", "host-b", "succeeded", "", "", "", "crash")},
                       "succeeded");
  job["detail"]["coordination"]["cluster:prod"] = {
      {"member", "host-a"},
      {"timings_ms", {{"owners", 3}, {"held", 40}, {"forwarded", 55}, {"consolidate", 1}}}};
  const std::string out = RenderJobOutcome(job);
  EXPECT_NE(out.find("Cluster prod coordinated by host-a: owners 3 ms, held 40 ms, "
                     "forwarded 55 ms, consolidated in 1 ms\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("web03"), std::string::npos) << out;
  EXPECT_NE(out.find("host-b"), std::string::npos) << out;
}

TEST(RenderTest, ProgressDisplayLogsOneLinePerChangeWhenNotATerminal) {
  std::ostringstream out;
  ProgressDisplay display(out, /*terminal=*/false);
  display.Update(BackupJob("queued", 0, {Vm("web01", "host-a", "queued")}));
  display.Update(BackupJob(
      "running", 10, {Vm("web01", "host-a", "running", "storage-snapshot", "snapshotting gold")}));
  display.Update(BackupJob(
      "running", 20, {Vm("web01", "host-a", "running", "storage-snapshot", "snapshotting gold")}));
  display.Update(BackupJob("failed", 100,
                           {Vm("web01", "host-a", "failed", "copy", "", "disk full")}, "failed"));
  EXPECT_EQ(out.str(),
            "job j-1 queued\n"
            "web01 host-a queued\n"
            "job j-1 running\n"
            "web01 host-a storage-snapshot snapshotting gold\n"
            "web01 host-a failed: disk full\n"
            "job j-1 failed\n");
}

TEST(RenderTest, ProgressDisplayRedrawsInPlaceOnATerminal) {
  json job = BackupJob("running", 50,
                       {Vm("web01", "host-a", "running", "copy", "copying vda"),
                        Vm("db01", "host-b", "failed", "pause-vm", "", "guest agent gone")});
  EXPECT_EQ(
      ProgressDisplay::Frame(job),
      (std::vector<std::string>{"Backup 'nightly' (job j-1): running 50% [##########----------]",
                                "  VM     HOST    STATE    STEP      MESSAGE",
                                "  web01  host-a  running  copy      copying vda",
                                "  db01   host-b  failed   pause-vm  guest agent gone"}));
  std::ostringstream out;
  ProgressDisplay display(out, /*terminal=*/true, /*columns=*/21);
  display.Update(job);
  const std::string first = out.str();
  EXPECT_EQ(first,
            "Backup 'nightly' (jo\x1b[K\n"
            "  VM     HOST    STA\x1b[K\n"
            "  web01  host-a  run\x1b[K\n"
            "  db01   host-b  fai\x1b[K\n"
            "\x1b[J");
  display.Update(job);
  EXPECT_EQ(out.str(), first) << "an unchanged frame is not drawn again";
  job["progress"] = 55;
  display.Update(job);
  const std::string second = out.str().substr(first.size());
  EXPECT_TRUE(second.starts_with("\x1b[4A\rBackup 'nightly' (jo\x1b[K\n")) << second;
  EXPECT_EQ(second.size(), first.size() + 5);
  display.Break();  // something was printed below: the next frame goes below it
  display.Update(job);
  EXPECT_EQ(out.str().substr(first.size() + second.size()), first);
}

// ---- backups, restores, jobs, retention: commands --------------------------------------------

std::string Started(const json& job) {
  return json{{"job", job}, {"backup_id", "b-1"}, {"backup_name", "nightly"}}.dump();
}

TEST(CliTest, BackupFollowsTheJobToItsEnd) {
  FakeServer server;
  server.Answer(
      "POST /api/v1/backups",
      {202, Started(BackupJob("queued", 0,
                              {Vm("web01", "host-a", "queued"), Vm("db01", "host-b", "queued")}))});
  const json done = BackupJob("succeeded", 100,
                              {Vm("web01", "host-a", "succeeded", "done", "", "", "pause"),
                               Vm("db01", "host-b", "succeeded", "done", "", "", "pause")},
                              "succeeded");
  server.AnswerInTurn(
      "GET /api/v1/jobs/j-1",
      {{200, BackupJob("running", 10,
                       {Vm("web01", "host-a", "running", "storage-snapshot", "snapshotting gold"),
                        Vm("db01", "host-b", "queued")})
                 .dump()},
       {200, BackupJob("running", 50,
                       {Vm("web01", "host-a", "running", "copy", "copying vda"),
                        Vm("db01", "host-b", "running", "pause-vm")})
                 .dump()},
       {200, done.dump()}});
  BackupOptions options;
  options.vms = {"web01", "db01"};
  options.consistency = "pause";
  options.fallback = "crash";
  options.name = "nightly";
  options.policy = "daily";
  options.verify = true;
  Outcome run = RunWith(Fast(server.url()), [&](Cli& cli) { return cli.Backup(options); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_EQ(run.out,
            "Backup 'nightly' (b-1) started as job j-1.\n"
            "job j-1 queued\n"
            "web01 host-a queued\n"
            "db01 host-b queued\n"
            "job j-1 running\n"
            "web01 host-a storage-snapshot snapshotting gold\n"
            "web01 host-a copy copying vda\n"
            "db01 host-b pause-vm\n"
            "web01 host-a succeeded (consistency pause)\n"
            "db01 host-b succeeded (consistency pause)\n"
            "job j-1 succeeded\n"
            "\n"
            "Backup 'nightly' (b-1): succeeded, 2 of 2 VMs backed up.\n"
            "VM     HOST    RESULT     CONSISTENCY  ERROR\n"
            "web01  host-a  succeeded  pause        -\n"
            "db01   host-b  succeeded  pause        -\n");
  auto posts = server.seen("POST", "/api/v1/backups");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(json::parse(posts[0].body), json::parse(R"({"vms":["web01","db01"],
      "consistency":"pause","fallback":"crash","name":"nightly","policy":"daily","verify":true})"));
  EXPECT_EQ(server.seen("GET", "/api/v1/jobs/j-1").size(), 3u);

  // --json: only the final job.
  run = RunWith(Fast(server.url(), true), [&](Cli& cli) { return cli.Backup(options); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out), done);
}

// The job stream's body (GET /api/v1/jobs/{id}/stream) sending these jobs in turn.
std::string JobStream(const std::vector<json>& jobs) {
  std::string body = ": strata job stream\nretry: 1000\n\n";
  for (size_t i = 0; i < jobs.size(); ++i) {
    body += "event: job\nid: " + std::to_string(i + 1) + "\ndata: " + jobs[i].dump() + "\n\n";
    if (i == 0) body += ": keepalive\n\n";
  }
  return body;
}

TEST(CliTest, BackupFollowsTheJobStream) {
  FakeServer server;
  server.Answer("POST /api/v1/backups",
                {202, Started(BackupJob("queued", 0, {Vm("web01", "host-a", "queued")}))});
  const json done = BackupJob(
      "failed", 100, {Vm("web01", "host-a", "failed", "copy", "", "disk vda: no space")}, "failed");
  server.Answer(
      "GET /api/v1/jobs/j-1/stream",
      {200,
       JobStream({BackupJob("running", 0, {Vm("web01", "host-a", "running")}),
                  BackupJob("running", 30,
                            {Vm("web01", "host-a", "running", "storage-snapshot", "gold")}),
                  BackupJob("running", 60, {Vm("web01", "host-a", "running", "copy", "vda")}),
                  done}),
       "text/event-stream"});
  BackupOptions options;
  options.vms = {"web01"};
  Outcome run = RunWith(Fast(server.url()), [&](Cli& cli) { return cli.Backup(options); });
  EXPECT_EQ(run.code, 1) << "the job failed";
  EXPECT_EQ(run.err, "");
  EXPECT_EQ(run.out.substr(0, run.out.find("\n\n")),
            "Backup 'nightly' (b-1) started as job j-1.\n"
            "job j-1 queued\n"
            "web01 host-a queued\n"
            "job j-1 running\n"
            "web01 host-a running\n"
            "web01 host-a storage-snapshot gold\n"
            "web01 host-a copy vda\n"
            "web01 host-a failed: disk vda: no space\n"
            "job j-1 failed");
  EXPECT_EQ(server.seen("GET", "/api/v1/jobs/j-1/stream").size(), 1u);
  EXPECT_TRUE(server.seen("GET", "/api/v1/jobs/j-1").empty()) << "no polling";

  // --json: only the final job.
  run = RunWith(Fast(server.url(), true), [&](Cli& cli) { return cli.Backup(options); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(json::parse(run.out), done);
}

TEST(CliTest, AJobStreamThatEndsEarlyFallsBackToPolling) {
  FakeServer server;
  // The stream breaks off while the job runs: polling takes over and sees it end.
  server.Answer(
      "GET /api/v1/jobs/j-1/stream",
      {200,
       JobStream({BackupJob("running", 20, {Vm("web01", "host-a", "running", "copy", "vda")})}),
       "text/event-stream"});
  server.AnswerInTurn(
      "GET /api/v1/jobs/j-1",
      {{200, BackupJob("running", 10, {Vm("web01", "host-a", "running")}).dump()},
       {200, BackupJob("succeeded", 100, {Vm("web01", "host-a", "succeeded", "done")}, "succeeded")
                 .dump()}});
  Outcome run = RunWith(Fast(server.url()), [](Cli& cli) { return cli.JobWait("j-1"); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.err, "");
  EXPECT_NE(run.out.find("web01 host-a copy vda\n"), std::string::npos) << run.out;
  EXPECT_NE(run.out.find("job j-1 succeeded\n"), std::string::npos) << run.out;
  EXPECT_EQ(server.seen("GET", "/api/v1/jobs/j-1").size(), 2u) << "JobWait's GET, one poll";
}

TEST(CliTest, PartialOrFailedBackupExitsOneAndShowsTheVmErrors) {
  FakeServer server;
  server.Answer("POST /api/v1/backups",
                {202, Started(BackupJob(
                          "running", 0,
                          {Vm("web01", "host-a", "running"), Vm("db01", "host-b", "running")}))});
  server.Answer(
      "GET /api/v1/jobs/j-1",
      {200, BackupJob("failed", 100,
                      {Vm("web01", "host-a", "succeeded", "done", "", "", "quiesce"),
                       Vm("db01", "host-b", "failed", "quiesce", "",
                          "quiesce: guest agent not responding")},
                      "partial",
                      "backup 'nightly': 1 of 2 VMs backed up (partial); db01: quiesce: guest "
                      "agent not responding")
                .dump()});
  BackupOptions options;
  options.host = "host-a";
  options.consistency = "quiesce";
  Outcome run = RunWith(Fast(server.url()), [&](Cli& cli) { return cli.Backup(options); });
  EXPECT_EQ(run.code, 1);
  EXPECT_NE(run.out.find("db01 host-b failed: quiesce: guest agent not responding\n"),
            std::string::npos)
      << run.out;
  EXPECT_TRUE(run.out.ends_with(
      "\nBackup 'nightly' (b-1): partial, 1 of 2 VMs backed up.\n"
      "VM     HOST    RESULT     CONSISTENCY  ERROR\n"
      "web01  host-a  succeeded  quiesce      -\n"
      "db01   host-b  failed     -            quiesce: guest agent not responding\n"))
      << run.out;

  // A job that failed as a whole (no VM got anywhere).
  server.Answer(
      "GET /api/v1/jobs/j-1",
      {200, BackupJob("failed", 100,
                      {Vm("web01", "host-a", "failed", "", "", "host 'host-a' is unreachable")},
                      "failed")
                .dump()});
  run = RunWith(Fast(server.url()), [&](Cli& cli) { return cli.Backup(options); });
  EXPECT_EQ(run.code, 1);
  EXPECT_TRUE(
      run.out.ends_with("web01  host-a  failed  -            host 'host-a' is unreachable\n"))
      << run.out;
}

TEST(CliTest, BackupOnATerminalDrawsALiveDisplay) {
  FakeServer server;
  server.Answer("POST /api/v1/backups",
                {202, Started(BackupJob("queued", 0, {Vm("web01", "host-a", "queued")}))});
  server.AnswerInTurn(
      "GET /api/v1/jobs/j-1",
      {{200, BackupJob("running", 40, {Vm("web01", "host-a", "running", "copy", "vda")}).dump()},
       {200, BackupJob("succeeded", 100, {Vm("web01", "host-a", "succeeded", "", "", "", "crash")},
                       "succeeded")
                 .dump()}});
  GlobalOptions globals = Fast(server.url());
  globals.out_terminal = true;
  Outcome run = RunWith(globals, [](Cli& cli) {
    BackupOptions options;
    options.vms = {"web01"};
    return cli.Backup(options);
  });
  EXPECT_EQ(run.code, 0) << run.err;
  // Three frames of three lines, the second and third drawn over the one before.
  EXPECT_NE(run.out.find("Backup 'nightly' (job j-1): queued 0% [--------------------]\x1b[K\n"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("\x1b[3A\rBackup 'nightly' (job j-1): running 40% [########------------]"),
            std::string::npos)
      << run.out;
  EXPECT_NE(run.out.find("\x1b[3A\rBackup 'nightly' (job j-1): succeeded 100%"), std::string::npos);
  EXPECT_EQ(run.out.find("web01 host-a copy"), std::string::npos) << "no log lines on a terminal";
  EXPECT_TRUE(
      run.out.ends_with("\x1b[J\nBackup 'nightly' (b-1): succeeded, 1 of 1 VM backed up.\n"
                        "VM     HOST    RESULT     CONSISTENCY  ERROR\n"
                        "web01  host-a  succeeded  crash        -\n"))
      << run.out;
}

TEST(CliTest, BackupNoWaitPrintsTheIds) {
  FakeServer server;
  const std::string answer = Started(BackupJob("queued", 0, {Vm("web01", "host-a", "queued")}));
  server.Answer("POST /api/v1/backups", {202, answer});
  BackupOptions options;
  options.select = "type=vm name=web*";
  options.wait = false;
  Outcome run = RunWith(Fast(server.url()), [&](Cli& cli) { return cli.Backup(options); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out,
            "Backup 'nightly' (b-1) started as job j-1.\n"
            "Follow it with: strata jobs wait j-1\n");
  run = RunWith(Fast(server.url(), true), [&](Cli& cli) { return cli.Backup(options); });
  EXPECT_EQ(json::parse(run.out), json::parse(answer));
  EXPECT_TRUE(server.seen("GET", "/api/v1/jobs/j-1").empty());
}

TEST(CliTest, BackupRejectsBadArgumentsWithoutAsking) {
  FakeServer server;
  Outcome run = RunWith(Fast(server.url()), [](Cli& cli) { return cli.Backup({}); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err,
            "strata: nothing to back up: name VMs, or pass --host, --select or --cluster\n");
  run = RunWith(Fast(server.url()), [](Cli& cli) {
    BackupOptions options;
    options.vms = {"web01"};
    options.consistency = "snapshot";
    return cli.Backup(options);
  });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: --consistency must be crash, pause or quiesce, not 'snapshot'\n");
  EXPECT_TRUE(server.seen().empty());

  server.Answer("POST /api/v1/backups", {400, R"({"error":{"code":400,"status":"INVALID_ARGUMENT",
                          "message":"VM 'web99' not found"}})"});
  run = RunWith(Fast(server.url()), [](Cli& cli) {
    BackupOptions options;
    options.vms = {"web99"};
    return cli.Backup(options);
  });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: VM 'web99' not found\n");
}

// stratad's answers about web01 and its newest backup, for an in-place restore.
void AnswerAboutWeb01(FakeServer& server) {
  server.Answer("GET /api/v1/vms/web01",
                {200, R"({"uuid":"u-web01","name":"web01","host":"host-a","state":"running"})"});
  server.Answer("GET /api/v1/backups", {200, R"({"backups":[{"id":"b-1","name":"nightly",
                          "started_at":"2026-11-26T08:00:00.000Z","state":"succeeded"}]})"});
  server.Answer("GET /api/v1/backups/b-1",
                {200, R"({"id":"b-1","name":"nightly","started_at":"2026-11-26T08:00:00.000Z",
                          "state":"succeeded","items":[
                  {"vm_uuid":"u-web01","vm_name":"web01","disk_target":"vda"},
                  {"vm_uuid":"u-web01","vm_name":"web01","disk_target":"vdb"},
                  {"vm_uuid":"u-db01","vm_name":"db01","disk_target":"vda"}]})"});
}

TEST(CliTest, InPlaceRestoreIsRefusedWithoutYesWhenStdinIsNotATerminal) {
  FakeServer server;
  AnswerAboutWeb01(server);
  RestoreOptions options;
  options.vm = "web01";
  std::istringstream in("y\n");  // not a terminal: never read
  Outcome run = RunWith(
      Fast(server.url()), [&](Cli& cli) { return cli.Restore(options); }, &in);
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.out, "");
  EXPECT_EQ(run.err,
            "This stops VM 'web01' on host 'host-a' and replaces its disks vda, vdb with their "
            "copies from backup 'nightly' (2026-11-26 08:00).\n"
            "strata: stdin is not a terminal, so nothing can confirm this: pass --yes to go "
            "ahead\n");
  EXPECT_TRUE(server.seen("POST", "/api/v1/restores").empty());
  auto lists = server.seen("GET", "/api/v1/backups");
  ASSERT_EQ(lists.size(), 1u);
  EXPECT_EQ(lists[0].target, "/api/v1/backups?state=succeeded&vm=u-web01&limit=1");
}

TEST(CliTest, InPlaceRestoreAsksOnATerminal) {
  FakeServer server;
  AnswerAboutWeb01(server);
  server.Answer("GET /api/v1/backups/nightly",
                {200, R"({"id":"b-1","name":"nightly","started_at":"2026-11-26T08:00:00.000Z",
                          "items":[]})"});
  server.Answer("POST /api/v1/restores", {202, json{{"job", RestoreJob("queued", 0, {})}}.dump()});
  server.AnswerInTurn(
      "GET /api/v1/jobs/j-2",
      {{200, RestoreJob("running", 30, {Step("stop-vm", "stopping web01")}).dump()},
       {200, RestoreJob("running", 60,
                        {Step("stop-vm", "stopping web01"), Step("copy-disks", "copying vda")})
                 .dump()},
       {200, RestoreJob("succeeded", 100,
                        {Step("stop-vm", "stopping web01"), Step("copy-disks", "copying vda"),
                         Step("define", "")},
                        {{"result",
                          {{"vm_uuid", "u-web01"},
                           {"vm_name", "web01"},
                           {"disk_paths", {"/var/lib/libvirt/images/web01.qcow2"}},
                           {"verified", false}}}})
                 .dump()}});
  GlobalOptions globals = Fast(server.url());
  globals.in_terminal = true;
  RestoreOptions options;
  options.vm = "web01";
  options.backup = "nightly";
  options.disks = {"vda"};

  std::istringstream no("n\n");
  Outcome run = RunWith(
      globals, [&](Cli& cli) { return cli.Restore(options); }, &no);
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err,
            "This stops VM 'web01' on host 'host-a' and replaces its disks vda with their copies "
            "from backup 'nightly' (2026-11-26 08:00). Continue? [y/N] "
            "strata: cancelled: nothing was changed\n");
  EXPECT_TRUE(server.seen("POST", "/api/v1/restores").empty());

  std::istringstream yes("yes\n");
  run = RunWith(
      globals, [&](Cli& cli) { return cli.Restore(options); }, &yes);
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_TRUE(run.err.ends_with("Continue? [y/N] ")) << run.err;
  EXPECT_EQ(run.out,
            "Restore of VM 'web01' started as job j-2.\n"
            "job j-2 queued\n"
            "job j-2 running\n"
            "web01 host-a stop-vm stopping web01\n"
            "web01 host-a copy-disks copying vda\n"
            "web01 host-a define\n"
            "job j-2 succeeded\n"
            "\n"
            "Restored VM 'web01' from backup 'nightly' in place on host 'host-a'.\n"
            "VM:        web01 (u-web01)\n"
            "Disks:     /var/lib/libvirt/images/web01.qcow2\n"
            "Verified:  no\n");
  auto posts = server.seen("POST", "/api/v1/restores");
  ASSERT_EQ(posts.size(), 1u);
  EXPECT_EQ(json::parse(posts[0].body),
            json::parse(R"({"backup":"nightly","vm":"web01","disks":["vda"],"verify":false})"));
}

TEST(CliTest, RestoreAsANewVmNeedsNoConfirmation) {
  FakeServer server;
  server.Answer("POST /api/v1/restores", {202, json{{"job", RestoreJob("queued", 0, {})}}.dump()});
  server.Answer("GET /api/v1/jobs/j-2",
                {200, RestoreJob("failed", 100, {Step("copy-disks", "copying vda")},
                                 {{"as_name", "web01-copy"},
                                  {"error", "copying vda: No space left on device"}})
                          .dump()});
  RestoreOptions options;
  options.vm = "web01";
  options.as_name = "web01-copy";
  options.start = true;
  options.host = "host-b";
  options.target_dir = "/srv/restore";
  Outcome run = RunWith(Fast(server.url()), [&](Cli& cli) { return cli.Restore(options); });
  EXPECT_EQ(run.code, 1);
  EXPECT_TRUE(
      run.out.ends_with("\nRestore of VM 'web01' from backup 'nightly' failed at step "
                        "'copy-disks': copying vda: No space left on device\n"))
      << run.out;
  auto seen = server.seen();
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[0].method, "POST") << "no lookups before a restore as a new VM";
  EXPECT_EQ(json::parse(seen[0].body), json::parse(R"({"vm":"web01","as":"web01-copy",
      "verify":false,"start":true,"host":"host-b","target_dir":"/srv/restore"})"));

  // --json --no-wait: the server's answer.
  options.wait = false;
  run = RunWith(Fast(server.url(), true), [&](Cli& cli) { return cli.Restore(options); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(json::parse(run.out)["job"]["id"], "j-2");
}

TEST(CliTest, JobsFilterShowAndWait) {
  FakeServer server;
  server.Answer("GET /api/v1/jobs", {200, R"({"jobs":[]})"});
  const json job =
      BackupJob("failed", 100, {Vm("web01", "host-a", "failed", "", "", "boom")}, "failed");
  server.Answer("GET /api/v1/jobs/j-1", {200, job.dump()});
  Outcome run = RunCli(server.url(), false, [](Cli& cli) {
    return cli.Jobs({"running", "restore", 10});
  });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(server.seen().back().target, "/api/v1/jobs?state=running&kind=restore&limit=10");

  run = RunCli(server.url(), false, [](Cli& cli) { return cli.JobShow("j-1"); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_TRUE(
      run.out.ends_with("VM     HOST    RESULT  CONSISTENCY  ERROR\n"
                        "web01  host-a  failed  -            boom\n"))
      << run.out;
  run = RunCli(server.url(), true, [](Cli& cli) { return cli.JobShow("j-1"); });
  EXPECT_EQ(json::parse(run.out), job);

  // Waiting for a job that has ended already: its outcome and exit code at once.
  run = RunWith(Fast(server.url()), [](Cli& cli) { return cli.JobWait("j-1"); });
  EXPECT_EQ(run.code, 1);
  EXPECT_NE(run.out.find("Backup 'nightly' (b-1): failed, 0 of 1 VM backed up.\n"),
            std::string::npos)
      << run.out;

  run = RunWith(Fast(server.url()), [](Cli& cli) { return cli.JobWait("j-404"); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err, "strata: no route\n");
}

TEST(CliTest, JobWaitRidesOutServerTroubleThenGivesUp) {
  FakeServer server;
  server.AnswerInTurn(
      "GET /api/v1/jobs/j-1",
      {{200, BackupJob("running", 10, {Vm("web01", "host-a", "running")}).dump()},
       {500, "boom\n", "text/plain"},
       {503, R"({"error":{"code":503,"status":"UNAVAILABLE","message":"catalog busy"}})"},
       {200,
        BackupJob("succeeded", 100, {Vm("web01", "host-a", "succeeded")}, "succeeded").dump()}});
  Outcome run = RunWith(Fast(server.url()), [](Cli& cli) { return cli.JobWait("j-1"); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.err, "strata: no answer from stratad (HTTP 500: boom); still trying\n");

  server.AnswerInTurn("GET /api/v1/jobs/j-1",
                      {{200, BackupJob("running", 10, {}).dump()}, {500, "boom\n", "text/plain"}});
  GlobalOptions globals = Fast(server.url());
  globals.unreachable_grace = std::chrono::milliseconds(50);
  run = RunWith(globals, [](Cli& cli) { return cli.JobWait("j-1"); });
  EXPECT_EQ(run.code, kExitUnreachable);
  EXPECT_TRUE(run.err.ends_with("strata: lost contact with stratad at " + server.url() +
                                " while following job j-1: HTTP 500: boom\n"))
      << run.err;
}

TEST(CliTest, StopFollowingLeavesTheJobRunning) {
  FakeServer server;
  server.Answer("GET /api/v1/jobs/j-1",
                {200, BackupJob("running", 10, {Vm("web01", "host-a", "running")}).dump()});
  std::ostringstream out, err;
  GlobalOptions globals = Fast(server.url());
  globals.poll_interval = std::chrono::milliseconds(20);
  Cli cli(globals, out, err);
  EXPECT_FALSE(cli.StopFollowing()) << "nothing is followed yet";
  Cli fresh(globals, out, err);
  std::thread stopper([&] {
    while (server.seen("GET", "/api/v1/jobs/j-1").size() < 3) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_TRUE(fresh.StopFollowing());
  });
  EXPECT_EQ(fresh.JobWait("j-1"), kExitInterrupted);
  stopper.join();
  EXPECT_TRUE(
      err.str().ends_with("strata: stopped following job j-1; it goes on in stratad "
                          "('strata jobs wait j-1' follows it again)\n"))
      << err.str();
}

TEST(CliTest, BackupsShowDeleteAndPrune) {
  FakeServer server;
  server.Answer("GET /api/v1/backups/nightly", {200, kBackupDetail});
  server.Answer("DELETE /api/v1/backups/b-1", {200, R"({"backup_id":"b-1","backup_name":"nightly",
                  "snapshots_deleted":[{"key":"gold@b-1","host":"host-a","existed":true},
                                       {"key":"silver@b-1","host":"host-b","existed":false}],
                  "snapshots_kept":["gold@b-0"]})"});
  Outcome run = RunCli(server.url(), false, [](Cli& cli) { return cli.BackupShow("nightly"); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, RenderBackupDetail(json::parse(kBackupDetail)));

  run = RunWith(Fast(server.url()), [](Cli& cli) { return cli.BackupDelete("nightly", false); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err,
            "This deletes backup 'nightly' (b-1, 2026-11-26 08:00, 2 disks of 1 VM) and the "
            "snapshots that no other backup uses.\n"
            "strata: stdin is not a terminal, so nothing can confirm this: pass --yes to go "
            "ahead\n");
  EXPECT_TRUE(server.seen("DELETE", "/api/v1/backups/b-1").empty());

  run = RunWith(Fast(server.url()), [](Cli& cli) { return cli.BackupDelete("nightly", true); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out,
            "Deleted backup 'nightly' (b-1).\n"
            "SNAPSHOT    HOST    RESULT\n"
            "gold@b-1    host-a  deleted\n"
            "silver@b-1  host-b  was already gone\n"
            "Kept 1 snapshot that other backups use: gold@b-0\n");
  EXPECT_EQ(server.seen("DELETE", "/api/v1/backups/b-1").size(), 1u);

  const std::string plan = R"({"policy":"daily","dry_run":true,
    "kept":[{"id":"b-3","name":"n3","reasons":["last 1"]}],"expired":[{"id":"b-1","name":"n1"}],
    "snapshots_deleted":[],"errors":[]})";
  server.Answer("POST /api/v1/backups/prune", {200, plan});
  run = RunCli(server.url(), false, [](Cli& cli) { return cli.Prune({"daily", true}); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out,
            "Policy 'daily', dry run (nothing deleted): 1 to keep, 1 to delete.\n"
            "ACTION  ID   NAME  REASONS\n"
            "keep    b-3  n3    last 1\n"
            "delete  b-1  n1    -\n");
  EXPECT_EQ(json::parse(server.seen("POST", "/api/v1/backups/prune").back().body),
            json::parse(R"({"policy":"daily","dry_run":true})"));
  run = RunCli(server.url(), true, [](Cli& cli) { return cli.Prune({"daily", true}); });
  EXPECT_EQ(json::parse(run.out), json::parse(plan));

  server.Answer("POST /api/v1/backups/prune",
                {200, R"({"policy":"daily","dry_run":false,"kept":[],"expired":[],
                          "snapshots_deleted":[],"errors":["host-b: unreachable"]})"});
  run = RunCli(server.url(), false, [](Cli& cli) { return cli.Prune({"daily", false}); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.out, "Policy 'daily': 0 kept, 0 deleted.\n\nErrors:\n  host-b: unreachable\n");
  EXPECT_EQ(run.err, "strata: pruning policy 'daily' met 1 error\n");
}

TEST(CliTest, BackupsOfAVmByName) {
  FakeServer server;
  server.Answer("GET /api/v1/vms/web01", {200, R"({"uuid":"u-1","name":"web01"})"});
  server.Answer("GET /api/v1/backups", {200, R"({"backups":[]})"});
  Outcome run = RunCli(server.url(), false, [](Cli& cli) {
    return cli.Backups({"succeeded", "web01", 3});
  });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(server.seen().back().target, "/api/v1/backups?state=succeeded&vm=u-1&limit=3");
}

TEST(CliTest, Policies) {
  FakeServer server;
  const std::string list = R"({"policies":[
    {"name":"daily","keep_last":3,"keep_hourly":0,"keep_daily":7,"keep_weekly":4,"keep_monthly":0},
    {"name":"hourly","keep_last":0,"keep_hourly":24,"keep_daily":0,"keep_weekly":0,
     "keep_monthly":0}]})";
  server.Answer("GET /api/v1/policies", {200, list});
  server.Answer("PUT /api/v1/policies/daily",
                {200, R"({"name":"daily","keep_last":3,"keep_hourly":0,"keep_daily":7,
                          "keep_weekly":0,"keep_monthly":0})"});
  server.Answer("DELETE /api/v1/policies/daily", {200, R"({"deleted":"daily"})"});

  Outcome run = RunCli(server.url(), false, [](Cli& cli) { return cli.Policies(); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out,
            "NAME    LAST  HOURLY  DAILY  WEEKLY  MONTHLY\n"
            "daily   3     0       7      4       0\n"
            "hourly  0     24      0      0       0\n");
  run = RunCli(server.url(), true, [](Cli& cli) { return cli.Policies(); });
  EXPECT_EQ(json::parse(run.out), json::parse(list));

  PolicyOptions policy;
  policy.name = "daily";
  policy.keep_last = 3;
  policy.keep_daily = 7;
  run = RunCli(server.url(), false, [&](Cli& cli) { return cli.PolicySet(policy); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out,
            "NAME   LAST  HOURLY  DAILY  WEEKLY  MONTHLY\n"
            "daily  3     0       7      0       0\n");
  auto puts = server.seen("PUT", "/api/v1/policies/daily");
  ASSERT_EQ(puts.size(), 1u);
  EXPECT_EQ(json::parse(puts[0].body), json::parse(R"({"keep_last":3,"keep_hourly":0,
      "keep_daily":7,"keep_weekly":0,"keep_monthly":0})"));

  policy.keep_last = 0;
  policy.keep_daily.reset();
  run = RunCli(server.url(), false, [&](Cli& cli) { return cli.PolicySet(policy); });
  EXPECT_EQ(run.code, 1);
  EXPECT_EQ(run.err,
            "strata: policy 'daily' would keep no backup: pass at least one of --keep-last, "
            "--keep-hourly, --keep-daily, --keep-weekly, --keep-monthly with a count above 0\n");
  EXPECT_EQ(server.seen("PUT", "/api/v1/policies/daily").size(), 1u);

  run = RunCli(server.url(), false, [](Cli& cli) { return cli.PolicyDelete("daily"); });
  EXPECT_EQ(run.code, 0) << run.err;
  EXPECT_EQ(run.out, "Deleted policy 'daily'.\n");
  run = RunCli(server.url(), true, [](Cli& cli) { return cli.PolicyDelete("daily"); });
  EXPECT_EQ(json::parse(run.out), json::parse(R"({"deleted":"daily"})"));
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
