"""Reading SIPaKMeD files: images (PIL, always RGB), ``.dat`` cell boundaries and the
mask files of a class-per-folder set.

SIPaKMeD (Plissiti et al., ICIP 2018), used by Wang et al. (2021), "Towards
Interpretable Attention Networks for Cervical Cancer Analysis", stores BMP images and,
per annotated cell, ``.dat`` text files with one boundary point ``x,y`` a line. Every
failure here becomes a :class:`~cervixlib.data.errors.DataError` naming the file.

Where problems are found:

* :func:`probe_image` (used when indexing, reads the header and at most the last
  bytes of the file, no pixel decoding): unknown or corrupt format, content that does
  not match the extension, an unsupported pixel mode, and truncation wherever the
  header allows it to be seen cheaply (a BMP shorter than its header's pixel array, a
  PNG without its ``IEND`` chunk, a JPEG without its end marker; for the last two a
  full decode then decides, so valid files with trailing bytes still pass).
* :func:`read_image` (used by the datasets): everything above, plus damage that only a
  full decode can show (a truncated TIFF, a PNG with a bad checksum).
"""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from cervixlib.data.errors import DataError

__all__ = ["IMAGE_EXTENSIONS", "ImageInfo", "os_problem", "probe_image", "read_image", "read_mask", "read_dat"]

#: Image file extensions the loaders look at (lower case), with the formats PIL may
#: report for content that honestly matches each.
_FORMATS_BY_EXTENSION: dict[str, frozenset[str]] = {
    ".bmp": frozenset({"BMP", "DIB"}),
    ".png": frozenset({"PNG"}),
    ".jpg": frozenset({"JPEG", "MPO"}),
    ".jpeg": frozenset({"JPEG", "MPO"}),
    ".tif": frozenset({"TIFF"}),
    ".tiff": frozenset({"TIFF"}),
}
IMAGE_EXTENSIONS: frozenset[str] = frozenset(_FORMATS_BY_EXTENSION)

# Pixel modes that read_image turns into 8-bit RGB. 16-bit grey ('I;16*', and 'I' with
# values in 0..65535) is scaled to 8 bits; alpha is composited over white.
_SUPPORTED_MODES = frozenset({
    "1", "L", "P", "RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LA", "La", "PA",
    "I", "I;16", "I;16L", "I;16B", "I;16N",
})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_JPEG_END = b"\xff\xd9"


@dataclass(frozen=True)
class ImageInfo:
    """What the header of an image file says: PIL format, pixel mode, (width, height)."""

    format: str
    mode: str
    size: tuple[int, int]


def _expected_formats(path: Path) -> frozenset[str]:
    try:
        return _FORMATS_BY_EXTENSION[path.suffix.lower()]
    except KeyError:
        raise DataError(path, f"unsupported image extension {path.suffix!r}; "
                              f"expected one of {', '.join(sorted(IMAGE_EXTENSIONS))}") from None


def os_problem(path: Path, exc: OSError) -> DataError:
    """A DataError for a file the operating system would not open or read.

    Says which of the usual causes it is (permission, a broken or looping symbolic
    link, a folder where a file belongs) in words, and the system's text otherwise.
    """
    if exc.errno == errno.ENOENT and os.path.islink(path):
        return DataError(path, f"broken symbolic link (to {os.readlink(path)!r}, which does not exist)")
    if exc.errno == errno.ENOENT:
        return DataError(path, "no such file")
    if exc.errno == errno.ELOOP:
        return DataError(path, "symbolic link loop: the link leads back to itself")
    if exc.errno in (errno.EACCES, errno.EPERM):
        return DataError(path, "permission denied: the file cannot be read by this user")
    if exc.errno == errno.EISDIR:
        return DataError(path, "is a folder, expected a file")
    return DataError(path, f"cannot read ({exc.strerror or exc})")


def _open(path: Path) -> Image.Image:
    """``Image.open`` with every failure turned into a one-line DataError."""
    try:
        return Image.open(path)
    except UnidentifiedImageError:
        size = _file_size(path)
        what = "empty file (0 bytes)" if size == 0 else "corrupt image: not a format PIL can read"
        raise DataError(path, what) from None
    except Image.DecompressionBombError as exc:
        raise DataError(path, f"image too large to open safely ({exc})") from None
    except OSError as exc:
        if exc.errno is not None:  # the system refused the file (permission, link, ...)
            raise os_problem(path, exc) from None
        raise DataError(path, f"corrupt image header (OSError: {exc})") from None
    except Exception as exc:  # PIL plugins raise many types (OSError, SyntaxError, struct.error)
        raise DataError(path, f"corrupt image header ({type(exc).__name__}: {exc})") from None


