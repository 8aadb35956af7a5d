#include "strata/core/graph.h"

#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace strata::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

NodeIndex Add(Graph& g, NodeType type, std::string_view id, std::string_view name = "",
              const Attributes& attrs = {}) {
  absl::StatusOr<NodeIndex> n = g.UpsertNode(type, id, name, attrs);
  EXPECT_TRUE(n.ok()) << n.status();
  return n.value_or(kNoNode);
}

TEST(NodeTypeNames, RoundTripEveryType) {
  for (int i = 0; i < kNodeTypeCount; ++i) {
    const auto type = static_cast<NodeType>(i);
    absl::StatusOr<NodeType> parsed = ParseNodeType(NodeTypeName(type));
    ASSERT_TRUE(parsed.ok()) << NodeTypeName(type);
    EXPECT_EQ(*parsed, type);
  }
  for (int i = 0; i < kEdgeTypeCount; ++i) {
    const auto type = static_cast<EdgeType>(i);
    absl::StatusOr<EdgeType> parsed = ParseEdgeType(EdgeTypeName(type));
    ASSERT_TRUE(parsed.ok()) << EdgeTypeName(type);
    EXPECT_EQ(*parsed, type);
  }
  EXPECT_EQ(NodeTypeName(NodeType::kStorageSystem), "storage_system");
  EXPECT_EQ(EdgeTypeName(EdgeType::kBackedBy), "backed_by");
  EXPECT_FALSE(ParseNodeType("vmm").ok());
  EXPECT_FALSE(ParseEdgeType("backs").ok());
}

TEST(Graph, UpsertAddsThenMerges) {
  Graph g;
  const NodeIndex a =
      Add(g, NodeType::kVm, "vm:1", "web01", {{"state", "running"}, {"vcpus", "2"}});
  EXPECT_EQ(g.node_count(), 1u);
  EXPECT_EQ(g.Type(a), NodeType::kVm);
  EXPECT_EQ(g.Id(a), "vm:1");
  EXPECT_EQ(g.Name(a), "web01");

  // Same id: same node; an empty name keeps the old one; attributes replace by key and new keys
  // are appended in order.
  const NodeIndex b = Add(g, NodeType::kVm, "vm:1", "", {{"state", "shut off"}, {"memory", "4G"}});
  EXPECT_EQ(a, b);
  EXPECT_EQ(g.node_count(), 1u);
  EXPECT_EQ(g.Name(a), "web01");
  EXPECT_THAT(g.Attrs(a),
              ElementsAre(Pair("state", "shut off"), Pair("vcpus", "2"), Pair("memory", "4G")));

  // A non-empty name replaces the old one, in the name index too.
  Add(g, NodeType::kVm, "vm:1", "web02");
  EXPECT_EQ(g.Name(a), "web02");
  EXPECT_THAT(g.FindByName("web01"), IsEmpty());
  EXPECT_THAT(g.FindByName("web02"), ElementsAre(a));
}

