# Short name of resnet50_spark-knn-k20_in1k.py
_base_ = ['resnet50_spark-knn-k20_in1k.py']
