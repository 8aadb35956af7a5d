#include "graph_proto.h"

#include <string>

namespace strata::rpc {

void GraphToProto(const core::Graph& graph, const core::Subgraph& subgraph, v1::Graph* out) {
  out->mutable_nodes()->Reserve(static_cast<int>(subgraph.nodes.size()));
  for (core::NodeIndex node : subgraph.nodes) {
    v1::GraphNode* message = out->add_nodes();
    message->set_id(std::string(graph.Id(node)));
    message->set_type(std::string(core::NodeTypeName(graph.Type(node))));
    message->set_name(std::string(graph.Name(node)));
    for (const auto& [key, value] : graph.Attrs(node)) {
      v1::Attribute* attr = message->add_attrs();
      attr->set_key(std::string(key));
      attr->set_value(std::string(value));
    }
  }
  out->mutable_edges()->Reserve(static_cast<int>(subgraph.edges.size()));
  for (const core::Subgraph::Edge& edge : subgraph.edges) {
    v1::GraphEdge* message = out->add_edges();
    message->set_from(std::string(graph.Id(edge.from)));
    message->set_to(std::string(graph.Id(edge.to)));
    message->set_type(std::string(core::EdgeTypeName(edge.type)));
  }
}

void GraphToProto(const core::Graph& graph, v1::Graph* out) {
  GraphToProto(graph, core::WholeGraph(graph), out);
}

absl::StatusOr<core::Graph> GraphFromProto(const v1::Graph& message) {
  core::Graph graph;
  for (const v1::GraphNode& node : message.nodes()) {
    absl::StatusOr<core::NodeType> type = core::ParseNodeType(node.type());
    if (!type.ok()) {
      return absl::InvalidArgumentError("graph message: node '" + node.id() +
                                        "' has unknown type '" + node.type() + "'");
    }
    core::Attributes attrs;
    attrs.reserve(node.attrs_size());
    for (const v1::Attribute& attr : node.attrs()) attrs.emplace_back(attr.key(), attr.value());
    absl::StatusOr<core::NodeIndex> added = graph.UpsertNode(*type, node.id(), node.name(), attrs);
    if (!added.ok()) {
      return absl::InvalidArgumentError("graph message: " + std::string(added.status().message()));
    }
  }
  for (const v1::GraphEdge& edge : message.edges()) {
    absl::StatusOr<core::EdgeType> type = core::ParseEdgeType(edge.type());
    if (!type.ok()) {
      return absl::InvalidArgumentError("graph message: edge from '" + edge.from() +
                                        "' has unknown type '" + edge.type() + "'");
    }
    std::optional<core::NodeIndex> from = graph.Find(edge.from());
    std::optional<core::NodeIndex> to = graph.Find(edge.to());
    if (!from.has_value() || !to.has_value()) {
      return absl::InvalidArgumentError("graph message: edge from '" + edge.from() +
                                        "' names unknown node '" +
                                        (from.has_value() ? edge.to() : edge.from()) + "'");
    }
    graph.AddEdge(*from, *to, *type);
  }
  return graph;
}

}  // namespace strata::rpc