def _file_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _check_format(path: Path, img: Image.Image) -> None:
    expected = _expected_formats(path)
    if img.format not in expected:
        raise DataError(path, f"content is {img.format}, not {sorted(expected)[0]} as the extension "
                              f"{path.suffix!r} says; rename the file or convert it")


def _check_mode(path: Path, img: Image.Image) -> None:
    if img.mode not in _SUPPORTED_MODES:
        raise DataError(path, f"unsupported pixel mode {img.mode!r}: cannot be converted to 8-bit RGB "
                              "without knowing its intensity range; save it as 8-bit RGB or grey")


def _truncated(path: Path, why: str) -> DataError:
    why = why.replace("image file is truncated", "").strip(" ()") or "the decoder ran out of data"
    return DataError(path, f"truncated image ({why}); the file is damaged or was not fully copied")


def _decode(path: Path, img: Image.Image) -> None:
    """Decode all pixels, turning decoder failures into DataError."""
    try:
        img.load()
    except Exception as exc:  # decoders raise OSError, SyntaxError, EOFError, struct.error, ...
        message = str(exc)
        if "truncated" in message or isinstance(exc, EOFError):
            raise _truncated(path, message) from None
        raise DataError(path, f"corrupt image data ({type(exc).__name__}: {message})") from None


def _check_truncation_cheaply(path: Path, img: Image.Image) -> None:
    """Detect truncation from the header and the file's last bytes, without decoding."""
    size = _file_size(path)
    if img.format in ("BMP", "DIB"):
        for tile in img.tile:
            if tile[0] != "raw" or len(tile[3]) < 2 or not tile[3][1]:
                continue  # compressed (RLE) BMP: only a decode can tell
            x0, y0, x1, y1 = tile[1]
            need = tile[2] + abs(int(tile[3][1])) * (y1 - y0)
            if size < need:
                raise _truncated(path, f"{size} bytes, the BMP header needs {need}")
        return
    tail_ok = True
    if img.format in ("PNG", "JPEG", "MPO"):
        end = _PNG_END if img.format == "PNG" else _JPEG_END
        with open(path, "rb") as fh:
            fh.seek(max(0, size - len(end)))
            tail_ok = fh.read() == end
    if not tail_ok:  # no end marker: decode fully to decide (valid files may carry trailing bytes)
        _decode(path, img)


@contextmanager
def _checked(path: Path) -> Iterator[Image.Image]:
    """The file opened as an image, its extension, format and pixel mode checked (DataError
    naming the file otherwise), and closed when the block ends: the start of every read."""
    _expected_formats(path)
    img = _open(path)
    with img:
        _check_format(path, img)
        _check_mode(path, img)
        yield img


def probe_image(path: str | os.PathLike[str]) -> ImageInfo:
    """Check an image file from its header and return its format, mode and size.

    Cheap (no pixel decoding for intact files), so that indexing thousands of images
    takes seconds. Raises DataError for a corrupt or truncated file (where visible
    without decoding, see the module docstring), content that does not match the
    extension, or a pixel mode that cannot become RGB.
    """
    path = Path(path)
    with _checked(path) as img:
        _check_truncation_cheaply(path, img)
        return ImageInfo(format=str(img.format), mode=img.mode, size=(int(img.width), int(img.height)))


