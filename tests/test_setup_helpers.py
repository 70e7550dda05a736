"""Cheap tests of tools/setup_helpers.py (the pieces of tools/setup_env.sh worth testing)."""
import importlib.util
import os.path as osp

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
