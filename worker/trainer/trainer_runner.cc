#include "worker/trainer/trainer_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "latent-store/checkpoint_names.h"
#include "latent-store/prefetching_pair_reader.h"
#include "latent-store/retrying_pair_store.h"
#include "worker/collective/collective.h"
#include "worker/model/lr_schedule.h"

namespace lft {
namespace {

// The cosine schedule ends at this fraction of the learning rate.
constexpr double kMinLearningRateRatio = 0.1;
// Streaming windows are shuffled under ScanOptions::epoch = this | window,
// apart from the epochs of the shuffled passes.
constexpr uint64_t kStreamWindowEpochs = uint64_t{1} << 63;

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
  prometheus::Counter* input_prefetch = nullptr;
  prometheus::Counter* allreduce = nullptr;
  prometheus::Counter* checkpoints = nullptr;
  prometheus::Counter* model_flops = nullptr;
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
  m.input_prefetch =
      &r->Counter("lft_trainer_input_prefetch_seconds_total",
                  "Time spent reading the next step's pairs while the device "
                  "runs this one (overlapped: not a stall)",
                  l);
  m.allreduce = &r->Counter("lft_trainer_allreduce_seconds_total",
                            "Time spent in the gradient all-reduce", l);
  m.checkpoints = &r->Counter("lft_trainer_checkpoints_total",
                              "Checkpoints written (rank 0)", l);
  // rate(lft_trainer_model_flops_total) / peak FLOP/s is the rank's MFU
  // (docs/benchmarks.md, "Trainer").
  m.model_flops = &r->Counter(
      "lft_trainer_model_flops_total",
      "Model FLOPs (matmuls and attention, forward and backward) of the "
      "training tokens this rank consumed",
      l);
  return m;
}

double Since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t)
      .count();
}

// Gloo on CPUs, NCCL on GPUs.
class DeviceGroupTransport : public GroupTransport {
 public:
  DeviceGroupTransport(std::string device, std::string listen_host,
                       absl::Duration timeout)
      : device_(std::move(device)),
        listen_host_(std::move(listen_host)),
        timeout_(timeout) {}

  absl::StatusOr<std::string> CreateCommunicatorId() override {
    if (cuda()) return NewNcclCommunicatorId();
    LFT_ASSIGN_OR_RETURN(host_, StartGlooRendezvous(listen_host_));
    return host_->communicator_id();
  }

  absl::StatusOr<std::unique_ptr<Collective>> Join(
      uint32_t rank, uint32_t world, const std::string& communicator_id,
      const std::string& group) override {
    const auto timeout =
        std::chrono::milliseconds(absl::ToInt64Milliseconds(timeout_));
    if (cuda()) {
      NcclOptions no;
      no.rank = static_cast<int>(rank);
      no.world_size = static_cast<int>(world);
      no.communicator_id = communicator_id;
      no.device = CudaOrdinal(device_);
      no.timeout = timeout;
      return CreateNcclCollective(no);
    }
    GlooOptions go;
    go.rank = static_cast<int>(rank);
    go.world_size = static_cast<int>(world);
    go.communicator_id = communicator_id;
    go.listen_host = listen_host_;
    go.timeout = timeout;
    go.group_prefix = group;
    return CreateGlooCollective(go);
  }

 private:
  bool cuda() const { return device_.rfind("cuda", 0) == 0; }

  const std::string device_;
  const std::string listen_host_;
  const absl::Duration timeout_;
  std::unique_ptr<GlooRendezvousHost> host_;
};

