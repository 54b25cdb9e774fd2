// jinja_lex.cpp — the lexer of the Jinja2 interpreter (jinja_lex.h).
//
// It reproduces jinja2's lexer.py rule by rule, because whitespace is where templates differ:
// newlines normalized and one trailing newline dropped; `{%-`/`-%}` strip all whitespace on that
// side; lstrip_blocks removes the spaces/tabs before a `{%` or `{#` that starts a line (not before
// `{{`, not with `{%+`); trim_blocks drops the one newline after `%}` or `#}` (not after `}}`, not
// with `+%}`); a tag ends only where its brackets are balanced; string literals use Python escapes.
#include "jinja_lex.h"

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "jinja_ast.h"
#include "jinja_pystr.h"

namespace infer::jinja {
namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// Produces the token stream jinja2's lexer would, with whitespace control already applied to the
// data tokens.
class Lexer {
 public:
  Lexer(std::string_view source, const Options& opts) : opts_(opts) {
    // jinja2: split on \r\n|\r|\n, drop one trailing empty line (keep_trailing_newline=False), join with \n.
    src_.reserve(source.size());
    for (size_t i = 0; i < source.size(); ++i) {
      if (source[i] == '\r') {
        src_ += '\n';
        if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
      } else {
        src_ += source[i];
      }
    }
    if (!opts_.keep_trailing_newline && !src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  // Root state: data up to the next tag opener, then the tag.
  std::vector<Token> run() {
    const size_t n = src_.size();
    while (pos_ < n) {
      // The earliest "{{", "{%" or "{#".
      size_t p = pos_;
      for (;;) {
        p = src_.find('{', p);
        if (p == std::string::npos || p + 1 >= n) {
          p = std::string::npos;
          break;
        }
        const char c = src_[p + 1];
        if (c == '{' || c == '%' || c == '#') break;
        ++p;
      }
      if (p == std::string::npos) {
        emit_data(src_.substr(pos_));
        pos_ = n;
        break;
      }
      // The opener's kind ('{', '%', '#') and whitespace-control sign ('-', '+' or none).
      const char kind = src_[p + 1];
      const char sign = (p + 2 < n && (src_[p + 2] == '-' || src_[p + 2] == '+')) ? src_[p + 2] : 0;
      size_t raw_end = 0;
      const bool raw = kind == '%' && match_raw_begin(p + 2 + (sign ? 1 : 0), raw_end);
      // The data before the tag, trimmed as jinja2's OptionalLStrip rule does: `-` strips all
      // whitespace; otherwise lstrip_blocks applies to block and comment tags only.
      std::string text = src_.substr(pos_, p - pos_);
      const int text_lines = count_newlines(text);  // line numbers count the original text
      if (sign == '-') {
        text.resize(py::rstrip_ws(text).size());
      } else if (sign != '+' && opts_.lstrip_blocks && kind != '{') {
        // Strip the whitespace between the last newline (or the line start) and the tag. At the
        // template start, or right after a tag that ended with a newline, l_pos 0 counts too.
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting_) && l_pos < text.size() && py::all_ws(std::string_view(text).substr(l_pos)))
          text.resize(l_pos);
      }
      emit_data(std::move(text));
      line_ += text_lines;
      line_starting_ = false;  // the last thing consumed is the tag opener
      if (raw) {
        lex_raw(raw_end);
      } else if (kind == '#') {
        pos_ = p + 2 + (sign ? 1 : 0);
        lex_comment();
      } else {
        pos_ = p + 2 + (sign ? 1 : 0);
        tokens_.push_back({kind == '{' ? Tok::kVarBegin : Tok::kBlockBegin, "", line_});
        lex_tag(kind == '%');
      }
    }
    tokens_.push_back({Tok::kEof, "", line_});
    return std::move(tokens_);
  }

 private:
  [[noreturn]] void fail(const std::string& msg) { raise(INFER_ERR_FORMAT, "syntax error: " + msg, line_); }

