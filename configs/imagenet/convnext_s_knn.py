# Short name of convnext-s_spark-knn-k20_in1k.py
_base_ = ['convnext-s_spark-knn-k20_in1k.py']
