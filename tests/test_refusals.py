"""Every bad input to every command: one line that says what is wrong, exit 1, and nothing left behind.

The commands run in this process (their real ``main``, as ``python <script> ...`` calls it) so that
the many cases share one start-up; each writes under its own temporary folder, which must be empty
afterwards: a refused command creates no run or output directory.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support import REPO, run_here

try:
    import torch

    HAS_CUDA = torch.cuda.is_available() or torch.backends.mps.is_available()
except ImportError:  # pragma: no cover
    HAS_CUDA = False

TINY_RUN = ["backbone=tiny", "data.max_train_samples=32", "data.max_eval_samples=16", "logger=none"]

# (command, arguments, what the one line must say)
RUN_CASES = [
    ("head.num_prototype=10", "head.num_prototype: unknown key (did you mean head.num_prototypes?)"),
    ("+head.num_prototype=10", "head: unknown key 'num_prototype' (did you mean 'num_prototypes'?)"),
    ("+head.foo=1", "head: unknown key 'foo'"),
    ("+foo=1", "unknown key 'foo'"),
    ("prune.enabld=true", "prune.enabld: unknown key (did you mean prune.enabled?)"),
    ("backbone=tiny-bert", "backbone=tiny-bert is not one of: bert-base-uncased"),
    ("head=protoype", "head=protoype is not one of: linear, prototype (did you mean prototype?)"),
    ("experiment=nope", "experiment=nope is not one of:"),
    ("seed=abc", "seed must be a whole number, not 'abc'"),
    ("optim.head_lr=abc", "optim.head_lr must be a number"),
    ("optim.head_lr=-1", "optim.head_lr=-1 must be a number in (0, inf)"),
    ("loss.k=1.5", "loss.k must be a whole number"),
    ("loss.k=100", "loss.k=100 must be at most the 25 prototypes per class"),
    ("head.num_prototypes=25", "head.num_prototypes=25 must be a multiple of task sst2's 2 classes"),
    ("head.similarity=cosin", "head.similarity='cosin' is not one of"),
    ("trainer.max_steps=abc", "trainer.max_steps='abc' is not of the type Lightning's Trainer takes: int"),
    ("trainer.precision=15", "trainer.precision=15 is not of the type"),
    ("+trainer.max_stepz=3", "trainer: unknown key 'max_stepz' (did you mean 'max_steps'?)"),
    ("task.name=x,y(", "cannot read the override 'task.name=x,y('"),
    ("~seed", "seed"),
    ("ckpt_path=/nonexistent.ckpt", "/nonexistent.ckpt"),
    ("ckpt_path=last", "ckpt_path=last: no earlier run with the same overrides"),
    ("data.data_dir=/nonexistent", "/nonexistent/sst2/train.tsv"),
    ("callbacks.progress_every_s=0", "callbacks.progress_every_s=0 must be a number in (0, 3600]"),
]
if not HAS_CUDA:
    RUN_CASES.append(("trainer.accelerator=gpu", "trainer.accelerator=gpu: torch sees no GPU device"))

TOOL_CASES = [
    ("explain", ["model=x", "text=hi", "top_k=abc"], "top_k must be a whole number, not 'abc'"),
    ("explain", ["model=x", "text=hi", "top_k=-1"], "top_k=-1 must be a whole number in [1, inf)"),
    ("explain", ["model=x", "text=hi", "topk=3"], "topk: unknown key (did you mean top_k?)"),
    ("explain", ["text=hi"], "model must be given"),
    ("explain", ["text=hi", "ckpt_path=x", "model=y"], "model= and ckpt_path= name two models"),
    ("explain", ["model=/nonexistent", "text=hi"], "model=/nonexistent: no such file or directory"),
    ("explain", ["ckpt_path=/nonexistent", "text=hi"], "model=/nonexistent: no such file or directory"),
    ("explain", ["model=x", "text=hi", "device=gpu"], "device='gpu' is not a device"),
    ("explain", ["model=x", "text=hi", "max_inputs=0"], "max_inputs=0 must be a whole number in [1, inf)"),
    ("explain", ["model=x", "text="], 'text="" is empty or only whitespace: give the text to explain'),
    ("explain", ["model=x", "text=  \t "], "is empty or only whitespace: give the text to explain"),
    ("predict", ["model=x", "input_file=a.txt", "output=b.csv", "batch_size=0"], "batch_size=0 must be"),
    ("predict", ["model=x", "input_file=a.pdf", "output=b.csv"], "input_file"),
    ("predict", ["model=x", "output=b.csv"], "input_file must be given"),
    ("predict", ["model=x", "input_file=a.txt", "output=b.csv", "progress_every_s=7200"], "progress_every_s=7200 must"),
    ("serve", ["model=x", "port=99999"], "port=99999 must be a whole number in [0, 65535]"),
    ("serve", ["model=x", "log_level=loud"], "log_level='loud' is not one of"),
    ("evaluate", ["model=x", "faithfulness.target=both"], "faithfulness.target='both' is not one of"),
    ("evaluate", ["model=x", "faithfulness.prototype_ks=[0,1]"], "faithfulness.prototype_ks[]=0 must be"),
    ("evaluate", ["model=x", "batch_size=abc"], "batch_size must be a whole number"),
    ("export", ["model=x"], "out must be given"),
    ("export", ["model=x", "out=y", "hub_timeout_s=0"], "hub_timeout_s=0 must be a number in (0, inf)"),
    ("health", ["model=x", "health.k=0"], "health.k=0 must be a whole number in [1, inf)"),
    ("health", ["model=x", "prune.min_purity=abc"], "prune.min_purity must be a number"),
    ("project", ["model=x", "project.mode=move"], "project.mode='move' is not one of: link, replace"),
]
if not HAS_CUDA:
    TOOL_CASES.append(("explain", ["model=x", "text=hi", "device=cuda"], "device=cuda: this torch build"))


def run_in_process(script: str, args: list[str], capsys, monkeypatch, stream: str = "err") -> tuple[int, str]:
    """(exit code, stderr or stdout) of ``python <script>.py <args>``, run by the script's own main here."""
    command = ("run.py",) if script == "run" else ("protolm", script)
    result = run_here(*command, *args, capsys=capsys, monkeypatch=monkeypatch)
    return result.returncode, result.stderr if stream == "err" else result.stdout


