#include "latent-store/store_service.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/status.h"
#include "common/rpc/grpc_status.h"
#include "latent-store/checkpoint_stream.h"

namespace lft {
namespace {

// gRPC's default receive limit: what a client that names none accepts.
constexpr uint64_t kDefaultClientMessageBytes = 4ull << 20;

grpc::Status Err(const absl::Status& s, absl::string_view rpc) {
  return ToGrpcStatus(Annotate(s, rpc));
}

absl::Time CallDeadline(grpc::ServerContext* context, absl::Duration cap) {
  const absl::Time capped = absl::Now() + cap;
  const auto tp = context->deadline();
  if (tp == std::chrono::system_clock::time_point::max()) return capped;
  return std::min(capped, absl::FromChrono(tp));
}

}  // namespace

absl::StatusOr<TensorCodec> CodecFromProto(lft::v1::TensorDtype dtype) {
  switch (dtype) {
    case lft::v1::TENSOR_DTYPE_F32:
      return TensorCodec::kF32;
    case lft::v1::TENSOR_DTYPE_BF16:
      return TensorCodec::kBF16;
    case lft::v1::TENSOR_DTYPE_F16:
      return TensorCodec::kF16;
    case lft::v1::TENSOR_DTYPE_FP8_E4M3:
      return TensorCodec::kFp8E4M3;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "dtype ", static_cast<int>(dtype),
          " is not one of TENSOR_DTYPE_F32, _BF16, _F16, _FP8_E4M3"));
  }
}

lft::v1::TensorDtype CodecToProto(TensorCodec codec) {
  switch (codec) {
    case TensorCodec::kF32:
      return lft::v1::TENSOR_DTYPE_F32;
    case TensorCodec::kBF16:
      return lft::v1::TENSOR_DTYPE_BF16;
    case TensorCodec::kF16:
      return lft::v1::TENSOR_DTYPE_F16;
    case TensorCodec::kFp8E4M3:
      return lft::v1::TENSOR_DTYPE_FP8_E4M3;
  }
  return lft::v1::TENSOR_DTYPE_UNSPECIFIED;
}

absl::Status PairFromProto(const lft::v1::LatentPair& proto,
                           LatentPairRecord* pair) {
  LFT_ASSIGN_OR_RETURN(pair->codec, CodecFromProto(proto.dtype()));
  pair->shard = proto.shard();
  pair->sequence = proto.sequence();
  pair->chunk = proto.chunk();
  pair->tokens = proto.tokens();
  pair->hidden = proto.hidden();
  pair->x0 = proto.x0();
  pair->x1 = proto.x1();
  pair->token_ids.assign(proto.token_ids().begin(), proto.token_ids().end());
  return absl::OkStatus();
}

void PairToProto(const LatentPairRecord& pair, lft::v1::LatentPair* proto) {
  proto->set_shard(pair.shard);
  proto->set_sequence(pair.sequence);
  proto->set_chunk(pair.chunk);
  proto->set_tokens(pair.tokens);
  proto->set_hidden(pair.hidden);
  proto->set_dtype(CodecToProto(pair.codec));
  proto->set_x0(pair.x0);
  proto->set_x1(pair.x1);
  proto->mutable_token_ids()->Assign(pair.token_ids.begin(),
                                     pair.token_ids.end());
}

absl::Status PairFromProto(lft::v1::LatentPair&& proto,
                           LatentPairRecord* pair) {
  LFT_ASSIGN_OR_RETURN(pair->codec, CodecFromProto(proto.dtype()));
  pair->shard = proto.shard();
  pair->sequence = proto.sequence();
  pair->chunk = proto.chunk();
  pair->tokens = proto.tokens();
  pair->hidden = proto.hidden();
  pair->x0.swap(*proto.mutable_x0());
  pair->x1.swap(*proto.mutable_x1());
  pair->token_ids.assign(proto.token_ids().begin(), proto.token_ids().end());
  return absl::OkStatus();
}

