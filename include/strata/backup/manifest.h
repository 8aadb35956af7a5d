// The backup manifest: a self-describing JSON record of one backup, written by the agent beside
// every storage snapshot the backup took (`<volume>/.strata-snapshots/<snapshot>.manifest.json`)
// and stored by stratad in its catalog. Storage alone is enough to rebuild the catalog
// (`stratad catalog rebuild --from-storage DIR...`, strata/server/catalog_import.h): a manifest
// holds the whole of the backup on the host that wrote it (a backup over several hosts has one
// manifest per host, each copied beside every snapshot that host took), so one snapshot per host
// suffices.
//
// Format (format_version 1), all times in Unix milliseconds:
//   {"format":"strata-backup-manifest","format_version":1,"backup_id","name","requester",
//    "policy","consistency_requested","fallback","started_at_ms","finished_at_ms","state",
//    "vms":[{"uuid","name","host","state_before","consistency_achieved","vm_snapshot",
//            "vm_snapshot_kind","saved_xml","ok","error",
//            "disks":[{"target","source_path","format","storage_volume","volume_name",
//                      "snapshot_id","path_in_snapshot","snapshot_path","size_bytes",
//                      "checksum"}]}],
//    "snapshots":[{"snapshot_id","storage_volume","volume_name","volume_root","plugin","host",
//                  "path","method","created_at_ms"}],
//    "graph":{"nodes":[...],"edges":[...]}}
// Unknown keys are ignored on reading (newer writers may add some); a missing required key, a key
// of the wrong type or a newer format_version is InvalidArgument naming it (nested keys by path,
// "vms[0].disks[1].snapshot_id"). A key holding null counts as absent.
// Required: format, format_version, backup_id, name, consistency_requested, started_at_ms,
// finished_at_ms, state, vms, snapshots; in a VM: uuid, name, ok, disks; in a disk: target,
// storage_volume, snapshot_id, path_in_snapshot; in a snapshot: snapshot_id, storage_volume,
// path. Everything else defaults to empty / zero.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"

namespace strata::backup {

inline constexpr int kManifestFormatVersion = 1;
inline constexpr char kManifestSuffix[] = ".manifest.json";

struct ManifestDisk {
  std::string target;            // "vda"
  std::string source_path;       // the disk's file when it was backed up
  std::string format;            // "qcow2", "raw"
  std::string storage_volume;    // volume node id
  std::string volume_name;       // the operator's name
  std::string snapshot_id;       // the storage snapshot holding this disk
  std::string path_in_snapshot;  // relative to the snapshot's path
  std::string snapshot_path;     // absolute path of the disk's copy inside the snapshot
  uint64_t size_bytes = 0;
  std::string checksum;  // "xxh3-128:<hex>" when --verify recorded one, else empty

  friend bool operator==(const ManifestDisk&, const ManifestDisk&) = default;
};

struct ManifestVm {
  std::string uuid;
  std::string name;
  std::string host;
  std::string state_before;          // "running", "paused", "shutoff", ...
  std::string consistency_achieved;  // "crash", "pause", "quiesce"; empty when it failed
  std::string vm_snapshot;           // the VM-level snapshot's name; empty when none
  std::string vm_snapshot_kind;      // "internal", "external", ""
  std::string saved_xml;             // the saved configuration (what a restore redefines)
  bool ok = false;
  std::string error;  // whole message when !ok
  std::vector<ManifestDisk> disks;

  friend bool operator==(const ManifestVm&, const ManifestVm&) = default;
};

struct ManifestSnapshot {
  std::string snapshot_id;
  std::string storage_volume;  // volume node id
  std::string volume_name;
  std::string volume_root;  // absolute, on `host`
  std::string plugin;       // "dir", "btrfs"
  std::string host;         // the host that took it
  std::string path;         // absolute path of the snapshot's data
  std::string method;       // "reflink", "copy", "mixed", "subvolume"
  int64_t created_at_ms = 0;

  friend bool operator==(const ManifestSnapshot&, const ManifestSnapshot&) = default;
};

struct BackupManifest {
  std::string backup_id;
  std::string name;
  std::string requester;
  std::string policy;
  std::string consistency_requested;  // "crash", "pause", "quiesce"
  std::string fallback;               // "", "pause", "crash"
  int64_t started_at_ms = 0;
  int64_t finished_at_ms = 0;
  std::string state;  // "succeeded", "failed", "partial"
  std::vector<ManifestVm> vms;
  std::vector<ManifestSnapshot> snapshots;
  nlohmann::json graph = nlohmann::json::object();  // the backup's resource graph (core JSON)

  friend bool operator==(const BackupManifest&, const BackupManifest&) = default;
};

nlohmann::json ToJson(const BackupManifest& manifest);
absl::StatusOr<BackupManifest> ManifestFromJson(const nlohmann::json& json);
absl::StatusOr<BackupManifest> ParseManifest(std::string_view text);

// Writes `manifest` to `path` atomically: a hidden temporary file in the same directory, fsync,
// rename, fsync of the directory. Mode 0644. The directory must exist.
absl::Status WriteManifestFile(const std::string& path, const BackupManifest& manifest);
// Errors name the file: "backup manifest '<path>': missing required key 'vms[0].uuid'".
absl::StatusOr<BackupManifest> ReadManifestFile(const std::string& path);

// Every `*.manifest.json` (a regular file) directly inside a `.strata-snapshots` directory under
// each root: searched recursively, not following symlinks (a root given as a symlink is
// followed), not descending into `.strata-snapshots` (its directories hold snapshot data).
// Sorted, without duplicates. A root that is missing or not a directory is an error (NotFound,
// InvalidArgument naming it). A directory below a root that cannot be read is skipped; with
// `unreadable`, a whole message naming it is appended there.
absl::StatusOr<std::vector<std::string>> FindManifestFiles(const std::vector<std::string>& roots);
absl::StatusOr<std::vector<std::string>> FindManifestFiles(const std::vector<std::string>& roots,
                                                           std::vector<std::string>* unreadable);

// Names usable for backups and snapshots: [A-Za-z0-9._-], 1..128 characters, not starting with
// '.' or '-'. InvalidArgument "invalid <what> 'NAME': ..." otherwise (rejects "../x", "a/b").
absl::Status ValidateName(std::string_view what, std::string_view name);

}  // namespace strata::backup
