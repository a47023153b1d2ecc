"""The character's lineage: datasets → LoRA versions (promoted marked) → images → videos → posts, with links."""

from __future__ import annotations

import streamlit as st

from core.characters.lineage import character_lineage
from ui import page_paths
from ui.text import plain


def lineage_view(character_id: int) -> None:
    found = character_lineage(character_id)
    with st.container(horizontal=True):
        st.metric("Datasets", found.dataset_total, width=140)
        st.metric("Images", found.images, width=140)
        st.metric("Videos", found.videos, width=140)
        st.metric("Posts", sum(found.posts.values()), width=140)
    for line in found.datasets:
        st.text(plain(f"Dataset {line.dataset.name} · {line.dataset.image_count} photo(s) · "
                      f"{line.lora_total} LoRA version(s)"))
        for version in line.loras:
            mark = "★ promoted · " if version.lora.promoted else ""
            st.text(plain(f"    → {mark}LoRA {version.lora.name} (step {version.lora.step}) → "
                          f"{version.images} image(s)"))
    if not found.datasets:
        st.caption("No dataset yet: start on the Datasets page.")
    if found.posts:
        st.text(plain("Posts: " + ", ".join(f"{n} {status}" for status, n in sorted(found.posts.items()))))
    with st.container(horizontal=True):
        st.page_link(page_paths.DATASETS, label="Datasets", icon=":material/photo_library:")
        st.page_link(page_paths.TRAINING, label="LoRA versions", icon=":material/model_training:")
        st.page_link(page_paths.ASSETS, label="Images", icon=":material/perm_media:")
        st.page_link(page_paths.VIDEOS, label="Videos", icon=":material/movie:")
        st.page_link(page_paths.CALENDAR, label="Posts", icon=":material/calendar_month:")
