#include "private_libvirtd.h"

#include <signal.h>
#include <sys/un.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include "strata/util/process.h"
#include "strata/util/strings.h"

namespace strata::testing {

using std::chrono::milliseconds;
using util::Cat;
using Clock = std::chrono::steady_clock;

namespace {

constexpr char kSentinelUuid[] = "5e171e1f-0000-4000-8000-000000000001";

bool InPath(const std::string& program) {
  const char* path = std::getenv("PATH");
  for (std::string_view dir : util::Split(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (!dir.empty() && access(Cat(dir, "/", program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

}  // namespace

bool PrivateLibvirtd::Available() { return access(kLibvirtdPath, X_OK) == 0 && InPath("virsh"); }

absl::StatusOr<std::unique_ptr<PrivateLibvirtd>> PrivateLibvirtd::Start(
    const std::string& dir, std::chrono::milliseconds timeout) {
  if (!Available()) {
    return absl::FailedPreconditionError(
        Cat(kLibvirtdPath, " or virsh is missing: install libvirt-daemon and libvirt-clients"));
  }
  auto daemon = std::unique_ptr<PrivateLibvirtd>(new PrivateLibvirtd(dir));
  std::error_code error;
  std::filesystem::create_directories(dir + "/sock", error);
  std::filesystem::create_directories(dir + "/no-drivers", error);
  if (error)
    return absl::FailedPreconditionError(Cat("cannot create ", dir, ": ", error.message()));
  if (daemon->socket_path().size() + sizeof("-admin") > sizeof(sockaddr_un{}.sun_path)) {
    return absl::InvalidArgumentError(Cat("socket path too long for AF_UNIX: ", dir));
  }
  const std::string config = dir + "/libvirtd.conf";
  {
    std::ofstream out(config, std::ios::trunc);
    out << "# A private libvirtd for tests (tests/integration/private_libvirtd.h).\n"
        << "unix_sock_dir = \"" << dir << "/sock\"\n"
        << "unix_sock_ro_perms = \"0777\"\n"
        << "unix_sock_rw_perms = \"0700\"\n"
        << "unix_sock_admin_perms = \"0700\"\n"
        << "auth_unix_ro = \"none\"\n"
        << "auth_unix_rw = \"none\"\n"
        << "listen_tls = 0\n"
        << "listen_tcp = 0\n"
        << "log_outputs = \"3:stderr\"\n";
    if (!out) return absl::FailedPreconditionError(Cat("cannot write ", config));
  }
  daemon->uri_ = Cat("test+unix:///default?socket=", daemon->socket_path());

  util::ChildProcessOptions options;
  options.log_path = dir + "/libvirtd.log";
  options.append_log = true;
  options.env = {Cat("LIBVIRT_DRIVER_DIR=", dir, "/no-drivers")};
  auto child = util::ChildProcess::Start(
      {kLibvirtdPath, "--config", config, "--pid-file", dir + "/libvirtd.pid", "--timeout", "120"},
      options);
  if (!child.ok()) return child.status();
  daemon->daemon_ = *std::move(child);

  const auto deadline = Clock::now() + timeout;
  auto expired = [&](const std::string& what) {
    return absl::DeadlineExceededError(
        Cat("private libvirtd in ", dir, ": ", what, "\nlibvirtd log:\n", daemon->Log()));
  };
  // 1. The daemon answers.
  while (true) {
    if (!daemon->daemon_->Running()) {
      return absl::FailedPreconditionError(
          Cat("libvirtd exited at start-up; its log:\n", daemon->Log()));
    }
    auto version = daemon->Virsh({"version"});
    if (version.ok() && version->first == 0) break;
    if (Clock::now() > deadline) {
      return expired(Cat("virsh version does not answer: ",
                         version.ok() ? version->second : version.status().ToString()));
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  // 2. The keeper holds the shared test-driver state alive.
  util::ChildProcessOptions keeper_options;
  keeper_options.log_path = dir + "/keeper.log";
  auto keeper = util::ChildProcess::Start(
      {"virsh", "-c", daemon->uri_, "event", "--loop", "--all", "--timestamp"}, keeper_options);
  if (!keeper.ok()) return keeper.status();
  daemon->keeper_ = *std::move(keeper);
  // 3. One client defines a sentinel, another sees it: the state is shared (and kept).
  const std::string sentinel_xml = dir + "/sentinel.xml";
  {
    std::ofstream out(sentinel_xml, std::ios::trunc);
    out << "<domain type='test'><name>strata-sentinel</name><uuid>" << kSentinelUuid
        << "</uuid><memory>65536</memory><os><type>hvm</type></os></domain>\n";
  }
  while (true) {
    if (!daemon->keeper_->Running()) {
      return absl::FailedPreconditionError(
          Cat("the keeper `virsh event --loop` exited: ", daemon->keeper_->Log(2000)));
    }
    auto defined = daemon->Virsh({"define", sentinel_xml});
    auto seen = daemon->Virsh({"domuuid", "strata-sentinel"});
    if (defined.ok() && defined->first == 0 && seen.ok() && seen->first == 0 &&
        seen->second.find(kSentinelUuid) != std::string::npos) {
      break;
    }
    if (Clock::now() > deadline) {
      return expired(Cat("a domain defined by one client is not seen by the next: ",
                         seen.ok() ? seen->second : seen.status().ToString()));
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  auto undefined = daemon->Virsh({"undefine", "strata-sentinel"});
  if (!undefined.ok() || undefined->first != 0) {
    return absl::InternalError(
        Cat("cannot undefine the sentinel: ",
            undefined.ok() ? undefined->second : undefined.status().ToString()));
  }
  std::filesystem::remove(sentinel_xml, error);
  return daemon;
}

PrivateLibvirtd::~PrivateLibvirtd() {
  (void)Stop();
  std::error_code error;
  std::filesystem::remove_all(dir_ + "/sock", error);
  std::filesystem::remove_all(dir_ + "/no-drivers", error);
  std::filesystem::remove(dir_ + "/libvirtd.pid", error);
  std::filesystem::remove(dir_ + "/libvirtd.conf", error);
}

std::string PrivateLibvirtd::Log() const {
  return daemon_ != nullptr ? daemon_->Log(8000) : std::string();
}

absl::StatusOr<std::pair<int, std::string>> PrivateLibvirtd::Virsh(
    const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"virsh", "-q", "-c", uri_};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<util::ProcessResult> result = util::RunProcess(argv);
  if (!result.ok()) return result.status();
  return std::make_pair(result->exit_code, result->output);
}

absl::Status PrivateLibvirtd::Stop() {
  absl::Status status = absl::OkStatus();
  for (std::unique_ptr<util::ChildProcess>* child : {&keeper_, &daemon_}) {
    if (*child == nullptr) continue;
    if ((*child)->Running()) {
      (void)(*child)->Kill(SIGTERM);
      if (!(*child)->Wait(milliseconds(5000)).ok()) {
        (void)(*child)->Kill(SIGKILL);
        if (absl::StatusOr<int> code = (*child)->Wait(milliseconds(5000)); !code.ok()) {
          status = code.status();
        }
      }
    }
    child->reset();
  }
  return status;
}

}  // namespace strata::testing
