"""Video render benchmark: the studio's ``render_video`` vs one hand-written ffmpeg command, same run.

The job: a 15 s 1080×1920 short from 5 images (832×1216, like SDXL output) — Ken Burns moves, 0.5 s
crossfades, an espeak voice (one sentence per image), burnt-in subtitles timed to the sentences, music
synthesised by ffmpeg (tones + pink noise) looped under the voice and ducked, two-pass EBU R128 loudness
to −14 LUFS / −1 dBTP, x264 (``--presets``, default veryfast, crf 20) + AAC, faststart.

The baseline is what a person would type: one measuring command (the same audio mix into ``loudnorm``
with ``print_format=json``) and then ONE ffmpeg command with the whole filter graph written out by hand —
the same filters (scale/crop, zoompan from one frame, an xfade chain, subtitles with the same style, the same
mix, loudnorm pass 2 with the measured values) and the same encoder settings. (ffmpeg 5.1's xfade has no 4:2:0
formats, so an xfade chain converts every frame of the video to 4:4:4 and back; ours sends only the fades
through xfade — the same pictures, less chroma resampling, ~1.5 s less CPU per 15 s.) Ours also checks every input,
limits peaks when a plain gain would clip (so loudnorm stays linear and lands on the target), measures the
finished file and probes it: that is in its time. Both sides alternate, ``--repeat`` times; medians.

    .venv/bin/python bench/video.py                                   # veryfast, 2 rounds
    .venv/bin/python bench/video.py --presets ultrafast,superfast,veryfast --repeat 3
    .venv/bin/python bench/video.py --cpus 0,1                        # pin to two cores on a bigger machine
    .venv/bin/python bench/video.py --repeat 1 --caption-modes lines,highlight,pop  # what word-by-word costs
    .venv/bin/python bench/video.py --repeat 2 --clips --tts           # + clips vs stills, TTS speed per engine

``--clips`` renders the same short twice more, alternating: all stills (Ken Burns), and with images 1, 3 and 5
replaced by 5 s image-to-video clips (832×1216 @ 16 fps, the motion job's output; trimmed to their slot).
``--tts`` speaks the same five sentences with each engine on the CPU and reports seconds of audio per second
of compute: espeak-ng (real), and tiny random VITS and CSM built in code (their real sizes belong on a GPU;
the tiny figures measure the pipeline around the model, not the model).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this folder comes first on sys.path and bench/queue.py would shadow the standard
# library's `queue` module. Put the project root there instead.
ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse
import json
import logging
import os
import re
import statistics
import subprocess
import tempfile
import time
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from core.video.options import Cue, SubtitleStyle
from core.video.subtitles import cues_from_sentences, to_srt

SENTENCES = [
    "Good morning, and welcome back to the studio.",
    "Today we try three looks for a long weekend.",
    "First, a soft linen set for the cafe.",
    "Then a bright jacket for the city walk.",
    "And a simple black dress for the night out.",
]
SECONDS, FPS, FADE = 15.0, 30, 0.5
WIDTH, HEIGHT = 1080, 1920


# ------------------------------------------------------------------------------------------ inputs


def make_inputs(folder: Path, images: int) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(images):
        y, x = np.mgrid[0:1216, 0:832]
        picture = np.stack([(np.sin(x / (37 + 5 * i)) * 0.5 + 0.5) * 255, (np.cos(y / (23 + 3 * i)) * 0.5 + 0.5) * 255,
                            (x + y) % 256], axis=-1).astype(np.uint8)
        image = Image.fromarray(picture)
        draw = ImageDraw.Draw(image)
        for _ in range(40):
            x0, y0 = int(rng.integers(0, 832)), int(rng.integers(0, 1216))
            draw.ellipse([x0, y0, x0 + 90, y0 + 90], fill=tuple(int(v) for v in rng.integers(0, 255, 3)))
        path = folder / f"image-{i}.png"
        image.save(path)
        paths.append(path)

    # One sentence per image slot: synthesised alone (exact timing), padded to its 3 s slot, joined.
    slot = SECONDS / images
    parts, cues = [], []
    for i, sentence in enumerate(SENTENCES[:images]):
        part = folder / f"sentence-{i}.wav"
        subprocess.run(["espeak-ng", "-s", "165", "-w", str(part), sentence], check=True)
        length = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0",
                                       str(part)], capture_output=True, text=True, check=True).stdout)
        start = i * slot + 0.2
        cues.append((start, min(start + length, (i + 1) * slot - 0.05), sentence))
        parts.append(part)
    voice = folder / "voice.wav"
    graph = ";".join(f"[{i}:a]aresample=48000,apad=whole_dur={slot},atrim=0:{slot},adelay=200|200,"
                     f"atrim=0:{slot}[p{i}]" for i in range(len(parts)))
    graph += ";" + "".join(f"[p{i}]" for i in range(len(parts))) + f"concat=n={len(parts)}:v=0:a=1[out]"
    _ffmpeg(*[a for p in parts for a in ("-i", str(p))], "-filter_complex", graph, "-map", "[out]", str(voice))

    srt = folder / "voice.srt"
    srt.write_text(to_srt([Cue(start=a, end=b, text=text) for a, b, text in cues]), "utf-8")
    music = folder / "music.wav"
    _ffmpeg("-f", "lavfi", "-i", "sine=f=220:d=8", "-f", "lavfi", "-i", "sine=f=330:d=8",
            "-f", "lavfi", "-i", "anoisesrc=d=8:c=pink:a=0.05:seed=3",
            "-filter_complex", "[0][1][2]amix=inputs=3,volume=2,aformat=sample_rates=48000:channel_layouts=stereo",
            str(music))
    timed = cues_from_sentences([text for *_, text in cues], [(a, b) for a, b, _ in cues], max_words_per_line=4)
    return {"images": paths, "voice": voice, "srt": srt, "music": music, "cues": timed}


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", *args], check=True)


def ebur128(path: Path) -> tuple[float, float]:
    err = subprocess.run(["ffmpeg", "-hide_banner", "-nostats", "-i", str(path), "-vn", "-af",
                          "ebur128=peak=true:framelog=verbose", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    summary = err[err.rfind("Summary:"):]
    return (float(re.search(r"I:\s*(-?[\d.]+) LUFS", summary).group(1)),
            float(re.search(r"Peak:\s*(-?[\d.]+) dBFS", summary).group(1)))


# ------------------------------------------------------------------------------------------ ours


class StepTimes(logging.Handler):
    """Collects the media code's per-step timings ("ffmpeg: rendering the video took 9.87 s")."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.steps: list[tuple[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        match = re.match(r"(\w+): (.+) took ([\d.]+) s", record.getMessage())
        if match:
            self.steps.append((match.group(2), float(match.group(3))))


