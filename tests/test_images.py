"""core.datasets.images: every bad upload is refused with a message naming the file; good ones come out clean."""

from __future__ import annotations

import hashlib
import io
import stat
import struct
import warnings
import zipfile
import zlib

import numpy as np
import pytest
from PIL import ExifTags, Image, ImageCms, ImageDraw, ImageFile, ImageFilter, PngImagePlugin

from core.datasets.images import (
    ArchiveEntry,
    ImageRejected,
    ImportLimits,
    blur_score,
    hamming_distance,
    make_training_zip,
    perceptual_hash,
    prepare_image,
    read_archive,
    read_limited,
)

# --- builders -------------------------------------------------------------------------------------------


def encode(image: Image.Image, image_format: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, image_format, **params)
    return buffer.getvalue()


def noise_image(size: tuple[int, int] = (128, 96), seed: int = 0, mode: str = "RGB") -> Image.Image:
    channels = {"RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def scene(seed: int = 0, size: int = 256) -> Image.Image:
    """A picture with structure (not noise), so perceptual hashes mean something."""
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(0, 256, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        w, h = (int(v) for v in rng.integers(size // 8, size // 2, 2))
        draw.ellipse((x0, y0, x0 + w, y0 + h), fill=tuple(int(v) for v in rng.integers(0, 256, 3)))
    return image


def png_with_size(width: int, height: int) -> bytes:
    """A tiny real PNG whose IHDR claims width x height (with a valid CRC, so only the size is a lie)."""
    data = bytearray(encode(Image.new("L", (4, 4)), "PNG"))
    struct.pack_into(">II", data, 16, width, height)  # IHDR data starts after 8-byte signature + length + type
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def make_zip(files: list[tuple[str | zipfile.ZipInfo, bytes]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files:
            archive.writestr(name, data)
    return buffer.getvalue()


def patch_zip_headers(data: bytes, *, flag_bits: int = 0, sizes: int | None = None) -> bytes:
    """Edits every local and central header: sets general-purpose flag bits and/or lies about sizes."""
    raw = bytearray(data)
    for signature, flag_offset, size_offset in ((b"PK\x03\x04", 6, 18), (b"PK\x01\x02", 8, 20)):
        position = raw.find(signature)
        while position >= 0:
            struct.pack_into("<H", raw, position + flag_offset, raw[position + flag_offset] | flag_bits)
            if sizes is not None:
                struct.pack_into("<L", raw, position + size_offset + 4, sizes)  # uncompressed size
            position = raw.find(signature, position + 4)
    return bytes(raw)


PNG = encode(scene(1, 64), "PNG")
JPEG = encode(scene(2, 64), "JPEG")


def rejected(data: bytes, filename: str, limits: ImportLimits | None = None) -> str:
    with pytest.raises(ImageRejected) as caught:
        prepare_image(data, filename=filename, limits=limits or ImportLimits())
    message = str(caught.value)
    assert message.startswith(f"{filename}: "), message
    return message


# --- bad single images --------------------------------------------------------------------------------------


def test_empty_file_is_rejected() -> None:
    assert "empty" in rejected(b"", "empty.jpg")


def test_truncated_jpeg_is_rejected() -> None:
    data = encode(noise_image((256, 256)), "JPEG", quality=90)
    assert "truncated" in rejected(data[: len(data) * 2 // 3], "cut.jpg")


def test_corrupt_png_pixel_data_is_rejected() -> None:
    data = bytearray(encode(noise_image((128, 128)), "PNG"))
    data[len(data) // 2] ^= 0xFF  # inside the compressed IDAT stream
    assert "damaged" in rejected(bytes(data), "broken.png")


def test_corrupt_png_header_is_rejected() -> None:
    data = bytearray(encode(noise_image((32, 32)), "PNG"))
    data[20] ^= 0xFF  # IHDR width byte: the chunk CRC no longer matches
    assert "not an image" in rejected(bytes(data), "header.png")


def test_text_file_renamed_jpg_is_rejected() -> None:
    message = rejected(b"name,caption\ncat,a cat\n" * 20, "notes.jpg")
    assert "not an image (or a format other than JPEG, PNG, WebP)" in message


@pytest.mark.parametrize("image_format", ["GIF", "BMP", "TIFF"])
def test_other_formats_are_rejected_by_content_not_extension(image_format: str) -> None:
    data = encode(scene(3, 32), image_format)
    message = rejected(data, "holiday.jpg")
    assert f"{image_format} images are not supported" in message
    assert "JPEG, PNG, WebP" in message


def test_image_over_the_pixel_limit_is_rejected_before_decoding() -> None:
    # A real 7000x7000 1-bit PNG: 49 megapixels in a few kilobytes.
    data = encode(Image.new("1", (7000, 7000)), "PNG")
    assert len(data) < 100_000
    message = rejected(data, "bomb.png")
    assert "7000x7000" in message and "over the limit of 36.0 megapixels" in message


@pytest.mark.parametrize("side", [10_000, 20_000])  # past Pillow's warning (~89 MP), past its error (~179 MP)
def test_decompression_bomb_header_is_rejected_without_touching_pillow_globals(side: int) -> None:
    max_pixels, load_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    filters = list(warnings.filters)
    assert "too large to process safely" in rejected(png_with_size(side, side), "huge.png")
    assert (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES) == (max_pixels, load_truncated)
    assert warnings.filters == filters


def test_pillow_bomb_warning_itself_becomes_a_rejection() -> None:
    # With our own limit lifted, Pillow's escalated DecompressionBombWarning is what stops the file.
    limits = ImportLimits(max_pixels=10**12)
    assert "too large to process safely" in rejected(png_with_size(10_000, 10_000), "huge.png", limits)


def test_file_over_the_size_limit_is_rejected() -> None:
    data = encode(noise_image((64, 64)), "PNG")
    message = rejected(data, "big.png", ImportLimits(max_file_bytes=4096))
    assert f"the file is {len(data) / 1024:.1f} KB, over the limit of 4.0 KB" in message


def test_size_limit_message_uses_megabytes() -> None:
    message = rejected(b"\xff" * (2 * 1024 * 1024 + 1), "big.jpg", ImportLimits(max_file_bytes=1024 * 1024))
    assert "2.0 MB, over the limit of 1.0 MB" in message


@pytest.mark.parametrize("image_format", ["WEBP", "PNG"])
def test_animated_images_are_rejected(image_format: str) -> None:
    frames = [scene(4, 48), scene(5, 48)]
    data = encode(frames[0], image_format, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert "animated images are not supported (it has 2 frames)" in rejected(data, "anim.webp")


# --- good single images -------------------------------------------------------------------------------------


def red_left_blue_right() -> Image.Image:
    image = Image.new("RGB", (40, 20), (0, 0, 255))
    image.paste((255, 0, 0), (0, 0, 20, 20))
    return image


def exif_with_orientation_and_gps(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.Make] = "SpyCam"
    exif[ExifTags.IFD.GPSInfo] = {ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (48.0, 51.0, 24.0)}
    return exif


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_exif_orientation_is_applied_and_all_metadata_is_stripped(image_format: str) -> None:
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    source = encode(red_left_blue_right(), image_format, exif=exif_with_orientation_and_gps(6).tobytes(),
                    icc_profile=icc, **({"quality": 98} if image_format != "PNG" else {}))
    assert b"SpyCam" in source

    prepared = prepare_image(source, filename=f"photo.{image_format.lower()}")

    assert prepared.format == image_format
    assert (prepared.width, prepared.height) == (20, 40)  # orientation 6: rotate 90 degrees clockwise
    out = Image.open(io.BytesIO(prepared.data))
    assert out.size == (20, 40)
    top, bottom = out.convert("RGB").getpixel((10, 5)), out.convert("RGB").getpixel((10, 34))
    assert top[0] > 200 and top[2] < 60, top  # the left (red) half is now on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    assert len(out.getexif()) == 0
    assert not {"exif", "icc_profile", "xmp", "XML:com.adobe.xmp"} & set(out.info)
    assert b"SpyCam" not in prepared.data and b"Exif" not in prepared.data


@pytest.mark.parametrize("image_format", ["JPEG", "PNG", "WEBP"])
def test_xmp_and_comments_are_stripped(image_format: str) -> None:
    secret = b'<x:xmpmeta xmlns:x="adobe:ns:meta/">SECRET-XMP</x:xmpmeta>'
    params: dict[str, object] = {"xmp": secret}
    if image_format == "JPEG":
        params["comment"] = b"SECRET-XMP"
    if image_format == "PNG":
        text = PngImagePlugin.PngInfo()
        text.add_text("XML:com.adobe.xmp", secret.decode())
        text.add_text("Comment", "SECRET-XMP")
        params = {"pnginfo": text}
    source = encode(scene(11, 32), image_format, **params)
    assert b"SECRET-XMP" in source
    assert b"SECRET-XMP" not in prepare_image(source, filename="x").data


@pytest.mark.parametrize(("orientation", "size"), [(1, (40, 20)), (3, (40, 20)), (8, (20, 40))])
def test_other_orientations(orientation: int, size: tuple[int, int]) -> None:
    source = encode(red_left_blue_right(), "JPEG", exif=exif_with_orientation_and_gps(orientation).tobytes())
    prepared = prepare_image(source, filename="o.jpg")
    assert (prepared.width, prepared.height) == size


def test_jpeg_is_reencoded_at_high_quality_without_chroma_subsampling() -> None:
    prepared = prepare_image(encode(scene(6), "JPEG", quality=80), filename="x.jpg")
    out = Image.open(io.BytesIO(prepared.data))
    assert (prepared.content_type, prepared.extension) == ("image/jpeg", ".jpg")
    assert out.layer[0][1:3] == out.layer[1][1:3] == (1, 1)  # 4:4:4: every component sampled 1x1


def test_png_with_alpha_keeps_its_alpha() -> None:
    image = Image.new("RGBA", (64, 32), (255, 0, 0, 255))
    image.paste((0, 0, 0, 0), (32, 0, 64, 32))
    prepared = prepare_image(encode(image, "PNG"), filename="cutout.png")
    out = Image.open(io.BytesIO(prepared.data))
    assert (prepared.format, prepared.content_type, prepared.extension) == ("PNG", "image/png", ".png")
    assert out.mode == "RGBA"
    assert out.getpixel((5, 5)) == (255, 0, 0, 255) and out.getpixel((50, 5))[3] == 0
    thumbnail = Image.open(io.BytesIO(prepared.thumbnail))
    assert thumbnail.format == "JPEG" and thumbnail.mode == "RGB"
    assert thumbnail.getpixel((50, 5)) == pytest.approx((255, 255, 255), abs=8)  # flattened over white


def test_webp_with_alpha_keeps_its_alpha() -> None:
    prepared = prepare_image(encode(noise_image(mode="RGBA"), "WEBP", lossless=True), filename="a.webp")
    assert (prepared.format, prepared.content_type, prepared.extension) == ("WEBP", "image/webp", ".webp")
    assert Image.open(io.BytesIO(prepared.data)).mode == "RGBA"


def test_cmyk_jpeg_becomes_rgb() -> None:
    source = encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    prepared = prepare_image(source, filename="print.jpg")
    out = Image.open(io.BytesIO(prepared.data))
    assert out.mode == "RGB"
    assert out.getpixel((16, 16)) == pytest.approx((255, 0, 0), abs=12)


@pytest.mark.parametrize(
    ("image", "mode"),
    [
        (Image.new("P", (16, 16), 3), "RGB"),
        (Image.new("L", (16, 16), 128), "RGB"),
        (Image.new("1", (16, 16), 1), "RGB"),
        (Image.new("LA", (16, 16), (128, 100)), "RGBA"),
    ],
)
def test_other_modes_are_converted(image: Image.Image, mode: str) -> None:
    out = Image.open(io.BytesIO(prepare_image(encode(image, "PNG"), filename="m.png").data))
    assert out.mode == mode


def test_sixteen_bit_greyscale_png_keeps_its_tones() -> None:
    ramp = np.tile(np.linspace(0, 65535, 64).astype(np.uint16), (8, 1))
    out = Image.open(io.BytesIO(prepare_image(encode(Image.fromarray(ramp), "PNG"), filename="d.png").data))
    row = [out.getpixel((x, 0))[0] for x in (0, 32, 63)]
    assert row[0] == 0 and 120 < row[1] < 136 and row[2] == 255


def test_multi_picture_jpeg_is_accepted_as_its_first_picture() -> None:
    # MPO: some cameras store a second picture (preview, depth) after the photo; that is not an animation.
    first, second = Image.new("RGB", (40, 30), (250, 0, 0)), Image.new("RGB", (40, 30), (0, 0, 250))
    prepared = prepare_image(encode(first, "MPO", save_all=True, append_images=[second]), filename="cam.jpg")
    assert prepared.format == "JPEG"
    assert Image.open(io.BytesIO(prepared.data)).getpixel((20, 15)) == pytest.approx((250, 0, 0), abs=8)


def test_thumbnail_longest_side_and_no_upscaling() -> None:
    big = prepare_image(encode(scene(7, 1000).resize((1000, 500)), "PNG"), filename="wide.png")
    assert Image.open(io.BytesIO(big.thumbnail)).size == (256, 128)
    small = prepare_image(encode(scene(7, 100).resize((100, 50)), "PNG"), filename="small.png")
    assert Image.open(io.BytesIO(small.thumbnail)).size == (100, 50)
    custom = prepare_image(encode(scene(7, 300), "PNG"), filename="c.png", limits=ImportLimits(thumbnail_px=64))
    assert Image.open(io.BytesIO(custom.thumbnail)).size == (64, 64)


def test_sha256_is_of_the_original_bytes() -> None:
    prepared = prepare_image(JPEG, filename="a.jpg")
    assert prepared.sha256 == hashlib.sha256(JPEG).hexdigest()
    assert prepared.data != JPEG


def test_phash_survives_reencoding_and_separates_different_pictures() -> None:
    original = scene(8)
    png = prepare_image(encode(original, "PNG"), filename="a.png")
    jpeg = prepare_image(encode(original.resize((200, 200)), "JPEG", quality=70), filename="a.jpg")
    other = prepare_image(encode(scene(9), "PNG"), filename="b.png")
    assert len(png.phash) == 16 and int(png.phash, 16) >= 0
    assert hamming_distance(png.phash, jpeg.phash) <= 2
    assert hamming_distance(png.phash, other.phash) > 10


def test_hamming_distance() -> None:
    assert hamming_distance("0000000000000000", "0000000000000000") == 0
    assert hamming_distance("ffffffffffffffff", "0000000000000000") == 64
    assert hamming_distance("8000000000000001", "0000000000000000") == 2
    with pytest.raises(ValueError, match="different lengths"):
        hamming_distance("ff", "0000000000000000")


def test_blur_score_is_higher_for_sharp_images() -> None:
    checkerboard = Image.fromarray(((np.indices((256, 256)) // 8).sum(axis=0) % 2 * 255).astype(np.uint8), "L")
    blurred = checkerboard.filter(ImageFilter.GaussianBlur(3))
    sharp_score = prepare_image(encode(checkerboard, "PNG"), filename="sharp.png").blur
    blurred_score = prepare_image(encode(blurred, "PNG"), filename="soft.png").blur
    assert sharp_score > 10 * blurred_score > 0
    assert blur_score(Image.new("RGB", (2, 2))) == 0.0


def test_measures_work_on_huge_images_quickly() -> None:
    image = scene(10, 512).resize((6000, 4000))
    assert perceptual_hash(image) == perceptual_hash(image.resize((600, 400)))
    assert blur_score(image) >= 0


# --- zip archives -------------------------------------------------------------------------------------------


def archive_error_for(name: str | zipfile.ZipInfo, data: bytes = PNG, limits: ImportLimits | None = None) -> str:
    """Reads a zip of one good image plus the given entry; returns the message of the entry's error."""
    entries, errors = read_archive(make_zip([("good.png", PNG), (name, data)]), filename="upload.zip",
                                   limits=limits or ImportLimits())
    assert entries == [ArchiveEntry("good.png", PNG)]  # the rest of the archive still comes back
    assert len(errors) == 1
    expected = name.filename if isinstance(name, zipfile.ZipInfo) else name
    assert errors[0].name == expected
    return errors[0].message


@pytest.mark.parametrize("name", ["../evil.png", "photos/../../evil.png", "a\\..\\..\\evil.png"])
def test_zip_slip_entries_are_refused(name: str) -> None:
    assert "outside the archive" in archive_error_for(name)


@pytest.mark.parametrize("name", ["/etc/x.png", "C:\\x.png", "c:/x.png", "\\\\server\\share\\x.png"])
def test_absolute_paths_are_refused(name: str) -> None:
    assert "absolute paths are not allowed" in archive_error_for(name)


def test_symlink_entries_are_refused() -> None:
    link = zipfile.ZipInfo("link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    assert "symbolic links are not allowed" in archive_error_for(link, b"/etc/passwd")


@pytest.mark.parametrize("name", ["inner.zip", "inner.tar", "inner.tar.gz", "inner.7z", "inner.rar"])
def test_nested_archives_are_refused_by_extension(name: str) -> None:
    assert "archives inside the archive are not supported" in archive_error_for(name, make_zip([("a.png", PNG)]))


def test_nested_zip_disguised_as_an_image_is_refused() -> None:
    assert "archives inside the archive" in archive_error_for("sneaky.png", make_zip([("a.png", PNG)]))


@pytest.mark.parametrize(("name", "reason"), [("setup.exe", "'.exe' files"), ("a.gif", "'.gif' files"),
                                              ("README", "files without an extension")])
def test_other_file_types_are_refused(name: str, reason: str) -> None:
    message = archive_error_for(name, b"data")
    assert f"{reason} are not supported" in message and ".txt captions" in message


def test_encrypted_entries_are_refused() -> None:
    # The stdlib cannot encrypt, but the "encrypted" flag is all a reader goes by before asking for a password.
    data = patch_zip_headers(make_zip([("secret.png", PNG)]), flag_bits=0x1)
    entries, errors = read_archive(data, filename="locked.zip")
    assert entries == [] and [e.name for e in errors] == ["secret.png"]
    assert "password-protected" in errors[0].message


def test_duplicate_entry_names_are_refused() -> None:
    entries, errors = read_archive(make_zip([("a.png", PNG), ("A.PNG", JPEG)]), filename="dup.zip")
    assert [e.name for e in entries] == ["a.png"]
    assert errors[0].name == "A.PNG" and "same name" in errors[0].message


def test_entry_over_the_file_size_limit_is_refused_without_reading_it() -> None:
    limits = ImportLimits(max_file_bytes=len(PNG) + 10)
    assert "over the limit of" in archive_error_for("large.png", b"\x00" * 50_000, limits)


def test_too_many_entries_rejects_the_zip() -> None:
    data = make_zip([(f"{i}.png", PNG) for i in range(4)])
    with pytest.raises(ImageRejected, match=r"^many\.zip: the zip has 4 files, more than the limit of 3$"):
        read_archive(data, filename="many.zip", limits=ImportLimits(max_zip_entries=3))


def test_absurd_entry_count_is_refused_before_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    data = make_zip([(f"dir{i}/", b"") for i in range(50)])

    def must_not_parse(*args: object, **kwargs: object) -> None:
        raise AssertionError("zipfile parsed a central directory that was already known to be too large")

    monkeypatch.setattr(zipfile, "ZipFile", must_not_parse)
    with pytest.raises(ImageRejected, match=r"^dirs\.zip: the zip has 50 entries"):
        read_archive(data, filename="dirs.zip", limits=ImportLimits(max_zip_entries=5))


def test_declared_uncompressed_size_over_the_limit_rejects_the_zip() -> None:
    data = make_zip([("a.png", b"\x00" * 8000), ("b.png", b"\x00" * 8000)])
    assert len(data) < 2000  # zeros compress well: only the declared sizes give it away
    with pytest.raises(ImageRejected, match=r"^bomb\.zip: the zip expands to 15\.6 KB, over the limit of 9\.8 KB"):
        read_archive(data, filename="bomb.zip", limits=ImportLimits(max_zip_uncompressed_bytes=10_000))


def test_lying_size_header_never_yields_more_than_declared() -> None:
    # The headers claim 100 bytes; the real data is 50 KB of zeros. The entry is refused, the rest kept.
    liar = patch_zip_headers(make_zip([("liar.png", b"\x00" * 50_000)]), sizes=100)
    with zipfile.ZipFile(io.BytesIO(liar)) as archive:
        assert archive.getinfo("liar.png").file_size == 100
    entries, errors = read_archive(liar, filename="liar.zip", limits=ImportLimits(max_zip_uncompressed_bytes=1000))
    assert entries == [] and [e.name for e in errors] == ["liar.png"]
    assert "damaged" in errors[0].message


def test_real_bytes_are_counted_while_reading() -> None:
    stream = io.BytesIO(b"x" * 5000)
    assert read_limited(stream, 4999) is None
    assert stream.tell() == 5000  # it stopped one byte past the limit, not at the end of a larger stream
    assert read_limited(io.BytesIO(b"x" * 5000), 5000) == b"x" * 5000
    assert read_limited(io.BytesIO(b""), 0) == b""


def test_empty_zip_is_rejected() -> None:
    with pytest.raises(ImageRejected, match=r"^empty\.zip: the zip is empty"):
        read_archive(make_zip([]), filename="empty.zip")


def test_zip_of_only_junk_is_rejected_as_empty() -> None:
    data = make_zip([("__MACOSX/._a.png", b"x"), (".DS_Store", b"x"), ("photos/", b"")])
    with pytest.raises(ImageRejected, match=r"^junk\.zip: the zip is empty"):
        read_archive(data, filename="junk.zip")


def test_zip_of_only_captions_is_rejected() -> None:
    with pytest.raises(ImageRejected, match=r"^text\.zip: the zip has only text files"):
        read_archive(make_zip([("a.txt", b"a cat")]), filename="text.zip")


def test_corrupt_zip_is_rejected() -> None:
    data = make_zip([("a.png", PNG), ("b.png", JPEG)])
    with pytest.raises(ImageRejected, match=r"^cut\.zip: the zip archive is damaged"):
        read_archive(data[: len(data) // 2], filename="cut.zip")


def test_non_zip_renamed_zip_is_rejected() -> None:
    with pytest.raises(ImageRejected, match=r"^photos\.zip: not a zip archive$"):
        read_archive(PNG, filename="photos.zip")


def test_zip_over_the_compressed_size_limit_is_rejected() -> None:
    data = make_zip([("a.png", PNG)])
    with pytest.raises(ImageRejected, match=r"^big\.zip: the zip is .* over the limit of 100 bytes"):
        read_archive(data, filename="big.zip", limits=ImportLimits(max_zip_bytes=100))


def test_junk_is_skipped_and_captions_are_kept() -> None:
    data = make_zip([
        ("photos/", b""),
        ("photos/a.png", PNG),
        ("photos/a.txt", b"ohwx person smiling"),
        ("photos\\b.jpeg", JPEG),
        ("./c.JPG", JPEG),
        ("__MACOSX/photos/._a.png", b"\x00\x05\x16\x07"),
        ("photos/.DS_Store", b"\x00\x00\x00\x01Bud1"),
        ("photos/._a.png", b"\x00\x05\x16\x07"),
        ("Thumbs.db", b"x"),
    ])
    entries, errors = read_archive(data, filename="dataset.zip")
    assert errors == []
    assert {e.name: e.data for e in entries} == {
        "photos/a.png": PNG,
        "photos/a.txt": b"ohwx person smiling",
        "photos/b.jpeg": JPEG,
        "c.JPG": JPEG,
    }


def test_good_entries_come_back_alongside_the_bad_ones() -> None:
    link = zipfile.ZipInfo("link.png")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    data = make_zip([("a.png", PNG), ("../b.png", PNG), (link, b"x"), ("c.jpg", JPEG), ("d.bmp", b"BM")])
    entries, errors = read_archive(data, filename="mixed.zip")
    assert [e.name for e in entries] == ["a.png", "c.jpg"]
    assert [e.name for e in errors] == ["../b.png", "link.png", "d.bmp"]


def test_only_bad_entries_are_all_reported() -> None:
    entries, errors = read_archive(make_zip([("../a.png", PNG), ("/b.png", PNG)]), filename="bad.zip")
    assert entries == [] and [e.name for e in errors] == ["../a.png", "/b.png"]


def test_entry_names_are_made_printable() -> None:
    _, errors = read_archive(make_zip([("a.png", PNG), ("../x\n\x1b.png", PNG)]), filename="n.zip")
    assert errors[0].name == "../x??.png"


# --- export -------------------------------------------------------------------------------------------------


def test_training_zip_round_trips_through_read_archive() -> None:
    items = [("mika_01.png", PNG, "ohwx person at the beach"), ("mika_02.jpg", JPEG, "ohwx person, café")]
    data = make_training_zip(items)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["mika_01.png", "mika_01.txt", "mika_02.jpg", "mika_02.txt"]
        assert {i.compress_type for i in archive.infolist()} == {zipfile.ZIP_DEFLATED}
    entries, errors = read_archive(data, filename="export.zip")
    assert errors == []
    assert {e.name: e.data for e in entries} == {
        "mika_01.png": PNG,
        "mika_01.txt": b"ohwx person at the beach",
        "mika_02.jpg": JPEG,
        "mika_02.txt": "ohwx person, café".encode(),
    }
    assert make_training_zip(items) == data  # same dataset, same bytes


@pytest.mark.parametrize(
    "items",
    [
        [("a.png", PNG, "x"), ("a.png", PNG, "y")],
        [("a.png", PNG, "x"), ("A.PNG", PNG, "y")],
        [("a.png", PNG, "x"), ("a.jpg", JPEG, "y")],  # both would need a.txt
    ],
)
def test_training_zip_refuses_duplicate_names(items: list[tuple[str, bytes, str]]) -> None:
    with pytest.raises(ValueError, match="duplicate name"):
        make_training_zip(items)


@pytest.mark.parametrize("name", ["", "dir/a.png", "..", "noext", "a.txt"])
def test_training_zip_refuses_odd_names(name: str) -> None:
    with pytest.raises(ValueError, match=r"file name|caption file"):
        make_training_zip([(name, PNG, "x")])