TEST(Graph, TypeConflictIsAnError) {
  Graph g;
  Add(g, NodeType::kVm, "vm:1234", "web01");
  absl::StatusOr<NodeIndex> n = g.UpsertNode(NodeType::kFile, "vm:1234", "x");
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(n.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(std::string(n.status().message()),
            "node 'vm:1234' already exists with type 'vm', not 'file'");
  EXPECT_EQ(g.Name(*g.Find("vm:1234")), "web01");  // unchanged
}

TEST(Graph, EmptyIdIsAnError) {
  Graph g;
  absl::StatusOr<NodeIndex> n = g.UpsertNode(NodeType::kHost, "", "h");
  ASSERT_FALSE(n.ok());
  EXPECT_EQ(std::string(n.status().message()), "a node of type 'host' has an empty id");
  EXPECT_EQ(g.node_count(), 0u);
}

TEST(Graph, AttributesAreReplacedNotDuplicated) {
  Graph g;
  const NodeIndex n = Add(g, NodeType::kFile, "file:/a", "/a", {{"size", "1"}});
  g.SetAttribute(n, "size", "2");
  g.SetAttribute(n, "format", "raw");
  g.SetAttribute(n, "size", "3");
  EXPECT_THAT(g.Attrs(n), ElementsAre(Pair("size", "3"), Pair("format", "raw")));
  EXPECT_EQ(g.Attr(n, "size"), "3");
  EXPECT_EQ(g.Attr(n, "missing"), std::nullopt);
}

TEST(Graph, EdgesAreDeduplicatedAndVisibleBothWays) {
  Graph g;
  const NodeIndex vm = Add(g, NodeType::kVm, "vm:1", "web01");
  const NodeIndex disk = Add(g, NodeType::kVirtualDisk, "vd:1", "vda");
  g.AddEdge(vm, disk, EdgeType::kHasDisk);
  g.AddEdge(vm, disk, EdgeType::kHasDisk);
  g.AddEdge(vm, disk, EdgeType::kBackedBy);  // another type is another edge
  EXPECT_EQ(g.edge_count(), 2u);
  EXPECT_THAT(g.OutEdges(vm),
              ElementsAre(EdgeRef{disk, EdgeType::kHasDisk}, EdgeRef{disk, EdgeType::kBackedBy}));
  EXPECT_THAT(g.InEdges(disk),
              ElementsAre(EdgeRef{vm, EdgeType::kHasDisk}, EdgeRef{vm, EdgeType::kBackedBy}));
  EXPECT_THAT(g.InEdges(vm), IsEmpty());

  // Dedup also holds when the `to` side has the shorter list.
  const NodeIndex host = Add(g, NodeType::kHost, "host:1", "h1");
  for (int i = 0; i < 5; ++i)
    g.AddEdge(host, Add(g, NodeType::kVm, "vm:x" + std::to_string(i)), EdgeType::kRuns);
  g.AddEdge(host, vm, EdgeType::kRuns);
  g.AddEdge(host, vm, EdgeType::kRuns);
  EXPECT_EQ(g.OutEdges(host).size(), 6u);
  EXPECT_EQ(g.edge_count(), 8u);
}

TEST(Graph, RemoveNodeKeepsOtherNodesAndReusesTheSlot) {
  Graph g;
  const NodeIndex vm = Add(g, NodeType::kVm, "vm:1", "web01");
  const NodeIndex d1 = Add(g, NodeType::kVirtualDisk, "vd:1", "vda", {{"bus", "virtio"}});
  const NodeIndex d2 = Add(g, NodeType::kVirtualDisk, "vd:2", "vda");
  const NodeIndex f = Add(g, NodeType::kFile, "file:/x", "/x");
  g.AddEdge(vm, d1, EdgeType::kHasDisk);
  g.AddEdge(vm, d2, EdgeType::kHasDisk);
  g.AddEdge(d1, f, EdgeType::kBackedBy);
  g.AddEdge(d1, d1, EdgeType::kBackedBy);  // a self-loop must not confuse the bookkeeping
  EXPECT_EQ(g.edge_count(), 4u);

  EXPECT_TRUE(g.RemoveNode(d1));
  EXPECT_FALSE(g.RemoveNode(d1));
  EXPECT_FALSE(g.IsLive(d1));
  EXPECT_EQ(g.node_count(), 3u);
  EXPECT_EQ(g.edge_count(), 1u);
  EXPECT_EQ(g.Find("vd:1"), std::nullopt);
  EXPECT_THAT(g.OutEdges(vm), ElementsAre(EdgeRef{d2, EdgeType::kHasDisk}));
  EXPECT_THAT(g.InEdges(f), IsEmpty());
  EXPECT_THAT(g.FindByName("vda"), ElementsAre(d2));
  // Everyone else is untouched.
  EXPECT_EQ(g.Find("vd:2"), d2);
  EXPECT_EQ(g.Name(d2), "vda");
  EXPECT_EQ(g.Id(f), "file:/x");
  EXPECT_THAT(g.AllNodes(), ElementsAre(vm, d2, f));

  // The slot comes back, clean.
  const NodeIndex h = Add(g, NodeType::kHost, "host:1", "h1");
  EXPECT_EQ(h, d1);
  EXPECT_THAT(g.Attrs(h), IsEmpty());
  EXPECT_THAT(g.OutEdges(h), IsEmpty());
  EXPECT_THAT(g.InEdges(h), IsEmpty());
  EXPECT_EQ(g.Type(h), NodeType::kHost);
}

TEST(Graph, NodesOfTypeAfterRemovals) {
  Graph g;
  std::vector<NodeIndex> vms;
  for (int i = 0; i < 6; ++i) vms.push_back(Add(g, NodeType::kVm, "vm:" + std::to_string(i)));
  const NodeIndex host = Add(g, NodeType::kHost, "host:1");
  g.RemoveNode(vms[0]);
  g.RemoveNode(vms[3]);
  g.RemoveNode(vms[5]);
  EXPECT_THAT(g.NodesOfType(NodeType::kVm), ElementsAre(vms[1], vms[2], vms[4]));
  EXPECT_THAT(g.NodesOfType(NodeType::kHost), ElementsAre(host));
  EXPECT_THAT(g.NodesOfType(NodeType::kLun), IsEmpty());
  // A reused slot is appended at the end: insertion order, not index order.
  const NodeIndex again = Add(g, NodeType::kVm, "vm:new");
  EXPECT_THAT(g.NodesOfType(NodeType::kVm), ElementsAre(vms[1], vms[2], vms[4], again));
}

TEST(Graph, ClearOutEdges) {
  Graph g;
  const NodeIndex a = Add(g, NodeType::kFile, "file:/a");
  const NodeIndex b = Add(g, NodeType::kFile, "file:/b");
  const NodeIndex c = Add(g, NodeType::kFile, "file:/c");
  g.AddEdge(a, b, EdgeType::kBackedBy);
  g.AddEdge(a, c, EdgeType::kBackedBy);
  g.AddEdge(c, a, EdgeType::kBackedBy);
  g.ClearOutEdges(a);
  EXPECT_THAT(g.OutEdges(a), IsEmpty());
  EXPECT_THAT(g.InEdges(b), IsEmpty());
  EXPECT_THAT(g.InEdges(a), ElementsAre(EdgeRef{c, EdgeType::kBackedBy}));
  EXPECT_EQ(g.edge_count(), 1u);
}

TEST(Graph, RemoveEdgeRemovesOnlyThatEdge) {
  Graph g;
  NodeIndex a = Add(g, NodeType::kVm, "vm:a");
  NodeIndex b = Add(g, NodeType::kVirtualDisk, "disk:a:vda");
  NodeIndex c = Add(g, NodeType::kVmConfig, "vm_config:a");
  g.AddEdge(a, b, EdgeType::kHasDisk);
  g.AddEdge(a, c, EdgeType::kHasConfig);
  g.AddEdge(a, b, EdgeType::kBackedBy);
  ASSERT_EQ(g.edge_count(), 3u);
  EXPECT_TRUE(g.RemoveEdge(a, b, EdgeType::kHasDisk));
  EXPECT_FALSE(g.RemoveEdge(a, b, EdgeType::kHasDisk));   // already gone
  EXPECT_FALSE(g.RemoveEdge(b, a, EdgeType::kBackedBy));  // never existed
  EXPECT_EQ(g.edge_count(), 2u);
  EXPECT_THAT(g.OutEdges(a), UnorderedElementsAre(EdgeRef{c, EdgeType::kHasConfig},
                                                  EdgeRef{b, EdgeType::kBackedBy}));
  EXPECT_THAT(g.InEdges(b), ElementsAre(EdgeRef{a, EdgeType::kBackedBy}));
  g.AddEdge(a, b, EdgeType::kHasDisk);  // can be added again
  EXPECT_EQ(g.edge_count(), 3u);
  g.RemoveNode(b);
  EXPECT_FALSE(g.RemoveEdge(a, b, EdgeType::kBackedBy));
  EXPECT_EQ(g.edge_count(), 1u);
}

TEST(Graph, FindByNameReturnsEveryNodeWithThatName) {
  Graph g;
  const NodeIndex a = Add(g, NodeType::kVirtualDisk, "vd:1", "vda");
  const NodeIndex b = Add(g, NodeType::kVirtualDisk, "vd:2", "vdb");
  const NodeIndex c = Add(g, NodeType::kVirtualDisk, "vd:3", "vda");
  EXPECT_THAT(g.FindByName("vda"), ElementsAre(a, c));
  EXPECT_THAT(g.FindByName("vdb"), ElementsAre(b));
  EXPECT_THAT(g.FindByName("vdc"), IsEmpty());
  EXPECT_EQ(g.Find("vd:3"), c);
  EXPECT_EQ(g.Find("vd:4"), std::nullopt);
}

// Two hosts see the same storage system; the merged graph has it once.
TEST(Graph, FindByNameAfterRenamesAndRemovals) {
  Graph g;
  const NodeIndex a = Add(g, NodeType::kVirtualDisk, "vd:1", "vda");
  const NodeIndex b = Add(g, NodeType::kVirtualDisk, "vd:2", "vda");
  const NodeIndex c = Add(g, NodeType::kVirtualDisk, "vd:3:vda", "vda");  // name ends the id
  const NodeIndex d = Add(g, NodeType::kVirtualDisk, "vd:4", "vda");
  EXPECT_THAT(g.FindByName("vda"), ElementsAre(a, b, c, d));
  g.RemoveNode(a);  // the oldest
  EXPECT_THAT(g.FindByName("vda"), ElementsAre(b, c, d));
  Add(g, NodeType::kVirtualDisk, "vd:2", "vdb");  // rename
  EXPECT_THAT(g.FindByName("vda"), ElementsAre(c, d));
  EXPECT_THAT(g.FindByName("vdb"), ElementsAre(b));
  Add(g, NodeType::kVirtualDisk, "vd:2", "vda");  // and back: now the newest
  EXPECT_THAT(g.FindByName("vda"), ElementsAre(c, d, b));
  g.RemoveNode(d);
  EXPECT_THAT(g.FindByName("vda"), ElementsAre(c, b));
  EXPECT_EQ(g.Name(b), "vda");
  EXPECT_EQ(g.Name(c), "vda");
  EXPECT_EQ(g.Id(c), "vd:3:vda");
  const NodeIndex e = Add(g, NodeType::kVirtualDisk, "vd:5");  // empty names are found too
  EXPECT_THAT(g.FindByName(""), ElementsAre(e));
}

TEST(Graph, FindByNamePrefix) {
  Graph g;
  const NodeIndex a = Add(g, NodeType::kVm, "vm:1", "web02");
  const NodeIndex b = Add(g, NodeType::kVm, "vm:2", "db01");
  const NodeIndex c = Add(g, NodeType::kVm, "vm:3", "web01");
  const NodeIndex d = Add(g, NodeType::kHost, "host:1", "web03");
  // In NodesOfType order, whatever the names' order.
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kVm, "web"), ElementsAre(a, c));
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kVm, "web01"), ElementsAre(c));
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kVm, "web011"), IsEmpty());
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kVm, ""), ElementsAre(a, b, c));
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kVm, "x"), IsEmpty());
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kHost, "web"), ElementsAre(d));
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kLun, "web"), IsEmpty());
  // Every mutation that touches names or the node set is seen by the next call.
  const NodeIndex e = Add(g, NodeType::kVm, "vm:4", "web00");
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kVm, "web"), ElementsAre(a, c, e));
  Add(g, NodeType::kVm, "vm:1", "app01");
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kVm, "web"), ElementsAre(c, e));
  g.RemoveNode(c);
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kVm, "web"), ElementsAre(e));
  Graph copy = g;
  g.RemoveNode(e);
  EXPECT_THAT(g.FindByNamePrefix(NodeType::kVm, "web"), IsEmpty());
  EXPECT_THAT(copy.FindByNamePrefix(NodeType::kVm, "web"), ElementsAre(e));
}

