"""The one input/output contract every zoo model and exported file keeps."""

INPUT_NAME = "image"  # float32 (batch, 28, 28), raw 0-255 pixels, white digit on black
OUTPUT_NAME = "probabilities"  # float32 (batch, 10), softmax
BATCH_AXIS = "batch"
