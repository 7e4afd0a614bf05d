// Tests of the float32 runtime (tflm_kernels/runtime/fg_runtime_f32.c) against references
// computed in double from each op's mathematical definition.
//
// Tolerances are in ulps of the float result. Ops that are one IEEE operation, or a selection,
// are exact. exp and tanh are the runtime's own (no libm); their budgets are the errors measured
// over every float by DISABLED_Exhaustive below (run it with --gtest_also_run_disabled_tests),
// plus the roundings of the ops built on them, counted per op below.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "gtest/gtest.h"
#include "tflm_kernels/runtime/fg_runtime.h"

namespace {

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// `ulps` units in the last place of the exact result `ref`. An ulp of a normal float y is at most
// FLT_EPSILON * |y|; below FLT_MIN the spacing is fixed at FLT_TRUE_MIN.
double UlpTolerance(double ref, double ulps) {
  return ulps * std::max(std::fabs(ref) * static_cast<double>(FLT_EPSILON),
                         static_cast<double>(FLT_TRUE_MIN));
}

// Equality that treats all NaNs as equal and distinguishes -0 from +0, i.e. "same float value".
::testing::AssertionResult SameFloat(float got, float want) {
  if (std::isnan(got) && std::isnan(want)) return ::testing::AssertionSuccess();
  if (got == want && std::signbit(got) == std::signbit(want)) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "got " << got << ", want " << want;
}

// Inputs for the unary ops: a dense sweep of [-14, 14] (every breakpoint and the whole non-flat
// range of each activation), the saturation region out to +-100 (expf overflows above ~88.72 and
// its result goes subnormal below ~-87.3), tiny magnitudes and both zeros.
std::vector<float> UnaryGrid() {
  std::vector<float> grid;
  for (int i = -20000; i <= 20000; ++i) grid.push_back(static_cast<float>(i) * 0.0007f);
  for (float v : {-3.0f, 3.0f, 6.0f, 20.0f, 30.0f, 50.0f, 87.0f, 88.0f, 89.0f, 100.0f, 1e-3f,
                  1e-10f, 1e-30f, FLT_MIN}) {
    grid.push_back(v);
    grid.push_back(-v);
  }
  grid.push_back(0.0f);
  grid.push_back(-0.0f);
  return grid;
}

double RefSigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

std::vector<float> Unary(FgUnaryOp op, const std::vector<float>& x) {
  std::vector<float> y(x.size());
  fg_unary_f32(op, x.data(), y.data(), static_cast<int32_t>(x.size()));
  return y;
}

float Unary(FgUnaryOp op, float x) {
  float y = 0.0f;
  fg_unary_f32(op, &x, &y, 1);
  return y;
}

// Checks op on the whole grid against ref(x) in double, within tolerance(x, ref) (absolute).
template <typename Ref, typename Tol>
void ExpectUnaryNear(FgUnaryOp op, Ref ref, Tol tolerance) {
  const std::vector<float> x = UnaryGrid();
  const std::vector<float> y = Unary(op, x);
  for (size_t i = 0; i < x.size(); ++i) {
    const double xd = static_cast<double>(x[i]);
    const double want = ref(xd);
    if (std::isinf(static_cast<float>(want))) {
      // Beyond FLT_MAX after rounding (exp of x > 88.72): the only right float answer is inf.
      EXPECT_TRUE(SameFloat(y[i], static_cast<float>(want))) << "x = " << x[i];
      continue;
    }
    EXPECT_NEAR(static_cast<double>(y[i]), want, tolerance(xd, want)) << "x = " << x[i];
  }
}

// ---- Unary ops -----------------------------------------------------------------------------

// sigmoid and tanh are bounded in absolute error (fg_elementwise.h: 1.2e-7 and 2.1e-7 measured
// over every float; the issue's bound is 3e-7), not in ulps.
constexpr double kSigmoidMaxAbs = 1.1e-7;
constexpr double kTanhMaxAbs = 1.6e-7;

TEST(FgUnary, SigmoidMatchesDefinition) {
  ExpectUnaryNear(kFgSigmoid, RefSigmoid, [](double, double) { return kSigmoidMaxAbs; });
}

TEST(FgUnary, SigmoidKeepsRelativeAccuracyForNegativeX) {
  // For x < 0 the result is Q / (P 2^n + Q) with P 2^n / Q = e^-x >= 1, so it keeps its relative
  // accuracy (a few roundings, plus that of y = -x log2 e, which grows with |x|: 4e-6 at x = -87).
  for (float x = -86.9f; x < 0.0f; x += 0.37f) {
    const double ref = RefSigmoid(static_cast<double>(x));
    EXPECT_NEAR(static_cast<double>(Unary(kFgSigmoid, x)), ref, 4e-6 * ref) << "x = " << x;
  }
}

TEST(FgUnary, SigmoidSaturatesWithoutOverflow) {
  // 1 + exp(-100) rounds to 1 in float, so the result is exactly 1.
  EXPECT_TRUE(SameFloat(Unary(kFgSigmoid, 100.0f), 1.0f));
  // |x| >= 87 takes the saturating branch: sigmoid(-87) = 1.6e-38 is returned as 0.
  EXPECT_TRUE(SameFloat(Unary(kFgSigmoid, -100.0f), 0.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgSigmoid, -kInf), 0.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgSigmoid, kInf), 1.0f));
  // Just inside the limit 2^y is still a normal float: no overflow to inf, no 1 / (1 + inf).
  EXPECT_GT(Unary(kFgSigmoid, -86.99f), 0.0f);
  EXPECT_TRUE(SameFloat(Unary(kFgSigmoid, 86.99f), 1.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgSigmoid, 0.0f), 0.5f));  // P = Q = 1 exactly, 1 / (1 + 1).
}

