// fuzz_tokenize.cpp — arbitrary bytes (invalid UTF-8 included) encoded by the real Qwen3 tokenizer
// (models/tokenizers/qwen3), with and without special tokens, then decoded whole and streamed token by token.
// Ids must be in the vocabulary; streaming must release exactly the whole decode (invalid UTF-8 as U+FFFD).
#include "fuzz_common.h"
#include "tokenizer.h"
#include "unicode.h"

namespace {
const infer::Tokenizer& tokenizer() {
  static const auto tok = infer::Tokenizer::load(INFER_FUZZ_TOKENIZER_DIR);
  return *tok;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const infer::Tokenizer& tok = tokenizer();
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  for (bool special : {false, true}) {
    std::vector<int32_t> ids;
    try {
      ids = tok.encode(text, special);
    } catch (const infer::Error& e) {
      infer::fuzz::finding(std::string("encode threw: ") + e.what());  // any byte string must encode
    }
    for (int32_t id : ids)
      if (id < 0 || id >= tok.vocab_size()) infer::fuzz::finding("encode gave id " + std::to_string(id));
    const std::string whole = tok.decode(ids, false);
    infer::StreamDecoder dec(tok);
    std::string streamed;
    for (int32_t id : ids) streamed += dec.push(id);
    streamed += dec.flush();
    if (streamed != infer::unicode::utf8_lossy(whole))
      infer::fuzz::finding("streamed decode differs from the whole decode");
  }
  return 0;
}
