// dtype.cpp — safetensors dtype names/sizes and the scalar f16 / fp8-e4m3 conversions.
// Bit-level conversions (no reliance on F16C or _Float16) so results are identical on every host and
// match torch's: f32→f16 rounds to nearest even, overflows to ±inf, keeps NaN a NaN.
#include "dtype.h"

#include <cmath>

namespace infer {

namespace {

struct DTypeEntry {
  DType type;
  const char* name;
  size_t size;
};

// Every DType, in enum order.
constexpr DTypeEntry kDTypes[] = {
    {DType::F32, "F32", 4},     {DType::F16, "F16", 2},         {DType::BF16, "BF16", 2},
    {DType::F8_E4M3, "F8_E4M3", 1}, {DType::F64, "F64", 8},     {DType::I64, "I64", 8},
    {DType::I32, "I32", 4},     {DType::I16, "I16", 2},         {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},       {DType::BOOL, "BOOL", 1},       {DType::F8_E5M2, "F8_E5M2", 1},
};

const DTypeEntry* entry(DType t) {
  for (const auto& e : kDTypes)
    if (e.type == t) return &e;
  return nullptr;
}

uint32_t bits_of(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float float_of(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

}  // namespace

size_t dtype_size(DType t) {
  const DTypeEntry* e = entry(t);
  return e ? e->size : 0;
}

const char* dtype_name(DType t) {
  const DTypeEntry* e = entry(t);
  return e ? e->name : "?";
}

bool dtype_from_name(const std::string& s, DType* out) {
  for (const auto& e : kDTypes) {
    if (s == e.name) {
      if (out) *out = e.type;
      return true;
    }
  }
  return false;
}

float f16_to_f32(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) {
    // inf, or NaN: keep the payload and set the quiet bit (as torch / the hardware do).
    return float_of(sign | 0x7f800000u | (mant ? (0x400000u | (mant << 13)) : 0u));
  }
  if (exp == 0) {
    if (mant == 0) return float_of(sign);
    // Subnormal: value = mant * 2^-24, exact in f32.
    float v = std::ldexp(float(mant), -24);
    return sign ? -v : v;
  }
  return float_of(sign | ((exp + 112u) << 23) | (mant << 13));  // rebias 15 → 127
}

uint16_t f32_to_f16(float f) {
  const uint32_t u = bits_of(f);
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  const uint32_t abs = u & 0x7fffffffu;
  if (abs > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((abs >> 13) & 0x3ffu));  // NaN stays NaN
  if (abs >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // ≥ 65520 (half-way past 65504) → inf
  const int32_t exp = int32_t(abs >> 23) - 127;
  if (exp >= -14) {
    // Normal f16: drop 13 mantissa bits with round-to-nearest-even; a carry into the exponent is correct.
    uint32_t r = abs - (112u << 23);  // rebias 127 → 15 (stays positive since exp ≥ -14)
    r += 0xfffu + ((r >> 13) & 1u);
    return uint16_t(sign | (r >> 13));
  }
  if (exp < -25) return sign;  // below half the smallest subnormal (2^-25) → ±0
  // Subnormal f16: value = m * 2^-24 with m = round(significand * 2^(exp+24)), significand 24 bits.
  const uint32_t sig = (abs & 0x7fffffu) | 0x800000u;
  const uint32_t shift = uint32_t(-exp - 1);  // 14 … 24: bits of sig to drop so the unit is 2^-24
  const uint32_t half = 1u << (shift - 1);
  uint32_t m = sig >> shift;
  const uint32_t rest = sig & ((1u << shift) - 1u);
  if (rest > half || (rest == half && (m & 1u))) ++m;  // may round up to the smallest normal (0x400): fine
  return uint16_t(sign | m);
}

float f8e4m3_to_f32(uint8_t v) {
  const bool neg = v & 0x80u;
  const uint32_t exp = (v >> 3) & 0xfu;
  const uint32_t mant = v & 0x7u;
  if (exp == 0xf && mant == 0x7) return neg ? -std::nanf("") : std::nanf("");
  float mag;
  if (exp == 0) {
    mag = std::ldexp(float(mant), -9);  // subnormal: mant/8 * 2^(1-7)
  } else {
    mag = float_of(((exp + 120u) << 23) | (mant << 20));  // rebias 7 → 127
  }
  return neg ? -mag : mag;
}

}  // namespace infer
