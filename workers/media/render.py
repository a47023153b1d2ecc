"""The short-video renderer: ordered images and clips + optional voice, music and subtitles → an H.264/AAC MP4.

    result = render_video(RenderRequest(images=[...], durations=[3, 3, 3], output=Path("out.mp4")), on_progress)

Steps, all in a temporary folder that is removed whatever happens:

1. Check every input early: images decoded with PIL (a corrupt file is named), voice and music probed.
2. Audio (when there is a voice or music): mix to one WAV — voice padded/trimmed to the video length, music
   looped and trimmed, faded, set to ``music_gain_db`` and ducked under the voice by a sidechain compressor.
   Measure it (loudnorm pass 1); when a plain gain would break the true-peak ceiling, apply the gain through
   a peak limiter first (see loudness.py) so pass 2 stays linear and lands on the target.
3. Video, one ffmpeg run: each image scaled once (crop to fill, or fitted over a blurred, darkened copy of
   itself), animated with ``zoompan`` from that one frame (Ken Burns, direction varied by image index) or
   held still; a clip (an MP4 among the images, e.g. a motion job's) plays scaled the same way, looped
   when its slot is longer and cut when shorter; all joined by ``xfade`` crossfades or cuts, subtitles
   burnt in with libass in output pixels (each caption in the font for its script; a caption with a
   character no installed font has is refused before rendering, see fonts.py), loudnorm pass 2 on the
   audio (or a silent track), x264 + AAC, ``+faststart``.
4. Measure the loudness of the finished file and probe it; move it to ``output``.

Timing: image ``i`` owns the slot ``[S_i, S_i + durations[i])`` where ``S_i`` is the sum of the durations
before it, rounded to whole frames. A crossfade is centred on the boundary between two slots, so the video
lasts exactly ``sum(durations)`` and a voice timed to the slots stays in sync with the pictures.
"""

from __future__ import annotations

import itertools
import logging
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import ffmpeg
from PIL import Image, ImageOps, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.errors import InvalidInput
from core.video.options import ASPECTS, Aspect, Cue, Fit, LoudnessTarget, Motion, SubtitleStyle, Transition
from core.video.platform_specs import SafeZone, caption_safe_zone
from core.video.subtitles import parse_srt, to_srt
from workers.media.ass import style_fields, to_ass
from workers.media.clips import is_clip
from workers.media.ffmpeg import MediaError, ProgressCallback, VideoProbe, probe, require_binaries, run_ffmpeg
from workers.media.fonts import caption_font, check_caption_text
from workers.media.loudness import (
    Loudness,
    LoudnessMode,
    linear_possible,
    loudnorm_options,
    measure_loudness,
    prepare_for_linear,
)

_logger = logging.getLogger("studio.media")

X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
KEN_BURNS_OVERSAMPLE = 2  # zoompan crops whole pixels: working at 2× keeps slow zooms and pans smooth
SAMPLE_RATE = 48_000
_END_AUDIO = {"sample_rates": SAMPLE_RATE, "channel_layouts": "stereo"}  # every audio chain ends here
_MUSIC_FADE_S = 1.0

# Ken Burns moves, picked by image index so a render is reproducible and neighbours move differently:
# (zoom from, zoom to, focus x from, to, focus y from, to); focus 0 = left/top edge, 1 = right/bottom edge.
KEN_BURNS_MOVES: tuple[tuple[float, float, float, float, float, float], ...] = (
    (0.0, 1.0, 0.5, 0.5, 0.5, 0.5),  # zoom in to the centre
    (1.0, 1.0, 0.0, 1.0, 0.4, 0.4),  # pan left → right
    (1.0, 0.0, 0.5, 0.5, 0.3, 0.3),  # zoom out from the upper third (faces)
    (1.0, 1.0, 0.5, 0.5, 1.0, 0.0),  # pan bottom → top
    (0.0, 1.0, 0.3, 0.3, 0.3, 0.3),  # zoom in towards the upper left
    (1.0, 1.0, 1.0, 0.0, 0.6, 0.6),  # pan right → left
    (1.0, 0.0, 0.5, 0.5, 0.5, 0.5),  # zoom out from the centre
    (1.0, 1.0, 0.5, 0.5, 0.0, 1.0),  # pan top → bottom
)


