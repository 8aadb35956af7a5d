// Resource graph storage. Layout (see graph.h for the contract):
//
//  * Strings live in one arena (a growing char vector addressed by 32-bit offsets); a string is a
//    32-bit StrId into a table of (offset, length). Names, attribute keys and values are interned
//    (deduplicated through a hash set of StrIds); node ids are unique by definition, so they are
//    appended without deduplication. A name that is a suffix of its node's id (`file:/a/b` named
//    `/a/b`) points into the id's bytes instead of being copied.
//  * Nodes are fixed 44-byte records in one vector; removed slots go on a free list.
//  * Adjacency (both directions) and attribute lists are blocks in shared pools: a block of
//    capacity 2^k at some offset; a node record holds (offset, size) and the capacity follows from
//    the size. Freed blocks go on per-size free lists.
//  * Indexes: id -> node (a hash set of NodeIndex hashed by the id's text), name -> nodes (a
//    vector indexed by name StrId holds the head of a chain linked through the node records),
//    type -> nodes (one vector per type, in insertion order).
//  * Dropped string references (removed nodes, replaced names and values) leave garbage in the
//    arena; once it may exceed the live part, the arena is rebuilt (amortised O(1)).
#include "strata/core/graph.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "str_util.h"

namespace strata::core {
namespace {

using internal::Cat;

constexpr std::array<std::string_view, kNodeTypeCount> kNodeTypeNames = {
    "cluster",        "host",         "vm",
    "vm_config",      "virtual_disk", "passthrough_disk",
    "file",           "mount_point",  "fs_volume",
    "block_device",   "lun",          "storage_volume",
    "storage_system", "vm_snapshot",  "storage_snapshot",
    "backup",
};
constexpr std::array<std::string_view, kEdgeTypeCount> kEdgeTypeNames = {
    "has_member", "runs",      "has_config", "has_disk",  "backed_by", "on_mount",    "mounts",
    "on_device",  "loop_file", "is_lun",     "in_volume", "in_system", "snapshot_of", "contains",
};

template <size_t N>
std::string JoinNames(const std::array<std::string_view, N>& names) {
  std::string out;
  for (std::string_view name : names) internal::Append(out, out.empty() ? "" : ", ", name);
  return out;
}

[[noreturn]] void Fatal(const char* what) {
  std::fprintf(stderr, "strata::core::Graph: %s\n", what);
  std::abort();
}

using StrId = uint32_t;
constexpr StrId kNoStr = UINT32_MAX;

// Interned strings in one arena. Hashers point at the heap-allocated Storage, so a StringPool can
// be moved freely; copying rebuilds the hash set.
class StringPool {
 public:
  StringPool()
      : storage_(std::make_unique<Storage>()), set_(0, Hash{storage_.get()}, Eq{storage_.get()}) {}
  StringPool(const StringPool& other)
      : storage_(std::make_unique<Storage>(*other.storage_)),
        set_(other.set_.size(), Hash{storage_.get()}, Eq{storage_.get()}) {
    for (StrId s : other.set_) set_.insert(s);
  }
  StringPool(StringPool&&) noexcept = default;
  StringPool& operator=(StringPool&&) noexcept = default;
  StringPool& operator=(const StringPool&) = delete;

  std::string_view Get(StrId s) const { return storage_->Get(s); }

  // Whether `s` points into the arena (and may dangle once the arena grows).
  bool Aliases(std::string_view s) const {
    const char* begin = storage_->arena.data();
    return !s.empty() && s.data() >= begin && s.data() < begin + storage_->arena.size();
  }

  // Appends `s` without deduplication. `s` must not alias the arena.
  StrId Add(std::string_view s) {
    Storage& st = *storage_;
    const size_t offset = st.arena.size();
    if (offset + s.size() > UINT32_MAX) Fatal("string arena exceeds 4 GiB");
    if (st.strs.size() >= kNoStr) Fatal("too many strings");
    st.arena.insert(st.arena.end(), s.begin(), s.end());
    st.strs.push_back({static_cast<uint32_t>(offset), static_cast<uint32_t>(s.size())});
    return static_cast<StrId>(st.strs.size() - 1);
  }

