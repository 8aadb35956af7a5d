#include "render.h"

#include <algorithm>
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

std::string RenderBackups(const json& answer) {
  std::vector<std::vector<std::string>> rows;
  for (const json& backup : List(answer, "backups")) {
    std::vector<std::string> row = Row(
        backup, {"id", "name", "state", "consistency", "started_at", "finished_at", "requester"});
    row.push_back(backup.is_object() && backup.contains("items") && backup["items"].is_array()
                      ? std::to_string(backup["items"].size())
                      : "-");
    rows.push_back(std::move(row));
  }
  return RenderTable(
      {"ID", "NAME", "STATE", "CONSISTENCY", "STARTED", "FINISHED", "REQUESTER", "ITEMS"}, rows);
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

}  // namespace strata::cli
