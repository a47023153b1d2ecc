"""The Datasets page: create, upload (images or a zip), browse, check and auto-caption a character's
images. ``picker`` (the dataset picker) and ``gallery`` (the import report) are shared with the
Captions and Training pages. Keys start with "datasets."."""