def run_ours(inputs: dict[str, Any], folder: Path, preset: str, captions: str = "") -> dict[str, Any]:
    """``captions``: empty for the SRT file (as the hand-written side), else a caption mode on the timed cues."""
    from workers.media import RenderRequest, render_video

    handler = StepTimes()
    logger = logging.getLogger("studio.media")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    count = len(inputs["images"])
    request = RenderRequest(
        images=inputs["images"], durations=[SECONDS / count] * count, output=folder / f"ours-{preset}.mp4",
        aspect="9:16", fit="crop", fps=FPS, motion="ken_burns", transition="crossfade", transition_seconds=FADE,
        voice=inputs["voice"], music=inputs["music"], music_gain_db=-12.0, preset=preset,
        subtitles=inputs["cues"] if captions else inputs["srt"],
        subtitle_style=SubtitleStyle(mode=captions) if captions else SubtitleStyle(),  # type: ignore[arg-type]
    )
    started = time.perf_counter()
    try:
        result = render_video(request)
    finally:
        logger.removeHandler(handler)
    return {"seconds": time.perf_counter() - started, "output": result.output, "mode": result.loudness_mode,
            "steps": handler.steps}


def make_clips(inputs: dict[str, Any], folder: Path) -> list[Path]:
    """The images with every other one replaced by a 5 s clip of it slowly zooming (what a motion job stores)."""
    visuals: list[Path] = []
    for index, image in enumerate(inputs["images"]):
        if index % 2:
            visuals.append(image)
            continue
        clip = folder / f"clip-{index}.mp4"
        _ffmpeg("-loop", "1", "-i", str(image), "-vf", "zoompan=z='1+0.002*on':d=80:s=832x1216:fps=16,format=yuv420p",
                "-frames:v", "80", "-c:v", "libx264", "-preset", "veryfast", "-crf", "18", str(clip))
        visuals.append(clip)
    return visuals


