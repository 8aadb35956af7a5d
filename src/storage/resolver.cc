#include "strata/storage/resolver.h"

#include <sys/stat.h>
#include <sys/statfs.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <set>

#include "absl/status/status.h"
#include "mountinfo.h"
#include "str_util.h"
#include "strata/core/status_macros.h"
#include "sysfs.h"

namespace strata::storage {
namespace {

using core::Attributes;
using core::EdgeType;
using core::Graph;
using core::NodeIndex;
using core::NodeType;
using hypervisor::DiskSource;
using hypervisor::DiskSourceKind;

// A loop device's backing file may itself be on a loop device; this bounds that recursion.
constexpr int kMaxLoopDepth = 8;
// Partition -> disk and dm -> slave hops below one device (guards against cyclic trees).
constexpr int kMaxStackDepth = 32;

std::string StripFs(std::string_view fs_id) { return std::string(StripPrefix(fs_id, "fs:")); }

void AddUnresolved(Attributes& attrs, std::string reason) {
  attrs.emplace_back("resolved", "false");
  attrs.emplace_back("reason", std::move(reason));
}

std::string FileError(std::string_view path, const absl::Status& status) {
  if (absl::IsNotFound(status)) return Cat("file '", path, "' not found");
  if (absl::IsPermissionDenied(status)) {
    return Cat("file '", path, "' cannot be read: ", status.message());
  }
  return Cat("file '", path, "' cannot be resolved: ", status.message());
}

// Adds the comma-separated `values` to a list attribute, keeping it sorted and unique.
void MergeListAttr(Graph& graph, NodeIndex node, std::string_view key,
                   const std::vector<std::string>& values) {
  std::set<std::string> all;
  if (auto old = graph.Attr(node, key); old && !old->empty()) {
    for (std::string_view v : Split(*old, ',')) all.emplace(v);
  }
  for (const std::string& v : values) {
    if (!v.empty()) all.insert(v);
  }
  graph.SetAttribute(node, key, Join(all, ","));
}

std::string HostKey(const hypervisor::NetworkHost& host) {
  return host.name.empty() ? host.socket : host.name;
}

std::string SortedHosts(const std::vector<hypervisor::NetworkHost>& hosts) {
  std::set<std::string> names;
  for (const auto& h : hosts) {
    if (!HostKey(h).empty()) names.insert(HostKey(h));
  }
  return Join(names, ",");
}

bool IsKnownNetworkProtocol(std::string_view protocol) {
  static const std::set<std::string_view> kKnown = {"nbd",  "gluster", "http",     "https", "ftp",
                                                    "ftps", "tftp",    "sheepdog", "ssh",   "vxhs",
                                                    "nfs",  "rbd",     "iscsi"};
  return kKnown.contains(protocol);
}

}  // namespace

struct StorageResolver::Impl {
  struct FsNode {
    NodeIndex node = core::kNoNode;
    std::string id;
    NodeIndex volume = core::kNoNode;  // network file systems: the export's storage_volume
  };

  explicit Impl(ResolverOptions o) : opts(std::move(o)) {
    if (!opts.system.probe_fs) opts.system.probe_fs = ProbeWithBlkid;
    Reset();
  }

  void Reset() {
    sysfs = std::make_unique<SysfsReader>(opts.system);
    mounts.reset();
    probes.clear();
    locations.clear();
  }

  std::string MountInfoPath() const { return opts.system.proc_root + "/self/mountinfo"; }

  const absl::StatusOr<MountTable>& Mounts() {
    if (!mounts.has_value()) {
      absl::StatusOr<std::string> text = ReadSmallFile(MountInfoPath(), /*trim=*/false);
      if (!text.ok()) {
        mounts = absl::Status(
            text.status().code(),
            Cat("cannot read mount table '", MountInfoPath(), "': ", text.status().message()));
      } else if (auto entries = ParseMountInfo(*text); !entries.ok()) {
        mounts = absl::Status(entries.status().code(), Cat("mount table '", MountInfoPath(),
                                                           "': ", entries.status().message()));
      } else {
        mounts = MountTable(*std::move(entries));
      }
    }
    return *mounts;
  }

  const absl::StatusOr<FsProbe>& Probe(const std::string& kernel_name) {
    auto it = probes.find(kernel_name);
    if (it == probes.end()) {
      it = probes.emplace(kernel_name, opts.system.probe_fs(sysfs->DevNodeOf(kernel_name))).first;
    }
    return it->second;
  }

