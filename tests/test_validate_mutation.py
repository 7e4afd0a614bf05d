"""Mutation test of the file validation (fusegen/converter/validate.py) over converted files.

Three cells (LSTM, GRU, SimpleRNN; small sizes, random non-zero weights and biases), each
converted to float32 and to int8 by `fusegen convert`'s own function. Every field of the fused
op and of the tensors it reads and writes is mutated (input and output lists, shapes, types,
buffers truncated, removed or swapped, the variable flag, int8 quantization parameters, the
custom options' bytes), and the whole file is truncated or replaced. A fixed list, the same on
every run (no randomness but seeded bytes).

Every mutant goes through verify's path (FloatVerifier / Int8Verifier: validation, the host
cores, the host runner) in one subprocess whose host cores are built with AddressSanitizer and
that runs with the ASan runtime preloaded. The assertion per mutant: a one-line UserError, or a
result equal to the unmutated file's; never a crash (the worker dies), a hang (a timeout), an
ASan report, or a PASS verdict with a different result.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from flatbuffers import flexbuffers
from tensorflow.lite.python import schema_py_generated as schema

from fusegen.commands.build import convert_model
from fusegen.converter import tflite_file
from fusegen.abi import OP_PREFIX

T, FEATURES, UNITS = 6, 3, 5
CELLS = {  # name -> (layer, options)
    "lstm": (keras.layers.LSTM, {}),
    "gru": (keras.layers.GRU, {"return_sequences": True}),
    "simple_rnn": (keras.layers.SimpleRNN, {"go_backwards": True}),
}
TYPES = (schema.TensorType.FLOAT32, schema.TensorType.INT8, schema.TensorType.INT16,
         schema.TensorType.INT32, schema.TensorType.UINT8, 99)
SEED = 1234
# Mutants per file: a seeded sample of the full list (about a minute for all six files under
# ASan); FUSEGEN_MUTATION_FULL=1 runs every mutant (1,167: 6 min on a busy 2-core machine).
SAMPLE = None if os.environ.get("FUSEGEN_MUTATION_FULL") else 60
WORKER = Path(__file__).with_name("mutation_worker.py")


def _model(name: str, rng: np.random.Generator) -> keras.Model:
    layer, options = CELLS[name]
    model = keras.Sequential([keras.Input((T, FEATURES)), layer(UNITS, **options)])
    model.set_weights([rng.uniform(-0.6, 0.6, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> list[dict]:
    root = tmp_path_factory.mktemp("mutation")
    rng = np.random.default_rng(SEED)
    cases = []
    for name in CELLS:
        model = _model(name, rng)
        keras_path = root / f"{name}.keras"
        model.save(keras_path)
        x = rng.uniform(-1, 1, (4, T, FEATURES)).astype(np.float32)
        np.save(root / f"{name}_x.npy", x)
        np.save(root / f"{name}_cal.npy", rng.uniform(-1, 1, (16, T, FEATURES)).astype(np.float32))
        for dtype in ("float32", "int8"):
            out = root / f"{name}_{dtype}.tflite"
            convert_model(keras_path, [], out, None,
                          root / f"{name}_cal.npy" if dtype == "int8" else None)
            cases.append({"name": f"{name}_{dtype}", "dtype": dtype, "keras": str(keras_path),
                          "inputs": str(root / f"{name}_x.npy"), "file": out})
    return cases


# --- mutations -------------------------------------------------------------------------------

def _fused(model: schema.ModelT) -> schema.OperatorT:
    ops = [op for op in model.subgraphs[0].operators
           if tflite_file.op_name(model, op).startswith(OP_PREFIX)]
    assert len(ops) == 1
    return ops[0]


def _options(values: dict) -> bytes:
    fbb = flexbuffers.Builder()
    with fbb.Map():
        for key, value in values.items():
            fbb.Key(key)
            if isinstance(value, float):
                fbb.Float(value)
            elif isinstance(value, str):
                fbb.String(value)
            else:
                fbb.Int(value)
    return bytes(fbb.Finish())


def model_mutations(model: schema.ModelT):
    """(label, function mutating a copy of the model in place) for every field of the op."""
    g = model.subgraphs[0]
    op = _fused(model)
    n_in, n_tensors = len(op.inputs), len(g.tensors)
    yield "unmutated", lambda m, o, g: None
    for i in range(n_in):
        yield f"inputs: drop {i}", lambda m, o, g, i=i: _set(o, "inputs", _drop(o.inputs, i))
        yield f"inputs: {i} omitted", lambda m, o, g, i=i: _put(o.inputs, i, -1)
        yield f"inputs: {i} out of range", lambda m, o, g, i=i: _put(o.inputs, i, n_tensors)
        yield f"inputs: duplicate {i}", lambda m, o, g, i=i: _set(
            o, "inputs", np.insert(np.asarray(o.inputs), i, o.inputs[i]))
        if i + 1 < n_in:
            yield f"inputs: swap {i}, {i + 1}", lambda m, o, g, i=i: _swap(o.inputs, i, i + 1)
    yield "inputs: extra", lambda m, o, g: _set(o, "inputs", np.append(o.inputs, o.inputs[0]))
    yield "outputs: none", lambda m, o, g: _set(o, "outputs", np.asarray([], np.int32))
    yield "outputs: extra", lambda m, o, g: _set(o, "outputs", np.append(o.outputs, o.inputs[0]))
    yield "outputs: out of range", lambda m, o, g: _put(o.outputs, 0, n_tensors)
    yield "opcode out of range", lambda m, o, g: setattr(o, "opcodeIndex", len(m.operatorCodes) + 5)
    tensors = [int(i) for i in op.inputs] + [int(i) for i in op.outputs]
    for t in dict.fromkeys(tensors):
        yield from _tensor_mutations(model, t)
    yield from _option_mutations(op)


def _tensor_mutations(model: schema.ModelT, t: int):
    g = model.subgraphs[0]
    tensor = g.tensors[t]
    shape = [int(d) for d in tensor.shape]
    name = f"tensor {t}"
    shapes = {"reversed": shape[::-1], "rank - 1": shape[:-1], "rank + 1": [*shape, 1],
              "first + 1": [shape[0] + 1, *shape[1:]], "last + 1": [*shape[:-1], shape[-1] + 1],
              "last - 1": [*shape[:-1], shape[-1] - 1], "last 0": [*shape[:-1], 0],
              "negative": [*shape[:-1], -1], "scalar": []}
    for label, new in shapes.items():
        if new != shape:
            yield f"{name} shape {label} {new}", lambda m, o, g, new=new: _set(
                g.tensors[t], "shape", np.asarray(new, np.int32))
    for ttype in TYPES:
        if ttype != tensor.type:
            yield f"{name} type {ttype}", lambda m, o, g, ttype=ttype: _set(
                g.tensors[t], "type", ttype)
    yield f"{name} variable flag flipped", lambda m, o, g: _set(
        g.tensors[t], "isVariable", not g.tensors[t].isVariable)
    data = model.buffers[tensor.buffer].data
    if data is not None and len(data):
        yield f"{name} buffer truncated by 1", lambda m, o, g: _set(
            m.buffers[g.tensors[t].buffer], "data", m.buffers[g.tensors[t].buffer].data[:-1])
        yield f"{name} buffer halved", lambda m, o, g: _set(
            m.buffers[g.tensors[t].buffer], "data",
            m.buffers[g.tensors[t].buffer].data[:len(data) // 2])
        yield f"{name} buffer removed", lambda m, o, g: _set(
            m.buffers[g.tensors[t].buffer], "data", None)
        yield f"{name} buffer grown by 4", lambda m, o, g: _set(
            m.buffers[g.tensors[t].buffer], "data",
            np.concatenate([m.buffers[g.tensors[t].buffer].data, np.zeros(4, np.uint8)]))
    yield f"{name} buffer index 0", lambda m, o, g: _set(g.tensors[t], "buffer", 0)
    yield f"{name} buffer index out of range", lambda m, o, g: _set(
        g.tensors[t], "buffer", len(m.buffers) + 3)
    q = tensor.quantization
    if q is not None and q.scale is not None and len(q.scale) == 1 and data is None:
        for label, scale in (("x8", q.scale[0] * 8), ("/8", q.scale[0] / 8), ("0", 0.0),
                             ("negative", -q.scale[0]), ("nan", float("nan"))):
            yield f"{name} scale {label}", lambda m, o, g, scale=scale: _set(
                g.tensors[t].quantization, "scale", np.asarray([scale], np.float32))
        yield f"{name} scale removed", lambda m, o, g: _set(g.tensors[t], "quantization", None)
        yield f"{name} zero point 300", lambda m, o, g: _set(
            g.tensors[t].quantization, "zeroPoint", np.asarray([300], np.int64))


def _option_mutations(op: schema.OperatorT):
    raw = bytes(np.asarray(op.customOptions, np.uint8)) if op.customOptions is not None else b""
    rng = np.random.default_rng(SEED)
    values = tflite_file.decode_options(raw)
    variants: dict[str, bytes | None] = {"none": None, "empty": b""}
    for n in sorted({1, 2, len(raw) // 3, len(raw) // 2, len(raw) - 1}):
        variants[f"truncated to {n}"] = raw[:n]
    for k in range(3):
        variants[f"random {k}"] = rng.integers(0, 256, len(raw), dtype=np.uint8).tobytes()
    variants["not a map (int)"] = bytes(flexbuffers.Dumps(7))
    variants["not a map (vector)"] = bytes(flexbuffers.Dumps([1, 0]))
    variants["unknown key"] = _options({**values, "unknown": 1})
    variants["float value"] = _options({**values, "go_backwards": 0.5})
    variants["string value"] = _options({**values, "return_sequences": "yes"})
    variants["value 2"] = _options({**values, "stateful": 2})
    for key in values:
        variants[f"{key} flipped"] = _options({**values, key: 1 - int(values[key])})
    for label, new in variants.items():
        yield f"options {label}", lambda m, o, g, new=new: _set(
            o, "customOptions", None if new is None else np.frombuffer(new, np.uint8))


def _set(obj, field: str, value) -> None:
    setattr(obj, field, value)


def _put(values, i: int, value: int) -> None:
    values[i] = value


def _swap(values, i: int, j: int) -> None:
    values[i], values[j] = values[j], values[i]


def _drop(values, i: int):
    return np.delete(np.asarray(values), i)


def mutants(data: bytes, out_dir: Path, stem: str) -> list[tuple[str, str]]:
    """Every mutation of `data`, written to out_dir; the first is the unmutated file."""
    model = tflite_file.read_model(data)
    found = []
    for k, (label, mutate) in enumerate(model_mutations(model)):
        m = copy.deepcopy(model)
        mutate(m, _fused(m) if label != "unmutated" else None, m.subgraphs[0])
        try:
            blob = tflite_file.write_model(m)
        except Exception:  # noqa: BLE001 - a mutation the writer cannot pack: nothing to test
            continue
        found.append((label, blob))
    rng = np.random.default_rng(SEED)
    for n in (0, 7, 16, len(data) // 4, len(data) // 2, len(data) - 16):
        found.append((f"file truncated to {n}", data[:n]))
    found.append(("file random bytes", b"\0\0\0\0TFL3" + rng.bytes(len(data) - 8)))
    for k in range(6):
        flipped = bytearray(data)
        flipped[int(rng.integers(8, 64))] ^= 0xFF
        found.append((f"file header byte flip {k}", bytes(flipped)))
    if SAMPLE is not None and len(found) > SAMPLE:
        keep = sorted(rng.choice(np.arange(1, len(found)), SAMPLE - 1, replace=False))
        found = [found[0], *(found[k] for k in keep)]
    paths = []
    for k, (label, blob) in enumerate(found):
        path = out_dir / f"{stem}_{k:03d}.tflite"
        path.write_bytes(blob)
        paths.append((label, str(path)))
    return paths


def _asan_env() -> dict[str, str]:
    runtime = [subprocess.run(["gcc", f"-print-file-name={lib}"], capture_output=True,
                              text=True, check=True).stdout.strip()
               for lib in ("libasan.so", "libstdc++.so.6")]
    return {**os.environ, "LD_PRELOAD": " ".join(runtime), "FUSEGEN_HOST_SANITIZE": "address",
            "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0:exitcode=86",
            "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(Path(__file__).parent)}


def test_mutated_files_fail_cleanly_or_equal_the_original(converted, tmp_path):
    cases = []
    for case in converted:
        paths = mutants(case["file"].read_bytes(), tmp_path, case["name"])
        cases.append({**{k: v for k, v in case.items() if k != "file"}, "mutants": paths})
    total = sum(len(c["mutants"]) for c in cases)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    results = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, str(WORKER), str(tmp_path / "cases.json"),
                           str(results)], env=_asan_env(), capture_output=True, text=True,
                          timeout=900, check=False)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    last = rows[-1] if rows else None
    assert "AddressSanitizer" not in proc.stderr, proc.stderr[-4000:]
    assert proc.returncode == 0, (f"the worker died after {last}: exit {proc.returncode}\n"
                                  f"{proc.stderr[-4000:]}")
    assert len(rows) == total
    by_case: dict[str, list[dict]] = {}
    for row in rows:
        by_case.setdefault(row["case"], []).append(row)
    problems, errors = [], 0
    for name, case_rows in by_case.items():
        original = case_rows[0]
        assert original["label"] == "unmutated" and original["kind"] == "result", original
        assert original["passed"], f"{name}: the unmutated file does not pass verify"
        for row in case_rows[1:]:
            if row["kind"] == "error":
                errors += 1
                if "\n" in row["message"] or not row["message"]:
                    problems.append(f"{name} {row['label']}: not one line: {row['message']!r}")
            elif row["passed"] and row["digest"] != original["digest"]:
                problems.append(f"{name} {row['label']}: false PASS (result differs)")
    assert not problems, "\n".join(problems)
    # The set is not vacuous: most mutants are rejected, and every case had many.
    assert errors > total // 2, (errors, total)
    print(f"{total} mutants over {len(cases)} files: {errors} one-line errors, "
          f"{total - errors} results (equal to the original or failing the verdict)")
