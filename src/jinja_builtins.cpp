// jinja_builtins.cpp — jinja2's builtin filters and tests, the globals' Python semantics, and the
// methods of str/list/dict that templates call (message.content.split('</think>'), d.get(k), …).
//
// Each follows jinja2 3.1's implementation (filters.py / tests.py) and CPython's behaviour for the
// same inputs, including their errors (TypeError text) and the handling of Undefined. Iterator
// results (map/select/reverse) are materialized as lists: identical once joined, listed or looped.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <unordered_map>

#include "jinja_pystr.h"
#include "jinja_render.h"

namespace infer::jinja {

// ---- shared Python semantics ----------------------------------------------------------------------

// jinja2's UndefinedError, with the message the Undefined was created with.
void undefined_error(const Value& u) {
  const std::string& h = u.undefined_hint();
  render_error("UndefinedError: " + (h.empty() ? std::string("value is undefined") : h));
}

namespace {

[[noreturn]] void type_error(const std::string& msg) { render_error("TypeError: " + msg); }

std::string quoted_type(const Value& v) { return std::string("'") + v.type_name() + "'"; }

// A string's characters (code points) as one-character strings.
ValueList string_chars(const std::string& s) {
  ValueList out;
  out.reserve(s.size());
  if (py::is_ascii(s)) {
    for (char c : s) out.emplace_back(std::string(1, c));
    return out;
  }
  const auto off = py::cp_offsets(s);
  for (size_t i = 0; i + 1 < off.size(); ++i) out.emplace_back(s.substr(off[i], off[i + 1] - off[i]));
  return out;
}

}  // namespace

ValueList iterate(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return {};
    case Kind::kList: case Kind::kTuple: return v.items();
    case Kind::kDict: {
      ValueList keys;
      keys.reserve(v.dict_ref().size());
      for (const auto& e : v.dict_ref().entries) keys.push_back(e.first);
      return keys;
    }
    case Kind::kString: return string_chars(v.str_ref());
    default: type_error(quoted_type(v) + " object is not iterable");
  }
}

// Python len(); jinja2's Undefined has length 0.
int64_t py_len(const Value& v) {
  switch (v.kind()) {
    case Kind::kUndefined: return 0;
    case Kind::kString: return int64_t(py::length(v.str_ref()));
    case Kind::kList: case Kind::kTuple: return int64_t(v.items().size());
    case Kind::kDict: return int64_t(v.dict_ref().size());
    default: type_error("object of type " + quoted_type(v) + " has no len()");
  }
}

// Python's `<`: numbers compare across int/float/bool, strings by code point (= UTF-8 byte
// order), lists/tuples lexicographically; anything else is a TypeError.
bool py_less(const Value& a, const Value& b) {
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  if (a.is_number() && b.is_number()) {
    if (a.is_float() || b.is_float()) return a.as_float() < b.as_float();
    return a.as_int() < b.as_int();
  }
  if (a.is_string() && b.is_string()) return a.str_ref() < b.str_ref();  // UTF-8 byte order = code point order
  if ((a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple())) {
    const ValueList& x = a.items();
    const ValueList& y = b.items();
    for (size_t i = 0; i < x.size() && i < y.size(); ++i)
      if (x[i] != y[i]) return py_less(x[i], y[i]);
    return x.size() < y.size();
  }
  type_error("'<' not supported between instances of " + quoted_type(a) + " and " + quoted_type(b));
}

// Python's `in`: substring for strings, == membership for lists/tuples, key lookup for dicts.
// Undefined iterates as empty, so nothing is in it.
bool py_contains(const Value& c, const Value& item) {
  switch (c.kind()) {
    case Kind::kUndefined: return false;
    case Kind::kString:
      if (!item.is_string()) type_error("'in <string>' requires string as left operand, not " + std::string(item.type_name()));
      return c.str_ref().find(item.str_ref()) != std::string::npos;
    case Kind::kList: case Kind::kTuple:
      for (const auto& v : c.items())
        if (v == item) return true;
      return false;
    case Kind::kDict:
      if (item.is_list() || item.is_dict() || item.is_namespace()) type_error("unhashable type: " + quoted_type(item));
      return c.dict_ref().find(item) != nullptr;
    default: type_error("argument of type " + quoted_type(c) + " is not iterable");
  }
}

namespace {

// Python ints are unbounded; ours are 64-bit, and overflow is reported instead of wrapping.
Value int_result(bool overflow, int64_t r) {
  if (overflow) render_error("OverflowError: integer result does not fit in 64 bits");
  return Value(r);
}

std::string repeat(const std::string& s, int64_t n) {
  std::string out;
  if (n <= 0 || s.empty()) return out;  // "" * 2000000000 is "" (and must not loop 2e9 times)
  int64_t total = 0;
  check_string_size(total, __builtin_mul_overflow(int64_t(s.size()), n, &total));
  check_string_size(total);
  out.reserve(s.size() * size_t(n));
  for (int64_t i = 0; i < n; ++i) out += s;
  return out;
}

const char* op_symbol(ExprOp op) {
  switch (op) {
    case ExprOp::kAdd: return "+";
    case ExprOp::kSub: return "-";
    case ExprOp::kMul: return "*";
    case ExprOp::kDiv: return "/";
    case ExprOp::kFloorDiv: return "//";
    case ExprOp::kMod: return "%";
    default: return "**";
  }
}

}  // namespace

// Python's binary operators as jinja2 compiles them (plain Python semantics; `str % x` is
// printf-style formatting). Ints stay ints except for `/` and negative powers; floor division
// and modulo take the sign of the divisor, as in CPython's long and float implementations.
Value py_binary(ExprOp op, const Value& a, const Value& b) {
  if (op == ExprOp::kMod && a.is_string()) return Value(percent_format(a.str_ref(), b));
  if (a.is_undefined()) undefined_error(a);
  if (b.is_undefined()) undefined_error(b);
  if (a.is_number() && b.is_number()) {
    const bool ints = a.is_integral() && b.is_integral();
    if (ints) {
      const int64_t x = a.as_int(), y = b.as_int();
      int64_t r = 0;
      switch (op) {
        case ExprOp::kAdd: {
          const bool o = __builtin_add_overflow(x, y, &r);
          return int_result(o, r);
        }
        case ExprOp::kSub: {
          const bool o = __builtin_sub_overflow(x, y, &r);
          return int_result(o, r);
        }
        case ExprOp::kMul: {
          const bool o = __builtin_mul_overflow(x, y, &r);
          return int_result(o, r);
        }
        case ExprOp::kDiv:
          if (y == 0) render_error("ZeroDivisionError: division by zero");
          return Value(double(x) / double(y));
        case ExprOp::kFloorDiv: case ExprOp::kMod: {
          if (y == 0) render_error("ZeroDivisionError: integer division or modulo by zero");
          int64_t q = x / y, m = x % y;
          if (m != 0 && ((m < 0) != (y < 0))) {
            --q;
            m += y;
          }
          return Value(op == ExprOp::kFloorDiv ? q : m);
        }
        default: {  // pow
          if (y < 0) return Value(std::pow(double(x), double(y)));
          int64_t acc = 1;
          for (int64_t i = 0; i < y; ++i)
            if (__builtin_mul_overflow(acc, x, &acc)) render_error("OverflowError: integer result does not fit in 64 bits");
          return Value(acc);
        }
      }
    }
    const double x = a.as_float(), y = b.as_float();
    switch (op) {
      case ExprOp::kAdd: return Value(x + y);
      case ExprOp::kSub: return Value(x - y);
      case ExprOp::kMul: return Value(x * y);
      case ExprOp::kDiv:
        if (y == 0) render_error("ZeroDivisionError: float division by zero");
        return Value(x / y);
      case ExprOp::kFloorDiv: case ExprOp::kMod: {
        if (y == 0) render_error("ZeroDivisionError: float modulo");
        double mod = std::fmod(x, y);
        double div = (x - mod) / y;
        if (mod != 0) {
          if ((y < 0) != (mod < 0)) {
            mod += y;
            div -= 1.0;
          }
        } else {
          mod = std::copysign(0.0, y);
        }
        if (op == ExprOp::kMod) return Value(mod);
        double floordiv;
        if (div != 0) {
          floordiv = std::floor(div);
          if (div - floordiv > 0.5) floordiv += 1.0;
        } else {
          floordiv = std::copysign(0.0, x / y);
        }
        return Value(floordiv);
      }
      default: return Value(std::pow(x, y));
    }
  }
  switch (op) {
    case ExprOp::kAdd:
      if (a.is_string() && b.is_string()) {
        check_string_size(int64_t(a.str_ref().size() + b.str_ref().size()));
        return Value(a.str_ref() + b.str_ref());
      }
      if ((a.is_list() && b.is_list()) || (a.is_tuple() && b.is_tuple())) {
        check_list_size(int64_t(a.items().size() + b.items().size()));
        ValueList r = a.items();
        r.insert(r.end(), b.items().begin(), b.items().end());
        return a.is_list() ? Value::list(std::move(r)) : Value::tuple(std::move(r));
      }
      if (a.is_string() || a.is_list() || a.is_tuple())
        type_error(std::string("can only concatenate ") + a.type_name() + " (not \"" + b.type_name() + "\") to " + a.type_name());
      break;
    case ExprOp::kMul: {
      const Value* seq = a.is_integral() ? &b : &a;
      const Value* n = a.is_integral() ? &a : &b;
      if (n->is_integral()) {
        if (seq->is_string()) return Value(repeat(seq->str_ref(), n->as_int()));
        if (seq->is_sequence()) {
          ValueList r;
          int64_t total = 0;
          if (seq->items().empty()) return *seq;  // [] * 2000000000 is [] (without looping)
          if (n->as_int() > 0) {
            check_list_size(total, __builtin_mul_overflow(int64_t(seq->items().size()), n->as_int(), &total));
            check_list_size(total);
          }
          for (int64_t i = 0; i < n->as_int(); ++i) r.insert(r.end(), seq->items().begin(), seq->items().end());
          return seq->is_list() ? Value::list(std::move(r)) : Value::tuple(std::move(r));
        }
      }
      if (a.is_string() || a.is_sequence() || b.is_string() || b.is_sequence())
        type_error(std::string("can't multiply sequence by non-int of type '") +
                   (a.is_string() || a.is_sequence() ? b.type_name() : a.type_name()) + "'");
      break;
    }
    default: break;
  }
  type_error(std::string("unsupported operand type(s) for ") + op_symbol(op) + ": " + quoted_type(a) + " and " + quoted_type(b));
}

