#include "lftctl/lftctl.h"

#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "common/base/env.h"
#include "common/base/flags.h"
#include "common/base/job_spec.h"
#include "common/base/job_state.h"
#include "common/base/status.h"
#include "common/rpc/auth.h"
#include "common/rpc/channel.h"
#include "common/rpc/grpc_status.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "latent-store/checkpoint_names.h"
#include "lft/v1/checkpoint.grpc.pb.h"
#include "lft/v1/job.grpc.pb.h"
#include "lftctl/job_spec_yaml.h"

namespace lft {
namespace {

constexpr char kHelp[] = R"(usage: lftctl [global flags] COMMAND [args]

Commands:
  submit SPEC [overrides] [--request-id ID] [--watch]
                        create a job from a JobSpec in YAML (.yaml, .yml) or
                        JSON (.json; other names: by content); prints its id
      overrides: --name NAME --teacher DIR --corpus FILE.jsonl.zst --block M:N
                 --method sfm|fw|hybrid|regression --trainer-ranks N
                 --max-steps N --sequence-length N --documents-per-shard N
  get JOB [--json]      show a job (state, progress, error)
  list [--state STATE]  list jobs, newest first (STATE: pending, extracting, ...)
  watch JOB             stream progress until the job ends (bars on a terminal)
  cancel JOB            cancel a job that has not finished
  delete JOB [--force]  delete a finished job's pairs, checkpoints and reports
                        from the latent store (--force cancels a running job
                        first); the job stays listed
  pull JOB [NAME] [--out PATH] [--store HOST:PORT]
                        download a checkpoint or report blob of JOB (default:
                        the newest checkpoint) to PATH (default ./NAME),
                        verifying its sha256; through the coordinator, or
                        from the store with --store; a pull that stopped
                        half-way resumes from PATH.partial-<sha256 prefix>
  pull JOB --list [--store HOST:PORT]
                        list JOB's blobs: name, bytes, sha256, creation time
  analyze --teacher DIR --heldout FILE.jsonl.zst [...]
                        recoupling-ratio matrix over all (m, n) of a teacher:
                        prints it, writes JSON and a heatmap PNG (runs
                        lft-analyze; `lftctl analyze --help`)
  export --teacher DIR --checkpoint FILE --k K --out DIR
                        fold a pulled flow checkpoint into a plain GPT-NeoX
                        directory with k Euler layers (runs lft-export)

Global flags:
  --server HOST:PORT    coordinator address (default 127.0.0.1:7070)
  --token TOKEN         bearer token (default: env LFT_AUTH_TOKEN)
  --tls-ca PEM          CA that signed the coordinator's certificate (TLS)
  --insecure            plaintext (coordinator runs --insecure-loopback);
                        implied for loopback addresses without --tls-ca
  --timeout-s N         per-call deadline in seconds (default 10; pull:
                        the whole download, default 600)
  --store HOST:PORT     pull from this latent store's CheckpointService
                        (default: env LFT_STORE_ADDRESS, else through the
                        coordinator at --server); --token, --tls-ca and
                        --insecure apply to it as to the coordinator

Exit codes:
  0  success (watch: the job SUCCEEDED)
  1  watch: the job ended FAILED or CANCELLED
  2  usage error, or the coordinator rejected the spec (invalid argument)
  3  job not found (pull: no such job, blob, or no checkpoint yet)
  4  coordinator unavailable, timed out, or authentication failed
  5  failed precondition (e.g. cancelling a finished job)
  6  internal error
  7  pull: the download did not match the store's sha256 (file removed)
)";

struct Client {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<lft::v1::JobService::Stub> stub;
  std::string token;
  int64_t timeout_s = 10;

