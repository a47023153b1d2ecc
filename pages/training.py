import streamlit as st

from core.datasets import get_dataset
from core.errors import NotFound
from ui.widgets import coming_soon

coming_soon("Training", 5, [
    "LoRA configs with presets (SD 1.5, SD 1.5 HQ, SDXL, tiny offline demo) and a VRAM estimate.",
    "A live loss chart, sample images during training, checkpoints and resume after a crash.",
])
if dataset_id := st.session_state.get("training.dataset_id"):
    try:
        dataset = get_dataset(dataset_id)
        st.success(f"Dataset selected for training: {dataset.name} ({dataset.image_count} images).")
    except NotFound:
        st.session_state.pop("training.dataset_id", None)