TEST(FgUnary, HardSigmoidMatchesDefinition) {
  // x + 3 rounds once (relative 2^-24) and the division once more: at most 2^-23 relative,
  // which is up to 2 ulp when the result sits at the bottom of its binade.
  ExpectUnaryNear(
      kFgHardSigmoid,
      [](double x) { return std::min(std::max(x + 3.0, 0.0), 6.0) / 6.0; },
      [](double, double ref) { return UlpTolerance(ref, 2); });
}

TEST(FgUnary, HardSigmoidDividesBySixLikeKeras) {
  // Keras 3 computes relu6(x + 3) / 6 and eager TensorFlow rounds exactly like this float
  // expression, so it must match bit for bit, everywhere on the grid.
  const std::vector<float> x = UnaryGrid();
  const std::vector<float> y = Unary(kFgHardSigmoid, x);
  for (size_t i = 0; i < x.size(); ++i) {
    const float want = std::min(std::max(x[i] + 3.0f, 0.0f), 6.0f) / 6.0f;
    EXPECT_TRUE(SameFloat(y[i], want)) << "x = " << x[i];
  }
  // x = 2: 5 / 6 = 13981013.33 * 2^-24, which rounds to 13981013 * 2^-24 = 0.83333331. The
  // multiplication 5 * float(1/6) = 5 * 11184811 * 2^-26 = 13981013.75 * 2^-24 would round up
  // to 13981014 * 2^-24 instead; this pins the division.
  EXPECT_TRUE(SameFloat(Unary(kFgHardSigmoid, 2.0f), std::ldexp(13981013.0f, -24)));
  EXPECT_TRUE(SameFloat(Unary(kFgHardSigmoid, -100.0f), 0.0f));  // relu6(-97) / 6
  EXPECT_TRUE(SameFloat(Unary(kFgHardSigmoid, 100.0f), 1.0f));   // relu6(103) / 6 = 6 / 6
  EXPECT_TRUE(SameFloat(Unary(kFgHardSigmoid, 0.0f), 0.5f));     // 3 / 6, exact
}

TEST(FgUnary, TanhMatchesDefinition) {
  ExpectUnaryNear(kFgTanh, [](double x) { return std::tanh(x); },
                  [](double, double) { return kTanhMaxAbs; });
  EXPECT_TRUE(SameFloat(Unary(kFgTanh, 100.0f), 1.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgTanh, -100.0f), -1.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgTanh, kInf), 1.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgTanh, -kInf), -1.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgTanh, 0.0f), 0.0f));  // (1 - 1) / (1 + 1), exact
  // Documented: the sign of zero is not kept (tanh(-0) = +0), nor tiny values (absolute bound).
  EXPECT_TRUE(SameFloat(Unary(kFgTanh, -0.0f), 0.0f));
}

TEST(FgUnary, SoftsignMatchesDefinition) {
  // fabsf is exact, 1 + |x| and the division round once each: at most 1.5 ulp.
  ExpectUnaryNear(kFgSoftsign, [](double x) { return x / (1.0 + std::fabs(x)); },
                  [](double, double ref) { return UlpTolerance(ref, 2); });
  // 100 / 101 and -100 / 101: both operands exact, so one rounding of the true quotient.
  EXPECT_TRUE(SameFloat(Unary(kFgSoftsign, 100.0f), 100.0f / 101.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgSoftsign, -100.0f), -100.0f / 101.0f));
}

TEST(FgUnary, SiluMatchesDefinition) {
  // x * sigmoid(x): sigmoid's absolute error scaled by |x|, plus the multiply (0.5 ulp). Below
  // x = -87 sigmoid is 0 where the true value is under 1.7e-38.
  ExpectUnaryNear(
      kFgSilu, [](double x) { return x * RefSigmoid(x); },
      [](double x, double ref) {
        return UlpTolerance(ref, 1) + std::fabs(x) * std::min(kSigmoidMaxAbs, 4e-6 * RefSigmoid(x)) +
               std::fabs(x) * 1.7e-38;
      });
  EXPECT_TRUE(SameFloat(Unary(kFgSilu, 100.0f), 100.0f));  // 100 * sigmoid(100) = 100 * 1
}

TEST(FgUnary, ExpMatchesDefinition) {
  // The runtime's exp (<= 1 ulp measured); the grid's x >= 89 must give +inf, x <= -100 a
  // subnormal.
  ExpectUnaryNear(kFgExp, [](double x) { return std::exp(x); },
                  [](double, double ref) { return UlpTolerance(ref, 2); });
  EXPECT_TRUE(SameFloat(Unary(kFgExp, 100.0f), kInf));
  EXPECT_TRUE(SameFloat(Unary(kFgExp, 0.0f), 1.0f));
}

