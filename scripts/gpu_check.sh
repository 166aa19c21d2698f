#!/usr/bin/env bash
# The GPU check for a machine with a GPU, PyTorch and no Rust compiler: installs the abi3 wheel built
# elsewhere (`make wheel` puts it in dist/), runs the GPU tests and the populations' GPU tests with
# RUSTBP_REQUIRE_GPU=1, then the GPU workloads of `rustbp bench` (rustbp's GPU path against PyTorch
# CUDA), writing gpu-<time>.json under benchmarks/results/ (or $RESULTS), then the population workload
# with 4096 members (gpu-population-<time>.json).
#
# Vulkan: wgpu needs the Vulkan loader (libvulkan.so.1) and a driver manifest. Where the loader is
# missing, .deb files in .gl/ (libvulkan1 and friends, fetched on another machine) are unpacked; where
# no manifest is registered, NVIDIA's under /usr/local/nvidia is used. To fill .gl/ (on a machine with
# apt, once, in the repository root):
#   echo /.gl/ >>.git/info/exclude; mkdir -p .gl /tmp/amd64/partial
#   o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
#   apt-get $o update; (cd .gl && apt-get $o download libvulkan1)
# PyTorch or CUDA missing is not an error: the bench notes it and shows those columns as n/a.
# Extra arguments go to `rustbp bench --workloads gpu` (--quick for reduced sizes, --reps N, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RESULTS=${RESULTS:-benchmarks/results}
log() { printf '== %s\n' "$*"; }

wheel=$(ls -t dist/rustbp-*-abi3-*.whl 2>/dev/null | head -n 1 || true)
if [[ -z "$wheel" ]]; then
    echo "no wheel in dist/: run 'make wheel' on a machine with Rust first" >&2
    exit 2
fi

if ! ldconfig -p | grep -q 'libvulkan\.so\.1'; then
    if compgen -G '.gl/*.deb' >/dev/null; then
        log "no Vulkan loader: unpacking .gl/*.deb"
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    else
        log "no Vulkan loader (libvulkan.so.1) and no .gl/*.deb to unpack: the GPU tests will fail"
    fi
fi
nvidia_icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
if [[ -z "${VK_DRIVER_FILES:-}" && -f $nvidia_icd ]] && ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1; then
    export VK_DRIVER_FILES=$nvidia_icd
    log "using NVIDIA's Vulkan driver manifest $nvidia_icd"
fi
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-$(mktemp -d)}

site=$(mktemp -d)
log "installing $wheel into $site"
# --no-deps: numpy (its one dependency) is already there, and such machines often reach no index.
"$PY" -m pip install -q --no-deps --no-index --no-compile --target "$site" "$wheel"
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import rustbp; print("rustbp", rustbp.__version__, "adapters:", rustbp.gpu_devices())'

mkdir -p "$RESULTS"
log "GPU tests"
set +e
# With the populations' GPU tests: members side by side, through the fused kernel and the tiled ones.
RUSTBP_REQUIRE_GPU=1 "$PY" -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_population.py -k gpu 2>&1 |
    tee "$RESULTS/gpu_tests.log"
tests_rc=${PIPESTATUS[0]}
set -e

log "GPU speed comparison"
# The bench exits 1 when a loss disagrees with the float64 reference: that fails the check too.
set +e
"$PY" -m rustbp bench --workloads gpu --out "$RESULTS" --stem "gpu-$(date -u +%Y%m%dT%H%M%SZ)" "$@"
bench_rc=$?
set -e

log "population: 4096 networks 64-32-10 on the digits, rustbp's Population against PyTorch CUDA stacked"
# The loop of 4096 Network.fit calls is timed too; the article's 2-2-2 population runs at its full size.
set +e
"$PY" -m rustbp bench --workloads population --population-size 4096 --reps 3 --out "$RESULTS" \
    --stem "gpu-population-$(date -u +%Y%m%dT%H%M%SZ)"
population_rc=$?
set -e

log "GPU tests exit status: $tests_rc, bench exit status: $bench_rc, population bench exit status: $population_rc"
if [[ $tests_rc -ne 0 ]]; then exit "$tests_rc"; fi
if [[ $bench_rc -ne 0 ]]; then exit "$bench_rc"; fi
exit "$population_rc"

