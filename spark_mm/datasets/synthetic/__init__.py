"""Generated data, so that demos and tests need no download.

Every generator is deterministic (seeded) and writes a layout that the
ordinary datasets of mmpretrain, mmdet or mmseg read unchanged:

- :mod:`.demo_images`: unlabelled images for the demo pretraining
  (``SparKDemoImages``, generated on first use);
- :mod:`.labelled_folder`: a 4-class labelled folder for the classification
  demos (``SparKDemoLabelledImages``; ``tools/make_labelled_folder.py``);
- :mod:`.coco`: COCO-format instance segmentation (tools/make_synthetic_coco.py);
- :mod:`.study_scenes`: the transfer study's scenes, many unlabelled and few
  labelled (tools/make_synthetic_coco.py --study, tools/transfer_study.py);
- :mod:`.ade20k`: semantic segmentation in ADE20K's layout.
"""
from .ade20k import make_synthetic_ade20k
from .coco import make_synthetic_coco
from .demo_images import SparKDemoImages, make_demo_images
from .labelled_folder import SparKDemoLabelledImages, make_labelled_folder
from .study_scenes import make_study_data

__all__ = ['SparKDemoImages', 'SparKDemoLabelledImages', 'make_demo_images',
           'make_labelled_folder', 'make_study_data', 'make_synthetic_ade20k',
           'make_synthetic_coco']
