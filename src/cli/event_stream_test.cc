// `strata events --follow` against a real server-sent-events server on loopback (cpp-httplib,
// in process): events arrive as they are appended, a dropped connection or a restarted server is
// followed by a reconnection with Last-Event-ID, and no event is printed twice. Also the SSE
// parser on its own.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <ostream>
#include <sstream>
#include <streambuf>
#include <thread>

#include "commands.h"
#include "event_stream.h"
#include "render.h"
#include "strata/util/strings.h"

namespace strata::cli {
namespace {

using nlohmann::json;
using std::chrono::milliseconds;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

// ---- the parser ------------------------------------------------------------------------------

std::vector<SseEvent> ParseAll(const std::vector<std::string>& pieces, SseParser& parser) {
  std::vector<SseEvent> events;
  for (const std::string& piece : pieces) {
    parser.Feed(piece.data(), piece.size(), [&](const SseEvent& e) {
      events.push_back(e);
      return true;
    });
  }
  return events;
}

TEST(SseParserTest, FieldsCommentsAndLineEndings) {
  const std::string stream =
      ": strata event stream\nretry: 1000\n\n"
      "id: 1\ndata: {\"seq\":1}\n\n"
      ": keepalive\n\n"
      "id: 2\r\ndata: a\r\ndata: b\r\n\r\n"
      "id:3\revent: x\rdata:c\r\r"
      "data: no id\n\n"
      "id: 9\ndata: unterminated";
  // Whole, and fed one byte at a time: the same events.
  for (bool bytewise : {false, true}) {
    SseParser parser;
    std::vector<std::string> pieces;
    if (bytewise) {
      for (char c : stream) pieces.emplace_back(1, c);
    } else {
      pieces.push_back(stream);
    }
    std::vector<SseEvent> events = ParseAll(pieces, parser);
    ASSERT_EQ(events.size(), 4u) << (bytewise ? "bytewise" : "whole");
    EXPECT_EQ(events[0].id, "1");
    EXPECT_EQ(events[0].data, "{\"seq\":1}");
    EXPECT_EQ(events[1].id, "2");
    EXPECT_EQ(events[1].data, "a\nb");
    EXPECT_EQ(events[2].id, "3");
    EXPECT_EQ(events[2].event, "x");
    EXPECT_EQ(events[2].data, "c");
    EXPECT_EQ(events[3].id, "");
    EXPECT_EQ(events[3].data, "no id");
    ASSERT_TRUE(parser.retry().has_value());
    EXPECT_EQ(*parser.retry(), milliseconds(1000));
    // The unterminated event is dropped by Reset (a new connection).
    parser.Reset();
    EXPECT_TRUE(ParseAll({"\n"}, parser).empty());
  }
}

TEST(SseParserTest, CallbackCanStopTheFeed) {
  SseParser parser;
  int seen = 0;
  const std::string text = "data: 1\n\ndata: 2\n\n";
  EXPECT_FALSE(parser.Feed(text.data(), text.size(), [&](const SseEvent&) {
    ++seen;
    return false;
  }));
  EXPECT_EQ(seen, 1);
}

TEST(BackoffTest, DoublesUpToTheMaximumAndResets) {
  Backoff backoff(milliseconds(100), milliseconds(500));
  EXPECT_EQ(backoff.Next(), milliseconds(100));
  EXPECT_EQ(backoff.Next(), milliseconds(200));
  EXPECT_EQ(backoff.Next(), milliseconds(400));
  EXPECT_EQ(backoff.Next(), milliseconds(500));
  EXPECT_EQ(backoff.Next(), milliseconds(500));
  backoff.Reset();
  EXPECT_EQ(backoff.Next(), milliseconds(100));
  backoff.Reset();
  backoff.SetInitial(milliseconds(300));  // the server's "retry:"
  EXPECT_EQ(backoff.Next(), milliseconds(300));
  EXPECT_EQ(EventStreamTarget({}), "/api/v1/events/stream");
  EventsOptions options;
  options.after = 7;
  options.host = "host a";
  EXPECT_EQ(EventStreamTarget(options), "/api/v1/events/stream?after=7&host=host%20a");
}

// ---- the follower against a real SSE server ---------------------------------------------------

// An unbuffered, thread-safe output for the CLI running on another thread.
class SyncBuf : public std::streambuf {
 public:
  std::string Text() {
    std::lock_guard lock(mu_);
    return text_;
  }

