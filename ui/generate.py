"""The generate page's parts: the request form (template, LoRAs with strengths, prompt with the
prompt library, settings, img2img) and the results, which fill in live as each batch finishes.

Keys start with "generate.". Actions that change the form from a result card ("reuse these
settings", "use as img2img start") store a pending fill and rerun; the form applies it before
its widgets exist, which is the one moment Streamlit lets code set a widget's value.

The fields the page itself loads values into (from a template, a reused image or a snippet) are a
``LoadedForm`` (see ui.loaded_form for why their keys move with each load).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.characters.characters import current_character
from core.characters.references import reference_images
from core.errors import StudioError
from core.generation import prompt_library
from core.generation import requests as generation
from core.generation.templates import (
    DEFAULT_FAMILY,
    SCHEDULERS,
    GenerationTemplate,
    load_templates,
    schedulers_for,
)
from core.jobs.lifecycle import cancel_job
from core.library import assets
from core.library.collections import add_to_collection, list_collections
from core.models import Asset, Job, JobStatus, LoraModel
from core.models_registry import registry
from core.training import runs as training
from core.training.families import family_spec
from ui.auth import guard
from ui.loaded_form import LoadedForm
from ui.text import literal, plain
from ui.widgets import hand_to_video_page, live_job_list, status_badge, stored_id

TEMPLATE = "generate.template"
INIT_ASSET = "generate.init_asset"  # img2img start image (asset id), set from a result card
_FILL = "generate.fill"  # a pending request to load into the form on the next run
_PAGE = "generate.page"
FORM = LoadedForm("generate")
_SETTINGS = ("scheduler", "steps", "cfg", "width", "height")
RANDOM, FIXED = "Random", "Fixed"
CARD_PX = 176  # a result card: its thumbnail's width (no border of its own: the job's box frames them)
BLOCK_PADDING_PX = 34  # a bordered container's padding and border, both sides
JOBS_PER_PAGE = 5


def _key(name: str) -> str:
    return f"generate.{name}"


def strength_field(lora_id: int) -> str:
    return f"strength.{lora_id}"


# --- form state ----------------------------------------------------------------------------------


def _template_values(template: GenerationTemplate) -> dict[str, Any]:
    return {name: getattr(template, name) for name in _SETTINGS} | {"negative": template.negative_prompt}


def _on_template_change(templates: dict[str, GenerationTemplate]) -> None:
    FORM.load(_template_values(templates[st.session_state[TEMPLATE]]))


def _apply_fill(templates: dict[str, GenerationTemplate]) -> None:
    """Apply a pending "reuse these settings" request to the widgets, before they are drawn."""
    fill = st.session_state.pop(_FILL, None)
    if not fill:
        return
    if fill.get("template") in templates:
        st.session_state[TEMPLATE] = fill["template"]
    values: dict[str, Any] = {name: fill[name] for name in _SETTINGS if name in fill}
    values |= {"prompt": fill.get("prompt", ""), "negative": fill.get("negative_prompt", ""), "count": 1,
               "loras": [lora["lora_id"] for lora in fill.get("loras", [])]}
    values |= {strength_field(lora["lora_id"]): float(lora["strength"]) for lora in fill.get("loras", [])}
    if "seed" in fill:
        values |= {"seed_mode": FIXED, "seed": int(fill["seed"])}
    if "img2img_strength" in fill:
        values["img2img_strength"] = float(fill["img2img_strength"])
    st.session_state[INIT_ASSET] = fill.get("init_asset_id")
    FORM.load(values)


def _initial_template(templates: dict[str, GenerationTemplate]) -> None:
    if st.session_state.get(TEMPLATE) in templates:
        return
    # The switcher's character's promoted LoRA (else one promoted without a character).
    promoted = training.promoted_lora(current_character().id) or training.promoted_lora(None)
    preferred = [f"{promoted.family}-lora", *(n for n, t in templates.items() if t.family == promoted.family)
                 ] if promoted else []
    # Without one, the studio's default family (as for an API request), not whichever template sorts first.
    preferred.append(f"{DEFAULT_FAMILY}-lora")
    name = next((n for n in preferred if n in templates), next(iter(templates)))
    st.session_state[TEMPLATE] = name
    values = _template_values(templates[name])
    if promoted and promoted.family == templates[name].family:
        values["loras"] = [promoted.id]
    FORM.load(values)


# --- the form ------------------------------------------------------------------------------------


def _base_model_picker(template: GenerationTemplate) -> str | None:
    """The template's own base model, or an installed model of its family (name · family · format)."""
    installed = {m.name: m for m in registry.ready_models(template.family)}
    key = _key(f"base_model.{template.name}")
    if st.session_state.get(key) not in (None, "", *installed):  # removed since
        st.session_state.pop(key)
    chosen = st.selectbox(
        "Base model", ["", *installed], key=key,
        format_func=lambda n: plain(registry.describe(installed[n])) if n else "The template's own",
        help=plain(f"{family_spec(template.family).label} models installed on the Models page, or the template's "
                   f"own: {template.base_model}."))
    return chosen or None


