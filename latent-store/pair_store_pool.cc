#include "latent-store/pair_store_pool.h"

#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/base/status.h"
#include "latent-store/latent_store.h"
#include "latent-store/sharded_pair_store.h"

namespace lft {

PairStorePool::PairStorePool(std::string store_db,
                             RemotePairStoreOptions remote)
    : store_db_(std::move(store_db)), remote_(std::move(remote)) {}

PairStorePool::~PairStorePool() = default;

absl::StatusOr<PairStore*> PairStorePool::Get(const std::string& address) {
  absl::MutexLock lock(&mu_);
  auto it = stores_.find(address);
  if (it != stores_.end()) return it->second.get();
  std::unique_ptr<PairStore> store;
  if (address.empty()) {
    if (store_db_.empty()) {
      return absl::FailedPreconditionError(
          "the task names no store address and the worker has no --store-db "
          "for an embedded store");
    }
    auto local = LatentStore::Open(store_db_, LatentStoreOptions{});
    if (!local.ok())
      return Annotate(local.status(), absl::StrCat("store ", store_db_));
    store = std::move(*local);
  } else {
    // "a,b": one job spread over several lft-store processes.
    std::vector<std::unique_ptr<PairStore>> parts;
    for (absl::string_view one : absl::StrSplit(address, ',')) {
      auto remote = RemotePairStore::Connect(std::string(one), remote_);
      if (!remote.ok())
        return Annotate(remote.status(), absl::StrCat("store ", one));
      parts.push_back(std::move(*remote));
    }
    if (parts.size() == 1) {
      store = std::move(parts[0]);
    } else {
      store = std::make_unique<ShardedPairStore>(std::move(parts));
    }
  }
  PairStore* raw = store.get();
  stores_[address] = std::move(store);
  return raw;
}

}  // namespace lft
