// jinja.h — a Jinja2 interpreter for chat templates: the subset real Hugging Face chat templates use.
//
// Why: a prompt must be byte-identical to what transformers' apply_chat_template renders with jinja2
// (an ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and the loopcontrols extension,
// transformers' own tojson filter and raise_exception / strftime_now globals). So this follows
// jinja2's lexer (whitespace control), its scoping (a for-loop iteration is its own scope, if/elif
// are not), its default Undefined (prints as "", falsy, iterates as empty, but an attribute of it or
// arithmetic on it is an error) and Python's str()/repr() when values are printed.
//
// A template is parsed once (Template) and rendered many times; rendering is const and thread-safe.
// Errors are infer::Error naming the template line: INFER_ERR_FORMAT for syntax errors,
// INFER_ERR_UNSUPPORTED for constructs this interpreter does not implement (unknown filters, tests
// or statements), INFER_ERR_INVALID_ARG for errors raised while rendering (raise_exception, type
// errors on the given messages). See docs/chat.md for the supported subset.
#pragma once
#include <cstdint>
#include <ctime>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace infer::jinja {

class Value;
struct ValueDict;
struct Namespace;
struct Function;

using ValueList = std::vector<Value>;

// Python types a template can see. Tuple prints as (a, b); Namespace is jinja2's namespace() and
// also carries loop objects (LoopContext); Function is a macro, a global or a bound method.
enum class Kind : uint8_t { kUndefined, kNone, kBool, kInt, kFloat, kString, kList, kTuple, kDict, kNamespace, kFunction };

// A Python value with shared, immutable containers (the sandbox is immutable; only namespace
// attributes change, and Namespace is shared by reference as in Python).
class Value {
 public:
  Value() = default;  // jinja2 Undefined without a name
  Value(std::nullptr_t) : kind_(Kind::kNone) {}
  Value(bool b) : kind_(Kind::kBool), data_(b) {}
  Value(int v) : kind_(Kind::kInt), data_(int64_t(v)) {}
  Value(int64_t v) : kind_(Kind::kInt), data_(v) {}
  Value(double v) : kind_(Kind::kFloat), data_(v) {}
  Value(std::string s) : kind_(Kind::kString), data_(std::make_shared<const std::string>(std::move(s))) {}
  Value(std::string_view s) : Value(std::string(s)) {}
  Value(const char* s) : Value(std::string(s)) {}

  // An Undefined that remembers why it is undefined ("'x' is undefined", "'dict object' has no
  // attribute 'y'"): the message of the error raised if it is used where a value is required.
  static Value undefined(std::string hint);
  static Value list(ValueList items);
  static Value tuple(ValueList items);
  static Value dict(ValueDict d);
  static Value ns(std::shared_ptr<Namespace> n);
  static Value function(std::string name, std::function<Value(const struct CallArgs&)> fn, bool is_macro = false);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  bool is_number() const { return kind_ == Kind::kBool || kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_integral() const { return kind_ == Kind::kBool || kind_ == Kind::kInt; }  // Python int (bool included)
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }
  bool is_tuple() const { return kind_ == Kind::kTuple; }
  bool is_sequence() const { return kind_ == Kind::kList || kind_ == Kind::kTuple; }  // list or tuple
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_function() const { return kind_ == Kind::kFunction; }

  // How deeply containers nest inside this value (0 for a scalar; a namespace counts what was ever assigned into
  // it). Container factories refuse to nest deeper than kMaxValueDepth, so that printing, comparing and
  // freeing a value (all recursive) stay within the stack.
  static constexpr int kMaxValueDepth = 256;
  int depth() const;

  bool as_bool() const { return std::get<bool>(data_); }
  int64_t as_int() const;   // bool or int
  double as_float() const;  // bool, int or float
  const std::string& str_ref() const;   // kString
  const ValueList& items() const;       // kList / kTuple
  const ValueDict& dict_ref() const;    // kDict
  Namespace& ns_ref() const;            // kNamespace
  const Function& fn_ref() const;       // kFunction
  const std::string& undefined_hint() const;

