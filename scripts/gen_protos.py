"""Regenerate the Python code for protos/ into the conveyor package.

Run as `python scripts/gen_protos.py`; `--check` exits 1 when the committed code is stale.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from pathlib import Path

import grpc_tools
from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent.parent
PROTOS = ROOT / "protos"
THIRD_PARTY = ROOT / "third_party"


def generate(out: Path) -> list[Path]:
    """Generate message, stub and type-stub modules for every proto under protos/ into out."""
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    files = sorted(p.relative_to(PROTOS).as_posix() for p in PROTOS.rglob("*.proto"))
    args = [
        "protoc",
        f"-I{PROTOS}",
        f"-I{THIRD_PARTY}",
        f"-I{wkt}",
        f"--python_out={out}",
        f"--pyi_out={out}",
        f"--grpc_python_out={out}",
        *files,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")
    return sorted(p for p in out.rglob("*") if p.is_file())


def main() -> int:
    """Generate into a temp folder, then copy (or, with --check, compare) into the tree."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--check", action="store_true", help="fail if generated code is stale")
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        stale = []
        for path in generate(out):
            rel = path.relative_to(out)
            target = ROOT / rel
            if opts.check:
                if not target.exists() or not filecmp.cmp(path, target, shallow=False):
                    stale.append(str(rel))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, target)
                init = target.parent / "__init__.py"
                if not init.exists():
                    init.write_text('"""Generated protobuf and gRPC code; do not edit."""\n')
        if stale:
            print("generated code is stale; run: python scripts/gen_protos.py", file=sys.stderr)
            for rel in stale:
                print(f"  {rel}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
