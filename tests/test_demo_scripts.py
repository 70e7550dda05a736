"""The demo scripts say why they stopped (``set -e`` alone exits silently)."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_transfer_names_the_step_that_failed(tmp_path):
    # `false` as the interpreter: the first step fails at once
    env = dict(os.environ, PYTHON='false', WORK=str(tmp_path / 'work'))
    result = subprocess.run(['bash', os.path.join(ROOT, 'tools', 'demo_transfer.sh')],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        'error: demo_transfer.sh stopped at step 1/4 (SparK pretraining) '
        '(exit status 1); its output is above')
