"""The one logger of the cluster's processes.

Serve configures `ray.serve` in every replica (JSON with `logging_config.encoding: JSON`);
`extra={"session_id": ...}` fields come out as keys of the log record. Session actors log through
it too, so a session's lines look like its stages' lines.
"""

from __future__ import annotations

import logging

log = logging.getLogger("ray.serve")