def run_timeline(inputs: dict[str, Any], visuals: list[Path], folder: Path, preset: str, name: str) -> float:
    """Seconds to render the short with ``visuals`` (stills or clips), same voice, music and subtitles."""
    from workers.media import RenderRequest, render_video

    count = len(visuals)
    request = RenderRequest(
        images=visuals, durations=[SECONDS / count] * count, output=folder / f"timeline-{name}.mp4",
        aspect="9:16", fit="crop", fps=FPS, motion="ken_burns", transition="crossfade", transition_seconds=FADE,
        voice=inputs["voice"], music=inputs["music"], music_gain_db=-12.0, preset=preset, subtitles=inputs["srt"],
        subtitle_style=SubtitleStyle(),
    )
    started = time.perf_counter()
    render_video(request)
    return time.perf_counter() - started


def bench_clips(inputs: dict[str, Any], folder: Path, preset: str, repeat: int) -> None:
    clips = make_clips(inputs, folder)
    timings: dict[str, list[float]] = {"stills": [], "clips": []}
    for round_ in range(repeat):
        for name in (("stills", "clips") if round_ % 2 == 0 else ("clips", "stills")):
            visuals = inputs["images"] if name == "stills" else clips
            timings[name].append(run_timeline(inputs, visuals, folder, preset, name))
    stills, with_clips = (statistics.median(timings[n]) for n in ("stills", "clips"))
    print()
    print(f"timeline ({preset}, median of {repeat}, alternating): 5 stills vs 3 clips + 2 stills")
    print(f"| {'timeline':<18} | {'s':>6} | {'×RT':>6} | {'÷ stills':>8} |")
    print(f"|{'-' * 20}|{'-' * 8}|{'-' * 8}|{'-' * 10}|")
    for name, seconds in (("5 stills", stills), ("3 clips + 2 stills", with_clips)):
        print(f"| {name:<18} | {seconds:>6.2f} | {SECONDS / seconds:>5.2f}x | {seconds / stills:>7.2f}x |")


def _speak(synthesizer: Any, folder: Path, name: str) -> tuple[float, float]:
    started = time.perf_counter()
    speech = synthesizer.synthesize(SENTENCES, output=folder / f"tts-{name}.wav")
    return speech.duration, time.perf_counter() - started


