// jinja_lex.h — the lexer of the Jinja2 interpreter (internal): template text → tokens, with jinja2's
// whitespace control applied (see jinja_lex.cpp).
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "jinja.h"

namespace infer::jinja {

// Token types: template data, tag delimiters, and what is inside tags.
enum class Tok : uint8_t { kData, kVarBegin, kVarEnd, kBlockBegin, kBlockEnd, kName, kString, kInt, kFloat, kOp, kEof };

struct Token {
  Tok type;
  std::string value;  // data text, name, decoded string, operator
  int line;
  int64_t ival = 0;
  double fval = 0;
};

// Tokenizes a template; throws TemplateError (with the line) on a lexical error.
std::vector<Token> lex(std::string_view source, const Options& opts);

}  // namespace infer::jinja
