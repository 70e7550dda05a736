"""``os.walk`` with symlinks followed, each real folder visited once.

``os.walk(followlinks=True)`` follows a symlink that points back up the tree
(``images/loop -> ..``) until path names get too long, about 40 levels, so
a folder of 3 images becomes 120 samples. :func:`walk_each_folder_once`
follows symlinked folders (datasets are often assembled from links) but
enters each real folder once, and warns once per walk naming the links it
did not follow again.
"""
import logging
import os
from typing import Iterator, List, Tuple

from mmengine.logging import print_log


def walk_each_folder_once(root: str) -> Iterator[Tuple[str, List[str],
                                                       List[str]]]:
    """``os.walk(root, followlinks=True)``, without entering a real folder
    twice; ``subfolders`` may be pruned in place as with ``os.walk``."""
    seen, repeated = set(), []
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            repeated.append(folder)
            subfolders[:] = []
            continue
        seen.add(real)
        yield folder, subfolders, files
    if repeated:
        named = ', '.join(f'{path} -> {os.path.realpath(path)}'
                          for path in repeated[:3])
        more = f' (+{len(repeated) - 3} more)' if len(repeated) > 3 else ''
        print_log(f'{root}: {len(repeated)} folder(s) reached again through '
                  f'a symlink, not read twice: {named}{more}; remove the '
                  'link loop to silence this', logger='current',
                  level=logging.WARNING)