class RenderRequest(BaseModel):
    """Everything a render needs; paths are local files. Durations are the caller's choice (seconds per
    image, a total split evenly, or the voice's length): the video lasts their sum."""

    model_config = ConfigDict(extra="forbid")

    images: list[Path] = Field(min_length=1, max_length=500)
    durations: list[float] = Field(min_length=1)
    output: Path
    aspect: Aspect = "9:16"
    fit: Fit = "crop"
    fps: int = Field(default=30, ge=10, le=60)
    motion: Motion = "ken_burns"
    transition: Transition = "crossfade"
    transition_seconds: float = Field(default=0.5, gt=0, le=5)
    voice: Path | None = None
    music: Path | None = None
    music_gain_db: float = Field(default=-12.0, ge=-60, le=12, description="music level before ducking")
    duck_music: bool = True
    subtitles: Path | list[Cue] | None = Field(default=None, description="an .srt file or cues")
    subtitle_style: SubtitleStyle = Field(default_factory=SubtitleStyle)
    loudness: LoudnessTarget = Field(default_factory=LoudnessTarget)
    preset: str = "veryfast"
    crf: int = Field(default=20, ge=0, le=51)
    audio_bitrate_kbps: int = Field(default=192, ge=64, le=512)
    timeout_s: float | None = Field(default=None, gt=0, description="for the whole render; default grows with length")
    work_dir: Path | None = Field(default=None, description="where the temporary folder goes (default: system temp)")
    safe_area_platforms: list[str] = Field(default_factory=list, description="keep captions out of their UI zones")

    @model_validator(mode="after")
    def _consistent(self) -> RenderRequest:
        if len(self.durations) != len(self.images):
            raise ValueError(f"{len(self.durations)} durations for {len(self.images)} images")
        shortest = min(self.durations)
        if shortest * self.fps < 2:
            raise ValueError(f"every image needs at least 2 frames ({2 / self.fps:.3f} s at {self.fps} fps)")
        if self.preset not in X264_PRESETS:
            raise ValueError(f"preset must be one of {', '.join(X264_PRESETS)}")
        return self

    @property
    def size(self) -> tuple[int, int]:
        return ASPECTS[self.aspect]

    @property
    def safe_zone(self) -> SafeZone:
        return caption_safe_zone(self.safe_area_platforms, *self.size)

    @property
    def fade_seconds(self) -> float:
        """The crossfade actually used: ``transition_seconds``, but never longer than the shortest image."""
        return min(self.transition_seconds, min(self.durations))

    @property
    def duration(self) -> float:
        return self.frame_boundaries()[-1] / self.fps

    def frame_boundaries(self) -> list[int]:
        """Frame index where each image's slot starts, plus the total frame count at the end."""
        bounds, elapsed = [0], 0.0
        for seconds in self.durations:
            elapsed += seconds
            bounds.append(round(elapsed * self.fps))
        return bounds


@dataclass(frozen=True)
class RenderResult:
    output: Path
    duration: float
    width: int
    height: int
    fps: float
    size_bytes: int
    integrated_lufs: float | None  # measured on the finished file; None for a silent video
    true_peak_dbtp: float | None
    lra: float | None
    loudness_mode: LoudnessMode
    elapsed_s: float
    probe: VideoProbe

    @property
    def speed(self) -> float:
        """Seconds of video per second of rendering."""
        return self.duration / self.elapsed_s if self.elapsed_s else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["output"] = str(self.output)
        data["probe"] = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self.probe).items()}
        return data


def default_timeout(duration: float) -> float:
    """Seconds allowed for a whole render of ``duration`` seconds (generous: slow presets on 2 busy cores)."""
    return 60.0 + 20.0 * duration


