#!/usr/bin/env bash
# Build an offline LuaRocks repository (a rocks server directory) from the
# rockspecs under lua/ (lua/*/*.rockspec): no network, no git, no upload.
#
#   bash lua/build_repo.sh [--check] OUTDIR
#
# For each package NAME-VERSION-REV.rockspec it writes into OUTDIR:
#   NAME-VERSION-REV.rockspec   the rockspec
#   NAME-VERSION-REV.src.rock   the rockspec + NAME-VERSION.tar.gz (the package
#                               directory), which is what source.url names
#   NAME-VERSION-REV.all.rock   built by `luarocks build --pack-binary-rock`
#                               from the .src.rock (pure Lua: arch "all")
# then runs `luarocks-admin make_manifest OUTDIR` (manifest, manifest-5.x,
# index.html). Rocks already in OUTDIR stay and are indexed too.
#
# The archives are reproducible: fixed file times (SOURCE_DATE_EPOCH, default
# 2024-01-01), sorted entries, no owner names, so a rebuild gives the same
# sha256 (lock files pin them).
#
# --check then installs every package into scratch trees from OUTDIR only
# (luarocks --only-server, for Lua 5.1 and 5.4 when the interpreter exists)
# and runs the installed modules with lua5.1, luajit and lua5.4.
#
# Afterwards, for example:
#   luarocks --only-server=OUTDIR --tree=/tmp/t install seq_utils   # pulls bio_compute
#   luarocks --lua-version=5.4 --only-server=OUTDIR --tree=/tmp/t54 install seq_utils
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

CHECK=0
while [[ $# -gt 0 ]]; do
	case $1 in
	--check) CHECK=1; shift ;;
	-h | --help) usage; exit 0 ;;
	--) shift; break ;;
	-*) echo "build_repo.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
	*) break ;;
	esac