  void Prepare(grpc::ClientContext* ctx, bool deadline = true) const {
    AttachBearerToken(ctx, token);
    if (deadline) {
      ctx->set_deadline(std::chrono::system_clock::now() +
                        std::chrono::seconds(timeout_s));
    }
  }
};

std::string OneLine(absl::string_view message) {
  std::string out = absl::StrReplaceAll(message, {{":\n  ", ": "}});
  return absl::StrReplaceAll(out, {{"\n  ", "; "}, {"\n", "; "}});
}

int Report(const absl::Status& s, std::ostream& err) {
  std::string code = absl::AsciiStrToLower(absl::StatusCodeToString(s.code()));
  for (char& ch : code) {
    if (ch == '_') ch = ' ';
  }
  err << "lftctl: " << code << ": " << OneLine(s.message()) << "\n";
  return ExitCodeFor(s);
}

int Usage(const std::string& message, std::ostream& err) {
  err << "lftctl: " << message << " (lftctl --help)\n";
  return kExitUsage;
}

std::string Human(double v) {
  if (v >= 1e9) return absl::StrFormat("%.1fG", v / 1e9);
  if (v >= 1e6) return absl::StrFormat("%.1fM", v / 1e6);
  if (v >= 1e4) return absl::StrFormat("%.1fk", v / 1e3);
  return absl::StrFormat("%.0f", v);
}

std::string Duration(double seconds) {
  const int64_t s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return absl::StrFormat("%dh%02dm", s / 3600, (s % 3600) / 60);
  if (s >= 60) return absl::StrFormat("%dm%02ds", s / 60, s % 60);
  return absl::StrFormat("%ds", s);
}

std::string PhaseName(lft::v1::JobState s) {
  switch (s) {
    case lft::v1::JOB_STATE_EXTRACTING:
      return "extract";
    case lft::v1::JOB_STATE_TRAINING:
      return "train";
    case lft::v1::JOB_STATE_EVALUATING:
      return "eval";
    default:
      return absl::AsciiStrToLower(ShortJobState(s));
  }
}

std::string FormatJob(const lft::v1::Job& job) {
  std::string out = absl::StrCat(job.id(), "  ", job.spec().name(), "  ",
                                 ShortJobState(job.state()), "\n");
  absl::StrAppend(&out, "  created  ",
                  absl::FormatTime("%Y-%m-%dT%H:%M:%SZ",
                                   absl::FromUnixMillis(job.created_unix_ms()),
                                   absl::UTCTimeZone()),
                  "\n");
  absl::StrAppend(&out, "  block    [", job.spec().block().first_layer(), ", ",
                  job.spec().block().end_layer(), ")  method ",
                  lft::v1::Method_Name(job.spec().training().method()), "\n");
  for (const auto& p : job.progress()) {
    absl::StrAppend(&out, "  ", absl::StrFormat("%-8s", PhaseName(p.phase())),
                    FormatPhaseProgress(p, true), "\n");
  }
  if (job.latest_step() > 0) {
    absl::StrAppend(&out, "  loss     ",
                    absl::StrFormat("%.4g", job.latest_loss()), " at step ",
                    job.latest_step(), "\n");
  }
  if (!job.error().empty())
    absl::StrAppend(&out, "  error    ", job.error(), "\n");
  auto when = [](int64_t ms) {
    return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms),
                            absl::UTCTimeZone());
  };
  if (job.data_deleted_unix_ms() > 0) {
    absl::StrAppend(&out, "  data     pairs, checkpoints and reports deleted ",
                    when(job.data_deleted_unix_ms()), "\n");
  } else if (job.pairs_deleted_unix_ms() > 0) {
    absl::StrAppend(&out, "  data     pairs deleted (retention) ",
                    when(job.pairs_deleted_unix_ms()),
                    "; checkpoints and reports kept\n");
  }
  return out;
}

absl::StatusOr<lft::v1::JobState> ParseState(const std::string& name) {
  const std::string upper = absl::AsciiStrToUpper(name);
  lft::v1::JobState s;
  if (lft::v1::JobState_Parse(absl::StrCat("JOB_STATE_", upper), &s) ||
      lft::v1::JobState_Parse(upper, &s)) {
    return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("--state: \"", name,
                   "\" is not pending, extracting, training, evaluating, "
                   "succeeded, failed or cancelled"));
}

int Submit(const Client& c, const Flags& f, std::ostream& out,
           std::ostream& err, bool tty);
int Watch(const Client& c, const std::string& job_id, std::ostream& out,
          std::ostream& err, bool tty);
int Pull(const Flags& f, std::ostream& out, std::ostream& err);

}  // namespace

int ExitCodeFor(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return kExitOk;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kOutOfRange:
      return kExitUsage;
    case absl::StatusCode::kNotFound:
      return kExitNotFound;
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDeadlineExceeded:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return kExitUnavailable;
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted:
      return kExitFailedPrecondition;
    case absl::StatusCode::kDataLoss:
      return kExitDataLoss;
    default:
      return kExitInternal;
  }
}