 protected:
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) {
      std::lock_guard lock(mu_);
      text_.push_back(traits_type::to_char_type(c));
    }
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard lock(mu_);
    text_.append(s, static_cast<size_t>(n));
    return n;
  }

 private:
  std::mutex mu_;
  std::string text_;
};

struct SeenRequest {
  std::string target;
  std::string last_event_id;  // "" when absent
};

using util::Cat;

json EventJson(int64_t seq) {
  return {{"seq", seq},
          {"host", "host-a"},
          {"vm_uuid",
           Cat("00000000-0000-0000-0000-", std::string(12 - std::to_string(seq).size(), '0'), seq)},
          {"kind", "modified"},
          {"time", "2026-05-01T12:00:00.000Z"},
          {"detail", {{"sequence", seq}}}};
}

// stratad's event stream, as far as the follower cares: an event log that grows, "id:/data:"
// events after Last-Event-ID (else ?after=, else the newest), comment keepalives, and faults to
// inject: drop the connection after N events (mid-event), ignore Last-Event-ID (replay), answer
// an error status.
class SseServer {
 public:
  explicit SseServer(int port = 0) { Start(port); }
  ~SseServer() { Shutdown(); }

  void Start(int port) {
    server_ = std::make_unique<httplib::Server>();
    server_->Get("/api/v1/events/stream",
                 [this](const httplib::Request& req, httplib::Response& res) { Handle(req, res); });
    if (port == 0) {
      port_ = server_->bind_to_any_port("127.0.0.1");
    } else {
      ASSERT_TRUE(server_->bind_to_port("127.0.0.1", port));
      port_ = port;
    }
    ASSERT_GT(port_, 0);
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    while (!server_->is_running()) std::this_thread::sleep_for(milliseconds(1));
  }

  // Stops listening and ends every open stream (abruptly, as a killed server would).
  void Shutdown() {
    if (!server_) return;
    {
      std::lock_guard lock(mu_);
      closing_ = true;
      cv_.notify_all();
    }
    server_->stop();
    thread_.join();
    server_.reset();
    std::lock_guard lock(mu_);
    closing_ = false;
  }

  void Append(int64_t first, int64_t last) {
    std::lock_guard lock(mu_);
    for (int64_t seq = first; seq <= last; ++seq) log_.push_back(seq);
    cv_.notify_all();
  }
  // The next connection sends `events` events, then half of one more, then drops.
  void DropNextAfter(int events) {
    std::lock_guard lock(mu_);
    drop_after_ = events;
  }
  void IgnoreLastEventId(bool ignore) {
    std::lock_guard lock(mu_);
    ignore_last_event_id_ = ignore;
  }
  void AnswerError(int status) {
    std::lock_guard lock(mu_);
    error_status_ = status;
  }
  std::vector<SeenRequest> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  void Handle(const httplib::Request& req, httplib::Response& res) {
    std::lock_guard lock(mu_);
    requests_.push_back({req.target, req.get_header_value("Last-Event-ID")});
    if (error_status_ != 0) {
      res.status = error_status_;
      res.set_content(
          json{{"error", {{"code", error_status_}, {"message", "unknown host 'zz'"}}}}.dump(),
          "application/json");
      return;
    }
    int64_t after = log_.empty() ? 0 : log_.back();
    if (req.has_header("Last-Event-ID") && !ignore_last_event_id_) {
      after = std::stoll(req.get_header_value("Last-Event-ID"));
    } else if (req.has_param("after")) {
      after = std::stoll(req.get_param_value("after"));
    }
    auto state = std::make_shared<std::pair<int64_t, int>>(after, drop_after_);
    drop_after_ = -1;
    res.set_chunked_content_provider(
        "text/event-stream", [this, state](size_t, httplib::DataSink& sink) {
          std::unique_lock lock(mu_);
          auto& [after, drop_after] = *state;
          cv_.wait_for(lock, milliseconds(200),
                       [&] { return closing_ || (!log_.empty() && log_.back() > after); });
          if (closing_) return false;
          if (log_.empty() || log_.back() <= after) {
            const std::string keepalive = ": keepalive\n\n";
            return sink.write(keepalive.data(), keepalive.size());
          }
          const int64_t seq = *std::upper_bound(log_.begin(), log_.end(), after);
          std::string text = Cat("id: ", seq, "\ndata: ", EventJson(seq).dump(), "\n\n");
          if (drop_after == 0) {
            text = text.substr(0, text.size() / 2);  // half an event, then the connection drops
            sink.write(text.data(), text.size());
            return false;
          }
          if (drop_after > 0) --drop_after;
          after = seq;
          return sink.write(text.data(), text.size());
        });
  }

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable cv_;
  bool closing_ = false;
  std::vector<int64_t> log_;
  int drop_after_ = -1;
  bool ignore_last_event_id_ = false;
  int error_status_ = 0;
  std::vector<SeenRequest> requests_;
};

