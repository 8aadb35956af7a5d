#include "sysfs.h"

#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/status/status.h"
#include "mountinfo.h"
#include "str_util.h"

namespace strata::storage {
namespace {

absl::Status ErrnoStatus(int err) {
  return absl::Status(absl::ErrnoToStatusCode(err), std::strerror(err));
}

std::string Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string Dirname(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos || slash == 0) return "/";
  return std::string(path.substr(0, slash));
}

bool IsHctl(std::string_view name) {
  std::vector<std::string_view> parts = Split(name, ':');
  if (parts.size() != 4) return false;
  for (std::string_view p : parts) {
    uint64_t v;
    if (!ParseUint(p, v)) return false;
  }
  return true;
}

std::string Hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 0xf]);
  }
  return out;
}

std::string TrimAscii(std::string_view text) {
  while (!text.empty() && (text.back() == '\0' || text.back() == ' ')) text.remove_suffix(1);
  return std::string(text);
}

std::vector<std::string> ListDir(const std::string& physical) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(physical, ec)) {
    names.push_back(entry.path().filename().string());
  }
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

absl::StatusOr<std::string> ResolveLogicalPath(const PathMapper& mapper, std::string_view path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError("path is not absolute");
  }
  std::deque<std::string> todo;
  for (std::string_view c : Split(path, '/', true)) todo.emplace_back(c);
  std::string current;  // "" stands for "/"
  int links = 0;
  while (!todo.empty()) {
    std::string comp = std::move(todo.front());
    todo.pop_front();
    if (comp == ".") continue;
    if (comp == "..") {
      size_t slash = current.rfind('/');
      current.resize(slash == std::string::npos ? 0 : slash);
      continue;
    }
    std::string next = Cat(current, "/", comp);
    std::string physical = mapper(next);
    struct stat st;
    if (lstat(physical.c_str(), &st) != 0) return ErrnoStatus(errno);
    if (!S_ISLNK(st.st_mode)) {
      if (!todo.empty() && !S_ISDIR(st.st_mode)) return ErrnoStatus(ENOTDIR);
      current = std::move(next);
      continue;
    }
    if (++links > 40) return ErrnoStatus(ELOOP);
    std::string target(4096, '\0');
    ssize_t n = readlink(physical.c_str(), target.data(), target.size());
    if (n < 0) return ErrnoStatus(errno);
    target.resize(static_cast<size_t>(n));
    std::vector<std::string_view> parts = Split(target, '/', true);
    for (auto it = parts.rbegin(); it != parts.rend(); ++it) todo.emplace_front(*it);
    if (!target.empty() && target[0] == '/') current.clear();
  }
  return current.empty() ? std::string("/") : current;
}

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, bool trim) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return ErrnoStatus(errno != 0 ? errno : ENOENT);
  std::ostringstream out;
  out << in.rdbuf();
  if (in.bad()) return ErrnoStatus(errno != 0 ? errno : EIO);
  std::string text = out.str();
  if (trim) {
    while (!text.empty() && std::isspace(static_cast<unsigned char>(text.back()))) {
      text.pop_back();
    }
  }
  return text;
}

std::string WwidFromVpd83(std::string_view page) {
  if (page.size() < 4 || static_cast<unsigned char>(page[1]) != 0x83) return "";
  size_t end = std::min<size_t>(page.size(), 4 + ((static_cast<unsigned char>(page[2]) << 8) |
                                                  static_cast<unsigned char>(page[3])));
  std::string best;
  int best_rank = 100;
  for (size_t off = 4; off + 4 <= end;) {
    auto byte = [&](size_t i) { return static_cast<unsigned char>(page[off + i]); };
    int code_set = byte(0) & 0x0f;
    int type = byte(1) & 0x0f;
    int association = (byte(1) >> 4) & 0x03;
    size_t len = byte(3);
    if (off + 4 + len > end) break;
    std::string_view id = page.substr(off + 4, len);
    off += 4 + len;
    if (association != 0) continue;
    int rank;
    std::string wwid;
    if (type == 3 && code_set == 1) {
      rank = 0, wwid = "naa." + Hex(id);
    } else if (type == 2 && code_set == 1) {
      rank = 1, wwid = "eui." + Hex(id);
    } else if (type == 8) {
      rank = 2, wwid = TrimAscii(id);
    } else if (type == 1) {
      rank = 3, wwid = "t10." + TrimAscii(id);
    } else {
      continue;
    }
    if (rank < best_rank) best_rank = rank, best = std::move(wwid);
  }
  return best;
}

std::string WwidFromMultipathUuid(std::string_view dm_uuid) {
  if (!StartsWith(dm_uuid, "mpath-") || dm_uuid.size() < 8) return "";
  std::string_view rest = dm_uuid.substr(6);
  switch (rest[0]) {
    case '3':
      return "naa." + ToLower(rest.substr(1));
    case '2':
      return "eui." + ToLower(rest.substr(1));
    case '1':
      return "t10." + std::string(rest.substr(1));
    case '8':
      return std::string(rest.substr(1));
    default:
      return std::string(rest);
  }
}

