// lft-store's transport security as a real process on 127.0.0.1: bearer
// tokens in --insecure-loopback mode and over TLS (a certificate made by
// openssl in the test), the flag combinations it refuses, and the
// credentials RemotePairStore carries. Also: its /metrics after real
// traffic passes `promtool check metrics`.
#include <signal.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "latent-store/remote_pair_store.h"
#include "tests/integration/store_process.h"
#include "tests/testing/child_process.h"
#include "tests/testing/promtool.h"
#include "tests/unit/latent-store/test_util.h"

namespace lft {
namespace {

using ::lft::testing::ChildProcess;
using ::lft::testing::ReadFile;
using ::testing::HasSubstr;
using testing_util::MakePair;
using testing_util::PairIntact;
using testing_util::StatusIs;
using testing_util::StoreProcess;
using testing_util::TempDir;

constexpr char kToken[] = "s3cret-store-token";

class StoreAuthTest : public ::testing::Test {
 protected:
  void SetUp() override { unsetenv("LFT_AUTH_TOKEN"); }

  absl::StatusOr<StoreProcess> Start(std::vector<std::string> extra) {
    std::vector<std::string> args = {"--db", dir_.Sub("db")};
    args.insert(args.end(), extra.begin(), extra.end());
    return StoreProcess::Start(LFT_STORE_BINARY, args, absl::Seconds(20));
  }

  std::unique_ptr<RemotePairStore> Client(const std::string& address,
                                          const std::string& token,
                                          const std::string& ca = "") {
    RemotePairStoreOptions o;
    o.rpc_timeout = absl::Seconds(10);
    o.credentials.token = token;
    o.credentials.tls_ca_path = ca;
    auto c = RemotePairStore::Connect(address, o);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  // lft-store with `args`; its exit code and stderr.
  std::pair<int, std::string> Run(std::vector<std::string> args) {
    std::vector<std::string> argv = {LFT_STORE_BINARY};
    argv.insert(argv.end(), args.begin(), args.end());
    static int n = 0;
    const std::string base = dir_.Sub(absl::StrCat("run", n++));
    ChildProcess p(argv, base + ".out", base + ".err");
    const int code = p.Wait(absl::Seconds(10));
    return {code, p.err()};
  }

  // A self-signed certificate for 127.0.0.1 that is its own CA.
  bool MakeCertificate() {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) return false;
    const std::string cmd = absl::StrCat(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
        "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout ",
        dir_.Sub("key.pem"), " -out ", dir_.Sub("cert.pem"), " > ",
        dir_.Sub("openssl.log"), " 2>&1");
    EXPECT_EQ(std::system(cmd.c_str()), 0) << ReadFile(dir_.Sub("openssl.log"));
    return true;
  }

  // Every kind of call works: unary, client streaming, server streaming,
  // checkpoint upload and download.
  void ExpectRoundTrip(RemotePairStore* client) {
    JobConfig c;
    c.hidden = 16;
    c.codec = TensorCodec::kBF16;
    ASSERT_TRUE(client->CreateJob("job", c).ok());
    std::vector<LatentPairRecord> batch;
    for (uint64_t s = 0; s < 5; ++s) batch.push_back(MakePair(0, s, 0, 8, 16));
    ASSERT_TRUE(
        client->PutPairs("job", batch, absl::Now() + absl::Seconds(10)).ok());
    const auto pairs = testing_util::ScanAll(client, "job");
    ASSERT_EQ(pairs.size(), 5u);
    for (const auto& p : pairs) EXPECT_TRUE(PairIntact(p));
    const std::string blob(100000, 'x');
    ASSERT_TRUE(client->PutCheckpoint("job", "step-1", blob, "").ok());
    auto got = client->GetCheckpoint("job", "step-1");
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, blob);
  }

  TempDir dir_;
};

TEST_F(StoreAuthTest, InsecureLoopbackWithTokenRefusesMissingAndWrongToken) {
  auto store = Start(
      {"--listen", "127.0.0.1:0", "--insecure-loopback", "--token", kToken});
  ASSERT_TRUE(store.ok()) << store.status();
  auto none = Client(store->address(), "");
  EXPECT_THAT(none->Stats("job"),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       "missing bearer token: pass --token or set "
                       "LFT_AUTH_TOKEN"));
  auto wrong = Client(store->address(), "not-the-token");
  EXPECT_THAT(
      wrong->CreateJob("job", JobConfig{}),
      StatusIs(absl::StatusCode::kUnauthenticated, "invalid bearer token"));
  // Streaming calls are checked too.
  EXPECT_THAT(wrong->PutPairs("job", {MakePair(0, 0, 0, 8, 16)},
                              absl::Now() + absl::Seconds(10)),
              StatusIs(absl::StatusCode::kUnauthenticated,
                       "PutPairs: invalid bearer token"));
  auto reader = none->Scan("job", ScanOptions());
  ASSERT_TRUE(reader.ok());
  LatentPairRecord p;
  EXPECT_THAT(
      (*reader)->Next(&p).status(),
      StatusIs(absl::StatusCode::kUnauthenticated, "missing bearer token"));
  EXPECT_THAT(
      none->GetCheckpoint("job", "x").status(),
      StatusIs(absl::StatusCode::kUnauthenticated, "missing bearer token"));
  auto right = Client(store->address(), kToken);
  ExpectRoundTrip(right.get());
  // The token may come from the environment instead of --token.
  store->Kill(SIGTERM);
  setenv("LFT_AUTH_TOKEN", "from-env", 1);
  auto env_store = Start({"--listen", "127.0.0.1:0", "--insecure-loopback"});
  unsetenv("LFT_AUTH_TOKEN");
  ASSERT_TRUE(env_store.ok()) << env_store.status();
  EXPECT_THAT(Client(env_store->address(), "")->Stats("job"),
              StatusIs(absl::StatusCode::kUnauthenticated, "missing"));
  EXPECT_TRUE(Client(env_store->address(), "from-env")->Stats("job").ok());
}

