// The backup manifest: JSON conversion, atomic files, the search under storage roots, names.
#include "strata/backup/manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <sstream>
#include <utility>

#include "absl/status/status.h"
#include "strata/core/status_macros.h"
#include "strata/util/strings.h"

namespace strata::backup {

namespace {

using nlohmann::json;
using util::Cat;

constexpr char kFormatName[] = "strata-backup-manifest";
constexpr char kSnapshotDir[] = ".strata-snapshots";  // plugin::kSnapshotDirName
constexpr size_t kMaxNameLength = 128;

absl::Status Invalid(std::string_view message) {
  return absl::InvalidArgumentError(Cat("backup manifest: ", message));
}

// Reads the keys of one JSON object, with the key's path ("vms[0].disks[1].target") in every
// error. Required keys must be present; optional keys keep the value they have when absent.
// `null` counts as absent. Unknown keys are ignored.
class Reader {
 public:
  Reader(const json& object, std::string path) : object_(object), path_(std::move(path)) {}

  absl::Status String(const char* key, std::string& out, bool required) {
    const json* v = Find(key);
    if (v == nullptr) return Absent(key, required);
    if (!v->is_string()) return WrongType(key, "a string");
    out = v->get<std::string>();
    return absl::OkStatus();
  }

  absl::Status Bool(const char* key, bool& out, bool required) {
    const json* v = Find(key);
    if (v == nullptr) return Absent(key, required);
    if (!v->is_boolean()) return WrongType(key, "true or false");
    out = v->get<bool>();
    return absl::OkStatus();
  }

  absl::Status Int(const char* key, int64_t& out, bool required) {
    const json* v = Find(key);
    if (v == nullptr) return Absent(key, required);
    if (v->is_number_unsigned()) {
      const uint64_t u = v->get<uint64_t>();
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return WrongType(key, "a whole number that fits 64 bits");
      }
      out = static_cast<int64_t>(u);
      return absl::OkStatus();
    }
    if (!v->is_number_integer()) return WrongType(key, "a whole number");
    out = v->get<int64_t>();
    return absl::OkStatus();
  }

  absl::Status Unsigned(const char* key, uint64_t& out, bool required) {
    const json* v = Find(key);
    if (v == nullptr) return Absent(key, required);
    if (v->is_number_unsigned()) {
      out = v->get<uint64_t>();
      return absl::OkStatus();
    }
    if (v->is_number_integer() && v->get<int64_t>() >= 0) {
      out = static_cast<uint64_t>(v->get<int64_t>());
      return absl::OkStatus();
    }
    return WrongType(key, "a whole number, not negative");
  }

  // The array under `key` (nullptr when absent and optional).
  absl::StatusOr<const json*> Array(const char* key, bool required) {
    const json* v = Find(key);
    if (v == nullptr) {
      STRATA_RETURN_IF_ERROR(Absent(key, required));
      return nullptr;
    }
    if (!v->is_array()) return WrongType(key, "an array");
    return v;
  }

  absl::StatusOr<const json*> Object(const char* key, bool required) {
    const json* v = Find(key);
    if (v == nullptr) {
      STRATA_RETURN_IF_ERROR(Absent(key, required));
      return nullptr;
    }
    if (!v->is_object()) return WrongType(key, "an object");
    return v;
  }

  std::string Path(const char* key) const { return path_.empty() ? key : Cat(path_, ".", key); }

