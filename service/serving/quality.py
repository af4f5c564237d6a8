"""The quality step of one model: what an upload's measured quality is, whether the model may judge it at all, and
which of the card's bands (and so which calibration table) a pair or query falls in.

Keyed by the model (its card's quality model, floor and bands), so it is part of the serving bundle
(service/serving/bundle.py). The measures and the rules are contract.quality's; this module applies them and
words the refusals. Covered by tests/service/test_quality.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from contract import quality
from contract.card import Card, QualityBand
from contract.decode import Decoded, InvalidImage
from contract.quality import Measures


@dataclass(frozen=True)
class PictureQuality:
    """One upload's measured quality (contract.quality): its measures and, with the card's quality model, the
    score in [0, 1] (None: the model measured no quality)."""

    measures: Measures
    score: float | None


@dataclass(frozen=True)
class QualityUsed:
    """What a reply says about quality: the pictures', the pair's (their product; verify: the query's), the band
    whose rates were used (its lower edge; None: the model has no bands) and the floor below which it refuses."""

    score: float | None
    band: float | None
    floor: float | None
    pictures: tuple[PictureQuality, ...]


def _too_low(what: str, score: float, floor: float, m: Measures) -> str:
    jpeg = f", JPEG quality {m.jpeg_quality}" if m.jpeg_quality is not None else ""
    return (
        f"{what}'s measured quality is {score:.2f}, below {floor:.2f}, the lowest quality this model's error rates "
        f"were measured at ({m.width}×{m.height} px{jpeg}, sharpness {m.sharpness:.2f}): no rate could be "
        "claimed for it. Send a larger, sharper photograph of the painting, straight on, without heavy compression"
    )


class QualityRules:
    """The card's quality model, floor and bands, applied to uploads."""

    def __init__(self, card: Card):
        self.model = card.calibration.quality
        self.bands = card.calibration.bands

    @property
    def top_band(self) -> QualityBand | None:
        return self.bands[0] if self.bands else None

    def assess(self, decoded: Decoded, working: Image.Image) -> PictureQuality:
        """`working`: the picture after the recipe's resize (contract.recipe `resized`), which quality is
        measured on and the crops are cut from."""
        m = quality.measure(decoded.image, decoded.n_bytes, decoded.jpeg_quality, working, decoded.size)
        return PictureQuality(m, None if self.model is None else round(quality.score(m, self.model), 4))

    def check_floor(self, pq: PictureQuality, what: str = "the picture") -> None:
        """422 `image_quality_too_low` for a picture below the card's floor (before the backbone sees it)."""
        if self.model is None or pq.score is None or pq.score >= self.model.floor:
            return
        raise InvalidImage("image_quality_too_low", _too_low(what, pq.score, self.model.floor, pq.measures))

    def band(self, score: float | None, what: str, pictures: Sequence[PictureQuality]) -> QualityBand | None:
        """The card's band for a pair (or query) of quality `score`; None when the card has no bands. Below the
        lowest band the model's rates were never measured: 422 `image_quality_too_low`."""
        if not self.bands or score is None:
            return None
        band = quality.band_for(score, self.bands)
        if band is None:
            worst = min(pictures, key=lambda p: p.score if p.score is not None else 1.0)
            raise InvalidImage(
                "image_quality_too_low", _too_low(what, score, self.bands[-1].min_quality, worst.measures)
            )
        return band

    def used(self, score: float | None, band: QualityBand | None, pictures: Sequence[PictureQuality]) -> QualityUsed:
        return QualityUsed(
            score=None if score is None else round(score, 4),
            band=None if band is None else band.min_quality,
            floor=None if self.model is None else self.model.floor,
            pictures=tuple(pictures),
        )
