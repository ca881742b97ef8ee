from __future__ import annotations

from playhouse.cli import main

raise SystemExit(main())
