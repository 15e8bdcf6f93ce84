#include "worker/trainer/trainer_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status.h"
#include "worker/collective/collective.h"
#include "worker/model/lr_schedule.h"

namespace lft {
namespace {

constexpr char kCheckpointPrefix[] = "step-";
// The cosine schedule ends at this fraction of the learning rate.
constexpr double kMinLearningRateRatio = 0.1;

// Step of a "step-N" name; nullopt for other names.
std::optional<uint64_t> StepOf(absl::string_view name) {
  if (!absl::StartsWith(name, kCheckpointPrefix)) return std::nullopt;
  uint64_t step = 0;
  if (!absl::SimpleAtoi(name.substr(sizeof(kCheckpointPrefix) - 1), &step))
    return std::nullopt;
  return step;
}

// What rank 0 publishes through the coordinator: "<length>:<resume
// checkpoint name><communicator id>" (the id may be any bytes).
std::string PackRendezvousPayload(const std::string& resume,
                                  const std::string& id) {
  return absl::StrCat(resume.size(), ":", resume, id);
}

bool UnpackRendezvousPayload(const std::string& payload, std::string* resume,
                             std::string* id) {
  const size_t colon = payload.find(':');
  size_t n = 0;
  if (colon == std::string::npos ||
      !absl::SimpleAtoi(payload.substr(0, colon), &n) ||
      colon + 1 + n > payload.size()) {
    return false;
  }
  *resume = payload.substr(colon + 1, n);
  *id = payload.substr(colon + 1 + n);
  return true;
}

int CudaOrdinal(const std::string& device) {
  int n = 0;
  const size_t colon = device.find(':');
  if (colon != std::string::npos)
    (void)absl::SimpleAtoi(device.substr(colon + 1), &n);
  return n;
}

struct TrainerMetrics {
  prometheus::Gauge* loss = nullptr;
  prometheus::Counter* steps = nullptr;
  prometheus::Counter* tokens = nullptr;
  prometheus::Histogram* step_seconds = nullptr;
  prometheus::Counter* input_wait = nullptr;
  prometheus::Counter* allreduce = nullptr;
  prometheus::Counter* checkpoints = nullptr;
};

TrainerMetrics MakeMetrics(MetricsRegistry* r, const std::string& job) {
  TrainerMetrics m;
  if (r == nullptr) return m;
  const MetricLabels l = {{"job", job}, {"role", "trainer"}};
  m.loss = &r->Gauge("lft_trainer_loss", "Latest global mean training loss", l);
  m.steps = &r->Counter("lft_trainer_steps_total", "Optimizer steps taken", l);
  m.tokens = &r->Counter("lft_trainer_tokens_total",
                         "Training tokens consumed by this rank", l);
  m.step_seconds = &r->Histogram("lft_trainer_step_seconds",
                                 "Wall time of one optimizer step",
                                 {0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30}, l);
  m.input_wait = &r->Counter("lft_trainer_input_wait_seconds_total",
                             "Time spent waiting for latent pairs", l);
  m.allreduce = &r->Counter("lft_trainer_allreduce_seconds_total",
                            "Time spent in the gradient all-reduce", l);
  m.checkpoints = &r->Counter("lft_trainer_checkpoints_total",
                              "Checkpoints written (rank 0)", l);
  return m;
}

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t)
      .count();
}

}  // namespace

std::string TrainingCheckpointName(uint64_t step) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%s%010llu", kCheckpointPrefix,
                static_cast<unsigned long long>(step));
  return buf;
}

TrainerRunner::TrainerRunner(TrainerRunnerOptions options)
    : options_(std::move(options)) {}

