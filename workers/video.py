"""The ``video`` and ``voice-preview`` jobs.

A render runs in stages: fetch the images (and music) → voice-over (TTS, sentence by sentence) →
subtitles (the script's own words, placed by the TTS sentence spans and, inside a sentence, by the
words heard: the TTS engine's word timings, or whisper's word timestamps aligned to the script; each word
timed too, for word-by-word captions, clear of the checked platforms' UI zones) →
render (workers/media: motion, transitions, subtitles, music ducked under the voice, two-pass loudness)
→ measure and check against the platforms' specs → store the video, the SRT and the voice track as
assets. Everything is written to a scratch folder that is removed even on failure; the assets are
recorded only at the very end, so a failed or cancelled render leaves no partial asset behind, and a
redelivered one rewrites the same keys.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from core.config import get_settings
from core.infra.storage import get_object_store
from core.jobs.lifecycle import JobContext, get_job
from core.library import assets
from core.library.assets import AssetSource
from core.models import AssetKind
from core.video import requests as videos
from core.video.options import Cue, Word
from core.video.platform_specs import SpecReport, check_video
from core.video.requests import VideoPayload, VoicePreviewPayload
from core.video.subtitles import align_words, cues_from_sentences, to_srt
from core.video.voices import split_sentences
from workers.media.fonts import check_caption_text
from workers.media.render import RenderRequest, render_video
from workers.ml.transcribe import transcribe_words
from workers.ml.tts import preview, synthesize_script

_EXTENSIONS = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}


def voice_preview(ctx: JobContext[VoicePreviewPayload]) -> dict[str, Any]:
    payload = ctx.payload
    wav = preview(payload.voice, payload.rate_wpm, payload.text)
    info = get_object_store().put_bytes(videos.preview_key(ctx.job_id), wav, "audio/wav")
    return {"key": info.key, "bytes": info.size}


def _fetch(asset_id: int, folder: Path, name: str) -> Path:
    asset = assets.get_asset(asset_id)
    path = folder / f"{name}{_EXTENSIONS.get(asset.content_type, Path(asset.key).suffix)}"
    with get_object_store().iter_chunks(asset.key) as chunks, open(path, "wb") as out:
        for chunk in chunks:
            out.write(chunk)
    return path


def _durations(payload: VideoPayload, count: int, voice_seconds: float) -> list[float]:
    """Seconds each image shows: as given, split from a total, or spread over the voice (+ a short tail)."""
    if payload.seconds_per_image:
        return [payload.seconds_per_image] * count
    total = payload.total_seconds or max(voice_seconds + 0.6, count * 1.0)
    return [total / count] * count


def _cues(ctx: JobContext, speech: Any, payload: VideoPayload) -> list[Cue]:
    """The script's words as cues, their line breaks timed by what was heard in the voice-over: the TTS
    engine's word timings when it gives them, else whisper's word timestamps when a speech model is set,
    else the sentence spans shared by characters. Whisper's own text is never shown: it can only add
    errors to words the studio wrote itself."""
    model = get_settings().whisper_model
    heard: list[Word] = list(speech.words)
    if not heard and model:
        ctx.stage("transcribe")
        heard = transcribe_words(speech.path, model)
        script_words = " ".join(speech.sentences).split()
        ctx.log(f"whisper ({model}) timed {len(heard)} word(s); "
                f"{len(align_words(script_words, heard))} of the script's {len(script_words)} matched")
    return cues_from_sentences(speech.sentences, speech.timings, heard=heard,
                               max_words_per_line=payload.subtitles.max_words_per_line)


def render(ctx: JobContext[VideoPayload]) -> dict[str, Any]:
    payload = ctx.payload
    job = get_job(ctx.job_id)
    work = get_settings().data_dir / "work" / "video" / ctx.job_id
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        if payload.subtitles.enabled:  # a script no installed font can draw fails before any work is done
            check_caption_text([payload.script])
        ctx.stage("fetch")
        images = [_fetch(asset_id, work, f"image-{i:03d}-asset-{asset_id}")
                  for i, asset_id in enumerate(payload.image_asset_ids)]
        music = _fetch(payload.music_asset_id, work, "music") if payload.music_asset_id else None
        ctx.stage("voice")
        speech = synthesize_script(payload.script, payload.voice, rate_wpm=payload.rate_wpm,
                                   output=work / "voice.wav")
        ctx.log(f"voice {payload.voice}: {len(split_sentences(payload.script))} sentence(s), {speech.duration:.1f} s")
        cues = _cues(ctx, speech, payload) if payload.subtitles.enabled else []
        srt = work / "subtitles.srt"
        srt.write_text(to_srt(cues), encoding="utf-8")
        ctx.stage("render")
        result = render_video(RenderRequest(
            images=images, aspect=payload.aspect, fit=payload.fit, fps=payload.fps, motion=payload.motion,
            durations=_durations(payload, len(images), speech.duration), transition=payload.transition,
            transition_seconds=payload.transition_seconds, voice=speech.path, music=music,
            music_gain_db=payload.music_gain_db, subtitles=cues or None, subtitle_style=payload.subtitles,
            safe_area_platforms=payload.platforms if payload.subtitles.safe_area else [],
            loudness=payload.loudness, output=work / "video.mp4", work_dir=work,
        ), on_progress=lambda fraction: ctx.progress(min(fraction, 0.99), f"rendering {fraction:.0%}"))
        report = check_video(result.probe, payload.platforms)
        ctx.log(f"rendered {result.duration:.1f} s {result.width}×{result.height} in {result.elapsed_s:.1f} s; "
                f"{result.integrated_lufs} LUFS, true peak {result.true_peak_dbtp} dBTP")
        return _store(ctx, job, payload, result, report, srt, speech, cues)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _store(ctx: JobContext, job: Any, payload: VideoPayload, result: Any, report: SpecReport, srt: Path,
           speech: Any, cues: list[Cue]) -> dict[str, Any]:
    """Record the outputs (the last step: nothing is recorded for a render that failed earlier)."""
    ctx.stage("store")
    keys = videos.output_keys(ctx.job_id)
    store = get_object_store()
    lineage = {"image_asset_ids": payload.image_asset_ids, "script": payload.script, "voice": payload.voice,
               "aspect": payload.aspect}
    first = assets.get_asset(payload.image_asset_ids[0])
    common = {"job_id": ctx.job_id, "character_id": job.character_id, "dataset_id": first.dataset_id}
    voice_info = store.put_file(keys["voice"], speech.path, "audio/wav")
    voice = assets.record_asset(key=keys["voice"], kind=AssetKind.AUDIO, source=AssetSource.VOICE,
                                content_type="audio/wav", size_bytes=voice_info.size, prompt=payload.script,
                                meta={**lineage, "duration": speech.duration}, **common)
    srt_info = store.put_file(keys["subtitles"], srt, "application/x-subrip")
    subtitles = assets.record_asset(key=keys["subtitles"], kind=AssetKind.CAPTION, source=AssetSource.VIDEO,
                                    content_type="application/x-subrip", size_bytes=srt_info.size,
                                    prompt=payload.script, meta={**lineage, "cues": len(cues)}, **common)
    loudness = {"integrated_lufs": result.integrated_lufs, "true_peak_dbtp": result.true_peak_dbtp,
                "lra": result.lra, "mode": result.loudness_mode}
    problems = {name: check.failures for name, check in report.checks.items()}
    video_info = store.put_file(keys["video"], result.output, "video/mp4")
    video = assets.record_asset(
        key=keys["video"], kind=AssetKind.VIDEO, source=AssetSource.VIDEO, content_type="video/mp4",
        size_bytes=video_info.size, width=result.width, height=result.height, prompt=payload.script,
        meta={**lineage, "duration": result.duration, "loudness": loudness, "spec_report": problems,
              "voice_asset_id": voice.id, "subtitles_asset_id": subtitles.id}, **common)
    return {"video_asset_id": video.id, "voice_asset_id": voice.id, "subtitles_asset_id": subtitles.id,
            "duration": result.duration, "loudness": loudness, "spec_report": problems,
            "spec_warnings": {name: check.warnings for name, check in report.checks.items()}}
