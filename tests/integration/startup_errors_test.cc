// lft-coordinator and lft-store started wrongly, as real processes on
// 127.0.0.1: a second process on a locked --db, a --db that is a regular file
// or read-only, certificates gRPC cannot load (key and certificate swapped,
// garbage PEM, a key of another certificate, a bad --tls-ca), and a port
// already in use (refused, never shared). Each must end the process with a
// non-zero exit code (never a signal: these once segfaulted) and one line on
// stderr that names the cause. Every wait is bounded.
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/child_process.h"

namespace lft {
namespace {

namespace fs = std::filesystem;
using ::lft::testing::ChildProcess;
using ::lft::testing::ReadFile;
using ::testing::HasSubstr;

struct Server {
  const char* name;    // program name, the prefix of its error line
  const char* binary;  // path
};

const Server kCoordinator = {"lft-coordinator", LFT_COORDINATOR_BIN};
const Server kStore = {"lft-store", LFT_STORE_BIN};

struct Outcome {
  int code = -1;
  std::string err;
};

class StartupErrorsTest : public ::testing::TestWithParam<Server> {
 protected:
  void SetUp() override {
    unsetenv("LFT_AUTH_TOKEN");
    dir_ = fs::temp_directory_path() /
           absl::StrCat("lft-startup-", getpid(), "-", counter_++);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!mounted_.empty()) umount(mounted_.c_str());
    std::error_code ec;
    fs::permissions(dir_, fs::perms::all, fs::perm_options::add, ec);
    for (const auto& e : fs::recursive_directory_iterator(dir_, ec)) {
      fs::permissions(e.path(), fs::perms::owner_all, fs::perm_options::add,
                      ec);
    }
    fs::remove_all(dir_, ec);
  }

  std::string Path(const std::string& name) const { return dir_ / name; }

  std::vector<std::string> Argv(const std::string& db,
                                const std::string& listen,
                                std::vector<std::string> extra) const {
    std::vector<std::string> argv = {GetParam().binary, "--db", db, "--listen",
                                     listen};
    if (std::string(GetParam().name) == "lft-coordinator") {
      argv.insert(argv.end(), {"--port-file", Path("port")});
    }
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }

  // Runs a server that must fail: its exit code and stderr.
  Outcome RunToFailure(const std::vector<std::string>& argv) {
    const std::string base = Path(absl::StrCat("run", runs_++));
    ChildProcess p(argv, base + ".out", base + ".err");
    Outcome o;
    o.code = p.Wait(absl::Seconds(20));
    o.err = p.err();
    return o;
  }

  // Starts a healthy server on `db` (plaintext, loopback) and returns its
  // gRPC port, read from the port file or the "listening on" line.
  int StartHealthy(const std::string& db, std::unique_ptr<ChildProcess>* p) {
    fs::remove(Path("port"));
    *p = std::make_unique<ChildProcess>(
        Argv(db, "127.0.0.1:0", {"--insecure-loopback"}), Path("healthy.out"),
        Path("healthy.err"));
    const absl::Time deadline = absl::Now() + absl::Seconds(20);
    while (absl::Now() < deadline && (*p)->running()) {
      int port = 0;
      if (std::string(GetParam().name) == "lft-coordinator") {
        std::vector<std::string> parts =
            absl::StrSplit(ReadFile(Path("port")), ' ');
        if (parts.size() == 2 && absl::SimpleAtoi(parts[0], &port)) {
          return port;
        }
      } else {
        const std::string out = (*p)->out();
        const size_t at = out.find("listening on 127.0.0.1:");
        const size_t eol = out.find('\n', at);
        if (at != std::string::npos && eol != std::string::npos &&
            absl::SimpleAtoi(out.substr(at + 23, eol - at - 23), &port)) {
          return port;
        }
      }
      if ((*p)->Wait(absl::Milliseconds(20)) >= 0) break;
    }
    ADD_FAILURE() << GetParam().name << " did not start: " << (*p)->err();
    return 0;
  }

