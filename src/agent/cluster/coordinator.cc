#include "coordinator.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <set>

#include "channel.h"
#include "graph_proto.h"
#include "strata/util/strings.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::agent {
namespace {

std::string GrpcMessage(const grpc::Status& status) {
  return status.error_message().empty() ? util::Cat("gRPC status ", int(status.error_code()))
                                        : status.error_message();
}

}  // namespace

std::string_view MemberStateName(MemberState state) {
  switch (state) {
    case MemberState::kUnknown:
      return "unknown";
    case MemberState::kUp:
      return "up";
    case MemberState::kUnreachable:
      return "unreachable";
  }
  return "unknown";
}

struct ClusterCoordinator::Impl {
  Impl(std::unique_ptr<ClusterMembership> m, ChangeLog& l) : membership(std::move(m)), log(l) {}

  // One channel per member for every round (a member back after a failure is seen at the next
  // check: rpc::MakeChannel's back-off is short).
  std::shared_ptr<grpc::Channel> Channel(const std::string& endpoint) {
    std::lock_guard lock(mutex);
    auto it = channels.find(endpoint);
    if (it != channels.end()) return it->second;
    auto channel = rpc::MakeChannel(endpoint);
    channels.emplace(endpoint, channel);
    return channel;
  }

  // The member's channel once it is connected, or at `deadline`, or once its next connect after
  // a failed one has not succeeded either (rpc::AwaitReady: one failed connect is not a member
  // down); the call made on it then fails at once with the channel's reason.
  std::shared_ptr<grpc::Channel> ReadyChannel(const std::string& endpoint,
                                              std::chrono::system_clock::time_point deadline) {
    std::shared_ptr<grpc::Channel> channel = Channel(endpoint);
    rpc::AwaitReady(*channel, deadline);
    return channel;
  }

  std::vector<ClusterMember> CurrentMembers() {
    absl::StatusOr<std::vector<ClusterMember>> members = membership->Members();
    std::lock_guard lock(mutex);
    if (members.ok()) {
      last_members = *members;
      if (failed_reads > 0) {
        spdlog::info("cluster membership ({}): readable again after {} failed read(s)",
                     membership->name(), failed_reads);
      }
      failed_reads = 0;
      last_read_error.clear();
    } else {
      // Said once per distinct error, not every round (each second by default) while it lasts.
      std::string error(members.status().message());
      spdlog::log(error == last_read_error ? spdlog::level::debug : spdlog::level::warn,
                  "cluster membership ({}): {}; keeping the last view", membership->name(), error);
      ++failed_reads;
      last_read_error = std::move(error);
    }
    return last_members;
  }

  // Runs `fn(i)` for i in [0, n) on threads of their own and waits for all.
  static void Parallel(size_t n, const std::function<void(size_t)>& fn) {
    std::vector<std::thread> threads;
    threads.reserve(n);
    for (size_t i = 0; i < n; ++i) threads.emplace_back([&fn, i] { fn(i); });
    for (std::thread& t : threads) t.join();
  }

  // The VMs of one member (Discover with a VM selection only, to keep the answer small).
  absl::StatusOr<std::vector<VmSummary>> MemberVms(const ClusterMember& member,
                                                   std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::system_clock::now() + timeout;
    auto stub = v1::Discovery::NewStub(ReadyChannel(member.endpoint, deadline));
    v1::DiscoverRequest request;
    request.set_select("type=vm");
    request.set_max_depth(1);
    v1::DiscoverResponse response;
    grpc::ClientContext context;
    context.set_deadline(deadline);
    grpc::Status status = stub->Discover(&context, request, &response);
    if (!status.ok()) return absl::UnavailableError(GrpcMessage(status));
    std::vector<VmSummary> vms;
    for (const v1::VmSummary& vm : response.vms()) {
      vms.push_back({vm.uuid(), vm.name(), vm.state(), vm.persistent()});
    }
    return vms;
  }

  std::unique_ptr<ClusterMembership> membership;
  ChangeLog& log;
  mutable std::mutex mutex;  // guards everything below
  std::vector<ClusterMember> last_members;
  uint64_t failed_reads = 0;                                    // membership reads failed in a row
  std::string last_read_error;                                  // the last failed read's message
  std::map<std::string, MemberStatus> states;                   // by host id
  std::map<std::string, std::vector<VmSummary>> vms_by_member;  // ownership cache
  std::function<void(const std::string&)> sink;                 // member events
  std::map<std::string, std::shared_ptr<grpc::Channel>> channels;  // by endpoint
  std::condition_variable stop_cv;
  bool stopping = false;
  std::thread thread;
};

ClusterCoordinator::ClusterCoordinator(std::unique_ptr<ClusterMembership> membership,
                                       ChangeLog& log, ClusterCoordinatorOptions options)
    : impl_(std::make_unique<Impl>(std::move(membership), log)), options_(std::move(options)) {}

ClusterCoordinator::~ClusterCoordinator() { Stop(); }

