// Resource graph storage. Layout (see graph.h for the contract):
//
//  * Node ids and names live in one arena (a growing char vector addressed by 32-bit offsets),
//    each string preceded by its length as a LEB128 varint. A node refers to its id by offset. Its
//    name is either a suffix of its id (`file:/a/b` named `/a/b`: no bytes of its own) or an
//    offset; nodes with the same name share one copy of its bytes.
//  * Attribute keys and values are interned in a separate StringPool: a 32-bit StrId into a table
//    of (offset, length), deduplicated through a hash set of StrIds.
//  * Nodes are fixed 44-byte records in one vector; removed slots go on a free list.
//  * Adjacency (both directions) and attribute lists: a list of one element is stored inside the
//    node record (most disks, files and configs have one edge each way and few attributes); longer
//    lists are blocks in shared pools: a block of capacity 2^k at some offset, (offset, size) in
//    the node, the capacity following from the size. Freed blocks go on per-size free lists.
//  * Indexes: id -> node (a hash set of NodeIndex hashed by the id's text); name -> nodes (a hash
//    set holding the oldest node of each name, hashed by the name's text, and a circular list
//    through the node records in insertion order); type -> nodes (one vector per type, in
//    insertion order); per type, a name-sorted index for prefix lookups, built on first use after
//    a mutation (under a mutex, so concurrent readers stay safe).
//  * Dropped string references (removed nodes, replaced names and values) leave garbage in the
//    arenas; once it may exceed the live part, they are rebuilt (amortised O(1)).
#include "strata/core/graph.h"

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "absl/container/flat_hash_map.h"
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
  uint32_t off;
  uint32_t size;
};

template <class T>
class BlockPool {
 public:
  std::span<const T> View(const Block& b) const { return {data_.data() + b.off, b.size}; }
  std::span<T> Mut(const Block& b) { return {data_.data() + b.off, b.size}; }

  // A new block holding two elements.
  Block Pair(const T& a, const T& b) {
    const uint32_t off = Alloc(2);
    data_[off] = a;
    data_[off + 1] = b;
    return Block{off, 2};
  }

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

  // Removes element `pos`, keeping the order of the others; gives back the unused tail. The
  // block must keep at least two elements (a list of one lives in the node record).
  void Erase(Block& b, uint32_t pos) {
    T* p = data_.data() + b.off;
    std::copy(p + pos + 1, p + b.size, p + pos);
    const uint32_t old_cap = Cap(b.size);
    --b.size;
    const uint32_t new_cap = Cap(b.size);
    if (new_cap < old_cap) Free(b.off + new_cap, old_cap - new_cap);
  }

  void Release(Block& b) {
    if (b.size > 0) Free(b.off, Cap(b.size));
    b = Block{0, 0};
  }

