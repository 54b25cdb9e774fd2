// jinja_eval.cpp — executes a parsed template (jinja_ast.h) the way jinja2's generated code does.
//
// Scoping follows jinja2: the top level is one scope (render variables underneath it); each for-loop
// iteration, macro call, with/call/filter block and `{% set %}…{% endset %}` body is a child scope,
// so `{% set %}` inside a loop is gone after the iteration (hence namespace()); if/elif/else share
// the enclosing scope. Errors carry the line of the innermost statement that raised them.
#include <chrono>
#include <cmath>

#include "jinja_pystr.h"
#include "jinja_render.h"

namespace infer::jinja {

std::shared_ptr<const Program> parse_program(std::string_view source, const Options& opts);  // jinja_parse.cpp

namespace {
constexpr int kMaxDepth = 200;  // macro/caller recursion limit (Python's would be ~1000 frames)
constexpr int64_t kMaxRange = 100000;  // jinja2 sandbox MAX_RANGE
}  // namespace

// Frames hold few variables; a linear scan beats hashing here.
Value* Frame::find_local(std::string_view name) {
  for (auto& [k, v] : vars)
    if (k == name) return &v;
  return nullptr;
}

void Frame::set(std::string_view name, Value v) {
  if (Value* p = find_local(name)) *p = std::move(v);
  else vars.emplace_back(std::string(name), std::move(v));
}

// Frames live in a deque for the whole render: macros and caller() keep pointers to the frame
// they were defined in, even after that loop iteration or block has ended.
Frame& Renderer::new_frame(Frame* parent) {
  frames_.emplace_back();
  frames_.back().parent = parent;
  return frames_.back();
}

// The render variables form the outermost frame; the template's top level is the frame above it,
// so a top-level {% set %} shadows a variable without changing the caller's values.
std::string Renderer::render(const ValueDict& vars) {
  Frame& context = new_frame(nullptr);
  for (const auto& [k, v] : vars.entries)
    if (k.is_string()) context.set(k.str_ref(), v);
  Frame& top = new_frame(&context);
  std::string out;
  exec(prog_.body, top, out);
  return out;
}

Renderer::Flow Renderer::exec(const Body& body, Frame& f, std::string& out) {
  for (const auto& s : body) {
    const Flow fl = exec_stmt(*s, f, out);
    if (fl != Flow::kNormal) return fl;
  }
  return Flow::kNormal;
}

// Executes one statement. A TemplateError without a line gets this statement's line on the way out,
// so errors name the innermost statement that failed.
Renderer::Flow Renderer::exec_stmt(const Stmt& s, Frame& f, std::string& out) {
  try {
    step();
    switch (s.kind) {
      case StmtKind::kData:
        out += s.text;
        check_string_size(int64_t(out.size()));
        return Flow::kNormal;
      case StmtKind::kOutput: {
        const Value v = eval(*s.expr, f);
        if (v.is_string()) out += v.str_ref();
        else out += v.str();
        check_string_size(int64_t(out.size()));
        return Flow::kNormal;
      }
      case StmtKind::kIf:  // an elif is a kIf alone in else_body
        return exec(eval(*s.expr, f).truthy() ? s.body : s.else_body, f, out);
      case StmtKind::kFor: return exec_for(s, f, out);
      case StmtKind::kSet: assign(*s.target, eval(*s.expr, f), f); return Flow::kNormal;
      case StmtKind::kSetBlock: {
        Frame& inner = new_frame(&f);
        std::string body;
        exec(s.body, inner, body);
        Value v(std::move(body));
        if (s.cond) v = eval_filter(*s.cond, f, &v);
        assign(*s.target, v, f);
        return Flow::kNormal;
      }
      case StmtKind::kMacro: f.set(s.text, make_macro(s, f)); return Flow::kNormal;
      case StmtKind::kCallBlock: {
        // {% call(params) macro(args) %}body{% endcall %}: the macro receives `caller`, and
        // caller() renders the block body in a scope under the call site, with its own parameters.
        const Stmt* def = &s;
        Frame* site = &f;
        pinned_ = frames_.size();
        Value caller = Value::function("caller", [this, def, site](const CallArgs& a) -> Value {
          if (++depth_ > kMaxDepth) render_error("RecursionError: macro calls nested too deeply");
          const size_t mark = frames_.size();
          Frame& cf = new_frame(site);
          for (size_t i = 0; i < def->params.size(); ++i) {
            const Value* v = a.arg(i, def->params[i]);
            const size_t first_default = def->params.size() - def->defaults.size();
            if (v) cf.set(def->params[i], *v);
            else if (i >= first_default) cf.set(def->params[i], eval(*def->defaults[i - first_default], cf));
            else cf.set(def->params[i], Value::undefined("parameter '" + def->params[i] + "' was not provided"));
          }
          std::string body;
          exec(def->body, cf, body);
          --depth_;
          if (pinned_ <= mark) frames_.resize(mark);  // the call's scopes, unless a macro made inside holds them
          return Value(std::move(body));
        });
        const Value v = eval_call(*s.expr, f, &caller);
        out += v.str();
        return Flow::kNormal;
      }
      case StmtKind::kFilterBlock: {
        Frame& inner = new_frame(&f);
        std::string body;
        exec(s.body, inner, body);
        const Value in(std::move(body));
        out += eval_filter(*s.expr, f, &in).str();
        return Flow::kNormal;
      }
      case StmtKind::kWith: {  // values are evaluated outside, then bound in a new scope
        std::vector<Value> vals;
        for (const auto& d : s.defaults) vals.push_back(eval(*d, f));
        Frame& inner = new_frame(&f);
        for (size_t i = 0; i < s.params.size(); ++i) inner.set(s.params[i], vals[i]);
        exec(s.body, inner, out);
        return Flow::kNormal;
      }
      case StmtKind::kScope: {  // {% generation %} (and print lists): a body in its own scope
        Frame& inner = new_frame(&f);
        exec(s.body, inner, out);
        return Flow::kNormal;
      }
      case StmtKind::kBreak: return Flow::kBreak;
      case StmtKind::kContinue: return Flow::kContinue;
    }
  } catch (TemplateError& e) {
    if (e.line == 0) e.line = s.line;
    throw;
  }
  return Flow::kNormal;
}

// A for loop: the iterable is materialized (jinja2 needs the length for loop.last/length), the
// `if` filter applied first, then each iteration runs in a fresh frame with the target and `loop`.
Renderer::Flow Renderer::exec_for(const Stmt& s, Frame& f, std::string& out) {
  ValueList items = iterate(eval(*s.expr, f));
  if (s.cond) {  // `for x in xs if cond`: filtered before the loop (loop.length counts the kept ones)
    ValueList kept;
    for (auto& it : items) {
      step();
      const size_t mark = frames_.size();
      Frame& probe = new_frame(&f);
      assign(*s.target, it, probe);
      if (eval(*s.cond, probe).truthy()) kept.push_back(std::move(it));
      if (pinned_ <= mark) frames_.resize(mark);
    }
    items = std::move(kept);
  }
  if (items.empty()) return exec(s.else_body, f, out);
  const int64_t n = int64_t(items.size());
  // The loop object's keys and methods are made once per loop (an iteration then costs a few allocations, not
  // dozens). As in jinja2, whose LoopContext is one object advanced by the loop, cycle() reads the current index.
  static const Value kKeys[] = {Value("index"), Value("index0"), Value("revindex"), Value("revindex0"), Value("first"),
                                Value("last"), Value("length"), Value("depth"), Value("depth0"), Value("previtem"),
                                Value("nextitem"), Value("cycle"), Value("changed")};
  auto index0 = std::make_shared<int64_t>(0);
  const Value cycle = Value::function("cycle", [index0](const CallArgs& c) -> Value {
    if (c.pos.empty()) render_error("TypeError: no items for cycling given");
    return c.pos[size_t(*index0) % c.pos.size()];
  });
  auto changed_last = std::make_shared<std::optional<ValueList>>();
  const Value changed = Value::function("changed", [changed_last](const CallArgs& c) -> Value {
    if (*changed_last && **changed_last == c.pos) return Value(false);
    *changed_last = c.pos;
    return Value(true);
  });
  for (int64_t i = 0; i < n; ++i) {
    step();
    // The iteration's scopes are dropped when it ends, unless a macro or caller() made since may point into them.
    const size_t mark = frames_.size();
    Frame& iter = new_frame(&f);
    assign(*s.target, items[size_t(i)], iter);
    *index0 = i;
    auto loop = std::make_shared<Namespace>();
    loop->is_loop = true;
    ValueDict& a = loop->attrs;
    a.entries.reserve(13);
    const Value vals[] = {Value(i + 1), Value(i), Value(n - i), Value(n - i - 1), Value(i == 0), Value(i == n - 1),
                          Value(n), Value(1), Value(0),
                          i > 0 ? items[size_t(i - 1)] : Value::undefined("there is no previous item"),
                          i + 1 < n ? items[size_t(i + 1)] : Value::undefined("there is no next item"), cycle, changed};
    for (size_t k = 0; k < 13; ++k) a.entries.emplace_back(kKeys[k], vals[k]);
    iter.set("loop", Value::ns(std::move(loop)));
    const Flow fl = exec(s.body, iter, out);
    if (pinned_ <= mark) frames_.resize(mark);
    if (fl == Flow::kBreak) break;
  }
  return Flow::kNormal;
}

// A macro is a function value closing over the frame it was defined in. Arguments bind by
// position, then keyword, then default (evaluated at call time); a missing one is Undefined.
// Extra arguments are a TypeError unless the body reads varargs / kwargs, as in jinja2.
Value Renderer::make_macro(const Stmt& s, Frame& f) {
  const Stmt* def = &s;
  Frame* closure = &f;
  pinned_ = frames_.size();
  Value fn = Value::function(s.text, [this, def, closure](const CallArgs& a) -> Value {
    if (++depth_ > kMaxDepth) render_error("RecursionError: macro calls nested too deeply");
    const size_t mark = frames_.size();
    Frame& mf = new_frame(closure);
    const size_t np = def->params.size();
    const size_t first_default = np - def->defaults.size();
    for (const auto& [k, v] : a.kw) {
      if (k == "caller") continue;
      for (size_t i = 0; i < np && i < a.pos.size(); ++i)
        if (def->params[i] == k)
          render_error("TypeError: macro '" + def->text + "' got multiple values for argument '" + k + "'");
    }
    if (a.pos.size() > np && !def->uses_varargs)
      render_error("TypeError: macro '" + def->text + "' takes not more than " + std::to_string(np) + " argument(s)");
    for (size_t i = 0; i < np; ++i) {
      if (const Value* v = a.arg(i, def->params[i])) mf.set(def->params[i], *v);
      else if (i >= first_default) mf.set(def->params[i], eval(*def->defaults[i - first_default], mf));
      else mf.set(def->params[i], Value::undefined("parameter '" + def->params[i] + "' was not provided"));
    }
    ValueList extra;
    for (size_t i = np; i < a.pos.size(); ++i) extra.push_back(a.pos[i]);
    mf.set("varargs", Value::tuple(std::move(extra)));
    ValueDict kwargs;
    for (const auto& [k, v] : a.kw) {
      if (k == "caller") {
        mf.set("caller", v);
        continue;
      }
      bool is_param = false;
      for (const auto& p : def->params) is_param = is_param || p == k;
      if (is_param) continue;
      if (!def->uses_kwargs) render_error("TypeError: macro '" + def->text + "' takes no keyword argument '" + k + "'");
      kwargs.set(Value(k), v);
    }
    mf.set("kwargs", Value::dict(std::move(kwargs)));
    std::string body;
    exec(def->body, mf, body);
    --depth_;
    if (pinned_ <= mark) frames_.resize(mark);  // the call's scopes, unless a macro made inside holds them
    return Value(std::move(body));
  }, /*is_macro=*/true);
  return fn;
}

// {% set %} targets: a name (current frame), a tuple (unpacking an iterable of the same length),
// or ns.attr (only on a namespace() object).
void Renderer::assign(const Expr& target, const Value& v, Frame& f) {
  switch (target.op) {
    case ExprOp::kName: f.set(target.name, v); return;
    case ExprOp::kTuple: {
      const ValueList items = iterate(v);
      const size_t want = target.args.size();
      if (items.size() < want)
        render_error("ValueError: not enough values to unpack (expected " + std::to_string(want) + ", got " +
                     std::to_string(items.size()) + ")");
      if (items.size() > want) render_error("ValueError: too many values to unpack (expected " + std::to_string(want) + ")");
      for (size_t i = 0; i < want; ++i) assign(*target.args[i], items[i], f);
      return;
    }
    case ExprOp::kNsRef: {
      const Value ns = lookup(target.value.str_ref(), f);
      if (!ns.is_namespace() || ns.ns_ref().is_loop)
        render_error("TemplateRuntimeError: cannot assign attribute on non-namespace object ('" +
                     target.value.str_ref() + "')");
      ns.ns_ref().set_attr(Value(target.name), v);
      return;
    }
    default: render_error("cannot assign to this expression");
  }
}

// Name lookup: frames outward, then the globals transformers defines.
Value Renderer::lookup(std::string_view name, Frame& f) {
  for (Frame* p = &f; p; p = p->parent)
    if (Value* v = p->find_local(name)) return *v;
  Value g = builtin_global(name);
  if (!g.is_undefined()) return g;
  return Value::undefined("'" + std::string(name) + "' is undefined");
}

// jinja2's globals (range, dict, namespace) and transformers' (raise_exception, strftime_now).
Value Renderer::builtin_global(std::string_view name) {
  if (name == "range") {
    return Value::function("range", [](const CallArgs& a) -> Value {
      for (const auto& v : a.pos)
        if (!v.is_integral()) render_error(std::string("TypeError: '") + v.type_name() + "' object cannot be interpreted as an integer");
      int64_t start = 0, stop = 0, step = 1;
      if (a.pos.size() == 1) stop = a.pos[0].as_int();
      else if (a.pos.size() == 2 || a.pos.size() == 3) {
        start = a.pos[0].as_int();
        stop = a.pos[1].as_int();
        if (a.pos.size() == 3) step = a.pos[2].as_int();
      } else {
        render_error("TypeError: range expected 1 to 3 integer arguments");
      }
      if (step == 0) render_error("ValueError: range() arg 3 must not be zero");
      ValueList out;
      for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
        if (int64_t(out.size()) >= kMaxRange)
          render_error("OverflowError: Range too big. The sandbox blocks ranges larger than MAX_RANGE (100000).");
        out.emplace_back(i);
      }
      return Value::list(std::move(out));
    });
  }
  if (name == "dict") {
    return Value::function("dict", [](const CallArgs& a) -> Value {
      ValueDict d;
      if (!a.pos.empty()) {
        if (!a.pos[0].is_dict() || a.pos.size() > 1) render_error("TypeError: dict() takes one mapping argument here");
        d = a.pos[0].dict_ref();
      }
      for (const auto& [k, v] : a.kw) d.set(Value(k), v);
      return Value::dict(std::move(d));
    });
  }
  if (name == "namespace") {
    return Value::function("namespace", [this](const CallArgs& a) -> Value {
      auto n = std::make_shared<Namespace>();
      namespaces_.push_back(n);
      if (!a.pos.empty()) {
        if (!a.pos[0].is_dict() || a.pos.size() > 1) render_error("TypeError: namespace() takes one mapping argument");
        n->attrs = a.pos[0].dict_ref();
      }
      for (const auto& [k, v] : a.kw) n->attrs.set(Value(k), v);
      return Value::ns(std::move(n));
    });
  }
  if (name == "raise_exception") {
    return Value::function("raise_exception", [](const CallArgs& a) -> Value {
      const Value* m = a.arg(0, "message");
      raise(INFER_ERR_INVALID_ARG, "raise_exception: " + (m ? m->str() : std::string()));
    });
  }
  if (name == "strftime_now") {
    return Value::function("strftime_now", [this](const CallArgs& a) -> Value {
      const Value* fmt = a.arg(0, "format");
      if (!fmt || !fmt->is_string()) render_error("TypeError: strftime_now() expects a format string");
      std::tm tm{};
      if (ro_.now) {
        tm = *ro_.now;
      } else {
        const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
        localtime_r(&t, &tm);
      }
      if (fmt->str_ref().empty()) return Value("");
      std::string buf(256 + fmt->str_ref().size() * 8, '\0');
      const size_t n = std::strftime(buf.data(), buf.size(), fmt->str_ref().c_str(), &tm);
      buf.resize(n);
      return Value(std::move(buf));
    });
  }
  return Value();
}

