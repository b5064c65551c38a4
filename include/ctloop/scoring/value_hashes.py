"""64-bit hashes of a column's values, for the uniqueness check over a whole batch.

pandas hashes text one Python object at a time (``hash_pandas_object``: about 2 us a value, and
turning an Arrow column into Python strings first costs about as much again), which made the
uniqueness of a 20M-row id column the longest step of publishing a batch. Text read as Arrow is
hashed here on its bytes instead: the values are laid out in a zero-padded matrix of 8-byte words
(one row a value) and folded word by word with numpy, a few vector operations per word. A value
longer than :data:`WIDE` bytes (rare in an id column; hostile otherwise) is hashed alone, so a
single long value never widens the matrix. Equal values always get equal hashes; unequal ones
rarely do, and the caller compares the values whose hashes repeat, so a collision never decides.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from numpy.typing import NDArray

WIDE = 64
"""Values up to this many bytes are hashed together; longer ones one by one."""

SLICE = 1 << 16
"""Values hashed at once: the matrix and its index arrays stay a few MiB whatever the column."""

_MULTIPLIER = 0x9E3779B97F4A7C15  # 2^64 / golden ratio, odd: multiplying by it is a bijection


def value_hashes(values: pa.Array | pa.ChunkedArray | pd.Series) -> NDArray[np.uint64]:
    """One hash per non-null value of ``values`` (nulls are not values), in order."""
    import pandas as pd
    import pyarrow as pa

    if isinstance(values, pd.Series):
        return _pandas_hashes(values.dropna())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    values = values.drop_null()
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)):
        return _pandas_hashes(values.to_pandas())
    import numpy as np

    text = values.cast(pa.large_binary())
    slices = [text.slice(start, SLICE) for start in range(0, len(text), SLICE)]
    return np.concatenate([text_hashes(piece) for piece in slices] or [np.empty(0, np.uint64)])


def _pandas_hashes(values: pd.Series) -> NDArray[np.uint64]:
    import pandas as pd

    hashes: NDArray[np.uint64] = pd.util.hash_pandas_object(values, index=False).to_numpy()
    return hashes


def text_hashes(values: pa.Array) -> NDArray[np.uint64]:
    """Hashes of a ``large_binary`` array without nulls, from its buffers."""
    import numpy as np

    count = len(values)
    offsets = np.frombuffer(values.buffers()[1], dtype=np.int64, count=count + 1, offset=values.offset * 8)
    data_buffer = values.buffers()[2]
    data = np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None else np.empty(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    long = lengths > WIDE
    hashes = _folded(data, starts[~long], lengths[~long])
    if not long.any():
        return hashes
    result = np.empty(count, dtype=np.uint64)
    result[~long] = hashes
    result[long] = [_digest(data[s : s + n]) for s, n in zip(starts[long], lengths[long], strict=True)]
    return result


def _folded(
    data: NDArray[np.uint8], starts: NDArray[np.int64], lengths: NDArray[np.int64]
) -> NDArray[np.uint64]:
    """The values' bytes as rows of a zero-padded matrix of 8-byte words, folded into one hash a
    row with the length mixed in (so trailing zero bytes still tell values apart)."""
    import numpy as np

    count = len(starts)
    words = -(-int(lengths.max(initial=0)) // 8) or 1
    matrix = np.zeros((count, words * 8), dtype=np.uint8)
    rows = np.repeat(np.arange(count), lengths)
    columns = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    matrix[rows, columns] = data[np.repeat(starts, lengths) + columns]
    del rows, columns
    hashes = lengths.astype(np.uint64) * np.uint64(_MULTIPLIER)
    with np.errstate(over="ignore"):
        for word in matrix.view(np.uint64).T:
            hashes = _mix(hashes ^ word)
    return hashes


def _mix(values: NDArray[np.uint64]) -> NDArray[np.uint64]:
    """A multiply and xor-shift round (as in splitmix64), spreading every input bit."""
    import numpy as np

    values = values * np.uint64(_MULTIPLIER)
    return values ^ (values >> np.uint64(29))


def _digest(data: Any) -> int:
    return int.from_bytes(hashlib.blake2b(data.tobytes(), digest_size=8).digest(), "little")
