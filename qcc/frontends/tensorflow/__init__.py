"""TensorFlow frontend: frozen GraphDefs (`.pb`) without TensorFlow; SavedModel
directories and Keras models (`.keras` files or objects) are frozen through TensorFlow
first (`freeze.py`, the only module importing it)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from xdsl.dialects.builtin import ModuleOp

from qcc.frontends.tensorflow.importer import load_graphdef

__all__ = ["load_graphdef", "load_tensorflow"]


def load_tensorflow(model: Any, input_shapes: Mapping[str, Sequence[int]] | None = None,
                    inputs: Sequence[str] | None = None,
                    outputs: Sequence[str] | None = None) -> ModuleOp:
    """A `.pb` GraphDef, a SavedModel directory, a `.keras` file or a Keras model."""
    if isinstance(model, str | os.PathLike) and os.fspath(model).lower().endswith(".pb") \
            and not os.path.isdir(model):
        return load_graphdef(model, input_shapes, inputs, outputs)
    from qcc.frontends.tensorflow import graph_pb2
    from qcc.frontends.tensorflow.importer import import_graph

    if hasattr(model, "as_graph_def"):  # a tf.Graph
        model = model.as_graph_def()
    if hasattr(model, "SerializeToString") and hasattr(model, "node"):  # a GraphDef
        graph = graph_pb2.GraphDef.FromString(model.SerializeToString())
        return import_graph(graph, "<GraphDef>", input_shapes or {}, inputs, outputs)
    from qcc.frontends.tensorflow.freeze import freeze

    graph, label = freeze(model, input_shapes)
    return import_graph(graph, label, input_shapes or {}, inputs, outputs)
