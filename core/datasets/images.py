"""Validation and preparation of uploaded dataset images, and the zips they arrive in.

Everything here treats its input as hostile: a file may be a renamed text file, a truncated download,
a decompression bomb, an animation, or a zip with ``../`` paths, symlinks or lying size headers.
Problems become :class:`ImageRejected` (whole file) or :class:`ArchiveError` (one zip entry) with a
sentence a user can act on; nothing here lets a bad file crash a batch import.

Accepted images are re-encoded in their own format with the EXIF orientation applied and every piece of
metadata (EXIF incl. GPS, XMP, ICC, comments) removed; an embedded colour profile is converted to sRGB
first, so a Display-P3 phone photo keeps its colours once the profile is gone. Alongside come what a
dataset check needs without reopening the file: a thumbnail, a perceptual hash and a sharpness score.

No torch and no streamlit here: the UI process imports this module.
"""

from __future__ import annotations

import hashlib
import io
import re
import stat
import struct
import unicodedata
import warnings
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import IO

import numpy as np
from PIL import Image, ImageCms

from core.errors import InvalidInput

_MB = 1024 * 1024

# What Pillow's plugins raise on malformed input (its decoders are not consistent about it).
_DECODE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,  # includes UnidentifiedImageError, "image file is truncated", "broken data stream"
    SyntaxError,  # e.g. "broken PNG file"
    ValueError,  # e.g. "Decompressed data too large" for huge PNG text chunks
    EOFError,
    TypeError,
    IndexError,
    KeyError,
    struct.error,
    zlib.error,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,  # only ever raised where it is escalated to an error
)

_FORMATS = {  # Pillow format -> (content type, extension)
    "JPEG": ("image/jpeg", ".jpg"),
    "PNG": ("image/png", ".png"),
    "WEBP": ("image/webp", ".webp"),
}
_ACCEPTED_TEXT = "JPEG, PNG, WebP"

# Formats users commonly try, recognised by their first bytes, so the message can name them.
_KNOWN_SIGNATURES: tuple[tuple[int, bytes, str], ...] = (
    (0, b"GIF87a", "GIF"),
    (0, b"GIF89a", "GIF"),
    (0, b"BM", "BMP"),
    (0, b"II*\x00", "TIFF"),
    (0, b"MM\x00*", "TIFF"),
    (0, b"%PDF", "PDF"),
    (0, b"8BPS", "Photoshop (PSD)"),
    (0, b"\x00\x00\x01\x00", "ICO"),
    (4, b"ftypheic", "HEIC"),
    (4, b"ftypheix", "HEIC"),
    (4, b"ftypmif1", "HEIF"),
    (4, b"ftypavif", "AVIF"),
)

# EXIF orientation -> the transpose that makes the pixels upright (same table as ImageOps.exif_transpose).
_ORIENTATION_FIX = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
_EXIF_ORIENTATION = 0x0112

_BLUR_MAX_SIDE = 512
_PHASH_SIZE = 32  # the image is reduced to 32x32 before the DCT ...
_PHASH_LOW = 8  # ... and the top-left 8x8 low frequencies give the 64 bits


class ImageRejected(InvalidInput):
    """An uploaded image or archive was refused; the message starts with the file name."""


@dataclass(frozen=True)
class ImportLimits:
    max_file_bytes: int = 25 * _MB
    # Far below Pillow's own ~89 M pixel warning: a 36 MP RGBA image is already ~140 MB decoded.
    max_pixels: int = 36_000_000
    max_zip_bytes: int = 200 * _MB
    max_zip_uncompressed_bytes: int = 1024 * _MB
    max_zip_entries: int = 2000
    thumbnail_px: int = 256


DEFAULT_LIMITS = ImportLimits()


@dataclass(frozen=True)
class PreparedImage:
    data: bytes  # re-encoded, upright, no metadata
    format: str  # 'JPEG' | 'PNG' | 'WEBP'
    content_type: str
    extension: str  # '.jpg' | '.png' | '.webp'
    width: int  # after orientation
    height: int
    sha256: str  # of the ORIGINAL upload, so re-uploading the same file is recognised
    thumbnail: bytes  # RGB JPEG, longest side min(thumbnail_px, image side)
    phash: str  # 64-bit DCT perceptual hash, 16 hex chars (see perceptual_hash)
    blur: float  # variance of the Laplacian at <= 512 px; higher = sharper