// One Run of one rank, as named stages: FormGroup (communicator id,
// rendezvous, collective), Resume (the coordinator's checkpoint), then per
// step OpenReader (when the reader of the epoch or stream window is spent),
// ReadBatch, TrainStep (gradients, all-reduce, update), MaybeCheckpoint
// (store and retention) and ReportStep; Finish lifts the streaming
// back-pressure.
class TrainerSession {
 public:
  TrainerSession(const TrainerRunnerOptions& options, const lft::v1::Task& task,
                 TaskContext* context)
      : options_(options),
        task_(task),
        spec_(task.spec()),
        ts_(task.spec().training()),
        job_(task.job_id()),
        world_(std::max<uint32_t>(1, task.training().world_size())),
        rank_(task.training().rank()),
        batch_(task.spec().training().global_batch_sequences()),
        seq_len_(std::max<uint32_t>(1, task.spec().sequence_length())),
        every_(std::max<uint32_t>(
            1, task.spec().training().checkpoint_every_steps())),
        where_(absl::StrCat("job ", task.job_id(), " trainer rank ",
                            task.training().rank(), " of ", world_,
                            " (generation ", task.training().generation(),
                            ")")),
        context_(context) {}

  absl::StatusOr<TaskResult> Run() {
    if (batch_ == 0 || batch_ % world_ != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          where_, ": global_batch_sequences ", batch_,
          " is not a positive multiple of the ", world_, " ranks"));
    }
    per_rank_ = batch_ / world_;
    if (ts_.streaming()) {
      shards_ = task_.training().extraction_shards();
      if (shards_ == 0) {
        return absl::InvalidArgumentError(
            absl::StrCat(where_,
                         ": a streaming training task must name its job's "
                         "extraction_shards (is the coordinator older than the "
                         "worker?)"));
      }
      // The store's bound, in whole global batches (at least one).
      const uint64_t bound = ts_.streaming_buffer_pairs() > 0
                                 ? ts_.streaming_buffer_pairs()
                                 : 4 * batch_;
      window_ = std::max<uint64_t>(1, bound / batch_) * batch_;
    }
    total_steps_ =
        ts_.max_steps() > 0
            ? ts_.max_steps()
            : (ts_.max_tokens() + batch_ * seq_len_ - 1) / (batch_ * seq_len_);
    LFT_ASSIGN_OR_RETURN(PairStore * pooled,
                         options_.stores->Get(task_.store_address()));
    StoreRetryOptions retry;
    retry.give_up_after = options_.store_unavailable_wait;
    retry.description = absl::StrCat("latent store ", task_.store_address());
    retry.sleep = [this](absl::Duration d) {
      return context_->cancellation().WaitFor(d);
    };
    retrying_store_ = std::make_unique<RetryingPairStore>(pooled, retry);
    store_ = retrying_store_.get();
    auto engine = options_.engine_factory(spec_, options_.device);
    if (!engine.ok()) return Annotate(engine.status(), where_);
    engine_ = std::move(*engine);
    transport_ = options_.transport_factory ? options_.transport_factory()
                                            : NewDeviceGroupTransport(options_);

    LFT_RETURN_IF_ERROR(FormGroup());
    LFT_RETURN_IF_ERROR(Resume());
    if (rank_ == 0) {
      // What earlier runs of this job acknowledged (see TrainStep).
      auto stats = store_->Stats(job_);
      if (stats.ok()) store_consumed_ = stats->consumed;
    }
    metrics_ = MakeMetrics(options_.metrics, job_);
    progress_.steps_done = pos_.step;
    progress_.tokens_done = pos_.tokens;
    progress_.checkpoint = last_checkpoint_;
    if (!pos_.losses.empty()) progress_.loss = pos_.losses.back();
    context_->ReportProgress(progress_);

    pairs_.resize(per_rank_);
    next_pairs_.resize(per_rank_);
    run_start_ = std::chrono::steady_clock::now();
    start_step_ = pos_.step;
    while (pos_.step < total_steps_) {
      if (context_->cancellation().cancelled()) return Cancelled();
      const auto step_start = std::chrono::steady_clock::now();
      uint64_t tokens = 0;
      if (next_ready_) {  // read while the previous step ran
        std::swap(pairs_, next_pairs_);
        tokens = next_tokens_;
        next_ready_ = false;
      } else {
        if (reader_ == nullptr) LFT_RETURN_IF_ERROR(OpenReader());
        LFT_ASSIGN_OR_RETURN(tokens, ReadBatch(&pairs_));
        if (metrics_.input_wait != nullptr)
          metrics_.input_wait->Increment(Since(step_start));
      }
      LFT_ASSIGN_OR_RETURN(const double loss, TrainStep(tokens));
      LFT_RETURN_IF_ERROR(MaybeCheckpoint());
      LFT_RETURN_IF_ERROR(ReportStep(loss, tokens, step_start));
    }
    LFT_RETURN_IF_ERROR(Finish());
    TaskResult result;
    result.checkpoint = last_checkpoint_;
    return result;
  }

 private:
  absl::Status Cancelled() const {
    return absl::CancelledError(
        absl::StrCat(where_, ": ", context_->cancellation().reason()));
  }

  // Rank 0 creates the communicator id; the coordinator's Rendezvous
  // relays it (and the resume checkpoint it chose) to every rank; all join.
  absl::Status FormGroup() {
    std::string my_id;
    if (rank_ == 0 && world_ > 1) {
      auto id = transport_->CreateCommunicatorId();
      if (!id.ok()) return Annotate(id.status(), where_);
      my_id = *std::move(id);
    } else if (rank_ == 0) {
      my_id = "single-rank";
    }
    auto rv = context_->Rendezvous(my_id);
    if (!rv.ok()) return Annotate(rv.status(), where_);
    last_checkpoint_ = rv->resume_checkpoint;
    if (world_ > 1) {
      auto c = transport_->Join(
          rank_, world_, rv->communicator_id,
          absl::StrCat(job_, "-g", task_.training().generation()));
      if (!c.ok()) {
        return Annotate(c.status(), absl::StrCat(where_, ": joining"));
      }
      collective_ = std::move(*c);
    }
    LogInfo("trainer group formed",
            {{"job", job_},
             {"rank", static_cast<int64_t>(rank_)},
             {"world", static_cast<int64_t>(world_)},
             {"generation", task_.training().generation()}});
    return absl::OkStatus();
  }

  // Loads the checkpoint the coordinator named (none: start fresh).
  absl::Status Resume() {
    if (last_checkpoint_.empty()) return absl::OkStatus();
    const std::string what =
        absl::StrCat(where_, ": resuming from ", last_checkpoint_);
    auto blob = store_->GetCheckpoint(job_, last_checkpoint_);
    if (!blob.ok()) return Annotate(blob.status(), what);
    auto restored = engine_->RestoreCheckpoint(*blob);
    if (!restored.ok()) return Annotate(restored.status(), what);
    pos_ = std::move(*restored);
    LogInfo(
        "trainer resumed",
        {{"job", job_}, {"checkpoint", last_checkpoint_}, {"step", pos_.step}});
    return absl::OkStatus();
  }

  // Opens the reader at pos_. Cached mode, and streaming once the stream
  // is complete (epoch >= 1): the epoch's seeded permutation of all pairs.
  // Streaming epoch 0: the window of the stream that holds pos_.
  absl::Status OpenReader() {
    if (ts_.streaming() && pos_.epoch == 0) {
      LFT_ASSIGN_OR_RETURN(const bool opened, OpenStreamWindow());
      if (opened) return absl::OkStatus();
      // Every pair of the stream was trained on once; later epochs shuffle
      // all of them, as cached mode does.
      pos_.epoch = 1;
      pos_.pairs_consumed = 0;
    }
    return OpenShuffledEpoch();
  }

  // Streaming, epoch 0: pairs in the job's key order (shard, sequence),
  // cut into windows of window_ pairs; window w is [w window_, (w + 1)
  // window_), shuffled by (seed, w), and step s trains on its pairs [s B,
  // (s + 1) B) of the stream, rank r taking every W-th. The rank waits
  // (cancellably) until the window lies in the store's final prefix
  // (sealed shards + the head shard, JobStats::stream_prefix_pairs) or the
  // stream is complete (all extraction_shards sealed; the last window is
  // then cut at its end). So every rank of any W, a resumed run and an
  // uninterrupted one agree on each step's pairs whatever the order in
  // which teachers delivered them. Returns false when the stream has no
  // further full batch.
  absl::StatusOr<bool> OpenStreamWindow() {
    const uint64_t begin = pos_.pairs_consumed / window_ * window_;
    uint64_t prefix = 0;
    while (true) {
      auto stats = store_->Stats(job_);
      if (stats.ok() && rank_ == 0 && stats->consumed < pos_.pairs_consumed) {
        // The store lost acknowledgements (it restarted before persisting
        // them): without them its teachers could stay blocked.
        LFT_RETURN_IF_ERROR(Annotate(
            store_->AckConsumed(job_, pos_.pairs_consumed - stats->consumed),
            absl::StrCat(where_, ": acknowledging pairs")));
        store_consumed_ = pos_.pairs_consumed;
      }
      if (stats.ok()) {
        prefix = stats->stream_prefix_pairs;
        if (prefix >= begin + window_ || stats->sealed_shards >= shards_) break;
      } else if (!absl::IsNotFound(stats.status())) {
        return Annotate(stats.status(), where_);
      }
      if (context_->cancellation().WaitFor(absl::Milliseconds(200)))
        return Cancelled();
    }
    const uint64_t end = std::min(begin + window_, prefix);
    const uint64_t usable = end > begin ? (end - begin) / batch_ * batch_ : 0;
    if (pos_.pairs_consumed + batch_ > begin + usable) return false;
    ScanOptions so = ReaderOptions();
    so.epoch = kStreamWindowEpochs | (begin / window_);
    // The window's consumed pairs are whole global batches: W shares.
    so.skip_pairs = (pos_.pairs_consumed - begin) / world_;
    so.range_begin = begin;
    so.range_pairs = end - begin;
    LFT_RETURN_IF_ERROR(OpenScan(so));
    reader_end_ = begin + usable;
    return true;
  }

  // The epoch's seeded permutation of the job's pairs (streaming: of the
  // whole, complete stream), rank r taking every W-th pair from
  // pos_.pairs_consumed on; floor(N / B) * B of the N pairs per epoch.
  absl::Status OpenShuffledEpoch() {
    auto stats = store_->Stats(job_);
    if (!stats.ok() && !absl::IsNotFound(stats.status()))
      return Annotate(stats.status(), where_);
    const uint64_t stored = !stats.ok()       ? 0
                            : ts_.streaming() ? stats->stream_prefix_pairs
                                              : stats->pairs;
    if (stored < batch_) {
      return absl::FailedPreconditionError(
          absl::StrCat(where_, ": the store holds ", stored,
                       " pairs, fewer than one global batch of ", batch_,
                       " sequences; extract more text or lower "
                       "training.global_batch_sequences"));
    }
    epoch_pairs_ = stored / batch_ * batch_;
    if (pos_.pairs_consumed + batch_ > epoch_pairs_) {
      ++pos_.epoch;
      pos_.pairs_consumed = 0;
    }
    ScanOptions so = ReaderOptions();
    so.epoch = pos_.epoch;
    // Each step took per_rank_ pairs of every rank's share, so a rank has
    // consumed pairs_consumed / W of its own order. Skipping those (rather
    // than start_block = pairs_consumed of the global order, the same pairs
    // on one store) also resumes a scan over several stores, which has no
    // global block order (sharded_pair_store.h).
    so.skip_pairs = pos_.pairs_consumed / world_;
    if (ts_.streaming()) so.range_pairs = stored;
    LFT_RETURN_IF_ERROR(OpenScan(so));
    reader_end_ = epoch_pairs_;
    return absl::OkStatus();
  }

  // What every reader of this rank shares: its strided slice of single
  // pairs in a seeded order.
  ScanOptions ReaderOptions() const {
    ScanOptions so;
    so.partition = rank_;
    so.partitions = world_;
    so.shuffle = true;
    so.seed = ts_.seed();
    so.block_pairs = 1;
    so.readahead_pairs = static_cast<uint32_t>(
        std::min<uint64_t>(64, std::max<uint64_t>(4, 2 * per_rank_)));
    return so;
  }

  absl::Status OpenScan(const ScanOptions& so) {
    auto r = store_->Scan(job_, so);
    if (!r.ok())
      return Annotate(r.status(), absl::StrCat(where_, ": reading pairs"));
    reader_ = std::move(*r);
    if (options_.background_read) {
      reader_ = std::make_unique<PrefetchingPairReader>(
          std::move(reader_), static_cast<size_t>(per_rank_));
    }
    return absl::OkStatus();
  }

  // This rank's share of the step's global batch into *pairs; the tokens
  // it holds.
  absl::StatusOr<uint64_t> ReadBatch(std::vector<LatentPairRecord>* pairs) {
    uint64_t tokens = 0;
    for (uint64_t i = 0; i < per_rank_; ++i) {
      auto more = reader_->Next(&(*pairs)[i]);
      if (!more.ok())
        return Annotate(more.status(), absl::StrCat(where_, ": reading pairs"));
      if (!*more) {
        return absl::DataLossError(
            absl::StrCat(where_, ": the store's pairs ran out within epoch ",
                         pos_.epoch, " (were pairs deleted while training?)"));
      }
      tokens += (*pairs)[i].tokens;
    }
    return tokens;
  }

  // With an engine that overlaps input (OverlapsInput), reads the next
  // step's pairs and stages them while this step runs on the device. Not
  // across an epoch's end (the next reader depends on this step's
  // position) nor past the last step.
  absl::Status PrefetchNextStep() {
    if (!engine_->OverlapsInput() || reader_ == nullptr ||
        pos_.step + 1 >= total_steps_ ||
        pos_.pairs_consumed + 2 * batch_ > reader_end_) {
      return absl::OkStatus();
    }
    const auto t0 = std::chrono::steady_clock::now();
    LFT_ASSIGN_OR_RETURN(next_tokens_, ReadBatch(&next_pairs_));
    engine_->StageNextStep(next_pairs_, pos_.step + 1);
    next_ready_ = true;
    if (metrics_.input_prefetch != nullptr)
      metrics_.input_prefetch->Increment(Since(t0));
    return absl::OkStatus();
  }

  // Gradients, one all-reduce of gradients and loss, clip and update; then
  // the data position moves on. Returns the global mean loss.
  absl::StatusOr<double> TrainStep(uint64_t tokens) {
    absl::Status s = engine_->ComputeGradients(pairs_, pos_.step);
    if (!s.ok()) return Annotate(s, absl::StrCat(where_, ": step ", pos_.step));
    if (collective_ != nullptr) {
      const auto t0 = std::chrono::steady_clock::now();
      s = collective_->AllReduceSum(engine_->gradient_data(),
                                    engine_->gradient_count(),
                                    engine_->gradient_dtype());
      if (!s.ok()) return CollectiveFailed(s);
      if (metrics_.allreduce != nullptr)
        metrics_.allreduce->Increment(Since(t0));
    }
    LFT_RETURN_IF_ERROR(PrefetchNextStep());
    const double lr = WarmupCosineLr(
        ts_.learning_rate(), kMinLearningRateRatio, ts_.warmup_steps(),
        static_cast<int64_t>(total_steps_), static_cast<int64_t>(pos_.step));
    auto loss =
        engine_->ApplyGradients(1.0 / world_, ts_.gradient_clip_norm(), lr);
    if (!loss.ok()) {
      return Annotate(loss.status(),
                      absl::StrCat(where_, ": step ", pos_.step));
    }
    if (!std::isfinite(*loss)) {
      return absl::InternalError(
          absl::StrCat(where_, ": loss became ", *loss, " at step ", pos_.step,
                       "; lower training.learning_rate or check the pairs"));
    }
    ++pos_.step;
    pos_.pairs_consumed += batch_;
    pos_.tokens += tokens * world_;
    pos_.losses.push_back(*loss);
    if (pos_.pairs_consumed + batch_ > reader_end_) reader_.reset();
    // Rank 0 acknowledges each global batch of the first epoch once, for
    // the whole group: in streaming mode that releases back-pressure, in
    // cached mode the store's pending pairs then mean "not yet consumed"
    // too (the store lag the dashboard shows); later epochs re-read
    // consumed pairs. A resumed run repeats the steps after its checkpoint,
    // which the lost run had acknowledged already, so only pairs past what
    // the store counts as consumed are acknowledged.
    if (rank_ == 0 && pos_.epoch == 0 &&
        pos_.pairs_consumed > store_consumed_) {
      absl::Status ack =
          store_->AckConsumed(job_, pos_.pairs_consumed - store_consumed_);
      if (!ack.ok())
        return Annotate(ack, absl::StrCat(where_, ": acknowledging pairs"));
      store_consumed_ = pos_.pairs_consumed;
    }
    return *loss;
  }

  // A failed collective usually means a peer died: give the coordinator
  // time to notice and revoke this task, so the group re-forms once.
  absl::Status CollectiveFailed(const absl::Status& s) {
    collective_->Abort();
    if (context_->cancellation().WaitFor(options_.regroup_wait))
      return Cancelled();
    return Annotate(s, where_);
  }

  // Every checkpoint_every_steps steps and at the end: rank 0 stores
  // step-N and keeps the newest keep_checkpoints of them.
  absl::Status MaybeCheckpoint() {
    if (pos_.step % every_ != 0 && pos_.step != total_steps_)
      return absl::OkStatus();
    const std::string name = TrainingCheckpointName(pos_.step);
    if (rank_ == 0) {
      auto blob = engine_->SaveCheckpoint(pos_, world_);
      if (!blob.ok()) return Annotate(blob.status(), where_);
      auto info = store_->PutCheckpoint(job_, name, *blob, "");
      if (!info.ok())
        return Annotate(info.status(),
                        absl::StrCat(where_, ": storing ", name));
      if (metrics_.checkpoints != nullptr) metrics_.checkpoints->Increment();
      ApplyRetention();
    }
    last_checkpoint_ = name;
    progress_.checkpoint = name;
    return absl::OkStatus();
  }

  // Deletes all but the newest keep_checkpoints step-N checkpoints. Best
  // effort: a failure leaves an extra checkpoint, never a missing one.
  void ApplyRetention() {
    auto list = store_->ListCheckpoints(job_);
    if (!list.ok()) return;
    std::vector<std::string> steps;
    for (const CheckpointInfo& c : *list)
      if (IsTrainingCheckpoint(c.name)) steps.push_back(c.name);
    std::sort(steps.begin(), steps.end());
    for (size_t i = 0; i + options_.keep_checkpoints < steps.size(); ++i) {
      absl::Status s = store_->DeleteCheckpoint(job_, steps[i]);
      if (!s.ok()) {
        LogWarning(
            "deleting an old checkpoint failed",
            {{"job", job_}, {"checkpoint", steps[i]}, {"error", s.ToString()}});
      }
    }
  }

  // Metrics and the progress the coordinator sees; Cancelled when the task
  // must stop.
  absl::Status ReportStep(double loss, uint64_t tokens,
                          std::chrono::steady_clock::time_point step_start) {
    if (metrics_.loss != nullptr) {
      metrics_.loss->Set(loss);
      metrics_.steps->Increment();
      metrics_.tokens->Increment(static_cast<double>(tokens));
      metrics_.model_flops->Increment(
          static_cast<double>(tokens) *
          engine_->ModelFlopsPerToken(static_cast<int64_t>(seq_len_)));
      metrics_.step_seconds->Observe(Since(step_start));
    }
    progress_.steps_done = pos_.step;
    progress_.tokens_done = pos_.tokens;
    progress_.loss = loss;
    const double secs = Since(run_start_);
    progress_.tokens_per_second =
        secs > 0 ? static_cast<double>(pos_.step - start_step_) * batch_ *
                       static_cast<double>(seq_len_) / secs
                 : 0;
    if (!context_->ReportProgress(progress_)) return Cancelled();
    if (options_.pause_per_step > absl::ZeroDuration() &&
        context_->cancellation().WaitFor(options_.pause_per_step)) {
      return Cancelled();
    }
    return absl::OkStatus();
  }

  // Streaming: training is over, so lift the back-pressure and let teachers
  // still extracting finish their shards instead of waiting for a consumer.
  absl::Status Finish() {
    if (ts_.streaming() && rank_ == 0 && !pairs_.empty() &&
        pairs_[0].hidden > 0) {
      LogInfo("streaming training done; lifting back-pressure",
              {{"job", job_}});
      JobConfig open;
      open.hidden = pairs_[0].hidden;
      open.codec = pairs_[0].codec;
      open.max_pending_pairs = 0;
      absl::Status s = store_->CreateJob(job_, open);
      if (!s.ok())
        return Annotate(s, absl::StrCat(where_, ": releasing back-pressure"));
    }
    LogInfo("training finished", {{"job", job_},
                                  {"rank", static_cast<int64_t>(rank_)},
                                  {"step", pos_.step},
                                  {"checkpoint", last_checkpoint_}});
    return absl::OkStatus();
  }

  // Constant for the session.
  const TrainerRunnerOptions& options_;
  const lft::v1::Task& task_;
  const lft::v1::JobSpec& spec_;
  const lft::v1::TrainingSpec& ts_;
  const std::string job_;
  const uint32_t world_;
  const uint32_t rank_;
  const uint64_t batch_;
  const uint64_t seq_len_;
  const uint64_t every_;
  const std::string where_;
  TaskContext* const context_;

  // Set up by Run before the loop.
  uint64_t per_rank_ = 0;
  uint64_t window_ = 0;  // streaming: pairs per window of the stream
  uint32_t shards_ = 0;  // streaming: the job's extraction shards
  uint64_t total_steps_ = 0;
  std::unique_ptr<RetryingPairStore> retrying_store_;
  PairStore* store_ = nullptr;  // retrying_store_
  std::unique_ptr<TrainingEngine> engine_;
  std::unique_ptr<GroupTransport> transport_;
  std::unique_ptr<Collective> collective_;
  TrainerMetrics metrics_;
  std::chrono::steady_clock::time_point run_start_;
  uint64_t start_step_ = 0;

  // Where training stands.
  TrainingPosition pos_;
  std::string last_checkpoint_;
  ProgressUpdate progress_;
  std::unique_ptr<PairReader> reader_;
  uint64_t epoch_pairs_ = 0;  // usable pairs of the current shuffled epoch
  // pos_.pairs_consumed at which reader_ runs out (the end of its epoch or
  // stream window).
  uint64_t reader_end_ = 0;
  // Pairs the store counts as consumed (rank 0).
  uint64_t store_consumed_ = 0;
  std::vector<LatentPairRecord> pairs_;
  // The next step's pairs, read during this step (PrefetchNextStep).
  std::vector<LatentPairRecord> next_pairs_;
  uint64_t next_tokens_ = 0;
  bool next_ready_ = false;
};

}  // namespace

std::unique_ptr<GroupTransport> NewDeviceGroupTransport(
    const TrainerRunnerOptions& options) {
  return std::make_unique<DeviceGroupTransport>(
      options.device, options.listen_host, options.collective_timeout);
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
  TrainerSession session(options_, task, context);
  return session.Run();
}

}  // namespace lft
