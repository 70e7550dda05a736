"""Helpers for tools/setup_env.sh (standard library only, runs inside the venv).

Sub-commands:
  cxx-std [TORCH_VERSION]     print the C++ standard (c++17 / c++20) torch's headers need;
                              without an argument, the installed torch's version is used
  patch-cxx SETUP_PY [STD]    rewrite every `-std=c++NN` in mmcv's setup.py to STD
                              (default: what the installed torch needs)
  check REPO_ROOT             fast (no heavy imports) check that the venv holds what
                              requirements/runtime.txt + tests.txt pin, mmcv's compiled ops
                              and an editable spark_mm pointing at REPO_ROOT; exit 1 if not
"""
import glob
import importlib.metadata as metadata
import importlib.util
import os
import re
import sys

# torch >= 2.10 headers refuse to compile below C++20; older releases need C++17.
CXX20_SINCE = (2, 10)
STD_FLAG = re.compile(r'-std=c\+\+\d\d')
# modules that must be importable (checked with find_spec, i.e. without importing)
MODULES = ('torch', 'torchvision', 'mmcv', 'mmengine', 'mmpretrain', 'mmdet', 'timm',
           'pycocotools', 'pytest', 'spark_mm')


def torch_release(version):
    """(major, minor) of a torch version string such as '2.14.1+cpu' or '2.10.0a0+git1'."""
    m = re.match(r'\s*v?(\d+)\.(\d+)', version)
    if not m:
        raise ValueError(f'cannot parse torch version {version!r}')
    return int(m.group(1)), int(m.group(2))


def cxx_std_for_torch(version):
    """The -std value a C++ extension built against torch `version` needs."""
    return 'c++20' if torch_release(version) >= CXX20_SINCE else 'c++17'


def installed_torch_version():
    # metadata only: importing torch costs seconds
    return metadata.version('torch')


def patch_cxx_std(text, std):
    """Replace every -std=c++NN flag in `text` by -std=`std`; returns (new_text, count)."""
    return STD_FLAG.subn('-std=' + std, text)


def patch_setup_py(path, std):
    with open(path, encoding='utf-8') as f:
        text = f.read()
    new, n = patch_cxx_std(text, std)
    if n == 0:
        raise SystemExit(f'setup_helpers: no -std=c++NN flag found in {path}; '
                         'the mmcv source layout changed, cannot patch it')
    with open(path, 'w', encoding='utf-8') as f:
        f.write(new)
    return n


def parse_requirement(line):
    """(distribution name, exact pin or None) of a requirements line, None for no requirement."""
    line = re.sub(r'\s+#.*$', '', line).strip()
    if not line or line.startswith(('#', '-')):
        return None
    m = re.match(r'([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$', line)
    if not m:
        return None
    name, spec = m.group(1), m.group(3).split(';')[0].strip()
    pin = None
    pm = re.fullmatch(r'==\s*([^\s,*]+)', spec)
    if pm:
        pin = pm.group(1)
    return name, pin


def read_requirements(root, names=('runtime', 'tests')):
    reqs = []
    for name in names:
        with open(os.path.join(root, 'requirements', name + '.txt'), encoding='utf-8') as f:
            for line in f:
                req = parse_requirement(line)
                if req:
                    reqs.append(req)
    return reqs


def check_env(root):
    """List of problems (empty when the environment looks complete). No heavy imports."""
    problems = []
    for name, pin in read_requirements(root):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f'{name} is not installed')
            continue
        # a local label (+cpu, +cu130) satisfies '==' in pip as well
        if pin and version.split('+')[0] != pin:
            problems.append(f'{name} {version} installed, {pin} required')
    for mod in MODULES:
        try:
            spec = importlib.util.find_spec(mod)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            problems.append(f'module {mod} not found')
            continue
        if mod == 'mmcv':
            dirs = list(spec.submodule_search_locations or [])
            if not any(glob.glob(os.path.join(d, '_ext*')) for d in dirs):
                problems.append('mmcv has no compiled ops (mmcv/_ext*.so missing)')
        if mod == 'spark_mm':
            where = os.path.realpath(spec.origin or '')
            want = os.path.realpath(os.path.join(root, 'spark_mm'))
            if not where.startswith(want + os.sep):
                problems.append(f'spark_mm is imported from {where}, not from {want}')
    return problems


def main(argv):
    if not argv:
        print(__doc__)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == 'cxx-std':
        print(cxx_std_for_torch(args[0] if args else installed_torch_version()))
        return 0
    if cmd == 'patch-cxx':
        path = args[0]
        std = args[1] if len(args) > 1 else cxx_std_for_torch(installed_torch_version())
        n = patch_setup_py(path, std)
        print(f'setup_helpers: {path}: {n} flag(s) set to -std={std}')
        return 0
    if cmd == 'check':
        problems = check_env(os.path.abspath(args[0] if args else '.'))
        for p in problems:
            print('setup_env: ' + p)
        return 1 if problems else 0
    print(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
