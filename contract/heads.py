"""Head kinds: what each kind of pair head is, in one registry read by the card, training and serving.

A kind says how the service may use a head's files, and how training makes it:

- `seed`: the original design's concat-MLP, trained on pairs; order-sensitive, so a pair is scored in both orders
  and averaged; no per-image projection (every reference pair runs the whole head).
- `symmetric`: trained on pairs; |a−b| and a⊙b after a per-image projection, so it is order-free and references
  are projected once (projection + comparator ONNX).
- `cosine`: fitted, not trained (training/heads/cosine.py): whitening projection, calibrated cosine comparator;
  needs its `CosineSpec` in the card.

The card validates a head against its kind (`contract.card.HeadSpec`), training builds the trained kinds
(`training/heads/trained.py`), and the service asks the kind whether scores are order-free (`service/serving/model.py`).
Covered by tests/contract/test_card.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HeadKind:
    name: str
    trained: (
        bool  # fitted by gradient descent on pairs (training/heads/trained.py builds it); else fitted in closed form
    )
    order_free: bool  # score(a, b) == score(b, a) by construction; else the service averages both orders
    projection: bool  # exports head_projection.onnx + head_comparator.onnx: references are projected once
    spec: str | None = None  # the card field the kind needs beside its files (e.g. "cosine")
    description: str = ""


KINDS: dict[str, HeadKind] = {
    k.name: k
    for k in (
        HeadKind("seed", trained=True, order_free=False, projection=False, description="concat → MLP → sigmoid"),
        HeadKind(
            "symmetric", trained=True, order_free=True, projection=True, description="projection; |a−b|, a⊙b → sigmoid"
        ),
        HeadKind(
            "cosine",
            trained=False,
            order_free=True,
            projection=True,
            spec="cosine",
            description="whitening projection; sigmoid(slope · cosine + bias)",
        ),
    )
}
TRAINED = tuple(k for k, v in KINDS.items() if v.trained)


def head_kind(name: str) -> HeadKind:
    """The registered kind `name` (ValueError naming the known ones otherwise)."""
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown head kind {name!r}; known: {sorted(KINDS)}") from None
