// strata: the operator's CLI over stratad's REST API. This file only parses flags; the commands
// live in src/cli.
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <string>
#include <thread>

#include <CLI/CLI.hpp>

#include "commands.h"

namespace {

constexpr char kFooter[] =
    "Server: --server URL, else $STRATA_SERVER, else http://127.0.0.1:8080.\n"
    "Exit codes: 0 ok, 1 error (the server's message is printed; a followed job that failed or\n"
    "backed up only some VMs), 2 stratad unreachable, 3 a graph query matched nothing,\n"
    "130 following a job interrupted (the job goes on).";

constexpr char kSelectorHelp[] =
    "Selector: key=glob terms separated by spaces or commas, all of which must hold. Keys: type,\n"
    "name, id, or an attribute (attr.KEY). Examples: 'type=vm name=web*',\n"
    "'type=storage_volume name=gold', 'attr.state=running', 'id=vm:*'.";

constexpr char kFollowHelp[] =
    "Following a job: on a terminal, a live display (one line per VM, the overall percentage)\n"
    "redrawn in place; otherwise one line per change. Then a summary. Ctrl-C stops following,\n"
    "not the job.";

// Runs `command` (a long-running one: `events --follow`, following a job) until it returns or
// SIGINT/SIGTERM arrives: the signals are blocked in every thread and taken by one waiting thread,
// which asks the CLI to stop following (closing its connection); the command then returns
// normally. A signal that comes while nothing is being followed (e.g. at a confirmation prompt)
// ends the process as it would have without this.
int RunStoppable(strata::cli::Cli& cli, const std::function<int()>& command) {
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
      if (!cli.StopFollowing()) {
        std::signal(signal, SIG_DFL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, signal);
        pthread_sigmask(SIG_UNBLOCK, &one, nullptr);
        raise(signal);  // delivered to this thread, where it is unblocked: the default action
      }
    }
  });
  const int code = command();
  done = true;
  pthread_kill(waiter.native_handle(), SIGTERM);  // wakes the waiter, which sees `done`
  waiter.join();
  return code;
}

int TerminalColumns() {
  winsize size{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &size) == 0 && size.ws_col > 0) return size.ws_col;
  return 0;
}