  absl::StatusOr<NodeIndex> UnresolvedFile(Graph& graph, const std::string& path,
                                           std::string reason) {
    Attributes attrs{{"path", path}};
    AddUnresolved(attrs, std::move(reason));
    return graph.UpsertNode(NodeType::kFile, Cat("file:", opts.host_id, ":", path), path, attrs);
  }

  absl::StatusOr<NodeIndex> File(Graph& graph, const std::string& path, int depth) {
    if (path.empty() || path[0] != '/') {
      return UnresolvedFile(graph, path, Cat("file path '", path, "' is not absolute"));
    }
    absl::StatusOr<std::string> canonical = ResolveLogicalPath(sysfs->fs_mapper(), path);
    if (!canonical.ok()) return UnresolvedFile(graph, path, FileError(path, canonical.status()));
    struct stat st;
    if (stat(sysfs->fs_mapper()(*canonical).c_str(), &st) != 0) {
      int err = errno;
      return UnresolvedFile(
          graph, path,
          FileError(path, absl::Status(absl::ErrnoToStatusCode(err), std::strerror(err))));
    }
    const absl::StatusOr<MountTable>& table = Mounts();
    if (!table.ok()) {
      return UnresolvedFile(graph, path, Cat("file '", path, "': ", table.status().message()));
    }
    const MountEntry* mount = table->FindMount(*canonical);
    if (mount == nullptr) {
      return UnresolvedFile(graph, path,
                            Cat("file '", path, "' is on no mount in ", MountInfoPath()));
    }
    STRATA_ASSIGN_OR_RETURN(FsNode fs, FsVolume(graph, *mount, depth));
    Attributes attrs{{"path", path},
                     {"size", Cat(st.st_size)},
                     {"allocated", Cat(static_cast<uint64_t>(st.st_blocks) * 512)}};
    if (*canonical != path) attrs.emplace_back("realpath", *canonical);
    std::string id = Cat("file:", StripFs(fs.id), ":", MountTable::PathInFs(*mount, *canonical));
    STRATA_ASSIGN_OR_RETURN(NodeIndex file, graph.UpsertNode(NodeType::kFile, id, path, attrs));
    STRATA_ASSIGN_OR_RETURN(
        NodeIndex mount_node,
        graph.UpsertNode(NodeType::kMountPoint,
                         Cat("mount:", opts.host_id, ":", mount->mount_point), mount->mount_point,
                         {{"path", mount->mount_point},
                          {"fstype", mount->fstype},
                          {"source", mount->source},
                          {"options", mount->options}}));
    graph.AddEdge(file, mount_node, EdgeType::kOnMount);
    graph.AddEdge(mount_node, fs.node, EdgeType::kMounts);
    STRATA_RETURN_IF_ERROR(PluginVolumes(
        graph, file, fs,
        plugin::FileLocation{*canonical, fs.id, MountTable::PathInFs(*mount, *canonical),
                             mount->mount_point}));
    return file;
  }

  // Asks every storage plug-in which of its volumes hold the file: file -in_volume-> volume
  // -on_device-> the file's fs_volume.
  absl::Status PluginVolumes(Graph& graph, NodeIndex file, const FsNode& fs,
                             const plugin::FileLocation& location) {
    for (plugin::StoragePlugin* storage : opts.storage_plugins) {
      for (const plugin::VolumeClaim& claim : storage->ClaimFile(location, locator)) {
        STRATA_ASSIGN_OR_RETURN(NodeIndex sv,
                                graph.UpsertNode(NodeType::kStorageVolume, claim.volume_id,
                                                 claim.volume_name, claim.attrs));
        graph.AddEdge(file, sv, EdgeType::kInVolume);
        graph.AddEdge(sv, fs.node, EdgeType::kOnDevice);
      }
    }
    return absl::OkStatus();
  }

  // Where a path is, for plug-ins: the fs id as FsVolume names it (computed in a scratch graph,
  // so that locating a volume's root adds nothing to the caller's graph).
  std::optional<plugin::FileLocation> Locate(const std::string& path) {
    if (auto it = locations.find(path); it != locations.end()) return it->second;
    // Placeholder first: locating a root on a loop device resolves the loop's backing file,
    // which asks the plug-ins again; the inner call then sees "not located" instead of recursing.
    locations.emplace(path, std::nullopt);
    std::optional<plugin::FileLocation> location = LocateUncached(path);
    locations[path] = location;
    return location;
  }

