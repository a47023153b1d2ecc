"""Caption review: edit, review and bulk-fix captions; export and import the training folder."""

import streamlit as st

from core.datasets import captions, datasets
from core.datasets.tokens import TOKEN_LIMIT
from core.errors import StudioError
from ui.captions import caption_editor, drafts, render_bulk_edit, save_drafts
from ui.datasets import dataset_picker, render_import_report

st.title("Captions")

dataset = dataset_picker("captions")
if dataset is None:
    st.stop()

st.caption(f"{dataset.name} · trigger word: {dataset.trigger_word or '—'} · CLIP token limit {TOKEN_LIMIT}")
filters = st.columns([3, 1])
which = filters[0].segmented_control(
    "Show", ["all", "unreviewed", "missing", "long"], default="all", key="captions.filter",
    format_func={"all": "All", "unreviewed": "Unreviewed", "missing": "Missing caption",
                 "long": "Long"}.get,
)
per_page = filters[1].selectbox("Per page", [12, 24, 48], key="captions.per_page")
page = datasets.list_images(dataset.id, which=which or "all", page=st.session_state.get("captions.page", 1),
                            page_size=per_page)

pending = drafts()
if pending:
    st.warning(f"{len(pending)} unsaved edit(s) — they are kept while you move between pages.")
    if st.button("Save all edits", key="captions.save_all", type="primary"):
        save_drafts()
        st.rerun()

selected = [image.id for image in page.items if caption_editor(image, dataset.trigger_word)]
st.number_input(f"Page (of {page.pages}) · {page.total} image(s)", 1, page.pages, key="captions.page")
if selected and st.button(f"Mark {len(selected)} selected as reviewed", key="captions.mark_reviewed"):
    captions.set_reviewed(dataset.id, selected)
    st.rerun()

with st.expander("Bulk edit"):
    render_bulk_edit(dataset, selected)

with st.expander("Export and import the training folder"):
    st.write("A zip of `image.png` + `image.txt` pairs: the layout kohya and the diffusers scripts read.")
    if st.button("Prepare export", key="captions.export"):
        try:
            st.session_state["captions.export_zip"] = (dataset.id, datasets.export_training_zip(dataset.id))
        except StudioError as error:
            st.error(str(error))
    exported = st.session_state.get("captions.export_zip")
    if exported and exported[0] == dataset.id:
        st.download_button("Download zip", exported[1], file_name=f"{dataset.name}.zip", mime="application/zip",
                           key="captions.download")
    archive = st.file_uploader("Import a training-folder zip (captions come along)", type=["zip"],
                               key="captions.import_zip")
    if archive is not None and st.button("Import zip", key="captions.import"):
        render_import_report(datasets.import_files(dataset.id, [(archive.name, archive.getvalue())]))
