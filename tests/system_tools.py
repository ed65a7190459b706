"""Debian packages the tests need: skip outside CI, fail in it."""

from __future__ import annotations

import os

import pytest


def require_system_tool(available: bool, message: str) -> None:
    """Skip when a Debian package a test needs is absent, but fail under CI.

    ``make test`` installs every such package, so in CI (``CI`` set) an absence is a broken
    set-up, never a reason to pass quietly.
    """
    if available:
        return
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must install it: see the Makefile's DEBIAN_PACKAGES)")
    pytest.skip(message)