def _sixteen_to_eight(path: Path, img: Image.Image) -> Image.Image:
    """Scale 16-bit grey (0..65535) linearly to 8 bits (0..255), rounding."""
    arr = np.asarray(img)
    if arr.dtype.kind == "f":  # pragma: no cover - mode 'F' is rejected earlier
        raise DataError(path, "floating-point pixels cannot be converted to 8-bit RGB")
    arr = arr.astype(np.int64)
    lo, hi = int(arr.min()), int(arr.max())
    if lo < 0 or hi > 65535:
        raise DataError(path, f"pixel mode {img.mode!r} with values {lo}..{hi} outside 0..65535: "
                              "cannot be converted to 8-bit RGB")
    grey = ((arr * 255 + 32767) // 65535).astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


def _to_rgb(path: Path, img: Image.Image) -> Image.Image:
    mode = img.mode
    if mode == "RGB":
        return img
    if mode == "I" or mode.startswith("I;16"):
        return _sixteen_to_eight(path, img)
    try:
        if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return img.convert("RGB")
    except (ValueError, OSError) as exc:
        raise DataError(path, f"pixel mode {mode!r} cannot be converted to RGB ({exc})") from None


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """Read an image file fully and return it as an 8-bit RGB PIL image.

    Grey, palette, CMYK and alpha images are converted (alpha over white); 16-bit grey
    is scaled linearly from 0..65535 to 0..255. Anything else, and any corrupt,
    truncated or mislabelled file, raises a one-line DataError naming the file.
    """
    path = Path(path)
    with _checked(path) as img:
        _decode(path, img)
        rgb = _to_rgb(path, img)
        if rgb is img:
            rgb = img.copy()  # detach from the file handle closed by ``with``
    return rgb


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask file (a class-per-folder set's ``masks/<stem>.png``) as a bool array
    (height, width) at the file's own size: True where any colour channel is non-zero
    (alpha is not looked at). Bad files raise a one-line DataError naming the file, as
    :func:`read_image` does."""
    path = Path(path)
    with _checked(path) as img:
        _decode(path, img)
        mode = img.mode
        if mode in ("1", "L") or mode.startswith("I"):
            return np.asarray(img) != 0
        if mode in ("LA", "La"):
            return np.asarray(img)[..., 0] != 0
        return np.asarray(img.convert("RGB")).any(axis=-1)


# A point is two numbers separated by a comma, semicolon, spaces or tabs (tools differ;
# DATA.md). A decimal comma ("1,5;2,5") then gives four fields and is rejected, never misread.
_SEPARATORS = re.compile(r"[,;\s]+")
_NON_EMPTY_LINE = re.compile(r"[^\s,;][^\n]*")


def _dat_problem_line(path: Path, text: str) -> DataError:
    """Find the first malformed line, for a precise message (slow path, errors only)."""
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = [f for f in _SEPARATORS.split(line.strip()) if f]
        if len(fields) != 2:
            hint = ("; decimal commas are not supported, write 1.5,2.5" if ";" in line and "," in line
                    else "")
            return DataError(path, f"line {number}: expected two numbers 'x,y', got {line.strip()[:40]!r}{hint}")
        try:
            x, y = float(fields[0]), float(fields[1])
        except ValueError:
            return DataError(path, f"line {number}: not a number in {line.strip()[:40]!r}")
        if not (np.isfinite(x) and np.isfinite(y)):
            return DataError(path, f"line {number}: non-finite coordinate in {line.strip()[:40]!r}")
    return DataError(path, "malformed boundary file")  # pragma: no cover - callers found a problem


def read_dat(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a SIPaKMeD boundary file: one point a line, ``x,y`` in pixels.

    The two numbers may also be separated by a semicolon, spaces or a tab, as some
    tools write them; a number with a decimal comma is rejected, not guessed at.

    Returns:
        float32 array (N, 2) of x, y coordinates, N >= 3.

    Raises:
        DataError: missing or binary file, a line that is not two numbers, NaN or
            infinite coordinates, fewer than 3 points.
    """
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(path, "not a text file; expected one 'x,y' point a line") from None
    except OSError as exc:
        raise os_problem(path, exc) from None
    n_lines = len(_NON_EMPTY_LINE.findall(text))
    tokens = text.replace(",", " ").replace(";", " ").split()
    if n_lines == 0:
        raise DataError(path, "empty boundary file; expected one 'x,y' point a line")
    if len(tokens) != 2 * n_lines:
        raise _dat_problem_line(path, text)
    try:
        points = np.array(tokens, dtype=np.float64).reshape(-1, 2)
    except ValueError:
        raise _dat_problem_line(path, text) from None
    if not np.isfinite(points).all():
        raise _dat_problem_line(path, text)
    if len(points) < 3:
        raise DataError(path, f"only {len(points)} point(s); a cell boundary needs at least 3")
    return points.astype(np.float32)
