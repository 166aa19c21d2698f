"""The speed comparison's correctness, not its speed: every implementation it times computes the same
training as rustbp, the agreement check catches one that does not, and the command writes its files.
PyTorch, scikit-learn and matplotlib are optional: their parts are checked only when they are installed.
The native C++ programs need a C++ compiler (CI has g++); without one their tests skip."""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import json
import math
import os
from collections.abc import Iterator

import numpy as np
import pytest
import rustbp
from conftest import ARTICLE_E_AFTER_ONE_STEP, ARTICLE_FINAL, ARTICLE_LOSSES
from rustbp.__main__ import main
from rustbp.bench import impls, measure, native, report, torch_net, workloads
from rustbp.bench.pure import PurePythonNet, UnrolledArticleNet

HAS = {m: importlib.util.find_spec(m) is not None for m in ("torch", "sklearn", "matplotlib")}
needs_cxx = pytest.mark.skipif(native.find_compiler() is None, reason="no C++ compiler (c++, g++, clang++ or $CXX)")


@pytest.fixture(scope="module")
def programs() -> Iterator[native.Programs]:
    compiler = native.find_compiler()
    if compiler is None:
        pytest.skip("no C++ compiler (c++, g++, clang++ or $CXX)")
    with native.Programs(compiler) as p:
        yield p


def gpu_or_skip() -> None:
    """Skips without an adapter, unless RUSTBP_REQUIRE_GPU=1 (CI, with lavapipe), where that fails."""
    try:
        found = rustbp.gpu_devices()
    except rustbp.GpuUnavailableError as e:
        found, why = [], str(e)
    else:
        why = "no GPU adapter"
    if not found:
        if os.environ.get("RUSTBP_REQUIRE_GPU") == "1":
            pytest.fail(f"RUSTBP_REQUIRE_GPU=1 but {why}")
        pytest.skip(why)


def test_pure_python_network_reproduces_the_article():
    net = PurePythonNet([[0.15, 0.20], [0.25, 0.30]], [0.35], [[0.40, 0.45], [0.50, 0.55]], [0.60], train_bias=False)
    losses = [net.step([[0.05, 0.10]], [[0.01, 0.99]]) for _ in range(1001)]
    assert losses[0] == pytest.approx(0.2983711087600027, abs=1e-15)
    assert losses[1000] == pytest.approx(ARTICLE_LOSSES[1000], rel=1e-12)
    w = [n.weights for n in net.hidden.neurons]
    assert net.hidden.bias == [0.35] and w != [[0.15, 0.20], [0.25, 0.30]]


def test_unrolled_article_network_reaches_the_articles_final_loss():
    net = UnrolledArticleNet([0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55], 0.35, 0.60)
    for _ in range(10_000):
        net.step([0.05, 0.10], [0.01, 0.99])
    assert net.step([0.05, 0.10], [0.01, 0.99]) == pytest.approx(ARTICLE_FINAL["E_total"], rel=1e-12)


@pytest.mark.parametrize(
    "spec",
    [
        measure.ARTICLE_TORCH,
        impls.Spec(5, 7, 3, loss="half_sse", lr=0.3, momentum=0.5),
        impls.Spec(4, 6, 3, bias="none", loss="mse"),
    ],
    ids=repr,
)
def test_every_implementation_trains_like_rustbp(spec, rng):
    """Same start, same batch, ten steps: every implementation's loss matches rustbp float64's."""
    X, T = rng.uniform(0, 1, (4, spec.n_in)), rng.uniform(0.1, 0.9, (4, spec.n_out))
    w = measure.start_weights(spec)
    expected = spec.network()
    expected.set_weights(w)
    want = expected.train(X, T, 10)[-1]
    notes: list[str] = []
    found = impls.available(gpu=False, notes=notes)
    checked = []
    for name, impl in found.items():
        if impl.family in ("sklearn",) or "unrolled" in name:
            continue
        got = impl.build(spec, w, X, T).train(10)
        assert measure.agree(got, want, impl.dtype), (name, got, want)
        checked.append(name)
    assert {"pure Python f64", "NumPy f64", "NumPy f32", "rustbp f32 (Python loop)"} <= set(checked)
    assert ("PyTorch CPU f32" in checked) == HAS["torch"]


