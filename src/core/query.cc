#include "strata/core/query.h"

#include <algorithm>
#include <cctype>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "str_util.h"

namespace strata::core {
namespace {

using internal::Append;
using internal::Cat;
constexpr std::string_view kSeparators = " ,\t\r\n";

constexpr size_t kNpos = std::string_view::npos;
constexpr size_t kInvalid = kNpos - 1;  // MatchBracket: malformed class name, nothing matches

bool ClassMatch(std::string_view cls, unsigned char c, bool& valid) {
  valid = true;
  if (cls == "alpha") return std::isalpha(c);
  if (cls == "digit") return std::isdigit(c);
  if (cls == "alnum") return std::isalnum(c);
  if (cls == "upper") return std::isupper(c);
  if (cls == "lower") return std::islower(c);
  if (cls == "space") return std::isspace(c);
  if (cls == "blank") return c == ' ' || c == '\t';
  if (cls == "punct") return std::ispunct(c);
  if (cls == "print") return std::isprint(c);
  if (cls == "graph") return std::isgraph(c);
  if (cls == "cntrl") return std::iscntrl(c);
  if (cls == "xdigit") return std::isxdigit(c);
  valid = false;
  return false;
}

// Matches `c` against the bracket expression that starts at p[i] == '['. Returns the index just
// past its closing ']', kNpos when the expression is unterminated (then '[' is an ordinary
// character), or kInvalid for an unknown character class.
size_t MatchBracket(std::string_view p, size_t i, unsigned char c, bool& matched) {
  size_t j = i + 1;
  bool negate = false;
  if (j < p.size() && (p[j] == '!' || p[j] == '^')) {
    negate = true;
    ++j;
  }
  bool found = false;
  bool first = true;
  while (true) {
    if (j >= p.size()) return kNpos;
    unsigned char lo = static_cast<unsigned char>(p[j]);
    if (lo == ']' && !first) {
      ++j;
      break;
    }
    first = false;
    if (lo == '[' && j + 1 < p.size() && p[j + 1] == ':') {
      const size_t end = p.find(":]", j + 2);
      if (end != kNpos) {
        bool valid;
        if (ClassMatch(p.substr(j + 2, end - j - 2), c, valid)) found = true;
        if (!valid) return kInvalid;
        j = end + 2;
        continue;
      }
    }
    // Collating symbol [.x.] or equivalence class [=x=]: in the C locale, one character. As in
    // glibc, a malformed [. spoils the pattern while a malformed [= is an ordinary '['.
    const bool collating = lo == '[' && j + 1 < p.size() && p[j + 1] == '.';
    const bool equivalence = lo == '[' && j + 3 < p.size() && p[j + 1] == '=' && p[j + 3] == '=' &&
                             j + 4 < p.size() && p[j + 4] == ']';
    if (collating && !(j + 4 < p.size() && p[j + 3] == '.' && p[j + 4] == ']')) return kInvalid;
    if (collating || equivalence) {
      lo = static_cast<unsigned char>(p[j + 2]);
      j += 5;
    } else {
      if (lo == '\\' && j + 1 < p.size()) lo = static_cast<unsigned char>(p[++j]);
      ++j;
    }
    unsigned char hi = lo;
    if (j + 1 == p.size() && p[j] == '-') return kInvalid;  // a range cut off by the end
    if (j + 1 < p.size() && p[j] == '-' && p[j + 1] != ']') {
      j += 1;
      if (p[j] == '\\' && j + 1 < p.size()) ++j;
      hi = static_cast<unsigned char>(p[j]);
      ++j;
    }
    if (lo <= c && c <= hi) found = true;
  }
  matched = found != negate;
  return j;
}

bool HasGlobMeta(std::string_view pattern) {
  return pattern.find_first_of("*?[") != std::string_view::npos;
}

// The part of a glob before its first special character: every match starts with it.
std::string_view LiteralPrefix(std::string_view pattern) {
  return pattern.substr(0, std::min(pattern.find_first_of("*?[\\"), pattern.size()));
}

struct CompiledMatch {
  enum Kind { kId, kName, kAttr } kind;
  std::string_view key;
  std::string_view pattern;
  bool glob;

