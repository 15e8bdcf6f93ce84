// Extraction: shard documents -> packed sequences [B, T] -> teacher layers
// 0..n-1 -> x0 = h_m, x1 = h_n, each [T, H] per sequence, encoded with the
// job's storage codec and written as (shard, sequence, 0) pairs.
//
// Hidden states are computed in the compute dtype (fp32 on CPU, bf16 on CUDA
// by default), converted to fp32 on the host and then encoded, so the stored
// bytes depend only on (teacher, dtype, device kind, shard).
#include "worker/teacher/teacher_extraction_runner.h"

#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/corpus/sequence_packer.h"
#include "common/corpus/shard_reader.h"
#include "common/tensor/tensor_codec.h"
#include "common/text/bpe_tokenizer.h"
#include "latent-store/latent_store.h"
#include "latent-store/remote_pair_store.h"
#include "worker/model/gpt_neox.h"
#include "worker/model/teacher_loader.h"
#include "worker/model/torch_guard.h"

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

// Everything extracted from one batch of sequences.
absl::Status ExtractBatch(const GptNeoX& model, int64_t m, int64_t n,
                          const std::vector<PackedSequence>& batch,
                          uint32_t shard, TensorCodec codec,
                          std::vector<LatentPairRecord>* out) {
  return GuardTorch("teacher forward", [&]() -> absl::Status {
    torch::NoGradGuard no_grad;
    const int64_t b = static_cast<int64_t>(batch.size());
    const int64_t t = static_cast<int64_t>(batch[0].tokens.size());
    auto ids = torch::empty({b, t}, torch::kLong);
    auto acc = ids.accessor<int64_t, 2>();
    for (int64_t i = 0; i < b; ++i)
      for (int64_t j = 0; j < t; ++j) acc[i][j] = batch[i].tokens[j];
    LFT_ASSIGN_OR_RETURN(auto hs,
                         model.Extract(ids.to(model.options().device), m, n));
    const torch::Tensor x0 =
        hs.first.to(torch::kCPU).to(torch::kFloat).contiguous();
    const torch::Tensor x1 =
        hs.second.to(torch::kCPU).to(torch::kFloat).contiguous();
    const int64_t h = x0.size(2);
    out->clear();
    out->resize(b);
    for (int64_t i = 0; i < b; ++i) {
      LatentPairRecord& r = (*out)[i];
      r.shard = shard;
      r.sequence = static_cast<uint64_t>(batch[i].index);
      r.chunk = 0;
      r.tokens = static_cast<uint32_t>(t);
      r.hidden = static_cast<uint32_t>(h);
      r.codec = codec;
      const size_t count = static_cast<size_t>(t * h);
      LFT_RETURN_IF_ERROR(
          EncodeRows(codec, absl::MakeConstSpan(x0[i].data_ptr<float>(), count),
                     t, h, &r.x0));
      LFT_RETURN_IF_ERROR(
          EncodeRows(codec, absl::MakeConstSpan(x1[i].data_ptr<float>(), count),
                     t, h, &r.x1));
      r.token_ids = batch[i].tokens;
    }
    return absl::OkStatus();
  });
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
  const int64_t m = spec.block().first_layer();
  const int64_t n = spec.block().end_layer();
  const int64_t seq_len = spec.sequence_length();
  if (seq_len < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": sequence_length ", seq_len, " is below 2"));
  }

  LFT_ASSIGN_OR_RETURN(LoadedTeacher * teacher,
                       teachers_.Get(spec.teacher().path(), bf16));
  LFT_ASSIGN_OR_RETURN(PairStore * store, stores_->Get(task.store_address()));

  // Create the store job once; an existing job keeps its settings
  // (back-pressure bound included) and PutPairs checks hidden and codec.
  const uint32_t hidden =
      static_cast<uint32_t>(teacher->model->config().hidden_size);
  auto stats = store->Stats(task.job_id());
  if (absl::IsNotFound(stats.status())) {
    JobConfig jc;
    jc.hidden = hidden;
    jc.codec = codec;
    // Streaming: teachers run at most this far ahead of the trainer.
    if (spec.training().streaming())
      jc.max_pending_pairs = spec.training().streaming_buffer_pairs();
    absl::Status s = store->CreateJob(task.job_id(), jc);
    if (!s.ok())
      return Annotate(s, absl::StrCat(where, ": creating store job"));
  } else if (!stats.ok()) {
    return Annotate(stats.status(), absl::StrCat(where, ": store"));
  }

  ShardTask st;
  st.shard_index = ex.shard_index();
  st.file = ex.corpus_path();
  st.first_document = static_cast<int64_t>(ex.first_document());
  st.end_document = static_cast<int64_t>(ex.end_document());
  JsonlReaderOptions ro;
  ro.max_errors = static_cast<int64_t>(spec.corpus().error_budget());
  // The tokenizer is shared by the cached teacher; a runner runs one task at
  // a time (TaskRunner contract), so it is not used concurrently.
  auto reader_or = ShardDocumentReader::Open(st, teacher->tokenizer.get(), ro);
  if (!reader_or.ok()) return Annotate(reader_or.status(), where);
  std::unique_ptr<ShardDocumentReader> reader = std::move(*reader_or);

  PackerOptions po;
  po.sequence_length = seq_len;
  po.eos_id = teacher->eos_id;
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

  const auto start = std::chrono::steady_clock::now();
  ProgressUpdate progress;
  TaskResult result;
  const int64_t batch_size = std::max<int64_t>(1, options_.batch_sequences);
  std::vector<PackedSequence> batch;
  std::vector<LatentPairRecord> records;
  std::vector<int32_t> ids;
  int64_t doc_index = 0;
  bool eof = false;

  auto flush = [&]() -> absl::Status {
    if (batch.empty()) return absl::OkStatus();
    absl::Status s = ExtractBatch(*teacher->model, m, n, batch,
                                  ex.shard_index(), codec, &records);
    if (!s.ok()) return Annotate(s, where);
    s = store->PutPairs(task.job_id(), records,
                        absl::Now() + options_.put_timeout);
    if (!s.ok()) return Annotate(s, absl::StrCat(where, ": writing pairs"));
    const uint64_t tokens = batch.size() * static_cast<uint64_t>(seq_len);
    result.pairs_written += records.size();
    progress.sequences_done += records.size();
    progress.tokens_done += tokens;
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    progress.tokens_per_second =
        secs > 0 ? static_cast<double>(progress.tokens_done) / secs : 0;
    if (tokens_metric != nullptr) {
      tokens_metric->Increment(static_cast<double>(tokens));
      pairs_metric->Increment(static_cast<double>(records.size()));
      rate_metric->Set(progress.tokens_per_second);
    }
    batch.clear();
    if (options_.pause_per_batch > absl::ZeroDuration()) {
      context->cancellation().WaitFor(options_.pause_per_batch);
    }
    if (!context->ReportProgress(progress) ||
        context->cancellation().cancelled()) {
      return absl::CancelledError(absl::StrCat(
          where, ": cancelled: ", context->cancellation().reason()));
    }
    return absl::OkStatus();
  };

  while (!eof) {
    if (context->cancellation().cancelled()) {
      return absl::CancelledError(absl::StrCat(
          where, ": cancelled: ", context->cancellation().reason()));
    }
    auto more = reader->Next(&ids, &doc_index);
    if (!more.ok()) return Annotate(more.status(), where);
    if (!*more) {
      eof = true;
    } else {
      packer.AddDocument(ids);
      ++progress.documents_done;
    }
    PackedSequence seq;
    while (packer.Next(&seq)) {
      batch.push_back(std::move(seq));
      if (static_cast<int64_t>(batch.size()) >= batch_size) {
        LFT_RETURN_IF_ERROR(flush());
      }
    }
  }
  LFT_RETURN_IF_ERROR(flush());
  context->ReportProgress(progress);
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
