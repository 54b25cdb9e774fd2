// jinja_pystr.cpp — Python str semantics over UTF-8 (see jinja_pystr.h).
#include "jinja_pystr.h"

#include <utf8proc.h>

#include <algorithm>

#include "jinja_ast.h"

namespace infer::jinja::py {

// UTF-8 decoding that never fails: templates and JSON input are valid UTF-8, and a stray byte
// is passed through as itself rather than rejected.
char32_t decode_at(std::string_view s, size_t& i) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  int len = b0 < 0x80 ? 1 : (b0 >> 5) == 0x6 ? 2 : (b0 >> 4) == 0xE ? 3 : (b0 >> 3) == 0x1E ? 4 : 0;
  if (len == 0 || i + size_t(len) > s.size()) {
    ++i;
    return b0;
  }
  char32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
  for (int k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + size_t(k)]);
    if ((b & 0xC0) != 0x80) {
      ++i;
      return b0;
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  i += size_t(len);
  return cp;
}

bool is_ascii(std::string_view s) {
  for (char c : s)
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  return true;
}

// CPython's Py_UNICODE_ISSPACE (str.isspace and the regex \s that jinja2's lexer uses).
bool is_space(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
         c == 0x202F || c == 0x205F || c == 0x3000;
}

namespace {
utf8proc_category_t category(char32_t c) { return utf8proc_category(static_cast<utf8proc_int32_t>(c)); }
char32_t to_upper(char32_t c) { return c < 0x80 ? (c >= 'a' && c <= 'z' ? c - 32 : c) : char32_t(utf8proc_toupper(int32_t(c))); }
char32_t to_lower(char32_t c) { return c < 0x80 ? (c >= 'A' && c <= 'Z' ? c + 32 : c) : char32_t(utf8proc_tolower(int32_t(c))); }
char32_t to_title(char32_t c) { return c < 0x80 ? to_upper(c) : char32_t(utf8proc_totitle(int32_t(c))); }
bool is_cased(char32_t c) {
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

template <typename F>
std::string map_cps(std::string_view s, F&& f) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) append_utf8(out, f(decode_at(s, i)));
  return out;
}
}  // namespace

// str.isprintable: categories Cc, Cf, Cs, Co, Cn, Zl, Zp, Zs are not printable, except ' '.
bool is_printable(char32_t c) {
  if (c == ' ') return true;
  if (c < 0x20 || c == 0x7F) return false;
  if (c < 0x7F) return true;
  switch (category(c)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL: case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
      return false;
    default:
      return true;
  }
}

// Character classes for islower/isupper/isalpha/isdigit/isnumeric, from utf8proc categories.
bool is_cased_upper(char32_t c) {
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT;
}
bool is_cased_lower(char32_t c) { return category(c) == UTF8PROC_CATEGORY_LL; }
bool is_alpha(char32_t c) {
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT ||
         k == UTF8PROC_CATEGORY_LM || k == UTF8PROC_CATEGORY_LO;
}
bool is_decimal(char32_t c) { return category(c) == UTF8PROC_CATEGORY_ND; }
bool is_numeric(char32_t c) {
  const auto k = category(c);
  return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

bool all_ws(std::string_view s) {
  for (size_t i = 0; i < s.size();)
    if (!is_space(decode_at(s, i))) return false;
  return true;
}

// Whitespace or a set of code points, from either end, walking whole code points.
std::string_view strip(std::string_view s, const std::optional<std::string_view>& chars, bool left, bool right) {
  std::vector<char32_t> set;
  if (chars)
    for (size_t i = 0; i < chars->size();) set.push_back(decode_at(*chars, i));
  auto strip_it = [&](char32_t c) {
    return chars ? std::find(set.begin(), set.end(), c) != set.end() : is_space(c);
  };
  size_t b = 0, e = s.size();
  if (left) {
    while (b < e) {
      size_t next = b;
      if (!strip_it(decode_at(s, next))) break;
      b = next;
    }
  }
  if (right) {
    while (e > b) {
      size_t start = e - 1;
      while (start > b && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      size_t probe = start;
      if (!strip_it(decode_at(s, probe))) break;
      e = start;
    }
  }
  return s.substr(b, e - b);
}

std::string_view rstrip_ws(std::string_view s) { return strip(s, std::nullopt, false, true); }
std::string_view lstrip_ws(std::string_view s) { return strip(s, std::nullopt, true, false); }

// Code points = bytes that are not UTF-8 continuation bytes.
size_t length(std::string_view s) {
  size_t n = 0;
  for (char c : s) n += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  return n;
}

std::vector<uint32_t> cp_offsets(std::string_view s) {
  std::vector<uint32_t> off;
  off.reserve(s.size() + 1);
  for (size_t i = 0; i < s.size();) {
    off.push_back(static_cast<uint32_t>(i));
    decode_at(s, i);
  }
  off.push_back(static_cast<uint32_t>(s.size()));
  return off;
}

std::string upper(std::string_view s) { return map_cps(s, to_upper); }
std::string lower(std::string_view s) { return map_cps(s, to_lower); }
std::string swapcase(std::string_view s) {
  return map_cps(s, [](char32_t c) { return is_cased_upper(c) ? to_lower(c) : is_cased_lower(c) ? to_upper(c) : c; });
}

// str.title(): title-case after an uncased character, lower-case after a cased one.
std::string title(std::string_view s) {
  std::string out;
  bool prev_cased = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = decode_at(s, i);
    append_utf8(out, prev_cased ? to_lower(c) : to_title(c));
    prev_cased = is_cased(c);
  }
  return out;
}

// str.capitalize(): the first character title-cased, the rest lower-cased (Python 3.8+).
std::string capitalize(std::string_view s) {
  std::string out;
  bool first = true;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = decode_at(s, i);
    append_utf8(out, first ? to_title(c) : to_lower(c));
    first = false;
  }
  return out;
}

