"""Core mode's pieces on the host: the IR text parser, the generated fw_model.c (golden, and
compiled and run against the host cores with equality, float32 and int8), the linker map split."""

from __future__ import annotations

import ctypes
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from cbuild import build_shared_library

from fusegen.bench.firmware.core_model import CoreChain, CoreOp, HostChain
from fusegen.bench.firmware.memory import map_sections, memory_report
from fusegen.bench.firmware.model_source import DenseHead, render_fw_model, write_model_sources
from fusegen.codegen import write_package
from fusegen.ir import IRError
from fusegen.ir.text import parse_dim, parse_graph
from fusegen.paths import FIRMWARE
from fusegen.quantize import quantize_cell
from fusegen.quantize.scales import asymmetric_int8

GOLDEN = Path(__file__).resolve().parent / "golden"
IR_FILES = sorted(GOLDEN.glob("*/*.ir.txt"))


@pytest.mark.parametrize("path", IR_FILES, ids=[p.parent.name for p in IR_FILES])
def test_ir_text_round_trips(path):
    text = path.read_text()
    assert parse_graph(text).text() + "\n" == text


@pytest.mark.parametrize("text, expected", [("0", (0, 0, 0)), ("U", (1, 0, 0)),
                                            ("4*U", (4, 0, 0)), ("U + I", (1, 1, 0)),
                                            ("2*U + -1*I + 3", (2, -1, 3)), ("-5", (0, 0, -5))])
def test_parse_dim(text, expected):
    dim = parse_dim(text)
    assert (dim.u, dim.i, dim.c) == expected
    assert str(dim) == text


def test_malformed_ir_text_names_the_line():
    text = (GOLDEN / "simple_rnn" / "fusegen_simple_rnn.ir.txt").read_text()
    with pytest.raises(IRError, match="line 3"):
        parse_graph(text.replace("param 1", "parm 1"))
    with pytest.raises(IRError):
        parse_graph(text.replace("return", "retrun"))


def _op(name: str, input_size: int, units: int, timesteps: int, rs: bool, gb: bool,
        seed: int) -> CoreOp:
    """An op of the golden IR with deterministic weights (exact in binary: multiples of 1/64)."""
    graph = parse_graph((GOLDEN / name / f"fusegen_{name}.ir.txt").read_text())
    rng = np.random.default_rng(seed)
    params = []
    for p in graph.params:
        shape = tuple(d(units, input_size) for d in p.shape)[::-1]  # stored [N, K]
        params.append((rng.integers(-40, 40, shape) / 64).astype(np.float32))
    return CoreOp(f"FUSEGEN_{name.upper()}", graph, tuple(params), input_size, units, timesteps,
                  rs, gb)


@pytest.fixture(scope="module")
def chain() -> CoreChain:
    """SimpleRNN (sequences) -> GRU (go_backwards): two ops, one activation buffer."""
    return CoreChain((_op("simple_rnn", 2, 3, 4, True, False, 1),
                      _op("gru", 3, 2, 4, False, True, 2)), ("FULLY_CONNECTED",))


