// jinja_value.cpp — template values (jinja.h): Python truthiness, equality, str()/repr(), and the
// JSON bridge (from_json for the messages/tools given to a template, to_json = Python's json.dumps
// as transformers' tojson filter calls it).
#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

#include "common.h"
#include "jinja_ast.h"
#include "jinja_pystr.h"

namespace infer::jinja {

// The hint is kept in the string slot; only error messages read it.
Value Value::undefined(std::string hint) {
  return Value(Kind::kUndefined, std::make_shared<const std::string>(std::move(hint)));
}
namespace {
// 1 + the deepest of `depths`, refused past kMaxValueDepth (Python would hit its recursion limit printing it).
template <typename It, typename F>
int container_depth(It begin, It end, F depth_of) {
  int d = 0;
  for (It it = begin; it != end; ++it) d = std::max(d, depth_of(*it));
  if (d + 1 > Value::kMaxValueDepth)
    render_error("RecursionError: the template would nest containers more than " +
                 std::to_string(Value::kMaxValueDepth) + " levels deep");
  return d + 1;
}
int entry_depth(const std::pair<Value, Value>& e) { return std::max(e.first.depth(), e.second.depth()); }
}  // namespace

int Value::depth() const {
  if (kind_ == Kind::kNamespace) return ns_ref().depth;
  return depth_;
}

Value Value::list(ValueList items) {
  const int d = container_depth(items.begin(), items.end(), [](const Value& v) { return v.depth(); });
  return Value(Kind::kList, std::make_shared<const ValueList>(std::move(items)), d);
}
Value Value::tuple(ValueList items) {
  const int d = container_depth(items.begin(), items.end(), [](const Value& v) { return v.depth(); });
  return Value(Kind::kTuple, std::make_shared<const ValueList>(std::move(items)), d);
}
Value Value::dict(ValueDict dict) {
  const int d = container_depth(dict.entries.begin(), dict.entries.end(), entry_depth);
  return Value(Kind::kDict, std::make_shared<const ValueDict>(std::move(dict)), d);
}
Value Value::ns(std::shared_ptr<Namespace> n) {
  n->depth = std::max(n->depth, container_depth(n->attrs.entries.begin(), n->attrs.entries.end(), entry_depth));
  return Value(Kind::kNamespace, std::move(n));
}

void Namespace::set_attr(Value key, Value value) {
  const int d = 1 + std::max(key.depth(), value.depth());
  if (d > Value::kMaxValueDepth)
    render_error("RecursionError: the template would nest containers more than " +
                 std::to_string(Value::kMaxValueDepth) + " levels deep");
  depth = std::max(depth, d);
  attrs.set(std::move(key), std::move(value));
}
Value Value::function(std::string name, std::function<Value(const CallArgs&)> fn, bool is_macro) {
  auto f = std::make_shared<Function>();
  f->name = std::move(name);
  f->call = std::move(fn);
  f->is_macro = is_macro;
  return Value(Kind::kFunction, std::shared_ptr<const Function>(std::move(f)));
}

int64_t Value::as_int() const { return kind_ == Kind::kBool ? int64_t(std::get<bool>(data_)) : std::get<int64_t>(data_); }
double Value::as_float() const {
  if (kind_ == Kind::kFloat) return std::get<double>(data_);
  return double(as_int());
}
const std::string& Value::str_ref() const { return *std::get<std::shared_ptr<const std::string>>(data_); }
const ValueList& Value::items() const { return *std::get<std::shared_ptr<const ValueList>>(data_); }
const ValueDict& Value::dict_ref() const { return *std::get<std::shared_ptr<const ValueDict>>(data_); }
Namespace& Value::ns_ref() const { return *std::get<std::shared_ptr<Namespace>>(data_); }
const Function& Value::fn_ref() const { return *std::get<std::shared_ptr<const Function>>(data_); }
const std::string& Value::undefined_hint() const {
  static const std::string kEmpty;
  if (const auto* p = std::get_if<std::shared_ptr<const std::string>>(&data_)) return **p;
  return kEmpty;
}

// Python bool(): empty containers and strings, 0, None and Undefined are false.
bool Value::truthy() const {
  switch (kind_) {
    case Kind::kUndefined: case Kind::kNone: return false;
    case Kind::kBool: return as_bool();
    case Kind::kInt: return as_int() != 0;
    case Kind::kFloat: return as_float() != 0.0;
    case Kind::kString: return !str_ref().empty();
    case Kind::kList: case Kind::kTuple: return !items().empty();
    case Kind::kDict: return dict_ref().size() != 0;
    case Kind::kNamespace: case Kind::kFunction: return true;
  }
  return false;
}

// Python's type names, used in error messages ('str', 'NoneType', …).
const char* Value::type_name() const {
  switch (kind_) {
    case Kind::kUndefined: return "Undefined";
    case Kind::kNone: return "NoneType";
    case Kind::kBool: return "bool";
    case Kind::kInt: return "int";
    case Kind::kFloat: return "float";
    case Kind::kString: return "str";
    case Kind::kList: return "list";
    case Kind::kTuple: return "tuple";
    case Kind::kDict: return "dict";
    case Kind::kNamespace: return ns_ref().is_loop ? "LoopContext" : "Namespace";
    case Kind::kFunction: return fn_ref().is_macro ? "Macro" : "function";
  }
  return "object";
}

// Python's repr(float): the shortest digits that round-trip (std::to_chars), written in fixed
// notation for decimal exponents -4..15 and as d.ddde±XX otherwise.
std::string float_repr(double d) {
  if (std::isnan(d)) return "nan";
  if (std::isinf(d)) return d < 0 ? "-inf" : "inf";
  if (d == 0) return std::signbit(d) ? "-0.0" : "0.0";
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  const std::string sci(buf, res.ptr);  // shortest round-trip: "-1.2345e+02"
  const size_t epos = sci.find('e');
  std::string mant = sci.substr(0, epos);
  const int exp = std::stoi(sci.substr(epos + 1));
  const bool neg = mant[0] == '-';
  if (neg) mant.erase(0, 1);
  std::string digits;
  for (char c : mant)
    if (c != '.') digits += c;
  std::string out = neg ? "-" : "";
  if (exp >= -4 && exp < 16) {
    if (exp >= 0) {
      const size_t int_len = size_t(exp) + 1;
      if (digits.size() <= int_len) {
        out += digits + std::string(int_len - digits.size(), '0') + ".0";
      } else {
        out += digits.substr(0, int_len) + "." + digits.substr(int_len);
      }
    } else {
      out += "0." + std::string(size_t(-exp - 1), '0') + digits;
    }
    return out;
  }
  out += digits.substr(0, 1);
  if (digits.size() > 1) out += "." + digits.substr(1);
  char e[16];
  std::snprintf(e, sizeof e, "e%c%02d", exp < 0 ? '-' : '+', std::abs(exp));
  return out + e;
}

namespace {

// repr(): strings quoted and escaped, everything else as str().
void repr_into(const Value& v, std::string& out);

// repr of a list/tuple: items by repr(), a 1-tuple keeps its comma.
void seq_repr(const ValueList& items, bool tuple, std::string& out) {
  out += tuple ? '(' : '[';
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += ", ";
    repr_into(items[i], out);
  }
  if (tuple && items.size() == 1) out += ',';
  out += tuple ? ')' : ']';
}

void dict_repr(const ValueDict& d, std::string& out) {
  out += '{';
  for (size_t i = 0; i < d.entries.size(); ++i) {
    if (i) out += ", ";
    repr_into(d.entries[i].first, out);
    out += ": ";
    repr_into(d.entries[i].second, out);
  }
  out += '}';
}

// Bounds the recursion of printing: a namespace can contain itself (ns.a = ns), which Python would print
// until its recursion limit.
thread_local int t_print_depth = 0;
struct PrintDepth {
  PrintDepth() {
    if (++t_print_depth > 2 * Value::kMaxValueDepth) {
      --t_print_depth;
      render_error("RecursionError: maximum recursion depth exceeded while getting the repr of an object");
    }
  }
  ~PrintDepth() { --t_print_depth; }
  PrintDepth(const PrintDepth&) = delete;
  PrintDepth& operator=(const PrintDepth&) = delete;
};

// Python str() of a value, which is what {{ }} and ~ print: True/None/1.0, containers by repr().
void str_into(const Value& v, std::string& out) {
  const PrintDepth guard;
  switch (v.kind()) {
    case Kind::kUndefined: return;
    case Kind::kNone: out += "None"; return;
    case Kind::kBool: out += v.as_bool() ? "True" : "False"; return;
    case Kind::kInt: out += std::to_string(v.as_int()); return;
    case Kind::kFloat: out += float_repr(v.as_float()); return;
    case Kind::kString: out += v.str_ref(); return;
    case Kind::kList: case Kind::kTuple: seq_repr(v.items(), v.is_tuple(), out); return;
    case Kind::kDict: dict_repr(v.dict_ref(), out); return;
    case Kind::kNamespace: {
      const Namespace& n = v.ns_ref();
      if (n.is_loop) {
        const Value* i = n.attrs.find("index");
        const Value* l = n.attrs.find("length");
        out += "<LoopContext " + (i ? i->str() : "?") + "/" + (l ? l->str() : "?") + ">";
      } else {
        out += "<Namespace ";
        dict_repr(n.attrs, out);
        out += ">";
      }
      return;
    }
    case Kind::kFunction:
      out += v.fn_ref().is_macro ? "<Macro '" + v.fn_ref().name + "'>" : "<function " + v.fn_ref().name + ">";
      return;
  }
}

void repr_into(const Value& v, std::string& out) {
  if (v.is_string()) out += py::repr(v.str_ref());
  else if (v.is_undefined()) out += "Undefined";
  else str_into(v, out);
}

}  // namespace

