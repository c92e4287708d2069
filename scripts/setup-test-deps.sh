#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: Lua
# interpreters for the process engine, luarocks for package management,
# OpenSSH (server and client) for the XCP-ng simulator's guests, valgrind for
# the C test, the Lua 5.1 and 5.4 headers (rocks with build steps or C
# modules), LuaSocket (NetworkedLuaVM's helpers), and a Python virtual
# environment with pytest, ruff and mypy. Safe to
# run again: it installs only what is missing.
set -euo pipefail
venv=${1:-.venv}

need=()
for pair in lua5.4:lua5.4 lua5.1:lua5.1 luajit:luajit luarocks:luarocks valgrind:valgrind gcc:gcc \
            ssh-keygen:openssh-client ssh:openssh-client /usr/sbin/sshd:openssh-server zip:zip unzip:unzip \
            /usr/include/lua5.1/lua.h:liblua5.1-0-dev /usr/include/lua5.4/lua.h:liblua5.4-dev \
            /usr/share/lua/5.4/socket.lua:lua-socket; do
  cmd=${pair%%:*}; pkg=${pair##*:}
  if [[ $cmd == /* ]]; then [ -e "$cmd" ] || need+=("$pkg"); continue; fi
  command -v "$cmd" >/dev/null 2>&1 || need+=("$pkg")
done
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u | sed '/^$/d')
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing Debian packages: ${need[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if ! "$venv/bin/python" -c "import pytest" 2>/dev/null || [ ! -x "$venv/bin/ruff" ] || [ ! -x "$venv/bin/mypy" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/requirements.txt
fi
