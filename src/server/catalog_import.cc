// Rebuilding the catalog from the manifests on storage (see catalog_import.h for the rules).
#include "strata/server/catalog_import.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <utility>

#include "strata/backup/manifest.h"
#include "strata/util/strings.h"

namespace strata::server {

namespace {

using nlohmann::json;
using util::Cat;

struct LoadedManifest {
  std::string path;
  backup::BackupManifest manifest;
  json raw;  // the whole document as read (keeps keys this binary does not know)
};

// Reads one manifest file; errors name it.
absl::StatusOr<LoadedManifest> Load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        Cat("backup manifest '", path, "': cannot open: ", std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::InternalError(Cat("backup manifest '", path, "': cannot read"));
  absl::StatusOr<backup::BackupManifest> parsed = backup::ParseManifest(text.str());
  if (!parsed.ok()) {
    const std::string_view message =
        util::StripPrefix(util::ToStd(parsed.status().message()), "backup manifest: ");
    return absl::Status(parsed.status().code(), Cat("backup manifest '", path, "': ", message));
  }
  LoadedManifest loaded;
  loaded.path = path;
  loaded.manifest = *std::move(parsed);
  loaded.raw = json::parse(text.str(), nullptr, /*allow_exceptions=*/false);
  return loaded;
}

CatalogTime FromMillis(int64_t ms) {
  return CatalogTime(
      std::chrono::duration_cast<CatalogTime::duration>(std::chrono::milliseconds(ms)));
}

// The manifests of one backup (every copy), sorted by path.
struct Group {
  std::vector<LoadedManifest> files;
};

struct Outcome {
  enum Kind { kImported, kSkipped, kError } kind = kError;
  ImportedBackup imported;
  std::string error;
};

Outcome ImportOne(Catalog& catalog, const std::string& backup_id, const Group& group) {
  Outcome out;
  const std::vector<LoadedManifest>& files = group.files;
  const backup::BackupManifest& first = files.front().manifest;

  // The manifests must describe one backup.
  for (const LoadedManifest& f : files) {
    if (f.manifest.name != first.name) {
      out.error = Cat("backup '", backup_id, "': its manifests disagree on the name ('", first.name,
                      "' in '", files.front().path, "', '", f.manifest.name, "' in '", f.path,
                      "'); not imported");
      return out;
    }
  }
  absl::StatusOr<BackupRecord> existing = catalog.GetBackup(backup_id);
  if (existing.ok() && existing->id == backup_id) {
    out.kind = Outcome::kSkipped;
    return out;
  }
  if (!existing.ok() && !absl::IsNotFound(existing.status())) {
    out.error = Cat("backup '", backup_id, "': ", util::ToStd(existing.status().message()));
    return out;
  }
  absl::StatusOr<Consistency> consistency = ParseConsistency(first.consistency_requested);
  if (!consistency.ok()) {
    out.error = Cat("backup '", backup_id, "' in '", files.front().path,
                    "': ", util::ToStd(consistency.status().message()), "; not imported");
    return out;
  }

  // Distinct manifests (the same host's manifest lies beside each of its snapshots).
  std::vector<const LoadedManifest*> distinct;
  for (const LoadedManifest& f : files) {
    const bool seen = std::any_of(distinct.begin(), distinct.end(),
                                  [&](const LoadedManifest* d) { return d->raw == f.raw; });
    if (!seen) distinct.push_back(&f);
  }

  // VMs: one entry per UUID; an ok entry wins over a failed one.
  struct VmEntry {
    const backup::ManifestVm* vm;
  };
  std::vector<std::string> vm_order;
  std::map<std::string, VmEntry> vms;
  bool every_manifest_succeeded = true;
  int64_t started_ms = std::numeric_limits<int64_t>::max();
  int64_t finished_ms = std::numeric_limits<int64_t>::min();
  for (const LoadedManifest* d : distinct) {
    const backup::BackupManifest& m = d->manifest;
    if (m.state != "succeeded") every_manifest_succeeded = false;
    started_ms = std::min(started_ms, m.started_at_ms);
    finished_ms = std::max(finished_ms, m.finished_at_ms);
    for (const backup::ManifestVm& vm : m.vms) {
      auto it = vms.find(vm.uuid);
      if (it == vms.end()) {
        vm_order.push_back(vm.uuid);
        vms.emplace(vm.uuid, VmEntry{&vm});
      } else if (!it->second.vm->ok && vm.ok) {
        it->second.vm = &vm;
      }
    }
  }
  if (finished_ms < started_ms) finished_ms = started_ms;

  std::vector<BackupItem> items;
  std::set<std::pair<std::string, std::string>> item_keys;
  json vm_summary = json::array();
  size_t ok = 0;
  for (const std::string& uuid : vm_order) {
    const backup::ManifestVm& vm = *vms.at(uuid).vm;
    vm_summary.push_back({{"uuid", vm.uuid},
                          {"name", vm.name},
                          {"host", vm.host},
                          {"ok", vm.ok},
                          {"error", vm.error},
                          {"consistency_achieved", vm.consistency_achieved}});
    if (!vm.ok) continue;
    ++ok;
    for (const backup::ManifestDisk& disk : vm.disks) {
      if (!item_keys.emplace(vm.uuid, disk.target).second) continue;
      if (disk.size_bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        out.error = Cat("backup '", backup_id, "': VM '", vm.name, "' disk '", disk.target,
                        "': size ", disk.size_bytes, " is too large; not imported");
        return out;
      }
      items.push_back(BackupItem{.vm_uuid = vm.uuid,
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
  const std::string state = ok == 0                                             ? "failed"
                            : ok == vm_order.size() && every_manifest_succeeded ? "succeeded"
                                                                                : "partial";
  json manifests = json::array();
  for (const LoadedManifest* d : distinct) manifests.push_back(d->raw);
  json paths = json::array();
  for (const LoadedManifest& f : files) paths.push_back(f.path);

  BackupRecord record;
  record.id = backup_id;
  record.name = first.name;
  record.requester = first.requester;
  record.consistency = *consistency;
  // As JobManager stores a backup: partial counts as succeeded (its ok VMs can be restored).
  record.state = ok == 0 ? BackupState::kFailed : BackupState::kSucceeded;
  record.started_at = FromMillis(started_ms);
  record.finished_at = FromMillis(finished_ms);
  record.policy = first.policy;
  record.metadata = {{"state", state},
                     {"consistency_requested", first.consistency_requested},
                     {"fallback", first.fallback},
                     {"vms", std::move(vm_summary)},
                     {"manifests", std::move(manifests)},
                     {"host_errors", json::object()},
                     {"imported_from", std::move(paths)}};
  const int item_count = static_cast<int>(items.size());
  record.items = std::move(items);
  // One call, one transaction: the backup appears whole and finished, or not at all (a
  // create-then-finish pair interrupted half-way would leave a "running" backup that a second
  // rebuild would then skip).
  if (absl::Status s = catalog.CreateBackup(record); !s.ok()) {
    out.error = Cat("importing backup '", backup_id, "' from '", files.front().path,
                    "': ", util::ToStd(s.message()));
    return out;
  }
  out.kind = Outcome::kImported;
  out.imported = ImportedBackup{.id = backup_id,
                                .name = first.name,
                                .state = state,
                                .manifests = static_cast<int>(distinct.size()),
                                .items = item_count};
  return out;
}

}  // namespace

absl::StatusOr<ImportReport> ImportManifests(Catalog& catalog,
                                             const std::vector<std::string>& roots) {
  ImportReport report;
  std::vector<std::string> unreadable;
  absl::StatusOr<std::vector<std::string>> files = backup::FindManifestFiles(roots, &unreadable);
  if (!files.ok()) return files.status();
  report.files_found = static_cast<int>(files->size());
  report.errors = std::move(unreadable);

  std::map<std::string, Group> groups;  // by backup id
  for (const std::string& path : *files) {
    absl::StatusOr<LoadedManifest> loaded = Load(path);
    if (!loaded.ok()) {
      report.errors.emplace_back(util::ToStd(loaded.status().message()));
      continue;
    }
    const std::string id = loaded->manifest.backup_id;
    groups[id].files.push_back(*std::move(loaded));
  }
  report.backups_found = static_cast<int>(groups.size());

  // Oldest first, so that the catalog's insertion order follows time.
  std::vector<std::pair<int64_t, const std::string*>> order;
  for (const auto& [id, group] : groups) {
    int64_t started = std::numeric_limits<int64_t>::max();
    for (const LoadedManifest& f : group.files) {
      started = std::min(started, f.manifest.started_at_ms);
    }
    order.emplace_back(started, &id);
  }
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first < b.first : *a.second < *b.second;
  });
  for (const auto& [started, id] : order) {
    Outcome outcome = ImportOne(catalog, *id, groups.at(*id));
    switch (outcome.kind) {
      case Outcome::kImported:
        ++report.backups_imported;
        report.imported.push_back(std::move(outcome.imported));
        break;
      case Outcome::kSkipped:
        ++report.backups_skipped;
        report.skipped.push_back(*id);
        break;
      case Outcome::kError:
        report.errors.push_back(std::move(outcome.error));
        break;
    }
  }
  return report;
}

json ToJson(const ImportReport& report) {
  json imported = json::array();
  for (const ImportedBackup& b : report.imported) {
    imported.push_back({{"id", b.id},
                        {"name", b.name},
                        {"state", b.state},
                        {"manifests", b.manifests},
                        {"items", b.items}});
  }
  return json{{"files_found", report.files_found},
              {"backups_found", report.backups_found},
              {"backups_imported", report.backups_imported},
              {"backups_skipped", report.backups_skipped},
              {"imported", std::move(imported)},
              {"skipped", report.skipped},
              {"errors", report.errors}};
}

std::string FormatImportReport(const ImportReport& report) {
  std::string out =
      Cat(report.files_found, report.files_found == 1 ? " manifest file, " : " manifest files, ",
          report.backups_found,
          report.backups_found == 1 ? " backup: " : " backups: ", report.backups_imported,
          " imported, ", report.backups_skipped, " already in the catalog, ", report.errors.size(),
          report.errors.size() == 1 ? " error\n" : " errors\n");
  for (const ImportedBackup& b : report.imported) {
    util::Append(out, "imported ", b.name, " (", b.id, "): ", b.state, ", ", b.items,
                 b.items == 1 ? " disk" : " disks", " from ", b.manifests,
                 b.manifests == 1 ? " manifest\n" : " manifests\n");
  }
  for (const std::string& error : report.errors) util::Append(out, "error: ", error, "\n");
  return out;
}

}  // namespace strata::server
