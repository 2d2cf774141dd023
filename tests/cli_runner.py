"""Running ``backpropvis ARGV`` inside the test process, as the tests of several commands do."""

from __future__ import annotations

from backpropvis.cli import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """``backpropvis ARGV`` in this process: (exit status, stdout, stderr)."""
    try:
        status = main(argv)
    except SystemExit as stop:  # argparse's own errors
        status = stop.code
    captured = capsys.readouterr()
    return status, captured.out, captured.err
