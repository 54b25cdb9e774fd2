// test_safetensors.cpp — dtype conversions and the safetensors reader/writer.
// Every header validation error has its own test on bytes crafted here, in a fresh temp directory,
// checking the status code and that the message names the file, the tensor and the offending values.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "common.h"
#include "dtype.h"
#include "safetensors.h"

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using namespace infer;

namespace {

// Runs f and returns the infer::Error it throws (a test failure if it throws nothing).
infer::Error capture_error(const std::function<void()>& f) {
  try {
    f();
  } catch (const infer::Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected an infer::Error";
  return infer::Error(INFER_OK, "");
}

uint32_t bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float from_bits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---------------------------------------------------------------------------------------------------
// dtype

TEST(DType, SizesAndNamesRoundTrip) {
  struct Row {
    DType t;
    const char* name;
    size_t size;
  };
  const Row rows[] = {{DType::F32, "F32", 4},         {DType::F16, "F16", 2},   {DType::BF16, "BF16", 2},
                      {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F64, "F64", 8},   {DType::I64, "I64", 8},
                      {DType::I32, "I32", 4},         {DType::I16, "I16", 2},   {DType::I8, "I8", 1},
                      {DType::U8, "U8", 1},           {DType::BOOL, "BOOL", 1}, {DType::F8_E5M2, "F8_E5M2", 1}};
  for (const Row& r : rows) {
    SCOPED_TRACE(r.name);
    EXPECT_STREQ(dtype_name(r.t), r.name);
    EXPECT_EQ(dtype_size(r.t), r.size);
    DType parsed = DType::U8;
    ASSERT_TRUE(dtype_from_name(r.name, &parsed));
    EXPECT_EQ(parsed, r.t);
  }
}

TEST(DType, FromNameRejectsUnknown) {
  DType t = DType::F32;
  EXPECT_FALSE(dtype_from_name("F17", &t));
  EXPECT_FALSE(dtype_from_name("bf16", &t));  // names are case-sensitive in safetensors
  EXPECT_FALSE(dtype_from_name("", &t));
  EXPECT_EQ(t, DType::F32);
}

// Expected values computed with torch 2.15: torch.tensor(bits).view(torch.float16).float().
TEST(DType, F16ToF32MatchesTorch) {
  const std::pair<uint16_t, uint32_t> table[] = {
      {0x0000, 0x00000000u}, {0x8000, 0x80000000u}, {0x0001, 0x33800000u}, {0x8001, 0xb3800000u},
      {0x03ff, 0x387fc000u}, {0x0400, 0x38800000u}, {0x3c00, 0x3f800000u}, {0xbc00, 0xbf800000u},
      {0x3555, 0x3eaaa000u}, {0x7bff, 0x477fe000u}, {0xfbff, 0xc77fe000u}, {0x7c00, 0x7f800000u},
      {0xfc00, 0xff800000u}, {0x7e00, 0x7fc00000u}, {0x7c01, 0x7fc02000u}, {0x0200, 0x38000000u},
      {0x4248, 0x40490000u},
  };
  for (auto [h, want] : table) EXPECT_EQ(bits(f16_to_f32(h)), want) << std::hex << "h=0x" << h;
}

// Expected values computed with torch 2.15: torch.tensor(bits).view(torch.float32).half().
TEST(DType, F32ToF16MatchesTorch) {
  const std::pair<uint32_t, uint16_t> table[] = {
      {0x00000000u, 0x0000}, {0x80000000u, 0x8000}, {0x3f800000u, 0x3c00}, {0xc0200000u, 0xc100},
      {0x477fe000u, 0x7bff}, {0x477feffdu, 0x7bff}, {0x477ff000u, 0x7c00}, {0x4e6e6b28u, 0x7c00},
      {0xce6e6b28u, 0xfc00}, {0x33800000u, 0x0001}, {0x33000000u, 0x0000}, {0x33000001u, 0x0001},
      {0x2edbe6ffu, 0x0000}, {0x38800000u, 0x0400}, {0x387fc000u, 0x03ff}, {0x3f801000u, 0x3c00},
      {0x3f801800u, 0x3c01}, {0x3f802000u, 0x3c01}, {0x3f802800u, 0x3c01}, {0x3dcccccdu, 0x2e66},
      {0x40490fdbu, 0x4248}, {0xb6eae18bu, 0x8075}, {0x7f800000u, 0x7c00}, {0xff800000u, 0xfc00},
  };
  for (auto [f, want] : table) EXPECT_EQ(f32_to_f16(from_bits(f)), want) << std::hex << "f=0x" << f;
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(std::nanf("")))));
  EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(from_bits(0x7f800001u)))));  // low-payload NaN stays NaN
}

