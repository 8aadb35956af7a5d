// Conversions between the resource graph and its protobuf form (strata.v1.Graph).
#pragma once

#include "absl/status/statusor.h"
#include "strata/core/graph.h"
#include "strata/core/query.h"
#include "strata/v1/common.pb.h"

namespace strata::rpc {

// The nodes and edges of `subgraph` (or the whole graph) as a message.
void GraphToProto(const core::Graph& graph, const core::Subgraph& subgraph, v1::Graph* out);
void GraphToProto(const core::Graph& graph, v1::Graph* out);
// Back into a Graph. Errors name the bad node or edge: "graph message: node 'x' has unknown
// type 'vmm'", "graph message: edge from 'a' names unknown node 'b'".
absl::StatusOr<core::Graph> GraphFromProto(const v1::Graph& message);

}  // namespace strata::rpc