def _lora_label(lora: LoraModel) -> str:
    return plain(f"{lora.name}{' ★' if lora.promoted else ''}")


def _lora_picker(template: GenerationTemplate) -> list[dict[str, Any]]:
    loras = {lora.id: lora for lora in training.list_loras(page_size=100).items if lora.family == template.family}
    chosen = FORM.value("loras", [])
    if any(i not in loras for i in chosen):  # a LoRA of another family, or one deleted since
        FORM.load({"loras": [i for i in chosen if i in loras]})
    chosen = st.multiselect("LoRAs", list(loras), default=FORM.value("loras", []), key=FORM.key("loras"),
                            format_func=lambda i: _lora_label(loras[i]),
                            help=f"{template.family} LoRA versions (★ promoted). Each gets its own strength.",
                            placeholder="No LoRA: the base model alone")
    picked = []
    for lora_id in chosen:
        field = strength_field(lora_id)
        strength = st.slider(f"Strength · {loras[lora_id].name}", -2.0, 2.0, step=0.05, key=FORM.key(field),
                             value=FORM.value(field, template.lora_strength))
        picked.append({"lora_id": lora_id, "strength": strength})
    return picked


def _insert_snippet(field: str, select_key: str, snippets: dict[int, str]) -> None:
    if (chosen := st.session_state.get(select_key)) is not None:
        text = FORM.value(field, "")
        FORM.load({field: prompt_library.insert_snippet(text, snippets[chosen])})


def _snippet_row(field: str, *, negative: bool) -> None:
    """The prompt library's insert and save controls for the "prompt" or "negative" field."""
    snippets = {s.id: s for s in prompt_library.list_snippets(negative=negative, page_size=200).items}
    target = _key(field)  # these controls' own keys stay fixed: the page never loads values into them
    select_key = f"{target}.snippet"
    # One wrapping row: the box as wide as its placeholder needs, the buttons as wide as their labels.
    with st.container(horizontal=True, vertical_alignment="bottom", gap="small"):
        st.selectbox("Prompt library", list(snippets),
                     format_func=lambda i: plain(f"{snippets[i].name}: {snippets[i].text}"), key=select_key,
                     index=None, placeholder="Insert a saved snippet…", label_visibility="collapsed",
                     width=220)  # never narrower than its placeholder: the buttons wrap below instead
        st.button("Insert", key=f"{target}.insert", on_click=guard(_insert_snippet),
                  args=(field, select_key, {i: s.text for i, s in snippets.items()}), disabled=not snippets)
        with st.popover("Save", icon=":material/bookmark_add:", help="Save this box's text to the prompt library"):
            name = st.text_input("Snippet name", key=f"{target}.snippet_name", max_chars=120)
            if st.button("Save snippet", key=f"{target}.save", type="primary"):
                try:
                    prompt_library.create_snippet(name=name, text=FORM.value(field, ""), negative=negative)
                    st.toast(f"Saved {literal(repr(name))} to the prompt library")
                except StudioError as error:
                    st.error(literal(error))


def _settings(template: GenerationTemplate) -> dict[str, Any]:
    now = {name: FORM.value(name) for name in _SETTINGS}
    with st.expander(f"Settings · {SCHEDULERS[now['scheduler']]}, {now['steps']} steps, "
                     f"{now['width']}×{now['height']}"):
        # The scheduler's names are long: a row of its own; the numbers in pairs (rows of two columns).
        # Only the samplers of the template's family (the DiTs have their own flow-matching Euler).
        options = schedulers_for(template.family)
        current = now["scheduler"] if now["scheduler"] in options else template.scheduler
        scheduler = st.selectbox("Scheduler", options, format_func=SCHEDULERS.__getitem__,
                                 index=options.index(current), key=FORM.key("scheduler"))
        left, right = st.columns(2)
        steps = left.number_input("Steps", 1, 150, value=now["steps"], key=FORM.key("steps"))
        cfg = right.number_input("CFG scale", 0.0, 30.0, value=float(now["cfg"]), step=0.5, key=FORM.key("cfg"))
        left, right = st.columns(2)
        width = left.number_input("Width", 64, 2048, value=now["width"], step=8, key=FORM.key("width"))
        height = right.number_input("Height", 64, 2048, value=now["height"], step=8, key=FORM.key("height"))
        left, right = st.columns(2, vertical_alignment="bottom")
        count = left.number_input("Images", 1, 64, value=FORM.value("count", 4), key=FORM.key("count"),
                                  help=f"made in batches of {template.batch_size or 'the worker default'}")
        mode = right.segmented_control("Seed", [RANDOM, FIXED], default=FORM.value("seed_mode", RANDOM),
                                       key=FORM.key("seed_mode"), required=True)
        seed = st.number_input("Seed value", 0, 2**32 - 1, value=FORM.value("seed", 0), key=FORM.key("seed"),
                               disabled=mode != FIXED, help="image i of the request uses seed + i")
    return {"scheduler": scheduler, "steps": int(steps), "cfg": float(cfg), "width": int(width),
            "height": int(height), "count": int(count), "seed": int(seed) if mode == FIXED else None}


