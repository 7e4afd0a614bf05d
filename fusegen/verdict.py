"""The bounds `fusegen verify` judges a file by, once: the CLI's defaults, the Python API's
(api.py), `compare`'s and the benchmark's all come from here.

float32. A float32 kernel cannot equal Keras: both round every operation to float32, in other
orders (the kernel's matmul sums bias first, then the products in its own order; TensorFlow's
in its own), with other exp/tanh. So the yardstick is the layer evaluated in float64 (the numpy
twin in double, with the same weights and layer input): the kernel passes when its error
against float64 is at most FLOAT_FACTOR times Keras' own error against float64 (it is as
accurate as Keras), or at most FLOAT_REL times the output's magnitude (max(1, max |y|)), the
float32 rounding of a few operations on values that large. An absolute bound fails correct
kernels on large-valued or long models (a stock LSTM whose cell state reaches |c| = 31 differs
from Keras by 1.3e-5, and Keras itself from float64 by as much), and passes a wrong one whose
outputs are tiny. A wrong weight, activation or order of gates is off by orders of magnitude
more than either bound.

int8. `fusegen verify` judges a file by its errors against float Keras in output steps (one
step is the output's int8 scale), and with labels its accuracy too (Int8Bounds.failures): it
may have no labels, and a wrong scale or weight is tens of steps off or more. The measured
figures and why each bound is what it is are in README.md ("int8").

`fusegen compare` judges its int8 rows on the labelled test set instead
(Int8Bounds.compare_failures): the int8 file's accuracy within max_accuracy_drop of Keras float
accuracy, and every fused op's compiled C equal to its integer twin bit for bit on the first
INT8_TWIN_SAMPLES test samples. The step errors measure how far int8 is from float Keras, which
on trained classifiers grows with the length of the series and with the samples whose classes
are close, not with a defect: JapaneseVowels (T=29) GRU int8 has a max error of 22.3 steps and
SimpleRNN 18.8 at the same accuracy as Keras (0.973 / 0.976, 0.965 / 0.965); GunPoint (T=150)
LSTM, GRU and SimpleRNN have mean errors of 3.0, 5.0 and 2.1 steps at accuracy drops of 0, 0.006
and 0. What a deployment needs of the int8 model is that it classifies as well as the float one
(the accuracy) and that the device runs the arithmetic the quantizer specified (the twin
equality); the step errors stay in compare's table as numbers (mean_steps, max_steps).

Baselines. compare holds each baseline's float32 file (the stock unroll=True conversion, TF's
builtin LSTM) to the float32 rule above, on the whole classifier's outputs over the test set
against the classifier in float64: a file past it does not compute the Keras model (the
converter drops a Masking layer's mask when unrolling) and is reported as no valid baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

# The kernel may be this many times less accurate than Keras against float64: measured ratios
# are 0.3 to 2 (the two sum in different orders; neither is systematically better), so 4 is
# twice the worst seen, and still thousands of times below a wrong weight's error.
FLOAT_FACTOR = 4.0
# ... or within this fraction of the output's magnitude (at least 1): 1e-5 is ~80 float32 ulps
# of the largest output, the old absolute 1e-5 for outputs within [-1, 1].
FLOAT_REL = 1e-5

# A plain absolute bound against Keras: what --tolerance sets instead of the rule above, what
# the test suite holds small random layers (outputs within [-1, 1]) to, and the bench's bound
# between a float32 core on the device and on the host (measured ~1e-7 on both).
FLOAT_TOLERANCE = 1e-5

# int8 (README.md "int8" has the measurements behind each).
INT8_MEAN_STEPS = 2.0
INT8_MAX_STEPS = 16.0
INT8_MAX_ACCURACY_DROP = 0.02
# compare: the int8 C is checked equal to its integer twin on this many test samples (the
# first ones). The twin is a numpy interpreter, ~0.3 s a sample at T=29 and 32 units, ~1 s at
# T=150 (measured on a loaded 2-core machine): every sample of JapaneseVowels' 370 would add
# two minutes per int8 cell. A defect in the C arithmetic (a rounding, a saturation, a shift)
# shows on the first samples it touches: 32 samples are ~1,000-5,000 steps of every op.
INT8_TWIN_SAMPLES = 32


@dataclass(frozen=True)
class FloatBounds:
    factor: float = FLOAT_FACTOR
    rel: float = FLOAT_REL

    def bound(self, keras_err64: float, magnitude: float) -> float:
        """The largest error against float64 a kernel may have for this layer."""
        return max(self.factor * keras_err64, self.rel * max(1.0, magnitude))


@dataclass(frozen=True)
class Int8Bounds:
    mean_steps: float = INT8_MEAN_STEPS
    max_steps: float = INT8_MAX_STEPS
    max_accuracy_drop: float = INT8_MAX_ACCURACY_DROP

    def failures(self, mean_steps: float, max_steps: float,
                 accuracy_drop: float | None = None) -> list[str]:
        """What is past its bound, as the CLI says it (empty: passed)."""
        failed = []
        if not mean_steps <= self.mean_steps:
            failed.append(f"mean error {mean_steps:.2f} steps > --mean-steps {self.mean_steps}")
        if not max_steps <= self.max_steps:
            failed.append(f"max error {max_steps:.1f} steps > --max-steps {self.max_steps}")
        if accuracy_drop is not None:
            failed += self._accuracy_failures(accuracy_drop)
        return failed

    def compare_failures(self, accuracy_drop: float, twin_mismatches: int,
                         samples: int) -> list[str]:
        """compare's int8 verdict on a labelled test set (see the module's docstring): what
        fails, as the row says it (empty: passed)."""
        failed = self._accuracy_failures(accuracy_drop)
        if twin_mismatches:
            failed.append(f"the int8 C differs from its integer twin on {twin_mismatches} of "
                          f"{samples} test samples")
        return failed

    def _accuracy_failures(self, accuracy_drop: float) -> list[str]:
        if accuracy_drop <= self.max_accuracy_drop:
            return []
        return [f"accuracy drop {accuracy_drop:.4f} > --max-accuracy-drop "
                f"{self.max_accuracy_drop}"]


DEFAULT_FLOAT_BOUNDS = FloatBounds()
DEFAULT_INT8_BOUNDS = Int8Bounds()


def add_bound_arguments(parser, tolerance: bool = True, steps: bool = True) -> None:
    """The flags that set these bounds, for `fusegen verify` and `fusegen compare` alike
    (compare: no --tolerance, and no step bounds: its int8 verdict is
    Int8Bounds.compare_failures)."""
    parser.add_argument("--factor", type=float, default=FLOAT_FACTOR,
                        help="float32: pass when the kernel's error against float64 is at most "
                             "this many times Keras' own (default %(default)s)")
    parser.add_argument("--rel-tolerance", type=float, default=FLOAT_REL,
                        help="float32: ... or at most this fraction of max(1, max |output|) "
                             "(default %(default)s)")
    if tolerance:
        parser.add_argument("--tolerance", type=float, default=None,
                            help="float32: instead, a plain max abs error against Keras")
    if steps:
        parser.add_argument("--mean-steps", type=float, default=INT8_MEAN_STEPS,
                            help="int8: fail when the mean error against Keras exceeds this "
                                 "many output steps (default %(default)s)")
        parser.add_argument("--max-steps", type=float, default=INT8_MAX_STEPS,
                            help="int8: fail when any output is further from Keras than this "
                                 "many output steps (default %(default)s)")
    parser.add_argument("--max-accuracy-drop", type=float, default=INT8_MAX_ACCURACY_DROP,
                        help="with labels: fail when the file's accuracy is below Keras' by more "
                             "than this fraction (default %(default)s, i.e. 2 points)")


def float_bounds(args) -> FloatBounds:
    return FloatBounds(args.factor, args.rel_tolerance)


def int8_bounds(args) -> Int8Bounds:
    return Int8Bounds(getattr(args, "mean_steps", INT8_MEAN_STEPS),
                      getattr(args, "max_steps", INT8_MAX_STEPS), args.max_accuracy_drop)
