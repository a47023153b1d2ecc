"""The ffmpeg media engine against the real ffmpeg: sizes, fits, motion, transitions, subtitles, ducking,
loudness, failures (corrupt input, a killed ffmpeg, a timeout, a cancel) and the platform rules.

Renders use the real output sizes with short durations and x264 ``ultrafast`` where the test does not
care about quality. Everything measured here is measured with ffmpeg/ffprobe directly, not with the code
under test.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from PIL import Image
from pydantic import ValidationError

from core.errors import JobCancelled
from core.video.options import Cue, LoudnessTarget, SubtitleStyle
from core.video.platform_specs import VIDEO_SPECS, MediaFacts, aspect_name, check_video
from workers.media import MediaError, RenderRequest, probe, render_video
from workers.media.ffmpeg import moov_before_mdat, parse_progress_seconds
from workers.media.render import (
    KEN_BURNS_MOVES,
    ken_burns_filter,
    prepare_images,
    subtitle_force_style,
)

# ------------------------------------------------------------------------------------------ helpers


def make_image(path: Path, width: int = 800, height: int = 1200, *, seed: int = 0) -> Path:
    """A sharp picture with detail everywhere (motion and blur are visible in every region)."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, 255, size=(24, 16, 3), dtype=np.uint8)
    Image.fromarray(blocks).resize((width, height), Image.Resampling.NEAREST).save(path)
    return path


def make_images(folder: Path, count: int, **kwargs: int) -> list[Path]:
    return [make_image(folder / f"picture-{i}.png", seed=i, **kwargs) for i in range(count)]


def ffmpeg_run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-y", *args], capture_output=True, check=True,
                          timeout=120)


def make_tone(path: Path, *, seconds: float, frequency: int, start: float = 0.0, length: float | None = None) -> Path:
    """A sine tone (−18 dBFS) from ``start`` for ``length`` seconds inside ``seconds`` of silence, 48 kHz."""
    length = seconds - start if length is None else length
    delay = int(start * 1000)
    ffmpeg_run("-f", "lavfi", "-i", f"sine=f={frequency}:d={length}:sample_rate=48000",
               "-af", f"adelay={delay}|{delay},apad=whole_dur={seconds}", "-t", str(seconds), str(path))
    return path


def ffprobe(path: Path) -> dict:
    out = subprocess.run(["ffprobe", "-v", "error", "-print_format", "json", "-show_format", "-show_streams",
                          "-count_frames", str(path)], capture_output=True, check=True, timeout=60)
    return json.loads(out.stdout)


def stream(info: dict, kind: str) -> dict:
    return next(s for s in info["streams"] if s["codec_type"] == kind)


def gray_frame(path: Path, at: float, width: int, height: int) -> np.ndarray:
    """The decoded frame at ``at`` seconds as a float greyscale array."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-ss", f"{at:.3f}", "-i", str(path), "-frames:v", "1",
                          "-f", "rawvideo", "-pix_fmt", "gray", "-"], capture_output=True, check=True, timeout=60)
    return np.frombuffer(out.stdout, dtype=np.uint8).reshape(height, width).astype(np.float32)


def ebur128(path: Path) -> tuple[float, float]:
    """(integrated LUFS, true peak dBTP) of a file's audio, from ffmpeg's own EBU R128 meter."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-vn",
                          "-af", "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
                         capture_output=True, text=True, timeout=60, check=True)
    summary = out.stderr[out.stderr.rfind("Summary:"):]
    integrated = float(re.search(r"I:\s*(-?[\d.]+) LUFS", summary).group(1))
    peak = float(re.search(r"Peak:\s*(-?[\d.]+|-inf) dBFS", summary).group(1))
    return integrated, peak


def rms_db(path: Path, start: float, end: float, *, band: str) -> float:
    """RMS level (dBFS) of the audio between ``start`` and ``end`` in one band ("low" < 300 Hz, "high" > 600 Hz)."""
    band_filter = "lowpass=f=300,lowpass=f=300" if band == "low" else "highpass=f=600,highpass=f=600"
    out = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-vn",
                          "-af", f"atrim={start}:{end},{band_filter},astats=measure_perchannel=none",
                          "-f", "null", "-"], capture_output=True, text=True, timeout=60, check=True)
    return float(re.findall(r"RMS level dB:\s*(-?[\d.]+|-inf)", out.stderr)[-1])


