// Queries over the resource graph: select nodes by type and attributes (exact or glob), then
// optionally traverse downward (what they rest on) or upward (what rests on them), to a target
// type, within a depth limit. The answer is a subgraph that prints as an indented tree or JSON.
//
// Pure functions over a const Graph; safe to run concurrently with other readers.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"
#include "strata/core/graph.h"

namespace strata::core {

// One attribute condition. `pattern` is a glob (`*`, `?`, `[...]`) when it has a glob
// metacharacter, otherwise it matches exactly. The pseudo keys "id" and "name" match the node's
// id and name.
struct AttrMatch {
  std::string key;
  std::string pattern;
};

struct Selector {
  std::optional<NodeType> type;
  std::vector<AttrMatch> matches;  // all must hold
};

enum class Direction { kNone, kDown, kUp };

struct Query {
  Selector select;
  Direction direction = Direction::kNone;
  // With a direction: keep only paths that reach nodes of this type (and the nodes on them).
  // Without it, every node reached is kept.
  std::optional<NodeType> to_type;
  int max_depth = -1;  // -1: unlimited
};

// Parses the compact text form used by the CLI and REST API:
//   "type=vm name=web* attr.state=running"  (space- or comma-separated key=value terms)
// Keys: type, name, id, or any attribute key (optionally prefixed "attr.").
absl::StatusOr<Selector> ParseSelector(std::string_view text);

// Result: the selected roots plus every node and edge the traversal kept.
struct Subgraph {
  std::vector<NodeIndex> roots;
  std::vector<NodeIndex> nodes;  // includes roots; no duplicates
  struct Edge {
    NodeIndex from;
    NodeIndex to;
    EdgeType type;
  };
  std::vector<Edge> edges;
};

// Just the selection (no traversal).
std::vector<NodeIndex> Select(const Graph& graph, const Selector& selector);

absl::StatusOr<Subgraph> RunQuery(const Graph& graph, const Query& query);

// Whole graph as a subgraph (roots: nodes without in-edges).
Subgraph WholeGraph(const Graph& graph);

// {"nodes":[{"id","type","name","attrs":{...}}],"edges":[{"from","to","type"}]}
nlohmann::json ToJson(const Graph& graph, const Subgraph& subgraph);
// Builds a Graph back from that JSON (used by clients and the server). Errors name the bad field.
absl::StatusOr<Graph> GraphFromJson(const nlohmann::json& json);

// Indented tree from each root, following the subgraph's edges in their direction (downward for
// downward queries, upward for upward ones). A node reached twice is printed once in full and
// then as "<type> <name> (see above)"; a node without a name shows its id. Attributes are printed
// in insertion order, the brackets omitted when there are none. Lines look like:
//   vm web01 [state=running]
//     virtual_disk vda
//       file /srv/a/web01.qcow2
std::string ToTree(const Graph& graph, const Subgraph& subgraph, Direction direction);

// Glob matching as in fnmatch(3) without flags; exposed for tests and other modules.
bool GlobMatch(std::string_view pattern, std::string_view text);

}  // namespace strata::core