// Every f16 bit pattern: the decoded value equals the IEEE formula, and encoding it gives it back.
TEST(DType, F16ExhaustiveAgainstFormula) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    const float got = f16_to_f32(uint16_t(h));
    if (exp == 0x1f) {
      if (mant) {
        EXPECT_TRUE(std::isnan(got)) << h;
        EXPECT_TRUE(std::isnan(f16_to_f32(f32_to_f16(got)))) << h;
      } else {
        EXPECT_TRUE(std::isinf(got)) << h;
      }
    } else {
      double mag = exp == 0 ? std::ldexp(double(mant), -24) : std::ldexp(double(1024 + mant), exp - 25);
      EXPECT_EQ(double(got), sign ? -mag : mag) << h;
    }
    if (!(exp == 0x1f && mant)) {
      EXPECT_EQ(f32_to_f16(got), h) << h;
      EXPECT_EQ(std::signbit(got), bool(sign)) << h;
    }
  }
}

// Round to nearest even at every boundary: the midpoint between each pair of adjacent finite f16 values
// goes to the even one, and one f32 ulp either side goes to the nearer one. 65504 + 16 = 65520 is the
// midpoint to the (virtual) next value 65536, so it rounds to inf.
TEST(DType, F32ToF16RoundsToNearestEvenAtEveryBoundary) {
  for (uint32_t h = 0; h <= 0x7bff; ++h) {
    const double lo = f16_to_f32(uint16_t(h));
    const double hi = h == 0x7bff ? 65536.0 : double(f16_to_f32(uint16_t(h + 1)));
    const float mid = float((lo + hi) / 2);  // exact: 12 significant bits
    ASSERT_EQ(double(mid), (lo + hi) / 2);
    const uint16_t even = (h & 1) ? uint16_t(h + 1) : uint16_t(h);
    EXPECT_EQ(f32_to_f16(mid), even) << "h=" << h;
    EXPECT_EQ(f32_to_f16(-mid), uint16_t(even | 0x8000)) << "h=" << h;
    EXPECT_EQ(f32_to_f16(std::nextafter(mid, 1e30f)), uint16_t(h + 1)) << "h=" << h;
    EXPECT_EQ(f32_to_f16(std::nextafter(mid, 0.0f)), uint16_t(h)) << "h=" << h;
  }
  EXPECT_EQ(f32_to_f16(1e-30f), 0x0000);
  EXPECT_EQ(f32_to_f16(from_bits(0x00000001u)), 0x0000);  // f32 subnormal
  EXPECT_EQ(f32_to_f16(-1e-30f), 0x8000);
}

// float8_e4m3fn, all 256 codes, against the format's definition: bias 7, subnormals m/8·2^-6,
// S.1111.111 is NaN (the only NaNs), no infinities, max 448.
TEST(DType, F8E4M3ExhaustiveAgainstFormula) {
  int nans = 0;
  float max_finite = 0;
  for (int v = 0; v < 256; ++v) {
    const int sign = v >> 7, exp = (v >> 3) & 0xf, mant = v & 7;
    const float got = f8e4m3_to_f32(uint8_t(v));
    if (exp == 0xf && mant == 7) {
      EXPECT_TRUE(std::isnan(got)) << v;
      ++nans;
      continue;
    }
    const double mag = exp == 0 ? std::ldexp(mant / 8.0, -6) : std::ldexp(1.0 + mant / 8.0, exp - 7);
    EXPECT_EQ(double(got), sign ? -mag : mag) << "v=" << v;
    EXPECT_EQ(std::signbit(got), bool(sign)) << "v=" << v;
    EXPECT_FALSE(std::isinf(got)) << v;
    max_finite = std::max(max_finite, got);
  }
  EXPECT_EQ(nans, 2);
  EXPECT_EQ(max_finite, 448.0f);
  EXPECT_EQ(f8e4m3_to_f32(0x01), std::ldexp(1.0f, -9));
}