def assert_refused(code: int, err: str, fragment: str) -> None:
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 1, err
    assert "Traceback" not in err, err
    assert len(errors) == 1 and fragment in errors[0], err


@pytest.mark.parametrize("bad,fragment", RUN_CASES, ids=[case[0] for case in RUN_CASES])
def test_run_refuses_in_one_line_and_leaves_nothing(bad, fragment, tmp_path, capsys, monkeypatch):
    code, err = run_in_process("run", [*TINY_RUN, f"paths.log_dir={tmp_path}/outputs", bad], capsys, monkeypatch)
    assert_refused(code, err, fragment)
    assert list(tmp_path.iterdir()) == [], "a refused run left a directory behind"


@pytest.mark.parametrize("tool,args,fragment", TOOL_CASES, ids=[f"{c[0]}:{c[1][-1]}" for c in TOOL_CASES])
def test_tools_refuse_in_one_line_and_leave_nothing(tool, args, fragment, tmp_path, capsys, monkeypatch):
    code, err = run_in_process(tool, [*args, f"hydra.run.dir={tmp_path}/out/{tool}"], capsys, monkeypatch)
    assert_refused(code, err, fragment)
    assert list(tmp_path.iterdir()) == [], "a refused command left a directory behind"


@pytest.mark.parametrize("content", ["", "sentence\tlabel\n"], ids=["empty", "header-only"])
def test_empty_or_header_only_data_file_is_named(content, tmp_path, capsys, monkeypatch):
    (tmp_path / "data" / "t").mkdir(parents=True)
    for split in ("train", "dev"):
        (tmp_path / "data" / "t" / f"{split}.tsv").write_text(content)
    (tmp_path / "conf" / "task").mkdir(parents=True)
    (tmp_path / "conf" / "task" / "empty.yaml").write_text(
        "name: empty\ntext_fields: [sentence]\nlabel_field: label\nlabels: ['0', '1']\n"
        "local: {format: tsv, train: t/train.tsv, validation: t/dev.tsv}\n"
        "carve: [{split: heldout, from: train, size: 1}]\nselect_on: heldout\nreport_on: validation\n"
    )
    args = [
        *TINY_RUN,
        f"hydra.searchpath=[file://{tmp_path / 'conf'}]",
        "task=empty",
        f"data.data_dir={tmp_path / 'data'}",
        f"paths.log_dir={tmp_path}/outputs",
    ]
    code, err = run_in_process("run", args, capsys, monkeypatch)
    assert_refused(code, err, "t/train.tsv: no examples in it (the file is empty, or holds only a header row)")
    assert not (tmp_path / "outputs").exists()


