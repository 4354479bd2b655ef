#!/usr/bin/env python3
"""Stops this SageMaker notebook instance once Jupyter has been idle for longer than a limit.

Installed by the on-start lifecycle script as /usr/local/bin/llmft-idle-check and run every 5 minutes.
Idle means: no kernel busy, and no kernel or terminal active (Jupyter's `last_activity`) within the limit,
counted from the instance's start at the earliest, and the LLaMA-Factory install not running.
Open browser tabs do not count as activity: a forgotten tab must not keep a GPU instance running.
Standard library only, Python 3.9+: it runs with the system python3, outside any conda environment.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

JUPYTER_URL = "https://localhost:8443"
# datetime.UTC needs Python 3.11; the instance's system python3 is 3.9.
UTC = timezone.utc  # noqa: UP017


def parse_time(text: str) -> datetime:
    """Jupyter's ISO 8601 UTC timestamps ('2026-11-27T18:00:00.123456Z')."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def decide(
    *,
    kernels: list[dict[str, Any]],
    terminals: list[dict[str, Any]],
    now: datetime,
    started_at: datetime,
    idle_minutes: int,
    install_running: bool = False,
) -> tuple[bool, str]:
    """(stop?, why): the whole decision, from Jupyter's kernels and terminals and the clock."""
    if idle_minutes <= 0:
        return False, "auto-stop is off"
    if install_running:
        return False, "the LLaMA-Factory environment is still being installed"
    busy = [kernel.get("name", "?") for kernel in kernels if kernel.get("execution_state") == "busy"]
    if busy:
        return False, f"busy kernels: {', '.join(busy)}"
    items = kernels + terminals
    activity = [parse_time(item["last_activity"]) for item in items if item.get("last_activity")]
    last = max([started_at, *activity])
    idle = int((now - last).total_seconds() // 60)
    if now - last >= timedelta(minutes=idle_minutes):
        return True, f"idle for {idle} min (limit {idle_minutes}), last activity {last:%FT%TZ}"
    return False, f"idle for {idle} min of {idle_minutes}"


def install_in_progress(pid_file: Path) -> bool:
    """The background install is alive: its pid runs install-env.sh (a stale pid may be reused)."""
    try:
        pid = int(pid_file.read_text().strip())
        return b"install-env.sh" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return False


def read_started_at(started_file: Path, fallback: datetime) -> datetime:
    try:
        return datetime.fromtimestamp(int(started_file.read_text().strip()), tz=UTC)
    except (OSError, ValueError):
        return fallback


def fetch_json(url: str) -> Any:
    # Jupyter on a notebook instance serves a self-signed certificate on localhost only.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with urllib.request.urlopen(url, timeout=30, context=context) as response:
        return json.load(response)


def stop_instance(aws_cli: str, region: str, notebook_name: str) -> None:
    subprocess.run(
        [
            aws_cli,
            "sagemaker",
            "stop-notebook-instance",
            "--region",
            region,
            "--notebook-instance-name",
            notebook_name,
        ],
        check=True,
    )


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-minutes", type=int, required=True)
    parser.add_argument("--notebook-name", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--aws-cli", default="aws")
    parser.add_argument("--jupyter-url", default=os.environ.get("LLMFT_JUPYTER_URL", JUPYTER_URL))
    return parser.parse_args(argv)


def main(
    argv: list[str],
    *,
    fetch: Callable[[str], Any] = fetch_json,
    stop: Callable[[str, str, str], None] = stop_instance,
    now: datetime | None = None,
) -> int:
    args = parse_args(argv)
    now = now or datetime.now(UTC)
    try:
        kernels = fetch(f"{args.jupyter_url}/api/kernels")
        terminals = fetch(f"{args.jupyter_url}/api/terminals")
    except OSError as error:
        # Jupyter restarting or not up yet: never stop an instance on a failed look.
        print(f"{now:%FT%TZ} Jupyter not reachable ({error}); not stopping")
        return 0
    should_stop, why = decide(
        kernels=kernels,
        terminals=terminals,
        now=now,
        started_at=read_started_at(args.state_dir / "started-at", fallback=now),
        idle_minutes=args.idle_minutes,
        install_running=install_in_progress(args.state_dir / "install.pid"),
    )
    print(f"{now:%FT%TZ} {'stopping' if should_stop else 'keeping'} {args.notebook_name}: {why}")
    if should_stop:
        try:
            stop(args.aws_cli, args.region, args.notebook_name)
        except (OSError, subprocess.CalledProcessError) as error:
            # Loud in the log, and a failed run in cron's or systemd's eyes; the next run tries again.
            print(f"{now:%FT%TZ} ERROR: could not stop {args.notebook_name} with {args.aws_cli}: {error}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