 private:
  const json* Find(const char* key) const {
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  absl::Status Absent(const char* key, bool required) const {
    if (!required) return absl::OkStatus();
    return Invalid(Cat("missing required key '", Path(key), "'"));
  }
  absl::Status WrongType(const char* key, const char* expected) const {
    return Invalid(Cat("key '", Path(key), "' must be ", expected));
  }

  const json& object_;
  const std::string path_;
};

absl::Status RequireObject(const json& value, const std::string& path) {
  if (!value.is_object()) return Invalid(Cat("'", path, "' must be an object"));
  return absl::OkStatus();
}

absl::Status ReadDisk(const json& value, const std::string& path, ManifestDisk& disk) {
  STRATA_RETURN_IF_ERROR(RequireObject(value, path));
  Reader r(value, path);
  STRATA_RETURN_IF_ERROR(r.String("target", disk.target, true));
  STRATA_RETURN_IF_ERROR(r.String("source_path", disk.source_path, false));
  STRATA_RETURN_IF_ERROR(r.String("format", disk.format, false));
  STRATA_RETURN_IF_ERROR(r.String("storage_volume", disk.storage_volume, true));
  STRATA_RETURN_IF_ERROR(r.String("volume_name", disk.volume_name, false));
  STRATA_RETURN_IF_ERROR(r.String("snapshot_id", disk.snapshot_id, true));
  STRATA_RETURN_IF_ERROR(r.String("path_in_snapshot", disk.path_in_snapshot, true));
  STRATA_RETURN_IF_ERROR(r.String("snapshot_path", disk.snapshot_path, false));
  STRATA_RETURN_IF_ERROR(r.Unsigned("size_bytes", disk.size_bytes, false));
  STRATA_RETURN_IF_ERROR(r.String("checksum", disk.checksum, false));
  return absl::OkStatus();
}

absl::Status ReadVm(const json& value, const std::string& path, ManifestVm& vm) {
  STRATA_RETURN_IF_ERROR(RequireObject(value, path));
  Reader r(value, path);
  STRATA_RETURN_IF_ERROR(r.String("uuid", vm.uuid, true));
  STRATA_RETURN_IF_ERROR(r.String("name", vm.name, true));
  STRATA_RETURN_IF_ERROR(r.String("host", vm.host, false));
  STRATA_RETURN_IF_ERROR(r.String("state_before", vm.state_before, false));
  STRATA_RETURN_IF_ERROR(r.String("consistency_achieved", vm.consistency_achieved, false));
  STRATA_RETURN_IF_ERROR(r.String("vm_snapshot", vm.vm_snapshot, false));
  STRATA_RETURN_IF_ERROR(r.String("vm_snapshot_kind", vm.vm_snapshot_kind, false));
  STRATA_RETURN_IF_ERROR(r.String("saved_xml", vm.saved_xml, false));
  STRATA_RETURN_IF_ERROR(r.Bool("ok", vm.ok, true));
  STRATA_RETURN_IF_ERROR(r.String("error", vm.error, false));
  absl::StatusOr<const json*> disks = r.Array("disks", true);
  if (!disks.ok()) return disks.status();
  for (size_t i = 0; i < (*disks)->size(); ++i) {
    ManifestDisk disk;
    STRATA_RETURN_IF_ERROR(ReadDisk((**disks)[i], Cat(r.Path("disks"), "[", i, "]"), disk));
    vm.disks.push_back(std::move(disk));
  }
  return absl::OkStatus();
}

absl::Status ReadSnapshot(const json& value, const std::string& path, ManifestSnapshot& snap) {
  STRATA_RETURN_IF_ERROR(RequireObject(value, path));
  Reader r(value, path);
  STRATA_RETURN_IF_ERROR(r.String("snapshot_id", snap.snapshot_id, true));
  STRATA_RETURN_IF_ERROR(r.String("storage_volume", snap.storage_volume, true));
  STRATA_RETURN_IF_ERROR(r.String("volume_name", snap.volume_name, false));
  STRATA_RETURN_IF_ERROR(r.String("volume_root", snap.volume_root, false));
  STRATA_RETURN_IF_ERROR(r.String("plugin", snap.plugin, false));
  STRATA_RETURN_IF_ERROR(r.String("host", snap.host, false));
  STRATA_RETURN_IF_ERROR(r.String("path", snap.path, true));
  STRATA_RETURN_IF_ERROR(r.String("method", snap.method, false));
  STRATA_RETURN_IF_ERROR(r.Int("created_at_ms", snap.created_at_ms, false));
  return absl::OkStatus();
}

std::string ErrnoText(int err) { return std::strerror(err); }

// A name for messages: printable ASCII as is, anything else as \xNN.
std::string Printable(std::string_view text) {
  std::string out;
  for (unsigned char c : text) {
    if (c >= 0x20 && c < 0x7f) {
      out.push_back(static_cast<char>(c));
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 0xf]);
    }
  }
  return out;
}

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