def ffmpeg_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.name() == "ffmpeg"]


def request(tmp_path: Path, images: list[Path], **overrides: object) -> RenderRequest:
    values: dict[str, object] = {
        "images": images, "durations": [1.0] * len(images), "output": tmp_path / "out" / "video.mp4",
        "preset": "ultrafast", "work_dir": tmp_path / "work",
    }
    values.update(overrides)
    return RenderRequest(**values)


# ------------------------------------------------------------------------------------------ rendering


@pytest.mark.parametrize(("aspect", "size"), [("9:16", (1080, 1920)), ("1:1", (1080, 1080)), ("16:9", (1920, 1080))])
def test_each_aspect_preset_renders_at_its_exact_resolution(tmp_path: Path, aspect: str, size: tuple[int, int]) -> None:
    result = render_video(request(tmp_path, make_images(tmp_path, 3), aspect=aspect))

    video = stream(ffprobe(result.output), "video")
    assert (video["width"], video["height"]) == size
    assert (result.width, result.height) == size
    assert video["sample_aspect_ratio"] in ("1:1", "N/A") or "sample_aspect_ratio" not in video


def test_output_is_faststart_h264_high_with_aac_48k_stereo_and_a_silent_track_without_audio(tmp_path: Path) -> None:
    result = render_video(request(tmp_path, make_images(tmp_path, 2), preset="veryfast"))  # ultrafast is Baseline

    info = ffprobe(result.output)
    video, audio = stream(info, "video"), stream(info, "audio")
    assert (video["codec_name"], video["profile"], video["pix_fmt"]) == ("h264", "High", "yuv420p")
    assert (audio["codec_name"], audio["sample_rate"], audio["channels"]) == ("aac", "48000", 2)
    assert result.probe.faststart is True
    assert result.loudness_mode == "silent" and result.integrated_lufs is None
    assert ebur128(result.output)[0] <= -70  # a silent track, not a missing one

    # The box walk tells a remux without +faststart apart.
    plain = tmp_path / "plain.mp4"
    ffmpeg_run("-i", str(result.output), "-c", "copy", str(plain))
    assert moov_before_mdat(plain) is False
    assert probe(plain).faststart is False


@pytest.mark.parametrize("fit", ["crop", "blur"])
def test_crop_fills_the_frame_and_blur_fits_the_picture_over_a_blurred_copy(tmp_path: Path, fit: str) -> None:
    square = tmp_path / "square.png"  # a square picture of fine detail, in a 9:16 frame
    noise = np.random.default_rng(3).integers(0, 255, (150, 150), dtype=np.uint8)
    Image.fromarray(noise).resize((900, 900), Image.Resampling.NEAREST).convert("RGB").save(square)
    result = render_video(request(tmp_path, [square], fit=fit, motion="none"))

    frame = gray_frame(result.output, 0.5, 1080, 1920)
    band = frame[:300]  # top band: picture (crop) or blurred background (blur)
    detail = float(np.abs(np.diff(band, axis=1)).mean())
    centre_detail = float(np.abs(np.diff(frame[800:1100], axis=1)).mean())
    if fit == "crop":
        assert detail > 4
    else:
        assert detail < 1.0 < centre_detail  # smooth background, sharp picture in the middle
        assert band.mean() < frame[800:1100].mean()  # and darkened


@pytest.mark.parametrize("transition", ["crossfade", "cut"])
def test_video_lasts_exactly_the_sum_of_the_image_durations(tmp_path: Path, transition: str) -> None:
    durations = [1.0, 1.5, 1.2]
    result = render_video(request(tmp_path, make_images(tmp_path, 3), durations=durations, transition=transition,
                                  transition_seconds=0.5, aspect="1:1"))

    video = stream(ffprobe(result.output), "video")
    assert int(video["nb_read_frames"]) == round(sum(durations) * 30)
    assert float(ffprobe(result.output)["format"]["duration"]) == pytest.approx(3.7, abs=0.05)
    assert result.duration == pytest.approx(3.7, abs=0.05)


def test_crossfade_blends_the_two_pictures_at_the_boundary(tmp_path: Path) -> None:
    images = make_images(tmp_path, 2)
    result = render_video(request(tmp_path, images, durations=[1.0, 1.0], motion="none", transition_seconds=0.6,
                                  aspect="1:1"))

    first, middle, second = (gray_frame(result.output, t, 1080, 1080) for t in (0.3, 1.0, 1.7))
    # Halfway through the fade the frame is between the two pictures, not either of them.
    assert np.abs(middle - first).mean() > 10 and np.abs(middle - second).mean() > 10
    assert np.abs(middle - (first + second) / 2).mean() < np.abs(middle - first).mean() / 2


