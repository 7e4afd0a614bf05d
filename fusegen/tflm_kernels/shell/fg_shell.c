// See fg_shell.h. The messages are those the generated kernels printed before this file
// existed; tests match them.
#include "tflm_kernels/shell/fg_shell.h"

#include <string.h>

#include "tflm_kernels/options/fg_flexbuffer.h"

enum { kMessageSize = 160 };

// A message built without stdio (no printf family on the device): fg_format copies `format`,
// replacing each %s by the next string and each %d by the next int of `args`, in that order of
// appearance; the result is cut to `size` - 1 characters.
typedef struct {
  const char* s[3];
  int d[5];
} Args;

static void fg_format(char* out, size_t size, const char* format, const Args* args) {
  size_t n = 0;
  int si = 0, di = 0;
  for (const char* f = format; *f != '\0' && n + 1 < size; ++f) {
    char digits[12];
    const char* piece = NULL;
    if (f[0] == '%' && f[1] == 's') {
      piece = args->s[si++];
    } else if (f[0] == '%' && f[1] == 'd') {
      long value = args->d[di++];
      const int negative = value < 0;
      unsigned long magnitude = negative ? (unsigned long)(-value) : (unsigned long)value;
      char* p = digits + sizeof(digits) - 1;
      *p = '\0';
      do {
        *--p = (char)('0' + (int)(magnitude % 10u));
        magnitude /= 10u;
      } while (magnitude != 0u);
      if (negative) *--p = '-';
      piece = p;
    }
    if (piece == NULL) {
      out[n++] = *f;
      continue;
    }
    ++f;
    while (*piece != '\0' && n + 1 < size) out[n++] = *piece++;
  }
  out[n] = '\0';
}

static void say(const FgNode* node, const char* message) {
  if (node->log != NULL) node->log(node->impl, message);
}

int fg_shell_read_options(const FgOptionDef* defs, int count, const uint8_t* buffer,
                          size_t length, const char* name, int64_t* values, char* message,
                          size_t message_size) {
  for (int k = 0; k < count; ++k) {
    values[k] = defs[k].default_value;
    if (length == 0 || buffer == NULL) continue;
    FgFlexStatus status;
    if (defs[k].kind == kFgOptionKindInt) {
      int64_t value = 0;
      status = fg_flex_get_int(buffer, length, defs[k].key, &value);
      if (status == kFgFlexOk) values[k] = value;
    } else {
      int value = 0;
      status = fg_flex_get_bool(buffer, length, defs[k].key, &value);
      if (status == kFgFlexOk) values[k] = value;
    }
    if (status != kFgFlexOk && status != kFgFlexMissing) {
      const Args a = {{name, defs[k].key, fg_flex_status_string(status)}, {0}};
      fg_format(message, message_size, "%s: option %s: %s", &a);
      return 1;
    }
  }
  return 0;
}

static int dims_are(const FgTensor* t, int rank, const int32_t* dims) {
  if (t->rank != rank) return 0;
  for (int d = 0; d < rank; ++d) {
    if (t->dims[d] != dims[d]) return 0;
  }
  return 1;
}

static int check_params(const FgOpConfig* op, const FgNode* node, const FgPlanView* view) {
  char message[kMessageSize];
  FgTensor t;
  for (int k = 0; k < op->num_params; ++k) {
    if (!node->input(node->impl, 1 + k, &t)) {
      const Args a = {{op->name}, {k}};
      fg_format(message, sizeof(message), "%s: weight input %d is missing", &a);
      say(node, message);
      return 1;
    }
    // Weights are read in place from the model: a tensor without data in the file (a removed
    // buffer, a variable) would be arena bytes.
    if (!t.constant) {
      const Args a = {{op->name}, {k}};
      fg_format(message, sizeof(message), "%s: weight input %d is not a constant tensor", &a);
      say(node, message);
      return 1;
    }
    if (t.type != op->param_types[k] || !dims_are(&t, view->param_rank[k], view->param_dims[k])) {
      const Args a = {{op->name}, {k}};
      fg_format(message, sizeof(message), "%s: weight input %d has the wrong type or shape",
                &a);
      say(node, message);
      return 1;
    }
  }
  if (!op->has_s8_inputs) return 0;
  // qparams: int32 [Q], constant; its first value (the channel flag) picks Q (abi.py).
  int ok = node->input(node->impl, 1 + op->num_params, &t) && t.type == op->int32_type &&
           t.rank == 1 && t.dims[0] > 0 && t.constant && t.data != NULL &&
           t.dims[0] == (((const int32_t*)t.data)[0] != 0 ? view->qparam_count_per_channel
                                                          : view->qparam_count);
  if (!ok) {
    const Args a = {{op->name}, {0}};
    fg_format(message, sizeof(message),
              "%s: input qparams is missing or has the wrong type or shape", &a);
    say(node, message);
    return 1;
  }
  const int32_t luts[2] = {op->num_luts, op->lut_size};
  ok = node->input(node->impl, 2 + op->num_params, &t) && t.type == op->int16_type &&
       t.constant && dims_are(&t, 2, luts);
  if (!ok) {
    const Args a = {{op->name}, {0}};
    fg_format(message, sizeof(message),
              "%s: input luts is missing or has the wrong type or shape", &a);
    say(node, message);
    return 1;
  }
  // A clamp row (FG_LUT_IS_CLAMP_ROW; abi.clamp_row) needs lo <= hi.
  const int16_t* lut_data = (const int16_t*)t.data;
  for (int k = 0; lut_data != NULL && k < view->num_clamp_rows; ++k) {
    const int16_t* row = lut_data + view->clamp_rows[k] * op->lut_size;
    if (FG_LUT_IS_CLAMP_ROW(row) && row[FG_CLAMP_LO_KNOT] > row[FG_CLAMP_HI_KNOT]) {
      const Args a = {{op->name},
                      {(int)view->clamp_rows[k], row[FG_CLAMP_LO_KNOT], row[FG_CLAMP_HI_KNOT]}};
      fg_format(message, sizeof(message),
                "%s: luts row %d is a clamp to %d..%d, lo above hi; reconvert the model", &a);
      say(node, message);
      return 1;
    }
  }
  return 0;
}

