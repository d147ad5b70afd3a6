"""`azlift bulk scheduler` and `azlift bulk worker`: thin wrappers over Dask's own commands,
with azlift's rules about where they may listen.

Without TLS, both listen on 127.0.0.1; another interface needs --insecure and warns on every
start. With TLS (mutual: every process shows a certificate the CA signed), a worker first
shakes hands with the scheduler itself, so a certificate either side refuses is one line
and exit 5 instead of Dask's endless "Waiting to connect". Dask's HTTP servers (health,
metrics) listen on 127.0.0.1 unless --http-address asks for another.
"""
from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated

import typer

from .. import exit_codes
from ..bulk import errors as bulk_errors
from ..bulk.engine import LOOPBACK_ANY_PORT
from .bulk_options import InsecureOption, TlsCaOption, TlsCertOption, TlsKeyOption
from .common import warn

HttpAddressOption = Annotated[str, typer.Option(
    "--http-address", help="Where Dask's HTTP server (health, metrics) listens, HOST:PORT.")]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(host: str, port: int | str, *, tls: bool, insecure: bool) -> None:
    """Beyond loopback without TLS: refused, or (with --insecure) allowed and said aloud."""
    if tls or is_loopback(host):
        return
    if not insecure:
        raise bulk_errors.InsecureListenError(
            f"refusing to listen on {host} without TLS: give --tls-ca-file, --tls-cert and "
            "--tls-key, or --insecure on a network you trust")
    warn(f"listening on {host} WITHOUT TLS: anyone who reaches port {port} can run code on "
         "every worker")


def scheduler(
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port (0: any free one).")] = 8786,
    scheduler_file: Annotated[Path | None, typer.Option(
        "--scheduler-file", help="Write the scheduler's address to this JSON file.")] = None,
    tls_ca_file: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    insecure: InsecureOption = False,
    http_address: HttpAddressOption = LOOPBACK_ANY_PORT,
    no_workers_timeout: Annotated[float, typer.Option(
        "--no-workers-timeout", min=1, help="Seconds a task waits for a worker that can run "
        "it (its source) before it fails.")] = 300.0,
) -> None:
    """Start the Dask scheduler of a scale-out run (a thin wrapper over `dask scheduler`)."""
    from ..bulk.tls import TlsFiles

    tls = TlsFiles.from_options(tls_ca_file, tls_cert, tls_key)
    if tls is not None:
        tls.client_context()  # unreadable files: one line now, not a Dask traceback later
    check_listen(host, port, tls=tls is not None, insecure=insecure)
    args = ["--host", host, "--port", str(port), "--no-dashboard",
            "--dashboard-address", http_address]
    if scheduler_file:
        args += ["--scheduler-file", str(scheduler_file)]
    if tls is not None:
        args = ["--protocol", "tls", *args, "--tls-ca-file", str(tls.ca_file), "--tls-cert",
                str(tls.cert), "--tls-key", str(tls.key)]
    _dask_cli("scheduler", args, no_workers_timeout)


def parse_source(text: str, option: str = "--source") -> tuple[str, int]:
    """``NAME`` or ``NAME=N`` (N disks of that source, or N guests, at once on this worker)."""
    from ..bulk.manifest import NAME_PATTERN

    name, sep, count = text.partition("=")
    if not NAME_PATTERN.match(name) or (sep and not count.isdigit()) or (sep and int(count) < 1):
        raise typer.BadParameter(f"{option} expects NAME or NAME=N (N ≥ 1), found {text!r}")
    return name, int(count) if sep else 2


def worker(
    address: Annotated[str, typer.Argument(metavar="SCHEDULER_ADDRESS",
                                           help="tls://host:8786 (or tcp:// on loopback).")],
    source: Annotated[list[str] | None, typer.Option(
        "--source", help="A source this machine can read, NAME[=N disks at once]; repeat.")]
    = None,
    reach: Annotated[list[str] | None, typer.Option(
        "--reach", help="Guests this machine can reach, NAME[=N generalized at once] (a VM's "
        "reach key); repeat. VMs without a reach are prepared by the coordinator.")] = None,
    name: Annotated[str | None, typer.Option("--name", help="Worker name (shown in the "
                                             "report); default: the host name.")] = None,
    threads: Annotated[int | None, typer.Option(
        "--nthreads", min=1, help="Task threads (default: the sum of the source slots + 2).")] = None,
    local_directory: Annotated[Path | None, typer.Option(
        "--local-directory", help="Dask's scratch directory.")] = None,
    host: Annotated[str | None, typer.Option(
        "--host", help="Interface the scheduler and other workers reach this worker on "
        "(default: 127.0.0.1 without TLS, every interface with TLS).",
        show_default=False)] = None,
    tls_ca_file: TlsCaOption = None,
    tls_cert: TlsCertOption = None,
    tls_key: TlsKeyOption = None,
    insecure: InsecureOption = False,
    http_address: HttpAddressOption = LOOPBACK_ANY_PORT,
) -> None:
    """Serve sources to a scale-out run (a thin wrapper over `dask worker`).

    Credentials come from this machine's environment (AZURE_STORAGE_* or a sign-in), never
    from the coordinator.
    """
    import socket

    from ..bulk.prep_phase import PROBE_SLOTS, probe_resource
    from ..bulk.prep_spec import reach_resource
    from ..bulk.tls import TlsFiles, check_address, probe

    sources = [parse_source(text) for text in source or ()]
    reaches = [parse_source(text, "--reach") for text in reach or ()]
    if not sources and not reaches:
        raise typer.BadParameter("give at least one --source or --reach")
    tls = TlsFiles.from_options(tls_ca_file, tls_cert, tls_key)
    address = check_address(address, tls)
    if host is None and tls is None:
        host = "127.0.0.1"
    if host is not None:
        check_listen(host, "(any)", tls=tls is not None, insecure=insecure)
    if tls is not None:
        probe(address, tls)
    resources = ",".join([*(f"src-{name}={count},{probe_resource(name)}={PROBE_SLOTS}"
                            for name, count in sources),
                          *(f"{reach_resource(name)}={count}" for name, count in reaches)])
    slots = sum(count for _, count in sources) + sum(count for _, count in reaches)
    args = [address, "--name", name or socket.gethostname(), "--nthreads",
            str(threads or slots + 2), "--nworkers", "1", "--no-nanny", "--resources", resources,
            "--no-dashboard", "--dashboard-address", http_address]
    if host is not None:
        args += ["--host", host]
    if local_directory:
        args += ["--local-directory", str(local_directory)]
    if tls is not None:
        args += ["--tls-ca-file", str(tls.ca_file), "--tls-cert", str(tls.cert),
                 "--tls-key", str(tls.key)]
    _dask_cli("worker", args, None)


def _dask_cli(which: str, args: list[str], no_workers_timeout: float | None) -> None:
    """Run Dask's own scheduler/worker command in this process with azlift's settings."""
    import dask

    from ..bulk.engine import dask_config

    dask.config.set(dask_config(no_workers_timeout))
    if which == "scheduler":
        from distributed.cli.dask_scheduler import main as command
    else:
        from distributed.cli.dask_worker import main as command
    try:
        command.main(args=args, prog_name=f"azlift bulk {which}", standalone_mode=False)
    except KeyboardInterrupt:
        raise typer.Exit(exit_codes.INTERRUPTED) from None
    except RuntimeError as error:  # Dask's "Scheduler failed to start." hides the cause
        cause = error.__cause__ or error.__context__ or error
        raise bulk_errors.ClusterError(f"the {which} failed to start: {cause}") from None
