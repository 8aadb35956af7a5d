// gRPC adapters of the backup engine: strata.v1.Backup (RunBackup, DeleteSnapshot) and
// strata.v1.Restore (RunRestore). Progress streams as it happens; the result is the last message.
#pragma once

#include <grpcpp/grpcpp.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "strata/agent/backup_engine.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::agent {

class ClusterCoordinator;

// A request that is not marked forwarded and names a cluster, or VMs not on this host, is a
// cluster backup when the agent has a coordinator: each VM's owner gets a sub-request marked
// forwarded (this host's own too, through its endpoint) and the answers are consolidated into one
// result and one manifest. A forwarded request is never forwarded again: its VMs that are not
// here fail with that reason (the loop guard).
//
// When several owners take part, the coordinator plans the storage snapshots (see
// BackupRequest.coordinated_snapshots): every owner brings its VMs to the requested consistency
// and reports the volumes it needs; each volume is then snapshotted once, by the coordinator
// when it needs the volume itself, else by the first owner (by host id) that does; every owner
// gets the snapshots the others took and releases its VMs. Shared snapshots that no VM kept are
// deleted by the coordinator. An owner that hears nothing (coordinator dead, or timeout)
// releases its VMs and fails those that needed a snapshot from elsewhere.
class BackupService final : public v1::Backup::Service {
 public:
  BackupService(BackupEngine& engine, HostServices& host, ClusterCoordinator* cluster)
      : engine_(engine), host_(host), cluster_(cluster) {}
  grpc::Status RunBackup(grpc::ServerContext* context, const v1::BackupRequest* request,
                         grpc::ServerWriter<v1::BackupEvent>* writer) override;
  grpc::Status DeleteSnapshot(grpc::ServerContext* context,
                              const v1::DeleteSnapshotRequest* request,
                              v1::DeleteSnapshotResponse* response) override;
  grpc::Status ContinueBackup(grpc::ServerContext* context,
                              const v1::ContinueBackupRequest* request,
                              v1::ContinueBackupResponse* response) override;

  // An owner's coordinated backup waiting for its coordinator's ContinueBackup messages.
  struct Mailbox;

 private:
  grpc::Status RunForCluster(grpc::ServerContext* context, const v1::BackupRequest& request,
                             grpc::ServerWriter<v1::BackupEvent>* writer);
  bool IsLocal(const std::string& vm);
  std::shared_ptr<Mailbox> OpenMailbox(const std::string& backup_id);
  void CloseMailbox(const std::string& backup_id);

  BackupEngine& engine_;
  HostServices& host_;
  ClusterCoordinator* cluster_;
  std::mutex mailboxes_mu_;
  std::map<std::string, std::shared_ptr<Mailbox>> mailboxes_;  // by backup id
};

class RestoreService final : public v1::Restore::Service {
 public:
  explicit RestoreService(BackupEngine& engine) : engine_(engine) {}
  grpc::Status RunRestore(grpc::ServerContext* context, const v1::RestoreRequest* request,
                          grpc::ServerWriter<v1::RestoreEvent>* writer) override;

 private:
  BackupEngine& engine_;
};

// The last message of a backup stream: per-VM results, the graph and the manifest.
v1::BackupEvent ResultEvent(const backup::BackupManifest& manifest, const core::Graph& graph);

// Test-only failure injection from the environment: STRATA_AGENT_FAULTS="step,step" fails the
// named engine steps (see FaultInjector). Returns nullptr when the variable is unset.
FaultInjector FaultsFromEnvironment();

}  // namespace strata::agent
