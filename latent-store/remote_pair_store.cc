#include "latent-store/remote_pair_store.h"

#include <openssl/evp.h>

#include <algorithm>
#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/base/log.h"
#include "common/base/status.h"
#include "common/rpc/auth.h"
#include "common/rpc/channel.h"
#include "common/rpc/grpc_status.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/sync_stream.h"
#include "latent-store/interleaved_pair_reader.h"
#include "latent-store/pair_message_encoder.h"
#include "latent-store/prefetching_pair_reader.h"
#include "latent-store/store_service.h"

namespace lft {
namespace {

class RemotePairReader : public PairReader {
 public:
  RemotePairReader(lft::v1::LatentStoreService::Stub* stub,
                   const lft::v1::ScanPairsRequest& request,
                   const std::string& token) {
    AttachBearerToken(&context_, token);
    stream_ = stub->ScanPairs(&context_, request);
  }
  ~RemotePairReader() override {
    if (!finished_) {
      context_.TryCancel();
      lft::v1::ScanPairsResponse drain;
      while (stream_->Read(&drain)) {
      }
      stream_->Finish().error_code();  // status of a cancelled call: ignored
    }
  }

  // gRPC's TryCancel is safe beside a Read on another thread: the Read
  // then fails and Next returns the call's CANCELLED status.
  void Cancel() override { context_.TryCancel(); }

