"""Child processes and /proc readings shared by bench.py and h2_tls.py.

Every child runs in its own session, so that one killpg takes an nginx master
with its workers; stop_all() ends whatever is still running (each script calls
it at exit and on a signal)."""

import os
import signal
import socket
import subprocess

_children = []


def spawn(args, cpus, log_path):
    """Starts args pinned to cpus (taskset), output to log_path."""
    with open(log_path, "ab") as logf:
        proc = subprocess.Popen(["taskset", "-c", cpus] + args, stdout=logf,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _children.append(proc)
    return proc


def track(proc):
    """A child started otherwise (its own session) that stop_all() must end too."""
    _children.append(proc)
    return proc


def stop(proc):
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=5)
    # A session can outlive its leader (an nginx worker whose master died).
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc in _children:
        _children.remove(proc)


def stop_all():
    for proc in list(_children):
        stop(proc)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path, n=30):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return "(no log)"


def cpu_ticks(pids):
    """(utime, stime) in clock ticks, summed over pids (fields 14 and 15 of stat)."""
    user = system = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
        fields = stat[stat.rindex(")") + 2:].split()
        # fields[0] is field 3 (state), so field 14 is fields[11].
        user += int(fields[11])
        system += int(fields[12])
    return user, system


def status_kb(pids, key):
    """A /proc/PID/status field in kB (VmRSS, VmHWM, ...), summed over pids."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    total += int(line.split()[1])
    return total


class CpuCap:
    """Holds processes to a fraction of one core with the kernel's CFS bandwidth control.

    A capped proxy is the bottleneck whatever the load generator can do, so its requests
    per CPU-second are its throughput per core, measured in the regime where every proxy
    batches the same way (see bench.py's capacity runs). Uses cgroup v2's cpu.max when the
    unified hierarchy has the cpu controller, else cgroup v1's cpu controller. Needs root;
    CpuCap.available() says whether it can work here."""

    V2 = "/sys/fs/cgroup"
    V1 = "/sys/fs/cgroup/cpu"

    @classmethod
    def _root(cls):
        try:
            with open(os.path.join(cls.V2, "cgroup.controllers")) as f:
                if "cpu" in f.read().split():
                    return cls.V2, 2
        except OSError:
            pass
        if os.path.exists(os.path.join(cls.V1, "cpu.cfs_quota_us")):
            return cls.V1, 1
        return None, 0

    @classmethod
    def available(cls):
        root, _ = cls._root()
        return root is not None and os.access(root, os.W_OK)

    def __init__(self, fraction, period_us=10000):
        root, self.version = self._root()
        if root is None:
            raise OSError("no cgroup cpu controller")
        self.path = os.path.join(root, f"skiff-bench-{os.getpid()}")
        os.makedirs(self.path, exist_ok=True)
        quota = max(1000, int(period_us * fraction))
        if self.version == 2:
            self._write("cpu.max", f"{quota} {period_us}")
        else:
            self._write("cpu.cfs_period_us", str(period_us))
            self._write("cpu.cfs_quota_us", str(quota))

    def _write(self, name, value):
        with open(os.path.join(self.path, name), "w") as f:
            f.write(value)

    def add(self, pids):
        """Moves each process (all its threads) into the capped group."""
        for pid in pids:
            self._write("cgroup.procs", str(pid))

    def stat(self):
        """(periods, throttled periods) so far, from cpu.stat."""
        vals = {}
        with open(os.path.join(self.path, "cpu.stat")) as f:
            for line in f:
                k, v = line.split()
                vals[k] = int(v)
        return vals.get("nr_periods", 0), vals.get("nr_throttled", 0)

    def close(self):
        """Removes the group; call after its processes have exited."""
        try:
            os.rmdir(self.path)
        except OSError:
            pass