TEST(Graph, FindByNamePrefixFromConcurrentReaders) {
  Graph g;
  for (int i = 0; i < 5000; ++i) {
    Add(g, NodeType::kVm, "vm:" + std::to_string(i), "vm-" + std::to_string(i));
  }
  std::vector<size_t> found(4);
  std::vector<std::thread> readers;
  for (size_t t = 0; t < found.size(); ++t) {
    readers.emplace_back(
        [&g, &found, t] { found[t] = g.FindByNamePrefix(NodeType::kVm, "vm-12").size(); });
  }
  for (auto& r : readers) r.join();
  for (size_t n : found) EXPECT_EQ(n, 111u);  // vm-12, vm-120..129, vm-1200..1299
}

// One edge each way is kept inside the node record; lists move between that and the pool.
TEST(Graph, EdgeListsGrowAndShrinkInEveryOrder) {
  Graph g;
  const NodeIndex hub = Add(g, NodeType::kStorageVolume, "sv:1");
  std::vector<NodeIndex> leaves;
  for (int i = 0; i < 6; ++i) {
    leaves.push_back(Add(g, NodeType::kFile, "file:" + std::to_string(i)));
  }
  for (int round = 0; round < 2; ++round) {
    for (NodeIndex l : leaves) {
      g.AddEdge(l, hub, EdgeType::kInVolume);
      g.AddEdge(hub, l, EdgeType::kBackedBy);  // both directions, so the hub has both lists
    }
    EXPECT_EQ(g.InEdges(hub).size(), 6u);
    EXPECT_EQ(g.OutEdges(hub).size(), 6u);
    // Remove from the middle, the front and the back until empty.
    const std::vector<size_t> order =
        round == 0 ? std::vector<size_t>{2, 0, 5, 1, 4, 3} : std::vector<size_t>{5, 4, 3, 2, 1, 0};
    for (size_t k = 0; k < order.size(); ++k) {
      EXPECT_TRUE(g.RemoveEdge(leaves[order[k]], hub, EdgeType::kInVolume));
      EXPECT_TRUE(g.RemoveEdge(hub, leaves[order[k]], EdgeType::kBackedBy));
      std::vector<EdgeRef> in_expected, out_expected;
      for (size_t i = 0; i < leaves.size(); ++i) {
        if (std::find(order.begin(), order.begin() + k + 1, i) != order.begin() + k + 1) continue;
        in_expected.push_back({leaves[i], EdgeType::kInVolume});
        out_expected.push_back({leaves[i], EdgeType::kBackedBy});
      }
      EXPECT_EQ(std::vector<EdgeRef>(g.InEdges(hub).begin(), g.InEdges(hub).end()), in_expected);
      EXPECT_EQ(std::vector<EdgeRef>(g.OutEdges(hub).begin(), g.OutEdges(hub).end()), out_expected);
      EXPECT_THAT(g.OutEdges(leaves[order[k]]), IsEmpty());
    }
    EXPECT_EQ(g.edge_count(), 0u);
  }
  // Self-loops next to ordinary edges, removed with the node.
  g.AddEdge(hub, hub, EdgeType::kBackedBy);
  g.AddEdge(hub, leaves[0], EdgeType::kBackedBy);
  g.AddEdge(leaves[1], hub, EdgeType::kInVolume);
  EXPECT_EQ(g.edge_count(), 3u);
  g.RemoveNode(hub);
  EXPECT_EQ(g.edge_count(), 0u);
  EXPECT_THAT(g.InEdges(leaves[0]), IsEmpty());
  EXPECT_THAT(g.OutEdges(leaves[1]), IsEmpty());
}

