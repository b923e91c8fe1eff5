"""The bad-input sweep (issue 12): hundreds of generated malformed inputs — datasets of every
format, genotype and config JSON, checkpoints, CLI flags — each give one error line naming the
file, field or flag, a non-zero exit and no traceback, and leave no run directory that cannot
be resumed (tests/bad_inputs.py generates and judges them; scripts/bad_input_sweep.py prints
the counts). A few go through real subprocesses, DataLoader workers included."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from bad_inputs import TRAIN_RUN, Case, make_cases, run_case
from fixtures_data import write_voc

pytestmark = pytest.mark.usefixtures("one_thread")


def test_every_generated_bad_input_gives_one_clear_error_line(tmp_path):
    cases = make_cases(tmp_path)
    assert len(cases) >= 200
    assert {c.group for c in cases} == {"dataset", "genotype", "config", "checkpoint", "flags"}
    formats = {c.name.split("/")[0] for c in cases if c.group == "dataset"}
    assert formats == {"cityscapes", "voc", "ade20k", "folder"}
    failed = [o for o in map(run_case, cases) if not o.clear]
    report = "\n".join(f"{o.case.name}: exit {o.code}: {o.problems}: {o.err[:300]}" for o in failed)
    assert not failed, f"{len(failed)} of {len(cases)} cases:\n{report}"


def test_a_judge_that_can_fail(tmp_path):
    """The judge itself: a good command, a traceback and an error that names the wrong thing
    are all caught."""
    run = tmp_path / "run"
    ok = Case("ok", "flags", "train", [*TRAIN_RUN, "--num-images", "4", "--image-size", "16",
              "--out", str(run)], ("x",), run)  # fmt: skip
    outcome = run_case(ok)
    assert outcome.code == 0 and not outcome.clear and "exit status 0" in outcome.problems
    wrong = Case("wrong", "flags", "train", ["--epochs", "0"], ("--batch-size",))
    assert not run_case(wrong).clear


def test_real_processes_print_no_traceback(tmp_path):
    voc = tmp_path / "voc"
    splits = write_voc(voc)
    image = voc / "JPEGImages" / f"{next(iter(splits['train']))}.jpg"
    image.write_bytes(image.read_bytes()[:100])  # truncated: found by a DataLoader worker
    genotype = tmp_path / "g.json"
    genotype.write_text('{"cell": [["sep_conv_3x3", 9]], "path": [0]}')
    ckpt = tmp_path / "ckpt.pt"
    ckpt.write_bytes(b"PK\x03\x04 truncated zip")
    small = ["--num-images", "4", "--image-size", "16", "--no-progress"]
    commands = {
        "worker-decode": (
            [
                "train",
                *TRAIN_RUN,
                "--workers",
                "1",
                "--batch-size",
                "2",
                "--data",
                "voc",
                "--data-root",
                str(voc),
                "--out",
                str(tmp_path / "a"),
            ],
            str(image),
        ),  # fmt: skip
        "genotype": (
            ["train", *small, "--genotype", str(genotype), "--out", str(tmp_path / "b")],
            str(genotype),
        ),  # fmt: skip
        "flag": (["search", "--batch-size", "lots"], "--batch-size"),
        "resume": (["search", "--resume", str(tmp_path / "none")], str(tmp_path / "none")),
        "checkpoint": (["evaluate", "--checkpoint", str(ckpt), "--device", "cpu"], str(ckpt)),
    }
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"fastadl.{argv[0]}", *argv[1:]],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (argv, _) in commands.items()
    }
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        # a tiny run may first warn that its schedule is too short to learn (runtime/cli.py)
        lines = [
            line for line in err.splitlines() if line.strip() and not line.startswith("warning: ")
        ]
        assert proc.returncode == 2, (name, err[-2000:])
        assert "Traceback" not in err, (name, err[-2000:])
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, err[-2000:])
        assert commands[name][1] in lines[0], (name, lines[0])
