"""EBU R128 loudness: measure a file (ffmpeg's ``ebur128`` meter: integrated loudness, gate threshold,
loudness range, true peak) and build the second, applying ``loudnorm`` pass from that measurement.

``loudnorm`` only applies a plain gain (``linear=true``) when the gain would keep the true peak under the
ceiling and the loudness range under the target; otherwise it silently falls back to its dynamic mode,
which on short, peaky speech lands 1–2 LU under the target. :func:`prepare_for_linear` avoids that: it
applies the gain with a peak limiter set a little under the ceiling, so the second pass can be linear.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import ffmpeg

from core.video.options import LoudnessTarget
from workers.media.ffmpeg import MediaError, ProgressCallback, run_ffmpeg

SILENCE_LUFS = -70.0  # at or below: nothing to normalise (the gate of BS.1770)
# AAC encoding adds a few tenths of a dB of true peak: normalise to a ceiling this far under the target's, so the
# finished file is still under it.
ENCODER_PEAK_MARGIN_DB = 0.5
LIMITER_HEADROOM_DB = 1.0  # the limiter's sample-peak ceiling sits this far under that (inter-sample peaks)
# The ebur128 summary: "I: -14.0 LUFS", "Threshold: -24.3 LUFS" (the integrated gate: first one), "LRA: 4.7 LU",
# "Peak: -1.1 dBFS" (true peak, with peak=true).
_SUMMARY_FIELDS = {
    "integrated": re.compile(r"\bI:\s*(-?inf|-?[\d.]+) LUFS"),
    "threshold": re.compile(r"Threshold:\s*(-?inf|-?[\d.]+) LUFS"),
    "lra": re.compile(r"\bLRA:\s*(-?inf|-?[\d.]+) LU\b"),
    "peak": re.compile(r"Peak:\s*(-?inf|-?[\d.]+) dBFS"),
}

LoudnessMode = Literal["linear", "dynamic", "silent"]


@dataclass(frozen=True)
class Loudness:
    """One measurement: integrated loudness (LUFS), true peak (dBTP), loudness range (LU), gate threshold."""

    integrated_lufs: float
    true_peak_dbtp: float
    lra: float
    threshold: float

    @property
    def silent(self) -> bool:
        return not math.isfinite(self.integrated_lufs) or self.integrated_lufs <= SILENCE_LUFS


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("-inf")


def parse_ebur128_summary(stderr_lines: list[str]) -> Loudness:
    """The summary ``ebur128=peak=true`` logs when its input ends (integrated, threshold, LRA, true peak)."""
    text = "\n".join(stderr_lines)
    at = text.rfind("Summary:")
    if at < 0:
        raise MediaError("ffmpeg printed no ebur128 summary", stderr_tail="\n".join(stderr_lines[-12:]))
    summary = text[at:]
    values: dict[str, float] = {}
    for key, pattern in _SUMMARY_FIELDS.items():
        match = pattern.search(summary)
        if match is None:
            raise MediaError(f"the ebur128 summary has no {key}", stderr_tail=summary[-600:])
        values[key] = _number(match.group(1))
    return Loudness(integrated_lufs=values["integrated"], true_peak_dbtp=values["peak"],
                    lra=max(values["lra"], 0.0), threshold=values["threshold"])


def measure_loudness(
    path: Path,
    *,
    duration: float | None = None,
    timeout: float,
    on_progress: ProgressCallback | None = None,
) -> Loudness:
    """Measure a file's first audio stream with ffmpeg's EBU R128 meter (``ebur128``, true peak on)."""
    args = (
        ffmpeg.input(str(path))
        .audio.filter("ebur128", peak="true", framelog="verbose")  # per-frame lines only at verbose level
        .output(os.devnull, f="null")
        .compile(cmd="ffmpeg")[1:]
    )
    lines = run_ffmpeg(["-vn", "-sn", "-dn", *args], what=f"measuring the loudness of {Path(path).name}",
                       expected_duration=duration, timeout=timeout, on_progress=on_progress, loglevel="info")
    return parse_ebur128_summary(lines)


def peak_ceiling(target: LoudnessTarget) -> float:
    """The true-peak ceiling loudnorm is given: the target's, less the encoder's margin (loudnorm's range ≥ −9)."""
    return max(-9.0, target.true_peak_dbtp - ENCODER_PEAK_MARGIN_DB)


def linear_possible(target: LoudnessTarget, measured: Loudness) -> bool:
    """Whether loudnorm will apply a plain gain with these measurements (its own rule, af_loudnorm.c)."""
    if measured.silent or measured.threshold <= -70.0:
        return False
    gain = target.integrated_lufs - measured.integrated_lufs
    return measured.true_peak_dbtp + gain <= peak_ceiling(target) and measured.lra <= target.lra


def loudnorm_options(target: LoudnessTarget, measured: Loudness) -> dict[str, Any]:
    """Keyword arguments of the second, applying loudnorm pass (``stream.filter("loudnorm", **options)``)."""
    return {
        "I": target.integrated_lufs, "TP": peak_ceiling(target), "LRA": target.lra,
        "measured_I": f"{measured.integrated_lufs:.2f}", "measured_TP": f"{measured.true_peak_dbtp:.2f}",
        # loudnorm reads a range of exactly 0 (clips under 3 s) as "not measured" and goes dynamic
        "measured_LRA": f"{max(measured.lra, 0.01):.2f}", "measured_thresh": f"{measured.threshold:.2f}",
        "offset": 0.0, "linear": "true",
    }


def prepare_for_linear(
    source: Path,
    measured: Loudness,
    target: LoudnessTarget,
    *,
    work_dir: Path,
    duration: float,
    timeout: Callable[[], float],
    attempts: int = 4,
) -> tuple[Path, Loudness]:
    """Gain + a peak limiter until loudnorm can finish linearly; returns the file to normalise and its
    measurement. Gives up (returning the last try) after ``attempts``: loudnorm then goes dynamic.

    The limiter eats part of each gain step, so the next step is scaled by how much loudness the last one
    actually bought (a secant step); speech at −14 LUFS usually needs one try, −10 LUFS two or three."""
    ceiling = peak_ceiling(target)
    limit_db = ceiling - LIMITER_HEADROOM_DB
    current, current_measure = source, measured
    last_gain, last_lufs = 0.0, measured.integrated_lufs
    gain = target.integrated_lufs - measured.integrated_lufs
    for attempt in range(attempts):
        if linear_possible(target, current_measure) or current_measure.lra > target.lra:
            break  # done, or the loudness range (not the peak) is what blocks linear mode
        out = work_dir / f"limited-{attempt}.wav"
        args = (
            ffmpeg.input(str(source))
            .audio.filter("volume", f"{gain:.2f}dB")
            .filter("alimiter", limit=f"{10 ** (limit_db / 20):.4f}", attack=5, release=80, level="false")
            .output(str(out), acodec="pcm_f32le")
            .compile(cmd="ffmpeg")[1:]
        )
        run_ffmpeg(args, what="limiting the audio peaks", expected_duration=duration, timeout=timeout())
        current = out
        current_measure = measure_loudness(out, duration=duration, timeout=timeout())
        # Loud enough when the gain still missing keeps the peak under the ceiling (+0.2 LU to spare).
        wanted = target.integrated_lufs - (ceiling - current_measure.true_peak_dbtp) + 0.2
        bought = (current_measure.integrated_lufs - last_lufs) / (gain - last_gain) if gain != last_gain else 1.0
        last_gain, last_lufs = gain, current_measure.integrated_lufs
        gain += min(12.0, max(0.0, wanted - current_measure.integrated_lufs) / min(max(bought, 0.1), 1.0))
    return current, current_measure
