// Builds a PutPairsRequest on the wire as a grpc::ByteBuffer whose payload
// slices are the pairs' own x0/x1 bytes.
// Protobuf's path copies every payload byte twice before the socket (into
// the request's strings, then into the serialised message's buffer); at 8
// MiB per pair and ~2 GB/s per teacher that was a core's worth of memmove
// and page faults per stream, on the put path's critical latency. The
// bytes produced are exactly what protobuf's serialiser writes for the same
// message (the test checks it), so the server parses them as before.
#ifndef LFT_LATENT_STORE_PAIR_MESSAGE_ENCODER_H_
#define LFT_LATENT_STORE_PAIR_MESSAGE_ENCODER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/support/byte_buffer.h"
#include "grpcpp/support/slice.h"
#include "latent-store/pair_store.h"

namespace lft {

// Lends payload bytes to gRPC without copying them: each Lend is a slice
// that points into the caller's memory and reports back when gRPC drops it.
// The transport can hold a message's slices past the Write that sent them
// (until its socket write completes), so the owner of the bytes calls
// AwaitReturned after the call is over and before the bytes go away.
// Thread-safe: gRPC drops slices on its own threads.
class LentPayloads {
 public:
  LentPayloads() = default;
  LentPayloads(const LentPayloads&) = delete;
  LentPayloads& operator=(const LentPayloads&) = delete;
  // Waits for every slice still out (AwaitReturned without a limit).
  ~LentPayloads();

  grpc::Slice Lend(absl::string_view bytes);
  // True once every lent slice was dropped, false at `timeout`.
  bool AwaitReturned(absl::Duration timeout);
  int64_t outstanding() const;

 private:
  static void Return(void* self);
  static bool AllReturned(int64_t* outstanding) { return *outstanding == 0; }

  mutable absl::Mutex mu_;
  int64_t outstanding_ ABSL_GUARDED_BY(mu_) = 0;
};

// Accumulates one message: string fields and LatentPair fields in the order
// added (protobuf writes fields in number order; add them that way for the
// bytes to match its serialiser).
class PairMessageEncoder {
 public:
  // Payloads are lent from `lender`, which must outlive the message's use.
  explicit PairMessageEncoder(LentPayloads* lender) : lender_(lender) {}

  void AddString(int field, absl::string_view value);
  // One LatentPair as field `field` (a repeated or singular message field).
  void AddPair(int field, const LatentPairRecord& pair);

  // Bytes of the message so far.
  uint64_t bytes() const { return bytes_; }
  bool empty() const { return bytes_ == 0; }
  // The message; the encoder is empty again afterwards.
  grpc::ByteBuffer Finish();

 private:
  // Small fields gather here and become one copied slice when a payload
  // slice (or the end) follows.
  void FlushSmall();

  LentPayloads* const lender_;
  std::string small_;
  std::vector<grpc::Slice> slices_;
  uint64_t bytes_ = 0;
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_PAIR_MESSAGE_ENCODER_H_