  // The StrId of `s`, adding it when new. When `within` is given and `s` is a suffix of that
  // string, the new entry shares its bytes. `s` must not alias the arena.
  StrId Intern(std::string_view s, StrId within = kNoStr) {
    if (auto it = set_.find(s); it != set_.end()) return *it;
    StrId id;
    std::string_view host = within == kNoStr ? std::string_view() : Get(within);
    if (!s.empty() && host.size() >= s.size() && host.ends_with(s)) {
      Storage& st = *storage_;
      const Rec& h = st.strs[within];
      st.strs.push_back(
          {static_cast<uint32_t>(h.off + h.len - s.size()), static_cast<uint32_t>(s.size())});
      id = static_cast<StrId>(st.strs.size() - 1);
    } else {
      id = Add(s);
    }
    set_.insert(id);
    return id;
  }

  StrId Find(std::string_view s) const {
    auto it = set_.find(s);
    return it == set_.end() ? kNoStr : *it;
  }

  size_t size() const { return storage_->strs.size(); }

  size_t MemoryBytes() const {
    return sizeof(Storage) + storage_->arena.capacity() + storage_->strs.capacity() * sizeof(Rec) +
           set_.capacity() * (sizeof(StrId) + 1);
  }

 private:
  struct Rec {
    uint32_t off;
    uint32_t len;
  };
  struct Storage {
    std::vector<char> arena;
    std::vector<Rec> strs;
    std::string_view Get(StrId s) const {
      const Rec& r = strs[s];
      return {arena.data() + r.off, r.len};
    }
  };
  struct Hash {
    using is_transparent = void;
    const Storage* st;
    size_t operator()(StrId s) const { return absl::Hash<std::string_view>{}(st->Get(s)); }
    size_t operator()(std::string_view s) const { return absl::Hash<std::string_view>{}(s); }
  };
  struct Eq {
    using is_transparent = void;
    const Storage* st;
    bool operator()(StrId a, StrId b) const { return a == b || st->Get(a) == st->Get(b); }
    bool operator()(StrId a, std::string_view b) const { return st->Get(a) == b; }
    bool operator()(std::string_view a, StrId b) const { return a == st->Get(b); }
  };

  std::unique_ptr<Storage> storage_;
  absl::flat_hash_set<StrId, Hash, Eq> set_;
};

// A run of elements in a BlockPool. Its capacity is bit_ceil(size) (0 when empty).
struct Block {
  uint32_t off = 0;
  uint32_t size = 0;
};

template <class T>
class BlockPool {
 public:
  std::span<const T> View(const Block& b) const { return {data_.data() + b.off, b.size}; }
  std::span<T> Mut(const Block& b) { return {data_.data() + b.off, b.size}; }

  void Push(Block& b, const T& value) {
    if (b.size == Cap(b.size)) {  // full (or empty): move to a block twice the size
      if (b.size >= (1u << 31)) Fatal("adjacency or attribute list too long");
      const uint32_t cap = b.size == 0 ? 1 : b.size * 2;
      const uint32_t off = Alloc(cap);
      std::copy_n(data_.data() + b.off, b.size, data_.data() + off);
      if (b.size > 0) Free(b.off, b.size);
      b.off = off;
    }
    data_[b.off + b.size++] = value;
  }

  // Removes element `pos`, keeping the order of the others; gives back the unused tail.
  void Erase(Block& b, uint32_t pos) {
    T* p = data_.data() + b.off;
    std::copy(p + pos + 1, p + b.size, p + pos);
    const uint32_t old_cap = Cap(b.size);
    --b.size;
    const uint32_t new_cap = Cap(b.size);
    if (new_cap < old_cap) Free(b.off + new_cap, old_cap - new_cap);
    if (b.size == 0) b.off = 0;
  }

