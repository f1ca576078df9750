"""The decoders' coverage-guided fuzz target (fuzz/fuzz_decoders.py, atheris) on every
`make test`: a seeded run of a bounded number of inputs, so CI fuzzes what every hostile
record meets first; `make fuzz` runs it longer (FUZZ_SECONDS)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FUZZ = ROOT / "fuzz"
RUNS = 200_000
"""About 20 s at the 10,000 inputs a second one core does here."""
BUDGET_S = 30
"""libFuzzer stops by itself after this long (-max_total_time) on a slower machine: a budget,
not a speed check (the run passes either way if nothing failed)."""
SEED = 20261207


def test_decoders_raise_only_their_documented_errors(tmp_path: Path) -> None:
    if importlib.util.find_spec("atheris") is None:
        pytest.skip("atheris is not installed: .venv/bin/pip install -e '.[dev]'")
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    proc = subprocess.run(
        [sys.executable, str(FUZZ / "fuzz_decoders.py"), f"-runs={RUNS}",
         f"-max_total_time={BUDGET_S}", f"-seed={SEED}", "-timeout=10",
         f"-dict={FUZZ / 'json.dict'}", f"-artifact_prefix={artifacts}/", str(corpus),
         str(FUZZ / "seeds")],
        cwd=ROOT, capture_output=True, text=True, timeout=BUDGET_S + 90, check=False,
    )  # fmt: skip
    found = sorted(p.name for p in artifacts.iterdir())
    log = "\n".join(line for line in proc.stderr.splitlines() if "Instrumenting" not in line)
    assert proc.returncode == 0, (
        f"the fuzz target failed (exit {proc.returncode}); inputs kept: {found} (replay one "
        f"with `python fuzz/fuzz_decoders.py FILE`):\n{log[-8000:]}"
    )
    assert not found, found
    assert "DONE" in proc.stderr, log[-3000:]
