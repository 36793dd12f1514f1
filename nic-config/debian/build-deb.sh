#!/bin/bash
# Builds the Debian package of shake with dpkg-deb (`make deb`; README "Installing the Debian
# package"):
#
#   build-deb.sh BINARY OUTDIR        writes OUTDIR/shake_<version>_<arch>.deb
#
# BINARY is the `shake` binary to package (stripped here); `make deb` passes the release build,
# tests/deb_package.rs the debug build `cargo test` made. The version is Cargo.toml's unless
# DEB_VERSION says otherwise (the upgrade test builds a "newer" package so); DEB_COMPRESS is
# dpkg-deb's compressor (xz by default; none is fastest). Needs dpkg-dev (dpkg-shlibdeps,
# dpkg-architecture) and binutils (strip); not root: the files are root's in the package
# (--root-owner-group) whoever builds it.
#
# dpkg-deb rather than cargo-deb: nothing to `cargo install` on every clean clone, and the
# maintainer scripts, conffiles and unit are plain files here, as Debian's own packages have
# them. The Depends line is derived from the binary (dpkg-shlibdeps: the libraries it links
# and the package of each), plus the DPDK plugins the EAL loads at run time, which no
# linker records (control.in).
set -euo pipefail

if [ $# -ne 2 ]; then
    echo "usage: $0 BINARY OUTDIR" >&2
    exit 1
fi
bin=$1
out=$2
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)

[ -x "$bin" ] || { echo "build-deb: $bin: no such executable (build it first: make deb does)" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps dpkg-architecture strip; do
    command -v "$tool" >/dev/null || { echo "build-deb: $tool not found (apt-get install dpkg-dev binutils; make deps does)" >&2; exit 1; }
done

# The version of the [package] table, not of a dependency's inline table.
version=${DEB_VERSION:-$(awk '/^\[/ { p = ($0 == "[package]") } p && /^version *=/ { gsub(/[" ]/, ""); sub(/^version=/, ""); print; exit }' "$top/Cargo.toml")}
case "$version" in
    [0-9]*) ;;
    *) echo "build-deb: version '$version' must start with a digit (Debian policy 5.6.12)" >&2; exit 1 ;;
esac
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
compress=${DEB_COMPRESS:-xz}

work=$(mktemp -d "${TMPDIR:-/tmp}/shake-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root
chmod 0755 "$work"
install -d -m 0755 "$root" "$root/DEBIAN"

# --- Files. Every mode explicit: the package must not depend on the builder's umask.
install -D -m 0755 "$bin" "$root/usr/bin/shake"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$root/usr/bin/shake"

install -D -m 0644 "$here/shake.service" "$root/lib/systemd/system/shake.service"
install -D -m 0755 "$top/nic-config/hugepages.sh" "$root/usr/lib/shake/hugepages.sh"
install -D -m 0755 "$here/prestart.sh" "$root/usr/lib/shake/prestart"

# Configuration (conffiles): the socket node that runs as installed, its activity, and the
# bare-metal DPDK example to start a real node from.
install -D -m 0644 "$here/node.toml" "$root/etc/shake/node.toml"
install -D -m 0644 "$top/seeds/demo.toml" "$root/etc/shake/activity.toml"
install -D -m 0644 "$top/nic-config/bare-metal.toml" "$root/etc/shake/bare-metal.toml"
install -D -m 0644 "$here/default" "$root/etc/default/shake"

# The dissector, and Wireshark's global Lua plugin directory (`tshark -G folders`: "Global
# Lua Plugins") gets a loader for it (wireshark-plugin.lua says why not the file itself).
install -D -m 0644 "$top/bench/shake.lua" "$root/usr/share/shake/shake.lua"
install -D -m 0644 "$here/wireshark-plugin.lua" "$root/usr/lib/$multiarch/wireshark/plugins/shake.lua"

install -D -m 0644 "$top/README.md" "$root/usr/share/doc/shake/README.md"
install -D -m 0644 "$here/copyright" "$root/usr/share/doc/shake/copyright"

# --- Control files.
install -m 0644 "$here/conffiles" "$root/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "$here/$script" "$root/DEBIAN/$script"
done

# dpkg-shlibdeps reads debian/control of a source tree: a minimal one in the work directory.
mkdir -p "$work/src/debian"
printf 'Source: shake\n\nPackage: shake\nArchitecture: any\n' >"$work/src/debian/control"
shlibs=$(cd "$work/src" && dpkg-shlibdeps -O -e"$root/usr/bin/shake" 2>"$work/shlibdeps.err") || {
    cat "$work/shlibdeps.err" >&2
    echo "build-deb: dpkg-shlibdeps failed on $bin" >&2
    exit 1
}
shlibs=${shlibs#shlibs:Depends=}
[ -n "$shlibs" ] || { echo "build-deb: dpkg-shlibdeps found no library dependency in $bin" >&2; exit 1; }
# Installed-Size in KiB, of everything but the control files.
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SHLIBS@/$shlibs/" \
    -e "s/@SIZE@/$size/" "$here/control.in" | grep -v '^#' >"$root/DEBIAN/control"

mkdir -p "$out"
deb="$out/shake_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Z"$compress" --build "$root" "$deb" >/dev/null
echo "$deb"