TEST(Graph, MergeSharesNodesById) {
  Graph h1, h2;
  {
    const NodeIndex host = Add(h1, NodeType::kHost, "host:1", "h1");
    const NodeIndex vol = Add(h1, NodeType::kStorageVolume, "sv:1", "vol1");
    const NodeIndex ss =
        Add(h1, NodeType::kStorageSystem, "ss:ceph:f", "ceph", {{"vendor", "ceph"}});
    h1.AddEdge(host, vol, EdgeType::kHasMember);
    h1.AddEdge(vol, ss, EdgeType::kInSystem);
  }
  {
    const NodeIndex host = Add(h2, NodeType::kHost, "host:2", "h2");
    const NodeIndex vol = Add(h2, NodeType::kStorageVolume, "sv:2", "vol2");
    const NodeIndex ss = Add(h2, NodeType::kStorageSystem, "ss:ceph:f", "", {{"health", "ok"}});
    h2.AddEdge(host, vol, EdgeType::kHasMember);
    h2.AddEdge(vol, ss, EdgeType::kInSystem);
  }
  Graph merged;
  ASSERT_TRUE(merged.Merge(h1).ok());
  ASSERT_TRUE(merged.Merge(h2).ok());
  EXPECT_EQ(merged.node_count(), 5u);
  EXPECT_EQ(merged.edge_count(), 4u);
  EXPECT_THAT(merged.NodesOfType(NodeType::kStorageSystem), ::testing::SizeIs(1));
  const NodeIndex ss = *merged.Find("ss:ceph:f");
  EXPECT_EQ(merged.Name(ss), "ceph");
  EXPECT_THAT(merged.Attrs(ss), ElementsAre(Pair("vendor", "ceph"), Pair("health", "ok")));
  EXPECT_THAT(merged.InEdges(ss),
              UnorderedElementsAre(EdgeRef{*merged.Find("sv:1"), EdgeType::kInSystem},
                                   EdgeRef{*merged.Find("sv:2"), EdgeType::kInSystem}));
  // Merging again changes nothing.
  ASSERT_TRUE(merged.Merge(h2).ok());
  EXPECT_EQ(merged.node_count(), 5u);
  EXPECT_EQ(merged.edge_count(), 4u);
}

