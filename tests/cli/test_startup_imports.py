"""Each command imports only what it uses: the Azure SDK, numpy, paramiko, pywinrm and
dask load on demand, so a quick command does not pay for them at start-up."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.azurite import azurite  # noqa: F401  (fixture)
from azlift.vhd.conversion import convert
from tests.vhd.images import build_differencing_vhd

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


def qemu_image(folder, fmt: str, name: str):
    """A 24 MiB disk with one 4 KiB block of data, converted by qemu-img to ``fmt``."""
    raw = folder / "disk.raw"
    with open(raw, "wb") as out:
        out.truncate(24 * 1024 * 1024)
        out.write(b"\x5a" * 4096)
    image = folder / name
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", fmt, str(raw), str(image)],
                   check=True)
    return image


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
    # nor what only writing an image needs (convert loads it when it runs)
    assert not loaded & {"azlift.vhd.cache_policy", "concurrent.futures", "tempfile", "logging",
                         "azlift.vhd.conversion", "azlift.vhd.in_place"}
    assert "azlift.vhd.vhd" in loaded
    assert not loaded & {"uuid", "platform"}  # GUIDs go through guids.py: 5 ms less
    # records are NamedTuples: dataclasses loads inspect (with ast, dis, tokenize), 15 ms
    assert not loaded & {"dataclasses", "inspect"}


@pytest.mark.parametrize("command", [["check", "--os-disk"], ["inspect"], ["convert"]])
def test_plain_vhd_command_lines_are_parsed_without_typer(command, small_fixed_vhd,
                                                          tmp_path) -> None:
    """quick.py takes them: typer's import alone is most of such a command's start-up."""
    extra = [str(tmp_path / "out.vhd"), "--cache", "buffered"] if command == ["convert"] else []
    result = imported("--debug", "vhd", command[0], str(small_fixed_vhd), *command[1:], *extra)
    assert result["code"] in (0, 1), result
    assert not set(result["top"]) & {"typer", "click", "pydantic"}
    if command == ["convert"]:  # stored runs copied kernel-side from the calling thread
        assert "concurrent" not in result["top"]
    # one the quick parser leaves alone still gets typer's parsing
    assert "typer" in imported("vhd", command[0], "--help")["top"]


def test_convert_makes_its_temporary_file_without_tempfile(small_fixed_vhd, tmp_path) -> None:
    """tempfile (with shutil and random) was 3 ms of a conversion's start-up."""
    loaded = set(imported("vhd", "convert", str(small_fixed_vhd), str(tmp_path / "out.vhd"),
                          probe_all=True))
    assert "azlift.vhd.conversion" in loaded and (tmp_path / "out.vhd").exists()
    assert not loaded & {"tempfile", "shutil", "random"}
    assert not loaded & {"uuid", "platform"}  # the footer's unique id comes from guids.py
    assert not loaded & {"dataclasses", "inspect"}


@pytest.mark.parametrize("command", ["check", "inspect", "convert"])
def test_a_dynamic_or_differencing_vhd_is_read_without_numpy(command, tmp_path) -> None:
    """The BAT and sector bitmaps go through the standard library (block_tables)."""
    dynamic = qemu_image(tmp_path, "vpc", "disk.vhd")
    child = build_differencing_vhd(tmp_path / "child.vhd", dynamic, [(8 * 2**20, b"c" * 1024)])
    # convert of the child reads the parent's sectors and judges them for zeros with numpy
    # (a kernel-side copy of stored runs, as for the dynamic disk, needs no judging)
    for image in (dynamic,) if command == "convert" else (dynamic, child):
        args = [command, str(image)] + ([str(tmp_path / f"out-{image.name}")]
                                        if command == "convert" else [])
        result = imported("vhd", *args, "--json")
        assert result["code"] in (0, 1), result
        assert "numpy" not in result["top"], (command, image.name)


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
    # a plain-HTTP endpoint needs no TLS; the date header needs no email package; only
    # `upload verify` reads a blob back
    loaded = set(imported("upload", str(small_fixed_vhd), f"{azurite.new_container()}/t.vhd",
                          "--emulator", "-q", env=env, probe_all=True))
    assert not loaded & {"ssl", "email", "email.utils", "azlift.upload.verify"}


def test_masking_secrets_loads_no_url_parser() -> None:
    """urllib.parse (with ipaddress) is 4 ms; only redact_url needs it. Checked without
    site, whose editable-install hook loads it through pathlib."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    probe = ("import sys; sys.path.insert(0, sys.argv[1]); import azlift.redact as r; "
             "before = 'urllib.parse' in sys.modules; "
             "r.redact_url('https://a.example/c/b.vhd?sig=x'); "
             "print(before, 'urllib.parse' in sys.modules)")
    done = subprocess.run([sys.executable, "-S", "-c", probe, str(root)], capture_output=True,
                          text=True, timeout=60)
    assert done.stdout.split() == ["False", "True"], done.stderr


THREADS_PROBE = """
import json, os, sys
os.environ.pop("OPENBLAS_NUM_THREADS", None)
if len(sys.argv) > 2 and sys.argv[1] == "--keep":
    os.environ["OPENBLAS_NUM_THREADS"] = sys.argv[2]
    sys.argv[1:3] = []
from azlift.cli.main import main
code = main(sys.argv[1:])
print(json.dumps({"code": code, "numpy": "numpy" in sys.modules,
                  "threads": len(os.listdir("/proc/self/task")),
                  "setting": os.environ.get("OPENBLAS_NUM_THREADS")}))
"""


def test_a_command_that_loads_numpy_starts_no_blas_threads(tmp_path) -> None:
    """numpy's BLAS would start a thread per core at import; azlift's numpy work is
    element-wise, so the entry point asks for one (a user's own setting is kept)."""
    dynamic = qemu_image(tmp_path, "qcow2", "disk.qcow2")
    done = subprocess.run([sys.executable, "-c", THREADS_PROBE, "vhd", "check", str(dynamic)],
                          capture_output=True, text=True, timeout=120)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["code"] in (0, 1) and report["numpy"], report  # a qcow2's L1/L2 need it
    assert report["setting"] == "1"
    assert report["threads"] == 1, report  # no BLAS pool beside the main thread
    done = subprocess.run([sys.executable, "-c", THREADS_PROBE, "--keep", "2", "vhd", "check",
                           str(dynamic)], capture_output=True, text=True, timeout=120)
    assert json.loads(done.stdout.strip().splitlines()[-1])["setting"] == "2"