// Expected values computed with torch 2.15: torch.tensor(v, dtype=torch.uint8).view(torch.float8_e4m3fn).float().
TEST(DType, F8E4M3MatchesTorch) {
  const std::pair<uint8_t, float> table[] = {
      {0x00, 0.0f},   {0x01, 0.001953125f}, {0x07, 0.013671875f}, {0x08, 0.015625f}, {0x0f, 0.029296875f},
      {0x38, 1.0f},   {0x3f, 1.875f},       {0x40, 2.0f},         {0x7e, 448.0f},    {0xfe, -448.0f},
      {0xb8, -1.0f},  {0x55, 13.0f},        {0xaa, -0.3125f},
  };
  for (auto [v, want] : table) EXPECT_EQ(f8e4m3_to_f32(v), want) << int(v);
  EXPECT_TRUE(std::signbit(f8e4m3_to_f32(0x80)));
  EXPECT_EQ(f8e4m3_to_f32(0x80), 0.0f);
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0x7f)));
  EXPECT_TRUE(std::isnan(f8e4m3_to_f32(0xff)));
}

// ---------------------------------------------------------------------------------------------------
// safetensors

// A safetensors image: 8-byte little-endian header length (the real one unless overridden), header, data.
std::string st_image(const std::string& header, const std::string& data = "", int64_t len_override = -1) {
  const uint64_t len = len_override >= 0 ? uint64_t(len_override) : header.size();
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = char((len >> (8 * i)) & 0xff);
  return out + header + data;
}

class SafeTensorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::path(::testing::TempDir()) / "infer_st_XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr) << std::strerror(errno);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  void write(const std::string& name, const std::string& bytes) const {
    std::ofstream out(dir_ / name, std::ios::binary);
    out.write(bytes.data(), std::streamsize(bytes.size()));
    ASSERT_TRUE(out.good());
  }

  // Writes the image as model.safetensors, opens it, and returns the error (failing if none).
  infer::Error open_error(const std::string& header, const std::string& data = "", int64_t len_override = -1) {
    write("model.safetensors", st_image(header, data, len_override));
    return capture_error([&] { SafeTensors::open_file(path("model.safetensors")); });
  }

  fs::path dir_;
};

std::string msg(const infer::Error& e) { return e.what(); }

TEST_F(SafeTensorsTest, WriteThenReadBack) {
  const float a[6] = {1.5f, -2.0f, 0.0f, 3.25f, -0.5f, 1e-3f};
  const int32_t ids[4] = {7, -1, 151643, 0};
  const float scalar = 42.0f;
  write_safetensors(path("out.safetensors"),
                    {{"logits", DType::F32, {2, 3}, a}, {"ids", DType::I32, {4}, ids},
                     {"scalar", DType::F32, {}, &scalar}, {"empty", DType::F32, {0, 3}, nullptr}},
                    {{"format", "pt"}, {"step", "3"}});
  EXPECT_FALSE(fs::exists(path("out.safetensors.tmp")));

  // Header padded with spaces to a multiple of 8, as the Python library writes it.
  std::ifstream in(path("out.safetensors"), std::ios::binary);
  std::string raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GE(raw.size(), 8u);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; --i) hlen = (hlen << 8) | uint8_t(raw[i]);
  EXPECT_EQ(hlen % 8, 0u);
  EXPECT_EQ(raw.size(), 8 + hlen + sizeof(a) + sizeof(ids) + sizeof(scalar));
  const std::string header = raw.substr(8, hlen);
  EXPECT_EQ(header.find_last_not_of(' '), header.find_last_of('}'));

  auto st = SafeTensors::open_file(path("out.safetensors"));
  ASSERT_EQ(st->tensors().size(), 4u);
  const TensorInfo& t = st->get("logits", {2, 3});
  EXPECT_EQ(t.dtype, DType::F32);
  EXPECT_EQ(t.nbytes, sizeof(a));
  EXPECT_EQ(t.numel(), 6);
  EXPECT_EQ(t.shape_str(), "[2, 3]");
  EXPECT_EQ(std::memcmp(t.data, a, sizeof(a)), 0);
  const TensorInfo& i = st->get("ids", {4});
  EXPECT_EQ(i.dtype, DType::I32);
  EXPECT_EQ(std::memcmp(i.data, ids, sizeof(ids)), 0);
  const TensorInfo& s = st->get("scalar", {});
  EXPECT_EQ(s.numel(), 1);
  EXPECT_EQ(std::memcmp(s.data, &scalar, 4), 0);
  EXPECT_EQ(st->get("empty", {0, 3}).nbytes, 0u);
  EXPECT_EQ(st->metadata().at("format"), "pt");
  EXPECT_EQ(st->metadata().at("step"), "3");
}