std::string Value::str() const {
  if (kind_ == Kind::kString) return str_ref();
  std::string out;
  str_into(*this, out);
  return out;
}

std::string Value::repr() const {
  std::string out;
  repr_into(*this, out);
  return out;
}

// Python ==: numbers by value across bool/int/float, containers element-wise, dicts regardless of
// order; namespaces and functions by identity.
bool Value::operator==(const Value& o) const {
  if (is_number() && o.is_number()) {
    if (is_float() || o.is_float()) return as_float() == o.as_float();
    return as_int() == o.as_int();
  }
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::kUndefined: case Kind::kNone: return true;
    case Kind::kString: return str_ref() == o.str_ref();
    case Kind::kList: case Kind::kTuple: return items() == o.items();
    case Kind::kDict: {
      const ValueDict& a = dict_ref();
      const ValueDict& b = o.dict_ref();
      if (a.size() != b.size()) return false;
      for (const auto& [k, v] : a.entries) {
        const Value* w = b.find(k);
        if (!w || *w != v) return false;
      }
      return true;
    }
    case Kind::kNamespace: return &ns_ref() == &o.ns_ref();
    case Kind::kFunction: return &fn_ref() == &o.fn_ref();
    default: return false;
  }
}

// Linear lookups: template dicts (messages, tool schemas) have a handful of keys.
const Value* ValueDict::find(const Value& key) const {
  if (key.is_string()) return find(std::string_view(key.str_ref()));
  for (const auto& e : entries)
    if (e.first == key) return &e.second;
  return nullptr;
}

