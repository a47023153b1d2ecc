"""The ffmpeg media engine: short videos from images, voice, music and subtitles (no database here).

``render_video(RenderRequest, on_progress) -> RenderResult`` renders; ``probe(path) -> VideoProbe`` reads a
file back; ``MediaError`` is every failure. See README.md.
"""

from workers.media.ffmpeg import MediaError, VideoProbe, probe
from workers.media.render import RenderRequest, RenderResult, render_video

__all__ = ["MediaError", "RenderRequest", "RenderResult", "VideoProbe", "probe", "render_video"]
