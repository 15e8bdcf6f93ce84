// Torch-free pieces of worker/model (lft_model_core): recoupling ratio, PNG
// writer.
#include <cmath>
#include <random>

#include "tests/unit/worker/test_util.h"
#include "worker/model/png_writer.h"
#include "worker/model/recoupling.h"

namespace lft {
namespace {

// --- Recoupling ratio ---

std::vector<double> RandomPoints(int64_t n, int64_t dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> nd;
  std::vector<double> v(n * dim);
  for (double& x : v) x = nd(rng);
  return v;
}

TEST(RecouplingTest, IdentityPairingGivesZero) {
  const int64_t n = 16, dim = 8;
  std::vector<double> x0 = RandomPoints(n, dim, 1);
  std::vector<double> x1 = x0;
  for (double& v : x1) v += 0.01;  // tiny shift: pairing stays optimal
  auto cost = EuclideanCost(x0, x1, n, dim);
  ASSERT_TRUE(cost.ok());
  auto a = SolveAssignment(*cost);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(RecouplingRatioFromAssignment(*a), 0.0);
  auto plan = SinkhornPlan(*cost, {});
  ASSERT_TRUE(plan.ok());
  EXPECT_NEAR(RecouplingRatioFromPlan(*plan, n), 0.0, 1e-3);
}

TEST(RecouplingTest, KnownDerangementGivesItsRatio) {
  // x1_i = x0_{p(i)} with p moving 6 of 10 points: optimal coupling pairs
  // x0_j with x1_{p^-1(j)}, so exactly 6 pairs are re-coupled: R = 0.6.
  const int64_t n = 10, dim = 4;
  std::vector<double> x0 = RandomPoints(n, dim, 7);
  const std::vector<int64_t> p = {1, 2, 0, 4, 5, 3, 6, 7, 8, 9};
  std::vector<double> x1(n * dim);
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t d = 0; d < dim; ++d) x1[i * dim + d] = x0[p[i] * dim + d];
  }
  auto cost = EuclideanCost(x0, x1, n, dim);
  ASSERT_TRUE(cost.ok());
  auto a = SolveAssignment(*cost);
  ASSERT_TRUE(a.ok());
  EXPECT_DOUBLE_EQ(RecouplingRatioFromAssignment(*a), 0.6);
  for (int64_t i = 0; i < n; ++i) EXPECT_EQ(p[(*a)[i]], i);
}

TEST(RecouplingTest, HungarianBeatsEveryPermutationOnSmallCase) {
  const int64_t n = 6;
  std::vector<double> x0 = RandomPoints(n, 3, 11), x1 = RandomPoints(n, 3, 12);
  auto cost = EuclideanCost(x0, x1, n, 3);
  ASSERT_TRUE(cost.ok());
  auto a = SolveAssignment(*cost);
  ASSERT_TRUE(a.ok());
  double best = 1e300;
  std::vector<int64_t> perm = {0, 1, 2, 3, 4, 5};
  do {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += cost->at(i, perm[i]);
    best = std::min(best, s);
  } while (std::next_permutation(perm.begin(), perm.end()));
  double got = 0;
  for (int64_t i = 0; i < n; ++i) got += cost->at(i, (*a)[i]);
  EXPECT_NEAR(got, best, 1e-12);
}

TEST(RecouplingTest, SinkhornAgreesWithExactAtSmallEpsilon) {
  const int64_t n = 24, dim = 5;
  std::vector<double> x0 = RandomPoints(n, dim, 3),
                      x1 = RandomPoints(n, dim, 4);
  for (int64_t i = 0; i < n * dim; ++i) x1[i] = 0.6 * x0[i] + 0.8 * x1[i];
  auto cost = EuclideanCost(x0, x1, n, dim);
  ASSERT_TRUE(cost.ok());
  auto a = SolveAssignment(*cost);
  ASSERT_TRUE(a.ok());
  const double exact = RecouplingRatioFromAssignment(*a);
  SinkhornOptions o;
  o.epsilon = 0.002;
  o.max_iterations = 20000;
  auto plan = SinkhornPlan(*cost, o);
  ASSERT_TRUE(plan.ok());
  EXPECT_GT(exact, 0.0);
  EXPECT_NEAR(RecouplingRatioFromPlan(*plan, n), exact, 0.02);
  // Raw-scale costs in the thousands (residual-stream norms) must not
  // underflow: the cost is normalised by its mean.
  CostMatrix big = *cost;
  for (double& v : big.c) v *= 5000.0;
  auto plan_big = SinkhornPlan(big, o);
  ASSERT_TRUE(plan_big.ok());
  EXPECT_NEAR(RecouplingRatioFromPlan(*plan_big, n), exact, 0.02);
}

TEST(RecouplingTest, RejectsBadInput) {
  EXPECT_THAT(
      EuclideanCost({1.0}, {1.0, 2.0}, 1, 1),
      StatusIs(absl::StatusCode::kInvalidArgument, "expected 1 values"));
  CostMatrix empty;
  EXPECT_THAT(SolveAssignment(empty),
              StatusIs(absl::StatusCode::kInvalidArgument, "empty"));
  CostMatrix nan{1, {std::nan("")}};
  EXPECT_THAT(SolveAssignment(nan),
              StatusIs(absl::StatusCode::kInvalidArgument, "non-finite"));
  SinkhornOptions bad;
  bad.epsilon = 0;
  EXPECT_THAT(SinkhornPlan(CostMatrix{1, {0.0}}, bad),
              StatusIs(absl::StatusCode::kInvalidArgument, "epsilon"));
}

TEST(PngWriterTest, WritesValidSignatureAndChunks) {
  RgbImage img(3, 2);
  img.Set(0, 0, 255, 0, 0);
  const std::string png = img.EncodePng();
  ASSERT_GT(png.size(), 8u);
  EXPECT_EQ(png.substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
  EXPECT_NE(png.find("IHDR"), std::string::npos);
  EXPECT_NE(png.find("IDAT"), std::string::npos);
  EXPECT_EQ(png.substr(png.size() - 8, 4), "IEND");
  // IHDR: width 3, height 2, 8-bit RGB.
  EXPECT_EQ(png.substr(16, 8), std::string("\0\0\0\x03\0\0\0\x02", 8));
  EXPECT_EQ(png[24], 8);
  EXPECT_EQ(png[25], 2);
}

}  // namespace
}  // namespace lft
