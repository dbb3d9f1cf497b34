"""Run one function in a forked child process and bring back its result or its error.

The driver of a build plans and accounts; work that touches rows (a builder, a global step,
the outputs, the dataset card) runs in a child, so the pages and objects it creates go back
to the system when it ends instead of staying in the driver's resident set. Nothing is
pickled on the way in (the child is a copy of this process, so steps defined anywhere work);
the result, or the exception with the child's traceback, comes back pickled.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

from meddata.errors import UserError

T = TypeVar("T")


class ChildDied(UserError, RuntimeError):
    """The child process ended without an answer (killed: often the kernel's out-of-memory killer)."""


class _RemoteTraceback(Exception):
    def __init__(self, text: str):
        super().__init__(text)

    def __str__(self) -> str:
        return str(self.args[0])


def in_child(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a forked child; its return value, or its exception raised here."""
    ctx = multiprocessing.get_context("fork")
    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child_main, args=(send, fn, args), name=f"meddata-{fn.__name__}")
    proc.start()
    send.close()
    try:
        try:
            ok, payload, tb = receive.recv()
        except EOFError:
            proc.join()
            code = proc.exitcode or 0
            how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"
            raise ChildDied(f"the process running {fn.__name__} ended without an answer ({how}); if it was "
                            "killed for memory, run with fewer processes (--num-proc) or on a bigger machine") from None
    except BaseException:
        if proc.is_alive():
            proc.terminate()
        proc.join()
        raise
    finally:
        receive.close()
    proc.join()
    if ok:
        return payload
    if tb:
        payload.__cause__ = _RemoteTraceback(tb)
    raise payload


def _child_main(send, fn: Callable[..., Any], args: tuple) -> None:
    try:
        message = (True, fn(*args), "")
    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
        message = (False, exc, "".join(traceback.format_exception(exc)))
    try:
        send.send(message)
    except Exception as exc:  # an answer that does not pickle: say what it was
        ok, payload, tb = message
        what = type(payload).__name__
        send.send((False, RuntimeError(f"{fn.__name__} returned {what}, which cannot be sent back: {exc}"
                                       if ok else f"{what}: {payload}"), tb))
    finally:
        send.close()
        sys.stdout.flush()
        sys.stderr.flush()