class _Progress:
    """Maps each step's own 0–1 progress into its share of the whole render."""

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.done = 0.0
        self.reported = -1.0

    def step(self, share: float) -> ProgressCallback:
        start = self.done
        self.done = min(1.0, start + share)

        def report(fraction: float) -> None:
            self.emit(start + share * fraction)

        return report

    def emit(self, value: float) -> None:
        value = min(max(value, 0.0), 1.0)
        if self.callback is not None and value > self.reported:
            self.reported = value
            self.callback(value)


def render_video(request: RenderRequest, on_progress: ProgressCallback | None = None) -> RenderResult:
    """Render ``request`` to ``request.output`` (written only when everything succeeded)."""
    require_binaries()
    started = time.monotonic()
    duration = request.duration
    deadline = started + (request.timeout_s or default_timeout(duration))

    def remaining() -> float:
        return deadline - time.monotonic()

    progress = _Progress(on_progress)
    if request.work_dir is not None:
        request.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="studio-render-", dir=request.work_dir) as tmp_name:
        tmp = Path(tmp_name)
        images = prepare_images(request.images, tmp)
        for label, path in (("voice", request.voice), ("music", request.music)):
            if path is not None:
                length = check_audio_file(path, label=label, timeout=min(30.0, remaining()))
                if label == "voice" and length > duration + 0.5:
                    _logger.warning("the voice (%.1f s) is longer than the video (%.1f s): its end is cut",
                                    length, duration)
        subtitles = _subtitle_file(request, tmp)
        progress.emit(0.01)

        audio: Path | None = None
        audio_filter: dict[str, Any] | None = None
        mode: LoudnessMode = "silent"
        if request.voice is not None or request.music is not None:
            audio = mix_audio(request, tmp / "mix.wav", duration=duration, timeout=remaining(),
                              on_progress=progress.step(0.03))
            measured = measure_loudness(audio, duration=duration, timeout=remaining(), on_progress=progress.step(0.02))
            if not measured.silent:
                if not linear_possible(request.loudness, measured):
                    audio, measured = prepare_for_linear(audio, measured, request.loudness, work_dir=tmp,
                                                         duration=duration, timeout=remaining)
                mode = "linear" if linear_possible(request.loudness, measured) else "dynamic"
                audio_filter = loudnorm_options(request.loudness, measured)
        else:
            progress.step(0.05)

        rendered = tmp / "render.mp4"
        args = build_render_args(request, images, audio=audio, loudnorm=audio_filter, subtitles=subtitles,
                                 output=rendered)
        run_ffmpeg(args, what="rendering the video", expected_duration=duration, timeout=remaining(),
                   on_progress=progress.step(0.90))

        final: Loudness | None = None
        if mode != "silent":
            final = measure_loudness(rendered, duration=duration, timeout=remaining(), on_progress=progress.step(0.03))
        info = probe(rendered, timeout=max(1.0, min(30.0, remaining())))
        request.output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(rendered), str(request.output))
    progress.emit(1.0)
    info = VideoProbe(**{**asdict(info), "path": request.output})
    elapsed = time.monotonic() - started
    _logger.info("rendered %s: %.1f s of video in %.1f s (%s loudness)", request.output.name, duration, elapsed, mode)
    return RenderResult(
        output=request.output, duration=info.duration, width=info.width, height=info.height, fps=info.fps,
        size_bytes=info.size_bytes or 0,
        integrated_lufs=final.integrated_lufs if final else None,
        true_peak_dbtp=final.true_peak_dbtp if final else None,
        lra=final.lra if final else None,
        loudness_mode=mode, elapsed_s=elapsed, probe=info,
    )


# ------------------------------------------------------------------------------------------ inputs