  // The outcome every startup error must have: exit code 1 or 2 (not a
  // signal's 128 + n), and stderr exactly one line "<program>: ..." that
  // contains each of `parts`.
  void ExpectOneClearLine(const Outcome& o,
                          const std::vector<std::string>& parts) {
    EXPECT_TRUE(o.code == 1 || o.code == 2)
        << GetParam().name << " exited " << o.code << "; stderr: " << o.err;
    const std::string line(absl::StripSuffix(o.err, "\n"));
    EXPECT_EQ(line.find('\n'), std::string::npos)
        << "more than one line on stderr:\n"
        << o.err;
    EXPECT_THAT(line,
                ::testing::StartsWith(absl::StrCat(GetParam().name, ": ")));
    for (const std::string& part : parts) EXPECT_THAT(line, HasSubstr(part));
  }

  // A self-signed certificate `name`.pem with its key `name`.key; false
  // without the openssl tool.
  bool MakeCertificate(const std::string& name) {
    if (std::system("command -v openssl >/dev/null 2>&1") != 0) return false;
    const std::string cmd = absl::StrCat(
        "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost "
        "-keyout ",
        Path(name + ".key"), " -out ", Path(name + ".pem"), " > ",
        Path("openssl.log"), " 2>&1");
    EXPECT_EQ(std::system(cmd.c_str()), 0) << ReadFile(Path("openssl.log"));
    return true;
  }

  std::vector<std::string> Tls(const std::string& cert, const std::string& key,
                               std::vector<std::string> extra = {}) {
    std::vector<std::string> flags = {"--tls-cert", cert,      "--tls-key",
                                      key,          "--token", "t"};
    flags.insert(flags.end(), extra.begin(), extra.end());
    return flags;
  }

