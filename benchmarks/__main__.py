"""`python -m benchmarks`: run the suite (see `benchmarks.suite`)."""

from .suite import main

raise SystemExit(main())
