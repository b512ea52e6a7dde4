"""TensorFlow frontend: frozen GraphDefs (`.pb`) without TensorFlow; SavedModel
directories and Keras models are frozen through TensorFlow first (`freeze`)."""

from __future__ import annotations

from qcc.frontends.tensorflow.importer import load_graphdef

__all__ = ["load_graphdef"]
