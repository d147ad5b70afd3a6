"""Which TCP ports a process (and its children) listens on."""
from __future__ import annotations

import psutil


def listening_sockets(pid: int | None = None, *, children: bool = False) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of process ``pid`` (this one by
    default), and of its descendants with ``children``."""
    root = psutil.Process(pid)
    processes = (root, *root.children(recursive=True)) if children else (root,)
    return {(c.laddr.ip, c.laddr.port) for process in processes
            for c in process.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN}