// Max |error| of exp (in ulps of the result), sigmoid and tanh (absolute) over the float values
// with bit pattern i * stride, against libm in double.
struct ActivationErrors {
  double exp_ulps = 0, sigmoid_abs = 0, tanh_abs = 0;
};

ActivationErrors MeasureActivationErrors(uint32_t stride) {
  ActivationErrors e;
  for (uint64_t bits = 0; bits <= 0xffffffffu; bits += stride) {
    const uint32_t u = static_cast<uint32_t>(bits);
    float x;
    std::memcpy(&x, &u, sizeof(x));
    if (std::isnan(x)) continue;
    const double xd = static_cast<double>(x);
    const double want_exp = std::exp(xd);
    const float got_exp = Unary(kFgExp, x);
    if (want_exp > static_cast<double>(FLT_MAX)) {
      EXPECT_TRUE(SameFloat(got_exp, kInf)) << "x = " << x;
    } else {
      const double ulp = std::max(std::ldexp(std::fabs(want_exp), -23),
                                  static_cast<double>(FLT_TRUE_MIN));
      e.exp_ulps = std::max(e.exp_ulps, std::fabs(static_cast<double>(got_exp) - want_exp) / ulp);
    }
    e.sigmoid_abs = std::max(
        e.sigmoid_abs, std::fabs(static_cast<double>(Unary(kFgSigmoid, x)) - RefSigmoid(xd)));
    e.tanh_abs =
        std::max(e.tanh_abs, std::fabs(static_cast<double>(Unary(kFgTanh, x)) - std::tanh(xd)));
  }
  return e;
}

TEST(FgUnary, ActivationErrorsOverTheWholeFloatRange) {
  // Every 2^13-th bit pattern: 524,288 values spread over all binades, both signs. The bounds are
  // the measured maxima over every float (DISABLED_Exhaustive), under the issue's 3e-7 absolute
  // for sigmoid and tanh, and 1 ulp for exp.
  const ActivationErrors e = MeasureActivationErrors(1u << 13);
  EXPECT_LE(e.exp_ulps, 1.0);
  EXPECT_LE(e.sigmoid_abs, kSigmoidMaxAbs);
  EXPECT_LE(e.tanh_abs, kTanhMaxAbs);
}

TEST(FgUnary, ActivationErrorsDenseWhereTheyPeak) {
  // Every float bit pattern / 2^4 with |x| in [2^-4, 16): where the errors are largest.
  double sigmoid_abs = 0, tanh_abs = 0;
  for (uint32_t u = 0x3d800000u; u < 0x41800000u; u += 16) {
    for (const uint32_t sign : {0u, 0x80000000u}) {
      const uint32_t bits = u | sign;
      float x;
      std::memcpy(&x, &bits, sizeof(x));
      const double xd = static_cast<double>(x);
      sigmoid_abs = std::max(sigmoid_abs,
                             std::fabs(static_cast<double>(Unary(kFgSigmoid, x)) - RefSigmoid(xd)));
      tanh_abs = std::max(tanh_abs,
                          std::fabs(static_cast<double>(Unary(kFgTanh, x)) - std::tanh(xd)));
    }
  }
  EXPECT_LE(sigmoid_abs, kSigmoidMaxAbs);
  EXPECT_LE(tanh_abs, kTanhMaxAbs);
}

TEST(FgUnary, DISABLED_Exhaustive) {
  // Every float (minutes): the figures documented in fg_runtime_f32.c.
  const ActivationErrors e = MeasureActivationErrors(1);
  std::printf("exp %.3g ulp, sigmoid %.3g, tanh %.3g\n", e.exp_ulps, e.sigmoid_abs, e.tanh_abs);
  EXPECT_LE(e.sigmoid_abs, kSigmoidMaxAbs);
  EXPECT_LE(e.tanh_abs, kTanhMaxAbs);
}

TEST(FgUnary, SelectionsAreExact) {
  const std::vector<float> x = UnaryGrid();
  const std::vector<float> neg = Unary(kFgNeg, x);
  const std::vector<float> relu = Unary(kFgRelu, x);
  const std::vector<float> relu6 = Unary(kFgRelu6, x);
  for (size_t i = 0; i < x.size(); ++i) {
    const double xd = static_cast<double>(x[i]);
    EXPECT_TRUE(SameFloat(neg[i], static_cast<float>(-xd))) << x[i];
    EXPECT_TRUE(SameFloat(relu[i], xd < 0.0 ? 0.0f : x[i])) << x[i];
    EXPECT_TRUE(SameFloat(relu6[i], xd < 0.0 ? 0.0f : (xd > 6.0 ? 6.0f : x[i]))) << x[i];
  }
  // Hand values: relu6(100) = 6, relu6(-100) = 0; relu(-0) = relu6(-0) = -0 (tf.nn.relu and
  // tf.nn.relu6 return their input unless it is out of range); -(0) = -0.
  EXPECT_TRUE(SameFloat(Unary(kFgRelu6, 100.0f), 6.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgRelu6, -100.0f), 0.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgRelu, -0.0f), -0.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgRelu6, -0.0f), -0.0f));
  EXPECT_TRUE(SameFloat(Unary(kFgNeg, 0.0f), -0.0f));
}

