// jinja_pystr.h — Python str semantics over UTF-8 for the Jinja2 interpreter: what str.isspace,
// strip, split, splitlines, upper/lower/title, repr() and len() do on code points, so that template
// string operations give the bytes CPython would. Case mappings and categories come from utf8proc
// (simple case mappings: 'ß'.upper() stays 'ß' here where CPython gives 'SS').
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "unicode.h"

namespace infer::jinja::py {

// Decodes the code point at s[i] and advances i (an invalid byte decodes as itself, one byte).
char32_t decode_at(std::string_view s, size_t& i);
using unicode::append_utf8;  // UTF-8 encoding is the tokenizer's (src/unicode.h)
bool is_ascii(std::string_view s);

bool is_space(char32_t cp);      // str.isspace / regex \s
bool is_printable(char32_t cp);  // str.isprintable (repr escapes the others)
bool is_cased_upper(char32_t cp);
bool is_cased_lower(char32_t cp);
bool is_alpha(char32_t cp);
bool is_decimal(char32_t cp);    // category Nd
bool is_numeric(char32_t cp);    // categories Nd, Nl, No

bool all_ws(std::string_view s);  // every code point is whitespace (true for "")
std::string_view rstrip_ws(std::string_view s);
std::string_view lstrip_ws(std::string_view s);
// str.strip / lstrip / rstrip: chars = nullopt strips whitespace, else any code point of chars.
std::string_view strip(std::string_view s, const std::optional<std::string_view>& chars, bool left, bool right);

size_t length(std::string_view s);                        // len(s) in code points
std::vector<uint32_t> cp_offsets(std::string_view s);      // byte offset of each code point, plus size()

std::string upper(std::string_view s);
std::string lower(std::string_view s);
std::string swapcase(std::string_view s);
std::string title(std::string_view s);       // str.title()
std::string capitalize(std::string_view s);  // str.capitalize()

// str.split / str.rsplit (sep = nullopt: runs of whitespace). Throws on an empty separator.
std::vector<std::string> split(std::string_view s, const std::optional<std::string_view>& sep, int64_t maxsplit);
std::vector<std::string> rsplit(std::string_view s, const std::optional<std::string_view>& sep, int64_t maxsplit);
std::vector<std::string> splitlines(std::string_view s, bool keepends);

std::string repr(std::string_view s);  // repr(str): quotes chosen and characters escaped as CPython does

}  // namespace infer::jinja::py