  bool truthy() const;      // Python bool()
  std::string str() const;  // Python str(); Undefined → ""
  std::string repr() const; // Python repr()
  const char* type_name() const;  // Python's type name: "str", "int", "NoneType", "dict", …

  // Python == (1 == 1.0 == True, lists element-wise, dicts by content; Undefined equals Undefined).
  bool operator==(const Value& o) const;
  bool operator!=(const Value& o) const { return !(*this == o); }

 private:
  using Data = std::variant<std::monostate, bool, int64_t, double, std::shared_ptr<const std::string>,
                            std::shared_ptr<const ValueList>, std::shared_ptr<const ValueDict>,
                            std::shared_ptr<Namespace>, std::shared_ptr<const Function>>;
  Value(Kind k, Data d, int depth = 0) : kind_(k), depth_(uint16_t(depth)), data_(std::move(d)) {}
  Kind kind_ = Kind::kUndefined;
  uint16_t depth_ = 0;  // lists, tuples, dicts (see depth())
  Data data_;
};

// An insertion-ordered dict (Python 3.7+ order; JSON objects keep their key order).
struct ValueDict {
  std::vector<std::pair<Value, Value>> entries;
  const Value* find(const Value& key) const;
  const Value* find(std::string_view key) const;
  const Value* find(const char* key) const { return find(std::string_view(key)); }
  const Value* find(const std::string& key) const { return find(std::string_view(key)); }
  void set(Value key, Value value);  // replaces an existing key in place, else appends
  size_t size() const { return entries.size(); }
};

// jinja2's namespace(); is_loop marks a for-loop's `loop` object (read-only, prints differently).
struct Namespace {
  ValueDict attrs;
  bool is_loop = false;
  int depth = 1;  // 1 + the deepest value ever assigned into attrs (Value::depth)
  // Assigns an attribute; refuses a value that would nest deeper than Value::kMaxValueDepth.
  void set_attr(Value key, Value value);
};

// Positional and keyword arguments of a call.
struct CallArgs {
  ValueList pos;
  std::vector<std::pair<std::string, Value>> kw;
  const Value* kwarg(std::string_view name) const;
  // The argument at position i or keyword `name` (nullptr if neither was given).
  const Value* arg(size_t i, std::string_view name) const;
};

struct Function {
  std::string name;
  std::function<Value(const CallArgs&)> call;
  bool is_macro = false;
};

// Converts parsed JSON (key order kept) into template values: objects → dict, arrays → list.
Value from_json(const nlohmann::ordered_json& j);

// Python's json.dumps as transformers' tojson filter calls it (ensure_ascii=False by default,
// separators (", ", ": ") or (",", ": ") with indent). indent: nullopt = one line.
struct JsonFormat {
  std::optional<std::string> indent;
  std::string item_sep = ", ";
  std::string key_sep = ": ";
  bool sort_keys = false;
  bool ensure_ascii = false;
};
std::string to_json(const Value& v, const JsonFormat& fmt = {});

// Python repr() of a float ("1.0", "1e-05", "1e+16", "inf", "nan").
std::string float_repr(double d);

struct Options {
  bool trim_blocks = true;    // as transformers sets them
  bool lstrip_blocks = true;
  bool keep_trailing_newline = false;
  std::string name = "chat template";  // used in error messages: "<name>, line N: …"
};

struct RenderOptions {
  // The clock strftime_now() reads (local time); unset: the current time.
  std::optional<std::tm> now;
};

struct Program;  // the parsed template (jinja_ast.h)

class Template {
 public:
  // Parses the source; throws infer::Error with the line number on a syntax error or an
  // unsupported construct.
  explicit Template(std::string_view source, const Options& opts = {});
  ~Template();
  Template(Template&&) noexcept;
  Template& operator=(Template&&) noexcept;

  // Renders with the given top-level variables. Throws infer::Error (with the line) on failure.
  std::string render(const ValueDict& vars, const RenderOptions& ro = {}) const;

 private:
  std::shared_ptr<const Program> prog_;
};

}  // namespace infer::jinja
