"""A TFLM-mode firmware whose model does not initialise (issue 17): the host says why in one
line, with the arena the model needs when the firmware reported it, never a ZeroDivisionError."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from fusegen.bench.cli import _init_failure
from fusegen.bench.link.protocol import CounterUnit, DeviceInfo, Dtype
from fusegen.bench.runner import ModelInitError, as_steps


def _info(**fields) -> DeviceInfo:
    values = {f.name: 0 for f in dataclasses.fields(DeviceInfo)}
    values.update(dtype=Dtype(0), counter_unit=CounterUnit(0), firmware_version="t",
                  model_name="m", board_name="b")
    values.update(fields)
    return DeviceInfo(**values)


def test_uninitialised_model_is_a_model_init_error_with_the_arena_needed():
    with pytest.raises(ModelInitError, match="needs at least 85700 bytes") as err:
        as_steps(np.zeros((2, 6), np.float32), _info(arena_bytes=85700))
    assert err.value.arena_needed == 85700
    line = _init_failure(err.value, 65536)
    assert "\n" not in line and "85700" in line and "--tflm-arena 86016" in line


def test_uninitialised_model_without_a_size_still_says_what_to_do():
    with pytest.raises(ModelInitError) as err:
        as_steps(np.zeros((2, 6), np.float32), _info())
    line = _init_failure(err.value, 65536)
    assert "\n" not in line and "fusegen verify --tflm" in line


def test_initialised_model_steps():
    steps = as_steps(np.arange(12, dtype=np.float32), _info(input_elems=6, output_elems=2))
    assert steps.shape == (2, 6)


def test_a_measured_arena_is_named_over_the_first_shortfall():
    """TFLM reports only the first failed allocation's shortfall (8272 B here, where the model
    needs 19488 B): the smallest arena measured on the target is what the line names."""
    err = ModelInitError(8272)
    line = _init_failure(err, 8192, 19488)
    assert "\n" not in line and "needs 19488 bytes" in line and "--tflm-arena 19488" in line
    assert "8272" not in line
    # a release TFLM reports no shortfall at all: the measured arena still names the size
    assert "needs 19488 bytes" in _init_failure(ModelInitError(0), 8192, 19488)
    # measured no larger than the arena given: the arena was not the problem
    assert "fusegen verify --tflm" in _init_failure(ModelInitError(0), 65536, 19488)