def test_ken_burns_frames_change_over_time_while_motion_none_frames_stay_still(tmp_path: Path) -> None:
    images = make_images(tmp_path, 1)
    moving = render_video(request(tmp_path, images, durations=[2.0], aspect="1:1", motion="ken_burns",
                                  output=tmp_path / "moving.mp4"))
    still = render_video(request(tmp_path, images, durations=[2.0], aspect="1:1", motion="none",
                                 output=tmp_path / "still.mp4"))

    def change(path: Path) -> float:
        return float(np.abs(gray_frame(path, 0.2, 1080, 1080) - gray_frame(path, 1.8, 1080, 1080)).mean())

    assert change(moving.output) > 10
    assert change(still.output) < 1.5


def test_ken_burns_moves_are_varied_by_image_and_reproducible() -> None:
    first = [ken_burns_filter(i, 90, 30, 1080, 1920) for i in range(len(KEN_BURNS_MOVES))]
    again = [ken_burns_filter(i, 90, 30, 1080, 1920) for i in range(len(KEN_BURNS_MOVES))]
    assert first == again
    assert len({(m["z"], m["x"], m["y"]) for m in first}) == len(KEN_BURNS_MOVES)
    assert ken_burns_filter(len(KEN_BURNS_MOVES), 90, 30, 1080, 1920) == first[0]


def test_subtitles_are_burnt_in_the_subtitle_region_only_while_the_cue_is_on(tmp_path: Path) -> None:
    images = [make_image(tmp_path / "picture.png", seed=5)]
    # A working folder with characters the filter graph must escape.
    base = {"durations": [3.0], "motion": "none", "work_dir": tmp_path / "we:ird 'dir, [x]"}
    cue = Cue(start=1.0, end=2.0, text="Hello subtitles")
    with_subs = render_video(request(tmp_path, images, subtitles=[cue], output=tmp_path / "subs.mp4", **base))
    without = render_video(request(tmp_path, images, output=tmp_path / "plain.mp4", **base))

    def diff(at: float, rows: slice) -> float:
        a = gray_frame(with_subs.output, at, 1080, 1920)[rows]
        b = gray_frame(without.output, at, 1080, 1920)[rows]
        return float(np.abs(a - b).mean())

    bottom, top = slice(1500, 1920), slice(0, 1000)
    assert diff(1.5, bottom) > 2  # the cue is on: text in the bottom region
    assert diff(1.5, top) < 1.0  # and nowhere else
    assert diff(0.5, bottom) < 1.0  # before the cue
    assert diff(2.6, bottom) < 1.0  # after it


def test_subtitle_size_and_margin_are_output_pixels(tmp_path: Path) -> None:
    black = tmp_path / "black.png"
    Image.new("RGB", (1080, 1920)).save(black)
    style = SubtitleStyle(size=100, outline=0, margin=200, position="bottom")
    result = render_video(request(tmp_path, [black], durations=[0.5], motion="none", subtitle_style=style,
                                  subtitles=[Cue(start=0, end=0.5, text="HELLO")]))

    lit = np.where((gray_frame(result.output, 0.2, 1080, 1920) > 128).any(axis=1))[0]
    cap_height = lit.max() - lit.min() + 1
    # libass sizes DejaVu Sans so capitals are ~0.65 × the size: ~65 px for 100, never the 6× of a 384×288 PlayRes.
    assert 55 <= cap_height <= 80
    assert 1920 - 200 - 60 <= lit.max() <= 1920 - 200  # sits on the bottom margin


def test_subtitle_style_maps_colours_and_position_to_ass() -> None:
    style = SubtitleStyle(colour="#FFCC00", outline_colour="#102030", position="top", margin=90, bold=False)
    forced = dict(item.split("=", 1) for item in subtitle_force_style(style, 1080, 1920).split(","))
    assert forced["PlayResX"] == "1080" and forced["PlayResY"] == "1920"
    assert forced["PrimaryColour"] == "&H0000CCFF"  # &HAABBGGRR
    assert forced["OutlineColour"] == "&H00302010"
    assert (forced["Alignment"], forced["MarginV"], forced["Bold"]) == ("8", "90", "0")


