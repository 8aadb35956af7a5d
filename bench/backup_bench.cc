// Backup benchmark (printed, not asserted; issue 5). Needs root, loop devices, mkfs.xfs, libvirtd
// and virsh; exits 77 (skipped) without them. Everything it makes (loop file systems, a private
// libvirtd, temporary files) is undone before it exits, also after a failure or SIGINT/SIGTERM.
//
//  1. N VMs (default 100) with 2 disks each: sparse raw files of 64 MiB holding 1 MiB of data in
//     4 extents, on a `dir` storage volume on xfs (reflink=1, a loop device). The VMs are running
//     test-driver domains on a private libvirtd (tests/integration/private_libvirtd.h) that virsh
//     and the agent's libvirt plug-in share.
//  2. Strata: CreateBackup in a SQLite catalog (a temporary file), BackupEngine::Run over every
//     VM in `pause` mode through HostServices and the dlopen'ed libvirt and dir plug-ins (the
//     agent's own path, with its hypervisor connection already open as in the running agent),
//     then FinishBackup with one item per disk and the manifest (what stratad writes).
//     vm_snapshot = "none": the test driver's internal snapshots are only its bookkeeping (no
//     data is saved), and on QEMU "auto" takes none either.
//  3. The operator's script: per VM `virsh suspend`, `cp --reflink=always` of its two disks into
//     a snapshot directory, `virsh resume`, in a bash loop. Goal: script / Strata >= 5.
//  4. The floor: the FICLONE ioctl on the same files in a tight loop. Goal: Strata / floor <= 2.
//     Also printed: FICLONE plus an fsync of each copy (the durability Strata's snapshot has;
//     neither the floor nor the script's cp syncs anything), and FICLONE plus one syncfs.
//     2-4 run --runs times (default 5), interleaved, after one uncounted warm-up, with the
//     snapshots removed and the file system synced between runs; medians are printed. Per-VM
//     hold time (paused -> running again) is taken from the lifecycle events libvirtd sent to a
//     `virsh event --timestamp` client (one clock, millisecond resolution, for both) and, for
//     Strata, also from its progress steps.
//  5. Snapshot time against disk size: a 1 MiB disk (all data) and two 4 GiB sparse disks with
//     256 MiB of data, scattered (1 MiB every 16 MiB) or in one run (a reflink's cost follows
//     the extents it shares, not the size): the dir plug-in (reflink) on xfs and on btrfs, with
//     the FICLONE alone beside it, and the btrfs plug-in (a subvolume snapshot per disk).
//  6. The copy fallback (CloneOrCopyFile with allow_reflink=false) against `cp --sparse=always` of
//     the same 512 MiB file (data in every other MiB) on ext4 (a loop device), source in the page
//     cache for both, alternating, after an uncounted warm-up: throughput of data, against cp
//     with and without an fsync of its copy.
//  7. Catalog: N items (default 1,000,000) as stratad writes backups (CreateBackup, then
//     FinishBackup with 100 items: 50 VMs x 2 disks, over a fleet of 1,000 VMs, every seventh
//     backup failed), then random LatestRestorePoint lookups: p50, p99 (goal p99 <= 200 us).
//
//   backup_bench [--vms N] [--items N] [--runs N] [--lookups N] [--quick]
//     --quick: 10 VMs, 20,000 items, 2,000 lookups, one run, 512 MiB big disks and a 64 MiB
//     copy (a smoke run for CI, a few seconds).
//
// The loop devices' images live in /tmp, so every fsync ends on the machine's disk: on a shared
// machine the times that include one vary from run to run (the load average is printed).
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <linux/fiemap.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "private_libvirtd.h"
#include "spdlog/spdlog.h"
#include "strata/agent/backup_engine.h"
#include "strata/agent/config.h"
#include "strata/agent/host_services.h"
#include "strata/agent/plugin_host.h"
#include "strata/core/status_macros.h"
#include "strata/server/catalog.h"
#include "strata/storage/file_copy.h"
#include "strata/util/strings.h"
#include "testing/loop_fs.h"

namespace {

namespace fs = std::filesystem;
namespace agent = strata::agent;
namespace srv = strata::server;
using Clock = std::chrono::steady_clock;
using strata::testing::LoopFs;
using strata::testing::PrivateLibvirtd;
using strata::testing::Quote;
using strata::testing::Shell;
using strata::util::Cat;

constexpr int kSkipped = 77;
constexpr uint64_t kMiB = 1ull << 20;
// FICLONE and FS_IOC_FIEMAP from <linux/fs.h>, which cannot be included beside <sys/mount.h>
// (loop_fs.h).
constexpr unsigned long kFiclone = _IOW(0x94, 9, int);
constexpr unsigned long kFiemap = _IOWR('f', 11, struct fiemap);

// ---- small helpers -----------------------------------------------------------------------------

std::atomic<bool> g_interrupted{false};
void OnSignal(int) { g_interrupted = true; }

absl::Status CheckInterrupted() {
  return g_interrupted ? absl::CancelledError("interrupted by a signal") : absl::OkStatus();
}

std::string Msg(const absl::Status& s) { return std::string(strata::util::ToStd(s.message())); }

absl::Status Annotate(const std::string& what, const absl::Status& s) {
  return absl::Status(s.code(), Cat(what, ": ", Msg(s)));
}

absl::Status ErrnoError(const std::string& what) {
  return absl::InternalError(Cat(what, ": ", std::strerror(errno)));
}

double Seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }
double Ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

// Nearest-rank percentile (p in 0..100); NAN for no values.
double Percentile(std::vector<double> values, double p) {
  if (values.empty()) return NAN;
  std::sort(values.begin(), values.end());
  const size_t rank =
      static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(values.size())));
  return values[std::clamp<size_t>(rank, 1, values.size()) - 1];
}
double Median(const std::vector<double>& values) { return Percentile(values, 50); }

std::string Fixed(double value, int decimals) {
  if (std::isnan(value)) return "n/a";
  char buffer[64];
  std::snprintf(buffer, sizeof buffer, "%.*f", decimals, value);
  return buffer;
}

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five, fifteen;
  in >> one >> five >> fifteen;
  return Cat(one, " ", five, " ", fifteen);
}

std::string Thousands(uint64_t value) {
  std::string digits = std::to_string(value);
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// Flushes one file system (the one holding `path`), so that one measurement's writeback and
// deferred frees do not land in the next.
void SyncFs(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::syncfs(fd);
  ::close(fd);
}

// A sparse file of `size` bytes holding `chunk` bytes of pseudo-random data at 0, stride,
// 2*stride, ... below `data_end` (one extent each when stride > chunk).
absl::Status MakeSparseFile(const std::string& path, uint64_t size, uint64_t chunk, uint64_t stride,
                            uint64_t seed, uint64_t data_end = UINT64_MAX) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) return ErrnoError(Cat("cannot create '", path, "'"));
  std::vector<uint64_t> buffer(chunk / sizeof(uint64_t));
  std::mt19937_64 rng(seed);
  for (uint64_t& word : buffer) word = rng();
  absl::Status status;
  for (uint64_t offset = 0; offset < std::min(size, data_end) && status.ok(); offset += stride) {
    buffer[0] = offset ^ seed;  // every chunk differs
    const size_t want = static_cast<size_t>(std::min(chunk, size - offset));
    if (::pwrite(fd, buffer.data(), want, static_cast<off_t>(offset)) !=
        static_cast<ssize_t>(want)) {
      status = ErrnoError(Cat("cannot write '", path, "'"));
    }
  }
  if (status.ok() && ::ftruncate(fd, static_cast<off_t>(size)) != 0) {
    status = ErrnoError(Cat("cannot set the size of '", path, "'"));
  }
  ::close(fd);
  return status;
}

