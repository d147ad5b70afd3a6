"""/etc/os-release as shipped by real distribution releases (trimmed to the fields used)."""
from __future__ import annotations

# (label, os-release text, expected family, expected match)
SAMPLES: list[tuple[str, str, str, str]] = [
    ("ubuntu-20.04", 'NAME="Ubuntu"\nVERSION="20.04.6 LTS (Focal Fossa)"\nID=ubuntu\n'
     'ID_LIKE=debian\nPRETTY_NAME="Ubuntu 20.04.6 LTS"\nVERSION_ID="20.04"\n', "ubuntu", "id"),
    ("ubuntu-22.04", 'PRETTY_NAME="Ubuntu 22.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
     'VERSION="22.04.3 LTS (Jammy Jellyfish)"\nID=ubuntu\nID_LIKE=debian\n', "ubuntu", "id"),
    ("ubuntu-24.04", 'PRETTY_NAME="Ubuntu 24.04 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
     'ID=ubuntu\nID_LIKE=debian\nUBUNTU_CODENAME=noble\n', "ubuntu", "id"),
    ("debian-11", 'PRETTY_NAME="Debian GNU/Linux 11 (bullseye)"\nNAME="Debian GNU/Linux"\n'
     'VERSION_ID="11"\nVERSION="11 (bullseye)"\nID=debian\n', "debian", "id"),
    ("debian-12", 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\n'
     'VERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n',
     "debian", "id"),
    ("rhel-8.8", 'NAME="Red Hat Enterprise Linux"\nVERSION="8.8 (Ootpa)"\nID="rhel"\n'
     'ID_LIKE="fedora"\nVERSION_ID="8.8"\nPLATFORM_ID="platform:el8"\n'
     'PRETTY_NAME="Red Hat Enterprise Linux 8.8 (Ootpa)"\n', "rhel", "id"),
    ("rhel-9.3", 'NAME="Red Hat Enterprise Linux"\nVERSION="9.3 (Plow)"\nID="rhel"\n'
     'ID_LIKE="fedora"\nVERSION_ID="9.3"\nPRETTY_NAME="Red Hat Enterprise Linux 9.3 (Plow)"\n',
     "rhel", "id"),
    ("centos-7", 'NAME="CentOS Linux"\nVERSION="7 (Core)"\nID="centos"\nID_LIKE="rhel fedora"\n'
     'VERSION_ID="7"\nPRETTY_NAME="CentOS Linux 7 (Core)"\n', "centos", "id"),
    ("centos-stream-9", 'NAME="CentOS Stream"\nVERSION="9"\nID="centos"\n'
     'ID_LIKE="rhel fedora"\nVERSION_ID="9"\nPRETTY_NAME="CentOS Stream 9"\n', "centos", "id"),
    ("almalinux-9.3", 'NAME="AlmaLinux"\nVERSION="9.3 (Shamrock Pampas Cat)"\nID="almalinux"\n'
     'ID_LIKE="rhel centos fedora"\nVERSION_ID="9.3"\n'
     'PRETTY_NAME="AlmaLinux 9.3 (Shamrock Pampas Cat)"\n', "almalinux", "id"),
    ("rocky-8.9", 'NAME="Rocky Linux"\nVERSION="8.9 (Green Obsidian)"\nID="rocky"\n'
     'ID_LIKE="rhel centos fedora"\nVERSION_ID="8.9"\n'
     'PRETTY_NAME="Rocky Linux 8.9 (Green Obsidian)"\n', "rocky", "id"),
    ("oracle-8.9", 'NAME="Oracle Linux Server"\nVERSION="8.9"\nID="ol"\nID_LIKE="fedora"\n'
     'VARIANT="Server"\nVERSION_ID="8.9"\nPRETTY_NAME="Oracle Linux Server 8.9"\n', "ol", "id"),
    ("sles-15-sp5", 'NAME="SLES"\nVERSION="15-SP5"\nVERSION_ID="15.5"\n'
     'PRETTY_NAME="SUSE Linux Enterprise Server 15 SP5"\nID="sles"\nID_LIKE="suse"\n',
     "suse", "id"),
    ("sles-sap-15-sp4", 'NAME="SLES"\nVERSION="15-SP4"\nVERSION_ID="15.4"\n'
     'PRETTY_NAME="SUSE Linux Enterprise Server 15 SP4"\nID="sles_sap"\nID_LIKE="suse"\n',
     "suse", "id"),
    ("opensuse-leap-15.5", 'NAME="openSUSE Leap"\nVERSION="15.5"\nID="opensuse-leap"\n'
     'ID_LIKE="suse opensuse"\nVERSION_ID="15.5"\nPRETTY_NAME="openSUSE Leap 15.5"\n',
     "suse", "id"),
    ("opensuse-tumbleweed", 'NAME="openSUSE Tumbleweed"\n# VERSION="20240101"\n'
     'ID="opensuse-tumbleweed"\nID_LIKE="opensuse suse"\nVERSION_ID="20240101"\n'
     'PRETTY_NAME="openSUSE Tumbleweed"\n', "suse", "id"),
    ("cbl-mariner-2.0", 'NAME="Common Base Linux Mariner"\nVERSION="2.0.20231004"\nID=mariner\n'
     'VERSION_ID="2.0"\nPRETTY_NAME="CBL-Mariner/Linux"\n', "azurelinux", "id"),
    ("azure-linux-3.0", 'NAME="Microsoft Azure Linux"\nVERSION="3.0.20240401"\nID=azurelinux\n'
     'VERSION_ID="3.0"\nPRETTY_NAME="Microsoft Azure Linux 3.0"\n', "azurelinux", "id"),
    ("linuxmint-21.2", 'NAME="Linux Mint"\nVERSION="21.2 (Victoria)"\nID=linuxmint\n'
     'ID_LIKE="ubuntu debian"\nPRETTY_NAME="Linux Mint 21.2"\nVERSION_ID="21.2"\n',
     "ubuntu", "id_like"),
    ("eurolinux-9", 'NAME="EuroLinux"\nID="eurolinux"\nID_LIKE="rhel fedora centos"\n'
     'VERSION_ID="9.2"\nPRETTY_NAME="EuroLinux 9.2"\n', "rhel", "id_like"),
    ("fedora-39", 'NAME="Fedora Linux"\nVERSION="39 (Server Edition)"\nID=fedora\n'
     'VERSION_ID=39\nPRETTY_NAME="Fedora Linux 39 (Server Edition)"\n', "generic", "fallback"),
    ("arch", 'NAME="Arch Linux"\nPRETTY_NAME="Arch Linux"\nID=arch\nBUILD_ID=rolling\n',
     "generic", "fallback"),
]