# ------------------------------------------------------------------------------------------ audio


@pytest.mark.parametrize("target", [LoudnessTarget(), LoudnessTarget(integrated_lufs=-20, true_peak_dbtp=-2)],
                         ids=["-14LUFS", "-20LUFS"])
def test_output_loudness_is_within_1_lu_of_the_target_and_under_the_peak_ceiling(
    tmp_path: Path, target: LoudnessTarget
) -> None:
    voice = tmp_path / "voice.wav"
    subprocess.run(["espeak-ng", "-w", str(voice), "Welcome back. Today we try three looks for the weekend, "
                    "from a cafe morning to a night out."], check=True, timeout=60)
    music = tmp_path / "music.wav"
    ffmpeg_run("-f", "lavfi", "-i", "anoisesrc=d=3:c=pink:a=0.3:seed=7", "-ar", "48000", str(music))
    result = render_video(request(tmp_path, make_images(tmp_path, 3), durations=[2.0] * 3, aspect="1:1",
                                  voice=voice, music=music, loudness=target))

    integrated, peak = ebur128(result.output)
    assert abs(integrated - target.integrated_lufs) <= 1.0
    assert peak <= target.true_peak_dbtp
    # The result reports the same measurement.
    assert result.integrated_lufs == pytest.approx(integrated, abs=0.2)
    assert result.true_peak_dbtp == pytest.approx(peak, abs=0.2)


@pytest.mark.parametrize("duck", [True, False], ids=["ducked", "not-ducked"])
def test_music_is_ducked_while_the_voice_speaks(tmp_path: Path, duck: bool) -> None:
    # Voice: a 1 kHz tone from 1.8 to 3.6 s; music: a steady 110 Hz tone. Bands keep them apart in the mix.
    voice = make_tone(tmp_path / "voice.wav", seconds=5.0, frequency=1000, start=1.8, length=1.8)
    music = make_tone(tmp_path / "music.wav", seconds=2.0, frequency=110)  # looped to the video length
    result = render_video(request(tmp_path, make_images(tmp_path, 2), durations=[2.5, 2.5], aspect="1:1",
                                  voice=voice, music=music, music_gain_db=-6, duck_music=duck))

    music_alone = rms_db(result.output, 0.7, 1.5, band="low")
    music_under_voice = rms_db(result.output, 2.3, 3.3, band="low")
    assert rms_db(result.output, 2.3, 3.3, band="high") > rms_db(result.output, 0.7, 1.5, band="high") + 20
    if duck:
        assert music_under_voice < music_alone - 6
    else:
        assert abs(music_under_voice - music_alone) < 1.5


# ------------------------------------------------------------------------------------------ failures


def test_a_corrupt_image_is_named_in_a_media_error_before_ffmpeg_runs(tmp_path: Path) -> None:
    images = make_images(tmp_path, 2)
    broken = tmp_path / "broken-photo.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(200))
    truncated = tmp_path / "cut-short.jpg"
    whole = tmp_path / "whole.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (600, 400, 3), dtype=np.uint8)).save(whole)
    truncated.write_bytes(whole.read_bytes()[:5000])

    for bad in (broken, truncated):
        with pytest.raises(MediaError, match=re.escape(bad.name)) as caught:
            render_video(request(tmp_path, [images[0], bad, images[1]]))
        assert "image 2" in str(caught.value)
        assert not (tmp_path / "out" / "video.mp4").exists()
        assert list((tmp_path / "work").iterdir()) == []


def test_rotated_transparent_and_odd_format_images_are_prepared_for_ffmpeg(tmp_path: Path) -> None:
    rotated = tmp_path / "phone%d.jpg"  # a printf pattern in the name: ffmpeg's image2 would misread it
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.new("RGB", (400, 300), (200, 10, 10)).save(rotated, exif=exif)
    clear = tmp_path / "clear.png"
    Image.new("RGBA", (100, 100), (255, 255, 255, 0)).save(clear)
    webp = tmp_path / "picture.webp"
    Image.new("RGB", (120, 80), (0, 90, 200)).save(webp)
    plain = make_image(tmp_path / "plain.png", 100, 100)
    work = tmp_path / "work"
    work.mkdir()

    prepared = prepare_images([rotated, clear, webp, plain], work)

    assert [p.name for p in prepared] == ["image-000.png", "image-001.png", "image-002.png", "image-003.png"]
    with Image.open(prepared[0]) as image:
        assert image.size == (300, 400)  # turned upright
    with Image.open(prepared[1]) as image:
        assert image.mode == "RGB" and image.getpixel((50, 50)) == (0, 0, 0)  # transparency → black
    assert prepared[3].is_symlink()  # a plain PNG is used as it is