  void Release(Block& b) {
    if (b.size > 0) Free(b.off, Cap(b.size));
    b = Block{};
  }

  size_t MemoryBytes() const {
    size_t bytes = data_.capacity() * sizeof(T);
    for (const auto& f : free_) bytes += f.capacity() * sizeof(uint32_t);
    return bytes;
  }

 private:
  static uint32_t Cap(uint32_t size) { return size == 0 ? 0 : std::bit_ceil(size); }

  uint32_t Alloc(uint32_t cap) {
    auto& list = free_[std::countr_zero(cap)];
    if (!list.empty()) {
      const uint32_t off = list.back();
      list.pop_back();
      return off;
    }
    const size_t off = data_.size();
    if (off + cap > UINT32_MAX) Fatal("edge or attribute pool exceeds 2^32 entries");
    data_.resize(off + cap);
    return static_cast<uint32_t>(off);
  }
  void Free(uint32_t off, uint32_t cap) { free_[std::countr_zero(cap)].push_back(off); }

  std::vector<T> data_;
  std::array<std::vector<uint32_t>, 33> free_;
};

struct AttrRec {
  StrId key;
  StrId value;
};

struct Node {
  StrId id = kNoStr;
  StrId name = kNoStr;
  NodeIndex name_prev = kNoNode;  // chain of nodes with the same name
  NodeIndex name_next = kNoNode;  // ... or, for a free slot, the next free slot
  Block attrs;
  Block out;
  Block in;
  NodeType type = NodeType::kCluster;
  bool live = false;
};

}  // namespace

std::string_view NodeTypeName(NodeType type) {
  const auto i = static_cast<size_t>(type);
  return i < kNodeTypeNames.size() ? kNodeTypeNames[i] : std::string_view("unknown");
}

std::string_view EdgeTypeName(EdgeType type) {
  const auto i = static_cast<size_t>(type);
  return i < kEdgeTypeNames.size() ? kEdgeTypeNames[i] : std::string_view("unknown");
}

absl::StatusOr<NodeType> ParseNodeType(std::string_view name) {
  for (size_t i = 0; i < kNodeTypeNames.size(); ++i) {
    if (kNodeTypeNames[i] == name) return static_cast<NodeType>(i);
  }
  return absl::InvalidArgumentError(
      Cat("unknown node type '", name, "' (known types: ", JoinNames(kNodeTypeNames), ")"));
}

absl::StatusOr<EdgeType> ParseEdgeType(std::string_view name) {
  for (size_t i = 0; i < kEdgeTypeNames.size(); ++i) {
    if (kEdgeTypeNames[i] == name) return static_cast<EdgeType>(i);
  }
  return absl::InvalidArgumentError(
      Cat("unknown edge type '", name, "' (known types: ", JoinNames(kEdgeTypeNames), ")"));
}

struct Graph::Impl {
  // Hashes a NodeIndex by its node's id text, so the id index needs no copy of the ids.
  struct IdHash {
    using is_transparent = void;
    const Impl* g;
    size_t operator()(NodeIndex n) const { return absl::Hash<std::string_view>{}(g->IdOf(n)); }
    size_t operator()(std::string_view s) const { return absl::Hash<std::string_view>{}(s); }
  };
  struct IdEq {
    using is_transparent = void;
    const Impl* g;
    bool operator()(NodeIndex a, NodeIndex b) const { return a == b; }
    bool operator()(NodeIndex a, std::string_view b) const { return g->IdOf(a) == b; }
    bool operator()(std::string_view a, NodeIndex b) const { return a == g->IdOf(b); }
  };

  StringPool strings;
  std::vector<Node> nodes;
  BlockPool<EdgeRef> edges;  // out- and in-lists
  BlockPool<AttrRec> attrs;
  absl::flat_hash_set<NodeIndex, IdHash, IdEq> by_id{0, IdHash{this}, IdEq{this}};
  std::vector<NodeIndex> name_head;  // by name StrId: the newest node with that name
  std::array<std::vector<NodeIndex>, kNodeTypeCount> by_type;
  NodeIndex free_head = kNoNode;
  size_t live_count = 0;
  size_t edge_count = 0;
  size_t dropped_refs = 0;  // string references dropped since the last compaction

