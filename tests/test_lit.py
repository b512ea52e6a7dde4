"""Run the lit + FileCheck suite (tests/lit) as part of pytest."""

import os
import subprocess
import sys
from pathlib import Path

LIT_DIR = Path(__file__).parent / "lit"


def test_lit_suite():
    env = dict(os.environ)
    result = subprocess.run(
        [sys.executable, "-c", "from lit.main import main; main()", "-v", str(LIT_DIR)],
        capture_output=True, text=True, env=env,
    )
    tail = "\n".join((result.stdout + result.stderr).splitlines()[-60:])
    assert result.returncode == 0, f"lit failed:\n{tail}"
    assert "Passed" in result.stdout, tail
