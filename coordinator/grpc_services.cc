#include "coordinator/grpc_services.h"

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "common/base/status.h"
#include "common/rpc/grpc_status.h"
#include "latent-store/checkpoint_stream.h"

namespace lft {
namespace {

// Watch polls for events this often, so a vanished client is noticed.
constexpr absl::Duration kWatchPoll = absl::Seconds(1);
// A Rendezvous call waits at most this long; workers call again.
constexpr absl::Duration kRendezvousWait = absl::Seconds(20);

std::string CodeLabel(absl::StatusCode code) {
  return absl::AsciiStrToLower(absl::StatusCodeToString(code));
}

}  // namespace

grpc::Status RpcGuard::Run(const char* method, grpc::ServerContext* context,
                           const std::function<absl::Status()>& body) const {
  absl::Status s = auth_->Check(context->client_metadata());
  if (s.ok()) s = body();
  if (metrics_ != nullptr) {
    std::string code = CodeLabel(s.code());
    for (char& c : code) {
      if (c == ' ') c = '_';
    }
    metrics_
        ->Counter("lft_coordinator_rpcs_total",
                  "gRPC calls served, by method and code",
                  {{"method", method}, {"code", code}})
        .Increment();
  }
  return ToGrpcStatus(s);
}

grpc::Status JobServiceImpl::Submit(grpc::ServerContext* context,
                                    const lft::v1::SubmitJobRequest* request,
                                    lft::v1::SubmitJobResponse* response) {
  return guard_->Run("Submit", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response->mutable_job(), core_->Submit(*request));
    return absl::OkStatus();
  });
}

grpc::Status JobServiceImpl::Get(grpc::ServerContext* context,
                                 const lft::v1::GetJobRequest* request,
                                 lft::v1::GetJobResponse* response) {
  return guard_->Run("Get", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response->mutable_job(),
                         core_->GetJob(request->job_id()));
    return absl::OkStatus();
  });
}

grpc::Status JobServiceImpl::List(grpc::ServerContext* context,
                                  const lft::v1::ListJobsRequest* request,
                                  lft::v1::ListJobsResponse* response) {
  return guard_->Run("List", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response, core_->ListJobs(*request));
    return absl::OkStatus();
  });
}

grpc::Status JobServiceImpl::Watch(
    grpc::ServerContext* context, const lft::v1::WatchJobRequest* request,
    grpc::ServerWriter<lft::v1::JobEvent>* writer) {
  return guard_->Run("Watch", context, [&]() -> absl::Status {
    uint64_t after = request->after_sequence();
    while (!context->IsCancelled()) {
      bool finished = false;
      LFT_ASSIGN_OR_RETURN(std::vector<lft::v1::JobEvent> events,
                           core_->WaitForEvents(request->job_id(), after,
                                                kWatchPoll, &finished));
      for (const lft::v1::JobEvent& e : events) {
        if (!writer->Write(e)) return absl::OkStatus();  // the client went away
        after = e.sequence();
      }
      if (finished) return absl::OkStatus();
    }
    return absl::CancelledError("the client cancelled the watch");
  });
}

grpc::Status JobServiceImpl::Cancel(grpc::ServerContext* context,
                                    const lft::v1::CancelJobRequest* request,
                                    lft::v1::CancelJobResponse* response) {
  return guard_->Run("Cancel", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response->mutable_job(),
                         core_->Cancel(request->job_id()));
    return absl::OkStatus();
  });
}

grpc::Status JobServiceImpl::Delete(grpc::ServerContext* context,
                                    const lft::v1::DeleteJobRequest* request,
                                    lft::v1::DeleteJobResponse* response) {
  return guard_->Run("Delete", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response->mutable_job(),
                         core_->Delete(request->job_id(), request->force()));
    return absl::OkStatus();
  });
}

