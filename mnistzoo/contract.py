"""The one input/output contract every zoo model and exported file keeps."""

INPUT_NAME = "image"  # float32 (batch, 28, 28), raw 0-255 pixels, white digit on black
OUTPUT_NAME = "probabilities"  # float32 (batch, 10), softmax
BATCH_AXIS = "batch"

# How every float32 file is made (:func:`mnistzoo.export.convert`); ``build`` redoes an export recorded with another.
CONVERSION_ROUTE = ("tf2onnx.convert.from_function(tf.function(model, input_signature=[image])); Flatten shapes made "
                    "constant; the 1/255 rescale and each BatchNorm before a dense layer folded into that layer")
