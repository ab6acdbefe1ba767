#!/bin/sh
# check_exports.sh LIB: compare the versioned dynamic symbols LIB defines with
# Debian 12's libibverbs.so.1 (libibverbs.exports beside this script).
# Prints a diff and exits 1 on any difference; exits 0 when the sets match.
# Symbols from other version namespaces (GLIBC_*, ...) and the version-node
# symbols themselves are ignored.
set -eu
lib=${1:?usage: check_exports.sh path/to/libibverbs.so.1}
here=$(cd "$(dirname "$0")" && pwd)
want=$(mktemp) got=$(mktemp)
trap 'rm -f "$want" "$got"' EXIT
grep -v '^#' "$here/libibverbs.exports" | sort > "$want"
readelf --dyn-syms -W "$lib" |
	awk 'NR > 3 && $7 != "UND" && $8 ~ /@@?IBVERBS_/ {print $8, $4}' |
	sort > "$got"
if diff -u "$want" "$got"; then
	echo "check_exports: $(wc -l < "$got") versioned IBVERBS symbols match Debian's"
else
	echo "check_exports: $lib differs from Debian's libibverbs.so.1 (- missing, + extra)" >&2
	exit 1
fi
# The version nodes and their parents must match too.
readelf -V "$lib" | awk '/Version definition/,/Version needs/' |
	grep -Eo 'Name: IBVERBS_[^ ]+|Parent 1: IBVERBS_[^ ]+' | tr '\n' ' ' > "$got"
expect='Name: IBVERBS_1.0 Name: IBVERBS_1.1 Parent 1: IBVERBS_1.0 Name: IBVERBS_1.5 Parent 1: IBVERBS_1.1 Name: IBVERBS_1.6 Parent 1: IBVERBS_1.5 Name: IBVERBS_1.7 Parent 1: IBVERBS_1.6 Name: IBVERBS_1.8 Parent 1: IBVERBS_1.7 Name: IBVERBS_1.9 Parent 1: IBVERBS_1.8 Name: IBVERBS_1.10 Parent 1: IBVERBS_1.9 Name: IBVERBS_1.11 Parent 1: IBVERBS_1.10 Name: IBVERBS_1.12 Parent 1: IBVERBS_1.11 Name: IBVERBS_1.13 Parent 1: IBVERBS_1.12 Name: IBVERBS_1.14 Parent 1: IBVERBS_1.13 Name: IBVERBS_PRIVATE_34 '
if [ "$(cat "$got")" != "$expect" ]; then
	echo "check_exports: version nodes differ:" >&2
	cat "$got" >&2; echo >&2
	exit 1
fi
echo "check_exports: version nodes and parents match"
