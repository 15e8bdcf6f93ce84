// The stores a worker process talks to, opened on first use and kept for
// the process's life: the embedded LatentStore in --store-db for tasks that
// name no store address, and one RemotePairStore per lft-store address.
// Teacher, trainer and evaluator runners share one pool, so a worker that
// runs several roles' tasks opens each RocksDB once (RocksDB allows one
// opener per directory).
#ifndef LFT_LATENT_STORE_PAIR_STORE_POOL_H_
#define LFT_LATENT_STORE_PAIR_STORE_POOL_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "latent-store/pair_store.h"
#include "latent-store/remote_pair_store.h"

namespace lft {

// Thread-safe.
class PairStorePool {
 public:
  // `store_db`: directory of the embedded store ("" = none); `remote`: the
  // options (credentials included) of every remote connection.
  PairStorePool(std::string store_db, RemotePairStoreOptions remote);
  ~PairStorePool();

  // The store at `address` ("" = the embedded one; "a,b" = a job spread
  // over several lft-store processes, sharded_pair_store.h). FailedPrecondition
  // if address is "" and the pool has no store_db; the errors of
  // LatentStore::Open (naming the directory). The pointer stays valid for
  // the pool's life.
  absl::StatusOr<PairStore*> Get(const std::string& address);

 private:
  const std::string store_db_;
  const RemotePairStoreOptions remote_;

  // State below is protected by mu_.
  absl::Mutex mu_;
  std::map<std::string, std::unique_ptr<PairStore>> stores_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace lft

#endif  // LFT_LATENT_STORE_PAIR_STORE_POOL_H_
