// Names of the hypervisor value types (include/strata/hypervisor/domain.h). Part of the plug-in
// SDK library, so that both the agent and every hypervisor plug-in have them.
#include "strata/hypervisor/domain.h"

namespace strata::hypervisor {

std::string_view DomainStateName(DomainState state) {
  switch (state) {
    case DomainState::kUnknown:
      return "unknown";
    case DomainState::kRunning:
      return "running";
    case DomainState::kBlocked:
      return "blocked";
    case DomainState::kPaused:
      return "paused";
    case DomainState::kShutdown:
      return "shutdown";
    case DomainState::kShutoff:
      return "shutoff";
    case DomainState::kCrashed:
      return "crashed";
    case DomainState::kSuspended:
      return "pmsuspended";
  }
  return "unknown";
}

std::string_view DiskSourceKindName(DiskSourceKind kind) {
  switch (kind) {
    case DiskSourceKind::kFile:
      return "file";
    case DiskSourceKind::kBlock:
      return "block";
    case DiskSourceKind::kNetwork:
      return "network";
    case DiskSourceKind::kVolume:
      return "volume";
    case DiskSourceKind::kDir:
      return "dir";
    case DiskSourceKind::kNone:
      return "none";
  }
  return "none";
}

std::string_view DiskDeviceName(DiskDevice device) {
  switch (device) {
    case DiskDevice::kDisk:
      return "disk";
    case DiskDevice::kCdrom:
      return "cdrom";
    case DiskDevice::kFloppy:
      return "floppy";
    case DiskDevice::kLun:
      return "lun";
  }
  return "disk";
}

}  // namespace strata::hypervisor
