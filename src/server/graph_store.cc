#include "strata/server/graph_store.h"

#include <mutex>

#include "nlohmann/json.hpp"
#include "strata/core/query.h"
#include "strata/util/strings.h"

namespace strata::server {
namespace {

using core::EdgeType;
using core::Graph;
using core::kNoNode;
using core::NodeIndex;

// Slot-indexed tables over a graph's node indices.
size_t SlotCount(const std::vector<NodeIndex>& nodes) {
  size_t count = 0;
  for (NodeIndex n : nodes) count = std::max<size_t>(count, size_t{n} + 1);
  return count;
}

bool HasEdge(const Graph& g, NodeIndex from, NodeIndex to, EdgeType type) {
  for (const core::EdgeRef& e : g.OutEdges(from)) {
    if (e.node == to && e.type == type) return true;
  }
  return false;
}

// Whether node `o` of `old_graph` has an attribute key that node `n` of `new_graph` lacks.
bool LosesAttribute(const Graph& old_graph, NodeIndex o, const Graph& new_graph, NodeIndex n) {
  for (const auto& [key, value] : old_graph.Attrs(o)) {
    if (!new_graph.Attr(n, key)) return true;
  }
  return false;
}

}  // namespace

GraphStore::GraphStore() = default;
GraphStore::~GraphStore() = default;

absl::Status GraphStore::ReplaceHost(const std::string& host, Graph graph) {
  auto owned = std::make_unique<Graph>(std::move(graph));
  std::unique_lock lock(mu_);
  return ReplaceLocked(host, std::move(owned));
}

bool GraphStore::RemoveHost(const std::string& host) {
  std::unique_lock lock(mu_);
  if (!hosts_.contains(host)) return false;
  // Replacing by an empty graph cannot conflict.
  (void)ReplaceLocked(host, std::make_unique<Graph>());
  hosts_.erase(host);
  return true;
}

absl::Status GraphStore::ReplaceLocked(const std::string& host, std::unique_ptr<Graph> fresh) {
  static const Graph kEmpty;
  auto found = hosts_.find(host);
  const Graph& old_graph = found == hosts_.end() ? kEmpty : *found->second;
  const Graph& new_graph = *fresh;

  const std::vector<NodeIndex> old_nodes = old_graph.AllNodes();
  const std::vector<NodeIndex> new_nodes = new_graph.AllNodes();
  // A node is "kept" when the old and the new graph of this host both hold it with the same type
  // (and it need not be re-created to shed a lost attribute). Kept nodes and the edges between
  // them that both graphs hold change no reference count.
  std::vector<NodeIndex> old_to_new(SlotCount(old_nodes), kNoNode);
  std::vector<NodeIndex> new_to_old(SlotCount(new_nodes), kNoNode);
  for (NodeIndex n : new_nodes) {
    const std::string_view id = new_graph.Id(n);
    std::optional<NodeIndex> o = old_graph.Find(id);
    std::optional<NodeIndex> m = merged_.Find(id);
    if (o && old_graph.Type(*o) == new_graph.Type(n)) {
      const bool exclusive = m && *m < node_refs_.size() && node_refs_[*m] == 1;
      if (!(exclusive && LosesAttribute(old_graph, *o, new_graph, n))) {
        old_to_new[*o] = n;
        new_to_old[n] = *o;
        continue;
      }
    }
    // Not kept: it will be (re)added, so its type must agree with the merged graph unless the
    // merged node is this host's alone and goes away first.
    if (m && merged_.Type(*m) != new_graph.Type(n)) {
      const bool goes_away = o && old_graph.Type(*o) == merged_.Type(*m) &&
                             *m < node_refs_.size() && node_refs_[*m] == 1;
      if (!goes_away) {
        return absl::InvalidArgumentError(
            util::Cat("graph of host '", host, "': node '", id, "' has type '",
                      core::NodeTypeName(new_graph.Type(n)), "' but type '",
                      core::NodeTypeName(merged_.Type(*m)), "' in the merged graph"));
      }
    }
  }

  // 1. Edges of the old graph that the new one lacks.
  std::vector<NodeIndex> old_to_merged(old_to_new.size(), kNoNode);
  for (NodeIndex o : old_nodes) old_to_merged[o] = merged_.Find(old_graph.Id(o)).value_or(kNoNode);
  for (NodeIndex o : old_nodes) {
    for (const core::EdgeRef& e : old_graph.OutEdges(o)) {
      const NodeIndex nf = old_to_new[o];
      const NodeIndex nt = old_to_new[e.node];
      if (nf != kNoNode && nt != kNoNode && HasEdge(new_graph, nf, nt, e.type)) continue;
      DecEdge(EdgeKey{old_to_merged[o], old_to_merged[e.node], e.type});
    }
  }
  // 2. Nodes of the old graph that are not kept.
  for (NodeIndex o : old_nodes) {
    if (old_to_new[o] == kNoNode && old_to_merged[o] != kNoNode) DecNode(old_to_merged[o]);
  }
  // 3. Nodes of the new graph: upsert (names and attributes may have changed), count new ones.
  std::vector<NodeIndex> new_to_merged(new_to_old.size(), kNoNode);
  for (NodeIndex n : new_nodes) {
    core::Attributes attrs;
    for (const auto& [key, value] : new_graph.Attrs(n)) attrs.emplace_back(key, value);
    absl::StatusOr<NodeIndex> m =
        merged_.UpsertNode(new_graph.Type(n), new_graph.Id(n), new_graph.Name(n), attrs);
    if (!m.ok()) return m.status();  // unreachable: types were checked above
    new_to_merged[n] = *m;
    if (new_to_old[n] == kNoNode) {
      if (*m >= node_refs_.size()) node_refs_.resize(size_t{*m} + 1, 0);
      ++node_refs_[*m];
    }
  }
  // 4. Edges of the new graph that the old one lacks.
  for (NodeIndex n : new_nodes) {
    for (const core::EdgeRef& e : new_graph.OutEdges(n)) {
      const NodeIndex of = new_to_old[n];
      const NodeIndex ot = new_to_old[e.node];
      if (of != kNoNode && ot != kNoNode && HasEdge(old_graph, of, ot, e.type)) continue;
      const EdgeKey key{new_to_merged[n], new_to_merged[e.node], e.type};
      merged_.AddEdge(key.from, key.to, key.type);
      ++edge_refs_[key];
    }
  }
  if (found == hosts_.end()) {
    hosts_.emplace(host, std::move(fresh));
  } else {
    found->second = std::move(fresh);
  }
  return absl::OkStatus();
}

void GraphStore::DecNode(NodeIndex n) {
  if (n >= node_refs_.size() || node_refs_[n] == 0) return;
  if (--node_refs_[n] > 0) return;
  // Every edge touching it was contributed only by hosts holding it, so none should be left;
  // drop any reference count anyway so that a reused slot starts clean.
  for (const core::EdgeRef& e : merged_.OutEdges(n)) edge_refs_.erase(EdgeKey{n, e.node, e.type});
  for (const core::EdgeRef& e : merged_.InEdges(n)) edge_refs_.erase(EdgeKey{e.node, n, e.type});
  merged_.RemoveNode(n);
}

void GraphStore::DecEdge(const EdgeKey& key) {
  auto it = edge_refs_.find(key);
  if (it != edge_refs_.end() && --it->second > 0) return;
  if (it != edge_refs_.end()) edge_refs_.erase(it);
  merged_.RemoveEdge(key.from, key.to, key.type);
}

std::vector<absl::Status> GraphStore::LoadFromCatalog(Catalog& catalog) {
  std::vector<absl::Status> errors;
  absl::StatusOr<std::vector<HostGraphRecord>> records = catalog.ListHostGraphs();
  if (!records.ok()) {
    errors.push_back(records.status());
    return errors;
  }
  for (const HostGraphRecord& record : *records) {
    nlohmann::json json = nlohmann::json::parse(record.graph_json, nullptr, false);
    if (json.is_discarded()) {
      errors.push_back(absl::DataLossError(
          util::Cat("stored graph of host '", record.host_id, "' is not valid JSON")));
      continue;
    }
    absl::StatusOr<Graph> graph = core::GraphFromJson(json);
    if (!graph.ok()) {
      errors.push_back(absl::DataLossError(
          util::Cat("stored graph of host '", record.host_id, "': ", graph.status().message())));
      continue;
    }
    if (absl::Status status = ReplaceHost(record.host_id, *std::move(graph)); !status.ok()) {
      errors.push_back(status);
    }
  }
  return errors;
}

GraphStats GraphStore::Stats() const {
  std::shared_lock lock(mu_);
  return GraphStats{merged_.node_count(), merged_.edge_count(), hosts_.size(),
                    merged_.MemoryBytes()};
}

int GraphStore::Contributors(std::string_view node_id) const {
  std::shared_lock lock(mu_);
  std::optional<NodeIndex> n = merged_.Find(node_id);
  if (!n || *n >= node_refs_.size()) return 0;
  return static_cast<int>(node_refs_[*n]);
}

}  // namespace strata::server