// `strata events --follow` on a thread of its own.
class Follower {
 public:
  Follower(const std::string& server, bool json_output, EventsOptions options)
      : out_(&out_buf_), err_(&err_buf_), cli_({server, json_output}, out_, err_) {
    options.follow = true;
    options.reconnect_initial = milliseconds(20);
    options.reconnect_max = milliseconds(200);
    thread_ = std::thread([this, options] { code_ = cli_.Events(options); });
  }
  ~Follower() {
    if (thread_.joinable()) Stop();
  }
  int Stop() {
    cli_.StopFollowing();
    thread_.join();
    return code_;
  }
  // Joins without stopping (the command ends by itself: errors).
  int Join() {
    thread_.join();
    return code_;
  }
  std::string out() { return out_buf_.Text(); }
  std::string err() { return err_buf_.Text(); }

  // The sequence numbers printed (table rows, or JSON lines), in order.
  std::vector<int64_t> Printed(bool json_output) {
    std::vector<int64_t> seqs;
    const std::string text = out();
    for (std::string_view line : util::Split(text, '\n')) {
      if (line.empty() || line.starts_with("SEQ")) continue;
      if (json_output) {
        seqs.push_back(json::parse(line).at("seq").get<int64_t>());
      } else {
        seqs.push_back(std::stoll(std::string(line.substr(0, line.find(' ')))));
      }
    }
    return seqs;
  }

  bool WaitForPrinted(size_t count, bool json_output, milliseconds timeout = milliseconds(10000)) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (Printed(json_output).size() >= count) return true;
      std::this_thread::sleep_for(milliseconds(5));
    }
    return false;
  }

 private:
  SyncBuf out_buf_, err_buf_;
  std::ostream out_, err_;
  Cli cli_;
  int code_ = -1;
  std::thread thread_;
};

std::vector<int64_t> Range(int64_t first, int64_t last) {
  std::vector<int64_t> out;
  for (int64_t i = first; i <= last; ++i) out.push_back(i);
  return out;
}

TEST(FollowTest, EventsArriveAsTheyHappenAsTableRowsAndStopEndsCleanly) {
  SseServer server;
  server.Append(1, 3);
  EventsOptions options;
  options.after = 0;
  Follower follower(server.url(), false, options);
  ASSERT_TRUE(follower.WaitForPrinted(3, false)) << follower.out() << follower.err();
  server.Append(4, 5);
  ASSERT_TRUE(follower.WaitForPrinted(5, false)) << follower.out() << follower.err();
  const auto stopping = Clock::now();
  EXPECT_EQ(follower.Stop(), kExitOk);
  EXPECT_LT(Clock::now() - stopping, milliseconds(1000)) << "stop ends a blocked read at once";
  EXPECT_EQ(follower.Printed(false), Range(1, 5));
  std::string expected = RenderEventStreamHeader();
  for (int64_t seq = 1; seq <= 5; ++seq) expected += RenderEventStreamRow(EventJson(seq));
  EXPECT_EQ(follower.out(), expected);
  EXPECT_THAT(follower.out(), HasSubstr("modified  00000000-0000-0000-0000-000000000004"));
  EXPECT_EQ(follower.err(), "");
  ASSERT_EQ(server.requests().size(), 1u);
  EXPECT_EQ(server.requests()[0].target, "/api/v1/events/stream?after=0");
  EXPECT_EQ(server.requests()[0].last_event_id, "");
}

TEST(FollowTest, JsonPrintsOneObjectPerLine) {
  SseServer server;
  server.Append(1, 2);
  EventsOptions options;
  options.after = 0;
  options.host = "host-a";
  Follower follower(server.url(), true, options);
  ASSERT_TRUE(follower.WaitForPrinted(2, true)) << follower.out() << follower.err();
  EXPECT_EQ(follower.Stop(), kExitOk);
  EXPECT_EQ(follower.out(), EventJson(1).dump() + "\n" + EventJson(2).dump() + "\n");
  EXPECT_EQ(server.requests().at(0).target, "/api/v1/events/stream?after=0&host=host-a");
}

