# Short name of convnext-s_spark-ft_8xb512-adamw-coslr-400e_in1k.py
_base_ = ['convnext-s_spark-ft_8xb512-adamw-coslr-400e_in1k.py']
