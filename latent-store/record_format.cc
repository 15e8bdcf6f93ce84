#include "latent-store/record_format.h"

#include <cstring>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "latent-store/crc32c.h"

namespace lft {
namespace store_format {

std::string LengthPrefixed(absl::string_view s) {
  std::string out;
  out.reserve(1 + s.size());
  out.push_back(static_cast<char>(static_cast<uint8_t>(s.size())));
  out.append(s.data(), s.size());
  return out;
}

void PutBe32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutBe64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint32_t GetBe32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t GetBe64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
void PutLe32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
void PutLe64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
uint32_t GetLe32(const char* p) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
uint64_t GetLe64(const char* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

std::string PairKey(absl::string_view job, uint32_t shard, uint64_t sequence,
                    uint32_t chunk) {
  std::string key = LengthPrefixed(job);
  key.reserve(key.size() + kPairAddressBytes);
  PutBe32(&key, shard);
  PutBe64(&key, sequence);
  PutBe32(&key, chunk);
  return key;
}

std::string ChunkKey(absl::string_view job, uint64_t blob_id, uint32_t index) {
  std::string k = LengthPrefixed(job);
  PutBe64(&k, blob_id);
  PutBe32(&k, index);
  return k;
}

std::string ManifestKey(absl::string_view job, absl::string_view name) {
  std::string k(1, kTagManifest);
  k += LengthPrefixed(job);
  k += LengthPrefixed(name);
  return k;
}

absl::Status ParsePairAddress(absl::string_view address, uint32_t* shard,
                              uint64_t* sequence, uint32_t* chunk) {
  if (address.size() != kPairAddressBytes) {
    return absl::DataLossError(absl::StrCat("pair address must be ",
                                            kPairAddressBytes, " bytes, got ",
                                            address.size()));
  }
  *shard = GetBe32(address.data());
  *sequence = GetBe64(address.data() + 4);
  *chunk = GetBe32(address.data() + 12);
  return absl::OkStatus();
}

std::string PrefixSuccessor(absl::string_view prefix) {
  std::string s(prefix);
  while (!s.empty() && static_cast<uint8_t>(s.back()) == 0xFF) s.pop_back();
  if (!s.empty())
    s.back() = static_cast<char>(static_cast<uint8_t>(s.back()) + 1);
  return s;
}

void EncodeRecordPrefix(const LatentPairRecord& pair, std::string* out,
                        uint8_t flags) {
  out->clear();
  out->reserve(kRecordHeaderBytes + pair.token_ids.size() * 4);
  PutLe32(out, kRecordMagic);
  out->push_back(static_cast<char>(kRecordVersion & 0xFF));
  out->push_back(static_cast<char>(kRecordVersion >> 8));
  out->push_back(static_cast<char>(pair.codec));
  out->push_back(static_cast<char>(flags));
  PutLe32(out, pair.tokens);
  PutLe32(out, pair.hidden);
  PutLe32(out, static_cast<uint32_t>(pair.token_ids.size()));
  PutLe32(out, static_cast<uint32_t>(pair.x0.size()));
  PutLe32(out, 0);  // crc placeholder at offset 24
  for (int32_t id : pair.token_ids) PutLe32(out, static_cast<uint32_t>(id));
  uint32_t crc = Crc32cExtend(0, out->data(), 24);
  crc = Crc32cExtend(crc, out->data() + kRecordHeaderBytes,
                     out->size() - kRecordHeaderBytes);
  crc = Crc32cExtend(crc, pair.x0.data(), pair.x0.size());
  crc = Crc32cExtend(crc, pair.x1.data(), pair.x1.size());
  char* p = out->data() + 24;
  for (int i = 0; i < 4; ++i) p[i] = static_cast<char>(crc >> (8 * i));
}

std::string PayloadReference(uint64_t file, uint64_t offset) {
  std::string r;
  PutLe64(&r, file);
  PutLe64(&r, offset);
  return r;
}

void EncodeRecord(const LatentPairRecord& pair, std::string* out) {
  EncodeRecordPrefix(pair, out);
  out->append(pair.x0);
  out->append(pair.x1);
}

absl::Status DecodeRecord(absl::string_view value, absl::string_view what,
                          LatentPairRecord* pair,
                          const PayloadReadFn* read_payload) {
  auto corrupt = [&](absl::string_view why) {
    return absl::DataLossError(absl::StrCat("corrupt pair record at key ",
                                            absl::BytesToHexString(what), ": ",
                                            why));
  };
  if (value.size() < kRecordHeaderBytes) {
    return corrupt(absl::StrCat("value is ", value.size(),
                                " bytes, shorter than the header"));
  }
  const char* p = value.data();
  if (GetLe32(p) != kRecordMagic) return corrupt("bad magic");
  const uint16_t version = static_cast<uint16_t>(
      static_cast<uint8_t>(p[4]) | (static_cast<uint8_t>(p[5]) << 8));
  if (version != kRecordVersion) {
    return corrupt(absl::StrCat("unsupported record version ", version,
                                " (this build reads ", kRecordVersion, ")"));
  }
  auto codec = TensorCodecFromByte(static_cast<uint8_t>(p[6]));
  if (!codec.ok()) return corrupt(codec.status().message());
  const uint32_t tokens = GetLe32(p + 8);
  const uint32_t hidden = GetLe32(p + 12);
  const uint32_t num_ids = GetLe32(p + 16);
  const uint32_t tensor_bytes = GetLe32(p + 20);
  const uint32_t stored_crc = GetLe32(p + 24);
  const uint64_t want_tensor = EncodedBytes(*codec, tokens, hidden);
  if (want_tensor != tensor_bytes) {
    return corrupt(absl::StrCat("tensor size ", tensor_bytes,
                                " disagrees with shape [", tokens, ", ", hidden,
                                "] ", TensorCodecName(*codec)));
  }
  const uint8_t flags = static_cast<uint8_t>(p[7]);
  if ((flags & ~kFlagPayloadInFile) != 0) {
    return corrupt(absl::StrCat("unknown flags ", static_cast<int>(flags)));
  }
  const bool in_file = (flags & kFlagPayloadInFile) != 0;
  const uint64_t ids_bytes = static_cast<uint64_t>(num_ids) * 4;
  const uint64_t want_total =
      kRecordHeaderBytes + ids_bytes +
      (in_file ? kPayloadReferenceBytes
               : 2 * static_cast<uint64_t>(tensor_bytes));
  if (want_total != value.size()) {
    return corrupt(absl::StrCat("value is ", value.size(),
                                " bytes, header says ", want_total));
  }
  if (in_file) {
    if (read_payload == nullptr) {
      return corrupt(
          "its payload is in a payload file and no reader for "
          "payload files was given");
    }
    const char* ref = p + kRecordHeaderBytes + ids_bytes;
    const uint64_t file = GetLe64(ref), offset = GetLe64(ref + 8);
    absl::Status read =
        (*read_payload)(file, offset, tensor_bytes, &pair->x0, &pair->x1);
    if (!read.ok()) {
      return corrupt(absl::StrCat("its payload (file ", file, ", offset ",
                                  offset,
                                  ") cannot be read: ", read.message()));
    }
  }
  uint32_t crc = Crc32cExtend(0, p, 24);
  crc = Crc32cExtend(crc, p + kRecordHeaderBytes,
                     in_file ? ids_bytes : value.size() - kRecordHeaderBytes);
  if (in_file) {
    crc = Crc32cExtend(crc, pair->x0.data(), pair->x0.size());
    crc = Crc32cExtend(crc, pair->x1.data(), pair->x1.size());
  }
  if (crc != stored_crc) {
    return corrupt(absl::StrCat("crc32c mismatch (stored ", stored_crc,
                                ", computed ", crc, ")"));
  }
  pair->tokens = tokens;
  pair->hidden = hidden;
  pair->codec = *codec;
  const char* q = p + kRecordHeaderBytes;
  pair->token_ids.resize(num_ids);
  for (uint32_t i = 0; i < num_ids; ++i) {
    pair->token_ids[i] = static_cast<int32_t>(GetLe32(q + 4 * i));
  }
  if (!in_file) {
    q += static_cast<size_t>(num_ids) * 4;
    pair->x0.assign(q, tensor_bytes);
    pair->x1.assign(q + tensor_bytes, tensor_bytes);
  }
  return absl::OkStatus();
}

}  // namespace store_format
}  // namespace lft