class FgUnaryAllOps : public ::testing::TestWithParam<FgUnaryOp> {};

TEST_P(FgUnaryAllOps, NanPropagates) {
  // TensorFlow propagates NaN through every one of these ops; a NaN state must stay visible.
  EXPECT_TRUE(std::isnan(Unary(GetParam(), kNan)));
}

TEST_P(FgUnaryAllOps, InPlaceEqualsOutOfPlace) {
  const std::vector<float> x = UnaryGrid();
  const std::vector<float> out_of_place = Unary(GetParam(), x);
  std::vector<float> y = x;
  fg_unary_f32(GetParam(), y.data(), y.data(), static_cast<int32_t>(y.size()));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_TRUE(SameFloat(y[i], out_of_place[i])) << x[i];
}

TEST_P(FgUnaryAllOps, NonPositiveCountTouchesNothing) {
  float x = 1.0f;
  float y = 42.0f;
  fg_unary_f32(GetParam(), &x, &y, 0);
  fg_unary_f32(GetParam(), &x, &y, -3);
  EXPECT_TRUE(SameFloat(y, 42.0f));
}

const char* UnaryName(FgUnaryOp op) {
  switch (op) {
    case kFgNeg: return "Neg";
    case kFgSigmoid: return "Sigmoid";
    case kFgHardSigmoid: return "HardSigmoid";
    case kFgTanh: return "Tanh";
    case kFgRelu: return "Relu";
    case kFgRelu6: return "Relu6";
    case kFgSoftsign: return "Softsign";
    case kFgSilu: return "Silu";
    case kFgExp: return "Exp";
    case kFgAbs: return "Abs";
    case kFgSquare: return "Square";
    case kFgSqrt: return "Sqrt";
    case kFgRsqrt: return "Rsqrt";
    case kFgLog: return "Log";
  }
  return "Unknown";
}

std::string UnaryTestName(const ::testing::TestParamInfo<FgUnaryOp>& param_info) {
  return UnaryName(param_info.param);
}

INSTANTIATE_TEST_SUITE_P(, FgUnaryAllOps,
                         ::testing::Values(kFgNeg, kFgSigmoid, kFgHardSigmoid, kFgTanh, kFgRelu,
                                           kFgRelu6, kFgSoftsign, kFgSilu, kFgExp, kFgAbs,
                                           kFgSquare, kFgSqrt, kFgRsqrt, kFgLog),
                         UnaryTestName);

TEST(FgUnary, UnknownOpFillsNan) {
  // One past the last op; still inside the enum's value range, so the cast is well defined.
  const auto bad = static_cast<FgUnaryOp>(kFgLog + 1);
  const std::vector<float> y = Unary(bad, std::vector<float>{1.0f, 2.0f, 3.0f});
  for (float v : y) EXPECT_TRUE(std::isnan(v));
}

TEST(FgUnary, ElementaryMathMatchesDefinition) {
  // abs, square (one IEEE multiply) and sqrt are correctly rounded: exact against double
  // rounded once. rsqrt is 1.0f / sqrtf (two roundings) and logf is within a few ulp.
  for (float v : UnaryGrid()) {
    const double d = static_cast<double>(v);
    EXPECT_TRUE(SameFloat(Unary(kFgAbs, v), std::fabs(v))) << v;
    EXPECT_TRUE(SameFloat(Unary(kFgSquare, v), static_cast<float>(d * d))) << v;
    if (v >= 0.0f) {
      EXPECT_TRUE(SameFloat(Unary(kFgSqrt, v), static_cast<float>(std::sqrt(d)))) << v;
      EXPECT_TRUE(SameFloat(Unary(kFgRsqrt, v), 1.0f / static_cast<float>(std::sqrt(d)))) << v;
    } else {
      EXPECT_TRUE(std::isnan(Unary(kFgSqrt, v))) << v;
    }
    if (v > 0.0f) {
      const double want = std::log(d);
      EXPECT_NEAR(static_cast<double>(Unary(kFgLog, v)), want, 4e-7 * std::fabs(want) + 1e-30)
          << v;
    }
  }
  EXPECT_TRUE(std::isinf(Unary(kFgLog, 0.0f)) && Unary(kFgLog, 0.0f) < 0.0f);
  EXPECT_TRUE(std::isnan(Unary(kFgLog, -1.0f)));
}

TEST(FgPow, ConstantExponent) {
  const std::vector<float> x = {0.0f, 0.25f, 1.0f, 2.0f, 9.0f, -2.0f};
  std::vector<float> y(x.size());
  fg_pow_f32(x.data(), 2.0f, y.data(), static_cast<int32_t>(x.size()));
  for (size_t i = 0; i < x.size(); ++i) EXPECT_TRUE(SameFloat(y[i], x[i] * x[i])) << x[i];
  fg_pow_f32(x.data(), 0.5f, y.data(), static_cast<int32_t>(x.size()));
  EXPECT_TRUE(SameFloat(y[4], 3.0f));
  EXPECT_TRUE(std::isnan(y[5]));  // a negative base with a fractional exponent, as tf.pow
  y = x;
  fg_pow_f32(y.data(), 1.5f, y.data(), static_cast<int32_t>(y.size()));  // in place
  EXPECT_NEAR(static_cast<double>(y[4]), 27.0, 1e-5);
  float untouched = 42.0f;
  fg_pow_f32(x.data(), 3.0f, &untouched, 0);
  EXPECT_TRUE(SameFloat(untouched, 42.0f));
}

