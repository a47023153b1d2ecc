"""The Configs section: the LoRA configs, paged, with clone, make default, delete, edit and new."""

from __future__ import annotations

import functools

import streamlit as st

from core.errors import NotFound, StudioError
from core.models import LoraConfig
from core.training.configs import (
    clone_config,
    create_config,
    delete_config,
    get_config,
    list_configs,
    params_of,
    set_default_config,
    update_config,
)
from core.training.params import LoraParams
from ui.auth import guard
from ui.feedback import flash, run_action, show_flash
from ui.text import literal, plain
from ui.training.choices import chosen_config, clamp_page, config_label
from ui.training.navigation import FLASH
from ui.training.param_form import forget_form, param_form
from ui.widgets import pick


def _clone(config_id: int) -> str:
    copy = clone_config(config_id)
    st.session_state["training.configs.selected"] = copy.id
    return f"Cloned as {copy.name!r}."


def _make_default(config_id: int) -> str:
    return f"{set_default_config(config_id).name!r} is now the default config."


def _delete(config_id: int, name: str) -> str:
    delete_config(config_id)
    st.session_state.pop("training.configs.selected", None)
    return f"Deleted {name!r}."


def configs_section() -> None:
    show_flash(FLASH)
    with st.expander("New config"):
        _new_config()
    table = st.container()  # drawn above the pager, filled once the pager's page size is known
    pager = st.columns([4, 1])
    size = pager[1].selectbox("Per page", [10, 25, 50], key="training.configs.page_size")
    page = list_configs(page=st.session_state.get("training.configs.page", 1), page_size=size)
    if clamp_page("training.configs.page", page.pages):
        page = list_configs(page=page.pages, page_size=size)
    rows = []
    for config in page.items:  # names and descriptions are user text: plain, like every table cell
        params = params_of(config)
        rows.append({"default": "★" if config.is_default else "", "name": plain(config.name), "preset": config.preset,
                     "model": params.family, "resolution": params.resolution, "rank": params.rank,
                     "duration": f"{getattr(params, params.duration_unit)} {params.duration_unit}",
                     "description": plain(config.description)})
    table.dataframe(rows, hide_index=True)
    pager[0].number_input(f"Page (of {page.pages}) · {page.total} config(s)", 1, page.pages,
                          key="training.configs.page")
    configs = {c.id: c for c in page.items if c.id is not None}
    if "training.configs.selected" not in st.session_state:  # open the default first
        st.session_state["training.configs.selected"] = next((i for i, c in configs.items() if c.is_default), None)
    wanted = st.session_state.get("training.configs.selected")
    if wanted is not None and wanted not in configs:
        try:
            configs = {wanted: get_config(wanted), **configs}
        except NotFound:
            st.session_state.pop("training.configs.selected", None)
    if not configs:
        st.info("No configs on this page.")
        return
    config_id = pick("Open config", list(configs), lambda i: config_label(configs[i]),
                      state="training.configs.selected", key="training.configs.open")
    config = configs[config_id]
    actions = st.columns(4)
    actions[0].button("Clone", key="training.configs.clone", on_click=guard(run_action),
                      args=(FLASH, functools.partial(_clone, config_id)), icon=":material/content_copy:")
    actions[1].button("Make default", key="training.configs.default", disabled=config.is_default,
                      on_click=guard(run_action), args=(FLASH, functools.partial(_make_default, config_id)))
    confirm = actions[2].checkbox(f"Yes, delete {literal(config.name)}", key=f"training.configs.confirm.{config_id}")
    actions[3].button("Delete", key="training.configs.delete", disabled=not confirm, type="primary",
                      on_click=guard(run_action), args=(FLASH, functools.partial(_delete, config_id, config.name)))
    with st.expander(f"Edit {literal(config.name)}"):
        _edit_config(config)


def _edit_config(config: LoraConfig) -> None:
    prefix = f"training.configs.edit.{config.id}"
    name = st.text_input("Name", value=config.name, key=f"{prefix}._name", max_chars=120)
    description = st.text_area("Description", value=config.description, key=f"{prefix}._description",
                               max_chars=2000)
    values = param_form(prefix, params_of(config).model_dump(mode="json"))
    if st.button("Save config", key="training.configs.save", type="primary"):
        try:
            update_config(config.id or 0, name=name, params=values, description=description)
        except StudioError as error:
            st.error(literal(error))
            return
        flash(FLASH, "success", f"Saved {name!r}.")
        st.rerun()


def _new_config() -> None:
    base = chosen_config()
    prefix = f"training.configs.new.{base.id if base else 0}"
    if base is not None:
        st.caption(f"Starts from {literal(repr(base.name))} (the config chosen in the wizard, else the default).")
    name = st.text_input("Name", key="training.configs.new_name", max_chars=120)
    description = st.text_area("Description", key="training.configs.new_description", max_chars=2000)
    make_default = st.toggle("Make it the default", key="training.configs.new_default")
    values = param_form(prefix, (params_of(base) if base else LoraParams()).model_dump(mode="json"))
    if st.button("Create config", key="training.configs.create", type="primary"):
        try:
            created = create_config(name=name, params=values, description=description, make_default=make_default)
        except StudioError as error:
            st.error(literal(error))
            return
        forget_form(prefix)
        st.session_state["training.configs.selected"] = created.id
        flash(FLASH, "success", f"Created {created.name!r}.")
        st.rerun()
