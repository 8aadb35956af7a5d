// Event latency benchmark (printed, not asserted): from a change in libvirt to the server's
// catalog, with the real processes. A private libvirtd serves the test driver
// (tests/integration/private_libvirtd.h); a real stratad and a real `strata-agent run` connected
// to it with the event manager's window under test. Then, N times per window:
//   define a new domain through the libvirt C API (t0 = just before virDomainDefineXML) and poll
//   GET /api/v1/vms/<uuid> on stratad every 2 ms until it answers 200 (t1); wait 0-300 ms
//   (random); undefine it (t0) and poll until 404 (t1); wait 0-300 ms again.
// Prints p50, p95, p99 and max per window and change, next to the goal p99 <= window + 100 ms.
//
//   event_latency_bench [--iterations N] [--windows 1000,200] [--max-pause-ms 300]
//
// Needs /usr/sbin/libvirtd and virsh (scripts/install-deps.sh); exits 77 (skipped) without them.
#include <httplib.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "private_libvirtd.h"
#include "processes.h"
#include "strata/util/child_process.h"
#include "strata/util/strings.h"

namespace {

using std::chrono::milliseconds;
using strata::testing::PrivateLibvirtd;
using strata::util::Cat;
using strata::util::ChildProcess;
using Clock = std::chrono::steady_clock;

constexpr char kHost[] = "latency-host";
constexpr milliseconds kStartTimeout{20000};
constexpr milliseconds kPollTimeout{30000};
constexpr milliseconds kPollInterval{2};
constexpr int kSkipped = 77;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "event_latency_bench: %s\n", message.c_str());
  std::exit(1);
}

absl::Status Annotate(const std::string& what, const absl::Status& status) {
  return absl::Status(status.code(), Cat(what, ": ", status.message()));
}

void SilentLibvirtErrors(void*, virErrorPtr) {}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Nearest-rank percentile of sorted values.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return NAN;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  return sorted[std::clamp<size_t>(rank, 1, sorted.size()) - 1];
}

struct Samples {
  std::vector<double> ms;
  int timeouts = 0;
};

// stratad and one agent with the given window, on the shared libvirtd.
class System {
 public:
  explicit System(std::filesystem::path work) : work_(std::move(work)) {}

  // Starts stratad and the agent, and returns once the host's VMs reached stratad.
  absl::Status Start(const PrivateLibvirtd& libvirtd, int window_ms) {
    std::filesystem::create_directories(work_);
    auto server = strata::testing::StartStratad(STRATAD_BIN, work_, 0, 1000, 5000, kStartTimeout);
    if (!server.ok()) return Annotate("starting stratad", server.status());
    server_ = std::move(server->process);
    http_port_ = server->http_port;
    strata::util::ChildProcessOptions options;
    options.log_path = (work_ / "agent.log").string();
    auto agent = ChildProcess::Start(
        {STRATA_AGENT_BIN, "run", "--connect", libvirtd.uri(), "--host-id", kHost, "--listen",
         "127.0.0.1:0", "--server", Cat("127.0.0.1:", server->grpc_port), "--reconcile-interval",
         "30", "--event-window-ms", std::to_string(window_ms)},
        options);
    if (!agent.ok()) return Annotate("starting strata-agent", agent.status());
    agent_ = *std::move(agent);
    auto groups =
        agent_->WaitForLine(R"(^strata-agent: listening grpc=(127\.0\.0\.1:\d+))", kStartTimeout);
    if (!groups.ok()) return Annotate("strata-agent", groups.status());
    client_ = std::make_unique<httplib::Client>("127.0.0.1", http_port_);
    client_->set_keep_alive(true);
    client_->set_connection_timeout(std::chrono::seconds(2));
    client_->set_read_timeout(std::chrono::seconds(10));
    // Registered and refreshed once: the host lists its VMs.
    const auto deadline = Clock::now() + kStartTimeout;
    while (true) {
      httplib::Result r = client_->Get(Cat("/api/v1/vms?host=", kHost));
      if (r && r->status == 200) {
        nlohmann::json body = nlohmann::json::parse(r->body, nullptr, false);
        if (body.is_object() && body["vms"].is_array() && !body["vms"].empty()) break;
      }
      if (Clock::now() > deadline) {
        return absl::DeadlineExceededError(Cat(
            "the VMs of host '", kHost, "' did not reach stratad within ", kStartTimeout.count(),
            " ms; agent log:\n", agent_->Log(3000), "\nstratad log:\n", server_->Log(3000)));
      }
      std::this_thread::sleep_for(milliseconds(50));
    }
    events_subscribed_ = agent_->Log().find("hypervisor events: subscribed") != std::string::npos;
    return absl::OkStatus();
  }

