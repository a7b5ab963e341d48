"""Plain Python batch-level BPE steps: the reference the numba kernel is checked against, merge for
merge (tests/test_pair_merge.py, tests/test_dynamic_merging.py) and timed against
(transplant.eval.bench_dynamic). Lists, a Counter, and the rules written out once more."""

from __future__ import annotations

from collections import Counter

import numpy as np


class ReferenceState:
    """`transplant.dynamic.merging.PairState` over Python lists."""

    def __init__(self, ids: list, joinable: list) -> None:
        self.seqs = [[int(t) for t in seq] for seq in ids]
        self.joins = [[int(f) for f in flags] for flags in joinable]

    def best_pair(self) -> tuple[int, int, int]:
        counts: Counter = Counter()
        for seq, joins in zip(self.seqs, self.joins):
            for i in range(len(seq) - 1):
                if joins[i]:
                    counts[seq[i], seq[i + 1]] += 1
        if not counts:
            return -1, -1, 0
        (left, right), count = min(counts.items(), key=lambda item: (-item[1], item[0]))
        return left, right, count

    def apply(self, left: int, right: int, new_id: int) -> int:
        merged = 0
        for k, (seq, joins) in enumerate(zip(self.seqs, self.joins)):
            out, out_joins, i = [], [], 0
            while i < len(seq):
                if i + 1 < len(seq) and joins[i] and seq[i] == left and seq[i + 1] == right:
                    out.append(new_id)
                    out_joins.append(joins[i + 1])
                    merged += 1
                    i += 2
                else:
                    out.append(seq[i])
                    out_joins.append(joins[i])
                    i += 1
            self.seqs[k], self.joins[k] = out, out_joins
        return merged

    def length(self) -> int:
        return sum(len(seq) for seq in self.seqs)

    def sequences(self) -> list[np.ndarray]:
        return [np.array(seq, np.int64) for seq in self.seqs]