// Python slicing with CPython's index clamping (PySlice_AdjustIndices); strings slice by code
// point. jinja2 turns a slice of a non-sequence into Undefined.
Value py_slice(const Value& obj, const Value& start, const Value& stop, const Value& step) {
  auto idx = [](const Value& v, const char* what) -> std::optional<int64_t> {
    if (v.is_none()) return std::nullopt;
    if (!v.is_integral()) type_error(std::string("slice indices must be integers or None (") + what + ")");
    return v.as_int();
  };
  const std::optional<int64_t> a = idx(start, "start"), b = idx(stop, "stop"), c = idx(step, "step");
  const int64_t st = c.value_or(1);
  if (st == 0) render_error("ValueError: slice step cannot be zero");
  // Element count and accessor.
  std::vector<uint32_t> off;
  int64_t n;
  if (obj.is_string()) {
    if (py::is_ascii(obj.str_ref())) n = int64_t(obj.str_ref().size());
    else {
      off = py::cp_offsets(obj.str_ref());
      n = int64_t(off.size()) - 1;
    }
  } else if (obj.is_sequence()) {
    n = int64_t(obj.items().size());
  } else {
    return Value::undefined(std::string("'") + obj.type_name() + " object' is not subscriptable with a slice");
  }
  // CPython's PySlice_AdjustIndices.
  auto clamp = [&](std::optional<int64_t> v, int64_t dflt) {
    if (!v) return dflt;
    int64_t x = *v;
    if (x < 0) {
      x += n;
      if (x < 0) x = st < 0 ? -1 : 0;
    } else if (x >= n) {
      x = st < 0 ? n - 1 : n;
    }
    return x;
  };
  const int64_t lo = clamp(a, st < 0 ? n - 1 : 0);
  const int64_t hi = clamp(b, st < 0 ? -1 : n);
  std::vector<int64_t> picks;
  if (st > 0)
    for (int64_t i = lo; i < hi; i += st) picks.push_back(i);
  else
    for (int64_t i = lo; i > hi; i += st) picks.push_back(i);
  if (obj.is_string()) {
    const std::string& s = obj.str_ref();
    std::string out;
    for (int64_t i : picks) {
      if (off.empty()) out += s[size_t(i)];
      else out.append(s, off[size_t(i)], off[size_t(i) + 1] - off[size_t(i)]);
    }
    return Value(std::move(out));
  }
  ValueList out;
  out.reserve(picks.size());
  for (int64_t i : picks) out.push_back(obj.items()[size_t(i)]);
  return obj.is_list() ? Value::list(std::move(out)) : Value::tuple(std::move(out));
}

// ---- printf-style and str.format ------------------------------------------------------------------

namespace {

// %d/%x/… accept ints, bools and floats (truncated), as CPython's printf-style formatting does.
int64_t to_int_for_format(const Value& v, char conv) {
  if (v.is_integral()) return v.as_int();
  if (v.is_float()) return int64_t(std::trunc(v.as_float()));
  type_error(std::string("%") + conv + " format: a real number is required, not " + v.type_name());
}

// Pads to `width` code points.
std::string pad(const std::string& s, int64_t width, bool left_align, char fill = ' ') {
  const int64_t len = int64_t(py::length(s));
  if (width <= len) return s;
  check_string_size(width);
  const std::string padding(size_t(width - len), fill);
  return left_align ? s + padding : padding + s;
}

std::string c_format(const std::string& spec, double d) {
  char buf[512];
  std::snprintf(buf, sizeof buf, spec.c_str(), d);
  return buf;
}

}  // namespace

// CPython's printf-style `str % args`: a tuple supplies positional values, a dict %(name)s
// values, anything else is the single value. Flags, width, precision and * are supported.
std::string percent_format(std::string_view fmt, const Value& args) {
  ValueList pos;
  const ValueDict* mapping = nullptr;
  if (args.is_tuple()) pos = args.items();
  else if (args.is_dict()) mapping = &args.dict_ref(), pos.push_back(args);
  else pos.push_back(args);
  size_t next = 0;
  bool used_mapping = false;
  auto take = [&]() -> Value {
    if (next >= pos.size()) type_error("not enough arguments for format string");
    return pos[next++];
  };
  std::string out;
  for (size_t i = 0; i < fmt.size(); ++i) {
    if (fmt[i] != '%') {
      out += fmt[i];
      continue;
    }
    if (++i >= fmt.size()) render_error("ValueError: incomplete format");
    Value v;
    bool have_value = false;
    if (fmt[i] == '(') {
      const size_t close = fmt.find(')', i);
      if (close == std::string_view::npos) render_error("ValueError: incomplete format key");
      if (!mapping) type_error("format requires a mapping");
      const Value* f = mapping->find(fmt.substr(i + 1, close - i - 1));
      if (!f) render_error("KeyError: '" + std::string(fmt.substr(i + 1, close - i - 1)) + "'");
      v = *f;
      have_value = used_mapping = true;
      i = close + 1;
    }
    std::string flags;
    while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) flags += fmt[i++];
    int64_t width = -1, prec = -1;
    if (i < fmt.size() && fmt[i] == '*') width = take().as_int(), ++i;
    else
      while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') {
        width = (width < 0 ? 0 : width * 10) + (fmt[i++] - '0');
        check_string_size(width);  // also keeps width * 10 from overflowing
      }
    if (i < fmt.size() && fmt[i] == '.') {
      ++i;
      prec = 0;
      if (i < fmt.size() && fmt[i] == '*') prec = take().as_int(), ++i;
      else
        while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') prec = prec * 10 + (fmt[i++] - '0');
    }
    if (i >= fmt.size()) render_error("ValueError: incomplete format");
    const char conv = fmt[i];
    if (conv == '%') {
      out += '%';
      continue;
    }
    if (!have_value) v = take();
    const bool left = flags.find('-') != std::string::npos;
    std::string s;
    switch (conv) {
      case 's': case 'r': case 'a':
        s = conv == 's' ? v.str() : v.repr();
        if (prec >= 0) {
          const auto off = py::cp_offsets(s);
          if (size_t(prec) + 1 < off.size()) s.resize(off[size_t(prec)]);
        }
        out += pad(s, width, left);
        continue;
      case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': case 'c': {
        const int64_t n = to_int_for_format(v, conv);
        if (conv == 'c') {
          py::append_utf8(s, char32_t(n));
          out += pad(s, width, left);
          continue;
        }
        std::string spec = "%" + flags;
        if (width >= 0) spec += std::to_string(width);
        if (prec >= 0) spec += "." + std::to_string(prec);
        spec += "ll";
        spec += conv == 'i' || conv == 'u' ? 'd' : conv;
        char buf[128];
        std::snprintf(buf, sizeof buf, spec.c_str(), static_cast<long long>(n));
        out += buf;
        continue;
      }
      case 'f': case 'F': case 'e': case 'E': case 'g': case 'G': {
        if (!v.is_number()) type_error(std::string("must be real number, not ") + v.type_name());
        std::string spec = "%" + flags;
        if (width >= 0) spec += std::to_string(width);
        spec += "." + std::to_string(prec >= 0 ? prec : 6);
        spec += conv;
        out += c_format(spec, v.as_float());
        continue;
      }
      default: render_error(std::string("ValueError: unsupported format character '") + conv + "'");
    }
  }
  // CPython skips this check when the argument supports indexing (dict, list, Undefined …) but is
  // neither a tuple nor a str.
  const bool mapping_like = args.is_dict() || args.is_list() || args.is_undefined();
  if (next < pos.size() && !used_mapping && !mapping_like)
    type_error("not all arguments converted during string formatting");
  return out;
}