  ~System() {
    client_.reset();
    for (ChildProcess* p : {agent_.get(), server_.get()}) {
      if (p != nullptr && p->Kill(SIGTERM).ok()) (void)p->Wait(milliseconds(5000));
    }
  }

  // GET /api/v1/vms/<uuid> every 2 ms until it answers `status`; the time it did, or nullopt.
  std::optional<Clock::time_point> PollUntil(const std::string& uuid, int status) {
    const std::string path = Cat("/api/v1/vms/", uuid);
    const auto deadline = Clock::now() + kPollTimeout;
    while (Clock::now() < deadline) {
      const auto next = Clock::now() + kPollInterval;
      httplib::Result r = client_->Get(path);
      if (r && r->status == status) return Clock::now();
      std::this_thread::sleep_until(next);
    }
    return std::nullopt;
  }

  bool events_subscribed() const { return events_subscribed_; }

 private:
  std::filesystem::path work_;
  std::unique_ptr<ChildProcess> server_;
  std::unique_ptr<ChildProcess> agent_;
  std::unique_ptr<httplib::Client> client_;
  int http_port_ = 0;
  bool events_subscribed_ = false;
};

struct Result {
  int window_ms = 0;
  bool events_subscribed = false;
  Samples define;
  Samples undefine;
};

absl::StatusOr<Result> Measure(const PrivateLibvirtd& libvirtd, virConnectPtr connection,
                               const std::filesystem::path& work, int window_ms, int iterations,
                               int max_pause_ms, std::mt19937& rng) {
  System system(work);
  if (absl::Status s = system.Start(libvirtd, window_ms); !s.ok()) return s;
  Result result;
  result.window_ms = window_ms;
  result.events_subscribed = system.events_subscribed();
  std::uniform_int_distribution<int> pause(0, max_pause_ms);
  static int next_id = 0;
  for (int i = 0; i < iterations; ++i) {
    const int id = next_id++;
    char uuid[40];
    std::snprintf(uuid, sizeof uuid, "1a7e0000-0000-4000-8000-%012d", id);
    const std::string xml =
        Cat("<domain type='test'><name>lat-", id, "</name><uuid>", uuid,
            "</uuid><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os>",
            "</domain>");
    auto t0 = Clock::now();
    virDomainPtr dom = virDomainDefineXML(connection, xml.c_str());
    if (dom == nullptr) {
      return absl::InternalError(Cat("defining domain 'lat-", id, "': ", virGetLastErrorMessage()));
    }
    if (auto t1 = system.PollUntil(uuid, 200)) {
      result.define.ms.push_back(Ms(*t1 - t0));
    } else {
      ++result.define.timeouts;
    }
    std::this_thread::sleep_for(milliseconds(pause(rng)));
    t0 = Clock::now();
    const int rc = virDomainUndefine(dom);
    const std::string error = rc == 0 ? "" : virGetLastErrorMessage();
    virDomainFree(dom);
    if (rc != 0) return absl::InternalError(Cat("undefining domain 'lat-", id, "': ", error));
    if (auto t1 = system.PollUntil(uuid, 404)) {
      result.undefine.ms.push_back(Ms(*t1 - t0));
    } else {
      ++result.undefine.timeouts;
    }
    std::this_thread::sleep_for(milliseconds(pause(rng)));
  }
  return result;
}

std::vector<int> ParseWindows(const std::string& text) {
  std::vector<int> windows;
  for (std::string_view part : strata::util::Split(text, ',')) {
    const int w = std::atoi(std::string(part).c_str());
    if (w < 1) Die(Cat("--windows: '", part, "' is not a positive number of milliseconds"));
    windows.push_back(w);
  }
  if (windows.empty()) Die("--windows is empty");
  return windows;
}

}  // namespace