@dataclass(frozen=True)
class ArchiveEntry:
    name: str  # POSIX relative path inside the archive
    data: bytes


@dataclass(frozen=True)
class ArchiveError:
    name: str  # the entry name as stored in the archive (made printable)
    message: str  # the reason only; callers prefix the archive and entry names


# --- helpers ----------------------------------------------------------------------------------------


# Characters that are invisible or change how the text around them is shown: controls (Cc), format
# characters (Cf: bidi embeddings, overrides and isolates, zero-width spaces), lone surrogates, private
# use, unassigned code points, and line/paragraph separators.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_EMOJI_JOINER = "\u200d"  # builds emoji sequences (a runner + ZWJ + a female sign); moves no text


def printable(text: str, *, multiline: bool = False) -> str:
    """Text made safe to store and show, the one policy for every user-supplied string: invisible and
    reordering characters become '?' (a NUL breaks PostgreSQL; U+202E before 'gnp.exe' displays it as
    'exe.png'). ``multiline`` keeps line breaks and tabs (captions, prompts, errors)."""
    kept = "\n\t" if multiline else ""
    return "".join(
        c if c in kept or c == _EMOJI_JOINER or unicodedata.category(c) not in _HIDDEN_CATEGORIES else "?"
        for c in text
    )


def display_name(name: str, max_length: int = 200) -> str:
    """A file name made safe to store and show (see :func:`printable`); never empty, length capped."""
    cleaned = printable(name) or "(unnamed)"
    return cleaned if len(cleaned) <= max_length else cleaned[: max_length - 3] + "..."


def format_size(size: int) -> str:
    if size >= _MB:
        return f"{size / _MB:.1f} MB"
    if size >= 1024:
        return f"{size / 1024:.1f} KB"
    return f"{size} bytes"


def _reject(filename: str, reason: str) -> ImageRejected:
    return ImageRejected(f"{display_name(filename)}: {reason}")


def _sniff_unsupported(data: bytes) -> str | None:
    for offset, signature, label in _KNOWN_SIGNATURES:
        if data[offset : offset + len(signature)] == signature:
            return label
    return None


# --- single images ----------------------------------------------------------------------------------


def prepare_image(data: bytes, *, filename: str, limits: ImportLimits = DEFAULT_LIMITS) -> PreparedImage:
    """Validates one uploaded image and returns it re-encoded, upright and without metadata.

    Raises :class:`ImageRejected` with a message naming ``filename`` for anything unusable.
    """
    if not data:
        raise _reject(filename, "the file is empty")
    if len(data) > limits.max_file_bytes:
        raise _reject(
            filename, f"the file is {format_size(len(data))}, over the limit of {format_size(limits.max_file_bytes)}"
        )
    image = _open_checked(data, filename, limits)
    source_format = "JPEG" if image.format == "MPO" else str(image.format)
    image = _decode(image, filename)
    try:
        image = _normalise_mode(_to_srgb(_upright(image)), source_format)
        # Only pixels go out: transposes and conversions copy .info (exif, icc_profile, xmp...) along.
        image.info = {}
        encoded = _encode(image, source_format)
    except _DECODE_ERRORS:
        raise _reject(filename, "the image uses a colour format that cannot be converted") from None
    flat = _flatten(image)
    content_type, extension = _FORMATS[source_format]
    return PreparedImage(
        data=encoded,
        format=source_format,
        content_type=content_type,
        extension=extension,
        width=image.width,
        height=image.height,
        sha256=hashlib.sha256(data).hexdigest(),
        thumbnail=_thumbnail(flat, limits.thumbnail_px),
        phash=perceptual_hash(flat),
        blur=blur_score(flat),
    )