void PairToProto(LatentPairRecord&& pair, lft::v1::LatentPair* proto) {
  proto->set_shard(pair.shard);
  proto->set_sequence(pair.sequence);
  proto->set_chunk(pair.chunk);
  proto->set_tokens(pair.tokens);
  proto->set_hidden(pair.hidden);
  proto->set_dtype(CodecToProto(pair.codec));
  proto->mutable_x0()->swap(pair.x0);
  proto->mutable_x1()->swap(pair.x1);
  proto->mutable_token_ids()->Assign(pair.token_ids.begin(),
                                     pair.token_ids.end());
}

uint64_t PairWireBytes(const LatentPairRecord& pair) {
  return pair.x0.size() + pair.x1.size() + 5 * pair.token_ids.size() + 64;
}

bool SplitPairIntoParts(const LatentPairRecord& pair, uint64_t part_bytes,
                        const std::function<bool(lft::v1::LatentPair&& part,
                                                 bool continues)>& emit) {
  part_bytes = std::max<uint64_t>(part_bytes, 4096);
  size_t x0_done = 0, x1_done = 0, ids_done = 0;
  bool first = true;
  while (true) {
    lft::v1::LatentPair part;
    if (first) {
      part.set_shard(pair.shard);
      part.set_sequence(pair.sequence);
      part.set_chunk(pair.chunk);
      part.set_tokens(pair.tokens);
      part.set_hidden(pair.hidden);
      part.set_dtype(CodecToProto(pair.codec));
      first = false;
    }
    uint64_t room = part_bytes;
    const size_t x0_take = std::min<uint64_t>(room, pair.x0.size() - x0_done);
    part.set_x0(pair.x0.data() + x0_done, x0_take);
    x0_done += x0_take;
    room -= x0_take;
    const size_t x1_take = std::min<uint64_t>(room, pair.x1.size() - x1_done);
    part.set_x1(pair.x1.data() + x1_done, x1_take);
    x1_done += x1_take;
    room -= x1_take;
    // A varint token id takes at most 5 bytes.
    const size_t ids_take =
        std::min<uint64_t>(room / 5, pair.token_ids.size() - ids_done);
    part.mutable_token_ids()->Add(pair.token_ids.begin() + ids_done,
                                  pair.token_ids.begin() + ids_done + ids_take);
    ids_done += ids_take;
    const bool continues = x0_done < pair.x0.size() ||
                           x1_done < pair.x1.size() ||
                           ids_done < pair.token_ids.size();
    if (!emit(std::move(part), continues)) return false;
    if (!continues) return true;
  }
}

absl::Status PairPartAssembler::Add(lft::v1::LatentPair&& part, bool continues,
                                    LatentPairRecord* pair, bool* done) {
  *done = false;
  auto fail = [&](absl::string_view why) {
    absl::Status s = absl::InvalidArgumentError(
        absl::StrCat("pair in parts (shard ", pending_.shard, ", sequence ",
                     pending_.sequence, "): ", why));
    in_progress_ = false;
    pending_ = LatentPairRecord();
    return s;
  };
  if (!in_progress_) {
    pending_ = LatentPairRecord();
    LFT_RETURN_IF_ERROR(PairFromProto(std::move(part), &pending_));
    if (pending_.tokens == 0 || pending_.hidden == 0) {
      return fail("the first part must set tokens and hidden");
    }
    payload_bytes_ =
        EncodedBytes(pending_.codec, pending_.tokens, pending_.hidden);
    in_progress_ = true;
  } else {
    pending_.x0.append(part.x0());
    pending_.x1.append(part.x1());
    pending_.token_ids.insert(pending_.token_ids.end(),
                              part.token_ids().begin(), part.token_ids().end());
  }
  if (pending_.x0.size() > payload_bytes_ ||
      pending_.x1.size() > payload_bytes_ ||
      pending_.token_ids.size() > pending_.tokens) {
    return fail(absl::StrCat("the parts exceed the shape [", pending_.tokens,
                             ", ", pending_.hidden, "]"));
  }
  if (continues) return absl::OkStatus();
  if (pending_.x0.size() != payload_bytes_ ||
      pending_.x1.size() != payload_bytes_) {
    return fail(absl::StrCat("the last part leaves x0 at ", pending_.x0.size(),
                             " and x1 at ", pending_.x1.size(), " of ",
                             payload_bytes_, " bytes"));
  }
  in_progress_ = false;
  *pair = std::move(pending_);
  pending_ = LatentPairRecord();
  *done = true;
  return absl::OkStatus();
}

