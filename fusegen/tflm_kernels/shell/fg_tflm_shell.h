// The TFLM side of the hand-written shell, once for every generated kernel: TFLM's node and
// tensors presented to fg_shell.c (FgNode, FgTensor), and Init / Prepare / the states' pointers
// for Eval. C++ with TFLM includes, so it is compiled by the kernels that include it (against the
// user's TFLM); the logic it forwards to is fg_shell.c, unit-tested without TFLM.
#ifndef FUSEGEN_TFLM_KERNELS_SHELL_FG_TFLM_SHELL_H_
#define FUSEGEN_TFLM_KERNELS_SHELL_FG_TFLM_SHELL_H_

#include <cstddef>
#include <cstdint>

#include "tensorflow/lite/c/common.h"
#include "tensorflow/lite/kernels/kernel_util.h"
#include "tensorflow/lite/micro/kernels/kernel_util.h"
#include "tensorflow/lite/micro/micro_log.h"
#include "tflm_kernels/runtime/fg_runtime.h"
#include "tflm_kernels/shell/fg_shell.h"

namespace fusegen {
namespace shell {

// Discards a message's arguments (FG_TFLM_LOG in a release TFLM).
template <typename... Args>
inline void Discard(const Args&... /*args*/) {}

}  // namespace shell
}  // namespace fusegen

// The kernels' messages: MicroPrintf where TFLM was built with its error strings, nothing in a
// release TFLM (BUILD_TYPE=release: TF_LITE_STRIP_ERROR_STRINGS, no MicroPrintf in the library),
// where a failed Prepare is still reported by its status (kTfLiteError).
#if defined(TF_LITE_STRIP_ERROR_STRINGS)
#define FG_TFLM_LOG(...) ::fusegen::shell::Discard(__VA_ARGS__)
#else
#define FG_TFLM_LOG(...) MicroPrintf(__VA_ARGS__)
#endif

namespace fusegen {
namespace shell {

struct Node {
  TfLiteNode* node;
  tflite::MicroContext* micro_context;
};

inline int Describe(tflite::MicroContext* micro_context, TfLiteTensor* tensor, FgTensor* out) {
  if (tensor == nullptr) return 0;
  out->type = tensor->type;
  out->rank = tensor->dims->size;
  for (int d = 0; d < tensor->dims->size && d < FG_MAX_RANK; ++d) {
    out->dims[d] = tensor->dims->data[d];
  }
  out->constant = tflite::IsConstantTensor(tensor);
  out->data = out->constant ? tensor->data.data : nullptr;
  micro_context->DeallocateTempTfLiteTensor(tensor);
  return 1;
}

inline int Input(void* impl, int index, FgTensor* out) {
  auto* n = static_cast<Node*>(impl);
  if (index < 0 || index >= n->node->inputs->size) return 0;
  return Describe(n->micro_context, n->micro_context->AllocateTempInputTensor(n->node, index), out);
}

inline int Output(void* impl, int index, FgTensor* out) {
  auto* n = static_cast<Node*>(impl);
  if (index < 0 || index >= n->node->outputs->size) return 0;
  return Describe(n->micro_context, n->micro_context->AllocateTempOutputTensor(n->node, index),
                  out);
}

inline void Log(void*, const char* message) { FG_TFLM_LOG("%s", message); }

inline const char* TypeName(int type) {
  return TfLiteTypeGetName(static_cast<TfLiteType>(type));
}

// OpData: the op's struct with `plan`, `shell`, `scratch_index`, `options`, `options_length`.
template <typename OpData>
void* Init(TfLiteContext* context, const char* buffer, size_t length) {
  void* raw = context->AllocatePersistentBuffer(context, sizeof(OpData));
  if (raw == nullptr) return nullptr;
  auto* data = static_cast<OpData*>(raw);
  data->options = reinterpret_cast<const uint8_t*>(buffer);
  data->options_length = buffer == nullptr ? 0 : length;
  return raw;
}

template <typename OpData>
TfLiteStatus Prepare(TfLiteContext* context, TfLiteNode* node, const FgOpConfig& op,
                     int32_t max_chunk) {
  if (node->user_data == nullptr) {
    FG_TFLM_LOG("%s: out of persistent memory", op.name);
    return kTfLiteError;
  }
  auto* data = static_cast<OpData*>(node->user_data);
  Node adapter = {node, tflite::GetMicroContext(context)};
  const FgNode shell_node = {&adapter, node->inputs->size, node->outputs->size, Input, Output,
                             Log, TypeName};
  if (fg_shell_prepare(&op, &shell_node, data->options, data->options_length, max_chunk,
                       &data->plan, &data->shell) != 0) {
    return kTfLiteError;
  }
  return context->RequestScratchBufferInArena(context, data->shell.scratch_bytes,
                                              &data->scratch_index);
}

// The state tensors' data for fg_shell_states_in / fg_shell_states_out; `first_state` is the
// input index of state 0. Entries are null where the op has no such tensor.
template <int kNumStates>
struct States {
  const void* inputs[kNumStates];
  void* variables[kNumStates];
  void* outputs[kNumStates];

  States(TfLiteContext* context, TfLiteNode* node, const FgShellData& shell, int first_state) {
    for (int k = 0; k < kNumStates; ++k) {
      const int index = first_state + k;
      inputs[k] = shell.state_inputs != 0
                      ? tflite::micro::GetEvalInput(context, node, index)->data.data
                      : nullptr;
      variables[k] = shell.options[kFgOptionStateful] != 0
                         ? tflite::micro::GetMutableEvalInput(context, node, index)->data.data
                         : nullptr;
      outputs[k] = shell.options[kFgOptionReturnState] != 0
                       ? tflite::micro::GetEvalOutput(context, node, 1 + k)->data.data
                       : nullptr;
    }
  }
};

static_assert(FG_TFLITE_BOOL == kTfLiteBool && FG_TFLITE_INT32 == kTfLiteInt32,
              "fg_abi.h's mask input types are TFLite's");

// The core's FgSteps from the op's mask or length input (option mask), or null without one.
inline const FgSteps* Steps(TfLiteContext* context, TfLiteNode* node, const FgShellData& shell,
                            int32_t timesteps, FgSteps* steps) {
  if (shell.mask_input < 0) return nullptr;
  const TfLiteEvalTensor* mask = tflite::micro::GetEvalInput(context, node, shell.mask_input);
  steps->valid = nullptr;
  steps->inner = shell.mask_inner;
  steps->length = timesteps;
  steps->zero_output = shell.options[kFgOptionZeroOutputForMask] != 0;
  if (shell.options[kFgOptionMask] == FG_MASK_STEPS) {
    steps->valid = reinterpret_cast<const uint8_t*>(mask->data.data);  // bool: one byte each
  } else {
    const int32_t length = *tflite::micro::GetTensorData<int32_t>(mask);
    steps->length = length < 0 ? 0 : length;
  }
  return steps;
}

inline int Option(const FgShellData& shell, int option) {
  return static_cast<int>(shell.options[option]);
}

}  // namespace shell
}  // namespace fusegen

#endif  // FUSEGEN_TFLM_KERNELS_SHELL_FG_TFLM_SHELL_H_
