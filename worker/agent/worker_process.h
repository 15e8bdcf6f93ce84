// What every worker program's main() does around its TaskRunner: block the
// stop signals, name the worker, connect to the coordinator with the usual
// flags and run the WorkerAgent until it stops or SIGINT/SIGTERM arrives.
// Shared by lft-worker and lft-fake-worker.
#ifndef LFT_WORKER_AGENT_WORKER_PROCESS_H_
#define LFT_WORKER_AGENT_WORKER_PROCESS_H_

#include <signal.h>

#include <string>

#include "common/base/flags.h"
#include "worker/agent/task_runner.h"
#include "worker/agent/worker_agent.h"

namespace lft {

// Blocks SIGINT and SIGTERM in the calling thread and returns the set. Call
// it first in main(), before any thread (gRPC's included) starts, so that
// every thread inherits the mask and only RunWorkerProcess's waiter takes
// the signals.
sigset_t BlockStopSignals();

// "<hostname>-<pid>": the coordinator identifies a worker by hostname + role
// + device, so every process needs a distinct name.
std::string DefaultWorkerName();

// Connects to --coordinator (default 127.0.0.1:7070) with --tls-ca,
// --insecure-loopback and --token (or LFT_AUTH_TOKEN), then runs the agent.
// Returns the process exit code: 0 when the agent stopped cleanly, 2 if the
// credentials cannot be built, 4 if the agent failed (the error is printed
// as "<program>: <message>").
int RunWorkerProcess(const std::string& program, const Flags& flags,
                     const sigset_t& stop, TaskRunner* runner,
                     const WorkerAgentOptions& options);

}  // namespace lft

#endif  // LFT_WORKER_AGENT_WORKER_PROCESS_H_
