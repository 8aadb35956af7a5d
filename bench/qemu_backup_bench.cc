// Backup on real QEMU (issue 7; printed, not asserted). Needs qemu:///system (libvirtd running:
// scripts/qemu-env.sh start) and root; exits 77 (skipped) without them. Everything it makes
// (VMs named strata-qbench-<pid>-*, images in a temp dir) is removed before it exits.
//
// For 1, 4 and 8 running VMs (64 MiB, no OS, TCG; one qcow2 disk each holding --data-mib of
// data, on one `dir` storage volume in /tmp), the same crash-consistent backup is taken --runs
// times, alternating:
//  - Strata: BackupEngine::Run through HostServices and the dlopen'ed libvirt and dir plug-ins,
//    its hypervisor connection already open as in the running agent. VM after VM (the per-VM
//    pipeline: crash consistency, a `dir` volume): an external disk-only snapshot (overlays),
//    its disk added to the volume's one storage snapshot (the first VM makes it; reflink where
//    the file system has it, sparse copy elsewhere), an active commit with pivot, overlay
//    removed, snapshot record dropped (metadata only).
//  - The operator's script (bash, virsh, cp), VM after VM: `virsh snapshot-create-as --disk-only
//    --atomic`, `cp --reflink=auto --sparse=always` of the frozen base, `virsh blockcommit
//    --active --pivot`, `virsh snapshot-delete --metadata`, rm of the overlay.
// Hold time of a VM: from the request of its overlay to the end of its commit (Strata: its
// "overlay" and "committed" progress steps; the script: `date` before snapshot-create-as and
// after blockcommit). Printed: per-VM hold p50/p99 and total time (medians over the runs), and
// the ratios against the script (goals: total <= script, hold <= 1.2 x script).
//
//   qemu_backup_bench [--runs N] [--data-mib N] [--vms 1,4,8] [--quick]
//     --quick: 1 and 2 VMs, one run (a smoke run for CI, about 20 s)
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "spdlog/spdlog.h"
#include "strata/agent/backup_engine.h"
#include "strata/agent/config.h"
#include "strata/agent/host_services.h"
#include "strata/agent/plugin_host.h"
#include "strata/util/process.h"
#include "strata/util/strings.h"

namespace {

namespace fs = std::filesystem;
using strata::util::Cat;
using Clock = std::chrono::steady_clock;
constexpr int kSkipped = 77;

std::pair<int, std::string> Sh(const std::string& command) {
  auto r = strata::util::RunProcess({"/bin/bash", "-c", command + " 2>&1"});
  if (!r.ok()) return {-1, std::string(r.status().message())};
  return {r->exit_code, r->output};
}

double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5));
  return v[i];
}
double Median(std::vector<double> v) { return Percentile(std::move(v), 0.5); }

struct Figures {
  std::vector<double> holds_ms;  // every VM of every run
  std::vector<double> totals_ms;
};

struct Options {
  int runs = 3;
  int data_mib = 16;
  std::vector<int> vm_counts = {1, 4, 8};
};

class Bench {
 public:
  explicit Bench(Options opt) : opt_(std::move(opt)) {}
  ~Bench() { Cleanup(); }

  int Run() {
    if (getuid() != 0) return Skip("needs root (qemu:///system)");
    if (Sh("timeout 10 virsh -q -c qemu:///system version").first != 0) {
      return Skip("qemu:///system does not answer (scripts/qemu-env.sh start)");
    }
    work_ = fs::temp_directory_path() / Cat("strata-qbench-", getpid());
    fs::remove_all(work_);
    for (const char* sub : {"", "/gold", "/state", "/script-snapshots"}) {
      fs::create_directories(work_.string() + sub);
      fs::permissions(work_.string() + sub, fs::perms::owner_all | fs::perms::group_read |
                                                fs::perms::group_exec | fs::perms::others_read |
                                                fs::perms::others_exec);
    }
    if (!plugins_.LoadDirectory(STRATA_PLUGIN_DIR).ok()) return Fail("cannot load the plug-ins");
    strata::agent::AgentConfig config;
    config.host_id = "bench";
    config.connect = "qemu:///system";
    config.state_dir = (work_ / "state").string();
    config.dir_volumes = {{"gold", (work_ / "gold").string()}};
    config.server.clear();
    services_ = std::make_unique<strata::agent::HostServices>(plugins_, config);
    engine_ = std::make_unique<strata::agent::BackupEngine>(*services_);
    std::printf(
        "qemu_backup_bench: %d runs per size, %d MiB of data per 64 MiB qcow2 disk, one dir "
        "volume on %s (load %s)\n",
        opt_.runs, opt_.data_mib, work_.c_str(), Load().c_str());
    std::printf("%-4s %-8s %12s %12s %12s %14s\n", "VMs", "who", "hold p50 ms", "hold p99 ms",
                "total ms", "vs script");
    for (int n : opt_.vm_counts) {
      if (int rc = Size(n); rc != 0) return rc;
    }
    std::printf("goals: total <= script, hold <= 1.2 x script (printed, not asserted)\n");
    return 0;
  }