absl::Status ApplySpecOverrides(
    const std::vector<std::pair<std::string, std::string>>& flags,
    lft::v1::JobSpec* spec) {
  for (const auto& [name, value] : flags) {
    auto number = [&, n = name, v = value](uint32_t* target) -> absl::Status {
      if (!absl::SimpleAtoi(v, target)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--", n, ": \"", v, "\" is not a non-negative integer"));
      }
      return absl::OkStatus();
    };
    uint32_t n = 0;
    if (name == "name") {
      spec->set_name(value);
    } else if (name == "teacher") {
      spec->mutable_teacher()->set_path(value);
    } else if (name == "corpus") {
      spec->mutable_corpus()->clear_megatron_prefixes();
      spec->mutable_corpus()->clear_jsonl_zst_paths();
      spec->mutable_corpus()->add_jsonl_zst_paths(value);
    } else if (name == "block") {
      std::vector<std::string> parts = absl::StrSplit(value, ':');
      uint32_t m = 0, e = 0;
      if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &m) ||
          !absl::SimpleAtoi(parts[1], &e)) {
        return absl::InvalidArgumentError(
            absl::StrCat("--block: \"", value,
                         "\" is not FIRST:END, e.g. 6:12 for layers [6, 12)"));
      }
      spec->mutable_block()->set_first_layer(m);
      spec->mutable_block()->set_end_layer(e);
    } else if (name == "method") {
      const std::string upper = absl::AsciiStrToUpper(value);
      lft::v1::Method method;
      if (!lft::v1::Method_Parse(absl::StrCat("METHOD_", upper), &method) ||
          method == lft::v1::METHOD_UNSPECIFIED) {
        return absl::InvalidArgumentError(absl::StrCat(
            "--method: \"", value, "\" is not sfm, fw, hybrid or regression"));
      }
      spec->mutable_training()->set_method(method);
    } else if (name == "trainer-ranks") {
      if (auto s = number(&n); !s.ok()) return s;
      spec->mutable_training()->set_trainer_ranks(n);
    } else if (name == "max-steps") {
      if (auto s = number(&n); !s.ok()) return s;
      spec->mutable_training()->set_max_steps(n);
    } else if (name == "sequence-length") {
      if (auto s = number(&n); !s.ok()) return s;
      spec->set_sequence_length(n);
    } else if (name == "documents-per-shard") {
      if (auto s = number(&n); !s.ok()) return s;
      spec->mutable_corpus()->set_documents_per_shard(n);
    }
  }
  return absl::OkStatus();
}

std::string FormatPhaseProgress(const lft::v1::PhaseProgress& p, bool bar) {
  std::string out;
  const double frac =
      p.units_total() > 0
          ? std::min(1.0, static_cast<double>(p.units_done()) / p.units_total())
          : 0.0;
  if (bar) {
    constexpr int kWidth = 24;
    const int filled = static_cast<int>(frac * kWidth + 0.5);
    absl::StrAppend(&out, "[", std::string(filled, '#'),
                    std::string(kWidth - filled, '-'), "] ");
  }
  if (p.units_total() > 0) {
    absl::StrAppend(&out, absl::StrFormat("%3.0f%%  ", frac * 100),
                    Human(p.units_done()), "/", Human(p.units_total()), " ",
                    p.unit());
  } else {
    absl::StrAppend(&out, Human(p.units_done()), " ", p.unit());
  }
  if (!p.stage().empty()) absl::StrAppend(&out, " (", p.stage(), ")");
  if (p.units_per_second() > 0) {
    absl::StrAppend(&out, "  ", Human(p.units_per_second()), " ", p.unit(),
                    "/s");
  }
  if (p.eta_seconds() > 0)
    absl::StrAppend(&out, "  ETA ", Duration(p.eta_seconds()));
  return out;
}

