// stratad: the central Strata server. This file parses flags and the optional TOML config file,
// sets up logging and signals, and runs strata::server::Stratad (src/server).
//
// On start it prints one machine-readable line to stdout (flushed), e.g.
//   stratad: listening grpc=127.0.0.1:40123 http=127.0.0.1:40124
// with the ports actually bound (port 0 in a listen address picks a free port).
//
// `stratad catalog rebuild --from-storage DIR... [--db PATH | --config FILE] [--json]` does not
// serve: it opens the catalog the server would use (same --db default and config file) and
// imports the backups described by the manifests found under the directories
// (strata/server/catalog_import.h), prints what it did, and exits 1 when a manifest or a
// backup could not be imported or the catalog could not be opened (2 for a bad config file;
// CLI11's codes for a bad command line, as for the server).
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <toml++/toml.h>
#include <CLI/CLI.hpp>

#include "strata/server/catalog.h"
#include "strata/server/catalog_import.h"
#include "strata/server/stratad.h"

namespace {

struct Settings {
  std::string grpc_listen = "127.0.0.1:7070";
  std::string http_listen = "127.0.0.1:8080";
  std::string db = "./stratad.db";
  int64_t heartbeat_interval_ms = 1000;
  int64_t heartbeat_timeout_ms = 0;  // 0: 3 x interval
  int64_t agent_deadline_ms = 30000;
  int64_t http_threads = 512;
  int64_t max_event_streams = -1;
  int64_t refresh_workers = 2;
  std::string log_level = "info";
  std::string web_root = "auto";  // "auto": beside the binary (DefaultWebRoot); "": no console
};

// The built web console: <prefix>/share/strata/web beside <prefix>/bin/stratad, the same
// relative layout in the build tree (build/default/share/strata/web) and in an installation.
// Empty when it is not there.
std::string DefaultWebRoot() {
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "";
  const std::filesystem::path root = exe.parent_path().parent_path() / "share/strata/web";
  if (!std::filesystem::is_regular_file(root / "index.html", ec)) return "";
  return root.string();
}

// Reads the config file; a key given on the command line (to any of `apps`) wins over the file.
bool ApplyConfigFile(const std::string& path, const std::vector<const CLI::App*>& apps, Settings& s,
                     std::string* error) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    *error = "config file '" + path + "': " + std::string(e.description()) + " (line " +
             std::to_string(e.source().begin.line) + ")";
    return false;
  }
  for (const auto& [key, value] : root) {
    const std::string k(key.str());
    const std::string flag = "--" + [&] {
      std::string f = k;
      for (char& c : f) {
        if (c == '_') c = '-';
      }
      return f;
    }();
    bool on_command_line = false;
    for (const CLI::App* app : apps) {
      const CLI::Option* option = app->get_option_no_throw(flag);
      on_command_line = on_command_line || (option != nullptr && option->count() > 0);
    }
    auto want_string = [&](std::string& target) {
      if (!value.is_string()) {
        *error = "config file '" + path + "': '" + k + "' must be a string";
        return false;
      }
      if (!on_command_line) target = *value.value<std::string>();
      return true;
    };
    auto want_int = [&](int64_t& target) {
      if (!value.is_integer()) {
        *error = "config file '" + path + "': '" + k + "' must be a whole number";
        return false;
      }
      if (!on_command_line) target = *value.value<int64_t>();
      return true;
    };
    bool ok;
    if (k == "grpc_listen") {
      ok = want_string(s.grpc_listen);
    } else if (k == "http_listen") {
      ok = want_string(s.http_listen);
    } else if (k == "db") {
      ok = want_string(s.db);
    } else if (k == "log_level") {
      ok = want_string(s.log_level);
    } else if (k == "heartbeat_interval_ms") {
      ok = want_int(s.heartbeat_interval_ms);
    } else if (k == "heartbeat_timeout_ms") {
      ok = want_int(s.heartbeat_timeout_ms);
    } else if (k == "agent_deadline_ms") {
      ok = want_int(s.agent_deadline_ms);
    } else if (k == "http_threads") {
      ok = want_int(s.http_threads);
    } else if (k == "max_event_streams") {
      ok = want_int(s.max_event_streams);
    } else if (k == "refresh_workers") {
      ok = want_int(s.refresh_workers);
    } else if (k == "web_root") {
      ok = want_string(s.web_root);
    } else {
      *error = "config file '" + path + "': unknown key '" + k + "'";
      ok = false;
    }
    if (!ok) return false;
  }
  return true;
}

