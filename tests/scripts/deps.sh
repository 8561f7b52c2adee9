#!/usr/bin/env bash
# Installs the Debian packages ioth's demo and tests need, when missing.
# As root: apt-get installs them. Otherwise: prints the exact apt-get line and fails.
set -euo pipefail
need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
have_pkg libvdeplug2 || need+=(libvdeplug2)
command -v vde_plug >/dev/null 2>&1 || need+=(vdeplug)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v gcc >/dev/null 2>&1 || need+=(gcc)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v groff >/dev/null 2>&1 || need+=(groff-base)
[ -e /usr/include/stdio.h ] || need+=(libc6-dev)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need+=(util-linux)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || need+=(dnsmasq-base)
command -v pkg-config >/dev/null 2>&1 || need+=(pkgconf)
# tests/run.rs: an HTTP server and client run unmodified under ioth-run; a static program
# (gcc -static needs libc.a, in libc6-dev); getent (libc-bin) resolves through dnsmasq.
command -v python3 >/dev/null 2>&1 || need+=(python3)
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v getent >/dev/null 2>&1 || need+=(libc-bin)
# nlinline's own headers: tests/header.rs compiles programs that include them beside ioth.h.
[ -e /usr/include/nlinline.h ] || need+=(nlinline-dev)
[ ${#need[@]} -eq 0 ] && exit 0
line="apt-get install -y --no-install-recommends ${need[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "ioth needs these Debian packages: ${need[*]}" >&2
  echo "run as root:  apt-get update && $line" >&2
  exit 1
fi
echo "installing: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
$line
