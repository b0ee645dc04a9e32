"""The benchmark harness of erm-bot (``python -m bench``, ``make bench``); see README.md.

Importing the package puts ``tests/`` on ``sys.path`` so the harness reuses the loopback fakes of
Slack and Telegram (``tests/fakes``) exactly as the test suite runs them.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))
