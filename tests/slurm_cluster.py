"""A real single-node SLURM cluster on this machine, for testing profiles/slurm.

Needs root and a Debian/Ubuntu apt. Installs Debian's slurmctld, slurmd, slurm-client and
munge when missing, writes slurm.conf into a temporary directory (linked from
/etc/slurm/slurm.conf: job steps read that path whatever SLURM_CONF says), starts munged,
slurmctld and slurmd in the foreground as children, waits until ``sinfo`` shows the node
idle, and on exit cancels the cluster's jobs and stops exactly the daemons it started,
by PID. See /work/shared/notes/slurm-local.md for where each setting comes from.

    with SlurmCluster(tmp_dir) as cluster:      # as a library (tests/test_slurm.py)
        subprocess.run(["sbatch", ...])

    python tests/slurm_cluster.py [--dir DIR]   # by hand: up until Ctrl-C
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import apt_packages

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge")
BINARIES = ("slurmctld", "slurmd", "sinfo", "squeue", "sbatch", "scancel", "munged", "munge", "unmunge")
SLURM_CONF = Path("/etc/slurm/slurm.conf")
PARTITION = "debug"

MARKER = "# Written by tests/slurm_cluster.py"
TEMPLATE = (
    MARKER
    + """: a one-node test cluster. Removed when it stops.
ClusterName=llmscapetest
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
# Finished jobs stay visible to squeue this long: the executor plugin's status checks need it.
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={mem_mb} State=UNKNOWN
PartitionName={partition} Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""
)


class ClusterError(RuntimeError):
    pass


def why_unavailable() -> str | None:
    """None if a cluster can be brought up here, else the reason (for pytest.skip)."""
    if sys.platform != "linux":
        return "SLURM test cluster needs Linux"
    if os.geteuid() != 0:
        return "SLURM test cluster needs root (it installs packages and runs slurmd)"
    if all(shutil.which(b) for b in BINARIES):
        return None
    if shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    return None


def ensure_installed(log=print) -> float:
    """apt-get install the SLURM and munge packages if any binary is missing; seconds spent."""
    missing = [b for b in BINARIES if shutil.which(b) is None]
    if not missing:
        return 0.0
    log(f"installing {' '.join(PACKAGES)} (missing: {', '.join(missing)})")
    t0 = time.monotonic()
    apt_packages.install(PACKAGES, ClusterError)
    still = [b for b in BINARIES if shutil.which(b) is None]
    if still:
        raise ClusterError(f"after installing {PACKAGES}, still missing: {still}")
    spent = time.monotonic() - t0
    log(f"installed in {spent:.1f} s")
    return spent


def node_memory_mb(fraction: float = 0.8) -> int:
    """RealMemory for the node: a fraction of MemTotal (slurmd drains a node claiming more than it has)."""
    with open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemTotal:"):
                return int(int(line.split()[1]) / 1024 * fraction)
    raise ClusterError("no MemTotal in /proc/meminfo")