  std::optional<plugin::FileLocation> LocateUncached(const std::string& path) {
    absl::StatusOr<std::string> canonical = ResolveLogicalPath(sysfs->fs_mapper(), path);
    if (!canonical.ok()) return std::nullopt;
    struct stat st;
    if (stat(sysfs->fs_mapper()(*canonical).c_str(), &st) != 0) return std::nullopt;
    const absl::StatusOr<MountTable>& table = Mounts();
    if (!table.ok()) return std::nullopt;
    const MountEntry* mount = table->FindMount(*canonical);
    if (mount == nullptr) return std::nullopt;
    Graph scratch;
    absl::StatusOr<FsNode> fs = FsVolume(scratch, *mount, 0);
    if (!fs.ok()) return std::nullopt;
    return plugin::FileLocation{*canonical, fs->id, MountTable::PathInFs(*mount, *canonical),
                                mount->mount_point};
  }

  class Locator final : public plugin::PathLocator {
   public:
    explicit Locator(Impl* impl) : impl_(impl) {}
    std::optional<plugin::FileLocation> Locate(const std::string& path) override {
      return impl_->Locate(path);
    }

   private:
    Impl* impl_;
  };

  // nfs (server:/export), cifs (//server/share) and other network file systems: the fs_volume,
  // the export as a storage_volume and the server as a storage_system.
  absl::StatusOr<FsNode> NetworkFs(Graph& graph, const std::string& family,
                                   const std::string& source, Attributes attrs) {
    std::string server, export_path;
    if (family == "cifs") {
      std::string_view rest = StripPrefix(source, "//");
      size_t slash = rest.find('/');
      server = std::string(rest.substr(0, slash));
      export_path = slash == std::string_view::npos ? "/" : std::string(rest.substr(slash));
    } else {
      size_t colon = source.find(":/");
      if (colon == std::string::npos) colon = source.rfind(':');
      server = source.substr(0, colon);
      export_path = colon == std::string::npos ? "" : source.substr(colon + 1);
    }
    attrs.emplace_back("server", server);
    attrs.emplace_back("export", export_path);
    FsNode fs;
    fs.id = family == "cifs" ? Cat("fs:cifs:", source)
                             : Cat("fs:", family, ":", server, ":", export_path);
    if (server.empty()) {
      AddUnresolved(attrs, Cat(family, " source '", source, "' names no server"));
    }
    STRATA_ASSIGN_OR_RETURN(fs.node, graph.UpsertNode(NodeType::kFsVolume, fs.id, source, attrs));
    STRATA_ASSIGN_OR_RETURN(
        fs.volume, graph.UpsertNode(NodeType::kStorageVolume,
                                    Cat("sv:", family, ":", server, ":", export_path), source,
                                    {{"kind", "export"},
                                     {"protocol", family},
                                     {"server", server},
                                     {"export", export_path}}));
    graph.AddEdge(fs.node, fs.volume, EdgeType::kInVolume);
    if (!server.empty()) {
      STRATA_ASSIGN_OR_RETURN(
          NodeIndex system,
          graph.UpsertNode(NodeType::kStorageSystem, Cat("ss:", family, ":", server), server,
                           {{"protocol", family}, {"server", server}}));
      graph.AddEdge(fs.volume, system, EdgeType::kInSystem);
    }
    return fs;
  }

