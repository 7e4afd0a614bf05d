// fusegen's generic TFLM kernel logic, hand-written once: custom options, the Prepare checks
// (tensor counts, types and shapes against the op's plan), and the states' way in and out of
// Eval. It is plain C99 written against a small interface (FgTensor, FgNode), so it builds and
// is unit-tested without TFLM (tests/cpp/fg_shell_test.cc); a generated <op>.cc adapts TFLM's
// TfLiteContext/TfLiteNode to it and keeps only what differs per op (types, the plan and eval
// functions of its core). Names and numbers that cross from Python: fg_abi.h (from abi.py).
#ifndef FUSEGEN_TFLM_KERNELS_SHELL_FG_SHELL_H_
#define FUSEGEN_TFLM_KERNELS_SHELL_FG_SHELL_H_

#include <stddef.h>
#include <stdint.h>

#include "tflm_kernels/shell/fg_abi.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { FG_MAX_RANK = 6 };

// What the shell sees of a tensor. `type` is the TfLiteType value; dims holds the first
// FG_MAX_RANK dimensions (no shape the shell accepts has more); `data` is set only for constant
// tensors (the int8 op's qparams, whose first value the shell reads).
typedef struct {
  int type;
  int rank;
  int dims[FG_MAX_RANK];
  const void* data;
  int constant;
} FgTensor;

// A node, as the adapter presents it. input/output fill `tensor` and return 1, or return 0 if
// the tensor is absent. log receives one finished message line.
typedef struct {
  void* impl;
  int num_inputs;
  int num_outputs;
  int (*input)(void* impl, int index, FgTensor* tensor);
  int (*output)(void* impl, int index, FgTensor* tensor);
  void (*log)(void* impl, const char* message);
  const char* (*type_name)(int type);
} FgNode;

typedef enum { kFgOptionKindBool = 0, kFgOptionKindInt = 1 } FgOptionKind;

typedef struct {
  const char* key;
  FgOptionKind kind;
  int64_t default_value;
} FgOptionDef;

// The fields of an op's plan the shell reads (the generated view function fills it).
typedef struct {
  int32_t output_width;        // of y's last dimension
  const int32_t* state_width;  // [num_states]
  const int32_t* param_rank;   // [num_params]
  const int32_t (*param_dims)[2];
  int32_t state_total;
  int32_t scratch_elems;        // of the dtype the kernel runs
  int32_t qparam_count;         // int8 op only
  int32_t qparam_count_per_channel;
  // int8 op only: the luts rows that may be clamp rows (program.py CLAMP_OPS; abi.clamp_row),
  // whose lo <= hi Prepare checks. Zero and NULL for an op with none (the shell zeroes the view
  // first).
  int32_t num_clamp_rows;
  const int32_t* clamp_rows;  // [num_clamp_rows]
} FgPlanView;

// One op at one dtype: everything the shell needs that differs per op.
typedef struct {
  const char* name;        // FUSEGEN_GRU
  int num_params;
  int num_states;
  int io_type;             // TfLiteType of x and y
  const char* io_type_name;  // float32, int8
  int state_type;          // TfLiteType of the state tensors
  const char* state_type_name;  // kTfLiteFloat32, kTfLiteInt16
  const int* param_types;  // [num_params]
  // The int8 op's inputs after the params (abi.S8_INPUTS): qparams int32 [Q], luts int16
  // [num_luts, lut_size]. has_s8_inputs 0: none.
  int has_s8_inputs;
  int int32_type;
  int int16_type;
  int32_t num_luts;
  int32_t lut_size;
  size_t value_size;  // bytes of a state or scratch element
  // units from y's width (-1: none fits, or an op whose output does not grow with units: its
  // "units" option carries them).
  int32_t (*units)(int32_t input_size, int32_t output_width);
  const char* (*plan)(int32_t input_size, int32_t units, int32_t timesteps, int32_t max_chunk,
                      void* plan);
  void (*view)(const void* plan, FgPlanView* view);
} FgOpConfig;

// What Prepare leaves for Eval.
typedef struct {
  int64_t options[FG_NUM_OPTIONS];  // by FgOption (fg_abi.h)
  int state_inputs;                 // 0, or num_states initial states / state variables
  size_t scratch_bytes;             // states, second bank, slots, hoisted rows
  int mask_input;                   // the mask or length input's index (option mask), or -1
  int32_t mask_inner;               // a bool mask's values per step (K of [1, T, K]; 1)
} FgShellData;

// The custom options from a flexbuffer map (length 0: all defaults). Returns 0, or 1 after
// writing "<name>: option <key>: <reason>" into message.
int fg_shell_read_options(const FgOptionDef* defs, int count, const uint8_t* buffer,
                          size_t length, const char* name, int64_t* values, char* message,
                          size_t message_size);

// Prepare: options, tensor counts, types and shapes, the plan (written to `plan`). Returns 0,
// or 1 after one line through node->log.
int fg_shell_prepare(const FgOpConfig* op, const FgNode* node, const uint8_t* options,
                     size_t options_length, int32_t max_chunk, void* plan, FgShellData* data);

// Eval, around the core call: the states from the state inputs (NULL: zero) into `states`, and
// afterwards from `states` into the variables and/or outputs (NULL entries are skipped).
void fg_shell_states_in(const FgOpConfig* op, const int32_t* state_width,
                        const void* const* inputs, void* states);
void fg_shell_states_out(const FgOpConfig* op, const int32_t* state_width, const void* states,
                         void* const* variables, void* const* outputs);

#ifdef __cplusplus
}  // extern "C"
#endif

#endif  // FUSEGEN_TFLM_KERNELS_SHELL_FG_SHELL_H_
