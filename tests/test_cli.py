import subprocess
import sys

from qmedgen import __version__
from qmedgen.cli import main


def test_version(capsys):
    try:
        main(["--version"])
    except SystemExit as exc:
        assert exc.code == 0
    assert __version__ in capsys.readouterr().out


def test_help_lists_usage(capsys):
    assert main([]) == 0
    assert "usage: qmedgen" in capsys.readouterr().out


def test_module_entry_point():
    out = subprocess.run([sys.executable, "-m", "qmedgen", "--help"], capture_output=True, text=True, check=True)
    assert "qmedgen" in out.stdout