  size_t size() const { return data_.size(); }
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

// A list whose single element is stored in place; longer lists are a pool block. Which of the two
// is active is recorded in the node's `tags` (see Node).
template <class T>
union SmallList {
  T one;
  Block block;
};
static_assert(sizeof(SmallList<EdgeRef>) == 8 && sizeof(SmallList<AttrRec>) == 8);

enum ListKind : unsigned { kAttrList = 0, kOutList = 1, kInList = 2 };
enum ListTag : unsigned { kEmpty = 0, kOne = 1, kPooled = 2 };

// The name field: kSuffixName | n means "the last n bytes of the id", otherwise an arena offset.
constexpr uint32_t kSuffixName = 1u << 31;

struct Node {
  uint32_t id;          // arena offset of the length-prefixed id
  uint32_t name;        // see kSuffixName
  NodeIndex name_prev;  // circular list of the nodes with the same name, oldest first;
  NodeIndex name_next;  // ... for a free slot, name_next links the free list
  SmallList<AttrRec> attrs;
  SmallList<EdgeRef> out;
  SmallList<EdgeRef> in;
  NodeType type;
  uint8_t live;
  uint8_t tags;  // 2 bits (a ListTag) per ListKind
  uint8_t unused;
};
static_assert(sizeof(Node) == 44);

unsigned TagOf(const Node& x, ListKind k) { return (x.tags >> (2 * k)) & 3u; }
void SetTag(Node& x, ListKind k, unsigned tag) {
  x.tags = static_cast<uint8_t>((x.tags & ~(3u << (2 * k))) | (tag << (2 * k)));
}

template <class T>
std::span<const T> ListView(const BlockPool<T>& pool, const SmallList<T>& l, unsigned tag) {
  if (tag == kOne) return {&l.one, 1};
  if (tag == kPooled) return pool.View(l.block);
  return {};
}
template <class T>
std::span<T> ListMut(BlockPool<T>& pool, SmallList<T>& l, unsigned tag) {
  if (tag == kOne) return {&l.one, 1};
  if (tag == kPooled) return pool.Mut(l.block);
  return {};
}
template <class T>
void ListPush(BlockPool<T>& pool, SmallList<T>& l, Node& x, ListKind k, const T value) {
  switch (TagOf(x, k)) {
    case kEmpty:
      l.one = value;
      SetTag(x, k, kOne);
      break;
    case kOne: {
      const T first = l.one;
      l.block = pool.Pair(first, value);
      SetTag(x, k, kPooled);
      break;
    }
    default:
      pool.Push(l.block, value);
  }
}
template <class T>
void ListErase(BlockPool<T>& pool, SmallList<T>& l, Node& x, ListKind k, uint32_t pos) {
  if (TagOf(x, k) == kOne) {
    SetTag(x, k, kEmpty);
  } else if (l.block.size == 2) {
    const T rest = pool.View(l.block)[1 - pos];
    pool.Release(l.block);
    l.one = rest;
    SetTag(x, k, kOne);
  } else {
    pool.Erase(l.block, pos);
  }
}
template <class T>
void ListRelease(BlockPool<T>& pool, SmallList<T>& l, Node& x, ListKind k) {
  if (TagOf(x, k) == kPooled) pool.Release(l.block);
  SetTag(x, k, kEmpty);
}

// LEB128 length prefixes for the arena.
void PutLength(std::vector<char>& arena, size_t n) {
  while (n >= 0x80) {
    arena.push_back(static_cast<char>((n & 0x7f) | 0x80));
    n >>= 7;
  }
  arena.push_back(static_cast<char>(n));
}
std::string_view ArenaString(const std::vector<char>& arena, uint32_t off) {
  const char* p = arena.data() + off;
  uint32_t n = static_cast<unsigned char>(*p++);
  if (n >= 0x80) {
    n &= 0x7f;
    for (int shift = 7;; shift += 7) {
      const auto c = static_cast<unsigned char>(*p++);
      n |= static_cast<uint32_t>(c & 0x7f) << shift;
      if (c < 0x80) break;
    }
  }
  return {p, n};
}

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
  // Hash a NodeIndex by its node's id (or name) text, so the indexes need no copy of the strings.
  template <bool kByName>
  struct TextHash {
    using is_transparent = void;
    const Impl* g;
    size_t operator()(NodeIndex n) const {
      return absl::Hash<std::string_view>{}(kByName ? g->NameOf(n) : g->IdOf(n));
    }
    size_t operator()(std::string_view s) const { return absl::Hash<std::string_view>{}(s); }
  };
  template <bool kByName>
  struct TextEq {
    using is_transparent = void;
    const Impl* g;
    std::string_view Text(NodeIndex n) const { return kByName ? g->NameOf(n) : g->IdOf(n); }
    bool operator()(NodeIndex a, NodeIndex b) const { return a == b || Text(a) == Text(b); }
    bool operator()(NodeIndex a, std::string_view b) const { return Text(a) == b; }
    bool operator()(std::string_view a, NodeIndex b) const { return a == Text(b); }
  };
  using IdSet = absl::flat_hash_set<NodeIndex, TextHash<false>, TextEq<false>>;
  using NameSet = absl::flat_hash_set<NodeIndex, TextHash<true>, TextEq<true>>;

