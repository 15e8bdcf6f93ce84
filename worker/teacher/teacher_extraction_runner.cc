// Extraction: shard documents -> packed sequences [B, T] -> teacher layers
// 0..n-1 -> x0 = h_m, x1 = h_n, each [T, H] per sequence, encoded with the
// job's storage codec and written as (shard, sequence, 0) pairs.
//
// A pipeline of three stages joined by bounded queues (the back-pressure):
//   reader thread   documents -> tokens -> packed batches of ids (host);
//   this thread     ids -> pinned buffer -> GPU (non-blocking) -> forward
//                   with early exit at n -> encoded on the GPU
//                   (worker/model/device_latent_codec.h) -> copied to a pinned
//                   host buffer on a side stream, without waiting for it;
//   writer threads  wait for the copy, cut the buffer into records and
//                   PutPairs them, several batches in flight at once.
// Then SyncPairs makes the shard's pairs durable; only after it does Run
// return, so the task's completion is the commit point (docs/store.md).
// Streaming jobs write with one writer thread (a shard's pairs land in key
// order) and seal the shard (PairStore::SealShard) after SyncPairs.
//
// Hidden states are computed in the compute dtype (fp32 on CPU, bf16 on CUDA
// by default) and encoded exactly as EncodeRows would encode them as fp32,
// so the stored bytes depend only on (teacher, dtype, device kind, shard).
#include "worker/teacher/teacher_extraction_runner.h"

#include <c10/core/Event.h>
#include <c10/core/StreamGuard.h>
#include <c10/core/impl/VirtualGuardImpl.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <algorithm>
#include <chrono>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/backoff.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/corpus/sequence_packer.h"
#include "common/corpus/shard_reader.h"
#include "common/tensor/tensor_codec.h"
#include "common/text/bpe_tokenizer.h"
#include "latent-store/latent_store.h"
#include "latent-store/remote_pair_store.h"
#include "latent-store/retrying_pair_store.h"
#include "worker/model/device_latent_codec.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/teacher_loader.h"
#include "worker/model/torch_guard.h"
#include "worker/teacher/bounded_queue.h"

namespace lft {

namespace {

absl::StatusOr<TensorCodec> CodecOf(lft::v1::StorageDtype dtype) {
  switch (dtype) {
    case lft::v1::STORAGE_DTYPE_F32:
      return TensorCodec::kF32;
    case lft::v1::STORAGE_DTYPE_BF16:
    case lft::v1::STORAGE_DTYPE_UNSPECIFIED:  // the job spec default
      return TensorCodec::kBF16;
    case lft::v1::STORAGE_DTYPE_F16:
      return TensorCodec::kF16;
    case lft::v1::STORAGE_DTYPE_FP8_E4M3:
      return TensorCodec::kFp8E4M3;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("storage_dtype ", static_cast<int>(dtype),
                       " is not f32, bf16, f16 or fp8_e4m3"));
  }
}

RemotePairStoreOptions RemoteOptions(const StoreClientCredentials& c) {
  RemotePairStoreOptions o;
  o.credentials = c;
  return o;
}

}  // namespace

TeacherExtractionRunner::TeacherExtractionRunner(TeacherRunnerOptions options)
    : options_(std::move(options)),
      owned_stores_(options_.stores != nullptr
                        ? nullptr
                        : std::make_unique<PairStorePool>(
                              options_.store_db,
                              RemoteOptions(options_.store_credentials))),
      stores_(options_.stores != nullptr ? options_.stores
                                         : owned_stores_.get()),
      teachers_(options_.device) {}

TeacherExtractionRunner::~TeacherExtractionRunner() = default;

size_t TeacherExtractionRunner::cached_teachers() const {
  return teachers_.size();
}