def test_agreement_check_tolerates_rounding_and_flags_wrong_math():
    assert measure.agree(0.1 + 1e-12, 0.1, "float64") and not measure.agree(0.1 + 1e-6, 0.1, "float64")
    assert measure.agree(0.1 * (1 + 1e-4), 0.1, "float32") and not measure.agree(0.11, 0.1, "float32")


def test_a_wrong_implementation_is_reported_loudly(tmp_path, capsys):
    """An implementation whose math differs (here: a learning rate off by 1%) fails the check."""
    spec = impls.Spec(3, 4, 2)
    good = impls.Impl(
        "rustbp f64 (loop in Rust)",
        "rustbp",
        "float64",
        lambda s, w, X, T: impls.RustbpTrainer(s, w, X, T, "float64", "rust", "cpu"),
    )
    bad_spec = impls.Spec(3, 4, 2, lr=0.505)
    bad = impls.Impl(
        "off by 1%", "numpy", "float64", lambda s, w, X, T: impls.NumpyTrainer(bad_spec, w, X, T, "float64")
    )
    X, T = np.full((2, 3), 0.5), np.full((2, 2), 0.2)
    point = measure.time_point("sweep", spec, measure.start_weights(spec), X, T, [good, bad], reps=1, steps=50)
    assert [r.agrees for r in point.results] == [True, False]
    report.report([point], [], print)
    assert "LOSS MISMATCH: off by 1%" in capsys.readouterr().out


def test_no_collection_falls_inside_a_timed_run():
    # The collector is off while each implementation's run is timed (a full collection there costs
    # milliseconds, and one before each run left the next one cold), and on again afterwards, also
    # when a run raises.
    named = [dataclasses.make_dataclass("Named", ["name"])(n) for n in ("a", "b")]
    seen: list[bool] = []
    out = measure.interleave(
        named, build=lambda impl: impl, go=lambda _: float(seen.append(gc.isenabled()) or 1), reps=3
    )
    assert seen == [False] * 6
    assert {name: len(times) for name, (times, _) in out.items()} == {"a": 3, "b": 3}
    assert gc.isenabled()

    def fails(_: object) -> float:
        raise RuntimeError("a run that fails")

    with pytest.raises(RuntimeError, match="a run that fails"):
        measure.interleave(named, build=lambda impl: impl, go=fails, reps=1)
    assert gc.isenabled()


def test_small_net_goals_compare_rustbp_with_the_native_programs():
    """The goals of small nets at native speed, from one run's medians: rustbp against the article's C++
    program and the plain C++ loops, its Python loop against the unrolled pure-Python step."""
    rb64, rb32 = impls.rustbp_name("float64", "rust"), impls.rustbp_name("float32", "rust")
    article_cpp, loops64, loops32 = (
        report.native_label("article", "float64"),
        report.native_label("reference", "float64"),
        report.native_label("reference", "float32"),
    )

    def point(workload: str, n: int, times: dict[str, float]) -> measure.Point:
        results = [
            measure.Result(i, "float64", 10, [10 * t, 10 * t * 1.5, 10 * t * 0.5], 0.0, True) for i, t in times.items()
        ]
        return measure.Point(workload, impls.Spec(n, n, n), 1, 10, 0.0, results)

    points = [
        point(
            "article",
            2,
            {
                rb64: 200e-9,
                article_cpp: 100e-9,
                impls.rustbp_name("float64", "python"): 1e-6,
                "pure Python f64 (unrolled 2-2-2)": 2.5e-6,
            },
        ),
        point("article-torch", 2, {rb64: 90e-9, article_cpp: 100e-9}),
        point("native", 16, {rb64: 0.2e-6, loops64: 0.4e-6, rb32: 0.3e-6, loops32: 0.2e-6}),
        point("native", 32, {rb64: 0.7e-6, loops64: 1.4e-6}),
    ]
    got = {t["target"]: (t["measured"], t["met"]) for t in report.targets(points)}
    assert got["article: rustbp f64 loop in Rust, time / the article's C++ program's"] == (pytest.approx(2.0), False)
    assert got["article-torch: rustbp f64 loop in Rust, time / the article's C++ program's"] == (
        pytest.approx(0.9),
        True,
    )
    speedup = "article: rustbp f64 Python loop over train_step, speed-up over pure Python f64 (unrolled 2-2-2)"
    assert got[speedup] == (pytest.approx(2.5), True)
    assert got["batch 1: worst rustbp / plain C++ loops (worst: 16-16-16 f32)"] == (pytest.approx(1.5), False)
    assert got["batch 1: 16-16-16 rustbp f64 loop in Rust, time per step"] == (pytest.approx(0.2), True)
    assert got["batch 1: 32-32-32 rustbp f64 loop in Rust, time per step"] == (pytest.approx(0.7), False)


