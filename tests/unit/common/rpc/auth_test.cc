#include "common/rpc/auth.h"

#include <fstream>

#include "tests/unit/coordinator/test_util.h"

namespace lft {
namespace {

using Metadata = std::multimap<grpc::string_ref, grpc::string_ref>;

TEST(AuthTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(AuthTest, LoopbackAddresses) {
  EXPECT_TRUE(IsLoopbackAddress("127.0.0.1:7070"));
  EXPECT_TRUE(IsLoopbackAddress("127.3.2.1:0"));
  EXPECT_TRUE(IsLoopbackAddress("localhost:1"));
  EXPECT_TRUE(IsLoopbackAddress("[::1]:7070"));
  EXPECT_FALSE(IsLoopbackAddress("0.0.0.0:7070"));
  EXPECT_FALSE(IsLoopbackAddress("[::]:7070"));
  EXPECT_FALSE(IsLoopbackAddress("10.1.2.3:7070"));
  EXPECT_FALSE(IsLoopbackAddress("127.example.com:1"));
}

TEST(AuthTest, CheckerSaysHowToPassToken) {
  BearerTokenChecker checker("s3cret");
  Metadata none;
  EXPECT_THAT(checker.Check(none),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       "pass --token or set LFT_AUTH_TOKEN"));
  Metadata wrong{{"authorization", "Bearer nope"}};
  EXPECT_THAT(checker.Check(wrong), StatusIs(absl::StatusCode::kUnauthenticated,
                                             "invalid bearer token"));
  Metadata basic{{"authorization", "Basic abc"}};
  EXPECT_THAT(checker.Check(basic),
              StatusIs(absl::StatusCode::kUnauthenticated, "Bearer"));
  Metadata good{{"authorization", "Bearer s3cret"}};
  EXPECT_TRUE(checker.Check(good).ok());
  EXPECT_TRUE(BearerTokenChecker("").Check(none).ok());
}

TEST(AuthTest, ServerCredentialRulesNameTheFlag) {
  ServerSecurityOptions o;
  EXPECT_THAT(
      MakeServerCredentials(o, "127.0.0.1:1"),
      StatusIs(absl::StatusCode::kInvalidArgument, "--insecure-loopback"));
  o.insecure_loopback = true;
  EXPECT_TRUE(MakeServerCredentials(o, "127.0.0.1:1").ok());
  EXPECT_THAT(MakeServerCredentials(o, "0.0.0.0:7070"),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       "refuses to listen on non-loopback"));
  o.insecure_loopback = false;
  o.tls_cert_path = "/nonexistent/cert.pem";
  o.tls_key_path = "/nonexistent/key.pem";
  EXPECT_THAT(
      MakeServerCredentials(o, "0.0.0.0:1"),
      StatusIs(absl::StatusCode::kInvalidArgument, "requires a bearer token"));
  o.token = "t";
  EXPECT_THAT(MakeServerCredentials(o, "0.0.0.0:1"),
              StatusIs(absl::StatusCode::kNotFound,
                       "--tls-cert /nonexistent/cert.pem"));
  TempDir dir;
  std::ofstream(dir.path() + "/notpem") << "hello";
  o.tls_cert_path = dir.path() + "/notpem";
  EXPECT_THAT(
      MakeServerCredentials(o, "0.0.0.0:1"),
      StatusIs(absl::StatusCode::kInvalidArgument, "is not a PEM file"));
}

}  // namespace
}  // namespace lft