  absl::StatusOr<FsNode> FsVolume(Graph& graph, const MountEntry& mount, int depth) {
    const std::string& fstype = mount.fstype;
    Attributes attrs{{"fstype", fstype}, {"source", mount.source}};
    if (fstype == "nfs" || fstype == "nfs4") return NetworkFs(graph, "nfs", mount.source, attrs);
    if (fstype == "cifs" || fstype == "smb3" || fstype == "smbfs") {
      return NetworkFs(graph, "cifs", mount.source, attrs);
    }
    if (fstype == "ceph" || fstype == "glusterfs" || fstype == "fuse.glusterfs" ||
        fstype == "lustre") {
      return NetworkFs(graph, std::string(StripPrefix(fstype, "fuse.")), mount.source, attrs);
    }
    std::optional<absl::StatusOr<const BlockInfo*>> block;
    if (mount.major != 0) {
      block = sysfs->ByDevNum(mount.DevNum());
    } else if (StartsWith(mount.source, "/dev/")) {
      absl::StatusOr<std::string> devnum = sysfs->DevNumOf(mount.source);
      if (devnum.ok()) {
        block = sysfs->ByDevNum(*devnum);
      } else {
        block = devnum.status();
      }
    }
    FsNode fs;
    if (!block.has_value()) {  // tmpfs, overlay, proc, fuse...: only this host knows it
      fs.id = Cat("fs:", opts.host_id, ":", fstype, ":", mount.DevNum());
      STRATA_ASSIGN_OR_RETURN(fs.node,
                              graph.UpsertNode(NodeType::kFsVolume, fs.id, mount.source, attrs));
      return fs;
    }
    if (!block->ok()) {
      fs.id = Cat("fs:", opts.host_id, ":", fstype, ":", mount.DevNum());
      AddUnresolved(attrs, Cat("file system mounted at '", mount.mount_point,
                               "': ", block->status().message()));
      STRATA_ASSIGN_OR_RETURN(fs.node,
                              graph.UpsertNode(NodeType::kFsVolume, fs.id, mount.source, attrs));
      return fs;
    }
    const BlockInfo& info = ***block;
    STRATA_ASSIGN_OR_RETURN(NodeIndex device, BlockNode(graph, info, depth, 0));
    const absl::StatusOr<FsProbe>& probe = Probe(info.name);
    std::string name = mount.source;
    if (probe.ok() && !probe->uuid.empty()) {
      fs.id = Cat("fs:", probe->uuid);
      attrs.emplace_back("uuid", probe->uuid);
      attrs.emplace_back("label", probe->label);
      if (!probe->label.empty()) name = probe->label;
    } else {
      std::string probe_error =
          probe.ok() ? Cat("file system on '", sysfs->DevNodeOf(info.name), "' has no UUID")
                     : std::string(probe.status().message());
      // The superblock cannot be read (e.g. a sandbox denies opening the device), but the
      // kernel still reports the file system's id through statfs; for ext4, xfs and btrfs it is
      // derived from the UUID, so it names the file system itself, not this host's view of it.
      if (std::optional<std::string> fsid = StatfsId(mount.mount_point); fsid.has_value()) {
        fs.id = Cat("fs:fsid:", *fsid);
        attrs.emplace_back("fsid", *fsid);
        attrs.emplace_back("probe_error", probe_error);
      } else {
        fs.id = Cat("fs:", opts.host_id, ":", fstype, ":", info.devnum);
        AddUnresolved(attrs, probe_error);
      }
    }
    STRATA_ASSIGN_OR_RETURN(fs.node, graph.UpsertNode(NodeType::kFsVolume, fs.id, name, attrs));
    graph.AddEdge(fs.node, device, EdgeType::kOnDevice);
    if (fstype == "btrfs" && probe.ok() && !probe->uuid.empty()) {
      // A btrfs file system may span several devices; sysfs lists them all.
      std::error_code ec;
      std::string devices = Cat(opts.system.sys_root, "/fs/btrfs/", probe->uuid, "/devices");
      for (const auto& entry : std::filesystem::directory_iterator(devices, ec)) {
        absl::StatusOr<const BlockInfo*> other = sysfs->ByName(entry.path().filename().string());
        if (!other.ok() || (*other)->name == info.name) continue;
        STRATA_ASSIGN_OR_RETURN(NodeIndex other_node, BlockNode(graph, **other, depth, 0));
        graph.AddEdge(fs.node, other_node, EdgeType::kOnDevice);
      }
    }
    return fs;
  }

  // statfs(2) f_fsid of a mount point, as 16 hex digits; nullopt when unavailable or zero.
  // Only on the live system: under a recorded tree the kernel knows nothing of its mounts.
  std::optional<std::string> StatfsId(const std::string& mount_point) {
    if (!opts.system.fs_root.empty()) return std::nullopt;
    struct statfs info;
    if (statfs(sysfs->fs_mapper()(mount_point).c_str(), &info) != 0) return std::nullopt;
    uint32_t words[2];
    static_assert(sizeof(info.f_fsid) == sizeof(words));
    std::memcpy(words, &info.f_fsid, sizeof(words));
    if (words[0] == 0 && words[1] == 0) return std::nullopt;
    char hex[17];
    std::snprintf(hex, sizeof hex, "%08x%08x", words[0], words[1]);
    return std::string(hex);
  }

  absl::StatusOr<NodeIndex> UnresolvedBlock(Graph& graph, const std::string& key,
                                            std::string reason) {
    Attributes attrs{{"name", key}};
    AddUnresolved(attrs, std::move(reason));
    return graph.UpsertNode(NodeType::kBlockDevice, Cat("blk:", opts.host_id, ":", key), key,
                            attrs);
  }

  absl::StatusOr<NodeIndex> BlockByName(Graph& graph, const std::string& name,
                                        const std::string& role, int depth, int hops) {
    absl::StatusOr<const BlockInfo*> info = sysfs->ByName(name);
    if (!info.ok()) {
      return UnresolvedBlock(graph, name, Cat(info.status().message(), " (", role, ")"));
    }
    return BlockNode(graph, **info, depth, hops);
  }