grpc::Status StoreCheckpointService::List(
    grpc::ServerContext* context,
    const lft::v1::ListJobCheckpointsRequest* request,
    lft::v1::ListCheckpointsResponse* response) {
  absl::Status s = auth_.Check(context->client_metadata());
  if (!s.ok()) return Err(s, "List");
  auto list = store_->ListCheckpoints(request->job_id());
  if (!list.ok()) return Err(list.status(), "List");
  AppendCheckpointInfos(*list, response);
  return grpc::Status::OK;
}

grpc::Status StoreCheckpointService::Pull(
    grpc::ServerContext* context, const lft::v1::PullCheckpointRequest* request,
    grpc::ServerWriter<lft::v1::CheckpointChunk>* writer) {
  absl::Status s = auth_.Check(context->client_metadata());
  if (!s.ok()) return Err(s, "Pull");
  auto name = ResolveCheckpointName(store_, request->job_id(), request->name());
  if (!name.ok()) return Err(name.status(), "Pull");
  return Err(
      StreamCheckpoint(store_, request->job_id(), *name, request->offset(),
                       [writer](const lft::v1::CheckpointChunk& c) {
                         return writer->Write(c);
                       }),
      "Pull");
}

StoreService::StoreService(LatentStore* store,
                           const StoreServiceOptions& options)
    : store_(store), options_(options), auth_(options.auth_token) {}

grpc::Status StoreService::Authorize(grpc::ServerContext* context,
                                     absl::string_view rpc) const {
  return Err(auth_.Check(context->client_metadata()), rpc);
}

grpc::Status StoreService::CreateJob(
    grpc::ServerContext* context, const lft::v1::CreateStoreJobRequest* request,
    lft::v1::CreateStoreJobResponse*) {
  if (grpc::Status a = Authorize(context, "CreateJob"); !a.ok()) return a;
  auto codec = CodecFromProto(request->dtype());
  if (!codec.ok()) return Err(codec.status(), "CreateJob");
  JobConfig config;
  config.hidden = request->hidden();
  config.codec = *codec;
  config.max_pending_pairs = request->max_pending_pairs();
  return Err(store_->CreateJob(request->job_id(), config), "CreateJob");
}

grpc::Status StoreService::PutPairs(
    grpc::ServerContext* context,
    grpc::ServerReader<lft::v1::PutPairsRequest>* reader,
    lft::v1::PutPairsResponse* response) {
  if (grpc::Status a = Authorize(context, "PutPairs"); !a.ok()) return a;
  lft::v1::PutPairsRequest request;
  std::string job;
  uint64_t pairs_written = 0;
  uint64_t bytes_written = 0;
  std::vector<LatentPairRecord> batch;
  PairPartAssembler assembler;
  while (reader->Read(&request)) {
    if (job.empty()) {
      job = request.job_id();
      if (job.empty()) {
        return Err(absl::InvalidArgumentError(
                       "the first PutPairsRequest must set job_id"),
                   "PutPairs");
      }
    } else if (!request.job_id().empty() && request.job_id() != job) {
      return Err(
          absl::InvalidArgumentError(absl::StrCat(
              "stream started with job '", job, "' but a message names '",
              request.job_id(), "'; use one stream per job")),
          "PutPairs");
    }
    batch.clear();
    if (request.has_pair_part() || assembler.in_progress()) {
      if (request.pairs_size() > 0) {
        return Err(absl::InvalidArgumentError(
                       "a message with pair_part (or one that follows a part "
                       "with pair_continues) must carry no pairs"),
                   "PutPairs");
      }
      bool done = false;
      batch.emplace_back();
      absl::Status s =
          assembler.Add(std::move(*request.mutable_pair_part()),
                        request.pair_continues(), &batch.back(), &done);
      if (!s.ok()) return Err(s, "PutPairs");
      if (!done) continue;
    }
    const size_t whole = static_cast<size_t>(request.pairs_size());
    if (whole > 0) batch.resize(whole);
    for (int i = 0; i < request.pairs_size(); ++i) {
      absl::Status s =
          PairFromProto(std::move(*request.mutable_pairs(i)), &batch[i]);
      if (!s.ok()) {
        return Err(Annotate(s, absl::StrCat("pair ", i)), "PutPairs");
      }
    }
    absl::Status s = store_->PutPairs(
        job, batch, CallDeadline(context, options_.max_put_wait));
    if (!s.ok()) return Err(s, "PutPairs");
    pairs_written += batch.size();
    for (const auto& p : batch) bytes_written += p.x0.size() + p.x1.size();
    // The payload strings go back into the request, whose next parse reuses
    // their capacity (protobuf clears a reused message without freeing), so
    // each message lands in memory already mapped instead of megabytes of
    // fresh pages faulted in per pair.
    for (int i = 0; i < request.pairs_size(); ++i) {
      request.mutable_pairs(i)->mutable_x0()->swap(batch[i].x0);
      request.mutable_pairs(i)->mutable_x1()->swap(batch[i].x1);
    }
  }
  if (assembler.in_progress()) {
    return Err(absl::InvalidArgumentError(
                   "the stream ended inside a pair sent in parts (the last "
                   "part must have pair_continues false)"),
               "PutPairs");
  }
  response->set_pairs_written(pairs_written);
  response->set_bytes_written(bytes_written);
  return grpc::Status::OK;
}

