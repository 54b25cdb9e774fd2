// test_api_leaks.cpp — repeated load/use/free cycles through the public C API (include/infer/infer.h) must not leak:
// models (with and without a tokenizer), contexts (eval, generate, truncate, dump), samplers, standalone
// tokenizers, chat renders, and the error paths (a failed load, a failed eval). Checked two ways: the resident
// memory after many cycles is the same as after the first few (normal builds), and LeakSanitizer finds nothing
// (sanitizer builds, where the allocator's quarantine makes RSS meaningless; docs/hardening.md).
#include <gtest/gtest.h>

#include <malloc.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "infer/infer.h"

#if defined(INFER_TEST_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

namespace {

namespace fs = std::filesystem;

std::string tiny() { return std::string(INFER_TEST_DATA) + "/models/qwen3_tied_gqa2"; }
std::string demo() { return std::string(INFER_MODELS_DIR) + "/qwen3-tiny-random"; }
std::string synthetic_tokenizer() { return std::string(INFER_TEST_DATA) + "/tokenizer/synthetic/added"; }

// Resident memory after glibc has given its free heap pages back (malloc_trim): without that, RSS swings by tens
// of MiB with where the heap top happens to be after freeing a 150k-entry tokenizer, hiding any real growth.
int64_t rss_kb() {
  malloc_trim(0);
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

#define OK(call) ASSERT_EQ((call), INFER_OK) << infer_last_error()

bool count_token(const infer_token_info*, void* n) {
  ++*static_cast<int*>(n);
  return true;
}

// One cycle over everything the API can allocate and free. dump_path: where infer_context_dump writes.
void cycle(const std::string& model_dir, bool with_text, const std::string& dump_path) {
  infer_model_params mp = infer_model_default_params();
  mp.n_threads = 1;
  infer_model* m = nullptr;
  OK(infer_model_load(model_dir.c_str(), &mp, &m));
  infer_context_params cp = infer_context_default_params();
  cp.n_ctx = 64;
  cp.n_threads = 1;
  infer_context* ctx = nullptr;
  OK(infer_context_create(m, &cp, &ctx));

  std::vector<int32_t> ids = {1, 2, 3, 4};
  if (with_text) {
    int32_t n = 0;
    ids.resize(64);
    OK(infer_tokenize(m, "Hello, world! héllo", 20, true, ids.data(), int32_t(ids.size()), &n));
    ids.resize(size_t(n));
    std::string text(256, '\0');
    size_t tn = 0;
    OK(infer_detokenize(m, ids.data(), int32_t(ids.size()), false, text.data(), text.size(), &tn));
    const char* msgs = R"([{"role":"user","content":"hi"},{"role":"assistant","content":"yo"},{"role":"user","content":"?"}])";
    size_t rn = 0;
    OK(infer_chat_render(m, msgs, nullptr, R"({"enable_thinking":false})", true, text.data(), text.size(), &rn));
  }
  OK(infer_context_eval(ctx, ids.data(), int32_t(ids.size()), true));
  int32_t rows = 0;
  const float* logits = infer_context_logits(ctx, &rows);
  ASSERT_NE(logits, nullptr);

  infer_sampler_params sp = infer_sampler_default_params();
  sp.temperature = 0.8f;
  sp.top_k = 40;
  sp.seed = 7;
  infer_sampler* s = nullptr;
  OK(infer_sampler_create(&sp, &s));
  for (int32_t id : ids) infer_sampler_accept(s, id, true);
  const int32_t next = infer_sampler_sample(s, logits + size_t(rows - 1) * size_t(infer_model_vocab_size(m)),
                                            infer_model_vocab_size(m));
  ASSERT_GE(next, 0);
  infer_sampler_free(s);

  infer_generate_params gp = infer_generate_default_params();
  gp.max_tokens = 6;
  gp.n_logprobs = 3;
  gp.ignore_eos = true;
  const char* stops[] = {"zzz-never"};
  gp.stop = stops;
  gp.n_stop = 1;
  int generated = 0;
  infer_generate_result res{};
  OK(infer_generate(ctx, ids.data(), int32_t(ids.size()), &gp, count_token, &generated, &res));
  EXPECT_EQ(res.gen_tokens, 6);
  OK(infer_context_truncate(ctx, 1));
  // Error paths allocate messages and unwind partly built state: they must free it too.
  const int32_t bad = 1 << 30;
  EXPECT_EQ(infer_context_eval(ctx, &bad, 1, false), INFER_ERR_INVALID_ARG);
  infer_model* none = nullptr;
  EXPECT_NE(infer_model_load("/nonexistent/model/dir", &mp, &none), INFER_OK);
  OK(infer_context_dump(ctx, ids.data(), int32_t(ids.size()), dump_path.c_str()));
  infer_context_free(ctx);
  infer_model_free(m);

  infer_tokenizer* tok = nullptr;
  OK(infer_tokenizer_load(synthetic_tokenizer().c_str(), &tok));
  std::vector<int32_t> tids(64);
  int32_t tn = 0;
  OK(infer_tokenizer_encode(tok, "abc def", 7, false, tids.data(), int32_t(tids.size()), &tn));
  infer_tokenizer_free(tok);
}

void expect_no_leaks_or_growth(const char* what, int64_t before_kb, int64_t after_kb, int64_t allowed_kb) {
  std::printf("%s: RSS %lld kB after the warm-up cycles, %lld kB at the end (growth %lld kB)\n", what,
              (long long)before_kb, (long long)after_kb, (long long)(after_kb - before_kb));
#if defined(INFER_TEST_ASAN)
  // The sanitizer's quarantine holds freed memory, so RSS grows by design here; LeakSanitizer checks instead.
  EXPECT_EQ(__lsan_do_recoverable_leak_check(), 0) << what << ": LeakSanitizer found leaks (see above)";
  (void)allowed_kb;
#else
  EXPECT_LE(after_kb - before_kb, allowed_kb) << what << ": memory grows with each load/free cycle";
#endif
}

TEST(ApiLeaks, RepeatedLoadUseFreeOfATinyModel) {
  const std::string dump = (fs::temp_directory_path() / ("infer_leak_dump_" + std::to_string(::getpid()))).string();
  for (int i = 0; i < 5; ++i) ASSERT_NO_FATAL_FAILURE(cycle(tiny(), false, dump));
  const int64_t before = rss_kb();
  for (int i = 0; i < 150; ++i) ASSERT_NO_FATAL_FAILURE(cycle(tiny(), false, dump));
  expect_no_leaks_or_growth("tiny model, 150 cycles", before, rss_kb(), 1024);
  fs::remove(dump);
}

// The demo model with the real Qwen3 tokenizer (a 150k-entry vocabulary and a chat template) each cycle.
TEST(ApiLeaks, RepeatedLoadUseFreeWithTheRealTokenizer) {
  const std::string dump = (fs::temp_directory_path() / ("infer_leak_dump2_" + std::to_string(::getpid()))).string();
  for (int i = 0; i < 2; ++i) ASSERT_NO_FATAL_FAILURE(cycle(demo(), true, dump));
  const int64_t before = rss_kb();
  for (int i = 0; i < 12; ++i) ASSERT_NO_FATAL_FAILURE(cycle(demo(), true, dump));
  expect_no_leaks_or_growth("demo model + Qwen3 tokenizer, 12 cycles", before, rss_kb(), 2048);
  fs::remove(dump);
}

}  // namespace
