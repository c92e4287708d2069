"""A tour of pylua_bioxen_vm_lib on the embedded engine (no Lua install needed).

Run it with `make demo`.
"""

from __future__ import annotations

from pylua_bioxen_vm_lib import VMManager, create_vm
from pylua_bioxen_vm_lib.exceptions import VMTimeoutError

ANALYSIS = """
local seq = "ATGCGCGATTACAGGCTTAACGGGCCCATAT"
local counts = {A = 0, C = 0, G = 0, T = 0}
for base in seq:gmatch(".") do counts[base] = counts[base] + 1 end
local gc = (counts.G + counts.C) / #seq
print(string.format("length %d, GC content %.3f", #seq, gc))
return {length = #seq, gc_content = gc, counts = counts}
"""


def main() -> None:
    vm = create_vm("demo_vm")
    print("1. The spec's quick start:")
    result = vm.execute_string("return 2 + 2")
    print("   execute_string('return 2 + 2')['stdout'] ->", repr(result["stdout"]))

    print("2. A small sequence analysis; returned tables come back as Python objects:")
    result = vm.execute_string(ANALYSIS)
    print("   printed:", result["stdout"].splitlines()[0])
    print("   values:", result["values"])

    print("3. Lua errors are results, with the line and a traceback:")
    result = vm.execute_string("local seq = nil\nreturn #seq")
    print("   success:", result["success"], "| error:", result["error"])

    print("4. A runaway loop stops at its timeout and the VM stays usable:")
    try:
        vm.execute_string("while true do end", timeout=0.2)
    except VMTimeoutError as err:
        print("   VMTimeoutError:", err)
    print("   next call:", vm.execute_string("return 'still alive'")["stdout"])

    print("5. Each call starts clean; persistent VMs keep their globals:")
    vm.execute_string("counter = 1")
    print("   default VM sees counter =", vm.execute_string("return counter")["stdout"])
    with create_vm("lab_notebook", persistent=True) as notebook:
        notebook.execute_string("counter = 1")
        notebook.execute_string("counter = counter + 1")
        print("   persistent VM sees counter =", notebook.execute_string("return counter")["stdout"])

    print("6. Many VMs under a manager, run in the background:")
    with VMManager() as manager:
        for i in range(3):
            manager.create_vm(f"worker{i}")
        futures = [manager.execute_vm_async(f"worker{i}", f"return {i} * 10") for i in range(3)]
        print("   results:", [f.result()["values"][0] for f in futures])
    vm.close()


if __name__ == "__main__":
    main()
