"""fusegen: any Keras recurrent cell as one fused TFLite custom op with a TFLM kernel.

The Python API mirrors the command line (README, "Python API"):

    import fusegen
    tflite = fusegen.convert(model, quantize="int8", calibration=x, kernels="generated/")
    report = fusegen.verify(tflite, model, inputs=x)

`convert`, `build`, `verify`, `bench` and `compare` live in fusegen/api.py and are imported on
first use, so `import fusegen` imports no TensorFlow; imported before TensorFlow, it sets
TF_CPP_MIN_LOG_LEVEL=2 unless set (TensorFlow's INFO and WARNING start-up lines off). Errors the user can fix are
`fusegen.UserError` (and its subclasses), with the CLI's one-line message.
"""

from __future__ import annotations

import sys as _sys
import types as _types

from fusegen.errors import UserError

if "tensorflow" not in _sys.modules:  # TensorFlow's INFO/WARNING start-up lines off (the
    from fusegen.quiet import quiet_environment  # user's own TF_CPP_MIN_LOG_LEVEL wins)

    quiet_environment("2")

__all__ = ["UserError", "bench", "build", "compare", "convert", "verify"]
_API = frozenset({"build", "convert", "verify", "VerifyReport", "BenchError", "CompareFailed"})
# `fusegen.bench` and `fusegen.compare` are also subpackages: the import system binds them as
# attributes of this package once imported. They are made callable (the API function) instead,
# so `fusegen.bench(...)` works before and after, and `fusegen.bench.cli` stays a module path.
_CALLABLE_PACKAGES = frozenset({"bench", "compare"})


class _CallablePackage(_types.ModuleType):
    def __call__(self, *args, **kwargs):
        from fusegen import api

        return getattr(api, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _Package(_types.ModuleType):
    def __setattr__(self, name: str, value) -> None:
        if name in _CALLABLE_PACKAGES and type(value) is _types.ModuleType:
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _API:
        from fusegen import api

        return getattr(api, name)
    if name in _CALLABLE_PACKAGES:
        import importlib

        return importlib.import_module(f"fusegen.{name}")  # bound (callable) by _Package
    raise AttributeError(f"module 'fusegen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API | _CALLABLE_PACKAGES)
