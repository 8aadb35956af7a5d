#include "graph_proto.h"

#include <gtest/gtest.h>

#include "status_grpc.h"

namespace strata::rpc {
namespace {

TEST(GraphProtoTest, RoundTripKeepsNodesAttributesAndEdges) {
  core::Graph graph;
  core::NodeIndex vm =
      *graph.UpsertNode(core::NodeType::kVm, "vm:1", "web01", {{"state", "running"}});
  core::NodeIndex disk = *graph.UpsertNode(core::NodeType::kVirtualDisk, "disk:1:vda", "vda");
  graph.AddEdge(vm, disk, core::EdgeType::kHasDisk);

  v1::Graph message;
  GraphToProto(graph, &message);
  ASSERT_EQ(message.nodes_size(), 2);
  ASSERT_EQ(message.edges_size(), 1);
  EXPECT_EQ(message.edges(0).type(), "has_disk");

  absl::StatusOr<core::Graph> back = GraphFromProto(message);
  ASSERT_TRUE(back.ok()) << back.status();
  std::optional<core::NodeIndex> vm_back = back->Find("vm:1");
  ASSERT_TRUE(vm_back.has_value());
  EXPECT_EQ(back->Name(*vm_back), "web01");
  EXPECT_EQ(back->Attr(*vm_back, "state"), "running");
  ASSERT_EQ(back->OutEdges(*vm_back).size(), 1u);
  EXPECT_EQ(back->Id(back->OutEdges(*vm_back)[0].node), "disk:1:vda");
}

TEST(GraphProtoTest, UnknownTypeAndDanglingEdgeAreNamed) {
  v1::Graph message;
  v1::GraphNode* node = message.add_nodes();
  node->set_id("x");
  node->set_type("vmm");
  absl::StatusOr<core::Graph> graph = GraphFromProto(message);
  ASSERT_FALSE(graph.ok());
  EXPECT_EQ(graph.status().message(), "graph message: node 'x' has unknown type 'vmm'");

  node->set_type("vm");
  v1::GraphEdge* edge = message.add_edges();
  edge->set_from("x");
  edge->set_to("y");
  edge->set_type("has_disk");
  graph = GraphFromProto(message);
  ASSERT_FALSE(graph.ok());
  EXPECT_EQ(graph.status().message(), "graph message: edge from 'x' names unknown node 'y'");
}

TEST(StatusGrpcTest, CodesAndMessagesMapOneToOne) {
  grpc::Status converted = ToGrpcStatus(absl::NotFoundError("host 'h' not found"));
  EXPECT_EQ(converted.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(converted.error_message(), "host 'h' not found");
  absl::Status back = FromGrpcStatus(converted);
  EXPECT_EQ(back.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(back.message(), "host 'h' not found");
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

}  // namespace
}  // namespace strata::rpc