namespace {

int Submit(const Client& c, const Flags& f, std::ostream& out,
           std::ostream& err, bool tty) {
  if (f.positional().size() != 2)
    return Usage("submit takes one SPEC file (.yaml, .yml or .json)", err);
  const std::string& path = f.positional()[1];
  std::ifstream in(path);
  if (!in) return Usage(absl::StrCat("cannot read spec file ", path), err);
  std::stringstream buf;
  buf << in.rdbuf();
  absl::StatusOr<lft::v1::JobSpec> spec =
      ParseJobSpecFileContent(path, buf.str());
  if (!spec.ok()) {
    err << "lftctl: " << path << ": " << OneLine(spec.status().message())
        << "\n";
    return kExitUsage;
  }
  std::vector<std::pair<std::string, std::string>> overrides;
  for (const char* name :
       {"name", "teacher", "corpus", "block", "method", "trainer-ranks",
        "max-steps", "sequence-length", "documents-per-shard"}) {
    if (f.Has(name)) overrides.emplace_back(name, f.Get(name));
  }
  if (absl::Status s = ApplySpecOverrides(overrides, &*spec); !s.ok()) {
    return Usage(std::string(s.message()), err);
  }
  lft::v1::SubmitJobRequest req;
  *req.mutable_spec() = *spec;
  req.set_request_id(f.Get("request-id"));
  lft::v1::SubmitJobResponse resp;
  grpc::ClientContext ctx;
  c.Prepare(&ctx);
  grpc::Status s = c.stub->Submit(&ctx, req, &resp);
  if (!s.ok()) return Report(FromGrpcStatus(s), err);
  out << resp.job().id() << "\n";
  out.flush();
  if (f.Has("watch")) return Watch(c, resp.job().id(), out, err, tty);
  return kExitOk;
}

int Watch(const Client& c, const std::string& job_id, std::ostream& out,
          std::ostream& err, bool tty) {
  uint64_t after = 0;
  std::map<int, lft::v1::PhaseProgress> phases;
  lft::v1::JobState state = lft::v1::JOB_STATE_UNSPECIFIED;
  int drawn = 0;
  // A dropped stream (e.g. the coordinator restarted) is resumed after the
  // last event seen, for up to this long.
  const absl::Duration reconnect_for =
      absl::Seconds(std::max<int64_t>(c.timeout_s, 60));
  absl::Time last_ok = absl::Now();
  auto redraw = [&]() {
    if (!tty) return;
    for (int i = 0; i < drawn; ++i) out << "\x1b[1A\x1b[2K";
    drawn = 0;
    out << "\x1b[1m" << job_id << "  " << ShortJobState(state) << "\x1b[0m\n";
    ++drawn;
    for (const auto& [phase, shown] : phases) {
      lft::v1::PhaseProgress p = shown;
      if (IsTerminal(state)) {  // nothing is running any more
        p.clear_eta_seconds();
        p.clear_units_per_second();
      }
      out << "  " << absl::StrFormat("%-8s", PhaseName(p.phase()))
          << FormatPhaseProgress(p, true) << "\n";
      ++drawn;
    }
    out.flush();
  };
  while (true) {
    lft::v1::WatchJobRequest req;
    req.set_job_id(job_id);
    req.set_after_sequence(after);
    grpc::ClientContext ctx;
    c.Prepare(&ctx, /*deadline=*/false);
    std::unique_ptr<grpc::ClientReader<lft::v1::JobEvent>> reader(
        c.stub->Watch(&ctx, req));
    lft::v1::JobEvent e;
    while (reader->Read(&e)) {
      last_ok = absl::Now();
      after = e.sequence();
      state = e.state();
      // Phases after the event's state have not started as of this event.
      for (auto it = phases.begin(); it != phases.end();) {
        it = it->first > static_cast<int>(state) && !IsTerminal(state)
                 ? phases.erase(it)
                 : std::next(it);
      }
      if (e.has_progress()) phases[e.progress().phase()] = e.progress();
      const std::string when = absl::FormatTime(
          "%H:%M:%S", absl::FromUnixMillis(e.unix_ms()), absl::UTCTimeZone());
      if (tty) {
        if (!e.message().empty()) {
          // Events carry the current phase only; refresh every phase's bar
          // from the job on state changes and other messages.
          grpc::ClientContext gctx;
          c.Prepare(&gctx);
          lft::v1::GetJobRequest greq;
          greq.set_job_id(job_id);
          lft::v1::GetJobResponse gresp;
          // Only while the job is still in this event's state: a replayed
          // old event must not show the bars of later phases.
          if (c.stub->Get(&gctx, greq, &gresp).ok() &&
              gresp.job().state() == e.state()) {
            for (const auto& p : gresp.job().progress()) phases[p.phase()] = p;
          }
          for (int i = 0; i < drawn; ++i) out << "\x1b[1A\x1b[2K";
          drawn = 0;
          out << when << "  " << e.message() << "\n";
        }
        redraw();
      } else {
        out << when << " " << job_id << " " << ShortJobState(e.state());
        if (e.has_progress() && e.progress().phase() == e.state()) {
          out << " " << PhaseName(e.progress().phase()) << " "
              << FormatPhaseProgress(e.progress(), false);
        }
        if (!e.message().empty()) out << " | " << e.message();
        out << "\n";
        out.flush();
      }
    }
    grpc::Status s = reader->Finish();
    if (IsTerminal(state)) {
      if (state == lft::v1::JOB_STATE_SUCCEEDED) return kExitOk;
      grpc::ClientContext gctx;
      c.Prepare(&gctx);
      lft::v1::GetJobRequest greq;
      greq.set_job_id(job_id);
      lft::v1::GetJobResponse gresp;
      if (c.stub->Get(&gctx, greq, &gresp).ok() &&
          !gresp.job().error().empty()) {
        err << "lftctl: job " << job_id << " " << ShortJobState(state) << ": "
            << OneLine(gresp.job().error()) << "\n";
      } else {
        err << "lftctl: job " << job_id << " " << ShortJobState(state) << "\n";
      }
      return kExitJobFailed;
    }
    // A coordinator going down shows as UNAVAILABLE (crash) or CANCELLED
    // (clean shutdown, e.g. a restart): both are worth reconnecting for.
    if (!s.ok() && s.error_code() != grpc::StatusCode::UNAVAILABLE &&
        s.error_code() != grpc::StatusCode::CANCELLED) {
      return Report(FromGrpcStatus(s), err);
    }
    if (absl::Now() - last_ok > reconnect_for) {
      return Report(s.ok() ? absl::UnavailableError("watch stream ended early")
                           : FromGrpcStatus(s),
                    err);
    }
    // Reconnect now rather than after gRPC's back-off.
    c.channel->WaitForConnected(std::chrono::system_clock::now() +
                                std::chrono::seconds(1));
  }
}

// Names starting with "report" are evaluation reports; pull without NAME
// takes the newest of the others (a training checkpoint).
// Trainer checkpoints are IsTrainingCheckpoint (latent-store/
// checkpoint_names.h); everything else a job stores (report.json, report.md,
// loss.png, kl_vs_k.png) is an evaluation artifact.

std::string FormatUnixMs(int64_t ms) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMillis(ms),
                          absl::UTCTimeZone());
}

