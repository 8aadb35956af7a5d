// Path resolution inside (possibly recorded) roots, and block device facts from sysfs
// (internal to strata_storage).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/storage/resolver.h"

namespace strata::storage {

// Maps a logical absolute path ("/dev/sda", "/srv/a") to where it is read on this machine.
using PathMapper = std::function<std::string(std::string_view logical)>;

// Follows symlinks component by component in the logical namespace (absolute targets stay in
// it), like realpath(3). Fails with the errno of the failing step (message: strerror text).
absl::StatusOr<std::string> ResolveLogicalPath(const PathMapper& mapper, std::string_view path);

// Reads a whole small file; trailing whitespace (newlines, the padding of SCSI strings) is
// dropped when `trim` is set.
absl::StatusOr<std::string> ReadSmallFile(const std::string& path, bool trim = true);

// WWID from a SCSI VPD page 0x83 (device identification), like the kernel's device/wwid:
// logical-unit designators, NAA ("naa.<hex>") before EUI-64 ("eui.<hex>") before SCSI name
// string (verbatim) before T10 vendor id ("t10.<ascii>"). Empty when none.
std::string WwidFromVpd83(std::string_view page);

// "mpath-3<hex>" (multipath's scsi_id form) -> "naa.<hex>"; "2" -> eui., "1" -> t10.
std::string WwidFromMultipathUuid(std::string_view dm_uuid);

struct BlockInfo {
  std::string name;      // kernel name: sda, sda1, dm-3, nvme0n1p2, loop0, vda
  std::string devnum;    // major:minor
  std::string sys_path;  // logical, under /sys/devices
  uint64_t size_bytes = 0;
  std::string kind;    // disk, partition, dm, loop, md
  std::string parent;  // partition: the whole disk's kernel name
  std::string partition_number;
  std::vector<std::string> slaves;          // dm/md: kernel names below
  std::string dm_name, dm_uuid, dm_target;  // dm_target: multipath, lvm, crypt, ... (uuid prefix)
  bool loop_bound = false;
  std::string loop_backing_file;
  // Whole disks:
  std::string transport;  // virtio, ata, scsi, iscsi, fc, nvme, usb, "" (virtual)
  std::string vendor, model, serial, wwid, hctl, lun;
  std::string iscsi_target, iscsi_session;
  std::vector<std::string> iscsi_portals;  // address:port
  std::string nsid, subsysnqn;
};

class SysfsReader {
 public:
  explicit SysfsReader(const SystemView& view);
  SysfsReader(const SysfsReader&) = delete;
  SysfsReader& operator=(const SysfsReader&) = delete;

  // "/dev/disk/by-id/..." -> "major:minor". Errors name the path:
  // "block device '/dev/sdz' not found under <sys_root>/class/block".
  absl::StatusOr<std::string> DevNumOf(const std::string& device_path);
  absl::StatusOr<const BlockInfo*> ByDevNum(const std::string& devnum);
  absl::StatusOr<const BlockInfo*> ByName(const std::string& name);

  // Where the device node of a kernel name is (for probing): <dev_root>/<name>.
  std::string DevNodeOf(const std::string& name) const;
  std::string ClassBlockDir() const;  // <sys_root>/class/block, for messages

  const PathMapper& fs_mapper() const { return fs_mapper_; }

 private:
  absl::StatusOr<BlockInfo> Read(const std::string& logical_dir);
  void ReadDiskDetails(BlockInfo& info);
  std::string Sys(std::string_view logical) const;  // "/sys/x" -> <sys_root>/x
  std::optional<std::string> SysAttr(const std::string& logical, bool trim = true) const;
  void LoadDevNumbers();

  SystemView view_;
  PathMapper fs_mapper_;
  PathMapper sys_mapper_;
  std::map<std::string, absl::StatusOr<std::unique_ptr<BlockInfo>>> by_devnum_;
  std::map<std::string, std::string> name_to_devnum_;
  std::optional<std::map<std::string, std::string>> dev_numbers_;
};

}  // namespace strata::storage
