"""The banner that says publishing is a dry run, so nobody takes a scheduled post for one that will go out.

``scripts/run`` turns the dry run on in development, and with it scheduling stops requiring a connected
account: without the banner a post scheduled there looks like it will really be published.
"""

from __future__ import annotations

import streamlit as st

from core.config import get_settings

BANNER = ("**Dry run:** publishing checks each post and records the calls it would make, but sends nothing "
          "to any platform, so posts can be scheduled without a connected account. Set "
          "`STUDIO_PUBLISH_DRY_RUN=false` (and connect accounts) to publish for real.")


def dry_run_banner() -> None:
    """Shown only while ``STUDIO_PUBLISH_DRY_RUN`` is on."""
    if get_settings().publish_dry_run:
        st.warning(BANNER, icon=":material/science:")
