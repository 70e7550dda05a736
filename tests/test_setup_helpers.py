"""Cheap tests of tools/setup_helpers.py (the pieces of tools/setup_env.sh worth testing)."""
import importlib.util
import os
import os.path as osp
import subprocess

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def _load():
    spec = importlib.util.spec_from_file_location(
        'spark_mm_setup_helpers', osp.join(ROOT, 'tools', 'setup_helpers.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


helpers = _load()


@pytest.mark.parametrize('version,std', [
    ('2.14.1', 'c++20'),
    ('2.14.1+cpu', 'c++20'),
    ('2.10.0', 'c++20'),
    ('2.10.0a0+git1234abc', 'c++20'),
    ('3.0.0', 'c++20'),
    ('2.9.1', 'c++17'),
    ('2.9.1+cu128', 'c++17'),
    ('2.1.0', 'c++17'),
    ('1.13.1', 'c++17'),
])
def test_cxx_std_for_torch(version, std):
    assert helpers.cxx_std_for_torch(version) == std


def test_cxx_std_rejects_garbage():
    with pytest.raises(ValueError):
        helpers.cxx_std_for_torch('nightly')


def test_patch_cxx_std_rewrites_every_flag():
    # the shape of mmcv 2.1.0's setup.py: the flag appears in several branches
    text = ("extra_compile_args = {'nvcc': [cuda_args, '-std=c++17'],\n"
            "                      'cxx': ['-std=c++17']}\n"
            "extra_compile_args['cxx'] += ['-std=c++14']\n")
    new, n = helpers.patch_cxx_std(text, 'c++20')
    assert n == 3
    assert '-std=c++17' not in new and '-std=c++14' not in new
    assert new.count('-std=c++20') == 3


def test_patch_setup_py_fails_loudly_without_flag(tmp_path):
    path = tmp_path / 'setup.py'
    path.write_text('print("no flag here")\n')
    with pytest.raises(SystemExit):
        helpers.patch_setup_py(str(path), 'c++20')


def test_patch_setup_py_in_place(tmp_path):
    path = tmp_path / 'setup.py'
    path.write_text("args = ['-std=c++17']\n")
    assert helpers.patch_setup_py(str(path), 'c++20') == 1
    assert path.read_text() == "args = ['-std=c++20']\n"


@pytest.mark.parametrize('line,expected', [
    ('torch==2.14.1', ('torch', '2.14.1')),
    ('mmcv == 2.1.0  # with ops', ('mmcv', '2.1.0')),
    ('numpy>=1.24,<3', ('numpy', None)),
    ('opencv-python>=4.8', ('opencv-python', None)),
    ('foo[bar]==1.0; python_version >= "3.8"', ('foo', '1.0')),
    ('# comment', None),
    ('', None),
    ('-r other.txt', None),
])
def test_parse_requirement(line, expected):
    assert helpers.parse_requirement(line) == expected


def test_requirements_pin_the_tested_stack():
    pins = dict(helpers.read_requirements(ROOT, names=('runtime', )))
    assert pins['torch'] == '2.14.1'
    assert pins['torchvision'] == '0.29.1'
    assert pins['mmcv'] == '2.1.0'
    assert pins['mmengine'] == '0.10.7'
    assert pins['mmpretrain'] == '1.2.0'
    assert pins['mmdet'] == '3.3.0'


def test_environment_check_passes_in_the_test_venv():
    # the suite runs from tools/run_tests.sh, i.e. inside a venv that setup_env.sh completed
    assert helpers.check_env(ROOT) == []


# ---- GPU branch: which mmcv to get, built how (probes replaced by made-up reports) ------------

TORCH_ARCHS = ['sm_75', 'sm_80', 'sm_86', 'sm_90', 'sm_100', 'sm_120']  # torch 2.14.1+cu130


def _gpu_probe(capabilities=((9, 0), ), cuda='13.0', version='2.14.1'):
    return {'version': version, 'cuda': cuda, 'gpu': True,
            'capabilities': list(capabilities), 'arch_list': TORCH_ARCHS}


@pytest.mark.parametrize('cuda,tag', [('13.0', 'cu130'), ('12.8', 'cu128'), ('11.8', 'cu118'),
                                      ('12.4.1', 'cu124')])
def test_cuda_tag(cuda, tag):
    assert helpers.cuda_tag(cuda) == tag


@pytest.mark.parametrize('bad', [None, '', 'cpu', 'thirteen'])
def test_cuda_release_rejects_garbage(bad):
    with pytest.raises(ValueError):
        helpers.cuda_release(bad)


@pytest.mark.parametrize('caps,archs', [
    ([(9, 0)], '9.0'),                      # H100
    ([(9, 0)] * 8, '9.0'),                  # 8 of them: one arch
    ([(8, 0), (9, 0), (8, 0)], '8.0;9.0'),  # mixed cards: each visible arch once, sorted
    ([(8, 9)], '8.9'),                      # L40: not in torch's list, but inside its range
    ([(10, 0)], '10.0'),
    ([(12, 1)], '12.0'),                    # newer than torch's newest: built for that one
])
def test_cuda_arch_list(caps, archs):
    assert helpers.cuda_arch_list(caps, TORCH_ARCHS) == archs


def test_cuda_arch_list_refuses_a_gpu_torch_cannot_run_on():
    with pytest.raises(ValueError, match=r'sm_70\).*\(sm_75\.\.sm_120\)'):
        helpers.cuda_arch_list([(7, 0)], TORCH_ARCHS)
    with pytest.raises(ValueError):
        helpers.cuda_arch_list([], TORCH_ARCHS)


def test_cuda_arch_list_reads_arch_suffixes_and_skips_ptx_entries():
    assert helpers.cuda_arch_list([(9, 0)], ['sm_80', 'sm_90a', 'compute_90']) == '9.0'


@pytest.mark.parametrize('archs,tag', [('9.0', 'sm90'), ('8.0;9.0', 'sm80-sm90'),
                                       ('10.0', 'sm100'), ('8.0 8.6', 'sm80-sm86')])
def test_arch_tag(archs, tag):
    assert helpers.arch_tag(archs) == tag


@pytest.mark.parametrize('bad', ['', '9', '9.0+PTX', 'sm_90'])
def test_arch_tag_rejects_garbage(bad):
    with pytest.raises(ValueError):
        helpers.arch_tag(bad)


def test_wheel_cache_dir_keeps_the_cpu_layout():
    assert helpers.wheel_cache_dir('/c', '2.14.1') == '/c/wheels/torch-2.14.1'
    assert helpers.wheel_cache_dir('/c', '2.14.1+cpu') == '/c/wheels/torch-2.14.1+cpu'


def test_wheel_cache_dir_per_torch_cuda_and_arch():
    gpu = helpers.wheel_cache_dir('/c', '2.14.1', '13.0', '9.0')
    assert gpu == '/c/wheels/torch-2.14.1-cu130-sm90'
    # torch's own CUDA label is not repeated
    assert helpers.wheel_cache_dir('/c', '2.14.1+cu128', '12.8', '9.0') == \
        '/c/wheels/torch-2.14.1-cu128-sm90'
    others = {helpers.wheel_cache_dir('/c', '2.14.1'),
              helpers.wheel_cache_dir('/c', '2.14.1', '13.0', '8.0'),
              helpers.wheel_cache_dir('/c', '2.14.1', '12.8', '9.0'),
              helpers.wheel_cache_dir('/c', '2.13.0', '13.0', '9.0')}
    assert gpu not in others and len(others) == 4


@pytest.mark.parametrize('cuda,toolkit,req', [
    # torch's CUDA 13 wheels depend on cuda-toolkit: ask for exactly that version
    ('13.0', '13.0.3.0', 'cuda-toolkit[nvcc,cccl]==13.0.3.0'),
    ('13.0', None, 'cuda-toolkit[nvcc,cccl]==13.0.*'),
    ('12.8', None, 'cuda-toolkit[nvcc,cccl]==12.8.*'),
    # a toolkit of another release in the venv is not what torch was built with
    ('12.8', '13.0.3', 'cuda-toolkit[nvcc,cccl]==12.8.*'),
    ('11.8', 'garbage', 'cuda-toolkit[nvcc,cccl]==11.8.*'),
])
def test_nvcc_requirement(cuda, toolkit, req):
    assert helpers.nvcc_requirement(cuda, toolkit) == req


def test_nvcc_requirement_refuses_a_cuda_the_index_has_no_nvcc_for():
    with pytest.raises(ValueError, match='11.7'):
        helpers.nvcc_requirement('11.7')


def test_mmcv_plan_without_gpu_is_the_cpu_path():
    probe = {'version': '2.14.1', 'cuda': '13.0', 'gpu': False, 'capabilities': [],
             'arch_list': []}
    assert helpers.mmcv_plan(probe, '/c', '13.0.3.0') == {
        'MMCV_CUDA': '', 'WHEELS': '/c/wheels/torch-2.14.1'}
    # a GPU that is not a CUDA one (ROCm torch: no torch.version.cuda) keeps CPU ops too
    rocm = dict(probe, gpu=True, cuda=None, capabilities=[(9, 4)])
    assert helpers.mmcv_plan(rocm, '/c')['MMCV_CUDA'] == ''


def test_mmcv_plan_on_a_gpu():
    plan = helpers.mmcv_plan(_gpu_probe(), '/c', '13.0.3.0')
    assert plan == {
        'MMCV_CUDA': '13.0',
        'MMCV_CUDA_ARCHS': '9.0',
        'NVCC_REQUIREMENT': 'cuda-toolkit[nvcc,cccl]==13.0.3.0',
        'TORCH_REQUIREMENT': 'torch==2.14.1',
        'WHEELS': '/c/wheels/torch-2.14.1-cu130-sm90',
    }
    a100 = helpers.mmcv_plan(_gpu_probe([(8, 0)], cuda='12.8', version='2.14.1+cu128'), '/c')
    assert a100['MMCV_CUDA_ARCHS'] == '8.0'
    assert a100['NVCC_REQUIREMENT'] == 'cuda-toolkit[nvcc,cccl]==12.8.*'
    assert a100['TORCH_REQUIREMENT'] == 'torch==2.14.1+cu128'
    assert a100['WHEELS'] == '/c/wheels/torch-2.14.1-cu128-sm80'


def test_mmcv_plan_reaches_the_shell_intact(tmp_path):
    # setup_env.sh evals these lines: a cache path with spaces and quotes must survive
    cache = str(tmp_path / "my cache's dir")
    plan = helpers.mmcv_plan(_gpu_probe([(8, 0), (9, 0)]), cache, '13.0.3.0')
    script = helpers.shell_assignments(plan) + '\nprintf "%s\\n" ' + ' '.join(
        f'"${key}"' for key in plan)
    out = subprocess.run(['bash', '-c', script], capture_output=True, text=True, check=True)
    assert out.stdout.splitlines() == list(plan.values())
    assert plan['WHEELS'] == os.path.join(cache, 'wheels', 'torch-2.14.1-cu130-sm80-sm90')


def test_mmcv_plan_cli(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(helpers, 'probe_torch', lambda: _gpu_probe([(10, 0)]))
    monkeypatch.setattr(helpers, 'distribution_version', lambda name: '13.0.3.0')
    assert helpers.main(['mmcv-plan', str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"WHEELS={tmp_path}/wheels/torch-2.14.1-cu130-sm100" in out
    assert "NVCC_REQUIREMENT='cuda-toolkit[nvcc,cccl]==13.0.3.0'" in out
    # a GPU torch cannot run on: one line on stderr, exit 1
    monkeypatch.setattr(helpers, 'probe_torch', lambda: _gpu_probe([(6, 1)]))
    assert helpers.main(['mmcv-plan', str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith('setup_env: ERROR: the GPU (sm_61)') and err.count('\n') == 1


def _mmcv(version='2.1.0', ops=True, cuda='not available', gpu_error=None, import_error=None):
    return {'version': version, 'import_error': import_error, 'ops': ops, 'cuda': cuda,
            'gpu_error': gpu_error}


@pytest.mark.parametrize('info,need_cuda,problem', [
    # without a GPU: as before, the version and importable ops are all that count
    (_mmcv(), None, None),
    (_mmcv(cuda='13.0'), None, None),
    (_mmcv(version=None), None, 'mmcv is not installed'),
    (_mmcv(version=None, import_error='libc10.so: cannot open'), None,
     'mmcv does not import (libc10.so: cannot open)'),
    (_mmcv(version='2.2.0'), None, 'mmcv 2.2.0 is installed, 2.1.0 is required'),
    (_mmcv(ops=False, cuda=None), None, 'mmcv has no compiled ops'),
    # with one: ops built with torch's CUDA release, and running on this GPU
    (_mmcv(), '13.0', "mmcv's ops were built without CUDA"),
    (_mmcv(ops=False, cuda=None), '13.0', 'mmcv has no compiled ops'),
    (_mmcv(cuda='12.8'), '13.0', "mmcv's ops were built with CUDA 12.8, torch uses CUDA 13.0"),
    (_mmcv(cuda='13.0', gpu_error='CUDA error: no kernel image is available for execution'),
     '13.0', "mmcv's CUDA ops do not run on this GPU (nms on the GPU: CUDA error: no kernel"),
    (_mmcv(cuda='13.0'), '13.0', None),
    (_mmcv(cuda='12.8.1'), '12.8', None),
])
def test_mmcv_fit_problem(info, need_cuda, problem):
    found = helpers.mmcv_fit_problem(info, '2.1.0', need_cuda)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem), found


def test_mmcv_fits_cli(monkeypatch, capsys):
    seen = []

    def probe(run_on_gpu):
        seen.append(run_on_gpu)
        return _mmcv()

    monkeypatch.setattr(helpers, 'probe_mmcv', probe)
    assert helpers.main(['mmcv-fits', '2.1.0']) == 0
    assert helpers.main(['mmcv-fits', '2.1.0', '']) == 0  # the shell's MMCV_CUDA on a CPU
    assert helpers.main(['mmcv-fits', '2.1.0', '13.0']) == 1
    assert seen == [False, False, True]  # the nms on the GPU only where there is one
    assert capsys.readouterr().out == "mmcv's ops were built without CUDA, and torch sees a GPU\n"


def test_probe_mmcv_reports_the_cpu_build_of_the_test_venv():
    # the suite's venv has mmcv built on a machine without CUDA (real probe, no mock)
    info = helpers.probe_mmcv(run_on_gpu=False)
    assert info['version'] == '2.1.0' and info['ops']
    assert helpers.mmcv_fit_problem(info, '2.1.0') is None
    if info['cuda'] == 'not available':
        assert 'without CUDA' in helpers.mmcv_fit_problem(info, '2.1.0', '13.0')


def _touch(path, text='', mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(text)
    os.chmod(path, mode)


def _fake_nvcc(path, release):
    _touch(path, '#!/bin/sh\necho "nvcc: NVIDIA (R) Cuda compiler driver"\n'
           f'echo "Cuda compilation tools, release {release}, V{release}.88"\n', 0o755)


CUDA_WHEEL_LAYOUTS = {
    # CUDA 13 wheels: one tree nvidia/cu13 (nvcc, headers, libs); other
    # packages beside it; CUDA_HOME/include is added by torch itself
    'cuda13': dict(
        nvcc=('nvidia/cu13/bin/nvcc', '13.0'),
        files=['nvidia/cu13/include/cuda_runtime.h', 'nvidia/cu13/lib/libcudart.so.13',
               'nvidia/cudnn/include/cudnn.h', 'nvidia/cudnn/lib/libcudnn.so.9'],
        home='nvidia/cu13', includes=['nvidia/cudnn/include'],
        libs=['nvidia/cu13/lib', 'nvidia/cudnn/lib']),
    # CUDA 12 wheels: a folder per package; the runtime headers are not beside nvcc
    'cuda12': dict(
        nvcc=('nvidia/cuda_nvcc/bin/nvcc', '12.8'),
        files=['nvidia/cuda_nvcc/include/crt/host_config.h',
               'nvidia/cuda_runtime/include/cuda_runtime.h',
               'nvidia/cuda_runtime/lib/libcudart.so.12',
               'nvidia/cublas/include/cublas_v2.h'],
        home='nvidia/cuda_nvcc',
        includes=['nvidia/cublas/include', 'nvidia/cuda_runtime/include'],
        libs=['nvidia/cuda_runtime/lib']),
}


@pytest.mark.parametrize('layout', sorted(CUDA_WHEEL_LAYOUTS))
def test_find_cuda_toolkit_wheel_layouts(tmp_path, layout):
    spec, site = CUDA_WHEEL_LAYOUTS[layout], str(tmp_path)
    nvcc, release = spec['nvcc']
    _fake_nvcc(f'{site}/{nvcc}', release)
    for name in spec['files']:
        _touch(f'{site}/{name}')
    home, includes, libs = helpers.find_cuda_toolkit([site])
    assert home == f'{site}/{spec["home"]}'
    assert includes == [f'{site}/{name}' for name in spec['includes']]
    assert libs == [f'{site}/{name}' for name in spec['libs']]


def test_find_cuda_toolkit_without_one(tmp_path):
    assert helpers.find_cuda_toolkit([str(tmp_path / 'empty')]) == (None, [], [])


def test_nvcc_release():
    text = ('nvcc: NVIDIA (R) Cuda compiler driver\nCopyright (c) 2005-2025 NVIDIA Corporation\n'
            'Cuda compilation tools, release 13.0, V13.0.88\nBuild cuda_13.0.r13.0/compiler')
    assert helpers.nvcc_release(text) == '13.0'
    with pytest.raises(ValueError):
        helpers.nvcc_release('command not found')


def test_link_unversioned_cudart(tmp_path):
    lib, link_dir = str(tmp_path / 'lib'), str(tmp_path / 'venv' / 'cuda-link')
    _touch(f'{lib}/libcudart.so.13')
    _touch(f'{lib}/libcudart.so.13.0.96')  # a full version is not the soname to link
    link = helpers.link_unversioned_cudart([lib], link_dir)
    assert link == f'{link_dir}/libcudart.so'
    assert os.readlink(link) == f'{lib}/libcudart.so.13'
    assert helpers.link_unversioned_cudart([lib], link_dir) == link  # again: replaced
    _touch(f'{lib}/libcudart.so')
    assert helpers.link_unversioned_cudart([lib], str(tmp_path / 'other')) is None
    with pytest.raises(ValueError, match='CUDA runtime wheel is missing'):
        helpers.link_unversioned_cudart([str(tmp_path / 'nothing')], link_dir)


def test_cuda_build_env_puts_the_venv_toolkit_first():
    env = helpers.cuda_build_env('/v/nvidia/cu13', ['/v/nvidia/cudnn/include'],
                                 ['/v/link', '/v/nvidia/cu13/lib'], '9.0',
                                 {'PATH': '/usr/bin', 'CPATH': '/opt/inc'})
    assert env == {
        'CUDA_HOME': '/v/nvidia/cu13',
        'PATH': '/v/nvidia/cu13/bin:/usr/bin',
        'CPATH': '/v/nvidia/cudnn/include:/opt/inc',
        'LIBRARY_PATH': '/v/link:/v/nvidia/cu13/lib',
        'TORCH_CUDA_ARCH_LIST': '9.0',
        'FORCE_CUDA': '1',
        'MMCV_WITH_OPS': '1',
    }


def test_prepare_cuda_env_checks_the_nvcc_release(tmp_path):
    site, link_dir = str(tmp_path / 'site'), str(tmp_path / 'link')
    _fake_nvcc(f'{site}/nvidia/cu13/bin/nvcc', '13.0')
    _touch(f'{site}/nvidia/cu13/lib/libcudart.so.13')
    env = helpers.prepare_cuda_env(link_dir, '9.0', '13.0', site_dirs=[site],
                                   environ={'PATH': '/usr/bin'})
    assert env['CUDA_HOME'] == f'{site}/nvidia/cu13'
    assert env['LIBRARY_PATH'] == f'{link_dir}:{site}/nvidia/cu13/lib'
    assert env['TORCH_CUDA_ARCH_LIST'] == '9.0' and env['FORCE_CUDA'] == '1'
    with pytest.raises(ValueError, match='is CUDA 13.0, torch uses CUDA 12.8'):
        helpers.prepare_cuda_env(link_dir, '9.0', '12.8', site_dirs=[site])
    with pytest.raises(ValueError, match='no nvcc'):
        helpers.prepare_cuda_env(link_dir, '9.0', '13.0', site_dirs=[str(tmp_path / 'none')])


def test_cuda_env_cli_prints_exports(tmp_path, monkeypatch, capsys):
    site = str(tmp_path / 'site')
    _fake_nvcc(f'{site}/nvidia/cu13/bin/nvcc', '13.0')
    _touch(f'{site}/nvidia/cu13/lib/libcudart.so.13')
    monkeypatch.setattr(helpers, 'site_package_dirs', lambda: [site])
    assert helpers.main(['cuda-env', str(tmp_path / 'link'), '9.0', '13.0']) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f'export CUDA_HOME={site}/nvidia/cu13' in lines
    assert 'export TORCH_CUDA_ARCH_LIST=9.0' in lines and 'export FORCE_CUDA=1' in lines
    assert helpers.main(['cuda-env', str(tmp_path / 'link'), '9.0', '12.8']) == 1
    assert capsys.readouterr().err.count('\n') == 1
