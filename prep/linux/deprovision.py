"""Deprovision plans per family, as data: typed steps built before anything runs.

Sources:
- Azure's per-distribution preparation pages (``Family.doc``): registration removal, the
  installer leftovers, ``cloud-init clean``, ``waagent -force -deprovision[+user]``.
- WALinuxAgent ``azurelinuxagent/pa/deprovision/default.py``: deprovision stops the agent,
  deletes DHCP leases, resolv.conf, /var/lib/waagent, the root password and, only when
  Provisioning.RegenerateSshHostKeyPair=y, the SSH host keys; ``+user`` deletes only the
  user named in ovf-env.xml, which an on-premises VM does not have. So the plan removes
  the host keys itself and deletes the login user (or ``--delete-user``) with
  ``userdel -f -r`` (the call WALinuxAgent's own del_account makes).
- Steps the pages list that WALinuxAgent or cloud-init already do are not repeated: the
  Ubuntu page's ``systemctl stop walinuxagent`` and ``rm -rf /var/lib/waagent`` (deprovision
  stops the agent and removes its lib dir) and ``rm -rf /var/lib/cloud`` (``cloud-init
  clean`` empties it). ``rm -f /var/log/waagent.log`` is kept, as every page has it.
- The user deletion and power-off end the SSH session, so they run last, as one detached
  command (``setsid sh -c ...``) that outlives the connection.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import PrepUsageError
from ..plan import Plan, Step
from ..shell import quote
from .facts import PERSISTENT_NET_RULE, Facts
from .families import AZURE_DOCS, Family

WAAGENT_SOURCE = "WALinuxAgent deprovision (azurelinuxagent/pa/deprovision/default.py)"
CLOUD_INIT_SOURCE = "cloud-init clean (docs.cloud-init.io, cli reference)"
DEFAULT_FINAL_DELAY = 1.0
WAAGENT_LOG = "/var/log/waagent.log"


@dataclass(frozen=True)
class DeprovisionPlan:
    """Steps run one by one, then ``final_steps`` run as one detached command."""

    target: str
    family: str
    steps: tuple[Step, ...]
    final_steps: tuple[Step, ...]
    warnings: tuple[str, ...] = ()
    deleted_user: str | None = None
    powers_off: bool = True

    def as_plan(self) -> Plan:
        """The shared ``Plan`` shape (every step, in order)."""
        return Plan(self.target, self.steps + self.final_steps, self.warnings)

    def to_dict(self) -> dict[str, Any]:
        document = self.as_plan().to_dict()
        document.update({"family": self.family, "detached_from": len(self.steps),
                         "deleted_user": self.deleted_user, "powers_off": self.powers_off})
        return document

    def final_command(self, delay: float = DEFAULT_FINAL_DELAY) -> str:
        """One command that survives the end of the session and runs the final steps.

        ``setsid`` leaves the session and ``trap '' HUP`` ignores the hang-up (what nohup
        does, without needing nohup on the guest); the short sleep lets the launching
        command return first; ``;`` (not ``&&``) so the power-off happens even if a
        deletion fails.
        """
        script = "; ".join(["trap '' HUP", f"sleep {delay:g}",
                            *(s.command for s in self.final_steps)])
        return f"setsid sh -c {quote(script)} >/dev/null 2>&1 </dev/null &"


def _paths(paths: tuple[str, ...]) -> str:
    # Family constants: quote each, but leave a trailing glob for the shell to expand.
    return " ".join(p if "*" in p else quote(p) for p in paths)


def check_deleted_user(name: str) -> str:
    """``name`` if userdel may be given it: not root, not read as an option, not empty."""
    problem = ("root, whose account the image needs" if name == "root" else
               "a name userdel would read as an option" if name.startswith("-") else
               "an empty name" if not name.strip() else None)
    if problem:
        raise PrepUsageError(f"--delete-user {name!r}: expected the login account to remove, "
                             f"found {problem}")
    return name


def build_plan(target: str, family: Family, facts: Facts, *, login_user: str,
               login_home: str = "", delete_user: str | None = None,
               shutdown: bool = True, warnings: tuple[str, ...] = ()) -> DeprovisionPlan:
    """The ordered deprovision steps for ``family`` on a guest described by ``facts``."""
    user = delete_user if delete_user is not None else (
        login_user if login_user != "root" else None)
    if user is not None:
        check_deleted_user(user)
    steps: list[Step] = []
    reg = family.registration
    if reg is not None and facts.registered:
        steps += [Step(f"unregister from {reg.tool}", command, True, reg.source)
                  for command in reg.unregister]
    leftovers = family.installer_leftovers
    if facts.cloud_init_installed:
        leftovers += family.cloud_init_leftovers
    elif family.cloud_init_leftovers:
        warnings += (f"cloud-init is not installed: {' '.join(family.cloud_init_leftovers)} "
                     "stay, as nothing would write a new network configuration; make sure "
                     "they match interfaces by name and use DHCP",)
    if leftovers:
        steps.append(Step("remove installer files that would misconfigure the first boot",
                          "rm -f " + _paths(leftovers), True, family.doc))
    if facts.persistent_net_rules:
        steps.append(Step("remove the udev rule that ties interface names to old MAC addresses",
                          "rm -f " + quote(PERSISTENT_NET_RULE), True,
                          f"{AZURE_DOCS}create-upload-generic; {AZURE_DOCS}suse-create-upload-vhd"))
    if facts.waagent_installed:
        # Every page's deprovision block starts with it (rm -f /var/log/waagent.log), so no
        # log of this machine's agent travels into the image.
        steps.append(Step("remove the Azure Linux agent's log", "rm -f " + quote(WAAGENT_LOG),
                          True, f"{family.doc} (deprovision steps)"))
    if facts.cloud_init_installed:
        steps.append(Step("reset cloud-init so it provisions again on first boot",
                          "cloud-init clean --logs --seed", True,
                          f"{family.doc}; {CLOUD_INIT_SOURCE}"))
    steps.append(Step("remove the SSH host keys (new ones are made on first boot)",
                      "rm -f /etc/ssh/ssh_host_*", True, WAAGENT_SOURCE))
    steps += [Step(f"reset the machine id ({command.split()[-1]})", command, True,
                   "machine-id(5)") for command in family.machine_id_reset]
    histories = ["/root/.bash_history"]
    if login_home and login_home != "/root" and user != login_user:
        histories.append(login_home.rstrip("/") + "/.bash_history")
    steps.append(Step("clear shell history", "rm -f " + " ".join(quote(h) for h in histories),
                      True, f"{family.doc} (history removal before capture)"))
    final: list[Step] = []
    if not facts.waagent_installed:
        warnings += ("waagent is not installed: its deprovision step is left out, so DHCP "
                     "leases, resolv.conf and the root password stay as they are",)
    elif user is None:
        steps.append(Step("deprovision with the Azure Linux agent", "waagent -force -deprovision",
                          True, f"{family.doc}; {WAAGENT_SOURCE}"))
    else:
        final.append(Step("deprovision with the Azure Linux agent, +user",
                          "waagent -force -deprovision+user", True,
                          f"{family.doc}; {WAAGENT_SOURCE}"))
    if user is not None:
        final.append(Step(f"delete the user {user} and its home directory",
                          f"userdel -f -r {quote(user)}", True,
                          f"{WAAGENT_SOURCE} (del_account)"))
    final.append(Step("flush file systems", "sync", False, "coreutils sync"))
    if shutdown:
        final.append(Step("power off", "shutdown -h now", True,
                          AZURE_DOCS + "create-upload-generic (shut the VM down before capture)"))
    return DeprovisionPlan(target, family.name, tuple(steps), tuple(final), warnings,
                           deleted_user=user, powers_off=shutdown)