CallArgs Renderer::eval_args(const Expr& e, Frame& f, size_t first) {
  CallArgs a;
  a.pos.reserve(e.args.size() > first ? e.args.size() - first : 0);
  for (size_t i = first; i < e.args.size(); ++i) a.pos.push_back(eval(*e.args[i], f));
  for (const auto& [k, v] : e.kwargs) a.kw.emplace_back(k, eval(*v, f));
  return a;
}

// Calls. `obj.method(…)` on a str/list/dict dispatches directly; a call block adds `caller`.
Value Renderer::eval_call(const Expr& e, Frame& f, const Value* caller) {
  const Expr& callee = *e.args[0];
  if (callee.op == ExprOp::kGetattr && !caller) {
    // obj.method(...) on str/list/dict: call directly without a bound-method value.
    const Value obj = eval(*callee.args[0], f);
    if (has_method(obj, callee.name)) return call_method(*this, obj, callee.name, eval_args(e, f, 1));
    const Value fn = getattr(obj, callee.name);
    return call(fn, eval_args(e, f, 1));
  }
  const Value fn = eval(callee, f);
  CallArgs a = eval_args(e, f, 1);
  if (caller) a.kw.emplace_back("caller", *caller);
  return call(fn, a);
}

Value Renderer::call(const Value& fn, const CallArgs& args) {
  if (fn.is_function()) return fn.fn_ref().call(args);
  if (fn.is_undefined()) undefined_error(fn);
  render_error(std::string("TypeError: '") + fn.type_name() + "' object is not callable");
}