  Impl() = default;
  Impl(const Impl& o)
      : strings(o.strings),
        nodes(o.nodes),
        edges(o.edges),
        attrs(o.attrs),
        by_id(o.by_id.size(), IdHash{this}, IdEq{this}),
        name_head(o.name_head),
        by_type(o.by_type),
        free_head(o.free_head),
        live_count(o.live_count),
        edge_count(o.edge_count),
        dropped_refs(o.dropped_refs) {
    for (NodeIndex n : o.by_id) by_id.insert(n);
  }
  Impl& operator=(const Impl&) = delete;

  std::string_view IdOf(NodeIndex n) const { return strings.Get(nodes[n].id); }
  bool Live(NodeIndex n) const { return n < nodes.size() && nodes[n].live; }

  void LinkName(NodeIndex n) {
    Node& x = nodes[n];
    if (x.name >= name_head.size()) name_head.resize(strings.size(), kNoNode);
    NodeIndex& head = name_head[x.name];
    if (head != kNoNode) {
      x.name_next = head;
      nodes[head].name_prev = n;
    }
    head = n;
  }
  void UnlinkName(NodeIndex n) {
    Node& x = nodes[n];
    if (x.name_prev != kNoNode) {
      nodes[x.name_prev].name_next = x.name_next;
    } else {
      name_head[x.name] = x.name_next;
    }
    if (x.name_next != kNoNode) nodes[x.name_next].name_prev = x.name_prev;
    x.name_prev = x.name_next = kNoNode;
  }

  void SetName(NodeIndex n, std::string_view name) {
    const StrId sid = strings.Intern(name, nodes[n].id);
    if (sid == nodes[n].name) return;
    UnlinkName(n);
    nodes[n].name = sid;
    LinkName(n);
    ++dropped_refs;
  }

  void SetAttr(NodeIndex n, std::string_view key, std::string_view value) {
    const StrId k = strings.Intern(key);
    const StrId v = strings.Intern(value);
    Node& x = nodes[n];
    for (AttrRec& a : attrs.Mut(x.attrs)) {
      if (a.key == k) {
        if (a.value != v) {
          a.value = v;
          ++dropped_refs;
        }
        return;
      }
    }
    attrs.Push(x.attrs, AttrRec{k, v});
  }

  NodeIndex NewNode(NodeType type, std::string_view id, std::string_view name) {
    NodeIndex n;
    if (free_head != kNoNode) {
      n = free_head;
      free_head = nodes[n].name_next;
      nodes[n] = Node{};
    } else {
      if (nodes.size() >= kNoNode) Fatal("too many nodes");
      n = static_cast<NodeIndex>(nodes.size());
      nodes.emplace_back();
    }
    Node& x = nodes[n];
    x.type = type;
    x.live = true;
    x.id = strings.Add(id);
    x.name = strings.Intern(name, x.id);
    LinkName(n);
    by_id.insert(n);
    by_type[static_cast<size_t>(type)].push_back(n);
    ++live_count;
    return n;
  }

  static bool EraseRef(BlockPool<EdgeRef>& pool, Block& b, EdgeRef ref) {
    auto span = pool.View(b);
    auto it = std::find(span.begin(), span.end(), ref);
    if (it == span.end()) return false;
    pool.Erase(b, static_cast<uint32_t>(it - span.begin()));
    return true;
  }

  void ClearOut(NodeIndex n) {
    Block out = nodes[n].out;
    for (const EdgeRef& e : edges.View(out)) {
      EraseRef(edges, nodes[e.node].in, EdgeRef{n, e.type});
    }
    edge_count -= out.size;
    edges.Release(nodes[n].out);
  }