grpc::Status StoreService::ScanPairs(
    grpc::ServerContext* context, const lft::v1::ScanPairsRequest* request,
    grpc::ServerWriter<lft::v1::ScanPairsResponse>* writer) {
  if (grpc::Status a = Authorize(context, "ScanPairs"); !a.ok()) return a;
  if (request->decode_to() != lft::v1::TENSOR_DTYPE_UNSPECIFIED) {
    return Err(absl::InvalidArgumentError(
                   "decode_to is not supported; leave it unspecified and "
                   "decode on the client with common/tensor/tensor_codec.h"),
               "ScanPairs");
  }
  ScanOptions options;
  options.partition = request->partition();
  // 0 is refused by Scan ("need partitions >= 1"), not taken as 1: a reader
  // that forgot the field would otherwise read every partition.
  options.partitions = request->partitions();
  options.shuffle = request->shuffle();
  options.seed = request->seed();
  options.epoch = request->epoch();
  options.start_block = request->start_block();
  options.skip_pairs = request->skip_pairs();
  options.range_begin = request->range_begin();
  options.range_pairs = request->range_pairs();
  if (request->block_pairs() != 0) options.block_pairs = request->block_pairs();
  options.interleave_index = request->interleave_index();
  options.interleave_count = request->interleave_count();
  if (options.interleave_count > 1) {
    // One of a client's several streams over the same partition: together
    // they hold what one stream would, in read-ahead memory and threads.
    const ScanOptions defaults;
    options.readahead_pairs = std::max<uint32_t>(
        2, defaults.readahead_pairs / options.interleave_count);
    options.read_threads =
        std::max<uint32_t>(1, defaults.read_threads / options.interleave_count);
  }
  auto reader = store_->Scan(request->job_id(), options);
  if (!reader.ok()) return Err(reader.status(), "ScanPairs");
  // The client's limit (gRPC's default 4 MiB if it names none), at most
  // ours. Half of it per response: the other half is headroom for framing
  // and for a pair that lands just under the limit. A pair over half the
  // limit goes in parts.
  const uint64_t limit = request->max_message_bytes() == 0
                             ? std::min<uint64_t>(kDefaultClientMessageBytes,
                                                  options_.max_message_bytes)
                             : std::min<uint64_t>(request->max_message_bytes(),
                                                  options_.max_message_bytes);
  // A limit under 64 KiB is taken as 64 KiB: parts need room for framing.
  const uint64_t budget = std::max<uint64_t>(limit, 64 << 10) / 2;
  lft::v1::ScanPairsResponse response;
  uint64_t bytes = 0;
  LatentPairRecord pair;
  while (true) {
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "client cancelled");
    }
    auto more = (*reader)->Next(&pair);
    if (!more.ok()) return Err(more.status(), "ScanPairs");
    if (!*more) break;
    const uint64_t b = PairWireBytes(pair);
    if (b > budget) {
      if (response.pairs_size() > 0 && !writer->Write(response)) {
        return grpc::Status(grpc::StatusCode::CANCELLED,
                            "client went away during ScanPairs");
      }
      response.Clear();
      bytes = 0;
      const bool sent = SplitPairIntoParts(
          pair, budget - 4096, [&](lft::v1::LatentPair&& part, bool continues) {
            lft::v1::ScanPairsResponse message;
            *message.mutable_pair_part() = std::move(part);
            message.set_pair_continues(continues);
            return writer->Write(message);
          });
      if (!sent) {
        return grpc::Status(grpc::StatusCode::CANCELLED,
                            "client went away during ScanPairs");
      }
      continue;
    }
    if (response.pairs_size() > 0 && bytes + b > budget) {
      // Write blocks while the client's flow-control window is full.
      if (!writer->Write(response)) {
        return grpc::Status(grpc::StatusCode::CANCELLED,
                            "client went away during ScanPairs");
      }
      response.Clear();
      bytes = 0;
    }
    PairToProto(std::move(pair), response.add_pairs());
    bytes += b;
  }
  if (response.pairs_size() > 0 && !writer->Write(response)) {
    return grpc::Status(grpc::StatusCode::CANCELLED,
                        "client went away during ScanPairs");
  }
  return grpc::Status::OK;
}