// Appends kFooter to the footer of every command below `app`.
void AddFooters(CLI::App* app) {
  for (CLI::App* sub : app->get_subcommands({})) {
    sub->footer(sub->get_footer().empty() ? std::string(kFooter)
                                          : sub->get_footer() + "\n" + kFooter);
    AddFooters(sub);
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "strata: where every VM's data lives, and its backups. Asks stratad (the central server)\n"
      "about hosts, VMs and the resource graph from VMs down to the storage systems; starts and\n"
      "follows backups and restores; applies retention policies."};
  app.require_subcommand(1);
  app.fallthrough();

  std::string server_flag;
  strata::cli::GlobalOptions globals;
  app.add_option("--server,-s", server_flag,
                 "stratad's REST API, e.g. http://10.0.0.2:8080 (default: $STRATA_SERVER, else "
                 "http://127.0.0.1:8080)");
  app.add_flag("--json", globals.json, "Print the server's JSON instead of a table");

  // ---- inventory and graph
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

  // ---- backup
  strata::cli::BackupOptions backup;
  std::vector<std::string> backup_vm_flags;
  bool backup_no_wait = false;
  CLI::App* backup_cmd = app.add_subcommand(
      "backup",
      "Back up VMs: snapshots at the consistency asked for, copies recorded in the catalog.\n"
      "Starts a job and follows it to its end");
  backup_cmd->footer(
      std::string(kFollowHelp) +
      "\nConsistency: crash (disks as they are, the VM keeps running), pause (the VM is paused\n"
      "while its disks are snapshotted), quiesce (the guest agent flushes its file systems).\n"
      "Examples:\n"
      "  strata backup web01 db01 --consistency quiesce --fallback pause\n"
      "  strata backup --host host-a --policy nightly --verify\n"
      "  strata backup --select 'type=vm name=web*' --no-wait\n"
      "  strata backup --cluster prod --name before-upgrade --json");
  backup_cmd->add_option("vms", backup.vms, "VM names or UUIDs");
  backup_cmd->add_option("--vm", backup_vm_flags, "A VM name or UUID (repeatable)")
      ->allow_extra_args(false);
  backup_cmd->add_option("--host", backup.host, "Every VM of this host");
  backup_cmd->add_option("--select", backup.select,
                         "Every VM a graph selector reaches, e.g. 'type=vm name=web*'");
  backup_cmd->add_option("--cluster", backup.cluster, "Every VM of this cluster's hosts");
  backup_cmd->add_option("--consistency", backup.consistency, "crash, pause or quiesce")
      ->check(CLI::IsMember({"crash", "pause", "quiesce"}))
      ->capture_default_str();
  backup_cmd
      ->add_option("--fallback", backup.fallback,
                   "What to do when the consistency cannot be had: pause or crash "
                   "(default: fail that VM)")
      ->check(CLI::IsMember({"pause", "crash"}));
  backup_cmd
      ->add_option("--vm-snapshot", backup.vm_snapshot,
                   "VM-level snapshot: auto (internal on the test driver, an external overlay "
                   "merged back on QEMU), internal, external or none")
      ->check(CLI::IsMember({"auto", "internal", "external", "none"}));
  backup_cmd->add_option("--name", backup.name,
                         "Name of the backup (default: <policy or 'backup'>-YYYYMMDD-HHMMSS)");
  backup_cmd->add_option("--policy", backup.policy, "Retention policy the backup falls under");
  backup_cmd->add_flag("--verify", backup.verify, "Read each copy back and compare its checksum");
  backup_cmd->add_flag("--no-wait", backup_no_wait,
                       "Print the job and backup ids and return instead of following the job");

  // ---- restore
  strata::cli::RestoreOptions restore;
  bool restore_start = false;
  bool restore_no_start = false;
  bool restore_no_wait = false;
  CLI::App* restore_cmd = app.add_subcommand(
      "restore",
      "Restore a VM from a backup: in place (its disks are replaced; asks for confirmation) or\n"
      "as a new VM (--as). Starts a job and follows it to its end");
  restore_cmd->footer(
      std::string(kFollowHelp) +
      "\nAn in-place restore stops the VM and overwrites its disks: it asks first (naming what\n"
      "it overwrites), and needs --yes when stdin is not a terminal.\n"
      "Examples:\n"
      "  strata restore nightly-20261126-080000 --vm web01 --as web01-check --verify\n"
      "  strata restore --vm web01 --disk vdb --yes        # newest backup holding web01\n"
      "  strata restore b-1a2b3c --vm db01 --host host-c --as db01 --target-dir /srv/restore");
  restore_cmd->add_option("backup", restore.backup,
                          "Backup id or name (default: the newest backup holding the VM)");
  restore_cmd->add_option("--vm", restore.vm, "The VM to restore, name or UUID as backed up")
      ->required();
  restore_cmd->add_option("--as", restore.as_name,
                          "Restore as a new VM of this name (default: in place)");
  restore_cmd
      ->add_option("--disk", restore.disks,
                   "Only this disk, e.g. vda (repeatable; default: every disk)")
      ->allow_extra_args(false);
  restore_cmd->add_flag("--verify", restore.verify,
                        "Compare the restored disks' checksums with the backup's");
  auto* start_flag = restore_cmd->add_flag("--start", restore_start, "Start the VM once restored");
  restore_cmd->add_flag("--no-start", restore_no_start, "Leave the VM shut off once restored")
      ->excludes(start_flag);
  restore_cmd->add_option("--host", restore.host,
                          "Restore onto this host (default: the host that took the backup)");
  restore_cmd->add_option("--target-dir", restore.target_dir,
                          "Directory for the disks of a new VM (default: the server's choice)");
  restore_cmd->add_flag("--yes,-y", restore.yes, "Restore in place without asking");
  restore_cmd->add_flag("--no-wait", restore_no_wait,
                        "Print the job id and return instead of following the job");

  // ---- jobs
  strata::cli::JobsOptions jobs;
  int jobs_limit = -1;
  CLI::App* jobs_cmd =
      app.add_subcommand("jobs", "List jobs (backups, restores) with their state and progress");
  jobs_cmd->footer(
      "Examples:\n"
      "  strata jobs --state running --kind backup\n"
      "  strata jobs show j-20261126-080000-1a2b3c\n"
      "  strata jobs wait j-20261126-080000-1a2b3c");
  jobs_cmd->add_option("--state", jobs.state, "Only jobs in this state")
      ->check(CLI::IsMember({"queued", "running", "succeeded", "failed"}));
  jobs_cmd->add_option("--kind", jobs.kind, "Only jobs of this kind, e.g. backup or restore");
  jobs_cmd->add_option("--limit", jobs_limit, "At most N jobs")->check(CLI::PositiveNumber);
  std::string job_id;
  CLI::App* jobs_show = jobs_cmd->add_subcommand(
      "show", "A job's details: state, progress, per-VM table of a backup, steps of a restore");
  jobs_show->add_option("id", job_id, "Job id")->required();
  CLI::App* jobs_wait =
      jobs_cmd->add_subcommand("wait", "Follow a job to its end; exit 0 only when it succeeded");
  jobs_wait->footer(kFollowHelp);
  jobs_wait->add_option("id", job_id, "Job id")->required();
  CLI::App* job_cmd = app.add_subcommand("job", "A job's details (the same as 'jobs show ID')");
  job_cmd->add_option("id", job_id, "Job id")->required();

  // ---- backups
  strata::cli::BackupsOptions backups;
  int backups_limit = -1;
  CLI::App* backups_cmd =
      app.add_subcommand("backups", "List backups, newest first; show, delete or prune them");
  backups_cmd->footer(
      "Examples:\n"
      "  strata backups --vm web01 --state succeeded\n"
      "  strata backups show nightly-20261126-080000\n"
      "  strata backups delete b-1a2b3c --yes\n"
      "  strata backups prune --policy nightly --dry-run");
  backups_cmd->add_option("--state", backups.state, "Only backups in this state")
      ->check(CLI::IsMember({"running", "succeeded", "failed"}));
  backups_cmd->add_option("--vm", backups.vm, "Only backups holding this VM (name or UUID)");
  backups_cmd->add_option("--limit", backups_limit, "At most N backups")
      ->check(CLI::PositiveNumber);
  std::string backup_id;
  CLI::App* backups_show = backups_cmd->add_subcommand(
      "show", "A backup's details and items: VM, disk, volume, snapshot, size, checksum");
  backups_show->add_option("id", backup_id, "Backup id or name")->required();
  bool delete_yes = false;
  CLI::App* backups_delete = backups_cmd->add_subcommand(
      "delete", "Delete a backup and the snapshots no other backup uses (asks first)");
  backups_delete->add_option("id", backup_id, "Backup id or name")->required();
  backups_delete->add_flag("--yes,-y", delete_yes, "Delete without asking");
  strata::cli::PruneOptions prune;
  CLI::App* backups_prune = backups_cmd->add_subcommand(
      "prune",
      "Apply a retention policy to its backups: list what it keeps (and why) and delete the rest");
  backups_prune->add_option("--policy", prune.policy, "The retention policy")->required();
  backups_prune->add_flag("--dry-run", prune.dry_run,
                          "Only show what would be kept and deleted; delete nothing");

  // ---- policies
  CLI::App* policies_cmd = app.add_subcommand("policies", "List, set or delete retention policies");
  policies_cmd->footer(
      "A policy keeps the newest N backups (--keep-last) and the newest backup of each of the\n"
      "last N hours, days, weeks and months; a backup is kept when any rule keeps it.\n"
      "Examples:\n"
      "  strata policies set nightly --keep-last 3 --keep-daily 7 --keep-weekly 4\n"
      "  strata policies delete nightly");
  strata::cli::PolicyOptions policy;
  CLI::App* policies_set = policies_cmd->add_subcommand(
      "set", "Create or replace a policy (counts not given are 0, i.e. not used)");
  policies_set->add_option("name", policy.name, "Policy name")->required();
  policies_set->add_option("--keep-last", policy.keep_last, "Keep the newest N backups")
      ->check(CLI::NonNegativeNumber);
  policies_set
      ->add_option("--keep-hourly", policy.keep_hourly,
                   "Keep the newest backup of each of the last N hours")
      ->check(CLI::NonNegativeNumber);
  policies_set
      ->add_option("--keep-daily", policy.keep_daily,
                   "Keep the newest backup of each of the last N days")
      ->check(CLI::NonNegativeNumber);
  policies_set
      ->add_option("--keep-weekly", policy.keep_weekly,
                   "Keep the newest backup of each of the last N weeks")
      ->check(CLI::NonNegativeNumber);
  policies_set
      ->add_option("--keep-monthly", policy.keep_monthly,
                   "Keep the newest backup of each of the last N months")
      ->check(CLI::NonNegativeNumber);
  std::string policy_name;
  CLI::App* policies_delete = policies_cmd->add_subcommand("delete", "Delete a policy");
  policies_delete->add_option("name", policy_name, "Policy name")->required();

  AddFooters(&app);
  app.footer(kFooter);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  globals.server = strata::cli::ResolveServer(server_flag, std::getenv(strata::cli::kServerEnv));
  globals.out_terminal = isatty(STDOUT_FILENO) == 1;
  globals.in_terminal = isatty(STDIN_FILENO) == 1;
  if (globals.out_terminal) globals.columns = TerminalColumns();
  strata::cli::Cli cli(globals, std::cout, std::cerr, &std::cin);
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
    if (!events.follow) return cli.Events(events);
    return RunStoppable(cli, [&] { return cli.Events(events); });
  }
  if (*backup_cmd) {
    backup.vms.insert(backup.vms.end(), backup_vm_flags.begin(), backup_vm_flags.end());
    backup.wait = !backup_no_wait;
    return RunStoppable(cli, [&] { return cli.Backup(backup); });
  }
  if (*restore_cmd) {
    if (restore_start) restore.start = true;
    if (restore_no_start) restore.start = false;
    restore.wait = !restore_no_wait;
    return RunStoppable(cli, [&] { return cli.Restore(restore); });
  }
  if (*jobs_cmd) {
    if (*jobs_show) return cli.JobShow(job_id);
    if (*jobs_wait) return RunStoppable(cli, [&] { return cli.JobWait(job_id); });
    if (jobs_limit > 0) jobs.limit = jobs_limit;
    return cli.Jobs(jobs);
  }
  if (*job_cmd) return cli.JobShow(job_id);
  if (*backups_cmd) {
    if (*backups_show) return cli.BackupShow(backup_id);
    if (*backups_delete) return cli.BackupDelete(backup_id, delete_yes);
    if (*backups_prune) return cli.Prune(prune);
    if (backups_limit > 0) backups.limit = backups_limit;
    return cli.Backups(backups);
  }
  if (*policies_cmd) {
    if (*policies_set) return cli.PolicySet(policy);
    if (*policies_delete) return cli.PolicyDelete(policy_name);
    return cli.Policies();
  }
  return strata::cli::kExitError;
}
