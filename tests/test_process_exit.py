"""The `lth` process skips the interpreter's teardown at its exit (`lth.cli.process_exit`) and loses
nothing by it: its exit code, every line it printed and every file it wrote, W&B's offline run
included, are there the moment it has exited."""

import json
import os
import subprocess
import sys

from wandb_records import find_run_files, read_records

# `lth` as its console script runs it (`main()`: the process itself), or with `caller` as a program of
# its own calls it (`main(argv)`); plus an object whose finaliser runs only in the interpreter's teardown
PROBE = """
import os
import sys
class Teardown:
    def __del__(self, write=os.write):  # module globals are gone by then
        write(2, b"interpreter teardown\\n")
probe = Teardown()
from lth.cli import main
sys.argv = ["lth", *sys.argv[1:]]
sys.exit(main({argv}))
"""


def _lth(tmp_path, *args: str, caller: bool = False) -> subprocess.CompletedProcess:
    code = PROBE.format(argv="sys.argv[1:]" if caller else "None")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=300, env={**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"})


def test_a_finished_run_exits_at_once_with_its_output_and_files_complete(tmp_path):
    runs = tmp_path / "runs"
    proc = _lth(tmp_path, "run", "mlp_mnist1d", "--variant", "smoke", "--levels", "1", "--no-controls",
                "--no-progress", "--runs", str(runs), "--wandb", "offline")
    assert proc.returncode == 0, proc.stderr
    assert "interpreter teardown" not in proc.stderr
    assert proc.stdout.rstrip().splitlines()[-1].startswith("W&B (offline): upload with  wandb sync ")
    (run,) = runs.iterdir()
    assert [r["level"] for r in json.loads((run / "results.json").read_text())] == [0, 1]
    files = find_run_files(run / "wandb")
    assert files
    for path in files:  # read at once, no waiting: lth's W&B teardown and W&B's exit handler ran before the end
        assert read_records(path)[-1].WhichOneof("record_type") == "exit", path


def test_bad_input_keeps_its_code_and_line_and_a_caller_keeps_its_teardown(tmp_path):
    proc = _lth(tmp_path, "run", "lenet300_mnsit")
    assert proc.returncode == 2
    assert proc.stderr.startswith("lth: error: unknown experiment 'lenet300_mnsit'")
    assert "interpreter teardown" not in proc.stderr
    # `main(argv)` called by a program of its own (a caller's process): its interpreter exits as usual
    proc = _lth(tmp_path, "run", "lenet300_mnsit", caller=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines()[-1] == "interpreter teardown"
