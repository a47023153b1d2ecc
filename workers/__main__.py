from workers.cli import app

app(prog_name="python -m workers")
