"""Helpers for tools/setup_env.sh (standard library only, runs inside the venv; only the probes
of mmcv-plan and mmcv-fits import torch and mmcv).

Sub-commands:
  cxx-std [TORCH_VERSION]     print the C++ standard (c++17 / c++20) torch's headers need;
                              without an argument, the installed torch's version is used
  patch-cxx SETUP_PY [STD]    rewrite every `-std=c++NN` in mmcv's setup.py to STD
                              (default: what the installed torch needs)
  check REPO_ROOT             fast (no heavy imports) check that the venv holds what
                              requirements/runtime.txt + tests.txt pin, mmcv's compiled ops
                              and an editable spark_mm pointing at REPO_ROOT; exit 1 if not
  mmcv-plan CACHE             ask torch whether it sees a CUDA GPU and print, as shell
                              assignments, how to get mmcv: its wheel cache folder, and on a
                              GPU the CUDA release, arch list and nvcc requirement to build with
  mmcv-fits VERSION [CUDA]    exit 0 if the installed mmcv is VERSION with compiled ops (and,
                              with CUDA = torch's CUDA release, ops built for it that run on
                              this GPU); else print why not and exit 1
  cuda-env LINK_DIR ARCHS CUDA
                              after the nvcc requirement is installed: find the toolkit in the
                              venv's site-packages, check that its nvcc is release CUDA, and print
                              the export lines for mmcv's CUDA build (LINK_DIR gets the
                              unversioned libcudart.so that the link step asks for)
"""
import glob
import importlib.metadata as metadata
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import sysconfig

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


# ---- mmcv with CUDA ops on a GPU machine -----------------------------------------------------
# The decisions are pure functions of what the probes report (probe_torch, probe_mmcv), so the
# tests feed them made-up GPUs and builds; only the probes import torch/mmcv.

# cuda-toolkit (a meta-package; torch 2.14.1's CUDA 13 wheels depend on it) pins nvcc, its
# headers (crt), nvvm, the runtime and CCCL (thrust/cub) to one CUDA release; the package index
# has it from CUDA 11.8 on.
NVCC_EXTRAS = 'cuda-toolkit[nvcc,cccl]'
OLDEST_INDEX_NVCC = (11, 8)


def cuda_release(version):
    """(major, minor) of a CUDA version string such as '13.0', '12.8.1' or '13.0.3.0'."""
    m = re.match(r'\s*(\d+)\.(\d+)', str(version or ''))
    if not m:
        raise ValueError(f'cannot parse CUDA version {version!r}')
    return int(m.group(1)), int(m.group(2))


def cuda_tag(cuda_version):
    """'cu130' for CUDA '13.0' (torch's own naming of its CUDA builds)."""
    major, minor = cuda_release(cuda_version)
    return f'cu{major}{minor}'


def _sm_number(arch):
    # 'sm_90' -> 90, 'sm_90a' -> 90, 'sm_100' -> 100; 'compute_90' and others -> None
    m = re.fullmatch(r'sm_(\d+)[a-z]?', arch)
    return int(m.group(1)) if m else None


def cuda_arch_list(capabilities, torch_arch_list):
    """TORCH_CUDA_ARCH_LIST for the visible GPUs only, e.g. '9.0' for one H100.

    capabilities: torch.cuda.get_device_capability(i) of every visible device;
    torch_arch_list: torch.cuda.get_arch_list() (what this torch has kernels for). A GPU newer
    than the newest of those is built for that newest one (the rule torch's cpp_extension
    applies: nvcc matching torch's CUDA may not know the newer GPU). One older than all of them
    cannot run torch's own kernels, so building for it is refused.
    """
    if not capabilities:
        raise ValueError('torch sees a GPU but reports no device capability')
    known = sorted({n for n in map(_sm_number, torch_arch_list or ()) if n is not None})
    archs = set()
    for major, minor in capabilities:
        cap = (int(major), int(minor))
        if known:
            oldest, newest = divmod(known[0], 10), divmod(known[-1], 10)
            if cap < oldest:
                raise ValueError(
                    f'the GPU (sm_{cap[0]}{cap[1]}) is older than any this torch has kernels for '
                    f'(sm_{known[0]}..sm_{known[-1]}): install a torch build that supports it')
            cap = min(cap, newest)
        archs.add(cap)
    return ';'.join(f'{major}.{minor}' for major, minor in sorted(archs))


