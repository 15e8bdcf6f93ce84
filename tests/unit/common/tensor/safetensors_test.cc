#include "common/tensor/safetensors.h"

#include <unistd.h>

#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace lft {
namespace {

using ::lft::testing::IsOk;
using ::lft::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

template <typename T>
absl::Span<const uint8_t> Bytes(const std::vector<T>& v) {
  return absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(v.data()),
                             v.size() * sizeof(T));
}

// A header of `json` followed by `data_bytes` zero bytes.
std::string RawFile(const std::string& json, size_t data_bytes) {
  std::string out(8, '\0');
  uint64_t len = json.size();
  std::memcpy(out.data(), &len, 8);
  out += json;
  out.append(data_bytes, '\0');
  return out;
}

std::string TempPath(const std::string& name) {
  return ::testing::TempDir() + "/" + name + "." + std::to_string(getpid());
}

TEST(SafetensorsTest, RoundTripsEveryDtypeThroughAFile) {
  std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 0.0f, 1e-7f, 42.0f};
  std::vector<uint16_t> half = {0x3c00, 0xc000, 0x7bff, 0x0001};  // raw bits
  std::vector<int32_t> i32 = {-1, 0, 7};
  std::vector<int64_t> i64 = {1LL << 40, -3};
  std::vector<uint8_t> u8 = {0, 255, 9};

  SafetensorsWriter writer;
  ASSERT_THAT(writer.Add("w.f32", DType::kF32, {2, 3}, Bytes(f32)), IsOk());
  ASSERT_THAT(writer.Add("w.f16", DType::kF16, {4}, Bytes(half)), IsOk());
  ASSERT_THAT(writer.Add("w.bf16", DType::kBF16, {2, 2}, Bytes(half)), IsOk());
  ASSERT_THAT(writer.Add("ids.i32", DType::kI32, {3}, Bytes(i32)), IsOk());
  ASSERT_THAT(writer.Add("ids.i64", DType::kI64, {2}, Bytes(i64)), IsOk());
  ASSERT_THAT(writer.Add("mask.u8", DType::kU8, {3, 1}, Bytes(u8)), IsOk());
  ASSERT_THAT(writer.Add("empty", DType::kF32, {0, 4}, {}), IsOk());
  writer.SetMetadata("format", "pt");
  const std::string path = TempPath("roundtrip.safetensors");
  ASSERT_THAT(writer.WriteFile(path), IsOk());

  auto file = SafetensorsFile::Open(path);
  ASSERT_THAT(file, IsOk());
  EXPECT_EQ((*file)->tensors().size(), 7u);
  EXPECT_EQ((*file)->metadata().at("format"), "pt");

  auto t = (*file)->Get("w.f32");
  ASSERT_THAT(t, IsOk());
  EXPECT_EQ(t->dtype, DType::kF32);
  EXPECT_THAT(t->shape, ElementsAre(2, 3));
  EXPECT_EQ(t->NumElements(), 6);
  ASSERT_EQ(t->data.size(), f32.size() * 4);
  EXPECT_EQ(std::memcmp(t->data.data(), f32.data(), t->data.size()), 0);

  for (const auto& [name, expected] :
       std::vector<std::pair<std::string, absl::Span<const uint8_t>>>{
           {"w.f16", Bytes(half)},
           {"w.bf16", Bytes(half)},
           {"ids.i32", Bytes(i32)},
           {"ids.i64", Bytes(i64)},
           {"mask.u8", Bytes(u8)}}) {
    auto v = (*file)->Get(name);
    ASSERT_THAT(v, IsOk()) << name;
    ASSERT_EQ(v->data.size(), expected.size()) << name;
    EXPECT_EQ(std::memcmp(v->data.data(), expected.data(), expected.size()), 0)
        << name;
  }
  EXPECT_EQ((*file)->Get("ids.i64")->dtype, DType::kI64);
  EXPECT_EQ((*file)->Get("empty")->NumElements(), 0);
  EXPECT_THAT((*file)->Get("missing"),
              StatusIs(absl::StatusCode::kNotFound, "missing"));
  unlink(path.c_str());
}

