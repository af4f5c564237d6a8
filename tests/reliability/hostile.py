"""A deterministic corpus of hostile uploads, built in memory.

Every case carries the outcomes the HTTP contract allows for it: `OK` (the upload is a usable picture, any
2xx) and/or the 4xx statuses a rejection may use (413 too large, 415 not an allowed format, 422 corrupt or
refused, 400 malformed request). Nothing here may ever produce a 5xx, a hang or a crash.

Bombs are crafted by hand (headers with correct CRCs, huge declared sizes, tiny payloads) so the corpus
stays a few hundred KiB and builds in well under a second. `tests/reliability/test_hostile.py` checks the
corpus itself against Pillow's strict decoder, so a case meant to be broken really is broken.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

OK = 200  # stands for "accepted": 200 on scoring routes, 201 on enrolment

EMPTY = frozenset({400, 415, 422})
NOT_AN_IMAGE = frozenset({415, 422})
CORRUPT = frozenset({415, 422})
BOMB = frozenset({413, 415, 422})
# Unusual but legitimate pictures: the contract says any mode becomes RGB.
VALID = frozenset({OK})
# Legal files a strict service may still refuse (tiny, degenerate, multi-frame, trailing data).
EITHER = frozenset({OK, 400, 413, 415, 422})


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    outcomes: frozenset[int]
    filename: str = "upload.jpg"
    content_type: str = "image/jpeg"
    note: str = ""

    @property
    def may_succeed(self) -> bool:
        return OK in self.outcomes

    @property
    def must_succeed(self) -> bool:
        return self.outcomes == VALID

    def accepts(self, status: int) -> bool:
        """True when `status` is one the contract allows for this upload."""
        if 200 <= status < 300:
            return self.may_succeed
        return status in self.outcomes


# ---------------------------------------------------------------- building blocks


def _noise(seed: int, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> Image.Image:
    """A deterministic picture with enough texture that no two seeds look alike."""
    w, h = size
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "LA": 2, "L": 1, "CMYK": 4}[mode]
    base = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    # a gradient on top keeps JPEG from collapsing the texture into flat blocks
    grad = (np.arange(w, dtype=np.uint16)[None, :, None] * 255 // max(w - 1, 1)).astype(np.uint8)
    arr = (base // 2 + grad // 2).astype(np.uint8)
    if channels == 1:
        arr = arr[..., 0]
    return Image.fromarray(arr, mode=mode)


def _save(image: Image.Image, fmt: str, **params: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _png(width: int, height: int, depth: int, color: int, raw: bytes, extra: list[bytes] | None = None) -> bytes:
    ihdr = struct.pack(">IIBBBBB", width, height, depth, color, 0, 0, 0)
    chunks = [_png_chunk(b"IHDR", ihdr), *(extra or []), _png_chunk(b"IDAT", zlib.compress(raw, 9))]
    return PNG_MAGIC + b"".join(chunks) + _png_chunk(b"IEND", b"")


def _compressed_zeros(n: int) -> bytes:
    """zlib stream of `n` zero bytes without ever holding them all in memory."""
    comp = zlib.compressobj(9)
    block = bytes(1 << 20)
    out = []
    left = n
    while left:
        take = min(left, len(block))
        out.append(comp.compress(block[:take]))
        left -= take
    out.append(comp.flush())
    return b"".join(out)


def png_bomb_complete(width: int, height: int) -> bytes:
    """A fully valid 1-bit PNG of width×height black pixels: tiny on the wire, huge once decoded."""
    row = 1 + (width + 7) // 8  # filter byte + packed bits
    idat = _compressed_zeros(row * height)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return PNG_MAGIC + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_bomb_header(width: int = 65535, height: int = 65535) -> bytes:
    """Correct IHDR declaring an enormous RGBA image, then one tiny IDAT: the decoder must never be reached."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return PNG_MAGIC + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def gif_bomb(width: int = 65535, height: int = 65535) -> bytes:
    """GIF89a whose screen and single frame declare width×height; the LZW data is a clear code and an end."""
    screen = struct.pack("<HHBBB", width, height, 0x80, 0, 0)  # global colour table of 2 entries
    palette = b"\x00\x00\x00\xff\xff\xff"
    descriptor = b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0)
    lzw = b"\x02" + b"\x02\x44\x01" + b"\x00"  # min code size 2; clear, pixel 0, end-of-information
    return b"GIF89a" + screen + palette + descriptor + lzw + b"\x3b"