absl::StatusOr<PairStore*> CheckpointServiceImpl::StoreOfJob(
    const std::string& job_id) const {
  LFT_RETURN_IF_ERROR(core_->GetJob(job_id).status());
  if (stores_ == nullptr || store_address_.empty()) {
    return absl::FailedPreconditionError(
        "this coordinator runs without --store-address: its workers keep "
        "checkpoints in their embedded stores; pull from the store directly "
        "(lftctl pull --store HOST:PORT)");
  }
  auto store = stores_->Get(store_address_);
  if (!store.ok()) {
    return Annotate(store.status(),
                    absl::StrCat("latent store ", store_address_));
  }
  return *store;
}

grpc::Status CheckpointServiceImpl::List(
    grpc::ServerContext* context,
    const lft::v1::ListJobCheckpointsRequest* request,
    lft::v1::ListCheckpointsResponse* response) {
  return guard_->Run("CheckpointList", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(PairStore * store, StoreOfJob(request->job_id()));
    auto list = store->ListCheckpoints(request->job_id());
    // A job the store does not know yet (no task wrote to it) has nothing.
    if (absl::IsNotFound(list.status())) return absl::OkStatus();
    if (!list.ok()) {
      return Annotate(list.status(),
                      absl::StrCat("latent store ", store_address_));
    }
    AppendCheckpointInfos(*list, response);
    return absl::OkStatus();
  });
}

grpc::Status CheckpointServiceImpl::Pull(
    grpc::ServerContext* context, const lft::v1::PullCheckpointRequest* request,
    grpc::ServerWriter<lft::v1::CheckpointChunk>* writer) {
  return guard_->Run("CheckpointPull", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(PairStore * store, StoreOfJob(request->job_id()));
    LFT_ASSIGN_OR_RETURN(
        std::string name,
        ResolveCheckpointName(store, request->job_id(), request->name()));
    return StreamCheckpoint(store, request->job_id(), name, request->offset(),
                            [writer](const lft::v1::CheckpointChunk& c) {
                              return writer->Write(c);
                            });
  });
}

grpc::Status WorkerServiceImpl::Register(
    grpc::ServerContext* context, const lft::v1::RegisterRequest* request,
    lft::v1::RegisterResponse* response) {
  return guard_->Run("Register", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response, core_->Register(*request));
    return absl::OkStatus();
  });
}

grpc::Status WorkerServiceImpl::Heartbeat(
    grpc::ServerContext* context, const lft::v1::HeartbeatRequest* request,
    lft::v1::HeartbeatResponse* response) {
  return guard_->Run("Heartbeat", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response, core_->Heartbeat(*request));
    return absl::OkStatus();
  });
}

grpc::Status WorkerServiceImpl::AcquireTask(
    grpc::ServerContext* context, const lft::v1::AcquireTaskRequest* request,
    lft::v1::AcquireTaskResponse* response) {
  return guard_->Run("AcquireTask", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response, core_->AcquireTask(*request));
    return absl::OkStatus();
  });
}

grpc::Status WorkerServiceImpl::ReportProgress(
    grpc::ServerContext* context, const lft::v1::ReportProgressRequest* request,
    lft::v1::ReportProgressResponse* response) {
  return guard_->Run("ReportProgress", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response, core_->ReportProgress(*request));
    return absl::OkStatus();
  });
}

grpc::Status WorkerServiceImpl::CompleteTask(
    grpc::ServerContext* context, const lft::v1::CompleteTaskRequest* request,
    lft::v1::CompleteTaskResponse* response) {
  return guard_->Run("CompleteTask", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response, core_->CompleteTask(*request));
    return absl::OkStatus();
  });
}

grpc::Status WorkerServiceImpl::Rendezvous(
    grpc::ServerContext* context, const lft::v1::RendezvousRequest* request,
    lft::v1::RendezvousResponse* response) {
  return guard_->Run("Rendezvous", context, [&]() -> absl::Status {
    LFT_ASSIGN_OR_RETURN(*response,
                         core_->Rendezvous(*request, kRendezvousWait));
    return absl::OkStatus();
  });
}

}  // namespace lft
