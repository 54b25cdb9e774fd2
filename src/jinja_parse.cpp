// jinja_parse.cpp — the parser of the Jinja2 interpreter: tokens (jinja_lex.h) → the tree in jinja_ast.h.
//
// It is jinja2's parser.py: the same precedence, tuple, test-argument and filter rules, so that every
// template jinja2 accepts parses to the same structure. Unknown filters and tests are errors here,
// at parse time, except inside if/conditional expressions, where jinja2 defers them to when they run.
#include <set>

#include "jinja_ast.h"
#include "jinja_lex.h"

namespace infer::jinja {
namespace {

const char* describe(const Token& t) {
  switch (t.type) {
    case Tok::kVarEnd: return "end of print statement '}}'";
    case Tok::kBlockEnd: return "end of statement block '%}'";
    case Tok::kEof: return "end of template";
    default: return nullptr;
  }
}

std::string token_text(const Token& t) {
  if (const char* d = describe(t)) return d;
  if (t.type == Tok::kString) return "'" + t.value + "' (a string)";
  return "'" + t.value + "'";
}

// ---- parser --------------------------------------------------------------------------------------

ExprPtr make(ExprOp op, int line) {
  auto e = std::make_unique<Expr>();
  e->op = op;
  e->line = line;
  return e;
}

// Recursive descent, one method per jinja2 parser method. `soft_` tracks jinja2's "soft frames"
// (inside an if or a conditional expression), where unknown filters/tests are deferred to render
// time; `open_` the blocks being parsed, for messages about unclosed ones.
class Parser {
 public:
  explicit Parser(std::vector<Token> toks) : t_(std::move(toks)) {}

  Body parse_template() {
    Body body = subparse({});
    if (cur().type != Tok::kEof) fail("unexpected " + token_text(cur()));
    return body;
  }

 private:
  using EndTags = std::vector<std::string_view>;

  const Token& cur() const { return t_[i_]; }
  const Token& look() const { return t_[std::min(i_ + 1, t_.size() - 1)]; }
  void next() {
    if (i_ + 1 < t_.size()) ++i_;
  }
  bool is_op(std::string_view op) const { return cur().type == Tok::kOp && cur().value == op; }
  bool is_name(std::string_view n) const { return cur().type == Tok::kName && cur().value == n; }
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

  // Bounds how deep expressions and blocks nest (each nested bracket, unary operator, block, or link of a
  // left-associative operator chain is a level), so that neither this recursive-descent parser nor the
  // renderer walking the tree can run out of stack on hostile input. Python refuses such source too
  // ("too many nested parentheses", RecursionError during compilation). Levels are released on scope exit.
  static constexpr int kMaxNesting = 200;
  struct Nesting {
    explicit Nesting(Parser& p) : p_(p) {}
    ~Nesting() { p_.nest_ -= n_; }
    Nesting(const Nesting&) = delete;
    Nesting& operator=(const Nesting&) = delete;
    void enter() {
      ++n_;
      if (++p_.nest_ > kMaxNesting)
        p_.fail("expressions or blocks nested more than " + std::to_string(kMaxNesting) + " levels deep");
    }

   private:
    Parser& p_;
    int n_ = 0;
  };
  void expect_op(std::string_view op) {
    if (!skip_op(op)) fail("expected '" + std::string(op) + "', got " + token_text(cur()));
  }
  std::string expect_name() {
    if (cur().type != Tok::kName) fail("expected a name, got " + token_text(cur()));
    std::string v = cur().value;
    next();
    return v;
  }
  void expect(Tok type, const char* what) {
    if (cur().type != type) fail(std::string("expected ") + what + ", got " + token_text(cur()));
    next();
  }

