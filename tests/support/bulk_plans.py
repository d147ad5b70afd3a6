"""Disks of mixed formats and manifests for `azlift bulk` tests."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from azlift.bulk.toml_writer import to_toml
from tests.support import disk_layouts as layouts
from tests.vhd.images import make_dynamic_vhd, make_vhdx, scattered_chunks, write_raw
from azlift.vhd.conversion import convert

MIB = 1024 * 1024
KINDS = ("raw", "vhd-fixed", "vhd-dynamic", "vhdx")


def make_disk(directory: Path, name: str, kind: str, *, size: int = 24 * MIB + 4096,
              seed: int = 1, count: int = 12, os_disk: bool = False) -> Path:
    """A disk of ``kind`` with scattered random data (and a Linux GPT layout for an OS
    disk, so the partition hints say Linux / V2)."""
    directory.mkdir(parents=True, exist_ok=True)
    raw = directory / f"{name}.raw"
    if os_disk:
        layouts.linux_gpt_disk(raw, 32 * MIB)
        chunks = scattered_chunks(8 * MIB, count, seed=seed, align=512)
        with open(raw, "r+b") as out:
            for offset, data in chunks:
                out.seek(16 * MIB + offset)
                out.write(data)
    else:
        write_raw(raw, size, scattered_chunks(size, count, seed=seed,
                                              align=512 if kind != "raw" else 1))
    if kind == "raw":
        return raw
    if kind == "vhd-fixed":
        dest = directory / f"{name}.vhd"
        convert(str(raw), str(dest))
    elif kind == "vhd-dynamic":
        dest = make_dynamic_vhd(raw, directory / f"{name}.vhd")
    elif kind == "vhdx":
        dest = make_vhdx(raw, directory / f"{name}.vhdx")
    else:
        raise ValueError(kind)
    raw.unlink()
    return Path(dest)


def converted(path: Path, directory: Path) -> bytes:
    """The fixed VHD `azlift vhd convert` writes for ``path``."""
    dest = directory / f"{path.name}.converted.vhd"
    convert(str(path), str(dest), force=True)
    return dest.read_bytes()


def lun0_vms(directory: Path, kinds: Iterable[str], *, seed: int, count: int,
             sources: tuple[str, ...] = ("hv01",)) -> tuple[list[dict[str, Any]],
                                                             dict[str, Path]]:
    """One VM per kind (``vm0``, ``vm1``...) with one data disk at LUN 0, the sources taken
    in turn; and the blob name each disk gets, mapped to its source file."""
    vms: list[dict[str, Any]] = []
    expected: dict[str, Path] = {}
    for n, kind in enumerate(kinds):
        path = make_disk(directory, f"vm{n}", kind, seed=seed + n, count=count)
        vms.append({"id": f"vm{n}", "source": sources[n % len(sources)],
                    "disk": [{"path": str(path), "lun": 0}]})
        expected[f"vm{n}-lun0.vhd"] = path
    return vms, expected


def manifest(path: Path, vms: Iterable[dict[str, Any]], *, sources: dict[str, int],
             **defaults: Any) -> Path:
    """Write a manifest: ``vms`` are [[vm]] tables (with their "disk" arrays)."""
    document = {"schema": "azlift.bulk/1", "defaults": defaults,
                "source": [{"name": name, "max_disks": slots} for name, slots in sources.items()],
                "vm": list(vms)}
    path.write_text(to_toml(document))
    return path


def blob_bytes(azurite: Any, container: str, name: str) -> bytes:
    return azurite.service_client().get_blob_client(container, name).download_blob().readall()


def run_in_process(plan: Any, state: Path, run_id: str, engine_class: Any = None, *,
                   retry_failed: bool = False) -> tuple[Any, Any]:
    """Run a loaded manifest on the in-process engine (no Dask); return (store, engine)."""
    from azlift.bulk import Coordinator, InProcessEngine, StateStore, source_resources

    store = StateStore(state)
    engine = (engine_class or InProcessEngine)(run_id, threads=4,
                                               resources=source_resources(plan))
    try:
        Coordinator(plan, store, engine, run_id, wait_for_workers=0).run(
            retry_failed=retry_failed)
    finally:
        engine.close()
    return store, engine