grpc::Status StoreService::Stats(grpc::ServerContext* context,
                                 const lft::v1::StoreStatsRequest* request,
                                 lft::v1::StoreStatsResponse* response) {
  if (grpc::Status a = Authorize(context, "Stats"); !a.ok()) return a;
  auto stats = store_->Stats(request->job_id());
  if (!stats.ok()) return Err(stats.status(), "Stats");
  response->set_pairs(stats->pairs);
  response->set_tokens(stats->tokens);
  response->set_bytes(stats->bytes);
  response->set_checkpoints(stats->checkpoints);
  response->set_reports(stats->reports);
  response->set_consumed_pairs(stats->consumed);
  response->set_pending_pairs(stats->pending);
  response->set_sealed_shards(stats->sealed_shards);
  response->set_stream_prefix_pairs(stats->stream_prefix_pairs);
  return grpc::Status::OK;
}

grpc::Status StoreService::PutCheckpoint(
    grpc::ServerContext* context,
    grpc::ServerReader<lft::v1::CheckpointChunk>* reader,
    lft::v1::PutCheckpointResponse* response) {
  if (grpc::Status a = Authorize(context, "PutCheckpoint"); !a.ok()) return a;
  lft::v1::CheckpointChunk chunk;
  std::unique_ptr<CheckpointWriter> writer;
  while (reader->Read(&chunk)) {
    if (writer == nullptr) {
      auto w =
          store_->StartCheckpoint(chunk.job_id(), chunk.name(), chunk.sha256());
      if (!w.ok()) return Err(w.status(), "PutCheckpoint");
      writer = *std::move(w);
    }
    absl::Status s = writer->Append(chunk.data());
    if (!s.ok()) return Err(s, "PutCheckpoint");
  }
  if (writer == nullptr) {
    return Err(
        absl::InvalidArgumentError(
            "empty stream: the first chunk must name job and checkpoint"),
        "PutCheckpoint");
  }
  auto info = writer->Commit();
  if (!info.ok()) return Err(info.status(), "PutCheckpoint");
  response->set_name(info->name);
  response->set_bytes(info->bytes);
  response->set_sha256(info->sha256);
  return grpc::Status::OK;
}

grpc::Status StoreService::GetCheckpoint(
    grpc::ServerContext* context, const lft::v1::GetCheckpointRequest* request,
    grpc::ServerWriter<lft::v1::CheckpointChunk>* writer) {
  if (grpc::Status a = Authorize(context, "GetCheckpoint"); !a.ok()) return a;
  return Err(StreamCheckpoint(store_, request->job_id(), request->name(),
                              request->offset(),
                              [writer](const lft::v1::CheckpointChunk& c) {
                                return writer->Write(c);
                              }),
             "GetCheckpoint");
}

