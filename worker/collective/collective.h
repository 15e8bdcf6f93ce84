// Collective communication for data-parallel trainers, behind one small
// torch-free interface so that the trainer's control loop is tested with
// fakes and the transport is chosen at run time: Gloo over TCP on CPUs, NCCL
// on GPUs.
//
// Rendezvous: rank 0 creates the group's communicator id (for Gloo, the
// address of a key-value server it hosts; for NCCL, ncclGetUniqueId's 128
// bytes); the coordinator relays it to the other ranks (WorkerService.
// Rendezvous); every rank then calls Create with the same id.
#ifndef LFT_WORKER_COLLECTIVE_COLLECTIVE_H_
#define LFT_WORKER_COLLECTIVE_COLLECTIVE_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace lft {

enum class CollectiveDtype { kF32, kBF16 };

// One member of a communicator group. Calls are collective: every rank must
// make the same calls in the same order. Not thread-safe; one trainer thread
// drives it.
class Collective {
 public:
  virtual ~Collective() = default;

  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Sums `count` elements at `data` over all ranks, in place. `data` is host
  // memory for Gloo and device memory for NCCL (on the stream given at
  // creation). DeadlineExceeded if a peer does not take part in time;
  // Unavailable if a peer's connection broke. After an error the group is
  // unusable: Abort() it and form a new one.
  virtual absl::Status AllReduceSum(void* data, size_t count,
                                    CollectiveDtype dtype) = 0;
  // Copies `bytes` at `data` from `root` to every rank.
  virtual absl::Status Broadcast(void* data, size_t bytes, int root) = 0;
  virtual absl::Status Barrier() = 0;
  // Tears the group down without waiting for peers; later calls fail.
  virtual void Abort() = 0;
};

// Hosts the rendezvous state of a Gloo group on rank 0 and names it. The
// host stays alive until every rank has joined (keep it for the group's
// lifetime).
class GlooRendezvousHost {
 public:
  virtual ~GlooRendezvousHost() = default;
  // "host:port" for the other ranks; relay it through the coordinator.
  virtual std::string communicator_id() const = 0;
};

// Starts the rendezvous server on `bind_host` (port chosen by the OS).
absl::StatusOr<std::unique_ptr<GlooRendezvousHost>> StartGlooRendezvous(
    const std::string& bind_host);

struct GlooOptions {
  int rank = 0;
  int world_size = 1;
  // From GlooRendezvousHost::communicator_id() on rank 0.
  std::string communicator_id;
  // Interface address this rank listens on for its peers.
  std::string listen_host = "127.0.0.1";
  // Bound on joining the group and on every collective call.
  std::chrono::milliseconds timeout{30000};
  // Distinguishes groups that reuse one rendezvous host (e.g. generations).
  std::string group_prefix = "g0";
};

// Joins a Gloo group; blocks until all ranks have joined. DeadlineExceeded
// if they do not within options.timeout; InvalidArgument for a bad rank,
// size or id.
absl::StatusOr<std::unique_ptr<Collective>> CreateGlooCollective(
    const GlooOptions& options);

// True when this build has NCCL (the GPU host's build).
bool HaveNccl();

// NCCL's unique id for a new group, made on rank 0. Unimplemented without
// NCCL.
absl::StatusOr<std::string> NewNcclCommunicatorId();

struct NcclOptions {
  int rank = 0;
  int world_size = 1;
  std::string communicator_id;  // 128 bytes from NewNcclCommunicatorId()
  int device = 0;               // CUDA device ordinal
  void* cuda_stream = nullptr;  // cudaStream_t the collectives run on
  std::chrono::milliseconds timeout{60000};
};

// Joins an NCCL group (non-blocking init, polled against the timeout so that
// a missing peer becomes DeadlineExceeded rather than a hang).
absl::StatusOr<std::unique_ptr<Collective>> CreateNcclCollective(
    const NcclOptions& options);

}  // namespace lft

#endif  // LFT_WORKER_COLLECTIVE_COLLECTIVE_H_
