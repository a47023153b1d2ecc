from workers.cli import run_cli

run_cli()
