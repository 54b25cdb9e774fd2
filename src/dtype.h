// dtype.h — element types of checkpoint tensors and scalar conversions (bf16/f16/fp8 e4m3 → f32).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace infer {

enum class DType : uint8_t { F32, F16, BF16, F8_E4M3, F64, I64, I32, I16, I8, U8, BOOL, F8_E5M2 };

// Size of one element in bytes.
size_t dtype_size(DType t);
// Safetensors name ("BF16", "F8_E4M3", …).
const char* dtype_name(DType t);
// Parses a safetensors dtype string; returns false if unknown.
bool dtype_from_name(const std::string& s, DType* out);

inline float bf16_to_f32(uint16_t h) {
  uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
// Round-to-nearest-even, NaN preserved (as torch does).
inline uint16_t f32_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f);
// float8_e4m3fn: no infinities, NaN = S.1111.111, max finite 448.
float f8e4m3_to_f32(uint8_t v);

}  // namespace infer
