"""Waiting for events in tests, never for a fixed time: CI runs on a busy 2-core machine with a fresh venv, where
a child process may take many seconds just to import. Two helpers, used by every test that waits:

- `wait_for(condition, timeout, what)`: until `condition()` is true (a file appears, a row is committed, a port
  answers, a thread has reached a point), checked every `interval` seconds, failing with `what` at the deadline;
- `read_until(process, pattern, timeout, what)`: reads a child's stdout until a line matches `pattern`, failing
  at the deadline, or as soon as the child closes its stdout, with what it printed (and its stderr when piped).
  `printed(process)` gives the lines read so far without waiting, `wait_for_exit(process)` the whole output.

Both run in child processes too (put the repository root on sys.path and `from tests.waiting import ...`).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

TIMEOUT = 120.0  # seconds: generous, a deadline only ever reached when something is wrong


class WaitTimeout(AssertionError):
    """A wait that passed its deadline (an AssertionError, so pytest reports it as the test's failure)."""


def _describe(what: str | Callable[[], str]) -> str:
    return what() if callable(what) else what


def wait_for(condition: Callable[[], Any], timeout: float = TIMEOUT, what: str | Callable[[], str] = "the condition",
             interval: float = 0.05) -> Any:
    """Return `condition()`'s first true value, calling it every `interval` seconds until `timeout` seconds have
    passed, then raise WaitTimeout naming `what` (a string, or a callable giving one, for details known only then:
    the last error seen...). An exception raised by `condition` ends the wait at once (e.g. the child it waits on
    has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out after {timeout:g} s waiting for {_describe(what)}")
        time.sleep(interval)


class _Output:
    """A child's stdout (and stderr, when piped) read line by line by daemon threads, so that waiting for a line
    can time out and a chatty child never blocks on a full pipe."""

    def __init__(self, process: subprocess.Popen):
        if process.stdout is None:
            raise ValueError("the process needs stdout=subprocess.PIPE (text=True) to be read")
        self.lines: list[str] = []
        self.errors: list[str] = []
        self.cursor = 0  # lines before it were consumed by read_until
        self.closed = False
        self.changed = threading.Condition()
        threading.Thread(target=self._pump, args=(process.stdout, self.lines, True), daemon=True).start()
        self.stderr_closed = process.stderr is None
        if process.stderr is not None:
            threading.Thread(target=self._pump, args=(process.stderr, self.errors, False), daemon=True).start()

    def _pump(self, stream, into: list[str], is_stdout: bool) -> None:
        for line in stream:
            if isinstance(line, bytes):
                line = line.decode(errors="replace")
            with self.changed:
                into.append(line.rstrip("\r\n"))
                self.changed.notify_all()
        with self.changed:
            if is_stdout:
                self.closed = True
            else:
                self.stderr_closed = True
            self.changed.notify_all()


_outputs: weakref.WeakKeyDictionary[subprocess.Popen, _Output] = weakref.WeakKeyDictionary()
_outputs_lock = threading.Lock()


def _output(process: subprocess.Popen) -> _Output:
    with _outputs_lock:
        if process not in _outputs:
            _outputs[process] = _Output(process)
        return _outputs[process]


def _tail(lines: list[str], count: int = 40) -> str:
    return "\n".join(lines[-count:]) or "(nothing)"


def _report(process: subprocess.Popen, output: _Output) -> str:
    """What the child printed, for a failure message (called without holding `output.changed`)."""
    if output.closed:  # its stdout is closed: it is exiting; let it finish and its stderr be read (bounded waits)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    with output.changed:
        if process.poll() is not None:
            output.changed.wait_for(lambda: output.stderr_closed, timeout=10)
        stdout = _tail(output.lines)
        stderr = _tail(output.errors) if process.stderr is not None else "(not piped)"
    return f"its exit status: {process.poll()}\nits stdout:\n{stdout}\nits stderr:\n{stderr}"


def read_until(process: subprocess.Popen, pattern: str, timeout: float = TIMEOUT, what: str | None = None) -> re.Match:
    """Read `process`'s stdout (a pipe) line by line until a line matches the regular expression `pattern`
    (`re.search`), and return the match (`match.string` is the line). Lines read on the way are consumed: the next
    call goes on after the matching line. Fails at the deadline, or once the child closes its stdout (exits)
    without printing such a line, with what it printed."""
    output, expression = _output(process), re.compile(pattern)
    wanted = what or f"a line matching {pattern!r} on the stdout of {_command(process)}"
    deadline = time.monotonic() + timeout
    with output.changed:
        while True:
            while output.cursor < len(output.lines):
                line = output.lines[output.cursor]
                output.cursor += 1
                if match := expression.search(line):
                    return match
            if output.closed:
                failure = f"the child closed its stdout (exited) before printing {wanted}"
                break
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                failure = f"timed out after {timeout:g} s waiting for {wanted}"
                break
            output.changed.wait(remaining)
    raise WaitTimeout(f"{failure}\n{_report(process, output)}")


def printed(process: subprocess.Popen) -> list[str]:
    """The lines `process` printed on its stdout so far (all of them, consumed by read_until or not); no wait."""
    output = _output(process)
    with output.changed:
        return list(output.lines)


def wait_for_exit(process: subprocess.Popen, timeout: float = TIMEOUT) -> tuple[list[str], str]:
    """Wait for `process` to exit and its output to be read: (every stdout line it printed, its stderr). Use it
    instead of `communicate` on a process read by read_until (both would read the same pipe)."""
    output = _output(process)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        raise WaitTimeout(f"timed out after {timeout:g} s waiting for {_command(process)} to exit\n"
                          f"{_report(process, output)}") from None
    with output.changed:
        finished = output.changed.wait_for(lambda: output.closed and output.stderr_closed, timeout=timeout)
        if finished:
            return list(output.lines), "\n".join(output.errors)
    raise WaitTimeout(f"{_command(process)} exited but its output stayed open for {timeout:g} s (a child of it "
                      f"holds the pipe?)\n{_report(process, output)}")


def _command(process: subprocess.Popen) -> str:
    arguments = process.args if isinstance(process.args, list | tuple) else [process.args]
    shown = " ".join(str(a) if len(str(a)) < 60 else str(a)[:57] + "..." for a in arguments)
    return f"the child `{shown}` (pid {process.pid})"
