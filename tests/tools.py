"""External tools of the tests: a missing one skips with the way to install it; in CI it fails."""

from __future__ import annotations

import os
import shutil

import pytest

__all__ = ["INSTALL", "require"]

INSTALL = {
    "mbpoll": "apt-get install mbpoll",
    "socat": "apt-get install socat",
    "openssl": "apt-get install openssl",
}


def require(tool: str) -> str:
    """The path of ``tool``; skip the test if it is missing, or fail it when CI=true."""
    path = shutil.which(tool)
    if path is not None:
        return path
    reason = f"{tool} is not installed ({INSTALL.get(tool, 'see README: Set-up')})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and {reason}")
    pytest.skip(reason)
