"""Running ffmpeg and ffprobe: a deadline on every call, ``-progress`` parsed into a fraction, a clear
``MediaError`` for a failed, killed or timed-out process, and ``probe`` for what a rendered file holds.

Every call goes through :func:`run_ffmpeg` / :func:`run_ffprobe`; nothing else in the media code starts a
process. The process is always reaped: on a timeout it is killed, and if the progress callback raises
(a job being cancelled, say) the process is killed before the exception goes on.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import struct
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.errors import StudioError
from core.video.platform_specs import MediaFacts

_logger = logging.getLogger("studio.media")

ProgressCallback = Callable[[float], None]
STDERR_TAIL_LINES = 12  # how many stderr lines a MediaError quotes
_KEPT_STDERR_LINES = 400  # enough for loudnorm's JSON block at the end of a measurement


class MediaError(StudioError):
    """ffmpeg or ffprobe failed, was killed or ran out of time, or an input file is unusable.

    ``stderr_tail`` holds the last lines ffmpeg wrote (already part of the message)."""

    def __init__(self, message: str, *, stderr_tail: str = "") -> None:
        super().__init__(f"{message}\n{stderr_tail}".rstrip() if stderr_tail else message)
        self.stderr_tail = stderr_tail


def ffmpeg_binary() -> str:
    return os.environ.get("STUDIO_FFMPEG", "ffmpeg")


def ffprobe_binary() -> str:
    return os.environ.get("STUDIO_FFPROBE", "ffprobe")


def require_binaries() -> None:
    """Fail early and clearly when ffmpeg/ffprobe are not installed."""
    for name in (ffmpeg_binary(), ffprobe_binary()):
        if shutil.which(name) is None:
            raise MediaError(f"{name} is not installed (apt-get install ffmpeg)")


def parse_progress_seconds(key: str, value: str) -> float | None:
    """The output position in seconds from one ``-progress`` line, or None for other keys or ``N/A``."""
    try:
        if key == "out_time_us" or key == "out_time_ms":  # both are microseconds (a historic ffmpeg quirk)
            return int(value) / 1_000_000
        if key == "out_time":
            hours, minutes, seconds = value.split(":")
            return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return None
    return None


def _describe_exit(what: str, returncode: int) -> str:
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = "an unknown signal"
        return f"{what} was killed by signal {-returncode} ({name})"
    return f"{what} failed with exit code {returncode}"


def run_ffmpeg(
    args: Sequence[str],
    *,
    what: str,
    expected_duration: float | None,
    timeout: float,
    on_progress: ProgressCallback | None = None,
    loglevel: str = "warning",
) -> list[str]:
    """Run ``ffmpeg <args>`` (without the program name) and return its stderr lines (the last few hundred).

    ``what`` names the step in messages ("rendering the video"). ``expected_duration`` (seconds of output)
    turns ``out_time`` into ``on_progress(fraction)``; the fraction never goes backwards and ends at 1.0.
    Raises MediaError on a non-zero exit, a signal, or when ``timeout`` seconds pass (the process is killed).
    """
    command = [ffmpeg_binary(), "-hide_banner", "-nostdin", "-y", "-loglevel", loglevel,
               "-progress", "pipe:1", "-nostats", *args]
    return _run(command, what=what, expected_duration=expected_duration, timeout=timeout, on_progress=on_progress)


def run_ffprobe(args: Sequence[str], *, what: str, timeout: float = 30.0) -> dict[str, Any]:
    """Run ``ffprobe -print_format json <args>`` and return the parsed JSON."""
    command = [ffprobe_binary(), "-hide_banner", "-v", "error", "-print_format", "json", *args]
    lines = _run(command, what=what, expected_duration=None, timeout=timeout, on_progress=None, capture_stdout=True)
    try:
        return json.loads("\n".join(lines))
    except json.JSONDecodeError as exc:
        raise MediaError(f"ffprobe printed no JSON while {what}") from exc


def _run(
    command: list[str],
    *,
    what: str,
    expected_duration: float | None,
    timeout: float,
    on_progress: ProgressCallback | None,
    capture_stdout: bool = False,
) -> list[str]:
    program = Path(command[0]).name
    if timeout <= 0:
        raise MediaError(f"{program} timed out before {what} could start (no time left)")
    _logger.debug("running %s", " ".join(command))
    try:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, encoding="utf-8", errors="replace", bufsize=1,
        )
    except FileNotFoundError as exc:
        raise MediaError(f"{program} is not installed (apt-get install ffmpeg)") from exc

    stderr_lines: deque[str] = deque(maxlen=_KEPT_STDERR_LINES)
    stdout_lines: list[str] = []
    stderr_thread = threading.Thread(target=_drain, args=(process.stderr, stderr_lines), daemon=True)
    stderr_thread.start()
    timed_out = threading.Event()

    def kill_on_timeout() -> None:
        if process.poll() is None:
            timed_out.set()
            process.kill()

    timer = threading.Timer(timeout, kill_on_timeout)
    timer.daemon = True
    timer.start()
    started = time.monotonic()
    reported = 0.0
    try:
        assert process.stdout is not None
        for raw in process.stdout:
            line = raw.strip()
            if capture_stdout:
                stdout_lines.append(line)
                continue
            key, _, value = line.partition("=")
            if on_progress is None:
                continue
            if key == "progress" and value == "end":
                position = expected_duration
            else:
                position = parse_progress_seconds(key, value)
            if position is None or not expected_duration or expected_duration <= 0:
                continue
            fraction = min(max(position / expected_duration, 0.0), 1.0)
            if fraction > reported:
                reported = fraction
                on_progress(fraction)
        process.wait()
    finally:
        timer.cancel()
        if process.poll() is None:  # the progress callback raised: do not leave ffmpeg running
            process.kill()
            process.wait()
        stderr_thread.join(timeout=5)
    tail = "\n".join(list(stderr_lines)[-STDERR_TAIL_LINES:])
    if timed_out.is_set():
        raise MediaError(f"{program} timed out after {timeout:.0f} s while {what} (killed)", stderr_tail=tail)
    if process.returncode != 0:
        raise MediaError(f"{_describe_exit(program, process.returncode)} while {what}", stderr_tail=tail)
    if on_progress is not None and reported < 1.0 and expected_duration:
        on_progress(1.0)
    _logger.debug("%s: %s took %.2f s", program, what, time.monotonic() - started)
    return stdout_lines if capture_stdout else list(stderr_lines)


def _drain(stream: Any, into: deque[str]) -> None:
    for line in stream:
        into.append(line.rstrip("\n"))


# ------------------------------------------------------------------------------------------ probe


@dataclass(frozen=True)
class VideoProbe(MediaFacts):
    """What ffprobe says about a rendered file (a MediaFacts, so core.video.platform_specs.check_video takes it)."""

    path: Path = Path()
    format_name: str = ""


def _rate(text: str | None) -> float:
    if not text or text in ("0/0", "N/A"):
        return 0.0
    num, _, den = text.partition("/")
    try:
        return float(num) / float(den or 1)
    except (ValueError, ZeroDivisionError):
        return 0.0


def probe(path: Path | str, *, timeout: float = 30.0) -> VideoProbe:
    """Streams, duration, size and the moov/mdat order of a media file. Raises MediaError if unreadable."""
    path = Path(path)
    if not path.is_file():
        raise MediaError(f"{path} does not exist")
    data = run_ffprobe(["-show_format", "-show_streams", str(path)], what=f"probing {path.name}", timeout=timeout)
    streams = data.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    fmt = data.get("format", {})
    duration = float(fmt.get("duration") or (video or {}).get("duration") or 0.0)
    fps = _rate((video or {}).get("avg_frame_rate")) or _rate((video or {}).get("r_frame_rate"))
    return VideoProbe(
        width=int((video or {}).get("width") or 0),
        height=int((video or {}).get("height") or 0),
        fps=round(fps, 3),
        duration=duration,
        video_codec=(video or {}).get("codec_name"),
        audio_codec=(audio or {}).get("codec_name"),
        sample_rate=int(audio["sample_rate"]) if audio and audio.get("sample_rate") else None,
        channels=int(audio["channels"]) if audio and audio.get("channels") else None,
        pix_fmt=(video or {}).get("pix_fmt"),
        size_bytes=path.stat().st_size,
        faststart=moov_before_mdat(path),
        path=path,
        format_name=str(fmt.get("format_name", "")),
    )


def moov_before_mdat(path: Path) -> bool | None:
    """True when the MP4's ``moov`` box comes before ``mdat`` (playable while downloading: "faststart");
    None when the file is not an ISO-BMFF file or has neither box."""
    size_total = path.stat().st_size
    with path.open("rb") as handle:
        offset = 0
        for _ in range(64):  # top-level boxes: ftyp, free, moov, mdat… — a handful in practice
            if offset + 8 > size_total:
                return None
            handle.seek(offset)
            size, kind = struct.unpack(">I4s", handle.read(8))
            if size == 1:  # a 64-bit size follows
                size = struct.unpack(">Q", handle.read(8))[0]
            elif size == 0:  # the box runs to the end of the file
                size = size_total - offset
            if size < 8 or (offset == 0 and kind != b"ftyp"):
                return None
            if kind in (b"moov", b"mdat"):
                return kind == b"moov"
            offset += size
    return None
