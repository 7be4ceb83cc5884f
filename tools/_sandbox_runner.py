"""Runs inside the sandbox: locks the process down, then executes untrusted code.

Started by `braid.tools.sandbox` as a script (never imported), usually as PID 1 of fresh
network, mount, PID, IPC and UTS namespaces created by util-linux `unshare`. Argument 1 is a
JSON config; the code arrives on stdin; the result (last expression value, error) goes as
JSON to the file descriptor named in the config. Only the standard library is used, and
everything is imported before the untrusted code runs.
"""

from __future__ import annotations

import ast
import builtins
import ctypes
import json
import os
import resource
import sys
import traceback

MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_MOVE, MS_REC, MS_RELATIME, MS_STRICTATIME = 8192, 16384, 1 << 21, 1 << 24
PR_SET_NO_NEW_PRIVS = 38
PER_MOUNT_FLAGS = {
    "nosuid": MS_NOSUID, "nodev": MS_NODEV, "noexec": MS_NOEXEC, "noatime": MS_NOATIME,
    "nodiratime": MS_NODIRATIME, "relatime": MS_RELATIME, "strictatime": MS_STRICTATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]


class LockdownError(RuntimeError):
    pass


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    if _libc.mount(enc(source), enc(target), enc(fstype), flags, enc(data)) != 0:
        errno = ctypes.get_errno()
        raise LockdownError(f"mount {target}: {os.strerror(errno)}")


def _unescape_mount_path(field: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo octal.
    return field.encode().decode("unicode_escape").encode("latin-1").decode()


def make_all_mounts_read_only() -> None:
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split() for line in f]
    for fields in mounts:
        target = _unescape_mount_path(fields[4])
        options = fields[5].split(",")
        flags = MS_REMOUNT | MS_BIND | MS_RDONLY
        flags |= sum(PER_MOUNT_FLAGS[o] for o in options if o in PER_MOUNT_FLAGS)
        try:
            _mount(None, target, None, flags, None)
        except LockdownError:
            if os.path.exists(target):  # a mount hidden under another one cannot be reached anyway
                raise


def mount_private_workdir(workdir: str, size_bytes: int, uid: int, gid: int) -> None:
    data = f"size={size_bytes},mode=0700,uid={uid},gid={gid}"
    _mount("tmpfs", workdir, "tmpfs", MS_NOSUID | MS_NODEV, data)


def mask_private_dirs(masked: list[str], exposed: list[str], staging: str) -> None:
    """Hides e.g. /root behind an empty read-only tmpfs, re-exposing paths inside it (read-only).

    The Python installation may live under a directory uid nobody cannot traverse (pyenv in
    /root); it is bind-mounted aside, the directory is masked, and the bind is moved back.
    """
    for mask in (m for m in masked if os.path.isdir(m)):
        inside = [p for p in exposed if p == mask or p.startswith(mask + "/")]
        staged = []
        for i, path in enumerate(inside):
            stage = os.path.join(staging, f".expose-{i}")
            os.mkdir(stage)
            _mount(path, stage, None, MS_BIND | MS_REC, None)
            staged.append((stage, path))
        _mount("tmpfs", mask, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
        for stage, path in staged:
            os.makedirs(path, mode=0o755, exist_ok=True)
            _mount(stage, path, None, MS_MOVE, None)
            _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY, None)
            os.rmdir(stage)
        _mount(None, mask, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV, None)


def set_limits(cfg: dict) -> None:
    def cap(kind: int, soft: int, hard: int | None = None) -> None:
        resource.setrlimit(kind, (soft, soft if hard is None else hard))

    cap(resource.RLIMIT_AS, cfg["memory_bytes"])
    cap(resource.RLIMIT_CPU, cfg["cpu_seconds"], cfg["cpu_seconds"] + 1)
    cap(resource.RLIMIT_NPROC, cfg["max_processes"])
    cap(resource.RLIMIT_FSIZE, cfg["max_file_bytes"])
    cap(resource.RLIMIT_NOFILE, cfg["max_open_files"])
    cap(resource.RLIMIT_CORE, 0)


