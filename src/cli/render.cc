#include "render.h"

#include <algorithm>
#include <cstdio>
#include <iterator>

#include "strata/util/strings.h"

namespace strata::cli {
namespace {

using nlohmann::json;

// Display width: UTF-8 code points (continuation bytes do not count).
size_t Width(const std::string& text) {
  size_t width = 0;
  for (unsigned char c : text) width += (c & 0xC0) != 0x80 ? 1 : 0;
  return width;
}

const json& List(const json& answer, const char* key) {
  static const json kEmpty = json::array();
  if (!answer.is_object()) return kEmpty;
  auto it = answer.find(key);
  return it != answer.end() && it->is_array() ? *it : kEmpty;
}

// One cell per column; a row that is not an object gets "-" everywhere.
std::vector<std::string> Row(const json& object, const std::vector<const char*>& keys) {
  std::vector<std::string> row;
  for (const char* key : keys) row.push_back(Field(object, key));
  return row;
}

std::string PluginNames(const json& plugins) {
  if (!plugins.is_array() || plugins.empty()) return "-";
  std::vector<std::string> names;
  for (const json& plugin : plugins) {
    if (plugin.is_object() && plugin.contains("name")) {
      names.push_back(Cell(plugin["name"]));
    } else {
      names.push_back(Cell(plugin));
    }
  }
  return util::Join(names, ",");
}

}  // namespace

std::string RenderTable(const std::vector<std::string>& headers,
                        const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> widths(headers.size(), 0);
  auto measure = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < widths.size(); ++i) {
      widths[i] = std::max(widths[i], Width(row[i]));
    }
  };
  measure(headers);
  for (const auto& row : rows) measure(row);
  std::string out;
  auto emit = [&](const std::vector<std::string>& row) {
    std::string line;
    for (size_t i = 0; i < widths.size(); ++i) {
      const std::string& cell = i < row.size() ? row[i] : std::string();
      line += cell;
      if (i + 1 < widths.size()) line.append(widths[i] - Width(cell) + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  };
  emit(headers);
  for (const auto& row : rows) emit(row);
  return out;
}

std::string Cell(const json& value) {
  if (value.is_null()) return "-";
  if (value.is_string()) {
    std::string text = value.get<std::string>();
    // A cell is one line: control characters would break the table.
    for (char& c : text) {
      if (static_cast<unsigned char>(c) < 0x20) c = ' ';
    }
    return text.empty() ? "-" : text;
  }
  if (value.is_array()) {
    if (value.empty()) return "-";
    std::vector<std::string> parts;
    for (const json& item : value) {
      parts.push_back(item.is_structured() ? item.dump() : Cell(item));
    }
    return util::Join(parts, ",");
  }
  if (value.is_object()) return value.empty() ? "-" : value.dump();
  return value.dump();
}

std::string Field(const json& object, const char* key) {
  if (!object.is_object()) return "-";
  auto it = object.find(key);
  return it == object.end() ? "-" : Cell(*it);
}

std::string RenderHosts(const json& answer) {
  std::vector<std::vector<std::string>> rows;
  for (const json& host : List(answer, "hosts")) {
    std::vector<std::string> row =
        Row(host, {"id", "cluster", "state", "vm_count", "endpoint", "last_heartbeat"});
    row.push_back(host.is_object() && host.contains("plugins") ? PluginNames(host["plugins"])
                                                               : "-");
    rows.push_back(std::move(row));
  }
  return RenderTable({"HOST", "CLUSTER", "STATE", "VMS", "ENDPOINT", "LAST HEARTBEAT", "PLUGINS"},
                     rows);
}

std::string RenderVms(const json& answer) {
  std::vector<std::vector<std::string>> rows;
  for (const json& vm : List(answer, "vms"))
    rows.push_back(Row(vm, {"name", "uuid", "host", "state"}));
  return RenderTable({"NAME", "UUID", "HOST", "STATE"}, rows);
}

std::string RenderEvents(const json& answer) {
  std::vector<std::vector<std::string>> rows;
  for (const json& event : List(answer, "events")) {
    rows.push_back(Row(event, {"seq", "time", "host", "kind", "vm_uuid", "detail"}));
  }
  return RenderTable({"SEQ", "TIME", "HOST", "KIND", "VM", "DETAIL"}, rows);
}

namespace {

constexpr size_t kStreamWidths[] = {6, 24, 12, 8, 36};  // SEQ TIME HOST KIND VM; DETAIL unpadded

std::string StreamRow(const std::vector<std::string>& cells) {
  std::string line;
  for (size_t i = 0; i < cells.size(); ++i) {
    line += cells[i];
    if (i + 1 == cells.size()) break;
    const size_t width = i < std::size(kStreamWidths) ? kStreamWidths[i] : 0;
    line.append(width > Width(cells[i]) ? width - Width(cells[i]) : 0, ' ');
    line += "  ";
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line + "\n";
}

}  // namespace

std::string RenderEventStreamHeader() {
  return StreamRow({"SEQ", "TIME", "HOST", "KIND", "VM", "DETAIL"});
}

std::string RenderEventStreamRow(const json& event) {
  return StreamRow(Row(event, {"seq", "time", "host", "kind", "vm_uuid", "detail"}));
}

std::string RenderJobs(const json& answer) {
  std::vector<std::vector<std::string>> rows;
  for (const json& job : List(answer, "jobs")) {
    std::vector<std::string> row = Row(job, {"id", "kind", "state"});
    const std::string progress = Field(job, "progress");
    row.push_back(progress == "-" ? progress : progress + "%");
    for (const char* key : {"message", "updated_at"}) row.push_back(Field(job, key));
    rows.push_back(std::move(row));
  }
  return RenderTable({"ID", "KIND", "STATE", "PROGRESS", "MESSAGE", "UPDATED"}, rows);
}

std::string RenderNodes(const json& graph, const std::string& only_type) {
  std::vector<const json*> nodes;
  bool any_host = false;
  for (const json& node : List(graph, "nodes")) {
    if (!only_type.empty() && Field(node, "type") != only_type) continue;
    nodes.push_back(&node);
    any_host =
        any_host || Field(node.is_object() ? node.value("attrs", json()) : json(), "host") != "-";
  }
  std::vector<std::vector<std::string>> rows;
  for (const json* node : nodes) {
    std::vector<std::string> row = Row(*node, {"type", "name"});
    if (any_host)
      row.push_back(Field(node->is_object() ? node->value("attrs", json()) : json(), "host"));
    row.push_back(Field(*node, "id"));
    rows.push_back(std::move(row));
  }
  if (any_host) return RenderTable({"TYPE", "NAME", "HOST", "ID"}, rows);
  return RenderTable({"TYPE", "NAME", "ID"}, rows);
}

// ---- fields, sizes, times --------------------------------------------------------------------

std::string RenderFields(const std::vector<std::pair<std::string, std::string>>& fields) {
  size_t width = 0;
  for (const auto& [key, value] : fields) {
    if (!value.empty() && value != "-") width = std::max(width, Width(key) + 1);
  }
  std::string out;
  for (const auto& [key, value] : fields) {
    if (value.empty() || value == "-") continue;
    std::string label = key + ":";
    label.append(width - Width(label) + 2, ' ');
    // A value of several lines continues under its first line.
    size_t begin = 0;
    while (begin <= value.size()) {
      size_t end = value.find('\n', begin);
      if (end == std::string::npos) end = value.size();
      out += begin == 0 ? label : std::string(Width(label), ' ');
      out.append(value, begin, end - begin);
      out += '\n';
      begin = end + 1;
    }
  }
  return out;
}

std::string FormatBytes(int64_t bytes) {
  if (bytes < 0) return std::to_string(bytes) + " B";
  if (bytes < 1024) return std::to_string(bytes) + " B";
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < std::size(kUnits)) {
    value /= 1024;
    ++unit;
  }
  char text[32];
  std::snprintf(text, sizeof text, "%.1f %s", value, kUnits[unit]);
  return text;
}

std::string ShortTime(const std::string& rfc3339) {
  if (rfc3339.empty()) return "-";
  if (rfc3339.size() >= 16 && rfc3339[4] == '-' && rfc3339[10] == 'T' && rfc3339[13] == ':') {
    return rfc3339.substr(0, 10) + " " + rfc3339.substr(11, 5);
  }
  return rfc3339;
}

// ---- backups, jobs, retention ----------------------------------------------------------------

namespace {

std::string Str(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

const json& Obj(const json& object, const char* key) {
  static const json kEmpty = json::object();
  if (!object.is_object()) return kEmpty;
  auto it = object.find(key);
  return it != object.end() && it->is_object() ? *it : kEmpty;
}

// Adds the lines of `table` to `out`, each indented by `indent`.
void AppendIndented(std::string& out, const std::string& table, const std::string& indent) {
  size_t begin = 0;
  while (begin < table.size()) {
    size_t end = table.find('\n', begin);
    if (end == std::string::npos) end = table.size();
    out += indent;
    out.append(table, begin, end - begin);
    out += '\n';
    begin = end + 1;
  }
}

std::string Quoted(const std::string& text) { return "'" + text + "'"; }

// "NAME (ID)", or whichever of the two is known.
std::string NameAndId(const std::string& name, const std::string& id) {
  if (name.empty()) return id.empty() ? "-" : id;
  if (id.empty() || id == name) return name;
  return util::Cat(name, " (", id, ")");
}

std::string Percent(const json& job) {
  const std::string progress = Field(job, "progress");
  return progress == "-" ? "0%" : progress + "%";
}

std::string Bar(const json& job) {
  int64_t percent = 0;
  if (job.is_object() && job.contains("progress") && job["progress"].is_number()) {
    percent = std::clamp<int64_t>(job["progress"].get<int64_t>(), 0, 100);
  }
  const size_t filled = static_cast<size_t>(percent / 5);
  return "[" + std::string(filled, '#') + std::string(20 - filled, '-') + "]";
}

// The VMs of a backup job's detail.
const json& JobVms(const json& job) { return List(Obj(job, "detail"), "vms"); }

// A backup job's VM table while it runs: what each VM is doing.
std::string VmProgressTable(const json& job) {
  std::vector<std::vector<std::string>> rows;
  for (const json& vm : JobVms(job)) {
    std::vector<std::string> row = Row(vm, {"name", "host", "state", "step"});
    const bool failed = Str(vm, "state") == "failed" && !Str(vm, "error").empty();
    row.push_back(failed ? Field(vm, "error") : Field(vm, "message"));
    rows.push_back(std::move(row));
  }
  return RenderTable({"VM", "HOST", "STATE", "STEP", "MESSAGE"}, rows);
}

// A backup job's VM table once it has ended: what each VM came to.
std::string VmOutcomeTable(const json& job) {
  std::vector<std::vector<std::string>> rows;
  for (const json& vm : JobVms(job)) {
    rows.push_back(Row(vm, {"name", "host", "state", "consistency_achieved", "error"}));
  }
  return RenderTable({"VM", "HOST", "RESULT", "CONSISTENCY", "ERROR"}, rows);
}

std::string RestoreStepsTable(const json& job) {
  std::vector<std::vector<std::string>> rows;
  for (const json& step : List(Obj(job, "detail"), "steps")) {
    rows.push_back(Row(step, {"step", "message"}));
  }
  return RenderTable({"STEP", "MESSAGE"}, rows);
}

std::string YesNo(const json& object, const char* key) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_boolean()) return "-";
  return object[key].get<bool>() ? "yes" : "no";
}

std::vector<std::pair<std::string, std::string>> RestoreResultFields(const json& result) {
  std::vector<std::string> paths;
  for (const json& path : List(result, "disk_paths")) paths.push_back(Cell(path));
  return {{"VM", NameAndId(Str(result, "vm_name"), Str(result, "vm_uuid"))},
          {"Disks", util::Join(paths, "\n")},
          {"Verified", YesNo(result, "verified")}};
}

// A backup job's state as the user sees it: detail.state ("partial") once it has ended.
std::string JobState(const json& job) {
  const std::string state = Str(job, "state");
  const std::string detail_state = Str(Obj(job, "detail"), "state");
  return JobFinished(job) && !detail_state.empty() ? detail_state : state;
}

// Cuts `line` to `width` code points (0: no limit).
std::string Cut(const std::string& line, size_t width) {
  if (width == 0 || Width(line) <= width) return line;
  size_t points = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    if ((static_cast<unsigned char>(line[i]) & 0xC0) != 0x80) {
      if (points == width) return line.substr(0, i);
      ++points;
    }
  }
  return line;
}

}  // namespace