  absl::StatusOr<bool> Next(LatentPairRecord* pair) override {
    while (buffer_.empty()) {
      if (finished_) {
        if (!status_.ok()) return status_;
        return false;
      }
      lft::v1::ScanPairsResponse response;
      if (!stream_->Read(&response)) {
        finished_ = true;
        status_ = FromGrpcStatus(stream_->Finish());
        continue;
      }
      for (auto& p : *response.mutable_pairs()) buffer_.push_back(std::move(p));
      if (response.has_pair_part()) {
        // A pair over half the message limit, in parts.
        bool done = false;
        LatentPairRecord whole;
        absl::Status s =
            assembler_.Add(std::move(*response.mutable_pair_part()),
                           response.pair_continues(), &whole, &done);
        if (!s.ok()) return absl::DataLossError(s.message());
        if (done) {
          lft::v1::LatentPair proto;
          PairToProto(std::move(whole), &proto);
          buffer_.push_back(std::move(proto));
        }
      }
    }
    absl::Status s = PairFromProto(std::move(buffer_.front()), pair);
    buffer_.pop_front();
    if (!s.ok()) return absl::DataLossError(s.message());
    return true;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<lft::v1::ScanPairsResponse>> stream_;
  std::deque<lft::v1::LatentPair> buffer_;
  PairPartAssembler assembler_;
  bool finished_ = false;
  absl::Status status_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<RemotePairStore>> RemotePairStore::Connect(
    const std::string& target, const RemotePairStoreOptions& options) {
  ClientSecurityOptions security;
  security.tls_ca_path = options.credentials.tls_ca_path;
  security.insecure = options.credentials.insecure;
  auto creds = MakeChannelCredentials(security, target);
  if (!creds.ok()) {
    return Annotate(creds.status(), absl::StrCat("store ", target));
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(static_cast<int>(options.max_message_bytes));
  args.SetMaxSendMessageSize(static_cast<int>(options.max_message_bytes));
  // A restarted store is found again within seconds, not after gRPC's
  // default reconnect backoff of up to two minutes.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
  auto channel = grpc::CreateCustomChannel(target, *creds, args);
  // Channels with equal arguments share their subchannel (one connection);
  // a local subchannel pool and an index of its own give each data channel
  // a connection of its own.
  std::vector<std::shared_ptr<grpc::Channel>> data;
  for (uint32_t i = 0; i < std::max<uint32_t>(1, options.data_channels); ++i) {
    grpc::ChannelArguments data_args = args;
    data_args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    data_args.SetInt("lft.data_channel", static_cast<int>(i));
    ApplyBulkTransferSettings(&data_args);
    data.push_back(grpc::CreateCustomChannel(target, *creds, data_args));
  }
  return std::unique_ptr<RemotePairStore>(
      new RemotePairStore(std::move(channel), std::move(data), options));
}

RemotePairStore::RemotePairStore(
    std::shared_ptr<grpc::Channel> channel,
    std::vector<std::shared_ptr<grpc::Channel>> data_channels,
    const RemotePairStoreOptions& options)
    : options_(options),
      channel_(std::move(channel)),
      stub_(lft::v1::LatentStoreService::NewStub(channel_)) {
  static const std::string* const put_pairs_method =
      new std::string(absl::StrCat(
          "/", lft::v1::LatentStoreService::service_full_name(), "/PutPairs"));
  for (auto& c : data_channels) {
    auto stub = lft::v1::LatentStoreService::NewStub(c);
    grpc::internal::RpcMethod put_pairs(
        put_pairs_method->c_str(), grpc::internal::RpcMethod::CLIENT_STREAMING,
        c);
    data_channels_.push_back(
        DataChannel{std::move(c), std::move(stub), put_pairs});
  }
}

const RemotePairStore::DataChannel& RemotePairStore::NextDataChannel() const {
  const uint32_t i = next_data_.fetch_add(1, std::memory_order_relaxed);
  return data_channels_[i % data_channels_.size()];
}

void RemotePairStore::SetDeadline(grpc::ClientContext* context) const {
  AttachBearerToken(context, options_.credentials.token);
  context->set_deadline(absl::ToChronoTime(absl::Now() + options_.rpc_timeout));
}

absl::Status RemotePairStore::CreateJob(absl::string_view job,
                                        const JobConfig& config) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::CreateStoreJobRequest request;
  request.set_job_id(std::string(job));
  request.set_hidden(config.hidden);
  request.set_dtype(CodecToProto(config.codec));
  request.set_max_pending_pairs(config.max_pending_pairs);
  lft::v1::CreateStoreJobResponse response;
  return FromGrpcStatus(stub_->CreateJob(&context, request, &response));
}

absl::Status RemotePairStore::PutPairs(absl::string_view job,
                                       absl::Span<const LatentPairRecord> pairs,
                                       absl::Time deadline) {
  const uint64_t budget = options_.max_message_bytes - (64 << 10);
  const uint64_t target =
      std::clamp<uint64_t>(options_.put_message_bytes, 1, budget);
  // Declared before the call so that it outlives it: the transport may hold
  // the lent payload slices until its socket write completes.
  LentPayloads lent;
  lft::v1::PutPairsResponse response;
  absl::Status status;
  {
    grpc::ClientContext context;
    AttachBearerToken(&context, options_.credentials.token);
    if (deadline != absl::InfiniteFuture()) {
      context.set_deadline(absl::ToChronoTime(deadline));
    }
    const DataChannel& channel = NextDataChannel();
    // The generated stub only writes PutPairsRequest objects; this writer
    // sends the encoder's ByteBuffers on the same method.
    std::unique_ptr<grpc::ClientWriter<grpc::ByteBuffer>> stream(
        grpc::internal::ClientWriterFactory<grpc::ByteBuffer>::Create(
            channel.channel.get(), channel.put_pairs, &context, &response));
    PairMessageEncoder message(&lent);
    bool holds_pairs = false;
    auto send = [&]() -> bool {
      holds_pairs = false;
      return stream->Write(message.Finish());
    };
    bool ok = true;
    for (const LatentPairRecord& p : pairs) {
      const uint64_t b = PairWireBytes(p);
      if (b > budget) {
        // Over one message: the pending batch, then this pair in parts, each
        // in a message of its own.
        if (holds_pairs && !send()) {
          ok = false;
          break;
        }
        ok = SplitPairIntoParts(
            p, budget / 2, [&](lft::v1::LatentPair&& part, bool continues) {
              lft::v1::PutPairsRequest request;
              request.set_job_id(std::string(job));
              *request.mutable_pair_part() = std::move(part);
              request.set_pair_continues(continues);
              grpc::ByteBuffer buffer;
              bool own = false;
              return grpc::SerializationTraits<
                         lft::v1::PutPairsRequest>::Serialize(request, &buffer,
                                                              &own)
                         .ok() &&
                     stream->Write(buffer);
            });
        if (!ok) break;
        continue;
      }
      if (holds_pairs && message.bytes() + b > budget && !send()) {
        ok = false;
        break;
      }
      if (!holds_pairs) message.AddString(1, job);  // PutPairsRequest.job_id
      message.AddPair(2, p);                        // PutPairsRequest.pairs
      holds_pairs = true;
      // Messages of about one pair let the server write one while the next
      // arrives, instead of waiting for a whole batch (issue 12's profile).
      if (message.bytes() >= target && !send()) {
        ok = false;
        break;
      }
    }
    if (ok && holds_pairs) ok = send();
    if (ok) stream->WritesDone();
    status = FromGrpcStatus(stream->Finish());
  }
  if (!lent.AwaitReturned(absl::Seconds(30))) {
    LogWarning(
        "gRPC still holds PutPairs payload slices 30 s after the call ended; "
        "waiting for them before the pairs' memory is released",
        {{"slices", lent.outstanding()}});
  }
  if (!status.ok()) return status;
  if (response.pairs_written() != pairs.size()) {
    return absl::InternalError(absl::StrCat("store acknowledged ",
                                            response.pairs_written(), " of ",
                                            pairs.size(), " pairs"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> RemotePairStore::WriteSession() {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::GetWriteSessionResponse response;
  LFT_RETURN_IF_ERROR(FromGrpcStatus(stub_->GetWriteSession(
      &context, lft::v1::GetWriteSessionRequest(), &response)));
  return response.write_session();
}

absl::Status RemotePairStore::SyncPairs(absl::string_view job,
                                        absl::string_view session) {
  // A flush of several memtables can take seconds: no short RPC deadline.
  grpc::ClientContext context;
  AttachBearerToken(&context, options_.credentials.token);
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Minutes(10)));
  lft::v1::SyncPairsRequest request;
  request.set_job_id(std::string(job));
  request.set_write_session(std::string(session));
  lft::v1::SyncPairsResponse response;
  return FromGrpcStatus(stub_->SyncPairs(&context, request, &response));
}

absl::Status RemotePairStore::AckConsumed(absl::string_view job,
                                          uint64_t pairs) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::AckPairsRequest request;
  request.set_job_id(std::string(job));
  request.set_pairs(pairs);
  lft::v1::AckPairsResponse response;
  return FromGrpcStatus(stub_->AckPairs(&context, request, &response));
}

absl::Status RemotePairStore::SealShard(absl::string_view job, uint32_t shard,
                                        uint64_t pairs) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::SealShardRequest request;
  request.set_job_id(std::string(job));
  request.set_shard(shard);
  request.set_pairs(pairs);
  lft::v1::SealShardResponse response;
  return FromGrpcStatus(stub_->SealShard(&context, request, &response));
}

absl::StatusOr<std::unique_ptr<PairReader>> RemotePairStore::Scan(
    absl::string_view job, const ScanOptions& options) {
  lft::v1::ScanPairsRequest request;
  request.set_job_id(std::string(job));
  request.set_partition(options.partition);
  request.set_partitions(options.partitions);
  request.set_shuffle(options.shuffle);
  request.set_seed(options.seed);
  request.set_epoch(options.epoch);
  request.set_start_block(options.start_block);
  request.set_skip_pairs(options.skip_pairs);
  request.set_block_pairs(options.block_pairs);
  request.set_range_begin(options.range_begin);
  request.set_range_pairs(options.range_pairs);
  request.set_interleave_index(options.interleave_index);
  request.set_interleave_count(options.interleave_count);
  // Our channel accepts this much: the server packs up to half of it per
  // message and sends only larger pairs in parts.
  request.set_max_message_bytes(static_cast<uint32_t>(
      std::min<uint64_t>(options_.max_message_bytes, 0xFFFFFFFFull)));
  const uint32_t streams = options.interleave_count > 1
                               ? 1
                               : std::max<uint32_t>(1, options_.scan_streams);
  if (streams == 1) {
    return std::unique_ptr<PairReader>(new RemotePairReader(
        NextDataChannel().stub.get(), request, options_.credentials.token));
  }
  // The streams share the read-ahead one reader would hold.
  const size_t depth =
      std::max<size_t>(1, (options.readahead_pairs + streams - 1) / streams);
  std::vector<std::unique_ptr<PairReader>> slices;
  request.set_interleave_count(streams);
  for (uint32_t j = 0; j < streams; ++j) {
    request.set_interleave_index(j);
    slices.push_back(std::make_unique<PrefetchingPairReader>(
        std::make_unique<RemotePairReader>(NextDataChannel().stub.get(),
                                           request, options_.credentials.token),
        depth));
  }
  return std::unique_ptr<PairReader>(
      new InterleavedPairReader(std::move(slices)));
}

absl::StatusOr<JobStats> RemotePairStore::Stats(absl::string_view job) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::StoreStatsRequest request;
  request.set_job_id(std::string(job));
  lft::v1::StoreStatsResponse response;
  LFT_RETURN_IF_ERROR(
      FromGrpcStatus(stub_->Stats(&context, request, &response)));
  JobStats stats;
  stats.pairs = response.pairs();
  stats.tokens = response.tokens();
  stats.bytes = response.bytes();
  stats.checkpoints = response.checkpoints();
  stats.reports = response.reports();
  stats.consumed = response.consumed_pairs();
  stats.pending = response.pending_pairs();
  stats.sealed_shards = response.sealed_shards();
  stats.stream_prefix_pairs = response.stream_prefix_pairs();
  return stats;
}

absl::StatusOr<CheckpointInfo> RemotePairStore::PutCheckpoint(
    absl::string_view job, absl::string_view name, absl::string_view data,
    absl::string_view expected_sha256) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::PutCheckpointResponse response;
  auto stream = stub_->PutCheckpoint(&context, &response);
  lft::v1::CheckpointChunk chunk;
  chunk.set_job_id(std::string(job));
  chunk.set_name(std::string(name));
  chunk.set_sha256(std::string(expected_sha256));
  chunk.set_total_bytes(data.size());
  bool ok = true;
  size_t offset = 0;
  do {
    const size_t take =
        std::min<size_t>(data.size() - offset, options_.checkpoint_chunk_bytes);
    chunk.set_data(std::string(data.substr(offset, take)));
    offset += take;
    ok = stream->Write(chunk);
    chunk.clear_job_id();
    chunk.clear_name();
    chunk.clear_sha256();
  } while (ok && offset < data.size());
  if (ok) stream->WritesDone();
  LFT_RETURN_IF_ERROR(FromGrpcStatus(stream->Finish()));
  CheckpointInfo info;
  info.name = response.name();
  info.bytes = response.bytes();
  info.sha256 = response.sha256();
  return info;
}

absl::StatusOr<CheckpointInfo> RemotePairStore::ReadCheckpoint(
    absl::string_view job, absl::string_view name, uint64_t offset,
    const CheckpointSink& sink) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::GetCheckpointRequest request;
  request.set_job_id(std::string(job));
  request.set_name(std::string(name));
  request.set_offset(offset);
  auto stream = stub_->GetCheckpoint(&context, request);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> sha(EVP_MD_CTX_new(),
                                                              &EVP_MD_CTX_free);
  EVP_DigestInit_ex(sha.get(), EVP_sha256(), nullptr);
  lft::v1::CheckpointChunk chunk;
  CheckpointInfo info;
  uint64_t received = 0;
  bool first = true;
  absl::Status sink_status;
  while (stream->Read(&chunk)) {
    if (first) {
      info.name = chunk.name();
      info.sha256 = absl::AsciiStrToLower(chunk.sha256());
      info.bytes = chunk.total_bytes();
      first = false;
    }
    EVP_DigestUpdate(sha.get(), chunk.data().data(), chunk.data().size());
    received += chunk.data().size();
    sink_status = sink(info, chunk.data());
    if (!sink_status.ok()) {
      context.TryCancel();
      while (stream->Read(&chunk)) {
      }
      stream->Finish().error_code();  // cancelled by us: the sink's error wins
      return sink_status;
    }
  }
  LFT_RETURN_IF_ERROR(FromGrpcStatus(stream->Finish()));
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_DigestFinal_ex(sha.get(), digest, &len);
  const std::string hex = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
  if (first) {
    return absl::DataLossError(absl::StrCat(
        "checkpoint '", name, "' of job '", job,
        "': the store ended the stream without sending its header"));
  }
  if (offset > 0) {
    if (received != info.bytes - std::min(offset, info.bytes)) {
      return absl::DataLossError(absl::StrCat(
          "checkpoint '", name, "' of job '", job, "' arrived as ", received,
          " bytes from offset ", offset, " but the store recorded ", info.bytes,
          " bytes in all"));
    }
    return info;
  }
  if (hex != info.sha256 || received != info.bytes) {
    return absl::DataLossError(absl::StrCat(
        "checkpoint '", name, "' of job '", job, "' arrived as ", received,
        " bytes with sha256 ", hex, " but the store recorded ", info.bytes,
        " bytes with sha256 ", info.sha256));
  }
  return info;
}

absl::StatusOr<std::string> RemotePairStore::GetCheckpoint(
    absl::string_view job, absl::string_view name) {
  std::string out;
  LFT_RETURN_IF_ERROR(ReadCheckpoint(job, name,
                                     [&out](const CheckpointInfo& info,
                                            absl::string_view data) {
                                       if (out.empty()) out.reserve(info.bytes);
                                       out.append(data.data(), data.size());
                                       return absl::OkStatus();
                                     })
                          .status());
  return out;
}

absl::StatusOr<std::vector<CheckpointInfo>> RemotePairStore::ListCheckpoints(
    absl::string_view job) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::ListCheckpointsRequest request;
  request.set_job_id(std::string(job));
  lft::v1::ListCheckpointsResponse response;
  LFT_RETURN_IF_ERROR(
      FromGrpcStatus(stub_->ListCheckpoints(&context, request, &response)));
  std::vector<CheckpointInfo> out;
  for (const auto& c : response.checkpoints()) {
    CheckpointInfo info;
    info.name = c.name();
    info.bytes = c.bytes();
    info.sha256 = c.sha256();
    info.created_unix_ms = c.created_unix_ms();
    out.push_back(std::move(info));
  }
  return out;
}

