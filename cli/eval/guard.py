# The sandbox's guard (cli/eval/sandbox.go): runs one candidate program
# under limits. usage: python3 -I guard.py MEMORY_BYTES CPU_SECONDS PROGRAM
#
# What it does, before the candidate runs, in this process:
# - resource limits: address space and data segment (MEMORY_BYTES), CPU
#   time (CPU_SECONDS, a backstop: the caller kills the process group at its
#   wall-clock limit), files written at most 1 MiB, no core files;
# - no network: socket creation and name lookups raise OSError (socket,
#   _socket);
# - no child processes: subprocess, os.system, fork, exec and spawn raise,
#   and so do kill and the process-wide shutdown calls.
# This is a guard against accidents of model-written code, not a security
# boundary: a program that goes looking (ctypes, reloading a module) gets
# around the Python-level part; the resource limits and the caller's kill
# hold regardless.
import os
import resource
import sys


def refuse(*_args, **_kwargs):
    raise OSError("disabled in the council eval sandbox")


def limit(memory, cpu):
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def no_network():
    import _socket
    import socket

    for mod in (socket, _socket):
        for name in ("socket", "socketpair", "fromfd", "create_connection", "create_server",
                     "getaddrinfo", "gethostbyname", "gethostbyname_ex", "gethostbyaddr"):
            if hasattr(mod, name):
                setattr(mod, name, refuse)


def no_processes():
    import subprocess

    subprocess.Popen = refuse
    for name in ("system", "popen", "fork", "forkpty", "kill", "killpg", "posix_spawn", "posix_spawnp",
                 "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
                 "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
                 "setuid", "putenv", "unsetenv"):
        if hasattr(os, name):
            setattr(os, name, refuse)


def main():
    memory, cpu, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with open(path, encoding="utf-8") as f:
        source = f.read()
    code = compile(source, "candidate.py", "exec")
    limit(memory, cpu)
    no_network()
    no_processes()
    exec(code, {"__name__": "__main__", "__builtins__": __builtins__})


if __name__ == "__main__":
    main()
