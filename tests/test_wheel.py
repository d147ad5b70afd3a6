"""The wheel a user installs: built from this tree, installed into a fresh virtual
environment (no editable path, no test extras) and run from there."""
from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.tools import PROJECT_ROOT
from tests.vhd.images import MIB, make_fixed_vhd, write_raw


LIBRARY_FOLDERS = ("vhd", "upload", "prep")


def source_packages() -> list[str]:
    """Every package folder of the tree, named as the wheel installs it (vhd/ → azlift/vhd)."""
    found = []
    for folder in ("azlift", *LIBRARY_FOLDERS):
        for init in sorted((PROJECT_ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(PROJECT_ROOT).as_posix()
            found.append(relative if folder == "azlift" else f"azlift/{relative}")
    return found


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out),
                    str(PROJECT_ROOT)], check=True, timeout=600)
    [built] = out.glob("azlift-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel and its runtime dependencies; its bin folder."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)],
                   check=True, timeout=900)
    return venv / "bin"


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        tops = {name.split("/", 1)[0] for name in archive.namelist()}
        names = archive.namelist()
    assert {top for top in tops if not top.endswith(".dist-info")} == {"azlift"}
    for package in source_packages():
        assert f"{package}/__init__.py" in names, f"{package} is missing from the wheel"
    shipped = {Path(name).name for name in names if name.endswith(".ps1")}
    in_tree = {path.name for path in (PROJECT_ROOT / "prep").rglob("*.ps1")}
    assert shipped == in_tree and in_tree


def test_installed_site_packages_gain_only_azlift(installed: Path) -> None:
    python = installed / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True, text=True, check=True).stdout.strip()
    record = next(Path(site).glob("azlift-*.dist-info")) / "RECORD"
    tops = {line.split(",", 1)[0].split("/", 1)[0] for line in record.read_text().splitlines()}
    assert {top for top in tops if not top.endswith(".dist-info") and top != ".."} == {"azlift"}
    for generic in ("vhd", "upload", "prep"):
        assert not (Path(site) / generic).exists()
    probe = subprocess.run(
        [str(python), "-c", "import azlift.vhd, azlift.upload, azlift.prep, sys; "
                            "print(azlift.vhd.__file__); "
                            "print(any(m in sys.modules for m in ('vhd', 'upload', 'prep')))"],
        capture_output=True, text=True, check=True, cwd="/")
    location, leaked = probe.stdout.split()
    assert location.startswith(site) and leaked == "False"


def test_installed_command_runs(installed: Path, tmp_path: Path) -> None:
    azlift = str(installed / "azlift")
    done = subprocess.run([azlift, "--version"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.startswith("azlift ")

    raw = write_raw(tmp_path / "disk.img", 24 * MIB, [(0, b"\x33\xc0" + bytes(508) + b"\x55\xaa")])
    fixed = tmp_path / "disk.vhd"
    make_fixed_vhd(raw, fixed)
    done = subprocess.run([azlift, "vhd", "check", str(fixed), "--json"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode in (0, 1), done.stderr
    assert '"schema": "azlift.vhd.check/1"' in done.stdout

    done = subprocess.run([azlift, "prep", "windows", "--help"], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0 and "--check-only" in done.stdout


def test_every_powershell_script_loads_from_the_installed_package(installed: Path) -> None:
    code = ("from azlift.prep.windows import scripts\n"
            "for name in scripts.SCRIPT_FILES:\n"
            "    text = scripts.script(name)\n"
            "    assert text.strip(), name\n"
            "print(len(scripts.SCRIPT_FILES))\n")
    done = subprocess.run([str(installed / "python"), "-c", code], capture_output=True,
                          text=True, cwd="/")
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) == len(list((PROJECT_ROOT / "prep" / "windows").glob("*.ps1")))
