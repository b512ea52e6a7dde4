"""Freezing with TensorFlow (imported lazily, only here): a SavedModel directory or a
Keras model (object or `.keras` file) becomes a frozen GraphDef, its variables turned
into constants by TensorFlow's own convert_variables_to_constants_v2."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from qcc.frontends.errors import FrontendError
from qcc.frontends.tensorflow import graph_pb2 as pb


def _tensorflow(what: str) -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up log lines
    try:
        import tensorflow as tf
    except ImportError:
        raise FrontendError(f"{what}: reading it needs TensorFlow to freeze it (pip install "
                            "tensorflow-cpu), or give qcc a frozen GraphDef (.pb)") from None
    return tf


def freeze(model: Any, input_shapes: Mapping[str, Sequence[int]] | None = None,
           ) -> tuple[pb.GraphDef, str]:
    """(frozen GraphDef, a label for messages) of a SavedModel dir, `.keras` file or
    Keras model; `input_shapes` fixes the inputs' dynamic dims before freezing."""
    is_path = isinstance(model, str | os.PathLike)
    label = os.fspath(model) if is_path else type(model).__name__
    tf = _tensorflow(label)
    from tensorflow.python.framework.convert_to_constants import (
        convert_variables_to_constants_v2,
    )

    shapes = dict(input_shapes or {})
    try:
        if is_path and os.path.isdir(label):
            loaded = tf.saved_model.load(label)
            signatures = getattr(loaded, "signatures", {})
            if "serving_default" not in signatures:
                raise FrontendError(f"{label}: the SavedModel has no 'serving_default' "
                                    "signature to freeze")
            fn = signatures["serving_default"]
        else:
            if is_path:
                import keras

                model = keras.models.load_model(label)
            specs = []
            for inp in model.inputs:
                name = inp.name.split(":")[0]
                shape = tuple(None if d is None or d < 0 else d  # -1: stays symbolic
                              for d in shapes.get(name, tuple(inp.shape)))
                specs.append(tf.TensorSpec(shape, inp.dtype, name=name))
            fn = tf.function(lambda *xs: model(list(xs) if len(xs) > 1 else xs[0],
                                               training=False)).get_concrete_function(*specs)
        frozen = convert_variables_to_constants_v2(fn)
    except FrontendError:
        raise
    except Exception as e:  # TensorFlow's own errors: one message
        raise FrontendError(f"{label}: TensorFlow could not freeze the model: "
                            f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    graph = pb.GraphDef()
    graph.ParseFromString(frozen.graph.as_graph_def().SerializeToString())
    return graph, label