TEST(FollowTest, DroppedConnectionResumesAfterTheLastIdWithoutDuplicates) {
  SseServer server;
  server.Append(1, 6);
  server.DropNextAfter(2);
  EventsOptions options;
  options.after = 0;
  Follower follower(server.url(), false, options);
  ASSERT_TRUE(follower.WaitForPrinted(6, false)) << follower.out() << follower.err();
  server.Append(7, 8);
  ASSERT_TRUE(follower.WaitForPrinted(8, false)) << follower.out() << follower.err();
  EXPECT_EQ(follower.Stop(), kExitOk);
  EXPECT_EQ(follower.Printed(false), Range(1, 8)) << follower.out();
  std::vector<SeenRequest> requests = server.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].last_event_id, "");
  EXPECT_EQ(requests[1].last_event_id, "2") << "the half-received event 3 does not count";
  EXPECT_THAT(follower.err(), HasSubstr("strata: event stream interrupted ("));
  EXPECT_THAT(follower.err(), HasSubstr("reconnecting in 20 ms"));
}

TEST(FollowTest, EventsTheServerSendsAgainAreNotPrintedTwice) {
  SseServer server;
  server.Append(1, 5);
  server.IgnoreLastEventId(true);  // every connection replays from ?after=0
  server.DropNextAfter(3);
  EventsOptions options;
  options.after = 0;
  Follower follower(server.url(), true, options);
  ASSERT_TRUE(follower.WaitForPrinted(5, true)) << follower.out() << follower.err();
  // Give the replay time to show a duplicate, if it were printed.
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(follower.Stop(), kExitOk);
  EXPECT_EQ(follower.Printed(true), Range(1, 5)) << follower.out();
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST(FollowTest, RestartedServerIsReconnectedWithBackoff) {
  auto server = std::make_unique<SseServer>();
  const int port = server->port();
  server->Append(1, 3);
  EventsOptions options;
  options.after = 0;
  Follower follower(server->url(), false, options);
  ASSERT_TRUE(follower.WaitForPrinted(3, false)) << follower.out() << follower.err();
  server->Shutdown();
  // Refused connections for a while: the follower keeps trying, backing off.
  std::this_thread::sleep_for(milliseconds(500));
  EXPECT_THAT(follower.err(), HasSubstr("Connection refused")) << follower.err();
  server->Start(port);
  server->Append(1, 5);  // the restarted server has the same log, and more
  ASSERT_TRUE(follower.WaitForPrinted(5, false)) << follower.out() << follower.err();
  EXPECT_EQ(follower.Stop(), kExitOk);
  EXPECT_EQ(follower.Printed(false), Range(1, 5)) << follower.out();
  ASSERT_FALSE(server->requests().empty());
  EXPECT_EQ(server->requests().back().last_event_id, "3");
}

TEST(FollowTest, ErrorAnswersAndAnUnreachableServerEndTheCommand) {
  SseServer server;
  server.AnswerError(404);
  EventsOptions options;
  options.host = "zz";
  Follower follower(server.url(), false, options);
  EXPECT_EQ(follower.Join(), kExitError);
  EXPECT_EQ(follower.err(), "strata: unknown host 'zz'\n");
  EXPECT_EQ(server.requests().size(), 1u) << "a client error is not retried";

  Follower down("http://127.0.0.1:1", false, {});
  EXPECT_EQ(down.Join(), kExitUnreachable);
  EXPECT_THAT(down.err(), HasSubstr("strata: cannot reach stratad at http://127.0.0.1:1: "));

  std::ostringstream out, err;
  Cli cli({server.url(), false}, out, err);
  EventsOptions limited;
  limited.follow = true;
  limited.limit = 5;
  EXPECT_EQ(cli.Events(limited), kExitError);
  EXPECT_THAT(err.str(), HasSubstr("--limit does not apply to --follow"));
}

TEST(FollowTest, ServerErrorsAreRetried) {
  SseServer server;
  server.AnswerError(503);
  server.Append(1, 2);
  EventsOptions options;
  options.after = 0;
  Follower follower(server.url(), false, options);
  std::this_thread::sleep_for(milliseconds(200));
  server.AnswerError(0);
  ASSERT_TRUE(follower.WaitForPrinted(2, false)) << follower.out() << follower.err();
  EXPECT_EQ(follower.Stop(), kExitOk);
  EXPECT_GE(server.requests().size(), 2u);
  EXPECT_THAT(follower.err(), HasSubstr("unknown host 'zz'"));  // the 503's message, then a retry
}

}  // namespace
}  // namespace strata::cli
