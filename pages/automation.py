from ui.widgets import coming_soon

coming_soon("Automation", 9, [
    "n8n pipelines (train → generate → video → notify) started and polled through the webhook API.",
    "Today the API already serves `GET /api/health`, `POST /api/jobs` and `GET /api/jobs/{id}`.",
])