def test_the_large_net_goals_take_the_faster_pytorch_and_the_share_of_the_peak():
    """784-1024-10 at batch 256: rustbp's time over the faster of PyTorch's two thread settings, and
    rustbp's share of the peak measured in the same run, each dtype against its own goal."""
    rb32, rb64 = impls.rustbp_name("float32", "rust"), impls.rustbp_name("float64", "rust")
    times = {
        rb32: 0.9e-3,
        "PyTorch CPU f32": 1.2e-3,
        "PyTorch CPU f32 1 thread": 1.0e-3,
        rb64: 2.2e-3,
        "PyTorch CPU f64": 2.0e-3,
        "PyTorch CPU f64 1 thread": 4.0e-3,
    }
    results = [measure.Result(i, "float64", 10, [10 * t], 0.0, True) for i, t in times.items()]
    results[0].extra["peak_fraction"] = 0.75
    results[3].extra["peak_fraction"] = 0.5
    points = [measure.Point("large", impls.Spec(784, 1024, 10), 256, 10, 0.0, results)]
    got = {t["target"]: (t["measured"], t["met"], t["unit"]) for t in report.targets(points)}
    step = "784-1024-10 batch 256: rustbp {} step time / best PyTorch CPU {}"
    share = "784-1024-10 batch 256: rustbp {} share of the machine's measured peak"
    assert got[step.format("f32", "f32")] == (pytest.approx(0.9), True, "x")
    assert got[step.format("f64", "f64")] == (pytest.approx(1.1), False, "x")
    assert got[share.format("f32")] == (pytest.approx(75.0), True, "%")
    assert got[share.format("f64")] == (pytest.approx(50.0), False, "%")
    lines: list[str] = []
    report.report(points, [], lines.append)
    shown = next(line for line in lines if share.format("f32") in line)
    assert "75%" in shown and "goal >= 70%" in shown and "reached" in shown


