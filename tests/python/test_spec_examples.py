"""The specification's examples, verbatim, with the output it promises."""

from __future__ import annotations

import logging


def test_quick_start_basic(capsys):
    from pylua_bioxen_vm_lib import create_vm

    # Create and use a basic VM
    vm = create_vm("my_vm", vm_type="basic")
    result = vm.execute_string("return 2 + 2")
    print(result["stdout"])  # Output: 4

    assert capsys.readouterr().out == "4\n"


def test_factory_pattern_basic():
    from pylua_bioxen_vm_lib import create_vm

    # Create a basic VM (local process-based)
    vm = create_vm("test_vm", vm_type="basic", debug_mode=True)
    assert vm.vm_type == "basic"
    assert vm.execute_string("return 1")["success"] is True


def test_unified_interface_start():
    from pylua_bioxen_vm_lib import create_vm

    vm_basic = create_vm("vm1", vm_type="basic")  # Local Lua process
    vm_basic.start()
    assert vm_basic.is_running()
    vm_basic.stop()


def test_vm_manager_basic_example(capsys):
    from pylua_bioxen_vm_lib import VMManager

    # Use context manager for automatic cleanup
    with VMManager(debug_mode=True) as manager:
        # Create a VM
        vm = manager.create_vm("managed_vm")

        # Run some code
        result = manager.execute_vm_sync("managed_vm", 'print("Result:", 2 + 2)')
        print(result["stdout"])  # Output: Result: 4

    assert capsys.readouterr().out == "Result:\t4\n"
    assert vm.closed


def test_pattern_1_basic_vm_execution(capsys):
    from pylua_bioxen_vm_lib import create_vm

    vm = create_vm("simple_vm", debug_mode=True)
    result = vm.execute_string('print("Hello!")')
    print(result["stdout"])  # Output: Hello!

    assert capsys.readouterr().out == "Hello!\n"


def test_pattern_2_managed_vms(capsys):
    from pylua_bioxen_vm_lib import VMManager

    with VMManager(debug_mode=True) as manager:
        vm = manager.create_vm("managed_vm")
        result = manager.execute_vm_sync("managed_vm", "return 2 + 2")
        print(result["stdout"])  # Output: 4

    assert capsys.readouterr().out == "4\n"
    assert vm.closed


def test_logging_example(caplog):
    from pylua_bioxen_vm_lib.logger import VMLogger

    with caplog.at_level(logging.DEBUG, logger="pylua_bioxen_vm_lib"):
        logger = VMLogger(debug_mode=True, component="MyApp")
        logger.debug("Debug message")
    assert ("pylua_bioxen_vm_lib.MyApp", logging.DEBUG, "Debug message") in caplog.record_tuples
