"""``rustbp fit`` and ``rustbp predict`` on CSV files, and the command's help and version."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import numpy as np
import pytest
import rustbp
from rustbp.__main__ import main


def write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    return str(path)


@pytest.fixture
def blobs(tmp_path, rng):
    """Three well separated clusters in 3 features, labelled with words, in a column between features."""
    centres = np.array([[0, 0, 0], [6, 0, 0], [0, 6, 6]])
    names = ["cat", "dog", "emu"]
    y = rng.integers(0, 3, 150)
    X = centres[y] + rng.normal(size=(150, 3)) + [0, 100, -50]  # offsets that standardising removes
    rows = [[f"{a:.6f}", names[k], f"{b:.6f}", f"{c:.6f}"] for (a, b, c), k in zip(X, y)]
    return write_csv(tmp_path / "animals.csv", ["a", "kind", "b", "c"], rows), [names[k] for k in y]


def test_fit_reports_metrics_and_predict_writes_the_training_labels(tmp_path, blobs, capsys):
    data, labels = blobs
    model = str(tmp_path / "model.safetensors")
    code = main(["fit", data, "--target", "kind", "--epochs", "30", "--seed", "0", "--save", model])
    out = capsys.readouterr().out
    assert code == 0
    assert "120 training rows, 30 test rows, 3 features; target 'kind': classification (3 classes)" in out
    accuracy = {line.split(":")[0]: float(line.split("accuracy ")[1].split(",")[0]) for line in out.splitlines()
                if "accuracy" in line}  # fmt: skip
    assert set(accuracy) == {"train", "test"} and min(accuracy.values()) > 0.9
    info = json.loads((tmp_path / "model.json").read_text())
    assert info["labels"] == ["cat", "dog", "emu"] and info["features"] == ["a", "b", "c"]
    preds = tmp_path / "preds.csv"
    assert main(["predict", model, data, "--out", str(preds)]) == 0
    rows = list(csv.reader(preds.read_text().splitlines()))
    assert rows[0] == ["kind"] and len(rows) == 151
    predicted = [r[0] for r in rows[1:]]
    assert np.mean(np.array(predicted) == np.array(labels)) > 0.9
    # The same predictions by hand, from the saved network and the scaler in the JSON file.
    net = rustbp.Network.load(model)
    with open(data) as f:
        table = list(csv.DictReader(f))
    X = np.array([[float(r[c]) for c in info["features"]] for r in table])
    expected = [info["labels"][i] for i in np.argmax(net.forward((X - info["mean"]) / info["scale"]), axis=1)]
    assert predicted == expected


def test_regression_is_chosen_for_a_real_valued_target(tmp_path, rng, capsys):
    X = rng.normal(size=(200, 2))
    y = 3 * X[:, 0] - 2 * X[:, 1] + 10
    data = write_csv(tmp_path / "r.csv", ["x0", "x1", "y"], np.column_stack([X, y]).tolist())
    model = str(tmp_path / "r.safetensors")
    assert main(["fit", data, "--target", "y", "--epochs", "60", "--seed", "1", "--save", model]) == 0
    out = capsys.readouterr().out
    assert "target 'y': regression" in out
    r2 = float(out.split("test: ")[1].split("R^2 ")[1].split()[0])
    assert r2 > 0.95
    assert main(["predict", model, data]) == 0  # to standard output
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "y" and len(lines) == 201
    np.testing.assert_allclose([float(v) for v in lines[1:]], y, atol=1.5)


@pytest.mark.parametrize(
    ("values", "task", "expected"),
    [
        (["1", "2", "3"] * 20, None, "classification (3 classes)"),
        ([str(i) for i in range(60)], None, "regression"),
        (["0.5", "1.5"] * 30, None, "regression"),
        (["1", "2", "3"] * 20, "regression", "regression"),
        ([str(i % 25) for i in range(60)], "classification", "classification (25 classes)"),
    ],
)
def test_the_task_comes_from_the_target_column_unless_given(tmp_path, rng, capsys, values, task, expected):
    rows = [[f"{v:.4f}", t] for v, t in zip(rng.normal(size=60), values)]
    data = write_csv(tmp_path / "t.csv", ["x", "t"], rows)
    args = ["fit", data, "--target", "t", "--epochs", "1", "--test-size", "0"]
    assert main(args + (["--task", task] if task else [])) == 0
    out = capsys.readouterr().out
    assert f"target 't': {expected}" in out and "test:" not in out


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, ["--target", "y"], "no such file"),
        ("", ["--target", "y"], "the file is empty"),
        ("x,y\n", ["--target", "y"], "no data rows after the header"),
        ("x,y\n1,2\n", ["--target", "z"], "no column 'z'; the columns are 'x', 'y'"),
        ("x,w,y\n1,2,3\n4,abc,1\n", ["--target", "y"], "row 2, column 'w': 'abc' is not a number"),
        ("x,y\n1,2\n,1\n", ["--target", "y"], "row 2, column 'x': '' is not a number"),
        ("x,y\n1,2\n3\n", ["--target", "y"], "row 2 has 1 fields, the header has 2"),
        ("x,y\n1,a\n2,a\n", ["--target", "y"], "has one value only ('a')"),
        ("x,y\n1,a\n2,b\n", ["--target", "y", "--task", "regression"], "needs numbers in column 'y'"),
        ("x,y\n1,a\n2,b\n", ["--target", "y", "--epochs", "0"], "--epochs: expected a positive integer, got 0"),
        ("x,y\n1,a\n2,b\n", ["--target", "y", "--save", "/nonexistent/m.safetensors"], "--save: no such folder"),
    ],
)
def test_fit_errors_are_one_line_on_stderr(tmp_path, capsys, content, args, message):
    path = tmp_path / "d.csv"
    if content is not None:
        path.write_text(content)
    assert main(["fit", str(path), *args]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rustbp fit: error: ") and message in err and err.count("\n") == 1, err


def test_predict_errors(tmp_path, blobs, capsys):
    data, _ = blobs
    model = tmp_path / "m.safetensors"
    assert main(["predict", str(model), data]) == 1
    assert "m.safetensors: no such file" in capsys.readouterr().err
    rustbp.Network(3, 4, 3).save(model)
    assert main(["predict", str(model), data]) == 1
    assert "m.json: no such file; rustbp predict needs the JSON file rustbp fit --save wrote" in capsys.readouterr().err
    assert main(["fit", data, "--target", "kind", "--epochs", "1", "--save", str(model)]) == 0
    capsys.readouterr()
    other = write_csv(tmp_path / "o.csv", ["a", "c"], [["1", "2"]])
    assert main(["predict", str(model), other]) == 1
    assert "no column 'b'; the columns are 'a', 'c'" in capsys.readouterr().err


def run(*args):
    return subprocess.run([sys.executable, "-m", "rustbp", *args], capture_output=True, text=True, check=False)


def test_the_command_alone_prints_help_and_has_a_version():
    alone = run()
    assert alone.returncode == 0 and alone.stdout.startswith("usage: rustbp") and alone.stderr == ""
    for command in ("demo", "bench", "fit", "predict"):
        assert command in alone.stdout
    version = run("--version")
    assert version.returncode == 0 and version.stdout.strip() == f"rustbp {rustbp.__version__}"
    for command in ([], ["fit"], ["predict"]):
        text = run(*command, "--help").stdout
        assert "``" not in text and "**" not in text, text


def test_errors_have_no_traceback(tmp_path):
    result = run("fit", str(tmp_path / "missing.csv"), "--target", "y")
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == f"rustbp fit: error: {tmp_path / 'missing.csv'}: no such file\n"