  // Body up to a `{% <end tag> %}`; leaves the stream at the end tag's name.
  Body subparse(const EndTags& ends) {
    Body body;
    for (;;) {
      const Token& tk = cur();
      if (tk.type == Tok::kEof) return body;
      if (tk.type == Tok::kData) {
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kData;
        s->line = tk.line;
        s->text = tk.value;
        body.push_back(std::move(s));
        next();
      } else if (tk.type == Tok::kVarBegin) {
        next();
        auto s = std::make_unique<Stmt>();
        s->kind = StmtKind::kOutput;
        s->line = cur().line;
        s->expr = parse_tuple(false, true, {}, false, false);
        expect(Tok::kVarEnd, "'}}'");
        body.push_back(std::move(s));
      } else if (tk.type == Tok::kBlockBegin) {
        next();
        if (cur().type == Tok::kName)
          for (std::string_view e : ends)
            if (cur().value == e) return body;
        body.push_back(parse_statement());
        expect(Tok::kBlockEnd, "'%}'");
      } else {
        fail("unexpected " + token_text(tk));
      }
    }
  }

  // `: %}` then a body up to one of `ends`; an unclosed block names the tag that opened it.
  Body parse_statements(const EndTags& ends, bool drop_needle, const std::string& opener, int open_line) {
    skip_op(":");
    expect(Tok::kBlockEnd, "'%}'");
    open_.push_back({opener, open_line, ends});
    Body body = subparse(ends);
    open_.pop_back();
    if (cur().type == Tok::kEof) {
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

  // One {% … %} statement. jinja2's statements that need a loader (include, extends, import, …)
  // and extensions transformers does not enable are refused with the line number.
  StmtPtr parse_statement() {
    Nesting nest(*this);
    nest.enter();
    const Token& tk = cur();
    if (tk.type != Tok::kName) fail("tag name expected, got " + token_text(tk));
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
      while (cur().type != Tok::kBlockEnd) {
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

  // {% for target in iterable [if cond] %} … [{% else %} …] {% endfor %}
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

  // {% if %} … {% elif %} … {% else %} … {% endif %}; each elif becomes a nested if in else_body.
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

  // {% set target = expr %} or the block form {% set target [| filters] %} … {% endset %}.
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
    while (cur().type != Tok::kBlockEnd) {
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
    if (cur().type == Tok::kVarEnd || cur().type == Tok::kBlockEnd || is_op(")")) return true;
    if (cur().type == Tok::kName)
      for (std::string_view e : extra)
        if (cur().value == e) return true;
    return false;
  }

  // jinja2's parse_tuple: an expression, or a tuple when commas separate several (a trailing comma
  // makes a 1-tuple); `simplified` accepts only primaries (assignment targets).
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
    Nesting nest(*this);
    while (skip_name("if")) {
      nest.enter();
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
    Nesting nest(*this);
    while (is_name("or")) {
      nest.enter();
      const int line = cur().line;
      next();
      left = binary(ExprOp::kOr, std::move(left), parse_and(), line);
    }
    return left;
  }

  ExprPtr parse_and() {
    ExprPtr left = parse_not();
    Nesting nest(*this);
    while (is_name("and")) {
      nest.enter();
      const int line = cur().line;
      next();
      left = binary(ExprOp::kAnd, std::move(left), parse_not(), line);
    }
    return left;
  }

  ExprPtr parse_not() {
    if (is_name("not")) {
      Nesting nest(*this);
      nest.enter();
      const int line = cur().line;
      next();
      auto e = make(ExprOp::kNot, line);
      e->args.push_back(parse_not());
      return e;
    }
    return parse_compare();
  }

  // Comparisons chain like Python's: a < b < c.
  ExprPtr parse_compare() {
    const int line = cur().line;
    ExprPtr expr = parse_math1();
    ExprPtr cmp;
    for (;;) {
      std::string op;
      if (cur().type == Tok::kOp && (cur().value == "==" || cur().value == "!=" || cur().value == "<" ||
                                   cur().value == "<=" || cur().value == ">" || cur().value == ">=")) {
        op = cur().value;
        next();
      } else if (is_name("in")) {
        op = "in";
        next();
      } else if (is_name("not") && look().type == Tok::kName && look().value == "in") {
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
    Nesting nest(*this);
    while (is_op("+") || is_op("-")) {
      nest.enter();
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
    Nesting nest(*this);
    while (is_op("*") || is_op("/") || is_op("//") || is_op("%")) {
      nest.enter();
      const ExprOp op = is_op("*") ? ExprOp::kMul : is_op("/") ? ExprOp::kDiv : is_op("//") ? ExprOp::kFloorDiv : ExprOp::kMod;
      const int line = cur().line;
      next();
      left = binary(op, std::move(left), parse_pow(), line);
    }
    return left;
  }

  ExprPtr parse_pow() {
    ExprPtr left = parse_unary(true);
    Nesting nest(*this);
    while (is_op("**")) {
      nest.enter();
      const int line = cur().line;
      next();
      left = binary(ExprOp::kPow, std::move(left), parse_unary(true), line);
    }
    return left;
  }

  // -x|abs parses as (-x)|abs: the operand of a unary sign is parsed without filters, and the
  // filters that follow apply to the negation (jinja2's parse_unary(with_filter=False)).
  ExprPtr parse_unary(bool with_filter) {
    Nesting nest(*this);
    nest.enter();
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

  // Literals, names, parenthesized expressions/tuples, lists and dicts. true/false/none (either
  // case) are constants, as in jinja2.
  ExprPtr parse_primary(bool with_namespace) {
    const Token& tk = cur();
    const int line = tk.line;
    if (tk.type == Tok::kName) {
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
      if (with_namespace && look().type == Tok::kOp && look().value == ".") {
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
    if (tk.type == Tok::kString) {
      std::string s;
      while (cur().type == Tok::kString) {  // adjacent literals concatenate
        s += cur().value;
        next();
      }
      auto e = make(ExprOp::kConst, line);
      e->value = Value(std::move(s));
      return e;
    }
    if (tk.type == Tok::kInt || tk.type == Tok::kFloat) {
      auto e = make(ExprOp::kConst, line);
      e->value = tk.type == Tok::kInt ? Value(tk.ival) : Value(tk.fval);
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
    Nesting nest(*this);
    for (;;) {
      if (is_op(".") || is_op("[") || is_op("(")) nest.enter();
      if (is_op(".") || is_op("[")) node = parse_subscript(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_filter_expr(ExprPtr node) {
    Nesting nest(*this);
    for (;;) {
      if (is_op("|") || is_name("is") || is_op("(")) nest.enter();
      if (is_op("|")) node = parse_filter(std::move(node), false);
      else if (is_name("is")) node = parse_test(std::move(node));
      else if (is_op("(")) node = parse_call(std::move(node));
      else return node;
    }
  }

  ExprPtr parse_subscript(ExprPtr node) {
    const int line = cur().line;
    if (skip_op(".")) {
      if (cur().type == Tok::kName) {
        auto e = make(ExprOp::kGetattr, line);
        e->name = cur().value;
        next();
        e->args.push_back(std::move(node));
        return e;
      }
      if (cur().type != Tok::kInt) fail("expected a name or a number after '.', got " + token_text(cur()));
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

  // An index or a slice [start:stop:step] (each part optional).
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
      if (cur().type == Tok::kName && look().type == Tok::kOp && look().value == "=") {
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
    Nesting nest(*this);
    while (is_op("|") || start_inline) {
      nest.enter();
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

  // `is [not] name`, with arguments in parentheses or one bare argument (`is divisibleby 3`).
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
    } else if ((cur().type == Tok::kName || cur().type == Tok::kString || cur().type == Tok::kInt ||
                cur().type == Tok::kFloat || is_op("(") || is_op("[") || is_op("{")) &&
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
  int nest_ = 0;  // nesting levels entered (Nesting)
  bool soft_ = false;  // inside an if / conditional expression (jinja2's soft frame)
};

}  // namespace

std::shared_ptr<const Program> parse_program(std::string_view source, const Options& opts) {
  auto prog = std::make_shared<Program>();
  prog->opts = opts;
  Parser parser(lex(source, opts));
  prog->body = parser.parse_template();
  return prog;
}

}  // namespace infer::jinja
