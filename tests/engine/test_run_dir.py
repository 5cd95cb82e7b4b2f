"""The run folder: its layout, which folders a new run may take, and the resume policy."""

import pytest

from reidgraft.cli import train as train_cli
from reidgraft.config import ConfigError, build_config
from reidgraft.engine import RunDir
from reidgraft.engine.run_dir import RESUMABLE, check_resume


def test_layout(tmp_path):
    run = RunDir(tmp_path / "run")
    assert run.checkpoint() == tmp_path / "run" / "checkpoint.pt"
    assert run.checkpoint(3) == tmp_path / "run" / "rank3" / "checkpoint.pt"
    assert run.previous_checkpoint(3) == tmp_path / "run" / "rank3" / "checkpoint-previous.pt"
    assert (run.metrics.name, run.config_file.name) == ("metrics.json", "config.yaml")
    assert RunDir(run.checkpoint()).path == run.path  # a checkpoint's path names its run


def test_a_new_run_takes_a_missing_or_empty_folder_and_marks_it(tmp_path):
    (tmp_path / "empty").mkdir()
    for folder in (tmp_path / "new" / "run", tmp_path / "empty"):
        run = RunDir(folder)
        run.check_new()
        assert not run.marker.exists()  # checking creates nothing
        run.mark()
        assert run.marker.is_file() and run.is_ours()
        (run.path / "config.yaml").write_text("epochs: 1\n")
        run.check_new()  # ours and without a checkpoint (stopped before epoch 1): taken again


def test_a_folder_with_a_run_or_with_a_users_files_is_refused_and_left_alone(tmp_path):
    finished = RunDir(tmp_path / "finished")
    finished.checkpoint().parent.mkdir()
    finished.checkpoint().write_bytes(b"x")
    with pytest.raises(ConfigError, match=f"already holds a run; continue it with --resume {finished.path}"):
        finished.check_new()
    theirs = tmp_path / "photos"
    theirs.mkdir()
    (theirs / "holiday.jpg").write_bytes(b"mine")
    with pytest.raises(ConfigError, match="is not empty and is not a reidgraft run; choose another --output"):
        RunDir(theirs).check_new()
    assert [path.name for path in theirs.iterdir()] == ["holiday.jpg"]


def test_the_cli_refuses_a_users_folder_before_reading_any_data(tmp_path, capsys):
    theirs = tmp_path / "notes"
    theirs.mkdir()
    (theirs / "todo.txt").write_text("keep me")
    code = train_cli.main(["--output", str(theirs), "--root", str(tmp_path / "no-data"), "--device", "cpu"])
    error = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(error) == 1 and "is not a reidgraft run" in error[0]
    assert [path.name for path in theirs.iterdir()] == ["todo.txt"]
    assert not (tmp_path / "no-data").exists()


def test_a_run_that_stops_before_training_leaves_no_folder(tmp_path, capsys):
    output = tmp_path / "runs" / "never"
    flags = ["--root", str(tmp_path), "--output", str(output), "--weights", "none"]
    code = train_cli.main(["--dataset", "market1501", *flags])
    assert code == 2 and "dataset not found" in capsys.readouterr().err
    assert not output.exists()


def test_resume_policy_keeps_the_identity_and_allows_only_the_resumable_settings():
    saved = build_config(dataset="synthetic", arch="resnet50", models=2, epochs=4, lr=0.1).to_dict()
    check_resume(saved, {"epochs": 8, "workers": 2, "device": "cpu", "models": 2}, "RUN")
    with pytest.raises(
        ConfigError, match="cannot resume RUN with arch 'osnet_x1_0': that run trained arch 'resnet50'"
    ):
        check_resume(saved, {"arch": "osnet_x1_0"}, "RUN")
    with pytest.raises(
        ConfigError, match=r"cannot change lr when resuming RUN \(it was 0.1\); only .*epochs"
    ):
        check_resume(saved, {"lr": 0.2}, "RUN")
    check_resume(saved, {"lr": 0.1}, "RUN")  # the same value is no change
    assert {"epochs", "ring_timeout", "device"} <= RESUMABLE and not {"seed", "graft", "lr"} & RESUMABLE


def test_resume_config_takes_the_saved_run_and_the_allowed_changes(tmp_path):
    run = RunDir(tmp_path)
    payload = {"config": build_config(models=2, epochs=4, lr=0.1).to_dict(), "epoch": 3}
    config = run.resume_config(payload, {"epochs": 6, "eval_every": 2})
    assert (config.epochs, config.eval_every, config.lr, config.output) == (6, 2, 0.1, str(tmp_path))
    with pytest.raises(ConfigError, match="has already trained 3 epochs; ask for more"):
        run.resume_config(payload, {"epochs": 2})


