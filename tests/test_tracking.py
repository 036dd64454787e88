"""W&B: offline files inside the run directory, read back from the files; failures never stop training."""

import json
import shutil

import pytest
from helpers import tiny_config
from wandb_records import find_run_files, read_run

from lth.cli import main
from lth.errors import ConfigError
from lth.jobs.lottery import run_lottery
from lth.runs.tracking import Tracker


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))


def level_runs(run_dir):
    runs = [read_run(f, wait=10) for f in find_run_files(run_dir / "wandb")]
    return {r["run_id"]: r for r in runs if r["job_type"] == "level"}, [r for r in runs if r["job_type"] == "summary"]


def test_offline_run_logs_every_level_inside_the_run_directory(tmp_path, wandb_offline):
    records = run_lottery(tiny_config(), runs_root=tmp_path / "runs", wandb="offline", progress=False)
    (run,) = list((tmp_path / "runs").iterdir())
    levels, summaries = level_runs(run)
    assert sorted(levels) == [f"{run.name}-r0-l{level}" for level in range(3)]
    metrics = [json.loads(line) for line in (run / "replicate_00" / "metrics.jsonl").read_text().splitlines()]
    for level, record in enumerate(records):
        wb = levels[f"{run.name}-r0-l{level}"]
        assert wb["group"] == run.name and wb["config"]["level"] == level and wb["config"]["model"] == "mlp_tiny"
        steps = [h["_step"] for h in wb["history"]]
        assert steps == [10, 20, 30, 35]
        local = [m for m in metrics if m.get("level") == level and "iteration" in m]
        assert [h["val_loss"] for h in wb["history"]] == [m["val_loss"] for m in local]
        assert wb["summary"]["early_stop_test_accuracy"] == record["early_stop_test_accuracy"]
        assert wb["summary"]["percent_remaining"] == record["percent_remaining"]
        assert wb["exit_code"] == 0
    (summary,) = summaries
    assert summary["summary"]["level_02/early_stop_test_accuracy"] == records[2]["early_stop_test_accuracy"]


def test_resume_continues_the_same_wandb_runs_without_going_back(tmp_path, wandb_offline):
    config = tiny_config(levels=1)
    run_lottery(config, runs_root=tmp_path / "runs", wandb="offline", progress=False)
    (run,) = list((tmp_path / "runs").iterdir())
    rep = run / "replicate_00"
    # a crash just before level 1 was recorded as finished (its W&B run had logged everything)
    results = json.loads((rep / "results.json").read_text())
    (rep / "results.json").write_text(json.dumps(results[:1]))
    shutil.rmtree(rep / "checkpoints" / "level_01")
    (run / "results.json").unlink()
    rerun = run_lottery(config, runs_root=tmp_path / "runs", wandb="offline", progress=False)
    assert rerun == results
    files = [read_run(f, wait=10) for f in find_run_files(run / "wandb")]
    level1 = [f for f in files if f["run_id"] == f"{run.name}-r0-l1"]
    assert len(level1) == 2  # the same id, continued
    first, second = level1
    assert [h["_step"] for h in first["history"]] == [10, 20, 30, 35]
    assert second["history"] == []  # nothing logged twice, no step going back
    assert second["summary"]["early_stop_test_accuracy"] == results[1]["early_stop_test_accuracy"]


def test_disabled_writes_no_wandb_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_lottery(tiny_config(levels=1), runs_root=tmp_path, progress=False)
    (run,) = list(tmp_path.iterdir())
    assert not (run / "wandb").exists()
    assert len(json.loads((run / "replicate_00" / "results.json").read_text())) == 2