std::string BackupState(const json& backup) {
  const std::string state = Field(backup, "state");
  if (state == "succeeded" && Str(Obj(backup, "metadata"), "state") == "partial") return "partial";
  return state;
}

std::string RenderBackups(const json& answer) {
  std::vector<std::vector<std::string>> rows;
  for (const json& backup : List(answer, "backups")) {
    std::vector<std::string> row = Row(backup, {"id", "name"});
    row.push_back(BackupState(backup));
    for (const char* key : {"consistency", "policy", "started_at", "finished_at", "requester"}) {
      row.push_back(Field(backup, key));
    }
    rows.push_back(std::move(row));
  }
  return RenderTable(
      {"ID", "NAME", "STATE", "CONSISTENCY", "POLICY", "STARTED", "FINISHED", "REQUESTER"}, rows);
}

std::string RenderBackupDetail(const json& backup) {
  const json& metadata = Obj(backup, "metadata");
  std::string consistency = Field(backup, "consistency");
  const std::string requested = Str(metadata, "consistency_requested");
  if (!requested.empty() && requested != consistency) {
    consistency = util::Cat(consistency, " (requested ", requested, ")");
  }
  std::string out = RenderFields({{"ID", Field(backup, "id")},
                                  {"Name", Field(backup, "name")},
                                  {"State", BackupState(backup)},
                                  {"Consistency", consistency},
                                  {"Policy", Field(backup, "policy")},
                                  {"Requester", Field(backup, "requester")},
                                  {"Started", Field(backup, "started_at")},
                                  {"Finished", Field(backup, "finished_at")}});
  std::vector<std::vector<std::string>> rows;
  for (const json& item : List(backup, "items")) {
    std::string vm = Str(item, "vm_name");
    if (vm.empty()) vm = Field(item, "vm_uuid");
    std::vector<std::string> row = {vm};
    for (const char* key : {"disk_target", "storage_volume", "snapshot_id"}) {
      row.push_back(Field(item, key));
    }
    const bool sized =
        item.is_object() && item.contains("size_bytes") && item["size_bytes"].is_number_integer();
    row.push_back(sized ? FormatBytes(item["size_bytes"].get<int64_t>()) : "-");
    row.push_back(Field(item, "checksum"));
    rows.push_back(std::move(row));
  }
  out += '\n';
  if (rows.empty()) {
    out += "No items.\n";
  } else {
    out += RenderTable({"VM", "DISK", "VOLUME", "SNAPSHOT", "SIZE", "CHECKSUM"}, rows);
  }
  std::vector<std::vector<std::string>> failed;
  for (const json& vm : List(metadata, "vms")) {
    if (vm.is_object() && vm.contains("ok") && vm["ok"] == false) {
      failed.push_back(Row(vm, {"name", "host", "error"}));
    }
  }
  if (!failed.empty()) {
    out += "\nNot backed up:\n";
    AppendIndented(out, RenderTable({"VM", "HOST", "ERROR"}, failed), "  ");
  }
  return out;
}

