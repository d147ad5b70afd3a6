"""Other commands do not pay for Dask: importing the bulk package or the CLI loads none of it."""
from __future__ import annotations

import subprocess
import sys


def test_importing_bulk_and_running_another_command_loads_no_dask() -> None:
    probe = ("import sys, azlift.bulk; from azlift.cli.main import main; "
             "main(['vhd', '--help']); "
             "print('dask' in sys.modules, 'distributed' in sys.modules, 'tqdm' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-3:] == ["False", "False", "False"]
