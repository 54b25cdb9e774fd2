// test_fp8.cpp — FP8 (float8_e4m3fn) weights with 128×128 block scales: the e4m3 table, the w8a16 kernel against
// an fp32 GEMM on the dequantised matrix (every ISA path, edge blocks, views into a parent's scale grid), the
// scale dtypes, that the weights stay FP8 in memory, and every load error naming its tensor or field. HF parity of
// the FP8 fixtures (dsv3_fp8 with F32 scales, qwen3_moe_fp8 with BF16 scales) is in test_models.cpp: there the
// references are HF float32 run on the dequantised weights, so the same 1e-4 logit tolerance holds.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "fixtures.h"

#include "forwarding_backend.h"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>

#include "common.h"
#include "cpu/backend_cpu.h"
#include "cpu/ops.h"
#include "cpu/ops_fp8.h"
#include "model.h"
#include "safetensors.h"
#include "session.h"

using ::testing::HasSubstr;
namespace fs = std::filesystem;
using namespace infer;
using namespace infer::testutil;

namespace {

TEST(Fp8, E4m3Table) {
  const float* t = cpu::fp8_e4m3_table();
  EXPECT_EQ(t[0x00], 0.0f);
  EXPECT_EQ(t[0x01], std::ldexp(1.0f, -9));  // smallest subnormal
  EXPECT_EQ(t[0x08], std::ldexp(1.0f, -6));  // smallest normal
  EXPECT_EQ(t[0x38], 1.0f);
  EXPECT_EQ(t[0x7e], 448.0f);  // max finite
  EXPECT_TRUE(std::isnan(t[0x7f]));
  EXPECT_EQ(t[0xfe], -448.0f);
  EXPECT_TRUE(std::signbit(t[0x80]));
}

// A random FP8 matrix [rows, cols] with random block scales of dtype sd, and its dequantised fp32 copy.
struct Fp8Mat {
  std::vector<uint8_t> q;
  std::vector<uint16_t> s16;
  std::vector<float> s32, deq;
  cpu::Matrix m, f;
  Fp8Mat(int64_t rows, int64_t cols, DType sd, uint32_t seed) {
    std::mt19937 rng(seed);
    q.resize(size_t(rows * cols));
    for (auto& b : q) {
      do b = uint8_t(rng()); while ((b & 0x7f) == 0x7f);  // no NaN
    }
    const int64_t rb = (rows + 127) / 128, cb = (cols + 127) / 128;
    std::uniform_real_distribution<float> u(1e-3f, 4e-3f);
    s32.resize(size_t(rb * cb));
    s16.resize(s32.size());
    for (size_t i = 0; i < s32.size(); ++i) {
      const float v = u(rng);
      if (sd == DType::BF16) s16[i] = f32_to_bf16(v), s32[i] = bf16_to_f32(s16[i]);
      else if (sd == DType::F16) s16[i] = f32_to_f16(v), s32[i] = f16_to_f32(s16[i]);
      else s32[i] = v;
    }
    deq.resize(q.size());
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < cols; ++c)
        deq[size_t(r * cols + c)] = cpu::fp8_e4m3_table()[q[size_t(r * cols + c)]] * s32[size_t(r / 128 * cb + c / 128)];
    m.dtype = DType::F8_E4M3;
    m.data = q.data();
    m.rows = rows;
    m.cols = cols;
    m.scale = sd == DType::F32 ? static_cast<const void*>(s32.data()) : static_cast<const void*>(s16.data());
    m.scale_dtype = sd;
    m.block = 128;
    m.scale_cols = cb;
    f.dtype = DType::F32;
    f.data = deq.data();
    f.rows = rows;
    f.cols = cols;
  }
};