def prepare_images(paths: list[Path], tmp: Path) -> list[Path]:
    """Decode every image with PIL (a corrupt or missing file is named in a MediaError) and give ffmpeg a
    safe name for each (no ``%`` patterns, no odd characters): a link to a plain JPEG/PNG, else a PNG copy —
    rotated as its EXIF says (ffmpeg 5.1 ignores EXIF orientation), transparency flattened onto black."""

    prepared = []
    for index, path in enumerate(paths):
        path = Path(path)
        if is_clip(path):
            prepared.append(_prepare_clip(path, index, tmp))
            continue
        try:
            with Image.open(path) as image:
                image.load()
                kind = image.format
                orientation = image.getexif().get(0x0112, 1)
                transparent = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
                if kind in ("JPEG", "PNG") and orientation == 1 and not transparent and image.mode in ("RGB", "L", "P"):
                    target = tmp / f"image-{index:03d}.{'jpg' if kind == 'JPEG' else 'png'}"
                    _link_or_copy(path, target)
                else:  # rotate as EXIF says, flatten transparency onto black, 8-bit RGB
                    target = tmp / f"image-{index:03d}.png"
                    converted = ImageOps.exif_transpose(image).convert("RGBA")
                    flat = Image.new("RGB", converted.size)
                    flat.paste(converted, mask=converted.getchannel("A"))
                    flat.save(target, compress_level=1)
        except FileNotFoundError as exc:
            raise MediaError(f"image {index + 1} ({path.name}) does not exist") from exc
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise MediaError(f"image {index + 1} ({path.name}) is not a readable image: {exc}") from exc
        prepared.append(target)
    return prepared


def _prepare_clip(path: Path, index: int, tmp: Path) -> Path:
    """A clip in the timeline: probed (a file with no picture is named), linked under a safe name."""
    try:
        info = probe(path)
    except MediaError as exc:
        raise MediaError(f"clip {index + 1} ({path.name}) is not a readable video: {exc}") from exc
    if info.video_codec is None or info.width <= 0:
        raise MediaError(f"clip {index + 1} ({path.name}) has no video stream")
    target = tmp / f"clip-{index:03d}{path.suffix.lower()}"
    _link_or_copy(path, target)
    return target


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.symlink(source.resolve(), target)
    except OSError:
        shutil.copyfile(source, target)


def check_audio_file(path: Path, *, label: str, timeout: float) -> float:
    """The duration of an audio file's first audio stream; MediaError naming the file if it has none."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"the {label} file {path.name} does not exist")
    try:
        info = probe(path, timeout=max(1.0, timeout))
    except MediaError as exc:
        raise MediaError(f"the {label} file {path.name} is not readable audio: {exc}") from exc
    if info.audio_codec is None:
        raise MediaError(f"the {label} file {path.name} has no audio stream")
    return info.duration


def _subtitle_file(request: RenderRequest, tmp: Path) -> Path | None:
    """The SRT libass burns in: the request's cues, refused when a character has no installed font, each
    cue wrapped in the font that draws its script (``<font face>``, which ffmpeg's SRT reader passes to
    libass); the text itself is exactly the cues'."""
    if request.subtitles is None or not request.subtitle_style.enabled:
        return None
    if isinstance(request.subtitles, list):
        cues = request.subtitles
    else:
        source = Path(request.subtitles)
        if not source.is_file():
            raise MediaError(f"the subtitle file {source.name} does not exist")
        try:
            cues = parse_srt(source.read_text("utf-8-sig"))
        except (InvalidInput, UnicodeDecodeError) as exc:
            raise MediaError(f"the subtitle file {source.name} is not a UTF-8 SRT file: {exc}") from exc
    cues = [cue for cue in cues if cue.text.strip()]  # an empty cue shows nothing, and SRT cannot hold one
    if not cues:
        return None
    check_caption_text(cue.text for cue in cues)
    style = request.subtitle_style
    if style.mode != "lines" and any(cue.words for cue in cues):  # word by word: only ASS can style a word
        target = tmp / "subtitles.ass"
        target.write_text(to_ass(cues, style, *request.size, request.safe_zone), "utf-8")
        return target
    target = tmp / "subtitles.srt"
    target.write_text(to_srt([_in_its_font(cue, request.subtitle_style.font) for cue in cues]), "utf-8")
    return target