TEST(Graph, MergeWithTypeConflictChangesNothing) {
  Graph a, b;
  Add(a, NodeType::kVm, "x:1");
  Add(b, NodeType::kHost, "h:1");
  Add(b, NodeType::kFile, "x:1");
  absl::Status s = a.Merge(b);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(std::string(s.message()),
            "cannot merge graphs: node 'x:1' has type 'vm' here and type 'file' in the other "
            "graph");
  EXPECT_EQ(a.node_count(), 1u);
  EXPECT_EQ(a.Find("h:1"), std::nullopt);
}

TEST(Graph, CopyAndMoveAreIndependentValues) {
  Graph g;
  const NodeIndex a = Add(g, NodeType::kVm, "vm:1", "web01", {{"state", "running"}});
  const NodeIndex b = Add(g, NodeType::kVirtualDisk, "vd:1", "vda");
  g.AddEdge(a, b, EdgeType::kHasDisk);
  Graph copy = g;
  g.SetAttribute(a, "state", "stopped");
  Add(g, NodeType::kVm, "vm:2", "web02");
  EXPECT_EQ(copy.node_count(), 2u);
  EXPECT_EQ(copy.Attr(a, "state"), "running");
  EXPECT_EQ(copy.Find("vm:1"), a);  // the copy's indexes work on its own storage
  EXPECT_EQ(copy.Find("vm:2"), std::nullopt);
  EXPECT_THAT(copy.FindByName("vda"), ElementsAre(b));
  EXPECT_THAT(copy.OutEdges(a), ElementsAre(EdgeRef{b, EdgeType::kHasDisk}));

  Graph moved = std::move(copy);
  EXPECT_EQ(moved.Find("vd:1"), b);
  copy = moved;  // a moved-from graph can be assigned again
  EXPECT_EQ(copy.Find("vd:1"), b);
}

