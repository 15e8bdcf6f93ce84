// The LibTorch TrainingEngine for one latent flow layer (or the regression
// layer): FlowLayer initialised from teacher layer m, SFM / FW / hybrid /
// regression loss, one flat float32 gradient buffer (plus the loss) for the
// all-reduce, global-norm clipping and AdamW (worker/model/adamw.h); on
// CUDA bf16 evaluations and CUDA graph replay of steps. The header is
// torch-free.
#ifndef LFT_WORKER_TRAINER_ENGINE_FLOW_TRAINING_ENGINE_H_
#define LFT_WORKER_TRAINER_ENGINE_FLOW_TRAINING_ENGINE_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "lft/v1/job.pb.h"
#include "worker/trainer/training_engine.h"

namespace lft {

// A TrainingEngineFactory. Reads the teacher directory (config.json and
// weights) of spec.teacher.path, keeps only layer m. Errors: those of
// GptNeoX::Load (naming the directory); InvalidArgument for a block
// outside the teacher or an unknown method; FailedPrecondition for a CUDA
// device on a machine without CUDA.
absl::StatusOr<std::unique_ptr<TrainingEngine>> NewFlowTrainingEngine(
    const lft::v1::JobSpec& spec, const std::string& device);

}  // namespace lft

#endif  // LFT_WORKER_TRAINER_ENGINE_FLOW_TRAINING_ENGINE_H_
