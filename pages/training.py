from ui.widgets import coming_soon

coming_soon("Training", 5, [
    "LoRA configs with presets (SD 1.5, SD 1.5 HQ, SDXL, tiny offline demo) and a VRAM estimate.",
    "A live loss chart, sample images during training, checkpoints and resume after a crash.",
])
