"""Which donor tokens the base already has (same bytes, or same special role), and which are new."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from transplant.vocab import Vocab

NEW, SHARED, SPECIAL = 0, 1, 2


@dataclass
class Alignment:
    """donor id -> base id (or -1), with how each match was made."""

    donor_to_base: np.ndarray  # int64 (V_donor,)
    kind: np.ndarray  # int8 (V_donor,): NEW, SHARED (same bytes), SPECIAL (same content or role)
    special_map: dict[str, str | None]  # donor special content -> base special content (None: new)

    @property
    def shared_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(donor ids, base ids) of tokens shared by bytes: the anchors of sparse methods."""
        donor = np.flatnonzero(self.kind == SHARED)
        return donor, self.donor_to_base[donor]

    @property
    def new_ids(self) -> np.ndarray:
        return np.flatnonzero(self.kind == NEW)

    def counts(self) -> dict[str, int]:
        return {
            "donor_vocab": int(self.kind.size),
            "shared": int((self.kind == SHARED).sum()),
            "special_matched": int((self.kind == SPECIAL).sum()),
            "new": int((self.kind == NEW).sum()),
        }


def align(base: Vocab, donor: Vocab) -> Alignment:
    donor_to_base = np.full(donor.size, -1, dtype=np.int64)
    kind = np.zeros(donor.size, dtype=np.int8)
    index = base.byte_index
    # A donor byte-fallback piece that its own tokenizer uses for the byte (Mistral writes every
    # newline as <0x0A>) takes the row the base model saw for that byte: the token the base tokenizer
    # produces for it (Gemma's ordinary "\n"; its own <0x0A> row is all but untrained). A piece its
    # tokenizer keeps for rare contexts takes the base's byte-fallback piece, trained for those.
    fallback = {base.tokens[i]: i for i in np.flatnonzero(base.byte_fallback)}
    for did, tok in enumerate(donor.tokens):
        if tok is None:
            continue
        bid = None
        if donor.byte_fallback[did]:
            own = base.decompose(tok)
            if donor.decompose(tok) == [did] and len(own) == 1 and base.tokens[own[0]] == tok:
                bid = own[0]
            else:
                bid = fallback.get(tok)
        if bid is None:
            bid = index.get(tok)
        if bid is not None:
            donor_to_base[did] = bid
            kind[did] = SHARED
    special_map: dict[str, str | None] = {}
    by_content = {sp.content: sp.id for sp in base.specials.values()}
    for did, sp in sorted(donor.specials.items()):
        bid = by_content.get(sp.content)
        if bid is None:
            bid = next((base.role_id(r) for r in sp.roles if base.role_id(r) is not None), None)
        special_map[sp.content] = base.specials[bid].content if bid is not None else None
        if bid is not None:
            donor_to_base[did] = bid
            kind[did] = SPECIAL
    return Alignment(donor_to_base, kind, special_map)
