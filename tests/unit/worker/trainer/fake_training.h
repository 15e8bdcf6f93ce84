// Torch-free fakes for the trainer's control loop, as c10d's
// FakeProcessGroup is for its users: FakeTrainingEngine (deterministic
// "gradients" from the pairs' keys, a checkpoint that is the position as
// text), an in-process FakeCollective group whose members sum buffers, and
// FakeGroupTransport that hands members of one group to a Run's ranks.
#ifndef LFT_TESTS_UNIT_WORKER_TRAINER_FAKE_TRAINING_H_
#define LFT_TESTS_UNIT_WORKER_TRAINER_FAKE_TRAINING_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "worker/collective/collective.h"
#include "worker/trainer/trainer_runner.h"
#include "worker/trainer/training_engine.h"

namespace lft {

// One "weight" per gradient element; the gradient of a step is the mean of
// its pairs' sequence numbers, the loss 1 / (step + 1). SaveCheckpoint
// writes "step epoch pairs_consumed tokens weight loss..." as text.
class FakeTrainingEngine : public TrainingEngine {
 public:
  static constexpr size_t kWeights = 4;

  // `seen`, if given, collects the sequence numbers of the pairs trained
  // on, in order; it must outlive the engine. With `overlaps` the engine
  // asks for read-ahead (OverlapsInput) and `staged`, if given, collects
  // (step, sequence numbers) of every StageNextStep.
  explicit FakeTrainingEngine(
      std::vector<uint64_t>* seen = nullptr, bool overlaps = false,
      std::vector<std::pair<uint64_t, std::vector<uint64_t>>>* staged = nullptr)
      : seen_(seen), overlaps_(overlaps), staged_(staged) {}

  bool OverlapsInput() const override { return overlaps_; }
  void StageNextStep(absl::Span<const LatentPairRecord> pairs,
                     uint64_t step) override {
    if (staged_ == nullptr) return;
    std::vector<uint64_t> seq;
    for (const LatentPairRecord& p : pairs) seq.push_back(p.sequence);
    staged_->emplace_back(step, std::move(seq));
  }

  absl::Status ComputeGradients(absl::Span<const LatentPairRecord> pairs,
                                uint64_t step) override {
    if (pairs.empty()) return absl::InvalidArgumentError("no pairs");
    double sum = 0;
    for (const LatentPairRecord& p : pairs) {
      sum += static_cast<double>(p.sequence);
      if (seen_ != nullptr) seen_->push_back(p.sequence);
    }
    for (size_t i = 0; i < kWeights; ++i) {
      buffer_[i] = static_cast<float>(sum / pairs.size());
    }
    buffer_[kWeights] = static_cast<float>(1.0 / (step + 1));
    return absl::OkStatus();
  }
  void* gradient_data() override { return buffer_; }
  size_t gradient_count() const override { return kWeights + 1; }
  CollectiveDtype gradient_dtype() const override {
    return CollectiveDtype::kF32;
  }
  absl::StatusOr<double> ApplyGradients(double scale, double clip_norm,
                                        double learning_rate) override {
    weight_ += learning_rate * scale * buffer_[0];
    return scale * buffer_[kWeights];
  }
  absl::StatusOr<std::string> SaveCheckpoint(const TrainingPosition& p,
                                             uint32_t world_size) override {
    std::string out = absl::StrCat(p.step, " ", p.epoch, " ", p.pairs_consumed,
                                   " ", p.tokens, " ", weight_);
    for (double l : p.losses) absl::StrAppend(&out, " ", l);
    return out;
  }
  absl::StatusOr<TrainingPosition> RestoreCheckpoint(
      absl::string_view blob) override {
    std::vector<std::string> f = absl::StrSplit(blob, ' ');
    TrainingPosition p;
    if (f.size() < 5 || !absl::SimpleAtoi(f[0], &p.step) ||
        !absl::SimpleAtoi(f[1], &p.epoch) ||
        !absl::SimpleAtoi(f[2], &p.pairs_consumed) ||
        !absl::SimpleAtoi(f[3], &p.tokens) ||
        !absl::SimpleAtod(f[4], &weight_)) {
      return absl::InvalidArgumentError("not a fake checkpoint");
    }
    for (size_t i = 5; i < f.size(); ++i) {
      double l = 0;
      if (!absl::SimpleAtod(f[i], &l)) {
        return absl::InvalidArgumentError("not a fake checkpoint");
      }
      p.losses.push_back(l);
    }
    return p;
  }