TEST(Graph, ArgumentsPointingIntoTheGraphAreSafe) {
  Graph g;
  const NodeIndex a = Add(g, NodeType::kFile, "file:/srv/a", "/srv/a");
  // Views into the graph's own storage, used while the graph grows.
  for (int i = 0; i < 2000; ++i) {
    const NodeIndex n =
        Add(g, NodeType::kFile, std::string(g.Id(a)) + std::to_string(i), g.Name(a));
    g.SetAttribute(n, g.Id(a), g.Name(n));
  }
  EXPECT_EQ(g.FindByName("/srv/a").size(), 2001u);
  EXPECT_EQ(g.Attr(*g.Find("file:/srv/a1999"), "file:/srv/a"), "/srv/a");
}

// Replaced values leave garbage that must be reclaimed, or a long-lived graph grows forever.
TEST(Graph, ChurnDoesNotGrowMemoryWithoutBound) {
  Graph g;
  std::vector<NodeIndex> nodes;
  for (int i = 0; i < 1000; ++i) {
    nodes.push_back(Add(g, NodeType::kFile, "file:" + std::to_string(i), "f" + std::to_string(i)));
  }
  size_t after_first_round = 0;
  for (int round = 0; round < 400; ++round) {
    for (NodeIndex n : nodes) {
      g.SetAttribute(n, "seen", "scan-" + std::to_string(round) + "-" + std::to_string(n));
    }
    if (round == 20) after_first_round = g.MemoryBytes();
  }
  EXPECT_LT(g.MemoryBytes(), 2 * after_first_round);
  EXPECT_EQ(g.Attr(nodes[7], "seen"), "scan-399-" + std::to_string(nodes[7]));
  EXPECT_EQ(g.Name(nodes[7]), "f7");
  EXPECT_THAT(g.FindByName("f7"), ElementsAre(nodes[7]));
  EXPECT_EQ(g.Find("file:7"), nodes[7]);
}

