from ui.widgets import coming_soon

coming_soon("Generate", 6, [
    "Images from workflow templates with one or more LoRA versions at chosen strengths.",
    "Every image stored with its full parameters; an asset library with collections.",
])