SysfsReader::SysfsReader(const SystemView& view) : view_(view) {
  fs_mapper_ = [dev = view_.dev_root, fs = view_.fs_root](std::string_view logical) {
    if (IsPathPrefix("/dev", logical)) return Cat(dev, logical.substr(4));
    return Cat(fs, logical);
  };
  sys_mapper_ = [this](std::string_view logical) { return Sys(logical); };
}

std::string SysfsReader::Sys(std::string_view logical) const {
  if (IsPathPrefix("/sys", logical)) return Cat(view_.sys_root, logical.substr(4));
  return Cat(view_.fs_root, logical);
}

std::string SysfsReader::ClassBlockDir() const { return Cat(view_.sys_root, "/class/block"); }

std::string SysfsReader::DevNodeOf(const std::string& name) const {
  return Cat(view_.dev_root, "/", name);
}

std::optional<std::string> SysfsReader::SysAttr(const std::string& logical, bool trim) const {
  absl::StatusOr<std::string> text = ReadSmallFile(Sys(logical), trim);
  if (!text.ok()) return std::nullopt;
  return *std::move(text);
}

void SysfsReader::LoadDevNumbers() {
  if (dev_numbers_.has_value()) return;
  dev_numbers_.emplace();
  if (view_.dev_numbers.empty()) return;
  absl::StatusOr<std::string> text = ReadSmallFile(view_.dev_numbers);
  if (!text.ok()) return;
  for (std::string_view line : Split(*text, '\n')) {
    line = Trim(line);
    if (line.empty() || line[0] == '#') continue;
    size_t space = line.rfind(' ');
    if (space == std::string_view::npos) continue;
    (*dev_numbers_)[std::string(Trim(line.substr(0, space)))] = std::string(line.substr(space + 1));
  }
}

absl::StatusOr<std::string> SysfsReader::DevNumOf(const std::string& device_path) {
  if (device_path.empty() || device_path[0] != '/') {
    return absl::InvalidArgumentError(Cat("block device path '", device_path, "' is not absolute"));
  }
  absl::StatusOr<std::string> canonical = ResolveLogicalPath(fs_mapper_, device_path);
  std::string key = canonical.ok() ? *canonical : device_path;
  bool exists = false;
  if (canonical.ok()) {
    struct stat st;
    if (stat(fs_mapper_(key).c_str(), &st) == 0) {
      exists = true;
      if (S_ISBLK(st.st_mode)) return Cat(major(st.st_rdev), ":", minor(st.st_rdev));
    }
  }
  LoadDevNumbers();
  for (const std::string& k : {key, device_path}) {
    auto it = dev_numbers_->find(k);
    if (it != dev_numbers_->end()) return it->second;
  }
  std::string base = Basename(key);
  if (!base.empty() && base != "." && base != "..") {
    if (auto dev = SysAttr(Cat("/sys/class/block/", base, "/dev"))) return *dev;
  }
  if (exists) {
    return absl::FailedPreconditionError(Cat("'", device_path, "' is not a block device"));
  }
  return absl::NotFoundError(
      Cat("block device '", device_path, "' not found under ", ClassBlockDir()));
}

absl::StatusOr<const BlockInfo*> SysfsReader::ByDevNum(const std::string& devnum) {
  auto it = by_devnum_.find(devnum);
  if (it == by_devnum_.end()) {
    absl::StatusOr<std::unique_ptr<BlockInfo>> entry;
    absl::StatusOr<std::string> dir =
        ResolveLogicalPath(sys_mapper_, Cat("/sys/dev/block/", devnum));
    if (!dir.ok()) {
      entry = absl::NotFoundError(
          Cat("block device ", devnum, " not found under ", view_.sys_root, "/dev/block"));
    } else {
      absl::StatusOr<BlockInfo> info = Read(*dir);
      if (info.ok()) {
        entry = std::make_unique<BlockInfo>(*std::move(info));
      } else {
        entry = info.status();
      }
    }
    it = by_devnum_.emplace(devnum, std::move(entry)).first;
  }
  if (!it->second.ok()) return it->second.status();
  return it->second->get();
}

absl::StatusOr<const BlockInfo*> SysfsReader::ByName(const std::string& name) {
  auto known = name_to_devnum_.find(name);
  if (known != name_to_devnum_.end()) return ByDevNum(known->second);
  std::optional<std::string> devnum;
  if (!name.empty() && name.find('/') == std::string::npos && name != "." && name != "..") {
    devnum = SysAttr(Cat("/sys/class/block/", name, "/dev"));
  }
  if (!devnum) {
    return absl::NotFoundError(Cat("block device '", name, "' not found under ", ClassBlockDir()));
  }
  name_to_devnum_[name] = *devnum;
  return ByDevNum(*devnum);
}

