// REST API benchmark: stratad holding a large catalog, driven by a C++ load generator.
//
//   api_bench [--hosts 1000] [--vms-per-host 100] [--seconds 3] [--connections 8]
//             [--sse-clients 200] [--stratad PATH]
//
// 1. Populates a catalog database through the catalog library: every host with its VMs and a
//    per-host resource graph (host -> VMs -> vm_config / virtual_disk -> file -> a dir storage
//    volume shared by a tenth of the hosts -> storage system; file -> mount -> NFS file system).
// 2. Starts the real stratad on it (it rebuilds the merged graph from the catalog).
// 3. Measures, with the same client code (one thread per connection, keep-alive, TCP_NODELAY):
//    the floor (a trivial cpp-httplib handler in this process), a point graph query
//    (/api/v1/graph?select=id=vm:<uuid>&to=storage_system) and a VM listing
//    (/api/v1/vms?host=<id>); then holds --sse-clients event streams open on
//    /api/v1/events/stream and measures the point query again.
// Figures are printed, not asserted.
#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"
#include "strata/core/graph.h"
#include "strata/core/query.h"
#include "strata/server/catalog.h"
#include "strata/util/child_process.h"

namespace {

using Clock = std::chrono::steady_clock;
using strata::core::EdgeType;
using strata::core::NodeType;

struct Flags {
  int hosts = 1000;
  int vms_per_host = 100;
  double seconds = 3;
  int connections = 8;
  int sse_clients = 200;
  std::string stratad = STRATAD_BIN;
};

std::filesystem::path g_work_dir;  // removed on every exit

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "api_bench: %s\n", what.c_str());
  if (!g_work_dir.empty()) std::filesystem::remove_all(g_work_dir);
  std::exit(1);
}

Flags ParseFlags(int argc, char** argv) {
  Flags flags;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) Die(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--hosts") {
      flags.hosts = std::atoi(value().c_str());
    } else if (arg == "--vms-per-host") {
      flags.vms_per_host = std::atoi(value().c_str());
    } else if (arg == "--seconds") {
      flags.seconds = std::atof(value().c_str());
    } else if (arg == "--connections") {
      flags.connections = std::atoi(value().c_str());
    } else if (arg == "--sse-clients") {
      flags.sse_clients = std::atoi(value().c_str());
    } else if (arg == "--stratad") {
      flags.stratad = value();
    } else if (arg == "--help" || arg == "-h") {
      std::printf(
          "usage: api_bench [--hosts N] [--vms-per-host N] [--seconds S] [--connections N]\n"
          "                 [--sse-clients N] [--stratad PATH]\n");
      std::exit(0);
    } else {
      Die("unknown flag '" + arg + "' (see --help)");
    }
  }
  if (flags.hosts < 1 || flags.vms_per_host < 1 || flags.seconds <= 0 || flags.connections < 1 ||
      flags.sse_clients < 0) {
    Die("flags out of range");
  }
  return flags;
}

std::string HostId(int h) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "host-%04d", h);
  return buf;
}

std::string VmUuid(int h, int v, int vms_per_host) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012llx",
                static_cast<unsigned long long>(h) * static_cast<unsigned long long>(vms_per_host) +
                    static_cast<unsigned long long>(v));
  return buf;
}

template <class T>
T Check(absl::StatusOr<T> value, const char* what) {
  if (!value.ok()) Die(std::string(what) + ": " + std::string(value.status().message()));
  return *std::move(value);
}
void Check(const absl::Status& status, const char* what) {
  if (!status.ok()) Die(std::string(what) + ": " + std::string(status.message()));
}

