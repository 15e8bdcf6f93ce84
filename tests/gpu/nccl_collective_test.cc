// NCCL collective on the GPU host. With one GPU it forms a 1-rank group
// (init, all-reduce, broadcast, barrier); with two or more it forms a group
// of all visible GPUs from threads and checks the sums.
#include <cuda_runtime.h>

#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"
#include "worker/collective/collective.h"

namespace lft {
namespace {

using ::lft::testing::IsOk;

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

TEST(NcclCollectiveTest, AllReduceOverEveryVisibleGpu) {
  const int world = DeviceCount();
  if (world == 0) GTEST_SKIP() << "no CUDA device";
  auto id = NewNcclCommunicatorId();
  ASSERT_THAT(id, IsOk());
  constexpr size_t kCount = 1 << 20;
  std::vector<std::vector<float>> host_results(world);
  std::vector<absl::Status> statuses(world);
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r) {
    threads.emplace_back([&, r] {
      cudaSetDevice(r);
      cudaStream_t stream;
      cudaStreamCreate(&stream);
      NcclOptions options;
      options.rank = r;
      options.world_size = world;
      options.communicator_id = *id;
      options.device = r;
      options.cuda_stream = stream;
      auto c = CreateNcclCollective(options);
      statuses[r] = c.status();
      if (!c.ok()) return;
      std::vector<float> host(kCount);
      for (size_t i = 0; i < kCount; ++i)
        host[i] = static_cast<float>(r + 1) * (i % 13);
      float* dev = nullptr;
      cudaMalloc(&dev, kCount * sizeof(float));
      cudaMemcpy(dev, host.data(), kCount * sizeof(float),
                 cudaMemcpyHostToDevice);
      statuses[r] = (*c)->AllReduceSum(dev, kCount, CollectiveDtype::kF32);
      if (statuses[r].ok()) statuses[r] = (*c)->Barrier();
      cudaMemcpy(host.data(), dev, kCount * sizeof(float),
                 cudaMemcpyDeviceToHost);
      host_results[r] = std::move(host);
      cudaFree(dev);
      cudaStreamDestroy(stream);
    });
  }
  for (auto& t : threads) t.join();
  const float factor = world * (world + 1) / 2.0f;
  for (int r = 0; r < world; ++r) {
    ASSERT_THAT(statuses[r], IsOk()) << "rank " << r;
    for (size_t i = 0; i < kCount; i += 4099) {
      ASSERT_EQ(host_results[r][i], factor * (i % 13))
          << "rank " << r << " index " << i;
    }
  }
}

}  // namespace
}  // namespace lft