// Adds the first `bytes` bytes of `path` to `sha`. The errno status if the
// file cannot be read; DataLoss if it is shorter.
absl::Status HashFilePrefix(const std::string& path, uint64_t bytes,
                            EVP_MD_CTX* sha) {
  std::FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr)
    return ErrnoToStatus(errno, absl::StrCat("reading ", path));
  std::string buffer(1 << 20, '\0');
  uint64_t left = bytes;
  while (left > 0) {
    const size_t want =
        static_cast<size_t>(std::min<uint64_t>(left, buffer.size()));
    const size_t got = std::fread(buffer.data(), 1, want, file);
    if (got == 0) break;
    EVP_DigestUpdate(sha, buffer.data(), got);
    left -= got;
  }
  std::fclose(file);
  if (left > 0) {
    return absl::DataLossError(
        absl::StrCat(path, " is shorter than ", bytes, " bytes"));
  }
  return absl::OkStatus();
}

std::string HexDigest(EVP_MD_CTX* sha) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(sha, digest, &len);
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

struct PullTarget {
  std::unique_ptr<lft::v1::CheckpointService::Stub> stub;
  std::string token;
  std::string where;  // "store HOST:PORT" or "coordinator HOST:PORT"
  absl::Time deadline;

  void Prepare(grpc::ClientContext* ctx) const {
    AttachBearerToken(ctx, token);
    ctx->set_deadline(absl::ToChronoTime(deadline));
  }
};

