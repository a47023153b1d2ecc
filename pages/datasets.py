from ui.widgets import coming_soon

coming_soon("Datasets", 4, [
    "Upload images or a zip per character; every file verified, deduplicated and thumbnailed.",
    "Auto-captions with BLIP, then a caption editor with bulk find/replace and trigger words.",
    "A pre-flight check: near-duplicates, small or blurry images, missing captions.",
])