std::string RenderBackupDeletion(const json& answer) {
  std::string out =
      util::Cat("Deleted backup ",
                Quoted(Str(answer, "backup_name").empty() ? Str(answer, "backup_id")
                                                          : Str(answer, "backup_name")),
                Str(answer, "backup_id").empty() || Str(answer, "backup_name").empty()
                    ? std::string()
                    : util::Cat(" (", Str(answer, "backup_id"), ")"),
                ".\n");
  std::vector<std::vector<std::string>> rows;
  for (const json& snapshot : List(answer, "snapshots_deleted")) {
    std::vector<std::string> row = Row(snapshot, {"key", "host"});
    row.push_back(YesNo(snapshot, "existed") == "no" ? "was already gone" : "deleted");
    rows.push_back(std::move(row));
  }
  if (!rows.empty()) out += RenderTable({"SNAPSHOT", "HOST", "RESULT"}, rows);
  const json& kept = List(answer, "snapshots_kept");
  if (!kept.empty()) {
    out += util::Cat("Kept ", kept.size(), kept.size() == 1 ? " snapshot" : " snapshots",
                     " that other backups use: ", Cell(kept), "\n");
  }
  return out;
}

std::string RenderPrunePlan(const json& answer) {
  const bool dry_run = answer.is_object() && answer.value("dry_run", false);
  const json& kept = List(answer, "kept");
  const json& expired = List(answer, "expired");
  std::string out = dry_run ? util::Cat("Policy ", Quoted(Str(answer, "policy")),
                                        ", dry run (nothing deleted): ", kept.size(), " to keep, ",
                                        expired.size(), " to delete.\n")
                            : util::Cat("Policy ", Quoted(Str(answer, "policy")), ": ", kept.size(),
                                        " kept, ", expired.size(), " deleted.\n");
  std::vector<std::vector<std::string>> rows;
  for (const json& backup : kept) {
    std::vector<std::string> row = {dry_run ? "keep" : "kept"};
    for (const char* key : {"id", "name"}) row.push_back(Field(backup, key));
    std::vector<std::string> reasons;
    for (const json& reason : List(backup, "reasons")) reasons.push_back(Cell(reason));
    row.push_back(reasons.empty() ? "-" : util::Join(reasons, ", "));
    rows.push_back(std::move(row));
  }
  for (const json& backup : expired) {
    std::vector<std::string> row = {dry_run ? "delete" : "deleted"};
    for (const char* key : {"id", "name"}) row.push_back(Field(backup, key));
    row.push_back("-");
    rows.push_back(std::move(row));
  }
  if (!rows.empty()) out += RenderTable({"ACTION", "ID", "NAME", "REASONS"}, rows);
  std::vector<std::vector<std::string>> snapshots;
  for (const json& snapshot : List(answer, "snapshots_deleted")) {
    snapshots.push_back(snapshot.is_object() ? Row(snapshot, {"key", "host"})
                                             : std::vector<std::string>{Cell(snapshot), "-"});
  }
  if (!snapshots.empty()) {
    out += dry_run ? "\nSnapshots to delete:\n" : "\nSnapshots deleted:\n";
    AppendIndented(out, RenderTable({"SNAPSHOT", "HOST"}, snapshots), "  ");
  }
  const json& errors = List(answer, "errors");
  if (!errors.empty()) {
    out += "\nErrors:\n";
    for (const json& error : errors) {
      out += "  ";
      out += error.is_object() && error.contains("message") ? Cell(error["message"]) : Cell(error);
      out += '\n';
    }
  }
  return out;
}

