from ui.widgets import coming_soon

coming_soon("Videos", 7, [
    "Short videos from images with motion, a TTS voice-over and whisper subtitles.",
    "9:16, 1:1 and 16:9 presets, loudness-normalised audio.",
])