def _in_its_font(cue: Cue, preferred: str) -> Cue:
    """The cue with each line wrapped in ``<font face>`` when a font other than the style's draws it."""
    lines = []
    for line in cue.text.splitlines():
        font = caption_font(line, preferred)
        face = font.replace('"', "")
        lines.append(line if font == preferred else f'<font face="{face}">{line}</font>')
    return Cue(start=cue.start, end=cue.end, text="\n".join(lines))


def subtitle_force_style(style: SubtitleStyle, width: int, height: int, zone: SafeZone | None = None) -> str:
    """libass style overrides with PlayRes set to the output size, so sizes and margins are output pixels;
    the margins keep the captions out of ``zone`` (the platforms' UI)."""
    fields = style_fields(style, width, height, zone or SafeZone(0, 0, 0, 0))
    return ",".join(f"{key}={value}" for key, value in fields.items())


# ------------------------------------------------------------------------------------------ audio


def mix_audio(
    request: RenderRequest, output: Path, *, duration: float, timeout: float, on_progress: ProgressCallback | None
) -> Path:
    """Voice and/or music → one float WAV of exactly ``duration`` seconds, 48 kHz stereo."""
    mixed = audio_mix_graph(request, duration)
    args = mixed.output(str(output), acodec="pcm_f32le").compile(cmd="ffmpeg")[1:]
    run_ffmpeg(args, what="mixing the audio", expected_duration=duration, timeout=timeout, on_progress=on_progress)
    return output


def audio_mix_graph(request: RenderRequest, duration: float) -> Any:
    """The ffmpeg-python stream of the mixed voice and music (before loudness normalisation)."""
    voice = music = None
    if request.voice is not None:
        voice = (
            ffmpeg.input(str(request.voice)).audio
            .filter("aformat", sample_fmts="fltp", **_END_AUDIO)
            .filter("apad", whole_dur=f"{duration:.6f}")
            .filter("atrim", duration=f"{duration:.6f}")
        )
    if request.music is not None:
        fade = min(_MUSIC_FADE_S, duration / 4)
        music = (
            ffmpeg.input(str(request.music), stream_loop=-1).audio
            .filter("aformat", sample_fmts="fltp", **_END_AUDIO)
            .filter("atrim", duration=f"{duration:.6f}")
            .filter("asetpts", "N/SR/TB")
            .filter("volume", f"{request.music_gain_db:.2f}dB")
            .filter("afade", t="in", d=f"{fade / 2:.3f}")
            .filter("afade", t="out", st=f"{duration - fade:.3f}", d=f"{fade:.3f}")
        )
    if voice is not None and music is not None:
        if request.duck_music:
            split = voice.asplit()
            voice, sidechain = split[0], split[1]
            # Music drops ~12–15 dB while speech is above −36 dBFS; a 400 ms release avoids pumping between words.
            music = ffmpeg.filter([music, sidechain], "sidechaincompress", threshold=0.015, ratio=8, attack=20,
                                  release=400, detection="rms")
        mixed = ffmpeg.filter([voice, music], "amix", inputs=2, duration="first", normalize=0)
    else:
        mixed = voice if voice is not None else music
    return mixed.filter("aformat", sample_fmts="fltp", **_END_AUDIO)


# ------------------------------------------------------------------------------------------ video


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)


def ken_burns_zoom(seconds: float) -> float:
    """How far a clip zooms or how wide it pans: gentle on short clips, at most 20 %."""
    return min(0.20, 0.06 + 0.03 * seconds)


def ken_burns_filter(index: int, frames: int, fps: int, width: int, height: int) -> dict[str, Any]:
    """zoompan options for image ``index``: one input frame → ``frames`` output frames."""
    z0, z1, fx0, fx1, fy0, fy1 = KEN_BURNS_MOVES[index % len(KEN_BURNS_MOVES)]
    amount = ken_burns_zoom(frames / fps)
    zoom_from, zoom_to = 1 + amount * z0, 1 + amount * z1
    p = f"(on/{max(frames - 1, 1)})"
    return {
        "z": f"{zoom_from:.5f}+{zoom_to - zoom_from:.5f}*{p}",
        "x": f"({fx0:.3f}+{fx1 - fx0:.3f}*{p})*(iw-iw/zoom)",
        "y": f"({fy0:.3f}+{fy1 - fy0:.3f}*{p})*(ih-ih/zoom)",
        "d": frames, "s": f"{width}x{height}", "fps": fps,
    }