def drop_privileges(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)  # from root: drops every capability, so mounts cannot be undone
    if _libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise LockdownError("prctl(PR_SET_NO_NEW_PRIVS) failed")


def block_network_in_process() -> None:
    """Weak fallback where no network namespace could be made: refuse socket audit events."""

    def hook(event: str, args: tuple) -> None:
        if event.startswith("socket.") and event != "socket.gethostname":
            raise PermissionError(f"network access is disabled in this sandbox ({event})")

    sys.addaudithook(hook)


def lock_down_filesystem(cfg: dict) -> None:
    if cfg["isolation"] == "namespaces":
        make_all_mounts_read_only()
        mount_private_workdir(cfg["workdir"], cfg["workdir_bytes"], cfg["uid"], cfg["gid"])
        mask_private_dirs(cfg["masked_dirs"], cfg["exposed_paths"], cfg["workdir"])
    os.chdir(cfg["workdir"])


def lock_down_process(cfg: dict) -> None:
    set_limits(cfg)
    if cfg["isolation"] == "namespaces":
        drop_privileges(cfg["uid"], cfg["gid"])
    else:
        block_network_in_process()


def _short_repr(value: object, limit: int) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


def execute(code: str, repr_limit: int) -> dict:
    """Runs `code` like a notebook cell: the value of a final expression is returned."""
    namespace = {"__name__": "__main__", "__builtins__": builtins}
    try:
        tree = ast.parse(code, "<sandbox>", "exec")
        last_expr = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
        exec(compile(tree, "<sandbox>", "exec"), namespace)
        if last_expr is None:
            return {"value": None, "error": None, "exit_code": 0}
        value = eval(compile(ast.Expression(last_expr.value), "<sandbox>", "eval"), namespace)
        return {"value": None if value is None else _short_repr(value, repr_limit), "error": None, "exit_code": 0}
    except SystemExit as exc:
        code_ = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        return {"value": None, "error": None if code_ == 0 else f"SystemExit: {exc.code}", "exit_code": code_}
    except BaseException as exc:  # noqa: BLE001 - every failure of user code is reported
        frames = traceback.extract_tb(exc.__traceback__)
        user_frames = [f for f in frames if f.filename != __file__]
        sys.stderr.write("Traceback (most recent call last):\n")
        sys.stderr.write("".join(traceback.format_list(user_frames)))
        sys.stderr.write("".join(traceback.format_exception_only(type(exc), exc)))
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        return {"value": None, "error": error, "exit_code": 1}


def _report_lockdown_failure(result_fd: int, exc: Exception) -> None:
    # Fail closed: code never runs in a half locked-down process.
    os.write(result_fd, json.dumps({"lockdown_error": f"{type(exc).__name__}: {exc}"}).encode())
    os._exit(70)


def run_user_code(cfg: dict, code: str) -> None:
    try:
        lock_down_process(cfg)
    except Exception as exc:  # noqa: BLE001
        _report_lockdown_failure(cfg["result_fd"], exc)
    result = execute(code, cfg["repr_limit"])
    sys.stdout.flush()
    sys.stderr.flush()
    with os.fdopen(cfg["result_fd"], "w") as out:
        json.dump(result, out)
    os._exit(result["exit_code"] & 0x7F)


def wait_reaping_orphans(child: int) -> int:
    """As PID 1 of the namespace, reaps every orphan until the user code's process exits."""
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def main() -> None:
    cfg = json.loads(sys.argv[1])
    code = sys.stdin.read()
    devnull = os.open("/dev/null", os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    try:
        lock_down_filesystem(cfg)
    except Exception as exc:  # noqa: BLE001
        _report_lockdown_failure(cfg["result_fd"], exc)
    if cfg["isolation"] != "namespaces":
        run_user_code(cfg, code)
    # PID 1 of a PID namespace ignores signals it has no handler for (SIGXCPU included), so the
    # user code runs in a child; when this process exits the kernel kills everything left.
    child = os.fork()
    if child == 0:
        run_user_code(cfg, code)
    exit_code = wait_reaping_orphans(child)
    os._exit(exit_code if exit_code >= 0 else 128 - exit_code)


if __name__ == "__main__":
    main()