TEST_F(SafeTensorsTest, WriteOverwritesExistingFile) {
  const float x = 1.0f, y = 2.0f;
  write_safetensors(path("o.safetensors"), {{"x", DType::F32, {1}, &x}});
  write_safetensors(path("o.safetensors"), {{"y", DType::F32, {1}, &y}});
  auto st = SafeTensors::open_file(path("o.safetensors"));
  EXPECT_EQ(st->find("x"), nullptr);
  EXPECT_EQ(*reinterpret_cast<const float*>(st->get("y").data), 2.0f);
}

TEST_F(SafeTensorsTest, WriteFailsWhenDirectoryDoesNotExist) {
  const float x = 1.0f;
  const std::string p = path("no_such_dir/out.safetensors");
  auto e = capture_error([&] { write_safetensors(p, {{"x", DType::F32, {1}, &x}}); });
  EXPECT_EQ(e.code(), INFER_ERR_IO);
  EXPECT_THAT(msg(e), HasSubstr(p + ".tmp"));
}

TEST_F(SafeTensorsTest, WriteFailsWhenDirectoryNotWritable) {
  // /proc accepts no new files, even for root (CI runs as root, where permission bits would not stop us).
  const float x = 1.0f;
  const std::string p = "/proc/infer_out.safetensors";
  auto e = capture_error([&] { write_safetensors(p, {{"x", DType::F32, {1}, &x}}); });
  EXPECT_EQ(e.code(), INFER_ERR_IO);
  EXPECT_THAT(msg(e), HasSubstr(p));
  EXPECT_FALSE(fs::exists(p));
}

// Same failure, reproducible as root: the "directory" is a regular file.
TEST_F(SafeTensorsTest, WriteFailsWhenParentIsAFile) {
  write("plain_file", "x");
  const float x = 1.0f;
  const std::string p = path("plain_file/out.safetensors");
  auto e = capture_error([&] { write_safetensors(p, {{"x", DType::F32, {1}, &x}}); });
  EXPECT_EQ(e.code(), INFER_ERR_IO);
  EXPECT_THAT(msg(e), HasSubstr("cannot write " + p + ".tmp"));
}

TEST_F(SafeTensorsTest, WriteRejectsDtypesOtherThanF32AndI32) {
  const uint16_t x = 0;
  auto e = capture_error([&] { write_safetensors(path("o.safetensors"), {{"w", DType::BF16, {1}, &x}}); });
  EXPECT_EQ(e.code(), INFER_ERR_INVALID_ARG);
  EXPECT_THAT(msg(e), HasSubstr("tensor w has dtype BF16"));
  EXPECT_FALSE(fs::exists(path("o.safetensors")));
}

// Bytes written by Python: safetensors.torch.save_file({"b": f16 [1, -2, 0.5], "a": i32 [[1,2],[3,4]]},
// metadata={"format": "pt"}) with safetensors 0.8.0.
TEST_F(SafeTensorsTest, ReadsFileWrittenByPythonSafetensors) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16]},)"
      R"("b":{"dtype":"F16","shape":[3],"data_offsets":[16,22]}} )";
  const std::string data("\x01\0\0\0\x02\0\0\0\x03\0\0\0\x04\0\0\0\x00\x3c\x00\xc0\x00\x38", 22);
  ASSERT_EQ(header.size(), 0x90u);
  write("py.safetensors", st_image(header, data));
  auto st = SafeTensors::open_file(path("py.safetensors"));
  const TensorInfo& a = st->get("a", {2, 2});
  EXPECT_EQ(a.dtype, DType::I32);
  EXPECT_EQ(reinterpret_cast<const int32_t*>(a.data)[3], 4);
  const TensorInfo& b = st->get("b", {3});
  EXPECT_EQ(b.dtype, DType::F16);
  uint16_t h[3];
  std::memcpy(h, b.data, 6);
  EXPECT_EQ(f16_to_f32(h[0]), 1.0f);
  EXPECT_EQ(f16_to_f32(h[1]), -2.0f);
  EXPECT_EQ(f16_to_f32(h[2]), 0.5f);
  EXPECT_EQ(st->metadata().at("format"), "pt");
}

