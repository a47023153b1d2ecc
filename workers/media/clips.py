"""Clips as files: frames → an H.264 MP4 (the motion job's output), and what a clip file holds."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from workers.media.ffmpeg import MediaError, ProgressCallback, VideoProbe, probe, require_binaries, run_ffmpeg

# Files the timeline takes as moving clips rather than stills.
CLIP_SUFFIXES = frozenset({".mp4", ".mov", ".m4v", ".webm", ".mkv"})


def is_clip(path: Path) -> bool:
    return Path(path).suffix.lower() in CLIP_SUFFIXES


def encode_frames(frames: np.ndarray, fps: int, output: Path, *, crf: int = 18,
                  on_progress: ProgressCallback | None = None) -> VideoProbe:
    """uint8 RGB frames (count, height, width, 3) → ``output`` (H.264 yuv420p, bt709, +faststart), one
    output frame per input frame; returns its probe."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise MediaError(f"frames must be uint8 (count, height, width, 3), not {frames.dtype} {frames.shape}")
    require_binaries()
    count, height, width = frames.shape[:3]
    if width % 2 or height % 2:
        raise MediaError(f"{width}×{height}: H.264 in 4:2:0 needs even sides")
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="studio-clip-", dir=output.parent) as tmp:
        for index, frame in enumerate(frames):  # PNG: lossless, and an input ffmpeg reads with a plain pattern
            Image.fromarray(frame).save(Path(tmp) / f"frame-{index:05d}.png", compress_level=1)
        args = ["-framerate", str(fps), "-i", str(Path(tmp) / "frame-%05d.png"), "-frames:v", str(count),
                "-c:v", "libx264", "-preset", "medium", "-crf", str(crf), "-pix_fmt", "yuv420p",
                "-vf", "scale=out_color_matrix=bt709:out_range=tv", "-colorspace", "bt709",
                "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
                "-movflags", "+faststart", "-an", str(output)]
        run_ffmpeg(args, what="encoding the clip", expected_duration=count / fps, timeout=60 + count,
                   on_progress=on_progress)
    return probe(output)