  std::vector<char> arena;  // ids and names, length-prefixed
  StringPool strings;       // attribute keys and values
  std::vector<Node> nodes;
  BlockPool<EdgeRef> edges;  // out- and in-lists
  BlockPool<AttrRec> attrs;
  IdSet by_id{0, TextHash<false>{this}, TextEq<false>{this}};
  NameSet by_name{0, TextHash<true>{this}, TextEq<true>{this}};  // the oldest node of each name
  std::array<std::vector<NodeIndex>, kNodeTypeCount> by_type;
  NodeIndex free_head = kNoNode;
  size_t live_count = 0;
  size_t edge_count = 0;
  size_t dropped_refs = 0;  // string references dropped since the last compaction

  // Name-sorted positions into by_type[t], built on demand; bit t of sorted_valid says that
  // sorted_by_name[t] is current. Readers build under sorted_mu; writers (exclusive) invalidate.
  mutable std::mutex sorted_mu;
  mutable std::atomic<uint32_t> sorted_valid{0};
  mutable std::array<std::vector<uint32_t>, kNodeTypeCount> sorted_by_name;

  Impl() = default;
  Impl(const Impl& o)
      : arena(o.arena),
        strings(o.strings),
        nodes(o.nodes),
        edges(o.edges),
        attrs(o.attrs),
        by_id(o.by_id.size(), TextHash<false>{this}, TextEq<false>{this}),
        by_name(o.by_name.size(), TextHash<true>{this}, TextEq<true>{this}),
        by_type(o.by_type),
        free_head(o.free_head),
        live_count(o.live_count),
        edge_count(o.edge_count),
        dropped_refs(o.dropped_refs) {
    for (NodeIndex n : o.by_id) by_id.insert(n);
    for (NodeIndex n : o.by_name) by_name.insert(n);
  }
  Impl& operator=(const Impl&) = delete;

  std::string_view IdOf(NodeIndex n) const { return ArenaString(arena, nodes[n].id); }
  std::string_view NameOf(NodeIndex n) const {
    const Node& x = nodes[n];
    if (x.name & kSuffixName) {
      const std::string_view id = ArenaString(arena, x.id);
      return id.substr(id.size() - (x.name & ~kSuffixName));
    }
    return ArenaString(arena, x.name);
  }
  bool Live(NodeIndex n) const { return n < nodes.size() && nodes[n].live; }

  // Whether `s` points into one of our arenas (and may dangle once it grows).
  bool Aliases(std::string_view s) const {
    const char* begin = arena.data();
    return strings.Aliases(s) ||
           (!s.empty() && s.data() >= begin && s.data() < begin + arena.size());
  }

  void InvalidateSorted() {
    if (sorted_valid.load(std::memory_order_relaxed) != 0) {
      sorted_valid.store(0, std::memory_order_relaxed);
    }
  }

  uint32_t AppendString(std::string_view s) {
    const size_t off = arena.size();
    if (off + s.size() + 5 > kSuffixName) Fatal("string arena exceeds 2 GiB");
    PutLength(arena, s.size());
    arena.insert(arena.end(), s.begin(), s.end());
    return static_cast<uint32_t>(off);
  }

  // Sets the name field of `n` (not yet linked) to `name`, sharing bytes where possible.
  void EncodeName(NodeIndex n, std::string_view name) {
    const std::string_view id = IdOf(n);
    if (id.ends_with(name)) {
      nodes[n].name = kSuffixName | static_cast<uint32_t>(name.size());
      return;
    }
    if (auto it = by_name.find(name); it != by_name.end()) {
      const NodeIndex head = *it;
      for (NodeIndex m : {nodes[head].name_prev, head}) {  // the newest, then the oldest
        if (!(nodes[m].name & kSuffixName)) {
          nodes[n].name = nodes[m].name;
          return;
        }
      }
    }
    nodes[n].name = AppendString(name);
  }