absl::Status RemotePairStore::DeleteCheckpoint(absl::string_view job,
                                               absl::string_view name) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::DeleteCheckpointRequest request;
  request.set_job_id(std::string(job));
  request.set_name(std::string(name));
  lft::v1::DeleteCheckpointResponse response;
  return FromGrpcStatus(stub_->DeleteCheckpoint(&context, request, &response));
}

absl::StatusOr<uint64_t> RemotePairStore::KeepLastCheckpoints(
    absl::string_view job, uint64_t keep) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::KeepLastCheckpointsRequest request;
  request.set_job_id(std::string(job));
  request.set_keep(keep);
  lft::v1::KeepLastCheckpointsResponse response;
  LFT_RETURN_IF_ERROR(
      FromGrpcStatus(stub_->KeepLastCheckpoints(&context, request, &response)));
  return response.deleted();
}

absl::Status RemotePairStore::DeletePairs(absl::string_view job) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::DeleteStorePairsRequest request;
  request.set_job_id(std::string(job));
  lft::v1::DeleteStorePairsResponse response;
  return FromGrpcStatus(stub_->DeletePairs(&context, request, &response));
}

absl::Status RemotePairStore::DeleteJob(absl::string_view job) {
  grpc::ClientContext context;
  SetDeadline(&context);
  lft::v1::DeleteStoreJobRequest request;
  request.set_job_id(std::string(job));
  lft::v1::DeleteStoreJobResponse response;
  return FromGrpcStatus(stub_->DeleteJob(&context, request, &response));
}

}  // namespace lft
