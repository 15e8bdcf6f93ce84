// The latent store's on-disk layout: keys (big-endian, so RocksDB's
// bytewise order is job, then shard, sequence, chunk) and the pair record
// value (header + token ids + x0 + x1, crc32c-checked). docs/store.md
// describes the same bytes for people.
#ifndef LFT_LATENT_STORE_RECORD_FORMAT_H_
#define LFT_LATENT_STORE_RECORD_FORMAT_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "latent-store/pair_store.h"

namespace lft {
namespace store_format {

inline constexpr uint32_t kRecordMagic = 0x5254464Cu;  // "LFTR" little-endian
inline constexpr uint16_t kRecordVersion = 1;
inline constexpr size_t kRecordHeaderBytes = 28;

// Meta column family key tags (first byte).
inline constexpr char kTagJob = 'J';       // job config (JSON)
inline constexpr char kTagCounters = 'C';  // job counters (32 bytes)
inline constexpr char kTagIndex = 'I';     // per-pair index entry
inline constexpr char kTagManifest = 'M';  // checkpoint manifest (JSON)
inline constexpr char kTagUpload = 'P';    // checkpoint upload in progress
inline constexpr char kTagSeal = 'S';      // sealed shard: le64 pairs

// u8 length + bytes. The job id and checkpoint names are validated ASCII of
// at most 200 bytes, so the length fits and no byte is 0xFF.
std::string LengthPrefixed(absl::string_view s);
// lp(job) + be32 shard + be64 sequence + be32 chunk.
std::string PairKey(absl::string_view job, uint32_t shard, uint64_t sequence,
                    uint32_t chunk);
// Checkpoints CF: lp(job) + be64 blob id + be32 chunk index.
std::string ChunkKey(absl::string_view job, uint64_t blob_id, uint32_t index);
// Meta CF: 'M' + lp(job) + lp(name) -> manifest JSON.
std::string ManifestKey(absl::string_view job, absl::string_view name);
// Parses the address part of a PairKey (the 16 bytes after lp(job)).
absl::Status ParsePairAddress(absl::string_view address, uint32_t* shard,
                              uint64_t* sequence, uint32_t* chunk);
inline constexpr size_t kPairAddressBytes = 16;
// The smallest key greater than every key that starts with `prefix`
// (prefix never ends in 0xFF here).
std::string PrefixSuccessor(absl::string_view prefix);

void PutBe32(std::string* out, uint32_t v);
void PutBe64(std::string* out, uint64_t v);
uint32_t GetBe32(const char* p);
uint64_t GetBe64(const char* p);
void PutLe32(std::string* out, uint32_t v);
void PutLe64(std::string* out, uint64_t v);
uint32_t GetLe32(const char* p);
uint64_t GetLe64(const char* p);

// Header flag: the payload (x0 then x1) lives in a payload file
// (payload_file.h); the value ends with le64 file id + le64 offset instead.
inline constexpr uint8_t kFlagPayloadInFile = 1;
inline constexpr size_t kPayloadReferenceBytes = 16;

// The value's first bytes (header and token ids, with the crc32c computed
// over x0 and x1 as well): the value is prefix + x0 + x1, which lets writers
// hand RocksDB the payloads without concatenating them first. With
// kFlagPayloadInFile in `flags`, the value is prefix + PayloadReference.
void EncodeRecordPrefix(const LatentPairRecord& pair, std::string* prefix,
                        uint8_t flags = 0);
// le64 file + le64 offset: where a kFlagPayloadInFile record's payload is.
std::string PayloadReference(uint64_t file, uint64_t offset);
// A record's bytes as the inline layout holds them (header, token ids, x0,
// x1), wherever its payload lives: what the store's byte counters count.
inline uint64_t RecordBytes(const LatentPairRecord& pair) {
  return kRecordHeaderBytes + 4 * pair.token_ids.size() + pair.x0.size() +
         pair.x1.size();
}

// Fills *x0 and *x1 with `tensor_bytes` bytes each of payload file `file`
// from `offset` (x0 first). It checks the range against the file before it
// allocates anything, so a corrupt header cannot make it allocate what the
// file does not hold; a short or failed read is an error (DataLoss for a
// range past the file's end).
using PayloadReadFn = std::function<absl::Status(
    uint64_t file, uint64_t offset, size_t tensor_bytes, std::string* x0,
    std::string* x1)>;

// Serializes a pair's value (header, token ids, x0, x1) into *out.
void EncodeRecord(const LatentPairRecord& pair, std::string* out);
// Parses and verifies a value; fills the payload fields of *pair (not the
// address). DataLoss naming `what` (the key) on a bad magic, unknown
// version, inconsistent sizes or crc32c mismatch. A record whose payload is
// in a payload file reads it through `read_payload` (DataLoss without one).
absl::Status DecodeRecord(absl::string_view value, absl::string_view what,
                          LatentPairRecord* pair,
                          const PayloadReadFn* read_payload = nullptr);

}  // namespace store_format
}  // namespace lft

#endif  // LFT_LATENT_STORE_RECORD_FORMAT_H_
