"""playhouse: an always-on, Reddit-like playhouse of GPT-2 personas and people."""

from __future__ import annotations

__version__ = "0.1.0"
