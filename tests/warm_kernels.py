"""Warm notebook kernels for the test suite: a fork server with the heavy imports done once.

Every experiment notebook starts a fresh `python3` kernel whose first cell imports torch, transformers, TRL and the
library: about 10 s of one core each, paid by ~40 notebook runs in the suite. Here one process per pytest worker (the
server) does those imports once, then forks a kernel for each request: the notebook still runs every cell in a real
ipykernel of its own (the imports in its first cell find the modules loaded), only the loading itself is shared.

The kernelspec that `tests/conftest.py` puts first on JUPYTER_PATH names this file's client as the kernel command, so
papermill, nbclient and the runner start kernels as they always do. The client is what jupyter_client sees as the
kernel process: it hands its environment, working folder and stdio to the server, forwards signals to the forked
kernel and lives exactly as long as it; the kernel exits within 0.1 s of its client being killed, and the client kills
the kernel when its own parent (the kernel manager) dies, as a cold kernel's parent poller does. Where the server is
not there (failed, not started after 120 s, or gone), the client becomes a plain `ipykernel_launcher`: a cold kernel.

    python tests/warm_kernels.py serve SOCKET          # the server (conftest starts it)
    python tests/warm_kernels.py client SOCKET -f FILE  # the kernel command (jupyter_client starts it)
"""
import contextlib
import json
import os
import signal
import socket
import sys
import threading
import time

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def _reap(*_):
    "Collect every finished kernel at once, so that a client polling its kernel's pid sees it gone."
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0]: pass


def _kernel(req: dict, fds: list[int]):
    "In the forked child: become the requesting client's kernel."
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    os.setsid()
    for fd, target in zip(fds, (0, 1, 2)):
        os.dup2(fd, target); os.close(fd)
    os.environ.clear(); os.environ.update(req["env"])
    os.chdir(req["cwd"])
    sys.path[0] = ""                                   # as `python -m ipykernel_launcher` from that folder

    def watchdog(client=req["client"]):
        while True:
            try: os.kill(client, 0)
            except OSError: os._exit(1)                  # the client was killed: so is its kernel
            time.sleep(0.1)
    threading.Thread(target=watchdog, daemon=True, name="warm-kernel-watchdog").start()
    from ipykernel.kernelapp import IPKernelApp
    IPKernelApp.launch_instance(argv=req["args"])
    os._exit(0)


def serve(path: str):
    try: _serve(path)
    except BaseException:
        open(path + ".failed", "w").close()          # clients waiting for the socket start cold kernels at once
        raise


def _serve(path: str):
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")   # what ipykernel sets at start
    import torch, transformers, trl, peft, datasets, pandas, scipy.stats, matplotlib.pyplot, seaborn   # noqa: F401
    from transformers import Qwen2_5_VLForConditionalGeneration, Trainer                               # noqa: F401
    from trl import GRPOTrainer, SFTTrainer                                                           # noqa: F401
    import jigsaw_forget.study, jigsaw_forget.train, jigsaw_forget.report, jigsaw_forget.claims        # noqa: F401
    import jigsaw_forget.dynamics, jigsaw_forget.perplexity, jigsaw_forget.launch, jigsaw_forget.world  # noqa: F401
    from ipykernel.kernelapp import IPKernelApp                                                        # noqa: F401
    assert threading.active_count() == 1, f"threads before forking: {threading.enumerate()}"
    signal.signal(signal.SIGCHLD, _reap)
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    srv.bind(path + ".part"); os.rename(path + ".part", path)   # the socket appears only once it is bound
    srv.listen(64)
    while True:
        conn, _ = srv.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
            pid = os.fork()
            if pid == 0:
                srv.close(); conn.close()
                try: _kernel(json.loads(msg), fds)
                finally: os._exit(1)
            for fd in fds: os.close(fd)
            conn.sendall(json.dumps({"pid": pid}).encode())


def _cold(args):
    os.execv(sys.executable, [sys.executable, "-m", "ipykernel_launcher", *args])


def client(path: str, args: list[str]):
    end = time.monotonic() + 120
    while not os.path.exists(path):
        if time.monotonic() > end or os.path.exists(path + ".failed"): _cold(args)
        time.sleep(0.05)
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(path)
        req = dict(env=dict(os.environ), cwd=os.getcwd(), args=args, client=os.getpid())
        socket.send_fds(s, [json.dumps(req).encode()], [0, 1, 2])
        pid = json.loads(s.recv(4096))["pid"]
        s.close()
    except OSError: _cold(args)

    def forward(signum, _frame):
        with contextlib.suppress(ProcessLookupError): os.kill(pid, signum)
    for sig in FORWARDED: signal.signal(sig, forward)
    manager = os.getppid()
    while True:
        try: os.kill(pid, 0)
        except ProcessLookupError: sys.exit(0)
        if os.getppid() != manager:     # whoever started the kernel is gone (a cold kernel's parent poller does the same)
            forward(signal.SIGKILL, None); sys.exit(1)
        time.sleep(0.05)


if __name__ == "__main__":
    cmd, path, *rest = sys.argv[1:]
    serve(path) if cmd == "serve" else client(path, rest)
