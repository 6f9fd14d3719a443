"""The CLI in-process: every bad input is one `error:` line and exit 2."""

import json
import os

import pytest

from alignlab.cli import main


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_error_line(err):
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    return lines[0]


def test_models_lists_registry_and_embedded_default_installed(capsys):
    code, out, _ = _run(capsys, "models")
    assert code == 0
    line = next(line for line in out.splitlines() if "smollm2-135m" in line)
    assert "yes" in line and "default" in line
    for name in ("tiny-llama", "tiny-gptneox", "tiny-gpt2"):
        assert name in out


def test_help_lists_commands(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for verb in ("models", "inspect", "demo"):
        assert verb in out


def test_inspect_writes_run_folder(capsys, tmp_path):
    out_dir = tmp_path / "run"
    code, out, _ = _run(capsys, "inspect", "--model", "tiny-gptneox", "--prompt", "hello there",
                        "--prompt", "second prompt", "--sites", "resid.*", "--out", str(out_dir))
    assert code == 0
    assert "resid.4" in out and "logit lens" in out
    metrics = json.loads((out_dir / "metrics.json").read_text())
    prompts = metrics["inspect"]["prompts"]
    assert [p["prompt"] for p in prompts] == ["hello there", "second prompt"]
    assert prompts[0]["sites"] == [f"resid.{i}" for i in range(5)]
    assert len(prompts[0]["norm"]) == 5 and len(prompts[0]["top_tokens"][0]) == 5
    # the last residual through the lens is the model's own prediction
    assert prompts[0]["top_tokens"][-1] == prompts[0]["model_top_tokens"]
    config = json.loads((out_dir / "config.json").read_text())
    assert config["command"] == "inspect" and config["config"]["model"] == "tiny-gptneox"


@pytest.mark.parametrize(
    "argv, fragment",
    [
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--model", "tiny-llama", "--sites", "resid.9"], "layer 9 is out of range for 'resid'"),
        (["--model", "tiny-llama", "--sites", "bogus.1"], "unknown site 'bogus.1'"),
        (["--model", "tiny-llama", "--sites", "mlp.4"], "mlp layers are 0..3"),
        (["--model", "tiny-llama", "--top-k", "0"], "--top-k must be at least 1"),
        (["--model", "tiny-llama", "--dtype", "int3"], "invalid choice: 'int3'"),
    ],
)
def test_inspect_bad_inputs(capsys, argv, fragment):
    code, _, err = _run(capsys, "inspect", "--prompt", "hi", *argv)
    assert code == 2
    assert fragment in _one_error_line(err)


def test_inspect_malformed_gguf(capsys, tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"\x00" * 64)
    code, _, err = _run(capsys, "inspect", "--prompt", "hi", "--model", str(bad))
    assert code == 2 and "not a GGUF file" in _one_error_line(err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the file case")
def test_inspect_read_only_out(capsys, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    code, _, err = _run(capsys, "inspect", "--prompt", "hi", "--model", "tiny-llama", "--out", str(locked / "run"))
    assert code == 2 and "cannot write" in _one_error_line(err)


def test_inspect_out_that_cannot_be_a_folder(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for out in (blocker, blocker / "run", "/proc/alignlab-run"):
        code, _, err = _run(capsys, "inspect", "--prompt", "hi", "--model", "tiny-llama", "--out", str(out))
        assert code == 2
        line = _one_error_line(err)
        assert "output" in line or "cannot write" in line
    assert blocker.read_text() == "x"


def test_unknown_command_and_missing_args(capsys):
    code, _, err = _run(capsys, "frobnicate")
    assert code == 2 and "invalid choice" in _one_error_line(err)
    code, _, err = _run(capsys, "inspect", "--model", "tiny-llama", "--top-k", "x")
    assert code == 2 and "invalid int value" in _one_error_line(err)


def test_missing_prompt(capsys):
    code, _, err = _run(capsys, "inspect", "--model", "tiny-llama")
    assert code == 2 and "--prompt" in _one_error_line(err)


def test_debug_shows_traceback():
    from alignlab.errors import ModelError

    with pytest.raises(ModelError):
        main(["--debug", "inspect", "--prompt", "hi", "--model", "no-such-model"])