// Appends blob `want` of `job` to `partial` from `offset` (its current
// size) on, checking each chunk's place and the blob's identity.
absl::Status DownloadFrom(const PullTarget& t, const std::string& job,
                          const lft::v1::CheckpointInfo& want,
                          const std::string& partial, uint64_t offset) {
  std::FILE* file = std::fopen(partial.c_str(), offset > 0 ? "ab" : "wb");
  if (file == nullptr) {
    return ErrnoToStatus(errno, absl::StrCat("--out: cannot create ", partial));
  }
  lft::v1::PullCheckpointRequest req;
  req.set_job_id(job);
  req.set_name(want.name());
  req.set_offset(offset);
  grpc::ClientContext ctx;
  t.Prepare(&ctx);
  std::unique_ptr<grpc::ClientReader<lft::v1::CheckpointChunk>> reader(
      t.stub->Pull(&ctx, req));
  lft::v1::CheckpointChunk chunk;
  absl::Status s;
  bool first = true;
  uint64_t position = offset;
  while (s.ok() && reader->Read(&chunk)) {
    if (first) {
      first = false;
      if (absl::AsciiStrToLower(chunk.sha256()) !=
              absl::AsciiStrToLower(want.sha256()) ||
          chunk.total_bytes() != want.bytes()) {
        // The blob was replaced between the listing and the download.
        s = absl::AbortedError(absl::StrCat(
            "blob '", want.name(),
            "' changed during the download (listed "
            "sha256 ",
            want.sha256(), ", now ", chunk.sha256(), "); pull again"));
        break;
      }
    }
    if (chunk.offset() != position) {
      s = absl::DataLossError(
          absl::StrCat("blob '", want.name(), "': a chunk for offset ",
                       chunk.offset(), " arrived at offset ", position));
      break;
    }
    if (std::fwrite(chunk.data().data(), 1, chunk.data().size(), file) !=
        chunk.data().size()) {
      s = ErrnoToStatus(errno, absl::StrCat("writing ", partial));
      break;
    }
    position += chunk.data().size();
  }
  if (!s.ok()) ctx.TryCancel();
  while (!s.ok() && reader->Read(&chunk)) {
  }
  const grpc::Status finish = reader->Finish();
  if (s.ok()) s = Annotate(FromGrpcStatus(finish), t.where);
  if (std::fflush(file) != 0 || fsync(fileno(file)) != 0) {
    if (s.ok()) s = ErrnoToStatus(errno, absl::StrCat("writing ", partial));
  }
  std::fclose(file);
  if (s.ok() && position != want.bytes()) {
    s = absl::UnavailableError(absl::StrCat(t.where, ": the download of '",
                                            want.name(), "' ended at byte ",
                                            position, " of ", want.bytes()));
  }
  return s;
}

// Failures worth resuming from the bytes already kept.
bool Resumable(const absl::Status& s) {
  return absl::IsUnavailable(s) || absl::IsAborted(s) || absl::IsCancelled(s) ||
         absl::IsResourceExhausted(s);
}

uint64_t FileSize(const std::string& path) {
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<uint64_t>(size);
}