namespace {

// One batch of packed sequences on its way through the pipeline.
struct PipelineBatch {
  std::vector<PackedSequence> sequences;
  uint64_t documents_done = 0;  // reader's count when the batch was cut
  // Encoded x0 and x1, uint8 [B, 2, bytes_per_latent], in host memory
  // (pinned on CUDA) once `copied` has completed.
  torch::Tensor host;
  torch::Tensor device;  // kept alive until the copy completed
#if TORCH_VERSION_MAJOR >= 2
  std::shared_ptr<c10::Event> copied;  // null: `host` is ready
#endif
};

// What every stage sees: the first error stops the others.
class PipelineState {
 public:
  void Fail(absl::Status s) {
    absl::MutexLock lock(&mu_);
    if (error_.ok()) error_ = std::move(s);
  }
  absl::Status error() const {
    absl::MutexLock lock(&mu_);
    return error_;
  }
  bool failed() const {
    absl::MutexLock lock(&mu_);
    return !error_.ok();
  }
  void AddWritten(uint64_t pairs, uint64_t tokens, uint64_t documents) {
    absl::MutexLock lock(&mu_);
    pairs_ += pairs;
    tokens_ += tokens;
    documents_ = std::max(documents_, documents);
  }
  void Progress(uint64_t* pairs, uint64_t* tokens, uint64_t* documents) const {
    absl::MutexLock lock(&mu_);
    *pairs = pairs_;
    *tokens = tokens_;
    *documents = documents_;
  }

 private:
  mutable absl::Mutex mu_;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  uint64_t pairs_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t tokens_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t documents_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace

absl::StatusOr<TaskResult> TeacherExtractionRunner::Run(
    const lft::v1::Task& task, TaskContext* context) {
  if (!task.has_extraction()) {
    return absl::InvalidArgumentError(
        absl::StrCat("task ", task.task_id(), " is not an extraction task"));
  }
  const lft::v1::JobSpec& spec = task.spec();
  const lft::v1::ExtractionTask& ex = task.extraction();
  const std::string where =
      absl::StrCat("job ", task.job_id(), " shard ", ex.shard_index(), " (",
                   ex.corpus_path(), " documents [", ex.first_document(), ", ",
                   ex.end_document(), "))");
  const bool bf16 =
      TeacherUsesBf16(options_.device, spec.teacher().compute_dtype());
  LFT_ASSIGN_OR_RETURN(TensorCodec codec, CodecOf(spec.storage_dtype()));
  if (spec.sequence_length() < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        where, ": sequence_length ", spec.sequence_length(), " is below 2"));
  }
  LFT_ASSIGN_OR_RETURN(LoadedTeacher * teacher,
                       teachers_.Get(spec.teacher().path(), bf16));
  LFT_ASSIGN_OR_RETURN(PairStore * pooled, stores_->Get(task.store_address()));
  // A store that is down costs this task a wait (every call is retried with
  // backoff), not a failed attempt.
  StoreRetryOptions retry;
  retry.give_up_after = options_.store_unavailable_wait;
  retry.description = absl::StrCat("latent store ", task.store_address());
  retry.sleep = [context](absl::Duration d) {
    return context->cancellation().WaitFor(d);
  };
  RetryingPairStore store(pooled, retry);

  // A store that restarted mid-shard may have lost pairs it acknowledged but
  // had not synced (SyncPairs answers Aborted): the shard is redone from its
  // start (keys are idempotent).
  const absl::Time give_up = absl::Now() + options_.store_unavailable_wait;
  Backoff backoff;
  while (true) {
    bool store_restarted = false;
    absl::StatusOr<TaskResult> r =
        ExtractShard(task, *teacher, codec, &store, context, &store_restarted);
    if (r.ok() || !store_restarted || context->cancellation().cancelled() ||
        absl::Now() >= give_up) {
      if (!r.ok()) return Annotate(r.status(), where);
      return r;
    }
    const absl::Duration wait = backoff.Next();
    LogWarning("the store restarted mid-shard, redoing the shard after a wait",
               {{"job", task.job_id()},
                {"shard", std::to_string(ex.shard_index())},
                {"wait_ms", std::to_string(absl::ToInt64Milliseconds(wait))},
                {"error", r.status().ToString()}});
    if (context->cancellation().WaitFor(wait)) {
      return absl::CancelledError(absl::StrCat(
          where, ": cancelled: ", context->cancellation().reason()));
    }
  }
}