def arch_tag(arch_list):
    """'sm90' for '9.0', 'sm80-sm90' for '8.0;9.0' (part of the wheel cache key)."""
    archs = [a for a in re.split(r'[;\s]+', arch_list) if a]
    if not archs or not all(re.fullmatch(r'\d+\.\d+', a) for a in archs):
        raise ValueError(f'bad CUDA arch list {arch_list!r}')
    return '-'.join('sm' + a.replace('.', '') for a in archs)


def wheel_cache_dir(cache, torch_version, cuda_version=None, arch_list=None):
    """Where mmcv wheels for this torch (and CUDA release and GPU archs) are cached.

    CPU ops: <cache>/wheels/torch-<version>/ (the layout of earlier set-ups, kept as it is).
    CUDA ops: <cache>/wheels/torch-<version>-cu<xy>-sm<NN>/, so a wheel built for one GPU
    architecture or CUDA release is never taken for another, nor a CPU one for a GPU.
    """
    if cuda_version is None:
        return os.path.join(cache, 'wheels', f'torch-{torch_version}')
    public = torch_version.split('+')[0]  # '2.14.1+cu130' says the CUDA release twice otherwise
    return os.path.join(cache, 'wheels', f'torch-{public}-{cuda_tag(cuda_version)}-'
                        f'{arch_tag(arch_list)}')


def nvcc_requirement(cuda_version, installed_toolkit=None):
    """The pip requirement that brings an nvcc (and its headers) of torch's CUDA release.

    installed_toolkit: the version of the cuda-toolkit distribution already in the venv (torch's
    CUDA 13 wheels depend on it): when it is the same release, the very same version is asked
    for, so nothing torch uses is up- or downgraded.
    """
    release = cuda_release(cuda_version)
    if release < OLDEST_INDEX_NVCC:
        raise ValueError(
            f'torch uses CUDA {release[0]}.{release[1]}, and the package index has no nvcc older '
            'than 11.8: install that CUDA toolkit yourself and set CUDA_HOME, or use a torch '
            'build for a newer CUDA')
    if installed_toolkit:
        try:
            same = cuda_release(installed_toolkit) == release
        except ValueError:
            same = False
        if same:
            return f'{NVCC_EXTRAS}=={installed_toolkit}'
    return f'{NVCC_EXTRAS}=={release[0]}.{release[1]}.*'


def probe_torch():
    """What the installed torch reports (imports torch: seconds)."""
    import torch
    gpu = bool(torch.cuda.is_available())
    return {
        'version': installed_torch_version(),
        'cuda': torch.version.cuda,
        'gpu': gpu,
        'capabilities': ([tuple(torch.cuda.get_device_capability(i))
                          for i in range(torch.cuda.device_count())] if gpu else []),
        'arch_list': list(torch.cuda.get_arch_list()) if gpu else [],
    }


def distribution_version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def mmcv_plan(probe, cache, installed_toolkit=None):
    """How to get mmcv on this machine, from probe_torch()'s report (a dict of strings).

    Without a (CUDA) GPU: CPU ops from <cache>/wheels/torch-<version>/ as before. With one:
    CUDA ops for the visible GPUs' archs, built with an nvcc of torch's CUDA release.
    """
    plan = {'MMCV_CUDA': ''}
    if probe['gpu'] and probe['cuda']:
        archs = cuda_arch_list(probe['capabilities'], probe['arch_list'])
        plan.update(
            MMCV_CUDA=f'{cuda_release(probe["cuda"])[0]}.{cuda_release(probe["cuda"])[1]}',
            MMCV_CUDA_ARCHS=archs,
            NVCC_REQUIREMENT=nvcc_requirement(probe['cuda'], installed_toolkit),
            # installed together with the nvcc requirement so that pip keeps torch's own pins
            TORCH_REQUIREMENT=f'torch=={probe["version"]}',
            WHEELS=wheel_cache_dir(cache, probe['version'], probe['cuda'], archs))
    else:
        plan['WHEELS'] = wheel_cache_dir(cache, probe['version'])
    return plan


