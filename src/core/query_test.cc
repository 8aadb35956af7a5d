#include "strata/core/query.h"

#include <fnmatch.h>

#include <random>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace strata::core {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

NodeIndex Add(Graph& g, NodeType type, std::string_view id, std::string_view name,
              const Attributes& attrs = {}) {
  absl::StatusOr<NodeIndex> n = g.UpsertNode(type, id, name, attrs);
  EXPECT_TRUE(n.ok()) << n.status();
  return n.value_or(kNoNode);
}

// host h1 runs web01 (two disks) and db01 (one disk); every file sits on volume vol1 of storage
// system ceph; db01's file is also backed by the shared base image.
struct Fixture {
  Graph g;
  NodeIndex host, web, db, vda, vdb, dbvda, f1, f2, f3, base, vol, ss, cfg;
  Fixture() {
    host = Add(g, NodeType::kHost, "host:1", "h1");
    web = Add(g, NodeType::kVm, "vm:1", "web01", {{"state", "running"}, {"vcpus", "2"}});
    db = Add(g, NodeType::kVm, "vm:2", "db01", {{"state", "shut off"}});
    cfg = Add(g, NodeType::kVmConfig, "cfg:1", "/etc/libvirt/qemu/web01.xml");
    vda = Add(g, NodeType::kVirtualDisk, "vd:1:vda", "vda");
    vdb = Add(g, NodeType::kVirtualDisk, "vd:1:vdb", "vdb");
    dbvda = Add(g, NodeType::kVirtualDisk, "vd:2:vda", "vda");
    f1 = Add(g, NodeType::kFile, "file:/srv/a/web01.qcow2", "/srv/a/web01.qcow2",
             {{"format", "qcow2"}});
    f2 = Add(g, NodeType::kFile, "file:/srv/a/web01-data.raw", "/srv/a/web01-data.raw");
    f3 = Add(g, NodeType::kFile, "file:/srv/a/db01.qcow2", "/srv/a/db01.qcow2");
    base = Add(g, NodeType::kFile, "file:/srv/a/base.qcow2", "/srv/a/base.qcow2");
    vol = Add(g, NodeType::kStorageVolume, "sv:1", "vol1");
    ss = Add(g, NodeType::kStorageSystem, "ss:ceph:1", "ceph");
    g.AddEdge(host, web, EdgeType::kRuns);
    g.AddEdge(host, db, EdgeType::kRuns);
    g.AddEdge(web, cfg, EdgeType::kHasConfig);
    g.AddEdge(web, vda, EdgeType::kHasDisk);
    g.AddEdge(web, vdb, EdgeType::kHasDisk);
    g.AddEdge(db, dbvda, EdgeType::kHasDisk);
    g.AddEdge(vda, f1, EdgeType::kBackedBy);
    g.AddEdge(vdb, f2, EdgeType::kBackedBy);
    g.AddEdge(dbvda, f3, EdgeType::kBackedBy);
    g.AddEdge(f3, base, EdgeType::kBackedBy);
    for (NodeIndex f : {f1, f2, f3, base}) g.AddEdge(f, vol, EdgeType::kInVolume);
    g.AddEdge(vol, ss, EdgeType::kInSystem);
  }
};

Selector Sel(std::string_view text) {
  absl::StatusOr<Selector> s = ParseSelector(text);
  EXPECT_TRUE(s.ok()) << s.status();
  return s.value_or(Selector{});
}

std::string ErrorOf(std::string_view text) {
  absl::StatusOr<Selector> s = ParseSelector(text);
  EXPECT_FALSE(s.ok()) << text;
  if (s.ok()) return "";
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(s.status().message());
}

