// The running system on real QEMU (issue 7): a real stratad and a real `strata-agent run`
// connected to the system libvirtd (qemu:///system), and VMs changed as an operator would, with
// virsh: discovery with disks attached and detached live, events reaching the server, the
// agent stopped while VMs change, libvirtd restarted while VMs change, backups through the REST
// API (external overlay path, pause mode), a crash of the agent while a VM runs on an overlay,
// and restores in place and as a new VM, verified with `qemu-img compare`.
//
// Only VMs named strata-qt-<pid>-* are made and compared (the host may have others); they are
// destroyed and undefined however a test ends. Every test skips, saying why, when qemu:///system
// does not answer (scripts/qemu-env.sh start starts libvirtd; CI does).
#include <gtest/gtest.h>
#include <httplib.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "processes.h"
#include "strata/util/child_process.h"
#include "strata/util/process.h"
#include "strata/util/strings.h"
#include "test_support.h"

namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using strata::util::Cat;
using strata::util::ChildProcess;
using strata::util::ChildProcessOptions;
using Clock = std::chrono::steady_clock;
using strata::testing::WaitUntil;
namespace fs = std::filesystem;

constexpr milliseconds kStartTimeout{30000};
constexpr milliseconds kConvergeTimeout{30000};

std::pair<int, std::string> Sh(const std::string& command) {
  auto r = strata::util::RunProcess({"/bin/sh", "-c", command + " 2>&1"});
  if (!r.ok()) return {-1, std::string(r.status().message())};
  return {r->exit_code, r->output};
}
std::pair<int, std::string> Virsh(const std::string& args) {
  return Sh("virsh -q -c qemu:///system " + args);
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

// "running", "paused", "shutoff" from virsh's "shut off".
std::string StateWord(std::string virsh_state) {
  virsh_state = Trim(virsh_state);
  if (virsh_state == "shut off") return "shutoff";
  return virsh_state;
}

class QemuSystemTest : public ::testing::Test {
 protected:
  void SetUp() override {
    started_ = Clock::now();
    if (!fs::exists("/usr/bin/qemu-system-x86_64")) {
      GTEST_SKIP() << "qemu-system-x86_64 is not installed (scripts/install-deps.sh)";
    }
    if (auto [code, out] = Virsh("version"); code != 0) {
      GTEST_SKIP() << "qemu:///system does not answer (scripts/qemu-env.sh start): " << out;
    }
    static int counter = 0;
    prefix_ = Cat("strata-qt-", getpid(), "-", counter++, "-");
    work_ = fs::temp_directory_path() / Cat("strata-qt-", getpid(), "-", counter);
    fs::remove_all(work_);
    for (const char* sub : {"", "/gold", "/state"}) {
      fs::create_directories(work_.string() + sub);
      fs::permissions(work_.string() + sub, fs::perms::owner_all | fs::perms::group_read |
                                                fs::perms::group_exec | fs::perms::others_read |
                                                fs::perms::others_exec);
    }
    host_ = Cat("qemu-host-", getpid());
    std::ofstream(work_ / "agent.toml") << Cat(
        "host_id = \"", host_, "\"\nconnect = \"qemu:///system\"\nstate_dir = \"",
        (work_ / "state").string(), "\"\nreconcile_interval = ", ReconcileInterval(),
        "\nevent_window_ms = 200\n[[storage.dir]]\nname = \"gold\"\npath = \"", Gold(), "\"\n");
    auto server = strata::testing::StartStratad(STRATAD_BIN, work_, 0, 200, 1000, kStartTimeout);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server->process);
    grpc_port_ = server->grpc_port;
    http_port_ = server->http_port;
    ASSERT_NO_FATAL_FAILURE(StartAgent());
  }

  void TearDown() override {
    agent_.reset();
    server_.reset();
    for (const std::string& vm : OurVms()) {
      Virsh("destroy '" + vm + "'");
      Virsh("undefine '" + vm + "' --snapshots-metadata --checkpoints-metadata");
    }
    std::printf("[ runtime  ] %.1f s\n",
                std::chrono::duration<double>(Clock::now() - started_).count());
    strata::testing::RemoveWorkDirUnlessFailed(work_, HasFailure());
  }

  // Seconds between the agent's full listings. Long by default, so that what reaches the server
  // quickly came through libvirt's events.
  virtual std::string ReconcileInterval() const { return "300"; }

  void StartAgent(std::vector<std::string> env = {}) {
    ChildProcessOptions options;
    options.env = std::move(env);
    options.log_path = (work_ / "agent.log").string();
    options.append_log = true;
    auto agent = strata::testing::StartAgentProcess(
        {STRATA_AGENT_BIN, "run", "--config", (work_ / "agent.toml").string(), "--listen",
         "127.0.0.1:0", "--server", Cat("127.0.0.1:", grpc_port_)},
        options, kStartTimeout);
    ASSERT_TRUE(agent.ok()) << agent.status();
    agent_ = std::move(agent->process);
  }
  void StopAgent() {
    ASSERT_TRUE(agent_->Kill(SIGTERM).ok());
    ASSERT_TRUE(agent_->Wait(milliseconds(20000)).ok());
    agent_.reset();
  }

  std::string Gold() const { return (work_ / "gold").string(); }

  std::string Image(const std::string& file, int pattern = 0) {
    const std::string path = Gold() + "/" + file;
    auto [code, out] = Sh("qemu-img create -q -f qcow2 '" + path + "' 64M");
    EXPECT_EQ(code, 0) << out;
    if (pattern != 0) {
      auto [c, o] = Sh(Cat("qemu-io -f qcow2 -c 'write -P ", pattern, " 0 1M' '", path, "'"));
      EXPECT_EQ(c, 0) << o;
    }
    return path;
  }

  // Defines (virsh define) a VM on one new qcow2 disk; returns its name.
  std::string Define(const std::string& suffix, int pattern = 0) {
    const std::string name = prefix_ + suffix;
    const std::string disk = Image(suffix + ".qcow2", pattern);
    const std::string xml_path = (work_ / (suffix + ".xml")).string();
    std::ofstream(xml_path) << Cat(
        "<domain type='qemu'><name>", name,
        "</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
        "<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><devices>"
        "<emulator>/usr/bin/qemu-system-x86_64</emulator>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='",
        disk,
        "'/><target dev='vda' bus='virtio'/></disk>"
        // Disks are attached live on SCSI: unplugging a virtio-blk PCI device waits for the
        // guest (there is none), a SCSI disk goes at once.
        "<controller type='scsi' model='virtio-scsi'/><memballoon model='none'/></devices>"
        "</domain>");
    auto [code, out] = Virsh("define '" + xml_path + "'");
    EXPECT_EQ(code, 0) << out;
    return name;
  }
  void Do(const std::string& args) {
    auto [code, out] = Virsh(args);
    ASSERT_EQ(code, 0) << "virsh " << args << ": " << out;
  }

  // Our VMs as libvirt lists them (virsh list --all): name -> state.
  std::set<std::string> OurVms() {
    std::set<std::string> names;
    if (prefix_.empty()) return names;
    std::istringstream in(Virsh("list --all --name").second);
    for (std::string line; std::getline(in, line);) {
      if (line.rfind(prefix_, 0) == 0) names.insert(line);
    }
    return names;
  }
  std::map<std::string, std::string> LibvirtInventory() {
    std::map<std::string, std::string> inventory;
    for (const std::string& vm : OurVms()) {
      inventory[vm] = StateWord(Virsh("domstate '" + vm + "'").second);
    }
    return inventory;
  }
  std::optional<std::map<std::string, std::string>> ServerInventory() {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_read_timeout(std::chrono::seconds(10));
    httplib::Result result = client.Get(Cat("/api/v1/vms?host=", host_).c_str());
    if (!result || result->status != 200) return std::nullopt;
    json parsed = json::parse(result->body, nullptr, false);
    if (!parsed.is_object() || !parsed["vms"].is_array()) return std::nullopt;
    std::map<std::string, std::string> inventory;
    for (const json& vm : parsed["vms"]) {
      const std::string name = vm.value("name", "");
      if (name.rfind(prefix_, 0) == 0) inventory[name] = vm.value("state", "");
    }
    return inventory;
  }
  // Polls until the server's inventory of our VMs equals `virsh list --all`; returns seconds.
  double ExpectConverged(const std::string& when) {
    const auto expected = LibvirtInventory();
    std::optional<std::map<std::string, std::string>> got;
    const auto start = Clock::now();
    WaitUntil(
        [&] {
          got = ServerInventory();
          return got && *got == expected;
        },
        kConvergeTimeout);
    const double took = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_TRUE(got && *got == expected)
        << when << ": virsh list --all: " << json(expected).dump()
        << "\nserver: " << (got ? json(*got).dump() : "no answer") << "\nagent log:\n"
        << (agent_ ? agent_->Log(3000) : "");
    std::printf("[ converge ] %s: %zu VMs, equal after %.2f s\n", when.c_str(), expected.size(),
                took);
    return took;
  }

  json GetJson(const std::string& target) {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_read_timeout(std::chrono::seconds(30));
    httplib::Result result = client.Get(target.c_str());
    if (!result) return json();
    return json::parse(result->body, nullptr, false);
  }
  // The virtual disks the server's graph holds for VM `name`.
  size_t ServerDisks(const std::string& name) {
    json g = GetJson(Cat("/api/v1/graph?select=type%3Dvm%20name%3D", name, "&to=virtual_disk"));
    size_t n = 0;
    if (g.is_object() && g["nodes"].is_array()) {
      for (const json& node : g["nodes"]) n += node.value("type", "") == "virtual_disk";
    }
    return n;
  }
  json RunJob(const std::string& target, const json& body,
              milliseconds timeout = milliseconds(120000)) {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_read_timeout(std::chrono::seconds(30));
    httplib::Result result = client.Post(target.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(result && result->status == 202)
        << target << ": " << (result ? result->body : "no answer");
    if (!result || result->status != 202) return json();
    const std::string id = json::parse(result->body)["job"]["id"];
    json job;
    WaitUntil(
        [&] {
          job = GetJson("/api/v1/jobs/" + id);
          const std::string state = job.is_object() ? job.value("state", "") : "";
          return state == "succeeded" || state == "failed";
        },
        timeout);
    return job;
  }
  std::string Chain(const std::string& vm) {
    return Trim(Virsh("domblklist '" + vm + "' --details").second);
  }
  std::vector<std::string> Overlays() {
    std::vector<std::string> found;
    for (const auto& e : fs::recursive_directory_iterator(work_)) {
      if (e.path().filename().string().find(".overlay") != std::string::npos) {
        found.push_back(e.path().string());
      }
    }
    return found;
  }

  Clock::time_point started_;
  std::string prefix_;
  std::string host_;
  fs::path work_;
  std::unique_ptr<ChildProcess> server_;
  std::unique_ptr<ChildProcess> agent_;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

TEST_F(QemuSystemTest, DiscoveryAndEventsOfEveryKindReachTheServer) {
  ASSERT_NO_FATAL_FAILURE(ExpectConverged("at start"));
  const std::string vm = Define("ev");
  ExpectConverged("define");
  Do("start '" + vm + "'");
  ExpectConverged("start");
  Do("suspend '" + vm + "'");
  ExpectConverged("suspend");
  Do("resume '" + vm + "'");
  ExpectConverged("resume");
  EXPECT_EQ(ServerDisks(vm), 1u);

  const std::string extra = Image("extra.qcow2");
  Do("attach-disk '" + vm + "' '" + extra +
     "' sdb --targetbus scsi --driver qemu --subdriver qcow2 --live");
  EXPECT_TRUE(WaitUntil([&] { return ServerDisks(vm) == 2; }, kConvergeTimeout))
      << "disk attached live, the server has " << ServerDisks(vm);
  Do("detach-disk '" + vm + "' sdb --live");
  EXPECT_TRUE(WaitUntil([&] { return ServerDisks(vm) == 1; }, kConvergeTimeout))
      << "disk detached live, the server has " << ServerDisks(vm);

  Do("destroy '" + vm + "'");
  ExpectConverged("destroy");
  const std::string uuid = Trim(Virsh("domuuid '" + vm + "'").second);
  Do("undefine '" + vm + "'");
  ExpectConverged("undefine");

  // Consolidated notifications: added once, modified, removed at the end.
  json events = GetJson(Cat("/api/v1/events?host=", host_, "&limit=10000"));
  std::vector<std::string> kinds;
  for (const json& e : events["events"]) {
    if (e.value("vm_uuid", "") == uuid) kinds.push_back(e.value("kind", ""));
  }
  ASSERT_FALSE(kinds.empty()) << events.dump(1);
  EXPECT_EQ(kinds.front(), "added") << json(kinds).dump();
  EXPECT_EQ(kinds.back(), "removed") << json(kinds).dump();
  EXPECT_NE(std::find(kinds.begin(), kinds.end(), "modified"), kinds.end()) << json(kinds).dump();
  std::printf("[ events   ] %zu notifications for one VM's 9 changes: %s\n", kinds.size(),
              json(kinds).dump().c_str());
}

TEST_F(QemuSystemTest, AgentStoppedWhileVmsChangeCatchesUpWhenItStartsAgain) {
  const std::string a = Define("a");
  const std::string b = Define("b");
  const std::string c = Define("c");
  Do("start '" + a + "'");
  Do("start '" + b + "'");
  ExpectConverged("before the agent stops");

  ASSERT_NO_FATAL_FAILURE(StopAgent());
  Do("suspend '" + a + "'");
  Do("destroy '" + b + "'");
  Do("undefine '" + c + "'");
  const std::string d = Define("d");
  Do("start '" + d + "'");
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  ExpectConverged("after the agent started again");
}

TEST_F(QemuSystemTest, LibvirtdRestartedWhileVmsChangeIsCaughtUp) {
  if (getuid() != 0) GTEST_SKIP() << "restarting the system libvirtd needs root";
  auto [code, pid_text] = Sh("cat /run/libvirtd.pid");
  const std::string pid = Trim(pid_text);
  if (code != 0 || Trim(Sh("cat /proc/" + pid + "/comm").second) != "libvirtd") {
    GTEST_SKIP() << "no libvirtd started with -d (/run/libvirtd.pid) to restart";
  }
  std::vector<std::string> vms;
  for (int i = 0; i < 4; ++i) vms.push_back(Define(Cat("r", i)));
  Do("start '" + vms[0] + "'");
  Do("start '" + vms[1] + "'");
  ExpectConverged("before the restart");

  // An operator keeps changing VMs (retrying while libvirtd is away) while it restarts.
  std::atomic<bool> done{false};
  std::thread operator_thread([&] {
    const std::vector<std::string> steps = {"suspend '" + vms[0] + "'", "start '" + vms[2] + "'",
                                            "destroy '" + vms[1] + "'", "undefine '" + vms[3] + "'",
                                            "resume '" + vms[0] + "'",  "suspend '" + vms[2] + "'"};
    for (const std::string& step : steps) {
      WaitUntil([&] { return Virsh(step).first == 0; }, milliseconds(30000), milliseconds(200));
      std::this_thread::sleep_for(milliseconds(300));
    }
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(400));
  Sh("kill -TERM " + pid);
  WaitUntil([&] { return !fs::exists("/proc/" + pid); }, milliseconds(20000));
  auto [started, out] = Sh("/usr/sbin/libvirtd -d");
  EXPECT_EQ(started, 0) << out;
  EXPECT_TRUE(WaitUntil([&] { return Virsh("version").first == 0; }, milliseconds(60000)));
  operator_thread.join();
  ASSERT_TRUE(done);
  const std::string later = Define("after");  // a change after the restart, through events
  ExpectConverged("after libvirtd restarted");
  EXPECT_TRUE(agent_->Running());
}

TEST_F(QemuSystemTest, BackupThroughTheServerThenRestoreInPlaceAndAsANewVm) {
  const std::string vm = Define("bk", 0x11);
  const std::string disk = Gold() + "/bk.qcow2";
  Do("start '" + vm + "'");
  ExpectConverged("started");
  const std::string chain_before = Chain(vm);

  json job = RunJob("/api/v1/backups", {{"vms", {vm}}, {"consistency", "pause"}, {"name", "qb1"}});
  ASSERT_EQ(job.value("state", ""), "succeeded") << job.dump(1) << "\n" << agent_->Log(3000);
  EXPECT_EQ(Chain(vm), chain_before);
  EXPECT_EQ(StateWord(Virsh("domstate '" + vm + "'").second), "running");
  EXPECT_EQ(Trim(Virsh("snapshot-list --name '" + vm + "'").second), "");
  EXPECT_TRUE(Overlays().empty()) << json(Overlays()).dump();
  json backup = GetJson("/api/v1/backups/qb1");
  ASSERT_TRUE(backup.is_object() && backup["items"].is_array() && backup["items"].size() == 1)
      << backup.dump(1);
  EXPECT_EQ(backup["items"][0].value("source_path", ""), disk);
  const std::string copy =
      Cat(Gold(), "/.strata-snapshots/", backup["items"][0].value("snapshot_id", ""), "/",
          backup["items"][0].value("path_in_snapshot", ""));

  // In place into the stopped VM, after the guest wrote something else.
  Do(Cat("qemu-monitor-command '", vm,
         "' --hmp 'qemu-io -d /machine/peripheral/virtio-disk0/virtio-backend \"write -P 0x22 0 "
         "1M\"'"));
  Do("destroy '" + vm + "'");
  EXPECT_NE(Sh("qemu-img compare '" + copy + "' '" + disk + "'").first, 0);
  job = RunJob("/api/v1/restores", {{"backup", "qb1"}, {"vm", vm}, {"start", false}});
  ASSERT_EQ(job.value("state", ""), "succeeded") << job.dump(1);
  auto [code, text] = Sh("qemu-img compare '" + copy + "' '" + disk + "'");
  EXPECT_EQ(code, 0) << text;
  Do("start '" + vm + "'");

  // As a new VM that then starts.
  const std::string copy_vm = prefix_ + "bk-copy";
  job =
      RunJob("/api/v1/restores", {{"backup", "qb1"}, {"vm", vm}, {"as", copy_vm}, {"start", true}});
  ASSERT_EQ(job.value("state", ""), "succeeded") << job.dump(1);
  EXPECT_EQ(StateWord(Virsh("domstate '" + copy_vm + "'").second), "running");
  std::istringstream blk(Virsh("domblklist '" + copy_vm + "'").second);
  std::string target, new_disk;
  blk >> target >> new_disk;
  EXPECT_EQ(target, "vda");
  EXPECT_NE(new_disk, disk);
  std::tie(code, text) = Sh("qemu-img compare -U '" + copy + "' '" + new_disk + "'");
  EXPECT_EQ(code, 0) << text;
  ExpectConverged("after the restores");
}

TEST_F(QemuSystemTest, AgentKilledWhileTheVmRunsOnItsOverlayRepairsItAtStart) {
  const std::string vm = Define("ov", 0x11);
  Do("start '" + vm + "'");
  const std::string chain_before = Chain(vm);
  ExpectConverged("started");
  ASSERT_NO_FATAL_FAILURE(StopAgent());
  ASSERT_NO_FATAL_FAILURE(StartAgent({"STRATA_AGENT_FAULTS=storage-snapshot:gold=exit"}));
  ExpectConverged("agent with the fault");

  httplib::Client client("127.0.0.1", http_port_);
  httplib::Result posted = client.Post(
      "/api/v1/backups", json{{"vms", {vm}}, {"name", "qcrash"}}.dump(), "application/json");
  ASSERT_TRUE(posted && posted->status == 202);
  ASSERT_TRUE(agent_->Wait(milliseconds(60000)).ok()) << agent_->Log(3000);
  // Died with the VM on its overlay, and its snapshot record there.
  EXPECT_NE(Chain(vm), chain_before);
  EXPECT_NE(Chain(vm).find(".overlay"), std::string::npos) << Chain(vm);
  EXPECT_EQ(Trim(Virsh("snapshot-list --name '" + vm + "'").second), "qcrash");

  agent_.reset();
  ASSERT_NO_FATAL_FAILURE(StartAgent());
  EXPECT_EQ(Chain(vm), chain_before);
  EXPECT_EQ(StateWord(Virsh("domstate '" + vm + "'").second), "running");
  EXPECT_EQ(Trim(Virsh("snapshot-list --name '" + vm + "'").second), "");
  EXPECT_TRUE(Overlays().empty()) << json(Overlays()).dump();
  EXPECT_NE(agent_->Log(8000).find("brought 1 VMs back from their overlays"), std::string::npos)
      << agent_->Log(3000);
}

}  // namespace
