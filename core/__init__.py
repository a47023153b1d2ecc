"""The studio's domain: settings, state, storage and the job lifecycle.

Imported by the Streamlit pages, the webhook routes and the workers alike, so it never
imports streamlit, the pages, the workers, or heavy ML libraries.
"""