  void LinkName(NodeIndex n) {
    auto [it, inserted] = by_name.insert(n);
    if (inserted) {
      nodes[n].name_prev = nodes[n].name_next = n;
      return;
    }
    const NodeIndex head = *it;
    const NodeIndex tail = nodes[head].name_prev;
    nodes[n].name_prev = tail;
    nodes[n].name_next = head;
    nodes[tail].name_next = n;
    nodes[head].name_prev = n;
  }
  void UnlinkName(NodeIndex n) {
    Node& x = nodes[n];
    const NodeIndex next = x.name_next;
    if (next == n) {
      by_name.erase(n);
    } else {
      nodes[x.name_prev].name_next = next;
      nodes[next].name_prev = x.name_prev;
      if (auto it = by_name.find(n); it != by_name.end() && *it == n) {
        by_name.erase(it);  // n was the oldest: its successor takes its place
        by_name.insert(next);
      }
    }
    x.name_prev = x.name_next = kNoNode;
  }

  void SetName(NodeIndex n, std::string_view name) {
    if (NameOf(n) == name) return;
    UnlinkName(n);
    EncodeName(n, name);
    LinkName(n);
    ++dropped_refs;
    InvalidateSorted();
  }

  void SetAttr(NodeIndex n, std::string_view key, std::string_view value) {
    const StrId k = strings.Intern(key);
    const StrId v = strings.Intern(value);
    Node& x = nodes[n];
    for (AttrRec& a : ListMut(attrs, x.attrs, TagOf(x, kAttrList))) {
      if (a.key == k) {
        if (a.value != v) {
          a.value = v;
          ++dropped_refs;
        }
        return;
      }
    }
    ListPush(attrs, x.attrs, x, kAttrList, AttrRec{k, v});
  }
  std::span<const AttrRec> AttrsOf(NodeIndex n) const {
    return ListView(attrs, nodes[n].attrs, TagOf(nodes[n], kAttrList));
  }
  std::span<const EdgeRef> OutOf(NodeIndex n) const {
    return ListView(edges, nodes[n].out, TagOf(nodes[n], kOutList));
  }
  std::span<const EdgeRef> InOf(NodeIndex n) const {
    return ListView(edges, nodes[n].in, TagOf(nodes[n], kInList));
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
    nodes[n].type = type;
    nodes[n].live = 1;
    nodes[n].id = AppendString(id);
    EncodeName(n, name);
    LinkName(n);
    by_id.insert(n);
    by_type[static_cast<size_t>(type)].push_back(n);
    ++live_count;
    InvalidateSorted();
    return n;
  }

  // Removes `ref` from list `k` of node `n`.
  bool EraseRef(NodeIndex n, ListKind k, EdgeRef ref) {
    Node& x = nodes[n];
    SmallList<EdgeRef>& l = k == kOutList ? x.out : x.in;
    auto span = ListView(edges, l, TagOf(x, k));
    auto it = std::find(span.begin(), span.end(), ref);
    if (it == span.end()) return false;
    ListErase(edges, l, x, k, static_cast<uint32_t>(it - span.begin()));
    return true;
  }

  void ClearOut(NodeIndex n) {
    // Erasing from other lists never allocates, so this list stays in place meanwhile.
    const auto out = OutOf(n);
    for (const EdgeRef& e : out) EraseRef(e.node, kInList, EdgeRef{n, e.type});
    edge_count -= out.size();
    ListRelease(edges, nodes[n].out, nodes[n], kOutList);
  }

