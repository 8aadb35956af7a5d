// Catalog benchmark: insert rate of backup items (one transaction per backup) and the latency of
// LatestRestorePoint on a catalog holding N items.
//
//   catalog_bench [--items N] [--vms V] [--lookups L] [--db PATH]
//
// Defaults: 1,000,000 items over 1,000 VMs (one disk each, so N/V backups of V items; every
// tenth backup fails), 20,000 lookups of random VMs, a fresh database in a temporary directory.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "strata/server/catalog.h"

namespace {

using strata::server::BackupFinish;
using strata::server::BackupItem;
using strata::server::BackupRecord;
using strata::server::BackupState;
using strata::server::CatalogTime;
using Clock = std::chrono::steady_clock;

int Fail(const std::string& what) {
  std::fprintf(stderr, "catalog_bench: %s\n", what.c_str());
  return 1;
}

std::string VmUuid(int64_t v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012lld", static_cast<long long>(v));
  return buf;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t items = 1'000'000;
  int64_t vms = 1'000;
  int64_t lookups = 20'000;
  std::string db;
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "catalog_bench: %s needs a value\n", arg.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (arg == "--items") {
      items = std::atoll(value().c_str());
    } else if (arg == "--vms") {
      vms = std::atoll(value().c_str());
    } else if (arg == "--lookups") {
      lookups = std::atoll(value().c_str());
    } else if (arg == "--db") {
      db = value();
    } else {
      std::fprintf(stderr,
                   "usage: catalog_bench [--items N] [--vms V] [--lookups L] [--db PATH]\n");
      return 2;
    }
  }
  if (items < 1 || vms < 1 || lookups < 1) return Fail("--items, --vms and --lookups must be > 0");
  vms = std::min(vms, items);

  std::filesystem::path tmp;
  if (db.empty()) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "catalog-bench-XXXXXX").string();
    if (mkdtemp(tmpl.data()) == nullptr) return Fail("cannot create a temporary directory");
    tmp = tmpl;
    db = (tmp / "catalog.db").string();
  }
  auto catalog = strata::server::OpenSqliteCatalog(db);
  if (!catalog.ok()) return Fail(std::string(catalog.status().message()));
  strata::server::Catalog& c = **catalog;

  // ---- inserts ----
  const int64_t backups = (items + vms - 1) / vms;
  int64_t written = 0;
  const auto t0 = Clock::now();
  for (int64_t b = 0; b < backups; ++b) {
    BackupRecord rec{.id = "bench-" + std::to_string(b),
                     .name = "bench-" + std::to_string(b),
                     .requester = "bench",
                     .state = BackupState::kRunning,
                     .started_at = CatalogTime(std::chrono::seconds(1'700'000'000 + b * 3600)),
                     .policy = "hourly"};
    for (int64_t v = 0; v < vms && written < items; ++v, ++written) {
      const std::string uuid = VmUuid(v);
      rec.items.push_back(BackupItem{.vm_uuid = uuid,
                                     .vm_name = "vm-" + std::to_string(v),
                                     .disk_target = "vda",
                                     .source_path = "/var/lib/images/vm-" + std::to_string(v),
                                     .storage_volume = "/var/lib/images",
                                     .snapshot_id = rec.id,
                                     .path_in_snapshot = "vm-" + std::to_string(v),
                                     .size_bytes = 10LL << 30,
                                     .checksum = ""});
    }
    if (auto s = c.CreateBackup(rec); !s.ok()) return Fail(std::string(s.message()));
    const BackupState final_state = b % 10 == 9 ? BackupState::kFailed : BackupState::kSucceeded;
    if (auto s =
            c.FinishBackup(BackupFinish{.backup = rec.id,
                                        .state = final_state,
                                        .finished_at = rec.started_at + std::chrono::minutes(5)});
        !s.ok()) {
      return Fail(std::string(s.message()));
    }
  }
  const double insert_s = std::chrono::duration<double>(Clock::now() - t0).count();
  std::printf("catalog_bench: db %s\n", db.c_str());
  std::printf("insert: %lld items in %lld backups (%lld per transaction): %.2f s, %.0f items/s\n",
              static_cast<long long>(items), static_cast<long long>(backups),
              static_cast<long long>(vms), insert_s, static_cast<double>(items) / insert_s);

  // ---- lookups ----
  std::mt19937_64 rng(42);
  std::uniform_int_distribution<int64_t> pick(0, vms - 1);
  std::vector<double> micros;
  micros.reserve(static_cast<size_t>(lookups));
  for (int64_t i = 0; i < lookups; ++i) {
    const std::string uuid = VmUuid(pick(rng));
    const auto start = Clock::now();
    auto point = c.LatestRestorePoint(uuid);
    const auto end = Clock::now();
    if (!point.ok()) return Fail(std::string(point.status().message()));
    if (point->items.size() != 1) return Fail("expected one item for " + uuid);
    micros.push_back(std::chrono::duration<double, std::micro>(end - start).count());
  }
  std::sort(micros.begin(), micros.end());
  auto pct = [&](double p) {
    return micros[std::min(micros.size() - 1, static_cast<size_t>(p * micros.size()))];
  };
  std::printf(
      "LatestRestorePoint: %lld lookups: p50 %.1f us, p99 %.1f us, max %.1f us "
      "(goal p99 <= 200 us: %s)\n",
      static_cast<long long>(lookups), pct(0.50), pct(0.99), micros.back(),
      pct(0.99) <= 200.0 ? "met" : "MISSED");

  catalog->reset();
  if (!tmp.empty()) std::filesystem::remove_all(tmp);
  return 0;
}