// A filter chain; in a filter block or `{% set x | f %}` the innermost input is the body text.
Value Renderer::eval_filter(const Expr& e, Frame& f, const Value* block_input) {
  // Filters chain as nested kFilter nodes; the innermost input is args[0] (or the block body).
  Value in = !e.args[0]                        ? (block_input ? *block_input : Value())
             : e.args[0]->op == ExprOp::kFilter ? eval_filter(*e.args[0], f, block_input)
                                                : eval(*e.args[0], f);
  CallArgs a = eval_args(e, f, 1);
  if (!e.filter) raise(INFER_ERR_UNSUPPORTED, "unknown filter '" + e.name + "'", e.line);
  return e.filter(*this, in, a);
}

Value Renderer::apply_filter(std::string_view name, const Value& v, const CallArgs& args) {
  FilterFn fn = find_filter(name);
  if (!fn) raise(INFER_ERR_UNSUPPORTED, "unknown filter '" + std::string(name) + "'");
  return fn(*this, v, args);
}

bool Renderer::apply_test(std::string_view name, const Value& v, const CallArgs& args) {
  TestFn fn = find_test(name);
  if (!fn) raise(INFER_ERR_UNSUPPORTED, "unknown test '" + std::string(name) + "'");
  return fn(*this, v, args);
}