// `stratad catalog rebuild`: 0 when everything found was imported or already there, 1 otherwise.
int RunCatalogRebuild(const Settings& s, const std::vector<std::string>& roots, bool json) {
  absl::StatusOr<std::unique_ptr<strata::server::Catalog>> catalog =
      strata::server::OpenSqliteCatalog(s.db);
  if (!catalog.ok()) {
    std::fprintf(stderr, "stratad: catalog rebuild: %s\n",
                 std::string(catalog.status().message()).c_str());
    return 1;
  }
  absl::StatusOr<strata::server::ImportReport> report =
      strata::server::ImportManifests(**catalog, roots);
  if (!report.ok()) {
    std::fprintf(stderr, "stratad: catalog rebuild: %s\n",
                 std::string(report.status().message()).c_str());
    return 1;
  }
  if (json) {
    std::printf("%s\n", strata::server::ToJson(*report).dump(2).c_str());
  } else {
    std::printf("catalog '%s': %s", s.db.c_str(),
                strata::server::FormatImportReport(*report).c_str());
  }
  std::fflush(stdout);
  return report->errors.empty() ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Settings s;
  std::string config_path;
  CLI::App app{"stratad: the central Strata server (catalog, merged resource graph, REST API)"};
  app.add_option("--config", config_path, "TOML config file (keys as the flags, with '_')");
  app.add_option("--grpc-listen", s.grpc_listen, "host:port for agents (gRPC); port 0 = any")
      ->capture_default_str();
  app.add_option("--http-listen", s.http_listen, "host:port for the REST API; port 0 = any")
      ->capture_default_str();
  app.add_option("--db", s.db, "SQLite catalog file")->capture_default_str();
  app.add_option("--heartbeat-interval-ms", s.heartbeat_interval_ms,
                 "how often agents are told to heartbeat")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{10}, int64_t{3600000}));
  app.add_option("--heartbeat-timeout-ms", s.heartbeat_timeout_ms,
                 "a host without a heartbeat this long is unreachable (0: 3 x interval)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{86400000}));
  app.add_option("--agent-deadline-ms", s.agent_deadline_ms, "deadline of calls to agents")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{100}, int64_t{3600000}));
  app.add_option("--http-threads", s.http_threads,
                 "HTTP worker threads (each connection and each event stream holds one)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{8}, int64_t{10000}));
  app.add_option("--max-event-streams", s.max_event_streams,
                 "open event streams allowed (-1: http threads - 64)")
      ->capture_default_str();
  app.add_option("--refresh-workers", s.refresh_workers, "threads refreshing host graphs")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{64}));
  app.add_option("--log-level", s.log_level, "trace, debug, info, warn, error")
      ->capture_default_str();
  app.add_option("--web-root", s.web_root,
                 "directory of the built web console served at / (auto: share/strata/web beside "
                 "the binary's bin/; empty: no console)")
      ->capture_default_str();

  // stratad catalog rebuild: the catalog's options bind the same settings as the server's.
  CLI::App* catalog_cmd = app.add_subcommand("catalog", "maintain the catalog without serving");
  catalog_cmd->require_subcommand(1);
  CLI::App* rebuild = catalog_cmd->add_subcommand(
      "rebuild", "import the backups described by the manifests on storage into the catalog");
  std::vector<std::string> storage_roots;
  bool rebuild_json = false;
  rebuild
      ->add_option("--from-storage", storage_roots,
                   "directories searched for .strata-snapshots/*.manifest.json (e.g. volume roots)")
      ->required()
      ->expected(1, -1);
  rebuild->add_option("--db", s.db, "SQLite catalog file")->capture_default_str();
  rebuild->add_option("--config", config_path, "stratad's TOML config file (its 'db' key)");
  rebuild->add_flag("--json", rebuild_json, "print the report as JSON");
  CLI11_PARSE(app, argc, argv);

  if (!config_path.empty()) {
    std::string error;
    if (!ApplyConfigFile(config_path, {&app, rebuild}, s, &error)) {
      std::fprintf(stderr, "stratad: %s\n", error.c_str());
      return 2;
    }
  }
  if (rebuild->parsed()) return RunCatalogRebuild(s, storage_roots, rebuild_json);

  auto logger = spdlog::stderr_color_mt("stratad");
  spdlog::set_default_logger(logger);
  const spdlog::level::level_enum level = spdlog::level::from_str(s.log_level);
  if (level == spdlog::level::off && s.log_level != "off") {
    std::fprintf(stderr, "stratad: unknown log level '%s'\n", s.log_level.c_str());
    return 2;
  }
  spdlog::set_level(level);

  // SIGINT/SIGTERM are blocked in every thread and taken by sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  strata::server::StratadOptions options;
  options.grpc_listen = s.grpc_listen;
  options.http_listen = s.http_listen;
  options.db_path = s.db;
  options.heartbeat_interval = std::chrono::milliseconds(s.heartbeat_interval_ms);
  options.heartbeat_timeout = std::chrono::milliseconds(s.heartbeat_timeout_ms);
  options.agent_deadline = std::chrono::milliseconds(s.agent_deadline_ms);
  options.http_threads = static_cast<int>(s.http_threads);
  options.max_event_streams = static_cast<int>(s.max_event_streams);
  options.refresh_workers = static_cast<int>(s.refresh_workers);
  options.web_root = s.web_root == "auto" ? DefaultWebRoot() : s.web_root;
  if (!options.web_root.empty() &&
      !std::filesystem::is_regular_file(std::filesystem::path(options.web_root) / "index.html")) {
    spdlog::error("cannot start: web console directory '{}' has no index.html", options.web_root);
    return 1;
  }

  strata::server::Stratad server(options);
  if (absl::Status status = server.Start(); !status.ok()) {
    spdlog::error("cannot start: {}", std::string(status.message()));
    return 1;
  }
  spdlog::info("listening for agents (gRPC) on {}, REST API on http://{}", server.grpc_address(),
               server.http_address());
  if (options.web_root.empty()) {
    spdlog::info("no web console (no --web-root, none found beside the binary)");
  } else {
    spdlog::info("web console from {} on http://{}/", options.web_root, server.http_address());
  }
  std::printf("stratad: listening grpc=%s http=%s\n", server.grpc_address().c_str(),
              server.http_address().c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("{} received, shutting down", signal_number == SIGINT ? "SIGINT" : "SIGTERM");
  server.Stop();
  spdlog::info("stopped");
  return 0;
}