TEST_F(StoreAuthTest, TlsRoundTripNeedsCaAndToken) {
  if (!MakeCertificate()) GTEST_SKIP() << "no openssl";
  auto store =
      Start({"--listen", "127.0.0.1:0", "--tls-cert", dir_.Sub("cert.pem"),
             "--tls-key", dir_.Sub("key.pem"), "--token", kToken});
  ASSERT_TRUE(store.ok()) << store.status();
  auto client = Client(store->address(), kToken, dir_.Sub("cert.pem"));
  ExpectRoundTrip(client.get());
  EXPECT_THAT(
      Client(store->address(), "", dir_.Sub("cert.pem"))->Stats("job"),
      StatusIs(absl::StatusCode::kUnauthenticated, "missing bearer token"));
  EXPECT_THAT(
      Client(store->address(), "wrong", dir_.Sub("cert.pem"))->Stats("job"),
      StatusIs(absl::StatusCode::kUnauthenticated, "invalid bearer token"));
  // Plaintext to a TLS store does not get through.
  RemotePairStoreOptions o;
  o.rpc_timeout = absl::Seconds(3);
  o.credentials.token = kToken;
  auto plain = RemotePairStore::Connect(store->address(), o);
  ASSERT_TRUE(plain.ok());
  EXPECT_THAT((*plain)->Stats("job"),
              StatusIs(absl::StatusCode::kUnavailable, ""));
  // A CA file that is not there is an error at Connect, naming the flag.
  o.credentials.tls_ca_path = dir_.Sub("missing.pem");
  EXPECT_THAT(RemotePairStore::Connect(store->address(), o).status(),
              StatusIs(absl::StatusCode::kNotFound, "--tls-ca"));
}

TEST_F(StoreAuthTest, MetricsAfterTrafficPassPromtool) {
  auto store = Start({"--listen", "127.0.0.1:0", "--insecure-loopback",
                      "--token", kToken, "--metrics-port", "0"});
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_NE(store->metrics_port(), 0);
  auto client = Client(store->address(), kToken);
  ExpectRoundTrip(client.get());
  ASSERT_TRUE(client->AckConsumed("job", 5).ok());
  const std::string metrics =
      ::lft::testing::LoopbackHttpBody(store->metrics_port(), "/metrics");
  for (const char* family :
       {"lft_store_pairs_written_total", "lft_store_written_bytes_total",
        "lft_store_pairs_read_total", "lft_store_read_bytes_total",
        "lft_store_pending_pairs{job=\"job\"}",
        "lft_store_checkpoint_written_bytes_total"}) {
    EXPECT_THAT(metrics, HasSubstr(family));
  }
  if (!::lft::testing::HavePromtool()) {
    GTEST_SKIP() << "promtool not installed (Debian package prometheus)";
  }
  absl::Status check = ::lft::testing::PromtoolCheckMetrics(metrics);
  EXPECT_TRUE(check.ok()) << check << "\n" << metrics;
}

TEST_F(StoreAuthTest, RefusesPlaintextOffLoopbackAndTlsWithoutToken) {
  auto [code, err] = Run(
      {"--db", dir_.Sub("a"), "--listen", "0.0.0.0:0", "--insecure-loopback"});
  EXPECT_EQ(code, 2);
  EXPECT_THAT(
      err, HasSubstr("--insecure-loopback refuses to listen on non-loopback"));
  std::tie(code, err) = Run({"--db", dir_.Sub("b"), "--listen", "127.0.0.1:0"});
  EXPECT_EQ(code, 2);
  EXPECT_THAT(err, HasSubstr("pass --tls-cert and --tls-key"));
  if (!MakeCertificate()) return;
  std::tie(code, err) =
      Run({"--db", dir_.Sub("c"), "--listen", "127.0.0.1:0", "--tls-cert",
           dir_.Sub("cert.pem"), "--tls-key", dir_.Sub("key.pem")});
  EXPECT_EQ(code, 2);
  EXPECT_THAT(err, HasSubstr("TLS mode requires a bearer token"));
}

}  // namespace
}  // namespace lft
