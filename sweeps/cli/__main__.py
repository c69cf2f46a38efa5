"""`python -m sweeps.cli` runs the CLI, as the `sweeps` command does."""

from sweeps.cli import main

raise SystemExit(main())