namespace {

// One replacement field's format spec ([[fill]align][sign][#][0][width][,][.precision][type]).
std::string format_spec(const Value& v, std::string_view spec) {
  if (spec.empty()) return v.str();
  size_t i = 0;
  std::string fill = " ";
  char align = 0;
  auto is_align = [](char c) { return c == '<' || c == '>' || c == '^' || c == '='; };
  {
    size_t j = 0;
    py::decode_at(spec, j);
    if (j < spec.size() && is_align(spec[j])) {
      fill = std::string(spec.substr(0, j));
      align = spec[j];
      i = j + 1;
    } else if (is_align(spec[0])) {
      align = spec[0];
      i = 1;
    }
  }
  char sign = 0;
  if (i < spec.size() && (spec[i] == '+' || spec[i] == '-' || spec[i] == ' ')) sign = spec[i++];
  if (i < spec.size() && spec[i] == '#') ++i;
  if (i < spec.size() && spec[i] == '0') {
    if (!align) {
      fill = "0";
      align = '=';
    }
    ++i;
  }
  int64_t width = 0;
  while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9') {
    width = width * 10 + (spec[i++] - '0');
    check_string_size(width);  // also keeps width * 10 from overflowing
  }
  bool comma = false;
  if (i < spec.size() && (spec[i] == ',' || spec[i] == '_')) comma = true, ++i;
  int64_t prec = -1;
  if (i < spec.size() && spec[i] == '.') {
    ++i;
    prec = 0;
    while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9') prec = prec * 10 + (spec[i++] - '0');
  }
  char type = i < spec.size() ? spec[i++] : 0;
  if (i != spec.size()) render_error("ValueError: invalid format specifier '" + std::string(spec) + "'");
  std::string body;
  bool numeric = v.is_number();
  if (v.is_string() || (!numeric && (type == 0 || type == 's'))) {
    body = v.str();
    if (prec >= 0) {
      const auto off = py::cp_offsets(body);
      if (size_t(prec) + 1 < off.size()) body.resize(off[size_t(prec)]);
    }
    numeric = false;
    if (!align) align = '<';
  } else if (numeric) {
    std::string s;
    const bool as_int = v.is_integral() && (type == 0 || type == 'd' || type == 'n');
    if (as_int) {
      s = std::to_string(v.as_int());
    } else if (type == 'x' || type == 'X' || type == 'o' || type == 'b') {
      if (!v.is_integral()) render_error("ValueError: unknown format code for float");
      char buf[80];
      const long long n = v.as_int();
      if (type == 'b') {
        unsigned long long u = n < 0 ? 0ULL - static_cast<unsigned long long>(n) : static_cast<unsigned long long>(n);
        std::string bits;
        do bits.insert(bits.begin(), char('0' + (u & 1))); while (u >>= 1);
        s = (n < 0 ? "-" : "") + bits;
      } else {
        std::snprintf(buf, sizeof buf, type == 'x' ? "%llx" : type == 'X' ? "%llX" : "%llo", std::llabs(n));
        s = (n < 0 ? "-" : "") + std::string(buf);
      }
    } else {
      const double d = v.as_float();
      if (type == 0 && prec < 0) s = v.is_integral() ? std::to_string(v.as_int()) : float_repr(d);
      else if (type == '%') s = c_format("%." + std::to_string(prec >= 0 ? prec : 6) + "f", d * 100) + "%";
      else s = c_format("%." + std::to_string(prec >= 0 ? prec : 6) + std::string(1, type ? type : 'g'), d);
    }
    const bool neg = !s.empty() && s[0] == '-';
    std::string digits = neg ? s.substr(1) : s;
    if (comma) {
      const size_t dot = digits.find_first_not_of("0123456789");
      const size_t int_len = dot == std::string::npos ? digits.size() : dot;
      for (int64_t k = int64_t(int_len) - 3; k > 0; k -= 3) digits.insert(size_t(k), ",");
    }
    std::string sgn = neg ? "-" : sign == '+' ? "+" : sign == ' ' ? " " : "";
    if (!align) align = '>';
    if (align == '=') {
      const int64_t len = int64_t(py::length(sgn + digits));
      std::string padding;
      for (int64_t k = len; k < width; ++k) padding += fill;
      return sgn + padding + digits;
    }
    body = sgn + digits;
  } else {
    body = v.str();
    if (!align) align = '<';
  }
  const int64_t len = int64_t(py::length(body));
  if (width <= len) return body;
  const int64_t total = width - len;
  int64_t left = align == '<' ? 0 : align == '>' ? total : total / 2;
  std::string out;
  for (int64_t k = 0; k < left; ++k) out += fill;
  out += body;
  for (int64_t k = left; k < total; ++k) out += fill;
  return out;
}

// str.format(*args, **kwargs): {} / {0} / {name}, .attr and [key] chains, !r/!s, format specs.
std::string str_format(Renderer& r, std::string_view fmt, const CallArgs& a) {
  std::string out;
  size_t auto_idx = 0;
  for (size_t i = 0; i < fmt.size(); ++i) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') ++i;
      else render_error("ValueError: Single '}' encountered in format string");
      out += '}';
      continue;
    }
    if (c != '{') {
      out += c;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      ++i;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string_view::npos) render_error("ValueError: Single '{' encountered in format string");
    std::string_view field = fmt.substr(i + 1, close - i - 1);
    i = close;
    std::string_view spec, conv;
    if (const size_t colon = field.find(':'); colon != std::string_view::npos) {
      spec = field.substr(colon + 1);
      field = field.substr(0, colon);
    }
    if (const size_t bang = field.find('!'); bang != std::string_view::npos) {
      conv = field.substr(bang + 1);
      field = field.substr(0, bang);
    }
    size_t k = 0;
    while (k < field.size() && field[k] != '.' && field[k] != '[') ++k;
    const std::string_view head = field.substr(0, k);
    Value v;
    if (head.empty()) {
      if (auto_idx >= a.pos.size()) render_error("IndexError: Replacement index " + std::to_string(auto_idx) + " out of range");
      v = a.pos[auto_idx++];
    } else if (head.find_first_not_of("0123456789") == std::string_view::npos) {
      const size_t n = size_t(std::stoul(std::string(head)));
      if (n >= a.pos.size()) render_error("IndexError: Replacement index " + std::string(head) + " out of range");
      v = a.pos[n];
    } else {
      const Value* kv = a.kwarg(head);
      if (!kv) render_error("KeyError: '" + std::string(head) + "'");
      v = *kv;
    }
    while (k < field.size()) {  // .attr and [key] chains
      if (field[k] == '.') {
        size_t e = k + 1;
        while (e < field.size() && field[e] != '.' && field[e] != '[') ++e;
        v = r.getattr(v, field.substr(k + 1, e - k - 1));
        k = e;
      } else {
        const size_t e = field.find(']', k);
        if (e == std::string_view::npos) render_error("ValueError: Missing ']' in format string");
        const std::string_view key = field.substr(k + 1, e - k - 1);
        v = key.find_first_not_of("0123456789") == std::string_view::npos && !key.empty()
                ? r.getitem(v, Value(int64_t(std::stoll(std::string(key)))))
                : r.getitem(v, Value(key));
        k = e + 1;
      }
    }
    if (conv == "r" || conv == "a") v = Value(v.repr());
    else if (conv == "s") v = Value(v.str());
    out += format_spec(v, spec);
  }
  return out;
}

// ---- str / list / dict methods -------------------------------------------------------------------

// Argument i (or keyword `name`) of a method; a missing one is Python's TypeError.
const Value* need(const CallArgs& a, size_t i, std::string_view name, std::string_view method) {
  const Value* v = a.arg(i, name);
  if (!v) type_error(std::string(method) + "() missing required argument '" + std::string(name) + "'");
  return v;
}

std::optional<std::string_view> opt_chars(const CallArgs& a, std::string_view method) {
  const Value* c = a.arg(0, "chars");
  if (!c || c->is_none()) return std::nullopt;
  if (!c->is_string()) type_error(std::string(method) + " arg must be None or str");
  return std::string_view(c->str_ref());
}

