from ui.widgets import coming_soon

coming_soon("Calendar", 8, [
    "Content plans from the character's persona, on a drag-and-drop calendar.",
    "Empty slots that produce their own content; posts with AI-disclosure flags.",
])
