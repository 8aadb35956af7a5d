// Human output of the `strata` CLI: aligned tables built from the REST API's JSON answers.
#pragma once

#include <string>
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
std::string RenderBackups(const nlohmann::json& answer);
std::string RenderJobs(const nlohmann::json& answer);
// A graph answer ({"nodes":[...],"edges":[...]}) as a TYPE NAME ID table (TYPE NAME HOST ID when
// a node has a "host" attribute, as VMs do); with `only_type` (not empty), just the nodes of
// that type.
std::string RenderNodes(const nlohmann::json& graph, const std::string& only_type);

}  // namespace strata::cli