def _open_checked(data: bytes, filename: str, limits: ImportLimits) -> Image.Image:
    """Opens the header only and enforces format, pixel count and frame count before any pixel decode."""
    try:
        # Pillow warns past ~89 M pixels and raises past twice that; the warning becomes an error here so a
        # bomb never gets as far as a decode. (Our own, lower max_pixels check below does the real work.)
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            # Only the three accepted parsers ever see the bytes; a smaller attack surface than all of Pillow.
            image = Image.open(io.BytesIO(data), formats=list(_FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        limit = limits.max_pixels / 1e6
        raise _reject(
            filename, f"the image is too large to process safely (far over the limit of {limit:.1f} megapixels)"
        ) from None
    except _DECODE_ERRORS:
        label = _sniff_unsupported(data)
        if label:
            raise _reject(filename, f"{label} images are not supported (use {_ACCEPTED_TEXT})") from None
        raise _reject(filename, f"not an image (or a format other than {_ACCEPTED_TEXT})") from None

    width, height = image.size
    if width <= 0 or height <= 0:
        raise _reject(filename, f"the image claims an impossible size of {width}x{height} pixels")
    if width * height > limits.max_pixels:
        raise _reject(
            filename,
            f"the image is {width}x{height} pixels ({width * height / 1e6:.1f} megapixels), "
            f"over the limit of {limits.max_pixels / 1e6:.1f} megapixels",
        )
    # MPO is a JPEG with extra pictures (depth map, preview) from some cameras: its first frame is the photo.
    frames = getattr(image, "n_frames", 1)
    if image.format != "MPO" and frames > 1:
        raise _reject(filename, f"animated images are not supported (it has {frames} frames); upload a still image")
    return image


def _decode(image: Image.Image, filename: str) -> Image.Image:
    """Forces a full decode so truncated or corrupt pixel data is found now, not when training."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image.load()
    except _DECODE_ERRORS as error:
        reason = "truncated" if "truncated" in str(error) else "damaged"
        raise _reject(filename, f"the image data is {reason} and cannot be read completely") from None
    return image


def _orientation(image: Image.Image) -> int:
    try:
        value = image.getexif().get(_EXIF_ORIENTATION, 1)
    except _DECODE_ERRORS:
        return 1  # unreadable EXIF: keep the pixels as stored rather than reject a viewable photo
    return value if isinstance(value, int) else 1


def _upright(image: Image.Image) -> Image.Image:
    fix = _ORIENTATION_FIX.get(_orientation(image))
    return image.transpose(fix) if fix is not None else image


def _to_srgb(image: Image.Image) -> Image.Image:
    """Applies an embedded colour profile, since stripping it would otherwise shift the colours."""
    icc = image.info.get("icc_profile")
    if not icc or image.mode not in ("RGB", "RGBA", "CMYK"):
        return image
    try:
        source = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        target = ImageCms.createProfile("sRGB")
        output_mode = "RGBA" if image.mode == "RGBA" else "RGB"
        converted = ImageCms.profileToProfile(image, source, target, outputMode=output_mode)
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        return image  # a broken profile: the pixels as they are beat a rejected photo
    return converted if converted is not None else image


def _has_alpha(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )


def _normalise_mode(image: Image.Image, source_format: str) -> Image.Image:
    """RGB, or RGBA for PNG/WebP with transparency; JPEG has no alpha."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # Only 16-bit greyscale PNGs get here; Pillow's direct conversion clips at 255 (all white).
        array = np.asarray(image, dtype=np.float64) / 257.0
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), "L")
    keep_alpha = source_format != "JPEG" and _has_alpha(image)
    target = "RGBA" if keep_alpha else "RGB"
    if image.mode == target:
        return image
    if not keep_alpha and _has_alpha(image):
        return _flatten(image.convert("RGBA"))
    return image.convert(target)


def _flatten(image: Image.Image) -> Image.Image:
    """RGB over white: what a viewer shows, used for the thumbnail and the measurements."""
    if image.mode == "RGB":
        return image
    if image.mode != "RGBA":
        image = image.convert("RGBA")
    background = Image.new("RGB", image.size, (255, 255, 255))
    background.paste(image, mask=image.getchannel("A"))
    return background


def _encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    if image_format == "JPEG":
        image.save(buffer, "JPEG", quality=95, subsampling=0, exif=b"")
    elif image_format == "PNG":
        image.save(buffer, "PNG", exif=b"")
    else:
        image.save(buffer, "WEBP", quality=95, exif=b"")
    return buffer.getvalue()


def _fit(image: Image.Image, max_side: int, resample: Image.Resampling) -> Image.Image:
    """Downscales so the longest side is at most max_side; never upscales."""
    longest = max(image.size)
    if longest <= max_side:
        return image
    scale = max_side / longest
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, resample, reducing_gap=3.0)


def _thumbnail(flat: Image.Image, max_side: int) -> bytes:
    buffer = io.BytesIO()
    _fit(flat, max_side, Image.Resampling.LANCZOS).save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