TEST_F(SafeTensorsTest, ParseBufferPointsIntoTheBuffer) {
  const std::string img = st_image(R"({"w":{"dtype":"U8","shape":[3],"data_offsets":[0,3]}})", "abc");
  auto st = SafeTensors::parse_buffer(reinterpret_cast<const uint8_t*>(img.data()), img.size(), "fuzz-input");
  const TensorInfo& w = st->get("w", {3});
  EXPECT_EQ(reinterpret_cast<const char*>(w.data), img.data() + img.size() - 3);
  EXPECT_EQ(st->location(), "fuzz-input");
  auto e = capture_error(
      [&] { SafeTensors::parse_buffer(reinterpret_cast<const uint8_t*>(img.data()), 4, "fuzz-input"); });
  EXPECT_THAT(msg(e), HasSubstr("fuzz-input"));
}

TEST_F(SafeTensorsTest, OpenMissingFileIsIoError) {
  auto e = capture_error([&] { SafeTensors::open_file(path("nope.safetensors")); });
  EXPECT_EQ(e.code(), INFER_ERR_IO);
  EXPECT_THAT(msg(e), HasSubstr(path("nope.safetensors")));
}

TEST_F(SafeTensorsTest, FileShorterThan8Bytes) {
  write("model.safetensors", "\x05\0\0\0\0");
  auto e = capture_error([&] { SafeTensors::open_file(path("model.safetensors")); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr(path("model.safetensors")));
  EXPECT_THAT(msg(e), HasSubstr("shorter than the 8-byte"));
}

TEST_F(SafeTensorsTest, EmptyFile) {
  write("model.safetensors", "");
  auto e = capture_error([&] { SafeTensors::open_file(path("model.safetensors")); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("file is 0 bytes"));
}

TEST_F(SafeTensorsTest, HeaderLengthBeyondFile) {
  auto e = open_error("{}", "", 1000);
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("model.safetensors: header length 1000 goes beyond the end of the file (10 bytes)"));
}

TEST_F(SafeTensorsTest, HeaderLengthHugeDoesNotOverflow) {
  auto e = open_error("{}", "", INT64_MAX);
  EXPECT_THAT(msg(e), HasSubstr("goes beyond the end of the file"));
}

TEST_F(SafeTensorsTest, MalformedJson) {
  auto e = open_error(R"({"w": {"dtype": )");
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("model.safetensors: malformed JSON header"));
  EXPECT_THAT(msg(e), HasSubstr("parse_error"));  // the parser's own message follows
}

TEST_F(SafeTensorsTest, HeaderNotAnObject) {
  auto e = open_error("[1, 2]");
  EXPECT_THAT(msg(e), HasSubstr("the JSON header is not an object"));
}

TEST_F(SafeTensorsTest, DuplicateKeyInHeader) {
  auto e = open_error(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                      R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                      "ab");
  EXPECT_THAT(msg(e), HasSubstr("tensor w appears twice"));
}

TEST_F(SafeTensorsTest, EntryNotAnObject) {
  auto e = open_error(R"({"model.norm.weight": [1, 2]})");
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("tensor model.norm.weight in " + path("model.safetensors")));
  EXPECT_THAT(msg(e), HasSubstr("not an object"));
}

TEST_F(SafeTensorsTest, EntryMissingDtype) {
  auto e = open_error(R"({"w":{"shape":[1],"data_offsets":[0,4]}})", "abcd");
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("no \"dtype\""));
}

TEST_F(SafeTensorsTest, EntryMissingShape) {
  auto e = open_error(R"({"w":{"dtype":"F32","data_offsets":[0,4]}})", "abcd");
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("no \"shape\""));
}

TEST_F(SafeTensorsTest, EntryMissingDataOffsets) {
  auto e = open_error(R"({"w":{"dtype":"F32","shape":[1]}})", "abcd");
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("no \"data_offsets\""));
}

TEST_F(SafeTensorsTest, UnknownDtype) {
  auto e = open_error(R"({"w":{"dtype":"F17","shape":[1],"data_offsets":[0,4]}})", "abcd");
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("tensor w in " + path("model.safetensors") + ": unknown dtype 'F17'"));
}

