// Rebuilding the catalog from storage: the backups described by the manifests that the agents
// wrote beside their storage snapshots (strata/backup/manifest.h) go into a catalog that lacks
// them (`stratad catalog rebuild --from-storage DIR...`).
//
// One backup taken on several hosts has one manifest per host (each agent describes its own
// VMs and snapshots), and each host's manifest sits beside every snapshot it took. The import
// reads every manifest under the roots, groups them by backup_id, drops copies, and stores each
// backup once, as the server stores a backup it ran itself (JobManager), so restores and prunes
// work on an imported backup as on any other:
//   - state: succeeded when at least one VM is ok (metadata.state "succeeded" when every VM of
//     every manifest is ok and every manifest says "succeeded", else "partial"), failed when no
//     VM is ok (metadata.state "failed");
//   - items: the disks of the VMs that are ok, one per (VM, disk target);
//   - started_at / finished_at: the earliest start / latest finish of the manifests;
//   - metadata: {"state","consistency_requested","fallback","vms":[summary per VM],
//     "manifests":[each distinct manifest's whole JSON, as read],"host_errors":{},
//     "imported_from":[the manifest files]}.
// A backup whose id is already in the catalog is skipped (counted), never changed. A manifest
// that cannot be read or parsed is reported (its path and the whole error) and the others are
// still imported; so is a backup whose manifests disagree on its name or whose record the
// catalog refuses (e.g. its name is taken by another backup).
//
// Threading: one call at a time per catalog is the caller's business; the catalog itself is
// thread-safe, so the server may run while an import adds backups.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "strata/server/catalog.h"

namespace strata::server {

struct ImportedBackup {
  std::string id{};
  std::string name{};
  std::string state{};  // metadata.state: "succeeded", "partial", "failed"
  int manifests = 0;    // distinct manifests merged
  int items = 0;

  friend bool operator==(const ImportedBackup&, const ImportedBackup&) = default;
};

struct ImportReport {
  int files_found = 0;    // manifest files under the roots
  int backups_found = 0;  // distinct backup ids among the readable manifests
  int backups_imported = 0;
  int backups_skipped = 0;                 // already in the catalog
  std::vector<ImportedBackup> imported{};  // oldest first
  std::vector<std::string> skipped{};      // backup ids, oldest first
  // Whole messages, each naming the manifest file or the backup. Non-empty: the import was
  // incomplete.
  std::vector<std::string> errors{};
};

// Finds, reads and imports. Fails as a whole only when a root is missing or not a directory
// (NotFound / InvalidArgument naming it); everything else is in the report, including
// directories under a root that could not be read.
absl::StatusOr<ImportReport> ImportManifests(Catalog& catalog,
                                             const std::vector<std::string>& roots);

// {"files_found","backups_found","backups_imported","backups_skipped",
//  "imported":[{"id","name","state","manifests","items"}],"skipped":[ids],"errors":[...]}
nlohmann::json ToJson(const ImportReport& report);
// Human-readable summary: one line of counts, a line per imported backup, a line per error.
std::string FormatImportReport(const ImportReport& report);

}  // namespace strata::server
