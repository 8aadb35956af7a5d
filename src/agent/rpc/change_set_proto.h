// The change log's entries as a strata.v1.ChangeSet: one conversion for the Events stream and for
// the NotifyChanges push to stratad.
#pragma once

#include <string>
#include <vector>

#include "strata/agent/change_log.h"
#include "strata/v1/agent.pb.h"
#include "strata/v1/common.pb.h"

namespace strata::agent {

// `changes` must not be empty (the set's sequence range is taken from its ends).
inline void FillChangeSet(const std::string& host_id, const std::vector<VmChange>& changes,
                          v1::ChangeSet* set) {
  set->set_host_id(host_id);
  set->set_first_sequence(changes.front().sequence);
  set->set_last_sequence(changes.back().sequence);
  for (const VmChange& change : changes) {
    v1::VmChange* out = set->add_changes();
    out->set_sequence(change.sequence);
    out->set_vm_uuid(change.vm_uuid);
    out->set_vm_name(change.vm_name);
    switch (change.kind) {
      case ChangeKind::kAdded:
        out->set_kind(v1::CHANGE_KIND_ADDED);
        break;
      case ChangeKind::kRemoved:
        out->set_kind(v1::CHANGE_KIND_REMOVED);
        break;
      case ChangeKind::kModified:
        out->set_kind(v1::CHANGE_KIND_MODIFIED);
        break;
      case ChangeKind::kCluster:
        out->set_kind(v1::CHANGE_KIND_CLUSTER);
        break;
    }
    out->set_time_unix_ms(change.time_unix_ms);
    out->set_source(change.source);
  }
}

}  // namespace strata::agent
