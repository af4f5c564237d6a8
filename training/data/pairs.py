"""Balanced same/different-artist pairs drawn from cached embeddings.

The original work trained on ~20M materialised pairs; here every epoch draws a fresh balanced sample of
index pairs instead, so memory stays O(n_pairs) whatever the corpus size. Sampling is artist-first for
both classes: a prolific artist is no likelier to be drawn than any other, so the head learns style in
general rather than the few artists with most images. Covered by tests/training/test_pairs.py.
"""

from __future__ import annotations

import math

import keras
import numpy as np


class PairSampler:
    """Draws balanced (ia, ib, y) index pairs over images labelled by artist.

    Positives come from artists with two or more images: an artist uniformly, then two distinct images of
    it. Negatives: two distinct artists uniformly (single-image artists included), then one image of each.
    Each call to `epoch` advances the generator, so consecutive epochs see different pairs.
    """

    def __init__(self, labels: np.ndarray | list, seed: int = 0) -> None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0:
            raise ValueError("labels must be a non-empty 1-D array")
        _, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
        if len(counts) < 2:
            raise ValueError("need at least two artists to form different-artist pairs")
        self._order = np.argsort(inverse, kind="stable")
        self._starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        self._counts = counts
        self._multi = np.flatnonzero(counts >= 2)
        if len(self._multi) == 0:
            raise ValueError("no artist has two images: same-artist pairs are impossible")
        self._rng = np.random.default_rng(seed)

    @property
    def n_images(self) -> int:
        return len(self._order)

    def _image_of(self, artist: np.ndarray, offset: np.ndarray) -> np.ndarray:
        return self._order[self._starts[artist] + offset]

    def _random_offset(self, artist: np.ndarray) -> np.ndarray:
        return (self._rng.random(len(artist)) * self._counts[artist]).astype(np.int64)

    def positives(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = self._rng
        artist = self._multi[rng.integers(len(self._multi), size=n)]
        size = self._counts[artist]
        i = (rng.random(n) * size).astype(np.int64)
        # second image drawn from the other size-1 images: distinct by construction, no rejection loop
        j = (rng.random(n) * (size - 1)).astype(np.int64)
        j += j >= i
        return self._image_of(artist, i), self._image_of(artist, j)

    def negatives(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        rng = self._rng
        n_artists = len(self._counts)
        a1 = rng.integers(n_artists, size=n)
        a2 = rng.integers(n_artists - 1, size=n)
        a2 += a2 >= a1
        return self._image_of(a1, self._random_offset(a1)), self._image_of(a2, self._random_offset(a2))

    def epoch(self, n_pairs: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`n_pairs` shuffled pairs, half same-artist (y=1), half different (y=0)."""
        if n_pairs < 2:
            raise ValueError("n_pairs must be at least 2")
        n_pos = n_pairs // 2
        pa, pb = self.positives(n_pos)
        na, nb = self.negatives(n_pairs - n_pos)
        ia = np.concatenate([pa, na])
        ib = np.concatenate([pb, nb])
        y = np.concatenate([np.ones(n_pos, np.float32), np.zeros(n_pairs - n_pos, np.float32)])
        perm = self._rng.permutation(n_pairs)
        return ia[perm], ib[perm], y[perm]


def fixed_pairs(labels: np.ndarray | list, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A deterministic balanced pair set (same seed, same pairs) for validation and test."""
    return PairSampler(labels, seed=seed).epoch(n)


def pair_inputs(embeddings: np.ndarray, ia: np.ndarray, ib: np.ndarray) -> dict[str, np.ndarray]:
    """The head's named inputs for index pairs into an embedding matrix."""
    return {"embedding_a": embeddings[ia], "embedding_b": embeddings[ib]}


class PairDataset(keras.utils.PyDataset):
    """Feeds (embedding_a, embedding_b) → y to `fit`, resampling the pairs at every epoch.

    Only the current epoch's index arrays are held; batches are gathered from the cached embedding
    matrix on demand.
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        sampler: PairSampler,
        pairs_per_epoch: int,
        batch_size: int = 256,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        if len(embeddings) != sampler.n_images:
            raise ValueError(f"{len(embeddings)} embeddings but the sampler has {sampler.n_images} labels")
        self.embeddings = np.asarray(embeddings, np.float32)
        self.sampler = sampler
        self.pairs_per_epoch = pairs_per_epoch
        self.batch_size = batch_size
        self.epochs_drawn = 0
        self._resample()

    def _resample(self) -> None:
        self.ia, self.ib, self.y = self.sampler.epoch(self.pairs_per_epoch)
        self.epochs_drawn += 1

    def __len__(self) -> int:
        return math.ceil(self.pairs_per_epoch / self.batch_size)

    def __getitem__(self, index: int):
        s = slice(index * self.batch_size, (index + 1) * self.batch_size)
        return pair_inputs(self.embeddings, self.ia[s], self.ib[s]), self.y[s]

    def on_epoch_end(self) -> None:
        self._resample()
