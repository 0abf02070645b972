"""main.py refuses bad command lines with argparse's message or one clear line, exit code 2."""
import pytest

import main

BAD = [
    ["--train", "--epochs", "-1"],
    ["--train", "--epochs", "0"],
    ["--train", "--batch-size", "0"],
    ["--train", "--lr", "abc"],
    ["--train", "--lr", "-0.1"],
    ["--train", "--preset", "huge"],
    ["--train", "--device", "tpu"],
    ["--train", "--limit", "-5"],
    ["--train", "--eval"],
    [],
]


@pytest.mark.parametrize("argv", BAD, ids=lambda a: " ".join(a) or "no-mode")
def test_bad_flags_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main.main(argv)
    assert e.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_missing_checkpoint_is_one_line(tmp_path, capsys):
    assert main.main(["--eval", "--checkpoint", str(tmp_path / "nope.pt")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: checkpoint not found: {tmp_path / 'nope.pt'}\n"


@pytest.mark.parametrize("script", ["main.py", "camera_inferencer.py"])
def test_help_imports_nothing_heavy(script):
    """--help and flag checks answer before torch and torchvision are imported."""
    import subprocess
    import sys
    from pathlib import Path

    code = (f"import runpy, sys; sys.argv = ['{script}', '--help']\n"
            f"try: runpy.run_path('{script}', run_name='__main__')\n"
            "except SystemExit: pass\n"
            "print(sorted(m for m in ('torch', 'torchvision') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent,
                         capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