std::string RenderPolicies(const json& answer) {
  static const std::vector<const char*> kKeys = {"name",       "keep_last",   "keep_hourly",
                                                 "keep_daily", "keep_weekly", "keep_monthly"};
  std::vector<std::vector<std::string>> rows;
  if (answer.is_object() && !answer.contains("policies") && answer.contains("name")) {
    rows.push_back(Row(answer, kKeys));
  }
  for (const json& policy : List(answer, "policies")) rows.push_back(Row(policy, kKeys));
  return RenderTable({"NAME", "LAST", "HOURLY", "DAILY", "WEEKLY", "MONTHLY"}, rows);
}

bool JobFinished(const json& job) {
  const std::string state = Str(job, "state");
  return !state.empty() && state != "queued" && state != "running";
}

bool JobSucceeded(const json& job) {
  if (Str(job, "state") != "succeeded") return false;
  const std::string detail_state = Str(Obj(job, "detail"), "state");
  return detail_state.empty() || detail_state == "succeeded";
}

std::string RenderJob(const json& job) {
  const json& detail = Obj(job, "detail");
  const std::string kind = Str(job, "kind");
  std::vector<std::pair<std::string, std::string>> fields = {{"ID", Field(job, "id")},
                                                             {"Kind", Field(job, "kind")},
                                                             {"State", JobState(job)},
                                                             {"Progress", Percent(job)},
                                                             {"Message", Field(job, "message")},
                                                             {"Created", Field(job, "created_at")},
                                                             {"Updated", Field(job, "updated_at")}};
  std::string table;
  if (kind == "backup") {
    std::string consistency = Str(detail, "consistency");
    if (!Str(detail, "fallback").empty()) {
      consistency = util::Cat(consistency, " (fallback ", Str(detail, "fallback"), ")");
    }
    fields.emplace_back("Backup", NameAndId(Str(detail, "backup_name"), Str(detail, "backup_id")));
    fields.emplace_back("Consistency", consistency);
    table = JobFinished(job) ? VmOutcomeTable(job) : VmProgressTable(job);
  } else if (kind == "restore") {
    fields.emplace_back("Backup", NameAndId(Str(detail, "backup_name"), Str(detail, "backup_id")));
    fields.emplace_back("VM", Field(detail, "vm_name"));
    const std::string as = Str(detail, "as_name");
    fields.emplace_back("As", as.empty() ? "(in place)" : as);
    fields.emplace_back("Host", Field(detail, "host"));
    fields.emplace_back("Step", Field(detail, "step"));
    fields.emplace_back("Error", Field(detail, "error"));
    const json& result = Obj(detail, "result");
    if (!result.empty()) {
      for (auto& [key, value] : RestoreResultFields(result)) {
        fields.emplace_back("Result " + key, value);
      }
    }
    if (!List(detail, "steps").empty()) table = RestoreStepsTable(job);
  } else if (!detail.empty()) {
    fields.emplace_back("Detail", detail.dump());
  }
  std::string out = RenderFields(fields);
  if (!table.empty()) out += "\n" + table;
  return out;
}

