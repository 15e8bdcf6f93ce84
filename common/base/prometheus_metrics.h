// Prometheus metrics: a registry of counters, gauges and histograms, and a
// small HTTP server that serves them at /metrics in the text format.
//
// Names follow lft_<component>_<what>_<unit> (docs/operations.md). Counters
// count; rates are left to PromQL. Label values must come from a bounded set
// (job ids, roles), never from free text.
//
// The HTTP server is our own (a few hundred lines over POSIX sockets) rather
// than prometheus-cpp's civetweb-based Exposer: the Exposer failed to start
// on the GPU host ("null context when constructing CivetServer") and throws
// where we need a Status; this one binds the same way on every machine,
// reports bind errors as a Status, and supports port 0 for tests.
#ifndef LFT_COMMON_BASE_PROMETHEUS_METRICS_H_
#define LFT_COMMON_BASE_PROMETHEUS_METRICS_H_

#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/gauge.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace lft {

using MetricLabels = std::map<std::string, std::string>;

// Thread-safe. Metric objects returned by reference live as long as the
// registry.
class MetricsRegistry {
 public:
  MetricsRegistry();

  // Get-or-create. A name already registered as another type, or a name or
  // label that Prometheus rejects, is a programming error: it is logged and
  // a detached metric is returned so that the caller keeps running.
  prometheus::Counter& Counter(const std::string& name, const std::string& help,
                               const MetricLabels& labels = {});
  prometheus::Gauge& Gauge(const std::string& name, const std::string& help,
                           const MetricLabels& labels = {});
  prometheus::Histogram& Histogram(const std::string& name,
                                   const std::string& help,
                                   const std::vector<double>& buckets,
                                   const MetricLabels& labels = {});

  // Every metric in the Prometheus text exposition format (version 0.0.4).
  std::string RenderText() const;

 private:
  const std::shared_ptr<prometheus::Registry> registry_;
  const std::shared_ptr<prometheus::Registry> detached_;  // for bad names

  mutable absl::Mutex mu_;
  std::map<std::string, prometheus::Family<prometheus::Counter>*> counters_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Family<prometheus::Gauge>*> gauges_
      ABSL_GUARDED_BY(mu_);
  std::map<std::string, prometheus::Family<prometheus::Histogram>*> histograms_
      ABSL_GUARDED_BY(mu_);
};

// Serves GET /metrics (and a one-line index at /) on one thread, one short
// request per connection. Stops and joins on destruction.
class MetricsHttpServer {
 public:
  // Binds host:port (port 0 picks a free port; see port()). The registry
  // must outlive the server. Unavailable with the OS's reason if the
  // address cannot be bound.
  static absl::StatusOr<std::unique_ptr<MetricsHttpServer>> Start(
      const std::string& host, int port, const MetricsRegistry* registry);
  ~MetricsHttpServer();
  MetricsHttpServer(const MetricsHttpServer&) = delete;
  MetricsHttpServer& operator=(const MetricsHttpServer&) = delete;

  int port() const { return port_; }
  uint64_t requests_served() const { return requests_served_.load(); }

 private:
  MetricsHttpServer(int listen_fd, int wake_read, int wake_write, int port,
                    const MetricsRegistry* registry);
  void Serve();
  void HandleConnection(int fd);

  const int listen_fd_;
  const int wake_read_fd_;
  const int wake_write_fd_;
  const int port_;
  const MetricsRegistry* const registry_;
  std::atomic<uint64_t> requests_served_{0};
  std::thread thread_;
};

}  // namespace lft

#endif  // LFT_COMMON_BASE_PROMETHEUS_METRICS_H_
