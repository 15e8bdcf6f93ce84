// A minimal blocking HTTP/1.1 GET over loopback for tests that scrape
// /metrics: no client library needed, and every wait is bounded.
#ifndef LFT_TESTS_TESTING_HTTP_GET_H_
#define LFT_TESTS_TESTING_HTTP_GET_H_

#include <string>

#include "absl/status/statusor.h"

namespace lft::testing {

struct HttpResponse {
  int status = 0;
  std::string headers;
  std::string body;
};

// GETs http://host:port/path; DeadlineExceeded after `timeout_ms`.
absl::StatusOr<HttpResponse> HttpGet(const std::string& host, int port,
                                     const std::string& path,
                                     int timeout_ms = 5000);

}  // namespace lft::testing

#endif  // LFT_TESTS_TESTING_HTTP_GET_H_
