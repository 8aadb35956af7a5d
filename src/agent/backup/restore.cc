// BackupEngine::Restore: from a backup's manifest alone, in place or as a new VM.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <map>
#include <random>
#include <sstream>

#include "pugixml.hpp"
#include "spdlog/spdlog.h"
#include "strata/agent/backup_engine.h"
#include "strata/storage/file_copy.h"
#include "strata/util/strings.h"

namespace strata::agent {
namespace {

using hypervisor::DomainState;
using hypervisor::Hypervisor;
namespace fs = std::filesystem;

std::string Msg(const absl::Status& s) { return std::string(util::ToStd(s.message())); }

std::string NewUuid() {
  std::random_device device;
  std::mt19937_64 rng((static_cast<uint64_t>(device()) << 32) ^ device());
  uint64_t hi = rng(), lo = rng();
  hi = (hi & 0xffffffffffff0fffULL) | 0x0000000000004000ULL;
  lo = (lo & 0x3fffffffffffffffULL) | 0x8000000000000000ULL;
  char buffer[40];
  std::snprintf(buffer, sizeof(buffer), "%08llx-%04llx-%04llx-%04llx-%012llx",
                static_cast<unsigned long long>(hi >> 32),
                static_cast<unsigned long long>((hi >> 16) & 0xffff),
                static_cast<unsigned long long>(hi & 0xffff),
                static_cast<unsigned long long>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffULL));
  return buffer;
}

// The saved XML of the backed-up VM, renamed, with a new UUID, new disk sources and no MAC
// addresses (libvirt makes new ones), so that both VMs can coexist.
absl::StatusOr<std::string> XmlForNewVm(const std::string& saved_xml, const std::string& name,
                                        const std::string& uuid,
                                        const std::map<std::string, std::string>& new_paths) {
  pugi::xml_document doc;
  pugi::xml_parse_result parsed = doc.load_string(saved_xml.c_str());
  if (!parsed) {
    return absl::InvalidArgumentError(
        util::Cat("saved domain XML in the backup is malformed: ", parsed.description()));
  }
  pugi::xml_node domain = doc.child("domain");
  if (!domain) return absl::InvalidArgumentError("saved domain XML in the backup has no <domain>");
  domain.child("name").text().set(name.c_str());
  if (!domain.child("uuid")) domain.append_child("uuid");
  domain.child("uuid").text().set(uuid.c_str());
  pugi::xml_node devices = domain.child("devices");
  for (pugi::xml_node disk : devices.children("disk")) {
    const std::string target = disk.child("target").attribute("dev").value();
    auto it = new_paths.find(target);
    if (it == new_paths.end()) continue;
    pugi::xml_node source = disk.child("source");
    // A pool volume restored as a plain file: the new disk is a file disk.
    disk.attribute("type").set_value("file");
    if (source) disk.remove_child(source);
    pugi::xml_node fresh = disk.insert_child_before("source", disk.first_child());
    fresh.append_attribute("file").set_value(it->second.c_str());
    while (pugi::xml_node backing = disk.child("backingStore")) disk.remove_child(backing);
  }
  for (pugi::xml_node iface : devices.children("interface")) {
    while (pugi::xml_node mac = iface.child("mac")) iface.remove_child(mac);
  }
  std::ostringstream out;
  doc.save(out, "  ");
  return out.str();
}

}  // namespace