TEST_F(SafeTensorsTest, KnownButUnsupportedDtype) {
  auto e = open_error(R"({"w":{"dtype":"U32","shape":[1],"data_offsets":[0,4]}})", "abcd");
  EXPECT_EQ(e.code(), INFER_ERR_UNSUPPORTED);
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("dtype U32 is not supported"));
}

TEST_F(SafeTensorsTest, NegativeShape) {
  auto e = open_error(R"({"w":{"dtype":"F32","shape":[-1,2],"data_offsets":[0,4]}})", "abcd");
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("shape [-1,2] has an entry that is not a non-negative integer"));
}

TEST_F(SafeTensorsTest, NonIntegerShape) {
  auto e = open_error(R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", "abcd");
  EXPECT_THAT(msg(e), HasSubstr("shape [1.5] has an entry that is not a non-negative integer"));
}

TEST_F(SafeTensorsTest, ShapeNotAnArray) {
  auto e = open_error(R"({"w":{"dtype":"F32","shape":4,"data_offsets":[0,4]}})", "abcd");
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("shape is not an array"));
}

TEST_F(SafeTensorsTest, DataOffsetsNotAPair) {
  auto e = open_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", "abcd");
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("data_offsets [0] is not [begin, end]"));
}

TEST_F(SafeTensorsTest, DataOffsetsNegative) {
  auto e = open_error(R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", "abcd");
  EXPECT_THAT(msg(e), HasSubstr("data_offsets [-4,0] is not [begin, end]"));
}

TEST_F(SafeTensorsTest, DataOffsetsBeginAfterEnd) {
  auto e = open_error(R"({"w":{"dtype":"U8","shape":[4],"data_offsets":[8,4]}})", std::string(8, 'x'));
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("data_offsets [8, 4] has begin > end"));
}

TEST_F(SafeTensorsTest, DataOffsetsOutsideDataSection) {
  auto e = open_error(R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", std::string(8, 'x'));
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("data_offsets [0, 16] lie outside the data section (8 bytes)"));
}

TEST_F(SafeTensorsTest, ByteSizeMismatch) {
  auto e = open_error(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, 'x'));
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("span 8 bytes but dtype F32 × shape [3] needs 12 bytes"));
}

// 4 bytes × 2^62 × 4 = 2^66 wraps to 0 in 64 bits, which would "match" an empty span without the check.
TEST_F(SafeTensorsTest, ShapeProductOverflow) {
  auto e = open_error(R"({"w":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,0]}})");
  EXPECT_THAT(msg(e), HasSubstr("tensor w in"));
  EXPECT_THAT(msg(e), HasSubstr("overflows"));
}

TEST_F(SafeTensorsTest, OverlappingTensors) {
  // Listed out of order, so only a check on offsets sorted by begin finds the overlap.
  auto e = open_error(R"({"b":{"dtype":"U8","shape":[8],"data_offsets":[4,12]},)"
                      R"("c":{"dtype":"U8","shape":[4],"data_offsets":[12,16]},)"
                      R"("a":{"dtype":"U8","shape":[8],"data_offsets":[0,8]}})",
                      std::string(16, 'x'));
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("model.safetensors: tensors a and b overlap"));
}

TEST_F(SafeTensorsTest, AdjacentAndEmptyTensorsDoNotOverlap) {
  write("model.safetensors", st_image(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                                      R"("e":{"dtype":"F32","shape":[0],"data_offsets":[2,2]},)"
                                      R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]}})",
                                      std::string(8, 'x')));
  auto st = SafeTensors::open_file(path("model.safetensors"));
  EXPECT_EQ(st->tensors().size(), 3u);
}

TEST_F(SafeTensorsTest, MetadataValuesMustBeStrings) {
  auto e = open_error(R"({"__metadata__":{"step":3}})");
  EXPECT_THAT(msg(e), HasSubstr("model.safetensors: __metadata__ value for 'step' is not a string"));
}

