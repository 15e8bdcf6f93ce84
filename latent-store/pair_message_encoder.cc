#include "latent-store/pair_message_encoder.h"

#include <utility>

#include "latent-store/store_service.h"

namespace lft {
namespace {

// Wire types (protobuf encoding).
constexpr uint32_t kVarint = 0;
constexpr uint32_t kLengthDelimited = 2;

void PutVarint(uint64_t v, std::string* out) {
  while (v >= 0x80) {
    out->push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out->push_back(static_cast<char>(v));
}

size_t VarintSize(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    ++n;
  }
  return n;
}

void PutTag(int field, uint32_t wire_type, std::string* out) {
  PutVarint((static_cast<uint64_t>(field) << 3) | wire_type, out);
}

// proto3 leaves scalar fields at their default out of the message.
void PutVarintField(int field, uint64_t v, std::string* out) {
  if (v == 0) return;
  PutTag(field, kVarint, out);
  PutVarint(v, out);
}

// int32 and enum values are sign-extended to 64 bits on the wire.
uint64_t Int32OnWire(int32_t v) {
  return static_cast<uint64_t>(static_cast<int64_t>(v));
}

}  // namespace

LentPayloads::~LentPayloads() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&AllReturned, &outstanding_));
}

grpc::Slice LentPayloads::Lend(absl::string_view bytes) {
  {
    absl::MutexLock lock(&mu_);
    ++outstanding_;
  }
  // gRPC never writes into a slice it sends; the non-const pointer is only
  // what the constructor's signature asks for.
  return grpc::Slice(const_cast<char*>(bytes.data()), bytes.size(),
                     &LentPayloads::Return, this);
}

void LentPayloads::Return(void* self) {
  auto* lender = static_cast<LentPayloads*>(self);
  absl::MutexLock lock(&lender->mu_);
  --lender->outstanding_;
}

bool LentPayloads::AwaitReturned(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&AllReturned, &outstanding_),
                              timeout);
}

int64_t LentPayloads::outstanding() const {
  absl::MutexLock lock(&mu_);
  return outstanding_;
}

void PairMessageEncoder::AddString(int field, absl::string_view value) {
  if (value.empty()) return;
  const size_t before = small_.size();
  PutTag(field, kLengthDelimited, &small_);
  PutVarint(value.size(), &small_);
  small_.append(value.data(), value.size());
  bytes_ += small_.size() - before;
}

void PairMessageEncoder::AddPair(int field, const LatentPairRecord& pair) {
  // Field numbers of lft.v1.LatentPair.
  std::string head;
  PutVarintField(1, pair.shard, &head);
  PutVarintField(2, pair.sequence, &head);
  PutVarintField(3, pair.chunk, &head);
  PutVarintField(4, pair.tokens, &head);
  PutVarintField(5, pair.hidden, &head);
  PutVarintField(6, Int32OnWire(CodecToProto(pair.codec)), &head);
  size_t ids_bytes = 0;
  for (int32_t id : pair.token_ids) ids_bytes += VarintSize(Int32OnWire(id));
  auto payload_field_bytes = [](const std::string& x) -> uint64_t {
    return x.empty() ? 0 : 1 + VarintSize(x.size()) + x.size();
  };
  const uint64_t pair_bytes =
      head.size() + payload_field_bytes(pair.x0) +
      payload_field_bytes(pair.x1) +
      (ids_bytes == 0 ? 0 : 1 + VarintSize(ids_bytes) + ids_bytes);

  const size_t before = small_.size();
  PutTag(field, kLengthDelimited, &small_);
  PutVarint(pair_bytes, &small_);
  small_ += head;
  bytes_ += small_.size() - before + pair_bytes - head.size();
  auto add_payload = [&](int payload_field, const std::string& x) {
    if (x.empty()) return;
    PutTag(payload_field, kLengthDelimited, &small_);
    PutVarint(x.size(), &small_);
    FlushSmall();
    slices_.push_back(lender_->Lend(x));
  };
  add_payload(7, pair.x0);
  add_payload(8, pair.x1);
  if (ids_bytes > 0) {
    PutTag(9, kLengthDelimited, &small_);
    PutVarint(ids_bytes, &small_);
    for (int32_t id : pair.token_ids) PutVarint(Int32OnWire(id), &small_);
  }
}

void PairMessageEncoder::FlushSmall() {
  if (small_.empty()) return;
  slices_.emplace_back(small_);  // copies: a few bytes
  small_.clear();
}

grpc::ByteBuffer PairMessageEncoder::Finish() {
  FlushSmall();
  grpc::ByteBuffer buffer(slices_.data(), slices_.size());
  slices_.clear();
  bytes_ = 0;
  return buffer;
}

}  // namespace lft