int Pull(const Flags& f, std::ostream& out, std::ostream& err) {
  const std::vector<std::string>& pos = f.positional();
  if (pos.size() < 2 || pos.size() > 3 || (f.Has("list") && pos.size() != 2)) {
    return Usage("pull takes JOB [NAME], or JOB --list", err);
  }
  const std::string& job = pos[1];
  // CheckpointService of the store named by --store or $LFT_STORE_ADDRESS,
  // else of the coordinator (which relays from the job's store).
  std::string target = f.Get("store");
  if (target.empty()) {
    const char* env = std::getenv(kEnvStoreAddress);
    if (env != nullptr) target = env;
  }
  const bool via_store = !target.empty();
  if (!via_store) target = f.Get("server", kDefaultCoordinatorAddress);
  auto timeout = f.GetInt("timeout-s", 600);
  if (!timeout.ok() || *timeout <= 0)
    return Usage("--timeout-s must be a positive integer", err);
  ClientSecurityOptions cs;
  cs.tls_ca_path = f.Get("tls-ca");
  cs.insecure = f.Has("insecure");
  auto creds = MakeChannelCredentials(cs, target);
  if (!creds.ok()) return Usage(std::string(creds.status().message()), err);
  PullTarget t;
  // Default channel arguments on purpose: every message of the protocol
  // fits gRPC's default limits.
  t.stub =
      lft::v1::CheckpointService::NewStub(grpc::CreateChannel(target, *creds));
  t.token = TokenFromFlagOrEnv(f.Get("token"));
  t.where = absl::StrCat(via_store ? "store " : "coordinator ", target);
  t.deadline = absl::Now() + absl::Seconds(*timeout);

  lft::v1::ListJobCheckpointsRequest list_req;
  list_req.set_job_id(job);
  lft::v1::ListCheckpointsResponse list;
  {
    grpc::ClientContext ctx;
    t.Prepare(&ctx);
    absl::Status s = FromGrpcStatus(t.stub->List(&ctx, list_req, &list));
    if (!s.ok()) return Report(Annotate(s, t.where), err);
  }
  if (f.Has("list")) {
    out << absl::StrFormat("%-32s %12s %-64s %s\n", "NAME", "BYTES", "SHA256",
                           "CREATED");
    for (const lft::v1::CheckpointInfo& c : list.checkpoints()) {
      out << absl::StrFormat("%-32s %12d %-64s %s\n", c.name(), c.bytes(),
                             c.sha256(), FormatUnixMs(c.created_unix_ms()));
    }
    return kExitOk;
  }
  const lft::v1::CheckpointInfo* want = nullptr;
  if (pos.size() == 3) {
    for (const lft::v1::CheckpointInfo& c : list.checkpoints()) {
      if (c.name() == pos[2]) want = &c;
    }
    if (want == nullptr) {
      return Report(
          absl::NotFoundError(absl::StrCat(
              "job '", job, "' has no blob named '", pos[2], "' in ", t.where,
              " (lftctl pull ", job, " --list shows the names)")),
          err);
    }
  } else {
    for (const lft::v1::CheckpointInfo& c :
         list.checkpoints()) {  // oldest first
      if (IsTrainingCheckpoint(c.name()) &&
          (want == nullptr || c.created_unix_ms() >= want->created_unix_ms())) {
        want = &c;
      }
    }
    if (want == nullptr) {
      return Report(
          absl::NotFoundError(absl::StrCat(
              "job '", job, "' has no checkpoint in ", t.where, " yet")),
          err);
    }
  }
  const std::string path = f.Get("out", want->name());
  // Bytes land next to the destination, in a file named after the blob's
  // digest, and are renamed into place only once the digest matched: PATH
  // never holds a partial or corrupt blob, and a pull that stopped half-way
  // (network, Ctrl-C) resumes from the bytes it kept.
  const std::string partial =
      absl::StrCat(path, ".partial-", want->sha256().substr(0, 16));
  const uint64_t kept = std::min<uint64_t>(FileSize(partial), want->bytes());
  if (kept > 0) {
    out << "resuming " << want->name() << " from byte " << kept << " of "
        << want->bytes() << " (" << partial << ")\n";
  }
  absl::Status s;
  for (int attempt = 0;; ++attempt) {
    const uint64_t offset =
        std::min<uint64_t>(FileSize(partial), want->bytes());
    if (offset < FileSize(partial)) {
      std::error_code ec;  // a longer file than the blob: cut to its size
      std::filesystem::resize_file(partial, offset, ec);
    }
    s = DownloadFrom(t, job, *want, partial, offset);
    if (s.ok() || !Resumable(s) || attempt >= 4 || absl::Now() >= t.deadline) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(250 << attempt));
  }
  if (s.ok()) {
    // The digest covers every byte, the ones kept from an earlier run too.
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(
        EVP_MD_CTX_new(), &EVP_MD_CTX_free);
    EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
    s = HashFilePrefix(partial, want->bytes(), sha.get());
    const std::string hex = s.ok() ? HexDigest(sha.get()) : "";
    if (s.ok() && hex != absl::AsciiStrToLower(want->sha256())) {
      s = absl::DataLossError(absl::StrCat(
          "checkpoint '", want->name(), "' of job '", job, "' arrived as ",
          want->bytes(), " bytes with sha256 ", hex, " but the store recorded ",
          want->bytes(), " bytes with sha256 ", want->sha256(),
          kept > 0 ? " (the kept partial file was bad)" : ""));
    }
  }
  if (s.ok() && std::rename(partial.c_str(), path.c_str()) != 0) {
    s = ErrnoToStatus(errno, absl::StrCat("renaming ", partial, " to ", path));
  }
  if (!s.ok()) {
    if (Resumable(s) && FileSize(partial) > 0) {
      // Kept for the next run.
      s = Annotate(s, absl::StrCat(FileSize(partial), " of ", want->bytes(),
                                   " bytes kept in ", partial,
                                   "; run the same pull again to resume"));
    } else {
      std::remove(partial.c_str());
    }
    return Report(s, err);
  }
  out << path << "  " << want->bytes() << " bytes  sha256 "
      << absl::AsciiStrToLower(want->sha256()) << "\n";
  return kExitOk;
}
}  // namespace