TEST_F(SafeTensorsTest, DuplicateTensorAcrossFiles) {
  const std::string h = R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  write("a.safetensors", st_image(h, "x"));
  write("b.safetensors", st_image(h, "y"));
  auto e = capture_error([&] { SafeTensors::open_dir(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("duplicate tensor w: in " + path("a.safetensors") + " and in " + path("b.safetensors")));
}

TEST_F(SafeTensorsTest, NoSafetensorsFiles) {
  write("notes.txt", "hello");
  write("model.safetensors.tmp", "x");
  auto e = capture_error([&] { SafeTensors::open_dir(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_IO);
  EXPECT_THAT(msg(e), HasSubstr("no *.safetensors files in " + dir_.string()));
}

TEST_F(SafeTensorsTest, OpenDirMissing) {
  auto e = capture_error([&] { SafeTensors::open_dir(path("nope")); });
  EXPECT_EQ(e.code(), INFER_ERR_IO);
  EXPECT_THAT(msg(e), HasSubstr(path("nope")));
}

TEST_F(SafeTensorsTest, DirectoryWithoutIndexOpensEveryFileInSortedOrder) {
  write("b.safetensors", st_image(R"({"__metadata__":{"who":"b"},"y":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "B"));
  write("a.safetensors", st_image(R"({"__metadata__":{"who":"a"},"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "A"));
  write("README.md", "not a checkpoint");
  auto st = SafeTensors::open_dir(dir_.string());
  EXPECT_EQ(st->tensors().size(), 2u);
  EXPECT_EQ(st->get("x").file, path("a.safetensors"));
  EXPECT_EQ(st->get("y").file, path("b.safetensors"));
  EXPECT_EQ(*st->get("y").data, 'B');
  EXPECT_EQ(st->metadata().at("who"), "a");  // the first file in sorted order
  EXPECT_EQ(st->location(), dir_.string());
}

TEST_F(SafeTensorsTest, DirectoryWithModelSafetensorsIgnoresOtherFiles) {
  // transformers reads model.safetensors when there is no index; a dump or reference file beside it is not a weight.
  write("model.safetensors", st_image(R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "A"));
  write("reference.safetensors", st_image(R"({"y":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "B"));
  auto st = SafeTensors::open_dir(dir_.string());
  EXPECT_EQ(st->tensors().size(), 1u);
  EXPECT_NE(st->find("x"), nullptr);
  EXPECT_EQ(st->find("y"), nullptr);
}

// Two shards written with write_safetensors, plus the index transformers writes.
TEST_F(SafeTensorsTest, ShardedDirectoryWithIndex) {
  const float emb[8] = {0, 1, 2, 3, 4, 5, 6, 7};
  const float norm[2] = {1, 1};
  const float head[8] = {7, 6, 5, 4, 3, 2, 1, 0};
  write_safetensors(path("model-00001-of-00002.safetensors"),
                    {{"model.embed_tokens.weight", DType::F32, {4, 2}, emb}, {"model.norm.weight", DType::F32, {2}, norm}},
                    {{"format", "pt"}});
  write_safetensors(path("model-00002-of-00002.safetensors"), {{"lm_head.weight", DType::F32, {4, 2}, head}});
  write("model.safetensors.index.json", R"({"metadata": {"total_size": 72}, "weight_map": {
      "lm_head.weight": "model-00002-of-00002.safetensors",
      "model.embed_tokens.weight": "model-00001-of-00002.safetensors",
      "model.norm.weight": "model-00001-of-00002.safetensors"}})");
  // A stray file the index does not name is not opened.
  write("zzz-garbage.safetensors", "not safetensors");
  auto st = SafeTensors::open_dir(dir_.string());
  EXPECT_EQ(st->tensors().size(), 3u);
  const TensorInfo& h = st->get("lm_head.weight", {4, 2}, "vocab_size=4, hidden_size=2");
  EXPECT_EQ(h.file, path("model-00002-of-00002.safetensors"));
  EXPECT_EQ(reinterpret_cast<const float*>(h.data)[1], 6.0f);
  EXPECT_EQ(reinterpret_cast<const float*>(st->get("model.embed_tokens.weight").data)[7], 7.0f);
  EXPECT_EQ(st->metadata().at("format"), "pt");
}

TEST_F(SafeTensorsTest, IndexMalformedJson) {
  write("model.safetensors.index.json", R"({"weight_map": )");
  auto e = capture_error([&] { SafeTensors::open_dir(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr(path("model.safetensors.index.json") + ": malformed JSON"));
  EXPECT_THAT(msg(e), HasSubstr("parse_error"));
}

TEST_F(SafeTensorsTest, IndexWithoutWeightMap) {
  write("model.safetensors.index.json", R"({"metadata": {"total_size": 4}})");
  auto e = capture_error([&] { SafeTensors::open_dir(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("model.safetensors.index.json: no \"weight_map\" object"));
}

TEST_F(SafeTensorsTest, IndexEntryNotAFileName) {
  write("model.safetensors.index.json", R"({"weight_map": {"w": 3}})");
  auto e = capture_error([&] { SafeTensors::open_dir(dir_.string()); });
  EXPECT_THAT(msg(e), HasSubstr("weight_map entry for tensor w is not a file name"));
}

TEST_F(SafeTensorsTest, IndexNamesFileOutsideDirectory) {
  write("model.safetensors.index.json", R"({"weight_map": {"w": "../other/model.safetensors"}})");
  auto e = capture_error([&] { SafeTensors::open_dir(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("'../other/model.safetensors', which is not a file inside the model directory"));
}

TEST_F(SafeTensorsTest, IndexNamesMissingShard) {
  const float x = 1;
  write_safetensors(path("model-00001-of-00002.safetensors"), {{"model.norm.weight", DType::F32, {1}, &x}});
  write("model.safetensors.index.json", R"({"weight_map": {
      "model.norm.weight": "model-00001-of-00002.safetensors",
      "lm_head.weight": "model-00002-of-00002.safetensors"}})");
  auto e = capture_error([&] { SafeTensors::open_dir(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_IO);
  EXPECT_THAT(msg(e), HasSubstr("shard model-00002-of-00002.safetensors named by model.safetensors.index.json "
                                "for tensor lm_head.weight does not exist"));
}

TEST_F(SafeTensorsTest, IndexMapsTensorThatShardLacks) {
  const float x = 1;
  write_safetensors(path("model-00001-of-00001.safetensors"), {{"model.norm.weight", DType::F32, {1}, &x}});
  write("model.safetensors.index.json", R"({"weight_map": {
      "model.norm.weight": "model-00001-of-00001.safetensors",
      "lm_head.weight": "model-00001-of-00001.safetensors"}})");
  auto e = capture_error([&] { SafeTensors::open_dir(dir_.string()); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("model.safetensors.index.json maps tensor lm_head.weight to "
                                "model-00001-of-00001.safetensors"));
  EXPECT_THAT(msg(e), HasSubstr("does not contain it"));
}

TEST_F(SafeTensorsTest, ErrorInShardNamesTheShard) {
  write("model-00001-of-00001.safetensors", st_image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", "abcd"));
  write("model.safetensors.index.json", R"({"weight_map": {"w": "model-00001-of-00001.safetensors"}})");
  auto e = capture_error([&] { SafeTensors::open_dir(dir_.string()); });
  EXPECT_THAT(msg(e), HasSubstr("tensor w in " + path("model-00001-of-00001.safetensors")));
}

TEST_F(SafeTensorsTest, GetReportsShapeMismatchWithConfigFields) {
  const float emb[8] = {};
  write_safetensors(path("model.safetensors"), {{"model.embed_tokens.weight", DType::F32, {4, 2}, emb}});
  auto st = SafeTensors::open_file(path("model.safetensors"));
  auto e = capture_error([&] { st->get("model.embed_tokens.weight", {8, 2}, "vocab_size=8, hidden_size=2"); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("tensor model.embed_tokens.weight in " + path("model.safetensors") +
                                " has shape [4, 2], expected [8, 2] (from config.json: vocab_size=8, hidden_size=2)"));
}

TEST_F(SafeTensorsTest, GetReportsMissingTensor) {
  const float x = 0;
  write_safetensors(path("model.safetensors"), {{"x", DType::F32, {1}, &x}});
  auto st = SafeTensors::open_dir(dir_.string());
  EXPECT_EQ(st->find("lm_head.weight"), nullptr);
  auto e = capture_error([&] { st->get("lm_head.weight"); });
  EXPECT_EQ(e.code(), INFER_ERR_FORMAT);
  EXPECT_THAT(msg(e), HasSubstr("missing tensor lm_head.weight in " + dir_.string()));
  auto e2 = capture_error([&] { st->get("lm_head.weight", {4, 2}, "vocab_size=4"); });
  EXPECT_THAT(msg(e2), HasSubstr("missing tensor lm_head.weight (expected shape [4, 2] (from config.json: vocab_size=4)) in " +
                                 dir_.string()));
}

}  // namespace