def make_thumbnail(data: bytes, max_side: int = 384) -> tuple[bytes, tuple[int, int]]:
    """A JPEG thumbnail of an image the studio itself made (trusted bytes: no import checks),
    and the image's (width, height)."""
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return _thumbnail(_flatten(image), max_side), image.size


def _dct_matrix(n: int) -> np.ndarray:
    """Unnormalised DCT-II as a matrix: D @ x == scipy.fftpack.dct(x, type=2) along the first axis."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    return 2.0 * np.cos(np.pi * k * (2 * i + 1) / (2 * n))


_DCT = _dct_matrix(_PHASH_SIZE)


def perceptual_hash(image: Image.Image) -> str:
    """The classic DCT pHash (the algorithm of ``imagehash.phash``), as 16 hex characters.

    Greyscale, reduce to 32x32, 2-D DCT-II, keep the 8x8 lowest frequencies, and set each bit where the
    coefficient is above their median; bits are row-major, the first bit most significant. Re-encoding,
    resizing and mild colour changes leave the hash (nearly) unchanged; compare with hamming_distance.
    """
    # Downscaling by area first makes the final 32x32 reduction of a 36 MP photo cheap and stable.
    grey = _fit(image.convert("L"), _BLUR_MAX_SIDE, Image.Resampling.BOX)
    small = grey.resize((_PHASH_SIZE, _PHASH_SIZE), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T)[:_PHASH_LOW, :_PHASH_LOW]
    bits = (low > np.median(low)).flatten()
    return f"{int(''.join('1' if bit else '0' for bit in bits), 2):016x}"


def hamming_distance(a: str, b: str) -> int:
    """Number of differing bits between two perceptual hashes (0 = same picture, <= 4 near-duplicate)."""
    if len(a) != len(b):
        raise ValueError(f"perceptual hashes of different lengths: {a!r} and {b!r}")
    return (int(a, 16) ^ int(b, 16)).bit_count()


def blur_score(image: Image.Image) -> float:
    """Variance of the 4-neighbour Laplacian of the greyscale image at <= 512 px (higher = sharper).

    The image is first reduced by area averaging so scores of a phone photo and a web image compare;
    the Laplacian is taken over the interior only (no border padding), like cv2.Laplacian(...).var().
    """
    grey = _fit(image.convert("L"), _BLUR_MAX_SIDE, Image.Resampling.BOX)
    pixels = np.asarray(grey, dtype=np.float64)
    if pixels.shape[0] < 3 or pixels.shape[1] < 3:
        return 0.0
    laplacian = (
        pixels[:-2, 1:-1] + pixels[2:, 1:-1] + pixels[1:-1, :-2] + pixels[1:-1, 2:] - 4.0 * pixels[1:-1, 1:-1]
    )
    return float(laplacian.var())


# --- zip archives -----------------------------------------------------------------------------------

_IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".webp"})
_TEXT_EXTENSIONS = frozenset({".txt"})
_ARCHIVE_EXTENSIONS = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst"})
_ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"PK\x07\x08", b"7z\xbc\xaf\x27\x1c", b"Rar!\x1a\x07", b"\x1f\x8b")
_JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini"})
_READ_CHUNK = 1024 * 1024
_ZIP_FLAG_ENCRYPTED = 0x1
_EOCD = struct.Struct("<4s4H2LH")  # end of central directory record
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")
# Rough upper bound of one central-directory record (46 fixed bytes + name + extras); used to refuse a
# table of contents too big to be the declared number of entries before zipfile parses it into memory.
_MAX_CD_BYTES_PER_ENTRY = 4096
# Directories and macOS "._" shadow files can outnumber the real files; the raw count is only a
# memory guard, so it allows a few times the file limit.
_RAW_ENTRY_FACTOR = 4


class _ArchiveTooLarge(Exception):
    """The real decompressed bytes passed the archive-wide limit (headers lied)."""


def read_archive(
    data: bytes, *, filename: str, limits: ImportLimits = DEFAULT_LIMITS
) -> tuple[list[ArchiveEntry], list[ArchiveError]]:
    """Reads the images and ``.txt`` captions of an uploaded zip.

    Whole-archive problems raise :class:`ImageRejected`; a bad entry becomes an :class:`ArchiveError`
    and the others still come back. Directories and OS junk (``__MACOSX/``, ``.DS_Store``, ``._*``) are
    skipped silently. An archive with only bad entries returns ``([], errors)`` so every reason reaches
    the user; one with nothing usable and nothing wrong is rejected as empty.
    """
    if not data:
        raise _reject(filename, "the zip file is empty")
    if len(data) > limits.max_zip_bytes:
        raise _reject(
            filename, f"the zip is {format_size(len(data))}, over the limit of {format_size(limits.max_zip_bytes)}"
        )
    _check_declared_entry_count(data, filename, limits)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError, struct.error,
            NotImplementedError):  # e.g. "zip file version 63.0" from exotic or damaged headers
        raise _reject(filename, _not_a_zip_reason(data)) from None
    with archive:
        return _read_entries(archive, filename, limits)


def _not_a_zip_reason(data: bytes) -> str:
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return "the zip archive is damaged and cannot be read"
    return "not a zip archive"


def _check_declared_entry_count(data: bytes, filename: str, limits: ImportLimits) -> None:
    """Refuses absurd entry counts from the end record before zipfile builds one object per entry."""
    position = data.rfind(b"PK\x05\x06", max(0, len(data) - _EOCD.size - 0xFFFF))
    if position < 0 or position + _EOCD.size > len(data):
        return  # zipfile will report it as not a zip
    _, _, _, _, entries, cd_size, _, _ = _EOCD.unpack_from(data, position)
    if (entries == 0xFFFF or cd_size == 0xFFFFFFFF) and position >= _EOCD64_LOCATOR.size + _EOCD64.size:
        locator = _EOCD64_LOCATOR.unpack_from(data, position - _EOCD64_LOCATOR.size)
        record = _EOCD64.unpack_from(data, position - _EOCD64_LOCATOR.size - _EOCD64.size)
        if locator[0] == b"PK\x06\x07" and record[0] == b"PK\x06\x06":
            entries, cd_size = record[7], record[8]
    raw_limit = limits.max_zip_entries * _RAW_ENTRY_FACTOR
    if entries > raw_limit or cd_size > raw_limit * _MAX_CD_BYTES_PER_ENTRY:
        raise _reject(filename, f"the zip has {entries} entries, more than the limit of {limits.max_zip_entries} files")


def _read_entries(
    archive: zipfile.ZipFile, filename: str, limits: ImportLimits
) -> tuple[list[ArchiveEntry], list[ArchiveError]]:
    errors: list[ArchiveError] = []
    wanted: list[tuple[zipfile.ZipInfo, str]] = []
    seen: set[str] = set()
    for info in archive.infolist():
        if _is_skipped(info):
            continue
        name, reason = _check_entry(info)
        if reason is None and info.file_size > limits.max_file_bytes:
            size, limit = format_size(info.file_size), format_size(limits.max_file_bytes)
            reason = f"the file is {size}, over the limit of {limit}"
        if reason is None and name.casefold() in seen:
            reason = "another entry in the archive has the same name"
        if reason is not None:
            errors.append(ArchiveError(display_name(info.filename), reason))
            continue
        seen.add(name.casefold())
        wanted.append((info, name))

    if len(wanted) + len(errors) > limits.max_zip_entries:
        raise _reject(
            filename, f"the zip has {len(wanted) + len(errors)} files, more than the limit of {limits.max_zip_entries}"
        )
    declared = sum(info.file_size for info, _ in wanted)
    if declared > limits.max_zip_uncompressed_bytes:
        raise _reject(
            filename,
            f"the zip expands to {format_size(declared)}, "
            f"over the limit of {format_size(limits.max_zip_uncompressed_bytes)}",
        )

    entries: list[ArchiveEntry] = []
    budget = limits.max_zip_uncompressed_bytes
    for info, name in wanted:
        try:
            content, error = _read_entry(archive, info, limits, budget)
        except _ArchiveTooLarge:
            raise _reject(
                filename,
                f"the zip expands to more than {format_size(limits.max_zip_uncompressed_bytes)} "
                "(its size headers are wrong)",
            ) from None
        budget -= len(content)
        if error is not None:
            errors.append(ArchiveError(display_name(info.filename), error))
        else:
            entries.append(ArchiveEntry(name, content))

    if not entries and not errors:
        raise _reject(filename, f"the zip is empty (no {_ACCEPTED_TEXT} images in it)")
    if entries and not errors and all(PurePosixPath(e.name).suffix.lower() in _TEXT_EXTENSIONS for e in entries):
        raise _reject(filename, f"the zip has only text files, no {_ACCEPTED_TEXT} images")
    return entries, errors


def _is_skipped(info: zipfile.ZipInfo) -> bool:
    """Directories and files the OS drops into archives, which nobody meant to upload."""
    if info.is_dir() or info.filename.endswith(("/", "\\")):
        return True
    parts = [p for p in re.split(r"[\\/]", info.filename) if p]
    if not parts:
        return True
    base = parts[-1]
    return "__MACOSX" in parts or base.casefold() in _JUNK_NAMES or base.startswith("._")


def _check_entry(info: zipfile.ZipInfo) -> tuple[str, str | None]:
    """The entry's safe POSIX relative name, and why it cannot be used (None when it can)."""
    raw = info.filename
    if raw.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", raw):
        return raw, "absolute paths are not allowed in the archive"
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        return raw, "the path points outside the archive ('..'), which is not allowed"
    name = "/".join(parts)
    if stat.S_ISLNK(info.external_attr >> 16):
        return name, "symbolic links are not allowed in the archive"
    if info.flag_bits & _ZIP_FLAG_ENCRYPTED:
        return name, "the file is password-protected; upload an unencrypted zip"
    suffix = PurePosixPath(name).suffix.lower()
    if suffix in _ARCHIVE_EXTENSIONS:
        return name, "archives inside the archive are not supported; unpack them first"
    if suffix not in _IMAGE_EXTENSIONS | _TEXT_EXTENSIONS:
        kind = f"'{suffix}' files" if suffix else "files without an extension"
        return name, f"{kind} are not supported (use .jpg, .jpeg, .png, .webp images and .txt captions)"
    return name, None


