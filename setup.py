"""Packaging for spark_mm. Requirements are read from requirements/*.txt.

Use tools/setup_env.sh for a complete environment: mmcv 2.1.0 with compiled ops has no
wheel on PyPI, and that script installs (or builds once per machine) a matching one.
"""
import os.path as osp
import re

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def get_version():
    scope = {}
    with open(osp.join(HERE, 'spark_mm', 'version.py'), encoding='utf-8') as f:
        exec(compile(f.read(), 'version.py', 'exec'), scope)
    return scope['__version__']


def parse_requirements(name):
    """Requirement strings of requirements/<name>.txt.

    Blank lines, comments and pip options (lines starting with '-') are skipped.
    """
    reqs = []
    with open(osp.join(HERE, 'requirements', name + '.txt'), encoding='utf-8') as f:
        for line in f:
            line = re.sub(r'\s+#.*$', '', line).strip()
            if not line or line.startswith(('#', '-')):
                continue
            reqs.append(line)
    return reqs


def read_readme():
    path = osp.join(HERE, 'README.md')
    if not osp.exists(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


tests_require = parse_requirements('tests')
optional_require = parse_requirements('optional')

setup(
    name='spark_mm',
    version=get_version(),
    description='SparK masked-image pretraining for CNNs on OpenMMLab '
    '(mmengine / mmpretrain / mmdet)',
    long_description=read_readme(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['spark_mm*']),
    include_package_data=True,
    python_requires='>=3.8',
    install_requires=parse_requirements('runtime'),
    extras_require={
        'tests': tests_require,
        'optional': optional_require,
        'all': tests_require + optional_require,
    },
    zip_safe=False,
)