TEST(FgWhere, EveryComparisonBroadcastAndNan) {
  const std::vector<float> a = {-1.0f, 0.0f, 2.0f, kNan, 3.0f};
  const float b = 0.0f;
  const std::vector<float> x = {10.0f, 20.0f, 30.0f, 40.0f, 50.0f};
  const float t = -7.0f;
  const struct {
    FgCompareOp cmp;
    bool (*ref)(float, float);
  } cases[] = {
      {kFgGreater, [](float p, float q) { return p > q; }},
      {kFgGreaterEqual, [](float p, float q) { return p >= q; }},
      {kFgLess, [](float p, float q) { return p < q; }},
      {kFgLessEqual, [](float p, float q) { return p <= q; }},
      {kFgEqual, [](float p, float q) { return p == q; }},
      {kFgNotEqual, [](float p, float q) { return p != q; }},
  };
  for (const auto& c : cases) {
    std::vector<float> y(a.size());
    fg_where_f32(c.cmp, a.data(), 1, &b, 0, x.data(), 1, &t, 0, y.data(),
                 static_cast<int32_t>(y.size()));
    for (size_t i = 0; i < a.size(); ++i) {
      EXPECT_TRUE(SameFloat(y[i], c.ref(a[i], b) ? x[i] : t)) << c.cmp << " " << a[i];
    }
  }
  std::vector<float> y = x;  // in place over x
  fg_where_f32(kFgLess, a.data(), 1, &b, 0, y.data(), 1, &t, 0, y.data(),
               static_cast<int32_t>(y.size()));
  EXPECT_TRUE(SameFloat(y[0], 10.0f));
  EXPECT_TRUE(SameFloat(y[2], -7.0f));
  const std::vector<float> bad = {1.0f, 2.0f};
  std::vector<float> out(2);
  fg_where_f32(static_cast<FgCompareOp>(kFgNotEqual + 1), bad.data(), 1, bad.data(), 1,
               bad.data(), 1, bad.data(), 1, out.data(), 2);
  EXPECT_TRUE(std::isnan(out[0]) && std::isnan(out[1]));
}

// ---- Binary ops ----------------------------------------------------------------------------

// The exact result rounded to float. For + - * / computing in double and rounding once more is
// the correctly rounded float result: double has 53 >= 2 * 24 + 2 significand bits, which makes
// the double rounding innocuous for these operations (Figueroa, 1995). So the runtime, which
// does one IEEE float operation, must match exactly.
float RefBinary(FgBinaryOp op, float a, float b) {
  const double ad = static_cast<double>(a);
  const double bd = static_cast<double>(b);
  if (std::isnan(a) || std::isnan(b)) return kNan;  // tf.maximum / tf.minimum propagate NaN
  switch (op) {
    case kFgAdd: return static_cast<float>(ad + bd);
    case kFgSub: return static_cast<float>(ad - bd);
    case kFgMul: return static_cast<float>(ad * bd);
    case kFgDiv: return static_cast<float>(ad / bd);
    case kFgMaximum: return static_cast<float>(std::max(ad, bd));
    case kFgMinimum: return static_cast<float>(std::min(ad, bd));
  }
  return kNan;
}

const char* BinaryName(FgBinaryOp op) {
  switch (op) {
    case kFgAdd: return "Add";
    case kFgSub: return "Sub";
    case kFgMul: return "Mul";
    case kFgDiv: return "Div";
    case kFgMaximum: return "Maximum";
    case kFgMinimum: return "Minimum";
  }
  return "Unknown";
}

// Operands of 13 elements (not a multiple of 4 or 8) with mixed signs, a NaN, a zero divisor
// (b[3] = 0: division gives +-inf) and values whose products and quotients are inexact.
const std::vector<float> kA = {1.5f,  -2.25f, 0.1f,   7.0f,   kNan, -0.3f, 3.0f,
                               -1e20f, 1e-20f, 0.7f,  -5.5f,  2.0f, 100.0f};
const std::vector<float> kB = {0.2f,  4.0f,  -0.3f, 0.0f,  1.0f,  kNan, 3.0f,
                               1e19f, -3e-21f, 0.7f, 11.0f, -8.0f, 0.01f};

using BinaryCase = std::tuple<FgBinaryOp, int32_t, int32_t>;  // op, a_step, b_step

class FgBinary : public ::testing::TestWithParam<BinaryCase> {};