std::string RenderJobOutcome(const json& job) {
  const json& detail = Obj(job, "detail");
  const std::string kind = Str(job, "kind");
  const std::string message = Str(job, "message");
  if (kind == "backup") {
    const json& vms = JobVms(job);
    const std::string backup = Quoted(
        Str(detail, "backup_name").empty() ? Str(detail, "backup_id") : Str(detail, "backup_name"));
    const std::string id = Str(detail, "backup_id").empty() || Str(detail, "backup_name").empty()
                               ? std::string()
                               : util::Cat(" (", Str(detail, "backup_id"), ")");
    if (vms.empty()) {
      return util::Cat("Backup ", backup, id, ": ", JobState(job),
                       message.empty() ? std::string() : ": " + message, "\n");
    }
    size_t ok = 0;
    for (const json& vm : vms) ok += Str(vm, "state") == "succeeded" ? 1 : 0;
    // Cluster parts: which member coordinated each, and where its time went.
    std::string coordination;
    for (const auto& [part, c] : Obj(detail, "coordination").items()) {
      const json& t = Obj(c, "timings_ms");
      coordination += util::Cat("Cluster ", util::StripPrefix(part, "cluster:"), " coordinated by ",
                                Str(c, "member"), ": owners ", Field(t, "owners"), " ms, held ",
                                Field(t, "held"), " ms, forwarded ", Field(t, "forwarded"),
                                " ms, consolidated in ", Field(t, "consolidate"), " ms\n");
    }
    return util::Cat("Backup ", backup, id, ": ", JobState(job), ", ", ok, " of ", vms.size(),
                     vms.size() == 1 ? " VM" : " VMs", " backed up.\n", coordination,
                     VmOutcomeTable(job));
  }
  if (kind == "restore") {
    const std::string vm = Quoted(Str(detail, "vm_name"));
    const std::string backup = Quoted(Str(detail, "backup_name"));
    const std::string as = Str(detail, "as_name");
    if (Str(job, "state") == "succeeded") {
      return util::Cat("Restored VM ", vm, " from backup ", backup,
                       as.empty() ? std::string(" in place") : " as " + Quoted(as), " on host ",
                       Quoted(Str(detail, "host")), ".\n",
                       RenderFields(RestoreResultFields(Obj(detail, "result"))));
    }
    std::string error = Str(detail, "error");
    if (error.empty()) error = message;
    const std::string step = Str(detail, "step");
    return util::Cat("Restore of VM ", vm, " from backup ", backup, " ", Str(job, "state"),
                     step.empty() ? std::string() : " at step " + Quoted(step),
                     error.empty() ? std::string() : ": " + error, "\n");
  }
  return util::Cat("Job ", Str(job, "id"), " (", kind.empty() ? "-" : kind, "): ", JobState(job),
                   message.empty() ? std::string() : ": " + message, "\n");
}

