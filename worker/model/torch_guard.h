// Converts exceptions thrown inside LibTorch calls into absl::Status at the
// entry points of worker/model, so no exception leaves the library.
#ifndef LFT_WORKER_MODEL_TORCH_GUARD_H_
#define LFT_WORKER_MODEL_TORCH_GUARD_H_

#include <c10/util/Exception.h>

#include <exception>
#include <new>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace lft {

// Runs `f` (returning absl::Status or absl::StatusOr<T>) and maps a
// c10::Error or std::exception to InternalError("<what>: <message>"), and
// an allocation failure (c10::OutOfMemoryError on a device, std::bad_alloc
// on the host) to ResourceExhausted naming the memory and what to lower:
// the task fails with the cause instead of the process aborting.
template <typename F>
auto GuardTorch(absl::string_view what, F&& f) -> decltype(f()) {
  try {
    return std::forward<F>(f)();
  } catch (const c10::OutOfMemoryError& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, ": out of device memory (", e.what_without_backtrace(),
        "); lower training.global_batch_sequences or sequence_length"));
  } catch (const std::bad_alloc& e) {
    return absl::ResourceExhaustedError(absl::StrCat(
        what, ": out of host memory (", e.what(),
        "); lower training.global_batch_sequences or sequence_length"));
  } catch (const c10::Error& e) {
    return absl::InternalError(
        absl::StrCat(what, ": torch error: ", e.what_without_backtrace()));
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(what, ": ", e.what()));
  }
}

}  // namespace lft

#endif  // LFT_WORKER_MODEL_TORCH_GUARD_H_
