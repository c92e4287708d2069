#!/usr/bin/env bash
# Builds and runs the C example of README.md ("C API") exactly as shown
# there: its ```c block saved as the file it names, then its ```sh block
# run in a directory that holds the repository's include/ and python/, so
# that an example that does not compile, link or run fails `make test-c`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
section=$(awk '/^## C API/{on=1; next} /^## /{on=0} on' "$root/README.md")
code=$(printf '%s\n' "$section" | awk '/^```c$/{on=1; next} /^```$/{if (on) exit} on')
cmd=$(printf '%s\n' "$section" | awk '/^```sh$/{on=1; next} /^```$/{if (on) exit} on')
[ -n "$code" ] || { echo "readme_example: no \`\`\`c block in README's C API section"; exit 1; }
[ -n "$cmd" ] || { echo "readme_example: no \`\`\`sh block (how to build and run the example) in README's C API section"; exit 1; }
name=$(printf '%s\n' "$code" | sed -n '1s|^/\* *\([A-Za-z0-9_.-]*\.c\) *\*/$|\1|p')
[ -n "$name" ] || { echo "readme_example: the example's first line must name its file: /* example.c */"; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
ln -s "$root/include" "$root/python" "$dir/"
printf '%s\n' "$code" >"$dir/$name"
out=$(cd "$dir" && bash -euo pipefail -c "$cmd")
if [ "$out" != "4" ]; then
	echo "readme_example: the example printed '$out', not the '4' README shows"
	exit 1
fi
echo "readme_example: README's C example builds and prints 4"
