// Runs external programs (qemu-img, virsh, ...) without a shell, capturing their output.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace strata::util {

struct ProcessResult {
  int exit_code = 0;
  std::string output;  // stdout and stderr, interleaved
};

// Runs argv[0] (searched in PATH) with the arguments; no shell is involved, so names with shell
// metacharacters are passed through untouched. Fails only when the program cannot be started.
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv);

// As RunProcess, but a non-zero exit status is an error quoting the command and its output.
absl::StatusOr<std::string> RunProcessOrError(const std::vector<std::string>& argv);

}  // namespace strata::util
