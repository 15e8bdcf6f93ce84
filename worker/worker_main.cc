// lft-worker: the real worker process. Under the WorkerAgent (registration,
// heartbeats, leases, progress) it runs TeacherExtractionRunner
// (--role=teacher), TrainerRunner (--role=trainer) or EvaluationRunner
// (--role=evaluator).
#include <signal.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/flags.h"
#include "common/base/log.h"
#include "common/base/prometheus_metrics.h"
#include "common/rpc/auth.h"
#include "latent-store/pair_store_pool.h"
#include "worker/agent/worker_process.h"
#include "worker/evaluator/evaluation_runner.h"
#include "worker/teacher/teacher_extraction_runner.h"
#include "worker/trainer/engine/flow_training_engine.h"
#include "worker/trainer/trainer_runner.h"

namespace {

constexpr char kUsage[] =
    R"(usage: lft-worker --role teacher|trainer|evaluator [flags]

  --role ROLE               teacher, trainer or evaluator
  --coordinator HOST:PORT   (default 127.0.0.1:7070)
  --token TOKEN             bearer token (or env LFT_AUTH_TOKEN), sent to
                            the coordinator and the latent store
  --tls-ca PEM              CA of the coordinator's and store's certificates
  --insecure-loopback       plaintext to a loopback coordinator and store
  --name NAME               hostname reported at Register (default host-pid)
  --store-db DIR            embedded latent store, for tasks that name no
                            store address (the coordinator has no
                            --store-address)
  --device cpu|cuda[:N]     (default cpu)
  --threads N               intra-op CPU threads (default: LibTorch's)
  --batch-sequences N       sequences per teacher / evaluator forward
                            (default 8)
  --listen-host HOST        trainer: address its Gloo endpoints listen on
                            (default 127.0.0.1; peers must reach it)
  --metrics-port N          serve Prometheus /metrics on port N (0 picks one)
  --metrics-host HOST       address for /metrics (default 127.0.0.1; 0.0.0.0
                            lets a Prometheus on another host scrape it)
  --max-tasks N             exit after N tasks (default 0 = never)
  --keep-checkpoints N      trainer: step-N checkpoints kept per job, older
                            ones deleted (default 3; more give the
                            evaluator's training curve more points)
  --test-pause-ms-per-batch N  tests only: sleep N ms after every teacher
                            batch or trainer step, and before an
                            evaluator writes its results
)";

// The latent store is reached with the coordinator's credentials (every
// role's runner takes these).
lft::StoreClientCredentials StoreCredentials(const lft::Flags& flags) {
  lft::StoreClientCredentials c;
  c.token = lft::TokenFromFlagOrEnv(flags.Get("token"));
  c.tls_ca_path = flags.Get("tls-ca");
  c.insecure = flags.Has("insecure-loopback");
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  lft::SetLogComponent("worker");
  const sigset_t stop = lft::BlockStopSignals();
  std::vector<std::string> args(argv + 1, argv + argc);
  auto flags = lft::Flags::Parse(
      args,
      {"role", "coordinator", "token", "tls-ca", "name", "store-db", "device",
       "threads", "batch-sequences", "metrics-port", "metrics-host",
       "max-tasks", "listen-host", "keep-checkpoints",
       "test-pause-ms-per-batch"},
      {"help", "insecure-loopback"});
  if (!flags.ok() || flags->Has("help")) {
    if (!flags.ok())
      std::fprintf(stderr, "%s\n",
                   std::string(flags.status().message()).c_str());
    std::fputs(kUsage, flags.ok() ? stdout : stderr);
    return flags.ok() ? 0 : 2;
  }
  const std::string role = flags->Get("role");
  if (role != "teacher" && role != "trainer" && role != "evaluator") {
    std::fprintf(stderr,
                 "--role: \"%s\" is not teacher, trainer or evaluator\n%s",
                 role.c_str(), kUsage);
    return 2;
  }
  auto threads = flags->GetInt("threads", 0);
  auto batch = flags->GetInt("batch-sequences", 8);
  auto metrics_port = flags->GetInt("metrics-port", -1);
  auto max_tasks = flags->GetInt("max-tasks", 0);
  auto pause_ms = flags->GetInt("test-pause-ms-per-batch", 0);
  auto keep = flags->GetInt("keep-checkpoints", 3);
  for (const auto* v :
       {&threads, &batch, &metrics_port, &max_tasks, &pause_ms, &keep}) {
    if (!v->ok()) {
      std::fprintf(stderr, "lft-worker: %s\n",
                   std::string(v->status().message()).c_str());
      return 2;
    }
  }
  if (*batch < 1) {
    std::fprintf(stderr, "lft-worker: --batch-sequences must be >= 1\n");
    return 2;
  }
  if (*keep < 1 || *keep > 1000000) {
    std::fprintf(stderr,
                 "lft-worker: --keep-checkpoints must be in [1, 1000000] (the "
                 "newest checkpoint is what a resumed group starts from)\n");
    return 2;
  }
  const std::string device = flags->Get("device", "cpu");
  if (device != "cpu" && device.rfind("cuda", 0) != 0) {
    std::fprintf(stderr, "lft-worker: --device \"%s\" is not cpu or cuda\n",
                 device.c_str());
    return 2;
  }
  if (device.rfind("cuda", 0) == 0 && !torch::cuda::is_available()) {
    std::fprintf(stderr, "lft-worker: --device %s but CUDA is not available\n",
                 device.c_str());
    return 2;
  }
  if (*threads > 0) torch::set_num_threads(static_cast<int>(*threads));

  lft::MetricsRegistry registry;
  std::unique_ptr<lft::MetricsHttpServer> metrics_server;
  if (*metrics_port >= 0) {
    auto server = lft::MetricsHttpServer::Start(
        flags->Get("metrics-host", "127.0.0.1"),
        static_cast<int>(*metrics_port), &registry);
    if (!server.ok()) {
      std::fprintf(stderr, "lft-worker: --metrics-port: %s\n",
                   std::string(server.status().message()).c_str());
      return 2;
    }
    metrics_server = std::move(*server);
    lft::LogInfo("metrics served", {{"port", metrics_server->port()}});
  }

  lft::WorkerAgentOptions o;
  o.info.set_role(role == "trainer"     ? lft::v1::WORKER_ROLE_TRAINER
                  : role == "evaluator" ? lft::v1::WORKER_ROLE_EVALUATOR
                                        : lft::v1::WORKER_ROLE_TEACHER);
  o.info.set_hostname(flags->Get("name", lft::DefaultWorkerName()));
  o.info.set_device(device);
  o.info.set_version("lft-worker");
  o.max_tasks = static_cast<uint64_t>(*max_tasks);

  lft::RemotePairStoreOptions remote;
  remote.credentials = StoreCredentials(*flags);
  lft::PairStorePool stores(flags->Get("store-db"), remote);
  std::unique_ptr<lft::TaskRunner> runner;
  if (role == "trainer") {
    lft::TrainerRunnerOptions to;
    to.device = device;
    to.stores = &stores;
    to.engine_factory = lft::NewFlowTrainingEngine;
    to.listen_host = flags->Get("listen-host", "127.0.0.1");
    to.metrics = &registry;
    to.pause_per_step = absl::Milliseconds(*pause_ms);
    to.keep_checkpoints = static_cast<uint32_t>(*keep);
    runner = std::make_unique<lft::TrainerRunner>(to);
  } else if (role == "evaluator") {
    lft::EvaluationRunnerOptions eo;
    eo.device = device;
    eo.stores = &stores;
    eo.batch_sequences = *batch;
    eo.metrics = &registry;
    eo.pause_before_outputs = absl::Milliseconds(*pause_ms);
    runner = std::make_unique<lft::EvaluationRunner>(eo);
  } else {
    lft::TeacherRunnerOptions ro;
    ro.device = device;
    ro.stores = &stores;
    ro.batch_sequences = *batch;
    ro.metrics = &registry;
    ro.pause_per_batch = absl::Milliseconds(*pause_ms);
    runner = std::make_unique<lft::TeacherExtractionRunner>(ro);
  }
  return lft::RunWorkerProcess("lft-worker", *flags, stop, runner.get(), o);
}