// The w8a16 kernel feeds dequantised rows to the fp32 kernels, so it equals an fp32 GEMM on the dequantised matrix
// bit for bit: for every ISA path, every scale dtype, edge blocks (200 × 300 = 2 × 3 blocks, the last ones partial),
// token counts around the 4-token tiles and the 64-token blocks, and 1 or 2 threads.
TEST(Fp8, MatmulEqualsDequantisedGemm) {
  const cpu::Isa saved = cpu::active_isa();
  const int64_t saved_work = cpu::min_parallel_work();
  cpu::set_min_parallel_work(1);
  for (DType sd : {DType::F32, DType::BF16, DType::F16}) {
    Fp8Mat w(200, 300, sd, 1);
    for (int64_t T : {1, 3, 5, 70}) {
      std::vector<float> x(size_t(T * 310));
      std::mt19937 rng{uint32_t(T)};
      std::normal_distribution<float> n;
      for (auto& v : x) v = n(rng);
      for (cpu::Isa isa : {cpu::Isa::Generic, cpu::Isa::Avx2, cpu::Isa::Avx512}) {
        cpu::set_isa(isa);
        for (int threads : {1, 2}) {
          ThreadPool pool(threads);
          std::vector<float> a(size_t(T * 205), 0.f), b(size_t(T * 205), 0.f);
          cpu::matmul_fp8(pool, x.data(), 310, w.m, a.data(), 205, T);
          cpu::matmul(pool, x.data(), 310, w.f, b.data(), 205, T);
          EXPECT_EQ(a, b) << dtype_name(sd) << " T=" << T << " " << cpu::isa_name(cpu::active_isa()) << " threads "
                          << threads;
        }
      }
    }
  }
  cpu::set_isa(saved);
  cpu::set_min_parallel_work(saved_work);
}

// MLA's per-head products use views of kv_b_proj whose first row lies inside a scale block (scale_row0): the
// absorbed ops on FP8 equal those on the dequantised matrix.
TEST(Fp8, MlaViewsKeepTheParentScaleGrid) {
  const int64_t nh = 4, dn = 24, dv = 40, r = 150, dr = 8, T = 3;
  Fp8Mat w(nh * (dn + dv), r, DType::F32, 3);
  CpuBackend be(2);
  std::vector<float> q(size_t(T * nh * (dn + dr))), o(size_t(T * nh * r));
  std::mt19937 rng(5);
  std::normal_distribution<float> n;
  for (auto& v : q) v = n(rng);
  for (auto& v : o) v = n(rng);
  std::vector<float> qa8(size_t(T * nh * (r + dr))), qa32(qa8.size()), out8(size_t(T * nh * dv)), out32(out8.size());
  be.mla_absorb_q(q.data(), nh * (dn + dr), w.m, qa8.data(), nh * (r + dr), T, nh, dn, dr, dv);
  be.mla_absorb_q(q.data(), nh * (dn + dr), w.f, qa32.data(), nh * (r + dr), T, nh, dn, dr, dv);
  EXPECT_EQ(qa8, qa32);
  be.mla_absorb_out(o.data(), nh * r, w.m, out8.data(), nh * dv, T, nh, dn, dv);
  be.mla_absorb_out(o.data(), nh * r, w.f, out32.data(), nh * dv, T, nh, dn, dv);
  EXPECT_EQ(out8, out32);
}

// ---- checkpoints

// A backend that records the matrices the model multiplies with (everything else forwarded to the CPU backend).
class RecordingBackend final : public ForwardingBackend {
 public:
  std::map<const void*, DType> seen;
  std::string name() const override { return "recording-cpu"; }
  void matmul(const float* x, int64_t ldx, const cpu::Matrix& w, float* y, int64_t ldy, int64_t T) override {
    seen[w.data] = w.dtype;
    ForwardingBackend::matmul(x, ldx, w, y, ldy, T);
  }
  void mla_absorb_q(const float* q, int64_t ldq, const cpu::Matrix& kv_b, float* qa, int64_t ldqa, int64_t T,
                    int64_t nh, int64_t dn, int64_t dr, int64_t dv) override {
    seen[kv_b.data] = kv_b.dtype;
    ForwardingBackend::mla_absorb_q(q, ldq, kv_b, qa, ldqa, T, nh, dn, dr, dv);
  }
};