int LftctlMain(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err, bool stdout_is_tty) {
  auto flags = Flags::Parse(
      args,
      {"server", "token", "tls-ca", "timeout-s", "name", "teacher", "corpus",
       "block", "method", "trainer-ranks", "max-steps", "sequence-length",
       "documents-per-shard", "request-id", "state", "store", "out"},
      {"insecure", "help", "json", "watch", "list", "force"});
  if (!flags.ok()) return Usage(std::string(flags.status().message()), err);
  if (flags->Has("help") || flags->positional().empty()) {
    (flags->Has("help") ? out : err) << kHelp;
    return flags->Has("help") ? kExitOk : kExitUsage;
  }
  if (flags->positional()[0] == "pull") return Pull(*flags, out, err);
  const std::string target = flags->Get("server", kDefaultCoordinatorAddress);
  ClientSecurityOptions cs;
  cs.tls_ca_path = flags->Get("tls-ca");
  cs.insecure = flags->Has("insecure");
  auto creds = MakeChannelCredentials(cs, target);
  if (!creds.ok()) return Usage(std::string(creds.status().message()), err);
  Client c;
  c.channel = MakeCoordinatorChannel(target, *creds);
  c.stub = lft::v1::JobService::NewStub(c.channel);
  c.token = TokenFromFlagOrEnv(flags->Get("token"));
  auto timeout = flags->GetInt("timeout-s", 10);
  if (!timeout.ok() || *timeout <= 0)
    return Usage("--timeout-s must be a positive integer", err);
  c.timeout_s = *timeout;

  const std::string& command = flags->positional()[0];
  const std::vector<std::string>& pos = flags->positional();
  if (command == "submit") return Submit(c, *flags, out, err, stdout_is_tty);
  if (command == "get" || command == "watch" || command == "cancel" ||
      command == "delete") {
    if (pos.size() != 2)
      return Usage(absl::StrCat(command, " takes one JOB id"), err);
  }
  if (command == "get") {
    lft::v1::GetJobRequest req;
    req.set_job_id(pos[1]);
    lft::v1::GetJobResponse resp;
    grpc::ClientContext ctx;
    c.Prepare(&ctx);
    grpc::Status s = c.stub->Get(&ctx, req, &resp);
    if (!s.ok()) return Report(FromGrpcStatus(s), err);
    if (flags->Has("json")) {
      std::string json;
      google::protobuf::util::JsonPrintOptions o;
      o.add_whitespace = true;
      (void)google::protobuf::util::MessageToJsonString(resp.job(), &json, o);
      out << json;
    } else {
      out << FormatJob(resp.job());
    }
    return kExitOk;
  }
  if (command == "list") {
    lft::v1::ListJobsRequest req;
    if (flags->Has("state")) {
      auto st = ParseState(flags->Get("state"));
      if (!st.ok()) return Usage(std::string(st.status().message()), err);
      req.add_states(*st);
    }
    out << absl::StrFormat("%-8s %-24s %-11s %s\n", "ID", "NAME", "STATE",
                           "PROGRESS");
    while (true) {
      lft::v1::ListJobsResponse resp;
      grpc::ClientContext ctx;
      c.Prepare(&ctx);
      grpc::Status s = c.stub->List(&ctx, req, &resp);
      if (!s.ok()) return Report(FromGrpcStatus(s), err);
      for (const auto& job : resp.jobs()) {
        std::string progress;
        for (const auto& p : job.progress()) {
          if (p.phase() == job.state())
            progress = FormatPhaseProgress(p, false);
        }
        out << absl::StrFormat("%-8s %-24s %-11s %s\n", job.id(),
                               job.spec().name(), ShortJobState(job.state()),
                               progress);
      }
      if (resp.next_page_token().empty()) break;
      req.set_page_token(resp.next_page_token());
    }
    return kExitOk;
  }
  if (command == "cancel") {
    lft::v1::CancelJobRequest req;
    req.set_job_id(pos[1]);
    lft::v1::CancelJobResponse resp;
    grpc::ClientContext ctx;
    c.Prepare(&ctx);
    grpc::Status s = c.stub->Cancel(&ctx, req, &resp);
    if (!s.ok()) return Report(FromGrpcStatus(s), err);
    out << resp.job().id() << " " << ShortJobState(resp.job().state()) << "\n";
    return kExitOk;
  }
  if (command == "delete") {
    lft::v1::DeleteJobRequest req;
    req.set_job_id(pos[1]);
    req.set_force(flags->Has("force"));
    lft::v1::DeleteJobResponse resp;
    grpc::ClientContext ctx;
    // Deleting compacts the store's key range: give it more than a get.
    c.Prepare(&ctx);
    ctx.set_deadline(std::chrono::system_clock::now() +
                     std::chrono::seconds(std::max<int64_t>(c.timeout_s, 120)));
    grpc::Status s = c.stub->Delete(&ctx, req, &resp);
    if (!s.ok()) return Report(FromGrpcStatus(s), err);
    out << resp.job().id() << " " << ShortJobState(resp.job().state())
        << " data deleted\n";
    return kExitOk;
  }
  if (command == "watch") return Watch(c, pos[1], out, err, stdout_is_tty);
  return Usage(absl::StrCat("unknown command \"", command, "\""), err);
}

}  // namespace lft