absl::StatusOr<BlockInfo> SysfsReader::Read(const std::string& dir) {
  BlockInfo info;
  info.name = Basename(dir);
  info.sys_path = dir;
  info.devnum = SysAttr(dir + "/dev").value_or("");
  uint64_t sectors = 0;
  if (auto size = SysAttr(dir + "/size"); size && ParseUint(*size, sectors)) {
    info.size_bytes = sectors * 512;
  }
  std::error_code ec;
  auto exists = [&](const std::string& logical) {
    return std::filesystem::exists(Sys(logical), ec);
  };
  if (auto part = SysAttr(dir + "/partition")) {
    info.kind = "partition";
    info.partition_number = *part;
    info.parent = Basename(Dirname(dir));
  } else if (exists(dir + "/dm")) {
    info.kind = "dm";
    info.dm_name = SysAttr(dir + "/dm/name").value_or("");
    info.dm_uuid = SysAttr(dir + "/dm/uuid").value_or("");
    size_t dash = info.dm_uuid.find('-');
    std::string prefix = info.dm_uuid.substr(0, dash == std::string::npos ? 0 : dash);
    if (prefix == "mpath") {
      info.dm_target = "multipath";
    } else if (prefix == "LVM") {
      info.dm_target = "lvm";
    } else if (prefix == "CRYPT") {
      info.dm_target = "crypt";
    } else if (StartsWith(prefix, "part")) {
      info.dm_target = "partition";
    } else {
      info.dm_target = ToLower(prefix);
    }
  } else if (StartsWith(info.name, "loop")) {
    info.kind = "loop";
    if (auto backing = SysAttr(dir + "/loop/backing_file")) {
      info.loop_bound = true;
      info.loop_backing_file = *backing;
    }
  } else if (exists(dir + "/md")) {
    info.kind = "md";
  } else {
    info.kind = "disk";
    ReadDiskDetails(info);
  }
  info.slaves = ListDir(Sys(dir + "/slaves"));
  return info;
}

void SysfsReader::ReadDiskDetails(BlockInfo& info) {
  const std::string& dir = info.sys_path;
  absl::StatusOr<std::string> dev = ResolveLogicalPath(sys_mapper_, dir + "/device");
  if (!dev.ok()) return;  // virtual disk (zram, ram, ...): no device behind it
  if (StartsWith(info.name, "nvme")) {
    info.transport = "nvme";
    info.model = SysAttr(*dev + "/model").value_or("");
    info.serial = SysAttr(*dev + "/serial").value_or("");
    info.subsysnqn = SysAttr(*dev + "/subsysnqn").value_or("");
    info.wwid = SysAttr(dir + "/wwid").value_or("");
    info.nsid = SysAttr(dir + "/nsid").value_or("");
    return;
  }
  std::string vendor = SysAttr(*dev + "/vendor").value_or("");
  std::string hctl = Basename(*dev);
  if (!IsHctl(hctl)) {
    if (vendor == "0x1af4") {
      info.transport = "virtio";
      info.vendor = vendor;
      info.serial = SysAttr(dir + "/serial").value_or("");
    }
    return;
  }
  info.hctl = hctl;
  info.lun = hctl.substr(hctl.rfind(':') + 1);
  info.vendor = vendor;
  info.model = SysAttr(*dev + "/model").value_or("");
  info.wwid = SysAttr(*dev + "/wwid").value_or("");
  if (info.wwid.empty()) {
    info.wwid = WwidFromVpd83(SysAttr(*dev + "/vpd_pg83", /*trim=*/false).value_or(""));
  }
  info.transport = "scsi";
  for (std::string_view comp : Split(*dev, '/', true)) {
    uint64_t n;
    if (StartsWith(comp, "session") && ParseUint(comp.substr(7), n)) {
      info.transport = "iscsi";
      info.iscsi_session = std::string(comp);
    } else if (StartsWith(comp, "ata") && ParseUint(comp.substr(3), n)) {
      info.transport = "ata";
    } else if (StartsWith(comp, "rport-")) {
      info.transport = "fc";
    } else if (StartsWith(comp, "usb")) {
      info.transport = "usb";
    }
  }
  if (info.transport == "scsi" && info.vendor == "ATA") info.transport = "ata";
  if (info.transport == "iscsi") {
    info.iscsi_target =
        SysAttr(Cat("/sys/class/iscsi_session/", info.iscsi_session, "/targetname")).value_or("");
    std::string prefix = Cat("connection", info.iscsi_session.substr(7), ":");
    for (const std::string& conn : ListDir(Sys("/sys/class/iscsi_connection"))) {
      if (!StartsWith(conn, prefix)) continue;
      std::string base = Cat("/sys/class/iscsi_connection/", conn, "/");
      std::string address = SysAttr(base + "persistent_address").value_or("");
      std::string port = SysAttr(base + "persistent_port").value_or("");
      if (address.empty()) continue;
      info.iscsi_portals.push_back(port.empty() ? address : Cat(address, ":", port));
    }
  }
}

}  // namespace strata::storage
