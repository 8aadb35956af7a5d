// A private libvirtd for tests: its own config, sockets, pid file and log in a directory of the
// test, serving libvirt's test driver to every client of
//   test+unix:///default?socket=<dir>/sock/libvirt-sock
// so that the agent under test, `virsh` and the test itself (libvirt C API) are ordinary clients
// of ONE shared test-driver state, and the test can change the "hypervisor" from outside the
// agent, as an operator would. Needs /usr/sbin/libvirtd (Debian package libvirt-daemon,
// installed by scripts/install-deps.sh) and virsh (libvirt-clients); run as root (tests run so).
//
// How it is started (found on Debian 12, libvirt 9.0.0):
//
//   <dir>/libvirtd.conf:
//     unix_sock_dir = "<dir>/sock"        # libvirt-sock, libvirt-sock-ro, libvirt-admin-sock
//     unix_sock_ro_perms = "0777"
//     unix_sock_rw_perms = "0700"
//     unix_sock_admin_perms = "0700"
//     auth_unix_ro = "none"               # the default for rw as root would be polkit
//     auth_unix_rw = "none"
//     listen_tls = 0
//     listen_tcp = 0
//     log_outputs = "3:stderr"             # warnings and errors, into <dir>/libvirtd.log
//
//   LIBVIRT_DRIVER_DIR=<dir>/no-drivers /usr/sbin/libvirtd --config <dir>/libvirtd.conf
//       --pid-file <dir>/libvirtd.pid --timeout 120      (one command line)
//
// - LIBVIRT_DRIVER_DIR points at an EMPTY directory: libvirtd then loads none of its driver
//   modules (qemu, network, storage, nodedev, ...; it skips modules that are not there) and only
//   the test and remote drivers, which are built into libvirt.so, exist. So, although it runs
//   as root ("privileged"), it touches none of the system daemon's state (/run/libvirt/qemu,
//   /var/lib/libvirt, /etc/libvirt/qemu, driver locks) and can run beside a system libvirtd.
//   The one file it writes outside <dir> is /run/libvirt/common/system.token (the per-boot
//   identity token every privileged libvirt daemon shares).
// - The test driver needs neither virtlogd nor virtlockd (those serve the qemu driver); nothing
//   else has to run. Start-up takes ~0.1-0.2 s; SIGTERM stops it in ~0.1 s.
// - --timeout 120: an idle daemon (no client) exits by itself, a safety net when a crashed test
//   leaves it behind.
// - IMPORTANT: the test driver's "default" state lives as long as one connection is open; when
//   the last client disconnects it is thrown away and the next client sees the pristine default
//   (one running domain named "test"). So the fixture keeps a connection open for its whole
//   life: a `virsh -c URI event --loop --all` child (whose output, in <dir>/keeper.log, is a
//   record of every event the daemon emitted).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "strata/util/child_process.h"

namespace strata::testing {

inline constexpr char kLibvirtdPath[] = "/usr/sbin/libvirtd";

class PrivateLibvirtd {
 public:
  // True when /usr/sbin/libvirtd and virsh are installed (tests skip otherwise).
  static bool Available();

  // Creates `dir` (it must not hold another daemon), writes the config, starts libvirtd and the
  // keeper connection, and returns once a fresh virsh client sees a domain that another one
  // defined (one shared state). FailedPrecondition or DeadlineExceeded quoting the log otherwise.
  static absl::StatusOr<std::unique_ptr<PrivateLibvirtd>> Start(
      const std::string& dir, std::chrono::milliseconds timeout = std::chrono::seconds(20));

  PrivateLibvirtd(const PrivateLibvirtd&) = delete;
  PrivateLibvirtd& operator=(const PrivateLibvirtd&) = delete;
  // Stop(), then removes the sockets, pid file and config (logs stay for a failed test's report;
  // the owner removes `dir`).
  ~PrivateLibvirtd();

  // "test+unix:///default?socket=<dir>/sock/libvirt-sock".
  const std::string& uri() const { return uri_; }
  const std::string& dir() const { return dir_; }
  std::string socket_path() const { return dir_ + "/sock/libvirt-sock"; }
  std::string Log() const;  // libvirtd's log

  // Runs `virsh -c URI <args>`; its exit code and output.
  absl::StatusOr<std::pair<int, std::string>> Virsh(const std::vector<std::string>& args) const;

  // Stops the keeper and libvirtd (SIGTERM, then SIGKILL after 5 s). Idempotent.
  absl::Status Stop();

 private:
  PrivateLibvirtd(std::string dir) : dir_(std::move(dir)) {}

  std::string dir_;
  std::string uri_;
  std::unique_ptr<util::ChildProcess> daemon_;
  std::unique_ptr<util::ChildProcess> keeper_;
};

}  // namespace strata::testing
