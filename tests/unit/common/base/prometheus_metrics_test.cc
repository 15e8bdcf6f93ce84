#include "common/base/prometheus_metrics.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/http_get.h"
#include "tests/testing/status_matchers.h"

namespace lft {
namespace {

using ::lft::testing::HttpGet;
using ::lft::testing::IsOk;
using ::lft::testing::StatusIs;
using ::testing::HasSubstr;
using ::testing::Not;

TEST(MetricsRegistryTest, RendersCountersGaugesAndHistograms) {
  MetricsRegistry registry;
  registry
      .Counter("lft_test_tokens_total", "Tokens processed.",
               {{"role", "teacher"}})
      .Increment(42);
  registry.Gauge("lft_test_queue_depth", "Items waiting.").Set(7);
  registry.Histogram("lft_test_step_seconds", "Step time.", {0.1, 1.0})
      .Observe(0.5);
  // Get-or-create returns the same series.
  registry
      .Counter("lft_test_tokens_total", "Tokens processed.",
               {{"role", "teacher"}})
      .Increment(1);
  const std::string text = registry.RenderText();
  EXPECT_THAT(text, HasSubstr("# TYPE lft_test_tokens_total counter"));
  EXPECT_THAT(text, HasSubstr("lft_test_tokens_total{role=\"teacher\"} 43"));
  EXPECT_THAT(text, HasSubstr("lft_test_queue_depth 7"));
  EXPECT_THAT(text, HasSubstr("lft_test_step_seconds_bucket{le=\"1\"} 1"));
}

TEST(MetricsRegistryTest, BadNameOrTypeClashDoesNotThrowOrExport) {
  MetricsRegistry registry;
  registry.Counter("lft_test_x_total", "x").Increment();
  // Same name as another type and an invalid name: both detached.
  registry.Gauge("lft_test_x_total", "clash").Set(5);
  registry.Counter("0-bad name", "bad").Increment();
  const std::string text = registry.RenderText();
  EXPECT_THAT(text, HasSubstr("lft_test_x_total 1"));
  EXPECT_THAT(text, Not(HasSubstr("clash")));
  EXPECT_THAT(text, Not(HasSubstr("bad name")));
}

TEST(MetricsHttpServerTest, ServesMetricsOverLoopback) {
  MetricsRegistry registry;
  registry
      .Counter("lft_test_written_bytes_total", "Bytes written.",
               {{"job", "j1"}})
      .Increment(1024);
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, &registry);
  ASSERT_THAT(server, IsOk());
  ASSERT_GT((*server)->port(), 0);

  auto response = HttpGet("127.0.0.1", (*server)->port(), "/metrics");
  ASSERT_THAT(response, IsOk());
  EXPECT_EQ(response->status, 200);
  EXPECT_THAT(response->headers, HasSubstr("text/plain; version=0.0.4"));
  EXPECT_THAT(response->body,
              HasSubstr("# HELP lft_test_written_bytes_total Bytes written."));
  EXPECT_THAT(response->body,
              HasSubstr("lft_test_written_bytes_total{job=\"j1\"} 1024"));

  // Values are live, not a snapshot taken at start.
  registry
      .Counter("lft_test_written_bytes_total", "Bytes written.",
               {{"job", "j1"}})
      .Increment(1);
  response = HttpGet("127.0.0.1", (*server)->port(), "/metrics");
  ASSERT_THAT(response, IsOk());
  EXPECT_THAT(response->body,
              HasSubstr("lft_test_written_bytes_total{job=\"j1\"} 1025"));

  response = HttpGet("127.0.0.1", (*server)->port(), "/nope");
  ASSERT_THAT(response, IsOk());
  EXPECT_EQ(response->status, 404);
  EXPECT_GE((*server)->requests_served(), 3u);
}

TEST(MetricsHttpServerTest, PortInUseIsUnavailable) {
  MetricsRegistry registry;
  auto first = MetricsHttpServer::Start("127.0.0.1", 0, &registry);
  ASSERT_THAT(first, IsOk());
  auto second =
      MetricsHttpServer::Start("127.0.0.1", (*first)->port(), &registry);
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kUnavailable,
                               "cannot listen on 127.0.0.1"));
  EXPECT_THAT(MetricsHttpServer::Start("no such host!", 0, &registry),
              StatusIs(absl::StatusCode::kInvalidArgument, "cannot resolve"));
}

TEST(MetricsHttpServerTest, PromtoolAcceptsTheExposition) {
  if (std::system("command -v promtool >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  }
  MetricsRegistry registry;
  registry
      .Counter("lft_test_pairs_written_total", "Pairs written.", {{"job", "a"}})
      .Increment(3);
  registry.Gauge("lft_test_store_lag_pairs", "Pairs produced minus consumed.")
      .Set(12);
  registry
      .Histogram("lft_test_step_seconds", "Optimizer step time.",
                 {0.01, 0.1, 1})
      .Observe(0.05);
  auto server = MetricsHttpServer::Start("127.0.0.1", 0, &registry);
  ASSERT_THAT(server, IsOk());
  auto response = HttpGet("127.0.0.1", (*server)->port(), "/metrics");
  ASSERT_THAT(response, IsOk());
  const std::string path =
      ::testing::TempDir() + "/metrics." + std::to_string(getpid());
  std::ofstream(path) << response->body;
  const std::string cmd = "promtool check metrics < " + path + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[256];
  while (fgets(buf, sizeof(buf), pipe) != nullptr) output += buf;
  const int rc = pclose(pipe);
  EXPECT_EQ(rc, 0) << output;
  EXPECT_EQ(output, "") << "promtool found problems";
  unlink(path.c_str());
}

}  // namespace
}  // namespace lft
