// The `btrfs` storage plug-in: a storage volume is a btrfs subvolume (a configured directory that
// `btrfs subvolume create` made), snapshotted as a whole through libbtrfsutil.
//
// Volume id: "sv:btrfs:<fs id without 'fs:'>:<subvolume's path inside the fs>", name: the
// operator's name, attributes kind=btrfs, path=<configured path>, and error=<whole message> when
// the configured directory is not a btrfs subvolume (the volume is still reported, so the
// operator sees why it cannot be snapshotted). A file belongs to the volume when it lies below
// the subvolume's root and in that subvolume itself: files in nested subvolumes (including the
// volume's own snapshots) are not in its snapshots, so they are not claimed.
//
// Snapshots ("snapshot" capability): `<root>/.strata-snapshots/<name>` is a read-only snapshot of
// the subvolume (a plain directory holds them, so later snapshots do not include earlier ones);
// SnapshotInfo::method and every file's method are "subvolume", and each requested file is at
// its path relative to the root. As with dir, snapshot calls take a volume id this instance has
// reported from ClaimFile or Volumes. Creating and deleting snapshots needs CAP_SYS_ADMIN.
//
// Threading: one thread at a time (the StoragePlugin contract).
#pragma once

#include <memory>

#include "strata/plugin/storage.h"

namespace strata::plugins::btrfs {

inline constexpr char kPluginName[] = "btrfs";
inline constexpr char kSnapshotMethod[] = "subvolume";

std::unique_ptr<plugin::StoragePlugin> MakeBtrfsPlugin(plugin::StoragePluginConfig config);

}  // namespace strata::plugins::btrfs
