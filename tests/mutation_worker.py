"""Runs mutated .tflite files through verify's path; used by test_validate_mutation.py in a
subprocess started with AddressSanitizer preloaded (the host cores are built with
-fsanitize=address there, fusegen/hostcore.py FUSEGEN_HOST_SANITIZE).

    python mutation_worker.py CASES.json RESULTS.jsonl

CASES.json: [{"name", "dtype", "keras", "inputs", "mutants": [[label, path], ...]}]. For every
mutant one JSON line: {"case", "label", "kind": "error"|"result", "message", "passed", "digest"}
where a result is verify's verdict (float32: within verify's rule, fusegen/verdict.py; int8: the
CLI's default step bounds) and a digest of the outputs. Anything but a UserError or ModelError
escapes and kills the worker: the test reports that as a crash.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np


def main(cases_path: str, results_path: str) -> None:
    from fusegen.verdict import Int8Bounds
    from fusegen.errors import UserError
    from fusegen.frontend.keras_model import ModelError, load_model
    from fusegen.commands.verify import FloatVerifier, Int8Verifier, load_inputs

    cases = json.loads(Path(cases_path).read_text())
    with open(results_path, "w") as out:
        for case in cases:
            model = load_model(case["keras"], [])
            x = load_inputs(Path(case["inputs"]), model)
            verifier = (FloatVerifier if case["dtype"] == "float32" else Int8Verifier)(model, x)
            for label, path in case["mutants"]:
                data = Path(path).read_bytes()
                row = {"case": case["name"], "label": label}
                try:
                    if case["dtype"] == "float32":
                        checks = verifier.check(data, path)
                        errors = [c.max_abs for c in checks]
                        passed = all(c.passed() for c in checks)
                        digest = repr([round(e, 12) for e in errors])
                    else:
                        r, got = verifier.check(data, path)
                        passed = not Int8Bounds().failures(r.mean_abs / r.output_step,
                                                           r.max_abs / r.output_step)
                        digest = hashlib.sha256(np.ascontiguousarray(got).tobytes()).hexdigest()
                    row.update(kind="result", passed=passed, digest=digest)
                except (UserError, ModelError) as err:
                    row.update(kind="error", message=str(err))
                out.write(json.dumps(row) + "\n")
                out.flush()


if __name__ == "__main__":
    main(*sys.argv[1:])