TEST(GlobMatch, Basics) {
  EXPECT_TRUE(GlobMatch("web*", "web01"));
  EXPECT_TRUE(GlobMatch("web*", "web"));
  EXPECT_FALSE(GlobMatch("web*", "db01"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("", ""));
  EXPECT_FALSE(GlobMatch("", "a"));
  EXPECT_TRUE(GlobMatch("w?b0[0-9]", "web01"));
  EXPECT_FALSE(GlobMatch("w?b0[!0-9]", "web01"));
  EXPECT_TRUE(GlobMatch("*/a/*.qcow2", "/srv/a/web01.qcow2"));  // '*' crosses '/'
  EXPECT_TRUE(GlobMatch("a\\*b", "a*b"));
  EXPECT_FALSE(GlobMatch("a\\*b", "axb"));
  EXPECT_TRUE(GlobMatch("[]]", "]"));
  EXPECT_TRUE(GlobMatch("[[:digit:]]x", "7x"));
  EXPECT_TRUE(GlobMatch("[a", "[a"));  // unterminated bracket: literal '['
  EXPECT_TRUE(GlobMatch("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaab"));
  EXPECT_FALSE(GlobMatch("*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
}

// Random patterns and texts over a small alphabet must match exactly as fnmatch(3) does.
TEST(GlobMatch, AgreesWithFnmatch) {
  std::mt19937 rng(7);
  const std::string pattern_chars = "ab.-/*?[]!^\\:=";
  const std::string text_chars = "ab.-/[]!^\\*";
  auto random_string = [&](const std::string& alphabet, size_t max_len) {
    std::string s(rng() % (max_len + 1), ' ');
    for (char& c : s) c = alphabet[rng() % alphabet.size()];
    return s;
  };
  int matches = 0;
  for (int i = 0; i < 200000; ++i) {
    const std::string p = random_string(pattern_chars, 7);
    const std::string t = random_string(text_chars, 8);
    const bool expected = fnmatch(p.c_str(), t.c_str(), 0) == 0;
    ASSERT_EQ(GlobMatch(p, t), expected) << "pattern '" << p << "' text '" << t << "'";
    matches += expected;
  }
  EXPECT_GT(matches, 1000);  // the comparison covered matches, not only misses
}

TEST(ParseSelector, Terms) {
  Selector s = Sel("type=vm name=web*, attr.state=running vcpus=2");
  EXPECT_EQ(s.type, NodeType::kVm);
  ASSERT_EQ(s.matches.size(), 3u);
  EXPECT_EQ(s.matches[0].key, "name");
  EXPECT_EQ(s.matches[0].pattern, "web*");
  EXPECT_EQ(s.matches[1].key, "state");
  EXPECT_EQ(s.matches[1].pattern, "running");
  EXPECT_EQ(s.matches[2].key, "vcpus");
  EXPECT_EQ(s.matches[2].pattern, "2");

  Selector e = Sel("  ");
  EXPECT_FALSE(e.type.has_value());
  EXPECT_THAT(e.matches, IsEmpty());
}

TEST(ParseSelector, Errors) {
  EXPECT_EQ(ErrorOf("type=vmm"),
            "unknown node type 'vmm' (known types: cluster, host, vm, vm_config, virtual_disk, "
            "passthrough_disk, file, mount_point, fs_volume, block_device, lun, storage_volume, "
            "storage_system, vm_snapshot, storage_snapshot, backup)");
  EXPECT_EQ(ErrorOf("type=vm web01"), "selector term 'web01' has no '=' (expected key=value)");
  EXPECT_EQ(ErrorOf("=web01"), "selector term '=web01' has an empty key");
  EXPECT_EQ(ErrorOf("attr.=x"), "selector term 'attr.=x' has an empty key");
  EXPECT_EQ(ErrorOf("type=vm,type=host"), "selector names two types, 'vm' and 'host'");
}

TEST(Select, ExactGlobAndAttributes) {
  Fixture f;
  EXPECT_THAT(Select(f.g, Sel("type=vm")), ElementsAre(f.web, f.db));
  EXPECT_THAT(Select(f.g, Sel("name=web01")), ElementsAre(f.web));
  EXPECT_THAT(Select(f.g, Sel("name=vda")), ElementsAre(f.vda, f.dbvda));
  EXPECT_THAT(Select(f.g, Sel("type=vm name=vda")), IsEmpty());
  EXPECT_THAT(Select(f.g, Sel("id=vd:2:vda")), ElementsAre(f.dbvda));
  EXPECT_THAT(Select(f.g, Sel("id=vd:2:vda type=vm")), IsEmpty());
  EXPECT_THAT(Select(f.g, Sel("id=vd:*:vda")), ElementsAre(f.vda, f.dbvda));
  EXPECT_THAT(Select(f.g, Sel("type=file name=*web01*")), ElementsAre(f.f1, f.f2));
  EXPECT_THAT(Select(f.g, Sel("state=running")), ElementsAre(f.web));
  EXPECT_THAT(Select(f.g, Sel("attr.state=shut*")), ElementsAre(f.db));
  EXPECT_THAT(Select(f.g, Sel("type=vm state=*")), ElementsAre(f.web, f.db));
  EXPECT_THAT(Select(f.g, Sel("type=file format=*")), ElementsAre(f.f1));  // absent never matches
  EXPECT_THAT(Select(f.g, Sel("name=web01 state=shut*")), IsEmpty());
  EXPECT_THAT(Select(f.g, Sel("name=nothing")), IsEmpty());
  EXPECT_EQ(Select(f.g, Selector{}).size(), f.g.node_count());
}

// Name globs with a literal prefix are answered from the name index; the answer must be the
// one a full scan gives, in the same order.
TEST(Select, PrefixGlobsMatchAFullScan) {
  Graph g;
  std::mt19937 rng(7);
  const char* kNames[] = {"web", "web0", "db", "w[b", "w*b", "we?", ""};
  for (int i = 0; i < 400; ++i) {
    const auto type = static_cast<NodeType>(rng() % 3);
    const std::string name = std::string(kNames[rng() % 7]) + std::to_string(rng() % 50);
    Add(g, type, "n:" + std::to_string(i), name);
  }
  for (int i = 0; i < 400; i += 7) g.RemoveNode(static_cast<NodeIndex>(i));  // holes, reuse
  for (int i = 0; i < 20; ++i) Add(g, NodeType::kHost, "late:" + std::to_string(i), "web1");
  for (const char* pattern : {"web*", "web0?", "web1*", "w\\[b*", "w[*]b*", "w\\*b1*", "we?*",
                              "db4[0-9]", "x*", "*", "w"}) {
    for (const char* type : {"", "type=cluster ", "type=host ", "type=vm "}) {
      SCOPED_TRACE(std::string(type) + pattern);
      Selector sel = Sel(type);
      sel.matches.push_back({"name", pattern});
      std::vector<NodeIndex> expected;
      for (NodeIndex n : sel.type ? std::vector<NodeIndex>(g.NodesOfType(*sel.type).begin(),
                                                           g.NodesOfType(*sel.type).end())
                                  : g.AllNodes()) {
        if (GlobMatch(pattern, g.Name(n))) expected.push_back(n);
      }
      EXPECT_EQ(Select(g, sel), expected);
    }
  }
}

Query Traversal(std::string_view selector, Direction dir, std::optional<NodeType> to = std::nullopt,
                int depth = -1) {
  Query q;
  q.select = Sel(selector);
  q.direction = dir;
  q.to_type = to;
  q.max_depth = depth;
  return q;
}

TEST(RunQuery, DownToStorageSystem) {
  Fixture f;
  absl::StatusOr<Subgraph> r =
      RunQuery(f.g, Traversal("name=db01", Direction::kDown, NodeType::kStorageSystem));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_THAT(r->roots, ElementsAre(f.db));
  // The config is not on a path to storage; the base image is (db's file is backed by it).
  EXPECT_THAT(r->nodes, UnorderedElementsAre(f.db, f.dbvda, f.f3, f.base, f.vol, f.ss));
  EXPECT_EQ(r->edges.size(), 6u);
  std::vector<NodeIndex> systems;
  for (NodeIndex n : r->nodes) {
    if (f.g.Type(n) == NodeType::kStorageSystem) systems.push_back(n);
  }
  EXPECT_THAT(systems, ElementsAre(f.ss));

  absl::StatusOr<Subgraph> web =
      RunQuery(f.g, Traversal("type=vm name=web01", Direction::kDown, NodeType::kStorageSystem));
  ASSERT_TRUE(web.ok());
  EXPECT_THAT(web->nodes, UnorderedElementsAre(f.web, f.vda, f.vdb, f.f1, f.f2, f.vol, f.ss));
  EXPECT_THAT(web->nodes, ::testing::Not(::testing::Contains(f.cfg)));
}

TEST(RunQuery, UpToVm) {
  Fixture f;
  absl::StatusOr<Subgraph> r = RunQuery(f.g, Traversal("id=sv:1", Direction::kUp, NodeType::kVm));
  ASSERT_TRUE(r.ok()) << r.status();
  std::vector<NodeIndex> vms;
  for (NodeIndex n : r->nodes) {
    if (f.g.Type(n) == NodeType::kVm) vms.push_back(n);
  }
  EXPECT_THAT(vms, UnorderedElementsAre(f.web, f.db));
  // Not past the VMs (no host), and every edge is stored in its graph direction.
  EXPECT_THAT(r->nodes, ::testing::Not(::testing::Contains(f.host)));
  for (const Subgraph::Edge& e : r->edges) {
    EXPECT_NE(f.g.Type(e.from), NodeType::kStorageVolume);  // nothing rests below the volume
    EXPECT_NE(e.to, f.web);
  }
  EXPECT_THAT(r->nodes, UnorderedElementsAre(f.vol, f.f1, f.f2, f.f3, f.base, f.vda, f.vdb, f.dbvda,
                                             f.web, f.db));
}

TEST(RunQuery, DepthLimits) {
  Fixture f;
  auto nodes_at = [&](int depth) {
    absl::StatusOr<Subgraph> r =
        RunQuery(f.g, Traversal("name=web01", Direction::kDown, std::nullopt, depth));
    EXPECT_TRUE(r.ok());
    return r.ok() ? r->nodes : std::vector<NodeIndex>{};
  };
  EXPECT_THAT(nodes_at(0), ElementsAre(f.web));
  EXPECT_THAT(nodes_at(1), ElementsAre(f.web, f.cfg, f.vda, f.vdb));
  EXPECT_THAT(nodes_at(2), ElementsAre(f.web, f.cfg, f.vda, f.vdb, f.f1, f.f2));
  EXPECT_THAT(nodes_at(-1), ElementsAre(f.web, f.cfg, f.vda, f.vdb, f.f1, f.f2, f.vol, f.ss));

  // A target beyond the depth limit is not reached, so nothing is kept.
  absl::StatusOr<Subgraph> r =
      RunQuery(f.g, Traversal("name=web01", Direction::kDown, NodeType::kStorageSystem, 3));
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->roots, IsEmpty());
  EXPECT_THAT(r->nodes, IsEmpty());
}

TEST(RunQuery, DoesNotTraversePastTargetType) {
  Fixture f;
  absl::StatusOr<Subgraph> r =
      RunQuery(f.g, Traversal("name=db01", Direction::kDown, NodeType::kFile));
  ASSERT_TRUE(r.ok());
  // db01 -> vda -> db01.qcow2 stops there: its backing file is not visited.
  EXPECT_THAT(r->nodes, ElementsAre(f.db, f.dbvda, f.f3));
}

TEST(RunQuery, Errors) {
  Fixture f;
  Query q = Traversal("type=vm", Direction::kNone, NodeType::kFile);
  EXPECT_EQ(std::string(RunQuery(f.g, q).status().message()),
            "a query for nodes of type 'file' needs a direction (down or up)");
  q = Traversal("type=vm", Direction::kDown, std::nullopt, -2);
  EXPECT_EQ(std::string(RunQuery(f.g, q).status().message()),
            "max_depth must be -1 (unlimited) or at least 0, not -2");
  // No direction: just the selection.
  absl::StatusOr<Subgraph> r = RunQuery(f.g, Traversal("type=vm", Direction::kNone));
  ASSERT_TRUE(r.ok());
  EXPECT_THAT(r->nodes, ElementsAre(f.web, f.db));
  EXPECT_THAT(r->edges, IsEmpty());
}

TEST(WholeGraph, RootsAreNodesWithoutInEdges) {
  Fixture f;
  Subgraph all = WholeGraph(f.g);
  EXPECT_THAT(all.roots, ElementsAre(f.host));
  EXPECT_EQ(all.nodes.size(), f.g.node_count());
  EXPECT_EQ(all.edges.size(), f.g.edge_count());
}

TEST(Json, ShapeAndRoundTrip) {
  Fixture f;
  const nlohmann::json json = ToJson(f.g, WholeGraph(f.g));
  ASSERT_EQ(json["nodes"].size(), f.g.node_count());
  EXPECT_EQ(json["nodes"][1], nlohmann::json::parse(R"({"id":"vm:1","type":"vm","name":"web01",
                                      "attrs":{"state":"running","vcpus":"2"}})"));
  EXPECT_EQ(json["edges"][0],
            nlohmann::json::parse(R"({"from":"host:1","to":"vm:1","type":"runs"})"));

  absl::StatusOr<Graph> back = GraphFromJson(json);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->node_count(), f.g.node_count());
  EXPECT_EQ(back->edge_count(), f.g.edge_count());
  EXPECT_EQ(ToJson(*back, WholeGraph(*back)), json);
  EXPECT_EQ(ToTree(*back, WholeGraph(*back), Direction::kDown),
            ToTree(f.g, WholeGraph(f.g), Direction::kDown));
}

TEST(Json, ErrorsNameTheField) {
  auto error = [](std::string_view text) {
    absl::StatusOr<Graph> g = GraphFromJson(nlohmann::json::parse(text));
    EXPECT_FALSE(g.ok()) << text;
    return g.ok() ? std::string() : std::string(g.status().message());
  };
  EXPECT_EQ(error(R"([])"), "graph JSON must be an object with a 'nodes' array");
  EXPECT_EQ(error(R"({"nodes":[{"type":"vm"}]})"), "nodes[0].id is missing");
  EXPECT_EQ(error(R"({"nodes":[{"id":"a","type":"vm"},{"id":"b","type":7}]})"),
            "nodes[1].type is not a string");
  EXPECT_THAT(error(R"({"nodes":[{"id":"a","type":"vmm"}]})"),
              ::testing::StartsWith("nodes[0].type: unknown node type 'vmm'"));
  EXPECT_EQ(error(R"({"nodes":[{"id":"a","type":"vm","attrs":{"n":1}}]})"),
            "nodes[0].attrs.n is not a string");
  EXPECT_EQ(error(R"({"nodes":[{"id":"a","type":"vm"},{"id":"a","type":"host"}]})"),
            "nodes[1]: node 'a' already exists with type 'vm', not 'host'");
  EXPECT_EQ(error(R"({"nodes":[{"id":"a","type":"vm"}],
                      "edges":[{"from":"a","to":"b","type":"runs"}]})"),
            "edges[0].to names an unknown node 'b'");
  EXPECT_THAT(error(R"({"nodes":[{"id":"a","type":"vm"}],
                        "edges":[{"from":"a","to":"a","type":"runz"}]})"),
              ::testing::StartsWith("edges[0].type: unknown edge type 'runz'"));
}

