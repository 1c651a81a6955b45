"""Range coding of quantised codes with `constriction` (each latent dimension has its own categorical table).

`constriction` is a maintained Rust library with Python wheels and only numpy as a dependency; its
categorical model takes our probability tables as they are and guarantees every symbol a nonzero
probability, so a code outside the training bulk costs bits but never fails. (CompressAI's entropy
models would pull in torchvision, which does not run beside our CPU torch.)
A chunk of rows is one segment: dimension by dimension, all rows' symbols, in a queue (range) coder.
"""

from __future__ import annotations

import numpy as np

from aeops.compression.prior import SymbolTable

RECIPE = 1  # how tables become models (prior.py's bins and mixing, the integer weights below); in the header
WEIGHT_BITS = 24


def coder_id() -> dict[str, object]:
    """What decoding relies on besides the model: the table recipe and the range coder's version."""
    from importlib.metadata import version

    return {"recipe": RECIPE, "constriction": version("constriction")}


def integer_weights(p: np.ndarray) -> np.ndarray:
    """Probabilities rounded to whole multiples of 2⁻²⁴, as floats: last-bit differences in another machine's
    float maths (libm, BLAS) change a table only if a value lies within rounding error of a rounding boundary."""
    return np.rint(np.asarray(p, np.float64) * (1 << WEIGHT_BITS))


def _models(table: SymbolTable) -> list:
    import constriction

    return [constriction.stream.model.Categorical(integer_weights(p), perfect=False) for p in table.probabilities]


class SegmentCoder:
    """Encodes (rows, d) symbol chunks to uint32 words and back, with one table's models built once."""

    def __init__(self, table: SymbolTable):
        self.table = table
        self.models = _models(table)

    def encode(self, symbols: np.ndarray) -> np.ndarray:
        import constriction

        coder = constriction.stream.queue.RangeEncoder()
        for j, model in enumerate(self.models):
            coder.encode(np.ascontiguousarray(symbols[:, j], dtype=np.int32), model)
        return coder.get_compressed()

    def decode(self, words: np.ndarray, rows: int) -> np.ndarray:
        import constriction

        coder = constriction.stream.queue.RangeDecoder(np.asarray(words, np.uint32))
        out = np.empty((rows, len(self.models)), np.int32)
        for j, model in enumerate(self.models):
            out[:, j] = coder.decode(model, rows)
        return out
