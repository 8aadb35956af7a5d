// Test helper: a real file system made on a loop device over a sparse image and mounted in a
// temporary directory; everything is undone by the destructor, also after a failed test. Used
// by the dir and btrfs plug-in tests. Header-only; tests only.
#pragma once

#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>

#include "absl/status/status.h"

namespace strata::testing {

// Runs `command` through the shell; its stdout and stderr (trailing newlines dropped), or
// nullopt when it fails (then `*output` holds what it printed).
inline std::optional<std::string> Shell(const std::string& command, std::string* output = nullptr) {
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return std::nullopt;
  std::string out;
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  const int status = ::pclose(pipe);
  while (!out.empty() && out.back() == '\n') out.pop_back();
  if (output != nullptr) *output = out;
  if (status != 0) return std::nullopt;
  return out;
}

inline std::string Quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// Bytes in use on the file system holding `path` (what df reports), after a sync.
inline uint64_t UsedBytes(const std::string& path) {
  ::sync();
  struct statvfs st {};
  if (::statvfs(path.c_str(), &st) != 0) return 0;
  return (st.f_blocks - st.f_bfree) * st.f_frsize;
}

class LoopFs {
 public:
  LoopFs() = default;
  LoopFs(const LoopFs&) = delete;
  LoopFs& operator=(const LoopFs&) = delete;
  ~LoopFs() {
    if (mounted_ && ::umount(mnt_.c_str()) != 0) ::umount2(mnt_.c_str(), MNT_DETACH);
    if (!loop_.empty()) Shell("losetup -d " + loop_);
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }

  // Makes and mounts the file system. FailedPrecondition: the test cannot run here (not root, a
  // tool or loop devices missing) and should be skipped with the message; other errors: failure.
  absl::Status Create(const std::string& fstype, const std::string& mkfs_options,
                      const std::string& size = "400M") {
    if (::geteuid() != 0) {
      return absl::FailedPreconditionError("needs root to create loop devices and mount them");
    }
    for (const std::string& tool : {std::string("losetup"), "mkfs." + fstype}) {
      if (!Shell("command -v " + tool)) {
        return absl::FailedPreconditionError(tool + " is not installed");
      }
    }
    char tmpl[] = "/tmp/strata-fs-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) return absl::InternalError("mkdtemp failed");
    dir_ = tmpl;
    const std::string image = dir_ + "/" + fstype + ".img";
    mnt_ = dir_ + "/mnt";
    std::filesystem::create_directories(mnt_);
    std::string out;
    if (!Shell("truncate -s " + size + " " + Quote(image), &out)) {
      return absl::InternalError("truncate failed: " + out);
    }
    std::optional<std::string> loop = Shell("losetup --find --show " + Quote(image), &out);
    if (!loop || loop->empty()) {
      return absl::FailedPreconditionError("losetup --find --show failed (no loop devices?): " +
                                           out);
    }
    loop_ = *loop;
    if (!Shell("mkfs." + fstype + " " + mkfs_options + " " + loop_, &out)) {
      return absl::InternalError("mkfs." + fstype + " " + mkfs_options + " failed: " + out);
    }
    if (::mount(loop_.c_str(), mnt_.c_str(), fstype.c_str(), 0, nullptr) != 0) {
      return absl::FailedPreconditionError("cannot mount " + fstype + " on " + loop_ + ": " +
                                           std::strerror(errno));
    }
    mounted_ = true;
    return absl::OkStatus();
  }

  const std::string& mount_point() const { return mnt_; }
  const std::string& device() const { return loop_; }

 private:
  std::string dir_, mnt_, loop_;
  bool mounted_ = false;
};

}  // namespace strata::testing
