"""The documentation stays true to the code: every setting is in the README's configuration table, every
relative link and image in the docs exists, every top-level folder says what lives in it, and the commands
and variables the docs name are real."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import typer

from core.config import Settings
from tests.conftest import ROOT

README = ROOT / "README.md"
DOCS = ROOT / "docs"

# STUDIO_* variables that are read by scripts, n8n or the test suite rather than by Settings.
NON_SETTING_VARIABLES = {
    "STUDIO_PORT", "STUDIO_HOST", "STUDIO_VENV", "STUDIO_DEV",  # scripts/run, scripts/setup
    "STUDIO_N8N_HOME", "STUDIO_N8N_VERSION",  # scripts/n8n
    "STUDIO_FFMPEG", "STUDIO_FFPROBE",  # workers/media/ffmpeg.py
    "STUDIO_URL", "STUDIO_POLL_SECONDS", "STUDIO_DRY_RUN", "STUDIO_WEBHOOK_WINDOW_S",  # n8n's environment
    "STUDIO_CHARACTER",  # the CLI's --character and n8n's environment: which character to work for
    "STUDIO_TEST_REDIS_URL", "STUDIO_TEST_POSTGRES_URL", "STUDIO_SCREENSHOTS_DIR",  # the test suite
    "STUDIO_CHAOS_LONG", "STUDIO_CHAOS_GPU",  # tests/chaos
    "STUDIO_AUDIT", "STUDIO_AUDIT_STRICT",  # scripts/audit
}
_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_VARIABLE = re.compile(r"\bSTUDIO_[A-Z0-9][A-Z0-9_]*[A-Z0-9]\b")
_CLI_CALL = re.compile(r"python -m workers ([a-z][a-z-]*)")


def documents() -> list[Path]:
    """The top-level README, every docs/ page and every folder README."""
    return [README, *sorted(DOCS.glob("*.md")), *sorted(ROOT.glob("*/README.md")), *sorted(ROOT.glob(".*/README.md"))]


def heading_anchors(document: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation dropped, spaces to hyphens."""
    prose = _FENCE.sub("", document.read_text(encoding="utf-8"))
    headings = re.findall(r"^#{1,6} +(.+?) *$", prose, re.M)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def environment_names(field: str) -> set[str]:
    """The names a setting is read from: STUDIO_<FIELD>, or its explicit aliases (DATABASE_URL…)."""
    alias = Settings.model_fields[field].validation_alias
    choices = getattr(alias, "choices", None)
    if choices:
        return {str(choice) for choice in choices}
    return {f"STUDIO_{field.upper()}"}


def configuration_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Configuration\n(.*?)(?=^## )", text, re.S | re.M)
    assert match, "README.md has no '## Configuration' section"
    return match.group(1)


def test_every_setting_is_in_the_readme_configuration_table():
    section = configuration_section()
    table = "\n".join(line for line in section.splitlines() if line.startswith("|"))
    missing = [
        min(environment_names(field))
        for field in Settings.model_fields
        if not any(f"`{name}`" in table for name in environment_names(field))
    ]
    assert not missing, f"settings missing from README.md's configuration table: {', '.join(missing)}"


def test_the_readme_names_no_setting_that_does_not_exist():
    known = {name for field in Settings.model_fields for name in environment_names(field)} | NON_SETTING_VARIABLES
    for document in documents():
        unknown = sorted(set(_VARIABLE.findall(document.read_text(encoding="utf-8"))) - known)
        assert not unknown, f"{document.relative_to(ROOT)} names unknown variables: {', '.join(unknown)}"


def test_every_relative_link_and_image_in_the_docs_exists():
    broken = []
    for document in documents():
        prose = _FENCE.sub("", document.read_text(encoding="utf-8"))
        for target in _LINK.findall(prose):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("#"):
                continue  # a URL or an anchor in the same page
            path, _, anchor = target.partition("#")
            linked = document.parent / path
            if not linked.exists():
                broken.append(f"{document.relative_to(ROOT)} → {target}")
            elif anchor and linked.suffix == ".md" and anchor not in heading_anchors(linked):
                broken.append(f"{document.relative_to(ROOT)} → {target} (no such heading)")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_the_readme_shows_a_screenshot_and_a_rendered_architecture_picture():
    text = README.read_text(encoding="utf-8")
    assert "![" in text.split("## ", 1)[0], "the README's introduction has no screenshot"
    assert re.search(r"^```mermaid\n(flowchart|graph) ", text, re.M), "the README has no mermaid flowchart"


def _ignored_by_git(path: Path) -> bool:
    done = subprocess.run(["git", "check-ignore", "-q", str(path)], cwd=ROOT, capture_output=True, check=False)
    return done.returncode == 0


def test_every_top_level_folder_has_a_readme():
    folders = [p for p in ROOT.iterdir() if p.is_dir() and p.name != ".git" and not _ignored_by_git(p)]
    assert {p.name for p in folders} >= {"core", "pages", "workers", "docs", ".streamlit"}
    missing = sorted(p.name for p in folders if not (p / "README.md").is_file())
    assert not missing, f"top-level folders without a README.md: {', '.join(missing)}"


def test_every_cli_command_the_docs_show_exists():
    from workers.cli import app

    commands = set(typer.main.get_command(app).commands)
    for document in documents():
        unknown = sorted(set(_CLI_CALL.findall(document.read_text(encoding="utf-8"))) - commands)
        assert not unknown, f"{document.relative_to(ROOT)} shows unknown CLI commands: {', '.join(unknown)}"


def test_troubleshooting_covers_at_least_twelve_failure_modes_each_with_a_message_and_a_fix():
    text = (DOCS / "TROUBLESHOOTING.md").read_text(encoding="utf-8")
    sections = re.split(r"^## ", text, flags=re.M)[1:]
    assert len(sections) >= 12
    for section in sections:
        title = section.splitlines()[0]
        assert "```" in section, f"'{title}' quotes no message"
        assert "**Fix" in section, f"'{title}' gives no fix"
