"""Keras model -> .tflite with each recurrent layer as one fused custom op."""