const Value* ValueDict::find(std::string_view key) const {
  for (const auto& e : entries)
    if (e.first.is_string() && e.first.str_ref() == key) return &e.second;
  return nullptr;
}

void ValueDict::set(Value key, Value value) {
  for (auto& e : entries)
    if (e.first == key) {
      e.second = std::move(value);
      return;
    }
  entries.emplace_back(std::move(key), std::move(value));
}

const Value* CallArgs::kwarg(std::string_view name) const {
  for (const auto& [k, v] : kw)
    if (k == name) return &v;
  return nullptr;
}

const Value* CallArgs::arg(size_t i, std::string_view name) const {
  if (i < pos.size()) return &pos[i];
  return kwarg(name);
}

// JSON → values. Integers beyond int64 become floats (Python would keep them exact).
namespace {
// JSON deeper than this is refused with infer::Error (the renderer, str() and tojson recurse over values).
constexpr int kMaxJsonDepth = 128;
Value from_json_at(const nlohmann::ordered_json& j, int depth);
}  // namespace

Value from_json(const nlohmann::ordered_json& j) { return from_json_at(j, 0); }

namespace {
Value from_json_at(const nlohmann::ordered_json& j, int depth) {
  if (depth > kMaxJsonDepth && (j.is_array() || j.is_object()))
    fail(INFER_ERR_INVALID_ARG, "the JSON given to the chat template nests more than " +
                                    std::to_string(kMaxJsonDepth) + " levels deep");
  switch (j.type()) {
    case nlohmann::ordered_json::value_t::null: return Value(nullptr);
    case nlohmann::ordered_json::value_t::boolean: return Value(j.get<bool>());
    case nlohmann::ordered_json::value_t::number_integer: return Value(j.get<int64_t>());
    case nlohmann::ordered_json::value_t::number_unsigned: {
      const uint64_t u = j.get<uint64_t>();
      return u <= uint64_t(INT64_MAX) ? Value(int64_t(u)) : Value(double(u));
    }
    case nlohmann::ordered_json::value_t::number_float: return Value(j.get<double>());
    case nlohmann::ordered_json::value_t::string: return Value(j.get_ref<const std::string&>());
    case nlohmann::ordered_json::value_t::array: {
      ValueList items;
      items.reserve(j.size());
      for (const auto& e : j) items.push_back(from_json_at(e, depth + 1));
      return Value::list(std::move(items));
    }
    case nlohmann::ordered_json::value_t::object: {
      ValueDict d;
      d.entries.reserve(j.size());
      for (auto it = j.begin(); it != j.end(); ++it)
        d.entries.emplace_back(Value(it.key()), from_json_at(it.value(), depth + 1));
      return Value::dict(std::move(d));
    }
    default: return Value(nullptr);  // binary / discarded: not produced by the JSON parser
  }
}
}  // namespace