def test_wandb_failure_mid_run_does_not_stop_training(tmp_path, wandb_offline, capsys, monkeypatch):
    import wandb.sdk.wandb_run as wandb_run

    calls = {"n": 0}
    original = wandb_run.Run.log

    def flaky_log(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise ConnectionError("injected: W&B backend unreachable")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(wandb_run.Run, "log", flaky_log)
    records = run_lottery(tiny_config(), runs_root=tmp_path / "runs", wandb="offline", progress=False)
    assert [r["level"] for r in records] == [0, 1, 2]
    reference = run_lottery(tiny_config(), runs_root=tmp_path / "reference", wandb="disabled", progress=False)
    assert records == reference  # local results complete and identical
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "injected" in warnings[0] and "local files continue" in warnings[0]


def test_online_without_credentials_fails_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    empty = tmp_path / "netrc"
    empty.write_text("")
    monkeypatch.setenv("NETRC", str(empty))
    with pytest.raises(ConfigError, match="W&B online mode needs credentials"):
        run_lottery(tiny_config(), runs_root=tmp_path / "runs", wandb="online", progress=False)
    code = main(["run", "lenet300_mnist", "--variant", "smoke", "--wandb", "online", "--runs", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "wandb login" in err
    assert not (tmp_path / "runs").exists()


def test_vmapped_replicates_log_each_replicate_to_its_own_wandb_runs(tmp_path, wandb_offline):
    """Replicates trained in lockstep (--layout vmap) still get one W&B run per replicate and level,
    each holding its own replicate's evaluations (W&B holds one open run at a time)."""
    config = tiny_config(levels=1)
    run_lottery(config, runs_root=tmp_path / "runs", wandb="offline", progress=False, replicates=2, layout="vmap")
    (run,) = list((tmp_path / "runs").iterdir())
    levels, summaries = level_runs(run)
    assert sorted(levels) == sorted(f"{run.name}-r{r}-l{level}" for r in range(2) for level in range(2))
    for r in range(2):
        metrics = [json.loads(line) for line in (run / f"replicate_{r:02d}" / "metrics.jsonl").read_text().splitlines()]
        records = json.loads((run / f"replicate_{r:02d}" / "results.json").read_text())
        for level in range(2):
            wb = levels[f"{run.name}-r{r}-l{level}"]
            assert wb["config"]["replicate"] == r and wb["config"]["seed"] == r
            local = [m for m in metrics if m.get("level") == level and "iteration" in m]
            assert [h["_step"] for h in wb["history"]] == [m["iteration"] for m in local] == [10, 20, 30, 35]
            assert [h["val_loss"] for h in wb["history"]] == [m["val_loss"] for m in local]
            assert wb["summary"]["early_stop_test_accuracy"] == records[level]["early_stop_test_accuracy"]
    assert len(summaries) == 1


class Events(Tracker):
    """Every level event a run reports, as (name, replicate, level)."""

    def __init__(self):
        self.events, self.runs_done, self.closed = [], 0, 0

    def level_start(self, replicate, level, percent_remaining, first_step, branch="main"):
        self.events.append(("start", replicate, level))

    def log_evaluations(self, replicate, level, evaluations):
        self.events.append(("evaluations", replicate, level))

    def level_done(self, replicate, record, evaluations):
        self.events.append(("done", replicate, record["level"]))

    def run_done(self, records):
        self.runs_done += 1

    def close(self):
        self.closed += 1


@pytest.mark.parametrize("layout", ["sequential", "workers", "vmap"])
def test_trackers_receive_every_level_event_in_every_layout(tmp_path, layout):
    """A tracker passed to `run_lottery` hears every replicate's level events, whichever layout trains
    them (in the workers layout the worker processes forward them to this process)."""
    events = Events()
    workers = {"workers": 2} if layout == "workers" else {}
    run_lottery(tiny_config(levels=1), runs_root=tmp_path, wandb="disabled", progress=False, replicates=2,
                layout=layout, trackers=[events], **workers)
    want = {(name, r, level) for name in ("start", "evaluations", "done") for r in (0, 1) for level in (0, 1)}
    assert set(events.events) == want
    assert sum(1 for e in events.events if e[0] == "done") == 4  # each level once
    assert (events.runs_done, events.closed) == (1, 1)
