"""Reference clips for cloned voices: a few seconds of someone speaking, checked and stored as an asset.

A clip is checked before anything is written: ffprobe must find an audio stream it can decode, the
speech must last ``MIN_SECONDS``–``MAX_SECONDS`` and must not be near-silent (ffmpeg's
``volumedetect``). It is then mixed down to mono and stored as a 24 kHz 16-bit WAV (the rate the
cloning models read) under ``voices/<id>.wav``, as an ``audio`` asset with source ``voice-reference``;
``meta`` keeps the transcript (what the clip says, optional: the cloning model uses it as the clip's
text when given), the duration and the uploaded file's name. A voice id ``csm:<asset id>`` names it.

ffprobe/ffmpeg run as subprocesses here (like espeak-ng in ``voices.py``): the check needs no model.
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlmodel import col

from core.db import session_scope
from core.errors import InvalidInput, NotFound
from core.infra.storage import get_object_store
from core.library import assets
from core.library.assets import AssetSource
from core.models import Asset, AssetKind
from core.pagination import Page, clamp

MIN_SECONDS = 3.0
MAX_SECONDS = 30.0
MAX_BYTES = 20 * 1024 * 1024
SAMPLE_RATE = 24_000
SILENT_MAX_DB = -45.0
"""A clip whose loudest sample stays under this (dBFS) holds no speech to clone."""
MAX_TRANSCRIPT = 500
TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ClipFacts:
    duration: float
    channels: int
    sample_rate: int
    codec: str
    max_volume_db: float
    mean_volume_db: float


def _run(command: list[str], data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(command, input=data, capture_output=True, timeout=TIMEOUT_S, check=False)
    except FileNotFoundError as exc:
        raise InvalidInput(f"{command[0]} is not installed on this machine (apt-get install ffmpeg)") from exc
    except subprocess.TimeoutExpired as exc:
        raise InvalidInput(f"{command[0]} took over {TIMEOUT_S:.0f} s on the clip; upload a shorter file") from exc


def _probe(path: Path) -> dict[str, Any]:
    result = _run(["ffprobe", "-v", "error", "-show_streams", "-show_format", "-of", "json", str(path)])
    if result.returncode != 0:
        raise InvalidInput("the clip is not an audio file ffmpeg can read (try WAV, MP3, M4A, OGG or FLAC)")
    info: dict[str, Any] = json.loads(result.stdout or b"{}")
    return info


_VOLUME = re.compile(rb"(max|mean)_volume:\s*(-?[\d.]+|-inf) dB")


def inspect_clip(path: Path) -> ClipFacts:
    """What a clip holds; raises ``InvalidInput`` when it is no readable audio."""
    info = _probe(path)
    audio = [s for s in info.get("streams", []) if s.get("codec_type") == "audio"]
    if not audio:
        raise InvalidInput("the clip has no audio track")
    stream = audio[0]
    duration = float(stream.get("duration") or info.get("format", {}).get("duration") or 0.0)
    volume = _run(["ffmpeg", "-hide_banner", "-nostdin", "-i", str(path), "-map", "0:a:0", "-af", "volumedetect",
                   "-f", "null", "-"])
    if volume.returncode != 0:
        raise InvalidInput("ffmpeg could not decode the clip's audio")
    levels = {name.decode(): float(value) for name, value in _VOLUME.findall(volume.stderr)}
    return ClipFacts(
        duration=duration, channels=int(stream.get("channels") or 0), sample_rate=int(stream.get("sample_rate") or 0),
        codec=str(stream.get("codec_name") or ""), max_volume_db=levels.get("max", float("-inf")),
        mean_volume_db=levels.get("mean", float("-inf")),
    )


def check_clip(facts: ClipFacts) -> None:
    """Refuse a clip too short, too long or silent, saying what to change."""
    if facts.channels < 1:
        raise InvalidInput("the clip's audio has no channels")
    if facts.duration < MIN_SECONDS:
        raise InvalidInput(f"the clip is {facts.duration:.1f} s long; a reference needs {MIN_SECONDS:g}–"
                           f"{MAX_SECONDS:g} s of speech")
    if facts.duration > MAX_SECONDS:
        raise InvalidInput(f"the clip is {facts.duration:.1f} s long; cut it to {MAX_SECONDS:g} s of clear speech")
    if facts.max_volume_db < SILENT_MAX_DB:
        raise InvalidInput(f"the clip is (nearly) silent: its loudest moment is {facts.max_volume_db:.0f} dBFS")


def _to_reference_wav(source: Path, output: Path) -> None:
    """Mono (channels averaged), 24 kHz, 16-bit WAV: what the cloning engines read."""
    result = _run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-y", "-i", str(source),
                   "-map", "0:a:0", "-ac", "1", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_s16le", "-map_metadata", "-1",
                   str(output)])
    if result.returncode != 0 or not output.exists():
        raise InvalidInput(f"ffmpeg could not convert the clip: {result.stderr.decode(errors='replace')[-300:]}")


def save_reference_clip(*, data: bytes, filename: str, character_id: int | None, transcript: str = "") -> Asset:
    """Check an uploaded clip and store it as a reference for a cloned voice; a bad clip stores nothing."""
    if not data:
        raise InvalidInput("the clip is empty")
    if len(data) > MAX_BYTES:
        megabytes = len(data) / 1024 / 1024
        raise InvalidInput(f"the clip is {megabytes:.0f} MB; upload at most {MAX_BYTES // 1024 // 1024} MB")
    transcript = " ".join((transcript or "").split())
    if len(transcript) > MAX_TRANSCRIPT:
        raise InvalidInput(f"the transcript is over {MAX_TRANSCRIPT} characters; it should say what the clip says")
    with tempfile.TemporaryDirectory(prefix="voice-clip-") as tmp:
        source = Path(tmp) / "upload"
        source.write_bytes(data)
        facts = inspect_clip(source)
        check_clip(facts)
        wav = Path(tmp) / "reference.wav"
        _to_reference_wav(source, wav)
        stored = wav.read_bytes()
    key = f"voices/{uuid.uuid4().hex}.wav"
    info = get_object_store().put_bytes(key, stored, "audio/wav")
    name = Path(filename or "clip").name[:200]
    return assets.record_asset(
        key=key, kind=AssetKind.AUDIO, source=AssetSource.VOICE_REFERENCE, content_type="audio/wav",
        size_bytes=info.size, character_id=character_id, prompt=transcript,
        meta={"duration": round(facts.duration, 3), "filename": name, "transcript": transcript,
              "sample_rate": SAMPLE_RATE, "original": {"codec": facts.codec, "channels": facts.channels,
                                                       "sample_rate": facts.sample_rate}},
    )


def get_reference_clip(asset_id: int) -> Asset:
    """The stored reference clip ``asset_id``; ``InvalidInput`` when it is not one (or is in the trash)."""
    try:
        asset = assets.get_asset(asset_id)
    except NotFound:
        raise InvalidInput(f"reference clip {asset_id} does not exist") from None
    if asset.kind != AssetKind.AUDIO or asset.source != AssetSource.VOICE_REFERENCE:
        raise InvalidInput(f"asset {asset_id} is not a voice reference clip (upload one on the Videos page)")
    if asset.deleted_at is not None:
        raise InvalidInput(f"reference clip {asset_id} is in the trash; restore it first")
    return asset


def transcript_of(asset: Asset) -> str:
    return str((asset.meta or {}).get("transcript", ""))


def list_reference_clips(*, character_id: int | None = None, page: int = 1, page_size: int = 20) -> Page[Asset]:
    """Reference clips, newest first (a character's own when ``character_id`` is given)."""
    page, page_size = clamp(page, page_size, max_page_size=100)
    conditions = [col(Asset.source) == AssetSource.VOICE_REFERENCE, col(Asset.kind) == AssetKind.AUDIO,
                  col(Asset.deleted_at).is_(None)]
    if character_id is not None:
        conditions.append(col(Asset.character_id) == character_id)
    query = select(Asset).where(*conditions).order_by(col(Asset.created_at).desc(), col(Asset.id).desc())
    with session_scope() as session:  # ix_asset_source_created
        total = session.execute(select(func.count()).select_from(Asset).where(*conditions)).scalar_one()
        items = list(session.execute(query.offset((page - 1) * page_size).limit(page_size)).scalars())
    return Page(items=items, total=int(total), page=page, page_size=page_size)
