// No lost change (issue 4): a private libvirtd (tests/integration/private_libvirtd.h), a real
// stratad and a real `strata-agent run` connected to the libvirtd's test driver. The test, as an
// operator would, defines, undefines, renames, starts, stops and redefines domains through
// libvirt, in a flood of at least 2,000 operations per test, while the agent-server connection is
// cut (stratad frozen with SIGSTOP, or killed) and restored (SIGCONT, or a new stratad on the same
// database and gRPC port); at the end the server's inventory of the host (GET /api/v1/vms?host=)
// must equal libvirt's listing exactly: the same UUIDs, names and states.
//
// Black box on purpose: it holds with the agent's periodic reconciliation as in main today and
// must keep holding once libvirt events and the coalescing event manager feed the server.
#include <gtest/gtest.h>
#include <httplib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <random>
#include <thread>

#include <nlohmann/json.hpp>

#include "private_libvirtd.h"
#include "processes.h"
#include "strata/util/child_process.h"
#include "strata/util/strings.h"
#include "test_support.h"

namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using strata::testing::PrivateLibvirtd;
using strata::util::Cat;
using strata::util::ChildProcess;
using strata::util::ChildProcessOptions;
using Clock = std::chrono::steady_clock;

constexpr char kHost[] = "guarantee-host";
constexpr milliseconds kStartTimeout{20000};
constexpr milliseconds kConvergeTimeout{20000};
constexpr char kReconcileIntervalSeconds[] = "0.5";

struct VmView {
  std::string name;
  std::string state;
  bool operator==(const VmView&) const = default;
};
using Inventory = std::map<std::string, VmView>;  // by UUID

std::string StateName(int state) {
  switch (state) {
    case VIR_DOMAIN_RUNNING:
      return "running";
    case VIR_DOMAIN_PAUSED:
      return "paused";
    case VIR_DOMAIN_SHUTOFF:
      return "shutoff";
    default:
      return Cat("libvirt-state-", state);
  }
}

// What differs between the two, at most `limit` lines.
std::string Diff(const Inventory& libvirt, const Inventory& server, size_t limit = 20) {
  std::string out;
  size_t lines = 0;
  auto line = [&](const std::string& text) {
    if (lines++ < limit) out += text + "\n";
  };
  for (const auto& [uuid, vm] : libvirt) {
    auto it = server.find(uuid);
    if (it == server.end()) {
      line(Cat("  missing on the server: ", uuid, " ", vm.name, " ", vm.state));
    } else if (!(it->second == vm)) {
      line(Cat("  differs: ", uuid, " libvirt ", vm.name, "/", vm.state, ", server ",
               it->second.name, "/", it->second.state));
    }
  }
  for (const auto& [uuid, vm] : server) {
    if (!libvirt.contains(uuid)) line(Cat("  only on the server: ", uuid, " ", vm.name));
  }
  if (lines > limit) out += Cat("  ... ", lines - limit, " more\n");
  return out;
}

void SilentLibvirtErrors(void*, virErrorPtr) {}

// The operator: random changes to the domains of the test driver through libvirt's C API.
class Operator {
 public:
  explicit Operator(virConnectPtr connection, unsigned seed)
      : connection_(connection), rng_(seed) {}

  // `count` operations: define (new), undefine, rename, start, stop (destroy), redefine with a
  // changed configuration. Every one must succeed.
  void Run(int count, milliseconds pause = milliseconds(0)) {
    for (int i = 0; i < count; ++i) {
      ASSERT_NO_FATAL_FAILURE(One());
      if (pause.count() > 0) std::this_thread::sleep_for(pause);
    }
  }

  int operations() const { return operations_; }

 private:
  struct Domain {
    std::string uuid;
    std::string name;
    int memory_mib = 64;
    bool running = false;
  };

  static std::string Xml(const Domain& d) {
    return Cat("<domain type='test'><name>", d.name, "</name><uuid>", d.uuid,
               "</uuid><memory unit='MiB'>", d.memory_mib, "</memory><vcpu>1</vcpu>",
               "<os><type>hvm</type></os></domain>");
  }

  virDomainPtr Lookup(const Domain& d) {
    virDomainPtr dom = virDomainLookupByUUIDString(connection_, d.uuid.c_str());
    EXPECT_NE(dom, nullptr) << d.name << ": " << virGetLastErrorMessage();
    return dom;
  }

