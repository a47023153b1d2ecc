"""Social accounts: connect Instagram, Facebook, YouTube Shorts and TikTok (OAuth or a token entered by
hand), see their token status, refresh or disconnect them. Tokens are never shown."""

import streamlit as st

from ui.accounts import account_list, dry_run_notice, manual_form, oauth_result, provider_cards, show_flash

st.title("Social accounts")
oauth_result()
show_flash()
dry_run_notice()

st.subheader("Connect with OAuth")
provider_cards()

st.subheader("Connected accounts")
account_list()

manual_form()
