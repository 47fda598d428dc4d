"""``python -m gateway``: the same program as the ``tuya-modbus-gateway`` command."""

from __future__ import annotations

from gateway.cli import main

raise SystemExit(main())
