#include "strata/util/child_process.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <thread>

namespace strata::util {
namespace {

using std::chrono::milliseconds;

class ChildProcessTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() /
           ("strata-child-test-" + std::to_string(getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir_);
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::unique_ptr<ChildProcess> StartShell(const std::string& script,
                                           std::vector<std::string> env = {}) {
    ChildProcessOptions options;
    options.log_path = (dir_ / "child.log").string();
    options.env = std::move(env);
    auto child = ChildProcess::Start({"/bin/sh", "-c", script}, options);
    EXPECT_TRUE(child.ok()) << child.status();
    return child.ok() ? *std::move(child) : nullptr;
  }

  std::filesystem::path dir_;
};

TEST_F(ChildProcessTest, WaitsForTheListeningLineAndReturnsItsGroups) {
  auto child = StartShell(
      "echo starting; sleep 0.1; echo 'stratad: listening grpc=127.0.0.1:41 http=127.0.0.1:42'; "
      "exec sleep 30");
  ASSERT_NE(child, nullptr);
  auto groups = child->WaitForLine(R"(listening grpc=([0-9.]+):(\d+) http=[0-9.]+:(\d+))",
                                   milliseconds(5000));
  ASSERT_TRUE(groups.ok()) << groups.status();
  ASSERT_EQ(groups->size(), 4u);
  EXPECT_EQ((*groups)[1], "127.0.0.1");
  EXPECT_EQ((*groups)[2], "41");
  EXPECT_EQ((*groups)[3], "42");
  EXPECT_TRUE(child->Running());
  ASSERT_TRUE(child->Kill(SIGTERM).ok());
  auto code = child->Wait(milliseconds(5000));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 128 + SIGTERM);
  EXPECT_FALSE(child->Running());
  EXPECT_TRUE(child->Kill(SIGKILL).ok()) << "killing a reaped child is a no-op";
}

TEST_F(ChildProcessTest, MatchedLinesAreConsumed) {
  auto child = StartShell("echo 'tick 1'; echo 'tick 2'; sleep 0.2; echo 'tick 3'; exec sleep 30");
  ASSERT_NE(child, nullptr);
  for (const char* expected : {"1", "2", "3"}) {
    auto groups = child->WaitForLine(R"(^tick (\d)$)", milliseconds(5000));
    ASSERT_TRUE(groups.ok()) << groups.status();
    EXPECT_EQ((*groups)[1], expected);
  }
}

TEST_F(ChildProcessTest, AnIncompleteLineIsNotMatchedUntilItEnds) {
  auto child = StartShell("printf ready; sleep 0.3; printf ' now\\n'; exec sleep 30");
  ASSERT_NE(child, nullptr);
  auto groups = child->WaitForLine("^ready now$", milliseconds(5000));
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_EQ((*groups)[0], "ready now");
}

TEST_F(ChildProcessTest, TimeoutQuotesTheLog) {
  auto child = StartShell("echo 'something else' >&2; exec sleep 30");
  ASSERT_NE(child, nullptr);
  auto groups = child->WaitForLine("^listening", milliseconds(300));
  ASSERT_FALSE(groups.ok());
  EXPECT_EQ(groups.status().code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_NE(groups.status().message().find("printed no line matching '^listening' within 300 ms"),
            std::string::npos)
      << groups.status();
  EXPECT_NE(groups.status().message().find("something else"), std::string::npos)
      << "stderr goes to the log: " << groups.status();
}

TEST_F(ChildProcessTest, ExitBeforeTheLineIsReportedWithTheExitCode) {
  auto child = StartShell("echo 'fatal: port in use'; exit 3");
  ASSERT_NE(child, nullptr);
  auto groups = child->WaitForLine("^listening", milliseconds(5000));
  ASSERT_FALSE(groups.ok());
  EXPECT_EQ(groups.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(groups.status().message().find("exited with code 3 before printing a line matching"),
            std::string::npos)
      << groups.status();
  EXPECT_NE(groups.status().message().find("fatal: port in use"), std::string::npos);
  auto code = child->Wait(milliseconds(1000));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 3);
}

TEST_F(ChildProcessTest, ArgumentsReachTheProgramUntouched) {
  ChildProcessOptions options;
  options.log_path = (dir_ / "echo.log").string();
  auto child = ChildProcess::Start({"echo", "a;b $HOME `id` 'q'"}, options);
  ASSERT_TRUE(child.ok()) << child.status();
  auto code = (*child)->Wait(milliseconds(5000));
  ASSERT_TRUE(code.ok());
  EXPECT_EQ(*code, 0);
  EXPECT_EQ((*child)->Log(), "a;b $HOME `id` 'q'\n");
}

TEST_F(ChildProcessTest, ExtraEnvironmentIsPassed) {
  auto child = StartShell("echo \"value=$STRATA_CHILD_TEST\"", {"STRATA_CHILD_TEST=xyz"});
  ASSERT_NE(child, nullptr);
  auto groups = child->WaitForLine("^value=(.*)$", milliseconds(5000));
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_EQ((*groups)[1], "xyz");
}

TEST_F(ChildProcessTest, AppendedLogSkipsEarlierLines) {
  ChildProcessOptions options;
  options.log_path = (dir_ / "shared.log").string();
  {
    auto first = ChildProcess::Start({"/bin/sh", "-c", "echo 'listening 1'"}, options);
    ASSERT_TRUE(first.ok());
    ASSERT_TRUE((*first)->Wait(milliseconds(5000)).ok());
  }
  options.append_log = true;
  // The child prints at once: its line must not be skipped as an earlier one.
  auto second =
      ChildProcess::Start({"/bin/sh", "-c", "echo 'listening 2'; exec sleep 30"}, options);
  ASSERT_TRUE(second.ok());
  std::this_thread::sleep_for(milliseconds(100));
  auto groups = (*second)->WaitForLine(R"(listening (\d))", milliseconds(5000));
  ASSERT_TRUE(groups.ok()) << groups.status();
  EXPECT_EQ((*groups)[1], "2");
  EXPECT_NE((*second)->Log().find("listening 1"), std::string::npos);
}

TEST_F(ChildProcessTest, WaitTimesOutWhileRunning) {
  auto child = StartShell("exec sleep 30");
  ASSERT_NE(child, nullptr);
  auto code = child->Wait(milliseconds(100));
  ASSERT_FALSE(code.ok());
  EXPECT_EQ(code.status().code(), absl::StatusCode::kDeadlineExceeded);
}

TEST_F(ChildProcessTest, DestructorKillsTheChild) {
  pid_t pid = -1;
  {
    auto child = StartShell("exec sleep 30");
    ASSERT_NE(child, nullptr);
    pid = child->pid();
    ASSERT_GT(pid, 0);
    ASSERT_EQ(kill(pid, 0), 0);
  }
  EXPECT_EQ(kill(pid, 0), -1);
  EXPECT_EQ(errno, ESRCH);
}

TEST_F(ChildProcessTest, MissingProgramAndMissingLogDirAreClearErrors) {
  ChildProcessOptions options;
  options.log_path = (dir_ / "x.log").string();
  auto missing = ChildProcess::Start({"/nonexistent/stratad"}, options);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(missing.status().message().find("cannot start '/nonexistent/stratad'"),
            std::string::npos)
      << missing.status();
  options.log_path = (dir_ / "no-such-dir" / "x.log").string();
  auto no_log = ChildProcess::Start({"true"}, options);
  ASSERT_FALSE(no_log.ok());
  EXPECT_NE(no_log.status().message().find("cannot open log file"), std::string::npos);
}

}  // namespace
}  // namespace strata::util