  void One() {
    ++operations_;
    const int dice = static_cast<int>(rng_() % 100);
    if (domains_.size() < 20 || dice < 34) return Define();
    const size_t index = rng_() % domains_.size();
    Domain& d = domains_[index];
    virDomainPtr dom = Lookup(d);
    ASSERT_NE(dom, nullptr);
    int rc = 0;
    if (dice < 52) {  // undefine (stopping it first: a running domain would stay, transient)
      if (d.running) rc = virDomainDestroy(dom);
      if (rc == 0) rc = virDomainUndefine(dom);
      if (rc == 0) domains_.erase(domains_.begin() + static_cast<long>(index));
    } else if (dice < 66) {  // rename (libvirt renames inactive domains only)
      if (d.running) rc = virDomainDestroy(dom);
      d.running = false;
      const std::string name = Cat("op-", next_++);
      if (rc == 0) rc = virDomainRename(dom, name.c_str(), 0);
      if (rc == 0) d.name = name;
    } else if (dice < 84) {  // start or stop
      rc = d.running ? virDomainDestroy(dom) : virDomainCreate(dom);
      if (rc == 0) d.running = !d.running;
    } else {  // redefine with another configuration: a modification
      d.memory_mib = d.memory_mib == 64 ? 128 : 64;
      virDomainPtr redefined = virDomainDefineXML(connection_, Xml(d).c_str());
      rc = redefined != nullptr ? 0 : -1;
      if (redefined != nullptr) virDomainFree(redefined);
    }
    const std::string error = rc == 0 ? "" : virGetLastErrorMessage();
    virDomainFree(dom);
    ASSERT_EQ(rc, 0) << "operation " << dice << " on " << d.name << ": " << error;
  }

  void Define() {
    const int id = next_++;
    char uuid[40];
    std::snprintf(uuid, sizeof uuid, "e7e70000-0000-4000-8000-%012d", id);
    Domain d{uuid, Cat("op-", id), 64, false};
    virDomainPtr dom = virDomainDefineXML(connection_, Xml(d).c_str());
    ASSERT_NE(dom, nullptr) << d.name << ": " << virGetLastErrorMessage();
    virDomainFree(dom);
    domains_.push_back(std::move(d));
  }

  virConnectPtr connection_;
  std::mt19937 rng_;
  std::vector<Domain> domains_;
  int next_ = 0;
  int operations_ = 0;
};

class EventGuaranteeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!PrivateLibvirtd::Available()) {
      GTEST_SKIP() << strata::testing::kLibvirtdPath
                   << " or virsh is not installed (scripts/install-deps.sh installs them)";
    }
    started_ = Clock::now();
    static int counter = 0;
    // Short: the libvirtd sockets live below it (AF_UNIX paths are limited to 107 bytes).
    work_ = std::filesystem::temp_directory_path() / Cat("strata-eg-", getpid(), "-", counter++);
    std::filesystem::remove_all(work_);
    std::filesystem::create_directories(work_);
    auto libvirtd = PrivateLibvirtd::Start((work_ / "libvirtd").string());
    ASSERT_TRUE(libvirtd.ok()) << libvirtd.status();
    libvirtd_ = *std::move(libvirtd);
    virSetErrorFunc(nullptr, SilentLibvirtErrors);
    connection_ = virConnectOpen(libvirtd_->uri().c_str());
    ASSERT_NE(connection_, nullptr) << virGetLastErrorMessage();
    ASSERT_NO_FATAL_FAILURE(StartServer(0));
    ASSERT_NO_FATAL_FAILURE(StartAgent());
    ASSERT_NO_FATAL_FAILURE(ExpectConverged("at start"));
  }

  void TearDown() override {
    if (agent_ != nullptr && server_ != nullptr && server_->Running()) {
      (void)server_->Kill(SIGCONT);  // in case a failed test left it frozen
    }
    agent_.reset();
    server_.reset();
    if (connection_ != nullptr) virConnectClose(connection_);
    libvirtd_.reset();
    std::printf("[ runtime  ] %.1f s\n",
                std::chrono::duration<double>(Clock::now() - started_).count());
    strata::testing::RemoveWorkDirUnlessFailed(work_, HasFailure());
  }

  void StartServer(int grpc_port) {
    auto server =
        strata::testing::StartStratad(STRATAD_BIN, work_, grpc_port, 200, 1000, kStartTimeout);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = std::move(server->process);
    grpc_port_ = server->grpc_port;
    http_port_ = server->http_port;
  }

  void StartAgent() {
    ChildProcessOptions options;
    options.log_path = (work_ / "agent.log").string();
    options.append_log = true;
    auto agent = strata::testing::StartAgentProcess(
        {STRATA_AGENT_BIN, "run", "--connect", libvirtd_->uri(), "--host-id", kHost, "--listen",
         "127.0.0.1:0", "--server", Cat("127.0.0.1:", grpc_port_), "--reconcile-interval",
         kReconcileIntervalSeconds},
        options, kStartTimeout);
    ASSERT_TRUE(agent.ok()) << agent.status();
    ASSERT_EQ(agent->host_id, kHost);
    agent_ = std::move(agent->process);
  }

  // Kills stratad (SIGKILL: no goodbye) and starts a new one on the same database and gRPC port.
  void KillServer() {
    ASSERT_TRUE(server_->Kill(SIGKILL).ok());
    ASSERT_TRUE(server_->Wait(milliseconds(10000)).ok());
  }
  void RestartServer() {
    const int port = grpc_port_;
    server_.reset();
    ASSERT_NO_FATAL_FAILURE(StartServer(port));
  }

  Inventory LibvirtListing() {
    Inventory listing;
    virDomainPtr* domains = nullptr;
    const int n = virConnectListAllDomains(connection_, &domains, 0);
    EXPECT_GE(n, 0) << virGetLastErrorMessage();
    for (int i = 0; i < n; ++i) {
      char uuid[VIR_UUID_STRING_BUFLEN];
      int state = 0, reason = 0;
      if (virDomainGetUUIDString(domains[i], uuid) == 0 &&
          virDomainGetState(domains[i], &state, &reason, 0) == 0) {
        listing[uuid] = {virDomainGetName(domains[i]), StateName(state)};
      } else {
        ADD_FAILURE() << "libvirt: " << virGetLastErrorMessage();
      }
      virDomainFree(domains[i]);
    }
    free(domains);
    return listing;
  }

  // The server's inventory of the host; nullopt while it cannot answer (restarting, the host
  // not registered yet).
  std::optional<Inventory> ServerInventory() {
    httplib::Client client("127.0.0.1", http_port_);
    client.set_connection_timeout(std::chrono::seconds(2));
    client.set_read_timeout(std::chrono::seconds(10));
    httplib::Result result = client.Get(Cat("/api/v1/vms?host=", kHost).c_str());
    if (!result || result->status != 200) return std::nullopt;
    json parsed = json::parse(result->body, nullptr, false);
    if (!parsed.is_object() || !parsed["vms"].is_array()) return std::nullopt;
    Inventory inventory;
    for (const json& vm : parsed["vms"]) {
      const std::string uuid = vm.value("uuid", "");
      EXPECT_FALSE(inventory.contains(uuid)) << "the server lists " << uuid << " twice";
      EXPECT_EQ(vm.value("host", ""), kHost);
      inventory[uuid] = {vm.value("name", ""), vm.value("state", "")};
    }
    return inventory;
  }

  // Polls until the server's inventory equals libvirt's listing (which no longer changes).
  void ExpectConverged(const std::string& when) {
    const Inventory expected = LibvirtListing();
    std::optional<Inventory> got;
    const auto start = Clock::now();
    const auto deadline = start + kConvergeTimeout;
    while (Clock::now() < deadline) {
      got = ServerInventory();
      if (got && *got == expected) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    const double took = std::chrono::duration<double>(Clock::now() - start).count();
    ASSERT_TRUE(got && *got == expected)
        << when << ": after " << took << " s the server's inventory of " << kHost
        << " differs from libvirt's listing (" << expected.size() << " domains):\n"
        << (got ? Diff(expected, *got) : std::string("  no answer from the server\n"))
        << "stratad log:\n"
        << server_->Log(3000) << "\nagent log:\n"
        << agent_->Log(3000);
    std::printf("[ converge ] %s: %zu domains, equal after %.2f s\n", when.c_str(), expected.size(),
                took);
  }

  // `count` operations on a thread of its own while `during` runs on this one.
  void OperateWhile(Operator& op, int count, milliseconds pause,
                    const std::function<void()>& during) {
    std::atomic<bool> failed{false};
    std::thread worker([&] {
      op.Run(count, pause);
      if (::testing::Test::HasFatalFailure()) failed = true;
    });
    during();
    worker.join();
    ASSERT_FALSE(failed.load());
  }

  Clock::time_point started_;
  std::filesystem::path work_;
  std::unique_ptr<PrivateLibvirtd> libvirtd_;
  virConnectPtr connection_ = nullptr;
  std::unique_ptr<ChildProcess> server_;
  std::unique_ptr<ChildProcess> agent_;
  int grpc_port_ = 0;
  int http_port_ = 0;
};

