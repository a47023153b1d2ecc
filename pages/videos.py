import streamlit as st

from ui.widgets import VIDEO_HANDOFF_KEY, coming_soon

coming_soon("Videos", 7, [
    "Short videos from images: motion, TTS voice-over, whisper subtitles, 9:16 / 1:1 / 16:9, loudness-normalised.",
])
if handed := st.session_state.get(VIDEO_HANDOFF_KEY):
    st.caption(f"{len(handed)} image(s) handed over from the studio are waiting here: asset ids "
               + ", ".join(map(str, handed)))