def bench_tts(folder: Path, repeat: int) -> None:
    """Seconds of audio per second of compute, per engine, on the CPU (first call = loading, not timed)."""
    import torch

    from workers.ml.tiny_models import build_tiny_csm, build_tiny_vits
    from workers.ml.tts import CsmSynthesizer, EspeakSynthesizer, VitsSynthesizer
    from workers.ml.tts_csm import SAMPLE_RATE, CsmEngine, Reference

    os.environ["HF_HUB_OFFLINE"] = "1"
    reference = np.random.default_rng(0).normal(0, 0.2, 5 * SAMPLE_RATE).astype(np.float32)
    engines: dict[str, Any] = {
        "espeak-ng (real)": EspeakSynthesizer("en-us"),
        "VITS (tiny, random)": VitsSynthesizer(str(build_tiny_vits(folder / "tiny-vits")), "cpu"),
        "CSM (tiny, random), cloned": CsmSynthesizer(CsmEngine(str(build_tiny_csm(folder / "tiny-csm")), "cpu"),
                                                     Reference(reference, "a reference clip"), "csm:1"),
    }
    for engine in engines.values():
        _speak(engine, folder, "warm")
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in engines}
    for round_ in range(repeat):
        for name in (list(engines) if round_ % 2 == 0 else list(engines)[::-1]):
            results[name].append(_speak(engines[name], folder, "timed"))
    print()
    print(f"TTS on the CPU ({torch.get_num_threads()} torch threads), {len(SENTENCES)} sentences, median of {repeat}:")
    print(f"| {'engine':<28} | {'audio s':>7} | {'wall s':>7} | {'audio s / s':>11} | {'÷ espeak':>8} |")
    print(f"|{'-' * 30}|{'-' * 9}|{'-' * 9}|{'-' * 13}|{'-' * 10}|")
    speed = {name: statistics.median(a / w for a, w in runs) for name, runs in results.items()}
    base = speed["espeak-ng (real)"]
    for name, runs in results.items():
        audio = statistics.median(a for a, _ in runs)
        wall = statistics.median(w for _, w in runs)
        print(f"| {name:<28} | {audio:>7.2f} | {wall:>7.2f} | {speed[name]:>11.1f} | {speed[name] / base:>7.3f}x |")


# ------------------------------------------------------------------------------------------ by hand

# The audio mix, as a person writes it: voice to 15 s, music looped/trimmed/faded at −12 dB, ducked, mixed.
HAND_AUDIO = (
    "[{v}:a]aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo,apad=whole_dur=15,atrim=duration=15,"
    "asplit=2[voice][key];"
    "[{m}:a]aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo,atrim=duration=15,asetpts=N/SR/TB,"
    "volume=-12dB,afade=t=in:d=0.5,afade=t=out:st=14:d=1[music];"
    "[music][key]sidechaincompress=threshold=0.015:ratio=8:attack=20:release=400:detection=rms[ducked];"
    "[voice][ducked]amix=inputs=2:duration=first:normalize=0,"
    "aformat=sample_fmts=fltp:sample_rates=48000:channel_layouts=stereo"
)

# Five images × 3 s, 0.5 s crossfades centred on the boundaries (clips of 98, 105, 105, 105, 97 frames), zoompan
# from one frame at 2× the output size, the same five moves, subtitles in output pixels.
HAND_VIDEO = (
    "[0:v]scale=2160:3840:force_original_aspect_ratio=increase:flags=bicubic:out_color_matrix=bt709:out_range=tv,"
    "crop=2160:3840,format=yuv420p,zoompan=z='1+0.158*on/97':x='0.5*(iw-iw/zoom)':y='0.5*(ih-ih/zoom)'"
    ":d=98:s=1080x1920:fps=30,setsar=1[c0];"
    "[1:v]scale=2160:3840:force_original_aspect_ratio=increase:flags=bicubic:out_color_matrix=bt709:out_range=tv,"
    "crop=2160:3840,format=yuv420p,zoompan=z='1.165':x='(on/104)*(iw-iw/zoom)':y='0.4*(ih-ih/zoom)'"
    ":d=105:s=1080x1920:fps=30,setsar=1[c1];"
    "[2:v]scale=2160:3840:force_original_aspect_ratio=increase:flags=bicubic:out_color_matrix=bt709:out_range=tv,"
    "crop=2160:3840,format=yuv420p,zoompan=z='1.165-0.165*on/104':x='0.5*(iw-iw/zoom)':y='0.3*(ih-ih/zoom)'"
    ":d=105:s=1080x1920:fps=30,setsar=1[c2];"
    "[3:v]scale=2160:3840:force_original_aspect_ratio=increase:flags=bicubic:out_color_matrix=bt709:out_range=tv,"
    "crop=2160:3840,format=yuv420p,zoompan=z='1.165':x='0.5*(iw-iw/zoom)':y='(1-on/104)*(ih-ih/zoom)'"
    ":d=105:s=1080x1920:fps=30,setsar=1[c3];"
    "[4:v]scale=2160:3840:force_original_aspect_ratio=increase:flags=bicubic:out_color_matrix=bt709:out_range=tv,"
    "crop=2160:3840,format=yuv420p,zoompan=z='1+0.157*on/96':x='0.3*(iw-iw/zoom)':y='0.3*(ih-ih/zoom)'"
    ":d=97:s=1080x1920:fps=30,setsar=1[c4];"
    "[c0][c1]xfade=transition=fade:duration=0.5:offset=2.766667[x1];"
    "[x1][c2]xfade=transition=fade:duration=0.5:offset=5.766667[x2];"
    "[x2][c3]xfade=transition=fade:duration=0.5:offset=8.766667[x3];"
    "[x3][c4]xfade=transition=fade:duration=0.5:offset=11.766667,format=yuv420p,"
    "subtitles='{srt}':original_size=1080x1920:force_style='PlayResX=1080,PlayResY=1920,FontName=DejaVu Sans,"
    "FontSize=64,Bold=-1,PrimaryColour=&H00FFFFFF,OutlineColour=&H00000000,BackColour=&H80000000,BorderStyle=1,"
    "Outline=4,Shadow=0,Alignment=2,MarginV=160,MarginL=67,MarginR=67'[vout]"
)


