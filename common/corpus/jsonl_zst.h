// Streaming reader and writer for Pile-format corpora: zstd-compressed JSON
// Lines, one document per line, {"text": "...", "meta": {"pile_set_name":
// "..."}}.
//
// The reader decompresses with ZSTD streaming, so memory stays bounded by the
// zstd window (max_window_log) plus the longest accepted line
// (max_line_bytes), whatever the file size. Bad input is counted, not fatal:
// an invalid JSON line, a line over the length limit, a corrupt zstd frame or
// a truncated file each add one error (with file and line) and reading fails
// only when the count exceeds the configured error budget.
//
// Document numbering: a document's index is its 0-based line index in the
// decompressed file (empty lines are skipped but keep their number), so the
// indices the sharder counts with CountJsonlZstLines() address the same
// documents even when some lines are bad.
#ifndef LFT_COMMON_CORPUS_JSONL_ZST_H_
#define LFT_COMMON_CORPUS_JSONL_ZST_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

struct ZSTD_DCtx_s;
struct ZSTD_CCtx_s;

namespace lft {

struct JsonlReaderOptions {
  // A longer line is skipped and counted as an error.
  size_t max_line_bytes = size_t{64} << 20;
  // Number of bad lines / corrupt frames / truncations tolerated; the
  // error that makes the count exceed this fails the read.
  int64_t max_errors = 0;
  // Largest zstd window accepted (2^max_window_log bytes of decoder memory).
  int max_window_log = 27;
  // Bytes read from the file per read(2).
  size_t read_buffer_bytes = size_t{1} << 20;
};

struct JsonlDocument {
  std::string text;
  std::string pile_set_name;  // empty when meta or pile_set_name is absent
  std::string file;
  int64_t line_number = 0;  // 1-based
  int64_t index() const { return line_number - 1; }
};

struct JsonlReadError {
  std::string file;
  int64_t line_number = 0;  // 1-based line the error was found at
  std::string message;
};

class JsonlZstReader {
 public:
  // Opens `path`. NotFound / PermissionDenied (from errno) when it cannot be
  // opened; InvalidArgument for nonsensical options.
  static absl::StatusOr<std::unique_ptr<JsonlZstReader>> Open(
      const std::string& path, const JsonlReaderOptions& options = {});
  ~JsonlZstReader();
  JsonlZstReader(const JsonlZstReader&) = delete;
  JsonlZstReader& operator=(const JsonlZstReader&) = delete;

  // Reads the next valid document into *doc. Returns true on success, false
  // at the end of the file. Bad lines are skipped and recorded in errors();
  // DataLoss when the error budget is exceeded (the message names the file
  // and line of the last error and the count); an I/O error as its errno
  // status. After an error status the reader stays failed.
  absl::StatusOr<bool> Next(JsonlDocument* doc);

  // Reads the next line as raw bytes (without '\n'), for JSON Lines files
  // that are not documents (e.g. test fixtures). Empty lines are returned
  // too; an over-long line is skipped and counted. Same errors as Next().
  absl::StatusOr<bool> NextRawLine(std::string* line);

  // Skips forward so that the next document returned has index >= `index`,
  // without parsing the skipped lines. Same errors as Next().
  absl::Status SkipTo(int64_t index);

  // Errors seen so far (bad lines, corrupt frames, truncation).
  const std::vector<JsonlReadError>& errors() const { return errors_; }
  // Lines consumed so far (the next line's number is lines_read() + 1).
  int64_t lines_read() const { return line_number_; }
  int64_t compressed_bytes_read() const { return compressed_bytes_; }
  int64_t decompressed_bytes() const { return decompressed_bytes_; }

 private:
  JsonlZstReader(std::string path, JsonlReaderOptions options, int fd);
  absl::Status Init();
  // Puts the next line (without '\n') into line_. false at end of input.
  absl::StatusOr<bool> NextLine();
  // Refills out_buf_; false when the input is exhausted.
  absl::StatusOr<bool> Refill();
  absl::Status RecordError(int64_t line, std::string message);
  absl::Status ReadInput();

  std::string path_;
  JsonlReaderOptions options_;
  int fd_ = -1;
  ZSTD_DCtx_s* dctx_ = nullptr;
  std::vector<char> in_buf_;
  size_t in_pos_ = 0, in_end_ = 0;
  bool input_eof_ = false;
  std::vector<char> out_buf_;
  size_t out_pos_ = 0, out_end_ = 0;
  bool out_was_full_ = false;
  size_t frame_remaining_hint_ = 0;  // last ZSTD_decompressStream return
  bool saw_any_input_ = false;
  bool resyncing_ = false;  // after a corrupt frame: scanning for a magic
  bool end_reported_ = false;
  std::string line_;
  bool line_too_long_ = false;
  bool drop_partial_line_ = false;
  int64_t line_number_ = 0;
  std::vector<JsonlReadError> errors_;
  absl::Status failed_;
  int64_t compressed_bytes_ = 0;
  int64_t decompressed_bytes_ = 0;
};

// Counts the lines (documents, by the numbering above) of a *.jsonl.zst
// file without parsing JSON: the sharder's quick counting pass. A final line
// without '\n' counts. Fails with DataLoss on corrupt or truncated input.
absl::StatusOr<int64_t> CountJsonlZstLines(const std::string& path);

// Writes a *.jsonl.zst file: one JSON object per document, UTF-8 unescaped
// (like Python's json.dumps(ensure_ascii=False)), one zstd frame. The file
// appears at `path` only after a successful Close() (temp file + rename).
class JsonlZstWriter {
 public:
  static absl::StatusOr<std::unique_ptr<JsonlZstWriter>> Open(
      const std::string& path, int compression_level = 3);
  ~JsonlZstWriter();
  JsonlZstWriter(const JsonlZstWriter&) = delete;
  JsonlZstWriter& operator=(const JsonlZstWriter&) = delete;

  // Appends one document. Invalid UTF-8 in `text` is replaced by U+FFFD.
  absl::Status Write(absl::string_view text, absl::string_view pile_set_name);
  // Appends one raw line (a '\n' is added); for tests that need bad JSON.
  absl::Status WriteRawLine(absl::string_view line);
  // Finishes the frame, fsyncs and renames into place.
  absl::Status Close();
  int64_t documents() const { return documents_; }
  int64_t uncompressed_bytes() const { return uncompressed_bytes_; }

 private:
  JsonlZstWriter(std::string path, std::string temp_path, std::FILE* file);
  absl::Status Compress(absl::string_view data, bool end);

  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  ZSTD_CCtx_s* cctx_ = nullptr;
  std::vector<char> out_buf_;
  std::string pending_;
  int64_t documents_ = 0;
  int64_t uncompressed_bytes_ = 0;
  bool closed_ = false;
};

}  // namespace lft

#endif  // LFT_COMMON_CORPUS_JSONL_ZST_H_
