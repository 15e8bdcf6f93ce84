// Structured logging: one line per event, a fixed prefix (UTC time, level,
// component) and key=value fields, so that logs grep and parse alike:
//
//   2026-11-23T13:46:08.123Z INFO coordinator task leased job=j-1 task=t-7
//
// Thread-safe. The level comes from LFT_LOG_LEVEL (debug|info|warning|error,
// default info); output goes to stderr.
#ifndef LFT_COMMON_BASE_LOG_H_
#define LFT_COMMON_BASE_LOG_H_

#include <initializer_list>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"

namespace lft {

enum class LogLevel { kDebug = 0, kInfo = 1, kWarning = 2, kError = 3 };

// One key=value field. Values with spaces or quotes are quoted on output.
struct LogField {
  template <typename T>
  LogField(absl::string_view k, const T& v) : key(k), value(absl::StrCat(v)) {}
  LogField(absl::string_view k, const std::string& v) : key(k), value(v) {}
  LogField(absl::string_view k, absl::string_view v) : key(k), value(v) {}
  LogField(absl::string_view k, const char* v) : key(k), value(v) {}
  absl::string_view key;
  std::string value;
};

// Sets the component name printed on every line (e.g. "coordinator").
void SetLogComponent(absl::string_view component);
void SetLogLevel(LogLevel level);
bool LogEnabled(LogLevel level);

void Log(LogLevel level, absl::string_view message,
         std::initializer_list<LogField> fields = {});

inline void LogDebug(absl::string_view m,
                     std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kDebug, m, f);
}
inline void LogInfo(absl::string_view m,
                    std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kInfo, m, f);
}
inline void LogWarning(absl::string_view m,
                       std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kWarning, m, f);
}
inline void LogError(absl::string_view m,
                     std::initializer_list<LogField> f = {}) {
  Log(LogLevel::kError, m, f);
}

// The formatted line without the time prefix; exposed for tests.
std::string FormatLogLine(LogLevel level, absl::string_view component,
                          absl::string_view message,
                          std::initializer_list<LogField> fields);

}  // namespace lft

#endif  // LFT_COMMON_BASE_LOG_H_
