"""What an upload becomes on its way to a score: `Prepared` (decoded, its backbone inputs under one bundle's
recipe, its measured quality) and `Picture` (after the backbone: per-crop vectors and embedding, no pixels).

Apart from the embedder (service/serving/embedder.py, which makes them) so the embedding cache
(service/serving/cache.py, which keeps Pictures) and the evidence maps (service/serving/evidence.py, which pool a
Picture's crops) need nothing of the embedder or the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from contract.decode import Decoded
from contract.recipe import pool
from service.serving.quality import PictureQuality


@dataclass(frozen=True)
class Prepared:
    """A decoded upload, its backbone inputs under one bundle's recipe, and its measured quality."""

    decoded: Decoded
    inputs: np.ndarray
    quality: PictureQuality
    working: tuple[int, int]  # width, height of the recipe's resized picture (the crops' boxes refer to it)

    @property
    def sha256(self) -> str:
        return self.decoded.sha256


@dataclass(frozen=True, eq=False)
class Picture:
    """An upload once the backbone has run: what scoring needs of it (and what the embedding cache keeps — no
    pixels). `crops` are the per-crop vectors of the recipe's crops (contract.recipe.crop_features, in
    contract.recipe.crop_boxes order over the `working` picture); `embedding` is their mean."""

    sha256: str
    size: tuple[int, int]  # the upload's own width and height, orientation applied (Decoded.size)
    working: tuple[int, int]  # the recipe's resized picture
    quality: PictureQuality
    crops: np.ndarray  # [n_crops, embedding_dim]
    embedding: np.ndarray  # [embedding_dim]

    @property
    def nbytes(self) -> int:
        return int(self.crops.nbytes + self.embedding.nbytes) + 512  # + the record and its quality measures

    @classmethod
    def of(cls, p: Prepared, crops: np.ndarray) -> Picture:
        return cls(p.sha256, p.decoded.size, p.working, p.quality, crops, pool(crops))