  absl::StatusOr<NodeIndex> BlockNode(Graph& graph, const BlockInfo& info, int depth, int hops) {
    Attributes attrs{{"name", info.name},
                     {"major_minor", info.devnum},
                     {"size", Cat(info.size_bytes)},
                     {"kind", info.kind}};
    auto add = [&](const char* key, const std::string& value) {
      if (!value.empty()) attrs.emplace_back(key, value);
    };
    add("partition", info.partition_number);
    add("dm_name", info.dm_name);
    add("dm_uuid", info.dm_uuid);
    add("dm_target", info.dm_target);
    add("backing_file", info.loop_backing_file);
    add("transport", info.transport);
    add("vendor", info.vendor);
    add("model", info.model);
    add("serial", info.serial);
    add("wwid", info.wwid);
    add("hctl", info.hctl);
    add("iscsi_target", info.iscsi_target);
    add("nsid", info.nsid);
    add("subsysnqn", info.subsysnqn);
    if (info.kind == "loop" && !info.loop_bound) {
      AddUnresolved(attrs,
                    Cat("loop device '", sysfs->DevNodeOf(info.name), "' has no backing file"));
    }
    if (hops > kMaxStackDepth) {
      AddUnresolved(attrs, Cat("block device '", info.name, "' is more than ", kMaxStackDepth,
                               " devices deep; not followed"));
    }
    STRATA_ASSIGN_OR_RETURN(
        NodeIndex node,
        graph.UpsertNode(NodeType::kBlockDevice, Cat("blk:", opts.host_id, ":", info.name),
                         info.name, attrs));
    if (hops > kMaxStackDepth) return node;
    if (info.kind == "partition") {
      STRATA_ASSIGN_OR_RETURN(
          NodeIndex parent,
          BlockByName(graph, info.parent, Cat("disk of ", info.name), depth, hops + 1));
      graph.AddEdge(node, parent, EdgeType::kOnDevice);
    }
    const BlockInfo* first_slave = nullptr;
    for (const std::string& slave : info.slaves) {
      STRATA_ASSIGN_OR_RETURN(
          NodeIndex below, BlockByName(graph, slave, Cat("slave of ", info.name), depth, hops + 1));
      graph.AddEdge(node, below, EdgeType::kOnDevice);
      if (auto s = sysfs->ByName(slave); s.ok() && first_slave == nullptr && !(*s)->wwid.empty()) {
        first_slave = *s;
      }
    }
    if (info.kind == "loop" && info.loop_bound) {
      NodeIndex file;
      if (depth + 1 > kMaxLoopDepth) {
        STRATA_ASSIGN_OR_RETURN(
            file, UnresolvedFile(
                      graph, info.loop_backing_file,
                      Cat("file '", info.loop_backing_file,
                          "' not followed: loop devices nest more than ", kMaxLoopDepth, " deep")));
      } else {
        STRATA_ASSIGN_OR_RETURN(file, File(graph, info.loop_backing_file, depth + 1));
      }
      graph.AddEdge(node, file, EdgeType::kLoopFile);
    }
    if (info.kind == "disk") STRATA_RETURN_IF_ERROR(DiskStorage(graph, node, info));
    if (info.kind == "dm" && info.dm_target == "multipath") {
      BlockInfo details = first_slave != nullptr ? *first_slave : BlockInfo{};
      if (details.wwid.empty()) details.wwid = WwidFromMultipathUuid(info.dm_uuid);
      if (!details.wwid.empty()) STRATA_RETURN_IF_ERROR(LunChain(graph, node, details));
    }
    return node;
  }

  absl::Status DiskStorage(Graph& graph, NodeIndex node, const BlockInfo& info) {
    const std::string& t = info.transport;
    bool lun = t == "iscsi" || ((t == "scsi" || t == "fc" || t == "nvme") && !info.wwid.empty());
    if (lun) return LunChain(graph, node, info);
    STRATA_ASSIGN_OR_RETURN(
        NodeIndex volume,
        graph.UpsertNode(NodeType::kStorageVolume, Cat("sv:local:", opts.host_id, ":", info.name),
                         info.name, {{"kind", "local_disk"}, {"transport", t}}));
    STRATA_ASSIGN_OR_RETURN(
        NodeIndex system,
        graph.UpsertNode(NodeType::kStorageSystem, Cat("ss:local:", opts.host_id),
                         Cat("local disks of ", opts.host_id), {{"kind", "local"}}));
    graph.AddEdge(node, volume, EdgeType::kInVolume);
    graph.AddEdge(volume, system, EdgeType::kInSystem);
    return absl::OkStatus();
  }