  void ClearIn(NodeIndex n) {
    const auto in = InOf(n);
    for (const EdgeRef& e : in) EraseRef(e.node, kOutList, EdgeRef{n, e.type});
    edge_count -= in.size();
    ListRelease(edges, nodes[n].in, nodes[n], kInList);
  }

  void MaybeCompactStrings() {
    if (dropped_refs < 65536 || dropped_refs < (strings.size() + live_count) / 2) return;
    CompactStrings();
  }

  // Rebuilds both arenas from the strings live nodes still reference. Node indexes and the texts
  // the hash sets hash by stay the same, so the indexes stay valid.
  void CompactStrings() {
    std::vector<char> fresh_arena;
    fresh_arena.reserve(arena.size());
    absl::flat_hash_map<uint32_t, uint32_t> name_remap;  // shared name bytes stay shared
    StringPool fresh;
    std::vector<StrId> remap(strings.size(), kNoStr);
    for (NodeIndex n = 0; n < nodes.size(); ++n) {
      Node& x = nodes[n];
      if (!x.live) continue;
      const std::string_view id = ArenaString(arena, x.id);
      x.id = static_cast<uint32_t>(fresh_arena.size());
      PutLength(fresh_arena, id.size());
      fresh_arena.insert(fresh_arena.end(), id.begin(), id.end());
      if (!(x.name & kSuffixName)) {
        auto [it, inserted] = name_remap.try_emplace(x.name, 0);
        if (inserted) {
          const std::string_view name = ArenaString(arena, x.name);
          it->second = static_cast<uint32_t>(fresh_arena.size());
          PutLength(fresh_arena, name.size());
          fresh_arena.insert(fresh_arena.end(), name.begin(), name.end());
        }
        x.name = it->second;
      }
      for (AttrRec& a : ListMut(attrs, x.attrs, TagOf(x, kAttrList))) {
        if (remap[a.key] == kNoStr) remap[a.key] = fresh.Intern(strings.Get(a.key));
        if (remap[a.value] == kNoStr) remap[a.value] = fresh.Intern(strings.Get(a.value));
        a.key = remap[a.key];
        a.value = remap[a.value];
      }
    }
    fresh_arena.shrink_to_fit();
    arena = std::move(fresh_arena);
    strings = std::move(fresh);
    dropped_refs = 0;
  }