TEST(SafetensorsTest, ReaderDoesNotCopyTensorData) {
  std::vector<float> a(1024, 1.0f), b(16, 2.0f);
  SafetensorsWriter writer;
  ASSERT_THAT(writer.Add("a", DType::kF32, {1024}, Bytes(a)), IsOk());
  ASSERT_THAT(writer.Add("b", DType::kF32, {16}, Bytes(b)), IsOk());
  const std::string path = TempPath("nocopy.safetensors");
  ASSERT_THAT(writer.WriteFile(path), IsOk());
  auto file = SafetensorsFile::Open(path);
  ASSERT_THAT(file, IsOk());
  // Views point into one contiguous mapping, in offset order, back to back.
  const auto& ts = (*file)->tensors();
  ASSERT_EQ(ts.size(), 2u);
  EXPECT_EQ(ts[0].data.data() + ts[0].data.size(), ts[1].data.data());
  unlink(path.c_str());
}

TEST(SafetensorsTest, HeaderIsPaddedToEightBytesAsHfWritesIt) {
  std::vector<float> a = {1, 2, 3};
  SafetensorsWriter writer;
  ASSERT_THAT(writer.Add("abc", DType::kF32, {3}, Bytes(a)), IsOk());
  const std::string bytes = writer.Serialize();
  uint64_t header_len;
  std::memcpy(&header_len, bytes.data(), 8);
  EXPECT_EQ(header_len % 8, 0u);
  EXPECT_EQ(bytes.size(), 8 + header_len + 12);
}

TEST(SafetensorsTest, WriterRejectsSizeThatDisagreesWithShape) {
  std::vector<float> a = {1, 2, 3};
  SafetensorsWriter writer;
  EXPECT_THAT(
      writer.Add("a", DType::kF32, {2, 2}, Bytes(a)),
      StatusIs(absl::StatusCode::kInvalidArgument, "needs 16 bytes, got 12"));
  EXPECT_THAT(
      writer.Add("__metadata__", DType::kF32, {3}, Bytes(a)),
      StatusIs(absl::StatusCode::kInvalidArgument, "invalid tensor name"));
  ASSERT_THAT(writer.Add("a", DType::kF32, {3}, Bytes(a)), IsOk());
  EXPECT_THAT(writer.Add("a", DType::kF32, {3}, Bytes(a)),
              StatusIs(absl::StatusCode::kInvalidArgument, "added twice"));
}

TEST(SafetensorsTest, MissingFileIsNotFound) {
  EXPECT_THAT(SafetensorsFile::Open("/nonexistent/dir/model.safetensors"),
              StatusIs(absl::StatusCode::kNotFound,
                       "/nonexistent/dir/model.safetensors"));
}

TEST(SafetensorsTest, FileShorterThanLengthFieldIsDataLoss) {
  EXPECT_THAT(SafetensorsFile::FromBytes(std::string(5, '\0')),
              StatusIs(absl::StatusCode::kDataLoss, "too short"));
  const std::string path = TempPath("short.safetensors");
  std::ofstream(path) << "abc";
  EXPECT_THAT(SafetensorsFile::Open(path),
              StatusIs(absl::StatusCode::kDataLoss, "3 bytes, too short"));
  unlink(path.c_str());
}

TEST(SafetensorsTest, TruncatedFileIsDataLoss) {
  std::vector<float> a(100, 3.0f);
  SafetensorsWriter writer;
  ASSERT_THAT(writer.Add("a", DType::kF32, {100}, Bytes(a)), IsOk());
  std::string bytes = writer.Serialize();
  // Cut into the tensor data.
  EXPECT_THAT(
      SafetensorsFile::FromBytes(bytes.substr(0, bytes.size() - 10)),
      StatusIs(absl::StatusCode::kDataLoss, "run past the end of the data"));
  // Cut into the header.
  EXPECT_THAT(
      SafetensorsFile::FromBytes(bytes.substr(0, 20)),
      StatusIs(absl::StatusCode::kDataLoss, "truncated: header claims"));
}