def _framed(stream: Any, request: RenderRequest, scale: int) -> Any:
    """One image filling ``scale`` × the output size (crop, or fitted over its blurred copy), yuv420p bt709."""
    width, height = request.size
    w, h = _even(width * scale), _even(height * scale)
    colour = {"out_color_matrix": "bt709", "out_range": "tv"}
    if request.fit == "crop":
        return (
            stream.filter("scale", w, h, force_original_aspect_ratio="increase", flags="bicubic", **colour)
            .filter("crop", w, h)
            .filter("format", "yuv420p")
        )
    split = stream.split()
    background, foreground = split[0], split[1]
    bw, bh = _even(width / 8), _even(height / 8)  # blur a small copy: cheap, and smooth once scaled up
    background = (
        background.filter("scale", bw, bh, force_original_aspect_ratio="increase", **colour)
        .filter("crop", bw, bh)
        .filter("format", "yuv420p")
        .filter("boxblur", luma_radius=max(2, min(bw, bh) // 12), luma_power=2)
        .filter("eq", brightness=-0.12, saturation=0.85)
        .filter("scale", w, h, flags="bilinear")
    )
    foreground = (
        foreground.filter("scale", w, h, force_original_aspect_ratio="decrease", flags="bicubic", **colour)
        .filter("format", "yuv420p")
    )
    return ffmpeg.overlay(background, foreground, x="(W-w)/2", y="(H-h)/2").filter("format", "yuv420p")


def _clip(image: Path, index: int, frames: int, request: RenderRequest) -> Any:
    width, height = request.size
    if is_clip(image):
        return _moving_clip(image, frames, request)
    stream = ffmpeg.input(str(image)).video
    if request.motion == "ken_burns":
        framed = _framed(stream, request, KEN_BURNS_OVERSAMPLE)
        clip = framed.filter("zoompan", **ken_burns_filter(index, frames, request.fps, width, height))
    else:
        framed = _framed(stream, request, 1)
        clip = (
            framed.filter("loop", loop=frames - 1, size=1, start=0)
            .filter("settb", f"1/{request.fps}")
            .filter("setpts", "N")
            .filter("fps", request.fps)
        )
    return clip.filter("setsar", 1)


def _moving_clip(path: Path, frames: int, request: RenderRequest) -> Any:
    """A clip filling exactly ``frames`` output frames: resampled to the output rate, framed like a still
    (no Ken Burns: it moves already), looped from its start when shorter, cut when longer."""
    # To RGB first (the decoder honours the clip's own colour tags), then framed exactly as a still is:
    # scaling its YUV straight to bt709 shifted colours (red 230 → 208) in ffmpeg 5.1.
    stream = ffmpeg.input(str(path), stream_loop=-1).video.filter("fps", request.fps).filter("format", "rgb24")
    return (
        _framed(stream, request, 1)
        .filter("trim", end_frame=frames)
        .filter("settb", f"1/{request.fps}")
        .filter("setpts", "N")
        .filter("setsar", 1)
    )


def _segment(stream: Any, first: int, end: int) -> Any:
    return stream.trim(start_frame=first, end_frame=end).setpts("PTS-STARTPTS")


def _crossfaded(clips: list[tuple[Any, int]], fade_frames: int, fps: int) -> Any:
    """Clips joined by crossfades of ``fade_frames``: each clip's last ``fade_frames`` frames blend into the next
    clip's first ones. Only those short pieces go through ``xfade``; the rest is joined with ``concat``.
    ffmpeg 5.1's xfade has no 4:2:0 formats, so in a plain xfade chain every frame of the video is converted
    to 4:4:4 and back (~4 ms a frame at 1080×1920, and chroma softened twice); here only the fades are."""
    pieces: list[Any] = []
    for index, (clip, frames) in enumerate(clips):
        head = fade_frames if index > 0 else 0
        tail = fade_frames if index < len(clips) - 1 else 0
        wanted = [(head, frames - tail)] if frames - tail > head else []
        if head:
            wanted.insert(0, (0, head))
        if tail:
            wanted.append((frames - tail, frames))
        split = clip.split() if len(wanted) > 1 else None
        parts = [_segment(split[i] if split is not None else clip, a, b) for i, (a, b) in enumerate(wanted)]
        body = parts[1 if head else 0] if frames - tail > head else None
        if head:  # blend the previous clip's tail into this clip's head
            blend = ffmpeg.filter([pieces.pop(), parts[0]], "xfade", transition="fade",
                                  duration=f"{fade_frames / fps:.6f}", offset=0)
            pieces.append(blend.filter("format", "yuv420p"))  # xfade works in 4:4:4; back before concat
        if body is not None:
            pieces.append(body)
        if tail:
            pieces.append(parts[-1])  # completed by the next clip's head
    return ffmpeg.concat(*pieces, n=len(pieces), v=1, a=0)


def build_video_graph(request: RenderRequest, images: list[Path], subtitles: Path | None) -> Any:
    """The ffmpeg-python stream of the finished picture."""
    bounds = request.frame_boundaries()
    count = len(images)
    crossfade = request.transition == "crossfade" and count > 1
    shortest_slot = min(b - a for a, b in itertools.pairwise(bounds))
    fade_frames = min(max(1, round(request.fade_seconds * request.fps)), shortest_slot) if crossfade else 0
    before, after = fade_frames // 2, fade_frames - fade_frames // 2  # a fade straddles each boundary
    clips = []
    for index, image in enumerate(images):
        start = bounds[index] - (before if crossfade and index > 0 else 0)
        end = bounds[index + 1] + (after if crossfade and index < count - 1 else 0)
        clips.append((_clip(image, index, end - start, request), end - start))
    if count == 1:
        video = clips[0][0]
    elif crossfade:
        video = _crossfaded(clips, fade_frames, request.fps)
    else:
        video = ffmpeg.concat(*(clip for clip, _frames in clips), n=count, v=1, a=0)
    video = video.filter("format", "yuv420p")
    if subtitles is not None:
        width, height = request.size
        if subtitles.suffix == ".ass":  # the document carries its own style
            video = video.filter("subtitles", filename=str(subtitles), original_size=f"{width}x{height}")
        else:
            video = video.filter("subtitles", filename=str(subtitles), original_size=f"{width}x{height}",
                                 force_style=subtitle_force_style(request.subtitle_style, width, height,
                                                                  request.safe_zone))
    return video


def build_render_args(
    request: RenderRequest,
    images: list[Path],
    *,
    audio: Path | None,
    loudnorm: dict[str, Any] | None,
    subtitles: Path | None,
    output: Path,
) -> list[str]:
    """ffmpeg arguments (no program name) for the one video-encoding run."""
    duration = request.duration
    video = build_video_graph(request, images, subtitles)
    if audio is None:
        sound = ffmpeg.input(f"anullsrc=r={SAMPLE_RATE}:cl=stereo", f="lavfi", t=f"{duration:.6f}").audio
    else:
        sound = ffmpeg.input(str(audio)).audio
        if loudnorm is not None:
            sound = sound.filter("loudnorm", **loudnorm)
    sound = sound.filter("aformat", **_END_AUDIO)
    out = ffmpeg.output(
        video, sound, str(output),
        vcodec="libx264", preset=request.preset, crf=request.crf, pix_fmt="yuv420p", g=request.fps * 2,
        acodec="aac", ar=SAMPLE_RATE, ac=2, movflags="+faststart", t=f"{duration:.6f}",
        **{"profile:v": "high", "b:a": f"{request.audio_bitrate_kbps}k", "colorspace": "bt709",
           "color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv"},
    )
    return out.compile(cmd="ffmpeg")[1:]

