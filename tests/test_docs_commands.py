"""Every shell command in README.md and docs/*.md is checked.

Each ```bash block carries a marker on the line above it:

* ``<!-- docs-test: run -->``: cheap commands, run as written from the
  repository root; each must exit 0;
* ``<!-- docs-test: check (why) -->``: commands that need data, GPUs or time
  (the reason is for the reader); they are not run, but every repository
  path they name exists, every config they name builds with the
  ``--cfg-options`` they pass, and every ``--flag`` they give a tool is one
  that tool (or the tool it launches) defines.
"""
import argparse
import glob
import os
import re
import shlex
import subprocess
from functools import lru_cache

import pytest
from mmengine.config import Config, DictAction

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ['README.md'] + sorted(
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'docs', '*.md')))
MARKER = re.compile(r'^<!-- docs-test: (run|check)\b.*-->$')
REPO_PATH = re.compile(r'^(configs|tools|docs|tests)/[\w./{},-]+$')
# the launchers pass their extra arguments on to these tools
LAUNCHED = {'tools/dist_train.sh': 'tools/train.py',
            'tools/slurm_train.sh': 'tools/train.py',
            'tools/quickstart.sh': 'tools/train.py',
            'tools/dist_test.sh': 'tools/test.py',
            'tools/slurm_test.sh': 'tools/test.py'}
SHARED_FLAGS = sorted(  # flags the tools share
    os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, 'tools', 'common', '*.py')))


def bash_blocks(page):
    """(first line number, marker or None, lines) of each ```bash block."""
    with open(os.path.join(ROOT, page)) as f:
        lines = f.read().split('\n')
    blocks, index = [], 0
    while index < len(lines):
        if lines[index].strip() == '```bash':
            above = lines[index - 1].strip() if index else ''
            match = MARKER.match(above)
            end = lines.index('```', index + 1)
            blocks.append((index + 1, match.group(1) if match else None,
                           lines[index + 1:end]))
            index = end
        index += 1
    return blocks


def commands(block_lines):
    """The commands of a block: comment lines dropped, continuations joined,
    ``a && b`` split."""
    joined, current = [], ''
    for line in block_lines:
        if line.strip().startswith('#'):
            continue
        current += line.strip()
        if current.endswith('\\'):
            current = current[:-1].rstrip() + ' '
            continue
        if current.strip():
            joined.append(current.strip())
        current = ''
    return [part.strip() for command in joined for part in command.split('&&')]


def page_commands(page, kind=None):
    return [(line, command) for line, marker, block in bash_blocks(page)
            if kind is None or marker == kind for command in commands(block)]


def tokens(command):
    return shlex.split(command, comments=True)


def expand_braces(path):
    """configs/x_{1x,2x}.py -> both paths (the docs' shorthand)."""
    match = re.search(r'\{([^{}]*)\}', path)
    if not match:
        return [path]
    return [expanded for choice in match.group(1).split(',')
            for expanded in expand_braces(path[:match.start()] + choice
                                          + path[match.end():])]


def tool_of(words):
    """The script a command runs, and the one whose flags it takes."""
    for word in words:
        if word.startswith('tools/') and word.endswith(('.py', '.sh')):
            return word, LAUNCHED.get(word, word)
    return None, None


@lru_cache(maxsize=None)
def source_of(path):
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


@lru_cache(maxsize=None)
def build(config, options):
    cfg = Config.fromfile(os.path.join(ROOT, config))
    if options:
        parser = argparse.ArgumentParser()
        parser.add_argument('--cfg-options', nargs='+', action=DictAction)
        cfg.merge_from_dict(parser.parse_args(['--cfg-options', *options]).cfg_options)
    return cfg


def cfg_options(words):
    """The key=value words after --cfg-options."""
    if '--cfg-options' not in words:
        return ()
    rest = words[words.index('--cfg-options') + 1:]
    return tuple(word for word in rest[:next(
        (i for i, w in enumerate(rest) if w.startswith('--')), len(rest))]
        if '=' in word)


