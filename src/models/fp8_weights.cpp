// fp8_weights.cpp — see fp8_weights.h.
#include "models/fp8_weights.h"

#include "common.h"
#include "models/arch_config.h"

namespace infer::models {

int64_t fp8_block_size(const ModelConfig& c) {
  const ArchConfig a(c);
  if (!a.has("quantization_config")) return 128;
  const std::string method = a.get_nested_string("quantization_config", "quant_method", "fp8");
  if (method != "fp8")
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": quantization_config.quant_method '" + method +
                                    "' is not supported (fp8 with 128x128 block scales)");
  const std::string fmt = a.get_nested_string("quantization_config", "fmt", "e4m3");
  if (fmt != "e4m3")
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": quantization_config.fmt '" + fmt + "' is not supported (e4m3)");
  bool found = false;
  const auto bs = a.get_nested_int_list("quantization_config", "weight_block_size", &found);
  if (found && (bs.size() != 2 || bs[0] != 128 || bs[1] != 128)) {
    std::string v = "[";
    for (size_t i = 0; i < bs.size(); ++i) v += (i ? ", " : "") + std::to_string(bs[i]);
    fail(INFER_ERR_UNSUPPORTED, a.file() + ": quantization_config.weight_block_size " + v +
                                    "] is not supported; FP8 weights need 128x128 block scales ([128, 128])");
  }
  return 128;
}

cpu::Matrix bind_fp8(const SafeTensors& st, const TensorInfo& t, const std::string& name, int64_t rows, int64_t cols,
                     int64_t block, std::string* scale_name) {
  *scale_name = name + "_scale_inv";
  const TensorInfo* s = st.find(*scale_name);
  if (!s)
    fail(INFER_ERR_FORMAT, "tensor " + name + " in " + t.file + " is F8_E4M3 but its block scales " + *scale_name +
                               " are missing from " + st.location());
  const int64_t rb = (rows + block - 1) / block, cb = (cols + block - 1) / block;
  if (s->shape.size() != 2 || s->shape[0] != rb || s->shape[1] != cb)
    fail(INFER_ERR_FORMAT, "tensor " + *scale_name + " in " + s->file + " has shape " + s->shape_str() + ", expected [" +
                               std::to_string(rb) + ", " + std::to_string(cb) + "] (ceil of " + name + " [" +
                               std::to_string(rows) + ", " + std::to_string(cols) + "] / " + std::to_string(block) +
                               "x" + std::to_string(block) + " blocks)");
  if (s->dtype != DType::F32 && s->dtype != DType::BF16 && s->dtype != DType::F16)
    fail(INFER_ERR_UNSUPPORTED, "tensor " + *scale_name + " in " + s->file + " has dtype " + dtype_name(s->dtype) +
                                    "; supported for FP8 block scales: F32, BF16, F16");
  if (reinterpret_cast<uintptr_t>(s->data) % dtype_size(s->dtype) != 0)
    fail(INFER_ERR_FORMAT, "tensor " + *scale_name + " in " + s->file + " is not aligned to its element size");
  cpu::Matrix m;
  m.dtype = DType::F8_E4M3;
  m.data = t.data;
  m.rows = rows;
  m.cols = cols;
  m.scale = s->data;
  m.scale_dtype = s->dtype;
  m.block = block;
  m.scale_cols = cb;
  return m;
}

}  // namespace infer::models
