"""Build the dashboard (web/) into conveyor/gateway/static with npm.

Run as `python scripts/build_dashboard.py`; `--check` builds into a temporary folder and
exits 1 when the committed files differ (stale build, or a source changed without a
rebuild). Needs node and npm; dependencies come from web/package-lock.json (`npm ci`).
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
STATIC = ROOT / "conveyor" / "gateway" / "static"


def _files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


def build(out: Path) -> None:
    """`npm ci`, type-check and bundle into out."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to build the dashboard")
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=WEB, check=True)
    subprocess.run([npm, "run", "--silent", "typecheck"], cwd=WEB, check=True)
    vite = ["vite", "build", "--logLevel", "warn", "--outDir", str(out), "--emptyOutDir"]
    subprocess.run([npm, "exec", "--", *vite], cwd=WEB, check=True)


def main() -> int:
    """Build in place, or with --check compare a fresh build with the committed one."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if the committed build is stale")
    opts = parser.parse_args()
    if not opts.check:
        build(STATIC)
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "static"
        build(out)
        fresh, committed = _files(out), _files(STATIC)
        stale = sorted(fresh ^ committed)
        stale += sorted(f for f in fresh & committed if not filecmp.cmp(out / f, STATIC / f, False))
    if stale:
        print("dashboard build is stale (run `make web`):", *stale, sep="\n  ")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