TEST(ToTree, PinnedOutput) {
  Fixture f;
  EXPECT_EQ(ToTree(f.g, WholeGraph(f.g), Direction::kDown),
            "host h1\n"
            "  vm web01 [state=running, vcpus=2]\n"
            "    vm_config /etc/libvirt/qemu/web01.xml\n"
            "    virtual_disk vda\n"
            "      file /srv/a/web01.qcow2 [format=qcow2]\n"
            "        storage_volume vol1\n"
            "          storage_system ceph\n"
            "    virtual_disk vdb\n"
            "      file /srv/a/web01-data.raw\n"
            "        storage_volume vol1 (see above)\n"
            "  vm db01 [state=shut off]\n"
            "    virtual_disk vda\n"
            "      file /srv/a/db01.qcow2\n"
            "        file /srv/a/base.qcow2\n"
            "          storage_volume vol1 (see above)\n"
            "        storage_volume vol1 (see above)\n");
}

TEST(ToTree, UpwardFollowsEdgesBackwards) {
  Fixture f;
  absl::StatusOr<Subgraph> r =
      RunQuery(f.g, Traversal("name=/srv/a/base.qcow2", Direction::kUp, NodeType::kVm));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(ToTree(f.g, *r, Direction::kUp),
            "file /srv/a/base.qcow2\n"
            "  file /srv/a/db01.qcow2\n"
            "    virtual_disk vda\n"
            "      vm db01 [state=shut off]\n");
}

TEST(ToTree, NamelessNodesShowTheirId) {
  Graph g;
  const NodeIndex a = Add(g, NodeType::kBlockDevice, "dev:8:0", "");
  Subgraph s = WholeGraph(g);
  EXPECT_EQ(ToTree(g, s, Direction::kDown), "block_device dev:8:0\n");
  EXPECT_EQ(s.roots, std::vector<NodeIndex>{a});
}

TEST(ToTree, CyclesTerminate) {
  Graph g;
  const NodeIndex a = Add(g, NodeType::kFile, "file:a", "a");
  const NodeIndex b = Add(g, NodeType::kFile, "file:b", "b");
  g.AddEdge(a, b, EdgeType::kBackedBy);
  g.AddEdge(b, a, EdgeType::kBackedBy);
  // No node is without in-edges, yet every node is printed.
  EXPECT_EQ(ToTree(g, WholeGraph(g), Direction::kDown),
            "file a\n"
            "  file b\n"
            "    file a (see above)\n");
}

}  // namespace
}  // namespace strata::core
