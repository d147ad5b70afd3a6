"""Fixtures: one built root tree per family (per session), one sandboxed sshd per test."""
from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.rootfs import KERNEL, RootSpec, build_root
from tests.support.sshd import Keys, SandboxSshd, make_keys

OS_RELEASES = {
    "ubuntu": 'NAME="Ubuntu"\nVERSION_ID="22.04"\nID=ubuntu\nID_LIKE=debian\n'
              'PRETTY_NAME="Ubuntu 22.04.3 LTS"\n',
    "debian": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nVERSION_ID="12"\nID=debian\n',
    "rhel": 'NAME="Red Hat Enterprise Linux"\nID="rhel"\nID_LIKE="fedora"\nVERSION_ID="9.3"\n'
            'PRETTY_NAME="Red Hat Enterprise Linux 9.3 (Plow)"\n',
    "rocky": 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nVERSION_ID="8.9"\n'
             'PRETTY_NAME="Rocky Linux 8.9 (Green Obsidian)"\n',
    "suse": 'NAME="SLES"\nVERSION_ID="15.5"\nID="sles"\nID_LIKE="suse"\n'
            'PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"\n',
    "azurelinux": 'NAME="Microsoft Azure Linux"\nID=azurelinux\nVERSION_ID="3.0"\n'
                  'PRETTY_NAME="Microsoft Azure Linux 3.0"\n',
    "generic": 'NAME="Fedora Linux"\nID=fedora\nVERSION_ID=39\n'
               'PRETTY_NAME="Fedora Linux 39 (Server Edition)"\n',
}
INITRAMFS = {"ubuntu": f"boot/initrd.img-{KERNEL}", "debian": f"boot/initrd.img-{KERNEL}",
             "rhel": f"boot/initramfs-{KERNEL}.img", "rocky": f"boot/initramfs-{KERNEL}.img",
             "suse": f"boot/initrd-{KERNEL}", "azurelinux": f"boot/initrd.img-{KERNEL}",
             "generic": f"boot/initramfs-{KERNEL}.img"}
SERVICES = {"ubuntu": ("walinuxagent", "ssh"), "debian": ("walinuxagent", "ssh")}
REGISTERED = {"rhel": "etc/pki/consumer/cert.pem",
              "suse": "etc/zypp/credentials.d/SCCcredentials"}
FAMILIES = list(OS_RELEASES)


# Left by Ubuntu's installer; the Ubuntu plan removes them.
UBUNTU_INSTALLER_FILES = {
    "etc/netplan/00-installer-config.yaml": "network:\n  ethernets:\n    ens3:\n      dhcp4: true\n",
    "etc/cloud/cloud.cfg.d/99-installer.cfg": "# written by subiquity\n",
}


def spec(family: str, ready: bool = True, **changes: object) -> RootSpec:
    agent, ssh = SERVICES.get(family, ("waagent", "sshd"))
    if family == "ubuntu" and "extra_files" not in changes:
        changes["extra_files"] = dict(UBUNTU_INSTALLER_FILES)
    return RootSpec(os_release=OS_RELEASES[family], initramfs=INITRAMFS[family],
                    agent_service=agent, ssh_service=ssh, ready=ready,
                    registered_marker=REGISTERED.get(family), **changes)


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    return make_keys(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def root_tree(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Build (once per session) the tree for a family and variant."""
    built: dict[tuple, tuple[Path, RootSpec]] = {}
    base = tmp_path_factory.mktemp("roots")
    base.chmod(0o755)

    def get(family: str, ready: bool = True, variant: str = "", **changes: object) -> Path:
        key = (family, ready, variant)
        wanted = spec(family, ready, **changes)
        if key not in built:
            built[key] = (build_root(
                base / f"{family}-{'ready' if ready else 'unready'}{variant}", wanted), wanted)
        path, made_from = built[key]
        # a tree is shared by every test asking for its key: the same key must mean the
        # same contents, or a test would silently run against another test's tree
        assert made_from == wanted, f"root tree {key} requested with different contents"
        return path

    return get


@pytest.fixture
def start_sshd(keys: Keys, tmp_path: Path) -> Iterator[Callable[[Path], SandboxSshd]]:
    """Start a sandboxed sshd on a fresh overlay of a tree; stopped after the test."""
    started: list[SandboxSshd] = []

    def start(lower: Path) -> SandboxSshd:
        workdir = tmp_path / f"sshd{len(started)}"
        workdir.mkdir(mode=0o755)
        server = SandboxSshd(lower, workdir, keys)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def known_hosts(tmp_path: Path) -> Path:
    return tmp_path / "known_hosts"


def trust(server: SandboxSshd, known_hosts: Path) -> Path:
    known_hosts.write_text(server.known_hosts_line)
    return known_hosts