// The graph one agent would report for host `h`, as strata::core::ToJson writes it.
std::string HostGraphJson(int h, int vms_per_host, size_t* nodes) {
  strata::core::Graph g;
  const std::string host = HostId(h);
  const int volume = h % 10;
  const std::string filer = "filer" + std::to_string(volume % 2 + 1);
  const std::string export_path = "/export/vol" + std::to_string(volume);
  const std::string fs_id = "fs:nfs:" + filer + ":" + export_path;
  const std::string mount_path = "/srv/vol" + std::to_string(volume);

  auto node = [&](NodeType type, const std::string& id, const std::string& name,
                  const strata::core::Attributes& attrs = {}) {
    return Check(g.UpsertNode(type, id, name, attrs), "UpsertNode");
  };
  const auto host_node = node(NodeType::kHost, "host:" + host, host);
  const auto system = node(NodeType::kStorageSystem, "ss:nfs:" + filer, filer, {{"kind", "nfs"}});
  const auto fs = node(NodeType::kFsVolume, fs_id, filer + ":" + export_path, {{"fstype", "nfs4"}});
  const auto sv = node(NodeType::kStorageVolume, "sv:dir:" + fs_id + ":/",
                       "vol" + std::to_string(volume), {{"kind", "dir"}});
  const auto mount = node(NodeType::kMountPoint, "mount:" + host + ":" + mount_path, mount_path);
  g.AddEdge(sv, system, EdgeType::kInSystem);
  g.AddEdge(sv, fs, EdgeType::kOnDevice);
  g.AddEdge(mount, fs, EdgeType::kMounts);
  for (int v = 0; v < vms_per_host; ++v) {
    const std::string uuid = VmUuid(h, v, vms_per_host);
    char name[64];
    std::snprintf(name, sizeof name, "vm-%04d-%03d", h, v);
    const auto vm = node(NodeType::kVm, "vm:" + uuid, name,
                         {{"uuid", uuid}, {"state", v % 7 == 0 ? "shut off" : "running"}});
    const auto config = node(NodeType::kVmConfig, "vm_config:" + uuid, name,
                             {{"path", "/etc/libvirt/qemu/" + std::string(name) + ".xml"}});
    const auto disk = node(NodeType::kVirtualDisk, "disk:" + uuid + ":vda", "vda",
                           {{"format", "qcow2"}, {"bus", "virtio"}});
    const std::string file_path = "/" + std::string(name) + ".qcow2";
    const auto file = node(NodeType::kFile, "file:" + fs_id + ":" + file_path,
                           mount_path + file_path, {{"format", "qcow2"}, {"size", "21474836480"}});
    g.AddEdge(host_node, vm, EdgeType::kRuns);
    g.AddEdge(vm, config, EdgeType::kHasConfig);
    g.AddEdge(vm, disk, EdgeType::kHasDisk);
    g.AddEdge(disk, file, EdgeType::kBackedBy);
    g.AddEdge(file, mount, EdgeType::kOnMount);
    g.AddEdge(file, sv, EdgeType::kInVolume);
  }
  *nodes += g.node_count();
  return strata::core::ToJson(g, strata::core::WholeGraph(g)).dump();
}

// ---- the load generator ----------------------------------------------------------------------

// One HTTP/1.1 keep-alive connection with TCP_NODELAY; blocking I/O.
class Connection {
 public:
  explicit Connection(int port) : port_(port) {}
  ~Connection() { Close(); }