const std::string& need_str(const Value* v, std::string_view what) {
  if (!v->is_string()) type_error(std::string(what) + " must be str, not " + v->type_name());
  return v->str_ref();
}

int64_t opt_int(const CallArgs& a, size_t i, std::string_view name, int64_t dflt) {
  const Value* v = a.arg(i, name);
  if (!v || v->is_none()) return dflt;
  if (!v->is_integral()) type_error(std::string("'") + v->type_name() + "' object cannot be interpreted as an integer");
  return v->as_int();
}

// str.replace, including the empty-pattern case (inserts between characters).
std::string str_replace(const std::string& s, const std::string& old, const std::string& repl, int64_t count) {
  if (count < 0) count = INT64_MAX;
  std::string out;
  if (old.empty()) {  // inserts between every character (and at both ends)
    const auto off = py::cp_offsets(s);
    int64_t done = 0;
    for (size_t i = 0; i + 1 < off.size(); ++i) {
      if (done < count) out += repl, ++done;
      out.append(s, off[i], off[i + 1] - off[i]);
    }
    if (done < count) out += repl;
    return out;
  }
  size_t pos = 0;
  int64_t done = 0;
  while (done < count) {
    const size_t f = s.find(old, pos);
    if (f == std::string::npos) break;
    out.append(s, pos, f - pos);
    out += repl;
    pos = f + old.size();
    ++done;
  }
  out.append(s, pos, std::string::npos);
  return out;
}

// str.startswith / endswith with a string or a tuple of strings.
bool affix_match(const Value& obj, const Value& arg, bool prefix) {
  auto one = [&](const Value& x) {
    const std::string& s = obj.str_ref();
    const std::string& t = need_str(&x, prefix ? "startswith first arg" : "endswith first arg");
    if (t.size() > s.size()) return false;
    return prefix ? s.compare(0, t.size(), t) == 0 : s.compare(s.size() - t.size(), t.size(), t) == 0;
  };
  if (arg.is_tuple()) {
    for (const auto& x : arg.items())
      if (one(x)) return true;
    return false;
  }
  return one(arg);
}

ValueList to_values(const std::vector<std::string>& parts) {
  ValueList out;
  out.reserve(parts.size());
  for (const auto& p : parts) out.emplace_back(p);
  return out;
}

// The str methods templates call. Whitespace is Unicode whitespace and indexes are code points,
// as in Python.
Value str_method(Renderer& r, const std::string& s, std::string_view m, const CallArgs& a) {
  if (m == "upper") return Value(py::upper(s));
  if (m == "lower" || m == "casefold") return Value(py::lower(s));
  if (m == "title") return Value(py::title(s));
  if (m == "capitalize") return Value(py::capitalize(s));
  if (m == "swapcase") return Value(py::swapcase(s));
  if (m == "strip") return Value(py::strip(s, opt_chars(a, m), true, true));
  if (m == "lstrip") return Value(py::strip(s, opt_chars(a, m), true, false));
  if (m == "rstrip") return Value(py::strip(s, opt_chars(a, m), false, true));
  if (m == "split" || m == "rsplit") {
    const Value* sep = a.arg(0, "sep");
    std::optional<std::string_view> sp;
    if (sep && !sep->is_none()) sp = need_str(sep, "sep");
    const int64_t maxsplit = opt_int(a, 1, "maxsplit", -1);
    return Value::list(to_values(m == "split" ? py::split(s, sp, maxsplit) : py::rsplit(s, sp, maxsplit)));
  }
  if (m == "splitlines") {
    const Value* k = a.arg(0, "keepends");
    return Value::list(to_values(py::splitlines(s, k && k->truthy())));
  }
  if (m == "startswith" || m == "endswith") {
    if (a.pos.size() > 1) render_error("startswith/endswith with start/end arguments is not supported");
    return Value(affix_match(Value(s), *need(a, 0, "prefix", m), m == "startswith"));
  }
  if (m == "replace") {
    const std::string& old = need_str(need(a, 0, "old", m), "replace() argument 1");
    const std::string& repl = need_str(need(a, 1, "new", m), "replace() argument 2");
    return Value(str_replace(s, old, repl, opt_int(a, 2, "count", -1)));
  }
  if (m == "find" || m == "rfind" || m == "index" || m == "rindex" || m == "count") {
    const std::string& sub = need_str(need(a, 0, "sub", m), std::string(m) + "() argument");
    if (a.pos.size() > 1) render_error(std::string(m) + "() with start/end arguments is not supported");
    if (m == "count") {
      if (sub.empty()) return Value(int64_t(py::length(s)) + 1);
      int64_t n = 0;
      for (size_t p = s.find(sub); p != std::string::npos; p = s.find(sub, p + sub.size())) ++n;
      return Value(n);
    }
    const size_t p = (m == "find" || m == "index") ? s.find(sub) : s.rfind(sub);
    if (p == std::string::npos) {
      if (m == "index" || m == "rindex") render_error("ValueError: substring not found");
      return Value(int64_t(-1));
    }
    return Value(int64_t(py::length(std::string_view(s).substr(0, p))));
  }
  if (m == "join") {
    const ValueList items = iterate(*need(a, 0, "iterable", m));
    std::string out;
    for (size_t i = 0; i < items.size(); ++i) {
      if (!items[i].is_string())
        type_error("sequence item " + std::to_string(i) + ": expected str instance, " + items[i].type_name() + " found");
      if (i) out += s;
      out += items[i].str_ref();
      check_string_size(int64_t(out.size()));
    }
    return Value(std::move(out));
  }
  if (m == "format") return Value(str_format(r, s, a));
  if (m == "partition" || m == "rpartition") {
    const std::string& sep = need_str(need(a, 0, "sep", m), "sep");
    if (sep.empty()) render_error("ValueError: empty separator");
    const size_t p = m == "partition" ? s.find(sep) : s.rfind(sep);
    if (p == std::string::npos)
      return m == "partition" ? Value::tuple({Value(s), Value(""), Value("")}) : Value::tuple({Value(""), Value(""), Value(s)});
    return Value::tuple({Value(s.substr(0, p)), Value(sep), Value(s.substr(p + sep.size()))});
  }
  if (m == "removeprefix" || m == "removesuffix") {
    const std::string& t = need_str(need(a, 0, m == "removeprefix" ? "prefix" : "suffix", m), std::string(m) + "() argument");
    if (m == "removeprefix") return Value(s.compare(0, t.size(), t) == 0 && t.size() <= s.size() ? s.substr(t.size()) : s);
    return Value(t.size() <= s.size() && s.compare(s.size() - t.size(), t.size(), t) == 0 ? s.substr(0, s.size() - t.size()) : s);
  }
  if (m == "center" || m == "ljust" || m == "rjust" || m == "zfill") {
    const int64_t width = opt_int(a, 0, "width", 0);
    const int64_t len = int64_t(py::length(s));
    if (width <= len) return Value(s);
    std::string fill = " ";
    if (const Value* f = a.arg(1, "fillchar")) fill = need_str(f, "fillchar");
    check_string_size(width * int64_t(std::max<size_t>(1, std::min<size_t>(fill.size(), 4))));
    const int64_t marg = width - len;
    int64_t left;
    if (m == "center") left = marg / 2 + (marg & width & 1);
    else if (m == "ljust") left = 0;
    else left = marg;
    if (m == "zfill") {
      const bool sgn = !s.empty() && (s[0] == '-' || s[0] == '+');
      return Value((sgn ? s.substr(0, 1) : "") + std::string(size_t(marg), '0') + (sgn ? s.substr(1) : s));
    }
    std::string out;
    for (int64_t k = 0; k < left; ++k) out += fill;
    out += s;
    for (int64_t k = left; k < marg; ++k) out += fill;
    return Value(std::move(out));
  }
  // Predicates.
  auto all_of = [&](auto pred) {
    if (s.empty()) return false;
    for (size_t i = 0; i < s.size();)
      if (!pred(py::decode_at(s, i))) return false;
    return true;
  };
  if (m == "isdigit" || m == "isdecimal") return Value(all_of(py::is_decimal));
  if (m == "isnumeric") return Value(all_of(py::is_numeric));
  if (m == "isalpha") return Value(all_of(py::is_alpha));
  if (m == "isalnum") return Value(all_of([](char32_t c) { return py::is_alpha(c) || py::is_numeric(c); }));
  if (m == "isspace") return Value(all_of(py::is_space));
  if (m == "islower" || m == "isupper") {
    bool cased = false;
    for (size_t i = 0; i < s.size();) {
      const char32_t c = py::decode_at(s, i);
      if (m == "islower" ? py::is_cased_upper(c) : py::is_cased_lower(c)) return Value(false);
      cased = cased || py::is_cased_upper(c) || py::is_cased_lower(c);
    }
    return Value(cased);
  }
  render_error("str method '" + std::string(m) + "' is not supported");
}

