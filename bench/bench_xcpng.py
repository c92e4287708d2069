"""XCP-ng benchmarks against the simulator (real XML-RPC, real sshd guests).

1. execute_string('return 2 + 2') on an established SSH session (the Lua
   driver on a persistent channel) beside a new SSH connection per command
   (`lua5.4 -e` through ssh_run), in the same run. Target: <= 0.5 ms p50.
2. Provisioning 20 VMs concurrently beside one VM. Target: <= 2x one.
   The simulator's guests "boot" in 1 s (-ip-delay; real XCP-ng guests take
   tens of seconds), so the ratio measures whether the client provisions
   concurrently; each simulated guest also costs an ssh-keygen and a real
   sshd start, which on a 2-core machine adds CPU time per VM.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pylua_bioxen_vm_lib import create_vm
from pylua_bioxen_vm_lib.ssh_session import SSHSessionManager
from pylua_bioxen_vm_lib.xapi_client import XAPIClient

SIM = Path(__file__).resolve().parents[1] / "bin" / "xapi-sim"


def p50(xs):
    return statistics.median(xs)


def main() -> None:
    proc = subprocess.Popen(
        [str(SIM), "-listen", "127.0.0.1:0", "-print-config", "-ip-delay", "1s"], stdout=subprocess.PIPE, text=True
    )
    config = json.loads(proc.stdout.readline())
    try:
        vm = create_vm("bench_xcpng", vm_type="xcpng", config=config)
        vm.start()
        for _ in range(200):
            vm.execute_string("return 2 + 2")
        session = []
        for _ in range(2000):
            t = time.perf_counter()
            vm.execute_string("return 2 + 2")
            session.append(time.perf_counter() - t)
        client = XAPIClient(
            config["xcp_host"],
            config["xcp_username"],
            config["xcp_password"],
            allow_loopback_ip=True,
            ssh_port_key=config.get("vm_ssh_port_key"),
        )
        guest = client.create_vm_from_template(config["template_name"], "bench-direct")
        ssh = SSHSessionManager(
            guest["ip"],
            config["vm_username"],
            key_file=config["vm_key_file"],
            port=guest["ssh_port"],
            known_hosts=config["vm_known_hosts"],
        )
        per_command = []
        for _ in range(20):
            t = time.perf_counter()
            out = ssh.run_command("lua5.4 -e 'print(2 + 2)'")
            per_command.append(time.perf_counter() - t)
            assert out["stdout"].strip() == "4"
        client.delete_vm(guest["ref"])
        vm.stop()

        def launch(i):
            g = client.create_vm_from_template(config["template_name"], f"bench-{i}")
            return g["ref"]

        t = time.perf_counter()
        one = launch("one")
        one_s = time.perf_counter() - t
        client.delete_vm(one)
        t = time.perf_counter()
        with ThreadPoolExecutor(20) as pool:
            refs = list(pool.map(launch, range(20)))
        twenty_s = time.perf_counter() - t
        with ThreadPoolExecutor(20) as pool:
            list(pool.map(client.delete_vm, refs))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)

    s50, c50 = p50(session), p50(per_command)
    print("\nXCP-ng (simulator, loopback sshd)")
    print(
        f"execute_string on the established session: p50 {s50 * 1e3:.3f} ms "
        f"(target <= 0.5 ms: {'met' if s50 <= 0.5e-3 else 'MISSED'})"
    )
    print(f"new SSH connection per command:            p50 {c50 * 1e3:.1f} ms  ({c50 / s50:.0f}x slower)")
    print(
        f"provision 1 VM: {one_s:.2f} s; 20 concurrently: {twenty_s:.2f} s = {twenty_s / one_s:.2f}x "
        f"(target <= 2x: {'met' if twenty_s <= 2 * one_s else 'MISSED'})"
    )


if __name__ == "__main__":
    main()