TEST_P(FgBinary, MatchesCorrectlyRoundedReference) {
  const auto [op, a_step, b_step] = GetParam();
  const int32_t n = static_cast<int32_t>(kA.size());
  std::vector<float> y(kA.size());
  fg_binary_f32(op, kA.data(), a_step, kB.data(), b_step, y.data(), n);
  for (int32_t i = 0; i < n; ++i) {
    const float a = kA[static_cast<size_t>(i * a_step)];
    const float b = kB[static_cast<size_t>(i * b_step)];
    EXPECT_TRUE(SameFloat(y[static_cast<size_t>(i)], RefBinary(op, a, b)))
        << "i = " << i << ", a = " << a << ", b = " << b;
  }
}

TEST_P(FgBinary, InPlaceEqualsOutOfPlace) {
  const auto [op, a_step, b_step] = GetParam();
  const int32_t n = static_cast<int32_t>(kA.size());
  std::vector<float> want(kA.size());
  fg_binary_f32(op, kA.data(), a_step, kB.data(), b_step, want.data(), n);
  // Only a vector operand can share storage with y (a broadcast one would be overwritten at
  // element 0 before it is read again).
  if (a_step == 1) {
    std::vector<float> y = kA;
    fg_binary_f32(op, y.data(), 1, kB.data(), b_step, y.data(), n);
    for (size_t i = 0; i < y.size(); ++i) EXPECT_TRUE(SameFloat(y[i], want[i])) << i;
  }
  if (b_step == 1) {
    std::vector<float> y = kB;
    fg_binary_f32(op, kA.data(), a_step, y.data(), 1, y.data(), n);
    for (size_t i = 0; i < y.size(); ++i) EXPECT_TRUE(SameFloat(y[i], want[i])) << i;
  }
}

std::string BinaryTestName(const ::testing::TestParamInfo<BinaryCase>& param_info) {
  const auto [op, a_step, b_step] = param_info.param;
  return std::string(BinaryName(op)) + (a_step ? "_AVec" : "_AScalar") +
         (b_step ? "_BVec" : "_BScalar");
}

INSTANTIATE_TEST_SUITE_P(
    , FgBinary,
    ::testing::Combine(::testing::Values(kFgAdd, kFgSub, kFgMul, kFgDiv, kFgMaximum, kFgMinimum),
                       ::testing::Values(1, 0), ::testing::Values(1, 0)),
    BinaryTestName);

TEST(FgBinaryHand, BroadcastValues) {
  // a = {1, 2, 3} minus broadcast b = 0.5 is {0.5, 1.5, 2.5}; broadcast a = 10 divided by
  // b = {4, 5, 8} is {2.5, 2, 1.25}. All exact in binary.
  const float a[] = {1.0f, 2.0f, 3.0f};
  const float half = 0.5f;
  float y[3];
  fg_binary_f32(kFgSub, a, 1, &half, 0, y, 3);
  EXPECT_TRUE(SameFloat(y[0], 0.5f) && SameFloat(y[1], 1.5f) && SameFloat(y[2], 2.5f));
  const float ten = 10.0f;
  const float b[] = {4.0f, 5.0f, 8.0f};
  fg_binary_f32(kFgDiv, &ten, 0, b, 1, y, 3);
  EXPECT_TRUE(SameFloat(y[0], 2.5f) && SameFloat(y[1], 2.0f) && SameFloat(y[2], 1.25f));
}

TEST(FgBinaryHand, MaximumMinimumPropagateNanFromEitherSide) {
  // fmaxf(NaN, 1) would be 1; TensorFlow gives NaN for both operand orders.
  const float a[] = {kNan, 1.0f};
  const float b[] = {1.0f, kNan};
  float y[2];
  fg_binary_f32(kFgMaximum, a, 1, b, 1, y, 2);
  EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1]));
  fg_binary_f32(kFgMinimum, a, 1, b, 1, y, 2);
  EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1]));
}

TEST(FgBinaryHand, UnknownOpFillsNan) {
  const auto bad = static_cast<FgBinaryOp>(kFgMinimum + 1);
  const float a[] = {1.0f, 2.0f};
  float y[2];
  fg_binary_f32(bad, a, 1, a, 1, y, 2);
  EXPECT_TRUE(std::isnan(y[0]) && std::isnan(y[1]));
}

// ---- Clip, copy, fill ----------------------------------------------------------------------

TEST(FgClip, MatchesMinOfMax) {
  // clip to [-1, 2.5]: -3 -> -1, -1 -> -1, 0.25 -> 0.25, 2.5 -> 2.5, 7 -> 2.5, NaN -> NaN
  // (tf.clip_by_value propagates NaN). In place.
  float x[] = {-3.0f, -1.0f, 0.25f, 2.5f, 7.0f, kNan};
  fg_clip_f32(x, -1.0f, 2.5f, x, 6);
  const float want[] = {-1.0f, -1.0f, 0.25f, 2.5f, 2.5f, kNan};
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(SameFloat(x[i], want[i])) << i;
  // lo > hi: min(max(x, 3), 1) is 1 for every x.
  float y[3];
  const float z[] = {-5.0f, 2.0f, 5.0f};
  fg_clip_f32(z, 3.0f, 1.0f, y, 3);
  for (float v : y) EXPECT_TRUE(SameFloat(v, 1.0f));
}

