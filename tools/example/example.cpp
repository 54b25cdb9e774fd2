// example.cpp — the smallest useful libinfer program: load a model, generate greedily from token ids or text.
//   infer_example MODEL_DIR [PROMPT]
#include <cstdio>
#include <infer/infer.hpp>

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s MODEL_DIR [PROMPT]\n", argv[0]);
    return 2;
  }
  try {
    infer::Model model(argv[1]);
    std::vector<int32_t> prompt = {5, 6, 7};
    if (argc > 2 && model.has_tokenizer()) prompt = model.tokenize(argv[2]);
    infer::Context ctx(model);
    infer_generate_params gp = infer_generate_default_params();  // greedy
    gp.max_tokens = 8;
    gp.ignore_eos = true;
    auto r = ctx.generate(prompt, gp, [](const infer_token_info& t) {
      if (t.id >= 0) std::printf("%d ", t.id);
      return true;
    });
    std::printf("\n%d tokens, %s\n", r.gen_tokens, infer_version());
    return r.gen_tokens == 8 ? 0 : 1;
  } catch (const infer::Exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
