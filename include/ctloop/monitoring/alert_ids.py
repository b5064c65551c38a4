"""What an alert id may be: short and plain, for it ends up in run ids, tags, logs and pages.

Kept apart from ctloop.monitoring.alerts, so the pattern can be imported without its database layer.
"""

from __future__ import annotations

ALERT_ID_MAX_LENGTH = 128
ALERT_ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._:-]{{0,{ALERT_ID_MAX_LENGTH - 1}}}$"