void ClusterCoordinator::Start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([this] {
    std::unique_lock lock(impl_->mutex);
    while (!impl_->stopping) {
      lock.unlock();
      CheckMembers();
      lock.lock();
      impl_->stop_cv.wait_for(lock, options_.interval, [&] { return impl_->stopping; });
    }
  });
}

void ClusterCoordinator::Stop() {
  {
    std::lock_guard lock(impl_->mutex);
    impl_->stopping = true;
  }
  impl_->stop_cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void ClusterCoordinator::CheckMembers() {
  const std::vector<ClusterMember> members = impl_->CurrentMembers();
  std::vector<grpc::Status> results(members.size());
  Impl::Parallel(members.size(), [&](size_t i) {
    const auto deadline = std::chrono::system_clock::now() + options_.health_timeout;
    auto stub = v1::Agent::NewStub(impl_->ReadyChannel(members[i].endpoint, deadline));
    v1::HealthRequest request;
    v1::HealthResponse response;
    grpc::ClientContext context;
    context.set_deadline(deadline);
    results[i] = stub->Health(&context, request, &response);
  });
  std::vector<std::string> events;
  {
    std::lock_guard lock(impl_->mutex);
    std::set<std::string> listed;
    for (size_t i = 0; i < members.size(); ++i) {
      const ClusterMember& member = members[i];
      listed.insert(member.host_id);
      MemberStatus& status = impl_->states[member.host_id];
      status.member = member;
      const MemberState before = status.state;
      if (results[i].ok()) {
        status.state = MemberState::kUp;
        status.error.clear();
      } else {
        status.state = MemberState::kUnreachable;
        status.error =
            util::Cat("health check of '", member.endpoint, "' failed: ", GrpcMessage(results[i]));
      }
      if (before == status.state || member.host_id == options_.self_host_id) {
        if (status.state == MemberState::kUp) status.was_up = true;
        continue;
      }
      if (status.state == MemberState::kUp) {
        events.push_back(
            util::Cat(status.was_up ? "member-back:" : "member-joined:", member.host_id));
        status.was_up = true;
        spdlog::info("cluster '{}': member '{}' at {} is up", options_.cluster, member.host_id,
                     member.endpoint);
      } else {
        events.push_back(util::Cat("member-unreachable:", member.host_id));
        spdlog::warn("cluster '{}': member '{}' is unreachable: {}", options_.cluster,
                     member.host_id, status.error);
      }
    }
    for (auto it = impl_->states.begin(); it != impl_->states.end();) {
      if (listed.contains(it->first)) {
        ++it;
        continue;
      }
      if (it->first != options_.self_host_id)
        events.push_back(util::Cat("member-left:", it->first));
      impl_->vms_by_member.erase(it->first);
      it = impl_->states.erase(it);
    }
  }
  std::function<void(const std::string&)> sink;
  {
    std::lock_guard lock(impl_->mutex);
    sink = impl_->sink;
  }
  for (const std::string& event : events) {
    if (sink) {
      sink(event);
    } else {
      impl_->log.AppendClusterEvent(event, "cluster");
    }
  }
}

void ClusterCoordinator::SetEventSink(std::function<void(const std::string& event)> sink) {
  std::lock_guard lock(impl_->mutex);
  impl_->sink = std::move(sink);
}

std::vector<MemberStatus> ClusterCoordinator::Members() const {
  std::lock_guard lock(impl_->mutex);
  std::vector<MemberStatus> out;
  for (const ClusterMember& member : impl_->last_members) {
    auto it = impl_->states.find(member.host_id);
    MemberStatus status;
    status.member = member;
    out.push_back(it != impl_->states.end() ? it->second : status);
  }
  return out;
}

absl::StatusOr<VmOwner> ClusterCoordinator::Owner(const std::string& vm, bool refresh) {
  std::set<std::string> answered;  // members that answered this call: reachable now
  // Looks the VM up in the cache: a running copy wins over a defined-only one.
  auto lookup = [&]() -> std::optional<VmOwner> {
    std::lock_guard lock(impl_->mutex);
    std::optional<VmOwner> found;
    for (const auto& [host, vms] : impl_->vms_by_member) {
      for (const VmSummary& summary : vms) {
        if (summary.uuid != vm && summary.name != vm) continue;
        auto state = impl_->states.find(host);
        if (state == impl_->states.end()) continue;
        const bool reachable =
            state->second.state != MemberState::kUnreachable || answered.contains(host);
        VmOwner owner{state->second.member, reachable, reachable ? "" : state->second.error,
                      summary};
        if (!found || (summary.state == "running" && found->vm.state != "running")) {
          found = std::move(owner);
        }
      }
    }
    return found;
  };
  if (!refresh) {
    if (std::optional<VmOwner> owner = lookup(); owner && owner->reachable) return *owner;
  }
  // Ask every member. One last seen unreachable is asked too, under the health-check timeout:
  // it may have come back since the last round (a backup should not fail on a stale view).
  std::vector<ClusterMember> ask = impl_->CurrentMembers();
  std::vector<std::chrono::milliseconds> timeouts(ask.size(), options_.rpc_timeout);
  {
    std::lock_guard lock(impl_->mutex);
    for (size_t i = 0; i < ask.size(); ++i) {
      auto it = impl_->states.find(ask[i].host_id);
      if (it != impl_->states.end() && it->second.state == MemberState::kUnreachable) {
        timeouts[i] = options_.health_timeout;
      }
    }
  }
  std::vector<std::string> unasked;
  std::vector<absl::StatusOr<std::vector<VmSummary>>> answers(ask.size());
  Impl::Parallel(ask.size(), [&](size_t i) { answers[i] = impl_->MemberVms(ask[i], timeouts[i]); });
  {
    std::lock_guard lock(impl_->mutex);
    for (size_t i = 0; i < ask.size(); ++i) {
      if (answers[i].ok()) {
        impl_->vms_by_member[ask[i].host_id] = *answers[i];
        MemberStatus& status = impl_->states[ask[i].host_id];
        status.member = ask[i];
        answered.insert(ask[i].host_id);
      } else {
        unasked.push_back(
            util::Cat(ask[i].host_id, " (", std::string(answers[i].status().message()), ")"));
      }
    }
  }
  if (std::optional<VmOwner> owner = lookup()) return *owner;
  std::string message =
      util::Cat("VM '", vm, "' is on no member of cluster '", options_.cluster, "'");
  if (!unasked.empty()) {
    message = util::Cat(message, "; members that did not answer: ", util::Join(unasked, ", "));
  }
  return absl::NotFoundError(message);
}

std::shared_ptr<grpc::Channel> ClusterCoordinator::MemberChannel(const std::string& endpoint) {
  return impl_->Channel(endpoint);
}

std::vector<absl::StatusOr<VmOwner>> ClusterCoordinator::Owners(
    const std::vector<std::string>& vms) {
  std::vector<absl::StatusOr<VmOwner>> out;
  out.reserve(vms.size());
  for (size_t i = 0; i < vms.size(); ++i) out.push_back(Owner(vms[i], /*refresh=*/i == 0));
  return out;
}

absl::StatusOr<ClusterView> ClusterCoordinator::Discover() {
  std::vector<ClusterMember> members = impl_->CurrentMembers();
  std::vector<v1::DiscoverResponse> responses(members.size());
  std::vector<std::string> errors(members.size());
  {
    std::lock_guard lock(impl_->mutex);
    for (size_t i = 0; i < members.size(); ++i) {
      auto it = impl_->states.find(members[i].host_id);
      if (it != impl_->states.end() && it->second.state == MemberState::kUnreachable) {
        errors[i] = it->second.error;
      }
    }
  }
  Impl::Parallel(members.size(), [&](size_t i) {
    if (!errors[i].empty()) return;
    const auto deadline = std::chrono::system_clock::now() + options_.rpc_timeout;
    auto stub = v1::Discovery::NewStub(impl_->ReadyChannel(members[i].endpoint, deadline));
    v1::DiscoverRequest request;  // the whole host: filters apply to the merged graph
    grpc::ClientContext context;
    context.set_deadline(deadline);
    grpc::Status status = stub->Discover(&context, request, &responses[i]);
    if (!status.ok()) {
      errors[i] =
          util::Cat("discovery at '", members[i].endpoint, "' failed: ", GrpcMessage(status));
    }
  });
  ClusterView view;
  absl::StatusOr<core::NodeIndex> cluster_node = view.graph.UpsertNode(
      core::NodeType::kCluster, util::Cat("cluster:", options_.cluster), options_.cluster);
  if (!cluster_node.ok()) return cluster_node.status();
  for (size_t i = 0; i < members.size(); ++i) {
    const std::string& host = members[i].host_id;
    if (errors[i].empty()) {
      absl::StatusOr<core::Graph> graph = rpc::GraphFromProto(responses[i].graph());
      if (!graph.ok()) {
        errors[i] = util::Cat("graph of member '", host, "': ", graph.status().message());
      } else if (absl::Status merged = view.graph.Merge(*graph); !merged.ok()) {
        errors[i] = util::Cat("merging the graph of member '", host, "': ", merged.message());
      }
    }
    if (!errors[i].empty()) {
      view.unreachable.push_back(util::Cat(host, ": ", errors[i]));
      continue;
    }
    view.members.push_back(host);
    absl::StatusOr<core::NodeIndex> host_node =
        view.graph.UpsertNode(core::NodeType::kHost, util::Cat("host:", host), "");
    if (host_node.ok()) view.graph.AddEdge(*cluster_node, *host_node, core::EdgeType::kHasMember);
    std::vector<VmSummary> vms;
    for (const v1::VmSummary& vm : responses[i].vms()) {
      vms.push_back({vm.uuid(), vm.name(), vm.state(), vm.persistent()});
    }
    view.vms.insert(view.vms.end(), vms.begin(), vms.end());
    std::lock_guard lock(impl_->mutex);
    impl_->vms_by_member[host] = std::move(vms);  // the ownership cache learns on the way
  }
  if (view.members.empty()) {
    return absl::UnavailableError(util::Cat("no member of cluster '", options_.cluster,
                                            "' answered: ", util::Join(view.unreachable, "; ")));
  }
  return view;
}

}  // namespace strata::agent