  void ClearIn(NodeIndex n) {
    Block in = nodes[n].in;
    for (const EdgeRef& e : edges.View(in)) {
      EraseRef(edges, nodes[e.node].out, EdgeRef{n, e.type});
    }
    edge_count -= in.size;
    edges.Release(nodes[n].in);
  }

  void MaybeCompactStrings() {
    if (dropped_refs < 65536 || dropped_refs < strings.size() / 2) return;
    CompactStrings();
  }

  // Rebuilds the arena from the strings live nodes still reference.
  void CompactStrings() {
    StringPool fresh;
    std::vector<StrId> remap(strings.size(), kNoStr);
    for (NodeIndex n = 0; n < nodes.size(); ++n) {
      Node& x = nodes[n];
      if (!x.live) continue;
      const StrId old_id = x.id;
      x.id = fresh.Add(strings.Get(old_id));
      StrId& name = remap[x.name];
      if (name == kNoStr) name = fresh.Intern(strings.Get(x.name), x.id);
      x.name = name;
      for (AttrRec& a : attrs.Mut(x.attrs)) {
        if (remap[a.key] == kNoStr) remap[a.key] = fresh.Intern(strings.Get(a.key));
        if (remap[a.value] == kNoStr) remap[a.value] = fresh.Intern(strings.Get(a.value));
        a.key = remap[a.key];
        a.value = remap[a.value];
      }
    }
    std::vector<NodeIndex> heads(fresh.size(), kNoNode);
    for (StrId sid = 0; sid < name_head.size(); ++sid) {
      if (name_head[sid] != kNoNode) heads[remap[sid]] = name_head[sid];
    }
    name_head = std::move(heads);
    strings = std::move(fresh);
    dropped_refs = 0;
  }
};

Graph::Graph() : impl_(std::make_unique<Impl>()) {}
Graph::~Graph() = default;
Graph::Graph(Graph&& other) noexcept
    : impl_(std::exchange(other.impl_, std::make_unique<Impl>())) {}
Graph& Graph::operator=(Graph&& other) noexcept {
  impl_.swap(other.impl_);
  return *this;
}
Graph::Graph(const Graph& other) : impl_(std::make_unique<Impl>(*other.impl_)) {}
Graph& Graph::operator=(const Graph& other) {
  if (this != &other) impl_ = std::make_unique<Impl>(*other.impl_);
  return *this;
}

absl::StatusOr<NodeIndex> Graph::UpsertNode(NodeType type, std::string_view id,
                                            std::string_view name, const Attributes& attrs) {
  if (static_cast<size_t>(type) >= kNodeTypeCount) {
    return absl::InvalidArgumentError(
        Cat("node '", id, "' has an invalid type (", static_cast<int>(type), ")"));
  }
  if (id.empty()) {
    return absl::InvalidArgumentError(
        Cat("a node of type '", NodeTypeName(type), "' has an empty id"));
  }
  Impl& g = *impl_;
  // Arguments that point into our own arena would dangle once it grows: copy them first.
  std::string id_copy, name_copy;
  if (g.strings.Aliases(id)) id = id_copy.assign(id);
  if (g.strings.Aliases(name)) name = name_copy.assign(name);

  NodeIndex n;
  if (auto it = g.by_id.find(id); it != g.by_id.end()) {
    n = *it;
    if (g.nodes[n].type != type) {
      return absl::InvalidArgumentError(Cat("node '", id, "' already exists with type '",
                                            NodeTypeName(g.nodes[n].type), "', not '",
                                            NodeTypeName(type), "'"));
    }
    if (!name.empty()) g.SetName(n, name);
  } else {
    n = g.NewNode(type, id, name);
  }
  for (const auto& [key, value] : attrs) g.SetAttr(n, key, value);
  g.MaybeCompactStrings();
  return n;
}

void Graph::AddEdge(NodeIndex from, NodeIndex to, EdgeType type) {
  Impl& g = *impl_;
  if (!g.Live(from) || !g.Live(to) || static_cast<size_t>(type) >= kEdgeTypeCount) return;
  // Look for a duplicate in the shorter of the two lists.
  Node& f = g.nodes[from];
  Node& t = g.nodes[to];
  if (f.out.size <= t.in.size) {
    for (const EdgeRef& e : g.edges.View(f.out)) {
      if (e.node == to && e.type == type) return;
    }
  } else {
    for (const EdgeRef& e : g.edges.View(t.in)) {
      if (e.node == from && e.type == type) return;
    }
  }
  g.edges.Push(g.nodes[from].out, EdgeRef{to, type});
  g.edges.Push(g.nodes[to].in, EdgeRef{from, type});
  ++g.edge_count;
}

void Graph::SetAttribute(NodeIndex node, std::string_view key, std::string_view value) {
  Impl& g = *impl_;
  if (!g.Live(node)) return;
  std::string key_copy, value_copy;
  if (g.strings.Aliases(key)) key = key_copy.assign(key);
  if (g.strings.Aliases(value)) value = value_copy.assign(value);
  g.SetAttr(node, key, value);
  g.MaybeCompactStrings();
}

bool Graph::RemoveNode(NodeIndex node) {
  Impl& g = *impl_;
  if (!g.Live(node)) return false;
  g.ClearOut(node);  // self-loops leave both lists here
  g.ClearIn(node);
  Node& x = g.nodes[node];
  g.dropped_refs += 2 + 2 * size_t{x.attrs.size};
  g.attrs.Release(x.attrs);
  g.by_id.erase(node);  // hashed by the id text, so before the id goes
  g.UnlinkName(node);
  auto& of_type = g.by_type[static_cast<size_t>(x.type)];
  of_type.erase(std::find(of_type.begin(), of_type.end(), node));
  x = Node{};
  x.name_next = g.free_head;
  g.free_head = node;
  --g.live_count;
  g.MaybeCompactStrings();
  return true;
}

void Graph::ClearOutEdges(NodeIndex node) {
  if (impl_->Live(node)) impl_->ClearOut(node);
}

absl::Status Graph::Merge(const Graph& other) {
  if (&other == this) return absl::OkStatus();
  Impl& g = *impl_;
  const Impl& o = *other.impl_;
  // Check every type first, so that a failed merge changes nothing.
  for (NodeIndex n = 0; n < o.nodes.size(); ++n) {
    if (!o.nodes[n].live) continue;
    const std::string_view id = o.IdOf(n);
    if (auto it = g.by_id.find(id); it != g.by_id.end() && g.nodes[*it].type != o.nodes[n].type) {
      return absl::InvalidArgumentError(Cat("cannot merge graphs: node '", id, "' has type '",
                                            NodeTypeName(g.nodes[*it].type), "' here and type '",
                                            NodeTypeName(o.nodes[n].type), "' in the other graph"));
    }
  }
  std::vector<NodeIndex> map(o.nodes.size(), kNoNode);
  for (const auto& of_type : o.by_type) {  // keeps the other graph's insertion order per type
    for (NodeIndex n : of_type) {
      const Node& x = o.nodes[n];
      const std::string_view id = o.IdOf(n);
      const std::string_view name = o.strings.Get(x.name);
      NodeIndex m;
      if (auto it = g.by_id.find(id); it != g.by_id.end()) {
        m = *it;
        if (!name.empty()) g.SetName(m, name);
      } else {
        m = g.NewNode(x.type, id, name);
      }
      for (const AttrRec& a : o.attrs.View(x.attrs)) {
        g.SetAttr(m, o.strings.Get(a.key), o.strings.Get(a.value));
      }
      map[n] = m;
    }
  }
  for (NodeIndex n = 0; n < o.nodes.size(); ++n) {
    if (!o.nodes[n].live) continue;
    for (const EdgeRef& e : o.edges.View(o.nodes[n].out)) AddEdge(map[n], map[e.node], e.type);
  }
  g.MaybeCompactStrings();
  return absl::OkStatus();
}

std::optional<NodeIndex> Graph::Find(std::string_view id) const {
  auto it = impl_->by_id.find(id);
  if (it == impl_->by_id.end()) return std::nullopt;
  return *it;
}

std::span<const NodeIndex> Graph::NodesOfType(NodeType type) const {
  const auto i = static_cast<size_t>(type);
  if (i >= kNodeTypeCount) return {};
  return impl_->by_type[i];
}

std::vector<NodeIndex> Graph::FindByName(std::string_view name) const {
  const Impl& g = *impl_;
  std::vector<NodeIndex> result;
  const StrId sid = g.strings.Find(name);
  if (sid == kNoStr) return result;
  if (sid >= g.name_head.size()) return result;
  for (NodeIndex n = g.name_head[sid]; n != kNoNode; n = g.nodes[n].name_next) result.push_back(n);
  std::reverse(result.begin(), result.end());  // the chain is newest first
  return result;
}

std::vector<NodeIndex> Graph::AllNodes() const {
  const Impl& g = *impl_;
  std::vector<NodeIndex> result;
  result.reserve(g.live_count);
  for (NodeIndex n = 0; n < g.nodes.size(); ++n) {
    if (g.nodes[n].live) result.push_back(n);
  }
  return result;
}

bool Graph::IsLive(NodeIndex node) const { return impl_->Live(node); }

NodeType Graph::Type(NodeIndex node) const {
  return impl_->Live(node) ? impl_->nodes[node].type : NodeType::kCluster;
}

std::string_view Graph::Id(NodeIndex node) const {
  return impl_->Live(node) ? impl_->IdOf(node) : std::string_view();
}

std::string_view Graph::Name(NodeIndex node) const {
  return impl_->Live(node) ? impl_->strings.Get(impl_->nodes[node].name) : std::string_view();
}

std::optional<std::string_view> Graph::Attr(NodeIndex node, std::string_view key) const {
  const Impl& g = *impl_;
  if (!g.Live(node)) return std::nullopt;
  const StrId k = g.strings.Find(key);
  if (k == kNoStr) return std::nullopt;
  for (const AttrRec& a : g.attrs.View(g.nodes[node].attrs)) {
    if (a.key == k) return g.strings.Get(a.value);
  }
  return std::nullopt;
}

std::vector<std::pair<std::string_view, std::string_view>> Graph::Attrs(NodeIndex node) const {
  const Impl& g = *impl_;
  std::vector<std::pair<std::string_view, std::string_view>> result;
  if (!g.Live(node)) return result;
  auto span = g.attrs.View(g.nodes[node].attrs);
  result.reserve(span.size());
  for (const AttrRec& a : span) result.emplace_back(g.strings.Get(a.key), g.strings.Get(a.value));
  return result;
}

std::span<const EdgeRef> Graph::OutEdges(NodeIndex node) const {
  return impl_->Live(node) ? impl_->edges.View(impl_->nodes[node].out) : std::span<const EdgeRef>();
}

std::span<const EdgeRef> Graph::InEdges(NodeIndex node) const {
  return impl_->Live(node) ? impl_->edges.View(impl_->nodes[node].in) : std::span<const EdgeRef>();
}

size_t Graph::node_count() const { return impl_->live_count; }
size_t Graph::edge_count() const { return impl_->edge_count; }

size_t Graph::MemoryBytes() const {
  const Impl& g = *impl_;
  size_t bytes = sizeof(Impl) + g.strings.MemoryBytes() + g.nodes.capacity() * sizeof(Node) +
                 g.edges.MemoryBytes() + g.attrs.MemoryBytes() +
                 g.by_id.capacity() * (sizeof(NodeIndex) + 1) +
                 g.name_head.capacity() * sizeof(NodeIndex);
  for (const auto& v : g.by_type) bytes += v.capacity() * sizeof(NodeIndex);
  return bytes;
}

}  // namespace strata::core
