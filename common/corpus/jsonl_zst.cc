#include "common/corpus/jsonl_zst.h"

#include <fcntl.h>
#include <unistd.h>
#include <zstd.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/base/status.h"
#include "common/corpus/pile_json.h"
#include "nlohmann/json.hpp"

namespace lft {
namespace {

constexpr unsigned char kZstdMagic[4] = {0x28, 0xB5, 0x2F, 0xFD};

// Extracts text and meta.pile_set_name from one JSON line. The error string
// is empty on success.
std::string ParseDocumentLine(absl::string_view line, JsonlDocument* doc) {
  return ParsePileJsonLine(line, &doc->text, &doc->pile_set_name);
}

}  // namespace

JsonlZstReader::JsonlZstReader(std::string path, JsonlReaderOptions options,
                               int fd)
    : path_(std::move(path)), options_(options), fd_(fd) {}

JsonlZstReader::~JsonlZstReader() {
  if (dctx_ != nullptr) ZSTD_freeDCtx(dctx_);
  if (fd_ >= 0) close(fd_);
}

absl::StatusOr<std::unique_ptr<JsonlZstReader>> JsonlZstReader::Open(
    const std::string& path, const JsonlReaderOptions& options) {
  if (options.max_line_bytes == 0 || options.read_buffer_bytes == 0 ||
      options.max_errors < 0 || options.max_window_log < 10 ||
      options.max_window_log > 31) {
    return absl::InvalidArgumentError(
        "JsonlReaderOptions: max_line_bytes and read_buffer_bytes must be > 0, "
        "max_errors >= 0, max_window_log in [10, 31]");
  }
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoToStatus(errno, absl::StrCat("open ", path));
  std::unique_ptr<JsonlZstReader> reader(new JsonlZstReader(path, options, fd));
  LFT_RETURN_IF_ERROR(reader->Init());
  return reader;
}

absl::Status JsonlZstReader::Init() {
  dctx_ = ZSTD_createDCtx();
  if (dctx_ == nullptr) return absl::ResourceExhaustedError("ZSTD_createDCtx");
  size_t r = ZSTD_DCtx_setParameter(dctx_, ZSTD_d_windowLogMax,
                                    options_.max_window_log);
  if (ZSTD_isError(r)) {
    return absl::InvalidArgumentError(
        absl::StrCat("zstd windowLogMax: ", ZSTD_getErrorName(r)));
  }
  in_buf_.resize(options_.read_buffer_bytes);
  out_buf_.resize(ZSTD_DStreamOutSize());
  return absl::OkStatus();
}

absl::Status JsonlZstReader::RecordError(int64_t line, std::string message) {
  errors_.push_back({path_, line, message});
  if (static_cast<int64_t>(errors_.size()) > options_.max_errors) {
    failed_ = absl::DataLossError(
        absl::StrCat(path_, ":", line, ": ", message, " (", errors_.size(),
                     " errors, budget max_errors=", options_.max_errors, ")"));
    return failed_;
  }
  return absl::OkStatus();
}

absl::Status JsonlZstReader::ReadInput() {
  // Keep unconsumed bytes (at most 3 while scanning for a frame magic).
  size_t keep = in_end_ - in_pos_;
  if (keep > 0) std::memmove(in_buf_.data(), in_buf_.data() + in_pos_, keep);
  in_pos_ = 0;
  in_end_ = keep;
  while (true) {
    ssize_t n = read(fd_, in_buf_.data() + in_end_, in_buf_.size() - in_end_);
    if (n < 0) {
      if (errno == EINTR) continue;
      failed_ = ErrnoToStatus(errno, absl::StrCat("read ", path_));
      return failed_;
    }
    if (n == 0) input_eof_ = true;
    in_end_ += static_cast<size_t>(n);
    compressed_bytes_ += n;
    if (n > 0) saw_any_input_ = true;
    return absl::OkStatus();
  }
}

absl::StatusOr<bool> JsonlZstReader::Refill() {
  while (true) {
    if (resyncing_) {
      // Look for the next frame's magic number.
      bool found = false;
      while (in_end_ - in_pos_ >= 4) {
        if (std::memcmp(in_buf_.data() + in_pos_, kZstdMagic, 4) == 0) {
          found = true;
          break;
        }
        ++in_pos_;
      }
      if (found) {
        resyncing_ = false;
        frame_remaining_hint_ = 0;
        out_was_full_ = false;
        ZSTD_DCtx_reset(dctx_, ZSTD_reset_session_only);
      } else if (input_eof_) {
        in_pos_ = in_end_;
        return false;
      } else {
        LFT_RETURN_IF_ERROR(ReadInput());
        continue;
      }
    }
    if (in_pos_ == in_end_ && !out_was_full_) {
      if (input_eof_) {
        if (!end_reported_) {
          end_reported_ = true;
          if (!saw_any_input_) {
            LFT_RETURN_IF_ERROR(RecordError(
                line_number_, "empty file: no zstd frame (truncated?)"));
          } else if (frame_remaining_hint_ != 0) {
            drop_partial_line_ = !line_.empty() || line_too_long_;
            LFT_RETURN_IF_ERROR(RecordError(
                line_number_ + 1,
                "truncated zstd stream: the last frame is incomplete"));
          }
        }
        return false;
      }
      LFT_RETURN_IF_ERROR(ReadInput());
      continue;
    }
    ZSTD_inBuffer in{in_buf_.data(), in_end_, in_pos_};
    ZSTD_outBuffer out{out_buf_.data(), out_buf_.size(), 0};
    size_t ret = ZSTD_decompressStream(dctx_, &out, &in);
    in_pos_ = in.pos;
    if (ZSTD_isError(ret)) {
      // Drop the line in progress and resynchronize at the next frame.
      drop_partial_line_ = true;
      resyncing_ = true;
      if (in_pos_ < in_end_) ++in_pos_;
      LFT_RETURN_IF_ERROR(RecordError(
          line_number_ + 1,
          absl::StrCat("corrupt zstd data: ", ZSTD_getErrorName(ret),
                       "; skipping to the next frame")));
      continue;
    }
    frame_remaining_hint_ = ret;
    out_was_full_ = out.pos == out.size;
    if (out.pos > 0) {
      out_pos_ = 0;
      out_end_ = out.pos;
      decompressed_bytes_ += out.pos;
      return true;
    }
  }
}

absl::StatusOr<bool> JsonlZstReader::NextLine() {
  line_.clear();
  line_too_long_ = false;
  while (true) {
    if (out_pos_ == out_end_) {
      LFT_ASSIGN_OR_RETURN(bool more, Refill());
      if (drop_partial_line_) {
        // Corruption or truncation: the partial line is lost and has been
        // counted; the next frame starts a fresh line.
        drop_partial_line_ = false;
        line_.clear();
        line_too_long_ = false;
      }
      if (!more) {
        if (line_.empty() && !line_too_long_) return false;
        ++line_number_;  // final line without '\n'
        return true;
      }
      continue;
    }
    const char* start = out_buf_.data() + out_pos_;
    size_t avail = out_end_ - out_pos_;
    const char* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
    size_t take = nl ? static_cast<size_t>(nl - start) : avail;
    if (!line_too_long_) {
      if (line_.size() + take > options_.max_line_bytes) {
        line_too_long_ = true;
        line_.clear();
      } else {
        line_.append(start, take);
      }
    }
    out_pos_ += take;
    if (nl != nullptr) {
      ++out_pos_;
      ++line_number_;
      return true;
    }
  }
}

absl::StatusOr<bool> JsonlZstReader::Next(JsonlDocument* doc) {
  if (!failed_.ok()) return failed_;
  while (true) {
    LFT_ASSIGN_OR_RETURN(bool got, NextLine());
    if (!got) return false;
    if (line_too_long_) {
      LFT_RETURN_IF_ERROR(RecordError(
          line_number_, absl::StrCat("line longer than max_line_bytes=",
                                     options_.max_line_bytes)));
      continue;
    }
    if (line_.empty()) continue;
    std::string error = ParseDocumentLine(line_, doc);
    if (!error.empty()) {
      LFT_RETURN_IF_ERROR(RecordError(line_number_, std::move(error)));
      continue;
    }
    doc->file = path_;
    doc->line_number = line_number_;
    return true;
  }
}

absl::StatusOr<bool> JsonlZstReader::NextRawLine(std::string* line) {
  if (!failed_.ok()) return failed_;
  while (true) {
    LFT_ASSIGN_OR_RETURN(bool got, NextLine());
    if (!got) return false;
    if (line_too_long_) {
      LFT_RETURN_IF_ERROR(RecordError(
          line_number_, absl::StrCat("line longer than max_line_bytes=",
                                     options_.max_line_bytes)));
      continue;
    }
    line->swap(line_);
    return true;
  }
}

absl::Status JsonlZstReader::SkipTo(int64_t index) {
  if (!failed_.ok()) return failed_;
  // Fast path: skip whole lines inside the decompressed buffer.
  while (line_number_ < index) {
    if (out_pos_ == out_end_) {
      LFT_ASSIGN_OR_RETURN(bool got, NextLine());
      if (!got) return absl::OkStatus();
      continue;
    }
    const char* start = out_buf_.data() + out_pos_;
    size_t avail = out_end_ - out_pos_;
    const char* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
    if (nl == nullptr) {
      LFT_ASSIGN_OR_RETURN(bool got, NextLine());
      if (!got) return absl::OkStatus();
      continue;
    }
    out_pos_ += static_cast<size_t>(nl - start) + 1;
    ++line_number_;
  }
  return absl::OkStatus();
}

absl::StatusOr<int64_t> CountJsonlZstLines(const std::string& path) {
  JsonlReaderOptions options;
  options.max_line_bytes = 1;  // do not buffer lines: we only count them
  LFT_ASSIGN_OR_RETURN(auto reader, JsonlZstReader::Open(path, options));
  LFT_RETURN_IF_ERROR(reader->SkipTo(INT64_MAX));
  if (!reader->errors().empty()) {
    const JsonlReadError& e = reader->errors().front();
    return absl::DataLossError(
        absl::StrCat(e.file, ":", e.line_number, ": ", e.message));
  }
  return reader->lines_read();
}

// ---------------------------------------------------------------- writer

JsonlZstWriter::JsonlZstWriter(std::string path, std::string temp_path,
                               std::FILE* file)
    : path_(std::move(path)), temp_path_(std::move(temp_path)), file_(file) {}

JsonlZstWriter::~JsonlZstWriter() {
  if (cctx_ != nullptr) ZSTD_freeCCtx(cctx_);
  if (file_ != nullptr) {
    std::fclose(file_);
    std::remove(temp_path_.c_str());
  }
}

absl::StatusOr<std::unique_ptr<JsonlZstWriter>> JsonlZstWriter::Open(
    const std::string& path, int compression_level) {
  std::string temp = absl::StrCat(path, ".tmp.", getpid());
  std::FILE* f = std::fopen(temp.c_str(), "wb");
  if (f == nullptr) return ErrnoToStatus(errno, absl::StrCat("create ", temp));
  std::unique_ptr<JsonlZstWriter> w(new JsonlZstWriter(path, temp, f));
  w->cctx_ = ZSTD_createCCtx();
  if (w->cctx_ == nullptr) {
    return absl::ResourceExhaustedError("ZSTD_createCCtx");
  }
  size_t r = ZSTD_CCtx_setParameter(w->cctx_, ZSTD_c_compressionLevel,
                                    compression_level);
  if (ZSTD_isError(r)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "zstd level ", compression_level, ": ", ZSTD_getErrorName(r)));
  }
  // A content checksum (as the zstd CLI writes) lets readers detect
  // corruption that still decodes.
  ZSTD_CCtx_setParameter(w->cctx_, ZSTD_c_checksumFlag, 1);
  w->out_buf_.resize(ZSTD_CStreamOutSize());
  return w;
}

