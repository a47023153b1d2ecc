"""Streamlit building blocks shared by app.py and the pages (login gate, sidebar, job widgets)."""