 private:
  int Skip(const std::string& why) {
    std::printf("qemu_backup_bench: skipped: %s\n", why.c_str());
    return kSkipped;
  }
  int Fail(const std::string& why) {
    std::fprintf(stderr, "qemu_backup_bench: %s\n", why.c_str());
    return 1;
  }
  static std::string Load() {
    std::ifstream in("/proc/loadavg");
    std::string a;
    in >> a;
    return a;
  }

  int Size(int n) {
    std::vector<std::string> vms;
    for (int i = 0; i < n; ++i) {
      const std::string name = Cat("strata-qbench-", getpid(), "-", n, "-", i);
      const std::string disk = Cat(work_.string(), "/gold/", name, ".qcow2");
      auto [c1, o1] = Sh(Cat("qemu-img create -q -f qcow2 '", disk, "' 64M && qemu-io -f qcow2 -c ",
                             "'write -P 0x5a 0 ", opt_.data_mib, "M' '", disk, "' >/dev/null"));
      if (c1 != 0) return Fail(o1);
      const std::string xml = Cat(work_.string(), "/", name, ".xml");
      std::ofstream(xml) << Cat(
          "<domain type='qemu'><name>", name,
          "</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type arch='x86_64' "
          "machine='pc'>hvm</type></os><devices><emulator>/usr/bin/qemu-system-x86_64</emulator>"
          "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='",
          disk,
          "'/><target dev='vda' bus='virtio'/></disk><memballoon model='none'/></devices>"
          "</domain>");
      made_.push_back(name);
      auto [c2, o2] = Sh(Cat("virsh -q -c qemu:///system define '", xml,
                             "' >/dev/null && virsh -q -c qemu:///system start '", name, "'"));
      if (c2 != 0) return Fail(o2);
      vms.push_back(name);
    }
    Figures strata, script;
    for (int run = 0; run < opt_.runs; ++run) {
      if (int rc = StrataRun(vms, run, strata); rc != 0) return rc;
      if (int rc = ScriptRun(vms, run, script); rc != 0) return rc;
    }
    const double sh50 = Percentile(script.holds_ms, 0.5), sh99 = Percentile(script.holds_ms, 0.99);
    const double st = Median(script.totals_ms);
    const double h50 = Percentile(strata.holds_ms, 0.5), h99 = Percentile(strata.holds_ms, 0.99);
    const double t = Median(strata.totals_ms);
    std::printf("%-4d %-8s %12.1f %12.1f %12.1f %14s\n", n, "script", sh50, sh99, st, "");
    std::printf("%-4d %-8s %12.1f %12.1f %12.1f   hold %.2fx total %.2fx\n", n, "strata", h50, h99,
                t, sh50 > 0 ? h50 / sh50 : 0.0, st > 0 ? t / st : 0.0);
    std::fflush(stdout);
    for (const std::string& vm : vms) DropVm(vm);
    return 0;
  }

