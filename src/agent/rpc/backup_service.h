// gRPC adapters of the backup engine: strata.v1.Backup (RunBackup, DeleteSnapshot) and
// strata.v1.Restore (RunRestore). Progress streams as it happens; the result is the last message.
#pragma once

#include <grpcpp/grpcpp.h>

#include "strata/agent/backup_engine.h"
#include "strata/v1/agent.grpc.pb.h"

namespace strata::agent {

class BackupService final : public v1::Backup::Service {
 public:
  explicit BackupService(BackupEngine& engine) : engine_(engine) {}
  grpc::Status RunBackup(grpc::ServerContext* context, const v1::BackupRequest* request,
                         grpc::ServerWriter<v1::BackupEvent>* writer) override;
  grpc::Status DeleteSnapshot(grpc::ServerContext* context,
                              const v1::DeleteSnapshotRequest* request,
                              v1::DeleteSnapshotResponse* response) override;

 private:
  BackupEngine& engine_;
};

class RestoreService final : public v1::Restore::Service {
 public:
  explicit RestoreService(BackupEngine& engine) : engine_(engine) {}
  grpc::Status RunRestore(grpc::ServerContext* context, const v1::RestoreRequest* request,
                          grpc::ServerWriter<v1::RestoreEvent>* writer) override;

 private:
  BackupEngine& engine_;
};

// Test-only failure injection from the environment: STRATA_AGENT_FAULTS="step,step" fails the
// named engine steps (see FaultInjector). Returns nullptr when the variable is unset.
FaultInjector FaultsFromEnvironment();

}  // namespace strata::agent