TEST(FgCopy, CopiesAndAllowsOverlap) {
  float buf[] = {1.0f, 2.0f, 3.0f, 4.0f, 5.0f};
  float out[5] = {};
  fg_copy_f32(buf, out, 5);
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(SameFloat(out[i], buf[i]));
  // Shift left by one in place: {2, 3, 4, 5, 5}.
  fg_copy_f32(buf + 1, buf, 4);
  const float want[] = {2.0f, 3.0f, 4.0f, 5.0f, 5.0f};
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(SameFloat(buf[i], want[i])) << i;
  fg_copy_f32(buf, out, 0);  // n = 0 must not touch anything
  EXPECT_TRUE(SameFloat(out[0], 1.0f));
}

TEST(FgFill, Fills) {
  float y[7] = {};
  fg_fill_f32(y, -2.5f, 6);
  for (int i = 0; i < 6; ++i) EXPECT_TRUE(SameFloat(y[i], -2.5f));
  EXPECT_TRUE(SameFloat(y[6], 0.0f));
}

// ---- Matmul --------------------------------------------------------------------------------

TEST(FgMatmul, HandExample) {
  // x = [1 2 3], w = [[1 0 -1], [2 1 0]] (cols = 2, depth = 3), bias = [0.5 -1]:
  //   y0 = 1*1 + 2*0 + 3*(-1) + 0.5 = -1.5
  //   y1 = 1*2 + 2*1 + 3*0    - 1   =  3
  // Then accumulate x' = [0 1 0] (picks column 1 of each w row: w[.][1] = [0 1]), no bias:
  //   y = [-1.5 + 0, 3 + 1] = [-1.5, 4]
  const float x[] = {1.0f, 2.0f, 3.0f};
  const float w[] = {1.0f, 0.0f, -1.0f, 2.0f, 1.0f, 0.0f};
  const float bias[] = {0.5f, -1.0f};
  float y[2];
  fg_matmul_f32(x, 3, 1, 3, w, bias, 2, y, 2, /*accumulate=*/0);
  EXPECT_TRUE(SameFloat(y[0], -1.5f));
  EXPECT_TRUE(SameFloat(y[1], 3.0f));
  const float x2[] = {0.0f, 1.0f, 0.0f};
  fg_matmul_f32(x2, 3, 1, 3, w, nullptr, 2, y, 2, /*accumulate=*/1);
  EXPECT_TRUE(SameFloat(y[0], -1.5f));
  EXPECT_TRUE(SameFloat(y[1], 4.0f));
}

struct MatmulCase {
  int32_t rows, depth, cols, x_pad, y_pad;
  bool bias, accumulate;
};

std::string MatmulName(const ::testing::TestParamInfo<MatmulCase>& param_info) {
  const MatmulCase& c = param_info.param;
  return "R" + std::to_string(c.rows) + "_D" + std::to_string(c.depth) + "_C" +
         std::to_string(c.cols) + "_XPad" + std::to_string(c.x_pad) + "_YPad" +
         std::to_string(c.y_pad) + (c.bias ? "_Bias" : "_NoBias") + (c.accumulate ? "_Acc" : "");
}

std::vector<float> RandomVector(size_t n, std::mt19937* rng) {
  std::uniform_real_distribution<float> dist(-1.0f, 1.0f);
  std::vector<float> v(n);
  for (float& e : v) e = dist(*rng);
  return v;
}

class FgMatmulRandom : public ::testing::TestWithParam<MatmulCase> {};

TEST_P(FgMatmulRandom, MatchesDoubleReference) {
  const MatmulCase c = GetParam();
  const int32_t x_stride = c.depth + c.x_pad;
  const int32_t y_stride = c.cols + c.y_pad;
  std::mt19937 rng(1234);
  std::vector<float> x = RandomVector(static_cast<size_t>(c.rows * x_stride), &rng);
  // NaN in the x stride padding: reading it by mistake would poison the outputs.
  for (int32_t r = 0; r < c.rows; ++r) {
    for (int32_t k = c.depth; k < x_stride; ++k) x[static_cast<size_t>(r * x_stride + k)] = kNan;
  }
  const std::vector<float> w = RandomVector(static_cast<size_t>(c.cols * c.depth), &rng);
  const std::vector<float> bias = RandomVector(static_cast<size_t>(c.cols), &rng);
  const std::vector<float> prior = RandomVector(static_cast<size_t>(c.rows * y_stride), &rng);

  std::vector<float> y = prior;
  fg_matmul_f32(x.data(), x_stride, c.rows, c.depth, w.data(), c.bias ? bias.data() : nullptr,
                c.cols, y.data(), y_stride, c.accumulate ? 1 : 0);

  for (int32_t r = 0; r < c.rows; ++r) {
    for (int32_t n = 0; n < y_stride; ++n) {
      const size_t yi = static_cast<size_t>(r * y_stride + n);
      if (n >= c.cols) {  // stride padding is not part of the output
        EXPECT_TRUE(SameFloat(y[yi], prior[yi])) << "padding at r=" << r << " n=" << n;
        continue;
      }
      double want = 0.0;
      double magnitude = 0.0;  // sum of |terms|, the scale of the rounding error
      auto add = [&](double term) {
        want += term;
        magnitude += std::fabs(term);
      };
      if (c.accumulate) add(static_cast<double>(prior[yi]));
      if (c.bias) add(static_cast<double>(bias[static_cast<size_t>(n)]));
      for (int32_t k = 0; k < c.depth; ++k) {
        add(static_cast<double>(x[static_cast<size_t>(r * x_stride + k)]) *
            static_cast<double>(w[static_cast<size_t>(n * c.depth + k)]));
      }
      // Float recursive summation of m = depth + 2 terms (products rounded once each) is within
      // gamma_m * sum|terms|, gamma_m ~= m * FLT_EPSILON / 2 (Higham, Accuracy and Stability of
      // Numerical Algorithms, 3.1). m * FLT_EPSILON is that bound with a factor 2 to spare.
      const double tolerance =
          static_cast<double>(c.depth + 2) * static_cast<double>(FLT_EPSILON) * magnitude;
      EXPECT_NEAR(static_cast<double>(y[yi]), want, tolerance) << "r=" << r << " n=" << n;
    }
  }
}

