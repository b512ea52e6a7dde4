"""The Caffe frontend: `.prototxt` + `.caffemodel` into qnn, with no Caffe installed
(qcc's own schema subset, `caffe.proto`, compiled to `caffe_pb2`)."""

from qcc.frontends.caffe.importer import load_caffe

__all__ = ["load_caffe"]