// jinja2's getattr: obj.name tries the attribute (a method of a str/list/dict, a namespace
// attribute) and then the item (a dict key). Missing gives Undefined; an Undefined object is an error.
Value Renderer::getattr(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Kind::kUndefined: undefined_error(obj);
    case Kind::kDict: {
      if (has_method(obj, name)) return bound_method(*this, obj, name);
      if (const Value* v = obj.dict_ref().find(name)) return *v;
      return Value::undefined("'dict object' has no attribute '" + std::string(name) + "'");
    }
    case Kind::kNamespace: {
      if (const Value* v = obj.ns_ref().attrs.find(name)) return *v;
      return Value::undefined("'" + std::string(obj.type_name()) + " object' has no attribute '" + std::string(name) + "'");
    }
    case Kind::kNone: return Value::undefined("'None' has no attribute '" + std::string(name) + "'");
    default: {
      if (has_method(obj, name)) return bound_method(*this, obj, name);
      return Value::undefined("'" + std::string(obj.type_name()) + " object' has no attribute '" + std::string(name) + "'");
    }
  }
}

// jinja2's getitem: obj[key] tries the item (dict key, list/str index with negatives) and then,
// for string keys, the attribute. Missing gives Undefined.
Value Renderer::getitem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Kind::kUndefined: undefined_error(obj);
    case Kind::kDict: {
      if (const Value* v = obj.dict_ref().find(key)) return *v;
      break;
    }
    case Kind::kList: case Kind::kTuple: case Kind::kString: {
      if (!key.is_integral()) break;
      int64_t i = key.as_int();
      if (obj.is_string()) {
        const std::string& s = obj.str_ref();
        if (py::is_ascii(s)) {
          const int64_t n = int64_t(s.size());
          if (i < 0) i += n;
          if (i >= 0 && i < n) return Value(std::string(1, s[size_t(i)]));
        } else {
          const auto off = py::cp_offsets(s);
          const int64_t n = int64_t(off.size()) - 1;
          if (i < 0) i += n;
          if (i >= 0 && i < n) return Value(s.substr(off[size_t(i)], off[size_t(i) + 1] - off[size_t(i)]));
        }
      } else {
        const ValueList& items = obj.items();
        const int64_t n = int64_t(items.size());
        if (i < 0) i += n;
        if (i >= 0 && i < n) return items[size_t(i)];
      }
      return Value::undefined("'" + std::string(obj.type_name()) + " object' has no element " + key.str());
    }
    case Kind::kNamespace: break;
    default: break;
  }
  if (key.is_string()) {  // jinja2 falls back to the attribute
    if (obj.is_namespace()) return getattr(obj, key.str_ref());
    if (obj.is_dict() || !obj.is_none()) {
      if (has_method(obj, key.str_ref())) return bound_method(*this, obj, key.str_ref());
    }
    if (obj.is_none()) return Value::undefined("'None' has no attribute '" + key.str_ref() + "'");
    return Value::undefined("'" + std::string(obj.type_name()) + " object' has no attribute '" + key.str_ref() + "'");
  }
  return Value::undefined("'" + std::string(obj.type_name()) + " object' has no element " + key.repr());
}

