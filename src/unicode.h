// unicode.h — UTF-8 helpers and Unicode normalization for the tokenizer.
// Normalization forms come from utf8proc; nothing here carries hand-written Unicode tables.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace infer::unicode {

// The result of looking at the UTF-8 sequence that starts at some byte.
struct Utf8Step {
  enum Kind { kValid, kInvalid, kTruncated } kind;
  size_t len;         // bytes consumed: the character (kValid), the maximal invalid subpart (kInvalid),
                      // or the valid-so-far prefix that ran into the end of input (kTruncated)
  char32_t cp = 0;    // the code point (kValid only)
};

// Decodes one UTF-8 sequence at s[0..] (s non-empty) with Rust's from_utf8_lossy rules: an invalid
// sequence is reported with its "maximal subpart" length (1..3 bytes), so that callers replacing each
// kInvalid / kTruncated step with one U+FFFD produce exactly what HF tokenizers' decode produces.
Utf8Step utf8_step(std::string_view s);

// True when s is well-formed UTF-8 (no surrogates, no overlongs, nothing above U+10FFFF).
bool utf8_valid(std::string_view s);

// s with every invalid sequence replaced by U+FFFD (Rust String::from_utf8_lossy).
std::string utf8_lossy(std::string_view s);

// Appends the UTF-8 encoding of cp to out.
void append_utf8(std::string& out, char32_t cp);

// Decodes the code point at s[i] (s must be valid UTF-8) and advances i past it.
char32_t next_cp(std::string_view s, size_t& i);
// Decodes the code point that ends at s[i-1] (s valid UTF-8) and moves i back to its first byte.
char32_t prev_cp(std::string_view s, size_t& i);

enum class NormForm { kNFC, kNFD, kNFKC, kNFKD };

// Unicode normalization (utf8proc) of valid UTF-8. Fast path: text that cannot change (ASCII and
// other characters below U+0300 for NFC/NFD) is returned without calling utf8proc.
std::string normalize(std::string_view s, NormForm form);
// True if normalize(s, form) == s is guaranteed without running the normalizer (cheap check).
bool normalization_trivially_stable(std::string_view s, NormForm form);

}  // namespace infer::unicode