// ---- ProgressDisplay -------------------------------------------------------------------------

ProgressDisplay::ProgressDisplay(std::ostream& out, bool terminal, int columns)
    : out_(out), terminal_(terminal), columns_(columns) {}

std::vector<std::string> ProgressDisplay::Frame(const json& job) {
  const json& detail = Obj(job, "detail");
  const std::string kind = Str(job, "kind");
  const std::string status = util::Cat(JobState(job), " ", Percent(job), " ", Bar(job));
  std::vector<std::string> lines;
  std::string table;
  if (kind == "backup") {
    lines.push_back(util::Cat("Backup ", Quoted(Str(detail, "backup_name")), " (job ",
                              Str(job, "id"), "): ", status));
    table = VmProgressTable(job);
  } else if (kind == "restore") {
    const std::string as = Str(detail, "as_name");
    lines.push_back(util::Cat("Restore of ", Quoted(Str(detail, "vm_name")), " from ",
                              Quoted(Str(detail, "backup_name")),
                              as.empty() ? std::string() : " as " + Quoted(as), " on ",
                              Str(detail, "host").empty() ? "-" : Str(detail, "host"), " (job ",
                              Str(job, "id"), "): ", status));
    if (!List(detail, "steps").empty()) table = RestoreStepsTable(job);
  } else {
    lines.push_back(
        util::Cat("Job ", Str(job, "id"), " (", kind.empty() ? "-" : kind, "): ", status));
  }
  if (table.empty() && !Str(job, "message").empty()) table = Str(job, "message") + "\n";
  size_t begin = 0;
  while (begin < table.size()) {
    size_t end = table.find('\n', begin);
    if (end == std::string::npos) end = table.size();
    lines.push_back("  " + table.substr(begin, end - begin));
    begin = end + 1;
  }
  return lines;
}

