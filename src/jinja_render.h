// jinja_render.h — the renderer of the Jinja2 interpreter (internal): scopes, statement execution
// and expression evaluation (jinja_eval.cpp), plus the Python operations builtins share
// (jinja_builtins.cpp): attribute/item lookup, iteration, comparison, methods of str/list/dict.
#pragma once
#include <deque>
#include <string>
#include <string_view>
#include <vector>

#include "jinja_ast.h"

namespace infer::jinja {

// One scope: the template top level, a for-loop iteration, a macro call, a with/set/filter block.
// Lookups walk the parent chain (the root frame holds the render variables).
struct Frame {
  Frame* parent = nullptr;
  std::vector<std::pair<std::string, Value>> vars;
  Value* find_local(std::string_view name);
  void set(std::string_view name, Value v);
};

class Renderer {
 public:
  Renderer(const Program& prog, const RenderOptions& ro) : prog_(prog), ro_(ro) {}
  // Empties every namespace() of the render: one that holds itself (ns.a = ns, directly or through lists) is a
  // shared_ptr cycle that would otherwise never be freed.
  ~Renderer() {
    for (auto& n : namespaces_) n->attrs.entries.clear();
  }
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;
  std::string render(const ValueDict& vars);

  // Python/jinja2 operations, also used by filters.
  Value getattr(const Value& obj, std::string_view name);  // obj.name (attribute first, then item)
  Value getitem(const Value& obj, const Value& key);       // obj[key] (item first, then attribute)
  Value call(const Value& fn, const CallArgs& args);
  Value apply_filter(std::string_view name, const Value& v, const CallArgs& args);
  bool apply_test(std::string_view name, const Value& v, const CallArgs& args);
  const RenderOptions& options() const { return ro_; }

 private:
  enum class Flow { kNormal, kBreak, kContinue };
  Flow exec(const Body& body, Frame& f, std::string& out);
  Flow exec_stmt(const Stmt& s, Frame& f, std::string& out);
  Flow exec_for(const Stmt& s, Frame& f, std::string& out);
  Value eval(const Expr& e, Frame& f);
  Value eval_call(const Expr& e, Frame& f, const Value* caller);
  Value eval_filter(const Expr& e, Frame& f, const Value* block_input);
  CallArgs eval_args(const Expr& e, Frame& f, size_t first);
  Value lookup(std::string_view name, Frame& f);
  void assign(const Expr& target, const Value& v, Frame& f);
  Value make_macro(const Stmt& s, Frame& f);
  Value builtin_global(std::string_view name);
  Frame& new_frame(Frame* parent);

  const Program& prog_;
  const RenderOptions& ro_;
  // Counts statements and loop iterations against kMaxSteps (a runaway loop or recursion fails, not hangs).
  void step() {
    if (++steps_ > kMaxSteps)
      render_error("RuntimeError: the template ran more than " + std::to_string(kMaxSteps) +
                   " statements and loop iterations (a runaway loop?)");
  }

  std::deque<Frame> frames_;  // scopes of this render (macros may keep pointers to them)
  size_t pinned_ = 0;         // frames_[0, pinned_) may be referenced by a macro or caller() and must stay
  int depth_ = 0;             // macro/call recursion depth
  int64_t steps_ = 0;
  std::vector<std::shared_ptr<Namespace>> namespaces_;  // made by namespace(), emptied at the end
};

// ---- shared Python semantics (jinja_builtins.cpp) -------------------------------------------------

[[noreturn]] void undefined_error(const Value& u);
// The items a for loop / list() sees: list/tuple items, dict keys, string characters; Undefined is
// empty. Anything else is a TypeError.
ValueList iterate(const Value& v);
// Python a < b (numbers, strings, lists/tuples of comparable items); TypeError otherwise.
bool py_less(const Value& a, const Value& b);
// Python `item in container`.
bool py_contains(const Value& container, const Value& item);
// Python len() (Undefined: 0).
int64_t py_len(const Value& v);
// Python binary arithmetic (+ - * / // % **) with its TypeErrors.
Value py_binary(ExprOp op, const Value& a, const Value& b);
// obj[start:stop:step] for str/list/tuple (Undefined elsewhere, as jinja2's getitem).
Value py_slice(const Value& obj, const Value& start, const Value& stop, const Value& step);
// A method of a str/list/dict value, called directly; has_method says whether obj.name is one.
bool has_method(const Value& obj, std::string_view name);
Value call_method(Renderer& r, const Value& obj, std::string_view name, const CallArgs& args);
// A bound method as a value (for `{% set f = s.split %}`); Undefined if there is none.
Value bound_method(Renderer& r, const Value& obj, std::string_view name);
// Python printf-style formatting: fmt % args.
std::string percent_format(std::string_view fmt, const Value& args);

}  // namespace infer::jinja