// FICLONE of `src` into a new `dst`; with `sync`, the copy is fsynced too.
absl::Status Ficlone(const std::string& src, const std::string& dst, bool sync) {
  const int in = ::open(src.c_str(), O_RDONLY);
  if (in < 0) return ErrnoError(Cat("cannot open '", src, "'"));
  const int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (out < 0) {
    ::close(in);
    return ErrnoError(Cat("cannot create '", dst, "'"));
  }
  absl::Status status;
  if (::ioctl(out, kFiclone, in) != 0) {
    status = ErrnoError(Cat("cannot clone '", src, "' to '", dst, "' (FICLONE)"));
  } else if (sync && ::fsync(out) != 0) {
    status = ErrnoError(Cat("cannot sync '", dst, "'"));
  }
  ::close(out);
  ::close(in);
  return status;
}

absl::Status SyncPath(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return ErrnoError(Cat("cannot open '", path, "'"));
  const int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? absl::OkStatus() : ErrnoError(Cat("cannot sync '", path, "'"));
}

uint64_t AllocatedBytes(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
}

// The file's extents as the file system maps them (FIEMAP; filefrag would merge physically
// adjacent ones); -1 when unknown.
int Extents(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return -1;
  struct fiemap map {};
  map.fm_length = FIEMAP_MAX_OFFSET;
  map.fm_flags = FIEMAP_FLAG_SYNC;
  map.fm_extent_count = 0;  // count only
  const int rc = ::ioctl(fd, kFiemap, &map);
  ::close(fd);
  return rc == 0 ? static_cast<int>(map.fm_mapped_extents) : -1;
}

// A temporary directory, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/strata-bb-XXXXXX";  // short: libvirtd's sockets live below it
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ignored;
    if (!path_.empty()) fs::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct ConnectionCloser {
  void operator()(virConnectPtr c) const { virConnectClose(c); }
};
using Connection = std::unique_ptr<virConnect, ConnectionCloser>;
struct DomainFreer {
  void operator()(virDomainPtr d) const { virDomainFree(d); }
};
using DomainPtr = std::unique_ptr<virDomain, DomainFreer>;

void SilentLibvirtErrors(void*, virErrorPtr) {}

absl::Status LibvirtError(const std::string& what) {
  const char* message = virGetLastErrorMessage();
  return absl::InternalError(Cat(what, ": ", message != nullptr ? message : "unknown error"));
}

// ---- the printed table -------------------------------------------------------------------------

struct Row {
  std::string measure;
  std::string value;
  std::string goal;
  std::string verdict;  // "met", "MISSED" or ""
};

class Table {
 public:
  void Add(std::string measure, std::string value, std::string goal = "",
           std::optional<bool> met = std::nullopt) {
    rows_.push_back({std::move(measure), std::move(value), std::move(goal),
                     met ? (*met ? "met" : "MISSED") : ""});
  }
  void Section(std::string title) { rows_.push_back({std::move(title), "", "", "#"}); }
  void Print() const {
    std::printf("%-66s %22s %8s\n", "measure", "value", "goal");
    for (const Row& row : rows_) {
      if (row.verdict == "#") {
        std::printf("-- %s\n", row.measure.c_str());
        continue;
      }
      std::printf("%-66s %22s %8s %s\n", row.measure.c_str(), row.value.c_str(), row.goal.c_str(),
                  row.verdict.c_str());
    }
  }

 private:
  std::vector<Row> rows_;
};

// ---- options -----------------------------------------------------------------------------------

struct Options {
  int vms = 100;
  int64_t items = 1'000'000;
  int runs = 5;
  int lookups = 10'000;
  int size_reps = 5;  // snapshots per disk size
  int copy_reps = 5;  // copies per tool
  bool quick = false;
  uint64_t big_disk = 4096 * kMiB;  // 256 MiB of data: 1 MiB every 16 MiB
  uint64_t copy_file = 512 * kMiB;  // data in every other MiB
};

// ---- the lifecycle events libvirtd sent (the keeper's `virsh event --timestamp` log) ------------

// Milliseconds since the epoch of "YYYY-MM-DD HH:MM:SS.mmm" at the start of `line` (UTC, as
// virsh prints it); nullopt when the line does not start so.
std::optional<int64_t> EventTimeMs(const std::string& line) {
  if (line.size() < 23 || line[4] != '-' || line[10] != ' ' || line[19] != '.') return std::nullopt;
  auto number = [&](size_t at, size_t len) -> std::optional<int> {
    int value = 0;
    for (size_t i = at; i < at + len; ++i) {
      if (line[i] < '0' || line[i] > '9') return std::nullopt;
      value = value * 10 + (line[i] - '0');
    }
    return value;
  };
  auto year = number(0, 4), month = number(5, 2), day = number(8, 2), hour = number(11, 2),
       minute = number(14, 2), second = number(17, 2), milli = number(20, 3);
  if (!year || !month || !day || !hour || !minute || !second || !milli) return std::nullopt;
  const std::chrono::sys_days date = std::chrono::year(*year) /
                                     std::chrono::month(static_cast<unsigned>(*month)) /
                                     std::chrono::day(static_cast<unsigned>(*day));
  return std::chrono::duration_cast<std::chrono::milliseconds>(date.time_since_epoch()).count() +
         ((*hour * 60 + *minute) * 60 + *second) * 1000 + *milli;
}

class EventLog {
 public:
  explicit EventLog(std::string path) : path_(std::move(path)) {}

  // Where the next phase's events start.
  void Mark() {
    std::error_code ec;
    offset_ = fs::exists(path_, ec) ? fs::file_size(path_, ec) : 0;
  }

  // Per VM of `names`: milliseconds from its "Suspended" event to its "Resumed" event after the
  // mark. Waits up to 3 s for every VM's "Resumed" (events are delivered asynchronously).
  std::vector<double> Holds(const std::vector<std::string>& names) const {
    std::map<std::string, int64_t> suspended, resumed;
    const auto deadline = Clock::now() + std::chrono::seconds(3);
    while (true) {
      suspended.clear();
      resumed.clear();
      std::ifstream in(path_, std::ios::binary);
      in.seekg(static_cast<std::streamoff>(offset_));
      std::string line;
      while (std::getline(in, line)) {
        static constexpr std::string_view kPrefix = "event 'lifecycle' for domain '";
        const size_t at = line.find(kPrefix);
        if (at == std::string::npos) continue;
        const size_t name_start = at + kPrefix.size();
        const size_t name_end = line.find("': ", name_start);
        if (name_end == std::string::npos) continue;
        const std::optional<int64_t> ms = EventTimeMs(line);
        if (!ms) continue;
        const std::string name = line.substr(name_start, name_end - name_start);
        const std::string_view what = std::string_view(line).substr(name_end + 3);
        if (what.starts_with("Suspended")) suspended.emplace(name, *ms);
        if (what.starts_with("Resumed")) resumed.emplace(name, *ms);
      }
      size_t complete = 0;
      for (const std::string& name : names) complete += resumed.count(name);
      if (complete == names.size() || Clock::now() > deadline) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::vector<double> holds;
    for (const std::string& name : names) {
      auto s = suspended.find(name);
      auto r = resumed.find(name);
      if (s != suspended.end() && r != resumed.end()) {
        holds.push_back(static_cast<double>(r->second - s->second));
      }
    }
    return holds;
  }

 private:
  std::string path_;
  uintmax_t offset_ = 0;
};

// ---- the benchmark -----------------------------------------------------------------------------

struct Vm {
  std::string name;
  std::string uuid;
  std::vector<std::string> disks;  // vda, vdb
};

struct StrataRun {
  double total_s = 0;     // CreateBackup .. FinishBackup
  double prepare_s = 0;   // listing, saved XML, volume claims (Run start .. first pause)
  double pause_s = 0;     // suspending every VM
  double snapshot_s = 0;  // the volume's storage snapshot (one per volume)
  double resume_s = 0;    // resuming every VM (.. manifest step)
  double finish_s = 0;    // manifest files (.. Run returns)
  double catalog_s = 0;   // CreateBackup + FinishBackup
  std::vector<double> hold_steps_ms;   // per VM: "pause" step .. "resume" step
  std::vector<double> hold_events_ms;  // per VM: libvirt's Suspended .. Resumed events
};

struct ScriptRun {
  double total_s = 0;
  std::vector<double> cp_ms;           // per VM: the cp alone
  std::vector<double> hold_events_ms;  // per VM: libvirt's Suspended .. Resumed events
};

// Declaration order is construction order; destruction runs backwards: the engine and the
// agent's services before libvirtd stops, libvirtd before the file systems are unmounted, the
// temporary directory last.
class Bench {
 public:
  explicit Bench(Options options) : opt_(std::move(options)) {}