  // Builds sorted_by_name[t] unless current. Safe to call from concurrent readers.
  const std::vector<uint32_t>& SortedByName(size_t t) const {
    const uint32_t bit = 1u << t;
    if (sorted_valid.load(std::memory_order_acquire) & bit) return sorted_by_name[t];
    std::lock_guard<std::mutex> lock(sorted_mu);
    if (sorted_valid.load(std::memory_order_acquire) & bit) return sorted_by_name[t];
    const std::vector<NodeIndex>& of_type = by_type[t];
    // Sort by the first 8 name bytes (big-endian, so integer order is byte order), then by the
    // whole name: most comparisons stay in this cache-friendly vector.
    std::vector<std::pair<uint64_t, uint32_t>> keyed(of_type.size());
    for (uint32_t i = 0; i < of_type.size(); ++i) {
      const std::string_view name = NameOf(of_type[i]);
      uint64_t key = 0;
      for (size_t j = 0; j < 8; ++j) {
        key = (key << 8) | (j < name.size() ? static_cast<unsigned char>(name[j]) : 0u);
      }
      keyed[i] = {key, i};
    }
    std::sort(keyed.begin(), keyed.end(), [&](const auto& a, const auto& b) {
      if (a.first != b.first) return a.first < b.first;
      return NameOf(of_type[a.second]) < NameOf(of_type[b.second]);
    });
    std::vector<uint32_t>& sorted = sorted_by_name[t];
    sorted.resize(keyed.size());
    for (size_t i = 0; i < keyed.size(); ++i) sorted[i] = keyed[i].second;
    sorted_valid.fetch_or(bit, std::memory_order_release);
    return sorted;
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
  // Arguments that point into our own arenas would dangle once they grow: copy them first.
  std::string id_copy, name_copy;
  if (g.Aliases(id)) id = id_copy.assign(id);
  if (g.Aliases(name)) name = name_copy.assign(name);

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
  const auto out = g.OutOf(from);
  const auto in = g.InOf(to);
  if (out.size() <= in.size()) {
    for (const EdgeRef& e : out) {
      if (e.node == to && e.type == type) return;
    }
  } else {
    for (const EdgeRef& e : in) {
      if (e.node == from && e.type == type) return;
    }
  }
  ListPush(g.edges, g.nodes[from].out, g.nodes[from], kOutList, EdgeRef{to, type});
  ListPush(g.edges, g.nodes[to].in, g.nodes[to], kInList, EdgeRef{from, type});
  ++g.edge_count;
}

void Graph::SetAttribute(NodeIndex node, std::string_view key, std::string_view value) {
  Impl& g = *impl_;
  if (!g.Live(node)) return;
  std::string key_copy, value_copy;
  if (g.Aliases(key)) key = key_copy.assign(key);
  if (g.Aliases(value)) value = value_copy.assign(value);
  g.SetAttr(node, key, value);
  g.MaybeCompactStrings();
}

bool Graph::RemoveNode(NodeIndex node) {
  Impl& g = *impl_;
  if (!g.Live(node)) return false;
  g.ClearOut(node);  // self-loops leave both lists here
  g.ClearIn(node);
  Node& x = g.nodes[node];
  g.dropped_refs += 2 + 2 * g.AttrsOf(node).size();
  ListRelease(g.attrs, x.attrs, x, kAttrList);
  g.by_id.erase(node);  // hashed by the id text, so before the id goes
  g.UnlinkName(node);
  auto& of_type = g.by_type[static_cast<size_t>(x.type)];
  of_type.erase(std::find(of_type.begin(), of_type.end(), node));
  x = Node{};
  x.name_next = g.free_head;
  g.free_head = node;
  --g.live_count;
  g.InvalidateSorted();
  g.MaybeCompactStrings();
  return true;
}

size_t RemoveWithOrphans(Graph& graph, NodeIndex root) {
  if (!graph.IsLive(root)) return 0;
  std::vector<NodeIndex> pending{root};
  size_t removed = 0;
  while (!pending.empty()) {
    const NodeIndex node = pending.back();
    pending.pop_back();
    if (!graph.IsLive(node)) continue;  // reached twice
    std::vector<NodeIndex> below;
    for (const EdgeRef& edge : graph.OutEdges(node)) below.push_back(edge.node);
    graph.RemoveNode(node);
    ++removed;
    for (NodeIndex child : below) {
      if (child != node && graph.IsLive(child) && graph.InEdges(child).empty()) {
        pending.push_back(child);
      }
    }
  }
  return removed;
}

void Graph::ClearOutEdges(NodeIndex node) {
  if (impl_->Live(node)) impl_->ClearOut(node);
}

bool Graph::RemoveEdge(NodeIndex from, NodeIndex to, EdgeType type) {
  Impl& g = *impl_;
  if (!g.Live(from) || !g.Live(to)) return false;
  if (!g.EraseRef(from, kOutList, EdgeRef{to, type})) return false;
  g.EraseRef(to, kInList, EdgeRef{from, type});
  --g.edge_count;
  return true;
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
      const std::string_view name = o.NameOf(n);
      NodeIndex m;
      if (auto it = g.by_id.find(id); it != g.by_id.end()) {
        m = *it;
        if (!name.empty()) g.SetName(m, name);
      } else {
        m = g.NewNode(x.type, id, name);
      }
      for (const AttrRec& a : o.AttrsOf(n)) {
        g.SetAttr(m, o.strings.Get(a.key), o.strings.Get(a.value));
      }
      map[n] = m;
    }
  }
  for (NodeIndex n = 0; n < o.nodes.size(); ++n) {
    if (!o.nodes[n].live) continue;
    for (const EdgeRef& e : o.OutOf(n)) AddEdge(map[n], map[e.node], e.type);
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
  auto it = g.by_name.find(name);
  if (it == g.by_name.end()) return result;
  const NodeIndex head = *it;
  NodeIndex n = head;
  do {
    result.push_back(n);
    n = g.nodes[n].name_next;
  } while (n != head);
  return result;
}

