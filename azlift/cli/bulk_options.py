"""Options shared by the `azlift bulk` commands (coordinator, scheduler and worker)."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

ManifestArg = Annotated[Path, typer.Argument(metavar="MANIFEST", help="The TOML manifest "
                                             "(schema azlift.bulk/1).", show_default=False)]
SchedulerOption = Annotated[str | None, typer.Option(
    "--scheduler", help="Run on the Dask scheduler at this address (tls://host:8786) instead "
    "of an embedded cluster.", show_default=False)]
StateOption = Annotated[Path | None, typer.Option(
    "--state", help="The run's state file (default: in azlift's state directory, named "
    "after the manifest).", show_default=False)]
WaitOption = Annotated[float, typer.Option(
    "--wait-for-workers", min=0, help="Seconds to wait for a worker of each source before "
    "its VMs fail.")]
TlsCaOption = Annotated[Path | None, typer.Option("--tls-ca-file", help="CA that signed the "
                                                  "cluster's certificates.", show_default=False)]
TlsCertOption = Annotated[Path | None, typer.Option("--tls-cert", help="This process's TLS "
                                                    "certificate (PEM).", show_default=False)]
TlsKeyOption = Annotated[Path | None, typer.Option("--tls-key", help="This process's TLS "
                                                   "private key (PEM).", show_default=False)]
InsecureOption = Annotated[bool, typer.Option(
    "--insecure", help="Listen beyond loopback without TLS (anyone who reaches the port can "
    "run code on the workers).")]
