"""Production batches of millions of rows of the churn example, streamed to disk.

A batch is written as consecutive pieces of the example generator (``generate_batch``, one
``batch_index`` per piece, so the ids stay unique), each appended to the file and dropped: memory is
one piece whatever the size. The CSV is the one ``write_batches`` writes (pandas' ``to_csv``), so the
benchmark scores what a small test scores. ``python -m bench.large_batches ROWS PATH`` writes one.
"""

from __future__ import annotations

import sys
from pathlib import Path

PIECE_ROWS = 500_000
SEED = 11


def write_batch(path: Path, rows: int, *, seed: int = SEED, piece_rows: int = PIECE_ROWS) -> Path:
    """Write ``rows`` unlabeled rows to ``path`` (CSV), a piece at a time; kept if already complete
    (a ``.done`` marker beside it), so a large batch is generated once and reused."""
    from ctloop.devtools.example_data import TARGET, generate_batch

    done = path.with_name(path.name + ".done")
    if done.exists() and done.read_text() == str(rows):
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8", newline="") as out:
        for index, start in enumerate(range(0, rows, piece_rows)):
            piece = generate_batch(min(piece_rows, rows - start), seed=seed, batch_index=index)
            piece.drop(columns=[TARGET]).to_csv(out, index=False, header=index == 0)
    partial.replace(path)
    done.write_text(str(rows))
    return path


if __name__ == "__main__":
    write_batch(Path(sys.argv[2]), int(sys.argv[1]))
