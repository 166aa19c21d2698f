#!/usr/bin/env bash
# The Linux aarch64 wheel, built and tested on a Debian 12 x86-64 machine whose rustup has no aarch64
# standard library (and cannot fetch one): Debian's rustc-web ships its standard library for every
# architecture as multiarch packages, so that compiler with libstd-rust-web-dev:arm64 is a matching pair,
# and zig links against glibc 2.17 (manylinux2014). The test runs the wheel with Debian's arm64 Python
# and NumPy under qemu-aarch64 (tests/test_wheel.py, RUSTBP_AARCH64_ROOT).
# Packages come from `apt-get download` and are unpacked under $WORK; nothing is installed. Needs
# qemu-user and the virtualenv of `make venv`; writes the wheel to dist/.
set -euo pipefail
cd "$(dirname "$0")/.."
# maturin finds zig (the ziglang package) through the virtualenv's python.
export PATH=$PWD/.venv/bin:$PATH
WORK=$PWD/${WORK:-target/aarch64-debian}
mkdir -p "$WORK/lists/partial" "$WORK/debs" "$WORK/rust" "$WORK/root"
arm64=(-oAPT::Architecture=arm64 -oAPT::Architectures=arm64 -oDir::State::Lists="$WORK/lists")

version=$(apt-cache policy rustc-web | awk '/Candidate:/ {print $2}')
series=$(cut -d. -f1,2 <<<"$version")
llvm=$(apt-cache depends "libstd-rust-web-$series" | awk '/Depends: libllvm/ {print $2}')
apt-get "${arm64[@]}" update -qq
cd "$WORK/debs"
apt-get download -qq "rustc-web=$version" "libstd-rust-web-$series=$version" "libstd-rust-web-dev=$version" "$llvm"
apt-get "${arm64[@]}" download -qq "libstd-rust-web-$series=$version" "libstd-rust-web-dev=$version"
for f in ./*.deb; do dpkg -x "$f" "$WORK/rust"; done
# The target system: Python and NumPy with the libraries they load.
apt-get "${arm64[@]}" download -qq python3.11-minimal libpython3.11-minimal libpython3.11-stdlib python3-numpy \
    libc6 libgcc-s1 libstdc++6 zlib1g libexpat1 libffi8 libssl3 libblas3 liblapack3 libgfortran5 libbz2-1.0 \
    liblzma5 libuuid1 libcrypt1 libncursesw6 libtinfo6 libreadline8 libsqlite3-0 libnsl2 libtirpc3 2>/dev/null
for f in ./*_arm64.deb; do dpkg -x "$f" "$WORK/root"; done
cd - >/dev/null
# update-alternatives would make these links on an installed system.
ln -sf blas/libblas.so.3 "$WORK/root/usr/lib/aarch64-linux-gnu/libblas.so.3"
ln -sf lapack/liblapack.so.3 "$WORK/root/usr/lib/aarch64-linux-gnu/liblapack.so.3"

cat >"$WORK/rustc" <<EOF
#!/bin/sh
LD_LIBRARY_PATH=$WORK/rust/usr/lib/x86_64-linux-gnu exec $WORK/rust/usr/bin/rustc "\$@"
EOF
chmod +x "$WORK/rustc"
"$WORK/rustc" --version
rm -f dist/rustbp-*_aarch64.whl
# Its own target directory: another compiler's build scripts must not mix with the x86-64 build's.
CARGO_TARGET_DIR=$WORK/target RUSTC=$WORK/rustc maturin build --release --zig --compatibility manylinux2014 \
    --target aarch64-unknown-linux-gnu --out dist
RUSTBP_AARCH64_ROOT=$WORK/root python -m pytest tests/test_wheel.py -k aarch64
