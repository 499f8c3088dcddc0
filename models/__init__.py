"""Training side of tympan: Keras architectures, datasets, training, corpus rendering.

Importing this package does not import TensorFlow; the functions that train do.
"""