def test_a_missing_voice_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"voice file nowhere\.wav"):
        render_video(request(tmp_path, make_images(tmp_path, 1), voice=tmp_path / "nowhere.wav"))


def _render_in_thread(req: RenderRequest) -> tuple[threading.Thread, dict[str, object]]:
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["result"] = render_video(req)
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread)
            outcome["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    return thread, outcome


def _wait_for_encoder(timeout: float = 30.0) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for child in ffmpeg_children():
            try:
                if "libx264" in child.cmdline():
                    return child
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise AssertionError("the render's ffmpeg never started")


def test_a_killed_ffmpeg_raises_a_media_error_naming_the_signal_and_cleans_up(tmp_path: Path) -> None:
    req = request(tmp_path, make_images(tmp_path, 3), durations=[8.0] * 3, preset="veryfast")
    thread, outcome = _render_in_thread(req)
    encoder = _wait_for_encoder()
    time.sleep(0.3)
    os.kill(encoder.pid, signal.SIGKILL)
    thread.join(timeout=60)

    error = outcome.get("error")
    assert isinstance(error, MediaError), outcome
    assert "ffmpeg was killed by signal 9 (SIGKILL)" in str(error)
    assert "rendering the video" in str(error)
    assert list((tmp_path / "work").iterdir()) == []  # the temporary folder is gone
    assert not req.output.exists()


def test_a_render_over_its_time_limit_is_killed_with_a_media_error(tmp_path: Path) -> None:
    req = request(tmp_path, make_images(tmp_path, 2), durations=[10.0, 10.0], preset="veryfast", timeout_s=1.5)
    started = time.monotonic()
    with pytest.raises(MediaError, match="timed out"):
        render_video(req)
    assert time.monotonic() - started < 10
    assert ffmpeg_children() == []
    assert list((tmp_path / "work").iterdir()) == []


def test_an_exception_from_on_progress_stops_ffmpeg_and_propagates(tmp_path: Path) -> None:
    req = request(tmp_path, make_images(tmp_path, 2), durations=[6.0, 6.0])

    def cancel_midway(fraction: float) -> None:
        if fraction > 0.2:
            raise JobCancelled("cancelled by the user")

    with pytest.raises(JobCancelled):
        render_video(req, cancel_midway)
    assert ffmpeg_children() == []
    assert list((tmp_path / "work").iterdir()) == []


def test_progress_rises_to_one(tmp_path: Path) -> None:
    seen: list[float] = []
    render_video(request(tmp_path, make_images(tmp_path, 3), durations=[1.0] * 3, aspect="1:1"), seen.append)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 3


def test_progress_lines_are_read_in_seconds() -> None:
    assert parse_progress_seconds("out_time_us", "1500000") == 1.5
    assert parse_progress_seconds("out_time", "00:01:02.500000") == 62.5
    assert parse_progress_seconds("out_time_us", "N/A") is None
    assert parse_progress_seconds("frame", "12") is None


def test_requests_are_validated() -> None:
    images = [Path("a.png"), Path("b.png")]
    with pytest.raises(ValidationError, match="1 durations for 2 images"):
        RenderRequest(images=images, durations=[1.0], output=Path("o.mp4"))
    # A crossfade never outlasts the shortest image.
    clamped = RenderRequest(images=images, durations=[1.0, 0.4], output=Path("o.mp4"), transition_seconds=2)
    assert clamped.fade_seconds == 0.4
    with pytest.raises(ValidationError, match="preset"):
        RenderRequest(images=images, durations=[1.0, 1.0], output=Path("o.mp4"), preset="warp")


# ------------------------------------------------------------------------------------------ platform specs


def facts(**overrides: object) -> MediaFacts:
    values: dict[str, object] = {
        "width": 1080, "height": 1920, "fps": 30.0, "duration": 30.0, "video_codec": "h264", "audio_codec": "aac",
        "sample_rate": 48000, "channels": 2, "pix_fmt": "yuv420p", "size_bytes": 20 * 1024 * 1024, "faststart": True,
    }
    values.update(overrides)
    return MediaFacts(**values)


def test_a_30_s_9x16_render_suits_every_platform() -> None:
    report = check_video(facts())
    assert report.ok and report.failures == [] and report.warnings == []
    assert report.accepted_by() == list(VIDEO_SPECS)


def test_16x9_is_not_a_shorts_or_facebook_reels_aspect() -> None:
    report = check_video(facts(width=1920, height=1080))
    assert report["youtube_shorts"].failures == [
        "YouTube Shorts: 16:9 is not a Shorts aspect (needs square or taller: 9:16 or 1:1)"]
    assert report["facebook_reels"].failures == ["Facebook Reels: 16:9 is not a Reels aspect (needs 9:16)"]
    assert report["instagram_reels"].ok and report["tiktok"].ok
    assert "Instagram Reels: 16:9 is accepted, but 9:16 fills the screen" in report.warnings


def test_square_suits_shorts_but_not_facebook_reels() -> None:
    report = check_video(facts(width=1080, height=1080), ["youtube_shorts", "facebook_reels"])
    assert report["youtube_shorts"].ok
    assert not report["facebook_reels"].ok


def test_duration_limits_per_platform() -> None:
    short = check_video(facts(duration=2.0))
    assert "Instagram Reels: 2.0 s is too short (at least 3 s)" in short.failures
    assert short["youtube_shorts"].ok
    long = check_video(facts(duration=200.0))
    assert long.failures == [
        "Facebook Reels: 200.0 s is too long (at most 90 s)",
        "YouTube Shorts: 200.0 s is too long (at most 3 minutes)",
    ]
    assert any(w.startswith("Instagram Reels: 200 s is longer than 90 s") for w in long.warnings)
    assert any(w.startswith("TikTok: 200 s is longer than 3 minutes") for w in long.warnings)
    assert "TikTok: 700.0 s is too long (at most 10 minutes)" in check_video(facts(duration=700.0)).failures


def test_codecs_frame_rate_size_and_faststart_rules() -> None:
    report = check_video(facts(video_codec="mpeg4", fps=75.0, size_bytes=400 * 1024 * 1024, faststart=False,
                               pix_fmt="yuv444p", sample_rate=96000))
    instagram = report["instagram_reels"].failures
    assert "Instagram Reels: video codec mpeg4 is not accepted (use h264/hevc)" in instagram
    assert "Instagram Reels: 75 fps is too high (at most 60 fps)" in instagram
    assert "Instagram Reels: 400 MB is over the 300 MB limit" in instagram
    assert "Instagram Reels: pixel format yuv444p is not 4:2:0 (use yuv420p)" in instagram
    assert "Instagram Reels: 96000 Hz audio is above 48000 Hz" in instagram
    assert any("moov" in line for line in instagram)  # required there…
    assert any("moov" in line for line in report["youtube_shorts"].warnings)  # …only recommended here
    assert "TikTok: 640×360 is too small" not in " ".join(check_video(facts(width=720, height=1280)).failures)
    tiny = check_video(facts(width=270, height=480), ["tiktok", "facebook_reels"])
    assert "TikTok: 270×480 is too small (at least 360 px wide)" in tiny.failures
    assert "Facebook Reels: 270×480 is too small (at least 540 px wide)" in tiny.failures


def test_check_video_takes_a_dict_and_rejects_unknown_platforms() -> None:
    assert check_video({"width": 1080, "height": 1920, "fps": 30, "duration": 20, "video_codec": "h264",
                        "audio_codec": "aac", "extra": "ignored"}, ["tiktok"]).ok
    with pytest.raises(ValueError, match="unknown platform"):
        check_video(facts(), ["myspace"])


def test_aspect_names() -> None:
    assert (aspect_name(1080, 1920), aspect_name(1080, 1080), aspect_name(1920, 1080)) == ("9:16", "1:1", "16:9")
    assert aspect_name(1000, 1100) == "1000×1100"


def test_a_rendered_file_checks_against_the_platforms_through_probe(tmp_path: Path) -> None:
    result = render_video(request(tmp_path, make_images(tmp_path, 3), durations=[1.2] * 3))
    report = check_video(result.probe)
    assert report["youtube_shorts"].ok and report["tiktok"].ok  # no minimum / 3 s minimum met
    assert report["facebook_reels"].ok  # 3.6 s, 9:16, 30 fps, h264/aac