TEST_P(FgMatmulRandom, RoundsInDocumentedOrder) {
  // fg_runtime.h promises ((prior + dot) + bias) with dot summed over k in order; the same
  // arithmetic in float here must agree bit for bit (both builds use -ffp-contract=off: ISO C/C++).
  const MatmulCase c = GetParam();
  const int32_t x_stride = c.depth + c.x_pad;
  const int32_t y_stride = c.cols + c.y_pad;
  std::mt19937 rng(99);
  const std::vector<float> x = RandomVector(static_cast<size_t>(c.rows * x_stride), &rng);
  const std::vector<float> w = RandomVector(static_cast<size_t>(c.cols * c.depth), &rng);
  const std::vector<float> bias = RandomVector(static_cast<size_t>(c.cols), &rng);
  std::vector<float> y = RandomVector(static_cast<size_t>(c.rows * y_stride), &rng);
  const std::vector<float> prior = y;
  fg_matmul_f32(x.data(), x_stride, c.rows, c.depth, w.data(), c.bias ? bias.data() : nullptr,
                c.cols, y.data(), y_stride, c.accumulate ? 1 : 0);
  for (int32_t r = 0; r < c.rows; ++r) {
    for (int32_t n = 0; n < c.cols; ++n) {
      float dot = 0.0f;
      for (int32_t k = 0; k < c.depth; ++k) {
        dot += x[static_cast<size_t>(r * x_stride + k)] * w[static_cast<size_t>(n * c.depth + k)];
      }
      const size_t yi = static_cast<size_t>(r * y_stride + n);
      float want = c.accumulate ? prior[yi] + dot : dot;
      if (c.bias) want += bias[static_cast<size_t>(n)];
      EXPECT_TRUE(SameFloat(y[yi], want)) << "r=" << r << " n=" << n;
    }
  }
}

// Sizes are deliberately not multiples of 4: 1x1x1, a single row, a batched projection with
// padded strides on both sides, and a larger odd case.
INSTANTIATE_TEST_SUITE_P(, FgMatmulRandom,
                         ::testing::Values(MatmulCase{1, 1, 1, 0, 0, false, false},
                                           MatmulCase{1, 7, 5, 0, 0, true, false},
                                           MatmulCase{1, 7, 5, 0, 0, true, true},
                                           MatmulCase{3, 13, 6, 3, 2, false, false},
                                           MatmulCase{3, 13, 6, 3, 2, true, true},
                                           MatmulCase{3, 13, 6, 0, 0, false, true},
                                           MatmulCase{5, 33, 17, 1, 5, true, false},
                                           MatmulCase{5, 33, 17, 1, 5, true, true}),
                         MatmulName);

TEST(FgMatmul, ZeroDepthIsPriorPlusBias) {
  // depth = 0: the dot product is empty, so y = prior + bias (accumulate) or bias alone:
  // 1 + 0.25 = 1.25 and 2 - 1 = 1.
  // x and w are never read; they are valid pointers only so no null arithmetic happens.
  const float unused[] = {kNan};
  const float bias[] = {0.25f, -1.0f};
  float y[] = {1.0f, 2.0f};
  fg_matmul_f32(unused, 0, 1, 0, unused, bias, 2, y, 2, /*accumulate=*/1);
  EXPECT_TRUE(SameFloat(y[0], 1.25f));
  EXPECT_TRUE(SameFloat(y[1], 1.0f));
  fg_matmul_f32(unused, 0, 1, 0, unused, bias, 2, y, 2, /*accumulate=*/0);
  EXPECT_TRUE(SameFloat(y[0], 0.25f));
  EXPECT_TRUE(SameFloat(y[1], -1.0f));
}

TEST(FgMatmul, ZeroRowsOrColsTouchNothing) {
  const float x[] = {1.0f};
  const float w[] = {1.0f};
  float y[] = {42.0f};
  fg_matmul_f32(x, 1, 0, 1, w, nullptr, 1, y, 1, 0);
  fg_matmul_f32(x, 1, 1, 1, w, nullptr, 0, y, 1, 0);
  EXPECT_TRUE(SameFloat(y[0], 42.0f));
}

}  // namespace