grpc::Status StoreService::ListCheckpoints(
    grpc::ServerContext* context,
    const lft::v1::ListCheckpointsRequest* request,
    lft::v1::ListCheckpointsResponse* response) {
  if (grpc::Status a = Authorize(context, "ListCheckpoints"); !a.ok()) return a;
  auto list = store_->ListCheckpoints(request->job_id());
  if (!list.ok()) return Err(list.status(), "ListCheckpoints");
  AppendCheckpointInfos(*list, response);
  return grpc::Status::OK;
}

grpc::Status StoreService::DeleteCheckpoint(
    grpc::ServerContext* context,
    const lft::v1::DeleteCheckpointRequest* request,
    lft::v1::DeleteCheckpointResponse*) {
  if (grpc::Status a = Authorize(context, "DeleteCheckpoint"); !a.ok())
    return a;
  return Err(store_->DeleteCheckpoint(request->job_id(), request->name()),
             "DeleteCheckpoint");
}

grpc::Status StoreService::KeepLastCheckpoints(
    grpc::ServerContext* context,
    const lft::v1::KeepLastCheckpointsRequest* request,
    lft::v1::KeepLastCheckpointsResponse* response) {
  if (grpc::Status a = Authorize(context, "KeepLastCheckpoints"); !a.ok())
    return a;
  auto deleted =
      store_->KeepLastCheckpoints(request->job_id(), request->keep());
  if (!deleted.ok()) return Err(deleted.status(), "KeepLastCheckpoints");
  response->set_deleted(*deleted);
  return grpc::Status::OK;
}

grpc::Status StoreService::GetWriteSession(
    grpc::ServerContext* context, const lft::v1::GetWriteSessionRequest*,
    lft::v1::GetWriteSessionResponse* response) {
  if (grpc::Status a = Authorize(context, "GetWriteSession"); !a.ok()) return a;
  auto session = store_->WriteSession();
  if (!session.ok()) return Err(session.status(), "GetWriteSession");
  response->set_write_session(*session);
  return grpc::Status::OK;
}

grpc::Status StoreService::SyncPairs(grpc::ServerContext* context,
                                     const lft::v1::SyncPairsRequest* request,
                                     lft::v1::SyncPairsResponse*) {
  if (grpc::Status a = Authorize(context, "SyncPairs"); !a.ok()) return a;
  return Err(store_->SyncPairs(request->job_id(), request->write_session()),
             "SyncPairs");
}

grpc::Status StoreService::AckPairs(grpc::ServerContext* context,
                                    const lft::v1::AckPairsRequest* request,
                                    lft::v1::AckPairsResponse*) {
  if (grpc::Status a = Authorize(context, "AckPairs"); !a.ok()) return a;
  return Err(store_->AckConsumed(request->job_id(), request->pairs()),
             "AckPairs");
}

grpc::Status StoreService::SealShard(grpc::ServerContext* context,
                                     const lft::v1::SealShardRequest* request,
                                     lft::v1::SealShardResponse*) {
  if (grpc::Status a = Authorize(context, "SealShard"); !a.ok()) return a;
  return Err(
      store_->SealShard(request->job_id(), request->shard(), request->pairs()),
      "SealShard");
}

grpc::Status StoreService::DeletePairs(
    grpc::ServerContext* context,
    const lft::v1::DeleteStorePairsRequest* request,
    lft::v1::DeleteStorePairsResponse*) {
  if (grpc::Status a = Authorize(context, "DeletePairs"); !a.ok()) return a;
  return Err(store_->DeletePairs(request->job_id()), "DeletePairs");
}

grpc::Status StoreService::DeleteJob(
    grpc::ServerContext* context, const lft::v1::DeleteStoreJobRequest* request,
    lft::v1::DeleteStoreJobResponse*) {
  if (grpc::Status a = Authorize(context, "DeleteJob"); !a.ok()) return a;
  return Err(store_->DeleteJob(request->job_id()), "DeleteJob");
}

}  // namespace lft
