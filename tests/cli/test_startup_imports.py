"""Each command imports only what it uses: the Azure SDK, numpy, paramiko, pywinrm and
dask load on demand, so a quick command does not pay for them at start-up."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.azurite import azurite  # noqa: F401  (fixture)
from azlift.vhd.convert import convert

# Runs the real entry point in a fresh interpreter, then reports which top-level modules
# (and which azure.* packages) were imported.
PROBE = """
import json, sys
from azlift.cli.main import main
code = main(sys.argv[1:])
names = set(sys.modules)
print(json.dumps({"code": code,
                  "top": sorted({".".join(name.split(".")[:2]) if name.startswith("azlift.")
                          else name.split(".")[0] for name in names}),
                  "azure": sorted({".".join(name.split(".")[:2]) for name in names
                                   if name.startswith("azure.")})}))
"""
HEAVY = {"numpy", "azure", "paramiko", "winrm", "dask", "distributed", "tqdm"}


def imported(*args: str, env: dict[str, str] | None = None, probe_all: bool = False) -> dict:
    """The probe's report; with ``probe_all`` the list of every module name instead."""
    probe = PROBE.replace('"top": sorted(', '"top": sorted(names) if %s else sorted(' % probe_all)
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True,
                          text=True, timeout=120, env=env)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    return report["top"] if probe_all else report


@pytest.fixture(scope="module")
def small_fixed_vhd(tmp_path_factory):
    raw = tmp_path_factory.mktemp("startup") / "small.raw"
    raw.write_bytes(b"\x01" * 4096 + bytes(24 * 1024 * 1024 - 4096))
    dest = raw.with_suffix(".vhd")
    convert(str(raw), str(dest))
    return dest


def test_version_loads_neither_typer_nor_any_library() -> None:
    result = imported("--version")
    assert result["code"] == 0
    assert not set(result["top"]) & (HEAVY | {"typer", "pydantic", "azlift.vhd",
                                               "azlift.upload", "azlift.prep"})


def test_vhd_check_of_a_fixed_vhd_loads_no_sdk_numpy_or_remote_clients(small_fixed_vhd) -> None:
    result = imported("vhd", "check", str(small_fixed_vhd), "--json")
    assert result["code"] == 0
    assert not set(result["top"]) & (HEAVY | {"azlift.upload", "azlift.prep", "pydantic"})
    # a fixed VHD needs its own reader only, no other format's
    loaded = set(imported("vhd", "check", str(small_fixed_vhd), "--json", probe_all=True))
    assert not loaded & {"azlift.vhd.qcow2",
                         "azlift.vhd.vmdk", "azlift.vhd.ova", "azlift.vhd.vmdk_stream",
                         "tarfile", "xml.etree.ElementTree"}
    assert "azlift.vhd.vhd" in loaded


def test_upload_into_an_existing_container_loads_no_azure_sdk(
        small_fixed_vhd, azurite, tmp_path) -> None:  # noqa: F811
    import os
    env = {**os.environ, "AZLIFT_STATE_DIR": str(tmp_path / "state"),
           "AZLIFT_EMULATOR_ENDPOINT": azurite.endpoint}
    result = imported("upload", str(small_fixed_vhd), f"{azurite.new_container()}/s.vhd",
                      "--emulator", "-q", env=env)
    assert result["code"] == 0
    # exists, create, Put Page and metadata go through upload/rest.py: no SDK at all
    assert result["azure"] == []
    assert not set(result["top"]) & {"paramiko", "winrm", "dask", "distributed", "azlift.prep",
                                     "requests", "urllib3"}
