"""Popen (as up's _launch_detached) vs os.posix_spawnp, for `sleep 0`: the caller's time per
spawn (until the call returns), N in a row, interleaved rounds; children reaped after."""
import os, subprocess, sys, time, statistics
N = int(sys.argv[1]) if len(sys.argv) > 1 else 100
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 7
cmd = ["sleep", "0"]
devnull = os.open(os.devnull, os.O_RDONLY)

def popen():
    out_r, out_w = os.pipe(); err_r, err_w = os.pipe()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out_w, stderr=err_w, start_new_session=True)
    os.close(out_w); os.close(err_w)
    return p.pid, (out_r, err_r), p

def spawn():
    out_r, out_w = os.pipe(); err_r, err_w = os.pipe()
    fa = [(os.POSIX_SPAWN_DUP2, devnull, 0), (os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
    pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=fa, setsid=True)
    os.close(out_w); os.close(err_w)
    return pid, (out_r, err_r), None

ways = {"Popen": popen, "posix_spawnp": spawn}
spent = {k: [] for k in ways}
for r in range(ROUNDS):
    for name, f in (ways.items() if r % 2 == 0 else reversed(ways.items())):
        kids = []
        t0 = time.perf_counter()
        for _ in range(N):
            kids.append(f())
        spent[name].append((time.perf_counter() - t0) / N * 1e3)
        for pid, fds, p in kids:
            if p is not None: p.wait()
            else: os.waitpid(pid, 0)
            for fd in fds: os.close(fd)
print(f"caller's time per spawn of {cmd}, ms ({N} x {ROUNDS} rounds, interleaved): median (min-max)")
for k, v in spent.items():
    print(f"  {k:14} {statistics.median(v):.3f} ({min(v):.3f}-{max(v):.3f})")