@contextmanager
def held_by_another_process(directory: Path):
    """``directory`` held by a second process, as a running run or tool holds its directory."""
    code = (
        "import sys, time\nfrom pathlib import Path\nfrom protolm.training.runs import holding\n"
        "with holding(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(120)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(directory)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    try:
        assert process.stdout.readline().strip() == "held"
        yield
    finally:
        process.kill()
        process.wait()


def test_a_second_run_into_a_running_runs_directory_is_refused(tmp_path, capsys, monkeypatch):
    run_dir = tmp_path / "run"
    with held_by_another_process(run_dir):
        code, err = run_in_process("run", [*TINY_RUN, f"hydra.run.dir={run_dir}"], capsys, monkeypatch)
    assert_refused(code, err, f"run directory {run_dir} is in use by another running protolm process")
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "csv").exists()
    assert not (run_dir / "error.txt").exists()  # nothing of the refused command's mixed into the other run


def test_a_tool_into_an_output_directory_in_use_is_refused(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    (tmp_path / "in.txt").write_text("fine\n")
    args = ["model=x", f"input_file={tmp_path / 'in.txt'}", f"output={tmp_path / 'o.csv'}", f"hydra.run.dir={out}"]
    with held_by_another_process(out):
        code, err = run_in_process("predict", args, capsys, monkeypatch)
    assert_refused(code, err, f"output directory {out} is in use by another running protolm process")


def test_resuming_a_finished_run_is_refused_and_says_how_to_go_on(tiny_run, tmp_path, capsys, monkeypatch):
    results = (tiny_run / "results.json").read_text()
    args = [f"ckpt_path={tiny_run}", f"paths.log_dir={tmp_path}/outputs"]
    code, err = run_in_process("run", args, capsys, monkeypatch)
    assert_refused(code, err, f"run {tiny_run} is finished (it has results.json)")
    assert "drop ckpt_path" in err and "overwrite=true" in err
    assert (tiny_run / "results.json").read_text() == results
    assert list(tmp_path.iterdir()) == []


def wrong_type_cases() -> list[tuple[str, str]]:
    """(command, key) for every number or flag a command takes: each gets a value that is neither."""
    import dataclasses
    import typing

    from protolm import config
    from protolm.config import tools as tool_config

    def numbers_and_flags(schema, prefix=""):
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            kinds = {hints[f.name], *typing.get_args(hints[f.name])}
            nested = next((k for k in kinds if dataclasses.is_dataclass(k)), None)
            if nested is not None:
                yield from numbers_and_flags(nested, f"{prefix}{f.name}.")
            elif kinds & {int, float, bool}:
                yield f"{prefix}{f.name}"

    cases = [
        ("run", f"{section}.{key}") for section, schema in RUN_SECTIONS(config) for key in numbers_and_flags(schema)
    ]
    cases += [("run", "seed")]
    for tool, schema in tool_config.TOOL_SCHEMAS.items():
        cases += [(tool, key) for key in numbers_and_flags(schema)]
    return cases


def RUN_SECTIONS(config):  # noqa: N802 - the run's sections a user sets on the command line
    return [
        ("head", config.PrototypeHeadConfig),
        ("loss", config.LossConfig),
        ("optim", config.OptimConfig),
        ("data", config.DataConfig),
        ("project", config.ProjectConfig),
        ("health", config.HealthConfig),
        ("prune", config.PruneConfig),
        ("callbacks", config.CallbacksConfig),
        ("init", config.InitConfig),
    ]


REQUIRED = {"explain": ["ckpt_path=x", "text=hi"], "predict": ["model=x", "input_file=a.txt", "output=b.csv"]}
REQUIRED |= {"serve": ["model=x"], "export": ["ckpt_path=x", "out=y"], "run": TINY_RUN}


@pytest.mark.slow  # ~100 commands: the representative cases above run in the default suite
@pytest.mark.parametrize("command,key", wrong_type_cases(), ids=lambda value: str(value))
def test_every_number_and_flag_of_every_command_refuses_a_wrong_type(command, key, tmp_path, capsys, monkeypatch):
    args = REQUIRED.get(command, ["ckpt_path=x"]) + [f"{key}=abc", f"hydra.run.dir={tmp_path}/out"]
    code, err = run_in_process(command, args, capsys, monkeypatch)
    assert_refused(code, err, f"{key}=abc: {key} must be")
    assert list(tmp_path.iterdir()) == []


def test_a_checkpoint_of_an_older_format_names_both_versions(tiny_run, tmp_path, capsys, monkeypatch):
    import torch

    old = torch.load(tiny_run / "checkpoints" / "projected.ckpt", weights_only=True)
    old["protolm"]["format"] = 1
    del old["protolm"]["protolm_version"]
    torch.save(old, tmp_path / "old.ckpt")
    args = [f"model={tmp_path / 'old.ckpt'}", "text=fine", f"hydra.run.dir={tmp_path}/out"]
    code, err = run_in_process("explain", args, capsys, monkeypatch)
    assert_refused(code, err, "was written by protolm a version before 0.1.0 (checkpoint format 1); this is protolm")
    assert "which reads format 3" in err and not (tmp_path / "out").exists()


def test_tools_take_a_run_directory_as_run_py_writes_it(tiny_run, tmp_path, capsys, monkeypatch):
    args = [f"model={tiny_run}", "text=a fine film", f"hydra.run.dir={tmp_path}/out"]
    code, _ = run_in_process("explain", args, capsys, monkeypatch)
    assert code == 0 and (tmp_path / "out" / "explanations.jsonl").exists()


def test_explain_says_what_it_left_out_or_truncated(tiny_run, tmp_path, capsys, monkeypatch):
    lines = ["a fine film", "", "dull", "   ", *[f"film number {i}" for i in range(5)], "word " * 20000]
    (tmp_path / "in.txt").write_text("\n".join(lines) + "\n")
    args = [f"model={tiny_run}", f"input_file={tmp_path / 'in.txt'}", "max_inputs=3", f"hydra.run.dir={tmp_path}/a"]
    code, _ = run_in_process("explain", args, capsys, monkeypatch)
    log = (tmp_path / "a" / "explain.log").read_text()
    assert code == 0
    assert "skipped 2 blank line(s)" in log and "explaining the first 3 of 8 inputs (max_inputs=3" in log
    # A text longer than the model reads is said to be truncated on the terminal too.
    (tmp_path / "long.txt").write_text("word " * 20000 + "\n")
    args = [f"model={tiny_run}", f"input_file={tmp_path / 'long.txt'}", f"hydra.run.dir={tmp_path}/b"]
    code, out = run_in_process("explain", args, capsys, monkeypatch, stream="out")
    assert code == 0 and "(input truncated: the model read its first" in out, out


def test_an_unfinished_run_is_named_with_its_last_checkpoint_and_the_command_that_resumes_it(
    tiny_run, tmp_path, capsys, monkeypatch
):
    """A run stopped before it finished (checkpoints/last.ckpt, no results.json) given as model=."""
    run = tmp_path / "stopped run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "last.ckpt").symlink_to(tiny_run / "checkpoints" / "last.ckpt")
    (run / ".hydra" / "2026-01-01_00-00-00-000000").mkdir(parents=True)
    (run / ".hydra" / "2026-01-01_00-00-00-000000" / "overrides.yaml").write_text("- task=rte\n- head.k=3\n")
    (tmp_path / "in.txt").write_text("fine\n")
    args = [f"model={run}", f"input_file={tmp_path / 'in.txt'}", f"output={tmp_path / 'o.csv'}"]
    code, err = run_in_process("predict", [*args, f"hydra.run.dir={tmp_path}/out"], capsys, monkeypatch)
    assert_refused(code, err, f"model={run} is a training run that has not finished (no results.json)")
    assert f"resume it with protolm train task=rte head.k=3 ckpt_path='{run}'" in err
    assert f"or use its last training state as it is: model={run / 'checkpoints' / 'last.ckpt'}" in err
    (run / "checkpoints" / "last.ckpt").unlink()  # stopped before its first checkpoint
    code, err = run_in_process("explain", [f"model={run}", "text=fine", f"hydra.run.dir={tmp_path}/out"], capsys,
                               monkeypatch)  # fmt: skip
    assert_refused(code, err, "is a training run that stopped before it saved checkpoints/last.ckpt")
    assert not (tmp_path / "o.csv").exists() and not (tmp_path / "out").exists()
