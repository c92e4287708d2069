"""Utilities of pylua_bioxen_vm_lib (the package curator)."""