std::vector<NodeIndex> Graph::FindByNamePrefix(NodeType type, std::string_view prefix) const {
  const Impl& g = *impl_;
  std::vector<NodeIndex> result;
  const auto t = static_cast<size_t>(type);
  if (t >= kNodeTypeCount) return result;
  const std::vector<NodeIndex>& of_type = g.by_type[t];
  if (prefix.empty()) return of_type;
  const std::vector<uint32_t>& sorted = g.SortedByName(t);
  auto it = std::lower_bound(sorted.begin(), sorted.end(), prefix,
                             [&](uint32_t pos, auto p) { return g.NameOf(of_type[pos]) < p; });
  std::vector<uint32_t> positions;
  for (; it != sorted.end() && g.NameOf(of_type[*it]).starts_with(prefix); ++it) {
    positions.push_back(*it);
  }
  std::sort(positions.begin(), positions.end());  // back to insertion order
  result.reserve(positions.size());
  for (uint32_t pos : positions) result.push_back(of_type[pos]);
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
  return impl_->Live(node) ? impl_->NameOf(node) : std::string_view();
}

std::optional<std::string_view> Graph::Attr(NodeIndex node, std::string_view key) const {
  const Impl& g = *impl_;
  if (!g.Live(node)) return std::nullopt;
  const StrId k = g.strings.Find(key);
  if (k == kNoStr) return std::nullopt;
  for (const AttrRec& a : g.AttrsOf(node)) {
    if (a.key == k) return g.strings.Get(a.value);
  }
  return std::nullopt;
}

std::vector<std::pair<std::string_view, std::string_view>> Graph::Attrs(NodeIndex node) const {
  const Impl& g = *impl_;
  std::vector<std::pair<std::string_view, std::string_view>> result;
  if (!g.Live(node)) return result;
  auto span = g.AttrsOf(node);
  result.reserve(span.size());
  for (const AttrRec& a : span) result.emplace_back(g.strings.Get(a.key), g.strings.Get(a.value));
  return result;
}

std::span<const EdgeRef> Graph::OutEdges(NodeIndex node) const {
  return impl_->Live(node) ? impl_->OutOf(node) : std::span<const EdgeRef>();
}

std::span<const EdgeRef> Graph::InEdges(NodeIndex node) const {
  return impl_->Live(node) ? impl_->InOf(node) : std::span<const EdgeRef>();
}

void Graph::Prefetch(NodeIndex node) const {
  if (node < impl_->nodes.size()) __builtin_prefetch(&impl_->nodes[node]);
}

size_t Graph::node_count() const { return impl_->live_count; }
size_t Graph::edge_count() const { return impl_->edge_count; }

size_t Graph::MemoryBytes() const {
  const Impl& g = *impl_;
  size_t bytes = sizeof(Impl) + g.arena.capacity() + g.strings.MemoryBytes() +
                 g.nodes.capacity() * sizeof(Node) + g.edges.MemoryBytes() + g.attrs.MemoryBytes() +
                 g.by_id.capacity() * (sizeof(NodeIndex) + 1) +
                 g.by_name.capacity() * (sizeof(NodeIndex) + 1);
  for (const auto& v : g.by_type) bytes += v.capacity() * sizeof(NodeIndex);
  for (const auto& v : g.sorted_by_name) bytes += v.capacity() * sizeof(uint32_t);
  return bytes;
}

}  // namespace strata::core