// Every FP8 tensor of the checkpoint is multiplied in place from the memory-mapped file (dtype F8_E4M3, the
// mmap's address): the model is never expanded to bf16 / fp32.
TEST(Fp8, WeightsStayFp8InTheMmap) {
  for (const char* name : {"dsv3_fp8", "qwen3_moe_fp8"}) {
    auto m = Transformer::load(model_dir(name), LoadOptions{}, false);
    auto be = std::make_unique<RecordingBackend>();
    RecordingBackend* rec = be.get();
    Session s(*m, 64, std::move(be), 64);
    std::vector<int32_t> ids(40);
    for (int i = 0; i < 40; ++i) ids[size_t(i)] = 4 + (i * 37) % 200;
    s.eval(ids.data(), 30, true);                  // prefill (MLA naive path)
    for (int i = 30; i < 40; ++i) s.eval(&ids[size_t(i)], 1, false);  // decode (absorbed)
    int n_fp8 = 0, used = 0;
    for (const auto& [tname, t] : m->weights->tensors()) {
      if (t.dtype != DType::F8_E4M3) continue;
      ++n_fp8;
      auto it = rec->seen.find(t.data);
      if (it == rec->seen.end()) continue;  // an expert no token was routed to
      ++used;
      EXPECT_EQ(it->second, DType::F8_E4M3) << tname;
    }
    EXPECT_GT(n_fp8, 20) << name;
    EXPECT_GT(used, n_fp8 / 2) << name;
  }
}

// ---- load errors

// A fixture copy whose weights a test may rewrite tensor by tensor (any dtype).
struct DirCopy : FixtureCopy {
  std::unique_ptr<SafeTensors> src;
  DirCopy(const std::string& name, const std::string& tag)
      : FixtureCopy(name, "fp8_" + tag), src(SafeTensors::open_dir(model_dir(name))) {}
  // Rewrites model.safetensors through `fn`, which may drop (return false) or change a tensor's bytes / dtype / shape.
  struct T {
    DType dtype;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
  };
  void rewrite(const std::function<bool(const std::string&, T&)>& fn) {
    std::map<std::string, T> out;
    for (const auto& [n, t] : src->tensors()) {
      T x{t.dtype, t.shape, std::vector<uint8_t>(t.data, t.data + t.nbytes)};
      if (fn(n, x)) out[n] = std::move(x);
    }
    write_raw(out);
  }
  // A minimal safetensors writer for any dtype (write_safetensors takes F32/I32 only).
  void write_raw(const std::map<std::string, T>& ts) {
    nlohmann::json h = nlohmann::json::object();
    size_t off = 0;
    for (const auto& [n, t] : ts) {
      h[n] = {{"dtype", dtype_name(t.dtype)}, {"shape", t.shape}, {"data_offsets", {off, off + t.bytes.size()}}};
      off += t.bytes.size();
    }
    std::string hs = h.dump();
    hs.append((8 - hs.size() % 8) % 8, ' ');
    std::ofstream f(dir / "model.safetensors", std::ios::binary);
    const uint64_t n = hs.size();
    f.write(reinterpret_cast<const char*>(&n), 8);
    f << hs;
    for (const auto& [name, t] : ts) f.write(reinterpret_cast<const char*>(t.bytes.data()), std::streamsize(t.bytes.size()));
  }
};

const std::string kW = "model.layers.0.self_attn.q_b_proj.weight";

TEST(Fp8Load, MissingScale) {
  DirCopy d("dsv3_fp8", "noscale");
  d.rewrite([](const std::string& n, DirCopy::T&) { return n != kW + "_scale_inv"; });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr("tensor " + kW));
  EXPECT_THAT(e, HasSubstr(kW + "_scale_inv"));
  EXPECT_THAT(e, HasSubstr("missing"));
}

TEST(Fp8Load, ScaleShapeMismatch) {
  DirCopy d("dsv3_fp8", "scaleshape");
  d.rewrite([](const std::string& n, DirCopy::T& t) {
    if (n == kW + "_scale_inv") {  // [2, 1] → [1, 2]
      t.shape = {1, 2};
    }
    return true;
  });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr(kW + "_scale_inv"));
  EXPECT_THAT(e, HasSubstr("[1, 2], expected [2, 1]"));
  EXPECT_THAT(e, HasSubstr("128x128"));
}