// Method names that attribute lookup resolves to bound methods. The mutating dict/list methods are
// listed so that calling them reports the sandbox's refusal instead of "no attribute".
const char* const kStrMethods[] = {"upper", "lower", "casefold", "title", "capitalize", "swapcase", "strip", "lstrip",
                                   "rstrip", "split", "rsplit", "splitlines", "startswith", "endswith", "replace",
                                   "find", "rfind", "index", "rindex", "count", "join", "format", "partition",
                                   "rpartition", "removeprefix", "removesuffix", "center", "ljust", "rjust", "zfill",
                                   "isdigit", "isdecimal", "isnumeric", "isalpha", "isalnum", "isspace", "islower",
                                   "isupper"};
const char* const kDictMethods[] = {"get", "items", "keys", "values", "copy", "pop", "popitem", "setdefault", "update", "clear"};
const char* const kListMethods[] = {"index", "count", "append", "extend", "insert", "pop", "remove", "reverse", "sort", "clear", "copy"};

template <size_t N>
bool in_list(const char* const (&names)[N], std::string_view m) {
  for (const char* n : names)
    if (m == n) return true;
  return false;
}

// transformers renders in jinja2's ImmutableSandboxedEnvironment: mutating methods are refused.
[[noreturn]] void unsafe_call(const Value& obj, std::string_view m) {
  render_error("SecurityError: access to attribute '" + std::string(m) + "' of '" + obj.type_name() +
               "' object is unsafe (the template sandbox is immutable)");
}

}  // namespace

bool has_method(const Value& obj, std::string_view m) {
  switch (obj.kind()) {
    case Kind::kString: return in_list(kStrMethods, m);
    case Kind::kDict: return in_list(kDictMethods, m);
    case Kind::kList: return in_list(kListMethods, m);
    case Kind::kTuple: return m == "index" || m == "count";
    default: return false;
  }
}

Value call_method(Renderer& r, const Value& obj, std::string_view m, const CallArgs& a) {
  if (obj.is_string()) return str_method(r, obj.str_ref(), m, a);
  if (obj.is_dict()) {
    const ValueDict& d = obj.dict_ref();
    if (m == "get") {
      const Value* v = d.find(*need(a, 0, "key", m));
      if (v) return *v;
      const Value* dflt = a.arg(1, "default");
      return dflt ? *dflt : Value(nullptr);
    }
    if (m == "keys") return Value::list(iterate(obj));
    if (m == "values" || m == "items") {
      ValueList out;
      for (const auto& [k, v] : d.entries) out.push_back(m == "values" ? v : Value::tuple({k, v}));
      return Value::list(std::move(out));
    }
    if (m == "copy") return obj;
    unsafe_call(obj, m);
  }
  if (obj.is_sequence()) {
    const ValueList& items = obj.items();
    if (m == "index") {
      const Value& x = *need(a, 0, "value", m);
      for (size_t i = 0; i < items.size(); ++i)
        if (items[i] == x) return Value(int64_t(i));
      render_error("ValueError: " + x.repr() + " is not in list");
    }
    if (m == "count") {
      const Value& x = *need(a, 0, "value", m);
      return Value(int64_t(std::count(items.begin(), items.end(), x)));
    }
    if (m == "copy") return obj;
    unsafe_call(obj, m);
  }
  render_error(std::string("'") + obj.type_name() + "' object has no method '" + std::string(m) + "'");
}

// `obj.method` used as a value (e.g. passed to a macro); calling it calls the method.
Value bound_method(Renderer& r, const Value& obj, std::string_view name) {
  if (!has_method(obj, name)) return Value::undefined(std::string("'") + obj.type_name() + " object' has no attribute '" + std::string(name) + "'");
  Renderer* rp = &r;
  std::string m(name);
  return Value::function(m, [rp, obj, m](const CallArgs& a) { return call_method(*rp, obj, m, a); });
}

// ---- filters -------------------------------------------------------------------------------------