def _munge_works() -> bool:
    try:
        cred = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        if cred.returncode != 0:
            return False
        check = subprocess.run(["unmunge"], input=cred.stdout, capture_output=True, timeout=10)
        return check.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class SlurmCluster:
    """Start munged (unless one already answers), slurmctld and slurmd; stop what was started."""

    def __init__(
        self, workdir: str | Path | None = None, cpus: int | None = None, mem_mb: int | None = None, log=print
    ):
        self.dir = Path(workdir or tempfile.mkdtemp(prefix="llmscape-slurm-")).resolve()
        self.cpus = cpus or os.cpu_count() or 1
        self.mem_mb = mem_mb or node_memory_mb()
        self.log = log
        self.procs: dict[str, subprocess.Popen] = {}
        self._conf_backup: Path | None = None
        self._linked = False
        self.install_s = 0.0
        self.startup_s = 0.0

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> SlurmCluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        reason = why_unavailable()
        if reason:
            raise ClusterError(reason)
        self.install_s = ensure_installed(self.log)
        t0 = time.monotonic()
        for sub in ("state", "spool"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        conf = self.dir / "slurm.conf"
        conf.write_text(TEMPLATE.format(dir=self.dir, cpus=self.cpus, mem_mb=self.mem_mb, partition=PARTITION))
        self._install_conf(conf)
        self._start_munge()
        for daemon in ("slurmctld", "slurmd"):
            running = subprocess.run(["pgrep", "-x", daemon], capture_output=True, text=True)
            if running.returncode == 0:
                pids = " ".join(running.stdout.split())
                raise ClusterError(f"{daemon} already runs here (PID {pids}), not started by us: stop it first")
        self._spawn("slurmctld", ["slurmctld", "-D", "-i", "-f", str(SLURM_CONF)])
        self._spawn("slurmd", ["slurmd", "-D", "-N", "localhost", "-f", str(SLURM_CONF)])
        self.wait_idle(timeout)
        self.startup_s = time.monotonic() - t0
        self.log(f"SLURM cluster up in {self.startup_s:.1f} s: {self.cpus} CPUs, {self.mem_mb} MB, dir {self.dir}")

    def _install_conf(self, conf: Path) -> None:
        SLURM_CONF.parent.mkdir(parents=True, exist_ok=True)
        if SLURM_CONF.is_symlink() and (not SLURM_CONF.exists() or SLURM_CONF.read_text().startswith(MARKER)):
            SLURM_CONF.unlink()  # left by a test run that was killed before it could clean up
        if SLURM_CONF.exists() or SLURM_CONF.is_symlink():
            self._conf_backup = SLURM_CONF.with_name(f"slurm.conf.before-llmscape-{os.getpid()}")
            SLURM_CONF.rename(self._conf_backup)
        SLURM_CONF.symlink_to(conf)
        self._linked = True

    def _start_munge(self) -> None:
        if _munge_works():
            return  # a munged is already serving this machine: use it, and leave it running
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create"], check=True, capture_output=True)
            shutil.chown(key, "munge", "munge")
        run = Path("/run/munge")
        run.mkdir(parents=True, exist_ok=True)
        shutil.chown(run, "munge", "munge")
        self._spawn("munged", ["/usr/sbin/munged", "-F"], user="munge", group="munge", extra_groups=[])
        for _ in range(50):
            if _munge_works():
                return
            self._check_alive()
            time.sleep(0.1)
        raise ClusterError(f"munged does not answer; see {self.dir / 'munged.out'}")

    def _spawn(self, name: str, cmd: list[str], **kw) -> None:
        out = open(self.dir / f"{name}.out", "w")  # noqa: SIM115 (the child keeps its own copy)
        self.procs[name] = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw)
        out.close()

    def _check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                tail = (self.dir / f"{name}.out").read_text()[-2000:]
                raise ClusterError(f"{name} exited with {proc.returncode}:\n{tail}")

    def wait_idle(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            self._check_alive()
            proc = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True)
            state = proc.stdout.strip()
            if proc.returncode == 0 and state == "idle":
                return
            time.sleep(0.5)
        raise ClusterError(f"node not idle after {timeout:.0f} s (sinfo state {state!r}); logs in {self.dir}")

    def stop(self) -> None:
        """Cancel the cluster's jobs, stop the daemons this object started (by PID), restore the config."""
        if "slurmctld" in self.procs and self.procs["slurmctld"].poll() is None:
            cancel = ["scancel", "--full", "--quiet", f"--partition={PARTITION}"]
            subprocess.run(cancel, capture_output=True, timeout=30)
            time.sleep(0.5)
        for name in ("slurmd", "slurmctld", "munged"):  # reverse start order
            proc = self.procs.pop(name, None)
            if proc is None or proc.poll() is not None:
                continue
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        if self._linked and SLURM_CONF.is_symlink():
            SLURM_CONF.unlink()
            self._linked = False
        if self._conf_backup is not None and self._conf_backup.exists():
            self._conf_backup.rename(SLURM_CONF)
            self._conf_backup = None

    # -- inspection ------------------------------------------------------------------------
    def jobs(self) -> list[dict]:
        """All jobs slurmctld still remembers (finished ones for MinJobAge seconds)."""
        keys = ("id", "name", "state", "partition", "min_memory", "cpus", "time", "comment")
        fmt = "%i|%j|%T|%P|%m|%C|%M|%k"
        proc = subprocess.run(["squeue", "-h", "-t", "all", "-o", fmt], capture_output=True, text=True, check=True)
        rows = [line.split("|", len(keys) - 1) for line in proc.stdout.splitlines() if line]
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def ctld_log(self) -> str:
        path = self.dir / "slurmctld.log"
        return path.read_text() if path.exists() else ""


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Bring up a one-node SLURM cluster until Ctrl-C.")
    parser.add_argument("--dir", help="state/log directory (default: a new temporary one)")
    args = parser.parse_args(argv)
    cluster = SlurmCluster(args.dir)
    with cluster:
        print(subprocess.run(["sinfo"], capture_output=True, text=True).stdout, flush=True)
        print("Ctrl-C (or SIGTERM) stops it.", flush=True)
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
