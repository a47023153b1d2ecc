"""Image-to-video models, one module per family (``wan``: Wan 2.1/2.2 through diffusers)."""
