"""The README's quick start and its inline snippets run as written."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quickstart_learns_circles():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "quickstart.py")],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    spread = re.search(r"within a set: samples ([\d.]+), Gaussian noise ([\d.]+)", proc.stdout)
    radius = re.search(r"mean radius: samples ([\d.]+)", proc.stdout)
    assert spread and radius, proc.stdout
    # learned sets lie on circles: far tighter than noise, radius near the data's 1.5
    assert float(spread.group(1)) < 0.4 * float(spread.group(2))
    assert 1.2 < float(radius.group(1)) < 1.8


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # snippets that write files write them here
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, "README.md", "exec"), {})