@pytest.mark.parametrize('page', PAGES)
def test_every_bash_block_is_marked(page):
    unmarked = [line for line, marker, _ in bash_blocks(page) if marker is None]
    assert not unmarked, (
        f'{page}: the ```bash blocks at lines {unmarked} have no '
        '<!-- docs-test: run --> or <!-- docs-test: check (why) --> line above')


@pytest.mark.parametrize('page', PAGES)
def test_named_files_exist_and_flags_are_defined(page):
    for line, command in page_commands(page):
        words = tokens(command)
        for word in words:
            for path in expand_braces(word):
                if REPO_PATH.match(path) and '*' not in path:
                    assert os.path.exists(os.path.join(ROOT, path)), \
                        f'{page}:{line}: {path} does not exist ({command})'
        script, flags_from = tool_of(words)
        if flags_from is None or not flags_from.endswith('.py'):
            continue  # run_tests.sh passes pytest's flags; demo scripts take none
        defined = source_of(flags_from) + ''.join(map(source_of, SHARED_FLAGS))
        for word in words[words.index(script) + 1:]:
            flag = word.split('=')[0]
            if re.match(r'^--[a-z][\w-]*$', flag) and flag != '--help':
                assert f"'{flag}'" in defined, \
                    f'{page}:{line}: {flags_from} defines no {flag} ({command})'


@pytest.mark.parametrize('page', PAGES)
def test_named_configs_build(page):
    for line, command in page_commands(page):
        words = tokens(command)
        for word in words:
            for path in expand_braces(word):
                if path.startswith('configs/') and path.endswith('.py'):
                    try:
                        build(path, cfg_options(words))
                    except Exception as error:  # the test's message, not a traceback
                        pytest.fail(f'{page}:{line}: {path} does not build with '
                                    f'this command\'s options: {error!r}')


RUN_COMMANDS = [(page, line, command) for page in PAGES
                for line, command in page_commands(page, 'run')]


@pytest.mark.slow
@pytest.mark.parametrize('page, line, command', RUN_COMMANDS,
                         ids=[f'{p}:{l}' for p, l, _ in RUN_COMMANDS])
def test_run_commands_succeed(page, line, command):
    # `python` is the interpreter running the tests (conftest puts its
    # folder first on PATH)
    result = subprocess.run(command, shell=True, cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, \
        f'{page}:{line}: {command}\n{result.stdout[-2000:]}{result.stderr[-2000:]}'


def test_the_marker_convention_finds_commands():
    """The parser sees the README's quick start and the docs' run blocks."""
    assert [c for _, c in page_commands('README.md', 'check')][:2] == [
        'bash tools/quickstart.sh', 'bash tools/run_tests.sh']
    assert len(RUN_COMMANDS) >= 3
    assert commands(['python a.py \\', '    --x 1  # note', '# only a comment',
                     'b && c']) == ['python a.py --x 1  # note', 'b', 'c']


def _anchor(heading):
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r'[^\w\- ]', '', heading.strip().lower())
    return text.replace(' ', '-')


@pytest.mark.parametrize('page', PAGES)
def test_relative_links_resolve(page):
    with open(os.path.join(ROOT, page)) as f:
        text = f.read()
    for target in re.findall(r'\]\(([^)\s]+)\)', text):
        if '://' in target:
            continue
        path, _, anchor = target.partition('#')
        path = os.path.normpath(os.path.join(ROOT, os.path.dirname(page), path)) \
            if path else os.path.join(ROOT, page)
        assert os.path.exists(path), f'{page}: link {target} has no file'
        if anchor:
            with open(path) as f:
                anchors = {_anchor(line.lstrip('#')) for line in f
                           if line.startswith('#')}
            assert anchor in anchors, f'{page}: link {target}: no such heading'