TEST_F(EventGuaranteeTest, PrivateLibvirtdSharesOneTestDriverAmongItsClients) {
  // virsh (another process) sees what this process defined, and the reverse.
  Operator op(connection_, 1);
  ASSERT_NO_FATAL_FAILURE(op.Run(25));
  auto listed = libvirtd_->Virsh({"list", "--all", "--uuid"});
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->first, 0) << listed->second;
  for (const auto& [uuid, vm] : LibvirtListing()) {
    EXPECT_NE(listed->second.find(uuid), std::string::npos) << vm.name << "\n" << listed->second;
  }
  ASSERT_NO_FATAL_FAILURE(ExpectConverged("after 25 operations"));
}

TEST_F(EventGuaranteeTest, NoChangeIsLostWhileStratadIsKilledAndRestarted) {
  // 300 + 400 + 2 x 800 = 2,300 libvirt operations.
  Operator op(connection_, 42);
  ASSERT_NO_FATAL_FAILURE(op.Run(300));
  ASSERT_NO_FATAL_FAILURE(ExpectConverged("300 operations, stratad up"));

  // Down: every change happens while nobody listens to the agent.
  ASSERT_NO_FATAL_FAILURE(KillServer());
  ASSERT_NO_FATAL_FAILURE(op.Run(400));
  ASSERT_NO_FATAL_FAILURE(RestartServer());
  ASSERT_NO_FATAL_FAILURE(ExpectConverged("400 operations while stratad was down"));

  // Killed and restarted while the changes go on, twice.
  for (int round = 0; round < 2; ++round) {
    ASSERT_NO_FATAL_FAILURE(OperateWhile(op, 800, milliseconds(3), [&] {
      std::this_thread::sleep_for(milliseconds(400));
      KillServer();
      std::this_thread::sleep_for(milliseconds(400));
      RestartServer();
    }));
    ASSERT_NO_FATAL_FAILURE(
        ExpectConverged(Cat("800 operations across a stratad restart, round ", round + 1)));
  }
  std::printf("[ operator ] %d libvirt operations\n", op.operations());
  EXPECT_GE(op.operations(), 2000);
}

TEST_F(EventGuaranteeTest, NoChangeIsLostWhileTheAgentServerConnectionIsCut) {
  // SIGSTOP freezes stratad: its sockets stay open but nothing answers (a network partition as
  // the agent sees it: calls hang, then time out); SIGCONT restores it.
  // 200 + 3 x 600 = 2,000 libvirt operations.
  Operator op(connection_, 7);
  ASSERT_NO_FATAL_FAILURE(op.Run(200));
  for (int round = 0; round < 3; ++round) {
    ASSERT_NO_FATAL_FAILURE(OperateWhile(op, 600, milliseconds(2), [&] {
      std::this_thread::sleep_for(milliseconds(200));
      ASSERT_TRUE(server_->Kill(SIGSTOP).ok());
      std::this_thread::sleep_for(milliseconds(1500));  // longer than the heartbeat timeout
      ASSERT_TRUE(server_->Kill(SIGCONT).ok());
    }));
    ASSERT_NO_FATAL_FAILURE(
        ExpectConverged(Cat("600 operations across a cut connection, round ", round + 1)));
  }
  std::printf("[ operator ] %d libvirt operations\n", op.operations());
  EXPECT_GE(op.operations(), 2000);
}

}  // namespace
