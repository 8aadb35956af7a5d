// File system probing: libblkid on a live system, recorded `blkid -o export` output in tests.
#include <blkid/blkid.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>

#include "absl/status/status.h"
#include "str_util.h"
#include "strata/storage/resolver.h"
#include "sysfs.h"

namespace strata::storage {
namespace {

struct ProbeDeleter {
  void operator()(blkid_probe probe) const { blkid_free_probe(probe); }
};

std::string LookupValue(blkid_probe probe, const char* name) {
  const char* data = nullptr;
  size_t len = 0;
  if (blkid_probe_lookup_value(probe, name, &data, &len) != 0 || data == nullptr) return "";
  std::string value(data, len);
  while (!value.empty() && value.back() == '\0') value.pop_back();  // len counts the NUL
  return value;
}

// `blkid -o export` escapes shell-special characters with a backslash.
std::string UnescapeExport(std::string_view value) {
  std::string out;
  for (size_t i = 0; i < value.size(); ++i) {
    if (value[i] == '\\' && i + 1 < value.size()) ++i;
    out.push_back(value[i]);
  }
  return out;
}

std::string Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

}  // namespace

absl::StatusOr<FsProbe> ProbeWithBlkid(const std::string& device) {
  errno = 0;
  std::unique_ptr<struct blkid_struct_probe, ProbeDeleter> probe(
      blkid_new_probe_from_filename(device.c_str()));
  if (!probe) {
    int err = errno != 0 ? errno : EIO;
    return absl::Status(absl::ErrnoToStatusCode(err),
                        Cat("cannot open '", device, "' to probe it: ", strerror(err)));
  }
  blkid_probe_enable_superblocks(probe.get(), 1);
  blkid_probe_set_superblocks_flags(probe.get(),
                                    BLKID_SUBLKS_UUID | BLKID_SUBLKS_TYPE | BLKID_SUBLKS_LABEL);
  int rc = blkid_do_safeprobe(probe.get());
  if (rc == 1) return absl::NotFoundError(Cat("no file system found on '", device, "'"));
  if (rc == -2) {
    return absl::FailedPreconditionError(Cat("ambiguous file system signatures on '", device, "'"));
  }
  if (rc != 0) {
    int err = errno != 0 ? errno : EIO;
    return absl::Status(absl::ErrnoToStatusCode(err),
                        Cat("cannot probe '", device, "': ", strerror(err)));
  }
  FsProbe result;
  result.uuid = LookupValue(probe.get(), "UUID");
  result.type = LookupValue(probe.get(), "TYPE");
  result.label = LookupValue(probe.get(), "LABEL");
  return result;
}

absl::StatusOr<FsProbeFn> LoadRecordedProbe(const std::string& blkid_export_file,
                                            const std::string& dev_root) {
  PathMapper in_dev = [&dev_root](std::string_view logical) {
    return Cat(dev_root, StripPrefix(logical, "/dev"));
  };
  absl::StatusOr<std::string> text = ReadSmallFile(blkid_export_file);
  if (!text.ok()) {
    return absl::Status(text.status().code(), Cat("cannot read blkid record '", blkid_export_file,
                                                  "': ", text.status().message()));
  }
  // basename of DEVNAME -> probe result (or recorded error).
  auto records = std::make_shared<std::map<std::string, absl::StatusOr<FsProbe>>>();
  std::map<std::string, std::string> block;
  auto flush = [&]() {
    if (block.empty()) return;
    std::string dev = block["DEVNAME"];
    std::string key = Basename(dev);
    if (!dev_root.empty() && StartsWith(dev, "/dev/")) {
      if (absl::StatusOr<std::string> real = ResolveLogicalPath(in_dev, dev); real.ok()) {
        key = Basename(*real);
      }
    }
    if (block.contains("ERROR")) {
      (*records)[key] = absl::UnknownError(Cat("cannot probe '", dev, "': ", block["ERROR"]));
    } else {
      (*records)[key] = FsProbe{block["UUID"], block["TYPE"], block["LABEL"]};
    }
    block.clear();
  };
  for (std::string_view line : Split(*text, '\n')) {
    if (line.empty()) {
      flush();
      continue;
    }
    if (line[0] == '#') continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    block[std::string(line.substr(0, eq))] = UnescapeExport(line.substr(eq + 1));
  }
  flush();
  return FsProbeFn([records](const std::string& device) -> absl::StatusOr<FsProbe> {
    auto it = records->find(Basename(device));
    if (it == records->end()) {
      return absl::NotFoundError(Cat("no blkid record for '", device, "'"));
    }
    return it->second;
  });
}

absl::StatusOr<SystemView> RecordedSystemView(const std::string& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return absl::NotFoundError(Cat("recorded system '", dir, "' is not a directory"));
  }
  SystemView view;
  view.proc_root = dir + "/proc";
  view.sys_root = dir + "/sys";
  view.dev_root = dir + "/dev";
  view.fs_root = dir + "/root";
  if (std::filesystem::exists(dir + "/devnums", ec)) view.dev_numbers = dir + "/devnums";
  std::string record = dir + "/blkid.export";
  if (std::filesystem::exists(record, ec)) {
    absl::StatusOr<FsProbeFn> probe = LoadRecordedProbe(record, view.dev_root);
    if (!probe.ok()) return probe.status();
    view.probe_fs = *std::move(probe);
  } else {
    view.probe_fs = [](const std::string& device) -> absl::StatusOr<FsProbe> {
      return absl::NotFoundError(Cat("no blkid record for '", device, "'"));
    };
  }
  return view;
}

}  // namespace strata::storage
