"""Hostile dataset uploads through what the Datasets page calls (``core.datasets.datasets.import_files``), on the local
store and on S3. A refused file adds nothing to the dataset and stores no object; the report names the file
and the reason. Two inputs are legitimately storable and are accepted, with what made them hostile removed."""

from __future__ import annotations

import io
import stat
import struct
import zipfile
import zlib
from functools import cache

import pytest
from PIL import Image

from tests.factories import image_bytes, zip_bytes
from tests.security.harness import Arena, Case, Outcome, run_case

MB = 1024 * 1024


# --- hostile files ------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png() -> bytes:
    """A 67 byte PNG whose header claims 100000 x 100000 pixels (10 gigapixels, ~30 GB decoded)."""
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
            + _png_chunk(b"IEND", b""))


def png_with_script_chunk() -> bytes:
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "<script>alert(document.cookie)</script>")
    info.add_text("parameters", "<img src=x onerror=alert(1)>")
    buffer = io.BytesIO()
    Image.open(io.BytesIO(image_bytes(64, 64, seed=41))).save(buffer, "PNG", pnginfo=info)
    return buffer.getvalue()


def animated_png() -> bytes:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ("red", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "PNG", save_all=True, append_images=frames[1:])
    return buffer.getvalue()


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "green").save(buffer, "GIF")
    return buffer.getvalue()


@cache
def _deflated_zeros(size: int) -> tuple[bytes, int]:
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = b"\0" * size
    return compressor.compress(zeros) + compressor.flush(), zlib.crc32(zeros)


def deflate_bomb(names: list[str], size: int, *, flags: int = 0) -> bytes:
    """A zip written by hand, every entry the same deflated ``size`` zero bytes (a few KB each on disk)."""
    data, crc = _deflated_zeros(size)
    body, directory = bytearray(), bytearray()
    for name in names:
        encoded, offset = name.encode(), len(body)
        body += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, flags, 8, 0, 0, crc, len(data), size, len(encoded), 0)
        body += encoded + data
        directory += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, flags, 8, 0, 0, crc, len(data), size,
                                 len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    end = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(names), len(names), len(directory), len(body), 0)
    return bytes(body + directory + end)