  // block_device -> lun -> storage_volume -> storage_system, from the facts of one path.
  absl::Status LunChain(Graph& graph, NodeIndex node, const BlockInfo& info) {
    std::string key =
        info.wwid.empty() ? Cat("iscsi:", info.iscsi_target, ":", info.lun) : info.wwid;
    Attributes attrs;
    auto add = [&](const char* k, const std::string& v) {
      if (!v.empty()) attrs.emplace_back(k, v);
    };
    add("wwid", info.wwid);
    add("vendor", info.vendor);
    add("model", info.model);
    add("transport", info.transport);
    add("iscsi_target", info.iscsi_target);
    add("lun", info.lun);
    add("nsid", info.nsid);
    STRATA_ASSIGN_OR_RETURN(NodeIndex lun,
                            graph.UpsertNode(NodeType::kLun, Cat("lun:", key), key, attrs));
    std::string volume_id = info.wwid.empty() ? Cat("sv:", key) : Cat("sv:lun:", info.wwid);
    STRATA_ASSIGN_OR_RETURN(NodeIndex volume, graph.UpsertNode(NodeType::kStorageVolume, volume_id,
                                                               key, {{"kind", "lun"}}));
    graph.AddEdge(node, lun, EdgeType::kIsLun);
    graph.AddEdge(lun, volume, EdgeType::kInVolume);
    std::string system_id, system_name;
    Attributes system_attrs;
    if (info.transport == "iscsi" && !info.iscsi_target.empty()) {
      system_id = Cat("ss:iscsi:", info.iscsi_target);
      system_name = info.iscsi_target;
      system_attrs = {{"protocol", "iscsi"}, {"target", info.iscsi_target}};
    } else if (info.transport == "nvme" && !info.subsysnqn.empty()) {
      system_id = Cat("ss:nvme:", info.subsysnqn);
      system_name = info.subsysnqn;
      system_attrs = {{"protocol", "nvme"}, {"model", info.model}};
    } else if (!info.vendor.empty() || !info.model.empty()) {
      system_id = Cat("ss:scsi:", info.vendor, ":", info.model);
      system_name = Cat(info.vendor, " ", info.model);
      system_attrs = {{"protocol", "scsi"}, {"vendor", info.vendor}, {"model", info.model}};
    } else {
      graph.SetAttribute(volume, "resolved", "false");
      graph.SetAttribute(volume, "reason", Cat("storage system of LUN '", key, "' is unknown"));
      return absl::OkStatus();
    }
    STRATA_ASSIGN_OR_RETURN(NodeIndex system, graph.UpsertNode(NodeType::kStorageSystem, system_id,
                                                               system_name, system_attrs));
    if (!info.iscsi_portals.empty()) MergeListAttr(graph, system, "portals", info.iscsi_portals);
    graph.AddEdge(volume, system, EdgeType::kInSystem);
    return absl::OkStatus();
  }

  absl::StatusOr<NodeIndex> Block(Graph& graph, const std::string& path, int depth) {
    absl::StatusOr<std::string> devnum = sysfs->DevNumOf(path);
    if (!devnum.ok()) return UnresolvedBlock(graph, path, std::string(devnum.status().message()));
    absl::StatusOr<const BlockInfo*> info = sysfs->ByDevNum(*devnum);
    if (!info.ok()) {
      return UnresolvedBlock(graph, path,
                             Cat("block device '", path, "': ", info.status().message()));
    }
    return BlockNode(graph, **info, depth, 0);
  }

  absl::StatusOr<NodeIndex> Network(Graph& graph, const DiskSource& source) {
    std::string protocol = ToLower(source.protocol);
    std::string hosts = SortedHosts(source.hosts);
    if (protocol == "rbd") return Rbd(graph, source, hosts);
    if (protocol == "iscsi") return Iscsi(graph, source);
    if (protocol == "nfs") return NfsFile(graph, source);
    std::string host = hosts.empty() ? "" : hosts;
    Attributes attrs{{"protocol", protocol}, {"name", source.name}, {"hosts", hosts}};
    std::string volume_id =
        Cat("sv:", protocol.empty() ? "unknown" : protocol, ":", host, ":", source.name);
    if (!IsKnownNetworkProtocol(protocol)) {
      AddUnresolved(attrs, Cat("unknown network protocol '", source.protocol, "' for disk source '",
                               source.name, "'"));
      return graph.UpsertNode(NodeType::kStorageVolume, volume_id, source.name, attrs);
    }
    STRATA_ASSIGN_OR_RETURN(NodeIndex volume, graph.UpsertNode(NodeType::kStorageVolume, volume_id,
                                                               source.name, attrs));
    STRATA_ASSIGN_OR_RETURN(
        NodeIndex system,
        graph.UpsertNode(NodeType::kStorageSystem, Cat("ss:", protocol, ":", host),
                         Cat(protocol, " ", host), {{"protocol", protocol}}));
    graph.AddEdge(volume, system, EdgeType::kInSystem);
    return volume;
  }