  static int count_newlines(std::string_view s) {
    int k = 0;
    for (char c : s) k += c == '\n';
    return k;
  }

  void emit_data(std::string text) {
    if (!text.empty()) tokens_.push_back({Tok::kData, std::move(text), line_});
  }

  bool starts(size_t at, const char* lit) const { return src_.compare(at, std::strlen(lit), lit) == 0; }

  // Skips unicode whitespace from pos_; returns whether the last character skipped was '\n'.
  bool skip_ws(size_t& at) {
    bool last_nl = false;
    while (at < src_.size()) {
      size_t next = at;
      const char32_t cp = py::decode_at(src_, next);
      if (!py::is_space(cp)) break;
      if (cp == '\n') ++line_;
      last_nl = cp == '\n';
      at = next;
    }
    return last_nl;
  }

  // `{%[-+]?\s*raw\s*(-%}\s*|%})` at `at` (just after the sign); sets `end` past it.
  bool match_raw_begin(size_t at, size_t& end) {
    size_t i = at;
    while (i < src_.size() && py::is_space(static_cast<unsigned char>(src_[i]))) ++i;
    if (!starts(i, "raw")) return false;
    i += 3;
    while (i < src_.size() && py::is_space(static_cast<unsigned char>(src_[i]))) ++i;
    if (starts(i, "-%}")) {
      end = i + 3;  // whitespace after it is skipped in lex_raw (needs line counting)
      raw_strip_after_ = true;
      return true;
    }
    if (starts(i, "%}")) {
      end = i + 2;
      raw_strip_after_ = false;
      return true;
    }
    return false;
  }

