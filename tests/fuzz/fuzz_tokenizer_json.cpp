// fuzz_tokenizer_json.cpp — tokenizer.json text through the tokenizer loader (Tokenizer::from_json), then,
// when it loads, an encode/decode of a fixed text: ids must be inside the vocabulary it reports.
#include "fuzz_common.h"
#include "tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = infer::fuzz::as_string(data, size);
  infer::fuzz::expect_handled([&] {
    auto tok = infer::Tokenizer::from_json(text, nullptr, "fuzz");
    for (bool special : {false, true}) {
      const auto ids = tok->encode("Hello, world! 1234 <|im_end|> héllo\n\t  x", special);
      for (int32_t id : ids)
        if (id < 0 || id >= tok->vocab_size()) infer::fuzz::finding("encode gave id " + std::to_string(id));
      (void)tok->decode(ids, false);
      (void)tok->decode(ids, true);
    }
  });
  return 0;
}
