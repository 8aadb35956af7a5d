// HostServices for backup and restore: one hypervisor operation at a time, and which storage
// volume (and plug-in) holds a file.
#include <algorithm>

#include "strata/agent/host_services.h"
#include "strata/util/strings.h"

namespace strata::agent {
namespace {

class ResolverLocator final : public plugin::PathLocator {
 public:
  explicit ResolverLocator(storage::StorageResolver& resolver) : resolver_(resolver) {}
  std::optional<plugin::FileLocation> Locate(const std::string& path) override {
    return resolver_.Locate(path);
  }

 private:
  storage::StorageResolver& resolver_;
};

// Errors that say nothing about the connection: keep it.
bool KeepsConnection(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kDeadlineExceeded:
      return true;
    default:
      return false;
  }
}

}  // namespace

absl::Status HostServices::WithHypervisor(
    const std::function<absl::Status(hypervisor::Hypervisor&)>& fn) {
  std::lock_guard lock(mutex_);
  if (absl::Status status = EnsureHypervisorLocked(); !status.ok()) return status;
  absl::Status status = fn(*hypervisor_);
  if (!KeepsConnection(status)) hypervisor_.reset();  // re-opened by the next call
  return status;
}

std::vector<std::optional<HostServices::FileVolume>> HostServices::ClaimFiles(
    const std::vector<std::string>& paths) {
  std::lock_guard lock(mutex_);
  resolver_->Refresh();  // mounts may have changed since the last discovery
  ResolverLocator locator(*resolver_);
  std::vector<std::optional<FileVolume>> out;
  out.reserve(paths.size());
  for (const std::string& path : paths) {
    std::optional<plugin::FileLocation> location = resolver_->Locate(path);
    std::optional<FileVolume> best;
    if (location) {
      for (const auto& storage : storage_) {
        for (plugin::VolumeClaim& claim : storage->ClaimFile(*location, locator)) {
          // Nested volumes both claim the file: the one with the longest root holds it.
          if (!best || claim.root.size() > best->volume.root.size()) {
            best = FileVolume{storage.get(), std::move(claim), *location};
          }
        }
      }
    }
    out.push_back(std::move(best));
  }
  return out;
}

absl::StatusOr<HostServices::FileVolume> HostServices::FindVolume(const std::string& volume_id) {
  std::lock_guard lock(mutex_);
  resolver_->Refresh();
  ResolverLocator locator(*resolver_);
  for (const auto& storage : storage_) {
    for (plugin::VolumeClaim& claim : storage->Volumes(locator)) {
      if (claim.volume_id == volume_id) {
        FileVolume found{storage.get(), std::move(claim), {}};
        return found;
      }
    }
  }
  return absl::NotFoundError(util::Cat("storage volume '", volume_id,
                                       "' is not configured on host '", config_.host_id, "'"));
}

}  // namespace strata::agent
