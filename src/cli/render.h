// Human output of the `strata` CLI: aligned tables built from the REST API's JSON answers, and
// the live display of a job being followed. Everything here is pure (no I/O but the ostream a
// ProgressDisplay is given), so that it can be tested on canned answers.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

#include "nlohmann/json.hpp"

namespace strata::cli {

// Columns separated by two spaces, every column but the last padded to its widest cell (UTF-8
// aware), no trailing spaces, one '\n' per row. Headers come first.
std::string RenderTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows);

// One JSON value as a table cell: strings as they are, numbers and booleans as JSON, null or
// missing as "-", arrays of scalars joined with ",", objects compact JSON ("-" when empty).
std::string Cell(const nlohmann::json& value);
// Cell of object[key], "-" when `object` lacks it.
std::string Field(const nlohmann::json& object, const char* key);

// The tables of each listing; `answer` is the server's JSON answer ({"hosts":[...]}, ...).
// A missing or ill-typed list renders as an empty table.
std::string RenderHosts(const nlohmann::json& answer);
std::string RenderVms(const nlohmann::json& answer);
std::string RenderEvents(const nlohmann::json& answer);
// `strata events --follow`: the header and one row per event, each ending in '\n', with fixed
// column widths (a stream cannot be measured first); the columns of RenderEvents.
std::string RenderEventStreamHeader();
std::string RenderEventStreamRow(const nlohmann::json& event);
std::string RenderJobs(const nlohmann::json& answer);
// A graph answer ({"nodes":[...],"edges":[...]}) as a TYPE NAME ID table (TYPE NAME HOST ID when
// a node has a "host" attribute, as VMs do); with `only_type` (not empty), just the nodes of
// that type.
std::string RenderNodes(const nlohmann::json& graph, const std::string& only_type);

// "Key:  value" lines, the values aligned; pairs whose value is empty are left out.
std::string RenderFields(const std::vector<std::pair<std::string, std::string>>& fields);

// 1536 -> "1.5 KiB", 512 -> "512 B" (binary units, one decimal from KiB on).
std::string FormatBytes(int64_t bytes);
// "2026-11-26T08:00:00.123Z" -> "2026-11-26 08:00"; anything else as it is ("-" when empty).
std::string ShortTime(const std::string& rfc3339);

// ---- backups, jobs, retention ----------------------------------------------------------------

// A backup's state as a user sees it: "partial" for a succeeded backup whose metadata says so.
std::string BackupState(const nlohmann::json& backup);
// GET /api/v1/backups.
std::string RenderBackups(const nlohmann::json& answer);
// GET /api/v1/backups/{id}: the backup's fields, then its items (VM, disk, volume, snapshot,
// size, checksum) and the VMs that failed (from metadata.vms).
std::string RenderBackupDetail(const nlohmann::json& backup);
// DELETE /api/v1/backups/{id}: what was deleted and which snapshots other backups still use.
std::string RenderBackupDeletion(const nlohmann::json& answer);
// POST /api/v1/backups/prune: the kept backups with their reasons, the expired ones ("keep" and
// "delete" in a dry run, "kept" and "deleted" otherwise), the snapshots deleted, the errors.
std::string RenderPrunePlan(const nlohmann::json& answer);
// GET /api/v1/policies ({"policies":[...]}); a single policy object renders as a one-row table.
std::string RenderPolicies(const nlohmann::json& answer);

// Whether a job has ended (succeeded or failed).
bool JobFinished(const nlohmann::json& job);
// Whether a job ended well: state succeeded and, for a backup, every VM backed up (detail.state
// is not "partial" or "failed").
bool JobSucceeded(const nlohmann::json& job);
// `strata jobs show`: the job's fields, then per kind: a backup's VMs (state and step while it
// runs; result, consistency achieved and error once it has ended), a restore's steps and result.
std::string RenderJob(const nlohmann::json& job);
// What a followed job came to: one verdict line, then a backup's per-VM summary (VM, host,
// result, consistency achieved, error) or a restore's result (VM, disk paths, verified) or error.
std::string RenderJobOutcome(const nlohmann::json& job);

// The live view of a job being followed (`strata backup`, `strata restore`, `strata jobs wait`),
// fed with each snapshot of GET /api/v1/jobs/{id}.
//
// terminal: a frame (a header with the overall percentage, then one line per VM or restore
// step) redrawn in place when it changed: the cursor moves up over the previous frame
// ("\x1b[<n>A\r"), each line ends with "\x1b[K" (erase the rest of the line), the frame with
// "\x1b[J" (erase below). Lines are cut to `columns` - 1 characters when `columns` > 0, so that
// none wraps (a wrapped line would throw the cursor arithmetic off).
// Not a terminal: one line per change, so that logs stay readable: "job <id> <state> ..." when
// the job's state changes, "<vm> <host> <step> <message>" when a VM's step, message or state
// changes (a restore: one line per new step).
//
// Not thread-safe; the caller feeds it from one thread.
class ProgressDisplay {
 public:
  ProgressDisplay(std::ostream& out, bool terminal, int columns = 0);

  void Update(const nlohmann::json& job);
  // Something else was printed below the frame: the next frame starts afresh below it instead
  // of overwriting the last.
  void Break();

  // The lines of one frame (exposed for tests).
  static std::vector<std::string> Frame(const nlohmann::json& job);

 private:
  void Draw(const nlohmann::json& job);
  void Log(const nlohmann::json& job);

  std::ostream& out_;
  bool terminal_;
  int columns_;
  size_t drawn_ = 0;                        // terminal: lines of the last frame
  std::vector<std::string> frame_;          // terminal: the last frame
  std::string job_state_;                   // plain: the last job state printed
  std::map<std::string, std::string> vms_;  // plain: per VM, the last line printed
  size_t steps_ = 0;                        // plain: restore steps printed
  std::string step_;                        // plain: the last restore step printed
};

}  // namespace strata::cli