absl::Status JsonlZstWriter::Compress(absl::string_view data, bool end) {
  ZSTD_inBuffer in{data.data(), data.size(), 0};
  while (true) {
    ZSTD_outBuffer out{out_buf_.data(), out_buf_.size(), 0};
    size_t r = ZSTD_compressStream2(cctx_, &out, &in,
                                    end ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(r)) {
      return absl::InternalError(
          absl::StrCat("zstd compress ", path_, ": ", ZSTD_getErrorName(r)));
    }
    if (out.pos > 0 &&
        std::fwrite(out_buf_.data(), 1, out.pos, file_) != out.pos) {
      return ErrnoToStatus(errno, absl::StrCat("write ", temp_path_));
    }
    if (end ? r == 0 : in.pos == in.size) return absl::OkStatus();
  }
}

absl::Status JsonlZstWriter::WriteRawLine(absl::string_view line) {
  if (closed_) return absl::FailedPreconditionError("writer is closed");
  pending_.append(line.data(), line.size());
  pending_.push_back('\n');
  uncompressed_bytes_ += static_cast<int64_t>(line.size()) + 1;
  ++documents_;
  if (pending_.size() >= (size_t{1} << 20)) {
    LFT_RETURN_IF_ERROR(Compress(pending_, false));
    pending_.clear();
  }
  return absl::OkStatus();
}

absl::Status JsonlZstWriter::Write(absl::string_view text,
                                   absl::string_view pile_set_name) {
  // ordered_json keeps the Pile's key order: text first, then meta.
  nlohmann::ordered_json j;
  j["text"] = std::string(text);
  j["meta"]["pile_set_name"] = std::string(pile_set_name);
  return WriteRawLine(
      j.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace));
}

absl::Status JsonlZstWriter::Close() {
  if (closed_) return absl::FailedPreconditionError("writer is closed");
  closed_ = true;
  LFT_RETURN_IF_ERROR(Compress(pending_, true));
  pending_.clear();
  if (std::fflush(file_) != 0 || fsync(fileno(file_)) != 0) {
    return ErrnoToStatus(errno, absl::StrCat("flush ", temp_path_));
  }
  std::fclose(file_);
  file_ = nullptr;
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    int e = errno;
    std::remove(temp_path_.c_str());
    return ErrnoToStatus(e, absl::StrCat("rename to ", path_));
  }
  return absl::OkStatus();
}

}  // namespace lft