// Collects the manifests directly inside the `.strata-snapshots` directory `dir` (regular files,
// not symlinks). Does not descend: the directories there hold snapshot data.
void CollectManifests(const std::filesystem::path& dir, std::set<std::string>& found,
                      std::vector<std::string>* unreadable) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) {
    if (unreadable != nullptr) {
      unreadable->push_back(Cat("cannot read directory '", dir.string(), "': ", ec.message()));
    }
    return;
  }
  for (; it != fs::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (name.size() <= sizeof(kManifestSuffix) - 1 || !EndsWith(name, kManifestSuffix)) continue;
    std::error_code type_ec;
    if (!it->is_regular_file(type_ec) || it->is_symlink(type_ec)) continue;
    found.insert(it->path().string());
  }
  if (ec && unreadable != nullptr) {
    unreadable->push_back(Cat("cannot read directory '", dir.string(), "': ", ec.message()));
  }
}

}  // namespace

// ---- JSON --------------------------------------------------------------------------------------

json ToJson(const BackupManifest& m) {
  json vms = json::array();
  for (const ManifestVm& vm : m.vms) {
    json disks = json::array();
    for (const ManifestDisk& d : vm.disks) {
      disks.push_back({{"target", d.target},
                       {"source_path", d.source_path},
                       {"format", d.format},
                       {"storage_volume", d.storage_volume},
                       {"volume_name", d.volume_name},
                       {"snapshot_id", d.snapshot_id},
                       {"path_in_snapshot", d.path_in_snapshot},
                       {"snapshot_path", d.snapshot_path},
                       {"size_bytes", d.size_bytes},
                       {"checksum", d.checksum}});
    }
    vms.push_back({{"uuid", vm.uuid},
                   {"name", vm.name},
                   {"host", vm.host},
                   {"state_before", vm.state_before},
                   {"consistency_achieved", vm.consistency_achieved},
                   {"vm_snapshot", vm.vm_snapshot},
                   {"vm_snapshot_kind", vm.vm_snapshot_kind},
                   {"saved_xml", vm.saved_xml},
                   {"ok", vm.ok},
                   {"error", vm.error},
                   {"disks", std::move(disks)}});
  }
  json snapshots = json::array();
  for (const ManifestSnapshot& s : m.snapshots) {
    snapshots.push_back({{"snapshot_id", s.snapshot_id},
                         {"storage_volume", s.storage_volume},
                         {"volume_name", s.volume_name},
                         {"volume_root", s.volume_root},
                         {"plugin", s.plugin},
                         {"host", s.host},
                         {"path", s.path},
                         {"method", s.method},
                         {"created_at_ms", s.created_at_ms}});
  }
  return json{{"format", kFormatName},
              {"format_version", kManifestFormatVersion},
              {"backup_id", m.backup_id},
              {"name", m.name},
              {"requester", m.requester},
              {"policy", m.policy},
              {"consistency_requested", m.consistency_requested},
              {"fallback", m.fallback},
              {"started_at_ms", m.started_at_ms},
              {"finished_at_ms", m.finished_at_ms},
              {"state", m.state},
              {"vms", std::move(vms)},
              {"snapshots", std::move(snapshots)},
              {"graph", m.graph}};
}

