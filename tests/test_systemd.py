"""The systemd unit passes systemd's own verifier."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.conftest import ROOT


def test_unit_passes_systemd_analyze_verify() -> None:
    """`systemd-analyze verify systemd/monitor.service` reports nothing."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    done = subprocess.run([analyze, "verify", str(ROOT / "systemd" / "monitor.service")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "monitor.service" not in done.stderr, done.stderr