def test_bench_command_writes_agreeing_results(tmp_path, capsys):
    """`rustbp bench` on tiny sizes: the article's loss after one update, a four-point sweep, the native
    reference at two widths, the table, the JSON file with the peak and each result's GFLOP/s, and the
    plot when matplotlib is there. Exit status 0 means everything agreed."""
    code = main(
        [
            "bench",
            "--workloads",
            "article,sweep,native",
            "--article-steps",
            "1",
            "--native-steps",
            "1000",
            "--native-widths",
            "2,8",
            "--peak-size",
            "256",
            "--widths",
            "2,8",
            "--batches",
            "1,3",
            "--reps",
            "1",
            "--budget",
            "0.001",
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert "MISMATCH" not in out and "Performance goals, as measured in this run" in out
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert doc["targets"]
    article = doc["points"][0]
    assert article["workload"] == "article" and article["steps"] == 1
    # One untimed step, then one timed: the last loss is the article's "E_total on the next forward pass".
    assert article["reference_loss"] == pytest.approx(ARTICLE_E_AFTER_ONE_STEP, rel=1e-15)
    results = {r["impl"]: r for r in article["results"]}
    assert results["rustbp f64 (loop in Rust)"]["final_loss"] == pytest.approx(ARTICLE_E_AFTER_ONE_STEP, rel=1e-15)
    assert results["pure Python f64"]["agrees"] and results["NumPy f64"]["agrees"]
    assert all(r["agrees"] for p in doc["points"] for r in p["results"])
    sweep = [p for p in doc["points"] if p["workload"] == "sweep"]
    assert sorted((p["batch"], p["spec"]["n_hidden"]) for p in sweep) == [(1, 2), (1, 8), (3, 2), (3, 8)]
    assert (tmp_path / "bench.png").exists() == HAS["matplotlib"]
    assert doc["machine"]["cores"]
    if doc["machine"]["gpu_adapter"]:  # the GPU column ran, and agreed (checked above)
        assert "rustbp GPU f32 (loop in Rust)" in {r["impl"] for r in sweep[0]["results"]}
    else:
        assert "rustbp GPU" in " ".join(doc["notes"])
    # The peak, and every result's share of it: 2 flops per multiply-add of forward, backward and update.
    peak = doc["peak_gflops"]
    assert peak["size"] == 256 and peak["float32"] > 0 and peak["float64"] > 0
    for p in doc["points"]:
        spec = impls.Spec(**p["spec"])
        for r in p["results"]:
            assert r["gflops"] == pytest.approx(2 * spec.work(p["batch"]) / r["median_s_per_step"] / 1e9)
            if r["device"] == "cpu":
                assert r["peak_fraction"] == pytest.approx(r["gflops"] / peak[r["dtype"]])
    native_points = [p for p in doc["points"] if p["workload"] == "native"]
    if native.find_compiler() is None:
        assert "no compiler" in " ".join(doc["notes"]) and not native_points
        return
    cpp = results["C++ per node f64 (-O2)"]
    assert cpp["agrees"] and cpp["final_loss"] == pytest.approx(ARTICLE_E_AFTER_ONE_STEP, rel=1e-12)
    assert cpp["losses"]["worst_relative_error"] <= 1e-9 and cpp["steps"] == 1000
    assert "-O2" in cpp["compile"] and doc["machine"]["cxx"]
    assert [p["spec"]["n_hidden"] for p in native_points] == [2, 8]
    for p in native_points:
        shape = (p["spec"]["n_in"], p["spec"]["n_hidden"], p["spec"]["n_out"], p["batch"])
        assert shape == (p["spec"]["n_hidden"],) * 3 + (1,)
        by = {r["impl"]: r for r in p["results"]}
        for dt in ("f64", "f32"):
            ref = by[f"C++ loops {dt} (-O3, native)"]
            assert ref["agrees"] and "-march=native" in ref["compile"]
            ratio = by[f"rustbp {dt} (loop in Rust)"]["median_s_per_step"] / ref["median_s_per_step"]
            assert p["rustbp_over_native"][f"float{dt[1:]}"] == pytest.approx(ratio)


@needs_cxx
def test_article_cpp_program_prints_the_articles_losses(programs):
    """The article's C++ program, in its style, compiled here at -O2: its loss every 1000 steps is the
    article's to 1e-9, and its timed runs print a time."""
    run = programs.run("article", 10_000, 1000)
    assert sorted(run.losses) == sorted(ARTICLE_LOSSES)
    for step, want in ARTICLE_LOSSES.items():
        assert run.losses[step] == pytest.approx(want, rel=1e-9, abs=0), step
    assert run.ns_per_step > 0
    assert native.ARTICLE_LOSSES == ARTICLE_LOSSES  # what the bench checks it against


@needs_cxx
def test_article_cpp_pytorch_setting_trains_like_rustbp(programs):
    """The C++ program of the article's PyTorch setting (MSE, per-neuron biases, momentum 0.9) from rustbp's
    starting weights: the same losses as rustbp configured the same way, over 300 steps."""
    w = measure.start_weights(measure.ARTICLE_TORCH)
    net = measure.ARTICLE_TORCH.network()
    net.set_weights(w)
    want = net.train(measure.ARTICLE_X, measure.ARTICLE_T, 300)
    run = programs.run("article_torch", 300, 1, stdin=native.numbers(w["w1"], w["b1"], w["w2"], w["b2"]))
    got = np.array([run.losses[i] for i in range(300)])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=0)
    assert want[-1] < want[0] / 100  # it trained: a program that ignores its updates would not get here


@needs_cxx
@pytest.mark.parametrize("n", [2, 7, 64])
def test_native_reference_equals_rustbp(programs, n, rng):
    """The plain C++ loops at batch 1 and rustbp, from the same weights and sample: the same losses over
    five steps (float64 to 1e-9, float32 to 1e-5)."""
    spec = impls.Spec(n, n, n, loss="half_sse", lr=0.5)
    w = measure.start_weights(spec)
    X, T = rng.uniform(0, 1, (1, n)), rng.uniform(0.1, 0.9, (1, n))
    stdin = native.numbers(w["w1"], w["b1"], w["w2"], w["b2"], X, T)
    for dtype, rtol in (("float64", 1e-9), ("float32", 1e-5)):
        net = spec.network(dtype)
        net.set_weights(w)
        want = net.train(X.astype(dtype), T.astype(dtype), 5)
        got = programs.run("reference", 5, 1, (n, 0.5, impls.short(dtype)), stdin).losses
        np.testing.assert_allclose([got[i] for i in range(5)], want, rtol=rtol, atol=0, err_msg=dtype)
        assert want[4] < want[0]


@needs_cxx
def test_native_check_flags_wrong_numbers(programs):
    """A native program whose losses differ from what is expected by one part in a million is not trusted."""
    w = rustbp.Network.article().get_weights()
    rb = impls.Impl(
        "rustbp f64 (loop in Rust)",
        "rustbp",
        "float64",
        lambda s, w, X, T: impls.RustbpTrainer(s, w, X, T, "float64", "rust", "cpu"),
    )
    point = measure.time_point("article", measure.ARTICLE, w, measure.ARTICLE_X, measure.ARTICLE_T, [rb], 1, 5)
    ok = measure.native_result(programs, "article", "C++", "float64", point, 1, 100, expect=dict(ARTICLE_LOSSES))
    off = {s: v * (1 + 1e-6) for s, v in ARTICLE_LOSSES.items()}
    bad = measure.native_result(programs, "article", "C++", "float64", point, 1, 100, expect=off)
    assert ok.agrees and not bad.agrees and bad.extra["losses"]["worst_relative_error"] > 1e-7
    assert ok.steps == 100 and len(ok.times_s) == 1


def test_without_a_compiler_the_native_columns_are_skipped_with_a_note(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CXX", str(tmp_path / "no-such-c++"))
    args = ["--workloads", "article", "--article-steps", "1", "--reps", "1", "--no-gpu", "--peak-size", "64"]
    code = main(["bench", *args, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert "note: C++: " in out and "no-such-c++" in out and "native columns are skipped" in out
    assert not any(r["impl"].startswith("C++") for p in doc["points"] for r in p["results"])


def test_native_programs_refuse_bad_arguments(tmp_path):
    programs = native.Programs([str(tmp_path / "no-such-c++")])
    with programs:
        with pytest.raises(ValueError, match=r"name: expected one of \['article', 'article_torch', 'reference'\]"):
            programs.build("nope")
        with pytest.raises(ValueError, match="steps, every: expected at least 1, got 0, 1"):
            programs.run("article", 0, 1)
        with pytest.raises(native.NativeError, match="no-such-c\\+\\+"):
            programs.build("article")


def test_native_programs_ship_with_the_package():
    """The C++ sources sit inside the package (maturin puts everything under python/rustbp in the wheel)."""
    for name in native.FLAGS:
        assert (native.SOURCES / f"{name}.cpp").is_file()
    assert native.SOURCES.parent.name == "bench" and native.SOURCES.parent.parent.name == "rustbp"


def test_bench_quick_runs_the_gpu_workloads(tmp_path, capsys):
    """`rustbp bench --quick --workloads gpu`: the article's net, the digits' net and a reduced wide net on the adapter,
    agreeing with the float64 reference; PyTorch CUDA is n/a without PyTorch or CUDA."""
    gpu_or_skip()
    args = ["--quick", "--workloads", "gpu", "--reps", "1", "--peak-size", "256", "--out", str(tmp_path), "--stem", "g"]
    code = main(["bench", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads((tmp_path / "g.json").read_text())
    points = {p["workload"]: p for p in doc["points"]}
    assert set(points) == {"gpu-article", "gpu-small", "gpu-wide"}
    for p in points.values():
        by = {r["impl"]: r for r in p["results"]}
        gpu = by["rustbp GPU f32 (loop in Rust)"]
        assert gpu["agrees"] and gpu["device"] == "gpu" and gpu["gflops"] > 0
        assert p["reference_loss"] > 0
        if "PyTorch CUDA f32" not in by:
            assert "PyTorch CUDA f32" in p["missing"]
    assert points["gpu-article"]["steps"] == 1000 and points["gpu-wide"]["reduced"]
    assert points["gpu-wide"]["spec"]["n_in"] == 784 and points["gpu-wide"]["batch"] == 64
    small = points["gpu-small"]
    assert small["fused_kernel"] and small["batch"] == 32 and small["steps"] == 50 and small["reduced"]
    assert {"rustbp GPU f32 (loop in Rust)", "rustbp f32 (loop in Rust)"} <= {r["impl"] for r in small["results"]}
    if points["gpu-wide"]["missing"]:
        assert "n/a" in out


def test_plot_marks_the_crossover():
    pytest.importorskip("matplotlib")
    from rustbp.bench.plot import crossover

    assert crossover([2, 4, 8, 16], [9.0, 5.0, 1.0, 1.0], [1.0, 2.0, 3.0, 4.0]) == 8
    assert crossover([2, 4], [9.0, 9.0], [1.0, 1.0]) is None
    assert crossover([2, 4, 8], [1.0, 9.0, 1.0], [2.0, 2.0, 2.0]) == 8


def test_gpu_columns_join_only_with_an_adapter(monkeypatch):
    notes: list[str] = []
    try:
        devices = rustbp.gpu_devices()
    except rustbp.GpuUnavailableError:  # a build without the GPU path
        devices = []
    desc = impls.gpu_adapter(notes)
    if devices:
        first = devices[0]
        assert desc is not None and first.name in desc and ("SOFTWARE ADAPTER" in desc) == first.is_software
        assert any(i.family == "rustbp-gpu" for i in impls.available(True, notes).values())
    monkeypatch.setenv("RUSTBP_GPU_ADAPTER", "no such adapter")
    assert impls.gpu_adapter(notes) is None and "columns are skipped" in notes[-1]
    assert not any(i.family == "rustbp-gpu" for i in impls.available(False, notes).values())


POPULATION_ARGS = [
    "--workloads", "population", "--population-size", "3", "--population-epochs", "1", "--population-copies", "5",
    "--population-steps", "20", "--reps", "1", "--peak-size", "64", "--no-gpu",
]  # fmt: skip


def test_population_workload_trains_every_member_like_its_network(tmp_path, capsys):
    """`rustbp bench --workloads population` at tiny sizes: Population.fit and Population.train end with every
    member's loss equal to the loop's over its networks, the article's copies end where the float64 NumPy
    reference puts each from its own start, times are per network-step, and the goals are reported."""
    code = main(["bench", *POPULATION_ARGS, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads((tmp_path / "bench.json").read_text())
    points = {p["workload"]: p for p in doc["points"]}
    assert set(points) == ({"population-digits"} if HAS["sklearn"] else set()) | {"population-article"}
    article = points["population-article"]
    by = {r["impl"]: r for r in article["results"]}
    assert set(by) == {"rustbp f64 Network.train loop", "rustbp f64 Population.train"}
    pop = by["rustbp f64 Population.train"]
    assert pop["agrees"] and pop["members_identical_to_loop"] == 5 and article["steps"] == 20
    assert pop["median_s_per_step"] == pytest.approx(pop["median_s"] / (5 * 20))
    assert pop["gflops"] == pytest.approx(2 * measure.ARTICLE.work(1) / pop["median_s_per_step"] / 1e9)
    # Independent of rustbp: NumPy float64 from each member's start (member i is the network seeded i).
    want = [
        measure.reference_loss(measure.ARTICLE, measure.start_weights(measure.ARTICLE, seed=i), measure.ARTICLE_X,
                               measure.ARTICLE_T, 20)
        for i in range(5)
    ]  # fmt: skip
    assert article["reference_loss"] == pytest.approx(np.mean(want), rel=1e-12, abs=0)
    assert pop["final_loss"] == article["reference_loss"]
    targets = {t["target"]: t for t in doc["targets"] if t["target"].startswith("population")}
    assert len(targets) == 4 and all(t["unit"] == "x" for t in targets.values())
    article_goal = targets["population article, 5 x 2-2-2 f64: Population.train speed-up over a Network.train loop"]
    assert article_goal["measured"] == pytest.approx(by["rustbp f64 Network.train loop"]["median_s"] / pop["median_s"])
    assert article_goal["met"] == (article_goal["measured"] >= 10)
    assert "members run side by side on the core's thread pool" in out
    if not HAS["sklearn"]:
        return
    digits = points["population-digits"]
    steps = math.ceil(1797 / 32)
    assert digits["steps"] == steps and digits["members"] == 3 and digits["batch"] == 32
    by = {r["impl"]: r for r in digits["results"]}
    fit = by["rustbp f32 Population.fit"]
    assert fit["agrees"] and fit["members_identical_to_loop"] == 3
    assert fit["final_loss"] == digits["reference_loss"] == by["rustbp f32 Network.fit loop"]["final_loss"]
    assert fit["median_s_per_step"] == pytest.approx(fit["median_s"] / (3 * steps))
    assert 0 < fit["final_loss"] < math.log(10)  # below a uniform guess's cross-entropy: it trained
    stacked = "PyTorch CPU f32 stacked (baddbmm)"
    goal = targets[f"population digits, 3 x 64-32-10 f32: Population.fit speed-up over {stacked}"]
    if HAS["torch"]:
        for name in (stacked, stacked + " 1 thread"):
            assert by[name]["agrees"] and by[name]["same_steps_as_population"] and by[name]["device"] == "cpu"
        faster = min(by[stacked]["median_s"], by[stacked + " 1 thread"]["median_s"])
        assert goal["measured"] == pytest.approx(faster / fit["median_s"])
    else:
        assert stacked not in by and stacked in digits["missing"] and "n/a" in out
        assert goal["measured"] is None and goal["met"] is None
    assert "rustbp GPU f32 Population.fit" not in by  # --no-gpu


def test_population_workload_trains_members_side_by_side_on_the_gpu(tmp_path, capsys):
    """With a GPU adapter, the digits population also trains on rustbp's GPU: every member within float32
    rounding of its network on the CPU, and the GPU goal reported (unmeasured without PyTorch CUDA)."""
    from conftest import GPU, require

    require(GPU)
    if not HAS["sklearn"]:
        pytest.skip("scikit-learn holds the digits")
    args = [a for a in POPULATION_ARGS if a != "--no-gpu"]
    code = main(["bench", *args, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    doc = json.loads((tmp_path / "bench.json").read_text())
    digits = next(p for p in doc["points"] if p["workload"] == "population-digits")
    by = {r["impl"]: r for r in digits["results"]}
    gpu = by["rustbp GPU f32 Population.fit"]
    assert gpu["agrees"] and gpu["device"] == "gpu" and gpu["members"] == 3
    assert gpu["final_loss"] == pytest.approx(by["rustbp f32 Network.fit loop"]["final_loss"], rel=1e-2)
    goal = next(t for t in doc["targets"] if t["target"].startswith("population digits on a GPU"))
    assert goal["goal"] == ">= 10x" and (goal["measured"] is None) == ("PyTorch CUDA f32 stacked (baddbmm)" not in by)


def test_a_population_that_trains_differently_is_reported_loudly(tmp_path, capsys, monkeypatch):
    """Populations whose learning rate is off by 1% no longer equal the loop over their networks: flagged."""
    real = workloads.population

    def off(spec: impls.Spec, size: int, dtype: str, seed: int = 0, device: str = "cpu") -> rustbp.Population:
        return real(dataclasses.replace(spec, lr=spec.lr * 1.01), size, dtype, seed, device)

    monkeypatch.setattr(workloads, "population", off)
    code = main(["bench", *POPULATION_ARGS, "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "LOSS MISMATCH: rustbp f64 Population.train on population-article" in out
    if HAS["sklearn"]:
        assert "LOSS MISMATCH: rustbp f32 Population.fit on population-digits" in out


def test_stacked_torch_model_trains_each_member_like_a_population(rng):
    """PyTorch's stacked model from a population's weights: each member's loss at every step equals the
    member's own (to float32 rounding), and the agreement check fails a wrong learning rate."""
    torch = pytest.importorskip("torch")
    spec = measure.POPULATION_DIGITS
    X = rng.uniform(0, 1, (8, spec.n_in)).astype(np.float32)
    Y = np.eye(spec.n_out, dtype=np.float32)[rng.integers(0, spec.n_out, 8)]
    pop = workloads.population(spec, 3, "float32")
    net = torch_net.StackedTorchNet(torch, pop.get_weights(), lr=spec.lr, dtype="float32", device="cpu")
    want = pop.train(X, Y, 4)
    got = np.stack([net.step(net.tensor(X), net.tensor(Y)).numpy() for _ in range(4)], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert np.all(want[:, -1] < want[:, 0])  # every member trained
    assert workloads.stacked_agrees(torch, "cpu", X, Y)
    slow = torch_net.StackedTorchNet(torch, pop.get_weights(), lr=spec.lr * 1.01, dtype="float32", device="cpu")
    slow_losses = np.stack([slow.step(slow.tensor(X), slow.tensor(Y)).numpy() for _ in range(4)], axis=1)
    assert not np.allclose(slow_losses, want, rtol=1e-4, atol=1e-6)