TEST(SafetensorsTest, OversizedHeaderLengthIsRejectedWithoutAllocating) {
  std::string bytes(16, '\0');
  uint64_t len = kMaxSafetensorsHeaderBytes + 1;
  std::memcpy(bytes.data(), &len, 8);
  EXPECT_THAT(
      SafetensorsFile::FromBytes(bytes),
      StatusIs(absl::StatusCode::kInvalidArgument, "exceeds the limit"));
  len = ~0ULL;
  std::memcpy(bytes.data(), &len, 8);
  EXPECT_THAT(
      SafetensorsFile::FromBytes(bytes),
      StatusIs(absl::StatusCode::kInvalidArgument, "exceeds the limit"));
}

TEST(SafetensorsTest, OverlappingOffsetsAreRejected) {
  const std::string json =
      R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}})";
  EXPECT_THAT(
      SafetensorsFile::FromBytes(RawFile(json, 24)),
      StatusIs(absl::StatusCode::kInvalidArgument, "\"a\" and \"b\" overlap"));
}

TEST(SafetensorsTest, MalformedHeadersNameTheProblem) {
  struct Case {
    std::string json;
    size_t data;
    std::string expected;
  };
  const std::vector<Case> cases = {
      {"{not json", 0, "not valid JSON"},
      {"[1,2]", 0, "not a JSON object"},
      {R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", 4,
       "unsupported dtype \"Q7\""},
      {R"({"a":{"shape":[1],"data_offsets":[0,4]}})", 4,
       "missing string field \"dtype\""},
      {R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4,
       "is not a non-negative integer"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4,
       "needs 8 bytes but data_offsets span 4"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", 4,
       "end before they begin"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", 4,
       "must be an array [begin, end]"},
      {R"({"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,4]}})",
       4, "overflows"},
      {R"({"__metadata__":{"k":1}})", 0, "is not a string"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(SafetensorsFile::FromBytes(RawFile(c.json, c.data), "bad.st"),
                StatusIs(absl::StatusCode::kInvalidArgument, c.expected))
        << c.json;
  }
}

TEST(SafetensorsTest, ErrorNamesTheFileAndTensor) {
  const std::string json =
      R"({"layer.0.w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})";
  auto result =
      SafetensorsFile::FromBytes(RawFile(json, 8), "/models/x.safetensors");
  ASSERT_FALSE(result.ok());
  EXPECT_THAT(std::string(result.status().message()),
              HasSubstr("/models/x.safetensors: tensor \"layer.0.w\""));
}

TEST(SafetensorsTest, WriteFileIsAtomicOnFailure) {
  // A directory that does not exist: nothing is created, an error is returned.
  SafetensorsWriter writer;
  EXPECT_THAT(writer.WriteFile("/nonexistent-dir/x.safetensors"),
              StatusIs(absl::StatusCode::kNotFound, "create"));
}

TEST(SafetensorsTest, ReadsTheCommittedHfFixture) {
  const char* root = std::getenv("LFT_TEST_SRCDIR");
  if (root == nullptr) GTEST_SKIP() << "LFT_TEST_SRCDIR not set";
  auto file = SafetensorsFile::Open(
      std::string(root) +
      "/tests/fixtures/neox/tiny-parallel/model.safetensors");
  ASSERT_THAT(file, IsOk());
  auto emb = (*file)->Get("gpt_neox.embed_in.weight");
  ASSERT_THAT(emb, IsOk());
  EXPECT_EQ(emb->dtype, DType::kF32);
  EXPECT_THAT(emb->shape, ElementsAre(128, 32));
}

}  // namespace
}  // namespace lft
