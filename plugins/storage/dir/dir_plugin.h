// The `dir` storage plug-in: a storage volume is a directory on any POSIX file system (like a
// filer volume holding files). A file belongs to a dir volume when both are on the same file
// system (bind mounts count: the comparison is by file system and path inside it) and the
// volume's directory is a prefix of the file's path inside that file system.
//
// Volume id: "sv:dir:<fs id without 'fs:'>:<root inside the fs>", name: the operator's name,
// attributes kind=dir, path=<configured path>.
//
// Snapshots ("snapshot", "reflink" capabilities): `<root>/.strata-snapshots/<name>/` holds a clone
// of each requested file at its path relative to the root (CloneOrCopyFile: a reflink where the
// file system has it, else a sparse-aware copy), so SnapshotInfo::method is "reflink", "copy" or
// "mixed". Only the requested files are in it. The plug-in cannot compute volume ids itself (the
// file system's id comes from the resolver), so snapshot calls take an id this instance has
// reported from ClaimFile or Volumes; another id is NotFound.
//
// Threading: one thread at a time (the StoragePlugin contract).
#pragma once

#include <memory>

#include "strata/plugin/storage.h"

namespace strata::plugins::dir {

inline constexpr char kPluginName[] = "dir";

std::unique_ptr<plugin::StoragePlugin> MakeDirPlugin(plugin::StoragePluginConfig config);

}  // namespace strata::plugins::dir