  static inline int counter_ = 0;
  fs::path dir_;
  std::string mounted_;
  int runs_ = 0;
};

TEST_P(StartupErrorsTest, SecondProcessOnTheSameDbIsRefused) {
  std::unique_ptr<ChildProcess> first;
  ASSERT_GT(StartHealthy(Path("db"), &first), 0);
  Outcome o =
      RunToFailure(Argv(Path("db"), "127.0.0.1:0", {"--insecure-loopback"}));
  ExpectOneClearLine(o, {Path("db"), "lock", "is another"});
  EXPECT_TRUE(first->running()) << "the first process must keep running";
}

TEST_P(StartupErrorsTest, DbThatIsARegularFileIsRefused) {
  std::ofstream(Path("file")) << "not a database";
  Outcome o =
      RunToFailure(Argv(Path("file"), "127.0.0.1:0", {"--insecure-loopback"}));
  ExpectOneClearLine(o, {"--db ", Path("file"), "is not a directory"});
}

TEST_P(StartupErrorsTest, ReadOnlyDbIsRefused) {
  const std::string db = Path("ro");
  fs::create_directories(db);
  if (geteuid() == 0) {
    // Root writes through mode bits: a read-only mount is what stops it.
    if (mount("tmpfs", db.c_str(), "tmpfs", MS_RDONLY, "size=1m") != 0) {
      GTEST_SKIP() << "root without a read-only mount: cannot make a "
                      "read-only directory";
    }
    mounted_ = db;
  } else {
    fs::permissions(db, fs::perms::owner_read | fs::perms::owner_exec);
  }
  Outcome o = RunToFailure(Argv(db, "127.0.0.1:0", {"--insecure-loopback"}));
  ExpectOneClearLine(o, {"--db ", db, "is not writable"});
}

TEST_P(StartupErrorsTest, SwappedKeyAndCertificateAreRefused) {
  if (!MakeCertificate("a")) GTEST_SKIP() << "no openssl";
  Outcome o = RunToFailure(
      Argv(Path("db"), "127.0.0.1:0", Tls(Path("a.key"), Path("a.pem"))));
  ExpectOneClearLine(o, {"--tls-cert ", Path("a.key"), "not a PEM certificate",
                         "are --tls-cert and --tls-key swapped?"});
  // Only the key swapped in for the certificate's place.
  o = RunToFailure(
      Argv(Path("db"), "127.0.0.1:0", Tls(Path("a.pem"), Path("a.pem"))));
  ExpectOneClearLine(o, {"--tls-key ", Path("a.pem"), "not a PEM private key",
                         "the file holds a certificate"});
}

TEST_P(StartupErrorsTest, GarbagePemIsRefused) {
  if (!MakeCertificate("a")) GTEST_SKIP() << "no openssl";
  std::ofstream(Path("garbage.pem"))
      << "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n"
         "-----END CERTIFICATE-----\n";
  Outcome o = RunToFailure(
      Argv(Path("db"), "127.0.0.1:0", Tls(Path("garbage.pem"), Path("a.key"))));
  ExpectOneClearLine(o,
                     {"--tls-cert ", "garbage.pem", "not a PEM certificate"});

  std::ofstream(Path("garbage.key"))
      << "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE "
         "KEY-----\n";
  o = RunToFailure(
      Argv(Path("db"), "127.0.0.1:0", Tls(Path("a.pem"), Path("garbage.key"))));
  ExpectOneClearLine(o, {"--tls-key ", "garbage.key", "not a PEM private key"});
}

TEST_P(StartupErrorsTest, KeyOfAnotherCertificateIsRefused) {
  if (!MakeCertificate("a") || !MakeCertificate("b")) {
    GTEST_SKIP() << "no openssl";
  }
  Outcome o = RunToFailure(
      Argv(Path("db"), "127.0.0.1:0", Tls(Path("a.pem"), Path("b.key"))));
  ExpectOneClearLine(o, {"--tls-key ", Path("b.key"),
                         "does not match the certificate in --tls-cert"});
}

TEST_P(StartupErrorsTest, BadCaIsRefused) {
  if (!MakeCertificate("a")) GTEST_SKIP() << "no openssl";
  std::ofstream(Path("ca.pem"))
      << "-----BEGIN CERTIFICATE-----\nZ2FyYmFnZQ==\n-----END "
         "CERTIFICATE-----\n";
  Outcome o = RunToFailure(
      Argv(Path("db"), "127.0.0.1:0",
           Tls(Path("a.pem"), Path("a.key"), {"--tls-ca", Path("ca.pem")})));
  ExpectOneClearLine(o, {"--tls-ca ", Path("ca.pem"), "not a PEM certificate"});
  // The key as CA: no certificate in it.
  o = RunToFailure(
      Argv(Path("db"), "127.0.0.1:0",
           Tls(Path("a.pem"), Path("a.key"), {"--tls-ca", Path("a.key")})));
  ExpectOneClearLine(o, {"--tls-ca ", "not a PEM certificate",
                         "the file holds a private key"});
}

TEST_P(StartupErrorsTest, PortInUseIsRefusedNotShared) {
  std::unique_ptr<ChildProcess> first;
  const int port = StartHealthy(Path("db"), &first);
  ASSERT_GT(port, 0);
  const std::string address = absl::StrCat("127.0.0.1:", port);
  Outcome o = RunToFailure(Argv(Path("db2"), address, {"--insecure-loopback"}));
  ExpectOneClearLine(
      o, {"cannot listen on ", address, "--listen", "Address already in use"});
  EXPECT_TRUE(first->running());
}

TEST_P(StartupErrorsTest, BadPayloadWritebackIsRefused) {
  if (std::string(GetParam().name) != "lft-store") {
    GTEST_SKIP() << "an lft-store flag";
  }
  Outcome o =
      RunToFailure(Argv(Path("db"), "127.0.0.1:0",
                        {"--insecure-loopback", "--payload-writeback-mib=-1"}));
  ExpectOneClearLine(o, {"--payload-writeback-mib", "0..65536", "-1"});
  o = RunToFailure(Argv(Path("db"), "127.0.0.1:0",
                        {"--insecure-loopback", "--payload-writeback-mib=x"}));
  ExpectOneClearLine(o, {"payload-writeback-mib", "x"});
}

INSTANTIATE_TEST_SUITE_P(Servers, StartupErrorsTest,
                         ::testing::Values(kCoordinator, kStore),
                         [](const ::testing::TestParamInfo<Server>& server) {
                           return std::string(server.param.name) ==
                                          "lft-coordinator"
                                      ? "Coordinator"
                                      : "Store";
                         });

}  // namespace
}  // namespace lft
