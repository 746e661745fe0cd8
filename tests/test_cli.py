"""The command line, run as a user runs it."""

import subprocess
import sys


def run(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "streamem", *args], capture_output=True, text=True, timeout=timeout)


def test_demo_fits_generated_data():
    result = run("demo", "--n-samples", "20000", "--n-components", "3", "--chunk-size", "3000")
    assert result.returncode == 0, result.stderr
    assert "iteration 1:" in result.stderr
    assert "converged=True" in result.stdout
    distance = float(result.stdout.split("true mean:")[1].split()[0])
    assert distance < 0.1


def test_help_and_usage_errors():
    assert run("--help").returncode == 0
    assert "demo" in run("--help").stdout
    bad = run("demo", "--n-samples", "zero")
    assert bad.returncode == 2
    assert "n-samples" in bad.stderr