def shell_assignments(values):
    return '\n'.join(f'{key}={shlex.quote(str(value))}' for key, value in values.items())


NMS_ON_GPU = 'nms on the GPU'


def probe_mmcv(run_on_gpu):
    """What the installed mmcv offers (imports torch and mmcv; with run_on_gpu, runs one nms on
    the GPU: the only sure test that its kernels exist for this architecture)."""
    info = {'version': None, 'import_error': None, 'ops': False, 'cuda': None,
            'gpu_error': None}
    try:
        import mmcv
    except Exception as error:
        if not (isinstance(error, ModuleNotFoundError) and error.name == 'mmcv'):
            info['import_error'] = _first_line(error)
        return info
    info['version'] = getattr(mmcv, '__version__', '?')
    try:
        from mmcv.ops import RoIAlign, get_compiling_cuda_version, nms  # noqa: F401
        info['cuda'] = get_compiling_cuda_version()
    except Exception:
        return info
    info['ops'] = True
    if run_on_gpu and info['cuda'] not in (None, '', 'not available'):
        try:
            import torch
            boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.]], device='cuda')
            nms(boxes, torch.tensor([0.9, 0.8], device='cuda'), 0.5)
            torch.cuda.synchronize()
        except Exception as error:
            info['gpu_error'] = _first_line(error)
    return info


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def mmcv_fit_problem(info, want_version, need_cuda=None):
    """Why the installed mmcv (probe_mmcv()'s report) does not fit, or None if it does.

    need_cuda: torch's CUDA release ('13.0') on a GPU machine, else None: then, as before, any
    mmcv of the wanted version whose ops import fits.
    """
    if info['version'] is None:
        if info.get('import_error'):
            return f'mmcv does not import ({info["import_error"]})'
        return 'mmcv is not installed'
    if info['version'] != want_version:
        return f'mmcv {info["version"]} is installed, {want_version} is required'
    if not info['ops']:
        return 'mmcv has no compiled ops (mmcv.ops does not import)'
    if not need_cuda:
        return None
    built = info['cuda']
    if built in (None, '', 'not available'):
        return "mmcv's ops were built without CUDA, and torch sees a GPU"
    try:
        same = cuda_release(built) == cuda_release(need_cuda)
    except ValueError:
        same = False
    if not same:
        return f"mmcv's ops were built with CUDA {built}, torch uses CUDA {need_cuda}"
    if info['gpu_error']:
        return f"mmcv's CUDA ops do not run on this GPU ({NMS_ON_GPU}: {info['gpu_error']})"
    return None


def site_package_dirs():
    dirs = [sysconfig.get_paths()['purelib'], sysconfig.get_paths()['platlib']]
    return [d for i, d in enumerate(dirs) if d and d not in dirs[:i]]


def find_cuda_toolkit(site_dirs):
    """(CUDA_HOME, include dirs, lib dirs) of the CUDA pieces pip put under <site>/nvidia/.

    CUDA 13 wheels share one tree (nvidia/cu13/{bin,include,lib,nvvm}); CUDA 12 ones have a
    folder each (nvidia/cuda_nvcc/bin/nvcc, nvidia/cuda_runtime/include, nvidia/cublas/...).
    CUDA_HOME is the folder whose bin/ holds nvcc; the other include/lib folders are returned
    so that the build sees the runtime and library headers wherever they are.
    """
    nvccs = sorted(p for d in site_dirs for p in glob.glob(os.path.join(d, 'nvidia', '*', 'bin',
                                                                        'nvcc')))
    if not nvccs:
        return None, [], []
    home = os.path.dirname(os.path.dirname(nvccs[0]))
    includes, libs = [], []
    for d in site_dirs:
        for pkg in sorted(glob.glob(os.path.join(d, 'nvidia', '*'))):
            if os.path.isdir(os.path.join(pkg, 'include')) and pkg != home:
                includes.append(os.path.join(pkg, 'include'))
            if os.path.isdir(os.path.join(pkg, 'lib')):
                libs.append(os.path.join(pkg, 'lib'))
    return home, includes, libs