  // {% raw %} … {% endraw %}: the text between is data; the end tag has its own whitespace control.
  void lex_raw(size_t begin_end) {
    line_ += count_newlines(std::string_view(src_).substr(pos_, begin_end - pos_));
    pos_ = begin_end;
    // jinja2's line_starting after the raw-begin tag: whether it ended with a newline.
    const bool line_starting = raw_strip_after_ && skip_ws(pos_);
    // Find `{%[-+]?\s*endraw\s*(+%}|-%}\s*|%}\n?)`.
    size_t p = pos_;
    for (;;) {
      p = src_.find("{%", p);
      if (p == std::string::npos) fail("missing end of raw directive ('{% endraw %}')");
      size_t i = p + 2;
      const char sign = (i < src_.size() && (src_[i] == '-' || src_[i] == '+')) ? src_[i] : 0;
      if (sign) ++i;
      while (i < src_.size() && py::is_space(static_cast<unsigned char>(src_[i]))) ++i;
      if (!starts(i, "endraw")) {
        p += 2;
        continue;
      }
      i += 6;
      while (i < src_.size() && py::is_space(static_cast<unsigned char>(src_[i]))) ++i;
      int end_kind = 0;  // 1: +%}, 2: -%}, 3: %}
      if (starts(i, "+%}")) end_kind = 1, i += 3;
      else if (starts(i, "-%}")) end_kind = 2, i += 3;
      else if (starts(i, "%}")) end_kind = 3, i += 2;
      if (!end_kind) {
        p += 2;
        continue;
      }
      std::string text = src_.substr(pos_, p - pos_);
      const int text_lines = count_newlines(text);
      if (sign == '-') {
        text.resize(py::rstrip_ws(text).size());
      } else if (sign != '+' && opts_.lstrip_blocks) {
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting) && l_pos < text.size() && py::all_ws(std::string_view(text).substr(l_pos)))
          text.resize(l_pos);
      }
      emit_data(std::move(text));
      line_ += text_lines + count_newlines(std::string_view(src_).substr(p, i - p));
      pos_ = i;
      line_starting_ = false;
      if (end_kind == 2) {
        line_starting_ = skip_ws(pos_);
      } else if (end_kind == 3 && opts_.trim_blocks && pos_ < src_.size() && src_[pos_] == '\n') {
        ++pos_;
        ++line_;
        line_starting_ = true;
      }
      return;
    }
  }

  // {# … #}: dropped; `-#}` strips what follows, otherwise trim_blocks drops one newline.
  void lex_comment() {
    const size_t q = src_.find("#}", pos_);
    if (q == std::string::npos) fail("missing end of comment tag '#}'");
    size_t end_start = q;
    char sign = 0;
    if (q > pos_ && (src_[q - 1] == '-' || src_[q - 1] == '+')) {
      sign = src_[q - 1];
      end_start = q - 1;
    }
    line_ += count_newlines(std::string_view(src_).substr(pos_, end_start - pos_));
    pos_ = q + 2;
    line_starting_ = false;
    if (sign == '-') {
      line_starting_ = skip_ws(pos_);
    } else if (sign == 0 && opts_.trim_blocks && pos_ < src_.size() && src_[pos_] == '\n') {
      ++pos_;
      ++line_;
      line_starting_ = true;
    }
  }

  // Tokens inside {{ … }} or {% … %} up to the end delimiter (only where brackets are balanced).
  void lex_tag(bool block) {
    std::vector<char> balance;
    const size_t n = src_.size();
    const int open_line = line_;
    for (;;) {
      if (pos_ >= n) raise(INFER_ERR_FORMAT, std::string("syntax error: unexpected end of template inside a '") +
                                                 (block ? "{% … %}" : "{{ … }}") + "' tag", open_line);
      // jinja2 tries the end rule first at every position: `+%}` keeps what follows, `-%}` strips
      // all whitespace after it, `%}` drops one newline (trim_blocks). `}}` never trims a newline.
      if (balance.empty()) {
        if (block) {
          if (starts(pos_, "+%}")) {
            pos_ += 3;
            tokens_.push_back({Tok::kBlockEnd, "", line_});
            line_starting_ = false;
            return;
          }
          if (starts(pos_, "-%}")) {
            tokens_.push_back({Tok::kBlockEnd, "", line_});
            pos_ += 3;
            line_starting_ = skip_ws(pos_);
            return;
          }
          if (starts(pos_, "%}")) {
            tokens_.push_back({Tok::kBlockEnd, "", line_});
            pos_ += 2;
            line_starting_ = false;
            if (opts_.trim_blocks && pos_ < n && src_[pos_] == '\n') {
              ++pos_;
              ++line_;
              line_starting_ = true;
            }
            return;
          }
        } else {
          if (starts(pos_, "-}}")) {
            tokens_.push_back({Tok::kVarEnd, "", line_});
            pos_ += 3;
            line_starting_ = skip_ws(pos_);
            return;
          }
          if (starts(pos_, "}}")) {
            tokens_.push_back({Tok::kVarEnd, "", line_});
            pos_ += 2;
            line_starting_ = false;
            return;
          }
        }
      }
      const char c = src_[pos_];
      size_t probe = pos_;
      if (py::is_space(py::decode_at(src_, probe))) {
        skip_ws(pos_);
        continue;
      }
      if (is_digit(c)) {
        lex_number();
        continue;
      }
      if (is_name_start(c)) {
        size_t e = pos_ + 1;
        while (e < n && is_name_char(src_[e])) ++e;
        tokens_.push_back({Tok::kName, src_.substr(pos_, e - pos_), line_});
        pos_ = e;
        continue;
      }
      if (c == '\'' || c == '"') {
        lex_string(c);
        continue;
      }
      // Operators, longest first (as jinja2's operator_re); brackets are tracked for balance.
      static const char* const kOps[] = {"//", "**", "==", "!=", ">=", "<=", "+", "-", "/", "*", "%", "~", "[",
                                         "]",  "(",  ")",  "{",  "}",  ">",  "<", "=", ".", ":", "|", ",", ";"};
      const char* op = nullptr;
      for (const char* o : kOps)
        if (starts(pos_, o)) {
          op = o;
          break;
        }
      if (!op) {
        size_t e = pos_;
        py::decode_at(src_, e);
        fail("unexpected character '" + src_.substr(pos_, e - pos_) + "'");
      }
      const std::string ops(op);
      if (ops == "(" || ops == "[" || ops == "{") {
        balance.push_back(ops == "(" ? ')' : ops == "[" ? ']' : '}');
      } else if (ops == ")" || ops == "]" || ops == "}") {
        if (balance.empty()) fail("unexpected '" + ops + "'");
        if (balance.back() != ops[0]) fail("unexpected '" + ops + "', expected '" + std::string(1, balance.back()) + "'");
        balance.pop_back();
      }
      tokens_.push_back({Tok::kOp, ops, line_});
      pos_ += ops.size();
    }
  }

  // Digits with optional single underscores between them ((\d+_)*\d+); returns the end.
  size_t digits_end(size_t at) const {
    if (at >= src_.size() || !is_digit(src_[at])) return at;
    size_t e = at;
    for (;;) {
      while (e < src_.size() && is_digit(src_[e])) ++e;
      if (e + 1 < src_.size() && src_[e] == '_' && is_digit(src_[e + 1])) {
        ++e;
        continue;
      }
      return e;
    }
  }

  // jinja2's float_re (needs a fraction or an exponent) is tried before integer_re (0b/0o/0x,
  // decimal, underscores between digits).
  void lex_number() {
    const size_t n = src_.size();
    const size_t start = pos_;
    // Float: (?<!\.)(\d+_)*\d+((\.(\d+_)*\d+)?e[+\-]?(\d+_)*\d+|\.(\d+_)*\d+)
    if (start == 0 || src_[start - 1] != '.') {
      const size_t int_end = digits_end(start);
      size_t frac_end = int_end;
      if (int_end < n && src_[int_end] == '.') {
        const size_t d = digits_end(int_end + 1);
        if (d > int_end + 1) frac_end = d;
      }
      size_t exp_end = frac_end;
      if (frac_end < n && (src_[frac_end] == 'e' || src_[frac_end] == 'E')) {
        size_t i = frac_end + 1;
        if (i < n && (src_[i] == '+' || src_[i] == '-')) ++i;
        const size_t d = digits_end(i);
        if (d > i) exp_end = d;
      }
      if (exp_end > int_end) {
        std::string text;
        for (size_t i = start; i < exp_end; ++i)
          if (src_[i] != '_') text += src_[i];
        Token t{Tok::kFloat, src_.substr(start, exp_end - start), line_};
        t.fval = std::strtod(text.c_str(), nullptr);
        tokens_.push_back(std::move(t));
        pos_ = exp_end;
        return;
      }
    }
    // Integer: 0b…, 0o…, 0x…, [1-9](_?\d)*, 0(_?0)*
    int base = 10;
    size_t i = start;
    auto is_base_digit = [&](char ch) {
      if (base == 2) return ch == '0' || ch == '1';
      if (base == 8) return ch >= '0' && ch <= '7';
      if (base == 16) return is_digit(ch) || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F');
      return is_digit(ch);
    };
    if (src_[i] == '0' && i + 1 < n && std::strchr("bBoOxX", src_[i + 1]) && src_[i + 1] != 0) {
      const char b = static_cast<char>(src_[i + 1] | 0x20);
      base = b == 'b' ? 2 : b == 'o' ? 8 : 16;
      size_t j = i + 2;
      size_t e = j;
      while (j < n) {
        if (src_[j] == '_' && j + 1 < n && is_base_digit(src_[j + 1])) j += 2;
        else if (is_base_digit(src_[j])) ++j;
        else break;
        e = j;
      }
      if (e == i + 2) base = 10;  // "0x" without digits: just the 0
      else i = e;
    }
    if (base == 10) {
      if (src_[start] == '0') {
        i = start + 1;
        while (i < n && (src_[i] == '0' || (src_[i] == '_' && i + 1 < n && src_[i + 1] == '0'))) i += src_[i] == '_' ? 2 : 1;
      } else {
        i = digits_end(start);
      }
    }
    std::string text;
    for (size_t k = start + (base == 10 ? 0 : 2); k < i; ++k)
      if (src_[k] != '_') text += src_[k];
    errno = 0;
    char* endp = nullptr;
    const unsigned long long v = std::strtoull(text.c_str(), &endp, base);
    if (errno == ERANGE || v > uint64_t(INT64_MAX)) fail("integer literal too large: " + src_.substr(start, i - start));
    Token t{Tok::kInt, src_.substr(start, i - start), line_};
    t.ival = static_cast<int64_t>(v);
    tokens_.push_back(std::move(t));
    pos_ = i;
  }

  // '…' or "…" (newlines allowed); the body is decoded like a Python literal.
  void lex_string(char quote) {
    const size_t n = src_.size();
    size_t i = pos_ + 1;
    while (i < n && src_[i] != quote) {
      if (src_[i] == '\\') ++i;
      ++i;
    }
    if (i >= n) fail("unterminated string literal");
    const std::string_view body = std::string_view(src_).substr(pos_ + 1, i - pos_ - 1);
    Token t{Tok::kString, decode_escapes(body), line_};
    tokens_.push_back(std::move(t));
    line_ += count_newlines(body);
    pos_ = i + 1;
  }

  // Python's unicode-escape decoding of a string literal body (what jinja2 applies).
  std::string decode_escapes(std::string_view s) {
    std::string out;
    out.reserve(s.size());
    for (size_t i = 0; i < s.size(); ++i) {
      if (s[i] != '\\' || i + 1 >= s.size()) {
        out += s[i];
        continue;
      }
      const char e = s[++i];
      auto hex = [&](int count) -> char32_t {
        char32_t v = 0;
        for (int k = 1; k <= count; ++k) {
          if (i + k >= s.size()) fail("truncated escape in a string literal");
          const char h = s[i + k];
          int d;
          if (is_digit(h)) d = h - '0';
          else if (h >= 'a' && h <= 'f') d = h - 'a' + 10;
          else if (h >= 'A' && h <= 'F') d = h - 'A' + 10;
          else fail("truncated escape in a string literal");
          v = v * 16 + char32_t(d);
        }
        i += count;
        return v;
      };
      switch (e) {
        case '\n': break;  // line continuation
        case '\\': out += '\\'; break;
        case '\'': out += '\''; break;
        case '"': out += '"'; break;
        case 'a': out += '\a'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'v': out += '\v'; break;
        case 'x': py::append_utf8(out, hex(2)); break;
        case 'u': py::append_utf8(out, hex(4)); break;
        case 'U': {
          const char32_t cp = hex(8);
          if (cp > 0x10FFFF) fail("illegal Unicode character in a string literal");
          py::append_utf8(out, cp);
          break;
        }
        case 'N': fail("\\N{…} escapes are not supported in string literals");
        default:
          if (e >= '0' && e <= '7') {
            char32_t v = char32_t(e - '0');
            for (int k = 0; k < 2 && i + 1 < s.size() && s[i + 1] >= '0' && s[i + 1] <= '7'; ++k) v = v * 8 + char32_t(s[++i] - '0');
            py::append_utf8(out, v);
          } else {
            out += '\\';
            out += e;
          }
      }
    }
    return out;
  }

  std::string src_;
  const Options& opts_;
  std::vector<Token> tokens_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  bool raw_strip_after_ = false;
};

}  // namespace

std::vector<Token> lex(std::string_view source, const Options& opts) { return Lexer(source, opts).run(); }

}  // namespace infer::jinja
