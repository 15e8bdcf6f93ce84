// BoundedQueue: the hand-off between the teacher pipeline's stages (reader,
// GPU, store writers). A full queue blocks its producer, which is the
// pipeline's back-pressure: the reader never runs more than `capacity`
// batches ahead of the GPU, the GPU never more than `capacity` batches ahead
// of the store. Close() wakes every waiter; after it Push refuses and Pop
// drains what is left, then reports the end. Thread-safe.
#ifndef LFT_WORKER_TEACHER_BOUNDED_QUEUE_H_
#define LFT_WORKER_TEACHER_BOUNDED_QUEUE_H_

#include <cstddef>
#include <deque>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace lft {

template <typename T>
class BoundedQueue {
 public:
  explicit BoundedQueue(size_t capacity) : capacity_(capacity ? capacity : 1) {}

  // Blocks while the queue is full. False (and `item` dropped) once closed.
  bool Push(T item) {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &BoundedQueue::CanPush));
    if (closed_) return false;
    items_.push_back(std::move(item));
    return true;
  }

  // Blocks while the queue is empty and open; nullopt once it is closed and
  // drained.
  std::optional<T> Pop() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(this, &BoundedQueue::CanPop));
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    return item;
  }

  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

 private:
  bool CanPush() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || items_.size() < capacity_;
  }
  bool CanPop() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || !items_.empty();
  }

  const size_t capacity_;

  // State below is protected by mu_.
  absl::Mutex mu_;
  std::deque<T> items_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace lft

#endif  // LFT_WORKER_TEACHER_BOUNDED_QUEUE_H_
