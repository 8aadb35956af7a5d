#include "strata/agent/cluster.h"
#include "strata/agent/config.h"
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

}  // namespace strata::agent