  int StrataRun(const std::vector<std::string>& vms, int run, Figures& figures) {
    strata::agent::BackupParams params;
    params.name = Cat("sb", vms.size(), "-", run);
    params.backup_id = "id-" + params.name;
    params.vms = vms;
    params.consistency = strata::agent::ConsistencyMode::kCrash;
    std::map<std::string, Clock::time_point> held_since;
    std::vector<double> holds;
    const auto start = Clock::now();
    absl::StatusOr<strata::agent::BackupOutcome> out =
        engine_->Run(params, [&](const strata::agent::BackupStep& s) {
          if (trace_) {
            std::printf("  %8.1f ms  %-18s %s\n", Ms(Clock::now() - start), s.step.c_str(),
                        s.vm_name.c_str());
          }
          if (s.step == "overlay") held_since[s.vm_name] = Clock::now();
          if (s.step == "committed" && held_since.count(s.vm_name)) {
            holds.push_back(Ms(Clock::now() - held_since[s.vm_name]));
          }
        });
    const double total = Ms(Clock::now() - start);
    if (!out.ok()) return Fail(std::string(out.status().message()));
    if (out->manifest.state != "succeeded" || holds.size() != vms.size()) {
      return Fail(Cat("Strata backup ", params.name, " ended ", out->manifest.state,
                      (out->manifest.vms.empty() ? "" : ": " + out->manifest.vms[0].error)));
    }
    figures.totals_ms.push_back(total);
    figures.holds_ms.insert(figures.holds_ms.end(), holds.begin(), holds.end());
    for (const auto& snap : out->manifest.snapshots) {
      (void)engine_->DeleteSnapshot(snap.storage_volume, snap.snapshot_id);
    }
    return 0;
  }

  int ScriptRun(const std::vector<std::string>& vms, int run, Figures& figures) {
    const std::string snap_dir = Cat(work_.string(), "/script-snapshots/s", vms.size(), "-", run);
    std::string script = Cat("set -e\nV='virsh -q -c qemu:///system'\nmkdir -p '", snap_dir,
                             "'\nms() { echo $(( $(date +%s%N) / 1000000 )); }\n");
    for (const std::string& vm : vms) {
      const std::string base = Cat(work_.string(), "/gold/", vm, ".qcow2");
      const std::string overlay = Cat(work_.string(), "/gold/", vm, ".script-overlay");
      script += Cat("t0=$(ms)\n$V snapshot-create-as '", vm, "' s --disk-only --atomic ",
                    "--diskspec vda,file='", overlay, "' >/dev/null\n",
                    "cp --reflink=auto --sparse=always '", base, "' '", snap_dir, "/'\n",
                    "$V blockcommit '", vm, "' vda --active --pivot >/dev/null\n", "t1=$(ms)\n",
                    "$V snapshot-delete '", vm, "' s --metadata >/dev/null\nrm -f '", overlay,
                    "'\necho HOLD $((t1 - t0))\n");
    }
    const auto start = Clock::now();
    auto [code, out] = Sh(script);
    const double total = Ms(Clock::now() - start);
    if (code != 0) return Fail("the virsh script failed: " + out);
    std::istringstream in(out);
    for (std::string word; in >> word;) {
      if (word == "HOLD") {
        double ms = 0;
        in >> ms;
        figures.holds_ms.push_back(ms);
      }
    }
    figures.totals_ms.push_back(total);
    fs::remove_all(snap_dir);
    return 0;
  }

  void DropVm(const std::string& vm) {
    Sh(Cat("virsh -q -c qemu:///system destroy '", vm, "' >/dev/null; virsh -q -c qemu:///system ",
           "undefine '", vm, "' --snapshots-metadata >/dev/null"));
    made_.erase(std::remove(made_.begin(), made_.end(), vm), made_.end());
  }

  void Cleanup() {
    engine_.reset();
    services_.reset();
    for (const std::string& vm : std::vector<std::string>(made_)) DropVm(vm);
    if (!work_.empty()) fs::remove_all(work_);
  }

  Options opt_;
  const bool trace_ = std::getenv("STRATA_BENCH_TRACE") != nullptr;  // every step, timed
  fs::path work_;
  std::vector<std::string> made_;
  strata::agent::PluginHost plugins_;
  std::unique_ptr<strata::agent::HostServices> services_;
  std::unique_ptr<strata::agent::BackupEngine> engine_;
};

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::warn);
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    const auto next = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (arg == "--runs") {
      opt.runs = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--data-mib") {
      opt.data_mib = std::max(1, std::atoi(next().c_str()));
    } else if (arg == "--vms") {
      opt.vm_counts.clear();
      std::istringstream in(next());
      for (std::string n; std::getline(in, n, ',');) opt.vm_counts.push_back(std::atoi(n.c_str()));
    } else if (arg == "--quick") {
      opt.runs = 1;
      opt.vm_counts = {1, 2};
    } else {
      std::fprintf(stderr,
                   "usage: qemu_backup_bench [--runs N] [--data-mib N] [--vms 1,4,8] [--quick]\n");
      return 2;
    }
  }
  return Bench(opt).Run();
}
