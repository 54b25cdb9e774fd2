// test_jinja_limits.cpp — the Jinja interpreter's resource limits (src/jinja_ast.h, src/jinja_parse.cpp), each
// from an input the fuzzer found crashing, hanging or leaking (tests/fuzz/regressions/fuzz_jinja/ holds the
// original inputs, replayed by the fuzz build). Hostile templates must fail with a template error, quickly.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "chat_template.h"
#include "common.h"
#include "jinja.h"

namespace {

using ::testing::HasSubstr;
namespace jj = infer::jinja;

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

// The message of the error rendering `source` raises ("" if it renders).
std::string render_error(const std::string& source) {
  try {
    jj::Template t(source);
    (void)t.render(jj::ValueDict{});
  } catch (const infer::Error& e) {
    return e.what();
  }
  return "";
}

TEST(JinjaLimits, DeepNestingIsASyntaxErrorNotAStackOverflow) {
  const std::string deep = "nested more than 200 levels deep";
  EXPECT_THAT(render_error("{{ " + repeat("(", 20000) + "1" + repeat(")", 20000) + " }}"), HasSubstr(deep));
  EXPECT_THAT(render_error("{{ " + repeat("[", 20000) + repeat("]", 20000) + " }}"), HasSubstr(deep));
  EXPECT_THAT(render_error("{{ " + repeat("not ", 20000) + "1 }}"), HasSubstr(deep));
  EXPECT_THAT(render_error("{{ 1" + repeat(" + 1", 20000) + " }}"), HasSubstr(deep));
  EXPECT_THAT(render_error("{{ 1" + repeat("|e", 20000) + " }}"), HasSubstr(deep));
  EXPECT_THAT(render_error("{{ x" + repeat(".a", 20000) + " }}"), HasSubstr(deep));
  EXPECT_THAT(render_error(repeat("{% if 1 %}", 5000) + repeat("{% endif %}", 5000)), HasSubstr(deep));
  // Real templates nest a few levels: 150 is fine.
  EXPECT_EQ(render_error("{{ " + repeat("(", 150) + "1" + repeat(")", 150) + " }}"), "");
}

TEST(JinjaLimits, ValuesNestAtMost256Deep) {
  const std::string loop = "{% set ns = namespace(x=[]) %}{% for i in range(100000) %}{% set ns.x = [ns.x] %}{% endfor %}";
  EXPECT_THAT(render_error(loop + "{{ ns.x }}"), HasSubstr("nest containers more than 256 levels deep"));
  EXPECT_EQ(render_error("{% set ns = namespace(x=[]) %}{% for i in range(200) %}{% set ns.x = [ns.x] %}{% endfor %}"
                         "{{ ns.x|length }}"),
            "");
}

TEST(JinjaLimits, SelfReferenceIsARecursionErrorAndDoesNotLeak) {
  // (LeakSanitizer checks the "does not leak" part in the sanitizer build.)
  EXPECT_THAT(render_error("{% set ns = namespace() %}{% set ns.a = ns %}{{ ns }}"), HasSubstr("RecursionError"));
  EXPECT_THAT(render_error("{% set ns = namespace() %}{% set ns.a = [ns] %}{{ ns.a }}"), HasSubstr("RecursionError"));
  EXPECT_THAT(render_error("{% set ns = namespace() %}{% set ns.a = [ns] %}{{ ns.a|tojson }}"),
              HasSubstr("Object of type Namespace is not JSON serializable"));  // as Python's json.dumps says
  EXPECT_EQ(render_error("{% set ns = namespace() %}{% set ns.a = [ns] %}x"), "");
}

TEST(JinjaLimits, HugeStringsAreRefused) {
  const std::string big = "larger than 64 MiB";
  EXPECT_THAT(render_error("{{ 'a' * 2000000000 }}"), HasSubstr(big));
  EXPECT_THAT(render_error("{{ 'a' * 9223372036854775807 }}"), HasSubstr(big));
  EXPECT_THAT(render_error("{{ '%99999999999999999999999d' % 1 }}"), HasSubstr(big));
  EXPECT_THAT(render_error("{{ '{:99999999999999999999}'.format(1) }}"), HasSubstr(big));
  EXPECT_THAT(render_error("{{ 'a'.center(9223372036854775807) }}"), HasSubstr(big));
  EXPECT_THAT(render_error("{% set ns = namespace(s='ab') %}{% for i in range(60) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}"),
              HasSubstr(big));
  EXPECT_THAT(render_error("{% set s = 'aaaaaaaaaa' * 100000 %}{% for i in range(100000) %}{{ s }}{% endfor %}"),
              HasSubstr(big));
  EXPECT_THAT(render_error("{{ [1] * 100000000 }}"), HasSubstr("list of more than"));
  EXPECT_THAT(render_error("{{ 'a\nb'|indent(2000000000) }}"), HasSubstr(big));
  EXPECT_THAT(render_error("{{ [[[1]]]|tojson(indent=60000000) }}"), HasSubstr(big));
  // Found by the fuzzer: empty times huge used to loop two billion times (a hang).
  jj::Template empty("{{ '' * 2000000000 }}|{{ [] * 2000000000 }}|{{ () * 3 }}");
  EXPECT_EQ(empty.render(jj::ValueDict{}), "|[]|()");
}

TEST(JinjaLimits, RunawayLoopsAndRecursionStop) {
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_THAT(render_error("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"),
              HasSubstr("ran more than 250000 statements and loop iterations"));
  EXPECT_THAT(render_error("{% macro f(n) %}{% if n > 0 %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}"),
              HasSubstr("ran more than 250000 statements"));
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(s, 60.0);  // well under a second in a release build
}

// The limits leave room for real conversations: the Qwen3 template over 2000 messages renders.
TEST(JinjaLimits, LongConversationsStillRender) {
  const auto ct = infer::ChatTemplate::from_dir(std::string(INFER_MODELS_DIR) + "/tokenizers/qwen3");
  nlohmann::ordered_json msgs = nlohmann::ordered_json::array();
  for (int i = 0; i < 2000; ++i)
    msgs.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", "message " + std::to_string(i)}});
  const std::string out = ct.render(msgs, nullptr, true);
  EXPECT_THAT(out, HasSubstr("message 1999"));
}

TEST(JinjaLimits, DeepJsonInputIsRefused) {
  const auto ct = infer::ChatTemplate::from_dir(std::string(INFER_MODELS_DIR) + "/tokenizers/qwen3");
  const auto deep = nlohmann::ordered_json::parse(repeat("[", 5000) + repeat("]", 5000));
  try {
    (void)ct.render(nlohmann::ordered_json::array({{{"role", "user"}, {"content", deep}}}), nullptr, true);
    FAIL() << "rendered";
  } catch (const infer::Error& e) {
    EXPECT_EQ(e.code(), INFER_ERR_INVALID_ARG);
    EXPECT_THAT(e.what(), HasSubstr("nests more than 128 levels deep"));
  }
}

}  // namespace