namespace {

bool opt_bool(const CallArgs& a, size_t i, std::string_view name, bool dflt) {
  const Value* v = a.arg(i, name);
  return v ? v->truthy() : dflt;
}

// jinja2's make_attrgetter: "a.b.0" looks up each part with getitem (integers as indexes).
std::vector<Value> attr_parts(const Value& attribute) {
  std::vector<Value> parts;
  if (attribute.is_integral()) return {attribute};
  const std::string s = attribute.str();
  size_t start = 0;
  for (;;) {
    const size_t dot = s.find('.', start);
    const std::string part = s.substr(start, dot == std::string::npos ? std::string::npos : dot - start);
    if (!part.empty() && part.find_first_not_of("0123456789") == std::string::npos) parts.emplace_back(int64_t(std::stoll(part)));
    else parts.emplace_back(part);
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  return parts;
}

Value get_attr_path(Renderer& r, Value item, const std::vector<Value>& parts) {
  for (const auto& p : parts) item = r.getitem(item, p);
  return item;
}

// Case-insensitive sorting and uniqueness compare lower-cased strings (jinja2's ignore_case).
Value ignore_case(const Value& v, bool case_sensitive) {
  if (!case_sensitive && v.is_string()) return Value(py::lower(v.str_ref()));
  return v;
}

// Sort keys of jinja2's sort/unique/min/max: attribute (comma-separated allowed), lower-cased.
Value sort_key(Renderer& r, const Value& item, const Value* attribute, bool case_sensitive) {
  if (!attribute || attribute->is_none()) return ignore_case(item, case_sensitive);
  if (attribute->is_string() && attribute->str_ref().find(',') != std::string::npos) {
    ValueList keys;
    for (const auto& part : py::split(attribute->str_ref(), std::string_view(","), -1))
      keys.push_back(ignore_case(get_attr_path(r, item, attr_parts(Value(part))), case_sensitive));
    return Value::tuple(std::move(keys));
  }
  return ignore_case(get_attr_path(r, item, attr_parts(*attribute)), case_sensitive);
}

// Filters: Value f(renderer, input, args), each as jinja2 3.1's filters.py defines it.
Value f_abs(Renderer&, const Value& v, const CallArgs&) {
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_number()) type_error("bad operand type for abs(): " + quoted_type(v));
  return v.is_float() ? Value(std::fabs(v.as_float())) : Value(v.as_int() < 0 ? -v.as_int() : v.as_int());
}

// attr(name): attributes only (for a dict: its methods, never its keys).
Value f_attr(Renderer& r, const Value& v, const CallArgs& a) {
  const Value* name = need(a, 0, "name", "attr");
  if (v.is_dict()) return has_method(v, name->str()) ? bound_method(r, v, name->str()) : Value::undefined("no attribute");
  return r.getattr(v, name->str());
}

Value f_capitalize(Renderer&, const Value& v, const CallArgs&) { return Value(py::capitalize(v.str())); }

Value f_center(Renderer& r, const Value& v, const CallArgs& a) {
  CallArgs ca;
  ca.pos.emplace_back(opt_int(a, 0, "width", 80));
  return str_method(r, v.str(), "center", ca);
}

Value f_length(Renderer&, const Value& v, const CallArgs&) { return Value(py_len(v)); }

// default(value='', boolean=False): replaces Undefined (and falsy values with boolean=True).
Value f_default(Renderer&, const Value& v, const CallArgs& a) {
  const Value* d = a.arg(0, "default_value");
  const bool boolean = opt_bool(a, 1, "boolean", false);
  if (v.is_undefined() || (boolean && !v.truthy())) return d ? *d : Value("");
  return v;
}

// dictsort(case_sensitive=False, by='key', reverse=False): sorted (key, value) tuples.
Value f_dictsort(Renderer&, const Value& v, const CallArgs& a) {
  if (!v.is_dict()) type_error("dictsort: expected a mapping, got " + quoted_type(v));
  const bool cs = opt_bool(a, 0, "case_sensitive", false);
  const Value* by = a.arg(1, "by");
  const bool by_value = by && by->str() == "value";
  if (by && !by_value && by->str() != "key") render_error("FilterArgumentError: You can only sort by either \"key\" or \"value\"");
  const bool reverse = opt_bool(a, 2, "reverse", false);
  ValueList items;
  for (const auto& [k, x] : v.dict_ref().entries) items.push_back(Value::tuple({k, x}));
  std::stable_sort(items.begin(), items.end(), [&](const Value& x, const Value& y) {
    const Value kx = ignore_case(x.items()[by_value ? 1 : 0], cs), ky = ignore_case(y.items()[by_value ? 1 : 0], cs);
    return reverse ? py_less(ky, kx) : py_less(kx, ky);
  });
  return Value::list(std::move(items));
}

// markupsafe.escape: & < > " ' as entities.
std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&#34;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

Value f_escape(Renderer&, const Value& v, const CallArgs&) { return Value(html_escape(v.str())); }

// first / last: the first / last item; an empty sequence gives Undefined.
Value f_first(Renderer&, const Value& v, const CallArgs&) {
  const ValueList items = iterate(v);
  return items.empty() ? Value::undefined("No first item, sequence was empty.") : items.front();
}

Value f_last(Renderer&, const Value& v, const CallArgs&) {
  const ValueList items = iterate(v);
  return items.empty() ? Value::undefined("No last item, sequence was empty.") : items.back();
}

// Python float(str): surrounding whitespace, underscores, inf/nan accepted.
std::optional<double> parse_py_float(std::string_view s0) {
  std::string s(py::strip(s0, std::nullopt, true, true));
  s.erase(std::remove(s.begin(), s.end(), '_'), s.end());
  if (s.empty()) return std::nullopt;
  std::string l = py::lower(s);
  const bool neg = l[0] == '-';
  const std::string body = (l[0] == '-' || l[0] == '+') ? l.substr(1) : l;
  if (body == "inf" || body == "infinity") return neg ? -INFINITY : INFINITY;
  if (body == "nan") return NAN;
  if (body.find_first_not_of("0123456789.e+-") != std::string::npos) return std::nullopt;
  char* end = nullptr;
  const double d = std::strtod(s.c_str(), &end);
  if (end != s.c_str() + s.size()) return std::nullopt;
  return d;
}

// Python int(str, base): sign, whitespace, underscores and a matching 0x/0o/0b prefix.
std::optional<int64_t> parse_py_int(std::string_view s0, int base) {
  std::string s(py::strip(s0, std::nullopt, true, true));
  if (s.empty()) return std::nullopt;
  bool neg = false;
  size_t i = 0;
  if (s[0] == '-' || s[0] == '+') neg = s[0] == '-', i = 1;
  if (i + 1 < s.size() && s[i] == '0') {
    const char p = static_cast<char>(s[i + 1] | 0x20);
    if ((p == 'x' && base == 16) || (p == 'o' && base == 8) || (p == 'b' && base == 2)) i += 2;
  }
  std::string digits;
  for (; i < s.size(); ++i) {
    if (s[i] == '_' && !digits.empty() && i + 1 < s.size() && s[i + 1] != '_') continue;
    digits += s[i];
  }
  if (digits.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(digits.c_str(), &end, base);
  if (end != digits.c_str() + digits.size() || errno == ERANGE || digits[0] == '-' || digits[0] == '+') return std::nullopt;
  return neg ? -v : v;
}

// float(default=0.0) and int(default=0, base=10): Python's conversions, `default` when they fail
// (int also tries float(): '1.9'|int is 1).
Value f_float(Renderer&, const Value& v, const CallArgs& a) {
  const Value* d = a.arg(0, "default");
  const Value dflt = d ? *d : Value(0.0);
  if (v.is_undefined()) undefined_error(v);
  if (v.is_number()) return Value(v.as_float());
  if (v.is_string())
    if (auto f = parse_py_float(v.str_ref())) return Value(*f);
  return dflt;
}

Value f_int(Renderer&, const Value& v, const CallArgs& a) {
  const Value* d = a.arg(0, "default");
  const Value dflt = d ? *d : Value(int64_t(0));
  const int base = int(opt_int(a, 1, "base", 10));
  if (v.is_undefined()) undefined_error(v);
  if (v.is_integral()) return Value(v.as_int());
  if (v.is_float()) {
    if (!std::isfinite(v.as_float())) render_error("OverflowError: cannot convert float infinity or NaN to integer");
    return Value(int64_t(std::trunc(v.as_float())));
  }
  if (v.is_string()) {
    if (auto i = parse_py_int(v.str_ref(), base)) return Value(*i);
    if (auto f = parse_py_float(v.str_ref()); f && std::isfinite(*f)) return Value(int64_t(std::trunc(*f)));
  }
  return dflt;
}

// format(*args, **kwargs): printf-style formatting of the input.
Value f_format(Renderer&, const Value& v, const CallArgs& a) {
  if (!a.pos.empty() && !a.kw.empty()) render_error("FilterArgumentError: can't handle positional and keyword arguments at the same time");
  if (!a.kw.empty()) {
    ValueDict d;
    for (const auto& [k, x] : a.kw) d.set(Value(k), x);
    return Value(percent_format(v.str(), Value::dict(std::move(d))));
  }
  return Value(percent_format(v.str(), Value::tuple(a.pos)));
}

// indent(width=4, first=False, blank=False), including jinja2's trailing-newline handling.
Value f_indent(Renderer&, const Value& v, const CallArgs& a) {
  const Value* w = a.arg(0, "width");
  if (w && !w->is_string()) check_string_size(w->as_int());
  std::string ind = w && w->is_string() ? w->str_ref() : std::string(size_t(std::max<int64_t>(0, w ? w->as_int() : 4)), ' ');
  const bool first = opt_bool(a, 1, "first", false);
  const bool blank = opt_bool(a, 2, "blank", false);
  const std::vector<std::string> lines = py::splitlines(v.str() + "\n", false);
  std::string rv;
  if (blank) {
    for (size_t i = 0; i < lines.size(); ++i) {
      rv += (i ? "\n" + ind : "") + lines[i];
      check_string_size(int64_t(rv.size()));
    }
  } else if (!lines.empty()) {
    rv = lines[0];
    for (size_t i = 1; i < lines.size(); ++i) {
      rv += "\n" + (lines[i].empty() ? lines[i] : ind + lines[i]);
      check_string_size(int64_t(rv.size()));
    }
  }
  return Value(first ? ind + rv : rv);
}

// items: a mapping's (key, value) pairs; Undefined gives none.
Value f_items(Renderer&, const Value& v, const CallArgs&) {
  if (v.is_undefined()) return Value::list({});
  if (!v.is_dict()) type_error("Can only get item pairs from a mapping.");
  ValueList out;
  for (const auto& [k, x] : v.dict_ref().entries) out.push_back(Value::tuple({k, x}));
  return Value::list(std::move(out));
}

// join(d='', attribute=None): str() of each item.
Value f_join(Renderer& r, const Value& v, const CallArgs& a) {
  const Value* d = a.arg(0, "d");
  const std::string sep = d ? d->str() : "";
  const Value* attribute = a.arg(1, "attribute");
  std::string out;
  const ValueList items = iterate(v);
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    const Value x = attribute && !attribute->is_none() ? get_attr_path(r, items[i], attr_parts(*attribute)) : items[i];
    out += x.str();
    check_string_size(int64_t(out.size()));
  }
  return Value(std::move(out));
}

Value f_list(Renderer&, const Value& v, const CallArgs&) { return Value::list(iterate(v)); }
Value f_lower(Renderer&, const Value& v, const CallArgs&) { return Value(py::lower(v.str())); }
Value f_upper(Renderer&, const Value& v, const CallArgs&) { return Value(py::upper(v.str())); }

// map('filter', *args) or map(attribute='a', default=…). A falsy input maps to nothing
// (jinja2 tests `if value:` before iterating).
Value f_map(Renderer& r, const Value& v, const CallArgs& a) {
  if (!v.truthy()) return Value::list({});  // jinja2: `if value: for item in value: …`
  const ValueList items = iterate(v);
  ValueList out;
  out.reserve(items.size());
  if (a.pos.empty()) {
    const Value* attribute = a.kwarg("attribute");
    if (!attribute) type_error("map() needs a filter name or attribute=");
    const Value* dflt = a.kwarg("default");
    const auto parts = attr_parts(*attribute);
    for (const auto& x : items) {
      Value y = get_attr_path(r, x, parts);
      out.push_back(y.is_undefined() && dflt ? *dflt : y);
    }
    return Value::list(std::move(out));
  }
  const std::string name = a.pos[0].str();
  CallArgs rest;
  rest.pos.assign(a.pos.begin() + 1, a.pos.end());
  rest.kw = a.kw;
  for (const auto& x : items) out.push_back(r.apply_filter(name, x, rest));
  return Value::list(std::move(out));
}

// min/max(case_sensitive=False, attribute=None); empty gives Undefined.
Value min_max(Renderer& r, const Value& v, const CallArgs& a, bool want_max) {
  const bool cs = opt_bool(a, 0, "case_sensitive", false);
  const Value* attribute = a.arg(1, "attribute");
  const ValueList items = iterate(v);
  if (items.empty()) return Value::undefined("No aggregated item, sequence was empty.");
  size_t best = 0;
  Value best_key = sort_key(r, items[0], attribute, cs);
  for (size_t i = 1; i < items.size(); ++i) {
    Value k = sort_key(r, items[i], attribute, cs);
    if (want_max ? py_less(best_key, k) : py_less(k, best_key)) best = i, best_key = std::move(k);
  }
  return items[best];
}
Value f_max(Renderer& r, const Value& v, const CallArgs& a) { return min_max(r, v, a, true); }
Value f_min(Renderer& r, const Value& v, const CallArgs& a) { return min_max(r, v, a, false); }

// select/reject(test, *args) and selectattr/rejectattr(attr, test, *args); without a test the
// value's truthiness decides.
Value select_impl(Renderer& r, const Value& v, const CallArgs& a, bool by_attr, bool keep) {
  if (!v.truthy()) return Value::list({});  // jinja2: `if seq: for item in seq: …`
  const ValueList items = iterate(v);
  size_t i = 0;
  std::vector<Value> parts;
  if (by_attr) {
    if (a.pos.empty()) type_error("selectattr/rejectattr need an attribute name");
    parts = attr_parts(a.pos[0]);
    i = 1;
  }
  std::string test;
  CallArgs targs;
  if (i < a.pos.size()) {
    test = a.pos[i].str();
    targs.pos.assign(a.pos.begin() + long(i) + 1, a.pos.end());
    targs.kw = a.kw;
  }
  ValueList out;
  for (const auto& x : items) {
    const Value y = by_attr ? get_attr_path(r, x, parts) : x;
    const bool t = test.empty() ? y.truthy() : r.apply_test(test, y, targs);
    if (t == keep) out.push_back(x);
  }
  return Value::list(std::move(out));
}
Value f_select(Renderer& r, const Value& v, const CallArgs& a) { return select_impl(r, v, a, false, true); }
Value f_reject(Renderer& r, const Value& v, const CallArgs& a) { return select_impl(r, v, a, false, false); }
Value f_selectattr(Renderer& r, const Value& v, const CallArgs& a) { return select_impl(r, v, a, true, true); }
Value f_rejectattr(Renderer& r, const Value& v, const CallArgs& a) { return select_impl(r, v, a, true, false); }

// replace(old, new, count=None), on str(input).
Value f_replace(Renderer&, const Value& v, const CallArgs& a) {
  const Value* old = need(a, 0, "old", "replace");
  const Value* repl = need(a, 1, "new", "replace");
  return Value(str_replace(v.str(), old->str(), repl->str(), opt_int(a, 2, "count", -1)));
}

// reverse: a reversed string, or the items in reverse order.
Value f_reverse(Renderer&, const Value& v, const CallArgs&) {
  if (v.is_string()) return py_slice(v, Value(nullptr), Value(nullptr), Value(int64_t(-1)));
  ValueList items = iterate(v);
  std::reverse(items.begin(), items.end());
  return Value::list(std::move(items));
}

// round(precision=0, method='common'): 'common' is Python's round() (half to even on exact
// ties; an int stays an int), 'ceil'/'floor' always give floats.
Value f_round(Renderer&, const Value& v, const CallArgs& a) {
  const int64_t prec = opt_int(a, 0, "precision", 0);
  const Value* m = a.arg(1, "method");
  const std::string method = m ? m->str() : "common";
  if (method != "common" && method != "ceil" && method != "floor")
    render_error("FilterArgumentError: method must be common, ceil or floor");
  if (v.is_undefined()) undefined_error(v);
  if (!v.is_number()) type_error("type " + std::string(v.type_name()) + " doesn't define __round__ method");
  if (method == "common") {
    if (v.is_integral()) {  // round(int, n) stays an int
      if (prec >= 0) return Value(v.as_int());
      const int64_t p = int64_t(std::llround(std::pow(10.0, double(-prec))));
      const int64_t x = v.as_int();
      int64_t q = x / p, rem = x % p;
      if (rem < 0) rem += p, --q;
      if (2 * rem > p || (2 * rem == p && (q & 1))) ++q;
      return Value(q * p);
    }
    const double d = v.as_float();
    if (!std::isfinite(d)) return Value(d);
    if (prec >= 0) {  // correctly rounded, half to even on exact ties (CPython's float round)
      char buf[512];
      std::snprintf(buf, sizeof buf, "%.*f", int(std::min<int64_t>(prec, 300)), d);
      return Value(std::strtod(buf, nullptr));
    }
    const double p = std::pow(10.0, double(-prec));
    return Value(std::nearbyint(d / p) * p);
  }
  const double p = std::pow(10.0, double(prec));
  const double x = v.as_float() * p;
  return Value((method == "ceil" ? std::ceil(x) : std::floor(x)) / p);
}

// No Markup type here: safe is str() (templates run without autoescape).
Value f_safe(Renderer&, const Value& v, const CallArgs&) { return v.is_string() ? v : Value(v.str()); }

// sort(reverse=False, case_sensitive=False, attribute=None): stable, like Python's sorted().
Value f_sort(Renderer& r, const Value& v, const CallArgs& a) {
  const bool reverse = opt_bool(a, 0, "reverse", false);
  const bool cs = opt_bool(a, 1, "case_sensitive", false);
  const Value* attribute = a.arg(2, "attribute");
  ValueList items = iterate(v);
  std::vector<std::pair<Value, size_t>> keyed;
  for (size_t i = 0; i < items.size(); ++i) keyed.emplace_back(sort_key(r, items[i], attribute, cs), i);
  std::stable_sort(keyed.begin(), keyed.end(), [&](const auto& x, const auto& y) {
    return reverse ? py_less(y.first, x.first) : py_less(x.first, y.first);
  });
  ValueList out;
  for (const auto& [k, i] : keyed) out.push_back(items[i]);
  return Value::list(std::move(out));
}

Value f_string(Renderer&, const Value& v, const CallArgs&) { return Value(v.str()); }

// sum(attribute=None, start=0) with Python's + (so lists concatenate).
Value f_sum(Renderer& r, const Value& v, const CallArgs& a) {
  const Value* attribute = a.arg(0, "attribute");
  const Value* start = a.arg(1, "start");
  Value acc = start ? *start : Value(int64_t(0));
  for (const auto& x : iterate(v))
    acc = py_binary(ExprOp::kAdd, acc, attribute && !attribute->is_none() ? get_attr_path(r, x, attr_parts(*attribute)) : x);
  return acc;
}

// jinja2's title filter: upper-cases the first character of every run split by [-\s({\[<]+.
Value f_title(Renderer&, const Value& v, const CallArgs&) {
  const std::string s = v.str();
  std::string out;
  bool start = true;
  for (size_t i = 0; i < s.size();) {
    const size_t at = i;
    const char32_t c = py::decode_at(s, i);
    const bool sep = py::is_space(c) || c == '-' || c == '(' || c == '{' || c == '[' || c == '<';
    const std::string_view ch = std::string_view(s).substr(at, i - at);
    if (sep) {
      out += ch;
      start = true;
    } else {
      out += start ? py::upper(ch) : py::lower(ch);
      start = false;
    }
  }
  return Value(std::move(out));
}

// transformers' tojson: json.dumps(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False).
Value f_tojson(Renderer&, const Value& v, const CallArgs& a) {
  JsonFormat fmt;
  fmt.ensure_ascii = opt_bool(a, 0, "ensure_ascii", false);
  const Value* indent = a.arg(1, "indent");
  if (indent && !indent->is_none()) {
    if (indent->is_string()) fmt.indent = indent->str_ref();
    else if (indent->is_integral()) {
      check_string_size(indent->as_int());
      fmt.indent = std::string(size_t(std::max<int64_t>(0, indent->as_int())), ' ');
    }
    else type_error("indent must be an int or a str");
    fmt.item_sep = ",";
  }
  if (const Value* sep = a.arg(2, "separators"); sep && !sep->is_none()) {
    if (!sep->is_sequence() || sep->items().size() != 2) render_error("ValueError: separators must be an (item, key) pair");
    fmt.item_sep = sep->items()[0].str();
    fmt.key_sep = sep->items()[1].str();
  }
  fmt.sort_keys = opt_bool(a, 3, "sort_keys", false);
  return Value(to_json(v, fmt));
}

// trim(chars=None): str.strip.
Value f_trim(Renderer&, const Value& v, const CallArgs& a) {
  const Value* c = a.arg(0, "chars");
  std::optional<std::string_view> chars;
  std::string cs;
  if (c && !c->is_none()) cs = c->str(), chars = cs;
  const std::string s = v.str();
  return Value(py::strip(s, chars, true, true));
}

// unique(case_sensitive=False, attribute=None): first occurrences, in order.
Value f_unique(Renderer& r, const Value& v, const CallArgs& a) {
  const bool cs = opt_bool(a, 0, "case_sensitive", false);
  const Value* attribute = a.arg(1, "attribute");
  ValueList seen, out;
  for (const auto& x : iterate(v)) {
    Value k = sort_key(r, x, attribute, cs);
    if (std::find(seen.begin(), seen.end(), k) != seen.end()) continue;
    seen.push_back(std::move(k));
    out.push_back(x);
  }
  return Value::list(std::move(out));
}

// wordcount: runs of \w characters (letters, digits, underscore).
Value f_wordcount(Renderer&, const Value& v, const CallArgs&) {
  const std::string s = v.str();
  int64_t n = 0;
  bool in_word = false;
  for (size_t i = 0; i < s.size();) {
    const char32_t c = py::decode_at(s, i);
    const bool w = c == '_' || py::is_alpha(c) || py::is_numeric(c);
    if (w && !in_word) ++n;
    in_word = w;
  }
  return Value(n);
}

// The filter table (names as in jinja2, aliases included).
const std::unordered_map<std::string_view, FilterFn>& filters() {
  static const std::unordered_map<std::string_view, FilterFn> m = {
      {"abs", f_abs},         {"attr", f_attr},       {"capitalize", f_capitalize}, {"center", f_center},
      {"count", f_length},    {"d", f_default},       {"default", f_default},       {"dictsort", f_dictsort},
      {"e", f_escape},        {"escape", f_escape},   {"forceescape", f_escape},    {"first", f_first},
      {"float", f_float},     {"format", f_format},   {"indent", f_indent},         {"int", f_int},
      {"items", f_items},     {"join", f_join},       {"last", f_last},             {"length", f_length},
      {"list", f_list},       {"lower", f_lower},     {"map", f_map},               {"max", f_max},
      {"min", f_min},         {"reject", f_reject},   {"rejectattr", f_rejectattr}, {"replace", f_replace},
      {"reverse", f_reverse}, {"round", f_round},     {"safe", f_safe},             {"select", f_select},
      {"selectattr", f_selectattr}, {"sort", f_sort}, {"string", f_string},         {"sum", f_sum},
      {"title", f_title},     {"tojson", f_tojson},   {"trim", f_trim},             {"unique", f_unique},
      {"upper", f_upper},     {"wordcount", f_wordcount},
  };
  return m;
}

// ---- tests ---------------------------------------------------------------------------------------

// Tests: bool f(renderer, input, args), as jinja2 3.1's tests.py defines them.
const Value& arg0(const CallArgs& a, std::string_view test) {
  if (a.pos.empty()) type_error("test '" + std::string(test) + "' needs an argument");
  return a.pos[0];
}

bool t_defined(Renderer&, const Value& v, const CallArgs&) { return !v.is_undefined(); }
bool t_undefined(Renderer&, const Value& v, const CallArgs&) { return v.is_undefined(); }
bool t_none(Renderer&, const Value& v, const CallArgs&) { return v.is_none(); }
bool t_boolean(Renderer&, const Value& v, const CallArgs&) { return v.is_bool(); }
bool t_false(Renderer&, const Value& v, const CallArgs&) { return v.is_bool() && !v.as_bool(); }
bool t_true(Renderer&, const Value& v, const CallArgs&) { return v.is_bool() && v.as_bool(); }
bool t_integer(Renderer&, const Value& v, const CallArgs&) { return v.is_int(); }
bool t_float(Renderer&, const Value& v, const CallArgs&) { return v.is_float(); }
bool t_number(Renderer&, const Value& v, const CallArgs&) { return v.is_number(); }
bool t_string(Renderer&, const Value& v, const CallArgs&) { return v.is_string(); }
bool t_mapping(Renderer&, const Value& v, const CallArgs&) { return v.is_dict(); }
// iterable/sequence: what has __iter__ / __len__+__getitem__ in Python; jinja2's Undefined has both.
bool t_iterable(Renderer&, const Value& v, const CallArgs&) {
  return v.is_undefined() || v.is_string() || v.is_sequence() || v.is_dict();
}
// Undefined defines __call__ (to raise), so callable() is true for it.
bool t_callable(Renderer&, const Value& v, const CallArgs&) { return v.is_function() || v.is_undefined(); }
bool t_escaped(Renderer&, const Value&, const CallArgs&) { return false; }
// odd/even/divisibleby use Python's %, so they also work (and give Python's answers) for floats.
bool t_odd(Renderer&, const Value& v, const CallArgs&) { return py_binary(ExprOp::kMod, v, Value(2)) == Value(1); }
bool t_even(Renderer&, const Value& v, const CallArgs&) { return py_binary(ExprOp::kMod, v, Value(2)) == Value(0); }
bool t_divisibleby(Renderer&, const Value& v, const CallArgs& a) {
  return py_binary(ExprOp::kMod, v, arg0(a, "divisibleby")) == Value(int64_t(0));
}
bool t_eq(Renderer&, const Value& v, const CallArgs& a) { return v == arg0(a, "eq"); }
bool t_ne(Renderer&, const Value& v, const CallArgs& a) { return v != arg0(a, "ne"); }
bool t_lt(Renderer&, const Value& v, const CallArgs& a) { return py_less(v, arg0(a, "lt")); }
bool t_gt(Renderer&, const Value& v, const CallArgs& a) { return py_less(arg0(a, "gt"), v); }
bool t_le(Renderer&, const Value& v, const CallArgs& a) { return !py_less(arg0(a, "le"), v); }
bool t_ge(Renderer&, const Value& v, const CallArgs& a) { return !py_less(v, arg0(a, "ge")); }
bool t_in(Renderer&, const Value& v, const CallArgs& a) { return py_contains(arg0(a, "in"), v); }
bool t_lower(Renderer& r, const Value& v, const CallArgs&) { return str_method(r, v.str(), "islower", {}).as_bool(); }
bool t_upper(Renderer& r, const Value& v, const CallArgs&) { return str_method(r, v.str(), "isupper", {}).as_bool(); }
// sameas is Python's `is`: singletons and CPython's cached small ints compare equal; containers by
// identity.
bool t_sameas(Renderer&, const Value& v, const CallArgs& a) {
  const Value& o = arg0(a, "sameas");
  if (v.kind() != o.kind()) return false;
  switch (v.kind()) {
    case Kind::kNone: case Kind::kUndefined: return true;
    case Kind::kBool: return v.as_bool() == o.as_bool();
    case Kind::kInt: return v.as_int() == o.as_int() && v.as_int() >= -5 && v.as_int() <= 256;  // CPython's small ints
    case Kind::kString: return v.str_ref() == o.str_ref() && &v.str_ref() == &o.str_ref();
    case Kind::kList: case Kind::kTuple: return &v.items() == &o.items();
    case Kind::kDict: return &v.dict_ref() == &o.dict_ref();
    default: return v == o;
  }
}
bool t_sequence(Renderer&, const Value& v, const CallArgs&) {
  return v.is_undefined() || v.is_string() || v.is_sequence() || v.is_dict();
}
bool t_filter(Renderer&, const Value& v, const CallArgs&) { return v.is_string() && find_filter(v.str_ref()); }
bool t_test(Renderer&, const Value& v, const CallArgs&) { return v.is_string() && find_test(v.str_ref()); }

// The test table (names as in jinja2, operator aliases included).
const std::unordered_map<std::string_view, TestFn>& tests() {
  static const std::unordered_map<std::string_view, TestFn> m = {
      {"boolean", t_boolean},   {"callable", t_callable}, {"defined", t_defined},   {"divisibleby", t_divisibleby},
      {"eq", t_eq},             {"equalto", t_eq},        {"==", t_eq},             {"escaped", t_escaped},
      {"even", t_even},         {"false", t_false},       {"filter", t_filter},     {"float", t_float},
      {"ge", t_ge},             {">=", t_ge},             {"gt", t_gt},             {"greaterthan", t_gt},
      {">", t_gt},              {"in", t_in},             {"integer", t_integer},   {"iterable", t_iterable},
      {"le", t_le},             {"<=", t_le},             {"lower", t_lower},       {"lt", t_lt},
      {"lessthan", t_lt},       {"<", t_lt},              {"mapping", t_mapping},   {"ne", t_ne},
      {"!=", t_ne},             {"none", t_none},         {"number", t_number},     {"odd", t_odd},
      {"sameas", t_sameas},     {"sequence", t_sequence}, {"string", t_string},     {"test", t_test},
      {"true", t_true},         {"undefined", t_undefined}, {"upper", t_upper},
  };
  return m;
}

}  // namespace

FilterFn find_filter(std::string_view name) {
  const auto& m = filters();
  const auto it = m.find(name);
  return it == m.end() ? nullptr : it->second;
}

TestFn find_test(std::string_view name) {
  const auto& m = tests();
  const auto it = m.find(name);
  return it == m.end() ? nullptr : it->second;
}

}  // namespace infer::jinja