TEST(Fp8Load, ScaleDtype) {
  DirCopy d("dsv3_fp8", "scaledtype");
  d.rewrite([](const std::string& n, DirCopy::T& t) {
    if (n == kW + "_scale_inv") t.dtype = DType::I32;
    return true;
  });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_UNSUPPORTED);
  EXPECT_THAT(e, HasSubstr(kW + "_scale_inv"));
  EXPECT_THAT(e, HasSubstr("I32"));
}

TEST(Fp8Load, BlockSizeInConfig) {
  DirCopy d("dsv3_fp8", "block");
  d.edit([](nlohmann::json& j) { j["quantization_config"]["weight_block_size"] = {64, 64}; });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_UNSUPPORTED);
  EXPECT_THAT(e, HasSubstr("quantization_config.weight_block_size [64, 64]"));
}

TEST(Fp8Load, QuantMethod) {
  DirCopy d("dsv3_fp8", "method");
  d.edit([](nlohmann::json& j) { j["quantization_config"]["quant_method"] = "gptq"; });
  infer_status code{};
  EXPECT_THAT(load_error(d.dir, &code), HasSubstr("quantization_config.quant_method 'gptq'"));
  EXPECT_EQ(code, INFER_ERR_UNSUPPORTED);
}

TEST(Fp8Load, ExpertCountDisagrees) {
  DirCopy d("dsv3_fp8", "experts");
  d.edit([](nlohmann::json& j) { j["n_routed_experts"] = 10; });
  infer_status code{};
  const std::string e = load_error(d.dir, &code);
  EXPECT_EQ(code, INFER_ERR_FORMAT);
  EXPECT_THAT(e, HasSubstr("model.layers.1.mlp.gate.weight"));
  EXPECT_THAT(e, HasSubstr("n_routed_experts"));
}

// F16 and BF16 scales are read as such: a copy whose F32 scales are replaced by their F16 roundings gives the logits
// of a copy holding those rounded values as F32.
TEST(Fp8Load, HalfPrecisionScales) {
  for (DType sd : {DType::F16, DType::BF16}) {
    DirCopy half("dsv3_fp8", std::string("half_") + dtype_name(sd)), full("dsv3_fp8", std::string("full_") + dtype_name(sd));
    auto round = [&](float v) { return sd == DType::F16 ? f16_to_f32(f32_to_f16(v)) : bf16_to_f32(f32_to_bf16(v)); };
    half.rewrite([&](const std::string& n, DirCopy::T& t) {
      if (!n.ends_with("_scale_inv")) return true;
      std::vector<uint8_t> b(t.bytes.size() / 2);
      for (size_t i = 0; i < t.bytes.size() / 4; ++i) {
        float v;
        std::memcpy(&v, &t.bytes[i * 4], 4);
        const uint16_t h = sd == DType::F16 ? f32_to_f16(v) : f32_to_bf16(v);
        std::memcpy(&b[i * 2], &h, 2);
      }
      t.bytes = b;
      t.dtype = sd;
      return true;
    });
    full.rewrite([&](const std::string& n, DirCopy::T& t) {
      if (!n.ends_with("_scale_inv")) return true;
      for (size_t i = 0; i < t.bytes.size() / 4; ++i) {
        float v;
        std::memcpy(&v, &t.bytes[i * 4], 4);
        v = round(v);
        std::memcpy(&t.bytes[i * 4], &v, 4);
      }
      return true;
    });
    auto a = Transformer::load(half.dir.string(), LoadOptions{}, false);
    auto b = Transformer::load(full.dir.string(), LoadOptions{}, false);
    const int32_t ids[] = {5, 17, 99, 200, 31, 7};
    Session sa(*a, 16, 2, 16), sb(*b, 16, 2, 16);
    sa.eval(ids, 6, true);
    sb.eval(ids, 6, true);
    const size_t n = 6 * size_t(a->vocab_size());
    EXPECT_TRUE(std::equal(sa.logits(), sa.logits() + n, sb.logits())) << dtype_name(sd);
  }
}

}  // namespace
