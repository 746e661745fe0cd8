"""How the command line reports: log lines (plain or JSON), warnings as log lines, and the
one-line errors and exit codes every command shares (:func:`command`).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
import warnings

import click
import numpy as np

__all__ = ["JsonLines", "command", "jsonable", "setup_logging", "show_warning"]


class JsonLines(logging.Handler):
    """Iteration records as JSON lines on stdout."""

    def emit(self, record):
        data = getattr(record, "streamem", None)
        if data is not None:
            click.echo(json.dumps({"event": "iteration", **jsonable(data)}))  # or the record's own event


def jsonable(data: dict) -> dict:
    return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in data.items()}


def setup_logging(quiet: bool, log_json: bool) -> None:
    logger = logging.getLogger("streamem")
    logger.handlers[:] = []
    logger.propagate = False
    if log_json:
        logger.addHandler(JsonLines())
        logger.setLevel(logging.INFO)
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def show_warning(log_json, message, category, *args, **kwargs):
    """A warning as one line on stderr (or a JSON line with ``--log-json``), without source lines."""
    if log_json:
        click.echo(json.dumps({"event": "warning", "category": category.__name__, "message": str(message)}))
    else:
        click.echo(f"warning: {message}", err=True)


def command(func):
    """Common options, logging, and the error policy of every command."""

    @click.option("--quiet", is_flag=True, help="Only errors and the final result.")
    @click.option("--log-json", is_flag=True, help="Progress as JSON lines on stdout.")
    @click.option("--debug", is_flag=True, help="Show the traceback of an error.")
    @functools.wraps(func)
    def wrapper(*args, quiet, log_json, debug, **kwargs):
        setup_logging(quiet, log_json)
        try:
            with warnings.catch_warnings():
                if quiet:
                    warnings.simplefilter("ignore")
                elif not debug:
                    warnings.showwarning = functools.partial(show_warning, log_json)
                return func(*args, quiet=quiet, log_json=log_json, **kwargs)
        except (ValueError, TypeError, OSError, ImportError) as exc:
            if debug:
                raise
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            click.echo(f"error: {message}", err=True)
            sys.exit(1)

    return wrapper
