"""`python benchmarks/run.py`: the same as `python -m benchmarks`, run from any directory."""

import sys
from pathlib import Path

if __name__ == "__main__":
    # The repository root first, so that this checkout's linflow and benchmarks are imported.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from benchmarks.suite import main

    raise SystemExit(main())