done
if [[ $# -ne 1 ]]; then
	usage >&2
	exit 2
fi

for tool in luarocks luarocks-admin tar gzip zip unzip; do
	if ! command -v "$tool" >/dev/null 2>&1; then
		echo "build_repo.sh: $tool is needed but not installed" >&2
		exit 1
	fi
done

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
EPOCH=${SOURCE_DATE_EPOCH:-1704067200}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/bioxen-rocks.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

# A configuration with no rocks server: nothing here may reach the network.
export LUAROCKS_CONFIG=$WORK/config.lua
echo 'rocks_servers = {}' >"$LUAROCKS_CONFIG"
export TZ=UTC LC_ALL=C

# stamp DIR: give every file and directory under DIR the fixed time.
stamp() { find "$1" -exec touch -h -d "@$EPOCH" {} +; }

# rezip ROCK: rewrite a zip with fixed times and sorted entries.
rezip() {
	local rock=$1 dir
	dir=$(mktemp -d "$WORK/rezip.XXXXXX")
	unzip -q "$rock" -d "$dir"
	stamp "$dir"
	rm -f "$rock"
	(cd "$dir" && find . -type f | sed 's|^\./||' | sort | zip -q -X -@ "$rock")
	rm -rf "$dir"
}

shopt -s nullglob
specs=("$HERE"/*/*.rockspec)
if [[ ${#specs[@]} -eq 0 ]]; then
	echo "build_repo.sh: no rockspecs under $HERE" >&2
	exit 1
fi

names=()
for spec in "${specs[@]}"; do
	pkgdir=$(dirname "$spec")
	base=$(basename "$spec" .rockspec)        # NAME-VERSION-REV
	if [[ ! $base =~ ^(.+)-([^-]+)-([0-9]+)$ ]]; then
		echo "build_repo.sh: $spec: file name is not NAME-VERSION-REV.rockspec" >&2
		exit 1
	fi
	name=${BASH_REMATCH[1]}
	version=${BASH_REMATCH[2]}
	srcname=$name-$version
	if ! grep -Eq "url *= *\"$srcname\\.tar\\.gz\"" "$spec"; then
		echo "build_repo.sh: $spec: source.url must be \"$srcname.tar.gz\" (the archive this script makes)" >&2
		exit 1
	fi
	luarocks lint "$spec" >/dev/null

	# Source archive of the package directory (no built rocks or archives).
	stage=$WORK/stage/$name
	mkdir -p "$stage/$srcname"
	(cd "$pkgdir" && find . -type f ! -name '*.rock' ! -name '*.tar.gz' ! -name '*~' ! -name '.*' |
		sed 's|^\./||' | sort | while IFS= read -r f; do
			mkdir -p "$stage/$srcname/$(dirname "$f")"
			cp "$f" "$stage/$srcname/$f"
		done)
	cp "$spec" "$stage/$base.rockspec"
	stamp "$stage"
	(cd "$stage" && find "$srcname" -print0 | sort -z |
		tar --no-recursion --null -T - --owner=0 --group=0 --numeric-owner --mtime="@$EPOCH" -cf - |
		gzip -n -9 >"$srcname.tar.gz")
	touch -d "@$EPOCH" "$stage/$srcname.tar.gz"

	# .src.rock: the rockspec and the archive, as `luarocks pack` makes them.
	rm -f "$OUT/$base.src.rock"
	(cd "$stage" && zip -q -X "$OUT/$base.src.rock" "$base.rockspec" "$srcname.tar.gz")
	cp "$spec" "$OUT/$base.rockspec"
	touch -d "@$EPOCH" "$OUT/$base.rockspec"

	# .all.rock: built by luarocks from the .src.rock (this also proves the
	# .src.rock builds). Dependencies are not needed to pack a pure-Lua rock.
	bin=$WORK/bin/$name
	mkdir -p "$bin"
	if ! (cd "$bin" && luarocks build "$OUT/$base.src.rock" --pack-binary-rock --deps-mode=none >"$WORK/build-$name.log" 2>&1); then
		cat "$WORK/build-$name.log" >&2
		echo "build_repo.sh: luarocks build of $base.src.rock failed" >&2
		exit 1
	fi
	rocks=("$bin"/*.rock)
	if [[ ${#rocks[@]} -ne 1 ]]; then
		echo "build_repo.sh: expected one binary rock for $base, got: ${rocks[*]:-none}" >&2
		exit 1
	fi
	rezip "${rocks[0]}"
	rm -f "$OUT/$(basename "${rocks[0]}")"
	cp "${rocks[0]}" "$OUT/"
	echo "built $base: $(cd "$OUT" && ls "$base".*)" | tr '\n' ' '
	echo
	names+=("$name")
done

luarocks-admin make_manifest "$OUT" >"$WORK/manifest.log" 2>&1 || {
	cat "$WORK/manifest.log" >&2
	exit 1
}
echo "repository: $OUT ($(find "$OUT" -maxdepth 1 -name '*.rock' | wc -l) rocks)"

if [[ $CHECK -eq 0 ]]; then
	exit 0
fi

# --check: install every package from OUTDIR alone and use it.
status=0
for lv in 5.1 5.4; do
	interps=()
	if [[ $lv == 5.1 ]]; then
		for i in lua5.1 luajit; do command -v $i >/dev/null 2>&1 && interps+=("$i"); done
	else
		command -v lua5.4 >/dev/null 2>&1 && interps+=(lua5.4)
	fi
	if [[ ${#interps[@]} -eq 0 ]]; then
		echo "check: no Lua $lv interpreter, skipped"
		continue
	fi
	tree=$WORK/tree-$lv
	# Last first: dependents (seq_utils) must pull their dependencies in.
	for ((k = ${#names[@]} - 1; k >= 0; k--)); do
		name=${names[k]}
		if ! luarocks --lua-version="$lv" --only-server="$OUT" --tree="$tree" install "$name" >"$WORK/install.log" 2>&1; then
			cat "$WORK/install.log" >&2
			echo "check: installing $name for Lua $lv failed" >&2
			status=1
		fi
	done
	cat >"$WORK/check.lua" <<EOF_LUA
package.path = "$tree/share/lua/$lv/?.lua;" .. package.path
require("bio_compute")
local a = tostring(bio_compute.analyze_sequence("ATCG"))
assert(a == "length=4 gc=0.500 A=1 C=1 G=1 T=1 N=0 other=0 reverse_complement=CGAT translation=I", a)
assert(bio_compute.compute(10) == 4)
for _, n in ipairs({ ... }) do
	local m = require(n)
	assert(type(m) == "table" and _G[n] == m, n .. " sets its global")
end
print(a)
EOF_LUA
	for interp in "${interps[@]}"; do
		if out=$("$interp" "$WORK/check.lua" "${names[@]}" 2>&1); then
			echo "check: $interp, tree for Lua $lv: $out"
		else
			echo "check: $interp, tree for Lua $lv, failed: $out" >&2
			status=1
		fi
	done
done
exit $status
