"""InfluencerAI Studio: page registry, login gate, the sidebar (character switcher, status) and the character's
scope around the page. Nothing else lives here."""

import streamlit as st

import core.catalogue  # noqa: F401  (registers every job kind the pages create and list)
from core.characters.scope import character_scope
from ui.auth import is_authenticated, login_pages, logout_button, watch_session
from ui.sidebar import render_character_switcher, render_health

st.set_page_config(page_title="InfluencerAI Studio", page_icon=":material/auto_awesome:", layout="wide")

pages = {
    "Studio": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
        st.Page("pages/characters.py", title="Characters", icon=":material/groups:"),
    ],
    "Create": [
        st.Page("pages/datasets.py", title="Datasets", icon=":material/photo_library:"),
        st.Page("pages/captions.py", title="Captions", icon=":material/edit_note:"),
        st.Page("pages/training.py", title="Training", icon=":material/model_training:"),
        st.Page("pages/generate.py", title="Generate", icon=":material/image:"),
        st.Page("pages/assets.py", title="Assets", icon=":material/perm_media:"),
        st.Page("pages/videos.py", title="Videos", icon=":material/movie:"),
    ],
    "Publish": [
        st.Page("pages/calendar.py", title="Calendar", icon=":material/calendar_month:"),
        st.Page("pages/accounts.py", title="Social accounts", icon=":material/share:"),
        st.Page("pages/automation.py", title="Automation", icon=":material/account_tree:"),
    ],
    "Operate": [
        st.Page("pages/jobs.py", title="Jobs", icon=":material/work_history:"),
        st.Page("pages/monitoring.py", title="Monitoring", icon=":material/monitoring:"),
        st.Page("pages/models.py", title="Models", icon=":material/deployed_code:"),
    ],
}

if is_authenticated():
    navigation = st.navigation(pages)
    character_id: int | None = render_character_switcher()  # scopes the page: lists, defaults, new rows
    render_health()
    logout_button()
    watch_session()  # an open page turns into the login when the session expires
else:
    # Every URL shows the login form, so a deep link (/jobs) survives logging in.
    navigation = st.navigation(login_pages(pages), position="hidden")
    character_id = None
with character_scope(character_id):
    navigation.run()
