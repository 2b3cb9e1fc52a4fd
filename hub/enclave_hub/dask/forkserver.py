"""A prepared cluster's fork server: started in the cluster's sandbox before anyone asks for
a cluster, with Dask's scheduler and worker imported; forks them on the gateway's orders.

It reads orders on a Unix socket of packets whose other end the gateway holds (inherited, its
descriptor in `ENCLAVE_FORKSERVER_FD`): each is JSON (`argv` of `dask scheduler` or `dask
worker`, `env` to add) with the file descriptor the process logs to. The forked process
starts a session of its own, says "started" on the socket (the gateway reads its pid from the
packet's credentials, in the host's pid namespace) and runs the command. The server ends when
the gateway closes its end. Imports nothing of Enclave: it runs in the cluster, as its uid.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys

FD_VARIABLE = "ENCLAVE_FORKSERVER_FD"
FORK_VARIABLE = "DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD"
MOST_ORDER_BYTES = 1 << 20


def _warm_imports() -> dict:
    """What a scheduler and a worker import on their own, each taking most of a second."""
    import dask
    import dask_gateway.scheduler_preload  # noqa: F401
    import distributed.dashboard.scheduler  # noqa: F401
    from distributed.cli import dask_scheduler, dask_worker

    return {"config": dask.config, "scheduler": dask_scheduler.main, "worker": dask_worker.main}


def _run(order: dict, log_fd: int, orders: socket.socket, commands: dict) -> None:
    """In the forked child: become the ordered process; never returns."""
    code = 1
    try:
        os.setsid()
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.close(log_fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        role, *args = order["argv"]
        with open("/proc/self/comm", "w") as comm:
            comm.write(f"dask-{role}")  # its name in ps and top: not the fork server's
        os.environ.update(order["env"])
        # A worker's nanny forks the worker too, rather than start an interpreter afresh.
        os.environ[FORK_VARIABLE] = "fork"
        commands["config"].refresh()  # the cluster's settings and TLS files, from `env`
        orders.send(b"started")
        orders.close()
        commands[role](args=args, prog_name=f"dask {role}")
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    finally:
        os._exit(code)


def main() -> None:
    commands = _warm_imports()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # forked processes are reaped on exit
    orders = socket.socket(fileno=int(os.environ.pop(FD_VARIABLE)))
    while True:
        message, fds, _, _ = socket.recv_fds(orders, MOST_ORDER_BYTES, 1)
        if not message:
            return  # the gateway closed its end
        order = json.loads(message)
        if os.fork() == 0:
            _run(order, fds[0], orders, commands)
        os.close(fds[0])


if __name__ == "__main__":
    sys.exit(main())