def nvcc_release(version_text):
    """'13.0' from `nvcc --version` output (its 'release 13.0, V13.0.88' line)."""
    m = re.search(r'release (\d+\.\d+)', version_text)
    if not m:
        raise ValueError('cannot read the release from nvcc --version: '
                         + ' '.join(version_text.split())[:200])
    return m.group(1)


def link_unversioned_cudart(lib_dirs, link_dir):
    """pip's runtime has only libcudart.so.<major>, the link step asks for -lcudart: put a
    libcudart.so into link_dir (inside the venv) pointing at it. Returns the link, or None
    when some lib dir already has libcudart.so."""
    if any(os.path.exists(os.path.join(d, 'libcudart.so')) for d in lib_dirs):
        return None
    found = sorted(p for d in lib_dirs for p in glob.glob(os.path.join(d, 'libcudart.so.*'))
                   if re.fullmatch(r'libcudart\.so\.\d+', os.path.basename(p)))
    if not found:
        raise ValueError('no libcudart.so.<N> in ' + ', '.join(lib_dirs or ['(no lib dir)'])
                         + ': the CUDA runtime wheel is missing')
    os.makedirs(link_dir, exist_ok=True)
    link = os.path.join(link_dir, 'libcudart.so')
    if os.path.lexists(link):
        os.remove(link)
    os.symlink(found[-1], link)
    return link


def cuda_build_env(cuda_home, include_dirs, lib_dirs, arch_list, environ):
    """Environment for `pip wheel` of mmcv's source with CUDA ops for arch_list only."""
    def joined(dirs, old):
        return os.pathsep.join(list(dirs) + ([old] if old else []))

    return {
        'CUDA_HOME': cuda_home,
        'PATH': joined([os.path.join(cuda_home, 'bin')], environ.get('PATH', '')),
        'CPATH': joined(include_dirs, environ.get('CPATH', '')),
        'LIBRARY_PATH': joined(lib_dirs, environ.get('LIBRARY_PATH', '')),
        'TORCH_CUDA_ARCH_LIST': arch_list,
        'FORCE_CUDA': '1',
        'MMCV_WITH_OPS': '1',
    }


def prepare_cuda_env(link_dir, arch_list, want_cuda, site_dirs=None, environ=None):
    """Find the venv's nvcc, check its release and return the build environment."""
    home, includes, libs = find_cuda_toolkit(site_dirs or site_package_dirs())
    if home is None:
        raise ValueError('no nvcc under site-packages/nvidia/*/bin after installing '
                         f'{NVCC_EXTRAS}: the wheel layout changed')
    nvcc = os.path.join(home, 'bin', 'nvcc')
    try:
        out = subprocess.run([nvcc, '--version'], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise ValueError(f'{nvcc} --version failed: {error}') from None
    release = nvcc_release(out.stdout)
    if cuda_release(release) != cuda_release(want_cuda):
        raise ValueError(f'{nvcc} is CUDA {release}, torch uses CUDA {want_cuda}')
    link = link_unversioned_cudart(libs, link_dir)
    lib_dirs = ([link_dir] if link else []) + libs
    return cuda_build_env(home, includes, lib_dirs, arch_list,
                          os.environ if environ is None else environ)


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
    try:
        if cmd == 'mmcv-plan' and len(args) == 1:
            plan = mmcv_plan(probe_torch(), os.path.abspath(args[0]),
                             distribution_version('cuda-toolkit'))
            print(shell_assignments(plan))
            return 0
        if cmd == 'mmcv-fits' and len(args) in (1, 2):
            need_cuda = args[1] if len(args) == 2 and args[1] else None
            problem = mmcv_fit_problem(probe_mmcv(run_on_gpu=bool(need_cuda)), args[0],
                                       need_cuda)
            if problem:
                print(problem)
            return 1 if problem else 0
        if cmd == 'cuda-env' and len(args) == 3:
            env = prepare_cuda_env(os.path.abspath(args[0]), args[1], args[2])
            print('\n'.join(f'export {k}={shlex.quote(v)}' for k, v in env.items()))
            return 0
    except ValueError as error:
        print(f'setup_env: ERROR: {error}', file=sys.stderr)
        return 1
    print(__doc__)
    return 2


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
