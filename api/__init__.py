"""The HTTP API embedded in the Streamlit server, for n8n and scripts (see api/README.md)."""