  absl::StatusOr<NodeIndex> Rbd(Graph& graph, const DiskSource& source, const std::string& mons) {
    std::string_view name = source.name;
    std::string snapshot;
    if (size_t at = name.find('@'); at != std::string_view::npos) {
      snapshot = std::string(name.substr(at + 1));
      name = name.substr(0, at);
    }
    size_t slash = name.find('/');
    std::string pool = slash == std::string_view::npos ? "" : std::string(name.substr(0, slash));
    std::string image =
        slash == std::string_view::npos ? std::string(name) : std::string(name.substr(slash + 1));
    Attributes attrs{{"protocol", "rbd"}, {"pool", pool}, {"image", image}, {"monitors", mons}};
    if (!snapshot.empty()) attrs.emplace_back("snapshot", snapshot);
    if (pool.empty() || image.empty()) {
      AddUnresolved(attrs, Cat("rbd source name '", source.name, "' is not pool/image[@snapshot]"));
    } else if (mons.empty()) {
      AddUnresolved(attrs, Cat("rbd image '", name, "' names no monitor hosts"));
    }
    STRATA_ASSIGN_OR_RETURN(
        NodeIndex volume,
        graph.UpsertNode(NodeType::kStorageVolume, Cat("sv:rbd:", mons, "/", pool, "/", image),
                         name, attrs));
    if (mons.empty()) return volume;
    STRATA_ASSIGN_OR_RETURN(
        NodeIndex system,
        graph.UpsertNode(NodeType::kStorageSystem, Cat("ss:ceph:", mons), Cat("ceph ", mons),
                         {{"protocol", "rbd"}, {"monitors", mons}}));
    graph.AddEdge(volume, system, EdgeType::kInSystem);
    return volume;
  }

  absl::StatusOr<NodeIndex> Iscsi(Graph& graph, const DiskSource& source) {
    std::string iqn = source.name, lun_number = "0";
    if (size_t slash = source.name.rfind('/'); slash != std::string::npos) {
      iqn = source.name.substr(0, slash);
      lun_number = source.name.substr(slash + 1);
    }
    std::vector<std::string> portals;
    for (const auto& h : source.hosts) {
      if (!h.name.empty()) {
        portals.push_back(Cat(h.name, ":", h.port.empty() ? "3260" : h.port));
      }
    }
    Attributes attrs{{"protocol", "iscsi"}, {"iscsi_target", iqn}, {"lun", lun_number}};
    if (iqn.empty()) {
      AddUnresolved(attrs, Cat("iscsi source name '", source.name,
                               "' names no target (expected iqn.../lun)"));
    }
    std::string key = Cat("iscsi:", iqn, ":", lun_number);
    STRATA_ASSIGN_OR_RETURN(NodeIndex lun,
                            graph.UpsertNode(NodeType::kLun, Cat("lun:", key), key, attrs));
    STRATA_ASSIGN_OR_RETURN(NodeIndex volume,
                            graph.UpsertNode(NodeType::kStorageVolume, Cat("sv:", key), key,
                                             {{"kind", "lun"}, {"protocol", "iscsi"}}));
    graph.AddEdge(lun, volume, EdgeType::kInVolume);
    if (iqn.empty()) return lun;
    STRATA_ASSIGN_OR_RETURN(NodeIndex system,
                            graph.UpsertNode(NodeType::kStorageSystem, Cat("ss:iscsi:", iqn), iqn,
                                             {{"protocol", "iscsi"}, {"target", iqn}}));
    MergeListAttr(graph, system, "portals", portals);
    graph.AddEdge(volume, system, EdgeType::kInSystem);
    return lun;
  }

