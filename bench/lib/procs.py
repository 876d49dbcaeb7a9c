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