// Every state tensor (input, variable or output) is [1, state_width] of the state type.
static int check_states(const FgOpConfig* op, const FgNode* node, const FgPlanView* view,
                        const FgShellData* data, int first_state) {
  const int outputs = data->options[kFgOptionReturnState] ? op->num_states : 0;
  for (int k = 0; k < data->state_inputs + outputs; ++k) {
    const int s = k < data->state_inputs ? k : k - data->state_inputs;
    FgTensor t;
    const int present = k < data->state_inputs ? node->input(node->impl, first_state + s, &t)
                                               : node->output(node->impl, 1 + s, &t);
    const int32_t dims[2] = {1, view->state_width[s]};
    if (!present || t.type != op->state_type || !dims_are(&t, 2, dims)) {
      char message[kMessageSize];
      const Args a = {{op->name, op->state_type_name}, {s, (int)view->state_width[s]}};
      fg_format(message, sizeof(message), "%s: state %d must be %s [1, %d]", &a);
      say(node, message);
      return 1;
    }
  }
  return 0;
}

// The mask input: bool [1, T] or [1, T, K] (option mask 1), or an int32 scalar length (2).
static int check_mask(const FgOpConfig* op, const FgNode* node, FgShellData* data,
                      int32_t timesteps) {
  if (data->mask_input < 0) return 0;
  FgTensor t;
  const int present = node->input(node->impl, data->mask_input, &t);
  int ok;
  if (data->options[kFgOptionMask] == FG_MASK_STEPS) {
    ok = present && t.type == FG_TFLITE_BOOL && (t.rank == 2 || t.rank == 3) &&
         t.dims[0] == 1 && t.dims[1] == timesteps && (t.rank == 2 || t.dims[2] >= 1);
    if (ok && t.rank == 3) data->mask_inner = t.dims[2];
  } else {
    ok = present && t.type == FG_TFLITE_INT32 &&
         (t.rank == 0 || (t.rank == 1 && t.dims[0] == 1));
  }
  if (!ok) {
    char message[kMessageSize];
    const Args a = {{op->name}, {timesteps, timesteps}};
    fg_format(message, sizeof(message),
              data->options[kFgOptionMask] == FG_MASK_STEPS
                  ? "%s: the last input must be a bool mask [1, %d] or [1, %d, K]"
                  : "%s: the last input must be an int32 length (a scalar)",
              &a);
    say(node, message);
    return 1;
  }
  return 0;
}

