"""Known vulnerabilities in what the studio ships: the installed runtime set (scripts/runtime_pins.py) through
pip-audit with PyPI's vulnerability data (PyPA advisories + OSV, served by PyPI itself: nothing but PyPI is needed).

Some PyPI mirrors serve a project's JSON (``/pypi/<name>/json``) but not a release's (``/pypi/<name>/<v>/json``),
which pip-audit asks for; it then skips the package. For a skipped package whose installed version is the latest
release, the project JSON's ``vulnerabilities`` (which describe the latest release) answer exactly; any other
skipped package is reported as not audited. Exit status: 1 for a known vulnerability, 2 for packages left
unaudited when STUDIO_AUDIT_STRICT=1 (set it where pypi.org is fully reachable) or when none could be audited
(PyPI unreachable), else 0.

Usage: .venv/bin/python scripts/audit.py (scripts/audit runs it; scripts/test runs that before pytest).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from packaging.utils import canonicalize_name
from runtime_pins import ROOT, closure, top_level

PYPI = os.environ.get("STUDIO_AUDIT_PYPI_URL", "https://pypi.org/pypi")
# Advisories we accept, each with why it cannot reach us. Keep it empty unless a fix does not exist yet.
IGNORED: dict[str, str] = {}


def _pip_audit(pins: Path) -> list[dict]:
    pip_audit = Path(sys.executable).parent / "pip-audit"
    command = [str(pip_audit), "-r", str(pins), "--no-deps", "--disable-pip", "--vulnerability-service", "pypi",
               "--progress-spinner", "off", "-f", "json", *[f"--ignore-vuln={v}" for v in IGNORED]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    try:
        return json.loads(done.stdout)["dependencies"]
    except (json.JSONDecodeError, KeyError):
        sys.exit(f"audit: pip-audit failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def _latest_release_vulns(name: str, version: str) -> list[dict] | None:
    """The project's vulnerabilities when ``version`` is its latest release; None when that cannot tell."""
    try:
        response = httpx.get(f"{PYPI}/{name}/json", timeout=30, follow_redirects=True)
        response.raise_for_status()
        data = response.json()
    except (httpx.HTTPError, ValueError):
        return None
    if data["info"]["version"] != version:
        return None
    return [{"id": v["id"], "fix_versions": v.get("fixed_in", []), "aliases": v.get("aliases", [])}
            for v in data.get("vulnerabilities", []) if not v.get("withdrawn") and v["id"] not in IGNORED]


def audit() -> int:
    started = time.monotonic()
    # torch 2.13.0+cpu: advisories name the public version
    pins = {name: version.split("+", 1)[0] for name, version in closure(top_level([ROOT / "requirements.txt"])).items()}
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as handle:
        handle.write("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        handle.flush()
        dependencies = _pip_audit(Path(handle.name))
    for dependency in dependencies:  # pip-audit leaves the version out of skipped packages
        dependency.setdefault("version", pins[canonicalize_name(dependency["name"])])
    skipped = [d for d in dependencies if "skip_reason" in d]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda d: _latest_release_vulns(d["name"], d["version"]), skipped))
    vulnerable = [(d["name"], d["version"], d["vulns"]) for d in dependencies if d.get("vulns")]
    vulnerable += [(d["name"], d["version"], a) for d, a in zip(skipped, answers, strict=True) if a]
    unaudited = [f"{d['name']} {d['version']}" for d, a in zip(skipped, answers, strict=True) if a is None]

    for name, version, vulns in vulnerable:
        for vuln in vulns:
            fixes = ", ".join(vuln.get("fix_versions") or []) or "none yet"
            print(f"VULNERABLE {name} {version}: {vuln['id']} {' '.join(vuln.get('aliases') or [])} (fixed in {fixes})")
    print(f"audit: {len(pins)} runtime packages, {len(skipped) - len(unaudited)} of them through PyPI's project "
          f"data, {len(vulnerable)} vulnerable, {len(unaudited)} not auditable here"
          f"{' (' + ', '.join(unaudited) + ')' if unaudited else ''}; {time.monotonic() - started:.1f} s")
    if vulnerable:
        return 1
    if len(unaudited) == len(pins):
        print("audit: nothing could be audited (is PyPI reachable?); STUDIO_AUDIT=0 skips the audit")
        return 2
    if unaudited and os.environ.get("STUDIO_AUDIT_STRICT") == "1":
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(audit())
