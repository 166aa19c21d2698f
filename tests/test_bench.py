"""The speed comparison's correctness, not its speed: every implementation it times computes the same
training as rustbp, the agreement check catches one that does not, and the command writes its files.
PyTorch, scikit-learn and matplotlib are optional: their parts are checked only when they are installed."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import rustbp
from conftest import ARTICLE_E_AFTER_ONE_STEP, ARTICLE_FINAL, ARTICLE_LOSSES
from rustbp.__main__ import main
from rustbp.bench import impls, runner
from rustbp.bench.pure import PurePythonNet, UnrolledArticleNet

HAS = {m: importlib.util.find_spec(m) is not None for m in ("torch", "sklearn", "matplotlib")}


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
        runner.ARTICLE_TORCH,
        impls.Spec(5, 7, 3, loss="half_sse", lr=0.3, momentum=0.5),
        impls.Spec(4, 6, 3, bias="none", loss="mse"),
    ],
    ids=repr,
)
def test_every_implementation_trains_like_rustbp(spec, rng):
    """Same start, same batch, ten steps: every implementation's loss matches rustbp float64's."""
    X, T = rng.uniform(0, 1, (4, spec.n_in)), rng.uniform(0.1, 0.9, (4, spec.n_out))
    w = runner.start_weights(spec)
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
        assert runner.agree(got, want, impl.dtype), (name, got, want)
        checked.append(name)
    assert {"pure Python f64", "NumPy f64", "NumPy f32", "rustbp f32 (Python loop)"} <= set(checked)
    assert ("PyTorch CPU f32" in checked) == HAS["torch"]


def test_agreement_check_tolerates_rounding_and_flags_wrong_math():
    assert runner.agree(0.1 + 1e-12, 0.1, "float64") and not runner.agree(0.1 + 1e-6, 0.1, "float64")
    assert runner.agree(0.1 * (1 + 1e-4), 0.1, "float32") and not runner.agree(0.11, 0.1, "float32")


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
    point = runner.time_point("sweep", spec, runner.start_weights(spec), X, T, [good, bad], reps=1, steps=50)
    assert [r.agrees for r in point.results] == [True, False]
    runner.report([point], [], print)
    assert "LOSS MISMATCH: off by 1%" in capsys.readouterr().out


def test_bench_command_writes_agreeing_results(tmp_path, capsys):
    """`rustbp bench` on tiny sizes: the article's loss after one update, a four-point sweep, the table,
    the JSON file, and the plot when matplotlib is there. Exit status 0 means everything agreed."""
    code = main(
        [
            "bench",
            "--workloads",
            "article,sweep",
            "--article-steps",
            "1",
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
