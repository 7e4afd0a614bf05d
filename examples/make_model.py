"""Makes the README's example inputs: model.keras (Conv1D -> RNN(MinimalGatedCell) -> Dense) with
random weights, and x.npy, four input samples.

    python examples/make_model.py [OUT_DIR]
"""

import sys
from pathlib import Path

import keras
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from minimal_gated import MinimalGatedCell  # noqa: E402


def main(out: Path) -> None:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((20, 6)), keras.layers.Conv1D(8, 3, padding="same"),
                              keras.layers.RNN(MinimalGatedCell(16)), keras.layers.Dense(4)])
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.keras")
    x = np.random.default_rng(0).uniform(-1, 1, (4, 20, 6)).astype(np.float32)
    np.save(out / "x.npy", x)
    print(f"wrote {out / 'model.keras'} and {out / 'x.npy'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path("."))