  double weight() const { return weight_; }

 private:
  std::vector<uint64_t>* const seen_;
  const bool overlaps_;
  std::vector<std::pair<uint64_t, std::vector<uint64_t>>>* const staged_;
  float buffer_[kWeights + 1] = {};
  double weight_ = 0;
};

// W in-process members summing f32 buffers. A member can be told to fail
// its n-th all-reduce (a peer that died); its peers then time out.
class FakeCollectiveGroup {
 public:
  explicit FakeCollectiveGroup(int world) : world_(world) {}

  absl::Status AllReduceSum(int rank, float* data, size_t count) {
    absl::MutexLock lock(&mu_);
    if (broken_) return absl::UnavailableError("fake group is broken");
    const uint64_t round = round_;
    if (arrived_ == 0) sum_.assign(count, 0.0f);
    for (size_t i = 0; i < count; ++i) sum_[i] += data[i];
    if (++arrived_ == world_) {
      result_ = sum_;
      arrived_ = 0;
      ++round_;
    } else {
      auto done = [&]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
        return round_ != round || broken_;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&done), absl::Seconds(10)) ||
          broken_) {
        broken_ = true;
        return absl::DeadlineExceededError("a peer did not all-reduce");
      }
    }
    std::copy(result_.begin(), result_.end(), data);
    return absl::OkStatus();
  }
  void Break() {
    absl::MutexLock lock(&mu_);
    broken_ = true;
  }
  int world() const { return world_; }

 private:
  const int world_;
  absl::Mutex mu_;
  int arrived_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t round_ ABSL_GUARDED_BY(mu_) = 0;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<float> sum_ ABSL_GUARDED_BY(mu_);
  std::vector<float> result_ ABSL_GUARDED_BY(mu_);
};

class FakeCollective : public Collective {
 public:
  FakeCollective(FakeCollectiveGroup* group, int rank, int fail_at_call)
      : group_(group), rank_(rank), fail_at_call_(fail_at_call) {}
  int rank() const override { return rank_; }
  int world_size() const override { return group_->world(); }
  absl::Status AllReduceSum(void* data, size_t count,
                            CollectiveDtype dtype) override {
    if (dtype != CollectiveDtype::kF32) {
      return absl::UnimplementedError("the fake sums f32 only");
    }
    if (++calls_ == fail_at_call_) {
      group_->Break();
      return absl::UnavailableError("fake peer connection reset");
    }
    return group_->AllReduceSum(rank_, static_cast<float*>(data), count);
  }
  absl::Status Broadcast(void* data, size_t bytes, int root) override {
    return absl::UnimplementedError("not used by the trainer");
  }
  absl::Status Barrier() override { return absl::OkStatus(); }
  void Abort() override { group_->Break(); }

 private:
  FakeCollectiveGroup* const group_;
  const int rank_;
  const int fail_at_call_;
  int calls_ = 0;
};

// Hands out members of `group`; rank `failing_rank` fails its
// `fail_at_call`-th all-reduce (0 = never).
class FakeGroupTransport : public GroupTransport {
 public:
  FakeGroupTransport(FakeCollectiveGroup* group, int failing_rank = -1,
                     int fail_at_call = 0)
      : group_(group),
        failing_rank_(failing_rank),
        fail_at_call_(fail_at_call) {}
  absl::StatusOr<std::string> CreateCommunicatorId() override {
    return std::string("fake-group");
  }
  absl::StatusOr<std::unique_ptr<Collective>> Join(
      uint32_t rank, uint32_t world, const std::string& communicator_id,
      const std::string& group) override {
    if (communicator_id != "fake-group" ||
        static_cast<int>(world) != group_->world()) {
      return absl::InvalidArgumentError(
          absl::StrCat("unexpected communicator id ", communicator_id));
    }
    return std::unique_ptr<Collective>(std::make_unique<FakeCollective>(
        group_, static_cast<int>(rank),
        static_cast<int>(rank) == failing_rank_ ? fail_at_call_ : 0));
  }

 private:
  FakeCollectiveGroup* const group_;
  const int failing_rank_;
  const int fail_at_call_;
};

}  // namespace lft

#endif  // LFT_TESTS_UNIT_WORKER_TRAINER_FAKE_TRAINING_H_
