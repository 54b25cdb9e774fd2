// api_internal.h — hooks into api.cpp for C API entry points implemented in other files
// (api_chat.cpp), so that those files need neither the opaque structs nor the last-error storage.
#pragma once
#include <functional>
#include <string>

#include "generate.h"
#include "infer/infer.h"
#include "model.h"

// The directory the model was loaded from (infer_model_load's `dir`). Defined in api.cpp.
const std::string& infer_model_dir_internal(const infer_model* model);

// Runs f as every C entry point does: exceptions become a status, with the message stored for
// infer_last_error() (cleared on success). Defined in api.cpp (its guarded()).
infer_status infer_guarded_internal(const std::function<void()>& f);

// The model behind the handle. Defined in api.cpp.
const infer::Transformer& infer_model_internal(const infer_model* model);

// infer_generate_params → the runtime's options (stop strings, eos ids from the model, …). Defined in api.cpp.
infer::GenerateOptions infer_generate_options_internal(const infer_model* model, const infer_generate_params* params);