int main(int argc, char** argv) {
  int iterations = 40;
  int max_pause_ms = 300;
  std::vector<int> windows = {1000, 200};
  for (int i = 1; i < argc; ++i) {
    auto value = [&](const char* flag) -> std::string {
      if (i + 1 >= argc) Die(Cat(flag, " needs a value"));
      return argv[++i];
    };
    if (std::strcmp(argv[i], "--iterations") == 0) {
      iterations = std::atoi(value("--iterations").c_str());
      if (iterations < 1) Die("--iterations must be at least 1");
    } else if (std::strcmp(argv[i], "--windows") == 0) {
      windows = ParseWindows(value("--windows"));
    } else if (std::strcmp(argv[i], "--max-pause-ms") == 0) {
      max_pause_ms = std::atoi(value("--max-pause-ms").c_str());
      if (max_pause_ms < 0) Die("--max-pause-ms must not be negative");
    } else {
      Die(
          Cat("usage: event_latency_bench [--iterations N] [--windows MS,MS...] "
              "[--max-pause-ms MS]; unknown argument '",
              argv[i], "'"));
    }
  }
  if (!PrivateLibvirtd::Available()) {
    std::printf("event_latency_bench: skipped: %s or virsh is not installed\n",
                strata::testing::kLibvirtdPath);
    return kSkipped;
  }

  // Short: the libvirtd sockets live below it (AF_UNIX paths are limited to 107 bytes).
  const std::filesystem::path work =
      std::filesystem::temp_directory_path() / Cat("strata-lat-", getpid());
  std::filesystem::remove_all(work);
  std::filesystem::create_directories(work);
  auto libvirtd = PrivateLibvirtd::Start((work / "libvirtd").string());
  if (!libvirtd.ok()) Die(Cat("starting libvirtd: ", libvirtd.status().ToString()));
  virSetErrorFunc(nullptr, SilentLibvirtErrors);
  virConnectPtr connection = virConnectOpen((*libvirtd)->uri().c_str());
  if (connection == nullptr) {
    const std::string error = virGetLastErrorMessage();
    libvirtd->reset();
    Die(Cat("connecting to libvirtd: ", error));
  }

  std::mt19937 rng(20240611);
  std::vector<Result> results;
  absl::Status failed;
  for (int window : windows) {
    absl::StatusOr<Result> r = Measure(**libvirtd, connection, work / Cat("w", window), window,
                                       iterations, max_pause_ms, rng);
    if (!r.ok()) {
      failed = r.status();
      break;
    }
    results.push_back(*std::move(r));
  }
  virConnectClose(connection);
  libvirtd->reset();
  if (!failed.ok()) Die(Cat(failed.ToString(), "\n(logs kept in ", work.string(), ")"));
  std::filesystem::remove_all(work);

  std::printf(
      "event_latency_bench (printed, not asserted): libvirt change -> stratad's catalog\n"
      "private libvirtd (test driver), real stratad and strata-agent; %d iterations per window,\n"
      "poll GET /api/v1/vms/<uuid> every %lld ms, 0-%d ms random pause between changes\n\n",
      iterations, static_cast<long long>(kPollInterval.count()), max_pause_ms);
  std::printf("%-9s %-17s %4s %9s %9s %9s %9s %18s %5s\n", "window", "change", "n", "p50 ms",
              "p95 ms", "p99 ms", "max ms", "goal p99 <=", "met");
  for (const Result& r : results) {
    for (const auto& [what, samples] :
         {std::pair<const char*, const Samples*>{"define -> 200", &r.define},
          {"undefine -> 404", &r.undefine}}) {
      std::vector<double> sorted = samples->ms;
      std::sort(sorted.begin(), sorted.end());
      const double goal = r.window_ms + 100.0;
      const double p99 = Percentile(sorted, 99);
      std::printf("%-9s %-17s %4zu %9.1f %9.1f %9.1f %9.1f %15.0f ms %5s\n",
                  Cat(r.window_ms, " ms").c_str(), what, sorted.size(), Percentile(sorted, 50),
                  Percentile(sorted, 95), p99, sorted.empty() ? NAN : sorted.back(), goal,
                  samples->timeouts == 0 && p99 <= goal ? "yes" : "no");
      if (samples->timeouts > 0) {
        std::printf("  %d of them did not reach the catalog within %lld ms\n", samples->timeouts,
                    static_cast<long long>(kPollTimeout.count()));
      }
    }
    if (!r.events_subscribed) {
      std::printf(
          "  WARNING: the agent (window %d ms) did not subscribe to libvirt events; these "
          "figures measure reconciliation\n",
          r.window_ms);
    }
  }
  return 0;
}