absl::StatusOr<RestoreOutcome> BackupEngine::Restore(const backup::BackupManifest& manifest,
                                                     const RestoreParams& params,
                                                     const ProgressFn& progress) {
  auto fault = [&](const std::string& step) { return faults_ ? faults_(step) : absl::OkStatus(); };
  auto report = [&](const std::string& step, const std::string& message, int percent) {
    if (!progress) return;
    BackupStep s;
    s.step = step;
    s.message = message;
    s.percent = percent;
    progress(s);
  };
  const auto vm_it = std::find_if(
      manifest.vms.begin(), manifest.vms.end(),
      [&](const backup::ManifestVm& vm) { return vm.uuid == params.vm || vm.name == params.vm; });
  if (vm_it == manifest.vms.end()) {
    return absl::NotFoundError(
        util::Cat("VM '", params.vm, "' is not in backup '", manifest.name, "'"));
  }
  const backup::ManifestVm& vm = *vm_it;
  if (!vm.ok) {
    return absl::FailedPreconditionError(
        util::Cat("VM '", vm.name, "' failed in backup '", manifest.name, "': ", vm.error));
  }
  const bool as_new = !params.as_name.empty();
  if (as_new && !params.disks.empty()) {
    return absl::InvalidArgumentError(
        "a single-disk restore replaces a disk of the existing VM; it cannot be combined with "
        "restoring as a new VM");
  }
  if (as_new) {
    if (absl::Status s = backup::ValidateName("VM name", params.as_name); !s.ok()) return s;
  }
  std::vector<const backup::ManifestDisk*> disks;
  for (const backup::ManifestDisk& disk : vm.disks) {
    if (params.disks.empty() ||
        std::find(params.disks.begin(), params.disks.end(), disk.target) != params.disks.end()) {
      disks.push_back(&disk);
    }
  }
  for (const std::string& target : params.disks) {
    if (std::none_of(disks.begin(), disks.end(),
                     [&](const backup::ManifestDisk* d) { return d->target == target; })) {
      return absl::NotFoundError(util::Cat("backup '", manifest.name, "' has no disk '", target,
                                           "' of VM '", vm.name, "'"));
    }
  }
  if (disks.empty()) {
    return absl::FailedPreconditionError(
        util::Cat("backup '", manifest.name, "' holds no disk of VM '", vm.name, "'"));
  }
  std::lock_guard run_lock(run_mutex_);

  // The snapshot copies must be there (and intact, when asked) before anything is touched.
  for (const backup::ManifestDisk* d : disks) {
    std::error_code ec;
    if (!fs::is_regular_file(d->snapshot_path, ec)) {
      return absl::FailedPreconditionError(util::Cat(
          "the copy of disk '", d->target, "' of VM '", vm.name, "' in backup '", manifest.name,
          "' is missing: '", d->snapshot_path, "' (snapshot deleted or volume not mounted?)"));
    }
    const uint64_t size = fs::file_size(d->snapshot_path, ec);
    if (ec || size != d->size_bytes) {
      return absl::DataLossError(util::Cat("the copy of disk '", d->target, "' in backup '",
                                           manifest.name, "' has ", size,
                                           " bytes, the backup "
                                           "recorded ",
                                           d->size_bytes, ": '", d->snapshot_path, "'"));
    }
    if (params.verify) {
      if (d->checksum.empty()) {
        return absl::FailedPreconditionError(
            util::Cat("backup '", manifest.name, "' recorded no checksum of disk '", d->target,
                      "' of VM '", vm.name, "' (back up with --verify to record them)"));
      }
      report("verify", util::Cat("checking the copy of disk '", d->target, "'"), 5);
      absl::StatusOr<std::string> sum = storage::HashFile(d->snapshot_path);
      if (!sum.ok()) return sum.status();
      if (*sum != d->checksum) {
        return absl::DataLossError(util::Cat("the copy of disk '", d->target, "' in backup '",
                                             manifest.name, "' is corrupt: checksum ", *sum,
                                             ", recorded ", d->checksum));
      }
    }
  }

  RestoreOutcome outcome;
  const int total = static_cast<int>(disks.size());
  auto verify_copy = [&](const backup::ManifestDisk& d, const std::string& path) -> absl::Status {
    std::error_code ec;
    const uint64_t size = fs::file_size(path, ec);
    if (ec || size != d.size_bytes) {
      return absl::DataLossError(util::Cat("restored disk '", d.target, "' at '", path, "' has ",
                                           size, " bytes, expected ", d.size_bytes));
    }
    if (!params.verify) return absl::OkStatus();
    absl::StatusOr<std::string> sum = storage::HashFile(path);
    if (!sum.ok()) return sum.status();
    if (*sum != d.checksum) {
      return absl::DataLossError(util::Cat("restored disk '", d.target, "' at '", path,
                                           "' does not match the backup: checksum ", *sum,
                                           ", recorded ", d.checksum));
    }
    return absl::OkStatus();
  };

  if (!as_new) {
    // ---- in place
    std::optional<DomainState> state;
    absl::Status looked = host_.WithHypervisor([&](Hypervisor& h) -> absl::Status {
      absl::StatusOr<DomainState> got = h.GetState(vm.uuid);
      if (!got.ok()) return got.status();
      state = *got;
      return absl::OkStatus();
    });
    if (!looked.ok() && !absl::IsNotFound(looked)) return looked;
    const bool was_active =
        state && (*state == DomainState::kRunning || *state == DomainState::kPaused ||
                  *state == DomainState::kBlocked);
    if (was_active) {
      report("stop", util::Cat("stopping VM '", vm.name, "'"), 10);
      if (absl::Status s = fault("stop:" + vm.name); !s.ok()) return s;
      if (absl::Status s = host_.WithHypervisor([&](Hypervisor& h) { return h.Destroy(vm.uuid); });
          !s.ok()) {
        return absl::Status(s.code(),
                            util::Cat("cannot stop VM '", vm.name, "' to restore it: ", Msg(s)));
      }
    }
    int n = 0;
    for (const backup::ManifestDisk* d : disks) {
      report("copy", util::Cat("disk '", d->target, "' -> '", d->source_path, "'"),
             20 + 60 * n++ / total);
      absl::Status s = fault(util::Cat("copy:", vm.name, ":", d->target));
      if (s.ok()) {
        std::error_code ec;
        fs::create_directories(fs::path(d->source_path).parent_path(), ec);
        absl::StatusOr<storage::CopyResult> copied =
            storage::ReplaceFileAtomically(d->snapshot_path, d->source_path);
        s = copied.ok() ? verify_copy(*d, d->source_path) : copied.status();
      }
      if (!s.ok()) {
        // The disks already replaced hold the backup's data; the others are untouched.
        return absl::Status(
            s.code(), util::Cat("restore of disk '", d->target, "' of VM '", vm.name, "' failed (",
                                n - 1, " of ", total, " disks restored): ", Msg(s)));
      }
      outcome.disk_paths.push_back(d->source_path);
    }
    if (params.disks.empty()) {
      report("define", util::Cat("redefining VM '", vm.name, "' from the backup"), 85);
      absl::Status s = fault("define:" + vm.name);
      if (s.ok()) {
        s = host_.WithHypervisor([&](Hypervisor& h) { return h.DefineXml(vm.saved_xml).status(); });
      }
      if (!s.ok()) {
        return absl::Status(s.code(), util::Cat("disks restored, but redefining VM '", vm.name,
                                                "' failed: ", Msg(s)));
      }
    }
    outcome.vm_uuid = vm.uuid;
    outcome.vm_name = vm.name;
    const bool start = params.start.value_or(was_active);
    if (start) {
      report("start", util::Cat("starting VM '", vm.name, "'"), 95);
      absl::Status s = fault("start:" + vm.name);
      if (s.ok()) s = host_.WithHypervisor([&](Hypervisor& h) { return h.Start(vm.uuid); });
      if (!s.ok()) {
        return absl::Status(
            s.code(), util::Cat("VM '", vm.name, "' restored, but starting it failed: ", Msg(s)));
      }
      outcome.started = true;
    }
  } else {
    // ---- as a new VM
    absl::Status exists =
        host_.WithHypervisor([&](Hypervisor& h) { return h.GetState(params.as_name).status(); });
    if (exists.ok()) {
      return absl::AlreadyExistsError(util::Cat("a VM named '", params.as_name,
                                                "' already exists on host '",
                                                host_.config().host_id, "'"));
    }
    if (!absl::IsNotFound(exists)) return exists;
    std::map<std::string, std::string> new_paths;
    for (const backup::ManifestDisk* d : disks) {
      const fs::path source(d->source_path);
      const fs::path dir =
          params.target_dir.empty() ? source.parent_path() : fs::path(params.target_dir);
      const fs::path path =
          dir / util::Cat(params.as_name, "-", d->target, source.extension().string());
      std::error_code ec;
      if (fs::exists(path, ec)) {
        return absl::AlreadyExistsError(
            util::Cat("'", path.string(), "' already exists: choose another name"));
      }
      new_paths[d->target] = path.string();
    }
    const std::string uuid = NewUuid();
    absl::StatusOr<std::string> xml = XmlForNewVm(vm.saved_xml, params.as_name, uuid, new_paths);
    if (!xml.ok()) return xml.status();
    std::vector<std::string> made;
    auto undo = [&](absl::Status status) {
      for (const std::string& path : made) {
        std::error_code ec;
        fs::remove(path, ec);
      }
      return status;
    };
    int n = 0;
    for (const backup::ManifestDisk* d : disks) {
      const std::string& path = new_paths[d->target];
      report("copy", util::Cat("disk '", d->target, "' -> '", path, "'"), 20 + 60 * n++ / total);
      absl::Status s = fault(util::Cat("copy:", vm.name, ":", d->target));
      if (s.ok()) {
        std::error_code ec;
        fs::create_directories(fs::path(path).parent_path(), ec);
        absl::StatusOr<storage::CopyResult> copied =
            storage::CloneOrCopyFile(d->snapshot_path, path);
        if (copied.ok()) made.push_back(path);
        s = copied.ok() ? verify_copy(*d, path) : copied.status();
      }
      if (!s.ok()) {
        return undo(
            absl::Status(s.code(), util::Cat("restore of VM '", vm.name, "' as '", params.as_name,
                                             "': disk '", d->target, "': ", Msg(s))));
      }
      outcome.disk_paths.push_back(path);
    }
    report("define", util::Cat("defining VM '", params.as_name, "'"), 85);
    absl::Status s = fault("define:" + params.as_name);
    if (s.ok()) s = host_.WithHypervisor([&](Hypervisor& h) { return h.DefineXml(*xml).status(); });
    if (!s.ok()) {
      return undo(
          absl::Status(s.code(), util::Cat("defining VM '", params.as_name, "' failed: ", Msg(s))));
    }
    outcome.vm_uuid = uuid;
    outcome.vm_name = params.as_name;
    if (params.start.value_or(false)) {
      report("start", util::Cat("starting VM '", params.as_name, "'"), 95);
      s = fault("start:" + params.as_name);
      if (s.ok()) s = host_.WithHypervisor([&](Hypervisor& h) { return h.Start(uuid); });
      if (!s.ok()) {
        return absl::Status(s.code(), util::Cat("VM '", params.as_name,
                                                "' restored, but starting it failed: ", Msg(s)));
      }
      outcome.started = true;
    }
  }
  outcome.verified = params.verify;
  outcome.message = util::Cat("restored VM '", outcome.vm_name, "' from backup '", manifest.name,
                              "' (", outcome.disk_paths.size(), " disks", as_new ? ", new VM" : "",
                              outcome.started ? ", started" : "", ")");
  report("done", outcome.message, 100);
  spdlog::info("{}", outcome.message);
  return outcome;
}

}  // namespace strata::agent
