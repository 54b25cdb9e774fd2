// jinja_parse.cpp — lexer and parser of the Jinja2 interpreter (jinja.h).
//
// The lexer reproduces jinja2's lexer.py rule by rule, because whitespace is where templates differ:
// newlines normalized and one trailing newline dropped; `{%-`/`-%}` strip all whitespace on that
// side; lstrip_blocks removes the spaces/tabs before a `{%` or `{#` that starts a line (not before
// `{{`, not with `{%+`); trim_blocks drops the one newline after `%}` or `#}` (not after `}}`, not
// with `+%}`); a tag ends only where its brackets are balanced. The parser is jinja2's parser.py
// (same precedence and tuple/test/filter rules) producing the tree in jinja_ast.h.
#include <cstring>
#include <set>

#include "jinja_ast.h"
#include "jinja_pystr.h"

namespace infer::jinja {
namespace {

enum class T : uint8_t { kData, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };

struct Token {
  T type;
  std::string value;  // data text, name, decoded string, operator
  int line;
  int64_t ival = 0;
  double fval = 0;
};

const char* describe(const Token& t) {
  switch (t.type) {
    case T::kVarEnd: return "end of print statement '}}'";
    case T::kBlockEnd: return "end of statement block '%}'";
    case T::kEof: return "end of template";
    default: return nullptr;
  }
}

std::string token_text(const Token& t) {
  if (const char* d = describe(t)) return d;
  if (t.type == T::kString) return "'" + t.value + "' (a string)";
  return "'" + t.value + "'";
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }

// ---- lexer ---------------------------------------------------------------------------------------

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
      const char kind = src_[p + 1];
      const char sign = (p + 2 < n && (src_[p + 2] == '-' || src_[p + 2] == '+')) ? src_[p + 2] : 0;
      size_t raw_end = 0;
      const bool raw = kind == '%' && match_raw_begin(p + 2 + (sign ? 1 : 0), raw_end);
      std::string text = src_.substr(pos_, p - pos_);
      const int text_lines = count_newlines(text);
      if (sign == '-') {
        text.resize(py::rstrip_ws(text).size());
      } else if (sign != '+' && opts_.lstrip_blocks && kind != '{') {
        // Strip the whitespace between the last newline (or the line start) and the tag.
        const size_t l_pos = text.rfind('\n') == std::string::npos ? 0 : text.rfind('\n') + 1;
        if ((l_pos > 0 || line_starting_) && l_pos < text.size() && py::all_ws(std::string_view(text).substr(l_pos)))
          text.resize(l_pos);
      }
      emit_data(std::move(text));
      line_ += text_lines;
      line_starting_ = false;
      if (raw) {
        lex_raw(raw_end);
      } else if (kind == '#') {
        pos_ = p + 2 + (sign ? 1 : 0);
        lex_comment();
      } else {
        pos_ = p + 2 + (sign ? 1 : 0);
        tokens_.push_back({kind == '{' ? T::kVarBegin : T::kBlockBegin, "", line_});
        lex_tag(kind == '%');
      }
    }
    tokens_.push_back({T::kEof, "", line_});
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
    if (!text.empty()) tokens_.push_back({T::kData, std::move(text), line_});
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
      if (balance.empty()) {
        if (block) {
          if (starts(pos_, "+%}")) {
            pos_ += 3;
            tokens_.push_back({T::kBlockEnd, "", line_});
            line_starting_ = false;
            return;
          }
          if (starts(pos_, "-%}")) {
            tokens_.push_back({T::kBlockEnd, "", line_});
            pos_ += 3;
            line_starting_ = skip_ws(pos_);
            return;
          }
          if (starts(pos_, "%}")) {
            tokens_.push_back({T::kBlockEnd, "", line_});
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
            tokens_.push_back({T::kVarEnd, "", line_});
            pos_ += 3;
            line_starting_ = skip_ws(pos_);
            return;
          }
          if (starts(pos_, "}}")) {
            tokens_.push_back({T::kVarEnd, "", line_});
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
        tokens_.push_back({T::kName, src_.substr(pos_, e - pos_), line_});
        pos_ = e;
        continue;
      }
      if (c == '\'' || c == '"') {
        lex_string(c);
        continue;
      }
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
      tokens_.push_back({T::kOp, ops, line_});
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
        Token t{T::kFloat, src_.substr(start, exp_end - start), line_};
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
    Token t{T::kInt, src_.substr(start, i - start), line_};
    t.ival = static_cast<int64_t>(v);
    tokens_.push_back(std::move(t));
    pos_ = i;
  }

  void lex_string(char quote) {
    const size_t n = src_.size();
    size_t i = pos_ + 1;
    while (i < n && src_[i] != quote) {
      if (src_[i] == '\\') ++i;
      ++i;
    }
    if (i >= n) fail("unterminated string literal");
    const std::string_view body = std::string_view(src_).substr(pos_ + 1, i - pos_ - 1);
    Token t{T::kString, decode_escapes(body), line_};
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

// ---- parser --------------------------------------------------------------------------------------

ExprPtr make(ExprOp op, int line) {
  auto e = std::make_unique<Expr>();
  e->op = op;
  e->line = line;
  return e;
}

class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Body parse_template() {
    Body body = subparse({});
    if (cur().type != T::kEof) fail("unexpected " + token_text(cur()));
    return body;
  }

 private:
  using EndTags = std::vector<std::string_view>;

  const Token& cur() const { return t_[i_]; }
  const Token& look() const { return t_[std::min(i_ + 1, t_.size() - 1)]; }
  void next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool is_op(std::string_view op) const { return cur().type == T::kOp && cur().value == op; }
  bool is_name(std::string_view n) const { return cur().type == T::kName && cur().value == n; }
  bool skip_op(std::string_view op) {
    if (!is_op(op)) return false;
    next();
    return true;
  }
  bool skip_name(std::string_view n) {
    if (!is_name(n)) return false;
    next();
    return true;
  }
  [[noreturn]] void fail(const std::string& msg, int line = 0) const {
    raise(INFER_ERR_FORMAT, "syntax error: " + msg, line ? line : cur().line);
  }
  void expect_op(std::string_view op) {
    if (!skip_op(op)) fail("expected '" + std::string(op) + "', got " + token_text(cur()));
  }
  std::string expect_name() {
    if (cur().type != T::kName) fail("expected a name, got " + token_text(cur()));
    std::string v = cur().value;
    next();
    return v;
  }
  void expect(T type, const char* what) {
    if (cur().type != type) fail(std::string("expected ") + what + ", got " + token_text(cur()));
    next();
  }

  // Body up to a `{% <end tag> %}`; leaves the stream at the end tag's name.
  Body subparse(const EndTags& ends) {
    Body body;
    for (;;) {
      const Token& tk = cur();
      if (tk.type == T::kEof) return body;
      if (tk.type == T::kData) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kData;
        s->line = tk.line;
        s->text = tk.value;
        body.push_back(std::move(s));
        next();
      } else if (tk.type == T::kVarBegin) {
        next();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = cur().line;
        s->expr = parse_tuple(false, true, {}, false, false);
        expect(T::kVarEnd, "'}}'");
        body.push_back(std::move(s));
      } else if (tk.type == T::kBlockBegin) {
        next();
        if (cur().type == T::kName)
          for (std::string_view e : ends)
            if (cur().value == e) return body;
        body.push_back(parse_statement());
        expect(T::kBlockEnd, "'%}'");
      } else {
        fail("unexpected " + token_text(tk));
      }
    }
  }

  // `: %}` then a body up to one of `ends`; an unclosed block names the tag that opened it.
  Body parse_statements(const EndTags& ends, bool drop_needle, const std::string& opener, int open_line) {
    skip_op(":");
    expect(T::kBlockEnd, "'%}'");
    open_.push_back({opener, open_line, ends});
    Body body = subparse(ends);
    open_.pop_back();
    if (cur().type == T::kEof) {
      std::string want;
      for (std::string_view e : ends) want += (want.empty() ? "'{% " : " or '{% ") + std::string(e) + " %}'";
      raise(INFER_ERR_FORMAT, "syntax error: unclosed '{% " + opener + " %}' block (expected " + want +
                                  " before the end of the template)", open_line);
    }
    if (drop_needle) next();
    return body;
  }

  StmtPtr new_stmt(StmtKind k, int line) {
    auto s = std::make_unique<Stmt>();
    s->kind = k;
    s->line = line;
    return s;
  }

  StmtPtr parse_statement() {
    const Token& tk = cur();
    if (tk.type != T::kName) fail("tag name expected, got " + token_text(tk));
    const std::string name = tk.value;
    const int line = tk.line;
    if (name == "for") return parse_for();
    if (name == "if") return parse_if();
    if (name == "set") return parse_set();
    if (name == "macro") return parse_macro();
    if (name == "call") return parse_call_block();
    if (name == "filter") return parse_filter_block();
    if (name == "with") return parse_with();
    if (name == "print") {
      next();
      auto s = new_stmt(StmtKind::kOutput, line);
      auto tuple = make(ExprOp::kTuple, line);
      while (cur().type != T::kBlockEnd) {
        if (!tuple->args.empty()) expect_op(",");
        tuple->args.push_back(parse_expression(true));
      }
      // {% print a %} prints a; {% print a, b %} prints each (jinja2's Output node).
      if (tuple->args.size() == 1) {
        s->expr = std::move(tuple->args[0]);
        return s;
      }
      auto scope = new_stmt(StmtKind::kScope, line);
      for (auto& a : tuple->args) {
        auto o = new_stmt(StmtKind::kOutput, line);
        o->expr = std::move(a);
        scope->body.push_back(std::move(o));
      }
      scope->text = "print";
      return scope;
    }
    if (name == "break" || name == "continue") {
      if (loop_depth_ == 0) fail("'" + name + "' outside of a for loop");
      next();
      return new_stmt(name == "break" ? StmtKind::kBreak : StmtKind::kContinue, line);
    }
    if (name == "generation") {  // transformers' AssistantTracker extension: renders its body
      next();
      auto s = new_stmt(StmtKind::kScope, line);
      const bool soft = soft_;
      soft_ = false;
      s->body = parse_statements({"endgeneration"}, true, "generation", line);
      soft_ = soft;
      return s;
    }
    static const std::set<std::string, std::less<>> kUnsupported = {"block", "extends", "include", "import",
                                                                     "from",  "autoescape", "do", "raw",
                                                                     "trans", "pluralize"};
    if (kUnsupported.count(name))
      raise(INFER_ERR_UNSUPPORTED, "unsupported statement '{% " + name + " %}'", line);
    if (name.rfind("end", 0) == 0 || name == "else" || name == "elif") {
      if (open_.empty()) fail("unexpected '{% " + name + " %}' (no open block it could close)", line);
      const OpenBlock& b = open_.back();
      std::string want;
      for (std::string_view e : b.ends) want += (want.empty() ? "'{% " : " or '{% ") + std::string(e) + " %}'";
      raise(INFER_ERR_FORMAT, "syntax error: unclosed '{% " + b.opener + " %}' block ('{% " + name + " %}' at line " +
                                  std::to_string(line) + " comes before its " + want + ")", b.line);
    }
    raise(INFER_ERR_UNSUPPORTED, "unknown or unsupported statement '{% " + name + " %}'", line);
  }

  StmtPtr parse_for() {
    const int line = cur().line;
    next();
    auto s = new_stmt(StmtKind::kFor, line);
    s->target = parse_assign_target(true, false, {"in"}, false);
    if (!skip_name("in")) fail("expected 'in' in a for loop, got " + token_text(cur()));
    const bool soft = soft_;
    soft_ = false;
    s->expr = parse_tuple(false, false, {"recursive"}, false, false);
    if (skip_name("if")) s->cond = parse_expression(true);
    if (is_name("recursive")) raise(INFER_ERR_UNSUPPORTED, "unsupported construct: recursive for loops", line);
    ++loop_depth_;
    s->body = parse_statements({"endfor", "else"}, false, "for", line);
    --loop_depth_;
    const std::string end = cur().value;
    next();
    if (end == "else") s->else_body = parse_statements({"endfor"}, true, "for", line);
    soft_ = soft;
    return s;
  }

  StmtPtr parse_if() {
    const int line = cur().line;
    next();
    const bool soft = soft_;
    soft_ = true;  // jinja2: unknown filters inside an if are errors only when reached
    auto root = new_stmt(StmtKind::kIf, line);
    Stmt* node = root.get();
    for (;;) {
      node->expr = parse_tuple(false, false, {}, false, false);
      node->body = parse_statements({"elif", "else", "endif"}, false, "if", line);
      const std::string end = cur().value;
      const int end_line = cur().line;
      next();
      if (end == "elif") {
        node->else_body.push_back(new_stmt(StmtKind::kIf, end_line));
        node = node->else_body.back().get();
        continue;
      }
      if (end == "else") node->else_body = parse_statements({"endif"}, true, "if", line);
      break;
    }
    soft_ = soft;
    return root;
  }

  StmtPtr parse_set() {
    const int line = cur().line;
    next();
    ExprPtr target = parse_assign_target(true, false, {}, true);
    if (skip_op("=")) {
      auto s = new_stmt(StmtKind::kSet, line);
      s->target = std::move(target);
      s->expr = parse_tuple(false, true, {}, false, false);
      return s;
    }
    auto s = new_stmt(StmtKind::kSetBlock, line);
    s->target = std::move(target);
    if (is_op("|")) s->cond = parse_filter(nullptr, false);
    const bool soft = soft_;
    soft_ = false;
    s->body = parse_statements({"endset"}, true, "set", line);
    soft_ = soft;
    return s;
  }

  void parse_signature(Stmt& s) {
    expect_op("(");
    while (!is_op(")")) {
      if (!s.params.empty()) expect_op(",");
      s.params.push_back(expect_name());
      if (skip_op("=")) {
        s.defaults.push_back(parse_expression(true));
      } else if (!s.defaults.empty()) {
        fail("non-default argument follows default argument");
      }
    }
    expect_op(")");
  }

  StmtPtr parse_macro() {
    const int line = cur().line;
    next();
    auto s = new_stmt(StmtKind::kMacro, line);
    s->text = expect_name();
    parse_signature(*s);
    const int depth = loop_depth_;
    const bool soft = soft_;
    loop_depth_ = 0;
    soft_ = false;
    s->body = parse_statements({"endmacro"}, true, "macro", line);
    s->uses_varargs = body_reads(s->body, "varargs");
    s->uses_kwargs = body_reads(s->body, "kwargs");
    loop_depth_ = depth;
    soft_ = soft;
    return s;
  }

  StmtPtr parse_call_block() {
    const int line = cur().line;
    next();
    auto s = new_stmt(StmtKind::kCallBlock, line);
    if (is_op("(")) parse_signature(*s);
    s->expr = parse_expression(true);
    if (s->expr->op != ExprOp::kCall) fail("expected a call after '{% call %}'", line);
    const int depth = loop_depth_;
    const bool soft = soft_;
    loop_depth_ = 0;
    soft_ = false;
    s->body = parse_statements({"endcall"}, true, "call", line);
    s->uses_varargs = body_reads(s->body, "varargs");
    s->uses_kwargs = body_reads(s->body, "kwargs");
    loop_depth_ = depth;
    soft_ = soft;
    return s;
  }

  StmtPtr parse_filter_block() {
    const int line = cur().line;
    next();
    auto s = new_stmt(StmtKind::kFilterBlock, line);
    s->expr = parse_filter(nullptr, true);
    const bool soft = soft_;
    soft_ = false;
    s->body = parse_statements({"endfilter"}, true, "filter", line);
    soft_ = soft;
    return s;
  }

  StmtPtr parse_with() {
    const int line = cur().line;
    next();
    auto s = new_stmt(StmtKind::kWith, line);
    while (cur().type != T::kBlockEnd) {
      if (!s->params.empty()) expect_op(",");
      s->params.push_back(expect_name());
      expect_op("=");
      s->defaults.push_back(parse_expression(true));
    }
    const bool soft = soft_;
    soft_ = false;
    s->body = parse_statements({"endwith"}, true, "with", line);
    soft_ = soft;
    return s;
  }

  // A name, a namespace attribute (ns.attr) or a tuple of names.
  ExprPtr parse_assign_target(bool with_tuple, bool name_only, const EndTags& extra_end, bool with_namespace) {
    ExprPtr target;
    if (name_only) {
      target = make(ExprOp::kName, cur().line);
      target->name = expect_name();
      return target;
    }
    target = with_tuple ? parse_tuple(true, true, extra_end, false, with_namespace) : parse_primary(with_namespace);
    auto assignable = [](const Expr& e) { return e.op == ExprOp::kName || e.op == ExprOp::kNsRef; };
    bool ok = assignable(*target);
    if (target->op == ExprOp::kTuple) {
      ok = true;
      for (const auto& a : target->args) ok = ok && a->op == ExprOp::kName;
    }
    if (!ok) fail("cannot assign to this expression", target->line);
    return target;
  }

  bool is_tuple_end(const EndTags& extra) const {
    if (cur().type == T::kVarEnd || cur().type == T::kBlockEnd || is_op(")")) return true;
    if (cur().type == T::kName)
      for (std::string_view e : extra)
        if (cur().value == e) return true;
    return false;
  }

  ExprPtr parse_tuple(bool simplified, bool with_condexpr, const EndTags& extra_end, bool explicit_parens,
                      bool with_namespace) {
    const int line = cur().line;
    std::vector<ExprPtr> items;
    bool is_tuple = false;
    for (;;) {
      if (!items.empty()) expect_op(",");
      if (is_tuple_end(extra_end)) break;
      items.push_back(simplified ? parse_primary(with_namespace) : parse_expression(with_condexpr));
      if (is_op(",")) is_tuple = true;
      else break;
    }
    if (!is_tuple) {
      if (!items.empty()) return std::move(items[0]);
      if (!explicit_parens) fail("expected an expression, got " + token_text(cur()));
    }
    auto t = make(ExprOp::kTuple, line);
    t->args = std::move(items);
    return t;
  }

  ExprPtr parse_expression(bool with_condexpr) { return with_condexpr ? parse_condexpr() : parse_or(); }

  ExprPtr parse_condexpr() {
    // A conditional expression is a soft scope for unknown filters (jinja2 checks them only when
    // reached); parse softly and, if it turns out not to be one, check what was deferred.
    const bool soft = soft_;
    soft_ = true;
    ExprPtr expr1 = parse_or();
    if (!is_name("if")) {
      soft_ = soft;
      if (!soft) check_resolved(*expr1);
      return expr1;
    }
    while (skip_name("if")) {
      const int line = cur().line;
      ExprPtr expr2 = parse_or();
      ExprPtr expr3;
      if (skip_name("else")) expr3 = parse_condexpr();
      auto c = make(ExprOp::kCond, line);
      c->args.push_back(std::move(expr1));
      c->args.push_back(std::move(expr2));
      c->args.push_back(std::move(expr3));
      expr1 = std::move(c);
    }
    soft_ = soft;
    return expr1;
  }

  // Whether any expression under these statements reads the variable `name`.
  static bool expr_reads(const Expr* e, std::string_view name) {
    if (!e) return false;
    if (e->op == ExprOp::kName && e->name == name) return true;
    for (const auto& a : e->args)
      if (expr_reads(a.get(), name)) return true;
    for (const auto& kv : e->kwargs)
      if (expr_reads(kv.second.get(), name)) return true;
    return false;
  }
  static bool body_reads(const Body& body, std::string_view name) {
    for (const auto& s : body) {
      if (expr_reads(s->expr.get(), name) || expr_reads(s->cond.get(), name)) return true;
      for (const auto& d : s->defaults)
        if (expr_reads(d.get(), name)) return true;
      if (body_reads(s->body, name) || body_reads(s->else_body, name)) return true;
    }
    return false;
  }

  // Unknown filters/tests outside a soft scope are errors at parse time (nested conditional
  // expressions stay deferred).
  static void check_resolved(const Expr& e) {
    if (e.op == ExprOp::kCond) return;
    if (e.op == ExprOp::kFilter && !e.filter) raise(INFER_ERR_UNSUPPORTED, "unknown filter '" + e.name + "'", e.line);
    if (e.op == ExprOp::kTest && !e.test) raise(INFER_ERR_UNSUPPORTED, "unknown test '" + e.name + "'", e.line);
    for (const auto& a : e.args)
      if (a) check_resolved(*a);
    for (const auto& kv : e.kwargs)
      if (kv.second) check_resolved(*kv.second);
  }

  ExprPtr binary(ExprOp op, ExprPtr l, ExprPtr r, int line) {
    auto e = make(op, line);
    e->args.push_back(std::move(l));
    e->args.push_back(std::move(r));
    return e;
  }

  ExprPtr parse_or() {
    ExprPtr left = parse_and();
    while (is_name("or")) {
      const int line = cur().line;
      next();
      left = binary(ExprOp::kOr, std::move(left), parse_and(), line);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    while (is_name("and")) {
      const int line = cur().line;
      next();
      left = binary(ExprOp::kAnd, std::move(left), parse_not(), line);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      const int line = cur().line;
      next();
      auto e = make(ExprOp::kNot, line);
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr expr = parse_math1();
    ExprPtr cmp;
    for (;;) {
      std::string op;
      if (cur().type == T::kOp && (cur().value == "==" || cur().value == "!=" || cur().value == "<" ||
                                   cur().value == "<=" || cur().value == ">" || cur().value == ">=")) {
        op = cur().value;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && look().type == T::kName && look().value == "in") {
        op = "notin";
        next();
        next();
      } else {
        break;
      }
      if (!cmp) {
        cmp = make(ExprOp::kCompare, line);
        cmp->args.push_back(std::move(expr));
      }
      cmp->cmp_ops.push_back(op);
      cmp->args.push_back(parse_math1());
    }
    return cmp ? std::move(cmp) : std::move(expr);
  }

  ExprPtr parse_math1() {
    ExprPtr left = parse_concat();
    while (is_op("+") || is_op("-")) {
      const ExprOp op = is_op("+") ? ExprOp::kAdd : ExprOp::kSub;
      const int line = cur().line;
      next();
      left = binary(op, std::move(left), parse_concat(), line);
    }
    return left;
  }

  ExprPtr parse_concat() {
    const int line = cur().line;
    ExprPtr first = parse_math2();
    if (!is_op("~")) return first;
    auto c = make(ExprOp::kConcat, line);
    c->args.push_back(std::move(first));
    while (skip_op("~")) c->args.push_back(parse_math2());
    return c;
  }

  ExprPtr parse_math2() {
    ExprPtr left = parse_pow();
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      const ExprOp op = is_op("*") ? ExprOp::kMul : is_op("/") ? ExprOp::kDiv : is_op("//") ? ExprOp::kFloorDiv : ExprOp::kMod;
      const int line = cur().line;
      next();
      left = binary(op, std::move(left), parse_pow(), line);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    while (is_op("**")) {
      const int line = cur().line;
      next();
      left = binary(ExprOp::kPow, std::move(left), parse_unary(true), line);
    }
    return left;
  }

  ExprPtr parse_unary(bool with_filter) {
    const int line = cur().line;
    ExprPtr node;
    if (is_op("-") || is_op("+")) {
      const ExprOp op = is_op("-") ? ExprOp::kNeg : ExprOp::kPos;
      next();
      node = make(op, line);
      node->args.push_back(parse_unary(false));
    } else {
      node = parse_primary(false);
    }
    node = parse_postfix(std::move(node));
    if (with_filter) node = parse_filter_expr(std::move(node));
    return node;
  }

  ExprPtr parse_primary(bool with_namespace) {
    const Token& tk = cur();
    const int line = tk.line;
    if (tk.type == T::kName) {
      if (tk.value == "true" || tk.value == "True" || tk.value == "false" || tk.value == "False") {
        auto e = make(ExprOp::kConst, line);
        e->value = Value(tk.value == "true" || tk.value == "True");
        next();
        return e;
      }
      if (tk.value == "none" || tk.value == "None") {
        auto e = make(ExprOp::kConst, line);
        e->value = Value(nullptr);
        next();
        return e;
      }
      if (with_namespace && look().type == T::kOp && look().value == ".") {
        auto e = make(ExprOp::kNsRef, line);
        e->value = Value(tk.value);
        next();
        next();
        e->name = expect_name();
        return e;
      }
      auto e = make(ExprOp::kName, line);
      e->name = tk.value;
      next();
      return e;
    }
    if (tk.type == T::kString) {
      std::string s;
      while (cur().type == T::kString) {  // adjacent literals concatenate
        s += cur().value;
        next();
      }
      auto e = make(ExprOp::kConst, line);
      e->value = Value(std::move(s));
      return e;
    }
    if (tk.type == T::kInt || tk.type == T::kFloat) {
      auto e = make(ExprOp::kConst, line);
      e->value = tk.type == T::kInt ? Value(tk.ival) : Value(tk.fval);
      next();
      return e;
    }
    if (is_op("(")) {
      next();
      ExprPtr e = parse_tuple(false, true, {}, true, false);
      expect_op(")");
      return e;
    }
    if (is_op("[")) {
      next();
      auto e = make(ExprOp::kList, line);
      while (!is_op("]")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("]")) break;
        e->args.push_back(parse_expression(true));
      }
      expect_op("]");
      return e;
    }
    if (is_op("{")) {
      next();
      auto e = make(ExprOp::kDict, line);
      while (!is_op("}")) {
        if (!e->args.empty()) expect_op(",");
        if (is_op("}")) break;
        e->args.push_back(parse_expression(true));
        expect_op(":");
        e->args.push_back(parse_expression(true));
      }
      expect_op("}");
      return e;
    }
    fail("unexpected " + token_text(tk));
  }

  ExprPtr parse_postfix(ExprPtr node) {
    for (;;) {
      if (is_op(".") || is_op("[")) node = parse_subscript(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    for (;;) {
      if (is_op("|")) node = parse_filter(std::move(node), false);
      else if (is_name("is")) node = parse_test(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const int line = cur().line;
    if (skip_op(".")) {
      if (cur().type == T::kName) {
        auto e = make(ExprOp::kGetattr, line);
        e->name = cur().value;
        next();
        e->args.push_back(std::move(node));
        return e;
      }
      if (cur().type != T::kInt) fail("expected a name or a number after '.', got " + token_text(cur()));
      auto idx = make(ExprOp::kConst, line);
      idx->value = Value(cur().ival);
      next();
      auto e = make(ExprOp::kGetitem, line);
      e->args.push_back(std::move(node));
      e->args.push_back(std::move(idx));
      return e;
    }
    expect_op("[");
    std::vector<ExprPtr> args;
    while (!is_op("]")) {
      if (!args.empty()) expect_op(",");
      args.push_back(parse_subscribed());
    }
    expect_op("]");
    auto e = make(ExprOp::kGetitem, line);
    e->args.push_back(std::move(node));
    if (args.size() == 1) {
      e->args.push_back(std::move(args[0]));
    } else {
      auto t = make(ExprOp::kTuple, line);
      t->args = std::move(args);
      e->args.push_back(std::move(t));
    }
    return e;
  }

  ExprPtr parse_subscribed() {
    const int line = cur().line;
    std::vector<ExprPtr> parts;  // start, stop, step
    if (is_op(":")) {
      next();
      parts.push_back(nullptr);
    } else {
      ExprPtr node = parse_expression(true);
      if (!is_op(":")) return node;
      next();
      parts.push_back(std::move(node));
    }
    if (is_op(":")) parts.push_back(nullptr);
    else if (!is_op("]") && !is_op(",")) parts.push_back(parse_expression(true));
    else parts.push_back(nullptr);
    if (skip_op(":")) {
      if (!is_op("]") && !is_op(",")) parts.push_back(parse_expression(true));
      else parts.push_back(nullptr);
    } else {
      parts.push_back(nullptr);
    }
    auto s = make(ExprOp::kSlice, line);
    s->args = std::move(parts);
    return s;
  }

  void parse_call_args(Expr& e) {
    expect_op("(");
    bool need_comma = false;
    while (!is_op(")")) {
      if (need_comma) {
        expect_op(",");
        if (is_op(")")) break;
      }
      if (is_op("*") || is_op("**"))
        raise(INFER_ERR_UNSUPPORTED, "unsupported construct: *args / **kwargs in a call", cur().line);
      if (cur().type == T::kName && look().type == T::kOp && look().value == "=") {
        std::string key = cur().value;
        next();
        next();
        e.kwargs.emplace_back(std::move(key), parse_expression(true));
      } else {
        if (!e.kwargs.empty()) fail("positional argument after a keyword argument");
        e.args.push_back(parse_expression(true));
      }
      need_comma = true;
    }
    expect_op(")");
  }

  ExprPtr parse_call(ExprPtr node) {
    auto e = make(ExprOp::kCall, cur().line);
    e->args.push_back(std::move(node));
    parse_call_args(*e);
    return e;
  }

  // `| name(args) | …`; node is null in a filter block (the body is the input).
  ExprPtr parse_filter(ExprPtr node, bool start_inline) {
    while (is_op("|") || start_inline) {
      if (!start_inline) next();
      start_inline = false;
      const int line = cur().line;
      std::string name = expect_name();
      while (skip_op(".")) {
        name += '.';
        name += expect_name();
      }
      auto e = make(ExprOp::kFilter, line);
      e->name = name;
      e->filter = find_filter(name);
      if (!e->filter && !soft_) raise(INFER_ERR_UNSUPPORTED, "unknown filter '" + name + "'", line);
      e->args.push_back(std::move(node));
      if (is_op("(")) parse_call_args(*e);
      node = std::move(e);
    }
    return node;
  }

  ExprPtr parse_test(ExprPtr node) {
    const int line = cur().line;
    next();  // 'is'
    const bool negated = skip_name("not");
    std::string name = expect_name();
    while (skip_op(".")) {
        name += '.';
        name += expect_name();
      }
    auto e = make(ExprOp::kTest, line);
    e->name = name;
    e->test = find_test(name);
    if (!e->test && !soft_) raise(INFER_ERR_UNSUPPORTED, "unknown test '" + name + "'", line);
    e->args.push_back(std::move(node));
    if (is_op("(")) {
      parse_call_args(*e);
    } else if ((cur().type == T::kName || cur().type == T::kString || cur().type == T::kInt ||
                cur().type == T::kFloat || is_op("(") || is_op("[") || is_op("{")) &&
               !is_name("else") && !is_name("or") && !is_name("and")) {
      if (is_name("is")) fail("cannot chain multiple tests with 'is'");
      e->args.push_back(parse_postfix(parse_primary(false)));
    }
    if (!negated) return e;
    auto n = make(ExprOp::kNot, line);
    n->args.push_back(std::move(e));
    return n;
  }

  struct OpenBlock {
    std::string opener;
    int line;
    EndTags ends;
  };
  std::vector<Token> t_;
  std::vector<OpenBlock> open_;  // blocks being parsed, innermost last (for error messages)
  size_t i_ = 0;
  int loop_depth_ = 0;
  bool soft_ = false;  // inside an if / conditional expression (jinja2's soft frame)
};

}  // namespace

std::shared_ptr<const Program> parse_program(std::string_view source, const Options& opts) {
  auto prog = std::make_shared<Program>();
  prog->opts = opts;
  Lexer lexer(source, opts);
  Parser parser(lexer.run());
  prog->body = parser.parse_template();
  return prog;
}

}  // namespace infer::jinja