def symlink_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        link = zipfile.ZipInfo("face.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        archive.writestr(link, "/etc/passwd")
    return buffer.getvalue()


def many_entries_zip(count: int) -> bytes:
    return zip_bytes({f"caption-{index}.txt": b"x" for index in range(count)})


# --- the cases ------------------------------------------------------------------------------------------


def _fresh_dataset(arena: Arena) -> int:
    """Each upload case gets its own dataset, so the accepted ones are not deduplicated across backends."""
    import uuid

    from core.datasets.datasets import create_dataset

    return create_dataset(name=f"upload {uuid.uuid4().hex[:8]}").id


def upload(*files: tuple[str, bytes]):
    def act(arena: Arena) -> Outcome:
        from core.datasets.datasets import import_files

        report = import_files(arena.prepared, list(files))
        status = "imported" if report.added else "refused"
        return Outcome(status, " | ".join(report.errors) or ", ".join(report.added), {"report": report})

    return act


def _stored_images(arena: Arena):
    from core.datasets.datasets import all_images

    return all_images(arena.prepared)


def _metadata_stripped(arena: Arena, outcome: Outcome) -> None:
    from core.datasets.datasets import read_image

    [image] = _stored_images(arena)
    with Image.open(io.BytesIO(read_image(image))) as stored:
        assert stored.format == "PNG" and not stored.text and "Comment" not in stored.info
    assert b"script" not in read_image(image)


def _name_made_printable(arena: Arena, outcome: Outcome) -> None:
    [image] = _stored_images(arena)
    assert image.filename == "a?b?gnp.exe.png"  # NUL and the right-to-left override are gone
    assert image.filename.isprintable()


def _caption_cleaned(arena: Arena, outcome: Outcome) -> None:
    [image] = _stored_images(arena)
    assert image.caption == "ohwx woman [2J <script>x</script>"  # plain text, controls gone


def refused(name: str, act, phrase: str) -> Case:
    return Case(name, "upload", act, "refused", phrase, prepare=_fresh_dataset)


UPLOAD_CASES = [
    refused("zip-slip entry ../../etc/passwd", upload(("slip.zip", zip_bytes({"../../etc/passwd.png": image_bytes(
        64, 64, seed=3)}))), "outside the archive"),
    refused("zip entry with an absolute path", upload(("abs.zip", zip_bytes({"/etc/cron.d/evil.png": image_bytes(
        64, 64, seed=4)}))), "absolute paths are not allowed"),
    refused("zip entry with a Windows drive path", upload(("win.zip", zip_bytes({"C:\\Windows\\evil.png": b"x"}))),
            "absolute paths are not allowed"),
    refused("zip with a symlink entry to /etc/passwd", upload(("link.zip", symlink_zip())),
            "symbolic links are not allowed"),
    refused("zip bomb: 53 entries of 20 MB zeros (1 GB+ from 1 MB)", upload((
        "bomb.zip", deflate_bomb([f"{i}.png" for i in range(53)], 20 * MB))), "over the limit of 1024.0 MB"),
    refused("zip bomb: one 30 MB entry of zeros", upload(("one.zip", deflate_bomb(["big.png"], 30 * MB))),
            "over the limit of 25.0 MB"),
    refused("zip with more entries than allowed", upload(("many.zip", many_entries_zip(2001))),
            "more than the limit of 2000"),
    refused("password-protected zip entry", upload(("locked.zip", deflate_bomb(["a.png"], 10, flags=1))),
            "password-protected"),
    refused("zip inside a zip", upload(("nest.zip", zip_bytes({"inner.zip": zip_bytes({"a.png": b"x"})}))),
            "archives inside the archive"),
    refused("executable inside a zip", upload(("exe.zip", zip_bytes({"setup.exe": b"MZ\x90\x00"}))),
            "'.exe' files are not supported"),
    refused("text file named .zip", upload(("fake.zip", b"PK? not really a zip")), "not a zip archive"),
    refused("decompression-bomb PNG (100000 x 100000, 67 bytes)", upload(("bomb.png", bomb_png())),
            "too large to process safely"),
    refused("truncated PNG", upload(("cut.png", image_bytes(64, 64, seed=5)[:300])), "cannot be read completely"),
    refused("SVG with a script named .png", upload(("logo.png", b'<svg xmlns="http://www.w3.org/2000/svg" '
                                                                b'onload="alert(1)"><script>alert(1)</script></svg>')),
            "not an image"),
    refused("HTML page named .png", upload(("photo.png", b"<!doctype html><script>fetch('/api/jobs')</script>")),
            "not an image"),
    refused("GIF renamed to .png", upload(("anim.png", gif_bytes())), "GIF images are not supported"),
    refused("animated PNG", upload(("anim2.png", animated_png())), "animated images are not supported"),
    refused("empty file", upload(("empty.png", b"")), "the file is empty"),
    refused("26 MB file", upload(("huge.jpg", b"\xff\xd8\xff" + b"\0" * (26 * MB))), "over the limit of 25.0 MB"),
    # Storable once cleaned: the image is fine, what made it hostile is removed (a row and two objects: the
    # re-encoded image and its thumbnail).
    Case("PNG with a <script> in its text chunks", "upload", upload(("meta.png", png_with_script_chunk())),
         "imported", "meta.png", prepare=_fresh_dataset, rows={"datasetimage": 1}, objects=2,
         check=_metadata_stripped),
    Case("training zip whose caption file holds NUL, ESC and a <script>", "upload", upload(("set.zip", zip_bytes({
        "ava.png": image_bytes(64, 64, seed=43), "ava.txt": b"ohwx\x00 woman\x1b[2J <script>x</script>\r\n"}))),
         "imported", "ava.png", prepare=_fresh_dataset, rows={"datasetimage": 1}, objects=2,
         check=_caption_cleaned),
    Case("valid image with NUL and right-to-left override in its name", "upload",
         upload(("a\x00b\u202egnp.exe.png", image_bytes(64, 64, seed=42))), "imported", "png",
         prepare=_fresh_dataset, rows={"datasetimage": 1}, objects=2, check=_name_made_printable),
]


@pytest.mark.parametrize("case", UPLOAD_CASES, ids=str)
def test_hostile_upload_is_refused_and_stores_nothing(arena: Arena, storage_backend: str, case: Case) -> None:
    run_case(arena, case)