def test_a_distributed_run_is_not_resumed_in_one_process(tmp_path):
    from tests.engine.test_checkpoint import rank_payload

    run = RunDir(tmp_path)
    for k in range(2):
        run.save(rank_payload(k, epoch=1), rank=k)
    with pytest.raises(ConfigError, match="is a distributed run; resume it under torchrun .*2 processes"):
        run.resume_payload()


def test_a_start_or_resume_clears_what_an_interrupted_save_left(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "rank1").mkdir()
    leftovers = [tmp_path / ".checkpoint.pt.abc123.tmp", tmp_path / "rank1" / ".metrics.json.x.tmp"]
    theirs = tmp_path / ".notes.txt.tmp"  # not one of ours: left alone
    for path in [*leftovers, theirs]:
        path.write_bytes(b"half a file")
    run.mark()
    assert not any(path.exists() for path in leftovers) and theirs.exists()


def test_a_write_in_progress_survives_another_start_in_the_same_folder(tmp_path):
    # the distributed start-up race in one process: a rank's start while rank 0 writes config.yaml
    from reidgraft.files import atomic_write

    run = tmp_path / "run"
    RunDir(run).mark()
    atomic_write(run / "config.yaml", lambda file: (file.write(b"x"), RunDir(run).mark()))
    assert (run / "config.yaml").read_bytes() == b"x" and not list(run.glob(".*.tmp"))


def test_leftovers_of_dead_writers_go_and_live_writers_stay(tmp_path):
    import os
    import subprocess

    finished = subprocess.Popen(["true"])
    finished.wait()
    dead = tmp_path / f".checkpoint.pt.{finished.pid}.abcd1234.tmp"
    live = tmp_path / f".checkpoint.pt.{os.getpid()}.efgh5678.tmp"
    huge = tmp_path / f".metrics.json.{'9' * 20}.ijkl9012.tmp"  # no process has such an id
    for path in (dead, live, huge):
        path.write_bytes(b"half a file")
    removed = RunDir(tmp_path).remove_leftovers()
    assert sorted(removed) == sorted([dead, huge]) and live.exists()


def test_a_new_run_into_a_file_names_the_file(tmp_path):
    target = tmp_path / "notes.txt"
    target.write_text("mine")
    with pytest.raises(ConfigError, match=f"--output {target} is a file, not a run folder"):
        RunDir(target).check_new()


def test_a_new_run_at_a_checkpoint_path_says_it_holds_a_run(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"x")
    with pytest.raises(ConfigError, match="already holds a run"):
        RunDir(tmp_path / "checkpoint.pt").check_new()


def test_a_run_being_trained_is_refused_naming_its_process(tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen(
        [sys.executable, "-c", f"from reidgraft.engine.run_dir import RunDir; r = RunDir({str(tmp_path)!r}); "
         "r.mark(); r.lock(); print('locked', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        for refused in (RunDir(tmp_path).check_new, RunDir(tmp_path).resume_payload, RunDir(tmp_path).lock):
            with pytest.raises(ConfigError, match=f"is being trained by process {holder.pid} now"):
                refused()
    finally:
        holder.kill()
        holder.wait()
    RunDir(tmp_path).check_new()  # the holder is gone: its lock went with it
    run = RunDir(tmp_path)
    run.lock()
    run.unlock()
    assert not (tmp_path / ".reidgraft-run.lock").exists()


def test_a_run_folder_below_a_file_is_left_to_the_writability_check(tmp_path):
    (tmp_path / "a-file").write_text("x")
    RunDir(tmp_path / "a-file" / "run").check_unlocked()  # no OSError: check_new says why
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        RunDir(tmp_path / "a-file" / "run").check_new()


def test_a_run_numbered_otherwise_before_format_2_is_refused_the_rest_reused():
    from reidgraft.engine.run_dir import check_same_method

    def saved(format_, **settings):
        return {"format": format_, "config": build_config(eval_after_graft=True, **settings).to_dict()}

    with pytest.raises(
        ConfigError, match="eval_after_graft and the noise scion before an epoch end was numbered"
    ):
        check_same_method(saved(1, scion="noise", models=2), "runs/old")
    with pytest.raises(ConfigError, match="eval_after_graft and PAPA pairs"):
        check_same_method(saved(1, population="papa", papa_mode="pairs", models=3), "runs/old")
    # what the numbering never reached trains as it did: reused and resumed
    check_same_method(saved(1, scion="external", models=2), "runs/old")
    check_same_method(
        saved(1, population="papa", papa_mode="pairs", models=2), "runs/old"
    )  # one pair: no draw
    check_same_method(saved(1, scion="noise", models=1), "runs/old")
    check_same_method(saved(2, scion="noise", models=2), "runs/new")
    old = saved(1, scion="noise", models=2)
    old["config"]["eval_after_graft"] = False
    check_same_method(old, "runs/old")