def run_hand(inputs: dict[str, Any], folder: Path, preset: str) -> dict[str, Any]:
    images = [a for p in inputs["images"] for a in ("-i", str(p))]
    n = len(inputs["images"])
    audio_inputs = ["-i", str(inputs["voice"]), "-stream_loop", "-1", "-i", str(inputs["music"])]
    started = time.perf_counter()
    # Pass 1: measure the mix.
    measure = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-nostats", *audio_inputs, "-filter_complex",
         HAND_AUDIO.format(v=0, m=1) + ",loudnorm=I=-14:TP=-1.5:LRA=11:print_format=json[a]", "-map", "[a]",
         "-f", "null", "-"], capture_output=True, text=True, check=True).stderr
    m = json.loads(measure[measure.rfind("{"):measure.rfind("}") + 1])
    # Pass 2: everything in one command.
    loudnorm = (f"loudnorm=I=-14:TP=-1.5:LRA=11:measured_I={m['input_i']}:measured_TP={m['input_tp']}:"
                f"measured_LRA={m['input_lra']}:measured_thresh={m['input_thresh']}:offset={m['target_offset']}:"
                "linear=true,aformat=sample_rates=48000:channel_layouts=stereo[aout]")
    graph = (HAND_VIDEO.format(srt=inputs["srt"]) + ";" + HAND_AUDIO.format(v=n, m=n + 1) + "," + loudnorm)
    output = folder / f"hand-{preset}.mp4"
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *images, *audio_inputs,
         "-filter_complex", graph, "-map", "[vout]", "-map", "[aout]",
         "-c:v", "libx264", "-preset", preset, "-crf", "20", "-profile:v", "high", "-pix_fmt", "yuv420p", "-g", "60",
         "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv",
         "-c:a", "aac", "-b:a", "192k", "-ar", "48000", "-ac", "2", "-t", "15", "-movflags", "+faststart",
         str(output)], check=True)
    return {"seconds": time.perf_counter() - started, "output": output, "mode": "two-pass loudnorm"}