absl::StatusOr<TaskResult> TeacherExtractionRunner::ExtractShard(
    const lft::v1::Task& task, const LoadedTeacher& teacher, TensorCodec codec,
    PairStore* store, TaskContext* context, bool* store_restarted) {
  const lft::v1::JobSpec& spec = task.spec();
  const lft::v1::ExtractionTask& ex = task.extraction();
  const int64_t m = spec.block().first_layer();
  const int64_t n = spec.block().end_layer();
  const int64_t seq_len = spec.sequence_length();
  const GptNeoX& model = *teacher.model;
  const uint32_t hidden = static_cast<uint32_t>(model.config().hidden_size);

  // Create the store job once; an existing job keeps its settings
  // (back-pressure bound included) and PutPairs checks hidden and codec.
  auto stats = store->Stats(task.job_id());
  if (absl::IsNotFound(stats.status())) {
    JobConfig jc;
    jc.hidden = hidden;
    jc.codec = codec;
    // Streaming: teachers run at most this far ahead of the trainer.
    if (spec.training().streaming())
      jc.max_pending_pairs = spec.training().streaming_buffer_pairs();
    absl::Status s = store->CreateJob(task.job_id(), jc);
    if (!s.ok()) return Annotate(s, "creating store job");
  } else if (!stats.ok()) {
    return Annotate(stats.status(), "store");
  }
  // Taken before the first write: SyncPairs refuses if the store restarted
  // in between.
  LFT_ASSIGN_OR_RETURN(std::string session, store->WriteSession());

  ShardTask st;
  st.shard_index = ex.shard_index();
  st.file = ex.corpus_path();
  st.first_document = static_cast<int64_t>(ex.first_document());
  st.end_document = static_cast<int64_t>(ex.end_document());
  JsonlReaderOptions ro;
  ro.max_errors = static_cast<int64_t>(spec.corpus().error_budget());
  // The tokenizer is shared by the cached teacher; a runner runs one task at
  // a time (TaskRunner contract) and only the reader thread uses it.
  LFT_ASSIGN_OR_RETURN(
      std::unique_ptr<ShardDocumentReader> reader,
      ShardDocumentReader::Open(st, teacher.tokenizer.get(), ro));
  PackerOptions po;
  po.sequence_length = seq_len;
  po.eos_id = teacher.eos_id;
  po.pad_last = false;  // see the header: the partial tail is dropped
  LFT_ASSIGN_OR_RETURN(SequencePacker packer, SequencePacker::Create(po));

  prometheus::Counter* tokens_metric = nullptr;
  prometheus::Counter* pairs_metric = nullptr;
  prometheus::Gauge* rate_metric = nullptr;
  if (options_.metrics != nullptr) {
    const MetricLabels labels = {{"job", task.job_id()}, {"role", "teacher"}};
    tokens_metric = &options_.metrics->Counter(
        "lft_teacher_tokens_total", "Tokens run through the teacher", labels);
    pairs_metric = &options_.metrics->Counter("lft_teacher_pairs_written_total",
                                              "Latent pairs written", labels);
    rate_metric = &options_.metrics->Gauge(
        "lft_teacher_tokens_per_second",
        "Teacher extraction throughput of the latest task", labels);
  }

  const int64_t batch_size = std::max<int64_t>(1, options_.batch_sequences);
  // Streaming trainers consume a shard's pairs in key order as they land
  // (PairStore::SealShard), which needs them written in order: one writer,
  // popping batches in sequence order. Cached mode writes in parallel.
  const bool streaming = task.spec().training().streaming();
  const int writers =
      streaming
          ? 1
          : static_cast<int>(std::max<int64_t>(1, options_.store_writers));
  BoundedQueue<PipelineBatch> to_gpu(2);
  BoundedQueue<PipelineBatch> to_store(static_cast<size_t>(writers) + 1);
  PipelineState state;
  const auto start = std::chrono::steady_clock::now();

  // Stage 1: read, tokenize, pack.
  std::thread reader_thread([&] {
    std::vector<int32_t> ids;
    int64_t doc_index = 0;
    uint64_t documents = 0;
    PipelineBatch batch;
    bool eof = false;
    while (!eof && !state.failed()) {
      auto more = reader->Next(&ids, &doc_index);
      if (!more.ok()) {
        state.Fail(more.status());
        break;
      }
      if (!*more) {
        eof = true;
      } else {
        packer.AddDocument(ids);
        ++documents;
      }
      PackedSequence seq;
      while (packer.Next(&seq)) {
        batch.sequences.push_back(std::move(seq));
        if (static_cast<int64_t>(batch.sequences.size()) >= batch_size) {
          batch.documents_done = documents;
          if (!to_gpu.Push(std::move(batch))) return;
          batch = PipelineBatch();
        }
      }
    }
    if (!batch.sequences.empty() && !state.failed()) {
      batch.documents_done = documents;
      to_gpu.Push(std::move(batch));
    }
    // Documents at the tail that made no full sequence count as done.
    state.AddWritten(0, 0, documents);
    to_gpu.Close();
  });

  // Stage 3: wait for each batch's copy, cut it into records, write.
  std::vector<std::thread> writer_threads;
  for (int w = 0; w < writers; ++w) {
    writer_threads.emplace_back([&] {
      std::vector<LatentPairRecord> records;
      while (std::optional<PipelineBatch> b = to_store.Pop()) {
        if (state.failed()) continue;  // drain
        absl::Status s = GuardTorch("copying latents to the host", [&] {
#if TORCH_VERSION_MAJOR >= 2
          if (b->copied) b->copied->synchronize();
#endif
          b->device = torch::Tensor();
          return absl::OkStatus();
        });
        if (!s.ok()) {
          state.Fail(s);
          continue;
        }
        const int64_t count = static_cast<int64_t>(b->sequences.size());
        const size_t bytes = static_cast<size_t>(b->host.size(2));
        const uint8_t* base = b->host.data_ptr<uint8_t>();
        records.resize(static_cast<size_t>(count));
        for (int64_t i = 0; i < count; ++i) {
          LatentPairRecord& r = records[static_cast<size_t>(i)];
          const PackedSequence& seq = b->sequences[static_cast<size_t>(i)];
          r.shard = ex.shard_index();
          r.sequence = static_cast<uint64_t>(seq.index);
          r.chunk = 0;
          r.tokens = static_cast<uint32_t>(seq_len);
          r.hidden = hidden;
          r.codec = codec;
          const char* x0 = reinterpret_cast<const char*>(base) + 2 * i * bytes;
          r.x0.assign(x0, bytes);
          r.x1.assign(x0 + bytes, bytes);
          r.token_ids = seq.tokens;
        }
        b->host = torch::Tensor();  // back to the pinned-memory cache
        s = store->PutPairs(task.job_id(), records,
                            absl::Now() + options_.put_timeout);
        if (!s.ok()) {
          state.Fail(Annotate(s, "writing pairs"));
          continue;
        }
        state.AddWritten(static_cast<uint64_t>(count),
                         static_cast<uint64_t>(count * seq_len),
                         b->documents_done);
        if (tokens_metric != nullptr) {
          tokens_metric->Increment(static_cast<double>(count * seq_len));
          pairs_metric->Increment(static_cast<double>(count));
        }
      }
    });
  }

  // Stage 2, on this thread: the GPU.
  ProgressUpdate progress;
  auto report = [&]() -> bool {
    uint64_t pairs = 0, tokens = 0, documents = 0;
    state.Progress(&pairs, &tokens, &documents);
    progress.sequences_done = pairs;
    progress.tokens_done = tokens;
    progress.documents_done = documents;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    progress.tokens_per_second =
        secs > 0 ? static_cast<double>(tokens) / secs : 0;
    if (rate_metric != nullptr) rate_metric->Set(progress.tokens_per_second);
    return context->ReportProgress(progress);
  };
  const torch::Device device = model.options().device;
  absl::Status gpu_status =
      GuardTorch("teacher forward", [&]() -> absl::Status {
        torch::NoGradGuard no_grad;
#if TORCH_VERSION_MAJOR >= 2
        // The forward runs on a stream of its own and the copies to the host on
        // another, so that batch i's copy overlaps batch i+1's forward.
        std::optional<c10::Stream> compute, copy;
        std::optional<c10::StreamGuard> on_compute;
        if (device.is_cuda()) {
          c10::impl::VirtualGuardImpl impl(device.type());
          compute =
              impl.getStreamFromGlobalPool(device, /*isHighPriority=*/false);
          copy = impl.getStreamFromGlobalPool(device, /*isHighPriority=*/false);
          on_compute.emplace(*compute);
        }
#endif
        const bool pin = device.is_cuda();
        while (std::optional<PipelineBatch> b = to_gpu.Pop()) {
          if (state.failed()) continue;  // drain
          if (context->cancellation().cancelled() || !report()) {
            return absl::CancelledError(
                absl::StrCat("cancelled: ", context->cancellation().reason()));
          }
          if (options_.pause_per_batch > absl::ZeroDuration()) {
            context->cancellation().WaitFor(options_.pause_per_batch);
          }
          const int64_t rows = static_cast<int64_t>(b->sequences.size());
          torch::Tensor ids = torch::empty(
              {rows, seq_len},
              torch::TensorOptions().dtype(torch::kLong).pinned_memory(pin));
          int64_t* p = ids.data_ptr<int64_t>();
          for (const PackedSequence& seq : b->sequences) {
            p = std::copy(seq.tokens.begin(), seq.tokens.end(), p);
          }
          LFT_ASSIGN_OR_RETURN(auto hs, model.Extract(ids, m, n));
          LFT_ASSIGN_OR_RETURN(torch::Tensor e0,
                               EncodeLatents(hs.first, codec));
          LFT_ASSIGN_OR_RETURN(torch::Tensor e1,
                               EncodeLatents(hs.second, codec));
          b->device = torch::stack({e0, e1}, 1);  // [B, 2, bytes]
          b->host = torch::empty(
              b->device.sizes(),
              torch::TensorOptions().dtype(torch::kByte).pinned_memory(pin));
#if TORCH_VERSION_MAJOR >= 2
          if (device.is_cuda()) {
            c10::Event encoded(device.type());
            encoded.record(*compute);
            encoded.block(*copy);
            c10::StreamGuard on_copy(*copy);
            b->host.copy_(b->device, /*non_blocking=*/true);
            b->copied = std::make_shared<c10::Event>(device.type());
            b->copied->record(*copy);
          } else {
            b->host.copy_(b->device);
          }
#else
      b->host.copy_(b->device);
#endif
          if (!to_store.Push(std::move(*b))) break;
        }
        return absl::OkStatus();
      });
  if (!gpu_status.ok()) state.Fail(gpu_status);
  to_gpu.Close();
  to_store.Close();
  reader_thread.join();
  for (std::thread& t : writer_threads) t.join();
  LFT_RETURN_IF_ERROR(state.error());
  if (context->cancellation().cancelled()) {
    return absl::CancelledError(
        absl::StrCat("cancelled: ", context->cancellation().reason()));
  }
  // The commit point: the task completes only once its pairs are durable.
  absl::Status synced = store->SyncPairs(task.job_id(), session);
  // By SyncPairs' contract Aborted means the store restarted since
  // `session`, so pairs acknowledged before may be gone.
  if (absl::IsAborted(synced)) *store_restarted = true;
  LFT_RETURN_IF_ERROR(Annotate(synced, "making the shard's pairs durable"));
  report();
  if (streaming) {
    // Before the task completes: a shard is final for streaming trainers
    // only once it is sealed.
    LFT_RETURN_IF_ERROR(
        Annotate(store->SealShard(task.job_id(), ex.shard_index(),
                                  progress.sequences_done),
                 absl::StrCat("sealing shard ", ex.shard_index())));
  }
  TaskResult result;
  result.pairs_written = progress.sequences_done;
  LogInfo("shard extracted",
          {{"job", task.job_id()},
           {"shard", std::to_string(ex.shard_index())},
           {"documents", std::to_string(progress.documents_done)},
           {"pairs", std::to_string(result.pairs_written)},
           {"tokens", std::to_string(progress.tokens_done)},
           {"tokens_per_second", std::to_string(progress.tokens_per_second)}});
  return result;
}

}  // namespace lft
