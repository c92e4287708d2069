"""The spec's XCP-ng example, against the XAPI simulator (make demo-xcpng)."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from pylua_bioxen_vm_lib import create_vm

SIM = Path(__file__).resolve().parents[1] / "bin" / "xapi-sim"


def main() -> None:
    sim = subprocess.Popen([str(SIM), "-listen", "127.0.0.1:0", "-print-config"], stdout=subprocess.PIPE, text=True)
    config = json.loads(sim.stdout.readline())
    print("simulator config:", {k: ("***" if "password" in k else v) for k, v in config.items()})
    try:
        # Create an XCP-ng VM with config
        vm_xcpng = create_vm("xcpng_vm", vm_type="xcpng", config=config)
        vm_xcpng.start()
        result = vm_xcpng.execute_string('print("Hello from XCP-ng VM")')
        print(result["stdout"])
        print("installing bio_compute in the VM:", vm_xcpng.install_package("bio_compute"))
        analysis = vm_xcpng.execute_string(
            'require("bio_compute") return tostring(bio_compute.analyze_sequence("ATGC"))'
        )
        print("analysis in the VM:", analysis["values"][0])
        vm_xcpng.stop()
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(timeout=30)


if __name__ == "__main__":
    main()