int fg_shell_prepare(const FgOpConfig* op, const FgNode* node, const uint8_t* options,
                     size_t options_length, int32_t max_chunk, void* plan, FgShellData* data) {
  static const FgOptionDef kOptions[FG_NUM_OPTIONS] = FG_OPTION_DEFS;
  char message[kMessageSize];
  if (fg_shell_read_options(kOptions, FG_NUM_OPTIONS, options, options_length, op->name,
                            data->options, message, sizeof(message))) {
    say(node, message);
    return 1;
  }
  // The matrices' byte order is part of the ABI: a file written for another layout would run
  // with its weights scrambled.
  const int64_t layout = op->has_s8_inputs ? FG_WEIGHT_LAYOUT_S8 : FG_WEIGHT_LAYOUT_F32;
  if (data->options[kFgOptionWeightLayout] != layout) {
    const int found = data->options[kFgOptionWeightLayout] == (int)data->options[kFgOptionWeightLayout]
                          ? (int)data->options[kFgOptionWeightLayout]
                          : -1;
    const Args a = {{op->name}, {found, (int)layout}};
    fg_format(message, sizeof(message),
              "%s: option weight_layout is %d, this kernel reads weight layout %d; convert the "
              "model again with this fusegen version", &a);
    say(node, message);
    return 1;
  }
  // States cross the op boundary as inputs after the params and extras (initial states, or
  // with `stateful` variable tensors) and, with `return_state`, as outputs after y.
  const int first_state = 1 + op->num_params + (op->has_s8_inputs ? FG_NUM_S8_INPUTS : 0);
  const int64_t mask = data->options[kFgOptionMask];
  if (mask != FG_MASK_NONE && mask != FG_MASK_STEPS && mask != FG_MASK_LENGTH) {
    const Args a = {{op->name}, {0}};
    fg_format(message, sizeof(message), "%s: option mask must be 0, 1 or 2", &a);
    say(node, message);
    return 1;
  }
  // A mask or length is the op's last input, after the states (abi.mask_input).
  const int has_mask = mask != FG_MASK_NONE;
  data->mask_input = has_mask ? node->num_inputs - 1 : -1;
  data->mask_inner = 1;
  data->state_inputs = node->num_inputs - first_state - has_mask;
  const int expected_outputs = 1 + (data->options[kFgOptionReturnState] ? op->num_states : 0);
  const int states_ok = data->options[kFgOptionStateful]
                            ? data->state_inputs == op->num_states
                            : (data->state_inputs == 0 || data->state_inputs == op->num_states);
  if (!states_ok || node->num_outputs != expected_outputs) {
    const Args a = {{op->name},
                    {first_state, op->num_states, expected_outputs, node->num_inputs,
                     node->num_outputs}};
    fg_format(message, sizeof(message),
              "%s: expected %d inputs (+%d states) and %d outputs, got %d and %d", &a);
    say(node, message);
    return 1;
  }
  FgTensor input, output;
  if (!node->input(node->impl, 0, &input) || !node->output(node->impl, 0, &output)) {
    const Args a = {{op->name}, {0}};
    fg_format(message, sizeof(message), "%s: missing input or output tensor", &a);
    say(node, message);
    return 1;
  }
  if (input.type != op->io_type || output.type != op->io_type) {
    const Args a = {{op->name, op->io_type_name, node->type_name(input.type)}, {0}};
    fg_format(message, sizeof(message), "%s: only %s input and output are supported, got %s",
              &a);
    say(node, message);
    return 1;
  }
  if (input.rank != 3 || input.dims[0] != 1) {
    const Args a = {{op->name}, {0}};
    fg_format(message, sizeof(message), "%s: input must be [1, timesteps, features]", &a);
    say(node, message);
    return 1;
  }
  const int32_t timesteps = input.dims[1];
  const int32_t input_size = input.dims[2];
  const int out_rank = data->options[kFgOptionReturnSequences] ? 3 : 2;
  const int out_ok = output.rank == out_rank && output.dims[0] == 1 &&
                     (out_rank == 2 || output.dims[1] == timesteps);
  // An op whose output does not grow with units (a projection) carries them in its options;
  // the plan below then gives the output width, checked against y after it.
  const int64_t carried = data->options[kFgOptionUnits];
  const int32_t out_width = output.rank > 0 ? output.dims[output.rank - 1] : -1;
  const int32_t units = carried != 0 ? (carried > 0 && carried <= INT32_MAX ? (int32_t)carried : -1)
                                     : (output.rank > 0 ? op->units(input_size, out_width) : -1);
  if (!out_ok || units < 1) {
    const Args a = {{op->name}, {0}};
    fg_format(message, sizeof(message),
              "%s: output shape does not match the input and return_sequences", &a);
    say(node, message);
    return 1;
  }
  const char* error = op->plan(input_size, units, timesteps, max_chunk, plan);
  if (error != NULL) {
    say(node, error);
    return 1;
  }
  FgPlanView view = {0};
  op->view(plan, &view);
  if (view.output_width != out_width) {
    const Args a = {{op->name}, {out_width, (int)units, view.output_width}};
    fg_format(message, sizeof(message), "%s: output width %d, %d units need %d", &a);
    say(node, message);
    return 1;
  }
  if (check_params(op, node, &view) || check_states(op, node, &view, data, first_state) ||
      check_mask(op, node, data, timesteps)) {
    return 1;
  }
  // Scratch holds the second state bank, the step's slots and the batched input projection;
  // the states themselves start at zero in the first state_total elements of the same buffer.
  data->scratch_bytes =
      op->value_size * ((size_t)view.scratch_elems + (size_t)view.state_total);
  return 0;
}

void fg_shell_states_in(const FgOpConfig* op, const int32_t* state_width,
                        const void* const* inputs, void* states) {
  unsigned char* out = (unsigned char*)states;
  for (int k = 0; k < op->num_states; ++k) {
    const size_t bytes = op->value_size * (size_t)state_width[k];
    if (inputs != NULL && inputs[k] != NULL) {
      memcpy(out, inputs[k], bytes);
    } else {
      memset(out, 0, bytes);  // 0.0f and int16 0 are all zero bits
    }
    out += bytes;
  }
}

void fg_shell_states_out(const FgOpConfig* op, const int32_t* state_width, const void* states,
                         void* const* variables, void* const* outputs) {
  const unsigned char* in = (const unsigned char*)states;
  for (int k = 0; k < op->num_states; ++k) {
    const size_t bytes = op->value_size * (size_t)state_width[k];
    if (variables != NULL && variables[k] != NULL) memcpy(variables[k], in, bytes);
    if (outputs != NULL && outputs[k] != NULL) memcpy(outputs[k], in, bytes);
    in += bytes;
  }
}