def _read_entry(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: ImportLimits, budget: int
) -> tuple[bytes, str | None]:
    """One entry's bytes, or why not; raises _ArchiveTooLarge when the archive-wide budget runs out."""
    try:
        with archive.open(info) as stream:
            content = read_limited(stream, min(limits.max_file_bytes, budget))
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, zlib.error, NotImplementedError, struct.error,
            RuntimeError):  # RuntimeError: zipfile asking for a password it was never told about
        return b"", "the file is damaged in the archive and cannot be extracted"
    if content is None:
        if budget < limits.max_file_bytes:
            raise _ArchiveTooLarge
        return b"", f"the file is over the limit of {format_size(limits.max_file_bytes)}"
    if content.startswith(_ARCHIVE_MAGIC):
        return content, "archives inside the archive are not supported; unpack them first"
    return content, None


def read_limited(stream: IO[bytes], limit: int) -> bytes | None:
    """Reads a stream in chunks; None as soon as it yields more than ``limit`` bytes.

    Size headers in a zip can lie, so the real decompressed bytes are counted as they arrive.
    """
    chunks: list[bytes] = []
    total = 0
    while chunk := stream.read(min(_READ_CHUNK, limit + 1 - total)):
        total += len(chunk)
        if total > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


# --- export -----------------------------------------------------------------------------------------


def make_training_zip(items: Iterable[tuple[str, bytes, str]]) -> bytes:
    """A flat kohya / diffusers training folder: each ``name.ext`` beside ``name.txt`` holding its caption.

    ``items`` are (filename with extension, image bytes, caption). Raises ValueError for a name that is
    not a plain file name or that collides (case-insensitively, as on Windows and macOS) with another.
    """
    buffer = io.BytesIO()
    used: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for filename, data, caption in items:
            path = PurePosixPath(filename)
            if not filename or "/" in filename or "\\" in filename or filename in (".", "..") or not path.suffix:
                raise ValueError(f"not a plain file name with an extension: {filename!r}")
            if path.suffix.lower() in _TEXT_EXTENSIONS:
                raise ValueError(f"an image cannot be named like a caption file: {filename!r}")
            caption_name = f"{path.stem}.txt"
            for name in (filename, caption_name):
                if name.casefold() in used:
                    raise ValueError(f"duplicate name in the training zip: {name!r}")
                used.add(name.casefold())
            _write_file(archive, filename, data)
            _write_file(archive, caption_name, caption.encode("utf-8"))
    return buffer.getvalue()


def _write_file(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    # A fixed timestamp makes the same dataset export to the same bytes.
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    archive.writestr(info, data)
