// What a hypervisor tells us about its VMs: value types only, no libvirt types leak out.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::hypervisor {

enum class DomainState {
  kUnknown,
  kRunning,
  kBlocked,
  kPaused,
  kShutdown,
  kShutoff,
  kCrashed,
  kSuspended
};
// "unknown", "running", "blocked", "paused", "shutdown", "shutoff", "crashed", "pmsuspended".
std::string_view DomainStateName(DomainState state);

// libvirt <disk type=...>. kNone: no source (an empty cdrom/floppy drive), or a disk type this
// parser does not know (nvme, vhostuser, vhostvdpa, ...); the latter has `resolve_error` set.
enum class DiskSourceKind { kFile, kBlock, kNetwork, kVolume, kDir, kNone };
// libvirt <disk device=...>
enum class DiskDevice { kDisk, kCdrom, kFloppy, kLun };
std::string_view DiskSourceKindName(DiskSourceKind kind);  // "file", "block", ..., "none"
std::string_view DiskDeviceName(DiskDevice device);        // "disk", "cdrom", "floppy", "lun"

struct NetworkHost {
  std::string name;       // host name or address
  std::string port;       // may be empty
  std::string transport;  // tcp, unix, rdma; may be empty
  std::string socket;     // for transport unix
};

// One image in a disk's chain: the top image, or a <backingStore> below it.
struct DiskSource {
  DiskSourceKind kind = DiskSourceKind::kNone;
  std::string format;  // driver type / backingStore format: raw, qcow2, ...
  std::string path;    // file path (kFile, kDir) or device path (kBlock)
  // kNetwork: protocol (rbd, iscsi, nbd, gluster, nfs, http, https, sheepdog, ...), name
  // (rbd: "pool/image[@snap]", iscsi: "iqn.../lun", nfs: "export/path"), hosts.
  std::string protocol;
  std::string name;
  std::vector<NetworkHost> hosts;
  // kVolume: <source pool='' volume=''/>; the plug-in fills `path` from the pool when it can.
  std::string pool;
  std::string volume;
  std::string mode;  // kVolume: <source mode='host|direct'> (iSCSI pools); may be empty
  // Why this source's location is not known, e.g. a volume whose pool could not be looked up
  // ("cannot resolve volume 'v' in storage pool 'p': <libvirt message>") or a disk type the
  // parser does not know ("unsupported disk type 'nvme'"). Empty when nothing went wrong.
  std::string resolve_error;
};

struct Disk {
  DiskDevice device = DiskDevice::kDisk;
  std::string target;  // vda, sda, hdc
  std::string bus;     // virtio, scsi, ide, sata
  bool readonly = false;
  bool shareable = false;
  std::string serial;
  DiskSource source;                      // kind kNone when the disk has no source (empty cdrom)
  std::vector<DiskSource> backing_chain;  // <backingStore> images, top to bottom
};

struct Domain {
  std::string uuid;
  std::string name;
  DomainState state = DomainState::kUnknown;
  bool persistent = true;
  std::string hypervisor_type;  // <domain type='kvm|qemu|test'>
  uint64_t memory_kib = 0;
  uint32_t vcpus = 0;
  std::vector<Disk> disks;
  // The domain XML it was parsed from: the live definition of a running VM (it can differ from
  // the saved configuration, e.g. after a block copy), the saved configuration otherwise.
  std::string xml;
  std::string parse_error;  // non-empty when the XML could not be parsed (see ListDomains)
};

// Parses a libvirt domain XML document (pugixml). All errors are InvalidArgument:
//   "domain XML is malformed: <pugixml description> at offset N" (N: byte offset),
//   "domain XML has no <name>", "domain XML of VM 'NAME' has no <uuid>",
//   "domain XML of VM 'NAME': <memory> ..." (bad number or unit), likewise <vcpu>.
// Disk-level oddities are not errors: an unknown disk type gives a disk of kind kNone with
// `source.resolve_error` set. `state` and `persistent` are not in the XML; callers fill them
// in. `xml` is set to a copy of the input.
absl::StatusOr<Domain> ParseDomainXml(std::string_view xml);

}  // namespace strata::hypervisor