def webp_bomb(width: int = 16383, height: int = 16383) -> bytes:
    """Lossless WebP (VP8L) header declaring the largest size the format allows, followed by a few bytes."""
    bits = (width - 1) | ((height - 1) << 14) | (0 << 28) | (0 << 29)
    vp8l = b"\x2f" + struct.pack("<I", bits) + b"\x00" * 16
    chunk = b"VP8L" + struct.pack("<I", len(vp8l)) + vp8l
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


def tiff_bomb(width: int = 100_000, height: int = 100_000) -> bytes:
    """Little-endian baseline TIFF, 8-bit grey, declaring width×height, with a 16-byte strip."""
    strip = b"\x00" * 16
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample, SHORT
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # PhotometricInterpretation: BlackIsZero
        (273, 4, 1, 0),  # StripOffsets, patched below
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, len(strip)),  # StripByteCounts
    ]
    ifd_size = 2 + 12 * len(entries) + 4
    strip_offset = 8 + ifd_size
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = strip_offset
        packed = struct.pack("<H", value) + b"\x00\x00" if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", 8) + ifd + strip


def jpeg_bomb(width: int = 65500, height: int = 65500) -> bytes:
    """A real small JPEG whose SOF0 frame header is rewritten to declare width×height."""
    data = bytearray(_save(_noise(7, (16, 16)), "JPEG", quality=80))
    sof = data.find(b"\xff\xc0")
    # SOF0: marker(2) length(2) precision(1) height(2) width(2)
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def png_16bit_rgb(seed: int, width: int = 40, height: int = 30) -> bytes:
    """16-bit-per-channel RGB PNG (Pillow cannot write one, so the rows are filtered by hand)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 65536, size=(height, width, 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(height))
    return _png(width, height, 16, 2, raw)


def png_ztxt_bomb() -> bytes:
    """A valid small PNG carrying a zTXt chunk that inflates to 64 MiB of zeros (text-chunk zip bomb)."""
    base = _save(_noise(21, (32, 32)), "PNG")
    ztxt = _png_chunk(b"zTXt", b"Comment\x00\x00" + _compressed_zeros(64 << 20))
    at = base.find(b"IDAT") - 4  # chunks before IDAT are read when the file is opened
    return base[:at] + ztxt + base[at:]


def _huge_exif_jpeg(seed: int) -> bytes:
    exif = Image.Exif()
    exif[0x010E] = "A" * 60_000  # ImageDescription: one APP1 segment is at most 64 KiB
    exif[0x0112] = 6  # Orientation: rotate, so the service's exif_transpose has work to do
    return _save(_noise(seed), "JPEG", quality=85, exif=exif.tobytes())


def _corrupt_exif_jpeg(seed: int) -> bytes:
    """APP1 'Exif' segment whose TIFF header points its IFD far outside the segment."""
    jpeg = _save(_noise(seed), "JPEG", quality=85)
    payload = b"Exif\x00\x00" + b"II*\x00" + struct.pack("<I", 0x7FFFFFF0) + b"\xff" * 64
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    return jpeg[:2] + app1 + jpeg[2:]


def _exif_orientation_jpeg(seed: int, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(_noise(seed), "JPEG", quality=85, exif=exif.tobytes())


def _animated_gif(seed: int) -> bytes:
    frames = [_noise(seed + i, (32, 32)).convert("P") for i in range(3)]
    return _save(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def _multiframe_tiff(seed: int) -> bytes:
    frames = [_noise(seed + i, (32, 32)) for i in range(3)]
    return _save(frames[0], "TIFF", save_all=True, append_images=frames[1:])


def _gif_js_polyglot(seed: int) -> bytes:
    """A valid GIF that is also a JavaScript payload carrier: script in a comment block and after the trailer."""
    gif = _save(_noise(seed, (24, 24)).convert("P"), "GIF")
    script = b"*/=alert(document.domain)//"
    comment = b"\x21\xfe" + bytes([len(script)]) + script + b"\x00"
    return gif[:-1] + comment + b"\x3b" + b"<script>alert(1)</script>"


def _zip_entry(name: str) -> zipfile.ZipInfo:
    # a fixed timestamp: ZipFile.writestr(str) stamps the current time, which would break determinism
    return zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))


def _png_with_zip(seed: int) -> bytes:
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr(_zip_entry("payload.sh"), "#!/bin/sh\necho owned\n")
    return _save(_noise(seed), "PNG") + zipped.getvalue()


def _jpeg_with_html_comment(seed: int) -> bytes:
    jpeg = _save(_noise(seed), "JPEG", quality=85)
    html = b"<html><body><script>alert(1)</script></body></html>"
    com = b"\xff\xfe" + struct.pack(">H", len(html) + 2) + html
    return jpeg[:2] + com + jpeg[2:]


def _zip_file() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(_zip_entry("image.jpg"), b"\x00" * 4096)
    return buf.getvalue()


def _truncations(name: str, data: bytes, filename: str, content_type: str) -> list[Hostile]:
    # 4 and 12 bytes cut inside the magic/header; the rest cut through the pixel data.
    offsets = sorted({4, 12, len(data) // 4, len(data) // 2, len(data) * 9 // 10})
    return [
        Hostile(f"{name}_truncated_{n}", data[:n], CORRUPT, filename, content_type, f"first {n} of {len(data)} bytes")
        for n in offsets
    ]


# ---------------------------------------------------------------- the corpus


@lru_cache(maxsize=1)
def corpus() -> tuple[Hostile, ...]:
    """All cases, same bytes on every call and every machine with the same Pillow."""
    cases: list[Hostile] = [
        Hostile("zero_bytes", b"", EMPTY),
        Hostile("text_as_jpeg", b"this is not a painting\n" * 20, NOT_AN_IMAGE),
        Hostile("html_as_jpeg", b"<!doctype html><html><script>alert(1)</script></html>", NOT_AN_IMAGE),
        Hostile(
            "svg_with_script",
            b'<svg xmlns="http://www.w3.org/2000/svg" width="9999" height="9999"><script>alert(1)</script></svg>',
            NOT_AN_IMAGE,
            "upload.svg",
            "image/svg+xml",
        ),
        Hostile("pdf_as_png", b"%PDF-1.7\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n", NOT_AN_IMAGE, "x.png", "image/png"),
        Hostile("zip_as_jpeg", _zip_file(), NOT_AN_IMAGE),
        Hostile("elf_as_jpeg", b"\x7fELF\x02\x01\x01" + b"\x00" * 57, NOT_AN_IMAGE),
        Hostile("jpeg_magic_only", b"\xff\xd8\xff", CORRUPT),
        Hostile("png_magic_only", PNG_MAGIC, CORRUPT, "x.png", "image/png"),
    ]

    sources = {
        "jpeg": (_save(_noise(1), "JPEG", quality=90), "x.jpg", "image/jpeg"),
        "png": (_save(_noise(2), "PNG"), "x.png", "image/png"),
        "gif": (_save(_noise(3).convert("P"), "GIF"), "x.gif", "image/gif"),
        "webp": (_save(_noise(4), "WEBP", quality=90), "x.webp", "image/webp"),
    }
    for name, (data, filename, content_type) in sources.items():
        cases += _truncations(name, data, filename, content_type)

    bad_crc = bytearray(sources["png"][0])
    bad_crc[29] ^= 0xFF  # last byte of the IHDR CRC
    cases.append(Hostile("png_bad_ihdr_crc", bytes(bad_crc), CORRUPT, "x.png", "image/png"))

    cases += [
        Hostile(
            "png_1bit_10k",
            png_bomb_complete(10_000, 10_000),
            EITHER,
            "x.png",
            "image/png",
            "100 Mpx, valid: within the 200 Mpx limit, decoded and reduced (one such decode at a time)",
        ),
        Hostile("png_bomb_1bit_15k", png_bomb_complete(15_000, 15_000), BOMB, "x.png", "image/png", "225 Mpx, valid"),
        Hostile("png_bomb_1bit_30k", png_bomb_complete(30_000, 30_000), BOMB, "x.png", "image/png", "900 Mpx, valid"),
        Hostile("png_bomb_header_65535", png_bomb_header(), BOMB, "x.png", "image/png", "4.3 Gpx RGBA declared"),
        Hostile("png_bomb_wide", png_bomb_header(2**31 - 1, 1), BOMB, "x.png", "image/png", "2^31-1 × 1 declared"),
        Hostile("gif_bomb_65535", gif_bomb(), BOMB, "x.gif", "image/gif", "4.3 Gpx declared"),
        Hostile("webp_bomb_16383", webp_bomb(), BOMB, "x.webp", "image/webp", "268 Mpx declared (format max)"),
        Hostile("tiff_bomb_100k", tiff_bomb(), BOMB, "x.tiff", "image/tiff", "10 Gpx declared"),
        Hostile("jpeg_bomb_65500", jpeg_bomb(), BOMB, "x.jpg", "image/jpeg", "4.3 Gpx declared in SOF0"),
        Hostile("png_ztxt_bomb", png_ztxt_bomb(), EITHER, "x.png", "image/png", "text chunk inflating to 64 MiB"),
    ]

    cmyk = _save(_noise(30, mode="CMYK"), "JPEG", quality=90)
    palette = _noise(31).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    cases += [
        Hostile("jpeg_huge_exif", _huge_exif_jpeg(32), VALID, note="60 KB ImageDescription + orientation 6"),
        Hostile("jpeg_corrupt_exif", _corrupt_exif_jpeg(33), EITHER, note="IFD offset outside the segment"),
        Hostile("jpeg_exif_orientation_8", _exif_orientation_jpeg(34, 8), VALID),
        Hostile("jpeg_exif_orientation_bogus", _exif_orientation_jpeg(35, 99), EITHER),
        Hostile("jpeg_cmyk", cmyk, VALID),
        Hostile("png_16bit_gray", _save(_noise16_gray(36), "PNG"), VALID, "x.png", "image/png"),
        Hostile("png_16bit_rgb", png_16bit_rgb(37), VALID, "x.png", "image/png"),
        Hostile("png_palette_trns", _save(palette, "PNG", transparency=0), VALID, "x.png", "image/png"),
        Hostile("png_la", _save(_noise(38, mode="LA"), "PNG"), VALID, "x.png", "image/png"),
        Hostile("png_rgba", _save(_noise(39, mode="RGBA"), "PNG"), VALID, "x.png", "image/png"),
        Hostile("png_grey", _save(_noise(40, mode="L"), "PNG"), VALID, "x.png", "image/png"),
        Hostile("webp_rgba", _save(_noise(41, mode="RGBA"), "WEBP", lossless=True), VALID, "x.webp", "image/webp"),
        Hostile("png_1x1", _save(_noise(42, (1, 1)), "PNG"), EITHER, "x.png", "image/png"),
        Hostile("png_1x4000", _save(_noise(43, (1, 4000)), "PNG"), EITHER, "x.png", "image/png"),
        Hostile("png_4000x1", _save(_noise(44, (4000, 1)), "PNG"), EITHER, "x.png", "image/png"),
        Hostile("gif_animated", _animated_gif(45), frozenset({400, 415, 422}), "x.gif", "image/gif"),
        Hostile("tiff_multiframe", _multiframe_tiff(48), EITHER, "x.tiff", "image/tiff"),
        Hostile("gif_js_polyglot", _gif_js_polyglot(51), EITHER, "x.gif", "image/gif"),
        Hostile("png_trailing_zip", _png_with_zip(52), EITHER, "x.png", "image/png"),
        Hostile("jpeg_html_comment", _jpeg_with_html_comment(53), EITHER),
        Hostile("png_lying_content_type", _save(_noise(54), "PNG"), EITHER, "x.jpg", "image/jpeg"),
    ]
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "case names must be unique"
    return tuple(cases)


def _noise16_gray(seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 65536, size=(30, 40), dtype=np.uint16))


def by_name(name: str) -> Hostile:
    for case in corpus():
        if case.name == name:
            return case
    raise KeyError(name)
