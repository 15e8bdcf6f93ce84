#include "common/base/log.h"

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "common/base/env.h"

namespace lft {
namespace {

LogLevel LevelFromEnv() {
  const char* env = std::getenv(kEnvLogLevel);
  if (env == nullptr) return LogLevel::kInfo;
  std::string v = absl::AsciiStrToLower(env);
  if (v == "debug") return LogLevel::kDebug;
  if (v == "warning" || v == "warn") return LogLevel::kWarning;
  if (v == "error") return LogLevel::kError;
  return LogLevel::kInfo;
}

std::atomic<int>& Level() {
  static std::atomic<int> level{static_cast<int>(LevelFromEnv())};
  return level;
}

absl::Mutex& OutputMutex() {
  static absl::Mutex mu;
  return mu;
}

struct Component {
  absl::Mutex mu;
  std::string name ABSL_GUARDED_BY(mu) = "lft";
};
Component& GetComponent() {
  static Component* c = new Component();
  return *c;
}

const char* LevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "INFO";
}

void AppendValue(std::string* out, absl::string_view value) {
  const bool needs_quotes = value.empty() || value.find_first_of(" \"=\t\n") !=
                                                 absl::string_view::npos;
  if (!needs_quotes) {
    out->append(value.data(), value.size());
    return;
  }
  out->push_back('"');
  for (char c : value) {
    if (c == '"' || c == '\\') out->push_back('\\');
    if (c == '\n') {
      out->append("\\n");
      continue;
    }
    out->push_back(c);
  }
  out->push_back('"');
}

}  // namespace

void SetLogComponent(absl::string_view component) {
  Component& c = GetComponent();
  absl::MutexLock lock(&c.mu);
  c.name = std::string(component);
}

void SetLogLevel(LogLevel level) { Level().store(static_cast<int>(level)); }

bool LogEnabled(LogLevel level) {
  return static_cast<int>(level) >= Level().load(std::memory_order_relaxed);
}

std::string FormatLogLine(LogLevel level, absl::string_view component,
                          absl::string_view message,
                          std::initializer_list<LogField> fields) {
  std::string line =
      absl::StrCat(LevelName(level), " ", component, " ", message);
  for (const LogField& f : fields) {
    line.push_back(' ');
    line.append(f.key.data(), f.key.size());
    line.push_back('=');
    AppendValue(&line, f.value);
  }
  return line;
}

void Log(LogLevel level, absl::string_view message,
         std::initializer_list<LogField> fields) {
  if (!LogEnabled(level)) return;
  std::string component;
  {
    Component& c = GetComponent();
    absl::MutexLock lock(&c.mu);
    component = c.name;
  }
  std::string line =
      absl::StrCat(absl::FormatTime("%Y-%m-%dT%H:%M:%E3SZ", absl::Now(),
                                    absl::UTCTimeZone()),
                   " ", FormatLogLine(level, component, message, fields), "\n");
  absl::MutexLock lock(&OutputMutex());
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace lft
