"""A character's reference images: upload (validated like every upload), see, remove."""

from __future__ import annotations

import streamlit as st

from core.characters import references
from core.errors import StudioError
from core.infra.storage import get_object_store
from core.models import Character
from ui.auth import guard
from ui.feedback import flash, run_action
from ui.text import literal

FLASH = "characters.flash"


def _remove(character_id: int, asset_id: int) -> None:
    def act() -> str:
        references.remove_reference_image(character_id=character_id, asset_id=asset_id)
        return "Reference image moved to the trash."

    run_action(FLASH, act)


def reference_images(character: Character) -> None:
    cid = character.id or 0
    shown = references.reference_images(cid)
    st.caption(f"{len(shown)} of at most {references.MAX_REFERENCES} reference images: what the character looks "
               "like, for reference-conditioned generation.")
    with st.container(horizontal=True):
        for asset in shown:
            with st.container(width=180):
                st.image(get_object_store().get_bytes(asset.thumbnail_key or asset.key), width=160)
                st.button("Remove", key=f"characters.ref.remove.{asset.id}", on_click=guard(_remove),
                          args=(cid, asset.id or 0))
    uploads = st.file_uploader("Add reference images", type=["png", "jpg", "jpeg", "webp"], accept_multiple_files=True,
                               key=f"characters.ref.upload.{cid}.{len(shown)}")
    if not uploads:
        return
    added, refused = 0, []
    for upload in uploads:
        try:
            references.add_reference_image(character_id=cid, data=upload.getvalue(), filename=upload.name)
            added += 1
        except StudioError as error:
            refused.append(str(error))
    if not added:
        for reason in refused:
            st.error(literal(reason))
        return
    flash(FLASH, "info" if refused else "success", f"Added {added} reference image(s).", refused)
    st.rerun()  # a fresh uploader (its key counts the images), the new thumbnails shown
