from ui.widgets import coming_soon

coming_soon("Monitoring", 10, [
    "Queue depths, live workers, throughput and failure rates per job kind.",
    "Database, Redis and storage health with latency; GPU, CPU and RAM use.",
])