TEST(Graph, RemoveAndReAddManyNodes) {
  Graph g;
  for (int round = 0; round < 3; ++round) {
    std::vector<NodeIndex> added;
    for (int i = 0; i < 3000; ++i) {
      const NodeIndex n =
          Add(g, NodeType::kVirtualDisk, "vd:" + std::to_string(round) + ":" + std::to_string(i),
              "vda", {{"round", std::to_string(round)}});
      if (!added.empty()) g.AddEdge(added.back(), n, EdgeType::kBackedBy);
      added.push_back(n);
    }
    EXPECT_EQ(g.node_count(), 3000u);
    EXPECT_EQ(g.edge_count(), 2999u);
    for (size_t i = 0; i < added.size(); i += 2) g.RemoveNode(added[i]);
    for (size_t i = 1; i < added.size(); i += 2) g.RemoveNode(added[i]);
    EXPECT_EQ(g.node_count(), 0u);
    EXPECT_EQ(g.edge_count(), 0u);
    EXPECT_THAT(g.FindByName("vda"), IsEmpty());
    EXPECT_THAT(g.NodesOfType(NodeType::kVirtualDisk), IsEmpty());
  }
}

TEST(Graph, MemoryBytesGrowsWithContent) {
  Graph g;
  const size_t empty = g.MemoryBytes();
  for (int i = 0; i < 1000; ++i) Add(g, NodeType::kVm, "vm:" + std::to_string(i), "vm");
  EXPECT_GT(g.MemoryBytes(), empty + 1000 * 8);
}

}  // namespace
}  // namespace strata::core

namespace strata::core {
namespace {

TEST(RemoveWithOrphans, RemovesWhatOnlyTheRootHeldUp) {
  Graph g;
  const NodeIndex host = Add(g, NodeType::kHost, "host:a", "a");
  const NodeIndex web01 = Add(g, NodeType::kVm, "vm:1", "web01");
  const NodeIndex web02 = Add(g, NodeType::kVm, "vm:2", "web02");
  const NodeIndex d1 = Add(g, NodeType::kVirtualDisk, "disk:1:vda", "vda");
  const NodeIndex d2 = Add(g, NodeType::kVirtualDisk, "disk:2:vda", "vda");
  const NodeIndex top1 = Add(g, NodeType::kFile, "file:fs1:/web01.qcow2", "web01.qcow2");
  const NodeIndex top2 = Add(g, NodeType::kFile, "file:fs1:/web02.qcow2", "web02.qcow2");
  const NodeIndex base = Add(g, NodeType::kFile, "file:fs1:/base.qcow2", "base.qcow2");
  const NodeIndex fs = Add(g, NodeType::kFsVolume, "fs:1", "fs1");
  g.AddEdge(host, web01, EdgeType::kRuns);
  g.AddEdge(host, web02, EdgeType::kRuns);
  g.AddEdge(web01, d1, EdgeType::kHasDisk);
  g.AddEdge(web02, d2, EdgeType::kHasDisk);
  g.AddEdge(d1, top1, EdgeType::kBackedBy);
  g.AddEdge(d2, top2, EdgeType::kBackedBy);
  g.AddEdge(top1, base, EdgeType::kBackedBy);
  g.AddEdge(top2, base, EdgeType::kBackedBy);
  g.AddEdge(top1, fs, EdgeType::kInVolume);
  g.AddEdge(top2, fs, EdgeType::kInVolume);
  g.AddEdge(base, fs, EdgeType::kInVolume);

  EXPECT_EQ(RemoveWithOrphans(g, web01), 3u);  // web01, its disk, its overlay
  EXPECT_FALSE(g.Find("vm:1").has_value());
  EXPECT_FALSE(g.Find("disk:1:vda").has_value());
  EXPECT_FALSE(g.Find("file:fs1:/web01.qcow2").has_value());
  EXPECT_TRUE(g.Find("file:fs1:/base.qcow2").has_value());  // web02 still rests on it
  EXPECT_TRUE(g.Find("fs:1").has_value());
  EXPECT_TRUE(g.Find("host:a").has_value());  // above the root: never touched

  EXPECT_EQ(RemoveWithOrphans(g, web02), 5u);  // now the base and the fs go too
  EXPECT_EQ(g.node_count(), 1u);
  EXPECT_EQ(g.edge_count(), 0u);
  EXPECT_EQ(RemoveWithOrphans(g, web02), 0u);  // no longer live
}

}  // namespace
}  // namespace strata::core
