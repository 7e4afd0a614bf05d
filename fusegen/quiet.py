"""Quiet by default: what TensorFlow and the libraries around it print is hidden unless the user
asks (`fusegen --verbose`, `verbose=True` in the Python API).

Three channels, each silenced where it starts:
- TensorFlow's C++ logging (`I0000 ... cpu_feature_guard`, `E0000 ... NodeDef`): the
  TF_CPP_MIN_LOG_LEVEL environment variable, read when TensorFlow is imported, so set before;
- what the converter's C++ code writes straight to file descriptor 2 (MLIR's
  `fully_quantize: 0, inference_type: 6 ...`, absl lines before absl::InitializeLog): fd 2 is
  pointed at a temporary file around the call (`native_stderr`), while Python's own sys.stderr
  keeps writing to the terminal;
- Python warnings and loggers of the libraries (deprecations, `tf.lite.Interpreter is
  deprecated`, `WARNING:tensorflow:`): warnings filters and logger levels.
Nothing here imports TensorFlow.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator

# Modules whose warnings are theirs, not the user's (a regular expression on the module name).
LIBRARIES = r"(tensorflow|tf_keras|keras|absl|google|h5py|jax|ml_dtypes|flatbuffers)(\..*)?$"
_state = {"verbose": False}


def configure(verbose: bool = False) -> None:
    """Call before TensorFlow is imported (the CLI does it first thing). verbose=True lets
    everything through, TensorFlow's INFO lines included."""
    _state["verbose"] = verbose
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    quiet_environment()
    filter_warnings()
    for name in ("tensorflow", "absl", "keras", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)


def quiet_environment(level: str = "3") -> None:
    """TensorFlow's C++ log level, unless the user set one (read when TF is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", level)
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")


def filter_warnings() -> None:
    """The libraries' warnings and every deprecation off (use inside warnings.catch_warnings()
    to keep it local, as the Python API does)."""
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", module=LIBRARIES)
    warnings.filterwarnings("ignore", message=r"(?s).*tf\.lite\.Interpreter is deprecated")


@contextlib.contextmanager
def scoped(verbose: bool) -> Iterator[None]:
    """The Python API's quiet: warnings filtered for the call only, native stderr captured."""
    if verbose:
        yield
        return
    with warnings.catch_warnings():
        filter_warnings()
        with native_stderr():
            yield


def verbose() -> bool:
    return _state["verbose"]


@contextlib.contextmanager
def native_stderr() -> Iterator[None]:
    """Native code's writes to fd 2 go to a temporary file for the duration; Python's
    sys.stderr still reaches the real stderr. What native code wrote is shown after all when
    the block fails with anything but a UserError (a bug in fusegen: the evidence), and always
    with verbose."""
    if _state["verbose"]:
        yield
        return
    from fusegen.errors import UserError

    sys.stderr.flush()
    saved = os.dup(2)
    python_stderr = sys.stderr
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        ours = None
        if _writes_to_fd2(python_stderr):  # else (a test's capture, a notebook) leave it
            ours = open(saved, "w", closefd=False, encoding="utf-8", errors="replace")
            sys.stderr = ours
        failed = False
        try:
            yield
        except (UserError, KeyboardInterrupt):
            raise
        except BaseException:
            failed = True
            raise
        finally:
            if ours is not None:
                ours.close()
                sys.stderr = python_stderr
            os.dup2(saved, 2)
            os.close(saved)
            if failed:
                log.seek(0)
                python_stderr.write(log.read().decode(errors="replace"))
                python_stderr.flush()


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError):
        return False