absl::StatusOr<BackupManifest> ManifestFromJson(const json& value) {
  if (!value.is_object()) return Invalid("the document must be a JSON object");
  Reader r(value, "");
  // Format first: a newer writer may have renamed anything else.
  std::string format;
  STRATA_RETURN_IF_ERROR(r.String("format", format, true));
  if (format != kFormatName) {
    return Invalid(Cat("key 'format' is '", Printable(format), "', expected '", kFormatName, "'"));
  }
  int64_t version = 0;
  STRATA_RETURN_IF_ERROR(r.Int("format_version", version, true));
  if (version > kManifestFormatVersion) {
    return Invalid(Cat("format_version ", version, " is newer than this binary supports (",
                       kManifestFormatVersion, "); upgrade Strata"));
  }
  if (version < 1) return Invalid(Cat("format_version ", version, " is not valid"));

  BackupManifest m;
  STRATA_RETURN_IF_ERROR(r.String("backup_id", m.backup_id, true));
  STRATA_RETURN_IF_ERROR(r.String("name", m.name, true));
  STRATA_RETURN_IF_ERROR(r.String("requester", m.requester, false));
  STRATA_RETURN_IF_ERROR(r.String("policy", m.policy, false));
  STRATA_RETURN_IF_ERROR(r.String("consistency_requested", m.consistency_requested, true));
  STRATA_RETURN_IF_ERROR(r.String("fallback", m.fallback, false));
  STRATA_RETURN_IF_ERROR(r.Int("started_at_ms", m.started_at_ms, true));
  STRATA_RETURN_IF_ERROR(r.Int("finished_at_ms", m.finished_at_ms, true));
  STRATA_RETURN_IF_ERROR(r.String("state", m.state, true));
  if (m.backup_id.empty()) return Invalid("key 'backup_id' must not be empty");
  if (m.name.empty()) return Invalid("key 'name' must not be empty");

  absl::StatusOr<const json*> vms = r.Array("vms", true);
  if (!vms.ok()) return vms.status();
  for (size_t i = 0; i < (*vms)->size(); ++i) {
    ManifestVm vm;
    STRATA_RETURN_IF_ERROR(ReadVm((**vms)[i], Cat("vms[", i, "]"), vm));
    m.vms.push_back(std::move(vm));
  }
  absl::StatusOr<const json*> snapshots = r.Array("snapshots", true);
  if (!snapshots.ok()) return snapshots.status();
  for (size_t i = 0; i < (*snapshots)->size(); ++i) {
    ManifestSnapshot snap;
    STRATA_RETURN_IF_ERROR(ReadSnapshot((**snapshots)[i], Cat("snapshots[", i, "]"), snap));
    m.snapshots.push_back(std::move(snap));
  }
  absl::StatusOr<const json*> graph = r.Object("graph", false);
  if (!graph.ok()) return graph.status();
  if (*graph != nullptr) m.graph = **graph;
  return m;
}

absl::StatusOr<BackupManifest> ParseManifest(std::string_view text) {
  json value;
  try {
    value = json::parse(text.begin(), text.end());
  } catch (const json::parse_error& e) {
    return Invalid(Cat("not valid JSON: ", e.what()));
  }
  return ManifestFromJson(value);
}

// ---- files -------------------------------------------------------------------------------------

absl::Status WriteManifestFile(const std::string& path, const BackupManifest& manifest) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  const std::string text = ToJson(manifest).dump(2) + "\n";
  // Hidden and without the manifest suffix, so a search never picks up a half-written file.
  std::string tmp = (dir / Cat(".", target.filename().string(), ".tmp-XXXXXX")).string();
  const int fd = mkstemp(tmp.data());
  if (fd < 0) {
    return absl::InternalError(Cat("backup manifest '", path,
                                   "': cannot create a temporary file in '", dir.string(),
                                   "': ", ErrnoText(errno)));
  }
  auto fail = [&](std::string_view step, int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    return absl::InternalError(Cat("backup manifest '", path, "': ", step, ": ", ErrnoText(err)));
  };
  if (::fchmod(fd, 0644) != 0) return fail("setting its mode", errno);
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail("writing", errno);
    }
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd) != 0) return fail("syncing", errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(Cat("backup manifest '", path, "': closing: ", ErrnoText(err)));
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    return absl::InternalError(
        Cat("backup manifest '", path, "': renaming it into place: ", ErrnoText(err)));
  }
  // The rename is durable once the directory is.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) {
    return absl::InternalError(
        Cat("backup manifest '", path, "': opening its directory to sync: ", ErrnoText(errno)));
  }
  const int rc = ::fsync(dfd);
  const int err = errno;
  ::close(dfd);
  if (rc != 0) {
    return absl::InternalError(
        Cat("backup manifest '", path, "': syncing its directory: ", ErrnoText(err)));
  }
  return absl::OkStatus();
}