def _img2img() -> dict[str, Any]:
    asset_id = st.session_state.get(INIT_ASSET)
    if asset_id is None:
        return {}
    try:
        asset = assets.get_asset(asset_id)
    except StudioError:
        st.session_state[INIT_ASSET] = None
        return {}
    with st.container(border=True):
        left, right = st.columns([1, 3])
        left.image(_thumbnail(asset.thumbnail_key or asset.key, stored_id(asset)))
        strength = right.slider("img2img strength", 0.05, 1.0, value=FORM.value("img2img_strength", 0.6), step=0.05,
                                key=FORM.key("img2img_strength"),
                                help="how far the result may move away from the start image")
        if right.button("Stop using this start image", key=_key("img2img_clear")):
            st.session_state[INIT_ASSET] = None
            st.rerun()
    return {"init_asset_id": asset.id, "img2img_strength": strength}


def _character_references(template: GenerationTemplate) -> dict[str, Any]:
    """With a family that edits from reference images (FLUX.2 [klein]): the character's reference images as the
    pictures it is made from, so the face stays hers (the result is scored by likeness like any image)."""
    limit = family_spec(template.family).reference_images
    if not limit:
        return {}
    character = current_character()
    references = reference_images(stored_id(character))[:limit]
    if not references:
        st.caption(literal(f"{template.label} can keep a face from reference images: add some to {character.name} "
                           "on the Characters page."))
        return {}
    use = st.toggle(f"Keep the face: made from {character.name}'s {len(references)} reference image(s)",
                    value=FORM.value("use_references", True), key=FORM.key("use_references"),
                    help=f"{template.label} edits from up to {limit} reference images (the first ones of the "
                         "character's Reference images tab).")
    if not use:
        return {}
    with st.container(horizontal=True):
        for asset in references:
            st.image(_thumbnail(asset.thumbnail_key or asset.key, stored_id(asset)), width=72)
    return {"reference_asset_ids": [stored_id(asset) for asset in references]}


def request_form() -> None:
    """The request form; a valid submit queues a job and shows it first among the results."""
    catalogue = load_templates()
    if catalogue.errors:
        with st.expander(f":material/warning: {len(catalogue.errors)} template file(s) refused"):
            for message in catalogue.errors.values():
                st.text(plain(message))
    templates = catalogue.templates
    if not templates:
        st.error("No generation templates found. Add a .yaml file to the workflows/generation folder.")
        return
    _apply_fill(templates)
    _initial_template(templates)
    name = st.selectbox("Template", list(templates), key=TEMPLATE, on_change=guard(_on_template_change),
    args=(templates,),
                        format_func=lambda n: plain(f"{templates[n].label} ({n})"))
    template = templates[name]
    if template.description:
        st.caption(literal(template.description))
    base_model = _base_model_picker(template)
    loras = _lora_picker(template)
    prompt = st.text_area("Prompt", value=FORM.value("prompt", ""), key=FORM.key("prompt"), height=110, max_chars=2000,
                          placeholder="ohwx woman, candid photo at a café, soft window light")
    _snippet_row("prompt", negative=False)
    negative = st.text_area("Negative prompt", value=FORM.value("negative", ""), key=FORM.key("negative"), height=70,
                            max_chars=2000)
    _snippet_row("negative", negative=True)
    settings = _settings(template)
    start = _img2img()
    references = _character_references(template)
    if st.button("Generate", type="primary", icon=":material/auto_awesome:", key=_key("submit"),
                 width="stretch"):
        try:
            job = generation.submit_generation(template=name, prompt=prompt, negative_prompt=negative, loras=loras,
                                               base_model=base_model, **settings, **start, **references)
        except StudioError as error:
            st.error(literal(error))
            return
        st.session_state[_PAGE] = 1
        st.toast(f"Queued {settings['count']} image(s): job {job.id[:8]}")