# ------------------------------------------------------------------------------------------ main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="veryfast", help="x264 presets, comma-separated")
    parser.add_argument("--repeat", type=int, default=2, help="rounds per side and preset (median reported)")
    parser.add_argument("--cpus", default="", help="pin this process and its children to these CPUs, e.g. 0,1")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (prints its path)")
    parser.add_argument("--clips", action="store_true", help="also render 3 clips + 2 stills vs 5 stills")
    parser.add_argument("--tts", action="store_true", help="also time each TTS engine on the CPU")
    parser.add_argument("--only-extras", action="store_true", help="skip ours vs hand (with --clips / --tts)")
    parser.add_argument("--caption-modes", default="", help="also time ours per caption style, e.g. lines,highlight,pop"
                        " (first preset, --repeat rounds, alternating)")
    args = parser.parse_args()
    if args.cpus:
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    folder = Path(tempfile.mkdtemp(prefix="bench-video-"))
    cpus = len(os.sched_getaffinity(0))
    ffmpeg_version = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True).stdout.split("\n")[0]
    print(f"{ffmpeg_version.split(' Copyright')[0]} · {cpus} CPU(s) · load {os.getloadavg()[0]:.2f} · "
          f"{SECONDS:g} s {WIDTH}×{HEIGHT} @ {FPS} fps, 5 images, voice, music, subtitles, two-pass loudness")
    inputs = make_inputs(folder, 5)

    if args.only_extras:
        presets_run: list[str] = []
    else:
        presets_run = presets
    rows = []
    for preset in presets_run:
        ours, hand = [], []
        for round_ in range(args.repeat):
            sides = [("ours", run_ours, ours), ("hand", run_hand, hand)]
            for _name, run, into in (sides if round_ % 2 == 0 else sides[::-1]):
                into.append(run(inputs, folder, preset))
        rows.append((preset, ours, hand))

    if rows:
        print()
        print(f"| {'preset':<9} | {'ours s':>7} | {'ours ×RT':>8} | {'hand s':>7} | {'hand ×RT':>8} | {'ours/hand':>9} "
              f"| {'ours LUFS / dBTP':>16} | {'hand LUFS / dBTP':>16} |")
        print(f"|{'-' * 11}|{'-' * 9}|{'-' * 10}|{'-' * 9}|{'-' * 10}|{'-' * 11}|{'-' * 18}|{'-' * 18}|")
        for preset, ours, hand in rows:
            o = statistics.median(r["seconds"] for r in ours)
            h = statistics.median(r["seconds"] for r in hand)
            oi, op = ebur128(ours[-1]["output"])
            hi, hp = ebur128(hand[-1]["output"])
            print(f"| {preset:<9} | {o:>7.2f} | {SECONDS / o:>7.2f}x | {h:>7.2f} | {SECONDS / h:>7.2f}x "
                  f"| {o / h:>8.2f}x | {oi:>7.1f} / {op:>6.1f} | {hi:>7.1f} / {hp:>6.1f} |")
        print()
        print("encoder ceiling — x264 alone re-encoding our output (decoding included), same settings:")
        for preset, ours, _hand in rows:
            started = time.perf_counter()
            subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", str(ours[-1]["output"]),
                            "-an", "-c:v", "libx264", "-preset", preset, "-crf", "20", "-profile:v", "high", "-g", "60",
                            "-f", "null", "-"], check=True)
            seconds = time.perf_counter() - started
            print(f"  {preset}: {seconds:.2f} s ({SECONDS / seconds:.2f}x real time)")
        print()
        print("ours, last round of each preset, per step (s):")
        for preset, ours, _hand in rows:
            steps = ", ".join(f"{name} {seconds:.2f}" for name, seconds in ours[-1]["steps"])
            print(f"  {preset}: {steps}  [{ours[-1]['mode']} loudnorm]")
        print("targets: ≥3× real time with veryfast on 2 cores; ours ≤ 1.2× the hand-written command")
    modes = [m.strip() for m in args.caption_modes.split(",") if m.strip()]
    if modes:
        timings: dict[str, list[float]] = {mode: [] for mode in modes}
        for round_ in range(args.repeat):
            for mode in (modes if round_ % 2 == 0 else modes[::-1]):
                timings[mode].append(run_ours(inputs, folder, presets[0], captions=mode)["seconds"])
        print(f"caption styles ({presets[0]}, median of {args.repeat}): " + ", ".join(
            f"{mode} {statistics.median(times):.2f} s" for mode, times in timings.items()))
    if args.clips:
        bench_clips(inputs, folder, presets[0], args.repeat)
    if args.tts:
        bench_tts(folder, args.repeat)
    if args.keep:
        print(f"files kept in {folder}")
    else:
        import shutil

        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
