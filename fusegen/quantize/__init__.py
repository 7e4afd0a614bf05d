"""Full-integer int8 kernels for any cell: calibration, quantization, the integer program.

    qcell = quantize_cell(bound, calibration_x, (s_x, z_x), (s_y, z_y),   # bound: after passes
                          per_channel=False)
    qcell.op_inputs()          # the op's constant inputs after x: weights, qparams, luts
    qcell.run(x_int8)          # the integer twin (reference/int_interp.py)
    HostCoreS8(qcell, name)    # the generated `_eval_s8` on the host (quantize/host.py)
    kernel_files(graph, name, ("s8",))   # core with `_eval_s8` + the int8 TFLM shell

Design (TFLM's int8 LSTM, generalised to any graph of the IR):
  * x and y are int8, asymmetric, at the neighbouring tensors' (scale, zero point).
  * Every other value is int16, symmetric, at a power-of-two scale covering its calibrated range
    (a Qm.n format, e.g. Q3.12 for a gate pre-activation within +-8); a slice shares its source's
    scale and a state the scale of the value that becomes it, so views and state writes are free.
  * Matmuls: int8 weights, symmetric per tensor (TFLM's int8 LSTM; the default) or per output
    channel (`per_channel=True`); int8 operands (x as it comes, any other operand, e.g. h,
    requantized to asymmetric int8 from its calibrated range, as TFLM does for h; measured: int16
    operands would change the error by under 0.02 output steps); int32 bias with the operand's
    zero point folded in; int32 accumulation; one (multiplier, shift) per matmul, or per channel,
    to the int16 output; an accumulated matmul adds its rescaled int16 accumulator. The generated
    C is the same for both: a flag in qparams picks the layout (program.py).
  * Every elementwise function of one argument (sigmoid, tanh, hard_sigmoid, softsign, silu, relu,
    relu6, exp, clip, neg) is one int16 lookup table of 129 entries (128 segments of 512 input
    steps) with linear interpolation, built from the float twin's own function, input scale and
    output scale (quantize/lut.py). The same function of one scale group (LSTM's three sigmoid
    gates) is one table: those nodes share an output scale (program.py).
  * add, sub, maximum, minimum rescale both operands to the output's scale; mul rescales the
    int32 product once; division only by a constant (its reciprocal is in the multiplier).
    Constants are int16 +-16384 at scale |c| / 16384, exact.
  * Rounding is TFLM's MultiplyByQuantizedMultiplier (gemmlowp double rounding), written once in
    C (tflm_kernels/runtime/fg_runtime_q.c) and once in numpy (reference/int_interp.py).
  * All float work happens here, at convert time; the kernel's eval is integer-only and its
    Prepare only checks shapes. The generated C depends on the graph alone (program.py): every
    number arrives in the `qparams` (int32) and `luts` (int16) inputs (order: abi.py).
"""

from fusegen.quantize.calibrate import MIN_CALIBRATION_STEPS, Ranges, calibrate
from fusegen.schedule.program import IntProgram, QuantizeError, build_program
from fusegen.quantize.quantizer import QuantizedCell, quantize_cell

__all__ = ["MIN_CALIBRATION_STEPS", "IntProgram", "QuantizeError", "QuantizedCell", "Ranges",
           "build_program", "calibrate", "quantize_cell"]
