"""A character's reference images: upload (validated like every upload), see, remove."""

from __future__ import annotations

import streamlit as st

from core.characters import references
from core.errors import StudioError
from core.infra.storage import get_object_store
from core.library.assets import AssetFilter, list_assets
from core.models import Character
from ui.auth import guard
from ui.feedback import flash, run_action
from ui.text import literal, plain

FLASH = "characters.flash"


def _remove(character_id: int, asset_id: int) -> None:
    def act() -> str:
        references.remove_reference_image(character_id=character_id, asset_id=asset_id)
        return "Reference image moved to the trash."

    run_action(FLASH, act)


def _pick(character_id: int, key: str) -> None:
    def act() -> str:
        picked = list(st.session_state.get(key) or [])
        for asset_id in picked:
            references.add_reference_from_asset(character_id=character_id, asset_id=asset_id)
        return f"Added {len(picked)} reference image(s) from the library."

    run_action(FLASH, act)


def _library_picker(character_id: int) -> None:
    """Pick references among the character's latest library images."""
    recent = list_assets(AssetFilter(kind="image", character_id=character_id), page_size=48).items
    choices = {a.id or 0: f"#{a.id} · {a.prompt[:50] or a.source}" for a in recent if a.source != "reference"}
    if not choices:
        return
    key = f"characters.ref.pick.{character_id}"
    with st.container(horizontal=True, vertical_alignment="bottom"):
        st.multiselect("Or pick from the library", list(choices), format_func=lambda i: plain(choices[i]), key=key,
                       max_selections=references.MAX_REFERENCES, width=420)
        st.button("Use as references", key=f"{key}.add", on_click=guard(_pick), args=(character_id, key))


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
    _library_picker(cid)
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