absl::StatusOr<BackupManifest> ReadManifestFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(
        Cat("backup manifest '", path, "': cannot open: ", ErrnoText(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) {
    return absl::InternalError(Cat("backup manifest '", path, "': cannot read"));
  }
  absl::StatusOr<BackupManifest> m = ParseManifest(text.str());
  if (!m.ok()) {
    // "backup manifest: ..." becomes "backup manifest '<path>': ...".
    std::string_view message = util::ToStd(m.status().message());
    message = util::StripPrefix(message, "backup manifest: ");
    return absl::Status(m.status().code(), Cat("backup manifest '", path, "': ", message));
  }
  return m;
}

// ---- search ------------------------------------------------------------------------------------

absl::StatusOr<std::vector<std::string>> FindManifestFiles(const std::vector<std::string>& roots) {
  return FindManifestFiles(roots, nullptr);
}

absl::StatusOr<std::vector<std::string>> FindManifestFiles(const std::vector<std::string>& roots,
                                                           std::vector<std::string>* unreadable) {
  namespace fs = std::filesystem;
  std::set<std::string> found;
  for (const std::string& root_text : roots) {
    if (root_text.empty()) return absl::InvalidArgumentError("storage root must not be empty");
    const fs::path root = fs::path(root_text).lexically_normal();
    std::error_code ec;
    const fs::file_status st = fs::status(root, ec);  // the root itself may be a symlink
    if (ec || !fs::exists(st)) {
      return absl::NotFoundError(Cat("storage root '", root_text,
                                     "': ", ec ? ec.message() : std::string("does not exist")));
    }
    if (!fs::is_directory(st)) {
      return absl::InvalidArgumentError(Cat("storage root '", root_text, "' is not a directory"));
    }
    std::vector<fs::path> pending{root};
    while (!pending.empty()) {
      const fs::path dir = std::move(pending.back());
      pending.pop_back();
      if (dir.filename() == kSnapshotDir) {
        CollectManifests(dir, found, unreadable);
        continue;
      }
      fs::directory_iterator it(dir, ec);
      if (ec) {
        if (unreadable != nullptr) {
          unreadable->push_back(Cat("cannot read directory '", dir.string(), "': ", ec.message()));
        }
        continue;
      }
      for (; it != fs::directory_iterator(); it.increment(ec)) {
        std::error_code type_ec;
        // symlink_status: a symlink to a directory is not followed.
        if (fs::is_directory(it->symlink_status(type_ec))) pending.push_back(it->path());
      }
      if (ec && unreadable != nullptr) {
        unreadable->push_back(Cat("cannot read directory '", dir.string(), "': ", ec.message()));
      }
    }
  }
  return std::vector<std::string>(found.begin(), found.end());
}

// ---- names -------------------------------------------------------------------------------------

absl::Status ValidateName(std::string_view what, std::string_view name) {
  auto invalid = [&](std::string_view why) {
    return absl::InvalidArgumentError(Cat("invalid ", what, " '", Printable(name), "': ", why));
  };
  if (name.empty()) return invalid("must not be empty");
  if (name.size() > kMaxNameLength) {
    return invalid(Cat("longer than ", kMaxNameLength, " characters (", name.size(), ")"));
  }
  if (name.front() == '.' || name.front() == '-') return invalid("must not start with '.' or '-'");
  for (char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '.' || c == '_' || c == '-';
    if (!ok) {
      return invalid(Cat("character '", Printable(std::string_view(&c, 1)),
                         "' is not allowed (letters, digits, '.', '_' and '-' are)"));
    }
  }
  return absl::OkStatus();
}

}  // namespace strata::backup
