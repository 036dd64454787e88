"""W&B: offline files inside the run directory, read back from the files; failures never stop training."""

import json
import shutil

import pytest
from helpers import tiny_config
from wandb_records import find_run_files, read_run

from lth.cli import main
from lth.errors import ConfigError
from lth.jobs.lottery import run_lottery
from lth.execution.tracking import Tracker


@pytest.fixture
def wandb_offline(monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    for var in ("WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_CONFIG_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "wandb-home" / var.lower()))


def wandb_runs(run_dir):
    """Every W&B run of a run directory by id ({id: [segments, in the order they were written]}),
    and its summary run's segments."""
    by_id = {}
    for f in sorted(find_run_files(run_dir / "wandb"), key=lambda f: f.parent.name):
        run = read_run(f, wait=10)
        by_id.setdefault(run["run_id"], []).append(run)
    token = (run_dir / "wandb_id").read_text()
    return {k: v for k, v in by_id.items() if not k.endswith("-summary")}, by_id.get(f"{token}-summary", [])


def history(segments, prefix):
    return [{k.removeprefix(prefix): v for k, v in row.items() if k.startswith(prefix)}
            for segment in segments for row in segment["history"] if any(k.startswith(prefix) for k in row)]


def metric_definitions(segment_dir):
    from wandb_records import read_records

    (path,) = find_run_files(segment_dir)
    return {(r.metric.glob_name or r.metric.name, r.metric.step_metric) for r in read_records(path)
            if r.WhichOneof("record_type") == "metric"}


def test_one_wandb_run_per_replicate_and_branch_with_a_row_per_level(tmp_path, wandb_offline):
    """The README's dashboard: the main line and each control is one W&B run, its history one ticket
    row per level (declared against percent_remaining) after that level's evaluations, grouped by
    the cell with the branch as job type; the summary run refreshed with the control's rows."""
    from lth.jobs.controls import run_controls

    records = run_lottery(tiny_config(), runs_root=tmp_path / "runs", wandb="offline", progress=False)
    (run,) = list((tmp_path / "runs").iterdir())
    run_controls(run, "reinit", wandb="offline", progress=False)
    runs, summaries = wandb_runs(run)
    token = (run / "wandb_id").read_text()
    assert len(token) == 8 and sorted(runs) == [f"{token}-r0-imp-reinit", f"{token}-r0-main"]
    (main,) = runs[f"{token}-r0-main"]
    assert main["group"] == runs[f"{token}-r0-imp-reinit"][0]["group"] == f"tiny-{cell_hash(tiny_config())}"
    assert (main["job_type"], runs[f"{token}-r0-imp-reinit"][0]["job_type"]) == ("imp", "imp+reinit")
    assert main["config"]["model"] == "mlp_tiny" and main["config"]["replicate"] == 0
    tickets = history([main], "ticket/")
    assert [t["level"] for t in tickets] == [0, 1, 2]
    for ticket, record in zip(tickets, records):
        assert ticket["percent_remaining"] == record["percent_remaining"]
        assert ticket["accuracy"] == ticket["early_stop_test_accuracy"] == record["early_stop_test_accuracy"]
        assert ticket["test_accuracy"] == record["test_accuracy"]
        assert ticket["compact_macs"] == record["compact_macs"] and ticket["compact_params"] == record["compact_params"]
        assert ticket["units/fc1"] == record["units"]["fc1"][0] and ticket["units/input"] == record["units"]["input"][0]
        assert ticket["cumulative_train_flops"] == record["cumulative_train_flops"] > 0
    metrics = [json.loads(line) for line in (run / "replicate_00" / "metrics.jsonl").read_text().splitlines()]
    local = [m for m in metrics if "iteration" in m]
    seconds = [m["seconds"] for m in metrics if m.get("event") == "level_done"]  # the wall time, from the log
    assert [t["seconds"] for t in tickets] == seconds
    running = [sum(seconds[:i + 1]) for i in range(3)]
    assert [t["cumulative_seconds"] for t in tickets] == pytest.approx(running, abs=2e-3)
    evals = history([main], "eval/")
    assert [(e["level"], e["iteration"], e["val_loss"]) for e in evals] == [
        (m["level"], m["iteration"], m["val_loss"]) for m in local]
    steps = [row["_step"] for row in main["history"]]
    assert steps == list(range(len(steps))) == list(range(len(evals) + len(tickets)))
    assert {("ticket/percent_remaining", ""), ("ticket/*", "ticket/percent_remaining")} <= metric_definitions(
        next(f.parent for f in find_run_files(run / "wandb") if read_run(f)["run_id"] == f"{token}-r0-main"))
    first, refreshed = summaries  # the main line's, then again after the control
    assert [len(s["history"]) for s in summaries] == [1, 1]
    assert first["summary"]["level_02/accuracy"] == records[2]["early_stop_test_accuracy"]
    assert refreshed["history"][0]["levels"]["nrows"] == 2 * len(records)  # main line + imp+reinit


def cell_hash(config):
    from lth.spec.config import replace
    from lth.spec.hashing import config_hash

    return config_hash(replace(config, seed=0))


def test_a_run_without_a_validation_set_charts_its_end_of_training_accuracy(tmp_path, wandb_offline):
    records = run_lottery(tiny_config(levels=1, **{"data.validation_size": 0}), runs_root=tmp_path / "runs",
                          wandb="offline", progress=False)
    (run,) = list((tmp_path / "runs").iterdir())
    runs, _ = wandb_runs(run)
    (main,) = next(iter(runs.values()))
    tickets = history([main], "ticket/")
    assert [r["early_stop_test_accuracy"] for r in records] == [None, None]
    assert [t["accuracy"] for t in tickets] == [r["test_accuracy"] for r in records]
    assert all("early_stop_test_accuracy" not in t for t in tickets)


def test_seeds_of_one_cell_share_a_group_and_run_directories_never_share_ids(tmp_path, wandb_offline):
    """Two seeds of one config: one group (W&B bands them); the same config in two run roots (two
    machines): other W&B ids."""
    for root, seed in (("a", 0), ("b", 1), ("c", 0)):
        run_lottery(tiny_config(levels=0, seed=seed), runs_root=tmp_path / root, wandb="offline", progress=False)
    found = {}
    for root in "abc":
        (run,) = list((tmp_path / root).iterdir())
        runs, _ = wandb_runs(run)
        ((run_id, (segment,)),) = runs.items()
        found[root] = (run_id, segment["group"])
    assert found["a"][1] == found["b"][1] == found["c"][1]
    assert len({run_id for run_id, _ in found.values()}) == 3


def test_resume_continues_the_same_wandb_runs_without_going_back(tmp_path, wandb_offline):
    config = tiny_config(levels=1)
    run_lottery(config, runs_root=tmp_path / "runs", wandb="offline", progress=False)
    (run,) = list((tmp_path / "runs").iterdir())
    rep = run / "replicate_00"
    # a crash just before level 1 was recorded as finished (its W&B rows were all logged)
    results = json.loads((rep / "results.json").read_text())
    (rep / "results.json").write_text(json.dumps(results[:1]))
    shutil.rmtree(rep / "checkpoints" / "level_01")
    (run / "results.json").unlink()
    rerun = run_lottery(config, runs_root=tmp_path / "runs", wandb="offline", progress=False)
    assert rerun == results
    runs, _ = wandb_runs(run)
    (segments,) = runs.values()
    assert len(segments) == 2  # the same id, continued
    first, second = segments
    assert [t["level"] for t in history([first], "ticket/")] == [0, 1]
    assert second["history"] == []  # nothing logged twice, no step going back


def test_disabled_writes_no_wandb_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_lottery(tiny_config(levels=1), runs_root=tmp_path, progress=False)
    (run,) = list(tmp_path.iterdir())
    assert not (run / "wandb").exists()
    assert len(json.loads((run / "replicate_00" / "results.json").read_text())) == 2


def test_wandb_failure_mid_run_does_not_stop_training(tmp_path, wandb_offline, capsys, monkeypatch,
                                                     finished_tiny_run):
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
    reference = finished_tiny_run[1]  # tiny_config() trained with W&B disabled (once per test process)
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
    """Replicates trained in lockstep (--layout vmap) still get one W&B run per replicate, each holding
    its own replicate's evaluations and tickets (W&B holds one open run at a time)."""
    config = tiny_config(levels=1)
    run_lottery(config, runs_root=tmp_path / "runs", wandb="offline", progress=False, replicates=2, layout="vmap")
    (run,) = list((tmp_path / "runs").iterdir())
    runs, summaries = wandb_runs(run)
    token = (run / "wandb_id").read_text()
    assert sorted(runs) == [f"{token}-r{r}-main" for r in range(2)]
    for r in range(2):
        metrics = [json.loads(line) for line in (run / f"replicate_{r:02d}" / "metrics.jsonl").read_text().splitlines()]
        records = json.loads((run / f"replicate_{r:02d}" / "results.json").read_text())
        segments = runs[f"{token}-r{r}-main"]
        assert all(s["config"]["replicate"] == r and s["config"]["seed"] == r for s in segments)
        local = [m for m in metrics if "iteration" in m]
        assert [(e["level"], e["iteration"], e["val_loss"]) for e in history(segments, "eval/")] == [
            (m["level"], m["iteration"], m["val_loss"]) for m in local]
        assert [t["accuracy"] for t in history(segments, "ticket/")] == [
            rec["early_stop_test_accuracy"] for rec in records]
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


def test_an_exported_ticket_is_a_version_of_the_runs_ticket_artifact(tmp_path, wandb_offline, capsys):
    """Offline: a reference to the file with its checksum, aliases per (replicate, level), metadata
    with the ticket's digest; logged from the replicate's main-line W&B run."""
    from wandb_records import read_records

    from lth.tickets.file import load

    run_lottery(tiny_config(), runs_root=tmp_path / "runs", wandb="offline", progress=False)
    (run,) = list((tmp_path / "runs").iterdir())
    assert main(["ticket", "export", run.name, "--level", "1", "--runs", str(tmp_path / "runs")]) == 0
    path = run / "replicate_00" / "tickets" / "level_01.safetensors"
    assert "ticket artifact" in capsys.readouterr().out
    artifacts = [(f, r.artifact) for f in find_run_files(run / "wandb") for r in read_records(f)
                 if r.WhichOneof("record_type") == "artifact" and r.artifact.type == "ticket"]
    ((segment, artifact),) = artifacts
    token = (run / "wandb_id").read_text()
    assert read_run(segment)["run_id"] == f"{token}-r0-main"
    assert (artifact.name, artifact.type) == (f"ticket-{run.name}", "ticket")
    assert {"r0-level-01", "level-01"} <= set(artifact.aliases)
    (entry,) = artifact.manifest.contents
    assert entry.ref == path.resolve().as_uri()
    metadata = json.loads(artifact.metadata)
    assert metadata["level"] == 1 and metadata["sha256"] == load(path).digest
    assert metadata["config_hash"] == run.name.rsplit("-", 1)[-1]

    # lineage: a run from the file names that artifact version (the alias of its digest) in its config
    alias = f"sha256-{metadata['sha256'][:12]}"
    assert alias in artifact.aliases
    run_lottery(tiny_config(levels=1), runs_root=tmp_path / "from_ticket", ticket=path, wandb="offline",
                progress=False)
    (ticket_run,) = list((tmp_path / "from_ticket").iterdir())
    runs, _ = wandb_runs(ticket_run)
    assert {seg["config"]["ticket_artifact"] for segments in runs.values() for seg in segments} == {
        f"ticket-{run.name}:{alias}"}


def test_no_progress_still_says_how_to_upload_the_offline_run(tmp_path, capsys, wandb_offline):
    """`--no-progress` drops the bars and the tables, not the paths to act on: the W&B sync command
    printed after them, as with progress (it was left out)."""
    code = main(["run", "lenet300_mnist", "--variant", "smoke", "--levels", "0", "--no-controls", "--wandb", "offline",
                 "--runs", str(tmp_path / "runs"), "--no-progress"])
    out = capsys.readouterr().out
    (run,) = list((tmp_path / "runs").iterdir())
    (line,) = [line for line in out.splitlines() if line.startswith("W&B (offline): upload with  wandb sync ")]
    assert code == 0 and "\r" not in out and f"{run}/wandb/offline-run-" in line, out
    assert find_run_files(run / "wandb")  # the offline files it names are there


def test_an_artifact_name_as_ticket_needs_online_mode(tmp_path, capsys):
    """`--ticket NAME:ALIAS` (not a file) offline: one line saying how to get the file; nothing written."""
    code = main(["run", "lenet300_mnist", "--variant", "smoke", "--ticket", "ticket-lenet300_mnist-0a1b2c3d:best",
                 "--wandb", "offline", "--runs", str(tmp_path / "runs"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "--wandb online" in err and "wandb artifact get ticket-lenet300_mnist-0a1b2c3d:best" in err
    assert not (tmp_path / "runs").exists()


def test_the_summary_run_shows_the_barriers_after_lth_instability(tmp_path, wandb_offline):
    from lth.jobs.instability import run_instability

    run_lottery(tiny_config(levels=1), runs_root=tmp_path / "runs", wandb="offline", progress=False)
    (run,) = list((tmp_path / "runs").iterdir())
    results = run_instability(run, "0", "0,1", wandb="offline", progress=False)
    _, summaries = wandb_runs(run)
    assert len(summaries) == 2  # the run's, then refreshed by `lth instability`
    assert "instability" not in summaries[0]["history"][0]
    table = summaries[1]["history"][0]["instability"]
    assert table["nrows"] == sum(len(records) for records in results.values()) == 2
    assert summaries[1]["history"][0]["levels"]["nrows"] == 2  # the main line's levels still there
    media = next(f.parent / "files" / table["path"] for f in find_run_files(run / "wandb")
                 if (f.parent / "files" / table["path"]).exists())
    data = json.loads(media.read_text())
    barriers = {(row[data["columns"].index("level")], row[data["columns"].index("barrier")]) for row in data["data"]}
    assert barriers == {(level, r["barrier"]) for level, records in results.items() for r in records}