  // Sends the request and reads the whole answer; returns the status (0 on failure).
  int Do(const std::string& request) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      if (fd_ < 0 && !Connect()) return 0;
      bool fresh = !used_;
      used_ = true;
      if (!WriteAll(request)) {
        Close();
        if (fresh) return 0;
        continue;  // a kept-alive connection the server closed meanwhile
      }
      bool got_any = false;
      const int status = ReadResponse(&got_any);
      if (status > 0) return status;
      Close();
      if (got_any || fresh) return 0;
    }
    return 0;
  }
  int reconnects() const { return connects_ > 0 ? connects_ - 1 : 0; }

 private:
  bool Connect() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0) return false;
    int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      Close();
      return false;
    }
    ++connects_;
    used_ = false;
    buffer_.clear();
    return true;
  }
  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }
  bool WriteAll(const std::string& data) {
    size_t sent = 0;
    while (sent < data.size()) {
      ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }
  bool Fill() {
    char chunk[65536];
    ssize_t n = recv(fd_, chunk, sizeof chunk, 0);
    if (n <= 0) return false;
    buffer_.append(chunk, static_cast<size_t>(n));
    return true;
  }
  // Reads a line ending in CRLF from the buffer (filling it as needed).
  bool Line(std::string* line) {
    size_t end;
    while ((end = buffer_.find("\r\n")) == std::string::npos) {
      if (!Fill()) return false;
    }
    *line = buffer_.substr(0, end);
    buffer_.erase(0, end + 2);
    return true;
  }
  bool Skip(size_t n) {
    while (buffer_.size() < n) {
      if (!Fill()) return false;
    }
    buffer_.erase(0, n);
    return true;
  }
  int ReadResponse(bool* got_any) {
    std::string line;
    if (buffer_.empty() && !Fill()) return 0;
    *got_any = true;
    if (!Line(&line) || line.size() < 12 || !line.starts_with("HTTP/1.")) return 0;
    const int status = std::atoi(line.c_str() + 9);
    size_t length = 0;
    bool chunked = false, close_after = false;
    while (Line(&line) && !line.empty()) {
      std::string lower = line;
      std::transform(lower.begin(), lower.end(), lower.begin(),
                     [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (lower.starts_with("content-length:"))
        length = std::strtoull(line.c_str() + 15, nullptr, 10);
      if (lower.starts_with("transfer-encoding:") && lower.find("chunked") != std::string::npos) {
        chunked = true;
      }
      if (lower.starts_with("connection:") && lower.find("close") != std::string::npos) {
        close_after = true;
      }
    }
    if (chunked) {
      for (;;) {
        if (!Line(&line)) return 0;
        const size_t size = std::strtoull(line.c_str(), nullptr, 16);
        if (size == 0) {
          while (Line(&line) && !line.empty()) {
          }
          break;
        }
        if (!Skip(size + 2)) return 0;
      }
    } else if (!Skip(length)) {
      return 0;
    }
    if (close_after) Close();
    return status;
  }

  int port_;
  int fd_ = -1;
  bool used_ = false;
  int connects_ = 0;
  std::string buffer_;
};

struct Result {
  std::string name;
  double rps = 0;
  double p50_ms = 0, p99_ms = 0, max_ms = 0;
  long ok = 0, errors = 0, reconnects = 0;
};

Result Measure(const std::string& name, int port, const std::vector<std::string>& targets,
               int connections, double seconds) {
  std::vector<std::string> requests;
  for (const std::string& target : targets) {
    requests.push_back("GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
                       "\r\nAccept: */*\r\n\r\n");
  }
  std::atomic<bool> measuring{false}, stop{false};
  std::vector<std::vector<uint32_t>> latencies(static_cast<size_t>(connections));
  std::vector<long> errors(static_cast<size_t>(connections), 0);
  std::vector<int> reconnects(static_cast<size_t>(connections), 0);
  std::vector<std::thread> threads;
  for (int c = 0; c < connections; ++c) {
    threads.emplace_back([&, c] {
      Connection conn(port);
      size_t i = static_cast<size_t>(c) * 7919u;
      auto& mine = latencies[static_cast<size_t>(c)];
      mine.reserve(200000);
      while (!stop.load(std::memory_order_relaxed)) {
        const std::string& request = requests[i++ % requests.size()];
        // Only requests sent and answered inside the window count (not the warm-up's connects).
        const bool counted = measuring.load(std::memory_order_relaxed);
        const auto t0 = Clock::now();
        const int status = conn.Do(request);
        const auto t1 = Clock::now();
        if (!counted || !measuring.load(std::memory_order_relaxed)) continue;
        if (status != 200) {
          ++errors[static_cast<size_t>(c)];
          if (status == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
          continue;
        }
        mine.push_back(static_cast<uint32_t>(
            std::chrono::duration_cast<std::chrono::microseconds>(t1 - t0).count()));
      }
      reconnects[static_cast<size_t>(c)] = conn.reconnects();
    });
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // warm-up, not counted
  measuring = true;
  const auto start = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  measuring = false;
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  stop = true;
  for (std::thread& t : threads) t.join();

  Result result;
  result.name = name;
  std::vector<uint32_t> all;
  for (int c = 0; c < connections; ++c) {
    all.insert(all.end(), latencies[static_cast<size_t>(c)].begin(),
               latencies[static_cast<size_t>(c)].end());
    result.errors += errors[static_cast<size_t>(c)];
    result.reconnects += reconnects[static_cast<size_t>(c)];
  }
  std::sort(all.begin(), all.end());
  result.ok = static_cast<long>(all.size());
  result.rps = static_cast<double>(all.size()) / elapsed;
  if (!all.empty()) {
    auto pct = [&](double p) {
      return all[std::min(all.size() - 1,
                          static_cast<size_t>(p * static_cast<double>(all.size())))] /
             1000.0;
    };
    result.p50_ms = pct(0.50);
    result.p99_ms = pct(0.99);
    result.max_ms = all.back() / 1000.0;
  }
  return result;
}

// Holds `count` server-sent-event streams open and drains them until destroyed.
class EventStreams {
 public:
  EventStreams(int port, int count) {
    const std::string request =
        "GET /api/v1/events/stream HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
        "\r\nAccept: text/event-stream\r\n\r\n";
    for (int i = 0; i < count; ++i) {
      int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_port = htons(static_cast<uint16_t>(port));
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (fd < 0 || connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
          send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
              static_cast<ssize_t>(request.size())) {
        if (fd >= 0) close(fd);
        continue;
      }
      fds_.push_back(fd);
      heads_.emplace_back();
    }
    // Read each stream's status line (within 10 s), then keep draining.
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (Clock::now() < deadline && Answered() < fds_.size()) Poll(100);
    drainer_ = std::thread([this] {
      while (!stop_) Poll(100);
    });
  }
  ~EventStreams() {
    stop_ = true;
    drainer_.join();
    for (int fd : fds_) close(fd);
  }
  size_t Opened() const { return fds_.size(); }
  size_t Answered() const {
    size_t n = 0;
    for (const std::string& head : heads_) n += head.find("\r\n") != std::string::npos ? 1 : 0;
    return n;
  }
  size_t Accepted() const {
    size_t n = 0;
    for (const std::string& head : heads_) {
      n += head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") ? 1 : 0;
    }
    return n;
  }
  std::string FirstRefusal() const {
    for (const std::string& head : heads_) {
      if (head.find("\r\n") != std::string::npos && !head.starts_with("HTTP/1.1 200")) {
        return head.substr(0, head.find("\r\n"));
      }
    }
    return "";
  }

 private:
  void Poll(int timeout_ms) {
    std::vector<pollfd> polls;
    for (int fd : fds_) polls.push_back({fd, POLLIN, 0});
    if (poll(polls.data(), polls.size(), timeout_ms) <= 0) return;
    char buf[4096];
    for (size_t i = 0; i < polls.size(); ++i) {
      if ((polls[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      ssize_t n = recv(fds_[i], buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0 && heads_[i].size() < 256) {
        heads_[i].append(buf, static_cast<size_t>(std::min<ssize_t>(n, 256)));
      }
    }
  }

  std::vector<int> fds_;
  std::vector<std::string> heads_;
  std::atomic<bool> stop_{false};
  std::thread drainer_;
};

long RssKb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  const Flags flags = ParseFlags(argc, argv);
  signal(SIGPIPE, SIG_IGN);
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("strata-api-bench-" + std::to_string(getpid()));
  std::filesystem::create_directories(dir);
  g_work_dir = dir;
  const std::string db = (dir / "catalog.db").string();

  // 1. The catalog.
  const auto populate_start = Clock::now();
  size_t graph_nodes = 0, graph_bytes = 0;
  {
    auto catalog = Check(strata::server::OpenSqliteCatalog(db), "open catalog");
    const auto now = std::chrono::system_clock::now();
    for (int h = 0; h < flags.hosts; ++h) {
      strata::server::HostRecord host;
      host.id = HostId(h);
      host.endpoint = "127.0.0.1:1";  // no agent behind it: the benchmark measures the API
      host.plugins = nlohmann::json::array({{{"kind", "hypervisor"},
                                             {"name", "libvirt"},
                                             {"version", "1"},
                                             {"capabilities", {"discover"}}}});
      host.last_heartbeat = now;
      Check(catalog->UpsertHost(host), "UpsertHost");
      std::vector<strata::server::VmRecord> vms;
      for (int v = 0; v < flags.vms_per_host; ++v) {
        char name[64];
        std::snprintf(name, sizeof name, "vm-%04d-%03d", h, v);
        vms.push_back({VmUuid(h, v, flags.vms_per_host),
                       name,
                       host.id,
                       v % 7 == 0 ? "shut off" : "running",
                       {}});
      }
      Check(catalog->ReplaceHostVms(host.id, vms), "ReplaceHostVms");
      const std::string graph = HostGraphJson(h, flags.vms_per_host, &graph_nodes);
      graph_bytes += graph.size();
      Check(catalog->PutHostGraph(host.id, 1, graph), "PutHostGraph");
    }
  }
  const double populate_s = std::chrono::duration<double>(Clock::now() - populate_start).count();
  std::printf(
      "catalog: %d hosts x %d VMs, %zu graph nodes reported (%.1f MB of graph JSON), "
      "written in %.1f s, %s: %.0f MB\n",
      flags.hosts, flags.vms_per_host, graph_nodes, graph_bytes / 1e6, populate_s, db.c_str(),
      std::filesystem::file_size(db) / 1e6);

  // 2. stratad on it.
  strata::util::ChildProcessOptions options;
  options.log_path = (dir / "stratad.log").string();
  const auto start = Clock::now();
  auto stratad = Check(
      strata::util::ChildProcess::Start(
          {flags.stratad, "--db", db, "--grpc-listen", "127.0.0.1:0", "--http-listen",
           "127.0.0.1:0", "--heartbeat-interval-ms", "60000", "--heartbeat-timeout-ms", "600000"},
          options),
      "start stratad");
  auto listening = Check(stratad->WaitForLine(R"(^stratad: listening grpc=\S+ http=[0-9.]+:(\d+))",
                                              std::chrono::minutes(10)),
                         "stratad did not start");
  const int port = std::stoi(listening[1]);
  std::printf(
      "stratad: listening on http port %d after %.1f s (graph rebuilt from the catalog), "
      "RSS %.0f MB\n",
      port, std::chrono::duration<double>(Clock::now() - start).count(),
      RssKb(stratad->pid()) / 1024.0);

  // Sanity: the point query answers a graph down to the storage system.
  {
    httplib::Client client("127.0.0.1", port);
    auto res = client.Get(("/api/v1/graph?select=id%3Dvm%3A" + VmUuid(0, 0, flags.vms_per_host) +
                           "&to=storage_system")
                              .c_str());
    if (!res || res->status != 200 || res->body.find("storage_system") == std::string::npos) {
      Die("point query failed: " +
          (res ? std::to_string(res->status) + " " + res->body.substr(0, 300)
               : httplib::to_string(res.error())) +
          "\nstratad log:\n" + stratad->Log(4000));
    }
  }

  // 3. The floor: a trivial handler in the same HTTP library, in this process.
  httplib::Server floor;
  floor.Get("/ping", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok", "text/plain");
  });
  floor.set_tcp_nodelay(true);
  floor.set_keep_alive_max_count(1000000);
  const int floor_port = floor.bind_to_any_port("127.0.0.1");
  std::thread floor_thread([&] { floor.listen_after_bind(); });
  while (!floor.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));

  std::vector<std::string> point_targets, listing_targets;
  for (int i = 0; i < 1000; ++i) {
    const int h = static_cast<int>((i * 7919L) % flags.hosts);
    const int v = static_cast<int>((i * 104729L) % flags.vms_per_host);
    point_targets.push_back("/api/v1/graph?select=id%3Dvm%3A" + VmUuid(h, v, flags.vms_per_host) +
                            "&to=storage_system");
    listing_targets.push_back("/api/v1/vms?host=" + HostId(h));
  }

  std::vector<Result> results;
  results.push_back(Measure("floor: trivial cpp-httplib handler", floor_port, {"/ping"},
                            flags.connections, flags.seconds));
  floor.stop();
  floor_thread.join();
  results.push_back(Measure("point graph query (vm -> storage_system)", port, point_targets,
                            flags.connections, flags.seconds));
  results.push_back(
      Measure("VM listing of one host (" + std::to_string(flags.vms_per_host) + " VMs)", port,
              listing_targets, flags.connections, flags.seconds));
  size_t sse_opened = 0, sse_accepted = 0;
  std::string sse_refusal;
  {
    EventStreams streams(port, flags.sse_clients);
    sse_opened = streams.Opened();
    sse_accepted = streams.Accepted();
    sse_refusal = streams.FirstRefusal();
    results.push_back(
        Measure("point graph query, " + std::to_string(sse_accepted) + " SSE streams open", port,
                point_targets, flags.connections, flags.seconds));
    results.push_back(Measure("VM listing, " + std::to_string(sse_accepted) + " SSE streams open",
                              port, listing_targets, flags.connections, flags.seconds));
  }
  const long rss = RssKb(stratad->pid());

  std::printf("\n%-44s %5s %9s %8s %8s %8s %7s %6s\n", "scenario", "conns", "req/s", "p50 ms",
              "p99 ms", "max ms", "errors", "reconn");
  for (const Result& r : results) {
    std::printf("%-44s %5d %9.0f %8.3f %8.3f %8.2f %7ld %6ld\n", r.name.c_str(), flags.connections,
                r.rps, r.p50_ms, r.p99_ms, r.max_ms, r.errors, r.reconnects);
  }
  const Result& point = results[1];
  const Result& point_sse = results[3];
  auto verdict = [](bool met) { return met ? "met" : "NOT met"; };
  std::printf("\ngoals (2-core machine, %d connections, load generator on the same machine):\n",
              flags.connections);
  std::printf("  point query >= 10,000 req/s:           %.0f req/s  %s (floor %.0f req/s)\n",
              point.rps, verdict(point.rps >= 10000), results[0].rps);
  std::printf("  point query p99 <= 2 ms:               %.3f ms     %s\n", point.p99_ms,
              verdict(point.p99_ms <= 2.0));
  std::printf("  %d SSE streams held open:              %zu connected, %zu answered 200%s%s\n",
              flags.sse_clients, sse_opened, sse_accepted,
              sse_refusal.empty() ? "" : "; refused: ", sse_refusal.c_str());
  std::printf(
      "  point query with streams open:         %.0f req/s (%.0f%% of without), p99 %.3f ms"
      "  %s\n",
      point_sse.rps, point.rps > 0 ? 100.0 * point_sse.rps / point.rps : 0.0, point_sse.p99_ms,
      verdict(sse_accepted == static_cast<size_t>(flags.sse_clients) && point_sse.errors == 0 &&
              point_sse.rps >= 0.8 * point.rps));
  std::printf("stratad RSS after the run: %.0f MB\n", rss / 1024.0);

  (void)stratad->Kill(SIGTERM);
  if (!stratad->Wait(std::chrono::seconds(20)).ok()) (void)stratad->Kill(SIGKILL);
  stratad.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
