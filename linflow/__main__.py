"""`python -m linflow`: the command line of `linflow.cli`."""

from .cli import main

raise SystemExit(main())
