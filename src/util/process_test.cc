#include "strata/util/process.h"

#include <gtest/gtest.h>

namespace strata::util {
namespace {

TEST(RunProcessTest, CapturesOutputAndExitCode) {
  absl::StatusOr<ProcessResult> result = RunProcess({"sh", "-c", "echo out; echo err >&2; exit 3"});
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->exit_code, 3);
  EXPECT_NE(result->output.find("out"), std::string::npos);
  EXPECT_NE(result->output.find("err"), std::string::npos);
}

TEST(RunProcessTest, PassesMetacharactersUntouched) {
  const std::string odd = "a b;$(rm -rf /)'\"&<>";
  absl::StatusOr<std::string> output = RunProcessOrError({"printf", "%s", odd});
  ASSERT_TRUE(output.ok()) << output.status();
  EXPECT_EQ(*output, odd);
}

TEST(RunProcessTest, MissingProgramIsAClearError) {
  absl::StatusOr<ProcessResult> result = RunProcess({"strata-no-such-program"});
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().message(),
            "cannot run 'strata-no-such-program': No such file or directory");
}

TEST(RunProcessTest, NonZeroExitIsAnErrorQuotingTheCommand) {
  absl::StatusOr<std::string> output = RunProcessOrError({"sh", "-c", "echo boom; exit 2"});
  ASSERT_FALSE(output.ok());
  EXPECT_EQ(output.status().message(),
            "command 'sh -c echo boom; exit 2' failed with exit code 2: boom\n");
}

}  // namespace
}  // namespace strata::util
