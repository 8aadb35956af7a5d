#include "strata/agent/discovery.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "strata/core/status_macros.h"

namespace strata::agent {
namespace {

using core::EdgeType;
using core::Graph;
using core::NodeIndex;
using core::NodeType;
using hypervisor::Disk;
using hypervisor::DiskDevice;
using hypervisor::DiskSource;
using hypervisor::DiskSourceKind;
using hypervisor::Domain;

// 64-bit FNV-1a: a cheap, stable digest of the saved configuration, so that a change of the
// domain XML is visible in the graph without storing the XML in every node.
std::string ConfigDigest(std::string_view xml) {
  uint64_t hash = 1469598103934665603ULL;
  for (unsigned char c : xml) {
    hash ^= c;
    hash *= 1099511628211ULL;
  }
  char buffer[17];
  snprintf(buffer, sizeof buffer, "%016llx", static_cast<unsigned long long>(hash));
  return buffer;
}

std::string_view BoolText(bool value) { return value ? "true" : "false"; }

// Resolves one image of a disk chain; a source without anything to resolve returns kNoNode.
absl::StatusOr<NodeIndex> ResolveImage(storage::StorageResolver& resolver, Graph& graph,
                                       const DiskSource& source) {
  if (source.kind == DiskSourceKind::kNone) return core::kNoNode;
  return resolver.ResolveSource(graph, source);
}

absl::Status AddDisk(storage::StorageResolver& resolver, Graph& graph, NodeIndex vm_node,
                     const Domain& domain, const Disk& disk) {
  const bool passthrough = disk.device == DiskDevice::kLun;
  core::Attributes attrs = {
      {"target", disk.target},
      {"device", std::string(hypervisor::DiskDeviceName(disk.device))},
      {"bus", disk.bus},
      {"source_kind", std::string(hypervisor::DiskSourceKindName(disk.source.kind))},
  };
  if (!disk.source.format.empty()) attrs.emplace_back("format", disk.source.format);
  if (disk.readonly) attrs.emplace_back("readonly", "true");
  if (disk.shareable) attrs.emplace_back("shareable", "true");
  if (!disk.serial.empty()) attrs.emplace_back("serial", disk.serial);
  if (disk.source.kind == DiskSourceKind::kNone) {
    attrs.emplace_back("source", "none");
  } else if (!disk.source.path.empty()) {
    attrs.emplace_back("source", disk.source.path);
  } else if (!disk.source.name.empty()) {
    attrs.emplace_back("source", absl::StrCat(disk.source.protocol, ":", disk.source.name));
  }
  if (!disk.source.resolve_error.empty()) {
    attrs.emplace_back("resolved", "false");
    attrs.emplace_back("reason", disk.source.resolve_error);
  }
  STRATA_ASSIGN_OR_RETURN(
      NodeIndex disk_node,
      graph.UpsertNode(passthrough ? NodeType::kPassthroughDisk : NodeType::kVirtualDisk,
                       absl::StrCat("disk:", domain.uuid, ":", disk.target), disk.target, attrs));
  graph.AddEdge(vm_node, disk_node, EdgeType::kHasDisk);

  // The image chain: disk -> top image -> its backing image -> ... Each image is resolved down
  // to its storage on its own, since a backing file may live on other storage than the top.
  NodeIndex upper = disk_node;
  STRATA_ASSIGN_OR_RETURN(NodeIndex top, ResolveImage(resolver, graph, disk.source));
  if (top == core::kNoNode) return absl::OkStatus();
  graph.AddEdge(upper, top, EdgeType::kBackedBy);
  upper = top;
  for (const DiskSource& backing : disk.backing_chain) {
    STRATA_ASSIGN_OR_RETURN(NodeIndex image, ResolveImage(resolver, graph, backing));
    if (image == core::kNoNode) break;
    if (!backing.format.empty()) graph.SetAttribute(image, "format", backing.format);
    graph.AddEdge(upper, image, EdgeType::kBackedBy);
    upper = image;
  }
  return absl::OkStatus();
}

}  // namespace

std::string HostNodeId(std::string_view host_id) {
  return absl::StrCat("host:", std::string(host_id));
}
std::string VmNodeId(std::string_view uuid) { return absl::StrCat("vm:", std::string(uuid)); }

absl::StatusOr<Graph> DiscoverHost(hypervisor::Hypervisor& hypervisor,
                                   storage::StorageResolver& resolver,
                                   const DiscoveryRequest& request) {
  STRATA_ASSIGN_OR_RETURN(hypervisor::HostInfo host_info, hypervisor.GetHostInfo());
  hypervisor::ListOptions list_options;
  list_options.only = request.vms;
  STRATA_ASSIGN_OR_RETURN(std::vector<Domain> domains, hypervisor.ListDomains(list_options));

  resolver.Refresh();
  Graph graph;
  STRATA_ASSIGN_OR_RETURN(
      NodeIndex host_node,
      graph.UpsertNode(NodeType::kHost, HostNodeId(request.host_id), request.host_id,
                       {{"hostname", host_info.hostname},
                        {"uri", host_info.uri},
                        {"hypervisor", host_info.hypervisor_type},
                        {"version", host_info.version}}));
  for (const Domain& domain : domains) {
    core::Attributes vm_attrs = {
        {"uuid", domain.uuid},
        {"state", std::string(hypervisor::DomainStateName(domain.state))},
        {"persistent", std::string(BoolText(domain.persistent))},
        {"host", request.host_id},
    };
    if (!domain.parse_error.empty()) {
      vm_attrs.emplace_back("resolved", "false");
      vm_attrs.emplace_back("reason", domain.parse_error);
    }
    STRATA_ASSIGN_OR_RETURN(
        NodeIndex vm_node,
        graph.UpsertNode(NodeType::kVm, VmNodeId(domain.uuid), domain.name, vm_attrs));
    graph.AddEdge(host_node, vm_node, EdgeType::kRuns);

    STRATA_ASSIGN_OR_RETURN(
        NodeIndex config_node,
        graph.UpsertNode(NodeType::kVmConfig, absl::StrCat("vm_config:", domain.uuid),
                         absl::StrCat(domain.name, " config"),
                         {{"digest", ConfigDigest(domain.xml)},
                          {"bytes", std::to_string(domain.xml.size())},
                          {"hypervisor_type", domain.hypervisor_type},
                          {"memory_kib", std::to_string(domain.memory_kib)},
                          {"vcpus", std::to_string(domain.vcpus)}}));
    graph.AddEdge(vm_node, config_node, EdgeType::kHasConfig);

    for (const Disk& disk : domain.disks) {
      STRATA_RETURN_IF_ERROR(AddDisk(resolver, graph, vm_node, domain, disk));
    }
  }
  return graph;
}

}  // namespace strata::agent
