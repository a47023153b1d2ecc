"""Prints ``name==version`` for every installed distribution the studio ships: requirements.txt (with the extras it
asks for) plus openai-whisper (installed apart, see scripts/setup), and everything they require, transitively, as
installed in this environment. requirements.txt allows ranges, so this resolved set, not the file, is what runs.

Usage: python scripts/runtime_pins.py [requirements.txt ...]  (run with the virtualenv's python)
"""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
EXTRA_TOP_LEVEL = ["openai-whisper"]  # installed with --no-deps by scripts/setup
NOT_SHIPPED = {"triton"}  # whisper's GPU-only dependency, deliberately not installed (scripts/setup)


def top_level(files: list[Path]) -> list[Requirement]:
    wanted = []
    for file in files:
        for line in file.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                wanted.append(Requirement(line))
    return wanted + [Requirement(name) for name in EXTRA_TOP_LEVEL]


def _applies(requirement: Requirement, extras: set[str]) -> bool:
    if requirement.marker is None:
        return True
    environment = default_environment()
    return any(requirement.marker.evaluate({**environment, "extra": extra}) for extra in extras | {""})


def closure(roots: list[Requirement]) -> dict[str, str]:
    """Installed name → version for the roots and their requirements (with the extras asked for)."""
    found: dict[str, str] = {}
    queue = [(r, set(r.extras)) for r in roots]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        requirement, extras = queue.pop()
        name = canonicalize_name(requirement.name)
        if name in NOT_SHIPPED or (name, frozenset(extras)) in seen:
            continue
        seen.add((name, frozenset(extras)))
        try:
            distribution = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            sys.exit(f"runtime_pins: {requirement.name} is required but not installed (run scripts/setup)")
        found[name] = distribution.version
        for line in distribution.requires or []:
            try:
                child = Requirement(line)
            except InvalidRequirement:
                continue
            if _applies(child, extras):
                queue.append((child, set(child.extras)))
    return found


def main(argv: list[str]) -> None:
    files = [Path(a) for a in argv] or [ROOT / "requirements.txt"]
    for name, version in sorted(closure(top_level(files)).items()):
        print(f"{name}=={version.split('+', 1)[0]}")  # torch 2.13.0+cpu: advisories name the public version


if __name__ == "__main__":
    main(sys.argv[1:])
