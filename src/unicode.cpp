// unicode.cpp — UTF-8 decoding with Rust's lossy-replacement rules, and utf8proc normalization.
#include "unicode.h"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>

#include "common.h"

namespace infer::unicode {

namespace {

inline bool is_cont(unsigned char b) { return (b & 0xC0) == 0x80; }

}  // namespace

Utf8Step utf8_step(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  const unsigned char b0 = p[0];
  if (b0 < 0x80) return {Utf8Step::kValid, 1, b0};
  // The allowed range of the second byte depends on the lead byte (this rules out overlongs,
  // surrogates and code points above U+10FFFF); later bytes are plain continuation bytes.
  size_t width = 0;
  unsigned char lo = 0x80, hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    width = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    width = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    width = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return {Utf8Step::kInvalid, 1};  // a stray continuation byte, C0/C1 or F5..FF
  }
  if (n < 2) return {Utf8Step::kTruncated, 1};
  if (p[1] < lo || p[1] > hi) return {Utf8Step::kInvalid, 1};
  char32_t cp = (width == 2) ? (b0 & 0x1F) : (width == 3) ? (b0 & 0x0F) : (b0 & 0x07);
  cp = (cp << 6) | (p[1] & 0x3F);
  for (size_t k = 2; k < width; ++k) {
    if (n <= k) return {Utf8Step::kTruncated, k};
    if (!is_cont(p[k])) return {Utf8Step::kInvalid, k};
    cp = (cp << 6) | (p[k] & 0x3F);
  }
  return {Utf8Step::kValid, width, cp};
}

bool utf8_valid(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    // ASCII fast path, eight bytes at a time.
    while (i + 8 <= n) {
      uint64_t w;
      __builtin_memcpy(&w, s.data() + i, 8);
      if (w & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const Utf8Step st = utf8_step(s.substr(i));
    if (st.kind != Utf8Step::kValid) return false;
    i += st.len;
  }
  return true;
}

std::string utf8_lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  size_t i = 0;
  while (i < s.size()) {
    const Utf8Step st = utf8_step(s.substr(i));
    if (st.kind == Utf8Step::kValid) {
      out.append(s.data() + i, st.len);
    } else {
      out += "\xEF\xBF\xBD";  // U+FFFD for each maximal invalid subpart
    }
    i += st.len;
  }
  return out;
}

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

char32_t next_cp(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  if (b0 < 0x80) {
    ++i;
    return b0;
  }
  const Utf8Step st = utf8_step(s.substr(i));
  i += st.len;
  return st.cp;
}

char32_t prev_cp(std::string_view s, size_t& i) {
  size_t j = i - 1;
  while (j > 0 && is_cont(static_cast<unsigned char>(s[j]))) --j;
  size_t k = j;
  const char32_t cp = next_cp(s, k);
  i = j;
  return cp;
}

bool normalization_trivially_stable(std::string_view s, NormForm form) {
  // Under NFC nothing below U+0300 changes: no such character has a canonical singleton
  // decomposition or is the second half of a canonical composition, and precomposed letters like
  // U+00C0 recompose to themselves. The lead bytes of U+0000..U+02FF are all below 0xCC.
  // The other forms decompose Latin-1 letters (NFD) or compatibility characters (NFK*), so only
  // ASCII is trivially stable for them.
  const unsigned char limit = (form == NormForm::kNFC) ? 0xCC : 0x80;
  for (char c : s) {
    if (static_cast<unsigned char>(c) >= limit) return false;
  }
  return true;
}

std::string normalize(std::string_view s, NormForm form) {
  if (normalization_trivially_stable(s, form)) return std::string(s);
  int options = UTF8PROC_STABLE;
  switch (form) {
    case NormForm::kNFC: options |= UTF8PROC_COMPOSE; break;
    case NormForm::kNFD: options |= UTF8PROC_DECOMPOSE; break;
    case NormForm::kNFKC: options |= UTF8PROC_COMPOSE | UTF8PROC_COMPAT; break;
    case NormForm::kNFKD: options |= UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT; break;
  }
  utf8proc_uint8_t* out = nullptr;
  // Without UTF8PROC_NULLTERM the length bounds the input, so embedded NULs are ordinary characters.
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()),
                                          static_cast<utf8proc_ssize_t>(s.size()), &out,
                                          static_cast<utf8proc_option_t>(options));
  if (n < 0) {
    fail(INFER_ERR_INTERNAL, std::string("unicode normalization failed: ") + utf8proc_errmsg(n));
  }
  std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> holder(out, &std::free);
  return std::string(reinterpret_cast<const char*>(out), static_cast<size_t>(n));
}

}  // namespace infer::unicode