namespace {

// A JSON string as Python's json.dumps writes it: with ensure_ascii=False only " \ and control
// characters are escaped (\n \r \t \b \f, others \u00XX); with ensure_ascii=True every non-ASCII
// character becomes \uXXXX (surrogate pairs above U+FFFF). Hex digits are lower-case.
void json_string(std::string_view s, bool ensure_ascii, std::string& out) {
  static const char* hex = "0123456789abcdef";
  auto u4 = [&](uint32_t c) {
    out += "\\u";
    for (int k = 3; k >= 0; --k) out += hex[(c >> (4 * k)) & 0xF];
  };
  out += '"';
  for (size_t i = 0; i < s.size();) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b >= 0x80 && ensure_ascii) {
      const char32_t cp = py::decode_at(s, i);
      if (cp >= 0x10000) {
        const uint32_t v = uint32_t(cp) - 0x10000;
        u4(0xD800 | (v >> 10));
        u4(0xDC00 | (v & 0x3FF));
      } else {
        u4(uint32_t(cp));
      }
      continue;
    }
    ++i;
    switch (b) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      default:
        if (b < 0x20 || (b == 0x7F && ensure_ascii)) u4(b);
        else out += static_cast<char>(b);
    }
  }
  out += '"';
}

// json.dumps converts str/int/float/bool/None keys to strings and rejects the rest.
std::string json_key(const Value& k) {
  switch (k.kind()) {
    case Kind::kString: return k.str_ref();
    case Kind::kBool: return k.as_bool() ? "true" : "false";
    case Kind::kNone: return "null";
    case Kind::kInt: return std::to_string(k.as_int());
    case Kind::kFloat: return float_repr(k.as_float());
    default: render_error(std::string("TypeError: keys must be str, int, float, bool or None, not ") + k.type_name());
  }
}

// json.dumps layout: one line with the separators, or with indent one item per line and the
// closing bracket at the parent's depth; empty containers stay [] / {}.
void json_into(const Value& v, const JsonFormat& f, int level, std::string& out) {
  const PrintDepth guard;
  switch (v.kind()) {
    case Kind::kNone: out += "null"; return;
    case Kind::kBool: out += v.as_bool() ? "true" : "false"; return;
    case Kind::kInt: out += std::to_string(v.as_int()); return;
    case Kind::kFloat: {
      const double d = v.as_float();
      if (std::isnan(d)) out += "NaN";
      else if (std::isinf(d)) out += d < 0 ? "-Infinity" : "Infinity";
      else out += float_repr(d);
      return;
    }
    case Kind::kString: json_string(v.str_ref(), f.ensure_ascii, out); return;
    case Kind::kList: case Kind::kTuple: case Kind::kDict: break;
    default: render_error(std::string("TypeError: Object of type ") + v.type_name() + " is not JSON serializable");
  }
  const bool is_dict = v.is_dict();
  const size_t n = is_dict ? v.dict_ref().size() : v.items().size();
  if (n == 0) {
    out += is_dict ? "{}" : "[]";
    return;
  }
  std::string nl;
  if (f.indent) {
    nl = "\n";
    for (int k = 0; k <= level; ++k) nl += *f.indent;
  }
  check_string_size(int64_t(out.size() + nl.size()));  // a huge indent × nesting
  out += is_dict ? '{' : '[';
  out += nl;
  if (is_dict) {
    std::vector<const std::pair<Value, Value>*> entries;
    for (const auto& e : v.dict_ref().entries) entries.push_back(&e);
    std::vector<std::string> keys;
    for (const auto* e : entries) keys.push_back(json_key(e->first));
    std::vector<size_t> order(entries.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    if (f.sort_keys) std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return keys[a] < keys[b]; });
    for (size_t k = 0; k < order.size(); ++k) {
      if (k) out += f.item_sep + nl;
      json_string(keys[order[k]], f.ensure_ascii, out);
      out += f.key_sep;
      json_into(entries[order[k]]->second, f, level + 1, out);
    }
  } else {
    const ValueList& items = v.items();
    for (size_t k = 0; k < items.size(); ++k) {
      if (k) out += f.item_sep + nl;
      json_into(items[k], f, level + 1, out);
    }
  }
  if (f.indent) {
    out += "\n";
    for (int k = 0; k < level; ++k) out += *f.indent;
  }
  out += is_dict ? '}' : ']';
}

}  // namespace

std::string to_json(const Value& v, const JsonFormat& fmt) {
  std::string out;
  json_into(v, fmt, 0, out);
  return out;
}

}  // namespace infer::jinja
