// Names of the hypervisor value types (include/strata/hypervisor/domain.h). Part of the plug-in
// SDK library, so that both the agent and every hypervisor plug-in have them.
#include "strata/hypervisor/domain.h"
#include "strata/hypervisor/hypervisor.h"

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

std::string_view EventKindName(EventKind kind) {
  switch (kind) {
    case EventKind::kDefined:
      return "defined";
    case EventKind::kRedefined:
      return "redefined";
    case EventKind::kUndefined:
      return "undefined";
    case EventKind::kStarted:
      return "started";
    case EventKind::kStopped:
      return "stopped";
    case EventKind::kSuspended:
      return "suspended";
    case EventKind::kResumed:
      return "resumed";
    case EventKind::kOtherLifecycle:
      return "other-lifecycle";
    case EventKind::kDeviceAdded:
      return "device-added";
    case EventKind::kDeviceRemoved:
      return "device-removed";
    case EventKind::kModified:
      return "modified";
    case EventKind::kConnectionClosed:
      return "connection-closed";
  }
  return "unknown";
}

}  // namespace strata::hypervisor
