// An embedded latent store in a fresh directory named after the running
// test, for the trainer's tests; the directory is removed on destruction.
#ifndef LFT_TESTS_UNIT_WORKER_TRAINER_TEST_STORE_H_
#define LFT_TESTS_UNIT_WORKER_TRAINER_TEST_STORE_H_

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "latent-store/pair_store_pool.h"

namespace lft {

class TestPairStore {
 public:
  explicit TestPairStore(const std::string& prefix)
      : root_(
            std::filesystem::temp_directory_path() /
            (prefix + "_" + std::to_string(getpid()) + "_" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name())) {
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    pool_ = std::make_unique<PairStorePool>((root_ / "store").string(),
                                            RemotePairStoreOptions());
    auto store = pool_->Get("");
    EXPECT_TRUE(store.ok()) << store.status();
    if (store.ok()) store_ = *store;
  }
  ~TestPairStore() {
    pool_.reset();
    std::filesystem::remove_all(root_);
  }

  const std::filesystem::path& root() const { return root_; }
  PairStorePool* pool() { return pool_.get(); }
  PairStore* store() { return store_; }

 private:
  const std::filesystem::path root_;
  std::unique_ptr<PairStorePool> pool_;
  PairStore* store_ = nullptr;
};

}  // namespace lft

#endif  // LFT_TESTS_UNIT_WORKER_TRAINER_TEST_STORE_H_