  // libvirt's <source protocol='nfs' name='/export/dir/image'>: qemu talks NFS itself (no
  // mount). The export is taken from a local NFS mount of the same server when one covers the
  // path, so the file gets the same id as through that mount; otherwise the image's directory.
  absl::StatusOr<NodeIndex> NfsFile(Graph& graph, const DiskSource& source) {
    std::string server = source.hosts.empty() ? "" : HostKey(source.hosts.front());
    std::string path = StartsWith(source.name, "/") ? source.name : "/" + source.name;
    std::string export_path;
    if (const absl::StatusOr<MountTable>& table = Mounts(); table.ok()) {
      for (const MountEntry& m : table->entries()) {
        if (m.fstype != "nfs" && m.fstype != "nfs4") continue;
        size_t colon = m.source.find(":/");
        if (colon == std::string::npos || m.source.substr(0, colon) != server) continue;
        std::string exp = m.source.substr(colon + 1);
        while (exp.size() > 1 && exp.back() == '/') exp.pop_back();
        if (IsPathPrefix(exp, path) && exp.size() > export_path.size()) export_path = exp;
      }
    }
    if (export_path.empty()) {
      size_t slash = path.rfind('/');
      export_path = slash == 0 ? "/" : path.substr(0, slash);
    }
    STRATA_ASSIGN_OR_RETURN(FsNode fs, NetworkFs(graph, "nfs", Cat(server, ":", export_path),
                                                 {{"source", Cat(server, ":", export_path)}}));
    std::string relative = export_path == "/" ? path : path.substr(export_path.size());
    Attributes attrs{{"path", path}, {"protocol", "nfs"}, {"server", server}};
    if (server.empty()) AddUnresolved(attrs, Cat("nfs source '", path, "' names no host"));
    STRATA_ASSIGN_OR_RETURN(
        NodeIndex file,
        graph.UpsertNode(NodeType::kFile, Cat("file:", StripFs(fs.id), ":", relative),
                         Cat("nfs://", server, path), attrs));
    graph.AddEdge(file, fs.volume, EdgeType::kInVolume);
    return file;
  }

  ResolverOptions opts;
  std::unique_ptr<SysfsReader> sysfs;
  std::optional<absl::StatusOr<MountTable>> mounts;
  std::map<std::string, absl::StatusOr<FsProbe>> probes;
  std::map<std::string, std::optional<plugin::FileLocation>> locations;
  Locator locator{this};
};

StorageResolver::StorageResolver(ResolverOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
StorageResolver::~StorageResolver() = default;

void StorageResolver::Refresh() { impl_->Reset(); }

std::optional<plugin::FileLocation> StorageResolver::Locate(const std::string& path) {
  return impl_->Locate(path);
}

absl::StatusOr<core::NodeIndex> StorageResolver::ResolveFile(core::Graph& graph,
                                                             const std::string& path) {
  return impl_->File(graph, path, 0);
}

absl::StatusOr<core::NodeIndex> StorageResolver::ResolveBlockDevice(core::Graph& graph,
                                                                    const std::string& path) {
  return impl_->Block(graph, path, 0);
}

absl::StatusOr<core::NodeIndex> StorageResolver::ResolveNetwork(
    core::Graph& graph, const hypervisor::DiskSource& source) {
  return impl_->Network(graph, source);
}

absl::StatusOr<core::NodeIndex> StorageResolver::ResolveSource(
    core::Graph& graph, const hypervisor::DiskSource& source) {
  switch (source.kind) {
    case DiskSourceKind::kFile:
    case DiskSourceKind::kDir:
      return ResolveFile(graph, source.path);
    case DiskSourceKind::kBlock:
      return ResolveBlockDevice(graph, source.path);
    case DiskSourceKind::kNetwork:
      return ResolveNetwork(graph, source);
    case DiskSourceKind::kVolume: {
      if (source.path.empty()) {
        Attributes attrs{{"pool", source.pool}, {"volume", source.volume}};
        AddUnresolved(attrs, Cat("volume '", source.volume, "' of pool '", source.pool,
                                 "' has no path (the storage plug-in did not resolve it)"));
        return graph.UpsertNode(
            NodeType::kStorageVolume,
            Cat("sv:pool:", impl_->opts.host_id, ":", source.pool, "/", source.volume),
            source.volume, attrs);
      }
      struct stat st;
      std::string physical = impl_->sysfs->fs_mapper()(source.path);
      bool is_block = StartsWith(source.path, "/dev/") ||
                      (stat(physical.c_str(), &st) == 0 && S_ISBLK(st.st_mode));
      return is_block ? ResolveBlockDevice(graph, source.path) : ResolveFile(graph, source.path);
    }
    case DiskSourceKind::kNone:
      break;
  }
  return absl::InvalidArgumentError("disk source of kind 'none' has nothing to resolve");
}

}  // namespace strata::storage