# --- results -------------------------------------------------------------------------------------


@st.cache_data(max_entries=512, show_spinner=False)
def _thumbnail(key: str, asset_id: int) -> bytes:
    # Keyed by the storage key: an image is rewritten only when a redelivered job redoes it.
    return assets.read_thumbnail(assets.get_asset(asset_id))


def _reuse(asset: Asset) -> None:
    st.session_state[_FILL] = generation.reuse_request(asset.meta)


def _use_as_start(asset: Asset) -> None:
    st.session_state[INIT_ASSET] = asset.id


def _card_actions(asset: Asset) -> None:
    meta = asset.meta
    with st.popover("Actions", icon=":material/more_horiz:"):
        if st.button("Reuse these settings", key=f"generate.reuse.{asset.id}", icon=":material/replay:"):
            _reuse(asset)
            st.rerun()
        if st.button("Use as img2img start", key=f"generate.start.{asset.id}", icon=":material/image_search:"):
            _use_as_start(asset)
            st.rerun()
        st.link_button("Download PNG", assets.download_url(asset), icon=":material/download:")
        _add_to_collection(asset)
        st.caption("Prompt")
        st.text(plain(meta.get("prompt", "")) or "—")
        if meta.get("negative_prompt"):
            st.caption("Negative prompt")
            st.text(plain(meta["negative_prompt"]))
        st.caption(plain(f"{meta.get('width')}×{meta.get('height')} · template {meta.get('template')} · "
                         f"base {meta.get('base_model')}"))


def _add_to_collection(asset: Asset) -> None:
    collections = {c.id: c.name for c in list_collections(page_size=100).items}
    if not collections:
        st.caption("No collections yet: create one on the Assets page.")
        return
    left, right = st.columns([3, 2], vertical_alignment="bottom")
    chosen = left.selectbox("Collection", list(collections), format_func=lambda i: plain(collections[i]),
                            key=f"generate.collection.{asset.id}")
    if right.button("Add", key=f"generate.collect.{asset.id}"):
        add_to_collection(chosen, [stored_id(asset)])
        st.toast(f"Added to {literal(collections[chosen])}")


def _image_card(asset: Asset) -> None:
    meta = asset.meta
    # A fixed card width in a wrapping row: as many cards per row as the column holds, each thumbnail
    # CARD_PX wide, and the metadata on two short lines.
    with st.container(width=CARD_PX):
        st.image(_thumbnail(asset.thumbnail_key or asset.key, stored_id(asset)), width="stretch")
        st.caption(f"seed {meta.get('seed')} · CFG {meta.get('cfg')}  \n"
                   f"{meta.get('steps')} steps · {SCHEDULERS.get(meta.get('scheduler', ''), '')}")
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            st.checkbox("Select", key=f"generate.select.{asset.id}")
            _card_actions(asset)


def _job_block(job: Job) -> None:
    # A one-image job is a box as wide as its card, so such jobs sit side by side (two at 1280 px, three
    # at 1920 px); a bigger job takes the row and its cards wrap inside it.
    images = generation.job_images(job.id)
    with st.container(border=True, width=CARD_PX + BLOCK_PADDING_PX if len(images) == 1 else "stretch"):
        with st.container(horizontal=True, vertical_alignment="center"):
            status_badge(job.status)
            if job.status in (JobStatus.QUEUED, JobStatus.RUNNING) and st.button(
                    "Cancel", key=f"generate.cancel.{job.id}", icon=":material/cancel:"):
                cancel_job(job.id)
        st.text(plain(job.payload.get("prompt", "")))
        if job.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            st.progress(job.progress, text=literal(job.progress_message or "waiting for a GPU worker…"))
        elif job.status == JobStatus.FAILED:
            st.error(literal(job.error or "failed"))
        with st.container(horizontal=True, gap="small"):
            for asset in images:
                _image_card(asset)


def _selected_ids() -> list[int]:
    prefix = "generate.select."
    return [int(k[len(prefix):]) for k, v in st.session_state.items()
            if isinstance(k, str) and k.startswith(prefix) and v]


def _video_button() -> None:
    selected = _selected_ids()
    if st.button(f"Make a video from selected ({len(selected)})", disabled=not selected, key=_key("to_video"),
                 icon=":material/movie:"):
        hand_to_video_page(selected)


def results() -> None:
    """Recent generations; refreshes every second while one of them is still running."""
    live_job_list(lambda page: generation.list_generations(page=page, page_size=JOBS_PER_PAGE), _job_block,
                  page_key=_PAGE, header=_video_button, side_by_side=True,
                  empty="Nothing generated yet. Pick a template and a LoRA, write a prompt, and press Generate.")