absl::StatusOr<TaskResult> TrainerRunner::Run(const lft::v1::Task& task,
                                              TaskContext* context) {
  if (!task.has_training()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.task_id(), " is not a training task"));
  }
  if (options_.stores == nullptr || !options_.engine_factory) {
    return absl::FailedPreconditionError(
        "trainer runner has no store pool or engine factory");
  }
  const lft::v1::JobSpec& spec = task.spec();
  const lft::v1::TrainingSpec& ts = spec.training();
  const lft::v1::TrainingTask& tt = task.training();
  const std::string& job = task.job_id();
  const uint32_t world = std::max<uint32_t>(1, tt.world_size());
  const uint32_t rank = tt.rank();
  const uint64_t batch = ts.global_batch_sequences();
  const std::string where =
      absl::StrCat("job ", job, " trainer rank ", rank, " of ", world,
                   " (generation ", tt.generation(), ")");
  if (batch == 0 || batch % world != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": global_batch_sequences ", batch,
                     " is not a positive multiple of the ", world, " ranks"));
  }
  const uint64_t per_rank = batch / world;
  const uint64_t seq_len = std::max<uint32_t>(1, spec.sequence_length());
  const uint64_t total_steps =
      ts.max_steps() > 0
          ? ts.max_steps()
          : (ts.max_tokens() + batch * seq_len - 1) / (batch * seq_len);
  const uint64_t every = std::max<uint32_t>(1, ts.checkpoint_every_steps());
  const bool cuda = options_.device.rfind("cuda", 0) == 0;
  auto cancelled = [&]() -> absl::Status {
    return absl::CancelledError(
        absl::StrCat(where, ": ", context->cancellation().reason()));
  };

  LFT_ASSIGN_OR_RETURN(PairStore * store,
                       options_.stores->Get(task.store_address()));
  auto engine_or = options_.engine_factory(spec, options_.device);
  if (!engine_or.ok()) return Annotate(engine_or.status(), where);
  std::unique_ptr<TrainingEngine> engine = std::move(*engine_or);

  // ---- Resume point: rank 0 picks the newest checkpoint (the task's or a
  // newer step-N in the store) and sends its name with the communicator id
  // through the coordinator, so every rank loads the same one whatever the
  // transport (NCCL broadcasts device memory only).
  TrainingPosition pos;
  std::string resume;
  if (rank == 0) {
    resume = tt.resume_checkpoint();
    auto list = store->ListCheckpoints(job);
    if (list.ok()) {
      uint64_t best = StepOf(resume).value_or(0);
      for (const CheckpointInfo& c : *list) {
        auto s = StepOf(c.name);
        if (s.has_value() && *s > best) {
          best = *s;
          resume = c.name;
        }
      }
    } else if (!absl::IsNotFound(list.status())) {
      return Annotate(list.status(),
                      absl::StrCat(where, ": listing checkpoints"));
    }
  }
  // ---- Form the group.
  std::unique_ptr<GlooRendezvousHost> host;
  std::string my_id;
  if (rank == 0 && world > 1) {
    if (cuda) {
      LFT_ASSIGN_OR_RETURN(my_id, NewNcclCommunicatorId());
    } else {
      auto h = StartGlooRendezvous(options_.listen_host);
      if (!h.ok()) return Annotate(h.status(), where);
      host = std::move(*h);
      my_id = host->communicator_id();
    }
  } else if (rank == 0) {
    my_id = "single-rank";
  }
  auto rv = context->Rendezvous(rank == 0 ? PackRendezvousPayload(resume, my_id)
                                          : "");
  if (!rv.ok()) return Annotate(rv.status(), where);
  std::string communicator_id;
  if (!UnpackRendezvousPayload(rv->communicator_id, &resume,
                               &communicator_id)) {
    return absl::InternalError(
        absl::StrCat(where, ": malformed rendezvous payload from rank 0 (",
                     rv->communicator_id.size(), " bytes)"));
  }
  std::unique_ptr<Collective> collective;
  if (world > 1) {
    absl::StatusOr<std::unique_ptr<Collective>> c;
    const auto timeout = std::chrono::milliseconds(
        absl::ToInt64Milliseconds(options_.collective_timeout));
    if (cuda) {
      NcclOptions no;
      no.rank = static_cast<int>(rank);
      no.world_size = static_cast<int>(world);
      no.communicator_id = communicator_id;
      no.device = CudaOrdinal(options_.device);
      no.timeout = timeout;
      c = CreateNcclCollective(no);
    } else {
      GlooOptions go;
      go.rank = static_cast<int>(rank);
      go.world_size = static_cast<int>(world);
      go.communicator_id = communicator_id;
      go.listen_host = options_.listen_host;
      go.timeout = timeout;
      go.group_prefix = absl::StrCat(job, "-g", tt.generation());
      c = CreateGlooCollective(go);
    }
    if (!c.ok()) return Annotate(c.status(), absl::StrCat(where, ": joining"));
    collective = std::move(*c);
  }
  LogInfo("trainer group formed", {{"job", job},
                                   {"rank", static_cast<int64_t>(rank)},
                                   {"world", static_cast<int64_t>(world)},
                                   {"generation", tt.generation()}});

  // A failed collective usually means a peer died: give the coordinator
  // time to notice and revoke this task, so the group re-forms once.
  auto collective_failed = [&](const absl::Status& s) -> absl::Status {
    collective->Abort();
    if (context->cancellation().WaitFor(options_.regroup_wait))
      return cancelled();
    return Annotate(s, where);
  };

  if (!resume.empty()) {
    auto blob = store->GetCheckpoint(job, resume);
    if (!blob.ok())
      return Annotate(blob.status(),
                      absl::StrCat(where, ": resuming from ", resume));
    auto restored = engine->RestoreCheckpoint(*blob);
    if (!restored.ok())
      return Annotate(restored.status(),
                      absl::StrCat(where, ": resuming from ", resume));
    pos = std::move(*restored);
    LogInfo("trainer resumed",
            {{"job", job}, {"checkpoint", resume}, {"step", pos.step}});
  }

  TrainerMetrics metrics = MakeMetrics(options_.metrics, job);
  ProgressUpdate progress;
  progress.steps_done = pos.step;
  progress.tokens_done = pos.tokens;
  progress.checkpoint = resume;
  if (!pos.losses.empty()) progress.loss = pos.losses.back();
  context->ReportProgress(progress);

  std::unique_ptr<PairReader> reader;
  uint64_t epoch_pairs = 0;     // usable pairs of the current epoch
  uint64_t epoch_snapshot = 0;  // pairs stored when it began
  std::vector<LatentPairRecord> pairs(per_rank);
  const auto run_start = std::chrono::steady_clock::now();
  const uint64_t start_step = pos.step;
  std::string last_checkpoint = resume;

  while (pos.step < total_steps) {
    if (context->cancellation().cancelled()) return cancelled();
    const auto step_start = std::chrono::steady_clock::now();
    // ---- This rank's share of the global batch.
    if (reader == nullptr) {
      uint64_t stored = 0;
      // Streaming: a new epoch waits (boundedly: extraction may be over)
      // for at least one global batch of pairs it has not seen, so training
      // follows the teachers instead of cycling over the first few pairs.
      const absl::Time fresh_deadline = absl::Now() + options_.streaming_wait;
      while (true) {
        auto stats = store->Stats(job);
        if (stats.ok()) stored = stats->pairs;
        const bool fresh = !ts.streaming() || epoch_snapshot == 0 ||
                           stored >= epoch_snapshot + batch ||
                           absl::Now() >= fresh_deadline;
        if (stats.ok() && stored >= batch && fresh) break;
        if (!stats.ok() && !absl::IsNotFound(stats.status()))
          return Annotate(stats.status(), where);
        if (!ts.streaming() && stored < batch) {
          return absl::FailedPreconditionError(
              absl::StrCat(where, ": the store holds ", stored,
                           " pairs, fewer than one global batch of ", batch,
                           " sequences; extract more text or lower "
                           "training.global_batch_sequences"));
        }
        if (context->cancellation().WaitFor(absl::Milliseconds(200)))
          return cancelled();
      }
      epoch_pairs = stored / batch * batch;
      epoch_snapshot = stored;
      if (pos.pairs_consumed + batch > epoch_pairs) {
        ++pos.epoch;
        pos.pairs_consumed = 0;
      }
      ScanOptions so;
      so.partition = rank;
      so.partitions = world;
      so.shuffle = true;
      so.seed = ts.seed();
      so.epoch = pos.epoch;
      so.start_block = pos.pairs_consumed;
      so.block_pairs = 1;
      so.readahead_pairs = static_cast<uint32_t>(
          std::min<uint64_t>(64, std::max<uint64_t>(4, 2 * per_rank)));
      auto r = store->Scan(job, so);
      if (!r.ok())
        return Annotate(r.status(), absl::StrCat(where, ": reading pairs"));
      reader = std::move(*r);
    }
    uint64_t tokens = 0;
    for (uint64_t i = 0; i < per_rank; ++i) {
      auto more = reader->Next(&pairs[i]);
      if (!more.ok())
        return Annotate(more.status(), absl::StrCat(where, ": reading pairs"));
      if (!*more) {
        return absl::DataLossError(
            absl::StrCat(where, ": the store's pairs ran out within epoch ",
                         pos.epoch, " (were pairs deleted while training?)"));
      }
      tokens += pairs[i].tokens;
    }
    if (metrics.input_wait != nullptr)
      metrics.input_wait->Increment(Since(step_start));

    // ---- Gradients, one all-reduce, update.
    absl::Status s = engine->ComputeGradients(pairs, pos.step);
    if (!s.ok()) return Annotate(s, absl::StrCat(where, ": step ", pos.step));
    if (collective != nullptr) {
      const auto t0 = std::chrono::steady_clock::now();
      s = collective->AllReduceSum(engine->gradient_data(),
                                   engine->gradient_count(),
                                   engine->gradient_dtype());
      if (!s.ok()) return collective_failed(s);
      if (metrics.allreduce != nullptr) metrics.allreduce->Increment(Since(t0));
    }
    const double lr = WarmupCosineLr(
        ts.learning_rate(), kMinLearningRateRatio, ts.warmup_steps(),
        static_cast<int64_t>(total_steps), static_cast<int64_t>(pos.step));
    auto loss =
        engine->ApplyGradients(1.0 / world, ts.gradient_clip_norm(), lr);
    if (!loss.ok())
      return Annotate(loss.status(), absl::StrCat(where, ": step ", pos.step));
    if (!std::isfinite(*loss)) {
      return absl::InternalError(
          absl::StrCat(where, ": loss became ", *loss, " at step ", pos.step,
                       "; lower training.learning_rate or check the pairs"));
    }
    ++pos.step;
    pos.pairs_consumed += batch;
    pos.tokens += tokens * world;
    pos.losses.push_back(*loss);
    if (pos.pairs_consumed + batch > epoch_pairs) reader.reset();
    if (ts.streaming() && rank == 0) {
      absl::Status ack = store->AckConsumed(job, batch);
      if (!ack.ok())
        return Annotate(ack, absl::StrCat(where, ": acknowledging pairs"));
    }

    // ---- Checkpoint.
    if (pos.step % every == 0 || pos.step == total_steps) {
      const std::string name = TrainingCheckpointName(pos.step);
      if (rank == 0) {
        auto blob = engine->SaveCheckpoint(pos, world);
        if (!blob.ok()) return Annotate(blob.status(), where);
        auto info = store->PutCheckpoint(job, name, *blob, "");
        if (!info.ok())
          return Annotate(info.status(),
                          absl::StrCat(where, ": storing ", name));
        if (metrics.checkpoints != nullptr) metrics.checkpoints->Increment();
        auto list = store->ListCheckpoints(job);
        if (list.ok()) {
          std::vector<std::string> steps;
          for (const CheckpointInfo& c : *list)
            if (StepOf(c.name).has_value()) steps.push_back(c.name);
          std::sort(steps.begin(), steps.end());
          for (size_t i = 0; i + options_.keep_checkpoints < steps.size(); ++i)
            (void)store->DeleteCheckpoint(job, steps[i]);
        }
      }
      last_checkpoint = name;
      progress.checkpoint = name;
    }

    if (metrics.loss != nullptr) {
      metrics.loss->Set(*loss);
      metrics.steps->Increment();
      metrics.tokens->Increment(static_cast<double>(tokens));
      metrics.step_seconds->Observe(Since(step_start));
    }
    progress.steps_done = pos.step;
    progress.tokens_done = pos.tokens;
    progress.loss = *loss;
    const double secs = Since(run_start);
    progress.tokens_per_second =
        secs > 0 ? static_cast<double>(pos.step - start_step) * batch *
                       static_cast<double>(seq_len) / secs
                 : 0;
    if (!context->ReportProgress(progress)) return cancelled();
    if (options_.pause_per_step > absl::ZeroDuration() &&
        context->cancellation().WaitFor(options_.pause_per_step)) {
      return cancelled();
    }
  }
  if (ts.streaming() && rank == 0 && !pairs.empty() && pairs[0].hidden > 0) {
    // Training is over: lift the back-pressure so teachers still extracting
    // finish their shards instead of waiting for a consumer.
    LogInfo("streaming training done; lifting back-pressure", {{"job", job}});
    JobConfig open;
    open.hidden = pairs[0].hidden;
    open.codec = pairs[0].codec;
    open.max_pending_pairs = 0;
    absl::Status s = store->CreateJob(job, open);
    if (!s.ok())
      return Annotate(s, absl::StrCat(where, ": releasing back-pressure"));
  }
  LogInfo("training finished", {{"job", job},
                                {"rank", static_cast<int64_t>(rank)},
                                {"step", pos.step},
                                {"checkpoint", last_checkpoint}});
  TaskResult result;
  result.checkpoint = last_checkpoint;
  return result;
}

}  // namespace lft
