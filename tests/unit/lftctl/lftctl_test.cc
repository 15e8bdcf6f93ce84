#include "lftctl/lftctl.h"

#include <sstream>

#include "tests/unit/coordinator/test_util.h"

namespace lft {
namespace {

TEST(LftctlTest, OverridesApplyAndRejectBadValues) {
  lft::v1::JobSpec spec = ValidSpec();
  ASSERT_TRUE(ApplySpecOverrides({{"name", "n2"},
                                  {"block", "6:12"},
                                  {"method", "hybrid"},
                                  {"trainer-ranks", "4"},
                                  {"corpus", "/c.jsonl.zst"}},
                                 &spec)
                  .ok());
  EXPECT_EQ(spec.name(), "n2");
  EXPECT_EQ(spec.block().first_layer(), 6u);
  EXPECT_EQ(spec.block().end_layer(), 12u);
  EXPECT_EQ(spec.training().method(), lft::v1::METHOD_HYBRID);
  EXPECT_EQ(spec.training().trainer_ranks(), 4u);
  ASSERT_EQ(spec.corpus().jsonl_zst_paths_size(), 1);
  EXPECT_THAT(ApplySpecOverrides({{"block", "6-12"}}, &spec),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "--block: \"6-12\" is not FIRST:END"));
  EXPECT_THAT(ApplySpecOverrides({{"method", "magic"}}, &spec),
              StatusIs(absl::StatusCode::kInvalidArgument, "--method"));
  EXPECT_THAT(ApplySpecOverrides({{"max-steps", "-3"}}, &spec),
              StatusIs(absl::StatusCode::kInvalidArgument, "--max-steps"));
}

TEST(LftctlTest, ProgressLineShowsDoneTotalRateAndEta) {
  lft::v1::PhaseProgress p;
  p.set_unit("tokens");
  p.set_units_done(1500000);
  p.set_units_total(3000000);
  p.set_units_per_second(25000);
  p.set_eta_seconds(60);
  EXPECT_EQ(FormatPhaseProgress(p, false),
            " 50%  1.5M/3.0M tokens  25.0k tokens/s  ETA 1m00s");
  EXPECT_EQ(FormatPhaseProgress(p, true).substr(0, 27),
            "[############------------] ");
}

// Evaluation sat at 0/48 sequences while it trained the regression
// baseline; the stage and its own units now show.
TEST(LftctlTest, ProgressLineNamesTheEvaluationStage) {
  lft::v1::PhaseProgress p;
  p.set_unit("steps");
  p.set_units_done(50);
  p.set_units_total(200);
  p.set_stage("training the regression baseline");
  EXPECT_EQ(FormatPhaseProgress(p, false),
            " 25%  50/200 steps (training the regression baseline)");
}

TEST(LftctlTest, ExitCodes) {
  EXPECT_EQ(ExitCodeFor(absl::InvalidArgumentError("x")), kExitUsage);
  EXPECT_EQ(ExitCodeFor(absl::NotFoundError("x")), kExitNotFound);
  EXPECT_EQ(ExitCodeFor(absl::UnauthenticatedError("x")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(absl::UnavailableError("x")), kExitUnavailable);
  EXPECT_EQ(ExitCodeFor(absl::FailedPreconditionError("x")),
            kExitFailedPrecondition);
  EXPECT_EQ(ExitCodeFor(absl::InternalError("x")), kExitInternal);
  EXPECT_EQ(ExitCodeFor(absl::DataLossError("x")), kExitDataLoss);
}

TEST(LftctlTest, UsageErrorsExitTwo) {
  std::ostringstream out, err;
  EXPECT_EQ(LftctlMain({"frobnicate"}, out, err, false), kExitUsage);
  EXPECT_THAT(err.str(),
              ::testing::HasSubstr("unknown command \"frobnicate\""));
  EXPECT_EQ(LftctlMain({"get", "--bogus"}, out, err, false), kExitUsage);
  EXPECT_THAT(err.str(), ::testing::HasSubstr("unknown flag --bogus"));
  EXPECT_EQ(LftctlMain({"--help"}, out, err, false), kExitOk);
  EXPECT_THAT(out.str(), ::testing::HasSubstr("Exit codes:"));
  EXPECT_THAT(out.str(), ::testing::HasSubstr("pull JOB [NAME]"));
  EXPECT_EQ(LftctlMain({"pull"}, out, err, false), kExitUsage);
  EXPECT_THAT(err.str(),
              ::testing::HasSubstr("pull takes JOB [NAME], or JOB --list"));
  EXPECT_EQ(LftctlMain({"pull", "j-1", "step-1", "--list"}, out, err, false),
            kExitUsage);
  EXPECT_EQ(LftctlMain({"pull", "j-1", "--store", "127.0.0.1:1", "--tls-ca",
                        "/nonexistent/ca.pem"},
                       out, err, false),
            kExitUsage);
  EXPECT_THAT(err.str(), ::testing::HasSubstr("--tls-ca /nonexistent/ca.pem"));
}

}  // namespace
}  // namespace lft