// Expression evaluation; operators follow Python (py_binary, py_less, py_contains).
Value Renderer::eval(const Expr& e, Frame& f) {
  switch (e.op) {
    case ExprOp::kConst: return e.value;
    case ExprOp::kName: return lookup(e.name, f);
    case ExprOp::kGetattr: return getattr(eval(*e.args[0], f), e.name);
    case ExprOp::kGetitem: {
      const Value obj = eval(*e.args[0], f);
      const Expr& k = *e.args[1];
      if (k.op == ExprOp::kSlice) {
        if (obj.is_undefined()) undefined_error(obj);
        auto part = [&](size_t i) { return k.args[i] ? eval(*k.args[i], f) : Value(nullptr); };
        return py_slice(obj, part(0), part(1), part(2));
      }
      return getitem(obj, eval(k, f));
    }
    case ExprOp::kSlice: render_error("a slice is only valid inside [ ]");
    case ExprOp::kCall: return eval_call(e, f, nullptr);
    case ExprOp::kFilter: return eval_filter(e, f, nullptr);
    case ExprOp::kTest: {
      const Value in = eval(*e.args[0], f);
      CallArgs a = eval_args(e, f, 1);
      if (!e.test) raise(INFER_ERR_UNSUPPORTED, "unknown test '" + e.name + "'", e.line);
      return Value(e.test(*this, in, a));
    }
    case ExprOp::kNot: return Value(!eval(*e.args[0], f).truthy());
    case ExprOp::kNeg: case ExprOp::kPos: {
      const Value v = eval(*e.args[0], f);
      if (v.is_undefined()) undefined_error(v);
      if (!v.is_number())
        render_error(std::string("TypeError: bad operand type for unary ") + (e.op == ExprOp::kNeg ? "-" : "+") + ": '" +
                     v.type_name() + "'");
      if (e.op == ExprOp::kPos) return v.is_bool() ? Value(v.as_int()) : v;
      return v.is_float() ? Value(-v.as_float()) : Value(-v.as_int());
    }
    case ExprOp::kAnd: {
      Value l = eval(*e.args[0], f);
      return l.truthy() ? eval(*e.args[1], f) : l;
    }
    case ExprOp::kOr: {
      Value l = eval(*e.args[0], f);
      return l.truthy() ? l : eval(*e.args[1], f);
    }
    case ExprOp::kAdd: case ExprOp::kSub: case ExprOp::kMul: case ExprOp::kDiv: case ExprOp::kFloorDiv:
    case ExprOp::kMod: case ExprOp::kPow:
      return py_binary(e.op, eval(*e.args[0], f), eval(*e.args[1], f));
    case ExprOp::kConcat: {
      std::string s;
      for (const auto& a : e.args) {
        const Value v = eval(*a, f);
        if (v.is_string()) s += v.str_ref();
        else s += v.str();
        check_string_size(int64_t(s.size()));
      }
      return Value(std::move(s));
    }
    case ExprOp::kCompare: {
      Value left = eval(*e.args[0], f);
      for (size_t i = 0; i < e.cmp_ops.size(); ++i) {
        Value right = eval(*e.args[i + 1], f);
        const std::string& op = e.cmp_ops[i];
        bool ok;
        if (op == "==") ok = left == right;
        else if (op == "!=") ok = left != right;
        else if (op == "in") ok = py_contains(right, left);
        else if (op == "notin") ok = !py_contains(right, left);
        else if (op == "<") ok = py_less(left, right);
        else if (op == ">") ok = py_less(right, left);
        else if (op == "<=") ok = py_less(left, right) || (!py_less(right, left) && left == right);
        else ok = py_less(right, left) || (!py_less(left, right) && left == right);
        if (!ok) return Value(false);
        left = std::move(right);
      }
      return Value(true);
    }
    case ExprOp::kCond: {
      if (eval(*e.args[1], f).truthy()) return eval(*e.args[0], f);
      return e.args[2] ? eval(*e.args[2], f) : Value();
    }
    case ExprOp::kList: case ExprOp::kTuple: {
      ValueList items;
      items.reserve(e.args.size());
      for (const auto& a : e.args) items.push_back(eval(*a, f));
      return e.op == ExprOp::kList ? Value::list(std::move(items)) : Value::tuple(std::move(items));
    }
    case ExprOp::kDict: {
      ValueDict d;
      for (size_t i = 0; i + 1 < e.args.size(); i += 2) d.set(eval(*e.args[i], f), eval(*e.args[i + 1], f));
      return Value::dict(std::move(d));
    }
    case ExprOp::kNsRef: return getattr(lookup(e.value.str_ref(), f), e.name);
  }
  return Value();
}

// ---- Template -------------------------------------------------------------------------------------

namespace {
[[noreturn]] void rethrow(const TemplateError& e, const Options& opts) {
  std::string msg = opts.name;
  if (e.line > 0) msg += ", line " + std::to_string(e.line);
  throw Error(e.code, msg + ": " + e.message);
}
}  // namespace

Template::Template(std::string_view source, const Options& opts) {
  try {
    prog_ = parse_program(source, opts);
  } catch (const TemplateError& e) {
    rethrow(e, opts);
  }
}

Template::~Template() = default;
Template::Template(Template&&) noexcept = default;
Template& Template::operator=(Template&&) noexcept = default;

std::string Template::render(const ValueDict& vars, const RenderOptions& ro) const {
  Renderer r(*prog_, ro);
  try {
    return r.render(vars);
  } catch (const TemplateError& e) {
    rethrow(e, prog_->opts);
  }
}

}  // namespace infer::jinja
