// jinja_ast.h — internals of the Jinja2 interpreter (jinja.h): the syntax tree the parser builds,
// the error type used inside the interpreter, and the builtin registries shared by the parser (which
// checks filter/test names once, at parse time, as jinja2 does) and the renderer.
#pragma once
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common.h"
#include "jinja.h"

namespace infer::jinja {

// An error inside the interpreter; `line` is filled in by the innermost statement that sees it
// (0 = not yet known). Converted to infer::Error at the Template boundary.
struct TemplateError {
  infer_status code;
  std::string message;
  int line = 0;
};
[[noreturn]] inline void raise(infer_status code, std::string msg, int line = 0) {
  throw TemplateError{code, std::move(msg), line};
}
// A Python-level error while rendering (TypeError, UndefinedError, …).
[[noreturn]] inline void render_error(std::string msg) { raise(INFER_ERR_INVALID_ARG, std::move(msg)); }

// Resource limits of one render, so that a hostile template or conversation fails with an error instead of
// exhausting memory or time (jinja2 has none: Python would raise MemoryError or run forever). Far above what a
// chat template needs: a prompt for a 128K-token context is about 0.5 MiB of text.
constexpr int64_t kMaxStringBytes = int64_t(1) << 26;  // any string the template builds, the output included
constexpr int64_t kMaxListItems = int64_t(1) << 22;    // items of a list the template builds
constexpr int64_t kMaxSteps = 250000;                  // statements executed + loop iterations
// Fails if a string of `bytes` (a product or sum computed by the caller, `overflow` if it did not fit) would
// pass kMaxStringBytes.
inline void check_string_size(int64_t bytes, bool overflow = false) {
  if (overflow || bytes > kMaxStringBytes)
    render_error("MemoryError: the template would build a string larger than " +
                 std::to_string(kMaxStringBytes >> 20) + " MiB");
}
inline void check_list_size(int64_t items, bool overflow = false) {
  if (overflow || items > kMaxListItems)
    render_error("MemoryError: the template would build a list of more than " + std::to_string(kMaxListItems) +
                 " items");
}

struct Expr;
using ExprPtr = std::unique_ptr<Expr>;

enum class ExprOp : uint8_t {
  kConst, kName, kGetattr, kGetitem, kSlice, kCall, kFilter, kTest, kNot, kNeg, kPos,
  kAdd, kSub, kMul, kDiv, kFloorDiv, kMod, kPow, kAnd, kOr, kConcat, kCompare, kCond,
  kList, kTuple, kDict, kNsRef
};

class Renderer;
using FilterFn = Value (*)(Renderer&, const Value& input, const CallArgs& args);
using TestFn = bool (*)(Renderer&, const Value& input, const CallArgs& args);

struct Expr {
  ExprOp op;
  int line = 0;
  Value value;       // kConst
  std::string name;  // kName; kGetattr/kNsRef attribute; kFilter/kTest name; kNsRef namespace in `value`
  // Operands. kGetattr: [obj]; kGetitem: [obj, index]; kSlice: [start, stop, step] (null = omitted);
  // kCall: [callee, args…]; kFilter: [input (null in a filter block), args…]; kTest: [input, args…];
  // binary ops: [lhs, rhs]; kConcat/kList/kTuple: items; kDict: key, value, key, value, …;
  // kCompare: [first, operand…] with cmp_ops; kCond: [then, test, else (may be null)].
  std::vector<ExprPtr> args;
  std::vector<std::pair<std::string, ExprPtr>> kwargs;  // kCall / kFilter / kTest keyword arguments
  std::vector<std::string> cmp_ops;                     // kCompare: "==", "!=", "<", "<=", ">", ">=", "in", "notin"
  FilterFn filter = nullptr;                            // kFilter, resolved at parse time
  TestFn test = nullptr;                                // kTest, resolved at parse time
};

struct Stmt;
using StmtPtr = std::unique_ptr<Stmt>;
using Body = std::vector<StmtPtr>;

enum class StmtKind : uint8_t {
  kData, kOutput, kFor, kIf, kSet, kSetBlock, kMacro, kCallBlock, kFilterBlock, kWith, kBreak, kContinue, kScope
};

struct Stmt {
  StmtKind kind;
  int line = 0;
  std::string text;    // kData: the literal text; kMacro: the macro name
  ExprPtr expr;        // kOutput / kSet value / kFor iterable / kIf test / kCallBlock call / kFilterBlock filter
  ExprPtr target;      // kFor / kSet / kSetBlock target (kName, kTuple of names or kNsRef)
  ExprPtr cond;        // kFor: the `if` filter; kSetBlock: an optional filter applied to the body
  Body body;
  Body else_body;      // kFor else; kIf else / elif (a nested kIf)
  std::vector<std::string> params;  // kMacro / kCallBlock parameters; kWith targets
  std::vector<ExprPtr> defaults;    // aligned to the end of params (kWith: one value per target)
  bool uses_varargs = false;        // kMacro / kCallBlock: the body reads `varargs` / `kwargs`
  bool uses_kwargs = false;         //   (else extra arguments are a TypeError, as in jinja2)
};

struct Program {
  Body body;
  Options opts;
};

// Builtin lookups (jinja_builtins.cpp). nullptr when there is no such filter/test.
FilterFn find_filter(std::string_view name);
TestFn find_test(std::string_view name);

}  // namespace infer::jinja