  // Returns the exit code: 0, kSkipped, or 1 after printing why.
  int Main();

 private:
  absl::Status SetUpFileSystems();
  absl::Status SetUpVms();
  absl::Status SetUpAgent();
  absl::StatusOr<StrataRun> RunStrata(int run);
  absl::StatusOr<ScriptRun> RunScript(int run);
  enum class Durability { kNone, kFsyncEach, kSyncfsOnce };
  absl::StatusOr<double> RunFloor(int run, Durability durability);
  absl::Status MeasureBackups();
  absl::StatusOr<double> TimeSnapshot(const std::string& file, const std::string& name,
                                      std::string* method);
  absl::Status MeasureSnapshotSizes();
  absl::Status MeasureCopyFallback();
  absl::Status MeasureCatalog();
  std::vector<std::string> VmNames() const;
  std::vector<std::string> DiskFiles() const;

  Options opt_;
  TempDir tmp_;
  LoopFs xfs_;
  LoopFs btrfs_;
  LoopFs ext4_;
  std::string btrfs_skip_;  // why the btrfs measures are skipped; empty when they run
  std::string ext4_skip_;
  std::unique_ptr<PrivateLibvirtd> libvirtd_;
  Connection connection_;
  agent::PluginHost plugins_;
  std::unique_ptr<agent::HostServices> services_;
  std::unique_ptr<agent::BackupEngine> engine_;
  std::unique_ptr<srv::Catalog> run_catalog_;  // the one the backups are written to
  std::unique_ptr<EventLog> events_;
  std::vector<Vm> vms_;
  Table table_;
  std::vector<std::string> notes_;
};

std::vector<std::string> Bench::VmNames() const {
  std::vector<std::string> names;
  for (const Vm& vm : vms_) names.push_back(vm.name);
  return names;
}

std::vector<std::string> Bench::DiskFiles() const {
  std::vector<std::string> files;
  for (const Vm& vm : vms_) files.insert(files.end(), vm.disks.begin(), vm.disks.end());
  return files;
}

std::string XfsVolume(const LoopFs& xfs) { return xfs.mount_point() + "/vms"; }

absl::Status Bench::SetUpFileSystems() {
  // xfs: the VMs' volume and the size test; sparse image, little of it is written.
  STRATA_RETURN_IF_ERROR(xfs_.Create("xfs", "-q -f -m reflink=1", opt_.quick ? "2G" : "6G"));
  for (const char* dir : {"/vms", "/size"}) fs::create_directories(xfs_.mount_point() + dir);
  // btrfs and ext4 are optional: their rows say why when they cannot be made.
  if (absl::Status s = btrfs_.Create("btrfs", "-q -f", opt_.quick ? "2G" : "6G"); !s.ok()) {
    if (!absl::IsFailedPrecondition(s)) return Annotate("btrfs loop file system", s);
    btrfs_skip_ = Msg(s);
  } else {
    const std::string& mnt = btrfs_.mount_point();
    std::string out;
    for (const char* sub : {"/sub-0", "/sub-1", "/sub-2"}) {
      if (!Shell("btrfs subvolume create " + Quote(mnt + sub), &out)) {
        return absl::InternalError(Cat("btrfs subvolume create ", mnt, sub, " failed: ", out));
      }
    }
    fs::create_directories(mnt + "/dir");
  }
  const std::string ext4_size = opt_.quick ? "1G" : "3G";
  if (absl::Status s =
          ext4_.Create("ext4", "-q -F -E lazy_itable_init=0,lazy_journal_init=0", ext4_size);
      !s.ok()) {
    if (!absl::IsFailedPrecondition(s)) return Annotate("ext4 loop file system", s);
    ext4_skip_ = Msg(s);
  }
  return absl::OkStatus();
}

absl::Status Bench::SetUpVms() {
  // The disks: 64 MiB sparse, 1 MiB of data in 4 extents each.
  const auto t0 = Clock::now();
  for (int i = 0; i < opt_.vms; ++i) {
    STRATA_RETURN_IF_ERROR(CheckInterrupted());
    char name[32], uuid[40];
    std::snprintf(name, sizeof name, "bench-vm%03d", i);
    std::snprintf(uuid, sizeof uuid, "b0000000-0000-4000-8000-%012d", i);
    Vm vm{name, uuid, {}};
    for (const char* target : {"vda", "vdb"}) {
      const std::string path = Cat(XfsVolume(xfs_), "/", name, "-", target, ".raw");
      STRATA_RETURN_IF_ERROR(MakeSparseFile(path, 64 * kMiB, 256 * 1024, 16 * kMiB,
                                            vms_.size() * 2 + vm.disks.size()));
      vm.disks.push_back(path);
    }
    vms_.push_back(std::move(vm));
  }
  SyncFs(xfs_.mount_point());
  std::printf("made %d disks (64 MiB sparse, 1 MiB of data in 4 extents) in %.1f s\n", opt_.vms * 2,
              Seconds(Clock::now() - t0));

  // The hypervisor: a private libvirtd, the VMs defined and started through the C API.
  absl::StatusOr<std::unique_ptr<PrivateLibvirtd>> daemon =
      PrivateLibvirtd::Start(tmp_.path() + "/lv");
  if (!daemon.ok()) return Annotate("starting the private libvirtd", daemon.status());
  libvirtd_ = *std::move(daemon);
  events_ = std::make_unique<EventLog>(libvirtd_->dir() + "/keeper.log");
  virSetErrorFunc(nullptr, SilentLibvirtErrors);
  connection_.reset(virConnectOpen(libvirtd_->uri().c_str()));
  if (!connection_) return LibvirtError(Cat("cannot connect to '", libvirtd_->uri(), "'"));
  for (const Vm& vm : vms_) {
    std::string xml = Cat("<domain type='test'><name>", vm.name, "</name><uuid>", vm.uuid,
                          "</uuid><memory unit='MiB'>512</memory><vcpu>1</vcpu>"
                          "<os><type>hvm</type></os><devices>");
    const char* targets[] = {"vda", "vdb"};
    for (size_t d = 0; d < vm.disks.size(); ++d) {
      xml += Cat("<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='",
                 vm.disks[d], "'/><target dev='", targets[d], "' bus='virtio'/></disk>");
    }
    xml += "</devices></domain>";
    DomainPtr domain(virDomainDefineXML(connection_.get(), xml.c_str()));
    if (!domain) return LibvirtError(Cat("cannot define VM '", vm.name, "'"));
    if (virDomainCreate(domain.get()) < 0) {
      return LibvirtError(Cat("cannot start VM '", vm.name, "'"));
    }
  }
  return absl::OkStatus();
}

absl::Status Bench::SetUpAgent() {
  absl::StatusOr<int> loaded = plugins_.LoadDirectory(STRATA_PLUGIN_DIR);
  if (!loaded.ok()) return Annotate("loading the plug-ins", loaded.status());
  agent::AgentConfig config;
  config.host_id = "bench-host";
  config.connect = libvirtd_->uri();
  config.server = "";
  config.plugin_dir = STRATA_PLUGIN_DIR;
  config.reconcile_interval_s = 0;
  config.event_window_ms = 0;
  config.state_dir = tmp_.path() + "/agent-state";
  config.dir_volumes.push_back({"bench", XfsVolume(xfs_)});
  config.dir_volumes.push_back({"xfs-size", xfs_.mount_point() + "/size"});
  if (btrfs_skip_.empty()) {
    config.dir_volumes.push_back({"btrfs-dir", btrfs_.mount_point() + "/dir"});
    for (int k = 0; k < 3; ++k) {
      config.btrfs_volumes.push_back({Cat("btrfs-", k), Cat(btrfs_.mount_point(), "/sub-", k)});
    }
  }
  services_ = std::make_unique<agent::HostServices>(plugins_, config);
  if (std::vector<std::string> errors = services_->PluginErrors(); !errors.empty()) {
    return absl::FailedPreconditionError(Cat("plug-in errors: ", strata::util::Join(errors, "; ")));
  }
  engine_ = std::make_unique<agent::BackupEngine>(*services_);
  // The running agent keeps its hypervisor connection: open it before measuring.
  STRATA_RETURN_IF_ERROR(services_->WithHypervisor([](auto&) { return absl::OkStatus(); }));
  absl::StatusOr<std::unique_ptr<srv::Catalog>> catalog =
      srv::OpenSqliteCatalog(tmp_.path() + "/run-catalog.db");
  if (!catalog.ok()) return Annotate("opening the catalog", catalog.status());
  run_catalog_ = *std::move(catalog);
  return absl::OkStatus();
}

absl::StatusOr<StrataRun> Bench::RunStrata(int run) {
  const std::string name = Cat("bench-r", run);
  const std::string id = Cat("id-", name);
  struct Step {
    Clock::time_point at;
    std::string step;
    std::string vm;
  };
  std::vector<Step> steps;
  steps.reserve(static_cast<size_t>(opt_.vms) * 8 + 16);
  agent::BackupParams params;
  params.backup_id = id;
  params.name = name;
  params.vms = VmNames();
  params.consistency = agent::ConsistencyMode::kPause;
  params.requester = "backup_bench";
  params.vm_snapshot = "none";

  events_->Mark();
  const auto t0 = Clock::now();
  srv::BackupRecord record;
  record.id = id;
  record.name = name;
  record.requester = params.requester;
  record.consistency = srv::Consistency::kPause;
  record.state = srv::BackupState::kRunning;
  record.started_at = std::chrono::system_clock::now();
  STRATA_RETURN_IF_ERROR(run_catalog_->CreateBackup(record));
  const auto t_created = Clock::now();
  absl::StatusOr<agent::BackupOutcome> outcome =
      engine_->Run(params, [&](const agent::BackupStep& s) {
        steps.push_back({Clock::now(), s.step, s.vm_name});
      });
  const auto t_ran = Clock::now();
  if (!outcome.ok()) return Annotate("BackupEngine::Run", outcome.status());
  srv::BackupFinish finish;
  finish.backup = id;
  finish.state = srv::BackupState::kSucceeded;
  finish.finished_at = std::chrono::system_clock::now();
  nlohmann::json vm_summary = nlohmann::json::array();
  for (const strata::backup::ManifestVm& vm : outcome->manifest.vms) {
    vm_summary.push_back({{"uuid", vm.uuid},
                          {"name", vm.name},
                          {"host", vm.host},
                          {"ok", vm.ok},
                          {"error", vm.error},
                          {"consistency_achieved", vm.consistency_achieved}});
    for (const strata::backup::ManifestDisk& disk : vm.disks) {
      finish.items.push_back({.vm_uuid = vm.uuid,
                              .vm_name = vm.name,
                              .disk_target = disk.target,
                              .source_path = disk.source_path,
                              .storage_volume = disk.storage_volume,
                              .snapshot_id = disk.snapshot_id,
                              .path_in_snapshot = disk.path_in_snapshot,
                              .size_bytes = static_cast<int64_t>(disk.size_bytes),
                              .checksum = disk.checksum});
    }
  }
  finish.metadata_patch = nlohmann::json{
      {"state", outcome->manifest.state},
      {"vms", std::move(vm_summary)},
      {"manifests", nlohmann::json::array({strata::backup::ToJson(outcome->manifest)})}};
  const size_t items = finish.items.size();
  STRATA_RETURN_IF_ERROR(run_catalog_->FinishBackup(finish));
  const auto t1 = Clock::now();

  // Checks (outside the measure): every VM backed up by reflink, every VM running again.
  const strata::backup::BackupManifest& m = outcome->manifest;
  if (m.state != "succeeded" || items != static_cast<size_t>(opt_.vms) * 2) {
    std::string error;
    for (const auto& vm : m.vms) {
      if (!vm.ok) error = vm.error;
    }
    return absl::InternalError(
        Cat("backup '", name, "' is ", m.state, " with ", items, " items (", error, ")"));
  }
  for (const auto& snap : m.snapshots) {
    if (snap.method != "reflink") {
      return absl::InternalError(
          Cat("snapshot of '", snap.volume_name, "' used '", snap.method, "', not reflink"));
    }
  }
  StrataRun r;
  r.total_s = Seconds(t1 - t0);
  r.catalog_s = Seconds(t_created - t0) + Seconds(t1 - t_ran);
  std::optional<Clock::time_point> first_pause, snapshot, first_resume, manifest;
  std::map<std::string, Clock::time_point> paused, resumed;
  for (const Step& s : steps) {
    if (s.step == "pause") {
      if (!first_pause) first_pause = s.at;
      paused.emplace(s.vm, s.at);
    } else if (s.step == "storage-snapshot" && !snapshot) {
      snapshot = s.at;
    } else if (s.step == "resume") {
      if (!first_resume) first_resume = s.at;
      resumed.emplace(s.vm, s.at);
    } else if (s.step == "manifest" && !manifest) {
      manifest = s.at;
    }
  }
  if (first_pause && snapshot && first_resume && manifest) {
    r.prepare_s = Seconds(*first_pause - t_created);
    r.pause_s = Seconds(*snapshot - *first_pause);
    r.snapshot_s = Seconds(*first_resume - *snapshot);
    r.resume_s = Seconds(*manifest - *first_resume);
    r.finish_s = Seconds(t_ran - *manifest);
  }
  for (const auto& [vm, at] : paused) {
    if (auto it = resumed.find(vm); it != resumed.end()) {
      r.hold_steps_ms.push_back(Ms(it->second - at));
    }
  }
  r.hold_events_ms = events_->Holds(VmNames());

  // Clean up for the next run: the snapshot and its manifest (the catalog keeps the record).
  for (const auto& snap : m.snapshots) {
    STRATA_RETURN_IF_ERROR(engine_->DeleteSnapshot(snap.storage_volume, snap.snapshot_id));
  }
  SyncFs(xfs_.mount_point());
  return r;
}

absl::StatusOr<ScriptRun> Bench::RunScript(int run) {
  const std::string work = tmp_.path() + "/script";
  fs::create_directories(work);
  const std::string list = work + "/vms.txt";
  const std::string script = work + "/backup.sh";
  if (run == 1) {
    std::ofstream out(list, std::ios::trunc);
    for (const Vm& vm : vms_) out << vm.name << ' ' << vm.disks[0] << ' ' << vm.disks[1] << '\n';
    std::ofstream sh(script, std::ios::trunc);
    sh << "#!/bin/bash\n"
          "# What an operator would script: pause each VM, reflink its disks, resume it.\n"
          "# ($EPOCHREALTIME is a bash built-in: the timestamps cost no process.)\n"
          "set -eu\n"
          "uri=$1; list=$2; snap=$3; times=$4\n"
          "mkdir -p \"$snap\"\n"
          "while read -r vm d1 d2; do\n"
          "  t0=$EPOCHREALTIME\n"
          "  virsh -q -c \"$uri\" suspend \"$vm\" > /dev/null\n"
          "  t1=$EPOCHREALTIME\n"
          "  cp --reflink=always \"$d1\" \"$d2\" \"$snap/\"\n"
          "  t2=$EPOCHREALTIME\n"
          "  virsh -q -c \"$uri\" resume \"$vm\" > /dev/null\n"
          "  t3=$EPOCHREALTIME\n"
          "  echo \"$vm $t0 $t1 $t2 $t3\" >> \"$times\"\n"
          "done < \"$list\"\n";
  }
  // The snapshot directory on the same xfs (a reflink cannot cross file systems).
  const std::string snap = Cat(xfs_.mount_point(), "/script-r", run);
  const std::string times = Cat(work, "/times-r", run, ".txt");
  events_->Mark();
  std::string out;
  const auto t0 = Clock::now();
  const bool ok = Shell(Cat("bash ", Quote(script), " ", Quote(libvirtd_->uri()), " ", Quote(list),
                            " ", Quote(snap), " ", Quote(times)),
                        &out)
                      .has_value();
  const auto t1 = Clock::now();
  if (!ok) return absl::InternalError(Cat("the operator's script failed: ", out));
  ScriptRun r;
  r.total_s = Seconds(t1 - t0);
  std::ifstream in(times);
  std::string vm;
  double a, b, c, d;
  while (in >> vm >> a >> b >> c >> d) r.cp_ms.push_back((c - b) * 1000);
  if (r.cp_ms.size() != vms_.size()) {
    return absl::InternalError(
        Cat("the operator's script timed ", r.cp_ms.size(), " of ", vms_.size(), " VMs"));
  }
  size_t copies = 0;
  for (const auto& entry : fs::directory_iterator(snap)) copies += entry.is_regular_file();
  if (copies != vms_.size() * 2) {
    return absl::InternalError(Cat("the operator's script made ", copies, " copies"));
  }
  r.hold_events_ms = events_->Holds(VmNames());
  fs::remove_all(snap);
  SyncFs(xfs_.mount_point());
  return r;
}

absl::StatusOr<double> Bench::RunFloor(int run, Durability durability) {
  const std::string dir =
      Cat(xfs_.mount_point(), "/floor-r", run, "-", static_cast<int>(durability));
  fs::create_directories(dir);
  std::vector<std::string> sources = DiskFiles();
  std::vector<std::string> targets;
  for (const std::string& src : sources) {
    targets.push_back(dir + "/" + fs::path(src).filename().string());
  }
  const auto t0 = Clock::now();
  for (size_t i = 0; i < sources.size(); ++i) {
    STRATA_RETURN_IF_ERROR(Ficlone(sources[i], targets[i], durability == Durability::kFsyncEach));
  }
  if (durability == Durability::kFsyncEach) STRATA_RETURN_IF_ERROR(SyncPath(dir));
  if (durability == Durability::kSyncfsOnce) SyncFs(dir);
  const auto t1 = Clock::now();
  fs::remove_all(dir);
  SyncFs(xfs_.mount_point());
  return Seconds(t1 - t0);
}

absl::Status Bench::MeasureBackups() {
  std::vector<StrataRun> strata;
  std::vector<ScriptRun> script;
  std::vector<double> floor, floor_sync, floor_syncfs;
  // A warm-up, not counted: the first writes to a region of the loop device's sparse image
  // allocate blocks in the file system below it (here: xfs metadata), later ones reuse them.
  {
    absl::StatusOr<StrataRun> s = RunStrata(0);
    if (!s.ok()) return Annotate("Strata, warm-up run", s.status());
    absl::StatusOr<double> f = RunFloor(0, Durability::kFsyncEach);
    if (!f.ok()) return Annotate("floor, warm-up run", f.status());
  }
  for (int run = 1; run <= opt_.runs; ++run) {
    STRATA_RETURN_IF_ERROR(CheckInterrupted());
    absl::StatusOr<StrataRun> s = RunStrata(run);
    if (!s.ok()) return Annotate(Cat("Strata, run ", run), s.status());
    strata.push_back(*s);
    STRATA_RETURN_IF_ERROR(CheckInterrupted());
    absl::StatusOr<ScriptRun> sh = RunScript(run);
    if (!sh.ok()) return Annotate(Cat("script, run ", run), sh.status());
    script.push_back(*sh);
    STRATA_RETURN_IF_ERROR(CheckInterrupted());
    absl::StatusOr<double> f = RunFloor(run, Durability::kNone);
    if (!f.ok()) return Annotate(Cat("floor, run ", run), f.status());
    floor.push_back(*f);
    absl::StatusOr<double> fsynced = RunFloor(run, Durability::kFsyncEach);
    if (!fsynced.ok()) return Annotate(Cat("floor with fsync, run ", run), fsynced.status());
    floor_sync.push_back(*fsynced);
    absl::StatusOr<double> synced = RunFloor(run, Durability::kSyncfsOnce);
    if (!synced.ok()) return Annotate(Cat("floor with syncfs, run ", run), synced.status());
    floor_syncfs.push_back(*synced);
    std::printf(
        "run %d: Strata %.3f s, script %.3f s, floor %.4f s, floor+fsync %.4f s, "
        "floor+syncfs %.4f s\n",
        run, s->total_s, sh->total_s, *f, *fsynced, *synced);
    std::fflush(stdout);
  }
  auto median_of = [](const auto& runs, auto field) {
    std::vector<double> values;
    for (const auto& r : runs) values.push_back(field(r));
    return Median(values);
  };
  const double strata_s = median_of(strata, [](const StrataRun& r) { return r.total_s; });
  const double script_s = median_of(script, [](const ScriptRun& r) { return r.total_s; });
  const double floor_s = Median(floor);
  const double floor_sync_s = Median(floor_sync);
  // Holds: every VM of every run.
  std::vector<double> hold_steps, hold_events, script_events, script_cp;
  for (const StrataRun& r : strata) {
    hold_steps.insert(hold_steps.end(), r.hold_steps_ms.begin(), r.hold_steps_ms.end());
    hold_events.insert(hold_events.end(), r.hold_events_ms.begin(), r.hold_events_ms.end());
  }
  for (const ScriptRun& r : script) {
    script_events.insert(script_events.end(), r.hold_events_ms.begin(), r.hold_events_ms.end());
    script_cp.insert(script_cp.end(), r.cp_ms.begin(), r.cp_ms.end());
  }
  const int disks = opt_.vms * 2;
  table_.Section(Cat(opt_.vms, " VMs x 2 disks on xfs (reflink), pause mode; median of ", opt_.runs,
                     " run(s)"));
  table_.Add("Strata: backup incl. catalog writes, s", Fixed(strata_s, 3));
  table_.Add("  prepare (list VMs, saved XML, volume claims), s",
             Fixed(median_of(strata, [](const StrataRun& r) { return r.prepare_s; }), 3));
  {
    // The engine claims each VM's disks with one ClaimFiles call, which refreshes the storage
    // resolver (mount table, block devices) every time.
    std::vector<double> claim_ms;
    for (int i = 0; i < 20; ++i) {
      const auto c0 = Clock::now();
      (void)services_->ClaimFiles(vms_[static_cast<size_t>(i) % vms_.size()].disks);
      claim_ms.push_back(Ms(Clock::now() - c0));
    }
    table_.Add(Cat("    of which ClaimFiles, one per VM (", Fixed(Median(claim_ms), 2),
                   " ms each), est. s"),
               Fixed(Median(claim_ms) * opt_.vms / 1000, 3));
  }
  table_.Add(Cat("  pause ", opt_.vms, " VMs, s"),
             Fixed(median_of(strata, [](const StrataRun& r) { return r.pause_s; }), 3));
  table_.Add(Cat("  storage snapshot (", disks, " reflinks + fsyncs), s"),
             Fixed(median_of(strata, [](const StrataRun& r) { return r.snapshot_s; }), 3));
  table_.Add(Cat("  resume ", opt_.vms, " VMs, s"),
             Fixed(median_of(strata, [](const StrataRun& r) { return r.resume_s; }), 3));
  table_.Add("  manifest files, s",
             Fixed(median_of(strata, [](const StrataRun& r) { return r.finish_s; }), 3));
  table_.Add("  catalog: CreateBackup + FinishBackup, s",
             Fixed(median_of(strata, [](const StrataRun& r) { return r.catalog_s; }), 3));
  table_.Add("operator's script (virsh suspend; cp --reflink; virsh resume), s",
             Fixed(script_s, 3));
  table_.Add("floor: FICLONE loop, s", Fixed(floor_s, 4));
  table_.Add("floor: FICLONE + fsync of each copy, s", Fixed(floor_sync_s, 4));
  table_.Add("floor: FICLONE loop + one syncfs of the volume, s", Fixed(Median(floor_syncfs), 4));
  table_.Add("ratio script / Strata", Fixed(script_s / strata_s, 1), ">= 5",
             script_s / strata_s >= 5);
  table_.Add("ratio Strata / floor (FICLONE)", Fixed(strata_s / floor_s, 1), "<= 2",
             strata_s / floor_s <= 2);
  table_.Add("ratio Strata / floor (FICLONE + fsync)", Fixed(strata_s / floor_sync_s, 1), "");
  table_.Add("per-VM hold, Strata (libvirt events), p50 / max ms",
             Cat(Fixed(Median(hold_events), 0), " / ", Fixed(Percentile(hold_events, 100), 0)));
  table_.Add("per-VM hold, Strata (progress pause -> resume), p50 / max ms",
             Cat(Fixed(Median(hold_steps), 1), " / ", Fixed(Percentile(hold_steps, 100), 1)));
  table_.Add("per-VM hold, script (libvirt events), p50 / max ms",
             Cat(Fixed(Median(script_events), 0), " / ", Fixed(Percentile(script_events, 100), 0)));
  table_.Add("per-VM hold, script (the cp of 2 disks alone), p50 / max ms",
             Cat(Fixed(Median(script_cp), 1), " / ", Fixed(Percentile(script_cp, 100), 1)));
  if (hold_events.size() != strata.size() * vms_.size() ||
      script_events.size() != script.size() * vms_.size()) {
    notes_.push_back(Cat("only ", hold_events.size(), " + ", script_events.size(),
                         " of the VMs' suspend/resume event pairs were seen in the keeper log"));
  }
  return absl::OkStatus();
}

absl::StatusOr<double> Bench::TimeSnapshot(const std::string& file, const std::string& name,
                                           std::string* method) {
  std::vector<std::optional<agent::HostServices::FileVolume>> claims =
      services_->ClaimFiles({file});
  if (claims.size() != 1 || !claims[0]) {
    return absl::NotFoundError(Cat("no configured volume holds '", file, "'"));
  }
  const agent::HostServices::FileVolume& volume = *claims[0];
  strata::plugin::SnapshotRequest request;
  request.volume_id = volume.volume.volume_id;
  request.name = name;
  request.files = {file};
  SyncFs(volume.volume.root);
  const auto t0 = Clock::now();
  absl::StatusOr<strata::plugin::SnapshotInfo> info = volume.plugin->CreateSnapshot(request);
  const auto t1 = Clock::now();
  if (!info.ok()) return info.status();
  *method = info->method;
  STRATA_RETURN_IF_ERROR(volume.plugin->DeleteSnapshot(request.volume_id, info->snapshot_id));
  SyncFs(volume.volume.root);
  return Seconds(t1 - t0);
}

absl::Status Bench::MeasureSnapshotSizes() {
  const uint64_t big = opt_.big_disk;
  const uint64_t big_data = big / 16;
  const std::string big_label =
      big >= 1024 * kMiB ? Cat(big / (1024 * kMiB), " GiB") : Cat(big / kMiB, " MiB");
  table_.Section(Cat("snapshot time against disk size, ms: 1 MiB | ", big_label, " with ",
                     big_data / kMiB, " MiB of data scattered (1 MiB every 16 MiB) | ", big_label,
                     " with the same data in one run; median of ", opt_.size_reps));
  // Three disks per case: 1 MiB; big with scattered data; big with the same data in one run
  // (a reflink's cost follows the extents it shares, so this separates size from extents).
  enum { kSmall, kScattered, kContiguous, kKinds };
  struct Case {
    std::string label;
    std::string files[kKinds];
  };
  const auto make = [&](const std::string& base, uint64_t seed) -> absl::Status {
    STRATA_RETURN_IF_ERROR(MakeSparseFile(base + "small.raw", kMiB, kMiB, kMiB, seed));
    STRATA_RETURN_IF_ERROR(MakeSparseFile(base + "scattered.raw", big, kMiB, 16 * kMiB, seed + 1));
    return MakeSparseFile(base + "contiguous.raw", big, kMiB, kMiB, seed + 2, big_data);
  };
  std::vector<Case> cases;
  const auto t0 = Clock::now();
  {
    const std::string base = xfs_.mount_point() + "/size/";
    STRATA_RETURN_IF_ERROR(make(base, 10));
    cases.push_back({"xfs, dir plug-in (reflink)",
                     {base + "small.raw", base + "scattered.raw", base + "contiguous.raw"}});
  }
  if (btrfs_skip_.empty()) {
    const std::string& mnt = btrfs_.mount_point();
    // One subvolume (btrfs volume) per disk: a subvolume snapshot holds the whole subvolume.
    // The dir volume's files are clones of the same disks (written once).
    Case subvolumes{"btrfs, btrfs plug-in (subvolume snapshots)", {}};
    Case dir{"btrfs, dir plug-in (reflink)", {}};
    STRATA_RETURN_IF_ERROR(make(mnt + "/dir/", 20));
    const char* names[kKinds] = {"small.raw", "scattered.raw", "contiguous.raw"};
    for (int k = 0; k < kKinds; ++k) {
      dir.files[k] = Cat(mnt, "/dir/", names[k]);
      subvolumes.files[k] = Cat(mnt, "/sub-", k, "/disk.raw");
      STRATA_RETURN_IF_ERROR(Ficlone(dir.files[k], subvolumes.files[k], false));
    }
    cases.push_back(std::move(dir));
    cases.push_back(std::move(subvolumes));
    SyncFs(mnt);
  }
  SyncFs(xfs_.mount_point());
  std::printf("made the size-test disks in %.1f s\n", Seconds(Clock::now() - t0));
  for (const Case& c : cases) {
    std::vector<double> ms[kKinds], clone_ms[kKinds];
    const bool reflink = c.label.find("reflink") != std::string::npos;
    std::string method;
    for (int rep = 0; rep < opt_.size_reps; ++rep) {
      STRATA_RETURN_IF_ERROR(CheckInterrupted());
      for (int i = 0; i < kKinds; ++i) {
        const int k = (i + rep) % kKinds;  // rotating which goes first
        absl::StatusOr<double> s = TimeSnapshot(c.files[k], Cat("size-", k, "-", rep), &method);
        if (!s.ok()) return Annotate(Cat("snapshot on ", c.label), s.status());
        ms[k].push_back(*s * 1000);
        if (!reflink) continue;
        // The FICLONE alone (no fsync): the part that could grow with the disk.
        const std::string clone = Cat(c.files[k], ".clone");
        const auto c0 = Clock::now();
        STRATA_RETURN_IF_ERROR(Ficlone(c.files[k], clone, false));
        clone_ms[k].push_back(Ms(Clock::now() - c0));
        fs::remove(clone);
        SyncFs(fs::path(clone).parent_path().string());
      }
    }
    auto triple = [](std::vector<double>* values) {
      const double small = Median(values[kSmall]);
      return Cat(Fixed(small, 2), " | ", Fixed(Median(values[kScattered]), 2), " | ",
                 Fixed(Median(values[kContiguous]), 2));
    };
    table_.Add(Cat(c.label, ", ms (", Extents(c.files[kSmall]), " | ", Extents(c.files[kScattered]),
                   " | ", Extents(c.files[kContiguous]), " extents)"),
               triple(ms), "~equal");
    if (reflink) table_.Add(Cat("  the FICLONE alone, ms"), triple(clone_ms), "~equal");
    if (method != (reflink ? "reflink" : "subvolume")) {
      notes_.push_back(Cat(c.label, ": the snapshot method was '", method, "'"));
    }
  }
  if (!btrfs_skip_.empty()) table_.Add(Cat("btrfs: skipped (", btrfs_skip_, ")"), "");
  std::error_code ignored;
  fs::remove_all(xfs_.mount_point() + "/size", ignored);
  return absl::OkStatus();
}

// A sparse-aware copy with pread/pwrite through a buffer of `buffer_bytes`, then an fsync: the
// copy fallback's algorithm with the buffer size as the only knob (cp uses 128 KiB).
absl::Status BufferCopy(const std::string& src, const std::string& dst, size_t buffer_bytes) {
  const int in = ::open(src.c_str(), O_RDONLY);
  if (in < 0) return ErrnoError(Cat("cannot open '", src, "'"));
  const int out = ::open(dst.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
  if (out < 0) {
    ::close(in);
    return ErrnoError(Cat("cannot create '", dst, "'"));
  }
  std::vector<char> buffer(buffer_bytes);
  struct stat st {};
  absl::Status status;
  if (::fstat(in, &st) != 0) status = ErrnoError(Cat("cannot stat '", src, "'"));
  off_t pos = 0;
  while (status.ok() && pos < st.st_size) {
    const off_t data = ::lseek(in, pos, SEEK_DATA);
    if (data < 0) break;  // ENXIO: only a hole is left
    const off_t hole = ::lseek(in, data, SEEK_HOLE);
    for (off_t at = data; at < hole && status.ok();) {
      const ssize_t n = ::pread(in, buffer.data(),
                                std::min<size_t>(buffer_bytes, static_cast<size_t>(hole - at)), at);
      if (n <= 0 || ::pwrite(out, buffer.data(), static_cast<size_t>(n), at) != n) {
        status = ErrnoError(Cat("cannot copy '", src, "' to '", dst, "'"));
      }
      at += n;
    }
    pos = hole;
  }
  if (status.ok() && (::ftruncate(out, st.st_size) != 0 || ::fsync(out) != 0)) {
    status = ErrnoError(Cat("cannot finish '", dst, "'"));
  }
  ::close(out);
  ::close(in);
  return status;
}

absl::Status Bench::MeasureCopyFallback() {
  const uint64_t size = opt_.copy_file;
  table_.Section(Cat("copy fallback on ext4: a ", size / kMiB,
                     " MiB sparse file, data in every other MiB; median (best) of ",
                     opt_.copy_reps));
  if (!ext4_skip_.empty()) {
    table_.Add(Cat("skipped (", ext4_skip_, ")"), "");
    return absl::OkStatus();
  }
  const std::string& mnt = ext4_.mount_point();
  const std::string src = mnt + "/src.raw";
  STRATA_RETURN_IF_ERROR(MakeSparseFile(src, size, kMiB, 2 * kMiB, 5));
  SyncFs(mnt);
  const double data_mb = static_cast<double>(size / 2) / 1e6;
  // The contenders; each copy is removed and the file system synced before the next.
  enum { kFallback, kCp, kBuffer128K, kBuffer1M, kContenders };
  std::vector<double> seconds[kContenders];
  std::vector<double> cp_nosync_s;
  uint64_t fallback_allocated = 0, cp_allocated = 0, bytes_copied = 0;
  // Rep 0 is a warm-up, not counted: the first writes to a region of the loop device's sparse
  // image allocate blocks in the file system below it, later ones reuse them.
  for (int rep = 0; rep <= opt_.copy_reps; ++rep) {
    STRATA_RETURN_IF_ERROR(CheckInterrupted());
    double took[kContenders] = {};
    for (int i = 0; i < kContenders; ++i) {
      const int who = (i + rep) % kContenders;  // rotating which goes first
      const std::string dst = Cat(mnt, "/copy-", rep, "-", who, ".raw");
      const auto t0 = Clock::now();
      if (who == kFallback) {
        strata::storage::CopyOptions options;
        options.allow_reflink = false;
        absl::StatusOr<strata::storage::CopyResult> copied =
            strata::storage::CloneOrCopyFile(src, dst, options);
        if (!copied.ok()) return Annotate("CloneOrCopyFile", copied.status());
        if (copied->method != "copy") {
          return absl::InternalError(Cat("CloneOrCopyFile used '", copied->method, "'"));
        }
        bytes_copied = copied->bytes_copied;
      } else if (who == kCp) {
        std::string out;
        if (!Shell(Cat("cp --sparse=always ", Quote(src), " ", Quote(dst)), &out)) {
          return absl::InternalError(Cat("cp failed: ", out));
        }
        if (rep > 0) cp_nosync_s.push_back(Seconds(Clock::now() - t0));
        STRATA_RETURN_IF_ERROR(SyncPath(dst));
      } else {
        STRATA_RETURN_IF_ERROR(BufferCopy(src, dst, who == kBuffer128K ? 128 * 1024 : kMiB));
      }
      took[who] = Seconds(Clock::now() - t0);
      if (rep > 0) seconds[who].push_back(took[who]);
      if (who == kFallback) fallback_allocated = AllocatedBytes(dst);
      if (who == kCp) cp_allocated = AllocatedBytes(dst);
      fs::remove(dst);
      SyncFs(mnt);
    }
    std::printf("copy rep %d%s: fallback %.3f s, cp+fsync %.3f s, 128 KiB %.3f s, 1 MiB %.3f s\n",
                rep, rep == 0 ? " (warm-up)" : "", took[kFallback], took[kCp], took[kBuffer128K],
                took[kBuffer1M]);
  }
  auto mbs = [&](const std::vector<double>& s) {
    return Cat(Fixed(data_mb / Median(s), 0), " (",
               Fixed(data_mb / *std::min_element(s.begin(), s.end()), 0), ")");
  };
  const double fallback = data_mb / Median(seconds[kFallback]);
  const double cp_sync = data_mb / Median(seconds[kCp]);
  const double cp = data_mb / Median(cp_nosync_s);
  table_.Add("CloneOrCopyFile (allow_reflink=false, fsync), MB/s of data", mbs(seconds[kFallback]));
  table_.Add("cp --sparse=always + fsync of the copy, MB/s of data", mbs(seconds[kCp]));
  table_.Add("cp --sparse=always (no fsync), MB/s of data", mbs(cp_nosync_s));
  table_.Add("  pread/pwrite + fsync, 128 KiB buffer (cp's), MB/s", mbs(seconds[kBuffer128K]));
  table_.Add("  pread/pwrite + fsync, 1 MiB buffer (the fallback's), MB/s",
             mbs(seconds[kBuffer1M]));
  table_.Add("ratio copy fallback / (cp + fsync), medians", Fixed(fallback / cp_sync, 2), ">= 0.9",
             fallback / cp_sync >= 0.9);
  table_.Add("ratio copy fallback / cp (no fsync), medians", Fixed(fallback / cp, 2), ">= 0.9",
             fallback / cp >= 0.9);
  table_.Add(
      "space of the copies, MiB: fallback / cp (source data)",
      Cat(fallback_allocated / kMiB, " / ", cp_allocated / kMiB, " (", size / 2 / kMiB, ")"));
  if (bytes_copied != size / 2) {
    notes_.push_back(
        Cat("the copy fallback wrote ", bytes_copied, " bytes of data, not ", size / 2));
  }
  fs::remove(src);
  return absl::OkStatus();
}

absl::Status Bench::MeasureCatalog() {
  constexpr int kVmsPerBackup = 50;  // x 2 disks = 100 items per backup
  const int64_t backups = std::max<int64_t>(1, (opt_.items + 99) / 100);
  const int64_t items = backups * 100;
  const int64_t fleet = std::min<int64_t>(1000, backups * kVmsPerBackup);
  table_.Section(Cat("catalog (SQLite, temporary file): ", Thousands(items), " items in ",
                     Thousands(backups), " backups of ", kVmsPerBackup, " VMs x 2 disks, fleet of ",
                     fleet, " VMs"));
  absl::StatusOr<std::unique_ptr<srv::Catalog>> opened =
      srv::OpenSqliteCatalog(tmp_.path() + "/items-catalog.db");
  if (!opened.ok()) return Annotate("opening the catalog", opened.status());
  srv::Catalog& catalog = **opened;
  auto uuid = [](int64_t v) {
    char buffer[40];
    std::snprintf(buffer, sizeof buffer, "c0000000-0000-4000-8000-%012lld",
                  static_cast<long long>(v));
    return std::string(buffer);
  };
  const auto epoch = std::chrono::system_clock::time_point(std::chrono::seconds(1'750'000'000));
  const auto t0 = Clock::now();
  for (int64_t b = 0; b < backups; ++b) {
    if (b % 1000 == 0) STRATA_RETURN_IF_ERROR(CheckInterrupted());
    const std::string name = Cat("nightly-", b);
    srv::BackupRecord record;
    record.id = Cat("id-", b);
    record.name = name;
    record.requester = "backup_bench";
    record.consistency = srv::Consistency::kPause;
    record.started_at = epoch + std::chrono::hours(b);
    record.policy = "nightly";
    STRATA_RETURN_IF_ERROR(catalog.CreateBackup(record));
    srv::BackupFinish finish;
    finish.backup = record.id;
    finish.state = b % 7 == 6 ? srv::BackupState::kFailed : srv::BackupState::kSucceeded;
    finish.finished_at = record.started_at + std::chrono::minutes(3);
    finish.items.reserve(100);
    for (int k = 0; k < kVmsPerBackup; ++k) {
      const int64_t v = (b * kVmsPerBackup + k) % fleet;
      for (const char* target : {"vda", "vdb"}) {
        const std::string file = Cat("vm", v, "-", target, ".raw");
        finish.items.push_back({.vm_uuid = uuid(v),
                                .vm_name = Cat("vm", v),
                                .disk_target = target,
                                .source_path = Cat("/srv/volumes/gold/", file),
                                .storage_volume = "sv:dir:0f1e2d3c:/srv/volumes/gold",
                                .snapshot_id = name,
                                .path_in_snapshot = file,
                                .size_bytes = int64_t{40} << 30,
                                .checksum = ""});
      }
    }
    STRATA_RETURN_IF_ERROR(catalog.FinishBackup(finish));
  }
  const double insert_s = Seconds(Clock::now() - t0);
  table_.Add("insert (CreateBackup + FinishBackup of 100 items), items/s",
             Fixed(static_cast<double>(items) / insert_s, 0));
  table_.Add("insert, s", Fixed(insert_s, 1));

  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> pick(0, fleet - 1);
  std::vector<double> micros;
  micros.reserve(static_cast<size_t>(opt_.lookups));
  int not_found = 0;
  for (int i = 0; i < opt_.lookups; ++i) {
    const std::string vm = uuid(pick(rng));
    const auto start = Clock::now();
    absl::StatusOr<srv::RestorePoint> point = catalog.LatestRestorePoint(vm);
    const auto end = Clock::now();
    if (!point.ok()) {
      if (!absl::IsNotFound(point.status())) return Annotate("LatestRestorePoint", point.status());
      ++not_found;
    } else if (point->items.size() != 2) {
      return absl::InternalError(
          Cat("LatestRestorePoint of ", vm, " has ", point->items.size(), " items, not 2"));
    }
    micros.push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }
  const double p99 = Percentile(micros, 99);
  table_.Add(Cat("LatestRestorePoint (", Thousands(static_cast<uint64_t>(opt_.lookups)),
                 " random VMs), p50 us"),
             Fixed(Percentile(micros, 50), 1));
  table_.Add("LatestRestorePoint, p99 us", Fixed(p99, 1), "<= 200", p99 <= 200);
  table_.Add("LatestRestorePoint, max us", Fixed(Percentile(micros, 100), 1));
  if (not_found > 0) notes_.push_back(Cat(not_found, " lookups found no succeeded backup"));
  return absl::OkStatus();
}

int Bench::Main() {
  if (::geteuid() != 0) {
    std::printf("backup_bench: skipped: needs root (loop devices, mount, a privileged libvirtd)\n");
    return kSkipped;
  }
  if (!PrivateLibvirtd::Available()) {
    std::printf("backup_bench: skipped: %s or virsh is not installed\n",
                strata::testing::kLibvirtdPath);
    return kSkipped;
  }
  if (tmp_.path().empty()) {
    std::fprintf(stderr, "backup_bench: cannot create a temporary directory: %s\n",
                 std::strerror(errno));
    return 1;
  }
  const auto started = Clock::now();
  const std::string load_before = LoadAverage();
  if (absl::Status s = SetUpFileSystems(); !s.ok()) {
    if (absl::IsFailedPrecondition(s)) {
      std::printf("backup_bench: skipped: xfs loop file system: %s\n", Msg(s).c_str());
      return kSkipped;
    }
    std::fprintf(stderr, "backup_bench: %s\n", Msg(s).c_str());
    return 1;
  }
  struct Phase {
    const char* what;
    std::function<absl::Status()> run;
    bool hypervisor;  // a failure prints libvirtd's log
  };
  const std::vector<Phase> phases = {
      {"setting up the VMs", [&] { return SetUpVms(); }, true},
      {"setting up the agent", [&] { return SetUpAgent(); }, true},
      {"backups", [&] { return MeasureBackups(); }, true},
      {"snapshot time against disk size", [&] { return MeasureSnapshotSizes(); }, false},
      {"copy fallback", [&] { return MeasureCopyFallback(); }, false},
      {"catalog", [&] { return MeasureCatalog(); }, false},
  };
  for (const auto& [what, phase, hypervisor] : phases) {
    const auto t0 = Clock::now();
    absl::Status s = phase();
    if (!s.ok()) {
      std::fprintf(stderr, "backup_bench: %s: %s\n", what, Msg(s).c_str());
      if (libvirtd_ != nullptr && hypervisor) {
        const std::string log = libvirtd_->Log();
        if (!log.empty()) std::fprintf(stderr, "libvirtd log:\n%s\n", log.c_str());
      }
      return absl::IsCancelled(s) ? 130 : 1;
    }
    std::printf("%s: %.1f s\n", what, Seconds(Clock::now() - t0));
    std::fflush(stdout);
  }
  std::printf(
      "\nbackup_bench (printed, not asserted): %d VMs x 2 disks, %s items%s; %.0f s in all\n"
      "load average before: %s, after: %s (%u CPUs)\n"
      "hypervisor: libvirt test driver on a private libvirtd; vm_snapshot \"none\" (the test "
      "driver's internal\nsnapshots are its bookkeeping only); the script's cp and the floor do "
      "not fsync, Strata does\n\n",
      opt_.vms, Thousands(static_cast<uint64_t>(opt_.items)).c_str(),
      opt_.quick ? " (--quick)" : "", Seconds(Clock::now() - started), load_before.c_str(),
      LoadAverage().c_str(), std::thread::hardware_concurrency());
  table_.Print();
  for (const std::string& note : notes_) std::printf("note: %s\n", note.c_str());
  return 0;
}

[[noreturn]] void Usage(const char* error) {
  if (error != nullptr) std::fprintf(stderr, "backup_bench: %s\n", error);
  std::fprintf(stderr,
               "usage: backup_bench [--vms N] [--items N] [--runs N] [--lookups N] [--quick]\n");
  std::exit(2);
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  std::optional<int> vms, runs, lookups;
  std::optional<int64_t> items;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    auto value = [&]() -> int64_t {
      if (i + 1 >= argc) Usage(Cat(arg, " needs a value").c_str());
      char* end = nullptr;
      const long long v = std::strtoll(argv[++i], &end, 10);
      if (end == argv[i] || *end != '\0' || v < 1) {
        Usage(Cat(arg, " needs a positive number, got '", argv[i], "'").c_str());
      }
      return v;
    };
    if (arg == "--vms") {
      vms = static_cast<int>(std::min<int64_t>(value(), 100'000));
    } else if (arg == "--items") {
      items = value();
    } else if (arg == "--runs") {
      runs = static_cast<int>(value());
    } else if (arg == "--lookups") {
      lookups = static_cast<int>(value());
    } else if (arg == "--quick") {
      options.quick = true;
    } else if (arg == "--help" || arg == "-h") {
      Usage(nullptr);
    } else {
      Usage(Cat("unknown argument '", arg, "'").c_str());
    }
  }
  if (options.quick) {
    options.vms = 10;
    options.items = 20'000;
    options.runs = 1;
    options.lookups = 2'000;
    options.size_reps = 3;
    options.copy_reps = 3;
    options.big_disk = 512 * kMiB;
    options.copy_file = 64 * kMiB;
  }
  if (vms) options.vms = *vms;
  if (items) options.items = *items;
  if (runs) options.runs = *runs;
  if (lookups) options.lookups = *lookups;

  struct sigaction action {};
  action.sa_handler = OnSignal;
  for (int signal : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signal, &action, nullptr);
  spdlog::set_level(spdlog::level::warn);  // the engine logs one line per backup
  setvbuf(stdout, nullptr, _IOLBF, 0);
  int code;
  {
    Bench bench(options);
    code = bench.Main();
  }  // everything undone here
  return code;
}
