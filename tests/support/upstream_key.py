"""An upstream that wants an API key: the key the tests give it, and the start of what lmsd says
when none is set."""

from __future__ import annotations

KEY = "sk-lm-Ab12Cd34:Ef56Gh78Ij90"
NEEDS_KEY = "LM Studio requires an API key: set LMSD_UPSTREAM_API_KEY"
