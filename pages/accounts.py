from ui.widgets import coming_soon

coming_soon("Social accounts", 8, [
    "Instagram, Facebook, YouTube Shorts and TikTok connected through OAuth.",
    "Scheduled posting with retries and a record of every published post.",
])
