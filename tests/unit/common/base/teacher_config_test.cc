// The teacher config.json parser (common/base/teacher_config.h).
#include "common/base/teacher_config.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lft {
namespace {

using ::lft::testing::StatusIs;

constexpr char kOldStyle[] = R"({"model_type": "gpt_neox", "vocab_size": 64,
  "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
  "intermediate_size": 128, "rotary_pct": 0.25, "rotary_emb_base": 5000,
  "use_parallel_residual": false, "layer_norm_eps": 1e-6,
  "tie_word_embeddings": true, "hidden_act": "gelu"})";

TEST(NeoXConfigTest, ParsesOldKeys) {
  auto c = ParseNeoXConfig(kOldStyle);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 32);
  EXPECT_EQ(c->head_dim(), 8);
  EXPECT_EQ(c->rotary_dims(), 2);
  EXPECT_DOUBLE_EQ(c->rotary_emb_base, 5000);
  EXPECT_FALSE(c->use_parallel_residual);
  EXPECT_TRUE(c->tie_word_embeddings);
  EXPECT_DOUBLE_EQ(c->layer_norm_eps, 1e-6);
  EXPECT_TRUE(c->attention_bias);
}

TEST(NeoXConfigTest, ParsesTransformers5Keys) {
  auto flat = ParseNeoXConfig(R"({"vocab_size": 64, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
    "partial_rotary_factor": 0.5, "rope_theta": 20000, "attention_bias": false})");
  ASSERT_TRUE(flat.ok()) << flat.status();
  EXPECT_EQ(flat->rotary_dims(), 4);
  EXPECT_DOUBLE_EQ(flat->rotary_emb_base, 20000);
  EXPECT_FALSE(flat->attention_bias);
  auto nested = ParseNeoXConfig(R"({"vocab_size": 64, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
    "rotary_pct": 1.0, "rope_parameters": {"rope_type": "default",
    "rope_theta": 123.0, "partial_rotary_factor": 0.25}})");
  ASSERT_TRUE(nested.ok()) << nested.status();
  EXPECT_EQ(nested->rotary_dims(), 2);
  EXPECT_DOUBLE_EQ(nested->rotary_emb_base, 123.0);
}

TEST(NeoXConfigTest, RejectsBadFieldsByName) {
  EXPECT_THAT(ParseNeoXConfig("{", "x/config.json"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "x/config.json: not a JSON"));
  EXPECT_THAT(ParseNeoXConfig(R"({"vocab_size": 64})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "\"hidden_size\" is missing"));
  EXPECT_THAT(
      ParseNeoXConfig(R"({"vocab_size": 64, "hidden_size": 30,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 8})"),
      StatusIs(absl::StatusCode::kInvalidArgument, "num_attention_heads"));
  EXPECT_THAT(
      ParseNeoXConfig(R"({"vocab_size": 64, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 8,
    "hidden_act": "gelu_new"})"),
      StatusIs(absl::StatusCode::kInvalidArgument, "only exact \"gelu\""));
  EXPECT_THAT(ParseNeoXConfig(R"({"vocab_size": "64"})"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "\"vocab_size\" must be an integer"));
  EXPECT_THAT(ParseNeoXConfig(R"({"vocab_size": 64, "hidden_size": 32,
    "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 8,
    "rotary_pct": 1.5})"),
              StatusIs(absl::StatusCode::kInvalidArgument, "rotary_pct"));
  EXPECT_THAT(
      ReadNeoXConfig("/nonexistent-dir"),
      StatusIs(absl::StatusCode::kNotFound, "/nonexistent-dir/config.json"));
}

TEST(NeoXConfigTest, JsonRoundTrip) {
  auto c = ParseNeoXConfig(kOldStyle);
  ASSERT_TRUE(c.ok());
  auto again = ParseNeoXConfig(NeoXConfigToJson(*c));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->rotary_dims(), c->rotary_dims());
  EXPECT_EQ(again->use_parallel_residual, c->use_parallel_residual);
}

}  // namespace
}  // namespace lft
