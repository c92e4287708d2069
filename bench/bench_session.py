"""Interactive round trip: send a chunk, receive its complete output.

Sessions on the embedded engine and on the process engine (lua5.4), beside
`lua5.4 -i` driven through a pseudo-terminal with prompt matching (the
original library's method, and pexpect's), measured in the same run.
Targets of issue #3: p50 <= 20 µs embedded, <= 200 µs process engine.
"""

from __future__ import annotations

import argparse
import os
import pty
import select
import shutil
import statistics
import time
from typing import Callable, List

from pylua_bioxen_vm_lib import VMManager

CHUNK = "print(2 + 2)"
PROMPT = b"@@bioxen-prompt@@ "


def sample(fn: Callable[[], object], n: int, warmup: int) -> List[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


class PtyRepl:
    """lua5.4 -i on a pty, driven by writing a line and reading up to the prompt."""

    def __init__(self) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child
            os.execvp("lua5.4", ["lua5.4", "-e", f"_PROMPT={PROMPT.decode()!r}", "-i"])
        self._read_until_prompt()

    def _read_until_prompt(self) -> bytes:
        buf = b""
        deadline = time.monotonic() + 10
        while not buf.endswith(PROMPT):
            ready, _, _ = select.select([self.fd], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError(f"no prompt from lua5.4 -i; got {buf[-200:]!r}")
            buf += os.read(self.fd, 65536)
        return buf

    def run(self, line: str) -> bytes:
        os.write(self.fd, line.encode() + b"\n")
        return self._read_until_prompt()

    def close(self) -> None:
        os.close(self.fd)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=5000)
    args = ap.parse_args()
    if shutil.which("lua5.4") is None:
        raise SystemExit("lua5.4 is needed for the baseline (apt-get install lua5.4)")

    rows = []
    repl = PtyRepl()
    assert b"4" in repl.run(CHUNK)
    rows.append(("baseline: lua5.4 -i on a pty", sample(lambda: repl.run(CHUNK), args.n // 5, 50), None))
    repl.close()

    with VMManager() as manager:
        for name, kwargs, target in (
            ("session, embedded", {}, 20e-6),
            ("session, process engine (lua5.4)", {"lua_executable": "lua5.4"}, 200e-6),
        ):
            session = manager.create_interactive_vm(name.replace(" ", "_"), **kwargs)
            assert session.execute_interactive(CHUNK)["stdout"] == "4"
            rows.append((name, sample(lambda s=session: s.execute_interactive(CHUNK), args.n, 500), target))

    base = statistics.median(rows[0][1])
    print(f"\ninteractive round trip of {CHUNK!r} from Python (send, wait, complete output)")
    print(f"{'path':36} {'p50 µs':>9} {'p99 µs':>9} {'vs pty':>8}  target")
    for name, xs, target in rows:
        p50 = statistics.median(xs)
        p99 = sorted(xs)[int(0.99 * len(xs))]
        verdict = "" if target is None else (f"p50 <= {target * 1e6:.0f} µs: " + ("met" if p50 <= target else "MISSED"))
        print(f"{name:36} {p50 * 1e6:9.1f} {p99 * 1e6:9.1f} {base / p50:7.1f}x  {verdict}")
    print("(the core's own round trip, without Python, is in `go test -bench Session ./tests/go/`)")


if __name__ == "__main__":
    main()
