// api_internal.h — hooks into api.cpp for C API entry points implemented in other files
// (api_chat.cpp), so that those files need neither the opaque structs nor the last-error storage.
#pragma once
#include <functional>
#include <string>

#include "infer/infer.h"

// The directory the model was loaded from (infer_model_load's `dir`). Defined in api.cpp.
const std::string& infer_model_dir_internal(const infer_model* model);

// Runs f as every C entry point does: exceptions become a status, with the message stored for
// infer_last_error() (cleared on success). Defined in api.cpp (its guarded()).
infer_status infer_guarded_internal(const std::function<void()>& f);
