// strata: the operator's CLI over stratad's REST API. This file only parses flags; the commands
// live in src/cli.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "commands.h"

namespace {

constexpr char kFooter[] =
    "Server: --server URL, else $STRATA_SERVER, else http://127.0.0.1:8080.\n"
    "Exit codes: 0 ok, 1 error (the server's message is printed), 2 stratad unreachable,\n"
    "3 a graph query matched nothing.";

constexpr char kSelectorHelp[] =
    "Selector: key=glob terms separated by spaces or commas, all of which must hold. Keys: type,\n"
    "name, id, or an attribute (attr.KEY). Examples: 'type=vm name=web*',\n"
    "'type=storage_volume name=gold', 'attr.state=running', 'id=vm:*'.";

// `strata events --follow` until SIGINT or SIGTERM: the signals are blocked in every thread and
// taken by one waiting thread, which asks the CLI to stop (closing the stream's connection); the
// command then returns normally, exit code 0.
int FollowUntilSignalled(strata::cli::Cli& cli, const strata::cli::EventsOptions& events) {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::atomic<bool> done{false};
  std::thread waiter([&] {
    int signal = 0;
    while (sigwait(&signals, &signal) == 0) {
      if (done) return;
      cli.StopFollowing();
    }
  });
  const int code = cli.Events(events);
  done = true;
  pthread_kill(waiter.native_handle(), SIGTERM);  // wakes the waiter, which sees `done`
  waiter.join();
  return code;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "strata: where every VM's data lives. Asks stratad (the central server) about hosts, VMs\n"
      "and the resource graph from VMs down to the storage systems."};
  app.footer(kFooter);
  app.require_subcommand(1);
  app.fallthrough();

  std::string server_flag;
  strata::cli::GlobalOptions globals;
  app.add_option("--server,-s", server_flag,
                 "stratad's REST API, e.g. http://10.0.0.2:8080 (default: $STRATA_SERVER, else "
                 "http://127.0.0.1:8080)");
  app.add_flag("--json", globals.json, "Print the server's JSON instead of a table");

  CLI::App* hosts = app.add_subcommand("hosts", "List the hypervisor hosts and their state");

  strata::cli::VmsOptions vms;
  CLI::App* vms_cmd = app.add_subcommand("vms", "List VMs, optionally filtered");
  vms_cmd->add_option("--host", vms.host, "Only the VMs of this host id");
  vms_cmd->add_option("--name", vms.name, "Only VMs whose name matches this glob, e.g. 'web*'");
  vms_cmd->add_option("--state", vms.state, "Only VMs in this state, e.g. running");

  strata::cli::TreeOptions tree;
  CLI::App* tree_cmd = app.add_subcommand(
      "tree",
      "Print each VM's chain down to the storage systems: disks, files, mounts, file systems,\n"
      "devices, LUNs, storage volumes and systems");
  tree_cmd->add_option("vm", tree.vms, "VM names (globs allowed) or UUIDs; default: every VM");
  tree_cmd->add_option("--to", tree.to, "Stop at this node type")->capture_default_str();

  strata::cli::FindOptions find;
  bool up = false;
  bool down = false;
  int depth = -1;
  CLI::App* find_cmd = app.add_subcommand(
      "find", "Graph query: select nodes, then follow the graph downward or upward");
  find_cmd->footer(std::string(kSelectorHelp) +
                   "\nExamples:\n"
                   "  strata find 'type=vm name=web01' --to storage_system\n"
                   "  strata find 'type=storage_volume name=gold' --up --to vm");
  find_cmd->add_option("selector", find.selector, "Which nodes to start from")->required();
  auto* up_flag =
      find_cmd->add_flag("--up", up, "Follow upward: what rests on the selection (e.g. its VMs)");
  find_cmd->add_flag("--down", down, "Follow downward: what the selection rests on (default)")
      ->excludes(up_flag);
  find_cmd->add_option("--to", find.to,
                       "Keep only paths that reach this node type (vm, storage_system, ...) and "
                       "list the nodes of that type");
  find_cmd->add_option("--depth", depth, "Maximum traversal depth")->check(CLI::NonNegativeNumber);
  find_cmd->add_flag("--tree", find.tree, "Print the indented tree instead of a node table");

  strata::cli::EventsOptions events;
  int64_t after = -1;
  int limit = -1;
  CLI::App* events_cmd =
      app.add_subcommand("events", "List catalog events (VMs added, removed, changed)");
  events_cmd->add_option("--after", after, "Only events with a sequence number above SEQ")
      ->check(CLI::NonNegativeNumber);
  events_cmd->add_option("--limit", limit, "At most N events")->check(CLI::Range(1, 10000));
  events_cmd->add_option("--host", events.host, "Only the events of this host id");
  auto* follow_flag = events_cmd->add_flag(
      "--follow,-f", events.follow,
      "Keep printing events as they happen (from --after SEQ, else from now on), reconnecting\n"
      "after a dropped connection without repeating events; Ctrl-C ends it");
  events_cmd->get_option("--limit")->excludes(follow_flag);

  CLI::App* backups = app.add_subcommand("backups", "List backups");
  CLI::App* jobs = app.add_subcommand("jobs", "List jobs with their state and progress");

  strata::cli::BackupOptions backup;
  CLI::App* backup_cmd = app.add_subcommand(
      "backup", "Back up VMs (asks stratad; the server answers 501 until backups are built)");
  backup_cmd->add_option("vm", backup.vms, "VM names or UUIDs")->required();
  backup_cmd->add_option("--name", backup.name, "Name of the backup");
  backup_cmd->add_option("--consistency", backup.consistency, "crash, pause or quiesce")
      ->check(CLI::IsMember({"crash", "pause", "quiesce"}));
  backup_cmd->add_option("--policy", backup.policy, "Retention policy name");

  strata::cli::RestoreOptions restore;
  CLI::App* restore_cmd = app.add_subcommand(
      "restore", "Restore a VM (asks stratad; the server answers 501 until restores are built)");
  restore_cmd->add_option("vm", restore.vm, "VM name or UUID")->required();
  restore_cmd->add_option("--backup", restore.backup,
                          "Backup id or name (default: the newest holding the VM)");
  restore_cmd->add_option("--target-host", restore.target_host,
                          "Restore onto this host (default: where the VM is)");

  for (CLI::App* sub : app.get_subcommands({})) {
    sub->footer(sub->get_footer().empty() ? std::string(kFooter)
                                          : sub->get_footer() + "\n" + kFooter);
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  globals.server = strata::cli::ResolveServer(server_flag, std::getenv(strata::cli::kServerEnv));
  strata::cli::Cli cli(globals, std::cout, std::cerr);
  if (*hosts) return cli.Hosts();
  if (*vms_cmd) return cli.Vms(vms);
  if (*tree_cmd) return cli.Tree(tree);
  if (*find_cmd) {
    find.direction = up ? "up" : "down";
    if (depth >= 0) find.depth = depth;
    return cli.Find(find);
  }
  if (*events_cmd) {
    if (after >= 0) events.after = after;
    if (limit >= 0) events.limit = limit;
    return events.follow ? FollowUntilSignalled(cli, events) : cli.Events(events);
  }
  if (*backups) return cli.Backups();
  if (*jobs) return cli.Jobs();
  if (*backup_cmd) return cli.Backup(backup);
  if (*restore_cmd) return cli.Restore(restore);
  return strata::cli::kExitError;
}