// str.split: with a separator, exact matches; without, runs of whitespace with the ends ignored
// (after maxsplit splits the rest is kept whole, its leading whitespace dropped).
std::vector<std::string> split(std::string_view s, const std::optional<std::string_view>& sep, int64_t maxsplit) {
  std::vector<std::string> out;
  if (maxsplit < 0) maxsplit = INT64_MAX;
  if (sep) {
    if (sep->empty()) render_error("ValueError: empty separator");
    size_t pos = 0;
    while (int64_t(out.size()) < maxsplit) {
      const size_t f = s.find(*sep, pos);
      if (f == std::string_view::npos) break;
      out.emplace_back(s.substr(pos, f - pos));
      pos = f + sep->size();
    }
    out.emplace_back(s.substr(pos));
    return out;
  }
  size_t i = 0;
  auto skip_ws = [&] {
    while (i < s.size()) {
      size_t n = i;
      if (!is_space(decode_at(s, n))) break;
      i = n;
    }
  };
  skip_ws();
  while (i < s.size()) {
    if (int64_t(out.size()) == maxsplit) {
      out.emplace_back(s.substr(i));
      break;
    }
    const size_t start = i;
    while (i < s.size()) {
      size_t n = i;
      if (is_space(decode_at(s, n))) break;
      i = n;
    }
    out.emplace_back(s.substr(start, i - start));
    skip_ws();
  }
  return out;
}

// str.rsplit: split from the right; differs from split only when maxsplit limits it.
std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string_view>& sep, int64_t maxsplit) {
  if (maxsplit < 0) return split(s, sep, maxsplit);
  std::vector<std::string> out;
  if (sep) {
    if (sep->empty()) render_error("ValueError: empty separator");
    size_t end = s.size();
    while (int64_t(out.size()) < maxsplit) {
      if (end < sep->size()) break;
      const size_t f = s.rfind(*sep, end - sep->size());
      if (f == std::string_view::npos) break;
      out.emplace_back(s.substr(f + sep->size(), end - f - sep->size()));
      end = f;
    }
    out.emplace_back(s.substr(0, end));
    std::reverse(out.begin(), out.end());
    return out;
  }
  // Whitespace: walk code points from the end.
  const std::vector<uint32_t> off = cp_offsets(s);
  auto space_at = [&](size_t k) {
    size_t p = off[k];
    return is_space(decode_at(s, p));
  };
  size_t k = off.size() - 1;  // one past the last code point
  auto skip_ws = [&] {
    while (k > 0 && space_at(k - 1)) --k;
  };
  skip_ws();
  while (k > 0) {
    if (int64_t(out.size()) == maxsplit) {
      out.emplace_back(s.substr(0, off[k]));
      break;
    }
    const size_t end = k;
    while (k > 0 && !space_at(k - 1)) --k;
    out.emplace_back(s.substr(off[k], off[end] - off[k]));
    skip_ws();
  }
  std::reverse(out.begin(), out.end());
  return out;
}

// str.splitlines: \n, \r, \r\n, \v, \f, \x1c-\x1e, \x85, \u2028, \u2029 end lines.
std::vector<std::string> splitlines(std::string_view s, bool keepends) {
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    const char32_t c = decode_at(s, i);
    const bool brk = c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
                     c == 0x85 || c == 0x2028 || c == 0x2029;
    if (!brk) continue;
    if (c == '\r' && i < s.size() && s[i] == '\n') ++i;
    out.emplace_back(s.substr(start, (keepends ? i : at) - start));
    start = i;
  }
  if (start < s.size()) out.emplace_back(s.substr(start));
  return out;
}

// repr(str): single quotes unless the text has ' and no "; \t \n \r and the quote escaped;
// non-printable characters as \xNN, \uNNNN or \UNNNNNNNN.
std::string repr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = has_single && !has_double ? '"' : '\'';
  std::string out(1, quote);
  static const char* hex = "0123456789abcdef";
  for (size_t i = 0; i < s.size();) {
    const char32_t c = decode_at(s, i);
    if (c == char32_t(quote) || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (is_printable(c)) {
      append_utf8(out, c);
    } else {
      const int digits = c <= 0xFF ? 2 : c <= 0xFFFF ? 4 : 8;
      out += digits == 2 ? "\\x" : digits == 4 ? "\\u" : "\\U";
      for (int k = digits - 1; k >= 0; --k) out += hex[(c >> (4 * k)) & 0xF];
    }
  }
  out += quote;
  return out;
}

}  // namespace infer::jinja::py
