# Short name of resnet200_spark-ft_8xb512-lamb-coslr-300e_in1k.py
_base_ = ['resnet200_spark-ft_8xb512-lamb-coslr-300e_in1k.py']
