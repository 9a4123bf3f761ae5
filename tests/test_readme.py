"""The documentation's code runs as written."""

import re

import pytest

from tests.support import REPO, run_cli


def readme_block(heading: str, page: str = "docs/using-a-model.md") -> str:
    """The first ```python block under ``heading`` in a documentation page."""
    text = (REPO / page).read_text()
    section = text[text.index(heading) :]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.no_data
def test_using_the_head_in_your_own_code_runs_offline(tmp_path):
    script = tmp_path / "snippet.py"
    script.write_text(readme_block("## Using the head in your own code"))
    result = run_cli(str(script), env={"HF_HUB_OFFLINE": "1"}, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "{'logits': (2, 2), 'similarities': (2, 20), 'attention': (2, 7), 'pooled': (2, 384)}" in result.stdout
