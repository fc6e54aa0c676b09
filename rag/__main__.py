"""`python -m rag`: see `rag.cli`."""

from rag.cli import main

raise SystemExit(main())