def test_fw_model_matches_golden(chain):
    text = render_fw_model(chain, HostChain(chain).plans(), "golden", "golden.tflite")
    path = GOLDEN / "fw_model" / "fw_model.c"
    if os.environ.get("FUSEGEN_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
    assert text == path.read_text(), "fw_model.c differs from its golden copy"


def _run_fw_model(chain: CoreChain, tmp_path: Path, x: np.ndarray, output_shape: tuple,
                  dtypes: tuple[str, ...] = ("f32",), head: DenseHead | None = None) -> np.ndarray:
    """fw_model.c compiled for the host with the house warnings, run through ctypes on each
    sample of x (after one fw_model_reset)."""
    kernels = tmp_path / "kernels"
    write_package({op.op_name: op.graph for op in chain.ops}, kernels, dtypes)
    sources, includes = write_model_sources(chain, HostChain(chain).plans(), kernels,
                                            tmp_path / "model", "chain", head=head)
    marks = tmp_path / "marks.c"  # the firmware's fw_op_mark, counting the calls
    marks.write_text('#include "fw_model.h"\nint g_marks;\nvoid fw_op_mark(void) { ++g_marks; }\n')
    lib = ctypes.CDLL(str(build_shared_library([*sources, marks],
                                               include_dirs=[*includes, FIRMWARE / "app"],
                                               with_runtime=False)))
    lib.fw_model_reset()
    outputs = []
    for sample in x:
        y = np.zeros(output_shape, x.dtype)
        sample = np.ascontiguousarray(sample)
        assert lib.fw_model_run(sample.ctypes.data_as(ctypes.c_void_p),
                                y.ctypes.data_as(ctypes.c_void_p)) == 0
        outputs.append(y)
    return np.stack(outputs)


def test_fw_model_on_the_host_equals_the_host_cores(chain, tmp_path):
    """The chain of host cores exactly (same compiler, same libm: equality, no tolerance)."""
    x = np.random.default_rng(3).uniform(-2, 2, (3, 4, 2)).astype(np.float32)
    outputs = _run_fw_model(chain, tmp_path, x, chain.output_shape)
    np.testing.assert_array_equal(outputs, HostChain(chain).run(x))


def test_fw_model_with_dense_head_equals_its_twin(chain, tmp_path):
    """fusegen compare's model: the chain, then a Dense head in C. fg_matmul_f32 sums each
    output in one float accumulator in k order from 0 and adds the bias last; the float32
    twin below does the same, so the results are equal."""
    rng = np.random.default_rng(5)
    depth, classes = int(np.prod(chain.output_shape)), 3
    head = DenseHead((rng.integers(-40, 40, (depth, classes)) / 64).astype(np.float32),
                     (rng.integers(-40, 40, classes) / 64).astype(np.float32))
    x = rng.uniform(-2, 2, (3, 4, 2)).astype(np.float32)
    outputs = _run_fw_model(chain, tmp_path, x, (classes,), head=head)
    hidden = HostChain(chain).run(x)
    expected = np.zeros((len(x), classes), np.float32)
    for k in range(depth):
        expected += hidden[:, k:k + 1] * head.kernel[k]
    np.testing.assert_array_equal(outputs, expected + head.bias)
    text = (tmp_path / "model" / "fw_model.c").read_text()
    assert f"fg_matmul_f32(g_model_act1, {depth}, 1, {depth}," in text


def test_dense_head_needs_float32_ops_and_fitting_shapes(chain, int8_chain):
    plans = HostChain(chain).plans()
    with pytest.raises(ValueError, match="does not fit the last op's 2 outputs"):
        render_fw_model(chain, plans, "m", "m", DenseHead(np.zeros((3, 4), np.float32),
                                                          np.zeros(4, np.float32)))
    int8, _ = int8_chain
    with pytest.raises(ValueError, match="after float32 ops, not s8"):
        render_fw_model(int8, HostChain(int8).plans(), "m", "m",
                        DenseHead(np.zeros((2, 4), np.float32), np.zeros(4, np.float32)))


_MAP = """\
Discarded input sections

 .text.unused   0x00000000       0x10 CMakeFiles/fusegen_model.dir/fw_model.c.obj

Linker script and memory map

.text           0x00000000      0x140
 .text.fw_model_run
                0x00000000       0x20 CMakeFiles/fusegen_model.dir/gen/fw_model.c.obj
 .rodata.kModelOp0Param1
                0x00000020      0x100 CMakeFiles/fusegen_model.dir/gen/fw_model.c.obj
 .text.expf     0x00000120        0x8 /usr/lib/arm-none-eabi/lib/libm.a(lib_a-wf_exp.o)
 .text.main     0x00000128        0x6 CMakeFiles/fusegen_fw.dir/app/main.c.obj
 *fill*         0x0000012e        0x2 \n\
 .text.memmove  0x00000130       0x10 /usr/lib/arm-none-eabi/lib/libc_nano.a(lib_a-memmove.o)

.data           0x20000000        0x4 load address 0x00000140
 .data.x        0x20000000        0x4 CMakeFiles/fusegen_fw.dir/app/main.c.obj

.bss            0x20000004       0x30
 .bss.g_model_scratch
                0x20000004       0x20 CMakeFiles/fusegen_model.dir/gen/fw_model.c.obj
 .bss.g_input   0x20000024       0x10 CMakeFiles/fusegen_fw.dir/app/main.c.obj

.stack          0x20000034     0x1000
"""


def test_map_split_by_owner(tmp_path):
    assert len(map_sections(_MAP)) == 9  # the discarded section is not counted
    (tmp_path / "fw.map").write_text(_MAP)
    m = memory_report(tmp_path / "fw.map", 0x1000)
    assert (m.flash_bytes, m.model_weight_bytes, m.model_code_bytes) == (0x144, 0x100, 0x28)
    assert m.firmware_code_bytes == 0x6 + 0x2 + 0x10 + 0x4
    assert (m.ram_static_bytes, m.model_ram_bytes, m.stack_bytes) == (0x34, 0x20, 0x1000)


@pytest.fixture(scope="module")
def int8_chain(chain) -> tuple[CoreChain, list]:
    """The same two ops quantized: the GRU's input qparams are the SimpleRNN's output's."""
    first, second = chain.ops
    calibration = np.random.default_rng(4).uniform(-2, 2, (16, 4, 2)).astype(np.float32)
    q0 = quantize_cell(first.bound, calibration, asymmetric_int8(-2.0, 2.0))
    hidden = HostChain(CoreChain((first,), ())).run(calibration)
    q1 = quantize_cell(second.bound, hidden, q0.output_qparams)
    ops = tuple(replace(op, params=tuple(q.op_inputs()), dtype="s8")
                for op, q in ((first, q0), (second, q1)))
    return CoreChain(ops, ()), [q0, q1]


def test_int8_host_chain_equals_the_integer_twin(int8_chain):
    chain, (q0, q1) = int8_chain
    x = q0.quantize_input(np.random.default_rng(6).uniform(-2, 2, (3, 4, 2)))
    twin = q1.run(q0.run(x, return_sequences=True), go_backwards=True)
    np.testing.assert_array_equal(HostChain(chain).run(x), twin)


def test_int8_fw_model_on_the_host_equals_the_host_cores(int8_chain, tmp_path):
    chain, (q0, _) = int8_chain
    x = q0.quantize_input(np.random.default_rng(7).uniform(-2, 2, (3, 4, 2)))
    outputs = _run_fw_model(chain, tmp_path, x, chain.output_shape, ("f32", "s8"))
    np.testing.assert_array_equal(outputs, HostChain(chain).run(x))


@pytest.mark.parametrize("per_channel", [False, True])
def test_int8_fw_model_with_fully_connected_head_equals_its_twin(int8_chain, tmp_path,
                                                                  per_channel):
    """compare's int8 model: the chain, then the file's int8 FULLY_CONNECTED in C (weights in
    fg_matmul_s8's block order, 7 classes over 5 units: a group of 4 rows and a tail row, depth
    not a multiple of 4); its numpy twin (TFLite's int8 FC: MBQM of the zero-point-folded sum,
    output zero point, clamp) equal to the C, per tensor and per channel."""
    from fusegen.bench.firmware.model_source import S8DenseHead

    chain, (q0, q1) = int8_chain
    rng = np.random.default_rng(9)
    depth, classes = int(np.prod(chain.output_shape)), 7
    scales = list(rng.uniform(0.002, 0.02, classes)) if per_channel else [0.01]
    head = S8DenseHead.from_tflite(rng.integers(-127, 128, (classes, depth)),
                                   rng.integers(-3000, 3000, classes), q1.output_qparams,
                                   scales, (0.05, -7))
    x = q0.quantize_input(rng.uniform(-2, 2, (4, 4, 2)))
    outputs = _run_fw_model(chain, tmp_path, x, (classes,), ("f32", "s8"), head=head)
    expected = head.run(HostChain(chain).run(x).reshape(len(x), -1))
    np.testing.assert_array_equal(outputs, expected)
    assert len(np.unique(expected)) > 5  # not saturated: the rounding is exercised