  bool Test(std::string_view value) const {
    return glob ? GlobMatch(pattern, value) : value == pattern;
  }
};

bool Matches(const Graph& graph, NodeIndex n, const std::optional<NodeType>& type,
             const std::vector<CompiledMatch>& matches) {
  if (type && graph.Type(n) != *type) return false;
  for (const CompiledMatch& m : matches) {
    switch (m.kind) {
      case CompiledMatch::kId:
        if (!m.Test(graph.Id(n))) return false;
        break;
      case CompiledMatch::kName:
        if (!m.Test(graph.Name(n))) return false;
        break;
      case CompiledMatch::kAttr: {
        auto value = graph.Attr(n, m.key);
        if (!value || !m.Test(*value)) return false;
        break;
      }
    }
  }
  return true;
}

struct Step {
  uint32_t from;  // in the direction of travel
  uint32_t to;
  EdgeType type;
};

// Reusable buffers for RunQuery. `Visit` maps a node to its discovery position: by linear search
// while few nodes are known, then through an open-addressing table.
struct TraversalScratch {
  static constexpr size_t kLinearLimit = 32;
  std::vector<NodeIndex> order;
  std::vector<int> depth;
  std::vector<Step> steps;
  std::vector<char> keep;
  std::vector<uint32_t> start, preds, fill, work;
  std::vector<std::pair<NodeIndex, uint32_t>> table;  // (node, position); kNoNode = empty
  size_t mask = 0;
  bool hashed = false;

  void Reset() {
    hashed = false;
    order.clear();
    depth.clear();
    steps.clear();
    work.clear();
    keep.clear();
    // Give back buffers a huge query left behind.
    if (order.capacity() > (1u << 16)) {
      order.shrink_to_fit();
      depth.shrink_to_fit();
      steps.shrink_to_fit();
    }
    if (table.size() > (1u << 17)) table = {};
  }

  void Insert(NodeIndex n, uint32_t pos) {
    size_t i = (n * 0x9E3779B1u) & mask;
    while (table[i].first != kNoNode) i = (i + 1) & mask;
    table[i] = {n, pos};
  }

  // Returns the node's position, adding it at `d` when new.
  uint32_t Visit(NodeIndex n, int d) {
    if (!hashed) {
      for (uint32_t i = 0; i < order.size(); ++i) {
        if (order[i] == n) return i;
      }
    } else {
      size_t i = (n * 0x9E3779B1u) & mask;
      for (; table[i].first != kNoNode; i = (i + 1) & mask) {
        if (table[i].first == n) return table[i].second;
      }
    }
    const auto pos = static_cast<uint32_t>(order.size());
    order.push_back(n);
    depth.push_back(d);
    if (hashed && order.size() * 2 > table.size()) {
      Rehash(table.size() * 2);
    } else if (hashed) {
      Insert(n, pos);
    } else if (order.size() > kLinearLimit) {
      Rehash(256);
    }
    return pos;
  }