void ProgressDisplay::Update(const json& job) {
  if (terminal_) {
    Draw(job);
  } else {
    Log(job);
  }
  out_.flush();
}

void ProgressDisplay::Break() {
  drawn_ = 0;
  frame_.clear();
}

void ProgressDisplay::Draw(const json& job) {
  std::vector<std::string> lines = Frame(job);
  if (drawn_ > 0 && lines == frame_) return;  // nothing changed on screen
  std::string text;
  if (drawn_ > 0) text = util::Cat("\x1b[", drawn_, "A\r");
  const size_t width = columns_ > 1 ? static_cast<size_t>(columns_ - 1) : 0;
  for (const std::string& line : lines) {
    text += Cut(line, width);
    text += "\x1b[K\n";
  }
  text += "\x1b[J";
  drawn_ = lines.size();
  frame_ = std::move(lines);
  out_ << text;
}

void ProgressDisplay::Log(const json& job) {
  const std::string id = Str(job, "id");
  const std::string state = JobState(job);
  auto job_line = [&] {
    if (state == job_state_) return;
    job_state_ = state;
    const std::string message = Str(job, "message");
    out_ << "job " << id << " " << state << (message.empty() ? "" : ": " + message) << "\n";
  };
  const bool finished = JobFinished(job);
  if (!finished) job_line();
  const json& detail = Obj(job, "detail");
  if (Str(job, "kind") == "restore") {
    const std::string who = util::Cat(Str(detail, "vm_name").empty() ? "-" : Str(detail, "vm_name"),
                                      " ", Str(detail, "host").empty() ? "-" : Str(detail, "host"));
    const json& steps = List(detail, "steps");
    for (size_t i = steps_; i < steps.size(); ++i) {
      const std::string message = Str(steps[i], "message");
      out_ << who << " " << Field(steps[i], "step") << (message.empty() ? "" : " " + message)
           << "\n";
      step_ = Str(steps[i], "step");
    }
    steps_ = std::max(steps_, steps.size());
    if (steps.empty() && !Str(detail, "step").empty() && Str(detail, "step") != step_) {
      step_ = Str(detail, "step");
      const std::string message = Str(job, "message");
      out_ << who << " " << step_ << (message.empty() ? "" : " " + message) << "\n";
    }
  } else {
    for (const json& vm : JobVms(job)) {
      std::string key = Str(vm, "uuid");
      if (key.empty()) key = Str(vm, "name");
      const std::string vm_state = Str(vm, "state");
      std::string what;
      if (vm_state == "running" || (vm_state.empty() && !Str(vm, "step").empty())) {
        what = Str(vm, "step").empty() ? "running" : Str(vm, "step");
        if (!Str(vm, "message").empty()) what += " " + Str(vm, "message");
      } else if (vm_state == "failed") {
        what = Str(vm, "error").empty() ? "failed" : "failed: " + Str(vm, "error");
      } else if (vm_state == "succeeded" && !Str(vm, "consistency_achieved").empty()) {
        what = util::Cat("succeeded (consistency ", Str(vm, "consistency_achieved"), ")");
      } else {
        what = vm_state.empty() ? "-" : vm_state;
      }
      std::string line = util::Cat(Str(vm, "name").empty() ? key : Str(vm, "name"), " ",
                                   Str(vm, "host").empty() ? "-" : Str(vm, "host"), " ", what);
      auto [it, added] = vms_.try_emplace(key, line);
      if (!added && it->second == line) continue;
      it->second = line;
      out_ << line << "\n";
    }
  }
  if (finished) job_line();
}

}  // namespace strata::cli
