// The hand-written kernel shell (tflm_kernels/shell/fg_shell.c) without TFLM: a fake op (its
// plan, units and view functions) and a fake node (a table of tensors) stand in for the
// generated adapter. The same shell runs inside TFLM in tests/test_tflm_*.py.

#include "tflm_kernels/shell/fg_shell.h"

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace {

constexpr int kFloat32 = 1, kInt32 = 2, kInt16 = 7, kInt8 = 9;  // TfLiteType values

struct FakePlan {
  int32_t output_width;
  int32_t state_width[1];
  int32_t param_rank[2];
  int32_t param_dims[2][2];
  int32_t state_total;
  int32_t scratch;
  int32_t qparams, qparams_per_channel;
};

int32_t Units(int32_t, int32_t output_width) { return output_width; }

const char* MakePlan(int32_t input_size, int32_t units, int32_t timesteps, int32_t,
                     void* raw) {
  if (timesteps > 100) return "OP: too many timesteps";
  auto* plan = static_cast<FakePlan*>(raw);
  plan->output_width = units;
  plan->state_width[0] = units;
  plan->param_rank[0] = 2;
  plan->param_dims[0][0] = units;
  plan->param_dims[0][1] = input_size;
  plan->param_rank[1] = 1;
  plan->param_dims[1][0] = units;
  plan->state_total = units;
  plan->scratch = 10 * units;
  plan->qparams = 6;
  plan->qparams_per_channel = 6 + 2 * units;
  return nullptr;
}

void View(const void* raw, FgPlanView* view) {
  const auto* plan = static_cast<const FakePlan*>(raw);
  view->output_width = plan->output_width;
  view->state_width = plan->state_width;
  view->param_rank = plan->param_rank;
  view->param_dims = plan->param_dims;
  view->state_total = plan->state_total;
  view->scratch_elems = plan->scratch;
  view->qparam_count = plan->qparams;
  view->qparam_count_per_channel = plan->qparams_per_channel;
}

const int kF32Params[2] = {kFloat32, kFloat32};
const int kS8Params[2] = {kInt8, kInt32};

FgOpConfig F32Op() {
  return {"OP", 2, 1, kFloat32, "float32", kFloat32, "kTfLiteFloat32", kF32Params, 0, kInt32,
          kInt16, 0, 129, sizeof(float), Units, MakePlan, View};
}

FgOpConfig S8Op() {
  return {"OP", 2, 1, kInt8, "int8", kInt16, "kTfLiteInt16", kS8Params, 1, kInt32,
          kInt16, 3, 129, sizeof(int16_t), Units, MakePlan, View};
}

FgTensor T(int type, std::vector<int> dims, const void* data = nullptr) {
  FgTensor t{};
  t.type = type;
  t.rank = static_cast<int>(dims.size());
  for (size_t d = 0; d < dims.size(); ++d) t.dims[d] = dims[d];
  t.data = data;
  t.constant = data != nullptr;
  return t;
}

// A constant tensor (a weight stored in the model): the shell never reads a weight's data, only
// that it has some.
alignas(8) const uint8_t kWeightData[8] = {0};
FgTensor W(int type, std::vector<int> dims) { return T(type, std::move(dims), kWeightData); }

struct FakeNode {
  std::vector<FgTensor> inputs, outputs;
  std::string log;

  FgNode node() {
    return {this, static_cast<int>(inputs.size()), static_cast<int>(outputs.size()),
            [](void* impl, int index, FgTensor* out) {
              auto* n = static_cast<FakeNode*>(impl);
              if (index >= static_cast<int>(n->inputs.size())) return 0;
              *out = n->inputs[index];
              return 1;
            },
            [](void* impl, int index, FgTensor* out) {
              auto* n = static_cast<FakeNode*>(impl);
              if (index >= static_cast<int>(n->outputs.size())) return 0;
              *out = n->outputs[index];
              return 1;
            },
            [](void* impl, const char* message) { static_cast<FakeNode*>(impl)->log = message; },
            [](int type) { return type == kInt8 ? "INT8" : "OTHER"; }};
  }
};

// x [1, 5, 3], W [4, 3], b [4] -> y [1, 4]: a valid float op with 4 units.
FakeNode ValidF32() {
  FakeNode n;
  n.inputs = {T(kFloat32, {1, 5, 3}), W(kFloat32, {4, 3}), W(kFloat32, {4})};
  n.outputs = {T(kFloat32, {1, 4})};
  return n;
}

// {"weight_layout": 1} and {"weight_layout": 0} as flexbuffer maps (flatbuffers' Python
// flexbuffers.Builder: the key's bytes and NUL, then the one-entry map: keys vector offset 15,
// byte width 1, length 1, the value (1 or 0), its type byte 0x04 (int, width 1), the root offset
// 2, type 0x24 (map) and width 1). What fusegen's int8 writer stores, and a hand-edited copy.
const std::vector<uint8_t> kLayoutS8 = {0x77, 0x65, 0x69, 0x67, 0x68, 0x74, 0x5f, 0x6c,
                                        0x61, 0x79, 0x6f, 0x75, 0x74, 0x00, 0x01, 0x0f,
                                        0x01, 0x01, 0x01, 0x01, 0x04, 0x02, 0x24, 0x01};
std::vector<uint8_t> LayoutOption(uint8_t value) {
  std::vector<uint8_t> bytes = kLayoutS8;
  bytes[19] = value;
  return bytes;
}

// Prepare with no options (every default) for a float op, with the int8 layout for an int8 op.
int Prepare(const FgOpConfig& op, FakeNode& n, FgShellData* data, FakePlan* plan) {
  const FgNode node = n.node();
  if (op.has_s8_inputs) {
    return fg_shell_prepare(&op, &node, kLayoutS8.data(), kLayoutS8.size(), 4, plan, data);
  }
  return fg_shell_prepare(&op, &node, nullptr, 0, 4, plan, data);
}

TEST(FgShell, PrepareAcceptsAValidOpAndSizesScratch) {
  FakeNode n = ValidF32();
  FgShellData data{};
  FakePlan plan{};
  ASSERT_EQ(Prepare(F32Op(), n, &data, &plan), 0) << n.log;
  EXPECT_EQ(data.state_inputs, 0);
  EXPECT_EQ(data.options[kFgOptionReturnSequences], 0);  // no options: every default
  EXPECT_EQ(data.scratch_bytes, sizeof(float) * (40 + 4));  // scratch + state_total elements
  EXPECT_EQ(plan.param_dims[0][1], 3);
}

TEST(FgShell, PrepareNamesTheWrongWeight) {
  FakeNode n = ValidF32();
  n.inputs[2] = W(kFloat32, {5});
  FgShellData data{};
  FakePlan plan{};
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: weight input 1 has the wrong type or shape");
  n.inputs[2] = W(kInt32, {4});
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: weight input 1 has the wrong type or shape");
}

TEST(FgShell, PrepareRejectsAWeightThatIsNotConstant) {
  // A weight whose buffer was removed from the file (or a variable) lives in the arena: its
  // bytes are not the weights. The right type and shape do not make it one.
  FakeNode n = ValidF32();
  n.inputs[1] = T(kFloat32, {4, 3});
  FgShellData data{};
  FakePlan plan{};
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: weight input 0 is not a constant tensor");
}

TEST(FgShell, PrepareChecksTheStateTensors) {
  FakeNode n = ValidF32();
  n.inputs.push_back(T(kFloat32, {1, 4}));  // an initial state
  FgShellData data{};
  FakePlan plan{};
  ASSERT_EQ(Prepare(F32Op(), n, &data, &plan), 0) << n.log;
  EXPECT_EQ(data.state_inputs, 1);
  n.inputs.back() = T(kFloat32, {1, 5});
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: state 0 must be kTfLiteFloat32 [1, 4]");
  n.inputs.push_back(T(kFloat32, {1, 4}));  // one state too many
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: expected 3 inputs (+1 states) and 1 outputs, got 5 and 1");
}

TEST(FgShell, PrepareChecksIoTypesShapesAndThePlan) {
  FgShellData data{};
  FakePlan plan{};
  FakeNode n = ValidF32();
  n.inputs[0] = T(kInt8, {1, 5, 3});
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: only float32 input and output are supported, got INT8");
  n = ValidF32();
  n.inputs[0] = T(kFloat32, {2, 5, 3});
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: input must be [1, timesteps, features]");
  n = ValidF32();
  n.outputs[0] = T(kFloat32, {1, 5, 4});  // a sequence, but return_sequences is off
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: output shape does not match the input and return_sequences");
  n = ValidF32();
  n.inputs[0] = T(kFloat32, {1, 101, 3});
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: too many timesteps");  // the plan's own message
  n = ValidF32();
  n.outputs.clear();
  EXPECT_EQ(Prepare(F32Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: expected 3 inputs (+1 states) and 1 outputs, got 3 and 0");
}

// A projected op: its output width does not grow with units (Units finds none), so its
// "units" option carries them; the plan's output width is then checked against y.
int32_t NoUnits(int32_t, int32_t) { return -1; }
// encode_options({"units": 4}) (fusegen/converter/tflite_file.py)
const std::vector<uint8_t> kUnits4 = {0x75, 0x6e, 0x69, 0x74, 0x73, 0x00, 0x01, 0x07,
                                      0x01, 0x01, 0x01, 0x04, 0x04, 0x02, 0x24, 0x01};

TEST(FgShell, UnitsComeFromTheOptionWhenTheOutputDoesNotGrowWithThem) {
  FgOpConfig op = F32Op();
  op.units = NoUnits;
  FgShellData data{};
  FakePlan plan{};
  FakeNode n = ValidF32();
  EXPECT_EQ(Prepare(op, n, &data, &plan), 1);  // no option: units cannot be found
  EXPECT_EQ(n.log, "OP: output shape does not match the input and return_sequences");
  const FgNode node = n.node();
  ASSERT_EQ(fg_shell_prepare(&op, &node, kUnits4.data(), kUnits4.size(), 4, &plan, &data), 0)
      << n.log;
  EXPECT_EQ(data.options[kFgOptionUnits], 4);
  EXPECT_EQ(plan.param_dims[0][0], 4);
  n.outputs[0] = T(kFloat32, {1, 3});
  const FgNode narrow = n.node();
  EXPECT_EQ(fg_shell_prepare(&op, &narrow, kUnits4.data(), kUnits4.size(), 4, &plan, &data), 1);
  EXPECT_EQ(n.log, "OP: output width 3, 4 units need 4");
}

TEST(FgShell, Int8QparamsLengthFollowsTheChannelFlag) {
  const int32_t per_tensor[6] = {0, 1, 2, 3, 4, 5};
  std::vector<int32_t> per_channel(14, 7);
  FakeNode n;
  n.inputs = {T(kInt8, {1, 5, 3}), W(kInt8, {4, 3}), W(kInt32, {4}),
              T(kInt32, {6}, per_tensor), W(kInt16, {3, 129})};
  n.outputs = {T(kInt8, {1, 4})};
  FgShellData data{};
  FakePlan plan{};
  ASSERT_EQ(Prepare(S8Op(), n, &data, &plan), 0) << n.log;
  EXPECT_EQ(data.scratch_bytes, sizeof(int16_t) * (40 + 4));
  n.inputs[3] = T(kInt32, {14}, per_channel.data());  // flag 7 != 0: per channel, 6 + 2 * 4
  ASSERT_EQ(Prepare(S8Op(), n, &data, &plan), 0) << n.log;
  per_channel[0] = 0;  // per tensor, but 14 values
  EXPECT_EQ(Prepare(S8Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: input qparams is missing or has the wrong type or shape");
  n.inputs[3] = T(kInt32, {6});  // not a constant
  EXPECT_EQ(Prepare(S8Op(), n, &data, &plan), 1);
  n.inputs[3] = T(kInt32, {6}, per_tensor);
  n.inputs[4] = W(kInt16, {2, 129});
  EXPECT_EQ(Prepare(S8Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: input luts is missing or has the wrong type or shape");
  n.inputs[4] = T(kInt16, {3, 129});  // the right shape, not a constant
  EXPECT_EQ(Prepare(S8Op(), n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: input luts is missing or has the wrong type or shape");
}

// Two lookups that may run as clamps: luts rows 0 and 2.
const int32_t kClampRows[2] = {0, 2};
void ClampView(const void* raw, FgPlanView* view) {
  View(raw, view);
  view->num_clamp_rows = 2;
  view->clamp_rows = kClampRows;
}

// Row `row` of luts made the clamp row of lo..hi (abi.clamp_row).
void SetClampRow(int16_t* luts, int row, int16_t lo, int16_t hi) {
  int16_t* r = luts + row * FG_LUT_SIZE;
  r[0] = 32767;
  r[FG_LUT_SIZE - 1] = -32768;
  r[FG_CLAMP_LO_KNOT] = lo;
  r[FG_CLAMP_HI_KNOT] = hi;
}

TEST(FgShell, Int8ClampRowsNeedLoAtMostHi) {
  const int32_t qparams[6] = {0, 1, 2, 3, 4, 5};
  static int16_t luts[3 * FG_LUT_SIZE];
  for (int16_t& v : luts) v = 0;
  SetClampRow(luts, 0, 0, 100);  // row 0 clamps to 0..100; row 2 is a table (all zero)
  FakeNode n;
  n.inputs = {T(kInt8, {1, 5, 3}), W(kInt8, {4, 3}), W(kInt32, {4}),
              T(kInt32, {6}, qparams), T(kInt16, {3, FG_LUT_SIZE}, luts)};
  n.outputs = {T(kInt8, {1, 4})};
  FgShellData data{};
  FakePlan plan{};
  FgOpConfig op = S8Op();
  op.view = ClampView;
  ASSERT_EQ(Prepare(op, n, &data, &plan), 0) << n.log;
  SetClampRow(luts, 0, -32768, -32768);  // lo == hi: a constant, allowed
  ASSERT_EQ(Prepare(op, n, &data, &plan), 0) << n.log;
  SetClampRow(luts, 2, 7, 3);  // the second clamp row has lo > hi
  EXPECT_EQ(Prepare(op, n, &data, &plan), 1);
  EXPECT_EQ(n.log, "OP: luts row 2 is a clamp to 7..3, lo above hi; reconvert the model");
  luts[2 * FG_LUT_SIZE] = -32768;  // knot 0 no longer above the last: a table, any values
  ASSERT_EQ(Prepare(op, n, &data, &plan), 0) << n.log;
  SetClampRow(luts, 1, 7, 3);  // row 1 is no lookup that may be a clamp: a table, not read
  ASSERT_EQ(Prepare(op, n, &data, &plan), 0) << n.log;
  op.view = View;  // an op without clamp lookups reads none of these values
  SetClampRow(luts, 0, 9, -9);
  EXPECT_EQ(Prepare(op, n, &data, &plan), 0) << n.log;
}

TEST(FgShell, PrepareRejectsWeightsInAnotherLayout) {
  const int32_t per_tensor[6] = {0, 1, 2, 3, 4, 5};
  FakeNode n;
  n.inputs = {T(kInt8, {1, 5, 3}), W(kInt8, {4, 3}), W(kInt32, {4}),
              T(kInt32, {6}, per_tensor), W(kInt16, {3, 129})};
  n.outputs = {T(kInt8, {1, 4})};
  FgShellData data{};
  FakePlan plan{};
  const FgOpConfig s8 = S8Op();
  const FgNode node = n.node();
  const std::vector<uint8_t> row_major = LayoutOption(0);  // a hand-edited int8 file
  ASSERT_EQ(fg_shell_prepare(&s8, &node, kLayoutS8.data(), kLayoutS8.size(), 4, &plan, &data), 0)
      << n.log;
  EXPECT_EQ(data.options[kFgOptionWeightLayout], FG_WEIGHT_LAYOUT_S8);
  EXPECT_EQ(fg_shell_prepare(&s8, &node, row_major.data(), row_major.size(), 4, &plan, &data), 1);
  EXPECT_EQ(n.log, "OP: option weight_layout is 0, this kernel reads weight layout 1; convert "
                   "the model again with this fusegen version");
  EXPECT_EQ(fg_shell_prepare(&s8, &node, nullptr, 0, 4, &plan, &data), 1);  // a file from before
  // A float op reads row-major matrices: the int8 tag is refused there.
  FakeNode f = ValidF32();
  const FgOpConfig f32 = F32Op();
  const FgNode fnode = f.node();
  EXPECT_EQ(fg_shell_prepare(&f32, &fnode, kLayoutS8.data(), kLayoutS8.size(), 4, &plan, &data),
            1);
  EXPECT_EQ(f.log, "OP: option weight_layout is 1, this kernel reads weight layout 0; convert "
                   "the model again with this fusegen version");
  EXPECT_EQ(FG_WEIGHT_LAYOUT_F32, 0);
}

TEST(FgShell, StatesInZeroOrCopyAndOutToVariablesAndOutputs) {
  const FgOpConfig op = F32Op();
  const int32_t widths[1] = {3};
  const float initial[3] = {1.5f, -2.0f, 3.25f};
  float states[3] = {9.0f, 9.0f, 9.0f};
  fg_shell_states_in(&op, widths, nullptr, states);
  EXPECT_EQ(states[0], 0.0f);
  EXPECT_EQ(states[2], 0.0f);
  const void* inputs[1] = {initial};
  fg_shell_states_in(&op, widths, inputs, states);
  EXPECT_EQ(std::memcmp(states, initial, sizeof(initial)), 0);
  float variable[3] = {}, output[3] = {};
  void* variables[1] = {variable};
  void* outputs[1] = {nullptr};
  fg_shell_states_out(&op, widths, states, variables, outputs);
  EXPECT_EQ(std::memcmp(variable, initial, sizeof(initial)), 0);
  EXPECT_EQ(output[0], 0.0f);  // skipped
}

// {"a": 1}, the map of tests/cpp/fg_flexbuffer_test.cc (derivation there).
const std::vector<uint8_t> kOneKey = {0x61, 0x00, 0x01, 0x03, 0x01, 0x01,
                                      0x01, 0x01, 0x04, 0x02, 0x24, 0x01};

TEST(FgShell, OptionsAreReadByKindWithDefaults) {
  const FgOptionDef defs[2] = {{"a", kFgOptionKindInt, 0}, {"b", kFgOptionKindInt, 5}};
  int64_t values[2] = {-1, -1};
  char message[64] = "";
  ASSERT_EQ(fg_shell_read_options(defs, 2, kOneKey.data(), kOneKey.size(), "OP", values,
                                  message, sizeof(message)), 0);
  EXPECT_EQ(values[0], 1);
  EXPECT_EQ(values[1], 5);  // missing: the default
  const FgOptionDef as_bool[1] = {{"a", kFgOptionKindBool, 0}};
  ASSERT_EQ(fg_shell_read_options(as_bool, 1, kOneKey.data(), kOneKey.size(), "OP", values,
                                  message, sizeof(message)), 0);
  EXPECT_EQ(values[0], 1);
  const uint8_t garbage[3] = {0xff, 0xff, 0xff};
  EXPECT_EQ(fg_shell_read_options(defs, 2, garbage, sizeof(garbage), "OP", values, message,
                                  sizeof(message)), 1);
  EXPECT_EQ(std::string(message).rfind("OP: option a: ", 0), 0u) << message;
}

}  // namespace

namespace {

// tflite_file.encode_options({"mask": M}) for M = 1, 2, 7 (the converter's bytes; the value is
// the 11th byte): the op's last input is a bool step mask (1) or an int32 length (2).
std::vector<uint8_t> MaskOptions(uint8_t mode) {
  return {109, 97, 115, 107, 0, 1, 6, 1, 1, 1, mode, 4, 2, 36, 1};
}

constexpr int kBool = 6;  // kTfLiteBool

int PrepareWith(FakeNode& n, const std::vector<uint8_t>& options, FgShellData* data) {
  FakePlan plan{};
  const FgNode node = n.node();
  const FgOpConfig op = F32Op();
  return fg_shell_prepare(&op, &node, options.data(), options.size(), 4, &plan, data);
}

TEST(FgShell, PrepareTakesTheMaskAsTheLastInput) {
  FakeNode n = ValidF32();
  n.inputs.push_back(T(kBool, {1, 5}));
  FgShellData data{};
  ASSERT_EQ(PrepareWith(n, MaskOptions(FG_MASK_STEPS), &data), 0) << n.log;
  EXPECT_EQ(data.mask_input, 3);
  EXPECT_EQ(data.mask_inner, 1);
  EXPECT_EQ(data.state_inputs, 0);  // the mask is not a state
  n.inputs.back() = T(kBool, {1, 5, 3});  // NOT_EQUAL of the input, reduced in the op
  ASSERT_EQ(PrepareWith(n, MaskOptions(FG_MASK_STEPS), &data), 0) << n.log;
  EXPECT_EQ(data.mask_inner, 3);
  n.inputs.back() = T(kInt32, {});
  ASSERT_EQ(PrepareWith(n, MaskOptions(FG_MASK_LENGTH), &data), 0) << n.log;
  EXPECT_EQ(data.mask_input, 3);
}

TEST(FgShell, PrepareRejectsABadMask) {
  FakeNode n = ValidF32();
  n.inputs.push_back(T(kBool, {1, 4}));  // 4 steps, the input has 5
  FgShellData data{};
  EXPECT_EQ(PrepareWith(n, MaskOptions(FG_MASK_STEPS), &data), 1);
  EXPECT_EQ(n.log, "OP: the last input must be a bool mask [1, 5] or [1, 5, K]");
  n.inputs.back() = T(kFloat32, {});
  EXPECT_EQ(PrepareWith(n, MaskOptions(FG_MASK_LENGTH), &data), 1);
  EXPECT_EQ(n.log, "OP: the last input must be an int32 length (a scalar)");
  EXPECT_EQ(PrepareWith(n, MaskOptions(7), &data), 1);
  EXPECT_EQ(n.log, "OP: option mask must be 0, 1 or 2");
  n.inputs.pop_back();  // option mask set, no mask input: the weights are one short
  n.inputs.pop_back();
  EXPECT_EQ(PrepareWith(n, MaskOptions(FG_MASK_STEPS), &data), 1);
}

}  // namespace
