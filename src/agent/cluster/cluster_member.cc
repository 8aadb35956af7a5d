#include <pugixml.hpp>

#include "strata/agent/cluster.h"
#include "strata/agent/config.h"
#include "strata/util/process.h"
#include "strata/util/strings.h"

namespace strata::agent {

absl::StatusOr<ClusterMember> ParseClusterMember(std::string_view text) {
  const size_t eq = text.find('=');
  ClusterMember member;
  if (eq != std::string_view::npos) {
    member.host_id = std::string(util::Trim(text.substr(0, eq)));
    member.endpoint = std::string(util::Trim(text.substr(eq + 1)));
  }
  if (eq == std::string_view::npos || member.host_id.empty() ||
      !CheckHostPort(member.endpoint, "cluster member").ok()) {
    return absl::InvalidArgumentError(util::Cat(
        "cluster member '", text, "' must look like HOST_ID=HOST:PORT, e.g. host-b=10.0.0.2:7071"));
  }
  return member;
}

std::string ClusterMemberText(const ClusterMember& member) {
  return util::Cat(member.host_id, "=", member.endpoint);
}

absl::StatusOr<std::vector<ClusterMember>> ParseCrmMonNodes(
    std::string_view xml, int agent_port, const std::vector<ClusterMember>& endpoints) {
  pugi::xml_document doc;
  const pugi::xml_parse_result parsed = doc.load_buffer(xml.data(), xml.size());
  if (!parsed) {
    return absl::InvalidArgumentError(util::Cat("crm_mon output is not XML: ", parsed.description(),
                                                " at offset ",
                                                static_cast<int64_t>(parsed.offset)));
  }
  const pugi::xml_node root = doc.document_element();
  const std::string root_name = root.name();
  if (root_name != "pacemaker-result" && root_name != "crm_mon") {
    return absl::InvalidArgumentError(util::Cat("crm_mon output has root <", root_name,
                                                ">, not <pacemaker-result> or <crm_mon>"));
  }
  const pugi::xml_node nodes = root.child("nodes");
  if (!nodes) {
    return absl::InvalidArgumentError("crm_mon output has no <nodes> (cluster not running?)");
  }
  std::vector<ClusterMember> members;
  for (pugi::xml_node node : nodes.children("node")) {
    const std::string name = node.attribute("name").as_string();
    const std::string type = node.attribute("type").as_string("member");
    if (name.empty() || (type != "member" && type != "remote")) continue;  // ping nodes etc.
    ClusterMember member{name, util::Cat(name, ":", agent_port)};
    for (const ClusterMember& known : endpoints) {
      if (known.host_id == name) member.endpoint = known.endpoint;
    }
    members.push_back(std::move(member));
  }
  return members;
}

absl::StatusOr<std::vector<ClusterMember>> PacemakerMembership::Members() {
  absl::StatusOr<std::string> output = util::RunProcessOrError(command_);
  if (!output.ok()) {
    return absl::UnavailableError(util::Cat("pacemaker membership: ", output.status().message()));
  }
  absl::StatusOr<std::vector<ClusterMember>> members =
      ParseCrmMonNodes(*output, agent_port_, endpoints_);
  if (!members.ok()) {
    return absl::UnavailableError(util::Cat("pacemaker membership: '", util::Join(command_, " "),
                                            "': ", members.status().message()));
  }
  return members;
}

}  // namespace strata::agent