  void Rehash(size_t size) {
    table.assign(size, {kNoNode, 0});
    mask = size - 1;
    hashed = true;
    for (uint32_t i = 0; i < order.size(); ++i) Insert(order[i], i);
  }
};

TraversalScratch& Scratch() {
  thread_local TraversalScratch scratch;
  return scratch;
}

std::string Label(const Graph& graph, NodeIndex n) {
  std::string_view name = graph.Name(n);
  return Cat(NodeTypeName(graph.Type(n)), " ", name.empty() ? graph.Id(n) : name);
}

}  // namespace

bool GlobMatch(std::string_view p, std::string_view t) {
  size_t pi = 0, ti = 0;
  size_t star_p = kNpos, star_t = 0;  // where to resume after the last '*'
  while (ti < t.size()) {
    bool advanced = false;
    if (pi < p.size()) {
      const char pc = p[pi];
      if (pc == '*') {
        star_p = ++pi;
        star_t = ti;
        continue;
      }
      if (pc == '?') {
        ++pi;
        ++ti;
        continue;
      }
      if (pc == '[') {
        bool matched = false;
        const size_t next = MatchBracket(p, pi, static_cast<unsigned char>(t[ti]), matched);
        if (next == kInvalid) return false;
        if (next != kNpos) {
          if (matched) {
            pi = next;
            ++ti;
            advanced = true;
          }
        } else if (t[ti] == '[') {
          ++pi;
          ++ti;
          advanced = true;
        }
      } else if (pc == '\\') {  // escapes the next character; a trailing one never matches
        if (pi + 1 < p.size() && p[pi + 1] == t[ti]) {
          pi += 2;
          ++ti;
          advanced = true;
        }
      } else if (pc == t[ti]) {
        ++pi;
        ++ti;
        advanced = true;
      }
    }
    if (advanced) continue;
    if (star_p == kNpos) return false;
    pi = star_p;
    ti = ++star_t;
  }
  while (pi < p.size() && p[pi] == '*') ++pi;
  return pi == p.size();
}

absl::StatusOr<Selector> ParseSelector(std::string_view text) {
  Selector selector;
  size_t pos = 0;
  while (true) {
    pos = text.find_first_not_of(kSeparators, pos);
    if (pos == std::string_view::npos) break;
    const size_t end = std::min(text.find_first_of(kSeparators, pos), text.size());
    const std::string_view term = text.substr(pos, end - pos);
    pos = end;
    const size_t eq = term.find('=');
    if (eq == std::string_view::npos) {
      return absl::InvalidArgumentError(
          Cat("selector term '", term, "' has no '=' (expected key=value)"));
    }
    std::string_view key = term.substr(0, eq);
    const std::string_view value = term.substr(eq + 1);
    const bool is_attr = key.starts_with("attr.");
    if (is_attr) key.remove_prefix(5);
    if (key.empty()) {
      return absl::InvalidArgumentError(Cat("selector term '", term, "' has an empty key"));
    }
    if (!is_attr && key == "type") {
      absl::StatusOr<NodeType> type = ParseNodeType(value);
      if (!type.ok()) return type.status();
      if (selector.type && *selector.type != *type) {
        return absl::InvalidArgumentError(Cat("selector names two types, '",
                                              NodeTypeName(*selector.type), "' and '",
                                              NodeTypeName(*type), "'"));
      }
      selector.type = *type;
      continue;
    }
    selector.matches.push_back(AttrMatch{std::string(key), std::string(value)});
  }
  return selector;
}

std::vector<NodeIndex> Select(const Graph& graph, const Selector& selector) {
  std::vector<CompiledMatch> matches;
  matches.reserve(selector.matches.size());
  const AttrMatch* exact_id = nullptr;
  const AttrMatch* exact_name = nullptr;
  std::string_view name_prefix;  // the longest literal prefix of a name glob
  for (const AttrMatch& m : selector.matches) {
    CompiledMatch c{CompiledMatch::kAttr, m.key, m.pattern, HasGlobMeta(m.pattern)};
    if (m.key == "id") {
      c.kind = CompiledMatch::kId;
      if (!c.glob && !exact_id) exact_id = &m;
    } else if (m.key == "name") {
      c.kind = CompiledMatch::kName;
      if (!c.glob && !exact_name) exact_name = &m;
      if (c.glob) {
        const std::string_view prefix = LiteralPrefix(m.pattern);
        if (prefix.size() > name_prefix.size()) name_prefix = prefix;
      }
    }
    matches.push_back(c);
  }

  std::vector<NodeIndex> result;
  auto filter = [&](std::span<const NodeIndex> candidates) {
    for (NodeIndex n : candidates) {
      if (Matches(graph, n, selector.type, matches)) result.push_back(n);
    }
  };
  // An exact id or name narrows the candidates through an index; otherwise scan.
  if (exact_id) {
    if (auto n = graph.Find(exact_id->pattern)) filter(std::span<const NodeIndex>(&*n, 1));
  } else if (exact_name) {
    filter(graph.FindByName(exact_name->pattern));
  } else if (!name_prefix.empty() && selector.type) {
    filter(graph.FindByNamePrefix(*selector.type, name_prefix));
  } else if (!name_prefix.empty()) {
    std::vector<NodeIndex> candidates;
    for (int t = 0; t < kNodeTypeCount; ++t) {
      auto of_type = graph.FindByNamePrefix(static_cast<NodeType>(t), name_prefix);
      candidates.insert(candidates.end(), of_type.begin(), of_type.end());
    }
    std::sort(candidates.begin(), candidates.end());  // AllNodes order
    filter(candidates);
  } else if (selector.type) {
    filter(graph.NodesOfType(*selector.type));
  } else {
    filter(graph.AllNodes());
  }
  return result;
}

absl::StatusOr<Subgraph> RunQuery(const Graph& graph, const Query& query) {
  if (query.max_depth < -1) {
    return absl::InvalidArgumentError(
        Cat("max_depth must be -1 (unlimited) or at least 0, not ", query.max_depth));
  }
  if (query.direction == Direction::kNone && query.to_type) {
    return absl::InvalidArgumentError(Cat("a query for nodes of type '",
                                          NodeTypeName(*query.to_type),
                                          "' needs a direction (down or up)"));
  }
  Subgraph result;
  result.roots = Select(graph, query.select);
  if (query.direction == Direction::kNone) {
    result.nodes = result.roots;
    return result;
  }
  const bool down = query.direction == Direction::kDown;
  // Breadth-first from all roots at once; `order` holds nodes by discovery and `seen` maps a node
  // to its position there. Every edge followed is recorded between positions. The buffers are
  // per thread and reused, so a small query allocates only its result.
  TraversalScratch& t = Scratch();
  t.Reset();
  for (NodeIndex root : result.roots) t.Visit(root, 0);
  const size_t root_count = t.order.size();
  for (size_t i = 0; i < t.order.size(); ++i) {
    const NodeIndex n = t.order[i];
    const int d = t.depth[i];
    if (query.max_depth >= 0 && d >= query.max_depth) continue;
    if (query.to_type && graph.Type(n) == *query.to_type) continue;  // a target: stop here
    for (const EdgeRef& e : down ? graph.OutEdges(n) : graph.InEdges(n)) {
      const size_t known = t.order.size();
      const uint32_t to = t.Visit(e.node, d + 1);
      if (t.order.size() != known) graph.Prefetch(e.node);  // read when its turn comes
      t.steps.push_back(Step{static_cast<uint32_t>(i), to, e.type});
    }
  }
  const auto& order = t.order;
  const auto& steps = t.steps;

  // With a target type, keep the nodes from which a target can be reached over recorded steps:
  // walk the steps backwards from every target.
  std::vector<char>& keep = t.keep;
  if (query.to_type) {
    keep.assign(order.size(), 0);
    auto& start = t.start;  // predecessors, CSR by `to`
    start.assign(order.size() + 1, 0);
    for (const Step& s : steps) ++start[s.to + 1];
    for (size_t i = 0; i < order.size(); ++i) start[i + 1] += start[i];
    t.preds.resize(steps.size());
    t.fill.assign(start.begin(), start.end() - 1);
    for (const Step& s : steps) t.preds[t.fill[s.to]++] = s.from;
    auto& work = t.work;
    for (uint32_t i = 0; i < order.size(); ++i) {
      if (graph.Type(order[i]) == *query.to_type) {
        keep[i] = 1;
        work.push_back(i);
      }
    }
    while (!work.empty()) {
      const uint32_t i = work.back();
      work.pop_back();
      for (uint32_t k = start[i]; k < start[i + 1]; ++k) {
        const uint32_t p = t.preds[k];
        if (!keep[p]) {
          keep[p] = 1;
          work.push_back(p);
        }
      }
    }
  }
  auto kept = [&](uint32_t i) { return keep.empty() || keep[i]; };

  result.roots.clear();
  for (uint32_t i = 0; i < root_count; ++i) {
    if (kept(i)) result.roots.push_back(order[i]);
  }
  result.nodes.reserve(order.size());
  for (uint32_t i = 0; i < order.size(); ++i) {
    if (kept(i)) result.nodes.push_back(order[i]);
  }
  result.edges.reserve(steps.size());
  for (const Step& s : steps) {
    if (!kept(s.from) || !kept(s.to)) continue;
    if (down) {
      result.edges.push_back({order[s.from], order[s.to], s.type});
    } else {
      result.edges.push_back({order[s.to], order[s.from], s.type});
    }
  }
  return result;
}

Subgraph WholeGraph(const Graph& graph) {
  Subgraph result;
  result.nodes = graph.AllNodes();
  result.edges.reserve(graph.edge_count());
  for (NodeIndex n : result.nodes) {
    if (graph.InEdges(n).empty()) result.roots.push_back(n);
    for (const EdgeRef& e : graph.OutEdges(n)) result.edges.push_back({n, e.node, e.type});
  }
  return result;
}

nlohmann::json ToJson(const Graph& graph, const Subgraph& subgraph) {
  nlohmann::json nodes = nlohmann::json::array();
  for (NodeIndex n : subgraph.nodes) {
    nlohmann::json attrs = nlohmann::json::object();
    for (const auto& [key, value] : graph.Attrs(n)) attrs[std::string(key)] = value;
    nlohmann::json node = nlohmann::json::object();
    node["id"] = graph.Id(n);
    node["type"] = NodeTypeName(graph.Type(n));
    node["name"] = graph.Name(n);
    node["attrs"] = std::move(attrs);
    nodes.push_back(std::move(node));
  }
  nlohmann::json edges = nlohmann::json::array();
  for (const Subgraph::Edge& e : subgraph.edges) {
    nlohmann::json edge = nlohmann::json::object();
    edge["from"] = graph.Id(e.from);
    edge["to"] = graph.Id(e.to);
    edge["type"] = EdgeTypeName(e.type);
    edges.push_back(std::move(edge));
  }
  nlohmann::json result = nlohmann::json::object();
  result["nodes"] = std::move(nodes);
  result["edges"] = std::move(edges);
  return result;
}

absl::StatusOr<Graph> GraphFromJson(const nlohmann::json& json) {
  if (!json.is_object() || !json.contains("nodes") || !json["nodes"].is_array()) {
    return absl::InvalidArgumentError("graph JSON must be an object with a 'nodes' array");
  }
  auto string_field = [](const nlohmann::json& object, const char* key, const std::string& where,
                         bool required) -> absl::StatusOr<std::string> {
    auto it = object.find(key);
    if (it == object.end()) {
      if (!required) return std::string();
      return absl::InvalidArgumentError(Cat(where, ".", key, " is missing"));
    }
    if (!it->is_string()) {
      return absl::InvalidArgumentError(Cat(where, ".", key, " is not a string"));
    }
    return it->get<std::string>();
  };

  Graph graph;
  const nlohmann::json& nodes = json["nodes"];
  for (size_t i = 0; i < nodes.size(); ++i) {
    const std::string where = Cat("nodes[", i, "]");
    const nlohmann::json& node = nodes[i];
    if (!node.is_object()) return absl::InvalidArgumentError(where + " is not an object");
    absl::StatusOr<std::string> id = string_field(node, "id", where, true);
    if (!id.ok()) return id.status();
    absl::StatusOr<std::string> type_name = string_field(node, "type", where, true);
    if (!type_name.ok()) return type_name.status();
    absl::StatusOr<std::string> name = string_field(node, "name", where, false);
    if (!name.ok()) return name.status();
    absl::StatusOr<NodeType> type = ParseNodeType(*type_name);
    if (!type.ok()) {
      return absl::InvalidArgumentError(Cat(where, ".type: ", type.status().message()));
    }
    Attributes attrs;
    if (auto it = node.find("attrs"); it != node.end()) {
      if (!it->is_object()) {
        return absl::InvalidArgumentError(Cat(where, ".attrs is not an object"));
      }
      for (auto a = it->begin(); a != it->end(); ++a) {
        if (!a.value().is_string()) {
          return absl::InvalidArgumentError(Cat(where, ".attrs.", a.key(), " is not a string"));
        }
        attrs.emplace_back(a.key(), a.value().get<std::string>());
      }
    }
    absl::StatusOr<NodeIndex> added = graph.UpsertNode(*type, *id, *name, attrs);
    if (!added.ok()) {
      return absl::InvalidArgumentError(Cat(where, ": ", added.status().message()));
    }
  }

  auto edges_it = json.find("edges");
  if (edges_it == json.end()) return graph;
  if (!edges_it->is_array()) return absl::InvalidArgumentError("'edges' is not an array");
  for (size_t i = 0; i < edges_it->size(); ++i) {
    const std::string where = Cat("edges[", i, "]");
    const nlohmann::json& edge = (*edges_it)[i];
    if (!edge.is_object()) return absl::InvalidArgumentError(where + " is not an object");
    NodeIndex ends[2];
    const char* keys[2] = {"from", "to"};
    for (int k = 0; k < 2; ++k) {
      absl::StatusOr<std::string> id = string_field(edge, keys[k], where, true);
      if (!id.ok()) return id.status();
      std::optional<NodeIndex> n = graph.Find(*id);
      if (!n) {
        return absl::InvalidArgumentError(
            Cat(where, ".", keys[k], " names an unknown node '", *id, "'"));
      }
      ends[k] = *n;
    }
    absl::StatusOr<std::string> type_name = string_field(edge, "type", where, true);
    if (!type_name.ok()) return type_name.status();
    absl::StatusOr<EdgeType> type = ParseEdgeType(*type_name);
    if (!type.ok()) {
      return absl::InvalidArgumentError(Cat(where, ".type: ", type.status().message()));
    }
    graph.AddEdge(ends[0], ends[1], *type);
  }
  return graph;
}

std::string ToTree(const Graph& graph, const Subgraph& subgraph, Direction direction) {
  // Children of each node along the subgraph's edges, in edge order.
  absl::flat_hash_map<NodeIndex, std::vector<NodeIndex>> children;
  for (const Subgraph::Edge& e : subgraph.edges) {
    if (direction == Direction::kUp) {
      children[e.to].push_back(e.from);
    } else {
      children[e.from].push_back(e.to);
    }
  }
  std::string out;
  absl::flat_hash_set<NodeIndex> printed;
  std::vector<std::pair<NodeIndex, size_t>> stack;  // (node, depth), depth-first
  auto print_from = [&](NodeIndex root) {
    stack.emplace_back(root, 0);
    while (!stack.empty()) {
      const auto [n, d] = stack.back();
      stack.pop_back();
      out.append(2 * d, ' ');
      out += Label(graph, n);
      if (!printed.insert(n).second) {
        out += " (see above)\n";
        continue;
      }
      const auto attrs = graph.Attrs(n);
      for (size_t i = 0; i < attrs.size(); ++i) {
        Append(out, i == 0 ? " [" : ", ", attrs[i].first, "=", attrs[i].second);
      }
      if (!attrs.empty()) out += "]";
      out += "\n";
      if (auto it = children.find(n); it != children.end()) {
        for (auto c = it->second.rbegin(); c != it->second.rend(); ++c)
          stack.emplace_back(*c, d + 1);
      }
    }
  };
  for (NodeIndex root : subgraph.roots) print_from(root);
  // Nodes no root reaches (e.g. on a cycle of the whole graph) still appear.
  for (NodeIndex n : subgraph.nodes) {
    if (!printed.contains(n)) print_from(n);
  }
  return out;
}

}  // namespace strata::core
